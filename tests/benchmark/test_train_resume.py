"""Killing a real training process and rerunning the same command gives the uninterrupted weights."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from initial_weights import parameters_left_at_initial
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
    assert not parameters_left_at_initial(payload), "the runs compared must have learned"
    return payload["model"]


def _arguments(data: Path, run: Path) -> list[str]:
    return [
        "train", "--method", "sie", "--data", str(data), "--out", str(run), "--preset", "tiny",
        "--image-size", "16", "--batch-size", "4", "--epochs", str(EPOCHS), "--workers", "1", "--no-progress",
    ]  # fmt: skip


def _command(data: Path, run: Path) -> list[str]:
    return [str(BIN / "3die"), *_arguments(data, run)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _run(command: list[str]) -> subprocess.CompletedProcess:
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, env=_env())
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished


#: Runs `3die train` (arguments after the script) in a process that, before optimisation step STEP + 1 (when
#: STEP steps are done), sends itself KILL: `os.kill` to itself (a stop signal reaches the run's own
#: handler at once) or `os.killpg` to its process group (SIGKILL: the run and its data-loading worker, as a
#: scheduler kills a job). Started in a session of its own, so the group is the run's alone.
SIGNAL_AT_STEP = """
import os, signal, sys
from benchmark.train.loop import Trainer
real_step = Trainer._step
def step(self, batch, signals):
    if self.global_step == {step}:
        {kill}
    return real_step(self, batch, signals)
Trainer._step = step
from benchmark.cli import main
sys.argv[0] = "3die"
main()
"""


#: As SIGNAL_AT_STEP, but KILL runs while the checkpoint of step STEP is being saved (after the step's
#: own check of the stop signals).
SIGNAL_WHILE_SAVING = """
import os, signal, sys
from benchmark.train import loop
real_save = loop.save_checkpoint
def save(folder, payload):
    if payload["global_step"] == {step}:
        {kill}
    return real_save(folder, payload)
