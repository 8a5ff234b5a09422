"""``lanfer report``: one self-contained HTML file for one or more runs (every figure embedded as a PNG data
URI, no network), each figure also written as a PNG next to it.

Sections: the metrics table (test split and every extra evaluation in a run's subfolders, e.g. ``pose45/``),
per-class recall, training curves (``metrics.jsonl``), confusion matrices (counts and row-normalised), the
reliability diagram of the test probabilities (``calibration`` in ``metrics.json``, with the ECE),
accuracy by every metadata column (``by`` in ``metrics.json``: view, |yaw| bin ...) and by evaluation
subset, a grid of correct and wrong test faces across classes and views with their attention overlays (F_m;
for the baseline, the CAM of its predicted class), the guidance summary, and a ``lanfer compare`` result.
The demo's report (:func:`write_demo_report`) is this report with the demo's fold table on top.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..io import atomic_write
from .figures import (face_grid, fig_to_png, plot_confusion, plot_curves, plot_grouped_accuracy, plot_guidance,
                      plot_reliability, png_data_uri)

_CSS = """body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 9px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.note{background:#fff6d5;padding:.7em;
border-left:4px solid #e0b000}img{max-width:100%}figure{margin:1em 0}figcaption{font-size:.85em;color:#555}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}"""


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


@dataclass
class Run:
    """What a run folder holds that the report shows."""

    name: str
    path: Path
    metrics: dict
    curves: list[dict]
    evals: dict[str, dict] = field(default_factory=dict)  # subfolder name -> its metrics.json (pose30 ...)
    config: dict | None = None

    @property
    def model_file(self) -> Path:
        return self.path / "best.safetensors"


def load_run(path: str | Path) -> Run:
    """Read a run folder (``metrics.json`` is required; ``metrics.jsonl``, ``config.yaml`` and subfolders with
    their own ``metrics.json`` are used when present)."""
    import yaml

    path = Path(path)
    if not (path / "metrics.json").is_file():
        raise FileNotFoundError(f"{path}: not a finished run (no metrics.json); lanfer train writes one at the end")
    evals = {d.name: json.loads((d / "metrics.json").read_text()) for d in sorted(path.iterdir())
             if d.is_dir() and (d / "metrics.json").is_file()}
    cfg = yaml.safe_load((path / "config.yaml").read_text()) if (path / "config.yaml").is_file() else None
    return Run(path.name, path, json.loads((path / "metrics.json").read_text()), read_jsonl(path / "metrics.jsonl"),
               evals, cfg)


def _resolve(where: str | None, run: Path) -> Path | None:
    """A path recorded in a run's config (relative to the folder training ran from): as given, else relative
    to each folder above the run."""
    if not where:
        return None
    p = Path(where)
    if p.exists() or p.is_absolute():
        return p if p.exists() else None
    for base in run.resolve().parents:
        if (base / p).exists():
            return base / p
    return None


def guidance_file(run: Run, given: str | Path | None = None) -> Path | None:
    """The guidance file a run trained with: ``given``, the run's own ``guidance.safetensors``, or the file its
    config names (``guidance.path``)."""
    if given is not None:
        p = Path(given)
        return p / "guidance.safetensors" if p.is_dir() else p
    if (run.path / "guidance.safetensors").is_file():
        return run.path / "guidance.safetensors"
    return _resolve(((run.config or {}).get("guidance") or {}).get("path"), run.path)


# ----------------------------------------------------------------------------------------------------
# The face grid


def _pick(labels: np.ndarray, groups: list[str], pool: int, seed: int = 0) -> list[int]:
    """Up to ``pool`` indices, round-robin over (class, group) cells in a seeded order, so every class and
    every view (group) is represented before any cell gets a second image."""
    rng = np.random.default_rng(seed)
    cells: dict[tuple, list[int]] = {}
    for i in rng.permutation(len(labels)):
        cells.setdefault((int(labels[i]), groups[i]), []).append(int(i))
    keys = sorted(cells)
    picks: list[int] = []
    depth = 0
    while len(picks) < min(pool, len(labels)):
        for key in keys:
            if depth < len(cells[key]) and len(picks) < pool:
                picks.append(cells[key][depth])
        depth += 1
    return picks


def _group_of(meta: dict) -> str:
    if "view" in meta:
        return str(meta["view"])
    if isinstance(meta.get("yaw"), (int, float)):
        from ..evaluate import yaw_bin

        return yaw_bin(meta["yaw"])
    return ""


def sample_grid(run: Run, per_class: int = 2, pool: int = 400, root: str | None = None,
                views: tuple[dict[str, str], str] | None = None):
    """(figure, caption) of correct and wrong test faces of every class, spread over views: ``per_class`` of
    each per class, chosen from a ``pool`` of test images spread over classes and views (so the whole test set
    is never evaluated). The view of a face is its ``view`` metadata, its |yaw| bin, or from ``views`` = (path ->
    view, the view of paths not in it), e.g. the pose subset it belongs to. None when the run has no model file."""
    from ..checkpoint import CheckpointError
    from ..config import ConfigError
    from ..data import EvalPreset, build_dataset_from_config, denormalize
    from ..data.base import DataError
    from ..evaluate import data_config_for
    from ..model import load_model
    from .cam import class_activation_maps

    if not run.model_file.is_file():
        return None
    model, info = load_model(run.model_file)
    data = str(run.path / "config.yaml") if (run.path / "config.yaml").is_file() else None
    try:
        cfg = data_config_for(info, data, root)
        if root is None and cfg.data.root and not Path(cfg.data.root).exists():
            cfg.data.root = str(_resolve(cfg.data.root, run.path) or cfg.data.root)
        split = cfg.data.test_split or "test"
        ds = build_dataset_from_config(cfg.data, split, transform=EvalPreset.from_info(info))
    except (DataError, CheckpointError, ConfigError, FileNotFoundError) as e:
        return None, f"(no face grid for {run.name}: {e})"
    labels = np.array([s.label if np.ndim(s.label) == 0 else int(np.argmax(s.label)) for s in ds.samples])
    groups = [views[0].get(s.path, views[1]) if views else _group_of(s.meta) for s in ds.samples]
    idx = _pick(labels, groups, pool)
    items = [ds[i] for i in idx]
    x = torch.stack([it[0] for it in items])  # (P, 3, S, S)
    maps = []
    with torch.no_grad():
        for chunk in torch.split(x, 64):
            res = class_activation_maps(model, chunk, info=info)  # CAM of the predicted class
            heat = res.attention if res.attention is not None else res.cam_f  # (b, h, w)
            if res.attention is None:  # scale each CAM to [0, 1] for display
                lo = heat.amin(dim=(1, 2), keepdim=True)
                heat = (heat - lo) / (heat.amax(dim=(1, 2), keepdim=True) - lo).clamp_min(1e-8)
            maps.append((res.classes, heat))  # the predicted class, at the model's operating point
    preds = torch.cat([p for p, _ in maps]).numpy()
    heats = torch.cat([h for _, h in maps]).numpy()
    chosen: list[int] = []
    for k in range(len(ds.classes)):
        for want in (True, False):
            cand = [j for j in range(len(idx)) if labels[idx[j]] == k and (preds[j] == k) == want]
            chosen += cand[:per_class]
    images = denormalize(x[chosen], info.normalize).permute(0, 2, 3, 1).numpy()
    titles = []
    for j in chosen:
        g = groups[idx[j]]
        titles.append(f"true {ds.classes[labels[idx[j]]]}\npred {ds.classes[preds[j]]}" + (f"\n{g}" if g else ""))
    fig = face_grid(images, [heats[j] for j in chosen], titles, [preds[j] == labels[idx[j]] for j in chosen],
                    columns=4 * per_class if per_class <= 2 else 2 * per_class,
                    heat_name="attention F_m" if model.head is not None else "CAM of the predicted class")
    cap = (f"{run.name}: per class, up to {per_class} correctly (green) and {per_class} wrongly (red) classified "
           f"test faces, from {len(idx)} test images spread over classes and views, with "
           + ("LAN's attention map F_m" if model.head is not None else "the CAM of the predicted class (baseline: no F_m)")
           + " overlaid. A class with too few errors (or hits) among them shows fewer faces.")
    return fig, cap


# ----------------------------------------------------------------------------------------------------
# The page


def _pct(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.2f}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80]


