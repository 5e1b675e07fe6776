"""Leaderboard rows, CSV round trip, merging, figures and `3die leaderboard`."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib.container import BarContainer
from PIL import Image

from benchmark.cli import main
from benchmark.evaluate import RESULTS_FORMAT
from benchmark.leaderboard import (
    COLUMNS,
    TRADEOFF_NAME,
    LeaderboardError,
    append_row,
    format_table,
    load_rows,
    merge_rows,
    plot_leaderboard,
    read_rows,
    row_from_results,
    write_rows,
)
from benchmark.leaderboard.plots import group_rows, metric_figure, tradeoff_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _results(method="sie", seed=0, top1=0.8, r2=0.6, evaluated_at="2026-01-01T00:00:00+00:00", split=True):
    parts = ("inv", "equi", "full") if split else ("full",)
    metrics = {
        "classification": {p: {"top1": top1, "top5": 0.95, "mean_class_acc": top1 - 0.1} for p in parts},
        "rotation": {p: {"r2": r2, "r2_components": r2 - 0.2, "angle_deg": 30.0} for p in parts},
        "colour": {p: {"r2": 0.9, "r2_floor": 0.95, "r2_spot": 0.85} for p in parts},
    }
    if split:
        metrics["retrieval"] = {
            **{"pre": 0.25, "emb_dist": 0.5, "mrr": 0.4},
            **{"hit1": 0.3, "hit2": 0.4, "hit5": 0.6, "hit10": 0.8},
        }
    return {
        "format": RESULTS_FORMAT,
        "run": f"/runs/{method}-{seed}",
        "method": method,
        "training": {
            "preset": "mini",
            "epochs": 20,
            "epochs_done": 20,
            "seed": seed,
            "image_size": 64,
            "hardware": "1x cuda:0",
            "seconds": 123.5,
        },
        "dataset": {"name": "procedural", "hash": "0123456789abcdef"},
        "evaluation": {"hardware": "NVIDIA H100", "code_version": "0.1.0+gabc", "evaluated_at": evaluated_at},
        "settings": {"classification": {"epochs": 300}, "rotation": {"epochs": 300}, "retrieval": {}},
        "metrics": metrics,
    }


def test_row_from_results_holds_identity_metrics_in_their_units_and_provenance():
    row = row_from_results(_results())
    assert set(row) == set(COLUMNS)
    assert (row["method"], row["preset"], row["dataset"], row["dataset_hash"]) == (
        "sie",
        "mini",
        "procedural",
        "0123456789abcdef",
    )
    assert (row["image_size"], row["epochs"], row["seed"]) == (64, 20, 0)
    assert row["top1_inv"] == pytest.approx(80.0) and row["mean_class_acc_full"] == pytest.approx(70.0)
    assert (
        row["rot_r2_equi"] == 0.6 and row["rot_angle_deg_inv"] == 30.0 and row["colour_r2_spot_full"] == 0.85
    )
    assert row["mrr"] == 0.4 and row["hit10"] == 0.8 and row["train_time_s"] == 123.5
    assert row["pre"] == 0.25 and row["emb_dist"] == 0.5
    assert row["probe_epochs"] == "classification=300;rotation=300" and row["probe_samples"] == 1
    mixed = _results()
    mixed["settings"]["rotation"]["samples_per_object"] = 50  # only rotation re-evaluated with 50
    assert row_from_results(mixed)["probe_samples"] == "classification=1;rotation=50"
    assert row["code_version"] == "0.1.0+gabc" and row["evaluated_at"].startswith("2026-01-01")
    baseline = row_from_results(_results("vicreg", split=False))
    assert baseline["top1_full"] == pytest.approx(80.0) and baseline["top1_inv"] is None
    assert baseline["mrr"] is None and baseline["pre"] is None


def test_results_and_csvs_of_an_earlier_version_read_their_pre_as_the_embedding_distance(tmp_path):
    """Before the published PRE was computed, `pre` named the embedding distance: such a results.json or
    CSV keeps its number under `emb_dist`, and its PRE is missing, never taken for the published one."""
    old = _results()
    del old["metrics"]["retrieval"]["emb_dist"]
    (tmp_path / "results.json").write_text(json.dumps(old))
    (row,) = load_rows(tmp_path / "results.json")
    assert (row["pre"], row["emb_dist"], row["mrr"]) == (None, 0.25, 0.4)

    new = row_from_results(_results())
    board = tmp_path / "board.csv"
    write_rows(board, [new])
    header, line = board.read_text().splitlines()
    columns = header.split(",")
    cells = dict(zip(columns, line.split(","), strict=True))
    newer = ("emb_dist", "method_options", "train_options")  # the columns added since the rename
    kept = [column for column in columns if column not in newer]
    board.write_text(",".join(kept) + "\n" + ",".join(cells[column] for column in kept) + "\n")
    (read,) = read_rows(board)
    assert (read["pre"], read["emb_dist"]) == (None, 0.25) and read["mrr"] == new["mrr"]
    trimmed = [column for column in columns if column != "emb_dist"]  # a current CSV without emb_dist
    board.write_text(",".join(trimmed) + "\n" + ",".join(cells[column] for column in trimmed) + "\n")
    (read,) = read_rows(board)
    assert (read["pre"], read["emb_dist"]) == (new["pre"], None), "its pre is the published PRE"
    write_rows(board, [new])
    assert read_rows(board) == [new], "a CSV with both columns is read as written"


def test_the_method_options_column_names_what_differs_from_the_preset():
    results = _results()
    assert row_from_results(results)["method_options"] is None  # results that do not record them
    results["training"]["method_options"] = {"projector": "512-512-512", "stem": "imagenet"}
    assert row_from_results(results)["method_options"] is None  # the mini preset's own
    results["training"]["method_options"] = {"stem": "small", "projector": "512-512-512", "equi_factor": 1}
    assert row_from_results(results)["method_options"] == "equi_factor=1;stem=small"
    results["method"] = "a-method-of-the-future"
    assert row_from_results(results)["method_options"] == "equi_factor=1;projector=512-512-512;stem=small"
    rows = [row_from_results(_results()), row_from_results(results)]
    assert len(merge_rows(rows)) == 2
    assert set(group_rows(rows)) == {
        "sie",
        "a-method-of-the-future [equi_factor=1;projector=512-512-512;stem=small]",
    }


def test_the_train_options_column_names_the_training_settings_that_differ_from_the_preset():
    results = _results()
    assert row_from_results(results)["train_options"] is None  # results that do not record them
    results["training"].update(width=16, batch_size=64, lr=0.001, weight_decay=1e-6)  # the mini preset's own
    assert row_from_results(results)["train_options"] is None
    results["training"].update(width=32, lr=3e-3)
    other = row_from_results(results)
    assert other["train_options"] == "lr=0.003;width=32"
    rows = [row_from_results(_results()), other]
    assert len(merge_rows(rows)) == 2, "another training is another experiment"
    assert set(group_rows(rows)) == {"sie", "sie [lr=0.003;width=32]"}


def test_csv_round_trip_keeps_values_and_types(tmp_path):
    rows = [row_from_results(_results()), row_from_results(_results("vicreg", seed=3, split=False))]
    rows[0]["top1_equi"] = 1 / 3
    rows[1]["probe_samples"] = "classification=1;rotation=50"
    path = tmp_path / "board.csv"
    write_rows(path, rows)
    back = read_rows(path)
    assert back == rows
    for original, read in zip(rows, back, strict=True):
        assert {k: type(v) for k, v in read.items()} == {k: type(v) for k, v in original.items()}
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    saved_by_a_spreadsheet = tmp_path / "excel.csv"  # a byte-order mark, CRLF line ends
    saved_by_a_spreadsheet.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert read_rows(saved_by_a_spreadsheet) == rows


def test_merge_keeps_the_newest_row_of_each_experiment():
    old = row_from_results(_results(top1=0.5, evaluated_at="2026-01-01T00:00:00+00:00"))
    new = row_from_results(_results(top1=0.7, evaluated_at="2026-02-01T00:00:00+00:00"))
    other_seed = row_from_results(_results(seed=1))
    other_method = row_from_results(_results("equimod-simclr"))
    merged = merge_rows([new, other_seed, old, other_method])
    assert [(r["method"], r["seed"]) for r in merged] == [("equimod-simclr", 0), ("sie", 0), ("sie", 1)]
    assert merged[1]["top1_inv"] == pytest.approx(70.0)
    same_time = dict(new, top1_inv=1.0)
    assert merge_rows([new, same_time])[0]["top1_inv"] == 1.0


def test_the_experiment_key_is_the_image_size_and_the_dataset_hash_not_its_name():
    """Two image sizes are two experiments; two renderings under one name are two datasets; one dataset
    under two names (a folder and its pack) is one."""
    base = row_from_results(_results())
    larger = {**base, "image_size": 128}
    assert len(merge_rows([base, larger])) == 2
    other_rendering = {**base, "dataset_hash": "fedcba9876543210"}
    assert len(merge_rows([base, other_rendering])) == 2
    renamed = {**base, "dataset": "procedural.h5", "evaluated_at": "2026-02-01T00:00:00+00:00"}
    assert merge_rows([base, renamed]) == [renamed]


def test_a_row_counts_the_epochs_trained_and_the_probes_that_ran():
    """A run evaluated before it finished is a row of the epochs it trained; a skipped task's probe
    settings are not the row's."""
    results = _results()
    results["training"] |= {"epochs": 10, "epochs_done": 4}
    results["settings"] |= {"colour": {"epochs": 300, "samples_per_object": 1}}
    results["skipped"] = {"colour": "the dataset has 1 class"}
    row = row_from_results(results)
    assert row["epochs"] == 4
    assert row["probe_epochs"] == "classification=300;rotation=300"


