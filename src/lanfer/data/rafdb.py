"""RAF-DB (basic emotions), read from the official release.

Layout (``root`` is the ``basic`` folder or the folder holding it)::

    EmoLabel/list_patition_label.txt   lines "train_00001.jpg 5" (the official file name, typo included)
    Image/aligned/train_00001_aligned.jpg   100x100 aligned faces (used by default)
    Image/original/train_00001.jpg          full pictures (``images="original"``)

Classes, in RAF-DB's label order (file label ``k`` -> index ``k - 1``):
``Surprise, Fear, Disgust, Happiness, Sadness, Anger, Neutral``.
Splits come from the ``train_``/``test_`` name prefix: 12,271 train and 3,068 test images. RAF-DB has no
validation split; the paper (like its peers) reports the test split.

Options: ``images="auto"|"aligned"|"original"`` (auto: aligned when ``Image/aligned`` exists),
``check_files=True`` (verify at build time that every listed image exists).
"""
from __future__ import annotations

from pathlib import Path

from ._common import (DirIndex, Issues, OfficialDataset, OfficialSample, check_classes, check_options,
                      entry_path, first_existing, normalize_split, require, text_lines)
from .base import DataError
from .registry import register_dataset

RAFDB_CLASSES = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
RAFDB_EXPECTED = {"train": 12271, "test": 3068}
LABEL_FILE = "EmoLabel/list_patition_label.txt"
_SPLITS = {"train": "train", "training": "train", "test": "test", "testing": "test"}


def find_rafdb_root(root: str | Path) -> Path:
    """The folder holding ``EmoLabel/`` (``root`` itself or ``root/basic``)."""
    root = Path(root)
    looked = [root / LABEL_FILE, root / "basic" / LABEL_FILE]
    found = require(first_existing(looked), "RAF-DB label file", looked,
                    "Point data.root at RAF-DB's 'basic' folder (it holds EmoLabel/ and Image/).")
    return found.parent.parent


@register_dataset("rafdb")
def build_rafdb(root, split, transform=None, classes=None, skip_bad=False, **options):
    """RAF-DB basic: ``split`` is ``train`` or ``test``. See the module docstring for layout and options."""
    check_options("rafdb", options, {"images", "check_files"})
    check_classes("rafdb", RAFDB_CLASSES, classes)
    if str(split).lower() in ("val", "valid", "validation"):
        raise DataError("rafdb: RAF-DB has no validation split; use split 'test' (data.val_split=test)")
    want = normalize_split("rafdb", split, _SPLITS)
    base = find_rafdb_root(root)
    images = options.get("images", "auto")
    if images == "auto":
        images = "aligned" if (base / "Image" / "aligned").is_dir() else "original"
    if images not in ("aligned", "original"):
        raise DataError(f"rafdb: option images={images!r} must be 'auto', 'aligned' or 'original'")
    image_dir = base / "Image" / images
    if not image_dir.is_dir():
        raise DataError(f"rafdb: image folder {str(image_dir)!r} does not exist; unpack RAF-DB's "
                        f"Image/{images}.zip there (or choose images='aligned'/'original')")
    check = bool(options.get("check_files", True))

    label_path = base / LABEL_FILE
    issues = Issues(f"rafdb {label_path}", skip_bad)
    files = DirIndex()
    samples: list[OfficialSample] = []
    rows = 0
    seen: dict[str, str] = {}  # image name -> the line that listed it first
    for line_no, line in text_lines(label_path):
        text = line.strip()
        if not text:
            continue
        where = f"{label_path}:{line_no}"
        parts = text.split()
        if len(parts) != 2 or not (parts[1].isascii() and parts[1].lstrip("-").isdigit()):
            issues.bad(f"{where}: malformed line {text!r}; expected '<name>.jpg <label 1-7>'")
            continue
        name, code = parts[0], int(parts[1])
        prefix = name.split("_", 1)[0].lower()
        if prefix not in ("train", "test"):
            issues.bad(f"{where}: image name {name!r} starts with neither 'train_' nor 'test_'")
            continue
        if prefix != want:
            continue
        rows += 1
        if not 1 <= code <= len(RAFDB_CLASSES):
            issues.bad(f"{where}: label {code} is outside 1..{len(RAFDB_CLASSES)} "
                       f"({', '.join(RAFDB_CLASSES)})")
            continue
        if name in seen:
            issues.bad(f"{where}: image {name!r} is listed again (first at line {seen[name]}); a duplicate "
                       "would count it twice")
            continue
        seen[name] = str(line_no)
        stem = name.rsplit(".", 1)[0]
        path, why = entry_path(image_dir, f"{stem}_aligned.jpg" if images == "aligned" else name)
        if path is None:
            issues.bad(f"{where}: {why}")
            continue
        if check and not files.exists(path):
            issues.bad(f"{where}: image {str(path)!r} listed for {name!r} does not exist")
            continue
        samples.append(OfficialSample(str(path), code - 1, {"line": line_no}, where=where))
    report = {"source": str(label_path), "split": want, "rows": rows, "expected": RAFDB_EXPECTED[want],
              "images": images}
    issues.finish(report)
    ds = OfficialDataset(samples, RAFDB_CLASSES, transform, name="rafdb", skip_bad=skip_bad, root=base,
                         report=report)
    return ds
