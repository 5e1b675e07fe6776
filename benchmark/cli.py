"""The `3die` command line: one thin click wrapper per command; the logic lives in the packages."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import click


class _Path(click.Path):
    """click.Path that refuses an empty value (an unset shell variable), which would name the current
    folder: `--out ""` rendered into it."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path; give a file or folder name", param, ctx)
        if isinstance(value, str) and _special_file(value):  # reading or writing it would hang or vanish
            self.fail(
                f"{value}: neither a file nor a folder (a device or a pipe); give a file or folder",
                param,
                ctx,
            )
        return super().convert(value, param, ctx)


def _special_file(path: str) -> bool:
    """Whether `path` exists as something else than a regular file or a folder (a FIFO, a device)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # absent, unreadable, or a NUL in the name: click says so
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


class _Commands(click.Group):
    """The `3die` group: an allocation that fails (a size too large for this machine's memory, a batch
    too large for the GPU) ends in one line instead of a traceback; files already written stay."""

    def invoke(self, context: click.Context):
        try:
            return super().invoke(context)
        except MemoryError as error:
            raise click.ClickException(_out_of_memory_line(error)) from None
        except RuntimeError as error:  # torch's CPU allocator and CUDA report it as a RuntimeError
            if not any(words in str(error) for words in ("out of memory", "can't allocate memory")):
                raise
            raise click.ClickException(_out_of_memory_line(error)) from None


def _out_of_memory_line(error: BaseException) -> str:
    said = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return (
        f"out of memory ({said}); give smaller sizes (batch, width, image size, views, probe samples) or "
        "use a machine with more memory, then rerun the same command: what is already written is kept"
    )


@click.group(
    cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.version_option(package_name="3die", prog_name="3die")
def main() -> None:
    """3die: render 3DIEBench-style datasets with Blender and benchmark invariant-equivariant
    self-supervised methods on them."""


def _workers_option(name: str, help_text: str, default: int | None = None, minimum: int = 0):
    """A count of worker processes, refused below `minimum` or above what this machine's cores can run
    (`render.processes.check_workers`), with one line naming the option; None (not given) when no default."""
    from render.processes import check_workers

    def check(_context, _parameter, workers: int | None) -> int | None:
        if workers is None:
            return None
        if workers < minimum:
            raise click.ClickException(f"{name} must be {minimum} or more, got {workers}")
        try:
            check_workers(workers, name)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        return workers

    return click.option(
        name, type=int, default=default, show_default=default is not None, help=help_text, callback=check
    )


def _write_remedy(error: OSError) -> str:
    """What to do about a failed write: free space, permissions, or a file or folder in the way."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free disk space"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the folder writable"
    if error.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return "move away the file or folder in the way (a file where a folder belongs, or the reverse)"
    return "free disk space or make the folder writable"


#: --device of the commands that run torch models (evaluation, the benchmark).
_TORCH_DEVICE = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: CUDA when torch finds a GPU, else the CPU.",
)


