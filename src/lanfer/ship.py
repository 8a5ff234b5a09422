"""Package a trained model for shipping: float16 weights and a complete record (``lanfer ship``).

A run's ``best.safetensors`` already rebuilds the model; a shipped file must also say how well it does and
how to feed it photos. :func:`ship` takes the run's weights, halves them (a ResNet-18 LAN is ~25 MB in float16
against ~50 MB in float32; :func:`lanfer.model.load_model` casts them back), and fills the
:class:`~lanfer.info.ModelInfo`: the evaluation summary (the run's best validation epoch and its test
``metrics.json``, plus any extra evaluations such as the pose subsets), the face crop prediction should cut
(``crop``, measured by ``benchmarks/ferplus_crop.py --fit``), and the command that made it. With ``calibrate``,
the shipped file is then calibrated in place (:func:`lanfer.calibrate.calibrate`: the class prior, the prior
tau of the operating point and the temperature, fitted on the validation split), with its record beside it.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from .checkpoint import CheckpointError, save_model
from .info import FaceCrop
from .model import load_model


def _summary(path: Path) -> dict[str, Any]:
    m = json.loads(path.read_text())
    out = {k: m[k] for k in ("accuracy", "mean_class_accuracy") if k in m}
    ds = m.get("dataset") or {}
    n = ds.get("n_read") or (sum(map(sum, m["confusion_matrix"])) if "confusion_matrix" in m else None)
    if n is not None:
        out["n"] = int(n)
    return out


def ship(run: str | Path, out: str | Path, evals: dict[str, str | Path] | None = None,
         crop: dict[str, Any] | None = None, command: str | None = None, dtype: torch.dtype = torch.float16,
         calibrate: dict[str, Any] | None = None) -> Path:
    """Write ``out``: ``run``'s best weights in ``dtype`` with a filled-in record; returns the path.

    ``run`` is a run folder (``best.safetensors``, ``metrics.json``, ``metrics.jsonl``) or a model file;
    ``evals`` maps a name (``"pose30"``) to a ``metrics.json`` written by ``lanfer eval --out``.
    ``calibrate``: the arguments of :func:`lanfer.calibrate.calibrate` (``root``, ``split``, ``prior_tau`` ...)
    to calibrate the shipped weights themselves (after the cast to ``dtype``); None ships them uncalibrated.
    The ``evals`` were measured before calibration: with a prior tau other than 0, evaluate the shipped file
    again (``lanfer eval OUT``) for the numbers of its operating point.
    """
    run = Path(run)
    weights = run / "best.safetensors" if run.is_dir() else run
    model, info = load_model(weights)
    metrics: dict[str, Any] = dict(info.metrics)
    if run.is_dir():
        log = run / "metrics.jsonl"
        if log.is_file():
            rows = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
            scored = [r for r in rows if "val_accuracy" in r]
            if scored:
                best = max(scored, key=lambda r: r["val_accuracy"])
                metrics["val"] = {"accuracy": best["val_accuracy"],
                                  "mean_class_accuracy": best.get("val_mean_class_accuracy"),
                                  "epoch": best["epoch"]}
        test = _summary(run / "metrics.json") if (run / "metrics.json").is_file() else {}
        if "accuracy" in test:  # a selection run's metrics.json (train.final_test=false) holds no test score
            metrics["test"] = test
    for name, path in (evals or {}).items():
        if not Path(path).is_file():
            raise CheckpointError(f"evaluation {name}={path}: no such metrics file (write it with lanfer eval --out)")
        metrics[name] = _summary(Path(path))
    # the record keeps how the weights were trained and adds how they were packaged
    made = "; ".join(c for c in (info.command, command) if c) or None
    info = dataclasses.replace(info, metrics=metrics, crop=FaceCrop(**crop) if crop else info.crop, command=made)
    out = Path(out)
    save_model(out, copy.deepcopy(model).to(dtype), info)
    if calibrate is not None:
        from .calibrate import calibrate as run_calibration

        run_calibration(out, out, overwrite=True, **calibrate)
    return out


def record_evaluations(path: str | Path, evals: dict[str, str | Path], replace: bool = False) -> Path:
    """Write evaluation summaries into a model file's record, in place, weights untouched.

    For a calibrated shipped file: ``ship`` records the numbers measured *before* calibration (the plain
    classifier); once the file has its operating point, ``lanfer eval`` of the file itself gives the numbers a
    user gets, and this puts them in the record (``lanfer models``, the card). ``replace`` drops the old
    summaries first; otherwise same-named entries are overwritten and the rest kept.
    """
    from .checkpoint import read_model_info

    path = Path(path)
    info = read_model_info(path)
    metrics: dict[str, Any] = {} if replace else dict(info.metrics)
    for name, m in evals.items():
        if not Path(m).is_file():
            raise CheckpointError(f"evaluation {name}={m}: no such metrics file (write it with lanfer eval --out)")
        metrics[name] = _summary(Path(m))
    return _rewrite_record(path, dataclasses.replace(info, metrics=metrics))


def record_license(path: str | Path, license: str | None) -> Path:
    """Set a model file's ``license`` (its ingredients' terms), in place, weights untouched."""
    from .checkpoint import read_model_info

    return _rewrite_record(Path(path), dataclasses.replace(read_model_info(path), license=license))


def _rewrite_record(path: Path, info) -> Path:
    """Write ``info`` as ``path``'s record; the tensors are copied as stored (float16 stays float16)."""
    from safetensors.torch import save_file

    from .checkpoint import read_weights
    from .io import atomic_write

    state = read_weights(path)
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=info.to_metadata()))
    return path
