"""A fit over samples sharded across torch.distributed processes: what the ranks exchange, and nothing else.

With ``fit_guidance(..., distributed=True)`` under an initialised process group, every rank holds a
contiguous shard of the training samples, in rank order (rank 0 the first rows, rank 1 the next, ...). The
fit then needs four exchanges, all here:

* the shard sizes, so every rank knows N and where its rows sit in the global order;
* the k-means++ sample: drawn by global index from the seed, each rank fills in the rows it holds and an
  all-reduce (a sum with zeros, which is exact) gives every rank the same sample, hence the same seeding and
  warm start;
* the Lloyd statistics of every full pass (counts, feature sums, and on the first pass the totals): all are
  sums over samples, so a sum across ranks gives what one process would have computed from all N;
* the farthest-point reseed of an empty cluster: each rank's farthest sample, the farthest of them wins
  (the lowest rank on a tie, as one process would pick the first).

Without a process group (or with ``distributed=False``) every method is the single-process identity.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as tdist

from ..distributed import rank, world_size


class _Comm:
    """The exchanges of a sharded fit over the default process group (the identity for one process)."""

    def __init__(self, distributed: bool):
        self.on = bool(distributed) and world_size() > 1
        self.rank = rank() if self.on else 0
        self.world = world_size() if self.on else 1
        # NCCL moves CUDA tensors only (untested here: no GPU on the machines this was written on)
        self.device = torch.device("cpu")
        if self.on and tdist.get_backend() == "nccl":
            self.device = torch.device("cuda", torch.cuda.current_device())

    def _all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        d = t.to(self.device)
        tdist.all_reduce(d, op=tdist.ReduceOp.SUM)
        return d.cpu()

    def _all_gather(self, t: torch.Tensor) -> torch.Tensor:
        d = t.to(self.device)
        out = [torch.zeros_like(d) for _ in range(self.world)]
        tdist.all_gather(out, d)
        return torch.stack(out).cpu()  # (world, ...)

    def layout(self, n_local: int) -> tuple[int, int]:
        """(N over all ranks, the global index of this rank's first row)."""
        if not self.on:
            return n_local, 0
        sizes = self._all_gather(torch.tensor([n_local], dtype=torch.int64))[:, 0].tolist()
        if min(sizes) < 1:
            raise ValueError(f"distributed guidance fit: every rank needs at least one sample; shard sizes "
                             f"per rank {sizes} (use fewer processes than samples)")
        return sum(sizes), sum(sizes[:self.rank])

    def sum(self, *arrays: np.ndarray | None) -> list[np.ndarray | None]:
        """Sum numpy arrays over ranks in one all-reduce (float64); None stays None."""
        if not self.on:
            return list(arrays)
        present = [a for a in arrays if a is not None]
        flat = self._all_reduce(torch.from_numpy(np.concatenate([np.asarray(a, np.float64).ravel() for a in present])))
        out, k = [], 0
        for a in arrays:
            if a is None:
                out.append(None)
                continue
            out.append(flat[k:k + a.size].numpy().reshape(a.shape).astype(a.dtype, copy=False))
            k += a.size
        return out

    def sample(self, rows: np.ndarray) -> np.ndarray:
        """Each rank's rows of the sample (zeros where another rank holds them), summed: the whole sample."""
        if not self.on:
            return rows
        return self._all_reduce(torch.from_numpy(np.ascontiguousarray(rows, np.float32))).numpy()

    def farthest(self, pts: np.ndarray, best: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per (position, init) the farthest point over ranks: pts (pb, R, C), best (pb, R) squared distance."""
        if not self.on:
            return pts, best
        b = self._all_gather(torch.from_numpy(np.ascontiguousarray(best, np.float64))).numpy()  # (world, pb, R)
        p = self._all_gather(torch.from_numpy(np.ascontiguousarray(pts, np.float32))).numpy()  # (world, pb, R, C)
        win = b.argmax(0)  # the first (lowest) rank among equal maxima
        return np.take_along_axis(p, win[None, ..., None], 0)[0], b.max(0)
