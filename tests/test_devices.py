"""The one device resolver: "auto", explicit devices, and errors that name the setting."""
from __future__ import annotations

import pytest
import torch

from lanfer.devices import DeviceError, resolve_device


def test_auto_is_cuda_when_visible_else_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device() == torch.device(expected)
    assert resolve_device("auto") == torch.device(expected)


def test_explicit_devices_pass_through():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device(" cpu ") == torch.device("cpu")


def test_unknown_device_names_the_setting():
    with pytest.raises(DeviceError, match=r"--device='gpu0' is not a device; use auto, cpu, cuda"):
        resolve_device("gpu0", what="--device")
    assert issubclass(DeviceError, ValueError)


def test_unavailable_cuda_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=r"train.device='cuda' was asked for but no CUDA device is visible.*"
                                          r"use train.device=cpu or auto"):
        resolve_device("cuda", what="train.device")
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match=r"'cuda:3': this machine has 1 CUDA device \(cuda:0 .. cuda:0\)"):
        resolve_device("cuda:3")


def test_cli_reports_a_bad_device_as_a_user_error(tmp_path, capsys):
    from lanfer.cli import main

    assert main(["eval", str(tmp_path / "m.safetensors"), "--device", "gpu0"]) == 2
    assert "'gpu0' is not a device" in capsys.readouterr().err
