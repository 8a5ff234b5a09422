"""From logits to probabilities a user can trust: the one function every output path uses, and its fitting.

A model file's :class:`~lanfer.info.ModelInfo` says how its logits become probabilities::

    p = softmax((logits - tau * log(prior)) / T)

``prior`` is the training set's class frequencies and ``tau`` the logit-adjustment strength (Menon et al.,
"Long-tail learning via logit adjustment", ICLR 2021): ``tau = 1`` turns the classifier from the training
distribution's Bayes rule into the balanced-error one, so rare classes (disgust, contempt) are not drowned by
frequent ones (neutral); ``tau = 0`` is the plain classifier. ``T`` is the temperature (Guo et al., "On
calibration of modern neural networks", ICML 2017), fitted on validation so that a 0.8 confidence is right
about 80% of the time; it never changes the predicted class. A file without these fields has ``T = 1`` and no
adjustment. :func:`probabilities` is used by the predictor (and so ``lanfer serve``), ``lanfer evaluate``,
``lanfer cam``, the report and the ONNX graph; nothing else in lanfer applies a softmax to a model's logits.

Fitting (``lanfer calibrate``): :func:`choose_prior_tau` sweeps ``tau`` on validation logits,
:func:`fit_temperature` minimises the validation NLL of the adjusted logits over ``log T``, and
:func:`expected_calibration_error` measures the result (15 equal-width bins of the top-1 confidence).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from .info import MAX_ABS_TAU, InfoError, ModelInfo

ECE_BINS = 15
#: the taus :func:`choose_prior_tau` tries by default: 0 (the plain classifier) to 2 in steps of 0.1
DEFAULT_TAUS = tuple(round(0.1 * i, 1) for i in range(21))


def tau_grid(min_tau: float = 0.0, max_tau: float = 2.0, step: float = 0.1) -> tuple[float, ...]:
    """Taus from ``min_tau`` to ``max_tau`` in ``step``s (rounded to 0.1 s). A negative ``min_tau`` lets the sweep
    move a model trained with a logit-adjusted loss back towards its training prior (tau -1 undoes tau 1)."""
    if not (math.isfinite(min_tau) and math.isfinite(max_tau)) or min_tau > max_tau or step <= 0:
        raise ValueError(f"tau range {min_tau:g}..{max_tau:g} (step {step:g}) is empty or not finite")
    if max(abs(min_tau), abs(max_tau)) > MAX_ABS_TAU:
        raise ValueError(f"tau range {min_tau:g}..{max_tau:g} leaves [-{MAX_ABS_TAU:g}, {MAX_ABS_TAU:g}]")
    n = int(round((max_tau - min_tau) / step))
    return tuple(round(min_tau + step * i, 2) for i in range(n + 1))
DEFAULT_MIN_RECALL = 0.40


def resolve_tau(info: ModelInfo | None, tau: float | None = None) -> float:
    """The logit-adjustment strength to apply: ``tau`` when given (a user's ``--prior-tau``), else the model's
    own ``prior_tau`` (0 without a record). A non-zero tau needs the record's ``class_prior``."""
    if tau is None:
        return 0.0 if info is None else info.prior_tau
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or abs(tau) > MAX_ABS_TAU:
        raise InfoError(f"prior_tau={tau!r} must be a finite number in [-{MAX_ABS_TAU:g}, {MAX_ABS_TAU:g}] "
                        "(0: no prior correction)")
    if tau != 0 and (info is None or info.class_prior is None):
        raise InfoError(f"prior_tau={tau:g} needs the model's class prior, and this model file records none; "
                        "write one with lanfer calibrate MODEL --data ROOT --out NEW.safetensors")
    return float(tau)


def adjust_logits(logits, info: ModelInfo | None, tau: float | None = None):
    """``logits - tau * log(prior)`` (Menon et al. 2021), for torch (B, K) tensors or numpy arrays; the
    logits themselves when tau is 0. ``tau`` None: the model's own ``prior_tau``."""
    tau = resolve_tau(info, tau)
    if tau == 0:
        return logits
    shift = [tau * math.log(p) for p in info.class_prior]  # (K,), python floats: constants in an ONNX graph
    if isinstance(logits, torch.Tensor):
        return logits - torch.tensor(shift, dtype=logits.dtype, device=logits.device)
    return np.asarray(logits) - np.asarray(shift, dtype=np.asarray(logits).dtype)


def probabilities(logits, info: ModelInfo | None, tau: float | None = None):
    """``softmax((logits - tau * log(prior)) / T)`` over the last axis: the model's probabilities at its own
    operating point (``tau`` None) or at another one. Torch tensors stay tensors (float32 at least), numpy
    arrays stay arrays; ``info`` None is the plain softmax (a model being trained has no calibration yet)."""
    z = adjust_logits(logits, info, tau)
    t = 1.0 if info is None else info.temperature
    if isinstance(z, torch.Tensor):
        z = z.float()
        return (z if t == 1 else z / t).softmax(dim=-1)
    z = np.asarray(z, dtype=np.float64)
    z = z if t == 1 else z / t
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


# ----------------------------------------------------------------------------------------------------
# Measuring and fitting


def class_prior(counts: Sequence[int], classes: Sequence[str] | None = None) -> list[float]:
    """Class counts -> frequencies summing to 1. A class with no example has no log-prior: refused by name."""
    counts = [int(c) for c in counts]
    empty = [classes[k] if classes else str(k) for k, c in enumerate(counts) if c <= 0]
    if empty:
        raise ValueError(f"no training example of class {', '.join(empty)}: a class prior needs every class seen")
    total = sum(counts)
    return [c / total for c in counts]


def reliability(probs, labels, bins: int = ECE_BINS) -> list[dict[str, Any]]:
    """Top-1 confidence in ``bins`` equal-width bins of [0, 1] (bin b holds (b/bins, (b+1)/bins], the first
    also 0): per bin ``lo``, ``hi``, ``n``, mean ``confidence`` and ``accuracy`` (None when empty)."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels).astype(np.int64)
    conf, hit = probs.max(axis=1), (probs.argmax(axis=1) == labels)  # (N,), (N,)
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        m = which == b
        n = int(m.sum())
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "n": n,
                    "confidence": float(conf[m].mean()) if n else None,
                    "accuracy": float(hit[m].mean()) if n else None})
    return out


def expected_calibration_error(probs, labels, bins: int = ECE_BINS) -> float:
    """ECE (Guo et al. 2017): sum over equal-width bins of the top-1 confidence of (share of images in the
    bin) x |accuracy - mean confidence| in the bin. ``probs`` (N, K), ``labels`` (N,) class indices."""
    n = len(labels)
    if n == 0:
        raise ValueError("expected_calibration_error: no images")
    return float(sum(r["n"] / n * abs(r["accuracy"] - r["confidence"]) for r in reliability(probs, labels, bins)
                     if r["n"]))


def nll(logits, labels, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature
    return float(torch.nn.functional.cross_entropy(z, torch.as_tensor(np.asarray(labels), dtype=torch.long)))


def fit_temperature(logits, labels, max_iter: int = 100) -> float:
    """The temperature T minimising the mean NLL of ``softmax(logits / T)`` on (validation) ``labels``.

    LBFGS over ``log T`` (so T stays positive), in float64; ``logits`` (N, K) are already prior-adjusted where
    an adjustment is shipped (:func:`adjust_logits`): the temperature calibrates what the user sees."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)  # (N, K)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)  # (N,)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"fit_temperature: logits {tuple(z.shape)} and labels {tuple(y.shape)} do not match")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"fit_temperature: the fit diverged (T={t}); are the labels those of the logits?")
    return t


def class_recall(preds, labels, num_classes: int) -> np.ndarray:
    """(K,) recall of each class; NaN for a class without images."""
    preds, labels = np.asarray(preds).astype(np.int64), np.asarray(labels).astype(np.int64)
    support = np.bincount(labels, minlength=num_classes)
    hits = np.bincount(labels[preds == labels], minlength=num_classes)
    return np.where(support > 0, hits / np.maximum(support, 1), np.nan)


def sweep_prior_tau(logits, labels, prior: Sequence[float], taus: Sequence[float] = DEFAULT_TAUS,
                    classes: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Per ``tau``: ``accuracy``, ``mean_class_accuracy``, ``min_class_recall`` (over classes with images) and
    ``per_class_recall`` of the argmax of ``logits - tau * log(prior)``."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels).astype(np.int64)
    k = logits.shape[1]
    names = list(classes) if classes else [str(i) for i in range(k)]
    log_p = np.log(np.asarray(prior, dtype=np.float64))  # (K,)
    rows = []
    for tau in taus:
        preds = (logits - tau * log_p).argmax(axis=1)
        rec = class_recall(preds, labels, k)
        rows.append({"tau": float(tau), "accuracy": float((preds == labels).mean()),
                     "mean_class_accuracy": float(np.nanmean(rec)), "min_class_recall": float(np.nanmin(rec)),
                     "per_class_recall": {c: (None if np.isnan(r) else float(r)) for c, r in zip(names, rec)}})
    return rows


def choose_prior_tau(logits, labels, prior: Sequence[float], taus: Sequence[float] = DEFAULT_TAUS,
                     min_recall: float = DEFAULT_MIN_RECALL, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """The operating point a user wants: the smallest ``tau`` at which every class reaches ``min_recall`` on
    (validation) ``labels``, or, when no tau does, the tau of the best mean class accuracy (the smallest of
    equals). Returns ``{"tau", "rule", "min_recall", "table"}`` with :func:`sweep_prior_tau`'s table."""
    table = sweep_prior_tau(logits, labels, prior, sorted(taus), classes)
    if not table:
        raise ValueError("choose_prior_tau: no tau to try")
    ok = [r for r in table if r["min_class_recall"] >= min_recall]
    if ok:
        best, rule = ok[0], f"smallest tau with every class at >= {min_recall:.0%} recall"
    else:
        best = max(table, key=lambda r: (r["mean_class_accuracy"], -r["tau"]))
        rule = f"no tau reaches {min_recall:.0%} recall in every class: best mean class accuracy"
    return {"tau": best["tau"], "rule": rule, "min_recall": min_recall, "table": table}
