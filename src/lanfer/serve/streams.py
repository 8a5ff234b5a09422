"""Webcam streams of ``lanfer serve``: the faces of consecutive frames that one page posts with
``POST /v1/predict?stream=ID`` keep their ``track_id`` and have their probabilities smoothed, by the same
tracker and smoother as ``lanfer predict`` on a video (:class:`lanfer.predict.TrackingOptions`).

The server keeps at most ``max_streams`` streams; the one used least recently is dropped for a new one, and a
stream idle for ``idle_s`` seconds is dropped too, so a page that goes away costs nothing for long. A stream
holds boxes, landmarks and a few probabilities per face (no pictures): a few kilobytes.
"""
from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..predict import TrackingOptions
from .limits import ApiError

STREAM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(eq=False)
class Stream:
    tracking: Any  # lanfer.predict.batching._Tracking
    step: int = 0  # frames seen
    used: float = field(default_factory=time.monotonic)


class Streams:
    """The live streams, by the id the page chose, least recently used first."""

    def __init__(self, max_streams: int = 16, idle_s: float = 120.0):
        self.max_streams, self.idle_s = max_streams, idle_s
        self._streams: OrderedDict[tuple[str, float], Stream] = OrderedDict()
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._streams)

    def get(self, stream_id: str, smooth: float) -> Stream:
        """The stream ``stream_id`` at smoothing ``smooth`` (a new one when either is new); a malformed id is
        a 422. A stream's frames must come in order: the page sends the next frame once it has the answer."""
        if not STREAM_ID.fullmatch(stream_id):
            raise ApiError(422, f"stream id {stream_id[:80]!r}: use 1 to 64 letters, digits, '-' or '_'")
        try:
            options = TrackingOptions(smooth=smooth)
        except ValueError as e:
            raise ApiError(422, str(e)) from None
        now = time.monotonic()
        for key in [k for k, s in self._streams.items() if now - s.used > self.idle_s]:
            del self._streams[key]
            self.dropped += 1
        key = (stream_id, options.smooth)
        stream = self._streams.pop(key, None)
        if stream is None:
            stream = Stream(options.new())
            while len(self._streams) >= self.max_streams:
                self._streams.popitem(last=False)
                self.dropped += 1
        stream.used = now
        self._streams[key] = stream  # most recently used last
        return stream
