"""Is the synthetic expression task trivially separable? A linear classifier on raw pixels, for the record.

Renders a KDEF-layout set (default 24 identities, 64 px), trains multinomial logistic regression on the
raw pixels (resized to ``--pixels``, standardised) of the training identities and reports accuracy on
held-out identities: overall, per view, and on frontal pictures only, next to chance. A CNN trained on
the same split (``lanfer demo``) should do clearly better; if this number came close to 100%, the set
would be too easy to compare models on. Example::

    python benchmarks/bench_synth_separability.py --identities 24 --size 64 --out runs/bench_synth_sep.json
"""
from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from lanfer.data.synth import generate


def load(root: Path, rows: list[dict], pixels: int, grey: bool) -> np.ndarray:
    out = []
    for r in rows:
        im = Image.open(root / r["path"]).convert("L" if grey else "RGB").resize((pixels, pixels), Image.BILINEAR)
        out.append(np.asarray(im, dtype=np.float32).ravel() / 255.0)
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identities", type=int, default=24)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--pixels", type=int, default=32, help="side of the resized picture fed to the classifier")
    ap.add_argument("--grey", action="store_true", help="grey levels instead of RGB")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", help="reuse a set written by `lanfer synth` instead of rendering one")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(a.root) if a.root else generate(Path(tmp) / "set", identities=a.identities, seed=a.seed,
                                                     image_size=a.size)
        rows = list(csv.DictReader(open(root / "metadata.csv", newline="")))
        train = [r for r in rows if r["split"] in ("train", "val")]
        test = [r for r in rows if r["split"] == "test"]
        xtr, xte = load(root, train, a.pixels, a.grey), load(root, test, a.pixels, a.grey)
    ytr = np.array([int(r["label"]) for r in train])
    yte = np.array([int(r["label"]) for r in test])
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(C=0.01, max_iter=2000).fit(scaler.transform(xtr), ytr)
    pred = clf.predict(scaler.transform(xte))
    train_acc = float((clf.predict(scaler.transform(xtr)) == ytr).mean())
    views = np.array([r["view"] for r in test])
    res = {
        "identities": {"train": len({r["identity"] for r in train}), "test": len({r["identity"] for r in test})},
        "images": {"train": len(train), "test": len(test)},
        "features": f"{a.pixels}x{a.pixels} {'grey' if a.grey else 'RGB'} pixels, standardised",
        "chance": round(1 / 7, 4),
        "train_accuracy": round(train_acc, 4),
        "test_accuracy": round(float((pred == yte).mean()), 4),
        "test_accuracy_by_view": {v: round(float((pred[views == v] == yte[views == v]).mean()), 4)
                                  for v in ("FL", "HL", "S", "HR", "FR")},
    }
    # frontal pictures only (train and test), the easiest case for a linear model
    ftr = np.array([r["view"] == "S" for r in train])
    fte = views == "S"
    sc = StandardScaler().fit(xtr[ftr])
    clf_f = LogisticRegression(C=0.01, max_iter=2000).fit(sc.transform(xtr[ftr]), ytr[ftr])
    res["frontal_only_test_accuracy"] = round(float((clf_f.predict(sc.transform(xte[fte])) == yte[fte]).mean()), 4)
    print(json.dumps(res, indent=2))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
