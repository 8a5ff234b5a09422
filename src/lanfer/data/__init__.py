"""Datasets in their official layouts, behind one contract: ``build_dataset(name, root, split, ...)``."""
from .base import (DataError, FERDataset, Sample, available_datasets, build_dataset, collate, load_image,
                   register_dataset)
from .presets import EvalPreset, TrainPreset, denormalize, normalization
from .kdef import kdef_folds
from .poselists import PAPER_COUNTS, restrict_to_list
from .sampling import balanced_sampler

__all__ = ["DataError", "FERDataset", "Sample", "available_datasets", "build_dataset", "collate",
           "load_image", "register_dataset", "EvalPreset", "TrainPreset", "denormalize", "normalization",
           "kdef_folds", "PAPER_COUNTS", "restrict_to_list", "balanced_sampler"]
