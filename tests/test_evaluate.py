import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, recall_score

from lanfer.evaluate import format_metrics, summarize, yaw_bin


def test_summarize_matches_sklearn():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 4, 200)
    p = np.where(rng.random(200) < 0.6, t, rng.integers(0, 4, 200))
    classes = ["a", "b", "c", "d"]
    m = summarize(t, p, classes)
    assert np.array_equal(np.array(m["confusion_matrix"]), confusion_matrix(t, p, labels=range(4)))
    assert np.isclose(m["accuracy"], (t == p).mean())
    assert np.isclose(m["mean_class_accuracy"], balanced_accuracy_score(t, p))
    rec = recall_score(t, p, average=None)
    assert np.allclose([m["per_class_recall"][c] for c in classes], rec)
    assert "accuracy" in format_metrics(m)


def test_grouped_by_view_and_yaw():
    t = np.array([0, 1, 0, 1, 0, 1])
    p = np.array([0, 1, 1, 1, 0, 0])
    metas = [{"view": v, "yaw": y, "path": f"x{i}"} for i, (v, y) in
             enumerate([("S", 0), ("S", 0), ("HL", -45), ("HL", -45), ("FR", 90), ("FR", 90)])]
    m = summarize(t, p, ["x", "y"], metas)
    assert m["by"]["view"]["S"] == {"accuracy": 1.0, "n": 2}
    assert m["by"]["view"]["HL"]["accuracy"] == 0.5
    assert m["by"]["view"]["FR"]["accuracy"] == 0.5
    assert m["by"]["abs_yaw"]["0-15"]["n"] == 2 and "45-60" in m["by"]["abs_yaw"]
    assert "path" not in m["by"]
    assert yaw_bin(-31) == "30-45" and yaw_bin(90) == "60-90"


def test_class_without_support_is_nan_not_zero():
    m = summarize(np.array([0, 0]), np.array([0, 1]), ["a", "b", "c"])
    assert m["per_class_recall"]["b"] is None and m["per_class_recall"]["c"] is None
    assert m["mean_class_accuracy"] == 0.5


# -- flip test-time augmentation -----------------------------------------------------------------------------


class _LeftRight(torch.nn.Module):
    """Logits that see left from right: (mean of the left half, mean of the right half, 0) of channel 0."""

    def forward(self, x):  # (B, C, H, W) -> (B, 3)
        w = x.shape[3] // 2
        left, right = x[:, 0, :, :w].mean(dim=(1, 2)), x[:, 0, :, w:].mean(dim=(1, 2))
        return torch.stack([left, right, torch.zeros_like(left)], dim=1)


def _batches(images, labels):
    return [(images, labels, [{"path": f"f{i}"} for i in range(len(labels))])]


def test_flip_tta_is_the_mean_of_the_two_views_logits_by_hand():
    from lanfer.evaluate import loader_logits

    x = torch.zeros(2, 3, 4, 4)
    x[0, 0, :, :2] = 1.0  # face 0: bright on the left -> (1, 0, 0); mirrored -> (0, 1, 0)
    x[1, 0, :, 3] = 4.0   # face 1: one bright column on the right -> (0, 2, 0); mirrored -> (2, 0, 0)
    y = torch.tensor([0, 1])
    _, plain, _ = loader_logits(_LeftRight(), _batches(x, y))
    t, flip, metas = loader_logits(_LeftRight(), _batches(x, y), tta="flip")
    assert np.allclose(plain, [[1, 0, 0], [0, 2, 0]])
    assert np.allclose(flip, [[0.5, 0.5, 0], [1, 1, 0]])  # each face: the mean of its two views
    assert list(t) == [0, 1] and len(metas) == 2
    with pytest.raises(ValueError, match="tta='mirror' is not one of"):
        loader_logits(_LeftRight(), _batches(x, y), tta="mirror")


def test_eval_tta_flag_from_the_cli_and_the_api(tmp_path, capsys):
    import json

    from PIL import Image

    import lanfer
    from lanfer.checkpoint import save_model
    from lanfer.cli import main
    from lanfer.evaluate import evaluate_checkpoint
    from lanfer.model import load_model

    torch.manual_seed(0)
    m = lanfer.create_model("resnet18", num_classes=2).eval()
    ckpt = save_model(tmp_path / "m.safetensors", m, {"model": {"name": "resnet18", "num_classes": 2},
                                                      "classes": ["a", "b"], "image_size": 32, "normalize": "none"})
    rng = np.random.default_rng(0)
    faces = []
    for c in ("a", "b"):
        (tmp_path / "data" / "test" / c).mkdir(parents=True)
        for i in range(3):
            px = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(px).save(tmp_path / "data" / "test" / c / f"{i}.png")
            faces.append((px, c))
    # the reference: the model file's own forward on each image and its mirror image, averaged, argmax
    model, _ = load_model(ckpt)
    with torch.no_grad():
        x = torch.stack([torch.from_numpy(px).permute(2, 0, 1).float() / 255 for px, _ in faces])
        want = ((model(x) + model(x.flip(3))) / 2).argmax(1).numpy()
    acc = float(np.mean(want == [0 if c == "a" else 1 for _, c in faces]))
    api = evaluate_checkpoint(ckpt, data="imagefolder", root=str(tmp_path / "data"), device="cpu", num_workers=0,
                              progress=False, tta="flip")
    assert api["tta"] == "flip" and api["accuracy"] == pytest.approx(acc)
    assert main(["eval", str(ckpt), "--data", "imagefolder", "--root", str(tmp_path / "data"), "--tta", "flip",
                 "--device", "cpu", "--no-progress", "--out", str(tmp_path / "out")]) == 0
    assert "(flip TTA)" in capsys.readouterr().out
    rec = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert rec["tta"] == "flip" and rec["accuracy"] == pytest.approx(acc)
    with pytest.raises(ValueError, match="is not one of"):
        evaluate_checkpoint(ckpt, data="imagefolder", root=str(tmp_path / "data"), tta="both")
    with pytest.raises(SystemExit):
        main(["eval", str(ckpt), "--tta", "both"])


def test_eval_takes_a_shipped_models_name_as_its_file(tmp_path):
    from PIL import Image

    from lanfer.checkpoint import CheckpointError
    from lanfer.evaluate import evaluate_checkpoint
    from lanfer.pretrained import find

    shipped = find("lan_resnet18_ferplus")
    shipped_classes = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    rng = np.random.default_rng(1)
    for c in shipped_classes:
        (tmp_path / "data" / "test" / c).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (112, 112), dtype=np.uint8)).save(tmp_path / "data" / "test" / c / "0.png")
    kw = dict(data="imagefolder", root=str(tmp_path / "data"), device="cpu", num_workers=0, progress=False,
              overrides=["data.classes=" + ",".join(shipped_classes)])
    by_name = evaluate_checkpoint("lan_resnet18_ferplus", **kw)
    by_file = evaluate_checkpoint(shipped.path, **kw)
    assert by_name["n"] == 8 and by_name["confusion_matrix"] == by_file["confusion_matrix"]
    with pytest.raises(CheckpointError, match="does not exist"):
        evaluate_checkpoint("no_such_model", **kw)
