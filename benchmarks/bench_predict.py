"""Prediction speed: per-face classification latency and throughput by batch size, PyTorch eager against
ONNX Runtime, and the end-to-end latency of one photo (detect + align + pose + classify).

The model is the full-size LAN (ResNet-18 + head 256/128/64, 7 classes) with random weights: speed does not
depend on the weights. Classification times include the evaluation transform (EvalPreset) on uint8 crops,
as :meth:`lanfer.predict.Predictor.classify` runs it; ``model_only`` rows time the network alone.

    python benchmarks/bench_predict.py                                   # CPU, 224 px, batches 1 8 32 64
    python benchmarks/bench_predict.py --device cuda --out predict_gpu.json
    python benchmarks/bench_predict.py --photo my_group_photo.jpg

The photo defaults to the face-api demo picture sample1.jpg when tests/test_faces.py has cached it
(~/.cache/lanfer/face-api or $LANFER_CACHE), else to two synthetic faces side by side (lanfer.data.synth).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import lanfer
from lanfer.faces import get_detector
from lanfer.predict import Predictor

CLASSES = ["anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def _timed(fn, reps: int, warmup: int, sync) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return out


def classification(predictor: Predictor, batch_sizes, reps: int, warmup: int, sync, rng) -> list[dict]:
    rows = []
    size = predictor.image_size
    for bs in batch_sizes:
        crops = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(bs)]
        x = torch.stack([predictor.preset(c) for c in crops])  # (B, 3, S, S)
        n = max(1, reps // max(1, bs // 8))  # fewer repetitions for big batches on slow machines
        for what, fn in (("classify", lambda: predictor.classify(crops)), ("model_only", lambda: predictor.runner(x))):
            t = _timed(fn, n, warmup, sync)
            med = statistics.median(t)
            rows.append({"backend": predictor.backend, "what": what, "batch": bs, "batch_ms": 1e3 * med,
                         "per_face_ms": 1e3 * med / bs, "faces_per_s": bs / med, "reps": n})
    return rows


def default_photo() -> tuple[np.ndarray, str]:
    from PIL import Image

    cache = Path(os.environ.get("LANFER_CACHE") or Path.home() / ".cache" / "lanfer") / "face-api" / "sample1.jpg"
    if cache.is_file():
        return np.array(Image.open(cache).convert("RGB")), str(cache)
    from lanfer.data.synth import FaceParams, render_face, sample_identity

    canvas = np.full((300, 560, 3), 140, np.uint8)
    for i, x0 in enumerate((20, 290)):
        img, _ = render_face(FaceParams(identity=sample_identity(0, i)), yaw=15.0 * i, size=250)
        canvas[25:275, x0:x0 + 250] = np.asarray(img)
    return canvas, "synthetic two-face picture 560x300"


def end_to_end(predictor: Predictor, image: np.ndarray, reps: int) -> dict:
    predictor.predict(image, progress=False)  # warm-up: detector weights, kernels for this image size
    walls, timings, faces = [], [], 0
    for _ in range(reps):
        t = time.perf_counter()
        table = predictor.predict(image, progress=False)
        walls.append(time.perf_counter() - t)
        timings.append(table.attrs["timing"])
        faces = int((table["status"] == "ok").sum())
    stage = {k: statistics.median(t[k] for t in timings) * 1e3 for k in ("detect_s", "align_pose_s", "classify_s")}
    return {"backend": predictor.backend, "faces": faces, "total_ms": 1e3 * statistics.median(walls),
            "detect_ms": stage["detect_s"], "align_pose_ms": stage["align_pose_s"],
            "classify_ms": stage["classify_s"], "reps": reps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batches", default="1,8,32,64")
    ap.add_argument("--reps", type=int, default=10, help="timed repetitions per batch size (fewer for big batches)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--photo", help="image for the end-to-end latency (default: see above)")
    ap.add_argument("--photo-reps", type=int, default=3)
    ap.add_argument("--no-onnx", action="store_true")
    ap.add_argument("--threads", type=int, help="torch and ONNX Runtime CPU threads (default: each library's choice). "
                    "On a shared machine --threads 1 avoids the stalls of multi-threaded regions waiting for a "
                    "descheduled thread")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = lanfer.create_model("lan_resnet18", num_classes=len(CLASSES)).eval()
    info = {"model": {"name": "lan_resnet18", "num_classes": len(CLASSES)}, "classes": CLASSES,
            "image_size": a.size, "normalize": "imagenet"}
    batches = [int(b) for b in a.batches.split(",")]
    detector = get_detector("mtcnn", device=str(device))  # shared: both backends see the same detections
    predictors = [Predictor.from_model(model, info, device=device, detector=detector)]
    if not a.no_onnx:
        from lanfer.export import export_model

        opts = None
        if a.threads and device.type == "cpu":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = a.threads  # the same thread count as torch, for a fair comparison
        predictors.append(Predictor.from_onnx(export_model(model, info, a.size), device=device, detector=detector,
                                              session_options=opts))
    rng = np.random.default_rng(0)
    results = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "cpu": platform.processor() or platform.machine(), "image_size": a.size, "classification": [],
               "end_to_end": []}
    if device.type == "cuda":
        results["gpu"] = torch.cuda.get_device_name(device)
    if not a.no_onnx:
        import onnxruntime

        results["onnxruntime"] = onnxruntime.__version__
        results["ort_providers"] = predictors[-1].runner.session.get_providers()
    for p in predictors:
        results["classification"] += classification(p, batches, a.reps, a.warmup, sync, rng)

    if a.photo:
        from PIL import Image

        image, photo = np.array(Image.open(a.photo).convert("RGB")), a.photo
    else:
        image, photo = default_photo()
    results["photo"] = {"source": photo, "shape": list(image.shape)}
    for p in predictors:
        results["end_to_end"].append(end_to_end(p, image, a.photo_reps))

    print(f"device {results['device']}{' (' + results.get('gpu', '') + ')' if 'gpu' in results else ''}, "
          f"torch {results['torch']}, {results['threads']} threads, {a.size} px"
          + (f", onnxruntime {results['onnxruntime']} {results['ort_providers'][0]}" if not a.no_onnx else ""))
    print(f"{'backend':8} {'what':11} {'batch':>5} {'batch ms':>9} {'ms/face':>8} {'faces/s':>8}")
    for r in results["classification"]:
        print(f"{r['backend']:8} {r['what']:11} {r['batch']:5d} {r['batch_ms']:9.2f} {r['per_face_ms']:8.2f} "
              f"{r['faces_per_s']:8.1f}")
    print(f"end to end on {photo} {image.shape[1]}x{image.shape[0]} (median of {a.photo_reps}):")
    for r in results["end_to_end"]:
        print(f"  {r['backend']:6} {r['faces']} faces: {r['total_ms']:.0f} ms total = detect {r['detect_ms']:.0f} + "
              f"align/pose {r['align_pose_ms']:.0f} + classify {r['classify_ms']:.0f} ms (+ reading/bookkeeping)")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