loop.save_checkpoint = save
from benchmark.cli import main
sys.argv[0] = "3die"
main()
"""


def _signalled_at_step(
    arguments: list[str], step: int, kill: str, template: str = SIGNAL_AT_STEP
) -> subprocess.CompletedProcess:
    """The run of `3die ARGUMENTS` that executes `kill` when `step` optimisation steps are done."""
    script = template.format(step=step, kill=kill)
    return subprocess.run(
        [sys.executable, "-c", script, *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
        start_new_session=True,
    )


def _assert_same_weights(resumed: dict, reference: dict) -> None:
    assert resumed.keys() == reference.keys()
    for name, tensor in reference.items():
        assert torch.equal(resumed[name], tensor), f"{name} differs from the uninterrupted run"


@pytest.mark.slow
def test_rerun_after_sigkill_reaches_the_uninterrupted_weights(dataset, reference, tmp_path):
    """Killed 2 steps into epoch 2, after the checkpoint of epoch 1: the rerun redoes those steps."""
    run = tmp_path / "killed"
    killed = _signalled_at_step(
        _arguments(dataset.root, run), STEPS_PER_EPOCH + 2, "os.killpg(0, signal.SIGKILL)"
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    saved = read_checkpoint(run / "checkpoints" / "last.pt")
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (1, 0, STEPS_PER_EPOCH)
    resumed = _run(_command(dataset.root, run))
    assert "resuming from last.pt at epoch 2, step 0" in resumed.stdout
    _assert_same_weights(read_checkpoint(run / "checkpoints" / "last.pt")["model"], reference)


@pytest.mark.slow
def test_sigterm_saves_mid_epoch_and_the_rerun_reaches_the_uninterrupted_weights(
    dataset, reference, tmp_path
):
    """SIGTERM arrives before step 3 of epoch 1: the run finishes that step, saves and exits with
    INTERRUPTED_EXIT_STATUS; the rerun goes on from step 3."""
    run = tmp_path / "preempted"
    stopped = _signalled_at_step(_arguments(dataset.root, run), 2, "os.kill(os.getpid(), signal.SIGTERM)")
    assert stopped.returncode == INTERRUPTED_EXIT_STATUS, stopped.stderr[-3000:]
    assert "stopped by SIGTERM at epoch 1, step 3" in stopped.stdout
    assert "rerun the same command to resume" in stopped.stdout
    saved = read_checkpoint(run / "checkpoints" / "last.pt")
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (0, 3, 3), "stopped mid-epoch"
    resumed = _run(_command(dataset.root, run))
    assert "resuming from last.pt at epoch 1, step 3" in resumed.stdout
    _assert_same_weights(read_checkpoint(run / "checkpoints" / "last.pt")["model"], reference)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()  # the checkpoint's own step stays logged, none twice
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))


@pytest.mark.slow
def test_sigterm_with_the_last_step_finishes_the_run(dataset, reference, tmp_path):
    """A stop signal that arrives before the last step: the run saves the finished weights and exits 0
    (a scheduler that requeued on the interrupted status would restart a finished run)."""
    run = tmp_path / "finished"
    last = EPOCHS * STEPS_PER_EPOCH - 1
    stopped = _signalled_at_step(_arguments(dataset.root, run), last, "os.kill(os.getpid(), signal.SIGTERM)")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert "stopped by" not in stopped.stdout and "rerun the same command" not in stopped.stdout
    saved = read_checkpoint(run / "checkpoints" / "last.pt")
    assert (saved["epoch"], saved["step_in_epoch"], saved["global_step"]) == (EPOCHS, 0, last + 1)
    _assert_same_weights(saved["model"], reference)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before-the-last-step", "while-saving-it"])
def test_a_benchmark_stopped_with_the_last_step_is_not_evaluated_until_rerun(tmp_path, when):
    """The signal asks the process to end: `3die benchmark` keeps the finished training, skips the
    evaluation (exit status 75), and the rerun evaluates without training; also when the signal comes
    after the last step's check, while its checkpoint is saved."""
    data = write_dataset(tmp_path / "data", classes=3, train_per_class=8, val_per_class=1, views=6, size=16)
    out, board = tmp_path / "out", tmp_path / "board.csv"
    arguments = [
        "benchmark", "--method", "vicreg", "--data", str(data.root), "--out", str(out), "--preset", "tiny",
        "--image-size", "16", "--batch-size", "4", "--epochs", "1", "--probe-epochs", "1",
        "--device", "cpu", "--leaderboard", str(board), "--no-progress",
    ]  # fmt: skip
    kill = "os.kill(os.getpid(), signal.SIGTERM)"
    if when == "before-the-last-step":
        stopped = _signalled_at_step(arguments, STEPS_PER_EPOCH - 1, kill)
    else:
        stopped = _signalled_at_step(arguments, STEPS_PER_EPOCH, kill, SIGNAL_WHILE_SAVING)
    assert stopped.returncode == INTERRUPTED_EXIT_STATUS, stopped.stderr[-3000:]
    assert "trained, then stopped by SIGTERM; rerun the same command to evaluate" in stopped.stdout
    assert not board.exists()
    again = _run([str(BIN / "3die"), *arguments])
    assert "already trained for 1 epochs" in again.stdout and board.read_text().count("\nvicreg,") == 1


def test_float16_mixed_precision_resumes_with_its_gradient_scaler(dataset, tmp_path, monkeypatch):
    """The float16 path of CUDA runs (autocast and a gradient scaler, `--amp-dtype float16`), here on the
    CPU, which autocasts to float16 the same way: the scaler acts (float16 gradients overflow at first and
    it backs off), its state is saved and restored, and a run trained in two sessions reaches the weights
    and loss scale of an uninterrupted one."""
    from click.testing import CliRunner

    from benchmark.cli import main
    from benchmark.train import loop

    monkeypatch.setattr(loop, "resolve_amp_dtype", lambda config, device: torch.float16)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    def trained(run: Path, epochs: int) -> dict:
        arguments = _arguments(dataset.root, run)
        arguments[arguments.index("--epochs") + 1] = str(epochs)
        result = CliRunner().invoke(main, arguments)
        assert result.exit_code == 0, result.output
        return read_checkpoint(run / "checkpoints" / "last.pt")

    whole = trained(tmp_path / "whole", EPOCHS)
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["amp_dtype"] == "float16"
    assert 0 < whole["scaler"]["scale"] < 2.0**16  # the initial scale, backed off at least once
    trained(tmp_path / "parts", 2)
    parts = trained(tmp_path / "parts", EPOCHS)
    assert parts["scaler"] == whole["scaler"] and parts["global_step"] == whole["global_step"]
    for key, value in whole["model"].items():
        assert torch.equal(parts["model"][key], value), key
