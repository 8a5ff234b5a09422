"""Progress output: tqdm bars in a terminal, one line per stage (and no carriage returns) in a log file."""
import subprocess
import sys

import lanfer.progress
from lanfer.cli import main
from lanfer.progress import QuietBar, progress_bar


def test_a_bar_in_a_terminal_and_one_line_elsewhere(monkeypatch, capsys):
    monkeypatch.setattr(lanfer.progress, "interactive", lambda: False)
    bar = progress_bar(range(5), desc="stage", unit="img")
    assert isinstance(bar, QuietBar) and bar.disable
    assert list(bar) == [0, 1, 2, 3, 4]
    bar.close()  # closing twice prints once
    out = capsys.readouterr().out
    assert out.startswith("stage: 5 img in ") and out.count("\n") == 1
    # by hand, as the guidance fit and prepare use it
    with progress_bar(total=10, desc="by hand", unit="pass") as bar:
        bar.update(3)
        bar.set_postfix(active=2)
        bar.set_description_str("renamed", refresh=False)
    assert capsys.readouterr().out.startswith("by hand: 3 pass in ")
    # transient bars (the epoch bar, whose loop prints its own line) and disabled ones print nothing
    assert list(progress_bar(range(3), desc="epoch 1/1", leave=False)) == [0, 1, 2]
    assert list(progress_bar(range(3), desc="off", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().out == ""

    monkeypatch.setattr(lanfer.progress, "interactive", lambda: True)
    from tqdm.auto import tqdm

    bar = progress_bar(range(3), desc="terminal", file=sys.stderr)
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()
    assert isinstance(progress_bar(range(3), enabled=False), QuietBar)


def test_captured_output_is_not_interactive(capsys):
    assert not lanfer.progress.interactive()  # pytest's capture is not a terminal


def test_a_piped_command_prints_lines_not_bar_frames(tmp_path):
    """`lanfer synth > log 2>&1`: one summary line, no carriage-return frames."""
    r = subprocess.run([sys.executable, "-m", "lanfer.cli", "synth", "--out", str(tmp_path / "s"), "--identities", "1",
                        "--sessions", "1", "--size", "32", "--workers", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stdout + r.stderr
    assert "lanfer synth: 35 img in " in r.stdout  # 1 person x 1 session x 7 expressions x 5 views



def test_training_in_a_log_prints_one_line_per_stage_and_epoch(tiny_folder, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
model: {{name: lan_resnet18, num_classes: 3, head_widths: [16, 8, 4]}}
data: {{name: imagefolder, root: {tiny_folder}, image_size: 64, num_workers: 0}}
train: {{epochs: 1, batch_size: 8, lr: 0.01, channels_last: false}}
guidance: {{seeds: 1}}
""")
    assert main(["train", str(cfg), "--out", str(tmp_path / "run")]) == 0  # progress on (the default)
    cap = capsys.readouterr()
    assert "\r" not in cap.out + cap.err
    lines = cap.out.splitlines()
    assert sum(ln.startswith("extracting F_o: ") for ln in lines) == 1
    assert sum(ln.startswith("epoch ") for ln in lines) == 1  # the loop's own line; the bar adds none


def test_a_quiet_bar_iterates_arrays_and_tensors(capsys):
    """Arrays have no single truth value: the bar must not ask an iterable whether it is empty."""
    import numpy as np
    import torch

    picks = np.array([4, 0, 7])
    assert list(QuietBar(picks, desc="picks")) == [4, 0, 7]
    assert [int(v) for v in QuietBar(torch.tensor([1, 2]), summary=False)] == [1, 2]
    assert list(QuietBar(np.array([]), summary=False)) == []
    assert list(QuietBar(None, summary=False)) == []
