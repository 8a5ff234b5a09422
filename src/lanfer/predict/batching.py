"""One ``Predictor.predict`` call as a stream: frames -> detection in windows -> crops batched across
images and frames -> the model -> table rows and overlays, in input order, with bounded memory.

Video frames also go through their video's :class:`_Tracking`: faces get a ``track_id`` when detected (in
frame order), frames between detections (``detect_every > 1``) carry their tracks' faces over, faces whose
track was classified less than ``classify_every`` frames before skip the model, and each track's
probabilities are smoothed when its frames come out of the queue (again in frame order), where the faces that
skipped the model take their track's last probabilities."""
from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from ..faces import FaceDetector, crop_face
from .overlays import _Overlays
from .record import STATUS_NO_FACE, STATUS_OK, FaceResult, table_row
from .sources import _EndOfSource, _Failed, _Frame, _Source, _Video
from .tracking import IoUTracker, ProbabilitySmoother


class TrackingOptions:
    """How video faces are followed (see :mod:`lanfer.predict.tracking`).

    Args:
        detect_every: run the detector on every k-th kept frame of a video only; the frames in between cut
            each face where its track was last detected (1: detect every frame).
        classify_every: classify each tracked face on every k-th frame of its track only (its first frame,
            then k frames later, ...); the frames in between reuse the track's last probabilities (1: classify
            every face of every frame).
        smooth: per-track exponential moving average weight of the past probabilities, in [0, 1) (0: off).
        iou_threshold: the least box overlap for a face to keep its track.
        max_missed: detected frames a track may go unmatched before it ends.
    """

    def __init__(self, detect_every: int = 1, smooth: float = 0.0, iou_threshold: float = 0.3, max_missed: int = 5,
                 classify_every: int = 1):
        self.detect_every = _frame_count("detect_every", detect_every)
        self.classify_every = _frame_count("classify_every", classify_every)
        self.smooth = float(smooth)
        self.iou_threshold, self.max_missed = float(iou_threshold), int(max_missed)
        self.new()  # checks smooth, iou_threshold and max_missed now, not at the first video

    def new(self) -> "_Tracking":
        return _Tracking(self)


def _frame_count(name: str, value: Any) -> int:
    """``value`` as a whole number of frames >= 1, or a ValueError naming ``name`` and the value."""
    try:
        ok = not isinstance(value, bool) and int(value) == value and value >= 1
    except (TypeError, ValueError, OverflowError):  # "3", None, NaN, infinity
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a whole number of frames >= 1, got {value!r}")
    return int(value)


