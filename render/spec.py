"""The 3DIEBench specification in one place: latent layout, sampling ranges, scene constants,
image normalisation, file names and the ShapeNetCore v2 label order.

Every other module reads these values from here; nothing else hard-codes them.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

# --- dataset layout -------------------------------------------------------------------------
VIEWS_PER_OBJECT = 50
IMAGE_SIZE = 256
#: Upper bounds of the view count and image side that the commands accept: far above any use, low enough
#: that a slip (an extra zero or three) is one clear line instead of an out-of-memory traceback.
MAX_VIEWS = 10_000
MAX_IMAGE_SIZE = 4096
#: Blender renders no image smaller than 4 x 4 pixels (a smaller size gives 4 x 4).
MIN_IMAGE_SIZE = 4
MANIFEST_NAME = "manifest.json"
#: The `format` of the manifest.json this version writes and reads.
DATASET_FORMAT = "3die-dataset/1"
OBJECTS_CSV_NAME = "objects.csv"
FAILURES_NAME = "failures.jsonl"
#: The class list of a ShapeNet-style folder of models (what `3die objects` writes).
TAXONOMY_NAME = "taxonomy.json"


#: The dataset splits, each listed at the root by its images and labels files.
SPLITS = ("train", "val")


def image_name(view: int) -> str:
    """File name of a view's image inside its object folder."""
    return f"image_{view}.jpg"


def latent_name(view: int) -> str:
    """File name of a view's latent vector inside its object folder."""
    return f"latent_{view}.npy"


def split_images_name(split: str) -> str:
    """File name of a split's object list at the dataset root ("/SYNSET/OBJECT_ID/" strings)."""
    return f"{split}_images.npy"


def split_labels_name(split: str) -> str:
    """File name of a split's labels at the dataset root (int64, one per object of its images file)."""
    return f"{split}_labels.npy"


# --- latent vector (LATENT_DIM float64 per view) -------------------------------------------------
# New factors of variation are appended (docs/extending.md): the published values keep their positions
# and their random draws, so readers of the published layout read a longer latent unchanged.
LATENT_FIELDS = ("rot_x", "rot_y", "rot_z", "floor_hue", "spot_theta", "spot_phi", "spot_hue")
LATENT_DIM = len(LATENT_FIELDS)
PUBLISHED_LATENT_DIM = 7  # the published layout: the first values of every latent
ROTATION = slice(0, 3)  # extrinsic XYZ Euler angles in radians: Rotation.from_euler("xyz", latent[ROTATION])
FLOOR_HUE = 3  # HSV hue in [0, 1]
SPOT_THETA = 4  # polar angle of the spot light, radians
SPOT_PHI = 5  # azimuth of the spot light, radians
SPOT_HUE = 6  # HSV hue in [0, 1]

#: Inclusive sampling range of each latent value in the published dataset.
LATENT_LOW = np.array([-math.pi / 2] * 3 + [0.0, 0.0, 0.0, 0.0])
LATENT_HIGH = np.array([math.pi / 2] * 3 + [1.0, math.pi / 4, 2 * math.pi, 1.0])

#: The values of the colour action and of the colour probe, whose differences (view 2 minus view 1) they use.
COLOUR = (FLOOR_HUE, SPOT_HUE)
#: Action layouts (`sie_models.ACTION_DIMS`, `benchmark.data.relative_action`): the quaternion of
#: R1^-1 R2, then the differences (view 2 minus view 1) of these latent values.
ACTION_FACTORS = {"rotation": (), "rotation+color": COLOUR}

# --- scene ------------------------------------------------------------------------------------
FLOOR_Z = -1.0
FLOOR_SIZE = 10_000.0
FLOOR_SATURATION = 0.6
FLOOR_VALUE = 0.6
SUN_ENERGY = 1.5
SUN_ANGLE = math.pi / 2
SPOT_ENERGY = 500.0
SPOT_SIZE = math.pi / 8
SPOT_RADIUS = 4.0
SPOT_SATURATION = 1.0
SPOT_VALUE = 0.8
CAMERA_DISTANCE = 2.5
CAMERA_THETA = math.pi / 4
CAMERA_PHI = math.pi / 2
PUBLISHED_SAMPLES = 100

# --- training-time image normalisation (per RGB channel, images scaled to [0, 1]) ---------------
IMAGE_MEAN = (0.5016, 0.5037, 0.5060)
IMAGE_STD = (0.1030, 0.0999, 0.0969)

# --- files of this repository ------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFESTS_DIR = REPO_ROOT / "manifests"
SYNSETS_CSV = MANIFESTS_DIR / "shapenetcore_v2_synsets.csv"
OFFICIAL_VAL_CSV = MANIFESTS_DIR / "3diebench_val_objects.csv"


@dataclass(frozen=True)
class Synset:
    """One class of a dataset: its label (position in the dataset's class list; for ShapeNetCore v2, in the
    sorted synset ids), synset id and name."""

    label: int
    synset: str
    name: str


@cache
def shapenet_synsets() -> tuple[Synset, ...]:
    """The 55 ShapeNetCore v2 synsets in label order (sorted by synset id)."""
    with SYNSETS_CSV.open(newline="") as handle:
        rows = [Synset(int(r["label"]), r["synset"], r["name"]) for r in csv.DictReader(handle)]
    rows.sort(key=lambda s: s.synset)
    if [s.label for s in rows] != list(range(len(rows))):
        raise ValueError(f"{SYNSETS_CSV}: labels must be the positions of the sorted synset ids")
    return tuple(rows)


@cache
def shapenet_synset_ids() -> frozenset[str]:
    """The ids of the 55 ShapeNetCore v2 synsets."""
    return frozenset(synset.synset for synset in shapenet_synsets())


def dataset_classes(manifest: dict | None) -> tuple[Synset, ...]:
    """A dataset's classes in label order: its manifest.json's "classes" (each with label, synset and
    name), or the 55 ShapeNetCore v2 synsets when it has none (the official download). ValueError, naming
    manifest.json, for a malformed list or labels other than 0..N-1."""
    if manifest is None or "classes" not in manifest:
        return shapenet_synsets()
    remedy = "rerun `3die render` on the dataset to rewrite it"
    if not isinstance(manifest["classes"], list) or not manifest["classes"]:
        raise ValueError(
            f"{MANIFEST_NAME}: classes must be a non-empty list of {{label, synset, name}}, got "
            f"{json.dumps(manifest['classes'])[:80]}; {remedy}"
        )
    try:
        classes = [Synset(int(c["label"]), str(c["synset"]), str(c["name"])) for c in manifest["classes"]]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{MANIFEST_NAME}: malformed classes entry ({error}); {remedy}") from None
    classes.sort(key=lambda c: c.label)
    if [c.label for c in classes] != list(range(len(classes))):
        raise ValueError(f"{MANIFEST_NAME}: class labels must be 0..{len(classes) - 1}; {remedy}")
    return tuple(classes)


def spherical_to_cartesian(radius: float, theta: float, phi: float) -> tuple[float, float, float]:
    """(r, polar angle, azimuth) -> (x, y, z), the convention of the published scene."""
    return (
        radius * math.sin(theta) * math.cos(phi),
        radius * math.sin(theta) * math.sin(phi),
        radius * math.cos(theta),
    )


def is_decimal(text: str) -> bool:
    """Whether text is a plain count: ASCII digits only. Unlike `str.isdigit` it refuses "²", and
    unlike `int` it refuses "1_0", "+7" and " 7", so manifests, CSVs and options read one way."""
    return text.isascii() and text.isdigit()