# --- rendering (render/) -------------------------------------------------------------------------------
@main.command("render")
@click.option("--out", type=_Path(file_okay=False, path_type=Path), required=True, help="Dataset folder.")
@click.option(
    "--shapenet-dir",
    type=_Path(exists=True, file_okay=False, path_type=Path),
    help="ShapeNetCore v2 folder (SYNSET/OBJECT_ID/models/model_normalized.obj).",
)
@click.option(
    "--mesh-dir",
    type=_Path(exists=True, file_okay=False, path_type=Path),
    help="Mesh folder: CLASS/NAME.{obj,glb,gltf,ply,stl,off}.",
)
@click.option(
    "--objects",
    "objects_file",
    type=_Path(exists=True, dir_okay=False, path_type=Path),
    help="Objects to render: an objects CSV, or (ShapeNet) a published-style images .npy.",
)
@click.option("--classes", help="Procedural classes, comma-separated (default: all).")
@click.option("--per-class", default=10, show_default=True, help="Procedural objects per class.")
@click.option(
    "--up-axis",
    type=click.Choice(["z", "y"]),
    default="z",
    show_default=True,
    help="Up axis of --mesh-dir meshes (y: turned Z up like ShapeNet's OBJ import).",
)
@click.option("--views", default=50, show_default=True, help="Views per object.")
@click.option("--size", default=256, show_default=True, help="Image width and height in pixels.")
@click.option(
    "--quality",
    default="default",
    show_default=True,
    help="Cycles preset: published-raw, published, default, fast, draft (docs/rendering.md).",
)
@click.option(
    "--rotation",
    type=click.Choice(["published", "ood"]),
    default="published",
    show_default=True,
    help="Euler angle range: published [-pi/2, pi/2] or ood [-pi, -pi/2] U [pi/2, pi].",
)
@click.option("--seed", default=0, show_default=True, help="Dataset seed (latents; procedural objects).")
@click.option("--limit", type=int, help="Render only the first N objects of the list.")
@click.option("--shard", default="0/1", show_default=True, help="Render shard K of N (0 <= K < N).")
@click.option("--workers", default=1, show_default=True, help="Local worker processes (one Blender each).")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "gpu"]),
    default="auto",
    show_default=True,
    help="Cycles device; auto: a GPU when Cycles finds one (worker k on GPU k mod count), else the CPU.",
)
@click.option("--retry-failed", is_flag=True, help="Try objects recorded in failures.jsonl again.")
@click.option(
    "--recycle-every", default=200, show_default=True, help="Objects per worker process before a fresh one."
)
@click.option("--slurm", is_flag=True, help="Submit a SLURM job array (submitit), one task per shard.")
@click.option("--jobs", type=int, help="SLURM array tasks (default: one per 500 objects).")
@click.option("--partition", help="SLURM partition.")
@click.option(
    "--time", "time_min", default=24 * 60, show_default=True, help="SLURM time limit per task (minutes)."
)
@click.option("--gpus", default=1, show_default=True, help="GPUs per SLURM task.")
@click.option("--cpus-per-task", default=8, show_default=True, help="CPUs per SLURM task.")
@click.option("--array-parallelism", default=64, show_default=True, help="SLURM tasks running at once.")
@click.option("--mem-gb", type=int, help="Memory per SLURM task in GB (default: the partition's).")
def render_command(
    out,
    shapenet_dir,
    mesh_dir,
    objects_file,
    classes,
    per_class,
    up_axis,
    views,
    size,
    quality,
    rotation,
    seed,
    limit,
    shard,
    workers,
    device,
    retry_failed,
    recycle_every,
    slurm,
    jobs,
    partition,
    time_min,
    gpus,
    cpus_per_task,
    array_parallelism,
    mem_gb,
) -> None:
    """Render a 3DIEBench-style dataset (default source: the procedural library). Rerun to resume."""
    from render import launch, sources, spec, writer

    given = click.get_current_context().get_parameter_source("per_class")
    slurm_only = _given_options(SLURM_PARAMETERS)
    if slurm_only and not slurm:
        raise click.ClickException(f"{', '.join(slurm_only)}: SLURM options; add --slurm, or leave them out")
    try:
        source = sources.source_from_options(
            shapenet_dir,
            mesh_dir,
            objects_file,
            tuple(classes.split(",")) if classes is not None else None,
            per_class if given == click.core.ParameterSource.COMMANDLINE else None,
            seed,
            up_axis,
        )
        config = launch.RenderConfig(out, views, size, quality, seed, rotation, device)
        if slurm:
            if shard != "0/1":
                raise ValueError("--shard and --slurm do not go together: --slurm submits every shard")
            count = (
                jobs if jobs is not None else launch.estimate_jobs(len(launch.plan_objects(source, limit)))
            )
            options = launch.SlurmOptions(
                count, partition, time_min, gpus, cpus_per_task, array_parallelism, mem_gb=mem_gb
            )
            retry = {"retry_failed": retry_failed, "recycle_every": recycle_every}
            submitted = launch.submit_slurm(config, source, options, limit, workers, **retry)
            if not submitted:
                click.echo(f"{out}: every object is done (or failed); split files written, nothing submitted")
                return
            click.echo(
                f"submitted {len(submitted)} array tasks, the shards of {count} with objects left (job "
                f"{submitted[0].job_id.split('_')[0]}); "
                f"logs in {out / '.slurm'}; rerun without --slurm to resume locally"
            )
            return
        summary = launch.render_dataset(
            config, source, limit, launch.Shard.parse(shard), workers, retry_failed, recycle_every
        )
    except (
        sources.SourceError,
        writer.DatasetMismatchError,
        launch.RenderSetupError,
        launch.SlurmError,
        ValueError,
    ) as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:  # a full disk, a read-only folder: complete objects stay, a rerun resumes
        where = error.filename or f"{out} (or the temporary folder: /dev/shm, TMPDIR)"
        raise click.ClickException(
            f"{where}: {error.strerror or error}; the render stopped and the objects already "
            f"complete are kept: {_write_remedy(error)}, then rerun the same command"
        ) from None
    except KeyboardInterrupt:
        click.echo(
            f"{out}: interrupted; the objects already complete are kept, rerun the same command to resume",
            err=True,
        )
        raise SystemExit(130) from None
    click.echo(summary.line(out))
    if (
        isinstance(source, sources.ShapeNetSource)
        and objects_file is None
        and (others := source.other_folders())
    ):
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        click.echo(
            f"{shapenet_dir}: note: left out the folders that are not ShapeNetCore v2 synsets "
            f"({len(others)}: {shown}); render other classes with --mesh-dir, or list objects with --objects"
        )
    if (summary.failed or summary.failed_before) and not any(summary.splits.values()):  # none complete
        retry = "" if summary.failed else " (--retry-failed tries them again once the cause is mended)"
        raise click.ClickException(
            f"{out}: no object of the dataset could be rendered; {out / spec.FAILURES_NAME} says why{retry}"
        )
    empty = [split for split in spec.SPLITS if summary.objects and not summary.planned_splits.get(split)]
    if empty:
        click.echo(
            f"{out}: note: no object of this dataset is in the {' or '.join(empty)} split, which training "
            "and evaluation need; give --objects an objects CSV whose split column chooses, or more objects "
            "per class (docs/rendering.md)"
        )


