"""The procedural library's contract: classes and synsets, seeded determinism, normalisation, validity."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import trimesh

from render import procedural, spec
from render.procedural.export import obj_text

#: (index, seed) pairs sampled for per-instance checks: first instances, large indices, other seeds.
INSTANCES = [(0, 0), (1, 0), (2, 0), (17, 0), (3, 1), (250, 7), (12345, 3)]
#: Rendering budget per mesh (faces); the library stays well below it.
MAX_FACES = 3000


def obj_digest(class_name: str, index: int, seed: int) -> str:
    mesh = procedural.make_mesh(class_name, index, seed)
    return hashlib.sha256(obj_text(mesh, procedural.object_id(class_name, index, seed)).encode()).hexdigest()


def test_at_least_ten_classes_with_real_shapenet_synsets():
    assert len(procedural.CLASSES) >= 10
    assert list(procedural.CLASSES) == sorted(procedural.CLASSES)
    shapenet = {synset.name: synset.synset for synset in spec.shapenet_synsets()}
    assert set(procedural.SYNSETS) == set(procedural.CLASSES)
    for name, synset in procedural.SYNSETS.items():
        assert synset == shapenet[name]
        assert len(synset) == 8 and synset.isdigit()
    assert len(set(procedural.SYNSETS.values())) == len(procedural.CLASSES)


@pytest.mark.parametrize("class_name", procedural.CLASSES)
def test_instances_are_normalised_valid_and_light(class_name):
    for index, seed in INSTANCES:
        mesh = procedural.make_mesh(class_name, index, seed)
        low, high = mesh.bounds
        assert np.allclose((low + high) / 2, 0.0, atol=1e-12)
        assert np.linalg.norm(high - low) == pytest.approx(1.0, abs=1e-12)
        assert np.isfinite(mesh.vertices).all()
        assert 0 < len(mesh.faces) <= MAX_FACES
        assert mesh.area_faces.min() > 0
        assert mesh.is_winding_consistent
        # Every part is a closed surface with outward normals (positive enclosed volume).
        bodies = mesh.split(only_watertight=False)
        assert all(body.is_watertight and body.volume > 0 for body in bodies)


def test_instances_stand_upright_with_z_up():
    """Z is up as after Blender's OBJ import: flat objects are lower than they are wide, tall ones are
    tallest along Z (a Y-up mesh would swap these)."""
    for index in range(5):
        for name in ("airplane", "car", "laptop", "sofa", "bench"):
            extents = procedural.make_mesh(name, index, 0).extents
            assert extents[2] < max(extents[0], extents[1]), name
        for name in ("bottle", "guitar"):
            extents = procedural.make_mesh(name, index, 0).extents
            assert extents[2] == max(extents), name


def test_same_triple_gives_identical_obj_bytes_in_any_order():
    triples = [(name, index, seed) for name in procedural.CLASSES for index, seed in ((0, 0), (5, 2))]
    forward = [obj_digest(*triple) for triple in triples]
    backward = [obj_digest(*triple) for triple in reversed(triples)][::-1]
    assert forward == backward


def test_same_triple_gives_identical_obj_bytes_in_another_process():
    triples = [("chair", 3, 0), ("mug", 0, 5), ("bookshelf", 11, 1)]
    script = (
        "import hashlib\nfrom render import procedural\nfrom render.procedural.export import obj_text\n"
        f"for name, index, seed in reversed({triples!r}):\n"
        "    mesh = procedural.make_mesh(name, index, seed)\n"
        "    text = obj_text(mesh, procedural.object_id(name, index, seed))\n"
        "    print(hashlib.sha256(text.encode()).hexdigest())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=spec.REPO_ROOT
    )
    assert result.stdout.split()[::-1] == [obj_digest(*triple) for triple in triples]


@pytest.mark.parametrize("class_name", procedural.CLASSES)
def test_instances_vary(class_name):
    meshes = [procedural.make_mesh(class_name, index, 0) for index in range(8)]
    extents = np.array([mesh.extents for mesh in meshes])
    assert len({tuple(np.round(row, 6)) for row in extents}) == len(meshes)
    # Varied proportions: the extents spread by several percent of the diagonal across instances.
    assert extents.std(axis=0).max() > 0.02
    other_seed = procedural.make_mesh(class_name, 0, 1)
    assert not np.array_equal(other_seed.extents, meshes[0].extents)


@pytest.mark.parametrize("class_name", ["bookshelf", "chair", "bench", "airplane"])
def test_part_counts_vary(class_name):
    counts = {
        len(procedural.make_mesh(class_name, index, 0).split(only_watertight=False)) for index in range(10)
    }
    assert len(counts) >= 3


def test_object_ids_are_unique_stable_and_filesystem_safe():
    ids = [
        procedural.object_id(name, index, seed)
        for name in procedural.CLASSES
        for index in range(30)
        for seed in (0, 1, 12)
    ]
    assert len(set(ids)) == len(ids)
    assert procedural.object_id("chair", 12, 0) == "chair-s0-i00012"
    assert procedural.object_id("mug", 123456, 3) == "mug-s3-i123456"
    for identifier in ids:
        assert identifier.replace("-", "").isalnum() and identifier.isascii()
    for name, index, seed in (("chair", 12, 0), ("watercraft", 0, 99), ("mug", 123456, 3)):
        assert procedural.parse_object_id(procedural.object_id(name, index, seed)) == (name, index, seed)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("spoon", 0, 0), "unknown procedural class 'spoon'; valid classes: airplane, "),
        (("chair", -1, 0), "index must be a non-negative integer"),
        (("chair", 0, -2), "seed must be a non-negative integer"),
        (("chair", 1.5, 0), "index must be a non-negative integer"),
    ],
)
def test_bad_arguments_are_named(args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        procedural.make_mesh(*args)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        procedural.object_id(*args)


def test_parse_rejects_foreign_ids():
    for bad in ("1a2b3c", "chair-s0-00001", "chair-s-1-i00001"):
        with pytest.raises(ValueError, match="not a procedural object id"):
            procedural.parse_object_id(bad)
    misspelt = r"'chiar-s0-i00001' names no procedural class \('chiar'; the classes: "
    with pytest.raises(ValueError, match=misspelt):
        procedural.parse_object_id("chiar-s0-i00001")


def test_one_instance_has_one_id():
    """Other spellings of an instance's numbers would make one shape two objects (in train and in val)."""
    for other in ("mug-s0-i0", "mug-s00-i00000", "mug-s0-i\u0660\u0660\u0660\u0660\u0660"):
        with pytest.raises(
            ValueError, match=r"not a procedural object id as written by the library \('mug-s0-i00000'\)"
        ):
            procedural.parse_object_id(other)


def test_make_mesh_returns_a_fresh_trimesh():
    first = procedural.make_mesh("lamp", 2, 0)
    first.vertices[:] = 0.0
    second = procedural.make_mesh("lamp", 2, 0)
    assert isinstance(second, trimesh.Trimesh) and np.linalg.norm(second.extents) == pytest.approx(1.0)
