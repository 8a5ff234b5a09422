"""``lanfer ablate``: LAN over a grid of alpha (the guidance-loss weight) x fusion (x seeds), everything
else fixed, then the paper's Figure 7 (accuracy against alpha) and Table 6 (fusion add / concat / average)
with mean +/- std over seeds.

Each cell trains into ``RUNS/<fusion>_alpha<alpha>_seed<seed>/`` (``RUNS`` is ``OUT`` unless given) with
:func:`lanfer.train.train`; a cell whose ``metrics.json`` and ``best.safetensors`` exist is reused, and an
interrupted one resumes from its ``last.ckpt``, so a second call trains only what is missing, and two grids
that share ``RUNS`` (the alpha curve at one fusion, the fusion table at one alpha) share their common cell.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..config import ConfigError, load_config
from ..io import atomic_write
from .compare import spread
from .figures import fig_to_png, plot_alpha_curve


def cell_name(fusion: str, alpha: float, seed: int) -> str:
    return f"{fusion}_alpha{alpha:g}_seed{seed}"


def run_ablation(config: str | Path, alphas: Sequence[float], fusions: Sequence[str], seeds: int, out: str | Path,
                 overrides: list[str] | None = None, progress: bool | None = None,
                 runs: str | Path | None = None, subsets: dict[str, str] | None = None) -> dict:
    """Train every (fusion, alpha, seed) cell of a LAN config not yet finished in ``runs`` (default: ``out``);
    write ``ablation.json``, ``ablation.txt`` and ``alpha_curve.png`` to ``out``. Seeds are the config's ``seed`` and the
    next ``seeds - 1`` integers. Returns ``{"cells": [...], "rows": [...], "config": ...}``: one row per
    (fusion, alpha) with the test accuracy's mean +/- std over seeds.

    ``subsets``: name -> list file (e.g. ``{"pose45": ".../pose_45_ferplus_list.txt"}``): every cell's best
    weights are also evaluated on the test split restricted to each list (``<cell>/<name>/metrics.json``, reused
    when it was made from the same list), and the rows gain ``subsets: {name: accuracy mean +/- std}``: whether
    alpha or the fusion changes accuracy on turned faces, the paper's claim, not only on all of them.
    """
    from ..info import LAN_NAMES
    from ..model import FUSIONS
    from ..train import train

    base = load_config(config, overrides)
    if base.model.name not in LAN_NAMES:
        raise ConfigError(f"{config}: model.name is {base.model.name!r}; alpha and fusion ablate LAN "
                          f"(model.name: one of {', '.join(LAN_NAMES)})")
    bad = [f for f in fusions if f not in FUSIONS]
    if bad or not fusions:
        raise ConfigError(f"--fusion {','.join(fusions)}: use one or more of {', '.join(FUSIONS)}")
    if not base.train.final_test:
        raise ConfigError(f"{config}: train.final_test is false, but the ablation table is each cell's test score; "
                          "drop the override (or set train.final_test=true)")
    if not alphas or any(a < 0 for a in alphas):
        raise ConfigError(f"--alpha {alphas}: give one or more non-negative weights")
    if seeds < 1:
        raise ConfigError(f"--seeds {seeds}: at least 1")
    out = Path(out)
    runs = out if runs is None else Path(runs)
    out.mkdir(parents=True, exist_ok=True)
    cells = []
    for fusion in fusions:
        for alpha in alphas:
            for seed in range(base.seed, base.seed + seeds):
                run = runs / cell_name(fusion, alpha, seed)
                cfg = load_config(config, [*(overrides or []), f"model.fusion={fusion}", f"loss.alpha={alpha}",
                                           f"seed={seed}"])
                done = (run / "metrics.json").is_file() and (run / "best.safetensors").is_file()
                if (run / "config.yaml").is_file():
                    check_cell(run, cfg)
                if done:
                    metrics = json.loads((run / "metrics.json").read_text())
                else:
                    metrics = train(cfg, out=run, resume=(run / "last.ckpt").is_file(), progress=progress)
                cells.append({"fusion": fusion, "alpha": float(alpha), "seed": seed, "run": str(run), "reused": done,
                              "accuracy": metrics["accuracy"], "mean_class_accuracy": metrics["mean_class_accuracy"],
                              "subsets": {name: _subset_accuracy(run, name, path, config, base.data.test_split,
                                                                 overrides, progress)
                                          for name, path in (subsets or {}).items()}})
    rows = []
    for fusion in fusions:
        for alpha in alphas:
            group = [c for c in cells if c["fusion"] == fusion and c["alpha"] == float(alpha)]
            rows.append({"fusion": fusion, "alpha": float(alpha), "seeds": [c["seed"] for c in group],
                         "accuracy": spread([c["accuracy"] for c in group]),
                         "mean_class_accuracy": spread([c["mean_class_accuracy"] for c in group]),
                         "subsets": {name: spread([c["subsets"][name] for c in group]) for name in subsets or {}}})
    result = {"config": str(config), "overrides": list(overrides or []), "alphas": [float(a) for a in alphas],
              "fusions": list(fusions), "seeds": seeds, "config_alpha": base.loss.alpha, "cells": cells, "rows": rows,
              "subset_files": {k: str(v) for k, v in (subsets or {}).items()}}
    atomic_write(out / "ablation.json", lambda t: t.write_text(json.dumps(result, indent=2)))
    atomic_write(out / "ablation.txt", lambda t: t.write_text(format_ablation(result) + "\n"))
    # the subsets' curves beside the test set's, as "<fusion> <subset>" lines
    png = fig_to_png(plot_alpha_curve(rows + [{"fusion": f"{r['fusion']} {name}", "alpha": r["alpha"],
                                               "accuracy": r["subsets"][name]} for name in subsets or {} for r in rows]))
    atomic_write(out / "alpha_curve.png", lambda t: t.write_bytes(png))
    return result


# Keys that may differ between a finished cell and the grid that reuses it: where the files are (compared as
# files, not as strings), and how the run was watched.
_SAME_FILE = ("model.pretrained", "data.root", "guidance.path")
_IGNORED = ("out", "data.num_workers", "train.device", "train.progress", "train.log_every", "train.tensorboard")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "options" and k != "crop":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_cell(run: Path, cfg) -> None:
    """Refuse to reuse (or resume) a cell trained with another config than the grid asks for now: a changed
    ``--set`` (say train.lr) would otherwise be reported with the old cells' numbers under the new name."""
    import os

    import yaml

    saved = _flat(yaml.safe_load((run / "config.yaml").read_text()) or {})
    now = _flat(cfg.to_dict())
    diffs = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if key in _IGNORED or a == b:
            continue
        if key in _SAME_FILE and a and b and os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b):
            continue
        diffs.append(f"{key}: {a!r} in the cell, {b!r} now")
    if diffs:
        raise ConfigError(f"{run}: this cell was trained with another config ({'; '.join(diffs[:6])}"
                          f"{'; ...' if len(diffs) > 6 else ''}); remove the cell's folder to retrain it, or give "
                          "another --runs/--out")


