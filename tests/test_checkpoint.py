import json

import pytest
import torch
import torchvision

import lanfer
from lanfer.checkpoint import CheckpointError, load_backbone, read_model_info, save_model
from lanfer.model import load_model


def _ijba_state(backbone):
    """A file in the layout of ijba_res18_naive.pth.tar: {'state_dict': {'module.<torchvision key>': ...}}
    plus the 256-d `feature` embedding and the identity `fc` head (shrunk from 87020 classes for speed)."""
    sd = {f"module.{k}": v.clone() for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    sd["module.feature.weight"] = torch.randn(256, 512)
    sd["module.feature.bias"] = torch.randn(256)
    sd["module.fc.weight"] = torch.randn(100, 256)
    sd["module.fc.bias"] = torch.randn(100)
    return {"state_dict": sd, "epoch": 10, "arch": "resnet18", "best_prec1": 0.9}


def assert_same_model(m: torch.nn.Module, m2: torch.nn.Module, x: torch.Tensor) -> None:
    """The file kept every tensor bit for bit (storage is lossless), and the rebuilt model computes the same
    function. Its outputs are compared to float rounding, not bits: a loader may legitimately pick another
    memory format or kernel for the same weights, and then the sums come in another order."""
    sd, sd2 = m.state_dict(), m2.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    with torch.no_grad():
        assert torch.allclose(m(x), m2(x), rtol=1e-5, atol=1e-5)


def test_ijba_format_loads_same_tensors(tmp_path):
    src = torchvision.models.resnet18(weights=None)
    torch.nn.init.normal_(src.layer4[1].conv2.weight)
    path = tmp_path / "ijba_res18_naive.pth.tar"
    torch.save(_ijba_state(src), path)
    m = lanfer.create_model("lan_resnet18", pretrained=str(path))
    ref = src.state_dict()
    for k, v in m.backbone.state_dict().items():
        assert torch.equal(v, ref[k]), k
    report = load_backbone(m.backbone, path)
    assert "skipped 4" in report and "feature" in report and "fc" in report


def test_torchvision_keys_and_module_prefix(tmp_path):
    src = torchvision.models.resnet18(weights=None)
    p1, p2 = tmp_path / "tv.pth", tmp_path / "dp.pth"
    torch.save(src.state_dict(), p1)
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, p2)
    for p in (p1, p2):
        m = lanfer.create_model("resnet18", pretrained=str(p))
        assert torch.equal(m.backbone.conv1.weight, src.conv1.weight)


def test_mismatched_file_is_refused_naming_keys(tmp_path):
    src = torchvision.models.resnet18(weights=None).state_dict()
    del src["layer3.0.conv1.weight"]
    src = {k.replace("layer4", "block4"): v for k, v in src.items()}
    p = tmp_path / "bad.pth"
    torch.save(src, p)
    with pytest.raises(CheckpointError, match=r"layer3\.0\.conv1\.weight"):
        lanfer.create_model("lan_resnet18", pretrained=str(p))
    with pytest.raises(CheckpointError, match="do not exist"):
        lanfer.create_model("lan_resnet18", pretrained=str(tmp_path / "nope.pth"))


def test_pickled_module_is_refused(tmp_path):
    p = tmp_path / "module.pth"
    torch.save(torchvision.models.resnet18(weights=None), p)  # a pickled nn.Module, not a state dict
    with pytest.raises(CheckpointError, match="weights_only"):
        lanfer.create_model("resnet18", pretrained=str(p))


def test_model_file_roundtrip_and_arch_check(tmp_path):
    m = lanfer.create_model("lan_resnet18", num_classes=8, fusion="concat", head_widths=(32, 16, 8)).eval()
    info = {"model": {"name": "lan_resnet18", "num_classes": 8, "fusion": "concat", "head_widths": [32, 16, 8],
                      "dropout": 0.0}, "classes": [f"c{i}" for i in range(8)], "image_size": 64}
    path = save_model(tmp_path / "best.safetensors", m, info)
    m2, info2 = load_model(path)
    assert_same_model(m, m2, torch.randn(2, 3, 64, 64))
    assert info2.classes == info["classes"] and read_model_info(path).input_size == 64
    with pytest.raises(CheckpointError, match="expected 'resnet18'"):
        load_model(path, expect_arch="resnet18")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model(tmp_path / "junk.safetensors")


def test_state_of_other_architecture_names_keys():
    from lanfer.checkpoint import load_state
    lan = lanfer.create_model("lan_resnet18")
    base = lanfer.create_model("resnet18")
    with pytest.raises(CheckpointError, match="unexpected keys.*head"):
        load_state(base, lan.state_dict())


def test_model_file_in_todays_format_loads(tmp_path):
    """A file exactly as lanfer wrote it before the typed record (format 1, train.py's info dict) still loads,
    with the preprocessing it was trained with: RGB, the aligned template crop at its default margin."""
    import json

    from safetensors.torch import save_file

    from lanfer.info import FaceCrop

    m = lanfer.create_model("resnet18", num_classes=3).eval()
    meta = {"format": "lanfer", "format_version": "1", "arch": "resnet18"}
    values = {"model": {"name": "resnet18", "num_classes": 3, "fusion": "add", "head_widths": [256, 128, 64],
                        "dropout": 0.0},
              "classes": ["happy", "neutral", "sad"], "image_size": 96, "normalize": "none",
              "data": {"name": "imagefolder", "root": "/data/x", "options": {}}, "seed": 0, "alpha": 0.5,
              "guidance_source": "batch"}
    meta.update({k: json.dumps(v) for k, v in values.items()})
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path), metadata=meta)
    m2, info = load_model(path)
    assert_same_model(m, m2, torch.randn(2, 3, 96, 96))
    assert info.arch == "resnet18" and info.classes == ["happy", "neutral", "sad"] and info.num_classes == 3
    assert info.input_size == 96 and info.normalize == "none" and info.color == "rgb"
    assert info.crop == FaceCrop() and info.extra == {"seed": 0, "alpha": 0.5, "guidance_source": "batch"}
    assert info.data["name"] == "imagefolder"


def test_model_info_roundtrips_and_refuses_bad_metadata(tmp_path):
    from lanfer.info import FaceCrop, InfoError, ModelInfo

    info = ModelInfo(arch="lan_resnet18", classes=list("abcdefgh"), input_size=112, normalize="none",
                     color="grayscale", crop=FaceCrop(kind="box", margin=0.2, shift_y=0.05, like="ferplus"),
                     data={"name": "ferplus"}, license="MIT labels; FER2013 images for research",
                     command="lanfer train x.yaml", metrics={"test": {"accuracy": 0.8}})
    back = ModelInfo.from_metadata(info.to_metadata(), "mem")
    assert back == info
    m = lanfer.create_model(**info.model_kwargs())
    path = save_model(tmp_path / "m.safetensors", m, info)
    assert read_model_info(path) == info
    meta = info.to_metadata()
    with pytest.raises(InfoError, match="mem: model.num_classes=3 but 8 class names"):
        ModelInfo.from_metadata({**meta, "model": json.dumps({"name": "resnet18", "num_classes": 3})}, "mem")
    with pytest.raises(InfoError, match="format version 2"):
        ModelInfo.from_metadata({**meta, "format_version": "2"}, "mem")
    with pytest.raises(InfoError, match="color='sepia'"):
        ModelInfo.from_metadata({**meta, "color": json.dumps("sepia")}, "mem")
    with pytest.raises(InfoError, match="not a lanfer model file"):
        ModelInfo.from_metadata({"format": "pt"}, "mem")
