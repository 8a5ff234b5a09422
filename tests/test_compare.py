"""Paired comparison: McNemar's exact test against scipy, the bootstrap CI against a naive resampling,
refusal of unpaired runs, and `lanfer compare` end to end on two tiny trained runs."""
import json

import numpy as np
import pytest

from lanfer.analysis.compare import (CompareError, RunPredictions, bootstrap_diff, compare_groups, mcnemar_exact)
from lanfer.cli import main
from lanfer.evaluate import read_predictions, summarize, write_predictions


def _pair(n, only_a, only_b, both, seed=0):
    """Correctness vectors of n images with the given discordant and concordant counts, shuffled."""
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:only_a] = True
    b[only_a:only_a + only_b] = True
    a[only_a + only_b:only_a + only_b + both] = b[only_a + only_b:only_a + only_b + both] = True
    perm = np.random.default_rng(seed).permutation(n)
    return a[perm], b[perm]


@pytest.mark.parametrize("only_a,only_b,both", [(12, 3, 50), (40, 41, 500), (0, 7, 10), (5, 5, 0), (130, 95, 2500)])
def test_mcnemar_matches_scipy_binomtest(only_a, only_b, both):
    scipy_stats = pytest.importorskip("scipy.stats")
    a, b = _pair(only_a + only_b + both + 9, only_a, only_b, both)
    res = mcnemar_exact(a, b)
    assert (res["only_a"], res["only_b"]) == (only_a, only_b)
    ref = scipy_stats.binomtest(only_a, only_a + only_b, 0.5, alternative="two-sided").pvalue
    assert res["p_value"] == pytest.approx(ref, rel=1e-9, abs=1e-300)


def test_mcnemar_by_hand_and_no_discordant_pairs():
    a, b = _pair(20, 3, 0, 10)  # b=3, c=0: p = 2 * (1/2)^3
    assert mcnemar_exact(a, b)["p_value"] == pytest.approx(0.25)
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_bootstrap_ci_matches_naive_resampling():
    a, b = _pair(400, 30, 15, 300, seed=1)
    fast = bootstrap_diff(a, b, n_boot=4000, seed=0)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 400, size=(4000, 400))
    naive = (a[idx].mean(1) - b[idx].mean(1))
    assert fast["diff"] == pytest.approx(a.mean() - b.mean())
    lo, hi = np.quantile(naive, [0.025, 0.975])
    assert fast["ci_low"] == pytest.approx(lo, abs=0.006) and fast["ci_high"] == pytest.approx(hi, abs=0.006)
    assert fast["ci_low"] < fast["diff"] < fast["ci_high"]


def _run(name, paths, targets, preds, metas=None):
    return RunPredictions(name, list(paths), np.array(targets), np.array(preds), ["x", "y"], metas or [{}] * len(paths))


def test_groups_mean_std_per_class_and_refusals():
    paths = [f"img{i}.png" for i in range(6)]
    t = [0, 0, 0, 1, 1, 1]
    metas = [{"view": v} for v in "LLLRRR"]
    a = [_run("a0", paths, t, [0, 0, 0, 1, 1, 0], metas), _run("a1", paths, t, [0, 0, 1, 1, 1, 1], metas)]
    b = [_run("b0", paths, t, [1, 0, 0, 0, 1, 0], metas), _run("b1", paths, t, [0, 1, 1, 0, 1, 1], metas)]
    res = compare_groups(a, b, {"first3": set(paths[:3])})
    rows = {r["subset"]: r for r in res["rows"]}
    assert rows["all"]["a_per_seed"] == pytest.approx([5 / 6, 5 / 6]) and rows["all"]["b"]["mean"] == pytest.approx(0.5)
    assert rows["all"]["b"]["std"] == pytest.approx(0.0)
    assert rows["first3"]["n"] == 3 and rows["view=R"]["n"] == 3 and rows["class=y"]["n"] == 3
    assert rows["class=y"]["a_per_seed"] == pytest.approx([2 / 3, 1.0])
    assert [p["a"] + p["b"] for p in rows["all"]["pairs"]] == ["a0b0", "a1b1"]
    with pytest.raises(CompareError, match="different image lists"):
        compare_groups([a[0]], [_run("c", paths[:5], t[:5], t[:5])])
    with pytest.raises(CompareError, match="true label"):
        compare_groups([a[0]], [_run("c", paths, [1] + t[1:], t)])


