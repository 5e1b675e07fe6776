"""The compared methods: thin modules that wire backbone, heads and a loss function from `losses`.

Every method's defaults are in `METHOD_DEFAULTS` below (the paper's settings), the classes follow, and
`build_method` resolves a name plus overrides into a module. A method maps
(view1, view2, action, labels=None) -> MethodOutput(loss, stats).
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

import torch
from torch import nn

from sie_models import losses
from sie_models.backbones import Stem, representation_dim, resnet18
from sie_models.heads import (
    MAX_PROJECTOR_WIDTH,
    HypernetworkKind,
    OnlineProbes,
    PredictorKind,
    RotationRepresentationPredictor,
    action_regressor,
    build_predictor,
    build_projector,
    parse_projector_spec,
    split_dims,
    split_projector_spec,
)

Tensor = torch.Tensor
Embeddings = dict[str, torch.Tensor]

#: Action vector layouts: the relative rotation quaternion (x, y, z, w) of R1^-1 R2, then for
#: "rotation+color" the floor-hue and spot-hue differences (view 2 minus view 1).
ACTION_DIMS = {"rotation": 4, "rotation+color": 6}

# --- defaults: one visible place ------------------------------------------------------------------

#: Settings every method shares: backbone, image size, probes and the action layout.
COMMON_DEFAULTS: dict[str, Any] = {
    "image_size": 256,
    "width": 64,
    "stem": "auto",
    "num_classes": None,
    "action": "rotation",
}
PAPER_PROJECTOR = "2048-2048-2048"
VICREG_COEFFICIENTS = {"sim_coeff": 10.0, "std_coeff": 10.0, "cov_coeff": 1.0}
SIMCLR_TEMPERATURE = 0.1
PREDICTOR_DEFAULTS: dict[str, Any] = {
    "predictor": "hypernetwork",
    "hypernetwork": "linear",
    "hypernetwork_bias": False,
    "predictor_bias": False,
    "predictor_layers": 2,
}
#: The predictor options that only one kind of predictor reads (a changed value for the other is refused).
PREDICTOR_KIND_OPTIONS = {
    "hypernetwork": ("hypernetwork", "hypernetwork_bias", "predictor_bias"),
    "mlp": ("predictor_layers",),
}
SIE_DEFAULTS: dict[str, Any] = {
    "projector": PAPER_PROJECTOR,
    "equivariant_fraction": 0.5,
    **VICREG_COEFFICIENTS,
    "equi_factor": 0.45,
    "predictor_variance": True,
    **PREDICTOR_DEFAULTS,
}

#: Method-specific defaults; each method also takes COMMON_DEFAULTS.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "vicreg": {"projector": PAPER_PROJECTOR, **VICREG_COEFFICIENTS},
    "simclr": {"projector": PAPER_PROJECTOR, "temperature": SIMCLR_TEMPERATURE},
    "sie": SIE_DEFAULTS,
    "sie-no-predvar": {**SIE_DEFAULTS, "predictor_variance": False},
    "sie-equi-only": {**SIE_DEFAULTS, "equivariant_fraction": 1.0, "equi_factor": 1.0},
    "sie-rotcolor": {**SIE_DEFAULTS, "action": "rotation+color"},
    "sie-mlp": {**SIE_DEFAULTS, "predictor": "mlp"},
    "vicreg-partial": {"projector": PAPER_PROJECTOR, "equivariant_fraction": 0.125, **VICREG_COEFFICIENTS},
    "simclr-augself": {
        "projector": PAPER_PROJECTOR,
        "temperature": SIMCLR_TEMPERATURE,
        "augself_weight": 1.0,
    },
    "simclr-augself-rotcolor": {
        "projector": PAPER_PROJECTOR,
        "temperature": SIMCLR_TEMPERATURE,
        "augself_weight": 1.0,
        "action": "rotation+color",
    },
    "equimod-simclr": {
        "projector": PAPER_PROJECTOR,
        "temperature": SIMCLR_TEMPERATURE,
        "equi_weight": 1.0,
        **PREDICTOR_DEFAULTS,
    },
    "equimod-vicreg": {
        "projector": PAPER_PROJECTOR,
        **VICREG_COEFFICIENTS,
        "equi_weight": 1.0,
        **PREDICTOR_DEFAULTS,
    },
    "simclr-equi-only": {
        "projector": PAPER_PROJECTOR,
        "temperature": SIMCLR_TEMPERATURE,
        **PREDICTOR_DEFAULTS,
    },
    "sen": {"projector": PAPER_PROJECTOR, "equivariant_fraction": 0.5, "hinge": 1.0, "sigma": 0.5},
}

#: Keys shown as "loss coefficients" by `describe_method`.
LOSS_COEFFICIENT_KEYS = (
    "sim_coeff",
    "std_coeff",
    "cov_coeff",
    "equi_factor",
    "equi_weight",
    "temperature",
    "augself_weight",
    "hinge",
    "sigma",
)


class UnknownMethodError(ValueError):
    """A method name that is not registered; the message lists the valid names."""


class MethodOptionError(ValueError):
    """A method option that the method does not have, or whose value has the wrong type or is out of range;
    the message names the option, the value given and what is expected."""


# --- option rules: the type comes from the default, the range from OPTION_RANGES -------------------


@dataclass(frozen=True)
class OptionRange:
    """What an option's value must satisfy beyond its type: `accepts(value)`, described by `expected`."""

    accepts: Callable[[Any], bool]
    expected: str


