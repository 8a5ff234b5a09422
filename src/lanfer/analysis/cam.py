"""Class activation maps (Zhou et al., CVPR 2016) of LAN's features, and ``lanfer cam``'s figures.

A classifier on globally pooled features, ``logit_c = sum_k W_ck GAP(F)_k + b_c``, is a spatial average of the
map ``CAM_c(h, w) = sum_k W_ck F_k(h, w)``: ``logit_c = mean_hw CAM_c + b_c``. LAN pools two maps, F_o and
F_a = F_o * F_m, so its logit splits into one CAM per map (paper Figure 3):

* ``add`` (the paper's), f = GAP(F_o) + GAP(F_a): CAM_o = W_c . F_o, CAM_a = W_c . F_a, and the CAM of the
  fused f is CAM_o + CAM_a (GAP is linear);
* ``average``, f = (GAP(F_o) + GAP(F_a)) / 2: the same maps halved, so that still mean_hw CAM_f + b_c = logit_c;
* ``concat``, f = [GAP(F_o), GAP(F_a)]: the FC weight splits into W_o (first C columns) and W_a (last C);
  CAM_o = W_o,c . F_o, CAM_a = W_a,c . F_a, CAM_f = CAM_o + CAM_a.

The baseline (no LAN head) has CAM_o only, which is also its CAM_f. In every case the spatial mean of CAM_f
plus the bias is the class logit (tested), so the maps split the decision without approximation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..calibration import adjust_logits, probabilities
from ..predict.overlays import heat_overlay


@dataclass
class CAMResult:
    """CAMs of one batch for one class per image; maps are (B, H, W) on the feature lattice."""

    logits: torch.Tensor  # (B, K)
    classes: torch.Tensor  # (B,) the class each CAM is for
    cam_o: torch.Tensor  # (B, H, W) from F_o
    cam_a: torch.Tensor | None  # (B, H, W) from F_a = F_o * F_m; None for the baseline
    cam_f: torch.Tensor  # (B, H, W) of the fused f; mean over (H, W) + bias = the class logit
    attention: torch.Tensor | None  # F_m, (B, H, W); None for the baseline
    features: torch.Tensor  # F_o, (B, C, H, W), for the guidance map


@torch.no_grad()
def class_activation_maps(model: torch.nn.Module, x: torch.Tensor, target: int | Sequence[int] | None = None,
                          info=None) -> CAMResult:
    """CAMs of ``model`` (a :class:`lanfer.model.FERNet`, in eval mode) for a batch ``x`` (B, 3, S, S).

    ``target``: one class index for every image, one per image, or None for each image's predicted class (at
    the operating point of ``info``, the model's :class:`~lanfer.info.ModelInfo`: its prior adjustment can
    change the class; None: the argmax of the logits).
    """
    out = model(x, return_maps=True)
    f_o = out.features.float()  # (B, C, H, W)
    b, c = f_o.shape[:2]
    if target is None:
        cls = adjust_logits(out.logits, info).argmax(1)
    else:
        cls = torch.as_tensor(target, dtype=torch.long).expand(b) if np.ndim(target) == 0 else \
            torch.as_tensor(list(target), dtype=torch.long)
    w = model.fc.weight.float()[cls]  # (B, D): the FC row of each image's class
    fusion = getattr(model, "fusion", "none")
    if out.attention is None:
        cam_o = torch.einsum("bc,bchw->bhw", w, f_o)
        return CAMResult(out.logits, cls, cam_o, None, cam_o, None, f_o)
    f_m = out.attention.float()  # (B, 1, H, W)
    f_a = f_o * f_m  # (B, C, H, W)
    if fusion == "concat":
        w_o, w_a = w[:, :c], w[:, c:]  # (B, C) each
    elif fusion == "average":
        w_o = w_a = w / 2
    elif fusion == "add":
        w_o = w_a = w
    else:
        raise ValueError(f"class_activation_maps: unknown fusion {fusion!r}")
    cam_o = torch.einsum("bc,bchw->bhw", w_o, f_o)
    cam_a = torch.einsum("bc,bchw->bhw", w_a, f_a)
    return CAMResult(out.logits, cls, cam_o, cam_a, cam_o + cam_a, f_m[:, 0], f_o)


def scale_maps(maps: Sequence[np.ndarray]) -> tuple[list[np.ndarray], float, float]:
    """Min-max scale several maps of one image to [0, 1] on a common scale, so that their magnitudes stay
    comparable (CAM_f = CAM_o + CAM_a: a weak CAM_a looks weak). Returns (scaled maps, low, high)."""
    lo = min(float(np.min(m)) for m in maps)
    hi = max(float(np.max(m)) for m in maps)
    span = hi - lo if hi > lo else 1.0
    return [(np.asarray(m, dtype=np.float32) - lo) / span for m in maps], lo, hi


def overlays(image: np.ndarray, maps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each (h, w) map in [0, 1] upsampled and blended onto ``image`` (H, W, 3) in [0, 1]: (H, W, 3) each."""
    return [heat_overlay(image, m) for m in maps]


