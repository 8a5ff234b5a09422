"""Pictures of predictions, drawn with PIL only (fast enough for every video frame, no matplotlib):
:func:`annotate` (boxes, labels and an inset per face), the attention heat map, and the writers of
annotated images and videos.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .record import STATUS_NO_FACE, FaceResult
from .sources import _Failed, _Frame, _ImageFile, _Source, _Video

# Distinct box colours per predicted class (matplotlib's tab10).
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))

# matplotlib's "jet" as its (x, value) breakpoints per channel; _JET below is the same 256-entry table
# matplotlib builds from them (linear between breakpoints), so heat maps look as they did with matplotlib.
_JET_POINTS = {
    "red": ((0.0, 0.35, 0.66, 0.89, 1.0), (0.0, 0.0, 1.0, 1.0, 0.5)),
    "green": ((0.0, 0.125, 0.375, 0.64, 0.91, 1.0), (0.0, 0.0, 1.0, 1.0, 0.0, 0.0)),
    "blue": ((0.0, 0.11, 0.34, 0.65, 1.0), (0.5, 1.0, 1.0, 0.0, 0.0)),
}
_JET = np.stack([np.interp(np.linspace(0.0, 1.0, 256), *_JET_POINTS[c]) for c in ("red", "green", "blue")], 1)


def heat_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``image`` (H, W, 3) in [0, 1], ``heat`` (h, w) in [0, 1] -> (H, W, 3): the heat map upsampled
    (bilinear) to the image, coloured with the jet colour map and blended in with weight ``alpha``."""
    h = torch.from_numpy(np.asarray(heat, dtype=np.float32))[None, None]  # (1, 1, h, w)
    h = F.interpolate(h, size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0].numpy()  # (H, W)
    h = np.clip(h, 0, 1)
    bad = np.isnan(h)
    # The lookup matplotlib's colormap does: 256 bins, the value 1.0 in the last one, NaN black.
    index = np.minimum((np.where(bad, 0, h) * len(_JET)).astype(np.int64), len(_JET) - 1)
    colour = _JET[index]  # (H, W, 3)
    colour[bad] = 0.0
    return (1 - alpha) * image + alpha * colour


