"""k-fold cross-validation over ``train`` (KDEF's protocol)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import distributed as dist
from ..config import Config, ConfigError
from ..distributed import log
from ..evaluate import write_metrics
from .run import train


def cross_validate(cfg: Config, folds: int, out: str | Path | None = None, resume: bool = False,
                   progress: bool | None = None) -> dict:
    """k-fold cross-validation (KDEF's protocol, paper Table 1): one run per fold in ``OUT/fold<k>``, then
    mean and std of the test accuracy (overall and by every metadata group) in ``OUT/cv_metrics.json``.

    The dataset must accept ``fold``/``folds`` options (``kdef`` does: identity-disjoint folds by default).
    Finished folds are reused; an interrupted fold is resumed when ``resume`` is set.
    """
    if folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {folds}")
    out = Path(out or cfg.out or "runs/cv")
    per_fold = []
    for k in range(folds):
        fcfg = copy.deepcopy(cfg)
        fcfg.data.options = {**cfg.data.options, "fold": k, "folds": folds}
        fout = out / f"fold{k}"
        if (fout / "metrics.json").is_file():
            log(f"fold {k + 1}/{folds}: reusing {fout}")
            per_fold.append(json.loads((fout / "metrics.json").read_text()))
            continue
        log(f"fold {k + 1}/{folds}")
        per_fold.append(train(fcfg, out=fout, resume=resume and (fout / "last.ckpt").is_file(), progress=progress))
    accs = np.array([m["accuracy"] for m in per_fold])
    summary: dict[str, Any] = {
        "folds": folds, "accuracy_mean": float(accs.mean()), "accuracy_std": float(accs.std(ddof=1)),
        "accuracy_per_fold": accs.tolist(),
        "mean_class_accuracy_mean": float(np.mean([m["mean_class_accuracy"] for m in per_fold])),
        "by": {},
    }
    for key in sorted({k for m in per_fold for k in m.get("by", {})}):
        groups = sorted({g for m in per_fold for g in m["by"].get(key, {})})
        summary["by"][key] = {}
        for g in groups:
            vals = [m["by"][key][g]["accuracy"] for m in per_fold if g in m["by"].get(key, {})]
            summary["by"][key][g] = {"mean": float(np.mean(vals)),
                                     "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                                     "folds": len(vals)}
    if dist.is_main():
        write_metrics(summary, out / "cv_metrics.json")
        log(f"{folds}-fold cross-validation: accuracy {100 * summary['accuracy_mean']:.2f} "
            f"+/- {100 * summary['accuracy_std']:.2f}%")
    return summary
