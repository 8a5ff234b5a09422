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
import statistics
import time

import torch

import lanfer
from lanfer.guidance import fit_guidance
from _common import machine_header  # noqa: E402  (benchmarks/ is on sys.path)
from lanfer.precision import autocast, grad_scaler, hardware_line


def make_step(name: str, x: torch.Tensor, y: torch.Tensor, guidance, precision: str, channels_last: bool,
              compile: bool = False):
    """One training step of ``name`` on (x, y) as a closure: forward, the LAN loss with the guidance assignment,
    backward (through the GradScaler for fp16) and an SGD update, as in ``lanfer.train.train_one_epoch``."""
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
        if device.type == "cuda":
            torch.cuda.synchronize()

    return one


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


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
    ap.add_argument("--rounds", type=int, default=2, help="step pairs = steps x rounds (kept for old commands)")
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
          f"{a.steps * a.rounds} interleaved step pairs after {a.warmup} warm-up steps each")
    results = []
    for mode in modes:
        precision, compile = mode.split("+")[0], mode.endswith("+compile")
        steps = {name: make_step(name, x, y, guidance, precision, not a.no_channels_last, compile)
                 for name in ("resnet18", "lan_resnet18")}
        warm = {name: sum(seconds(one) for _ in range(a.warmup)) for name, one in steps.items()}
        # The two models' steps interleave (A B B A ...): this machine's speed drifts by 10-20% within a minute
        # (shared hosts), and a drift then hits both alike; the overhead is the median of per-pair ratios.
        times: dict[str, list[float]] = {name: [] for name in steps}
        for i in range(a.steps * a.rounds):
            for name in (list(steps) if i % 2 == 0 else list(steps)[::-1]):
                times[name].append(seconds(steps[name]))
        med = {k: statistics.median(v) for k, v in times.items()}
        overhead = statistics.median(l / r for r, l in zip(times["resnet18"], times["lan_resnet18"])) - 1
        r = {"mode": mode, "baseline_step_s": med["resnet18"], "lan_step_s": med["lan_resnet18"],
             "baseline_images_per_s": a.batch / med["resnet18"], "lan_images_per_s": a.batch / med["lan_resnet18"],
             "lan_overhead": overhead, "meets_target": overhead <= 0.10, "pairs": len(times["resnet18"]),
             "first_warmup_s": warm}
        best = med
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
