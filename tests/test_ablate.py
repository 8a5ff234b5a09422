"""`lanfer ablate` on a tiny dataset: one row per setting, the plot, and a second call that trains nothing."""
import json
import os

import pytest
import yaml

from lanfer.analysis.ablate import run_ablation
from lanfer.cli import main
from lanfer.config import ConfigError


def _config(tiny_folder, tmp_path, name="lan_resnet18"):
    cfg = {"model": {"name": name, "num_classes": 3, "head_widths": [8, 8, 8]},
           "data": {"name": "imagefolder", "root": str(tiny_folder), "image_size": 32, "num_workers": 0,
                    "val_split": "test", "test_split": "test", "augment": False},
           "train": {"epochs": 1, "batch_size": 12, "lr": 0.01, "warmup_epochs": 0, "progress": False,
                     "channels_last": False},
           "loss": {"alpha": 0.5}, "guidance": {"seeds": 1, "iters": 5}, "seed": 7}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_ablate_grid_rows_plot_and_reuse(tiny_folder, tmp_path, monkeypatch, capsys):
    config = _config(tiny_folder, tmp_path)
    out = tmp_path / "abl"
    assert main(["ablate", str(config), "--alpha", "0,0.5", "--fusion", "add,concat", "--seeds", "1",
                 "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "ablation.json").read_text())
    assert [(r["fusion"], r["alpha"]) for r in res["rows"]] == [("add", 0.0), ("add", 0.5), ("concat", 0.0),
                                                                  ("concat", 0.5)]
    assert all(r["seeds"] == [7] for r in res["rows"]) and not any(c["reused"] for c in res["cells"])
    assert (out / "alpha_curve.png").read_bytes()[:4] == b"\x89PNG"
    cell = out / "concat_alpha0.5_seed7"
    saved = yaml.safe_load((cell / "config.yaml").read_text())
    assert (saved["model"]["fusion"], saved["loss"]["alpha"], saved["seed"]) == ("concat", 0.5, 7)
    printed = capsys.readouterr().out
    assert "Table 6" in printed and "concat" in printed

    # a second call with a second seed trains only the new cells and reuses the finished ones
    import lanfer.train

    real_train, trained = lanfer.train.train, []
    monkeypatch.setattr(lanfer.train, "train", lambda cfg, out, **kw: trained.append(out) or real_train(cfg, out, **kw))
    before = (cell / "best.safetensors").stat().st_mtime_ns
    res2 = run_ablation(config, [0, 0.5], ["add", "concat"], 2, out, progress=False)
    assert sorted(p.name for p in trained) == ["add_alpha0.5_seed8", "add_alpha0_seed8", "concat_alpha0.5_seed8",
                                                "concat_alpha0_seed8"]
    assert sum(c["reused"] for c in res2["cells"]) == 4 and len(res2["rows"]) == 4
    assert (cell / "best.safetensors").stat().st_mtime_ns == before
    # mean +/- std over the seeds' own metrics.json
    accs = [json.loads((out / f"add_alpha0.5_seed{s}" / "metrics.json").read_text())["accuracy"] for s in (7, 8)]
    row = res2["rows"][1]
    assert row["seeds"] == [7, 8] and row["accuracy"]["mean"] == pytest.approx(sum(accs) / 2)
    assert row["accuracy"]["std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)

    # a fusion table at alpha 0.5 over the same cells (--runs) trains nothing and keeps its own tables
    trained.clear()
    tables = tmp_path / "fusion_table"
    assert main(["ablate", str(config), "--alpha", "0.5", "--fusion", "add,concat", "--seeds", "2", "--runs",
                 str(out), "--out", str(tables), "--no-progress"]) == 0
    assert trained == [] and sorted(p.name for p in tables.iterdir()) == ["ablation.json", "ablation.txt",
                                                                         "alpha_curve.png"]
    res3 = json.loads((tables / "ablation.json").read_text())
    assert [r["accuracy"] for r in res3["rows"]] == [r["accuracy"] for r in res2["rows"] if r["alpha"] == 0.5]
    assert len(json.loads((out / "ablation.json").read_text())["rows"]) == 4  # the first grid's table is untouched


def test_ablate_refuses_a_cell_of_another_config(tiny_folder, tmp_path, capsys):
    """A finished cell is reused only for the config it was trained with: a changed --set is refused with the key,
    while the same files named by another path (relative vs absolute) are the same config."""
    config = _config(tiny_folder, tmp_path)
    out = tmp_path / "abl"
    args = ["ablate", str(config), "--alpha", "0", "--fusion", "add", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert main([*args, "--set", "train.lr=0.05"]) == 2
    err = capsys.readouterr().err
    assert "add_alpha0_seed7" in err and "train.lr: 0.01 in the cell, 0.05 now" in err
    rel = os.path.relpath(tiny_folder)
    assert main([*args, "--set", f"data.root={rel}"]) == 0  # the same folder, spelt differently
    assert main([*args, "--set", f"data.root={tmp_path}"]) == 2
    assert "data.root" in capsys.readouterr().err


def test_ablate_refuses_the_baseline_and_bad_fusions(tiny_folder, tmp_path):
    with pytest.raises(ConfigError, match="lan_resnet18"):
        run_ablation(_config(tiny_folder, tmp_path, "resnet18"), [0.5], ["add"], 1, tmp_path / "o")
    with pytest.raises(ConfigError, match="--fusion"):
        run_ablation(_config(tiny_folder, tmp_path), [0.5], ["sum"], 1, tmp_path / "o")
    with pytest.raises(ConfigError, match="final_test is false"):
        run_ablation(_config(tiny_folder, tmp_path), [0.5], ["add"], 1, tmp_path / "o",
                     overrides=["train.final_test=false"])


def test_ablate_evaluates_every_cell_on_each_subset(tiny_folder, tmp_path, capsys):
    """--subset NAME=LIST: each cell's best weights on the listed test images, the same number `lanfer eval
    --subset` gives, in the rows, the table and the plot; a second call reads the cached evaluation."""
    from lanfer.evaluate import evaluate_checkpoint

    config = _config(tiny_folder, tmp_path)
    listed = tmp_path / "first.txt"  # RAN's list format: <class index>/<image>, classes sorted (happy neutral sad)
    listed.write_text("".join(f"{k}/{c}_{i:03d}.png\n" for k, c in enumerate(["happy", "neutral", "sad"])
                              for i in range(3)))
    out = tmp_path / "abl"
    assert main(["ablate", str(config), "--alpha", "0,1", "--fusion", "add", "--subset", f"first9={listed}",
                 "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "ablation.json").read_text())
    for cell, row in zip(res["cells"], res["rows"]):
        ref = evaluate_checkpoint(f"{cell['run']}/best.safetensors", data=str(config), split="test",
                                  subset=str(listed), progress=False)
        assert ref["n"] == 9 and cell["subsets"]["first9"] == pytest.approx(ref["accuracy"])
        assert row["subsets"]["first9"]["mean"] == pytest.approx(ref["accuracy"])
    printed = capsys.readouterr().out
    assert "first9" in printed and str(listed) in (out / "ablation.txt").read_text()
    cached = out / "add_alpha0_seed7" / "first9" / "metrics.json"
    before = cached.stat().st_mtime_ns
    run_ablation(config, [0, 1], ["add"], 1, out, progress=False, subsets={"first9": str(listed)})
    assert cached.stat().st_mtime_ns == before
    for bad in ("first9", "=x", "a=x --subset a=y"):
        assert main(["ablate", str(config), "--alpha", "0", "--fusion", "add", "--out", str(out),
                     *sum((["--subset", b] for b in bad.split(" --subset ")), [])]) == 2
    assert "expected NAME=FILE" in capsys.readouterr().err

