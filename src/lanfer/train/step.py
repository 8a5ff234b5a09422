"""The loop's body: one epoch of optimisation steps (LAN's CE + alpha * BCE against the guidance map) in the
configured precision, and the validation pass whose predictions are gathered from every rank."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .. import distributed as dist
from ..config import Config, amp_mode
from ..evaluate import predict_loader, summarize
from ..guidance import Guidance
from ..losses import lan_loss
from ..precision import autocast, grad_scaler, resolve_precision
from .loaders import make_loader


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: training stops before the bad step changes any weight, and the run's
    ``last.ckpt`` (the end of the last finished epoch, written atomically) stays as it was."""

    def __init__(self, value: float, step: int, epoch: int, cfg: Config):
        last = Path(cfg.out or ".") / "last.ckpt"
        kept = (f"the last good checkpoint {last} (end of epoch {epoch}) is kept; after fixing the cause, "
                "continue with --resume" if last.is_file() else "no epoch had finished, so there is no checkpoint")
        super().__init__(f"the loss became {value} at step {step} (epoch {epoch + 1}); stopped before the "
                         f"step changed any weight: {kept}. Lower train.lr (now {cfg.train.lr}) or check the "
                         "data of this step")
        self.step, self.epoch = step, epoch


def train_one_epoch(model, loader, optimizer, scheduler, cfg: Config, device, guidance: Guidance | None,
                    frozen: torch.nn.Module | None, epoch: int, step: int, progress: bool,
                    scaler: torch.amp.GradScaler | None = None, class_weight: torch.Tensor | None = None,
                    logit_offset: torch.Tensor | None = None) -> tuple[dict, int]:
    """One epoch of optimisation steps in ``cfg.train.amp``'s precision; returns (metrics reduced over ranks,
    step). ``scaler`` carries fp16's loss scale from epoch to epoch (and through last.ckpt); ``class_weight``
    and ``logit_offset`` are the class-aware CE's terms (:func:`lanfer.losses.class_balance_terms`)."""
    from ..progress import progress_bar

    model.train()
    # total, ce, bce, correct, guidance-map mean, summed over samples; kept on the device so the step never
    # waits for a GPU->CPU copy (one sync per epoch, plus the progress bar's when it is shown)
    sums = torch.zeros(5, dtype=torch.float64, device=device)
    seen = 0
    t0 = time.perf_counter()
    use_guidance = guidance is not None and cfg.loss.alpha > 0
    precision, _ = resolve_precision(amp_mode(cfg.train.amp), device)
    scaler = scaler if scaler is not None else grad_scaler(precision, device)
    bar = progress_bar(loader, desc=f"epoch {epoch + 1}/{cfg.train.epochs}", enabled=progress, leave=False)
    for images, labels, _ in bar:
        if cfg.train.max_steps is not None and step >= cfg.train.max_steps:
            break
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast(precision, device):
            # through the (possibly DDP-wrapped) model's own forward: DDP's backward hooks average gradients
            out = model(images, return_maps=True)
        gmap = None
        if use_guidance and out.attention is not None:
            with torch.no_grad():
                f_o = frozen(images) if frozen is not None else out.features.detach()  # (B, 512, H, W)
                gmap = guidance.assign(f_o.float())  # (B, 1, H, W) of 0/1
        total, ce, bce = lan_loss(out.logits.float(), labels, out.attention, gmap, alpha=cfg.loss.alpha,
                                  label_smoothing=cfg.train.label_smoothing, class_weight=class_weight,
                                  logit_offset=logit_offset)
        if not torch.isfinite(total):
            raise NonFiniteLossError(total.item(), step, epoch, cfg)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(total).backward()  # the identity unless fp16
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        b = images.shape[0]
        hard = labels.argmax(1) if labels.ndim == 2 else labels
        # the guidance map's share of 1s shows drift: fine-tuned F_o leaving the pretrained centres' split
        gfrac = gmap.mean() if gmap is not None else torch.zeros((), device=device)
        sums += torch.stack([total.detach() * b, ce.detach() * b, bce.detach() * b,
                             (out.logits.argmax(1) == hard).sum(), gfrac * b]).double()
        seen += b
        if not bar.disable:  # drawn bars only: .item() waits for the device
            bar.set_postfix(loss=f"{total.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.4f}")
    counts = dist.all_reduce_sum(torch.cat([sums, torch.tensor([seen], dtype=torch.float64, device=device)])).cpu()
    n = max(1.0, counts[5].item())
    dt = time.perf_counter() - t0
    return {"train_loss": counts[0].item() / n, "train_ce": counts[1].item() / n,
            "train_bce": counts[2].item() / n, "train_accuracy": counts[3].item() / n,
            "train_guidance_frac": counts[4].item() / n,
            "train_images": int(counts[5].item()), "images_per_s": counts[5].item() / max(dt, 1e-9),
            "lr": scheduler.get_last_lr()[0], "precision": precision}, step


def validate(model: torch.nn.Module, dataset, cfg: Config, classes: list[str], device, precision: str) -> dict:
    """Validation metrics of ``model`` on ``dataset``: each rank predicts its share (items ``rank, rank + world,
    ...``), and the predictions of all ranks are gathered, so every rank returns the whole set's metrics."""
    world = dist.world_size()
    part = dataset if world == 1 else torch.utils.data.Subset(dataset, range(dist.rank(), len(dataset), world))
    targets = preds = np.zeros(0, dtype=np.int64)
    if len(part):
        targets, preds, _, _ = predict_loader(model, make_loader(cfg, part, False), device,
                                              channels_last=cfg.train.channels_last, precision=precision)
    shares = dist.all_gather_objects((targets, preds))
    return summarize(np.concatenate([t for t, _ in shares]), np.concatenate([p for _, p in shares]), classes)
