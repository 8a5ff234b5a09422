"""ONNX export: outputs, metadata, dynamic batch, parity with PyTorch (checked here again, independently of
the export's own report), the baseline's logits-only graph, and the ``lanfer export`` command."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import lanfer
from lanfer.checkpoint import CheckpointError, save_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from lanfer.export import ExportError, export_onnx  # noqa: E402

CLASSES = ["anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def _checkpoint(path, name, normalize="imagenet"):
    torch.manual_seed(1)
    m = lanfer.create_model(name, num_classes=7, head_widths=(16, 8, 4)).eval()
    for mod in m.modules():  # non-trivial BatchNorm statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.normal_(0, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    info = {"model": {"name": name, "num_classes": 7, "head_widths": [16, 8, 4]}, "classes": CLASSES,
            "image_size": 64, "normalize": normalize}
    return save_model(path, m, info), m


@pytest.fixture(scope="module")
def lan(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("lan") / "best.safetensors", "lan_resnet18")


def test_lan_export_outputs_metadata_and_parity(lan, tmp_path):
    ckpt, model = lan
    crops = tmp_path / "crops"
    crops.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(crops / f"{i}.png")
    report = export_onnx(ckpt, tmp_path / "lan.onnx", check_images=[crops])
    assert report["outputs"] == ["logits", "attention", "probabilities"] and report["exporter"] == "dynamo"
    assert report["parity"]["n_images"] == 3 and report["parity"]["max_abs_diff"] < 1e-4
    proto = onnx.load(str(tmp_path / "lan.onnx"))
    onnx.checker.check_model(proto)
    meta = {p.key: p.value for p in proto.metadata_props}
    # the same codec as the safetensors header: JSON values (lanfer.info.ModelInfo)
    assert json.loads(meta["classes"]) == CLASSES and meta["image_size"] == "64"
    assert json.loads(meta["normalize"]) == "imagenet" and json.loads(meta["color"]) == "rgb"
    assert json.loads(meta["model"])["name"] == "lan_resnet18"
    assert [o.name for o in proto.graph.output] == ["logits", "attention", "probabilities"]
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 18
    # an independent parity check, at two batch sizes (the batch axis is dynamic)
    session = ort.InferenceSession(str(tmp_path / "lan.onnx"), providers=["CPUExecutionProvider"])
    for b in (1, 5):
        x = torch.randn(b, 3, 64, 64)
        logits, att, probs = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            ref = model(x, return_maps=True)
        assert logits.shape == (b, 7) and att.shape == (b, 1, 2, 2)
        assert np.abs(logits - ref.logits.numpy()).max() < 1e-4
        # an uncalibrated record (temperature 1, no prior): the plain softmax
        assert np.abs(probs - torch.softmax(ref.logits, 1).numpy()).max() < 1e-5
        assert np.abs(att - ref.attention.numpy()).max() < 1e-4


def test_baseline_exports_no_attention_with_the_legacy_exporter_at_opset_17(tmp_path):
    ckpt, model = _checkpoint(tmp_path / "base.safetensors", "resnet18", normalize="none")
    report = export_onnx(ckpt, tmp_path / "base.onnx", opset=17, image_size=96)
    assert report["outputs"] == ["logits", "probabilities"] and report["exporter"] == "torchscript"
    assert report["image_size"] == 96
    proto = onnx.load(str(tmp_path / "base.onnx"))
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == 17
    assert json.loads({p.key: p.value for p in proto.metadata_props}["normalize"]) == "none"
    session = ort.InferenceSession(str(tmp_path / "base.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, 96, 96)
    logits, _ = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        assert np.abs(logits - model(x).numpy()).max() < 1e-4


def test_parity_failure_and_missing_checkpoint_are_clear_errors(lan, tmp_path):
    ckpt, _ = lan
    with pytest.raises(ExportError, match="disagree by"):
        export_onnx(ckpt, tmp_path / "strict.onnx", atol=1e-12)
    assert (tmp_path / "strict.onnx").is_file()  # kept for inspection
    with pytest.raises(CheckpointError, match="does not exist"):
        export_onnx(tmp_path / "nope.safetensors", tmp_path / "x.onnx")


def test_cli_export_prints_the_parity(lan, tmp_path, capsys):
    from lanfer.cli import main

    ckpt, _ = lan
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "outputs logits, attention, probabilities" in out and "parity vs PyTorch on random inputs" in out and ": ok" in out
    assert main(["export", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "m.onnx")]) == 2
