"""The weights a run started from, rebuilt from its checkpoint's config: training seeds torch with the
run's seed, then builds the method (`benchmark.train.loop`), so the same two calls give its initial weights.
Tests of resumed and interrupted runs use it to show that the runs they compare did learn."""

from __future__ import annotations

import torch

from sie_models import build_method


def parameters_left_at_initial(payload: dict) -> list[str]:
    """Names of the trainable parameters of a checkpoint `payload` still equal to their initial values."""
    config = payload["config"]
    torch.manual_seed(config["seed"])
    initial = build_method(config["method"], **config["method_config"])
    return [
        name
        for name, parameter in initial.named_parameters()
        if torch.equal(parameter, payload["model"][name])
    ]
