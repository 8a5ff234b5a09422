"""The optimiser and the learning-rate schedule (per iteration: linear warm-up, then cosine, step or constant)."""
from __future__ import annotations

import math

import torch

from ..config import Config, ConfigError


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW (``train.optimizer``), over every parameter."""
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    raise ConfigError(f"train.optimizer={t.optimizer!r} is not one of sgd, adamw")


def lr_lambda(cfg: Config, steps_per_epoch: int):
    total = max(1, cfg.train.epochs * steps_per_epoch)
    warm = int(cfg.train.warmup_epochs * steps_per_epoch)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.train.schedule == "constant":
            return 1.0
        if cfg.train.schedule == "step":
            return cfg.train.gamma ** ((step // steps_per_epoch) // max(1, cfg.train.step_size))
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return f
