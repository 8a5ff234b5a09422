"""Small numeric helpers shared by the face builder: smooth curves, grids of surface samples, normals."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """0 below ``e0``, 1 above ``e1`` (or the reverse when ``e0 > e1``), C1-smooth in between."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def gauss(dx: np.ndarray, dy: np.ndarray, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * ((dx / sx) ** 2 + (dy / sy) ** 2))


def spline(xs, ys, x: np.ndarray) -> np.ndarray:
    """Catmull-Rom (cubic Hermite) interpolation through control points ``(xs, ys)``, clamped outside.

    Smooth first derivatives matter here: the head's shading comes from normals, and a piecewise-linear
    profile would draw a crease at every control point.
    """
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    n = len(xs)
    m = np.empty(n)
    m[1:-1] = (ys[2:] - ys[:-2]) / (xs[2:] - xs[:-2])
    m[0] = (ys[1] - ys[0]) / (xs[1] - xs[0])
    m[-1] = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    xc = np.clip(x, xs[0], xs[-1])
    i = np.clip(np.searchsorted(xs, xc, side="right") - 1, 0, n - 2)
    h = xs[i + 1] - xs[i]
    t = (xc - xs[i]) / h
    t2, t3 = t * t, t * t * t
    return ((2 * t3 - 3 * t2 + 1) * ys[i] + (t3 - 2 * t2 + t) * h * m[i]
            + (-2 * t3 + 3 * t2) * ys[i + 1] + (t3 - t2) * h * m[i + 1])


def adaptive_samples(t: np.ndarray, rate: np.ndarray, minimum: int = 8) -> np.ndarray:
    """Samples of the parameter range ``t`` (a fine increasing grid) whose local density follows ``rate``
    (samples per unit of ``t``): the surfaces are sampled about evenly *on the surface*, whatever their
    parametrisation, instead of wasting samples where the parameter crowds them."""
    rate = np.maximum(np.asarray(rate, dtype=np.float64), 1e-9)
    cdf = np.concatenate([[0.0], np.cumsum((rate[1:] + rate[:-1]) / 2 * np.diff(t))])
    n = max(minimum, int(np.ceil(cdf[-1])) + 1)
    return np.interp(np.linspace(0, cdf[-1], n), cdf, t)


@dataclass
class Surface:
    """Surface samples ready to render: positions, unit normals, albedo, specular strength, and the
    vectors to the next sample along each grid direction (head units), which set each sample's splat size
    on screen (foreshortening included)."""

    points: np.ndarray  # (N, 3) float32
    normals: np.ndarray  # (N, 3) float32
    albedo: np.ndarray  # (N, 3) float32 in [0, 1]
    specular: np.ndarray  # (N,) float32
    du: np.ndarray  # (N, 3) float32
    dv: np.ndarray  # (N, 3) float32
    inside: tuple[float, float, float] | None = None  # colour of the back faces, if they are drawn
    outside: bool = True  # False: only the back faces are drawn (a lining seen from within)

    def __len__(self) -> int:
        return len(self.points)

    @staticmethod
    def concat(parts: list["Surface"]) -> "Surface":
        parts = [p for p in parts if len(p.points)]
        return Surface(*(np.concatenate([getattr(p, f) for p in parts])
                         for f in ("points", "normals", "albedo", "specular", "du", "dv")))


def _one_sided(p: np.ndarray, axis: int, wrap: bool) -> np.ndarray:
    """Derivative along ``axis``: central, except across a cut in the surface (the parted lips), where the
    neighbour on the far side is much further away than the one on the near side; then the near one."""
    if wrap:
        fwd = np.roll(p, -1, axis) - p
        bwd = p - np.roll(p, 1, axis)
    else:
        fwd = np.diff(p, axis=axis, append=np.take(p, [-1], axis))
        bwd = np.diff(p, axis=axis, prepend=np.take(p, [0], axis))
        # at the ends one of the two is zero: use the other
        last = [slice(None)] * p.ndim
        last[axis] = slice(-1, None)
        fwd[tuple(last)] = bwd[tuple(last)]
        first = [slice(None)] * p.ndim
        first[axis] = slice(0, 1)
        bwd[tuple(first)] = fwd[tuple(first)]
    lf = np.einsum("...i,...i->...", fwd, fwd)
    lb = np.einsum("...i,...i->...", bwd, bwd)
    central = 0.5 * (fwd + bwd)
    d = np.where((lf > 6.0 * lb)[..., None], bwd, central)
    return np.where((lb > 6.0 * lf)[..., None], fwd, d)


def grid_surface(p: np.ndarray, albedo: np.ndarray, mask: np.ndarray | None = None, specular: float | np.ndarray = 0.1,
                 wrap_u: bool = False, outward: np.ndarray | None = None, flip: bool = False) -> Surface:
    """Turn a ``(H, W, 3)`` grid of surface points into a :class:`Surface`.

    Normals are ``d/du x d/dv`` (so they follow any deformation), oriented away from ``outward`` (a point
    inside the object, or one per sample) unless ``flip``; ``mask`` drops samples (holes).
    """
    p = np.asarray(p, dtype=np.float32)
    du = _one_sided(p, 1, wrap_u)
    dv = _one_sided(p, 0, False)
    if mask is None:
        mask = np.ones(p.shape[:2], dtype=bool)
    pm, du, dv = p[mask], du[mask], dv[mask]
    n = np.cross(du, dv)
    n /= np.maximum(np.sqrt(np.einsum("ij,ij->i", n, n)), 1e-12)[:, None]
    if outward is not None:
        out = np.asarray(outward, dtype=np.float32)
        if out.ndim > 1:
            out = np.broadcast_to(out, p.shape)[mask]
        sign = np.einsum("ij,ij->i", n, pm - out) < 0
        n[sign] *= -1
    if flip:
        n = -n
    spec = np.broadcast_to(np.asarray(specular, dtype=np.float32), p.shape[:2])[mask]
    alb = np.broadcast_to(np.asarray(albedo, dtype=np.float32), p.shape)[mask]
    return Surface(pm, n.astype(np.float32), alb.astype(np.float32), spec.astype(np.float32),
                   du.astype(np.float32), dv.astype(np.float32))
