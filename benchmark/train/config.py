"""Training settings: the presets (manifests/train_presets.toml, one visible place) and the resolved config.

`resolve_config(preset, **overrides)` gives a `TrainConfig`: a preset's values updated with the
command-line options that were given. The trainer saves the fully resolved config (with the method's
own resolved options) as RUN/config.json.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

from render import spec

PRESETS_FILE = spec.MANIFESTS_DIR / "train_presets.toml"
DEFAULT_PRESET = "mini"
AMP_DTYPES = ("auto", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
#: Largest ResNet-18 base width accepted (64 is the published network; 1024 has 256 times its weights).
MAX_WIDTH = 1024
#: Far above any use (the published run has 2,000): a slip of extra digits is one line, not a run that
#: never ends.
MAX_EPOCHS = 1_000_000


class ConfigError(ValueError):
    """Settings that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on.

    batch_size is global (split across processes); lr and weight_decay are Adam's; `amp` enables mixed
    precision on CUDA (ignored on the CPU) in `amp_dtype` ("auto": bfloat16 where supported, else float16
    with a gradient scaler); `method_options` go to sie_models.build_method; `skip_bad_objects` trains
    without the objects whose files are unusable instead of refusing the dataset.
    """

    method: str
    data: str
    out: str
    preset: str = DEFAULT_PRESET
    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-6
    image_size: int = 64
    width: int = 16
    workers: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    amp_dtype: str = "auto"
    log_every: int = 10
    method_options: dict[str, Any] = field(default_factory=dict)
    skip_bad_objects: bool = False

    def __post_init__(self) -> None:
        positive = ("epochs", "batch_size", "image_size", "width", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name, most in (("image_size", spec.MAX_IMAGE_SIZE), ("width", MAX_WIDTH), ("epochs", MAX_EPOCHS)):
            if getattr(self, name) > most:
                raise ConfigError(f"{name} must be at most {most}, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ConfigError(
                f"batch_size must be at least 2 (batch norm and the variance terms need two samples), "
                f"got {self.batch_size}"
            )
        if self.workers < 0:
            raise ConfigError(f"workers must be 0 or more, got {self.workers}")
        if not 0 <= self.seed < 2**32:  # SeedSequence: larger seeds alias smaller ones
            raise ConfigError(f"seed must be from 0 to 2^32 - 1, got {self.seed}")
        if not 0 < self.lr < math.inf or not 0 <= self.weight_decay < math.inf:
            raise ConfigError(
                f"lr must be positive and weight_decay non-negative, both finite ({self.lr}, "
                f"{self.weight_decay})"
            )
        if self.device not in DEVICES and not self.device.startswith("cuda:"):
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.amp_dtype not in AMP_DTYPES:
            raise ConfigError(f"amp_dtype must be one of {', '.join(AMP_DTYPES)}, got {self.amp_dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@cache
def presets(path: Path = PRESETS_FILE) -> dict[str, dict[str, Any]]:
    """Preset name -> settings, read from manifests/train_presets.toml."""
    try:
        with Path(path).open("rb") as handle:
            table = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the training presets ({error})") from None
    known = {f.name for f in fields(TrainConfig)}
    for name, values in table.items():
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{path}: preset [{name}] has unknown settings {', '.join(unknown)}")
    return table


def resolve_config(preset: str, **overrides: Any) -> TrainConfig:
    """A preset's settings updated with `overrides` (None values are ignored: options not given).

    `method_options` in overrides update the preset's method options key by key; each is checked against
    the method's (type and range) here, so that a bad one stops the run before anything is written.
    """
    table = presets()
    if preset not in table:
        raise ConfigError(f"unknown preset {preset!r}; presets: {', '.join(table)} (in {PRESETS_FILE})")
    given = {key: value for key, value in overrides.items() if value is not None}
    options = {**preset_method_options(table[preset], given.get("method")), **given.pop("method_options", {})}
    check_options(given.get("method"), options)
    values = {**table[preset], **given, "preset": preset, "method_options": options}
    try:
        return TrainConfig(**values)
    except TypeError as error:
        raise ConfigError(f"missing or unknown setting: {error}") from None


def preset_method_options(preset: dict[str, Any], method: str | None) -> dict[str, Any]:
    """The preset's method options that `method` has (every method has a projector; not all have more)."""
    from sie_models import UnknownMethodError, method_defaults

    options = preset.get("method_options", {})
    try:
        known = method_defaults(method) if method is not None else {}
    except UnknownMethodError as error:
        raise ConfigError(str(error)) from None
    return {key: value for key, value in options.items() if key in known}


def options_beyond_preset(method: str, preset: str | None, options: dict[str, Any] | None) -> dict[str, Any]:
    """The method options of a run that differ from its preset's method options: what sets the run apart
    from the preset's run of the same method. Every option counts for a preset or method this version
    does not know."""
    try:
        table = presets()
        defaults = preset_method_options(table[preset], method) if preset in table else {}
    except ConfigError:
        defaults = {}
    return {key: value for key, value in (options or {}).items() if defaults.get(key) != value}


#: Training settings that change what a run learns besides its method options, epochs and image size
#: (which leaderboards key rows on of their own).
RUN_SETTINGS = ("width", "batch_size", "lr", "weight_decay")


def settings_beyond_preset(preset: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    """The RUN_SETTINGS given in `settings` (None: not given) that differ from the preset's: what sets a
    run apart from the preset's run besides its method options. Every one given counts for a preset this
    version does not know."""
    try:
        base = presets().get(preset or "", {})
    except ConfigError:
        base = {}
    return {
        key: settings[key]
        for key in RUN_SETTINGS
        if settings.get(key) is not None and base.get(key) != settings[key]
    }


#: Method options that training sets itself, and where each comes from.
RESERVED_METHOD_OPTIONS = {
    "image_size": "--image-size",
    "width": "--width",
    "num_classes": "the dataset (its number of classes)",
}


def check_options(method: str | None, options: dict[str, Any]) -> None:
    """ConfigError for a method option that `method` lacks, or a value of the wrong type or out of range,
    before anything is read or written (the network is built later)."""
    from sie_models import MethodOptionError, UnknownMethodError, check_method_options

    if method is None:
        return
    reserved = [name for name in RESERVED_METHOD_OPTIONS if name in options]
    if reserved:
        how = "; ".join(f"{name} comes from {RESERVED_METHOD_OPTIONS[name]}" for name in reserved)
        raise ConfigError(f"--option {', '.join(reserved)}: {how}; remove it from --option")
    try:
        check_method_options(method, options, unlisted=tuple(RESERVED_METHOD_OPTIONS))
    except (MethodOptionError, UnknownMethodError) as error:
        raise ConfigError(str(error)) from None


def parse_method_options(items: tuple[str, ...]) -> dict[str, Any]:
    """ "KEY=VALUE" strings -> dict; VALUE is read as JSON when it parses (numbers, true, "..."), else kept
    as a string."""
    options = {}
    for item in items:
        key, separator, value = item.partition("=")
        key = key.strip()
        if not separator or not key:
            raise ConfigError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        if key in options:
            raise ConfigError(f"--option {key} is given twice ({item!r}); keep one")
        if key == "projector" and isinstance(parsed, int):  # "64" is a one-layer spec, not a number
            parsed = value.strip()
        options[key] = parsed
    return options
