"""Scores of the frozen-backbone evaluations: pure functions on NumPy arrays, computed in float64.

Classification: `top_k_accuracy`, `mean_class_accuracy`. Regression: `r2_pooled` (the published SIE
code's R^2), `r2_columns` (ordinary R^2 of each output). Rotation: `quaternion_angle_deg`. Retrieval:
`ranking_metrics` (MRR, Hit@k) from the rank of the true view. Every score is a fraction, not a percentage.
"""

from __future__ import annotations

import numpy as np

#: The k of the Hit@k retrieval scores.
HIT_AT = (1, 2, 5, 10)


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Fraction of samples whose label is among the k highest logits. logits: (N, C); labels: (N,) ints.

    With k >= C every sample counts as correct. Ties between logits are broken towards the lower class
    index (a stable descending sort), so constant logits do not score above chance.
    """
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    _check_samples(logits, labels)
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def mean_class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of each class present in `labels`, averaged over those classes (balanced accuracy).

    predicted, labels: (N,) class indices.
    """
    predicted, labels = np.asarray(predicted), np.asarray(labels)
    _check_samples(predicted, labels)
    classes = np.unique(labels)
    return float(np.mean([(predicted[labels == label] == label).mean() for label in classes]))


def r2_pooled(predicted: np.ndarray, target: np.ndarray) -> float:
    """R^2 = 1 - SS_res / SS_tot over every output value at once, with SS_tot taken around the single mean
    of all target values, as the published SIE evaluation code (`r2_score` of eval_angle_prediction.py and
    eval_color_prediction.py) computes it. predicted, target: (N, K). NaN when the targets are constant.
    """
    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    _check_same_shape(predicted, target)
    total = np.sum((target - target.mean()) ** 2)
    residual = np.sum((target - predicted) ** 2)
    return float(1.0 - residual / total) if total > 0 else float("nan")


def r2_columns(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Ordinary R^2 of each output column, (K,): 1 - SS_res / SS_tot around that column's mean.
    predicted, target: (N, K). NaN for a constant column."""
    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    _check_same_shape(predicted, target)
    total = np.sum((target - target.mean(axis=0)) ** 2, axis=0)
    residual = np.sum((target - predicted) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), np.nan)


def quaternion_angle_deg(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Angle in degrees, (N,), of the rotation between each target unit quaternion and the predicted
    4-vector normalised to a unit quaternion: 2 * arccos(|<q_pred, q_target>|), in [0, 180].

    The absolute value makes q and -q the same rotation (a quaternion's sign is arbitrary). A zero
    prediction has no rotation and scores the largest error, 180 degrees. predicted, target: (N, 4).
    """
    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    _check_same_shape(predicted, target)
    if predicted.shape[-1] != 4:
        raise ValueError(f"quaternions have 4 components (x, y, z, w), got shape {predicted.shape}")
    norms = np.linalg.norm(predicted, axis=-1)
    unit = predicted / np.maximum(norms, np.finfo(np.float64).tiny)[..., None]
    target = target / np.linalg.norm(target, axis=-1, keepdims=True)
    cosine = np.clip(np.abs(np.sum(unit * target, axis=-1)), 0.0, 1.0)
    return np.degrees(2.0 * np.arccos(cosine))


def ranking_metrics(ranks: np.ndarray, hit_at: tuple[int, ...] = HIT_AT) -> dict[str, float]:
    """Mean reciprocal rank ("mrr") and Hit@k ("hit1", "hit2", ...: the fraction of queries whose true
    item ranks k or better) of 1-based ranks, any shape."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no ranks to score")
    if ranks.min() < 1:
        raise ValueError(f"ranks are 1-based, got {ranks.min()}")
    scores = {"mrr": float(np.mean(1.0 / ranks))}
    scores.update({f"hit{k}": float(np.mean(ranks <= k)) for k in hit_at})
    return scores


def expected_random_mrr(candidates: int) -> float:
    """MRR of uniformly random ranks among `candidates` items: H_n / n (the n-th harmonic number over n)."""
    return float(np.sum(1.0 / np.arange(1, candidates + 1)) / candidates)


def _check_samples(values: np.ndarray, labels: np.ndarray) -> None:
    if len(values) != len(labels) or len(labels) == 0:
        raise ValueError(f"need as many predictions as labels (> 0), got {len(values)} and {len(labels)}")


def _check_same_shape(predicted: np.ndarray, target: np.ndarray) -> None:
    if predicted.shape != target.shape or predicted.size == 0:
        raise ValueError(
            f"predicted {predicted.shape} and target {target.shape} must have one non-empty shape"
        )
