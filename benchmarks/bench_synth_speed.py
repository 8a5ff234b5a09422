"""``lanfer synth`` rendering speed: wall time and images/s for the demo's data and a ~2000-picture set.

Renders, into a temporary folder, (a) the KDEF-layout expression set and (b) the identity-pretraining set
with the sizes ``lanfer demo`` uses by default, and (c) a 2000-picture KDEF-layout set at ``--size``; each
with ``--workers`` processes. Example::

    python benchmarks/bench_synth_speed.py --workers 2 --out runs/bench_synth_speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path
from _common import machine_header

from lanfer.data.synth import generate


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(label: str, **kw) -> dict:
    """Wall time, and CPU time of this process and its workers (what the rendering costs whatever else
    runs on the machine: wall time on an idle machine is about cpu_s / workers)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.perf_counter(), _cpu()
        root = generate(Path(tmp) / "set", **kw)
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
        n = sum(1 for p in root.rglob("*") if p.suffix.lower() == ".jpg")
    res = {"set": label, "images": n, "wall_s": round(wall, 2), "images_per_s": round(n / wall, 1),
           "cpu_s": round(cpu, 2), "cpu_ms_per_image": round(1000 * cpu / n, 1),
           "load_average": os.getloadavg()[0], **{k: v for k, v in kw.items()}}
    print(json.dumps(res))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--size", type=int, default=128, help="picture size of the 2000-picture set")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()
    print(machine_header(), flush=True)
    results = [
        timed("demo expression set (16 ids x 2 sessions x 7 x 5 views, 112 px)", identities=16, seed=0,
              image_size=112, workers=a.workers),
        timed("demo identity set (48 ids x 24 pictures, 112 px)", identities=48, seed=1, mode="identity",
              images_per_identity=24, image_size=112, identity_offset=1000, workers=a.workers),
        timed(f"2030 pictures (29 ids x 2 x 7 x 5, {a.size} px)", identities=29, seed=0, image_size=a.size,
              workers=a.workers),
    ]
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps({"cpus": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
