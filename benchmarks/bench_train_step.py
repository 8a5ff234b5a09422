"""Training-step time of LAN against the plain ResNet-18 baseline, measured in one run on the same inputs.

Target (engine issue): LAN adds at most 10% per step. A step is forward, the LAN loss with the guidance
assignment, backward (through the fp16 GradScaler where used) and an SGD update, as in
``lanfer.train.train_one_epoch``. Several precisions (``--modes``, each optionally ``+compile``) run one after
the other in one process, so their ratios share the machine's load; the header names the CPU and whether it has
AMX-BF16 / AVX-512 BF16 (``lanfer.precision.hardware_line``).

    python benchmarks/bench_train_step.py                       # CPU, 112 px, batch 32, fp32
    python benchmarks/bench_train_step.py --modes fp32,bf16,bf16+compile --batch 64
    python benchmarks/bench_train_step.py --device cuda --size 224 --batch 64 --amp --out gpu_step.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import lanfer
from lanfer.guidance import fit_guidance
from _common import machine_header  # noqa: E402  (benchmarks/ is on sys.path)
from lanfer.precision import autocast, grad_scaler, hardware_line


def step_time(name: str, x: torch.Tensor, y: torch.Tensor, guidance, steps: int, warmup: int, precision: str,
              channels_last: bool, compile: bool = False) -> dict:
    device = x.device
    model = lanfer.create_model(name, num_classes=7).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    scaler = grad_scaler(precision, device)
    model.train()
    forward = torch.compile(model) if compile else model

    def one():
        with autocast(precision, device):
            out = forward(x, return_maps=True)
        gmap = guidance.assign(out.features.detach().float()) if out.attention is not None else None
        total, _, _ = lanfer.lan_loss(out.logits.float(), y, out.attention, gmap, alpha=0.5)
        opt.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        scaler.step(opt)
        scaler.update()

    t0 = time.perf_counter()
    for _ in range(warmup):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0  # with compile: the compile time, plus `warmup` steps
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        one()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    times.sort()
    med = times[len(times) // 2]
    return {"model": name, "median_s": med, "images_per_s": x.shape[0] / med, "min_s": times[0],
            "warmup_s": warm_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--modes", default=None,
                    help="comma-separated precisions fp32, bf16, fp16, each optionally +compile (default fp32)")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (the same as --modes bf16)")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--rounds", type=int, default=2, help="alternate baseline/LAN this many times")
    ap.add_argument("--out", help="write the results as JSON")
    a = ap.parse_args()
    modes = (a.modes or ("bf16" if a.amp else "fp32")).split(",")
    for m in modes:
        if m.split("+")[0] not in ("fp32", "bf16", "fp16") or m.split("+")[1:] not in ([], ["compile"]):
            ap.error(f"--modes: {m!r} is not fp32, bf16 or fp16, optionally followed by +compile")
    torch.manual_seed(0)
    device = torch.device(a.device)
    x = torch.randn(a.batch, 3, a.size, a.size, device=device)
    y = torch.randint(0, 7, (a.batch,), device=device)
    with torch.no_grad():
        feats = lanfer.create_model("resnet18").to(device).eval().forward_features(x[: min(a.batch, 32)])
    guidance = fit_guidance(feats.float().cpu(), seed=0)  # assign() moves its planes to the features' device
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else None
    print(machine_header())
    print(f"device {device}  size {a.size}  batch {a.batch}  channels_last {not a.no_channels_last}  "
          f"steps {a.steps} after {a.warmup} warm-up, best of {a.rounds} rounds")
    results = []
    for mode in modes:
        precision, compile = mode.split("+")[0], mode.endswith("+compile")
        rows: dict[str, list[dict]] = {"resnet18": [], "lan_resnet18": []}
        for _ in range(a.rounds):  # alternate so drift in machine load hits both models alike
            for name in rows:
                rows[name].append(step_time(name, x, y, guidance, a.steps, a.warmup, precision,
                                            not a.no_channels_last, compile))
        best = {k: min(r["median_s"] for r in v) for k, v in rows.items()}
        overhead = best["lan_resnet18"] / best["resnet18"] - 1
        r = {"mode": mode, "baseline_step_s": best["resnet18"], "lan_step_s": best["lan_resnet18"],
             "baseline_images_per_s": a.batch / best["resnet18"], "lan_images_per_s": a.batch / best["lan_resnet18"],
             "lan_overhead": overhead, "meets_target": overhead <= 0.10,
             "first_warmup_s": {k: v[0]["warmup_s"] for k, v in rows.items()}}
        results.append(r)
        print(f"[{mode}]")
        print(f"  ResNet-18 baseline  {1000 * best['resnet18']:8.1f} ms/step  {r['baseline_images_per_s']:8.1f} img/s")
        print(f"  LAN                 {1000 * best['lan_resnet18']:8.1f} ms/step  {r['lan_images_per_s']:8.1f} img/s")
        if compile:
            print(f"  compile + {a.warmup} warm-up steps: ResNet-18 {r['first_warmup_s']['resnet18']:.1f} s, "
                  f"LAN {r['first_warmup_s']['lan_resnet18']:.1f} s")
        print(f"  LAN overhead {100 * overhead:+.1f}% (target <= +10%): {'ok' if r['meets_target'] else 'MISSED'}")
    if len(results) > 1:
        base = results[0]
        print(f"speed against {base['mode']} (images/s ratio):")
        for r in results[1:]:
            print(f"  {r['mode']:<14} ResNet-18 {r['baseline_images_per_s'] / base['baseline_images_per_s']:.2f}x  "
                  f"LAN {r['lan_images_per_s'] / base['lan_images_per_s']:.2f}x")
    first = results[0]
    result = {"device": str(device), "gpu": gpu, "cpu": hardware_line(), "threads": torch.get_num_threads(),
              "size": a.size, "batch": a.batch, "amp": first["mode"].startswith("bf16"),
              "channels_last": not a.no_channels_last, **{k: v for k, v in first.items() if k != "first_warmup_s"},
              "target_overhead": 0.10, "modes": results}
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
