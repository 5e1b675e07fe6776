import math

import numpy as np
import pytest

from render import sampling, spec

#: Every latent value but the Euler angles.
OTHERS = np.arange(spec.LATENT_DIM) >= spec.ROTATION.stop


def latent_with_angles(*angles: float) -> np.ndarray:
    """A latent with these Euler angles and every other value at the low end of its range."""
    latent = spec.LATENT_LOW.copy()
    latent[spec.ROTATION] = angles
    return latent


def test_latents_have_published_layout_and_ranges():
    latents = sampling.object_latents(0, "02691156", "abc", views=2000)
    assert latents.shape == (2000, spec.LATENT_DIM) and latents.dtype == np.float64
    assert np.all(latents >= spec.LATENT_LOW) and np.all(latents <= spec.LATENT_HIGH)
    # uniform draws fill their range: each field's extremes come within 1% of its bounds
    span = spec.LATENT_HIGH - spec.LATENT_LOW
    assert np.all(latents.min(axis=0) - spec.LATENT_LOW < 0.01 * span)
    assert np.all(spec.LATENT_HIGH - latents.max(axis=0) < 0.01 * span)


def test_same_object_same_latents_other_object_other_latents():
    first = sampling.object_latents(3, "02691156", "abc", views=5)
    assert np.array_equal(first, sampling.object_latents(3, "02691156", "abc", views=5))
    assert not np.allclose(first, sampling.object_latents(3, "02691156", "abd", views=5))
    assert not np.allclose(first, sampling.object_latents(4, "02691156", "abc", views=5))
    assert not np.allclose(first, sampling.object_latents(3, "02691157", "abc", views=5))


def test_first_views_do_not_depend_on_the_view_count():
    assert np.array_equal(
        sampling.object_latents(0, "s", "o", views=3), sampling.object_latents(0, "s", "o", views=50)[:3]
    )


def test_object_seed_is_pinned():
    # a change of the hash or of the draw order would silently change every dataset already rendered
    assert sampling.object_seed(0, "02691156", "abc") == 0x9B0C60DA2DE47FF7
    np.testing.assert_allclose(
        sampling.object_latents(0, "02691156", "abc", views=1)[0, : spec.PUBLISHED_LATENT_DIM],
        [
            -0.9693465503430224,
            -0.3955615738768008,
            -0.5383082630767135,
            0.7102063880618666,
            0.24245857287804803,
            6.228101375780584,
            0.2959463882371517,
        ],
        rtol=0,
        atol=1e-15,
    )


def test_ood_rotations_avoid_the_published_range():
    latents = sampling.object_latents(0, "s", "o", views=4000, rotation="ood")
    angles = np.abs(latents[:, spec.ROTATION])
    assert np.all(angles >= math.pi / 2) and np.all(angles <= math.pi)
    assert (latents[:, spec.ROTATION] < 0).mean() == pytest.approx(0.5, abs=0.05)
    low, high = sampling.latent_bounds("ood")
    assert np.all(latents >= low) and np.all(latents <= high)
    published = sampling.object_latents(0, "s", "o", views=4000)
    assert np.array_equal(latents[:, OTHERS], published[:, OTHERS])


def test_outside_range_excludes_the_published_angles_from_an_ood_dataset():
    ood = sampling.object_latents(0, "s", "o", views=2000, rotation="ood")
    published = sampling.object_latents(0, "s", "o", views=2000)
    assert not sampling.outside_range(ood, "ood").any() and not sampling.outside_range(published).any()
    assert sampling.outside_range(published, "ood")[:, spec.ROTATION].all()
    assert not sampling.outside_range(published, "ood")[:, OTHERS].any()
    latent = ood[0].copy()
    latent[1] = 0.3
    assert np.flatnonzero(sampling.outside_range(latent, "ood")).tolist() == [1]
    edges = latent_with_angles(math.pi / 2, -math.pi / 2, math.pi / 2 - 1e-10)
    assert not sampling.outside_range(edges, "ood", tolerance=1e-9).any()
    assert np.flatnonzero(sampling.outside_range(edges, "ood")).tolist() == [2]
    corners = latent_with_angles(math.pi + 1e-10, -math.pi, 2.0)
    assert not sampling.outside_range(corners, "ood", tolerance=1e-9).any()


def test_unknown_rotation_range_is_refused():
    with pytest.raises(ValueError, match="rotation range"):
        sampling.object_latents(0, "s", "o", views=1, rotation="full")


def test_latents_are_the_draws_of_every_dataset_rendered_so_far():
    """One uniform draw per published value, view after view, from the object's generator: changing the
    draws would silently change the latents of every dataset already rendered (and their resumed objects)."""
    published = slice(0, spec.PUBLISHED_LATENT_DIM)
    rng = sampling.object_rng(5, "02691156", "abc")
    expected = rng.uniform(spec.LATENT_LOW[published], spec.LATENT_HIGH[published], size=(50, published.stop))
    np.testing.assert_array_equal(
        sampling.object_latents(5, "02691156", "abc", views=50)[:, published], expected
    )


def test_an_appended_factor_leaves_the_published_values_of_every_view_unchanged(monkeypatch):
    before = sampling.object_latents(0, "02691156", "abc", views=200, rotation="ood")
    monkeypatch.setattr(spec, "LATENT_FIELDS", (*spec.LATENT_FIELDS, "object_scale"))
    monkeypatch.setattr(spec, "LATENT_DIM", spec.LATENT_DIM + 1)
    monkeypatch.setattr(spec, "LATENT_LOW", np.append(spec.LATENT_LOW, 0.75))
    monkeypatch.setattr(spec, "LATENT_HIGH", np.append(spec.LATENT_HIGH, 1.25))
    extended = sampling.object_latents(0, "02691156", "abc", views=200, rotation="ood")
    assert extended.shape == (200, before.shape[1] + 1)
    np.testing.assert_array_equal(
        extended[:, : spec.PUBLISHED_LATENT_DIM], before[:, : spec.PUBLISHED_LATENT_DIM]
    )
    first = sampling.object_latents(0, "02691156", "abc", views=3, rotation="ood")
    np.testing.assert_array_equal(first, extended[:3])  # the first views do not depend on the view count
    assert np.all((extended[:, -1] >= 0.75) & (extended[:, -1] <= 1.25)) and extended[:, -1].std() > 0.1


def test_the_rotation_range_of_latents_without_manifest():
    rng = np.random.default_rng(3)
    for rotation in sampling.ROTATION_RANGES:
        latents = sampling.sample_latents(rng, 50, rotation=rotation)
        assert sampling.rotation_range_of(latents) == rotation
        assert all(sampling.rotation_range_of(latent) == rotation for latent in latents)
    latent = sampling.sample_latents(rng, 1, rotation="ood")[0]
    latent[0] = 1.0  # one angle inside [-pi/2, pi/2], two outside: a damaged latent tells nothing
    assert sampling.rotation_range_of(latent) is None
    latent[1:3] = 0.5, -0.25
    assert sampling.rotation_range_of(latent) == "published"
    latent[2] = np.inf
    assert sampling.rotation_range_of(latent) is None