class _Page:
    """Collects HTML parts and figures; every figure goes into the page and into ``figures/<name>.png``."""

    def __init__(self, figures: Path):
        self.parts: list[str] = []
        self.figures = figures
        self.written: list[Path] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, fig, name: str, caption: str = "", width: str = "100%", dpi: int = 110) -> None:
        if fig is None:
            return
        png = fig_to_png(fig, dpi=dpi)
        path = self.figures / f"{len(self.written):02d}_{_slug(name)}.png"
        atomic_write(path, lambda t: t.write_bytes(png))
        self.written.append(path)
        self.add(f"<figure><img src='{png_data_uri(png)}' style='width:{width}' alt='{html.escape(name)}'>"
                 + (f"<figcaption>{html.escape(caption)}</figcaption>" if caption else "") + "</figure>")


def _metrics_table(runs: Sequence[Run]) -> str:
    evals = list(dict.fromkeys(k for r in runs for k in r.evals))
    head = "".join(f"<th>{html.escape(e)}</th>" for e in evals)
    rows = ["<table><tr><th>run</th><th>images</th><th>accuracy %</th><th>mean class %</th><th>ECE %</th>"
            + head + "</tr>"]
    for r in runs:
        m = r.metrics
        cells = "".join(f"<td>{_pct(r.evals[e].get('accuracy')) if e in r.evals else ''}"
                        + (f" (n={r.evals[e].get('n')})" if e in r.evals else "") + "</td>" for e in evals)
        rows.append(f"<tr><td>{html.escape(r.name)}</td><td>{m.get('n', '')}</td><td>{_pct(m.get('accuracy'))}</td>"
                    f"<td>{_pct(m.get('mean_class_accuracy'))}</td><td>{_pct(m.get('ece'))}</td>{cells}</tr>")
    rows.append("</table>")
    classes = runs[0].metrics.get("classes", [])
    if classes:
        rows.append("<table><tr><th>per-class recall %</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in classes)
                    + "</tr>")
        for r in runs:
            rec = r.metrics.get("per_class_recall", {})
            rows.append(f"<tr><td>{html.escape(r.name)}</td>" + "".join(f"<td>{_pct(rec.get(c))}</td>" for c in classes)
                        + "</tr>")
        sup = runs[0].metrics.get("support", {})
        rows.append("<tr><td>support (test images)</td>" + "".join(f"<td>{sup.get(c, '')}</td>" for c in classes)
                    + "</tr></table>")
    return "\n".join(rows)


