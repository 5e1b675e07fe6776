"""The object manifest: every object of a dataset with its class label, split and source.

A manifest is a CSV file with the columns `synset,object_id,label,split,source`: `split` is `train` or
`val`, `source` is `shapenet`, `mesh-dir` or `procedural`, and an object is identified by its
(synset, object_id) pair, which is also its folder `SYNSET/OBJECT_ID/` in a dataset. Labels follow
`render.spec.shapenet_synsets()` for ShapeNet objects; for any other set of classes the label of a class is
the position of its synset id in the sorted synset ids of the classes used (`class_labels`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from render import spec
from render.files import write_text_atomically

COLUMNS = ("synset", "object_id", "label", "split", "source")
SPLITS = spec.SPLITS
SOURCES = ("shapenet", "mesh-dir", "procedural")
OFFICIAL_COLUMNS = ("synset", "object_id", "label")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class ObjectEntry:
    """One row of the manifest: an object, its class label, its split and where it comes from."""

    synset: str
    object_id: str
    label: int
    split: str
    source: str

    @property
    def key(self) -> tuple[str, str]:
        """(synset, object_id): what identifies the object in a dataset."""
        return (self.synset, self.object_id)


# --- reading and writing ----------------------------------------------------------------------------


def read_objects_csv(path: str | Path) -> list[ObjectEntry]:
    """The validated entries of a manifest CSV, in file order.

    Raises ManifestError ("FILE:LINE: problem") for a missing column, an empty or malformed value, an
    unknown split or source, a bad label or a duplicated object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: cannot read the object manifest: {error}") from error
    checker = _EntryChecker(str(path))
    entries = []
    for line, row in _rows(text, str(path), COLUMNS):
        entry = _entry_from_row(row, f"{path}:{line}")
        checker.add(entry, line)
        entries.append(entry)
    return entries


def write_objects_csv(path: str | Path, entries: Iterable[ObjectEntry]) -> None:
    """Validate the entries and write them as a manifest CSV, atomically (a temporary file then a rename),
    so that a reader never sees a half-written file."""
    entries = list(entries)
    validate_entries(entries, origin=str(path))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for entry in entries:
        writer.writerow([entry.synset, entry.object_id, entry.label, entry.split, entry.source])
    write_text_atomically(Path(path), buffer.getvalue())


def validate_entries(entries: Iterable[ObjectEntry], origin: str = "objects") -> None:
    """Raise ManifestError ("ORIGIN: entry N: problem") unless every entry is well formed, no object is
    listed twice and labels map one-to-one onto synsets."""
    checker = _EntryChecker(origin)
    for number, entry in enumerate(entries, start=1):
        where = f"{origin}: entry {number}"
        _check_entry(entry, where)
        checker.add(entry, number, unit="entry")


# --- labels ---------------------------------------------------------------------------------------


def shapenet_label(synset: str) -> int:
    """Label of a ShapeNetCore v2 synset: its position in the sorted 55 synset ids."""
    labels = _shapenet_labels()
    if synset not in labels:
        raise ManifestError(f"{spec.SYNSETS_CSV}: {synset!r} is not a ShapeNetCore v2 synset id")
    return labels[synset]


def class_labels(synsets: Iterable[str]) -> dict[str, int]:
    """Synset id -> label for a dataset made of these classes: the position in their sorted ids."""
    return {synset: label for label, synset in enumerate(sorted(set(synsets)))}


# --- splits ---------------------------------------------------------------------------------------


def stratified_split(
    objects: Iterable[ObjectEntry], val_fraction: float = 0.2, seed: int = 0
) -> list[ObjectEntry]:
    """The objects with `split` set by a deterministic, class-stratified split by object.

    Within each synset, objects are ranked by a hash of (seed, synset, object_id) and the first
    round(n * val_fraction) go to `val`, at least one and at most n - 1 when the class has n >= 2 objects
    (a single object stays in `train`). The result depends on the set of objects, never on their order;
    it is sorted by (synset, object_id). The incoming `split` values are ignored.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction}")
    entries = list(objects)
    validate_entries([replace(entry, split="train") for entry in entries], origin="objects to split")
    by_synset: dict[str, list[ObjectEntry]] = {}
    for entry in entries:
        by_synset.setdefault(entry.synset, []).append(entry)
    validation: set[tuple[str, str]] = set()
    for synset, group in by_synset.items():
        ranked = sorted(
            group, key=lambda entry: (_split_rank(seed, synset, entry.object_id), entry.object_id)
        )
        validation.update(entry.key for entry in ranked[: _validation_count(len(ranked), val_fraction)])
    assigned = [replace(entry, split="val" if entry.key in validation else "train") for entry in entries]
    return sorted(assigned, key=lambda entry: entry.key)


def read_official_val(path: str | Path = spec.OFFICIAL_VAL_CSV) -> list[ObjectEntry]:
    """The objects of the official 3DIEBench validation list (CSV `synset,object_id,label`), as ShapeNet
    validation entries; ManifestError when a row is malformed, duplicated or has the wrong label."""
    return list(_read_official_val(Path(path).resolve()))


def split_by_official_list(
    objects: Iterable[ObjectEntry], official: Iterable[ObjectEntry] | None = None
) -> list[ObjectEntry]:
    """The objects with `split` set as in 3DIEBench: `val` when listed in the official validation list
    (default: `read_official_val()`), `train` otherwise. Order is kept."""
    listed = {entry.key for entry in (read_official_val() if official is None else official)}
    return [replace(entry, split="val" if entry.key in listed else "train") for entry in objects]


# --- helpers ----------------------------------------------------------------------------------------


class _EntryChecker:
    """Collects entries one by one and rejects duplicated objects and labels that do not map one-to-one
    onto synsets; errors name the origin and the line (or entry) number."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.first_seen: dict[tuple[str, str], int] = {}
        self.label_of: dict[str, tuple[int, int]] = {}
        self.synset_of: dict[int, tuple[str, int]] = {}

    def add(self, entry: ObjectEntry, number: int, unit: str = "line") -> None:
        where = f"{self.origin}:{number}" if unit == "line" else f"{self.origin}: entry {number}"
        if entry.key in self.first_seen:
            raise ManifestError(
                f"{where}: duplicated object {entry.synset}/{entry.object_id} "
                f"(first on {unit} {self.first_seen[entry.key]})"
            )
        self.first_seen[entry.key] = number
        label, first = self.label_of.setdefault(entry.synset, (entry.label, number))
        if label != entry.label:
            raise ManifestError(
                f"{where}: bad label {entry.label} for synset {entry.synset}: "
                f"{unit} {first} gave it label {label}"
            )
        synset, first = self.synset_of.setdefault(entry.label, (entry.synset, number))
        if synset != entry.synset:
            raise ManifestError(
                f"{where}: bad label {entry.label}: {unit} {first} gave it to synset {synset}"
            )


