"""The face's colours, painted in the canonical frontal frame of the head.

The texture is an image over canonical ``(x, y)`` (the head's undeformed frontal coordinates, see
:mod:`.face`): every front-facing surface sample looks its colour up at its canonical position, so that a
brow painted here moves wherever an action unit moves the skin that carries it. Two layers: the identity's
(skin tone variation, brows, lips, nostrils, stubble, moles; painted once per person) and the expression's
(lash lines along the current eye aperture, wrinkles: forehead lines for AU1/2, glabellar lines for AU4,
crow's feet for AU6, nasolabial folds for AU9/10/12, nose wrinkles for AU9, chin dimpling for AU17).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .identity import Identity

EXTENT = 1.5  # the texture covers canonical x, y in [-EXTENT, EXTENT]


@dataclass
class Canvas:
    """A float RGB image over canonical coordinates, with helpers to paint soft-edged shapes."""

    rgb: np.ndarray  # (R, R, 3) float32

    @property
    def res(self) -> int:
        return self.rgb.shape[0]

    def px(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Canonical (x, y) -> texture pixel (column, row); y up, rows down."""
        r = self.res
        return (np.asarray(x) + EXTENT) / (2 * EXTENT) * r, (EXTENT - np.asarray(y)) / (2 * EXTENT) * r

    def mask(self, draw_fn, blur: float = 0.0) -> np.ndarray:
        """Run ``draw_fn(ImageDraw, px)`` on a blank 'L' image and return it as alpha in [0, 1]."""
        img = Image.new("L", (self.res, self.res), 0)
        draw_fn(ImageDraw.Draw(img), self.px)
        if blur > 0:
            img = img.filter(ImageFilter.GaussianBlur(blur * self.res / 256))
        return np.asarray(img, dtype=np.float32) / 255.0

    def blend(self, alpha: np.ndarray, color) -> None:
        a = alpha[..., None]
        self.rgb = self.rgb * (1 - a) + np.asarray(color, dtype=np.float32) * a

    def multiply(self, alpha: np.ndarray, factor) -> None:
        self.rgb = self.rgb * (1 - alpha[..., None] * (1 - np.asarray(factor, dtype=np.float32)))

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear lookup at canonical positions -> ``(N, 3)``."""
        c, r = self.px(x, y)
        c = np.clip(c - 0.5, 0, self.res - 1.001)
        r = np.clip(r - 0.5, 0, self.res - 1.001)
        c0 = c.astype(np.int32)
        r0 = r.astype(np.int32)
        fc = (c - c0)[..., None]
        fr = (r - r0)[..., None]
        t = self.rgb
        top = t[r0, c0] * (1 - fc) + t[r0, c0 + 1] * fc
        bot = t[r0 + 1, c0] * (1 - fc) + t[r0 + 1, c0 + 1] * fc
        return top * (1 - fr) + bot * fr

    def copy(self) -> "Canvas":
        return Canvas(self.rgb.copy())


def _grid(res: int) -> tuple[np.ndarray, np.ndarray]:
    v = (np.arange(res) + 0.5) / res * 2 * EXTENT - EXTENT
    return np.meshgrid(v, -v)  # x, y (y up)


def smooth_noise(rng: np.random.Generator, res: int, cells: int, channels: int = 1) -> np.ndarray:
    """Band-limited noise in [-1, 1]: ``cells`` x ``cells`` random values upsampled bicubically."""
    out = []
    for _ in range(channels):
        small = rng.uniform(0, 255, (cells, cells)).astype(np.uint8)
        big = Image.fromarray(small, "L").resize((res, res), Image.BICUBIC)
        out.append(np.asarray(big, dtype=np.float32) / 127.5 - 1.0)
    return np.stack(out, -1) if channels > 1 else out[0]


def lip_outline(idt: Identity, n: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical x, upper border y and lower border y of the lips, corner to corner."""
    xc = idt.mouth_width
    x = np.linspace(-xc, xc, n)
    t = np.clip(1 - (x / xc) ** 2, 0, 1)
    bow = 1 + 0.25 * np.exp(-0.5 * ((np.abs(x) - 0.07) / 0.04) ** 2) - 0.2 * np.exp(-0.5 * (x / 0.025) ** 2)
    upper = idt.mouth_y + idt.upper_lip * np.sqrt(t) * bow
    lower = idt.mouth_y - idt.lower_lip * t ** 0.6
    return x, upper, lower


