"""The teachers' soft targets for distillation (lanfer.distill): the softmax of the mean of several model files'
logits on every face of a training split, without augmentation.

    python scripts/teacher_targets.py runs/class_aware/balanced/best.safetensors \
        runs/class_aware_s1/balanced/best.safetensors ... --root $FERPLUS --out runs/teacher_train.npz
    lanfer train ferplus_vggface2_lan --set loss.distill=runs/teacher_train.npz ...

Prints the CPU model and the time taken; the file holds each face's path relative to the root, so it applies to
the same dataset at another path.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import cpu_model  # noqa: E402

from lanfer.distill import save_targets, teacher_targets  # noqa: E402


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="teacher model files (the same classes)")
    ap.add_argument("--root", required=True, help="the training data's root")
    ap.add_argument("--split", default="train")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", required=True, help="the .npz to write")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    a = ap.parse_args(argv)
    print(f"cpu: {cpu_model()}, threads {torch.get_num_threads()}; {len(a.models)} teacher(s)", flush=True)
    t0 = time.perf_counter()
    targets = teacher_targets(a.models, a.root, a.split, a.batch_size, a.device, progress=not a.no_progress)
    path = save_targets(targets, a.out)
    counts = np.bincount(targets["probs"].argmax(axis=1), minlength=len(targets["classes"]))
    print(f"wrote {path}: {len(targets['keys'])} faces x {len(targets['classes'])} classes in "
          f"{time.perf_counter() - t0:.0f} s; teachers' arg-max counts "
          + ", ".join(f"{c} {n}" for c, n in zip(targets["classes"], counts)))
    return path


if __name__ == "__main__":
    main()
