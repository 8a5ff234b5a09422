"""The guidance fit sharded over 2 gloo processes on the CPU equals the fit of one process on all samples.

Each rank holds a contiguous shard of the samples (rank 0 the first rows); the Lloyd statistics are summed
over ranks (lanfer.guidance.shard). The reference is the plain single-process fit on the whole array: same
centres (float tolerance: the sums are added in another order), same counts and attentive labels.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from lanfer.guidance import Guidance, fit_guidance, stability

N, SPLIT = 701, 350  # uneven shards: 350 and 351 samples
KW = dict(sample_size=256, chunk_size=100, iters=50)


def mixture(n=N, c=16, h=2, w=2, seed=3):
    """(N, C, H, W) float32: per position a majority and an overlapping minority blob, ReLU'd."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h * w)) + rng.uniform(1, 3, (1, c, 1))
    minority = rng.random((n, 1, h * w)) < 0.3
    x += minority * rng.standard_normal((1, c, h * w)) * 1.2
    return np.maximum(x, 0).astype(np.float32).reshape(n, c, h, w)


def far_start():
    """Samples and a start whose second centre is nearer no sample: the empty-cluster reseed must run."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (50, 4)), rng.normal(6, 1, (30, 4))]).astype(np.float32)
    rng.shuffle(x)
    init = np.stack([x.mean(0), np.full(4, 1000.0, np.float32)])[None, None].astype(np.float32)
    return x, init


def _worker(rank: int, init_file: str, out: str):
    from lanfer.guidance import _lloyd, _NumpyOps
    from lanfer.guidance.shard import _Comm

    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        feats = mixture()
        shard = feats[:SPLIT] if rank == 0 else feats[SPLIT:]
        g = fit_guidance(shard, seed=0, distributed=True, **KW)
        st = stability(shard, seeds=(0, 1), first=g, distributed=True, **KW)
        x, init = far_start()
        part = x[:37] if rank == 0 else x[37:]
        with _NumpyOps() as ops:
            centres, counts, *_ = _lloyd(lambda: iter([part[None]]), ops, init, iters=50, tol=0.0,
                                         comm=_Comm(True))
        g.save(f"{out}.{rank}.safetensors")
        torch.save({"stability": st, "centres": centres, "counts": counts}, f"{out}.{rank}.pt")
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow
def test_two_process_fit_equals_one_process_fit(tmp_path):
    out = str(tmp_path / "fit")
    mp.spawn(_worker, args=(str(tmp_path / "init"), out), nprocs=2, join=True)
    g0, g1 = Guidance.load(f"{out}.0.safetensors"), Guidance.load(f"{out}.1.safetensors")
    r0, r1 = (torch.load(f"{out}.{r}.pt", weights_only=False) for r in (0, 1))

    # every rank ends with the same fit
    assert torch.equal(g0.centers, g1.centers) and torch.equal(g0.counts, g1.counts)
    assert g0.meta["n"] == N and g0.meta["processes"] == 2

    # ... which is the fit of one process on all samples
    feats = mixture()
    ref = fit_guidance(feats, seed=0, **KW)
    assert ref.meta["sample_size"] < N  # the sample is drawn across both shards
    assert torch.allclose(g0.centers, ref.centers, rtol=1e-5, atol=1e-5)
    assert torch.equal(g0.counts, ref.counts)
    assert torch.equal(g0.attentive, ref.attentive)
    assert torch.allclose(g0.inertia, ref.inertia, rtol=1e-6)  # centres differ in the last float32 bits
    labels = g0.assign(torch.from_numpy(feats))
    assert torch.equal(labels, ref.assign(torch.from_numpy(feats)))
    assert 0 < labels.float().mean() < 0.5  # guidance with both labels: the comparison is not trivial

    # stability's agreement counts are summed over the ranks too
    st = stability(feats, seeds=(0, 1), first=ref, **KW)
    assert r0["stability"] == r1["stability"]
    for key in ("attentive_agreement", "cluster_agreement", "attentive_fraction"):
        assert np.allclose(r0["stability"][key], st[key], rtol=0, atol=1e-12), key

    # the empty-cluster reseed takes the farthest sample over both ranks
    from lanfer.guidance import _lloyd, _NumpyOps

    x, init = far_start()
    with _NumpyOps() as ops:
        centres, counts, *_ = _lloyd(lambda: iter([x[None]]), ops, init, iters=50, tol=0.0)
    assert sorted(counts[0, 0].tolist()) == [30, 50]
    for r in (r0, r1):
        assert np.array_equal(r["counts"], counts)
        assert np.allclose(r["centres"], centres, rtol=1e-6, atol=1e-6)


def _cluster_worker(rank: int, init_file: str, cfg_path: str, out: str, log: str):
    import lanfer.guidance.map as gmap
    from lanfer.cluster import cluster
    from lanfer.config import load_config

    real = gmap.Guidance.save

    def save(self, path, *a, **k):  # every write of a guidance file, by rank
        with open(log, "a") as f:
            f.write(f"{rank}\n")
        return real(self, path, *a, **k)

    gmap.Guidance.save = save
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        torch.set_num_threads(1)
        path = cluster(load_config(cfg_path), out=out, progress=False)
        assert path.is_file()  # on both ranks: rank 1 returns after rank 0 has written it
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow
def test_cluster_under_two_processes_writes_the_guidance_once(tiny_folder, tmp_path):
    from lanfer.cluster import cluster
    from lanfer.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"""
model: {{name: lan_resnet18, num_classes: 3, head_widths: [16, 8, 4]}}
data: {{name: imagefolder, root: {tiny_folder}, image_size: 64, num_workers: 0}}
train: {{device: cpu, channels_last: false}}
guidance: {{seeds: 1}}
""")
    log = tmp_path / "writes.txt"
    mp.spawn(_cluster_worker, args=(str(tmp_path / "init"), str(cfg), str(tmp_path / "two"), str(log)),
             nprocs=2, join=True)
    assert log.read_text().split() == ["0"]  # one write, by rank 0
    two = Guidance.load(tmp_path / "two" / "guidance.safetensors")
    one = Guidance.load(cluster(load_config(cfg), out=tmp_path / "one", progress=False))
    assert two.meta["n"] == one.meta["n"] == 24 and two.meta["processes"] == 2
    assert torch.allclose(two.centers, one.centers, rtol=1e-4, atol=1e-4)
    assert torch.equal(two.attentive, one.attentive) and torch.equal(two.counts, one.counts)
