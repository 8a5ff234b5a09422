"""Image transforms, owned by preset classes so training, evaluation and prediction cannot drift apart."""
from __future__ import annotations

import torch
from torchvision.transforms import v2 as T

from ..config import augment_mode
from ..info import NORMALIZATIONS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# HSE's VGGFace2 MobileNet (Keras/caffe convention): 0..255 pixels minus the per-channel means of BGR order
# (103.939, 116.779, 123.68), no scaling. The converter reorders the first convolution's input channels to
# RGB, so here the means are listed in RGB order and expressed on lanfer's [0, 1] pixels: (x - m/255) * 255.
VGGFACE2_BGR_MEAN = (123.68 / 255, 116.779 / 255, 103.939 / 255)
VGGFACE2_BGR_STD = (1 / 255, 1 / 255, 1 / 255)
# dlib's face-recognition ResNet as face-api runs it: 0..255 RGB minus dlib's means, divided by 255 (dlib itself
# divides by 256; the shipped weights are face-api's, checked against face-api): on [0, 1] pixels x - m/255.
DLIB_RGB_MEAN = (122.782 / 255, 117.001 / 255, 104.298 / 255)
DLIB_RGB_STD = (1.0, 1.0, 1.0)


def normalization(kind: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) for a normalisation name. ``"none"`` keeps pixels in [0, 1]: the ijba MS-Celeb-1M
    ResNet-18 was trained that way, torchvision's ImageNet weights expect ``"imagenet"``, HSE's VGGFace2
    MobileNet ``"vggface2_bgr"`` (0..255 minus channel means), dlib's face-recognition ResNet ``"dlib_rgb"``."""
    if kind == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if kind == "none":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if kind == "vggface2_bgr":
        return VGGFACE2_BGR_MEAN, VGGFACE2_BGR_STD
    if kind == "dlib_rgb":
        return DLIB_RGB_MEAN, DLIB_RGB_STD
    raise ValueError(f"unknown normalisation {kind!r}; use one of {', '.join(NORMALIZATIONS)}")


class EvalPreset:
    """Resize an aligned face to ``size`` x ``size`` and normalise: used by evaluation and prediction."""

    def __init__(self, size: int = 224, normalize: str = "imagenet", color: str = "rgb"):
        mean, std = normalization(normalize)
        self.size = size
        self.mean, self.std = mean, std
        self.color = color
        self.transform = T.Compose([
            T.ToImage(),
            *_color_ops(color),
            T.Resize((size, size), antialias=True),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(mean, std),
        ])

    @classmethod
    def from_info(cls, info) -> EvalPreset:
        """The preprocessing a model was trained with, from its :class:`lanfer.info.ModelInfo`."""
        return cls(info.input_size, info.normalize, info.color)

    def __call__(self, image):
        return self.transform(image)


def _color_ops(color: str) -> list:
    # ITU-R 601 luminance replicated to 3 channels, as FER2013's grayscale faces were stored and loaded
    if color == "grayscale":
        return [T.Grayscale(num_output_channels=3)]
    if color == "rgb":
        return []
    raise ValueError(f"unknown colour mode {color!r}; use 'rgb' or 'grayscale'")


class TrainPreset:
    """FER augmentation. ``augment``: ``True``/``"full"`` (horizontal flip, small scale/rotation/translation,
    colour jitter, random erasing), ``"wild"`` (the same kinds, wider, plus blur and sharpening), ``"flip"``
    (horizontal flip only) or ``False``/``"none"`` (resize only).

    The geometric range of ``"full"`` is small on purpose: faces are already aligned, and large rotations
    would teach the model poses that alignment removes at test time. ``"wild"`` aims at the faces a user
    photographs rather than the dataset's: a detector frames them looser or tighter and off-centre than
    FER2013's crops (scale 0.6-1, shifts of 10%, 20 degrees), and they are sharper (a 48 px FER2013 face
    enlarged to 160 px is soft) or, far from a webcam, blurrier; so it sharpens or blurs some faces. ``"flip"``
    exists because on small sets with short schedules even small shifts cost accuracy (the demo's
    measurements, README).
    """

    def __init__(self, size: int = 224, normalize: str = "imagenet", augment: bool | str = True,
                 erasing: float = 0.25, color: str = "rgb"):
        mean, std = normalization(normalize)
        mode = augment_mode(augment)  # ConfigError (a ValueError) naming the bad value
        self.size = size
        ops = [T.ToImage(), *_color_ops(color)]
        if mode == "full":
            ops += [
                T.RandomResizedCrop((size, size), scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True),
                T.RandomHorizontalFlip(),
                T.RandomAffine(degrees=10, translate=(0.05, 0.05)),
                T.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.2),
            ]
        elif mode == "wild":
            # Sharpening and blur are exclusive (one or neither per face); on uint8 pixels, before scaling.
            ops += [
                T.RandomResizedCrop((size, size), scale=(0.6, 1.0), ratio=(0.8, 1.25), antialias=True),
                T.RandomHorizontalFlip(),
                T.RandomAffine(degrees=20, translate=(0.1, 0.1)),
                T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2),
                T.RandomChoice([T.RandomAdjustSharpness(3.0, p=1.0),
                                T.GaussianBlur(5, sigma=(0.3, 1.5)),
                                T.Identity()], p=[0.3, 0.2, 0.5]),
            ]
        else:
            ops += [T.Resize((size, size), antialias=True)]
            if mode == "flip":
                ops += [T.RandomHorizontalFlip()]
        ops += [T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)]
        if mode in ("full", "wild") and erasing > 0:
            ops += [T.RandomErasing(p=erasing, scale=(0.02, 0.2))]
        self.transform = T.Compose(ops)

    def __call__(self, image):
        return self.transform(image)


def denormalize(x: torch.Tensor, normalize: str = "imagenet") -> torch.Tensor:
    """Undo :class:`EvalPreset`'s normalisation: (B, 3, H, W) -> pixels in [0, 1] for display."""
    mean, std = normalization(normalize)
    mean_t = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    return (x * std_t + mean_t).clamp(0, 1)
