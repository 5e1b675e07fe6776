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
