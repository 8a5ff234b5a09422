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
    :meth:`load` for images not stored as files)."""

    def __init__(self, samples: list[Sample], classes: list[str], transform: Callable | None = None,
                 name: str = "dataset", skip_bad: bool = False):
        self.samples = samples
        self.classes = list(classes)
        self.transform = transform
        self.name = name
        self.skip_bad = skip_bad
        self.bad: list[str] = []  # images skipped under skip_bad, with the reason

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> list[Any]:
        return [s.label for s in self.samples]

    def load(self, index: int) -> Image.Image:
        return load_image(self.samples[index].path)

    def __getitem__(self, index: int):
        s = self.samples[index]
        try:
            image = self.load(index)
        except DataError as e:
            if not self.skip_bad:
                raise
            # A bad file under skip_bad: counted and replaced by a neighbour so batch shapes hold; the
            # count is reported by the training loop, never a silent change of the dataset's size.
            self.bad.append(str(e))
            warnings.warn(f"skipping bad image: {e}")
            return self[(index + 1) % len(self)]
        if self.transform is not None:
            image = self.transform(image)
        label = s.label
        if isinstance(label, (list, tuple)):
            label = torch.tensor(label, dtype=torch.float32)
        meta = dict(s.meta)
        meta.setdefault("path", s.path)
        meta.setdefault("index", index)
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
