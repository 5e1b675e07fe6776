"""One HDF5 file per dataset (`3die pack`): encoded JPEGs (or decoded pixels), latents, labels, object ids
and splits, chunked by object, so that a training run reads one file instead of two per view.

Layout (N objects, V views, C classes; attributes on the root group: `format`, `format_version`, `views`,
`storage` ("jpeg" or "raw"), `image_size` (0: as rendered), `jpeg_quality` (0: the rendered bytes, not
re-encoded), `source`):
```
jpeg_bytes    (B,) uint8                 storage "jpeg": every view's encoded JPEG, object after object
jpeg_offsets  (N, V + 1) int64           view v of object i is jpeg_bytes[offsets[i, v]:offsets[i, v + 1]]
pixels        (N, V, S, S, 3) uint8      storage "raw": RGB pixels, S = image_size, chunk = one object
latents       (N, V, 7) float64          chunk = one object
labels        (N,) int64
object_ids    (N,) str                   synsets (N,) str, split (N,) str ("train" or "val")
class_synsets (C,) str                   class_names (C,) str, in label order
manifest      str                        the source folder's manifest.json ("" for the official download)
objects_csv   str                        the source folder's objects.csv ("" when it has none)
packed        (N,) bool                  objects written so far (an interrupted pack resumes from it)
skipped_objects (K,) str                 "SYNSET/OBJECT_ID" of each object left out (--skip-bad-objects)
skipped_split   (K,) str                 their split; skipped_problems (K,) str: why each cannot be used
```
The N objects are those of the folder's split files that passed the check before training
(`benchmark.data.validate`); a pack refuses a folder with unusable objects unless told to leave them out,
which the `skipped_*` datasets then record (K = 0 for a whole folder; files packed before they existed
lack them). The dataset hash of `3die evaluate` covers the objects in the file, so a file without some of
the folder's objects never hashes like the folder.
The file is written as FILE.partial and renamed into place when every object is in. A pack holds
.NAME.lock beside FILE (`render.locks`) while it writes FILE.partial, so a second pack to the same file,
started while the first runs, stops with one line naming the file and touches nothing; a FILE.partial that
HDF5 finds open in another process (its own file lock) is named too, never taken for damage and deleted.
The JPEGs are one flat byte array rather than an HDF5 variable-length dataset: reading a slice of it took
about 26 us against 300-500 us for one variable-length element (h5py 3.16, see BENCHMARKS.md). Raw storage
skips JPEG decoding while training (the fastest reader, at S x S x 3 bytes per view).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from benchmark.data.folder import FolderViews, is_official_download
from benchmark.data.views import (
    ClassInfo,
    DatasetError,
    ObjectViews,
    decode_jpeg,
    encode_jpeg,
    resize_pixels,
)
from render import spec
from render.locks import LockBusy, exclusive_lock
from render.manifest import SPLITS
from render.processes import exit_with_parent
from render.writer import link_target

#: Largest image side `3die pack --size` re-encodes to (a 4096 px view of 50 is 2.5 GB decoded).
MAX_SIZE = spec.MAX_IMAGE_SIZE
FORMAT = "3die-packed"
FORMAT_VERSION = 1
DEFAULT_QUALITY = 95
#: Objects written between two flushes of the partial file (the resume granularity).
FLUSH_EVERY = 64
#: Chunk of the flat JPEG byte array (bytes).
JPEG_CHUNK = 1 << 20
STRING = h5py.string_dtype()


@dataclass(frozen=True)
class SkippedObject:
    """An object of a dataset folder left out of its packed file: its split, "SYNSET/OBJECT_ID" and the
    first reason it cannot be used (naming the file)."""

    split: str
    key: str
    problem: str


@dataclass(frozen=True)
class PackSummary:
    """Outcome of `pack_dataset`: objects in the file, how many were packed by this call, its size, and
    the folder's objects left out of it."""

    path: Path
    objects: int
    packed: int
    resumed: int
    bytes: int
    skipped: tuple[SkippedObject, ...] = ()


