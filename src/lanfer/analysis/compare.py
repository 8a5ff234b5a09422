"""Is a difference between two runs larger than chance? Paired tests on the same test images.

Two runs evaluated on the same images make paired predictions: per image, each model is right or wrong.
:func:`mcnemar_exact` tests whether the images only model A gets right outnumber those only model B gets
right by more than chance (McNemar's exact test: a two-sided binomial test with p = 1/2 on the discordant
pairs), and :func:`bootstrap_diff` gives a percentile bootstrap confidence interval of the accuracy
difference, resampling images. Across seeds (groups of runs), the per-seed accuracies give mean +/- std,
seed-matched pairs are tested one by one, and the bootstrap interval is that of the difference of the
groups' mean accuracies, still resampling images.

:func:`compare_runs` reads each run's per-image predictions (``RUN/predictions.csv``, or evaluates
``RUN/best.safetensors`` once and caches the file under ``OUT/predictions/``) and refuses runs evaluated on
different image lists.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.base import DataError
from ..io import atomic_write


class CompareError(DataError):
    """Runs that cannot be paired: different image lists, labels or classes. The message says which."""


# ----------------------------------------------------------------------------------------------------
# The statistics


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """McNemar's exact test on paired correctness vectors (N,) of bool.

    ``b`` counts images only A gets right, ``c`` images only B gets right; under the null hypothesis (the two
    models are equally accurate on these images) ``b ~ Binomial(b + c, 1/2)``. The two-sided p-value is
    ``min(1, 2 * P(X <= min(b, c)))``, computed with exact integers (the test of scipy.stats.binomtest with
    p = 0.5, whose distribution is symmetric). Returns ``{"only_a", "only_b", "p_value"}``; p is 1 with no
    discordant pair.
    """
    a = np.asarray(correct_a, dtype=bool)
    b_ = np.asarray(correct_b, dtype=bool)
    if a.shape != b_.shape:
        raise ValueError(f"paired vectors differ in length: {a.shape} vs {b_.shape}")
    b = int((a & ~b_).sum())
    c = int((~a & b_).sum())
    n = b + c
    if n == 0:
        return {"only_a": b, "only_b": c, "p_value": 1.0}
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))  # exact: Python integers do not overflow
    return {"only_a": b, "only_b": c, "p_value": min(1.0, 2 * tail / 2 ** n)}


def bootstrap_diff(correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 10000, level: float = 0.95,
                   seed: int = 0) -> dict:
    """Percentile bootstrap CI of ``mean(correct_a) - mean(correct_b)``, resampling images (pairs kept).

    ``correct_a``/``correct_b``: (N,) or, for groups of runs, (R, N) correctness (the group mean over runs is
    taken per image first). Resampling N images with replacement only changes how often each per-image
    difference is drawn, so each replicate is a multinomial draw over the distinct difference values:
    exact, and O(n_boot) instead of O(n_boot * N).
    """
    da = np.asarray(correct_a, dtype=float)
    db = np.asarray(correct_b, dtype=float)
    d = (da.mean(0) if da.ndim == 2 else da) - (db.mean(0) if db.ndim == 2 else db)  # (N,) per-image difference
    n = len(d)
    if n == 0:
        raise ValueError("no paired images to bootstrap")
    values, counts = np.unique(d, return_counts=True)
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=n_boot)  # (n_boot, V)
    reps = draws @ values / n  # (n_boot,)
    lo, hi = np.quantile(reps, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"diff": float(d.mean()), "ci_low": float(lo), "ci_high": float(hi), "level": level, "n_boot": n_boot}


def spread(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of per-seed numbers."""
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))}


# ----------------------------------------------------------------------------------------------------
# Runs and their per-image predictions


