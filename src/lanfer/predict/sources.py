"""What prediction reads: image files, in-memory images, videos and cameras, each a source of frames.

:func:`expand_inputs` turns what a user passed (paths, folders, arrays, PIL images, camera indices) into
sources, in order. A source that cannot be read yields one frame whose ``status`` says why, so the run
goes on with the next input. Videos are read one frame at a time and never held whole.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..data import DataError, load_image
from ..data.base import IMAGE_EXTENSIONS
from ..faces._checks import as_rgb_uint8
from .record import STATUS_OK, FaceResult

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass(eq=False)
class _Frame:
    source: str
    frame: int
    image: np.ndarray | None  # (H, W, 3) uint8 RGB; dropped once its crops are cut unless overlays are drawn
    status: str = STATUS_OK
    faces: list[FaceResult] = field(default_factory=list)
    sink: Any = None  # the overlay writer of its source
    tracking: Any = None  # its video's tracker and smoother (batching._Tracking); None for photos
    step: int = 0  # its number among the frames kept from its source (0, 1, 2 ...)
    # faces that skip the model (classify_every > 1) and take their track's last probabilities when emitted
    reused: list[FaceResult] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return all(f.classified or any(f is r for r in self.reused) for f in self.faces)


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
    """One image file through :func:`lanfer.data.load_image` (the first frame of an animated one); a file that
    cannot be decoded becomes one row whose status names it and says why."""

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
        try:
            img = as_rgb_uint8(self.image, "the in-memory image")  # (H, W, 3) uint8, no silent conversion
        except ValueError as e:
            yield _Frame(self.name, 0, None, f"error: {e}")
            return
        yield _Frame(self.name, 0, img)


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

    @property
    def is_camera(self) -> bool:
        return isinstance(self.target, int)

    def open(self) -> str | None:
        """Open the capture; returns an error message, or None. Sets ``total`` and ``fps``."""
        try:
            import cv2
        except ImportError:
            return "reading videos needs opencv: pip install 'lanfer[faces]'"
        cap = cv2.VideoCapture(self.target)
        if not cap.isOpened():
            cap.release()
            what = "camera" if self.is_camera else "video"
            return f"cannot open {what} {self.name!r} (missing, not a video, or an unsupported codec)"
        self._cap = cap
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.total = -(-n // self.every_nth) if n > 0 and not self.is_camera else None
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


def expand_inputs(inputs: Any, every_nth: int) -> list[_Source]:
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
                # not f.is_file(): a dangling or looping link named like an image gets its own error row
                # (rglob does not follow links into folders, so a link loop cannot make this walk endless)
                files = sorted(f for f in p.rglob("*") if not f.is_dir()
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


def reread_frame(source: str, frame: int, images: dict) -> np.ndarray:
    """The picture of a table row again: an in-memory image from ``images`` (by source name), else the
    file, or the frame of the video, read from disk. Returns (H, W, 3) uint8 RGB."""
    if source in images:
        return as_rgb_uint8(images[source])  # a PIL image given to predict() becomes an array here
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
