"""Would averaging several model files help? Each member's logits on one split, and their mean, across prior taus.

    python benchmarks/logit_ensemble.py A.safetensors B.safetensors [...] --root $FERPLUS --split val \
        --out results/ferplus_vggface2/class_aware/ensemble/val.json

A diagnostic for issue 22 (is a rare class's recall limited by one model's variance, or by what every model
sees?), not a shipped feature: ``lanfer`` predicts with one model file. Each member is evaluated under its own
recorded preprocessing, so members may differ in size or normalisation; they must share the class list and the
face order (the same split). For every tau the script scores each member and the mean of the members' raw
logits (before any temperature: the arg-max at a tau does not depend on it), and reports, per model, the
smallest tau at which every class reaches ``--floor`` recall and the accuracy there (the rule
``scripts/class_aware_table.py`` applies). Select on val. Prints the CPU model, as every benchmark here does.
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
from flip_tta import score  # noqa: E402

from lanfer.evaluate import _open_for_eval, loader_logits  # noqa: E402


def member_logits(path: str, root: str, split: str, batch_size: int):
    """(targets (N,), logits (N, K), info) of one model file on the split, majority labels."""
    model, info, _, _, loader, device = _open_for_eval(path, None, root, split, None, {"label_mode": "majority"},
                                                       None, batch_size, "cpu", 0)
    targets, logits, _ = loader_logits(model, loader, device, channels_last=True)
    return targets, logits, info


def operating_point(rows: list[dict], floor: float) -> dict | None:
    """The smallest tau whose every class recall is >= floor, with its scores (None if no tau reaches it)."""
    for r in sorted(rows, key=lambda r: r["prior_tau"]):
        recalls = [v for v in r["per_class_recall"].values() if v is not None]
        if min(recalls) >= floor:
            return r
    return None


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="two or more lanfer model files with the same classes")
    ap.add_argument("--root", required=True, help="the dataset root (FERPlus)")
    ap.add_argument("--split", default="val")
    ap.add_argument("--taus", type=float, nargs="+", default=[round(-1 + 0.1 * i, 1) for i in range(21)])
    ap.add_argument("--floor", type=float, default=0.4, help="the every-class recall floor (0.4)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", help="write the JSON record here")
    a = ap.parse_args(argv)
    if len(a.models) < 2:
        ap.error("give at least two model files to average")
    print(f"cpu: {cpu_model()}, threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    members = [member_logits(m, a.root, a.split, a.batch_size) for m in a.models]
    seconds = time.perf_counter() - t0
    targets, _, info = members[0]
    classes = list(info.classes)
    for path, (t, z, inf) in zip(a.models, members):
        if list(inf.classes) != classes:
            raise SystemExit(f"{path}: classes {list(inf.classes)} differ from {a.models[0]}'s {classes}")
        if not np.array_equal(t, targets):
            raise SystemExit(f"{path}: its faces' labels differ from {a.models[0]}'s: not the same split and order")
    named = [("/".join(Path(m).parts[-3:-1]) or m, z) for m, (_, z, _) in zip(a.models, members)]
    named.append(("mean of %d" % len(members), np.mean([z for _, z in named], axis=0)))  # (N, K)
    report = []
    for name, z in named:
        rows = []
        for tau in a.taus:
            s = score(targets, z, info, tau, classes)
            rows.append({"prior_tau": tau, **{k: v for k, v in s.items() if k != "correct"}})
        point = operating_point(rows, a.floor)
        best = max(rows, key=lambda r: r["accuracy"])
        report.append({"model": name, "taus": rows, "every_class_point": point, "best_accuracy": best})
        where = (f"every class >= {a.floor:.0%} at tau {point['prior_tau']:g}: accuracy "
                 f"{100 * point['accuracy']:.2f}, mean class {100 * point['mean_class_accuracy']:.2f}"
                 if point else f"no tau gives every class >= {a.floor:.0%}")
        print(f"{name}: best accuracy {100 * best['accuracy']:.2f} (tau {best['prior_tau']:g}); {where}")
    rec = {"models": [str(m) for m in a.models], "split": a.split, "n": int(len(targets)), "cpu": cpu_model(),
           "threads": torch.get_num_threads(), "seconds_all_members": round(seconds, 1), "floor": a.floor,
           "results": report}
    if a.out:
        write_record(a.out, rec)
    return rec


if __name__ == "__main__":
    main()
