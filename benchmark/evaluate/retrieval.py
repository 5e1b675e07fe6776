"""Predictor quality: prediction error (PRE), embedding distance and retrieval (MRR, Hit@k) on the validation
views.

For every object, the method's predictor takes the equivariant embedding of view 0 and the action from
view 0 to view i (i = 1..V-1) and predicts view i's embedding; the true view i is then ranked among the
object's V view embeddings (view 0 included) by cosine similarity. This follows the published SIE code
(eval_MRR_Hk.py), which uses the equivariant projector's output, L2-normalises predictions and targets
and ranks within the object; it also scores i = 0 (the identity action), which we leave out.

PRE is the published one (eval_prediction_errors.py, its "val-val" mode, also without the i = 0 queries):
each prediction's nearest neighbour by cosine similarity among every view of every validation object,
scored by how far that view's orientation is from the orientation of view i (`nearest_view_rotation_error`).
`emb_dist` is the mean squared distance between the unit predicted and true embeddings (`prediction_error`).

Ranks are defined in float64: a candidate whose cosine similarity is within `TIE_TOLERANCE` of the true
view's counts as a tie, and ties rank pessimistically (the true view is placed after every tied
candidate), so a collapsed embedding scores the worst rank instead of a lucky one. `retrieval_ranks_loop`
is the plain per-query reference (similarities, argsort, the target's position); `retrieval_ranks` is the
vectorised implementation that must equal it: float32 batched matrix products, with every comparison too
close to call in float32 (`near_tie_margin`, a rigorous float32 error bound) decided again in float64.
Float64 implementations summing in different orders differ by ~1e-13, so two float64 computations of a
rank can only disagree when a candidate lies within ~1e-13 of the tie boundary, TIE_TOLERANCE below the
true view (exact ties, duplicate views and last-bit differences are far from it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from benchmark.data import relative_action
from benchmark.evaluate.metrics import ranking_metrics
from render import spec

#: Cosine similarities closer than this to the true view's count as ties (float64 rounding is ~1e-16).
TIE_TOLERANCE = 1e-9
#: Vectors shorter than this are left at zero length by normalisation (cosine 0 with everything).
UNIT_EPS = 1e-12
#: Objects per batched similarity block in `retrieval_ranks` (128 x 50 x 1024 float32: 26 MB).
RANK_CHUNK = 128
#: Unit roundoff of float32 (round to nearest).
FLOAT32_ROUNDING = 2.0**-24
#: Nonzero embedding norms outside this range could underflow or overflow float32 products; objects with
#: such a vector are ranked in float64.
FLOAT32_SAFE_NORMS = (1e-15, 1e15)
#: Bytes of per-sample predictor weights (a hypernetwork's d x d matrices) allowed per predictor call.
PREDICT_BYTES = 2**28
#: Bytes of one block of similarities between predictions and every validation view (PRE).
NEIGHBOUR_BYTES = 2**28

Predictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def retrieval_scores(
    predicted: np.ndarray,
    embeddings: np.ndarray,
    targets: np.ndarray,
    latents: np.ndarray,
    device: str | torch.device = "cpu",
    on_queries: Callable[[int], object] | None = None,
) -> dict[str, float]:
    """PRE, embedding distance, MRR and Hit@1/2/5/10 of predicted embeddings.

    predicted: (N, Q, d) predicted embeddings; embeddings: (N, V, d) every view's true embedding;
    targets: (N, Q) the view each prediction should retrieve; latents: (N, V, 7) every view's latent.
    on_queries(n) is called as PRE's nearest-neighbour search (the long part: every prediction against
    every view) finishes n more predictions, N x Q in all.
    """
    ranks = retrieval_ranks(predicted, embeddings, targets, device)
    distances = [
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
    return {
        "pre": nearest_view_rotation_error(predicted, embeddings, targets, latents, device, on_queries),
        "emb_dist": float(np.mean(np.concatenate(distances))),
        **ranking_metrics(ranks),
    }


def nearest_view_rotation_error(
    predicted: np.ndarray,
    embeddings: np.ndarray,
    targets: np.ndarray,
    latents: np.ndarray,
    device: str | torch.device = "cpu",
    on_queries: Callable[[int], object] | None = None,
) -> float:
    """PRE as published: the mean over predictions of 1 - <q_target, q_nearest>^2.

    Each prediction's nearest neighbour is the view, among all N x V views of every object, whose embedding
    has the highest cosine similarity with it (the first on exact ties); q_target and q_nearest are the unit
    quaternions of the absolute rotations of the predicted view and of that neighbour. 1 - <q1, q2>^2 is
    sin^2 of half the angle between the two orientations: 0 when the neighbour, of any object, has the
    pose of the predicted view, 1 when it is turned by 180 degrees. Shapes as `retrieval_scores`; the
    similarities are float32 products in blocks of `NEIGHBOUR_BYTES`, after each of which
    on_queries(queries in the block) is called: at the size of the 3DIEBench validation split the search
    is 2.7e14 multiply-adds, over an hour on a CPU and seconds on a GPU.
    """
    _check_retrieval_shapes(predicted, embeddings, targets)
    count, views, dim = np.shape(embeddings)
    if np.shape(latents)[:2] != (count, views):
        raise ValueError(f"latents {np.shape(latents)} do not match the embeddings {np.shape(embeddings)}")
    flat_latents = np.asarray(latents, np.float64).reshape(count * views, -1)
    quaternions = Rotation.from_euler("xyz", flat_latents[:, spec.ROTATION]).as_quat()
    true_views = (np.arange(count)[:, None] * views + np.asarray(targets)).ravel()
    queries = np.asarray(predicted).reshape(-1, dim)
    with _full_precision_float32():
        bank = _unit_rows(_float32(np.asarray(embeddings).reshape(count * views, dim), device))
        block = max(1, NEIGHBOUR_BYTES // (4 * count * views))
        nearest = np.empty(len(queries), np.int64)
        for start in range(0, len(queries), block):
            rows = queries[start : start + block]
            nearest[start : start + len(rows)] = (
                (_unit_rows(_float32(rows, device)) @ bank.T).argmax(1).cpu().numpy()
            )
            if on_queries is not None:
                on_queries(len(rows))
    cosines = np.sum(quaternions[true_views] * quaternions[nearest], axis=1)
    return float(np.mean(1.0 - cosines**2))


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
    """Embedding distance (`emb_dist`): the mean over predictions of the squared Euclidean distance
    between the L2-normalised predicted and true embeddings, ||p/|p| - e/|e| ||^2 = 2 - 2 cos(p, e),
    in [0, 4].

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
    """1-based rank of each query's target among its object's candidates by cosine similarity, vectorised.

    predicted: (N, Q, d); candidates: (N, V, d); targets: (N, Q) indices into V -> (N, Q) int64.
    rank = number of candidates j with cos(p, c_j) >= cos(p, c_target) - TIE_TOLERANCE (the target
    included), with cos(p, c) = p.c / (max(|p|, eps) max(|c|, eps)): the ranks of the float64 reference
    `retrieval_ranks_loop`. Cosines are float32 batched matrix products over float32 norms (`chunk`
    objects at a time); every comparison of a candidate with the target that falls within the float32
    error bound (`near_tie_margin`) is decided again in float64, and objects with more such candidates
    than views, or with a vector too short or too long for the bound, are ranked wholly in float64.
    """
    _check_retrieval_shapes(predicted, candidates, targets)
    ranks = np.empty(np.shape(targets), np.int64)
    with _full_precision_float32():
        for start in range(0, len(ranks), chunk):
            stop = min(start + chunk, len(ranks))
            ranks[start:stop] = _chunk_ranks(
                predicted[start:stop], candidates[start:stop], np.asarray(targets[start:stop]), device
            )
    return ranks


