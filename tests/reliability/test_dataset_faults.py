"""Broken datasets: `3die check` names each problem; `3die train` refuses the dataset, or with
--skip-bad-objects trains without the bad objects and says how many it skipped.

The check of a truncated JPEG, a missing view and a latent of the wrong shape or out of range is also in
tests/render/test_check.py; the readers' own messages in tests/benchmark/test_data_readers.py.
"""

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.data import DatasetError, pack_dataset, training_split
from benchmark.train import read_checkpoint
from render import spec

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmark"))
from synthetic_data import write_dataset

TRAIN = ["--preset", "tiny", "--image-size", "16", "--batch-size", "2", "--epochs", "1", "--no-progress"]


@pytest.fixture
def dataset(tmp_path):
    """2 classes x (3 train + 1 val) objects, 4 views of 16 px, in our layout."""
    return write_dataset(tmp_path / "data", classes=2, train_per_class=3, val_per_class=1, views=4, size=16)


def break_dataset(dataset, damage: str) -> tuple[str, str]:
    """Damage the dataset; returns (the key `3die check` reports, the words it and training use)."""
    root, key = dataset.root, dataset.splits["train"][1]
    folder = root / key
    if damage == "truncated-jpeg":
        image = folder / spec.image_name(2)
        image.write_bytes(image.read_bytes()[:-50])
        return key, "image_2.jpg is truncated"
    if damage == "missing-view":
        (folder / spec.image_name(3)).unlink()
        return key, "image_3.jpg: missing"
    if damage == "latent-shape":
        np.save(folder / spec.latent_name(1), np.zeros((7, 2)))
        return key, "latent_1.npy: latent of shape (7, 2), expected (7,)"
    if damage == "latent-range":
        latent = np.load(folder / spec.latent_name(0))
        latent[spec.SPOT_THETA] = 9.0
        np.save(folder / spec.latent_name(0), latent)
        return key, "latent_0.npy: latent out of range: spot_theta=9"
    if damage == "duplicated-object":
        images = np.load(root / "train_images.npy")
        labels = np.load(root / "train_labels.npy")
        np.save(root / "train_images.npy", np.append(images, images[1]))
        np.save(root / "train_labels.npy", np.append(labels, labels[1]))
        return key, "listed 2 times in train_images.npy"
    raise ValueError(damage)


PER_OBJECT = ["truncated-jpeg", "missing-view", "latent-shape", "latent-range", "duplicated-object"]
#: Where training words it differently: it reads only the end of each JPEG, the check decodes it.
TRAINING_WORDS = {
    "duplicated-object": "listed more than once in train_images.npy",
    "truncated-jpeg": "image_2.jpg: cannot decode the image (truncated: no end-of-image marker)",
}
CHECK_WORDS = {
    "truncated-jpeg": "image_2.jpg does not decode (image file is truncated",
    "missing-view": "missing image_3.jpg",
    "latent-shape": "latent_1.npy has shape (7, 2), expected (7,)",
    "latent-range": "latent_0.npy out of range: spot_theta=9",
}


def train(data, out, *extra):
    arguments = ["train", "--method", "sie", "--data", str(data), "--out", str(out), *TRAIN, *extra]
    return CliRunner().invoke(main, arguments)


def check(root):
    result = CliRunner().invoke(main, ["check", str(root)])
    return result.exit_code, result.stdout.strip().splitlines()


def packed_row(handle: h5py.File, key: str) -> int:
    """The row of the object SYNSET/ID in an open packed file's arrays."""
    ids = [k.decode() if isinstance(k, bytes) else k for k in handle["object_ids"][()]]
    return ids.index(key.split("/")[1])


def error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