def test_the_same_objects_rendered_otherwise_are_another_dataset():
    """Evaluated on the objects it trained on, rendered with other settings (e.g. the OOD rotation range):
    the row names the training dataset."""
    results = _results()
    results["training"]["dataset"] = {
        "name": "procedural",
        "fingerprint": "f",
        "rendering": {"rotation": "published"},
    }
    results["dataset"] |= {
        "name": "procedural-ood",
        "train_fingerprint": "f",
        "rendering": {"rotation": "ood"},
    }
    assert row_from_results(results)["train_dataset"] == "procedural"
    results["dataset"]["rendering"] = {"rotation": "published"}
    assert row_from_results(results)["train_dataset"] is None


def test_merge_orders_evaluation_times_as_instants_and_rows_whatever_order_they_come_in():
    utc = row_from_results(_results(top1=0.5, evaluated_at="2026-11-23T19:33:54+00:00"))
    earlier = dict(utc, top1_inv=1.0, evaluated_at="2026-11-23T20:00:00+05:00")  # 15:00 UTC
    later_naive = dict(utc, top1_inv=2.0, evaluated_at="2026-11-23 23:00:00")  # no zone: UTC
    assert merge_rows([utc, earlier]) == [utc] and merge_rows([earlier, utc]) == [utc]
    assert merge_rows([later_naive, utc]) == [later_naive]
    said = []
    clash = dict(utc, top1_inv=3.0)  # the same run and time, other numbers: the one given last, said
    assert merge_rows([utc, clash], said.append) == [clash]
    clashed = "two rows of one experiment, evaluated at the same time, with other numbers (top1_inv)"
    assert said == [f"{utc['run']}: {clashed}; keeping the one given last"]
    variants = [
        dict(utc, preset=preset, method_options=options)
        for preset in ("mini", "paper")
        for options in (None, "a=1")
    ]
    assert merge_rows(variants) == merge_rows(variants[::-1]), "the file does not depend on the order"


