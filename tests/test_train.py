import json

import numpy as np
import pytest
import torch

from lanfer.checkpoint import CheckpointError, load_model
from lanfer.config import ConfigError, config_from_dict
from lanfer.train import train


def _cfg(root, **over):
    d = {
        "model": {"name": "lan_resnet18", "num_classes": 3, "head_widths": [32, 16, 8]},
        "data": {"name": "imagefolder", "root": str(root), "image_size": 64, "num_workers": 0,
                 "val_split": "test", "test_split": "test", "augment": False},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.01, "warmup_epochs": 0, "progress": False,
                  "channels_last": False},
        "guidance": {"seeds": 1},
        "seed": 3,
    }
    for k, v in over.items():
        sec, key = k.split(".")
        d[sec][key] = v
    return config_from_dict(d)


def test_train_writes_run_dir_and_loss_goes_down(tiny_folder, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(tiny_folder, **{"train.epochs": 6, "train.lr": 0.02})
    metrics = train(cfg, out=out)
    for f in ("config.yaml", "metrics.jsonl", "best.safetensors", "last.ckpt", "metrics.json",
              "guidance.safetensors"):
        assert (out / f).is_file(), f
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(log) == 6
    assert log[-1]["train_ce"] < log[0]["train_ce"]
    assert log[0]["train_bce"] > 0  # the guidance term is active
    assert set(metrics) >= {"accuracy", "mean_class_accuracy", "confusion_matrix", "per_class_recall"}
    model, info = load_model(out / "best.safetensors")
    assert info["classes"] == ["happy", "neutral", "sad"] and model.head is not None


def test_resume_is_exact(tiny_folder, tmp_path):
    full = tmp_path / "full"
    train(_cfg(tiny_folder, **{"train.epochs": 3}), out=full)
    part = tmp_path / "part"
    train(_cfg(tiny_folder, **{"train.epochs": 3, "train.max_steps": 2 * 3}), out=part)  # 3 steps/epoch: stop after 2 epochs
    assert len((part / "metrics.jsonl").read_text().splitlines()) == 2
    train(_cfg(tiny_folder, **{"train.epochs": 3}), out=part, resume=True)
    a = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == 3
    assert np.isclose(a[-1]["train_loss"], b[-1]["train_loss"], rtol=1e-5, atol=1e-6)
    ma, _ = load_model(full / "best.safetensors")
    mb, _ = load_model(part / "best.safetensors")
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), k


def test_existing_run_is_not_overwritten_and_bad_resume(tiny_folder, tmp_path):
    out = tmp_path / "run"
    cfg = _cfg(tiny_folder, **{"train.epochs": 1, "model.name": "resnet18"})
    train(cfg, out=out)
    before = (out / "last.ckpt").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        train(cfg, out=out)
    assert (out / "last.ckpt").read_bytes() == before
    with pytest.raises(CheckpointError, match="no .*last.ckpt"):
        train(cfg, out=tmp_path / "fresh", resume=True)


def test_class_count_mismatch_is_explained(tiny_folder, tmp_path):
    with pytest.raises(ConfigError, match="model.num_classes=3"):
        train(_cfg(tiny_folder, **{"model.num_classes": 7}), out=tmp_path / "r")
