"""``train``: one visible loop that builds the data, the model and its guidance, runs the epochs, validates,
logs, checkpoints, resumes, and evaluates the best weights on the test split (the run directory and the
design choices are in :mod:`lanfer.train`)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

from .. import distributed as dist
from ..checkpoint import (CheckpointError, load_state, load_training_state, read_model_info, read_weights, save_model,
                          save_training_state)
from ..cluster import fit_guidance_for
from ..config import Config, ConfigError, amp_mode
from ..distributed import log, seed_everything
from ..evaluate import evaluate, format_metrics, write_metrics
from ..guidance import Guidance
from ..info import FaceCrop, ModelInfo
from ..io import atomic_write
from ..info import LAN_NAMES
from ..losses import class_balance_terms
from ..model import create_model, model_kwargs_from_config
from ..precision import grad_scaler, resolve_precision
from ..pretrained import license_with_backbone
from .loaders import build_datasets, make_loader
from .optim import build_optimizer, lr_lambda
from .resume import _drop_log_past, check_resume_config
from .step import train_one_epoch, validate


def model_info(cfg: Config, classes: list[str], command: str | None = None) -> ModelInfo:
    """The typed record a model file carries: enough to rebuild and feed the model with no other file."""
    d = cfg.data
    return ModelInfo(arch=cfg.model.name, classes=list(classes), input_size=d.image_size, normalize=d.normalize,
                     color=d.color, fusion=cfg.model.fusion, head_widths=list(cfg.model.head_widths),
                     dropout=cfg.model.dropout, crop=FaceCrop(**d.crop),
                     data={"name": d.name, "root": d.root, "options": d.options},
                     license=license_with_backbone(d.license, cfg.model.pretrained),
                     command=command or _command_line(),
                     extra={"seed": cfg.seed, "alpha": cfg.loss.alpha, "guidance_source": cfg.guidance.source})


def _command_line() -> str | None:
    import sys

    argv = sys.argv
    if argv and Path(argv[0]).name in ("lanfer", "__main__.py"):
        return "lanfer " + " ".join(argv[1:])
    return None


def _check_guidance_lattice(guidance: Guidance, backbone: torch.nn.Module, dataset, device) -> None:
    """Refuse, before the first step, a guidance file fitted on another lattice than this backbone and input size
    gives (GuidanceError names the file): one image through the backbone in eval mode, so no BatchNorm statistic
    moves."""
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        guidance.assign(backbone(dataset[0][0][None].to(device)))  # F_o (1, C, H, W) -> raises on a mismatch
    backbone.train(was_training)


def _check_backbone_normalization(cfg: Config) -> None:
    """A shipped backbone was trained on one pixel normalisation; fine-tuning it on another silently costs
    accuracy (its first layer sees a shifted, rescaled image), so refuse the mismatch up front."""
    from ..pretrained import find_backbone, is_backbone_tag

    if cfg.model.pretrained and is_backbone_tag(cfg.model.pretrained):
        weights = find_backbone(str(cfg.model.pretrained))
        if cfg.data.normalize != weights.normalize:
            raise ConfigError(f"model.pretrained={cfg.model.pretrained!r} ({weights.name}) expects "
                              f"data.normalize={weights.normalize!r}, the config says {cfg.data.normalize!r}; "
                              f"set --set data.normalize={weights.normalize}")


def _init_from(model: torch.nn.Module, cfg: Config, classes: list[str]) -> None:
    """Load ``cfg.model.init`` (a trained lanfer model file) into the whole ``model``, refusing another
    architecture or class list by name before any weight is touched."""
    path = Path(cfg.model.init)
    if not path.is_file():
        raise ConfigError(f"model.init={cfg.model.init!r} does not exist; give a lanfer model file such as "
                          "RUN_DIR/best.safetensors, or leave model.init unset")
    info = read_model_info(path)
    if info.arch != cfg.model.name:
        raise ConfigError(f"model.init={str(path)!r} holds a {info.arch!r} model; this run builds "
                          f"{cfg.model.name!r} (--set model.name={info.arch})")
    if list(info.classes) != list(classes):
        raise ConfigError(f"model.init={str(path)!r} classifies {list(info.classes)}; the training data's classes "
                          f"are {list(classes)}")
    load_state(model, read_weights(path), where=str(path))
    log(f"model.init: all weights from {path}")


def _class_terms(cfg: Config, train_set, classes: list[str]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The CE's class weights and logit offset (``loss.class_weight``, ``loss.logit_adjust``) from the training
    split's class frequencies (each label's top class, as ``lanfer calibrate`` counts them)."""
    if not (cfg.loss.logit_adjust or cfg.loss.class_weight):
        return None, None
    from ..calibration import class_prior

    try:
        prior = class_prior(train_set.class_counts(), classes)
    except ValueError as e:
        raise ConfigError(f"loss.logit_adjust / loss.class_weight: {e}") from None
    log("class-aware CE: prior " + " ".join(f"{c}={p:.4f}" for c, p in zip(classes, prior))
        + f"; logit_adjust {cfg.loss.logit_adjust}, class_weight {cfg.loss.class_weight}")
    return class_balance_terms(prior, cfg.loss.logit_adjust, cfg.loss.class_weight)


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
    _check_backbone_normalization(cfg)
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
    if cfg.model.init:
        _init_from(model, cfg, classes)
    class_weight, logit_offset = _class_terms(cfg, data["train"], classes)
    model.to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)

    # Guidance: fitted on the pretrained backbone *before* any fine-tuning (see module docstring).
    guidance = frozen = None
    lan = cfg.model.name in LAN_NAMES and cfg.loss.alpha > 0 and cfg.guidance.source != "none"
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
                                       epoch, step, progress, scaler=scaler, class_weight=class_weight,
                                       logit_offset=logit_offset)
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
    if "test" in data and dist.is_main() and not cfg.train.final_test:
        metrics = {"split": None, "test": "not evaluated (train.final_test=false)",
                   "best_val_accuracy": best if "val" in data else None, "run": str(out)}
        write_metrics(metrics, out / "metrics.json")
        log("test split not evaluated (train.final_test=false); metrics.json marks the run finished")
    elif "test" in data and dist.is_main():
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
