"""Object sources: listing, labels, splits, object files and mesh normalisation (no Blender)."""

import csv

import numpy as np
import pytest
import trimesh

from render import procedural, spec
from render.sources import (
    MeshDirSource,
    MeshError,
    ObjFile,
    ProceduralSource,
    ShapeNetSource,
    SourceError,
    load_mesh_file,
    mesh_arrays_from_trimesh,
    source_from_options,
    turn_z_up,
)

AIRPLANE, TABLE = "02691156", "04379243"


def official_val_objects(synset, count):
    with spec.OFFICIAL_VAL_CSV.open(newline="") as handle:
        return [row["object_id"] for row in csv.DictReader(handle) if row["synset"] == synset][:count]


@pytest.fixture
def shapenet_root(tmp_path):
    """A ShapeNetCore v2-shaped folder: one official val object, two other objects, a stray file."""
    root = tmp_path / "ShapeNetCore.v2"
    val_id = official_val_objects(AIRPLANE, 1)[0]
    for synset, object_id in ((AIRPLANE, val_id), (AIRPLANE, "a0"), (TABLE, "t0")):
        models = root / synset / object_id / "models"
        models.mkdir(parents=True)
        (models / "model_normalized.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (root / "not-a-synset").mkdir()
    (root / AIRPLANE / ".DS_Store_dir").mkdir()  # hidden: not an object
    (root / "taxonomy.json").write_text("[]")
    return root, val_id


def test_shapenet_labels_and_official_split(shapenet_root):
    root, val_id = shapenet_root
    source = ShapeNetSource(root)
    objects = source.objects()
    assert [(o.synset, o.object_id, o.label, o.split) for o in objects] == sorted(
        [(AIRPLANE, val_id, 0, "val"), (AIRPLANE, "a0", 0, "train"), (TABLE, "t0", 49, "train")]
    )
    assert all(o.source == "shapenet" for o in objects)
    assert source.load(objects[0]) == ObjFile(
        root / objects[0].synset / objects[0].object_id / "models/model_normalized.obj"
    )
    assert len(source.classes(objects)) == 55


def test_shapenet_does_not_need_taxonomy_and_selects_from_npy(shapenet_root, tmp_path):
    root, val_id = shapenet_root
    (root / "taxonomy.json").unlink()
    images = tmp_path / "val_images.npy"
    np.save(images, np.array([f"/{TABLE}/t0/", f"/{AIRPLANE}/{val_id}/"]))
    objects = ShapeNetSource(root, images).objects()
    assert [(o.synset, o.object_id, o.label, o.split) for o in objects] == [
        (TABLE, "t0", 49, "train"),
        (AIRPLANE, val_id, 0, "val"),
    ]
    pairs = tmp_path / "all_objects.npy"  # the published generator's --objects file: (synset, id) rows
    np.save(pairs, np.array([[TABLE, "t0"], [AIRPLANE, val_id]]))
    assert ShapeNetSource(root, pairs).objects() == objects
    np.save(pairs, np.array([[TABLE, "t0"], [TABLE, "t0"]]))
    with pytest.raises(SourceError, match="duplicated object") as duplicated:
        ShapeNetSource(root, pairs).objects()
    assert str(duplicated.value).count(str(pairs)) == 1
    upper = tmp_path / "ALL_OBJECTS.NPY"  # the suffix's case does not make it a CSV
    np.save(tmp_path / "upper.npy", np.array([[TABLE, "t0"], [AIRPLANE, val_id]]))
    (tmp_path / "upper.npy").rename(upper)
    assert ShapeNetSource(root, upper).objects() == objects
    np.save(pairs, np.array([[TABLE, "t0"]]).astype(np.bytes_))  # bytes read as text
    assert [o.object_id for o in ShapeNetSource(root, pairs).objects()] == ["t0"]
    np.save(pairs, np.array([[4379243, 0]]))  # numbers: the leading zero of the synset id is lost
    with pytest.raises(SourceError, match=r"an array of int64 values, not of strings; .*leading zeros"):
        ShapeNetSource(root, pairs).objects()
    np.save(pairs, np.array([[TABLE, "t0"], ["99999999", "x"]]))
    with pytest.raises(
        SourceError,
        match=r"entry 2 \('99999999', 'x'\): '99999999' is not one of the 55 ShapeNetCore v2 synset ids",
    ):
        ShapeNetSource(root, pairs).objects()


def test_shapenet_missing_or_empty_model_is_a_mesh_error(shapenet_root):
    root, _ = shapenet_root
    (root / TABLE / "t1").mkdir()  # an empty object folder, as some ShapeNet copies have
    (root / AIRPLANE / "a0" / "models" / "model_normalized.obj").write_text("")
    source = ShapeNetSource(root)
    by_id = {o.object_id: o for o in source.objects()}
    with pytest.raises(MeshError, match="missing"):
        source.load(by_id["t1"])
    with pytest.raises(MeshError, match="empty"):
        source.load(by_id["a0"])


def test_objects_csv_selects_with_its_labels_and_splits(shapenet_root, tmp_path):
    root, _ = shapenet_root
    objects_csv = tmp_path / "objects.csv"
    objects_csv.write_text(f"synset,object_id,label,split,source\n{TABLE},t0,49,val,shapenet\n")
    objects = ShapeNetSource(root, objects_csv).objects()
    assert [(o.object_id, o.label, o.split) for o in objects] == [("t0", 49, "val")]
    objects_csv.write_text(f"synset,object_id,label,split,source\n{TABLE},t0,3,val,shapenet\n")
    with pytest.raises(SourceError, match="label"):
        ShapeNetSource(root, objects_csv).objects()
    objects_csv.write_text(f"synset,object_id,label,split,source\n{TABLE},t0,0,val,mesh-dir\n")
    with pytest.raises(SourceError, match="source mesh-dir"):
        ShapeNetSource(root, objects_csv).objects()


def test_an_objects_csv_of_other_classes_must_number_them_from_zero(tmp_path):
    """Readers need labels 0..C-1 (ShapeNet objects keep their label among the 55): a held-out-class list
    that copied its labels from a larger dataset is refused before anything is rendered."""
    objects_csv = tmp_path / "objects.csv"
    header = "synset,object_id,label,split,source\n"
    objects_csv.write_text(
        header + "03001627,chair-s0-i00100,5,train,procedural\n03797390,mug-s0-i00100,9,val,procedural\n"
    )
    expected = "objects.csv: the labels of its 2 classes are 5, 9; number them 0..1"
    with pytest.raises(SourceError, match=expected):
        ProceduralSource(objects_file=objects_csv).objects()
    objects_csv.write_text(objects_csv.read_text().replace(",5,", ",2,").replace(",9,", ",0,"))
    with pytest.raises(SourceError, match=r"the labels of its 2 classes are 0, 2; number them 0\.\.1"):
        ProceduralSource(objects_file=objects_csv).objects()
    objects_csv.write_text(objects_csv.read_text().replace(",2,", ",1,"))
    assert [o.label for o in ProceduralSource(objects_file=objects_csv).objects()] == [1, 0]


def test_an_objects_csv_row_whose_synset_is_not_its_objects_class_is_refused(tmp_path):
    """A chair listed under the car synset would be rendered as a chair and labelled a car."""
    objects_csv = tmp_path / "objects.csv"
    objects_csv.write_text(
        "synset,object_id,label,split,source\n03001627,chair-s0-i00000,1,train,procedural\n"
        "02958343,chair-s0-i00001,0,val,procedural\n"
    )
    expected = (
        f"{objects_csv}: 'chair-s0-i00001' is a chair (synset 03001627) but its row gives synset 02958343; "
        "correct the synset column"
    )
    with pytest.raises(SourceError) as raised:
        ProceduralSource(objects_file=objects_csv).objects()
    assert str(raised.value) == expected


@pytest.fixture
def mesh_root(tmp_path):
    root = tmp_path / "meshes"
    for name, mesh, ext in (
        ("mug", trimesh.creation.cylinder(0.3, 1.0), "ply"),
        ("mug", trimesh.creation.annulus(0.2, 0.4, 0.5), "stl"),
        ("box", trimesh.creation.box((1.0, 2.0, 3.0)), "glb"),
        ("box", trimesh.creation.box((2.0, 2.0, 1.0)), "off"),
        ("box", trimesh.creation.box((1.0, 1.0, 1.0)), "obj"),
    ):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        mesh.export(folder / f"{name}{len(list(folder.iterdir()))}.{ext}")
    (root / "box" / "readme.txt").write_text("not a mesh")
    (root / "box" / "._box0.obj").write_bytes(b"\x00\x05\x16\x07 a macOS AppleDouble file")  # hidden
    (root / ".git").mkdir()
    return root


def test_mesh_dir_labels_splits_and_loading(mesh_root):
    source = MeshDirSource(mesh_root)
    objects = source.objects()
    assert [(o.synset, o.object_id, o.label) for o in objects] == [
        ("box", "box0", 0),
        ("box", "box1", 0),
        ("box", "box2", 0),
        ("mug", "mug0", 1),
        ("mug", "mug1", 1),
    ]
    assert {o.split for o in objects if o.synset == "box"} == {"train", "val"}
    assert [c.name for c in source.classes(objects)] == ["box", "mug"]
    for obj in objects:
        arrays = source.load(obj)
        low, high = arrays.vertices.min(axis=0), arrays.vertices.max(axis=0)
        np.testing.assert_allclose((low + high) / 2, 0.0, atol=1e-9)
        assert np.linalg.norm(high - low) == pytest.approx(1.0)
        assert arrays.faces.shape[1] == 3 and arrays.faces.max() < len(arrays.vertices)


def test_mesh_dir_split_is_deterministic_and_order_free(mesh_root):
    assert MeshDirSource(mesh_root).objects() == MeshDirSource(mesh_root).objects()
    validation_sets = {
        frozenset(o.object_id for o in MeshDirSource(mesh_root, seed=seed).objects() if o.split == "val")
        for seed in range(10)
    }
    assert len(validation_sets) > 1  # the seed moves the split


def test_mesh_dir_duplicate_names_and_empty_folder_are_refused(mesh_root, tmp_path):
    trimesh.creation.box().export(mesh_root / "box" / "box0.stl")
    with pytest.raises(SourceError, match="two meshes named box0"):
        MeshDirSource(mesh_root).objects()
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        SourceError, match=r"empty: no meshes; expected ROOT/CLASS/NAME\.\{obj,glb,gltf,ply,stl,off\}$"
    ):
        MeshDirSource(tmp_path / "empty").objects()
    trimesh.creation.box().export(tmp_path / "empty" / "loose.stl")
    with pytest.raises(SourceError, match="; the meshes directly in ROOT need class folders"):
        MeshDirSource(tmp_path / "empty").objects()


