"""``lanfer datasets``: which readers exist, and what a dataset folder holds per split.

Checking a download against the documented layout before training on it: per split the image count
(next to the official count where the reader knows it), the count per class, entries the reader
dropped by its label rule or skipped as bad, and how a pose list matched.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ._common import jsonable_report
from .base import DataError
from .registry import available_datasets, build_dataset


def describe_dataset(name: str, root: str | Path | None, splits: list[str] | None = None,
                     subset: str | None = None, **options) -> list[dict[str, Any]]:
    """Per split: the class names, image count per class and the reader's report (what ``lanfer datasets``
    prints to check a download against the documented layout)."""
    rows = []
    for split in splits or ["train", "test"]:
        ds = build_dataset(name, root, split, subset=subset, **options)
        rows.append({"split": split, "n": len(ds), "classes": list(ds.classes),
                     "class_counts": dict(zip(ds.classes, ds.class_counts())),
                     "report": jsonable_report(getattr(ds, "report", {}) or {}),
                     "subset_info": getattr(ds, "subset_info", None)})
    return rows


def datasets_text(name: str | None = None, root: str | None = None, splits: list[str] | str | None = None,
                  subset: str | None = None, options: list[str] | None = None) -> str:
    """``lanfer datasets``: the registered names, or (with ``name`` and ``root``) per-split counts of a
    dataset folder, to check a download against the documented layout. ``options`` are ``key=value``."""
    if name is None:
        return "datasets: " + ", ".join(available_datasets())
    import yaml

    opts = {}
    for item in options or []:
        if "=" not in item:
            raise DataError(f"option {item!r} is not key=value (e.g. num_classes=7)")
        key, value = item.split("=", 1)
        opts[key.strip()] = yaml.safe_load(value)
    if isinstance(splits, str):
        splits = [s for s in splits.split(",") if s]
    lines = []
    for row in describe_dataset(name, root, splits, subset=subset, **opts):
        rep = row["report"]
        head = f"{name}/{row['split']}: {row['n']} images"
        if rep.get("expected") is not None:
            head += f" (official: {rep['expected']})"
        lines.append(head)
        lines.append("  " + ", ".join(f"{c} {n}" for c, n in row["class_counts"].items()))
        if rep.get("dropped"):
            lines.append("  dropped: " + ", ".join(f"{k} {v}" for k, v in rep["dropped"].items()))
        if rep.get("bad"):
            lines.append(f"  skipped bad entries: {rep['bad']}")
        if row["subset_info"]:
            si = row["subset_info"]
            lines.append(f"  subset {si['file']}: {si['matched']} of {si['lines']} entries matched"
                         + (f" (paper: {si['expected']})" if si.get("expected") else ""))
    return "\n".join(lines)
