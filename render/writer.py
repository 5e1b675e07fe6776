"""Everything the renderer writes into a dataset folder, written so that a killed run loses nothing.

Each image and latent is written under a temporary name in its own folder and renamed into place
(`os.replace`), so a reader never sees half a file. An object counts as complete only when its
completion marker exists; the marker is written after the last view. A rerun skips complete objects
and renders incomplete ones again from scratch (their latents come from a per-object seed, so they are
the same). Images are true RGB JPEGs: the published generator handed an RGB array to OpenCV, which
expects BGR, so the published JPEGs very likely have red and blue swapped relative to their latent hues.
`ViewWriter` does the JPEG encoding and file writes of `write_view` on a background thread, so that
they overlap the next view's render (Blender releases the GIL while it renders).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from render import spec
from render.locks import LockBusy, exclusive_lock
from render.manifest import SPLITS
from render.sampling import ROTATION_RANGES
from render.sources import ObjectSpec

COMPLETE_MARKER = ".complete"
CLAIM_NAME = ".claim"  # the file a process locks while it renders the object (`claim_object`)
WARNINGS_NAME = "warnings.jsonl"
LOCK_NAME = ".3die.lock"
TEMP_TAG = ".tmp-"
JPEG_QUALITY = 95  # OpenCV's default, which the published generator used
#: Fields of manifest.json's "source" that say where the objects lie, not which they are: a resumed render
#: may read them from another path (a moved copy, or each SLURM node's own mount); objects.csv pins the list.
SOURCE_LOCATION_FIELDS = ("root", "objects_file")


class DatasetMismatchError(Exception):
    """An existing dataset folder was made with other settings or another object list."""


# --- one object ----------------------------------------------------------------------------------
def object_dir(root: Path, obj: ObjectSpec) -> Path:
    """ROOT/SYNSET/OBJECT_ID."""
    return Path(root) / obj.synset / obj.object_id


def is_complete(folder: Path) -> bool:
    """Whether every view of the object in `folder` was written (its completion marker exists)."""
    return (Path(folder) / COMPLETE_MARKER).is_file()


@contextlib.contextmanager
def claim_object(folder: Path):
    """Hold an exclusive, non-blocking lock on the object's folder (created if missing) while rendering it.

    Yields True when this process holds the claim, False when another process (a second copy of the
    same shard, say) is rendering the object now. The lock is `render.locks.exclusive_lock` on the folder's
    claim file, CLAIM_NAME: the kernel's, so it goes away with its process, even one killed by SIGKILL,
    and usable on NFS.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(exclusive_lock(folder / CLAIM_NAME, wait=False))
        except LockBusy:
            yield False
            return
        yield True


def start_object(folder: Path) -> None:
    """Create the object's folder, or empty it of everything a previous, interrupted run left there."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.iterdir():
        if path.is_file() and (_is_ours(path.name) or TEMP_TAG in path.name):
            path.unlink()


def write_view(folder: Path, view: int, image: np.ndarray, latent: np.ndarray) -> None:
    """Atomically write view `view`: image (H, W, 3) uint8 true RGB as JPEG, then its latent as float64."""
    _write_checked(folder, view, *checked_view(image, latent))


def checked_view(image: np.ndarray, latent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image, latent) as written: image (H, W, 3) uint8, latent (LATENT_DIM,) float64, else ValueError."""
    latent = np.asarray(latent, dtype=np.float64)
    if latent.shape != (spec.LATENT_DIM,):
        raise ValueError(f"latent must have shape ({spec.LATENT_DIM},), got {latent.shape}")
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    return image, latent


def _write_checked(folder: Path, view: int, image: np.ndarray, latent: np.ndarray) -> None:
    with _atomic(folder / spec.image_name(view)) as handle:
        Image.fromarray(image).save(handle, format="JPEG", quality=JPEG_QUALITY)
    with _atomic(folder / spec.latent_name(view)) as handle:
        np.save(handle, latent)


