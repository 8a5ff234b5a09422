"""``lanfer cluster``: fit the attention guidance centres for a config's backbone over its training set.

:func:`fit_guidance_for` is the step training also runs before fine-tuning LAN (and on every
``guidance.recluster_every``): extract F_o without augmentation, fit K=2 per position, optionally measure
stability across seeds. :func:`cluster` runs it alone and writes ``guidance.safetensors`` and its summary.

Under ``torchrun`` (an initialised process group) each rank extracts the features of its contiguous shard
of the training images and the fit sums its statistics over the ranks (:mod:`lanfer.guidance.shard`), so
every rank ends with the guidance one process would fit; only rank 0 writes files.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from . import distributed as dist
from .config import Config, resolve_num_classes, resolve_workers
from .data import EvalPreset, build_dataset_from_config, collate
from .distributed import log, seed_everything
from .guidance import Guidance, extract_features, fit_guidance, stability
from .model import create_model, model_kwargs_from_config
from .io import atomic_write


def fit_guidance_for(cfg: Config, backbone: torch.nn.Module, dataset, device, store_dir: Path | None = None,
                     progress: bool = True) -> Guidance:
    """Extract F_o with ``backbone`` over ``dataset`` (no augmentation) and fit the K=2 guidance centres.

    Under torch.distributed every rank extracts its own contiguous shard of the images (rank order) and the
    fit is summed over the ranks; every rank returns the same guidance."""
    ds = dataset
    if cfg.guidance.max_images and len(ds) > cfg.guidance.max_images:
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.guidance.max_images]
        ds = Subset(ds, sorted(idx.tolist()))
    world, rank = dist.world_size(), dist.rank()
    if world > 1:
        # contiguous shards in rank order, as fit_guidance(distributed=True) expects
        ds = Subset(ds, range(rank * len(ds) // world, (rank + 1) * len(ds) // world))
    progress = progress and dist.is_main()
    loader = DataLoader(ds, batch_size=max(cfg.train.batch_size, 64), shuffle=False,
                        num_workers=resolve_workers(cfg.data.num_workers, cfg.train.device), collate_fn=collate)
    backbone = backbone.to(device).eval()

    @torch.no_grad()
    def features(images):
        images = images.to(device)
        if cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return backbone(images).float()  # F_o, (B, 512, H, W)

    # Features stay in RAM up to ~1 GB (float16); beyond that they stream through a memmap in the run dir.
    with torch.no_grad():
        x0 = ds[0][0][None]
        c, h, w = features(x0).shape[1:]
    big = len(ds) * c * h * w * 2 > 1 << 30
    name = "features.f16" if world == 1 else f"features.rank{rank}.f16"  # one file per rank
    store_path = (store_dir / name) if (store_dir is not None and big) else None
    store = extract_features(features, loader, store_path=store_path, progress=progress, overwrite=True,
                             source=str(cfg.model.pretrained or "random-init backbone"))
    g = fit_guidance(store, seed=cfg.seed, iters=cfg.guidance.iters, tol=cfg.guidance.tol,
                     chunk_size=cfg.guidance.chunk_size, device=str(device) if str(device) != "cpu" else None,
                     progress=progress, source=str(cfg.model.pretrained or "random-init backbone"),
                     distributed=world > 1)
    if cfg.guidance.seeds > 1:
        # the first seed is the fit just made: reused, not refitted
        g.meta["stability"] = stability(store, seeds=tuple(range(cfg.seed, cfg.seed + cfg.guidance.seeds)),
                                        first=g, iters=cfg.guidance.iters, tol=cfg.guidance.tol,
                                        chunk_size=cfg.guidance.chunk_size, distributed=world > 1,
                                        device=str(device) if str(device) != "cpu" else None)
    if store_path is not None:
        store.close() if hasattr(store, "close") else None
        for p in store_dir.glob(name + "*"):
            p.unlink()
    return g


def cluster(cfg: Config, out: str | Path | None = None, progress: bool = True) -> Path:
    """``lanfer cluster``: fit guidance centres with the config's (pretrained) backbone; writes the file."""
    out = Path(out or cfg.out or "runs/cluster")
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    device, _, _ = dist.setup(cfg.train.device)
    ds = build_dataset_from_config(cfg.data, cfg.data.train_split,
                                   transform=EvalPreset(cfg.data.image_size, cfg.data.normalize, cfg.data.color))
    resolve_num_classes(cfg, ds.classes)  # the head is not used here, but the model is built whole
    model = create_model(**model_kwargs_from_config(cfg.model), pretrained=cfg.model.pretrained)
    g = fit_guidance_for(cfg, model.backbone, ds, device, store_dir=out, progress=progress)
    path = out / "guidance.safetensors"
    if dist.is_main():  # every rank holds the same fit: one writes it
        g.save(path)
        atomic_write(out / "guidance_summary.txt", lambda t: t.write_text(g.summary()))
        cfg.save(out / "config.yaml")
    log(g.summary())
    log(f"wrote {path}")
    dist.barrier()  # the file exists when any rank returns its path
    return path
