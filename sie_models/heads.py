"""Heads on top of the backbone: projectors, the invariant/equivariant split, predictors, online probes.

Shapes: B is the per-process batch, r the representation size, d an embedding size, a the action size.
"""

from __future__ import annotations

import itertools
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

PredictorKind = Literal["hypernetwork", "mlp"]
HypernetworkKind = Literal["linear", "deep"]

ROTATION_DIMS = 4  # the relative rotation quaternion (x, y, z, w) leads every action vector


# --- projectors and the invariant/equivariant split -----------------------------------------------


#: Widest projector layer accepted (the published ones are 2048; a slip of extra digits would overflow).
MAX_PROJECTOR_WIDTH = 65536


def parse_projector_spec(spec: str) -> list[int]:
    """Layer widths of a projector spec such as "2048-2048-2048" (ASCII digits only: no sign, space or _)."""
    parts = spec.split("-")
    if not all(part.isascii() and part.isdigit() and 1 <= int(part) <= MAX_PROJECTOR_WIDTH for part in parts):
        raise ValueError(
            f"projector spec {spec!r} must be integers from 1 to {MAX_PROJECTOR_WIDTH} joined by '-', e.g. "
            "'2048-2048-2048'"
        )
    return [int(part) for part in parts]


def build_projector(input_dim: int, spec: str) -> nn.Sequential:
    """Linear-BN-ReLU for every hidden layer of the spec, then a plain bias-free Linear (as VICReg/SIE)."""
    widths = [input_dim, *parse_projector_spec(spec)]
    layers: list[nn.Module] = []
    for width_in, width_out in itertools.pairwise(widths[:-1]):
        layers += [nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(widths[-2], widths[-1], bias=False))
    return nn.Sequential(*layers)


def split_dims(total: int, equivariant_fraction: float) -> tuple[int, int]:
    """(invariant, equivariant) sizes: the equivariant part is round(total * fraction), the rest invariant."""
    if not 0.0 < equivariant_fraction <= 1.0:
        raise ValueError(f"equivariant_fraction must be in (0, 1], got {equivariant_fraction}")
    equivariant = round(total * equivariant_fraction)
    if equivariant < 1 or (equivariant_fraction < 1.0 and equivariant >= total):
        raise ValueError(f"equivariant_fraction {equivariant_fraction} leaves an empty part of {total} dims")
    return total - equivariant, equivariant


def split_projector_spec(spec: str, equivariant_fraction: float) -> tuple[str | None, str]:
    """Invariant and equivariant projector specs with every width split in proportion (SIE's rule).

    "2048-2048-2048" at fraction 0.5 gives ("1024-1024-1024", "1024-1024-1024"); at fraction 1.0 the
    invariant spec is None (no invariant branch).
    """
    widths = parse_projector_spec(spec)
    pairs = [split_dims(width, equivariant_fraction) for width in widths]
    equivariant = "-".join(str(equi) for _, equi in pairs)
    if equivariant_fraction == 1.0:
        return None, equivariant
    return "-".join(str(inv) for inv, _ in pairs), equivariant


# --- predictors: (embedding (B, d), action (B, a)) -> predicted embedding (B, d) ---------------------


def build_predictor(
    kind: PredictorKind,
    dim: int,
    action_dim: int,
    *,
    hypernetwork: HypernetworkKind = "linear",
    hypernetwork_bias: bool = False,
    predictor_bias: bool = False,
    predictor_layers: int = 2,
) -> nn.Module:
    """The action-conditioned predictor of an equivariant method."""
    if kind == "hypernetwork":
        return HypernetworkPredictor(
            dim,
            action_dim,
            hypernetwork=hypernetwork,
            hypernetwork_bias=hypernetwork_bias,
            bias=predictor_bias,
        )
    if kind == "mlp":
        return MLPPredictor(dim, action_dim, layers=predictor_layers)
    raise ValueError(f"unknown predictor {kind!r}; use 'hypernetwork' or 'mlp'")


