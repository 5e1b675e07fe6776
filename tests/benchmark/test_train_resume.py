"""Killing a real training process and rerunning the same command gives the uninterrupted weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from synthetic_data import write_dataset

from benchmark.train import INTERRUPTED_EXIT_STATUS, read_checkpoint

BIN = Path(sys.executable).parent
EPOCHS, STEPS_PER_EPOCH = 5, 6  # 24 objects in batches of 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume") / "data"
    return write_dataset(root, classes=3, train_per_class=8, val_per_class=0, views=6, size=16)


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    """The weights of an uninterrupted run."""
    run = tmp_path_factory.mktemp("resume") / "reference"
    _run(_command(dataset.root, run))
    payload = read_checkpoint(run / "checkpoints" / "last.pt")
    assert payload["global_step"] == EPOCHS * STEPS_PER_EPOCH
    return payload["model"]


def _command(data: Path, run: Path) -> list[str]:
    return [
        str(BIN / "3die"), "train", "--method", "sie", "--data", str(data), "--out", str(run),
        "--preset", "tiny", "--image-size", "16", "--batch-size", "4", "--epochs", str(EPOCHS),
        "--workers", "1", "--no-progress",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(command: list[str]) -> subprocess.CompletedProcess:
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, env=_env())
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


def _start_and_signal(command: list[str], ready: Path, number: int) -> tuple[int, str, str]:
    """Start the run, wait until `ready` exists, then send it `number`: (exit status, stdout, stderr)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 240
    while not ready.exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended before it could be interrupted: {process.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, "the run did not start in time"
        time.sleep(0.005)
    process.send_signal(number)
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, stdout, stderr


def _assert_same_weights(resumed: dict, reference: dict) -> None:
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(resumed[name], tensor), f"{name} differs from the uninterrupted run"


@pytest.mark.slow
def test_rerun_after_sigkill_reaches_the_uninterrupted_weights(dataset, reference, tmp_path):
    run = tmp_path / "killed"
    command = _command(dataset.root, run)
    status, _, _ = _start_and_signal(command, run / "checkpoints" / "last.pt", signal.SIGKILL)
    assert status == -signal.SIGKILL
    saved = read_checkpoint(run / "checkpoints" / "last.pt")
    assert 1 <= saved["epoch"] < EPOCHS, "killed in the middle of training"
    resumed = _run(command)
    assert f"resuming from last.pt at epoch {saved['epoch'] + 1}, step 0" in resumed.stdout
    _assert_same_weights(read_checkpoint(run / "checkpoints" / "last.pt")["model"], reference)


@pytest.mark.slow
def test_sigterm_saves_mid_epoch_and_the_rerun_reaches_the_uninterrupted_weights(
    dataset, reference, tmp_path
):
    run = tmp_path / "preempted"
    command = _command(dataset.root, run)
    status, stdout, stderr = _start_and_signal(command, run / "tensorboard", signal.SIGTERM)
    assert status == INTERRUPTED_EXIT_STATUS, stderr[-3000:]
    assert "stopped by SIGTERM" in stdout and "rerun the same command to resume" in stdout
    saved = read_checkpoint(run / "checkpoints" / "last.pt")
    assert saved["epoch"] == 0 and 1 <= saved["step_in_epoch"] < STEPS_PER_EPOCH, "stopped mid-epoch"
    resumed = _run(command)
    assert f"resuming from last.pt at epoch 1, step {saved['step_in_epoch']}" in resumed.stdout
    _assert_same_weights(read_checkpoint(run / "checkpoints" / "last.pt")["model"], reference)
