"""The LAN objective (paper eq. 5-6): L = CE(logits, y) + alpha * BCE(F_m, guidance map)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def lan_loss(logits: torch.Tensor, targets: torch.Tensor, attention: torch.Tensor | None,
             guidance_map: torch.Tensor | None, alpha: float = 0.5, label_smoothing: float = 0.0):
    """Return ``(total, ce, bce)``.

    Args:
        logits: (B, K) class scores.
        targets: (B,) class indices, or (B, K) class probabilities (FERPlus soft labels).
        attention: F_m (B, 1, H, W) in (0, 1), or None (baseline).
        guidance_map: (B, 1, H, W) of 0/1 from :meth:`lanfer.Guidance.assign`, or None.
        alpha: weight of the per-pixel BCE term (paper default 0.5). With ``alpha == 0`` or no
            attention/guidance the total is exactly the cross-entropy.
    """
    ce = F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    if attention is None or guidance_map is None or alpha == 0:
        return ce, ce, torch.zeros((), device=logits.device, dtype=ce.dtype)
    if attention.shape != guidance_map.shape:
        raise ValueError(f"attention map {tuple(attention.shape)} and guidance map "
                         f"{tuple(guidance_map.shape)} must have the same shape")
    # BCE in float32: under bf16 autocast the sigmoid output saturates and log(0) appears.
    bce = F.binary_cross_entropy(attention.float().clamp(1e-6, 1 - 1e-6), guidance_map.float())
    return ce + alpha * bce, ce, bce
