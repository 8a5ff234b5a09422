"""Face detection with five landmarks, behind one small interface.

A detector takes a list of RGB uint8 images and returns, per image, a list of :class:`Face` (box, score and
five landmarks in image pixels). :class:`MTCNNDetector` wraps the MTCNN whose weights ship inside
``facenet-pytorch==2.5.3`` (MIT; install with ``pip install 'lanfer[faces]'``); the default,
:class:`lanfer.faces.blazeface.BlazeFaceDetector`, lives in its own module. Other detectors (RetinaFace,
SCRFD ...) plug in with :func:`register_detector` and are built by name with :func:`get_detector`::

    from lanfer.faces import get_detector
    detector = get_detector("mtcnn", device="cpu")   # or "blazeface", the default (lanfer.faces.blazeface)
    faces = detector.detect([image])[0]          # largest face first
    faces[0].landmarks                           # (5, 2): left eye, right eye, nose, left/right mouth
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ._checks import as_points, as_rgb_uint8

#: The landmark order every detector returns. "Left" is image-left (the subject's right eye), as in
#: MTCNN, RetinaFace and the ArcFace alignment template.
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(eq=False)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in.

    Attributes:
        box: ``(x1, y1, x2, y2)``; may extend past the image border for faces cut by it.
        score: detector confidence in [0, 1].
        landmarks: ``(5, 2)`` float ``(x, y)`` in :data:`LANDMARK_NAMES` order.
        keypoints: the detector's own keypoints ``(K, 2)`` when they are not the five landmarks (BlazeFace:
            six, in :data:`lanfer.faces.blazeface.KEYPOINT_NAMES` order), else ``None``.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray = field(repr=False)
    keypoints: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        box = tuple(float(v) for v in self.box)
        if len(box) != 4 or not np.isfinite(box).all() or box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"face box must be finite (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1, got {self.box}")
        self.box = box  # type: ignore[assignment]
        self.score = float(self.score)
        self.landmarks = as_points(self.landmarks, 5, "face landmarks")
        if self.keypoints is not None:
            self.keypoints = as_points(self.keypoints, None, "face keypoints")

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return self.width * self.height

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-friendly record: ``x1 y1 x2 y2 score`` and ``<landmark>_x/_y`` columns."""
        out: dict[str, Any] = dict(zip(("x1", "y1", "x2", "y2"), self.box))
        out["score"] = self.score
        for name, (x, y) in zip(LANDMARK_NAMES, self.landmarks):
            out[f"{name}_x"], out[f"{name}_y"] = float(x), float(y)
        return out


