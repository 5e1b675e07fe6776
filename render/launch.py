"""Running a render: the object plan, shards, local worker processes and SLURM job arrays (submitit).

`render_dataset` is the one entry point: it writes (or checks) manifest.json and objects.csv, keeps the
objects of its shard that are neither complete nor recorded as failed, renders them in W local worker
processes and finally rewrites the split files. A SLURM job array runs `render_dataset` once per shard.
Each worker process keeps one Blender scene alive across objects and is replaced every
`recycle_every` objects, because Blender's memory creeps up as objects come and go.
"""

from __future__ import annotations

import contextlib
import io
import math
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import submitit
from tqdm import tqdm

from render import spec, writer
from render.processes import check_workers, leave_signals_to_parent, take_slot, usable_cores
from render.quality import quality_preset
from render.sampling import ROTATION_RANGES, object_latents, stable_hash
from render.sources import MeshError, ObjectSource, ObjectSpec, ShapeNetSource, SourceError

RECYCLE_EVERY = 200
CRASHES_BEFORE_FAILURE = 2  # an object whose worker dies this many times is recorded as failed


@dataclass(frozen=True)
class RenderConfig:
    """Settings of one dataset: output folder, views per object, image size (px), quality preset name,
    dataset seed, rotation range ("published" or "ood"), device ("auto", "cpu", "gpu")."""

    out: Path
    views: int = spec.VIEWS_PER_OBJECT
    size: int = spec.IMAGE_SIZE
    quality: str = "default"
    seed: int = 0
    rotation: str = "published"
    device: str = "auto"

    def __post_init__(self) -> None:
        quality_preset(self.quality)
        if self.rotation not in ROTATION_RANGES:
            raise ValueError(f"rotation range must be one of {ROTATION_RANGES}, got {self.rotation!r}")
        for option, value, least, most in (
            ("--views", self.views, 1, spec.MAX_VIEWS),
            ("--size", self.size, spec.MIN_IMAGE_SIZE, spec.MAX_IMAGE_SIZE),
        ):
            if not least <= value <= most:
                raise ValueError(f"{option} must be from {least} to {most}, got {value}")

    def settings(self) -> dict:
        """The settings that define the images (recorded in manifest.json; a resumed run must match them)."""
        quality = quality_preset(self.quality)
        return {
            "views": self.views,
            "size": self.size,
            "quality": self.quality,
            "samples": quality.samples,
            "cycles": quality.as_dict(),
            "rotation": self.rotation,
        }


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count): objects whose id hash is index modulo count."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard must be K/N with 0 <= K < N, got {self.index}/{self.count}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'K/N' -> Shard(K, N)."""
        parts = [part.strip() for part in text.split("/")]
        if len(parts) != 2 or not all(spec.is_decimal(part) for part in parts):
            raise ValueError(f"shard must look like K/N (e.g. 0/4), got {text!r}")
        return cls(int(parts[0]), int(parts[1]))

    def holds(self, obj: ObjectSpec) -> bool:
        return shard_index(obj, self.count) == self.index


@dataclass
class RunSummary:
    """What one call of `render_dataset` did."""

    objects: int = 0  # in the plan (all shards)
    in_shard: int = 0
    skipped: int = 0  # already complete, recorded as failed, or in `elsewhere`
    failed_before: int = 0  # of `skipped`: recorded as failed by an earlier run, not tried again
    elsewhere: int = 0  # being rendered by another process when this one reached them
    rendered: int = 0
    failed: int = 0
    images: int = 0
    seconds: float = 0.0
    splits: dict[str, int] = field(default_factory=dict)  # complete objects per split
    planned_splits: dict[str, int] = field(default_factory=dict)  # objects of the plan per split

    def line(self, out: Path) -> str:
        """What the run did, in one line: rendered, already done, failed (now and before), rendered with
        warnings, left to another process, complete objects per split (`out`: the dataset folder)."""
        failures = out / spec.FAILURES_NAME
        failed = f"; {self.failed} failed (see {failures})" if self.failed else ""
        if self.failed_before:
            failed += (
                f"; {self.failed_before} recorded as failed by an earlier run, not tried again (see "
                f"{failures}; --retry-failed tries them again)"
            )
        warned = len(writer.read_warnings(out))
        failed += f"; {warned} rendered with warnings (see {out / writer.WARNINGS_NAME})" if warned else ""
        elsewhere = (
            f"; {self.elsewhere} left to another process that was rendering them" if self.elsewhere else ""
        )
        return (
            f"{out}: rendered {self.rendered} objects ({self.images} images) in {self.seconds:.0f} s, "
            f"{self.skipped - self.elsewhere - self.failed_before} already done{failed}{elsewhere}; "
            f"splits {self.splits}"
        )


