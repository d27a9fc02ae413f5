"""Distributed context for torchrun: rank and world from the environment, nccl on CUDA, gloo on CPU.

Single process:  ``genprune train --preset small``
One node, N GPUs: ``torchrun --standalone --nproc_per_node=N -m genprune_nb.cli train --preset gpt2-124m``
Without torchrun's variables the context is a world of one and nothing is initialised.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, shows progress and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_mean(self, value: torch.Tensor) -> torch.Tensor:
        if self.distributed:
            value = value.clone()
            dist.all_reduce(value, op=dist.ReduceOp.SUM)
            value /= self.world_size
        return value

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def init_distributed(device: str | None = None) -> DistContext:
    """Read RANK / LOCAL_RANK / WORLD_SIZE (set by torchrun) and join the process group if world > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device) if device else default_device()
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if world > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world, device=dev)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
