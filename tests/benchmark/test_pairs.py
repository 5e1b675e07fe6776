"""View pairs: distinct uniform views, exact actions, per-epoch sharding, no repeats across workers."""

import math
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from torch.utils.data import DataLoader

from benchmark.data import (
    EpochsSampler,
    ObjectSampler,
    ViewPairs,
    draw_view_pairs,
    normalise_views,
    open_dataset,
)
from benchmark.data import relative_action as action_of
from benchmark.data.pairs import ACTION_LAYOUTS, QUATERNION_DIM
from render import spec
from sie_models import ACTION_DIMS


def test_pairs_are_two_distinct_views_and_use_all_fifty_uniformly():
    sampler = ObjectSampler(2000, views=50, seed=0)
    draws = [(key.first, key.second) for epoch in range(3) for key in sampler.keys(epoch)]
    assert all(first != second for first, second in draws)
    counts = Counter(view for pair in draws for view in pair)
    assert sorted(counts) == list(range(50))
    expected = 2 * len(draws) / 50  # 240
    assert min(counts.values()) > 0.75 * expected and max(counts.values()) < 1.25 * expected
    ordered_pairs = 50 * 49
    expected_coverage = ordered_pairs * (1 - math.exp(-len(draws) / ordered_pairs))  # uniform over pairs
    assert abs(len(set(draws)) - expected_coverage) < 0.03 * ordered_pairs
    firsts = Counter(first for first, _ in draws)
    assert min(firsts.values()) > 0.6 * len(draws) / 50, "the first view is uniform too"


def test_draws_depend_on_seed_epoch_and_rank_and_are_reproducible():
    pairs = draw_view_pairs(0, epoch=1, rank=0, count=100, views=50)
    assert pairs.shape == (100, 2)
    np.testing.assert_array_equal(pairs, draw_view_pairs(0, 1, 0, 100, 50))
    for other in (
        draw_view_pairs(1, 1, 0, 100, 50),
        draw_view_pairs(0, 2, 0, 100, 50),
        draw_view_pairs(0, 1, 1, 100, 50),
    ):
        assert (other != pairs).any(axis=1).mean() > 0.9
    with pytest.raises(ValueError, match="at least 2 views"):
        draw_view_pairs(0, 0, 0, 10, 1)


