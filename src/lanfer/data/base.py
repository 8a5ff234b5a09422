"""The data contract every dataset follows (the registry of readers is :mod:`lanfer.data.registry`).

A dataset yields ``(image, label, meta)``: ``image`` is a PIL RGB image (or whatever ``transform`` makes of
it), ``label`` an ``int`` index into ``dataset.classes`` (or a float tensor of class probabilities for
soft-label modes), and ``meta`` a flat dict of JSON-friendly values (``path``, and where the dataset
knows them ``subject``, ``view``, ``yaw`` ...). Evaluation groups accuracy by any meta key.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset


class DataError(ValueError):
    """Bad dataset input: a missing file, a malformed line, a label out of range. Names the file/line."""


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

#: Images that declare more pixels than this are refused from their header, before any pixel is decoded:
#: a 100,000 x 100,000 PNG of a few kilobytes would otherwise ask for 30 GB. Pillow's own limit only warns
#: up to twice its value; this one refuses at once. The default is Pillow's (89.5 Mpx, 256 MiB as RGB);
#: ``LANFER_MAX_IMAGE_PIXELS`` raises or lowers it.
MAX_IMAGE_PIXELS = int(os.environ.get("LANFER_MAX_IMAGE_PIXELS", 89_478_485))

# 16-bit and 32-bit grey modes: ``convert("RGB")`` would clip them at 255 (a 16-bit photo turns white).
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as 8-bit RGB, raising :class:`DataError` that names the file when it cannot.

    The one entry point for image files (training, prepare, evaluation, prediction, export checks):

    * the header's size is checked against :data:`MAX_IMAGE_PIXELS` before anything is decoded;
    * the EXIF orientation is applied (phone photos store their rotation there), so faces are upright;
    * animated files (GIF, WebP, APNG) and multi-page TIFFs give their **first** frame;
    * 16-bit grey is scaled to 8 bits (not clipped), CMYK/palette/grey become RGB, alpha is dropped.
    """
    try:
        with warnings.catch_warnings():
            # the bomb warning is for sizes refused just below; say it once, as an error naming the file
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise DataError(f"image file {str(path)!r} declares {w} x {h} pixels, more than the limit of "
                                    f"{MAX_IMAGE_PIXELS:,} (a decompression bomb, or set LANFER_MAX_IMAGE_PIXELS)")
                im.load()
                return _to_rgb(ImageOps.exif_transpose(im))
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"image file {str(path)!r} does not exist") from None
    except Image.DecompressionBombError as e:  # Pillow refuses above twice its own limit, while opening
        raise DataError(f"image file {str(path)!r} declares more pixels than the limit of {MAX_IMAGE_PIXELS:,} "
                        f"(a decompression bomb, or set LANFER_MAX_IMAGE_PIXELS): {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            EOFError) as e:
        raise DataError(f"image file {str(path)!r} could not be decoded ({e}); remove or replace it, "
                        "or pass --skip-bad / data.skip_bad=true to skip such files") from None


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in _WIDE_MODES:
        a = np.asarray(im, dtype=np.float64)
        # 16-bit data (I;16, or I holding 16-bit values) maps 0..65535 to 0..255; 8-bit data in I stays
        scale = 257.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 1.0
        im = Image.fromarray(np.clip(np.rint(a / scale), 0, 255).astype(np.uint8))
    return im.convert("RGB")


@dataclass
class Sample:
    """One item: where its pixels come from, its label, and what else is known about it."""

    path: str  # a file path, or a stable pseudo-path for images held in memory (e.g. csv pixels)
    label: Any  # int class index, or a list of class probabilities (soft labels)
    meta: dict[str, Any] = field(default_factory=dict)


class FERDataset(Dataset):
    """A list of :class:`Sample` with class names; subclasses only build ``samples`` (and may override
    :meth:`load` for images not stored as files).

    Bad images (the one policy, for every reader): an image that cannot be decoded raises a
    :class:`DataError` naming the file. With ``skip_bad`` it is recorded once in :attr:`bad` (file ->
    reason) with a warning, and :meth:`__getitem__` returns the next good sample in its place, so batch
    shapes hold; whoever reports on the run reads :attr:`bad`. Entries that are bad before any pixel is read
    (a malformed label line, a missing file) are the readers' index-time checks (``_common.Issues``).
    """

    def __init__(self, samples: list[Sample], classes: list[str], transform: Callable | None = None,
                 name: str = "dataset", skip_bad: bool = False):
        self.samples = samples
        self.classes = list(classes)
        self.transform = transform
        self.name = name
        self.skip_bad = skip_bad
        # file -> reason, for images skipped under skip_bad; one entry per file however often it is read.
        # Shared by shallow copies (train.py's un-augmented view of the training set). DataLoader worker
        # processes fill their own copies, which the main process does not see.
        self.bad: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[Any]:
        return [s.label for s in self.samples]

    def load(self, index: int) -> Image.Image:
        return load_image(self.samples[index].path)

    def load_checked(self, index: int) -> Image.Image | None:
        """:meth:`load` under the bad-image policy: the image, or ``None`` for an image that cannot be decoded
        when ``skip_bad`` is set (recorded in :attr:`bad`); without ``skip_bad`` the error names the file."""
        path = self.samples[index].path
        if self.skip_bad and path in self.bad:  # known bad: do not decode (or warn) again
            return None
        try:
            return self.load(index)
        except DataError as e:
            if not self.skip_bad:
                raise
            self.record_bad(path, str(e))
            return None

    def record_bad(self, path: str, reason: str, warn: bool = True) -> None:
        """Record an image skipped under ``skip_bad`` (callers that decode on their own, e.g. prepare)."""
        if path not in self.bad:
            self.bad[path] = reason
            if warn:
                warnings.warn(f"skipping bad image: {reason}", stacklevel=3)

    def __getitem__(self, index: int):
        # A bad image is replaced by the next good one, wrapping around; a loop, not recursion, so an
        # all-bad dataset ends in an error instead of a RecursionError.
        n = len(self)
        for step in range(n):
            i = (index + step) % n
            image = self.load_checked(i)
            if image is not None:
                break
        else:
            example = next(iter(self.bad.values()), "")
            raise DataError(f"{self.name}: all {n} images failed to decode and were skipped (data.skip_bad=true); "
                            f"e.g. {example}")
        s = self.samples[i]
        if self.transform is not None:
            image = self.transform(image)
        label = s.label
        if isinstance(label, (list, tuple)):
            label = torch.tensor(label, dtype=torch.float32)
        meta = dict(s.meta)
        meta.setdefault("path", s.path)
        meta.setdefault("index", i)
        return image, label, meta

    def class_counts(self) -> list[int]:
        counts = [0] * len(self.classes)
        for s in self.samples:
            if isinstance(s.label, int):
                counts[s.label] += 1
            else:
                counts[max(range(len(s.label)), key=lambda k: s.label[k])] += 1
        return counts

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}, classes={self.classes})"


def collate(batch):
    """Stack images and labels; keep metadata as a list of dicts (its values may be None or strings)."""
    images, labels, metas = zip(*batch)
    images = torch.stack(list(images))
    if isinstance(labels[0], torch.Tensor):
        labels = torch.stack(list(labels))
    else:
        labels = torch.as_tensor(labels, dtype=torch.long)
    return images, labels, list(metas)