def _subset_accuracy(run: Path, name: str, path: str, config, split: str, overrides, progress) -> float:
    """The cell's best weights on ``split`` restricted to the list ``path``, cached in ``run/name/metrics.json``."""
    from ..evaluate import evaluate_checkpoint

    cached = run / name / "metrics.json"
    if cached.is_file():
        m = json.loads(cached.read_text())
        if str(m.get("dataset", {}).get("subset")) == str(path):
            return m["accuracy"]
    m = evaluate_checkpoint(run / "best.safetensors", data=str(config), split=split, subset=str(path),
                            overrides=overrides, out=run / name, progress=bool(progress))
    return m["accuracy"]


def format_ablation(result: dict) -> str:
    """Figure 7 as a table (accuracy by alpha, a column per fusion) and Table 6 (a row per fusion at the
    config's alpha, or at every alpha when the grid lacks it), mean +/- std over seeds, in %."""
    rows = result["rows"]

    def cell(r, key="accuracy"):
        s = r[key]
        return f"{100 * s['mean']:.2f}" + (f"+/-{100 * s['std']:.2f}" if s["n"] > 1 else "")

    fusions, alphas = result["fusions"], result["alphas"]
    find = {(r["fusion"], r["alpha"]): r for r in rows}
    n = max(len(r["seeds"]) for r in rows)
    lines = [f"test accuracy % by alpha (mean +/- std over {n} seed{'s' if n > 1 else ''}); "
             f"cells reused: {sum(c['reused'] for c in result['cells'])} of {len(result['cells'])}",
             f"{'alpha':<8}" + "".join(f"{f:>18}" for f in fusions)]
    for a in alphas:
        lines.append(f"{a:<8g}" + "".join(f"{cell(find[(f, float(a))]):>18}" for f in fusions))
    at = [result["config_alpha"]] if float(result["config_alpha"]) in [float(a) for a in alphas] else alphas
    lines += ["", f"fusion (Table 6), alpha {', '.join(f'{a:g}' for a in at)}",
              f"{'fusion':<10}{'alpha':>7}{'accuracy %':>18}{'mean class %':>18}"]
    for f in fusions:
        for a in at:
            r = find[(f, float(a))]
            lines.append(f"{f:<10}{a:>7g}{cell(r):>18}{cell(r, 'mean_class_accuracy'):>18}")
    names = list(result.get("subset_files") or {})
    if names:
        lines += ["", "accuracy % on the test split and on its subsets (" + "; ".join(
                      f"{k}: {v}" for k, v in result["subset_files"].items()) + ")",
                  f"{'fusion':<10}{'alpha':>7}{'test':>18}" + "".join(f"{k[:16]:>18}" for k in names)]
        for f in fusions:
            for a in alphas:
                r = find[(f, float(a))]
                lines.append(f"{f:<10}{a:>7g}{cell(r):>18}" + "".join(f"{cell(r['subsets'], k):>18}" for k in names))
    return "\n".join(lines)