def _rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """Extrinsic x, then y, then z rotation, written out by hand: Rz @ Ry @ Rx."""
    x, y, z = angles
    rx = np.array([[1, 0, 0], [0, math.cos(x), -math.sin(x)], [0, math.sin(x), math.cos(x)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(z), -math.sin(z), 0], [math.sin(z), math.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _quaternion_matrix(quaternion: np.ndarray) -> np.ndarray:
    x, y, z, w = quaternion
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def test_action_is_the_relative_rotation_quaternion_and_hue_differences(synthetic_dataset):
    pairs = ViewPairs(open_dataset(synthetic_dataset.root), image_size=16, seed=3, action_dim=6)
    keys = ObjectSampler(len(pairs), views=50, seed=3).keys(epoch=0)
    batch = pairs.collate([pairs[key] for key in keys])
    assert batch["action"].shape == (len(keys), 6) and batch["action"].dtype == torch.float32
    assert batch["view1"].shape == (len(keys), 16, 16, 3) and batch["view1"].dtype == torch.uint8
    for row, key in enumerate(keys):
        item = {name: values[row] for name, values in batch.items()}
        first, second = item["views"].tolist()
        assert (item["index"].item(), first, second) == (key.index, key.first, key.second)
        assert item["label"].item() == synthetic_dataset.labels["train"][key.index]
        latents = synthetic_dataset.latents[synthetic_dataset.splits["train"][key.index]]
        latent1, latent2 = latents[first], latents[second]
        quaternion = item["action"][:4].numpy().astype(np.float64)
        assert np.linalg.norm(quaternion) == pytest.approx(1, abs=1e-6)
        relative = _rotation_matrix(latent1[spec.ROTATION]).T @ _rotation_matrix(latent2[spec.ROTATION])
        np.testing.assert_allclose(_quaternion_matrix(quaternion), relative, atol=1e-6)
        scipy_quaternion = (
            Rotation.from_euler("xyz", latent1[0:3]).inv() * Rotation.from_euler("xyz", latent2[0:3])
        ).as_quat()
        np.testing.assert_allclose(quaternion, scipy_quaternion, atol=1e-6)
        hue_differences = [latent2[3] - latent1[3], latent2[6] - latent1[6]]
        np.testing.assert_allclose(item["action"][4:].numpy(), hue_differences, atol=1e-6)
        np.testing.assert_array_equal(item["view1"].numpy(), pairs.views.image(key.index, first, 16))
        np.testing.assert_array_equal(item["view2"].numpy(), pairs.views.image(key.index, second, 16))


def test_relative_action_is_vectorised_and_checks_its_layout():
    latents = np.random.default_rng(0).uniform(
        spec.LATENT_LOW, spec.LATENT_HIGH, size=(2, 5, spec.LATENT_DIM)
    )
    batched = action_of(latents[0], latents[1])
    assert batched.shape == (5, 4) and batched.dtype == np.float32
    np.testing.assert_array_equal(batched[2], action_of(latents[0, 2], latents[1, 2]))
    identity = action_of(latents[0, 0], latents[0, 0])
    np.testing.assert_allclose(np.abs(identity), [0, 0, 0, 1], atol=1e-6)
    with pytest.raises(ValueError, match=r"action_dim must be 4 \(rotation\) or 6 \(rotation\+color\)"):
        action_of(latents[0, 0], latents[1, 0], action_dim=3)


def test_every_action_of_the_methods_has_one_layout_of_its_size():
    """The methods size their predictors by name (sie_models.ACTION_DIMS), the data builds actions by size
    (render.spec.ACTION_FACTORS): both must list the same actions, and no two actions share a size."""
    sizes = {name: QUATERNION_DIM + len(factors) for name, factors in spec.ACTION_FACTORS.items()}
    assert sizes == ACTION_DIMS
    assert len(ACTION_LAYOUTS) == len(spec.ACTION_FACTORS)
    latents = np.random.default_rng(1).uniform(spec.LATENT_LOW, spec.LATENT_HIGH, size=(2, spec.LATENT_DIM))
    for name, factors in spec.ACTION_FACTORS.items():
        action = action_of(latents[0], latents[1], ACTION_DIMS[name])
        differences = latents[1, list(factors)] - latents[0, list(factors)]
        np.testing.assert_allclose(action[QUATERNION_DIM:], differences, atol=1e-6)


def test_sampler_shards_each_epoch_across_ranks_and_skips_consumed_samples():
    samplers = [ObjectSampler(10, views=5, seed=0, rank=rank, world_size=3) for rank in range(3)]
    for sampler in samplers:
        sampler.set_epoch(2)
    shards = [list(sampler) for sampler in samplers]
    assert all(len(shard) == 4 for shard in shards)
    indices = [key.index for shard in shards for key in shard]
    assert sorted(set(indices)) == list(range(10)) and len(indices) == 12  # padded by repeating 2
    assert all(key.epoch == 2 and key.rank == rank for rank, shard in enumerate(shards) for key in shard)
    assert [key.position for key in shards[1]] == [0, 1, 2, 3]
    assert samplers[0].order(2).tolist() != samplers[0].order(3).tolist()
    again = ObjectSampler(10, views=5, seed=0, rank=0, world_size=3)
    assert again.keys(2) == samplers[0].keys(2)
    samplers[0].set_epoch(2, start=3)
    assert list(samplers[0]) == shards[0][3:] and len(samplers[0]) == 1


def test_epochs_sampler_resumes_inside_the_first_epoch_only():
    """A run resumed at sample `start` of its first epoch: that epoch from there, then whole epochs (each
    cut to `per_epoch` samples), as many as the length says."""
    sampler = ObjectSampler(10, views=5, seed=0)
    resumed = EpochsSampler(sampler, first=4, last=7, start=3)
    expected = sampler.keys(4)[3:] + sampler.keys(5) + sampler.keys(6)
    assert list(resumed) == expected and len(resumed) == len(expected) == 27
    cut = EpochsSampler(sampler, first=4, last=6, per_epoch=8, start=2)
    assert list(cut) == sampler.keys(4)[2:8] + sampler.keys(5)[:8] and len(cut) == 14
    endless = iter(EpochsSampler(sampler, first=0, last=None, start=9))
    assert [next(endless) for _ in range(11)] == sampler.keys(0)[9:] + sampler.keys(1)
    with pytest.raises(ValueError, match=r"start must be in 0\.\.10"):
        EpochsSampler(sampler, first=0, last=1, start=11)


def _epoch_pairs(dataset, workers: int, epochs: int) -> list[tuple[int, int, tuple[int, int]]]:
    sampler = ObjectSampler(len(dataset), views=50, seed=0)
    loader = DataLoader(
        dataset,
        batch_size=3,
        sampler=sampler,
        collate_fn=dataset.collate,
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    drawn = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for batch in loader:
            drawn += [
                (epoch, int(index), tuple(views))
                for index, views in zip(batch["index"], batch["views"].tolist(), strict=True)
            ]
    return drawn


def test_two_dataloader_workers_do_not_repeat_each_other(synthetic_dataset):
    dataset = ViewPairs(open_dataset(synthetic_dataset.root), image_size=8, seed=0)
    with_workers = _epoch_pairs(dataset, workers=2, epochs=4)
    assert with_workers == _epoch_pairs(dataset, workers=0, epochs=4), "pairs do not depend on the workers"
    batches = [tuple(pair for _, _, pair in with_workers[start : start + 3]) for start in range(0, 36, 3)]
    assert len(set(batches)) == len(batches), "consecutive batches (alternate workers) draw different views"
    for epoch in range(4):
        assert sorted(index for e, index, _ in with_workers if e == epoch) == list(range(9))
    pairs = [pair for _, _, pair in with_workers]
    assert len(set(pairs)) > 30


def test_an_object_index_gives_the_unshuffled_epoch_zero_pair(synthetic_dataset):
    pairs = ViewPairs(open_dataset(synthetic_dataset.root), image_size=8, seed=5)
    key = ObjectSampler(len(pairs), views=50, seed=5, shuffle=False).keys(0)[4]
    item = pairs[4]
    assert (item["index"], item["views"]) == (4, (key.first, key.second))
    assert item["view1"].shape == (8, 8, 3) and item["latent1"].shape == (spec.LATENT_DIM,)


def test_normalise_views_scales_and_normalises_per_channel():
    images = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    images[..., 0] = 255
    images[1, ..., 2] = 51
    normalised = normalise_views(images)
    assert normalised.shape == (2, 3, 4, 4) and normalised.dtype == torch.float32
    mean, std = spec.IMAGE_MEAN, spec.IMAGE_STD
    assert normalised[0, 0, 0, 0].item() == pytest.approx((1 - mean[0]) / std[0], rel=1e-5)
    assert normalised[0, 1, 2, 3].item() == pytest.approx((0 - mean[1]) / std[1], rel=1e-5)
    assert normalised[1, 2, 1, 1].item() == pytest.approx((0.2 - mean[2]) / std[2], rel=1e-5)
