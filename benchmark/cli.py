"""The `3die` command line: one thin click wrapper per command; the logic lives in the packages."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="3die", prog_name="3die")
def main() -> None:
    """3die: render 3DIEBench-style datasets with Blender and benchmark invariant-equivariant
    self-supervised methods on them."""
