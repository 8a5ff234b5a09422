"""Is the synthetic expression task trivially separable? A linear classifier on raw pixels, for the record.

Renders a KDEF-layout set (or reads one with ``--root``, e.g. ``runs/demo/data/expressions``), and fits
multinomial logistic regression (:mod:`lanfer.pixel_baseline`) on the raw pixels of each fold's training
identities, exactly the folds ``lanfer demo`` uses, then reports accuracy on the held-out identities:
overall, per view, and with frontal pictures only (the easiest case for a pixel template), next to chance.
``lanfer demo`` reports the same floor beside its CNNs; a CNN that does not clear it learned nothing a
pixel template could not. Example::

    python benchmarks/bench_synth_separability.py --root runs/demo/data/expressions --out runs/bench_sep.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from _common import machine_header, write_record

from lanfer.data import build_dataset
from lanfer.data.synth import generate
from lanfer.pixel_baseline import pixel_baseline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identities", type=int, default=40)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--pixels", type=int, default=32, help="side of the resized picture fed to the classifier")
    ap.add_argument("--C", type=float, default=0.01, help="inverse L2 strength (scikit-learn convention)")
    ap.add_argument("--folds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", help="reuse a set written by `lanfer synth` / `lanfer demo` instead of rendering")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()
    print(machine_header(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.root) if a.root else generate(Path(tmp) / "set", identities=a.identities, seed=a.seed,
                                                     image_size=a.size)
        folds, frontal = [], []
        for fold in range(a.folds):
            opts = {"fold": fold, "folds": a.folds}
            train, test = (build_dataset("kdef", root, s, **opts) for s in ("train", "test"))
            folds.append(pixel_baseline(train, test, a.pixels, a.C, group_by=["view"]))
            for ds in (train, test):
                ds.samples = [s for s in ds.samples if s.meta.get("view") == "S"]
            frontal.append(pixel_baseline(train, test, a.pixels, a.C)["accuracy"])
    acc = [m["accuracy"] for m in folds]
    res = {
        "root": str(a.root or f"rendered: {a.identities} identities, {a.size} px, seed {a.seed}"),
        "features": folds[0]["features"],
        "chance": round(1 / 7, 4),
        "folds": a.folds,
        "train_accuracy": [round(m["train_accuracy"], 4) for m in folds],
        "test_accuracy": [round(x, 4) for x in acc],
        "test_accuracy_mean": round(float(np.mean(acc)), 4),
        "test_accuracy_by_view": {v: round(float(np.mean([m["by"]["view"][v]["accuracy"] for m in folds])), 4)
                                  for v in ("FL", "HL", "S", "HR", "FR")},
        "frontal_only_test_accuracy": [round(x, 4) for x in frontal],
    }
    print(json.dumps(res, indent=2))
    if a.out:
        write_record(a.out, res)


if __name__ == "__main__":
    main()
