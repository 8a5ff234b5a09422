"""Training: one visible loop that fine-tunes LAN (or the baseline), evaluates every epoch, logs, checkpoints
and resumes exactly.

Run directory (``--out DIR``)::

    config.yaml          the resolved config
    guidance.safetensors the guidance centres used (LAN with alpha > 0)
    metrics.jsonl        one line per epoch (losses, lr, throughput, validation metrics)
    best.safetensors     the best epoch's weights + model config + class names (rebuilds with no other file)
    last.ckpt            the full training state for --resume
    metrics.json         the final evaluation of best.safetensors on the test split

Design choices where the paper is silent (see README):
* guidance source: centres are fitted once on the *pretrained* backbone's F_o over the training set, before
  fine-tuning; each batch's own F_o (detached) is assigned to them (``guidance.source=batch``). A frozen copy
  of the pretrained backbone (``frozen``) and refitting every N epochs (``guidance.recluster_every``) are options.
* schedule: linear warm-up for ``train.warmup_epochs`` then cosine decay to zero, per iteration; lr 0.1 with
  SGD momentum 0.9 as the paper's initial rate.
* exact resume: every epoch reseeds the sampler and augmentation RNGs from ``seed * 1000 + epoch``, so a run
  resumed from ``last.ckpt`` sees the same batches as one that never stopped (no RNG state needs saving).

The package, one module per part: :mod:`~lanfer.train.loaders` (splits, sampler, loaders),
:mod:`~lanfer.train.optim` (optimiser, schedule), :mod:`~lanfer.train.step` (one epoch, validation),
:mod:`~lanfer.train.resume` (resume checks), :mod:`~lanfer.train.run` (``train``), :mod:`~lanfer.train.cv`
(``cross_validate``).
"""
from __future__ import annotations

from .cv import cross_validate
from .loaders import build_datasets, make_loader, make_sampler
from .optim import build_optimizer, lr_lambda
from .resume import check_resume_config
from .run import model_info, train
from .step import NonFiniteLossError, train_one_epoch, validate

__all__ = ["NonFiniteLossError", "build_datasets", "build_optimizer", "check_resume_config", "cross_validate",
           "lr_lambda", "make_loader", "make_sampler", "model_info", "train", "train_one_epoch", "validate"]
