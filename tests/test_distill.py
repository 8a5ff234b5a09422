"""Offline distillation (lanfer.distill, issue 22): the teachers' targets against each teacher's own logits, the
mixture by hand, its wiring into training (the labels the loss sees), and the refusals of a wrong file."""
import numpy as np
import pytest
import torch

import lanfer.train.step as step_module
from lanfer.config import ConfigError
from lanfer.data.base import DataError, FERDataset, Sample
from lanfer.distill import face_key, load_targets, mix_targets, save_targets, teacher_targets
from lanfer.evaluate import _open_for_eval
from lanfer.train import train

from test_train import _cfg


def _logits(model_file, root, split):
    """An independent path to a model's logits: the evaluation loader, one face at a time."""
    model, _, cfg, ds, _, _ = _open_for_eval(str(model_file), None, str(root), split, None, None, None, 1, "cpu", 0)
    model.eval()
    out = {}
    with torch.no_grad():
        for i in range(len(ds)):
            x, _, meta = ds[i]
            out[face_key(meta["path"], root)] = model(x[None].contiguous(memory_format=torch.channels_last))[0]
    return out


@pytest.fixture(scope="module")
def two_teachers(tmp_path_factory):
    from conftest import make_imagefolder

    base = tmp_path_factory.mktemp("distill")
    root = make_imagefolder(base / "data")
    files = []
    for seed in (1, 2):
        cfg = _cfg(root, **{"train.epochs": 1})
        cfg.seed = seed
        train(cfg, out=base / f"t{seed}")
        files.append(base / f"t{seed}" / "best.safetensors")
    return root, files


def test_teacher_targets_are_the_softmax_of_the_mean_logits(two_teachers, tmp_path):
    root, files = two_teachers
    t = teacher_targets([str(f) for f in files], str(root), "train", batch_size=5)
    assert t["classes"] == ["happy", "neutral", "sad"] and len(t["keys"]) == 24
    assert all(not k.startswith("/") and k.startswith("train/") for k in t["keys"])  # relative to the root
    a, b = _logits(files[0], root, "train"), _logits(files[1], root, "train")
    expected = np.stack([torch.softmax((a[k] + b[k]) / 2, dim=0).numpy() for k in t["keys"]])  # (24, 3)
    np.testing.assert_allclose(t["probs"], expected, atol=1e-5)
    # the file round-trips, and a different root path to the same data finds every face
    path = save_targets(t, tmp_path / "t.npz")
    back = load_targets(path)
    assert back["keys"] == t["keys"] and back["classes"] == t["classes"] and back["models"] == t["models"]
    np.testing.assert_array_equal(back["probs"], t["probs"])


def _samples(labels, root="/data"):
    return FERDataset([Sample(f"{root}/train/f{i}.png", y) for i, y in enumerate(labels)], ["a", "b", "c"])


def _targets(keys, probs, classes=("a", "b", "c")):
    return {"keys": list(keys), "probs": np.asarray(probs, np.float32), "classes": list(classes), "models": ["m"]}


def test_mix_targets_by_hand():
    ds = _samples([0, 2, [0.2, 0.8, 0.0]])
    t = _targets(["train/f2.png", "train/f0.png", "train/f1.png"],  # any order: rows are found by key
                 [[0.5, 0.5, 0.0], [0.1, 0.7, 0.2], [0.0, 1.0, 0.0]])
    assert mix_targets(ds, t, 0.25, "/data") == 3
    np.testing.assert_allclose(ds.samples[0].label, [0.75 + 0.025, 0.175, 0.05], atol=1e-6)
    np.testing.assert_allclose(ds.samples[1].label, [0.0, 0.25, 0.75], atol=1e-6)
    np.testing.assert_allclose(ds.samples[2].label, [0.15 + 0.125, 0.6 + 0.125, 0.0], atol=1e-6)
    # the arg-max stays each face's own label (w <= 0.5), so class counts and balanced sampling are unchanged
    assert ds.class_counts() == [1, 1, 1]


def test_mix_targets_refuses_missing_faces_other_classes_and_bad_weights():
    ds = _samples([0, 1])
    with pytest.raises(DataError, match=r"no row for 1 of the 2 .*f1\.png.*same dataset root"):
        mix_targets(ds, _targets(["train/f0.png"], [[1, 0, 0]]), 0.5, "/data")
    with pytest.raises(DataError, match="over classes"):
        mix_targets(ds, _targets(["train/f0.png", "train/f1.png"], [[1, 0, 0]] * 2, ("a", "c", "b")), 0.5, "/data")
    for w in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="distill_weight"):
            mix_targets(ds, _targets(["train/f0.png", "train/f1.png"], [[1, 0, 0]] * 2), w, "/data")
    assert ds.samples[0].label == 0  # nothing changed by a refused call


def test_load_targets_refuses_a_missing_or_malformed_file(tmp_path):
    with pytest.raises(DataError, match="no such file.*teacher_targets.py"):
        load_targets(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="junk.npz.*not a teacher targets file"):
        load_targets(tmp_path / "junk.npz")
    bad = save_targets(_targets(["x", "y"], [[0.5, 0.5, 0.0], [0.9, 0.9, 0.0]]), tmp_path / "bad.npz")
    with pytest.raises(DataError, match="sum to 1"):
        load_targets(bad)
    np.savez(tmp_path / "shape.npz", keys=np.array(["x"]), probs=np.ones((2, 3)) / 3, classes=np.array(list("abc")))
    with pytest.raises(DataError, match="shape"):
        load_targets(tmp_path / "shape.npz")


def test_training_with_distill_sees_the_mixed_labels(two_teachers, tmp_path, monkeypatch):
    root, files = two_teachers
    t = teacher_targets([str(files[0])], str(root), "train")
    path = save_targets(t, tmp_path / "teacher.npz")
    seen = []
    real = step_module.lan_loss

    def spy(logits, labels, *args, **kwargs):
        seen.append(labels.detach().clone())
        return real(logits, labels, *args, **kwargs)

    monkeypatch.setattr(step_module, "lan_loss", spy)
    train(_cfg(root, **{"train.epochs": 1, "loss.distill": str(path), "loss.distill_weight": 0.4}), out=tmp_path / "r")
    labels = torch.cat(seen)  # (24, 3): every training face once
    assert labels.shape == (24, 3)
    # each row is 0.6 * one-hot + 0.4 * a teacher row: subtracting 0.6 at the arg-max leaves 0.4 * a distribution
    hard = labels.argmax(dim=1)
    rest = labels.clone()
    rest[torch.arange(len(rest)), hard] -= 0.6
    assert torch.all(rest >= -1e-6)
    np.testing.assert_allclose(rest.sum(dim=1).numpy(), 0.4, atol=1e-5)
    gap = np.abs(rest.numpy()[:, None, :] - 0.4 * t["probs"][None, :, :]).max(axis=2)  # (24 seen, 24 teacher rows)
    assert gap.min(axis=1).max() < 1e-5  # every row seen is one of the teacher's
    assert torch.bincount(hard, minlength=3).tolist() == [8, 8, 8]  # the faces' own labels


def test_config_refuses_a_bad_distill_weight(tiny_folder):
    for w in (0.0, 1.2):
        with pytest.raises(ConfigError, match="distill_weight"):
            _cfg(tiny_folder, **{"loss.distill_weight": w})
