"""A face in 3D: head, eyes, mouth, ears, neck, hair and glasses as dense surface samples.

Frame (head units, see :mod:`.identity`): ``x`` toward the subject's left, ``y`` up, ``z`` forward; the
origin is the head's centre at eye height. The head is a closed surface over (azimuth ``theta``, elevation
``phi``) whose horizontal cross-sections are superellipses with a face-front depth, a back depth and a
half-width that follow the identity's profile curves (forehead, cheekbones, jaw, chin). Facial relief
(brow ridge, eye sockets, cheekbones, nose, lips, chin) is added along ``z`` as a function of *canonical*
coordinates ``(X, Y)``, the undeformed frontal position of a sample; textures are painted in the same
coordinates (:mod:`.texture`).

Expressions move the skin (:func:`expression_field`): each action unit is a smooth displacement field;
fields that open the mouth (AU10, AU16, AU25, AU26) act only on one side of the mouth line, so the skin
parts there and the mouth cavity and teeth behind it show through. The eye fissures are holes cut in the
skin in the shape of the current lid aperture (AU5 raises the upper lid, AU6/AU7 narrow the eye); the
eyeballs are separate ellipsoids behind them, with the lids draped over them. Because every part is a real
surface, self-occlusion in :mod:`.render` (a z-buffer) is correct at any pose: at a 90 degree profile the
far eye and the far mouth corner are behind the head. The skin's inner side is drawn too (dark), so a look
through the fissures or the open mouth at a steep angle ends inside the head, not on the background.

Everything that no expression changes (scalp, hair, ears, neck, glasses, the identity's texture) is built
once per person and cached (:func:`_head_base`); an expression rebuilds only the face block.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .geometry import Surface, adaptive_samples, gauss, grid_surface, smoothstep, spline
from .identity import Identity
from .texture import EXTENT, Aperture, Canvas, paint_expression, paint_identity, smooth_noise

#: The five landmarks, in the order of MTCNN / RetinaFace / :mod:`lanfer.faces`: "left" means the
#: *image-left* side of a frontal face, i.e. the subject's RIGHT eye and mouth corner.
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

SAMPLES_PER_PIXEL = 1.1  # surface samples per output pixel along each axis on the face
CORNEA = 0.018  # how far the cornea bulges over the iris (head units)
JAW_DROP = 0.26  # how far AU26 at full intensity lowers the chin (head units; ~23 mm)
INSIDE = (0.16, 0.07, 0.06)  # the colour of the face's inner side (mouth, eye sockets), seen through openings


def _mean(aus: dict, au: int) -> float:
    left, right = aus.get(au, (0.0, 0.0))
    return 0.5 * float(left + right)


def _side(aus: dict, au: int, s: int) -> float:
    left, right = aus.get(au, (0.0, 0.0))
    return float(left if s > 0 else right)


# ----------------------------------------------------------------------------------------------------
# head shape
# ----------------------------------------------------------------------------------------------------

def half_width(idt: Identity, Y: np.ndarray) -> np.ndarray:
    """Half-width of the head at height ``Y`` (front view silhouette)."""
    hw = idt.head_width
    up = np.clip(Y / idt.head_height, 0, 1)
    w_up = hw * np.sqrt(np.clip(1 - up ** 2.4, 0, 1)) * (1 + 0.05 * np.sin(np.pi * np.clip(up / 0.8, 0, 1)) ** 2)
    s = np.clip(-Y / idt.chin_depth, 0, 1)
    jw, cw = idt.jaw_width, idt.chin_width
    taper = spline([0, 0.12, 0.3, 0.5, 0.7, 0.88, 0.96, 1.0],
                   [1.0, 1.0, 0.975, (1 + jw) / 2, jw, (jw + cw) / 2, cw + 0.03, cw], s)
    w_low = hw * taper * np.clip(1 - s ** 10, 0, 1) ** 0.1
    return np.where(Y >= 0, w_up, w_low)


def front_depth(idt: Identity, Y: np.ndarray) -> np.ndarray:
    """How far the face's centre line lies in front of the head's centre at height ``Y`` (profile)."""
    fd = idt.face_depth
    up = np.clip(Y / idt.head_height, 0, 1)
    p_up = fd * np.sqrt(np.clip(1 - up ** 2.5, 0, 1)) * (1 - idt.forehead_slope * up ** 1.5)
    s = np.clip(-Y / idt.chin_depth, 0, 1)
    cf = idt.chin_forward
    p_low = fd * spline([0, 0.12, 0.35, 0.6, 0.85, 0.95, 1.0], [1.0, 1.0, 0.985, 0.97, 0.94 + cf, 0.82 + cf, 0.35], s)
    return np.where(Y >= 0, p_up, p_low)


def back_depth(idt: Identity, Y: np.ndarray) -> np.ndarray:
    bd = idt.back_depth
    up = np.clip(Y / idt.head_height, 0, 1)
    s = np.clip(-Y / idt.chin_depth, 0, 1)
    b_up = bd * np.sqrt(np.clip(1 - up ** 2.2, 0, 1))
    b_low = bd * spline([0, 0.15, 0.4, 0.65, 1.0], [1.0, 1.0, 0.88, 0.6, 0.35], s)
    return np.where(Y >= 0, b_up, b_low)


def _superellipse(theta: np.ndarray, n: float) -> tuple[np.ndarray, np.ndarray]:
    s, c = np.sin(theta), np.cos(theta)
    return np.sign(s) * np.abs(s) ** (2 / n), np.sign(c) * np.abs(c) ** (2 / n)


def base_z(idt: Identity, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Depth of the undeformed head's front surface at canonical ``(X, Y)`` (no relief)."""
    w = half_width(idt, Y)
    sx = np.clip(np.abs(X) / np.maximum(w, 1e-6), 0, 1)
    sz = np.clip(1 - sx ** idt.squareness, 0, 1) ** (1 / idt.squareness)
    return front_depth(idt, Y) * sz


