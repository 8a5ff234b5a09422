"""FERPlus: Microsoft's re-annotation of FER2013 (10 crowd votes per image, 8 emotions), official files.

Layouts (``root`` is the folder holding the label file; ``labels=`` / ``fer2013=`` options point elsewhere):

* ``fer2013new.csv`` (header ``Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,
  contempt,unknown,NF``) plus the image folders ``FER2013Train/``, ``FER2013Valid/``, ``FER2013Test/``
  holding ``fer0000000.png`` ... (as written by FERPlus's ``generate_training_data.py``; also looked for
  under ``root/data/``);
* ``fer2013new.csv`` plus Kaggle's ``fer2013.csv`` (``emotion,pixels,Usage``): the two files have the same
  rows in the same order, so row ``i`` of one gives the pixels of row ``i`` of the other. Image numbers are
  *not* row numbers (the numbering skips some rows), so rows are paired by position, never by name;
* only the image folders, each with FERPlus's per-folder ``label.csv`` (``name[,"(x, y, w, h)"],10 votes``).

Rows with an empty ``Image name`` (173 in the real file: pictures FERPlus judged not to be faces) have no
image and are skipped and counted (``report["dropped"]["no_image_name"]``).

Classes, in FERPlus order: ``neutral, happiness, surprise, sadness, anger, disgust, fear, contempt``.
Splits: ``train`` = Training (FER2013Train), ``val`` = PublicTest (FER2013Valid), ``test`` = PrivateTest
(FER2013Test).

Label modes (``label_mode=``), after FERPlus's own reader (``src/ferplus.py``, ``_process_data``):

* ``"majority"`` (default): votes of 1 are outliers and removed; the top class must hold more than half of
  the remaining votes, else the image is "unknown"; images whose label is unknown or NF are dropped.
* ``"probability"``: FERPlus's soft target: after outlier removal, take the most-voted classes (ties
  together, at most 3) until they hold 75% of the votes; discard the image when they hold no more than half
  of the votes or when unknown/NF come first; the label is that distribution over the 8 emotions.
* ``"votes"``: the raw vote vector over the 8 emotions, normalised; dropped when it has no emotion votes
  or unknown/NF got the most votes.

Soft modes are for training; report test accuracy with ``majority`` labels, as the paper's peers do.
"""
from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

from ._common import (DirIndex, Issues, OfficialDataset, OfficialSample, check_classes, check_options, count,
                      csv_rows, entry_path, first_existing, normalize_split)
from .base import DataError
from .registry import register_dataset
from .fer2013 import find_fer2013_csv, parse_pixels, read_fer2013_csv

FERPLUS_CLASSES = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
VOTE_COLUMNS = FERPLUS_CLASSES + ["unknown", "NF"]
FOLDERS = {"Training": "FER2013Train", "PublicTest": "FER2013Valid", "PrivateTest": "FER2013Test"}
FER2013_ROWS = {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}
LABEL_MODES = ("majority", "probability", "votes")
# Microsoft's repository carries two vote sets that disagree for 1,601 images: the per-folder label.csv files
# (majority labels: train 25,045 / val 3,191 / test 3,137, the test count of the RAN line of work the LAN paper
# compares with; the default) and fer2013new.csv (25,060 / 3,199 / 3,153).
VOTE_SOURCES = ("label_csv", "fer2013new")
_SPLITS = {"train": "Training", "training": "Training", "val": "PublicTest", "valid": "PublicTest",
           "validation": "PublicTest", "publictest": "PublicTest", "test": "PrivateTest",
           "privatetest": "PrivateTest"}
_EPS = sys.float_info.epsilon


def _remove_outliers(votes: list[float]) -> list[float]:
    # FERPlus treats a class that got a single vote as annotator noise.
    return [0.0 if v < 1.0 + _EPS else float(v) for v in votes]


def ferplus_majority(votes: list[float]) -> int | None:
    """FERPlus's majority label from the 10 vote counts (8 emotions, unknown, NF); None = not usable."""
    v = _remove_outliers(votes)
    total = sum(v)
    top = max(v)
    if total <= 0 or top <= 0.5 * total:
        return None
    index = v.index(top)  # first maximum, as numpy.argmax
    return index if index < len(FERPLUS_CLASSES) else None


