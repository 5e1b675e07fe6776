"""Read a dataset folder: ours (manifest.json, objects.csv, split files) or the official 3DIEBench download
(split files only), file by file as the published loader does.

The split files `{split}_images.npy` ("/SYNSET/OBJECT_ID/" strings) and `{split}_labels.npy` (int64) list the
objects; views and classes come from manifest.json when there is one, else from the published dataset
(50 views, the 55 ShapeNetCore v2 synsets). The official download comes without split files: a folder with
neither manifest.json nor a split's images file gets the published split (`official_download_split`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmark.data.views import ClassInfo, DatasetError, ObjectViews, check_latent
from render import spec, writer
from render.manifest import SPLITS, ManifestError, read_official_val, shapenet_label
from render.sources import NPY_ERRORS, SourceError, model_library_problem, read_images_npy

#: How many missing files an error message names before summarising.
NAMED_MISSING = 4


def open_folder(root: Path, split: str = "train") -> FolderViews:
    """Open one split of a dataset folder, checking split files, classes and that every view exists.

    Raises DatasetError naming the file for a missing or misaligned split file, a missing object folder
    or view, or a first latent of the wrong shape.
    """
    root = Path(root)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    manifest = read_dataset_manifest(root)
    keys, labels = read_split_files(root, split)
    classes = manifest_classes(root, manifest)
    check_labels(root / spec.split_labels_name(split), labels, len(classes), None if manifest else keys)
    views = manifest_views(root, manifest)
    for key in keys:
        check_object_folder(root / key, views)
    reader = FolderViews(root, split, keys, labels, views, classes)
    if keys:
        reader.latent(0, 0)
    return reader


class FolderViews(ObjectViews):
    """One split of a dataset folder; every read opens one file (`ROOT/SYNSET/OBJECT_ID/...`)."""

    kind = "folder"

    def __init__(
        self,
        root: Path,
        split: str,
        keys: list[str],
        labels: np.ndarray,
        views: int,
        classes: tuple[ClassInfo, ...],
    ) -> None:
        self.path = Path(root)
        self.split = split
        self.keys = keys
        self.labels = labels
        self.views = views
        self.classes = classes

    def view_path(self, index: int, view: int, latent: bool = False) -> Path:
        name = spec.latent_name(view) if latent else spec.image_name(view)
        return self.path / self.keys[index] / name

    def jpeg(self, index: int, view: int) -> bytes:
        path = self.view_path(index, view)
        try:
            return path.read_bytes()
        except OSError as error:
            raise DatasetError(f"{path}: cannot read the image ({error.strerror or error})") from None

    def stored_lengths(self, index: int) -> list[int]:
        lengths = []
        for view in range(self.views):
            path = self.view_path(index, view)
            try:
                lengths.append(path.stat().st_size)
            except OSError as error:
                raise DatasetError(f"{path}: cannot read the image ({error.strerror or error})") from None
        return lengths

    def latent(self, index: int, view: int) -> np.ndarray:
        path = self.view_path(index, view, latent=True)
        try:
            latent = np.load(path, allow_pickle=False)
        except NPY_ERRORS as error:
            raise DatasetError(f"{path}: cannot read the latent ({error})") from None
        return check_latent(latent, str(path))

    def describe_view(self, index: int, view: int) -> str:
        return str(self.view_path(index, view))


# --- dataset-level files ---------------------------------------------------------------------------
def read_dataset_manifest(root: Path) -> dict | None:
    """ROOT/manifest.json, or None for a folder without one (the official download)."""
    path = root / spec.MANIFEST_NAME
    if not root.is_dir():
        raise DatasetError(f"{root}: not a dataset folder (no such directory)")
    if not path.is_file():
        lost = writer.lost_manifest_problem(root)
        if lost is not None:
            raise DatasetError(lost)
        return None
    try:
        return writer.read_manifest(root)
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the dataset manifest ({error.strerror or error})") from None
    except writer.DatasetMismatchError as error:  # damaged, or of another format
        raise DatasetError(str(error)) from None


def manifest_views(root: Path, manifest: dict | None) -> int:
    """Views per object of a dataset folder from its manifest as `read_dataset_manifest` returns it (a
    `settings.views` there is a positive integer), or the published 50 for a folder without a manifest
    (the official download). DatasetError naming the manifest when it has no view count."""
    if manifest is None:
        return spec.VIEWS_PER_OBJECT
    views = manifest.get("settings", {}).get("views")
    if views is not None:
        return views
    raise DatasetError(
        f"{root / spec.MANIFEST_NAME}: settings.views is {views!r}, expected a whole number of views per "
        "object; the manifest is damaged: restore it, or render the dataset again into a new folder"
    )


def read_split_files(root: Path, split: str, unique: bool = True) -> tuple[list[str], np.ndarray]:
    """("SYNSET/OBJECT_ID" keys, (N,) int64 labels) of one split; DatasetError for a missing or
    misaligned file, or (`unique`) an object listed twice."""
    images_path, labels_path = root / spec.split_images_name(split), root / spec.split_labels_name(split)
    library = model_library_problem(root)
    if library is not None:
        raise DatasetError(f"{root}: {library} and give DATA")
    if not images_path.is_file() and is_official_download(root):
        return official_download_split(root, split)
    for path in (images_path, labels_path):
        if not path.is_file():
            raise DatasetError(
                f"{path}: missing; a dataset folder lists its objects in {split}_images.npy and "
                f"{split}_labels.npy (rerun `3die render` on it to write them)"
            )
    try:
        keys = [f"{synset}/{object_id}" for synset, object_id in read_images_npy(images_path)]
    except SourceError as error:
        raise DatasetError(str(error)) from None
    try:
        labels = np.load(labels_path, allow_pickle=False)
    except NPY_ERRORS as error:
        raise DatasetError(f"{labels_path}: cannot read the labels ({error})") from None
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{labels_path}: expected a 1-d integer array, got {labels.shape} {labels.dtype}")
    if len(labels) != len(keys):
        relation = "longer" if len(labels) > len(keys) else "shorter"
        raise DatasetError(
            f"{labels_path}: {len(labels)} labels for {len(keys)} objects in {images_path.name} "
            f"({relation}); the two files must list the same objects in the same order"
        )
    if unique and len(set(keys)) != len(keys):
        raise DatasetError(f"{images_path}: lists an object more than once")
    return keys, labels.astype(np.int64)


def is_official_download(root: Path) -> bool:
    """Whether the folder may be the official download: no manifest.json, so its split files may be absent
    (each split then comes from `official_download_split`)."""
    return not (root / spec.MANIFEST_NAME).is_file()


def official_download_split(root: Path, split: str) -> tuple[list[str], np.ndarray]:
    """One split of the official 3DIEBench download, which has no split files: its SYNSET/OBJECT_ID folders
    (ShapeNetCore v2 synsets) in the validation list (ROOT/val_images.npy when there is one, else the
    official list, render.spec.OFFICIAL_VAL_CSV) for "val", the others for "train"; sorted keys, ShapeNet
    class labels. DatasetError when ROOT holds no such folder."""
    labels = {synset.synset: synset.label for synset in spec.shapenet_synsets()}
    on_disk = sorted(
        f"{synset}/{entry.name}"
        for synset in labels
        if (root / synset).is_dir()
        for entry in os.scandir(root / synset)
        if entry.is_dir()
    )
    if not on_disk:
        raise DatasetError(
            f"{root}: not a rendered dataset (no {spec.MANIFEST_NAME}, no {split}_images.npy, no "
            "SYNSET/OBJECT_ID folders as in the official download); give the folder `3die render --out` "
            "wrote, the official 3DIEBench download, or a file `3die pack` made"
        )
    validation = set(_validation_keys(root))
    keys = [key for key in on_disk if (key in validation) == (split == "val")]
    return keys, np.array([labels[key.split("/")[0]] for key in keys], dtype=np.int64)


def _validation_keys(root: Path) -> list[str]:
    """The official download's validation objects: ROOT/val_images.npy, else the official list."""
    path = root / "val_images.npy"
    try:
        if path.is_file():
            return [f"{synset}/{object_id}" for synset, object_id in read_images_npy(path)]
        return [f"{entry.synset}/{entry.object_id}" for entry in read_official_val()]
    except (SourceError, ManifestError) as error:
        raise DatasetError(str(error)) from None


