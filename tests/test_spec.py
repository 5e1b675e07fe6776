import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from render import spec


def test_synsets_are_sorted_label_order():
    synsets = spec.shapenet_synsets()
    assert len(synsets) == 55
    assert [s.synset for s in synsets] == sorted(s.synset for s in synsets)
    assert synsets[0].name == "airplane" and synsets[0].label == 0


def test_dataset_classes_come_from_the_manifest_in_label_order_or_are_the_shapenet_synsets():
    assert spec.dataset_classes(None) == spec.dataset_classes({"seed": 0}) == spec.shapenet_synsets()
    listed = [{"label": 1, "synset": "03001627", "name": "chair"}, {"label": 0, "synset": "b", "name": "mug"}]
    assert spec.dataset_classes({"classes": listed}) == (
        spec.Synset(0, "b", "mug"),
        spec.Synset(1, "03001627", "chair"),
    )
    rewrite = "; rerun `3die render` on the dataset to rewrite it$"
    with pytest.raises(ValueError, match=r"^manifest.json: class labels must be 0..1" + rewrite):
        spec.dataset_classes({"classes": [listed[0], {**listed[1], "label": 2}]})
    with pytest.raises(ValueError, match=r"^manifest.json: malformed classes entry \('name'\)" + rewrite):
        spec.dataset_classes({"classes": [{"label": 0, "synset": "b"}]})
    for classes in ([], "chair,mug", None):  # an empty list once passed, blaming every label later
        with pytest.raises(ValueError, match=r"^manifest.json: classes must be a non-empty list of \{label"):
            spec.dataset_classes({"classes": classes})


def test_latent_layout_matches_ranges():
    assert spec.LATENT_DIM == len(spec.LATENT_FIELDS) == len(spec.LATENT_LOW) == len(spec.LATENT_HIGH)
    assert np.all(spec.LATENT_LOW < spec.LATENT_HIGH)
    assert spec.LATENT_HIGH[spec.SPOT_PHI] == 2 * math.pi


def test_the_latent_starts_with_the_published_layout():
    """Factors are only appended: the published values keep their positions and ranges, which the published
    reader (latent[:3] for the rotation, latent[[3, 6]] for the colours) and our actions rely on."""
    published = ("rot_x", "rot_y", "rot_z", "floor_hue", "spot_theta", "spot_phi", "spot_hue")
    assert spec.PUBLISHED_LATENT_DIM == len(published) <= spec.LATENT_DIM
    assert spec.LATENT_FIELDS[: spec.PUBLISHED_LATENT_DIM] == published
    positions = (spec.ROTATION, spec.FLOOR_HUE, spec.SPOT_THETA, spec.SPOT_PHI, spec.SPOT_HUE)
    assert positions == (slice(0, 3), 3, 4, 5, 6)
    half = math.pi / 2
    np.testing.assert_array_equal(spec.LATENT_LOW[:7], [-half, -half, -half, 0, 0, 0, 0])
    np.testing.assert_array_equal(spec.LATENT_HIGH[:7], [half, half, half, 1, math.pi / 4, 2 * math.pi, 1])
    published_actions = {name: spec.ACTION_FACTORS[name] for name in ("rotation", "rotation+color")}
    assert published_actions == {"rotation": (), "rotation+color": (3, 6)}


def test_the_scene_and_the_normalisation_are_the_published_ones():
    """The values of the published scene and training normalisation, written here as the 3DIEBench
    description gives them (the renderer and the loaders read them from `spec`, so only this test pins
    them)."""
    published = {
        "FLOOR_Z": -1.0,
        "FLOOR_SIZE": 10_000.0,
        "FLOOR_SATURATION": 0.6,
        "FLOOR_VALUE": 0.6,
        "SUN_ENERGY": 1.5,
        "SUN_ANGLE": math.pi / 2,
        "SPOT_ENERGY": 500.0,
        "SPOT_SIZE": math.pi / 8,
        "SPOT_RADIUS": 4.0,
        "SPOT_SATURATION": 1.0,
        "SPOT_VALUE": 0.8,
        "CAMERA_DISTANCE": 2.5,
        "CAMERA_THETA": math.pi / 4,
        "CAMERA_PHI": math.pi / 2,
        "PUBLISHED_SAMPLES": 100,
        "IMAGE_MEAN": (0.5016, 0.5037, 0.5060),
        "IMAGE_STD": (0.1030, 0.0999, 0.0969),
    }
    assert {name: getattr(spec, name) for name in published} == published


def test_spherical_convention():
    x, y, z = spec.spherical_to_cartesian(spec.CAMERA_DISTANCE, spec.CAMERA_THETA, spec.CAMERA_PHI)
    assert abs(x) < 1e-12 and y > 0 and z > 0
    assert math.isclose(math.hypot(x, y, z), spec.CAMERA_DISTANCE)


def elementary(axis: int, angle: float) -> np.ndarray:
    """The 3x3 matrix of a right-handed rotation by `angle` about coordinate axis `axis`, written out."""
    c, s = math.cos(angle), math.sin(angle)
    return [
        np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    ][axis]


def test_the_action_is_r1_inverse_r2_with_extrinsic_xyz_euler_angles():
    """The published convention: R = Rz(latent[2]) Ry(latent[1]) Rx(latent[0]) (extrinsic XYZ), and the
    action from view 1 to view 2 is the quaternion (x, y, z, w) of R1^-1 R2."""
    from benchmark.data.pairs import relative_action

    generator = np.random.default_rng(0)
    latents = generator.uniform(spec.LATENT_LOW, spec.LATENT_HIGH, size=(2, spec.LATENT_DIM))
    rx, ry, rz = latents[:, spec.ROTATION].T
    r1, r2 = (elementary(2, rz[v]) @ elementary(1, ry[v]) @ elementary(0, rx[v]) for v in range(2))
    action = relative_action(latents[0], latents[1]).astype(np.float64)
    assert action.shape == (4,) and math.isclose(np.linalg.norm(action), 1.0, rel_tol=1e-6)
    np.testing.assert_allclose(Rotation.from_quat(action).as_matrix(), r1.T @ r2, atol=1e-6)
