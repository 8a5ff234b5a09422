"""The only code that touches the big arrays: one assignment pass, distances and row picks, in numpy (CPU)
or torch (CUDA)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


# ----------------------------------------------------------------------------------------------------
# Backends: the only code that touches the big arrays


@dataclass
class _Stats:
    """Additive statistics of one assignment pass over some samples, for every (position, init).

    Everything is a sum over samples, so shards of the data (chunks here, DDP ranks later) combine by
    addition. ``n``, ``colsum`` and ``sqsum`` do not depend on the centres; they are gathered on the first
    pass only.
    """

    count1: np.ndarray  # (pb, R) samples nearer centre 1
    sum1: np.ndarray  # (pb, R, C) their feature sum
    n: np.ndarray | None = None  # (pb,) samples
    colsum: np.ndarray | None = None  # (pb, C) feature sum of all samples
    sqsum: np.ndarray | None = None  # (pb,) sum of squared norms of all samples

    def __add__(self, o: _Stats) -> _Stats:
        add = lambda a, b: None if a is None else a + b  # noqa: E731
        return _Stats(self.count1 + o.count1, self.sum1 + o.sum1, add(self.n, o.n), add(self.colsum, o.colsum),
                      add(self.sqsum, o.sqsum))


_TILE = 1024  # rows of one CPU task: 1024 x 512 float32 = 2 MiB, half of a 4 MiB L2 cache


class _NumpyOps:
    """CPU: per (position, init) one BLAS matrix-vector product and one masked sum, spread over a thread pool.

    A K=2 pass has three columns at most (``n_init`` centre pairs), and OpenBLAS's sgemm with 3 columns runs
    at a third of the speed of 3 sgemv calls (Intel Xeon with 4 MiB L2, 4096 x 512 float32: 1.1 ms vs
    3 x 0.2 ms), so a pass is one sgemv (``x . w``) and one transposed sgemv (``near1 . x``) per init, done
    tile by tile (``_TILE`` rows, a task each): a tile is read from memory once and stays in L2 for all of
    them. BLAS is pinned to one thread (with threadpoolctl, which comes with scikit-learn;
    without it BLAS keeps its default) and the tasks are shared among one Python thread per core (numpy
    releases the GIL in BLAS): on a loaded 2-core machine a small threaded BLAS call waits for both cores.
    Each task is computed by one thread in a fixed order, so results do not depend on scheduling.
    :func:`fit_guidance` keeps the positions of a block few (``block_positions``) so that all passes over a
    block run while its data is in cache.
    """

    name = "numpy"

    def __init__(self):
        self._pool = None
        self._limits = None
        self.workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

    def block_positions(self, per_position: int, positions: int, max_memory: int) -> int:
        """Positions per block: one per worker thread (cache-sized work), fewer if ``max_memory`` says so."""
        return max(1, min(positions, max_memory // max(1, per_position), self.workers))

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # only speed depends on it
            threadpool_limits = None
        if threadpool_limits is not None:
            self._limits = threadpool_limits(1, user_api="blas")
        if self.workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(min(self.workers, 16), thread_name_prefix="lanfer-guidance")
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None

    def _map(self, fn, items):
        if self._pool is None or len(items) < 2:
            for i in items:
                fn(i)
        else:
            for _ in self._pool.map(fn, items):
                pass

    def block(self, x) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)

    def empty(self, shape):
        return np.empty(shape, np.float32)

    def fill(self, dst: np.ndarray, x) -> None:
        """dst[...] = x as float32: torch's float16 conversion is vectorised, numpy's 2-4x slower here."""
        x = np.asarray(x)
        if x.flags.writeable:  # torch.from_numpy refuses (warns on) read-only arrays
            torch.from_numpy(dst).copy_(torch.from_numpy(x))
        else:
            dst[...] = x

    def lloyd(self, X, W, b, active, totals: bool) -> _Stats:
        pb, n, c = X.shape
        r = W.shape[1]
        tiles = range(0, n, _TILE)
        # per (position, tile) partial sums, added in tile order below: the result does not depend on which
        # thread computed which tile, nor on how many threads there are
        cnt = np.zeros((pb, len(tiles), r))
        sm = np.zeros((pb, len(tiles), r, c))
        col = np.zeros((pb, len(tiles), c)) if totals else None
        sq = np.zeros((pb, len(tiles))) if totals else None

        def one(task):
            i, t0, t1 = task
            for t in range(t0, t1):
                x = X[i, tiles[t]:tiles[t] + _TILE]  # (tile, C): read from memory once, then from L2 for every init
                if active[i]:
                    for j in range(r):
                        near1 = (x @ W[i, j] > b[i, j]).astype(np.float32)  # (tile,)
                        cnt[i, t, j] = np.count_nonzero(near1)
                        sm[i, t, j] = near1 @ x  # (C,)
                if totals:
                    col[i, t] = np.ones(len(x), np.float32) @ x
                    # squared norms per row in float32 (C terms), summed in float64: the inertia is a difference
                    # of large sums, so their relative error must stay ~1e-7
                    sq[i, t] = np.einsum("nc,nc->n", x, x).sum(dtype=np.float64)

        todo = range(pb) if totals else np.flatnonzero(active).tolist()
        # one task per position, or per part of one when there are fewer positions than threads (a task costs
        # ~30 us of pool overhead: thousands of tile-sized tasks would add a noticeable share)
        parts = max(1, min(len(tiles), self.workers // max(1, len(todo))))
        bounds = [len(tiles) * k // parts for k in range(parts + 1)]
        self._map(one, [(i, t0, t1) for i in todo for t0, t1 in zip(bounds[:-1], bounds[1:])])
        st = _Stats(cnt.sum(1), sm.sum(1))
        if totals:
            st.n, st.colsum, st.sqsum = np.full(pb, float(n)), col.sum(1), sq.sum(1)
        return st

    def rowsq(self, X) -> np.ndarray:
        """Squared norms (pb, n) float64 of the rows of X (pb, n, C), for :meth:`dist2`; summed in float64 like
        the torch backend's, so that both pick the same k-means++ candidates."""
        return np.einsum("pnc,pnc->pn", X, X, dtype=np.float64)

    def dist2(self, X, V, xx=None) -> np.ndarray:
        """Squared distances (pb, n, m) between the rows of X (pb, n, C) and V (pb, m, C); ``xx``: rowsq(X)."""
        V = np.ascontiguousarray(V, np.float32)
        pb, m = V.shape[:2]
        xx = self.rowsq(X) if xx is None else xx
        vv = np.einsum("pmc,pmc->pm", V, V, dtype=np.float64)
        cross = np.empty((pb, m, X.shape[1]), np.float32)  # X . V as one sgemv per vector (see the class doc)

        def one(task):
            i, j = task
            cross[i, j] = X[i] @ V[i, j]

        self._map(one, [(i, j) for i in range(pb) for j in range(m)])
        d = xx[:, :, None] - 2.0 * cross.transpose(0, 2, 1) + vv[:, None, :]
        return np.maximum(d, 0.0)

    def take(self, X, idx) -> np.ndarray:
        """Rows X[i, idx[i, j]] as a numpy (pb, m, C) float32 array."""
        return np.asarray(X[np.arange(X.shape[0])[:, None], idx], np.float32)

    def labels(self, X, W, b) -> np.ndarray:
        return np.matmul(X, W.transpose(0, 2, 1)) > b[:, None, :]  # (pb, n, R)


