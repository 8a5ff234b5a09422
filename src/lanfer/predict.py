"""Expressions of the faces in photos, folders, videos and webcams: :class:`Predictor` and its result table.

Typical use::

    from lanfer.predict import Predictor
    predictor = Predictor.from_checkpoint("runs/rafdb_lan/best.safetensors", device="auto")
    table = predictor.predict(["group.jpg", "clips/"], return_attention=True)
    table[["source", "face", "label", "prob_happy", "yaw"]]
    fig = table.plot(0)                          # the photo of row 0 with its faces, attention and probabilities

The pipeline per frame: detect faces with five landmarks (``lanfer.faces``; batched over a window of
frames) -> align each face to the template at the model's input size -> the evaluation transform
(:class:`~lanfer.data.EvalPreset`, the same class evaluation uses) -> the model, on batches of
``batch_size`` crops collected across images and frames -> softmax probabilities, the LAN attention map F_m
and the head pose from the landmarks.

Videos are streamed with ``cv2.VideoCapture``: fewer than ``window + max(window, batch_size)`` frames are
held at any time (the table records the peak in ``attrs["max_frames_held"]``), whatever the video's length. Every input
that cannot be used (missing path, non-image file, unreadable video, photo without faces) gets one row with
a ``status`` saying why, and the run carries on.

The model runs in PyTorch (``backend="torch"``) or, for CPU deployments, in ONNX Runtime on a file written by
``lanfer export`` (``backend="onnx"`` / :meth:`Predictor.from_onnx`), whose metadata carries the classes,
input size and normalisation.
"""
from __future__ import annotations

import functools
import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from .checkpoint import CheckpointError, as_model_info
from .info import InfoError, ModelInfo
from .model import load_model
from .data import DataError, EvalPreset, load_image
from .data.base import IMAGE_EXTENSIONS
from .faces import LANDMARK_NAMES, Face, FaceDetector, align_face, estimate_pose, get_detector

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
STATUS_OK = "ok"
STATUS_NO_FACE = "no face"
LANDMARK_COLUMNS = tuple(f"{n}_{c}" for n in LANDMARK_NAMES for c in ("x", "y"))
# Distinct box colours per predicted class (tab10).
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))

Runner = Callable[[torch.Tensor], "tuple[np.ndarray, np.ndarray | None]"]


# ----------------------------------------------------------------------------------------------------
# the result table


class PredictionTable(pd.DataFrame):
    """One row per face (or per input/frame without one): a pandas DataFrame with ``classes`` and ``.plot``.

    Columns: ``source, frame, face, x1, y1, x2, y2, score, yaw, pitch, roll, <landmark>_x/_y, label,
    prob_<class>...`` and ``status`` (``"ok"``, ``"no face"`` or ``"error: ..."``); with
    ``return_attention=True`` also ``attention``, the F_m map (h, w) of each face as an object column.
    Boxes, landmarks and pose are in the source image's pixels and degrees (conventions of
    :mod:`lanfer.faces.pose`). Filtering, sorting and slicing keep the class and its metadata.
    """

    _metadata = ["classes", "normalize", "_images"]
    # Defaults for tables pandas builds without copying the metadata (e.g. a plain constructor call).
    classes: list[str] | None = None
    normalize: str = "imagenet"
    _images: dict | None = None

    @property
    def _constructor(self):
        return PredictionTable

    @property
    def probabilities(self) -> pd.DataFrame:
        """The ``prob_<class>`` columns renamed to the class names."""
        cols = [f"prob_{c}" for c in (self.classes or [])]
        return pd.DataFrame(self[cols].to_numpy(), index=self.index, columns=list(self.classes or []))

    def faces(self) -> "PredictionTable":
        """Only the rows of detected faces (status ``"ok"``)."""
        return self[self["status"] == STATUS_OK]

    def plot(self, row: int | str = 0, max_faces: int = 4):
        """Draw one image with matplotlib: its face boxes and labels, and per face the aligned crop with the
        attention map (when the table has it) and a probability bar chart. Returns the figure.

        ``row`` is a row label (int) or a source (str; its first frame). Images given as arrays can be
        drawn from the table they produced; files and video frames are re-read from disk.
        """
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        if isinstance(row, str):
            sel = self[self["source"] == row]
            if sel.empty:
                known = ", ".join(map(str, self["source"].unique()[:8]))
                raise KeyError(f"no rows with source {row!r}; sources: {known}")
            source, frame = row, int(sel["frame"].iloc[0]) if pd.notna(sel["frame"].iloc[0]) else 0
        else:
            r = self.loc[row]
            source, frame = r["source"], int(r["frame"]) if pd.notna(r["frame"]) else 0
        rows = self[(self["source"] == source) & (self["frame"] == frame)]
        if len(rows) and rows["status"].str.startswith("error").all():
            raise ValueError(f"{source}: nothing to draw ({rows['status'].iloc[0]})")
        image = _reread(source, frame, self._images or {})
        faces = rows[rows["status"] == STATUS_OK].head(max_faces)
        classes = list(self.classes or [])
        n = len(faces)
        fig = Figure(figsize=(4.5 + 2.2 * max(n, 1), 4.2))
        grid = fig.add_gridspec(2, 1 + max(n, 1), width_ratios=[2.2] + [1] * max(n, 1))
        ax = fig.add_subplot(grid[:, 0])
        ax.imshow(image)
        ax.set_title(f"{Path(str(source)).name}" + (f" frame {frame}" if frame else ""), fontsize=9)
        ax.axis("off")
        if n == 0:
            status = rows["status"].iloc[0] if len(rows) else "not in table"
            ax.text(0.5, 0.02, status, transform=ax.transAxes, ha="center", color="red", fontsize=9)
        for j, (_, f) in enumerate(faces.iterrows()):
            probs = np.array([f[f"prob_{c}"] for c in classes], dtype=float)
            color = np.array(PALETTE[int(np.argmax(probs)) % len(PALETTE)]) / 255
            ax.add_patch(Rectangle((f["x1"], f["y1"]), f["x2"] - f["x1"], f["y2"] - f["y1"], fill=False,
                                   edgecolor=color, lw=2))
            ax.text(f["x1"], f["y1"], f"{j}: {f['label']} {probs.max():.2f}", color="white", fontsize=8,
                    va="bottom", bbox=dict(facecolor=color, alpha=0.8, pad=1, lw=0))
            crop = _face_crop(image, f, 112)
            att = f.get("attention") if "attention" in faces.columns else None
            cax = fig.add_subplot(grid[0, 1 + j])
            if att is not None and not (isinstance(att, float) and math.isnan(att)):
                from .analysis.figures import overlay

                cax.imshow(np.clip(overlay(crop / 255.0, np.asarray(att)), 0, 1))
                cax.set_title(f"face {j}: attention", fontsize=8)
            else:
                cax.imshow(crop)
                cax.set_title(f"face {j}", fontsize=8)
            cax.axis("off")
            bax = fig.add_subplot(grid[1, 1 + j])
            bax.barh(range(len(classes)), probs, color=[np.array(PALETTE[k % len(PALETTE)]) / 255
                                                         for k in range(len(classes))])
            bax.set_yticks(range(len(classes)), [c[:8] for c in classes], fontsize=7)
            bax.invert_yaxis()
            bax.set_xlim(0, 1)
            bax.tick_params(axis="x", labelsize=7)
        fig.tight_layout()
        return fig


