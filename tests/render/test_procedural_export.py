"""Exporting the procedural library as a ShapeNetCore-v2-style folder, and `3die objects`."""

import json
import subprocess
import sys

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner

from benchmark.cli import main
from render import files, manifest, procedural, spec
from render.procedural import export


def test_library_manifest_labels_and_split():
    entries = export.library_manifest(["table", "chair", "mug"], per_class=10, seed=4)
    assert len(entries) == 30
    # Labels: position of the synset among the sorted synsets of the classes used.
    assert {(e.synset, e.label) for e in entries} == {("03001627", 0), ("03797390", 1), ("04379243", 2)}
    assert all(e.source == "procedural" for e in entries)
    for synset in {e.synset for e in entries}:
        assert sum(e.synset == synset and e.split == "val" for e in entries) == 2
    assert entries == export.library_manifest(["mug", "table", "chair", "mug"], per_class=10, seed=4)
    assert entries[0].object_id == procedural.object_id("chair", 0, 4)


@pytest.mark.parametrize(
    ("classes", "per_class", "message"),
    [
        (["chair", "spoon"], 2, "unknown class 'spoon'; valid classes: airplane, bench"),
        ([" ", ""], 2, "no class given; valid classes"),
        (["chair"], 0, "at least 1, got 0"),
        (["chair"], -3, "at least 1, got -3"),
        (["chair"], 100_001, "at most 100000, got 100001"),  # object ids have five digits
    ],
)
def test_library_manifest_rejects_bad_arguments(classes, per_class, message):
    with pytest.raises(ValueError, match=message):
        export.library_manifest(classes, per_class)


def test_export_writes_shapenet_layout(tmp_path):
    summary = export.export_library(tmp_path, ["mug", "lamp"], per_class=3, seed=1)
    assert (summary.written, summary.kept) == (6, 0)
    taxonomy = json.loads((tmp_path / "taxonomy.json").read_text())
    assert taxonomy == [
        {"synsetId": procedural.SYNSETS["lamp"], "name": "lamp", "children": [], "numInstances": 3},
        {"synsetId": procedural.SYNSETS["mug"], "name": "mug", "children": [], "numInstances": 3},
    ]
    entries = manifest.read_objects_csv(tmp_path / spec.OBJECTS_CSV_NAME)
    assert entries == summary.objects
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    expected = sorted(f"{e.synset}/{e.object_id}/models/model_normalized.obj" for e in entries)
    assert written == sorted([*expected, "objects.csv", "taxonomy.json"])


def test_exported_obj_is_y_up_and_loads_with_trimesh(tmp_path):
    export.export_library(tmp_path, ["guitar"], per_class=1, seed=0)
    path = export.model_path(tmp_path, procedural.SYNSETS["guitar"], procedural.object_id("guitar", 0, 0))
    loaded = trimesh.load(path, force="mesh", process=False)
    mesh = procedural.make_mesh("guitar", 0, 0)
    assert len(loaded.faces) == len(mesh.faces)
    # File coordinates are ShapeNet's Y-up: (x, z, -y) of the Z-up mesh; a guitar is tallest along file Y.
    assert np.allclose(loaded.vertices, mesh.vertices[:, [0, 2, 1]] * [1, 1, -1], atol=1e-7)
    assert np.argmax(loaded.extents) == 1


def test_rerun_continues_and_repairs(tmp_path):
    first = export.export_library(tmp_path, ["chair"], per_class=4)
    victim = export.model_path(tmp_path, first.objects[1].synset, first.objects[1].object_id)
    victim.write_text("truncated")
    missing = export.model_path(tmp_path, first.objects[2].synset, first.objects[2].object_id)
    missing.unlink()
    stale = victim.parent / ".model_normalized.obj.abc123.tmp"
    stale.write_text("half a file")
    kept = export.model_path(tmp_path, first.objects[0].synset, first.objects[0].object_id)
    mtime = kept.stat().st_mtime_ns
    second = export.export_library(tmp_path, ["chair"], per_class=4)
    assert (second.written, second.kept) == (2, 2)
    assert kept.stat().st_mtime_ns == mtime
    assert not stale.exists()
    for entry in first.objects:
        name, index, seed = procedural.parse_object_id(entry.object_id)
        expected = export.obj_text(procedural.make_mesh(name, index, seed), entry.object_id).encode()
        assert export.model_path(tmp_path, entry.synset, entry.object_id).read_bytes() == expected


