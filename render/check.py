"""Validate a dataset folder: every listed object complete, images decodable and of one size, latents of
shape (LATENT_DIM,) and in the ranges of the dataset's rotation range (an ood dataset's Euler angles lie
outside (-pi/2, pi/2)), split files consistent, no temporary file of a killed render left at the root. Works
on our folders and on the official download.

`check_dataset` returns a `CheckReport`; the `3die check` command prints it and exits non-zero when it
holds any problem.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from render import spec, writer
from render.manifest import SPLITS, read_objects_csv, shapenet_label
from render.processes import exit_with_parent
from render.sampling import outside_range, range_text, rotation_range_of
from render.sources import NPY_ERRORS, SourceError, model_library_problem, read_images_npy

RANGE_TOLERANCE = 1e-9
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
MAX_MESSAGES_PER_OBJECT = 6
ROOT_TEMP_MESSAGE = (
    "leftover temporary file of an interrupted `3die render`; rerun the same `3die render` command to "
    "remove it, or delete it"
)
VIEW_FILE = re.compile(r"^(image_(\d+)\.jpg|latent_(\d+)\.npy)$")


@dataclass(frozen=True)
class Expectations:
    """What every object folder must hold: `views` views of `size`x`size` px images (None: all images of
    the first object's size) and latents inside the ranges of the rotation range `rotation` ("published" or
    "ood"); `marker`: a completion marker is required."""

    views: int
    size: int | None
    rotation: str
    marker: bool


@dataclass
class CheckReport:
    """Outcome of a check: problems maps "SYNSET/OBJECT_ID" (or a file name) to its messages."""

    root: Path
    objects: int = 0
    images: int = 0
    problems: dict[str, list[str]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, key: str, message: str) -> None:
        self.problems.setdefault(key, []).append(message)

    def lines(self) -> list[str]:
        """One line per object (or file) with problems, then a summary line."""
        out = []
        for key in sorted(self.problems):
            messages = self.problems[key]
            shown = "; ".join(messages[:MAX_MESSAGES_PER_OBJECT])
            more = len(messages) - MAX_MESSAGES_PER_OBJECT
            out.append(f"{key}: {shown}" + (f"; and {more} more" if more > 0 else ""))
        failed = f", {len(self.failures)} recorded as failed in {spec.FAILURES_NAME}" if self.failures else ""
        verdict = "OK" if self.ok else f"{len(self.problems)} with problems"
        out.append(f"{self.root}: {self.objects} objects, {self.images} images checked{failed}: {verdict}")
        return out


def check_dataset(root: Path, workers: int = 1, decode: bool = True, progress: bool = False) -> CheckReport:
    """Check the dataset folder `root` (see module docstring); `decode=False` skips decoding the JPEGs
    (only their presence, header and end-of-image marker are checked)."""
    root = Path(root)
    report = CheckReport(root)
    if not root.is_dir():
        report.add(str(root), "not a folder")
        return report
    if writer.is_run_folder(root):
        report.add(str(root), "a training run folder, not a dataset; check the dataset it trained on")
        return report
    library = model_library_problem(root)
    if library is not None:
        report.add(str(root), f"{library} and check DATA")
        return report
    for path in writer.root_temp_files(root):
        report.add(path.name, ROOT_TEMP_MESSAGE)
    root_files = (
        spec.MANIFEST_NAME,
        spec.OBJECTS_CSV_NAME,
        *(f"{s}_{kind}.npy" for s in SPLITS for kind in ("images", "labels")),
    )
    for name in root_files:
        if (root / name).is_dir():  # read as absent, the dataset would look whole without it
            report.add(name, "a folder where this file belongs; move it away and rerun `3die render`")
    lost = writer.lost_manifest_problem(root)
    if lost is not None:
        report.add(spec.MANIFEST_NAME, lost)
        return report
    try:
        manifest = writer.read_manifest(root)
        failures = writer.read_failures(root)
        listed = _listed_objects(root)
        _check_split_files(root, listed, len(spec.dataset_classes(manifest)), report)
    except (ValueError, SourceError, writer.DatasetMismatchError) as error:  # unreadable dataset files
        report.add(str(root), str(error))
        return report
    # an object rendered by `--retry-failed` after it failed is complete, and checked like any other
    report.failures = {key: reason for key, reason in failures.items() if _complete(root / key) is not True}
    expected = [key for key in listed if key not in report.failures]
    if not expected:
        report.add(str(root), _no_objects_reason(root, listed))
    # with nothing listed (not a dataset: a parent folder, say) its subfolders are no unlisted objects,
    # but folders that cannot be read are still named: they may hold the objects
    _check_unlisted(root, set(listed), report, unlisted=bool(listed))
    if not listed:
        return report
    expectations = _expectations(root, manifest, expected)
    check = partial(_check_object_folder, root, expectations=expectations, decode=decode)
    results = _map(check, expected, workers, progress)
    for key, (messages, images) in zip(expected, results, strict=True):
        report.objects += 1
        report.images += images
        for message in messages:
            report.add(key, message)
    return report


# --- one object --------------------------------------------------------------------------------------
def check_object(folder: Path, expectations: Expectations, decode: bool = True) -> tuple[list[str], int]:
    """Problems of one object folder and the number of images checked."""
    folder = Path(folder)
    try:
        if not folder.is_dir():
            return ["missing folder"], 0
        names = set(os.listdir(folder))
    except OSError as error:  # an unreadable folder, or one inside an unreadable class folder
        return [f"cannot list the folder ({error.strerror or error}); make it readable and check again"], 0
    messages = []
    if expectations.marker and writer.COMPLETE_MARKER not in names:
        messages.append("incomplete: no completion marker (rerun `3die render` to redo it)")
    for name in sorted(names):
        if writer.TEMP_TAG in name:
            messages.append(
                f"leftover temporary file {name} of an interrupted write; delete it (a rerun of "
                "`3die render` redoes an incomplete object, not a complete one)"
            )
        match = VIEW_FILE.match(name)
        if match and int(match.group(2) or match.group(3)) >= expectations.views:
            messages.append(f"unexpected view file {name} (dataset has {expectations.views} views)")
    images = 0
    for view in range(expectations.views):
        image, latent = spec.image_name(view), spec.latent_name(view)
        if image not in names:
            messages.append(f"missing {image}")
        else:
            images += 1
            messages += _check_image(folder / image, expectations.size, decode)
        if latent not in names:
            messages.append(f"missing {latent}")
        else:
            messages += _check_latent(folder / latent, expectations.rotation)
    return messages, images


def _complete(folder: Path) -> bool | None:
    """`writer.is_complete`, None when the folder cannot be read (its object check says why)."""
    try:
        return writer.is_complete(folder)
    except OSError:
        return None


def _check_object_folder(
    root: Path, key: str, expectations: Expectations, decode: bool
) -> tuple[list[str], int]:
    return check_object(root / key, expectations, decode)


def _check_image(path: Path, size: int | None, decode: bool) -> list[str]:
    """Problems of one JPEG: unreadable, truncated, not RGB, or not size x size."""
    try:
        with Image.open(path) as image:
            if image.format != "JPEG":
                return [f"{path.name} is {image.format}, not JPEG"]
            if decode:
                image.load()
            elif jpeg_ends(path)[1] != JPEG_END:
                return [f"{path.name} is truncated (no end-of-image marker)"]
            problems = []
            if image.mode != "RGB":
                problems.append(f"{path.name} has mode {image.mode}, not RGB")
            if size is not None and image.size != (size, size):
                problems.append(f"{path.name} is {image.size[0]}x{image.size[1]}, expected {size}x{size}")
            return problems
    except (OSError, SyntaxError, ValueError) as error:
        return [f"{path.name} does not decode ({error})"]


def jpeg_ends(path: Path) -> tuple[bytes, bytes, int]:
    """The first two bytes, the last two bytes and the size of a file (OSError when it cannot be read)."""
    with path.open("rb") as handle:
        start = handle.read(2)
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(size - 2, 0))
        return start, handle.read(2), size


def jpeg_markers_problem(start: bytes, end: bytes, size: int) -> str | None:
    """Whether a JPEG of `size` bytes whose first and last two bytes are `start` and `end` is whole."""
    if size < 4:
        return f"cannot decode the image (truncated to {size} bytes)"
    if start != JPEG_START:
        return "cannot decode the image (not a JPEG)"
    if end != JPEG_END:
        return "cannot decode the image (truncated: no end-of-image marker)"
    return None


def _check_latent(path: Path, rotation: str) -> list[str]:
    """Problems of one latent file: unreadable, not a float (LATENT_DIM,) array, non-finite, or out of the
    range of the rotation range `rotation` (by more than RANGE_TOLERANCE)."""
    try:
        latent = np.load(path, allow_pickle=False)
    except NPY_ERRORS as error:
        return [f"{path.name} does not load ({error})"]
    if latent.shape != (spec.LATENT_DIM,):
        return [f"{path.name} has shape {latent.shape}, expected ({spec.LATENT_DIM},)"]
    problem = latents_problem(latent[None], rotation)
    return [] if problem is None else [f"{path.name} {problem.removeprefix('view 0 ')}"]


def latents_problem(latents: np.ndarray, rotation: str) -> str | None:
    """Problem of one object's (V, LATENT_DIM) latents: dtype, non-finite values, or values of its first
    such view outside the sampling ranges of a `rotation` ("published" or "ood") dataset by more than
    RANGE_TOLERANCE (`render.sampling.outside_range`)."""
    if not np.issubdtype(latents.dtype, np.floating):
        return f"has dtype {latents.dtype}, expected float64"
    if not np.isfinite(latents).all():
        return "holds non-finite values"
    outside = outside_range(latents, rotation, RANGE_TOLERANCE)
    if not outside.any():
        return None
    view = int(np.flatnonzero(outside.any(axis=1))[0])
    fields = ", ".join(
        f"{spec.LATENT_FIELDS[i]}={latents[view, i]:.4g}" for i in np.flatnonzero(outside[view])
    )
    angles = f" (the {rotation} range of the Euler angles is {range_text(rotation)})"
    return f"view {view} out of range: {fields}" + (angles if outside[view, spec.ROTATION].any() else "")


# --- dataset level -----------------------------------------------------------------------------------
def _no_objects_reason(root: Path, listed: list[str]) -> str:
    """Why a folder with nothing to check is not a dataset."""
    if listed:
        return f"no objects to check: every listed object is recorded as failed in {spec.FAILURES_NAME}"
    return (
        f"no objects: neither {spec.OBJECTS_CSV_NAME}, train/val_images.npy nor SYNSET/OBJECT_ID folders; "
        "is this the dataset folder?"
    )


def _listed_objects(root: Path) -> list[str]:
    """Object keys the dataset says it holds: objects.csv, else the split files, else the folders on disk.
    Without manifest.json (the official download) a split without its images file is, for the readers,
    every SYNSET/OBJECT_ID folder on disk of a ShapeNetCore v2 synset outside the other split: those
    folders are listed too."""
    objects_csv = root / spec.OBJECTS_CSV_NAME
    if objects_csv.is_file():
        return [f"{entry.synset}/{entry.object_id}" for entry in read_objects_csv(objects_csv)]
    splits = [_split_keys(root, split) for split in SPLITS]
    from_splits = [key for keys in splits for key in keys or []]
    if from_splits and (None not in splits or (root / spec.MANIFEST_NAME).is_file()):
        return from_splits
    try:
        on_disk = _folders_on_disk(root)[0]
    except OSError:  # an unreadable dataset folder: `_check_unlisted` says so
        return from_splits
    official = {key for key in on_disk if key.split("/")[0] in spec.shapenet_synset_ids()}
    return from_splits + sorted(official - set(from_splits))


def _split_keys(root: Path, split: str) -> list[str] | None:
    """ "SYNSET/OBJECT_ID" keys of ROOT/{split}_images.npy, None when the file is absent."""
    path = root / spec.split_images_name(split)
    return (
        [f"{synset}/{object_id}" for synset, object_id in read_images_npy(path)] if path.is_file() else None
    )


def _folders_on_disk(root: Path) -> tuple[set[str], list[str]]:
    """ "SYNSET/OBJECT_ID" of every second-level folder, and the first-level folders that cannot be
    listed."""
    found, unreadable = set(), []
    for synset in _subfolders(root):
        if synset.name.startswith("."):
            continue
        try:
            found.update(f"{synset.name}/{obj.name}" for obj in _subfolders(synset))
        except OSError:
            unreadable.append(synset.name)
    return found, unreadable


def _subfolders(folder: Path) -> list[Path]:
    """The folders in `folder` (links to folders included); OSError when it cannot be listed."""
    found = []
    for entry in os.scandir(folder):
        try:
            if entry.is_dir():
                found.append(Path(entry.path))
        except OSError:  # an entry that cannot be examined is no folder to list
            continue
    return found


def _check_unlisted(root: Path, listed: set[str], report: CheckReport, unlisted: bool = True) -> None:
    """Folders that cannot be listed and (`unlisted`) object folders on disk that `listed` lacks."""
    try:
        found, unreadable = _folders_on_disk(root)
    except OSError as error:
        report.add(str(root), f"cannot list the folder ({error.strerror or error}); make it readable")
        return
    for name in unreadable:
        if not any(key.startswith(f"{name}/") for key in listed):  # listed objects say it themselves
            report.add(name, "cannot list this class folder; make it readable and check again")
    for key in sorted(found - listed) if unlisted else ():
        report.add(key, "present on disk but not listed in the dataset's object list")


def _check_split_files(root: Path, listed: list[str], classes: int, report: CheckReport) -> None:
    """Split files: labels aligned with images and within the dataset's `classes`; in our folders they
    list exactly the complete objects."""
    present = {}
    objects_csv = root / spec.OBJECTS_CSV_NAME
    entries = read_objects_csv(objects_csv) if objects_csv.is_file() else []
    listed_labels = {f"{entry.synset}/{entry.object_id}": entry.label for entry in entries}
    listed_splits = {f"{entry.synset}/{entry.object_id}": entry.split for entry in entries}
    shapenet = not objects_csv.is_file() and not (root / spec.MANIFEST_NAME).is_file()  # the official layout
    reference, remedy = (
        ("the ShapeNet synsets'", "without manifest.json the labels must be ShapeNet's (sorted synsets)")
        if shapenet
        else (f"{spec.OBJECTS_CSV_NAME}'s", "rerun `3die render` on this folder to rewrite the split files")
    )
    for split in SPLITS:
        keys = _split_keys(root, split)
        if keys is None:
            continue
        if shapenet:
            listed_labels.update((key, shapenet_label(key.split("/")[0])) for key in keys)
        present[split] = keys
        labels_path = root / spec.split_labels_name(split)
        if not labels_path.is_file():
            report.add(f"{split}_labels.npy", "missing")
            continue
        try:
            labels = np.load(labels_path, allow_pickle=False)
        except NPY_ERRORS as error:
            report.add(labels_path.name, f"does not load ({error})")
            continue
        if labels.ndim == 1 and len(labels) != len(keys):
            relation = "longer" if len(labels) > len(keys) else "shorter"
            report.add(
                labels_path.name,
                f"{len(labels)} labels for {len(keys)} objects in {split}_images.npy ({relation}); the two "
                "files must list the same objects in the same order",
            )
        elif labels.shape != (len(keys),) or not np.issubdtype(labels.dtype, np.integer):
            report.add(
                labels_path.name, f"shape {labels.shape} {labels.dtype}, expected ({len(keys)},) integers"
            )
        elif len(bad := labels[(labels < 0) | (labels >= classes)]):
            report.add(
                labels_path.name,
                f"{len(bad)} labels outside 0..{classes - 1} (the dataset's classes), first {int(bad[0])}",
            )
        elif differ := [
            (key, int(label), listed_labels[key])
            for key, label in zip(keys, labels, strict=True)
            if listed_labels.get(key, label) != label
        ]:
            key, label, expected = differ[0]
            report.add(
                labels_path.name,
                f"{len(differ)} labels differ from {reference} (first {key}: {label} here, {expected} "
                f"there); {remedy}",
            )
        for key, count in sorted(Counter(keys).items()):
            if count > 1:
                report.add(key, f"listed {count} times in {split}_images.npy")
            if listed_splits.get(key, split) != split:
                report.add(
                    key,
                    f"listed in {split}_images.npy, but {spec.OBJECTS_CSV_NAME} puts it in the "
                    f"{listed_splits[key]} split; {remedy}",
                )
    if len(present) == len(SPLITS):
        for key in sorted(set(present["train"]) & set(present["val"])):
            report.add(key, "listed in both train_images.npy and val_images.npy")
    if not (root / spec.OBJECTS_CSV_NAME).is_file():
        return
    if not present:
        report.add("split files", "missing (rerun `3die render` on this folder to write them)")
        return
    in_splits = {key for keys in present.values() for key in keys}
    known = {key: _complete(root / key) for key in listed}
    complete = {key for key, done in known.items() if done}
    unknown = {key for key, done in known.items() if done is None}  # unreadable: the object check says so
    for key in sorted(complete - in_splits):
        report.add(key, "complete but missing from the split files (rerun `3die render` to rewrite them)")
    for key in sorted(in_splits - complete - unknown):
        report.add(key, "in the split files but not complete")


def _expectations(root: Path, manifest: dict | None, expected: list[str]) -> Expectations:
    """Views, image size and latent range from manifest.json; without one, the published views, the first
    object's image size and the rotation range its latents tell (`dataset_rotation_range`)."""
    settings = (manifest or {}).get("settings", {})
    size = settings.get("size")
    if size is None and expected:
        first = root / expected[0] / spec.image_name(0)
        size = _image_size(first)
    if manifest is None:  # the official downloads: 3DIEBench or 3DIEBench-OOD
        rotation = dataset_rotation_range(root, expected)
    else:
        rotation = settings.get("rotation", "published")
    return Expectations(
        views=int(settings.get("views", spec.VIEWS_PER_OBJECT)),
        size=size,
        rotation=rotation,
        marker=manifest is not None,
    )


def dataset_rotation_range(root: Path, keys: list[str]) -> str:
    """The rotation range of a dataset without manifest.json: that of the first of its objects `keys`
    whose latent_0.npy tells it (`rotation_range_of`; a missing or damaged file is passed over, and the
    checks report it), "published" when none does."""
    for key in keys:
        try:
            latent = np.load(root / key / spec.latent_name(0), allow_pickle=False)
        except NPY_ERRORS:
            continue
        if latent.shape == (spec.LATENT_DIM,) and np.issubdtype(latent.dtype, np.floating):
            rotation = rotation_range_of(latent)
            if rotation is not None:
                return rotation
    return "published"


def _image_size(path: Path) -> int | None:
    try:
        with Image.open(path) as image:
            return image.size[0]
    except OSError:
        return None


def _map(function, keys: list[str], workers: int, progress: bool) -> list:
    bar = partial(tqdm, total=len(keys), unit="obj", desc="check", disable=not progress)
    if workers <= 1 or len(keys) < 2 * workers:
        return [function(key) for key in bar(keys)]
    with ProcessPoolExecutor(workers, initializer=exit_with_parent) as pool:
        return list(bar(pool.map(function, keys, chunksize=16)))
