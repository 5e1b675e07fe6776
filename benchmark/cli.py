"""The `3die` command line: one thin click wrapper per command; the logic lives in the packages."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="3die", prog_name="3die")
def main() -> None:
    """3die: render 3DIEBench-style datasets with Blender and benchmark invariant-equivariant
    self-supervised methods on them."""


@main.command("methods")
@click.argument("name", required=False)
def methods_command(name: str | None) -> None:
    """List every method with its defaults, or show one method (NAME) in full as JSON."""
    import json

    from sie_models import UnknownMethodError, describe_method, list_methods

    if name is not None:
        try:
            click.echo(json.dumps(describe_method(name), indent=2))
        except UnknownMethodError as error:
            raise click.ClickException(str(error)) from error
        return
    header = ("method", "action", "split (inv+equi)", "projectors", "predictor", "loss coefficients")
    rows = [header]
    for method in list_methods():
        info = describe_method(method)
        coefficients = " ".join(f"{key}={value}" for key, value in info["loss_coefficients"].items())
        rows.append(
            (method, info["action"], info["split"], info["projectors"], info["predictor"], coefficients)
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


# --- procedural object library (render/procedural) ---------------------------------------------------------
@main.command("objects")
@click.option("--out", type=click.Path(), help="Folder to write the library to (ShapeNetCore v2 layout).")
@click.option("--classes", help="Classes, comma-separated (default: all; see --list).")
@click.option("--per-class", type=int, default=50, show_default=True, help="Objects per class.")
@click.option("--seed", type=int, default=0, show_default=True, help="Library seed (shapes and split).")
@click.option(
    "--list", "list_classes", is_flag=True, help="List the classes and their synset ids, then exit."
)
def objects_command(
    out: str | None, classes: str | None, per_class: int, seed: int, list_classes: bool
) -> None:
    """Write the procedural object library as SYNSET/OBJECT_ID/models/model_normalized.obj with
    taxonomy.json and objects.csv (the split). Rerun to continue an interrupted export."""
    from pathlib import Path

    from tqdm import tqdm

    from render.procedural import export

    if list_classes:
        for name, synset in export.SYNSETS.items():
            click.echo(f"{name:12s} {synset}")
        return
    if out is None:
        raise click.ClickException("missing --out DIR (the folder to write the library to); or use --list")
    out = Path(out)
    if seed < 0:
        raise click.ClickException(f"--seed must be a non-negative integer, got {seed}")
    try:
        names = export.check_classes(classes.split(",")) if classes else None
        total = len(export.library_manifest(names, per_class, seed))
        with tqdm(total=total, unit="object", desc="objects", disable=None) as progress:
            summary = export.export_library(
                out, names, per_class, seed, on_object=lambda _: progress.update()
            )
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"cannot write the library to {out}: {error.strerror or error}") from None
    val = sum(entry.split == "val" for entry in summary.objects)
    click.echo(
        f"{out}: {len(summary.objects)} objects ({summary.written} written, {summary.kept} already there), "
        f"{len(summary.objects) - val} train / {val} val; manifest {out / 'objects.csv'}"
    )