def shard_index(obj: ObjectSpec, count: int) -> int:
    """The shard of an object among `count`: a stable hash of "SYNSET/OBJECT_ID", independent of order."""
    return stable_hash(obj.key) % count


# --- the entry point -----------------------------------------------------------------------------
def render_dataset(
    config: RenderConfig,
    source: ObjectSource,
    limit: int | None = None,
    shard: Shard = Shard(),
    workers: int = 1,
    retry_failed: bool = False,
    recycle_every: int = RECYCLE_EVERY,
    progress: bool = True,
) -> RunSummary:
    """Render the objects of `shard` that are not done yet into `config.out`; see the module docstring."""
    start = time.monotonic()
    check_counts(workers=workers, recycle_every=recycle_every)
    check_workers(workers)  # here, on the machine that renders (a SLURM node's cores)
    objects = plan_objects(source, limit)
    prepare_dataset(config, source, objects)
    mine = [o for o in objects if shard.holds(o)]
    failed = {} if retry_failed else writer.read_failures(config.out)
    todo = pending_objects(config.out, mine, failed=failed)
    summary = RunSummary(objects=len(objects), in_shard=len(mine), skipped=len(mine) - len(todo))
    # recorded failures not tried again (an object completed since by --retry-failed is done)
    summary.failed_before = sum(
        o.key in failed and not writer.is_complete(writer.object_dir(config.out, o)) for o in mine
    )
    summary.planned_splits = dict(Counter(o.split for o in objects))
    if todo:
        _render_with_workers(config, source, todo, workers, recycle_every, progress, summary)
    summary.splits = writer.finalize(config.out, objects)
    summary.seconds = time.monotonic() - start
    return summary


def check_counts(**counts: int) -> None:
    """ValueError naming the option (`--name`) of the first count below 1."""
    for name, count in counts.items():
        if count < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {count}")


def check_out_outside_source(out: Path, source: ObjectSource, objects: list[ObjectSpec]) -> None:
    """SourceError when the dataset folder `out` lies where the source would read it as models on the
    next run: its root, a ShapeNet synset folder, or a mesh folder's class level (a folder directly in
    ROOT, or under a folder of ROOT that is no class of `objects`). Deeper inside a class folder, or in a
    ShapeNet folder's other folders, it is never read."""
    root = getattr(source, "root", None)
    if root is None:
        return
    inside, folder = Path(out).resolve(), Path(root).resolve()
    if inside != folder and folder not in inside.parents:
        return
    parts = inside.relative_to(folder).parts
    if isinstance(source, ShapeNetSource):
        read = not parts or parts[0] in spec.shapenet_synset_ids()
    else:
        read = len(parts) < 2 or parts[0] not in {obj.synset for obj in objects}
    if read:
        raise SourceError(
            f"{out}: inside the folder of models {root}, where the next run would read the dataset as "
            "models; render into a folder outside it"
        )


def plan_objects(source: ObjectSource, limit: int | None = None) -> list[ObjectSpec]:
    """The source's objects, the first `limit` (at least 1) of them when a limit is given."""
    if limit is not None:
        check_counts(limit=limit)
    objects = source.objects()
    if not objects:
        described = source.describe()
        raise SourceError(
            f"{described.get('objects_file') or described.get('root')}: lists no objects to render"
        )
    return objects if limit is None else objects[:limit]