class _Tracking:
    """One video's tracker (updated on detected frames) and smoother (updated as frames are emitted); also
    one webcam stream of ``lanfer serve``."""

    def __init__(self, options: TrackingOptions):
        self.detect_every, self.classify_every = options.detect_every, options.classify_every
        self.tracker = IoUTracker(options.iou_threshold, options.max_missed)
        # a track ends after max_missed + 1 detected frames without a match, i.e. at most this many kept frames
        self.smoother = ProbabilitySmoother(options.smooth, (options.max_missed + 1) * options.detect_every)
        self.poses: dict[int, tuple[float, float, float]] = {}  # track_id -> pose at its last detection
        # classify_every > 1: track_id -> step of its last face sent to the model (kept by reuse(), as frames
        # are cut), and track_id -> (probs (K,), attention, step) of its last classified face (kept by smooth(),
        # as frames are emitted)
        self.sent: dict[int, int] = {}
        self.last: dict[int, tuple[np.ndarray, np.ndarray | None, int]] = {}

    def update(self, faces: list[FaceResult]) -> None:
        """A detected frame's faces: their track ids, and their poses kept for the frames that carry them."""
        ids = self.tracker.update([r.box for r in faces], [r.landmarks for r in faces], [r.score for r in faces])
        for r, tid in zip(faces, ids):
            r.track_id = tid
            self.poses[tid] = r.pose
        alive = self.tracker.alive_ids
        self.poses = {t: p for t, p in self.poses.items() if t in alive}

    def reuse(self, faces: list[FaceResult], step: int) -> list[FaceResult]:
        """The faces of frame ``step`` that skip the model: those whose track sent a face to it less than
        ``classify_every`` frames before; call it once per frame, in frame order, after :meth:`update`.

        Why per track and not "classify on every k-th frame of the video": a track that starts (or comes back
        after missed frames) on any frame is classified at once instead of waiting for the next key frame with
        no probabilities to reuse, and every face's probabilities are at most k - 1 frames old. With
        ``classify_every == detect_every`` the tracks, which start on detected frames, are classified on the
        detected frames only."""
        if self.classify_every == 1:
            return []
        reused = []
        for face in faces:
            last = self.sent.get(face.track_id)
            if last is not None and step - last < self.classify_every:
                reused.append(face)
            else:
                self.sent[face.track_id] = step
        self.sent = {t: s for t, s in self.sent.items() if step - s < self.classify_every}  # older is as none
        return reused

    def smooth(self, faces: list[FaceResult], step: int, classes: Sequence[str],
               reused: Sequence[FaceResult] = ()) -> None:
        """The faces of ``reused`` (from :meth:`reuse`) take their track's last probabilities (and attention)
        from the model; then each face's probabilities become its track's moving average as of frame ``step``,
        and its label their arg max; call it once per frame, in frame order."""
        if self.classify_every > 1:
            # frames come out in order, so a track's last classified face (at most classify_every - 1 frames
            # before) is out already; its probabilities are taken before smoothing, so a reused frame counts as
            # one more frame of that evidence, as if the model had said the same again
            for face in faces:
                if any(face is r for r in reused):
                    probs, attention, _ = self.last[face.track_id]
                    face.set_prediction(probs, classes, attention)
                else:
                    self.last[face.track_id] = (face.probs, face.attention, step)
            self.last = {t: v for t, v in self.last.items() if step - v[2] < self.classify_every}
        if self.smoother.smooth > 0:
            for face in faces:
                if face.track_id is not None and face.probs is not None:
                    s = self.smoother.update(face.track_id, face.probs, step)  # (K,)
                    face.set_prediction(s.astype(face.probs.dtype), classes, face.attention)
            self.smoother.prune(step)

    def is_key(self, frame: _Frame) -> bool:
        return frame.step % self.detect_every == 0


class _Model(Protocol):
    """What a run needs of its :class:`~lanfer.predict.Predictor` (named here, so this module does not
    import the one that imports it)."""

    classes: list[str]
    image_size: int
    crop: Any  # the model's FaceCrop

    @property
    def detector(self) -> FaceDetector | None: ...

    def classify(self, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]: ...


