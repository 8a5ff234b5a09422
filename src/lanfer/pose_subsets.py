"""Pose subsets: lists of the test images whose head yaw exceeds 30 or 45 degrees (Pose-RAF-DB & co.).

The paper evaluates on RAN's pose subsets (Wang et al. 2020): the test images with ``|yaw| > 30`` and
``> 45`` degrees. :func:`write_pose_subsets` rebuilds such lists for any dataset: it reads the yaw from the
dataset's metadata when the dataset knows it (KDEF views, the synthetic set) and otherwise detects the face
(MTCNN by default), fits the head pose to its five landmarks (:func:`lanfer.faces.estimate_pose`) and keeps
the images above each threshold. The lists use RAN's line format ``<label>/<filename>`` (0-based class index),
so they can be passed back as ``data.subset`` to evaluate on the subset.

Our yaw comes from a generic-face fit, not RAN's pose estimator, so the lists approximate RAN's; the
per-image table written next to them (``pose_yaw_<name>.csv``) records every yaw and where it came from.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .data.base import FERDataset
from .faces import FaceDetector, estimate_pose, get_detector
from .io import atomic_write

# FER crops are tight (often the face touches the border) and some are tiny (48x48): MTCNN finds faces more
# reliably with context around them and at least this many pixels on the shorter side.
_DETECT_MIN_SIDE = 160
_DETECT_PAD = 0.25  # fraction of each side added as black border before detection
_DETECT_BATCH = 16
# The detector stays MTCNN here although lanfer's default is BlazeFace: the yaw comes from a fit of all five
# landmarks, and BlazeFace's mouth corners are not detected but placed about its mouth centre along its eye line
# (lanfer.faces.blazeface.five_points), so they carry no yaw of their own; its keypoints are also coarser (README,
# Face detectors: a median 0.09-0.12 inter-ocular distances from MTCNN's on the face-api faces), and on a face
# that fills the picture, as in FER crops, it needs its second look. On the 22 face-api faces the yaw through
# BlazeFace is a median 4 degrees from MTCNN's, but 20 and 58 degrees off on two of them (-33 vs -13, -85 vs -27:
# python scripts/face_api_photos.py with and without --detector mtcnn), enough to move a face across the 30 and 45
# degree thresholds. The Pose-30/45 lists and every Pose-30/45 number in the README were made with MTCNN;
# --detector blazeface (detector="blazeface") gives other lists.
POSE_DETECTOR = "mtcnn"
# Options for detectors built here by name: in a FER crop, upscaled as above, the face spans at least half
# the shorter side, so MTCNN's pyramid can start at 80-px faces (several times faster than its default 20).
_DETECTOR_OPTIONS = {"mtcnn": {"min_face_size": _DETECT_MIN_SIDE // 2}}


@dataclass
class PoseSubsets:
    """What :func:`write_pose_subsets` wrote.

    Attributes:
        counts: threshold (degrees) -> number of images with ``|yaw| > threshold``.
        total: images in the dataset split.
        from_meta: images whose yaw came from the dataset's metadata.
        detected: images whose yaw was estimated from detected landmarks.
        no_face: images where the detector found no face (left out of every list).
        unreadable: images that could not be decoded (only with ``skip_bad``; left out of every list).
        files: threshold -> list file path.
        table: the per-image CSV (path, entry, label, yaw, pitch, roll, source, face_score).
    """

    counts: dict[float, int]
    total: int
    from_meta: int = 0
    detected: int = 0
    no_face: int = 0
    unreadable: int = 0
    files: dict[float, str] = field(default_factory=dict)
    table: str = ""

    def summary(self) -> str:
        lines = [f"{self.total} images: yaw from metadata {self.from_meta}, from landmarks {self.detected}, "
                 f"no face found {self.no_face}" + (f", unreadable {self.unreadable}" if self.unreadable else "")]
        for t, n in self.counts.items():
            lines.append(f"|yaw| > {_fmt(t)}: {n} images -> {self.files[t]}")
        lines.append(f"per-image yaw table: {self.table}")
        return "\n".join(lines)


def _fmt(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else str(t)


def _meta_yaw(meta: dict[str, Any]) -> float | None:
    value = meta.get("yaw")
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return None
    try:
        yaw = float(value)
    except (TypeError, ValueError):
        return None
    return yaw if math.isfinite(yaw) else None


def _class_index(label: Any) -> int:
    if isinstance(label, (list, tuple, np.ndarray)):
        return int(np.argmax(label))  # soft labels: the list names the majority class
    return int(label)


def _for_detection(image) -> np.ndarray:
    """Upscale small crops and pad them so that a face filling the crop is still found."""
    from PIL import Image

    image = image.convert("RGB")
    short = min(image.size)
    if short < _DETECT_MIN_SIDE:
        f = _DETECT_MIN_SIDE / short
        image = image.resize((round(image.width * f), round(image.height * f)), Image.Resampling.BILINEAR)
    arr = np.asarray(image)
    py, px = round(arr.shape[0] * _DETECT_PAD), round(arr.shape[1] * _DETECT_PAD)
    return np.pad(arr, ((py, py), (px, px), (0, 0)))


def write_pose_subsets(dataset: FERDataset, out_dir: str | Path, thresholds: Sequence[float] = (30, 45),
                       detector: FaceDetector | str | None = None, use_meta_yaw: bool = True,
                       name: str | None = None, device: str = "cpu", progress: bool = True) -> PoseSubsets:
    """Write ``lanfer_pose_<t>_<name>_list.txt`` for each threshold ``t`` and a per-image yaw table.

    Args:
        dataset: a lanfer dataset (its ``samples`` give paths, labels and metadata).
        out_dir: folder for the list files (created).
        thresholds: yaw thresholds in degrees; an image is listed when ``|yaw| > t``.
        detector: a :class:`~lanfer.faces.FaceDetector`, or a registered detector name; ``None`` means
            :data:`POSE_DETECTOR` (MTCNN, for its five detected landmarks: see the comment there). Built only
            when some image has no metadata yaw.
        use_meta_yaw: take the yaw from sample metadata ``"yaw"`` when present (else always detect).
        name: the ``<name>`` in file names (default: ``dataset.name``).
        device: device for a detector built here by name.
        progress: show a progress bar.
    Returns:
        :class:`PoseSubsets` with the counts and file paths.
    """
    thresholds = sorted({float(t) for t in thresholds})
    if not thresholds or any(not 0 <= t < 180 for t in thresholds):
        raise ValueError(f"thresholds must be degrees in [0, 180), got {thresholds}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = name or dataset.name
    n = len(dataset.samples)
    yaw = np.full(n, np.nan)
    pitch = np.full(n, np.nan)
    roll = np.full(n, np.nan)
    score = np.full(n, np.nan)
    source = ["none"] * n
    result = PoseSubsets(counts={}, total=n)

    todo = []
    for i, s in enumerate(dataset.samples):
        y = _meta_yaw(s.meta) if use_meta_yaw else None
        if y is None:
            todo.append(i)
        else:
            yaw[i], source[i] = y, "meta"
            result.from_meta += 1

    if todo:
        if detector is None or isinstance(detector, str):
            det_name = detector or POSE_DETECTOR
            det = get_detector(det_name, device=device, **_DETECTOR_OPTIONS.get(det_name, {}))
        else:
            det = detector
        bar = None
        if progress:
            from .progress import progress_bar
            bar = progress_bar(total=len(todo), desc=f"pose {name}", unit="img")
        for start in range(0, len(todo), _DETECT_BATCH):
            chunk, images = [], []
            for i in todo[start:start + _DETECT_BATCH]:
                image = dataset.load_checked(i)  # raises naming the file, unless skip_bad (then recorded)
                if image is None:
                    source[i] = "unreadable"
                    result.unreadable += 1
                    continue
                images.append(_for_detection(image))
                chunk.append(i)
            for i, faces in zip(chunk, det.detect(images)):
                if not faces:
                    result.no_face += 1
                    continue
                face = faces[0]  # largest face: the dataset's subject
                yaw[i], pitch[i], roll[i] = estimate_pose(face.landmarks)
                score[i], source[i] = face.score, getattr(det, "name", None) or type(det).__name__
                result.detected += 1
            if bar is not None:
                bar.update(len(todo[start:start + _DETECT_BATCH]))
        if bar is not None:
            bar.close()

    entries = [f"{_class_index(s.label)}/{Path(s.path).name}" for s in dataset.samples]
    for t in thresholds:
        keep = [e for e, y in zip(entries, yaw) if np.isfinite(y) and abs(y) > t]
        # "lanfer_" prefix: never mistaken for (or overwriting) RAN's published pose_30_ferplus_list.txt etc.
        path = out / f"lanfer_pose_{_fmt(t)}_{name}_list.txt"
        atomic_write(path, lambda tmp, keep=keep: tmp.write_text("".join(line + "\n" for line in keep)))
        result.counts[t] = len(keep)
        result.files[t] = str(path)

    def write_table(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "entry", "label", "yaw", "pitch", "roll", "source", "face_score"])
            for i, s in enumerate(dataset.samples):
                w.writerow([s.path, entries[i], _class_index(s.label)]
                           + ["" if not np.isfinite(v) else f"{v:.2f}" for v in (yaw[i], pitch[i], roll[i])]
                           + [source[i], "" if not np.isfinite(score[i]) else f"{score[i]:.4f}"])

    table = atomic_write(out / f"pose_yaw_{name}.csv", write_table)
    result.table = str(table)
    return result


def run_pose_subsets(config: str | Path, out_dir: str | Path, thresholds: Sequence[float] = (30, 45),
                     split: str = "test", overrides: list[str] | None = None, detector: str = POSE_DETECTOR,
                     device: str = "cpu", use_meta_yaw: bool = True, name: str | None = None,
                     progress: bool = True) -> PoseSubsets:
    """``lanfer pose-subsets``: build the dataset described by a lanfer YAML config and write its pose lists.

    The dataset is ``build_dataset_from_config(cfg.data, split)``: PIL images, no subset (the lists written
    here are the subsets).
    """
    from .config import load_config
    from .data import build_dataset_from_config

    cfg = load_config(config, overrides)
    dataset = build_dataset_from_config(cfg.data, split)
    name = name or (cfg.data.name if split == "test" else f"{cfg.data.name}_{split}")
    return write_pose_subsets(dataset, out_dir, thresholds, detector=detector, use_meta_yaw=use_meta_yaw,
                              name=name, device=device, progress=progress)
