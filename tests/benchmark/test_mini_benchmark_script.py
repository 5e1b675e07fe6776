"""scripts/mini_benchmark.sh end to end at a tiny size: render, check, pack, two methods side by side,
the merged leaderboard with its figures and the dataset manifest beside it."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from render.spec import REPO_ROOT

pytestmark = pytest.mark.slow


def test_the_mini_benchmark_script_writes_a_leaderboard_of_every_method(tmp_path):
    """Every method that finishes has its row, also when another fails (an unknown name here): the script
    then exits 1 naming it."""
    board = tmp_path / "boards" / "mini.csv"
    sizing = {
        "CLASSES": "chair,mug,lamp,table",
        "PER_CLASS": "5",
        "VIEWS": "4",
        "SIZE": "32",
        "PRESET": "tiny",
    }
    out = {"OUT": str(tmp_path / "out"), "BOARD": str(board), "METHODS": "sie nosuchmethod vicreg"}
    finished = run_script({**sizing, **out}, timeout=900)
    assert finished.returncode == 1, finished.stdout[-2000:] + finished.stderr[-2000:]
    assert finished.stderr.strip().endswith(
        f"Error: nosuchmethod failed (logs: {tmp_path / 'out'}/METHOD.log); rerun the script to retry them"
    )
    assert "unknown method 'nosuchmethod'" in (tmp_path / "out" / "nosuchmethod.log").read_text()

    with board.open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["method"] for row in rows) == ["sie", "vicreg"]
    assert {row["preset"] for row in rows} == {"tiny"} and {row["image_size"] for row in rows} == {"32"}
    assert all(0 <= float(row["top1_full"]) <= 100 and float(row["rot_r2_full"]) <= 1 for row in rows)
    sie = next(row for row in rows if row["method"] == "sie")
    assert 0 < float(sie["mrr"]) <= 1 and float(sie["hit1"]) <= float(sie["hit5"]) <= float(sie["hit10"]) <= 1
    figures = board.with_suffix("")
    assert (figures / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((figures / "dataset_manifest.json").read_text())
    assert manifest["objects"] == 20 and manifest["settings"]["views"] == 4
    assert (figures / "dataset_objects.csv").read_text() == (
        tmp_path / "out" / "data" / "objects.csv"
    ).read_text()


def test_a_resized_mini_benchmark_needs_a_leaderboard_of_its_own(tmp_path):
    """Sized down without BOARD, its rows would merge into the committed mini leaderboard."""
    finished = run_script({"OUT": str(tmp_path / "out"), "SIZE": "32"}, timeout=60)
    assert finished.returncode == 2 and finished.stderr.strip() == (
        "Error: OUT, CLASSES, PER_CLASS, VIEWS, SIZE or PRESET set: give BOARD, a leaderboard CSV of its own"
    )
    assert not (tmp_path / "out").exists(), "nothing rendered"
    for parallel in ("0", "two", "-1"):
        finished = run_script({"PARALLEL": parallel}, timeout=60)
        assert finished.returncode == 2 and finished.stderr.startswith(f"Error: PARALLEL={parallel}: give")


def run_script(variables: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    """scripts/mini_benchmark.sh with these variables (BIN: this interpreter's; no BOARD unless given)."""
    env = {key: value for key, value in os.environ.items() if key != "BOARD"}
    env.update(BIN=str(Path(sys.executable).parent), **variables)
    return subprocess.run(
        [str(REPO_ROOT / "scripts" / "mini_benchmark.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