class ViewWriter:
    """`write_view` on one background thread: `write` checks the view and queues it; the JPEG encoding and
    the atomic file writes run while the caller renders the next view.

    At most `max_pending` views wait (their images stay in memory). A failed write is raised by the next
    `write` or by `flush`; leaving a `with` block flushes, so when the block ends normally every view is on
    disk. Leaving it with an exception waits for the queued writes and keeps the first exception.
    """

    def __init__(self, max_pending: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="3die-view-writer")
        self._pending: deque[Future] = deque()
        self._max_pending = max(1, max_pending)

    def write(self, folder: Path, view: int, image: np.ndarray, latent: np.ndarray) -> None:
        """Queue view `view` (same arguments as `write_view`; a wrong shape raises here, at once)."""
        checked = checked_view(image, latent)
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(_write_checked, folder, view, *checked))

    def flush(self) -> None:
        """Wait until every queued view is written; raises the first failed write."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Flush, then stop the thread."""
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> ViewWriter:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
            return
        self._pool.shutdown(wait=True)  # the block's exception wins over any failed write


def finish_object(folder: Path, views: int) -> None:
    """Mark the object complete (written last, atomically)."""
    with _atomic(folder / COMPLETE_MARKER) as handle:
        handle.write(json.dumps({"views": views}).encode())


def _is_ours(name: str) -> bool:
    return name == COMPLETE_MARKER or (
        (name.startswith("image_") and name.endswith(".jpg"))
        or (name.startswith("latent_") and name.endswith(".npy"))
    )


@contextlib.contextmanager
def _atomic(path: Path):
    """Yield a binary handle on a temporary file beside `path`; rename it to `path` when the block ends."""
    temp = path.with_name(f".{path.name}{TEMP_TAG}{os.getpid()}")
    try:
        with temp.open("wb") as handle:
            yield handle
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


# --- failures and warnings ------------------------------------------------------------------------
def record_failure(root: Path, obj: ObjectSpec, reason: str) -> None:
    """Append one line to ROOT/failures.jsonl: the object could not be rendered, and why."""
    _append_jsonl(Path(root) / spec.FAILURES_NAME, _object_record(obj, reason))


def record_warning(root: Path, obj: ObjectSpec, message: str) -> None:
    """Append one line to ROOT/warnings.jsonl: the object rendered, but not exactly as modelled."""
    _append_jsonl(Path(root) / WARNINGS_NAME, _object_record(obj, message))


def link_target(path: Path) -> Path:
    """The file that writing `path` should replace: a symbolic link's target (a rename onto the link
    would turn it into a regular file and leave the target as it was), else `path` itself."""
    path = Path(path)
    return path.resolve() if path.is_symlink() else path


def is_run_folder(path: Path) -> bool:
    """Whether `path` is a training run folder (`3die train` writes checkpoints/ and config.json), which
    is never a dataset."""
    return (Path(path) / "checkpoints").is_dir() and (Path(path) / "config.json").is_file()


def read_failures(root: Path) -> dict[str, str]:
    """Object key ("SYNSET/OBJECT_ID") -> reason, from ROOT/failures.jsonl (empty when absent)."""
    return dict(_read_records(Path(root) / spec.FAILURES_NAME, "failure"))


def read_warnings(root: Path) -> dict[str, list[str]]:
    """Object key -> the warnings of its renders, from ROOT/warnings.jsonl (empty when absent)."""
    warnings: dict[str, list[str]] = {}
    for key, message in _read_records(Path(root) / WARNINGS_NAME, "warning"):
        warnings.setdefault(key, []).append(message)
    return warnings


