"""The one atomic writer: a failed write leaves neither a temporary file nor a changed target."""
from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch

from conftest import write_rafdb_noise

from lanfer.checkpoint import load_training_state, save_training_state
from lanfer.data import DataError
from lanfer.data.prepare import prepare
from lanfer.io import atomic_write


def test_atomic_write_writes_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "new" / "folder" / "out.txt"  # folders are created
    assert atomic_write(target, lambda tmp: tmp.write_text("hello")) == target
    assert target.read_text() == "hello"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_failed_write_leaves_no_temporary_and_no_target(tmp_path):
    seen = []

    def fail(tmp):
        seen.append(tmp)
        tmp.write_text("half a fi")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "out.bin", fail)
    assert seen and seen[0].parent == tmp_path  # the temporary file was in the target's folder
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [ValueError("bad value"), KeyboardInterrupt()])
def test_failed_write_keeps_the_existing_target_intact(tmp_path, error):
    target = tmp_path / "last.ckpt"
    save_training_state(target, {"model": {"w": torch.arange(5.0)}, "optimizer": {}, "scheduler": {}, "epoch": 1,
                                 "step": 7, "best": 0.5})
    before = target.read_bytes()

    def fail(tmp):
        torch.save({"step": 8}, tmp)  # a complete new file, then a failure before the rename
        raise error

    with pytest.raises(type(error)):
        atomic_write(target, fail)
    assert target.read_bytes() == before
    assert load_training_state(target)["step"] == 7
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_np_save_through_an_open_file_keeps_the_name(tmp_path):
    # np.save(name) appends ".npy" to a name without it; given the open file it writes the temporary itself
    a = np.arange(6).reshape(2, 3)

    def save(tmp):
        with open(tmp, "wb") as f:
            np.save(f, a)

    atomic_write(tmp_path / "a.npy", save)
    assert np.array_equal(np.load(tmp_path / "a.npy"), a)
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_prepare_that_fails_on_a_bad_image_leaves_no_partial_files(tmp_path):
    base = write_rafdb_noise(tmp_path, 6, 4, size=100)
    (base / "Image" / "aligned" / "test_0003_aligned.jpg").write_bytes(b"broken")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"data": {"name": "rafdb", "root": str(base), "image_size": 32, "num_workers": 0}}))
    out = tmp_path / "cache"
    with pytest.raises(DataError, match="test_0003_aligned.jpg"):
        prepare(cfg, out=out, splits=["test"], progress=False)
    assert list(out.iterdir()) == []
    # with skip_bad the compacted cache replaces the full temporary and nothing else is left
    cfg.write_text(json.dumps({"data": {"name": "rafdb", "root": str(base), "image_size": 32, "num_workers": 0,
                                        "skip_bad": True}}))
    with pytest.warns(UserWarning, match="1 images could not be decoded"):
        prepare(cfg, out=out, splits=["test"], progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["images_test.npy", "info.json", "labels_test.npy",
                                                     "meta_test.jsonl"]
    assert np.load(out / "images_test.npy").shape == (3, 32, 32, 3)


def test_atomic_write_gives_the_mode_open_would(tmp_path):
    # mkstemp's 0600 must not leak into the result: a new file gets 0666 less the umask, as open() gives it,
    # and rewriting an existing file keeps its mode
    old = os.umask(0o027)
    try:
        new = atomic_write(tmp_path / "new.txt", lambda t: t.write_text("x"))
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(new.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o640
    kept = tmp_path / "kept.txt"
    kept.write_text("old")
    kept.chmod(0o604)
    atomic_write(kept, lambda t: t.write_text("new"))
    assert kept.read_text() == "new" and stat.S_IMODE(kept.stat().st_mode) == 0o604
