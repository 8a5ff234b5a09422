"""Export a lanfer model file to ONNX, with its labels in the file and a parity check against PyTorch.

The ONNX graph has one input ``image`` (B, 3, S, S) -- already normalised as :class:`~lanfer.data.EvalPreset`
does -- with a dynamic batch axis, and the outputs

* ``logits`` (B, num_classes), and
* ``attention`` (B, 1, S/32, S/32): F_m, the LAN head's local attention map, for ``lan_resnet18`` only.
  The ResNet-18 baseline has no attention map (a constant map would look like information and is not);
  readers look outputs up by name;
* ``probabilities`` (B, num_classes): ``softmax((logits - prior_tau * log(class_prior)) / temperature)``, the
  model's shipped operating point baked into the graph by :func:`lanfer.calibration.probabilities` (the
  function every PyTorch path uses), so a deployment without lanfer gets the same probabilities. lanfer's own
  ONNX runner reads ``logits`` and applies that function itself, so that ``--prior-tau`` can pick another
  operating point and nothing is applied twice.

The metadata (``metadata_props``) carries what a deployment needs with no other file: ``classes`` (JSON
list), ``image_size``, ``normalize`` (``"imagenet"`` or ``"none"``), ``model`` (the create_model arguments,
JSON), ``arch``, ``outputs``, ``temperature``, ``class_prior``, ``prior_tau`` and ``format = "lanfer"``. :meth:`lanfer.predict.Predictor.from_onnx` reads them.

Exporter: torch 2.14's default ONNX exporter is the ``torch.export``-based one (``dynamo=True``, needs
``onnxscript``, in the ``onnx`` extra). It emits opset 18 natively and cannot down-convert this model to
17 (the version converter fails on ``ReduceMean`` with axes as an input), so opset >= 18 uses it and an
explicitly requested older opset uses the legacy TorchScript exporter (``dynamo=False``), which torch marks
as deprecated but still ships. Both give the same numbers (the parity check runs either way).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from .calibration import probabilities
from .checkpoint import CheckpointError, as_model_info
from .info import ModelInfo
from .model import load_model
from .data import EvalPreset, load_image
from .data.base import IMAGE_EXTENSIONS
from .io import atomic_write

DEFAULT_OPSET = 18
PARITY_TOLERANCE = 1e-4


class ExportError(CheckpointError):
    """The exported ONNX model is unusable: the exporter failed, or it disagrees with PyTorch."""


class _Exported(nn.Module):
    """``image -> (logits, attention, probabilities)`` (LAN) or ``image -> (logits, probabilities)``
    (baseline): the graph's signature; ``probabilities`` at the operating point of ``info``."""

    def __init__(self, model: nn.Module, info: ModelInfo):
        super().__init__()
        self.model, self.info = model, info
        self.has_attention = getattr(model, "head", None) is not None
        self.outputs = ["logits", "attention", "probabilities"] if self.has_attention else ["logits", "probabilities"]

    def forward(self, image: torch.Tensor):
        out = self.model(image, return_maps=True)
        p = probabilities(out.logits, self.info)  # (B, K)
        if self.has_attention:
            return out.logits, out.attention, p  # (B, K), (B, 1, h, w), (B, K)
        return out.logits, p  # (B, K), (B, K)


def onnx_metadata(info: ModelInfo, image_size: int, outputs: Sequence[str]) -> dict[str, str]:
    """The ``metadata_props`` written into an exported model: the model's record through the same codec as
    safetensors files (at the exported input size), plus the graph's output names."""
    meta = dataclasses.replace(info, input_size=int(image_size)).to_metadata()
    meta["outputs"] = json.dumps(list(outputs))
    return meta