def _face_crop(image: np.ndarray, row: pd.Series, size: int) -> np.ndarray:
    """The aligned crop of a table row (from its landmarks), or the box resized when it has none."""
    lm = np.array([row[c] for c in LANDMARK_COLUMNS], dtype=float).reshape(5, 2)
    if np.isfinite(lm).all():
        return align_face(image, lm, size=size)
    from PIL import Image

    x1, y1, x2, y2 = (int(round(row[c])) for c in ("x1", "y1", "x2", "y2"))
    return np.asarray(Image.fromarray(image[max(y1, 0):y2, max(x1, 0):x2]).resize((size, size)))


def _reread(source: str, frame: int, images: dict) -> np.ndarray:
    if source in images:
        return images[source]
    path = Path(str(source))
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        import cv2

        cap = cv2.VideoCapture(str(path))
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame)
        ok, bgr = cap.read()
        cap.release()
        if not ok:
            raise DataError(f"cannot read frame {frame} of {path}")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return np.asarray(load_image(path))


# ----------------------------------------------------------------------------------------------------
# inputs: sources yielding frames


@dataclass(eq=False)
class _FaceItem:
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None  # (5, 2) or None for --no-detect crops
    pose: tuple[float, float, float]
    crop: np.ndarray  # (S, S, 3) uint8 aligned face, or the whole image with detect=False
    probs: np.ndarray | None = None  # (K,)
    attention: np.ndarray | None = None  # (h, w)


@dataclass(eq=False)
class _Frame:
    source: str
    frame: int
    image: np.ndarray | None  # (H, W, 3) uint8 RGB; dropped once its crops are cut unless overlays are drawn
    status: str = STATUS_OK
    faces: list[_FaceItem] = field(default_factory=list)
    sink: Any = None  # the overlay writer of its source

    @property
    def ready(self) -> bool:
        return all(f.probs is not None for f in self.faces)


@dataclass(eq=False)
class _EndOfSource:
    """Queued after a source's last frame, so that its overlay writer closes once every frame is out."""

    sink: Any


class _Source:
    name: str = ""
    total: int | None = 1  # frames this source will yield (for the progress bar), None if unknown

    def frames(self) -> Iterator[_Frame]:
        raise NotImplementedError


class _ImageFile(_Source):
    def __init__(self, path: Path):
        self.path, self.name = path, str(path)

    def frames(self):
        try:
            yield _Frame(self.name, 0, np.array(load_image(self.path)))  # a writable copy, for torch
        except DataError as e:
            yield _Frame(self.name, 0, None, f"error: {e}")