def pack_dataset(
    root: Path,
    out: Path,
    size: int | None = None,
    quality: int = DEFAULT_QUALITY,
    workers: int = 1,
    on_object: Callable[[], None] | None = None,
    raw: bool = False,
    skip_bad_objects: bool = False,
    echo: Callable[[str], None] | None = None,
) -> PackSummary:
    """Pack the dataset folder `root` into the HDF5 file `out`; rerun to continue an interrupted pack.

    `size`: re-encode every view at size x size pixels (JPEG `quality`); None keeps the rendered bytes.
    `raw`: store decoded pixels instead of JPEGs (at `size`, or the rendered size when None).
    `workers`: processes checking, reading (and re-encoding) objects. `on_object` is called once per object.
    Every object is checked first, as before training: DatasetError naming the first unusable one, unless
    `skip_bad_objects`: then they are left out (and recorded in the file) and `echo` gets one line.
    """
    from benchmark.data.validate import (  # validate reads packed files
        damaged_image_remedy,
        skipping_line,
        usable_splits,
    )

    root, out = Path(root), link_target(Path(out))  # a link's target is what the user means to replace
    if size is not None and not 1 <= size <= MAX_SIZE:
        raise DatasetError(f"--size must be a number of pixels from 1 to {MAX_SIZE}, got {size}")
    if not 1 <= quality <= 100:
        raise DatasetError(f"--quality must be a JPEG quality from 1 to 100, got {quality}")
    _check_replaceable(out, root)
    if root.is_dir() and not is_official_download(root):
        for split in SPLITS:  # a pack of one split would train or evaluate on nothing, much later
            if not (root / spec.split_images_name(split)).is_file():
                raise DatasetError(
                    f"{root / f'{split}_images.npy'}: missing; a dataset folder needs both split files "
                    "(rerun `3die render` on it to write them)"
                )
    splits = list(SPLITS)
    readers, skipped = usable_splits(root, splits, skip_bad_objects, workers)
    if skipped and echo is not None:
        total = len(skipped) + sum(len(reader) for reader in readers)
        counted = f"{len(skipped)} of {total} objects"
        echo(f"{skipping_line(root, counted, skipped[0].problem)}; {out} lists them (skipped_objects)")
    if raw and size is None:
        size = readers[0].image(0, 0).shape[0]
    tasks = [(str(reader.path), key, reader.views) for reader in readers for key in reader.keys]
    partial = out.with_name(out.name + ".partial")
    options = {
        "storage": "raw" if raw else "jpeg",
        "image_size": size or 0,
        "jpeg_quality": quality if size and not raw else 0,
        "source": str(root.resolve()),
    }
    with _pack_lock(out, partial), _partial_file(partial, readers, options, skipped) as handle:
        done = handle["packed"][()]
        first = _packed_rows(done)
        done[first:] = False
        todo = range(first, len(done))
        for _ in range(first):
            if on_object:
                on_object()
        try:
            objects = _map_objects([tasks[row] for row in todo], size, quality, raw, workers)
            for count, (row, (images, latents)) in enumerate(zip(todo, objects, strict=True), start=1):
                _write_images(handle, row, images, raw)
                handle["latents"][row] = latents
                done[row] = True
                if count % FLUSH_EVERY == 0:
                    _mark_packed(handle, done)
                if on_object:
                    on_object()
        except DatasetError as error:  # a JPEG damaged inside: the check before packing reads its ends only
            raise DatasetError(
                f"{error}; {damaged_image_remedy(root, 'the objects packed so far are kept')}"
            ) from None
        finally:
            _mark_packed(handle, done)
    os.replace(partial, out)
    resumed = len(tasks) - len(todo)
    return PackSummary(out, len(tasks), len(todo), resumed, out.stat().st_size, tuple(skipped))


def _check_replaceable(out: Path, root: Path) -> None:
    """DatasetError unless `out` is absent or a packed file of the folder `root` (packed again, it is
    replaced once the new file is complete): a pack never replaces another file or another folder's pack."""
    if not out.exists():
        return
    try:
        with h5py.File(out, "r") as handle:
            packed, source = handle.attrs.get("format") == FORMAT, handle.attrs.get("source")
    except OSError as error:
        if h5py.is_hdf5(out):  # an HDF5 file that cannot be opened now (permissions, another process)
            raise DatasetError(
                f"{out}: cannot open it to check that it is a pack of this folder ({error}); close or make "
                "it readable, or choose another --out"
            ) from None
        packed, source = False, None
    if not packed:
        raise DatasetError(
            f"{out}: exists and is not a packed dataset; choose another --out (a pack replaces only a "
            "pack of the same folder)"
        )
    if source != str(root.resolve()):
        raise DatasetError(
            f"{out}: holds the pack of another folder ({source}); delete it or choose another --out"
        )


