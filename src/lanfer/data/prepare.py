"""A decode-once cache of a dataset: cropped, resized faces in a uint8 memory-mapped array.

``lanfer prepare CONFIG.yaml`` decodes every image of the configured dataset once, applies the dataset's own
face crop, resizes to ``data.image_size`` and writes, per split::

    images_<split>.npy   (N, S, S, 3) uint8, read with numpy memory mapping
    labels_<split>.npy   (N,) int64, or (N, C) float32 for soft labels
    meta_<split>.jsonl   one JSON object per image (the source path and the dataset's metadata)
    info.json            dataset name, root, options, classes, image size, counts and reports

Training then reads ``data.name: prepared`` with ``data.root: <cache>`` and gets the same
``(PIL image, label, meta)`` items, without JPEG decoding. A pose list still applies (``subset=``): the
metadata keeps each image's original path. For KDEF the cache holds split ``all`` with each image's fold,
and ``split="train"/"test"`` with ``fold=k`` select from it.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..io import atomic_write
from ._common import OfficialSample, jsonable_report
from .base import DataError, FERDataset
from .registry import build_dataset_from_config, register_dataset

FORMAT = "lanfer-prepared"
VERSION = 1


def _load_cfg(cfg, overrides=None):
    from ..config import Config, load_config

    if isinstance(cfg, Config):
        if overrides:
            from ..config import config_from_dict
            return config_from_dict(cfg.to_dict(), overrides)
        return cfg
    return load_config(cfg, overrides)


def default_splits(cfg) -> list[str]:
    if cfg.data.name == "kdef":
        return ["all"]
    splits = []
    for s in (cfg.data.train_split, cfg.data.val_split, cfg.data.test_split):
        if s and s not in splits:
            splits.append(s)
    return splits


class _Decode:
    """Index -> ``(index, (S, S, 3) uint8 array or None, error message or None)``; picklable for workers.

    Errors come back as messages so that the main process raises them plainly (not wrapped by a worker)."""

    def __init__(self, ds: FERDataset, size: int):
        self.ds, self.size = ds, size

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        try:
            image = self.ds.load(i)
        except DataError as e:
            return i, None, str(e)
        return i, resize_uint8(image, self.size), None


def resize_uint8(image: Image.Image, size: int) -> np.ndarray:
    """(size, size, 3) uint8, resized exactly as the presets resize (a uint8 tensor, antialiased bilinear),
    so that a preset applied to the cached image gives the same tensor as applied to the original."""
    from torchvision.transforms.v2 import functional as F

    x = F.pil_to_tensor(image.convert("RGB"))  # (3, H, W) uint8
    if tuple(x.shape[-2:]) != (size, size):
        x = F.resize(x, [size, size], antialias=True)
    return x.permute(1, 2, 0).contiguous().numpy().astype(np.uint8, copy=False)


def _as_list(batch):
    return batch


def _jsonable(meta: dict) -> dict:
    out = {}
    for k, v in meta.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            out[k] = v
        elif isinstance(v, (list, tuple)):
            out[k] = [x if isinstance(x, (str, int, float, bool)) or x is None else str(x) for x in v]
        else:
            out[k] = str(v)
    return out


def prepare(cfg, out: str | Path | None = None, splits: list[str] | str | None = None,
            overrides: list[str] | None = None, num_workers: int | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Build the cache for a config (a :class:`~lanfer.config.Config` or a YAML path); return its info.

    Args:
        cfg: the experiment config; its ``data`` section names the dataset, root, options and image size.
        out: cache folder (default ``prepared/<dataset>-<size>``).
        splits: splits to write (default: the config's train/val/test splits; ``all`` for KDEF).
        overrides: ``key=value`` config overrides.
        num_workers: decoding processes (default ``data.num_workers``).
    """
    cfg = _load_cfg(cfg, overrides)
    if cfg.data.name == "prepared":
        raise DataError("prepare: data.name is already 'prepared'; point the config at the original dataset")
    size = cfg.data.image_size
    out = Path(out) if out is not None else Path("prepared") / f"{cfg.data.name}-{size}"
    if isinstance(splits, str):
        splits = [s for s in splits.split(",") if s]
    splits = list(splits or default_splits(cfg))
    out.mkdir(parents=True, exist_ok=True)
    workers = cfg.data.num_workers if num_workers is None else num_workers
    if workers < 0:  # auto: decoding is all the work here, so use every core
        workers = min(8, os.cpu_count() or 1)
    info: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "dataset": cfg.data.name, "root": cfg.data.root,
        "options": dict(cfg.data.options), "image_size": size, "classes": None, "splits": {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _remove_stale_temporaries(out)
    old = out / "info.json"
    if old.is_file():
        try:
            previous = read_info(out)
        except DataError:  # an unreadable or foreign info.json: rebuilt from scratch
            previous = {}
        same = all(previous.get(k) == info[k] for k in ("dataset", "root", "options", "image_size"))
        if same:
            info["splits"] = previous.get("splits", {})  # keep splits written earlier with the same settings
            info["classes"] = previous.get("classes")
    info["out"] = str(out)
    # Crash safety: an existing info.json first loses the splits about to be rewritten (before any of their
    # files is replaced) and gets each back once all its files are in place, so a run killed half-way leaves
    # a cache that says which splits it lacks (`writing`), never one that vouches for half-written files. A
    # new cache has no info.json until the end, and a cache without one is never read.
    progressive = old.is_file()
    for split in splits:
        info["splits"].pop(split, None)
    info["writing"] = list(splits)
    if progressive:
        _write_info(out, info)
    for split in splits:
        ds = build_dataset_from_config(cfg.data, split)
        info["classes"] = list(ds.classes)
        info["splits"][split] = _write_split(ds, out, split, size, cfg.data.skip_bad, workers, progress)
        if cfg.data.name == "kdef":
            rep = getattr(ds, "report", {})
            info["folds"] = {k: rep.get(k) for k in ("folds", "fold_by", "seed")}
        info["writing"].remove(split)
        if progressive:
            _write_info(out, info)
    del info["writing"]
    _write_info(out, info)
    return info


def _write_info(out: Path, info: dict[str, Any]) -> None:
    atomic_write(out / "info.json", lambda tmp: tmp.write_text(json.dumps(info, indent=2)))


def _remove_stale_temporaries(out: Path) -> None:
    """Delete the temporary files a killed run left (atomic_write cannot clean up after SIGKILL): an
    interrupted images file of a large dataset would otherwise hold tens of gigabytes. Only names this module
    writes (``<name>.<random>.tmp`` next to its own files) are touched."""
    for tmp in out.glob("*.tmp"):
        stem = tmp.name.rsplit(".", 2)[0]
        if stem == "info.json" or stem.startswith(("images_", "labels_", "meta_")):
            tmp.unlink(missing_ok=True)


def _write_split(ds: FERDataset, out: Path, split: str, size: int, skip_bad: bool, workers: int,
                 progress: bool) -> dict[str, Any]:
    from torch.utils.data import DataLoader

    n = len(ds)
    loader = DataLoader(_Decode(ds, size), batch_size=32, num_workers=workers,
                        collate_fn=_as_list)
    good = np.zeros(n, dtype=bool)

    def write_images(tmp: Path) -> None:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
        bar = None
        if progress:
            from ..progress import progress_bar
            bar = progress_bar(total=n, desc=f"prepare {ds.name}/{split}", unit="img")
        try:
            for batch in loader:
                for i, pixels, error in batch:
                    if pixels is None:
                        if not skip_bad:
                            raise DataError(error)
                        # the dataset's one record of bad images; one summary warning below, not one per file
                        ds.record_bad(ds.samples[i].path, error, warn=False)
                    else:
                        array[i] = pixels
                        good[i] = True
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
        array.flush()
        del array  # unmapped before the file is replaced below or renamed into place
        keep = np.flatnonzero(good)
        if len(keep) < n:
            # leave the undecodable rows out: a compact copy replaces the full one, written the same way
            def compact(tmp2: Path) -> None:
                full = np.load(tmp, mmap_mode="r")  # (n, S, S, 3)
                rows = np.lib.format.open_memmap(tmp2, mode="w+", dtype=np.uint8, shape=(len(keep), size, size, 3))
                for start in range(0, len(keep), 1024):
                    rows[start:start + 1024] = full[keep[start:start + 1024]]
                rows.flush()
                del full, rows

            atomic_write(tmp, compact)

    atomic_write(out / f"images_{split}.npy", write_images)
    keep = np.flatnonzero(good)
    samples = [ds.samples[i] for i in keep]
    soft = any(not isinstance(s.label, int) for s in samples)
    if soft:
        labels = np.asarray([list(s.label) for s in samples], dtype=np.float32).reshape(len(samples), -1)
    else:
        labels = np.asarray([s.label for s in samples], dtype=np.int64)
    atomic_write(out / f"labels_{split}.npy", lambda tmp: _save_npy(tmp, labels))
    atomic_write(out / f"meta_{split}.jsonl", lambda tmp: _write_meta(tmp, samples))
    bad = list(ds.bad.values())
    if bad:
        warnings.warn(f"prepare {ds.name}/{split}: {len(bad)} images could not be decoded and were left out "
                      f"(e.g. {bad[0]})", stacklevel=2)
    report = dict(getattr(ds, "report", {}) or {})
    report.update({"written": int(len(keep)), "undecodable": len(bad), "undecodable_examples": bad[:10]})
    return {"n": int(len(keep)), "soft_labels": soft, "report": jsonable_report(report)}


def _write_meta(path: Path, samples) -> None:
    with open(path, "w") as fh:  # streamed: AffectNet has 287,651 lines
        for s in samples:
            fh.write(json.dumps(_jsonable({**s.meta, "path": s.path})) + "\n")


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would append ".npy" to the temporary name
        np.save(fh, array)



class PreparedDataset(FERDataset):
    """Items of a :func:`prepare` cache: ``(PIL image, label, meta)`` read from a memory-mapped array."""

    def __init__(self, folder: Path, split: str, samples, classes, transform=None, skip_bad=False):
        super().__init__(samples, classes, transform, name="prepared", skip_bad=skip_bad)
        self.folder = folder
        self.split = split
        self._images = None  # opened lazily, per process: a memmap must not be pickled into workers
        self.report: dict[str, Any] = {}
        self.root = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_images"] = None
        return state

    def load(self, index: int) -> Image.Image:
        if self._images is None:
            self._images = np.load(self.folder / f"images_{self.split}.npy", mmap_mode="r")
        return Image.fromarray(np.asarray(self._images[self.samples[index].row]))


def read_info(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "info.json"
    if not path.is_file():
        raise DataError(f"prepared: {str(path)!r} does not exist; build the cache with `lanfer prepare CONFIG`")
    try:
        info = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"prepared: {path} is not readable JSON ({e}); rebuild the cache with `lanfer prepare`") \
            from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or info.get("version") != VERSION \
            or not isinstance(info.get("splits"), dict):
        raise DataError(f"prepared: {path} is not a lanfer cache of version {VERSION}; rebuild it")
    return info


_FOLD_KEYS = ("fold", "folds", "fold_by", "seed")


@register_dataset("prepared")
def build_prepared(root, split, transform=None, classes=None, skip_bad=False, **options):
    """A :func:`prepare` cache. ``options`` may repeat the original dataset's options: they must match what
    the cache was built with (a different ``num_classes`` would silently change the labels otherwise)."""
    folder = Path(root)
    info = read_info(folder)
    built = info.get("options", {})
    for key, value in options.items():
        if key in _FOLD_KEYS and info["dataset"] == "kdef":
            continue
        if key in built and built[key] != value:
            raise DataError(f"prepared: cache {str(folder)!r} was built with {key}={built[key]!r}, not {value!r}; "
                            f"rebuild it with `lanfer prepare` or use the matching option")
        if key not in built:
            warnings.warn(f"prepared: option {key}={value!r} was not set when {str(folder)!r} was built (the "
                          f"reader's default applied then); it is ignored here", stacklevel=2)
    if classes is not None and list(classes) != info["classes"]:
        raise DataError(f"prepared: data.classes={list(classes)} differs from the cache's {info['classes']}")
    stored = split
    select = None
    if split not in info["splits"]:
        if info["dataset"] == "kdef" and "all" in info["splits"] and split in ("train", "test", "val"):
            spec = info.get("folds") or {}
            for key in ("folds", "fold_by", "seed"):
                if key in options and spec.get(key) is not None and options[key] != spec[key]:
                    raise DataError(f"prepared: KDEF cache has {key}={spec[key]!r}, asked for {options[key]!r}; "
                                    "rebuild it with the same fold options")
            fold = int(options.get("fold", built.get("fold", 0)))
            stored, select = "all", (split, fold)
        else:
            interrupted = (f" (an interrupted `lanfer prepare` was writing {', '.join(info['writing'])}: run it "
                           "again)" if info.get("writing") else "")
            raise DataError(f"prepared: cache {str(folder)!r} has splits {sorted(info['splits'])}, not {split!r}"
                            f"{interrupted}; run `lanfer prepare CONFIG --splits {split}`")
    labels = _load_array(folder / f"labels_{stored}.npy")
    with open(folder / f"meta_{stored}.jsonl") as fh:
        metas = [json.loads(line) for line in fh if line.strip()]
    images = _load_array(folder / f"images_{stored}.npy", mmap_mode="r")  # the header only: nothing is read
    n = info["splits"][stored].get("n")
    if not len(metas) == len(labels) == images.shape[0] == n or images.shape[1:] != (info["image_size"],) * 2 + (3,):
        raise DataError(f"prepared: {folder} split {stored!r} has {images.shape[0]} images of "
                        f"{images.shape[1:]}, {len(labels)} labels and {len(metas)} metadata lines where info.json "
                        f"says {n} of {info['image_size']}px; the cache is incomplete or mixed, rebuild it")
    del images
    samples = []
    for row, (label, meta) in enumerate(zip(labels, metas)):
        if select is not None:
            in_test = meta.get("fold") == select[1]
            if (select[0] == "train") == in_test:
                continue
        value = [float(x) for x in label] if labels.ndim == 2 else int(label)
        path = meta.pop("path", f"{folder}#{stored}/{row}")
        samples.append(OfficialSample(path, value, meta, where=f"{folder}#{stored}/{row}", row=row))
    ds = PreparedDataset(folder, stored, samples, info["classes"], transform, skip_bad=skip_bad)
    ds.root = info.get("root")
    ds.report = {"source": str(folder), "split": split, "kept": len(samples),
                 "rows": info["splits"][stored]["n"], "prepared_from": info["dataset"]}
    return ds


def _load_array(path: Path, mmap_mode: str | None = None) -> np.ndarray:
    """``np.load`` without pickles (numpy's default, kept explicit) and with errors that name the file."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"prepared: {path} is not a readable numpy array ({e}); rebuild the cache with "
                        "`lanfer prepare`") from None


def summarize(info: dict[str, Any]) -> str:
    """A few lines about a cache written by :func:`prepare`: per split, images written and skipped."""
    lines = [f"{info['dataset']} ({info['root']}) -> cache at {info.get('out', '?')}, "
             f"{info['image_size']}x{info['image_size']}, classes: {', '.join(info['classes'] or [])}"]
    for split, s in info["splits"].items():
        rep = s.get("report", {})
        extra = []
        if rep.get("expected") is not None:
            extra.append(f"expected {rep['expected']}")
        if rep.get("dropped"):
            extra.append("dropped " + ", ".join(f"{k} {v}" for k, v in rep["dropped"].items()))
        if rep.get("bad") or rep.get("undecodable"):
            extra.append(f"bad {rep.get('bad', 0)}, undecodable {rep.get('undecodable', 0)}")
        lines.append(f"  {split}: {s['n']} images" + (f" ({'; '.join(extra)})" if extra else ""))
    return "\n".join(lines)