def relief(idt: Identity, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Forward (z) relief of the identity's face at canonical ``(X, Y)``: brow ridge, eye sockets,
    cheekbones, nose, lips, chin."""
    ey, ex = idt.eye_height, idt.eye_spacing
    dz = idt.brow_ridge * np.exp(-0.5 * ((Y - (ey + 0.2)) / 0.07) ** 2) * np.exp(-0.5 * (X / 0.5) ** 4)
    for s in (-1, 1):
        dz = dz - 0.06 * gauss(X - s * ex, Y - ey, 0.14, 0.1)
        dz = dz + idt.cheekbones * gauss(X - s * 0.5, Y - (ey - 0.17), 0.16, 0.12)
    # nose: a ridge from the nasion to the tip, a rounded underside back to the upper lip, and the alae
    nasion = ey + 0.07
    tip = ey - idt.nose_length
    sub = tip - 0.12
    H, nb = idt.nose_height, idt.nose_bridge
    t = np.clip((nasion - Y) / (nasion - tip), 0, 1)
    dorsum = np.where(t < 0.25, nb * np.sqrt(t / 0.25), nb + (H - nb) * (np.clip(t - 0.25, 0, 1) / 0.75) ** 1.4)
    under = np.clip((tip - Y) / (tip - sub), 0, 1)
    h = np.where(Y >= tip, dorsum, H * np.sqrt(np.clip(1 - under ** 2, 0, 1)))
    h = np.where(Y > nasion, 0.0, h)
    w = idt.nose_width * np.where(Y >= tip, 0.3 + 0.3 * t, 0.6)
    nose = h * np.exp(-0.5 * (X / w) ** 2)
    for s in (-1, 1):
        nose = nose + 0.3 * H * gauss(X - s * idt.nose_width * 0.75, Y - (tip - 0.035), 0.055, 0.05)
    dz = dz + nose
    # lips (upper a little behind the lower), the groove under the lower lip, the chin
    ym, xc = idt.mouth_y, idt.mouth_width
    lipx = np.exp(-0.5 * (X / (xc * 0.8)) ** 4)
    dz = dz + idt.lip_protrusion * lipx * (0.85 * np.exp(-0.5 * ((Y - (ym + 0.04)) / 0.038) ** 2)
                                          + np.exp(-0.5 * ((Y - (ym - 0.045)) / 0.042) ** 2))
    dz = dz + 0.02 * np.exp(-0.5 * (X / 0.08) ** 2) * np.exp(-0.5 * ((Y - (sub - 0.07)) / 0.06) ** 2)
    dz = dz - 0.02 * np.exp(-0.5 * (X / 0.18) ** 2) * np.exp(-0.5 * ((Y - (ym - 0.17)) / 0.035) ** 2)
    dz = dz + 0.035 * gauss(X, Y - (ym - 0.36), 0.17, 0.09)
    for s in (-1, 1):  # the mouth corners sit in a small pit
        dz = dz - 0.018 * gauss(X - s * xc, Y - ym, 0.035, 0.035)
    return dz


# ----------------------------------------------------------------------------------------------------
# expressions
# ----------------------------------------------------------------------------------------------------

def lens(idt: Identity, X: np.ndarray) -> np.ndarray:
    """How far the lips can part at ``x``: 1 in the middle, 0 at the mouth corners."""
    return np.clip(1 - (X / idt.mouth_width) ** 2, 0, 1) ** 0.6


def expression_field(idt: Identity, aus: dict, X: np.ndarray, Y: np.ndarray, lower: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Skin displacement ``(dx, dy, dz)`` of the action units ``aus`` at canonical ``(X, Y)``.

    ``lower`` marks samples below the mouth line (lower lip, chin): the mouth-opening AUs move only those
    (or only the ones above), which tears the skin open along the line between the mouth corners.
    """
    dx = np.zeros_like(X)
    dy = np.zeros_like(X)
    dz = np.zeros_like(X)
    ey, ym, xc = idt.eye_height, idt.mouth_y, idt.mouth_width
    by = ey + idt.brow_height
    tip = ey - idt.nose_length
    lids = {ap.side: ap.upper for ap in apertures(idt, aus)}
    for s in (-1, 1):
        # the brow fields move the brows and the forehead, not the lid margins (the apertures own those)
        above_lids = smoothstep(ey + lids[s] + 0.01, ey + lids[s] + 0.1, Y)
        i = _side(aus, 1, s)
        if i:
            dy += 0.12 * i * gauss(X - s * 0.14, Y - by, 0.13, 0.16) * above_lids
        i = _side(aus, 2, s)
        if i:
            dy += 0.11 * i * gauss(X - s * 0.42, Y - (by + 0.02), 0.14, 0.16) * above_lids
        i = _side(aus, 4, s)
        if i:
            g = gauss(X - s * 0.2, Y - by, 0.15, 0.1) * above_lids
            dy -= 0.08 * i * g
            dx -= s * 0.05 * i * g
            dz += 0.02 * i * gauss(X, Y - (ey + 0.15), 0.09, 0.09)
        i = _side(aus, 6, s)
        if i:
            g = gauss(X - s * 0.4, Y - (ey - 0.24), 0.16, 0.12)
            dy += 0.06 * i * g
            dz += 0.05 * i * g
        i = _side(aus, 9, s)
        if i:
            dy += 0.05 * i * gauss(X - s * idt.nose_width * 0.8, Y - (tip + 0.02), 0.07, 0.07)
            dy += 0.025 * i * gauss(X - s * 0.1, Y - (ym + 0.07), 0.12, 0.06)
            dy -= 0.025 * i * gauss(X - s * 0.14, Y - by, 0.12, 0.09) * above_lids
            dz += 0.01 * i * gauss(X, Y - (ey - 0.06), 0.06, 0.09)
        i = _side(aus, 10, s)
        if i:
            dy += 0.03 * i * gauss(X - s * 0.14, Y - (ym + 0.12), 0.1, 0.07)
        corner = gauss(X - s * xc, Y - ym, 0.13, 0.11)
        i = _side(aus, 12, s)
        if i:
            dx += s * 0.07 * i * corner
            dy += 0.14 * i * corner
            dz -= 0.045 * i * corner
            g = gauss(X - s * 0.38, Y - (ym + 0.27), 0.12, 0.12)
            dz += 0.055 * i * g
            dy += 0.04 * i * g
        i = _side(aus, 14, s)
        if i:
            g = gauss(X - s * xc, Y - ym, 0.08, 0.08)
            dx -= s * 0.025 * i * g
            dz -= 0.05 * i * g
            dy += 0.015 * i * g
        i = _side(aus, 15, s)
        if i:
            dy -= 0.1 * i * corner
            dx += s * 0.015 * i * corner
        i = _side(aus, 20, s)
        if i:
            g = gauss(X - s * xc, Y - ym, 0.14, 0.1)
            dx += s * 0.1 * i * g
            dy -= 0.02 * i * g
            dz -= 0.035 * i * g
    i = _mean(aus, 7)
    if i:
        dz += 0.01 * i * (gauss(X - idt.eye_spacing, Y - (ey - 0.085), 0.12, 0.035)
                          + gauss(X + idt.eye_spacing, Y - (ey - 0.085), 0.12, 0.035))
    i = _mean(aus, 23)
    if i:
        m = np.exp(-0.5 * (X / (xc * 0.8)) ** 4) * np.exp(-0.5 * ((Y - ym) / 0.075) ** 2)
        dy -= (Y - ym) * 0.6 * i * m
        dx -= X * 0.1 * i * m
        dz += 0.012 * i * m
    i = _mean(aus, 17)
    if i:
        dy += 0.06 * i * gauss(X, Y - (ym - 0.3), 0.18, 0.12)
        dz += 0.035 * i * gauss(X, Y - (ym - 0.09), 0.18, 0.06)
    # --- mouth opening: one side of the mouth line only ---
    ln = lens(idt, X)
    near = np.exp(-0.5 * ((Y - ym) / 0.1) ** 2)
    up = ~lower
    i = _mean(aus, 10)
    if i:
        dy += np.where(up, 0.06 * i * np.sqrt(ln) * near, 0.0)
    i = _mean(aus, 25)
    if i:
        dy += np.where(up, 0.015 * i * ln * near, -0.03 * i * ln * np.exp(-0.5 * ((Y - ym) / 0.12) ** 2))
    i = _mean(aus, 16)
    if i:
        dy -= np.where(lower, 0.09 * i * ln * np.exp(-0.5 * ((Y - ym) / 0.11) ** 2), 0.0)
        dz += np.where(lower, 0.015 * i * ln * near, 0.0)
    i = _mean(aus, 26)
    if i:
        wj = np.where(lower, ln + (1 - ln) * smoothstep(ym, ym - 0.35, Y), 0.0)
        dy -= JAW_DROP * i * wj
        dz -= 0.07 * i * wj
    return dx, dy, dz


def apertures(idt: Identity, aus: dict) -> list[Aperture]:
    """The two eye fissures under ``aus`` (subject's right first)."""
    out = []
    for s in (-1, 1):
        a5, a6, a7, a4 = (_side(aus, k, s) for k in (5, 6, 7, 4))
        up = idt.eye_open + 0.06 * a5 - 0.03 * a7 - 0.018 * a6 - 0.014 * a4
        lo = idt.eye_lower + 0.01 * a5 - 0.03 * a7 - 0.032 * a6
        out.append(Aperture(cx=s * idt.eye_spacing, cy=idt.eye_height, half_width=idt.eye_width * (1 - 0.04 * a7),
                            upper=max(up, 0.01), lower=max(lo, 0.01), tilt=idt.eye_tilt, side=s))
    return out


# ----------------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------------

@dataclass
class FaceModel:
    """Everything the renderer needs: surface samples (in parts, so that the parts shared by all of a
    person's expressions are not copied per expression) and the 3D landmarks (head frame)."""

    parts: list[Surface]
    landmarks: dict[str, np.ndarray]
    identity: Identity
    aus: dict = field(default_factory=dict)

    @property
    def surface(self) -> Surface:
        """All samples in one :class:`Surface`."""
        return Surface.concat(self.parts)


@dataclass
class _HeadBase:
    """Per-identity, per-density data reused across that person's expressions.

    Expressions only move the face, so the head grid is split: a *block* of rows and columns holding the
    face (everything from the chin up to the forehead, front half), rebuilt per expression, and the rest
    (scalp, back, hair, ears, neck, glasses), built once into ``static``.
    """

    X: np.ndarray  # (H, W) canonical x of the head grid
    Y: np.ndarray
    Z: np.ndarray  # base + relief (no expression)
    sz: np.ndarray  # superellipse z component (>0 front)
    front: np.ndarray  # weight of facial relief and expressions (1 on the face, 0 behind)
    albedo: np.ndarray  # (H, W, 3) neutral colours (identity texture, scalp hair)
    specular: np.ndarray  # (H, W)
    keep: np.ndarray  # (H, W) samples not hidden under the hair shell
    hair: np.ndarray  # (H, W) scalp hair coverage
    block: tuple[int, int, int, int]  # rows r0:r1, columns c0:c1 of the face block (with a 1-sample margin)
    texture: Canvas
    eye_centres: list[tuple[float, float, float]]  # eyeball centres (subject's right, left)
    eye_radii: tuple[float, float, float]
    static: list[Surface]  # scalp and back of the head (drawn inside too); hair, ears, neck, glasses


def _hairline(idt: Identity, theta: np.ndarray, wobble: np.ndarray) -> np.ndarray:
    """Height of the scalp hair's lower edge at azimuth ``theta`` (0 = face front)."""
    a = np.degrees(np.abs(np.angle(np.exp(1j * theta))))
    hl = idt.hairline
    ey = idt.eye_height
    burn = -0.22 if idt.sex == "M" else -0.08  # sideburn length
    xs = [0, 25, 45, 58, 68, 78, 84, 89, 95, 112, 125, 145, 180]
    ys = [hl, hl + 0.01, hl - 0.03, hl - 0.12, ey + 0.45, ey + 0.15, ey + burn, ey + burn + 0.03, ey + 0.14,
          ey + 0.14, ey - 0.3, ey - 0.72, ey - 0.8]
    y = spline(xs, ys, a) + wobble
    if idt.hair_style == "fringe":
        fringe = ey + idt.brow_height + 0.1
        y = np.where(a < 62, np.minimum(y, fringe + (y - fringe) * smoothstep(38, 62, a)), y)
    return y


def _head_grid(idt: Identity, px_per_unit: float) -> tuple[np.ndarray, np.ndarray]:
    """Azimuths and elevations of the head grid, spaced evenly on the surface: ``SAMPLES_PER_PIXEL`` per
    pixel on the face, fewer on the back and the crown (seen only at grazing angles)."""
    per_unit = px_per_unit * SAMPLES_PER_PIXEL
    t = np.linspace(-np.pi, np.pi, 4001)
    sx, sz = _superellipse(t, idt.squareness)
    y0 = np.zeros(1)
    depth = np.where(sz >= 0, front_depth(idt, y0), back_depth(idt, y0))
    xz = np.stack([half_width(idt, y0) * sx, depth * sz], -1)
    arc = np.linalg.norm(np.gradient(xz, t, axis=0), axis=-1)
    weight = np.where(np.abs(t) < 0.8, 1.2, np.where(np.abs(t) > 2.0, 0.5, 1.0))
    theta = adaptive_samples(t, arc * weight * per_unit)[:-1]  # periodic: -pi and pi are one azimuth
    f = np.linspace(-np.pi / 2 + 0.02, np.pi / 2 - 0.02, 2001)
    up = np.sin(f)
    y = np.where(up >= 0, up * idt.head_height, up * idt.chin_depth)
    arc_front = np.hypot(np.gradient(y, f), np.gradient(front_depth(idt, y), f))
    arc_side = np.hypot(np.gradient(y, f), np.gradient(half_width(idt, y), f))
    weight = np.where((f > -0.8) & (f < 0.3), 1.2, np.where(f > 1.0, 0.6, 1.0))
    phi = adaptive_samples(f, np.maximum(arc_front, arc_side) * weight * per_unit)
    return theta, phi


@lru_cache(maxsize=2)  # jobs come grouped by person; a base holds the person's whole head
def _head_base(idt_key: tuple, px_per_unit: float) -> _HeadBase:
    idt = _from_key(idt_key)
    theta, phi = _head_grid(idt, px_per_unit)
    T, P = np.meshgrid(theta, phi)
    up = np.sin(P)
    Y = np.where(up >= 0, up * idt.head_height, up * idt.chin_depth)
    sx, sz = _superellipse(T, idt.squareness)
    X = half_width(idt, Y) * sx
    Z = np.where(sz >= 0, front_depth(idt, Y) * sz, back_depth(idt, Y) * sz)
    front = smoothstep(0.05, 0.45, sz)
    Z = Z + front * relief(idt, X, Y)

    rng = np.random.default_rng(np.random.SeedSequence([idt.texture_seed, 11]))
    res = int(np.clip(2 * EXTENT * px_per_unit * 1.1, 160, 640))
    texture = paint_identity(idt, res)

    # scalp hair: coverage below/above a wobbly hairline, shell thickness, strand texture
    wob_t = np.linspace(-np.pi, np.pi, 181)
    wobble = np.interp(T, wob_t, np.convolve(np.pad(rng.normal(0, 0.03, 181), 3, mode="wrap"),
                                             np.ones(7) / 7, mode="valid"))
    hl = _hairline(idt, T, wobble)
    fine = np.interp(T, np.linspace(-np.pi, np.pi, 541), rng.uniform(-1, 1, 541))
    clumps = smooth_noise(rng, 64, 9)  # (64, 64) over (elevation, azimuth)
    clump = clumps[np.clip(((P / np.pi + 0.5) * 63).astype(int), 0, 63),
                   np.clip(((T / np.pi + 1) * 31.5).astype(int), 0, 63)]
    if idt.hair_style == "buzz":
        hair = smoothstep(hl - 0.02, hl + 0.04, Y + 0.02 * fine) * 0.8
        thick = np.zeros_like(Y)
    else:
        hair = smoothstep(hl - 0.012, hl + 0.012, Y + 0.015 * fine)
        vol = idt.hair_volume * (0.5 + 0.5 * smoothstep(0.0, 0.9, Y / idt.head_height)) * (1 + 0.35 * clump)
        edge = 0.35 if idt.hair_style == "fringe" else 0.0
        thick = vol * np.maximum(smoothstep(hl, hl + 0.14, Y), edge * (Y > hl))
    strands = 0.5 * fine + 0.3 * clump + 0.3 * np.interp(T * 2.7 + 0.8 * P, np.linspace(-12, 12, 1201),
                                                         rng.uniform(-1, 1, 1201))

    # eyeballs sit just behind the skin at the eye centres; the lids are draped over them per expression
    radii = (idt.eye_width * 1.3, 0.18, 0.14)  # larger than the fissure: it fills it from any angle
    centres = []
    for s in (-1, 1):
        ex = np.array([s * idt.eye_spacing])
        ey = np.array([idt.eye_height])
        skin = float((base_z(idt, ex, ey) + relief(idt, ex, ey))[0])
        pole = skin - idt.eye_recess * 0.3
        centres.append((s * idt.eye_spacing, idt.eye_height, pole - radii[2]))

    # neutral colours: identity texture on the face, plain skin behind, hair on the scalp
    skin = np.asarray(idt.skin, dtype=np.float32)
    albedo = np.broadcast_to(skin, X.shape + (3,)).copy()
    face_px = sz > -0.05
    wfront = smoothstep(-0.05, 0.2, sz[face_px])[:, None]
    albedo[face_px] = texture.sample(X[face_px], Y[face_px]) * wfront + skin * (1 - wfront)
    hair_col = np.asarray(idt.hair_color, dtype=np.float32)
    strand = (0.8 + 0.25 * strands)[..., None]
    albedo = albedo * (1 - hair[..., None]) + np.clip(hair_col * strand * 0.8, 0, 1) * hair[..., None]
    lips = np.exp(-0.5 * ((Y - idt.mouth_y) / 0.07) ** 2) * np.exp(-0.5 * (X / idt.mouth_width) ** 6)
    spec = (0.12 + 0.3 * lips * (sz > 0)) * (1 - hair) + 0.06 * hair
    keep = thick < 0.02  # skin under a thick hair shell can never be seen

    # the face block: from the bottom row up to the forehead, the front half of the azimuths
    rows = np.nonzero(Y[:, 0] < idt.eye_height + 0.85)[0]
    cols = np.nonzero(np.abs(theta) < np.radians(89))[0]
    r0, r1, c0, c1 = 0, rows[-1] + 2, max(cols[0] - 1, 0), cols[-1] + 2
    inner = np.zeros(X.shape, dtype=bool)
    inner[r0:r1 - 1, c0 + 1:c1 - 1] = True  # the block without its margin
    Pn = np.stack([X, Y, Z], -1).astype(np.float32)
    static = [grid_surface(Pn, albedo, keep & ~inner, spec, wrap_u=True, outward=np.zeros(3))]
    static[0].inside = INSIDE
    # the scalp under the hair, seen only from within (through the open mouth or the eyes): coarse
    scalp = grid_surface(Pn[::2, ::2], albedo[::2, ::2], ~keep[::2, ::2], 0.0, wrap_u=True, outward=np.zeros(3))
    scalp.inside, scalp.outside = INSIDE, False
    static.append(scalp)
    if thick.max() > 0:
        H = Pn + _grid_normals(Pn) * thick[..., None]
        hc = np.clip(hair_col * strand * (0.9 + 0.2 * smoothstep(0.3, 1.2, Y)[..., None]), 0, 1)
        static.append(grid_surface(H, hc, thick > 0.002, 0.15, wrap_u=True, outward=np.zeros(3)))
    static += _ears(idt, px_per_unit) + [_neck(idt, px_per_unit)]
    if idt.hair_style in ("long", "medium"):
        static.append(_hair_curtain(idt, px_per_unit))
    if idt.glasses:
        static += _glasses(idt, px_per_unit)
    two_sided = [p for p in static if p.inside is not None]
    one_sided = [p for p in static if p.inside is None]
    return _HeadBase(X, Y, Z, sz, front, albedo, spec, keep, hair, (r0, r1, c0, c1), texture, centres, radii,
                     two_sided + [Surface.concat(one_sided)])


def _key(idt: Identity) -> tuple:
    d = dict(vars(idt))
    d["moles"] = tuple(tuple(m) for m in d["moles"])
    d["rest"] = tuple(sorted((k, tuple(v)) for k, v in d["rest"].items()))
    return tuple(sorted(d.items()))


def _from_key(key: tuple) -> Identity:
    d = dict(key)
    d["moles"] = [tuple(m) for m in d["moles"]]
    d["rest"] = {k: tuple(v) for k, v in d["rest"]}
    return Identity(**d)


def _eyeball_front(centre, radii, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    cx, cy, cz = centre
    rx, ry, rz = radii
    q = 1 - ((x - cx) / rx) ** 2 - ((y - cy) / ry) ** 2
    return np.where(q > 0, cz + rz * np.sqrt(np.clip(q, 0, 1)), -np.inf)


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    return 0.5 * (a + b + np.sqrt((a - b) ** 2 + k * k))


def build_face(idt: Identity, aus: dict | None = None, px_per_unit: float = 100.0) -> FaceModel:
    """Build the 3D face of ``idt`` showing action units ``aus`` (``{au: (left, right)}``).

    ``px_per_unit`` is how many output pixels one head unit will cover: it sets the sampling density so
    that every pixel of the rendered face gets at least one sample.
    """
    aus = dict(aus or {})
    base = _head_base(_key(idt), float(round(px_per_unit, 2)))
    r0, r1, c0, c1 = base.block
    blk = (slice(r0, r1), slice(c0, c1))
    X, Y, sz, wf = base.X[blk], base.Y[blk], base.sz[blk], base.front[blk]
    dx, dy, dz = expression_field(idt, aus, X, Y, Y < idt.mouth_y)
    P = np.stack([X + wf * dx, Y + wf * dy, base.Z[blk] + wf * dz], -1).astype(np.float32)  # (h, w, 3)

    # drape the lids over the eyeballs: no eyeball pokes through the skin, and at the fissure the lids lie
    # on the eyeball (a look into the fissure from any side meets the eye, not the inside of the head)
    aps = apertures(idt, aus)
    for c, ap in zip(base.eye_centres, aps):
        ez = _eyeball_front(c, base.eye_radii, P[..., 0], P[..., 1])
        inside = np.isfinite(ez) & (sz > 0.3)
        z = np.where(inside, _smax(P[..., 2], np.where(inside, ez, 0) + 0.008, 0.014), P[..., 2])
        # near the fissure, pull the skin toward the eyeball's depth *at the lid margin*, so that the lid
        # slopes smoothly onto the eye (a cliff there would be undersampled and let the background through)
        u = np.clip((X - ap.cx) / ap.half_width, -1, 1)
        mx, up, lo = ap.curves(u)
        edge_y = np.where(Y > ap.cy + ap.tilt * u * ap.side, up, lo)
        edge_z = _eyeball_front(c, base.eye_radii, mx, edge_y)
        edge_z = np.where(np.isfinite(edge_z), edge_z, c[2]) + 0.008
        gap = np.maximum.reduce([Y - up, lo - Y, (np.abs((X - ap.cx) / ap.half_width) - 1) * ap.half_width,
                                 np.zeros_like(u)])
        hug = np.exp(-(gap / 0.05) ** 2) * (sz > 0.3)
        P[..., 2] = z * (1 - hug) + np.minimum(z, edge_z) * hug
    keep = base.keep[blk].copy()
    keep[-1, :] = keep[:, 0] = keep[:, -1] = False  # the margin belongs to the static part
    for ap in aps:
        keep &= ~(ap.inside(X, Y) & (sz > 0.3))

    # colours: the identity's neutral colours, with this expression's lashes and wrinkles on the face
    tex = paint_expression(base.texture, idt, aps, aus)
    albedo = base.albedo[blk].copy()
    painted = (np.abs(X) < 0.8) & (sz > 0.2) & (Y > idt.mouth_y - 0.45) & (Y < idt.eye_height + 0.75)
    delta = Canvas(tex.rgb - base.texture.rgb)  # only the lashes and wrinkles
    albedo[painted] += delta.sample(X[painted], Y[painted]) * (1 - base.hair[blk][painted, None])
    face = grid_surface(P, albedo, keep, base.specular[blk], outward=np.zeros(3))
    face.inside = INSIDE
    parts = base.static + [face]
    parts += _eyes(idt, base, px_per_unit)
    parts += _mouth_inside(idt, aus, px_per_unit)

    # landmarks: pupils (eyeball front poles), nose tip, mouth corners, all through the same deformation
    lm = {}
    for name, c in zip(("left_eye", "right_eye"), base.eye_centres):  # subject's right eye is image-left
        lm[name] = np.array([c[0], c[1], c[2] + base.eye_radii[2] + CORNEA])
    lm["nose"] = _surface_point(idt, aus, 0.0, idt.eye_height - idt.nose_length)
    lm["mouth_left"] = _surface_point(idt, aus, -idt.mouth_width, idt.mouth_y)
    lm["mouth_right"] = _surface_point(idt, aus, idt.mouth_width, idt.mouth_y)
    return FaceModel(parts, {k: lm[k] for k in LANDMARKS}, idt, aus)


def _surface_point(idt: Identity, aus: dict, x: float, y: float) -> np.ndarray:
    X, Y = np.array([x]), np.array([y])
    z = base_z(idt, X, Y) + relief(idt, X, Y)
    dx, dy, dz = expression_field(idt, aus, X, Y, np.zeros(1, dtype=bool))
    return np.array([x + dx[0], y + dy[0], z[0] + dz[0]])


def _grid_normals(P: np.ndarray) -> np.ndarray:
    du = np.roll(P, -1, 1) - np.roll(P, 1, 1)
    dv = np.gradient(P, axis=0)
    n = np.cross(du, dv)
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    sign = np.sign(np.sum(n * P, axis=-1, keepdims=True))
    return n * np.where(sign == 0, 1, sign)


def _n(length: float, px_per_unit: float, lo: int = 6) -> int:
    return max(lo, int(np.ceil(length * px_per_unit * SAMPLES_PER_PIXEL)))


def _ellipsoid(centre, radii, n_u: int, n_v: int, u_range=(-np.pi, np.pi), v_range=(-np.pi / 2, np.pi / 2)):
    u = np.linspace(*u_range, n_u)
    v = np.linspace(*v_range, n_v)
    U, V = np.meshgrid(u, v)
    p = np.stack([radii[0] * np.sin(U) * np.cos(V), radii[1] * np.sin(V), radii[2] * np.cos(U) * np.cos(V)], -1)
    return p + np.asarray(centre), U, V


def _eyes(idt: Identity, base: _HeadBase, ppu: float) -> list[Surface]:
    out = []
    rx, ry, rz = base.eye_radii
    for c, iris in zip(base.eye_centres, (idt.iris_right, idt.iris_left)):
        n = _n(2.4 * rx, ppu, 16)
        p, U, V = _ellipsoid(c, base.eye_radii, n, n, (-1.6, 1.6), (-1.5, 1.5))
        # iris and pupil as discs around the front pole (in the tangent plane)
        r = np.hypot(p[..., 0] - c[0], p[..., 1] - c[1])
        ang = np.arctan2(p[..., 1] - c[1], p[..., 0] - c[0])
        iris_r, pupil_r = 0.068, idt.pupil
        front = (np.cos(U) * np.cos(V))[..., None]
        sclera = np.array([0.9, 0.88, 0.84]) * (0.8 + 0.2 * front) * np.array([1.0, 0.9, 0.88]) ** (1 - front)
        ir = np.asarray(iris) * (0.85 + 0.15 * np.cos(ang * 17 + 3 * r / iris_r) + 0.35 * (r / iris_r) ** 2)[..., None]
        ir = np.where((r > 0.85 * iris_r)[..., None], ir * 0.5, ir)
        col = np.where((r < iris_r)[..., None], ir, sclera)
        col = np.where((r < pupil_r)[..., None], np.array([0.03, 0.03, 0.03]), col)
        spec = np.where(r < iris_r, 1.0, 0.5)
        # the cornea bulges over the iris: a sliver of it shows even in a full profile
        front_half = p[..., 2] > c[2]
        p[..., 2] += np.where(front_half, CORNEA * np.clip(1 - (r / (1.15 * iris_r)) ** 2, 0, 1), 0.0)
        out.append(grid_surface(p, np.clip(col, 0, 1), None, spec, outward=np.asarray(c)))
    return out


def _mouth_inside(idt: Identity, aus: dict, ppu: float) -> list[Surface]:
    """Mouth cavity, tongue and teeth: hidden by the lips until the mouth opens."""
    ym, xc = idt.mouth_y, idt.mouth_width
    zl = float((base_z(idt, np.zeros(1), np.array([ym])) + relief(idt, np.zeros(1), np.array([ym])))[0])
    centre = (0.0, ym - 0.05, zl - 0.34)
    radii = (xc * 0.75, 0.19, 0.2)
    p, U, V = _ellipsoid(centre, radii, _n(1.4, ppu * 0.4, 16), _n(1.0, ppu * 0.4, 12))  # dark: coarse is fine
    # the cavity stretches (continuously: a tear here would open a window into the head) as the jaw drops
    drop = JAW_DROP * _mean(aus, 26) + 0.09 * _mean(aus, 16) + 0.03 * _mean(aus, 25)
    p[..., 1] -= drop * smoothstep(ym + 0.02, ym - 0.12, p[..., 1])
    tongue = np.clip((ym - 0.08 - p[..., 1]) / 0.06, 0, 1)[..., None]
    col = np.array([0.2, 0.05, 0.05]) * (1 - tongue) + np.array([0.5, 0.22, 0.22]) * tongue
    parts = [grid_surface(p, col, None, 0.2, outward=np.asarray(centre))]
    # teeth: two arcs just behind the lips, the lower one carried by the jaw
    xs = np.linspace(-xc * 0.8, xc * 0.8, _n(1.6 * xc, ppu, 12))
    for top, bottom, zoff, lower in ((ym + 0.065, ym - 0.045, 0.06, False), (ym - 0.005, ym - 0.1, 0.08, True)):
        ys = np.linspace(top, bottom, _n(top - bottom, ppu, 6))
        Xg, Yg = np.meshgrid(xs, ys)
        Zg = zl - zoff - 2.0 * Xg ** 2
        if lower:
            dx, dy, dz = expression_field(idt, aus, Xg, Yg, np.ones(Xg.shape, dtype=bool))
            Pg = np.stack([Xg, Yg + dy, Zg + dz], -1)
        else:
            Pg = np.stack([Xg, Yg, Zg], -1)
        gap = np.abs(((Xg + 0.021) / 0.042) % 1.0 - 0.5) * 2  # 0 at the gaps between teeth
        col = np.array([0.9, 0.88, 0.8]) * (0.65 + 0.35 * np.clip(gap * 3, 0, 1))[..., None]
        gum = (Yg > ym + 0.04) if not lower else (Yg < ym - 0.08)
        col = np.where(gum[..., None], np.array([0.7, 0.35, 0.35]), col)
        col = col * (0.7 + 0.3 * (1 - np.abs(Xg) / xc))[..., None]  # darker toward the back of the mouth
        parts.append(grid_surface(Pg, col, None, 0.4, outward=np.array([0.0, float(Yg.mean()), zl - 0.5])))
    return parts


def _ears(idt: Identity, ppu: float) -> list[Surface]:
    out = []
    yc = idt.eye_height - 0.2
    w = float(half_width(idt, np.array([yc]))[0])
    es = idt.ear_size
    radii = (0.05, 0.3 * es, 0.16 * es)  # thin sideways, tall, narrow front-to-back
    tilt = np.radians(15)
    for s in (-1, 1):
        centre = np.array([s * (w - 0.015), yc, -0.2])
        p, U, V = _ellipsoid((0, 0, 0), radii, _n(1.0 * es, ppu, 12), _n(1.9 * es, ppu, 12))
        inner = ((U - s * np.pi / 2) / 0.7) ** 2 + (V / 0.8) ** 2 < 1.0  # the concha, on the outer face
        y, z = p[..., 1], p[..., 2]
        q = np.stack([p[..., 0], y * np.cos(tilt) + z * np.sin(tilt), z * np.cos(tilt) - y * np.sin(tilt)], -1)
        col = np.where(inner[..., None], np.asarray(idt.skin) * np.array([0.72, 0.58, 0.56]),
                       np.asarray(idt.skin) * np.array([1.0, 0.94, 0.92]))
        out.append(grid_surface(q + centre, col, None, 0.08, outward=centre))
    return out


def _neck(idt: Identity, ppu: float) -> Surface:
    rx = (0.56 if idt.sex == "M" else 0.5) * idt.head_width / 0.8
    rz, zc = 0.58, -0.3
    circ = np.pi * (rx + rz)
    th = np.linspace(-np.pi, np.pi, _n(circ, ppu, 24), endpoint=False)
    ys = np.linspace(-0.85, -2.15, _n(1.3, ppu * 0.5, 12))  # shading barely changes along the neck
    T, Yg = np.meshgrid(th, ys)
    p = np.stack([rx * np.sin(T), Yg, zc + rz * np.cos(T)], -1)
    shade = 0.75 + 0.25 * smoothstep(-1.2, -1.7, Yg)  # shadow under the jaw
    col = np.asarray(idt.skin) * shade[..., None] * 0.95
    return grid_surface(p, col, None, 0.06, wrap_u=True,
                        outward=np.stack([np.zeros_like(Yg), Yg, np.full_like(Yg, zc)], -1))


def _hair_curtain(idt: Identity, ppu: float) -> Surface:
    """Hair falling from the crown over the sides and back of the head (medium and long styles)."""
    a0 = np.radians(56 if idt.hair_style == "long" else 66)
    bottom = idt.eye_height - (2.2 if idt.hair_style == "long" else 1.15)
    th = np.linspace(a0, 2 * np.pi - a0, _n(2 * np.pi * 1.25 * (1 - a0 / np.pi), ppu, 24))
    top = idt.head_height * 0.97
    hang = idt.eye_height + 0.1  # above this the hair follows the skull, below it hangs
    ys = np.concatenate([np.linspace(top, hang, _n(1.6 * (top - hang), ppu, 8), endpoint=False),
                         np.linspace(hang, bottom, _n(hang - bottom, ppu, 12))])
    T, Yg = np.meshgrid(th, ys)
    sx, sz = _superellipse(T, idt.squareness)
    rng = np.random.default_rng(np.random.SeedSequence([idt.texture_seed, 13]))
    clumps = np.interp(T, np.linspace(0, 2 * np.pi, 61), rng.uniform(-1, 1, 61))
    down = smoothstep(hang, bottom, Yg)
    off = idt.hair_volume + 0.1 + 0.06 * np.sin(np.pi * np.clip(down * 1.6, 0, 1)) + 0.03 * clumps + 0.12 * down ** 2
    ang = np.degrees(np.minimum(T, 2 * np.pi - T))
    off = 0.02 + (off - 0.02) * smoothstep(np.degrees(a0), np.degrees(a0) + 35, ang)  # hug the face at the front
    yc = np.maximum(Yg, hang)  # the skull's cross-section at this height (constant below ``hang``)
    w = half_width(idt, yc)
    fd = front_depth(idt, yc) * 0.45
    depth = fd + (back_depth(idt, yc) - fd) * smoothstep(0.3, -0.3, sz)
    Xg = (w + off) * sx
    Zg = (depth + off) * sz
    strands = np.interp(T, np.linspace(0, 2 * np.pi, 601), rng.uniform(-1, 1, 601))
    ragged = 0.12 * np.interp(T * 5, np.linspace(0, 40, 401), rng.uniform(0, 1, 401))
    mask = Yg > bottom + ragged
    hair_col = np.asarray(idt.hair_color, dtype=np.float32)
    col = np.clip(hair_col * (0.85 + 0.15 * strands + 0.1 * clumps)[..., None], 0, 1)
    return grid_surface(np.stack([Xg, Yg, Zg], -1), col, mask, 0.15,
                        outward=np.stack([np.zeros_like(Yg), np.minimum(Yg, hang - 0.3), np.zeros_like(Yg)], -1))


def _tube(path: np.ndarray, radius: float, color, ppu: float) -> Surface:
    """A tube of ``radius`` around a polyline ``path`` (K, 3), resampled to about one sample per pixel."""
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0, arc[-1], _n(arc[-1], ppu, 8))
    path = np.stack([np.interp(t, arc, path[:, k]) for k in range(3)], -1)
    tang = np.gradient(path, axis=0)
    tang /= np.maximum(np.linalg.norm(tang, axis=-1, keepdims=True), 1e-12)
    ref = np.where(np.abs(tang[:, 1:2]) < 0.9, np.array([[0.0, 1.0, 0.0]]), np.array([[1.0, 0.0, 0.0]]))
    b1 = np.cross(tang, ref)
    b1 /= np.maximum(np.linalg.norm(b1, axis=-1, keepdims=True), 1e-12)
    b2 = np.cross(tang, b1)
    a = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    p = path[None] + radius * (np.cos(a)[:, None, None] * b1[None] + np.sin(a)[:, None, None] * b2[None])  # (8, K, 3)
    col = np.broadcast_to(np.asarray(color, dtype=np.float32), p.shape)
    return grid_surface(p, col, None, 0.6, wrap_u=False, outward=np.broadcast_to(path[None], p.shape))


def _glasses(idt: Identity, ppu: float) -> list[Surface]:
    ex, ey = idt.eye_spacing, idt.eye_height
    if idt.glasses == "round":
        rx, ry, expo, r = 0.18, 0.16, 2.0, 0.013
    else:
        rx, ry, expo, r = 0.21, 0.14, 4.0, 0.016
    k = _n(2 * np.pi * rx, ppu, 40)
    a = np.linspace(0, 2 * np.pi, k)
    ca, sa = np.cos(a), np.sin(a)
    ux = np.sign(ca) * np.abs(ca) ** (2 / expo)
    uy = np.sign(sa) * np.abs(sa) ** (2 / expo)
    # the rims sit clear of the skin under them (cheeks, brow)
    probe_x = np.concatenate([ex + rx * ux, ex + 0.6 * rx * ux])
    probe_y = np.concatenate([ey + ry * uy, ey + 0.6 * ry * uy])
    skin = base_z(idt, probe_x, probe_y) + relief(idt, probe_x, probe_y)
    zr = float(skin.max()) + 0.06
    parts = []
    color = idt.glasses_color
    for s in (-1, 1):
        x = s * ex + rx * ux
        y = ey + 0.01 + ry * uy
        outer = np.clip(s * (x - s * ex) / rx, 0, 1)
        z = zr - 0.08 * (y - ey) - 0.06 * outer ** 2
        parts.append(_tube(np.stack([x, y, z], -1), r, color, ppu))
    # bridge over the nose
    inner = ex - rx
    bx = np.linspace(-inner, inner, 20)
    by = np.full_like(bx, ey + 0.06)
    nose = base_z(idt, bx, by) + relief(idt, bx, by)
    bz = np.maximum(zr - 0.01, nose + 0.025)
    parts.append(_tube(np.stack([bx, by + 0.015 * (1 - (bx / inner) ** 2), bz], -1), r * 0.8, color, ppu))
    # temples: from the outer edge of each rim back to the ear, clear of the side of the head
    for s in (-1, 1):
        zs = np.linspace(zr - 0.06, -0.2, 30)
        ys = np.full_like(zs, ey + 0.07)  # hinged at the rim's upper outer corner, above the pupil
        w = half_width(idt, ys)
        fd = front_depth(idt, ys)
        n_ = idt.squareness
        head_x = w * np.clip(1 - np.clip(zs / fd, 0, 1) ** n_, 0, 1) ** (1 / n_)
        xs = np.maximum(ex + rx + 0.005, head_x + 0.045)
        parts.append(_tube(np.stack([s * xs, ys, zs], -1), r * 0.7, color, ppu))
    return parts
