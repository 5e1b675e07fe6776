"""Frozen features of a trained method, extracted once per run and cached in RUN/features/KEY/.

KEY hashes what the features depend on (the checkpoint's bytes, the dataset's identity, the image size),
so a new checkpoint or another dataset gets a new folder and a rerun reuses the old one. Per split the
folder holds `{split}_representations.npy` (N, V, R) float32 backbone representations of every view,
`{split}_latents.npy` (N, V, 7) float64, `{split}_labels.npy` (N,) int64 and, when asked for (the
validation split of a method with a predictor), `{split}_embeddings.npy` (N, V, d) float32 equivariant
embeddings. Extraction runs in eval mode without gradients, a batch of whole objects at a time, into
`.partial` files whose progress is recorded after every batch: an interrupted extraction continues where
it stopped. A cached split that cannot be read back whole is extracted again.

The features also depend on code (resizing, normalisation, the network's forward pass) and on torch:
`extracted.json` records the code version and torch that extracted them, and `use_cache` empties a folder
whose features another code version or torch extracted, so that scores stamped with a code version come
from features that version computed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from benchmark.data import ObjectViews, normalise_views
from render import spec
from render.files import write_text_atomically
from sie_models import Method

FEATURES_DIR = "features"
#: Bump when the content or layout of cached features changes: old caches are then not reused.
FEATURES_FORMAT = 1
PARTIAL = ".partial"
EXTRACTED_NAME = "extracted.json"
#: What `use_cache` compares: features extracted under another of these are extracted again.
EXTRACTED_BY = ("code_version", "torch")


@dataclass(frozen=True)
class SplitFeatures:
    """Cached features of one split: representations (N, V, R) float32, equivariant embeddings
    (N, V, d) float32 or None, latents (N, V, 7) float64, labels (N,) int64. The large arrays may be
    read-only memory maps."""

    representations: np.ndarray
    embeddings: np.ndarray | None
    latents: np.ndarray
    labels: np.ndarray


def features_key(checkpoint_sha256: str, dataset_hash: str, image_size: int, images: str) -> str:
    """16 hex digits identifying features of one checkpoint on one dataset at one image size, from its
    images as they are now (`images`: `benchmark.evaluate.run.images_digest`): the dataset hash leaves
    images out (a pack re-encoded with --size is the same dataset), but their pixels make the features."""
    content = {
        "format": FEATURES_FORMAT,
        "checkpoint": checkpoint_sha256,
        "dataset": dataset_hash,
        "image_size": image_size,
        "images": images,
    }
    text = json.dumps(content, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def use_cache(
    folder: Path,
    extracted_with: dict[str, str],
    fresh: bool = False,
    echo: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Make `folder` the feature cache of the code described by `extracted_with` (its "code_version",
    "torch" and, recorded but not compared, the device): features another code version or torch extracted
    (or an older cache that does not say) and, with `fresh`, any features are deleted first, partial ones
    included. Returns the description recorded for the features the folder holds or is about to hold."""
    folder = Path(folder)
    recorded = _read_json(folder / EXTRACTED_NAME)
    same = isinstance(recorded, dict) and all(recorded.get(k) == extracted_with[k] for k in EXTRACTED_BY)
    if same and not fresh:
        version = extracted_with["code_version"]
        if echo is not None and ("+g" not in version or version.endswith(".dirty")):
            echo(
                f"{folder}: reusing the features this uncommitted code ({version}) extracted earlier; "
                "--recompute extracts them again after a change to resizing, normalisation or the network"
            )
        return recorded
    _make_folder(folder, echo)
    stale = [path for path in folder.iterdir() if path.is_file() or path.is_symlink()]
    if stale and echo is not None and not fresh:
        version = recorded.get("code_version") if isinstance(recorded, dict) else None
        echo(
            f"{folder}: features extracted by other code ({version or 'not recorded'}, now "
            f"{extracted_with['code_version']}); extracting them again"
        )
    for path in stale:
        path.unlink()
    _write_json(folder / EXTRACTED_NAME, dict(extracted_with))
    return dict(extracted_with)


def split_features(
    method: Method,
    views: ObjectViews,
    folder: Path,
    image_size: int,
    device: torch.device,
    embeddings: bool = False,
    batch_images: int = 256,
    workers: int = 0,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> SplitFeatures:
    """The features of `views` (one split) under `folder`: read from the cache when complete, else
    extracted (continuing a partial extraction). With `embeddings` (for a method with a predictor), the
    equivariant embeddings too.

    batch_images: images per forward pass (rounded down to whole objects, at least one object).
    """
    if embeddings and not method.has_predictor:
        raise ValueError(f"method {method.name} has no predictor, hence no equivariant embeddings")
    folder = Path(folder)
    files = _split_files(folder, views.split, embeddings)
    if all(path.is_file() for name, path in files.items() if name != "progress"):
        try:
            return _load_checked(files, len(views), views.views)
        except (OSError, ValueError, EOFError) as error:  # a damaged cache: the features are derived data
            if echo is not None:
                echo(f"{folder}: cached {views.split} features unreadable ({error}); extracting them again")
            for path in files.values():
                path.unlink(missing_ok=True)
    _make_folder(folder, echo)
    _extract(method, views, files, image_size, device, batch_images, workers, progress, echo)
    return _load(files)


def _make_folder(folder: Path, echo: Callable[[str], None] | None) -> None:
    """Create the cache folder; a file (or a dangling link) in its place is derived data and replaced."""
    if folder.is_file() or (folder.is_symlink() and not folder.exists()):
        if echo is not None:
            echo(f"{folder}: a file where the feature cache folder goes; replacing it with the cache")
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)


