"""Retrieval and prediction error: the batched ranks equal the per-query reference loop, ties included,
and perfect or random predictions score the known values."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from benchmark.data import relative_action
from benchmark.evaluate import (
    TIE_TOLERANCE,
    expected_random_mrr,
    nearest_view_rotation_error,
    predict_views,
    prediction_error,
    retrieval_ranks,
    retrieval_ranks_loop,
    retrieval_scores,
    view_zero_queries,
)
from benchmark.evaluate import retrieval as retrieval_module
from render import spec


def _random_case(objects=30, views=50, dim=24, seed=0):
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((objects, views, dim)).astype(np.float32)
    predicted = rng.standard_normal((objects, views - 1, dim)).astype(np.float32)
    targets = np.tile(np.arange(1, views), (objects, 1))
    return predicted, embeddings, targets


def _random_latents(objects, views, seed=0):
    """(objects, views, 7) latents with rotations drawn from the published range."""
    rng = np.random.default_rng(seed)
    latents = rng.uniform(0, 1, (objects, views, spec.LATENT_DIM))
    latents[..., spec.ROTATION] = rng.uniform(-np.pi / 2, np.pi / 2, (objects, views, 3))
    return latents


def _pre_loop(predicted, embeddings, targets, latents):
    """The published PRE written out: per prediction, the nearest view by float64 cosine among all views,
    then 1 - <q_target, q_nearest>^2 of their absolute rotations."""
    count, views, dim = embeddings.shape
    bank = embeddings.reshape(-1, dim).astype(np.float64)
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    flat = latents.reshape(count * views, -1)
    errors = []
    for obj in range(count):
        for query, target in enumerate(targets[obj]):
            nearest = int(np.argmax(bank @ predicted[obj, query].astype(np.float64)))
            q_target = Rotation.from_euler("xyz", latents[obj, target, :3]).as_quat()
            q_nearest = Rotation.from_euler("xyz", flat[nearest, :3]).as_quat()
            errors.append(1.0 - float(q_target @ q_nearest) ** 2)
    return float(np.mean(errors))


def _tied_vectors(rng, shape, dim=8, nonzero=4):
    """Vectors with `nonzero` entries of +-1: every cosine is a multiple of 1/4, exact in any order."""
    vectors = np.zeros((*shape, dim), np.float32)
    flat = vectors.reshape(-1, dim)
    for row in flat:
        row[rng.choice(dim, nonzero, replace=False)] = rng.choice([-1.0, 1.0], nonzero)
    return vectors


def _ranks_by_definition(predicted, embeddings, targets):
    """The rank of each query's target written from the metric's definition, independently of the library:
    1 + the number of the object's other views whose float64 cosine to the prediction is at least the
    target's minus TIE_TOLERANCE (ties count against the prediction)."""
    ranks = np.zeros(targets.shape, np.int64)
    for obj, queries in enumerate(targets):
        for query, target in enumerate(queries):
            prediction = predicted[obj, query].astype(np.float64)
            cosines = [
                float(view @ prediction)
                / (max(np.linalg.norm(view), 1e-12) * max(np.linalg.norm(prediction), 1e-12))
                for view in embeddings[obj].astype(np.float64)
            ]
            ranks[obj, query] = 1 + sum(
                cosine >= cosines[target] - TIE_TOLERANCE
                for view, cosine in enumerate(cosines)
                if view != target
            )
    return ranks


def test_the_reference_loop_and_the_batched_ranks_follow_the_definition():
    rng = np.random.default_rng(11)
    random_case = _random_case(objects=8, seed=3)
    tied_case = (_tied_vectors(rng, (8, 49)), _tied_vectors(rng, (8, 50)), np.tile(np.arange(1, 50), (8, 1)))
    for predicted, embeddings, targets in (random_case, tied_case, _near_tie_case(objects=4)):
        expected = _ranks_by_definition(predicted, embeddings, targets)
        np.testing.assert_array_equal(retrieval_ranks_loop(predicted, embeddings, targets), expected)
        np.testing.assert_array_equal(retrieval_ranks(predicted, embeddings, targets, chunk=3), expected)