@runtime_checkable
class FaceDetector(Protocol):
    """What the rest of lanfer needs from a face detector."""

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Return, for each ``(H, W, 3)`` uint8 RGB image, its faces (largest first; empty if none)."""
        ...


_DETECTORS: dict[str, Callable[..., FaceDetector]] = {}

#: The detector :func:`get_detector`, a Predictor, ``lanfer predict`` and ``lanfer serve`` use unless told
#: otherwise (``detector=``, ``--detector``): BlazeFace, whose weights ship in the package
#: (:mod:`lanfer.faces.blazeface`). ``"mtcnn"`` needs ``pip install 'lanfer[faces]'``.
DEFAULT_DETECTOR = "blazeface"


def register_detector(name: str):
    """Decorator: make a detector class or factory ``fn(**kwargs) -> FaceDetector`` available to
    :func:`get_detector` (and to ``--detector NAME`` on the command line)."""

    def deco(fn):
        _DETECTORS[name] = fn
        return fn

    return deco


def available_detectors() -> list[str]:
    return sorted(_DETECTORS)


def detector_backends(name: str) -> tuple[str, ...]:
    """The ``backend`` values detector ``name`` takes (its class's ``backends``; ``("torch",)`` for one that
    declares none): a Predictor whose classifier runs in ONNX Runtime runs such a detector there too."""
    if name not in _DETECTORS:
        get_detector(name)  # raises, naming the choices
    return tuple(getattr(_DETECTORS[name], "backends", ("torch",)))


def get_detector(name: str = DEFAULT_DETECTOR, **kwargs) -> FaceDetector:
    """Build a registered detector by name, passing ``kwargs`` (e.g. ``device="cuda"``) to it."""
    if name not in _DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; available: {', '.join(available_detectors())} "
                         "(register your own with lanfer.faces.register_detector)")
    return _DETECTORS[name](**kwargs)


MTCNN_MIN_FACE = 12  # pixels: P-Net's window, the smallest face MTCNN can search for (its min_face_size floor)


@register_detector("mtcnn")
class MTCNNDetector:
    """MTCNN (Zhang et al. 2016) with the P/R/O-net weights shipped in ``facenet-pytorch==2.5.3``.

    Args:
        device: torch device for the three networks (``"cpu"``, ``"cuda"``, ...).
        min_face_size: smallest face side, in pixels, searched for (sets the top of the image pyramid).
            Images whose shorter side is below it have no faces by definition and return ``[]``.
        thresholds: score thresholds of the three stages; the last is the minimum reported score.
        factor: scale step of the image pyramid.
        batch: run same-size images through the networks together (MTCNN can only batch images of equal
            size, so images are grouped by size; results do not depend on grouping).
        batch_size: at most this many images per forward pass (bounds memory for large photos).
    """

    name = "mtcnn"

    def __init__(self, device: str = "cpu", min_face_size: int = 20,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), factor: float = 0.709,
                 batch: bool = True, batch_size: int = 8):
        try:
            import torch
            from facenet_pytorch import MTCNN
            from facenet_pytorch.models.utils.detect_face import detect_face
        except ImportError as e:
            raise ImportError("MTCNN face detection needs facenet-pytorch 2.5.3 (and opencv); install them with "
                              f"pip install 'lanfer[faces]'  (import failed: {e})") from e
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be three scores in [0, 1] (P-, R-, O-net), got {thresholds}")
        if min_face_size < MTCNN_MIN_FACE:
            raise ValueError(f"min_face_size must be >= {MTCNN_MIN_FACE} pixels (MTCNN's smallest window), got "
                             f"{min_face_size}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.min_face_size = int(min_face_size)
        self.thresholds = [float(t) for t in thresholds]
        self.factor = float(factor)
        self.batch = batch
        self.batch_size = int(batch_size)
        # The MTCNN module is only a holder of the three pretrained nets; we call facenet's detect_face
        # directly because MTCNN.detect packs results into numpy object arrays that break under numpy 2
        # (ragged batches) and return probabilities as dtype=object.
        mtcnn = MTCNN(min_face_size=self.min_face_size, thresholds=self.thresholds, factor=self.factor,
                      keep_all=True, device=self.device).eval()
        self._nets = (mtcnn.pnet, mtcnn.rnet, mtcnn.onet)
        self._detect_face = detect_face
        self._torch = torch

    def __repr__(self) -> str:
        return (f"MTCNNDetector(device={str(self.device)!r}, min_face_size={self.min_face_size}, "
                f"thresholds={tuple(self.thresholds)}, factor={self.factor})")

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Detect faces in each image; faces are sorted largest box first.

        Args:
            images: a list of ``(H, W, 3)`` uint8 RGB arrays (PIL images are accepted and converted).
        Returns:
            one list of :class:`Face` per input image, in input order.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise ValueError("detect() takes a list of images; wrap a single image as [image]")
        arrays = [as_rgb_uint8(im, f"images[{i}]") for i, im in enumerate(images)]
        results: list[list[Face]] = [[] for _ in arrays]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, a in enumerate(arrays):
            if min(a.shape[:2]) < self.min_face_size:
                continue  # no pyramid level fits; facenet's detect_face would fail on an empty pyramid
            key = a.shape[:2] if self.batch else (i,)  # unbatched: every image is its own group
            groups.setdefault(key, []).append(i)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                stack = np.stack([arrays[i] for i in chunk])  # (N, H, W, 3) uint8
                for i, faces in zip(chunk, self._detect_batch(stack)):
                    results[i] = faces
        return results

    def _detect_batch(self, stack: np.ndarray) -> list[list[Face]]:
        pnet, rnet, onet = self._nets
        with self._torch.no_grad():
            batch_boxes, batch_points = self._detect_face(stack, self.min_face_size, pnet, rnet, onet,
                                                          self.thresholds, self.factor, self.device)
        out = []
        for b in range(len(stack)):
            # detect_face returns object arrays (ragged per image); cast to plain float arrays here.
            boxes = np.asarray(batch_boxes[b], dtype=np.float64).reshape(-1, 5)  # (F, 5) x1 y1 x2 y2 score
            points = np.asarray(batch_points[b], dtype=np.float64).reshape(-1, 5, 2)  # (F, 5, 2)
            faces = [Face(tuple(bx[:4]), bx[4], pt) for bx, pt in zip(boxes, points)]
            faces.sort(key=lambda f: f.area, reverse=True)
            out.append(faces)
        return out