def test_a_run_without_metrics_or_with_non_finite_ones_is_refused_before_it_reaches_a_board(tmp_path):
    results = _results(split=False)
    results["metrics"] = {}
    results["skipped"] = {"retrieval": "method vicreg has no predictor"}
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(LeaderboardError) as refused:
        load_rows(tmp_path / "results.json")
    assert str(refused.value) == (
        f"{tmp_path / 'results.json'}: no metric to put on a leaderboard (retrieval skipped: method vicreg "
        "has no predictor); evaluate the tasks that score it first (`3die evaluate`)"
    )
    results = _results()
    results["metrics"]["rotation"]["equi"]["r2"] = float("nan")
    (tmp_path / "results.json").write_text(json.dumps(results))
    with pytest.raises(LeaderboardError, match=r"results.json: rot_r2_equi is nan, not a finite number"):
        load_rows(tmp_path / "results.json")


def test_other_presets_are_other_experiments_and_replaced_runs_are_named():
    mini = row_from_results(_results(evaluated_at="2026-01-01T00:00:00+00:00"))
    paper = dict(mini, preset="paper")
    assert len(merge_rows([mini, paper])) == 2
    said = []
    reevaluated = dict(mini, top1_inv=1.0, evaluated_at="2026-02-01T00:00:00+00:00")
    assert merge_rows([mini, reevaluated], said.append) == [reevaluated] and said == []  # same run folder
    wider = dict(mini, run="/runs/sie-width128", top1_inv=2.0, evaluated_at="2026-03-01T00:00:00+00:00")
    narrow = dict(mini, run="/runs/sie-width16")
    assert merge_rows([wider, narrow], said.append) == [wider]
    assert len(said) == 1
    assert said[0].startswith("/runs/sie-width128 and /runs/sie-width16 are one experiment")
    assert "keeping the newer evaluation, of /runs/sie-width128" in said[0] and "--seed" in said[0]