def ferplus_probability(votes: list[float]) -> list[float] | None:
    """FERPlus's soft target over the 8 emotions (its "probability"/"crossentropy" mode); None = drop."""
    v = _remove_outliers(votes)
    size = len(v)
    total = sum(v)
    emotion = [0.0] * size
    part, taken, valid = 0.0, 0, True
    while part < 0.75 * total and taken < 3 and valid:
        top = max(v)
        for i in range(size):
            if v[i] == top:
                emotion[i] = top
                v[i] = 0.0
                part += top
                taken += 1
                if i >= len(FERPLUS_CLASSES):  # unknown or NF tie with the top emotions: stop here
                    valid = False
                    if sum(emotion) > top:  # other emotions came first: keep them, drop unknown/NF
                        emotion[i] = 0.0
                        taken -= 1
                    break
    if sum(emotion) <= 0.5 * total or taken > 3:
        return None
    if emotion.index(max(emotion)) >= len(FERPLUS_CLASSES):
        return None
    head = emotion[:len(FERPLUS_CLASSES)]
    s = sum(head)
    return [x / s for x in head]


def ferplus_votes(votes: list[float]) -> list[float] | None:
    """The plain normalised vote vector over the 8 emotions; None when unknown/NF lead or no emotion votes."""
    head = [float(x) for x in votes[:len(FERPLUS_CLASSES)]]
    s = sum(head)
    if s <= 0 or max(votes) > max(head):
        return None
    return [x / s for x in head]


def votes_to_label(votes: list[float], mode: str):
    """Apply a label mode (see the module docstring) to one row of 10 vote counts."""
    if mode == "majority":
        return ferplus_majority(votes)
    if mode == "probability":
        return ferplus_probability(votes)
    if mode == "votes":
        return ferplus_votes(votes)
    raise DataError(f"ferplus: label_mode={mode!r} is not one of {', '.join(LABEL_MODES)}")


def _parse_votes(cells: list[str]) -> list[float] | None:
    try:
        votes = [float(c) for c in cells]
    except ValueError:
        return None
    # NaN passes a `< 0` test: every vote must be a finite, non-negative count
    if len(votes) != len(VOTE_COLUMNS) or not all(math.isfinite(v) and v >= 0 for v in votes):
        return None
    return votes


def _find_folders(root: Path) -> Path | None:
    for base in (root, root / "data"):
        if any((base / f).is_dir() for f in FOLDERS.values()):
            return base
    return None


@register_dataset("ferplus")
def build_ferplus(root, split, transform=None, classes=None, skip_bad=False, **options):
    """FERPlus in one of its official layouts (see the module docstring for layouts and options)."""
    check_options("ferplus", options, {"label_mode", "votes", "source", "labels", "fer2013", "check_files"})
    check_classes("ferplus", FERPLUS_CLASSES, classes)
    usage = normalize_split("ferplus", split, _SPLITS)
    mode = options.get("label_mode", "majority")
    if mode not in LABEL_MODES:
        raise DataError(f"ferplus: label_mode={mode!r} is not one of {', '.join(LABEL_MODES)}")
    root = Path(root)
    labels = Path(options["labels"]) if options.get("labels") else first_existing(
        [root / "fer2013new.csv", root / "FERPlus" / "fer2013new.csv"])
    folders = _find_folders(root)
    source = options.get("source", "auto")
    votes = options.get("votes", "label_csv")
    if votes not in VOTE_SOURCES:
        raise DataError(f"ferplus: votes={votes!r} is not one of {', '.join(VOTE_SOURCES)} (label_csv: the per-folder "
                        "label.csv files, the RAN line's test count of 3,137; fer2013new: fer2013new.csv)")
    if source == "auto" and votes == "label_csv" and folders is not None and (
            folders / FOLDERS[usage] / "label.csv").is_file():
        source = "labelcsv"
    kaggle = None
    if source in ("auto", "csv"):
        kaggle = Path(options["fer2013"]) if options.get("fer2013") else (
            find_fer2013_csv(root) or find_fer2013_csv(root.parent))
    if source == "auto":
        if labels is not None and folders is not None and (folders / FOLDERS[usage]).is_dir():
            source = "folders"
        elif labels is not None and kaggle is not None:
            source = "csv"
        elif folders is not None and (folders / FOLDERS[usage] / "label.csv").is_file():
            source = "labelcsv"
        else:
            raise DataError(
                f"ferplus: under {str(root)!r} found no usable layout: need fer2013new.csv with either the "
                f"{'/'.join(FOLDERS.values())} image folders or Kaggle's fer2013.csv, or image folders with "
                "FERPlus's label.csv files")
    if source in ("folders", "csv") and (labels is None or not labels.is_file()):
        raise DataError(f"ferplus: label file fer2013new.csv not found under {str(root)!r} "
                        "(or set data.options.labels=PATH)")
    if source == "folders":
        if folders is None:
            raise DataError(f"ferplus: no {'/'.join(FOLDERS.values())} folders under {str(root)!r}")
        ds = _from_new_csv(labels, usage, mode, transform, skip_bad, image_dir=folders / FOLDERS[usage],
                           check=bool(options.get("check_files", True)))
    elif source == "csv":
        if kaggle is None or not kaggle.is_file():
            raise DataError(f"ferplus: Kaggle's fer2013.csv not found near {str(root)!r} "
                            "(or set data.options.fer2013=PATH)")
        ds = _from_new_csv(labels, usage, mode, transform, skip_bad, kaggle=kaggle)
    elif source == "labelcsv":
        if folders is None:
            raise DataError(f"ferplus: no {'/'.join(FOLDERS.values())} folders under {str(root)!r}")
        ds = _from_label_csv(folders / FOLDERS[usage], usage, mode, transform, skip_bad,
                             check=bool(options.get("check_files", True)))
    else:
        raise DataError(f"ferplus: source={source!r} must be 'auto', 'folders', 'csv' or 'labelcsv'")
    ds.report["label_mode"] = mode
    # which of Microsoft's two vote sets labelled this split (they disagree for 1,601 images)
    ds.report["votes"] = "label_csv" if source == "labelcsv" else "fer2013new"
    return ds


