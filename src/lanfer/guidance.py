"""Attention guidance map annotation (paper section III-C, eq. 3-4).

For every position p of the backbone feature map F_o (7 x 7 for ResNet-18 at 224 px) the feature vectors
f_p^1 .. f_p^N of all N training images are clustered by K-means with K = 2. The cluster with *fewer* samples
is the attentive one (eq. 4). A feature map is then annotated position by position: 1 where its vector is
nearer the attentive centre, 0 where it is nearer the general one (Euclidean distance).

Pieces:

* :class:`FeatureStore` and :func:`extract_features` keep F_o for a whole training set on disk,
  position-major ``(H*W, N, C)`` float16, so that AffectNet (287,651 x 49 x 512, 14.4 GB) never has to be in
  RAM at once.
* :func:`fit_guidance` runs the clustering for all positions at once and returns a :class:`Guidance`.
* :class:`Guidance` holds the centres and the attentive index; ``assign(F_o)`` makes the (B, 1, H, W) map for
  the BCE loss; ``save``/``load`` use safetensors; ``summary()`` is a table a person can read.
* :func:`stability` refits with other seeds and measures, per position, how often the guidance label agrees.

How the clustering is computed. With two centres c0, c1 "nearer c1" is the hyperplane test
``x . (c1 - c0) > (|c1|^2 - |c0|^2) / 2``, so one Lloyd pass over a chunk of samples is, per position, a
matrix-vector product and a masked sum. A pass only *accumulates* additive statistics (how many samples
chose c1 and their feature sum; the per-position totals are fixed), a *reduce* step combines them (the
identity in one process; an all-reduce of the same arrays when samples are sharded over DDP ranks) and an
*update* step turns them into new centres. Each position starts from k-means++ seeds and Lloyd iterations
on a random sample of ``sample_size`` points (``n_init`` seedings, the one with the lowest sample inertia
wins), then runs full passes over all N samples until the relative centre shift is <= ``tol``; an
unchanged assignment gives bit-identical sums, hence a shift of exactly 0, so "no label changed" is
covered by the same test. Results depend only on the data and the seed, not on how the input was chunked.

On CPU the passes use numpy (OpenBLAS): on the 2-core AMD EPYC we develop on, a full pass over
12,271 x 49 x 512 float32 features took 0.04 s with numpy and 0.14 s with torch.bmm (MKL).
With a CUDA ``device`` the same passes run as batched torch matmuls on the GPU.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

__all__ = ["Guidance", "FeatureStore", "fit_guidance", "extract_features", "stability", "NEAR_EQUAL"]

_FORMAT = "lanfer.guidance"
_FORMAT_VERSION = 1
_STORE_FORMAT = "lanfer.feature_store"
_STORE_VERSION = 1

#: An attentive fraction above this marks a position whose two clusters are nearly equal in size: there
#: the paper's "smaller cluster is attentive" rule (eq. 4) decides on a coin flip.
NEAR_EQUAL = 0.4


# ----------------------------------------------------------------------------------------------------
# The fitted result


@dataclass(repr=False, eq=False)
class Guidance:
    """K=2 centres per feature-map position and which of the two is attentive.

    Attributes:
        centers: (H*W, 2, C) float32, position p = row * width + col.
        attentive: (H*W,) long, index (0 or 1) of the attentive centre: the cluster with fewer training
            samples (paper eq. 4; on a tie, cluster 1 as the equation's "otherwise" branch).
        counts: (H*W, 2) long, training samples nearest each centre.
        inertia: (H*W,) float64, sum of squared distances of the training samples to their nearest centre.
        height, width: the feature-map size the centres belong to.
        meta: JSON-friendly facts: source backbone/checkpoint, seed, n, iterations run, stability, ...
    """

    centers: torch.Tensor
    attentive: torch.Tensor
    counts: torch.Tensor
    inertia: torch.Tensor
    height: int
    width: int
    meta: dict[str, Any] = field(default_factory=dict)
    _planes: dict = field(default_factory=dict, init=False, compare=False)

    def __post_init__(self):
        p = self.height * self.width
        if self.centers.ndim != 3 or self.centers.shape[:2] != (p, 2):
            raise ValueError(f"centers must be (H*W={p}, 2, C); got {tuple(self.centers.shape)}")
        for name, shape in (("attentive", (p,)), ("counts", (p, 2)), ("inertia", (p,))):
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"{name} must have shape {shape}; got {tuple(getattr(self, name).shape)}")

    @property
    def channels(self) -> int:
        return int(self.centers.shape[2])

    @property
    def positions(self) -> int:
        return self.height * self.width

    def __repr__(self) -> str:
        return (f"Guidance({self.height}x{self.width} positions, C={self.channels}, "
                f"n={int(self.counts[0].sum())}, mean attentive fraction "
                f"{float(self.attentive_fraction().mean()):.3f}, source={self.meta.get('source')!r})")

    # -- using it -------------------------------------------------------------------------------------

    def _plane(self, device: torch.device):
        """(w, b) of the test ``x . w > b`` (nearer centre 1), computed exactly as in the fit."""
        key = str(device)
        if key not in self._planes:
            c = self.centers.float()
            w = c[:, 1] - c[:, 0]  # (P, C)
            b = ((c[:, 1].double() ** 2).sum(-1) - (c[:, 0].double() ** 2).sum(-1)) / 2  # (P,)
            self._planes[key] = (w.to(device), b.float().to(device), (self.attentive == 1).to(device))
        return self._planes[key]

    @torch.no_grad()
    def assign(self, features: torch.Tensor) -> torch.Tensor:
        """Attention guidance map of a batch of backbone features.

        Args:
            features: F_o, (B, C, H, W) on any device and of any floating dtype (or a numpy array).
        Returns:
            (B, 1, H, W) of 0/1 on the same device, 1 where the feature vector is nearer the attentive
            centre; dtype of ``features`` if floating, else float32. Never carries gradient.
        """
        x = torch.as_tensor(features).detach()
        if x.ndim != 4:
            raise ValueError(f"assign expects F_o of shape (B, C, H, W); got {tuple(x.shape)}")
        want = (self.channels, self.height, self.width)
        if tuple(x.shape[1:]) != want:
            raise ValueError(f"assign: features have (C, H, W) = {tuple(x.shape[1:])} but the guidance centres "
                             f"were fitted on (C, H, W) = {want}; use features from the same backbone and "
                             "input size, or refit the guidance")
        out_dtype = x.dtype if x.is_floating_point() else torch.float32
        w, b, att_is_1 = self._plane(x.device)
        xf = x.float().reshape(x.shape[0], self.channels, self.positions)  # (B, C, P)
        near1 = torch.einsum("bcp,pc->bp", xf, w) > b  # (B, P)
        attentive = near1 == att_is_1  # nearer the attentive centre
        return attentive.to(out_dtype).reshape(x.shape[0], 1, self.height, self.width)

    def attentive_fraction(self) -> torch.Tensor:
        """(H*W,) float64: fraction of the training set that fell in the attentive cluster."""
        n_att = self.counts.gather(1, self.attentive[:, None])[:, 0].double()
        return n_att / self.counts.sum(1).clamp_min(1).double()

    # -- files ----------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write a small safetensors file (centres, attentive, counts, inertia; meta as JSON metadata).
        Written to a temporary name and renamed, so an interrupted save never leaves half a file."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {"centers": self.centers.float().contiguous(), "attentive": self.attentive.long().contiguous(),
                   "counts": self.counts.long().contiguous(), "inertia": self.inertia.double().contiguous()}
        metadata = {"format": _FORMAT, "format_version": str(_FORMAT_VERSION), "height": str(self.height),
                    "width": str(self.width), "meta": json.dumps(self.meta, sort_keys=True)}
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=metadata)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Guidance:
        """Read a file written by :meth:`save`."""
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"guidance file {str(path)!r} does not exist; fit one with `lanfer cluster` "
                                    "or lanfer.fit_guidance(...).save(path)")
        try:
            with safe_open(str(path), framework="pt") as f:
                md = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises its own error types for a corrupt header
            raise ValueError(f"{str(path)!r} is not a readable safetensors file ({e})") from None
        if md.get("format") != _FORMAT:
            raise ValueError(f"{str(path)!r} is not a lanfer guidance file (metadata format="
                             f"{md.get('format')!r}, expected {_FORMAT!r})")
        if int(md.get("format_version", 0)) > _FORMAT_VERSION:
            raise ValueError(f"{str(path)!r} has guidance format version {md['format_version']}; this lanfer "
                             f"reads up to {_FORMAT_VERSION}: upgrade lanfer")
        missing = {"centers", "attentive", "counts", "inertia"} - set(tensors)
        if missing:
            raise ValueError(f"{str(path)!r} lacks tensors {sorted(missing)}")
        return cls(centers=tensors["centers"], attentive=tensors["attentive"], counts=tensors["counts"],
                   inertia=tensors["inertia"], height=int(md["height"]), width=int(md["width"]),
                   meta=json.loads(md.get("meta", "{}")))

    # -- reading it -----------------------------------------------------------------------------------

    def summary(self, near_equal: float = NEAR_EQUAL) -> str:
        """A text table per position: attentive fraction, agreement across seeds (when :func:`stability`
        has been run), and a flag where the split is nearly equal (fraction > ``near_equal``), i.e. where the
        smaller-cluster rule of eq. 4 is arbitrary."""
        frac = self.attentive_fraction().tolist()
        stab = self.meta.get("stability") or {}
        agree = stab.get("min_attentive_agreement")
        m = self.meta
        lines = [f"Guidance map: {self.height}x{self.width} positions, C={self.channels}, n={m.get('n')}, "
                 f"seed={m.get('seed')}, source={m.get('source')!r}",
                 f"iterations: sample {m.get('sample_iters')}, full passes {m.get('full_iters')}; "
                 f"positions not converged: {m.get('unconverged', '?')}"]
        if agree is not None:
            lines.append(f"stability over seeds {stab.get('seeds')}: agreement = fraction of training samples "
                         f"whose attentive label matches seed {stab['seeds'][0]} (worst other seed)")
        lines.append("")
        lines.append("attentive fraction by position (rows x cols):")
        for r in range(self.height):
            lines.append("  " + " ".join(f"{frac[r * self.width + c]:5.3f}" for c in range(self.width)))
        lines.append("")
        head = f"{'pos':>4} {'row':>3} {'col':>3} {'att':>3} {'n_att':>8} {'n_gen':>8} {'frac':>6}"
        head += f" {'agree':>6}" if agree is not None else ""
        lines.append(head + "  flag")
        flagged = []
        for p in range(self.positions):
            a = int(self.attentive[p])
            n_att, n_gen = int(self.counts[p, a]), int(self.counts[p, 1 - a])
            row = f"{p:>4} {p // self.width:>3} {p % self.width:>3} {a:>3} {n_att:>8} {n_gen:>8} {frac[p]:6.3f}"
            if agree is not None:
                row += f" {agree[p]:6.3f}"
            flag = ""
            if frac[p] > near_equal:
                flag = "near-equal split"
                flagged.append(p)
            lines.append(row + ("  " + flag if flag else ""))
        lines.append("")
        lines.append(f"{len(flagged)} of {self.positions} positions have an attentive fraction > {near_equal:g}"
                     + (": there the smaller-cluster rule is close to arbitrary." if flagged else "."))
        if agree is not None:
            low = [p for p in range(self.positions) if agree[p] < 0.9]
            lines.append(f"{len(low)} of {self.positions} positions agree across seeds on < 90% of samples.")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------
# Features on disk


def _np_dtype(dtype) -> np.dtype:
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).removeprefix("torch.")
    dt = np.dtype(dtype)
    if dt not in (np.float16, np.float32):
        raise ValueError(f"feature store dtype must be float16 or float32; got {dt}")
    return dt


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype not in (torch.float16, torch.float32, torch.float64):
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


class FeatureStore:
    """Backbone features F_o of an image set, position-major: an (H*W, N, C) array.

    Position-major because the clustering works on one position at a time over all N images: a position's
    N x C block is contiguous, so :func:`fit_guidance` reads it in long sequential pieces. A store lives in
    RAM (``path=None``) or on disk as a raw numpy memmap at ``path`` plus a JSON header at ``path + ".json"``
    (shape, dtype, source). The header is written last by :meth:`finalize`, so an interrupted extraction
    never looks like a complete store. The file may hold more rows than ``n`` (its ``capacity``) when the
    loader yielded fewer images than announced; only rows [0, n) are used.
    """

    def __init__(self, data: np.ndarray, n: int, height: int, width: int, meta: dict | None = None,
                 path: Path | None = None):
        if data.ndim != 3 or data.shape[0] != height * width:
            raise ValueError(f"store data must be (H*W={height * width}, N, C); got {data.shape}")
        self._data = data  # (P, capacity, C)
        self.n = int(n)
        self.height, self.width = int(height), int(width)
        self.meta = dict(meta or {})
        self.path = path

    # -- creating -------------------------------------------------------------------------------------

    @classmethod
    def create(cls, path: str | os.PathLike | None, capacity: int, channels: int, height: int, width: int,
               dtype=np.float16, meta: dict | None = None, overwrite: bool = False) -> FeatureStore:
        """An empty store for up to ``capacity`` samples; fill it with :meth:`write`, then :meth:`finalize`."""
        dt = _np_dtype(dtype)
        shape = (height * width, int(capacity), int(channels))
        if capacity < 1 or channels < 1 or height < 1 or width < 1:
            raise ValueError(f"feature store shape must be positive; got capacity={capacity}, C={channels}, "
                             f"H={height}, W={width}")
        if path is None:
            return cls(np.zeros(shape, dt), 0, height, width, meta)
        path = Path(path)
        header = _header_path(path)
        if (path.exists() or header.exists()) and not overwrite:
            raise FileExistsError(f"feature store {str(path)!r} already exists; delete it (and {header.name}) "
                                  "or pass overwrite=True")
        header.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = np.memmap(path, dtype=dt, mode="w+", shape=shape)
        return cls(data, 0, height, width, meta, path)

    def write(self, start: int, features) -> None:
        """Write a batch of F_o, (B, C, H, W), as samples ``start .. start+B-1``."""
        f = features.detach().to("cpu", self._torch_dtype) if isinstance(features, torch.Tensor) else features
        with np.errstate(over="ignore"):  # an overflow to inf is reported below, with what to do
            f = np.asarray(_to_numpy(f), dtype=self.dtype)
        want = (self.channels, self.height, self.width)
        if f.ndim != 4 or f.shape[1:] != want:
            raise ValueError(f"features must be (B, C, H, W) with (C, H, W) = {want}; got {f.shape}")
        b = f.shape[0]
        if start < 0 or start + b > self.capacity:
            raise ValueError(f"samples {start}..{start + b - 1} do not fit a store of capacity {self.capacity}")
        if not np.isfinite(f).all():
            hint = " (float16 overflows above 65504: use dtype=float32)" if self.dtype == np.float16 else ""
            raise ValueError(f"features of samples {start}..{start + b - 1} contain NaN or inf{hint}")
        self._data[:, start:start + b] = f.reshape(b, self.channels, -1).transpose(2, 0, 1)  # (P, B, C)
        self.n = max(self.n, start + b)

    def finalize(self, n: int | None = None) -> FeatureStore:
        """Mark rows [0, n) as the content, flush, and (on disk) write the JSON header."""
        if n is not None:
            if not 0 <= n <= self.capacity:
                raise ValueError(f"n={n} outside the store capacity {self.capacity}")
            self.n = int(n)
        if self.path is not None:
            self._data.flush()
            header = {"format": _STORE_FORMAT, "format_version": _STORE_VERSION, "n": self.n,
                      "capacity": self.capacity, "channels": self.channels, "height": self.height,
                      "width": self.width, "dtype": str(self.dtype), "layout": "position-major (H*W, N, C)",
                      "meta": self.meta}
            tmp = _header_path(self.path).with_suffix(".tmp")
            tmp.write_text(json.dumps(header, indent=1))
            os.replace(tmp, _header_path(self.path))
        return self

    @classmethod
    def open(cls, path: str | os.PathLike) -> FeatureStore:
        """Open a finalized on-disk store read-only (nothing is read into RAM until used)."""
        path = Path(path)
        header = _header_path(path)
        if not header.is_file():
            raise FileNotFoundError(f"feature store header {str(header)!r} not found: {str(path)!r} is not a "
                                    "complete feature store (was extract_features interrupted?)")
        h = json.loads(header.read_text())
        if h.get("format") != _STORE_FORMAT:
            raise ValueError(f"{str(header)!r} is not a lanfer feature store header (format={h.get('format')!r})")
        shape = (h["height"] * h["width"], h["capacity"], h["channels"])
        dt = np.dtype(h["dtype"])
        expect = int(np.prod(shape)) * dt.itemsize
        if not path.is_file() or path.stat().st_size != expect:
            size = path.stat().st_size if path.is_file() else "missing"
            raise ValueError(f"feature store data {str(path)!r} should hold {expect} bytes for shape {shape} "
                             f"{dt}; found {size}")
        data = np.memmap(path, dtype=dt, mode="r", shape=shape)
        return cls(data, h["n"], h["height"], h["width"], h.get("meta"), path)

    def close(self) -> None:
        """Release the memory map (the file stays)."""
        if isinstance(self._data, np.memmap) and self._data.mode != "r":
            self._data.flush()
        # numpy unmaps the file once no array refers to it any more
        self._data = np.zeros((self.positions, 0, self.channels), self.dtype)
        self.n = 0

    # -- reading --------------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return int(self._data.shape[1])

    @property
    def channels(self) -> int:
        return int(self._data.shape[2])

    @property
    def positions(self) -> int:
        return self.height * self.width

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def _torch_dtype(self) -> torch.dtype:
        return torch.float16 if self.dtype == np.float16 else torch.float32

    @property
    def array(self) -> np.ndarray:
        """The (H*W, n, C) content as a (memory-mapped) view."""
        return self._data[:, :self.n]

    def read(self, p0: int, p1: int, n0: int, n1: int) -> np.ndarray:
        """Positions [p0, p1) x samples [n0, n1) as an in-memory (p1-p0, n1-n0, C) array of the store dtype."""
        return np.array(self._data[p0:p1, n0:min(n1, self.n)])

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        where = str(self.path) if self.path else "in memory"
        return (f"FeatureStore({where}: n={self.n}, C={self.channels}, {self.height}x{self.width}, "
                f"{self.dtype}, {self.n * self.positions * self.channels * self.dtype.itemsize / 2**30:.2f} GiB)")


def _header_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


@torch.no_grad()
def extract_features(backbone_fn: Callable[[torch.Tensor], torch.Tensor], loader: Iterable,
                     store_path: str | os.PathLike | None = None, dtype=np.float16, progress: bool = True, *,
                     num_samples: int | None = None, source: str | None = None,
                     overwrite: bool = False) -> FeatureStore:
    """Run ``backbone_fn`` over every batch of ``loader`` and keep F_o in a :class:`FeatureStore`.

    Args:
        backbone_fn: maps an image batch to F_o, (B, C, H, W). It owns device placement and eval mode
            (e.g. ``lambda x: model.backbone(x.to("cuda"))`` with the model in ``eval()``); it is called under
            ``torch.no_grad()``.
        loader: yields ``(images, labels, metas)`` tuples (a lanfer DataLoader) or bare image tensors,
            in a fixed order (no shuffling: store row i is the i-th image).
        store_path: file for the memmap (its header goes to ``store_path + ".json"``); ``None`` keeps the
            store in RAM.
        dtype: float16 (default; halves disk and I/O, plenty for K-means) or float32.
        num_samples: how many images the loader yields; default ``len(loader.dataset)``.
        source: a string recorded in the store (and later in the guidance meta), e.g. the checkpoint.

    Memory: RAM holds one batch of images and features; the store is written through a memory map, so
    resident memory does not grow with N (the OS page cache holds and flushes the dirty pages). Disk:
    ``H*W * N * C * itemsize`` bytes, e.g. AffectNet train 49 x 287,651 x 512 x 2 B = 14.4 GB. With
    ``store_path=None`` the same amount is held in RAM.
    """
    if num_samples is None:
        try:
            num_samples = len(loader.dataset)  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            raise ValueError("extract_features needs the number of samples to lay out the position-major "
                             "store: pass num_samples=... (or a DataLoader whose dataset has a length)") from None
    if num_samples < 1:
        raise ValueError(f"extract_features: the loader's dataset is empty (num_samples={num_samples})")
    dt = _np_dtype(dtype)
    store: FeatureStore | None = None
    n = 0
    bar = None
    if progress:
        from .progress import progress_bar

        bar = progress_bar(total=num_samples, desc="extracting F_o", unit="img")
    try:
        for i, batch in enumerate(loader):
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            f = backbone_fn(images)
            if not isinstance(f, torch.Tensor) or f.ndim != 4:
                shape = tuple(f.shape) if hasattr(f, "shape") else type(f).__name__
                raise ValueError(f"backbone_fn must return F_o as a (B, C, H, W) tensor; batch {i} gave {shape}")
            if store is None:
                meta = {"source": source} if source is not None else {}
                store = FeatureStore.create(store_path, num_samples, f.shape[1], f.shape[2], f.shape[3], dt,
                                            meta=meta, overwrite=overwrite)
            if n + f.shape[0] > num_samples:
                raise ValueError(f"the loader yielded more than num_samples={num_samples} images (batch {i}); "
                                 "pass the right num_samples")
            store.write(n, f)
            n += f.shape[0]
            if bar is not None:
                bar.update(f.shape[0])
    finally:
        if bar is not None:
            bar.close()
    if store is None:
        raise ValueError("extract_features: the loader yielded no batches")
    return store.finalize(n)


# ----------------------------------------------------------------------------------------------------
# Where the features come from during the fit


class _ArraySource:
    """Position-major float32 features already in the backend's memory (numpy array or torch tensor)."""

    resident = True

    def __init__(self, data, height: int, width: int, meta: dict | None = None):
        self.data = data  # (P, N, C)
        self.positions, self.n, self.channels = (int(s) for s in data.shape)
        self.height, self.width = height, width
        self.meta = meta or {}

    def rows(self, p0, p1, n0, n1):
        return self.data[p0:p1, n0:n1]

    def gather(self, p0, p1, idx: np.ndarray):
        if isinstance(self.data, torch.Tensor):
            return self.data[p0:p1][:, torch.as_tensor(idx, device=self.data.device)]
        return self.data[p0:p1][:, idx]


class _StoreSource:
    """A :class:`FeatureStore`, read in pieces and converted to float32 by the backend."""

    resident = False

    def __init__(self, store: FeatureStore):
        self.store = store
        self.positions, self.n, self.channels = store.positions, store.n, store.channels
        self.height, self.width = store.height, store.width
        self.meta = store.meta

    def rows(self, p0, p1, n0, n1):
        return self.store.read(p0, p1, n0, n1)

    def gather(self, p0, p1, idx: np.ndarray):
        return np.asarray(self.store.array[p0:p1][:, idx])


def _position_major(chunks: Iterator, first_index: int = 0) -> tuple[np.ndarray, int, int]:
    """Stack (n_i, C, H, W) chunks into one position-major (H*W, N, C) float32 array."""
    parts, shape = [], None
    for i, ch in enumerate(chunks, start=first_index):
        a = _to_numpy(ch)
        if a.ndim != 4:
            raise ValueError(f"features chunk {i} has shape {a.shape}; every chunk must be (n, C, H, W)")
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"features chunk {i} has dtype {a.dtype}; expected real numbers")
        if shape is None:
            shape = a.shape[1:]
        elif a.shape[1:] != shape:
            raise ValueError(f"features chunk {i} has shape {a.shape} but chunk {first_index} had (C, H, W) = "
                             f"{shape}; all chunks must come from the same backbone and input size")
        if a.shape[0]:
            parts.append(a)
    n = sum(a.shape[0] for a in parts)
    if shape is None or n == 0:
        raise ValueError("features are empty: got no samples (N = 0)")
    c, h, w = shape
    out = np.empty((h * w, n, c), np.float32)  # (P, N, C)
    n0 = 0
    while parts:
        a = parts.pop(0)  # drop each input chunk as soon as it is copied
        # 16-sample slabs keep the strided reads in cache: 0.4 s for 12,271 x 512 x 7 x 7 here, 0.6 s with
        # 256-sample slabs and 3 s for the whole array at once
        for s in range(0, a.shape[0], 16):
            b = a[s:s + 16]
            out[:, n0:n0 + b.shape[0]] = b.reshape(b.shape[0], c, h * w).transpose(2, 0, 1)
            n0 += b.shape[0]
    return out, h, w