class _Run:
    """One predict() call: frames flow window -> detection -> crop queue -> batched model -> rows, in order.

    Held frames are bounded: at most ``window`` frames wait for detection, and a partial batch is classified
    as soon as ``max(window, batch_size)`` detected frames wait for probabilities, which empties that queue;
    so fewer than ``window + max(window, batch_size)`` frames are ever held, however long the video.
    """

    def __init__(self, predictor: _Model, batch_size: int, detect: bool, window: int, return_attention: bool,
                 overlays: _Overlays | None, tracking: TrackingOptions | None = None):
        self.p, self.batch_size, self.detect, self.window = predictor, batch_size, detect, window
        self.tracking = tracking or TrackingOptions()
        self.return_attention, self.overlays = return_attention, overlays
        self.keep_attention = return_attention or overlays is not None
        self.limit = max(window, batch_size)
        self.rows: list[list[Any]] = []
        self.win: list[_Frame | _EndOfSource] = []  # read, not yet detected
        self.queue: deque = deque()  # detected frames and end-of-source markers, in output order
        self.pending: list[FaceResult] = []  # crops waiting for the model
        self.n_frames = 0
        self.max_held = 0
        self.timing = {"read_s": 0.0, "detect_s": 0.0, "align_pose_s": 0.0, "classify_s": 0.0, "overlay_s": 0.0}
        self.detected_frames = 0  # frames the detector ran on (fewer than the frames with detect_every > 1)

    def feed(self, source: _Source, bar) -> None:
        """Read every frame of ``source``, detecting and classifying as windows and batches fill."""
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
        # a video's faces are tracked (when they are detected); photos and aligned crops are not
        tracking = self.tracking.new() if isinstance(source, _Video) and self.detect else None
        frames, t = source.frames(), time.perf_counter()
        for step, frame in enumerate(frames):
            self.timing["read_s"] += time.perf_counter() - t
            frame.sink = sink
            if tracking is not None and frame.status == STATUS_OK:
                frame.tracking, frame.step = tracking, step
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
        self.pending = [face for f in self.queue if isinstance(f, _Frame) for face in f.faces
                        if not face.classified and not any(face is r for r in f.reused)]

    def finish(self) -> None:
        """Detect and classify what is left, and emit every remaining row."""
        self._step()
        self._classify(force=True)
        self._emit()

    def _track(self) -> None:
        held = sum(isinstance(f, _Frame) for f in self.win) + sum(isinstance(f, _Frame) for f in self.queue)
        self.max_held = max(self.max_held, held)

    def _step(self) -> None:
        frames = [f for f in self.win if isinstance(f, _Frame) and f.status == STATUS_OK]
        if self.detect and frames:
            # one detector call for the window's frames that need one (all of them unless detect_every > 1)
            keys = [f for f in frames if f.tracking is None or f.tracking.is_key(f)]
            t = time.perf_counter()
            detected = self.p.detector.detect([f.image for f in keys]) if keys else []
            t1 = time.perf_counter()
            found = dict(zip(map(id, keys), detected))
            for f in frames:  # in frame order: a carried frame takes its tracks as of the last detected one
                if id(f) in found:
                    f.faces = [FaceResult.from_detection(f.image, face, self.p.image_size, self.p.crop)
                               for face in found[id(f)]]
                    if f.tracking is not None:
                        f.tracking.update(f.faces)
                else:
                    f.faces = [self._carried(f, track) for track in f.tracking.tracker.held()]
                if f.tracking is not None:
                    f.reused = f.tracking.reuse(f.faces, f.step)
                if not f.faces:
                    f.status = STATUS_NO_FACE
            self.detected_frames += len(keys)
            self.timing["detect_s"] += t1 - t
            self.timing["align_pose_s"] += time.perf_counter() - t1
        elif frames:
            for f in frames:
                f.faces = [FaceResult.whole_image(f.image)]
        for f in frames:
            self.pending += [face for face in f.faces if not any(face is r for r in f.reused)]
            if self.overlays is None:
                f.image = None  # only the crops are needed from here on
                for face in f.reused:
                    face.crop = None  # not classified: its crop is for overlays only
        self.queue.extend(self.win)
        self.win = []
        self._classify(force=sum(isinstance(f, _Frame) for f in self.queue) >= self.limit)
        self._emit()

    def _carried(self, f: _Frame, track) -> FaceResult:
        """A face of a frame the detector skipped: cut where its track was last detected, with the pose of
        that detection (the same landmarks give the same pose; estimating it again would cost as much as the
        cut). Its score is NaN (nothing was detected on this frame), which tells these rows from detected
        ones."""
        pixels = crop_face(f.image, track.landmarks, track.box, self.p.image_size, self.p.crop)  # (S, S, 3)
        return FaceResult(track.box, float("nan"), track.landmarks, f.tracking.poses[track.track_id], pixels,
                          track_id=track.track_id)

    def _classify(self, force: bool) -> None:
        while len(self.pending) >= self.batch_size or (force and self.pending):
            batch, self.pending = self.pending[:self.batch_size], self.pending[self.batch_size:]
            t = time.perf_counter()
            probs, att = self.p.classify([b.crop for b in batch])  # (B, K), (B, h, w) or None
            self.timing["classify_s"] += time.perf_counter() - t
            for i, b in enumerate(batch):
                b.set_prediction(probs[i], self.p.classes,
                                 att[i] if (att is not None and self.keep_attention) else None)
                if self.overlays is None:
                    b.crop = None

    def _emit(self) -> None:
        while self.queue and (not isinstance(self.queue[0], _Frame) or self.queue[0].ready):
            item = self.queue.popleft()
            if isinstance(item, _EndOfSource):
                item.sink.close()
                continue
            if item.tracking is not None:  # frames leave the queue in order, classified
                item.tracking.smooth(item.faces, item.step, self.p.classes, item.reused)
            self.rows += self._rows(item)
            if item.sink is not None and item.image is not None:
                t = time.perf_counter()
                item.sink.write(item)
                self.timing["overlay_s"] += time.perf_counter() - t
            item.image = None

    def _rows(self, f: _Frame) -> list[list[Any]]:
        k = len(self.p.classes)
        if not f.faces:
            return [table_row(f.source, f.frame, None, None, f.status, k, self.return_attention)]
        return [table_row(f.source, f.frame, i, face, STATUS_OK, k, self.return_attention)
                for i, face in enumerate(f.faces)]