def brow_curve(idt: Identity, side: int, n: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A brow as a centre line (canonical x, y) with a half-thickness per point; ``side`` +1 = subject's left."""
    t = np.linspace(0, 1, n)  # inner end -> outer end
    x = side * (0.08 + t * (idt.eye_spacing + idt.eye_width - 0.02))
    y = (idt.eye_height + idt.brow_height + idt.brow_arch * np.sin(np.pi * np.clip(t * 1.25, 0, 1)) ** 1.2
         - 0.03 * t ** 2)
    half = idt.brow_thickness * (1.0 - 0.55 * t) * (0.7 + 0.3 * np.sin(np.pi * np.clip(t * 3, 0, 1)))
    return x, y, half


def paint_identity(idt: Identity, res: int = 256) -> Canvas:
    """The identity layer: skin, brows, lips, nostrils, stubble, moles, freckles, make-up."""
    rng = np.random.default_rng(np.random.SeedSequence([idt.texture_seed, 7]))
    skin = np.asarray(idt.skin, dtype=np.float32)
    noise = smooth_noise(rng, res, 7, 3) * 0.035 + smooth_noise(rng, res, 40) [..., None] * 0.015
    cv = Canvas(np.clip(skin * (1 + noise), 0, 1).astype(np.float32))
    X, Y = _grid(res)
    ey, ex = idt.eye_height, idt.eye_spacing

    # cheeks a little redder, the area under the eyes a little darker
    for s in (-1, 1):
        g = np.exp(-0.5 * (((X - s * 0.48) / 0.16) ** 2 + ((Y - (ey - 0.32)) / 0.14) ** 2))
        cv.blend(g * 0.25 * idt.blush, skin * np.array([1.08, 0.82, 0.8]))
        g = np.exp(-0.5 * (((X - s * ex) / 0.12) ** 2 + ((Y - (ey - 0.1)) / 0.035) ** 2))
        cv.multiply(g * 0.35, [0.86, 0.8, 0.84])
        if idt.makeup > 0:  # eye shadow on the upper lid
            g = np.exp(-0.5 * (((X - s * (ex + 0.02)) / 0.13) ** 2 + ((Y - (ey + 0.085)) / 0.04) ** 2))
            cv.multiply(g * 0.5 * idt.makeup, [0.75, 0.62, 0.7])

    # stubble / beard shadow: jaw, chin and upper lip, broken up by noise
    if idt.stubble > 0:
        ym = idt.mouth_y
        region = (np.exp(-0.5 * ((Y - (ym - 0.25)) / 0.38) ** 2) * np.clip((ym + 0.2 - Y) / 0.08, 0, 1)
                  * np.clip((0.8 - np.abs(X)) / 0.15, 0, 1)
                  * (1 - np.exp(-0.5 * ((X / 0.3) ** 2 + ((Y - (ym + 0.3)) / 0.1) ** 2))))
        region = np.clip(region * 1.2, 0, 1) * (0.75 + 0.25 * smooth_noise(rng, res, 60))
        cv.multiply(region * 0.5 * idt.stubble, np.asarray(idt.hair_color) / np.maximum(skin, 0.05) * 0.6 + 0.4)

    # freckles and moles
    if idt.freckles > 0:
        for _ in range(int(60 * idt.freckles)):
            fx, fy = rng.normal(0, 0.3), rng.normal(ey - 0.3, 0.12)
            r = rng.uniform(0.005, 0.011)
            g = np.exp(-0.5 * (((X - fx) ** 2 + (Y - fy) ** 2) / r ** 2))
            cv.multiply(g * 0.5, [0.75, 0.6, 0.5])
    for mx, my, mr in idt.moles:
        g = np.exp(-0.5 * (((X - mx) ** 2 + (Y - my) ** 2) / mr ** 2))
        cv.multiply(np.clip(g * 1.5, 0, 1) * 0.8, [0.45, 0.35, 0.3])

    # lips: soft-edged polygon, darker line where they meet
    lx, up, lo = lip_outline(idt)
    lips_col = np.asarray(idt.lips, dtype=np.float32)
    if idt.makeup > 0:
        lips_col = np.clip(lips_col * np.array([1.1, 0.75, 0.8]) * (1 - 0.1 * idt.makeup), 0, 1)

    def draw_lips(d, px):
        c, r = px(np.concatenate([lx, lx[::-1]]), np.concatenate([up, lo[::-1]]))
        d.polygon(list(zip(c.tolist(), r.tolist())), fill=255)

    cv.blend(cv.mask(draw_lips, blur=0.8) * 0.9, lips_col)

    def draw_line(d, px):
        c, r = px(lx, np.full_like(lx, idt.mouth_y))
        d.line(list(zip(c.tolist(), r.tolist())), fill=255, width=max(1, res // 200))

    cv.multiply(cv.mask(draw_line, blur=0.6) * 0.8, [0.35, 0.2, 0.2])

    # nostrils (they sit on the underside of the tip, seen foreshortened from the front)
    tip = ey - idt.nose_length

    def draw_nostrils(d, px):
        for s in (-1, 1):
            c0, r0 = px(s * idt.nose_width * 0.4 - 0.028, tip - 0.05)
            c1, r1 = px(s * idt.nose_width * 0.4 + 0.028, tip - 0.085)
            d.ellipse([float(c0), float(r0), float(c1), float(r1)], fill=255)

    cv.multiply(cv.mask(draw_nostrils, blur=1.0) * 0.8, [0.3, 0.2, 0.18])

    # brows: a ribbon along the brow curve plus short hair strokes
    brow = np.asarray(idt.brow_color, dtype=np.float32)
    for s in (-1, 1):
        bx, by, half = brow_curve(idt, s)

        def draw_brow(d, px, bx=bx, by=by, half=half):
            c, r = px(np.concatenate([bx, bx[::-1]]), np.concatenate([by + half * 0.55, (by - half * 0.45)[::-1]]))
            d.polygon(list(zip(c.tolist(), r.tolist())), fill=200)
            for _ in range(70):
                t = rng.uniform(0, 1)
                i = t * (len(bx) - 1)
                j = int(i)
                f = i - j
                k = min(j + 1, len(bx) - 1)
                x0 = bx[j] * (1 - f) + bx[k] * f
                y0 = by[j] * (1 - f) + by[k] * f + rng.uniform(-0.5, 0.5) * half[j]
                ang = np.radians(20 + 30 * t) if s > 0 else np.radians(160 - 30 * t)
                ln = 0.03
                c0, r0 = px(x0, y0)
                c1, r1 = px(x0 + ln * np.cos(ang), y0 + ln * np.sin(ang) * 0.5)
                d.line([(float(c0), float(r0)), (float(c1), float(r1))], fill=255, width=1)

        cv.blend(cv.mask(draw_brow, blur=0.5) * 0.9, brow)
    return cv


@dataclass
class Aperture:
    """One eye's fissure: canonical centre, half-width, lid heights and canthal tilt."""

    cx: float
    cy: float
    half_width: float
    upper: float
    lower: float
    tilt: float
    side: int  # +1 subject's left (x > 0), -1 right

    def curves(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x, upper-lid y and lower-lid y at normalised positions ``u`` in [-1, 1] (inner to outer is
        ``-side`` to ``+side``)."""
        uo = u * self.side  # +1 at the outer corner
        x = self.cx + u * self.half_width
        t = np.clip(1 - u ** 2, 0, 1)
        base = self.cy + self.tilt * uo
        up = base + self.upper * t ** 0.7 * (1 - 0.12 * uo)
        lo = base - self.lower * t * (1 + 0.15 * uo)
        return x, up, lo

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u = (x - self.cx) / self.half_width
        ok = np.abs(u) < 1
        uc = np.clip(u, -1, 1)
        _, up, lo = self.curves(uc)
        return ok & (y < up) & (y > lo)


def paint_expression(base: Canvas, idt: Identity, apertures: list[Aperture], aus: dict) -> Canvas:
    """Copy ``base`` and paint the expression's lash lines and wrinkles (intensities from ``aus``)."""
    cv = base.copy()
    res = cv.res
    ey, ym = idt.eye_height, idt.mouth_y

    def side_of(au: int, s: int) -> float:
        left, right = aus.get(au, (0.0, 0.0))
        return float(left if s > 0 else right)

    def mean(au: int) -> float:
        left, right = aus.get(au, (0.0, 0.0))
        return float(left + right) / 2

    lash = np.asarray(idt.brow_color, dtype=np.float32) * 0.5
    u = np.linspace(-1, 1, 24)
    for ap in apertures:
        x, up, lo = ap.curves(u)

        def draw_lashes(d, px, x=x, up=up, lo=lo):
            c, r = px(x, up)
            d.line(list(zip(c.tolist(), r.tolist())), fill=255, width=max(2, res // 110))
            c, r = px(x, lo)
            d.line(list(zip(c.tolist(), r.tolist())), fill=110, width=max(1, res // 250))

        cv.blend(cv.mask(draw_lashes, blur=0.5) * 0.9, lash)

        def draw_crease(d, px, x=x, up=up, ap=ap):
            c, r = px(x, up + 0.035 + 0.3 * ap.upper)
            d.line(list(zip(c[3:-3].tolist(), r[3:-3].tolist())), fill=255, width=max(1, res // 180))

        cv.multiply(cv.mask(draw_crease, blur=1.2) * 0.35, [0.7, 0.6, 0.6])

    strokes: list[tuple[list[tuple[float, float]], float]] = []  # (canonical polyline, strength)
    # forehead lines (AU1 centre, AU2 sides)
    f1, f2 = mean(1), mean(2)
    if f1 + f2 > 0.05:
        for k in range(3):
            yk = ey + 0.42 + 0.09 * k
            xs = np.linspace(-0.5, 0.5, 13)
            weight = f1 * np.exp(-0.5 * (xs / 0.2) ** 2) + f2 * np.exp(-0.5 * ((np.abs(xs) - 0.36) / 0.14) ** 2)
            ys = yk + 0.02 * np.cos(xs * 5 + k)
            for i in range(len(xs) - 1):
                strokes.append(([(xs[i], ys[i]), (xs[i + 1], ys[i + 1])], 0.5 * float(weight[i])))
    # glabellar lines (AU4), nose wrinkles (AU9)
    f4 = mean(4)
    if f4 > 0.05:
        for s in (-1, 1):
            strokes.append(([(s * 0.045, ey + 0.1), (s * 0.065, ey + 0.27)], 0.6 * f4))
    f9 = mean(9)
    if f9 > 0.05:
        for k in range(3):
            yk = ey + 0.0 - 0.04 * k
            strokes.append(([(-0.08, yk - 0.012), (0.0, yk + 0.01), (0.08, yk - 0.012)], 0.55 * f9))
    for s in (-1, 1):
        # crow's feet (AU6)
        f6 = side_of(6, s)
        if f6 > 0.05:
            ox = s * (idt.eye_spacing + idt.eye_width + 0.04)
            for k in (-1, 0, 1):
                strokes.append(([(ox, ey + 0.012 * k), (ox + s * 0.1, ey + 0.05 * k - 0.012)], 0.5 * f6))
        # nasolabial fold (AU12, AU9, AU10, AU6)
        f = side_of(12, s) + 0.6 * side_of(9, s) + 0.6 * side_of(10, s) + 0.3 * side_of(6, s)
        if f > 0.05:
            nx = s * (idt.nose_width * 0.75 + 0.06)
            ny = ey - idt.nose_length + 0.02
            cx = s * (idt.mouth_width + 0.07)
            pts = [(nx, ny), (nx + s * 0.07, ny - 0.13), (cx, ym - 0.03), (cx - s * 0.01, ym - 0.13)]
            strokes.append((pts, min(1.0, 0.8 * f)))
        # dimple (AU14)
        f14 = side_of(14, s)
        if f14 > 0.05:
            c = s * (idt.mouth_width + 0.04)
            strokes.append(([(c, ym + 0.03), (c + s * 0.006, ym - 0.035)], 0.7 * f14))
    # chin dimpling (AU17)
    f17 = mean(17)
    if f17 > 0.05:
        for k in range(5):
            x0 = -0.1 + 0.05 * k
            strokes.append(([(x0, ym - 0.26), (x0 + 0.012, ym - 0.3)], 0.35 * f17))
        strokes.append(([(-0.14, ym - 0.15), (0.0, ym - 0.17), (0.14, ym - 0.15)], 0.5 * f17))
    if strokes:
        levels: dict[int, list] = {}
        for pts, strength in strokes:
            levels.setdefault(int(np.clip(strength, 0, 1) * 8), []).append(pts)

        def draw(d, px):
            for level, lines in levels.items():
                for pts in lines:
                    c, r = px(np.array([p[0] for p in pts]), np.array([p[1] for p in pts]))
                    d.line(list(zip(c.tolist(), r.tolist())), fill=int(255 * level / 8), width=max(1, res // 120))

        cv.multiply(cv.mask(draw, blur=1.6) * 0.6, [0.62, 0.52, 0.5])
    return cv
