"""The training loop: one method on one dataset, on a CPU or many GPUs, resumable at any point.

`train(config)` runs in every process of a torchrun launch (or alone). Each epoch ends with an atomic
checkpoint; SIGTERM, SIGUSR1 and SIGINT make the run finish its current step, save and stop (a SLURM
preemption then only needs the same command again). Rerunning the same command resumes from the last
checkpoint and reaches the same weights as an uninterrupted run: the model, optimiser, scaler and random
states are restored and the pairs of an epoch depend only on (seed, epoch, rank, position) (on a GPU, up to
the nondeterminism of cuDNN's autotuned kernels). The main process holds RUN/.train.lock while it trains,
so a second launch on the same run folder stops at once instead of writing the same checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from benchmark.data import (
    DatasetError,
    EpochsSampler,
    ObjectSampler,
    ObjectViews,
    ViewPairs,
    dataset_manifest,
    normalise_views,
    rendering_settings,
    training_split,
    worker_error_line,
)
from benchmark.data.validate import damaged_image_remedy
from benchmark.provenance import code_version, cpu_model, merged_sessions
from benchmark.train.checkpoint import (
    LAST,
    CheckpointError,
    LoadedCheckpoint,
    load_checkpoint,
    save_checkpoint,
)
from benchmark.train.config import ConfigError, TrainConfig
from benchmark.train.distributed import (
    PeerFailed,
    ProcessContext,
    any_process,
    first_rank,
    gather_objects,
    mean_over_processes,
    start_processes,
    stop_processes,
    synchronise_batch_norm,
    together,
    union_over_processes,
)
from render import spec
from render.files import write_text_atomically
from render.locks import LockBusy, exclusive_lock
from sie_models import Method, build_method

CONFIG_NAME = "config.json"
CHECKPOINTS_DIR = "checkpoints"
#: The lock file the main process of a training holds in its run folder.
TRAIN_LOCK_NAME = ".train.lock"
TENSORBOARD_DIR = "tensorboard"
#: Settings that shape the weights: a resumed run must use the same ones.
TRAJECTORY_KEYS = ("method", "method_config", "batch_size", "lr", "weight_decay", "seed")
#: What a checkpoint written by the trainer holds (`Trainer._payload`).
PAYLOAD_KEYS = ("config", "model", "optimizer", "scaler", "epoch", "step_in_epoch", "global_step", "rng")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
#: Exit status of a run stopped by a signal after saving (EX_TEMPFAIL: rerun the command to resume).
INTERRUPTED_EXIT_STATUS = 75


class TrainingError(Exception):
    """A run that cannot start or go on; the message says why and what to do."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or infinite; the message names the step and the loss terms."""


@dataclass(frozen=True)
class TrainResult:
    """Where a run stands after `train`: epochs and steps done, and the signal that stopped it, if any."""

    run: Path
    epochs_done: int
    global_step: int
    interrupted_by: str | None
    seconds: float
    #: A stop signal that came with the last step: the run is complete, but whoever sent it wants the
    #: process to end (`3die benchmark` then stops before evaluating).
    stop_signal: str | None = None

    @property
    def complete(self) -> bool:
        return self.interrupted_by is None


def train(
    config: TrainConfig, progress: bool = True, echo: Callable[[str], None] | None = None
) -> TrainResult:
    """Train `config.method` on the train split of `config.data`, writing the run folder `config.out`.

    Works alone or under torchrun (RANK/WORLD_SIZE/LOCAL_RANK). Raises DatasetError (unreadable data),
    TrainingError (non-finite loss, incompatible checkpoint) or ConfigError.
    """
    out = Path(config.out)
    outside = "give --out a run folder of its own, outside any dataset"
    if (out / spec.MANIFEST_NAME).exists() or (out / spec.split_images_name("train")).exists():
        raise ConfigError(f"{out}: is a dataset folder; {outside}")
    for folder in out.resolve().parents:  # both files, as 3die render writes them: a dataset for sure
        if (folder / spec.MANIFEST_NAME).is_file() and (folder / spec.OBJECTS_CSV_NAME).is_file():
            raise ConfigError(f"{out}: is inside the dataset folder {folder}; {outside}")
    context = start_processes(config.device)
    say = (echo or _stderr) if context.is_main else _silent
    try:
        with contextlib.ExitStack() as held:
            # from the start: a stop signal while the dataset is checked or the checkpoint loaded stops the
            # run before its first step, with the exit status of a stopped run
            signals = held.enter_context(StopSignals())
            trainer = Trainer(config, context, say, held)
            return trainer.run(progress and context.is_main, signals)
    finally:
        stop_processes(context)


