"""Checking a training split before the first step: training refuses a broken dataset, or skips its bad
objects when asked (`3die train --skip-bad-objects`); `3die pack` and `3die evaluate` check both splits
the same way (`usable_splits`) and leave the bad objects out of the packed file, or of the evaluation,
when asked (`--skip-bad-objects`).

An object is bad when any view cannot be used: a missing folder, image or latent, no completion marker
(our folders), a JPEG without its start or end-of-image marker (truncated), a latent that does not load,
is not spec.LATENT_DIM floats, is non-finite or is outside the dataset's latent range, or an object listed
a second time. Folders are checked file by file without decoding (as `3die check --quick`); packed files
the same way from their arrays (each JPEG's markers, read with one slice per object; raw pixels need no
check).
Problems of the whole split (split files missing or misaligned, labels outside the classes) always refuse.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from benchmark.data.folder import (
    FolderViews,
    check_labels,
    manifest_classes,
    manifest_views,
    read_dataset_manifest,
    read_split_files,
)
from benchmark.data.packed import PackedViews, SkippedObject, open_packed, read_packed_manifest
from benchmark.data.views import DatasetError, ObjectViews, decode_jpeg
from render import spec
from render.check import dataset_rotation_range, jpeg_ends, jpeg_markers_problem, latents_problem
from render.manifest import SPLITS, ManifestError, read_objects_csv
from render.processes import exit_with_parent
from render.sampling import rotation_range_of
from render.sources import NPY_ERRORS
from render.writer import COMPLETE_MARKER

#: Objects per task when the check runs in several processes.
CHUNK = 64


def training_split(
    path: str | Path,
    split: str = "train",
    skip_bad_objects: bool = False,
    workers: int = 0,
    echo: Callable[[str], None] | None = None,
    share: tuple[int, int] = (0, 1),
    merge: Callable[[dict[int, str]], dict[int, str]] | None = None,
) -> ObjectViews:
    """The split of the dataset at `path` with every object checked (see the module docstring).

    Raises DatasetError naming the first bad object and how many there are, unless `skip_bad_objects`:
    then the split without them is returned and `echo` gets one line saying how many were skipped.
    DatasetError also for a split with no objects, or none usable.
    `workers` > 1 checks a folder in that many processes. Training processes split the check between
    them: `share` and `merge` as in `find_bad_objects`.
    """
    views = open_unchecked(Path(path), split)
    if not views.keys:
        raise DatasetError(f"{path}: the {split} split has no objects; train on a dataset that has some")
    bad = find_bad_objects(views, workers, share, merge)
    if not bad:
        return views
    counted, first = f"{len(bad)} of {len(views)} {split} objects", bad[min(bad)]
    if not skip_bad_objects or len(bad) == len(views):
        raise DatasetError(refusal_line(path, counted, first, "train" if len(bad) < len(views) else None))
    if echo is not None:
        echo(skipping_line(path, counted, first))
    return subset(views, usable_indices(views, bad))


def usable_splits(
    root: Path, splits: list[str], skip_bad_objects: bool = False, workers: int = 0, command: str = "pack"
) -> tuple[list[ObjectViews], list[SkippedObject]]:
    """The splits of the dataset at `root` (a folder, or a packed file) to pack or evaluate, each object
    checked as before training, and the objects left out (split order, then index order).

    Raises DatasetError naming the first bad object and how many there are (of both splits together) and
    `command` (the one to rerun with --skip-bad-objects), unless `skip_bad_objects`: then each split is
    returned without them. DatasetError also when every object of a split is bad.
    """
    opened = [open_unchecked(Path(root), split) for split in splits]
    validation = next((views.keys for views in opened if views.split == "val"), None)
    found = [find_bad_objects(views, workers, validation=validation) for views in opened]
    skipped = [
        SkippedObject(views.split, views.keys[index], bad[index])
        for views, bad in zip(opened, found, strict=True)
        for index in sorted(bad)
    ]
    if skipped:
        total = sum(len(views) for views in opened)
        counted = f"{len(skipped)} of {total} objects"
        pairs = zip(opened, found, strict=True)
        unusable = [views.split for views, bad in pairs if bad and len(bad) == len(views)]
        if unusable:
            counted += f" (every {' and every '.join(unusable)} object)"
        if not skip_bad_objects or unusable:
            raise DatasetError(refusal_line(root, counted, skipped[0].problem, None if unusable else command))
    kept = [subset(views, usable_indices(views, bad)) for views, bad in zip(opened, found, strict=True)]
    return kept, skipped


def refusal_line(path: str | Path, counted: str, first: str, skip_verb: str | None) -> str:
    """The error of a dataset with unusable objects: how many, the first, and the ways on (`skip_verb`:
    the command that may leave them out with --skip-bad-objects, None when that would leave nothing)."""
    skip = f" or {skip_verb} without them with --skip-bad-objects" if skip_verb else ""
    return (
        f"{path}: {counted} cannot be used (first: {first}); run `3die check {path}` for the full list, "
        f"repair the dataset (rerun `3die render`){skip}"
    )


def damaged_image_remedy(data: str | Path, kept: str = "", training: bool = False) -> str:
    """What to do when an image of the dataset `data` (a folder or a packed file) turns out not to decode
    while it is used (the checks before reading look at each JPEG's markers only); `kept` names what was
    kept, e.g. "the checkpoints are kept". `training`: a run resumes only on the objects it trained on,
    so leaving objects out starts another run."""
    kept = f" ({kept})" if kept else ""
    if training:
        mend = (
            "rerender those objects"
            if Path(data).is_dir()
            else "pack its folder again once they are rerendered"
        )
        return (
            f"run `3die check {data}` to list every damaged image, {mend}, and rerun to resume{kept}; "
            "a run resumes only on the objects it trained on, so training without them "
            "(--skip-bad-objects) needs a new --out"
        )
    if Path(data).is_dir():
        return (
            f"run `3die check {data}` to list every damaged file, then rerender those objects, or delete "
            f"the damaged files and rerun with --skip-bad-objects{kept}"
        )
    return (
        f"run `3die check {data}` to list every damaged image, then pack its dataset folder again after "
        f"rerendering those objects or deleting the damaged files (`3die pack FOLDER --out {data} "
        f"--skip-bad-objects`), and rerun{kept}"
    )


def skipping_line(path: str | Path, counted: str, first: str) -> str:
    """The line said when the unusable objects are left out (`--skip-bad-objects`)."""
    return f"{path}: skipping {counted}, which cannot be used (first: {first})"


def counted_per_split(kept: list[ObjectViews], skipped: list[SkippedObject]) -> str:
    """How many objects of each split were left out, of how many: "1 of 6 train and 1 of 2 val objects"
    (splits without skipped objects are not named)."""
    counts = []
    for views in kept:
        left_out = sum(entry.split == views.split for entry in skipped)
        if left_out:
            counts.append(f"{left_out} of {left_out + len(views)} {views.split}")
    return f"{' and '.join(counts)} objects"


def usable_indices(views: ObjectViews, bad: dict[int, str]) -> list[int]:
    """The indices of the split's objects that are not in `bad`, in order."""
    return [index for index in range(len(views)) if index not in bad]


def open_unchecked(path: Path, split: str) -> ObjectViews:
    """A split whose dataset-level files are valid, its objects not checked yet (duplicates kept)."""
    if not path.is_dir():
        if not path.exists():
            raise DatasetError(f"{path}: no such dataset folder or packed file")
        return open_packed(path, split, check_latents=False)  # find_bad_objects checks them per object
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    manifest = read_dataset_manifest(path)
    keys, labels = read_split_files(path, split, unique=False)
    classes = manifest_classes(path, manifest)
    check_labels(path / spec.split_labels_name(split), labels, len(classes), None if manifest else keys)
    check_object_list_agrees(path, split, keys, labels)
    reader = FolderViews(path, split, keys, labels, manifest_views(path, manifest), classes)
    reader.manifest = manifest  # read again by find_bad_objects (latent range, completion markers)
    return reader


def check_object_list_agrees(root: Path, split: str, keys: list[str], labels: np.ndarray) -> None:
    """DatasetError when the dataset's objects.csv (where there is one) gives an object of the split files
    another label or split: trained so, a class would be learnt under another's label, or a validation
    object trained on."""
    listed = root / spec.OBJECTS_CSV_NAME
    if not listed.is_file():
        return
    try:
        entries = {f"{entry.synset}/{entry.object_id}": entry for entry in read_objects_csv(listed)}
    except ManifestError as error:
        raise DatasetError(f"{error}; rerun `3die render` on this folder to rewrite it") from None
    for key, label in zip(keys, labels, strict=True):
        entry = entries.get(key)
        if entry is None:
            continue
        if entry.split != split or entry.label != label:
            there = f"label {entry.label}, split {entry.split}"
            raise DatasetError(
                f"{root / f'{split}_images.npy'}: {key} has label {int(label)} in split {split} here, but "
                f"{there} in {spec.OBJECTS_CSV_NAME}; rerun `3die render` on this folder to rewrite the "
                "split files"
            )


def find_bad_objects(
    views: ObjectViews,
    workers: int = 0,
    share: tuple[int, int] = (0, 1),
    merge: Callable[[dict[int, str]], dict[int, str]] | None = None,
    validation: list[str] | None = None,
) -> dict[int, str]:
    """Index -> the first problem of each unusable object of the split.

    `share` (k, n) reads only the files of objects k, k + n, k + 2n, ...; `merge` then joins the problems
    found by every share (the n training processes each check their share and exchange the results), so
    that the result is the same as one process checking everything. A train object the val split lists too
    is unusable: `validation` holds the val split's objects where the caller has opened it, else they are
    read from the dataset.
    """
    bad = {}
    seen: set[str] = set()
    folder = isinstance(views, FolderViews)
    where = "" if folder else f"{views.path}:"  # a packed file's problems name it, a folder's their file
    listing = spec.split_images_name if folder else "the {} split".format
    for index, key in enumerate(views.keys):
        if key in seen:
            bad[index] = f"{where}{key}: listed more than once in {listing(views.split)}"
        seen.add(key)
    if views.split == "train":  # a validation object trained on would inflate every score
        in_validation = set(_split_keys(views.path, "val") if validation is None else validation)
        for index, key in enumerate(views.keys):
            if key in in_validation:
                bad.setdefault(index, f"{where}{key}: listed in both {listing('train')} and {listing('val')}")
    indices = range(share[0], len(views), share[1])
    if isinstance(views, FolderViews):
        problems = _folder_problems(views, indices, workers)
    else:
        rotation = _rotation(views, read_packed_manifest(views.path))
        problems = [_packed_problem(views, index, rotation) for index in indices]
    found = {index: problem for index, problem in zip(indices, problems, strict=True) if problem is not None}
    for index, problem in (found if merge is None else merge(found)).items():
        bad.setdefault(index, problem)
    return bad


def subset(views: ObjectViews, indices: list[int]) -> ObjectViews:
    """The same split restricted to the objects `indices` (in that order)."""
    keys, labels = [views.keys[i] for i in indices], views.labels[indices]
    if isinstance(views, FolderViews):
        return FolderViews(views.path, views.split, keys, labels, views.views, views.classes)
    if isinstance(views, PackedViews):
        offsets = None if views.raw else views.jpeg_offsets[indices]
        return PackedViews(
            views.path,
            views.split,
            keys,
            labels,
            views.views,
            views.classes,
            views.rows[indices],
            views.latent_array[indices],
            views.image_size,
            offsets,
            views.jpeg_quality,
        )
    raise TypeError(f"cannot take a subset of a {type(views).__name__}")


def check_packed_file(path: Path, decode: bool = True, workers: int = 1) -> tuple[int, list[str]]:
    """`3die check FILE.h5`: (objects in the file, one line per unusable object of each split, an object
    of both splits among those of the train split). Objects are checked as before training; `decode` also
    decodes every JPEG, in `workers` processes. DatasetError when the file is no complete 3die pack."""
    objects, problems = 0, []
    opened = [open_unchecked(Path(path), split) for split in SPLITS]
    validation = next(views.keys for views in opened if views.split == "val")
    for views in opened:
        objects += len(views)
        bad = find_bad_objects(views, validation=validation)
        if decode and not views.raw:
            bad.update(_decoding_problems(views, usable_indices(views, bad), workers))
        problems += [bad[index] for index in sorted(bad)]
    return objects, problems


# --- one object -----------------------------------------------------------------------------------
def object_problem(folder: Path, views: int, rotation: str, marker: bool) -> str | None:
    """The first reason the object folder cannot be trained on, naming the file, or None."""
    try:
        names = set(os.listdir(folder))
    except FileNotFoundError:
        return f"{folder}: missing folder"
    except OSError as error:
        return f"{folder}: cannot list the folder ({error.strerror})"
    if marker and COMPLETE_MARKER not in names:
        return f"{folder}: incomplete, no completion marker (rerun `3die render` to finish it)"
    for view in range(views):
        for name in (spec.image_name(view), spec.latent_name(view)):
            if name not in names:
                return f"{folder / name}: missing"
        problem = jpeg_problem(folder / spec.image_name(view)) or latent_file_problem(
            folder / spec.latent_name(view), rotation
        )
        if problem is not None:
            return problem
    return None


def jpeg_problem(path: Path) -> str | None:
    """Whether the file starts and ends like a JPEG (a truncated one lacks its end-of-image marker)."""
    try:
        ends = jpeg_ends(path)
    except OSError as error:
        return f"{path}: cannot read the image ({error.strerror or error})"
    problem = jpeg_markers_problem(*ends)
    return None if problem is None else f"{path}: {problem}"


def latent_file_problem(path: Path, rotation: str) -> str | None:
    """Whether the latent file loads as (LATENT_DIM,) finite floats inside `rotation`'s dataset ranges."""
    try:
        latent = np.load(path, allow_pickle=False)
    except NPY_ERRORS as error:
        return f"{path}: cannot read the latent ({error})"
    if latent.shape != (spec.LATENT_DIM,):
        return f"{path}: latent of shape {latent.shape}, expected ({spec.LATENT_DIM},)"
    problem = latents_problem(latent[None], rotation)
    return None if problem is None else f"{path}: latent {problem.removeprefix('view 0 ')}"


def _split_keys(path: Path, split: str) -> list[str]:
    """The objects the dataset at `path` lists in `split`, [] when it has no readable such split (that
    split's own reading says what is wrong with it)."""
    try:
        return open_unchecked(path, split).keys
    except DatasetError:
        return []


# --- the whole folder -------------------------------------------------------------------------------
def _folder_problems(views: FolderViews, indices: range, workers: int) -> list[str | None]:
    manifest = getattr(views, "manifest", None)
    rotation = _rotation(views, manifest)
    check = partial(_check_key, views.path, views=views.views, rotation=rotation, marker=manifest is not None)
    keys = [views.keys[index] for index in indices]
    if workers <= 1 or len(keys) < 4 * CHUNK:
        return [check(key) for key in keys]
    with ProcessPoolExecutor(workers, initializer=exit_with_parent) as pool:
        return list(pool.map(check, keys, chunksize=CHUNK))


def _check_key(root: Path, key: str, views: int, rotation: str, marker: bool) -> str | None:
    return object_problem(root / key, views, rotation, marker)


def _packed_problem(views: PackedViews, index: int, rotation: str) -> str | None:
    problem = latents_problem(views.latents(index), rotation)
    if problem is not None:
        return f"{views.path}:{views.keys[index]}: latents {problem}"
    if views.raw:
        return None
    try:
        jpegs = views.object_jpegs(index)
    except DatasetError as error:
        return str(error)
    for view, data in enumerate(jpegs):
        problem = jpeg_markers_problem(data[:2], data[-2:], len(data))
        if problem is not None:
            return f"{views.describe_view(index, view)}: {problem}"
    return None


def _decoding_problems(views: PackedViews, indices: list[int], workers: int) -> dict[int, str]:
    """Index -> the first view of each packed object whose JPEG does not decode."""
    if workers <= 1 or len(indices) < 4 * CHUNK:
        problems = [_decoding_problem(views, index) for index in indices]
    else:
        with ProcessPoolExecutor(
            workers, initializer=_open_in_worker, initargs=(str(views.path), views.split)
        ) as pool:
            problems = list(pool.map(_decoding_problem_in_worker, indices, chunksize=CHUNK))
    return {index: problem for index, problem in zip(indices, problems, strict=True) if problem is not None}


def _decoding_problem(views: PackedViews, index: int) -> str | None:
    try:
        for view, data in enumerate(views.object_jpegs(index)):
            decode_jpeg(data, None, views.describe_view(index, view))
    except DatasetError as error:
        return str(error)
    return None


_worker_views: list[PackedViews] = []  # the split a decoding process reads, opened once by its initializer


def _open_in_worker(path: str, split: str) -> None:
    exit_with_parent()
    _worker_views.append(open_packed(Path(path), split, check_latents=False))


def _decoding_problem_in_worker(index: int) -> str | None:
    return _decoding_problem(_worker_views[0], index)


def _rotation(views: ObjectViews, manifest: dict | None) -> str:
    """The split's rotation range: its manifest's, else (the official downloads, 3DIEBench or
    3DIEBench-OOD) that of the first object whose latents tell it, "published" when none does."""
    if manifest is not None:
        return str(manifest.get("settings", {}).get("rotation", "published"))
    if isinstance(views, FolderViews):
        return dataset_rotation_range(views.path, views.keys)
    ranges = (rotation_range_of(latents) for latents in views.latent_array)
    return next((found for found in ranges if found is not None), "published")
