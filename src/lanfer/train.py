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
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from . import distributed as dist
from .checkpoint import (CheckpointError, load_state, load_training_state, save_model, save_training_state)
from .cluster import fit_guidance_for
from .config import Config, ConfigError, amp_mode, resolve_num_classes, resolve_workers
from .data import EvalPreset, TrainPreset, build_dataset_from_config, collate
from .distributed import log, seed_everything
from .evaluate import evaluate, format_metrics, predict_loader, summarize, write_metrics
from .guidance import Guidance
from .losses import lan_loss
from .info import FaceCrop, ModelInfo
from .io import atomic_write
from .model import create_model, model_kwargs_from_config
from .precision import autocast, grad_scaler, resolve_precision


# ----------------------------------------------------------------------------------------------------
# data


def build_datasets(cfg: Config) -> dict[str, Any]:
    """Train / val / test datasets with the preset transforms (the only place splits are built).

    Fills in ``cfg.model.num_classes`` from the classes when the config leaves it unset."""
    d = cfg.data
    train_tf = TrainPreset(d.image_size, d.normalize, augment=d.augment, color=d.color)
    eval_tf = EvalPreset(d.image_size, d.normalize, d.color)
    out = {"train": build_dataset_from_config(d, d.train_split, transform=train_tf)}
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
    from .data.sampling import EpochSampler

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


# ----------------------------------------------------------------------------------------------------
# optimisation


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


def model_info(cfg: Config, classes: list[str], command: str | None = None) -> ModelInfo:
    """The typed record a model file carries: enough to rebuild and feed the model with no other file."""
    d = cfg.data
    return ModelInfo(arch=cfg.model.name, classes=list(classes), input_size=d.image_size, normalize=d.normalize,
                     color=d.color, fusion=cfg.model.fusion, head_widths=list(cfg.model.head_widths),
                     dropout=cfg.model.dropout, crop=FaceCrop(**d.crop),
                     data={"name": d.name, "root": d.root, "options": d.options}, license=d.license,
                     command=command or _command_line(),
                     extra={"seed": cfg.seed, "alpha": cfg.loss.alpha, "guidance_source": cfg.guidance.source})


def _command_line() -> str | None:
    import sys

    argv = sys.argv
    if argv and Path(argv[0]).name in ("lanfer", "__main__.py"):
        return "lanfer " + " ".join(argv[1:])
    return None


def check_resume_config(saved: dict | None, cfg: Config, where: Path) -> None:
    """Refuse a resume whose model or data would differ from the run it continues (nanoGPT checks the same).

    The schedule may change (more epochs extend a run); the model's shape, the classes and the input may not:
    the optimizer state and the best-so-far score would belong to another model."""
    if not saved:
        return
    now = cfg.to_dict()
    diffs = []
    for section, keys in (("model", ("name", "num_classes", "fusion", "head_widths", "dropout")),
                          ("data", ("name", "image_size", "normalize", "classes", "color")),
                          ("loss", ("alpha",)), ("guidance", ("source",))):
        for k in keys:
            b = now[section][k]
            a = saved.get(section, {}).get(k, b)
            if a != b:
                diffs.append(f"{section}.{k}: {a!r} in the saved run, {b!r} now")
    if diffs:
        raise ConfigError(f"--resume: {where} was trained with another config ({'; '.join(diffs)}); resume with "
                          "the run's own config.yaml or start a new --out")


# ----------------------------------------------------------------------------------------------------
# the loop


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's) or AdamW (``train.optimizer``), over every parameter."""
    t = cfg.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    raise ConfigError(f"train.optimizer={t.optimizer!r} is not one of sgd, adamw")


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
                    scaler: torch.amp.GradScaler | None = None) -> tuple[dict, int]:
    """One epoch of optimisation steps in ``cfg.train.amp``'s precision; returns (metrics reduced over ranks,
    step). ``scaler`` carries fp16's loss scale from epoch to epoch (and through last.ckpt)."""
    from .progress import progress_bar

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
                                  label_smoothing=cfg.train.label_smoothing)
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