def test_a_run_evaluated_on_another_dataset_names_the_one_it_trained_on():
    """An OOD evaluation is its own experiment: the row names the evaluated dataset and, in train_dataset,
    the training one; runs trained on two datasets and evaluated on the same one keep a row each."""
    same = _results()
    same["training"]["dataset"] = {"name": "procedural", "path": "/data/procedural", "fingerprint": "f"}
    assert row_from_results(same)["train_dataset"] is None
    assert row_from_results(_results())["train_dataset"] is None  # results that do not record it
    packed = _results()  # its own objects, as a packed file of another name
    packed["training"]["dataset"] = {"name": "procedural", "path": "/data/procedural", "fingerprint": "f"}
    packed["dataset"] |= {"name": "procedural-64px", "train_fingerprint": "f"}
    assert row_from_results(packed)["train_dataset"] is None
    assert (
        row_from_results(packed | {"dataset": packed["dataset"] | {"train_fingerprint": "g"}})[
            "train_dataset"
        ]
        == "procedural"
    )
    rows = []
    for trained_on in ("procedural", "procedural-seed1"):
        ood = _results(evaluated_at=f"2026-01-0{len(rows) + 1}T00:00:00+00:00")
        ood["training"]["dataset"] = {"name": trained_on, "path": f"/data/{trained_on}", "fingerprint": "f"}
        ood["dataset"] = {"name": "procedural-ood", "hash": "fedcba9876543210"}
        rows.append(row_from_results(ood))
    assert [row["train_dataset"] for row in rows] == ["procedural", "procedural-seed1"]
    assert rows[0]["dataset"] == "procedural-ood" and rows[0]["dataset_hash"] == "fedcba9876543210"
    merged = merge_rows([row_from_results(same), *rows])
    assert [(row["dataset"], row["train_dataset"]) for row in merged] == [
        ("procedural", None),
        ("procedural-ood", "procedural"),
        ("procedural-ood", "procedural-seed1"),
    ]
    assert format_table(merged).splitlines()[2].split()[:3] == ["sie", "procedural-ood", "procedural"]
    assert sorted(group_rows(merged)) == [
        "sie\nmini procedural 64px 20ep",
        "sie\nmini procedural-ood (trained on procedural) 64px 20ep",
        "sie\nmini procedural-ood (trained on procedural-seed1) 64px 20ep",
    ]
    paper = {**merged[0], "preset": "paper"}  # same method, dataset, size and epochs: not another seed
    assert sorted(group_rows([merged[0], paper])) == [
        "sie\nmini procedural 64px 20ep",
        "sie\npaper procedural 64px 20ep",
    ]


def test_append_row_creates_then_replaces(tmp_path):
    path = tmp_path / "boards" / "mini.csv"
    append_row(path, row_from_results(_results(top1=0.5)))
    append_row(path, row_from_results(_results(seed=1)))
    rows = append_row(path, row_from_results(_results(top1=0.6, evaluated_at="2026-03-01T00:00:00+00:00")))
    assert read_rows(path) == rows
    assert [(r["seed"], round(r["top1_inv"])) for r in rows] == [(0, 60), (1, 80)]
    # evaluated at the same time as the row in the CSV: the row given wins (an evaluation rerun at once)
    rows = append_row(path, row_from_results(_results(top1=0.7, evaluated_at="2026-03-01T00:00:00+00:00")))
    assert [(r["seed"], round(r["top1_inv"])) for r in read_rows(path)] == [(0, 70), (1, 80)]


APPENDER = """
import json, sys, time
from pathlib import Path
from benchmark.leaderboard import append_row
board, rows, start = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3])
print("ready", flush=True)
while not start.exists():
    time.sleep(0.001)
for row in rows:
    append_row(board, row)
"""