def near_tie_margin(dim: int) -> tuple[float, float]:
    """(absolute, relative): the float32 gap s_j - s_target + TIE_TOLERANCE of two d-dimensional cosines
    has the sign of the exact gap when |gap| > absolute + relative (|s_j| + |s_target|) (float32 values).

    For float32 inputs, a float32 dot product (any summation order) differs from the exact one by at most
    gamma_d |p||c|, gamma_d = d u / (1 - d u), u = 2^-24; a float32 norm by a relative gamma_d / 2 + u;
    the two reciprocals and two products add 4u relative. So a float32 cosine s is within
    gamma_d + (gamma_d + 6u) |s| of the exact one; the gap adds two roundings (4u), and second-order terms
    and the float64 reference's own error (~1e-13) stay below 2u more.
    """
    gamma = dim * FLOAT32_ROUNDING / (1 - dim * FLOAT32_ROUNDING)
    return 2 * gamma + 6 * FLOAT32_ROUNDING, gamma + 6 * FLOAT32_ROUNDING


def _chunk_ranks(
    predicted: np.ndarray, candidates: np.ndarray, targets: np.ndarray, device: str | torch.device
) -> np.ndarray:
    """`retrieval_ranks` of one block of n objects: (n, Q, d), (n, V, d), (n, Q) -> (n, Q) int64."""
    query, views = _float32(predicted, device), _float32(candidates, device)
    target = torch.as_tensor(targets, device=device).unsqueeze(2)
    query_norm, view_norm = query.norm(dim=2), views.norm(dim=2)
    for name, norms, values in (("predicted", query_norm, predicted), ("candidate", view_norm, candidates)):
        if not torch.isfinite(norms).all():
            _check_finite(name, values)  # also raises for a finite vector whose float32 norm overflows
    similarity = torch.bmm(query, views.transpose(1, 2))
    similarity *= query_norm.clamp_min(UNIT_EPS).reciprocal().unsqueeze(2)
    similarity *= view_norm.clamp_min(UNIT_EPS).reciprocal().unsqueeze(1)
    target_similarity = similarity.gather(2, target)
    absolute, relative = near_tie_margin(query.shape[2])
    margin = (similarity.abs() + target_similarity.abs()).mul_(relative).add_(absolute)
    gap = similarity.sub_(target_similarity - TIE_TOLERANCE)
    gap.scatter_(2, target, 1.0)  # the target itself always counts
    near = gap.abs() <= margin
    ranks = (gap > margin).sum(2)
    whole = _outside_float32_range(query_norm).any(1) | _outside_float32_range(view_norm).any(1)
    whole |= near.sum((1, 2)) > views.shape[1]
    near &= ~whole[:, None, None]
    if near.any():
        obj, row, candidate = near.nonzero().unbind(1)
        rows = (query[obj, row], views[obj, candidate], views[obj, target[obj, row, 0]])
        decisions = _float64_decisions(*(vectors.cpu().numpy() for vectors in rows))
        ranks.index_put_((obj, row), torch.from_numpy(decisions).to(ranks.device), accumulate=True)
    if whole.any():
        objects = whole.nonzero()[:, 0]
        ranks[objects] = _float64_ranks(query[objects], views[objects], target[objects])
    return ranks.cpu().numpy()


