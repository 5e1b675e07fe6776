"""Broken datasets: `3die check` names each problem; `3die train`, `3die pack` and `3die evaluate` refuse
the dataset, or with --skip-bad-objects train, pack or evaluate without the bad objects and say how many
they skipped (a packed file and results.json record them).

The check of a truncated JPEG, a missing view and a latent of the wrong shape or out of range is also in
tests/render/test_check.py; the readers' own messages in tests/benchmark/test_data_readers.py.
"""

import dataclasses
import json
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.data import DatasetError, open_dataset, pack_dataset, training_split
from benchmark.data.packed import open_packed, read_skipped_objects
from benchmark.evaluate.run import dataset_identity
from benchmark.leaderboard import read_rows
from benchmark.train import read_checkpoint
from render import spec
from render.check import check_dataset

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
        np.save(folder / spec.latent_name(1), np.zeros((spec.LATENT_DIM, 2)))
        return key, f"latent_1.npy: latent of shape ({spec.LATENT_DIM}, 2), expected ({spec.LATENT_DIM},)"
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
    "latent-shape": f"latent_1.npy has shape ({spec.LATENT_DIM}, 2), expected ({spec.LATENT_DIM},)",
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


@pytest.mark.parametrize("listed", ["/99999999/x/", "/../data/"])
def test_an_official_layout_object_outside_the_shapenet_synsets_is_one_line(tmp_path, listed):
    """Without manifest.json the classes are the 55 ShapeNet synsets: another synset (or a path) listed in
    the images file is named by training and packing, not raised from the synset table."""
    dataset = write_dataset(
        tmp_path / "data", classes=2, train_per_class=2, val_per_class=1, views=50, size=8, layout="official"
    )
    root = dataset.root
    for name, extra in (("train_images.npy", listed), ("train_labels.npy", 0)):
        np.save(root / name, np.append(np.load(root / name), extra))
    for command in (
        ["train", "--method", "sie", "--data", str(root), "--out", str(tmp_path / "run"), *TRAIN],
        ["pack", str(root), "--out", str(tmp_path / "d.h5")],
    ):
        line = error_line(CliRunner().invoke(main, command).output)
        assert (
            line.startswith(f"Error: {root / 'train_images.npy'}: ")
            and "not a ShapeNetCore v2 synset" in line
        )
    assert not (tmp_path / "run").exists() and not (tmp_path / "d.h5").exists()


def test_an_object_in_both_splits_is_named_and_kept_out_of_training(tmp_path):
    """The official layout has no objects.csv to catch it: a validation object also listed for training
    would be trained on. Check names it; training and packing refuse it, or leave its train listing out."""
    dataset = write_dataset(
        tmp_path / "data", classes=2, train_per_class=3, val_per_class=1, views=50, size=8, layout="official"
    )
    root, key = dataset.root, dataset.splits["train"][1]
    for name, extra in (("val_images.npy", f"/{key}/"), ("val_labels.npy", dataset.labels["train"][1])):
        np.save(root / name, np.append(np.load(root / name), extra))
    status, lines = check(root)
    assert status == 1 and any(
        f"{key}: listed in both train_images.npy and val_images.npy" in line for line in lines
    )
    both = f"{key}: listed in both train_images.npy and val_images.npy"
    assert f"1 of 6 train objects cannot be used (first: {both})" in error_line(
        train(root, tmp_path / "run").output
    )
    said = []
    assert key not in training_split(root, skip_bad_objects=True, echo=said.append).keys and len(said) == 1
    refused = CliRunner().invoke(main, ["pack", str(root), "--out", str(tmp_path / "d.h5")])
    assert "1 of 9 objects cannot be used" in error_line(refused.output)
    packed = CliRunner().invoke(
        main, ["pack", str(root), "--out", str(tmp_path / "d.h5"), "--skip-bad-objects"]
    )
    assert packed.exit_code == 0, packed.output
    assert (
        key not in open_packed(tmp_path / "d.h5", "train").keys
        and key in open_packed(tmp_path / "d.h5", "val").keys
    )
    val_key = next(k for k in dataset.splits["val"] if k.split("/")[0] == key.split("/")[0])
    with h5py.File(tmp_path / "d.h5", "r+") as handle:  # a train row renamed after a val object of its class
        handle["object_ids"][packed_row(handle, dataset.splits["train"][0])] = val_key.split("/")[1]
    words = f"{tmp_path / 'd.h5'}:{val_key}: listed in both the train split and the val split"
    assert words in error_line(train(tmp_path / "d.h5", tmp_path / "run").output)
    status, lines = check(tmp_path / "d.h5")
    assert status == 1 and lines.count(words) == 1, lines


