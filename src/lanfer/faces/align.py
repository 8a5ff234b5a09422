"""Five-point face alignment: a similarity transform from detected landmarks to a fixed template.

The template is the standard ArcFace/InsightFace five-point template for a 112x112 crop, scaled to the
requested crop size. ArcFace's crop is tight (it cuts the forehead and the chin's outline); expression
recognition also uses the brows, forehead wrinkles and jaw, so lanfer pads it by ``margin`` on every side:
with ``margin=m`` the ArcFace crop fills the central ``1 / (1 + 2m)`` of the output. The default
``DEFAULT_MARGIN = 0.1`` keeps the whole chin and the brows with a little context (eyes at 47% of the
height, inter-ocular distance 26% of the width). Training crops made by ``lanfer prepare`` and test-time
crops made by ``lanfer predict`` must use the same ``size`` and ``margin``; both default to these values.

The transform is a least-squares similarity (rotation, uniform scale, translation; no reflection) fitted
with Umeyama's closed form (Umeyama 1991, "Least-squares estimation of transformation parameters between
two point patterns").
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import as_points, as_rgb_uint8

#: ArcFace five-point template in pixels of a 112x112 crop: left eye, right eye, nose tip, left and right
#: mouth corners ("left" = image-left).
ARCFACE_TEMPLATE = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
], dtype=np.float64)
ARCFACE_SIZE = 112
DEFAULT_MARGIN = 0.1
DEFAULT_SIZE = 224

_BORDERS = ("constant", "replicate", "reflect")


def face_template(size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN,
                  template: Any = None) -> np.ndarray:
    """Five target points ``(5, 2)`` in pixels of a ``size x size`` crop.

    Args:
        size: side of the output crop in pixels.
        margin: extra context on each side, as a fraction of the template crop's side (0 = ArcFace's crop).
        template: five points as fractions of a square crop's side (``x / side``, ``y / side``);
            default ``ARCFACE_TEMPLATE / 112``.
    """
    if size < 1:
        raise ValueError(f"crop size must be >= 1 pixel, got {size}")
    if not -0.25 < margin <= 2.0:
        raise ValueError(f"margin must be in (-0.25, 2] (fraction of the crop side added on each side), got {margin}")
    unit = ARCFACE_TEMPLATE / ARCFACE_SIZE if template is None else as_points(template, 5, "template")
    return size * (0.5 + (unit - 0.5) / (1.0 + 2.0 * margin))


def estimate_similarity(src: Any, dst: Any) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` points onto ``dst`` points (Umeyama).

    Args:
        src, dst: ``(N, 2)`` corresponding points, ``N >= 2``.
    Returns:
        ``(2, 3)`` matrix ``M`` with ``dst ~= src @ M[:, :2].T + M[:, 2]``.
    """
    src = as_points(src, None, "src points")
    dst = as_points(dst, None, "dst points")
    if len(src) != len(dst) or len(src) < 2:
        raise ValueError(f"src and dst need the same number (>= 2) of points, got {len(src)} and {len(dst)}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs ** 2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError(f"src points are all at one place {mu_s.tolist()}: no transform can be estimated")
    cov = xd.T @ xs / len(src)  # (2, 2)
    u, d, vt = np.linalg.svd(cov)
    # Forbid a reflection: a face's left/right order must survive alignment.
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(d) @ sign) / var_s
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - scale * rot @ mu_s
    return matrix


def transform_points(points: Any, matrix: Any) -> np.ndarray:
    """Apply a ``(2, 3)`` affine matrix to ``(N, 2)`` points."""
    pts = as_points(points, None, "points")
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"affine matrix must have shape (2, 3), got {m.shape}")
    return pts @ m[:, :2].T + m[:, 2]


def alignment_matrix(landmarks: Any, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN,
                     template: Any = None) -> np.ndarray:
    """The ``(2, 3)`` similarity mapping image pixels to the aligned crop (see :func:`face_template`).

    Use it to map other points (boxes, dense landmarks, attention peaks) between image and crop:
    ``transform_points(points, M)`` and, back, ``transform_points(points, invert_affine(M))``.
    """
    return estimate_similarity(as_points(landmarks, 5), face_template(size, margin, template))


