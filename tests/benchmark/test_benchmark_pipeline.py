"""`3die benchmark` end to end: on a given dataset, and on the procedural dataset it renders itself."""

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from benchmark import pipeline
from benchmark.cli import main
from benchmark.leaderboard import read_rows
from benchmark.pipeline import ProceduralData, render_procedural
from benchmark.train.checkpoint import load_checkpoint
from render import sources, writer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

TINY = ["--preset", "tiny", "--image-size", "16", "--epochs", "1", "--probe-epochs", "1", "--device", "cpu"]


def _benchmark(*arguments):
    return CliRunner().invoke(main, ["benchmark", *TINY, "--no-progress", *arguments])


def test_benchmark_trains_evaluates_and_adds_one_row_per_experiment(synthetic_dataset, tmp_path, monkeypatch):
    from benchmark.evaluate import run as evaluate_module

    monkeypatch.setattr(evaluate_module, "code_version", lambda: "0.1.0+g0123456789ab")  # committed code
    data = ["--data", str(synthetic_dataset.root), "--out", str(tmp_path), "--batch-size", "4"]
    first = _benchmark("--method", "sie", *data)
    assert first.exit_code == 0, first.output
    # batch size and image size beyond the preset's (16 and 32 px) name the run
    run = tmp_path / "runs" / f"sie-tiny-{synthetic_dataset.root.name}-s0-batch_size=4_image_size=16"
    assert (run / "results.json").is_file() and (run / "checkpoints" / "last.pt").is_file()
    (row,) = read_rows(tmp_path / "leaderboard.csv")
    assert row["train_options"] == "batch_size=4" and row["method_options"] is None
    assert (row["method"], row["preset"], row["image_size"], row["epochs"], row["seed"]) == (
        "sie",
        "tiny",
        16,
        1,
        0,
    )
    assert 0 <= row["top1_inv"] <= 100 and 0 <= row["top1_full"] <= 100 and row["train_time_s"] > 0
    assert 0 < row["mrr"] <= 1 and 0 <= row["hit1"] <= row["hit2"] <= row["hit5"] <= row["hit10"] <= 1
    assert row["rot_r2_equi"] <= 1 and 0 <= row["rot_angle_deg_equi"] <= 180 and 0 <= row["pre"] <= 1
    assert row["probe_epochs"] == "classification=1;rotation=1;colour=1" and row["probe_samples"] == 1
    assert f"{tmp_path / 'leaderboard.csv'}: row of sie written (1 row in all)" in first.output

    again = _benchmark("--method", "sie", *data)
    assert again.exit_code == 0, again.output
    assert "already trained for 1 epochs" in again.output
    assert again.output.count("kept from results.json") == 4, again.output  # every task, not recomputed
    (same,) = read_rows(tmp_path / "leaderboard.csv")
    assert same["train_time_s"] == row["train_time_s"] and same["evaluated_at"] >= row["evaluated_at"]
    assert {key: same[key] for key in same if key.startswith("top1")} == {
        key: row[key] for key in row if key.startswith("top1")
    }

    # probe epochs of some tasks only (given last, so they replace TINY's): the preset's for the others
    baseline = _benchmark("--method", "vicreg", "--probe-samples", "3", *data, "--probe-epochs", "rotation=3")
    assert baseline.exit_code == 0, baseline.output
    rows = read_rows(tmp_path / "leaderboard.csv")
    assert [(r["method"], r["probe_samples"]) for r in rows] == [("sie", 1), ("vicreg", 3)]
    assert rows[1]["probe_epochs"] == "classification=2;rotation=3;colour=2"  # tiny: 2 for every probe
    assert f"{tmp_path / 'leaderboard.csv'}: row of vicreg written (2 rows in all)" in baseline.output


