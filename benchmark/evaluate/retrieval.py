"""Predictor quality: prediction error (PRE) and retrieval (MRR, Hit@k) on the validation views.

For every object, the method's predictor takes the equivariant embedding of view 0 and the action from
view 0 to view i (i = 1..V-1) and predicts view i's embedding; the true view i is then ranked among the
object's V view embeddings (view 0 included) by cosine similarity. This follows the published SIE code
(eval_MRR_Hk.py), which uses the equivariant projector's output, L2-normalises predictions and targets
and ranks within the object; it also scores i = 0 (the identity action), which we leave out.

Ranks are computed in float64, and a candidate whose cosine similarity is within `TIE_TOLERANCE` of the
true view's counts as a tie; ties rank pessimistically (the true view is placed after every tied
candidate), so a collapsed embedding scores the worst rank instead of a lucky one. `retrieval_ranks` is
the batched implementation; `retrieval_ranks_loop` is the plain per-query reference it must equal.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from benchmark.data import relative_action
from benchmark.evaluate.metrics import ranking_metrics

#: Cosine similarities closer than this to the true view's count as ties (float64 rounding is ~1e-16).
TIE_TOLERANCE = 1e-9
#: Vectors shorter than this are left at zero length by normalisation (cosine 0 with everything).
UNIT_EPS = 1e-12
#: Objects per batched similarity block in `retrieval_ranks` (64 x 50 x 1024 float64: 26 MB).
RANK_CHUNK = 64
#: Bytes of per-sample predictor weights (a hypernetwork's d x d matrices) allowed per predictor call.
PREDICT_BYTES = 2**28

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def retrieval_scores(
    predicted: np.ndarray, embeddings: np.ndarray, targets: np.ndarray, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """PRE, MRR and Hit@1/2/5/10 of predicted embeddings.

    predicted: (N, Q, d) predicted embeddings; embeddings: (N, V, d) every view's true embedding;
    targets: (N, Q) the view each prediction should retrieve.
    """
    ranks = retrieval_ranks(predicted, embeddings, targets, device)
    errors = [
        squared_unit_distances(
            predicted[start : start + RANK_CHUNK],
            np.take_along_axis(
                np.asarray(embeddings[start : start + RANK_CHUNK]),
                np.asarray(targets[start : start + RANK_CHUNK])[..., None],
                axis=1,
            ),
        )
        for start in range(0, len(ranks), RANK_CHUNK)
    ]
    return {"pre": float(np.mean(np.concatenate(errors))), **ranking_metrics(ranks)}


def view_zero_queries(latents: np.ndarray, action_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The retrieval queries of every object: the action from view 0 to each view i = 1..V-1, (N, V-1,
    action_dim) float32 (`benchmark.data.relative_action`), and the target views i, (N, V-1) int64.
    latents: (N, V, 7)."""
    latents = np.asarray(latents, np.float64)
    views = latents.shape[1]
    if views < 2:
        raise ValueError(f"retrieval needs at least 2 views per object, got {views}")
    actions = relative_action(latents[:, :1], latents[:, 1:], action_dim)
    targets = np.broadcast_to(np.arange(1, views, dtype=np.int64), (latents.shape[0], views - 1)).copy()
    return actions, targets


