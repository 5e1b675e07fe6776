"""A run evaluated on another dataset than the one it trained on (an OOD split, docs/extending.md): the
probes train on that dataset's train split and score its val split, and results.json and the leaderboard
row name that dataset and its hash, beside the dataset the run trained on."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from synthetic_data import write_dataset

from benchmark.cli import main
from benchmark.data import open_dataset
from benchmark.evaluate.run import dataset_identity
from benchmark.leaderboard import read_rows

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

TINY_TRAIN = ["--preset", "tiny", "--image-size", "16", "--batch-size", "2", "--epochs", "1", "--no-progress"]
TINY_EVAL = ["--epochs", "2", "--hidden", "16", "--val-pairs", "2", "--batch-size", "8", "--device", "cpu"]


def invoke(*arguments):
    result = CliRunner().invoke(main, [str(argument) for argument in arguments])
    assert result.exit_code == 0, result.output
    return result.output


def test_a_run_evaluated_on_an_ood_dataset_is_scored_and_listed_on_that_dataset(tmp_path):
    trained_on = write_dataset(tmp_path / "in-distribution", classes=2, train_per_class=2, views=4, size=16)
    ood = write_dataset(
        tmp_path / "ood", classes=3, train_per_class=3, views=5, size=16, seed=1, rotation="ood"
    )
    run = tmp_path / "run"
    invoke("train", "--method", "sie", "--data", trained_on.root, "--out", run, *TINY_TRAIN)
    invoke("evaluate", run, *TINY_EVAL, "--no-progress")
    output = invoke("evaluate", run, "--data", ood.root, *TINY_EVAL, "--no-progress")
    (kept,) = run.glob("results.*.json")  # the in-distribution results, kept aside
    assert f"copied to {kept.name}" in output

    results = json.loads((run / "results.json").read_text())
    identity = dataset_identity(ood.root, open_dataset(ood.root, "train"), open_dataset(ood.root, "val"))
    assert results["dataset"] == identity
    assert identity["name"] == "ood" and identity["objects"] == {"train": 9, "val": 3}
    assert identity["num_classes"] == 3 and identity["views"] == 5
    assert results["training"]["dataset"] == {
        "path": str(trained_on.root),
        "name": "in-distribution",
        "fingerprint": json.loads((run / "config.json").read_text())["dataset"]["fingerprint"],
        "rendering": {"seed": 0, "views": 4, "size": 16, "quality": "synthetic", "rotation": "published"},
    }
    # The probes read the OOD dataset's features: its train split to train, its val split to score.
    features = run / "features" / results["features"]["key"]
    for split in ("train", "val"):
        latents = np.stack([ood.latents[key] for key in ood.splits[split]])
        np.testing.assert_array_equal(np.load(features / f"{split}_latents.npy"), latents)
        np.testing.assert_array_equal(np.load(features / f"{split}_labels.npy"), ood.labels[split])
    assert set(results["metrics"]) == {"classification", "rotation", "colour", "retrieval"}

    board = tmp_path / "leaderboard.csv"
    invoke("leaderboard", run, kept, "--out", board)
    rows = {row["dataset"]: row for row in read_rows(board)}
    in_distribution = json.loads(kept.read_text())["dataset"]["hash"]
    assert rows["ood"]["dataset_hash"] == identity["hash"] != in_distribution
    assert rows["ood"]["train_dataset"] == "in-distribution"
    assert rows["in-distribution"]["dataset_hash"] == in_distribution
    assert rows["in-distribution"]["train_dataset"] is None
    assert rows["ood"]["run"] == rows["in-distribution"]["run"] == str(run.resolve())

    # The objects it trained on, packed under another name, are its own dataset: the evaluation on the file
    # replaces the one on the folder (same hash) instead of adding a row "trained on in-distribution".
    packed = tmp_path / "packed-copy.h5"
    invoke("pack", trained_on.root, "--out", packed)
    invoke("evaluate", run, "--data", packed, *TINY_EVAL, "--no-progress")
    on_file = json.loads((run / "results.json").read_text())
    assert on_file["dataset"]["name"] == "packed-copy" and on_file["dataset"]["hash"] == in_distribution
    assert on_file["dataset"]["train_fingerprint"] == results["training"]["dataset"]["fingerprint"]
    # given last: it wins even when both evaluations fell in the same second (evaluated_at's resolution)
    mixed = tmp_path / "mixed.csv"
    invoke("leaderboard", *run.glob("results.*.json"), run / "results.json", "--out", mixed)
    rows = {row["dataset"]: row for row in read_rows(mixed)}
    assert sorted(rows) == ["ood", "packed-copy"] and rows["packed-copy"]["train_dataset"] is None
    assert rows["packed-copy"]["dataset_hash"] == in_distribution


def test_the_same_objects_rendered_with_another_rotation_range_are_another_dataset(tmp_path):
    """An OOD split of the very objects a run trained on (docs/extending.md: same objects, `--rotation
    ood`): its row names the training dataset, and training refuses to resume on it, naming the setting."""
    trained_on = write_dataset(tmp_path / "id", classes=2, train_per_class=2, views=4, size=16)
    ood = write_dataset(tmp_path / "ood", classes=2, train_per_class=2, views=4, size=16, rotation="ood")
    assert sorted(ood.latents) == sorted(trained_on.latents)  # the same objects, labels and views
    run = tmp_path / "run"
    invoke("train", "--method", "vicreg", "--data", trained_on.root, "--out", run, *TINY_TRAIN)
    invoke("evaluate", run, "--data", ood.root, *TINY_EVAL, "--tasks", "classification", "--no-progress")
    board = tmp_path / "board.csv"
    invoke("leaderboard", run, "--out", board)
    (row,) = read_rows(board)
    assert (row["dataset"], row["train_dataset"]) == ("ood", "id")

    arguments = ["train", "--method", "vicreg", "--data", ood.root, "--out", run, *TINY_TRAIN]
    arguments += ["--epochs", "2"]
    refused = CliRunner().invoke(main, [str(argument) for argument in arguments])
    assert refused.exit_code == 1 and "Traceback" not in refused.output, refused.output
    assert "cannot resume" in refused.output and "dataset rotation: 'published' -> 'ood'" in refused.output
