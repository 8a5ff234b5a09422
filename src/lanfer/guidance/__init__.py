"""Attention guidance map annotation (paper section III-C, eq. 3-4).

For every position p of the backbone feature map F_o (7 x 7 for ResNet-18 at 224 px) the feature vectors
f_p^1 .. f_p^N of all N training images are clustered by K-means with K = 2. The cluster with *fewer* samples
is the attentive one (eq. 4). A feature map is then annotated position by position: 1 where its vector is
nearer the attentive centre, 0 where it is nearer the general one (Euclidean distance).

Pieces, one module each:

* ``store.py``: :class:`FeatureStore` and :func:`extract_features` keep F_o for a whole training set on disk,
  position-major ``(H*W, N, C)`` float16, so that AffectNet (287,651 x 49 x 512, 14.4 GB) never has to be in
  RAM at once; also the sources through which the fit reads any accepted input.
* ``kmeans.py``: :func:`fit_guidance` runs the clustering for all positions at once and returns a
  :class:`Guidance`; :func:`stability` fits other seeds (reusing a fit already made for the first) and
  measures, per position, how often the guidance label agrees.
* ``backends.py``: the passes over the big arrays, in numpy (CPU) or torch (CUDA).
* ``shard.py``: what the ranks of a fit sharded over torch.distributed exchange.
* ``map.py``: :class:`Guidance` holds the centres and the attentive index; ``assign(F_o)`` makes the
  (B, 1, H, W) map for the BCE loss; ``save``/``load`` use safetensors; ``summary()`` is a table a person
  can read.

How the clustering is computed. With two centres c0, c1 "nearer c1" is the hyperplane test
``x . (c1 - c0) > (|c1|^2 - |c0|^2) / 2``, so one Lloyd pass over a chunk of samples is, per position, a
matrix-vector product and a masked sum. A pass only *accumulates* additive statistics (how many samples
chose c1 and their feature sum; the per-position totals are fixed), a *reduce* step combines them and an
*update* step turns them into new centres. The reduce step is the identity in one process; with
``distributed=True`` under torch.distributed each rank holds a shard of the samples and the statistics are
summed over the ranks (``shard.py``; ``lanfer cluster`` under ``torchrun`` does this).
Each position starts from k-means++ seeds and Lloyd iterations on a random sample of ``sample_size``
points (``n_init`` seedings, the one with the lowest sample inertia wins), then runs full passes over all
N samples until the relative centre shift is <= ``tol``; an unchanged assignment gives bit-identical sums,
hence a shift of exactly 0, so "no label changed" is covered by the same test. Results depend only on the
data and the seed, not on how the input was chunked.

On CPU the positions go through in blocks of one position per core, every pass of a block (seeding,
sample iterations, full passes) while its data is in cache, each pass cut into L2-sized tiles of
matrix-vector products (numpy/OpenBLAS); ``benchmarks/bench_guidance.py`` has the figures.
With a CUDA ``device`` the same passes run as batched torch matmuls on the GPU.
"""
from __future__ import annotations

# The engine's internals stay reachable here for the tests that drive a single Lloyd run by hand.
from .backends import _NumpyOps  # noqa: F401
from .kmeans import _lloyd, fit_guidance, stability  # noqa: F401
from .map import NEAR_EQUAL, Guidance, GuidanceError
from .store import FeatureStore, extract_features

__all__ = ["Guidance", "GuidanceError", "FeatureStore", "fit_guidance", "extract_features", "stability", "NEAR_EQUAL"]