def prepare_dataset(config: RenderConfig, source: ObjectSource, objects: list[ObjectSpec]) -> None:
    """Write manifest.json and objects.csv, or check that the existing ones describe the same dataset;
    first refuse an output folder that is a run folder or lies where the source reads models
    (`check_out_outside_source`).

    Both are written holding the dataset's lock, which first removes the temporary files that a run killed
    while writing a root file left behind (no live process has one while the lock is held).
    """
    from render import manifest as object_manifest

    check_out_outside_source(config.out, source, objects)
    if writer.is_run_folder(config.out):
        raise writer.DatasetMismatchError(
            f"{config.out}: is a training run folder (checkpoints/, config.json); render into a folder of "
            "its own"
        )
    if config.out.is_symlink() and not config.out.exists():
        raise RenderSetupError(
            f"{config.out}: a symbolic link to {os.readlink(config.out)}, which does not exist; create that "
            "folder, or give another --out"
        )
    config.out.mkdir(parents=True, exist_ok=True)
    entries = [
        object_manifest.ObjectEntry(o.synset, o.object_id, o.label, o.split, o.source) for o in objects
    ]
    with writer.dataset_lock(config.out):
        writer.remove_root_temp_files(config.out)
        writer.write_manifest(config.out, build_manifest(config, source, objects))
        csv_path = config.out / spec.OBJECTS_CSV_NAME
        if not csv_path.is_file():
            object_manifest.write_objects_csv(csv_path, entries)
        elif object_manifest.read_objects_csv(csv_path) != entries:
            raise writer.DatasetMismatchError(
                f"{csv_path}: the folder holds another object list; rerun with the same source, --objects "
                "and --limit, or choose another --out"
            )


def build_manifest(config: RenderConfig, source: ObjectSource, objects: list[ObjectSpec]) -> dict:
    """The content of manifest.json (deterministic: no dates, so concurrent shards write the same file)."""
    return {
        "format": spec.DATASET_FORMAT,
        "source": source.describe(),
        "objects": len(objects),
        "seed": config.seed,
        "settings": config.settings(),
        "classes": [{"label": c.label, "synset": c.synset, "name": c.name} for c in source.classes(objects)],
        "versions": package_versions(),
    }


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the images and latents."""
    versions = {"python": sys.version.split()[0]}
    for package in ("3die", "bpy", "numpy", "trimesh", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def pending_objects(
    root: Path, objects: list[ObjectSpec], failed: Collection[str] | None = None
) -> list[ObjectSpec]:
    """Objects not complete yet, less the keys in `failed`: the failures not to try again (None: those
    recorded in failures.jsonl, read here; empty to retry them all)."""
    if failed is None:
        failed = set(writer.read_failures(root))
    return [o for o in objects if o.key not in failed and not writer.is_complete(writer.object_dir(root, o))]


# --- one object, inside a worker ---------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectOutcome:
    """Result of one object: views written, or the reason it failed."""

    key: str
    views: int = 0
    failure: str | None = None
    elsewhere: bool = False  # another process was rendering it, or had just completed it


def render_object(scene, source: ObjectSource, obj: ObjectSpec, config: RenderConfig) -> ObjectOutcome:
    """Render every view of `obj` with the live `scene` (a render.scene.Scene) into its folder.

    A broken, empty or missing mesh is recorded in failures.jsonl and skipped; warnings about the mesh
    (such as missing textures) go to warnings.jsonl. The object's folder is emptied first, so an object
    interrupted by an earlier run is redone from scratch, with the same latents. The mesh is loaded once;
    each view only applies its latent and renders, while the previous view is encoded and written on a
    background thread; the completion marker follows the last written view. The object is claimed first
    (a lock on its folder): one that another process is rendering, or has just completed, is left to it.
    """
    folder = writer.object_dir(config.out, obj)
    with writer.claim_object(folder) as claimed:
        if not claimed or writer.is_complete(folder):
            return ObjectOutcome(obj.key, elsewhere=True)
        return _render_claimed(scene, source, obj, config, folder)


def _render_claimed(
    scene, source: ObjectSource, obj: ObjectSpec, config: RenderConfig, folder: Path
) -> ObjectOutcome:
    """`render_object` once this process holds the object's claim."""
    latents = object_latents(config.seed, obj.synset, obj.object_id, config.views, config.rotation)
    try:
        warnings = scene.set_object(source.load(obj))
    except MeshError as error:
        writer.record_failure(config.out, obj, str(error))
        return ObjectOutcome(obj.key, failure=str(error))
    for message in warnings:
        writer.record_warning(config.out, obj, message)
    try:
        writer.start_object(folder)
        with writer.ViewWriter() as views:  # each view is encoded and written while the next one renders
            for view, latent in enumerate(latents):
                scene.apply_latent(latent)
                views.write(folder, view, scene.render(), latent)
        writer.finish_object(folder, config.views)
    finally:
        scene.clear_object()
    return ObjectOutcome(obj.key, views=config.views)