def _projector_spec(value: str) -> bool:
    try:
        parse_projector_spec(value)
    except ValueError:
        return False
    return True


def _one_of(names: tuple[str, ...]) -> OptionRange:
    """The option takes one of `names` (two or more: the members of a Literal type, say)."""
    return OptionRange(lambda value: value in names, f"{', '.join(map(repr, names[:-1]))} or {names[-1]!r}")


def _within(low: float, high: float) -> OptionRange:
    """A number from `low` to `high` (NaN and infinities are outside any such range)."""
    return OptionRange(lambda value: low <= value <= high, f"a number from {low:g} to {high:g}")


#: Loss coefficients and scales (temperatures, margins) range far beyond any use, but stay where the loss
#: is a finite float32 (a temperature of 1e-300 or a weight of 1e308 only makes it NaN or infinite).
COEFFICIENT = _within(0.0, 1e6)
POSITIVE = _within(1e-6, 1e6)
COUNT = OptionRange(lambda value: value >= 1, "an integer >= 1")

#: Options whose default is None, and the type they take otherwise.
OPTIONAL_OPTION_TYPES: dict[str, type] = {"num_classes": int}

#: The values each option accepts beyond the type of its default (every option has an entry); `expected`
#: names the type too, as the error message shows only it.
OPTION_RANGES: dict[str, OptionRange] = {
    "image_size": COUNT,
    "width": COUNT,
    "stem": _one_of(get_args(Stem)),
    "num_classes": COUNT,
    "action": _one_of(tuple(ACTION_DIMS)),
    "projector": OptionRange(
        _projector_spec,
        f"a projector spec: integers from 1 to {MAX_PROJECTOR_WIDTH} joined by '-', e.g. '2048-2048-2048'",
    ),
    "equivariant_fraction": OptionRange(lambda value: 0 < value <= 1, "a number in (0, 1]"),
    "sim_coeff": COEFFICIENT,
    "std_coeff": COEFFICIENT,
    "cov_coeff": COEFFICIENT,
    "equi_factor": COEFFICIENT,
    "equi_weight": COEFFICIENT,
    "augself_weight": COEFFICIENT,
    "temperature": POSITIVE,
    "hinge": POSITIVE,
    "sigma": POSITIVE,
    "predictor_variance": OptionRange(lambda value: True, "true or false"),
    "predictor": _one_of(get_args(PredictorKind)),
    "hypernetwork": _one_of(get_args(HypernetworkKind)),
    "hypernetwork_bias": OptionRange(lambda value: True, "true or false"),
    "predictor_bias": OptionRange(lambda value: True, "true or false"),
    "predictor_layers": COUNT,
}


@dataclass
class MethodOutput:
    """loss: scalar to back-propagate (probes included when labels were given); stats: detached scalars."""

    loss: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class CommonOptions:
    """The settings shared by every method (see COMMON_DEFAULTS)."""

    image_size: int
    width: int
    stem: Stem
    num_classes: int | None
    action: str

    @property
    def representation_dim(self) -> int:
        return representation_dim(self.width)

    @property
    def action_dim(self) -> int:
        if self.action not in ACTION_DIMS:
            raise ValueError(f"unknown action {self.action!r}; use one of {sorted(ACTION_DIMS)}")
        return ACTION_DIMS[self.action]


# --- registry entry points ------------------------------------------------------------------------


def list_methods() -> list[str]:
    """Every registered method name, in the order of METHOD_DEFAULTS."""
    return list(METHOD_DEFAULTS)


def method_defaults(name: str) -> dict[str, Any]:
    """The fully resolved default keyword arguments of a method (common ones included)."""
    _check_name(name)
    return {**COMMON_DEFAULTS, **copy.deepcopy(METHOD_DEFAULTS[name])}