@pytest.mark.parametrize("damage", PER_OBJECT)
def test_a_bad_object_is_named_by_check_refused_by_train_and_skipped_on_request(dataset, tmp_path, damage):
    key, words = break_dataset(dataset, damage)
    status, lines = check(dataset.root)
    assert status == 1
    assert any(line.startswith(f"{key}: ") and CHECK_WORDS.get(damage, words) in line for line in lines), (
        lines
    )
    assert lines[-1].endswith("1 with problems")

    refused = train(dataset.root, tmp_path / "run")
    assert refused.exit_code == 1
    line = error_line(refused.output)
    assert f"1 of {len(dataset.splits['train']) + (damage == 'duplicated-object')} train objects" in line
    assert key in line and TRAINING_WORDS.get(damage, words) in line and "--skip-bad-objects" in line
    assert not (tmp_path / "run" / "checkpoints").exists(), "refused before the first step"

    said = []
    views = training_split(dataset.root, skip_bad_objects=True, echo=said.append)
    assert len(said) == 1 and "skipping 1 of" in said[0] and key in said[0]
    kept = [k for k in dataset.splits["train"] if k != key or damage == "duplicated-object"]
    assert views.keys == kept, "the bad object (or its second listing) is left out"
    views.images(len(views) - 1, (0, 3))  # what is kept reads


@pytest.mark.slow
def test_train_with_skip_bad_objects_says_how_many_it_skipped(dataset, tmp_path):
    key, _ = break_dataset(dataset, "truncated-jpeg")
    skipped = train(dataset.root, tmp_path / "run", "--skip-bad-objects")
    assert skipped.exit_code == 0, skipped.output
    first = dataset.root / key / "image_2.jpg"
    said = f"skipping 1 of 6 train objects, which cannot be used (first: {first}: cannot decode"
    assert said in skipped.output
    config = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["config"]
    assert config["dataset"]["objects"] == 5 and config["skip_bad_objects"] is True


def test_labels_longer_than_images_are_named_and_refused_even_with_skip(dataset, tmp_path):
    labels = np.load(dataset.root / "train_labels.npy")
    np.save(dataset.root / "train_labels.npy", np.append(labels, 0))
    status, lines = check(dataset.root)
    assert status == 1
    assert "train_labels.npy: 7 labels for 6 objects in train_images.npy (longer)" in lines[0], lines
    for extra in ((), ("--skip-bad-objects",)):
        line = error_line(train(dataset.root, tmp_path / "run", *extra).output)
        assert "train_labels.npy: 7 labels for 6 objects in train_images.npy (longer)" in line


def test_an_object_in_both_splits_is_named_by_check(dataset):
    images = np.load(dataset.root / "val_images.npy")
    np.save(dataset.root / "val_images.npy", np.append(images[:-1], f"/{dataset.splits['train'][0]}/"))
    status, lines = check(dataset.root)
    assert status == 1
    assert f"{dataset.splits['train'][0]}: listed in both train_images.npy and val_images.npy" in lines


def test_a_packed_file_with_bad_latents_is_refused_or_skipped(dataset, tmp_path):
    packed = tmp_path / "data.h5"
    pack_dataset(dataset.root, packed)
    with h5py.File(packed, "r+") as handle:
        row = packed_row(handle, dataset.splits["train"][2])
        handle["latents"][row, 1, spec.FLOOR_HUE] = -3.0
    with pytest.raises(
        DatasetError, match=r"1 of 6 train objects .*: latents view 1 out of range: floor_hue=-3"
    ):
        training_split(packed)
    said = []
    views = training_split(packed, skip_bad_objects=True, echo=said.append)
    assert len(views) == 5 and dataset.splits["train"][2] not in views.keys
    assert len(said) == 1 and "skipping 1 of 6 train objects" in said[0]
    assert views.latents(0).shape == (4, 7) and views.image(0, 0).shape == (16, 16, 3)


def test_a_packed_file_with_a_damaged_jpeg_is_refused_or_skipped(dataset, tmp_path):
    """The pre-training check reads each packed JPEG's start and end-of-image markers."""
    packed = tmp_path / "data.h5"
    pack_dataset(dataset.root, packed)
    key = dataset.splits["train"][4]
    with h5py.File(packed, "r+") as handle:
        row = packed_row(handle, key)
        end = handle["jpeg_offsets"][row, 3]  # the end of view 2: its end-of-image marker is overwritten
        handle["jpeg_bytes"][end - 2 : end] = 0
    with pytest.raises(
        DatasetError, match=rf"1 of 6 train objects .*{key}/image_2.jpg: .*no end-of-image marker"
    ):
        training_split(packed)
    views = training_split(packed, skip_bad_objects=True)
    assert len(views) == 5 and key not in views.keys


