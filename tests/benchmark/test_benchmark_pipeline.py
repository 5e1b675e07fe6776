"""`3die benchmark` end to end: on a given dataset, and on the procedural dataset it renders itself."""

import pytest
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.leaderboard import read_rows

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

TINY = ["--preset", "tiny", "--image-size", "16", "--epochs", "1", "--probe-epochs", "1", "--device", "cpu"]


def _benchmark(*arguments):
    return CliRunner().invoke(main, ["benchmark", *TINY, "--no-progress", *arguments])


def test_benchmark_trains_evaluates_and_adds_one_row_per_experiment(synthetic_dataset, tmp_path):
    data = ["--data", str(synthetic_dataset.root), "--out", str(tmp_path), "--batch-size", "4"]
    first = _benchmark("--method", "sie", *data)
    assert first.exit_code == 0, first.output
    run = tmp_path / "runs" / f"sie-tiny-{synthetic_dataset.root.name}-s0"
    assert (run / "results.json").is_file() and (run / "checkpoints" / "last.pt").is_file()
    (row,) = read_rows(tmp_path / "leaderboard.csv")
    assert (row["method"], row["preset"], row["image_size"], row["epochs"], row["seed"]) == (
        "sie",
        "tiny",
        16,
        1,
        0,
    )
    assert 0 <= row["top1_inv"] <= 100 and 0 <= row["top1_full"] <= 100 and row["train_time_s"] > 0
    assert 0 < row["mrr"] <= 1 and 0 <= row["hit1"] <= row["hit2"] <= row["hit5"] <= row["hit10"] <= 1
    assert row["rot_r2_equi"] <= 1 and 0 <= row["rot_angle_deg_equi"] <= 180 and row["pre"] >= 0
    assert row["probe_epochs"] == "classification=1;rotation=1;colour=1" and row["probe_samples"] == 1
    assert f"{tmp_path / 'leaderboard.csv'}: row of sie added" in first.output

    again = _benchmark("--method", "sie", *data)
    assert again.exit_code == 0, again.output
    assert "already trained for 1 epochs" in again.output
    (same,) = read_rows(tmp_path / "leaderboard.csv")
    assert same["train_time_s"] == row["train_time_s"] and same["evaluated_at"] >= row["evaluated_at"]
    assert {key: same[key] for key in same if key.startswith("top1")} == {
        key: row[key] for key in row if key.startswith("top1")
    }

    baseline = _benchmark("--method", "vicreg", "--probe-samples", "3", *data)
    assert baseline.exit_code == 0, baseline.output
    rows = read_rows(tmp_path / "leaderboard.csv")
    assert [(r["method"], r["probe_samples"]) for r in rows] == [("sie", 1), ("vicreg", 3)]


def test_benchmark_renders_the_procedural_dataset_when_no_data_is_given(tmp_path):
    procedural = ["--classes", "chair,mug", "--per-class", "3", "--views", "3", "--quality", "draft"]
    result = _benchmark("--method", "sie", "--out", str(tmp_path), "--batch-size", "2", *procedural)
    assert result.exit_code == 0, result.output
    (dataset,) = (tmp_path / "data").iterdir()
    assert dataset.name.startswith("procedural-") and "3x3-16px-draft" in dataset.name
    assert len(list(dataset.glob("*/*/image_*.jpg"))) == 18
    (row,) = read_rows(tmp_path / "leaderboard.csv")
    assert row["dataset"] == dataset.name and row["image_size"] == 16


def test_benchmark_errors_are_one_clear_line(tmp_path):
    result = _benchmark("--method", "sie2", "--out", str(tmp_path))
    assert result.exit_code == 1 and "unknown method 'sie2'" in result.output
    result = _benchmark("--method", "sie", "--out", str(tmp_path), "--classes", "spaceship")
    assert result.exit_code == 1 and "unknown procedural classes spaceship" in result.output


def test_an_unreadable_leaderboard_stops_the_benchmark_before_any_work(synthetic_dataset, tmp_path):
    board = tmp_path / "board.csv"
    board.write_text("method,flops\nsie,3\n")
    data = ["--data", str(synthetic_dataset.root), "--out", str(tmp_path / "out"), "--batch-size", "4"]
    result = _benchmark("--method", "sie", *data, "--leaderboard", str(board))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{board}: unknown columns flops; not a leaderboard CSV" in result.output
    assert not (tmp_path / "out" / "runs").exists()
