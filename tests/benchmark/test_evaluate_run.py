"""`3die evaluate` end to end on tiny trained runs: results.json, the feature cache and its reuse, resumed
extraction, methods without a predictor, and clear errors."""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from synthetic_data import write_dataset

from benchmark.cli import main
from benchmark.data import DatasetError, open_dataset, pack_dataset
from benchmark.data.validate import subset
from benchmark.evaluate import (
    EvaluationError,
    EvaluationSettings,
    SplitFeatures,
    evaluate_run,
    parse_epochs,
    parse_tasks,
    split_features,
)
from benchmark.evaluate import run as evaluate_module
from benchmark.evaluate.run import check_finite_features, continue_results, dataset_identity
from benchmark.leaderboard import row_from_results
from benchmark.provenance import code_version
from benchmark.train import load_trained
from benchmark.train.checkpoint import load_checkpoint, save_checkpoint
from render import spec

pytestmark = pytest.mark.slow

TINY_TRAIN = ["--preset", "tiny", "--image-size", "16", "--batch-size", "4", "--epochs", "1", "--no-progress"]
TINY_EVAL = ["--epochs", "2", "--hidden", "16", "--val-pairs", "2", "--batch-size", "8", "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small networks and probes run faster and steadier on one thread when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(method, data, out, *extra):
    arguments = ["train", "--method", method, "--data", str(data), "--out", str(out), *TINY_TRAIN, *extra]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    return out


def _evaluate(run, *extra):
    return CliRunner().invoke(main, ["evaluate", str(run), *TINY_EVAL, "--no-progress", *extra])


@pytest.fixture(scope="module")
def sie_run(synthetic_dataset, tmp_path_factory):
    return _train("sie", synthetic_dataset.root, tmp_path_factory.mktemp("runs") / "sie")


@pytest.fixture(scope="module")
def evaluated_sie_run(sie_run):
    result = _evaluate(sie_run)
    assert result.exit_code == 0, result.output
    return sie_run


def test_evaluate_writes_every_task_per_part_and_the_settings(evaluated_sie_run, synthetic_dataset):
    results = json.loads((evaluated_sie_run / "results.json").read_text())
    metrics = results["metrics"]
    assert set(metrics) == {"classification", "rotation", "colour", "retrieval"}
    for task, names in {
        "classification": {"top1", "top5", "mean_class_acc"},
        "rotation": {"r2", "r2_components", "angle_deg"},
        "colour": {"r2", "r2_floor", "r2_spot"},
    }.items():
        assert set(metrics[task]) == {"inv", "equi", "full"}
        assert all(set(values) == names for values in metrics[task].values())
    for values in metrics["classification"].values():
        assert 0 <= values["top1"] <= values["top5"] <= 1
    assert set(metrics["retrieval"]) == {"pre", "emb_dist", "mrr", "hit1", "hit2", "hit5", "hit10"}
    assert 1 / 49 <= metrics["retrieval"]["mrr"] <= 1 and 0 <= metrics["retrieval"]["emb_dist"] <= 4
    assert 0 <= metrics["retrieval"]["pre"] <= 1
    assert results["settings"]["rotation"] == {
        "epochs": 2,
        "samples_per_object": 1,
        "batch_size": 8,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "hidden": 16,
        "val_pairs": 2,
        "seed": 0,
    }
    assert results["method"] == "sie" and results["training"]["image_size"] == 16
    assert results["training"]["epochs_done"] == 1 and results["training"]["complete"] is True
    dataset = results["dataset"]
    assert dataset["name"] == synthetic_dataset.root.name and len(dataset["hash"]) == 16
    assert dataset["objects"] == {"train": 9, "val": 3} and dataset["views"] == 50
    assert results["evaluation"]["code_version"].startswith("0.1.0")


def test_results_of_another_checkpoint_are_copied_aside_never_overwritten(tmp_path):
    """Copied, not moved: until the new evaluation writes its first score, results.json keeps them; an
    attempt that failed before that and its rerun make one copy, other results another."""
    header = {"features": {"key": "new"}}
    said = []
    for attempt, expected in ((1, "results.old.json"), (1, "results.old.json"), (2, "results.old-2.json")):
        previous = {"format": "3die-results/1", "features": {"key": "old"}, "metrics": {"n": attempt}}
        (tmp_path / "results.json").write_text(json.dumps(previous))
        results = continue_results(previous, header, tmp_path, said.append)
        assert results["metrics"] == {}
        assert json.loads((tmp_path / "results.json").read_text()) == previous
        assert json.loads((tmp_path / expected).read_text())["metrics"] == {"n": attempt}
        assert f"results of another checkpoint or dataset copied to {expected}; " in said[-1]
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "results.json",
        "results.old-2.json",
        "results.old.json",
    ]


