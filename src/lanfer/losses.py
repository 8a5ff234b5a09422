"""The LAN objective (paper eq. 5-6): L = CE(logits, y) + alpha * BCE(F_m, guidance map), and the two
class-aware forms of its CE term that issue 22 measures on FERPlus (8,733 neutral training faces, 116 disgust):

* logit adjustment (Menon et al. 2021, "Long-tail learning via logit adjustment", eq. 10): the CE is taken on
  ``logits + tau * log(prior)``, so the network's own logits learn the balanced-error Bayes rule and inference
  uses them unchanged (the post-hoc form of the same rule is :func:`lanfer.calibration.adjust_logits`);
* class weights ``w_c ~ prior_c ** -p`` (p = 1: inverse frequency, every class's total weight equal),
  normalised so the weighted mean over the training set is 1 and the loss keeps its scale.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def class_balance_terms(prior: Sequence[float], logit_adjust: float = 0.0, class_weight: float = 0.0
                        ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(weight, offset)`` for :func:`lan_loss` from the training prior: per-class CE weights (None when
    ``class_weight == 0``) and the logit offset ``logit_adjust * log(prior)`` (None when ``logit_adjust == 0``).

    Args:
        prior: training class frequencies, each > 0 (:func:`lanfer.calibration.class_prior` refuses empty classes).
        logit_adjust: Menon et al.'s tau (1 = the balanced-error rule).
        class_weight: the exponent p of ``prior ** -p``.
    """
    p = torch.as_tensor([float(v) for v in prior], dtype=torch.float64)  # (K,)
    if p.numel() == 0 or not torch.isfinite(p).all() or (p <= 0).any():
        raise ValueError(f"class prior {p.tolist()}: every class needs a frequency > 0")
    p = p / p.sum()
    weight = offset = None
    if class_weight:
        w = p ** -float(class_weight)
        weight = (w / (p * w).sum()).float()  # sum_c prior_c * w_c = 1: same mean loss scale as plain CE
    if logit_adjust:
        offset = (float(logit_adjust) * p.log()).float()
    return weight, offset


def lan_loss(logits: torch.Tensor, targets: torch.Tensor, attention: torch.Tensor | None,
             guidance_map: torch.Tensor | None, alpha: float = 0.5, label_smoothing: float = 0.0,
             class_weight: torch.Tensor | None = None, logit_offset: torch.Tensor | None = None):
    """Return ``(total, ce, bce)``.

    Args:
        logits: (B, K) class scores.
        targets: (B,) class indices, or (B, K) class probabilities (FERPlus soft labels).
        attention: F_m (B, 1, H, W) in (0, 1), or None (baseline).
        guidance_map: (B, 1, H, W) of 0/1 from :meth:`lanfer.Guidance.assign`, or None.
        alpha: weight of the per-pixel BCE term (paper default 0.5). With ``alpha == 0`` or no
            attention/guidance the total is exactly the cross-entropy.
        class_weight: (K,) per-class CE weights, or None (:func:`class_balance_terms`).
        logit_offset: (K,) added to the logits inside the CE only (logit adjustment), or None.
    """
    if logit_offset is not None:
        logits = logits + logit_offset.to(logits.device, logits.dtype)  # (B, K)
    if class_weight is not None:
        class_weight = class_weight.to(logits.device, logits.dtype)
    ce = F.cross_entropy(logits, targets, weight=class_weight, label_smoothing=label_smoothing)
    if attention is None or guidance_map is None or alpha == 0:
        return ce, ce, torch.zeros((), device=logits.device, dtype=ce.dtype)
    if attention.shape != guidance_map.shape:
        raise ValueError(f"attention map {tuple(attention.shape)} and guidance map "
                         f"{tuple(guidance_map.shape)} must have the same shape")
    # BCE in float32: under bf16 autocast the sigmoid output saturates and log(0) appears.
    bce = F.binary_cross_entropy(attention.float().clamp(1e-6, 1 - 1e-6), guidance_map.float())
    return ce + alpha * bce, ce, bce