def _given_options(names: tuple[str, ...]) -> list[str]:
    """The options, among the current command's parameters `names`, given on the command line."""
    context = click.get_current_context()
    return [
        parameter.opts[0]
        for parameter in context.command.params
        if parameter.name in names
        and context.get_parameter_source(parameter.name) == click.core.ParameterSource.COMMANDLINE
    ]


#: `3die benchmark` parameters of the procedural dataset it renders when no --data is given.
PROCEDURAL_PARAMETERS = ("classes", "per_class", "views", "quality", "render_workers")
#: `3die render` parameters that only a --slurm submission uses.
SLURM_PARAMETERS = ("jobs", "partition", "time_min", "gpus", "cpus_per_task", "array_parallelism", "mem_gb")


@main.command("check")
@click.argument("root", type=_Path(exists=True, path_type=Path))
@_workers_option("--workers", "Processes decoding images.", default=1)
@click.option("--quick", is_flag=True, help="Do not decode JPEGs; only check their end-of-image marker.")
def check_command(root, workers, quick) -> None:
    """Validate a dataset folder or packed file; one line per object with problems; exit 1 when any."""
    from render.check import check_dataset

    if root.is_file():
        _check_packed_file(root, workers, quick)
        return
    report = check_dataset(root, workers=workers, decode=not quick, progress=True)
    for line in report.lines():
        click.echo(line)
    if not report.ok:
        raise SystemExit(1)


def _check_packed_file(path: Path, workers: int, quick: bool) -> None:
    """`3die check FILE.h5`: the objects that training would refuse, and JPEGs that do not decode."""
    from benchmark.data import DatasetError
    from benchmark.data.packed import read_skipped_objects
    from benchmark.data.validate import check_packed_file

    try:
        objects, problems = check_packed_file(path, decode=not quick, workers=workers)
        left_out = len(read_skipped_objects(path))
    except DatasetError as error:
        raise click.ClickException(str(error)) from None
    for line in problems:
        click.echo(line)
    packed_without = f" (left out when packed, unusable: {left_out}, see skipped_objects)" if left_out else ""
    click.echo(f"{path}: {objects} objects checked: {len(problems)} with problems{packed_without}")
    if problems:
        raise SystemExit(1)


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
@click.option(
    "--out",
    type=_Path(),
    help="Folder to write the library to (ShapeNetCore v2 layout); required unless --list.",
)
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

    from render import spec
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
        names = export.check_classes(classes.split(",")) if classes is not None else None
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
        f"{len(summary.objects) - val} train / {val} val; manifest {out / spec.OBJECTS_CSV_NAME}"
    )