# ----------------------------------------------------------------------------------------------------
# Figures and ``lanfer cam``


@dataclass
class _Model:
    name: str
    model: torch.nn.Module
    info: object
    guidance: object | None


def _panels(entry: _Model, x: torch.Tensor, target: int | None) -> tuple[list, str, dict]:
    """(panels [(title, heat (h, w) in [0, 1] or None for the bare image)], row title, numbers) of one model."""
    res = class_activation_maps(entry.model, x, target, entry.info)
    classes = list(entry.info.classes)
    probs = probabilities(res.logits, entry.info)[0]  # (K,) at the model's operating point
    pred = int(probs.argmax())
    k = int(res.classes[0])
    maps = [res.cam_o[0].numpy()] + ([res.cam_a[0].numpy(), res.cam_f[0].numpy()] if res.cam_a is not None else [])
    scaled, lo, hi = scale_maps(maps)
    names = ["CAM of F_o"] + (["CAM of F_a", "CAM of f = F_o + F_a"] if res.cam_a is not None else [])
    panels: list = [("input", None)] + list(zip(names, scaled))
    if res.attention is not None:
        panels.append(("attention F_m", res.attention[0].numpy()))
    if entry.guidance is not None and res.attention is not None:  # the guidance is LAN's target for F_m
        panels.append(("guidance map", entry.guidance.assign(res.features)[0, 0].numpy()))
    title = f"{entry.name}: pred {classes[pred]} ({probs[pred]:.2f}); CAM for {classes[k]}"
    return panels, title, {"model": entry.name, "pred": classes[pred], "p_pred": float(probs[pred]),
                           "cam_class": classes[k], "cam_low": lo, "cam_high": hi}


def cam_figure(rows: Sequence[tuple[str, np.ndarray, list]], suptitle: str = ""):
    """One row per model ``(title, image (S, S, 3) in [0, 1], panels)``: each (name, heat (h, w) in [0, 1])
    panel overlaid on the image at its resolution (heat None: the bare image), and one colour bar."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cols = max(len(p) for _, _, p in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.1 * cols + 0.6, 2.35 * len(rows) + 0.3), squeeze=False)
    for r, (title, image, panels) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(panels):
                continue
            name, heat = panels[c]
            ax.imshow(np.clip(image if heat is None else heat_overlay(image, heat), 0, 1))
            ax.set_title(name, fontsize=8)
        axes[r][0].text(0, -0.22, title, transform=axes[r][0].transAxes, fontsize=8, va="top")
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="jet"), ax=axes.ravel().tolist(), fraction=0.02, pad=0.01)
    bar.set_label("CAM: row min (0) to row max (1); F_m, guidance: value", fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return fig


def load_face(path: str | Path, info, detect: bool = False, detector: str | None = None) -> np.ndarray:
    """The face of an image file as (H, W, 3) uint8: the whole image (an aligned crop), or with ``detect`` the
    largest face found by ``detector`` (a registered name; None: the default, BlazeFace; ``"mtcnn"`` needs
    ``lanfer[faces]``) cut with the model record's crop."""
    from ..data.base import DataError, load_image

    image = np.array(load_image(path).convert("RGB"))  # writable: torch refuses read-only arrays
    if not detect:
        return image
    from ..faces import DEFAULT_DETECTOR, crop_face, get_detector

    faces = get_detector(detector or DEFAULT_DETECTOR).detect([image])[0]
    if not faces:
        raise DataError(f"{path}: no face detected; pass an aligned face crop without --detect")
    face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    return crop_face(image, face.landmarks, face.box, info.input_size, info.crop)


