"""Every configs/*.yaml loads, names a registered dataset with a matching class count, and trains a step."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import write_rafdb_noise
from lanfer.config import load_config
from lanfer.data import available_datasets
from lanfer.data.affectnet import AFFECTNET_CLASSES
from lanfer.data.ferplus import FERPLUS_CLASSES
from lanfer.data.kdef import KDEF_CLASSES
from lanfer.data.rafdb import RAFDB_CLASSES

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
PAPER_ROWS = {"kdef_lan", "kdef_resnet18", "rafdb_lan", "rafdb_resnet18", "ferplus_lan", "ferplus_resnet18",
              "affectnet_lan", "affectnet_resnet18", "affectnet_alpha", "affectnet_concat", "affectnet_average"}


def test_every_paper_row_has_a_config():
    assert PAPER_ROWS <= {p.stem for p in CONFIGS}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_matches_its_dataset(path):
    cfg = load_config(path)
    assert cfg.data.name in available_datasets()
    classes = {"rafdb": RAFDB_CLASSES, "ferplus": FERPLUS_CLASSES, "kdef": KDEF_CLASSES,
               "affectnet": AFFECTNET_CLASSES[int(cfg.data.options.get("num_classes", 8))]}[cfg.data.name]
    assert cfg.model.num_classes == len(classes)
    stem = path.stem
    if stem.startswith("ferplus_vggface2_"):  # issue 24: the identity MobileNet, LAN and its baseline
        lan = stem.endswith("_lan")
        assert cfg.model.name == ("lan_mobilenet_vggface2" if lan else "mobilenet_vggface2")
        assert cfg.model.pretrained == "vggface2" and cfg.data.normalize == "vggface2_bgr"
        assert (cfg.loss.alpha, cfg.guidance.source) == ((0.5, "batch") if lan else (0.0, "none"))
    elif "resnet18" in stem:
        assert cfg.model.name == "resnet18" and cfg.guidance.source == "none"
    else:
        assert cfg.model.name == "lan_resnet18" and cfg.loss.alpha == 0.5
        assert cfg.model.fusion == {"affectnet_concat": "concat", "affectnet_average": "average"}.get(stem, "add")
    assert cfg.train.batch_size == 64
    if stem in PAPER_ROWS:
        assert cfg.train.lr == 0.1  # paper section IV-B
    else:  # the CPU recipes (README, "Real faces: FERPlus"): stage-2 fine-tunes of stage 1, or the identity MobileNet
        assert stem.startswith(("ferplus_cpu_", "ferplus_vggface2_")) and cfg.data.options["votes"] == "label_csv"
        assert cfg.data.color == "grayscale" and cfg.data.crop["like"] == "ferplus"
    if cfg.data.name == "affectnet":
        assert cfg.data.balanced_sampling and cfg.data.options["num_classes"] == 8


def write_rafdb(tmp_path):
    return write_rafdb_noise(tmp_path, n_train=10, n_test=4, size=40)


SMOKE = ["model.pretrained=null", "data.image_size=32", "data.num_workers=0", "train.batch_size=4",
         "train.epochs=1", "train.max_steps=1", "train.device=cpu", "train.progress=false",
         "train.channels_last=false", "guidance.iters=3", "guidance.seeds=1"]


@pytest.mark.parametrize("config", ["rafdb_lan", "rafdb_resnet18"])
def test_paper_config_trains_one_step_on_official_layout(tmp_path, config):
    from lanfer.train import train

    base = write_rafdb(tmp_path)
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{config}.yaml",
                      SMOKE + [f"data.root={base}"])
    metrics = train(cfg, out=tmp_path / "run")
    assert metrics["n"] == 4 and 0.0 <= metrics["accuracy"] <= 1.0
    assert (tmp_path / "run" / "best.safetensors").is_file()


def _fixture_for(name, tmp_path):
    """The official-layout fixture of each dataset, written by the loader tests' own writers."""
    from test_data_layouts import write_affectnet, write_ferplus, write_kdef

    if name.startswith("rafdb"):
        return write_rafdb(tmp_path)
    if name.startswith("ferplus"):
        return write_ferplus(tmp_path)
    if name.startswith("affectnet"):
        return write_affectnet(tmp_path)
    if name.startswith("kdef"):
        return write_kdef(tmp_path, subjects=4, sessions="A", size=(40, 40)).parent
    raise AssertionError(f"no fixture for {name}")


@pytest.mark.parametrize("path", [p for p in CONFIGS if not p.stem.startswith("rafdb")], ids=lambda p: p.stem)
def test_every_paper_row_trains_one_step_on_its_fixture(tmp_path, path):
    """`lanfer train configs/<row>.yaml --set data.root=...` runs for every paper row."""
    from lanfer.cli import main

    root = _fixture_for(path.stem, tmp_path)
    extra = ["data.options.folds=2"] if path.stem.startswith("kdef") else []
    args = ["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"]
    for o in SMOKE + [f"data.root={root}"] + extra:
        args += ["--set", o]
    assert main(args) == 0
    assert (tmp_path / "run" / "best.safetensors").is_file() and (tmp_path / "run" / "metrics.json").is_file()
