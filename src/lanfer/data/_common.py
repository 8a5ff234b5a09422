"""Shared machinery of the official-layout readers (RAF-DB, FERPlus, AffectNet, KDEF, FER2013).

* :class:`OfficialSample` / :class:`OfficialDataset`: a :class:`~lanfer.data.base.FERDataset` whose samples
  remember where they were declared (``file:line``), may carry a face box, and may live in an in-memory
  pixel array (the csv releases of FER2013/FERPlus).
* :class:`Issues`: bad entries found while indexing (a malformed label line, a missing image). Strict by
  default (a :class:`DataError` naming the file and line); with ``skip_bad`` each problem is counted, a single
  warning sums them up, and the counts go into ``dataset.report`` -- a test set never shrinks silently.
  Images that exist but cannot be decoded are found later, on load: :class:`~lanfer.data.base.FERDataset`
  records those in ``dataset.bad`` under the same ``skip_bad`` switch.
"""
from __future__ import annotations

import csv
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from .base import DataError, FERDataset, Sample, load_image


@dataclass
class OfficialSample(Sample):
    """A :class:`Sample` that knows where it was declared and, optionally, where its face is."""

    where: str = ""  # "file:line" of the label entry, quoted in error messages
    box: tuple[float, float, float, float] | None = None  # face box (left, top, right, bottom), source px
    row: int | None = None  # row of the dataset's in-memory pixel array, for images stored in a csv


class OfficialDataset(FERDataset):
    """Samples of an official release; ``report`` records how many entries were read, kept and skipped.

    Subclasses override :meth:`crop_image` to cut the face out of a larger picture.
    """

    def __init__(self, samples: list[Sample], classes: list[str], transform: Callable | None = None,
                 name: str = "dataset", skip_bad: bool = False, root: str | Path | None = None,
                 report: dict[str, Any] | None = None, pixels: np.ndarray | None = None):
        super().__init__(samples, classes, transform, name=name, skip_bad=skip_bad)
        self.root = None if root is None else str(root)
        self.report: dict[str, Any] = dict(report or {})
        self.report.setdefault("kept", len(samples))
        self.pixels = pixels  # (N, H, W) or (N, H, W, 3) uint8, indexed by OfficialSample.row
        # Entries read but left out by the dataset's own label rule (e.g. FERPlus "unknown"), by stem, so
        # that a pose list naming one of them gets a precise message instead of "not found".
        self.excluded: dict[str, str] = {}

    def load(self, index: int) -> Image.Image:
        s = self.samples[index]
        row = getattr(s, "row", None)
        if row is not None and self.pixels is not None:
            image = Image.fromarray(np.ascontiguousarray(self.pixels[row])).convert("RGB")
        else:
            try:
                image = load_image(s.path)
            except DataError as e:
                where = getattr(s, "where", "")
                raise DataError(f"{e} [{self.name} entry {where}]" if where else str(e)) from None
        return self.crop_image(image, s)

    def crop_image(self, image: Image.Image, sample: Sample) -> Image.Image:
        return image


class Issues:
    """Bad entries of one source file: raise at the first one, or (``skip_bad``) count them and warn once.

    Use :meth:`bad` for every problem, then :meth:`finish` to put the counts into a report dict.
    """

    def __init__(self, what: str, skip_bad: bool):
        self.what = what
        self.skip_bad = skip_bad
        self.messages: list[str] = []

    def bad(self, message: str) -> None:
        if not self.skip_bad:
            raise DataError(message + " (fix or remove the entry, or set data.skip_bad=true to skip such "
                                      "entries with a counted warning)")
        self.messages.append(message)

    def finish(self, report: dict[str, Any]) -> None:
        report["bad"] = len(self.messages)
        report["bad_examples"] = self.messages[:10]
        if self.messages:
            more = f" (and {len(self.messages) - 3} more)" if len(self.messages) > 3 else ""
            warnings.warn(f"{self.what}: skipped {len(self.messages)} bad entries: "
                          + "; ".join(self.messages[:3]) + more, stacklevel=3)


def text_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text label file (a BOM is dropped; LF, CRLF and CR all end lines).

    Bytes that are not UTF-8 raise a :class:`DataError` naming the file and line, not a UnicodeDecodeError."""
    line_no = 0
    with open(path, encoding="utf-8-sig") as fh:
        try:
            for line_no, line in enumerate(fh, start=1):
                yield line_no, line
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:{line_no + 1}: not UTF-8 text ({e.reason} at byte {e.start} of the block "
                            "read); save the file as UTF-8") from None


def csv_rows(path: str | Path) -> Iterator[tuple[int, list[str]]]:
    """``(line number, cells)`` of a CSV label file, with BOM, CRLF, quoted newlines (the line a row starts
    on is given), and what the csv module refuses or bytes that are not UTF-8 raised as :class:`DataError`."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        start = 1
        try:
            for cells in reader:
                yield start, cells
                start = reader.line_num + 1
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataError(f"{path}:{start}: not a readable CSV line ({e})") from None


