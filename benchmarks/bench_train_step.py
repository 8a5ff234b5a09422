"""Training-step time of LAN against the plain ResNet-18 baseline, measured in one run on the same inputs.

Target (engine issue): LAN adds at most 10% per step. A step is forward, the LAN loss with the guidance
assignment, backward and an SGD update, exactly as in ``lanfer.train.train_one_epoch``.

    python benchmarks/bench_train_step.py                       # CPU, 112 px, batch 32
    python benchmarks/bench_train_step.py --device cuda --size 224 --batch 64 --amp --out gpu_step.json
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import torch

import lanfer
from lanfer.guidance import fit_guidance


def step_time(name: str, x: torch.Tensor, y: torch.Tensor, guidance, steps: int, warmup: int, amp: bool,
              channels_last: bool) -> dict:
    device = x.device
    model = lanfer.create_model(name, num_classes=7).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()

    def one():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x, return_maps=True)
        gmap = guidance.assign(out.features.detach().float()) if out.attention is not None else None
        total, _, _ = lanfer.lan_loss(out.logits.float(), y, out.attention, gmap, alpha=0.5)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()

    for _ in range(warmup):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        one()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    times.sort()
    med = times[len(times) // 2]
    return {"model": name, "median_s": med, "images_per_s": x.shape[0] / med, "min_s": times[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--amp", action="store_true", help="bf16 autocast")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--rounds", type=int, default=2, help="alternate baseline/LAN this many times")
    ap.add_argument("--out", help="write the results as JSON")
    a = ap.parse_args()
    torch.manual_seed(0)
    device = torch.device(a.device)
    x = torch.randn(a.batch, 3, a.size, a.size, device=device)
    y = torch.randint(0, 7, (a.batch,), device=device)
    with torch.no_grad():
        feats = lanfer.create_model("resnet18").to(device).eval().forward_features(x[: min(a.batch, 32)])
    guidance = fit_guidance(feats.float().cpu(), seed=0)  # assign() moves its planes to the features' device
    rows: dict[str, list[dict]] = {"resnet18": [], "lan_resnet18": []}
    for _ in range(a.rounds):  # alternate so drift in machine load hits both models alike
        for name in rows:
            rows[name].append(step_time(name, x, y, guidance, a.steps, a.warmup, a.amp, not a.no_channels_last))
    best = {k: min(r["median_s"] for r in v) for k, v in rows.items()}
    overhead = best["lan_resnet18"] / best["resnet18"] - 1
    result = {"device": str(device), "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
              "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "size": a.size, "batch": a.batch, "amp": a.amp, "channels_last": not a.no_channels_last,
              "baseline_step_s": best["resnet18"], "lan_step_s": best["lan_resnet18"],
              "baseline_images_per_s": a.batch / best["resnet18"], "lan_images_per_s": a.batch / best["lan_resnet18"],
              "lan_overhead": overhead, "target_overhead": 0.10, "meets_target": overhead <= 0.10}
    print(f"device {result['device']} {result['gpu'] or result['cpu']}  size {a.size}  batch {a.batch}  "
          f"amp {a.amp}")
    print(f"  ResNet-18 baseline  {1000 * best['resnet18']:8.1f} ms/step  {result['baseline_images_per_s']:8.1f} img/s")
    print(f"  LAN                 {1000 * best['lan_resnet18']:8.1f} ms/step  {result['lan_images_per_s']:8.1f} img/s")
    print(f"  LAN overhead {100 * overhead:+.1f}% (target <= +10%): {'ok' if result['meets_target'] else 'MISSED'}")
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