class _ImageArray(_Source):
    def __init__(self, name: str, image: Any):
        self.name, self.image = name, image

    def frames(self):
        img = self.image
        try:
            from PIL import Image

            if isinstance(img, Image.Image):
                img = np.asarray(img.convert("RGB"))
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                desc = f"{type(img).__name__} {getattr(img, 'shape', '')} {getattr(img, 'dtype', '')}".strip()
                raise ValueError(f"an in-memory image must be an (H, W, 3) uint8 RGB array or a PIL image, got {desc}")
            if min(img.shape[:2]) == 0:
                raise ValueError(f"the image is empty (shape {img.shape})")
        except ValueError as e:
            yield _Frame(self.name, 0, None, f"error: {e}")
            return
        yield _Frame(self.name, 0, np.ascontiguousarray(img))


class _Failed(_Source):
    def __init__(self, name: str, message: str):
        self.name, self.message = name, message

    def frames(self):
        yield _Frame(self.name, 0, None, f"error: {self.message}")


class _Video(_Source):
    """Frames of a video file or camera, read one at a time (``every_nth`` frames kept)."""

    def __init__(self, target: str | int, every_nth: int):
        self.target, self.every_nth = target, every_nth
        self.name = f"camera:{target}" if isinstance(target, int) else str(target)
        self.total = None
        self.fps = 25.0
        self._cap = None

    def open(self) -> str | None:
        """Open the capture; returns an error message, or None. Sets ``total`` and ``fps``."""
        try:
            import cv2
        except ImportError:
            return "reading videos needs opencv: pip install 'lanfer[faces]'"
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            what = "camera" if isinstance(self.target, int) else "video"
            return f"cannot open {what} {self.name!r} (missing, not a video, or an unsupported codec)"
        self._cap = cap
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.total = -(-n // self.every_nth) if n > 0 and not isinstance(self.target, int) else None
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and fps > 0 and math.isfinite(fps) else 25.0
        return None

    def frames(self):
        import cv2

        error = self.open() if self._cap is None else None
        if error:
            yield _Frame(self.name, 0, None, f"error: {error}")
            return
        cap, index, got_any = self._cap, 0, False
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                got_any = True
                yield _Frame(self.name, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                # Skipped frames are grabbed (demuxed and decoded) but never converted or held.
                for _ in range(self.every_nth - 1):
                    index += 1
                    if not cap.grab():
                        return
                index += 1
        finally:
            cap.release()
        if not got_any:
            yield _Frame(self.name, 0, None, f"error: video {self.name!r} has no readable frames")


def _expand(inputs: Any, every_nth: int) -> list[_Source]:
    """Turn what the user passed into sources, in order; folders recurse to images and videos."""
    from PIL import Image

    if isinstance(inputs, (str, Path, np.ndarray, Image.Image)) or _is_camera(inputs):
        inputs = [inputs]
    sources: list[_Source] = []
    arrays = 0
    for item in inputs:
        if _is_camera(item):
            sources.append(_Video(int(item), every_nth))
        elif isinstance(item, np.ndarray) and item.ndim == 4:
            for im in item:  # (N, H, W, 3): N images
                sources.append(_ImageArray(f"array:{arrays}", im))
                arrays += 1
        elif isinstance(item, (np.ndarray, Image.Image)):
            sources.append(_ImageArray(f"array:{arrays}", item))
            arrays += 1
        elif isinstance(item, (str, Path)):
            p = Path(item)
            if p.is_dir():
                files = sorted(f for f in p.rglob("*") if f.is_file()
                               and f.suffix.lower() in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)
                if not files:
                    sources.append(_Failed(str(p), f"folder has no images ({', '.join(IMAGE_EXTENSIONS)}) or "
                                                   f"videos ({', '.join(VIDEO_EXTENSIONS)})"))
                sources += [_source_for(f, every_nth) for f in files]
            elif not p.exists():
                sources.append(_Failed(str(item), "file not found"))
            else:
                sources.append(_source_for(p, every_nth))
        else:
            sources.append(_Failed(repr(item)[:80], f"cannot predict on a {type(item).__name__}; pass paths, "
                                                    "folders, (H, W, 3) uint8 arrays, PIL images or a camera index"))
    return sources


def _is_camera(item: Any) -> bool:
    return isinstance(item, (int, np.integer)) and not isinstance(item, bool)


def _source_for(path: Path, every_nth: int) -> _Source:
    return _Video(str(path), every_nth) if path.suffix.lower() in VIDEO_EXTENSIONS else _ImageFile(path)


# ----------------------------------------------------------------------------------------------------
# model runners


class _TorchRunner:
    def __init__(self, model: torch.nn.Module, device: torch.device):
        self.model, self.device = model.to(device).eval(), device

    def __call__(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        with torch.inference_mode():
            out = self.model(x.to(self.device), return_maps=True)
        att = None if out.attention is None else out.attention[:, 0].float().cpu().numpy()  # (B, h, w)
        return out.logits.float().cpu().numpy(), att  # (B, K)


class _OnnxRunner:
    def __init__(self, session):
        self.session = session
        self.input = session.get_inputs()[0].name
        self.has_attention = len(session.get_outputs()) > 1

    def __call__(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.session.run(None, {self.input: x.numpy()})
        return out[0], (out[1][:, 0] if self.has_attention else None)  # (B, K), (B, h, w)


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _onnx_session(model: str | Path | bytes, device: torch.device):
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("backend='onnx' needs onnxruntime: pip install 'lanfer[onnx]'") from e
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for unreadable files
        raise CheckpointError(f"{model if not isinstance(model, bytes) else 'ONNX model'}: ONNX Runtime cannot "
                              f"load it ({e})") from None


def read_onnx_metadata(path: str | Path) -> ModelInfo:
    """The :class:`ModelInfo` of an ONNX file written by ``lanfer export`` (the safetensors codec)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"ONNX model {str(path)!r} does not exist; write one with lanfer export CHECKPOINT "
                              "--format onnx --out model.onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable ONNX file ({e})") from None
    return _decode_meta({p.key: p.value for p in proto.metadata_props}, path)


def _decode_meta(meta: dict[str, str], where: Any) -> ModelInfo:
    if meta.get("format") != "lanfer" or "classes" not in meta:
        raise CheckpointError(f"{where}: an ONNX file without lanfer metadata (classes, image_size, normalize); "
                              "export it with lanfer export")
    try:
        return ModelInfo.from_metadata(meta, str(where))
    except InfoError as e:
        raise CheckpointError(str(e)) from None


# ----------------------------------------------------------------------------------------------------
# the predictor


class Predictor:
    """Detect, align and classify faces; see the module docstring.

    Build it with :meth:`from_checkpoint`, :meth:`from_onnx` or :meth:`from_model`. ``runner`` maps a
    batch of preprocessed crops (B, 3, S, S) to ``(logits (B, K), attention (B, h, w) or None)``.
    """

    def __init__(self, runner: Runner, classes: Sequence[str], image_size: int, normalize: str = "imagenet",
                 detector: str | FaceDetector | None = "mtcnn", device: str | torch.device = "cpu",
                 backend: str = "torch"):
        self.runner = runner
        self.classes = [str(c) for c in classes]
        if not self.classes:
            raise CheckpointError("the model file lists no class names; it cannot label predictions")
        self.image_size = int(image_size)
        self.normalize = normalize
        self.preset = EvalPreset(self.image_size, normalize)
        self.device = _resolve_device(device)
        self.backend = backend
        self._detector_spec = detector
        self._detector: FaceDetector | None = None if isinstance(detector, str) else detector

    def __repr__(self) -> str:
        return (f"Predictor(backend={self.backend!r}, classes={self.classes}, image_size={self.image_size}, "
                f"detector={self.detector_name!r}, device={str(self.device)!r})")

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", detector: str | FaceDetector | None = "mtcnn",
                        backend: str = "torch") -> "Predictor":
        """A predictor for a lanfer model file (``.safetensors``) or an exported ``.onnx`` file.

        ``backend="onnx"`` with a ``.safetensors`` file exports it in memory (see :mod:`lanfer.export`) and
        runs it in ONNX Runtime; with an ``.onnx`` file it is :meth:`from_onnx`.
        """
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        if str(path).endswith(".onnx"):
            return cls.from_onnx(path, device=device, detector=detector)
        dev = _resolve_device(device)
        if backend == "onnx":
            from .export import export_model

            model, info = load_model(path, device="cpu")
            session = _onnx_session(export_model(model, info, info.input_size), dev)
            return cls(_OnnxRunner(session), info.classes, info.input_size, info.normalize,
                       detector, dev, backend="onnx")
        model, info = load_model(path, device=dev)
        return cls.from_model(model, info, device=dev, detector=detector)

    @classmethod
    def from_model(cls, model: torch.nn.Module, info: ModelInfo, device: str | torch.device = "cpu",
                   detector: str | FaceDetector | None = "mtcnn") -> "Predictor":
        """A predictor for an in-memory model and its :class:`ModelInfo` (a format-1 dict is accepted too)."""
        dev = _resolve_device(device)
        info = as_model_info(info)
        return cls(_TorchRunner(model, dev), info.classes, info.input_size, info.normalize, detector, dev)

    @classmethod
    def from_onnx(cls, path: str | Path, device: str = "cpu",
                  detector: str | FaceDetector | None = "mtcnn") -> "Predictor":
        """A predictor running an ONNX file from ``lanfer export`` in ONNX Runtime (classes, input size and
        normalisation from the file's metadata)."""
        meta = read_onnx_metadata(path)
        dev = _resolve_device(device)
        session = _onnx_session(path, dev)
        return cls(_OnnxRunner(session), meta.classes, meta.input_size, meta.normalize, detector, dev,
                   backend="onnx")

    @property
    def detector_name(self) -> str | None:
        spec = self._detector_spec
        return spec if isinstance(spec, str) or spec is None else type(spec).__name__

    @property
    def detector(self) -> FaceDetector | None:
        """The face detector, built on first use (so ``detect=False`` needs no detector installed)."""
        if self._detector is None and isinstance(self._detector_spec, str):
            self._detector = get_detector(self._detector_spec, device=str(self.device))
        return self._detector

    # -- prediction --------------------------------------------------------------------------------

    def classify(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (N, K) and attention maps (N, h, w) (None for the baseline) of face crops
        ((H, W, 3) uint8 RGB, any size: the evaluation transform resizes them), in one batch."""
        # torch warns on read-only arrays (np.asarray of a PIL image); copy those few.
        x = torch.stack([self.preset(c if c.flags.writeable else c.copy()) for c in crops])  # (N, 3, S, S)
        logits, att = self.runner(x)
        z = logits - logits.max(1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(1, keepdims=True), att

    def predict(self, inputs: Any, batch_size: int = 32, progress: bool = True, detect: bool = True,
                every_nth_frame: int = 1, return_attention: bool = False, overlay_dir: str | Path | None = None,
                window: int = 8) -> PredictionTable:
        """Predict the expression of every face in ``inputs``.

        Args:
            inputs: a path (image, video, folder -- searched recursively for images and videos), a list of
                paths, an (H, W, 3) uint8 RGB array, a PIL image, a list of these, or a camera index (int).
            batch_size: face crops per model call; crops are collected across images and frames.
            progress: a tqdm bar over frames (images count as one frame), with frames/s.
            detect: False when the inputs are already aligned face crops: each image is one face
                (box = the whole image; score, landmarks and pose are NaN).
            every_nth_frame: keep video frames 0, n, 2n, ...; the ``frame`` column holds the frame index.
            return_attention: add the ``attention`` column (F_m of each face, (h, w) float32).
            overlay_dir: write annotated images (``<name>.jpg``) and videos (``<name>.mp4``) here.
            window: frames per face-detector call (the detector batches them).
        Returns:
            a :class:`PredictionTable`; ``attrs`` holds ``wall_s``, ``frames``, ``max_frames_held`` and
            ``timing`` (seconds spent reading, detecting, aligning + pose, classifying, drawing overlays).
        """
        if batch_size < 1 or every_nth_frame < 1 or window < 1:
            raise ValueError(f"batch_size, every_nth_frame and window must be >= 1, got {batch_size}, "
                             f"{every_nth_frame}, {window}")
        if detect and self.detector is None:
            raise ValueError("this Predictor has no face detector (detector=None): pass detect=False for aligned "
                             "face crops, or build it with detector='mtcnn'")
        start = time.perf_counter()
        sources = _expand(inputs, every_nth_frame)
        run = _Run(self, batch_size=batch_size, detect=detect, window=window, return_attention=return_attention,
                   overlays=_Overlays(Path(overlay_dir), self.classes) if overlay_dir is not None else None)
        from .progress import progress_bar

        bar = progress_bar(total=sum(s.total or 0 for s in sources if not isinstance(s, _Video)), desc="predict",
                           unit="frame", enabled=progress, dynamic_ncols=True)
        try:
            try:
                for source in sources:
                    run.feed(source, bar)
            except KeyboardInterrupt:
                if not any(isinstance(s, _Video) and isinstance(s.target, int) for s in sources):
                    raise
                run.interrupted()  # Ctrl-C is how a webcam stream ends: keep what was seen
            run.finish()
        finally:
            bar.close()
            if run.overlays is not None:
                run.overlays.close_all()
        table = PredictionTable(run.rows, columns=self.columns(return_attention))
        for c in ("frame", "face"):
            table[c] = table[c].astype("Int64")
        table.classes = list(self.classes)
        table.normalize = self.normalize
        table._images = {s.name: s.image for s in sources if isinstance(s, _ImageArray)}
        table.attrs.update(wall_s=time.perf_counter() - start, frames=run.n_frames,
                           max_frames_held=run.max_held, backend=self.backend,
                           timing={k: round(v, 4) for k, v in run.timing.items()})
        return table

    def columns(self, attention: bool = False) -> list[str]:
        cols = ["source", "frame", "face", "x1", "y1", "x2", "y2", "score", "yaw", "pitch", "roll",
                *LANDMARK_COLUMNS, "label", *(f"prob_{c}" for c in self.classes), "status"]
        return cols + ["attention"] if attention else cols


class _Run:
    """One predict() call: frames flow window -> detection -> crop queue -> batched model -> rows, in order.

    Held frames are bounded: at most ``window`` frames wait for detection, and a partial batch is classified
    as soon as ``max(window, batch_size)`` detected frames wait for probabilities, which empties that queue;
    so fewer than ``window + max(window, batch_size)`` frames are ever held, however long the video.
    """

    def __init__(self, predictor: Predictor, batch_size: int, detect: bool, window: int, return_attention: bool,
                 overlays: "_Overlays | None"):
        self.p, self.batch_size, self.detect, self.window = predictor, batch_size, detect, window
        self.return_attention, self.overlays = return_attention, overlays
        self.keep_attention = return_attention or overlays is not None
        self.limit = max(window, batch_size)
        self.rows: list[list[Any]] = []
        self.win: list[_Frame] = []  # read, not yet detected
        self.queue: deque = deque()  # detected frames and end-of-source markers, in output order
        self.pending: list[_FaceItem] = []  # crops waiting for the model
        self.n_frames = 0
        self.max_held = 0
        self.timing = {"read_s": 0.0, "detect_s": 0.0, "align_pose_s": 0.0, "classify_s": 0.0, "overlay_s": 0.0}

    def feed(self, source: _Source, bar) -> None:
        if isinstance(source, _Video):
            error = source.open()
            if error is None and source.total:
                bar.total = (bar.total or 0) + source.total
                bar.refresh()
            elif error is not None:
                bar.total = (bar.total or 0) + 1
                source = _Failed(source.name, error)
        sink = self.overlays.sink_for(source) if self.overlays is not None else None
        bar.set_description_str(Path(source.name).name[:30], refresh=False)
        frames, t = source.frames(), time.perf_counter()
        for frame in frames:
            self.timing["read_s"] += time.perf_counter() - t
            frame.sink = sink
            self.win.append(frame)
            self.n_frames += 1
            bar.update(1)
            self._track()
            if len(self.win) >= self.window:
                self._step()
            t = time.perf_counter()
        if sink is not None:
            self.win.append(_EndOfSource(sink))

    def interrupted(self) -> None:
        """Recover from a Ctrl-C at any point: drop the frames not yet detected, re-queue every face still
        without probabilities (a batch may have been cut short), so that finish() emits the rest."""
        self.win = [f for f in self.win if isinstance(f, _EndOfSource)]
        self.pending = [face for f in self.queue if isinstance(f, _Frame) for face in f.faces if face.probs is None]

    def finish(self) -> None:
        self._step()
        self._classify(force=True)
        self._emit()

    def _track(self) -> None:
        held = sum(isinstance(f, _Frame) for f in self.win) + sum(isinstance(f, _Frame) for f in self.queue)
        self.max_held = max(self.max_held, held)

    def _step(self) -> None:
        frames = [f for f in self.win if isinstance(f, _Frame) and f.status == STATUS_OK]
        if self.detect and frames:
            t = time.perf_counter()
            detected = self.p.detector.detect([f.image for f in frames])
            t1 = time.perf_counter()
            for f, faces in zip(frames, detected):
                f.faces = [self._item(f.image, face) for face in faces]
                if not f.faces:
                    f.status = STATUS_NO_FACE
            self.timing["detect_s"] += t1 - t
            self.timing["align_pose_s"] += time.perf_counter() - t1
        elif frames:
            for f in frames:
                h, w = f.image.shape[:2]
                f.faces = [_FaceItem((0.0, 0.0, float(w), float(h)), math.nan, None, (math.nan,) * 3, f.image)]
        for f in frames:
            self.pending += f.faces
            if self.overlays is None:
                f.image = None  # only the crops are needed from here on
        self.queue.extend(self.win)
        self.win = []
        self._classify(force=sum(isinstance(f, _Frame) for f in self.queue) >= self.limit)
        self._emit()

    def _item(self, image: np.ndarray, face: Face) -> _FaceItem:
        try:
            pose = tuple(estimate_pose(face.landmarks))
        except ValueError:  # coincident landmarks: a degenerate detection
            pose = (math.nan,) * 3
        crop = align_face(image, face.landmarks, size=self.p.image_size)  # (S, S, 3)
        return _FaceItem(tuple(face.box), face.score, face.landmarks, pose, crop)

    def _classify(self, force: bool) -> None:
        while len(self.pending) >= self.batch_size or (force and self.pending):
            batch, self.pending = self.pending[:self.batch_size], self.pending[self.batch_size:]
            t = time.perf_counter()
            probs, att = self.p.classify([b.crop for b in batch])
            self.timing["classify_s"] += time.perf_counter() - t
            for i, b in enumerate(batch):
                b.probs = probs[i]
                b.attention = att[i] if (att is not None and self.keep_attention) else None
                if self.overlays is None:
                    b.crop = None  # type: ignore[assignment]

    def _emit(self) -> None:
        while self.queue and (not isinstance(self.queue[0], _Frame) or self.queue[0].ready):
            item = self.queue.popleft()
            if isinstance(item, _EndOfSource):
                item.sink.close()
                continue
            self.rows += self._rows(item)
            if item.sink is not None and item.image is not None:
                t = time.perf_counter()
                item.sink.write(item)
                self.timing["overlay_s"] += time.perf_counter() - t
            item.image = None

    def _rows(self, f: _Frame) -> list[list[Any]]:
        classes = self.p.classes
        nan = math.nan
        if not f.faces:
            row = [f.source, f.frame, None, *[nan] * 8, *[nan] * 10, None, *[nan] * len(classes), f.status]
            return [row + [None]] if self.return_attention else [row]
        out = []
        for i, face in enumerate(f.faces):
            lm = face.landmarks.reshape(-1).tolist() if face.landmarks is not None else [nan] * 10
            k = int(np.argmax(face.probs))
            row = [f.source, f.frame, i, *face.box, face.score, *face.pose, *lm, classes[k], *face.probs.tolist(),
                   STATUS_OK]
            if self.return_attention:
                row.append(None if face.attention is None else face.attention.astype(np.float32))
            out.append(row)
        return out


# ----------------------------------------------------------------------------------------------------
# overlays: fast PIL drawing for every image and video frame


@functools.lru_cache(maxsize=32)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def annotate(image: np.ndarray, faces: Sequence[dict], classes: Sequence[str]) -> np.ndarray:
    """Draw faces onto a copy of ``image`` (H, W, 3) uint8: a box per face, ``label probability`` above it, and
    an inset beside it with the aligned crop under its attention heat map (F_m upsampled) and a bar chart
    of the class probabilities. Insets go where they cover the fewest faces and other insets.

    ``faces``: dicts with ``box`` (x1, y1, x2, y2), ``probs`` (K,), and optionally ``crop`` (S, S, 3) uint8
    and ``attention`` (h, w) in [0, 1].
    """
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(canvas, "RGBA")
    width, height = canvas.size
    boxes = [tuple(float(v) for v in f["box"]) for f in faces]
    probs = [np.asarray(f["probs"], dtype=float) for f in faces]
    colors = [PALETTE[int(np.argmax(p)) % len(PALETTE)] for p in probs]
    for (x1, y1, x2, y2), color in zip(boxes, colors):
        draw.rectangle([x1, y1, x2, y2], outline=color, width=max(1, int(round((x2 - x1) / 60))))
    taken = list(boxes)
    for face, box, p in zip(faces, boxes, probs):
        rect = _place_inset(box, face.get("crop") is not None, taken, width, height)
        _inset(canvas, draw, face, p, classes, rect)
        taken.append(rect)
    for (x1, y1, x2, y2), p, color in zip(boxes, probs, colors):
        k = int(np.argmax(p))
        font = _font(int(np.clip((x2 - x1) / 7, 9, 28)))
        text = f"{classes[k]} {p[k]:.2f}"
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        ty = y1 - (b - t) - 4 if y1 - (b - t) - 4 >= 0 else y1
        draw.rectangle([x1, ty, x1 + (r - l) + 4, ty + (b - t) + 4], fill=color + (220,))
        draw.text((x1 + 2 - l, ty + 2 - t), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def _place_inset(box, with_crop: bool, taken: list, width: int, height: int) -> tuple[int, int, int, int]:
    """An inset rectangle beside ``box`` (right, left, below, above; clamped into the picture), the candidate
    overlapping the ``taken`` rectangles least."""
    x1, y1, x2, y2 = box
    side = int(np.clip(0.7 * (x2 - x1), 40, 160))
    side = max(16, min(side, width // (3 if with_crop else 2), height // 2))
    w, h, gap = (2 * side if with_crop else side), side, 4
    candidates = [(x2 + gap, y1), (x1 - gap - w, y1), (x1, y2 + gap), (x1, y1 - gap - h)]

    def clamp(x, y):
        x = int(min(max(x, 0), max(width - w, 0)))
        y = int(min(max(y, 0), max(height - h, 0)))
        return (x, y, x + w, y + h)

    def overlap(r):
        return sum(max(0.0, min(r[2], t[2]) - max(r[0], t[0])) * max(0.0, min(r[3], t[3]) - max(r[1], t[1]))
                   for t in taken)

    rects = [clamp(x, y) for x, y in candidates]
    return min(rects, key=overlap)  # min keeps the first of equals: right of the box when it is free


def _inset(canvas, draw, face: dict, probs: np.ndarray, classes: Sequence[str], rect) -> None:
    from PIL import Image

    x, y, x_end, y_end = rect
    side = y_end - y
    bars_x = x
    crop = face.get("crop")
    if crop is not None:
        thumb = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((side, side), Image.Resampling.BILINEAR))
        att = face.get("attention")
        if att is not None:
            from .analysis.figures import overlay

            thumb = np.uint8(np.clip(overlay(thumb / 255.0, np.asarray(att)), 0, 1) * 255 + 0.5)
        canvas.paste(Image.fromarray(thumb), (x, y))
        bars_x = x + side
    draw.rectangle([bars_x, y, bars_x + side - 1, y + side - 1], fill=(0, 0, 0, 150))
    row_h = side / len(classes)
    font = _font(int(np.clip(row_h * 0.8, 6, 16)))
    for k, name in enumerate(classes):
        top = y + k * row_h
        draw.rectangle([bars_x, top + 1, bars_x + max(1.0, probs[k] * (side - 1)), top + row_h - 1],
                       fill=PALETTE[k % len(PALETTE)] + (230,))
        if row_h >= 7:
            draw.text((bars_x + 2, top + row_h / 2), name[:7], fill=(255, 255, 255), font=font, anchor="lm")


class _Overlays:
    """Where annotated images and videos go: ``<dir>/<name>.jpg`` and ``<dir>/<name>.mp4`` (names made unique)."""

    def __init__(self, folder: Path, classes: Sequence[str]):
        self.folder, self.classes = folder, list(classes)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.used: set[str] = set()
        self.open: list[_Sink] = []
        self.written: list[Path] = []

    def sink_for(self, source: _Source) -> "_Sink | None":
        if isinstance(source, _Failed):
            return None
        video = isinstance(source, _Video)
        stem = Path(source.name).stem if isinstance(source, _ImageFile) or (video and not source.name.startswith(
            "camera:")) else source.name.replace(":", "_")
        name, n = stem, 1
        while name in self.used:
            n += 1
            name = f"{stem}_{n}"
        self.used.add(name)
        sink = _Sink(self, self.folder / (name + (".mp4" if video else ".jpg")), video,
                     source.fps / source.every_nth if video else 0.0)
        self.open.append(sink)
        return sink

    def close_all(self) -> None:
        for s in self.open:
            s.close()


class _Sink:
    def __init__(self, owner: _Overlays, path: Path, video: bool, fps: float):
        self.owner, self.path, self.video, self.fps = owner, path, video, fps
        self.writer = None

    def write(self, frame: _Frame) -> None:
        faces = [dict(box=f.box, probs=f.probs, crop=f.crop, attention=f.attention) for f in frame.faces]
        img = annotate(frame.image, faces, self.owner.classes)
        if frame.status == STATUS_NO_FACE:
            from PIL import Image, ImageDraw

            pil = Image.fromarray(img)
            ImageDraw.Draw(pil).text((4, 4), "no face", fill=(255, 60, 60), font=_font(14))
            img = np.asarray(pil)
        if not self.video:
            from PIL import Image

            Image.fromarray(img).save(self.path, quality=90)
            self.owner.written.append(self.path)
            return
        import cv2

        if self.writer is None:
            h, w = img.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), max(self.fps, 1.0), (w, h))
            self.owner.written.append(self.path)
        self.writer.write(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None


# ----------------------------------------------------------------------------------------------------
# the command


def write_table(table: PredictionTable, path: str | Path) -> Path:
    """Write the table as CSV or JSON records (by suffix); the attention column stays in memory only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = pd.DataFrame(table.drop(columns=["attention"], errors="ignore"))
    if path.suffix == ".json":
        path.write_text(flat.to_json(orient="records", indent=1))
    else:
        flat.to_csv(path, index=False, float_format="%.6g")
    return path


def summarize(table: PredictionTable, max_sources: int = 20) -> str:
    """Faces found per source (and frames for videos), problems, and the wall time."""
    lines = []
    groups = list(table.groupby("source", sort=False))
    for source, g in groups[:max_sources]:
        ok = g[g["status"] == STATUS_OK]
        frames = g["frame"].nunique()
        what = f"{len(ok)} face{'s' * (len(ok) != 1)}"
        if frames > 1:
            what += f" in {frames} frames ({(g['status'] == STATUS_NO_FACE).sum()} without a face)"
        bad = g[(g["status"] != STATUS_OK) & (g["status"] != STATUS_NO_FACE)]["status"].unique()
        if frames == 1 and len(ok) == 0:
            what = g["status"].iloc[0]
        elif len(bad):
            what += "; " + "; ".join(bad[:2])
        if len(ok):
            top = ok["label"].value_counts()
            what += " -- " + ", ".join(f"{k} {v}" for k, v in top.head(4).items())
        lines.append(f"  {source}: {what}")
    if len(groups) > max_sources:
        lines.append(f"  ... and {len(groups) - max_sources} more sources")
    n_ok = int((table["status"] == STATUS_OK).sum())
    wall = table.attrs.get("wall_s", float("nan"))
    frames = table.attrs.get("frames", 0)
    head = (f"{n_ok} faces in {len(groups)} sources ({frames} frames) in {wall:.1f} s "
            f"({frames / wall if wall else 0:.1f} frames/s, {table.attrs.get('backend', 'torch')})")
    return "\n".join([head, *lines])


def run_predict(checkpoint: str | Path, inputs: Sequence[Any], out: str | Path = "runs/predict", format: str = "csv",
                overlay: bool = False, detect: bool = True, every_nth_frame: int = 1, batch_size: int = 32,
                device: str = "auto", onnx: str | Path | None = None,
                progress: bool = True) -> tuple[PredictionTable, str]:
    """``lanfer predict``: predict on ``inputs`` and write ``OUT/predictions.csv`` (or ``.json``) and, with
    ``overlay``, annotated images and videos in ``OUT/overlays/``. Returns the table and a summary text.

    ``onnx``: run this exported model in ONNX Runtime instead of the checkpoint's PyTorch weights; its
    classes must match the checkpoint's (a guard against a stale export).
    """
    if format not in ("csv", "json"):
        raise ValueError(f"--format must be csv or json, got {format!r}")
    out = Path(out)
    if onnx is not None:
        if str(checkpoint) != str(onnx) and not str(checkpoint).endswith(".onnx"):
            from .checkpoint import read_model_info

            want, got = read_model_info(checkpoint).classes, read_onnx_metadata(onnx).classes
            if list(want or []) != list(got):
                raise CheckpointError(f"{onnx} has classes {got} but {checkpoint} has {want}; re-export it with "
                                      f"lanfer export {checkpoint} --format onnx --out {onnx}")
        predictor = Predictor.from_onnx(onnx, device=device, detector="mtcnn" if detect else None)
    else:
        predictor = Predictor.from_checkpoint(checkpoint, device=device, detector="mtcnn" if detect else None)
    # A bare number that is not a file is a camera index (lanfer predict CKPT 0).
    inputs = [int(i) if isinstance(i, str) and i.isdigit() and not Path(i).exists() else i for i in inputs]
    table = predictor.predict(inputs, batch_size=batch_size, progress=progress, detect=detect,
                              every_nth_frame=every_nth_frame, overlay_dir=out / "overlays" if overlay else None)
    path = write_table(table, out / f"predictions.{format}")
    text = summarize(table) + f"\nwrote {path}" + (f" and overlays in {out / 'overlays'}" if overlay else "")
    return table, text
