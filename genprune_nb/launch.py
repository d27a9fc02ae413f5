"""Distributed context for torchrun: rank and world from the environment, nccl on CUDA, gloo on CPU.

Single process:  ``genprune train --preset small``
One node, N GPUs: ``torchrun --standalone --nproc_per_node=N -m genprune_nb.cli train --preset gpt2-124m``
Without torchrun's variables the context is a world of one and nothing is initialised.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

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


def cpu_threads(environ: Mapping[str, str], cores: int, default: int, local_world_size: int = 1) -> int:
    """Torch threads for one process on CPU: ``OMP_NUM_THREADS`` when set (its first entry), else the ``cores`` this
    process may use, shared among the node's ``local_world_size`` ranks, and never more than ``default`` (torch's
    count: physical cores, or fewer if the user chose so); at least 1."""
    omp = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    return max(1, min(default, cores // max(1, local_world_size)))


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def init_distributed(device: str | None = None) -> DistContext:
    """Read RANK / LOCAL_RANK / WORLD_SIZE (set by torchrun) and join the process group if world > 1; on CPU, use
    :func:`cpu_threads` threads."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device) if device else default_device()
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank if world > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    if dev.type == "cpu":
        torch.set_num_threads(cpu_threads(os.environ, available_cores(), torch.get_num_threads(),
                                          int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", device_id=dev if dev.type == "cuda" else None)
    return DistContext(rank=rank, local_rank=local_rank, world_size=world, device=dev)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
