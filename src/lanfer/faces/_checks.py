"""Input checks shared by detection, alignment and pose: one place that says what an image or a
five-point landmark array must look like, with errors that name the bad value."""
from __future__ import annotations

from typing import Any

import numpy as np


def as_rgb_uint8(image: Any, what: str = "image") -> np.ndarray:
    """Return ``image`` as a C-contiguous ``(H, W, 3)`` uint8 RGB array, or raise ``ValueError``.

    A PIL image is converted to RGB. Arrays must already be RGB uint8: a silent conversion of a grey,
    BGRA or float array would hide a caller's colour-order or value-range mistake.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a core dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise ValueError(f"{what} is empty ({image.width}x{image.height} pixels)")
        return np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what} must be a numpy array (H, W, 3) uint8 RGB or a PIL image, "
                         f"got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{what} must be an (H, W, 3) uint8 RGB array, got shape {image.shape}; convert grey or "
                         "RGBA images first, e.g. PIL.Image.open(path).convert('RGB')")
    if image.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (0..255), got dtype {image.dtype}; for floats in [0, 1] "
                         "pass (image * 255).round().astype(np.uint8)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{what} is empty (shape {image.shape})")
    return np.ascontiguousarray(image)


def as_points(points: Any, n: int | None = 5, what: str = "landmarks") -> np.ndarray:
    """Return ``points`` as a finite float64 ``(n, 2)`` array (any ``n`` when ``n`` is None)."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be numbers of shape ({n or 'N'}, 2), got {points!r}") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or (n is not None and arr.shape[0] != n):
        raise ValueError(f"{what} must have shape ({n or 'N'}, 2) -- (x, y) pixel coordinates"
                         + (" in the order left eye, right eye, nose, left mouth corner, right mouth corner"
                            if n == 5 else "") + f" -- got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinite values: {arr.tolist()}")
    return arr