@pytest.mark.parametrize("disagreement", ["label", "split"])
def test_split_files_that_disagree_with_objects_csv_are_named_and_refused_even_with_skip(
    dataset, tmp_path, disagreement
):
    """A label or split in the split files other than objects.csv's: a class learnt under another's label,
    or a validation object trained on. `3die check`, training and packing all name it."""
    key = dataset.splits["train"][1]
    if disagreement == "label":
        labels = np.load(dataset.root / "train_labels.npy")
        labels[1] = 1 - labels[1]
        np.save(dataset.root / "train_labels.npy", labels)
        checked = "train_labels.npy: 1 labels differ from objects.csv's"
    else:
        from render.manifest import read_objects_csv, write_objects_csv

        entries = read_objects_csv(dataset.root / spec.OBJECTS_CSV_NAME)
        moved = [
            dataclasses.replace(e, split="val") if f"{e.synset}/{e.object_id}" == key else e for e in entries
        ]
        write_objects_csv(dataset.root / spec.OBJECTS_CSV_NAME, moved)
        checked = f"{key}: listed in train_images.npy, but objects.csv puts it in the val split"
    status, lines = check(dataset.root)
    assert status == 1 and any(line.startswith(checked) for line in lines), lines
    for command in (
        train(dataset.root, tmp_path / "run", "--skip-bad-objects"),
        pack(dataset.root, tmp_path / "d.h5"),
    ):
        line = error_line(command.output)
        assert f"train_images.npy: {key} has label" in line and "in objects.csv; rerun `3die render`" in line
    assert not (tmp_path / "d.h5").exists()


def test_unreadable_object_and_class_folders_are_named_by_check_not_raised(dataset):
    """`3die check` is the command the other refusals point to: folders it may not list are problems it
    reports, one line each, never a traceback (run without root's permission override)."""
    import subprocess

    from faults import child_env, cli_command, obey_permissions

    root = dataset.root
    unreadable, execute_only = dataset.splits["train"][0], dataset.splits["train"][1]
    other_class = next(
        key for key in dataset.splits["train"] if key.split("/")[0] != unreadable.split("/")[0]
    )
    class_folder = root / other_class.split("/")[0]
    modes = {root / unreadable: 0o000, root / execute_only: 0o311, class_folder: 0o000}
    for folder, mode in modes.items():
        folder.chmod(mode)
    try:
        result = subprocess.run(
            cli_command("check", str(root)),
            capture_output=True,
            text=True,
            timeout=120,
            env=child_env(),
            preexec_fn=obey_permissions,
        )
    finally:
        for folder in modes:
            folder.chmod(0o755)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    listing = ": cannot list the folder (Permission denied); make it readable and check again"
    in_class = [
        key for key in dataset.splits["train"] + dataset.splits["val"] if key.startswith(class_folder.name)
    ]
    for key in [unreadable, execute_only, *in_class]:
        assert f"{key}{listing}" in lines, (key, lines)
    assert check(root) == (0, [f"{root}: 8 objects, 32 images checked: OK"]), "readable again: whole"


def test_a_lost_manifest_is_named_not_read_as_the_official_download(dataset, tmp_path):
    (dataset.root / spec.MANIFEST_NAME).unlink()
    lost = (
        f"{dataset.root / spec.MANIFEST_NAME}: missing, although objects.csv says 3die rendered this folder"
    )
    status, lines = check(dataset.root)
    assert status == 1 and len(lines) == 2 and lines[0].startswith(f"{spec.MANIFEST_NAME}: {lost}"), lines
    assert "restore it, or rerun `3die render` into this folder" in lines[0]
    for command in (train(dataset.root, tmp_path / "run"), pack(dataset.root, tmp_path / "d.h5")):
        assert error_line(command.output).startswith(f"Error: {lost}")


