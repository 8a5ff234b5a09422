"""Does flip test-time augmentation help? Each face and its mirror image through a model file, paired.

    python benchmarks/flip_tta.py MODEL.safetensors --root $FERPLUS --split val --taus 0 0.5 0.9 \
        --out results/ferplus_vggface2/flip_tta/val.json

One pass over the split computes both views' logits (B, K); for every prior tau the script scores the plain
logits and their mean with the mirror image's (what ``lanfer eval --tta flip`` scores), and tests the
difference with McNemar's exact test and a paired bootstrap (:mod:`lanfer.analysis.compare`). Select on val;
the README quotes this file. Prints the CPU model, as every benchmark here does.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model, write_record  # noqa: E402

from lanfer.analysis.compare import bootstrap_diff, mcnemar_exact  # noqa: E402
from lanfer.calibration import probabilities  # noqa: E402
from lanfer.evaluate import _open_for_eval, summarize  # noqa: E402


def score(targets: np.ndarray, logits: np.ndarray, info, tau: float, classes: list[str]) -> dict:
    preds = probabilities(logits, info, tau).argmax(axis=1)  # (N,)
    m = summarize(targets, preds, classes)
    recalls = [m["per_class_recall"][c] for c in classes[:7]]  # the 7 classes the shipped peers predict
    return {"accuracy": m["accuracy"], "mean_class_accuracy": m["mean_class_accuracy"],
            "mean_class_accuracy_7": float(np.mean([r for r in recalls if r is not None])),
            "per_class_recall": m["per_class_recall"], "correct": preds == targets}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--root", required=True, help="the dataset root (FERPlus)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--taus", type=float, nargs="+", default=[0.0, 0.5])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", help="write the JSON record here")
    a = ap.parse_args(argv)
    model, info, cfg, ds, loader, device = _open_for_eval(a.model, None, a.root, a.split, None,
                                                         {"label_mode": "majority"}, None, a.batch_size, "cpu", 0)
    model.eval()
    targets, plain, mirror = [], [], []
    t0 = time.perf_counter()
    with torch.no_grad():
        for images, labels, _ in loader:
            x = images.contiguous(memory_format=torch.channels_last)  # (B, 3, S, S)
            plain.append(model(x).float())
            mirror.append(model(torch.flip(x, dims=[3])).float())
            targets.append(labels if labels.ndim == 1 else labels.argmax(dim=1))
    seconds = time.perf_counter() - t0
    t = torch.cat(targets).numpy()
    z, zf = torch.cat(plain).numpy(), torch.cat(mirror).numpy()  # (N, K) each
    classes = list(info.classes)
    rows = []
    for tau in a.taus:
        p, f = score(t, z, info, tau, classes), score(t, (z + zf) / 2, info, tau, classes)
        test = mcnemar_exact(f["correct"], p["correct"])
        rows.append({"prior_tau": tau,
                     "plain": {k: v for k, v in p.items() if k != "correct"},
                     "flip": {k: v for k, v in f.items() if k != "correct"},
                     "flip_minus_plain": bootstrap_diff(f["correct"], p["correct"]),
                     "mcnemar": {"only_flip": test["only_a"], "only_plain": test["only_b"], "p_value": test["p_value"]}})
        print(f"tau {tau:g}: accuracy {100 * p['accuracy']:.2f} -> {100 * f['accuracy']:.2f} "
              f"(fixed {test['only_a']}, broken {test['only_b']}, McNemar p {test['p_value']:.3f}); "
              f"mean class {100 * p['mean_class_accuracy']:.2f} -> {100 * f['mean_class_accuracy']:.2f}; "
              f"7-class mean class {100 * p['mean_class_accuracy_7']:.2f} -> {100 * f['mean_class_accuracy_7']:.2f}")
    rec = {"model": str(a.model), "split": a.split, "n": int(len(t)), "cpu": cpu_model(),
           "threads": torch.get_num_threads(), "seconds_both_views": round(seconds, 1), "taus": rows}
    if a.out:
        write_record(a.out, rec)
    return rec


if __name__ == "__main__":
    main()
