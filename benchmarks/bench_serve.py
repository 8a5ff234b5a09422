"""``lanfer serve``: one full-size photo end to end per face detector, and load (8 concurrent clients for 60 s
against one client sending requests one after another).

**One photo** (issue 20's "one photo through ``lanfer serve`` < 0.5 s"): for each of ``--detectors`` (default:
BlazeFace, the default, and MTCNN, in one run) a server is started with ``--detector NAME`` and sent the face-api
demo photo ``--photo`` (default sample1.jpg: 1920x1280, 3 people; the file's own JPEG bytes, not resized) one
request after another, as the page sends it (``POST /v1/predict?attention=true``) and as a plain API call
(``POST /v1/predict``), after two warm-up requests. Reports per detector the client's wall time (upload,
decode, detect, align, classify, JSON answer over HTTP on 127.0.0.1) as median / min / max, the server's own
``timing_ms`` medians, and the faces found.

**Load** (with the first of ``--detectors``; ``--seconds 0`` skips it):
Starts ``lanfer serve`` (the shipped default model, CPU) in a child process on a free port of 127.0.0.1 (never
anything else), warms it up, then for each phase sends ``POST /v1/predict`` with one photo per request, cycling
through the face-api demo photos (downscaled to ``--width`` px; tests/conftest.py caches them in
~/.cache/lanfer/face-api or $LANFER_CACHE), until the phase's time or request budget is spent. Reports faces/s,
requests/s, latency p50/p95/p99, errors, the batcher's mean batch, and the server's resident memory (VmRSS from
/proc) at the start and end of each phase, its peak and a trace every 5 s; the concurrent phase runs twice, so
memory that grew with the number of requests would show as growth in the second.

    python benchmarks/bench_serve.py --out results/serve/bench_serve.json
    python benchmarks/bench_serve.py --seconds 10 --clients 4          # a quick look
    python benchmarks/bench_serve.py --seconds 0 --photo-reps 10 --out results/serve/one_photo.json  # one photo only
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_model, usable_cpus  # noqa: E402  (benchmarks/ is on sys.path)

from lanfer.io import atomic_write
from lanfer.serve.process import serve_in_subprocess

PHOTOS = ("sample1.jpg", "sample2.jpg", "sample3.jpg", "sample4.jpg", "sample5.jpg", "sample6.jpg")


def photos(width: int) -> list[tuple[str, bytes]]:
    cache = face_api_dir()
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


def face_api_dir() -> Path:
    return Path(os.environ.get("LANFER_CACHE") or Path.home() / ".cache" / "lanfer") / "face-api"


def one_photo(url: str, name: str, data: bytes, reps: int, query: str = "") -> dict:
    """``reps`` requests with the one photo, one after another (after two warm-up requests): the client's wall
    time and the server's ``timing_ms``, medians in ms."""
    walls, server, faces = [], [], set()
    with httpx.Client(base_url=url, timeout=120) as c:
        for i in range(reps + 2):
            t = time.perf_counter()
            r = c.post("/v1/predict" + query, files={"files": (name, data, "image/jpeg")})
            dt = time.perf_counter() - t
            r.raise_for_status()
            body = r.json()
            if i >= 2:  # the first calls allocate the detector's and model's buffers for this size
                walls.append(dt * 1000)
                server.append(body["timing_ms"])
                faces.add(sum(row["status"] == "ok" for row in body["rows"]))
    if len(faces) != 1:
        raise RuntimeError(f"the same photo gave different face counts: {sorted(faces)}")
    return {"request": "POST /v1/predict" + query, "reps": reps, "faces": faces.pop(),
            "wall_ms_median": round(float(np.median(walls)), 1), "wall_ms_min": round(min(walls), 1),
            "wall_ms_max": round(max(walls), 1), "wall_ms": [round(w, 1) for w in walls],
            "server_ms_median": {k: round(float(np.median([s[k] for s in server])), 1) for k in server[0]}}


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
    ap.add_argument("--detectors", default="blazeface,mtcnn",
                    help="one server each for the one-photo timing; the first also takes the load (default "
                         "blazeface,mtcnn: the default detector and the old one, in one run)")
    ap.add_argument("--photo", default="sample1.jpg", help="the face-api demo photo timed alone, full size "
                    "(default sample1.jpg, 1920x1280, 3 faces)")
    ap.add_argument("--photo-reps", type=int, default=10, help="timed requests per detector and request kind")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0, help="per load phase; 0 skips the load phases")
    ap.add_argument("--max-requests", type=int, default=2000, help="per phase, whatever the time")
    ap.add_argument("--width", type=int, default=800, help="photos are downscaled to this width")
    ap.add_argument("--detect-workers", type=int, default=2)
    ap.add_argument("--no-repeat", dest="repeat", action="store_false",
                    help="skip the second concurrent phase (the memory check)")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()
    detectors = [d for d in a.detectors.split(",") if d]
    if not detectors:
        ap.error("--detectors names at least one detector")
    photo = face_api_dir() / a.photo
    if not photo.is_file():
        raise SystemExit(f"bench_serve: {photo} is missing; run pytest tests/test_faces.py once to fetch the photos")
    photo_bytes = photo.read_bytes()
    with Image.open(photo) as im:
        photo_size = im.size
    env = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS", "1")}
    single, sequential, concurrent, again = {}, None, None, None
    for k, detector in enumerate(detectors):
        args = ["--device", "cpu", "--detect-workers", str(a.detect_workers), "--detector", detector]
        with serve_in_subprocess(args, env=env) as (url, proc):
            single[detector] = {"page": one_photo(url, a.photo, photo_bytes, a.photo_reps, "?attention=true"),
                                "api": one_photo(url, a.photo, photo_bytes, a.photo_reps)}
            for kind, r in single[detector].items():
                print(f"one photo, {detector}, {r['request']}: {r['faces']} faces, median {r['wall_ms_median']} ms "
                      f"(min {r['wall_ms_min']}, max {r['wall_ms_max']}); server {r['server_ms_median']}", flush=True)
            if k > 0 or a.seconds <= 0:
                continue
            images = photos(a.width)
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
              "cpu": cpu_model(), "cpu_count": os.cpu_count(), "usable_cpus": usable_cpus(), "threads": env,
              "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
              "note": "2-core machine shared with other jobs while this ran; timings are indicative",
              "one_photo": {"photo": f"face-api {a.photo}, {photo_size[0]}x{photo_size[1]}, its own JPEG bytes "
                                     f"({len(photo_bytes)} bytes)", **single}}
    if sequential is not None:
        result.update({"load_detector": detectors[0],
                       "photos": f"face-api sample1-6 at {a.width} px wide, one per request",
                       "sequential": sequential, "concurrent": concurrent, "concurrent_again": again,
                       "speedup_faces_per_s": round(concurrent["faces_per_s"] / sequential["faces_per_s"], 2)
                       if sequential["faces_per_s"] else None})
    print(json.dumps(result, indent=1))
    print("one photo through lanfer serve, median of the page's request: " + "; ".join(
        f"{d} {r['page']['wall_ms_median'] / 1000:.3f} s" for d, r in single.items()) + f"; {cpu_model()}")
    if a.out:
        atomic_write(a.out, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))

if __name__ == "__main__":
    main()
