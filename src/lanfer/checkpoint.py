"""Saving and loading weights: safetensors model files, resumable training state, pretrained backbones.

Files:
* ``best.safetensors`` / ``*.safetensors``: model tensors, with the model config, class names, input size
  and normalisation in the safetensors metadata -- enough to rebuild the model with no other file.
* ``last.ckpt``: the full training state (model, optimizer, scheduler, step, RNG states) as a
  ``torch.save`` of plain containers and tensors, always loaded with ``weights_only=True``.
* pretrained backbones: torchvision key names, ``module.``-prefixed DataParallel keys, and the MS-Celeb-1M
  face-recognition checkpoint of the FER literature (``ijba_res18_naive.pth.tar``).

Every write goes through :func:`lanfer.io.atomic_write` (a temporary file renamed into place), so a crash
mid-save never corrupts the previous checkpoint.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .info import FORMAT, FORMAT_VERSION, MODEL_NAMES, InfoError, ModelInfo, decode_metadata  # noqa: F401 (decode_metadata re-exported)
from .io import atomic_write

# Heads of face-recognition checkpoints that are not part of the backbone: the ijba model has a 256-d
# embedding (`feature`, 256x512) and an 87,020-way identity classifier (`fc`, 87020x256).
SKIPPED_HEAD_PREFIXES = ("fc.", "feature.", "classifier.", "head.")
STRIPPED_PREFIXES = ("module.", "backbone.", "model.", "base.", "encoder.")


class CheckpointError(ValueError):
    """A weights file that cannot be used: unreadable, another architecture, keys that do not match."""


# ----------------------------------------------------------------------------------------------------
# model files (safetensors)


def save_model(path: str | Path, model: nn.Module, info: ModelInfo | Mapping[str, Any]) -> Path:
    """Write the model's tensors and its :class:`~lanfer.info.ModelInfo` as a safetensors file.

    ``info`` may also be a plain dict with the format-1 keys (``model``, ``classes``, ``image_size`` ...),
    as code written before the typed record passes; it is checked by the same codec."""
    path = Path(path)
    info = as_model_info(info, where=str(path))
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = info.to_metadata()
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta))
    return path


def as_model_info(info: ModelInfo | Mapping[str, Any], where: str = "model info") -> ModelInfo:
    """A :class:`ModelInfo` from itself or from a dict of format-1 values (JSON-encoded through the codec)."""
    if isinstance(info, ModelInfo):
        return info
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION}
    meta.update({k: json.dumps(v) for k, v in info.items() if k not in meta})
    try:
        return ModelInfo.from_metadata(meta, where)
    except InfoError as e:
        raise CheckpointError(str(e)) from None


def read_model_info(path: str | Path) -> ModelInfo:
    """The :class:`ModelInfo` of a lanfer safetensors model file (the tensors are not read)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}); pass a lanfer model file "
                              "such as RUN_DIR/best.safetensors") from None
    try:
        info = ModelInfo.from_metadata(meta, str(path))
    except InfoError as e:
        raise CheckpointError(str(e)) from None
    if info.arch not in MODEL_NAMES:
        raise CheckpointError(f"{path}: holds a model of architecture {info.arch!r}; this lanfer builds "
                              f"{', '.join(MODEL_NAMES)}")
    return info


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, with a message naming the file when it cannot be read."""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None


def load_state(model: nn.Module, state: dict[str, torch.Tensor], where: str = "state dict") -> None:
    """Strictly load ``state`` into ``model`` with an error that names missing/unexpected/mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:6])}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:6])}")
        if shapes:
            parts.append(f"shape mismatches: {'; '.join(shapes[:4])}")
        raise CheckpointError(f"{where} does not match this model (another architecture, class count or "
                              f"head widths?): " + " | ".join(parts))
    model.load_state_dict(state, strict=True)


# ----------------------------------------------------------------------------------------------------
# training state (resume)


def save_training_state(path: str | Path, state: dict[str, Any]) -> Path:
    """``torch.save`` a dict of tensors and plain containers (no pickled objects), atomically."""
    path = Path(path)
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return path


# What a training state holds (train.py writes it), and the type of each entry.
TRAINING_STATE_KEYS = {"model": dict, "optimizer": dict, "scheduler": dict, "epoch": int, "step": int,
                       "best": (int, float)}


