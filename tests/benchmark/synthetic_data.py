"""Small synthetic datasets in the published layout, for the benchmark tests.

`write_dataset(root, ...)` draws each view with PIL from its latent (floor colour from the floor hue, a
class-dependent polygon turned and squashed by the rotation angles, a spot of the light's hue at the
light's azimuth), saves it as a JPEG beside its real latent .npy, and writes the split files; `layout="ours"`
adds manifest.json, objects.csv and completion markers like `3die render`, `layout="official"` leaves them
out like the 3DIEBench download. Reuse it from any test under tests/benchmark (see conftest.py).
"""

from __future__ import annotations

import colorsys
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from render import spec
from render.manifest import SPLITS, ObjectEntry, class_labels, shapenet_label, write_objects_csv
from render.sampling import fold_out_of_distribution

#: Real ShapeNet synsets (airplane, bag, basket, bathtub) so that the official layout's labels are valid.
SYNSETS = ("02691156", "02773838", "02801938", "02808440")


@dataclass(frozen=True)
class SyntheticDataset:
    """What `write_dataset` wrote: the root, the object keys and labels per split, and every latent."""

    root: Path
    splits: dict[str, list[str]]
    labels: dict[str, list[int]]
    latents: dict[str, np.ndarray]
    views: int
    size: int

    @property
    def num_classes(self) -> int:
        return len({label for labels in self.labels.values() for label in labels})


def write_dataset(
    root: Path,
    classes: int = 3,
    train_per_class: int = 3,
    val_per_class: int = 1,
    views: int = spec.VIEWS_PER_OBJECT,
    size: int = 32,
    seed: int = 0,
    layout: str = "ours",
    rotation: str = "published",
) -> SyntheticDataset:
    """Write a dataset of `classes` x (train_per_class + val_per_class) objects with `views` views each;
    `rotation="ood"` draws the Euler angles from the 3DIEBench-OOD range (as `3die render --rotation ood`)."""
    if layout not in ("ours", "official"):
        raise ValueError(f"layout must be 'ours' or 'official', got {layout!r}")
    root = Path(root)
    synsets = SYNSETS[:classes]
    ours = class_labels(synsets)
    label_of = ours if layout == "ours" else {synset: shapenet_label(synset) for synset in synsets}
    generator = np.random.default_rng(seed)
    entries, all_latents = [], {}
    for synset in synsets:
        for number in range(train_per_class + val_per_class):
            object_id = f"obj{seed}-{synset[-3:]}-{number:03d}"
            split = "train" if number < train_per_class else "val"
            entries.append(ObjectEntry(synset, object_id, label_of[synset], split, "procedural"))
            latents = generator.uniform(spec.LATENT_LOW, spec.LATENT_HIGH, size=(views, spec.LATENT_DIM))
            if rotation == "ood":
                latents[:, spec.ROTATION] = fold_out_of_distribution(latents[:, spec.ROTATION])
            all_latents[f"{synset}/{object_id}"] = latents
            write_object(root / synset / object_id, latents, ours[synset], size, marker=layout == "ours")
    splits = {split: [f"{e.synset}/{e.object_id}" for e in entries if e.split == split] for split in SPLITS}
    labels = {split: [e.label for e in entries if e.split == split] for split in SPLITS}
    for split in SPLITS:
        np.save(root / f"{split}_images.npy", np.array([f"/{key}/" for key in splits[split]]))
        np.save(root / f"{split}_labels.npy", np.array(labels[split], dtype=np.int64))
    if layout == "ours":
        write_objects_csv(root / spec.OBJECTS_CSV_NAME, entries)
        manifest = {
            "format": "3die-dataset/1",
            "source": {"kind": "synthetic", "seed": seed},
            "objects": len(entries),
            "seed": seed,
            "settings": {"views": views, "size": size, "quality": "synthetic", "rotation": rotation},
            "classes": [{"label": ours[s], "synset": s, "name": f"class-{s}"} for s in synsets],
        }
        (root / spec.MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))
    return SyntheticDataset(root, splits, labels, all_latents, views, size)


def write_object(folder: Path, latents: np.ndarray, label: int, size: int, marker: bool) -> None:
    """image_{i}.jpg and latent_{i}.npy for each latent row, then (ours) the completion marker."""
    folder.mkdir(parents=True, exist_ok=True)
    for view, latent in enumerate(latents):
        draw_view(latent, label, size).save(folder / spec.image_name(view), quality=95)
        np.save(folder / spec.latent_name(view), latent)
    if marker:
        (folder / ".complete").write_text(json.dumps({"views": len(latents)}))


def draw_view(latent: np.ndarray, label: int, size: int) -> Image.Image:
    """A picture whose content follows the latent: floor hue, rotated polygon, coloured light spot."""
    floor = _rgb(latent[spec.FLOOR_HUE], spec.FLOOR_SATURATION, spec.FLOOR_VALUE)
    image = Image.new("RGB", (size, size), floor)
    draw = ImageDraw.Draw(image)
    centre, radius = size / 2, size / 3
    corners = 3 + label
    rot_x, rot_y, rot_z = latent[spec.ROTATION]
    squash, shift = 0.4 + 0.6 * abs(math.cos(rot_x)), radius * 0.2 * rot_y
    angles = [rot_z + 2 * math.pi * k / corners for k in range(corners)]
    points = [(centre + radius * math.cos(a), centre + squash * radius * math.sin(a) + shift) for a in angles]
    draw.polygon(points, fill=(230, 230, 230), outline=(20, 20, 20))
    phi = latent[spec.SPOT_PHI]
    spot = (centre + radius * math.cos(phi), centre + radius * math.sin(phi))
    spot_radius = size / 10 * (1 + latent[spec.SPOT_THETA])
    draw.ellipse(
        [spot[0] - spot_radius, spot[1] - spot_radius, spot[0] + spot_radius, spot[1] + spot_radius],
        fill=_rgb(latent[spec.SPOT_HUE], spec.SPOT_SATURATION, spec.SPOT_VALUE),
    )
    return image


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)
