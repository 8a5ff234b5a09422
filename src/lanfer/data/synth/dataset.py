"""The ``synth`` dataset: reads a set written by :func:`lanfer.data.synth.generate` through its
``metadata.csv`` (any layout: KDEF names, continuous poses, identity folders).

Splits are identity-disjoint. By default the ``split`` column written at generation decides
(``train``/``val``/``test``, per identity, deterministic in the generation seed); with ``folds=k`` the
identities are dealt into ``k`` folds instead (shuffled with ``seed``) and ``split="test"`` (or ``"val"``)
is fold ``fold``, ``split="train"`` the others, as in KDEF's cross-validation. ``split="all"`` is everything.
Options: ``views`` keeps only the listed view codes (``FL HL S HR FR``; continuous poses carry the
nearest code). Metadata per item: subject, identity, session, sex, view, yaw, pitch, roll, expression.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..base import DataError, FERDataset, Sample
from ..registry import register_dataset
from .expressions import expression_names

_META = ("subject", "identity", "session", "sex", "view", "yaw", "pitch", "roll", "expression", "split")
_FLOATS = ("yaw", "pitch", "roll")


def _fold_of(identities: list[str], folds: int, seed: int) -> dict[str, int]:
    order = sorted(identities, key=lambda s: (len(s), s))
    perm = np.random.default_rng(seed).permutation(len(order))
    return {order[j]: k % folds for k, j in enumerate(perm)}


@register_dataset("synth")
def build_synth(root, split, transform=None, classes=None, skip_bad=False, **options):
    """A synthetic set from ``root/metadata.csv`` (``root`` may also be the csv itself)."""
    unknown = sorted(set(options) - {"fold", "folds", "seed", "views"})
    if unknown:
        raise DataError(f"synth: unknown option(s) {unknown}; known: fold, folds, seed, views")
    path = Path(root)
    if path.is_dir():
        path = path / "metadata.csv"
    if not path.is_file():
        raise DataError(f"synth: {str(path)!r} does not exist; write a set with `lanfer synth --out DIR`")
    info_file = path.parent / "synth.json"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    names = list(info.get("classes") or expression_names(7))
    if classes is not None and list(classes) != names:
        raise DataError(f"synth: data.classes {list(classes)} differ from the set's classes {names} "
                        f"(from {info_file}); leave data.classes unset")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"path", "label", "identity", "split"}
        if not need <= set(reader.fieldnames or []):
            raise DataError(f"{path}: the header must hold {sorted(need)} (found {reader.fieldnames})")
        rows = list(enumerate(reader, start=2))
    split = str(split).lower()
    if split not in ("train", "val", "test", "all"):
        raise DataError(f"synth: unknown split {split!r}; use train, val, test or all")
    folds = options.get("folds")
    fold_of = None
    if folds is not None:
        folds, fold = int(folds), int(options.get("fold", 0))
        if not 0 <= fold < folds:
            raise DataError(f"synth: fold={fold} must be in 0..{folds - 1}")
        ids = sorted({r["identity"] for _, r in rows})
        if len(ids) < folds:
            raise DataError(f"synth: {len(ids)} identities cannot fill {folds} identity-disjoint folds")
        fold_of = _fold_of(ids, folds, int(options.get("seed", 0)))
    views = options.get("views")
    if views is not None:
        views = {str(v).upper() for v in ([views] if isinstance(views, str) else views)}
    samples = []
    for line, r in rows:
        if fold_of is not None:
            f = fold_of[r["identity"]]
            r["fold"] = f
            if split == "train" and f == fold or split in ("test", "val") and f != fold:
                continue
        elif split != "all" and r["split"] != split:
            continue
        if views is not None and r.get("view", "").upper() not in views:
            continue
        try:
            label, identity = int(r["label"]), int(r["identity"])
        except ValueError:
            raise DataError(f"{path}:{line}: label {r['label']!r} and identity {r['identity']!r} must be "
                            "integers") from None
        if not 0 <= label < len(names):
            raise DataError(f"{path}:{line}: label {label} is outside 0..{len(names) - 1}")
        meta = {k: r[k] for k in _META if k in r}
        for k in _FLOATS:
            if k in meta:
                meta[k] = float(meta[k])
        meta["identity"] = identity
        if "fold" in r:
            meta["fold"] = r["fold"]
        meta["line"] = line
        p = Path(r["path"])
        samples.append(Sample(str(p if p.is_absolute() else path.parent / p), label, meta))
    if not samples and fold_of is None and split in ("val", "test"):
        have = sorted({r["split"] for _, r in rows})
        raise DataError(f"synth: {path} has no identities in split {split!r} (splits present: {have}); sets of "
                        "fewer than 5 identities have no val split: use split=test, or folds=k")
    ds = FERDataset(samples, names, transform, name="synth", skip_bad=skip_bad)
    return ds
