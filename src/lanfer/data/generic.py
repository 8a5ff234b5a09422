"""Generic layouts for people's own data: an image folder tree and a CSV list."""
from __future__ import annotations

import csv
from pathlib import Path

from .base import IMAGE_EXTENSIONS, DataError, FERDataset, Sample
from .registry import register_dataset


def _resolve_classes(found: list[str], classes: list[str] | None, where: str) -> list[str]:
    if classes is None:
        return sorted(found)
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"{where}: class folder/label {unknown[0]!r} is not in the configured classes "
                        f"{classes}; add it to data.classes or remove it")
    return list(classes)


@register_dataset("imagefolder")
def build_imagefolder(root, split, transform=None, classes=None, skip_bad=False, **_):
    """``root/<split>/<class_name>/*.jpg``. Class order from ``classes`` or the sorted folder names."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        have = sorted(p.name for p in Path(root).iterdir() if p.is_dir())
        raise DataError(f"imagefolder: split folder {str(split_dir)!r} does not exist "
                        f"(found: {have or 'no folders'}); expected root/<split>/<class>/*.jpg")
    found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
    names = _resolve_classes(found, classes, str(split_dir))
    samples = []
    for name in found:
        for f in sorted((split_dir / name).rglob("*")):
            if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file():
                samples.append(Sample(str(f), names.index(name), {"class_name": name}))
    ds = FERDataset(samples, names, transform, name="imagefolder", skip_bad=skip_bad)
    return ds


@register_dataset("csv")
def build_csv(root, split, transform=None, classes=None, skip_bad=False, **_):
    """A CSV file with a header: ``path,label[,split]`` (+ any extra columns, kept as metadata).

    ``root`` is the CSV file (or a folder holding ``labels.csv``); relative paths are relative to the CSV's
    folder. ``label`` is a class name or an integer index into ``classes``. Rows without a ``split`` column
    belong to every split.
    """
    path = Path(root)
    if path.is_dir():
        path = path / "labels.csv"
    if not path.is_file():
        raise DataError(f"csv: label file {str(path)!r} does not exist")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        if "path" not in cols or "label" not in cols:
            raise DataError(f"{path}: the header must name 'path' and 'label' columns (found {cols})")
        rows = list(enumerate(reader, start=2))
    raw = []
    for line, row in rows:
        if "split" in row and row["split"] not in (None, "") and row["split"] != split:
            continue
        if not row.get("path"):
            raise DataError(f"{path}:{line}: empty path")
        raw.append((line, row))
    labels = [r["label"] for _, r in raw]
    numeric = all(str(v).strip().lstrip("-").isdigit() for v in labels)
    if numeric:
        if classes is None:
            n = max((int(v) for v in labels), default=-1) + 1
            names = [str(i) for i in range(n)]
        else:
            names = list(classes)
    else:
        names = _resolve_classes(sorted(set(labels)), classes, str(path))
    samples = []
    for line, row in raw:
        v = row["label"].strip()
        if numeric:
            k = int(v)
            if not 0 <= k < len(names):
                raise DataError(f"{path}:{line}: label {k} is outside 0..{len(names) - 1} ({len(names)} classes)")
        else:
            k = names.index(v)
        p = Path(row["path"])
        if not p.is_absolute():
            p = path.parent / p
        meta = {c: row[c] for c in cols if c not in ("path", "label", "split")}
        meta["line"] = line
        samples.append(Sample(str(p), k, meta))
    ds = FERDataset(samples, names, transform, name="csv", skip_bad=skip_bad)
    return ds
