"""A run records its training time, summed over resumed sessions, and its hardware in config.json and the
checkpoint; evaluation and the leaderboard row take them from there (older runs without them still work)."""

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from benchmark.evaluate.run import results_header
from benchmark.leaderboard import row_from_results
from benchmark.provenance import merged_sessions
from benchmark.train import load_trained, loop, read_checkpoint, resolve_config, train
from benchmark.train.checkpoint import save_checkpoint


def _train(data: Path, out: Path, epochs: int):
    config = resolve_config(
        "tiny", method="sie", data=str(data), out=str(out), image_size=8, width=2, batch_size=8,
        epochs=epochs, method_options={"projector": "16-16-16"},
    )  # fmt: skip
    assert train(config, progress=False).complete
    return json.loads((out / "config.json").read_text())


def test_training_time_adds_up_over_resumed_sessions_and_hardware_is_recorded(synthetic_dataset, tmp_path):
    first = _train(synthetic_dataset.root, tmp_path, epochs=1)
    assert first["train_seconds"] > 0
    assert first["hardware"].startswith("1x CPU (") and first["hardware"].endswith(" cores)")
    resumed = _train(synthetic_dataset.root, tmp_path, epochs=2)
    assert resumed["train_seconds"] > first["train_seconds"]
    assert resumed["hardware"] == first["hardware"]
    _, config = load_trained(tmp_path)
    assert config["train_seconds"] == resumed["train_seconds"] and config["hardware"] == resumed["hardware"]
    assert _train(synthetic_dataset.root, tmp_path, epochs=2)["train_seconds"] == resumed["train_seconds"]


def test_a_run_checkpointed_before_the_records_resumes_with_unknown_time(synthetic_dataset, tmp_path):
    _train(synthetic_dataset.root, tmp_path, epochs=1)
    checkpoints = tmp_path / "checkpoints"
    payload = read_checkpoint(checkpoints / "last.pt")
    for key in ("train_seconds", "hardware"):
        del payload["config"][key]
    save_checkpoint(checkpoints, payload)
    resumed = _train(synthetic_dataset.root, tmp_path, epochs=2)
    assert resumed["train_seconds"] is None and resumed["hardware"].startswith("1x CPU (")


def test_a_run_records_the_code_version_of_every_session(synthetic_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "code_version", lambda: "0.1.0+g0123456789ab")
    assert _train(synthetic_dataset.root, tmp_path, epochs=1)["version"] == "0.1.0+g0123456789ab"
    monkeypatch.setattr(loop, "code_version", lambda: "0.1.0+gba9876543210.dirty")
    resumed = _train(synthetic_dataset.root, tmp_path, epochs=2)
    assert resumed["version"] == "0.1.0+g0123456789ab + 0.1.0+gba9876543210.dirty"
    assert load_trained(tmp_path)[1]["version"] == resumed["version"]


def test_sessions_on_other_hardware_are_joined_once():
    assert merged_sessions(None, "1x CPU (X, 2 cores)") == "1x CPU (X, 2 cores)"
    assert merged_sessions("2x A", "2x A") == "2x A"
    assert merged_sessions("2x A", "8x B") == "2x A + 8x B"
    assert merged_sessions("2x A + 8x B", "2x A") == "2x A + 8x B"


def _row(config: dict, train_seconds: float | None) -> dict:
    config = {
        "method": "sie", "method_config": {}, "epochs": 2, "seed": 0, "image_size": 8, "device": "cpu",
        "world_size": 1, "checkpoint": {"epochs_done": 2, "complete": True}, **config,
    }  # fmt: skip
    dataset = {"name": "data", "hash": "0" * 16}
    header = results_header(Path("run"), config, dataset, {}, "key", torch.device("cpu"), train_seconds)
    return row_from_results(header)


def test_leaderboard_rows_take_time_and_hardware_from_the_run_or_fall_back():
    recorded = _row({"train_seconds": 812.5, "hardware": "8x NVIDIA A100-SXM4-80GB"}, train_seconds=3.0)
    assert recorded["train_time_s"] == 812.5 and recorded["hardware"] == "8x NVIDIA A100-SXM4-80GB"
    older = _row({}, train_seconds=3.0)
    assert older["train_time_s"] == 3.0 and older["hardware"] == "1x cpu"
    assert _row({"train_seconds": None}, train_seconds=None)["train_time_s"] is None


def test_a_run_resumed_on_other_hardware_records_both(synthetic_dataset, tmp_path, monkeypatch):
    first = _train(synthetic_dataset.root, tmp_path, epochs=1)["hardware"]
    monkeypatch.setattr(loop, "training_hardware", lambda context: "8x NVIDIA H100 80GB HBM3")
    resumed = _train(synthetic_dataset.root, tmp_path, epochs=2)
    assert resumed["hardware"] == f"{first} + 8x NVIDIA H100 80GB HBM3"


def test_training_hardware_counts_the_processes():
    context = SimpleNamespace(device=torch.device("cpu"), world_size=2)
    assert loop.training_hardware(context).startswith("2x CPU (")
