"""The Local Attention Network (LAN) on a ResNet-18 backbone, and the plain ResNet-18 baseline.

Paper (Cho & Lee 2022, section III-B): F_o = conv5_x(image), (B, 512, 7, 7) at 224 px; the LAN head (four
3x3 convolutions and a sigmoid) predicts F_m (B, 1, 7, 7); F_a = F_o * F_m; f = GAP(F_o) + GAP(F_a); an FC
layer classifies. Both models come from :func:`create_model` and share the backbone code, so a comparison
between them changes only the head.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from .checkpoint import CheckpointError, load_backbone, load_state, read_model_info, read_weights
from .info import MODEL_NAMES, ModelInfo
from .pretrained import find, is_shipped_name

FUSIONS = ("add", "concat", "average")


@dataclass
class LANOutput:
    """Everything one forward pass computes; ``attention`` is None for the baseline."""

    logits: torch.Tensor  # (B, num_classes)
    features: torch.Tensor  # F_o, (B, 512, H, W)
    attention: torch.Tensor | None  # F_m, (B, 1, H, W), values in (0, 1)
    fused: torch.Tensor  # f, (B, 512) or (B, 1024) for concat


class ResNet18Backbone(nn.Module):
    """torchvision's ResNet-18 up to conv5_x (``layer4``): image (B, 3, S, S) -> F_o (B, 512, S/32, S/32).

    Parameter names match torchvision's (``conv1.weight``, ``layer4.1.bn2.running_var`` ...), so
    torchvision-style state dicts load directly.
    """

    out_channels = 512

    def __init__(self):
        super().__init__()
        r = torchvision.models.resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, S/4, S/4)
        x = self.layer2(self.layer1(x))  # (B, 128, S/8, S/8)
        return self.layer4(self.layer3(x))  # (B, 512, S/32, S/32)


class LANHead(nn.Module):
    """Four 3x3 convolutions ending in one channel, then a sigmoid: F_o (B, C, H, W) -> F_m (B, 1, H, W).

    The paper gives no widths; we use C -> 256 -> 128 -> 64 -> 1 with BatchNorm + ReLU between layers
    (configurable through ``widths``). Padding 1 keeps the 7x7 lattice, so F_m aligns with F_o position by
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


class FERNet(nn.Module):
    """ResNet-18 + (optionally) the LAN head + a linear classifier.

    ``model(x)`` returns logits; ``model(x, return_maps=True)`` returns a :class:`LANOutput` with F_o, F_m
    and f. Both go through ``forward``, so a DistributedDataParallel wrapper sees every training step and
    averages gradients (a detour through a method other than ``forward`` would bypass its backward hooks).
    """

    def __init__(self, num_classes: int = 7, attention: bool = True, fusion: str = "add",
                 head_widths: tuple[int, ...] | list[int] = (256, 128, 64), dropout: float = 0.0):
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; use one of {FUSIONS}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        self.num_classes = num_classes
        self.fusion = fusion if attention else "none"
        self.backbone = ResNet18Backbone()
        c = self.backbone.out_channels
        self.head = LANHead(c, head_widths) if attention else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(2 * c if (attention and fusion == "concat") else c, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)  # F_o, (B, 512, H, W)

    def forward(self, x: torch.Tensor, return_maps: bool = False) -> torch.Tensor | LANOutput:
        """Logits (B, num_classes), or with ``return_maps`` everything the loss and the figures need."""
        f_o = self.backbone(x)  # (B, 512, H, W)
        if self.head is None:
            f_m = None
            f = f_o.mean(dim=(2, 3))  # (B, 512)
        else:
            f_m = self.head(f_o)  # (B, 1, H, W)
            f = fuse(f_o, f_m, self.fusion)  # (B, 512) or (B, 1024)
        logits = self.fc(self.dropout(f))  # (B, num_classes)
        if return_maps:
            return LANOutput(logits=logits, features=f_o, attention=f_m, fused=f)
        return logits


