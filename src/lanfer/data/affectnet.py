"""AffectNet, read from either official release.

* The original release (``release="original"``): ``Manually_Annotated_Images/<dir>/<hash>.jpg`` with
  ``training.csv`` / ``validation.csv`` (in ``root`` or ``root/Manually_Annotated_file_lists``), columns
  ``subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression, valence,
  arousal``. ``validation.csv`` often comes without its header line; both forms are read. Pictures are
  whole photographs: the face is cropped from the face_* box (option ``crop``).
* The newer release (``release="v2"``): ``train_set/images/{i}.jpg`` and ``val_set/images/{i}.jpg``
  (already cropped faces) with ``annotations/{i}_exp.npy`` holding the expression code.

Expression codes: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger, 7 Contempt, 8 None,
9 Uncertain, 10 No-Face. ``num_classes=8`` (default; the paper compares with 8-class results and RAN's
Pose-AffectNet lists carry labels 0-7) keeps codes 0-7; ``num_classes=7`` keeps 0-6. Other codes are
dropped and counted in ``report["dropped"]``. Class names are the codes' names, in code order.

Splits: ``train`` = training set; ``val`` and ``test`` both = the validation set (AffectNet's test set is not
public; the paper reports the validation set, 500 images per class: 4,000 / 3,500 for 8 / 7 classes).
The training set is imbalanced: set ``data.balanced_sampling: true`` to oversample it
(:func:`lanfer.data.sampling.balanced_sampler`).

Options: ``num_classes=8|7``, ``crop="auto"|"bbox"|"none"`` (auto: crop to the box when it lies inside
the picture and is smaller than it, i.e. the picture is not already a face crop), ``release="auto"|
"original"|"v2"``, ``check_files=True``.
"""
from __future__ import annotations

import math
from pathlib import Path

from PIL import Image

from ._common import (DirIndex, Issues, OfficialDataset, OfficialSample, check_classes, check_options, count,
                      crop_to_box, csv_rows, entry_path, first_existing, normalize_split)
from .base import IMAGE_EXTENSIONS, DataError, Sample
from .registry import register_dataset

AFFECTNET_CODES = ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt",
                   "None", "Uncertain", "No-Face"]
AFFECTNET_CLASSES = {8: AFFECTNET_CODES[:8], 7: AFFECTNET_CODES[:7]}
COLUMNS = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
           "expression", "valence", "arousal"]
# Manually annotated images per split, for the record (codes 0-7 / 0-6).
AFFECTNET_EXPECTED = {("train", 8): 287651, ("train", 7): 283901, ("val", 8): 4000, ("val", 7): 3500}
_SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
           "test": "val"}
_DROPPED = {7: "contempt_in_7_class", 8: "none", 9: "uncertain", 10: "no_face"}


class AffectNetDataset(OfficialDataset):
    """AffectNet samples; crops the face box of the original release's photographs on load."""

    def __init__(self, *args, crop: str = "auto", **kwargs):
        super().__init__(*args, **kwargs)
        self.crop = crop

    def crop_image(self, image: Image.Image, sample: Sample) -> Image.Image:
        box = getattr(sample, "box", None)
        if box is None or self.crop == "none":
            return image
        if self.crop == "auto":
            w, h = image.size
            l, t, r, b = box
            inside = l >= -1 and t >= -1 and r <= w + 1 and b <= h + 1
            if not inside or (r - l) * (b - t) >= 0.95 * w * h:
                return image  # already a face crop (e.g. a pre-cropped copy of the release)
        return crop_to_box(image, box)


def _find_csv(root: Path, name: str) -> Path | None:
    return first_existing([root / name, root / "Manually_Annotated_file_lists" / name,
                           root / "Manually_Annotated" / name])


def _find_image_dir(root: Path) -> Path | None:
    return first_existing([root / "Manually_Annotated_Images",
                           root / "Manually_Annotated" / "Manually_Annotated_Images",
                           root / "Manually_Annotated_compressed"])


@register_dataset("affectnet")
def build_affectnet(root, split, transform=None, classes=None, skip_bad=False, **options):
    """AffectNet (either release); see the module docstring for layouts and options."""
    check_options("affectnet", options, {"num_classes", "crop", "release", "check_files"})
    want = normalize_split("affectnet", split, _SPLITS)
    num_classes = int(options.get("num_classes", 8))
    if num_classes not in AFFECTNET_CLASSES:
        raise DataError(f"affectnet: num_classes={num_classes} must be 7 or 8")
    names = AFFECTNET_CLASSES[num_classes]
    check_classes("affectnet", names, classes)
    crop = options.get("crop", "auto")
    if crop not in ("auto", "bbox", "none"):
        raise DataError(f"affectnet: crop={crop!r} must be 'auto', 'bbox' or 'none'")
    root = Path(root)
    release = options.get("release", "auto")
    csv_name = "training.csv" if want == "train" else "validation.csv"
    v2_dir = root / ("train_set" if want == "train" else "val_set")
    if release == "auto":
        release = "original" if _find_csv(root, csv_name) is not None else ("v2" if v2_dir.is_dir() else "")
    check = bool(options.get("check_files", True))
    if release == "original":
        ds = _original(root, csv_name, want, num_classes, names, crop, transform, skip_bad, check)
    elif release == "v2":
        ds = _v2(v2_dir, want, num_classes, names, crop, transform, skip_bad, check)
    else:
        raise DataError(f"affectnet: under {str(root)!r} found neither {csv_name} (original release, with "
                        f"Manually_Annotated_Images/) nor {v2_dir.name}/images + annotations (newer release)")
    return ds


