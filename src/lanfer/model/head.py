"""The LAN head (F_o -> F_m) and the fusion of global and attentive features (paper section III-B)."""
from __future__ import annotations

import torch
import torch.nn as nn

FUSIONS = ("add", "concat", "average")


class LANHead(nn.Module):
    """Four 3x3 convolutions ending in one channel, then a sigmoid: F_o (B, C, H, W) -> F_m (B, 1, H, W).

    The paper gives no widths; we use C -> 256 -> 128 -> 64 -> 1 with BatchNorm + ReLU between layers
    (configurable through ``widths``). Padding 1 keeps the lattice, so F_m aligns with F_o position by
    position, as the per-position guidance map requires.
    """

    def __init__(self, in_channels: int = 512, widths: tuple[int, ...] | list[int] = (256, 128, 64)):
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"LAN head widths must list 3 hidden widths (4 convolutions), got {list(widths)}")
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c = w
        layers.append(nn.Conv2d(c, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, f_o: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(f_o))  # (B, 1, H, W)


def fuse(f_o: torch.Tensor, f_m: torch.Tensor, fusion: str = "add") -> torch.Tensor:
    """Combine global and attentive features (paper eq. 1-2 and Table 6).

    f_o: F_o (B, C, H, W); f_m: F_m (B, 1, H, W). Returns f: (B, C), or (B, 2C) for ``"concat"``.
    """
    g = f_o.mean(dim=(2, 3))  # GAP(F_o), (B, C)
    a = (f_o * f_m).mean(dim=(2, 3))  # GAP(F_a) with F_a = F_o (.) F_m broadcast over C, (B, C)
    if fusion == "add":
        return g + a
    if fusion == "average":
        return (g + a) / 2
    if fusion == "concat":
        return torch.cat([g, a], dim=1)  # (B, 2C)
    raise ValueError(f"unknown fusion {fusion!r}; use one of {FUSIONS}")