# --- datasets and training (benchmark/data, benchmark/train) ---------------------------------------------
@main.command("pack")
@click.argument("root", type=_Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=_Path(dir_okay=False, path_type=Path), required=True, help="HDF5 file.")
@click.option("--size", type=int, help="Re-encode every view at SIZE x SIZE px (default: keep the JPEGs).")
@click.option(
    "--quality",
    type=click.IntRange(1, 100),
    default=95,
    show_default=True,
    help="JPEG quality when re-encoding (--size).",
)
@click.option("--raw", is_flag=True, help="Store decoded pixels (fastest to train from; S*S*3 bytes a view).")
@_workers_option("--workers", "Processes checking, reading, re-encoding.", default=1)
@click.option(
    "--skip-bad-objects",
    is_flag=True,
    help="Leave out the objects whose files are unusable, listed in the file (default: refuse the folder).",
)
def pack_command(root, out, size, quality, raw, workers, skip_bad_objects) -> None:
    """Pack a dataset folder into one HDF5 file (JPEGs, latents, labels, splits). Rerun to resume."""
    from tqdm import tqdm

    from benchmark.data import DatasetError, pack_dataset

    try:
        with tqdm(unit="obj", desc="pack", disable=None) as progress:
            summary = pack_dataset(
                root, out, size, quality, workers, progress.update, raw, skip_bad_objects, progress.write
            )
    except DatasetError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:  # an unwritable --out or a full disk; a rerun continues FILE.partial
        raise click.ClickException(
            f"{out}: cannot write the packed file ({error.strerror or error}); {_write_remedy(error)} or "
            "choose another --out, then rerun the same command (it continues an unfinished pack)"
        ) from None
    resumed = f", {summary.resumed} already packed" if summary.resumed else ""
    click.echo(f"{out}: {summary.objects} objects ({summary.bytes / 2**20:.1f} MiB){resumed}")


@main.command("train")
@click.option("--method", required=True, help="Method name (see `3die methods`).")
@click.option("--data", type=_Path(exists=True, path_type=Path), required=True, help="Folder or .h5.")
@click.option("--out", type=_Path(file_okay=False, path_type=Path), required=True, help="Run folder.")
@click.option("--preset", default="mini", show_default=True, help="paper, mini or tiny (train_presets.toml).")
@click.option("--epochs", type=int, help="Epochs (preset value when not given; same for the options below).")
@click.option("--batch-size", type=int, help="Global batch size (split across torchrun processes).")
@click.option("--lr", type=float, help="Adam learning rate.")
@click.option("--weight-decay", type=float, help="Adam weight decay.")
@click.option("--image-size", type=int, help="Training image size in pixels.")
@click.option("--width", type=int, help="ResNet-18 base width (64: the published network).")
@_workers_option("--workers", "DataLoader worker processes per training process.")
@click.option("--seed", type=int, help="Seed of the initialisation and of the view pairs.  [default: 0]")
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    help="Training device; auto: CUDA when torch finds a GPU, else the CPU.  [default: auto]",
)
@click.option("--amp/--no-amp", default=None, help="Mixed precision on CUDA (never on the CPU).")
@click.option("--amp-dtype", type=click.Choice(["auto", "bfloat16", "float16"]), help="[default: auto]")
@click.option("--log-every", type=int, help="Steps between two TensorBoard entries.")
@click.option("--option", "options", multiple=True, help="Method option KEY=VALUE (repeatable).")
@click.option("--progress/--no-progress", default=True, help="Progress bar on rank 0.")
@click.option(
    "--skip-bad-objects",
    is_flag=True,
    default=None,
    help="Train without the objects whose files are unusable (default: refuse such a dataset).",
)
def train_command(method, data, out, preset, options, progress, **settings) -> None:
    """Train a method on the train split of a dataset; works under torchrun (DDP). Rerun to resume."""
    from benchmark.data import DatasetError, worker_error_line
    from benchmark.train import (
        INTERRUPTED_EXIT_STATUS,
        CheckpointError,
        ConfigError,
        TrainingError,
        parse_method_options,
        resolve_config,
        train,
    )

    try:
        config = resolve_config(
            preset,
            method=method,
            data=str(data),
            out=str(out),
            method_options=parse_method_options(options),
            **settings,
        )
        result = train(config, progress=progress, echo=click.echo)
    except (ConfigError, TrainingError, CheckpointError) as error:
        raise click.ClickException(str(error)) from None
    except DatasetError as error:
        raise click.ClickException(worker_error_line(error)) from None
    except OSError as error:  # a full disk, a read-only run folder: the verified checkpoints stay
        raise click.ClickException(
            f"{error.filename or out}: {error.strerror or error}; training stopped and the checkpoints "
            f"already saved are kept: {_write_remedy(error)}, then rerun the same command"
        ) from None
    if not result.complete:
        raise SystemExit(INTERRUPTED_EXIT_STATUS)
    if int(os.environ.get("RANK", "0")) == 0:
        click.echo(f"{out}: {result.epochs_done} epochs, {result.global_step} steps ({result.seconds:.0f} s)")