@pytest.mark.parametrize("chunk", [1, 7, 256])
def test_batched_ranks_equal_the_loop_on_random_embeddings(chunk):
    predicted, embeddings, targets = _random_case()
    targets = np.random.default_rng(5).integers(0, 50, size=targets.shape)
    batched = retrieval_ranks(predicted, embeddings, targets, chunk=chunk)
    np.testing.assert_array_equal(batched, retrieval_ranks_loop(predicted, embeddings, targets))
    assert batched.min() >= 1 and batched.max() <= 50


def test_batched_ranks_equal_the_loop_with_many_exact_ties():
    rng = np.random.default_rng(6)
    embeddings = _tied_vectors(rng, (40, 50))
    predicted = _tied_vectors(rng, (40, 49))
    targets = np.tile(np.arange(1, 50), (40, 1))
    batched = retrieval_ranks(predicted, embeddings, targets, chunk=16)
    np.testing.assert_array_equal(batched, retrieval_ranks_loop(predicted, embeddings, targets))
    similarity = np.einsum("oqd,ovd->oqv", predicted, embeddings) / 4
    target = np.take_along_axis(similarity, targets[..., None], axis=2)
    assert (np.sum(similarity == target, axis=2) > 1).mean() > 0.5, "the case must be full of ties"
    np.testing.assert_array_equal(batched, np.sum(similarity >= target, axis=2))


def _near_tie_case(objects=12, views=50, dim=512, seed=9):
    """Query 0 of every object ranks view 1 among exact copies of it (views 2, 3), copies differing in the
    last float32 bit of one entry (4-7) and copies whose cosine to the query differs from view 1's by
    -3e-9 ... 1e-8 (8-15): far below float32 resolution, around the TIE_TOLERANCE boundary."""
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((objects, views, dim)).astype(np.float32)
    predicted = rng.standard_normal((objects, views - 1, dim)).astype(np.float32)
    predicted[:, 0] = embeddings[:, 1] + 0.3 * predicted[:, 0]
    shifts = [-3e-9, -1.5e-9, -5e-10, 5e-10, 2e-9, 1e-8, -1e-8, -2e-8]
    for obj in range(objects):
        target, query = embeddings[obj, 1].astype(np.float64), predicted[obj, 0].astype(np.float64)
        cosine = query @ target / (np.linalg.norm(query) * np.linalg.norm(target))
        slope = query / (np.linalg.norm(query) * np.linalg.norm(target)) - cosine * target / (target @ target)
        k = int(np.argmax(np.abs(slope)))  # d cos / d target[k] is largest here
        embeddings[obj, 2:16] = embeddings[obj, 1]
        for view, direction in zip(range(4, 8), (np.inf, -np.inf, np.inf, -np.inf), strict=True):
            embeddings[obj, view, view] = np.nextafter(embeddings[obj, 1, view], np.float32(direction))
        for view, shift in zip(range(8, 16), shifts, strict=True):
            embeddings[obj, view, k] += np.float32(shift / slope[k])
    return predicted, embeddings, np.tile(np.arange(1, views), (objects, 1))


def _float32_only_ranks(predicted, embeddings, targets):
    """What plain float32 cosines would give (the vectorised path without its float64 near-tie pass)."""
    query = torch.nn.functional.normalize(torch.from_numpy(predicted), dim=2)
    views = torch.nn.functional.normalize(torch.from_numpy(embeddings), dim=2)
    similarity = torch.bmm(query, views.transpose(1, 2))
    target = similarity.gather(2, torch.from_numpy(targets)[..., None])
    return (similarity >= target - TIE_TOLERANCE).sum(2).numpy()


@pytest.mark.parametrize("chunk", [5, 128])
def test_near_ties_that_float32_gets_wrong_are_ranked_exactly(chunk):
    predicted, embeddings, targets = _near_tie_case()
    reference = retrieval_ranks_loop(predicted, embeddings, targets)
    # The target, its 2 copies, 4 last-bit copies and the 4 shifts above -TIE_TOLERANCE: rank 11.
    assert (reference[:, 0] == 11).all()
    assert (_float32_only_ranks(predicted, embeddings, targets) != reference).sum() > 20
    np.testing.assert_array_equal(retrieval_ranks(predicted, embeddings, targets, chunk=chunk), reference)