def _read_new_csv(path: Path) -> list[tuple[int, list[str]]]:
    rows = csv_rows(path)
    _, header = next(rows, (1, []))
    header = [h.strip() for h in header]
    if header[:2] != ["Usage", "Image name"] or header[2:] != VOTE_COLUMNS:
        raise DataError(f"{path}:1: header {header} is not FERPlus's fer2013new.csv header "
                        f"(Usage,Image name,{','.join(VOTE_COLUMNS)})")
    return [(line_no, [c.strip() for c in cells]) for line_no, cells in rows if cells]


def _from_new_csv(labels: Path, usage: str, mode: str, transform, skip_bad: bool,
                  image_dir: Path | None = None, kaggle: Path | None = None,
                  check: bool = True) -> OfficialDataset:
    rows = _read_new_csv(labels)
    issues = Issues(f"ferplus {labels}", skip_bad)
    report: dict = {"source": str(labels), "split": usage, "rows": 0, "expected": FER2013_ROWS[usage],
                    "images": str(image_dir or kaggle)}
    files = DirIndex()
    samples: list[OfficialSample] = []
    excluded: dict[str, str] = {}
    unlabelled: dict[str, OfficialSample] = {}
    wanted: dict[int, int] = {}  # data-row position -> index into samples (csv pixels only)
    folder = FOLDERS[usage]
    seen: dict[str, int] = {}  # image name -> first line, within this split
    for position, (line_no, cells) in enumerate(rows):
        where = f"{labels}:{line_no}"
        if len(cells) != 2 + len(VOTE_COLUMNS):
            issues.bad(f"{where}: expected {2 + len(VOTE_COLUMNS)} columns, found {len(cells)}")
            continue
        if cells[0] not in FOLDERS:
            issues.bad(f"{where}: Usage {cells[0]!r} is not one of {', '.join(FOLDERS)}")
            continue
        if cells[0] != usage:
            continue
        report["rows"] += 1
        name = cells[1]
        if not name:
            count(report, "no_image_name")
            continue
        votes = _parse_votes(cells[2:])
        if votes is None:
            issues.bad(f"{where}: vote counts {cells[2:]} are not 10 non-negative numbers")
            continue
        if name in seen:
            # Microsoft's own file repeats 4 names (3 in Training, 1 in PrivateTest) and the published counts
            # include them, so they are kept, but never silently: counted and named in the report and a warning
            report.setdefault("duplicates", []).append(f"{where}: {name!r} repeats line {seen[name]}")
        seen.setdefault(name, line_no)
        if image_dir is not None:
            safe, why = entry_path(image_dir, name)
            if safe is None:
                issues.bad(f"{where}: {why}")
                continue
        label = _label_or_exclude(votes, mode, name, where, report, excluded)
        if label is None:
            if image_dir is not None:
                unlabelled[name.rsplit(".", 1)[0].lower()] = OfficialSample(str(image_dir / name), -1,
                                                                            {"line": line_no}, where=where)
            continue
        if image_dir is not None:
            path = image_dir / name
            if check and not files.exists(path):
                issues.bad(f"{where}: image {str(path)!r} does not exist")
                continue
            samples.append(OfficialSample(str(path), label, {"line": line_no}, where=where))
        else:
            wanted[position] = len(samples)
            samples.append(OfficialSample(f"{kaggle}#{folder}/{name}", label, {"line": line_no},
                                          where=where, row=len(samples)))
    pixels = None
    if kaggle is not None:
        pixels, samples = _pixels_from_kaggle(kaggle, rows, wanted, samples, issues)
    issues.finish(report)
    if report.get("duplicates"):
        warnings.warn(f"ferplus {labels}: {len(report['duplicates'])} image names of split {usage} appear twice and "
                      f"are kept as the release has them: {'; '.join(report['duplicates'])}", stacklevel=3)
    ds = OfficialDataset(samples, FERPLUS_CLASSES, transform, name="ferplus", skip_bad=skip_bad,
                         root=labels.parent, report=report, pixels=pixels)
    ds.excluded = excluded
    ds.unlabelled = unlabelled
    return ds


