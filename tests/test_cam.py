"""Class activation maps: a hand-built model's CAMs against sums computed by hand, and `lanfer cam`'s figures."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lanfer.analysis.cam import class_activation_maps, overlays, run_cam, scale_maps
from lanfer.cli import main
from lanfer.model import FERNet, create_model


class _Const(torch.nn.Module):
    """A stand-in layer returning a fixed tensor (per batch item), so the maps are known exactly."""

    def __init__(self, value):
        super().__init__()
        self.value = value

    def forward(self, x):
        return self.value[: x.shape[0]]


def _hand_model(fusion, attention=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    c, h, w, k = 512, 3, 4, 3
    f_o = torch.rand(2, c, h, w, generator=g)  # (B, C, H, W)
    f_m = torch.rand(2, 1, h, w, generator=g)  # (B, 1, H, W)
    model = FERNet(num_classes=k, attention=attention, fusion=fusion).eval()
    model.backbone = _Const(f_o)
    if attention:
        model.head = _Const(f_m)
    torch.nn.init.normal_(model.fc.weight, generator=g)
    torch.nn.init.normal_(model.fc.bias, generator=g)
    return model, f_o.numpy().astype(np.float64), f_m.numpy().astype(np.float64)


def _by_hand(weights, maps):
    """sum_k w_k * F_k(h, w) with explicit loops over channels."""
    out = np.zeros(maps.shape[1:])
    for k in range(maps.shape[0]):
        out += weights[k] * maps[k]
    return out


@pytest.mark.parametrize("fusion", ["add", "average", "concat"])
def test_cam_equals_class_weighted_sum_by_hand(fusion):
    model, f_o, f_m = _hand_model(fusion)
    x = torch.zeros(2, 3, 32, 32)
    res = class_activation_maps(model, x, target=[2, 0])
    W = model.fc.weight.detach().numpy().astype(np.float64)
    bias = model.fc.bias.detach().numpy()
    for i, cls in enumerate([2, 0]):
        f_a = f_o[i] * f_m[i]  # (C, H, W)
        if fusion == "concat":
            w_o, w_a = W[cls, :512], W[cls, 512:]
        else:
            w_o = w_a = W[cls] * (0.5 if fusion == "average" else 1.0)
        cam_o, cam_a = _by_hand(w_o, f_o[i]), _by_hand(w_a, f_a)
        np.testing.assert_allclose(res.cam_o[i].numpy(), cam_o, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(res.cam_a[i].numpy(), cam_a, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(res.cam_f[i].numpy(), cam_o + cam_a, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(res.attention[i].numpy(), f_m[i, 0], rtol=1e-6)
        # the CAM of f is exact: its spatial mean plus the bias is the class logit
        assert res.cam_f[i].mean().item() + bias[cls] == pytest.approx(res.logits[i, cls].item(), rel=1e-4, abs=1e-3)


def test_baseline_cam_and_predicted_class_default():
    model, f_o, _ = _hand_model("add", attention=False)
    res = class_activation_maps(model, torch.zeros(2, 3, 32, 32))
    W = model.fc.weight.detach().numpy().astype(np.float64)
    assert res.cam_a is None and res.attention is None
    for i in range(2):
        cls = int(res.logits[i].argmax())
        assert int(res.classes[i]) == cls
        np.testing.assert_allclose(res.cam_f[i].numpy(), _by_hand(W[cls], f_o[i]), rtol=1e-4, atol=1e-3)


def test_overlays_have_the_input_size_and_scaling_is_shared():
    maps = [np.array([[0.0, 2.0], [1.0, 4.0]]), np.array([[-2.0, 0.0], [0.0, 1.0]])]
    scaled, lo, hi = scale_maps(maps)
    assert (lo, hi) == (-2.0, 4.0)
    np.testing.assert_allclose(scaled[0], (maps[0] + 2) / 6)
    image = np.random.default_rng(0).random((70, 50, 3))
    for o in overlays(image, scaled):
        assert o.shape == (70, 50, 3) and 0 <= o.min() and o.max() <= 1


def test_run_cam_two_models_side_by_side(tmp_path):
    torch.manual_seed(0)
    paths = []
    for name, arch in (("lan", "lan_resnet18"), ("base", "resnet18")):
        model = create_model(arch, num_classes=3, head_widths=(8, 8, 8)).eval()
        paths.append(_save(model, arch, tmp_path / name))
    img = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (60, 60, 3), dtype=np.uint8)).save(img)
    written = run_cam([img], tmp_path / "cams", models=paths, class_name="b", labels={str(img): "a"})
    assert len(written) == 1 and Image.open(written[0]).size[0] > 300
    rec = json.loads((tmp_path / "cams" / "cam.json").read_text())
    assert [r["model"] for r in rec] == ["lan", "base"] and {r["cam_class"] for r in rec} == {"b"}
    assert main(["cam", str(paths[0]), str(img), "--out", str(tmp_path / "c2"), "--class", "zzz"]) == 2


def _save(model, arch, run):
    from lanfer.checkpoint import save_model
    from lanfer.info import ModelInfo

    run.mkdir()
    info = ModelInfo(arch=arch, classes=["a", "b", "c"], input_size=64, normalize="none", color="rgb",
                     head_widths=[8, 8, 8])
    save_model(run / "best.safetensors", model, info)
    return run


def test_cam_default_is_the_shipped_model(tmp_path, capsys):
    from lanfer.pretrained import find

    img = tmp_path / "gray.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (48, 48), dtype=np.uint8)).save(img)
    assert main(["cam", str(img), "--out", str(tmp_path / "c")]) == 0
    rec = json.loads((tmp_path / "c" / "cam.json").read_text())
    assert rec[0]["model"] == find().name and rec[0]["pred"] in find().info().classes
    assert "wrote" in capsys.readouterr().out


def test_detect_cuts_the_largest_face_of_the_chosen_detector(tmp_path):
    """``lanfer cam --detect``: the largest face the default detector (BlazeFace) finds, cut as the model's record
    says; ``--detector`` picks another, an unknown name is refused."""
    from pathlib import Path

    from lanfer.analysis.cam import load_face
    from lanfer.checkpoint import read_model_info
    from lanfer.faces import crop_face, get_detector
    from lanfer.pretrained import find

    info = read_model_info(find().path)
    path = Path(__file__).parent / "data/port/blazeface_photo.jpg"  # 3 faces
    image = np.array(Image.open(path).convert("RGB"))
    faces = get_detector("blazeface").detect([image])[0]
    big = max(faces, key=lambda f: f.area)
    want = crop_face(image, big.landmarks, big.box, info.input_size, info.crop)
    np.testing.assert_array_equal(load_face(path, info, detect=True), want)
    np.testing.assert_array_equal(load_face(path, info, detect=True, detector="blazeface"), want)
    with pytest.raises(ValueError, match="unknown face detector"):
        load_face(path, info, detect=True, detector="nope")
    assert load_face(path, info).shape == image.shape  # without --detect: the whole image