@pytest.mark.parametrize("name", [" white .ply", "caf\udce9.ply"], ids=["spaces", "undecodable"])
def test_a_mesh_file_name_that_cannot_name_an_object_folder_is_named_in_the_error(mesh_root, name):
    path = mesh_root / "mug" / name
    path.write_bytes((mesh_root / "mug" / "mug0.ply").read_bytes())
    with pytest.raises(SourceError, match="cannot name a class or object folder of the dataset") as error:
        MeshDirSource(mesh_root).objects()
    assert str(error.value).startswith(f"{path}: ") and str(error.value).endswith("; rename it")


def test_a_class_folder_without_mesh_files_is_refused_not_skipped(mesh_root):
    """CLASS/NAME/model.obj (one level too deep, as ShapeNet nests its models) would drop the class."""
    (mesh_root / "bracket" / "b0").mkdir(parents=True)
    trimesh.creation.box().export(mesh_root / "bracket" / "b0" / "model.obj")
    with pytest.raises(SourceError, match="bracket: no mesh file directly in this class folder; expected"):
        MeshDirSource(mesh_root).objects()


def test_a_broken_link_in_a_class_folder_is_an_object_that_fails_to_load(mesh_root):
    """A dangling or looping symbolic link named like a mesh is listed, then fails with its target named
    (the renderer records it in the failures file), instead of dropping out of the dataset unnoticed."""
    (mesh_root / "mug" / "gone.obj").symlink_to(mesh_root / "nowhere.obj")
    (mesh_root / "mug" / "loop.ply").symlink_to(mesh_root / "mug" / "loop.ply")
    (mesh_root / "mug" / "notes.txt").symlink_to(mesh_root / "nowhere.txt")  # not named like a mesh
    source = MeshDirSource(mesh_root)
    objects = {o.object_id: o for o in source.objects()}
    assert {"gone", "loop"} <= set(objects) and "notes" not in objects
    with pytest.raises(MeshError, match=r"gone\.obj: a symbolic link to .*nowhere\.obj, which leads"):
        source.load(objects["gone"])
    with pytest.raises(MeshError, match=r"loop\.ply: a symbolic link to .*\(missing or a loop\)"):
        source.load(objects["loop"])