def test_two_processes_appending_to_one_leaderboard_lose_no_row(tmp_path):
    """Two `3die benchmark` runs sharing a leaderboard append at the same time: every row is kept."""
    board, start, per_process = tmp_path / "board.csv", tmp_path / "start", 40
    processes = []
    for first_seed in (0, 1000):
        rows = [row_from_results(_results(seed=first_seed + n)) for n in range(per_process)]
        (tmp_path / f"rows-{first_seed}.json").write_text(json.dumps(rows))
        arguments = [str(board), str(tmp_path / f"rows-{first_seed}.json"), str(start)]
        processes.append(
            subprocess.Popen([sys.executable, "-c", APPENDER, *arguments], stdout=subprocess.PIPE, text=True)
        )
    for process in processes:
        assert process.stdout.readline().strip() == "ready"
    start.touch()
    for process in processes:
        assert process.wait(timeout=120) == 0
    seeds = sorted(row["seed"] for row in read_rows(board))
    assert seeds == [*range(per_process), *range(1000, 1000 + per_process)]


def test_bad_inputs_name_the_file(tmp_path):
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("method,flops\nsie,3\n")
    with pytest.raises(LeaderboardError, match=r"unknown.csv: unknown columns flops"):
        read_rows(unknown)
    bad_cell = tmp_path / "bad.csv"
    bad_cell.write_text("method,seed\nsie,zero\n")
    with pytest.raises(
        LeaderboardError, match=r"bad.csv:2: column seed holds 'zero', expected a whole number 0 or more"
    ):
        read_rows(bad_cell)
    with pytest.raises(LeaderboardError, match="not a run folder"):  # a dataset folder, say
        load_rows(tmp_path)
    (tmp_path / "checkpoints").mkdir()  # a run trained but not evaluated
    with pytest.raises(LeaderboardError, match=f"evaluate the run first \\(`3die evaluate {tmp_path}`\\)"):
        load_rows(tmp_path)
    not_results = tmp_path / "other.json"
    not_results.write_text(json.dumps({"format": "something"}))
    with pytest.raises(LeaderboardError, match="not a results file"):
        load_rows(not_results)
    unwritable = not_results / "board.csv"  # its folder is a file
    with pytest.raises(LeaderboardError, match=rf"^{unwritable}: cannot write the leaderboard \("):
        append_row(unwritable, row_from_results(_results()))


@pytest.mark.parametrize(
    "text, problem",
    [
        ("method,top1_inv,top1_inv\nsie,50,99\n", ": columns top1_inv more than once; not a leaderboard CSV"),
        ("method,top1_inv\nsie,50,99\n", ":2: more cells than the header has columns"),
        ("method\nsie\n", ":2: a row without a method or without any metric; not a leaderboard row"),
        ("method,top1_inv\n,50\n", ":2: a row without a method or without any metric"),
        ("method,top1_inv\nsie,nan\n", ":2: column top1_inv holds 'nan', expected a finite number"),
        (
            "method,top1_inv,seed\nsie,50,-1\n",
            ":2: column seed holds '-1', expected a whole number 0 or more",
        ),
        (
            "method,top1_inv,seed\nsie,50,1_0\n",
            ":2: column seed holds '1_0', expected a whole number 0 or more",
        ),
        ("method,top1_inv,seed,epochs\nsie,50,1\n", ":2: 1 cells fewer than the header has columns"),
    ],
    ids=[
        "repeated-column",
        "extra-cell",
        "method-only",
        "no-method",
        "nan",
        "negative-seed",
        "underscore",
        "short",
    ],
)
def test_a_csv_that_would_merge_a_wrong_or_empty_row_is_refused(tmp_path, text, problem):
    """Each of these was once merged: the last of two equal columns winning, extra cells dropped, an
    all-empty row, a NaN score."""
    board = tmp_path / "board.csv"
    board.write_text(text)
    with pytest.raises(LeaderboardError) as error:
        read_rows(board)
    assert str(error.value).startswith(f"{board}{problem}")


def test_a_leaderboard_given_through_a_symbolic_link_is_written_where_it_points(tmp_path):
    shared = tmp_path / "shared" / "board.csv"
    shared.parent.mkdir()
    link = tmp_path / "board.csv"
    link.symlink_to(shared)
    append_row(link, row_from_results(_results()))
    assert link.is_symlink() and len(read_rows(shared)) == 1
    assert (shared.parent / ".board.csv.lock").exists(), "the lock is the target's, shared by every link"


def test_results_without_a_method_name_are_incomplete(tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({**_results(), "method": None}))
    with pytest.raises(LeaderboardError, match=r"results.json: incomplete results \(no 'method'\)"):
        load_rows(results)


