"""Video prediction throughput end to end (read + detect + align + pose + classify), every frame kept
(``every_nth_frame=1``), and where the time goes: the face detector against the classifier.

A synthetic video is written with OpenCV from one photo (default: the face-api demo picture sample1.jpg when the
tests have cached it, else two synthetic faces; see bench_predict.default_photo), the picture drifting a few
pixels per frame so that no two frames are equal. It is then run through the shipped model
(``Predictor.from_pretrained``) with the MTCNN detector configured three ways:

* ``window 1``: one frame per detector call (no cross-frame batching of the detector);
* ``window W, per-frame``: W frames per call, but MTCNN runs them one by one (``MTCNNDetector(batch=False)``);
* ``window W, batched``: W frames stacked through MTCNN's P/R/O-nets together (the default).

Face crops are batched across frames for the classifier in every case (``batch_size``).

    python benchmarks/bench_predict_video.py                      # 24 frames, 640 px wide, window 8
    python benchmarks/bench_predict_video.py --frames 48 --width 960 --out video.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lanfer.faces.detect import MTCNNDetector
from _common import machine_header  # noqa: E402  (benchmarks/ is on sys.path)
from lanfer.precision import hardware_line
from lanfer.predict import Predictor

sys.path.insert(0, str(Path(__file__).parent))
from bench_predict import default_photo  # noqa: E402  (the same photo as the single-image benchmark)


def write_video(photo: np.ndarray, path: Path, frames: int, width: int, fps: int = 25) -> tuple[int, int]:
    """An mp4 of ``frames`` frames: ``photo`` scaled to ``width`` px, shifted by a few pixels per frame."""
    import cv2

    h = int(round(photo.shape[0] * width / photo.shape[1])) // 2 * 2
    base = cv2.resize(photo, (width, h), interpolation=cv2.INTER_AREA)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, h))
    if not out.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (no mp4v encoder in this build)")
    for i in range(frames):
        dx, dy = int(6 * np.sin(i / 4)), int(4 * np.cos(i / 5))
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        frame = cv2.warpAffine(base, m, (width, h), borderMode=cv2.BORDER_REFLECT)
        out.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out.release()
    return width, h


def run(predictor: Predictor, video: Path, window: int, batch: int) -> dict:
    t = time.perf_counter()
    table = predictor.predict(str(video), batch_size=batch, window=window, progress=False, every_nth_frame=1)
    wall = time.perf_counter() - t
    timing = table.attrs["timing"]
    frames = table.attrs["frames"]
    return {"frames": frames, "faces": int((table["status"] == "ok").sum()), "wall_s": wall,
            "frames_per_s": frames / wall, **{k: float(v) for k, v in timing.items()},
            "detect_share": timing["detect_s"] / wall, "classify_share": timing["classify_s"] / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--width", type=int, default=640, help="video width in pixels (height keeps the aspect)")
    ap.add_argument("--window", type=int, default=8, help="frames per detector call in the batched runs")
    ap.add_argument("--batch", type=int, default=32, help="face crops per classifier call")
    ap.add_argument("--min-face", type=int, default=20,
                    help="MTCNN's smallest face side in pixels (20, its default, sets the largest pyramid level)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", help="write the results as JSON")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    photo, what = default_photo()
    print(machine_header())
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "faces.mp4"
        w, h = write_video(photo, video, a.frames, a.width)
        print(f"video: {a.frames} frames {w}x{h} from {what}; classifier batch {a.batch}; "
              f"MTCNN min_face_size {a.min_face}")
        configs = [("window 1", 1, True), (f"window {a.window}, per-frame", a.window, False),
                   (f"window {a.window}, batched", a.window, True)]
        rows = []
        for name, window, batched in configs:
            predictor = Predictor.from_pretrained(device="cpu", detector=MTCNNDetector(min_face_size=a.min_face,
                                                                                  batch=batched))
            run(predictor, video, window, a.batch)  # warm-up: weights, kernels for this frame size
            r = {"config": name, "window": window, "batched_detector": batched, **run(predictor, video, window, a.batch)}
            rows.append(r)
    print(f"{'config':<24} {'frames/s':>9} {'faces':>6} {'detect s':>9} {'classify s':>11} {'align s':>8} "
          f"{'read s':>7} {'detect %':>9}")
    for r in rows:
        print(f"{r['config']:<24} {r['frames_per_s']:9.2f} {r['faces']:6d} {r['detect_s']:9.2f} "
              f"{r['classify_s']:11.2f} {r['align_pose_s']:8.2f} {r['read_s']:7.2f} {100 * r['detect_share']:8.0f}%")
    base, best = rows[0], rows[-1]
    print(f"detector share of wall time (window 1): {100 * base['detect_share']:.0f}%, "
          f"detector / classifier time {base['detect_s'] / max(base['classify_s'], 1e-9):.1f}x")
    print(f"batched detection ({best['config']}) vs window 1: {best['frames_per_s'] / base['frames_per_s']:.2f}x "
          f"frames/s, detector time {base['detect_s'] / max(best['detect_s'], 1e-9):.2f}x less")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump({"cpu": hardware_line(), "frames": a.frames, "size": [w, h], "photo": what,
                       "min_face_size": a.min_face, "rows": rows},
                      fh, indent=2)


if __name__ == "__main__":
    main()