def read_object(
    task: tuple[str, str, int], size: int | None, quality: int, raw: bool = False
) -> tuple[list[bytes] | np.ndarray, np.ndarray]:
    """One object's views, task = (root, "SYNSET/OBJECT_ID", views): (V encoded JPEGs, or with `raw`
    (V, size, size, 3) uint8 pixels; (V, 7) float64 latents)."""
    root, key, views = task
    reader = FolderViews(Path(root), "", [key], np.zeros(1, np.int64), views, ())
    if raw:
        return np.stack([reader.image(0, view, size) for view in range(views)]), reader.latents(0)
    images = [reader.jpeg(0, view) for view in range(views)]
    if size is None:  # copied as they are: decoded once (at an eighth of the size) so that none is damaged
        for view, data in enumerate(images):
            decode_jpeg(data, 1, reader.describe_view(0, view))
    else:
        images = [
            encode_jpeg(decode_jpeg(data, size, reader.describe_view(0, view)), quality)
            for view, data in enumerate(images)
        ]
    return images, reader.latents(0)


def _write_images(handle: h5py.File, row: int, images: list[bytes] | np.ndarray, raw: bool) -> None:
    """Store one object's views; JPEGs go right after the previous object's (rows are written in order)."""
    if raw:
        handle["pixels"][row] = images
        return
    start = int(handle["jpeg_offsets"][row - 1, -1]) if row else 0
    offsets = start + np.concatenate([[0], np.cumsum([len(data) for data in images])])
    data = handle["jpeg_bytes"]
    data.resize((int(offsets[-1]),))
    data[start:] = np.frombuffer(b"".join(images), dtype=np.uint8)
    handle["jpeg_offsets"][row] = offsets


def _read_object_args(arguments: tuple) -> tuple[np.ndarray, np.ndarray]:
    return read_object(*arguments)


def _map_objects(tasks: list, size: int | None, quality: int, raw: bool, workers: int) -> Iterator:
    """read_object over tasks, in order, in `workers` processes when more than one."""
    arguments = [(task, size, quality, raw) for task in tasks]
    if workers <= 1 or len(tasks) < 2:
        yield from map(_read_object_args, arguments)
        return
    with get_context("spawn").Pool(workers, initializer=exit_with_parent) as pool:
        yield from pool.imap(_read_object_args, arguments, chunksize=4)


