"""``lanfer serve``: the HTTP API through FastAPI's test client, and the batcher on its own.

References: the face-api demo photo sample1 (3 faces, counted by a person; conftest.py) and the library's own
``Predictor.predict`` on the same pixels for the rows; PNG files built by hand for the limits; a recording
batch function for the batcher.
"""
from __future__ import annotations

import asyncio
import base64
import io
import re
import socket
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from lanfer.predict import Predictor  # noqa: E402
from lanfer.serve import ApiError, Batcher, QueueFull, ServeConfig, create_app, decode_image  # noqa: E402
from lanfer.serve.uploads import read_uploads  # noqa: E402

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def predictor():
    return Predictor.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, ServeConfig(token=TOKEN, max_upload_bytes=3 * 2**20,
                                                      max_pixels=4_000_000), name="shipped")) as c:
        yield c


@pytest.fixture(scope="module")
def sample1(face_api_paths):
    path = next(p for p in face_api_paths if p.name == "sample1.jpg")
    return path.read_bytes()


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _post(client, files, query="", headers=AUTH):
    parts = [("files", (n, data, "application/octet-stream")) for n, data in files]
    return client.post(f"/v1/predict{query}", files=parts, headers=headers)


# -- the API ---------------------------------------------------------------------------------------------


def test_photo_gives_one_row_per_face_matching_the_library(client, predictor, sample1, face_api_counts):
    r = _post(client, [("sample1.jpg", sample1)], "?attention=true")
    assert r.status_code == 200, r.text
    body = r.json()
    classes = body["classes"]
    assert body["columns"] == predictor.columns()  # the columns of `lanfer predict`'s table
    rows = body["rows"]
    assert len(rows) == face_api_counts["sample1.jpg"] == 3
    assert body["images"] == [{"source": "sample1.jpg", "width": 1920, "height": 1280, "faces": 3, "status": "ok"}]
    probs = np.array([[row[f"prob_{c}"] for c in classes] for row in rows])  # (3, K)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert [row["label"] for row in rows] == [classes[k] for k in probs.argmax(1)]
    assert [row["face"] for row in rows] == [0, 1, 2] and {row["status"] for row in rows} == {"ok"}
    # The same pixels through the library's predict(): same faces, boxes and probabilities.
    table = predictor.predict(np.asarray(Image.open(io.BytesIO(sample1)).convert("RGB")), progress=False)
    assert len(table) == 3
    np.testing.assert_allclose(table[["x1", "y1", "x2", "y2", "yaw"]].to_numpy(float),
                               [[row[c] for c in ("x1", "y1", "x2", "y2", "yaw")] for row in rows], atol=1e-3)
    np.testing.assert_allclose(table[[f"prob_{c}" for c in classes]].to_numpy(float), probs, atol=1e-4)
    # attention=true: each face's F_m and a PNG of its crop under the map
    for row in rows:
        att = np.array(row["attention"])
        assert att.ndim == 2 and att.min() >= 0 and att.max() <= 1
        png = Image.open(io.BytesIO(base64.b64decode(row["attention_png"].split(",", 1)[1])))
        assert png.format == "PNG" and png.size == (predictor.image_size,) * 2


def test_annotated_png_and_a_picture_without_faces(client, predictor, sample1):
    # 1.7 MB of noise: over Starlette's 1 MB spooling threshold, so a disk-spooling parser would write it out
    noise = _png(np.random.default_rng(0).integers(0, 256, (800, 720, 3), dtype=np.uint8))
    assert len(noise) > 2**20
    r = _post(client, [("noise.png", noise), ("sample1.jpg", sample1), ("sample1.jpg", sample1)], "?annotated=true")
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(im["source"], im["status"], im["faces"]) for im in body["images"]] == [
        ("noise.png", "no face", 0), ("sample1.jpg", "ok", 3), ("sample1.jpg (2)", "ok", 3)]
    none_row = body["rows"][0]
    assert none_row["source"] == "noise.png" and none_row["status"] == "no face"
    assert none_row["face"] is None and none_row["label"] is None and none_row["prob_neutral"] is None
    assert len(body["rows"]) == 7
    annotated = Image.open(io.BytesIO(base64.b64decode(body["images"][1]["annotated_png"].split(",", 1)[1])))
    assert annotated.size == (1920, 1280)


