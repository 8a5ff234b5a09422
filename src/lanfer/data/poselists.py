"""Pose subsets (Wang et al., RAN, TIP 2020): list files naming the test images with a large head pose.

The paper's Table 5 evaluates on these lists, published with RAN (``Challenge-condition-FER-dataset``):

* ``val_raf_db_list.txt`` (>30 degrees) and ``val_raf_db_list_45.txt``, RAF-DB test: lines such as
  ``3/test_0009_aligned.jpg`` (RAF label - 1, then RAF's aligned file name);
* ``pose_30_ferplus_list.txt`` and ``pose_45_ferplus_list.txt``, FERPlus test: ``0/fer0032226.jpg``
  (FERPlus class index, then the image stem; FERPlus writes ``.png`` files);
* ``pose_30_affectnet_list.txt``, AffectNet validation: ``7/<hash>.jpg`` (AffectNet code, 8 classes);
  ``pose_45_affectnet_list.txt``: ``7/<hash>/8.jpg`` (the hash is a folder name there).

Entries are matched to dataset samples by the image's identity, not its path: a 32+ hex-digit hash
anywhere in the entry (AffectNet's file names; this also reads the ``<hash>/8.jpg`` form of the 45-degree
list), otherwise the file stem without extension and without RAF's ``_aligned`` suffix. The label prefix is
checked against the dataset's own label, in the dataset's class order.

The published lists are not exactly the paper's counts; :data:`PAPER_COUNTS` holds the paper's numbers and
:func:`restrict_to_list` warns when the list read differs, recording both in ``dataset.subset_info``.
"""
from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path

from ._common import text_lines
from .base import DataError, FERDataset

# file name -> (subset name in the paper, image count the paper reports)
PAPER_COUNTS = {
    "val_raf_db_list.txt": ("Pose-RAF-DB-30", 1248),
    "val_raf_db_list_45.txt": ("Pose-RAF-DB-45", 558),
    "pose_30_ferplus_list.txt": ("Pose-FERPlus-30", 1171),
    "pose_45_ferplus_list.txt": ("Pose-FERPlus-45", 634),
    "pose_30_affectnet_list.txt": ("Pose-AffectNet-30", 1949),
    "pose_45_affectnet_list.txt": ("Pose-AffectNet-45", 985),
}
_HASH = re.compile(r"^[0-9a-f]{32,}$")
_LINE = re.compile(r"^(\d+)/(\S+)$")


def _parts(path: str) -> list[str]:
    return [p for p in re.split(r"[\\/#]", path) if p]


def _stem(name: str) -> str:
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stem = stem.lower()
    return stem[:-len("_aligned")] if stem.endswith("_aligned") else stem


def hash_keys(path: str) -> list[str]:
    """AffectNet-style hashes (32+ hex digits) among the components of ``path`` (extension dropped)."""
    keys = []
    for part in _parts(path):
        s = _stem(part)
        if _HASH.match(s):
            keys.append(s)
    return keys


def stem_key(path: str) -> str:
    parts = _parts(path)
    return _stem(parts[-1]) if parts else ""


def read_pose_list(path: str | Path) -> list[tuple[int, int, str]]:
    """``(line_number, label, entry)`` for each entry of a RAN-style list; :class:`DataError` on a bad line.

    Blank lines and ``#`` comments are skipped; anything after the first whitespace is ignored.
    """
    path = Path(path)
    entries = []
    for line_no, line in text_lines(path):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        m = _LINE.match(text.split()[0])
        if m is None:
            raise DataError(f"{path}:{line_no}: malformed entry {text!r}; expected '<label>/<image>' "
                            "such as '3/test_0009_aligned.jpg'")
        entries.append((line_no, int(m.group(1)), m.group(2)))
    return entries


def resolve_list(path: str | Path, root: str | Path | None = None) -> Path:
    """The list file: ``path`` as given, else next to the dataset (``root``, ``root/EmoLabel``)."""
    p = Path(path)
    if p.is_file():
        return p
    if root is not None and not p.is_absolute():
        for base in (Path(root), Path(root) / "EmoLabel"):
            if (base / p).is_file():
                return base / p
    raise DataError(f"pose list {str(path)!r} does not exist; pass the path of a RAN list file such as "
                    "val_raf_db_list.txt (see lanfer.data.poselists)")


def _label_index(label) -> int:
    if isinstance(label, int):
        return label
    values = list(label)
    return max(range(len(values)), key=lambda k: values[k])


