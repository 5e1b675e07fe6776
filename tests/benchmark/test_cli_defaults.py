"""The command line states its defaults and choices itself, so that `3die --help` needs no package import;
these tests keep every one of them equal to the package value it stands for."""

from __future__ import annotations

import dataclasses

import click
import pytest

from benchmark.cli import main
from benchmark.data.packed import DEFAULT_QUALITY
from benchmark.evaluate.run import PAPER_PROBE_EPOCHS, TASKS, EvaluationSettings
from benchmark.pipeline import ProceduralData
from render import spec
from render.launch import RECYCLE_EVERY, RenderConfig, SlurmOptions, estimate_jobs
from render.procedural.export import DEFAULT_PER_CLASS
from render.quality import QUALITY_PRESETS
from render.sampling import ROTATION_RANGES
from render.sources import PROCEDURAL_PER_CLASS, UP_AXES


def _defaults(cls: type) -> dict[str, object]:
    return {
        field.name: field.default
        for field in dataclasses.fields(cls)
        if field.default is not dataclasses.MISSING
    }


def _parameter(command: str, name: str) -> click.Parameter:
    return next(parameter for parameter in main.commands[command].params if parameter.name == name)


RENDER, SLURM, EVALUATE, PROCEDURAL = (
    _defaults(cls) for cls in (RenderConfig, SlurmOptions, EvaluationSettings, ProceduralData)
)

DEFAULTS = [
    ("render", "per_class", PROCEDURAL_PER_CLASS),
    ("render", "views", RENDER["views"]),
    ("render", "size", RENDER["size"]),
    ("render", "quality", RENDER["quality"]),
    ("render", "seed", RENDER["seed"]),
    ("render", "rotation", RENDER["rotation"]),
    ("render", "device", RENDER["device"]),
    ("render", "recycle_every", RECYCLE_EVERY),
    ("render", "time_min", SLURM["time_min"]),
    ("render", "gpus", SLURM["gpus"]),
    ("render", "cpus_per_task", SLURM["cpus"]),
    ("render", "array_parallelism", SLURM["array_parallelism"]),
    ("objects", "per_class", DEFAULT_PER_CLASS),
    ("pack", "quality", DEFAULT_QUALITY),
    ("evaluate", "tasks", ",".join(TASKS)),
    ("evaluate", "samples_per_object", EVALUATE["samples_per_object"]),
    ("evaluate", "batch_size", EVALUATE["batch_size"]),
    ("evaluate", "lr", EVALUATE["lr"]),
    ("evaluate", "hidden", EVALUATE["hidden"]),
    ("evaluate", "val_pairs", EVALUATE["val_pairs"]),
    ("evaluate", "seed", EVALUATE["seed"]),
    ("evaluate", "extract_batch", EVALUATE["extract_batch"]),
    ("evaluate", "workers", EVALUATE["workers"]),
    ("evaluate", "device", EVALUATE["device"]),
    ("benchmark", "per_class", PROCEDURAL["per_class"]),
    ("benchmark", "views", PROCEDURAL["views"]),
    ("benchmark", "quality", PROCEDURAL["quality"]),
    ("benchmark", "render_workers", PROCEDURAL["workers"]),
]


@pytest.mark.parametrize(("command", "name", "expected"), DEFAULTS, ids=[f"{c}-{n}" for c, n, _ in DEFAULTS])
def test_a_command_line_default_is_the_package_default(command, name, expected):
    assert _parameter(command, name).default == expected


def test_the_render_defaults_are_the_published_ones():
    assert (RENDER["views"], RENDER["size"]) == (spec.VIEWS_PER_OBJECT, spec.IMAGE_SIZE)


CHOICES = [
    ("render", "up_axis", UP_AXES),
    ("render", "rotation", ROTATION_RANGES),
]


@pytest.mark.parametrize(("command", "name", "expected"), CHOICES, ids=[f"{c}-{n}" for c, n, _ in CHOICES])
def test_a_command_line_choice_lists_the_package_values(command, name, expected):
    assert tuple(_parameter(command, name).type.choices) == tuple(expected)


def test_the_render_quality_help_names_every_preset():
    help_text = _parameter("render", "quality").help
    assert all(name in help_text for name in QUALITY_PRESETS), help_text


def test_help_texts_state_the_package_numbers():
    assert "one per 500 objects" in _parameter("render", "jobs").help
    assert estimate_jobs(500) == 1 and estimate_jobs(501) == 2  # 500 objects per task
    (published,) = set(PAPER_PROBE_EPOCHS.values())
    assert f"the published {published} for every probe" in _parameter("evaluate", "epochs").help
    assert f"paper {published} (the published)" in _parameter("benchmark", "probe_epochs").help