@dataclass
class RunPredictions:
    """One run's predictions on its test images, in the order of ``paths``."""

    name: str
    paths: list[str]
    targets: np.ndarray  # (N,) true class index
    preds: np.ndarray  # (N,) predicted class index
    classes: list[str]
    metas: list[dict] = field(default_factory=list)
    source: str = ""

    @property
    def correct(self) -> np.ndarray:
        return self.targets == self.preds


def run_predictions(run: str | Path, cache: str | Path | None = None, data: str | None = None,
                    root: str | None = None, split: str = "test", device: str = "auto",
                    progress: bool = True) -> RunPredictions:
    """Per-image predictions of a run folder (or a model file).

    Read from ``RUN/predictions.csv`` when the run has one, else from ``cache/<run name>.<split>.csv``; when
    neither exists, ``RUN/best.safetensors`` is evaluated on ``split`` of the data in ``RUN/config.yaml``
    (or ``data``/``root``, see :func:`lanfer.evaluate.predict_checkpoint`) and the file is written to the cache.
    """
    from ..evaluate import predict_checkpoint, read_predictions

    run = Path(run)
    model = run / "best.safetensors" if run.is_dir() else run
    # RUN/best.safetensors is named after its run folder
    name = run.name if run.is_dir() else (run.parent.name if run.stem in ("best", "last") else run.stem)
    own = run / "predictions.csv" if run.is_dir() else None
    cached = Path(cache) / f"{name}.{split}.csv" if cache is not None else None
    for f in (own, cached):
        if f is not None and f.is_file():
            p = read_predictions(f)
            return RunPredictions(name, p["paths"], p["targets"], p["preds"], p["classes"], p["metas"], str(f))
    if not model.is_file():
        raise FileNotFoundError(f"{run}: no predictions.csv and no model file {model} to evaluate")
    if data is None and run.is_dir() and (run / "config.yaml").is_file():
        data = str(run / "config.yaml")
    p = predict_checkpoint(model, data=data, root=root, split=split, device=device, progress=progress, out=cached)
    paths = [m["path"] for m in p["metas"]]
    metas = [{k: v for k, v in m.items() if k not in ("path", "index")} for m in p["metas"]]
    return RunPredictions(name, paths, p["targets"], p["preds"], p["classes"], metas,
                          str(cached) if cached else str(model))


def subset_paths(run: str | Path, subset: str | Path, data: str | None = None, root: str | None = None,
                 split: str = "test") -> set[str]:
    """The image paths of ``split`` that a pose-list file keeps (the dataset's own matching rules), read
    without a model: the data section comes from ``RUN/config.yaml`` (or ``data``)."""
    from ..data import build_dataset_from_config
    from ..evaluate import data_config_for
    from ..checkpoint import read_model_info

    run = Path(run)
    model = run / "best.safetensors" if run.is_dir() else run
    if data is None and run.is_dir() and (run / "config.yaml").is_file():
        data = str(run / "config.yaml")
    cfg = data_config_for(read_model_info(model), data, root)
    ds = build_dataset_from_config(cfg.data, split, subset=subset)
    return {s.path for s in ds.samples}


def check_paired(runs: Sequence[RunPredictions]) -> None:
    """Refuse runs that were not evaluated on the same images with the same labels and classes."""
    first = runs[0]
    for r in runs[1:]:
        if r.classes != first.classes:
            raise CompareError(f"{r.name} has classes {r.classes} but {first.name} has {first.classes}: "
                               "a paired comparison needs the same label set and order")
        if r.paths != first.paths:
            a, b = set(first.paths), set(r.paths)
            raise CompareError(
                f"{first.name} ({len(first.paths)} images, {first.source}) and {r.name} ({len(r.paths)} images, "
                f"{r.source}) were evaluated on different image lists: {len(a - b)} only in the first (e.g. "
                f"{sorted(a - b)[:2]}), {len(b - a)} only in the second (e.g. {sorted(b - a)[:2]})"
                + ("; same images in another order" if a == b else "")
                + ". Evaluate both on the same split and subset (same data.root and options)")
        if not np.array_equal(r.targets, first.targets):
            k = int(np.argmax(r.targets != first.targets))
            raise CompareError(f"{first.name} and {r.name} disagree on the true label of {first.paths[k]} "
                               f"({first.classes[first.targets[k]]} vs {r.classes[r.targets[k]]}): they were "
                               "evaluated with different labels (label_mode, vote file?)")