def test_a_benchmark_whose_results_hold_no_score_writes_no_row(synthetic_dataset, tmp_path, monkeypatch):
    """A row the leaderboard could not read back (no metric: every task skipped) is refused, not written."""
    from benchmark import pipeline

    real = pipeline.evaluate_run

    def nothing_scored(*arguments, **options):
        results = real(*arguments, **options)
        return {**results, "metrics": {}, "skipped": {"retrieval": "method vicreg has no predictor"}}

    monkeypatch.setattr(pipeline, "evaluate_run", nothing_scored)
    data = ["--data", str(synthetic_dataset.root), "--out", str(tmp_path), "--batch-size", "4"]
    result = _benchmark("--method", "vicreg", *data, "--probe-epochs", "classification=1")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "results.json: no metric to put on a leaderboard; no row written to" in result.output
    assert not (tmp_path / "leaderboard.csv").exists()


def test_the_benchmark_trains_with_the_learning_rate_and_weight_decay_given(synthetic_dataset, tmp_path):
    data = ["--data", str(synthetic_dataset.root), "--out", str(tmp_path), "--batch-size", "4"]
    result = _benchmark("--method", "vicreg", *data, "--lr", "0.002", "--weight-decay", "0")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.endswith("-s0-batch_size=4_image_size=16_lr=0.002_weight_decay=0.0")
    config = json.loads((run / "config.json").read_text())
    assert (config["lr"], config["weight_decay"]) == (0.002, 0.0)
    (group,) = load_checkpoint(run / "checkpoints").payload["optimizer"]["param_groups"]
    assert (group["lr"], group["weight_decay"]) == (0.002, 0.0)  # what the optimiser trained with
    (row,) = read_rows(tmp_path / "leaderboard.csv")
    assert row["train_options"] == "batch_size=4;lr=0.002;weight_decay=0.0"


def test_a_benchmark_with_method_options_is_an_experiment_of_its_own(synthetic_dataset, tmp_path):
    data = ["--data", str(synthetic_dataset.root), "--out", str(tmp_path), "--batch-size", "4"]
    assert _benchmark("--method", "vicreg", *data).exit_code == 0
    other = _benchmark("--method", "vicreg", *data, "--option", "projector=32-32-32")
    assert other.exit_code == 0, other.output
    runs = sorted(path.name for path in (tmp_path / "runs").iterdir())
    name = f"vicreg-tiny-{synthetic_dataset.root.name}-s0-batch_size=4_image_size=16"
    assert runs == [name, f"{name}_projector=32-32-32"]
    rows = read_rows(tmp_path / "leaderboard.csv")
    assert [(row["method"], row["method_options"]) for row in rows] == [
        ("vicreg", None),
        ("vicreg", "projector=32-32-32"),
    ]
    assert "projector=32-32-32" in other.output  # the table shows the options
    # the tiny preset's own projector: the preset's run and row, not a third experiment
    same = _benchmark("--method", "vicreg", *data, "--option", "projector=64-64-64")
    assert same.exit_code == 0 and "already trained" in same.output, same.output
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == runs
    assert len(read_rows(tmp_path / "leaderboard.csv")) == 2
    refused = _benchmark("--method", "vicreg", *data, "--option", "projector")
    assert refused.exit_code == 1 and "--option expects KEY=VALUE, got 'projector'" in refused.output


def test_benchmark_renders_the_procedural_dataset_when_no_data_is_given(tmp_path):
    procedural = ["--classes", "chair,mug", "--per-class", "3", "--views", "3", "--quality", "draft"]
    result = _benchmark("--method", "sie", "--out", str(tmp_path), "--batch-size", "2", *procedural)
    assert result.exit_code == 0, result.output
    (dataset,) = (path for path in (tmp_path / "data").iterdir() if path.is_dir())
    assert (tmp_path / "data" / f".{dataset.name}.lock").is_file()  # held while it was rendered
    assert dataset.name.startswith("procedural-") and "3x3-16px-draft" in dataset.name
    assert len(list(dataset.glob("*/*/image_*.jpg"))) == 18
    (row,) = read_rows(tmp_path / "leaderboard.csv")
    assert row["dataset"] == dataset.name and row["image_size"] == 16


def test_the_procedural_folder_name_follows_the_set_of_classes_not_their_spelling():
    from render.procedural.library import CLASSES

    name = ProceduralData(("chair", "mug")).folder_name(16)
    assert (
        ProceduralData(("mug", " chair")).folder_name(16) == name != ProceduralData(("mug",)).folder_name(16)
    )
    assert ProceduralData(tuple(reversed(CLASSES))).folder_name(16) == ProceduralData().folder_name(16)
    assert ProceduralData().folder_name(16).startswith("procedural-all-")


