"""Numeric precision of a run: fp32, or bf16 / fp16 autocast, chosen once and used by training and evaluation.

``train.amp`` is one of ``auto``, ``bf16``, ``fp16``, ``none`` (the configs of earlier versions wrote a bool:
``true`` is ``bf16`` and ``false`` is ``none``; :func:`lanfer.config.amp_mode` converts them). ``auto`` picks by
hardware, from measurements (README, Performance):

* CUDA: bf16 where the GPU supports it (Ampere and later), else fp16 with a gradient scaler;
* CPU: bf16 where the CPU has AMX-BF16 tile instructions (``amx_bf16`` in ``/proc/cpuinfo``): on such a Xeon
  a ResNet-18 training step ran 1.7-1.8x faster than fp32, and the FERPlus runs under ``results/ferplus_cpu``
  were trained in bf16. CPUs with only ``avx512_bf16`` (or none) stay fp32: not measured here, so not assumed;
* anything else (MPS, ...): fp32.

fp16 on a CPU works in torch 2.14 (autocast and a CPU GradScaler) but no CPU here computes fp16 natively, so it
is allowed and never chosen.
"""
from __future__ import annotations

import contextlib
import functools
import platform
from pathlib import Path

import torch

#: the values ``train.amp`` accepts, after old bools are converted
AMP_MODES = ("auto", "bf16", "fp16", "none")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@functools.lru_cache(maxsize=1)
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, feature flags) of this machine's CPU, from ``/proc/cpuinfo`` (Linux); elsewhere the
    platform's processor string and no flags."""
    model, flags = "", frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model or platform.processor() or platform.machine(), flags


def cpu_native_bf16() -> bool:
    """Whether this CPU has AMX-BF16 matrix tiles, the instructions that make bf16 training faster than fp32."""
    return "amx_bf16" in cpu_info()[1]


def hardware_line() -> str:
    """One line for benchmark headers: CPU model, its bf16 features, torch version and threads."""
    model, flags = cpu_info()
    has = lambda f: "yes" if f in flags else "no"  # noqa: E731
    return (f"CPU {model} | amx_bf16 {has('amx_bf16')}, avx512_bf16 {has('avx512_bf16')} | "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads")


def resolve_precision(amp: str, device: torch.device) -> tuple[str, str]:
    """``train.amp`` on ``device`` -> (``"bf16"``, ``"fp16"`` or ``"fp32"``, why), the why for the training log."""
    if amp == "none":
        return "fp32", "train.amp=none"
    if amp in _DTYPES:
        return amp, f"train.amp={amp}"
    if amp != "auto":
        raise ValueError(f"train.amp={amp!r} is not one of {', '.join(AMP_MODES)}")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: this GPU supports bf16"
        return "fp16", "auto: this GPU has no bf16; fp16 with a gradient scaler"
    if device.type == "cpu":
        if cpu_native_bf16():
            return "bf16", "auto: this CPU has AMX-BF16"
        return "fp32", "auto: this CPU has no AMX-BF16"
    return "fp32", f"auto: no reduced precision on {device.type}"


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled for fp16 only (bf16 has fp32's exponent range: no underflow to guard)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")