def load_trained(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[Method, dict[str, Any]]:
    """The trained method of a run folder (from its newest verified checkpoint) in eval mode on `device`,
    and its resolved config, with "checkpoint": {"path", "sha256", "epochs_done", "global_step", "complete"}:
    sha256 is that of the bytes the weights were loaded from (the file may be replaced by a save since)."""
    run = Path(run_dir)
    loaded = load_checkpoint(run / CHECKPOINTS_DIR, warn=_stderr, required=PAYLOAD_KEYS)
    if loaded is None and (run / spec.MANIFEST_NAME).is_file():
        raise CheckpointError(
            f"{run}: a dataset folder, not a training run; give the folder `3die train --out` wrote (and "
            "this dataset as --data to evaluate on it)"
        )
    if loaded is None:
        raise CheckpointError(f"{run / CHECKPOINTS_DIR}: no checkpoint (train the run first)")
    config = dict(loaded.payload["config"])
    try:
        method = build_method(config["method"], **config["method_config"])
    except ValueError as error:  # a method or option this version of sie_models does not have
        raise CheckpointError(
            f"{loaded.path}: cannot rebuild the trained method ({error}); use the version of the code "
            "that trained it"
        ) from None
    method.load_state_dict(loaded.payload["model"])
    config["checkpoint"] = {
        "path": str(loaded.path),
        "sha256": loaded.sha256,
        "epochs_done": loaded.payload["epoch"],
        "global_step": loaded.payload["global_step"],
        "complete": loaded.payload["epoch"] >= config["epochs"] and loaded.payload["step_in_epoch"] == 0,
    }
    return method.to(device).eval(), config


# --- the trainer -------------------------------------------------------------------------------------
class Trainer:
    """The state of one run in one process: data, method, optimiser, position."""

    def __init__(
        self,
        config: TrainConfig,
        context: ProcessContext,
        echo: Callable[[str], None],
        held: contextlib.ExitStack,
    ) -> None:
        """Load the data, build the method and resume from the run's checkpoint; the run folder's lock
        is entered into `held` (on the main process), which the caller keeps open while it trains."""
        self.config, self.context, self.echo = config, context, echo
        self.run_dir = Path(config.out)
        seed_everything(config.seed, context.device)
        self.views = training_split(  # each process checks its share of the objects
            config.data,
            "train",
            config.skip_bad_objects,
            config.workers,
            echo,
            share=(context.rank, context.world_size),
            merge=partial(union_over_processes, context=context),
        )
        self.views.check_image_size(config.image_size)
        if self.views.views < 2:
            raise DatasetError(
                f"{config.data}: {self.views.views} view per object; training pairs two distinct views of an "
                "object, so it needs at least 2 (render with --views 2 or more)"
            )
        self.method = build_configured_method(config, self.views.num_classes)
        self.per_process_batch = per_process_batch(config.batch_size, context.world_size)
        self.sampler = ObjectSampler(
            len(self.views), self.views.views, config.seed, context.rank, context.world_size
        )
        self.steps_per_epoch = self.sampler.per_rank // self.per_process_batch
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"batch size {config.batch_size} ({self.per_process_batch} per process) is larger than the "
                f"{self.sampler.per_rank} training objects of each process; lower --batch-size"
            )
        self.amp_dtype = resolve_amp_dtype(config, context.device)
        self.resolved = resolved_config(config, self.method, self.views, context, self.amp_dtype)
        self.resolved.update(per_process_batch=self.per_process_batch, steps_per_epoch=self.steps_per_epoch)
        self._lock_run(held)
        try:
            checkpoint = together(
                partial(load_checkpoint, self.run_dir / CHECKPOINTS_DIR, warn=echo, required=PAYLOAD_KEYS),
                context,
            )
        except PeerFailed as failed:
            raise TrainingError(
                f"{self.run_dir}: process {failed.rank} could not load the checkpoint (its error says why); "
                "no process started training"
            ) from None
        loaded = None if checkpoint is None else f"{checkpoint.path.name} {checkpoint.sha256[:12]}"
        check_same_checkpoint(self.run_dir, gather_objects(loaded, context))
        saved = {} if checkpoint is None else checkpoint.payload["config"]
        # Training time, hardware and code versions add up over the sessions of a run (None: a run begun
        # before they were recorded); this session's count from `run` and join at the first save.
        self.earlier_seconds = saved.get("train_seconds", 0.0 if checkpoint is None else None)
        self.earlier_hardware, self.session_hardware = saved.get("hardware"), training_hardware(context)
        self.earlier_version, self.session_version = saved.get("version"), self.resolved["version"]
        self.resolved.update(
            hardware=self.earlier_hardware or self.session_hardware,
            version=self.earlier_version or self.session_version,
            train_seconds=self.earlier_seconds,
        )
        self.session_started = time.perf_counter()
        if checkpoint is not None:
            check_resumable(checkpoint, self.resolved)
            self.method.load_state_dict(checkpoint.payload["model"])
        self.method.to(context.device)
        if context.distributed:
            self.method = synchronise_batch_norm(self.method, context.device)
        self.model = self._wrap(self.method)
        self.optimizer = torch.optim.Adam(
            self.method.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.scaler = torch.amp.GradScaler(context.device.type, enabled=self.amp_dtype == torch.float16)
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        if checkpoint is not None:
            self._restore(checkpoint)
        if (self.epoch, self.step_in_epoch) > (config.epochs, 0):  # scores would be of another training
            held = f"{self.epoch} epochs" + (f" and {self.step_in_epoch} steps" if self.step_in_epoch else "")
            raise TrainingError(
                f"{self.run_dir}: the checkpoint holds {held}, more than the --epochs {config.epochs} asked; "
                f"give --epochs {self.epoch + (self.step_in_epoch > 0)} or more to use it, or another --out"
            )
        # a finished run's record is its last checkpoint's (mended if lost or stale), not this session's;
        # written by `run` once it trains (a session stopped before its first step changes nothing)
        finished = (self.epoch, self.step_in_epoch) == (config.epochs, 0)
        self.record = saved if finished else self.resolved
        self.pairs = ViewPairs(self.views, config.image_size, config.seed, self.method.action_dim)

    def _lock_run(self, held: contextlib.ExitStack) -> None:
        """Take the run folder's lock on the main process (creating the folder), or stop every process
        with one line when another training holds it or the folder cannot be written."""
        lock = self.run_dir / TRAIN_LOCK_NAME

        def take() -> None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            held.enter_context(exclusive_lock(lock, wait=False))

        try:
            together(take, self.context, errors=(LockBusy, OSError), main_only=True)
        except LockBusy as busy:
            raise TrainingError(
                f"{self.run_dir}: another training of this run folder is running "
                f"({busy.holder or 'see ' + str(lock)}); wait for it to finish or stop it, or pass another "
                "--out"
            ) from None
        except OSError as error:
            raise TrainingError(
                f"{lock}: cannot lock the run folder ({error.strerror or error}); make it writable or pass "
                "another --out"
            ) from None
        except PeerFailed:
            raise TrainingError(
                f"{self.run_dir}: process 0 could not lock the run folder (its error says why); no process "
                "started training"
            ) from None
        self._on_main(self._check_folders)  # now, not when the first epoch ends, as a save would

    def _check_folders(self) -> None:
        for name in (CHECKPOINTS_DIR, TENSORBOARD_DIR):
            writable_folder(self.run_dir / name)

    def run(self, progress: bool, signals: StopSignals | None = None) -> TrainResult:
        """Train to the configured epochs, saving a checkpoint every epoch; stop, saved, at the first step
        after a stop signal (`signals`: handlers already installed, else installed here)."""
        started = self.session_started = time.perf_counter()
        total = self.config.epochs * self.steps_per_epoch
        if self.epoch == self.config.epochs:
            self._write_record()
            self.echo(f"{self.run_dir}: already trained for {self.epoch} epochs (raise --epochs to go on)")
            return self._result(None, started)
        stopped = first_rank(signals is not None and signals.received is not None, self.context)
        if stopped is not None:  # while the run started: nothing trained this session, nothing to save
            received = (signals.received if signals is not None else None) or f"a signal to process {stopped}"
            self.echo(
                f"{self.run_dir}: stopped by {received} before its first step; nothing was trained or saved "
                "by this session, rerun the same command to train"
            )
            return self._result(received, started)
        self._write_record()
        done = self.epoch * self.steps_per_epoch + self.step_in_epoch
        bar = tqdm(total=total, initial=done, unit="step", disable=not progress, dynamic_ncols=True)
        stops = contextlib.nullcontext(signals) if signals is not None else StopSignals()
        with stops as signals, bar, self._tensorboard() as writer, self._batches() as batches:
            meter = Throughput(self.config.batch_size)
            for epoch in range(self.epoch, self.config.epochs):
                while self.step_in_epoch < self.steps_per_epoch:
                    stats, stop = self._step(next(batches), signals)
                    bar.update()
                    if self.global_step % self.config.log_every == 0:
                        self._log(writer, bar, stats, meter.rate(self.global_step))
                    if stop:
                        if self.step_in_epoch == self.steps_per_epoch:  # stopped at the epoch's last step
                            self.epoch, self.step_in_epoch = epoch + 1, 0
                        self._save()
                        if self.epoch == self.config.epochs:  # the signal came with the last step: done
                            finished = self._result(None, started)
                            return replace(finished, stop_signal=signals.received or "signal")
                        self.echo(
                            f"{self.run_dir}: stopped by {signals.received or 'another process'} at epoch "
                            f"{self.epoch + 1}, step {self.step_in_epoch}; checkpoint saved, rerun the "
                            "same command to resume"
                        )
                        return self._result(signals.received or "signal", started)
                self.epoch, self.step_in_epoch = epoch + 1, 0
                self._save()
                if writer is not None:
                    writer.flush()
        # a signal after the last step's check (during the final save, say) still tells `3die benchmark`
        # to stop before evaluating: the scheduler that sent it is about to end the job
        return replace(self._result(None, started), stop_signal=signals.received)

    @contextlib.contextmanager
    def _batches(self) -> Iterator[Iterator[dict[str, torch.Tensor]]]:
        """The batches of the rest of the run from one DataLoader iterator, whose workers are stopped on
        exit, also when the run fails: they ignore SIGTERM (so that a preemption signal reaches only this
        process), so the exit-time terminate() of multiprocessing would not stop them."""
        per_epoch = self.steps_per_epoch * self.per_process_batch
        start = self.step_in_epoch * self.per_process_batch
        loader = DataLoader(
            self.pairs,
            batch_size=self.per_process_batch,
            sampler=EpochsSampler(self.sampler, self.epoch, self.config.epochs, per_epoch, start),
            collate_fn=self.pairs.collate,
            drop_last=True,
            num_workers=self.config.workers,
            pin_memory=self.context.device.type == "cuda",
            worker_init_fn=ignore_stop_signals,
            generator=torch.Generator().manual_seed(self.config.seed),
        )
        batches = iter(loader)
        try:
            yield batches
        except DatasetError as error:  # a file the check before training passed (it reads JPEG ends only)
            raise DatasetError(
                f"{worker_error_line(error)}; "
                f"{damaged_image_remedy(self.config.data, 'the checkpoints are kept', training=True)}"
            ) from None
        finally:
            stop_workers = getattr(batches, "_shutdown_workers", None)  # DataLoader has no public call
            if stop_workers is not None:
                stop_workers()

    def _step(self, batch: dict[str, torch.Tensor], signals: StopSignals) -> tuple[dict, bool]:
        """One optimisation step; returns the step's statistics and whether any process must stop."""
        device = self.context.device
        view1 = normalise_views(batch["view1"], device)
        view2 = normalise_views(batch["view2"], device)
        action = batch["action"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=self.amp_dtype or torch.float32, enabled=bool(self.amp_dtype)):
            output = self.model(view1, view2, action, labels)
        finite = bool(torch.isfinite(output.loss.detach()).item())
        non_finite, stop = any_process([not finite, signals.received is not None], self.context)
        if non_finite:
            raise NonFiniteLossError(non_finite_message(self, output.stats, finite))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(output.loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step_in_epoch += 1
        self.global_step += 1
        return output.stats, stop

    def _log(self, writer, bar: tqdm, stats: dict[str, torch.Tensor], images_per_second: float) -> None:
        names = sorted(stats)
        values = mean_over_processes(torch.stack([stats[name].float() for name in names]), self.context)
        values = values.tolist()
        if writer is not None:
            for name, value in zip(names, values, strict=True):
                writer.add_scalar(f"train/{name}", value, self.global_step)
            writer.add_scalar("throughput/images_per_s", images_per_second, self.global_step)
            writer.add_scalar("optim/lr", self.optimizer.param_groups[0]["lr"], self.global_step)
            writer.add_scalar(
                "progress/epoch", self.epoch + self.step_in_epoch / self.steps_per_epoch, self.global_step
            )
        loss = values[names.index("loss")] if "loss" in names else float("nan")
        bar.set_postfix(epoch=self.epoch + 1, loss=f"{loss:.4g}", img_s=f"{images_per_second:.0f}")

    def _write_record(self) -> None:
        self._on_main(lambda: write_json_if_changed(self.run_dir / CONFIG_NAME, self.record))

    def _save(self) -> None:
        if self.earlier_seconds is not None:
            session = time.perf_counter() - self.session_started
            self.resolved["train_seconds"] = round(self.earlier_seconds + session, 3)
        self.resolved["hardware"] = merged_sessions(self.earlier_hardware, self.session_hardware)
        self.resolved["version"] = merged_sessions(self.earlier_version, self.session_version)

        def save() -> None:
            save_checkpoint(self.run_dir / CHECKPOINTS_DIR, self._payload())
            write_json_atomically(self.run_dir / CONFIG_NAME, self.resolved)

        self._on_main(save)

    def _on_main(self, write: Callable[[], None]) -> None:
        """Run `write` on the main process only; every process returns when it is done, and when it
        failed (a full disk, a read-only folder) the main process raises its error and the others a
        TrainingError saying so, instead of waiting for it at the next collective."""
        try:
            together(write, self.context, errors=(OSError,), main_only=True)
        except PeerFailed:
            raise TrainingError(
                f"{self.run_dir}: process 0 could not write the run folder (its error says why); training "
                "stopped and the checkpoints already saved are kept"
            ) from None

    def _payload(self) -> dict[str, Any]:
        return {
            "config": self.resolved,
            "model": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "rng": {"torch": torch.get_rng_state(), "cuda": cuda_rng_states(self.context.device)},
        }

    def _restore(self, checkpoint: LoadedCheckpoint) -> None:
        payload = checkpoint.payload
        self.optimizer.load_state_dict(payload["optimizer"])
        if payload["scaler"]:
            self.scaler.load_state_dict(payload["scaler"])
        self.epoch, self.step_in_epoch = payload["epoch"], payload["step_in_epoch"]
        self.global_step = payload["global_step"]
        torch.set_rng_state(payload["rng"]["torch"])
        restore_cuda_rng(payload["rng"]["cuda"], self.context.device)
        if self.epoch < self.config.epochs:  # a finished run says so in `run`
            self.echo(
                f"{self.run_dir}: resuming from {checkpoint.path.name} at epoch {self.epoch + 1}, "
                f"step {self.step_in_epoch} (global step {self.global_step})"
            )

    def _wrap(self, method: Method) -> torch.nn.Module:
        if not self.context.distributed:
            return method
        device_ids = [self.context.device.index] if self.context.device.type == "cuda" else None
        return DistributedDataParallel(method, device_ids=device_ids)

    @contextlib.contextmanager
    def _tensorboard(self) -> Iterator:
        if not self.context.is_main:
            yield None
            return
        from torch.utils.tensorboard import SummaryWriter

        # steps up to the checkpoint's are logged already; later ones (logged before a kill) are redone
        writer = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=self.global_step + 1)
        try:
            yield writer
        finally:
            writer.close()

    def _result(self, interrupted_by: str | None, started: float) -> TrainResult:
        return TrainResult(
            self.run_dir, self.epoch, self.global_step, interrupted_by, time.perf_counter() - started
        )


# --- pieces ----------------------------------------------------------------------------------------
def seed_everything(seed: int, device: torch.device) -> None:
    """Seed torch (model initialisation), NumPy and `random`; deterministic kernels on the CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.backends.cudnn.benchmark = True


def cuda_rng_states(device: torch.device) -> list[torch.Tensor]:
    """[the CUDA generator state of the training device], [] on the CPU. Every process seeds its device
    alike and draws the same numbers, so rank 0's state stands for all of them."""
    return [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []


def restore_cuda_rng(states: list[torch.Tensor], device: torch.device) -> None:
    """Give the training device the saved CUDA generator state (`cuda_rng_states`; the first device's
    state in checkpoints that saved every device's), whatever the number of GPUs of either machine."""
    if states and device.type == "cuda":
        torch.cuda.set_rng_state(states[0], device)


def build_configured_method(config: TrainConfig, num_classes: int) -> Method:
    """The method of `config` with online probes for the dataset's classes (its options are checked by
    `config.check_options`, reserved ones included)."""
    try:
        return build_method(
            config.method,
            image_size=config.image_size,
            width=config.width,
            num_classes=num_classes,
            **config.method_options,
        )
    except ValueError as error:
        raise ConfigError(str(error)) from None


def per_process_batch(batch_size: int, world_size: int) -> int:
    if batch_size % world_size:
        raise ConfigError(f"batch size {batch_size} is not divisible by the {world_size} processes")
    return batch_size // world_size


def resolve_amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None when mixed precision is off (always on the CPU)."""
    if not config.amp or device.type != "cuda":
        return None
    if config.amp_dtype == "auto":
        native = torch.cuda.is_bf16_supported(including_emulation=False)  # emulated bfloat16 is slow
        return torch.bfloat16 if native else torch.float16
    return getattr(torch, config.amp_dtype)


def resolved_config(
    config: TrainConfig,
    method: Method,
    views: ObjectViews,
    context: ProcessContext,
    amp_dtype: torch.dtype | None,
) -> dict[str, Any]:
    """Everything the run depends on, JSON-serialisable (RUN/config.json)."""
    return {
        **config.to_dict(),
        "data": str(Path(config.data).resolve()),
        "out": str(Path(config.out).resolve()),
        "device": str(context.device),
        "amp": amp_dtype is not None,
        "amp_dtype": str(amp_dtype).removeprefix("torch.") if amp_dtype else None,
        "method_config": method.config,
        "world_size": context.world_size,
        "dataset": {
            "kind": views.kind,
            "split": views.split,
            "objects": len(views),
            "views": views.views,
            "num_classes": views.num_classes,
            "fingerprint": dataset_fingerprint(views),
            "rendering": rendering_settings(dataset_manifest(config.data)),
            "reencoded": views.reencoding(config.image_size),
        },
        "version": code_version(),
    }


def writable_folder(folder: Path) -> None:
    """Make `folder` if needed and write and delete a file in it; OSError naming the folder otherwise."""
    folder.mkdir(exist_ok=True)
    probe = folder / f".write-test-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(folder)) from None


def training_hardware(context: ProcessContext) -> str:
    """Processes x device model: "8x NVIDIA A100-SXM4-80GB", "1x CPU (AMD EPYC 7763, 2 cores)"."""
    if context.device.type == "cuda":
        return f"{context.world_size}x {torch.cuda.get_device_name(context.device)}"
    return f"{context.world_size}x CPU ({cpu_model()}, {os.cpu_count()} cores)"


def dataset_fingerprint(views: ObjectViews) -> str:
    """sha256 of the split's objects, labels and views: the same for a folder and its packed file."""
    text = "\n".join(f"{key} {label}" for key, label in zip(views.keys, views.labels.tolist(), strict=True))
    return hashlib.sha256(f"{views.views}\n{text}".encode()).hexdigest()


def check_same_checkpoint(run_dir: Path, loaded: list[str | None]) -> None:
    """TrainingError unless every process loaded the same checkpoint (`loaded`: per rank, "NAME SHA256"
    or None): processes that see different run folders (node-local storage) would resume at different
    points and fall out of step."""
    if len(set(loaded)) > 1:
        found = ", ".join(f"rank {rank}: {name or 'none'}" for rank, name in enumerate(loaded))
        raise TrainingError(
            f"{run_dir}: the processes found different checkpoints ({found}); every process must see the "
            "same --out, on a file system shared by all nodes"
        )


def check_resumable(checkpoint: LoadedCheckpoint, resolved: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint made with other trajectory settings or another dataset."""
    saved = checkpoint.payload["config"]
    differences = []
    for key in TRAJECTORY_KEYS:
        if key == "method_config":
            differences += _entry_changes("", saved[key], resolved[key])
        elif saved[key] != resolved[key]:
            differences.append(f"{key}: {saved[key]!r} -> {resolved[key]!r}")
    if saved["dataset"]["fingerprint"] != resolved["dataset"]["fingerprint"]:
        differences.append("dataset: other objects or labels")
    rendered = saved["dataset"].get("rendering"), resolved["dataset"]["rendering"]
    if None not in rendered:  # None: not recorded, or no manifest
        differences += _entry_changes("dataset ", *rendered)
    reencoded = saved["dataset"].get("reencoded", _ABSENT), resolved["dataset"]["reencoded"]
    if reencoded[0] is not _ABSENT and reencoded[0] != reencoded[1]:  # absent: not recorded
        differences.append(
            f"dataset images re-encoded: {_reencoding(reencoded[0])} -> {_reencoding(reencoded[1])}"
        )
    if saved["world_size"] != resolved["world_size"] and checkpoint.payload["step_in_epoch"]:
        differences.append(
            f"world size: {saved['world_size']} -> {resolved['world_size']} in the middle of epoch "
            f"{checkpoint.payload['epoch'] + 1} (finish the epoch with {saved['world_size']} processes)"
        )
    if differences:
        raise TrainingError(
            f"{checkpoint.path}: cannot resume, this run was trained with other settings "
            f"({'; '.join(differences)}); rerun with the run's settings (see {CONFIG_NAME}) or choose "
            "another --out"
        )


def _entry_changes(prefix: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """ "PREFIXKEY: OLD -> NEW" for every key whose value differs between two dicts, sorted by key; keys
    whose values are both dicts name only their differing entries ("PREFIXKEY.ENTRY: OLD -> NEW")."""
    changes = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if isinstance(before, dict) and isinstance(after, dict):
            changes += _entry_changes(f"{prefix}{key}.", before, after)
        elif before != after or (before is _ABSENT) != (after is _ABSENT):
            changes.append(f"{prefix}{key}: {_shown(before)} -> {_shown(after)}")
    return changes


_ABSENT = object()


def _reencoding(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "no (as rendered)"
    if entry.get("raw"):
        return f"resized from {entry['image_size']} px pixels"
    return f"{entry['image_size']} px at JPEG quality {entry['jpeg_quality']}"


def _shown(value: Any) -> str:
    return "(absent)" if value is _ABSENT else repr(value)


def non_finite_message(trainer: Trainer, stats: dict[str, torch.Tensor], finite_here: bool) -> str:
    """Where the loss became non-finite and the loss terms of this process at that step."""
    terms = ", ".join(f"{name}={float(value):.6g}" for name, value in sorted(stats.items()))
    terms = f"on another process (here: {terms})" if finite_here else terms
    saved = (trainer.run_dir / CHECKPOINTS_DIR / LAST).exists()
    kept = "and the last checkpoint is kept" if saved else "(no checkpoint was saved yet)"
    return (
        f"non-finite loss at epoch {trainer.epoch + 1}, step {trainer.step_in_epoch + 1} "
        f"(global step {trainer.global_step + 1}): {terms}. Training stopped before updating the weights "
        f"{kept}; try a lower --lr or --no-amp, or check the data."
    )


class Throughput:
    """Images per second (two views per sample, all processes) between successive calls."""

    def __init__(self, global_batch: int) -> None:
        self.images_per_step = 2 * global_batch
        self.time, self.step = time.perf_counter(), None

    def rate(self, step: int) -> float:
        now = time.perf_counter()
        previous_step = step - 1 if self.step is None else self.step
        rate = (step - previous_step) * self.images_per_step / max(now - self.time, 1e-9)
        self.time, self.step = now, step
        return rate


class StopSignals:
    """While active, SIGTERM, SIGUSR1 and SIGINT only set `received` (the signal's name); a second SIGINT
    interrupts at once. Handlers are installed only in the main thread and restored on exit."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, frame) -> None:
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(number).name


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave the stop signals to the main process, which shuts them down."""
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as indented JSON with sorted keys, atomically."""
    write_text_atomically(path, _json_text(data))


def write_json_if_changed(path: Path, data: dict[str, Any]) -> None:
    """`write_json_atomically` unless the file already holds exactly that text."""
    text = _json_text(data)
    with contextlib.suppress(OSError, UnicodeDecodeError):
        if path.read_text() == text:
            return
    write_text_atomically(path, text)


def _json_text(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _silent(line: str) -> None:
    """Processes other than rank 0 print nothing."""