def test_an_object_in_both_splits_of_our_layout_is_named_by_check(dataset):
    images = np.load(dataset.root / "val_images.npy")
    np.save(dataset.root / "val_images.npy", np.append(images[:-1], f"/{dataset.splits['train'][0]}/"))
    status, lines = check(dataset.root)
    assert status == 1
    key = dataset.splits["train"][0]
    (line,) = [line for line in lines if line.startswith(f"{key}: ")]
    assert "listed in both train_images.npy and val_images.npy" in line
    assert "listed in val_images.npy, but objects.csv puts it in the train split" in line


def test_an_in_distribution_angle_in_an_ood_dataset_is_refused_folder_and_packed(tmp_path):
    ood = write_dataset(tmp_path / "ood", classes=2, train_per_class=2, views=3, size=16, rotation="ood")
    assert len(training_split(ood.root)) == 4 and len(training_split(ood.root, "val")) == 2
    key = ood.splits["train"][1]
    latent = np.load(ood.root / key / spec.latent_name(2))
    latent[1] = 0.3  # rot_y inside (-pi/2, pi/2): a published-range angle, outside the ood range
    np.save(ood.root / key / spec.latent_name(2), latent)
    expected = "rot_y=0.3 (the ood range of the Euler angles is [-pi, -pi/2] U [pi/2, pi])"
    with pytest.raises(DatasetError, match=re.escape(f"latent_2.npy: latent out of range: {expected}")):
        training_split(ood.root)
    packed = tmp_path / "ood.h5"
    pack_dataset(ood.root, packed, skip_bad_objects=True)
    with h5py.File(packed, "r+") as handle:  # the same angle in a packed file
        handle["latents"][packed_row(handle, ood.splits["train"][0]), 0, 0] = -0.3
    with pytest.raises(DatasetError, match=re.escape("latents view 0 out of range: rot_x=-0.3 (the ood")):
        training_split(packed)


def test_the_official_ood_download_is_read_with_the_ood_range_folder_and_packed(tmp_path):
    """Without manifest.json the rotation range comes from the first object's latents: the 3DIEBench-OOD
    download (every angle outside [-pi/2, pi/2]) is not a dataset of out-of-range latents."""
    ood = write_dataset(tmp_path / "ood", classes=2, views=50, size=16, layout="official", rotation="ood")
    assert not (ood.root / spec.MANIFEST_NAME).exists()
    assert len(training_split(ood.root)) == 6
    assert check_dataset(ood.root).ok
    pack_dataset(ood.root, tmp_path / "ood.h5")
    assert len(training_split(tmp_path / "ood.h5")) == 6
    first = ood.splits["train"][0]  # the range comes from the first object whose latent_0.npy tells it
    (ood.root / first / spec.latent_name(0)).unlink()
    report = check_dataset(ood.root)
    assert list(report.problems) == [first] and "latent_0.npy" in report.problems[first][0]
    with pytest.raises(DatasetError, match=re.escape(f"{first}/latent_0.npy: missing")):
        training_split(ood.root)
    np.save(ood.root / first / spec.latent_name(0), np.load(ood.root / first / spec.latent_name(1)))
    key = ood.splits["train"][2]
    latent = np.load(ood.root / key / spec.latent_name(7))
    latent[2] = -0.2  # a published-range angle among ood ones
    np.save(ood.root / key / spec.latent_name(7), latent)
    expected = "rot_z=-0.2 (the ood range of the Euler angles is [-pi, -pi/2] U [pi/2, pi])"
    with pytest.raises(DatasetError, match=re.escape(f"latent_7.npy: latent out of range: {expected}")):
        training_split(ood.root)
    assert f"latent_7.npy out of range: {expected}" in check_dataset(ood.root).problems[key][0]


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
    assert views.latents(0).shape == (4, spec.LATENT_DIM) and views.image(0, 0).shape == (16, 16, 3)


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