def test_predictions_file_round_trip(tmp_path):
    metas = [{"path": "a.png", "view": "S", "yaw": 0}, {"path": "b.png", "view": "HL", "yaw": -45}]
    f = write_predictions(tmp_path / "p.csv", [0, 1], [1, 1], [[0.2, 0.8], [0.1, 0.9]], metas, ["neutral", "happy"])
    p = read_predictions(f)
    assert p["paths"] == ["a.png", "b.png"] and p["targets"].tolist() == [0, 1] and p["preds"].tolist() == [1, 1]
    assert p["metas"][1]["view"] == "HL" and p["probs"][0, 1] == pytest.approx(0.8)
    assert summarize(p["targets"], p["preds"], p["classes"])["accuracy"] == 0.5


def test_compare_cli_on_two_tiny_runs(tiny_folder, tmp_path, capsys):
    from lanfer.train import train
    from test_train import _cfg

    runs = []
    for name, arch in (("lan", "lan_resnet18"), ("base", "resnet18")):
        train(_cfg(tiny_folder, **{"model.name": arch, "train.epochs": 1}), out=tmp_path / name)
        runs.append(str(tmp_path / name))
    out = tmp_path / "cmp"
    assert main(["compare", *runs, "--out", str(out), "--bootstrap", "500"]) == 0
    res = json.loads((out / "compare.json").read_text())
    assert res["n_images"] == 24 and (out / "predictions" / "lan.test.csv").is_file()
    # the cached predictions give the run's own test accuracy
    metrics = json.loads((tmp_path / "lan" / "metrics.json").read_text())
    assert res["rows"][0]["a"]["mean"] == pytest.approx(metrics["accuracy"])
    assert "McNemar" in capsys.readouterr().out
    assert main(["compare", runs[0], "--out", str(out)]) == 2  # one run: a clear error, no traceback


def test_eval_data_takes_a_packaged_config_name():
    from lanfer.config import load_config
    from lanfer.evaluate import data_config_for
    from lanfer.info import ModelInfo

    info = ModelInfo(arch="resnet18", classes=["a", "b"], data={"name": "ferplus", "root": "/x"})
    packaged = load_config("rafdb_lan").data
    by_name = data_config_for(info, "rafdb_lan").data  # a bare config name: its data section, as lanfer train reads it
    assert (by_name.name, by_name.options, by_name.subset) == (packaged.name, packaged.options, packaged.subset)
    assert data_config_for(info, "rafdb", root="/r").data.root == "/r"  # a dataset name stays a dataset name
    assert data_config_for(info, "rafdb").data.options == {}
    assert data_config_for(info, None).data.name == "ferplus"  # none: the model's recorded dataset


def test_eval_set_overrides_win_over_the_recorded_dataset():
    """`lanfer eval/calibrate MODEL --set data.options.label_mode=majority` on a model trained on vote distributions:
    the record supplies the dataset, the user's --set keys win (they were silently dropped once)."""
    from lanfer.evaluate import data_config_for
    from lanfer.info import ModelInfo

    info = ModelInfo(arch="resnet18", classes=["a", "b"],
                     data={"name": "ferplus", "root": "/x", "options": {"label_mode": "votes", "votes": "label_csv"}})
    assert data_config_for(info, None).data.options == {"label_mode": "votes", "votes": "label_csv"}
    d = data_config_for(info, None, overrides=["data.options.label_mode=majority"]).data
    assert (d.name, d.root, d.options) == ("ferplus", "/x", {"label_mode": "majority", "votes": "label_csv"})
    assert data_config_for(info, None, overrides=["data.root=/y"]).data.root == "/y"
    assert data_config_for(info, None, root="/z", overrides=["data.root=/y"]).data.root == "/z"  # --root is last