# --- evaluation and leaderboards (benchmark/evaluate, benchmark/leaderboard) ---------------------------
@main.command("evaluate")
@click.argument("run", type=_Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--data",
    type=_Path(exists=True, path_type=Path),
    help="Dataset folder or .h5 to evaluate on (default: the one the run trained on).",
)
@click.option(
    "--tasks",
    default="classification,rotation,colour,retrieval",
    show_default=True,
    help="Comma-separated tasks (retrieval needs a method with a predictor).",
)
@click.option(
    "--epochs",
    help="Probe epochs: N for every probe or TASK=N,...  [default: the published 300 for every probe]",
)
@click.option(
    "--samples-per-object",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Views (classification) or pairs (rotation, colour) per training object and probe epoch; "
    "1: the published protocol.",
)
@click.option("--batch-size", default=256, show_default=True, help="Probe batch size.")
@click.option("--lr", default=1e-3, show_default=True, help="Probe Adam learning rate.")
@click.option("--hidden", default=1024, show_default=True, help="Hidden width of the rotation/colour MLP.")
@click.option(
    "--val-pairs", default=10, show_default=True, help="Validation pairs per object (rotation, colour)."
)
@click.option("--seed", default=0, show_default=True, help="Seed of the probes' initialisation and samples.")
@click.option("--extract-batch", default=256, show_default=True, help="Images per feature-extraction batch.")
@_workers_option("--workers", "DataLoader processes decoding images.", default=0)
@_TORCH_DEVICE
@click.option("--progress/--no-progress", default=True, help="Progress bars.")
@click.option(
    "--skip-bad-objects",
    is_flag=True,
    help="Evaluate without the objects whose files are unusable, listed in results.json (default: refuse).",
)
@click.option(
    "--recompute",
    is_flag=True,
    help="Run every task again, also those results.json holds for the same checkpoint, data and settings.",
)
def evaluate_command(
    run,
    data,
    tasks,
    epochs,
    samples_per_object,
    batch_size,
    lr,
    hidden,
    val_pairs,
    seed,
    extract_batch,
    workers,
    device,
    progress,
    skip_bad_objects,
    recompute,
) -> None:
    """Evaluate a trained run with a frozen backbone; writes RUN/results.json (features are cached in
    RUN/features/; a rerun keeps the tasks computed with the same checkpoint, data and settings, and
    adds or replaces the others)."""
    from benchmark.data import DatasetError, worker_error_line
    from benchmark.evaluate import (
        EvaluationError,
        EvaluationSettings,
        evaluate_run,
        parse_epochs,
        parse_tasks,
    )
    from benchmark.leaderboard import format_table, row_from_results
    from benchmark.train import CheckpointError

    try:
        settings = EvaluationSettings(
            tasks=parse_tasks(tasks),
            epochs=parse_epochs(epochs),
            samples_per_object=samples_per_object,
            batch_size=batch_size,
            lr=lr,
            hidden=hidden,
            val_pairs=val_pairs,
            seed=seed,
            extract_batch=extract_batch,
            workers=workers,
            device=device,
        )
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    try:
        results = evaluate_run(
            run,
            data,
            settings,
            progress=progress,
            echo=click.echo,
            skip_bad_objects=skip_bad_objects,
            recompute=recompute,
        )
    except (CheckpointError, EvaluationError) as error:
        raise click.ClickException(str(error)) from None
    except DatasetError as error:
        raise click.ClickException(worker_error_line(error)) from None
    except OSError as error:  # a full disk, a file where the feature cache's folder belongs
        raise click.ClickException(
            f"{error.filename or run}: {error.strerror or error}; the evaluation stopped and the scores "
            f"already in results.json are kept: {_write_remedy(error)}, then rerun the same command"
        ) from None
    click.echo(format_table([row_from_results(results)]))
    click.echo(f"{run / 'results.json'}: {', '.join(results['metrics'])}")