@pytest.mark.parametrize("kind", ["folder", "packed"])
def test_a_jpeg_damaged_inside_stops_training_with_the_way_on_for_a_folder_or_a_packed_file(
    dataset, tmp_path, kind
):
    """The check before training reads each JPEG's markers only: an image damaged between them stops the
    run when it is decoded, with the way on for what the data is (a packed file is packed again)."""
    key = dataset.splits["train"][2]
    data = dataset.root
    if kind == "packed":
        data = tmp_path / "data.h5"
        pack_dataset(dataset.root, data)
        with h5py.File(data, "r+") as handle:
            row = packed_row(handle, key)
            start, end = handle["jpeg_offsets"][row, 1], handle["jpeg_offsets"][row, 2]
            handle["jpeg_bytes"][start + 20 : end - 2] = 0  # view 1, its markers kept
        assert check(data)[0] == 1
    else:
        image = data / key / spec.image_name(1)
        raw = image.read_bytes()
        image.write_bytes(raw[:20] + bytes(len(raw) - 22) + raw[-2:])
    result = train(data, tmp_path / "run")
    line = error_line(result.output)
    assert result.exit_code == 1 and "image_1.jpg: cannot decode the image" in line and key in line
    mend = "pack its folder again once they are rerendered" if kind == "packed" else "rerender those objects"
    assert line.endswith(
        f"run `3die check {data}` to list every damaged image, {mend}, and rerun to resume (the checkpoints "
        "are kept); a run resumes only on the objects it trained on, so training without them "
        "(--skip-bad-objects) needs a new --out"
    )
    assert "BytesIO" not in line


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


def test_an_object_without_its_completion_marker_is_refused_or_skipped(dataset):
    """In a folder with manifest.json an object without the marker `3die render` writes last was cut short
    while rendered, even when every view file is there."""
    from render.writer import COMPLETE_MARKER

    key = dataset.splits["train"][1]
    (dataset.root / key / COMPLETE_MARKER).unlink()
    with pytest.raises(DatasetError) as refused:
        training_split(dataset.root)
    assert (
        f"1 of 6 train objects cannot be used (first: {dataset.root / key}: incomplete, no completion "
        "marker" in str(refused.value)
    )
    views = training_split(dataset.root, skip_bad_objects=True, echo=lambda line: None)
    assert views.keys == [k for k in dataset.splits["train"] if k != key]


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
    assert error_line(unreadable.output).endswith("give a dataset folder or a file written by `3die pack`")


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


# --- 3die pack: the same check, the bad objects left out of the file on request ---------------------------
def pack(root, out, *extra):
    return CliRunner().invoke(main, ["pack", str(root), "--out", str(out), *extra])


def folder_rows(dataset, split: str, left_out: set[str]) -> tuple[list[str], list[int]]:
    """The keys and labels of the folder's split without the objects `left_out`."""
    pairs = zip(dataset.splits[split], dataset.labels[split], strict=True)
    kept = [(key, label) for key, label in pairs if key not in left_out]
    return [key for key, _ in kept], [label for _, label in kept]


def identity(path):
    """The dataset identity (name, hash, size) that `3die evaluate` writes and leaderboards key rows by."""
    return dataset_identity(path, open_dataset(path, "train"), open_dataset(path, "val"))


@pytest.mark.parametrize("damage", PER_OBJECT)
def test_pack_refuses_a_bad_object_naming_the_flag_and_leaves_it_out_on_request(dataset, tmp_path, damage):
    key, words = break_dataset(dataset, damage)
    out = tmp_path / "data.h5"
    listed = 8 + (damage == "duplicated-object")
    refused = pack(dataset.root, out)
    assert refused.exit_code == 1
    line = error_line(refused.output)
    assert f"{dataset.root}: 1 of {listed} objects cannot be used (first: " in line and key in line
    assert TRAINING_WORDS.get(damage, words) in line and "pack without them with --skip-bad-objects" in line
    assert not out.exists() and not out.with_name("data.h5.partial").exists()

    packed = pack(dataset.root, out, "--skip-bad-objects")
    assert packed.exit_code == 0, packed.output
    said = [line for line in packed.output.splitlines() if "skipping" in line]
    assert len(said) == 1, packed.output
    assert said[0].startswith(
        f"{dataset.root}: skipping 1 of {listed} objects, which cannot be used (first: "
    )
    assert key in said[0] and said[0].endswith(f"; {out} lists them (skipped_objects)")
    with h5py.File(out) as handle:
        assert list(handle["skipped_objects"].asstr()[()]) == [key]
        assert list(handle["skipped_split"].asstr()[()]) == ["train"]
        (problem,) = handle["skipped_problems"].asstr()[()]
    assert TRAINING_WORDS.get(damage, words) in problem
    left_out = set() if damage == "duplicated-object" else {key}  # its first listing stays
    for split in ("train", "val"):
        views = open_dataset(out, split)
        keys, labels = folder_rows(dataset, split, left_out)
        assert views.keys == keys and views.labels.tolist() == labels
        np.testing.assert_array_equal(views.all_latents(), np.stack([dataset.latents[k] for k in keys]))
    status, lines = check(out)
    objects = 8 - len(left_out)
    assert status == 0 and lines == [
        f"{out}: {objects} objects checked: 0 with problems (left out when packed, unusable: 1, see "
        "skipped_objects)"
    ]
    views = training_split(out)
    assert len(views) == objects - 2 and views.images(0, (0, 3))[1].shape == (16, 16, 3)