def _check_guidance_lattice(guidance: Guidance, backbone: torch.nn.Module, dataset, device) -> None:
    """Refuse, before the first step, a guidance file fitted on another lattice than this backbone and input size
    gives (GuidanceError names the file): one image through the backbone in eval mode, so no BatchNorm statistic
    moves."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        guidance.assign(backbone(dataset[0][0][None].to(device)))  # F_o (1, C, H, W) -> raises on a mismatch
    backbone.train(was_training)


def _drop_log_past(path: Path, epochs_done: int) -> None:
    """Keep only the metrics.jsonl lines of the epochs ``last.ckpt`` holds. An epoch's line is written before its
    checkpoint, so a run killed between the two would log that epoch again when resumed; a line cut off by the
    kill (not JSON) goes too."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)

    def keep(line: str) -> bool:
        try:
            return json.loads(line).get("epoch", 0) <= epochs_done
        except ValueError:
            return False

    kept = [ln for ln in lines if keep(ln)]
    if len(kept) != len(lines):
        log(f"{path}: dropped {len(lines) - len(kept)} line(s) past epoch {epochs_done}, the checkpoint's")
        atomic_write(path, lambda tmp: tmp.write_text("".join(kept)))


def train(cfg: Config, out: str | Path | None = None, resume: bool = False, progress: bool | None = None) -> dict:
    """Train a model as ``cfg`` describes; returns the final metrics (also written to ``out/metrics.json``).

    ``resume=True`` continues from ``out/last.ckpt`` exactly where it stopped.
    """
    out = Path(out or cfg.out or "runs/train")
    cfg.out = str(out)
    progress = cfg.train.progress if progress is None else progress
    device, rank, world = dist.setup(cfg.train.device)
    precision, why = resolve_precision(amp_mode(cfg.train.amp), device)
    progress = progress and dist.is_main()
    if dist.is_main():
        out.mkdir(parents=True, exist_ok=True)
    if resume and not (out / "last.ckpt").is_file():
        raise CheckpointError(f"--resume: no {out / 'last.ckpt'} to resume from; start without --resume")
    if not resume and (out / "last.ckpt").is_file():
        raise ConfigError(f"{out} already holds a run (last.ckpt); pass --resume to continue it or choose "
                          "another --out (nothing was overwritten)")
    seed_everything(cfg.seed)
    data = build_datasets(cfg)
    classes = data["train"].classes
    if dist.is_main():
        cfg.save(out / "config.yaml")
    log(f"data: {cfg.data.name} train={len(data['train'])} "
        + " ".join(f"{k}={len(data[k])}" for k in ("val", "test") if k in data)
        + f" classes={classes}")

    model = create_model(**model_kwargs_from_config(cfg.model), pretrained=cfg.model.pretrained, verbose=dist.is_main())
    model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)

    # Guidance: fitted on the pretrained backbone *before* any fine-tuning (see module docstring).
    guidance = frozen = None
    lan = cfg.model.name == "lan_resnet18" and cfg.loss.alpha > 0 and cfg.guidance.source != "none"
    gpath = out / "guidance.safetensors"
    if lan:
        if cfg.guidance.path:
            guidance = Guidance.load(cfg.guidance.path)
        elif gpath.is_file() and resume:
            guidance = Guidance.load(gpath)
        else:
            log("fitting guidance centres on the pretrained backbone ...")
            guidance = fit_guidance_for(cfg, model.backbone, data["train_plain"], device, out, progress)
            if dist.is_main():
                guidance.save(gpath)
                atomic_write(out / "guidance_summary.txt", lambda t: t.write_text(guidance.summary()))
        _check_guidance_lattice(guidance, model.backbone, data["train_plain"], device)
        if cfg.guidance.source == "frozen":
            frozen = copy.deepcopy(model.backbone).eval().requires_grad_(False)

    log(f"precision: {precision} ({why}); channels_last {cfg.train.channels_last}; compile {cfg.train.compile}; "
        f"{world} process{'es' * (world > 1)} on {device}")
    if precision == "fp16" and device.type == "cpu":
        log("warning: fp16 on a CPU runs in torch but without native fp16 arithmetic (a ResNet-18 step measured "
            "~40x slower than fp32 on an AMX Xeon); train.amp=bf16 or none is the CPU's choice")
    optimizer = build_optimizer(model, cfg)
    scaler = grad_scaler(precision, device)
    steps_per_epoch = max(1, len(make_loader(cfg, data["train"], True)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, steps_per_epoch))
    start_epoch, step, best = 0, 0, -1.0
    if resume:
        state = load_training_state(out / "last.ckpt", map_location=device)
        check_resume_config(state.get("config"), cfg, out / "last.ckpt")
        load_state(model, state["model"], where=str(out / "last.ckpt"))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step, best = state["epoch"], state["step"], state["best"]
        if frozen is not None and "frozen" in state:
            frozen.load_state_dict(state["frozen"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        log(f"resumed from {out / 'last.ckpt'} at epoch {start_epoch} (step {step})")
        if dist.is_main():
            _drop_log_past(out / "metrics.jsonl", start_epoch)
    step_model = model  # what the training step calls: DDP's wrapper and/or the compiled graph; `model` is saved
    if world > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.train.compile:
        step_model = torch.compile(step_model)  # compiles lazily, on the first steps

    writer = None
    if cfg.train.tensorboard and dist.is_main():
        try:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(out / "tb"))
        except ImportError:
            log("tensorboard is not installed; logging to metrics.jsonl only")

    for epoch in range(start_epoch, cfg.train.epochs):
        if cfg.train.max_steps is not None and step >= cfg.train.max_steps:
            break
        seed_everything(cfg.seed * 1000 + epoch)  # augmentation RNG: a function of the epoch (exact resume)
        if lan and cfg.guidance.recluster_every > 0 and epoch > 0 and epoch % cfg.guidance.recluster_every == 0:
            log(f"epoch {epoch + 1}: refitting guidance centres on the current backbone")
            guidance = fit_guidance_for(cfg, model.backbone, data["train_plain"], device, out, progress)
            model.train()
            if dist.is_main():
                guidance.save(gpath)
        loader = make_loader(cfg, data["train"], True, epoch)
        record, step = train_one_epoch(step_model, loader, optimizer, scheduler, cfg, device, guidance, frozen,
                                       epoch, step, progress, scaler=scaler)
        record = {"epoch": epoch + 1, "step": step, **record}
        dist.broadcast_buffers(model)  # rank 0's BatchNorm statistics: the ones saved below
        if "val" in data:
            m = validate(model, data["val"], cfg, classes, device, precision)
            record.update(val_accuracy=m["accuracy"], val_mean_class_accuracy=m["mean_class_accuracy"])
            score = m["accuracy"]
        else:
            score = epoch  # no validation split: the last epoch is the best
        improved = score > best
        best = max(best, score)
        record["best"] = best
        if dist.is_main():
            with open(out / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            if writer is not None:
                for k, v in record.items():
                    if isinstance(v, (int, float)):  # not the precision's name
                        writer.add_scalar(k, v, epoch + 1)
            if improved:
                save_model(out / "best.safetensors", model, model_info(cfg, classes))
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "step": step, "best": best,
                     "config": cfg.to_dict()}
            if frozen is not None:
                state["frozen"] = frozen.state_dict()
            if scaler.is_enabled():
                state["scaler"] = scaler.state_dict()
            save_training_state(out / "last.ckpt", state)
        log(f"epoch {epoch + 1}/{cfg.train.epochs}  loss {record['train_loss']:.4f} (ce {record['train_ce']:.4f}, "
            f"bce {record['train_bce']:.4f})  train acc {100 * record['train_accuracy']:.1f}%"
            + (f"  val acc {100 * record['val_accuracy']:.2f}%" if "val_accuracy" in record else "")
            + f"  {record['images_per_s']:.0f} img/s ({precision})")
    if writer is not None:
        writer.close()
    dist.barrier()

    # Final evaluation of the best weights on the test split.
    if not (out / "best.safetensors").is_file() and dist.is_main():
        save_model(out / "best.safetensors", model, model_info(cfg, classes))
    metrics: dict[str, Any] = {}
    if "test" in data and dist.is_main():
        from safetensors.torch import load_file

        load_state(model, load_file(str(out / "best.safetensors")), where=str(out / "best.safetensors"))
        metrics = evaluate(model, make_loader(cfg, data["test"], False), classes, device,
                           channels_last=cfg.train.channels_last, precision=precision)
        metrics["split"] = cfg.data.test_split
        metrics["precision"] = precision
        metrics["run"] = str(out)
        write_metrics(metrics, out / "metrics.json")
        log(format_metrics(metrics, f"test ({cfg.data.test_split}) with best.safetensors:"))
    # The datasets' own records (FERDataset.bad), merged by file: train and its un-augmented copy share one
    # record, and val may be test, so counting per dataset would count a file twice.
    bad = {path: reason for ds in data.values() for path, reason in ds.bad.items()}
    if bad:
        names = ", ".join(list(bad)[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        log(f"warning: {len(bad)} images could not be decoded and were replaced by the next good image "
            f"(data.skip_bad=true): {names}")
    dist.barrier()  # the other ranks wait for rank 0's test evaluation (and cross_validate's next fold)
    return metrics


def cross_validate(cfg: Config, folds: int, out: str | Path | None = None, resume: bool = False,
                   progress: bool | None = None) -> dict:
    """k-fold cross-validation (KDEF's protocol, paper Table 1): one run per fold in ``OUT/fold<k>``, then
    mean and std of the test accuracy (overall and by every metadata group) in ``OUT/cv_metrics.json``.

    The dataset must accept ``fold``/``folds`` options (``kdef`` does: identity-disjoint folds by default).
    Finished folds are reused; an interrupted fold is resumed when ``resume`` is set.
    """
    if folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {folds}")
    out = Path(out or cfg.out or "runs/cv")
    per_fold = []
    for k in range(folds):
        fcfg = copy.deepcopy(cfg)
        fcfg.data.options = {**cfg.data.options, "fold": k, "folds": folds}
        fout = out / f"fold{k}"
        if (fout / "metrics.json").is_file():
            log(f"fold {k + 1}/{folds}: reusing {fout}")
            per_fold.append(json.loads((fout / "metrics.json").read_text()))
            continue
        log(f"fold {k + 1}/{folds}")
        per_fold.append(train(fcfg, out=fout, resume=resume and (fout / "last.ckpt").is_file(), progress=progress))
    accs = np.array([m["accuracy"] for m in per_fold])
    summary: dict[str, Any] = {
        "folds": folds, "accuracy_mean": float(accs.mean()), "accuracy_std": float(accs.std(ddof=1)),
        "accuracy_per_fold": accs.tolist(),
        "mean_class_accuracy_mean": float(np.mean([m["mean_class_accuracy"] for m in per_fold])),
        "by": {},
    }
    for key in sorted({k for m in per_fold for k in m.get("by", {})}):
        groups = sorted({g for m in per_fold for g in m["by"].get(key, {})})
        summary["by"][key] = {}
        for g in groups:
            vals = [m["by"][key][g]["accuracy"] for m in per_fold if g in m["by"].get(key, {})]
            summary["by"][key][g] = {"mean": float(np.mean(vals)),
                                     "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0,
                                     "folds": len(vals)}
    if dist.is_main():
        write_metrics(summary, out / "cv_metrics.json")
        log(f"{folds}-fold cross-validation: accuracy {100 * summary['accuracy_mean']:.2f} "
            f"+/- {100 * summary['accuracy_std']:.2f}%")
    return summary
