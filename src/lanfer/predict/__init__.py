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
``batch_size`` crops collected across images and frames -> probabilities at the model's operating point
(its temperature and class-prior adjustment, :func:`lanfer.calibration.probabilities`; ``prior_tau=`` picks
another), the LAN attention map F_m and the head pose from the landmarks.

In videos (and webcams), faces are followed from frame to frame by an IoU tracker (the ``track_id`` column),
each track's probabilities are smoothed over time (``smooth=``, default :data:`SMOOTH`; photos never are),
``detect_every=k`` runs the detector on every k-th frame only, carrying the tracked faces in between, and
``classify_every=k`` classifies each tracked face on every k-th frame of its track only, reusing its last
probabilities in between.

Videos are streamed with ``cv2.VideoCapture``: fewer than ``window + max(window, batch_size)`` frames are
held at any time (the table records the peak in ``attrs["max_frames_held"]``), whatever the video's length. Every input
that cannot be used (missing path, non-image file, unreadable video, photo without faces) gets one row with
a ``status`` saying why, and the run carries on.

The model runs in PyTorch (``backend="torch"``) or, for CPU deployments, in ONNX Runtime on a file written by
``lanfer export`` (``backend="onnx"`` / :meth:`Predictor.from_onnx`), whose metadata carries the classes,
input size and normalisation.

The package, one concern per module:

* ``record``: :class:`FaceResult`, the one record of a face (box, landmarks, pose, crop, probabilities,
  label), and the table row built from it;
* ``sources``: image files, in-memory images, videos and cameras as sources of frames;
* ``runners``: the model in PyTorch or ONNX Runtime (:func:`open_onnx`, the one way to open an ONNX model);
* ``tracking``: the IoU tracker and the per-track probability smoother of videos;
* ``batching``: one ``predict`` call as a stream with bounded memory;
* ``predictor``: :class:`Predictor` and :func:`run_predict` (``lanfer predict``);
* ``overlays``: :func:`annotate` and the annotated image and video writers (PIL only);
* ``table``: :class:`PredictionTable`, :func:`write_table`, :func:`summarize`.
"""
from .batching import TrackingOptions
from .overlays import PALETTE, annotate, heat_overlay
from .predictor import SMOOTH, Predictor, detector_for, mtcnn_for, run_predict
from .record import LANDMARK_COLUMNS, STATUS_NO_FACE, STATUS_OK, FaceResult, table_columns, table_row
from .runners import OnnxRunner, Runner, TorchRunner, open_onnx, read_onnx_metadata
from .sources import VIDEO_EXTENSIONS
from .table import PredictionTable, summarize, write_table
from .tracking import IoUTracker, ProbabilitySmoother

__all__ = [
    "Predictor", "run_predict", "detector_for", "mtcnn_for", "PredictionTable", "write_table", "summarize",
    "FaceResult", "table_row",
    "table_columns", "annotate", "heat_overlay", "PALETTE", "TorchRunner", "OnnxRunner", "Runner", "open_onnx",
    "read_onnx_metadata", "VIDEO_EXTENSIONS", "LANDMARK_COLUMNS", "STATUS_OK", "STATUS_NO_FACE", "SMOOTH", "IoUTracker",
    "ProbabilitySmoother", "TrackingOptions",
]