def test_datasets_of_the_same_objects_with_other_latents_hash_apart(tmp_path):
    """Without manifest.json only the latents tell a re-rendered official download from the first: a
    cached evaluation of one must not be reused for the other."""
    first = write_dataset(tmp_path / "a", classes=2, views=50, size=16, layout="official", seed=4)
    second = write_dataset(tmp_path / "b", classes=2, views=50, size=16, layout="official", seed=4)
    assert identity(first.root)["hash"] == identity(second.root)["hash"]
    key = second.splits["val"][-1]  # the last object of a split is always in the hashed sample
    latent = np.load(second.root / key / spec.latent_name(30))
    latent[spec.FLOOR_HUE] = (latent[spec.FLOOR_HUE] + 0.25) % 1.0
    np.save(second.root / key / spec.latent_name(30), latent)
    assert identity(first.root)["hash"] != identity(second.root)["hash"]


def test_a_pack_without_bad_objects_records_them_hashes_apart_from_the_folder_and_trains(dataset, tmp_path):
    whole = tmp_path / "whole.h5"
    pack_dataset(dataset.root, whole)
    folder_hash = identity(dataset.root)["hash"]
    assert identity(whole)["hash"] == folder_hash and read_skipped_objects(whole) == []
    train_keys, val_keys = dataset.splits["train"], dataset.splits["val"]
    truncated = dataset.root / train_keys[1] / spec.image_name(2)
    truncated.write_bytes(truncated.read_bytes()[:-50])
    (dataset.root / val_keys[0] / spec.image_name(3)).unlink()
    np.save(dataset.root / train_keys[4] / spec.latent_name(1), np.zeros((spec.LATENT_DIM, 2)))

    out = tmp_path / "data.h5"
    said = []
    summary = pack_dataset(dataset.root, out, skip_bad_objects=True, echo=said.append)
    skipped = [("train", train_keys[1]), ("train", train_keys[4]), ("val", val_keys[0])]
    assert [(entry.split, entry.key) for entry in summary.skipped] == skipped
    assert (
        summary.skipped[0].problem
        == f"{truncated}: cannot decode the image (truncated: no end-of-image marker)"
    )
    assert read_skipped_objects(out) == list(summary.skipped) and summary.objects == 5
    first = summary.skipped[0].problem
    assert said == [
        f"{dataset.root}: skipping 3 of 8 objects, which cannot be used (first: {first}); "
        f"{out} lists them (skipped_objects)"
    ]
    packed = identity(out)
    assert packed["objects"] == {"train": 4, "val": 1}
    assert packed["hash"] != folder_hash, "a leaderboard row must not claim the whole dataset"

    trained = train(out, tmp_path / "run")
    assert trained.exit_code == 0, trained.output
    assert "skipping" not in trained.output, "the file holds only usable objects"
    config = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["config"]
    assert config["dataset"]["objects"] == 4 and config["dataset"]["kind"] == "packed"


def test_pack_refuses_a_split_without_usable_objects_even_with_skip(dataset, tmp_path):
    for key in dataset.splits["val"]:
        (dataset.root / key / spec.latent_name(0)).unlink()
    for extra in ((), ("--skip-bad-objects",)):
        refused = pack(dataset.root, tmp_path / "data.h5", *extra)
        assert refused.exit_code == 1
        line = error_line(refused.output)
        assert "2 of 8 objects (every val object) cannot be used" in line and "latent_0.npy: missing" in line
        assert "--skip-bad-objects" not in line and not (tmp_path / "data.h5").exists()