def _make_source(features, device: torch.device | None):
    """Wrap any accepted input as a source whose data the chosen backend can read."""
    if isinstance(features, (str, os.PathLike)):
        features = FeatureStore.open(features)
    if isinstance(features, FeatureStore):
        return _StoreSource(features)
    if isinstance(features, torch.Tensor) and device is not None and device.type != "cpu":
        if features.ndim != 4:
            raise ValueError(f"features must be (N, C, H, W); got shape {tuple(features.shape)}")
        n, c, h, w = features.shape
        if n == 0:
            raise ValueError(f"features are empty: shape {tuple(features.shape)}")
        x = features.detach().to(device, torch.float32).reshape(n, c, h * w).permute(2, 0, 1).contiguous()
        return _ArraySource(x, h, w)  # (P, N, C) on the GPU
    if isinstance(features, (np.ndarray, torch.Tensor)):
        if features.ndim != 4:
            raise ValueError(f"features must be (N, C, H, W) (or an iterable of such chunks, or a "
                             f"FeatureStore); got shape {tuple(features.shape)}")
        chunks: Iterator = iter([features])
    elif isinstance(features, Iterable):
        chunks = iter(features)
    else:
        raise TypeError(f"features must be an (N, C, H, W) array/tensor, an iterable of such chunks or a "
                        f"FeatureStore; got {type(features).__name__}")
    data, h, w = _position_major(chunks)
    if device is not None and device.type != "cpu":
        data = torch.from_numpy(data).to(device)
    return _ArraySource(data, h, w)