def _original(root: Path, csv_name: str, want: str, num_classes: int, names: list[str], crop: str, transform,
              skip_bad: bool, check: bool) -> AffectNetDataset:
    label_path = _find_csv(root, csv_name)
    image_dir = _find_image_dir(root)
    if image_dir is None:
        raise DataError(f"affectnet: image folder Manually_Annotated_Images/ not found under {str(root)!r}")
    issues = Issues(f"affectnet {label_path}", skip_bad)
    report: dict = {"source": str(label_path), "split": want, "rows": 0,
                    "expected": AFFECTNET_EXPECTED[(want, num_classes)], "release": "original"}
    files = DirIndex()
    samples: list[OfficialSample] = []
    excluded: dict[str, str] = {}
    seen: dict[str, int] = {}
    for line_no, cells in csv_rows(label_path):
        if not cells:
            continue
        cells = [c.strip() for c in cells]
        if line_no == 1 and cells[0] == COLUMNS[0]:
            if cells[:len(COLUMNS)] != COLUMNS:
                raise DataError(f"{label_path}:1: header {cells} differs from AffectNet's {COLUMNS}")
            continue  # validation.csv is distributed with and without this header
        where = f"{label_path}:{line_no}"
        report["rows"] += 1
        if len(cells) != len(COLUMNS):
            issues.bad(f"{where}: expected {len(COLUMNS)} columns ({','.join(COLUMNS)}), found {len(cells)}")
            continue
        rel, code_text = cells[0], cells[6]
        try:
            code = int(float(code_text))
        except (ValueError, OverflowError):  # "nan", "inf"
            code = -1
        if not 0 <= code <= 10 or not rel:
            issues.bad(f"{where}: expression {code_text!r} is not an AffectNet code 0..10 "
                       f"({', '.join(AFFECTNET_CODES)})" if rel else f"{where}: empty subDirectory_filePath")
            continue
        if code >= num_classes:
            count(report, _DROPPED[code])
            if want == "val":  # pose lists name validation images: say why such an entry is absent
                excluded[Path(rel).stem.lower()] = f"{where}: code {code} ({AFFECTNET_CODES[code]}) is " \
                                                   f"outside the {num_classes}-class set"
            continue
        try:
            x, y, w, h = (float(c) for c in cells[1:5])
            finite = all(math.isfinite(v) for v in (x, y, w, h))  # an "inf" box would overflow the crop
            box = (x, y, x + w, y + h) if finite and w > 0 and h > 0 else None
        except ValueError:
            box = None
        if box is None and crop == "bbox":
            issues.bad(f"{where}: face box {cells[1:5]} is not four numbers with positive size")
            continue
        if rel in seen:
            issues.bad(f"{where}: image {rel!r} is listed again (first at line {seen[rel]})")
            continue
        seen[rel] = line_no
        path, why = entry_path(image_dir, rel)
        if path is None:
            issues.bad(f"{where}: {why}")
            continue
        if check and not files.exists(path):
            issues.bad(f"{where}: image {str(path)!r} does not exist")
            continue
        meta = {"line": line_no, "valence": _float(cells[7]), "arousal": _float(cells[8])}
        samples.append(OfficialSample(str(path), code, meta, where=where, box=box))
    issues.finish(report)
    ds = AffectNetDataset(samples, names, transform, name="affectnet", skip_bad=skip_bad, root=root,
                          report=report, crop=crop)
    ds.excluded = excluded
    return ds


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _v2(folder: Path, want: str, num_classes: int, names: list[str], crop: str, transform, skip_bad: bool,
        check: bool) -> AffectNetDataset:
    import numpy as np

    image_dir, ann_dir = folder / "images", folder / "annotations"
    if not image_dir.is_dir() or not ann_dir.is_dir():
        raise DataError(f"affectnet: {str(folder)!r} must hold images/ and annotations/ (newer release)")
    issues = Issues(f"affectnet {ann_dir}", skip_bad)
    report: dict = {"source": str(ann_dir), "split": want, "rows": 0,
                    "expected": AFFECTNET_EXPECTED[(want, num_classes)], "release": "v2"}
    images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS}
    ann = sorted(ann_dir.glob("*_exp.npy"), key=lambda p: (len(p.name), p.name))
    samples: list[OfficialSample] = []
    for f in ann:
        report["rows"] += 1
        stem = f.name[:-len("_exp.npy")]
        try:
            value = np.load(f, allow_pickle=False)
            code = int(np.asarray(value).reshape(-1)[0])  # stored as a string ('3') or an integer
        except (OSError, ValueError, IndexError) as e:
            issues.bad(f"{f}: not an expression code ({e})")
            continue
        if not 0 <= code <= 10:
            issues.bad(f"{f}: expression {code} is not an AffectNet code 0..10")
            continue
        if code >= num_classes:
            count(report, _DROPPED[code])
            continue
        path = images.get(stem)
        if path is None:
            if check:
                issues.bad(f"{f}: image {stem}.jpg is missing from {image_dir}")
                continue
            path = image_dir / f"{stem}.jpg"
        samples.append(OfficialSample(str(path), code, {}, where=str(f)))
    issues.finish(report)
    # v2 images are face crops already; "bbox" has no box to use, so every mode leaves them as they are.
    return AffectNetDataset(samples, names, transform, name="affectnet", skip_bad=skip_bad, root=folder.parent,
                            report=report, crop=crop)