def test_a_broken_link_in_place_of_a_class_folder_is_refused_not_skipped(mesh_root):
    (mesh_root / "lamp").symlink_to(mesh_root / "elsewhere" / "lamp")
    with pytest.raises(SourceError, match=r"lamp: a symbolic link to .*lamp, which leads nowhere"):
        MeshDirSource(mesh_root).objects()


def test_broken_and_empty_mesh_files_are_mesh_errors(tmp_path):
    (tmp_path / "bad.obj").write_text("garbage here\nv 1 2\n")
    (tmp_path / "empty.ply").write_text("")
    (tmp_path / "nofaces.obj").write_text("v 0 0 0\nv 1 0 0\n")
    for name in ("bad.obj", "empty.ply", "nofaces.obj", "missing.stl"):
        with pytest.raises(MeshError, match=name):
            load_mesh_file(tmp_path / name)


def test_an_objects_csv_naming_a_mesh_that_is_not_there_fails_that_object_only(mesh_root, tmp_path):
    """The object stays in the dataset's list and fails to load (a failures.jsonl entry), not silently
    dropped, nor stopping the whole render."""
    objects_csv = tmp_path / "objects.csv"
    objects_csv.write_text(
        "synset,object_id,label,split,source\nbox,box0,0,train,mesh-dir\nbox,gone,0,val,mesh-dir\n"
    )
    source = MeshDirSource(mesh_root, objects_csv)
    objects = source.objects()
    assert [obj.object_id for obj in objects] == ["box0", "gone"] and objects[1].path is None
    with pytest.raises(MeshError, match=r"box: no mesh file named gone\.\*"):
        source.load(objects[1])


