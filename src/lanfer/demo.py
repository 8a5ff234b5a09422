"""``lanfer demo``: the paper's whole pipeline, like for like, on an embedded synthetic multi-view dataset.

The benchmark datasets need registration and no pretrained face weights can be downloaded here, so the demo
stands in for both with the procedural renderer (:mod:`lanfer.data.synth`):

1. render a KDEF-style set (5 views x 7 expressions x 2 sessions per identity), cached;
2. pretrain ResNet-18 on face *identity* classification over a disjoint set of synthetic identities
   (the stand-in for the paper's MS-Celeb-1M face-recognition pretraining);
3. fit the guidance map with that backbone (inside each fold's LAN training, on its training identities);
4. fine-tune the ResNet-18 baseline and LAN from the same weights, same data, same schedule, same seed,
   with KDEF-style identity-disjoint folds;
5. fit a linear classifier on raw pixels on the same folds (:mod:`lanfer.pixel_baseline`), the floor the
   CNNs must clear;
6. report accuracy overall and by view with the spread across folds (``metrics.json``, ``report.html``).

Every stage writes into ``--out`` and is reused when the demo is rerun with ``--resume``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, config_from_dict
from .data.kdef import KDEF_VIEWS
from .io import atomic_write

MODELS = (("resnet18", "ResNet-18 baseline"), ("lan_resnet18", "LAN"))
PIXEL_LABEL = "Linear, raw pixels"


@dataclass
class DemoConfig:
    """Sizes chosen so the default run finishes in under 10 minutes on 2 CPU cores (see README)."""

    out: str = "runs/demo"
    # 40 identities: 20 training identities per fold. With 8 (the first default) the CNNs did no better than a
    # linear classifier on raw pixels (README, "The main job").
    identities: int = 40  # expression identities (x 2 sessions x 7 expressions x 5 views images)
    pretrain_identities: int = 48  # disjoint identities for the identity-classification pretraining
    pretrain_images: int = 24  # images per pretraining identity
    image_size: int = 112  # 112 px gives a 4x4 F_o lattice (224 px: the paper's 7x7)
    folds: int = 2  # identity-disjoint folds evaluated (KDEF protocol: 10)
    epochs: int = 7
    pretrain_epochs: int = 6
    batch_size: int = 32
    # AdamW, not the paper's SGD at lr 0.1: with ~1,400 images and 7-8 epochs, SGD at lr 0.03 stayed below 40%
    # train accuracy; AdamW at 1e-3 trained both the identity pretraining (65% vs 50% identity accuracy) and
    # the fine-tuning (README, "The main job").
    optimizer: str = "adamw"
    lr: float = 1e-3  # fine-tuning
    pretrain_lr: float = 1e-3
    # Horizontal flips only: measured against none and "full" on fold 0 (README, "Design choices").
    augment: str = "flip"
    pixel_baseline: bool = True  # also fit a linear classifier on raw pixels per fold: the floor to clear
    seed: int = 0
    num_workers: int = -1  # auto: 0 on CPU, several on GPU (lanfer.config.resolve_workers)
    # fp32, not train.amp's "auto": auto picks bf16 on CPUs with AMX only, so the README's table would then
    # depend on the CPU model; "auto" or "bf16" trade that for ~1.5-2.5x speed on such a CPU
    amp: str = "none"
    resume: bool = False
    quick: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def quick_preset(cls, **kw) -> "DemoConfig":
        """Under two minutes: a smoke test of every stage, not a meaningful comparison."""
        base = dict(identities=4, pretrain_identities=8, pretrain_images=8, image_size=64, folds=2, epochs=2,
                    pretrain_epochs=1, batch_size=16, quick=True, out="runs/demo-quick")
        base.update(kw)
        return cls(**base)


def _log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _stage_data(cfg: DemoConfig, out: Path) -> tuple[Path, Path]:
    from .data.synth import generate

    expr_root = out / "data" / "expressions"
    ident_root = out / "data" / "identities"
    size = max(cfg.image_size, 64)
    if not (expr_root / "metadata.csv").is_file():
        t = time.perf_counter()
        generate(expr_root, identities=cfg.identities, seed=cfg.seed, views="kdef", image_size=size, progress=True)
        _log(f"rendered the expression set ({cfg.identities} identities) in {time.perf_counter() - t:.1f} s")
    else:
        _log(f"reusing {expr_root}")
    if not (ident_root / "metadata.csv").is_file():
        t = time.perf_counter()
        generate(ident_root, identities=cfg.pretrain_identities, seed=cfg.seed + 1, mode="identity",
                 images_per_identity=cfg.pretrain_images, image_size=size, identity_offset=1000,
                 progress=True)
        _log(f"rendered the identity set ({cfg.pretrain_identities} identities) in {time.perf_counter() - t:.1f} s")
    else:
        _log(f"reusing {ident_root}")
    return expr_root, ident_root


def _train_cfg(cfg: DemoConfig, **sections) -> Any:
    d: dict[str, Any] = {
        "data": {"image_size": cfg.image_size, "num_workers": cfg.num_workers, "augment": cfg.augment},
        "train": {"batch_size": cfg.batch_size, "lr": cfg.lr, "optimizer": cfg.optimizer, "warmup_epochs": 1,
                  "progress": True, "channels_last": True, "amp": cfg.amp},
        "guidance": {"seeds": 3},
        "seed": cfg.seed,
    }
    for sec, vals in sections.items():
        d.setdefault(sec, {}).update(vals)
    return config_from_dict(d)


def _run(tcfg, out: Path, resume: bool) -> dict:
    """Train into ``out`` unless a finished run is there; continue an interrupted one."""
    from .train import train

    if (out / "metrics.json").is_file() and (out / "best.safetensors").is_file():
        _log(f"reusing {out}")
        return json.loads((out / "metrics.json").read_text())
    return train(tcfg, out=out, resume=(out / "last.ckpt").is_file() and resume)


def _fold_data(cfg: DemoConfig, expr_root: Path, fold: int) -> dict[str, Any]:
    """The ``data`` section of fold ``fold``: one definition, so the CNNs and the pixel floor see the same split."""
    # val_split None: the last epoch is reported, never the best epoch on the test identities (that would
    # select on the test set)
    return {"name": "kdef", "root": str(expr_root), "val_split": None, "test_split": "test",
            "options": {"fold": fold, "folds": cfg.folds}}


def _pixel_fold(cfg: DemoConfig, expr_root: Path, fold: int, out: Path) -> dict:
    from .data import build_dataset_from_config
    from .pixel_baseline import pixel_baseline

    path = out / f"pixels_fold{fold}.json"
    if path.is_file():
        _log(f"reusing {path}")
        return json.loads(path.read_text())
    _log(f"fold {fold + 1}/{cfg.folds}: linear classifier on raw pixels")
    data = _train_cfg(cfg, data=_fold_data(cfg, expr_root, fold)).data
    m = pixel_baseline(build_dataset_from_config(data, data.train_split),
                       build_dataset_from_config(data, data.test_split), group_by=["view"])
    atomic_write(path, lambda t: t.write_text(json.dumps(m, indent=2)))
    return m


def _spread(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "n": int(len(a))}


def run_demo(cfg: DemoConfig) -> dict:
    """Run every stage; returns the summary also written to ``OUT/metrics.json``."""
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not cfg.resume:
        raise ConfigError(f"{out} already holds a demo run; pass --resume to reuse its stages or choose "
                          "another --out (nothing was overwritten)")
    if cfg.folds < 2:
        raise ConfigError(f"--folds {cfg.folds}: identity-disjoint evaluation needs at least 2 folds")
    if cfg.identities < cfg.folds:
        raise ConfigError(f"--identities {cfg.identities} is fewer than --folds {cfg.folds}")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "demo_config.json", lambda t: t.write_text(json.dumps(asdict(cfg), indent=2)))
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    # 1. data
    t = time.perf_counter()
    expr_root, ident_root = _stage_data(cfg, out)
    timings["render"] = time.perf_counter() - t

    # 2. identity pretraining (stand-in for MS-Celeb-1M)
    t = time.perf_counter()
    _log("stage 2: pretraining ResNet-18 on synthetic face identities")
    pcfg = _train_cfg(cfg, model={"name": "resnet18", "num_classes": cfg.pretrain_identities},
                      data={"name": "imagefolder", "root": str(ident_root), "val_split": "test",
                            "test_split": "test"},
                      train={"epochs": cfg.pretrain_epochs, "lr": cfg.pretrain_lr})
    pre_metrics = _run(pcfg, out / "pretrain", cfg.resume)
    backbone = out / "pretrain" / "best.safetensors"
    timings["pretrain"] = time.perf_counter() - t
    _log(f"identity accuracy of the pretrained backbone: {100 * pre_metrics.get('accuracy', float('nan')):.1f}%")

    # 3-4. per fold: baseline and LAN from the same weights (LAN fits its guidance on the fold's train split)
    t = time.perf_counter()
    results: dict[str, list[dict]] = {name: [] for name, _ in MODELS}
    for fold in range(cfg.folds):
        for name, label in MODELS:
            _log(f"stage 4: fold {fold + 1}/{cfg.folds}: fine-tuning {label}")
            fcfg = _train_cfg(cfg, model={"name": name, "num_classes": 7, "pretrained": str(backbone)},
                              data=_fold_data(cfg, expr_root, fold), train={"epochs": cfg.epochs})
            results[name].append(_run(fcfg, out / f"{name}_fold{fold}", cfg.resume))
    timings["finetune"] = time.perf_counter() - t

    # the floor: a linear classifier on raw pixels, same folds (is the set trivially separable?)
    if cfg.pixel_baseline:
        t = time.perf_counter()
        results["pixels"] = [_pixel_fold(cfg, expr_root, fold, out) for fold in range(cfg.folds)]
        timings["pixel_baseline"] = time.perf_counter() - t

    # 5. report
    summary = summarize_demo(cfg, results, pre_metrics)
    timings["total"] = time.perf_counter() - t_start
    summary["timings_s"] = timings
    atomic_write(out / "metrics.json", lambda t: t.write_text(json.dumps(summary, indent=2)))
    print(format_demo_table(summary))
    from .analysis.report import write_demo_report

    report = write_demo_report(out, summary)
    _log(f"wrote {out / 'metrics.json'} and {report}; total {timings['total']:.0f} s")
    return summary


def summarize_demo(cfg: DemoConfig, results: dict[str, list[dict]], pre_metrics: dict) -> dict:
    """Mean and spread across folds, overall and per view, for each model."""
    summary: dict[str, Any] = {"data": "synthetic (lanfer synth): not a real dataset", "config": asdict(cfg),
                               "pretrain_identity_accuracy": pre_metrics.get("accuracy"), "models": {}}
    for name, label in MODELS + (("pixels", PIXEL_LABEL),):
        runs = results.get(name)
        if not runs:
            continue
        by_view = {}
        for v in KDEF_VIEWS:
            accs = [r["by"]["view"][v]["accuracy"] for r in runs if v in r.get("by", {}).get("view", {})]
            if accs:
                by_view[v] = _spread(accs)
        summary["models"][name] = {
            "label": label,
            "accuracy": _spread([r["accuracy"] for r in runs]),
            "mean_class_accuracy": _spread([r["mean_class_accuracy"] for r in runs]),
            "by_view": by_view,
            "folds": [{"accuracy": r["accuracy"], "run": r.get("run")} for r in runs],
            "confusion_matrix": np.sum([r["confusion_matrix"] for r in runs], axis=0).tolist(),
            "classes": runs[0]["classes"],
        }
    return summary


def format_demo_table(summary: dict) -> str:
    cols = ["overall"] + [f"{v} ({yaw:+d})" for v, yaw in KDEF_VIEWS.items()]
    lines = ["accuracy % (mean +/- std over folds) on held-out identities, synthetic data",
             f"{'model':<20}" + "".join(f"{c:>15}" for c in cols)]
    for name, m in summary["models"].items():
        cells = [m["accuracy"]] + [m["by_view"].get(v) for v in KDEF_VIEWS]
        lines.append(f"{m['label']:<20}" + "".join(
            f"{'n/a':>15}" if c is None else f"{100 * c['mean']:>9.1f}+/-{100 * c['std']:<4.1f}" for c in cells))
    return "\n".join(lines)
