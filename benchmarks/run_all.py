"""Run every benchmark in this folder at a small size and print one summary table (``make bench``).

Each script runs as its own process (a crash or a hang costs one row, not the run), with flags that keep the
whole set near 10 minutes on 2 free CPU cores; the README's table gives the full-size command of each. The
header names the machine, since the figures mean little without it (``_common.machine_header``: the CPU
model and whether it has the bfloat16 instructions ``amx_bf16``, ``avx512_bf16`` that make ``train.amp``
pay on a CPU).

    python benchmarks/run_all.py                        # all of them, outputs in runs/bench/
    python benchmarks/run_all.py --only train_step      # a subset, by part of the script name
    python benchmarks/run_all.py --list                 # what would run, with its flags
    python benchmarks/run_all.py --markdown             # the table also as markdown (the README's)
    python benchmarks/run_all.py --device cuda          # the scripts that take --device, on the GPU

Adding a benchmark is one line in ``BENCHES``: the script, its small-size flags, and the function that
reads its key figure from the output (``last_line`` when it prints its own summary last). A ``bench_*.py``
without a line is listed as not run. Each script must accept ``--out FILE`` (its JSON).

Every script writes its JSON to ``OUT/<script>.json`` and its output to ``OUT/<script>.log``; the table is
also written to ``OUT/summary.json``. The exit status is 1 when any script failed or timed out.
``ferplus_crop.py`` is not a speed benchmark and needs the FERPlus dataset: it is not run here. ``bench_peers.py``
is run on 300 FERPlus test faces when the data is found (``$LANFER_FERPLUS_ROOT`` or ``../shared/data/ferplus``)
and the peers are in the cache (``bash scripts/setup_peers.sh``); otherwise its row says what was skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from _common import machine_header

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------------------------------------
# the key figure of each script, read from its output (a failed parse shows the output's last line instead)

def last_line(out: str) -> str:
    """The default key figure: the script's last non-empty line (its own summary)."""
    return next(ln.strip() for ln in reversed(out.splitlines()) if ln.strip())


def _guidance(out: str) -> str:
    ours = re.search(r"^lanfer\.fit_guidance \((\w+)\)\s+([\d.]+)\s+([\d.]+x)", out, re.M)
    sk = re.search(r"^sklearn ([\d.]+) KMeans n_init=(\w+) x \d+\s+([\d.]+)", out, re.M)
    rel = re.search(r"max \|\.\| ([\d.e+-]+)", out)
    return (f"fit_guidance ({ours[1]}) {ours[2]} s vs sklearn {sk[1]} KMeans n_init={sk[2]} {sk[3]} s: "
            f"{ours[3]}; max rel. inertia diff {rel[1]}")


def _guidance_scale(out: str) -> str:
    return re.search(r"^AffectNet-scale fit: .*", out, re.M)[0]


def _train_step(out: str) -> str:
    return re.search(r"LAN overhead .*", out)[0]


def _loader(out: str) -> str:
    row = re.search(r"^eval\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+x)", out, re.M)
    return f"eval preset, {row[1]} workers: {row[2]} img/s from JPEG, {row[3]} from the cache ({row[4]})"


def _predict(out: str) -> str:
    # rows: backend what batch batch_ms ms/face faces/s; the first "what" is the full classify path
    rows = re.findall(r"^(\S+)\s+(\S+)\s+(\d+)\s+[\d.]+\s+([\d.]+)\s+[\d.]+\s*$", out, re.M)
    what = rows[0][1]
    per = {}
    for backend, w, batch, ms in rows:
        if w == what:
            per.setdefault(backend, []).append(f"{ms} (b{batch})")
    return "ms/face: " + "; ".join(f"{b} {' '.join(v)}" for b, v in per.items())


def _predict_video(out: str) -> str:
    share = re.search(r"^detector share of wall time.*", out, re.M)[0]
    batched = re.search(r"^batched detection .*", out, re.M)[0]
    return f"{share}; {batched}"