def test_undecodable_csvs_and_incomplete_results_name_the_file(tmp_path):
    binary = tmp_path / "figure.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(LeaderboardError, match=r"figure.csv: not a text file"):
        load_rows(binary)
    huge_cell = tmp_path / "huge.csv"
    huge_cell.write_text("method,seed\n" + "s" * 200_000 + ",0\n")
    with pytest.raises(LeaderboardError, match=r"huge.csv: not a readable CSV \(field larger"):
        read_rows(huge_cell)
    incomplete = tmp_path / "results.json"
    incomplete.write_text(json.dumps({"format": RESULTS_FORMAT, "method": "sie"}))
    with pytest.raises(LeaderboardError, match=r"results.json: incomplete results \(no 'training'\)"):
        load_rows(incomplete)
    result = CliRunner().invoke(main, ["leaderboard", str(binary), "--out", str(tmp_path / "board.csv")])
    assert result.exit_code == 1 and "not a text file" in result.output and "Traceback" not in result.output
    undated = tmp_path / "undated.csv"  # rows are merged by evaluation time: a cell that is none is refused
    undated.write_text("method,evaluated_at\nsie,yesterday\n")
    with pytest.raises(
        LeaderboardError,
        match=r"undated.csv:2: column evaluated_at holds 'yesterday', expected an ISO 8601 time",
    ):
        read_rows(undated)
    script = tmp_path / "holdout.py"
    script.write_text("print('not results')\n")
    with pytest.raises(
        LeaderboardError, match=r"holdout.py: not a results.json of `3die evaluate` nor a leaderboard"
    ):
        load_rows(script)


def test_old_csv_without_newer_columns_reads_as_none(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("method,dataset,seed,top1_full\nsimclr,procedural,0,81.5\n")
    (row,) = read_rows(path)
    assert row["top1_full"] == 81.5 and row["seed"] == 0 and row["mrr"] is None


def test_format_table_shows_filled_summary_columns():
    rows = merge_rows([row_from_results(_results()), row_from_results(_results("vicreg", split=False))])
    lines = format_table(rows).splitlines()
    assert lines[0].split()[:5] == ["method", "dataset", "image_size", "epochs", "seed"]
    assert "top1_inv" in lines[0] and "mrr" in lines[0]
    assert lines[1].split()[:2] == ["sie", "procedural"] and "80.00" in lines[1]
    assert lines[2].split()[0] == "vicreg" and " - " in lines[2]


def test_an_empty_leaderboard_says_so(tmp_path):
    empty = tmp_path / "empty.csv"
    write_rows(empty, [])
    assert read_rows(empty) == [] and format_table([]) == "(no rows)"
    result = CliRunner().invoke(main, ["leaderboard", str(empty), "--out", str(empty)])
    assert result.exit_code == 0 and result.output.splitlines() == ["(no rows)", f"{empty}: 0 rows"]
    blank = tmp_path / "blank.csv"
    blank.write_text("\n")
    assert read_rows(blank) == []
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(_results()))
    result = CliRunner().invoke(main, ["leaderboard", str(run), "--out", str(blank)])
    assert result.exit_code == 0 and [row["method"] for row in read_rows(blank)] == ["sie"]


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100


def test_plots_are_valid_pngs(tmp_path):
    rows = _three_rows()
    written = plot_leaderboard(rows, tmp_path / "figures")
    names = {path.name for path in written}
    expected = {"top1.png", "rot_r2.png", "mrr.png", "pre.png", "emb_dist.png"}
    assert TRADEOFF_NAME in names and expected <= names
    assert len(names) == 17
    for path in written:
        _assert_png(path)


def _three_rows():
    """sie with two seeds (top-1 80 and 82 %, rotation R^2 0.6) and vicreg (one part, R^2 0.2)."""
    return merge_rows(
        [
            row_from_results(_results(seed=0)),
            row_from_results(_results(seed=1, top1=0.82)),
            row_from_results(_results("vicreg", split=False, r2=0.2)),
        ]
    )


def test_the_tradeoff_figure_puts_each_method_at_its_seed_mean_and_labels_it():
    rows = _three_rows()
    for row in rows:
        if row["method"] == "sie":  # the full representation's figures are not the ones plotted
            row.update(top1_full=50.0, rot_r2_full=0.1)
    groups = group_rows(rows)
    axes = tradeoff_figure(groups).axes[0]
    points = [tuple(collection.get_offsets()[0]) for collection in axes.collections]
    labels = [text.get_text() for text in axes.texts]
    expected = {"sie": (0.6, 81.0), "vicreg": (0.2, 80.0)}  # sie: its invariant top-1, equivariant R^2
    assert labels == list(groups) and sorted(labels) == sorted(expected)
    for label, point in zip(labels, points, strict=True):
        assert point == pytest.approx(expected[label])
    np.testing.assert_allclose([text.xy for text in axes.texts], points)


