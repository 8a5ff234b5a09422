"""``lanfer serve``'s webcam streams (``POST /v1/predict?stream=ID``) through FastAPI's test client: stable
``track_id``\\ s over frames, probabilities smoothed as the EMA of the unsmoothed stream (computed here by hand),
one picture per frame, bad ids and factors refused, and the bounded table of streams.

References: the face-api demo photo sample1 (3 faces, counted by a person; conftest.py), moved a few pixels
per frame; the same frames posted with ``smooth=0`` for the EMA.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from lanfer.predict import Predictor  # noqa: E402
from lanfer.serve import ServeConfig, create_app  # noqa: E402
from lanfer.serve.streams import Streams  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Predictor.from_pretrained(device="cpu"), ServeConfig(), name="shipped")) as c:
        yield c


@pytest.fixture(scope="module")
def frames(face_api_photos):
    """Four 800 px wide frames of sample1 (3 faces), the picture moving 4 px right per frame, as JPEG bytes."""
    photo = Image.fromarray(face_api_photos["sample1.jpg"]).resize((800, 533))
    out = []
    for i in range(4):
        canvas = Image.new("RGB", (800, 533), (128, 128, 128))
        canvas.paste(photo, (4 * i, 0))
        buf = io.BytesIO()
        canvas.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _post(client, frame, query):
    r = client.post(f"/v1/predict{query}", files=[("files", ("frame.jpg", frame, "image/jpeg"))])
    assert r.status_code == 200, r.text
    return r.json()


def _by_position(rows):
    return sorted((r for r in rows if r["status"] == "ok"), key=lambda r: (r["x1"], r["y1"]))


def test_stream_faces_keep_their_track_ids_and_are_smoothed(client, frames, face_api_counts):
    n = face_api_counts["sample1.jpg"]
    raw = [_post(client, f, "?stream=raw-1&smooth=0") for f in frames]
    smooth = [_post(client, f, "?stream=smooth-1&smooth=0.5") for f in frames]
    classes = raw[0]["classes"]
    assert "track_id" in raw[0]["columns"]
    # the three people keep their tracks over the four frames, left to right (a detector may add a short-lived
    # box, e.g. MTCNN on sample1's clothes at score 0.77: it gets a track of its own, never one of theirs)
    ids = [[r["track_id"] for r in _by_position(body["rows"])] for body in raw]
    everywhere = [t for t in ids[0] if all(t in frame for frame in ids)]
    assert len(everywhere) == n and sorted(everywhere) == list(range(n)), ids
    assert all([t for t in frame if t in everywhere] == everywhere for frame in ids), ids
    # smoothing: the EMA of the unsmoothed stream's probabilities, track by track, computed here
    ema: dict[int, np.ndarray] = {}
    for body_raw, body_sm in zip(raw, smooth):
        for r, s in zip(_by_position(body_raw["rows"]), _by_position(body_sm["rows"])):
            assert r["track_id"] == s["track_id"] and abs(r["x1"] - s["x1"]) < 1e-3
            p = np.array([r[f"prob_{c}"] for c in classes])
            ema[r["track_id"]] = p if r["track_id"] not in ema else 0.5 * ema[r["track_id"]] + 0.5 * p
            got = np.array([s[f"prob_{c}"] for c in classes])
            np.testing.assert_allclose(got, ema[r["track_id"]], atol=1e-5)
            assert s["label"] == classes[int(np.argmax(got))]
    # the same frame without a stream: a photo, no track
    photo = _post(client, frames[0], "")
    assert {r["track_id"] for r in photo["rows"]} == {None} and len(photo["rows"]) == len(raw[0]["rows"])
    assert client.get("/healthz").json()["streams"] == 2


def test_stream_requests_are_checked(client, frames):
    files = [("files", ("a.jpg", frames[0], "image/jpeg")), ("files", ("b.jpg", frames[1], "image/jpeg"))]
    r = client.post("/v1/predict?stream=two", files=files)
    assert r.status_code == 422 and "one picture" in r.json()["detail"]
    for query, words in [("?stream=no%20spaces", "stream id"), ("?stream=ok&smooth=1", "smooth"),
                         ("?stream=" + "x" * 65, "stream id")]:
        r = client.post(f"/v1/predict{query}", files=files[:1])
        assert r.status_code == 422 and words in r.json()["detail"], (query, r.text)
    assert _post(client, frames[0], "?stream=after-errors")["rows"][0]["status"] == "ok"  # still serving


def test_streams_are_bounded_and_least_recently_used_goes_first(monkeypatch):
    streams = Streams(max_streams=2, idle_s=60)
    a = streams.get("a", 0.5)
    a.step = 5
    streams.get("b", 0.5)
    assert streams.get("a", 0.5) is a  # a is now the most recently used
    streams.get("c", 0.5)  # b goes
    assert len(streams) == 2 and streams.dropped == 1 and streams.get("a", 0.5).step == 5
    assert streams.get("b", 0.5).step == 0  # a new stream
    assert streams.get("a", 0.0) is not a  # another smoothing factor is another stream
    import time

    later = time.monotonic() + 61
    monkeypatch.setattr(time, "monotonic", lambda: later)
    streams.get("z", 0.5)  # every other stream idled past idle_s
    assert len(streams) == 1
