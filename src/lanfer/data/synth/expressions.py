"""Facial expressions as FACS action units (AUs) with intensities, and the prototypes built from them.

An expression is a dict ``{au: (left, right)}`` of intensities in ``[0, 1]`` for the subject's anatomical
left and right halves of the face (most AUs are bilateral and equal on both sides; contempt is unilateral).
The renderer (:mod:`.face`) turns each AU into a deformation of the 3D face or a change of the eye aperture.

Prototypes (EMFACS-style, as in the issue): happiness AU6+AU12; sadness AU1+AU4+AU15; surprise
AU1+AU2+AU5+AU26; fear AU1+AU2+AU4+AU5+AU7+AU20+AU26; anger AU4+AU5+AU7+AU23; disgust AU9+AU15+AU16;
contempt unilateral AU12+AU14; neutral no AU. :func:`sample_expression` draws a random intensity, drops or
adds AUs and sometimes adds the AUs that usually come with a prototype (lips parting in a smile, AU17 in
sadness) so that classes overlap the way posed expressions of real people do.
"""
from __future__ import annotations

import numpy as np

from ..kdef import KDEF_CLASSES, KDEF_EXPRESSIONS

#: Every AU the renderer implements, with its FACS name.
AU_NAMES: dict[int, str] = {
    1: "inner brow raiser", 2: "outer brow raiser", 4: "brow lowerer", 5: "upper lid raiser",
    6: "cheek raiser", 7: "lid tightener", 9: "nose wrinkler", 10: "upper lip raiser",
    12: "lip corner puller", 14: "dimpler", 15: "lip corner depressor", 16: "lower lip depressor",
    17: "chin raiser", 20: "lip stretcher", 23: "lip tightener", 25: "lips part", 26: "jaw drop",
}
AUS: tuple[int, ...] = tuple(sorted(AU_NAMES))

#: Class names: KDEF's seven (same order and names as the ``kdef`` dataset, so a model trained on either
#: reads the other) plus ``contempt`` for 8-class sets.
EXPRESSIONS: tuple[str, ...] = tuple(KDEF_CLASSES) + ("contempt",)

#: Expression name -> KDEF file-name code (contempt has none: KDEF has no contempt pictures).
KDEF_CODE: dict[str, str] = {KDEF_CLASSES[label]: code for code, label in KDEF_EXPRESSIONS.items()}

#: The prototypes: expression -> AUs at full intensity. ``"unilateral"`` AUs act on one side only.
PROTOTYPES: dict[str, tuple[int, ...]] = {
    "neutral": (),
    "happy": (6, 12),
    "sad": (1, 4, 15),
    "surprised": (1, 2, 5, 26),
    "afraid": (1, 2, 4, 5, 7, 20, 26),
    "angry": (4, 5, 7, 23),
    "disgusted": (9, 15, 16),
    "contempt": (12, 14),
}
UNILATERAL: dict[str, tuple[int, ...]] = {"contempt": (12, 14)}

#: AUs that often accompany a prototype in posed pictures, with the probability of adding each.
COMPANIONS: dict[str, dict[int, float]] = {
    "happy": {25: 0.55, 26: 0.15},
    "sad": {17: 0.4},
    "surprised": {25: 0.8},
    "afraid": {25: 0.7},
    "angry": {17: 0.3, 25: 0.15},
    "disgusted": {10: 0.5, 4: 0.3, 25: 0.3},
    "contempt": {},
    "neutral": {},
}

AUState = dict  # {au: (left, right)}


def expression_names(n: int) -> tuple[str, ...]:
    """The class list of an ``n``-class set: 7 (KDEF's) or 8 (with contempt)."""
    if n not in (7, 8):
        raise ValueError(f"expressions={n}: use 7 (KDEF's classes) or 8 (adds contempt)")
    return EXPRESSIONS[:n]


def prototype(name: str, intensity: float = 1.0, side: str = "right") -> AUState:
    """The prototype of ``name`` at one ``intensity``; ``side`` picks the side of unilateral AUs."""
    if name not in PROTOTYPES:
        raise ValueError(f"unknown expression {name!r}; use one of {', '.join(EXPRESSIONS)}")
    aus: AUState = {}
    for au in PROTOTYPES[name]:
        if au in UNILATERAL.get(name, ()):
            aus[au] = (intensity, 0.0) if side == "left" else (0.0, intensity)
        else:
            aus[au] = (intensity, intensity)
    return aus


def sample_expression(name: str, rng: np.random.Generator, rest: AUState | None = None) -> AUState:
    """A random instance of expression ``name``.

    Intensity is drawn per picture (many are subtle), each prototype AU varies around it, an AU may be
    dropped (p=0.15, never the last one), an unrelated AU may be added at low intensity (p=0.3) and the
    usual companions of the prototype are added with their probabilities. ``rest`` is the identity's
    resting face (e.g. a slight frown), added to every expression.
    """
    if name not in PROTOTYPES:
        raise ValueError(f"unknown expression {name!r}; use one of {', '.join(EXPRESSIONS)}")
    aus: dict[int, list[float]] = {}
    proto = list(PROTOTYPES[name])
    strength = 0.25 + 0.75 * rng.beta(2.5, 1.3)  # mean ~0.74; a tail of faint expressions
    keep = [au for au in proto if rng.random() >= 0.15]
    if proto and not keep:
        keep = [proto[int(rng.integers(len(proto)))]]
    side = "left" if rng.random() < 0.5 else "right"
    for au in keep:
        v = float(np.clip(strength * rng.uniform(0.7, 1.25), 0.05, 1.0))
        if au in UNILATERAL.get(name, ()):
            other = v * rng.uniform(0.0, 0.15)
            aus[au] = [v, other] if side == "left" else [other, v]
        else:
            asym = rng.normal(0.0, 0.06)
            aus[au] = [float(np.clip(v * (1 + asym), 0, 1)), float(np.clip(v * (1 - asym), 0, 1))]
    for au, p in COMPANIONS.get(name, {}).items():
        if au not in aus and rng.random() < p:
            v = float(strength * rng.uniform(0.4, 1.0))
            aus[au] = [v, v]
    if rng.random() < (0.45 if name == "neutral" else 0.3):
        au = AUS[int(rng.integers(len(AUS)))]
        v = float(rng.uniform(0.08, 0.4))
        prev = aus.get(au, [0.0, 0.0])
        aus[au] = [max(prev[0], v), max(prev[1], v)]
    for au, (left, right) in (rest or {}).items():
        prev = aus.get(au, [0.0, 0.0])
        aus[au] = [min(1.0, prev[0] + left), min(1.0, prev[1] + right)]
    return {au: (round(float(lr[0]), 4), round(float(lr[1]), 4)) for au, lr in sorted(aus.items())
            if max(lr) > 0}


def au_intensity(aus: AUState, au: int) -> float:
    """The larger of the two sides' intensities (what a FACS coder scores for a unilateral AU)."""
    left, right = aus.get(au, (0.0, 0.0))
    return float(max(left, right))


def facs_code(aus: AUState) -> str:
    """FACS notation, e.g. ``"1C+2B+5B+26D"`` or ``"R12C+R14B"`` (intensity letters A-E; ``L``/``R``
    prefix the subject's side of a unilateral AU). Empty for a face with no AU."""
    parts = []
    for au in sorted(aus):
        left, right = aus[au]
        v = max(left, right)
        if v < 0.05:
            continue
        letter = "ABCDE"[min(4, int(v * 5))]
        prefix = ""
        if min(left, right) < 0.35 * v:
            prefix = "L" if left > right else "R"
        parts.append(f"{prefix}{au}{letter}")
    return "+".join(parts)
