"""Loader throughput: images/s reading JPEGs vs reading the ``lanfer prepare`` cache, same transform.

Writes a RAF-DB-layout set of N generated JPEG faces (default 2000 of 256x256), prepares the cache at the
model's input size, then times full passes of a DataLoader over both: decoding only (PIL images), and with
the evaluation and the training preset. Example::

    python benchmarks/bench_loader.py --n 2000 --size 256 --image-size 224 --workers 0 2 --out runs/bench_loader.json
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from _common import machine_header, write_record

from lanfer.config import config_from_dict
from lanfer.data import EvalPreset, TrainPreset, build_dataset, collate
from lanfer.data.prepare import prepare


def write_set(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """RAF-DB basic layout; each picture a smooth random blob picture with mild noise (JPEG-like sizes)."""
    base = root / "basic"
    images = base / "Image" / "aligned"
    images.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    lines = []
    for i in range(n):
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.4)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        rgb = np.stack([blob * rng.uniform(100, 255), blob * rng.uniform(50, 200), (1 - blob) * 120], -1)
        rgb += rng.normal(0, 6, rgb.shape)
        name = f"train_{i + 1:05d}"
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(images / f"{name}_aligned.jpg", quality=90)
        lines.append(f"{name}.jpg {i % 7 + 1}")
    (base / "EmoLabel").mkdir()
    (base / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return base


def _as_list(batch):
    return batch


def throughput(ds, workers: int, batch_size: int = 64, passes: int = 1) -> float:
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                        collate_fn=collate if ds.transform is not None else _as_list,
                        generator=torch.Generator().manual_seed(0), persistent_workers=False)
    start = time.perf_counter()
    seen = 0
    for _ in range(passes):
        for batch in loader:
            seen += len(batch[0]) if ds.transform is not None else len(batch)
    return seen / (time.perf_counter() - start)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="generated JPEGs")
    p.add_argument("--size", type=int, default=256, help="side of the generated JPEGs")
    p.add_argument("--image-size", type=int, default=224, help="model input size (cache size)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--passes", type=int, default=1)
    p.add_argument("--out", help="write the numbers as JSON here")
    p.add_argument("--work", help="folder for the generated set and cache (default: a temporary folder)")
    a = p.parse_args(argv)
    print(machine_header(), flush=True)
    torch.set_num_threads(1)  # one intra-op thread per loader process: what DataLoader workers get

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        base = write_set(work, a.n, a.size)
        print(f"wrote {a.n} JPEGs of {a.size}px in {time.perf_counter() - t:.1f}s "
              f"({sum(f.stat().st_size for f in (base / 'Image' / 'aligned').iterdir()) / a.n / 1024:.1f} kB each)")
        cfg = config_from_dict({"data": {"name": "rafdb", "root": str(base), "image_size": a.image_size,
                                         "num_workers": max(a.workers)}})
        t = time.perf_counter()
        prepare(cfg, out=work / "cache", splits=["train"], progress=False)
        prep_s = time.perf_counter() - t
        cache_mb = os.path.getsize(work / "cache" / "images_train.npy") / 2**20
        print(f"prepare: {prep_s:.1f}s with {max(a.workers)} workers, cache {cache_mb:.0f} MB")
        results = {"n": a.n, "jpeg_size": a.size, "image_size": a.image_size, "prepare_s": prep_s,
                   "cache_mb": cache_mb, "cpu_count": os.cpu_count(), "rows": []}
        # "decode": PIL images only (what the cache saves); then the two presets' full cost.
        presets = {"decode": None, "eval": EvalPreset(a.image_size), "train": TrainPreset(a.image_size)}
        print(f"{'preset':<6} {'workers':>7} {'jpeg img/s':>11} {'cache img/s':>12} {'speed-up':>9}")
        for name, tf in presets.items():
            for w in a.workers:
                jpeg = throughput(build_dataset("rafdb", base, "train", transform=tf), w, passes=a.passes)
                cache = throughput(build_dataset("prepared", work / "cache", "train", transform=tf), w,
                                   passes=a.passes)
                results["rows"].append({"preset": name, "workers": w, "jpeg_img_s": jpeg, "cache_img_s": cache,
                                        "speedup": cache / jpeg})
                print(f"{name:<6} {w:>7} {jpeg:>11.0f} {cache:>12.0f} {cache / jpeg:>8.2f}x")
    if a.out:
        write_record(a.out, results)
    return results


if __name__ == "__main__":
    main()