def test_a_few_near_ties_are_decided_one_by_one_in_float64(monkeypatch):
    """Objects with fewer near ties than views keep their float32 ranks and have just those comparisons
    decided again in float64 (here: view 2 an exact copy of view 1, view 3 one last bit away)."""
    predicted, embeddings, targets = _random_case(objects=10, seed=11)
    embeddings[:, 2] = embeddings[:, 1]
    embeddings[:, 3] = embeddings[:, 1]
    embeddings[:, 3, 0] = np.nextafter(embeddings[:, 1, 0], np.float32(np.inf))
    decided, whole = [], []
    for name, calls in (("_float64_decisions", decided), ("_float64_ranks", whole)):
        real = getattr(retrieval_module, name)
        monkeypatch.setattr(
            retrieval_module, name, lambda *args, real=real, calls=calls: calls.append(1) or real(*args)
        )
    ranks = retrieval_ranks(predicted, embeddings, targets)
    np.testing.assert_array_equal(ranks, retrieval_ranks_loop(predicted, embeddings, targets))
    assert decided and not whole
    assert (ranks[:, :3] >= 2).all(), "views 1-3 tie with one another and rank pessimistically"


def test_embeddings_beyond_float32_range_are_ranked_in_float64(monkeypatch):
    predicted, embeddings, targets = _random_case(objects=6, seed=4)
    embeddings[2] *= np.float32(1e21)  # float32 squares and products overflow here
    predicted[2] *= np.float32(1e21)
    reference = retrieval_ranks_loop(predicted, embeddings, targets)
    np.testing.assert_array_equal(retrieval_ranks(predicted, embeddings, targets), reference)
    monkeypatch.setattr(retrieval_module, "FLOAT32_SAFE_NORMS", (0.0, np.inf))
    assert (retrieval_ranks(predicted, embeddings, targets)[2] != reference[2]).any(), "float32 alone errs"


def test_ties_rank_pessimistically_so_collapse_scores_the_worst_rank():
    collapsed = np.ones((3, 50, 8), np.float32)
    predicted = np.ones((3, 49, 8), np.float32)
    targets = np.tile(np.arange(1, 50), (3, 1))
    assert (retrieval_ranks(predicted, collapsed, targets) == 50).all()
    assert (retrieval_ranks_loop(predicted, collapsed, targets) == 50).all()
    zero = np.zeros_like(collapsed)
    assert (retrieval_ranks(predicted, zero, targets) == 50).all()


def test_perfect_predictions_score_mrr_and_hit1_of_one_and_no_error():
    _, embeddings, targets = _random_case(seed=1)
    perfect = 3.0 * embeddings[:, 1:]
    scores = retrieval_scores(perfect, embeddings, targets, _random_latents(30, 50))
    assert scores["mrr"] == 1.0 and scores["hit1"] == 1.0 and scores["hit10"] == 1.0
    assert scores["emb_dist"] == pytest.approx(0.0, abs=1e-12)
    assert scores["pre"] == pytest.approx(0.0, abs=1e-12)


def test_random_predictions_score_chance():
    predicted, embeddings, targets = _random_case(objects=400, dim=64, seed=2)
    latents = _random_latents(400, 50, seed=2)
    scores = retrieval_scores(predicted, embeddings, targets, latents)
    assert scores["mrr"] == pytest.approx(expected_random_mrr(50), abs=0.005)
    assert scores["hit1"] == pytest.approx(1 / 50, abs=0.004)
    assert scores["hit10"] == pytest.approx(10 / 50, abs=0.01)
    assert scores["emb_dist"] == pytest.approx(2.0, abs=0.01)
    quaternions = Rotation.from_euler("xyz", latents[..., :3].reshape(-1, 3)).as_quat()
    pairs = np.random.default_rng(3).integers(0, len(quaternions), (2, 100_000))
    chance = np.mean(1 - np.sum(quaternions[pairs[0]] * quaternions[pairs[1]], axis=1) ** 2)
    assert scores["pre"] == pytest.approx(chance, abs=0.01)  # the nearest view is any view


@pytest.mark.parametrize("block_bytes", [4 * 60, 2**28])
def test_pre_equals_the_published_nearest_neighbour_loop(block_bytes, monkeypatch):
    monkeypatch.setattr(retrieval_module, "NEIGHBOUR_BYTES", block_bytes)
    predicted, embeddings, targets = _random_case(objects=12, views=6, dim=16, seed=4)
    latents = _random_latents(12, 6, seed=4)
    expected = _pre_loop(predicted, embeddings, targets, latents)
    blocks = []
    error = nearest_view_rotation_error(predicted, embeddings, targets, latents, on_queries=blocks.append)
    assert error == pytest.approx(expected, rel=1e-12)
    assert sum(blocks) == 12 * 5  # progress: every query once, one block per similarity block
    assert len(blocks) == (1 if block_bytes == 2**28 else 12 * 5)


