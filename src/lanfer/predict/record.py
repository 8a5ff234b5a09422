"""The one record of a face in a prediction (:class:`FaceResult`) and the table row built from it.

A face is found by a detector (:class:`lanfer.faces.Face`: box, score, five landmarks), aligned and posed,
classified, then drawn and written as a table row. One record carries it through all of these, so that
the batching run, the overlays and the table cannot disagree about what a face is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..faces import LANDMARK_NAMES, Face, crop_face, estimate_pose

STATUS_OK = "ok"
STATUS_NO_FACE = "no face"
LANDMARK_COLUMNS = tuple(f"{n}_{c}" for n in LANDMARK_NAMES for c in ("x", "y"))
_NAN = math.nan


@dataclass(eq=False)
class FaceResult:
    """One face through the prediction pipeline: where it is, how the head is turned, the crop the model
    saw and what the model said.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in the source image's pixels (the whole image for aligned crops).
        score: detector confidence in [0, 1]; NaN when nothing was detected (aligned crops, ``detect=False``).
        landmarks: ``(5, 2)`` ``(x, y)`` in :data:`lanfer.faces.LANDMARK_NAMES` order, or None (aligned crops).
        pose: ``(yaw, pitch, roll)`` in degrees (:mod:`lanfer.faces.pose`), NaN when unknown.
        crop: ``(S, S, 3)`` uint8 RGB aligned face the model classifies (the whole image for aligned crops);
            dropped after classification unless overlays are drawn.
        probs: ``(K,)`` class probabilities; None until classified.
        attention: ``(h, w)`` F_m in [0, 1]; None for the baseline model or when nobody asked to keep it.
        label: the most probable class name; None until classified.
        track_id: the face's track in its video (:mod:`lanfer.predict.tracking`), the same number for the
            same face over frames; None for photos and aligned crops.
    """

    box: tuple[float, float, float, float]
    score: float = _NAN
    landmarks: np.ndarray | None = None
    pose: tuple[float, float, float] = (_NAN, _NAN, _NAN)
    crop: np.ndarray | None = None
    probs: np.ndarray | None = None
    attention: np.ndarray | None = None
    label: str | None = None
    track_id: int | None = None

    @classmethod
    def from_detection(cls, image: np.ndarray, face: Face, size: int, crop: Any = None) -> "FaceResult":
        """A detected face of ``image`` (H, W, 3) uint8: its pose from the landmarks and its crop at ``size``
        px (the model's input side), cut as the model's :class:`~lanfer.info.FaceCrop` ``crop`` says."""
        try:
            pose = tuple(estimate_pose(face.landmarks))
        except ValueError:  # coincident landmarks: a degenerate detection, still classified
            pose = (_NAN,) * 3
        pixels = crop_face(image, face.landmarks, face.box, size, crop)  # (S, S, 3)
        return cls(tuple(face.box), face.score, face.landmarks, pose, pixels)  # type: ignore[arg-type]

    @classmethod
    def whole_image(cls, image: np.ndarray) -> "FaceResult":
        """An image that is already an aligned face crop (``detect=False``): box = the whole image."""
        h, w = image.shape[:2]
        return cls((0.0, 0.0, float(w), float(h)), crop=image)

    @classmethod
    def coerce(cls, face: "FaceResult | Mapping[str, Any]") -> "FaceResult":
        """``face`` itself, or a mapping with the same field names (``box``, ``probs``, optionally ``crop``,
        ``attention`` ...) turned into a record; :func:`~lanfer.predict.annotate` accepts both."""
        if isinstance(face, FaceResult):
            return face
        unknown = set(face) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown face fields {sorted(unknown)}; a face has {list(cls.__dataclass_fields__)}")
        return cls(**{"box": tuple(face["box"]), **{k: v for k, v in face.items() if k != "box"}})

    @property
    def classified(self) -> bool:
        return self.probs is not None

    def set_prediction(self, probs: np.ndarray, classes: Sequence[str], attention: np.ndarray | None = None) -> None:
        """Record the model's probabilities ``(K,)`` (and attention ``(h, w)``) and the label they give."""
        self.probs = probs
        self.label = classes[int(np.argmax(probs))]
        self.attention = attention


# A frame without a usable face still gets one row: this record's NaNs fill it.
_NO_FACE = FaceResult((_NAN, _NAN, _NAN, _NAN))


def table_columns(classes: Sequence[str], attention: bool = False) -> list[str]:
    """The column names of a prediction table, in :func:`table_row` order."""
    cols = ["source", "frame", "face", "track_id", "x1", "y1", "x2", "y2", "score", "yaw", "pitch", "roll",
            *LANDMARK_COLUMNS, "label", *(f"prob_{c}" for c in classes), "status"]
    return cols + ["attention"] if attention else cols


def table_row(source: str, frame: int, index: int | None, face: FaceResult | None, status: str, num_classes: int,
              attention: bool = False) -> list[Any]:
    """One table row (:func:`table_columns` order) for face number ``index`` of a frame, or for a frame or
    input without a face (``face=None``, ``index=None``: every face column is NaN/None)."""
    f = _NO_FACE if face is None else face
    landmarks = f.landmarks.reshape(-1).tolist() if f.landmarks is not None else [_NAN] * len(LANDMARK_COLUMNS)
    probs = f.probs.tolist() if f.probs is not None else [_NAN] * num_classes
    row = [source, frame, index, f.track_id, *f.box, f.score, *f.pose, *landmarks, f.label, *probs, status]
    if attention:
        row.append(None if f.attention is None else f.attention.astype(np.float32))
    return row