def _compare_html(result: dict) -> str:
    la, lb = html.escape(result["a"]["label"]), html.escape(result["b"]["label"])
    parts = [f"<p>A = {la}: {html.escape(', '.join(result['a']['runs']))}; B = {lb}: "
             f"{html.escape(', '.join(result['b']['runs']))}. Paired on the same {result['n_images']} images. "
             "Accuracy in % (mean &plusmn; std over runs), the difference A &minus; B in points with its 95% "
             "bootstrap interval (images resampled), and McNemar's exact p of each seed-matched pair "
             "(images only A / only B gets right).</p>",
             f"<table><tr><th>subset</th><th>n</th><th>{la}</th><th>{lb}</th><th>A &minus; B</th><th>95% CI</th>"
             "<th>McNemar p (only A / only B)</th></tr>"]
    for r in result["rows"]:
        def pm(s):
            return f"{100 * s['mean']:.2f}" + (f" &plusmn; {100 * s['std']:.2f}" if s["n"] > 1 else "")
        bs = r["bootstrap"]
        tests = "<br>".join(f"{p['p_value']:.3g} ({p['only_a']}/{p['only_b']})" for p in r["pairs"])
        parts.append(f"<tr><td>{html.escape(r['subset'])}</td><td>{r['n']}</td><td>{pm(r['a'])}</td><td>{pm(r['b'])}</td>"
                     f"<td>{100 * r['diff']:+.2f}</td><td>[{100 * bs['ci_low']:+.2f}, {100 * bs['ci_high']:+.2f}]</td>"
                     f"<td>{tests}</td></tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _subset_views(run: Run, compare: dict | None, root: str | None) -> tuple[dict[str, str], str] | None:
    """(path -> the last subset list of a comparison that names the image, e.g. pose45 after pose30; the
    view of the other images): views for datasets without view metadata (FERPlus and its Pose lists)."""
    import warnings

    files = (compare or {}).get("subset_files") or {}
    if not files:
        return None
    from .compare import subset_paths

    views: dict[str, str] = {}
    try:
        for name, f in files.items():
            for p in subset_paths(run.path, f, root=root):
                views[p] = name
    except (OSError, ValueError) as e:
        warnings.warn(f"report: the comparison's subset lists could not be read ({e}); the face grid of "
                      f"{run.name} is spread over classes only")
        return None
    return views, "not in " + "/".join(files)


def write_report(runs: Sequence[str | Path], out: str | Path, compare: str | Path | dict | None = None,
                 guidance: str | Path | None = None, root: str | None = None, per_class: int = 2,
                 title: str | None = None, intro_html: str = "", grids: int = 3) -> Path:
    """Write the report of ``runs`` to ``out`` (an .html file) and its figures to ``<out stem>_figures/``.

    Args:
        compare: a ``compare.json`` of ``lanfer compare`` (or its dict) to include.
        guidance: the guidance file to summarise (default: each run's own, see :func:`guidance_file`).
        root: the dataset root, where the runs' configs name a place that does not exist here.
        per_class: correct and wrong faces per class in the face grids.
        intro_html: HTML placed after the title (the demo's table).
        grids: face grids for at most this many runs (each evaluates a pool of test images).
    """
    loaded = [load_run(r) for r in runs]
    if not loaded:
        raise FileNotFoundError("lanfer report: no run folders given")
    out = Path(out)
    page = _Page(out.with_name(out.stem + "_figures"))
    title = title or "lanfer report: " + ", ".join(r.name for r in loaded)
    page.add(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>")
    if intro_html:
        page.add(intro_html)
    page.add("<h2>Metrics</h2>" + _metrics_table(loaded))
    curves = {r.name: r.curves for r in loaded if r.curves}
    if curves:
        page.add("<h2>Training curves</h2>")
        page.figure(plot_curves(curves), "training_curves", "per epoch, from each run's metrics.jsonl")
    page.add("<h2>Confusion matrices</h2>")
    for r in loaded:
        if r.metrics.get("confusion_matrix"):
            page.figure(plot_confusion(r.metrics["confusion_matrix"], r.metrics["classes"], r.name),
                        f"confusion_{r.name}", width="80%")
    calibrated = {r.name: {**r.metrics["calibration"], "ece": r.metrics["ece"]} for r in loaded
                  if r.metrics.get("calibration") and "ece" in r.metrics}
    if calibrated:
        page.add("<h2>Calibration</h2>")
        page.figure(plot_reliability(calibrated), "reliability", "test split, 15 equal-width bins of the top-1 "
                    "confidence: a point below the diagonal is over-confident; ECE is the bins' mean |accuracy - "
                    "confidence| weighted by their share of images (lanfer calibrate fits the temperature T)",
                    width="45%")
    by_key: dict[str, dict[str, dict]] = {}
    for r in loaded:
        for key, groups in (r.metrics.get("by") or {}).items():
            by_key.setdefault(key, {})[r.name] = groups
        if r.evals:
            by_key.setdefault("evaluation subset", {})[r.name] = {
                "all test": {"accuracy": r.metrics["accuracy"], "n": r.metrics.get("n", 0)},
                **{k: {"accuracy": m["accuracy"], "n": m.get("n", 0)} for k, m in r.evals.items()}}
    if by_key:
        page.add("<h2>Accuracy by metadata</h2>")
        for key, groups in by_key.items():
            page.figure(plot_grouped_accuracy(key, groups), f"accuracy_by_{key}", width="50%")
    result = None
    if compare is not None:
        result = compare if isinstance(compare, dict) else json.loads(Path(compare).read_text())
    grid_runs = [r for r in loaded if r.model_file.is_file()][:grids]
    if grid_runs:
        page.add("<h2>Test faces, correct and wrong, with attention</h2>")
        for r in grid_runs:
            made = sample_grid(r, per_class=per_class, root=root, views=_subset_views(r, result, root))
            if made is None:
                continue
            fig, cap = made
            if fig is None:
                page.add(f"<p>{html.escape(cap)}</p>")
            else:
                page.figure(fig, f"faces_{r.name}", cap, dpi=80)
    gfiles = list(dict.fromkeys(g for g in (guidance_file(r, guidance) for r in loaded) if g is not None and g.is_file()))
    if gfiles:
        from ..guidance import Guidance

        page.add("<h2>Guidance map</h2>")
        for g in gfiles:
            gd = Guidance.load(g)
            frac = gd.attentive_fraction().numpy().reshape(gd.height, gd.width)
            page.figure(plot_guidance(frac, f"attentive share per position ({g.parent.name}/{g.name})"),
                        f"guidance_{g.parent.name}", "per feature-map position, the share of the training images "
                        "whose feature falls in the smaller ('attentive') K=2 cluster", width="45%")
            page.add(f"<pre>{html.escape(gd.summary())}</pre>")
    if result is not None:
        page.add("<h2>Paired comparison</h2>" + _compare_html(result))
    page.add("</body></html>")
    atomic_write(out, lambda t: t.write_text("\n".join(page.parts)))
    return out


# ----------------------------------------------------------------------------------------------------
# The demo's page


def _spread_pct(s: dict | None) -> str:
    return "n/a" if s is None else f"{100 * s['mean']:.1f} &plusmn; {100 * s['std']:.1f}"


def write_demo_report(out: Path, summary: dict) -> Path:
    """``OUT/report.html`` for :func:`lanfer.demo.run_demo`: the demo's fold table, then :func:`write_report`
    over every fine-tuning run (face grids for fold 1's two models)."""
    from ..data.kdef import KDEF_VIEWS

    cfg = summary["config"]
    parts = ["<p class='note'><b>Synthetic data.</b> These numbers come from faces drawn by lanfer's procedural "
             "renderer, with a backbone pretrained on synthetic identities. They show the pipeline running end "
             "to end and whatever the comparison gives on this data; they are not results on KDEF or any "
             "real dataset.</p>",
             f"<p>{cfg['identities']} identities x 2 sessions x 7 expressions x 5 views at {cfg['image_size']} px; "
             f"{cfg['folds']} identity-disjoint folds; {cfg['epochs']} fine-tuning epochs; seed {cfg['seed']}. "
             f"Identity accuracy of the pretrained backbone: "
             f"{100 * (summary.get('pretrain_identity_accuracy') or float('nan')):.1f}%.</p>",
             "<h2>Accuracy on held-out identities (%, mean &plusmn; std over folds)</h2><table><tr><th>model</th>"
             "<th>overall</th><th>mean class</th>"
             + "".join(f"<th>{v} ({yaw:+d}&deg;)</th>" for v, yaw in KDEF_VIEWS.items()) + "</tr>"]
    for m in summary["models"].values():
        parts.append(f"<tr><td>{html.escape(m['label'])}</td><td>{_spread_pct(m['accuracy'])}</td>"
                     f"<td>{_spread_pct(m['mean_class_accuracy'])}</td>"
                     + "".join(f"<td>{_spread_pct(m['by_view'].get(v))}</td>" for v in KDEF_VIEWS) + "</tr>")
    parts.append("</table>")
    if "pixels" in summary["models"]:
        parts.append("<p class='note'>'Linear, raw pixels' is L2 logistic regression on the 32x32 pixels of the "
                     "same folds' training pictures: the floor a CNN must clear before its numbers mean "
                     "anything (lanfer.pixel_baseline).</p>")
    if "timings_s" in summary:
        parts.append("<p>Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in summary["timings_s"].items())
                     + "</p>")
    parts.append("<p>Below: every fine-tuning run of the demo (one per model and fold).</p>")
    runs = [Path(f["run"]) for name, m in summary["models"].items() if name != "pixels"
            for f in m["folds"] if f.get("run") and (Path(f["run"]) / "metrics.json").is_file()]
    runs.sort(key=lambda p: (not p.name.endswith("fold0"), not p.name.startswith("lan"), p.name))  # fold 1 LAN first
    return write_report(runs, out / "report.html", title="lanfer demo: LAN vs ResNet-18 on synthetic multi-view faces",
                        intro_html="\n".join(parts), grids=2)
