"""Figures a person would rather look at than read: confusion matrices, training curves, accuracy by
metadata, reliability diagrams, face grids with attention overlays, the guidance summary, the alpha curve.
Each function returns a matplotlib figure; :func:`fig_to_png` renders it (and closes it). Heat maps on faces
go through :func:`lanfer.predict.overlays.heat_overlay`, the one overlay of the package.
"""
from __future__ import annotations

import base64
import io
from typing import Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # headless by default; an already chosen backend (a notebook's) is kept
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..predict.overlays import heat_overlay  # noqa: E402


def fig_to_png(fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def plot_confusion(cm: Sequence[Sequence[int]], classes: Sequence[str], title: str = ""):
    """Two panels: counts, and row-normalised (each true class sums to 1). Rows are true classes."""
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    k = len(classes)
    fig, axes = plt.subplots(1, 2, figsize=(1.1 * k + 3.5, 0.55 * k + 1.8))
    for ax, values, what in ((axes[0], cm, "counts"), (axes[1], norm, "row-normalised")):
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)  # both coloured by the row share, so they read alike
        ax.set_xticks(range(k), list(classes), rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), list(classes), fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i in range(k):
            for j in range(k):
                text = f"{int(values[i, j])}" if what == "counts" else f"{values[i, j]:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=6.5,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_title(f"{title} ({what})" if title else what, fontsize=9)
    fig.tight_layout()
    return fig


def plot_curves(runs: dict[str, list[dict]], keys=("train_loss", "train_ce", "train_bce", "train_accuracy",
                                                    "val_accuracy", "train_guidance_frac")):
    """One panel per metric key found, one line per run; x is the epoch."""
    keys = [k for k in keys if any(k in r for recs in runs.values() for r in recs)]
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.4 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, recs in runs.items():
            xs = [r["epoch"] for r in recs if key in r]
            ys = [r[key] for r in recs if key in r]
            if xs:
                ax.plot(xs, ys, marker="o", ms=3, label=name)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_grouped_accuracy(key: str, groups: dict[str, dict[str, dict]]):
    """Bar chart of accuracy per value of one metadata column, one bar per run within each value.

    ``groups``: run name -> value -> ``{"accuracy", "n"}`` (the ``by`` section of metrics.json)."""
    values = list(dict.fromkeys(v for g in groups.values() for v in g))
    runs = list(groups)
    width = 0.8 / max(len(runs), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(values) * max(len(runs), 1) + 1.5), 3.0))
    for i, run in enumerate(runs):
        ys = [100 * groups[run][v]["accuracy"] if v in groups[run] else np.nan for v in values]
        xs = np.arange(len(values)) + (i - (len(runs) - 1) / 2) * width
        ax.bar(xs, ys, width=width, label=run)
    ns = [next((groups[r][v]["n"] for r in runs if v in groups[r]), 0) for v in values]
    ax.set_xticks(range(len(values)), [f"{v}\n(n={n})" for v, n in zip(values, ns)], fontsize=7)
    ax.set_ylabel("accuracy %")
    ax.set_ylim(0, 100)
    ax.set_title(f"accuracy by {key}", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_reliability(runs: dict[str, dict]):
    """Reliability diagram (Guo et al. 2017): per run, the accuracy of each top-1 confidence bin against its
    mean confidence (the diagonal is perfect calibration), with the share of images per bin below.

    ``runs``: run name -> the ``calibration`` section of metrics.json plus its ``ece``."""
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.2, 5.0), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect calibration")
    width = 0.8 / max(len(runs), 1)
    for i, (name, cal) in enumerate(runs.items()):
        bins = [b for b in cal["reliability"] if b["n"]]
        conf = [b["confidence"] for b in bins]
        ax.plot(conf, [b["accuracy"] for b in bins], marker="o", ms=3,
                label=f"{name}: ECE {100 * cal['ece']:.2f}% (T {cal['temperature']:.3g}, tau {cal['prior_tau']:g})")
        total = sum(b["n"] for b in bins)
        centres = [(b["lo"] + b["hi"]) / 2 for b in bins]
        step = bins[0]["hi"] - bins[0]["lo"] if bins else 1
        hist.bar(np.asarray(centres) + (i - (len(runs) - 1) / 2) * width * step, [b["n"] / total for b in bins],
                 width=width * step)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy in the bin")
    ax.set_title("reliability (top-1 confidence)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="upper left")
    hist.set_xlabel("confidence")
    hist.set_ylabel("share of images")
    hist.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def face_grid(images: np.ndarray, heats: Sequence[np.ndarray | None], titles: Sequence[str], correct: Sequence[bool],
              columns: int, heat_name: str = "attention"):
    """Faces in a grid, each with its heat map (F_m or a CAM, (h, w) in [0, 1]) overlaid at the face's
    resolution; titles in green for correct predictions, red for wrong ones.

    images: (N, S, S, 3) in [0, 1]; ``titles`` e.g. ``"true anger\\npred sadness"`` (full class names)."""
    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.75 * columns, 2.35 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes[i // columns][i % columns]
        im = images[i] if heats[i] is None else heat_overlay(images[i], heats[i])
        ax.imshow(np.clip(im, 0, 1))
        ax.set_title(titles[i], fontsize=6.5, color="#17803a" if correct[i] else "#c0272d")
    fig.suptitle(f"overlay: {heat_name} (jet: blue 0, red 1)", fontsize=8)
    fig.tight_layout()
    return fig


def plot_guidance(fraction: np.ndarray, title: str = "guidance: attentive share per position"):
    """The guidance summary as a heat map: per feature-map position, the share of the training set in the
    attentive cluster, with the value printed in each cell. fraction: (H, W) in [0, 1]."""
    h, w = fraction.shape
    fig, ax = plt.subplots(figsize=(0.5 * w + 1.8, 0.5 * h + 1.0))
    im = ax.imshow(fraction, cmap="viridis", vmin=0, vmax=0.5)
    for i in range(h):
        for j in range(w):
            ax.text(j, i, f"{fraction[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if fraction[i, j] < 0.3 else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def plot_alpha_curve(rows: Sequence[dict], metric: str = "accuracy"):
    """Accuracy against alpha (paper Figure 7), one line per fusion with +/- std error bars over seeds.

    ``rows``: ``{"fusion", "alpha", metric: {"mean", "std", "n"}}`` per grid cell (seeds pooled)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for fusion in dict.fromkeys(r["fusion"] for r in rows):
        pts = sorted((r["alpha"], r[metric]) for r in rows if r["fusion"] == fusion)
        ax.errorbar([a for a, _ in pts], [100 * s["mean"] for _, s in pts], yerr=[100 * s["std"] for _, s in pts],
                    marker="o", ms=4, capsize=3, label=fusion)
    ax.set_xlabel("alpha (weight of the guidance loss)")
    ax.set_ylabel(f"test {metric.replace('_', ' ')} %")
    ax.grid(alpha=0.3)
    ax.legend(title="fusion", fontsize=7)
    fig.tight_layout()
    return fig
