"""Load on ``lanfer serve``: 8 concurrent clients for 60 s against one client sending requests one after another.

Starts ``lanfer serve`` (the shipped default model, CPU) in a child process on a free port of 127.0.0.1 (never
anything else), warms it up, then for each phase sends ``POST /v1/predict`` with one photo per request, cycling
through the face-api demo photos (downscaled to ``--width`` px; tests/conftest.py caches them in
~/.cache/lanfer/face-api or $LANFER_CACHE), until the phase's time or request budget is spent. Reports faces/s,
requests/s, latency p50/p95/p99, errors, the batcher's mean batch, and the server's resident memory (VmRSS from
/proc) at the start and end of each phase, its peak and a trace every 5 s; the concurrent phase runs twice, so
memory that grew with the number of requests would show as growth in the second.

    python benchmarks/bench_serve.py --out results/serve/bench_serve.json
    python benchmarks/bench_serve.py --seconds 10 --clients 4          # a quick look
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from lanfer.io import atomic_write
from lanfer.serve.process import serve_in_subprocess

PHOTOS = ("sample1.jpg", "sample2.jpg", "sample3.jpg", "sample4.jpg", "sample5.jpg", "sample6.jpg")


def photos(width: int) -> list[tuple[str, bytes]]:
    cache = Path(os.environ.get("LANFER_CACHE") or Path.home() / ".cache" / "lanfer") / "face-api"
    missing = [n for n in PHOTOS if not (cache / n).is_file()]
    if missing:
        raise SystemExit(f"bench_serve: {cache} lacks {missing}; run pytest tests/test_faces.py once to fetch them")
    out = []
    for n in PHOTOS:
        im = Image.open(cache / n).convert("RGB")
        im = im.resize((width, round(im.height * width / im.width)), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=90)
        out.append((n, buf.getvalue()))
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def phase(url: str, pid: int, images, clients: int, seconds: float, max_requests: int) -> dict:
    """``clients`` threads, each sending one request after another until time or the request budget runs out."""
    latencies, faces, errors, lock = [], [0], [], threading.Lock()
    sent = [0]
    stop = time.perf_counter() + seconds
    peak = [rss_mb(pid)]
    rss_start = peak[0]
    trace = []  # (seconds into the phase, RSS MB), every 5 s

    def client(k: int):
        with httpx.Client(base_url=url, timeout=120) as c:
            i = k
            while time.perf_counter() < stop:
                with lock:
                    if sent[0] >= max_requests:
                        return
                    sent[0] += 1
                name, data = images[i % len(images)]
                i += clients
                t = time.perf_counter()
                try:
                    r = c.post("/v1/predict", files={"files": (name, data, "image/jpeg")})
                    ok = r.status_code == 200
                    n = sum(row["status"] == "ok" for row in r.json()["rows"]) if ok else 0
                    detail = None if ok else f"{r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as e:
                    ok, n, detail = False, 0, f"{type(e).__name__}: {e}"
                dt = time.perf_counter() - t
                with lock:
                    if ok:
                        latencies.append(dt)
                        faces[0] += n
                    else:
                        errors.append(detail)

    def watch():
        last = -5.0
        while any(t.is_alive() for t in threads):
            now, rss = time.perf_counter() - t0, rss_mb(pid)
            peak[0] = max(peak[0], rss)
            if now - last >= 5:
                trace.append((round(now, 1), round(rss, 1)))
                last = now
            time.sleep(0.5)

    before = httpx.get(url + "/healthz").json()["batcher"]
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    watcher = threading.Thread(target=watch)
    watcher.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    watcher.join()
    after = httpx.get(url + "/healthz").json()["batcher"]
    lat = np.array(latencies) * 1000
    batches = after["batches"] - before["batches"]
    return {"clients": clients, "wall_s": round(wall, 2), "requests_ok": len(latencies), "errors": len(errors),
            "first_errors": errors[:3], "faces": faces[0], "faces_per_s": round(faces[0] / wall, 2),
            "requests_per_s": round(len(latencies) / wall, 2),
            **{f"p{q}_ms": round(float(np.percentile(lat, q)), 1) if len(lat) else None for q in (50, 95, 99)},
            "model_calls": batches,
            "mean_batch": round((after["items"] - before["items"]) / batches, 2) if batches else None,
            "rss_mb_start": round(rss_start, 1), "rss_mb_end": round(rss_mb(pid), 1), "rss_mb_peak": round(peak[0], 1),
            "rss_mb_trace": trace}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0, help="per phase")
    ap.add_argument("--max-requests", type=int, default=2000, help="per phase, whatever the time")
    ap.add_argument("--width", type=int, default=800, help="photos are downscaled to this width")
    ap.add_argument("--detect-workers", type=int, default=2)
    ap.add_argument("--no-repeat", dest="repeat", action="store_false",
                    help="skip the second concurrent phase (the memory check)")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()
    images = photos(a.width)
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", "1")}
    with serve_in_subprocess(["--device", "cpu", "--detect-workers", str(a.detect_workers)], env=env) as (url, proc):
        for name, data in images:  # warm-up: first calls allocate the detector's and model's buffers
            httpx.post(url + "/v1/predict", files={"files": (name, data)}, timeout=120).raise_for_status()
        sequential = phase(url, proc.pid, images, 1, a.seconds, a.max_requests)
        print("sequential:", json.dumps(sequential))
        concurrent = phase(url, proc.pid, images, a.clients, a.seconds, a.max_requests)
        print("concurrent:", json.dumps(concurrent))
        # The same load again: memory that grew with the number of requests would keep growing here.
        again = phase(url, proc.pid, images, a.clients, a.seconds, a.max_requests) if a.repeat else None
        print("concurrent again:", json.dumps(again))
    result = {"benchmark": "bench_serve", "command": "python benchmarks/bench_serve.py " + " ".join(
                  f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if v is not None and k != "repeat"),
              "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "threads": env,
              "photos": f"face-api sample1-6 at {a.width} px wide, one per request",
              "note": "2-core machine shared with other jobs while this ran; timings are indicative",
              "sequential": sequential, "concurrent": concurrent, "concurrent_again": again,
              "speedup_faces_per_s": round(concurrent["faces_per_s"] / sequential["faces_per_s"], 2)
              if sequential["faces_per_s"] else None}
    print(json.dumps(result, indent=1))
    if a.out:
        atomic_write(a.out, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))


if __name__ == "__main__":
    main()
