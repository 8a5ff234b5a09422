"""Which torch device a job runs on: the one resolver that prediction, evaluation and training share.

``"auto"`` is the first CUDA device when one is visible, else the CPU. Any other string is parsed by torch
and checked against this machine, so that a typo or a missing GPU fails here, naming the setting, rather
than deep inside a ``.to(device)`` call with torch's own message.
"""
from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device that torch cannot parse or that this machine does not have."""


def resolve_device(device: str | torch.device = "auto", what: str = "device") -> torch.device:
    """``"auto"`` -> ``cuda`` if available, else ``cpu``; any other device -> itself, checked to exist.

    Args:
        device: ``"auto"``, a torch device string (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` ...) or a
            :class:`torch.device`.
        what: the setting's name in error messages, e.g. ``"train.device"`` or ``"--device"``.
    Raises:
        DeviceError: the string is not a device, or the device is not available here.
    """
    if not isinstance(device, torch.device):
        text = str(device).strip()
        if text == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            device = torch.device(text)
        except (RuntimeError, ValueError, TypeError):
            raise DeviceError(f"{what}={text!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    _check_available(device, what)
    return device


def _check_available(device: torch.device, what: str) -> None:
    if device.type in ("cpu", "meta"):
        return
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{what}={str(device)!r} was asked for but no CUDA device is visible "
                              f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use {what}=cpu or auto")
        n = torch.cuda.device_count()
        if device.index is not None and device.index >= n:
            raise DeviceError(f"{what}={str(device)!r}: this machine has {n} CUDA device{'s' * (n != 1)} "
                              f"(cuda:0 .. cuda:{n - 1})")
        return
    # mps, xpu, ...: torch exposes each backend's availability as torch.<type>.is_available()
    backend = getattr(torch.backends, device.type, None) if device.type == "mps" else getattr(torch, device.type, None)
    available = getattr(backend, "is_available", None)
    if available is not None and not available():
        raise DeviceError(f"{what}={str(device)!r} was asked for but this machine has no {device.type} device; "
                          f"use {what}=cpu or auto")


def onnx_providers(device: torch.device, ort) -> list[str]:
    """ONNX Runtime execution providers for ``device``: CUDA first when it is a GPU and this onnxruntime (``ort``,
    the imported module) has it, the CPU always (the classifier's and BlazeFace's sessions share this choice)."""
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return providers
