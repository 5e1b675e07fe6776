"""The procedural library written as a ShapeNetCore-v2-style folder.

Layout: `ROOT/SYNSET/OBJECT_ID/models/model_normalized.obj`, `ROOT/taxonomy.json` (ShapeNet's list of
{"synsetId", "name", "children", "numInstances"}) and `ROOT/objects.csv` (the object manifest with the
split). The OBJ files follow ShapeNet's Y-up convention, so that Blender's default OBJ import (which reads
files as Y-up and turns them Z-up) gives back exactly the Z-up mesh of `make_mesh`. Every file is written
atomically, so an interrupted export leaves no partial file, and a rerun keeps the files already written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from render import spec
from render.files import write_bytes_atomically
from render.manifest import (
    ObjectEntry,
    class_labels,
    read_objects_csv,
    stratified_split,
    write_objects_csv,
)
from render.procedural.library import CLASSES, MAX_PER_CLASS, SYNSETS, make_mesh, object_id, parse_object_id

DEFAULT_PER_CLASS = 50
MODEL_FILE = Path("models") / "model_normalized.obj"
SOURCE = "procedural"


@dataclass(frozen=True)
class ExportSummary:
    """What an export did: objects written now, objects already present and unchanged, and the manifest."""

    written: int
    kept: int
    objects: list[ObjectEntry]


def export_library(
    root: str | Path,
    classes: Sequence[str] | None = None,
    per_class: int = DEFAULT_PER_CLASS,
    seed: int = 0,
    on_object: Callable[[ObjectEntry], None] | None = None,
) -> ExportSummary:
    """Write `per_class` instances of each class (default: all) under `root`, then `taxonomy.json` and
    `objects.csv`; `on_object` is called after each object (for progress).

    An object whose file already holds exactly the bytes this export would write is left alone, so a
    rerun continues where an interrupted one stopped. Raises ValueError for unknown classes, a count
    below 1 or a `root` that holds a rendered dataset, OSError when the folder cannot be written.
    """
    root = Path(root)
    if (root / spec.MANIFEST_NAME).exists():
        raise ValueError(
            f"{root}: is a rendered dataset ({spec.MANIFEST_NAME}), whose objects.csv an export would "
            "replace; write the library to a folder of its own"
        )
    entries = library_manifest(classes, per_class, seed)
    _check_no_object_dropped(root, entries)
    written = kept = 0
    for entry in entries:
        name, index, _ = parse_object_id(entry.object_id)
        text = obj_text(make_mesh(name, index, seed), entry.object_id).encode("ascii")
        if _write_if_changed(root / entry.synset / entry.object_id / MODEL_FILE, text):
            written += 1
        else:
            kept += 1
        if on_object is not None:
            on_object(entry)
    counts = {
        synset: sum(entry.synset == synset for entry in entries) for synset in {e.synset for e in entries}
    }
    taxonomy_text = json.dumps(taxonomy(counts), indent=2) + "\n"
    write_bytes_atomically(root / spec.TAXONOMY_NAME, taxonomy_text.encode("utf-8"))
    write_objects_csv(root / spec.OBJECTS_CSV_NAME, entries)
    return ExportSummary(written=written, kept=kept, objects=entries)


def _check_no_object_dropped(root: Path, entries: list[ObjectEntry]) -> None:
    """ValueError when ROOT/objects.csv lists objects that this export would not (another seed, fewer
    classes or instances), or ROOT holds models of such objects that an interrupted export left before it
    wrote objects.csv: their models would stay on disk unlisted, and a render of the folder would take them
    in. A library grown by classes or instances keeps every listed object and is written."""
    listed = root / spec.OBJECTS_CSV_NAME
    planned = {(e.synset, e.object_id) for e in entries}
    if listed.is_file():
        present, where = {(e.synset, e.object_id) for e in read_objects_csv(listed)}, f"{listed}: lists"
    else:  # an interrupted export: the models it wrote
        present = {(path.parts[-4], path.parts[-3]) for path in root.glob(f"*/*/{MODEL_FILE}")}
        where = f"{root}: holds the models of"
    dropped = sorted(present - planned)
    if dropped:
        raise ValueError(
            f"{where} {len(dropped)} objects that this export would not (e.g. "
            f"{'/'.join(dropped[0])}: another --seed, fewer classes or fewer per class); write this library "
            "to a folder of its own"
        )


def library_manifest(
    classes: Sequence[str] | None = None,
    per_class: int = DEFAULT_PER_CLASS,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> list[ObjectEntry]:
    """Manifest entries of the first `per_class` instances of each class under library `seed`, labelled by
    the position of their synset in the sorted synsets of the classes used and split by
    `stratified_split(..., val_fraction, seed)`; sorted by (synset, object_id)."""
    classes = check_classes(CLASSES if classes is None else classes)
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"the number of objects per class must be at least 1, got {per_class!r}")
    if per_class > MAX_PER_CLASS:  # object ids number instances with five digits
        raise ValueError(f"the number of objects per class must be at most {MAX_PER_CLASS}, got {per_class}")
    labels = class_labels(SYNSETS[name] for name in classes)
    entries = [
        ObjectEntry(SYNSETS[name], object_id(name, index, seed), labels[SYNSETS[name]], "train", SOURCE)
        for name in classes
        for index in range(per_class)
    ]
    return stratified_split(entries, val_fraction=val_fraction, seed=seed)


def check_classes(classes: Iterable[str]) -> tuple[str, ...]:
    """The class names, deduplicated in order; ValueError naming the valid classes if one is unknown or
    none is given."""
    names = tuple(dict.fromkeys(name.strip() for name in classes if name.strip()))
    unknown = [name for name in names if name not in SYNSETS]
    if unknown or not names:
        problem = f"unknown class {', '.join(map(repr, unknown))}" if unknown else "no class given"
        raise ValueError(f"{problem}; valid classes: {', '.join(CLASSES)}")
    return names


def obj_text(mesh: trimesh.Trimesh, name: str) -> str:
    """Wavefront OBJ text of a Z-up mesh in ShapeNet's Y-up convention: a vertex (x, y, z) is written as
    (x, z, -y), which Blender's default OBJ import turns back into (x, y, z)."""
    y_up = np.column_stack([mesh.vertices[:, 0], mesh.vertices[:, 2], -mesh.vertices[:, 1]])
    lines = [f"# 3die procedural object {name}", f"o {name}"]
    lines += [f"v {x:.7f} {y:.7f} {z:.7f}" for x, y, z in y_up]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces]
    return "\n".join(lines) + "\n"


def taxonomy(counts: dict[str, int]) -> list[dict]:
    """ShapeNet's taxonomy.json records for the given synset -> number of objects, sorted by synset."""
    names = {synset: name for name, synset in SYNSETS.items()}
    return [
        {"synsetId": synset, "name": names[synset], "children": [], "numInstances": counts[synset]}
        for synset in sorted(counts)
    ]


def model_path(root: str | Path, synset: str, identifier: str) -> Path:
    """Where an object's OBJ file lies in an exported library."""
    return Path(root) / synset / identifier / MODEL_FILE


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write `data` atomically unless `path` already holds it; remove temporary files an interrupted
    write left beside it. True when the file was (re)written."""
    if path.parent.is_dir():
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
    if path.is_file() and path.read_bytes() == data:
        return False
    write_bytes_atomically(path, data)
    return True
