"""The model behind a :class:`~lanfer.predict.Predictor`: PyTorch or ONNX Runtime, behind one signature.

A runner maps a batch of preprocessed crops ``(B, 3, S, S)`` to ``(logits (B, K), attention (B, h, w) or
None)``. ONNX models are opened in one place, :func:`open_onnx`, whether they come from a file written by
``lanfer export`` or from an in-memory export; their metadata is read with the same codec as safetensors
files (:class:`lanfer.info.ModelInfo`), so the preprocessing comes from the model's record, never a default.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..checkpoint import CheckpointError
from ..devices import onnx_providers
from ..info import InfoError, ModelInfo

Runner = Callable[[torch.Tensor], "tuple[np.ndarray, np.ndarray | None]"]


class TorchRunner:
    """A PyTorch model on ``device``, in eval mode and inference mode."""

    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.device = model.to(device).eval(), device

    def __call__(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        with torch.inference_mode():
            out = self.model(x.to(self.device), return_maps=True)
        att = None if out.attention is None else out.attention[:, 0].float().cpu().numpy()  # (B, h, w)
        return out.logits.float().cpu().numpy(), att  # (B, K)


class OnnxRunner:
    """An ONNX Runtime session of a graph from ``lanfer export`` (outputs ``logits`` [, ``attention``]
    [, ``probabilities``]). It returns the raw logits: the predictor turns them into probabilities at its
    operating point, as it does for PyTorch; the graph's own ``probabilities`` output (the model's operating
    point, baked in for deployments without lanfer) is not read here, so nothing is applied twice."""

    def __init__(self, session):
        self.session = session
        self.input = session.get_inputs()[0].name
        names = [o.name for o in session.get_outputs()]
        # Older graphs name nothing but their order: logits first, then the attention map when there is one.
        self.outputs = ["logits" if "logits" in names else names[0]]
        # The baseline's graph has no attention output (a constant map would look like information).
        att = "attention" if "attention" in names else next((n for n in names[1:] if n != "probabilities"), None)
        self.has_attention = att is not None
        self.outputs += [att] if att else []

    def __call__(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.session.run(self.outputs, {self.input: x.numpy()})
        return out[0], (out[1][:, 0] if self.has_attention else None)  # (B, K), (B, h, w)


def open_onnx(model: str | Path | bytes, device: torch.device, session_options: Any = None) -> tuple[Any, ModelInfo]:
    """The one way lanfer opens an ONNX model for inference.

    Args:
        model: an ``.onnx`` file from ``lanfer export``, or the bytes :func:`lanfer.export.export_model` returns.
        device: a CUDA device puts ONNX Runtime's CUDA provider first when this onnxruntime build has it.
        session_options: an ``onnxruntime.SessionOptions`` (thread counts ...), or None for the defaults.
    Returns:
        ``(session, info)``: the ``InferenceSession`` and the graph's :class:`~lanfer.info.ModelInfo` (the same
        codec as safetensors files).
    """
    where = "the exported ONNX model" if isinstance(model, bytes) else str(model)
    if not isinstance(model, bytes) and not Path(model).is_file():
        raise CheckpointError(f"ONNX model {str(model)!r} does not exist; write one with lanfer export CHECKPOINT "
                              "--format onnx --out model.onnx")
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("backend='onnx' needs onnxruntime: pip install 'lanfer[onnx]'") from e
    providers = onnx_providers(device, ort)
    try:
        session = ort.InferenceSession(model if isinstance(model, bytes) else str(model), sess_options=session_options,
                                       providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for unreadable files
        raise CheckpointError(f"{where}: ONNX Runtime cannot load it ({e})") from None
    # ONNX Runtime exposes the graph's metadata_props, so no second reader (the onnx package) is needed.
    return session, _decode_onnx_metadata(dict(session.get_modelmeta().custom_metadata_map), where)


def check_graph(session, info: ModelInfo, where: Any) -> None:
    """The graph must take what its record says it takes and give one logit per class: a record that lies
    (another input size or class count) would otherwise fail deep inside a batch, or mislabel the output."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = list(inputs[0].shape) if len(inputs) == 1 else None
    size = info.input_size
    if shape is None or len(shape) != 4 or any(isinstance(d, int) and d != want
                                               for d, want in zip(shape[1:], (3, size, size))):
        raise CheckpointError(f"{where}: the graph takes {[(i.name, i.shape) for i in inputs]}, but its lanfer record "
                              f"says one image input of (N, 3, {size}, {size}); re-export it with lanfer export")
    k = outputs[0].shape[-1] if outputs and outputs[0].shape else None
    if not 1 <= len(outputs) <= 3 or (isinstance(k, int) and k != info.num_classes):
        raise CheckpointError(f"{where}: the graph's outputs {[(o.name, o.shape) for o in outputs]} do not give the "
                              f"{info.num_classes} logits of its record's classes {info.classes}; re-export it with "
                              "lanfer export")


def read_onnx_metadata(path: str | Path) -> ModelInfo:
    """The :class:`~lanfer.info.ModelInfo` of an ONNX file written by ``lanfer export``, read through
    :func:`open_onnx` on the CPU."""
    return open_onnx(path, torch.device("cpu"))[1]


def _decode_onnx_metadata(meta: dict[str, str], where: Any) -> ModelInfo:
    if meta.get("format") != "lanfer" or "classes" not in meta or "image_size" not in meta:
        raise CheckpointError(f"{where}: an ONNX file without lanfer metadata (classes, image_size, normalize); "
                              "export it with lanfer export")
    try:
        return ModelInfo.from_metadata(meta, str(where))
    except InfoError as e:
        raise CheckpointError(str(e)) from None
