"""Generic layouts for people's own data: an image folder tree and a CSV list."""
from __future__ import annotations

from pathlib import Path

from ._common import Issues, csv_rows, entry_path
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
            # not f.is_file(): a dangling or looping link named like an image must fail loudly, by name
            if f.suffix.lower() in IMAGE_EXTENSIONS and not f.is_dir():
                samples.append(Sample(str(f), names.index(name), {"class_name": name}))
    ds = FERDataset(samples, names, transform, name="imagefolder", skip_bad=skip_bad)
    return ds


@register_dataset("csv")
def build_csv(root, split, transform=None, classes=None, skip_bad=False, **_):
    """A CSV file with a header: ``path,label[,split]`` (+ any extra columns, kept as metadata).

    ``root`` is the CSV file (or a folder holding ``labels.csv``); paths are relative to the CSV's folder and
    may not leave it (no absolute paths, no ``..`` above it, no links out of it: a label file from elsewhere
    must not pick which files of this machine are read). ``label`` is a class name or an integer index into
    ``classes``. Rows without a ``split`` column belong to every split. A row with missing or extra cells, an
    empty path or a repeated path is refused with its line (with ``skip_bad``: counted and skipped).
    """
    path = Path(root)
    if path.is_dir():
        path = path / "labels.csv"
    if not path.is_file():
        raise DataError(f"csv: label file {str(path)!r} does not exist")
    rows = csv_rows(path)
    _, cols = next(rows, (1, []))
    cols = [c.strip() for c in cols]
    if "path" not in cols or "label" not in cols or len(set(cols)) != len(cols):
        raise DataError(f"{path}:1: the header must name 'path' and 'label' columns, each once (found {cols})")
    issues = Issues(f"csv {path}", skip_bad)
    report: dict = {"source": str(path), "split": split, "rows": 0}
    raw, seen = [], {}
    for line, cells in rows:
        if not cells:
            continue
        report["rows"] += 1
        if len(cells) != len(cols):
            issues.bad(f"{path}:{line}: expected {len(cols)} cells ({','.join(cols)}), found {len(cells)}")
            continue
        row = dict(zip(cols, (c.strip() for c in cells)))
        if "split" in row and row["split"] != "" and row["split"] != split:
            continue
        if not row["path"] or not row["label"]:
            issues.bad(f"{path}:{line}: empty {'path' if not row['path'] else 'label'}")
            continue
        if row["path"] in seen:
            issues.bad(f"{path}:{line}: {row['path']!r} is listed again (first at line {seen[row['path']]})")
            continue
        file, why = entry_path(path.parent, row["path"])
        if file is None:
            issues.bad(f"{path}:{line}: {why}; put the CSV in a folder that holds the images")
            continue
        seen[row["path"]] = line
        raw.append((line, row, file))
    labels = [r["label"] for _, r, _ in raw]
    numeric = all(v.isascii() and v.lstrip("-").isdigit() for v in labels)  # int("²") fails
    if numeric:
        if classes is None:
            n = max((int(v) for v in labels), default=-1) + 1
            names = [str(i) for i in range(n)]
        else:
            names = list(classes)
    else:
        names = sorted(set(labels)) if classes is None else list(classes)
    samples = []
    for line, row, file in raw:
        v = row["label"]
        if numeric and not 0 <= int(v) < len(names):
            issues.bad(f"{path}:{line}: label {v} is outside 0..{len(names) - 1} ({len(names)} classes)")
            continue
        if not numeric and v not in names:
            issues.bad(f"{path}:{line}: label {v!r} is not one of the configured classes {names}; add it to "
                       "data.classes or fix the row")
            continue
        meta = {c: row[c] for c in cols if c not in ("path", "label", "split")}
        meta["line"] = line
        samples.append(Sample(str(file), int(v) if numeric else names.index(v), meta))
    issues.finish(report)
    ds = FERDataset(samples, names, transform, name="csv", skip_bad=skip_bad)
    ds.report = report
    return ds
