"""Two CPU processes over gloo: a torchrun training run, and batch norm synchronised across processes."""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from initial_weights import parameters_left_at_initial
from torch import nn

from benchmark.train import read_checkpoint
from benchmark.train.distributed import CPUSyncBatchNorm, synchronise_batch_norm

BIN = Path(sys.executable).parent


def _environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_torchrun_with_two_gloo_processes_trains_and_writes_one_checkpoint(synthetic_dataset, tmp_path):
    """Both processes end with the same weights (DDP averages their gradients, batch norm is synchronised),
    which process 0 saves, and they differ from the initial ones."""
    run = tmp_path / "run"
    command = [
        str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2",
        str(Path(__file__).parent / "rank_weights.py"), str(tmp_path), "train",
        "--method", "sie", "--data", str(synthetic_dataset.root), "--out", str(run), "--preset", "tiny",
        "--image-size", "16", "--batch-size", "4", "--epochs", "1", "--no-progress",
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=240, env=_environment())
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert sorted(path.name for path in (run / "checkpoints").iterdir()) == ["last.pt"]
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2 and config["per_process_batch"] == 2 and config["steps_per_epoch"] == 2
    payload = read_checkpoint(run / "checkpoints" / "last.pt")
    assert (payload["epoch"], payload["global_step"]) == (1, 2)
    assert any(name.endswith("running_mean") for name in payload["model"]), "batch-norm buffers saved"
    assert not parameters_left_at_initial(payload)
    ranks = [torch.load(tmp_path / f"rank-{rank}.pt", weights_only=True) for rank in (0, 1)]
    for name, saved in payload["model"].items():
        assert torch.equal(ranks[0][name], saved) and torch.equal(ranks[1][name], saved), name


@pytest.mark.slow
def test_benchmark_under_torchrun_trains_on_both_processes_and_evaluates_once(synthetic_dataset, tmp_path):
    """`torchrun 3die benchmark`: both processes train the run, process 0 alone evaluates and adds the row
    (the others would evaluate the same run again and append the same row)."""
    board = tmp_path / "board.csv"
    command = [
        str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "3die"), "benchmark",
        "--method", "vicreg", "--data", str(synthetic_dataset.root), "--out", str(tmp_path / "out"),
        "--preset", "tiny", "--image-size", "16", "--batch-size", "4", "--epochs", "1", "--probe-epochs", "1",
        "--device", "cpu", "--leaderboard", str(board), "--no-progress",
    ]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300, env=_environment())
    assert finished.returncode == 0, finished.stderr[-3000:]
    (run,) = (tmp_path / "out" / "runs").iterdir()
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert finished.stdout.count("training vicreg (tiny)") == 1, finished.stdout
    assert finished.stdout.count("top1") == 1, finished.stdout  # the table of the one row, printed once
    assert finished.stdout.count("row of vicreg written") == 1, finished.stdout
    rows = board.read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("vicreg,,batch_size=4,tiny,"), rows