# ----------------------------------------------------------------------------------------------------
# Backends: the only code that touches the big arrays


@dataclass
class _Stats:
    """Additive statistics of one assignment pass over some samples, for every (position, init).

    Everything is a sum over samples, so shards of the data (chunks here, DDP ranks later) combine by
    addition. ``n``, ``colsum`` and ``sqsum`` do not depend on the centres; they are gathered on the first
    pass only.
    """

    count1: np.ndarray  # (pb, R) samples nearer centre 1
    sum1: np.ndarray  # (pb, R, C) their feature sum
    n: np.ndarray | None = None  # (pb,) samples
    colsum: np.ndarray | None = None  # (pb, C) feature sum of all samples
    sqsum: np.ndarray | None = None  # (pb,) sum of squared norms of all samples

    def __add__(self, o: _Stats) -> _Stats:
        add = lambda a, b: None if a is None else a + b  # noqa: E731
        return _Stats(self.count1 + o.count1, self.sum1 + o.sum1, add(self.n, o.n), add(self.colsum, o.colsum),
                      add(self.sqsum, o.sqsum))


class _NumpyOps:
    """CPU: per position a BLAS mat-vec and a masked sum, positions spread over a thread pool.

    Measured on the 2-core AMD EPYC dev machine (full pass over 12,271 x 49 x 512 float32): torch.bmm (MKL)
    0.14 s, numpy with 2 OpenBLAS threads per call 0.05 s when the machine is idle but 0.3-1.0 s when other
    processes load it (every small threaded call waits for both cores), numpy with 1 BLAS thread per call
    and one Python thread per core 0.06-0.07 s under that same load. So BLAS is pinned to one thread
    (with threadpoolctl, which comes with scikit-learn; without it BLAS keeps its default) and the positions
    of a chunk are shared among ``os.cpu_count()`` worker threads (numpy releases the GIL in BLAS). Each
    position is computed by one thread in a fixed order, so results do not depend on scheduling.
    """

    name = "numpy"

    def __init__(self):
        self._pool = None
        self._limits = None

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # only speed depends on it
            threadpool_limits = None
        if threadpool_limits is not None:
            self._limits = threadpool_limits(1, user_api="blas")
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(min(workers, 16), thread_name_prefix="lanfer-guidance")
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._limits is not None:
            self._limits.restore_original_limits()
            self._limits = None

    def _map(self, fn, items):
        if self._pool is None or len(items) < 2:
            for i in items:
                fn(i)
        else:
            for _ in self._pool.map(fn, items):
                pass

    def block(self, x) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)

    def empty(self, shape):
        return np.empty(shape, np.float32)

    def lloyd(self, X, W, b, active, totals: bool) -> _Stats:
        pb, n, c = X.shape
        r = W.shape[1]
        st = _Stats(np.zeros((pb, r)), np.zeros((pb, r, c)))
        if totals:
            st.n, st.colsum, st.sqsum = np.full(pb, float(n)), np.zeros((pb, c)), np.zeros(pb)

        def one(i):
            x = X[i]  # (n, C), rows contiguous
            if active[i]:
                near1 = (x @ W[i].T > b[i]).astype(np.float32)  # (n, R)
                st.count1[i] = near1.sum(0)
                st.sum1[i] = near1.T @ x  # (R, C)
            if totals:
                st.colsum[i] = x.sum(0, dtype=np.float64)
                st.sqsum[i] = np.einsum("nc,nc->", x, x, dtype=np.float64)

        self._map(one, range(pb) if totals else np.flatnonzero(active).tolist())
        return st

    def dist2(self, X, V) -> np.ndarray:
        """Squared distances (pb, n, m) between the rows of X (pb, n, C) and V (pb, m, C)."""
        V = np.asarray(V, np.float32)
        xx = np.einsum("pnc,pnc->pn", X, X, dtype=np.float64)
        vv = np.einsum("pmc,pmc->pm", V, V, dtype=np.float64)
        d = xx[:, :, None] - 2.0 * np.matmul(X, V.transpose(0, 2, 1)) + vv[:, None, :]
        return np.maximum(d, 0.0)

    def take(self, X, idx) -> np.ndarray:
        """Rows X[i, idx[i, j]] as a numpy (pb, m, C) float32 array."""
        return np.asarray(X[np.arange(X.shape[0])[:, None], idx], np.float32)

    def labels(self, X, W, b) -> np.ndarray:
        return np.matmul(X, W.transpose(0, 2, 1)) > b[:, None, :]  # (pb, n, R)