class _TorchOps:
    """CUDA: the same passes as batched matmuls over all positions of a block."""

    def __init__(self, device: torch.device):
        self.device = device
        self.name = f"torch:{device}"

    def block_positions(self, per_position: int, positions: int, max_memory: int) -> int:
        """Positions per block: as many as ``max_memory`` holds (a GPU wants big batched matmuls)."""
        return max(1, min(positions, max_memory // max(1, per_position)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def block(self, x) -> torch.Tensor:
        t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
        return t.to(self.device, non_blocking=True).float()

    def empty(self, shape):
        return torch.empty(shape, device=self.device, dtype=torch.float32)

    def fill(self, dst: torch.Tensor, x) -> None:
        dst.copy_(self.block(x))

    def _t(self, a, dtype=torch.float32):
        return torch.as_tensor(np.ascontiguousarray(a)).to(self.device, dtype)

    def lloyd(self, X, W, b, active, totals: bool) -> _Stats:
        Wt, bt = self._t(W), self._t(b)
        near1 = (torch.bmm(X, Wt.transpose(1, 2)) > bt[:, None, :]).float()  # (pb, n, R)
        count1 = near1.sum(1, dtype=torch.float64)
        sum1 = torch.bmm(near1.transpose(1, 2), X).double()  # (pb, R, C)
        st = _Stats(count1.cpu().numpy(), sum1.cpu().numpy())
        if totals:
            st.n = np.full(X.shape[0], float(X.shape[1]))
            st.colsum = X.sum(1, dtype=torch.float64).cpu().numpy()
            st.sqsum = (X.double() ** 2).sum((1, 2)).cpu().numpy()
        return st

    def rowsq(self, X) -> torch.Tensor:
        return (X.double() ** 2).sum(-1)

    def dist2(self, X, V, xx=None) -> np.ndarray:
        Vt = self._t(V)
        xx = self.rowsq(X) if xx is None else xx
        vv = (Vt.double() ** 2).sum(-1)
        d = xx[:, :, None] - 2.0 * torch.bmm(X, Vt.transpose(1, 2)).double() + vv[:, None, :]
        return d.clamp_min(0.0).cpu().numpy()

    def take(self, X, idx) -> np.ndarray:
        i = torch.arange(X.shape[0], device=X.device)[:, None]
        return X[i, torch.as_tensor(idx, device=X.device)].cpu().numpy()

    def labels(self, X, W, b) -> np.ndarray:
        return (torch.bmm(X, self._t(W).transpose(1, 2)) > self._t(b)[:, None, :]).cpu().numpy()


def _make_ops(features, device) -> tuple[Any, torch.device | None]:
    if device is None and isinstance(features, torch.Tensor) and features.device.type != "cpu":
        device = features.device
    if device is None:
        return _NumpyOps(), None
    device = torch.device(device)
    if device.type == "cpu":
        return _NumpyOps(), None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} requested but CUDA is not available; use device=None (CPU)")
    return _TorchOps(device), device
