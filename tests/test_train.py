import json

import numpy as np
import pytest
import torch

from lanfer.checkpoint import CheckpointError
from lanfer.model import load_model
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
        d.setdefault(sec, {})[key] = v
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
    assert info.classes == ["happy", "neutral", "sad"] and model.head is not None


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_is_exact(tiny_folder, tmp_path, optimizer):
    opt = {"train.optimizer": optimizer, "train.lr": 0.01 if optimizer == "sgd" else 1e-3}
    full = tmp_path / "full"
    train(_cfg(tiny_folder, **{"train.epochs": 3}, **opt), out=full)
    part = tmp_path / "part"
    train(_cfg(tiny_folder, **{"train.epochs": 3, "train.max_steps": 2 * 3}, **opt), out=part)  # 3 steps/epoch: stop after 2 epochs
    assert len((part / "metrics.jsonl").read_text().splitlines()) == 2
    train(_cfg(tiny_folder, **{"train.epochs": 3}, **opt), out=part, resume=True)
    a = [json.loads(x) for x in (full / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == 3
    assert np.isclose(a[-1]["train_loss"], b[-1]["train_loss"], rtol=1e-5, atol=1e-6)
    ma, _ = load_model(full / "best.safetensors")
    mb, _ = load_model(part / "best.safetensors")
    for (k, va), vb in zip(ma.state_dict().items(), mb.state_dict().values()):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), k


def test_adamw_first_step_matches_hand_computation(tiny_folder):
    """AdamW's first step moves each weight by lr * g / (|g| + eps) plus decoupled decay lr * wd * w."""
    from lanfer.train import build_optimizer

    cfg = _cfg(tiny_folder, **{"train.optimizer": "adamw", "train.lr": 1e-3, "train.weight_decay": 0.1})
    lin = torch.nn.Linear(4, 2)
    w0 = lin.weight.detach().clone()
    opt = build_optimizer(lin, cfg)
    lin(torch.randn(5, 4)).pow(2).sum().backward()
    g = lin.weight.grad.clone()
    opt.step()
    expected = w0 * (1 - 1e-3 * 0.1) - 1e-3 * g / (g.abs() + 1e-8)
    assert torch.allclose(lin.weight.detach(), expected, atol=1e-7)
    assert isinstance(build_optimizer(lin, _cfg(tiny_folder)), torch.optim.SGD)
    with pytest.raises(ConfigError, match="train.optimizer='adam' is not one of sgd, adamw"):
        _cfg(tiny_folder, **{"train.optimizer": "adam"})


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


def test_unset_num_classes_is_taken_from_the_dataset(tiny_folder, tmp_path):
    import yaml

    out = tmp_path / "r"
    train(_cfg(tiny_folder, **{"model.num_classes": None, "model.name": "resnet18", "train.epochs": 1}), out=out)
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["num_classes"] == 3
    model, info = load_model(out / "best.safetensors")
    assert info.num_classes == 3 and model.fc.out_features == 3
    with pytest.raises(ConfigError, match=r"the dataset has 3 classes \['happy', 'neutral', 'sad'\] but "
                                          r"model.num_classes=7"):
        train(_cfg(tiny_folder, **{"model.num_classes": 7}), out=tmp_path / "explicit")


def test_skipped_bad_images_are_named_at_the_end_of_training(tiny_folder, tmp_path, capsys):
    for path in (tiny_folder / "train" / "sad" / "sad_001.png", tiny_folder / "test" / "happy" / "happy_002.png"):
        path.write_bytes(b"not a png")
    cfg = _cfg(tiny_folder, **{"model.name": "resnet18", "train.epochs": 2, "data.skip_bad": True})
    with pytest.warns(UserWarning, match="skipping bad image"):
        train(cfg, out=tmp_path / "r")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("warning: 2 images could not be decoded")  # each file once, over 2 epochs
    assert "sad_001.png" in last and "happy_002.png" in last


def _kdef_fixture(root, people=4):
    """A tiny set in KDEF naming (square crops, so the reader does not crop): 7 expressions x 5 views."""
    from PIL import Image
    rng = np.random.default_rng(0)
    exprs = ["AF", "AN", "DI", "HA", "NE", "SA", "SU"]
    for i in range(people):
        subj = f"A{'FM'[i % 2]}{i // 2 + 1:02d}"
        d = root / "KDEF" / subj
        d.mkdir(parents=True)
        for k, e in enumerate(exprs):
            for v in ("FL", "HL", "S", "HR", "FR"):
                img = rng.integers(0, 50, (40, 40, 3)).astype(np.uint8)
                img[5 * k:5 * k + 5, :, :] = 220
                Image.fromarray(img).save(d / f"{subj}{e}{v}.JPG")
    return root


def test_cross_validation_aggregates_folds(tmp_path):
    from lanfer.train import cross_validate
    root = _kdef_fixture(tmp_path / "kdef")
    cfg = config_from_dict({
        "model": {"name": "resnet18", "num_classes": 7},
        "data": {"name": "kdef", "root": str(root), "image_size": 32, "num_workers": 0, "augment": False},
        "train": {"epochs": 1, "batch_size": 16, "lr": 0.01, "progress": False, "channels_last": False},
    })
    s = cross_validate(cfg, folds=2, out=tmp_path / "cv")
    per_fold = [json.loads((tmp_path / "cv" / f"fold{k}" / "metrics.json").read_text()) for k in range(2)]
    assert s["accuracy_per_fold"] == [m["accuracy"] for m in per_fold]
    assert np.isclose(s["accuracy_mean"], np.mean(s["accuracy_per_fold"]))
    assert sum(m["n"] for m in per_fold) == 4 * 7 * 5  # every image is tested exactly once
    assert set(s["by"]["view"]) == {"FL", "HL", "S", "HR", "FR"}
    again = cross_validate(cfg, folds=2, out=tmp_path / "cv")  # finished folds are reused
    assert again["accuracy_per_fold"] == s["accuracy_per_fold"]


def test_final_test_false_never_scores_the_test_split(tiny_folder, tmp_path, monkeypatch):
    """A selection run (train.final_test=false): no test evaluation at all, but a metrics.json that marks the run
    finished with its best validation score (the FERPlus scripts skip finished runs by that file)."""
    import lanfer.train.run as run_module

    def no_test(*args, **kwargs):
        raise AssertionError("the test split was evaluated")

    monkeypatch.setattr(run_module, "evaluate", no_test)
    out = tmp_path / "sel"
    metrics = train(_cfg(tiny_folder, **{"train.epochs": 1, "train.final_test": False}), out=out)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics and "accuracy" not in saved and saved["split"] is None
    log = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert saved["best_val_accuracy"] == pytest.approx(log[-1]["best"])
    assert (out / "best.safetensors").is_file()
    # shipping such a run records its validation score and no test score (not an empty one)
    from lanfer.checkpoint import read_model_info
    from lanfer.ship import ship

    shipped = read_model_info(ship(out, tmp_path / "sel.safetensors"))
    assert "test" not in shipped.metrics and shipped.metrics["val"]["accuracy"] == pytest.approx(log[-1]["best"])
    # the default still scores it (the spy above would fail it)
    with pytest.raises(AssertionError, match="test split was evaluated"):
        train(_cfg(tiny_folder, **{"train.epochs": 1}), out=tmp_path / "default")
