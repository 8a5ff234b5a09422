"""The dataset registry: names that configs use (``data.name``) mapped to reader functions.

Each reader module registers its builder with ``@register_dataset("name")``; ``lanfer/data/__init__.py``
imports every reader module by name, so importing :mod:`lanfer.data` (or any module inside it) fills the
registry, as timm's ``models/__init__.py`` does for its models. A new reader is one file plus one import
line there.

A builder is ``fn(root, split, transform=None, classes=None, skip_bad=False, **options) -> FERDataset``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .base import DataError, FERDataset

if TYPE_CHECKING:  # annotation only: the data package reads a config, never builds one
    from ..config import DataConfig

_BUILDERS: dict[str, Callable[..., FERDataset]] = {}


def register_dataset(name: str):
    """Decorator: make a builder ``fn(root, split, transform=None, **options)`` available to :func:`build_dataset`
    and to configs as ``data.name``. A name registered twice is a programming error and raises."""

    def deco(fn):
        if name in _BUILDERS and _BUILDERS[name] is not fn:
            raise ValueError(f"dataset {name!r} is already registered by {_BUILDERS[name].__module__}")
        _BUILDERS[name] = fn
        return fn

    return deco


def available_datasets() -> list[str]:
    """The registered dataset names, sorted."""
    return sorted(_BUILDERS)


def build_dataset(name: str, root: str | Path | None, split: str, transform: Callable | None = None,
                  subset: str | Path | None = None, **options) -> FERDataset:
    """Build a registered dataset by name.

    Args:
        name: ``"imagefolder"``, ``"csv"``, ``"rafdb"``, ``"ferplus"``, ``"affectnet"``, ``"kdef"``,
            ``"fer2013"``, ``"synth"`` or ``"prepared"`` (see :func:`available_datasets`).
        root: the dataset's folder in its official layout (or the CSV file for ``"csv"``).
        split: ``"train"``, ``"val"`` or ``"test"`` (datasets map these to their own split names).
        transform: applied to each PIL image (see :mod:`lanfer.data.presets`).
        subset: a pose-list file (RAN's format) restricting the split to the images it names.
        **options: ``classes``, ``skip_bad`` and the dataset's own options (``fold``, ``folds``,
            ``num_classes``, ``label_mode`` ...).
    """
    if name not in _BUILDERS:
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    if root is None:
        raise DataError(f"dataset {name!r} needs a root folder: set data.root (e.g. --set data.root=/data/{name})")
    if not Path(root).exists():
        raise DataError(f"dataset root {str(root)!r} does not exist; download the dataset and point data.root at it")
    ds = _BUILDERS[name](root, split, transform=transform, **options)
    if subset is not None:  # the one place pose lists are applied, for every reader alike
        from .poselists import restrict_to_list

        restrict_to_list(ds, subset)
    if len(ds) == 0:
        raise DataError(f"dataset {name!r} at {str(root)!r} has no images in split {split!r}; "
                        "check the folder layout against the README")
    return ds


# Keys of DataConfig that build_dataset_from_config passes itself; the same key in data.options would collide.
_RESERVED_OPTIONS = ("classes", "skip_bad", "transform", "subset")


def build_dataset_from_config(data_cfg: "DataConfig", split: str, transform: Callable | None = None,
                              subset: str | Path | None = None) -> FERDataset:
    """The one way from a config's ``data`` section to a dataset: ``data.name``, ``data.root``,
    ``data.classes``, ``data.skip_bad`` and ``data.options`` become the reader's arguments.

    Args:
        data_cfg: a :class:`lanfer.config.DataConfig`.
        split: the split to read (usually one of ``data.train_split``/``val_split``/``test_split``).
        transform: applied to each PIL image (None: PIL images).
        subset: a pose-list file restricting the split. ``data.subset`` is not applied implicitly: it
            restricts the evaluation splits only, so callers pass it where it belongs.
    """
    options: dict[str, Any] = dict(data_cfg.options or {})
    clash = sorted(set(options) & set(_RESERVED_OPTIONS))
    if clash:
        key = clash[0]
        raise DataError(f"data.options.{key} is not a dataset option; set data.{key} instead")
    return build_dataset(data_cfg.name, data_cfg.root, split, transform=transform, subset=subset,
                         classes=data_cfg.classes, skip_bad=data_cfg.skip_bad, **options)
