"""The predictor: a model and its preprocessing, a face detector, and ``lanfer predict``'s function."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..calibration import probabilities, resolve_tau
from ..checkpoint import CheckpointError, as_model_info, read_model_info
from ..config import ConfigError
from ..info import ModelInfo
from ..model import load_model
from ..data import EvalPreset
from ..devices import resolve_device
from ..faces import DEFAULT_DETECTOR, FaceDetector, available_detectors, detector_backends, get_detector
from .batching import TrackingOptions, _Run
from .overlays import _Overlays
from .record import table_columns
from .runners import OnnxRunner, Runner, TorchRunner, check_graph, open_onnx
from .sources import _ImageArray, _Video, expand_inputs
from .table import PredictionTable, summarize, write_table


#: The default per-track smoothing of video probabilities (``smooth=``, ``--smooth``): half of each frame's
#: estimate is the past, so a label needs about two frames of new evidence to flip.
SMOOTH = 0.5


class Predictor:
    """Detect, align and classify faces; see :mod:`lanfer.predict`.

    Build it with :meth:`from_checkpoint`, :meth:`from_onnx` or :meth:`from_model`. ``runner`` maps a
    batch of preprocessed crops (B, 3, S, S) to ``(logits (B, K), attention (B, h, w) or None)``.
    ``prior_tau``: the operating point, i.e. the logit adjustment ``tau * log(prior)`` applied before the
    softmax (:mod:`lanfer.calibration`); None is the model's own (``info.prior_tau``), 0 the plain classifier.
    A detector given by name is built on first use; with ``backend="onnx"`` one that can run in ONNX Runtime
    (BlazeFace) runs there too, under the same ``session_options``.
    """

    def __init__(self, runner: Runner, info: ModelInfo, detector: str | FaceDetector | None = DEFAULT_DETECTOR,
                 device: str | torch.device = "cpu", backend: str = "torch", prior_tau: float | None = None,
                 session_options: Any = None):
        self.runner = runner
        self.info = info
        self.prior_tau = resolve_tau(info, prior_tau)  # refuses a tau the record cannot give
        self.classes = list(info.classes)
        self.image_size = info.input_size
        self.normalize = info.normalize
        self.crop = info.crop  # how a detected face is cut: the framing the model was trained on
        self.preset = EvalPreset.from_info(info)  # size, normalisation and colour mode of training
        self.device = resolve_device(device)
        self.backend = backend
        if isinstance(detector, str) and detector not in available_detectors():
            get_detector(detector)  # raises now, naming the choices, rather than at the first picture
        self._detector_spec = detector
        self._detector: FaceDetector | None = None if isinstance(detector, str) else detector
        self._session_options = session_options

    def __repr__(self) -> str:
        return (f"Predictor(backend={self.backend!r}, classes={self.classes}, image_size={self.image_size}, "
                f"color={self.info.color!r}, crop={self.crop.kind}/{self.crop.margin:g}, "
                f"temperature={self.info.temperature:.3g}, prior_tau={self.prior_tau:g}, "
                f"detector={self.detector_name!r}, device={str(self.device)!r})")

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, name: str | None = None, device: str | torch.device = "auto",
                        detector: str | FaceDetector | None = DEFAULT_DETECTOR, backend: str = "torch",
                        prior_tau: float | None = None) -> "Predictor":
        """A predictor for a model shipped with lanfer (``None``: the default; ``lanfer models`` lists them),
        offline."""
        from ..pretrained import find

        return cls.from_checkpoint(find(name).path, device=device, detector=detector, backend=backend,
                                   prior_tau=prior_tau)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str | torch.device = "auto",
                        detector: str | FaceDetector | None = DEFAULT_DETECTOR, backend: str = "torch",
                        prior_tau: float | None = None) -> "Predictor":
        """A predictor for a lanfer model file (``.safetensors``), an exported ``.onnx`` file, or a shipped
        model's name (``None``: the default shipped model).

        ``backend="onnx"`` with a ``.safetensors`` file exports it in memory (see :mod:`lanfer.export`) and
        runs it in ONNX Runtime; with an ``.onnx`` file it is :meth:`from_onnx`.
        """
        from ..pretrained import resolve

        path = resolve(path)
        if backend not in ("torch", "onnx"):
            raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        if str(path).endswith(".onnx"):
            return cls.from_onnx(path, device=device, detector=detector, prior_tau=prior_tau)
        dev = resolve_device(device)
        if backend == "onnx":
            from ..export import export_model

            model, info = load_model(path, device="cpu")
            # The exported graph carries the same record in its metadata.
            return cls.from_onnx(export_model(model, info, info.input_size), device=dev, detector=detector,
                                 prior_tau=prior_tau)
        model, info = load_model(path, device=dev)
        return cls.from_model(model, info, device=dev, detector=detector, prior_tau=prior_tau)

    @classmethod
    def from_model(cls, model: torch.nn.Module, info: ModelInfo | dict[str, Any], device: str | torch.device = "cpu",
                   detector: str | FaceDetector | None = DEFAULT_DETECTOR, prior_tau: float | None = None) -> "Predictor":
        """A predictor for an in-memory model and its :class:`~lanfer.info.ModelInfo` (a dict with the model
        file's format-1 keys is read through the same codec)."""
        dev = resolve_device(device)
        return cls(TorchRunner(model, dev), as_model_info(info), detector, dev, prior_tau=prior_tau)

    @classmethod
    def from_onnx(cls, path: str | Path | bytes, device: str | torch.device = "cpu",
                  detector: str | FaceDetector | None = DEFAULT_DETECTOR, session_options: Any = None,
                  prior_tau: float | None = None) -> "Predictor":
        """A predictor running an ONNX model from ``lanfer export`` (a file, or the bytes of
        :func:`lanfer.export.export_model`) in ONNX Runtime; its record comes from the model's metadata.
        ``session_options``: an ``onnxruntime.SessionOptions`` (e.g. thread counts)."""
        dev = resolve_device(device)
        session, info = open_onnx(path, dev, session_options)
        check_graph(session, info, "the exported ONNX model" if isinstance(path, bytes) else path)
        return cls(OnnxRunner(session), info, detector, dev, backend="onnx", prior_tau=prior_tau,
                   session_options=session_options)

    @property
    def detector_name(self) -> str | None:
        spec = self._detector_spec
        return spec if isinstance(spec, str) or spec is None else type(spec).__name__

    @property
    def detector(self) -> FaceDetector | None:
        """The face detector, built on first use (so ``detect=False`` needs no detector installed)."""
        if self._detector is None and isinstance(self._detector_spec, str):
            self._detector = get_detector(self._detector_spec, device=str(self.device),
                                          **_backend_options(self._detector_spec, self.backend, self._session_options))
        return self._detector

    # -- prediction --------------------------------------------------------------------------------

    def classify(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (N, K) at this predictor's operating point (the model's temperature and prior
        adjustment, :func:`lanfer.calibration.probabilities`) and attention maps (N, h, w) (None for the
        baseline) of face crops ((H, W, 3) uint8 RGB, any size: the evaluation transform resizes them), in one
        batch."""
        # torch warns on read-only arrays (np.asarray of a PIL image); copy those few.
        x = torch.stack([self.preset(c if c.flags.writeable else c.copy()) for c in crops])  # (N, 3, S, S)
        logits, att = self.runner(x)  # (N, K) raw logits (ONNX graphs too), (N, h, w) or None
        return probabilities(logits, self.info, self.prior_tau), att

    def predict(self, inputs: Any, batch_size: int = 32, progress: bool = True, detect: bool = True,
                every_nth_frame: int = 1, return_attention: bool = False, overlay_dir: str | Path | None = None,
                window: int = 8, detect_every: int = 1, smooth: float = SMOOTH, iou_threshold: float = 0.3,
                max_missed: int = 5, classify_every: int = 1) -> PredictionTable:
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
            detect_every: in videos, run the detector on every k-th kept frame only; the frames in between
                cut each face where its track was last detected (score NaN in their rows). Faster by up to k
                times the detector's share of the time; a face that moves is cut up to k - 1 frames late,
                and one that appears is found up to k - 1 frames late. 1: detect on every frame.
            classify_every: in videos, classify each tracked face on every k-th frame of its track only (its
                first frame, then k frames later, ...); the rows in between get the track's last probabilities
                and label (before smoothing). Faster by up to k times the classifier's share of the time; an
                expression that changes is seen up to k - 1 frames late. 1: classify every face of every frame.
            smooth: in videos, each track's probabilities are an exponential moving average,
                ``s_t = smooth * s_(t-1) + (1 - smooth) * p_t``, and the label is their arg max (0: off).
                Photos are never smoothed.
            iou_threshold, max_missed: the tracker's (:class:`~lanfer.predict.tracking.IoUTracker`): the least
                box overlap to keep a face's ``track_id``, and the detected frames a track survives unmatched.
        Returns:
            a :class:`PredictionTable`; ``attrs`` holds ``wall_s``, ``frames``, ``detected_frames``,
            ``max_frames_held`` and ``timing`` (seconds spent reading, detecting, aligning + pose, classifying,
            drawing overlays).
        """
        if batch_size < 1 or every_nth_frame < 1 or window < 1:
            raise ValueError(f"batch_size, every_nth_frame and window must be >= 1, got {batch_size}, "
                             f"{every_nth_frame}, {window}")
        tracking = TrackingOptions(detect_every, smooth, iou_threshold, max_missed,  # refuses bad values
                                   classify_every=classify_every)
        if detect and self.detector is None:
            raise ValueError("this Predictor has no face detector (detector=None): pass detect=False for aligned "
                             f"face crops, or build it with detector={DEFAULT_DETECTOR!r}")
        start = time.perf_counter()
        sources = expand_inputs(inputs, every_nth_frame)
        run = _Run(self, batch_size=batch_size, detect=detect, window=window, return_attention=return_attention,
                   overlays=_Overlays(Path(overlay_dir), self.classes) if overlay_dir is not None else None,
                   tracking=tracking)
        from ..progress import progress_bar

        bar = progress_bar(total=sum(s.total or 0 for s in sources if not isinstance(s, _Video)), desc="predict",
                           unit="frame", enabled=progress, dynamic_ncols=True)
        try:
            try:
                for source in sources:
                    run.feed(source, bar)
            except KeyboardInterrupt:
                if not any(isinstance(s, _Video) and s.is_camera for s in sources):
                    raise
                run.interrupted()  # Ctrl-C is how a webcam stream ends: keep what was seen
            run.finish()
        finally:
            bar.close()
            if run.overlays is not None:
                run.overlays.close_all()
        table = PredictionTable(run.rows, columns=self.columns(return_attention))
        for c in ("frame", "face", "track_id"):
            table[c] = table[c].astype("Int64")
        table.classes = list(self.classes)
        table.normalize = self.normalize
        table._images = {s.name: s.image for s in sources if isinstance(s, _ImageArray)}
        table.attrs.update(wall_s=time.perf_counter() - start, frames=run.n_frames,
                           detected_frames=run.detected_frames, detect_every=detect_every,
                           classify_every=classify_every, smooth=smooth,
                           max_frames_held=run.max_held, backend=self.backend,
                           timing={k: round(v, 4) for k, v in run.timing.items()})
        return table

    def columns(self, attention: bool = False) -> list[str]:
        """The columns of this predictor's tables (``attention`` adds the F_m column)."""
        return table_columns(self.classes, attention)


def _backend_options(name: str, backend: str, session_options: Any = None) -> dict[str, Any]:
    """Keyword arguments that make detector ``name`` run its network where the classifier runs: none for
    PyTorch or for a detector without that backend (MTCNN stays in PyTorch)."""
    if backend == "torch" or backend not in detector_backends(name):
        return {}
    return {"backend": backend, "session_options": session_options}


def detector_for(name: str = DEFAULT_DETECTOR, device: str | torch.device = "auto",
                 min_face_size: int | None = None, backend: str = "torch") -> str | FaceDetector:
    """The ``detector`` argument of a Predictor: the registered detector ``name`` (built on first use, its own
    defaults), or that detector on ``device`` dropping faces under ``min_face_size`` pixels (``lanfer predict``
    and ``lanfer serve``'s ``--detector`` and ``--min-face-size``; MTCNN also starts its search there), its
    network in ONNX Runtime when ``backend="onnx"`` and the detector has that backend (BlazeFace).
    An unknown name is refused here, with the list of detectors."""
    if name not in available_detectors():
        get_detector(name)  # raises ValueError naming the choices
    if min_face_size is None:
        return name
    return get_detector(name, device=str(resolve_device(device)), min_face_size=min_face_size,
                        **_backend_options(name, backend))


def mtcnn_for(device: str | torch.device = "auto", min_face_size: int | None = None) -> str | FaceDetector:
    """:func:`detector_for` MTCNN (kept for code written before BlazeFace became the default)."""
    return detector_for("mtcnn", device, min_face_size)


def run_predict(checkpoint: str | Path | None, inputs: Sequence[Any], out: str | Path = "runs/predict", format: str = "csv",
                overlay: bool = False, detect: bool = True, every_nth_frame: int = 1, batch_size: int = 32,
                device: str = "auto", onnx: str | Path | None = None,
                progress: bool = True, min_face_size: int | None = None,
                prior_tau: float | None = None, detect_every: int = 1, classify_every: int = 1,
                smooth: float = SMOOTH, detector: str = DEFAULT_DETECTOR,
                backend: str = "torch") -> tuple[PredictionTable, str]:
    """``lanfer predict``: predict on ``inputs`` and write ``OUT/predictions.csv`` (or ``.json``) and, with
    ``overlay``, annotated images and videos in ``OUT/overlays/``. Returns the table and a summary text.

    ``checkpoint``: a model file or a shipped model's name; ``None`` is the default shipped model.
    ``onnx``: run this exported model in ONNX Runtime instead of the checkpoint's PyTorch weights; its
    classes must match the checkpoint's (a guard against a stale export).
    ``prior_tau``: the operating point (``--prior-tau``; None: the model's own, see :class:`Predictor`).
    ``detector``: the face detector's name (``--detector``; :func:`lanfer.faces.available_detectors`).
    ``backend``: ``"onnx"`` exports the checkpoint in memory and runs it in ONNX Runtime (``--backend onnx``;
    with ``onnx=`` the file is run in ONNX Runtime anyway).
    ``min_face_size``: faces narrower than this many pixels are dropped (default: none for BlazeFace; MTCNN
    searches from 20). For MTCNN it also sets the search: most of its time is its largest pyramid levels, which
    only small faces need: 40 made video prediction 1.7x faster in ``benchmarks/bench_predict_video.py``.
    ``detect_every``, ``classify_every``, ``smooth``: video tracking (``--detect-every``, ``--classify-every``,
    ``--smooth``; see :meth:`Predictor.predict`).
    """
    from ..pretrained import resolve

    checkpoint = resolve(checkpoint) if onnx is None or checkpoint is not None else onnx
    if format not in ("csv", "json"):
        raise ValueError(f"--format must be csv or json, got {format!r}")
    out = Path(out)
    if min_face_size is not None and not detect:
        raise ConfigError("--min-face-size sets the face search, and --no-detect (detect=False) runs none: drop "
                          "one of them")
    detector_spec = (detector_for(detector, device, min_face_size, "onnx" if onnx is not None else backend)
                     if detect else None)
    if onnx is not None:
        predictor = Predictor.from_onnx(onnx, device=device, detector=detector_spec, prior_tau=prior_tau)
        if str(checkpoint) != str(onnx) and not str(checkpoint).endswith(".onnx"):
            want = read_model_info(checkpoint).classes
            if want != predictor.classes:
                raise CheckpointError(f"{onnx} has classes {predictor.classes} but {checkpoint} has {want}; "
                                      f"re-export it with lanfer export {checkpoint} --format onnx --out {onnx}")
    else:
        predictor = Predictor.from_checkpoint(checkpoint, device=device, detector=detector_spec, prior_tau=prior_tau,
                                              backend=backend)
    # A bare number that is not a file is a camera index (lanfer predict CKPT 0).
    inputs = [int(i) if isinstance(i, str) and i.isascii() and i.isdigit() and not Path(i).exists() else i
              for i in inputs]
    table = predictor.predict(inputs, batch_size=batch_size, progress=progress, detect=detect,
                              every_nth_frame=every_nth_frame, overlay_dir=out / "overlays" if overlay else None,
                              detect_every=detect_every, classify_every=classify_every, smooth=smooth)
    path = write_table(table, out / f"predictions.{format}")
    text = summarize(table) + f"\nwrote {path}" + (f" and overlays in {out / 'overlays'}" if overlay else "")
    return table, text