def _separability(out: str) -> str:
    res = json.loads(out[out.index("{"):])
    frontal = sum(res["frontal_only_test_accuracy"]) / len(res["frontal_only_test_accuracy"])
    return (f"raw-pixel linear floor {100 * res['test_accuracy_mean']:.1f}% held-out (frontal only "
            f"{100 * frontal:.1f}%, chance {100 * res['chance']:.1f}%)")


def _synth_speed(out: str) -> str:
    rows = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    r = rows[-1]
    return f"{r['images']} images at {r['image_size']} px: {r['cpu_ms_per_image']} ms CPU per image, " \
           f"{r['images_per_s']} img/s wall"


@dataclass
class Bench:
    script: str
    args: list[str]  # small-size flags; the script's --out is added
    key: Callable[[str], str]


# Small sizes, each a few seconds to about two minutes on 2 idle cores. One line per script.
BENCHES = [
    Bench("bench_train_step.py", ["--size", "112", "--batch", "32", "--steps", "10", "--rounds", "2"], _train_step),
    # RAF-DB size (the README's figure), sklearn timed on 7 of the 49 positions
    Bench("bench_guidance.py", ["--sklearn-positions", "7", "--repeat", "2"], _guidance),
    # 30,000 samples: a 1.5 GB store in /tmp, written, fitted and deleted
    Bench("bench_guidance_scale.py", ["--n", "30000", "--dir", "/tmp"], _guidance_scale),
    Bench("bench_loader.py", ["--n", "400", "--workers", "0"], _loader),
    Bench("bench_predict.py", ["--batches", "1,8", "--reps", "3", "--warmup", "1", "--photo-reps", "1",
                               "--threads", "1"], _predict),
    # needs the face-api photos (tests fetch them) or falls back to what the script says; 8 frames, 2 per call
    Bench("bench_predict_video.py", ["--frames", "8", "--width", "480", "--window", "4", "--threads", "1"],
          _predict_video),
    # 640x480 video end to end, MTCNN and BlazeFace x PyTorch and ONNX Runtime, 1 and 3 faces, detect_every and
    # classify_every 1 and 4, 16 frames each (about 100 s on the loaded 2-core machine); its last line is the best
    # frames/s and how many times the MTCNN + PyTorch path (detect and classify every frame) that is
    Bench("bench_video_realtime.py", ["--frames", "16", "--faces", "1,3", "--every", "1,4", "--classify-every", "1,4",
                                      "--threads", "1", "--backend", "torch,onnx"], last_line),
    # one 1920x1280 face-api photo through lanfer serve's HTTP API, BlazeFace and MTCNN servers, 3 requests each
    # (23.0 s measured); needs the face-api photos (tests fetch them) and the serve extra
    Bench("bench_serve.py", ["--seconds", "0", "--photo-reps", "3"], last_line),
    # BlazeFace vs MTCNN: recall on the six face-api photos (22 faces) and ms per 640x480 frame (~1 min)
    Bench("bench_detectors.py", ["--reps", "5", "--threads", "1"], last_line),
    Bench("bench_synth_separability.py", ["--identities", "8", "--size", "64", "--pixels", "16"], _separability),
    # its sets are fixed (the demo's two at 112 px, then --size); the largest single item here (~1-2 min)
    Bench("bench_synth_speed.py", ["--size", "64"], _synth_speed),
    # the first 300 FERPlus test faces: lanfer against face-api, human and fer (peers fetched by
    # scripts/setup_peers.sh); says "skipped" and exits 0 without FERPlus, skips a peer missing from the cache
    Bench("bench_peers.py", ["--limit", "300"], last_line),
    # 10 synthetic people x 4 pictures at 112 px, one shuffled and one random net, no bootstrap (~20 s); the
    # record in results/port/identity_auc.json is the full size (40 x 5 at 160 px, 3 seeds)
    Bench("bench_identity.py", ["--identities", "10", "--images", "4", "--size", "112", "--control-seeds", "1",
                                "--bootstrap", "0"], last_line),
]


# ---------------------------------------------------------------------------------------------------------
# running