def _float64_decisions(query: np.ndarray, candidate: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Whether cos(p, c) >= cos(p, c_target) - TIE_TOLERANCE in float64, row by row: (k, d) x3 -> (k,)
    int64 (NumPy's einsum sums float32 rows in float64 without float64 copies)."""

    def dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.einsum("kd,kd->k", a, b, dtype=np.float64)

    def norm(a: np.ndarray) -> np.ndarray:
        return np.maximum(np.sqrt(dots(a, a)), UNIT_EPS)

    query_norm = norm(query)
    similarity = dots(query, candidate) / (query_norm * norm(candidate))
    target_similarity = dots(query, target) / (query_norm * norm(target))
    return (similarity >= target_similarity - TIE_TOLERANCE).astype(np.int64)


def _float64_ranks(query: torch.Tensor, views: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Ranks of whole objects in float64: (m, Q, d), (m, V, d), (m, Q, 1) -> (m, Q) int64."""
    query, views = query.double(), views.double()
    similarity = torch.bmm(query, views.transpose(1, 2))
    similarity /= query.norm(dim=2, keepdim=True).clamp_min(UNIT_EPS)
    similarity /= views.norm(dim=2).clamp_min(UNIT_EPS).unsqueeze(1)
    return (similarity >= similarity.gather(2, target) - TIE_TOLERANCE).sum(2)


def _outside_float32_range(norms: torch.Tensor) -> torch.Tensor:
    """Nonzero norms for which float32 products could underflow or overflow (the bound would not hold)."""
    return ((norms > 0) & (norms < FLOAT32_SAFE_NORMS[0])) | (norms > FLOAT32_SAFE_NORMS[1])


@contextlib.contextmanager
def _full_precision_float32() -> Iterator[None]:
    """float32 matrix products in full float32 (no TF32 or bfloat16 passes), which the bound assumes.

    Restores the caller's setting with the API it used: torch's legacy global precision, or, once a
    program has set a backend's `fp32_precision` (where the legacy getter raises), each backend's own."""
    backends = (torch.backends.cuda.matmul, torch.backends.mkldnn.matmul)
    try:
        previous = torch.get_float32_matmul_precision()
    except RuntimeError:  # the legacy and the per-backend APIs were mixed
        settings = [backend.fp32_precision for backend in backends]
        for backend in backends:
            backend.fp32_precision = "ieee"

        def restore() -> None:
            for backend, setting in zip(backends, settings, strict=True):
                backend.fp32_precision = setting

    else:
        torch.set_float32_matmul_precision("highest")

        def restore() -> None:
            torch.set_float32_matmul_precision(previous)

    try:
        yield
    finally:
        restore()


def retrieval_ranks_loop(predicted: np.ndarray, candidates: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The reference for `retrieval_ranks`: one query at a time, in float64 (definition there)."""
    _check_retrieval_inputs(predicted, candidates, targets)
    count, queries = np.shape(targets)
    ranks = np.empty((count, queries), np.int64)
    for obj in range(count):
        views = np.asarray(candidates[obj], np.float64)
        for query in range(queries):
            ranks[obj, query] = rank_of(
                np.asarray(predicted[obj, query], np.float64), views, int(targets[obj, query])
            )
    return ranks


def rank_of(prediction: np.ndarray, views: np.ndarray, target: int) -> int:
    """Rank of views[target] among views (V, d) by cosine similarity to prediction (d,), float64: its
    position in the views sorted by decreasing similarity, after every view within TIE_TOLERANCE of it."""
    norms = np.maximum(np.linalg.norm(views, axis=1), UNIT_EPS) * max(np.linalg.norm(prediction), UNIT_EPS)
    similarity = views @ prediction / norms
    order = np.argsort(-similarity, kind="stable")
    position = int(np.flatnonzero(order == target)[0])
    tied_after = np.count_nonzero(similarity[order[position + 1 :]] >= similarity[target] - TIE_TOLERANCE)
    return position + 1 + tied_after


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), UNIT_EPS)


def _unit_rows(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(UNIT_EPS)


def _float32(values: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """`values` as a float32 tensor on `device`, copied only when not already writable float32."""
    return torch.from_numpy(np.require(values, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])).to(device)


def _check_retrieval_inputs(predicted: np.ndarray, candidates: np.ndarray, targets: np.ndarray) -> None:
    """Shapes agree, targets index the candidates, every embedding is finite."""
    _check_retrieval_shapes(predicted, candidates, targets)
    _check_finite("predicted", predicted)
    _check_finite("candidate", candidates)


def _check_retrieval_shapes(predicted: np.ndarray, candidates: np.ndarray, targets: np.ndarray) -> None:
    count, queries, dim = np.shape(predicted)
    if np.shape(candidates)[0] != count or np.shape(candidates)[2] != dim:
        raise ValueError(f"predicted {np.shape(predicted)} and candidates {np.shape(candidates)} disagree")
    if np.shape(targets) != (count, queries):
        raise ValueError(f"targets must have shape {(count, queries)}, got {np.shape(targets)}")
    views = np.shape(candidates)[1]
    if np.size(targets) and (np.min(targets) < 0 or np.max(targets) >= views):
        raise ValueError(f"targets must index the {views} candidates")


def _check_finite(name: str, values: np.ndarray) -> None:
    if not np.isfinite(values).all():
        raise ValueError(f"{name} embeddings have non-finite values")
