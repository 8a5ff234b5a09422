"""Evaluation: accuracy, mean per-class accuracy, per-class recall, confusion matrix, the expected calibration
error and its reliability bins, and accuracy grouped by any metadata a dataset provides (view, head-pose bin,
subject ...). Written as ``metrics.json``. Probabilities and labels come from the model's logits through
:func:`lanfer.calibration.probabilities`, at the model file's operating point (or ``prior_tau``)."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader

from .calibration import ECE_BINS, expected_calibration_error, probabilities, reliability, resolve_tau
from .io import atomic_write

# Metadata that identifies an item rather than describing a condition; never grouped by.
_ID_KEYS = {"path", "index", "line", "identity_path", "file"}
YAW_BINS = (0, 15, 30, 45, 60, 91)


def yaw_bin(yaw: float) -> str:
    """|yaw| in degrees -> a bin label such as ``"30-45"`` (the paper's pose subsets cut at 30 and 45)."""
    a = abs(float(yaw))
    for lo, hi in zip(YAW_BINS[:-1], YAW_BINS[1:]):
        if lo <= a < hi:
            return f"{lo}-{min(hi, 90)}"
    return ">90"


def confusion_matrix(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(K, K) counts; rows are true classes, columns predictions."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (targets, preds), 1)
    return cm


def summarize(targets: np.ndarray, preds: np.ndarray, classes: list[str],
              metas: list[dict[str, Any]] | None = None, group_by: Iterable[str] | None = None) -> dict:
    """Metrics from true and predicted class indices (and per-item metadata for grouped accuracy)."""
    targets = np.asarray(targets, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    k = len(classes)
    cm = confusion_matrix(targets, preds, k)
    support = cm.sum(axis=1)
    recall = np.where(support > 0, np.diag(cm) / np.maximum(support, 1), np.nan)
    out: dict[str, Any] = {
        "n": int(len(targets)),
        "accuracy": float((targets == preds).mean()) if len(targets) else float("nan"),
        "mean_class_accuracy": float(np.nanmean(recall)) if np.any(support > 0) else float("nan"),
        "per_class_recall": {c: (None if np.isnan(r) else float(r)) for c, r in zip(classes, recall)},
        "support": {c: int(s) for c, s in zip(classes, support)},
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }
    if metas:
        out["by"] = grouped_accuracy(targets, preds, metas, group_by)
    return out


def grouped_accuracy(targets, preds, metas, group_by=None) -> dict[str, dict[str, dict]]:
    """Accuracy per value of each metadata key. Keys default to every categorical key with 2..50 values;
    a numeric ``yaw`` also gives ``abs_yaw`` bins."""
    correct = np.asarray(targets) == np.asarray(preds)
    if group_by is None:
        keys = []
        for key in sorted({k for m in metas for k in m}):
            if key in _ID_KEYS:
                continue
            vals = {m.get(key) for m in metas}
            if all(isinstance(v, (str, int, bool)) or v is None for v in vals) and 2 <= len(vals) <= 50:
                keys.append(key)
        if any(isinstance(m.get("yaw"), (int, float)) for m in metas):
            keys.append("abs_yaw")
    else:
        keys = list(group_by)
    result: dict[str, dict[str, dict]] = {}
    for key in keys:
        acc: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for ok, m in zip(correct, metas):
            if key == "abs_yaw":
                if not isinstance(m.get("yaw"), (int, float)):
                    continue
                v = yaw_bin(m["yaw"])
            else:
                if key not in m:
                    continue
                v = str(m[key])
            acc[v][0] += int(ok)
            acc[v][1] += 1
        result[key] = {v: {"accuracy": c / n, "n": n} for v, (c, n) in sorted(acc.items(), key=_natural)}
    return result


def _natural(item):
    v = item[0]
    try:
        return (0, float(v.split("-")[0]), v)
    except ValueError:
        return (1, 0.0, v)


#: Test-time augmentation of :func:`loader_logits`: ``none``, or ``flip`` (the mean of the logits of each image and
#: its mirror image). Measured on FER2013Valid with the shipped model it changed nothing that a paired test can
#: see (README, "Flip test-time augmentation"), so it is an evaluation option, off by default, not a predictor one.
TTA_MODES = ("none", "flip")


def check_tta(tta: str) -> str:
    if tta not in TTA_MODES:
        raise ValueError(f"tta={tta!r} is not one of {TTA_MODES}: 'flip' averages the logits of each image and its "
                         "mirror image, 'none' evaluates the image as it is")
    return tta


@torch.no_grad()
def loader_logits(model: torch.nn.Module, loader: DataLoader, device: torch.device | str = "cpu",
                  channels_last: bool = False, progress: bool = False, precision: str = "fp32", tta: str = "none"):
    """Run ``model`` over a loader of ``(images, labels, metas)``; returns (targets (N,), logits (N, K) float32,
    metas). Soft labels count as their most-voted class.

    ``precision`` (``fp32``, ``bf16``, ``fp16``) is the autocast of :mod:`lanfer.precision`; training evaluates
    in its own precision. ``tta="flip"`` returns the mean of the logits of each image and its mirror image: logits,
    not probabilities, so a model's temperature and prior adjustment apply to the average as they do to one view."""
    from .precision import autocast
    from .progress import progress_bar

    check_tta(tta)
    model.eval()
    targets, logits, metas = [], [], []
    for images, labels, meta in progress_bar(loader, desc="eval", enabled=progress, leave=False):
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(precision, torch.device(device)):
            z = model(images).float()  # (B, K)
            if tta == "flip":  # images are (B, C, H, W): the last axis is x
                z = (z + model(torch.flip(images, dims=[3])).float()) / 2
            z = z.cpu()
        if labels.ndim == 2:  # soft labels: evaluate against the most-voted class
            labels = labels.argmax(dim=1)
        targets.append(labels.cpu())
        logits.append(z)
        metas.extend(meta)
    if not targets:
        raise ValueError("evaluation loader yielded no batches")
    return torch.cat(targets).numpy(), torch.cat(logits).numpy(), metas


def predict_loader(model: torch.nn.Module, loader: DataLoader, device: torch.device | str = "cpu",
                   channels_last: bool = False, progress: bool = False, precision: str = "fp32",
                   info=None, prior_tau: float | None = None, tta: str = "none"):
    """Run ``model`` over a loader of ``(images, labels, metas)``; returns (targets, preds, probs, metas).

    Probabilities are :func:`lanfer.calibration.probabilities` of the logits at ``info``'s operating point
    (``prior_tau`` None) or at ``prior_tau``; ``info`` None (a model in training) is the plain softmax. ``tta``:
    see :func:`loader_logits`."""
    targets, logits, metas = loader_logits(model, loader, device, channels_last, progress, precision, tta)
    probs = probabilities(logits, info, prior_tau)  # (N, K)
    return targets, probs.argmax(axis=1), probs, metas


def calibration_summary(targets, probs, info=None, prior_tau: float | None = None, bins: int = ECE_BINS) -> dict:
    """``{"ece", "calibration": {bins, temperature, prior_tau, reliability}}``: the expected calibration error
    of the top-1 confidence (``bins`` equal-width bins) and the bins a reliability diagram draws."""
    return {"ece": expected_calibration_error(probs, targets, bins),
            "calibration": {"bins": bins, "temperature": 1.0 if info is None else info.temperature,
                            "prior_tau": resolve_tau(info, prior_tau),
                            "reliability": reliability(probs, targets, bins)}}


def evaluate(model, loader, classes, device="cpu", group_by=None, channels_last=False, progress=False,
             precision: str = "fp32", info=None, prior_tau: float | None = None, tta: str = "none") -> dict:
    """Evaluate a model on a loader; returns the metrics dict of :func:`summarize` with the expected
    calibration error (:func:`calibration_summary`) at ``info``'s operating point (or ``prior_tau``);
    ``tta``: see :func:`loader_logits`."""
    t, p, probs, metas = predict_loader(model, loader, device, channels_last, progress, precision, info, prior_tau,
                                        tta)
    return {**summarize(t, p, classes, metas, group_by), **calibration_summary(t, probs, info, prior_tau)}


def format_metrics(metrics: dict, title: str = "") -> str:
    """A plain-text table: overall numbers, per-class recall, grouped accuracy, confusion matrix."""
    lines = []
    if title:
        lines.append(title)
    lines.append(f"  images {metrics['n']}   accuracy {100 * metrics['accuracy']:.2f}%   "
                 f"mean class accuracy {100 * metrics['mean_class_accuracy']:.2f}%"
                 + (f"   ECE {100 * metrics['ece']:.2f}%" if "ece" in metrics else ""))
    cal = metrics.get("calibration")
    if cal and (cal["temperature"] != 1 or cal["prior_tau"] != 0):
        lines.append(f"  operating point: temperature {cal['temperature']:.4g}, prior tau {cal['prior_tau']:g}")
    if len(metrics["classes"]) > 12:  # e.g. identity pretraining: a 48x48 table helps nobody in a terminal
        lines.append(f"  ({len(metrics['classes'])} classes: per-class recall and confusion matrix in metrics.json)")
        return "\n".join(lines)
    width = max(len(c) for c in metrics["classes"])
    lines.append("  per-class recall:")
    for c in metrics["classes"]:
        r = metrics["per_class_recall"][c]
        lines.append(f"    {c:<{width}}  {'   n/a' if r is None else f'{100 * r:6.2f}%'}  "
                     f"(n={metrics['support'][c]})")
    for key, groups in (metrics.get("by") or {}).items():
        lines.append(f"  accuracy by {key}:")
        for v, g in groups.items():
            lines.append(f"    {v:<12} {100 * g['accuracy']:6.2f}%  (n={g['n']})")
    cm = metrics["confusion_matrix"]
    short = [c[:5] for c in metrics["classes"]]
    lines.append("  confusion (rows true, columns predicted):")
    lines.append("    " + " " * 6 + "".join(f"{s:>7}" for s in short))
    for s, row in zip(short, cm):
        lines.append(f"    {s:<6}" + "".join(f"{v:>7d}" for v in row))
    return "\n".join(lines)


def write_metrics(metrics: dict, path: str | Path) -> Path:
    # atomic: a finished run is recognised by its metrics.json (ablate, resume), so half of one must not exist
    return atomic_write(path, lambda t: t.write_text(json.dumps(metrics, indent=2)))


def _open_for_eval(checkpoint, data, root, split, subset, options, overrides, batch_size, device, num_workers):
    """The model file, its data config, the split's dataset under the model's own preprocessing, and a loader:
    what evaluating a model file and predicting with it both start from."""
    from .config import resolve_workers
    from .data import EvalPreset, build_dataset_from_config, collate
    from .devices import resolve_device
    from .model import load_model
    from .pretrained import resolve

    device = resolve_device(device)
    model, info = load_model(resolve(checkpoint), device=device)  # a shipped model's name works as its file
    cfg = data_config_for(info, data, root, options, overrides)
    transform = EvalPreset.from_info(info)  # the preprocessing the model was trained with
    ds = build_dataset_from_config(cfg.data, split, transform=transform, subset=subset or cfg.data.subset)
    if list(ds.classes) != list(info.classes):
        raise ValueError(f"{checkpoint}: the model's classes {info.classes} differ from the dataset's {ds.classes}; "
                         "evaluate on a dataset with the same label set and order")
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=resolve_workers(num_workers, str(device)),
                        collate_fn=collate)
    return model, info, cfg, ds, loader, device


def evaluate_checkpoint(checkpoint: str | Path, data: str | None = None, root: str | None = None,
                        split: str = "test", subset: str | None = None, options: dict | None = None,
                        overrides: list[str] | None = None, batch_size: int = 64, device: str = "auto",
                        num_workers: int = -1, out: str | Path | None = None, progress: bool = True,
                        prior_tau: float | None = None, tta: str = "none") -> dict:
    """Evaluate a saved model on a dataset split (optionally a pose-list subset).

    ``data`` is either a YAML config (its ``data`` section is used) or a dataset name with ``root``.
    Image size and normalisation come from the checkpoint, so evaluation matches training, and so do the
    temperature and prior adjustment; ``prior_tau`` evaluates another operating point (``--prior-tau``);
    ``tta="flip"`` averages each face's logits with its mirror image's (``--tta flip``, :func:`loader_logits`).
    """
    check_tta(tta)  # refuse a bad option before the model and the split are read
    model, info, cfg, ds, loader, device = _open_for_eval(checkpoint, data, root, split, subset, options, overrides,
                                                         batch_size, device, num_workers)
    resolve_tau(info, prior_tau)  # refuse an impossible operating point before the split is run
    classes = info.classes
    metrics = evaluate(model, loader, classes, device, progress=progress, info=info, prior_tau=prior_tau, tta=tta)
    metrics["tta"] = tta
    metrics["checkpoint"] = str(checkpoint)
    metrics["dataset"] = {"name": cfg.data.name, "root": cfg.data.root, "split": split,
                          "subset": subset or cfg.data.subset, "n_read": len(ds)}
    if getattr(ds, "subset_info", None):
        metrics["dataset"]["subset_info"] = ds.subset_info
    if out is not None:
        write_metrics(metrics, Path(out) / "metrics.json" if Path(out).suffix != ".json" else out)
    return metrics


def data_config_for(info, data: str | None = None, root: str | None = None, options: dict | None = None,
                    overrides: list[str] | None = None):
    """The :class:`lanfer.config.Config` whose ``data`` section says what a model is evaluated on.

    ``data`` is a YAML file, the name of a packaged config (``rafdb_lan``, as ``lanfer train`` accepts), or
    a dataset name (``rafdb``); None takes the dataset recorded in the model's ``info``. A registered dataset
    name wins over a packaged config of the same name.
    """
    from .config import load_config, packaged_configs
    from .data.registry import available_datasets

    is_config = data is not None and (data.endswith((".yaml", ".yml")) or Path(data).is_file() or (
        data not in available_datasets() and data in packaged_configs()))
    if is_config:
        cfg = load_config(data, overrides)
    else:
        cfg = load_config(None, overrides)
        if data is None and info.data:
            # the recorded dataset, under the user's --set: `--set data.options.label_mode=majority` scores a
            # model trained on vote distributions with majority labels, so the record must not undo it
            given = {o.split("=", 1)[0].strip() for o in overrides or []}
            if "data.name" not in given:
                cfg.data.name = info.data.get("name", cfg.data.name)
            if "data.root" not in given:
                cfg.data.root = info.data.get("root")
            cfg.data.options = {**dict(info.data.get("options") or {}), **cfg.data.options}
        elif data is not None:
            cfg.data.name = data
    if root is not None:
        cfg.data.root = root
    cfg.data.options = {**cfg.data.options, **(options or {})}
    return cfg


# ----------------------------------------------------------------------------------------------------
# Per-image predictions: what a paired comparison of two models needs (lanfer.analysis.compare)

PREDICTION_COLUMNS = ("path", "true", "pred")


def write_predictions(path: str | Path, targets, preds, probs, metas: list[dict], classes: list[str]) -> Path:
    """One CSV row per image: ``path``, ``true`` and ``pred`` (class names), ``p_<class>`` per class, then every
    metadata column the dataset gave (``view``, ``yaw``, ``subject`` ...). Written atomically."""
    import csv

    probs = np.asarray(probs, dtype=float)  # (N, K)
    meta_keys = sorted({k for m in metas for k in m} - {"path", "index"})
    header = [*PREDICTION_COLUMNS, *(f"p_{c}" for c in classes), *meta_keys]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for t, p, pr, m in zip(targets, preds, probs, metas):
                w.writerow([m.get("path", ""), classes[int(t)], classes[int(p)], *(f"{v:.6g}" for v in pr),
                            *("" if m.get(k) is None else m[k] for k in meta_keys)])

    return atomic_write(path, write)


def read_predictions(path: str | Path, classes: list[str] | None = None) -> dict:
    """A file of :func:`write_predictions` -> ``{"paths", "targets" (N,), "preds" (N,), "probs" (N, K),
    "metas", "classes"}``. Class names not in ``classes`` (default: the file's ``p_`` columns) are refused."""
    import csv

    from .data.base import DataError

    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        header = list(rows[0].keys()) if rows else []
    names = [h[2:] for h in header if h.startswith("p_")]
    classes = list(classes or names)
    if not rows or any(c not in header for c in PREDICTION_COLUMNS):
        raise DataError(f"{path}: not a predictions file (needs columns {', '.join(PREDICTION_COLUMNS)} and "
                         "one row per image; lanfer.evaluate.write_predictions writes them)")
    index = {c: k for k, c in enumerate(classes)}
    meta_keys = [h for h in header if h not in PREDICTION_COLUMNS and not h.startswith("p_")]
    targets, preds, metas = [], [], []
    for line, r in enumerate(rows, start=2):
        for col in ("true", "pred"):
            if r[col] not in index:
                raise DataError(f"{path}, line {line}: {col} class {r[col]!r} is not one of {classes}")
        targets.append(index[r["true"]])
        preds.append(index[r["pred"]])
        metas.append({"path": r["path"], **{k: r[k] for k in meta_keys if r[k] != ""}})
    probs = np.array([[float(r[f"p_{c}"]) for c in names] for r in rows])  # (N, K)
    return {"paths": [r["path"] for r in rows], "targets": np.array(targets), "preds": np.array(preds),
            "probs": probs, "metas": metas, "classes": classes}


def predict_checkpoint(checkpoint: str | Path, data: str | None = None, root: str | None = None,
                       split: str = "test", subset: str | None = None, overrides: list[str] | None = None,
                       batch_size: int = 64, device: str = "auto", progress: bool = True,
                       out: str | Path | None = None, prior_tau: float | None = None, tta: str = "none") -> dict:
    """Per-image predictions of a model file on a split (see :func:`evaluate_checkpoint` for ``data``,
    ``prior_tau`` and ``tta``):
    ``{"targets", "preds", "probs", "metas", "classes", "dataset"}``; with ``out``, also written as the CSV of
    :func:`write_predictions`. The metrics of these predictions are ``summarize(targets, preds, classes, metas)``.
    """
    check_tta(tta)
    model, info, cfg, ds, loader, device = _open_for_eval(checkpoint, data, root, split, subset, None, overrides,
                                                         batch_size, device, -1)
    targets, preds, probs, metas = predict_loader(model, loader, device, progress=progress, info=info,
                                                  prior_tau=prior_tau, tta=tta)
    result = {"targets": targets, "preds": preds, "probs": probs, "metas": metas, "classes": list(info.classes),
              "dataset": {"name": cfg.data.name, "root": cfg.data.root, "split": split,
                          "subset": subset or cfg.data.subset, "n_read": len(ds)}}
    if out is not None:
        write_predictions(out, targets, preds, probs, metas, list(info.classes))
    return result
