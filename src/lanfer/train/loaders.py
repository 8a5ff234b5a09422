"""The training and evaluation data of a run: the splits with their preset transforms, the epoch's sampler
(shuffled or class-balanced, this rank's share) and the loaders."""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch.utils.data import DataLoader

from .. import distributed as dist
from ..config import Config, ConfigError, resolve_num_classes, resolve_workers
from ..data import EvalPreset, TrainPreset, build_dataset_from_config, collate


def build_datasets(cfg: Config) -> dict[str, Any]:
    """Train / val / test datasets with the preset transforms (the only place splits are built).

    Fills in ``cfg.model.num_classes`` from the classes when the config leaves it unset."""
    d = cfg.data
    train_tf = TrainPreset(d.image_size, d.normalize, augment=d.augment, color=d.color)
    eval_tf = EvalPreset(d.image_size, d.normalize, d.color)
    out = {"train": build_dataset_from_config(d, d.train_split, transform=train_tf)}
    if cfg.loss.distill:  # the teachers' soft targets, mixed in before anything reads the labels (sampler, prior)
        from ..distill import load_targets, mix_targets

        mix_targets(out["train"], load_targets(cfg.loss.distill), cfg.loss.distill_weight, d.root)
    # The guidance fit reads the training images without augmentation: same samples, another transform
    # (a shallow copy, so large indexes such as AffectNet's are built once).
    out["train_plain"] = copy.copy(out["train"])
    out["train_plain"].transform = eval_tf
    if d.val_split:
        out["val"] = build_dataset_from_config(d, d.val_split, transform=eval_tf, subset=d.subset)
    if d.test_split:
        if d.test_split == d.val_split and "val" in out:
            out["test"] = out["val"]
        else:
            out["test"] = build_dataset_from_config(d, d.test_split, transform=eval_tf, subset=d.subset)
    classes = out["train"].classes
    for k, ds in out.items():
        if list(ds.classes) != list(classes):
            raise ConfigError(f"split {k!r} has classes {ds.classes} but train has {classes}")
    resolve_num_classes(cfg, classes)  # before any model is built; config.yaml then records the number
    return out


def make_sampler(cfg: Config, dataset, epoch: int):
    """The one place the training sampler is chosen: shuffled or class-balanced, this rank's share of it.

    Seeded from ``seed * 1000 + epoch`` so the order is a function of the epoch alone (exact resume), and drawn
    for the whole epoch before it is dealt to ranks, so N processes at batch B take the steps of one process at
    batch N*B (:class:`~lanfer.data.sampling.EpochSampler`)."""
    from ..data.sampling import EpochSampler

    return EpochSampler(dataset, seed=cfg.seed * 1000 + epoch, balanced=cfg.data.balanced_sampling,
                        rank=dist.rank(), world=dist.world_size())


def make_loader(cfg: Config, dataset, train: bool, epoch: int = 0) -> DataLoader:
    kw: dict[str, Any] = dict(batch_size=cfg.train.batch_size,
                              num_workers=resolve_workers(cfg.data.num_workers, cfg.train.device),
                              collate_fn=collate, pin_memory=torch.cuda.is_available(),
                              persistent_workers=False)
    if train:
        kw["sampler"] = make_sampler(cfg, dataset, epoch)
        kw["drop_last"] = len(kw["sampler"]) > cfg.train.batch_size
        kw["generator"] = torch.Generator().manual_seed(cfg.seed * 1000 + epoch + 1)  # worker seeds
    return DataLoader(dataset, **kw)