# ----------------------------------------------------------------------------------------------------
# The comparison


def _accuracies(correct: np.ndarray, mask: np.ndarray) -> float:
    return float(correct[mask].mean()) if mask.any() else float("nan")


def compare_groups(a: Sequence[RunPredictions], b: Sequence[RunPredictions], subsets: dict[str, set[str]] | None = None,
                   label_a: str = "A", label_b: str = "B", n_boot: int = 10000, seed: int = 0) -> dict:
    """Compare two groups of runs (one run each, or one per seed) on the same images.

    Returns a JSON-friendly dict: per group the per-seed and mean +/- std accuracy overall, per class and per
    subset (``subsets``: name -> image paths; ``meta:<key>=<value>`` subsets are added for every metadata
    column with 2..20 values); per subset the McNemar test of every seed-matched pair (a[i] vs b[i]) and the
    bootstrap CI of the difference of the group means.
    """
    runs = [*a, *b]
    if not a or not b:
        raise CompareError("compare needs at least one run on each side")
    check_paired(runs)
    first = runs[0]
    paths = np.array(first.paths)
    masks: dict[str, np.ndarray] = {"all": np.ones(len(paths), dtype=bool)}
    for name, keep in (subsets or {}).items():
        m = np.isin(paths, list(keep))
        if not m.any():
            raise CompareError(f"subset {name!r}: none of its {len(keep)} images is among the {len(paths)} "
                               "compared (another split or data root?)")
        masks[name] = m
    for key in sorted({k for m in first.metas for k in m}):
        vals = sorted({str(m[key]) for m in first.metas if key in m})
        if 2 <= len(vals) <= 20:
            col = np.array([str(m.get(key)) for m in first.metas])
            for v in vals:
                masks[f"{key}={v}"] = col == v
    for k, c in enumerate(first.classes):
        masks[f"class={c}"] = first.targets == k
    ca = np.stack([r.correct for r in a])  # (Ra, N)
    cb = np.stack([r.correct for r in b])  # (Rb, N)
    rows = []
    for name, m in masks.items():
        acc_a = [_accuracies(c, m) for c in ca]
        acc_b = [_accuracies(c, m) for c in cb]
        row: dict[str, Any] = {"subset": name, "n": int(m.sum()), "a": spread(acc_a), "b": spread(acc_b),
                               "a_per_seed": acc_a, "b_per_seed": acc_b}
        row["diff"] = row["a"]["mean"] - row["b"]["mean"]
        row["pairs"] = [{"a": a[i].name, "b": b[i].name, "diff": acc_a[i] - acc_b[i], **mcnemar_exact(ca[i][m], cb[i][m])}
                        for i in range(min(len(a), len(b)))]
        row["bootstrap"] = bootstrap_diff(ca[:, m], cb[:, m], n_boot=n_boot, seed=seed)
        rows.append(row)
    return {"a": {"label": label_a, "runs": [r.name for r in a], "sources": [r.source for r in a]},
            "b": {"label": label_b, "runs": [r.name for r in b], "sources": [r.source for r in b]},
            "classes": first.classes, "n_images": len(paths), "rows": rows}


