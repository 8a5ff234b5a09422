import numpy as np
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
