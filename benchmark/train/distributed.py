"""Processes and devices: torchrun detection, process group, synchronised batch norm, collective flags.

Under torchrun the environment holds RANK, WORLD_SIZE and LOCAL_RANK; the trainer then joins a process
group (NCCL on CUDA, gloo on the CPU). Batch norm is synchronised across processes as in the paper:
`nn.SyncBatchNorm` on CUDA, and `CPUSyncBatchNorm` below on the CPU, where `nn.SyncBatchNorm` refuses
to run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from benchmark.train.config import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class ProcessContext:
    """This process's place in the run: rank, world size, local rank and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def environment_ranks(environ: dict[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment variables; (0, 1, 0) without them."""
    environ = os.environ if environ is None else environ
    world_size = int(environ.get("WORLD_SIZE", "1"))
    rank = int(environ.get("RANK", "0"))
    local_rank = int(environ.get("LOCAL_RANK", str(rank)))
    return rank, world_size, local_rank


def resolve_device(requested: str, local_rank: int) -> torch.device:
    """ "auto" -> this process's GPU when CUDA is available, else the CPU; "cuda" -> cuda:LOCAL_RANK."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        requested = f"cuda:{local_rank}"
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested} was asked for but CUDA is not available")
    return device


def start_processes(requested_device: str) -> ProcessContext:
    """Join the process group when launched by torchrun with more than one process; pick the device.
    ConfigError for a GPU that is not there."""
    rank, world_size, local_rank = environment_ranks()
    if world_size > 1 and requested_device.startswith("cuda:"):
        raise ConfigError(
            f"device {requested_device} would put all {world_size} processes on one GPU; use --device cuda "
            "(each process takes the GPU of its local rank) and CUDA_VISIBLE_DEVICES to choose the GPUs"
        )
    try:
        device = resolve_device(requested_device, local_rank)
    except RuntimeError as error:
        raise ConfigError(f"{error}; use --device cpu") from None
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if device.index >= visible:
            raise ConfigError(
                f"process {rank} was given {device} but {visible} GPUs are visible; start at most {visible} "
                "processes per node (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return ProcessContext(rank, world_size, local_rank, device)


def stop_processes(context: ProcessContext) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def any_process(flags: list[bool], context: ProcessContext) -> list[bool]:
    """Element-wise OR of boolean flags over all processes (one small all-reduce)."""
    if not context.distributed:
        return flags
    tensor = torch.tensor([float(flag) for flag in flags], device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(value) for value in tensor.tolist()]


class PeerFailed(RuntimeError):
    """Another process failed at a step that all processes take together (`together`); `rank`: the first."""

    def __init__(self, rank: int) -> None:
        super().__init__(f"process {rank} failed")
        self.rank = rank


def together(
    compute: Callable[[], T],
    context: ProcessContext,
    errors: tuple[type[BaseException], ...] = (Exception,),
    main_only: bool = False,
) -> T | None:
    """compute() on every process (on process 0 only with `main_only`, None elsewhere), then one small
    all-reduce: when it raised one of `errors` on some process, that process raises its own error and
    every other one PeerFailed, instead of waiting for it at the next collective until a timeout."""
    value, failure = None, None
    if context.is_main or not main_only:
        try:
            value = compute()
        except errors as error:
            failure = error
    failed = first_rank(failure is not None, context)
    if failure is not None:
        raise failure
    if failed is not None:
        raise PeerFailed(failed)
    return value


def first_rank(flag: bool, context: ProcessContext) -> int | None:
    """The lowest rank whose `flag` is set, None when no process's is (one small all-reduce)."""
    if not context.distributed:
        return context.rank if flag else None
    tensor = torch.tensor([context.rank if flag else context.world_size], device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    rank = int(tensor.item())
    return None if rank == context.world_size else rank


def gather_objects(value: Any, context: ProcessContext) -> list[Any]:
    """Every process's `value`, in rank order (one all-gather of Python objects)."""
    if not context.distributed:
        return [value]
    parts: list[Any] = [None] * context.world_size
    dist.all_gather_object(parts, value)
    return parts


def union_over_processes(mapping: dict, context: ProcessContext) -> dict:
    """The union of every process's dict."""
    return {key: value for part in gather_objects(mapping, context) for key, value in part.items()}


def mean_over_processes(values: torch.Tensor, context: ProcessContext) -> torch.Tensor:
    """Average of a tensor over all processes."""
    if not context.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values)
    return values / context.world_size


def synchronise_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every batch norm of `module` synchronised across processes (same parameters and buffers)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_to_cpu_sync(module)


class CPUSyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics (mean, biased variance) cover the batches of all processes,
    for gloo on the CPU. Gradients flow through the all-reduce of the per-channel sums. Outside training
    or without a process group it is a plain batch norm."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-d input (N, C, ...), got {input.dim()}-d")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        synchronised = self.training and dist.is_initialized() and dist.get_world_size() > 1
        if not synchronised:
            return super().forward(input)
        self._check_input_dim(input)
        channels = input.shape[1]
        reduce_dims = [0, *range(2, input.dim())]
        count = input.new_tensor([input.numel() / channels])
        local = torch.cat([input.sum(reduce_dims), input.pow(2).sum(reduce_dims), count])
        total = _SumOverProcesses.apply(local)
        samples = total[-1]
        mean = total[:channels] / samples
        variance = (total[channels : 2 * channels] / samples - mean.pow(2)).clamp_min(0)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), variance.detach(), samples.detach())
        shape = [1, channels] + [1] * (input.dim() - 2)
        output = (input - mean.view(shape)) * torch.rsqrt(variance.view(shape) + self.eps)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        return output

    @torch.no_grad()
    def _update_running_stats(
        self, mean: torch.Tensor, variance: torch.Tensor, samples: torch.Tensor
    ) -> None:
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        unbiased = variance * samples / (samples - 1).clamp_min(1)
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(unbiased, factor)


class _SumOverProcesses(torch.autograd.Function):
    """all_reduce (sum) whose backward sums the incoming gradients over the processes as well."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = gradient.clone()
        dist.all_reduce(total)
        return total


def _convert_to_cpu_sync(module: nn.Module) -> nn.Module:
    converted = module
    if isinstance(module, _BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        converted = CPUSyncBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            with torch.no_grad():
                converted.weight = module.weight
                converted.bias = module.bias
        if module.track_running_stats:
            converted.running_mean = module.running_mean
            converted.running_var = module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.training = module.training
    for name, child in module.named_children():
        converted.add_module(name, _convert_to_cpu_sync(child))
    return converted