@pytest.mark.parametrize("storage", [(), ("--raw",), ("copy",)])
def test_a_jpeg_damaged_inside_stops_a_pack_which_goes_on_without_it(dataset, tmp_path, storage):
    """The check before packing reads each JPEG's markers only; every pack decodes every view (re-encoding
    with --size, storing pixels with --raw, or checking a JPEG it copies as it is), so no pack holds an
    image training cannot decode. The error's way on (delete the file, rerun with --skip-bad-objects)
    keeps what was packed."""
    size = None if storage == ("copy",) else 8
    storage = () if storage == ("copy",) else storage
    sizing = ("--size", "8") if size else ()
    key = dataset.splits["train"][3]
    damaged = dataset.root / key / spec.image_name(1)
    data = damaged.read_bytes()
    damaged.write_bytes(data[:20] + bytes(len(data) - 22) + data[-2:])
    out = tmp_path / "data.h5"
    stopped = pack(dataset.root, out, *sizing, *storage)
    assert stopped.exit_code == 1
    line = error_line(stopped.output)
    assert f"{damaged}: cannot decode the image" in line and f"run `3die check {dataset.root}`" in line
    assert "delete the damaged files and rerun with --skip-bad-objects" in line
    with h5py.File(out.with_name("data.h5.partial")) as handle:
        assert handle["packed"][()].tolist() == [True] * 3 + [False] * 5

    damaged.unlink()
    resumed = pack(dataset.root, out, *sizing, *storage, "--skip-bad-objects")
    assert resumed.exit_code == 0, resumed.output
    assert f"skipping 1 of 8 objects, which cannot be used (first: {damaged}: missing)" in resumed.output
    assert f"{out}: 7 objects" in resumed.output and "3 already packed" in resumed.output
    fresh = tmp_path / "fresh.h5"
    pack_dataset(dataset.root, fresh, size=size, raw=bool(storage), skip_bad_objects=True)
    images = ("pixels",) if storage else ("jpeg_bytes", "jpeg_offsets")
    with h5py.File(out) as carried, h5py.File(fresh) as expected:
        for name in (*images, "latents", "labels", "object_ids", "skipped_objects"):
            np.testing.assert_array_equal(carried[name][()], expected[name][()])


# --- 3die evaluate and 3die benchmark: the same check, the bad objects left out of the evaluation -------
EVALUATE = ["--epochs", "1", "--hidden", "8", "--val-pairs", "1", "--batch-size", "8", "--device", "cpu"]


def evaluate(run, *extra):
    return CliRunner().invoke(main, ["evaluate", str(run), *EVALUATE, "--no-progress", *extra])


def truncate_a_train_and_a_val_object(dataset) -> list[tuple[str, str, Path]]:
    """Truncate view 2 of train object 1 and of val object 0; (split, key, damaged file) of each."""
    damaged = []
    for split, key in (("train", dataset.splits["train"][1]), ("val", dataset.splits["val"][0])):
        image = dataset.root / key / spec.image_name(2)
        image.write_bytes(image.read_bytes()[:-50])
        damaged.append((split, key, image))
    return damaged


def results_of(run: Path, name: str = "results.json") -> dict:
    return json.loads((run / name).read_text())


