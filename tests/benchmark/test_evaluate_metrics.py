"""benchmark.evaluate.metrics on constructed cases with known answers."""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from benchmark.evaluate import (
    expected_random_mrr,
    mean_class_accuracy,
    quaternion_angle_deg,
    r2_columns,
    r2_pooled,
    ranking_metrics,
    top_k_accuracy,
)


def test_top_k_accuracy_of_perfect_random_and_constant_logits():
    rng = np.random.default_rng(0)
    labels = rng.integers(10, size=20_000)
    perfect = np.eye(10)[labels]
    assert top_k_accuracy(perfect, labels, 1) == 1.0
    random = rng.standard_normal((len(labels), 10))
    assert top_k_accuracy(random, labels, 1) == pytest.approx(0.1, abs=0.01)
    assert top_k_accuracy(random, labels, 5) == pytest.approx(0.5, abs=0.015)
    assert top_k_accuracy(random, labels, 10) == 1.0
    # Ties go to the lowest class index, so constant logits score the share of class 0 only.
    assert top_k_accuracy(np.zeros((4, 3)), np.array([0, 1, 2, 0]), 1) == 0.5


def test_top_k_accuracy_counts_the_label_among_the_k_best():
    logits = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
    assert top_k_accuracy(logits, np.array([2, 2]), 1) == 0.0
    assert top_k_accuracy(logits, np.array([2, 2]), 2) == 0.5


def test_mean_class_accuracy_weights_classes_equally():
    labels = np.array([0] * 9 + [1])
    always_zero = np.zeros(10, dtype=int)
    assert top_k_accuracy(np.eye(2)[always_zero], labels, 1) == 0.9
    assert mean_class_accuracy(always_zero, labels) == 0.5
    assert mean_class_accuracy(labels, labels) == 1.0


def test_mean_class_accuracy_averages_the_classes_of_the_labels_only():
    """A class the probe predicts but no validation view has is no class of the average."""
    assert mean_class_accuracy(np.array([0, 2]), np.array([0, 0])) == 0.5
    assert mean_class_accuracy(np.array([0, 2, 2, 1]), np.array([0, 1, 1, 1])) == (1 + 1 / 3) / 2


def test_r2_pooled_uses_one_mean_over_all_components():
    target = np.array([[0.0, 10.0], [2.0, 12.0]])
    column_means = np.array([[1.0, 11.0], [1.0, 11.0]])
    # SS_res = 4 x 1; SS_tot around the overall mean 6: 36 + 16 + 16 + 36 = 104.
    assert r2_pooled(column_means, target) == pytest.approx(1 - 4 / 104)
    np.testing.assert_allclose(r2_columns(column_means, target), [0.0, 0.0])
    assert r2_pooled(target, target) == 1.0
    assert r2_pooled(np.full_like(target, target.mean()), target) == 0.0


def test_r2_of_noisy_predictions_and_constant_targets():
    rng = np.random.default_rng(1)
    target = rng.standard_normal((50_000, 3))
    noisy = target + 0.5 * rng.standard_normal(target.shape)
    assert r2_pooled(noisy, target) == pytest.approx(0.75, abs=0.01)
    np.testing.assert_allclose(r2_columns(noisy, target), 0.75, atol=0.01)
    assert math.isnan(r2_pooled(np.zeros((3, 2)), np.ones((3, 2))))
    assert np.isnan(r2_columns(np.zeros((3, 2)), np.c_[np.ones(3), [1.0, 2.0, 3.0]])[0])


def test_quaternion_angle_handles_sign_scale_and_known_angles():
    rng = np.random.default_rng(2)
    rotations = Rotation.random(100, random_state=3)
    quaternions = rotations.as_quat()
    np.testing.assert_allclose(quaternion_angle_deg(quaternions, quaternions), 0.0, atol=1e-5)
    np.testing.assert_allclose(quaternion_angle_deg(-quaternions, quaternions), 0.0, atol=1e-5)
    scale = rng.uniform(0.1, 3, size=(100, 1))
    np.testing.assert_allclose(quaternion_angle_deg(scale * quaternions, quaternions), 0.0, atol=1e-5)
    angles = rng.uniform(0, np.pi, size=100)
    turned = (rotations * Rotation.from_rotvec(np.c_[angles, np.zeros((100, 2))])).as_quat()
    np.testing.assert_allclose(quaternion_angle_deg(turned, quaternions), np.degrees(angles), atol=1e-5)
    assert quaternion_angle_deg(np.zeros((1, 4)), quaternions[:1])[0] == 180.0


def test_ranking_metrics_of_known_ranks():
    scores = ranking_metrics(np.array([1, 2, 4, 20]))
    assert scores["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4 + 1 / 20) / 4)
    assert (scores["hit1"], scores["hit2"], scores["hit5"], scores["hit10"]) == (0.25, 0.5, 0.75, 0.75)
    with pytest.raises(ValueError, match="1-based"):
        ranking_metrics(np.array([0, 1]))


def test_expected_random_mrr_matches_uniform_ranks():
    ranks = np.random.default_rng(4).integers(1, 51, size=200_000)
    assert expected_random_mrr(50) == pytest.approx(ranking_metrics(ranks)["mrr"], abs=0.002)
    assert expected_random_mrr(50) == pytest.approx(sum(1 / k for k in range(1, 51)) / 50)
    assert expected_random_mrr(1) == 1.0
