"""Crashes: ``lanfer train`` and ``lanfer prepare`` killed with SIGKILL (no handler runs, no temporary file is
cleaned) at a random step and inside a checkpoint write; then ``--resume`` (or a rerun of prepare). The
reference is the same command run without interruption, in the same kind of child process (CPU, one thread,
same seed): the final weights must be bit-identical and the metrics equal.

The child is ``python -c CHILD``: the CLI with two test hooks patched in (nothing in lanfer knows about them):
``LANFER_TEST_STEPS`` prints ``STEP k`` before each optimisation step, ``LANFER_TEST_SLOW_SAVE=name`` prints
``SAVING`` once the temporary file of a checkpoint (``torch.save``) or a prepared labels file is written but
before it is renamed into place, and at the ``LANFER_TEST_SLOW_AT``-th such write sleeps, so the parent can
kill the child inside that window.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_imagefolder, release_if_passed
from PIL import Image
from safetensors.torch import load_file

import lanfer
from lanfer.checkpoint import load_training_state
from lanfer.data import DataError, build_dataset
from lanfer.data.prepare import prepare

CHILD = r"""
import os, sys, time
import torch
import lanfer.train.step as T  # the module whose lan_loss the training step calls
import lanfer.data.prepare as P
if os.environ.get("LANFER_TEST_STEPS"):
    real_loss, calls = T.lan_loss, [0]
    def loss(*a, **k):
        calls[0] += 1
        print(f"STEP {calls[0]}", flush=True)
        return real_loss(*a, **k)
    T.lan_loss = loss
slow, saves = os.environ.get("LANFER_TEST_SLOW_SAVE", ""), [0]
at = int(os.environ.get("LANFER_TEST_SLOW_AT", "1"))
def wrote():
    saves[0] += 1
    print("SAVING", flush=True)
    if saves[0] == at:
        time.sleep(60)
if slow == "checkpoint":
    real_save = torch.save
    def save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        wrote()
    torch.save = save
elif slow == "labels":
    real_npy = P._save_npy
    def save_npy(path, array):
        real_npy(path, array)
        wrote()
    P._save_npy = save_npy
from lanfer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": str(Path(lanfer.__file__).parents[1]), "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _run(args, **env) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], env=_env(**env), capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return out