@pytest.mark.slow
def test_evaluate_refuses_bad_objects_or_scores_without_them_recording_them_and_hashing_what_it_scored(
    dataset, tmp_path
):
    run = tmp_path / "run"
    assert train(dataset.root, run).exit_code == 0
    assert evaluate(run).exit_code == 0
    whole = results_of(run)
    damaged = truncate_a_train_and_a_val_object(dataset)
    truncated = "cannot decode the image (truncated: no end-of-image marker)"
    problems = [f"{image}: {truncated}" for *_, image in damaged]

    refused = evaluate(run)
    assert refused.exit_code == 1
    assert error_line(refused.output) == (
        f"Error: {dataset.root}: 2 of 8 objects cannot be used (first: {problems[0]}); run `3die check "
        f"{dataset.root}` for the full list, repair the dataset (rerun `3die render`) or evaluate without "
        "them with --skip-bad-objects"
    )
    assert results_of(run) == whole, "the refusal keeps the results already there"

    skipped = evaluate(run, "--skip-bad-objects")
    assert skipped.exit_code == 0, skipped.output
    assert (
        f"{dataset.root}: skipping 1 of 6 train and 1 of 2 val objects, which cannot be used (first: "
        f"{problems[0]}); {run / 'results.json'} lists them (dataset.skipped_objects)"
    ) in skipped.output.splitlines()
    results = results_of(run)
    assert set(results["metrics"]) == {"classification", "rotation", "colour", "retrieval"}
    assert results["dataset"]["skipped_objects"] == [
        {"split": split, "object": key, "problem": problem}
        for (split, key, _), problem in zip(damaged, problems, strict=True)
    ]
    assert results["dataset"]["objects"] == {"train": 5, "val": 1}
    assert whole["dataset"]["skipped_objects"] == []
    assert results["dataset"]["hash"] != whole["dataset"]["hash"], "the hash describes the objects scored"
    packed = tmp_path / "data.h5"
    pack_dataset(dataset.root, packed, skip_bad_objects=True)
    assert identity(packed)["hash"] == results["dataset"]["hash"], "as the file packed without them"

    features_key, whole_key = results["features"]["key"], whole["features"]["key"]
    assert features_key != whole_key, "features extracted from the whole folder are not reused"
    features = run / "features" / features_key
    left_out = {key for _, key, _ in damaged}
    for split, count in (("train", 5), ("val", 1)):
        assert np.load(features / f"{split}_representations.npy").shape[:2] == (count, 4)
        labels = folder_rows(dataset, split, left_out)[1]
        assert np.load(features / f"{split}_labels.npy").tolist() == labels
    assert np.load(run / "features" / whole_key / "val_representations.npy").shape[:2] == (2, 4)
    assert results_of(run, f"results.{whole_key}.json") == whole, "the whole folder's results moved aside"

    board = tmp_path / "board.csv"
    listed = CliRunner().invoke(main, ["leaderboard", str(run), "--out", str(board)])
    assert listed.exit_code == 0, listed.output
    assert [row["dataset_hash"] for row in read_rows(board)] == [results["dataset"]["hash"]]


@pytest.mark.slow
def test_a_jpeg_damaged_inside_stops_evaluation_saying_how_to_go_on(dataset, tmp_path):
    """The check before evaluating reads each JPEG's markers only; feature extraction decodes every view."""
    run = tmp_path / "run"
    assert train(dataset.root, run).exit_code == 0
    damaged = dataset.root / dataset.splits["val"][1] / spec.image_name(1)
    data = damaged.read_bytes()
    damaged.write_bytes(data[:20] + bytes(len(data) - 22) + data[-2:])
    stopped = evaluate(run, "--tasks", "classification")
    assert stopped.exit_code == 1
    line = error_line(stopped.output)
    assert f"{damaged}: cannot decode the image" in line and f"run `3die check {dataset.root}`" in line
    assert line.endswith("delete the damaged files and rerun with --skip-bad-objects")

    damaged.unlink()
    resumed = evaluate(run, "--tasks", "classification", "--skip-bad-objects")
    assert resumed.exit_code == 0, resumed.output
    assert f"skipping 1 of 2 val objects, which cannot be used (first: {damaged}: missing)" in resumed.output
    assert results_of(run)["dataset"]["objects"] == {"train": 6, "val": 1}


@pytest.mark.slow
def test_benchmark_with_skip_bad_objects_trains_and_evaluates_without_them(dataset, tmp_path):
    """A run trained without the bad objects and evaluated on the same folder: the leaderboard row carries
    the hash of the objects evaluated, not the whole folder's."""
    truncate_a_train_and_a_val_object(dataset)
    options = ["--preset", "tiny", "--image-size", "16", "--batch-size", "2", "--epochs", "1"]
    options += ["--probe-epochs", "1", "--device", "cpu", "--no-progress", "--data", str(dataset.root)]
    arguments = ["benchmark", "--method", "sie", *options, "--out", str(tmp_path)]
    refused = CliRunner().invoke(main, arguments)
    assert refused.exit_code == 1 and "--skip-bad-objects" in error_line(refused.output)

    benchmarked = CliRunner().invoke(main, [*arguments, "--skip-bad-objects"])
    assert benchmarked.exit_code == 0, benchmarked.output
    assert "skipping 1 of 6 train objects, which cannot be used" in benchmarked.output  # training
    assert "skipping 1 of 6 train and 1 of 2 val objects, which cannot be used" in benchmarked.output
    run = tmp_path / "runs" / f"sie-tiny-{dataset.root.name}-s0-batch_size=2_image_size=16"
    results = results_of(run)
    assert len(results["dataset"]["skipped_objects"]) == 2
    (row,) = read_rows(tmp_path / "leaderboard.csv")
    assert row["dataset_hash"] == results["dataset"]["hash"] != identity(dataset.root)["hash"]