def invert_affine(matrix: Any) -> np.ndarray:
    """Inverse of a ``(2, 3)`` affine matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"affine matrix must have shape (2, 3), got {m.shape}")
    a = m[:, :2]
    if abs(np.linalg.det(a)) < 1e-12:
        raise ValueError(f"affine matrix {m.tolist()} is singular and cannot be inverted")
    inv = np.linalg.inv(a)
    return np.hstack([inv, -inv @ m[:, 2:]])


def warp(image: Any, matrix: Any, size: int | tuple[int, int], border: str = "constant") -> np.ndarray:
    """Warp an RGB image with a ``(2, 3)`` matrix (image pixels -> output pixels), bilinear.

    Uses OpenCV when installed, else PIL; both treat integer coordinates as pixel centres, so the same
    matrix gives the same crop (to interpolation rounding).

    Args:
        image: ``(H, W, 3)`` uint8 RGB array or PIL image.
        matrix: ``(2, 3)`` forward matrix, e.g. from :func:`alignment_matrix`.
        size: output side, or ``(width, height)``.
        border: ``"constant"`` (black), ``"replicate"`` or ``"reflect"`` fill outside the image.
    Returns:
        ``(height, width, 3)`` uint8 RGB array.
    """
    img = as_rgb_uint8(image)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3) or not np.isfinite(m).all():
        raise ValueError(f"affine matrix must be a finite (2, 3) array, got {m.tolist() if m.size < 20 else m.shape}")
    w, h = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if w < 1 or h < 1:
        raise ValueError(f"output size must be positive, got {size}")
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {', '.join(_BORDERS)}, got {border!r}")
    try:
        import cv2
    except ImportError:
        return _warp_pil(img, m, (w, h), border)
    modes = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE, "reflect": cv2.BORDER_REFLECT_101}
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=modes[border], borderValue=(0, 0, 0))


def _warp_pil(img: np.ndarray, m: np.ndarray, size: tuple[int, int], border: str) -> np.ndarray:
    from PIL import Image

    if border != "constant":
        # PIL has no replicate/reflect mode: pad the source with the wanted fill, then shift the matrix.
        pad = max(size) + max(img.shape[:2])
        img = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge" if border == "replicate" else "reflect")
        m = m.copy()
        m[:, 2] -= m[:, :2] @ np.array([pad, pad], dtype=np.float64)
    inv = invert_affine(m)
    # PIL samples output pixel (x, y) at its centre (x + 0.5, y + 0.5) and reads the input with the same
    # half-pixel convention, so integer-centred coordinates need the offset folded into the matrix.
    a, b, c = inv[0]
    d, e, f = inv[1]
    coeffs = (a, b, c + 0.5 * (a + b) - 0.5, d, e, f + 0.5 * (d + e) - 0.5)
    out = Image.fromarray(img).transform(size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR,
                                         fillcolor=(0, 0, 0))
    return np.asarray(out)


def align_face(image: Any, landmarks: Any, size: int = DEFAULT_SIZE, margin: float = DEFAULT_MARGIN,
               template: Any = None, border: str = "constant") -> np.ndarray:
    """Crop and align a face so that its five landmarks land on the template.

    Args:
        image: ``(H, W, 3)`` uint8 RGB array or PIL image.
        landmarks: ``(5, 2)`` pixel coordinates: left eye, right eye, nose, left mouth corner, right mouth
            corner ("left" = image-left), e.g. ``Face.landmarks`` from a detector.
        size: output side in pixels.
        margin: context around ArcFace's tight crop (see the module docstring).
        template: optional five points as fractions of the crop side (default: ArcFace's).
        border: fill for parts of the crop outside the image (see :func:`warp`).
    Returns:
        ``(size, size, 3)`` uint8 RGB crop. The matrix is :func:`alignment_matrix` with the same arguments.
    """
    img = as_rgb_uint8(image)
    return warp(img, alignment_matrix(landmarks, size, margin, template), size, border)


def crop_template(margin: float = DEFAULT_MARGIN, shift_y: float = 0.0) -> np.ndarray:
    """ArcFace's five points as fractions of the side, placed so that :func:`face_template` with ``margin``
    puts them ``shift_y`` of the side lower (negative: higher, showing more chin than forehead)."""
    unit = ARCFACE_TEMPLATE / ARCFACE_SIZE
    return unit + np.array([0.0, shift_y * (1.0 + 2.0 * margin)])


def crop_face(image: Any, landmarks: Any, box: Any, size: int, crop: Any = None) -> np.ndarray:
    """Cut a detected face the way a model was trained (its :class:`lanfer.info.FaceCrop`).

    ``crop.kind == "template"``: the five-point alignment of :func:`align_face` at ``crop.margin``, moved by
    ``crop.shift_y``; ``"box"``: the detector's box (left, top, right, bottom), squared about its centre and
    grown by ``crop.margin`` on every side, no rotation. ``crop=None`` is the template at the default margin.
    Returns a ``(size, size, 3)`` uint8 RGB crop; parts outside the image are black.
    """
    img = as_rgb_uint8(image)
    kind = getattr(crop, "kind", "template")
    margin = float(getattr(crop, "margin", DEFAULT_MARGIN))
    if kind == "template":
        template = crop_template(margin, float(getattr(crop, "shift_y", 0.0)))
        return warp(img, alignment_matrix(landmarks, size, margin, template), size, "constant")
    if kind != "box":
        raise ValueError(f"face crop kind {kind!r} is not 'template' or 'box'")
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)
    if side <= 0:
        raise ValueError(f"face box {tuple(box)} is empty")
    s = size / side
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + float(getattr(crop, "shift_y", 0.0)) * side
    matrix = np.array([[s, 0.0, size / 2 - s * cx], [0.0, s, size / 2 - s * cy]])  # source px -> crop px
    return warp(img, matrix, size, "constant")
