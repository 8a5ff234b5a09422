"""Models: backbones, the LAN head and its fusion, FERNet, and the model registry (``create_model``).

Paper (Cho & Lee 2022, section III-B): F_o = the backbone's last lattice ((B, 512, 7, 7) for ResNet-18 at
224 px); the LAN head (four 3x3 convolutions and a sigmoid) predicts F_m (B, 1, 7, 7); F_a = F_o * F_m;
f = GAP(F_o) + GAP(F_a); an FC layer classifies. Every model name pairs a backbone with LAN or the plain
baseline (FC on GAP(F_o)), so a comparison between the two changes only the head:

================================  ==============  ==========================================================
name                              backbone        notes
================================  ==============  ==========================================================
``lan_resnet18`` / ``resnet18``   ResNet-18       the paper's; ``pretrained=`` a backbone file (MS-Celeb-1M)
``lan_mobilenet_vggface2`` /      MobileNet-v1    ``pretrained="vggface2"``: HSE's face-identification
``mobilenet_vggface2``                            weights (VGGFace2), shipped in the package
``lan_dlib_resnet`` /             dlib ResNet     ``pretrained="dlib"``: dlib's face-recognition ResNet (29
``dlib_resnet``                   (29 conv)       convolutions, ~3M faces), shipped; 2x2 lattice at 150-192 px,
                                                  needs >= 103 px; no FER model is trained on it yet
================================  ==============  ==========================================================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..checkpoint import CheckpointError, load_backbone, load_state, read_model_info, read_weights
from ..info import LAN_NAMES, MODEL_NAMES, ModelInfo
from ..pretrained import find, find_backbone, is_backbone_tag, is_shipped_name
from .backbones import BACKBONES, DlibResNetBackbone, MobileNetV1Backbone, ResNet18Backbone, create_backbone
from .head import FUSIONS, LANHead, fuse
from .net import FERNet, LANOutput

#: model name -> (backbone name, LAN head or not); the names are :data:`lanfer.info.MODEL_NAMES`
ARCHS: dict[str, tuple[str, bool]] = {
    "lan_resnet18": ("resnet18", True),
    "resnet18": ("resnet18", False),
    "lan_mobilenet_vggface2": ("mobilenet_v1", True),
    "mobilenet_vggface2": ("mobilenet_v1", False),
    "lan_dlib_resnet": ("dlib_resnet", True),
    "dlib_resnet": ("dlib_resnet", False),
}
assert tuple(ARCHS) == MODEL_NAMES, "lanfer.info.MODEL_NAMES must list the registry's names"
assert LAN_NAMES == tuple(n for n, (_, lan) in ARCHS.items() if lan), "lanfer.info.LAN_NAMES: the LAN models"

__all__ = ["ARCHS", "BACKBONES", "FUSIONS", "DlibResNetBackbone", "FERNet", "LANHead", "LANOutput", "MobileNetV1Backbone",
           "ResNet18Backbone", "backbone_of", "create_backbone", "create_model", "fuse", "load_model",
           "model_kwargs_from_config", "upsample_attention"]


def backbone_of(name: str) -> str:
    """The backbone name a model name is built on (``"lan_mobilenet_vggface2"`` -> ``"mobilenet_v1"``)."""
    if name not in ARCHS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(ARCHS)}")
    return ARCHS[name][0]


def create_model(name: str = "lan_resnet18", num_classes: int | None = None, fusion: str = "add",
                 pretrained: str | None = None, head_widths=(256, 128, 64), dropout: float = 0.0,
                 verbose: bool = False, **kw) -> FERNet:
    """Build a model by name (see the module docstring for the names).

    Args:
        name: a name of :data:`ARCHS`: ``"lan_resnet18"`` (LAN, the paper's model), ``"resnet18"`` (the plain
            baseline: same backbone, FC on GAP(F_o)), ``"lan_mobilenet_vggface2"`` / ``"mobilenet_vggface2"``,
            ``"lan_dlib_resnet"`` / ``"dlib_resnet"``.
        num_classes: expression classes (any >= 2; 7 when neither given nor fixed by a shipped model).
        fusion: ``"add"`` (paper default), ``"concat"`` or ``"average"``; ignored by the baseline.
        pretrained: a shipped model's tag or name (``"ferplus"``: the whole trained model, its classes and
            head from its record, see :mod:`lanfer.pretrained`); a shipped backbone's tag (``"vggface2"``, ``"dlib"``:
            identity weights for the backbone only, :func:`lanfer.pretrained.backbones_table`); or a path to
            backbone weights (torchvision keys, ``module.``-prefixed keys, or the ijba MS-Celeb-1M
            ``ijba_res18_naive.pth.tar``; see :func:`lanfer.checkpoint.load_backbone`).
        head_widths: the three hidden widths of the LAN head's four convolutions.

    A model built from a shipped tag carries its :class:`~lanfer.info.ModelInfo` as ``model.info``.
    """
    if kw:
        raise TypeError(f"create_model got unknown arguments {sorted(kw)}")
    if name not in ARCHS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(ARCHS)}")
    backbone, attention = ARCHS[name]
    if pretrained and is_shipped_name(pretrained):
        shipped = find(str(pretrained), arch=name)
        model, info = load_model(shipped.path, expect_arch=name)
        if num_classes is not None and num_classes != info.num_classes:
            raise ValueError(f"pretrained={pretrained!r} is a {info.num_classes}-class model ({', '.join(info.classes)}); "
                             f"num_classes={num_classes} would need a new classifier: load it with "
                             "num_classes=None, or fine-tune from its backbone file")
        model.info = info
        return model.train()
    model = FERNet(num_classes=7 if num_classes is None else num_classes, attention=attention,
                   fusion=fusion, head_widths=tuple(head_widths), dropout=dropout, backbone=backbone)
    model.arch = name  # recorded in checkpoints, checked on load
    if pretrained:
        if is_backbone_tag(pretrained):
            weights = find_backbone(str(pretrained))
            if weights.backbone != backbone:
                raise ValueError(f"pretrained={pretrained!r} holds {weights.backbone} weights but {name!r} is built "
                                 f"on {backbone}; use a {weights.backbone} model "
                                 f"({', '.join(n for n, (b, _) in ARCHS.items() if b == weights.backbone)})")
            pretrained = weights.path
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
