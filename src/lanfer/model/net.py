"""FERNet: a backbone, optionally the LAN head, and a linear classifier."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from .backbones import create_backbone
from .head import FUSIONS, LANHead, fuse


@dataclass
class LANOutput:
    """Everything one forward pass computes; ``attention`` is None for the baseline."""

    logits: torch.Tensor  # (B, num_classes)
    features: torch.Tensor  # F_o, (B, C, H, W)
    attention: torch.Tensor | None  # F_m, (B, 1, H, W), values in (0, 1)
    fused: torch.Tensor  # f, (B, C) or (B, 2C) for concat


class FERNet(nn.Module):
    """A backbone (ResNet-18 by default) + (optionally) the LAN head + a linear classifier.

    ``model(x)`` returns logits; ``model(x, return_maps=True)`` returns a :class:`LANOutput` with F_o, F_m
    and f. Both go through ``forward``, so a DistributedDataParallel wrapper sees every training step and
    averages gradients (a detour through a method other than ``forward`` would bypass its backward hooks).
    """

    def __init__(self, num_classes: int = 7, attention: bool = True, fusion: str = "add",
                 head_widths: tuple[int, ...] | list[int] = (256, 128, 64), dropout: float = 0.0,
                 backbone: str = "resnet18"):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; use one of {FUSIONS}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes = num_classes
        self.fusion = fusion if attention else "none"
        self.backbone = create_backbone(backbone)
        c = self.backbone.out_channels
        self.head = LANHead(c, head_widths) if attention else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(2 * c if (attention and fusion == "concat") else c, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # F_o, (B, C, H, W)

    def forward(self, x: torch.Tensor, return_maps: bool = False) -> torch.Tensor | LANOutput:
        """Logits (B, num_classes), or with ``return_maps`` everything the loss and the figures need."""
        f_o = self.backbone(x)  # (B, C, H, W)
        if self.head is None:
            f_m = None
            f = f_o.mean(dim=(2, 3))  # (B, C)
        else:
            f_m = self.head(f_o)  # (B, 1, H, W)
            f = fuse(f_o, f_m, self.fusion)  # (B, C) or (B, 2C)
        logits = self.fc(self.dropout(f))  # (B, num_classes)
        if return_maps:
            return LANOutput(logits=logits, features=f_o, attention=f_m, fused=f)
        return logits
