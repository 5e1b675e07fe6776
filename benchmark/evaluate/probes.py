"""Probes trained on frozen features: a linear classifier, and MLP heads that regress what changed
between two views of an object (the relative rotation, the floor and spot hue differences).

Every probe trains on the train split's cached features and is scored once, after its last epoch, on
the validation split (no selection on validation). Settings follow the published SIE evaluation code
(eval_classification.py, eval_angle_prediction.py, eval_color_prediction.py): Adam, lr 1e-3, no weight
decay, batch 256, no learning-rate schedule; each epoch draws one random view (classification) or one
random pair of distinct views (regression) per training object (`samples_per_object` draws more, for
datasets with few objects, where one sample per object makes a handful of steps per epoch), and the
regression head is the published
"deep end" MLP 2D -> 1024 -> 1024 -> K with ReLUs, trained with the mean squared error. We differ in what
we score on: the published scripts draw fresh random views and pairs for validation every epoch with an
unseeded generator; we score the classifier on every view of every validation object and the regression
heads on a fixed, seeded set of `val_pairs` pairs per validation object, so reruns give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from benchmark.data import relative_action
from benchmark.data.pairs import QUATERNION_DIM
from benchmark.evaluate.metrics import (
    mean_class_accuracy,
    quaternion_angle_deg,
    r2_columns,
    r2_pooled,
    top_k_accuracy,
)
from render import spec

#: Separate random streams per probe, so that e.g. rotation and colour heads see independent pairs.
CLASSIFICATION_STREAM, ROTATION_STREAM, COLOUR_STREAM = 1, 2, 3
#: Stream tag of the fixed validation pairs.
VALIDATION = 1_000_000
#: Samples per forward pass when scoring.
SCORE_BATCH = 8192


#: Largest probe sizes accepted: far above the published ones (1 sample, 10 pairs, 1024 hidden units), low
#: enough that a slip of extra digits is one line rather than an overflow inside NumPy or torch.
#: Upper bounds of the probe settings: beyond them a run only fails later (a 16384-wide hidden layer and its
#: Adam states already take 4 GB) or repeats itself (epochs).
PROBE_MAXIMA = {
    "epochs": 100_000,
    "samples_per_object": 10_000,
    "val_pairs": 10_000,
    "hidden": 16_384,
    "batch_size": 1 << 20,
}


@dataclass(frozen=True)
class ProbeSettings:
    """How a probe trains: epochs over the train objects, views or pairs drawn per object each epoch
    (1: the published protocol), Adam batch size, learning rate and weight decay, MLP hidden width
    (regression heads), validation pairs per object, and the seed of the head's initialisation and of the
    views drawn each epoch."""

    epochs: int
    samples_per_object: int = 1
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    hidden: int = 1024
    val_pairs: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "samples_per_object", "batch_size", "hidden", "val_pairs"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"probe {name} must be at least 1, got {value}")
            if value > PROBE_MAXIMA.get(name, value):
                raise ValueError(f"probe {name} must be at most {PROBE_MAXIMA[name]}, got {value}")
        if not 0 < self.lr < math.inf or not 0 <= self.weight_decay < math.inf:
            raise ValueError(
                f"probe lr must be positive and weight decay not negative, both finite, "
                f"got {self.lr} and {self.weight_decay}"
            )


# --- classification --------------------------------------------------------------------------------
def classification_probe(
    train_features: torch.Tensor,
    train_labels: np.ndarray,
    val_features: torch.Tensor,
    val_labels: np.ndarray,
    num_classes: int,
    settings: ProbeSettings,
    on_epoch: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Linear classifier on single views: top-1, top-5 and mean per-class accuracy on every validation view.

    features: (N, V, D) float tensors on the device the probe runs on; labels: (N,) int64. `on_epoch` is
    called after every epoch (progress).
    """
    device = train_features.device
    head = _seeded(lambda: nn.Linear(train_features.shape[-1], num_classes), settings.seed, device)
    optimiser = torch.optim.Adam(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    labels = torch.as_tensor(train_labels, dtype=torch.int64, device=device)
    count, views = train_features.shape[:2]
    drawn_objects = np.repeat(np.arange(count), settings.samples_per_object)
    for epoch in range(settings.epochs):
        generator = np.random.default_rng([settings.seed, CLASSIFICATION_STREAM, epoch])
        chosen_views = generator.integers(views, size=len(drawn_objects))
        for batch in _batches(generator.permutation(len(drawn_objects)), settings.batch_size):
            objects = torch.as_tensor(drawn_objects[batch], device=device)
            inputs = train_features[objects, torch.as_tensor(chosen_views[batch], device=device)]
            _step(optimiser, F.cross_entropy(head(inputs), labels[objects]))
        if on_epoch is not None:
            on_epoch()
    flat = val_features.reshape(-1, val_features.shape[-1])
    logits = _score(head, len(flat), lambda rows: flat[rows])
    view_labels = np.repeat(np.asarray(val_labels), val_features.shape[1])
    return classification_scores(logits, view_labels)


def classification_scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """top1, top5 and mean_class_acc (fractions) of logits (N, C) against labels (N,)."""
    return {
        "top1": top_k_accuracy(logits, labels, 1),
        "top5": top_k_accuracy(logits, labels, 5),
        "mean_class_acc": mean_class_accuracy(np.argmax(logits, axis=1), labels),
    }


# --- pair regression ----------------------------------------------------------------------------------
def rotation_probe(
    train_features: torch.Tensor,
    train_latents: np.ndarray,
    val_features: torch.Tensor,
    val_latents: np.ndarray,
    settings: ProbeSettings,
    on_epoch: Callable[[], None] | None = None,
) -> dict[str, float]:
    """MLP on the concatenated pair of representations predicting the relative rotation quaternion
    (x, y, z, w) of R1^-1 R2, SciPy's sign as in training. Scores: "r2" (`r2_pooled` over the 4
    components, the published definition), "r2_components" (the mean of the 4 components' own R^2) and
    "angle_deg" (mean `quaternion_angle_deg`).

    The pooled R^2 measures spread around one mean of all components, so a head that only learns each
    component's mean (as it does from features with no rotation information) already scores above 0 (about
    0.2 on the published rotation range); "r2_components" is 0 for such a head.
    """
    predicted, target = pair_regression_probe(
        train_features,
        train_latents,
        val_features,
        val_latents,
        rotation_targets,
        QUATERNION_DIM,
        ROTATION_STREAM,
        settings,
        on_epoch,
    )
    return {
        "r2": r2_pooled(predicted, target),
        "r2_components": float(np.mean(r2_columns(predicted, target))),
        "angle_deg": float(np.mean(quaternion_angle_deg(predicted, target))),
    }


def colour_probe(
    train_features: torch.Tensor,
    train_latents: np.ndarray,
    val_features: torch.Tensor,
    val_latents: np.ndarray,
    settings: ProbeSettings,
    on_epoch: Callable[[], None] | None = None,
) -> dict[str, float]:
    """MLP on the concatenated pair predicting the floor-hue and spot-hue differences (view 2 minus view 1,
    in [-1, 1]). Scores: "r2" (`r2_pooled` over both, the published definition), "r2_floor", "r2_spot"."""
    predicted, target = pair_regression_probe(
        train_features,
        train_latents,
        val_features,
        val_latents,
        colour_targets,
        len(spec.COLOUR),
        COLOUR_STREAM,
        settings,
        on_epoch,
    )
    floor, spot = r2_columns(predicted, target)
    return {"r2": r2_pooled(predicted, target), "r2_floor": float(floor), "r2_spot": float(spot)}


def pair_regression_probe(
    train_features: torch.Tensor,
    train_latents: np.ndarray,
    val_features: torch.Tensor,
    val_latents: np.ndarray,
    targets_of: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    outputs: int,
    stream: int,
    settings: ProbeSettings,
    on_epoch: Callable[[], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train an MLP head on pairs of train views, then predict the fixed validation pairs.

    features: (N, V, D) tensors; latents: (N, V, LATENT_DIM); `targets_of(latents, objects, first,
    second)` gives the (P, outputs) regression targets of pairs. Returns (predicted, target), both
    (P_val, K) float64.
    """
    device = train_features.device
    count, views = train_features.shape[:2]
    head = _seeded(
        lambda: pair_head(2 * train_features.shape[-1], settings.hidden, outputs), settings.seed, device
    )
    optimiser = torch.optim.Adam(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    for epoch in range(settings.epochs):
        generator = np.random.default_rng([settings.seed, stream, epoch])
        objects, first, second = draw_pairs(generator, count, views, settings.samples_per_object)
        target = torch.as_tensor(targets_of(train_latents, objects, first, second), device=device)
        for batch in _batches(generator.permutation(len(objects)), settings.batch_size):
            inputs = _pair_inputs(train_features, objects[batch], first[batch], second[batch])
            _step(optimiser, F.mse_loss(head(inputs), target[batch]))
        if on_epoch is not None:
            on_epoch()
    generator = np.random.default_rng([settings.seed, stream, VALIDATION])
    objects, first, second = draw_pairs(generator, *val_features.shape[:2], settings.val_pairs)
    predicted = _score(
        head, len(objects), lambda rows: _pair_inputs(val_features, objects[rows], first[rows], second[rows])
    )
    return predicted, np.asarray(targets_of(val_latents, objects, first, second), np.float64)


def pair_head(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """The published rotation and colour head: Linear-ReLU-Linear-ReLU-Linear."""
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, outputs)
    )


def draw_pairs(
    generator: np.random.Generator, objects: int, views: int, per_object: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`per_object` ordered pairs of distinct views of every object, uniformly at random.
    Returns (object, first view, second view), each (objects * per_object,) int64, grouped by object."""
    if views < 2:
        raise ValueError(f"pair probes need at least 2 views per object, got {views}")
    object_index = np.repeat(np.arange(objects, dtype=np.int64), per_object)
    first = generator.integers(views, size=len(object_index))
    second = (first + generator.integers(1, views, size=len(object_index))) % views
    return object_index, first, second


def rotation_targets(
    latents: np.ndarray, objects: np.ndarray, first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """(P, 4) float32 quaternions of R_first^-1 R_second (`benchmark.data.relative_action`)."""
    return relative_action(latents[objects, first], latents[objects, second], QUATERNION_DIM)


def colour_targets(
    latents: np.ndarray, objects: np.ndarray, first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """(P, 2) float32 floor-hue and spot-hue differences (`render.spec.COLOUR`), second view minus first."""
    return latent_differences(latents, objects, first, second, spec.COLOUR)


def latent_differences(
    latents: np.ndarray, objects: np.ndarray, first: np.ndarray, second: np.ndarray, fields: tuple[int, ...]
) -> np.ndarray:
    """(P, len(fields)) float32: the latent values `fields` of the second view minus the first's."""
    columns = list(fields)
    return (latents[objects, second][:, columns] - latents[objects, first][:, columns]).astype(np.float32)


# --- helpers ---------------------------------------------------------------------------------------
def _pair_inputs(
    features: torch.Tensor, objects: np.ndarray, first: np.ndarray, second: np.ndarray
) -> torch.Tensor:
    device = features.device
    index = torch.as_tensor(objects, device=device)
    return torch.cat(
        [
            features[index, torch.as_tensor(first, device=device)],
            features[index, torch.as_tensor(second, device=device)],
        ],
        dim=1,
    )


def _seeded(build, seed: int, device: torch.device) -> nn.Module:
    """Build a module with its initial weights drawn on the CPU from `seed`, then move it to `device`,
    leaving every global torch generator (CPU and CUDA) as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)
        return build().to(device)


def _batches(order: np.ndarray, size: int):
    for start in range(0, len(order), size):
        yield order[start : start + size]


def _step(optimiser: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


class ProbeDivergedError(ValueError):
    """A probe whose head gives non-finite outputs: its training diverged (too high a learning rate)."""


@torch.no_grad()
def _score(head: nn.Module, count: int, inputs_of: Callable[[slice], torch.Tensor]) -> np.ndarray:
    """Head outputs (count, K) float64 for the inputs `inputs_of(rows)` gives, in batches of rows;
    ProbeDivergedError when some are not finite."""
    outputs = [
        head(inputs_of(slice(start, start + SCORE_BATCH))).double().cpu()
        for start in range(0, count, SCORE_BATCH)
    ]
    scores = torch.cat(outputs).numpy()
    if not np.isfinite(scores).all():
        raise ProbeDivergedError("its head diverged (non-finite outputs)")
    return scores