def test_code_version_names_the_commit_and_a_modified_tree(tmp_path):
    def git(*arguments):
        subprocess.run(["git", "-C", str(tmp_path), *arguments], check=True, capture_output=True)

    assert code_version(tmp_path).count("+g") == 0  # not a git checkout: the package version alone
    git("init", "-q")
    (tmp_path / "benchmark").mkdir()
    (tmp_path / "benchmark" / "code.py").write_text("A = 1\n")
    (tmp_path / "notes.txt").write_text("not code\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    commit = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert code_version(tmp_path).endswith(f"+g{commit}")
    (tmp_path / "notes.txt").write_text("edited, still not code\n")
    (tmp_path / "benchmark" / "new.py").write_text("B = 2\n")  # untracked
    assert code_version(tmp_path).endswith(f"+g{commit}")
    (tmp_path / "benchmark" / "code.py").write_text("A = 2\n")
    assert code_version(tmp_path).endswith(f"+g{commit}.dirty")


def test_features_are_cached_once_for_every_view(evaluated_sie_run):
    results = json.loads((evaluated_sie_run / "results.json").read_text())
    folder = evaluated_sie_run / "features" / results["features"]["key"]
    method, _ = load_trained(evaluated_sie_run)
    val = np.load(folder / "val_representations.npy")
    assert val.shape == (3, 50, method.representation_dim) and val.dtype == np.float32
    assert np.load(folder / "train_representations.npy").shape == (9, 50, method.representation_dim)
    assert np.load(folder / "val_embeddings.npy").shape[:2] == (3, 50)
    assert not (folder / "train_embeddings.npy").exists()
    assert np.load(folder / "val_latents.npy").shape == (3, 50, spec.LATENT_DIM)
    assert not list(folder.glob("*.partial")) and not list(folder.glob("*progress*"))
    # The cache holds what the network computes for each view in eval mode.
    views = open_dataset(results["dataset"]["path"], "val")
    from benchmark.data import normalise_views

    image = torch.from_numpy(views.image(2, 7, 16))[None]
    with torch.no_grad():
        expected = method.encode(normalise_views(image)).numpy()[0]
    np.testing.assert_allclose(val[2, 7], expected, rtol=1e-4, atol=1e-5)


@pytest.fixture
def committed_code(monkeypatch):
    """Evaluations see the code version of a committed checkout, whatever the state of this one."""
    version = "0.1.0+g0123456789ab"
    monkeypatch.setattr(evaluate_module, "code_version", lambda: version)
    return version


def test_rerun_keeps_results_and_recompute_extracts_features_again_for_the_same_numbers(
    evaluated_sie_run, committed_code
):
    path = evaluated_sie_run / "results.json"
    assert _evaluate(evaluated_sie_run).exit_code == 0  # every task under this (committed) code version
    results = json.loads(path.read_text())
    folder = evaluated_sie_run / "features" / results["features"]["key"]
    stamps = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    written = path.read_bytes()
    kept = _evaluate(evaluated_sie_run)
    assert kept.exit_code == 0, kept.output
    for task in ("classification", "rotation", "colour", "retrieval"):
        assert f"{evaluated_sie_run}: {task} kept from results.json" in kept.output
    assert path.read_bytes() == written  # nothing evaluated, nothing written: evaluated_at unchanged

    again = _evaluate(evaluated_sie_run, "--recompute")
    assert again.exit_code == 0 and "kept from" not in again.output, again.output
    recomputed = json.loads(path.read_text())
    extracted = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    assert extracted.keys() == stamps.keys() and all(extracted[name] != stamps[name] for name in stamps)
    assert recomputed["metrics"] == results["metrics"]
    assert recomputed["evaluation"]["evaluated_at"] >= results["evaluation"]["evaluated_at"]


def test_features_extracted_by_another_code_version_are_extracted_again(
    evaluated_sie_run, tmp_path, monkeypatch
):
    """Resizing, normalisation and the network are code: a task rerun under a new code version must not
    score the features the old version extracted, and results.json says which code extracted them."""
    run = tmp_path / "run"
    shutil.copytree(evaluated_sie_run, run)
    monkeypatch.setattr(evaluate_module, "code_version", lambda: "0.1.0+gaaaaaaaaaaaa")
    first = _evaluate(run, "--tasks", "classification")
    assert first.exit_code == 0, first.output
    results = json.loads((run / "results.json").read_text())
    folder = run / "features" / results["features"]["key"]
    assert results["features"]["extracted_with"]["code_version"] == "0.1.0+gaaaaaaaaaaaa"
    assert json.loads((folder / "extracted.json").read_text()) == results["features"]["extracted_with"]
    val = np.load(folder / "val_representations.npy")
    np.save(folder / "val_representations.npy", val + 1.0)  # what other code might have extracted
    assert _evaluate(run, "--tasks", "classification").output.count("kept from") == 1, "same version"
    monkeypatch.setattr(evaluate_module, "code_version", lambda: "0.1.0+gbbbbbbbbbbbb")
    second = _evaluate(run, "--tasks", "classification")
    assert second.exit_code == 0, second.output
    assert f"{folder}: features extracted by other code (0.1.0+gaaaaaaaaaaaa, now 0.1.0+gbbbbbbbbbbbb)" in (
        second.output
    )
    np.testing.assert_array_equal(np.load(folder / "val_representations.npy"), val)
    again = json.loads((run / "results.json").read_text())
    assert again["features"]["extracted_with"]["code_version"] == "0.1.0+gbbbbbbbbbbbb"
    assert again["metrics"]["classification"] == results["metrics"]["classification"]
    monkeypatch.setattr(evaluate_module, "code_version", lambda: "0.1.0+gbbbbbbbbbbbb.dirty")
    assert _evaluate(run, "--tasks", "classification").exit_code == 0  # extracted by this uncommitted tree
    reused = _evaluate(run, "--tasks", "classification")  # rescored (uncommitted code), features reused
    assert (
        f"{folder}: reusing the features this uncommitted code (0.1.0+gbbbbbbbbbbbb.dirty)" in reused.output
    )


def test_a_rerun_with_other_settings_recomputes_only_the_tasks_they_change(
    evaluated_sie_run, tmp_path, committed_code, monkeypatch
):
    run = tmp_path / "run"
    shutil.copytree(evaluated_sie_run, run)
    assert _evaluate(run).exit_code == 0  # every task under this (committed) code version
    results = json.loads((run / "results.json").read_text())
    # --hidden shapes the rotation and colour heads, not the linear classifier nor retrieval
    result = _evaluate(run, "--hidden", "8")
    assert result.exit_code == 0, result.output
    assert [task for task in results["metrics"] if f"{task} kept from" in result.output] == [
        "classification",
        "retrieval",
    ]
    changed = json.loads((run / "results.json").read_text())
    assert changed["settings"]["rotation"]["hidden"] == changed["settings"]["colour"]["hidden"] == 8
    for task in ("classification", "retrieval"):
        assert changed["metrics"][task] == results["metrics"][task]
    # results computed by another code version are computed again
    changed["evaluated"]["classification"]["code_version"] = "0.0.1"
    (run / "results.json").write_text(json.dumps(changed))
    result = _evaluate(run, "--hidden", "8")
    assert "classification kept" not in result.output and "rotation kept from" in result.output
    # nor are any with code that differs from its commit, or names none, which may have changed since
    for version in (f"{committed_code}.dirty", "0.1.0"):
        monkeypatch.setattr(evaluate_module, "code_version", lambda version=version: version)
        for _ in range(2):  # also when the results were computed under that same version
            assert "kept from" not in _evaluate(run, "--hidden", "8").output


def test_evaluating_some_tasks_keeps_the_others(sie_run, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "checkpoints"):
        source = sie_run / name
        target = run / name
        if source.is_dir():
            target.mkdir()
            for item in source.iterdir():
                (target / item.name).write_bytes(item.read_bytes())
        else:
            target.write_bytes(source.read_bytes())
    assert _evaluate(run, "--tasks", "retrieval").exit_code == 0
    first = json.loads((run / "results.json").read_text())
    assert set(first["metrics"]) == {"retrieval"}
    assert not (run / "features" / first["features"]["key"] / "train_representations.npy").exists()
    assert _evaluate(run, "--tasks", "color").exit_code == 0
    second = json.loads((run / "results.json").read_text())
    assert set(second["metrics"]) == {"retrieval", "colour"}
    assert second["metrics"]["retrieval"] == first["metrics"]["retrieval"]


def test_the_checkpoint_recorded_is_the_one_whose_weights_were_evaluated(
    evaluated_sie_run, tmp_path, monkeypatch
):
    """Training saving a newer last.pt while the evaluation checks the dataset changes neither the hash in
    results.json nor the feature cache's key: both are those of the checkpoint the weights came from."""
    run = tmp_path / "training"
    shutil.copytree(evaluated_sie_run, run, ignore=shutil.ignore_patterns("results*.json"))
    loaded = hashlib.sha256((run / "checkpoints" / "last.pt").read_bytes()).hexdigest()
    payload = load_checkpoint(run / "checkpoints").payload
    newer = {**payload, "epoch": payload["epoch"] + 1}
    newer["model"] = {
        name: tensor + 1 if tensor.is_floating_point() else tensor
        for name, tensor in payload["model"].items()
    }
    check = evaluate_module.usable_splits

    def check_while_training_saves(*arguments, **options):
        save_checkpoint(run / "checkpoints", newer)
        return check(*arguments, **options)

    monkeypatch.setattr(evaluate_module, "usable_splits", check_while_training_saves)
    settings = EvaluationSettings(tasks=("retrieval",), device="cpu")
    results = evaluate_run(run, settings=settings, progress=False)
    saved = hashlib.sha256((run / "checkpoints" / "last.pt").read_bytes()).hexdigest()
    assert results["checkpoint"]["sha256"] == loaded != saved
    assert results["training"]["epochs_done"] == payload["epoch"]
    evaluated = json.loads((evaluated_sie_run / "results.json").read_text())
    assert results["features"]["key"] == evaluated["features"]["key"]  # the cache of those weights, reused
    assert results["metrics"]["retrieval"] == evaluated["metrics"]["retrieval"]


def test_a_second_evaluation_of_a_run_waits_for_the_first_and_adds_its_task(evaluated_sie_run, tmp_path):
    """While another evaluation holds RUN/.evaluate.lock, `3die evaluate` says it waits and writes nothing;
    it then adds its task to the results.json the other one wrote instead of replacing it."""
    run = tmp_path / "run"
    shutil.copytree(evaluated_sie_run, run, ignore=shutil.ignore_patterns("results*.json"))
    evaluated = json.loads((evaluated_sie_run / "results.json").read_text())
    first = {
        **evaluated,
        **{
            section: {"classification": evaluated[section]["classification"]}
            for section in ("metrics", "settings")
        },
    }
    command = [sys.executable, "-c", "from benchmark.cli import main; main()", "evaluate", str(run)]
    descriptor = os.open(run / ".evaluate.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.write(descriptor, b"pid 1 on the-other-host\n")
        second = subprocess.Popen(
            [*command, *TINY_EVAL, "--tasks", "retrieval", "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        said = next((line for line in second.stdout if "waiting" in line), "")
        assert (
            said.strip()
            == f"{run}: waiting for the other evaluation of this run (pid 1 on the-other-host) to finish"
        )
        time.sleep(1)
        assert second.poll() is None and not (run / "results.json").exists()
        (run / "results.json").write_text(json.dumps(first))  # what the other evaluation writes
    finally:
        os.close(descriptor)
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0, output
    results = json.loads((run / "results.json").read_text())
    assert results["metrics"] == {
        task: evaluated["metrics"][task] for task in ("classification", "retrieval")
    }


def test_feature_tensors_are_copied_once_and_made_again_after_release():
    train = SplitFeatures(np.ones((2, 3, 4), np.float32), None, np.zeros((2, 3, 7)), np.zeros(2, np.int64))
    val = SplitFeatures(np.full((1, 3, 4), 2, np.float32), None, np.zeros((1, 3, 7)), np.zeros(1, np.int64))
    tensors = evaluate_module.FeatureTensors(train, val, torch.device("cpu"))
    first = tensors.representations("train")
    assert tensors.representations("train") is first and tensors.representations("val").eq(2).all()
    tensors.release()
    again = tensors.representations("train")
    assert again is not first and torch.equal(again, first)


def test_each_probe_trains_on_the_train_split_and_scores_the_val_split_of_each_part(monkeypatch):
    """run_task hands every probe the train split's features of one part with the train labels or
    latents, then the val split's: a probe fitted on validation views would inflate every score."""
    train = SplitFeatures(
        np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4), None, np.ones((2, 3, 7)), np.array([0, 1])
    )
    val = SplitFeatures(-np.ones((1, 3, 4), np.float32), None, np.zeros((1, 3, 7)), np.array([1]))
    features = evaluate_module.FeatureTensors(train, val, torch.device("cpu"))
    method = SimpleNamespace(parts={"inv": slice(0, 1), "equi": slice(1, 4)}, has_predictor=False)
    calls = []

    def probe(name):
        def record(train_part, train_answers, val_part, val_answers, *rest):
            calls.append((name, train_part, train_answers, val_part, val_answers))
            return {}

        return record

    for name in ("classification_probe", "rotation_probe", "colour_probe"):
        monkeypatch.setattr(evaluate_module, name, probe(name))
    settings = EvaluationSettings(epochs=dict.fromkeys(evaluate_module.PROBE_TASKS, 1))
    for task in evaluate_module.PROBE_TASKS:
        assert evaluate_module.run_task(task, method, features, 2, settings) == {"inv": {}, "equi": {}}
    assert [call[0] for call in calls] == [
        name for name in ("classification_probe", "rotation_probe", "colour_probe") for _ in range(2)
    ]
    for name, train_part, train_answers, val_part, val_answers in calls:
        columns = method.parts["inv"] if train_part.shape[-1] == 1 else method.parts["equi"]
        assert torch.equal(train_part, torch.from_numpy(train.representations[..., columns]))
        assert torch.equal(val_part, torch.from_numpy(val.representations[..., columns]))
        answers = (
            (train.labels, val.labels) if name == "classification_probe" else (train.latents, val.latents)
        )
        assert train_answers is answers[0] and val_answers is answers[1]


def test_an_interrupted_extraction_continues_where_it_stopped(sie_run, synthetic_dataset, tmp_path):
    method, _ = load_trained(sie_run)
    failing = open_dataset(synthetic_dataset.root, "train")
    readable = failing.image

    def image(index, view, size=None):
        if index == 5:
            raise DatasetError("object 5 is unreadable")
        return readable(index, view, size)

    failing.image = image
    options = dict(image_size=16, device=torch.device("cpu"), batch_images=100, progress=False)
    with pytest.raises(DatasetError, match="object 5"):
        split_features(method, failing, tmp_path / "resumed", **options)
    progress = json.loads((tmp_path / "resumed" / "train_progress.json").read_text())
    assert progress["objects_done"] == 4
    views = open_dataset(synthetic_dataset.root, "train")
    lines = []
    resumed = split_features(method, views, tmp_path / "resumed", echo=lines.append, **options)
    assert "continuing train feature extraction at object 4" in lines[0]
    fresh = split_features(method, views, tmp_path / "fresh", **options)
    np.testing.assert_allclose(resumed.representations, fresh.representations, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(resumed.latents, fresh.latents)
    np.testing.assert_array_equal(resumed.labels, views.labels)


def test_features_do_not_depend_on_the_extraction_batch_or_workers(sie_run, synthetic_dataset, tmp_path):
    """--extract-batch (rounded to whole objects) and --workers change how the views are read and
    batched, never the features."""
    method, _ = load_trained(sie_run)
    views = open_dataset(synthetic_dataset.root, "val")
    options = dict(image_size=16, device=torch.device("cpu"), embeddings=True, progress=False)
    one = split_features(method, views, tmp_path / "one", batch_images=1, **options)
    every = split_features(method, views, tmp_path / "every", batch_images=10_000, workers=1, **options)
    for name in ("representations", "embeddings"):
        np.testing.assert_allclose(getattr(one, name), getattr(every, name), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(one.latents, every.latents)


@pytest.mark.parametrize("damage", ["truncated", "pickled", "other shape"])
def test_a_damaged_feature_cache_is_extracted_again(sie_run, synthetic_dataset, tmp_path, damage):
    method, _ = load_trained(sie_run)
    views = open_dataset(synthetic_dataset.root, "val")
    options = dict(image_size=16, device=torch.device("cpu"), batch_images=100, progress=False)
    fresh = split_features(method, views, tmp_path, embeddings=True, **options)
    expected = {name: np.array(getattr(fresh, name)) for name in ("representations", "embeddings", "latents")}
    del fresh
    if damage == "truncated":
        (tmp_path / "val_representations.npy").write_bytes(b"\x93NUMPY\x01\x00")
    elif damage == "pickled":
        np.save(tmp_path / "val_labels.npy", np.array([{"label": 1}]), allow_pickle=True)
    else:
        np.save(tmp_path / "val_embeddings.npy", np.zeros((2, views.views, 8), np.float32))
    lines = []
    again = split_features(method, views, tmp_path, embeddings=True, echo=lines.append, **options)
    assert (
        len(lines) == 1
        and "cached val features unreadable" in lines[0]
        and "extracting them again" in lines[0]
    )
    for name, array in expected.items():
        np.testing.assert_allclose(getattr(again, name), array, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(again.labels, views.labels)


def test_a_file_where_the_feature_cache_folder_goes_is_replaced_by_the_cache(
    sie_run, synthetic_dataset, tmp_path
):
    method, _ = load_trained(sie_run)
    views = open_dataset(synthetic_dataset.root, "val")
    folder = tmp_path / "features" / "KEY"
    folder.parent.mkdir()
    folder.write_text("x")
    lines = []
    features = split_features(
        method, views, folder, image_size=16, device=torch.device("cpu"), progress=False, echo=lines.append
    )
    assert lines[0] == f"{folder}: a file where the feature cache folder goes; replacing it with the cache"
    assert folder.is_dir() and features.representations.shape[:2] == (len(views), views.views)


def test_method_without_predictor_skips_retrieval(synthetic_dataset, tmp_path):
    run = _train("vicreg", synthetic_dataset.root, tmp_path / "vicreg")
    said = []
    results = evaluate_run(
        run,
        settings=EvaluationSettings(epochs=parse_epochs("1"), hidden=8, val_pairs=1, device="cpu"),
        progress=False,
        echo=said.append,
    )
    assert f"{run}: retrieval skipped: method vicreg has no predictor" in said
    assert set(results["metrics"]) == {"classification", "rotation", "colour"}
    assert set(results["metrics"]["classification"]) == {"full"}
    assert results["skipped"] == {"retrieval": "method vicreg has no predictor"}
    assert not list((run / "features").glob("*/val_embeddings.npy"))


def test_a_one_class_dataset_skips_classification_instead_of_scoring_100(sie_run, tmp_path, committed_code):
    one_class = write_dataset(
        tmp_path / "mugs", classes=1, train_per_class=3, val_per_class=2, views=4, size=16
    )
    run = tmp_path / "run"
    shutil.copytree(sie_run, run, ignore=shutil.ignore_patterns("results*.json", "features"))
    result = _evaluate(run, "--data", str(one_class.root), "--tasks", "classification,rotation")
    assert result.exit_code == 0, result.output
    assert (
        f"{run}: classification skipped: the dataset has 1 class; classification needs 2 or more"
        in result.output
    )
    results = json.loads((run / "results.json").read_text())
    assert set(results["metrics"]) == {"rotation"} and "classification" in results["skipped"]
    row = row_from_results(results)
    assert row["probe_epochs"] == "rotation=2" and row["top1_full"] is None, "no classification probe ran"
    again = _evaluate(run, "--data", str(one_class.root), "--tasks", "classification,rotation")
    assert (
        f"{run}: classification skipped: the dataset has 1 class; classification needs 2 or more; kept from"
        in again.output
    )


def test_bad_options_and_missing_runs_are_one_clear_line(tmp_path, evaluated_sie_run):
    result = _evaluate(evaluated_sie_run, "--tasks", "classification,segmentation")
    assert result.exit_code == 1 and "unknown tasks segmentation; choose from" in result.output
    result = _evaluate(evaluated_sie_run, "--epochs", "rotation=ten")
    assert result.exit_code == 1 and "cannot read epochs 'rotation=ten' (at 'rotation=ten')" in result.output
    result = _evaluate(tmp_path)
    assert result.exit_code == 1 and "no checkpoint (train the run first)" in result.output
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "manifest.json").write_text("{}")  # a dataset folder given where the run belongs
    result = _evaluate(dataset)
    assert result.exit_code == 1 and f"{dataset}: a dataset folder, not a training run; give" in result.output
    shutil.rmtree(dataset)
    result = _evaluate(evaluated_sie_run, "--data", str(tmp_path))
    assert result.exit_code == 1 and str(tmp_path) in result.output and "Traceback" not in result.output
    unlockable = tmp_path / "unlockable"
    shutil.copytree(
        evaluated_sie_run,
        unlockable,
        ignore=shutil.ignore_patterns("features", "results*.json", ".evaluate.lock"),
    )
    (unlockable / ".evaluate.lock").mkdir()
    result = _evaluate(unlockable)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        f"Error: {unlockable / '.evaluate.lock'}: cannot lock the run folder (Is a directory)"
        in result.output
    )


def test_non_finite_features_name_the_split_and_how_many_objects(monkeypatch):
    monkeypatch.setattr(evaluate_module, "FINITE_CHECK_OBJECTS", 2)  # several blocks
    finite = np.zeros((5, 2, 3), np.float32)
    embeddings = finite.copy()
    embeddings[1, 0, 2], embeddings[4, 1, 0] = np.inf, np.nan
    latents, labels = np.zeros((5, 2, 7)), np.zeros(5, np.int64)
    check_finite_features(SplitFeatures(finite, None, latents, labels), "train", Path("RUN"), "C")
    check_finite_features(None, "train", Path("RUN"), "C")
    expected = (
        r"RUN: the checkpoint C gives NaN or infinite embeddings for 2 of the 5 objects of the val split"
    )
    with pytest.raises(EvaluationError, match=expected):
        check_finite_features(SplitFeatures(finite, embeddings, latents, labels), "val", Path("RUN"), "C")


def test_a_diverged_checkpoint_is_one_clear_line_and_scores_nothing(sie_run, tmp_path):
    run = tmp_path / "diverged"
    shutil.copytree(sie_run, run, ignore=shutil.ignore_patterns("features", "results*.json"))
    payload = load_checkpoint(run / "checkpoints").payload
    weights = payload["model"]
    first = next(key for key in weights if key.startswith("backbone.") and weights[key].is_floating_point())
    weights[first].fill_(float("nan"))
    shutil.rmtree(run / "checkpoints")
    save_checkpoint(run / "checkpoints", payload)
    result = _evaluate(run)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "gives NaN or infinite representations for 3 of the 3 objects of the val split" in result.output
    assert not (run / "results.json").exists()


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"method": "my-method"}, "unknown method 'my-method'; valid methods: vicreg, simclr"),
        ({"method_config": {"my_coeff": 2.0}}, "method 'sie' has no option my_coeff"),
    ],
)
def test_a_run_of_a_method_this_code_does_not_have_is_one_clear_line(sie_run, tmp_path, change, problem):
    """A run trained by a version of sie_models with another method (or option) than this one."""
    run = tmp_path / "other-code"
    shutil.copytree(sie_run, run, ignore=shutil.ignore_patterns("features", "results*.json"))
    payload = load_checkpoint(run / "checkpoints").payload
    config = payload["config"]
    config.update(
        {key: {**config[key], **value} if key == "method_config" else value for key, value in change.items()}
    )
    shutil.rmtree(run / "checkpoints")
    save_checkpoint(run / "checkpoints", payload)
    result = _evaluate(run)
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert line.startswith(f"Error: {run / 'checkpoints' / 'last.pt'}: cannot rebuild the trained method (")
    assert problem in line and line.endswith("); use the version of the code that trained it")


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"metrics": "x"}, "its 'metrics' is a str, not an object"),
        ({"features": None}, "its 'features' is a NoneType, not an object"),
        ({"settings": {"rotation": "x"}}, "its settings.rotation is a str, not an object"),
        ({"metrics": {"rotation": {"full": [1]}}}, "its metrics.rotation.full is a list, not an object"),
    ],
    ids=["metrics", "features", "settings-task", "metrics-part"],
)
def test_a_results_file_of_our_format_with_sections_of_other_types_is_kept_aside(
    sie_run, tmp_path, change, problem
):
    """Hand-edited or foreign results.json: evaluate moves it aside and starts again, leaderboard names it."""
    run = tmp_path / "copy"
    shutil.copytree(sie_run, run, ignore=shutil.ignore_patterns("results*.json"))
    edited = json.dumps({"format": "3die-results/1", "features": {}, "metrics": {}, **change})
    (run / "results.json").write_text(edited)
    result = CliRunner().invoke(main, ["leaderboard", str(run), "--out", str(tmp_path / "board.csv")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output == (
        f"Error: {run / 'results.json'}: {problem}; evaluate the run again (`3die evaluate`)\n"
    )
    result = _evaluate(run, "--tasks", "retrieval")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert f"{run / 'results.json'}: {problem}\n" in result.output
    assert (run / "results.unusable.json").read_text() == edited
    assert set(json.loads((run / "results.json").read_text())["metrics"]) == {"retrieval"}


def test_a_results_file_that_is_not_ours_is_kept_and_paths_are_absolute(sie_run, tmp_path, monkeypatch):
    run = tmp_path / "copy"
    shutil.copytree(sie_run, run, ignore=shutil.ignore_patterns("results*.json"))
    foreign = json.dumps({"format": "3die-results/2", "metrics": {"retrieval": {"mrr": 0.5}}})
    (run / "results.json").write_text(foreign)
    monkeypatch.chdir(tmp_path)
    result = _evaluate(Path("copy"), "--tasks", "retrieval")
    assert result.exit_code == 0, result.output
    assert "not a 3die-results/1 results file; moved to results.unusable.json" in result.output
    assert (run / "results.unusable.json").read_text() == foreign
    results = json.loads((run / "results.json").read_text())
    assert results["format"] == "3die-results/1" and set(results["metrics"]) == {"retrieval"}
    assert results["checkpoint"]["path"] == str((run / "checkpoints" / "last.pt").resolve())
    (run / "results.json").write_text("{truncated")
    result = _evaluate(Path("copy"), "--tasks", "retrieval")
    assert result.exit_code == 0 and "moved to results.unusable-2.json" in result.output
    assert (run / "results.unusable-2.json").read_text() == "{truncated"


def test_a_run_whose_dataset_moved_asks_for_data(tmp_path):
    dataset = write_dataset(tmp_path / "data", classes=2, train_per_class=2, views=4, size=16)
    run = _train("sie", dataset.root, tmp_path / "run", "--batch-size", "2")
    moved = dataset.root.rename(tmp_path / "moved")
    result = _evaluate(run)
    assert result.exit_code == 1
    expected = f"trained on {dataset.root.resolve()}, which is not there; give the dataset with --data"
    assert expected in result.output
    assert _evaluate(run, "--data", str(moved), "--tasks", "retrieval").exit_code == 0


@pytest.mark.parametrize("object_list", [True, False])
def test_an_object_in_both_splits_is_refused_before_any_probe(
    sie_run, synthetic_dataset, tmp_path, object_list
):
    """Refused by the split files' disagreement with objects.csv where there is one, else as unusable
    objects (--skip-bad-objects would leave their train listing out)."""
    leaky = tmp_path / "leaky"
    shutil.copytree(synthetic_dataset.root, leaky)
    if not object_list:
        (leaky / spec.OBJECTS_CSV_NAME).unlink()
    train, val = np.load(leaky / "train_images.npy"), np.load(leaky / "val_images.npy")
    np.save(leaky / "val_images.npy", np.concatenate([val, train[:2]]))
    labels = np.load(leaky / "train_labels.npy")[:2]
    np.save(leaky / "val_labels.npy", np.concatenate([np.load(leaky / "val_labels.npy"), labels]))
    before = sorted((sie_run / "features").rglob("*"))
    result = _evaluate(sie_run, "--data", str(leaky), "--tasks", "classification")
    assert result.exit_code == 1 and "Traceback" not in result.output
    first = min(key.strip("/") for key in train[:2])
    if object_list:
        listed = str(train[0]).strip("/")
        assert f"{leaky / 'val_images.npy'}: {listed} has label" in result.output
        assert "split train in objects.csv; rerun `3die render`" in result.output
    else:
        both = f"(first: {first}: listed in both train_images.npy and val_images.npy)"
        assert f"{leaky}: 2 of 14 objects cannot be used {both}" in result.output
    assert sorted((sie_run / "features").rglob("*")) == before, "refused before extracting anything"


def test_task_and_epoch_parsing():
    assert parse_tasks("rotation, color,rotation") == ("rotation", "colour")
    assert parse_epochs(None) == {"classification": 300, "rotation": 300, "colour": 300}  # the published
    assert EvaluationSettings().probe("rotation").epochs == 300
    assert parse_epochs("5") == {"classification": 5, "rotation": 5, "colour": 5}
    assert parse_epochs("rotation=20,colour=7") == {"classification": 300, "rotation": 20, "colour": 7}
    assert parse_epochs("color=7")["colour"] == 7
    with pytest.raises(ValueError, match=r"cannot read epochs '2,3' \(at '2'\): give N for every probe, or"):
        parse_epochs("2,3")
    for text in ("\u00b2", "rotation=\u00b2", ""):  # digits to str.isdigit, not to int(); nothing
        with pytest.raises(ValueError, match=r"cannot read epochs '.*' \(at '.*'\): give N for every probe"):
            parse_epochs(text)
    with pytest.raises(ValueError, match=r"name rotation more than once; give each task once"):
        parse_epochs("colour=2,rotation=3,rotation=4")


def test_evaluation_settings_refuse_nonsense(evaluated_sie_run):
    with pytest.raises(ValueError, match=r"^workers must be at least 0, got -1$"):
        EvaluationSettings(workers=-1)
    with pytest.raises(ValueError, match=r"^extract batch must be at least 1, got 0$"):
        EvaluationSettings(extract_batch=0)
    for name, value in (("hidden", 2**62), ("val_pairs", 2**62), ("samples_per_object", 10**20)):
        with pytest.raises(ValueError, match=rf"^probe {name} must be at most \d+, got {value}$"):
            EvaluationSettings(**{name: value})  # these overflowed inside NumPy or torch
    options = (["--lr", "-1"], ["--lr", "inf"], ["--lr", "nan"], ["--workers", "-2"], ["--seed", "-5"])
    for option in (
        *options,
        ["--seed", str(2**70)],
        ["--epochs", "rotation=999999999999"],
        ["--hidden", "65536"],
    ):
        result = _evaluate(evaluated_sie_run, *option)
        assert (
            result.exit_code == 1 and result.output.startswith("Error: ") and "Traceback" not in result.output
        ), (option, result.output)


def test_a_diverging_probe_stops_with_one_line_and_keeps_the_results(
    evaluated_sie_run, synthetic_dataset, tmp_path
):
    """Also on another dataset: the results of the run's own, copied aside, stay in results.json."""
    run, other = tmp_path / "run", tmp_path / "q50.h5"
    shutil.copytree(evaluated_sie_run, run)
    pack_dataset(synthetic_dataset.root, other, size=16, quality=50)
    before = (run / "results.json").read_bytes()
    for data in ([], ["--data", str(other)]):
        result = _evaluate(run, "--lr", "1e30", "--tasks", "rotation", *data)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert (
            f"Error: {run}: the rotation probe stopped: its head diverged (non-finite outputs); evaluate "
            in result.output
        )
        assert (run / "results.json").read_bytes() == before
    (copy,) = run.glob("results.*.json")
    assert copy.read_bytes() == before


def test_features_of_re_encoded_images_are_cached_apart_from_the_rendered_ones(
    evaluated_sie_run, synthetic_dataset, tmp_path
):
    """A pack re-encoded with --size is the same dataset for the leaderboard (same hash), but its pixels,
    hence its features, differ: they get a cache of their own; a plain pack shares the folder's."""
    run = tmp_path / "run"
    shutil.copytree(evaluated_sie_run, run)
    folder_key = json.loads((run / "results.json").read_text())["features"]["key"]
    plain, reencoded = tmp_path / "plain.h5", tmp_path / "q50.h5"
    pack_dataset(synthetic_dataset.root, plain)
    pack_dataset(synthetic_dataset.root, reencoded, size=16, quality=50)
    keys = {}
    for data in (plain, reencoded):
        result = _evaluate(run, "--data", str(data), "--tasks", "classification")
        assert result.exit_code == 0, result.output
        results = json.loads((run / "results.json").read_text())
        keys[data.name] = results["features"]["key"]
        assert (
            results["dataset"]["hash"]
            == dataset_identity(
                synthetic_dataset.root, *(open_dataset(synthetic_dataset.root, s) for s in ("train", "val"))
            )["hash"]
        )
    assert keys["plain.h5"] == folder_key and keys["q50.h5"] != folder_key
    rendered = np.load(run / "features" / folder_key / "val_representations.npy")
    assert not np.array_equal(
        np.load(run / "features" / keys["q50.h5"] / "val_representations.npy"), rendered
    )


def test_images_changed_in_place_are_extracted_again(evaluated_sie_run, synthetic_dataset, tmp_path):
    """The dataset hash leaves pixels out; the feature cache does not: an image re-encoded in place (the
    same objects, latents and manifest) gets the run new features and new scores, the old ones kept."""
    run, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(evaluated_sie_run, run)
    shutil.copytree(synthetic_dataset.root, data)
    first = _evaluate(run, "--data", str(data), "--tasks", "classification")
    assert first.exit_code == 0, first.output
    before = json.loads((run / "results.json").read_text())
    val = open_dataset(data, "val")
    image = val.view_path(0, 0)
    with Image.open(image) as opened:
        Image.fromarray(255 - np.asarray(opened)).save(image, quality=90)
    second = _evaluate(run, "--data", str(data), "--tasks", "classification")
    assert second.exit_code == 0, second.output
    after = json.loads((run / "results.json").read_text())
    assert after["dataset"]["hash"] == before["dataset"]["hash"]
    assert after["features"]["key"] != before["features"]["key"]
    assert "kept from" not in second.output
    assert (run / f"results.{before['features']['key']}.json").exists()
    changed = np.load(run / "features" / after["features"]["key"] / "val_representations.npy")
    cached = np.load(run / "features" / before["features"]["key"] / "val_representations.npy")
    assert not np.array_equal(changed[0, 0], cached[0, 0]) and np.array_equal(changed[1:], cached[1:])


def test_the_images_digest_reads_every_view_length_and_the_sampled_images(synthetic_dataset, tmp_path):
    """Outside the sampled objects only lengths are read: a view rewritten at another length changes the
    digest; a folder and its plain pack digest the same, a raw pack (pixels) another."""
    data, packed, raw = tmp_path / "data", tmp_path / "plain.h5", tmp_path / "raw.h5"
    shutil.copytree(synthetic_dataset.root, data)
    pack_dataset(data, packed)
    pack_dataset(data, raw, raw=True)
    splits = [open_dataset(data, split) for split in ("train", "val")]
    unsampled = evaluate_module.images_digest(*splits, objects=0)
    sampled = evaluate_module.images_digest(*splits)
    assert sampled == evaluate_module.images_digest(*(open_dataset(packed, s) for s in ("train", "val")))
    assert sampled != evaluate_module.images_digest(*(open_dataset(raw, s) for s in ("train", "val")))
    assert sampled != unsampled
    image = splits[0].view_path(2, 7)
    image.write_bytes(image.read_bytes() + b"\0")
    assert evaluate_module.images_digest(*splits, objects=0) != unsampled
    edited = tmp_path / "edited.h5"  # a raw pack has no lengths: its sampled pixels tell
    shutil.copyfile(raw, edited)
    with h5py.File(edited, "r+") as handle:
        handle["pixels"][:, 0, 0, 0] ^= 255
    raw_digest = evaluate_module.images_digest(*(open_dataset(raw, s) for s in ("train", "val")))
    assert evaluate_module.images_digest(*(open_dataset(edited, s) for s in ("train", "val"))) != raw_digest


def test_a_folder_and_its_packed_file_are_the_same_dataset(synthetic_dataset, official_dataset, tmp_path):
    packed = tmp_path / "ours.h5"
    pack_dataset(synthetic_dataset.root, packed)
    folder_identity = dataset_identity(
        synthetic_dataset.root, *(open_dataset(synthetic_dataset.root, split) for split in ("train", "val"))
    )
    packed_identity = dataset_identity(packed, *(open_dataset(packed, split) for split in ("train", "val")))
    assert packed_identity["hash"] == folder_identity["hash"]
    assert packed_identity["kind"] == "packed" and packed_identity["name"] == "ours"
    root = official_dataset.root
    other = dataset_identity(root, *(open_dataset(root, split) for split in ("train", "val")))
    assert other["hash"] != folder_identity["hash"] and other["name"] == "official"


def test_the_dataset_hash_covers_both_splits_and_leaves_package_versions_out(synthetic_dataset, tmp_path):
    """The probes train on the train split: one train object fewer is another dataset. The same rendering
    made with other package versions is the same one."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_dataset.root, root)
    train, val = (open_dataset(root, split) for split in ("train", "val"))
    reference = dataset_identity(root, train, val)["hash"]
    assert dataset_identity(root, subset(train, list(range(1, len(train)))), val)["hash"] != reference
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["versions"] = {**manifest.get("versions", {}), "bpy": "9.9.9"}
    (root / "manifest.json").write_text(json.dumps(manifest))
    assert dataset_identity(root, train, val)["hash"] == reference


@pytest.mark.parametrize("in_the_way", ["features", "results.json"])
def test_a_file_or_folder_in_the_way_of_the_evaluation_is_one_line(sie_run, tmp_path, in_the_way):
    """A file where the feature cache's folder belongs, or a folder where results.json belongs."""
    run = tmp_path / "run"
    shutil.copytree(sie_run, run, ignore=shutil.ignore_patterns("features", "results*.json"))
    (run / in_the_way).mkdir() if in_the_way == "results.json" else (run / in_the_way).write_text("")
    result = _evaluate(run, "--tasks", "classification")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert line.startswith(f"Error: {run / in_the_way}") and "the evaluation stopped" in line, line
    assert "move away the file or folder in the way" in line, line
