import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from benchmark.cli import main
from render import spec, writer
from render.check import RANGE_TOLERANCE, ROOT_TEMP_MESSAGE, check_dataset
from render.sampling import sample_latents
from render.sources import ObjectSpec

VIEWS, SIZE = 2, 16
OBJECTS = [
    ObjectSpec("02691156", "a", 0, "train", "mesh-dir"),
    ObjectSpec("02691156", "b", 0, "val", "mesh-dir"),
    ObjectSpec("04379243", "c", 49, "train", "mesh-dir"),
]


def make_dataset(root, objects=OBJECTS, views=VIEWS, size=SIZE, rotation="published"):
    """A rendered-looking dataset folder, written by the writer (no Blender), its latents drawn from the
    rotation range `rotation`."""
    writer.write_manifest(root, {"seed": 0, "settings": {"views": views, "size": size, "rotation": rotation}})
    with (root / spec.OBJECTS_CSV_NAME).open("w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow(["synset", "object_id", "label", "split", "source"])
        rows.writerows([o.synset, o.object_id, o.label, o.split, o.source] for o in objects)
    rng = np.random.default_rng(0)
    for obj in objects:
        folder = writer.object_dir(root, obj)
        writer.start_object(folder)
        for view in range(views):
            latent = sample_latents(rng, 1, rotation)[0]
            writer.write_view(folder, view, rng.integers(0, 255, (size, size, 3), dtype=np.uint8), latent)
        writer.finish_object(folder, views)
    writer.finalize(root, objects)
    return root


def problems(root, **kwargs):
    report = check_dataset(root, **kwargs)
    return report, report.problems


def test_complete_dataset_passes(tmp_path):
    report, found = problems(make_dataset(tmp_path))
    assert found == {} and report.ok
    assert report.objects == 3 and report.images == 3 * VIEWS
    assert report.lines()[-1].endswith("OK")


@pytest.mark.parametrize("decode", [True, False])
def test_truncated_jpeg_is_found(tmp_path, decode):
    make_dataset(tmp_path)
    path = tmp_path / "02691156" / "b" / "image_1.jpg"
    path.write_bytes(path.read_bytes()[:-40])
    report, found = problems(tmp_path, decode=decode)
    assert not report.ok
    assert list(found) == ["02691156/b"]
    assert "image_1.jpg" in found["02691156/b"][0] and "truncated" in " ".join(found["02691156/b"])
    assert report.lines()[0].startswith("02691156/b: image_1.jpg")


def test_wrong_shaped_float32_out_of_range_latents_are_found(tmp_path):
    make_dataset(tmp_path)
    folder = tmp_path / "04379243" / "c"
    np.save(folder / "latent_0.npy", np.zeros(9))
    out_of_range = spec.LATENT_LOW.copy()
    out_of_range[spec.FLOOR_HUE] = 1.5
    np.save(folder / "latent_1.npy", out_of_range)
    _, found = problems(tmp_path)
    assert found["04379243/c"] == [
        f"latent_0.npy has shape (9,), expected ({spec.LATENT_DIM},)",
        "latent_1.npy out of range: floor_hue=1.5",
    ]


def test_missing_view_other_size_and_leftover_temp_are_found(tmp_path):
    make_dataset(tmp_path)
    folder = tmp_path / "02691156" / "a"
    (folder / "latent_1.npy").unlink()
    writer.write_view(folder, 0, np.zeros((SIZE + 1, SIZE + 1, 3), np.uint8), spec.LATENT_LOW)
    (folder / f".image_0.jpg{writer.TEMP_TAG}99").write_bytes(b"")
    _, found = problems(tmp_path)
    messages = found["02691156/a"]
    assert any(
        m.startswith(
            f"leftover temporary file .image_0.jpg{writer.TEMP_TAG}99 of an interrupted write; delete it"
        )
        for m in messages
    )
    assert f"image_0.jpg is {SIZE + 1}x{SIZE + 1}, expected {SIZE}x{SIZE}" in messages
    assert "missing latent_1.npy" in messages


def test_listed_vs_present_and_split_files(tmp_path):
    make_dataset(tmp_path)
    extra = ObjectSpec("02691156", "stray", 0, "train", "mesh-dir")
    writer.start_object(writer.object_dir(tmp_path, extra))
    (tmp_path / "02691156" / "b" / writer.COMPLETE_MARKER).unlink()
    _, found = problems(tmp_path)
    assert found["02691156/stray"] == ["present on disk but not listed in the dataset's object list"]
    assert found["02691156/b"] == [
        "in the split files but not complete",
        "incomplete: no completion marker (rerun `3die render` to redo it)",
    ]


def test_labels_outside_the_classes_are_found_and_any_integer_type_is_read(tmp_path):
    """As the readers: int32 labels are fine, labels outside the dataset's classes (the 55 ShapeNet synsets
    without a class list in manifest.json, else its classes) are named."""
    make_dataset(tmp_path)
    np.save(tmp_path / "train_labels.npy", np.load(tmp_path / "train_labels.npy").astype(np.int32))
    assert problems(tmp_path)[0].ok
    np.save(tmp_path / "train_labels.npy", np.array([55, -1], dtype=np.int64))
    _, found = problems(tmp_path)
    assert found["train_labels.npy"] == ["2 labels outside 0..54 (the dataset's classes), first 55"]
    manifest = writer.read_manifest(tmp_path)
    manifest["classes"] = [{"label": 0, "synset": "02691156", "name": "airplane"}]
    (tmp_path / spec.MANIFEST_NAME).write_text(json.dumps(manifest))
    np.save(tmp_path / "train_labels.npy", np.array([0, 49], dtype=np.int64))
    _, found = problems(tmp_path)
    assert found["train_labels.npy"] == ["1 labels outside 0..0 (the dataset's classes), first 49"]
    manifest["classes"].append({"label": 2, "synset": "02747177", "name": "ashcan"})
    (tmp_path / spec.MANIFEST_NAME).write_text(json.dumps(manifest))
    _, found = problems(tmp_path)  # as training would refuse it
    assert found[str(tmp_path)] == [
        "manifest.json: class labels must be 0..1; rerun `3die render` on the dataset to rewrite it"
    ]


def test_split_labels_that_differ_from_the_object_list_are_found(tmp_path):
    make_dataset(tmp_path)
    np.save(tmp_path / "train_labels.npy", np.array([0, 0], dtype=np.int64))  # the table labelled an airplane
    _, found = problems(tmp_path)
    assert found["train_labels.npy"] == [
        "1 labels differ from objects.csv's (first 04379243/c: 0 here, 49 there); rerun `3die render` on "
        "this folder to rewrite the split files"
    ]


def test_missing_object_is_found_unless_recorded_as_failed(tmp_path):
    make_dataset(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "04379243")
    writer.finalize(tmp_path, OBJECTS)
    _, found = problems(tmp_path)
    assert found == {"04379243/c": ["missing folder"]}
    writer.record_failure(tmp_path, OBJECTS[2], "the mesh has no faces")
    report, found = problems(tmp_path)
    assert report.ok and report.failures == {"04379243/c": "the mesh has no faces"}
    assert "1 recorded as failed" in report.lines()[-1]


def test_official_layout_without_manifest(tmp_path):
    # the official download: split files and object folders, no manifest.json or objects.csv
    make_dataset(tmp_path)
    (tmp_path / spec.MANIFEST_NAME).unlink()
    (tmp_path / spec.OBJECTS_CSV_NAME).unlink()
    for obj in OBJECTS:
        (writer.object_dir(tmp_path, obj) / writer.COMPLETE_MARKER).unlink()
    report, found = problems(tmp_path, workers=1)
    # without a manifest the published 50 views are expected
    assert report.objects == 3 and "missing image_2.jpg" in found["02691156/a"]


def test_parallel_check_finds_the_same(tmp_path):
    objects = [ObjectSpec("02691156", f"o{i}", 0, "train", "mesh-dir") for i in range(8)]
    make_dataset(tmp_path, objects)
    np.save(tmp_path / "02691156" / "o5" / "latent_1.npy", np.zeros(3))
    assert problems(tmp_path, workers=2)[1] == problems(tmp_path, workers=1)[1]
    assert list(problems(tmp_path, workers=2)[1]) == ["02691156/o5"]


def test_unreadable_dataset_files_are_reported_not_raised(tmp_path):
    make_dataset(tmp_path)
    (tmp_path / spec.OBJECTS_CSV_NAME).write_text("synset,object_id\n02691156,a\n")
    report, found = problems(tmp_path)
    assert not report.ok and "missing column label" in found[str(tmp_path)][0]
    make_dataset(tmp_path)
    np.save(tmp_path / "val_images.npy", np.array(["not-a-key"]))
    report, found = problems(tmp_path)
    assert "not of the form '/SYNSET/OBJECT_ID/'" in found[str(tmp_path)][0]


@pytest.mark.parametrize("name", [spec.OBJECTS_CSV_NAME, "train_images.npy", "val_labels.npy"])
def test_a_folder_in_place_of_a_root_file_is_found(tmp_path, name):
    """Read as absent, a folder named objects.csv let the dataset pass as complete."""
    root = make_dataset(tmp_path)
    (root / name).unlink()
    (root / name).mkdir()
    report, found = problems(root)
    assert not report.ok
    assert found[name][0] == "a folder where this file belongs; move it away and rerun `3die render`"


def test_official_layout_labels_that_are_not_the_synsets_are_found(tmp_path):
    """Without manifest.json the labels are ShapeNet's; labels of a 3die render's classes are not."""
    root = make_dataset(tmp_path, views=50)
    (root / spec.MANIFEST_NAME).unlink()
    (root / spec.OBJECTS_CSV_NAME).unlink()
    assert problems(root)[0].ok, "the fixture's labels are the ShapeNet ones"
    np.save(root / "train_labels.npy", (np.load(root / "train_labels.npy") + 1) % 55)
    _, found = problems(root)
    assert found["train_labels.npy"][0].startswith("2 labels differ from the ShapeNet synsets' (first ")


def test_official_layout_with_only_the_validation_list_checks_every_object_on_disk(tmp_path):
    """The published val_images.npy beside the download's folders: the readers train on every other folder,
    so the check covers them too instead of calling them unlisted."""
    root = make_dataset(tmp_path, views=50)
    for name in (spec.MANIFEST_NAME, spec.OBJECTS_CSV_NAME, "train_images.npy", "train_labels.npy"):
        (root / name).unlink()
    report, found = problems(root)
    assert report.ok and report.objects == 3, found
    latent = root / "04379243" / "c" / spec.latent_name(7)  # a train object, listed by no split file
    np.save(latent, np.zeros(2))
    assert list(problems(root)[1]) == ["04379243/c"]


def test_a_model_library_is_not_a_dataset_to_render_into(tmp_path):
    from render.procedural.export import export_library

    export_library(tmp_path / "lib", ["mug"], per_class=1)
    report, found = problems(tmp_path / "lib")
    assert not report.ok and list(found) == [str(tmp_path / "lib")]
    assert found[str(tmp_path / "lib")][0].startswith("a ShapeNet-style folder of models (taxonomy.json)")


def test_a_folder_without_objects_is_not_a_dataset(tmp_path):
    (tmp_path / "meshes" / "chair").mkdir(parents=True)  # a mesh folder given by mistake: CLASS/NAME.obj
    (tmp_path / "meshes" / "chair" / "a.obj").write_text("v 0 0 0\n")
    for folder in (tmp_path / "meshes", tmp_path / "meshes" / "chair"):
        report, found = problems(folder)
        assert not report.ok and "no objects" in found[str(folder)][0], found
        assert report.lines()[-1].endswith("1 with problems")


def test_a_run_folder_is_not_a_dataset(tmp_path):
    run = tmp_path / "run"
    (run / "features" / "0123abcd").mkdir(parents=True)  # would look like SYNSET/OBJECT_ID
    (run / "checkpoints").mkdir()
    (run / "config.json").write_text("{}")
    report, found = problems(run)
    assert not report.ok and found == {
        str(run): ["a training run folder, not a dataset; check the dataset it trained on"]
    }


def test_a_dataset_whose_every_object_failed_is_not_ok(tmp_path):
    make_dataset(tmp_path, objects=OBJECTS[:1])
    import shutil

    shutil.rmtree(writer.object_dir(tmp_path, OBJECTS[0]))
    writer.finalize(tmp_path, OBJECTS[:1])
    writer.record_failure(tmp_path, OBJECTS[0], "the mesh has no faces")
    report, found = problems(tmp_path)
    assert not report.ok and "every listed object is recorded as failed" in found[str(tmp_path)][0]


def test_an_object_rendered_again_after_its_failure_is_checked(tmp_path):
    make_dataset(tmp_path)
    writer.record_failure(tmp_path, OBJECTS[1], "the render worker died")  # then --retry-failed rendered it
    np.save(writer.object_dir(tmp_path, OBJECTS[1]) / spec.latent_name(0), np.zeros(3))
    report, found = problems(tmp_path)
    assert report.failures == {} and report.objects == len(OBJECTS)
    assert list(found) == [OBJECTS[1].key] and "latent_0.npy has shape (3,)" in found[OBJECTS[1].key][0]


def test_an_ood_angle_inside_the_published_range_is_found(tmp_path):
    make_dataset(tmp_path, rotation="ood")
    assert check_dataset(tmp_path).ok, "every angle drawn from the ood range passes"
    edge = writer.object_dir(tmp_path, OBJECTS[0]) / spec.latent_name(0)
    latent = np.load(edge)
    latent[spec.ROTATION] = [math.pi / 2, -math.pi / 2, math.pi / 2 - RANGE_TOLERANCE / 2]  # on the edges
    np.save(edge, latent)
    bad = writer.object_dir(tmp_path, OBJECTS[2]) / spec.latent_name(1)
    latent = np.load(bad)
    latent[1] = 0.3
    np.save(bad, latent)
    report, found = problems(tmp_path)
    message = (
        "latent_1.npy out of range: rot_y=0.3 (the ood range of the Euler angles is "
        "[-pi, -pi/2] U [pi/2, pi])"
    )
    assert found == {OBJECTS[2].key: [message]}
    assert report.lines()[0] == f"{OBJECTS[2].key}: {message}"


def test_a_temporary_file_left_at_the_root_is_found(tmp_path):
    make_dataset(tmp_path)
    strays = [f".{spec.MANIFEST_NAME}{writer.TEMP_TAG}4242", f".{spec.OBJECTS_CSV_NAME}.k3j_x9ab.tmp"]
    for name in strays:
        (tmp_path / name).write_bytes(b"half")
    (tmp_path / ".notes.tmp").write_text("not a file of the renderer")
    _, found = problems(tmp_path)
    assert found == {name: [ROOT_TEMP_MESSAGE] for name in strays}
    result = CliRunner().invoke(main, ["check", "--quick", str(tmp_path)])
    assert result.exit_code == 1
    *lines, summary = result.stdout.splitlines()
    assert lines == [f"{name}: {ROOT_TEMP_MESSAGE}" for name in sorted(strays)]
    assert summary.endswith("3 objects, 6 images checked: 2 with problems")


def test_the_folder_above_a_dataset_is_not_a_dataset(tmp_path):
    """`3die check out/` for `3die check out/data`: one line saying there is no dataset here, not a
    report on "objects" made of the dataset's class folders."""
    make_dataset(tmp_path / "data")
    report, found = problems(tmp_path)
    assert list(found) == [str(tmp_path)] and "no objects" in found[str(tmp_path)][0]
    assert report.objects == 0


def test_a_folder_without_a_listing_that_cannot_be_read_is_named(tmp_path, monkeypatch):
    """The official layout lists its objects by its folders: when they cannot be listed (permissions),
    the check says so, not only that there are no objects."""
    from render import check

    (tmp_path / "03001627" / "abc").mkdir(parents=True)

    def unreadable(root):
        raise PermissionError(13, "Permission denied", str(root))

    monkeypatch.setattr(check, "_folders_on_disk", unreadable)
    _, found = problems(tmp_path)
    assert (
        found[str(tmp_path)]
        == [
            found[str(tmp_path)][0],
            "cannot list the folder (Permission denied); make it readable",
        ]
        and "no objects" in found[str(tmp_path)][0]
    )


def test_view_files_numbered_past_the_last_view_are_found(tmp_path):
    """View numbers run 0..VIEWS-1: image_{VIEWS}.jpg and latent_{VIEWS}.npy belong to no view."""
    make_dataset(tmp_path)
    folder = writer.object_dir(tmp_path, OBJECTS[0])
    (folder / spec.image_name(VIEWS)).write_bytes((folder / spec.image_name(0)).read_bytes())
    (folder / spec.latent_name(VIEWS)).write_bytes((folder / spec.latent_name(0)).read_bytes())
    _, found = problems(tmp_path)
    assert found == {
        OBJECTS[0].key: [
            f"unexpected view file {spec.image_name(VIEWS)} (dataset has {VIEWS} views)",
            f"unexpected view file {spec.latent_name(VIEWS)} (dataset has {VIEWS} views)",
        ]
    }


@pytest.mark.parametrize("decode", [True, False])
def test_an_image_one_row_too_tall_and_a_greyscale_image_are_found(tmp_path, decode):
    make_dataset(tmp_path)
    folder = writer.object_dir(tmp_path, OBJECTS[0])
    writer.write_view(folder, 0, np.zeros((SIZE + 1, SIZE, 3), np.uint8), spec.LATENT_LOW)
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8), mode="L").save(folder / spec.image_name(1), "JPEG")
    _, found = problems(tmp_path, decode=decode)
    assert found == {
        OBJECTS[0].key: [
            f"{spec.image_name(0)} is {SIZE}x{SIZE + 1}, expected {SIZE}x{SIZE}",
            f"{spec.image_name(1)} has mode L, not RGB",
        ]
    }


def test_an_angle_just_past_the_range_is_found(tmp_path):
    """RANGE_TOLERANCE forgives float rounding only: a millionth of a radian past pi/2 is out of range."""
    make_dataset(tmp_path)
    path = writer.object_dir(tmp_path, OBJECTS[1]) / spec.latent_name(0)
    latent = np.load(path)
    latent[spec.ROTATION.start] = spec.LATENT_HIGH[spec.ROTATION.start] + 1e-6
    np.save(path, latent)
    _, found = problems(tmp_path)
    assert found == {
        OBJECTS[1].key: [
            "latent_0.npy out of range: rot_x=1.571 (the published range of the Euler angles is "
            "[-pi/2, pi/2])"
        ]
    }