class RenderSetupError(RuntimeError):
    """A worker process could not build its Blender scene (for example --device gpu without a GPU)."""


_WORKER: dict = {}


def _start_worker(config: RenderConfig, source: ObjectSource, threads: int, started) -> None:
    """Build this worker process's one Blender scene (imports bpy here, never in the parent).

    `started` is the pool's shared array of the PIDs holding each GPU slot: this worker takes the first
    free one (`render.processes.take_slot`), which picks its GPU on a node with several
    (`render.scene.use_gpu_slot`); a replacement of a recycled worker takes the slot it left.

    A failure is kept and raised by the first task, so the parent gets the reason instead of a dead pool.
    The worker ignores SLURM's signals, which this process answers, and exits when it is gone
    (`leave_signals_to_parent`).
    """
    leave_signals_to_parent()
    sys.path[:] = without_blender_script_paths(sys.path)
    try:
        from render.scene import RenderSettings, Scene

        with started.get_lock():
            slot = take_slot(started, os.getpid())
        settings = RenderSettings(
            config.size, quality_preset(config.quality), config.device, threads, gpu_slot=slot
        )
        _WORKER.update(scene=Scene(settings), config=config, source=source)
    except Exception as error:  # anything bpy raises: the message goes back to the parent
        _WORKER["setup_error"] = f"the render worker could not set up Blender: {error}"


def without_blender_script_paths(paths: list[str]) -> list[str]:
    """`paths` minus the Blender script folders that `import bpy` adds to sys.path.

    A spawned worker starts with its parent's sys.path; when the parent has imported bpy (the tests do),
    those folders would make the worker's `import bpy` find Blender's pure-Python bpy package instead of
    the bpy module.
    """
    return [p for p in paths if not ("scripts" in Path(p).parts and {"bpy", "blender"} & set(Path(p).parts))]


def _render_in_worker(obj: ObjectSpec) -> ObjectOutcome:
    if "setup_error" in _WORKER:
        raise RenderSetupError(_WORKER["setup_error"])
    return render_object(_WORKER["scene"], _WORKER["source"], obj, _WORKER["config"])


# --- local worker processes ------------------------------------------------------------------------
def threads_per_worker(workers: int) -> int:
    """Cycles threads for each of `workers` processes: the cores this process may use, shared evenly."""
    return max(1, usable_cores() // max(1, workers))


def _render_with_workers(
    config: RenderConfig,
    source: ObjectSource,
    todo: list[ObjectSpec],
    workers: int,
    recycle_every: int,
    progress: bool,
    summary: RunSummary,
) -> None:
    """Render `todo` in `workers` spawned processes, at most one object in flight per worker.

    When a worker dies (Blender crashed), the pool is rebuilt and the objects that were in flight are
    tried again one at a time, nothing else in flight, so the culprit is known; an object whose worker dies
    CRASHES_BEFORE_FAILURE times is recorded as failed.
    """
    queue = list(reversed(todo))
    suspects: list[ObjectSpec] = []
    crashes: dict[str, int] = {}
    threads = threads_per_worker(workers)
    started = multiprocessing.get_context("spawn").Array("q", workers)  # PIDs holding the GPU slots
    bar = tqdm(
        total=len(todo) * config.views, unit="img", desc="render", disable=not progress, smoothing=0.05
    )
    try:
        while queue or suspects:
            in_flight: dict[Future, ObjectSpec] = {}
            pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(config, source, threads, started),
                max_tasks_per_child=recycle_every,
            )
            try:
                while queue or suspects or in_flight:
                    if suspects and not in_flight:
                        _submit_last(pool, suspects, in_flight)
                    while queue and len(in_flight) < workers and not suspects:
                        if any(obj.key in crashes for obj in in_flight.values()):
                            break  # a suspect is being retried: alone, so that a crash is its own
                        _submit_last(pool, queue, in_flight)
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        outcome = future.result()
                        del in_flight[future]
                        _count(outcome, summary, bar, config.views)
            except BrokenProcessPool:

                def finished(obj: ObjectSpec) -> ObjectOutcome | None:  # complete, its result lost
                    done = writer.is_complete(writer.object_dir(config.out, obj))
                    return ObjectOutcome(obj.key, views=config.views) if done else None

                for obj, outcome in settle_after_crash(in_flight, crashes, suspects, finished):
                    if outcome.failure == WORKER_DIED:  # a mesh's own failure is recorded by its worker
                        writer.record_failure(config.out, obj, outcome.failure)
                    _count(outcome, summary, bar, config.views)
            except KeyboardInterrupt:  # Ctrl-C: stop now, not after the objects in flight
                terminate_workers(pool)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def terminate_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM to the pool's worker processes (ProcessPoolExecutor has no public call for it before
    Python 3.14); their objects, incomplete, are redone by the next run."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(OSError, ValueError):
            process.terminate()


