"""Video end to end at 640x480 (decode, detect, align, classify, write the table) with 1 to 3 faces: frames/s
with and without detection reuse (``detect_every``) and classification reuse (``classify_every``), per face
detector, for issue 20's target (>= 15 frames/s on 2 cores, >= 8x the MTCNN path).

Each video is written with OpenCV: 1, 2 or 3 faces on a grey 640x480 frame, drifting a few pixels per frame
(so that no two frames are equal and the tracker has work). The faces are cut from the face-api demo photo
sample1.jpg when the tests have cached it (``~/.cache/lanfer/face-api``; its three people), else rendered by
lanfer's synthetic face renderer. Each configuration runs ``Predictor.predict`` on the file (tracking and
smoothing on, the default ``smooth`` or those of ``--smooth``) and writes ``predictions.csv``; the time is the
wall time of both, after one warm-up run on the same video. Each row also counts the label changes along the
tracks (a track's label on a frame differing from its label on the track's previous frame): the faces do not
change expression, so every change is jitter that smoothing should remove.

    python benchmarks/bench_video_realtime.py                                   # both detectors, k = 1, 3, 6; 1-3 faces
    python benchmarks/bench_video_realtime.py --detectors blazeface --every 1,4 --frames 60
    python benchmarks/bench_video_realtime.py --every 1,6 --classify-every 1,3,6    # with classification reuse
    python benchmarks/bench_video_realtime.py --out results/video/realtime.json
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

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_model, machine_header, usable_cpus  # noqa: E402  (benchmarks/ is on sys.path)

from lanfer.faces import available_detectors, get_detector  # noqa: E402
from lanfer.predict import SMOOTH, Predictor, write_table  # noqa: E402

WIDTH, HEIGHT = 640, 480


def face_patches(n: int, side: int) -> tuple[list[np.ndarray], str]:
    """``n`` face pictures of ``side`` px (head and some context): from sample1.jpg when cached, else synthetic."""
    import cv2

    from bench_predict import default_photo

    photo, what = default_photo()
    if "synthetic" not in what:
        faces = get_detector("mtcnn").detect([photo])[0]  # MTCNN as in the earlier records: the same videos
        faces = sorted(faces, key=lambda f: f.box[0])[:n]
        out = []
        for f in faces:
            cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
            half = 0.8 * max(f.width, f.height)  # the box and 30% more on each side
            x1, y1 = int(max(cx - half, 0)), int(max(cy - half, 0))
            x2, y2 = int(min(cx + half, photo.shape[1])), int(min(cy + half, photo.shape[0]))
            out.append(cv2.resize(photo[y1:y2, x1:x2], (side, side), interpolation=cv2.INTER_AREA))
        if len(out) >= n:
            return out, f"{n} faces cut from {Path(what).name}"
    from lanfer.data.synth import FaceParams, render_face, sample_identity

    return ([np.asarray(render_face(FaceParams(identity=sample_identity(0, i)), yaw=10.0 * i, size=side)[0])
             for i in range(n)], f"{n} synthetic faces")


def write_video(path: Path, patches: list[np.ndarray], frames: int, fps: int = 25) -> None:
    import cv2

    side = patches[0].shape[0]
    xs = np.linspace(40, WIDTH - side - 40, len(patches)) if len(patches) > 1 else [(WIDTH - side) / 2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    if not out.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (no mp4v encoder in this build)")
    for i in range(frames):
        frame = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
        for k, (p, x) in enumerate(zip(patches, xs)):
            dx, dy = int(12 * np.sin(i / 6 + k)), int(8 * np.cos(i / 7 + k))
            x0, y0 = int(x) + dx, (HEIGHT - side) // 2 + dy
            frame[y0:y0 + side, x0:x0 + side] = p
        out.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    out.release()


def run(predictor: Predictor, video: Path, out_csv: Path, every: int, batch: int, smooth: float = SMOOTH,
        classify_every: int = 1) -> dict:
    t = time.perf_counter()
    table = predictor.predict(str(video), batch_size=batch, progress=False, detect_every=every, smooth=smooth,
                              classify_every=classify_every)
    write_table(table, out_csv)
    wall = time.perf_counter() - t
    frames = table.attrs["frames"]
    ok = table[table["status"] == "ok"]
    # label stability: how often a track's label differs from its label on the track's previous frame
    changes = int(sum((g["label"].to_numpy()[1:] != g["label"].to_numpy()[:-1]).sum()
                      for _, g in ok.sort_values("frame").groupby("track_id")))
    return {"frames": frames, "detected_frames": table.attrs["detected_frames"], "faces": len(ok),
            "tracks": int(ok["track_id"].nunique()), "label_changes": changes,
            "label_changes_per_100_faces": round(100 * changes / max(len(ok), 1), 2),
            "wall_s": round(wall, 3), "frames_per_s": round(frames / wall, 3),
            **{k: round(float(v), 3) for k, v in table.attrs["timing"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=30, help="frames per video (default 30)")
    ap.add_argument("--faces", default="1,2,3", help="face counts, one video each (default 1,2,3)")
    ap.add_argument("--every", default="1,3,6", help="detect_every values; 1 is no reuse (default 1,3,6)")
    ap.add_argument("--classify-every", default="1",
                    help="classify_every values, each run with every detect_every: a tracked face is classified on "
                         "every k-th frame of its track only; 1 is no reuse (default 1)")
    ap.add_argument("--smooth", default=str(SMOOTH),
                    help=f"smoothing factors, comma-separated (default {SMOOTH:g}, lanfer's); e.g. 0,0.5 to see what "
                         "smoothing does to the label changes along each track")
    ap.add_argument("--detectors", default="mtcnn,blazeface",
                    help="detector names, comma-separated (default mtcnn,blazeface: the old and the new default, in "
                         "one run); a name this lanfer does not have is reported and skipped")
    ap.add_argument("--side", type=int, default=160, help="face picture side in pixels (default 160)")
    ap.add_argument("--batch", type=int, default=32, help="face crops per classifier call (default 32)")
    ap.add_argument("--backend", default="torch",
                    help="the classifier, comma-separated: torch (PyTorch), onnx (ONNX Runtime on the shipped model "
                         "exported in memory), or torch,onnx for both in one run (default torch)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads, and ONNX Runtime's with --backend onnx (default: each library's own)")
    ap.add_argument("--out", help="write the results as JSON")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    faces = [int(v) for v in a.faces.split(",")]
    everies = [int(v) for v in a.every.split(",")]
    classify_everies = [int(v) for v in a.classify_every.split(",")]
    smooths = [float(v) for v in a.smooth.split(",")]
    detectors = [d for d in a.detectors.split(",") if d]
    backends = [b for b in a.backend.split(",") if b]
    if not backends or set(backends) - {"torch", "onnx"}:
        ap.error(f"--backend takes torch, onnx or torch,onnx, got {a.backend!r}")
    print(machine_header())
    missing = [d for d in detectors if d not in available_detectors()]
    if missing:
        print(f"skipped detectors (not in this lanfer: {', '.join(available_detectors())}): {', '.join(missing)}")
    detectors = [d for d in detectors if d not in missing]
    patches, what = face_patches(max(faces), a.side)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        videos = {}
        for n in faces:
            videos[n] = Path(tmp) / f"faces{n}.mp4"
            write_video(videos[n], patches[:n], a.frames)
        print(f"videos: {a.frames} frames {WIDTH}x{HEIGHT}, 1 per face count {faces}, {what.split(' ', 1)[1]} "
              f"({a.side} px); classifier {a.backend}, batch {a.batch}; torch threads {torch.get_num_threads()}")
        onnx = None
        if "onnx" in backends:  # exported once, in memory; ONNX Runtime held to --threads like torch
            import onnxruntime as ort

            from lanfer.export import export_model
            from lanfer.model import load_model
            from lanfer.pretrained import find

            model, info = load_model(find().path, device="cpu")
            onnx = export_model(model, info, info.input_size)
            options = ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = a.threads or 0
        for backend in backends:
            for name in detectors:
                # by name, as lanfer predict does: with the onnx backend BlazeFace's network runs in ONNX Runtime too
                # (under the same options, so held to --threads), MTCNN stays in PyTorch
                predictor = (Predictor.from_pretrained(device="cpu", detector=name) if backend == "torch" else
                             Predictor.from_onnx(onnx, device="cpu", detector=name, session_options=options))
                detector_backend = getattr(predictor.detector, "backend", "torch")
                for n in faces:
                    run(predictor, videos[n], Path(tmp) / "warm.csv", 1, a.batch)  # warm-up: weights, kernels, sizes
                    for every in everies:
                        for ce in classify_everies:
                            for smooth in smooths:
                                r = run(predictor, videos[n], Path(tmp) / "predictions.csv", every, a.batch, smooth, ce)
                                rows.append({"backend": backend, "detector": name, "detector_backend": detector_backend,
                                             "faces_per_frame": n, "detect_every": every, "classify_every": ce,
                                             "smooth": smooth, **r})
                                print(f"  {backend:<5} {name:<10} {n} face(s) detect_every {every} classify_every {ce} "
                                      f"smooth {smooth:g}: {r['frames_per_s']:.2f} frames/s ({r['faces']} faces, "
                                      f"{r['tracks']} tracks, {r['label_changes']} label changes)", flush=True)
    print(f"\n{'backend':<7} {'detector':<10} {'faces':>5} {'every':>5} {'cls':>4} {'smooth':>6} {'frames/s':>9} "
          f"{'vs k=1':>7} {'detect s':>9} {'align s':>8} {'classify s':>11} {'read s':>7} {'faces':>6} {'tracks':>6} "
          f"{'changes':>7}")
    for r in rows:
        base = next(b for b in rows if b["backend"] == r["backend"] and b["detector"] == r["detector"]
                    and b["faces_per_frame"] == r["faces_per_frame"] and b["smooth"] == r["smooth"]
                    and b["detect_every"] == min(everies) and b["classify_every"] == min(classify_everies))
        r["speedup_vs_every_min"] = round(r["frames_per_s"] / base["frames_per_s"], 3)
        print(f"{r['backend']:<7} {r['detector']:<10} {r['faces_per_frame']:>5} {r['detect_every']:>5} "
              f"{r['classify_every']:>4} {r['smooth']:>6g} {r['frames_per_s']:9.2f} {r['speedup_vs_every_min']:6.2f}x "
              f"{r['detect_s']:9.2f} {r['align_pose_s']:8.2f} {r['classify_s']:11.2f} {r['read_s']:7.2f} "
              f"{r['faces']:6d} {r['tracks']:6d} {r['label_changes']:7d}")
    # the summary (run_all.py's key figure): the best configuration for each face count, and how many times the
    # path before issue 20 (MTCNN, PyTorch, the detector and the classifier on every frame) it runs, when this run
    # measured that path; every configuration competes for the best, classification reuse included
    best, speedups = [], {}
    for n in faces:
        b = max((r for r in rows if r["faces_per_frame"] == n), key=lambda r: r["frames_per_s"])
        old = [r for r in rows if r["faces_per_frame"] == n and r["detector"] == "mtcnn" and r["backend"] == "torch"
               and r["detect_every"] == 1 and r["classify_every"] == 1 and r["smooth"] == b["smooth"]]
        vs = ""
        if old:
            speedups[n] = round(b["frames_per_s"] / old[0]["frames_per_s"], 2)
            vs = f", {speedups[n]:.1f}x the MTCNN path's {old[0]['frames_per_s']:.1f}"
        best.append(f"{n} face{'s' * (n > 1)} {b['frames_per_s']:.1f} ({b['detector']}, {b['backend']}, "
                    f"detect_every {b['detect_every']}, classify_every {b['classify_every']}{vs})")
    print(f"640x480 end to end, best frames/s: {'; '.join(best)}; {cpu_model()}, {usable_cpus()} cores, "
          f"{torch.get_num_threads()} torch thread(s)")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        with open(a.out, "w") as fh:
            json.dump({"machine": machine_header(), "cpu": cpu_model(), "usable_cpus": usable_cpus(),
                       "frames": a.frames, "size": [WIDTH, HEIGHT], "faces_from": what, "side": a.side,
                       "backend": a.backend, "batch": a.batch, "torch_threads": torch.get_num_threads(),
                       "command": "python " + " ".join(sys.argv),
                       "best_vs_mtcnn_torch_every_1": {str(n): v for n, v in speedups.items()}, "rows": rows},
                      fh, indent=2)


if __name__ == "__main__":
    main()
