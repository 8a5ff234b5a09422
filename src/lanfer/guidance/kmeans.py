"""K-means with K = 2 at every feature-map position at once: k-means++ seeding, Lloyd passes, the fit and
its stability across seeds (paper section III-C, eq. 3-4)."""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np
import torch

from .backends import _make_ops, _Stats
from .map import Guidance, GuidanceError
from .shard import _Comm
from .store import _make_source


# ----------------------------------------------------------------------------------------------------
# K-means with K = 2, all positions at once


def _planes(centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hyperplane (W, b) per (position, init): a sample is nearer centre 1 iff x . W > b."""
    c64 = centres.astype(np.float64)
    W = centres[..., 1, :] - centres[..., 0, :]  # (pb, R, C) float32, as Guidance.assign computes it
    b = ((c64[..., 1, :] ** 2).sum(-1) - (c64[..., 0, :] ** 2).sum(-1)) / 2  # (pb, R)
    return W, b.astype(np.float32)


def _accumulate(chunks: Callable[[], Iterator], ops, centres, active, totals: bool) -> _Stats:
    """One assignment pass: per-chunk statistics, summed (the local half of a distributed pass)."""
    W, b = _planes(centres)
    st = None
    for X in chunks():
        part = ops.lloyd(X, W, b, active, totals)
        st = part if st is None else st + part
    return st


def _reduce(st: _Stats, comm: _Comm | None) -> _Stats:
    """Combine statistics across processes: every field is a sum over samples, so a sum over ranks gives what
    one process would compute from all N (the identity without a sharded fit)."""
    if comm is None or not comm.on:
        return st
    return _Stats(*comm.sum(st.count1, st.sum1, st.n, st.colsum, st.sqsum))


def _farthest(chunks, ops, other: np.ndarray, need: np.ndarray, comm: _Comm | None = None):
    """For each (position, init) in ``need``: the sample farthest from centre ``other`` and its sq. distance
    (over all ranks of a sharded fit)."""
    pb, r, c = other.shape
    best = np.full((pb, r), -1.0)
    pts = np.zeros((pb, r, c), np.float32)
    for X in chunks():
        d = ops.dist2(X, other)  # (pb, n, R)
        j = d.argmax(1)  # (pb, R)
        dj = np.take_along_axis(d, j[:, None, :], 1)[:, 0]
        better = need & (dj > best)
        if better.any():
            pts[better] = ops.take(X, j)[better]
            best = np.where(better, dj, best)
    return comm.farthest(pts, best) if comm is not None else (pts, best)


def _lloyd(chunks, ops, centres: np.ndarray, iters: int, tol: float, totals=None, bar=None, comm=None):
    """Lloyd iterations for every (position, init) on the data ``chunks()`` yields (this rank's shard of it
    when ``comm`` is a sharded fit's: the statistics of each pass are then summed over ranks).

    Returns ``(centres, counts, sums, totals, n_iter, converged)``. The centres are those each pair used in
    its last pass and counts/sums are that pass's statistics, so counts and inertia describe exactly the
    assignment that the returned centres make.
    """
    pb, r, _, c = centres.shape
    centres = centres.copy()
    active = np.ones((pb, r), bool)
    counts = np.zeros((pb, r, 2))
    sums = np.zeros((pb, r, 2, c))
    n_iter = np.zeros((pb, r), np.int64)
    for it in range(iters):
        st = _reduce(_accumulate(chunks, ops, centres, active.any(1), totals is None), comm)
        if totals is None:
            totals = (st.n, st.colsum, st.sqsum)
            if not np.isfinite(st.sqsum).all():
                # finite features whose squares overflow float32 (|x| above ~1e18) land here too: both mean a
                # diverged backbone, and either would make every distance NaN
                raise GuidanceError("features contain NaN or inf, or values so large that their squares overflow "
                                    f"(at block positions {np.flatnonzero(~np.isfinite(st.sqsum)).tolist()}): F_o "
                                    "of a diverged backbone? Check the model weights before fitting the guidance")
        n, colsum, _ = totals
        cnt = np.stack([n[:, None] - st.count1, st.count1], -1)  # (pb, R, 2)
        sm = np.stack([colsum[:, None] - st.sum1, st.sum1], -2)  # (pb, R, 2, C)
        counts[active], sums[active] = cnt[active], sm[active]
        n_iter[active] += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(active=int(active.any(1).sum()))
        if it == iters - 1:
            break
        # update: centre = mean of its samples (eq. 3)
        new = np.where(cnt[..., None] > 0, sm / np.maximum(cnt, 1)[..., None], centres).astype(np.float32)
        empty = active & (cnt == 0).any(-1)
        degenerate = np.zeros_like(active)
        if empty.any():
            # an empty cluster restarts at the sample farthest from the other centre
            k_full = cnt.argmax(-1)  # (pb, R)
            other = np.take_along_axis(new, k_full[..., None, None], 2)[:, :, 0]
            pts, d2 = _farthest(chunks, ops, other, empty, comm)
            # every sample equals the other centre: one cluster is all there is
            degenerate = empty & ((d2 <= 0) | (pts == other).all(-1))
            fix = empty & ~degenerate
            ii, rr = np.nonzero(fix)
            new[ii, rr, 1 - k_full[ii, rr]] = pts[ii, rr]
        diff = ((new.astype(np.float64) - centres) ** 2).sum((-1, -2))
        ref = (centres.astype(np.float64) ** 2).sum((-1, -2))
        shift = np.sqrt(diff / np.maximum(ref, np.finfo(np.float64).tiny))
        done = active & ((shift <= tol) | degenerate)
        move = active & ~done
        centres[move] = new[move]
        active &= ~done
        if not active.any():
            break
    return centres, counts, sums, totals, n_iter, ~active


def _inertia(centres, counts, sums, sqsum) -> np.ndarray:
    """sum_x |x - c(x)|^2 = sum |x|^2 - 2 sum_k c_k . S_k + sum_k n_k |c_k|^2, per (position, init)."""
    c = centres.astype(np.float64)
    val = sqsum[:, None] - 2 * (c * sums).sum((-1, -2)) + (counts * (c ** 2).sum(-1)).sum(-1)
    return np.maximum(val, 0.0)


def _kmeanspp(ops, Xs, rngs: list[np.random.Generator], n_init: int) -> np.ndarray:
    """k-means++ seeding for K = 2 (greedy: 2 + log K candidates, as scikit-learn), ``n_init`` per position.

    Xs: (pb, S, C) sample. Returns (pb, n_init, 2, C) float32 centres."""
    pb, s = Xs.shape[0], Xs.shape[1]
    trials = 2 + int(math.log(2))
    first = np.array([[rng.integers(s) for _ in range(n_init)] for rng in rngs])  # (pb, R)
    c0 = ops.take(Xs, first)  # (pb, R, C)
    xx = ops.rowsq(Xs)  # (pb, S)
    d0 = ops.dist2(Xs, c0, xx)  # (pb, S, R)
    cand = np.empty((pb, n_init, trials), np.int64)
    for i, rng in enumerate(rngs):
        for r in range(n_init):
            cum = np.cumsum(d0[i, :, r])
            u = rng.random(trials) * cum[-1]
            # side="right" never picks a zero-weight sample (a duplicate of the first centre)
            cand[i, r] = np.minimum(np.searchsorted(cum, u, side="right"), s - 1) if cum[-1] > 0 else first[i, r]
    cv = ops.take(Xs, cand.reshape(pb, -1))  # (pb, R*T, C)
    dc = ops.dist2(Xs, cv, xx).reshape(pb, s, n_init, trials)
    potential = np.minimum(d0[..., None], dc).sum(1)  # (pb, R, T)
    best = potential.argmin(-1)  # (pb, R)
    c1 = np.take_along_axis(cv.reshape(pb, n_init, trials, -1), best[..., None, None], 2)[:, :, 0]
    return np.stack([c0, c1], 2).astype(np.float32)


def _check_args(seed, iters, tol, sample_size, chunk_size, n_init):
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    for name, v in (("iters", iters), ("sample_size", sample_size), ("chunk_size", chunk_size), ("n_init", n_init)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer; got {v!r}")
    if sample_size < 2:
        raise ValueError(f"sample_size must be >= 2 (two centres); got {sample_size}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0; got {tol!r}")


def _fit(src, ops, seed, iters, tol, sample_size, chunk_size, n_init, max_memory, progress, source,
         comm: _Comm | None = None) -> Guidance:
    comm = comm or _Comm(False)
    n_local, c, p_total = src.n, src.channels, src.positions
    n, offset = comm.layout(n_local)  # this rank holds global rows [offset, offset + n_local)
    if n < 2:
        raise GuidanceError(f"the guidance fit needs at least 2 images to form 2 clusters per position; got {n}: "
                            "train on more images, or set guidance.source=none")
    s = min(sample_size, n)
    sample_idx = np.arange(n) if s == n else np.sort(
        np.random.default_rng([seed, 0]).choice(n, s, replace=False))
    mine = (sample_idx >= offset) & (sample_idx < offset + n_local)  # the sample rows this rank holds
    local_idx = sample_idx[mine] - offset
    # Positions are processed in blocks: the block's sample (float32), plus, for a store, the block's full data
    # in float32 when that fits max_memory (then the store is read once, not once per pass). On the CPU a
    # block is one position per core, so that every pass over it (k-means++, the sample iterations, the full
    # passes) runs while its data is in cache instead of streaming all positions from memory on every pass.
    per_sample = s * c * 4 * 2  # the sample and the distance temporaries of the seeding
    per_full = n_local * c * 4
    load = not src.resident and per_full + per_sample <= max_memory
    pb = ops.block_positions(per_sample + (per_full if load else 0), p_total, max_memory)

    centres = np.zeros((p_total, 2, c), np.float32)
    counts = np.zeros((p_total, 2))
    inertia = np.zeros(p_total)
    sample_iters = full_iters = unconverged = 0
    buf = None  # the loaded block, reused from block to block
    bar = None
    if progress:
        from ..progress import progress_bar

        bar = progress_bar(desc=f"guidance K=2 (seed {seed})", unit="pass")
    try:
        for p0 in range(0, p_total, pb):
            p1 = min(p0 + pb, p_total)
            rngs = [np.random.default_rng([seed, 1, p]) for p in range(p0, p1)]
            data = None
            if src.resident:
                data = src.rows(p0, p1, 0, n_local)
            elif load:
                buf = _load(src, ops, p0, p1, chunk_size, buf)
                data = buf[:p1 - p0]
            # 1. k-means++ and Lloyd on the sample, n_init seedings side by side; keep the best per position
            if data is None:
                rows = src.gather(p0, p1, local_idx)
            elif isinstance(data, torch.Tensor):
                rows = data[:, torch.as_tensor(local_idx, device=data.device)]
            else:
                rows = data[:, local_idx]
            if comm.on:  # every rank fills in its rows: the same sample, hence the same warm start, everywhere
                full = np.zeros((p1 - p0, s, c), np.float32)
                full[:, mine] = rows.cpu().numpy() if isinstance(rows, torch.Tensor) else rows
                rows = comm.sample(full)
            xs = ops.block(rows)  # (pb, S, C)
            del rows
            init = _kmeanspp(ops, xs, rngs, n_init)  # (pb, R, 2, C)
            cs, cnt, sm, tot, it_s, _ = _lloyd(lambda: iter([xs]), ops, init, iters, tol)
            inert = _inertia(cs, cnt, sm, tot[2])  # (pb, R)
            # the first seeding within rounding of the lowest: one partition reached by two seedings (often with
            # its clusters swapped) must not be told apart by float32 summation noise, which differs by backend
            best = (inert <= inert.min(1, keepdims=True) * (1 + 1e-6)).argmax(1)  # (pb,)
            warm = cs[np.arange(p1 - p0), best][:, None]  # (pb, 1, 2, C)
            del xs
            sample_iters = max(sample_iters, int(it_s.max()))
            # 2. full passes over all N samples (this rank's share of them, summed over ranks)
            if data is not None:
                chunks = lambda: (data[:, a:a + chunk_size] for a in range(0, n_local, chunk_size))  # noqa: E731
            else:
                chunks = lambda: (ops.block(src.rows(p0, p1, a, a + chunk_size))  # noqa: E731
                                  for a in range(0, n_local, chunk_size))
            cf, cnt, sm, tot, it_f, conv = _lloyd(chunks, ops, warm, iters, tol, bar=bar, comm=comm)
            data = None
            centres[p0:p1] = cf[:, 0]
            counts[p0:p1] = cnt[:, 0]
            inertia[p0:p1] = _inertia(cf, cnt, sm, tot[2])[:, 0]
            full_iters = max(full_iters, int(it_f.max()))
            unconverged += int((~conv).sum())
    finally:
        if bar is not None:
            bar.close()

    counts_t = torch.from_numpy(np.rint(counts).astype(np.int64))
    # eq. 4: cluster 0 is attentive if it is strictly smaller, otherwise cluster 1
    attentive = (counts_t[:, 0] >= counts_t[:, 1]).long()
    meta = {"source": source if source is not None else src.meta.get("source"), "seed": int(seed), "n": n,
            "channels": c, "height": src.height, "width": src.width, "sample_size": s, "n_init": n_init,
            "iters": iters, "tol": tol, "chunk_size": chunk_size, "sample_iters": sample_iters,
            "full_iters": full_iters, "unconverged": unconverged, "backend": ops.name}
    if comm.on:
        meta["processes"] = comm.world
    return Guidance(centers=torch.from_numpy(centres), attentive=attentive, counts=counts_t,
                    inertia=torch.from_numpy(inertia), height=src.height, width=src.width, meta=meta)


def _load(src, ops, p0, p1, chunk_size, buf=None):
    """A block of positions from a store, converted to float32 in the backend's memory piece by piece (into
    ``buf`` when it is big enough: fresh pages for every block would cost a page fault per 4 KiB)."""
    if buf is None or buf.shape[0] < p1 - p0:
        buf = ops.empty((p1 - p0, src.n, src.channels))  # (pb, N, C)
    for a in range(0, src.n, chunk_size):
        ops.fill(buf[:p1 - p0, a:a + chunk_size], src.rows(p0, p1, a, a + chunk_size))
    return buf


def fit_guidance(features, seed: int = 0, iters: int = 100, tol: float = 1e-6, sample_size: int = 4096,
                 chunk_size: int = 2048, device=None, progress: bool = False, source: str | None = None, *,
                 n_init: int = 3, max_memory: int = 2 * 2**30, distributed: bool = False) -> Guidance:
    """Fit the K=2 guidance centres at every feature-map position (paper section III-C).

    Args:
        features: F_o of the training set: an (N, C, H, W) numpy array or torch tensor; an iterable of
            (n_i, C, H, W) chunks (a generator over batches is consumed once); a :class:`FeatureStore`;
            or the path of an on-disk store.
        seed: the fit is a deterministic function of the data and the seed.
        iters: most Lloyd iterations, both on the sample and over the full data.
        tol: stop a position when its relative centre shift |dc| / |c| is <= tol (0 when no label changed).
        sample_size: samples per position for the k-means++ seeding and the warm-start iterations.
        chunk_size: samples per chunk of a pass over the full data.
        device: None/"cpu" (numpy) or a CUDA device (torch); default: the device of a tensor input.
        progress: show a tqdm bar counting full passes.
        source: backbone/checkpoint description kept in ``meta`` (default: the store's own).
        n_init: k-means++ seedings tried on the sample per position (lowest sample inertia wins).
        max_memory: bytes of float32 working data per block of positions. Arrays and iterables are first
            converted to one position-major float32 copy in RAM (N*H*W*C*4 bytes; a chunk iterable also
            briefly holds its chunks). A store is processed a block of positions at a time: the block
            is read into RAM once if it fits ``max_memory``, else re-read from the memmap on each pass.
        distributed: ``features`` are this process's shard of the samples, under an initialised
            torch.distributed process group: a contiguous range of rows, ranks in order (rank 0 the first).
            The statistics of every pass are summed over the ranks, so every rank returns the fit one process
            would make on all N samples (within float rounding). Without a process group it changes nothing.
    Returns:
        A :class:`Guidance`.
    """
    _check_args(seed, iters, tol, sample_size, chunk_size, n_init)
    ops, dev = _make_ops(features, device)
    src = _make_source(features, dev)
    with ops:
        return _fit(src, ops, int(seed), int(iters), float(tol), int(sample_size), int(chunk_size),
                    int(n_init), int(max_memory), progress, source, _Comm(distributed))


# ----------------------------------------------------------------------------------------------------
# Stability across seeds


def stability(features, seeds=(0, 1, 2), *, first: Guidance | None = None, **kw) -> dict:
    """Fit each seed (reusing ``first`` for ``seeds[0]``) and measure, per position, how far the guidance
    labels agree with ``seeds[0]``.

    For every training sample and position we compare the label of seed s with seed ``seeds[0]``:
    ``attentive_agreement`` compares the attentive/general label itself (what the BCE loss sees; it drops
    when eq. 4 picks the other cluster of a near-equal split), ``cluster_agreement`` compares the cluster
    membership after matching the two clusters (what the K-means itself reproduces).

    Args:
        features: as for :func:`fit_guidance` (a generator is consumed once and reused for every seed).
        seeds: at least two seeds; the first is the reference.
        first: the fit of ``seeds[0]`` on these features with these arguments, when the caller already has
            it (the guidance it is about to use): it is reused instead of fitted again, so ``len(seeds)``
            seeds cost ``len(seeds) - 1`` fits. Its ``meta`` must show that seed, the features' shape and
            the same iters/tol/sample_size/n_init, else a ValueError says what differs.
        **kw: passed to :func:`fit_guidance` (iters, tol, sample_size, chunk_size, device, n_init,
            distributed, ...); with ``distributed`` the agreement counts are summed over the ranks too.
    Returns:
        A JSON-friendly dict, meant for ``guidance.meta["stability"]`` (then shown by ``summary()``):
        ``seeds``; ``attentive_agreement`` and ``cluster_agreement``: per other seed, a list of H*W
        fractions; ``min_attentive_agreement``: per position, the worst over seeds; ``attentive_fraction``:
        per seed, the list of H*W attentive fractions; ``inertia``: per seed, the total inertia.
    """
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2:
        raise ValueError(f"stability needs at least two seeds; got {seeds}")
    device = kw.pop("device", None)
    progress = kw.pop("progress", False)
    source = kw.pop("source", None)
    comm = _Comm(kw.pop("distributed", False))
    fit_kw = {k: kw.pop(k) for k in ("iters", "tol", "sample_size", "chunk_size", "n_init", "max_memory")
              if k in kw}
    if kw:
        raise TypeError(f"stability got unexpected arguments {sorted(kw)}")
    args = {"iters": 100, "tol": 1e-6, "sample_size": 4096, "chunk_size": 2048, "n_init": 3,
            "max_memory": 2 * 2**30, **fit_kw}
    for s in seeds:
        _check_args(s, args["iters"], args["tol"], args["sample_size"], args["chunk_size"], args["n_init"])
    ops, dev = _make_ops(features, device)
    src = _make_source(features, dev)
    n, _ = comm.layout(src.n)
    if first is not None:
        _check_first(first, seeds[0], src, n, args)
    with ops:
        fits = [] if first is None else [first]
        fits += [_fit(src, ops, s, args["iters"], float(args["tol"]), args["sample_size"], args["chunk_size"],
                      args["n_init"], args["max_memory"], progress, source, comm) for s in seeds[len(fits):]]

        # one more pass: every seed's labels for every sample, compared with the first seed's
        centres = np.stack([g.centers.numpy() for g in fits], 1)  # (P, S, 2, C)
        att = np.stack([g.attentive.numpy() for g in fits], 1)  # (P, S)
        same_cluster = np.zeros((src.positions, len(seeds)))
        same_att = np.zeros((src.positions, len(seeds)))
        cs = args["chunk_size"]
        pb = max(1, min(src.positions, args["max_memory"] // max(1, cs * src.channels * 4)))
        for p0 in range(0, src.positions, pb):
            p1 = min(p0 + pb, src.positions)
            W, b = _planes(centres[p0:p1])
            for a in range(0, src.n, cs):
                X = ops.block(src.rows(p0, p1, a, a + cs))  # (pb, n, C)
                near1 = ops.labels(X, W, b)  # (pb, n, S)
                is_att = near1 == (att[p0:p1, None, :] == 1)
                same_cluster[p0:p1] += (near1 == near1[..., :1]).sum(1)
                same_att[p0:p1] += (is_att == is_att[..., :1]).sum(1)
    same_cluster, same_att = comm.sum(same_cluster, same_att)
    # with K = 2 the clusters of two fits match either as (0,0),(1,1) or swapped: take the better matching
    cluster_agreement = np.maximum(same_cluster, n - same_cluster) / n
    attentive_agreement = same_att / n
    return {
        "seeds": seeds,
        "attentive_agreement": attentive_agreement[:, 1:].T.tolist(),
        "cluster_agreement": cluster_agreement[:, 1:].T.tolist(),
        "min_attentive_agreement": attentive_agreement[:, 1:].min(1).tolist(),
        "attentive_fraction": [g.attentive_fraction().tolist() for g in fits],
        "inertia": [float(g.inertia.sum()) for g in fits],
    }


def _check_first(first: Guidance, seed: int, src, n: int, args: dict) -> None:
    """Refuse a reused first fit that fitting ``seed`` here would not have produced (other data or settings).

    The fit is a function of the data, the seed and these settings only (not of chunk_size, max_memory or
    how the input was chunked), so matching them is what makes reuse give the result a refit would."""
    if not isinstance(first, Guidance):
        raise TypeError(f"stability: first must be the Guidance of seed {seed}; got {type(first).__name__}")
    want = {"seed": seed, "n": n, "channels": src.channels, "height": src.height, "width": src.width,
            "iters": int(args["iters"]), "tol": float(args["tol"]),
            "sample_size": min(int(args["sample_size"]), n), "n_init": int(args["n_init"])}
    got = {k: first.meta.get(k) for k in want}
    diff = [f"{k}={got[k]!r} (here {want[k]!r})" for k in want if got[k] != want[k]]
    if diff:
        raise ValueError(f"stability: the given first fit does not match seed {seed} on these features with "
                         f"these settings: {', '.join(diff)}; pass the Guidance that fit_guidance returned for "
                         "the same features and arguments, or first=None to fit it here")
