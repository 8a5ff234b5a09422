"""`lanfer demo --quick` end to end (the acceptance smoke test for the main job)."""
import json

import pytest

from lanfer.cli import main
from lanfer.config import ConfigError
from lanfer.data.kdef import KDEF_VIEWS as VIEW_ORDER  # view codes, left to right
from lanfer.demo import DemoConfig, run_demo


def test_quick_demo_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["models"]) == {"resnet18", "lan_resnet18", "pixels"}  # pixels: the linear floor
    for m in summary["models"].values():
        assert set(m["by_view"]) == set(VIEW_ORDER)
        assert m["accuracy"]["n"] == 2 and 0 <= m["accuracy"]["mean"] <= 1
        assert sum(map(sum, m["confusion_matrix"])) == 4 * 2 * 7 * 5  # every image tested once over the folds
    html = (out / "report.html").read_text()
    assert "Synthetic data" in html and "<table>" in html and "Linear, raw pixels" in html
    assert html.count("data:image/png;base64,") >= 4  # 2 confusion matrices, curves, attention grid
    assert (out / "lan_resnet18_fold0" / "guidance.safetensors").is_file()
    printed = capsys.readouterr().out
    assert "LAN" in printed and "FL (-90)" in printed and "Linear, raw pixels" in printed
    pix = json.loads((out / "pixels_fold1.json").read_text())
    assert summary["models"]["pixels"]["folds"][1]["accuracy"] == pix["accuracy"]

    # rerun without --resume refuses to touch the folder; with --resume every stage is reused
    with pytest.raises(ConfigError, match="--resume"):
        run_demo(DemoConfig.quick_preset(out=str(out)))
    before = (out / "lan_resnet18_fold1" / "best.safetensors").stat().st_mtime_ns
    pix_before = (out / "pixels_fold1.json").stat().st_mtime_ns
    again = run_demo(DemoConfig.quick_preset(out=str(out), resume=True))
    assert (out / "lan_resnet18_fold1" / "best.safetensors").stat().st_mtime_ns == before
    assert (out / "pixels_fold1.json").stat().st_mtime_ns == pix_before
    assert again["models"]["lan_resnet18"]["accuracy"] == summary["models"]["lan_resnet18"]["accuracy"]


def test_demo_bad_sizes_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="at least 2 folds"):
        run_demo(DemoConfig.quick_preset(out=str(tmp_path / "a"), folds=1))
    with pytest.raises(ConfigError, match="fewer than --folds"):
        run_demo(DemoConfig.quick_preset(out=str(tmp_path / "b"), identities=2, folds=3))


def test_demo_flags_reach_the_config(monkeypatch, tmp_path):
    import lanfer.demo

    seen = {}
    monkeypatch.setattr(lanfer.demo, "run_demo", lambda cfg: seen.setdefault("cfg", cfg))
    assert main(["demo", "--out", str(tmp_path / "d"), "--optimizer", "sgd", "--lr", "0.03", "--pretrain-lr",
                 "0.02", "--augment", "none", "--identities", "12", "--epochs", "3", "--workers", "0"]) == 0
    cfg = seen["cfg"]
    assert (cfg.optimizer, cfg.lr, cfg.pretrain_lr, cfg.augment, cfg.identities, cfg.epochs, cfg.num_workers) == \
        ("sgd", 0.03, 0.02, "none", 12, 3, 0)
    assert (cfg.batch_size, cfg.folds, cfg.quick) == (DemoConfig().batch_size, DemoConfig().folds, False)
    assert DemoConfig().optimizer == "adamw" and DemoConfig().augment == "flip"  # the measured defaults
    # fp32 unless asked: train.amp's auto would pick bf16 on AMX CPUs only, and the README's table would then
    # depend on the CPU model
    assert cfg.amp == "none" and lanfer.demo._train_cfg(cfg).train.amp == "none"
    seen.clear()
    assert main(["demo", "--out", str(tmp_path / "e"), "--amp", "bf16"]) == 0
    assert lanfer.demo._train_cfg(seen["cfg"]).train.amp == "bf16"
    with pytest.raises(SystemExit):
        main(["demo", "--augment", "mirror"])