def export_model(model: nn.Module, info: ModelInfo, image_size: int, opset: int = DEFAULT_OPSET) -> bytes:
    """Trace ``model`` (eval mode, CPU) into a serialised ONNX model with metadata; see the module docstring.

    Returns the model as bytes (``onnxruntime.InferenceSession`` accepts them directly).
    """
    try:
        import onnx
    except ImportError as e:
        raise ImportError("ONNX export needs onnx and onnxruntime: pip install 'lanfer[onnx]'") from e
    if any(t.device.type != "cpu" for t in model.parameters()):
        model = copy.deepcopy(model).cpu()  # export on the CPU without moving the caller's model
    info = as_model_info(info)
    wrapped = _Exported(model.eval(), info).eval()
    outputs = wrapped.outputs
    # Batch 2, not 1: torch.export specialises size-1 dimensions, which would pin the batch axis.
    example = torch.zeros(2, 3, image_size, image_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and "fallback" chatter
        try:
            if opset >= 18:
                prog = torch.onnx.export(wrapped, (example,), None, dynamo=True, verbose=False,
                                         input_names=["image"], output_names=outputs, opset_version=opset,
                                         dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                                         external_data=False)
                proto = prog.model_proto
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    f = os.path.join(tmp, "model.onnx")
                    torch.onnx.export(wrapped, (example,), f, dynamo=False, input_names=["image"],
                                      output_names=outputs, opset_version=opset,
                                      dynamic_axes={n: {0: "batch"} for n in ["image", *outputs]})
                    proto = onnx.load(f)
        except ImportError as e:
            raise ImportError(f"torch.onnx's exporter needs onnxscript for opset {opset}: pip install 'lanfer[onnx]' "
                              f"({e})") from e
        except Exception as e:  # the exporters raise many types; the user needs the opset and the cause
            raise ExportError(f"torch.onnx export at opset {opset} failed: {type(e).__name__}: {e}") from e
    meta = onnx_metadata(info, image_size, outputs)
    del proto.metadata_props[:]
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    return proto.SerializeToString()


def _check_inputs(paths: Sequence[str | Path], preset: EvalPreset) -> tuple[torch.Tensor, list[str]]:
    """Face-crop images from files and folders, preprocessed as prediction does: (N, 3, S, S)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"--check-images: {str(p)!r} does not exist")
    if not files:
        raise FileNotFoundError(f"--check-images: no image files in {', '.join(map(str, paths))}")
    return torch.stack([preset(load_image(f)) for f in files]), [str(f) for f in files]  # (N, 3, S, S)


def parity(model: nn.Module, info: ModelInfo, session, x: torch.Tensor) -> dict[str, float]:
    """Max absolute difference of each output between PyTorch (CPU, float32) and an ONNX Runtime session."""
    wrapped = _Exported(model.eval(), info).eval()
    with torch.inference_mode():
        ref = wrapped(x.to(next(model.parameters()).device))
    ref = ref if isinstance(ref, tuple) else (ref,)
    got = session.run(None, {"image": x.cpu().numpy()})
    names = [o.name for o in session.get_outputs()]
    return {n: float(np.abs(g - r.float().cpu().numpy()).max()) for n, g, r in zip(names, got, ref)}


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int = DEFAULT_OPSET, image_size: int | None = None,
                check: bool = True, check_images: Sequence[str | Path] | None = None, n_random: int = 4,
                atol: float = PARITY_TOLERANCE, seed: int = 0) -> dict[str, Any]:
    """Export a lanfer model file to ONNX and (``check=True``) verify it against PyTorch.

    Args:
        checkpoint: a lanfer ``.safetensors`` model file.
        out: the ``.onnx`` file to write (single file, weights inside).
        opset: ONNX opset; 18+ uses torch's default (dynamo) exporter, lower the legacy one.
        image_size: input side; default the checkpoint's ``image_size``.
        check: run ONNX Runtime on ``n_random`` random inputs (and on ``check_images``: face-crop image files
            or folders, preprocessed like prediction) and compare every output with PyTorch.
        atol: the largest accepted max-abs difference; a larger one raises :class:`ExportError` (the file is
            still written, so it can be inspected).
    Returns:
        a report: ``path``, ``opset``, ``exporter``, ``outputs``, ``classes``, ``image_size``, ``bytes``,
        ``export_s`` and, when checked, ``parity`` ``{"random": {output: maxdiff}, "images": {...}}``.
    """
    start = time.perf_counter()
    model, info = load_model(checkpoint, device="cpu")
    size = int(image_size or info.input_size)
    if size < 32:
        raise ValueError(f"image_size {size} is below 32 px: the backbone downsamples by 32")
    data = export_model(model, info, size, opset)
    out = Path(out)
    atomic_write(out, lambda t: t.write_bytes(data))
    outputs = _Exported(model, info).outputs
    report: dict[str, Any] = {
        "path": str(out), "checkpoint": str(checkpoint), "opset": opset,
        "exporter": "dynamo" if opset >= 18 else "torchscript", "outputs": outputs,
        "classes": list(info.classes), "image_size": size, "bytes": len(data),
        "temperature": info.temperature, "prior_tau": info.prior_tau,
        "export_s": round(time.perf_counter() - start, 2),
    }
    if not check:
        return report
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    # Random normalised images at the pixel scale EvalPreset produces (about N(0, 1) per channel).
    x = torch.randn(n_random, 3, size, size, generator=gen)
    report["parity"] = {"random": parity(model, info, session, x)}
    if check_images:
        preset = EvalPreset(size, info.normalize, info.color)
        imgs, files = _check_inputs(check_images, preset)
        report["parity"]["images"] = parity(model, info, session, imgs)
        report["parity"]["n_images"] = len(files)
    worst = max(v for group in report["parity"].values() if isinstance(group, dict) for v in group.values())
    report["parity"]["max_abs_diff"] = worst
    report["parity"]["tolerance"] = atol
    if not worst <= atol:
        raise ExportError(f"{out}: ONNX Runtime and PyTorch disagree by {worst:.3g} (> {atol:g}) "
                          f"({json.dumps(report['parity'])}); the file was written for inspection. Try another "
                          f"--opset or report the torch/onnxruntime versions")
    return report


def format_report(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [f"wrote {report['path']} ({report['bytes'] / 1e6:.1f} MB, opset {report['opset']}, "
             f"{report['exporter']} exporter, {report['export_s']:.1f} s): input image (B, 3, {report['image_size']}, "
             f"{report['image_size']}), outputs {', '.join(report['outputs'])}; classes {', '.join(report['classes'])}",
             f"probabilities output at the model's operating point: temperature {report['temperature']:.4g}, "
             f"prior tau {report['prior_tau']:g}"]
    par = report.get("parity")
    if par:
        for group in ("random", "images"):
            if group in par:
                what = "random inputs" if group == "random" else f"{par['n_images']} check images"
                diffs = ", ".join(f"{k} {v:.2e}" for k, v in par[group].items())
                lines.append(f"parity vs PyTorch on {what}: max |diff| {diffs} (tolerance {par['tolerance']:g}): ok")
    return "\n".join(lines)
