"""Objectives as pure functions of embeddings, computed over the global batch.

Every function takes the per-process tensors (B, d) and gathers them from all processes with a
gradient-passing all-gather (the identity when not distributed), so each process computes the same
value over the global batch of N = world_size * B samples. Under DistributedDataParallel, whose gradient
averaging divides by world_size, the parameters then get exactly the gradient of that global loss.

Composite objectives return (total, terms): the scalar to back-propagate and its named, undetached parts.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

LossTerms = tuple[torch.Tensor, dict[str, torch.Tensor]]

VARIANCE_EPS = 1e-4  # inside the square root of the VICReg standard deviation, as in the official code


# --- distributed all-gather -----------------------------------------------------------------------


def gather_batch(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate (B, ...) tensors of all processes in rank order -> (world_size * B, ...).

    Gradients flow back to each process's own slice (summed over the processes that used it).
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return torch.cat(_GatherWithGradient.apply(tensor.contiguous()), dim=0)


class _GatherWithGradient(torch.autograd.Function):
    """all_gather whose backward all-reduces the incoming gradients and keeps this rank's slice.

    Works on every backend (gloo has no reduce-scatter, which torch.distributed.nn's all_gather needs).
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor)
        return tuple(gathered)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        stacked = torch.stack(grads)
        dist.all_reduce(stacked)
        return stacked[dist.get_rank()]


# --- VICReg terms (Bardes et al., official facebookresearch/vicreg definitions) ----------------------


def invariance_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all N x d entries."""
    return F.mse_loss(z1, z2)


def variance_hinge(z: torch.Tensor) -> torch.Tensor:
    """mean_j relu(1 - sqrt(Var(z[:, j]) + 1e-4)) of one (N, d) batch, with the unbiased variance."""
    std = torch.sqrt(z.var(dim=0) + VARIANCE_EPS)
    return F.relu(1 - std).mean()


def variance_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The official VICReg variance term: the average of the two views' hinges (each halved, not summed)."""
    return variance_hinge(z1) / 2 + variance_hinge(z2) / 2


def covariance_term(z: torch.Tensor) -> torch.Tensor:
    """Sum of squared off-diagonal entries of the (d, d) covariance of one (N, d) batch, divided by d."""
    centred = z - z.mean(dim=0)
    covariance = centred.T @ centred / (z.shape[0] - 1)
    off_diagonal = covariance - torch.diag(torch.diagonal(covariance))
    return off_diagonal.pow(2).sum() / z.shape[1]


def covariance_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The official VICReg covariance term: the two views' terms summed."""
    return covariance_term(z1) + covariance_term(z2)


def vicreg_loss(
    z1: torch.Tensor, z2: torch.Tensor, *, sim_coeff: float, std_coeff: float, cov_coeff: float
) -> LossTerms:
    """VICReg over the global batch: sim * invariance + std * variance + cov * covariance."""
    z1, z2 = gather_batch(z1), gather_batch(z2)
    terms = {
        "invariance": invariance_loss(z1, z2),
        "variance": variance_loss(z1, z2),
        "covariance": covariance_loss(z1, z2),
    }
    total = sim_coeff * terms["invariance"] + std_coeff * terms["variance"] + cov_coeff * terms["covariance"]
    return total, terms


# --- contrastive ----------------------------------------------------------------------------------


