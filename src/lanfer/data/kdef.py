"""KDEF (Karolinska Directed Emotional Faces): 70 people x 7 expressions x 5 views x 2 sessions = 4,900.

Layout: ``KDEF/<folder>/<name>.JPG`` where ``root`` is ``KDEF/`` or the folder holding it. A name such as
``AF01ANHL`` reads: session ``A``/``B`` (the same person photographed twice), sex ``F``/``M``, two-digit id,
expression ``AF AN DI HA NE SA SU``, view ``FL HL S HR FR`` (the straight view is a single letter:
``AF01ANS.JPG``). The identity is sex + id (``F01``); sessions A and B of ``F01`` are one person.

Classes (the expression codes in alphabetical order): ``afraid, angry, disgusted, happy, neutral, sad,
surprised``. Metadata: ``subject`` (``F01``), ``session`` (``A``/``B``), ``sex``, ``view`` (code), ``yaw``
(degrees, as in the paper: FL -90 full left profile, HL -45, S 0, HR +45, FR +90) and ``fold``.

Protocol (paper, Table 1): 10-fold cross-validation. Folds are identity-disjoint by default
(``fold_by="subject"``: both sessions of a person fall in one fold; subjects are shuffled with ``seed`` per
sex and dealt round-robin, so each fold holds 7 people of both sexes) or image-level
(``fold_by="image"``: stratified by expression). ``split="train"`` is every fold but ``fold``,
``split="test"`` (or ``"val"``) is fold ``fold``, ``split="all"`` everything. Fold assignment depends only
on the file names, ``folds``, ``fold_by`` and ``seed``.

Cropping: real KDEF pictures are 562x762 head-and-shoulder portraits. ``crop="auto"`` (default) cuts the
fixed box :data:`KDEF_FACE_BOX` (scaled to the picture) from pictures with KDEF's portrait aspect ratio and
leaves square pictures (e.g. the synthetic renderer's faces, or pre-aligned crops) untouched;
``crop="box"`` always cuts it (or ``crop_box=[l, t, r, b]`` in 562x762 coordinates), ``crop="none"`` never.
The box is a fixed approximation covering forehead to chin in the straight and profile views; the paper
aligns faces with a detector (RetinaFace) instead.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from ._common import (Issues, OfficialDataset, OfficialSample, check_classes, check_options, crop_to_box,
                      scale_box)
from .base import IMAGE_EXTENSIONS, DataError, Sample
from .registry import register_dataset

KDEF_CLASSES = ["afraid", "angry", "disgusted", "happy", "neutral", "sad", "surprised"]
KDEF_EXPRESSIONS = {"AF": 0, "AN": 1, "DI": 2, "HA": 3, "NE": 4, "SA": 5, "SU": 6}
# View code -> yaw in degrees, from the left profile to the right (the order tables and plots use). The one
# definition: the synthetic renderer, the demo and its report import it. Positive yaw = head turned to the
# subject's left, nose toward image-right (FR shows the subject's right cheek).
KDEF_VIEWS: dict[str, int] = {"FL": -90, "HL": -45, "S": 0, "HR": 45, "FR": 90}
KDEF_PORTRAIT = (562, 762)
# (left, top, right, bottom) in 562x762 pixels: a 420-px square from the forehead to below the chin.
KDEF_FACE_BOX = (71, 170, 491, 590)
KDEF_EXPECTED = 4900
NAME_RE = re.compile(r"^([AB])([FM])(\d{2})(AF|AN|DI|HA|NE|SA|SU)(FL|HL|S|HR|FR)$", re.IGNORECASE)


def parse_kdef_name(name: str) -> dict | None:
    """``"AF01ANHL.JPG"`` -> session, sex, subject, expression code, label, view, yaw; None if not KDEF."""
    m = NAME_RE.match(Path(name).stem)
    if m is None:
        return None
    session, sex, num, expr, view = (g.upper() for g in m.groups())
    return {"session": session, "sex": sex, "subject": f"{sex}{num}", "expression": expr,
            "label": KDEF_EXPRESSIONS[expr], "view": view, "yaw": KDEF_VIEWS[view]}


def find_kdef_root(root: str | Path) -> Path:
    root = Path(root)
    return root / "KDEF" if (root / "KDEF").is_dir() else root


class KDEFDataset(OfficialDataset):
    """KDEF samples; cuts the face box out of full portraits on load (see the module docstring)."""

    def __init__(self, *args, crop: str = "auto", crop_box=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.crop = crop
        self.crop_box = tuple(float(v) for v in (crop_box or KDEF_FACE_BOX))

    def crop_image(self, image: Image.Image, sample: Sample) -> Image.Image:
        if self.crop == "none":
            return image
        w, h = image.size
        portrait = abs(w / h - KDEF_PORTRAIT[0] / KDEF_PORTRAIT[1]) < 0.02
        if self.crop == "auto" and not portrait:
            return image
        return crop_to_box(image, scale_box(self.crop_box, w / KDEF_PORTRAIT[0], h / KDEF_PORTRAIT[1]))


def _scan(base: Path, issues: Issues) -> list[tuple[Path, dict]]:
    files = [p for pattern in ("*", "*/*") for p in base.glob(pattern)
             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    found: dict[str, Path] = {}
    items = []
    for f in sorted(files):
        info = parse_kdef_name(f.name)
        if info is None:
            issues.bad(f"{f}: file name {f.name!r} is not KDEF's <session><sex><id><expression><view> "
                       "(e.g. AF01ANHL.JPG, AF01ANS.JPG)")
            continue
        key = f.stem.upper()
        if key in found:
            issues.bad(f"{f}: duplicate of {found[key]} (same KDEF name)")
            continue
        found[key] = f
        items.append((f, info))
    return items


def assign_folds(items: list[tuple[str, dict]], folds: int = 10, by: str = "subject", seed: int = 0) -> list[int]:
    """Fold index per item (``(name, info)`` pairs from :func:`parse_kdef_name`), deterministic.

    ``by="subject"``: people are shuffled per sex with ``seed`` and dealt round-robin (females first, then
    males continuing the deal), so folds are identity-disjoint and mixed in sex. ``by="image"``: images
    are shuffled per expression and dealt round-robin, continuing across expressions.
    """
    if folds < 2:
        raise DataError(f"kdef: folds={folds} must be at least 2")
    rng = np.random.default_rng(seed)
    if by == "subject":
        subjects = sorted({info["subject"] for _, info in items})
        if len(subjects) < folds:
            raise DataError(f"kdef: {len(subjects)} subjects cannot fill {folds} identity-disjoint folds; "
                            "use fewer folds or fold_by=image")
        order: list[str] = []
        for sex in ("F", "M"):
            group = [s for s in subjects if s[0] == sex]
            order += [group[i] for i in rng.permutation(len(group))]
        fold_of = {s: i % folds for i, s in enumerate(order)}
        return [fold_of[info["subject"]] for _, info in items]
    if by == "image":
        if len(items) < folds:
            raise DataError(f"kdef: {len(items)} images cannot fill {folds} folds")
        result = [0] * len(items)
        deal = 0
        for label in range(len(KDEF_CLASSES)):
            idx = sorted((i for i, (_, info) in enumerate(items) if info["label"] == label),
                         key=lambda i: items[i][0])
            for j in rng.permutation(len(idx)):
                result[idx[j]] = deal % folds
                deal += 1
        return result
    raise DataError(f"kdef: fold_by={by!r} must be 'subject' or 'image'")


def kdef_folds(root: str | Path, folds: int = 10, by: str = "subject", seed: int = 0) -> list[dict]:
    """The cross-validation folds of a KDEF folder: per fold its held-out subjects and image counts.

    Returns ``[{"fold": k, "test_subjects": [...], "n_train": ..., "n_test": ...}, ...]``; train fold
    ``k`` with ``data.options.fold=k`` and report the mean and std of the ``folds`` test accuracies.
    """
    items = _scan(find_kdef_root(root), Issues("kdef", skip_bad=True))
    assignment = assign_folds([(f.stem.upper(), info) for f, info in items], folds, by, seed)
    out = []
    for k in range(folds):
        test = [info for (_, info), a in zip(items, assignment) if a == k]
        out.append({"fold": k, "test_subjects": sorted({i["subject"] for i in test}),
                    "n_test": len(test), "n_train": len(items) - len(test)})
    return out


@register_dataset("kdef")
def build_kdef(root, split, transform=None, classes=None, skip_bad=False, **options):
    """KDEF with k-fold cross-validation splits; see the module docstring for options."""
    check_options("kdef", options, {"fold", "folds", "fold_by", "seed", "crop", "crop_box", "views"})
    check_classes("kdef", KDEF_CLASSES, classes)
    folds = int(options.get("folds", 10))
    fold = int(options.get("fold", 0))
    by = options.get("fold_by", "subject")
    seed = int(options.get("seed", 0))
    crop = options.get("crop", "auto")
    if crop not in ("auto", "box", "none"):
        raise DataError(f"kdef: crop={crop!r} must be 'auto', 'box' or 'none'")
    crop_box = options.get("crop_box")
    if crop_box is not None and len(crop_box) != 4:
        raise DataError(f"kdef: crop_box={crop_box!r} must be [left, top, right, bottom] in 562x762 pixels")
    if not 0 <= fold < folds:
        raise DataError(f"kdef: fold={fold} must be in 0..{folds - 1} (folds={folds})")
    split = str(split).lower()
    if split not in ("train", "test", "val", "all"):
        raise DataError(f"kdef: unknown split {split!r}; use train, test (the held-out fold), val or all")
    views = options.get("views")
    if views is not None:
        views = [str(v).upper() for v in ([views] if isinstance(views, str) else views)]
        unknown = sorted(set(views) - set(KDEF_VIEWS))
        if unknown:
            raise DataError(f"kdef: views {unknown} are not KDEF views ({', '.join(KDEF_VIEWS)})")
    base = find_kdef_root(root)
    issues = Issues(f"kdef {base}", skip_bad)
    items = _scan(base, issues)
    if not items:
        raise DataError(f"kdef: no KDEF images (e.g. KDEF/AF01/AF01ANS.JPG) under {str(base)!r}")
    # Folds are computed on the whole set so that restricting views never moves a person between folds.
    assignment = assign_folds([(f.stem.upper(), info) for f, info in items], folds, by, seed)
    samples = []
    for (f, info), a in zip(items, assignment):
        if views is not None and info["view"] not in views:
            continue
        if split == "train" and a == fold or split in ("test", "val") and a != fold:
            continue
        meta = {"subject": info["subject"], "session": info["session"], "sex": info["sex"],
                "view": info["view"], "yaw": info["yaw"], "fold": a}
        samples.append(OfficialSample(str(f), info["label"], meta, where=str(f)))
    report = {"source": str(base), "split": split, "rows": len(items), "expected": KDEF_EXPECTED,
              "fold": fold, "folds": folds, "fold_by": by, "seed": seed}
    issues.finish(report)
    ds = KDEFDataset(samples, KDEF_CLASSES, transform, name="kdef", skip_bad=skip_bad, root=base,
                     report=report, crop=crop, crop_box=crop_box)
    return ds