def entry_path(base: Path, name: str) -> tuple[Path | None, str | None]:
    """``(base / name, None)``, or ``(None, why)`` when a label file's entry would read outside ``base``.

    A label file decides which files are read; one from a stranger must not reach ``/etc/passwd``. Refused:
    absolute paths, ``..`` that climbs out of ``base``, a NUL byte, and a file that is a symbolic link to
    somewhere outside ``base`` (a link to a folder on another disk is fine when ``base`` itself is that link,
    since ``base`` is resolved too)."""
    if "\0" in name:
        return None, f"path {name!r} contains a NUL byte"
    drive = len(name) > 2 and name[0].isalpha() and name[1] == ":" and name[2] in "/\\"  # C:\ on Windows
    if os.path.isabs(name) or name.startswith(("/", "\\")) or drive:
        return None, f"path {name!r} is absolute; entries must be relative to {str(base)!r}"
    root = os.path.normpath(base)
    joined = os.path.normpath(os.path.join(root, name))
    if not (joined + os.sep).startswith(root + os.sep) or joined == root:
        return None, f"path {name!r} leaves the dataset folder {str(base)!r}"
    if os.path.islink(joined):
        real_root = os.path.realpath(root)
        real = os.path.realpath(joined)
        if not real.startswith(real_root + os.sep):
            return None, f"path {name!r} is a symbolic link to {real!r}, outside the dataset folder {str(base)!r}"
    return Path(joined), None


def jsonable_report(report: dict[str, Any]) -> dict[str, Any]:
    """A reader's ``report`` as plain JSON values (paths and tuples become strings and lists)."""
    return json.loads(json.dumps(report, default=str))


def first_existing(candidates: Iterable[Path]) -> Path | None:
    for c in candidates:
        if c.exists():
            return c
    return None


def require(path: Path | None, what: str, looked: Iterable[Path], hint: str) -> Path:
    """Return ``path`` or raise a :class:`DataError` listing where we looked and what layout is expected."""
    if path is None:
        where = ", ".join(str(p) for p in looked)
        raise DataError(f"{what} not found (looked for: {where}). {hint}")
    return path


class DirIndex:
    """File names per folder, listed once: checking 300k images with ``os.listdir`` beats 300k ``stat``."""

    def __init__(self):
        self._cache: dict[str, set[str] | None] = {}

    def exists(self, path: str | Path) -> bool:
        folder, name = os.path.split(str(path))
        if folder not in self._cache:
            try:
                self._cache[folder] = set(os.listdir(folder))
            except OSError:
                self._cache[folder] = None
        names = self._cache[folder]
        return names is not None and name in names


def check_classes(dataset: str, official: list[str], classes: list[str] | None) -> None:
    """Official datasets define their label order; a configured ``data.classes`` must agree with it."""
    if classes is not None and list(classes) != list(official):
        raise DataError(f"{dataset}: data.classes={list(classes)} differs from the dataset's own label order "
                        f"{list(official)}; remove data.classes (it is only for imagefolder/csv layouts)")


def check_options(dataset: str, options: dict[str, Any], allowed: Iterable[str]) -> None:
    """Reject unknown dataset options by name instead of ignoring a typo."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise DataError(f"{dataset}: unknown option {unknown[0]!r} (data.options); valid options: "
                        f"{', '.join(sorted(allowed)) or 'none'}")


def normalize_split(dataset: str, split: str, mapping: dict[str, str]) -> str:
    """Map a user split name (``train``/``val``/``test`` or an official alias) to the dataset's key."""
    key = mapping.get(str(split).strip().lower()) if split is not None else None
    if key is None:
        raise DataError(f"{dataset}: unknown split {split!r}; use one of {', '.join(sorted(mapping))}")
    return key


def count(report: dict[str, Any], key: str, n: int = 1) -> None:
    """Add to a named counter under ``report['dropped']`` (entries left out on purpose, e.g. code 8-10)."""
    dropped = report.setdefault("dropped", {})
    dropped[key] = dropped.get(key, 0) + n


def scale_box(box: tuple[float, float, float, float], sx: float, sy: float) -> tuple[float, float, float, float]:
    l, t, r, b = box
    return (l * sx, t * sy, r * sx, b * sy)


def crop_to_box(image: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    """Crop ``box`` (left, top, right, bottom) clipped to the image; an empty result keeps the image."""
    w, h = image.size
    l, t, r, b = (int(round(v)) for v in box)
    l, t, r, b = max(0, l), max(0, t), min(w, r), min(h, b)
    if r - l < 2 or b - t < 2:
        return image
    return image.crop((l, t, r, b))