def run_cam(images: Sequence[str | Path], out: str | Path, models: Sequence[str | Path] | None = None,
            class_name: str | None = None, guidance: str | Path | None = None, labels: dict[str, str] | None = None,
            detect: bool = False, detector: str | None = None) -> list[Path]:
    """``lanfer cam``: one PNG per image in ``out`` with a row per model (default: the shipped model).

    Each row shows the model's input, its CAMs (F_o; for LAN also F_a and f) for the predicted class (or
    ``class_name``), LAN's attention F_m and, with ``guidance`` (a guidance file, or a run folder's
    ``guidance.safetensors``), LAN's guidance map (the target F_m was trained towards: the guidance
    assignment of the model's own F_o), all at the input's resolution. ``labels`` maps an image path
    to its true class name, shown in the title. Also writes ``cam.json`` with each row's numbers.
    ``detect``: the images are photos; the largest face ``detector`` finds (default BlazeFace) is cut.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from ..checkpoint import CheckpointError
    from ..data import EvalPreset, denormalize
    from ..guidance import Guidance
    from ..io import atomic_write
    from ..model import load_model
    from ..pretrained import find

    entries: list[_Model] = []
    for spec in models or [None]:
        path = Path(spec) if spec is not None and Path(spec).exists() else None
        if path is None:
            shipped = find(None if spec is None else str(spec))
            path, name = shipped.path, shipped.name
        else:
            path = path / "best.safetensors" if path.is_dir() else path
            name = path.parent.name if path.stem == "best" else path.stem
        model, info = load_model(path)
        g = None
        gfile = Path(guidance) if guidance is not None else (path.parent / "guidance.safetensors")
        if guidance is not None or gfile.is_file():
            g = Guidance.load(gfile / "guidance.safetensors" if gfile.is_dir() else gfile)
        entries.append(_Model(name, model, info, g))
    first = entries[0].info
    target = None
    if class_name is not None:
        if class_name not in first.classes:
            raise CheckpointError(f"--class {class_name!r} is not a class of {entries[0].name}: {', '.join(first.classes)}")
        target = list(first.classes).index(class_name)
    for e in entries[1:]:
        if class_name is not None and list(e.info.classes) != list(first.classes):
            raise CheckpointError(f"--class needs models with the same classes; {e.name} has {e.info.classes}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, records = [], []
    for k, img_path in enumerate(images):
        face = load_face(img_path, first, detect, detector)
        rows = []
        for e in entries:
            x = EvalPreset.from_info(e.info)(face)[None]  # (1, 3, S, S)
            shown = denormalize(x, e.info.normalize)[0].permute(1, 2, 0).numpy()  # (S, S, 3), what the model saw
            panels, title, numbers = _panels(e, x, target)
            rows.append((title, shown, panels))
            records.append({"image": str(img_path), **numbers})
        true = (labels or {}).get(str(img_path))
        fig = cam_figure(rows, f"{Path(img_path).name}" + (f"   true: {true}" if true else ""))
        dest = out / f"{k:02d}_{Path(img_path).stem}_cam.png"
        atomic_write(dest, lambda t: fig.savefig(t, format="png", dpi=100, bbox_inches="tight"))
        plt.close(fig)
        written.append(dest)
    atomic_write(out / "cam.json", lambda t: t.write_text(json.dumps(records, indent=2)))
    return written
