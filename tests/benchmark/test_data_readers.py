"""Dataset folder readers: our layout and the official download give one interface; bad files are named."""

import re
import shutil

import numpy as np
import pytest
from synthetic_data import write_dataset
from torch.utils.data import DataLoader

from benchmark.data import (
    DatasetError,
    FolderViews,
    ViewPairs,
    open_dataset,
    training_split,
    worker_error_line,
)
from render import spec


def test_our_folder_reads_splits_labels_classes_and_latents(synthetic_dataset):
    for split in ("train", "val"):
        views = open_dataset(synthetic_dataset.root, split)
        assert isinstance(views, FolderViews)
        assert views.keys == synthetic_dataset.splits[split]
        assert views.labels.dtype == np.int64
        assert views.labels.tolist() == synthetic_dataset.labels[split]
        assert views.views == 50
        assert [c.label for c in views.classes] == [0, 1, 2]
        assert views.num_classes == 3
        expected = np.stack([synthetic_dataset.latents[key] for key in views.keys])
        np.testing.assert_array_equal(views.all_latents(), expected)
    image = views.image(0, 3)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert views.image(0, 3, size=16).shape == (16, 16, 3)
    assert not np.array_equal(views.image(0, 3), views.image(0, 4)), "the image follows the latent"


def test_official_download_layout_uses_shapenet_labels_and_55_classes(official_dataset):
    views = open_dataset(official_dataset.root, "train")
    assert views.keys == official_dataset.splits["train"]
    # ShapeNet labels (bag is class 2), not positions among the dataset's two classes
    assert views.labels.tolist() == official_dataset.labels["train"] == [0, 0, 2, 2]
    assert views.num_classes == 55
    assert views.classes[0].synset == "02691156" and views.classes[0].name == "airplane"
    np.testing.assert_array_equal(views.latents(2), official_dataset.latents[views.keys[2]])


def test_a_folder_without_manifest_whose_labels_are_not_the_synsets_is_refused(official_dataset, tmp_path):
    """Labels 0/1 of two classes (as a 3die render writes them) without manifest.json would be read as
    ShapeNet's airplane and ashcan: scored against the wrong classes, silently."""
    root = tmp_path / "copy"
    shutil.copytree(official_dataset.root, root)
    labels = np.load(root / "train_labels.npy")
    np.save(root / "train_labels.npy", np.where(labels == 2, 1, labels))
    key = official_dataset.splits["train"][2]
    with pytest.raises(
        DatasetError, match=rf"train_labels.npy: {key} has label 1, but without manifest.json"
    ):
        open_dataset(root, "train")
    with pytest.raises(DatasetError, match=r"has label 1, but without manifest.json"):
        training_split(root, "train")


def test_the_official_download_without_split_files_gets_the_published_split(tmp_path):
    """The 3DIEBench archive holds only SYNSET/OBJECT_ID folders: objects of the official validation list
    are "val", the others "train", labelled by ShapeNet synset; `3die pack` and training read it too."""
    from benchmark.data import pack_dataset, training_split
    from render.manifest import read_official_val

    dataset = write_dataset(
        tmp_path / "ds", classes=2, train_per_class=2, val_per_class=1, views=50, size=8, layout="official"
    )
    root = dataset.root
    for path in root.glob("*.npy"):
        path.unlink()
    official = {entry.synset: entry.object_id for entry in reversed(read_official_val())}
    renamed = []
    for key in dataset.splits["val"]:  # the val objects take ids of the official validation list
        synset = key.split("/")[0]
        (root / key).rename(root / synset / official[synset])
        renamed.append(f"{synset}/{official[synset]}")
    (root / "LICENSE").write_text("the archive's licence file")
    train, val = open_dataset(root, "train"), open_dataset(root, "val")
    assert train.keys == sorted(dataset.splits["train"]) and val.keys == sorted(renamed)
    assert train.labels.tolist() == [0, 0, 2, 2] and val.labels.tolist() == [0, 2]
    assert train.num_classes == 55 and train.views == 50
    np.testing.assert_array_equal(train.latents(3), dataset.latents[train.keys[3]])
    assert training_split(root).keys == train.keys
    packed = pack_dataset(root, tmp_path / "official.h5").path
    assert open_dataset(packed, "val").keys == val.keys and open_dataset(packed, "train").keys == train.keys
    np.save(root / "val_images.npy", np.array([f"/{dataset.splits['train'][0]}/"]))  # a given list wins
    assert open_dataset(root, "train").keys == sorted(dataset.splits["train"][1:] + renamed)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        DatasetError, match=r"empty: not a rendered dataset \(no manifest.json, no train_images"
    ):
        open_dataset(empty)


@pytest.fixture
def small(tmp_path):
    return write_dataset(tmp_path / "ds", classes=2, train_per_class=2, val_per_class=1, views=4, size=16)