def manifest_classes(root: Path, manifest: dict | None) -> tuple[ClassInfo, ...]:
    """Classes in label order (`render.spec.dataset_classes`); DatasetError naming the file otherwise."""
    try:
        return spec.dataset_classes(manifest)
    except ValueError as error:
        raise DatasetError(f"{root}/{error}") from None


def check_labels(path: Path, labels: np.ndarray, num_classes: int, keys: list[str] | None = None) -> None:
    """Every label is a class index of the dataset; with `keys` (a folder without manifest.json, whose
    classes are the 55 ShapeNet synsets in sorted order), every label is its synset's."""
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise DatasetError(
            f"{path}: label {int(bad[0])} outside 0..{num_classes - 1} (the dataset's classes)"
        )
    for key, label in zip(keys or (), labels, strict=False):
        synset = key.split("/")[0]
        try:
            expected = shapenet_label(synset)
        except ManifestError:
            images = path.with_name(spec.split_images_name(path.name.removesuffix("_labels.npy")))
            raise DatasetError(
                f"{images}: {key}: {synset!r} is not a ShapeNetCore v2 synset id, and without "
                f"{spec.MANIFEST_NAME} the classes are the 55 ShapeNet synsets; list ShapeNet objects only, "
                "or render the dataset with 3die (its manifest.json lists the classes)"
            ) from None
        if label != expected:  # a chair under label 0 would be scored as an airplane
            raise DatasetError(
                f"{path}: {key} has label {int(label)}, but without {spec.MANIFEST_NAME} the labels are "
                f"those of the 55 ShapeNet synsets in sorted order ({synset}: {expected}); "
                "write the ShapeNet labels, or render it with 3die (its manifest.json lists the classes)"
            )


def check_object_folder(folder: Path, views: int) -> None:
    """The object folder holds image_{i}.jpg and latent_{i}.npy for every view."""
    try:
        present = set(os.listdir(folder))
    except FileNotFoundError:
        raise DatasetError(f"{folder}: missing (the object is listed in the split files)") from None
    except OSError as error:
        raise DatasetError(f"{folder}: cannot list the object folder ({error.strerror})") from None
    wanted = [name for view in range(views) for name in (spec.image_name(view), spec.latent_name(view))]
    missing = [name for name in wanted if name not in present]
    if missing:
        named = ", ".join(missing[:NAMED_MISSING]) + (", ..." if len(missing) > NAMED_MISSING else "")
        raise DatasetError(
            f"{folder}: missing {len(missing)} of {len(wanted)} view files ({named}); every object needs "
            f"{views} views (rerun `3die render` to complete the dataset)"
        )
