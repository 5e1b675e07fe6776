"""`3die benchmark`: one method from dataset to leaderboard row - render the procedural dataset when no data
is given (reusing it when it is already there), train, evaluate, and add the row to a leaderboard CSV.

Every stage resumes: the renderer skips complete objects, training continues from its last checkpoint,
evaluation keeps the tasks results.json already holds for the same checkpoint, data and settings (and
reuses cached features for the others), and the row replaces an older row of the same experiment. Rerunning an
interrupted `3die benchmark` therefore finishes the work instead of starting over.

Under torchrun every process renders (one at a time, behind the dataset's lock) and trains; process 0
alone then evaluates and writes the row, the others return when training is done.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.evaluate import EvaluationSettings, evaluate_run
from benchmark.evaluate.run import PAPER_PROBE_EPOCHS, PROBE_TASKS, RESULTS_NAME, dataset_name, read_results
from benchmark.leaderboard import Row, append_row, read_rows, row_from_results
from benchmark.leaderboard.rows import LeaderboardError, check_writable, row_problem
from benchmark.train import presets, resolve_config, train
from benchmark.train.config import options_beyond_preset, settings_beyond_preset
from benchmark.train.distributed import environment_ranks
from benchmark.train.loop import CHECKPOINTS_DIR

if TYPE_CHECKING:
    from render.launch import RunSummary

#: Probe epochs per task for each training preset (the published ones for the paper's setting).
PROBE_EPOCHS = {
    "paper": PAPER_PROBE_EPOCHS,
    "mini": dict.fromkeys(PROBE_TASKS, 50),
    "tiny": dict.fromkeys(PROBE_TASKS, 2),
}
#: Probe epochs of every task for presets not listed above.
DEFAULT_PROBE_EPOCHS = 50
#: Views or pairs drawn per training object in each probe epoch (1, the published protocol, when not
#: listed): the mini set's 320 training objects would give the probes 2 steps per epoch.
PROBE_SAMPLES = {"mini": 50}
LEADERBOARD_NAME = "leaderboard.csv"
#: Longest method-options text in a run folder name; longer ones (or odd characters) become a hash.
RUN_NAME_OPTIONS = 60


@dataclass(frozen=True)
class ProceduralData:
    """The procedural dataset rendered when no data is given: classes (None: all), objects per class,
    views per object, image size (None: the training preset's), Cycles quality preset, dataset seed,
    render worker processes."""

    classes: tuple[str, ...] | None = None
    per_class: int = 10
    views: int = 50
    size: int | None = None
    quality: str = "fast"
    seed: int = 0
    workers: int = 1

    def __post_init__(self) -> None:
        if self.views < 2:
            raise ValueError(
                f"--views {self.views}: training pairs two distinct views of an object; use 2 or more"
            )
        if self.per_class < 2:
            raise ValueError(
                f"--per-class {self.per_class}: the validation split takes one object of each class or more "
                "and training the others; use 2 or more"
            )

    def folder_name(self, size: int) -> str:
        """A folder name that changes with every setting that changes the images, and only with those: the
        classes are a set (their order, or naming every one instead of none, renders the same objects)."""
        from render.procedural.library import CLASSES

        chosen = sorted({name.strip() for name in self.classes or CLASSES if name.strip()})
        classes = (
            "all" if chosen == sorted(CLASSES) else hashlib.sha256(",".join(chosen).encode()).hexdigest()[:8]
        )
        return f"procedural-{classes}-{self.per_class}x{self.views}-{size}px-{self.quality}-s{self.seed}"


@dataclass(frozen=True)
class BenchmarkConfig:
    """One benchmark: method and training preset, the dataset (None: `procedural` under OUT/data), the
    output folder, the leaderboard CSV (None: OUT/leaderboard.csv), the training seed, training epochs,
    probe epochs (per task; tasks not given keep the preset's) and probe samples per object (None: the
    preset's), the device, and further training settings
    for `resolve_config` (`skip_bad_objects`: training and evaluation both leave out unusable objects)."""

    method: str
    preset: str = "mini"
    data: Path | None = None
    out: Path = Path("out/benchmark")
    leaderboard: Path | None = None
    seed: int = 0
    epochs: int | None = None
    probe_epochs: dict[str, int] | None = None
    probe_samples: int | None = None
    device: str = "auto"
    procedural: ProceduralData = field(default_factory=ProceduralData)
    train_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkResult:
    """Where the benchmark stands: the dataset, the run folder, whether training finished, the results,
    the row written to `leaderboard` (added, or replacing the same experiment's) and how many rows the
    leaderboard then holds (None while training is unfinished, and on torchrun's processes other than 0)."""

    data: Path
    run: Path
    trained: bool
    results: dict[str, Any] | None
    row: Row | None
    leaderboard: Path
    leaderboard_rows: int | None = None


def run_benchmark(
    config: BenchmarkConfig, progress: bool = True, echo: Callable[[str], None] | None = None
) -> BenchmarkResult:
    """Render (when needed), train, evaluate and add the leaderboard row; see the module docstring.

    Raises the stages' own errors (SourceError, DatasetError, ConfigError, TrainingError, CheckpointError,
    EvaluationError, LeaderboardError: checked before rendering). When training is stopped by a signal,
    returns with `trained` False and no row; under torchrun, processes other than 0 return no row either.
    """
    main_process = environment_ranks()[0] == 0
    say = echo if main_process and echo is not None else (lambda line: None)
    image_size = config.train_options.get("image_size") or _preset(config.preset)["image_size"]
    render_size = config.procedural.size or image_size
    procedural = config.out / "data" / config.procedural.folder_name(render_size)
    data = config.data or procedural
    run = (
        config.out / "runs" / run_name(config.method, config.preset, data, config.seed, config.train_options)
    )
    leaderboard = config.leaderboard or config.out / LEADERBOARD_NAME
    training = resolve_config(
        config.preset,
        method=config.method,
        data=str(data),
        out=str(run),
        epochs=config.epochs,
        seed=config.seed,
        device=config.device,
        **config.train_options,
    )
    probe_epochs = {
        **PROBE_EPOCHS.get(config.preset, dict.fromkeys(PROBE_TASKS, DEFAULT_PROBE_EPOCHS)),
        **(config.probe_epochs or {}),
    }
    samples = config.probe_samples or PROBE_SAMPLES.get(config.preset, 1)
    # made (and so checked) before rendering and training; the training's loader workers decode its images
    settings = EvaluationSettings(
        epochs=probe_epochs,
        samples_per_object=samples,
        seed=config.seed,
        workers=training.workers,
        device=config.device,
    )
    if config.data is None:
        check_render_size(render_size)
    check_writable(leaderboard)
    if leaderboard.exists():  # an unreadable leaderboard fails now, not after training and evaluation
        read_rows(leaderboard)
    check_device(config.device)
    if config.data is None:  # after resolve_config: a bad method or option fails before any rendering
        check_batch_fits(config.procedural, training.batch_size)
        render_procedural(procedural, config.procedural, render_size, progress, say)

    fresh = not (run / CHECKPOINTS_DIR).is_dir() or not any((run / CHECKPOINTS_DIR).iterdir())
    say(f"{run}: training {config.method} ({config.preset}) on {data}")
    trained = train(training, progress=progress, echo=say)
    if not trained.complete:
        say(f"{run}: training stopped by {trained.interrupted_by}; rerun the same command to resume")
        return BenchmarkResult(data, run, False, None, None, leaderboard)
    if trained.stop_signal is not None:  # the last step done, then asked to stop: not evaluated
        say(f"{run}: trained, then stopped by {trained.stop_signal}; rerun the same command to evaluate")
        return BenchmarkResult(data, run, False, None, None, leaderboard)
    if not main_process:
        return BenchmarkResult(data, run, True, None, None, leaderboard)
    train_seconds = trained.seconds if fresh else _recorded_train_seconds(run, trained.epochs_done, say)

    results = evaluate_run(
        run,
        data,
        settings,
        progress=progress,
        echo=say,
        train_seconds=train_seconds,
        skip_bad_objects=training.skip_bad_objects,
    )
    row = row_from_results(results)
    problem = row_problem(row)
    if problem is not None:  # e.g. every task skipped: a row the leaderboard could not read back
        raise LeaderboardError(f"{run / RESULTS_NAME}: {problem}; no row written to {leaderboard}")
    rows = append_row(leaderboard, row, echo=say)
    return BenchmarkResult(data, run, True, results, row, leaderboard, len(rows))


def run_name(method: str, preset: str, data: Path, seed: int, train_options: dict[str, Any]) -> str:
    """METHOD-PRESET-DATASET-sSEED (DATASET: the name results and leaderboards give it), followed by the
    training settings (`--image-size`, `--width`, `--batch-size`, ...) and method options (`--option`)
    given that differ from the preset's, when there are any: a benchmark with other settings trains a run
    of its own, and one whose settings only repeat the preset's is the preset's run (as its leaderboard
    row's `image_size`, `train_options` and `method_options` say)."""
    name = f"{method}-{preset}-{dataset_name(data)}-s{seed}"
    size = train_options.get("image_size")
    options = {
        **({"image_size": size} if size is not None and size != _preset(preset)["image_size"] else {}),
        **settings_beyond_preset(preset, train_options),
        **options_beyond_preset(method, preset, train_options.get("method_options")),
    }
    if not options:
        return name
    text = "_".join(f"{key}={options[key]}" for key in sorted(options))
    if len(text) > RUN_NAME_OPTIONS or not re.fullmatch(r"[A-Za-z0-9_.=+-]+", text):
        text = "o" + hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:8]
    return f"{name}-{text}"


def render_procedural(
    out: Path, settings: ProceduralData, size: int, progress: bool, echo: Callable[[str], None]
) -> RunSummary:
    """Render the procedural dataset into `out`, or finish it; a complete one is left as it is.

    Returns only when every object is complete or failed, so that training sees the whole dataset: the
    render holds OUT's lock file (.NAME.lock beside it) so that a second `3die benchmark` waits for it
    instead of training on a half-rendered dataset, and it waits on the claims of objects that another
    process (a `3die render` into the same folder) is rendering, then renders those it left.
    """
    from render import launch, sources, writer
    from render.locks import exclusive_lock

    source = sources.ProceduralSource(settings.classes, settings.per_class, settings.seed)
    config = launch.RenderConfig(out, settings.views, size, settings.quality, settings.seed)
    source.objects()  # unknown classes and bad counts stop here, before any folder is made
    out.parent.mkdir(parents=True, exist_ok=True)
    waiting = f"{out}: waiting for %s, which is rendering this dataset"
    with exclusive_lock(out.parent / f".{out.name}.lock", on_wait=lambda holder: echo(waiting % holder)):
        summary = launch.render_dataset(config, source, workers=settings.workers, progress=progress)
        while summary.elsewhere:
            echo(f"{out}: waiting for {summary.elsewhere} objects that another process is rendering")
            for obj in launch.pending_objects(out, source.objects()):
                with exclusive_lock(writer.object_dir(out, obj) / writer.CLAIM_NAME):  # until it lets go
                    pass
            summary = launch.render_dataset(config, source, workers=settings.workers, progress=progress)
    echo(summary.line(out))
    return summary


def check_device(device: str) -> None:
    """ConfigError for --device cuda on a machine without CUDA, before anything is rendered."""
    import torch

    from benchmark.train import ConfigError

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: CUDA is not available on this machine; give --device auto or cpu")


def check_render_size(size: int) -> None:
    """ConfigError for a procedural dataset rendered smaller than Blender renders (at the training size)."""
    from benchmark.train import ConfigError
    from render import spec

    if size < spec.MIN_IMAGE_SIZE:
        raise ConfigError(
            f"--image-size {size}: the procedural dataset is rendered at the training size, and Blender "
            f"renders no image smaller than {spec.MIN_IMAGE_SIZE} px; give {spec.MIN_IMAGE_SIZE} or more"
        )


def check_batch_fits(settings: ProceduralData, batch_size: int) -> None:
    """ConfigError when the procedural dataset to render would have fewer training objects than one batch
    (training would refuse it, after the render)."""
    from benchmark.train import ConfigError
    from render import sources

    objects = sources.ProceduralSource(settings.classes, settings.per_class, settings.seed).objects()
    train = sum(obj.split == "train" for obj in objects)
    if batch_size > train:
        raise ConfigError(
            f"batch size {batch_size} is larger than the {train} training objects of the procedural dataset "
            f"({len(objects)} objects, {settings.per_class} per class, the others validation objects); lower "
            "--batch-size or raise --per-class"
        )


def _preset(name: str) -> dict[str, Any]:
    from benchmark.train import ConfigError

    table = presets()
    if name not in table:
        raise ConfigError(f"unknown preset {name!r}; presets: {', '.join(table)}")
    return table[name]


def _recorded_train_seconds(run: Path, epochs_done: int, echo: Callable[[str], None]) -> float | None:
    """The training time recorded by an earlier benchmark of the same training (same epochs), else None:
    a resumed run only knows the time of its last part."""
    previous = read_results(run / RESULTS_NAME, echo)
    training = {} if previous is None else previous.get("training", {})
    return training.get("seconds") if training.get("epochs_done") == epochs_done else None