# --- extraction --------------------------------------------------------------------------------------
class ObjectImages(Dataset):
    """Objects from `start` on: every view's image stacked, (V, S, S, 3) uint8, and the (V, 7) latents."""

    def __init__(self, views: ObjectViews, image_size: int, start: int) -> None:
        self.views, self.image_size, self.start = views, image_size, start

    def __len__(self) -> int:
        return len(self.views) - self.start

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.start + item
        images = np.stack(
            [self.views.image(index, view, self.image_size) for view in range(self.views.views)]
        )
        return torch.from_numpy(images), torch.from_numpy(self.views.latents(index))


@torch.inference_mode()
def _extract(
    method: Method,
    views: ObjectViews,
    files: dict[str, Path],
    image_size: int,
    device: torch.device,
    batch_images: int,
    workers: int,
    progress: bool,
    echo: Callable[[str], None] | None,
) -> None:
    method.eval()
    shapes = _shapes(method, len(views), views.views, "embeddings" in files, device)
    arrays, done = _open_partial(files, shapes)
    if done and echo is not None:
        echo(f"{files['progress'].parent}: continuing {views.split} feature extraction at object {done}")
    loader = DataLoader(
        ObjectImages(views, image_size, done),
        batch_size=max(1, batch_images // views.views),
        num_workers=workers,
    )
    with tqdm(
        total=len(views), initial=done, unit="obj", desc=f"features {views.split}", disable=not progress
    ) as bar:
        for images, latents in loader:
            count = len(images)
            flat = normalise_views(images.flatten(0, 1), device)
            representations = method.encode(flat)
            rows = slice(done, done + count)
            arrays["representations"][rows] = _to_numpy(representations, count)
            if "embeddings" in arrays:
                arrays["embeddings"][rows] = _to_numpy(method.embed_equivariant(representations), count)
            arrays["latents"][rows] = latents.numpy()
            done += count
            for array in arrays.values():
                array.flush()
            # after every batch, so not synced to disk: a machine crash costs at most a restarted extraction
            _write_json(files["progress"], {"objects_done": done, "shapes": shapes}, sync=False)
            bar.update(count)
    del arrays
    with _partial(files["labels"]).open("wb") as handle:
        np.save(handle, np.asarray(views.labels, np.int64))
    for name in [*shapes, "labels"]:
        os.replace(_partial(files[name]), files[name])
    files["progress"].unlink()


def _shapes(
    method: Method, count: int, views: int, embeddings: bool, device: torch.device
) -> dict[str, list[int]]:
    """Shapes of the arrays to extract; the embedding size comes from one forward pass of the heads."""
    shapes = {
        "representations": [count, views, method.representation_dim],
        "latents": [count, views, spec.LATENT_DIM],
    }
    if embeddings:
        probe = torch.zeros(2, method.representation_dim, device=device)
        shapes["embeddings"] = [count, views, int(method.embed_equivariant(probe).shape[1])]
    return shapes


def _open_partial(files: dict[str, Path], shapes: dict[str, list[int]]) -> tuple[dict[str, np.memmap], int]:
    """Memory maps of the .partial arrays and the objects already done; a fresh start when the recorded
    progress is missing or was made for other shapes."""
    recorded = _read_json(files["progress"])
    resumable = (
        recorded is not None
        and recorded.get("shapes") == shapes
        and all(_partial(files[name]).is_file() for name in shapes)
    )
    mode = "r+" if resumable else "w+"
    arrays = {
        name: np.lib.format.open_memmap(
            _partial(files[name]),
            mode=mode,
            dtype=np.float64 if name == "latents" else np.float32,
            shape=None if resumable else tuple(shape),
        )
        for name, shape in shapes.items()
    }
    if not resumable:
        _write_json(files["progress"], {"objects_done": 0, "shapes": shapes})
    return arrays, int(recorded["objects_done"]) if resumable else 0


def _to_numpy(values: torch.Tensor, objects: int) -> np.ndarray:
    return values.float().reshape(objects, -1, values.shape[-1]).cpu().numpy()


# --- files -----------------------------------------------------------------------------------------
def _split_files(folder: Path, split: str, with_embeddings: bool) -> dict[str, Path]:
    names = ["representations", "latents", "labels"] + (["embeddings"] if with_embeddings else [])
    files = {name: folder / f"{split}_{name}.npy" for name in names}
    files["progress"] = folder / f"{split}_progress.json"
    return files


def _load(files: dict[str, Path]) -> SplitFeatures:
    embeddings = files.get("embeddings")
    return SplitFeatures(
        representations=np.load(files["representations"], mmap_mode="r"),
        embeddings=None if embeddings is None else np.load(embeddings, mmap_mode="r"),
        latents=np.load(files["latents"]),
        labels=np.load(files["labels"]),
    )


def _load_checked(files: dict[str, Path], objects: int, views: int) -> SplitFeatures:
    """`_load`, with ValueError when an array's leading shape is not (objects, views)."""
    features = _load(files)
    arrays = {
        "representations": features.representations,
        "embeddings": features.embeddings,
        "latents": features.latents,
    }
    for name, array in arrays.items():
        if array is not None and array.shape[:2] != (objects, views):
            raise ValueError(f"{name} have shape {array.shape}, expected ({objects}, {views}, ...)")
    if features.labels.shape != (objects,):
        raise ValueError(f"labels have shape {features.labels.shape}, expected ({objects},)")
    return features


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict, sync: bool = True) -> None:
    write_text_atomically(path, json.dumps(data), sync)
