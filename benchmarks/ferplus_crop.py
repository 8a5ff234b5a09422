"""Where does a FERPlus face sit in its 48x48 frame, and does `lanfer predict` cut photos the same way?

FER2013's faces are loose crops, not five-point aligned ones. A model trained on them must be given the same
framing at prediction, so its record carries a :class:`lanfer.info.FaceCrop` (ArcFace's template shrunk by a
margin and moved by a vertical shift). This script measures both halves:

``--fit``: detect the five landmarks (MTCNN) on FERPlus validation faces (never test), and fit
    u - 0.5 = k (a - 0.5) + (s_x, s_y) by least squares, where u are landmarks as fractions of the frame and a
    ArcFace's template as fractions of its crop; prints margin = (1/k - 1)/2 and shift_y = s_y as the FaceCrop.
``--model FILE|NAME``: FERPlus test accuracy of a model on the dataset's own crops against the full prediction
    path on the same 48x48 files (detect with ``--detector``, align with the model's FaceCrop, grayscale,
    classify), on the faces the detector finds; they should agree within a couple of points, or the crop is wrong.

    python benchmarks/ferplus_crop.py --root PATH/FERPlus --fit
    python benchmarks/ferplus_crop.py --root PATH/FERPlus --model src/lanfer/weights/lan_resnet18_ferplus.safetensors
    python benchmarks/ferplus_crop.py --root PATH/FERPlus --model ... --crop '{"margin": 0.1}'   # another framing
    python benchmarks/ferplus_crop.py --root PATH/FERPlus --model lan_mobilenet_vggface2_ferplus --detector mtcnn
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time

import numpy as np
import torch
from PIL import Image


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def fit(root: str, n: int, seed: int) -> dict:
    from lanfer.data import build_dataset
    from lanfer.faces import get_detector
    from lanfer.faces.align import ARCFACE_SIZE, ARCFACE_TEMPLATE

    ds = build_dataset("ferplus", root, "val")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(ds), size=min(n, len(ds)), replace=False)
    det = get_detector("mtcnn")
    pts = []
    for i in picks:
        img = np.asarray(Image.open(ds.samples[i].path).convert("RGB"))  # (48, 48, 3)
        faces = det.detect([img])[0]
        if faces:
            best = max(faces, key=lambda f: f.score)
            pts.append(np.asarray(best.landmarks, dtype=np.float64) / img.shape[1])  # (5, 2) fractions
    u = np.stack(pts)  # (N, 5, 2)
    a = ARCFACE_TEMPLATE / ARCFACE_SIZE  # (5, 2)
    # unknowns k, s_x, s_y: rows for x and y of every point
    ax = np.broadcast_to(a - 0.5, u.shape)
    rows = np.concatenate([np.stack([ax[..., 0].ravel(), np.ones(ax[..., 0].size), np.zeros(ax[..., 0].size)], 1),
                           np.stack([ax[..., 1].ravel(), np.zeros(ax[..., 1].size), np.ones(ax[..., 1].size)], 1)])
    rhs = np.concatenate([(u[..., 0] - 0.5).ravel(), (u[..., 1] - 0.5).ravel()])
    (k, sx, sy), *_ = np.linalg.lstsq(rows, rhs, rcond=None)
    resid = rhs - rows @ np.array([k, sx, sy])
    return {"kind": "template", "margin": round(float((1 / k - 1) / 2), 4), "shift_y": round(float(sy), 4),
            "like": "ferplus", "_fit": {"faces": len(pts), "of": len(picks), "k": float(k), "shift_x": float(sx),
                                        "rms_residual_of_side": float(np.sqrt((resid ** 2).mean()))}}


def compare(root: str, model_path: str, limit: int | None, batch: int, crop: dict | None = None,
            detector: str | None = None) -> dict:
    from lanfer.data import EvalPreset, build_dataset
    from lanfer.faces import DEFAULT_DETECTOR
    from lanfer.model import load_model
    from lanfer.predict import Predictor
    from lanfer.pretrained import resolve

    detector = detector or DEFAULT_DETECTOR
    model_path = str(resolve(model_path))  # a shipped model's name or a file
    model, info = load_model(model_path)
    ds = build_dataset("ferplus", root, "test", transform=EvalPreset.from_info(info))
    idx = list(range(len(ds)))[:limit]
    # the dataset's own crops
    preds = []
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            x = torch.stack([ds[i][0] for i in idx[s:s + batch]])
            preds += model(x).argmax(1).tolist()
    truth = [ds.samples[i].label for i in idx]
    direct = np.array(preds) == np.array(truth)
    # the prediction path on the same files
    p = Predictor.from_checkpoint(model_path, device="cpu", detector=detector)
    if crop is not None:  # another framing than the model's record, to see what the crop is worth
        from lanfer.info import FaceCrop

        p.crop = FaceCrop(**crop)
    t0 = time.perf_counter()
    table = p.predict([ds.samples[i].path for i in idx], batch_size=batch, progress=False)
    dt = time.perf_counter() - t0
    by_file: dict[str, str] = {}
    for _, row in table.iterrows():
        if isinstance(row.get("label"), str) and row["label"] and row["source"] not in by_file:
            by_file[row["source"]] = row["label"]
    found = [k for k, i in enumerate(idx) if ds.samples[i].path in by_file]
    via = np.array([by_file[ds.samples[idx[k]].path] == info.classes[truth[k]] for k in found])
    return {"images": len(idx), "dataset_crop_accuracy": float(direct.mean()),
            "faces_found": len(found), "dataset_crop_accuracy_on_found": float(direct[found].mean()),
            "predict_path_accuracy_on_found": float(via.mean()), "predict_seconds": round(dt, 1),
            "crop": p.crop.__dict__, "detector": detector, "model": model_path}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="the FERPlus folder (FER2013Train|Valid|Test + label files)")
    ap.add_argument("--fit", action="store_true", help="fit the FaceCrop on validation faces")
    ap.add_argument("--model", help="a FERPlus model file to compare dataset crops with the prediction path")
    ap.add_argument("--n", type=int, default=600, help="validation faces for --fit (default 600)")
    ap.add_argument("--limit", type=int, default=None, help="test images for --model (default all)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop", help="with --model: cut faces with this FaceCrop (JSON) instead of the model's")
    ap.add_argument("--detector", default=None, help="with --model: the face detector of the prediction path "
                    "(default: lanfer's default, blazeface; or mtcnn)")
    ap.add_argument("--out", help="with --model: also write the result to this JSON file")
    a = ap.parse_args()
    print(f"cpu: {cpu_model()}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    if a.fit:
        print(json.dumps(fit(a.root, a.n, a.seed), indent=1))
    if a.model:
        crop = json.loads(a.crop) if a.crop else None
        result = compare(a.root, a.model, a.limit, a.batch, crop, a.detector)
        result.update(cpu=cpu_model(), torch=torch.__version__, threads=torch.get_num_threads())
        print(json.dumps(result, indent=1))
        if a.out:
            with open(a.out, "w") as f:
                f.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
