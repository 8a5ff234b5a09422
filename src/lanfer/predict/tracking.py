"""Faces followed over the frames of a video: an IoU tracker and per-track smoothing of the probabilities.

:class:`IoUTracker` gives every face a ``track_id`` that stays the same while its box keeps overlapping the
box it had in the previous frames: boxes are matched to tracks greedily, highest intersection over union
first (as in Bochinski et al. 2017, "High-speed tracking-by-detection without using image information"), a
pair needing at least ``iou_threshold``; a box left over starts a new track, and a track that matched no box
in ``max_missed`` frames in a row ends (its id is never given again within the same tracker).

:class:`ProbabilitySmoother` keeps an exponential moving average of each track's class probabilities::

    s_0 = p_0,    s_t = smooth * s_{t-1} + (1 - smooth) * p_t

so ``smooth=0`` is no smoothing, and a label taken from ``s_t`` flips only when the newer frames outweigh
the older ones (about ``1 / (1 - smooth)`` frames of memory). It smooths the probabilities, then the label is
their arg max, never a vote on labels. Since the weights sum to one, ``s_t`` is still a distribution.

Detection reuse (``detect_every=k`` in :meth:`lanfer.predict.Predictor.predict`) runs the detector on every
k-th frame only and, in between, cuts each face where its track was last detected (box and landmarks held,
not extrapolated). Classification reuse (``classify_every=k``) sends each track's face to the model on
every k-th frame of the track only and gives the frames in between the track's last probabilities. This
module knows boxes and probabilities, not pixels or models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

Box = Sequence[float]  # (x1, y1, x2, y2)


def iou_matrix(a: Sequence[Box] | np.ndarray, b: Sequence[Box] | np.ndarray) -> np.ndarray:
    """Intersection over union of every box of ``a`` (N, 4) with every box of ``b`` (M, 4): (N, M) in [0, 1];
    boxes are ``(x1, y1, x2, y2)``; an empty box has IoU 0 with everything."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])  # (N, M)
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)  # (N, M)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)  # (N,)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)  # (M,)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def greedy_match(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Pairs ``(row, column)`` of ``iou`` (N, M), taken highest IoU first, each row and column at most once,
    every pair's IoU >= ``threshold`` (and > 0). Ties go to the lower row, then the lower column."""
    pairs = []
    if iou.size == 0:
        return pairs
    rows, cols = np.nonzero((iou >= threshold) & (iou > 0))
    order = np.lexsort((cols, rows, -iou[rows, cols]))  # highest IoU first, then row, then column
    used_r, used_c = set(), set()
    for k in order:
        r, c = int(rows[k]), int(cols[k])
        if r not in used_r and c not in used_c:
            pairs.append((r, c))
            used_r.add(r)
            used_c.add(c)
    return pairs


@dataclass(eq=False)
class Track:
    """One followed face: its id, its last detected box (and landmarks and score, for detection reuse), how
    many frames in a row it went unmatched, and how many frames it was matched in."""

    track_id: int
    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None = None
    score: float = float("nan")
    misses: int = 0
    hits: int = 1


class IoUTracker:
    """Stable ids for the faces of consecutive frames, by box overlap.

    Args:
        iou_threshold: the least IoU between a track's last box and a new box for them to be the same face.
        max_missed: a track that matches no box in this many frames in a row ends (0: it ends on its first
            miss). A face the detector loses for fewer frames keeps its id.

    Call :meth:`update` once per frame, in order, with that frame's boxes (an empty list for a frame without
    faces); it returns one ``track_id`` per box.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5):
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0 frames, got {max_missed}")
        self.iou_threshold, self.max_missed = float(iou_threshold), int(max_missed)
        self.tracks: list[Track] = []  # alive, oldest first
        self.next_id = 0

    def update(self, boxes: Sequence[Box], landmarks: Sequence[np.ndarray | None] | None = None,
               scores: Sequence[float] | None = None) -> list[int]:
        """Match this frame's ``boxes`` to the tracks; returns their ``track_id``\\ s, in the order of ``boxes``.
        ``landmarks`` and ``scores`` (one per box) are kept with the track for :meth:`held`."""
        n = len(boxes)
        landmarks = list(landmarks) if landmarks is not None else [None] * n
        scores = list(scores) if scores is not None else [float("nan")] * n
        if len(landmarks) != n or len(scores) != n:
            raise ValueError(f"{n} boxes but {len(landmarks)} landmarks and {len(scores)} scores")
        iou = iou_matrix([t.box for t in self.tracks], boxes)  # (T, N)
        ids: list[int | None] = [None] * n
        matched: set[int] = set()
        for ti, bi in greedy_match(iou, self.iou_threshold):
            t = self.tracks[ti]
            t.box, t.landmarks, t.score = _box(boxes[bi]), landmarks[bi], float(scores[bi])
            t.misses, t.hits = 0, t.hits + 1
            ids[bi] = t.track_id
            matched.add(ti)
        for ti, t in enumerate(self.tracks):
            if ti not in matched:
                t.misses += 1
        self.tracks = [t for t in self.tracks if t.misses <= self.max_missed]
        for bi in range(n):
            if ids[bi] is None:
                self.tracks.append(Track(self.next_id, _box(boxes[bi]), landmarks[bi], float(scores[bi])))
                ids[bi] = self.next_id
                self.next_id += 1
        return ids  # type: ignore[return-value]

    def held(self) -> list[Track]:
        """The tracks matched in the latest :meth:`update` (``misses == 0``), oldest first: the faces a frame
        without detection carries over from the last detected one."""
        return [t for t in self.tracks if t.misses == 0]

    @property
    def alive_ids(self) -> set[int]:
        return {t.track_id for t in self.tracks}


class ProbabilitySmoother:
    """Exponential moving average of each track's probabilities (see the module's formula).

    Args:
        smooth: the weight of the past, in [0, 1): 0 leaves the probabilities as they are.
        max_age: a track not updated for more than this many steps is forgotten (its state dropped), so
            memory stays bounded over a long video; a track that comes back later starts afresh. None keeps
            every track.
    """

    def __init__(self, smooth: float, max_age: int | None = None):
        if not 0.0 <= smooth < 1.0:
            raise ValueError(f"smooth must be in [0, 1) (the weight of the previous frames), got {smooth}")
        if max_age is not None and max_age < 0:
            raise ValueError(f"max_age must be >= 0 steps, got {max_age}")
        self.smooth, self.max_age = float(smooth), max_age
        self.state: dict[int, tuple[np.ndarray, int]] = {}  # track_id -> (smoothed (K,), step of last update)

    def update(self, track_id: int, probs: np.ndarray, step: int) -> np.ndarray:
        """The smoothed probabilities (K,) of ``track_id`` after this frame's ``probs`` (K,); ``step`` is the
        frame's number (non-decreasing over calls), which :meth:`prune` ages tracks by."""
        probs = np.asarray(probs, dtype=np.float64)
        prev = self.state.get(track_id)
        if prev is None or self.smooth == 0.0:
            s = probs.copy()
        else:
            if prev[0].shape != probs.shape:
                raise ValueError(f"track {track_id}: {probs.shape[0]} probabilities after {prev[0].shape[0]}")
            s = self.smooth * prev[0] + (1.0 - self.smooth) * probs
        self.state[track_id] = (s, step)
        return s

    def prune(self, step: int) -> None:
        """Forget the tracks last updated more than ``max_age`` steps before ``step``."""
        if self.max_age is None:
            return
        for tid in [t for t, (_, last) in self.state.items() if step - last > self.max_age]:
            del self.state[tid]


def _box(b: Box) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in b)
    return (x1, y1, x2, y2)