def format_compare(result: dict) -> str:
    """The comparison as a plain-text table: accuracy of each side (mean +/- std over seeds), the difference,
    its bootstrap CI, and McNemar's p of each seed-matched pair."""
    la, lb = result["a"]["label"], result["b"]["label"]
    lines = [f"{la}: {', '.join(result['a']['runs'])}", f"{lb}: {', '.join(result['b']['runs'])}",
             f"paired on {result['n_images']} images; accuracy % (mean +/- std over runs); difference {la} - {lb} "
             f"in points with its {int(100 * result['rows'][0]['bootstrap']['level'])}% bootstrap CI (images "
             "resampled); McNemar exact p per seed-matched pair (only-A/only-B right)", ""]
    width = max(len(r["subset"]) for r in result["rows"]) + 2
    lines.append(f"{'subset':<{width}}{'n':>6}{la[:14]:>16}{lb[:14]:>16}{'diff':>8}  {'95% CI':<16}McNemar p (only A/only B)")

    def pm(s):
        return f"{100 * s['mean']:.2f}" + (f"+/-{100 * s['std']:.2f}" if s["n"] > 1 else "")

    for r in result["rows"]:
        bs = r["bootstrap"]
        ci = f"[{100 * bs['ci_low']:+.2f}, {100 * bs['ci_high']:+.2f}]"
        tests = "  ".join(f"{p['p_value']:.3g} ({p['only_a']}/{p['only_b']})" for p in r["pairs"])
        lines.append(f"{r['subset']:<{width}}{r['n']:>6}{pm(r['a']):>16}{pm(r['b']):>16}{100 * r['diff']:>+8.2f}  "
                     f"{ci:<16}{tests}")
    if any(len(r["a_per_seed"]) > 1 or len(r["b_per_seed"]) > 1 for r in result["rows"]):
        lines += ["", "per run, accuracy % (all images):"]
        row = result["rows"][0]
        for side, key in (("a", "a_per_seed"), ("b", "b_per_seed")):
            for name, acc in zip(result[side]["runs"], row[key]):
                lines.append(f"  {name:<24}{100 * acc:7.2f}")
    return "\n".join(lines)


def compare_runs(runs_a: Sequence[str | Path], runs_b: Sequence[str | Path], out: str | Path | None = None,
                 subsets: dict[str, str] | None = None, data: str | None = None, root: str | None = None,
                 split: str = "test", label_a: str | None = None, label_b: str | None = None,
                 n_boot: int = 10000, seed: int = 0, device: str = "auto", progress: bool = True) -> dict:
    """``lanfer compare``: paired comparison of run(s) A against run(s) B; see :func:`compare_groups`.

    ``subsets``: name -> pose-list file (e.g. ``{"pose45": ".../pose_45_ferplus_list.txt"}``). With ``out``,
    writes ``compare.json`` and ``compare.txt`` there and caches evaluated predictions in ``out/predictions/``.
    """
    cache = Path(out) / "predictions" if out is not None else None
    pa = [run_predictions(r, cache, data, root, split, device, progress) for r in runs_a]
    pb = [run_predictions(r, cache, data, root, split, device, progress) for r in runs_b]
    keep = {name: subset_paths(runs_a[0], path, data, root, split) for name, path in (subsets or {}).items()}
    result = compare_groups(pa, pb, keep, label_a or _common_label(pa), label_b or _common_label(pb),
                            n_boot=n_boot, seed=seed)
    result["split"] = split
    result["subset_files"] = {k: str(v) for k, v in (subsets or {}).items()}
    if out is not None:
        out = Path(out)
        atomic_write(out / "compare.json", lambda t: t.write_text(json.dumps(result, indent=2)))
        atomic_write(out / "compare.txt", lambda t: t.write_text(format_compare(result) + "\n"))
    return result


def _common_label(runs: Sequence[RunPredictions]) -> str:
    """``lan_s0, lan_s1`` -> ``lan_s*``: the names' common prefix, or the one name."""
    names = [r.name for r in runs]
    if len(names) == 1:
        return names[0]
    prefix = Path(names[0]).name
    for n in names[1:]:
        while not n.startswith(prefix):
            prefix = prefix[:-1]
    return (prefix + "*") if prefix else "+".join(names)
