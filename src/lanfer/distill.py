"""Distilling several model files into one: the teachers' soft targets for a training split, and mixing them in.

Issue 22's diagnostic (``benchmarks/logit_ensemble.py``) found that averaging the logits of four second-stage
models gains about 0.8 points at the every-class operating point on FERPlus validation, which no single model
file reached; shipping four models would cost four times the time per face. Knowledge distillation (Hinton et
al. 2015) asks one model to match the ensemble instead:

1. :func:`teacher_targets` runs each teacher over the training split *without augmentation* (the evaluation
   preprocessing each teacher records), averages their raw logits and keeps the softmax of that mean, one row
   per face, keyed by the face's file relative to the dataset root; :func:`save_targets` writes it (``.npz``).
2. A training run with ``loss.distill=FILE`` (weight ``loss.distill_weight`` = w) replaces each training label
   y by ``(1 - w) * y + w * p_teacher`` (:func:`mix_targets`). Cross-entropy to that mixture is exactly
   ``(1 - w) * CE(y) + w * CE(p_teacher)``: the usual distillation loss at temperature 1. With w <= 0.5 the
   mixture's arg-max is still the face's own label, so class-balanced sampling (which balances on the arg-max)
   draws the same faces as without distillation.

The targets are computed once on clean images and reused under augmentation ("offline" distillation): the
expression of a flipped or slightly shifted face is the same, and it keeps training at one forward per image.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .data.base import DataError


def face_key(path: str, root: str | Path | None) -> str:
    """A face's key in a targets file: its path relative to the dataset root (POSIX separators), so a file made
    on one machine applies on another; a path outside the root (an in-memory pseudo-path) is kept as it is."""
    if root is not None:
        try:
            return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def teacher_targets(models: Sequence[str], root: str, split: str = "train", batch_size: int = 64,
                    device: str = "cpu", options: dict | None = None, progress: bool = False) -> dict:
    """Soft targets of the mean of ``models``' logits on a split: ``{"keys", "probs" (N, K), "classes", "models"}``.

    Every teacher must have the same classes and see the same faces in the same order (the split read under
    ``options``, default the majority rule, which is what training reads)."""
    from .evaluate import _open_for_eval, loader_logits

    if len(models) < 1:
        raise ValueError("teacher_targets: give at least one teacher model file")
    opts = {"label_mode": "majority", **(options or {})}
    keys: list[str] | None = None
    classes: list[str] | None = None
    total = None
    for m in models:
        model, info, cfg, _, loader, dev = _open_for_eval(m, None, root, split, None, opts, None, batch_size,
                                                          device, 0)
        if classes is not None and list(info.classes) != classes:
            raise ValueError(f"{m}: classes {list(info.classes)} differ from {models[0]}'s {classes}")
        classes = list(info.classes)
        _, z, metas = loader_logits(model, loader, dev, channels_last=True, progress=progress)  # z (N, K)
        these = [face_key(meta["path"], cfg.data.root) for meta in metas]
        if keys is not None and these != keys:
            raise ValueError(f"{m}: its faces differ from {models[0]}'s (another split, root or label rule)")
        keys = these
        total = z if total is None else total + z
    mean = torch.from_numpy(total / len(models))  # (N, K)
    return {"keys": keys, "probs": mean.softmax(dim=1).numpy().astype(np.float32), "classes": classes,
            "models": [str(m) for m in models]}


def save_targets(targets: dict, path: str | Path) -> Path:
    """Write :func:`teacher_targets`' result as an ``.npz`` (strings as unicode arrays: no pickle on reading)."""
    from .io import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, keys=np.asarray(targets["keys"], dtype=str), probs=np.asarray(targets["probs"], np.float32),
                     classes=np.asarray(targets["classes"], dtype=str), models=np.asarray(targets["models"], dtype=str))

    atomic_write(path, write)
    return path


def load_targets(path: str | Path) -> dict:
    """Read a targets file written by :func:`save_targets`, checking its shape; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"loss.distill={str(path)!r}: no such file; make it with "
                        "`python scripts/teacher_targets.py TEACHER.safetensors ... --root DATA --out FILE.npz`")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys, probs, classes = [str(k) for k in z["keys"]], np.asarray(z["probs"], np.float32), [str(c) for c in z["classes"]]
            models = [str(m) for m in z["models"]] if "models" in z else []
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: not a teacher targets file ({e}); make it with scripts/teacher_targets.py") from None
    if probs.ndim != 2 or probs.shape != (len(keys), len(classes)):
        raise DataError(f"{path}: probs has shape {probs.shape}, expected ({len(keys)}, {len(classes)})")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1, atol=1e-3):
        raise DataError(f"{path}: probs rows must be finite, non-negative and sum to 1")
    return {"keys": keys, "probs": probs, "classes": classes, "models": models}


def mix_targets(dataset, targets: dict, weight: float, root: str | Path | None) -> int:
    """Replace each sample's label of ``dataset`` by ``(1 - weight) * label + weight * teacher``, in place.

    Refuses a class list that differs from the dataset's and faces the file does not hold (naming a few, with
    the fix); returns the number of samples changed."""
    if not 0 < weight <= 1:
        raise ValueError(f"loss.distill_weight={weight} must be in (0, 1]")
    classes = list(dataset.classes)
    if targets["classes"] != classes:
        raise DataError(f"teacher targets are over classes {targets['classes']} but the training data has {classes}")
    row = {k: i for i, k in enumerate(targets["keys"])}
    keys = [face_key(s.path, root) for s in dataset.samples]
    missing = [s.path for s, key in zip(dataset.samples, keys) if key not in row]
    if missing:
        raise DataError(f"the teacher targets file holds no row for {len(missing)} of the {len(dataset.samples)} "
                        f"training faces (e.g. {', '.join(missing[:3])}); make it from the same dataset root, "
                        "split and label rule as this run's training data")
    k = len(classes)
    mixed = []
    for s, key in zip(dataset.samples, keys):
        y = np.zeros(k, np.float32)
        if isinstance(s.label, int):
            y[s.label] = 1.0
        else:
            y[:] = np.asarray(s.label, np.float32)
        p = targets["probs"][row[key]]
        mixed.append(dataclasses.replace(s, label=((1 - weight) * y + weight * p).tolist()))
    dataset.samples = mixed
    return len(mixed)
