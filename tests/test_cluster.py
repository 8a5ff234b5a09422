"""The guidance job (lanfer.cluster): the stability summary reuses the main fit instead of refitting its seed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lanfer.guidance.kmeans as kmeans
from lanfer.cluster import fit_guidance_for
from lanfer.config import Config
from lanfer.guidance import fit_guidance, stability


def blobs(n=240, c=8, h=2, w=2, seed=0):
    """(N, C, H, W) float32: per position a majority and a minority blob, close enough that seeds differ."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32) + 2
    minority = rng.random(n) < 0.3
    x[minority] += rng.standard_normal((c, h, w)).astype(np.float32) * 1.5
    return np.maximum(x, 0)


@pytest.fixture
def count_fits(monkeypatch):
    """Counts every K=2 fit (fit_guidance and stability both run kmeans._fit once per seed)."""
    calls = []
    real = kmeans._fit

    def counting(src, ops, seed, *args):
        calls.append(seed)
        return real(src, ops, seed, *args)

    monkeypatch.setattr(kmeans, "_fit", counting)
    return calls


def test_stability_reuses_the_given_first_fit(count_fits):
    feats = blobs()
    kw = dict(sample_size=64, chunk_size=100, iters=4)
    old = stability(feats, seeds=(0, 1, 2), **kw)  # fits all three seeds itself
    assert count_fits == [0, 1, 2]
    g = fit_guidance(feats, seed=0, **kw)
    count_fits.clear()
    new = stability(feats, seeds=(0, 1, 2), first=g, **kw)
    assert count_fits == [1, 2]
    assert new == old  # exact: the same array through the same kernels, reused or refitted


def test_stability_refuses_a_first_fit_of_other_data_or_settings():
    feats = blobs()
    g = fit_guidance(feats, seed=0, sample_size=64, iters=4)
    with pytest.raises(ValueError, match=r"seed=0 \(here 1\)"):
        stability(feats, seeds=(1, 2), first=g, sample_size=64, iters=4)
    with pytest.raises(ValueError, match=r"iters=4 \(here 5\)"):
        stability(feats, seeds=(0, 1), first=g, sample_size=64, iters=5)
    with pytest.raises(ValueError, match=r"n=240 \(here 100\)"):
        stability(feats[:100], seeds=(0, 1), first=g, sample_size=64, iters=4)
    with pytest.raises(TypeError, match="Guidance"):
        stability(feats, seeds=(0, 1), first=g.centers, sample_size=64, iters=4)


class _Images(torch.utils.data.Dataset):
    """(image, label, meta) items as lanfer datasets give them; images (3, 8, 8)."""

    def __init__(self, n):
        self.x = torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], i % 2, {"path": f"img{i}.png"}


def test_fit_guidance_for_runs_one_fit_per_seed(count_fits, monkeypatch):
    import lanfer.cluster

    stores = []  # the feature store fit_guidance_for extracts, kept to refit on exactly its numbers
    extract = lanfer.cluster.extract_features
    monkeypatch.setattr(lanfer.cluster, "extract_features",
                        lambda *a, **k: stores.append(extract(*a, **k)) or stores[-1])
    cfg = Config()
    cfg.train.device = "cpu"
    cfg.data.num_workers = 0
    cfg.guidance.seeds = 3
    cfg.guidance.iters = 5
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, stride=2, padding=1), torch.nn.ReLU(),
                                   torch.nn.AvgPool2d(2))  # (B, 3, 8, 8) -> (B, 6, 2, 2)
    ds = _Images(90)
    g = fit_guidance_for(cfg, backbone, ds, torch.device("cpu"), progress=False)
    assert count_fits == [0, 1, 2]  # seeds fits, not seeds + 1
    (store,) = stores
    # The store holds the backbone's F_o in float16. Not compared bit for bit with a plain forward pass:
    # fit_guidance_for runs the backbone on channels_last batches of 64 (train.channels_last), and a convolution
    # kernel's summation order may depend on the memory format and the batch (oneDNN's AVX2 kernels differ from
    # the NCHW ones in the last float32 bit), so a value can land one float16 step (2^-10) away.
    with torch.no_grad():
        feats = backbone(ds.x).numpy()  # (N, 6, 2, 2)
    np.testing.assert_allclose(store.array.astype(np.float32), feats.reshape(90, 6, 4).transpose(2, 0, 1),
                               rtol=2e-3, atol=1e-4)  # position-major (P, N, C)
    # The old path, which refitted the first seed inside stability, on these very numbers: the same kernels on
    # the same inputs, so the reused first fit must equal the refitted one bit for bit.
    count_fits.clear()
    kw = dict(iters=5, tol=cfg.guidance.tol, chunk_size=cfg.guidance.chunk_size)
    old = stability(store, seeds=(0, 1, 2), **kw)
    assert count_fits == [0, 1, 2]
    assert g.meta["stability"] == old
    ref = fit_guidance(store, seed=0, **kw)
    assert torch.equal(g.centers, ref.centers) and torch.equal(g.counts, ref.counts)