def test_metric_bars_are_seed_means_with_the_seed_spread_per_part():
    groups = group_rows(_three_rows())
    axes = metric_figure(groups, "top1", ["top1_inv", "top1_equi", "top1_full"]).axes[0]
    assert [tick.get_text() for tick in axes.get_xticklabels()] == list(groups)
    bars = [container for container in axes.containers if isinstance(container, BarContainer)]
    assert [container.get_label() for container in bars] == ["inv", "equi", "full"]
    sie, vicreg = (list(groups).index(name) for name in ("sie", "vicreg"))
    for container in bars:
        heights = [bar.get_height() for bar in container.patches]
        segments = [segment for segment in container.errorbar.lines[2][0].get_segments() if len(segment)]
        spreads = {round(segment[0, 0], 6): (segment[1, 1] - segment[0, 1]) / 2 for segment in segments}
        centres = [round(bar.get_x() + bar.get_width() / 2, 6) for bar in container.patches]
        assert heights[sie] == pytest.approx(81.0) and spreads[centres[sie]] == pytest.approx(1.0)  # std
        if container.get_label() == "full":
            assert heights[vicreg] == pytest.approx(80.0)
        else:  # vicreg has no invariant or equivariant part
            assert np.isnan(heights[vicreg])


def test_rows_of_one_dataset_name_with_other_hashes_are_not_averaged_as_seeds():
    first = row_from_results(_results(top1=0.8))
    other = dict(first, dataset_hash="fedcba9876543210", top1_inv=10.0)  # re-rendered, same name
    groups = group_rows([first, other, dict(first, seed=1)])
    assert sorted(len(rows) for rows in groups.values()) == [1, 2]
    assert sorted(label.split("\n")[1] for label in groups) == [
        "mini procedural #012345 64px 20ep",
        "mini procedural #fedcba 64px 20ep",
    ]


def test_long_labels_are_wrapped_and_elided_in_the_figures():
    options = ";".join(f"option_{index}=0.{index}" for index in range(30))
    row = row_from_results(_results())
    groups = group_rows([dict(row, method_options=options), row])
    figure = metric_figure(groups, "top1", ["top1_inv"])
    ticks = [tick.get_text() for tick in figure.axes[0].get_xticklabels()]
    assert all(len(line) <= 48 for tick in ticks for line in tick.split("\n"))
    assert ticks[0].count("\n") == 2 and ticks[0].endswith("...") and ticks[1] == "sie"
    assert tradeoff_figure(groups).get_size_inches()[0] < 16


def test_trade_off_labels_of_nearby_points_do_not_overlap():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from benchmark.leaderboard.plots import place_labels

    figure = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    points = {
        "simclr": (0.386, 83.0),
        "vicreg": (0.395, 82.8),
        "simclr-augself": (0.392, 82.4),
        "sen": (0.1, 40),
    }
    for point in points.values():
        axes.scatter(*point)
    annotations = place_labels(axes, points)
    renderer = figure.canvas.get_renderer()
    boxes = [annotation.get_window_extent(renderer) for annotation in annotations]
    assert [annotation.get_text() for annotation in annotations] == list(points)
    assert not any(boxes[i].overlaps(boxes[j]) for i in range(4) for j in range(i))


def test_trade_off_labels_that_cannot_all_fit_become_numbers_with_a_key(tmp_path):
    """Many long labels of nearby points: each point gets its number, and a key beside the axes its label."""
    groups = {
        f"method-{index}\nprocedural-0fde7f17-3x6-32px-fast-s0 (trained on id) 32px 2ep": [
            {"top1_full": 50.0 + index * 0.1, "rot_r2_full": 0.3 + index * 0.001}
        ]
        for index in range(8)
    }
    figure = tradeoff_figure(groups)
    axes = figure.axes[0]
    assert [text.get_text() for text in axes.texts] == [str(number) for number in range(1, 9)]
    (key,) = figure.legends
    assert [text.get_text() for text in key.get_texts()] == [
        f"{number}  {label.replace(chr(10), ' ')}" for number, label in enumerate(groups, start=1)
    ]
    figure.savefig(tmp_path / "tradeoff.png")  # the key is drawn beside the axes, inside the figure
    renderer = figure.canvas.get_renderer()
    box, inside = key.get_window_extent(renderer), figure.bbox
    assert box.x0 >= axes.get_window_extent(renderer).x1 and box.x1 <= inside.x1 + 1