@pytest.mark.slow
def test_a_save_that_fails_on_process_0_stops_every_process_with_one_line(synthetic_dataset, tmp_path):
    """The checkpoints folder turns read-only between two sessions of a 2-process run: process 0's write
    (checked as the run starts, with the writes of saves) fails and says why, process 1 says that process 0
    failed instead of waiting for it at the next collective; the checkpoint saved before stays."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "reliability"))
    from faults import obey_permissions

    run = tmp_path / "run"
    command = [
        str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(BIN / "3die"), "train",
        "--method", "vicreg", "--data", str(synthetic_dataset.root), "--out", str(run), "--preset", "tiny",
        "--image-size", "16", "--batch-size", "4", "--no-progress",
    ]  # fmt: skip
    options = dict(capture_output=True, text=True, timeout=240, env=_environment())
    first = subprocess.run([*command, "--epochs", "1"], **options)
    assert first.returncode == 0, first.stderr[-3000:]
    saved = (run / "checkpoints" / "last.pt").read_bytes()
    (run / "checkpoints").chmod(0o555)
    try:
        second = subprocess.run([*command, "--epochs", "2"], preexec_fn=obey_permissions, **options)
    finally:
        (run / "checkpoints").chmod(0o755)
    assert second.returncode != 0
    errors = [line for line in second.stderr.splitlines() if line.startswith("Error:")]
    assert any("Permission denied" in line and "checkpoints" in line for line in errors), second.stderr[
        -3000:
    ]
    assert any("process 0 could not write the run folder" in line for line in errors), second.stderr[-3000:]
    assert (run / "checkpoints" / "last.pt").read_bytes() == saved


@pytest.mark.slow
def test_a_checkpoint_that_one_process_cannot_load_stops_every_process_with_one_line(
    synthetic_dataset, tmp_path
):
    """Process 1 cannot read the run folder (tests/reliability/rank_fault.py): it says why, process 0 says
    that process 1 failed instead of waiting for it in the next collective, and neither trains."""
    script = Path(__file__).parents[1] / "reliability" / "rank_fault.py"
    run = tmp_path / "run"
    command = [
        str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(script), "1", "train",
        "--method", "vicreg", "--data", str(synthetic_dataset.root), "--out", str(run), "--preset", "tiny",
        "--image-size", "16", "--batch-size", "4", "--epochs", "1", "--no-progress",
    ]  # fmt: skip
    failed = subprocess.run(command, capture_output=True, text=True, timeout=240, env=_environment())
    assert failed.returncode != 0
    errors = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
    assert any("injected on process 1" in line for line in errors), failed.stderr[-3000:]
    assert any("process 1 could not load the checkpoint" in line for line in errors), failed.stderr[-3000:]
    assert not (run / "checkpoints").exists() or not list((run / "checkpoints").iterdir())


def _compare_with_full_batch(rank: int, world_size: int, out: str) -> None:
    init_method = f"file://{Path(out) / 'init'}"  # a rendezvous file: no port another run could hold
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        inputs = torch.randn(8, 3, 4, 4) * 3 + 1
        reference = nn.Sequential(nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(48, 2), nn.BatchNorm1d(2))
        synchronised = synchronise_batch_norm(copy.deepcopy(reference), torch.device("cpu"))
        assert isinstance(synchronised[0], CPUSyncBatchNorm) and isinstance(synchronised[3], CPUSyncBatchNorm)
        mine = inputs[rank * 4 : (rank + 1) * 4].clone().requires_grad_()
        output = synchronised(mine)
        (output * torch.arange(2.0)).pow(2).sum().backward()
        full = inputs.clone().requires_grad_()
        expected = reference(full)
        (expected * torch.arange(2.0)).pow(2).sum().backward()
        parameter_gradients = {name: p.grad.clone() for name, p in synchronised.named_parameters()}
        for gradient in parameter_gradients.values():
            dist.all_reduce(gradient)
        reference_gradients = {name: p.grad for name, p in reference.named_parameters()}
        torch.save(
            {
                "output": (output.detach(), expected.detach()[rank * 4 : (rank + 1) * 4]),
                "input_grad": (mine.grad, full.grad[rank * 4 : (rank + 1) * 4]),
                "parameter_grads": (parameter_gradients, reference_gradients),
                "state": (synchronised.state_dict(), reference.state_dict()),
            },
            Path(out) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_cpu_synchronised_batch_norm_equals_batch_norm_on_the_whole_batch(tmp_path):
    mp.spawn(_compare_with_full_batch, args=(2, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        results = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name in ("output", "input_grad"):
            torch.testing.assert_close(*results[name], rtol=1e-4, atol=1e-5, msg=name)
        synchronised, reference = results["parameter_grads"]
        for name, gradient in reference.items():
            torch.testing.assert_close(synchronised[name], gradient, rtol=1e-4, atol=1e-5, msg=name)
        synchronised_state, reference_state = results["state"]
        assert synchronised_state.keys() == reference_state.keys()
        for name, tensor in reference_state.items():
            torch.testing.assert_close(synchronised_state[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
