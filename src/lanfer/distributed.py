"""The few places that change under DistributedDataParallel, gathered so the training loop stays one loop.

Launched with ``torchrun --nproc_per_node=N -m lanfer train ...`` (several machines: torchrun's own
``--nnodes/--node_rank/--rdzv_endpoint`` flags), the environment variables RANK/WORLD_SIZE/LOCAL_RANK and
MASTER_ADDR/MASTER_PORT switch DDP on (nccl on GPUs, gloo on CPUs); launched plainly, every function here is the
single-process identity. Only rank 0 prints and writes files; metrics are summed across ranks in
:func:`all_reduce_sum` or gathered with :func:`all_gather_objects`.
"""
from __future__ import annotations

import atexit
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
        # once per process, at exit: cross_validate trains several runs in one group
        atexit.register(cleanup)
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


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (identity in a single process)."""
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order (``[obj]`` in a single process)."""
    if not dist.is_initialized():
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after an epoch's last step every rank still holds
    the running statistics of its own last batch; evaluating or saving then needs one agreed copy."""
    if dist.is_initialized():
        for b in module.buffers():
            dist.broadcast(b, src)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
