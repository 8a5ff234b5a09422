"""Guidance clustering speed: lanfer.fit_guidance vs scikit-learn KMeans run per position.

The paper's recipe, done naively, is one ``KMeans(n_clusters=2)`` per feature-map position over the N
training features. This script times that against ``fit_guidance`` (all positions, cache-blocked) on the same
synthetic features and checks that both reach the same inertia, evaluated by one independent float64
function on each method's centres. scikit-learn runs with its current default ``n_init="auto"`` (one
k-means++ run since 1.4; ``--n-init 10`` is the old default, ten runs) and with as many threads as
``fit_guidance`` uses (every usable core).

The headline time reads the features as ``lanfer cluster`` hands them over: position-major, in RAM (a
float32 :class:`FeatureStore`), as scikit-learn gets its per-position (N, C) arrays untimed. Two more rows:
from an (N, C, H, W) array (the layout copy included) and from a float16 in-RAM store (the conversion
included; what ``lanfer cluster`` uses below 1 GB of features).

Default size: RAF-DB train (N = 12,271), 7 x 7 positions, C = 512, float32 (1.2 GB of features).
Features are a per-position two-component mixture passed through a ReLU, like CNN features: a majority and a
minority component (minority share 5-45 %, separation varying by position, some weakly separated).

    python benchmarks/bench_guidance.py                       # full size (sklearn: ~10 s on 2 cores)
    python benchmarks/bench_guidance.py --sklearn-positions 7  # time sklearn on 7 positions, extrapolate
    python benchmarks/bench_guidance.py --n 2000 --positions 9 --channels 64
    python benchmarks/bench_guidance.py --n-init 10            # the old sklearn default: ten k-means++ runs
    python benchmarks/bench_guidance.py --device cuda --out bench_guidance.json
"""
from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import cpu_model, machine_header, usable_cpus

from lanfer.guidance import FeatureStore, fit_guidance