def test_pre_is_the_squared_sine_of_half_the_angle_to_the_nearest_views_pose():
    """Two objects of two views; each prediction for view 1 lands on a view of the other object, whose pose
    equals view 1's (object 0's query) or is 60 degrees away from it about x (object 1's query)."""
    embeddings = np.eye(4, dtype=np.float32).reshape(2, 2, 4)
    latents = np.zeros((2, 2, spec.LATENT_DIM))
    latents[0, 1, 0], latents[1, 1, 0] = 0.3, 0.3 + np.pi / 3
    latents[1, 0, 0] = 0.3
    predicted = np.stack([embeddings[1, 0], embeddings[0, 1]])[:, None]  # (2 objects, 1 query, 4)
    error = nearest_view_rotation_error(predicted, embeddings, np.ones((2, 1), np.int64), latents)
    assert error == pytest.approx((0.0 + np.sin(np.pi / 6) ** 2) / 2)


def test_prediction_error_is_the_squared_distance_of_unit_vectors():
    predicted = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    true = np.array([[5.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    assert prediction_error(predicted, true) == pytest.approx((0 + 2 + 4) / 3)


def test_bad_inputs_are_refused():
    predicted, embeddings, targets = _random_case(objects=2)
    broken = embeddings.copy()
    broken[1, 3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        retrieval_ranks(predicted, broken, targets)
    with pytest.raises(ValueError, match="index the 50 candidates"):
        retrieval_ranks(predicted, embeddings, targets + 1)
    with pytest.raises(ValueError, match="disagree"):
        retrieval_ranks(predicted[..., :5], embeddings, targets)


def test_view_zero_queries_give_the_action_from_view_zero_to_each_view():
    rng = np.random.default_rng(7)
    latents = rng.uniform(spec.LATENT_LOW, spec.LATENT_HIGH, size=(3, 5, spec.LATENT_DIM))
    actions, targets = view_zero_queries(latents, 6)
    assert actions.shape == (3, 4, 6) and actions.dtype == np.float32
    np.testing.assert_array_equal(targets, np.tile([1, 2, 3, 4], (3, 1)))
    np.testing.assert_allclose(actions[2, 1], relative_action(latents[2, 0], latents[2, 2], 6), atol=1e-6)


def test_predict_views_applies_the_predictor_to_view_zero_in_batches(monkeypatch):
    rng = np.random.default_rng(8)
    embeddings = rng.standard_normal((5, 4, 3)).astype(np.float32)
    actions = rng.standard_normal((5, 3, 2)).astype(np.float32)
    calls = []

    def predictor(embedding: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        calls.append(len(embedding))
        return embedding * action[:, :1] + action[:, 1:]

    monkeypatch.setattr(retrieval_module, "PREDICT_BYTES", 4 * 3 * 3 * 4)
    predicted = predict_views(predictor, embeddings, actions)
    expected = embeddings[:, :1] * actions[..., :1] + actions[..., 1:]
    np.testing.assert_allclose(predicted, expected, rtol=1e-6)
    assert calls == [4, 4, 4, 3]


def test_ranks_run_and_restore_the_matmul_precision_of_a_program_that_mixed_both_apis():
    """A program that set the per-backend fp32_precision after the legacy global one (where torch's legacy
    getter raises) still gets exact ranks, and its own settings back (in a child: the state is global)."""
    script = """
import numpy as np, torch
from benchmark.evaluate import retrieval_ranks, retrieval_ranks_loop
torch.set_float32_matmul_precision("high")
torch.backends.cuda.matmul.fp32_precision = "tf32"
torch.backends.mkldnn.matmul.fp32_precision = "bf16"
rng = np.random.default_rng(0)
predicted = rng.normal(size=(6, 5, 32)).astype(np.float32)
views = rng.normal(size=(6, 8, 32)).astype(np.float32)
targets = rng.integers(0, 8, size=(6, 5))
assert (retrieval_ranks(predicted, views, targets) == retrieval_ranks_loop(predicted, views, targets)).all()
print(torch.backends.cuda.matmul.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision)
"""
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.split() == ["tf32", "bf16"]