def _rows(text: str, origin: str, columns: tuple[str, ...]):
    """(line number, row dict) of a CSV text with the given required columns."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames
    if not header:
        raise ManifestError(f"{origin}:1: empty file; expected the header {','.join(columns)}")
    missing = [column for column in columns if column not in header]
    if missing:
        raise ManifestError(
            f"{origin}:1: missing column {', '.join(missing)}; expected the header {','.join(columns)}"
        )
    for row in reader:
        line = reader.line_num
        if None in row:
            raise ManifestError(
                f"{origin}:{line}: too many values ({len(header) + len(row[None])} for {len(header)} columns)"
            )
        absent = [column for column in columns if row[column] is None]
        if absent:
            raise ManifestError(f"{origin}:{line}: missing value for {', '.join(absent)}")
        yield line, row


def _entry_from_row(row: dict[str, str], where: str) -> ObjectEntry:
    """A checked entry from a CSV row."""
    label_text = row["label"].strip()
    if not spec.is_decimal(label_text):
        raise ManifestError(f"{where}: bad label {row['label']!r}; expected a non-negative integer")
    entry = ObjectEntry(row["synset"], row["object_id"], int(label_text), row["split"], row["source"])
    _check_entry(entry, where)
    return entry


def _check_entry(entry: ObjectEntry, where: str) -> None:
    """Raise ManifestError unless the entry's fields are individually valid."""
    for field in ("synset", "object_id"):
        value = getattr(entry, field)
        if not is_folder_name(value):
            raise ManifestError(f"{where}: bad {field} {value!r}; expected a non-empty folder name")
    if isinstance(entry.label, bool) or not isinstance(entry.label, int) or entry.label < 0:
        raise ManifestError(f"{where}: bad label {entry.label!r}; expected a non-negative integer")
    if entry.split not in SPLITS:
        raise ManifestError(f"{where}: unknown split {entry.split!r}; expected one of {', '.join(SPLITS)}")
    if entry.source not in SOURCES:
        raise ManifestError(f"{where}: unknown source {entry.source!r}; expected one of {', '.join(SOURCES)}")
    if entry.source == "shapenet":
        expected = _shapenet_labels().get(entry.synset)
        if expected is None:
            raise ManifestError(f"{where}: {entry.synset!r} is not a ShapeNetCore v2 synset id")
        if entry.label != expected:
            raise ManifestError(
                f"{where}: bad label {entry.label} for ShapeNet synset {entry.synset}; expected {expected}"
            )


def is_folder_name(name: str) -> bool:
    """Whether `name` can be used as one folder name: printable, no separators, no surrounding spaces."""
    return (
        bool(name)
        and name not in (".", "..")
        and name == name.strip()
        and name.isprintable()
        and not any(character in name for character in "/\\")
    )


@cache
def _shapenet_labels() -> dict[str, int]:
    """ShapeNetCore v2 synset id -> label."""
    return {synset.synset: synset.label for synset in spec.shapenet_synsets()}


@cache
def _read_official_val(path: Path) -> tuple[ObjectEntry, ...]:
    """Parsed official validation list (cached per resolved path)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ManifestError(f"{path}: cannot read the official validation list: {error}") from error
    checker = _EntryChecker(str(path))
    entries = []
    for line, row in _rows(text, str(path), OFFICIAL_COLUMNS):
        entry = _entry_from_row({**row, "split": "val", "source": "shapenet"}, f"{path}:{line}")
        checker.add(entry, line)
        entries.append(entry)
    return tuple(entries)


def _split_rank(seed: int, synset: str, object_id: str) -> bytes:
    """Order-independent, stable rank of an object within its class."""
    return hashlib.sha256(f"{seed}/{synset}/{object_id}".encode()).digest()


def _validation_count(count: int, val_fraction: float) -> int:
    """How many of a class's `count` objects go to validation."""
    if count < 2:
        return 0
    return min(max(math.floor(count * val_fraction + 0.5), 1), count - 1)