def _pixels_from_kaggle(kaggle: Path, rows, wanted: dict[int, int], samples, issues: Issues):
    """Fill the pixel array from Kaggle's csv, pairing rows by position with fer2013new.csv."""
    import numpy as np

    pixels = np.zeros((len(samples), 48, 48), np.uint8)
    good = [True] * len(samples)
    n = 0
    for position, (line_no, row) in enumerate(read_fer2013_csv(kaggle)):
        n += 1
        if position >= len(rows):
            break
        new_usage = rows[position][1][0] if rows[position][1] else ""
        if row.get("Usage") != new_usage:
            raise DataError(f"{kaggle}:{line_no}: Usage {row.get('Usage')!r} differs from "
                            f"{new_usage!r} in fer2013new.csv line {rows[position][0]}; the two files must be "
                            "FER2013's csv and FERPlus's fer2013new.csv with rows in the same order")
        index = wanted.get(position)
        if index is None:
            continue
        image = parse_pixels(row.get("pixels", ""))
        if image is None:
            issues.bad(f"{kaggle}:{line_no}: pixels are not 2304 space-separated values in 0..255")
            good[index] = False
            continue
        pixels[index] = image
    if n != len(rows):
        raise DataError(f"{kaggle} has {n} data rows but fer2013new.csv has {len(rows)}; they must match row "
                        "for row (use the original Kaggle fer2013.csv)")
    if all(good):
        return pixels, samples
    keep = [i for i, ok in enumerate(good) if ok]
    kept = []
    for new_row, i in enumerate(keep):
        s = samples[i]
        s.row = new_row
        kept.append(s)
    return pixels[keep], kept



def _label_or_exclude(votes, mode: str, name: str, where: str, report: dict, excluded: dict):
    """The row's label under ``mode``; or None, with the reason counted in ``report`` and the image
    remembered in ``excluded`` (so a pose list naming it can say why it is absent)."""
    label = votes_to_label(votes, mode)
    if label is None:
        reason = _why_dropped(votes)
        count(report, reason)
        excluded[name.rsplit(".", 1)[0].lower()] = f"{where}: {reason} under label_mode={mode}"
    return label

def _why_dropped(votes: list[float]) -> str:
    v = _remove_outliers(votes)
    if sum(v) <= 0:
        return "no_agreement"
    top = v.index(max(v))
    if top == len(FERPLUS_CLASSES):
        return "unknown"
    if top == len(FERPLUS_CLASSES) + 1:
        return "not_a_face"
    return "no_majority"


def _from_label_csv(folder: Path, usage: str, mode: str, transform, skip_bad: bool,
                    check: bool = True) -> OfficialDataset:
    path = folder / "label.csv"
    issues = Issues(f"ferplus {path}", skip_bad)
    report: dict = {"source": str(path), "split": usage, "rows": 0, "expected": None}
    samples, excluded, unlabelled = [], {}, {}
    files = DirIndex()
    seen: dict[str, int] = {}
    for line_no, cells in csv_rows(path):
        if not cells:
            continue
        where = f"{path}:{line_no}"
        report["rows"] += 1
        cells = [c.strip() for c in cells]
        # Newer FERPlus writes the face box "(0, 0, 48, 48)" after the name.
        vote_cells = cells[2:] if len(cells) == 2 + len(VOTE_COLUMNS) else cells[1:]
        votes = _parse_votes(vote_cells)
        if not cells[0] or votes is None:
            issues.bad(f"{where}: expected 'name[,box],10 vote counts', found {cells}")
            continue
        if cells[0] in seen:
            issues.bad(f"{where}: image {cells[0]!r} is listed again (first at line {seen[cells[0]]})")
            continue
        seen[cells[0]] = line_no
        image, why = entry_path(folder, cells[0])
        if image is None:
            issues.bad(f"{where}: {why}")
            continue
        label = _label_or_exclude(votes, mode, cells[0], where, report, excluded)
        if label is None:
            unlabelled[cells[0].rsplit(".", 1)[0].lower()] = OfficialSample(str(image), -1, {"line": line_no},
                                                                            where=where)
            continue
        if check and not files.exists(image):
            issues.bad(f"{where}: image {str(image)!r} does not exist")
            continue
        samples.append(OfficialSample(str(image), label, {"line": line_no}, where=where))
    issues.finish(report)
    ds = OfficialDataset(samples, FERPLUS_CLASSES, transform, name="ferplus", skip_bad=skip_bad,
                         root=folder.parent, report=report)
    ds.excluded = excluded
    ds.unlabelled = unlabelled
    return ds
