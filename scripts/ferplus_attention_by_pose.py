"""Where a shipped LAN attends on FERPlus test faces, frontal vs turned: mean F_m per position, the share of
faces whose F_m is almost 0, and the share of the attentive branch in the CAM of f (lanfer.analysis.cam).

    python scripts/ferplus_attention_by_pose.py --root $FERPLUS --model lan_resnet18_ferplus > results/ferplus_cpu/cam/attention_by_pose.txt
    python scripts/ferplus_attention_by_pose.py --root $FERPLUS > results/ferplus_vggface2/cam/attention_by_pose.txt

"Frontal" is the test faces outside RAN's Pose-30 list, "Pose-45" the faces of the 45-degree list.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lanfer.analysis.cam import class_activation_maps
from lanfer.data import EvalPreset, build_dataset
from lanfer.model import load_model
from lanfer.pretrained import resolve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="the FERPlus folder (FER2013Test/, pose_*_ferplus_list.txt)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--model", default=None, help="a shipped LAN model's name or a model file (default: the default)")
    a = ap.parse_args()
    model, info = load_model(resolve(a.model))
    preset = EvalPreset.from_info(info)
    test = build_dataset("ferplus", a.root, "test", transform=preset)
    pose30 = {s.path for s in build_dataset("ferplus", a.root, "test", subset=Path(a.root) / "pose_30_ferplus_list.txt").samples}
    pose45 = {s.path for s in build_dataset("ferplus", a.root, "test", subset=Path(a.root) / "pose_45_ferplus_list.txt").samples}
    groups = {"frontal (not in Pose-30)": [i for i, s in enumerate(test.samples) if s.path not in pose30],
              "Pose-45": [i for i, s in enumerate(test.samples) if s.path in pose45]}
    for name, idx in groups.items():
        fm, share = [], []
        for k in range(0, len(idx), a.batch_size):
            x = torch.stack([test[i][0] for i in idx[k:k + a.batch_size]])  # (B, 3, S, S)
            res = class_activation_maps(model, x)  # CAMs of the predicted class
            fm.append(res.attention.numpy())  # (B, h, w)
            share.append((res.cam_a.mean((1, 2)) / res.cam_f.mean((1, 2))).numpy())  # (B,)
        fm_all, share_all = np.concatenate(fm), np.concatenate(share)
        print(f"{name}: n={len(idx)} mean F_m {fm_all.mean():.3f}; faces with mean F_m < 0.05: "
              f"{(fm_all.mean((1, 2)) < 0.05).mean():.3f}; median share of CAM_a in CAM_f {np.median(share_all):.3f}")
        print("  mean F_m by position (rows top to bottom):")
        for row in fm_all.mean(0):
            print("   " + " ".join(f"{v:.2f}" for v in row))


if __name__ == "__main__":
    main()