@contextlib.contextmanager
def _pack_lock(out: Path, partial: Path) -> Iterator[None]:
    """Hold the pack lock of `out` (.NAME.lock beside it) for the block; DatasetError naming `out` when
    another pack holds it (that pack's FILE.partial is left to it)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(out.with_name(f".{out.name}.lock"), wait=False):
            yield
    except LockBusy as busy:
        raise DatasetError(
            f"{out}: another `3die pack` ({busy.holder or 'another process'}) is writing it now, as "
            f"{partial.name}; wait for it to finish, or stop it and rerun this command to continue its pack"
        ) from None


@contextlib.contextmanager
def _partial_file(
    path: Path, readers: list[ObjectViews], options: dict, skipped: list[SkippedObject]
) -> Iterator[h5py.File]:
    """The partial file, created, or reopened after checking that it holds the same objects and options
    (an unreadable one, left by a killed run, is started again; one whose packed objects come first in
    `readers` too, with objects left out or added after them, starts again with those objects)."""
    handle = _reopen(path, readers, options, skipped) if path.exists() else None
    if handle is None:
        handle = _create(path, readers, options, skipped)
    try:
        yield handle
    finally:
        handle.close()


def _reopen(
    path: Path, readers: list[ObjectViews], options: dict, skipped: list[SkippedObject]
) -> h5py.File | None:
    try:
        handle = h5py.File(path, "r+")
    except OSError as error:
        if _locked_by_another_process(error):
            raise DatasetError(
                f"{path}: open in another process (a pack writing it, or a program reading it); let it "
                "finish or close the file, then rerun this command (the objects packed so far are kept)"
            ) from None
        if h5py.is_hdf5(path):  # packed objects that cannot be opened now (permissions, I/O): keep them
            raise DatasetError(
                f"{path}: cannot open the unfinished pack ({error}); make it readable and writable, or "
                "delete it to start again"
            ) from None
        path.unlink()  # not an HDF5 file: left by a pack killed before its first flush
        return None
    try:
        keys = _keys(handle)
        same_options = all(handle.attrs.get(key) == value for key, value in options.items())
        rows = _packed_rows(handle["packed"][()])
    except (OSError, KeyError):
        handle.close()
        path.unlink()
        return None
    wanted = [key for reader in readers for key in reader.keys]
    if same_options and keys == wanted:  # the same objects; their labels, splits or classes may have changed
        _record_objects(handle, readers)
        _record_skipped(handle, skipped)
        return handle
    if same_options and keys[:rows] == wanted[:rows]:  # e.g. rerun with --skip-bad-objects after a failure
        return _carry_over(handle, path, readers, options, skipped, rows)
    handle.close()
    raise DatasetError(
        f"{path}: an unfinished pack of another dataset or with other options; "
        "rerun with the same options, or delete it to start again"
    )


def _locked_by_another_process(error: OSError) -> bool:
    """Whether h5py could not open a file because HDF5's file lock is held elsewhere (h5py raises
    BlockingIOError, errno EAGAIN, for "unable to lock file"; older releases a plain OSError)."""
    return isinstance(error, BlockingIOError) or "unable to lock file" in str(error)


def _carry_over(
    old: h5py.File,
    path: Path,
    readers: list[ObjectViews],
    options: dict,
    skipped: list[SkippedObject],
    rows: int,
) -> h5py.File:
    """The partial file for `readers`, started again with the first `rows` objects of `old` (the same
    objects) copied over, block by block."""
    fresh_path = path.with_name(path.name + ".new")
    fresh = _create(fresh_path, readers, options, skipped)
    with old, fresh:
        names = ["latents", "pixels" if options["storage"] == "raw" else "jpeg_offsets"]
        for name in names:
            _copy_rows(old[name], fresh[name], rows, FLUSH_EVERY)
        if options["storage"] != "raw" and rows:
            size = int(old["jpeg_offsets"][rows - 1, -1])
            fresh["jpeg_bytes"].resize((size,))
            _copy_rows(old["jpeg_bytes"], fresh["jpeg_bytes"], size, JPEG_CHUNK)
        fresh["packed"][:rows] = True
    os.replace(fresh_path, path)
    return h5py.File(path, "r+")


def _copy_rows(source: h5py.Dataset, target: h5py.Dataset, stop: int, block: int) -> None:
    for start in range(0, stop, block):
        end = min(start + block, stop)
        target[start:end] = source[start:end]


def _create(path: Path, readers: list[ObjectViews], options: dict, skipped: list[SkippedObject]) -> h5py.File:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = sum(len(reader) for reader in readers)
    views = readers[0].views
    handle = h5py.File(path, "w")
    handle.attrs.update(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "views": views,
            **options,
        }
    )
    if options["storage"] == "raw":
        pixels = (count, views, options["image_size"], options["image_size"], 3)
        handle.create_dataset("pixels", pixels, dtype=np.uint8, chunks=(1, *pixels[1:]))
    else:
        handle.create_dataset("jpeg_bytes", (0,), maxshape=(None,), dtype=np.uint8, chunks=(JPEG_CHUNK,))
        handle.create_dataset("jpeg_offsets", (count, views + 1), dtype=np.int64, chunks=(1, views + 1))
    latents = (count, views, spec.LATENT_DIM)
    handle.create_dataset("latents", latents, dtype=np.float64, chunks=(1, *latents[1:]))
    _record_objects(handle, readers)
    handle.create_dataset("packed", data=np.zeros(count, dtype=bool))
    _record_skipped(handle, skipped)
    handle.flush()
    return handle


def _record_objects(handle: h5py.File, readers: list[ObjectViews]) -> None:
    """Write (or rewrite) what the readers say of the objects: labels, ids, splits, classes, and the
    dataset's manifest.json and objects.csv (rewritten when a pack resumes: a split file may have changed)."""
    keys = [key.split("/") for reader in readers for key in reader.keys]
    classes = readers[0].classes
    root = readers[0].path
    manifest_path, objects_path = root / spec.MANIFEST_NAME, root / spec.OBJECTS_CSV_NAME
    columns = {
        "labels": np.concatenate([reader.labels for reader in readers]).astype(np.int64),
        "object_ids": np.array([object_id for _, object_id in keys], dtype=STRING),
        "synsets": np.array([synset for synset, _ in keys], dtype=STRING),
        "split": np.array([reader.split for reader in readers for _ in reader.keys], dtype=STRING),
        "class_synsets": np.array([c.synset for c in classes], dtype=STRING),
        "class_names": np.array([c.name for c in classes], dtype=STRING),
        "manifest": manifest_path.read_text() if manifest_path.is_file() else "",
        "objects_csv": objects_path.read_text() if objects_path.is_file() else "",
    }
    for name, values in columns.items():
        if name in handle:
            del handle[name]
        handle.create_dataset(name, data=values)


