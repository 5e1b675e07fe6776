"""The training loop (`3die train`): torchrun/DDP, AMP, atomic checkpoints, resume, TensorBoard logs.

`train(resolve_config(preset, method=..., data=..., out=...))` trains a method; `load_trained(run_dir)`
rebuilds the trained method of a run folder for the evaluations.
"""

from benchmark.train.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from benchmark.train.config import (
    DEFAULT_PRESET,
    PRESETS_FILE,
    ConfigError,
    TrainConfig,
    parse_method_options,
    presets,
    resolve_config,
)
from benchmark.train.loop import (
    INTERRUPTED_EXIT_STATUS,
    NonFiniteLossError,
    TrainingError,
    TrainResult,
    load_trained,
    train,
)

__all__ = [
    "DEFAULT_PRESET",
    "INTERRUPTED_EXIT_STATUS",
    "PRESETS_FILE",
    "CheckpointError",
    "ConfigError",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "load_checkpoint",
    "load_trained",
    "parse_method_options",
    "presets",
    "read_checkpoint",
    "resolve_config",
    "save_checkpoint",
    "train",
]
