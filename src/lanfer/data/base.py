"""The data contract every dataset follows (the registry of readers is :mod:`lanfer.data.registry`).

A dataset yields ``(image, label, meta)``: ``image`` is a PIL RGB image (or whatever ``transform`` makes of
it), ``label`` an ``int`` index into ``dataset.classes`` (or a float tensor of class probabilities for
soft-label modes), and ``meta`` a flat dict of JSON-friendly values (``path``, and where the dataset
knows them ``subject``, ``view``, ``yaw`` ...). Evaluation groups accuracy by any meta key.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset


class DataError(ValueError):
    """Bad dataset input: a missing file, a malformed line, a label out of range. Names the file/line."""


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def load_image(path: str | Path) -> Image.Image:
    """Open an image file as RGB, raising :class:`DataError` that names the file when it cannot."""
    try:
        with Image.open(path) as im:
            im.load()
            # phone photos store their rotation in EXIF; apply it so faces are upright
            return ImageOps.exif_transpose(im).convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image file {str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"image file {str(path)!r} could not be decoded ({e}); remove or replace it, "
                        "or pass --skip-bad / data.skip_bad=true to skip such files") from None


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