def test_no_tradeoff_figure_without_both_axes(tmp_path):
    row = row_from_results(_results())
    row.update({column: None for column in COLUMNS if column.startswith("rot_")})
    names = {path.name for path in plot_leaderboard([row], tmp_path)}
    assert TRADEOFF_NAME not in names and "top1.png" in names


def test_leaderboard_command_merges_runs_and_csvs(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps(_results(evaluated_at="2026-05-01T00:00:00+00:00")))
    earlier = tmp_path / "earlier.csv"
    write_rows(
        earlier, [row_from_results(_results(top1=0.1)), row_from_results(_results("simclr", split=False))]
    )
    out = tmp_path / "board.csv"
    result = CliRunner().invoke(
        main, ["leaderboard", str(run), str(earlier), "--out", str(out), "--plot", str(tmp_path / "plots")]
    )
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert [(r["method"], round(r["top1_full"])) for r in rows] == [("sie", 80), ("simclr", 80)]
    assert "sie" in result.output and f"{out}: 2 rows" in result.output
    _assert_png(tmp_path / "plots" / TRADEOFF_NAME)
    # A second call merges into the existing CSV.
    other = tmp_path / "other"
    other.mkdir()
    (other / "results.json").write_text(json.dumps(_results("sen", split=False)))
    assert CliRunner().invoke(main, ["leaderboard", str(other), "--out", str(out)]).exit_code == 0
    assert [r["method"] for r in read_rows(out)] == ["sen", "sie", "simclr"]
    missing = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "plots"), "--out", str(out)])
    assert (
        missing.exit_code == 1
        and "plots: not a run folder (no checkpoints/ or results.json)" in missing.output
    )
    results = (run / "results.json").read_text()
    typo = CliRunner().invoke(main, ["leaderboard", str(run), "--out", str(run / "results.json")])
    assert typo.exit_code == 1 and "--out must name a .csv file" in typo.output
    assert (run / "results.json").read_text() == results


def test_figures_that_cannot_be_written_are_one_line(tmp_path):
    source = tmp_path / "earlier.csv"
    write_rows(source, [row_from_results(_results())])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = tmp_path / "board.csv"
    for plots, message in (
        (blocker / "plots", f"Error: {blocker / 'plots'}: cannot make the figures' folder (Not a directory)"),
        (
            tmp_path / "taken",
            f"Error: {tmp_path / 'taken' / TRADEOFF_NAME}: cannot write the figure (Is a directory)",
        ),
    ):
        (tmp_path / "taken" / TRADEOFF_NAME).mkdir(parents=True, exist_ok=True)
        result = CliRunner().invoke(
            main, ["leaderboard", str(source), "--out", str(out), "--plot", str(plots)]
        )
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert message in result.output
    assert read_rows(out)  # the folder was usable the second time: the CSV was written before the figures


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (lambda r: r["metrics"]["rotation"]["equi"].update(r2="abc"), "could not convert string to float"),
        (
            lambda r: r["training"].update(image_size="16.5"),
            "column image_size holds '16.5', expected a whole",
        ),
        (lambda r: r["training"].update(seed=True), "column seed holds 'True', expected a whole number"),
        (lambda r: r["training"].update(image_size=[16]), "column image_size holds '[16]'"),
    ],
    ids=["score-text", "size-fraction", "seed-bool", "size-list"],
)
def test_a_hand_edited_results_file_is_one_line_not_a_row_no_csv_could_read(tmp_path, edit, said):
    results = _results()
    edit(results)
    (tmp_path / "results.json").write_text(json.dumps(results))
    result = CliRunner().invoke(
        main, ["leaderboard", str(tmp_path / "results.json"), "--out", str(tmp_path / "b.csv")]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert said in result.output and "evaluate the run again" in result.output, result.output
    assert not (tmp_path / "b.csv").exists()


def test_a_results_file_nested_too_deep_or_with_a_byte_order_mark(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(LeaderboardError, match=r"not a results\.json of `3die evaluate`"):
        load_rows(tmp_path / "deep.json")
    (tmp_path / "bom.json").write_text("\ufeff" + json.dumps(_results()), encoding="utf-8")
    assert load_rows(tmp_path / "bom.json")[0]["method"] == _results()["method"]