def _kill_when(args, line: str, occurrence: int = 1, **env) -> None:
    """Start the child and SIGKILL it when it has printed ``line`` for the ``occurrence``-th time."""
    p = subprocess.Popen([sys.executable, "-c", CHILD, *map(str, args)], env=_env(**env), stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    seen = 0
    try:
        for text in p.stdout:
            if text.strip() == line:
                seen += 1
                if seen == occurrence:
                    os.kill(p.pid, signal.SIGKILL)
                    break
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert seen == occurrence, f"the child ended before printing {line!r} {occurrence} times"
    assert p.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def setup(tmp_path_factory, request):
    failed = request.session.testsfailed
    root = tmp_path_factory.mktemp("crash")
    data = make_imagefolder(root / "data", classes=("a", "b", "c"), per_class=8, size=32)  # 24 train: 3 steps/epoch
    cfg = root / "cfg.yaml"
    cfg.write_text(f"model: {{name: resnet18}}\ndata: {{name: imagefolder, root: {data}, image_size: 32, "
                   "num_workers: 0, augment: flip, val_split: test, test_split: test}\n"
                   "train: {epochs: 3, batch_size: 8, lr: 0.01, warmup_epochs: 0.5, progress: false, "
                   "channels_last: false}\nseed: 5\n")
    _run(["train", cfg, "--out", root / "reference"])
    yield root, cfg
    release_if_passed(request, root, failed)


def _records(run: Path) -> dict[int, dict]:
    """The metrics.jsonl record of each epoch, without the timing; an epoch logged twice (killed between its line
    and its checkpoint, then resumed) fails."""
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        r.pop("images_per_s", None)
        assert r["epoch"] not in out, f"{run / 'metrics.jsonl'} logs epoch {r['epoch']} twice"
        out[r["epoch"]] = r
    return out


def _assert_same_run(run: Path, reference: Path) -> None:
    a, b = load_file(str(run / "best.safetensors")), load_file(str(reference / "best.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-identical, not merely close
    ma, mb = (json.loads((r / "metrics.json").read_text()) for r in (run, reference))
    ma.pop("run"), mb.pop("run")
    assert ma == mb
    assert _records(run) == _records(reference)
    state = load_training_state(run / "last.ckpt")
    assert state["epoch"] == 3 and state["step"] == 9


def test_training_killed_at_a_random_step_resumes_to_the_same_result(setup):
    root, cfg = setup
    k = random.randint(4, 9)  # a step after the first checkpoint (end of epoch 1 = step 3)
    out = root / f"killed_step_{k}"
    _kill_when(["train", cfg, "--out", out], f"STEP {k}", LANFER_TEST_STEPS=1)
    before = load_training_state(out / "last.ckpt")  # intact, and from the last finished epoch
    assert before["step"] == 3 * ((k - 1) // 3), k
    _run(["train", cfg, "--out", out, "--resume"])
    _assert_same_run(out, root / "reference")


def test_training_killed_inside_a_checkpoint_write_resumes_to_the_same_result(setup):
    root, cfg = setup
    out = root / "killed_in_save"
    # the 2nd save is epoch 2's: last.ckpt holds epoch 1 and the new state sits in a temporary file
    _kill_when(["train", cfg, "--out", out], "SAVING", occurrence=2, LANFER_TEST_SLOW_SAVE="checkpoint",
               LANFER_TEST_SLOW_AT=2)
    temporaries = list(out.glob("last.ckpt.*.tmp"))
    assert len(temporaries) == 1 and temporaries[0].stat().st_size > 0  # we were inside the write
    assert load_training_state(out / "last.ckpt")["epoch"] == 1  # the previous checkpoint, whole
    _run(["train", cfg, "--out", out, "--resume"])
    _assert_same_run(out, root / "reference")


def test_prepare_killed_mid_split_is_never_read_as_complete(tmp_path):
    data = make_imagefolder(tmp_path / "data", classes=("a", "b"), per_class=4, size=32)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data: {{name: imagefolder, root: {data}, image_size: 32, num_workers: 0, "
                   "val_split: null, test_split: test}\n")
    cache = tmp_path / "cache"
    prepare(str(cfg), out=cache, progress=False)  # in this process: only the killed run needs a child
    # the data changes (two more test images) and prepare runs again, killed between writing the new test
    # images and the new test labels: the old code left info.json vouching for old labels beside new images
    for i in range(2):
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(data / "test" / "a" / f"new_{i}.png")
    _kill_when(["prepare", cfg, "--out", cache, "--no-progress"], "SAVING", occurrence=2,  # train, then test
               LANFER_TEST_SLOW_SAVE="labels", LANFER_TEST_SLOW_AT=2)
    assert list(cache.glob("labels_test.npy.*.tmp"))  # killed inside the write
    info = json.loads((cache / "info.json").read_text())
    assert "test" not in info["splits"] and info["writing"] == ["test"]
    with pytest.raises(DataError, match="interrupted `lanfer prepare` was writing test"):
        build_dataset("prepared", cache, "test")
    assert len(build_dataset("prepared", cache, "train")) == 8  # the finished split stays usable
    # a mixed split (new images, old labels) is refused even if an info.json vouches for it
    (cache / "info.json").write_text(json.dumps({**info, "splits": {**info["splits"], "test": {"n": 8}},
                                                 "writing": []}))
    with pytest.raises(DataError, match="incomplete or mixed"):
        build_dataset("prepared", cache, "test")
    # a rerun rebuilds, removes the dead temporaries and equals a cache built in one go
    prepare(str(cfg), out=cache, progress=False)
    assert not list(cache.glob("*.tmp"))
    prepare(str(cfg), out=tmp_path / "clean", progress=False)
    for split in ("train", "test"):
        for kind in ("images", "labels"):
            a, b = (np.load(c / f"{kind}_{split}.npy") for c in (cache, tmp_path / "clean"))
            assert np.array_equal(a, b), (split, kind)
        assert (cache / f"meta_{split}.jsonl").read_text() == (tmp_path / "clean" / f"meta_{split}.jsonl").read_text()
    assert len(build_dataset("prepared", cache, "test")) == 10
