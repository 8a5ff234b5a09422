"""Synthetic people: the persistent geometry and appearance of one identity.

Lengths are in *head units*: the head's half-width at the cheekbones is ~0.8 (1 unit ~ 87 mm). The head's
canonical frame: ``x`` toward the subject's left, ``y`` up, ``z`` forward (out of the face); the eye line
is near ``y = 0``. An :class:`Identity` is drawn once per person from ``(seed, index)`` so that every
picture of that person, in any session, view or expression, shows the same face.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HAIR_STYLES = ("buzz", "short", "medium", "long", "fringe")
GLASSES_STYLES = ("round", "rect")

_SKIN = np.array([  # light to dark, roughly spanning the Fitzpatrick scale
    [0.96, 0.80, 0.70], [0.92, 0.72, 0.60], [0.85, 0.64, 0.50], [0.76, 0.55, 0.40],
    [0.62, 0.43, 0.30], [0.48, 0.32, 0.22], [0.36, 0.24, 0.17],
])
_HAIR = np.array([
    [0.06, 0.05, 0.05], [0.16, 0.10, 0.07], [0.30, 0.19, 0.11], [0.52, 0.36, 0.20],
    [0.78, 0.63, 0.38], [0.55, 0.22, 0.10], [0.62, 0.60, 0.58], [0.85, 0.84, 0.82],
])
_IRIS = np.array([
    [0.25, 0.14, 0.06], [0.38, 0.22, 0.10], [0.45, 0.35, 0.15], [0.30, 0.45, 0.25],
    [0.30, 0.48, 0.70], [0.50, 0.58, 0.62], [0.15, 0.09, 0.05],
])
_FRAMES = np.array([[0.05, 0.05, 0.05], [0.35, 0.2, 0.1], [0.6, 0.6, 0.62], [0.5, 0.1, 0.1],
                    [0.1, 0.15, 0.35]])


@dataclass
class Identity:
    """One synthetic person. Every field has a sensible default (an average face), so tests can build a
    face field by field; :func:`sample_identity` draws them all."""

    index: int = 0
    sex: str = "F"  # "F" or "M"
    # --- head shape (head units) ---
    head_width: float = 0.80  # half-width at the cheekbones
    head_height: float = 1.30  # crown above the eye line
    chin_depth: float = 1.38  # chin below the eye line
    face_depth: float = 1.00  # how far the face front lies ahead of the head's centre
    back_depth: float = 1.20  # how far the back of the head lies behind it
    jaw_width: float = 0.78  # jaw half-width (at the jaw angle) relative to head_width
    chin_width: float = 0.36  # chin half-width relative to head_width
    chin_forward: float = 0.0  # chin protrusion (+) or recession (-)
    squareness: float = 2.4  # superellipse exponent of horizontal cross-sections (2 = ellipse)
    cheekbones: float = 0.035
    brow_ridge: float = 0.03
    forehead_slope: float = 0.18
    # --- features ---
    eye_spacing: float = 0.36  # half the inter-pupil distance
    eye_height: float = 0.0
    eye_width: float = 0.155  # half-width of the eye fissure
    eye_open: float = 0.056  # upper-lid height above the eye centre (neutral)
    eye_lower: float = 0.048  # lower-lid depth below the eye centre
    eye_tilt: float = 0.015  # outer corner height (canthal tilt)
    eye_recess: float = 0.03
    brow_height: float = 0.22
    brow_thickness: float = 0.05
    brow_arch: float = 0.04
    nose_length: float = 0.43  # eye line to nose tip
    nose_height: float = 0.27  # protrusion of the tip
    nose_width: float = 0.15  # half-width across the alae
    nose_bridge: float = 0.09
    mouth_y: float = -0.82  # mouth line below the eye line
    mouth_width: float = 0.28  # half-width
    upper_lip: float = 0.075
    lower_lip: float = 0.09
    lip_protrusion: float = 0.06
    ear_size: float = 1.0
    # --- appearance (RGB in [0, 1]) ---
    skin: tuple[float, float, float] = (0.85, 0.64, 0.50)
    lips: tuple[float, float, float] = (0.72, 0.38, 0.36)
    brow_color: tuple[float, float, float] = (0.2, 0.13, 0.08)
    hair_color: tuple[float, float, float] = (0.2, 0.13, 0.08)
    hair_style: str = "short"
    hairline: float = 0.88  # forehead hairline height
    hair_volume: float = 0.06
    iris_left: tuple[float, float, float] = (0.30, 0.48, 0.70)  # subject's left eye
    iris_right: tuple[float, float, float] = (0.30, 0.48, 0.70)
    pupil: float = 0.026
    stubble: float = 0.0  # 0 clean-shaven .. 1 dark beard shadow
    blush: float = 0.3
    freckles: float = 0.0
    moles: list[tuple[float, float, float]] = field(default_factory=list)  # (x, y, radius) on the face
    makeup: float = 0.0
    glasses: str = ""  # "" or one of GLASSES_STYLES
    glasses_color: tuple[float, float, float] = (0.05, 0.05, 0.05)
    rest: dict = field(default_factory=dict)  # resting expression {au: (left, right)}, e.g. a slight frown
    texture_seed: int = 0  # seeds the skin/hair noise so that it is the same in every picture

    def __post_init__(self) -> None:
        if self.sex not in ("F", "M"):
            raise ValueError(f"Identity.sex={self.sex!r} must be 'F' or 'M'")
        if self.hair_style not in HAIR_STYLES:
            raise ValueError(f"Identity.hair_style={self.hair_style!r} must be one of {HAIR_STYLES}")
        if self.glasses and self.glasses not in GLASSES_STYLES:
            raise ValueError(f"Identity.glasses={self.glasses!r} must be '' or one of {GLASSES_STYLES}")


def identity_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of identity ``index`` under ``seed`` (independent of every other stream)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0x1D, int(index)]))


def _pick(rng: np.random.Generator, table: np.ndarray, jitter: float) -> tuple[float, float, float]:
    i = rng.uniform(0, len(table) - 1)
    lo = int(np.floor(i))
    hi = min(lo + 1, len(table) - 1)
    c = table[lo] * (1 - (i - lo)) + table[hi] * (i - lo)
    c = c * (1 + rng.normal(0, jitter, 3))
    return tuple(float(v) for v in np.clip(c, 0, 1))


def sample_identity(seed: int, index: int) -> Identity:
    """Draw identity ``index`` of the population ``seed`` (deterministic)."""
    rng = identity_rng(seed, index)
    sex = "F" if rng.random() < 0.5 else "M"
    m = sex == "M"
    n = rng.normal
    u = rng.uniform
    skin = np.array(_pick(rng, _SKIN, 0.03))
    lips = np.clip(skin * np.array([0.92, 0.62, 0.62]) + np.array([0.05, 0.0, 0.02]) + n(0, 0.02, 3), 0, 1)
    hair_color = _pick(rng, _HAIR[:6] if rng.random() < 0.9 else _HAIR, 0.06)
    brow = tuple(float(v) for v in np.clip(np.array(hair_color) * 0.8 + 0.02, 0, 1))
    styles = ("buzz", "short", "short", "medium", "fringe") if m else ("short", "medium", "long", "long", "fringe")
    iris = _pick(rng, _IRIS, 0.05)
    moles = [(float(u(-0.6, 0.6)), float(u(-1.1, 0.6)), float(u(0.007, 0.016)))
             for _ in range(int(rng.poisson(1.2)))]
    rest: dict = {}
    if rng.random() < 0.35:  # a resting face that is not quite blank
        au = int(rng.choice([1, 4, 12, 15, 7]))
        v = float(u(0.05, 0.25))
        rest[au] = (v, v)
    ident = Identity(
        index=int(index), sex=sex,
        head_width=float(0.80 + n(0, 0.03) + 0.02 * m),
        head_height=float(1.30 + n(0, 0.04)),
        chin_depth=float(1.38 + n(0, 0.05) + 0.03 * m),
        face_depth=float(1.00 + n(0, 0.03)),
        back_depth=float(1.20 + n(0, 0.05)),
        jaw_width=float(np.clip(0.76 + n(0, 0.04) + 0.04 * m, 0.62, 0.92)),
        chin_width=float(np.clip(0.34 + n(0, 0.05) + 0.05 * m, 0.22, 0.5)),
        chin_forward=float(n(0, 0.035)),
        squareness=float(np.clip(2.4 + n(0, 0.15), 2.0, 2.9)),
        cheekbones=float(np.clip(0.04 + n(0, 0.012), 0, 0.08)),
        brow_ridge=float(np.clip(0.03 + n(0, 0.01) + 0.015 * m, 0, 0.07)),
        forehead_slope=float(np.clip(0.2 + n(0, 0.05), 0.05, 0.35)),
        eye_spacing=float(0.36 + n(0, 0.015)),
        eye_height=float(n(0, 0.02)),
        eye_width=float(0.155 + n(0, 0.009)),
        eye_open=float(np.clip(0.056 + n(0, 0.007), 0.04, 0.072)),
        eye_lower=float(np.clip(0.048 + n(0, 0.006), 0.035, 0.062)),
        eye_tilt=float(n(0.015, 0.014)),
        eye_recess=float(np.clip(0.03 + n(0, 0.008), 0.012, 0.05)),
        brow_height=float(0.22 + n(0, 0.018) - 0.015 * m),
        brow_thickness=float(np.clip(0.045 + n(0, 0.008) + 0.01 * m, 0.03, 0.07)),
        brow_arch=float(np.clip(0.045 + n(0, 0.014) - 0.012 * m, 0.0, 0.08)),
        nose_length=float(0.43 + n(0, 0.03) + 0.015 * m),
        nose_height=float(np.clip(0.26 + n(0, 0.03) + 0.015 * m, 0.18, 0.36)),
        nose_width=float(np.clip(0.15 + n(0, 0.015) + 0.01 * m, 0.11, 0.2)),
        nose_bridge=float(np.clip(0.09 + n(0, 0.02), 0.04, 0.14)),
        mouth_y=float(-0.82 + n(0, 0.03)),
        mouth_width=float(np.clip(0.28 + n(0, 0.018), 0.23, 0.33)),
        upper_lip=float(np.clip(0.07 + n(0, 0.012) - 0.008 * m, 0.04, 0.1)),
        lower_lip=float(np.clip(0.09 + n(0, 0.013) - 0.008 * m, 0.055, 0.12)),
        lip_protrusion=float(np.clip(0.06 + n(0, 0.01), 0.035, 0.085)),
        ear_size=float(np.clip(1.0 + n(0, 0.08), 0.8, 1.2)),
        skin=tuple(float(v) for v in skin), lips=tuple(float(v) for v in lips),
        brow_color=brow, hair_color=hair_color,
        hair_style=str(styles[int(rng.integers(len(styles)))]),
        hairline=float(0.88 + n(0, 0.05) + (0.1 * rng.random() if m else 0.0)),
        hair_volume=float(np.clip(0.06 + n(0, 0.015), 0.03, 0.1)),
        iris_left=iris, iris_right=iris if rng.random() > 0.01 else _pick(rng, _IRIS, 0.05),
        pupil=float(np.clip(0.026 + n(0, 0.004), 0.018, 0.034)),
        stubble=float(np.clip(u(-0.3, 1.0), 0, 1)) if m else 0.0,
        blush=float(u(0.1, 0.5)),
        freckles=float(u(0.3, 1.0)) if rng.random() < 0.15 else 0.0,
        moles=moles,
        makeup=float(u(0.2, 0.9)) if (not m and rng.random() < 0.5) else 0.0,
        glasses=str(GLASSES_STYLES[int(rng.integers(2))]) if rng.random() < 0.25 else "",
        glasses_color=_pick(rng, _FRAMES, 0.05),
        rest=rest,
        texture_seed=int(rng.integers(2 ** 31)),
    )
    return ident