def test_interrupted_export_leaves_no_partial_files(tmp_path, monkeypatch):
    calls = []

    def interrupt(entry):
        calls.append(entry)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export.export_library(tmp_path, ["bottle", "car"], per_class=3, on_object=interrupt)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 3 and all(p.name == "model_normalized.obj" for p in written)
    assert not (tmp_path / "objects.csv").exists()
    # A failing rename (e.g. the process killed between write and rename) leaves no temporary file.
    real_replace = files.os.replace

    def failing_replace(source, target):
        if str(target).endswith(".obj") and "car-s0-i00002" in str(target):
            raise OSError(28, "No space left on device")
        return real_replace(source, target)

    monkeypatch.setattr(files.os, "replace", failing_replace)
    with pytest.raises(OSError):
        export.export_library(tmp_path, ["bottle", "car"], per_class=3)
    assert not [p for p in tmp_path.rglob("*.tmp")]
    monkeypatch.undo()
    summary = export.export_library(tmp_path, ["bottle", "car"], per_class=3)
    assert summary.kept == 5 and summary.written == 1


BLENDER_IMPORT = """
import sys
import bpy
import numpy as np

bpy.ops.wm.obj_import(filepath=sys.argv[1])
(imported,) = bpy.context.selected_objects
mesh = imported.data
local = np.array([v.co for v in mesh.vertices], dtype=float)
world = np.array(imported.matrix_world, dtype=float)
vertices = local @ world[:3, :3].T + world[:3, 3]
faces = np.array([list(p.vertices) for p in mesh.polygons])
np.savez(sys.argv[2], vertices=vertices, faces=faces)
"""


