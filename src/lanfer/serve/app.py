"""The HTTP app of ``lanfer serve``: the JSON API, the page at ``/``, the token check, and :func:`run_server`.

Routes (``/docs`` describes them from ``/openapi.json``):

* ``POST /v1/predict`` (multipart files named ``files``; ``?attention=true`` adds each face's F_m map and a PNG
  of its crop under the map, ``?annotated=true`` an annotated PNG per picture) -> ``rows`` with the columns of
  ``lanfer predict``'s table, one per face or per picture without a face, and ``images`` with a status each;
  ``?stream=ID`` (one picture, the page's webcam mode) makes the picture the next frame of stream ``ID``: its
  faces get the ``track_id`` of the same face in the stream's previous frames and probabilities smoothed over
  them (``?smooth=F``, default ``lanfer.predict.SMOOTH``), as ``lanfer predict`` does on a video
  (:mod:`lanfer.serve.streams`);
* ``GET /v1/models``: the served model's record (:class:`lanfer.info.ModelInfo`) and its ``operating_point``
  (the temperature and the prior tau the probabilities are computed at, :mod:`lanfer.calibration`);
* ``GET /healthz``: liveness and queue state, the one route that never needs the token;
* ``GET /``: the page (``static/``), ``GET /docs``: the API reference, rendered by lanfer's own page.

A request is decoded and its faces detected on a thread pool (``detect_workers`` threads), then its crops join
the :class:`~lanfer.serve.batcher.Batcher`, which classifies crops of many requests in one model call.
"""
# No `from __future__ import annotations`: FastAPI reads the route signatures (Request, bool) at runtime.
import asyncio
import base64
import hmac
import io
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..predict import SMOOTH, STATUS_NO_FACE, STATUS_OK, FaceResult, Predictor, annotate, detector_for, \
    heat_overlay, table_row
from .batcher import Batcher, QueueFull
from .limits import ApiError, ServeConfig, decode_image
from .streams import Streams
from .uploads import read_uploads

STATIC = Path(__file__).parent / "static"
COOKIE = "lanfer_token"
# The documented answers of POST /v1/predict besides 200 (also shown on /docs).
ERRORS = {
    401: "no token, or a wrong one (when the server was started with a token)",
    413: "the upload is over --max-upload-mb, or a picture has more than --max-pixels pixels",
    422: "a file is not a decodable image, the body is not multipart, or it holds no file",
    503: "the server is busy (its queues are full); retry after the Retry-After seconds",
    504: "the request took longer than --timeout seconds",
}


