"""The few places that change under DistributedDataParallel, gathered so the training loop stays one loop.

Launched with ``torchrun --nproc_per_node=N -m lanfer.cli train ...``, the environment variables
RANK/WORLD_SIZE/LOCAL_RANK switch DDP on; launched plainly, every function here is the single-process
identity. Only rank 0 prints and writes files; metrics are summed across ranks in :func:`all_reduce_sum`.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.distributed as dist

from .devices import resolve_device


def setup(device_pref: str = "auto") -> tuple[torch.device, int, int]:
    """Initialise the process group if launched by torchrun; returns (device, rank, world_size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, what="train.device")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda" and device.index is None and world > 1:
        # A bare "cuda" under torchrun means one GPU per process: this rank's LOCAL_RANK.
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return device, rank, world


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def log(msg: str) -> None:
    """Print on rank 0 only (every rank would otherwise print the same line)."""
    if is_main():
        print(msg, flush=True)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs (model initialisation, augmentation)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (identity in a single process)."""
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