class _TorchOps:
    """CUDA: the same passes as batched matmuls over all positions of a block."""

    def __init__(self, device: torch.device):
        self.device = device
        self.name = f"torch:{device}"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def block(self, x) -> torch.Tensor:
        t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
        return t.to(self.device, non_blocking=True).float()

    def empty(self, shape):
        return torch.empty(shape, device=self.device, dtype=torch.float32)

    def _t(self, a, dtype=torch.float32):
        return torch.as_tensor(np.ascontiguousarray(a)).to(self.device, dtype)

    def lloyd(self, X, W, b, active, totals: bool) -> _Stats:
        Wt, bt = self._t(W), self._t(b)
        near1 = (torch.bmm(X, Wt.transpose(1, 2)) > bt[:, None, :]).float()  # (pb, n, R)
        count1 = near1.sum(1, dtype=torch.float64)
        sum1 = torch.bmm(near1.transpose(1, 2), X).double()  # (pb, R, C)
        st = _Stats(count1.cpu().numpy(), sum1.cpu().numpy())
        if totals:
            st.n = np.full(X.shape[0], float(X.shape[1]))
            st.colsum = X.sum(1, dtype=torch.float64).cpu().numpy()
            st.sqsum = (X.double() ** 2).sum((1, 2)).cpu().numpy()
        return st

    def dist2(self, X, V) -> np.ndarray:
        Vt = self._t(V)
        xx = (X.double() ** 2).sum(-1)
        vv = (Vt.double() ** 2).sum(-1)
        d = xx[:, :, None] - 2.0 * torch.bmm(X, Vt.transpose(1, 2)).double() + vv[:, None, :]
        return d.clamp_min(0.0).cpu().numpy()

    def take(self, X, idx) -> np.ndarray:
        i = torch.arange(X.shape[0], device=X.device)[:, None]
        return X[i, torch.as_tensor(idx, device=X.device)].cpu().numpy()

    def labels(self, X, W, b) -> np.ndarray:
        return (torch.bmm(X, self._t(W).transpose(1, 2)) > self._t(b)[:, None, :]).cpu().numpy()