@functools.lru_cache(maxsize=32)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def annotate(image: np.ndarray, faces: Sequence[FaceResult | Mapping[str, Any]], classes: Sequence[str]) -> np.ndarray:
    """Draw faces onto a copy of ``image`` (H, W, 3) uint8: a box per face, ``label probability`` above it
    (``#track_id label probability`` for a tracked video face), and
    an inset beside it with the aligned crop under its attention heat map (F_m upsampled) and a bar chart
    of the class probabilities. Insets go where they cover the fewest faces and other insets.

    ``faces``: :class:`~lanfer.predict.FaceResult` records with ``probs``, or mappings with the same field
    names: ``box`` (x1, y1, x2, y2), ``probs`` (K,), and optionally ``crop`` (S, S, 3) uint8 and
    ``attention`` (h, w) in [0, 1].
    """
    from PIL import Image, ImageDraw

    records = [FaceResult.coerce(f) for f in faces]
    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas, "RGBA")
    width, height = canvas.size
    boxes = [tuple(float(v) for v in f.box) for f in records]
    probs = [np.asarray(f.probs, dtype=float) for f in records]  # (K,) each
    colors = [PALETTE[int(np.argmax(p)) % len(PALETTE)] for p in probs]
    for (x1, y1, x2, y2), color in zip(boxes, colors):
        draw.rectangle([x1, y1, x2, y2], outline=color, width=max(1, int(round((x2 - x1) / 60))))
    taken = list(boxes)
    for face, box, p in zip(records, boxes, probs):
        rect = _place_inset(box, face.crop is not None, taken, width, height)
        _inset(canvas, draw, face, p, classes, rect)
        taken.append(rect)
    for face, (x1, y1, x2, y2), p, color in zip(records, boxes, probs, colors):
        k = int(np.argmax(p))
        font = _font(int(np.clip((x2 - x1) / 7, 9, 28)))
        text = f"{classes[k]} {p[k]:.2f}" if face.track_id is None else f"#{face.track_id} {classes[k]} {p[k]:.2f}"
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        ty = y1 - (b - t) - 4 if y1 - (b - t) - 4 >= 0 else y1
        draw.rectangle([x1, ty, x1 + (r - l) + 4, ty + (b - t) + 4], fill=color + (220,))
        draw.text((x1 + 2 - l, ty + 2 - t), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def _place_inset(box, with_crop: bool, taken: list, width: int, height: int) -> tuple[int, int, int, int]:
    """An inset rectangle beside ``box`` (right, left, below, above; clamped into the picture), the candidate
    overlapping the ``taken`` rectangles least."""
    x1, y1, x2, y2 = box
    side = int(np.clip(0.7 * (x2 - x1), 40, 160))
    side = max(16, min(side, width // (3 if with_crop else 2), height // 2))
    w, h, gap = (2 * side if with_crop else side), side, 4
    candidates = [(x2 + gap, y1), (x1 - gap - w, y1), (x1, y2 + gap), (x1, y1 - gap - h)]

    def clamp(x, y):
        x = int(min(max(x, 0), max(width - w, 0)))
        y = int(min(max(y, 0), max(height - h, 0)))
        return (x, y, x + w, y + h)

    def overlap(r):
        return sum(max(0.0, min(r[2], t[2]) - max(r[0], t[0])) * max(0.0, min(r[3], t[3]) - max(r[1], t[1]))
                   for t in taken)

    rects = [clamp(x, y) for x, y in candidates]
    return min(rects, key=overlap)  # min keeps the first of equals: right of the box when it is free


def _inset(canvas, draw, face: FaceResult, probs: np.ndarray, classes: Sequence[str], rect) -> None:
    from PIL import Image

    x, y, x_end, y_end = rect
    side = y_end - y
    bars_x = x
    if face.crop is not None:
        thumb = np.asarray(Image.fromarray(np.ascontiguousarray(face.crop)).resize((side, side),
                                                                                   Image.Resampling.BILINEAR))
        if face.attention is not None:
            thumb = np.uint8(np.clip(heat_overlay(thumb / 255.0, np.asarray(face.attention)), 0, 1) * 255 + 0.5)
        canvas.paste(Image.fromarray(thumb), (x, y))
        bars_x = x + side
    draw.rectangle([bars_x, y, bars_x + side - 1, y + side - 1], fill=(0, 0, 0, 150))
    row_h = side / len(classes)
    font = _font(int(np.clip(row_h * 0.8, 6, 16)))
    for k, name in enumerate(classes):
        top = y + k * row_h
        draw.rectangle([bars_x, top + 1, bars_x + max(1.0, probs[k] * (side - 1)), top + row_h - 1],
                       fill=PALETTE[k % len(PALETTE)] + (230,))
        if row_h >= 7:
            draw.text((bars_x + 2, top + row_h / 2), name[:7], fill=(255, 255, 255), font=font, anchor="lm")


class _Overlays:
    """Where annotated images and videos go: ``<dir>/<name>.jpg`` and ``<dir>/<name>.mp4`` (names made unique)."""

    def __init__(self, folder: Path, classes: Sequence[str]):
        self.folder, self.classes = folder, list(classes)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.used: set[str] = set()
        self.open: list[_Sink] = []
        self.written: list[Path] = []

    def sink_for(self, source: _Source) -> "_Sink | None":
        if isinstance(source, _Failed):
            return None
        video = isinstance(source, _Video)
        stem = Path(source.name).stem if isinstance(source, _ImageFile) or (video and not source.name.startswith(
            "camera:")) else source.name.replace(":", "_")
        name, n = stem, 1
        while name in self.used:
            n += 1
            name = f"{stem}_{n}"
        self.used.add(name)
        sink = _Sink(self, self.folder / (name + (".mp4" if video else ".jpg")), video,
                     source.fps / source.every_nth if video else 0.0)
        self.open.append(sink)
        return sink

    def close_all(self) -> None:
        for s in self.open:
            s.close()


class _Sink:
    """The annotated image file, or the video writer (opened at the first frame), of one source."""

    def __init__(self, owner: _Overlays, path: Path, video: bool, fps: float):
        self.owner, self.path, self.video, self.fps = owner, path, video, fps
        self.writer = None

    def write(self, frame: _Frame) -> None:
        img = annotate(frame.image, frame.faces, self.owner.classes)
        if frame.status == STATUS_NO_FACE:
            from PIL import Image, ImageDraw

            pil = Image.fromarray(img)
            ImageDraw.Draw(pil).text((4, 4), "no face", fill=(255, 60, 60), font=_font(14))
            img = np.asarray(pil)
        if not self.video:
            from PIL import Image

            Image.fromarray(img).save(self.path, quality=90)
            self.owner.written.append(self.path)
            return
        import cv2

        if self.writer is None:
            h, w = img.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), max(self.fps, 1.0), (w, h))
            self.owner.written.append(self.path)
        self.writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
