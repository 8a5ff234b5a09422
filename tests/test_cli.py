import json
import subprocess
import sys

import pytest

from lanfer.cli import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("demo", "train", "eval", "cluster", "synth", "prepare", "predict", "export", "pose-subsets"):
        assert cmd in out, cmd


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "lanfer.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "lanfer" in r.stdout


def test_user_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  name: imagefolder\n  root: %s\n" % (tmp_path / "nowhere"))
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", str(cfg), "--set", "train.epochs=many"]) == 2
    assert "train.epochs" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nope.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_eval_cluster_from_the_cli(tiny_folder, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
model: {{name: lan_resnet18, num_classes: 3, head_widths: [16, 8, 4]}}
data: {{name: imagefolder, root: {tiny_folder}, image_size: 64, num_workers: 0}}
train: {{epochs: 1, batch_size: 8, lr: 0.01, progress: false, channels_last: false}}
guidance: {{seeds: 2}}
""")
    run = tmp_path / "run"
    assert main(["train", str(cfg), "--out", str(run), "--set", "seed=5", "--no-progress"]) == 0
    assert "seed: 5" in (run / "config.yaml").read_text()
    assert main(["eval", str(run / "best.safetensors"), "--data", str(cfg), "--split", "test",
                 "--out", str(tmp_path / "ev"), "--no-progress"]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["n"] == 24 and m["dataset"]["split"] == "test"
    assert main(["cluster", str(cfg), "--out", str(tmp_path / "g")]) == 0
    from lanfer import Guidance
    g = Guidance.load(tmp_path / "g" / "guidance.safetensors")
    assert g.centers.shape == (4, 2, 512)
    assert "attentive" in (tmp_path / "g" / "guidance_summary.txt").read_text().lower()


def test_configs_lists_the_packaged_configs(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("kdef_lan "))
    assert "KDEF, paper Table 1" in line  # the config's first comment line
    assert "rafdb_resnet18" in out


def _configs_raises(monkeypatch, error):
    """Make `lanfer configs` raise ``error`` (the command imports configs_text when it runs)."""
    import lanfer.config

    def boom():
        raise error
    monkeypatch.setattr(lanfer.config, "configs_text", boom)


def test_a_missing_optional_dependency_is_a_user_error(monkeypatch, capsys):
    _configs_raises(monkeypatch, ModuleNotFoundError("No module named 'onnxruntime'", name="onnxruntime"))
    assert main(["configs"]) == 2
    err = capsys.readouterr().err
    assert "No module named 'onnxruntime'" in err and 'pip install "lanfer[onnx]"' in err
    assert "Traceback" not in err
    # lanfer's own re-raise with an install hint (`raise ImportError(...) from e`) keeps its words
    hinted = ImportError("reading videos needs opencv: pip install 'lanfer[faces]'")
    hinted.__cause__ = ModuleNotFoundError("No module named 'cv2'", name="cv2")
    _configs_raises(monkeypatch, hinted)
    assert main(["configs"]) == 2
    assert capsys.readouterr().err.strip() == "lanfer configs: error: reading videos needs opencv: pip install 'lanfer[faces]'"


def test_an_import_error_inside_lanfer_is_a_bug_with_a_traceback(monkeypatch):
    bug = ImportError("cannot import name 'Guidance' from 'lanfer.guidance'", name="lanfer.guidance")
    _configs_raises(monkeypatch, bug)
    with pytest.raises(ImportError) as e:
        main(["configs"])
    assert e.value is bug
    _configs_raises(monkeypatch, ModuleNotFoundError("No module named 'lanfer.nothing'", name="lanfer.nothing"))
    with pytest.raises(ModuleNotFoundError):
        main(["configs"])


def test_ship_refuses_a_malformed_eval_before_reading_anything(tmp_path, capsys):
    for bad in ("pose30", "=m.json", "a=x.json --eval a=y.json"):
        args = sum((["--eval", b] for b in bad.split(" --eval ")), [])
        assert main(["ship", str(tmp_path / "run"), "--out", str(tmp_path / "m.safetensors"), *args]) == 2
    err = capsys.readouterr().err
    assert "--eval 'pose30': expected NAME=FILE, e.g. pose30=runs/e30/metrics.json" in err
    assert "the name 'a' is given twice" in err and not (tmp_path / "m.safetensors").exists()