def _record_skipped(handle: h5py.File, skipped: list[SkippedObject]) -> None:
    """Write (or rewrite) the skipped_objects, skipped_split and skipped_problems datasets."""
    columns = {
        "skipped_objects": [entry.key for entry in skipped],
        "skipped_split": [entry.split for entry in skipped],
        "skipped_problems": [entry.problem for entry in skipped],
    }
    for name, values in columns.items():
        if name in handle:
            del handle[name]
        handle[name] = np.array(values, dtype=STRING)


def _packed_rows(done: np.ndarray) -> int:
    """How many objects a partial file holds: its leading packed rows (objects are written in order)."""
    return len(done) if done.all() else int(np.argmin(done))


def _mark_packed(handle: h5py.File, done: np.ndarray) -> None:
    handle["packed"][...] = done
    handle.flush()


def _keys(handle: h5py.File) -> list[str]:
    """ "SYNSET/OBJECT_ID" of every object of the file."""
    synsets, object_ids = _strings(handle, "synsets"), _strings(handle, "object_ids")
    return [f"{synset}/{object_id}" for synset, object_id in zip(synsets, object_ids, strict=True)]


def _strings(handle: h5py.File, name: str) -> list[str]:
    return list(handle[name].asstr()[()])


# --- reading ------------------------------------------------------------------------------------------
def read_skipped_objects(path: Path) -> list[SkippedObject]:
    """The folder's objects left out of the packed file `path` (empty for a whole folder, and for files
    packed before the record existed); DatasetError when it cannot be read as HDF5."""
    try:
        with h5py.File(path, "r") as handle:
            if "skipped_objects" not in handle:
                return []
            names = ("skipped_split", "skipped_objects", "skipped_problems")
            columns = [_strings(handle, name) for name in names]
            return [SkippedObject(*entry) for entry in zip(*columns, strict=True)]
    except OSError as error:
        raise unopenable(path, error) from None
    except PACK_DAMAGE as error:
        raise damaged_pack(path, error) from None


def read_packed_manifest(path: Path) -> dict | None:
    """The source folder's manifest.json kept in the packed file `path`, None when the folder had none (the
    official download); DatasetError when it cannot be read or is not a JSON object."""
    try:
        with h5py.File(path, "r") as handle:
            text = handle["manifest"].asstr()[()] if "manifest" in handle else ""
        manifest = json.loads(text) if text else None
    except OSError as error:
        raise unopenable(path, error) from None
    except PACK_DAMAGE as error:  # JSONDecodeError is a ValueError
        raise damaged_pack(path, f"its manifest: {error}") from None
    if manifest is not None and not isinstance(manifest, dict):
        raise damaged_pack(path, "its manifest is not a JSON object")
    return manifest


#: What reading a packed file with a piece missing or cut short raises, or one whose piece is a group where
#: a dataset belongs (AttributeError) or an array of another shape or type.
PACK_DAMAGE = (KeyError, ValueError, TypeError, IndexError, AttributeError, OSError)


def damaged_pack(path: Path, error: Exception | str) -> DatasetError:
    """The error for a packed file with a piece missing, cut short or out of range."""
    return DatasetError(f"{path}: damaged packed file ({error}); pack the dataset again")


def unopenable(path: Path, error: OSError) -> DatasetError:
    """The error for a file HDF5 cannot open (a text file given as a dataset, a damaged file)."""
    return DatasetError(
        f"{path}: cannot open as HDF5 ({error}); give a dataset folder or a file written by `3die pack`"
    )


def open_packed(path: Path, split: str = "train", check_latents: bool = True) -> PackedViews:
    """Open one split of a packed file; DatasetError naming the file when it is not a complete 3die pack,
    or (`check_latents`) when an object's latents are not finite."""
    path = Path(path)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise unopenable(path, error) from None
    with handle:
        try:
            views = _read_packed_split(handle, path, split)
        except PACK_DAMAGE as error:
            raise damaged_pack(path, error) from None
    latents = views.latent_array
    if check_latents and not np.isfinite(latents).all():
        row = int(np.flatnonzero(~np.isfinite(latents).all(axis=(1, 2)))[0])
        raise DatasetError(
            f"{path}: latents of {views.keys[row]} have non-finite values; pack the dataset again "
            "(or train without such objects with --skip-bad-objects)"
        )
    return views


