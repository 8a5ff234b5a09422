"""``lanfer calibrate``: choose a model's operating point and fit its temperature on validation, and write a
new model file that carries them (the math is :mod:`lanfer.calibration`).

One pass over the validation split gives the logits; everything else is arithmetic on them:

1. the class prior: the training split's label frequencies (read from the dataset's labels, no image decoded);
2. the prior tau: the smallest tau at which every class reaches the recall floor on validation, or the tau of
   the best mean class accuracy (:func:`lanfer.calibration.choose_prior_tau`), or the one a user gives;
3. the temperature: the NLL-optimal T of the adjusted logits (:func:`lanfer.calibration.fit_temperature`);
4. the new file: the same weights (in the dtype they were stored in) with ``class_prior``, ``prior_tau`` and
   ``temperature`` in its record, and a JSON record of the choice (the tau table, T, ECE and NLL before and
   after on the split it was fitted on). The input file is never overwritten unless ``overwrite`` says so.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .calibration import (DEFAULT_MIN_RECALL, DEFAULT_TAUS, adjust_logits, choose_prior_tau, class_prior,
                          expected_calibration_error, fit_temperature, nll, probabilities, sweep_prior_tau)
from .info import MAX_ABS_TAU
from .io import atomic_write


def training_prior(cfg, classes: Sequence[str]) -> tuple[list[float], list[int]]:
    """(class frequencies, class counts) of the training split of ``cfg.data``, in ``classes`` order."""
    from .data import build_dataset_from_config

    ds = build_dataset_from_config(cfg.data, cfg.data.train_split)  # labels only: no image is decoded
    if list(ds.classes) != list(classes):
        raise ValueError(f"the training split's classes {ds.classes} differ from the model's {list(classes)}")
    counts = ds.class_counts()
    return class_prior(counts, classes), counts


def parse_prior_tau(text: str | float | None) -> float | str:
    """``"auto"`` (or None) -> ``"auto"``; a number -> that float (argparse type of ``--prior-tau``)."""
    if text is None or text == "auto":
        return "auto"
    value = float(text)
    if not np.isfinite(value) or abs(value) > MAX_ABS_TAU:
        raise ValueError(f"--prior-tau {text!r}: expected auto or a finite number in [-{MAX_ABS_TAU:g}, {MAX_ABS_TAU:g}]")
    return value


def calibrate(checkpoint: str | Path, out: str | Path, data: str | None = None, root: str | None = None,
              split: str = "val", options: dict | None = None, overrides: list[str] | None = None,
              prior_tau: float | str = "auto", min_recall: float = DEFAULT_MIN_RECALL,
              taus: Sequence[float] = DEFAULT_TAUS, record: str | Path | None = None, overwrite: bool = False,
              batch_size: int = 64, device: str = "auto", num_workers: int = -1, progress: bool = True,
              command: str | None = None) -> dict[str, Any]:
    """Calibrate ``checkpoint`` on ``split`` and write ``out`` (a model file) and ``record`` (JSON; default
    ``out`` with the suffix ``.calibration.json``). Returns the record.

    Args:
        data, root, options, overrides: the dataset, as :func:`lanfer.evaluate.evaluate_checkpoint` reads them
            (default: the dataset recorded in the model file, at ``root``).
        split: the split tau and T are fitted on (never the test split a number is reported on).
        prior_tau: ``"auto"`` (chosen by :func:`lanfer.calibration.choose_prior_tau` with ``min_recall`` over
            ``taus``) or the tau to ship.
        overwrite: allow ``out`` to be ``checkpoint`` (``lanfer ship --calibrate`` calibrates its own file).
    """
    from .checkpoint import CheckpointError, read_weights, save_model
    from .evaluate import _open_for_eval, loader_logits

    checkpoint, out = Path(checkpoint), Path(out)
    if not overwrite and out.resolve() == checkpoint.resolve():
        raise CheckpointError(f"{out}: would overwrite the model being calibrated; write another file with --out")
    prior_tau = parse_prior_tau(prior_tau)
    model, info, cfg, ds, loader, device = _open_for_eval(checkpoint, data, root, split, None, options, overrides,
                                                         batch_size, device, num_workers)
    prior, counts = training_prior(cfg, info.classes)
    targets, logits, _ = loader_logits(model, loader, device, progress=progress)  # (N,), (N, K)
    if prior_tau == "auto":
        choice = choose_prior_tau(logits, targets, prior, taus, min_recall, info.classes)
    else:
        choice = {"tau": prior_tau, "rule": "given", "min_recall": min_recall,
                  "table": sweep_prior_tau(logits, targets, prior, sorted({0.0, prior_tau, *taus}), info.classes)}
    tau = choice["tau"]
    at_tau = dataclasses.replace(info, class_prior=prior, prior_tau=tau, temperature=1.0)
    adjusted = adjust_logits(logits, at_tau)  # (N, K)
    temperature = fit_temperature(adjusted, targets)
    made = "; ".join(c for c in (info.command, command) if c) or None
    new = dataclasses.replace(at_tau, temperature=temperature, command=made)

    def measured(i) -> dict[str, float]:
        p = probabilities(logits, i)
        return {"ece": expected_calibration_error(p, targets),
                "nll": nll(adjust_logits(logits, i), targets, i.temperature),
                "accuracy": float((p.argmax(1) == targets).mean())}

    rec: dict[str, Any] = {
        "model": str(checkpoint), "out": str(out),
        "dataset": {"name": cfg.data.name, "root": cfg.data.root, "options": cfg.data.options, "split": split,
                    "n": int(len(targets)), "train_split": cfg.data.train_split},
        "classes": list(info.classes), "class_counts": counts, "class_prior": prior,
        "prior_tau": {k: choice[k] for k in ("tau", "rule", "min_recall")}, "temperature": temperature,
        "fitted_on": {"input": measured(info), "adjusted_T1": measured(at_tau), "calibrated": measured(new)},
        "tau_table": choice["table"], "command": command,
    }
    new.metrics = {**new.metrics, "calibration": {"split": split, "n": rec["dataset"]["n"], "prior_tau": tau,
                                                  "temperature": temperature,
                                                  "ece_before": rec["fitted_on"]["input"]["ece"],
                                                  "ece_after": rec["fitted_on"]["calibrated"]["ece"]}}
    # the same weights in the dtype they were stored in (a shipped float16 file stays float16)
    dtype = next((v.dtype for v in read_weights(checkpoint).values() if v.is_floating_point()), None)
    save_model(out, copy.deepcopy(model).cpu().to(dtype) if dtype is not None else model, new)
    rec_path = Path(record) if record is not None else out.with_suffix(".calibration.json")
    atomic_write(rec_path, lambda t: t.write_text(json.dumps(rec, indent=2)))
    rec["record"] = str(rec_path)
    return rec


def format_calibration(rec: dict[str, Any]) -> str:
    """The tau table and the chosen operating point, for the terminal."""
    fit = rec["fitted_on"]
    lines = [f"{rec['model']} on {rec['dataset']['name']}/{rec['dataset']['split']} ({rec['dataset']['n']} images); "
             f"class prior from {rec['dataset']['train_split']}: "
             + ", ".join(f"{c} {100 * p:.1f}%" for c, p in zip(rec["classes"], rec["class_prior"])),
             "   tau  accuracy  mean class  min class recall"]
    for r in rec["tau_table"]:
        mark = "  <-" if r["tau"] == rec["prior_tau"]["tau"] else ""
        lines.append(f"  {r['tau']:4.2f}   {100 * r['accuracy']:6.2f}%    {100 * r['mean_class_accuracy']:6.2f}%"
                     f"    {100 * r['min_class_recall']:6.2f}%{mark}")
    lines.append(f"prior tau {rec['prior_tau']['tau']:g} ({rec['prior_tau']['rule']}); temperature "
                 f"{rec['temperature']:.4f}")
    lines.append(f"ECE on {rec['dataset']['split']}: input {100 * fit['input']['ece']:.2f}%, at tau T=1 "
                 f"{100 * fit['adjusted_T1']['ece']:.2f}%, calibrated {100 * fit['calibrated']['ece']:.2f}%; "
                 f"NLL {fit['input']['nll']:.4f} -> {fit['calibrated']['nll']:.4f}")
    lines.append(f"wrote {rec['out']} and {rec['record']}")
    return "\n".join(lines)