def _read_records(path: Path, kind: str) -> list[tuple[str, str]]:
    """(object key, reason) of each line of a JSON-lines record file; DatasetMismatchError naming a line
    that is not such a record."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            records.append((record["object"], record["reason"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DatasetMismatchError(
                f"{path}:{number}: not a {kind} record; fix or delete the line"
            ) from None
    return records


def _object_record(obj: ObjectSpec, reason: str) -> dict:
    return {"object": obj.key, "synset": obj.synset, "object_id": obj.object_id, "reason": reason}


def _append_jsonl(path: Path, record: dict) -> None:
    # One write() of one line on an O_APPEND descriptor, under the dataset lock: O_APPEND alone keeps the
    # lines of concurrent processes apart on a local disk but not on NFS.
    line = (json.dumps(record) + "\n").encode()
    with exclusive_lock(path.parent / LOCK_NAME):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


# --- dataset-level files --------------------------------------------------------------------------
def lost_manifest_problem(root: Path) -> str | None:
    """Why a folder without manifest.json cannot be read as the official download: `3die render` writes
    manifest.json before objects.csv, so a folder with objects.csv and no manifest.json has lost it.
    None when that is not so."""
    root = Path(root)
    if (root / spec.MANIFEST_NAME).is_file() or not (root / spec.OBJECTS_CSV_NAME).is_file():
        return None
    if (root / spec.TAXONOMY_NAME).is_file():  # a library of models (`3die objects`), not a dataset
        return None
    return (
        f"{root / spec.MANIFEST_NAME}: missing, although {spec.OBJECTS_CSV_NAME} says 3die rendered this "
        "folder (without it the folder would be read as the official download: 50 views, ShapeNet labels); "
        "restore it, or rerun `3die render` into this folder with the options that made it"
    )


def read_manifest(root: Path) -> dict | None:
    """ROOT/manifest.json as a dict, or None when the folder has none.

    Raises DatasetMismatchError naming the file when it is not valid JSON, not an object, or its settings
    are unusable (views and size must be positive integers, the rotation range a known one).
    """
    path = Path(root) / spec.MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _damaged(path, f"not JSON: {error}") from None
    if not isinstance(manifest, dict):
        raise _damaged(path, f"a JSON {type(manifest).__name__}, not an object")
    if manifest.get("format", spec.DATASET_FORMAT) != spec.DATASET_FORMAT:
        raise DatasetMismatchError(
            f"{path}: dataset format {manifest['format']!r}, and this version of 3die reads "
            f"{spec.DATASET_FORMAT!r}; use the version that wrote it, or render the dataset again"
        )
    settings = manifest.get("settings", {})
    if not isinstance(settings, dict):
        raise _damaged(path, "its settings are not an object")
    for name in ("views", "size"):
        value = settings.get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _damaged(path, f"settings.{name} is {value!r}, not a positive integer")
    if settings.get("rotation", ROTATION_RANGES[0]) not in ROTATION_RANGES:
        raise _damaged(path, f"settings.rotation is {settings['rotation']!r}, not one of {ROTATION_RANGES}")
    return manifest


def _damaged(path: Path, reason: str) -> DatasetMismatchError:
    return DatasetMismatchError(
        f"{path}: damaged dataset manifest ({reason}); restore it, or delete it and rerun `3die render` with "
        "the dataset's options to rewrite it"
    )


def _identity(key: str, value: object) -> object:
    """The part of a manifest field that defines the dataset: package versions do not, nor do the source's
    paths (a moved or differently mounted copy of the same objects may resume the render)."""
    if key == "versions":
        return None
    if key == "source" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in SOURCE_LOCATION_FIELDS}
    return value


def _changes(key: str, old: object, new: object) -> list[str]:
    """ "KEY: OLD -> NEW" for a manifest field that differs, one per differing entry of a dict field
    ("settings.rotation: 'published' -> 'ood'"); nested values shortened."""
    if old == new:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            f"{key}.{name}: {_short(old.get(name))} -> {_short(new.get(name))}"
            for name in sorted(set(old) | set(new), key=str)
            if old.get(name) != new.get(name)
        ]
    return [f"{key}: {_short(old)} -> {_short(new)}"]


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_manifest(root: Path, manifest: dict) -> None:
    """Write ROOT/manifest.json, or check that the existing one has the same settings, source and seed.

    Package versions and where the source lies (`SOURCE_LOCATION_FIELDS`) may differ between runs (the
    existing file keeps the first run's); anything else raises DatasetMismatchError naming the differing
    fields.
    """
    existing = read_manifest(root)
    if existing is not None:
        differing = [
            change
            for key in manifest
            for change in _changes(key, _identity(key, existing.get(key)), _identity(key, manifest[key]))
        ]
        if differing:
            raise DatasetMismatchError(
                f"{Path(root) / spec.MANIFEST_NAME}: this folder was rendered with other settings "
                f"({'; '.join(differing)}); rerun with the same options or choose another --out"
            )
        return
    Path(root).mkdir(parents=True, exist_ok=True)
    with _atomic(Path(root) / spec.MANIFEST_NAME) as handle:
        handle.write((json.dumps(manifest, indent=2) + "\n").encode())


def write_split_files(root: Path, objects: Iterable[ObjectSpec]) -> dict[str, int]:
    """Write ROOT/{train,val}_images.npy ("/SYNSET/OBJECT_ID/" strings) and {train,val}_labels.npy (int64).

    Returns the number of objects per split.
    """
    counts = {}
    objects = list(objects)
    for split in SPLITS:
        chosen = [o for o in objects if o.split == split]
        images = np.array([f"/{o.synset}/{o.object_id}/" for o in chosen], dtype=str)
        labels = np.array([o.label for o in chosen], dtype=np.int64)
        for name, array in ((spec.split_images_name(split), images), (spec.split_labels_name(split), labels)):
            with _atomic(Path(root) / name) as handle:
                np.save(handle, array)
        counts[split] = len(chosen)
    return counts


def finalize(root: Path, objects: Iterable[ObjectSpec]) -> dict[str, int]:
    """Write the split files for the objects of `objects` that are complete; safe to run from many shards.

    A lock file serialises concurrent finalisations, so the last shard to finish writes the full lists; the
    temporary files a killed run left at the root go first.
    """
    with dataset_lock(root):
        remove_root_temp_files(root)
        done = [o for o in objects if is_complete(object_dir(root, o))]
        return write_split_files(root, done)


@contextlib.contextmanager
def dataset_lock(root: Path):
    """Hold the dataset's lock (ROOT/.3die.lock, exclusive, blocking) for the block.

    Every file at the dataset root that is written atomically (manifest.json, objects.csv, the split files)
    is written under this lock, so while it is held no live process has a temporary file at the root.
    """
    with exclusive_lock(Path(root) / LOCK_NAME):
        yield


# --- temporary files at the dataset root ------------------------------------------------------------
#: The dataset-root files written atomically: under `.NAME.tmp-PID` (`_atomic`) or `.NAME.XXXXXXXX.tmp`
#: (render.files.write_bytes_atomically, for objects.csv) before the rename.
ROOT_FILES = (
    spec.MANIFEST_NAME,
    spec.OBJECTS_CSV_NAME,
    *(f"{split}_{kind}.npy" for split in SPLITS for kind in ("images", "labels")),
)
ROOT_TEMP = re.compile(
    rf"\.(?:{'|'.join(re.escape(name) for name in ROOT_FILES)})(?:{re.escape(TEMP_TAG)}\d+|\.[a-z0-9_]+\.tmp)"
)


def is_root_temp(name: str) -> bool:
    """Whether `name` is the temporary name of one of `ROOT_FILES` (and nothing else, e.g. a user's file)."""
    return ROOT_TEMP.fullmatch(name) is not None


def root_temp_files(root: Path) -> list[Path]:
    """The temporary files of `ROOT_FILES` in the folder `root`, sorted by name."""
    return sorted(p for p in Path(root).iterdir() if is_root_temp(p.name) and p.is_file())


def remove_root_temp_files(root: Path) -> list[Path]:
    """Delete the temporary files that a killed run left at the dataset root; returns what was deleted.

    Call it holding `dataset_lock(root)`: the root files are written only under that lock, so a temporary
    file found while holding it belongs to no live process (another shard, worker or node), only to a killed
    one. That is the root's counterpart of `start_object`, which sweeps an object's folder under its claim.
    """
    leftovers = root_temp_files(root)
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers
