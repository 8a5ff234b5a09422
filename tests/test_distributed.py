"""DistributedDataParallel through lanfer's own training step and its whole training job: 2 gloo processes on
the CPU (a step; train() against 1 process at twice the batch; an exact 2-process resume; torchrun -m lanfer).

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
    cfg.train.amp = "none"  # fp32: the comparison is of DDP's arithmetic, not of bf16 rounding
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


# ---------------------------------------------------------------------------------------------------------
# The whole training job under DDP: lanfer.train.train in 2 gloo processes against 1 process at twice the batch


def test_epoch_sampler_shards_one_global_order_and_keeps_single_process_orders(tiny_folder):
    from lanfer.data import build_dataset
    from lanfer.data.sampling import EpochSampler, balanced_weights

    ds = build_dataset("imagefolder", tiny_folder, "train")  # 24 items
    for balanced in (False, True):
        one = EpochSampler(ds, seed=7, balanced=balanced).indices
        g = torch.Generator().manual_seed(7)
        torch_order = (list(torch.utils.data.WeightedRandomSampler(balanced_weights(ds), len(ds), generator=g))
                       if balanced else list(torch.utils.data.RandomSampler(ds, generator=g)))
        assert one == torch_order  # single-process runs keep the order they had before DDP sharding
        for world in (2, 5):  # 5 does not divide 24: the order wraps to 25
            shares = [EpochSampler(ds, seed=7, balanced=balanced, rank=r, world=world).indices for r in range(world)]
            assert {len(s) for s in shares} == {-(-24 // world)}
            dealt = [shares[i % world][i // world] for i in range(len(shares[0]) * world)]
            assert dealt == (one + one)[:len(dealt)]
    with pytest.raises(ValueError, match="rank 2"):
        EpochSampler(ds, seed=0, rank=2, world=2)


PER_RANK = 3


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_bn(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every BatchNorm2d replaced by Identity (see _train_cfg)."""
    for name, mod in list(model.named_modules()):
        if isinstance(mod, torch.nn.BatchNorm2d):
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            setattr(parent, name.rsplit(".", 1)[-1], torch.nn.Identity())
    return model


def _train_cfg(root, guidance_path, batch: int, **train) -> dict:
    """A LAN run on 24 images at 32 px, with nothing that makes a sample's gradient depend on its batch-mates
    or on its rank: no augmentation (each rank draws its own augmentation RNG), no dropout, and no BatchNorm
    (train_worker swaps it for Identity: DDP normalises with each rank's own batch statistics, as torch does
    unless SyncBatchNorm is asked for, and torch's SyncBatchNorm runs on GPUs only)."""
    return {"model": {"name": "lan_resnet18", "head_widths": [8, 8, 8]},
            "data": {"name": "imagefolder", "root": str(root), "image_size": 32, "num_workers": 0, "augment": False},
            "loss": {"alpha": 0.5}, "guidance": {"path": str(guidance_path)},
            "train": {"epochs": 2, "batch_size": batch, "lr": 0.002, "warmup_epochs": 0.5, "amp": "none",
                      "channels_last": False, "progress": False, "device": "cpu", **train}}


def train_worker(rank: int, world: int, port: int, cfg: dict, out: str, resume: bool) -> None:
    """One process of a torchrun-like launch: the environment torchrun sets, then lanfer's train()."""
    import os

    import lanfer.train.run as lt  # the module whose create_model train() calls
    from lanfer.config import config_from_dict

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    build = lt.create_model
    lt.create_model = lambda *a, **kw: _no_bn(build(*a, **kw))
    try:
        lt.train(config_from_dict(cfg), out=out, resume=resume, progress=False)
    finally:
        lt.create_model = build  # the 1-process run is this very process


def _run(world: int, cfg: dict, out, resume: bool = False) -> None:
    if world == 1:
        train_worker(0, 1, 0, cfg, str(out), resume)
    else:
        mp.spawn(train_worker, args=(world, _free_port(), cfg, str(out), resume), nprocs=world, join=True)


def _weights(run) -> dict[str, torch.Tensor]:
    from lanfer.checkpoint import load_training_state

    return load_training_state(run / "last.ckpt")["model"]


def _records(run) -> list[dict]:
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory, request):
    """The reference runs: 2 processes at batch 3 each, and 1 process at batch 6, 2 epochs of 4 steps."""
    import os

    from conftest import make_imagefolder, release_if_passed  # tiny_folder's builder, for a module-scoped fixture

    failed = request.session.testsfailed
    tmp = tmp_path_factory.mktemp("ddp")
    root = make_imagefolder(tmp / "data")
    gpath = _guidance().save(tmp / "guidance.safetensors")
    os.environ.pop("WORLD_SIZE", None)
    runs = {"root": root, "guidance": gpath, "two": tmp / "two", "one": tmp / "one"}
    _run(2, _train_cfg(root, gpath, PER_RANK), runs["two"])
    _run(1, _train_cfg(root, gpath, 2 * PER_RANK), runs["one"])
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(k, None)  # the 1-process run set them in this process
    yield runs
    release_if_passed(request, tmp, failed)


@pytest.mark.slow
def test_two_process_training_equals_one_process_at_twice_the_batch(ddp_runs):
    two, one = _weights(ddp_runs["two"]), _weights(ddp_runs["one"])
    lanfer.distributed.seed_everything(0)  # train()'s initialisation
    init = _no_bn(lanfer.create_model("lan_resnet18", num_classes=3, head_widths=(8, 8, 8))).state_dict()
    moved = 0
    for k, v in one.items():
        assert torch.allclose(two[k], v, atol=1e-5, rtol=1e-4), f"{k}: max diff {(two[k] - v).abs().max()}"
        moved += int(not torch.allclose(v, init[k], atol=1e-4, rtol=1e-3))
    assert moved > len(one) * 3 // 4  # 8 steps moved most tensors far beyond the tolerance above
    r2, r1 = _records(ddp_runs["two"]), _records(ddp_runs["one"])
    assert len(r2) == len(r1) == 2  # rank 0 alone wrote metrics.jsonl
    for a, b in zip(r2, r1):
        assert a["train_images"] == b["train_images"] == 24  # counts summed over ranks
        assert a["step"] == b["step"]
        for key in ("train_loss", "train_ce", "train_bce", "train_accuracy", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key  # means over both ranks' samples


@pytest.mark.slow
def test_two_process_resume_continues_exactly(ddp_runs, tmp_path):
    cut = tmp_path / "cut"
    cfg = _train_cfg(ddp_runs["root"], ddp_runs["guidance"], PER_RANK)
    _run(2, {**cfg, "train": {**cfg["train"], "max_steps": 4}}, cut)  # stopped after epoch 1 of 2
    assert [r["epoch"] for r in _records(cut)] == [1]
    _run(2, cfg, cut, resume=True)
    assert [r["epoch"] for r in _records(cut)] == [1, 2]
    whole = _weights(ddp_runs["two"])
    for k, v in _weights(cut).items():
        assert torch.equal(v, whole[k]), f"{k}: the resumed run differs by {(v - whole[k]).abs().max()}"
    assert _records(cut)[1] == _records(ddp_runs["two"])[1] | {"images_per_s": _records(cut)[1]["images_per_s"]}


@pytest.mark.slow
def test_torchrun_launches_lanfer_train(tiny_folder, tmp_path):
    """`torchrun -m lanfer train` end to end, with BatchNorm and the default precision: one log, one set of files."""
    import json
    import os
    import subprocess
    import sys

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
model: {{name: resnet18}}
data: {{name: imagefolder, root: {tiny_folder}, image_size: 32, num_workers: 0, balanced_sampling: true}}
train: {{epochs: 1, batch_size: 4, lr: 0.01, channels_last: false}}
""")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "lanfer", "train", str(cfg), "--out", str(run), "--no-progress"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("epoch 1/1") == 1  # rank 0 alone prints
    assert "2 processes on cpu" in p.stdout
    (record,) = _records(run)
    assert record["train_images"] == 24 and record["step"] == 3  # 24 balanced draws dealt to 2 ranks of batch 4
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 24 and metrics["precision"] == record["precision"]