def _submit_last(pool: ProcessPoolExecutor, pending: list[ObjectSpec], in_flight: dict) -> None:
    """Submit the last object of `pending` and move it to `in_flight`; when the pool has broken meanwhile,
    `submit` raises BrokenProcessPool and the object stays in `pending`."""
    future = pool.submit(_render_in_worker, pending[-1])
    in_flight[future] = pending.pop()


WORKER_DIED = "the render worker died while rendering it (Blender crashed)"


def settle_after_crash(
    in_flight: dict[Future, ObjectSpec],
    crashes: dict[str, int],
    suspects: list[ObjectSpec],
    finished: Callable[[ObjectSpec], ObjectOutcome | None] = lambda obj: None,
) -> list[tuple[ObjectSpec, ObjectOutcome]]:
    """Sort the objects in flight when a worker died: finished ones, failed ones, ones to try again.

    An object whose future holds a result finished before the pool broke (its worker was not the one
    that died; both futures can complete at once) and is returned with that outcome, and so is one that
    `finished` says is complete (its worker wrote it, but the pool broke before handing back the result).
    Every other object gets one more crash in `crashes`: it goes to `suspects`, to be retried alone, or,
    at CRASHES_BEFORE_FAILURE crashes, is returned as failed.
    """
    outcomes = []
    for future, obj in in_flight.items():
        if future.done() and not future.cancelled() and future.exception() is None:
            outcomes.append((obj, future.result()))
            continue
        done = finished(obj)
        if done is not None:
            outcomes.append((obj, done))
            continue
        crashes[obj.key] = crashes.get(obj.key, 0) + 1
        if crashes[obj.key] < CRASHES_BEFORE_FAILURE:
            suspects.append(obj)
        else:
            outcomes.append((obj, ObjectOutcome(obj.key, failure=WORKER_DIED)))
    return outcomes


def _count(outcome: ObjectOutcome, summary: RunSummary, bar, views: int) -> None:
    """Add one finished object to the summary and the progress bar (a failed one, or one rendered by another
    process, leaves the bar's total)."""
    if outcome.elsewhere:
        summary.skipped += 1
        summary.elsewhere += 1
        bar.total -= views
    elif outcome.failure is None:
        summary.rendered += 1
        summary.images += outcome.views
        bar.update(outcome.views)
    else:
        summary.failed += 1
        bar.total -= views
    bar.set_postfix(objects=summary.rendered, failed=summary.failed, refresh=False)


