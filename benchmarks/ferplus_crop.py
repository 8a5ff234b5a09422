"""Where does a FERPlus face sit in its 48x48 frame, and does `lanfer predict` cut photos the same way?

FER2013's faces are loose crops, not five-point aligned ones. A model trained on them must be given the same
framing at prediction, so its record carries a :class:`lanfer.info.FaceCrop` (ArcFace's template shrunk by a
margin and moved by a vertical shift). This script measures both halves:

``--fit``: detect the five landmarks (MTCNN) on FERPlus validation faces (never test), and fit
    u - 0.5 = k (a - 0.5) + (s_x, s_y) by least squares, where u are landmarks as fractions of the frame and a
    ArcFace's template as fractions of its crop; prints margin = (1/k - 1)/2 and shift_y = s_y as the FaceCrop.
``--fit-detector blazeface``: the same validation faces through MTCNN and BlazeFace: fit BlazeFace's
    ``MTCNN_CORRECTION`` (:func:`lanfer.faces.blazeface.fit_correction`: per-point offsets in each face's eye
    frame, least squares, moving BlazeFace's five points where MTCNN's are, so that a FaceCrop fitted on MTCNN's
    landmarks frames BlazeFace's faces alike), and print the residuals and how BlazeFace's crop sits against
    MTCNN's before and after (in the sample, and fitted on one half and measured on the other).
``--model FILE|NAME``: FERPlus test (``--split``) accuracy of a model on the dataset's own crops against the full
    prediction path on the same 48x48 files (detect with ``--detector``, align with the model's FaceCrop, grayscale,
    classify), on the faces the detector finds; they should agree within a couple of points, or the crop is wrong.
    Both paths classify at the same operating point (``--prior-tau``, default 0: the plain classifier), so that
    the difference is the crop's alone. ``--split val`` scores the prediction path on validation, to choose
    between models by how they take a detector's framing (the test split is for the final setting).

    python benchmarks/ferplus_crop.py --root PATH/FERPlus --fit
    python benchmarks/ferplus_crop.py --root PATH/FERPlus --fit-detector blazeface --n 2000 --out fit.json
    python benchmarks/ferplus_crop.py --root PATH/FERPlus --model src/lanfer/weights/lan_resnet18_ferplus.safetensors
    python benchmarks/ferplus_crop.py --root PATH/FERPlus --model ... --crop '{"margin": 0.1}'   # another framing
    python benchmarks/ferplus_crop.py --root PATH/FERPlus --model lan_mobilenet_vggface2_ferplus --detector mtcnn \
        --per-file mtcnn.csv
    python benchmarks/ferplus_crop.py --common mtcnn.csv blazeface.csv   # both detectors on the same faces
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import time
from pathlib import Path

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


def _best(faces):
    return max(faces, key=lambda f: f.score) if faces else None


def _crop_against(points: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """How the ArcFace-template crop cut from ``points`` (N, 5, 2) sits against the one cut from ``ref``: per
    face its scale (log), rotation (degrees) and the shift of its centre (fractions of the side), (N, 4)."""
    from lanfer.faces.align import alignment_matrix, invert_affine

    out = []
    for p, r in zip(points, ref):
        inv = invert_affine(alignment_matrix(r, 1, 0.0))  # the reference's crop -> image
        m = alignment_matrix(p, 1, 0.0)
        d = m[:, :2] @ inv[:, :2]  # (2, 2): the reference's crop -> this crop
        centre = d @ [0.5, 0.5] + m[:, :2] @ inv[:, 2] + m[:, 2] - 0.5
        out.append((0.5 * np.log(np.linalg.det(d)), np.degrees(np.arctan2(d[1, 0], d[0, 0])), *centre))
    return np.array(out)


def _residuals(points: np.ndarray, ref: np.ndarray) -> dict:
    """Per landmark: mean residual (x, y) and rms distance, in the reference's inter-ocular distances; and the
    crop of ``points`` against the reference's."""
    iod = np.linalg.norm(ref[:, 1] - ref[:, 0], axis=1)[:, None, None]  # (N, 1, 1)
    r = (points - ref) / iod  # (N, 5, 2)
    c = _crop_against(points, ref)
    q = lambda v: [round(float(x), 4) for x in np.quantile(v, [0.25, 0.5, 0.75])]  # noqa: E731
    return {"mean_residual_xy": np.round(r.mean(0), 3).tolist(),
            "rms_distance": np.round(np.sqrt((r ** 2).sum(2).mean(0)), 3).tolist(),
            "median_distance": np.round(np.median(np.linalg.norm(r, axis=2), 0), 3).tolist(),
            "crop_log_scale_q25_50_75": q(c[:, 0]), "crop_rotation_deg_median": round(float(np.median(c[:, 1])), 2),
            "crop_shift_x_median": round(float(np.median(c[:, 2])), 4),
            "crop_shift_y_median": round(float(np.median(c[:, 3])), 4)}


