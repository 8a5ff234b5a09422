"""The model shipped inside the package: it loads offline, classifies, carries its record, and drives predict."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lanfer
from lanfer import pretrained
from lanfer.checkpoint import CheckpointError, read_model_info
from lanfer.info import ModelInfo

FERPLUS = Path(os.environ.get("LANFER_FERPLUS_ROOT")
               or Path(__file__).resolve().parents[2] / "shared" / "data" / "ferplus")


def test_default_model_file_is_in_the_package_and_listed():
    s = pretrained.find()
    assert s.path.is_file() and s.path.parent.name == "weights" and Path(lanfer.__file__).parent in s.path.parents
    assert s.name == pretrained.DEFAULT_MODEL and s.name in pretrained.available()
    assert s.path.stat().st_size < 30 * 2**20  # float16


@pytest.mark.parametrize("shipped", pretrained.SHIPPED, ids=lambda s: s.name)
def test_shipped_model_classifies_a_tensor_and_its_record_roundtrips(shipped):
    model = lanfer.create_model(shipped.arch, pretrained=shipped.tag).eval()
    info = model.info
    assert info.arch == shipped.arch and info.num_classes == 8 and info.classes[1] == "happiness"
    assert info.color == "grayscale" and info.crop.like == "ferplus" and "MIT" in (info.license or "")
    assert {"val", "test", "pose30", "pose45"} <= set(info.metrics)
    assert ModelInfo.from_metadata(info.to_metadata()) == info == read_model_info(shipped.path)
    assert next(model.parameters()).dtype == torch.float32  # float16 on disk, float32 in memory
    x = torch.rand(2, 3, info.input_size, info.input_size)
    with torch.no_grad():
        out = model(x, return_maps=True)
    assert out.logits.shape == (2, 8) and torch.isfinite(out.logits).all()
    side = -(-info.input_size // 32)  # both backbones downsample by 32, rounding up: 112 px -> 4x4, 160 px -> 5x5
    assert out.attention.shape == (2, 1, side, side)


def test_shipped_name_errors_are_clear():
    with pytest.raises(CheckpointError, match="no shipped model 'affectnet'.*lan_resnet18_ferplus"):
        pretrained.find("affectnet")
    with pytest.raises(ValueError, match="8-class model"):
        lanfer.create_model("lan_resnet18", num_classes=7, pretrained="ferplus")
    with pytest.raises(CheckpointError, match="for resnet18"):
        lanfer.create_model("resnet18", pretrained="ferplus")


def test_lanfer_models_lists_the_default_with_numbers():
    out = subprocess.run([sys.executable, "-m", "lanfer", "models"], capture_output=True, text=True, check=True).stdout
    assert f"{pretrained.DEFAULT_MODEL} " in out and "(default)" in out and "test " in out and "%" in out
    assert "lan_resnet18_ferplus" in out and "hse_mobilenet_vggface2" in out  # the older model and the backbone


def test_predict_without_a_checkpoint_writes_a_table(tmp_path):
    face = tmp_path / "face.png"
    Image.fromarray(np.full((48, 48), 128, np.uint8)).save(face)
    r = subprocess.run([sys.executable, "-m", "lanfer", "predict", str(face), "--no-detect", "--out",
                        str(tmp_path / "out"), "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(tmp_path / "out" / "predictions.csv")))
    assert len(rows) == 1 and rows[0]["label"] in read_model_info(pretrained.find().path).classes


@pytest.mark.skipif(not (FERPLUS / "FER2013Test" / "label.csv").is_file(),
                    reason="the real FERPlus files (../shared/data/ferplus) are not on this machine")
def test_shipped_model_says_happiness_where_all_ten_voters_did():
    from lanfer.predict import Predictor

    # the rule: the first 12 FER2013Test faces (label.csv order) with all 10 votes on happiness
    picks = []
    with open(FERPLUS / "FER2013Test" / "label.csv", newline="") as fh:
        for row in csv.reader(fh):
            if len(row) == 12 and float(row[3]) == 10:
                picks.append(str(FERPLUS / "FER2013Test" / row[0]))
            if len(picks) == 12:
                break
    table = Predictor.from_pretrained(device="cpu", detector=None).predict(picks, detect=False, progress=False)
    assert list(table["label"]) == ["happiness"] * len(picks)


def test_models_on_a_shipped_backbone_record_its_origin_and_licence():
    """A model trained from a shipped backbone is made of two things with their own terms: the record names both,
    the backbone's as its own file states them (and training writes the same string: model_info)."""
    from lanfer.config import load_config
    from lanfer.train.run import model_info

    backbone = pretrained.backbone_record("hse_mobilenet_vggface2")
    for name in ("lan_mobilenet_vggface2_ferplus_balanced", "lan_mobilenet_vggface2_ferplus"):
        terms = read_model_info(pretrained.find(name).path).license
        assert terms.startswith("FERPlus labels: MIT (Microsoft)")
        assert backbone["license"] in terms and backbone["source"] in terms and backbone["original"] in terms
    cfg = load_config("ferplus_vggface2_lan")
    assert model_info(cfg, ["a", "b"]).license == terms
    assert pretrained.license_with_backbone("data terms", None) == "data terms"
    assert pretrained.license_with_backbone(None, None) is None