def test_blender_obj_import_gives_back_the_z_up_mesh(tmp_path):
    """Blender's default OBJ importer (Y-up files, turned Z-up) reproduces make_mesh's vertices."""
    export.export_library(tmp_path, ["lamp"], per_class=1, seed=2)
    path = export.model_path(tmp_path, procedural.SYNSETS["lamp"], procedural.object_id("lamp", 0, 2))
    result_file = tmp_path / "imported.npz"
    subprocess.run(
        [sys.executable, "-c", BLENDER_IMPORT, str(path), str(result_file)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    imported = np.load(result_file)
    mesh = procedural.make_mesh("lamp", 0, 2)
    assert imported["vertices"].shape == mesh.vertices.shape
    assert np.allclose(imported["vertices"], mesh.vertices, atol=1e-6)
    assert np.array_equal(imported["faces"], mesh.faces)


# --- the command line ------------------------------------------------------------------------------


def test_cli_objects_writes_a_library_that_trimesh_loads(tmp_path):
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["objects", "--out", str(out), "--per-class", "3"])
    assert result.exit_code == 0, result.output
    entries = manifest.read_objects_csv(out / "objects.csv")
    assert len(entries) == 3 * len(procedural.CLASSES)
    assert {e.split for e in entries} == {"train", "val"}
    assert f"{len(entries)} objects ({len(entries)} written, 0 already there)" in result.output
    for entry in entries:
        loaded = trimesh.load(export.model_path(out, entry.synset, entry.object_id), force="mesh")
        assert isinstance(loaded, trimesh.Trimesh) and len(loaded.faces) > 0
        assert np.linalg.norm(loaded.extents) == pytest.approx(1.0, abs=1e-6)
    rerun = CliRunner().invoke(main, ["objects", "--out", str(out), "--per-class", "3"])
    assert rerun.exit_code == 0 and f"(0 written, {len(entries)} already there)" in rerun.output


def test_cli_objects_classes_and_seed(tmp_path):
    result = CliRunner().invoke(
        main,
        ["objects", "--out", str(tmp_path), "--classes", "mug, chair", "--per-class", "2", "--seed", "5"],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [procedural.SYNSETS["mug"], procedural.SYNSETS["chair"], "objects.csv", "taxonomy.json"]
    )
    assert (
        tmp_path / procedural.SYNSETS["mug"] / "mug-s5-i00001" / "models" / "model_normalized.obj"
    ).is_file()


def test_cli_objects_list():
    result = CliRunner().invoke(main, ["objects", "--list"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        f"{name:12s} {synset}" for name, synset in procedural.SYNSETS.items()
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--classes", "chair,spoon"],
            "Error: unknown class 'spoon'; valid classes: airplane, bench, bookshelf",
        ),
        (["--per-class", "0"], "Error: the number of objects per class must be at least 1, got 0"),
        (["--per-class", "-2"], "Error: the number of objects per class must be at least 1, got -2"),
        (["--seed", "-1"], "Error: --seed must be a non-negative integer, got -1"),
    ],
)
def test_cli_objects_bad_arguments_give_one_line(tmp_path, arguments, message):
    result = CliRunner().invoke(main, ["objects", "--out", str(tmp_path / "o"), *arguments])
    assert result.exit_code != 0
    assert result.output.strip() == message or result.output.strip().startswith(message)
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_an_export_that_would_leave_listed_objects_unlisted_is_refused(tmp_path):
    """Another seed (or fewer objects) into an existing library would replace objects.csv and leave the
    old models on disk unlisted; more objects of the same library grow it."""
    out = tmp_path / "o"
    assert (
        CliRunner()
        .invoke(main, ["objects", "--out", str(out), "--classes", "mug", "--per-class", "2"])
        .exit_code
        == 0
    )
    before = (out / "objects.csv").read_bytes()
    for arguments in (["--seed", "1"], ["--per-class", "1"]):
        result = CliRunner().invoke(main, ["objects", "--out", str(out), "--classes", "mug", *arguments])
        assert result.exit_code == 1 and result.output.startswith(f"Error: {out / 'objects.csv'}: lists "), (
            result.output
        )
        assert "write this library to a folder of its own" in result.output
        assert (out / "objects.csv").read_bytes() == before
    grown = CliRunner().invoke(
        main, ["objects", "--out", str(out), "--classes", "mug,chair", "--per-class", "3"]
    )
    assert grown.exit_code == 0, grown.output
    assert len((out / "objects.csv").read_text().splitlines()) == 1 + 6


def test_an_export_over_an_interrupted_one_with_other_options_is_refused(tmp_path):
    """Killed before it wrote objects.csv, an export leaves models that no list names: another export into
    the folder would leave them unlisted on disk, where a render would take them in."""

    def interrupt(entry):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export.export_library(tmp_path, ["bottle"], per_class=3, on_object=interrupt)
    with pytest.raises(
        ValueError, match=r"holds the models of 1 objects that this export would not \(e\.g\. "
    ):
        export.export_library(tmp_path, ["mug"], per_class=2)
    summary = export.export_library(tmp_path, ["bottle", "mug"], per_class=3)  # a superset finishes it
    assert summary.kept == 1 and summary.written == 5


def test_cli_objects_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(main, ["objects", "--out", str(blocker / "library"), "--per-class", "1"])
    assert result.exit_code != 0
    assert (
        result.output.strip() == f"Error: cannot write the library to {blocker / 'library'}: Not a directory"
    )
    result = CliRunner().invoke(main, ["objects"])
    assert result.exit_code != 0 and result.output.strip().startswith("Error: missing --out DIR")


def test_cli_objects_leaves_a_rendered_dataset_alone(tmp_path):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / spec.MANIFEST_NAME).write_text("{}")
    (dataset / spec.OBJECTS_CSV_NAME).write_text("synset,object_id,label,split,source\n")
    before = {path.name: path.read_bytes() for path in dataset.iterdir()}
    result = CliRunner().invoke(
        main, ["objects", "--out", str(dataset), "--classes", "mug", "--per-class", "1"]
    )
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith(f"Error: {dataset}: is a rendered dataset (manifest.json)")
    assert {path.name: path.read_bytes() for path in dataset.iterdir()} == before
