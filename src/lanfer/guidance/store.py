"""Backbone features on disk (:class:`FeatureStore`, :func:`extract_features`) and the sources the fit reads
them through (an array in the backend's memory, or a store read in pieces)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from ..io import atomic_write
from .map import GuidanceError

_STORE_FORMAT = "lanfer.feature_store"
_STORE_VERSION = 1


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
            atomic_write(_header_path(self.path), lambda tmp: tmp.write_text(json.dumps(header, indent=1)))
        return self

    @classmethod
    def open(cls, path: str | os.PathLike) -> FeatureStore:
        """Open a finalized on-disk store read-only (nothing is read into RAM until used)."""
        path = Path(path)
        header = _header_path(path)
        if not header.is_file():
            raise FileNotFoundError(f"feature store header {str(header)!r} not found: {str(path)!r} is not a "
                                    "complete feature store (was extract_features interrupted?)")
        try:
            h = json.loads(header.read_text())
            if not isinstance(h, dict):
                raise ValueError(f"a JSON {type(h).__name__}, not an object")
        except (ValueError, UnicodeDecodeError) as e:
            raise GuidanceError(f"{str(header)!r} is not a feature store header ({e})") from None
        if h.get("format") != _STORE_FORMAT:
            raise GuidanceError(f"{str(header)!r} is not a lanfer feature store header (format={h.get('format')!r})")
        ints = {k: h.get(k) for k in ("height", "width", "capacity", "channels", "n")}
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in ints.values()) \
                or ints["n"] > ints["capacity"]:
            raise GuidanceError(f"{str(header)!r}: height, width, capacity, channels and n must be non-negative "
                                f"integers with n <= capacity; found {ints}")
        # only the dtypes a store is written in: the header must not choose object arrays or odd layouts
        if h.get("dtype") not in ("float16", "float32"):
            raise GuidanceError(f"{str(header)!r}: dtype {h.get('dtype')!r} is not float16 or float32")
        shape = (h["height"] * h["width"], h["capacity"], h["channels"])
        dt = np.dtype(h["dtype"])
        expect = int(np.prod(shape)) * dt.itemsize
        if not path.is_file() or path.stat().st_size != expect:
            size = path.stat().st_size if path.is_file() else "missing"
            raise GuidanceError(f"feature store data {str(path)!r} should hold {expect} bytes for shape {shape} "
                                f"{dt}; found {size} (truncated, or another store's header?)")
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
        from ..progress import progress_bar

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
    """A :class:`FeatureStore`, read in pieces and converted to float32 by the backend.

    A float32 store held in RAM (not a memmap) is ``resident`` for the CPU backend: the fit reads its blocks
    in place, without a copy (a copy of a position costs as much as a Lloyd pass over it)."""

    def __init__(self, store: FeatureStore, cpu: bool = True):
        self.store = store
        self.on_disk = isinstance(store._data, np.memmap) and store.path is not None
        if self.on_disk and store._data.mode != "r":
            store._data.flush()  # the fit reads the file itself (see _pread): written rows must be in it
        self.resident = cpu and store.dtype == np.float32 and not self.on_disk
        self.positions, self.n, self.channels = store.positions, store.n, store.channels
        self.height, self.width = store.height, store.width
        self.meta = store.meta

    def rows(self, p0, p1, n0, n1):
        if not self.on_disk:
            return self.store.array[p0:p1, n0:n1]  # a view
        return self._pread(p0, p1, n0, n1)

    def _pread(self, p0, p1, n0, n1) -> np.ndarray:
        """Positions [p0, p1) x samples [n0, n1) read from the file with pread, not through the memmap: pages
        read through a memory map count in the process's resident memory until it is unmapped, so a fit
        over a 14.4 GB store would show a 14 GB RSS; read(2) leaves them to the page cache alone."""
        st = self.store
        n1 = min(n1, st.n)
        out = np.empty((p1 - p0, max(0, n1 - n0), st.channels), st.dtype)  # (pb, n, C)
        row = st.channels * st.dtype.itemsize
        fd = os.open(st.path, os.O_RDONLY)
        try:
            for k, p in enumerate(range(p0, p1)):
                want = out[k].nbytes
                got = os.preadv(fd, [memoryview(out[k]).cast("B")], (p * st.capacity + n0) * row) if want else 0
                if got != want:
                    raise ValueError(f"feature store {str(st.path)!r}: read {got} of {want} bytes at position {p}, "
                                     f"samples {n0}..{n1 - 1}: the file is shorter than its header says")
        finally:
            os.close(fd)
        return out

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
        return _StoreSource(features, cpu=device is None or device.type == "cpu")
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
