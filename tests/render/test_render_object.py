"""One object's render (`render_object`) and the dataset's preparation, with a stand-in for the Blender
scene: the order of writes, claims, failures and the settings a resumed run must share, checked without
rendering (the Blender tests in test_launch.py and test_scene.py render for real)."""

import numpy as np
import pytest

from render import writer
from render.launch import RenderConfig, plan_objects, prepare_dataset, render_object
from render.sampling import object_latents, outside_range
from render.sources import MeshError, ProceduralSource

VIEWS, SIZE = 3, 8


class StandInScene:
    """What render_object asks of render.scene.Scene; renders a flat image, fails where told."""

    def __init__(self, fail_at_view: int | None = None):
        self.fail_at_view = fail_at_view
        self.latents: list[np.ndarray] = []
        self.calls: list[str] = []

    def set_object(self, arrays):
        self.calls.append("set_object")
        return []

    def apply_latent(self, latent):
        self.latents.append(np.array(latent))

    def render(self):
        if len(self.latents) - 1 == self.fail_at_view:
            raise RuntimeError("Blender stopped")
        return np.full((SIZE, SIZE, 3), 10 * len(self.latents), np.uint8)

    def clear_object(self):
        self.calls.append("clear_object")


@pytest.fixture
def source():
    return ProceduralSource(class_names=("mug", "chair"), per_class=2)


def _config(tmp_path, **settings):
    return RenderConfig(out=tmp_path / "out", views=VIEWS, size=SIZE, quality="fast", **settings)


@pytest.mark.parametrize("rotation", ["published", "ood"])
def test_an_object_gets_every_view_with_its_own_latents_then_its_marker(source, tmp_path, rotation):
    config = _config(tmp_path, seed=4, rotation=rotation)
    obj = source.objects()[0]
    scene = StandInScene()
    outcome = render_object(scene, source, obj, config)
    folder = writer.object_dir(config.out, obj)
    expected = object_latents(4, obj.synset, obj.object_id, VIEWS, rotation)
    assert (outcome.views, outcome.failure, outcome.elsewhere) == (VIEWS, None, False)
    np.testing.assert_array_equal(np.stack(scene.latents), expected)
    for view in range(VIEWS):
        np.testing.assert_array_equal(np.load(folder / f"latent_{view}.npy"), expected[view])
    assert writer.is_complete(folder) and scene.calls == ["set_object", "clear_object"]
    assert not outside_range(expected, rotation).any()


def test_an_object_whose_render_fails_midway_is_left_incomplete(source, tmp_path):
    config = _config(tmp_path)
    obj = source.objects()[0]
    scene = StandInScene(fail_at_view=1)
    with pytest.raises(RuntimeError, match="Blender stopped"):
        render_object(scene, source, obj, config)
    assert not writer.is_complete(writer.object_dir(config.out, obj))
    assert scene.calls == ["set_object", "clear_object"]  # the scene is ready for the next object


def test_an_object_complete_or_claimed_elsewhere_is_left_alone(source, tmp_path):
    config = _config(tmp_path)
    done, busy = source.objects()[:2]
    render_object(StandInScene(), source, done, config)
    folder = writer.object_dir(config.out, busy)
    with writer.claim_object(folder) as claimed:  # another process renders it (a lock of its own)
        assert claimed
        for obj in (done, busy):
            scene = StandInScene()
            assert render_object(scene, source, obj, config).elsewhere
            assert scene.calls == [] and scene.latents == []
    assert not writer.is_complete(folder)


def test_an_object_whose_mesh_fails_is_recorded_and_skipped(source, tmp_path, monkeypatch):
    config = _config(tmp_path)
    obj = source.objects()[0]

    def broken(obj):
        raise MeshError("the mesh has no faces")

    monkeypatch.setattr(ProceduralSource, "load", lambda self, obj: broken(obj))
    outcome = render_object(StandInScene(), source, obj, config)
    assert outcome.failure == "the mesh has no faces"
    assert writer.read_failures(config.out) == {obj.key: "the mesh has no faces"}


def test_views_reach_their_names_by_rename_from_a_temporary_file_beside_them(source, tmp_path, monkeypatch):
    """A process killed while writing leaves a temporary name, never a partial image_i.jpg or latent."""
    renamed = []
    real_replace = writer.os.replace

    def replace(source_path, target):
        renamed.append((source_path, target))
        real_replace(source_path, target)

    monkeypatch.setattr(writer.os, "replace", replace)
    config = _config(tmp_path)
    obj = source.objects()[0]
    render_object(StandInScene(), source, obj, config)
    folder = writer.object_dir(config.out, obj)
    targets = {target.name for _, target in renamed}
    expected = {
        f"{kind}_{view}.{ext}" for view in range(VIEWS) for kind, ext in (("image", "jpg"), ("latent", "npy"))
    }
    assert expected | {writer.COMPLETE_MARKER} <= targets
    assert all(temp.parent == target.parent == folder and temp != target for temp, target in renamed)


def test_a_rerun_must_render_the_same_objects_with_the_same_rotation_range(source, tmp_path):
    config = _config(tmp_path)
    everything = source.objects()  # chair 0, chair 1, mug 0, mug 1
    assert plan_objects(source, limit=2) == everything[:2]
    objects = [everything[0], everything[2]]
    prepare_dataset(config, source, objects)
    prepare_dataset(config, source, objects)  # the same dataset: accepted
    swapped = [everything[1], everything[2]]  # as many objects of the same classes, another list
    with pytest.raises(writer.DatasetMismatchError, match=r"objects\.csv: the folder holds another object"):
        prepare_dataset(config, source, swapped)
    with pytest.raises(writer.DatasetMismatchError, match="rotation"):
        prepare_dataset(_config(tmp_path, rotation="ood"), source, objects)