@torch.inference_mode()
def predict_views(
    predict: Predictor, embeddings: np.ndarray, actions: np.ndarray, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Apply `predict(embedding, action)` to view 0's embedding with every action of its object.

    embeddings: (N, V, d); actions: (N, Q, A) -> (N, Q, d) float32. Runs in batches small enough for a
    hypernetwork predictor's per-sample d x d weights (`PREDICT_BYTES`).
    """
    count, queries, dim = embeddings.shape[0], actions.shape[1], embeddings.shape[2]
    sources = np.array(embeddings[:, 0], np.float32)
    flat_actions = np.asarray(actions, np.float32).reshape(count * queries, -1)
    batch = max(1, PREDICT_BYTES // (4 * dim * dim))
    out = np.empty((count * queries, dim), np.float32)
    for start in range(0, len(out), batch):
        rows = np.arange(start, min(start + batch, len(out)))
        predicted = predict(
            torch.from_numpy(sources[rows // queries]).to(device),
            torch.from_numpy(flat_actions[rows]).to(device),
        )
        out[rows] = predicted.float().cpu().numpy()
    return out.reshape(count, queries, dim)


def prediction_error(predicted: np.ndarray, true: np.ndarray) -> float:
    """PRE: the mean over predictions of the squared Euclidean distance between the L2-normalised
    predicted and true embeddings, ||p/|p| - e/|e| ||^2 = 2 - 2 cos(p, e), in [0, 4].

    0 is a perfect prediction, about 2 an unrelated one; scale-free, so methods whose embeddings have
    different norms compare. predicted, true: (..., d).
    """
    return float(np.mean(squared_unit_distances(predicted, true)))


def squared_unit_distances(predicted: np.ndarray, true: np.ndarray) -> np.ndarray:
    """||p/|p| - e/|e| ||^2 of each pair of (..., d) embeddings, flattened to (n,) float64."""
    if np.shape(predicted) != np.shape(true):
        raise ValueError(
            f"predicted {np.shape(predicted)} and true {np.shape(true)} embeddings differ in shape"
        )
    predicted, true = _unit(np.asarray(predicted, np.float64)), _unit(np.asarray(true, np.float64))
    return np.sum((predicted - true) ** 2, axis=-1).ravel()


def retrieval_ranks(
    predicted: np.ndarray,
    candidates: np.ndarray,
    targets: np.ndarray,
    device: str | torch.device = "cpu",
    chunk: int = RANK_CHUNK,
) -> np.ndarray:
    """1-based rank of each query's target among its object's candidates by cosine similarity, batched.

    predicted: (N, Q, d); candidates: (N, V, d); targets: (N, Q) indices into V -> (N, Q) int64.
    rank = number of candidates j with cos(p, c_j) >= cos(p, c_target) - TIE_TOLERANCE (the target
    included), with cos(p, c) = p.c / (max(|p|, eps) max(|c|, eps)). One (chunk, Q, V) similarity block per
    `chunk` objects, in float64 on `device`.
    """
    _check_retrieval_inputs(predicted, candidates, targets)
    ranks = np.empty(np.shape(targets), np.int64)
    # Reused float64 buffers: a fresh allocation per chunk costs more in page faults than the copy itself.
    query_buffer = np.empty((min(chunk, len(ranks)), *np.shape(predicted)[1:]), np.float64)
    views_buffer = np.empty((min(chunk, len(ranks)), *np.shape(candidates)[1:]), np.float64)
    for start in range(0, len(ranks), chunk):
        stop = min(start + chunk, len(ranks))
        query = _float64(predicted[start:stop], query_buffer[: stop - start], device)
        views = _float64(candidates[start:stop], views_buffer[: stop - start], device)
        # Cosines as dot products over both norms: the division touches (n, Q, V) values, not (n, V, d).
        similarity = torch.bmm(query, views.transpose(1, 2))
        similarity /= query.norm(dim=2, keepdim=True).clamp_min(UNIT_EPS)
        similarity /= views.norm(dim=2).clamp_min(UNIT_EPS).unsqueeze(1)
        target = torch.as_tensor(np.asarray(targets[start:stop]), device=device).unsqueeze(2)
        target_similarity = similarity.gather(2, target)
        ranks[start:stop] = (similarity >= target_similarity - TIE_TOLERANCE).sum(2).cpu().numpy()
    return ranks


def retrieval_ranks_loop(predicted: np.ndarray, candidates: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The reference for `retrieval_ranks`: one query at a time, same definition (see there)."""
    _check_retrieval_inputs(predicted, candidates, targets)
    count, queries = np.shape(targets)
    ranks = np.empty((count, queries), np.int64)
    for obj in range(count):
        views = np.asarray(candidates[obj], np.float64)
        for query in range(queries):
            ranks[obj, query] = rank_of(
                np.asarray(predicted[obj, query], np.float64), views, targets[obj, query]
            )
    return ranks


def rank_of(prediction: np.ndarray, views: np.ndarray, target: int) -> int:
    """Rank of views[target] among views (V, d) by cosine similarity to prediction (d,), float64."""
    norms = np.maximum(np.linalg.norm(views, axis=1), UNIT_EPS) * max(np.linalg.norm(prediction), UNIT_EPS)
    similarity = views @ prediction / norms
    return int(np.count_nonzero(similarity >= similarity[target] - TIE_TOLERANCE))


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), UNIT_EPS)


def _float64(values: np.ndarray, buffer: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """`values` (also a read-only memory map) copied into the float64 `buffer`, as a tensor on `device`."""
    np.copyto(buffer, values)
    return torch.from_numpy(buffer).to(device)


def _check_retrieval_inputs(predicted: np.ndarray, candidates: np.ndarray, targets: np.ndarray) -> None:
    """Shapes agree, targets index the candidates, every embedding is finite."""
    count, queries, dim = np.shape(predicted)
    if np.shape(candidates)[0] != count or np.shape(candidates)[2] != dim:
        raise ValueError(f"predicted {np.shape(predicted)} and candidates {np.shape(candidates)} disagree")
    if np.shape(targets) != (count, queries):
        raise ValueError(f"targets must have shape {(count, queries)}, got {np.shape(targets)}")
    views = np.shape(candidates)[1]
    if np.size(targets) and (np.min(targets) < 0 or np.max(targets) >= views):
        raise ValueError(f"targets must index the {views} candidates")
    for name, values in (("predicted", predicted), ("candidate", candidates)):
        if not np.isfinite(values).all():
            raise ValueError(f"{name} embeddings have non-finite values")