def make_features(n: int, channels: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(N, C, H, W) float32: per position a ReLU'd mixture of a majority and a minority Gaussian."""
    rng = np.random.default_rng(seed)
    p = height * width
    out = np.empty((n, channels, p), np.float32)
    share = rng.uniform(0.05, 0.45, p)  # minority share per position
    sep = rng.uniform(0.15, 1.0, p)  # separation of the two means, in units of the noise scale per dim
    for j in range(p):
        base = rng.uniform(0.0, 1.5, channels).astype(np.float32)
        direction = rng.standard_normal(channels).astype(np.float32)
        direction *= sep[j] * math.sqrt(channels) / np.linalg.norm(direction) * 1.5
        minority = rng.random(n) < share[j]
        x = rng.standard_normal((n, channels), dtype=np.float32)
        x *= rng.uniform(0.5, 1.5, channels).astype(np.float32)  # anisotropic noise
        x += base
        x[minority] += direction
        np.maximum(x, 0, out=x)
        out[:, :, j] = x
    return out.reshape(n, channels, height, width)


def inertia(x: np.ndarray, centres: np.ndarray) -> float:
    """Independent check: sum over samples of the squared distance to the nearer centre, in float64."""
    x = x.astype(np.float64)
    d = ((x[:, None, :] - centres.astype(np.float64)[None]) ** 2).sum(-1)  # (n, 2)
    return float(d.min(1).sum())


def n_init_arg(v: str):
    return v if v == "auto" else int(v)


def timed(fn, repeat: int, cuda: bool):
    """(fastest seconds, all runs, last result) of ``repeat`` calls of ``fn``."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return min(times), times, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=12271, help="samples (RAF-DB train: 12,271)")
    ap.add_argument("--positions", type=int, default=49, help="feature-map positions (7 x 7 = 49)")
    ap.add_argument("--channels", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="cpu (default) or cuda for fit_guidance")
    ap.add_argument("--sklearn-positions", type=int, default=None,
                    help="run sklearn on only the first K positions and extrapolate its time (said in the output)")
    ap.add_argument("--n-init", type=n_init_arg, default="auto",
                    help='sklearn n_init: "auto" (its default, one k-means++ run) or a number (10: the old default)')
    ap.add_argument("--store", action="store_true",
                    help="also time fit_guidance reading a float16 FeatureStore file on disk")
    ap.add_argument("--repeat", type=int, default=2, help="fit_guidance runs; the fastest is reported")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args(argv)
    import sklearn
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    print(machine_header())
    h = int(math.isqrt(a.positions))
    w = a.positions // h
    while h * w != a.positions:  # the most square H x W with H*W = positions
        h -= 1
        w = a.positions // h
    t = time.perf_counter()
    feats = make_features(a.n, a.channels, h, w, a.seed)
    t_make = time.perf_counter() - t
    print(f"features: N={a.n} C={a.channels} {h}x{w} float32 ({feats.nbytes / 2**30:.2f} GiB, made in {t_make:.1f} s)")
    cuda = bool(a.device and a.device.startswith("cuda"))

    # ours: the headline reads a position-major float32 store in RAM (untimed layout, as sklearn's input)
    pm = np.ascontiguousarray(feats.reshape(a.n, a.channels, h * w).transpose(2, 0, 1))  # (P, N, C)
    x_in = FeatureStore(pm, a.n, h, w)
    if cuda:
        fit_guidance(torch.from_numpy(feats[:256]), device=a.device)  # CUDA context and kernels warm-up
        torch.cuda.synchronize()
    t_ours, times, g = timed(lambda: fit_guidance(x_in, seed=a.seed, device=a.device), a.repeat, cuda)
    print(f"lanfer.fit_guidance runs: {', '.join(f'{x:.2f}' for x in times)} s (the table uses the fastest)")
    print(f"lanfer.fit_guidance: {t_ours:.2f} s  (backend {g.meta['backend']}, {usable_cpus()} threads, sample iters "
          f"{g.meta['sample_iters']}, full passes {g.meta['full_iters']}, unconverged {g.meta['unconverged']})")
    x_nchw = torch.from_numpy(feats) if cuda else feats
    t_nchw, _, g_nchw = timed(lambda: fit_guidance(x_nchw, seed=a.seed, device=a.device), a.repeat, cuda)
    assert torch.equal(g_nchw.centers, g.centers) or cuda, "the (N,C,H,W) input gave another fit"
    st16 = FeatureStore(pm.astype(np.float16), a.n, h, w)
    t_f16, _, g16 = timed(lambda: fit_guidance(st16, seed=a.seed, device=a.device), a.repeat, cuda)
    gap16 = float((g16.attentive_fraction() - g.attentive_fraction()).abs().max())
    del st16, x_nchw

    t_store = None
    if a.store:
        with tempfile.TemporaryDirectory() as d:
            st = FeatureStore.create(Path(d) / "f.f16", a.n, a.channels, h, w)
            for s in range(0, a.n, 1024):
                st.write(s, feats[s:s + 1024])
            st.finalize()
            t = time.perf_counter()
            g_store = fit_guidance(FeatureStore.open(Path(d) / "f.f16"), seed=a.seed, device=a.device)
            t_store = time.perf_counter() - t
        gap = float((g_store.attentive_fraction() - g.attentive_fraction()).abs().mean())
        print(f"lanfer.fit_guidance from a float16 FeatureStore file: {t_store:.2f} s "
              f"(mean |attentive fraction - float32 fit| {gap:.2e})")

    # sklearn, per position, on as many threads as ours
    k = a.positions if a.sklearn_positions is None else min(a.sklearn_positions, a.positions)
    rows = []
    t_sk = 0.0
    with threadpool_limits(usable_cpus()):
        for p in range(k):
            x = pm[p]  # (N, C) contiguous, as sklearn wants it
            t = time.perf_counter()
            km = KMeans(n_clusters=2, n_init=a.n_init, random_state=a.seed).fit(x)
            t_sk += time.perf_counter() - t
            ours_i = inertia(x, g.centers[p].numpy())
            sk_i = inertia(x, km.cluster_centers_)
            sk_minor = np.bincount(km.labels_, minlength=2).argmin()
            # attentive labels: ours via the hyperplane of position p, sklearn's smaller cluster
            c = g.centers[p].numpy().astype(np.float64)
            near1 = x @ (c[1] - c[0]) > ((c[1] ** 2).sum() - (c[0] ** 2).sum()) / 2
            ours_att = near1 == bool(int(g.attentive[p]) == 1)
            agree = float((ours_att == (km.labels_ == sk_minor)).mean())
            rows.append({"position": p, "inertia_ours": ours_i, "inertia_sklearn": sk_i,
                         "rel_diff": (ours_i - sk_i) / sk_i, "attentive_label_agreement": agree,
                         "sklearn_iters": int(km.n_iter_)})
    t_sk_full = t_sk * a.positions / k
    rel = np.array([r["rel_diff"] for r in rows])
    extrap = k < a.positions
    print()
    print(f"{'method':<52}{'time [s]':>10}{'ratio':>9}")
    where = a.device or "cpu"
    print(f"{'lanfer.fit_guidance (' + where + ')':<52}{t_ours:>10.2f}{t_sk_full / t_ours:>8.1f}x")
    print(f"{'  from an (N,C,H,W) float32 array (copy included)':<52}{t_nchw:>10.2f}{t_sk_full / t_nchw:>8.1f}x")
    print(f"{'  from a float16 store in RAM (conversion incl.)':<52}{t_f16:>10.2f}{t_sk_full / t_f16:>8.1f}x")
    if t_store is not None:
        print(f"{'  from a float16 FeatureStore file':<52}{t_store:>10.2f}{t_sk_full / t_store:>8.1f}x")
    label = f"sklearn {sklearn.__version__} KMeans n_init={a.n_init} x {a.positions}"
    print(f"{label:<52}{t_sk_full:>10.2f}{1:>8.1f}x" + (f"   EXTRAPOLATED from {k} positions ({t_sk:.2f} s)"
                                                       if extrap else ""))
    print(f"speed-up vs sklearn n_init={a.n_init}: {t_sk_full / t_ours:.1f}x")
    print(f"max relative inertia difference (ours - sklearn) / sklearn over {k} positions: "
          f"{rel.max():+.2e} (worst for us), {rel.min():+.2e} (best for us), max |.| {np.abs(rel).max():.2e}")
    print(f"attentive-label agreement with sklearn's smaller cluster: min "
          f"{min(r['attentive_label_agreement'] for r in rows):.4f}, mean "
          f"{np.mean([r['attentive_label_agreement'] for r in rows]):.4f}; float16 store vs float32: max "
          f"|attentive fraction difference| {gap16:.2e}")
    if a.out:
        res = {"n": a.n, "channels": a.channels, "height": h, "width": w, "device": where,
               "time_ours_s": t_ours, "time_ours_runs_s": times, "time_ours_nchw_s": t_nchw,
               "time_ours_f16_ram_s": t_f16, "time_ours_store_s": t_store, "time_sklearn_s": t_sk_full,
               "sklearn_version": sklearn.__version__, "sklearn_n_init": a.n_init, "threads": usable_cpus(),
               "sklearn_positions_timed": k, "sklearn_time_extrapolated": extrap, "speedup": t_sk_full / t_ours,
               "max_rel_inertia_diff": float(np.abs(rel).max()), "max_rel_inertia_excess": float(rel.max()),
               "meta": g.meta, "per_position": rows, "cpu": cpu_model(), "load_average": os.getloadavg()[0],
               "torch": torch.__version__}
        Path(a.out).write_text(json.dumps(res, indent=1))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