@main.command("leaderboard")
@click.argument("sources", nargs=-1, required=True, type=_Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=_Path(dir_okay=False, path_type=Path),
    required=True,
    help="Leaderboard CSV to write; its existing rows are merged with the sources'.",
)
@click.option("--plot", "plot_dir", type=_Path(file_okay=False, path_type=Path), help="Folder for figures.")
def leaderboard_command(sources, out, plot_dir) -> None:
    """Merge evaluated runs (RUN folders or results.json) and leaderboard CSVs into one CSV: one row per
    experiment (method, method options beyond the preset's, preset, dataset and its hash, training
    dataset, image size, epochs, seed), the newest evaluation winning; print it and draw it."""
    from benchmark.leaderboard import LeaderboardError, append_rows, format_table, load_rows
    from benchmark.leaderboard.plots import plot_folder, plot_leaderboard

    if out.suffix.lower() != ".csv":  # e.g. a run's results.json, which would be read and then overwritten
        raise click.ClickException(f"{out}: --out must name a .csv file (the leaderboard to write)")
    try:
        if plot_dir is not None:  # an unusable folder stops before the CSV is written
            plot_folder(plot_dir)
        rows = append_rows(out, [row for source in sources for row in load_rows(source)], echo=click.echo)
        click.echo(format_table(rows))
        click.echo(f"{out}: {len(rows)} row{'s' * (len(rows) != 1)}")
        if plot_dir is not None:
            written = plot_leaderboard(rows, plot_dir)
            click.echo(f"{plot_dir}: {len(written)} figures")
    except LeaderboardError as error:
        raise click.ClickException(str(error)) from None


