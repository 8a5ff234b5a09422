"""What the server accepts: :class:`ServeConfig` (limits, batching, token) and the one decoder of uploaded bytes.

Every limit answers with an :class:`ApiError` whose status and message the API documents: an upload over
``max_upload_bytes`` is 413 as soon as it passes the limit (nothing more of it is kept; the rest is read and
dropped, up to ``max_discard_bytes``, so that every client reads the answer), a picture over ``max_pixels``
is 413 before its pixels are decoded (PIL reads the size from the header), and bytes that are no image are
422. Nothing is written to disk: uploads are held in memory up to the byte limit and decoded from there.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from ..config import ConfigError
from ..faces import DEFAULT_DETECTOR, MTCNN_MIN_FACE, available_detectors

#: The environment variable ``lanfer serve`` reads the bearer token from when ``--token`` is not given.
TOKEN_ENV = "LANFER_TOKEN"


class ApiError(Exception):
    """An error the client can fix or retry, answered as ``{"detail": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class ServeConfig:
    """How ``lanfer serve`` runs; most fields are ``lanfer serve`` flags. Nonsense raises ConfigError.

    Attributes:
        host, port: where to listen; 127.0.0.1 (this machine only) unless told otherwise.
        token: bearer token every route but ``/healthz`` requires (None: no token; see :data:`TOKEN_ENV`).
        max_upload_bytes: the largest request body (all files together); larger is 413.
        max_discard_bytes: how much more of a refused body (413, or 422 for a body that is not multipart) the
            server reads and throws away before it answers, so that clients that send the whole body before
            reading (Python's urllib) get the answer rather than ``Connection reset by peer``; a body larger
            than that is cut off mid-upload. 0: never read on. Default 64 MiB (a second at 0.5 Gbit/s).
        max_pixels: the largest picture (width x height) per file; larger is 413.
        max_files: files per request.
        timeout_s: a request not answered within this is 504 (its queued faces are dropped).
        max_batch: face crops per model call, gathered across requests.
        max_wait_ms: how long the first face of a batch waits for others before the model runs.
        max_queue_faces: faces waiting for the model; a request that would overflow it is 503.
        max_pending: requests admitted at once (decoding, detecting or waiting for the model); beyond is 503.
        detect_workers: threads running face detection (off the event loop).
        min_face_size: faces narrower than this many pixels are dropped (None: none; MTCNN searches from 20,
            and larger is faster for it; see ``lanfer predict --min-face-size``).
        detector: the face detector's name (:data:`lanfer.faces.DEFAULT_DETECTOR`, BlazeFace, or ``"mtcnn"``).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_upload_bytes: int = 20 * 1024 * 1024
    max_discard_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_files: int = 16
    timeout_s: float = 60.0
    max_batch: int = 32
    max_wait_ms: float = 10.0
    max_queue_faces: int = 256
    max_pending: int = 32
    detect_workers: int = 2
    min_face_size: int | None = None
    detector: str = DEFAULT_DETECTOR

    def __post_init__(self):
        for name in ("max_upload_bytes", "max_pixels", "max_files", "max_batch", "max_queue_faces", "max_pending",
                     "detect_workers"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"serve: {name} must be >= 1, got {getattr(self, name)}")
        if int(self.max_discard_bytes) < 0:
            raise ConfigError(f"serve: max_discard_bytes must be >= 0, got {self.max_discard_bytes}")
        if self.timeout_s <= 0 or self.max_wait_ms < 0:
            raise ConfigError(f"serve: timeout_s must be > 0 and max_wait_ms >= 0, got {self.timeout_s}, "
                             f"{self.max_wait_ms}")
        if self.min_face_size is not None and int(self.min_face_size) < MTCNN_MIN_FACE:
            raise ConfigError(f"serve: min_face_size must be >= {MTCNN_MIN_FACE} pixels (MTCNN's smallest window), "
                              f"got {self.min_face_size}")
        if self.detector not in available_detectors():
            raise ConfigError(f"serve: unknown face detector {self.detector!r}; choose one of "
                              f"{', '.join(available_detectors())}")
        if self.max_queue_faces < self.max_batch:
            raise ConfigError(f"serve: max_queue_faces ({self.max_queue_faces}) must hold at least one batch "
                             f"(max_batch={self.max_batch})")
        if self.token is None:
            self.token = os.environ.get(TOKEN_ENV) or None


def decode_image(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    """Uploaded bytes -> (H, W, 3) uint8 RGB, upright (EXIF rotation applied).

    Raises :class:`ApiError` 413 when the picture has more than ``max_pixels`` pixels (checked on the header,
    before decoding) and 422 when the bytes are not an image PIL can decode.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ApiError(413, f"{name}: {w}x{h} = {w * h} pixels is over this server's limit of {max_pixels} "
                                    "pixels; send a smaller picture (or start lanfer serve with a larger --max-pixels)")
            im.load()
            return np.array(ImageOps.exif_transpose(im).convert("RGB"))  # (H, W, 3), a writable copy
    except ApiError:
        raise
    except Image.DecompressionBombError as e:  # PIL's own guard, for formats whose header hides the size
        raise ApiError(413, f"{name}: {e}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        kind = "not an image" if isinstance(e, UnidentifiedImageError) else f"a broken image ({e})"
        raise ApiError(422, f"{name}: {kind}; send a JPEG, PNG, WebP, BMP, GIF or TIFF picture") from None
