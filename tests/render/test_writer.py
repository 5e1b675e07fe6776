import json
import os
import threading

import numpy as np
import pytest
from PIL import Image

from render import spec, writer
from render.sources import ObjectSpec

OBJ = ObjectSpec("02691156", "abc", 0, "train", "mesh-dir")


def image(colour=(200, 40, 10), size=16):
    return np.full((size, size, 3), colour, dtype=np.uint8)


def test_view_files_are_true_rgb_jpeg_and_float64_latent(tmp_path):
    folder = writer.object_dir(tmp_path, OBJ)
    writer.start_object(folder)
    latent = np.arange(spec.LATENT_DIM, dtype=np.float32)
    writer.write_view(folder, 3, image(), latent)
    with Image.open(folder / "image_3.jpg") as jpeg:
        assert jpeg.format == "JPEG" and jpeg.mode == "RGB"
        red, green, blue = np.asarray(jpeg).reshape(-1, 3).mean(axis=0)
    assert red > 180 and blue < 30 and green < 60  # red stays red: no BGR swap
    saved = np.load(folder / "latent_3.npy")
    assert saved.dtype == np.float64 and np.array_equal(saved, np.arange(spec.LATENT_DIM))
    assert sorted(p.name for p in folder.iterdir()) == ["image_3.jpg", "latent_3.npy"]


def test_wrong_latent_or_image_shape_is_refused(tmp_path):
    with pytest.raises(ValueError, match="latent"):
        writer.write_view(tmp_path, 0, image(), np.zeros(6))
    with pytest.raises(ValueError, match="image"):
        writer.write_view(tmp_path, 0, image()[..., :2], np.zeros(spec.LATENT_DIM))
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_neither_file_nor_temp(tmp_path):
    class Boom(Exception):
        pass

    with pytest.raises(Boom), writer._atomic(tmp_path / "image_0.jpg") as handle:
        handle.write(b"half")
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_completion_marker_and_restart_from_scratch(tmp_path):
    folder = writer.object_dir(tmp_path, OBJ)
    writer.start_object(folder)
    writer.write_view(folder, 0, image(), np.zeros(spec.LATENT_DIM))
    (folder / f".image_1.jpg{writer.TEMP_TAG}123").write_bytes(b"partial")
    (folder / "notes.txt").write_text("a user's file")
    assert not writer.is_complete(folder)
    writer.start_object(folder)  # an interrupted object is redone from scratch
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    writer.write_view(folder, 0, image(), np.zeros(spec.LATENT_DIM))
    writer.finish_object(folder, views=1)
    assert writer.is_complete(folder)
    assert json.loads((folder / writer.COMPLETE_MARKER).read_text()) == {"views": 1}


def test_remove_root_temp_files_removes_only_the_temporary_names_of_root_files(tmp_path):
    ours = [
        f".{spec.MANIFEST_NAME}{writer.TEMP_TAG}12",
        f".{spec.OBJECTS_CSV_NAME}.a1_zq9x0.tmp",
        f".val_labels.npy{writer.TEMP_TAG}3",
    ]
    others = [
        ".notes.tmp",
        f"{spec.MANIFEST_NAME}{writer.TEMP_TAG}12",
        f".{spec.MANIFEST_NAME}{writer.TEMP_TAG}12.bak",
        f".image_0.jpg{writer.TEMP_TAG}3",
        f".{spec.FAILURES_NAME}{writer.TEMP_TAG}3",
        spec.MANIFEST_NAME,
    ]
    for name in ours + others:
        (tmp_path / name).write_bytes(b"x")
    with writer.dataset_lock(tmp_path):
        removed = writer.remove_root_temp_files(tmp_path)
    assert [p.name for p in removed] == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, writer.LOCK_NAME])


def test_failures_are_appended_and_read_back(tmp_path):
    writer.record_failure(tmp_path, OBJ, "the mesh has no faces")
    other = ObjectSpec("02691156", "xyz", 0, "val", "mesh-dir")
    writer.record_failure(tmp_path, other, "missing")
    assert writer.read_failures(tmp_path) == {OBJ.key: "the mesh has no faces", other.key: "missing"}
    lines = (tmp_path / spec.FAILURES_NAME).read_text().splitlines()
    assert json.loads(lines[0]) == {
        "object": OBJ.key,
        "synset": OBJ.synset,
        "object_id": OBJ.object_id,
        "reason": "the mesh has no faces",
    }