@main.command("benchmark")
@click.option("--method", required=True, help="Method name (see `3die methods`).")
@click.option("--preset", default="mini", show_default=True, help="Training preset: paper, mini or tiny.")
@click.option(
    "--data",
    type=_Path(exists=True, path_type=Path),
    help="Dataset folder or .h5 (default: the procedural dataset under OUT/data, rendered when missing).",
)
@click.option(
    "--out",
    type=_Path(file_okay=False, path_type=Path),
    default=Path("out/benchmark"),
    show_default=True,
    help="Folder for the dataset, the run and the leaderboard.",
)
@click.option(
    "--leaderboard",
    type=_Path(dir_okay=False, path_type=Path),
    help="Leaderboard CSV the run's row is added to.  [default: OUT/leaderboard.csv]",
)
@click.option("--seed", default=0, show_default=True, help="Training seed (and probe seed).")
@click.option("--epochs", type=int, help="Training epochs (default: the preset's).")
@click.option(
    "--probe-epochs",
    help="Probe epochs: N or TASK=N,...  [default: paper 300 (the published); mini 50; tiny 2]",
)
@click.option(
    "--probe-samples",
    type=click.IntRange(min=1),
    help="Views or pairs per training object and probe epoch.  [default: mini 50, others 1]",
)
@click.option("--image-size", type=int, help="Training (and rendering) image size (default: the preset's).")
@click.option("--batch-size", type=int, help="Training batch size (default: the preset's).")
@click.option("--lr", type=float, help="Training Adam learning rate (default: the preset's).")
@click.option("--weight-decay", type=float, help="Training Adam weight decay (default: the preset's).")
@click.option("--width", type=int, help="ResNet-18 base width (default: the preset's).")
@_workers_option("--workers", "Training and evaluation DataLoader workers (default: preset's).")
@_TORCH_DEVICE
@click.option("--classes", help="Procedural classes to render, comma-separated (default: all).")
@click.option("--per-class", default=10, show_default=True, help="Procedural objects per class.")
@click.option("--views", default=50, show_default=True, help="Views per procedural object.")
@click.option("--quality", default="fast", show_default=True, help="Cycles preset of the procedural render.")
@_workers_option("--render-workers", "Blender worker processes.", default=1, minimum=1)
@click.option(
    "--option",
    "options",
    multiple=True,
    help="Method option KEY=VALUE (repeatable); the run and its leaderboard row are then its own.",
)
@click.option("--progress/--no-progress", default=True, help="Progress bars.")
@click.option(
    "--skip-bad-objects",
    is_flag=True,
    default=None,
    help="Train and evaluate without the objects whose files are unusable (default: refuse such a dataset).",
)
def benchmark_command(
    method,
    preset,
    data,
    out,
    leaderboard,
    seed,
    epochs,
    probe_epochs,
    probe_samples,
    device,
    classes,
    per_class,
    views,
    quality,
    render_workers,
    options,
    progress,
    **train_options,
) -> None:
    """Benchmark one method: render the procedural dataset if no data is given, train, evaluate, and add
    one row to the leaderboard CSV. Rerun to resume any stage."""
    from benchmark.data import DatasetError, worker_error_line
    from benchmark.evaluate import EvaluationError, parse_epochs
    from benchmark.leaderboard import LeaderboardError, format_table
    from benchmark.pipeline import BenchmarkConfig, ProceduralData, run_benchmark
    from benchmark.train import (
        INTERRUPTED_EXIT_STATUS,
        CheckpointError,
        ConfigError,
        TrainingError,
        parse_method_options,
    )
    from render.launch import RenderSetupError
    from render.sources import SourceError, class_names
    from render.writer import DatasetMismatchError

    if leaderboard is not None and leaderboard.suffix.lower() != ".csv":
        raise click.ClickException(
            f"{leaderboard}: --leaderboard must name a .csv file (the leaderboard to add the row to)"
        )
    rendering = _given_options(PROCEDURAL_PARAMETERS)
    if data is not None and rendering:
        raise click.ClickException(
            f"{', '.join(rendering)}: options of the procedural dataset rendered when no --data is given; "
            "leave them out with --data"
        )
    stage_errors = (
        ConfigError,
        TrainingError,
        CheckpointError,
        EvaluationError,
        LeaderboardError,
        SourceError,
        DatasetMismatchError,
        RenderSetupError,
        ValueError,
    )

    try:
        config = BenchmarkConfig(
            method=method,
            preset=preset,
            data=data,
            out=out,
            leaderboard=leaderboard,
            seed=seed,
            epochs=epochs,
            probe_epochs=None if probe_epochs is None else parse_epochs(probe_epochs, base={}),
            probe_samples=probe_samples,
            device=device,
            procedural=ProceduralData(
                classes=None if classes is None else class_names(classes.split(",")),
                per_class=per_class,
                views=views,
                quality=quality,
                workers=render_workers,
            ),
            train_options={
                **{key: value for key, value in train_options.items() if value is not None},
                **({"method_options": parse_method_options(options)} if options else {}),
            },
        )
        result = run_benchmark(config, progress=progress, echo=click.echo)
    except stage_errors as error:
        raise click.ClickException(str(error)) from None
    except DatasetError as error:
        raise click.ClickException(worker_error_line(error)) from None
    except OSError as error:  # a full disk, a read-only folder: what each stage finished is kept
        raise click.ClickException(
            f"{error.filename or out}: {error.strerror or error}; the benchmark stopped and what its stages "
            f"finished is kept: {_write_remedy(error)}, then rerun the same command"
        ) from None
    if not result.trained:
        raise SystemExit(INTERRUPTED_EXIT_STATUS)
    if result.row is not None:  # None on torchrun's processes other than 0, which do not evaluate
        click.echo(format_table([result.row]))
        count = result.leaderboard_rows
        click.echo(f"{result.leaderboard}: row of {method} written ({count} row{'s' * (count != 1)} in all)")