def build_method(name: str, **overrides: Any) -> Method:
    """Build a registered method from its defaults updated with `overrides`.

    The returned module has `name` and `config` (the resolved keyword arguments, JSON-serialisable).
    Raises UnknownMethodError, or MethodOptionError for an unknown option or a value of the wrong type or
    out of range (before anything is built); other ValueErrors for options that do not fit together.
    """
    check_method_options(name, overrides, refuse_ignored=False)  # also rebuilds saved configurations
    config = {**method_defaults(name), **overrides}
    common = CommonOptions(**{key: config[key] for key in COMMON_DEFAULTS})
    specific = {key: value for key, value in config.items() if key not in COMMON_DEFAULTS}
    method = METHOD_CLASSES[name](common, **specific)
    method.name = name
    method.config = config
    return method


def check_method_options(
    name: str, options: dict[str, Any], *, refuse_ignored: bool = True, unlisted: tuple[str, ...] = ()
) -> None:
    """Raise MethodOptionError for the first option of `options` that method `name` does not have, or whose
    value does not have its default's type (an int passes for a float, a bool never for a number) or
    lies outside its OPTION_RANGES entry; with `refuse_ignored`, also for a changed option that the
    method's kind of predictor ignores (`PREDICTOR_KIND_OPTIONS`: a run asked for would not be the one
    trained). `build_method` leaves those to the commands, so that a run saved with one still loads.
    `unlisted`: options the caller sets itself, left out of the list of valid ones in the message."""
    defaults = method_defaults(name)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise MethodOptionError(
            f"method {name!r} has no option {', '.join(unknown)}; valid options: "
            f"{', '.join(option for option in defaults if option not in unlisted)}"
        )
    for key, value in options.items():
        expected = option_problem(key, value, defaults[key])
        if expected is not None:
            raise MethodOptionError(
                f"method {name!r}: option {key}={_shown(value)} is not valid; expected {expected}"
            )
    kind = options.get("predictor", defaults.get("predictor"))
    for other, keys in PREDICTOR_KIND_OPTIONS.items() if refuse_ignored else ():
        unused = [key for key in keys if other != kind and key in options and options[key] != defaults[key]]
        if unused:
            raise MethodOptionError(
                f"method {name!r}: option {', '.join(unused)} applies to predictor={other}, not {kind}; "
                f"remove it or set predictor={other}"
            )


def option_problem(key: str, value: Any, default: Any) -> str | None:
    """What option `key` expects, in words, when `value` does not fit it; None when it does."""
    rule = OPTION_RANGES[key]
    if key in OPTIONAL_OPTION_TYPES:
        if value is None:
            return None
        kind, expected = OPTIONAL_OPTION_TYPES[key], f"null or {rule.expected}"
    else:
        kind, expected = type(default), rule.expected
    return None if _has_type(value, kind) and rule.accepts(value) else expected


