"""A linear classifier on raw pixels: the floor any learned FER model must clear on a dataset.

If multinomial logistic regression on the (down-sized, standardised) pixels did as well as a CNN, the
dataset would be too easy to tell models apart, or the CNN would have learned nothing beyond a pixel
template. ``lanfer demo`` fits it on every fold's training identities and reports it next to ResNet-18
and LAN on the same test identities.

The solver is full-batch L-BFGS in torch on the L2-penalised mean cross-entropy, the same objective as
scikit-learn's ``LogisticRegression(C=...)`` (``0.5 * |W|^2 + C * sum(CE)``, intercept not penalised), so
no extra dependency is needed; the tests check it against scikit-learn.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


def pixel_features(dataset, pixels: int = 32, grey: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every sample of an :class:`~lanfer.data.FERDataset` as a flat pixel vector in [0, 1].

    Returns ``(X, y)``: ``X`` is ``(N, pixels * pixels * C)`` float32, ``y`` the ``(N,)`` int64 labels.
    Images are read with the dataset's own loader (so crops such as KDEF's portrait crop apply) and
    resized bilinearly; the dataset's tensor transform is not used.
    """
    xs, ys = [], []
    for i, s in enumerate(dataset.samples):
        if not isinstance(s.label, (int, np.integer)):
            raise ValueError(f"{s.path}: the pixel baseline needs one class index per image, got {s.label!r}")
        im = dataset.load(i).convert("L" if grey else "RGB").resize((pixels, pixels), Image.BILINEAR)
        xs.append(np.asarray(im, dtype=np.float32).reshape(-1) / 255.0)
        ys.append(int(s.label))
    if not xs:
        raise ValueError("the pixel baseline got an empty dataset")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


@dataclass
class PixelLogisticRegression:
    """Multinomial logistic regression on standardised features, fitted by L-BFGS.

    ``C`` is the inverse L2 strength in scikit-learn's convention. Attributes after :meth:`fit`:
    ``mean``/``std`` (the standardisation), ``coef`` ``(K, D)`` and ``intercept`` ``(K,)``.
    """

    C: float = 0.01
    max_iter: int = 500
    tol: float = 1e-6

    def fit(self, X: np.ndarray, y: np.ndarray, num_classes: int | None = None) -> "PixelLogisticRegression":
        x = torch.as_tensor(np.asarray(X), dtype=torch.float64)  # (N, D)
        t = torch.as_tensor(np.asarray(y), dtype=torch.int64)
        k = int(num_classes or int(t.max()) + 1)
        self.mean = x.mean(0)
        # constant pixels (e.g. a plain background) get std 1, as scikit-learn's StandardScaler does
        std = x.std(0, unbiased=False)
        self.std = torch.where(std > 0, std, torch.ones_like(std))
        z = (x - self.mean) / self.std
        w = torch.zeros(k, z.shape[1], dtype=torch.float64, requires_grad=True)
        b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=self.max_iter, tolerance_grad=self.tol,
                                tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")
        n = z.shape[0]

        def closure():
            opt.zero_grad()
            # divided by C * N: same minimiser as sklearn's objective, better scaled for L-BFGS
            loss = torch.nn.functional.cross_entropy(z @ w.T + b, t) + 0.5 * (w * w).sum() / (self.C * n)
            loss.backward()
            return loss

        opt.step(closure)
        self.coef, self.intercept = w.detach(), b.detach()
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        z = (torch.as_tensor(np.asarray(X), dtype=torch.float64) - self.mean) / self.std
        return (z @ self.coef.T + self.intercept).numpy()  # (N, K)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.decision_function(X).argmax(1)


def pixel_baseline(train_set, test_set, pixels: int = 32, C: float = 0.01, group_by=None) -> dict:
    """Fit :class:`PixelLogisticRegression` on ``train_set`` and evaluate it on ``test_set``.

    Returns the same metrics dictionary as :func:`lanfer.evaluate.evaluate` (accuracy, per-class recall,
    confusion matrix, accuracy grouped by metadata such as ``view``), plus ``train_accuracy`` and the
    settings used.
    """
    from .evaluate import summarize

    xtr, ytr = pixel_features(train_set, pixels)
    xte, yte = pixel_features(test_set, pixels)
    clf = PixelLogisticRegression(C=C).fit(xtr, ytr, num_classes=len(train_set.classes))
    out = summarize(yte, clf.predict(xte), list(test_set.classes), [s.meta for s in test_set.samples], group_by)
    out["train_accuracy"] = float((clf.predict(xtr) == ytr).mean())
    out["features"] = f"{pixels}x{pixels} RGB pixels, standardised; L2 logistic regression, C={C}"
    return out