def create_model(name: str = "lan_resnet18", num_classes: int | None = None, fusion: str = "add",
                 pretrained: str | None = None, head_widths=(256, 128, 64), dropout: float = 0.0,
                 verbose: bool = False, **kw) -> FERNet:
    """Build a model by name.

    Args:
        name: ``"lan_resnet18"`` (LAN, the paper's model) or ``"resnet18"`` (the plain baseline: same
            backbone, FC on GAP(F_o)).
        num_classes: expression classes (any >= 2; 7 when neither given nor fixed by a shipped model).
        fusion: ``"add"`` (paper default), ``"concat"`` or ``"average"``; ignored by the baseline.
        pretrained: a shipped model's tag or name (``"ferplus"``: the whole trained model, its classes and
            head from its record, see :mod:`lanfer.pretrained`), or a path to backbone weights
            (torchvision keys, ``module.``-prefixed keys, or the ijba MS-Celeb-1M ``ijba_res18_naive.pth.tar``;
            see :func:`lanfer.checkpoint.load_backbone`).
        head_widths: the three hidden widths of the LAN head's four convolutions.

    A model built from a shipped tag carries its :class:`~lanfer.info.ModelInfo` as ``model.info``.
    """
    if kw:
        raise TypeError(f"create_model got unknown arguments {sorted(kw)}")
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODEL_NAMES)}")
    if pretrained and is_shipped_name(pretrained):
        shipped = find(str(pretrained), arch=name)
        model, info = load_model(shipped.path, expect_arch=name)
        if num_classes is not None and num_classes != info.num_classes:
            raise ValueError(f"pretrained={pretrained!r} is a {info.num_classes}-class model ({', '.join(info.classes)}); "
                             f"num_classes={num_classes} would need a new classifier: load it with "
                             "num_classes=None, or fine-tune from its backbone file")
        model.info = info
        return model.train()
    model = FERNet(num_classes=7 if num_classes is None else num_classes, attention=(name == "lan_resnet18"),
                   fusion=fusion, head_widths=tuple(head_widths), dropout=dropout)
    model.arch = name  # recorded in checkpoints, checked on load
    if pretrained:
        report = load_backbone(model.backbone, pretrained)
        if verbose:
            print(report)
    return model


def load_model(path, device: str | torch.device = "cpu", expect_arch: str | None = None,
               dtype: torch.dtype | None = None) -> tuple[FERNet, ModelInfo]:
    """Rebuild a model from a lanfer safetensors file: ``(model in eval mode, its ModelInfo)``.

    The one owner of "build a model and load weights into it" (``checkpoint`` only reads files).
    ``expect_arch`` refuses a file of another architecture. Weights stored in float16 (the shipped models)
    are cast to the model's float32 unless ``dtype`` says otherwise.
    """
    info = read_model_info(path)
    if expect_arch is not None and info.arch != expect_arch:
        raise CheckpointError(f"{path}: holds a {info.arch!r} model, expected {expect_arch!r}")
    model = create_model(**info.model_kwargs())
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v
             for k, v in read_weights(path).items()}
    load_state(model, state, where=str(path))
    model.to(device=device, dtype=dtype).eval()
    return model, info


def model_kwargs_from_config(model_cfg) -> dict:
    """The :func:`create_model` arguments a :class:`lanfer.config.ModelConfig` describes (no weights).

    ``num_classes`` must be known by now: a config may leave it unset, and training fills it in from the
    dataset (:func:`lanfer.config.resolve_num_classes`) before building the model."""
    if model_cfg.num_classes is None:
        raise ValueError("model.num_classes is unset: it is taken from the dataset's classes when training "
                         "(lanfer.config.resolve_num_classes); set it to build a model without data")
    return dict(name=model_cfg.name, num_classes=model_cfg.num_classes, fusion=model_cfg.fusion,
                head_widths=tuple(model_cfg.head_widths), dropout=model_cfg.dropout)


def upsample_attention(f_m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """F_m (B, 1, h, w) -> (B, 1, H, W) bilinear, for overlays on the input image."""
    return F.interpolate(f_m, size=size, mode="bilinear", align_corners=False)
