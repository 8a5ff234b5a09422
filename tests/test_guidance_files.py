"""A guidance file that cannot be used gives a GuidanceError naming the file and what was expected."""
from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from lanfer.cli import _user_errors, main
from lanfer.guidance import Guidance, GuidanceError


def small_guidance() -> Guidance:
    counts = torch.tensor([[3, 9], [9, 3], [6, 6], [2, 10]])
    return Guidance(torch.randn(4, 2, 5, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 1, 0]),
                    counts, torch.rand(4, dtype=torch.float64), height=2, width=2, meta={"n": 12, "seed": 0})


@pytest.fixture
def saved(tmp_path):
    return small_guidance().save(tmp_path / "guidance.safetensors")


def test_the_error_is_a_value_error_the_cli_prints_without_traceback():
    assert issubclass(GuidanceError, ValueError)
    assert GuidanceError in _user_errors()


@pytest.mark.parametrize("keep", [0, 4, 40, -8], ids=["empty", "in-header-length", "in-header", "in-tensors"])
def test_truncated_file(saved, keep):
    saved.write_bytes(saved.read_bytes()[:keep])
    with pytest.raises(GuidanceError, match=r"guidance\.safetensors.*not a readable safetensors file.*"
                                            r"expected a lanfer guidance file.*truncated"):
        Guidance.load(saved)


def test_garbage_bytes(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(os.urandom(512))
    with pytest.raises(GuidanceError, match=r"noise\.safetensors.*not a readable safetensors file"):
        Guidance.load(path)


def test_safetensors_without_the_guidance_tensors(tmp_path):
    path = tmp_path / "half.safetensors"
    g = small_guidance()
    md = {"format": "lanfer.guidance", "format_version": "1", "height": "2", "width": "2", "meta": "{}"}
    save_file({"centers": g.centers, "counts": g.counts}, str(path), metadata=md)
    with pytest.raises(GuidanceError, match=r"half\.safetensors.*lacks tensors \['attentive', 'inertia'\].*"
                                            r"centers \(H\*W, 2, C\), attentive \(H\*W,\)"):
        Guidance.load(path)
    # another lanfer file (a model) is named as such
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "lanfer"})
    with pytest.raises(GuidanceError, match=r"half\.safetensors.*not a lanfer guidance file.*'lanfer\.guidance'"):
        Guidance.load(path)


def test_broken_metadata_and_mis_shaped_tensors(tmp_path):
    g = small_guidance()
    path = tmp_path / "g.safetensors"
    tensors = {"centers": g.centers, "attentive": g.attentive, "counts": g.counts, "inertia": g.inertia}
    good = {"format": "lanfer.guidance", "format_version": "1", "height": "2", "width": "2", "meta": "{}"}
    save_file(tensors, str(path), metadata={**good, "meta": "{not json"})
    with pytest.raises(GuidanceError, match=r"g\.safetensors.*broken guidance metadata.*JSONDecodeError"):
        Guidance.load(path)
    save_file(tensors, str(path), metadata={k: v for k, v in good.items() if k != "width"})
    with pytest.raises(GuidanceError, match=r"g\.safetensors.*broken guidance metadata.*'width'"):
        Guidance.load(path)
    save_file(tensors, str(path), metadata={**good, "height": "3"})  # 3x2 positions, but the tensors hold 4
    with pytest.raises(GuidanceError, match=r"g\.safetensors.*3x2 positions.*centers must be"):
        Guidance.load(path)


def test_cli_reports_a_corrupt_guidance_file_in_one_line(tiny_folder, tmp_path, capsys, saved):
    saved.write_bytes(saved.read_bytes()[:100])
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
model: {{name: lan_resnet18, num_classes: 3, head_widths: [16, 8, 4]}}
data: {{name: imagefolder, root: {tiny_folder}, image_size: 64, num_workers: 0}}
train: {{epochs: 1, batch_size: 8, progress: false, channels_last: false}}
guidance: {{path: {saved}}}
""")
    assert main(["train", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lanfer train: error: ") and "guidance.safetensors" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
