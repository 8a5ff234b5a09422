"""Class-aware training (issue 22): the logit-adjusted and class-weighted CE, checked by hand and against the
Bayes rule they target, their wiring into training, and ``model.init`` (fine-tuning a trained model file)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lanfer.train.step as step_module
from lanfer.checkpoint import read_weights
from lanfer.config import ConfigError, config_from_dict
from lanfer.losses import class_balance_terms, lan_loss
from lanfer.train import train

from test_train import _cfg


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_class_balance_terms_by_hand():
    weight, offset = class_balance_terms([5, 3, 2], logit_adjust=1.0, class_weight=1.0)  # counts work: normalised
    p = np.array([0.5, 0.3, 0.2])
    # w_c = (1/p_c) / sum_c p_c (1/p_c) = 1 / (3 p_c)
    np.testing.assert_allclose(weight.numpy(), [2 / 3, 10 / 9, 5 / 3], rtol=1e-6)
    assert float((torch.tensor(p) * weight.double()).sum()) == pytest.approx(1.0)
    np.testing.assert_allclose(offset.numpy(), np.log(p), rtol=1e-6)
    w_half, off_half = class_balance_terms(p, logit_adjust=0.5, class_weight=0.5)
    np.testing.assert_allclose(off_half.numpy(), 0.5 * np.log(p), rtol=1e-6)
    ref = p ** -0.5 / (p * p ** -0.5).sum()
    np.testing.assert_allclose(w_half.numpy(), ref, rtol=1e-6)
    assert class_balance_terms(p) == (None, None)


@pytest.mark.parametrize("prior", [[0.5, 0.0, 0.5], [0.5, -0.1, 0.6], [], [0.5, float("nan")]])
def test_class_balance_terms_refuse_a_bad_prior(prior):
    with pytest.raises(ValueError, match="frequency > 0"):
        class_balance_terms(prior, logit_adjust=1.0)


def test_lan_loss_with_offset_and_weights_matches_a_hand_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 3)).astype(np.float32)
    hard = np.array([0, 1, 2, 0, 0, 1])
    weight, offset = class_balance_terms([0.6, 0.3, 0.1], logit_adjust=1.0, class_weight=1.0)
    w, o = weight.numpy().astype(np.float64), offset.numpy().astype(np.float64)
    ls = _log_softmax(logits.astype(np.float64) + o)
    # hard labels: the weighted mean sum_i w_yi * (-log p_i,yi) / sum_i w_yi (PyTorch's and sklearn's convention)
    expected = -(w[hard] * ls[np.arange(6), hard]).sum() / w[hard].sum()
    total, ce, bce = lan_loss(torch.from_numpy(logits), torch.from_numpy(hard), None, None,
                              class_weight=weight, logit_offset=offset)
    assert float(total) == pytest.approx(expected, rel=1e-5) and float(bce) == 0
    # soft labels: the batch mean of -sum_c w_c q_ic log p_ic
    q = rng.dirichlet(np.ones(3), size=6)
    expected_soft = -(q * w * ls).sum(axis=1).mean()
    _, ce_soft, _ = lan_loss(torch.from_numpy(logits), torch.from_numpy(q.astype(np.float32)), None, None,
                             class_weight=weight, logit_offset=offset)
    assert float(ce_soft) == pytest.approx(expected_soft, rel=1e-5)
    # neither term: the plain CE
    _, plain, _ = lan_loss(torch.from_numpy(logits), torch.from_numpy(hard), None, None)
    assert float(plain) == pytest.approx(-_log_softmax(logits.astype(np.float64))[np.arange(6), hard].mean(), rel=1e-5)


@pytest.mark.parametrize("mode", ["plain", "logit_adjust", "class_weight"])
def test_each_loss_learns_its_bayes_threshold(mode):
    """Two classes, x ~ N(-1, 1) (90%) and N(+1, 1) (10%): a logistic model is well specified, so plain CE learns
    the Bayes threshold log(0.9/0.1)/2 = 1.0986 and both balanced forms learn the balanced-error threshold 0."""
    g = torch.Generator().manual_seed(0)
    n0, n1 = 36000, 4000
    x = torch.cat([torch.randn(n0, generator=g) - 1, torch.randn(n1, generator=g) + 1])[:, None]  # (N, 1)
    y = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n1, dtype=torch.long)])
    weight, offset = class_balance_terms([0.9, 0.1], logit_adjust=1.0 * (mode == "logit_adjust"),
                                         class_weight=1.0 * (mode == "class_weight"))
    lin = torch.nn.Linear(1, 2)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = lan_loss(lin(x), y, None, None, class_weight=weight, logit_offset=offset)[0]
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():  # the raw logits' decision threshold: where logit_1 - logit_0 = 0
        a = (lin.weight[1] - lin.weight[0]).item()
        b = (lin.bias[1] - lin.bias[0]).item()
    threshold = -b / a
    expected = math.log(9) / 2 if mode == "plain" else 0.0
    assert threshold == pytest.approx(expected, abs=0.08)


def test_config_refuses_out_of_range_class_terms(tiny_folder):
    for key in ("loss.logit_adjust", "loss.class_weight"):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            _cfg(tiny_folder, **{key: -1.0})


def _imbalance(root):
    """Drop 6 of the 8 training images of 'sad': counts happy 8, neutral 8, sad 2."""
    for p in sorted((root / "train" / "sad").glob("*.png"))[2:]:
        p.unlink()
    return root


def test_training_passes_the_prior_terms_to_the_loss(tiny_folder, tmp_path, monkeypatch):
    seen = []
    real = step_module.lan_loss

    def spy(*args, **kwargs):
        seen.append((kwargs.get("class_weight"), kwargs.get("logit_offset")))
        return real(*args, **kwargs)

    monkeypatch.setattr(step_module, "lan_loss", spy)
    root = _imbalance(tiny_folder)
    train(_cfg(root, **{"train.epochs": 1, "loss.logit_adjust": 1.0, "loss.class_weight": 0.5}), out=tmp_path / "r")
    prior = np.array([8, 8, 2]) / 18  # classes in folder order: happy, neutral, sad
    weight, offset = seen[0]
    np.testing.assert_allclose(offset.numpy(), np.log(prior), rtol=1e-5)
    ref = prior ** -0.5 / (prior * prior ** -0.5).sum()
    np.testing.assert_allclose(weight.numpy(), ref, rtol=1e-5)
    seen.clear()
    train(_cfg(root, **{"train.epochs": 1}), out=tmp_path / "plain")
    assert seen and all(w is None and o is None for w, o in seen)


def test_model_init_starts_from_a_trained_file(tiny_folder, tmp_path):
    first = tmp_path / "first"
    train(_cfg(tiny_folder, **{"train.epochs": 1}), out=first)
    # the learned weights, not BatchNorm's running statistics (a training forward moves those at any rate)
    trained = {k: v for k, v in read_weights(first / "best.safetensors").items()
               if "running_" not in k and "num_batches" not in k}
    assert len(trained) > 40
    # a tiny learning rate: the second run's weights stay where model.init put them ...
    second = tmp_path / "second"
    train(_cfg(tiny_folder, **{"train.epochs": 1, "train.lr": 1e-12, "model.init": str(first / "best.safetensors")}),
          out=second)
    after = read_weights(second / "best.safetensors")
    assert all(torch.allclose(after[k], trained[k], atol=1e-6) for k in trained)
    # ... and without it they are another model (the check above can fail)
    third = tmp_path / "third"
    cfg = _cfg(tiny_folder, **{"train.epochs": 1, "train.lr": 1e-12})
    cfg.seed = 11
    train(cfg, out=third)
    other = read_weights(third / "best.safetensors")
    assert not all(torch.allclose(other[k], trained[k], atol=1e-6) for k in trained)


def test_model_init_refuses_a_missing_file_another_arch_or_other_classes(tiny_folder, tmp_path):
    first = tmp_path / "first"
    train(_cfg(tiny_folder, **{"train.epochs": 1}), out=first)
    best = str(first / "best.safetensors")
    with pytest.raises(ConfigError, match="does not exist"):
        train(_cfg(tiny_folder, **{"model.init": str(tmp_path / "nope.safetensors")}), out=tmp_path / "a")
    with pytest.raises(ConfigError, match="holds a 'lan_resnet18' model"):
        train(_cfg(tiny_folder, **{"model.init": best, "model.name": "resnet18"}), out=tmp_path / "b")
    (tiny_folder / "train" / "sad").rename(tiny_folder / "train" / "angry")
    (tiny_folder / "test" / "sad").rename(tiny_folder / "test" / "angry")
    with pytest.raises(ConfigError, match="classifies"):
        train(_cfg(tiny_folder, **{"model.init": best}), out=tmp_path / "c")
    assert not (tmp_path / "c" / "last.ckpt").exists()


def test_class_aware_table_reads_the_tau_tables(tmp_path, capsys):
    """scripts/class_aware_table.py on two hand-made calibration records: the floor tau is the least adjustment
    with every class at 40%, the accuracy-kept tau the largest with accuracy >= 84%."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("class_aware_table",
                                                  Path(__file__).parents[1] / "scripts" / "class_aware_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)

    def rec(rows):
        return {"tau_table": [{"tau": t, "accuracy": a, "mean_class_accuracy": m, "min_class_recall": lo,
                               "per_class_recall": {"disgust": d, "contempt": c}} for t, a, m, lo, d, c in rows]}

    rows = [(-0.2, 0.86, 0.60, 0.10, 0.20, 0.10), (0.0, 0.85, 0.65, 0.30, 0.40, 0.30),
            (0.2, 0.83, 0.70, 0.45, 0.50, 0.45), (0.4, 0.80, 0.72, 0.50, 0.60, 0.50)]
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "val_calibration.json").write_text(json.dumps(rec(rows)))
    (tmp_path / "v" / "metrics.jsonl").write_text(json.dumps({"images_per_s": 41.6}) + "\n")
    got = table.row("v", rec(rows), tmp_path / "v" / "metrics.jsonl")
    assert got[:5] == ["v", "85.00", "65.00", "40.00", "30.00"]  # tau 0: the raw model
    assert got[5:8] == ["0.2", "83.00", "70.00"]  # the least tau with every class >= 40%
    assert got[8] == "72.00 (tau 0.4)"
    assert got[9:11] == ["0", "65.00 / 30.00 / 40.00 / 30.00"]  # the largest tau keeping accuracy >= 84%
    assert got[11] == "42"
    table.main([str(tmp_path), "--markdown"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| variant |") and out[2].startswith("| v | 85.00 |")
    with pytest.raises(SystemExit, match="no \\*/val_calibration.json"):
        table.main([str(tmp_path / "v")])
