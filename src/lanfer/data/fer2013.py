"""FER2013, read from Kaggle's csv or from the common image-folder release.

Layouts (``root`` is the csv file or a folder holding one of these):

* ``fer2013.csv`` with header ``emotion,pixels,Usage``: 48x48 grey images as 2,304 space-separated
  values; ``Usage`` is ``Training`` (28,709 rows), ``PublicTest`` (3,589) or ``PrivateTest`` (3,589).
  The ``icml_face_data.csv`` variant (``emotion, Usage, pixels``, with spaces) is read the same way.
* ``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` with class folders ``angry, disgust, fear, happy,
  neutral, sad, surprise`` (28,709 train / 7,178 test: its test folder holds PublicTest and PrivateTest;
  it has no validation split).

Classes, in FER2013's label order: ``Angry, Disgust, Fear, Happy, Sad, Surprise, Neutral``.
Splits: ``train`` = Training, ``val`` = PublicTest, ``test`` = PrivateTest.
Options: ``source="auto"|"csv"|"folders"``.
"""
from __future__ import annotations

import csv
import sys
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from ._common import (Issues, OfficialDataset, OfficialSample, check_classes, check_options, first_existing,
                      normalize_split)
from .base import IMAGE_EXTENSIONS, DataError
from .registry import register_dataset

FER2013_CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
FER2013_FOLDERS = {"angry": 0, "disgust": 1, "fear": 2, "happy": 3, "sad": 4, "surprise": 5, "neutral": 6}
FER2013_EXPECTED = {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
USAGES = ("Training", "PublicTest", "PrivateTest")
_SPLITS = {"train": "Training", "training": "Training", "val": "PublicTest", "valid": "PublicTest",
           "validation": "PublicTest", "publictest": "PublicTest", "test": "PrivateTest",
           "privatetest": "PrivateTest"}
CSV_NAMES = ("fer2013.csv", "fer2013/fer2013.csv", "icml_face_data.csv")
SIDE = 48


def find_fer2013_csv(root: str | Path) -> Path | None:
    root = Path(root)
    if root.is_file():
        return root
    return first_existing(root / n for n in CSV_NAMES)


def read_fer2013_csv(path: str | Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` for each data row, with header names stripped (``" Usage"`` ->
    ``"Usage"``). Raises :class:`DataError` when the header lacks ``pixels`` or ``Usage``."""
    path = Path(path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # a pixels cell is ~9 kB, above csv's default cap
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: the file is empty; expected FER2013's csv (emotion,pixels,Usage)")
        names = [h.strip() for h in header]
        for need in ("pixels", "Usage"):
            if need not in names:
                raise DataError(f"{path}:1: header {names} lacks a {need!r} column; expected FER2013's "
                                "csv (emotion,pixels,Usage)")
        for line_no, cells in enumerate(reader, start=2):
            if not cells:
                continue
            yield line_no, dict(zip(names, (c.strip() for c in cells)))


def parse_pixels(text: str) -> np.ndarray | None:
    """2,304 space-separated values in 0..255 -> (48, 48) uint8, or None when the string is malformed."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy warns (instead of failing) on a non-number mid-string
        try:
            values = np.fromstring(text, dtype=np.int32, sep=" ")
        except (ValueError, DeprecationWarning):
            return None
    if values.size != SIDE * SIDE or values.min(initial=0) < 0 or values.max(initial=0) > 255:
        return None
    return values.astype(np.uint8).reshape(SIDE, SIDE)


@register_dataset("fer2013")
def build_fer2013(root, split, transform=None, classes=None, skip_bad=False, **options):
    """FER2013 from Kaggle's csv or from ``train|test/<class>/`` folders (see the module docstring)."""
    check_options("fer2013", options, {"source"})
    check_classes("fer2013", FER2013_CLASSES, classes)
    usage = normalize_split("fer2013", split, _SPLITS)
    source = options.get("source", "auto")
    root = Path(root)
    csv_path = find_fer2013_csv(root)
    has_folders = root.is_dir() and (root / "train").is_dir()
    if source == "auto":
        source = "csv" if csv_path is not None else ("folders" if has_folders else None)
    if source == "csv":
        if csv_path is None:
            raise DataError(f"fer2013: no {' or '.join(CSV_NAMES)} under {str(root)!r}")
        ds = _from_csv(csv_path, usage, transform, skip_bad)
    elif source == "folders":
        ds = _from_folders(root, usage, transform, skip_bad)
    else:
        raise DataError(f"fer2013: found neither {' / '.join(CSV_NAMES)} nor train/<class>/ folders under "
                        f"{str(root)!r}; point data.root at Kaggle's fer2013.csv or the folder release")
    return ds


def _from_csv(path: Path, usage: str, transform, skip_bad: bool) -> OfficialDataset:
    issues = Issues(f"fer2013 {path}", skip_bad)
    samples, pixels, rows = [], [], 0
    for line_no, row in read_fer2013_csv(path):
        where = f"{path}:{line_no}"
        u = row.get("Usage", "")
        if u not in USAGES:
            issues.bad(f"{where}: Usage {u!r} is not one of {', '.join(USAGES)}")
            continue
        if u != usage:
            continue
        rows += 1
        code = row.get("emotion", "")
        if not (code.isascii() and code.isdigit()) or not 0 <= int(code) < len(FER2013_CLASSES):
            issues.bad(f"{where}: emotion {code!r} is outside 0..6 ({', '.join(FER2013_CLASSES)})")
            continue
        image = parse_pixels(row.get("pixels", ""))
        if image is None:
            issues.bad(f"{where}: pixels are not {SIDE * SIDE} space-separated values in 0..255")
            continue
        samples.append(OfficialSample(f"{path}#{usage}/{line_no}", int(code), {"line": line_no},
                                      where=where, row=len(pixels)))
        pixels.append(image)
    report = {"source": str(path), "split": usage, "rows": rows, "expected": FER2013_EXPECTED[usage]}
    issues.finish(report)
    array = np.stack(pixels) if pixels else np.zeros((0, SIDE, SIDE), np.uint8)
    return OfficialDataset(samples, FER2013_CLASSES, transform, name="fer2013", skip_bad=skip_bad,
                           root=path.parent, report=report, pixels=array)


def _from_folders(root: Path, usage: str, transform, skip_bad: bool) -> OfficialDataset:
    if usage == "PublicTest":
        raise DataError("fer2013: the folder release (train/, test/) has no validation split; use split "
                        "'test', or the csv release for PublicTest")
    folder = root / ("train" if usage == "Training" else "test")
    if not folder.is_dir():
        raise DataError(f"fer2013: split folder {str(folder)!r} does not exist")
    issues = Issues(f"fer2013 {folder}", skip_bad)
    samples = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        label = FER2013_FOLDERS.get(class_dir.name.lower())
        if label is None:
            issues.bad(f"{class_dir}: class folder {class_dir.name!r} is not one of "
                       f"{', '.join(FER2013_FOLDERS)}")
            continue
        for f in sorted(class_dir.iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append(OfficialSample(str(f), label, {}, where=str(f)))
    expected = 28709 if usage == "Training" else 7178  # the folder release's test = Public + Private
    report = {"source": str(folder), "split": usage, "rows": len(samples), "expected": expected}
    issues.finish(report)
    return OfficialDataset(samples, FER2013_CLASSES, transform, name="fer2013", skip_bad=skip_bad,
                           root=root, report=report)