def _read_packed_split(handle: h5py.File, path: Path, split: str) -> PackedViews:
    """`open_packed`'s reading of one split from an open file; DatasetError for a file that is not a
    complete pack of this format, KeyError/ValueError/TypeError for one with pieces missing or of the
    wrong size."""
    if handle.attrs.get("format") != FORMAT:
        raise DatasetError(f"{path}: not a 3die packed dataset (write one with `3die pack`)")
    if int(handle.attrs["format_version"]) != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: packed format version {handle.attrs['format_version']}, this reader needs "
            f"{FORMAT_VERSION}; pack the dataset again"
        )
    views = int(handle.attrs["views"])
    count = handle["labels"].shape[0]
    image_size = int(handle.attrs["image_size"]) or None
    if views < 1 or handle.attrs.get("storage", "jpeg") not in ("jpeg", "raw"):
        raise ValueError(f"views {views}, storage {handle.attrs.get('storage')!r}")
    raw = handle.attrs.get("storage") == "raw"
    expected = {"labels": (count,), "packed": (count,), "latents": (count, views, spec.LATENT_DIM)}
    if raw:
        expected["pixels"] = (count, views, image_size, image_size, 3)
    else:
        expected["jpeg_offsets"] = (count, views + 1)
    for name, shape in expected.items():
        if name not in handle:
            raise DatasetError(f"{path}: no {name} dataset; pack the dataset again")
        if handle[name].shape != shape:
            raise DatasetError(f"{path}: {name} has shape {handle[name].shape}, expected {shape}")
    if not handle["packed"][()].all():
        raise DatasetError(f"{path}: incomplete pack; rerun `3die pack` to finish it")
    _check_dtypes(handle, raw)
    splits, every_key = _strings(handle, "split"), _keys(handle)
    if len(every_key) != count or len(splits) != count:
        raise ValueError(f"{len(every_key)} object ids and {len(splits)} splits for {count} objects")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"split values {', '.join(map(repr, unknown))} (expected {' or '.join(SPLITS)})")
    rows = np.flatnonzero(np.array(splits) == split)
    keys = [every_key[row] for row in rows]
    offsets = None if raw else handle["jpeg_offsets"][()][rows]
    if not raw and count and handle["jpeg_offsets"][-1, -1] != handle["jpeg_bytes"].shape[0]:
        raise DatasetError(f"{path}: jpeg_offsets do not match jpeg_bytes; pack the dataset again")
    if offsets is not None and len(offsets) and (np.diff(offsets, axis=1) < 0).any():
        raise ValueError("jpeg_offsets that decrease within an object")
    latents = handle["latents"][()][rows]
    labels = handle["labels"][()][rows].astype(np.int64)
    classes = tuple(
        ClassInfo(label, synset, name)
        for label, (synset, name) in enumerate(
            zip(_strings(handle, "class_synsets"), _strings(handle, "class_names"), strict=True)
        )
    )
    if len(labels) and not (labels.min() >= 0 and labels.max() < len(classes)):
        raise ValueError(f"labels outside 0..{len(classes) - 1} (the file's {len(classes)} classes)")
    quality = int(handle.attrs.get("jpeg_quality", 0))
    return PackedViews(path, split, keys, labels, views, classes, rows, latents, image_size, offsets, quality)


#: dtype kinds of a pack's arrays (NumPy `dtype.kind`): integers for labels and offsets, floats for
#: latents, bytes for JPEG data and pixels.
PACKED_DTYPES = {
    "labels": "iu",
    "latents": "f",
    "jpeg_offsets": "iu",
    "jpeg_bytes": "u",
    "pixels": "u",
}


def _check_dtypes(handle: h5py.File, raw: bool) -> None:
    """ValueError naming the first array of the pack whose element type is not the format's (float
    labels would be truncated to classes, float pixels read as near-black images)."""
    for name, kinds in PACKED_DTYPES.items():
        if name in handle and name != ("jpeg_offsets" if raw else "pixels"):
            dtype = handle[name].dtype
            if dtype.kind not in kinds or (name in ("jpeg_bytes", "pixels") and dtype.itemsize != 1):
                raise ValueError(f"{name} of type {dtype}")


