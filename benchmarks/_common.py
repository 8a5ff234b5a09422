"""What every benchmark prints first: the machine, since its figures mean little without it.

    from _common import machine_header   # a script in benchmarks/ (its folder is on sys.path)
    print(machine_header())

The CPU model, whether it has the bfloat16 instructions (``amx_bf16``, ``avx512_bf16``) that make
``train.amp: bf16`` pay on a CPU, the usable cores and load, python, torch and the GPU.
"""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from lanfer.io import atomic_write
from lanfer.precision import cpu_info

BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_model() -> str:
    """The CPU's model name as lscpu prints it, else lanfer's own reading of /proc/cpuinfo."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"^Model name:\s*(.+)$", text, re.M)
        if m:
            return m[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return cpu_info()[0]  # no lscpu (a slim container)


def cpu_flags() -> set[str]:
    """The CPU feature flags (empty where /proc/cpuinfo has none, e.g. macOS): the same reading that
    ``train.amp: auto`` decides by (``lanfer.precision.cpu_info``)."""
    return set(cpu_info()[1])


def write_record(path, record) -> Path:
    """A benchmark's JSON record at ``path`` (its folder made), whole or not at all (lanfer's atomic writer)."""
    text = json.dumps(record, indent=2) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine_header() -> str:
    """Several lines: CPU model, cores and load; bf16 instructions; python; torch, its threads and the GPU."""
    flags = cpu_flags()
    bf16 = ", ".join(f"{f} {'yes' if f in flags else 'no'}" for f in BF16_FLAGS)
    load = f"; load average {os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else ""
    lines = [f"CPU: {cpu_model()}  ({usable_cpus()} usable of {os.cpu_count()} logical CPUs{load})",
             f"bf16 instructions: {bf16}" + ("" if flags else " (no /proc/cpuinfo flags to read)"),
             f"python {platform.python_version()} ({sys.executable})"]
    try:
        import torch

        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
        lines.append(f"torch {torch.__version__}, {torch.get_num_threads()} threads, GPU: {gpu}")
    except ImportError:
        lines.append("torch: not importable from this interpreter")
    return "\n".join(lines)


if __name__ == "__main__":
    print(machine_header())