def _has_type(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _shown(value: Any) -> str:
    """A value as written on the command line (JSON), or its repr when it has no JSON form."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def describe_method(name: str) -> dict[str, Any]:
    """What `3die methods` shows: action, representation split, projectors, loss coefficients, defaults."""
    config = method_defaults(name)
    cls = METHOD_CLASSES[name]
    common = CommonOptions(**{key: config[key] for key in COMMON_DEFAULTS})
    return {
        "name": name,
        "class": cls.__name__,
        "summary": (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " "),
        "action": f"{config['action']} ({common.action_dim})",
        "has_predictor": cls.has_predictor,
        "representation_dim": common.representation_dim,
        **cls.layout(config, common.representation_dim),
        "loss_coefficients": {key: config[key] for key in LOSS_COEFFICIENT_KEYS if key in config},
        "defaults": config,
    }


def _check_name(name: str) -> None:
    if name not in METHOD_DEFAULTS:
        raise UnknownMethodError(f"unknown method {name!r}; valid methods: {', '.join(METHOD_DEFAULTS)}")


# --- base class -----------------------------------------------------------------------------------


class Method(nn.Module):
    """Backbone + online probes; a subclass adds heads (`embed`) and an objective (`criterion`)."""

    has_predictor = False

    def __init__(self, common: CommonOptions, *, equivariant_dims: int = 0) -> None:
        super().__init__()
        self.name = ""
        self.config: dict[str, Any] = {}
        self.action_dim = common.action_dim
        self.backbone = resnet18(common.width, common.image_size, common.stem)
        self.representation_dim = self.backbone.output_dim
        self.parts = representation_parts(self.representation_dim, equivariant_dims)
        self.probes = OnlineProbes(self.parts, common.num_classes)

    def forward(
        self,
        view1: torch.Tensor,
        view2: torch.Tensor,
        action: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> MethodOutput:
        """views: (B, 3, H, W) normalised images; action: (B, action_dim); labels: (B,) int64 or None."""
        self._check_action(action, view1)
        rep1, rep2 = self.encode(view1), self.encode(view2)
        embeddings = self.embed(rep1, rep2, action)
        # The objectives use batch statistics (variances, covariances, softmax): keep them in float32.
        with torch.autocast(device_type=rep1.device.type, enabled=False):
            full_precision = {key: value.float() for key, value in embeddings.items()}
            objective, terms = self.criterion(full_precision, action.float())
        stats = {key: value.detach() for key, value in terms.items()}
        stats["objective"] = objective.detach()
        loss = objective
        if labels is not None:
            probe_loss, probe_stats = self.probes(rep1, rep2, action, labels)
            loss = loss + probe_loss
            stats.update(probe_stats)
        stats["loss"] = loss.detach()
        return MethodOutput(loss=loss, stats=stats)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone representations (N, representation_dim) used by the evaluations."""
        return self.backbone(images)

    def embed(self, rep1: torch.Tensor, rep2: torch.Tensor, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heads: the named embeddings and predictions the criterion needs."""
        raise NotImplementedError(f"{type(self).__name__} must define embed()")

    def criterion(self, embeddings: dict[str, torch.Tensor], action: torch.Tensor) -> losses.LossTerms:
        """Objective over the global batch: (total, named terms)."""
        raise NotImplementedError(f"{type(self).__name__} must define criterion()")

    def embed_equivariant(self, representation: torch.Tensor) -> torch.Tensor:
        """Equivariant embedding (N, d) of representations, the predictor's input and target space."""
        self._require_predictor()
        return self._equivariant_embedding(representation)

    def predict(self, embedding: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Predicted equivariant embedding (N, d) of the view reached by `action`."""
        self._require_predictor()
        return self.predictor(embedding, action)

    def _equivariant_embedding(self, representation: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no equivariant embedding")

    @staticmethod
    def layout(config: dict[str, Any], representation_dim: int) -> dict[str, str]:
        """Representation split, projector specs and predictor of a config, for listings."""
        return {"split": "-", "projectors": config["projector"], "predictor": predictor_summary(config)}

    def _require_predictor(self) -> None:
        if not self.has_predictor:
            raise RuntimeError(
                f"method {self.name or type(self).__name__!r} has no predictor (has_predictor is False)"
            )

    def _check_action(self, action: torch.Tensor, view: torch.Tensor) -> None:
        expected = (view.shape[0], self.action_dim)
        if tuple(action.shape) != expected:
            raise ValueError(
                f"action must have shape {expected} (batch, action_dim: quaternion x, y, z, w, then "
                "the differences of the action's other factors), "
                f"got {tuple(action.shape)}"
            )


def predictor_summary(config: dict[str, Any]) -> str:
    """One-line description of a config's action-conditioned predictor ("-" when there is none)."""
    if "predictor" not in config:
        return "-"
    if config["predictor"] == "mlp":
        summary = f"mlp ({config['predictor_layers']} layers)"
    else:
        summary = f"hypernetwork ({config['hypernetwork']})"
    if config.get("predictor_variance"):
        summary += " + output variance"
    return summary


def representation_parts(total: int, equivariant_dims: int) -> dict[str, slice]:
    """{"full"} plus, for a split representation, the leading "inv" and trailing "equi" dims."""
    parts = {"full": slice(0, total)}
    if 0 < equivariant_dims < total:
        parts["inv"] = slice(0, total - equivariant_dims)
        parts["equi"] = slice(total - equivariant_dims, total)
    return parts


# --- invariant baselines --------------------------------------------------------------------------


class VICReg(Method):
    """VICReg (Bardes et al., 2022): one projector, invariance + variance + covariance.

    Coefficients 10/10/1 as in the published SIE code's VICReg runs (the VICReg paper used 25/25/1).
    """

    def __init__(
        self, common: CommonOptions, *, projector: str, sim_coeff: float, std_coeff: float, cov_coeff: float
    ):
        super().__init__(common)
        self.projector = build_projector(self.representation_dim, projector)
        self.coefficients = {"sim_coeff": sim_coeff, "std_coeff": std_coeff, "cov_coeff": cov_coeff}

    def embed(self, rep1: Tensor, rep2: Tensor, action: Tensor) -> Embeddings:
        return {"z1": self.projector(rep1), "z2": self.projector(rep2)}

    def criterion(self, embeddings: Embeddings, action: Tensor) -> losses.LossTerms:
        return losses.vicreg_loss(embeddings["z1"], embeddings["z2"], **self.coefficients)


class SimCLR(Method):
    """SimCLR (Chen et al., 2020): one projector, NT-Xent over the global batch, temperature 0.1 (the SIE
    code's default)."""

    def __init__(self, common: CommonOptions, *, projector: str, temperature: float):
        super().__init__(common)
        self.projector = build_projector(self.representation_dim, projector)
        self.temperature = temperature

    def embed(self, rep1: Tensor, rep2: Tensor, action: Tensor) -> Embeddings:
        return {"z1": self.projector(rep1), "z2": self.projector(rep2)}

    def criterion(self, embeddings: Embeddings, action: Tensor) -> losses.LossTerms:
        loss = losses.info_nce_loss(embeddings["z1"], embeddings["z2"], temperature=self.temperature)
        return loss, {"info_nce": loss}


# --- SIE and its ablations ------------------------------------------------------------------------


class SIE(Method):
    """SIE (Garrido et al., 2023): split representation, two projectors, hypernetwork predictor.

    The representation's first (1 - equivariant_fraction) dims are invariant, the rest equivariant
    (256 + 256 at width 64); each part has its own projector, the projector spec split in proportion
    (1024-1024-1024 each). The predictor maps the view-1 equivariant embedding with the action to view 2's.
    Loss: `losses.sie_loss` (sim 10, std 10, cov 1, equi_factor 0.45; predictor-variance term on).
    Ablations are options: predictor_variance=False (sie-no-predvar), equivariant_fraction=1.0 with
    equi_factor 1.0 (sie-equi-only: one projector on the whole representation, equivariance weighted by
    sim alone, as the published SIEOnlyEqui), action "rotation+color" (sie-rotcolor), predictor "mlp"
    (sie-mlp: an MLP on [embedding, action], one hidden layer of width d by default; the published
    `--tf-num-layers` flag defaults to a single Linear layer, so set predictor_layers=1 to match it).
    Otherwise this matches the published SIE, SIENoVar, SIEOnlyEqui and SIERotColor term by term (inputs,
    targets not detached, normalisations); the objective is computed in float32 under mixed precision.
    """

    has_predictor = True

    def __init__(
        self,
        common: CommonOptions,
        *,
        projector: str,
        equivariant_fraction: float,
        sim_coeff: float,
        std_coeff: float,
        cov_coeff: float,
        equi_factor: float,
        predictor_variance: bool,
        predictor: str,
        hypernetwork: str,
        hypernetwork_bias: bool,
        predictor_bias: bool,
        predictor_layers: int,
    ):
        _, equivariant_dims = split_dims(common.representation_dim, equivariant_fraction)
        super().__init__(common, equivariant_dims=equivariant_dims)
        invariant_spec, equivariant_spec = split_projector_spec(projector, equivariant_fraction)
        self.equivariant_part = self.parts.get("equi", self.parts["full"])
        self.invariant_part = self.parts.get("inv")
        self.projector_inv = (
            None if invariant_spec is None else build_projector(self.invariant_part.stop, invariant_spec)
        )
        self.projector_equi = build_projector(equivariant_dims, equivariant_spec)
        self.predictor = build_predictor(
            predictor,
            parse_projector_spec(equivariant_spec)[-1],
            self.action_dim,
            hypernetwork=hypernetwork,
            hypernetwork_bias=hypernetwork_bias,
            predictor_bias=predictor_bias,
            predictor_layers=predictor_layers,
        )
        self.coefficients = {
            "sim_coeff": sim_coeff,
            "std_coeff": std_coeff,
            "cov_coeff": cov_coeff,
            "equi_factor": equi_factor,
            "predictor_variance": predictor_variance,
        }

    def embed(self, rep1: Tensor, rep2: Tensor, action: Tensor) -> Embeddings:
        equi1 = self._equivariant_embedding(rep1)
        embeddings = {"equi1": equi1, "equi2": self._equivariant_embedding(rep2)}
        embeddings["predicted"] = self.predictor(equi1, action)
        if self.projector_inv is not None:
            embeddings["inv1"] = self.projector_inv(rep1[:, self.invariant_part])
            embeddings["inv2"] = self.projector_inv(rep2[:, self.invariant_part])
        return embeddings

    def criterion(self, embeddings: Embeddings, action: Tensor) -> losses.LossTerms:
        return losses.sie_loss(
            embeddings.get("inv1"),
            embeddings.get("inv2"),
            embeddings["equi1"],
            embeddings["equi2"],
            embeddings["predicted"],
            **self.coefficients,
        )

    def _equivariant_embedding(self, representation: Tensor) -> Tensor:
        return self.projector_equi(representation[:, self.equivariant_part])

    @staticmethod
    def layout(config: dict[str, Any], representation_dim: int) -> dict[str, str]:
        invariant, equivariant = split_dims(representation_dim, config["equivariant_fraction"])
        invariant_spec, equivariant_spec = split_projector_spec(
            config["projector"], config["equivariant_fraction"]
        )
        projectors = (
            f"equi {equivariant_spec}"
            if invariant_spec is None
            else f"inv {invariant_spec}, equi {equivariant_spec}"
        )
        return {
            "split": f"{invariant}+{equivariant}",
            "projectors": projectors,
            "predictor": predictor_summary(config),
        }


class VICRegPartial(Method):
    """VICReg with partial invariance (SIE paper ablation): no split of the representation, no predictor.

    One projector; the invariance term covers only the leading (1 - equivariant_fraction) embedding dims,
    variance and covariance the whole embedding. As the published VICRegPartInv with the flags of the
    published SIE command (`--equi 256 --mlp 2048-2048-2048`), the default leaves 256 of the 2048 embedding
    dims out of the invariance term (equivariant_fraction 0.125; 0.5 would mirror SIE's 256 + 256 split of
    the representation instead).
    """

    def __init__(
        self,
        common: CommonOptions,
        *,
        projector: str,
        equivariant_fraction: float,
        sim_coeff: float,
        std_coeff: float,
        cov_coeff: float,
    ):
        super().__init__(common)
        self.projector = build_projector(self.representation_dim, projector)
        embedding = parse_projector_spec(projector)[-1]
        self.invariant_dims, _ = split_dims(embedding, equivariant_fraction)
        if self.invariant_dims < 1:  # the invariance term would be a mean over no dimension: NaN
            raise ValueError(
                f"equivariant_fraction {equivariant_fraction} leaves no invariant embedding dimension of "
                f"{embedding}; give a smaller fraction"
            )
        self.coefficients = {"sim_coeff": sim_coeff, "std_coeff": std_coeff, "cov_coeff": cov_coeff}

    def embed(self, rep1: Tensor, rep2: Tensor, action: Tensor) -> Embeddings:
        return {"z1": self.projector(rep1), "z2": self.projector(rep2)}

    def criterion(self, embeddings: Embeddings, action: Tensor) -> losses.LossTerms:
        return losses.partial_vicreg_loss(
            embeddings["z1"], embeddings["z2"], invariant_dims=self.invariant_dims, **self.coefficients
        )

    @staticmethod
    def layout(config: dict[str, Any], representation_dim: int) -> dict[str, str]:
        embedding = parse_projector_spec(config["projector"])[-1]
        invariant, equivariant = split_dims(embedding, config["equivariant_fraction"])
        return {
            "split": f"embedding {invariant}+{equivariant}",
            "projectors": config["projector"],
            "predictor": "-",
        }


# --- equivariant baselines ------------------------------------------------------------------------


class SimCLRAugSelf(Method):
    """SimCLR + AugSelf (Lee et al., 2021): InfoNCE plus an auxiliary MLP regressing the action.

    The MLP reads the concatenated representations [rep1, rep2] (not detached: it shapes the backbone)
    with two hidden layers of width 2r, as in the published SIE code (the AugSelf paper used 512), and
    is trained with MSE to the action, weight 1.
    """

    def __init__(self, common: CommonOptions, *, projector: str, temperature: float, augself_weight: float):
        super().__init__(common)
        self.projector = build_projector(self.representation_dim, projector)
        self.action_regressor = action_regressor(2 * self.representation_dim, self.action_dim)
        self.temperature = temperature
        self.augself_weight = augself_weight

    @staticmethod
    def layout(config: dict[str, Any], representation_dim: int) -> dict[str, str]:
        return {"split": "-", "projectors": config["projector"], "predictor": "action regressor [rep1, rep2]"}

    def embed(self, rep1: Tensor, rep2: Tensor, action: Tensor) -> Embeddings:
        return {
            "z1": self.projector(rep1),
            "z2": self.projector(rep2),
            "predicted_action": self.action_regressor(torch.cat([rep1, rep2], dim=1)),
        }

    def criterion(self, embeddings: Embeddings, action: Tensor) -> losses.LossTerms:
        return losses.augself_loss(
            embeddings["z1"],
            embeddings["z2"],
            embeddings["predicted_action"],
            action,
            temperature=self.temperature,
            augself_weight=self.augself_weight,
        )


class _PredictiveMethod(Method):
    """Shared wiring: an equivariant projector on the whole representation and an action predictor."""

    has_predictor = True

    def _build_equivariant_head(self, projector_spec: str, predictor_options: dict[str, Any]) -> None:
        self.projector_equi = build_projector(self.representation_dim, projector_spec)
        kind = predictor_options.pop("predictor")
        dim = parse_projector_spec(projector_spec)[-1]
        self.predictor = build_predictor(kind, dim, self.action_dim, **predictor_options)

    def _equivariant_embedding(self, representation: Tensor) -> Tensor:
        return self.projector_equi(representation)

    def _equivariant_embeddings(self, rep1: Tensor, rep2: Tensor, action: Tensor) -> Embeddings:
        equi1 = self.projector_equi(rep1)
        return {
            "equi1": equi1,
            "equi2": self.projector_equi(rep2),
            "predicted": self.predictor(equi1, action),
        }


class _EquiModHeads(_PredictiveMethod):
    """EquiMod's wiring: an invariant projector and an equivariant projector with the action predictor,
    both on the whole representation and with the same spec."""

    def __init__(self, common: CommonOptions, projector: str, predictor_options: dict[str, Any]):
        super().__init__(common)
        self.projector_inv = build_projector(self.representation_dim, projector)
        self._build_equivariant_head(projector, predictor_options)

    def embed(self, rep1: Tensor, rep2: Tensor, action: Tensor) -> Embeddings:
        return {
            "inv1": self.projector_inv(rep1),
            "inv2": self.projector_inv(rep2),
            **self._equivariant_embeddings(rep1, rep2, action),
        }

    @staticmethod
    def layout(config: dict[str, Any], representation_dim: int) -> dict[str, str]:
        return {
            "split": "-",
            "projectors": f"inv {config['projector']}, equi {config['projector']}",
            "predictor": predictor_summary(config),
        }


class EquiModSimCLR(_EquiModHeads):
    """EquiMod (Devillers & Lefort, 2023), SimCLR version, as adapted to 3DIEBench by the SIE code.

    Invariant projector + InfoNCE between views; equivariant projector (same spec) whose embedding of
    view 1 goes through the action-conditioned predictor, + InfoNCE between predictions and view-2
    embeddings (predictions and targets both serve as negatives, as in the published SIE code). EquiMod's
    own setting predicts each augmented view from the unaugmented image; 3DIEBench has no canonical view,
    so view 2 is predicted from view 1. Predictor: the hypernetwork (SIE code default; predictor="mlp"
    gives EquiMod's MLP on [embedding, action]). Weight of the equivariant term: 1, as in the EquiMod
    paper and the published rotation+colour variant; the published rotation variant multiplies it by its
    `--equi-factor` flag instead, whose value for EquiMod is not published.
    """

    def __init__(
        self,
        common: CommonOptions,
        *,
        projector: str,
        temperature: float,
        equi_weight: float,
        **predictor_options: Any,
    ):
        super().__init__(common, projector, predictor_options)
        self.temperature = temperature
        self.equi_weight = equi_weight

    def criterion(self, embeddings: Embeddings, action: Tensor) -> losses.LossTerms:
        return losses.equimod_contrastive_loss(
            embeddings["inv1"],
            embeddings["inv2"],
            embeddings["predicted"],
            embeddings["equi2"],
            temperature=self.temperature,
            equi_weight=self.equi_weight,
        )


class EquiModVICReg(_EquiModHeads):
    """EquiMod, VICReg version (introduced in the SIE paper): contrastive losses replaced by VICReg.

    Invariant branch: VICReg between the views' invariant embeddings. Equivariant branch:
    sim * MSE(prediction, view-2 embedding) + std/cov terms on the equivariant embeddings of both views,
    as in the published VICRegEquiMod. The published code weights the equivariant branch by a command-line
    factor; the default here is 1 (EquiMod's equal weighting).
    """

    def __init__(
        self,
        common: CommonOptions,
        *,
        projector: str,
        sim_coeff: float,
        std_coeff: float,
        cov_coeff: float,
        equi_weight: float,
        **predictor_options: Any,
    ):
        super().__init__(common, projector, predictor_options)
        self.coefficients = {
            "sim_coeff": sim_coeff,
            "std_coeff": std_coeff,
            "cov_coeff": cov_coeff,
            "equi_weight": equi_weight,
        }

    def criterion(self, embeddings: Embeddings, action: Tensor) -> losses.LossTerms:
        return losses.equimod_vicreg_loss(
            embeddings["inv1"],
            embeddings["inv2"],
            embeddings["equi1"],
            embeddings["equi2"],
            embeddings["predicted"],
            **self.coefficients,
        )


class SimCLREquiOnly(_PredictiveMethod):
    """SimCLR, equivariant only (published SimCLROnlyEqui): one projector, the hypernetwork predictor,
    and InfoNCE between predicted and view-2 embeddings; no invariance term.
    """

    def __init__(
        self, common: CommonOptions, *, projector: str, temperature: float, **predictor_options: Any
    ):
        super().__init__(common)
        self._build_equivariant_head(projector, predictor_options)
        self.temperature = temperature

    def embed(self, rep1: Tensor, rep2: Tensor, action: Tensor) -> Embeddings:
        return self._equivariant_embeddings(rep1, rep2, action)

    def criterion(self, embeddings: Embeddings, action: Tensor) -> losses.LossTerms:
        loss = losses.info_nce_loss(
            embeddings["predicted"], embeddings["equi2"], temperature=self.temperature
        )
        return loss, {"info_nce_equivariant": loss}


class SEN(_PredictiveMethod):
    """SEN (Park et al., "Learning Symmetric Embeddings for Equivariant World Models", ICML 2022).

    SEN learns an encoder into a space where the transformation acts in a known way: a sum of group
    representations. Here the embedding's leading (1 - equivariant_fraction) dims carry the trivial
    representation (invariant: what does not change with the pose, such as the object's identity) and the
    rest are 3-vectors that the relative rotation rotates (`RotationRepresentationPredictor`, a right
    action), so nothing is learned in the predictor. The default fraction 0.5 mirrors SIE's split; with
    no trivial part, the contrastive term could only separate objects along the d mod 3 leftover dims.
    Loss: SEN's contrastive hinge energy (`losses.hinge_energy_loss`, from C-SWM: sigma 0.5, hinge 1),
    the hinge applied to every pair of distinct samples of the global batch: the expectation of the
    published one-random-negative term. The SIE paper does not publish its SEN code; these choices follow
    the SEN paper and code. Rotation actions only (colour has no known representation).
    """

    def __init__(
        self,
        common: CommonOptions,
        *,
        projector: str,
        equivariant_fraction: float,
        hinge: float,
        sigma: float,
    ):
        if common.action != "rotation":
            raise ValueError(f"sen supports the 'rotation' action only, got {common.action!r}")
        super().__init__(common)
        self.projector_equi = build_projector(self.representation_dim, projector)
        trivial_dims, _ = split_dims(parse_projector_spec(projector)[-1], equivariant_fraction)
        self.predictor = RotationRepresentationPredictor(trivial_dims)
        self.hinge = hinge
        self.sigma = sigma

    @staticmethod
    def layout(config: dict[str, Any], representation_dim: int) -> dict[str, str]:
        trivial, rotated = split_dims(
            parse_projector_spec(config["projector"])[-1], config["equivariant_fraction"]
        )
        return {
            "split": f"embedding {trivial} trivial + {rotated} rotated",
            "projectors": config["projector"],
            "predictor": "fixed rotation of 3-vectors",
        }

    def embed(self, rep1: Tensor, rep2: Tensor, action: Tensor) -> Embeddings:
        return self._equivariant_embeddings(rep1, rep2, action)

    def criterion(self, embeddings: Embeddings, action: Tensor) -> losses.LossTerms:
        return losses.hinge_energy_loss(
            embeddings["predicted"],
            embeddings["equi2"],
            embeddings["equi1"],
            hinge=self.hinge,
            sigma=self.sigma,
        )


#: Registry: method name -> class. Defaults are in METHOD_DEFAULTS above.
METHOD_CLASSES: dict[str, type[Method]] = {
    "vicreg": VICReg,
    "simclr": SimCLR,
    "sie": SIE,
    "sie-no-predvar": SIE,
    "sie-equi-only": SIE,
    "sie-rotcolor": SIE,
    "sie-mlp": SIE,
    "vicreg-partial": VICRegPartial,
    "simclr-augself": SimCLRAugSelf,
    "simclr-augself-rotcolor": SimCLRAugSelf,
    "equimod-simclr": EquiModSimCLR,
    "equimod-vicreg": EquiModVICReg,
    "simclr-equi-only": SimCLREquiOnly,
    "sen": SEN,
}