def info_nce_loss(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over the global batch.

    The 2N cosine-normalised embeddings form a (2N, 2N) similarity matrix scaled by 1/temperature; each
    row's positive is its other view and its negatives are the 2N - 2 remaining embeddings of both views.
    The loss is the cross-entropy averaged over all 2N rows.
    """
    z1, z2 = gather_batch(z1), gather_batch(z2)
    count = z1.shape[0]
    features = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = features @ features.T / temperature
    self_mask = torch.eye(2 * count, dtype=torch.bool, device=logits.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    positives = torch.cat([torch.arange(count, 2 * count), torch.arange(count)]).to(logits.device)
    return F.cross_entropy(logits, positives)


def hinge_energy_loss(
    predicted: torch.Tensor, target: torch.Tensor, state: torch.Tensor, *, hinge: float, sigma: float
) -> LossTerms:
    """The contrastive energy loss of C-SWM (Kipf et al., 2020) used by SEN (Park et al., 2022).

    Energy d(a, b) = ||a - b||^2 / (2 sigma^2). Positive term: mean_i d(predicted_i, target_i).
    Negative term: mean_i mean_{j != i} relu(hinge - d(state_i, state_j)). The published SEN code draws
    one random negative state per sample (n_neg=1 in its scripts) and applies the hinge to that pair;
    this is the expectation of that term over the draw, with every other sample of the global batch as a
    negative, so it is deterministic and the same on any number of processes. (Averaging the energies
    over several negatives before the hinge, as that code does when n_neg > 1, only asks each state to be
    far from the batch on average: clusters of collapsed states still satisfy it.)
    """
    predicted, target, state = gather_batch(predicted), gather_batch(target), gather_batch(state)
    norm = 0.5 / sigma**2
    positive = norm * (predicted - target).pow(2).sum(1).mean()
    count = state.shape[0]
    hinged = F.relu(hinge - norm * _pairwise_squared_distances(state))
    others = 1 - torch.eye(count, dtype=state.dtype, device=state.device)
    negative = (hinged * others).sum() / (count * (count - 1))
    return positive + negative, {"positive_energy": positive, "negative_hinge": negative}


def _pairwise_squared_distances(x: torch.Tensor) -> torch.Tensor:
    """(N, N) squared Euclidean distances, exact zero on the diagonal."""
    squared = x.pow(2).sum(1)
    distances = (squared[:, None] + squared[None, :] - 2 * x @ x.T).clamp_min(0)
    return distances * (1 - torch.eye(x.shape[0], dtype=x.dtype, device=x.device))


# --- composite objectives of the compared methods -------------------------------------------------


def sie_loss(
    inv1: torch.Tensor | None,
    inv2: torch.Tensor | None,
    equi1: torch.Tensor,
    equi2: torch.Tensor,
    predicted: torch.Tensor,
    *,
    sim_coeff: float,
    std_coeff: float,
    cov_coeff: float,
    equi_factor: float,
    predictor_variance: bool = True,
) -> LossTerms:
    """SIE (Garrido et al., 2023) over the global batch.

    sim * MSE(inv1, inv2) + equi_factor * sim * MSE(predicted, equi2)
    + std * variance([inv1, equi1], [inv2, equi2]) + std * variance_hinge(predicted) / 2 (if enabled)
    + cov * covariance([inv1, equi1], [inv2, equi2]).
    `inv1`/`inv2` are None when the method has no invariant part (no invariance term then); `predicted` is
    the predictor applied to equi1 with the action from view 1 to view 2. The predictor-variance term is
    reported even when it is not part of the total.
    """
    equi1, equi2, predicted = gather_batch(equi1), gather_batch(equi2), gather_batch(predicted)
    terms: dict[str, torch.Tensor] = {}
    if inv1 is None or inv2 is None:
        z1, z2 = equi1, equi2
    else:
        inv1, inv2 = gather_batch(inv1), gather_batch(inv2)
        z1, z2 = torch.cat([inv1, equi1], dim=1), torch.cat([inv2, equi2], dim=1)
        terms["invariance"] = invariance_loss(inv1, inv2)
    terms["equivariance"] = F.mse_loss(predicted, equi2)
    terms["variance"] = variance_loss(z1, z2)
    terms["predictor_variance"] = variance_hinge(predicted) / 2
    terms["covariance"] = covariance_loss(z1, z2)
    total = (
        equi_factor * sim_coeff * terms["equivariance"]
        + std_coeff * terms["variance"]
        + cov_coeff * terms["covariance"]
    )
    if "invariance" in terms:
        total = total + sim_coeff * terms["invariance"]
    if predictor_variance:
        total = total + std_coeff * terms["predictor_variance"]
    return total, terms


def partial_vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    *,
    invariant_dims: int,
    sim_coeff: float,
    std_coeff: float,
    cov_coeff: float,
) -> LossTerms:
    """VICReg whose invariance term covers only the first `invariant_dims` embedding dims."""
    z1, z2 = gather_batch(z1), gather_batch(z2)
    terms = {
        "invariance": invariance_loss(z1[:, :invariant_dims], z2[:, :invariant_dims]),
        "variance": variance_loss(z1, z2),
        "covariance": covariance_loss(z1, z2),
    }
    total = sim_coeff * terms["invariance"] + std_coeff * terms["variance"] + cov_coeff * terms["covariance"]
    return total, terms


def augself_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    predicted_action: torch.Tensor,
    action: torch.Tensor,
    *,
    temperature: float,
    augself_weight: float,
) -> LossTerms:
    """SimCLR + AugSelf (Lee et al., 2021): InfoNCE + weight * MSE(predicted action, action)."""
    terms = {
        "info_nce": info_nce_loss(z1, z2, temperature=temperature),
        "augself": F.mse_loss(gather_batch(predicted_action), gather_batch(action)),
    }
    return terms["info_nce"] + augself_weight * terms["augself"], terms


def equimod_contrastive_loss(
    inv1: torch.Tensor,
    inv2: torch.Tensor,
    predicted: torch.Tensor,
    equi2: torch.Tensor,
    *,
    temperature: float,
    equi_weight: float,
) -> LossTerms:
    """EquiMod, SimCLR version: InfoNCE(inv1, inv2) + equi_weight * InfoNCE(predicted, equi2)."""
    terms = {
        "info_nce_invariant": info_nce_loss(inv1, inv2, temperature=temperature),
        "info_nce_equivariant": info_nce_loss(predicted, equi2, temperature=temperature),
    }
    return terms["info_nce_invariant"] + equi_weight * terms["info_nce_equivariant"], terms


def equimod_vicreg_loss(
    inv1: torch.Tensor,
    inv2: torch.Tensor,
    equi1: torch.Tensor,
    equi2: torch.Tensor,
    predicted: torch.Tensor,
    *,
    sim_coeff: float,
    std_coeff: float,
    cov_coeff: float,
    equi_weight: float,
) -> LossTerms:
    """EquiMod, VICReg version (SIE paper): VICReg(inv1, inv2) + equi_weight * equivariant VICReg.

    The equivariant VICReg is sim * MSE(predicted, equi2) + std * variance(equi1, equi2)
    + cov * covariance(equi1, equi2).
    """
    invariant_total, invariant_terms = vicreg_loss(
        inv1, inv2, sim_coeff=sim_coeff, std_coeff=std_coeff, cov_coeff=cov_coeff
    )
    equi1, equi2, predicted = gather_batch(equi1), gather_batch(equi2), gather_batch(predicted)
    terms = {
        **invariant_terms,
        "equivariance": F.mse_loss(predicted, equi2),
        "equivariant_variance": variance_loss(equi1, equi2),
        "equivariant_covariance": covariance_loss(equi1, equi2),
    }
    equivariant_total = (
        sim_coeff * terms["equivariance"]
        + std_coeff * terms["equivariant_variance"]
        + cov_coeff * terms["equivariant_covariance"]
    )
    return invariant_total + equi_weight * equivariant_total, terms
