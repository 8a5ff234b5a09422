"""Datasets in their official layouts, behind one contract: ``build_dataset(name, root, split, ...)``, or
``build_dataset_from_config(cfg.data, split, transform)`` from an experiment config.

Every reader is imported below by name; importing it registers its builder (:mod:`.registry`), so the list
of readers is this file, not a side effect hidden elsewhere.
"""
from .base import DataError, FERDataset, Sample, collate, load_image
from .registry import available_datasets, build_dataset, build_dataset_from_config, register_dataset

# The readers: each module registers the names in the comment (data.name in a config).
from .generic import build_csv, build_imagefolder  # "imagefolder", "csv"
from .rafdb import build_rafdb  # "rafdb"
from .fer2013 import build_fer2013  # "fer2013"
from .ferplus import build_ferplus  # "ferplus"
from .affectnet import build_affectnet  # "affectnet"
from .kdef import KDEF_VIEWS, build_kdef, kdef_folds  # "kdef"
from .synth.dataset import build_synth  # "synth": sets written by the synthetic renderer
from .prepare import build_prepared  # "prepared": the decode-once cache of any of the above

from .presets import EvalPreset, TrainPreset, denormalize, normalization
from .poselists import PAPER_COUNTS, restrict_to_list
from .sampling import balanced_sampler

__all__ = ["DataError", "FERDataset", "Sample", "collate", "load_image",
           "available_datasets", "build_dataset", "build_dataset_from_config", "register_dataset",
           "build_csv", "build_imagefolder", "build_rafdb", "build_fer2013", "build_ferplus", "build_affectnet",
           "build_kdef", "build_synth", "build_prepared", "KDEF_VIEWS", "kdef_folds",
           "EvalPreset", "TrainPreset", "denormalize", "normalization",
           "PAPER_COUNTS", "restrict_to_list", "balanced_sampler"]
