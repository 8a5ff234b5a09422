"""Backbones: an image (B, 3, S, S) -> a feature lattice F_o (B, C, S/32, S/32), by name.

* ``resnet18``: torchvision's ResNet-18 up to conv5_x (C = 512), the paper's backbone.
* ``mobilenet_v1``: the MobileNet-v1 body (a 3x3 stride-2 convolution, then 13 depthwise + pointwise blocks,
  ReLU6; C = 1024) of HSE's face-identification network trained on VGGFace2 (Savchenko), ported from its
  TF.js graph by ``scripts/port/convert_hse_mobilenet.py``. Its batch norms were folded into the weights by the
  converter that published it, so every convolution carries a bias and there is no BatchNorm to re-estimate:
  fine-tuning trains the folded affine directly.
* ``dlib_resnet``: dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``, 29 convolutions,
  32-256 channels; C = 256), trained by Davis King on about 3 million faces for a 128-d identity descriptor,
  ported from face-api's TF.js weights by ``scripts/port/convert_dlib_resnet.py``. Its affine (scale) layers
  are folded into the convolutions, as above. Its lattice is small: 2x2 at 150-192 px, 3x3 at 224 px.

Every backbone exposes ``out_channels`` and returns the last lattice; :class:`lanfer.model.FERNet` puts the
LAN head or plain GAP on top, so LAN, the baseline, the guidance fit, ``cam`` and export work on any of them.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


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


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's ``padding="SAME"``: output side ceil(S / stride) at any input size.

    For stride 1 and an odd kernel that is the symmetric padding k // 2. For stride 2 TF pads
    ``max((ceil(S/s) - 1) * s + k - S, 0)`` in total and puts the odd pixel at the bottom/right: on an even
    side with a 3x3 kernel that is 0 above and 1 below, which a symmetric PyTorch padding would shift by one
    pixel. The padding is computed from the input's size, so a port is exact at every resolution.
    """

    def __init__(self, *args, **kw):
        super().__init__(*args, padding=0, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        h, w = x.shape[-2:]
        ph = max((math.ceil(h / sh) - 1) * sh + kh - h, 0)
        pw = max((math.ceil(w / sw) - 1) * sw + kw - w, 0)
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return super().forward(x)


class DepthwiseSeparable(nn.Module):
    """MobileNet-v1's block: 3x3 depthwise (groups = C) then 1x1 pointwise, each followed by ReLU6."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.dw = SameConv2d(c_in, c_in, 3, stride=stride, groups=c_in, bias=True)
        self.pw = nn.Conv2d(c_in, c_out, 1, bias=True)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.pw(self.act(self.dw(x))))


# (output channels, stride) of the 13 blocks of MobileNet-v1 at width 1.0 (Howard et al. 2017, Table 1)
MOBILENET_V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
                       (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


class MobileNetV1Backbone(nn.Module):
    """MobileNet-v1 (width 1.0) body: image (B, 3, S, S) -> F_o (B, 1024, ceil(S/32), ceil(S/32)).

    ``stem`` is the 3x3 stride-2 convolution (``conv1`` in the Keras graph), ``blocks[i]`` the graph's
    ``conv_dw_{i+1}`` / ``conv_pw_{i+1}``. At 224 px the lattice is 7x7 (the paper's), at 160 px 5x5, at
    112 px 4x4. Input: RGB in the order and normalisation its weights' record names (``"vggface2_bgr"`` for
    the HSE weights: the BGR channel order of the original is folded into ``stem``'s weights by the converter).
    """

    out_channels = 1024

    def __init__(self):
        super().__init__()
        self.stem = SameConv2d(3, 32, 3, stride=2, bias=True)
        self.act = nn.ReLU6(inplace=True)
        blocks, c = [], 32
        for c_out, stride in MOBILENET_V1_BLOCKS:
            blocks.append(DepthwiseSeparable(c, c_out, stride))
            c = c_out
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """F_o (B, 1024, h, w); with ``upto=k`` the output of block k (1-based, the graph's ``conv_pw_k``)."""
        x = self.act(self.stem(x))  # (B, 32, S/2, S/2)
        if upto is None:
            return self.blocks(x)  # (B, 1024, S/32, S/32)
        for block in self.blocks[:upto]:
            x = block(x)
        return x


class DlibResidual(nn.Module):
    """dlib's residual block (``ares`` / ``ares_down``): 3x3 conv, ReLU, 3x3 conv, plus the shortcut, ReLU.

    The down block's first convolution has stride 2 and no padding (dlib's default for stride 2, TF's "valid"),
    its shortcut is a 2x2 average pool (stride 2) zero-padded in channels, and where the two differ by a pixel
    (an even input side) the convolution's output is zero-padded at the bottom/right to the pool's size, as
    dlib's ``add_prev`` and face-api's ``residualDown`` do. The converter folded each convolution's scale
    layer (dlib's ``affine``) into its weights.
    """

    def __init__(self, c_in: int, c_out: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2 if down else 1, padding=0 if down else 1, bias=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))  # (B, C_out, h, w)
        if not self.down:
            return F.relu(out + x)
        short = F.avg_pool2d(x, 2, 2)  # (B, C_in, floor(H/2), floor(W/2)) >= (h, w)
        dh, dw = short.shape[-2] - out.shape[-2], short.shape[-1] - out.shape[-1]
        if dh or dw:
            out = F.pad(out, (0, dw, 0, dh))
        if short.shape[1] != out.shape[1]:
            short = F.pad(short, (0, 0, 0, 0, 0, out.shape[1] - short.shape[1]))
        return F.relu(out + short)


#: (face-api / dlib layer name, output channels, down) of the ResNet's 14 residual blocks, in order
#: (the stem and 14 x 2 convolutions: dlib's 29)
DLIB_RESNET_BLOCKS = (
    ("conv32_1", 32, False), ("conv32_2", 32, False), ("conv32_3", 32, False),
    ("conv64_down", 64, True), ("conv64_1", 64, False), ("conv64_2", 64, False), ("conv64_3", 64, False),
    ("conv128_down", 128, True), ("conv128_1", 128, False), ("conv128_2", 128, False),
    ("conv256_down", 256, True), ("conv256_1", 256, False), ("conv256_2", 256, False),
    ("conv256_down_out", 256, True),
)


class DlibResNetBackbone(nn.Module):
    """dlib's face-recognition ResNet (29 convolutions) up to its last lattice: image (B, 3, S, S) -> F_o (B, 256, h, w).

    A 7x7 stride-2 convolution without padding, ReLU, a 3x3 stride-2 max pool, then the residual blocks of
    :data:`DLIB_RESNET_BLOCKS` (``blocks[i]`` is face-api's ``DLIB_RESNET_BLOCKS[i][0]``). dlib then averages
    the lattice and projects it to its 128-d descriptor with a bias-free FC layer; the converter ships that
    matrix as ``descriptor.weight`` (128, 256) in the same file, outside this module (FERNet puts its own head
    on F_o, and an unused parameter would upset DDP). Lattice sides: 2 at 150 px (dlib's input), 160 and
    192 px; 3 at 224 px; 1 at 103-149 px; below 103 px it cannot run (refused). Input: RGB normalised ``"dlib_rgb"``.
    """

    out_channels = 256
    #: the smallest input side it runs at (a 1x1 lattice up to 149 px)
    min_input_size = 103

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, stride=2, padding=0, bias=True)
        blocks, c = [], 32
        for _, c_out, down in DLIB_RESNET_BLOCKS:
            blocks.append(DlibResidual(c, c_out, down))
            c = c_out
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """F_o (B, 256, h, w); with ``upto=k`` the output of the first k residual blocks."""
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(f"DlibResNetBackbone needs inputs of at least {self.min_input_size} px (its unpadded "
                             f"stride-2 convolutions shrink the lattice to nothing); got {tuple(x.shape[-2:])}: "
                             "set data.image_size to 150 (dlib's), 160 or 224")
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)  # (B, 32, (S-7)//2+1 -> ..., ...)
        return self.blocks[:upto](x) if upto is not None else self.blocks(x)


#: backbone name -> class; :data:`lanfer.model.ARCHS` maps model names onto these
BACKBONES: dict[str, type[nn.Module]] = {"resnet18": ResNet18Backbone, "mobilenet_v1": MobileNetV1Backbone,
                                         "dlib_resnet": DlibResNetBackbone}


def create_backbone(name: str) -> nn.Module:
    """A freshly initialised backbone by name (weights are loaded by the caller)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; available: {', '.join(BACKBONES)}")
    return BACKBONES[name]()
