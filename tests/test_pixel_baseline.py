"""The raw-pixel linear baseline agrees with scikit-learn and reads datasets like the models do."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from lanfer.data import build_dataset
from lanfer.pixel_baseline import PixelLogisticRegression, pixel_baseline, pixel_features


def _blobs(seed=0, n=240, d=30, k=4):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (k, d))
    y = rng.integers(0, k, n)
    x = centres[y] + rng.normal(0, 1.5, (n, d))
    x[:, 3] = 0.7  # a constant feature, like a plain background pixel
    return x.astype(np.float32), y


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_matches_sklearn(C):
    x, y = _blobs()
    ours = PixelLogisticRegression(C=C).fit(x[:180], y[:180])
    sc = StandardScaler().fit(x[:180])
    z = sc.transform(x[:180].astype(np.float64))
    ref = LogisticRegression(C=C, max_iter=5000, tol=1e-10).fit(z, y[:180])
    np.testing.assert_allclose(ours.coef.numpy(), ref.coef_, rtol=2e-3, atol=2e-4)

    def objective(w, b):  # scikit-learn's: 0.5 |W|^2 + C * summed cross-entropy
        logits = z @ w.T + b
        logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
            - logits.max(1, keepdims=True)
        return 0.5 * (w ** 2).sum() - C * logp[np.arange(len(z)), y[:180]].sum()

    ours_obj = objective(ours.coef.numpy(), ours.intercept.numpy())
    assert ours_obj <= objective(ref.coef_, ref.intercept_) * (1 + 1e-6)
    np.testing.assert_allclose(ours.decision_function(x[180:]), ref.decision_function(sc.transform(x[180:])),
                               atol=2e-3)
    assert (ours.predict(x[180:]) == ref.predict(sc.transform(x[180:]))).mean() >= 0.98


def test_pixel_baseline_on_a_kdef_layout(tmp_path):
    from lanfer.data.synth import generate

    root = generate(tmp_path / "set", identities=4, seed=3, image_size=48, workers=1)
    train = build_dataset("kdef", root, "train", fold=0, folds=2)
    test = build_dataset("kdef", root, "test", fold=0, folds=2)
    x, y = pixel_features(train, pixels=8)
    assert x.shape == (len(train), 8 * 8 * 3) and 0.0 <= x.min() and x.max() <= 1.0
    assert y.tolist() == [s.label for s in train.samples]
    m = pixel_baseline(train, test, pixels=8, C=0.01, group_by=["view"])
    assert m["n"] == len(test) and np.sum(m["confusion_matrix"]) == len(test)
    assert set(m["by"]["view"]) == {"FL", "HL", "S", "HR", "FR"}
    # the training identities are fitted well above chance (1/7); the summary is self-consistent
    assert m["train_accuracy"] > 2 / 7
    assert m["accuracy"] == pytest.approx(np.trace(m["confusion_matrix"]) / len(test))


def test_soft_labels_are_refused(tmp_path):
    from PIL import Image

    from lanfer.data.base import FERDataset, Sample

    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    ds = FERDataset([Sample(str(tmp_path / "a.png"), [0.5, 0.5])], ["a", "b"])
    with pytest.raises(ValueError, match="a.png: the pixel baseline needs one class index"):
        pixel_features(ds)
