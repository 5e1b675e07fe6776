"""Dataset readers (a dataset folder or a packed HDF5 file), view-pair sampling and actions.

`open_dataset(path, split)` returns the same `ObjectViews` interface for a folder (ours or the official
3DIEBench download) and for a file written by `pack_dataset` (`3die pack`). `ViewPairs` and
`ObjectSampler` turn one into training samples: two distinct views of an object and the relative
rotation between them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.data.folder import FolderViews, open_folder, read_dataset_manifest
from benchmark.data.packed import PackedViews, PackSummary, open_packed, pack_dataset, read_packed_manifest
from benchmark.data.pairs import (
    EpochsSampler,
    ObjectSampler,
    PairKey,
    ViewPairs,
    draw_view_pairs,
    normalise_views,
    relative_action,
)
from benchmark.data.validate import find_bad_objects, training_split
from benchmark.data.views import ClassInfo, DatasetError, ObjectViews, decode_jpeg, worker_error_line

PACKED_SUFFIXES = (".h5", ".hdf5")


def open_dataset(path: str | Path, split: str = "train") -> ObjectViews:
    """One split ("train" or "val") of a dataset folder or a packed .h5 file."""
    path = Path(path)
    if path.is_dir():
        return open_folder(path, split)
    if path.suffix in PACKED_SUFFIXES or path.is_file():
        if not path.exists():
            raise DatasetError(f"{path}: no such file")
        return open_packed(path, split)
    raise DatasetError(f"{path}: no such dataset folder or packed file")


def dataset_manifest(path: str | Path) -> dict | None:
    """manifest.json of a dataset folder, or the copy a packed file keeps; None for the official download."""
    path = Path(path)
    return read_dataset_manifest(path) if path.is_dir() else read_packed_manifest(path)


def rendering_settings(manifest: dict | None) -> dict[str, Any] | None:
    """What shaped a rendered dataset's images and latents besides its objects: the seed of the latents
    and the render settings of its manifest (views, size, quality, Cycles, rotation range); None for a
    dataset without a manifest. Two datasets of the same objects rendered otherwise (an in-distribution
    and an out-of-distribution rotation range) differ here, not in their objects."""
    if manifest is None:
        return None
    return {"seed": manifest.get("seed"), **(manifest.get("settings") or {})}


__all__ = [
    "ClassInfo",
    "DatasetError",
    "EpochsSampler",
    "FolderViews",
    "ObjectSampler",
    "ObjectViews",
    "PackSummary",
    "PackedViews",
    "PairKey",
    "ViewPairs",
    "dataset_manifest",
    "decode_jpeg",
    "draw_view_pairs",
    "find_bad_objects",
    "normalise_views",
    "open_dataset",
    "open_folder",
    "open_packed",
    "pack_dataset",
    "relative_action",
    "rendering_settings",
    "training_split",
    "worker_error_line",
]
