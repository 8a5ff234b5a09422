"""DistributedDataParallel through lanfer's own training step: 2 gloo processes on the CPU.

The reference is a single process taking one step on the concatenation of the two ranks' batches: with
gradients averaged across ranks (what DDP's backward hooks do when the step goes through the wrapper's
forward) and a mean-reduced loss, the two are the same update. BatchNorm is replaced by Identity in this toy
so that per-rank batch statistics do not differ from the single process's (DDP does not synchronise them).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

import lanfer
from lanfer.config import Config
from lanfer.guidance import Guidance

B, SIZE, CLASSES = 3, 32, 4


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = lanfer.create_model("lan_resnet18", num_classes=CLASSES, head_widths=(8, 8, 8))
    for name, mod in list(m.named_modules()):
        if isinstance(mod, torch.nn.BatchNorm2d):
            parent = m.get_submodule(name.rsplit(".", 1)[0]) if "." in name else m
            setattr(parent, name.rsplit(".", 1)[-1], torch.nn.Identity())
    return m


def _data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2 * B, 3, SIZE, SIZE, generator=g)
    y = torch.randint(0, CLASSES, (2 * B,), generator=g)
    return x, y


def _guidance() -> Guidance:
    # a 1x1 lattice (32 px input) whose two centres split the random features: some guidance 1s, some 0s
    g = torch.Generator().manual_seed(2)
    centers = torch.randn(1, 2, 512, generator=g)
    return Guidance(centers=centers, attentive=torch.tensor([0]), counts=torch.tensor([[3, 5]]),
                    inertia=torch.tensor([1.0], dtype=torch.float64), height=1, width=1)


def _cfg() -> Config:
    cfg = Config()
    cfg.train.channels_last = False
    cfg.train.epochs = 1
    cfg.loss.alpha = 0.5
    return cfg


def _step(model, x, y):
    from lanfer.train import train_one_epoch

    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    loader = [(x, y, [{}] * len(y))]
    record, _ = train_one_epoch(model, loader, opt, sched, _cfg(), torch.device("cpu"), _guidance(), None,
                                epoch=0, step=0, progress=False)
    return record


def _worker(rank: int, init_file: str, out: str):
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        model = _model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        x, y = _data()
        record = _step(ddp, x[rank * B:(rank + 1) * B], y[rank * B:(rank + 1) * B])
        torch.save({"state": model.state_dict(), "images": record["train_images"]}, f"{out}.{rank}")
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow
def test_ddp_step_equals_single_process_step_on_concatenated_batch(tmp_path):
    out = str(tmp_path / "state")
    mp.spawn(_worker, args=(str(tmp_path / "init"), out), nprocs=2, join=True)
    r0, r1 = torch.load(f"{out}.0", weights_only=True), torch.load(f"{out}.1", weights_only=True)
    assert r0["images"] == r1["images"] == 2 * B  # metrics reduced across ranks

    single = _model()
    before = copy.deepcopy(single.state_dict())
    x, y = _data()
    _step(single, x, y)
    moved = 0
    for k, v in single.state_dict().items():
        assert torch.equal(r0["state"][k], r1["state"][k]), f"ranks disagree on {k}"
        assert torch.allclose(r0["state"][k], v, atol=1e-5, rtol=1e-4), f"DDP step differs from 1 process on {k}"
        moved += int(not torch.equal(v, before[k]))
    assert moved > 10  # the step changed the weights, so equality above is not the trivial one