class HypernetworkPredictor(nn.Module):
    """SIE's predictor: a hypernetwork maps the action to the weights of a d x d linear map of the embedding.

    `hypernetwork="linear"` (default) is one Linear(a, d*d) layer, bias-free unless `hypernetwork_bias`;
    "deep" is Linear(a, a)-ReLU-Linear(a, a)-ReLU-Linear(a, d*d) as in the published code. With `bias` the
    hypernetwork also emits a d-vector added after the map. Every sample gets its own matrix, applied with
    one batched matrix product. As published: PyTorch's default Linear initialisation, and the matrix is
    used as is (not added to the identity). The published code can also chain several generated layers
    (its `--predictor` widths, optional ReLU between them); here the map is always one d x d matrix, its
    default. Because the training action is SciPy's quaternion of R1^-1 R2 without sign canonicalisation,
    q2 = q1 * q12 holds exactly, so an embedding carrying the pose quaternion can be mapped exactly by a
    matrix linear in the action.
    """

    def __init__(
        self,
        dim: int,
        action_dim: int,
        *,
        hypernetwork: HypernetworkKind = "linear",
        hypernetwork_bias: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.bias = bias
        outputs = dim * dim + (dim if bias else 0)
        if hypernetwork == "linear":
            self.hypernetwork = nn.Sequential(nn.Linear(action_dim, outputs, bias=hypernetwork_bias))
        elif hypernetwork == "deep":
            self.hypernetwork = nn.Sequential(
                nn.Linear(action_dim, action_dim, bias=hypernetwork_bias),
                nn.ReLU(),
                nn.Linear(action_dim, action_dim, bias=hypernetwork_bias),
                nn.ReLU(),
                nn.Linear(action_dim, outputs, bias=hypernetwork_bias),
            )
        else:
            raise ValueError(f"unknown hypernetwork {hypernetwork!r}; use 'linear' or 'deep'")

    def matrices(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-sample weights (B, d, d), laid out (out, in) like nn.Linear, and biases (B, d) or None."""
        params = self.hypernetwork(action)
        weights = params[:, : self.dim * self.dim].reshape(-1, self.dim, self.dim)
        biases = params[:, self.dim * self.dim :] if self.bias else None
        return weights, biases

    def forward(self, embedding: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        weights, biases = self.matrices(action)
        predicted = torch.bmm(weights, embedding.unsqueeze(-1)).squeeze(-1)
        return predicted if biases is None else predicted + biases


class MLPPredictor(nn.Module):
    """MLP on [embedding, action]: (layers - 1) hidden Linear-ReLU layers of width d, then a Linear.

    The published training script's `--tf-num-layers` flag defaults to one layer (a single Linear on
    [action, embedding], in which the action only shifts the output; its MLPPredictor class itself defaults
    to 2); the SIE methods here default to 2 layers (`predictor_layers`).
    """

    def __init__(self, dim: int, action_dim: int, layers: int = 2) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"predictor_layers must be at least 1, got {layers}")
        modules: list[nn.Module] = [nn.Linear(dim + action_dim, dim)]
        for _ in range(layers - 1):
            modules += [nn.ReLU(inplace=True), nn.Linear(dim, dim)]
        self.net = nn.Sequential(*modules)

    def forward(self, embedding: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([embedding, action], dim=1))


class RotationRepresentationPredictor(nn.Module):
    """A fixed, known action of the rotation on the embedding (SEN): no learned parameters.

    The first `trivial_dims` dims are invariant (the trivial representation: unchanged); the rest is read
    as floor((d - trivial_dims) / 3) row 3-vectors, plus the remainder mod 3 unchanged. The relative
    rotation R = R1^-1 R2 acts on each row vector v as v -> v R. This is a right action, so it composes
    with relative rotations: applying R12 then R23 equals applying R13 = R12 R23 (a latent that stores the
    rows of the object's rotation matrix R1 becomes exactly R2).
    """

    def __init__(self, trivial_dims: int = 0):
        super().__init__()
        if trivial_dims < 0:
            raise ValueError(f"trivial_dims must be at least 0, got {trivial_dims}")
        self.trivial_dims = trivial_dims

    def forward(self, embedding: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        rotation = quaternion_to_matrix(action[:, :ROTATION_DIMS])
        start = self.trivial_dims
        vectors = (embedding.shape[1] - start) // 3
        stop = start + 3 * vectors
        rows = embedding[:, start:stop].reshape(-1, vectors, 3)
        rotated = torch.bmm(rows, rotation.to(rows.dtype)).reshape(-1, 3 * vectors)
        return torch.cat([embedding[:, :start], rotated, embedding[:, stop:]], dim=1)


def quaternion_to_matrix(quaternion: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (B, 4) in SciPy order (x, y, z, w), normalised here -> rotation matrices (B, 3, 3)."""
    x, y, z, w = F.normalize(quaternion, dim=1).unbind(1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=1,
    ).reshape(-1, 3, 3)  # fmt: skip


def action_regressor(input_dim: int, output_dim: int) -> nn.Sequential:
    """MLP input_dim -> input_dim -> input_dim -> output_dim with ReLU (published AugSelf/rotation head)."""
    return nn.Sequential(
        nn.Linear(input_dim, input_dim),
        nn.ReLU(inplace=True),
        nn.Linear(input_dim, input_dim),
        nn.ReLU(inplace=True),
        nn.Linear(input_dim, output_dim),
    )


# --- online probes --------------------------------------------------------------------------------


class OnlineProbes(nn.Module):
    """Probes trained beside the method on detached representations, as in the published SIE code.

    For every part of the representation ("full", and "inv"/"equi" for split methods): a linear classifier
    on each view's representation (when `num_classes` is given) and an MLP regressing the relative
    rotation quaternion from the concatenated pair. Nothing flows back into the backbone.
    """

    def __init__(self, parts: dict[str, slice], num_classes: int | None) -> None:
        super().__init__()
        self.parts = dict(parts)
        self.num_classes = num_classes
        sizes = {name: part.stop - part.start for name, part in self.parts.items()}
        self.classifiers = nn.ModuleDict(
            {name: nn.Linear(size, num_classes) for name, size in sizes.items()} if num_classes else {}
        )
        self.rotation_regressors = nn.ModuleDict(
            {name: action_regressor(2 * size, ROTATION_DIMS) for name, size in sizes.items()}
        )

    def forward(
        self, rep1: torch.Tensor, rep2: torch.Tensor, action: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total probe loss and detached stats `probe_top1[_part]`, `probe_rotation_r2[_part]` (pooled, as
        published), `probe_rotation_r2_comp[_part]` (per component), ...

        rep1, rep2: (B, r) representations; action: (B, a) whose first 4 values are the quaternion;
        labels: (B,) int64 class indices.
        """
        if self.num_classes is None:
            raise ValueError("labels were given but the method was built without num_classes")
        rep1, rep2 = rep1.detach(), rep2.detach()
        rotation = action[:, :ROTATION_DIMS].detach()
        both_labels = torch.cat([labels, labels])
        total = rep1.new_zeros(())
        stats: dict[str, torch.Tensor] = {}
        for name, part in self.parts.items():
            suffix = "" if name == "full" else f"_{name}"
            logits = self.classifiers[name](torch.cat([rep1[:, part], rep2[:, part]]))
            classification = F.cross_entropy(logits, both_labels)
            predicted = self.rotation_regressors[name](torch.cat([rep1[:, part], rep2[:, part]], dim=1))
            regression = F.mse_loss(predicted, rotation)
            total = total + classification + regression
            stats[f"probe_cross_entropy{suffix}"] = classification.detach()
            stats[f"probe_top1{suffix}"] = (logits.argmax(1) == both_labels).float().mean().detach()
            stats[f"probe_rotation_mse{suffix}"] = regression.detach()
            stats[f"probe_rotation_r2{suffix}"] = r2_pooled_score(predicted.detach(), rotation)
            stats[f"probe_rotation_r2_comp{suffix}"] = r2_score(predicted.detach(), rotation)
        stats["probe_loss"] = total.detach()
        return total, stats


def r2_pooled_score(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Coefficient of determination pooled over all columns around the single mean of all target values:
    the published definition, and `3die evaluate`'s `r2`."""
    residual = (target - predicted).pow(2).sum()
    total = (target - target.mean()).pow(2).sum().clamp_min(torch.finfo(target.dtype).tiny)
    return 1 - residual / total


def r2_score(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Coefficient of determination per output column, averaged (scikit-learn's uniform average; `3die
    evaluate`'s `r2_components`)."""
    residual = (target - predicted).pow(2).sum(0)
    total = (target - target.mean(0)).pow(2).sum(0).clamp_min(torch.finfo(target.dtype).tiny)
    return (1 - residual / total).mean()