def run_one(bench: Bench, out_dir: Path, timeout: float, echo: bool, device: str | None = None) -> dict:
    """Run one script as a subprocess, echoing its output; returns its summary row."""
    script = HERE / bench.script
    args = list(bench.args)
    if device and script.is_file() and "--device" in script.read_text():  # a script that takes it
        args += ["--device", device]
    row = {"script": bench.script, "args": args, "status": "missing", "wall_s": 0.0, "key": ""}
    if not script.is_file():
        return row
    cmd = [sys.executable, str(script), *args, "--out", str(out_dir / f"{Path(bench.script).stem}.json")]
    env = dict(os.environ)
    # measure this checkout's lanfer, installed or not (as benchmarks/gpu.sh does)
    env["PYTHONPATH"] = str(HERE.parent / "src") + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"  # lines as they come, so a timed-out script's log shows how far it got
    print(f"\n=== {bench.script} {' '.join(args)}", flush=True)
    t0 = time.perf_counter()
    # a new session, so a timeout can stop the script's own worker processes too
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    timed_out = threading.Event()

    def stop() -> None:
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, stop)
    timer.start()
    lines = []
    try:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if echo:
                print("  | " + line, end="", flush=True)
        rc = proc.wait()
    finally:
        timer.cancel()
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    output = "".join(lines)
    (out_dir / f"{Path(bench.script).stem}.log").write_text(output)
    if timed_out.is_set():
        row["status"] = f"TIMEOUT {timeout:.0f}s"
    elif rc != 0:
        row["status"] = f"FAILED rc {rc}"
    else:
        row["status"] = "ok"
    try:
        row["key"] = bench.key(output) if row["status"] == "ok" else ""
    except (TypeError, ValueError, KeyError, IndexError, ZeroDivisionError):
        row["key"] = ""
    if not row["key"]:  # a failure's last words, or output this runner cannot read: the last line
        row["key"] = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")[:160]
    return row


def markdown(rows: list[dict]) -> str:
    lines = ["| script | status | wall s | key figure |", "|---|---|---:|---|"]
    lines += [f"| `{r['script']}` | {r['status']} | {r['wall_s']:.0f} | {r['key']} |" for r in rows]
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    w = max([len("script")] + [len(r["script"]) for r in rows])
    lines = [f"{'script':<{w}}  {'status':<13} {'wall s':>7}  key figure"]
    lines += [f"{r['script']:<{w}}  {r['status']:<13} {r['wall_s']:>7.1f}  {r['key']}" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run the scripts whose name contains NAME")
    ap.add_argument("--out", default="runs/bench", help="folder for each script's JSON and log (default runs/bench)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per script before it is stopped (default 300)")
    ap.add_argument("--quiet", action="store_true", help="do not echo the scripts' output, only the table")
    ap.add_argument("--list", action="store_true", help="print what would run and exit")
    ap.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    ap.add_argument("--device", help="passed as --device to the scripts that take it (e.g. cuda)")
    a = ap.parse_args(argv)

    benches = [b for b in BENCHES if not a.only or any(n in b.script for n in a.only)]
    if a.only and not benches:
        ap.error(f"--only {' '.join(a.only)} matches none of: {', '.join(b.script for b in BENCHES)}")
    known = {b.script for b in BENCHES}
    unlisted = sorted(p.name for p in HERE.glob("bench_*.py") if p.name not in known)
    if a.list:
        for b in benches:
            print(f"{b.script} {' '.join(b.args)}")
        return 0

    print(machine_header())
    if unlisted:  # a new script is not run at an unknown size: it needs its small-size flags here first
        print(f"not run (add them to BENCHES in {Path(__file__).name}): {', '.join(unlisted)}")
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = [run_one(b, out_dir, a.timeout, echo=not a.quiet, device=a.device) for b in benches]
    print(f"\n{machine_header()}\n\n{table(rows)}\n\ntotal {time.perf_counter() - t0:.0f} s; outputs in {out_dir}/")
    if a.markdown:
        print(f"\n{markdown(rows)}")
    (out_dir / "summary.json").write_text(json.dumps({"machine": machine_header(), "rows": rows}, indent=2))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
