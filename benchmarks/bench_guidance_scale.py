"""Guidance fit at AffectNet scale: a float16 feature store on disk, fitted in bounded memory.

Writes a position-major float16 :class:`FeatureStore` of N x 7 x 7 x 512 (AffectNet train: N = 287,651,
14.4 GB) with synthetic values and a planted minority, fits it with ``fit_guidance`` and reports the wall
time and the peak resident memory of the fit, measured by this process itself (``getrusage`` ru_maxrss and
/proc/self/status VmHWM). The store is written by a child process, so the peak is the fit's alone. The
target: under 4 GiB. The store is deleted at the end (``--keep`` keeps it).

Planted answer: at position p a fixed share of the samples (5-40 %, by position) is shifted by a distance of
``--sep`` noise sigmas along a random direction; K-means must find that minority as the attentive cluster.
The script checks the attentive fraction and the label agreement with the planted mask at every position.

Disk: N * 49 * 512 * 2 bytes (check ``df -h`` first). The first pass reads the file from the page cache or
the disk, whichever holds it; say which when you quote the time.

    python benchmarks/bench_guidance_scale.py                       # N = 287,651: 14.4 GB, several minutes
    python benchmarks/bench_guidance_scale.py --n 20000 --dir /tmp  # quick
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine_header

TABLE = 1 << 13  # noise rows per position (generating 7 G normals, or converting them, would take minutes)


def planted(n: int, positions: int, channels: int, sep: float, seed: int):
    """Per position: minority share, direction (C,), base (C,); and the table of noise rows (TABLE, C)."""
    rng = np.random.default_rng(seed)
    share = np.linspace(0.05, 0.40, positions)
    direction = rng.standard_normal((positions, channels)).astype(np.float32)
    direction *= sep * np.sqrt(channels) / np.linalg.norm(direction, axis=1, keepdims=True) / 2
    base = rng.uniform(1.0, 3.0, (positions, channels)).astype(np.float32)
    noise = (rng.standard_normal((TABLE, channels)) * 0.5).astype(np.float32)  # sigma 0.5
    return share, direction, base, noise


def minority_mask(n: int, p: int, share: float, seed: int) -> np.ndarray:
    """The planted minority of position p: a deterministic, position-specific random subset."""
    return np.random.default_rng([seed, p]).random(n) < share


def write_store(path: str, n: int, h: int, w: int, channels: int, sep: float, seed: int, chunk: int = 16384):
    """The child process: the store, written position by position with plain file writes.

    Per position a float16 table of TABLE majority rows and TABLE minority rows (noise + base, plus the shift)
    is made once; the samples are rows of it, so writing costs a gather per chunk, not 7 G conversions."""
    import torch

    from lanfer.guidance import FeatureStore

    positions = h * w
    share, direction, base, noise = planted(n, positions, channels, sep, seed)
    st = FeatureStore.create(path, n, channels, h, w, dtype=np.float16, meta={"source": "bench_guidance_scale"},
                             overwrite=True)
    with open(path, "r+b") as f:
        for p in range(positions):
            table = np.concatenate([noise + base[p], noise + base[p] + direction[p]])  # (2 TABLE, C)
            table = torch.from_numpy(table).half().numpy()  # torch converts to float16 far faster than numpy
            minor = minority_mask(n, p, share[p], seed)
            offset = np.random.default_rng([seed, p, 1]).integers(TABLE)
            for a in range(0, n, chunk):
                b = min(a + chunk, n)
                rows = (np.arange(a, b) * 7 + offset) % TABLE + TABLE * minor[a:b]  # noise shuffled by position
                f.seek((p * n + a) * channels * 2)
                f.write(table[rows].tobytes())
    st.finalize(n)


def peak_rss() -> dict:
    """Peak resident memory of this process, two ways (GiB)."""
    out = {"ru_maxrss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # KiB on Linux
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["vmhwm_gib"] = int(line.split()[1]) / 2**20
    except OSError:
        pass
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=287651, help="samples (AffectNet train: 287,651)")
    ap.add_argument("--size", type=int, default=7, help="lattice side (7 x 7)")
    ap.add_argument("--channels", type=int, default=512)
    ap.add_argument("--sep", type=float, default=3.0, help="planted separation in noise sigmas")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", default=None, help="folder for the store (default: a temporary folder in /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the store file")
    ap.add_argument("--limit-gib", type=float, default=4.0, help="the peak-memory target (GiB)")
    ap.add_argument("--device", default=None, help="cpu (default) or cuda for fit_guidance")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args(argv)
    print(machine_header())
    h = w = a.size
    need = a.n * h * w * a.channels * 2
    where = Path(tempfile.mkdtemp(prefix="lanfer-scale-", dir=a.dir))
    free = shutil.disk_usage(where).free
    print(f"store: N={a.n} x {h}x{w} x {a.channels} float16 = {need / 1e9:.1f} GB in {where} "
          f"({free / 1e9:.1f} GB free)")
    if need > free * 0.9:
        shutil.rmtree(where)
        raise SystemExit(f"not enough disk for the store: {need / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free")
    path = where / "features.f16"
    try:
        t = time.perf_counter()
        child = mp.get_context("spawn").Process(target=write_store,
                                                args=(str(path), a.n, h, w, a.channels, a.sep, a.seed))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"writing the store failed (exit code {child.exitcode})")
        t_write = time.perf_counter() - t
        print(f"written in {t_write:.1f} s (a child process)", flush=True)

        from lanfer.guidance import fit_guidance

        before = peak_rss()
        t = time.perf_counter()
        g = fit_guidance(str(path), seed=a.seed, device=a.device)
        t_fit = time.perf_counter() - t
        peak = peak_rss()
        print(f"fit: {t_fit:.1f} s; sample iters {g.meta['sample_iters']}, full passes {g.meta['full_iters']}, "
              f"unconverged {g.meta['unconverged']}, backend {g.meta['backend']}")

        # the planted answer: the minority is the attentive cluster, position by position
        share = planted(a.n, h * w, a.channels, a.sep, a.seed)[0]
        frac = g.attentive_fraction().numpy()
        agree = []
        c = g.centers.numpy().astype(np.float64)
        from lanfer.guidance import FeatureStore

        st = FeatureStore.open(path)
        for p in range(h * w):
            x = np.asarray(st.array[p, :min(a.n, 20000)], np.float32)  # the first 20,000 samples suffice
            near1 = x @ (c[p, 1] - c[p, 0]) > ((c[p, 1] ** 2).sum() - (c[p, 0] ** 2).sum()) / 2
            att = near1 == (int(g.attentive[p]) == 1)
            agree.append(float((att == minority_mask(a.n, p, share[p], a.seed)[:len(x)]).mean()))
        st.close()
        planted_frac = np.array([minority_mask(a.n, p, share[p], a.seed).mean() for p in range(h * w)])
        print(f"attentive fraction - planted share: max |diff| {np.abs(frac - planted_frac).max():.2e}; "
              f"label agreement with the planted minority (first 20,000 samples): min {min(agree):.5f}")
        rss = max(peak.values())
        print(f"peak resident memory: ru_maxrss {peak['ru_maxrss_gib']:.2f} GiB, VmHWM "
              f"{peak.get('vmhwm_gib', float('nan')):.2f} GiB (before the fit {before['ru_maxrss_gib']:.2f} GiB); "
              f"target < {a.limit_gib:g} GiB: {'met' if rss < a.limit_gib else 'NOT met'}")
        print(f"AffectNet-scale fit: N={a.n} {t_fit:.1f} s, peak RSS {rss:.2f} GiB")
        if a.out:
            Path(a.out).write_text(json.dumps({
                "n": a.n, "height": h, "width": w, "channels": a.channels, "store_gb": need / 1e9,
                "write_s": t_write, "fit_s": t_fit, "peak_rss": peak, "rss_before_fit": before,
                "limit_gib": a.limit_gib, "met": rss < a.limit_gib, "meta": g.meta,
                "max_abs_attentive_fraction_error": float(np.abs(frac - planted_frac).max()),
                "min_label_agreement": min(agree)}, indent=1))
            print(f"wrote {a.out}")
    finally:
        if a.keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