def _make_ops(features, device) -> tuple[Any, torch.device | None]:
    if device is None and isinstance(features, torch.Tensor) and features.device.type != "cpu":
        device = features.device
    if device is None:
        return _NumpyOps(), None
    device = torch.device(device)
    if device.type == "cpu":
        return _NumpyOps(), None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} requested but CUDA is not available; use device=None (CPU)")
    return _TorchOps(device), device


# ----------------------------------------------------------------------------------------------------
# K-means with K = 2, all positions at once


def _planes(centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hyperplane (W, b) per (position, init): a sample is nearer centre 1 iff x . W > b."""
    c64 = centres.astype(np.float64)
    W = centres[..., 1, :] - centres[..., 0, :]  # (pb, R, C) float32, as Guidance.assign computes it
    b = ((c64[..., 1, :] ** 2).sum(-1) - (c64[..., 0, :] ** 2).sum(-1)) / 2  # (pb, R)
    return W, b.astype(np.float32)


def _accumulate(chunks: Callable[[], Iterator], ops, centres, active, totals: bool) -> _Stats:
    """One assignment pass: per-chunk statistics, summed (the local half of a distributed pass)."""
    W, b = _planes(centres)
    st = None
    for X in chunks():
        part = ops.lloyd(X, W, b, active, totals)
        st = part if st is None else st + part
    return st


def _reduce(st: _Stats) -> _Stats:
    """Combine statistics across processes. In one process there is nothing to combine; with the samples
    sharded over DDP ranks each field of ``st`` is all-reduced with a sum here (every field is additive)."""
    return st


def _farthest(chunks, ops, other: np.ndarray, need: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each (position, init) in ``need``: the sample farthest from centre ``other`` and its sq. distance."""
    pb, r, c = other.shape
    best = np.full((pb, r), -1.0)
    pts = np.zeros((pb, r, c), np.float32)
    for X in chunks():
        d = ops.dist2(X, other)  # (pb, n, R)
        j = d.argmax(1)  # (pb, R)
        dj = np.take_along_axis(d, j[:, None, :], 1)[:, 0]
        better = need & (dj > best)
        if better.any():
            pts[better] = ops.take(X, j)[better]
            best = np.where(better, dj, best)
    return pts, best


def _lloyd(chunks, ops, centres: np.ndarray, iters: int, tol: float, totals=None, bar=None):
    """Lloyd iterations for every (position, init) on the data ``chunks()`` yields.

    Returns ``(centres, counts, sums, totals, n_iter, converged)``. The centres are those each pair used in
    its last pass and counts/sums are that pass's statistics, so counts and inertia describe exactly the
    assignment that the returned centres make.
    """
    pb, r, _, c = centres.shape
    centres = centres.copy()
    active = np.ones((pb, r), bool)
    counts = np.zeros((pb, r, 2))
    sums = np.zeros((pb, r, 2, c))
    n_iter = np.zeros((pb, r), np.int64)
    for it in range(iters):
        st = _reduce(_accumulate(chunks, ops, centres, active.any(1), totals is None))
        if totals is None:
            totals = (st.n, st.colsum, st.sqsum)
            if not np.isfinite(st.sqsum).all():
                raise ValueError("features contain NaN or inf (at block positions "
                                 f"{np.flatnonzero(~np.isfinite(st.sqsum)).tolist()})")
        n, colsum, _ = totals
        cnt = np.stack([n[:, None] - st.count1, st.count1], -1)  # (pb, R, 2)
        sm = np.stack([colsum[:, None] - st.sum1, st.sum1], -2)  # (pb, R, 2, C)
        counts[active], sums[active] = cnt[active], sm[active]
        n_iter[active] += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(active=int(active.any(1).sum()))
        if it == iters - 1:
            break
        # update: centre = mean of its samples (eq. 3)
        new = np.where(cnt[..., None] > 0, sm / np.maximum(cnt, 1)[..., None], centres).astype(np.float32)
        empty = active & (cnt == 0).any(-1)
        degenerate = np.zeros_like(active)
        if empty.any():
            # an empty cluster restarts at the sample farthest from the other centre
            k_full = cnt.argmax(-1)  # (pb, R)
            other = np.take_along_axis(new, k_full[..., None, None], 2)[:, :, 0]
            pts, d2 = _farthest(chunks, ops, other, empty)
            # every sample equals the other centre: one cluster is all there is
            degenerate = empty & ((d2 <= 0) | (pts == other).all(-1))
            fix = empty & ~degenerate
            ii, rr = np.nonzero(fix)
            new[ii, rr, 1 - k_full[ii, rr]] = pts[ii, rr]
        diff = ((new.astype(np.float64) - centres) ** 2).sum((-1, -2))
        ref = (centres.astype(np.float64) ** 2).sum((-1, -2))
        shift = np.sqrt(diff / np.maximum(ref, np.finfo(np.float64).tiny))
        done = active & ((shift <= tol) | degenerate)
        move = active & ~done
        centres[move] = new[move]
        active &= ~done
        if not active.any():
            break
    return centres, counts, sums, totals, n_iter, ~active


def _inertia(centres, counts, sums, sqsum) -> np.ndarray:
    """sum_x |x - c(x)|^2 = sum |x|^2 - 2 sum_k c_k . S_k + sum_k n_k |c_k|^2, per (position, init)."""
    c = centres.astype(np.float64)
    val = sqsum[:, None] - 2 * (c * sums).sum((-1, -2)) + (counts * (c ** 2).sum(-1)).sum(-1)
    return np.maximum(val, 0.0)


def _kmeanspp(ops, Xs, rngs: list[np.random.Generator], n_init: int) -> np.ndarray:
    """k-means++ seeding for K = 2 (greedy: 2 + log K candidates, as scikit-learn), ``n_init`` per position.

    Xs: (pb, S, C) sample. Returns (pb, n_init, 2, C) float32 centres."""
    pb, s = Xs.shape[0], Xs.shape[1]
    trials = 2 + int(math.log(2))
    first = np.array([[rng.integers(s) for _ in range(n_init)] for rng in rngs])  # (pb, R)
    c0 = ops.take(Xs, first)  # (pb, R, C)
    d0 = ops.dist2(Xs, c0)  # (pb, S, R)
    cand = np.empty((pb, n_init, trials), np.int64)
    for i, rng in enumerate(rngs):
        for r in range(n_init):
            cum = np.cumsum(d0[i, :, r])
            u = rng.random(trials) * cum[-1]
            # side="right" never picks a zero-weight sample (a duplicate of the first centre)
            cand[i, r] = np.minimum(np.searchsorted(cum, u, side="right"), s - 1) if cum[-1] > 0 else first[i, r]
    cv = ops.take(Xs, cand.reshape(pb, -1))  # (pb, R*T, C)
    dc = ops.dist2(Xs, cv).reshape(pb, s, n_init, trials)
    potential = np.minimum(d0[..., None], dc).sum(1)  # (pb, R, T)
    best = potential.argmin(-1)  # (pb, R)
    c1 = np.take_along_axis(cv.reshape(pb, n_init, trials, -1), best[..., None, None], 2)[:, :, 0]
    return np.stack([c0, c1], 2).astype(np.float32)


def _check_args(seed, iters, tol, sample_size, chunk_size, n_init):
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    for name, v in (("iters", iters), ("sample_size", sample_size), ("chunk_size", chunk_size), ("n_init", n_init)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer; got {v!r}")
    if sample_size < 2:
        raise ValueError(f"sample_size must be >= 2 (two centres); got {sample_size}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0; got {tol!r}")


def _fit(src, ops, seed, iters, tol, sample_size, chunk_size, n_init, max_memory, progress, source) -> Guidance:
    n, c, p_total = src.n, src.channels, src.positions
    if n < 2:
        raise ValueError(f"need at least 2 samples to form 2 clusters; got N = {n}")
    s = min(sample_size, n)
    sample_idx = np.arange(n) if s == n else np.sort(
        np.random.default_rng([seed, 0]).choice(n, s, replace=False))
    # Positions are processed in blocks that fit max_memory: the block's sample (float32), plus, for a store,
    # the block's full data in float32 when that fits (then the store is read once, not once per pass).
    per_sample = s * c * 4 * 2  # the sample and the distance temporaries of the seeding
    per_full = n * c * 4
    load = not src.resident and per_full + per_sample <= max_memory
    per_pos = per_sample + (per_full if load else 0)
    pb = max(1, min(p_total, max_memory // per_pos))

    centres = np.zeros((p_total, 2, c), np.float32)
    counts = np.zeros((p_total, 2))
    inertia = np.zeros(p_total)
    sample_iters = full_iters = unconverged = 0
    bar = None
    if progress:
        from .progress import progress_bar

        bar = progress_bar(desc=f"guidance K=2 (seed {seed})", unit="pass")
    try:
        for p0 in range(0, p_total, pb):
            p1 = min(p0 + pb, p_total)
            rngs = [np.random.default_rng([seed, 1, p]) for p in range(p0, p1)]
            # 1. k-means++ and Lloyd on the sample, n_init seedings side by side; keep the best per position
            xs = ops.block(src.gather(p0, p1, sample_idx))  # (pb, S, C)
            init = _kmeanspp(ops, xs, rngs, n_init)  # (pb, R, 2, C)
            cs, cnt, sm, tot, it_s, _ = _lloyd(lambda: iter([xs]), ops, init, iters, tol)
            best = _inertia(cs, cnt, sm, tot[2]).argmin(1)  # (pb,)
            warm = cs[np.arange(p1 - p0), best][:, None]  # (pb, 1, 2, C)
            del xs
            sample_iters = max(sample_iters, int(it_s.max()))
            # 2. full passes over all N samples
            if src.resident or load:
                data = src.rows(p0, p1, 0, n) if src.resident else _load(src, ops, p0, p1, chunk_size)
                chunks = lambda: (data[:, a:a + chunk_size] for a in range(0, n, chunk_size))  # noqa: E731
            else:
                chunks = lambda: (ops.block(src.rows(p0, p1, a, a + chunk_size))  # noqa: E731
                                  for a in range(0, n, chunk_size))
            cf, cnt, sm, tot, it_f, conv = _lloyd(chunks, ops, warm, iters, tol, bar=bar)
            data = None
            centres[p0:p1] = cf[:, 0]
            counts[p0:p1] = cnt[:, 0]
            inertia[p0:p1] = _inertia(cf, cnt, sm, tot[2])[:, 0]
            full_iters = max(full_iters, int(it_f.max()))
            unconverged += int((~conv).sum())
    finally:
        if bar is not None:
            bar.close()

    counts_t = torch.from_numpy(np.rint(counts).astype(np.int64))
    # eq. 4: cluster 0 is attentive if it is strictly smaller, otherwise cluster 1
    attentive = (counts_t[:, 0] >= counts_t[:, 1]).long()
    meta = {"source": source if source is not None else src.meta.get("source"), "seed": int(seed), "n": n,
            "channels": c, "height": src.height, "width": src.width, "sample_size": s, "n_init": n_init,
            "iters": iters, "tol": tol, "chunk_size": chunk_size, "sample_iters": sample_iters,
            "full_iters": full_iters, "unconverged": unconverged, "backend": ops.name}
    return Guidance(centers=torch.from_numpy(centres), attentive=attentive, counts=counts_t,
                    inertia=torch.from_numpy(inertia), height=src.height, width=src.width, meta=meta)


def _load(src, ops, p0, p1, chunk_size):
    """A block of positions from a store, converted to float32 in the backend's memory piece by piece."""
    out = ops.empty((p1 - p0, src.n, src.channels))  # (pb, N, C)
    for a in range(0, src.n, chunk_size):
        out[:, a:a + chunk_size] = ops.block(src.rows(p0, p1, a, a + chunk_size))
    return out


def fit_guidance(features, seed: int = 0, iters: int = 100, tol: float = 1e-6, sample_size: int = 4096,
                 chunk_size: int = 2048, device=None, progress: bool = False, source: str | None = None, *,
                 n_init: int = 3, max_memory: int = 2 * 2**30) -> Guidance:
    """Fit the K=2 guidance centres at every feature-map position (paper section III-C).

    Args:
        features: F_o of the training set: an (N, C, H, W) numpy array or torch tensor; an iterable of
            (n_i, C, H, W) chunks (a generator over batches is consumed once); a :class:`FeatureStore`;
            or the path of an on-disk store.
        seed: the fit is a deterministic function of the data and the seed.
        iters: most Lloyd iterations, both on the sample and over the full data.
        tol: stop a position when its relative centre shift |dc| / |c| is <= tol (0 when no label changed).
        sample_size: samples per position for the k-means++ seeding and the warm-start iterations.
        chunk_size: samples per chunk of a pass over the full data.
        device: None/"cpu" (numpy) or a CUDA device (torch); default: the device of a tensor input.
        progress: show a tqdm bar counting full passes.
        source: backbone/checkpoint description kept in ``meta`` (default: the store's own).
        n_init: k-means++ seedings tried on the sample per position (lowest sample inertia wins).
        max_memory: bytes of float32 working data per block of positions. Arrays and iterables are first
            converted to one position-major float32 copy in RAM (N*H*W*C*4 bytes; a chunk iterable also
            briefly holds its chunks). A store is processed a block of positions at a time: the block
            is read into RAM once if it fits ``max_memory``, else re-read from the memmap on each pass.
    Returns:
        A :class:`Guidance`.
    """
    _check_args(seed, iters, tol, sample_size, chunk_size, n_init)
    ops, dev = _make_ops(features, device)
    src = _make_source(features, dev)
    with ops:
        return _fit(src, ops, int(seed), int(iters), float(tol), int(sample_size), int(chunk_size),
                    int(n_init), int(max_memory), progress, source)


# ----------------------------------------------------------------------------------------------------
# Stability across seeds


def stability(features, seeds=(0, 1, 2), **kw) -> dict:
    """Fit with each seed and measure, per position, how far the guidance labels agree with ``seeds[0]``.

    For every training sample and position we compare the label of seed s with seed ``seeds[0]``:
    ``attentive_agreement`` compares the attentive/general label itself (what the BCE loss sees; it drops
    when eq. 4 picks the other cluster of a near-equal split), ``cluster_agreement`` compares the cluster
    membership after matching the two clusters (what the K-means itself reproduces).

    Args:
        features: as for :func:`fit_guidance` (a generator is consumed once and reused for every seed).
        seeds: at least two seeds; the first is the reference.
        **kw: passed to :func:`fit_guidance` (iters, tol, sample_size, chunk_size, device, n_init, ...).
    Returns:
        A JSON-friendly dict, meant for ``guidance.meta["stability"]`` (then shown by ``summary()``):
        ``seeds``; ``attentive_agreement`` and ``cluster_agreement``: per other seed, a list of H*W
        fractions; ``min_attentive_agreement``: per position, the worst over seeds; ``attentive_fraction``:
        per seed, the list of H*W attentive fractions; ``inertia``: per seed, the total inertia.
    """
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2:
        raise ValueError(f"stability needs at least two seeds; got {seeds}")
    device = kw.pop("device", None)
    progress = kw.pop("progress", False)
    source = kw.pop("source", None)
    fit_kw = {k: kw.pop(k) for k in ("iters", "tol", "sample_size", "chunk_size", "n_init", "max_memory")
              if k in kw}
    if kw:
        raise TypeError(f"stability got unexpected arguments {sorted(kw)}")
    args = {"iters": 100, "tol": 1e-6, "sample_size": 4096, "chunk_size": 2048, "n_init": 3,
            "max_memory": 2 * 2**30, **fit_kw}
    for s in seeds:
        _check_args(s, args["iters"], args["tol"], args["sample_size"], args["chunk_size"], args["n_init"])
    ops, dev = _make_ops(features, device)
    src = _make_source(features, dev)
    with ops:
        fits = [_fit(src, ops, s, args["iters"], float(args["tol"]), args["sample_size"], args["chunk_size"],
                     args["n_init"], args["max_memory"], progress, source) for s in seeds]

        # one more pass: every seed's labels for every sample, compared with the first seed's
        centres = np.stack([g.centers.numpy() for g in fits], 1)  # (P, S, 2, C)
        att = np.stack([g.attentive.numpy() for g in fits], 1)  # (P, S)
        same_cluster = np.zeros((src.positions, len(seeds)))
        same_att = np.zeros((src.positions, len(seeds)))
        cs = args["chunk_size"]
        pb = max(1, min(src.positions, args["max_memory"] // max(1, cs * src.channels * 4)))
        for p0 in range(0, src.positions, pb):
            p1 = min(p0 + pb, src.positions)
            W, b = _planes(centres[p0:p1])
            for a in range(0, src.n, cs):
                X = ops.block(src.rows(p0, p1, a, a + cs))  # (pb, n, C)
                near1 = ops.labels(X, W, b)  # (pb, n, S)
                is_att = near1 == (att[p0:p1, None, :] == 1)
                same_cluster[p0:p1] += (near1 == near1[..., :1]).sum(1)
                same_att[p0:p1] += (is_att == is_att[..., :1]).sum(1)
    n = src.n
    # with K = 2 the clusters of two fits match either as (0,0),(1,1) or swapped: take the better matching
    cluster_agreement = np.maximum(same_cluster, n - same_cluster) / n
    attentive_agreement = same_att / n
    return {
        "seeds": seeds,
        "attentive_agreement": attentive_agreement[:, 1:].T.tolist(),
        "cluster_agreement": cluster_agreement[:, 1:].T.tolist(),
        "min_attentive_agreement": attentive_agreement[:, 1:].min(1).tolist(),
        "attentive_fraction": [g.attentive_fraction().tolist() for g in fits],
        "inertia": [float(g.inertia.sum()) for g in fits],
    }