def test_benchmark_errors_are_one_clear_line(tmp_path):
    result = _benchmark("--method", "sie2", "--out", str(tmp_path))
    assert result.exit_code == 1 and "unknown method 'sie2'" in result.output
    result = _benchmark("--method", "sie", "--out", str(tmp_path), "--classes", "spaceship")
    assert result.exit_code == 1 and "unknown procedural classes spaceship" in result.output
    # datasets that training or evaluation would refuse are refused before they are rendered
    for option, value, words in (
        ("--views", "1", "training pairs two distinct views"),
        ("--per-class", "1", "the validation split takes one object of each class"),
        ("--image-size", "3", "the procedural dataset is rendered at the training size"),
    ):
        result = _benchmark("--method", "sie", "--out", str(tmp_path), option, value)
        assert result.exit_code == 1 and f"Error: {option} {value}: {words}" in result.output, result.output
    small = ["--classes", "mug,chair", "--per-class", "3", "--batch-size", "8"]  # 4 training objects
    result = _benchmark("--method", "sie", "--out", str(tmp_path), *small)
    assert result.exit_code == 1 and result.output.startswith(
        "Error: batch size 8 is larger than the 4 training objects of the procedural dataset"
    ), result.output
    if not torch.cuda.is_available():
        result = _benchmark("--method", "sie", "--out", str(tmp_path), "--device", "cuda")
        assert result.exit_code == 1 and "--device cuda: CUDA is not available" in result.output
    assert not (tmp_path / "data").exists()


def test_options_that_do_not_apply_and_an_unwritable_leaderboard_stop_before_any_work(
    synthetic_dataset, tmp_path
):
    data = ["--data", str(synthetic_dataset.root), "--out", str(tmp_path / "out")]
    result = _benchmark("--method", "sie", *data, "--per-class", "3", "--quality", "draft")
    assert result.exit_code == 1 and result.output.strip() == (
        "Error: --per-class, --quality: options of the procedural dataset rendered when no --data is given; "
        "leave them out with --data"
    )
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _benchmark("--method", "sie", *data, "--leaderboard", str(blocker / "board.csv"))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"Error: {blocker / 'board.csv'}: cannot write the leaderboard here (File exists)" in result.output
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)  # refused before training, not when the row is written
    result = _benchmark("--method", "sie", *data, "--leaderboard", str(loop))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"Error: {loop}: cannot write the leaderboard here (Symlink loop" in result.output
    assert not (tmp_path / "out").exists()
    result = _benchmark("--method", "sie", *data, "--leaderboard", str(tmp_path / "results.json"))
    assert result.exit_code == 1 and result.output == (
        f"Error: {tmp_path / 'results.json'}: --leaderboard must name a .csv file (the leaderboard to add "
        "the row to)\n"
    )
    result = _benchmark("--method", "sie", *data, "--probe-epochs", "0")  # was: refused after training
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.startswith("Error: ") and "epochs" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_an_unreadable_leaderboard_stops_the_benchmark_before_any_work(synthetic_dataset, tmp_path):
    board = tmp_path / "board.csv"
    board.write_text("method,flops\nsie,3\n")
    data = ["--data", str(synthetic_dataset.root), "--out", str(tmp_path / "out"), "--batch-size", "4"]
    result = _benchmark("--method", "sie", *data, "--leaderboard", str(board))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{board}: unknown columns flops; not a leaderboard CSV" in result.output
    assert not (tmp_path / "out" / "runs").exists()


def _held_elsewhere(script: str, path) -> subprocess.Popen:
    """A process that runs `script` (which prints a line once it holds what it holds) with `path` as
    argv[1], holding it until its stdin closes."""
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


LOCK_HOLDER = (
    "import sys; from render.locks import exclusive_lock\n"
    "with exclusive_lock(sys.argv[1]):\n"
    "    print('held', flush=True); sys.stdin.read()"
)
CLAIM_HOLDER = (
    "import sys; from pathlib import Path; from render import writer\n"
    "with writer.claim_object(Path(sys.argv[1])) as claimed:\n"
    "    print('held' if claimed else 'not held', flush=True); sys.stdin.read()"
)