def test_uploads_never_touch_disk(client, monkeypatch):
    """Starlette's form parser spools files over 1 MB to a temporary file; the server must not use it."""
    import starlette.formparsers

    def refuse(*a, **k):
        raise AssertionError("an upload was spooled to a temporary file")

    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", refuse)
    noise = _png(np.random.default_rng(1).integers(0, 256, (800, 720, 3), dtype=np.uint8))
    r = _post(client, [("noise.png", noise)])
    assert r.status_code == 200 and r.json()["images"][0]["status"] == "no face"


def test_bad_inputs_get_their_documented_answers_and_the_server_keeps_serving(client, sample1):
    r = _post(client, [("notes.txt", b"this is not a picture")])
    assert r.status_code == 422 and r.json()["detail"] == \
        "notes.txt: not an image; send a JPEG, PNG, WebP, BMP, GIF or TIFF picture"
    r = _post(client, [("cut.jpg", sample1[: len(sample1) // 3])])  # a JPEG cut short: a broken image
    assert r.status_code == 422 and r.json()["detail"].startswith("cut.jpg: a broken image")
    r = _post(client, [("big.bin", b"\0" * (3 * 2**20 + 1))])
    assert r.status_code == 413 and "over this server's limit of 3145728 bytes" in r.json()["detail"]
    r = _post(client, [("wide.png", _png(np.zeros((10, 4_000_001 // 10 + 1, 3), np.uint8)))])
    assert r.status_code == 413 and "pixels is over this server's limit of 4000000 pixels" in r.json()["detail"]
    r = client.post("/v1/predict", files={"comment": (None, "no file")}, headers=AUTH)  # a field, no file
    assert r.status_code == 422 and "holds no file" in r.json()["detail"]
    r = client.post("/v1/predict", content=b"raw", headers={**AUTH, "Content-Type": "image/jpeg"})
    assert r.status_code == 422 and "multipart/form-data" in r.json()["detail"]
    # the token: missing, wrong, and /healthz without one
    r = _post(client, [("sample1.jpg", sample1)], headers={})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "needs a token" in r.json()["detail"]
    r = _post(client, [("sample1.jpg", sample1)], headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json()["detail"] == "wrong token"
    for path in ("/v1/models", "/", "/docs", "/openapi.json", "/static/app.js"):
        assert client.get(path).status_code == 401, path
    assert client.get("/healthz").status_code == 200
    # ... and it keeps serving
    r = _post(client, [("sample1.jpg", sample1)])
    assert r.status_code == 200 and len(r.json()["rows"]) == 3
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["pending_requests"] == 0 and health["batcher"]["waiting"] == 0


def test_models_page_docs_and_the_browser_token_cookie(predictor):
    with TestClient(create_app(predictor, ServeConfig(token=TOKEN), name="shipped")) as c:
        r = c.get(f"/?token={TOKEN}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
        assert c.get("/?token=wrong", follow_redirects=False).status_code == 401
        # the client now holds the cookie, as a browser would
        page = c.get("/")
        assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
        for text in (page.text, c.get("/static/app.js").text, c.get("/static/style.css").text, c.get("/docs").text):
            # no CDN: no absolute or protocol-relative URL anywhere
            assert "http://" not in text and "https://" not in text and not re.search(r"[\"'(]//", text)
        record = c.get("/v1/models").json()["models"][0]
        assert record["name"] == "shipped" and record["classes"] == predictor.classes
        assert record["input_size"] == predictor.image_size and record["color"] == predictor.info.color
        assert record["metrics"] == predictor.info.metrics and record["crop"]["margin"] == predictor.crop.margin
        assert record["detector"] == "blazeface"  # the default detector
        assert record["min_face_size"] == predictor.detector.min_face_size == 0  # BlazeFace's default: keep all
        spec = c.get("/openapi.json").json()
        assert {"/v1/predict", "/v1/models", "/healthz"} <= set(spec["paths"])
        assert {"401", "413", "422", "503", "504"} <= set(spec["paths"]["/v1/predict"]["post"]["responses"])
        docs = c.get("/docs").text
        assert 'fetch("/openapi.json")' in docs and "swagger-ui-bundle" not in docs


def test_busy_and_timeout(predictor, sample1):
    with TestClient(create_app(predictor, ServeConfig(timeout_s=0.05))) as c:
        r = _post(c, [("sample1.jpg", sample1)], headers={})
        assert r.status_code == 504 and "longer than this server's limit of 0.05 s" in r.json()["detail"]
        assert c.get("/healthz").json()["pending_requests"] == 0
    app = create_app(predictor, ServeConfig())
    with TestClient(app) as c:
        async def full(items):
            raise QueueFull("256 faces are waiting")

        app.state.service.batcher.submit = full
        r = _post(c, [("sample1.jpg", sample1)], headers={})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["detail"] == "server busy: 256 faces are waiting"
        assert c.get("/healthz").json()["served"]["rejected_busy"] == 1


def test_faces_of_concurrent_requests_share_one_model_call(predictor, sample1):
    httpx = pytest.importorskip("httpx")
    small = io.BytesIO()
    Image.open(io.BytesIO(sample1)).resize((960, 640)).save(small, format="JPEG", quality=92)
    app = create_app(predictor, ServeConfig(max_batch=9, max_wait_ms=20_000, detect_workers=3))

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            rs = await asyncio.gather(*[c.post("/v1/predict", files={"files": (f"s{i}.jpg", small.getvalue())})
                                        for i in range(3)])
        await app.state.service.batcher.close()
        return rs

    rs = asyncio.run(main())
    assert [r.status_code for r in rs] == [200] * 3
    assert [len(r.json()["rows"]) for r in rs] == [3, 3, 3]
    # concurrent detection threads and a shared model call give each request what it gets alone
    alone = predictor.predict(np.asarray(Image.open(small).convert("RGB")), progress=False)
    for r in rs:
        got = np.array([[row[f"prob_{c}"] for c in predictor.classes] for row in r.json()["rows"]])
        np.testing.assert_allclose(got, alone[[f"prob_{c}" for c in predictor.classes]].to_numpy(float), atol=1e-4)
    stats = app.state.service.batcher.stats()
    assert stats["batches"] == 1 and stats["items"] == 9  # the 9 faces of 3 requests in one model call


def _png_claiming(width: int, height: int) -> bytes:
    """A 4x4 PNG whose header (IHDR, with its CRC fixed) claims ``width`` x ``height`` pixels."""
    small = _png(np.zeros((4, 4, 3), np.uint8))
    ihdr = struct.pack(">II", width, height) + small[24:29]
    return small[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + small[33:]


def test_decode_checks_pixels_before_decoding():
    """Tiny files whose headers claim huge pictures are refused from the header: decoding would fail with 422."""
    with pytest.raises(ApiError) as e:
        decode_image(_png_claiming(15_000, 10_000), "big.png", max_pixels=40_000_000)
    assert e.value.status == 413 and e.value.message.startswith(
        "big.png: 15000x10000 = 150000000 pixels is over this server's limit of 40000000 pixels")
    with pytest.raises(ApiError) as e:  # so large that PIL's own decompression-bomb guard refuses to open it
        decode_image(_png_claiming(100_000, 100_000), "bomb.png", max_pixels=40_000_000)
    assert e.value.status == 413 and "10000000000 pixels" in e.value.message
    with pytest.raises(ApiError) as e:  # within the limit, the broken pixel data is found by decoding
        decode_image(_png_claiming(10, 10), "small.png", max_pixels=40_000_000)
    assert e.value.status == 422
    ok = decode_image(_png(np.full((3, 5, 3), 7, np.uint8)), "ok.png", max_pixels=15)
    assert ok.shape == (3, 5, 3) and (ok == 7).all()


def test_upload_limit_counts_streamed_bytes_without_content_length():
    boundary = b"xyz"
    body = (b"--xyz\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\n\r\n" + b"\1" * 5000
            + b"\r\n--xyz--\r\n")
    consumed = []

    async def stream():
        for i in range(0, len(body), 1000):
            consumed.append(i)
            yield body[i:i + 1000]

    with pytest.raises(ApiError) as e:
        asyncio.run(read_uploads("multipart/form-data; boundary=xyz", None, stream(), max_bytes=2500, max_files=4))
    assert e.value.status == 413 and len(consumed) == 3  # stopped at the chunk that crossed the limit
    # with a discard bound, the rest of the body is read and dropped before the 413 (the lingering close), up
    # to that bound: 6 chunks in all, the limit crossed in the 3rd
    for bound, read in ((10_000, 6), (1500, 5)):
        consumed.clear()
        with pytest.raises(ApiError) as e:
            asyncio.run(read_uploads("multipart/form-data; boundary=xyz", None, stream(), max_bytes=2500,
                                     max_files=4, discard_bytes=bound))
        assert e.value.status == 413 and len(consumed) == read, bound
    files = asyncio.run(read_uploads(f"multipart/form-data; boundary={boundary.decode()}", str(len(body)),
                                     _chunks(body), max_bytes=len(body), max_files=4))
    assert [(f.field, f.filename, bytes(f.data)) for f in files] == [("files", "a.png", b"\1" * 5000)]


async def _chunks(body: bytes):
    for i in range(0, len(body), 333):
        yield body[i:i + 333]


# -- the batcher -----------------------------------------------------------------------------------------


def _run(coro):
    return asyncio.run(coro)


def test_batcher_groups_concurrent_submissions_up_to_max_batch():
    sizes = []

    def double(xs):
        sizes.append(len(xs))
        time.sleep(0.02)
        return [2 * x for x in xs]

    async def main():
        b = Batcher(double, max_batch=4, max_wait_s=0.5, max_queue=16)
        results = await asyncio.gather(*[b.submit([i]) for i in range(10)], b.submit([100, 101]))
        await b.close()
        return results, b

    results, b = _run(main())
    assert results == [[2 * i] for i in range(10)] + [[200, 202]]
    assert sizes == [4, 4, 4] and b.batches == 3 and b.items == 12


def test_batcher_waits_at_most_max_wait_for_a_lone_item():
    async def main():
        b = Batcher(lambda xs: xs, max_batch=8, max_wait_s=0.2, max_queue=8)
        t = time.perf_counter()
        out = await b.submit(["a"])
        waited = time.perf_counter() - t
        await b.close()
        return out, waited, b.recent_sizes

    out, waited, sizes = _run(main())
    assert out == ["a"] and list(sizes) == [1] and 0.18 <= waited < 2.0


def test_batcher_queue_full_answers_at_once_and_recovers():
    started, release = threading.Event(), threading.Event()

    def blocked(xs):
        started.set()
        release.wait(10)
        return xs

    async def main():
        b = Batcher(blocked, max_batch=2, max_wait_s=0.0, max_queue=4)
        first = asyncio.ensure_future(b.submit([0, 1]))
        while not started.is_set():  # the worker has taken the first batch into the (blocked) model
            await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(b.submit([2, 3, 4, 5]))
        await asyncio.sleep(0.05)
        assert b.waiting == 4
        with pytest.raises(QueueFull, match="4 faces are waiting for the model and the queue holds 4"):
            await b.submit([6])
        assert b.waiting == 4  # a refused submission queues nothing
        release.set()
        out = await asyncio.gather(first, queued)
        after = await b.submit([7])  # room again
        await b.close()
        return out, after

    out, after = _run(main())
    assert out == [[0, 1], [2, 3, 4, 5]] and after == [7]


def test_batcher_errors_reach_their_submitters_and_cancelled_items_are_skipped():
    seen = []

    def fn(xs):
        seen.extend(xs)
        if "bad" in xs:
            raise RuntimeError("model failed")
        return xs

    async def main():
        b = Batcher(fn, max_batch=4, max_wait_s=0.0, max_queue=8)
        with pytest.raises(RuntimeError, match="model failed"):
            await b.submit(["bad"])
        b.max_wait_s = 0.3  # the next lone item waits: time to give up on it
        gone = asyncio.ensure_future(b.submit(["gone"]))
        await asyncio.sleep(0.05)
        gone.cancel()
        out = await b.submit(["ok"])
        await b.close()
        return out

    assert _run(main()) == ["ok"] and seen == ["bad", "ok"]


def test_config_rejects_nonsense_and_reads_the_token_from_the_environment(monkeypatch):
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        ServeConfig(max_batch=0)
    with pytest.raises(ValueError, match="must hold at least one batch"):
        ServeConfig(max_batch=64, max_queue_faces=8)
    with pytest.raises(ValueError, match="min_face_size must be >= 12"):
        ServeConfig(min_face_size=8)
    with pytest.raises(ValueError, match="max_discard_bytes must be >= 0, got -1"):
        ServeConfig(max_discard_bytes=-1)
    monkeypatch.setenv("LANFER_TOKEN", "from-env")
    assert ServeConfig().token == "from-env" and ServeConfig(token="flag").token == "flag"
    assert ServeConfig().host == "127.0.0.1"


def test_cli_serve_help_and_bad_flags(capsys):
    from lanfer.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "--token" in capsys.readouterr().out
    assert main(["serve", "--max-batch", "0"]) == 2
    assert "lanfer serve: error: serve: max_batch must be >= 1, got 0" in capsys.readouterr().err
    with socket.socket() as busy:  # a port in use: said before any model loads
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", "--port", str(busy.getsockname()[1])]) == 2
    assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err


def test_serve_min_face_size_reaches_the_detector(monkeypatch, capsys):
    """--min-face-size: the served predictor's MTCNN searches from that size, and /v1/models says so."""
    import uvicorn

    from lanfer.cli import main

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    with socket.socket() as s:  # a free port (run_server checks it before loading the model)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["serve", "--port", str(port), "--min-face-size", "48", "--device", "cpu", "--max-discard-mb", "2"]) \
        in (0, None)
    with TestClient(served["app"]) as c:
        assert c.get("/v1/models").json()["models"][0]["min_face_size"] == 48
    assert served["app"].state.service.config.max_discard_bytes == 2 * 2**20
    with pytest.raises(SystemExit):
        main(["serve", "--min-face-size", "8"])
    assert "below MTCNN's smallest window" in capsys.readouterr().err


def test_serve_detector_flag(monkeypatch, capsys):
    """--detector mtcnn serves with MTCNN (BlazeFace is the default); an unknown name is a usage error that
    lists the detectors, and ServeConfig refuses it too."""
    pytest.importorskip("facenet_pytorch")
    import uvicorn

    from lanfer.cli import main

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.update(app=app, **kw))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["serve", "--port", str(port), "--detector", "mtcnn", "--min-face-size", "40", "--device", "cpu"]) \
        in (0, None)
    with TestClient(served["app"]) as c:
        record = c.get("/v1/models").json()["models"][0]
    assert record["detector"] == "MTCNNDetector" and record["min_face_size"] == 40
    with pytest.raises(SystemExit) as e:
        main(["serve", "--detector", "retinaface"])
    assert e.value.code == 2 and "choose one of blazeface, mtcnn" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown face detector 'retinaface'; choose one of blazeface, mtcnn"):
        ServeConfig(detector="retinaface")



# -- a real server: clients that send the whole body before reading ---------------------------------------


@pytest.fixture(scope="module")
def live_server(predictor):
    """``create_app`` under a real uvicorn on a free port of 127.0.0.1, in a thread of this process (the
    connection handling is uvicorn's, which FastAPI's test client bypasses). Yields ``(url, config)``."""
    import uvicorn

    from lanfer.serve.process import free_port

    config = ServeConfig(max_upload_bytes=2**20, max_discard_bytes=16 * 2**20)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(predictor, config), host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", config
    server.should_exit = True
    thread.join(10)


def _multipart(size: int, boundary: str = "lanfer-test-boundary") -> bytes:
    """A multipart body holding one file of ``size`` zero bytes."""
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n")
    return head.encode() + b"\0" * size + f"\r\n--{boundary}--\r\n".encode()


@pytest.mark.parametrize("length", ["declared", "chunked"])
def test_oversize_upload_is_a_413_for_a_client_that_sends_everything_first(live_server, length):
    """urllib sends the whole body before it reads the answer: a server that answered and closed at once left
    unread bytes behind, the kernel reset the connection, and urllib saw ``Connection reset by peer`` instead
    of the 413. The rest of the body (up to max_discard_bytes) is now read and dropped first. Both ways of
    announcing a body: its Content-Length (refused before a byte is read) and chunked (refused mid-stream)."""
    import urllib.error
    import urllib.request

    url, config = live_server
    body = _multipart(6 * 2**20)  # 6 MB: over the 1 MB limit, within the 16 MB discarded after it
    for _ in range(3):  # a reset depends on timing: one lucky answer would prove little
        # bytes go out with their Content-Length; an iterable without one goes out chunked
        data = body if length == "declared" else (body[i:i + 65536] for i in range(0, len(body), 65536))
        req = urllib.request.Request(f"{url}/v1/predict", data=data, method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=lanfer-test-boundary"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=60)
        assert e.value.code == 413
        assert f"over this server's limit of {config.max_upload_bytes} bytes" in e.value.read().decode()
    with urllib.request.urlopen(f"{url}/healthz", timeout=10) as r:  # and it keeps serving
        assert r.status == 200


def test_oversize_upload_announced_with_expect_100_continue_is_refused_before_its_body(live_server):
    """curl asks ``Expect: 100-continue`` for bodies over 1 MB and waits: an over-limit Content-Length is
    answered at once, without ``100 Continue``, and the server reads nothing it would throw away."""
    url, config = live_server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(f"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
                  f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {10 * 2**30}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = s.recv(65536)
            assert chunk, f"connection closed after {answer!r}"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]  # no "HTTP/1.1 100 Continue" before it
