"""The prepare cache (same items as the source, fast), the balanced sampler and the data CLI commands."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_rafdb_noise

from lanfer.cli import main
from lanfer.data import DataError, EvalPreset, balanced_sampler, build_dataset
from lanfer.data.prepare import prepare


def write_rafdb(tmp_path, n_train=6, n_test=4):
    """RAF-DB basic with random-noise aligned faces (so resizing matters)."""
    return write_rafdb_noise(tmp_path, n_train, n_test, size=100)


def rafdb_config(tmp_path, base, **data):
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps({"data": {"name": "rafdb", "root": str(base), "image_size": 32,
                                         "num_workers": 0, **data}}))
    return path


def test_prepared_cache_gives_the_same_items(tmp_path):
    base = write_rafdb(tmp_path)
    out = tmp_path / "cache"
    info = prepare(rafdb_config(tmp_path, base), out=out, progress=False)
    assert info["splits"]["train"]["n"] == 6 and info["splits"]["test"]["n"] == 4
    assert np.load(out / "images_train.npy", mmap_mode="r").shape == (6, 32, 32, 3)
    preset = EvalPreset(32)
    for split in ("train", "test"):
        direct = build_dataset("rafdb", base, split, transform=preset)
        cached = build_dataset("prepared", out, split, transform=preset)
        assert cached.classes == direct.classes and cached.targets == direct.targets
        for i in range(len(direct)):
            x, y, meta = direct[i]
            cx, cy, cmeta = cached[i]
            assert torch.equal(cx, x) and cy == y
            assert cmeta["path"] == meta["path"] and cmeta["line"] == meta["line"]
    image, _, _ = build_dataset("prepared", out, "test")[0]
    assert isinstance(image, Image.Image) and image.size == (32, 32)


def test_prepared_cache_checks_options_and_keeps_pose_lists(tmp_path):
    base = write_rafdb(tmp_path)
    out = tmp_path / "cache"
    prepare(rafdb_config(tmp_path, base, options={"images": "aligned"}), out=out, splits="test", progress=False)
    with pytest.raises(DataError, match="built with images='aligned'"):
        build_dataset("prepared", out, "test", images="original")
    with pytest.raises(DataError, match="has splits \\['test'\\]"):
        build_dataset("prepared", out, "train")
    lst = tmp_path / "list.txt"
    lst.write_text("0/test_0002_aligned.jpg\n")  # line 8 of the label file: "test_0002.jpg 1" -> index 0
    ds = build_dataset("prepared", out, "test", subset=lst)
    assert len(ds) == 1 and ds.subset_info["matched"] == 1


def test_prepare_skips_undecodable_images_only_when_asked(tmp_path):
    base = write_rafdb(tmp_path)
    (base / "Image" / "aligned" / "test_0003_aligned.jpg").write_bytes(b"broken")
    with pytest.raises(DataError, match="test_0003_aligned.jpg"):
        prepare(rafdb_config(tmp_path, base), out=tmp_path / "a", splits=["test"], progress=False)
    with pytest.warns(UserWarning, match="1 images could not be decoded"):
        info = prepare(rafdb_config(tmp_path, base, skip_bad=True), out=tmp_path / "b", splits=["test"],
                       progress=False)
    rep = info["splits"]["test"]
    assert rep["n"] == 3 and rep["report"]["undecodable"] == 1 and rep["report"]["rows"] == 4
    cached = build_dataset("prepared", tmp_path / "b", "test")
    assert [s.path[-21:] for s in cached.samples] == [f"test_000{i}_aligned.jpg" for i in (1, 2, 4)]
    assert np.load(tmp_path / "b" / "images_test.npy").shape[0] == 3


def test_prepared_kdef_folds_match_the_source(tmp_path):
    root = tmp_path / "KDEF"
    for p in [f"F{i:02d}" for i in range(1, 6)] + [f"M{i:02d}" for i in range(1, 6)]:
        for e in ("HA", "SU"):
            for v in ("S", "FR"):
                path = root / f"A{p}" / f"A{p}{e}{v}.JPG"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (40, 40), (len(p) * 9, 3, 4)).save(path)
    cfg = tmp_path / "kdef.yaml"
    cfg.write_text(json.dumps({"data": {"name": "kdef", "root": str(tmp_path), "image_size": 32, "num_workers": 0,
                                        "options": {"folds": 5}}}))
    info = prepare(cfg, out=tmp_path / "cache", progress=False)
    assert list(info["splits"]) == ["all"] and info["splits"]["all"]["n"] == 40
    for fold in range(5):
        for split in ("train", "test"):
            direct = build_dataset("kdef", tmp_path, split, fold=fold, folds=5)
            cached = build_dataset("prepared", tmp_path / "cache", split, fold=fold, folds=5)
            assert [s.path for s in cached.samples] == [s.path for s in direct.samples]
            assert cached.targets == direct.targets
    with pytest.raises(DataError, match="folds=5"):
        build_dataset("prepared", tmp_path / "cache", "test", fold=0, folds=10)


def test_balanced_sampler_draws_classes_uniformly():
    class Tiny:
        classes = ["a", "b", "c"]
        targets = [0] * 6 + [1] * 2 + [2]

        def __len__(self):
            return len(self.targets)

    sampler = balanced_sampler(Tiny(), num_samples=30000, generator=torch.Generator().manual_seed(0))
    assert sampler.weights.tolist() == pytest.approx([1 / 6] * 6 + [1 / 2] * 2 + [1.0])
    drawn = np.bincount([Tiny.targets[i] for i in sampler], minlength=3) / 30000
    assert drawn == pytest.approx([1 / 3] * 3, abs=0.02)
    assert len(balanced_sampler(Tiny())) == 9


def test_cli_prepare_and_datasets(tmp_path, capsys):
    base = write_rafdb(tmp_path)
    cfg = rafdb_config(tmp_path, tmp_path / "elsewhere")
    out = tmp_path / "cache"
    assert main(["prepare", str(cfg), "--set", f"data.root={base}", "--out", str(out), "--splits", "test",
                 "--no-progress"]) == 0
    assert "test: 4 images (expected 3068)" in capsys.readouterr().out
    assert (out / "images_test.npy").is_file() and not (out / "images_train.npy").exists()
    assert main(["datasets", "rafdb", str(base)]) == 0
    text = capsys.readouterr().out
    assert "rafdb/train: 6 images (official: 12271)" in text and "Surprise 1" in text
    assert main(["datasets"]) == 0 and "kdef" in capsys.readouterr().out
    assert main(["datasets", "rafdb", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err