def test_the_procedural_dataset_is_complete_before_training_starts(tmp_path):
    """Two benchmarks started together: the second waits for the first's render (the lock beside the
    dataset folder) and for objects that another process has claimed, so that it never trains on part of
    the dataset."""
    settings = ProceduralData(classes=("mug",), per_class=2, views=2, quality="draft")
    out = tmp_path / "data" / settings.folder_name(16)
    objects = sources.ProceduralSource(settings.classes, settings.per_class, settings.seed).objects()
    said: list[str] = []
    rendering = threading.Thread(target=render_procedural, args=(out, settings, 16, False, said.append))
    out.parent.mkdir(parents=True)
    lock = _held_elsewhere(LOCK_HOLDER, out.parent / f".{out.name}.lock")
    claim = _held_elsewhere(CLAIM_HOLDER, writer.object_dir(out, objects[0]))  # a `3die render` at work
    try:
        rendering.start()
        rendering.join(timeout=3)
        assert rendering.is_alive(), "the render waits for the other benchmark's lock"
        holder = f"pid {lock.pid} on {socket.gethostname()}"
        assert said == [f"{out}: waiting for {holder}, which is rendering this dataset"]
        lock.communicate("", timeout=30)  # the other benchmark's render ends
        deadline = time.monotonic() + 120
        while len(said) < 2 and time.monotonic() < deadline:  # its first pass renders the unclaimed object
            time.sleep(0.1)
        assert f"{out}: waiting for 1 objects that another process is rendering" in said
        assert rendering.is_alive() and not (writer.object_dir(out, objects[0]) / "image_0.jpg").exists()
    finally:
        for holder in (lock, claim):  # the claim's holder ends without rendering: the render takes it over
            if holder.returncode is None:
                holder.communicate("", timeout=30)
        rendering.join(timeout=120)
    assert not rendering.is_alive()
    assert (
        said[-1].startswith(f"{out}: rendered 1 objects (2 images) in ") and "s, 1 already done; " in said[-1]
    )
    assert all(len(list(writer.object_dir(out, o).glob("image_*.jpg"))) == 2 for o in objects)


class _Evaluated(Exception):
    """Raised by a stand-in evaluation with the settings it was given."""


@pytest.mark.parametrize(
    "preset, seed, epochs, samples", [("mini", 3, 50, 50), ("paper", 0, 300, 1), ("tiny", 1, 2, 1)]
)
def test_each_preset_probes_with_its_epochs_and_samples_and_the_run_seed(
    synthetic_dataset, tmp_path, monkeypatch, preset, seed, epochs, samples
):
    """The probe protocol of every preset (mini: 50 epochs of 50 samples per object; paper: the published
    300 of 1), seeded by the benchmark's seed."""
    trained = SimpleNamespace(complete=True, stop_signal=None, seconds=1.0, epochs_done=1)
    monkeypatch.setattr(pipeline, "train", lambda training, **options: trained)

    def evaluate(run, data, settings, **options):
        raise _Evaluated(settings)

    monkeypatch.setattr(pipeline, "evaluate_run", evaluate)
    config = pipeline.BenchmarkConfig(
        method="vicreg", preset=preset, data=synthetic_dataset.root, out=tmp_path, seed=seed, device="cpu"
    )
    with pytest.raises(_Evaluated) as evaluated:
        pipeline.run_benchmark(config, progress=False)
    settings = evaluated.value.args[0]
    assert settings.epochs == dict.fromkeys(("classification", "rotation", "colour"), epochs)
    assert (settings.samples_per_object, settings.seed) == (samples, seed)


def test_run_names_use_the_dataset_name_of_results_and_leaderboards(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "set.h5").touch()
    assert pipeline.run_name("sie", "mini", tmp_path / "set.h5", 0, {}) == "sie-mini-set-s0"
    assert pipeline.run_name("sie", "mini", Path("."), 2, {}) == f"sie-mini-{tmp_path.name}-s2"
