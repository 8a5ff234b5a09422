"""The webcam live mode of ``lanfer serve``'s page in a real browser: headless Chromium (tests/browser.py) against
a server started with the ``lanfer serve`` command, the camera replaced by a canvas stream that shows the
face-api demo photo sample1 (3 faces, counted by a person) moving a little; the page posts frame after frame
to ``/v1/predict?stream=ID`` and draws the tracked faces' boxes and labels over the video. Skips with a
message where no Chromium starts.

Set ``LANFER_SCREENSHOT_DIR`` to also keep the screenshot there (the README's results/serve/webcam.png).
"""
from __future__ import annotations

import base64
import io
import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from browser import headless_chromium

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

TOKEN = "webcam-test-token"


@pytest.fixture(scope="module")
def server():
    from lanfer.serve.process import serve_in_subprocess

    env = {"LANFER_TOKEN": TOKEN, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with serve_in_subprocess(["--device", "cpu"], env=env) as (url, _):
        yield url


def test_live_mode_draws_tracked_faces_over_the_video(server, face_api_paths, face_api_counts, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = next(p for p in face_api_paths if p.name == "sample1.jpg")
    n = face_api_counts["sample1.jpg"]
    buf = io.BytesIO()
    Image.open(photo).convert("RGB").resize((600, 400)).save(buf, format="JPEG", quality=90)
    data_url = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    with headless_chromium(1400, 1100) as driver:
        driver.get(f"{server}/?token={TOKEN}")
        WebDriverWait(driver, 30).until(lambda d: "classes" in d.find_element(By.ID, "model").text)
        assert not driver.find_element(By.ID, "camera-live").is_enabled()  # no camera yet
        # headless Chromium has no camera: a 640x480 canvas stream of the photo, drifting a few pixels
        driver.execute_script("""
            const img = new Image();
            img.src = arguments[0];
            const canvas = document.createElement('canvas');
            canvas.width = 640; canvas.height = 480;
            let t = 0;
            const paint = () => {
                const ctx = canvas.getContext('2d');
                ctx.fillStyle = '#808080'; ctx.fillRect(0, 0, 640, 480);
                if (img.complete) ctx.drawImage(img, 20 + 6 * Math.sin(t / 5), 40, 600, 400);
                t += 1;
            };
            img.onload = paint; setInterval(paint, 100);
            navigator.mediaDevices.getUserMedia = async () => canvas.captureStream(10);
        """, data_url)
        driver.find_element(By.ID, "camera-start").click()
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.getElementById('video').videoWidth") == 640)
        driver.find_element(By.ID, "camera-live").click()
        WebDriverWait(driver, 180).until(lambda d: d.execute_script("return state.live.frames") >= 4)
        live = driver.execute_script("return state.live")
        # the three people keep tracks 0-2 (a detector may add a short-lived box of its own, e.g. MTCNN on
        # sample1's clothes, which gets a higher id); the page sends one frame at a time, so frames came in order
        ids = sorted(r["track_id"] for r in live["lastRows"])
        assert ids[:n] == list(range(n)), live["lastRows"]
        assert all(r["frame"] == 0 and r["status"] == "ok" for r in live["lastRows"])
        assert "frames/s" in driver.find_element(By.ID, "live-status").text
        # boxes and labels drawn on the overlay: coloured pixels inside each face's box
        coloured = driver.execute_script("""
            const c = document.getElementById('live-overlay');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n += 1;
            return [c.width, c.height, n];
        """)
        assert coloured[:2] == [640, 480] and coloured[2] > 500, coloured
        overlay = driver.find_element(By.ID, "live-overlay")
        video = driver.find_element(By.ID, "video")
        assert overlay.is_displayed() and overlay.size == video.size  # stretched over the video
        shot = tmp_path / "webcam.png"
        driver.find_element(By.ID, "camera").screenshot(str(shot))
        driver.find_element(By.ID, "camera-live").click()  # stop
        frames = driver.execute_script("return state.live.frames")
        assert driver.execute_script("return state.live.on") is False
        assert not overlay.is_displayed()
        time.sleep(2)  # the answer in flight when it stopped is dropped, and no frame is sent after it
        assert driver.execute_script("return state.live.frames") == frames
    assert shot.stat().st_size > 5_000
    keep = os.environ.get("LANFER_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "webcam.png")