def test_wrong_latent_shape_is_named_on_open(small):
    first = small.root / small.splits["train"][0] / spec.latent_name(0)
    np.save(first, np.zeros(6))
    with pytest.raises(DatasetError, match=re.escape(str(first)) + r": latent of shape \(6,\)"):
        open_dataset(small.root)


def test_wrong_latent_shape_of_a_later_view_is_named_when_read(small):
    later = small.root / small.splits["train"][1] / spec.latent_name(2)
    np.save(later, np.zeros((7, 1)))
    views = open_dataset(small.root)
    with pytest.raises(DatasetError, match=re.escape(str(later)) + r": latent of shape \(7, 1\)"):
        views.latent(1, 2)


def test_missing_view_is_named_on_open(small):
    folder = small.root / small.splits["train"][1]
    (folder / spec.image_name(2)).unlink()
    expected = re.escape(str(folder)) + r": missing 1 of 8 view files \(image_2.jpg\)"
    with pytest.raises(DatasetError, match=expected):
        open_dataset(small.root)


def test_missing_object_folder_is_named(small):
    folder = small.root / small.splits["val"][0]
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    with pytest.raises(DatasetError, match=re.escape(str(folder)) + r": missing"):
        open_dataset(small.root, "val")


def test_labels_file_longer_than_images_file_is_named(small):
    labels = small.root / "train_labels.npy"
    np.save(labels, np.array([*small.labels["train"], 0], dtype=np.int64))
    expected = re.escape(str(labels)) + r": 5 labels for 4 objects in train_images.npy \(longer\)"
    with pytest.raises(DatasetError, match=expected):
        open_dataset(small.root)


def test_missing_split_file_and_missing_folder_are_named(small, tmp_path):
    (small.root / "val_images.npy").unlink()
    with pytest.raises(DatasetError, match=r"val_images.npy: missing"):
        open_dataset(small.root, "val")
    with pytest.raises(DatasetError, match="no such dataset folder or packed file"):
        open_dataset(tmp_path / "nowhere")


def test_a_folder_that_is_not_a_rendered_dataset_says_what_to_give(tmp_path):
    """Source folders given to --data by mistake: models (`3die objects`, ShapeNet) or anything else."""
    from render.procedural.export import export_library

    models = tmp_path / "models"
    export_library(models, ["mug"], per_class=1)
    with pytest.raises(DatasetError) as raised:
        open_dataset(models)
    assert str(raised.value) == (
        f"{models}: a ShapeNet-style folder of models (taxonomy.json), not a rendered dataset; render it "
        f"into a folder of its own (`3die render --shapenet-dir {models} --out DATA`) and give DATA"
    )
    (tmp_path / "meshes" / "mug").mkdir(parents=True)
    with pytest.raises(
        DatasetError, match=r"meshes: not a rendered dataset \(no manifest.json, no train_images"
    ):
        open_dataset(tmp_path / "meshes")


def test_label_outside_the_classes_is_named(small):
    labels = small.root / "train_labels.npy"
    np.save(labels, np.array([0, 0, 1, 7], dtype=np.int64))
    with pytest.raises(DatasetError, match=re.escape(str(labels)) + r": label 7 outside 0..1"):
        open_dataset(small.root)


def test_unreadable_latent_and_non_finite_latent_are_named(small):
    views = open_dataset(small.root)
    garbage = small.root / small.splits["train"][2] / spec.latent_name(1)
    garbage.write_bytes(b"not a numpy file")
    with pytest.raises(DatasetError, match=re.escape(str(garbage)) + r": cannot read the latent"):
        views.latent(2, 1)
    nan = small.root / small.splits["train"][3] / spec.latent_name(0)
    np.save(nan, np.full(spec.LATENT_DIM, np.nan))
    with pytest.raises(DatasetError, match=re.escape(str(nan)) + r": latent has non-finite values"):
        views.latent(3, 0)


def test_unreadable_image_is_named_also_from_a_dataloader_worker(small):
    folder = small.root / small.splits["train"][0]
    for view in range(small.views):
        (folder / spec.image_name(view)).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    views = open_dataset(small.root)
    expected = re.escape(str(folder / spec.image_name(1))) + r": cannot decode the image"
    with pytest.raises(DatasetError, match=expected):
        views.image(0, 1)
    pairs = ViewPairs(views, 16, seed=0)
    loader = DataLoader(pairs, batch_size=4, num_workers=1, collate_fn=pairs.collate)
    with pytest.raises(DatasetError) as raised:
        next(iter(loader))
    assert "Original Traceback" in str(raised.value)
    line = worker_error_line(raised.value)
    assert line.startswith(f"{folder}/image_") and "cannot decode the image" in line
    assert "\n" not in line


def test_a_label_equal_to_the_number_of_classes_is_named(small):
    """Labels are 0..classes-1: the label `classes` is one past the last class."""
    labels = small.root / "train_labels.npy"
    np.save(labels, np.array([0, 0, 1, small.num_classes], dtype=np.int64))
    with pytest.raises(DatasetError, match=re.escape(str(labels)) + r": label 2 outside 0\.\.1"):
        open_dataset(small.root)