def fit_detector(root: str, name: str, n: int, seed: int) -> dict:
    """Fit BlazeFace's MTCNN_CORRECTION on validation faces both detectors find (the same picks as ``--fit``)."""
    from lanfer.data import build_dataset
    from lanfer.faces import get_detector
    from lanfer.faces.blazeface import MTCNN_CORRECTION, fit_correction, five_points
    from lanfer.progress import progress_bar

    if name != "blazeface":
        raise SystemExit(f"--fit-detector: only blazeface has a correction to MTCNN's landmarks, not {name!r}")
    ds = build_dataset("ferplus", root, "val")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(ds), size=min(n, len(ds)), replace=False)
    mtcnn, blaze = get_detector("mtcnn"), get_detector("blazeface")
    ref, kps, apart = [], [], 0
    for i in progress_bar(picks.tolist(), desc="val faces", unit="face"):
        img = np.asarray(Image.open(ds.samples[i].path).convert("RGB"))  # (48, 48, 3)
        m, b = _best(mtcnn.detect([img])[0]), _best(blaze.detect([img])[0])
        if m is None or b is None:
            continue
        centre = lambda f: (np.asarray(f.box[:2]) + f.box[2:]) / 2  # noqa: E731
        if np.linalg.norm(centre(m) - centre(b)) > 0.5 * m.width:  # two different faces
            apart += 1
            continue
        ref.append(m.landmarks / img.shape[1])  # fractions of the frame: the correction is scale-free
        kps.append(b.keypoints / img.shape[1])
    ref, kps = np.stack(ref), np.stack(kps)  # (N, 5, 2), (N, 6, 2)
    correction = fit_correction(kps, ref)
    plain = np.stack([five_points(k, None) for k in kps])
    # the alternative, one scale and shift of the frame for every point: u_b - 0.5 = alpha (u_m - 0.5) + beta
    um, ub = ref - 0.5, plain - 0.5  # (N, 5, 2)
    rows = np.zeros((um.size, 3))
    rows[:, 0], rows[0::2, 1], rows[1::2, 2] = um.ravel(), 1.0, 1.0  # x and y of each point interleaved
    (alpha, bx, by), *_ = np.linalg.lstsq(rows, ub.ravel(), rcond=None)
    frame_resid = (ub.ravel() - rows @ [alpha, bx, by]).reshape(um.shape)  # (N, 5, 2) fractions of the frame
    half = np.random.default_rng(seed + 1).permutation(len(ref))
    a, b = half[:len(ref) // 2], half[len(ref) // 2:]
    held = np.empty_like(plain)
    for fit_on, test_on in ((a, b), (b, a)):
        c = fit_correction(kps[fit_on], ref[fit_on])
        held[test_on] = [five_points(k, c) for k in kps[test_on]]
    return {"detector": name, "reference": "mtcnn", "faces": len(ref), "of": len(picks), "different_faces": int(apart),
            "seed": seed, "correction": np.round(correction, 4).tolist(),
            "shipped_correction": MTCNN_CORRECTION.tolist(),
            "units": "residuals in the reference's inter-ocular distances; crop of the ArcFace template (margin 0) "
                     "cut from BlazeFace's points against MTCNN's: log scale (> 0: tighter), centre shift in "
                     "fractions of the side",
            "before": _residuals(plain, ref),
            "after_in_sample": _residuals(np.stack([five_points(k, correction) for k in kps]), ref),
            "after_held_out_halves": _residuals(held, ref),
            "frame_map": {"alpha": round(float(alpha), 4), "beta": [round(float(bx), 4), round(float(by), 4)],
                          "mean_residual_xy_of_frame": np.round(frame_resid.mean(0), 4).tolist(),
                          "rms_residual_of_frame": round(float(np.sqrt((frame_resid ** 2).mean())), 4)}}


def compare(root: str, model_path: str, limit: int | None, batch: int, crop: dict | None = None,
            detector: str | None = None, prior_tau: float | None = 0.0, per_file: str | None = None,
            detector_options: dict | None = None, split: str = "test") -> dict:
    from lanfer.calibration import probabilities
    from lanfer.data import EvalPreset, build_dataset
    from lanfer.faces import DEFAULT_DETECTOR, get_detector
    from lanfer.model import load_model
    from lanfer.predict import Predictor
    from lanfer.pretrained import resolve

    detector = detector or DEFAULT_DETECTOR
    model_path = str(resolve(model_path))  # a shipped model's name or a file
    model, info = load_model(model_path)
    ds = build_dataset("ferplus", root, split, transform=EvalPreset.from_info(info))
    idx = list(range(len(ds)))[:limit]
    # the dataset's own crops
    preds = []
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            x = torch.stack([ds[i][0] for i in idx[s:s + batch]])
            preds += probabilities(model(x), info, prior_tau).argmax(1).tolist()  # the predictor's operating point
    truth = [ds.samples[i].label for i in idx]
    direct = np.array(preds) == np.array(truth)
    # the prediction path on the same files
    det = get_detector(detector, **detector_options) if detector_options else detector  # by name: as predict builds it
    p = Predictor.from_checkpoint(model_path, device="cpu", detector=det, prior_tau=prior_tau)
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
    if per_file:  # one row per image: its label and both paths' classes (predict_path -1: no face found)
        with open(per_file, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file", "label", "dataset_crop", "predict_path"])
            for k, i in enumerate(idx):
                label = by_file.get(ds.samples[i].path)
                w.writerow([Path(ds.samples[i].path).name, truth[k], preds[k],
                            info.classes.index(label) if label is not None else -1])
    return {"images": len(idx), "dataset_crop_accuracy": float(direct.mean()),
            "faces_found": len(found), "dataset_crop_accuracy_on_found": float(direct[found].mean()),
            "predict_path_accuracy_on_found": float(via.mean()), "predict_seconds": round(dt, 1),
            "crop": p.crop.__dict__, "detector": detector, "detector_options": detector_options or {},
            "prior_tau": p.prior_tau, "model": model_path, "split": split}


def common(paths: list[str]) -> dict:
    """Both paths' accuracies of several ``--per-file`` records on the images every one of them found a face in."""
    rows = {}
    for path in paths:
        with open(path, newline="") as f:
            rows[path] = {r["file"]: r for r in csv.DictReader(f)}
    files = set.intersection(*({k for k, r in v.items() if r["predict_path"] != "-1"} for v in rows.values()))
    if not files:
        raise SystemExit(f"no image has a face in every one of {', '.join(paths)}")
    out: dict = {"faces": len(files)}
    for path, by_file in rows.items():
        picked = [by_file[k] for k in files]
        out[path] = {c: round(100 * sum(r[c] == r["label"] for r in picked) / len(picked), 2)
                     for c in ("dataset_crop", "predict_path")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", help="the FERPlus folder (FER2013Train|Valid|Test + label files); all but --common")
    ap.add_argument("--fit", action="store_true", help="fit the FaceCrop on validation faces")
    ap.add_argument("--fit-detector", choices=["blazeface"], help="fit this detector's correction to MTCNN's "
                    "landmarks on validation faces (the constants of lanfer.faces.blazeface.MTCNN_CORRECTION)")
    ap.add_argument("--model", help="a FERPlus model file to compare dataset crops with the prediction path")
    ap.add_argument("--n", type=int, default=600, help="validation faces for --fit and --fit-detector (default 600)")
    ap.add_argument("--limit", type=int, default=None, help="images for --model (default all)")
    ap.add_argument("--split", default="test", choices=["train", "val", "test"],
                    help="with --model: the FERPlus split to compare on (default test; val to choose between models)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--crop", help="with --model: cut faces with this FaceCrop (JSON) instead of the model's")
    ap.add_argument("--detector", default=None, help="with --model: the face detector of the prediction path "
                    "(default: lanfer's default, blazeface; or mtcnn)")
    ap.add_argument("--detector-options", help="with --model: keyword arguments of the detector (JSON), e.g. "
                    "'{\"correction\": null}' for BlazeFace's landmarks without the correction to MTCNN's")
    ap.add_argument("--prior-tau", type=float, default=0.0, help="with --model: the operating point both paths "
                    "classify at (default 0, the plain classifier; the model's own is its record's prior_tau)")
    ap.add_argument("--per-file", help="with --model: write each image's label and both paths' classes to this CSV")
    ap.add_argument("--common", nargs="+", metavar="CSV", help="accuracies of these --per-file records on the "
                    "images all of them found a face in (to compare detectors on the same faces)")
    ap.add_argument("--out", help="with --model or --fit-detector: also write the result to this JSON file")
    a = ap.parse_args()
    if a.out and a.model and a.fit_detector:
        ap.error("--out takes the result of one of --model and --fit-detector; run them one at a time")
    if a.common:
        print(json.dumps(common(a.common), indent=1))
        return
    if not a.root:
        ap.error("--root is required (the FERPlus folder)")
    print(f"cpu: {cpu_model()}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    if a.fit:
        print(json.dumps(fit(a.root, a.n, a.seed), indent=1))
    if a.fit_detector:
        result = fit_detector(a.root, a.fit_detector, a.n, a.seed)
        result.update(cpu=cpu_model(), torch=torch.__version__)
        print(json.dumps(result, indent=1))
        if a.out:
            with open(a.out, "w") as f:
                f.write(json.dumps(result, indent=1) + "\n")
    if a.model:
        crop = json.loads(a.crop) if a.crop else None
        result = compare(a.root, a.model, a.limit, a.batch, crop, a.detector, a.prior_tau, a.per_file,
                         json.loads(a.detector_options) if a.detector_options else None, a.split)
        result.update(cpu=cpu_model(), torch=torch.__version__, threads=torch.get_num_threads())
        print(json.dumps(result, indent=1))
        if a.out:
            with open(a.out, "w") as f:
                f.write(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