def restrict_to_list(ds: FERDataset, path: str | Path, skip_bad: bool | None = None) -> FERDataset:
    """Keep only the samples a pose-list file names (in the dataset's order); return ``ds``, changed in place.

    * An entry whose image is not in the dataset raises :class:`DataError` naming the line (with
      ``skip_bad``, it is counted and warned about). An entry whose image exists but that the dataset's label
      rule left out (FERPlus images without a vote majority; the reader keeps them in ``ds.unlabelled``) is
      evaluated with the label the list gives: a published subset is evaluated whole
      (``subset_info["labelled_from_list"]``).
    * A label prefix that disagrees with the dataset's label is reported (count and examples, in a
      warning); the dataset's label is kept. When most entries disagree the class order must be wrong,
      and that raises.
    * ``ds.subset_info`` records ``file``, ``name``, ``lines``, ``matched``, ``expected`` (the paper's
      count), ``missing``, ``label_mismatches`` and ``duplicates``.
    """
    skip_bad = getattr(ds, "skip_bad", False) if skip_bad is None else skip_bad
    path = resolve_list(path, getattr(ds, "root", None))
    entries = read_pose_list(path)
    by_hash: dict[str, list[int]] = {}
    by_stem: dict[str, list[int]] = {}
    for i, s in enumerate(ds.samples):
        for h in hash_keys(s.path):
            by_hash.setdefault(h, []).append(i)
        by_stem.setdefault(stem_key(s.path), []).append(i)
    before = len(ds.samples)
    excluded = getattr(ds, "excluded", {}) or {}
    unlabelled = dict(getattr(ds, "unlabelled", {}) or {})
    from_list: list[str] = []

    chosen: dict[int, int] = {}  # sample index -> list line
    missing, mismatches, duplicates = [], [], []
    k = len(ds.classes)
    for line_no, label, entry in entries:
        where = f"{path}:{line_no}"
        if not 0 <= label < k:
            raise DataError(f"{where}: label {label} is outside 0..{k - 1} for {ds.name} ({', '.join(ds.classes)}); "
                            "is this list meant for another dataset or class count?")
        hashes = hash_keys(entry)
        key = hashes[0] if hashes else stem_key(entry)
        candidates = (by_hash if hashes else by_stem).get(key, [])
        if len(candidates) > 1:
            same = [i for i in candidates if _label_index(ds.samples[i].label) == label]
            if len(same) != 1:
                raise DataError(f"{where}: entry {entry!r} matches {len(candidates)} images of {ds.name} "
                                f"({ds.samples[candidates[0]].path}, ...); the list cannot tell them apart")
            candidates = same
        if not candidates and key in unlabelled:
            sample = dataclasses.replace(unlabelled.pop(key), label=label)
            ds.samples.append(sample)
            candidates = [len(ds.samples) - 1]
            from_list.append(f"{where}: {Path(sample.path).name} has no label under the dataset's rule "
                             f"({excluded.get(key, 'excluded')}); evaluated as the list's {ds.classes[label]}")
        if not candidates:
            reason = excluded.get(key)
            split = (getattr(ds, "report", None) or {}).get("split", "?")
            detail = (f"it is in the label file but left out by the dataset's label rule ({reason})" if reason
                      else f"no image of {ds.name} split {split!r} has that name")
            msg = f"{where}: entry {entry!r} not found: {detail}"
            if not skip_bad:
                raise DataError(msg + "; use the list that belongs to this dataset and split, or set "
                                      "data.skip_bad=true to count and skip such entries")
            missing.append(msg)
            continue
        i = candidates[0]
        if i in chosen:
            duplicates.append(f"{where}: repeats line {chosen[i]}")
            continue
        chosen[i] = line_no
        have = _label_index(ds.samples[i].label)
        if have != label:
            mismatches.append(f"{where}: list label {label} ({ds.classes[label]}) vs dataset label {have} "
                              f"({ds.classes[have]}) for {Path(ds.samples[i].path).name}")

    name, expected = PAPER_COUNTS.get(path.name, (None, None))
    info = {"file": str(path), "name": name, "lines": len(entries), "matched": len(chosen),
            "expected": expected, "missing": len(missing), "label_mismatches": len(mismatches),
            "duplicates": len(duplicates), "labelled_from_list": len(from_list),
            "examples": (missing + mismatches + duplicates + from_list)[:10],
            "mismatch_entries": mismatches, "from_list_entries": from_list}
    if chosen and len(mismatches) > len(chosen) / 2:
        raise DataError(f"{path}: {len(mismatches)} of {len(chosen)} list labels disagree with {ds.name}'s labels "
                        f"(e.g. {mismatches[0]}); the list's class order does not match {ds.classes}")
    if missing:
        # how many and which: a subset that silently shrinks would change the numbers it reports
        shown = "; ".join(missing[:20]) + (f"; and {len(missing) - 20} more" if len(missing) > 20 else "")
        warnings.warn(f"{path}: skipped {len(missing)} entries whose image is not in {ds.name} ({len(entries)} "
                      f"entries, {len(chosen)} matched): {shown}", stacklevel=2)
    if mismatches:
        warnings.warn(f"{path}: {len(mismatches)} list labels disagree with {ds.name}'s labels; keeping the "
                      f"dataset's (e.g. {'; '.join(mismatches[:3])})", stacklevel=2)
    if duplicates:
        warnings.warn(f"{path}: {len(duplicates)} repeated entries counted once ({duplicates[0]})", stacklevel=2)
    if expected is not None and (len(entries) != expected or len(chosen) != expected):
        warnings.warn(f"{path}: {len(entries)} entries read, {len(chosen)} matched; the paper reports "
                      f"{expected} images for {name}", stacklevel=2)
    ds.samples = [ds.samples[i] for i in sorted(chosen)]
    ds.subset_info = info
    if isinstance(getattr(ds, "report", None), dict):
        ds.report["before_subset"] = before
        ds.report["kept"] = len(ds.samples)
        ds.report["subset"] = info
    return ds