class PackedViews(ObjectViews):
    """One split of a packed file. Latents are held in memory; images (JPEGs, or pixels for raw storage)
    are read on demand through a file handle opened once per process (DataLoader workers each open
    their own)."""

    kind = "packed"

    def __init__(
        self,
        path: Path,
        split: str,
        keys: list[str],
        labels: np.ndarray,
        views: int,
        classes: tuple[ClassInfo, ...],
        rows: np.ndarray,
        latents: np.ndarray,
        image_size: int | None,
        jpeg_offsets: np.ndarray | None,
        jpeg_quality: int = 0,
    ) -> None:
        self.path = Path(path)
        self.split = split
        self.keys = keys
        self.labels = labels
        self.views = views
        self.classes = classes
        self.rows = rows
        self.latent_array = latents
        self.image_size = image_size
        self.jpeg_offsets = jpeg_offsets
        self.raw = jpeg_offsets is None
        self.jpeg_quality = jpeg_quality  # 0: the rendered JPEGs (or raw pixels), else re-encoded so
        self._images: h5py.Dataset | None = None
        self._owner = -1

    def jpeg(self, index: int, view: int) -> bytes:
        if self.raw:
            raise DatasetError(f"{self.path}: holds decoded pixels (packed with --raw), not JPEG files")
        start, end = self.jpeg_offsets[index, view : view + 2]
        try:
            return self._image_dataset()[start:end].tobytes()
        except (OSError, KeyError) as error:
            where = self.describe_view(index, view)
            raise DatasetError(f"{where}: cannot read the image ({error})") from None

    def stored_image(self, index: int, view: int) -> bytes:
        return self.image(index, view).tobytes() if self.raw else self.jpeg(index, view)

    def stored_lengths(self, index: int) -> list[int] | None:
        return None if self.raw else np.diff(self.jpeg_offsets[index]).tolist()

    def object_jpegs(self, index: int) -> list[bytes]:
        """The encoded JPEGs of every view of one object, read with one slice of the byte array."""
        if self.raw:
            raise DatasetError(f"{self.path}: holds decoded pixels (packed with --raw), not JPEG files")
        offsets = self.jpeg_offsets[index]
        try:
            data = self._image_dataset()[offsets[0] : offsets[-1]].tobytes()
        except (OSError, KeyError) as error:
            raise DatasetError(f"{self.path}:{self.keys[index]}: cannot read the images ({error})") from None
        starts = offsets - offsets[0]
        return [data[start:end] for start, end in itertools.pairwise(starts)]

    def stored_size(self) -> int | None:
        return self.image_size if self.raw else super().stored_size()

    def reencoding(self, size: int | None = None) -> dict[str, Any] | None:
        if self.raw:  # the folder's pixels at the pack's size; at another size, resized from those
            return (
                None
                if size is None or size == self.image_size
                else {"image_size": self.image_size, "raw": True}
            )
        if not self.jpeg_quality:
            return None
        return {"image_size": self.image_size or 0, "jpeg_quality": self.jpeg_quality}

    def image(self, index: int, view: int, size: int | None = None) -> np.ndarray:
        if not self.raw:
            return super().image(index, view, size)
        try:
            pixels = self._image_dataset()[self.rows[index], view]
        except (OSError, KeyError) as error:
            where = self.describe_view(index, view)
            raise DatasetError(f"{where}: cannot read the pixels ({error})") from None
        return resize_pixels(pixels, size)

    def images(self, index: int, views: tuple[int, ...], size: int | None = None) -> list[np.ndarray]:
        if not self.raw:
            return super().images(index, views, size)
        return [self.image(index, view, size) for view in views]

    def latent(self, index: int, view: int) -> np.ndarray:
        return self.latent_array[index, view]

    def latents(self, index: int) -> np.ndarray:
        return self.latent_array[index]

    def all_latents(self) -> np.ndarray:
        return self.latent_array

    def close(self) -> None:
        if self._images is not None:
            self._images.file.close()
        self._images, self._owner = None, -1

    def _image_dataset(self) -> h5py.Dataset:
        if self._images is None or self._owner != os.getpid():
            self._images = h5py.File(self.path, "r")["pixels" if self.raw else "jpeg_bytes"]
            self._owner = os.getpid()
        return self._images

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_images"], state["_owner"] = None, -1
        return state