# --- SLURM --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlurmOptions:
    """One SLURM array task per shard: partition, time limit (minutes), GPUs and CPUs per task, how many
    tasks run at once, the folder for submitit's logs and pickles, and the memory per task in GB (None:
    the partition's default)."""

    jobs: int
    partition: str | None = None
    time_min: int = 24 * 60
    gpus: int = 1
    cpus: int = 8
    array_parallelism: int = 64
    folder: Path | None = None
    mem_gb: int | None = None

    def __post_init__(self) -> None:
        check_counts(jobs=self.jobs, time=self.time_min, cpus_per_task=self.cpus)
        if self.mem_gb is not None:
            check_counts(mem_gb=self.mem_gb)
        check_counts(array_parallelism=self.array_parallelism)
        if self.gpus < 0:
            raise ValueError(f"--gpus must be at least 0, got {self.gpus}")

    def parameters(self) -> dict:
        """Keyword arguments for submitit.AutoExecutor.update_parameters."""
        parameters = {
            "name": "3die-render",
            "timeout_min": self.time_min,
            "cpus_per_task": self.cpus,
            "tasks_per_node": 1,
            "nodes": 1,
            "slurm_array_parallelism": self.array_parallelism,
            "slurm_signal_delay_s": 120,
            # Slurm 22.05-23.02 do not pass --cpus-per-task from sbatch to srun: the step would get one CPU
            "slurm_srun_args": ["--cpus-per-task", str(self.cpus)],
        }
        if self.gpus:  # no --gpus-per-node=0: a cluster without GPU resources may refuse any GPU request
            parameters["gpus_per_node"] = self.gpus
        if self.partition:
            parameters["slurm_partition"] = self.partition
        if self.mem_gb is not None:
            parameters["mem_gb"] = self.mem_gb
        return parameters


class SlurmError(RuntimeError):
    """--slurm cannot submit: there is no SLURM here, or sbatch refused the job array."""


class ShardJob(submitit.helpers.Checkpointable):
    """One SLURM array task: `render_dataset` on one shard. When SLURM preempts it or its time runs out,
    submitit requeues it with the same arguments and the rerun resumes where the killed one stopped."""

    def __init__(
        self,
        config: RenderConfig,
        source: ObjectSource,
        limit: int | None,
        shard: Shard,
        workers: int,
        retry_failed: bool = False,
        recycle_every: int = RECYCLE_EVERY,
    ):
        self.config, self.source, self.limit, self.shard, self.workers = config, source, limit, shard, workers
        self.retry_failed, self.recycle_every = retry_failed, recycle_every

    def __call__(self) -> RunSummary:
        return render_dataset(
            self.config,
            self.source,
            self.limit,
            self.shard,
            self.workers,
            self.retry_failed,
            self.recycle_every,
            progress=False,
        )


def submit_slurm(
    config: RenderConfig,
    source: ObjectSource,
    options: SlurmOptions,
    limit: int | None = None,
    workers: int = 1,
    cluster: str | None = None,
    retry_failed: bool = False,
    recycle_every: int = RECYCLE_EVERY,
) -> list:
    """Prepare the dataset folder, then submit one array task per shard that has objects left to render
    (all of them the first time; a resubmission only those with objects missing, or failed ones with
    `retry_failed`); returns the submitit jobs. With nothing left, the split files are written here and no
    job is submitted (a resubmission after the array finished, to pick up what one node did not see).

    Tasks with GPUs render on them: `config.device` "auto" becomes "gpu", so that a task on a node whose GPU
    Cycles cannot use stops with the reason in its log instead of rendering on the CPUs unnoticed.

    `cluster` is passed to submitit.AutoExecutor: None requires SLURM (SlurmError without it, or when sbatch
    refuses the array), "local" or "debug" run the same jobs on this machine (for testing the job
    construction).
    """
    check_counts(workers=workers, recycle_every=recycle_every)
    if options.gpus > 0 and config.device == "auto":
        config = replace(config, device="gpu")
    if cluster is None and submitit.AutoExecutor.which() != "slurm":
        raise SlurmError(
            "--slurm: no SLURM on this machine (srun is not on PATH); run the command on a SLURM login node, "
            "or without --slurm to render here"
        )
    objects = plan_objects(source, limit)
    prepare_dataset(config, source, objects)
    pending = pending_objects(config.out, objects, failed=() if retry_failed else None)
    shards = sorted({shard_index(obj, options.jobs) for obj in pending})
    if not shards:
        writer.finalize(config.out, objects)
        return []
    folder = options.folder or config.out / ".slurm" / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**options.parameters())
    jobs = [
        ShardJob(config, source, limit, Shard(k, options.jobs), workers, retry_failed, recycle_every)
        for k in shards
    ]
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's errors; they are in ours
            return executor.submit_array(jobs)
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise SlurmError(f"sbatch refused the job array: {reason}") from None


def estimate_jobs(objects: int, per_job: int = 500) -> int:
    """A job count that gives each array task about `per_job` objects."""
    return max(1, math.ceil(objects / per_job))
