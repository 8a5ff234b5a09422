"""Numerics that go wrong: a NaN/inf loss stops training at once, names the step and keeps the last good
checkpoint; the guidance fit survives constant features, a single image and fewer than two samples per
cluster without dividing by zero (warnings are errors here)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_imagefolder

import lanfer.train.step as train_module  # the module whose lan_loss the training step calls
from lanfer.checkpoint import load_training_state
from lanfer.cli import main
from lanfer.config import config_from_dict
from lanfer.guidance import fit_guidance
from lanfer.train import NonFiniteLossError, train


def _cfg(root, **train_over):
    return config_from_dict({
        "model": {"name": "resnet18"},
        "data": {"name": "imagefolder", "root": str(root), "image_size": 32, "num_workers": 0, "augment": False,
                 "val_split": "test", "test_split": "test"},
        "train": {"epochs": 3, "batch_size": 8, "lr": 0.01, "warmup_epochs": 0, "progress": False,
                  "channels_last": False, **train_over},
        "seed": 1})


def _poison(monkeypatch, at_call: int, value: float):
    """Make the loss of the ``at_call``-th step (1-based) NaN or inf."""
    real = train_module.lan_loss
    calls = [0]

    def loss(*args, **kwargs):
        calls[0] += 1
        total, ce, bce = real(*args, **kwargs)
        return (total * value if calls[0] == at_call else total), ce, bce

    monkeypatch.setattr(train_module, "lan_loss", loss)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_loss_stops_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, value):
    root = make_imagefolder(tmp_path / "data", classes=("a", "b", "c"), per_class=8, size=32)  # 3 steps/epoch
    # reference: the same run stopped cleanly after epoch 1 (same schedule: epochs=3)
    train(_cfg(root, max_steps=3), out=tmp_path / "ref")
    ref = load_training_state(tmp_path / "ref" / "last.ckpt")
    _poison(monkeypatch, at_call=5, value=value)  # epoch 2, step index 4
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=rf"loss became {value} at step 4 \(epoch 2\).*"
                                                 rf"{out / 'last.ckpt'} \(end of epoch 1\) is kept") as e:
        train(_cfg(root), out=out)
    assert e.value.step == 4
    kept = load_training_state(out / "last.ckpt")
    assert kept["epoch"] == 1 and kept["step"] == 3
    for k, v in ref["model"].items():
        assert torch.equal(v, kept["model"][k]), k


def test_non_finite_loss_on_the_command_line_is_one_line(tmp_path, monkeypatch, capsys):
    root = make_imagefolder(tmp_path / "data", classes=("a", "b"), per_class=4, size=32)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"model: {{name: resnet18}}\ndata: {{name: imagefolder, root: {root}, image_size: 32, "
                   "num_workers: 0, val_split: null}\ntrain: {epochs: 1, batch_size: 4, progress: false}\n")
    _poison(monkeypatch, at_call=1, value=float("nan"))
    assert main(["train", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lanfer train: error: the loss became nan at step 0") and "Traceback" not in err
    assert "no epoch had finished" in err and len(err.splitlines()) == 1


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a 0/0 in numpy would be a RuntimeWarning
@pytest.mark.parametrize("case", ["constant", "zeros", "two identical", "one per cluster"])
def test_guidance_fit_on_degenerate_features_stays_finite(case):
    rng = np.random.default_rng(0)
    f = {"constant": np.full((12, 8, 2, 2), 3.0, np.float32),
         "zeros": np.zeros((12, 8, 2, 2), np.float32),
         "two identical": np.repeat(rng.normal(size=(1, 8, 2, 2)).astype(np.float32), 2, 0),
         "one per cluster": rng.normal(size=(2, 8, 2, 2)).astype(np.float32),
         }[case]
    g = fit_guidance(f, seed=0)
    assert torch.isfinite(g.centers).all() and np.isfinite(g.inertia.numpy()).all()
    assert g.counts.sum(1).tolist() == [len(f)] * 4
    frac = g.attentive_fraction()
    assert torch.isfinite(frac).all() and ((frac >= 0) & (frac <= 0.5)).all()  # the attentive is the smaller
    m = g.assign(torch.tensor(f))
    assert m.shape == (len(f), 1, 2, 2) and set(m.unique().tolist()) <= {0.0, 1.0}
    if case in ("constant", "zeros", "two identical"):
        # one point, repeated: one cluster holds everything, the other is empty and is the attentive one
        assert sorted(g.counts[0].tolist()) == [0, len(f)] and (frac == 0).all()
    if case == "one per cluster":
        assert g.counts.tolist() == [[1, 1]] * 4


def test_guidance_fit_on_features_whose_squares_overflow_is_refused_with_a_message():
    # finite float32 values near its maximum: every squared distance would be inf, every centre NaN
    f = np.full((6, 8, 2, 2), 3e38, np.float32) * np.array([1, -1] * 3, np.float32)[:, None, None, None]
    with pytest.raises(ValueError, match="values so large that their squares overflow"):
        fit_guidance(f, seed=0)


def test_guidance_fit_on_one_image_is_refused_with_a_message():
    with pytest.raises(ValueError, match="needs at least 2 images to form 2 clusters per position; got 1"):
        fit_guidance(np.ones((1, 8, 2, 2), np.float32))


def test_cluster_and_train_on_too_small_a_dataset_say_so_in_one_line(tmp_path, capsys):
    # two class folders, one image in all: the fit has 1 sample; one class folder: no classifier to train
    data = make_imagefolder(tmp_path / "data", classes=("a", "b"), per_class=1, splits=("train",), size=32)
    (data / "train" / "b" / "b_000.png").unlink()
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"model: {{name: lan_resnet18}}\ndata: {{name: imagefolder, root: {data}, image_size: 64, "
                   "num_workers: 0, val_split: null, test_split: train}\n")
    assert main(["cluster", str(cfg), "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "needs at least 2 images" in err
    (data / "train" / "b").rmdir()
    assert main(["train", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "has 1 class ['a']; a classifier needs at least 2" in err