def test_failures_are_appended_under_the_dataset_lock(tmp_path):
    """O_APPEND alone does not keep concurrent lines apart on NFS: the append waits for the dataset lock."""
    appending = threading.Thread(target=writer.record_failure, args=(tmp_path, OBJ, "broken"))
    with writer.dataset_lock(tmp_path):
        appending.start()
        appending.join(timeout=0.5)
        assert appending.is_alive() and writer.read_failures(tmp_path) == {}
    appending.join(timeout=30)
    assert writer.read_failures(tmp_path) == {OBJ.key: "broken"}


def test_manifest_written_once_then_checked(tmp_path):
    manifest = {"seed": 0, "settings": {"views": 2}, "versions": {"bpy": "5.0.1"}}
    writer.write_manifest(tmp_path, manifest)
    writer.write_manifest(tmp_path, {**manifest, "versions": {"bpy": "5.1"}})  # versions may change
    assert writer.read_manifest(tmp_path) == manifest
    with pytest.raises(writer.DatasetMismatchError, match="seed"):
        writer.write_manifest(tmp_path, {**manifest, "seed": 1})


def test_split_files_hold_complete_objects_in_published_format(tmp_path):
    objects = [
        ObjectSpec("02691156", "a", 0, "train", "mesh-dir"),
        ObjectSpec("04379243", "b", 49, "val", "mesh-dir"),
        ObjectSpec("02691156", "c", 0, "val", "mesh-dir"),
    ]
    for obj in objects[:2]:
        folder = writer.object_dir(tmp_path, obj)
        writer.start_object(folder)
        writer.finish_object(folder, views=0)
    assert writer.finalize(tmp_path, objects) == {"train": 1, "val": 1}
    assert np.load(tmp_path / "train_images.npy").tolist() == ["/02691156/a/"]
    assert np.load(tmp_path / "val_images.npy").tolist() == ["/04379243/b/"]
    labels = np.load(tmp_path / "val_labels.npy")
    assert labels.dtype == np.int64 and labels.tolist() == [49]
    assert not any(writer.TEMP_TAG in name for name in os.listdir(tmp_path))


def view_image(view, size=24):
    """A smooth image of its own per view: a diagonal ramp in a view-specific colour, plus some noise."""
    ramp = np.add.outer(np.arange(size), np.arange(size)) / (2 * size - 2)
    colour = np.array([(view * 50) % 256, 255 - (view * 40) % 256, 120])
    noise = np.random.default_rng(view).normal(0, 8, (size, size, 3))
    return np.clip(ramp[..., None] * colour + noise, 0, 255).astype(np.uint8)


def test_background_writer_writes_the_same_files_as_write_view(tmp_path):
    sync, background = tmp_path / "sync", tmp_path / "background"
    sync.mkdir(), background.mkdir()
    views = [(view_image(view), np.arange(spec.LATENT_DIM) * 0.5 + view) for view in range(5)]
    for view, (image, latent) in enumerate(views):
        writer.write_view(sync, view, image, latent)
    with writer.ViewWriter(max_pending=2) as queue:
        for view, (image, latent) in enumerate(views):
            queue.write(background, view, image, latent)
    names = sorted(p.name for p in sync.iterdir())
    assert names == sorted(p.name for p in background.iterdir()) and len(names) == 10
    for name in names:
        assert (sync / name).read_bytes() == (background / name).read_bytes(), name
    for view, (_, latent) in enumerate(views):  # each file holds its own view's pixels and latent
        with Image.open(background / f"image_{view}.jpg") as jpeg:
            decoded = np.asarray(jpeg).astype(int)
        errors = [np.abs(decoded - other).mean() for other, _ in views]
        assert int(np.argmin(errors)) == view and errors[view] < 6, errors
        np.testing.assert_array_equal(np.load(background / f"latent_{view}.npy"), latent)


def test_background_writer_checks_shapes_at_once(tmp_path):
    with writer.ViewWriter() as queue, pytest.raises(ValueError, match="latent"):
        queue.write(tmp_path, 0, image(), np.zeros(6))
    assert list(tmp_path.iterdir()) == []


def test_background_writer_raises_a_failed_write_and_leaves_no_temp_file(tmp_path):
    missing = tmp_path / "not-created"
    queue = writer.ViewWriter()
    queue.write(missing, 0, image(), np.zeros(spec.LATENT_DIM))
    with pytest.raises(FileNotFoundError):
        queue.close()
    assert list(tmp_path.iterdir()) == []


def test_background_writer_finishes_queued_views_when_the_block_fails(tmp_path):
    class Interrupted(Exception):
        pass

    with pytest.raises(Interrupted), writer.ViewWriter(max_pending=4) as queue:
        for view in range(3):
            queue.write(tmp_path, view, image(), np.full(spec.LATENT_DIM, view))
        raise Interrupted
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        *(f"image_{v}.jpg" for v in range(3)),
        *(f"latent_{v}.npy" for v in range(3)),
    ]