def load_training_state(path: str | Path, map_location="cpu") -> dict[str, Any]:
    """Read ``last.ckpt`` with ``weights_only=True`` (tensors and plain containers only: a pickled object,
    and so any code in the file, is refused) and check it holds every entry of a training state, each of its type."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no training state at {str(path)!r}; --resume needs RUN_DIR/last.ckpt from "
                              "an earlier run with the same --out")
    try:
        state = _torch_load(path, map_location)
    except Exception as e:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"{path}: cannot be loaded as a lanfer training state ({_first_line(e)}); "
                              "lanfer never unpickles objects, so a file holding code is refused") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a lanfer training state (a dict with "
                              f"{', '.join(TRAINING_STATE_KEYS)})")
    missing = [k for k in TRAINING_STATE_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: the training state lacks {', '.join(map(repr, missing))}; it was not "
                              "written by lanfer train (or by another version): start the run again without --resume")
    for key, kind in TRAINING_STATE_KEYS.items():
        if (not isinstance(state[key], kind) or isinstance(state[key], bool)):
            raise CheckpointError(f"{path}: the training state's {key!r} entry is not a "
                                  f"{getattr(kind, '__name__', 'number')} (found {type(state.get(key)).__name__}); "
                                  "was it written by lanfer train?")
    if not all(isinstance(v, torch.Tensor) for v in state.get("model", {}).values()):
        raise CheckpointError(f"{path}: the training state's model entry is not a state dict of tensors")
    return state


def _torch_load(path: Path, map_location) -> Any:
    # weights_only=True: tensors and plain containers, never an object (and so never code). Its warning about a
    # pickle protocol is torch's internals, noise beside the one-line refusal the user gets for such a file.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        return torch.load(path, map_location=map_location, weights_only=True)


def _first_line(error: BaseException) -> str:
    # torch's weights_only refusal is a page of advice about trusting the file; its first line says what
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


# ----------------------------------------------------------------------------------------------------
# pretrained backbones


def _read_any(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None
    try:
        obj = _torch_load(path, "cpu")
    except Exception as e:
        raise CheckpointError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({_first_line(e)}). lanfer never unpickles "
            "arbitrary objects; re-save the file as a plain state dict (torch.save(model.state_dict(), ...))"
        ) from None
    for key in ("state_dict", "model", "model_state_dict", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: does not hold a state dict of tensors")
    return obj


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in STRIPPED_PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def load_backbone(backbone: nn.Module, path: str | Path) -> str:
    """Load backbone weights (ResNet-18, MobileNet-v1, ...) from a file into ``backbone`` and return a one-paragraph report.

    Accepts torchvision key names (``layer1.0.conv1.weight``), ``module.``/``backbone.`` prefixes, and the
    ijba MS-Celeb-1M checkpoint (``{"state_dict": {"module.conv1.weight": ...}}`` with extra
    ``module.feature.*`` and ``module.fc.*`` heads, which are skipped). Fails loudly, naming the keys, if
    any backbone tensor is missing or mis-shaped: a silent partial load would quietly train from scratch.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"pretrained weights {str(path)!r} do not exist; set model.pretrained to the file "
                              "(e.g. ijba_res18_naive.pth.tar) or to null to train from scratch")
    raw = _read_any(path)
    own = backbone.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for k, v in raw.items():
        s = _strip(k)
        if s in own:
            mapped[s] = v
        elif s.startswith(SKIPPED_HEAD_PREFIXES):
            skipped.append(k)
        else:
            skipped.append(k)
    missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    bad_shape = [f"{k}: file {tuple(mapped[k].shape)} vs backbone {tuple(own[k].shape)}"
                 for k in mapped if mapped[k].shape != own[k].shape]
    if missing or bad_shape:
        msg = f"{path}: does not match the {type(backbone).__name__}."
        if missing:
            msg += f" Missing {len(missing)} of {len(own)} keys, e.g. {', '.join(missing[:8])}."
        if bad_shape:
            msg += f" Shape mismatches: {'; '.join(bad_shape[:4])}."
        sample = ", ".join(list(raw)[:5])
        msg += f" The file's keys look like: {sample}."
        raise CheckpointError(msg)
    for k in own:
        if k.endswith("num_batches_tracked") and k not in mapped:
            mapped[k] = own[k]
    backbone.load_state_dict({k: v.to(own[k].dtype) for k, v in mapped.items()}, strict=True)
    heads = sorted({k.split(".")[1] if k.startswith("module.") else k.split(".")[0] for k in skipped})
    return (f"loaded {len(mapped)} backbone tensors from {path.name}"
            + (f"; skipped {len(skipped)} non-backbone tensors ({', '.join(heads)})" if skipped else ""))