def test_mesh_arrays_refuse_meshes_no_renderer_could_show(tmp_path):
    triangle = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    cases = [
        (trimesh.Trimesh(triangle, np.zeros((0, 3), np.int64), process=False), "the mesh has no faces"),
        (trimesh.Trimesh(triangle, [[0, 1, 3]], process=False), r"faces name vertices outside 0\.\.2"),
        (trimesh.Trimesh(triangle, [[0, 1, -1]], process=False), r"faces name vertices outside 0\.\.2"),
        (
            trimesh.Trimesh([[np.nan, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]], process=False),
            "the mesh has non-finite vertex coordinates",
        ),
    ]
    for mesh, message in cases:
        with pytest.raises(MeshError, match=message):
            mesh_arrays_from_trimesh(mesh)
    huge = tmp_path / "huge.obj"  # finite in float64, infinite once the importer reads float32
    huge.write_text("v 1e39 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with pytest.raises(MeshError, match=r"huge.obj:1: non-finite vertex coordinates \(v 1e39 0 0\)"):
        load_mesh_file(huge)


def test_normalisation_turns_y_up_like_the_obj_importer():
    box = trimesh.creation.box((1.0, 4.0, 2.0))
    upright = mesh_arrays_from_trimesh(box, up_axis="y")
    extent = np.ptp(upright.vertices, axis=0)
    np.testing.assert_allclose(extent / extent.max(), [0.25, 0.5, 1.0])  # Y became Z, Z became -Y
    np.testing.assert_allclose(turn_z_up(np.array([[1.0, 2.0, 3.0]]), "y"), [[1.0, -3.0, 2.0]])
    with pytest.raises(MeshError, match="zero-size"):
        mesh_arrays_from_trimesh(trimesh.Trimesh(np.zeros((3, 3)), [[0, 1, 2]]))


def test_vertex_and_face_colours_are_kept():
    box = trimesh.creation.box()
    box.visual.vertex_colors = np.tile([255, 0, 0, 255], (len(box.vertices), 1))
    arrays = mesh_arrays_from_trimesh(box)
    assert arrays.color_domain == "POINT" and arrays.colors.shape == (8, 4)
    np.testing.assert_allclose(arrays.colors[0], [1.0, 0.0, 0.0, 1.0])
    box = trimesh.creation.box()
    box.visual.face_colors = np.tile([0, 255, 0, 255], (len(box.faces), 1))
    arrays = mesh_arrays_from_trimesh(box)
    assert arrays.color_domain == "CORNER" and arrays.colors.shape == (3 * len(box.faces), 4)
    assert mesh_arrays_from_trimesh(trimesh.creation.box()).colors is None


def test_procedural_source_uses_the_library():
    source = ProceduralSource(("mug", "chair"), per_class=5, seed=2)
    objects = source.objects()
    chair, mug = procedural.SYNSETS["chair"], procedural.SYNSETS["mug"]
    assert [c.synset for c in source.classes(objects)] == sorted([chair, mug])
    labels = {synset: label for label, synset in enumerate(sorted([chair, mug]))}
    assert {(o.synset, o.label) for o in objects} == set(labels.items())
    assert [o.object_id for o in objects if o.synset == mug] == [
        procedural.object_id("mug", i, 2) for i in range(5)
    ]
    assert sum(o.split == "val" for o in objects) == 2  # one of five per class
    arrays = source.load(objects[0])
    expected = procedural.make_mesh("chair", 0, 2)
    np.testing.assert_allclose(arrays.vertices, expected.vertices, atol=1e-12)
    with pytest.raises(SourceError, match="unknown procedural classes spaceship"):
        ProceduralSource(("spaceship",)).objects()


def test_source_from_options():
    assert isinstance(source_from_options(), ProceduralSource)
    assert source_from_options().per_class == 10 and source_from_options(per_class=3).per_class == 3
    with pytest.raises(SourceError, match="either"):
        source_from_options(shapenet_dir="a", mesh_dir="b")


@pytest.mark.parametrize("folder", ["shapenet_dir", "mesh_dir"])
@pytest.mark.parametrize("choice", [{"classes": ("car",)}, {"per_class": 2}])
def test_procedural_choices_are_refused_with_a_folder_source_instead_of_ignored(folder, choice):
    option = "--" + folder.replace("_", "-")
    expected = f"--classes and --per-class choose procedural objects and do not apply to {option}"
    with pytest.raises(SourceError, match=expected):
        source_from_options(**{folder: "meshes"}, **choice)


def test_class_names_are_trimmed_and_empty_ones_dropped():
    source = source_from_options(classes=("chair", " mug ", ""))
    assert source.class_names == ("chair", "mug")
    assert [o.synset for o in source.objects()[:1]] == ["03001627"]
