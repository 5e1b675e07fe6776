"""Render a contact sheet of the default object source: rows of objects, columns of views.

    .venv/bin/python scripts/contact_sheet.py --out docs/images/contact_sheet.png

Each row is one procedural object (one class each), each column one view with its own latent drawn as
in a dataset (same per-object seed), rendered with the chosen quality preset.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from PIL import Image

from render import procedural
from render.launch import threads_per_worker
from render.quality import QUALITY_PRESETS, quality_preset
from render.sampling import object_latents
from render.sources import mesh_arrays_from_trimesh

DEFAULT_CLASSES = ("airplane", "chair", "car", "lamp")


@click.command()
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/images/contact_sheet.png")
)
@click.option("--classes", default=",".join(DEFAULT_CLASSES), show_default=True, help="One row per class.")
@click.option("--views", default=4, show_default=True)
@click.option("--size", default=128, show_default=True)
@click.option("--quality", type=click.Choice(list(QUALITY_PRESETS)), default="default", show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(out: Path, classes: str, views: int, size: int, quality: str, seed: int) -> None:
    """Render the sheet and write it as a PNG."""
    from render.scene import RenderSettings, Scene

    names = tuple(classes.split(","))
    unknown = sorted(set(names) - set(procedural.CLASSES))
    if unknown:
        raise click.ClickException(f"unknown classes {unknown}; choose among {', '.join(procedural.CLASSES)}")
    scene = Scene(RenderSettings(size, quality_preset(quality), "auto", threads_per_worker(1)))
    rows = []
    for name in names:
        synset, object_id = procedural.SYNSETS[name], procedural.object_id(name, 0, seed)
        scene.set_object(mesh_arrays_from_trimesh(procedural.make_mesh(name, 0, seed)))
        row = []
        for latent in object_latents(seed, synset, object_id, views):
            scene.apply_latent(latent)
            row.append(scene.render())
        rows.append(np.concatenate(row, axis=1))
        click.echo(f"{name}: {synset}/{object_id}")
    scene.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(out)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
