"""Figures a person would rather look at than read: confusion matrices, loss curves, attention overlays."""
from __future__ import annotations

import base64
import io
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

# No matplotlib.use(...) here: forcing a backend on import would break inline figures in notebooks;
# without a display matplotlib picks the non-interactive Agg backend by itself.


def fig_to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def plot_confusion(cm: Sequence[Sequence[int]], classes: Sequence[str], title: str = ""):
    """Row-normalised confusion matrix with counts; rows are true classes."""
    cm = np.asarray(cm, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(0.55 * len(classes) + 2, 0.55 * len(classes) + 1.6))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), [c[:8] for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), [c[:8] for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_title(title, fontsize=9)
    return fig


def plot_curves(runs: dict[str, list[dict]], keys=("train_ce", "train_bce", "val_accuracy")):
    """One panel per metric key, one line per run (e.g. "LAN fold 1")."""
    keys = [k for k in keys if any(k in r for recs in runs.values() for r in recs)]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
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


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """image (H, W, 3) in [0, 1], heat (h, w) in [0, 1] -> (H, W, 3): the heat map upsampled and blended."""
    h = torch.from_numpy(np.asarray(heat, dtype=np.float32))[None, None]  # (1, 1, h, w)
    h = F.interpolate(h, size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()
    cmap = plt.get_cmap("jet")(np.clip(h, 0, 1))[..., :3]
    return (1 - alpha) * image + alpha * cmap


def attention_grid(images: np.ndarray, attention: np.ndarray, guidance: np.ndarray | None,
                   titles: Sequence[str]):
    """A row per sample: the face, F_m overlaid, and (if given) the guidance map overlaid.

    images: (B, H, W, 3) in [0, 1]; attention: (B, h, w); guidance: (B, h, w) of 0/1 or None.
    """
    cols = 3 if guidance is not None else 2
    b = len(images)
    fig, axes = plt.subplots(b, cols, figsize=(2.0 * cols, 2.0 * b), squeeze=False)
    for i in range(b):
        panels = [(images[i], titles[i]), (overlay(images[i], attention[i]), "attention F_m")]
        if guidance is not None:
            panels.append((overlay(images[i], guidance[i]), "guidance map"))
        for ax, (im, t) in zip(axes[i], panels):
            ax.imshow(np.clip(im, 0, 1))
            ax.set_title(t, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    return fig
