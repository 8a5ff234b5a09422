"""HTML reports: one self-contained file (figures embedded as PNG data URIs) per demo or run."""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import torch

from ..data.kdef import KDEF_VIEWS
from .figures import attention_grid, fig_to_png, plot_confusion, plot_curves, png_data_uri

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.note{background:#fff6d5;padding:.7em;
border-left:4px solid #e0b000}img{max-width:100%}"""


def _pct(s: dict | None) -> str:
    return "n/a" if s is None else f"{100 * s['mean']:.1f} &plusmn; {100 * s['std']:.1f}"


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def attention_samples(run: Path, data_root: Path, fold: int, folds: int, n: int = 6):
    """Load a LAN run's best model and guidance, and compute F_m and guidance maps for ``n`` test images
    spread over the views. Returns the figure."""
    from ..data import EvalPreset, build_dataset, denormalize
    from ..model import load_model
    from ..guidance import Guidance

    model, info = load_model(run / "best.safetensors")
    gpath = run / "guidance.safetensors"
    guidance = Guidance.load(gpath) if gpath.is_file() else None
    ds = build_dataset("kdef", data_root, "test", transform=EvalPreset.from_info(info),
                       fold=fold, folds=folds)
    # one image per view first, then fill up: the point of the figure is attention under pose
    by_view: dict[str, list[int]] = {}
    for i, s in enumerate(ds.samples):
        by_view.setdefault(str(s.meta.get("view")), []).append(i)
    picks: list[int] = []
    k = 0
    while len(picks) < min(n, len(ds)):
        for v in sorted(by_view):
            if k < len(by_view[v]) and len(picks) < n:
                picks.append(by_view[v][k])
        k += 1
    items = [ds[i] for i in picks]
    x = torch.stack([it[0] for it in items])  # (B, 3, S, S)
    with torch.no_grad():
        out = model(x, return_maps=True)
    att = out.attention[:, 0].numpy()  # (B, h, w)
    gm = guidance.assign(out.features)[:, 0].numpy() if guidance is not None else None
    imgs = denormalize(x, info.normalize).permute(0, 2, 3, 1).numpy()
    preds = out.logits.argmax(1).tolist()
    titles = [f"{it[2].get('view', '')} true {ds.classes[it[1]][:8]}\npred {ds.classes[p][:8]}"
              for it, p in zip(items, preds)]
    return attention_grid(imgs, att, gm, titles)


def write_demo_report(out: Path, summary: dict) -> Path:
    """``OUT/report.html`` for :func:`lanfer.demo.run_demo`."""
    cfg = summary["config"]
    parts = [f"<html><head><meta charset='utf-8'><title>lanfer demo</title><style>{_CSS}</style></head><body>",
             "<h1>lanfer demo: LAN vs ResNet-18 on synthetic multi-view faces</h1>",
             "<p class='note'><b>Synthetic data.</b> These numbers come from faces drawn by lanfer's procedural "
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
        parts.append(f"<tr><td>{html.escape(m['label'])}</td><td>{_pct(m['accuracy'])}</td>"
                     f"<td>{_pct(m['mean_class_accuracy'])}</td>"
                     + "".join(f"<td>{_pct(m['by_view'].get(v))}</td>" for v in KDEF_VIEWS) + "</tr>")
    parts.append("</table>")
    if "pixels" in summary["models"]:
        parts.append("<p class='note'>'Linear, raw pixels' is L2 logistic regression on the 32x32 pixels of the "
                     "same folds' training pictures: the floor a CNN must clear before its numbers mean "
                     "anything (lanfer.pixel_baseline).</p>")
    if "timings_s" in summary:
        parts.append("<p>Wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in summary["timings_s"].items())
                     + "</p>")
    parts.append("<h2>Confusion matrices (all folds)</h2>")
    for m in summary["models"].values():
        png = fig_to_png(plot_confusion(m["confusion_matrix"], m["classes"], m["label"]))
        parts.append(f"<img src='{png_data_uri(png)}' style='width:45%'>")
    curves = {}
    for name, m in summary["models"].items():
        for k, f in enumerate(m["folds"]):
            if f.get("run"):
                curves[f"{m['label']} fold {k + 1}"] = read_jsonl(Path(f["run"]) / "metrics.jsonl")
    if curves:
        parts.append("<h2>Training curves</h2>")
        parts.append(f"<img src='{png_data_uri(fig_to_png(plot_curves(curves)))}'>")
    lan_run = out / "lan_resnet18_fold0"
    if (lan_run / "best.safetensors").is_file():
        fig = attention_samples(lan_run, out / "data" / "expressions", 0, cfg["folds"])
        parts.append("<h2>Attention F_m and guidance maps (LAN, fold 1 test identities)</h2>"
                     "<p>Left: the aligned face; middle: LAN's attention map F_m; right: the binary guidance "
                     "map from the K=2 clustering (1 = the feature is nearer the smaller, 'attentive' cluster)."
                     "</p>")
        parts.append(f"<img src='{png_data_uri(fig_to_png(fig))}' style='width:40%'>")
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts))
    return path