def test_a_clean_dataset_is_used_whole(dataset):
    views = training_split(dataset.root, workers=2)
    assert views.keys == dataset.splits["train"] and len(views) == 6


def test_the_check_split_between_processes_finds_what_one_process_finds(dataset):
    """Training processes each check their share of the objects and exchange what they found."""
    from benchmark.data.validate import find_bad_objects, open_unchecked

    for damage in ("truncated-jpeg", "missing-view", "duplicated-object"):
        break_dataset(dataset, damage)
    views = open_unchecked(dataset.root, "train")
    whole = find_bad_objects(views)
    assert sorted(whole) == [1, 6]  # object 1's files, and its second listing
    shares = [find_bad_objects(views, share=(rank, 3)) for rank in range(3)]
    assert 1 not in shares[0] and 1 in shares[1] and 1 not in shares[2]  # only its share reads its files
    union = {index: problem for found in shares for index, problem in found.items()}
    assert find_bad_objects(views, share=(1, 3), merge=lambda found: union) == whole


def test_3die_check_names_each_bad_object_of_a_packed_file(dataset, tmp_path):
    """The check training points to (`3die check FILE.h5`) reads packed files: latents, JPEG markers, and
    without --quick every JPEG decoded (a damaged middle keeps both markers)."""
    packed = tmp_path / "data.h5"
    pack_dataset(dataset.root, packed)
    out_of_range, bad_middle = dataset.splits["train"][2], dataset.splits["val"][0]
    with h5py.File(packed, "r+") as handle:
        handle["latents"][packed_row(handle, out_of_range), 1, spec.FLOOR_HUE] = -3.0
        start, end = handle["jpeg_offsets"][packed_row(handle, bad_middle), 2:4]
        handle["jpeg_bytes"][start + 20 : end - 2] = 0
    refused = train(packed, tmp_path / "run")
    assert f"run `3die check {packed}` for the full list" in error_line(refused.output)

    result = CliRunner().invoke(main, ["check", str(packed)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3, lines
    assert lines[0] == f"{packed}:{out_of_range}: latents view 1 out of range: floor_hue=-3"
    assert lines[1].startswith(f"{packed}:{bad_middle}/image_2.jpg: cannot decode the image")
    assert lines[2] == f"{packed}: 8 objects checked: 2 with problems"
    quick = CliRunner().invoke(main, ["check", "--quick", str(packed)])
    assert quick.exit_code == 1 and f"{packed}: 8 objects checked: 1 with problems" in quick.output
    foreign = tmp_path / "notes.h5"
    foreign.write_text("not HDF5")
    unreadable = CliRunner().invoke(main, ["check", str(foreign)])
    assert unreadable.exit_code == 1 and f"{foreign}: cannot open as HDF5" in error_line(unreadable.output)


def test_a_packed_object_with_non_finite_latents_is_skipped_on_request(dataset, tmp_path):
    packed = tmp_path / "data.h5"
    pack_dataset(dataset.root, packed)
    key = dataset.splits["train"][3]
    with h5py.File(packed, "r+") as handle:
        handle["latents"][packed_row(handle, key), 2, spec.SPOT_PHI] = np.nan
    with pytest.raises(DatasetError, match=rf"1 of 6 train objects .*{key}: latents holds non-finite values"):
        training_split(packed)
    said = []
    views = training_split(packed, skip_bad_objects=True, echo=said.append)
    assert len(views) == 5 and key not in views.keys and "skipping 1 of 6 train objects" in said[0]


def test_a_split_without_usable_objects_is_refused_with_one_line(dataset, tmp_path):
    for key in dataset.splits["train"]:
        (dataset.root / key / spec.image_name(1)).unlink()
    for extra in ((), ("--skip-bad-objects",)):
        refused = train(dataset.root, tmp_path / "run", *extra)
        assert refused.exit_code == 1
        line = error_line(refused.output)
        assert "6 of 6 train objects cannot be used" in line and "--skip-bad-objects" not in line
    np.save(dataset.root / "train_images.npy", np.array([], dtype="<U8"))
    np.save(dataset.root / "train_labels.npy", np.array([], dtype=np.int64))
    empty = train(dataset.root, tmp_path / "run")
    assert empty.exit_code == 1 and "the train split has no objects" in error_line(empty.output)