class Service:
    """The model behind the routes: the predictor, the detection threads, the batcher and admission control."""

    def __init__(self, predictor: Predictor, config: ServeConfig, name: str):
        self.predictor, self.config, self.name = predictor, config, name
        if predictor.detector is None:  # built here, once, not by two detection threads at once
            raise ValueError("lanfer serve needs a Predictor with a face detector (detector='blazeface' or 'mtcnn')")
        self.columns = predictor.columns()
        self.detect_pool = ThreadPoolExecutor(config.detect_workers, thread_name_prefix="lanfer-detect")
        self.batcher: Batcher[np.ndarray, tuple] = Batcher(self._classify, config.max_batch,
                                                           config.max_wait_ms / 1000, config.max_queue_faces)
        self.pending = 0
        self.served = {"requests": 0, "images": 0, "faces": 0, "rejected_busy": 0}
        self.streams = Streams()

    def _classify(self, crops: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        probs, att = self.predictor.classify(crops)  # (B, K), (B, h, w) or None
        return [(probs[i], None if att is None else att[i]) for i in range(len(crops))]

    def _decode_and_detect(self, uploads, keep_images: bool) -> tuple[list, list, list[list[FaceResult]]]:
        """Decode and detect one picture at a time, so a request holds one decoded picture (plus its face crops)
        at once, not all of them; pictures are kept only when an annotated PNG will be drawn."""
        size, crop = self.predictor.image_size, self.predictor.crop
        kept, shapes, faces = [], [], []
        for u in uploads:
            image = decode_image(bytes(u.data), u.filename, self.config.max_pixels)  # (H, W, 3) uint8
            u.data = bytearray()  # the encoded bytes are not needed once decoded
            found = self.predictor.detector.detect([image])[0]
            faces.append([FaceResult.from_detection(image, f, size, crop) for f in found])
            shapes.append(image.shape[:2])
            kept.append(image if keep_images else None)
        return kept, shapes, faces

    async def predict(self, request, attention: bool, annotated: bool, stream: str | None = None,
                      smooth: float = SMOOTH) -> dict[str, Any]:
        start = time.perf_counter()
        live = self.streams.get(stream, smooth) if stream is not None else None  # a bad id or smooth: 422 now
        uploads = await read_uploads(request.headers.get("content-type"), request.headers.get("content-length"),
                                     request.stream(), self.config.max_upload_bytes, self.config.max_files,
                                     discard_bytes=self.config.max_discard_bytes,
                                     expect_continue=request.headers.get("expect", "").lower() == "100-continue")
        if live is not None and len(uploads) != 1:
            raise ApiError(422, f"a stream takes one picture per request (its next frame), got {len(uploads)}")
        names = _unique([u.filename for u in uploads])
        loop = asyncio.get_running_loop()
        images, shapes, faces = await loop.run_in_executor(self.detect_pool, self._decode_and_detect, uploads,
                                                           annotated)
        t_detect = time.perf_counter()
        flat = [f for fs in faces for f in fs]
        try:
            results = await self.batcher.submit([f.crop for f in flat])
        except QueueFull as e:
            self.served["rejected_busy"] += 1
            raise ApiError(503, f"server busy: {e}") from None
        t_classify = time.perf_counter()
        for f, (p, a) in zip(flat, results):
            f.set_prediction(p, self.predictor.classes, a)
        if live is not None:  # no await from here to the answer: the stream's frames update it one at a time
            live.tracking.update(faces[0])
            live.tracking.smooth(faces[0], live.step, self.predictor.classes)
            live.step += 1
        k = len(self.predictor.classes)
        rows, infos = [], []
        for name, (height, width), fs in zip(names, shapes, faces):
            status = STATUS_OK if fs else STATUS_NO_FACE
            if not fs:
                rows.append(self._row(table_row(name, 0, None, None, status, k)))
            for i, f in enumerate(fs):
                row = self._row(table_row(name, 0, i, f, status, k))
                if attention:
                    row["attention"] = None if f.attention is None else np.round(f.attention.astype(float), 4).tolist()
                    row["attention_png"] = None if f.attention is None else _png(
                        np.uint8(np.clip(heat_overlay(f.crop / 255.0, f.attention), 0, 1) * 255 + 0.5))
                rows.append(row)
            infos.append({"source": name, "width": width, "height": height, "faces": len(fs), "status": status})
        if annotated:
            pngs = await loop.run_in_executor(self.detect_pool, lambda: [
                _png(annotate(im, fs, self.predictor.classes)) for im, fs in zip(images, faces)])
            for info, png in zip(infos, pngs):
                info["annotated_png"] = png
        self.served["requests"] += 1
        self.served["images"] += len(shapes)
        self.served["faces"] += len(flat)
        end = time.perf_counter()
        return {"model": self.name, "classes": list(self.predictor.classes), "columns": self.columns,
                "images": infos, "rows": rows,
                "timing_ms": {"upload_decode_detect": round(1000 * (t_detect - start), 1),
                              "classify": round(1000 * (t_classify - t_detect), 1),
                              "total": round(1000 * (end - start), 1)}}

    def _row(self, values: list) -> dict[str, Any]:
        return {c: _json_value(v) for c, v in zip(self.columns, values)}


def _json_value(v: Any) -> Any:
    """A table cell as JSON: NaN and missing values are null, numpy scalars plain numbers."""
    if v is None:
        return None
    if isinstance(v, (float, np.floating)):
        return None if math.isnan(v) else float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _png(image: np.ndarray) -> str:
    """(H, W, 3) uint8 -> a ``data:image/png;base64,...`` URL."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _unique(names: list[str]) -> list[str]:
    """File names made unique within a request (``a.jpg``, ``a.jpg (2)``), so rows map to their picture."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return out


def create_app(predictor: Predictor, config: ServeConfig | None = None, name: str | None = None):
    """The FastAPI app serving ``predictor`` under ``config`` (defaults: :class:`ServeConfig`'s).

    ``name`` is what ``/v1/models`` and the page call the model (default: its architecture)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
    from fastapi.staticfiles import StaticFiles

    from .. import __version__

    config = config or ServeConfig()
    service = Service(predictor, config, name or predictor.info.arch)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await service.batcher.close()
        service.detect_pool.shutdown(wait=False)

    # FastAPI's own /docs and /redoc load their scripts from a CDN; /docs here is lanfer's page over /openapi.json.
    app = FastAPI(title="lanfer", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Facial expressions of the faces in pictures (the Local Attention Network). "
                              "Every route but /healthz needs `Authorization: Bearer TOKEN` when the server has "
                              "a token.")
    app.state.service = service

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        headers = {"Retry-After": "1"} if e.status == 503 else {}
        if e.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse({"detail": e.message}, status_code=e.status, headers=headers)

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if config.token is None or request.url.path == "/healthz":
            return await call_next(request)
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else request.cookies.get(COOKIE)
        in_url = request.query_params.get("token") if request.url.path == "/" else None
        if in_url is not None:
            if not hmac.compare_digest(in_url.encode(), config.token.encode()):
                return await api_error(request, ApiError(401, "wrong token"))
            # A browser cannot send a header when it opens a link: the token in the URL becomes a cookie that
            # only this site's own requests carry (SameSite=Strict), and the URL loses it.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, config.token, httponly=True, samesite="strict")
            return response
        if given is None:
            return await api_error(request, ApiError(401, "this server needs a token: send the header "
                                                          "'Authorization: Bearer TOKEN' (or open /?token=TOKEN "
                                                          "in a browser)"))
        if not hmac.compare_digest(given.encode(), config.token.encode()):
            return await api_error(request, ApiError(401, "wrong token"))
        return await call_next(request)

    @app.get("/healthz", summary="Liveness and queue state (never needs the token)")
    async def healthz():
        return {"status": "ok", "model": service.name, "pending_requests": service.pending,
                "streams": len(service.streams),
                "max_pending": config.max_pending, "batcher": service.batcher.stats(), "served": service.served}

    @app.get("/v1/models", summary="The served model's record: classes, preprocessing, training data, numbers")
    async def models():
        return {"models": [{"name": service.name, "backend": predictor.backend, "detector": predictor.detector_name,
                            "min_face_size": getattr(predictor.detector, "min_face_size", None),
                            "columns": service.columns, **predictor.info.to_json(),
                            "operating_point": {"temperature": predictor.info.temperature,
                                                "prior_tau": predictor.prior_tau}}]}

    body = {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["files"],
        "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}}}}}}

    @app.post("/v1/predict", summary="Expressions of every face in one or more pictures",
              responses={s: {"description": d} for s, d in ERRORS.items()}, openapi_extra={"requestBody": body})
    async def predict(request: Request, attention: bool = False, annotated: bool = False, stream: str | None = None,
                      smooth: float = SMOOTH):
        """Multipart file fields named `files` (one per picture). Answers `rows`: one per face, or one with
        status `no face` per picture without one, with the columns of `lanfer predict`'s table (boxes,
        score, yaw/pitch/roll, landmarks, label, `prob_<class>`, status); `images`: size, face count and
        status per picture. `attention=true` adds each face's attention map (`attention`, h x w) and
        `attention_png` (its crop under the map); `annotated=true` adds `annotated_png` per picture.
        `stream=ID` (1-64 letters, digits, `-`, `_`; one picture per request, in frame order): the picture is the
        next frame of the webcam stream `ID`, whose faces get a `track_id` that follows each face over the
        stream's frames and probabilities smoothed over them, `smooth` x the previous + (1 - `smooth`) x this
        frame's (default 0.5; 0: off). The server keeps the latest 16 streams, each for 2 minutes idle."""
        if service.pending >= config.max_pending:
            service.served["rejected_busy"] += 1
            raise ApiError(503, f"server busy: {service.pending} requests in progress (limit {config.max_pending}); "
                                "retry in a moment")
        service.pending += 1
        try:
            return await asyncio.wait_for(service.predict(request, attention, annotated, stream, smooth),
                                          config.timeout_s)
        except asyncio.TimeoutError:
            raise ApiError(504, f"the request took longer than this server's limit of {config.timeout_s:g} s; "
                                "send fewer or smaller pictures") from None
        finally:
            service.pending -= 1

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return FileResponse(STATIC / "docs.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def run_server(model: str | None = None, config: ServeConfig | None = None, device: str = "auto",
               prior_tau: float | None = None) -> None:
    """``lanfer serve``: load ``model`` (a shipped name, a model file, an ONNX file; None: the default shipped
    model) and serve it with uvicorn until Ctrl-C; ``prior_tau`` picks the operating point (None: the model's
    own, see :class:`lanfer.predict.Predictor`)."""
    import uvicorn

    from ..pretrained import find, is_shipped_name, resolve

    config = config or ServeConfig()
    _check_port_free(config.host, config.port)  # before the model loads, and before the URL is printed
    path = resolve(model)
    predictor = Predictor.from_checkpoint(path, device=device, prior_tau=prior_tau,
                                          detector=detector_for(config.detector, device, config.min_face_size))
    name = find(model).name if model is None or is_shipped_name(model) else Path(path).stem
    app = create_app(predictor, config, name=name)
    url = f"http://{config.host}:{config.port}/"
    print(f"lanfer serve: {name} on {url}" + (f"?token={config.token}" if config.token else "")
          + f"  (API reference: {url}docs; Ctrl-C stops)")
    if config.host not in ("127.0.0.1", "localhost", "::1") and config.token is None:
        print(f"lanfer serve: warning: listening on {config.host} without a token: anyone who can reach this "
              "machine can use the model (pass --token or set LANFER_TOKEN)")
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)


def _check_port_free(host: str, port: int) -> None:
    import socket

    from ..config import ConfigError

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        why = e.strerror or e
        raise ConfigError(f"cannot listen on {host}:{port} ({why}); pick another --port or --host") from None