@pytest.mark.parametrize("views", [None, 0, 1.5, "6", True, "absent", "newer format"])
def test_a_manifest_with_a_damaged_view_count_is_one_line_for_train_and_pack(dataset, tmp_path, views):
    manifest_path = dataset.root / spec.MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    if views == "absent":
        del manifest["settings"]
    elif views == "newer format":
        manifest["format"] = "3die-dataset/2"
    else:
        manifest["settings"]["views"] = views
    manifest_path.write_text(json.dumps(manifest))
    commands = (
        ["train", "--method", "vicreg", "--data", str(dataset.root), "--out", str(tmp_path / "run")],
        ["pack", str(dataset.root), "--out", str(tmp_path / "d.h5")],
    )
    for command in commands:
        result = CliRunner().invoke(
            main, [*command, "--preset", "tiny"] if command[0] == "train" else command
        )
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert line.startswith(f"Error: {manifest_path}: "), line
        if views == "newer format":
            assert "dataset format '3die-dataset/2', and this version of 3die reads '3die-dataset/1'" in line
        else:
            assert "settings.views is" in line and "damaged" in line, line
    assert not (tmp_path / "run").exists() and not (tmp_path / "d.h5").exists()


def test_training_on_one_view_per_object_is_refused_before_the_run_folder_is_made(tmp_path):
    one_view = write_dataset(
        tmp_path / "one", classes=2, train_per_class=3, val_per_class=1, views=1, size=16
    )
    for data in (one_view.root, pack_dataset(one_view.root, tmp_path / "one.h5").path):
        arguments = ["train", "--method", "vicreg", "--data", str(data), "--out", str(tmp_path / "run")]
        result = CliRunner().invoke(main, [*arguments, *TRAIN])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert f"Error: {data}: 1 view per object; training pairs two distinct views" in result.output
        assert not (tmp_path / "run").exists()


def test_a_run_and_a_dataset_never_share_a_folder(tmp_path):
    """Training into a dataset folder, or rendering into a run folder, is refused before writing anything."""
    dataset = write_dataset(
        tmp_path / "data", classes=1, train_per_class=2, val_per_class=0, views=2, size=16
    )
    before = sorted(path.relative_to(dataset.root) for path in dataset.root.rglob("*"))
    train = ["train", "--method", "vicreg", "--data", str(dataset.root), "--out", str(dataset.root)]
    result = CliRunner().invoke(main, [*train, "--preset", "tiny"])
    assert result.exit_code == 1 and result.output.strip() == (
        f"Error: {dataset.root}: is a dataset folder; give --out a run folder of its own, outside any dataset"
    )
    inside = dataset.root / dataset.splits["train"][0].split("/")[0] / "run"  # `3die check` would flag it
    result = CliRunner().invoke(main, [*train[:-1], str(inside), "--preset", "tiny"])
    assert result.exit_code == 1 and result.output.strip() == (
        f"Error: {inside}: is inside the dataset folder {dataset.root}; give --out a run folder of its own, "
        "outside any dataset"
    )
    assert sorted(path.relative_to(dataset.root) for path in dataset.root.rglob("*")) == before
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    render = ["render", "--out", str(run), "--classes", "mug", "--per-class", "1", "--views", "1"]
    result = CliRunner().invoke(main, [*render, "--size", "8", "--quality", "draft"])
    assert result.exit_code == 1 and result.output.strip() == (
        f"Error: {run}: is a training run folder (checkpoints/, config.json); render into a folder of its own"
    )
    assert sorted(path.name for path in run.iterdir()) == ["checkpoints", "config.json"]
