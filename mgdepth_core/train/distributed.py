"""DistributedDataParallel plumbing: process group from torchrun's environment, device choice, collectives.

Under ``torchrun --nproc_per_node N -m mgdepth_core.cli train ...`` every process reads ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; NCCL is used on GPUs and gloo on CPUs. Without those variables the run is
a single process and every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistributedContext:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, shows the progress bar and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → the local rank's GPU when CUDA is available, else the CPU; otherwise ``name`` as given."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use device=cpu or auto")
    return device


def init_distributed(device_name: str) -> DistributedContext:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=rank,
                                world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def all_ranks_true(flag: bool, context: DistributedContext) -> bool:
    """True only where ``flag`` holds on every rank (e.g. "the loss is finite")."""
    if not context.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item() > 0.5)


def gather_objects(obj: Any, context: DistributedContext) -> list[Any]:
    """Every rank's ``obj`` (a picklable value), in rank order; ``[obj]`` for a single process."""
    if not context.distributed:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def average_(tensors: list[torch.Tensor], context: DistributedContext) -> None:
    """Replace each tensor, in place, by its mean over ranks (e.g. the tracked depth-bin range)."""
    if not context.distributed:
        return
    for tensor in tensors:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(context.world_size)


def broadcast_buffers(module: torch.nn.Module, context: DistributedContext) -> None:
    """Copy rank 0's buffers (BatchNorm statistics, depth bins) to every rank, so all hold the saved model."""
    if not context.distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def barrier(context: DistributedContext) -> None:
    if context.distributed:
        dist.barrier()


def shutdown(context: DistributedContext) -> None:
    """Leave the process group (only when this module created it)."""
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()
