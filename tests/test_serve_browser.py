"""The page of ``lanfer serve`` in a real browser: headless Chromium (tests/browser.py) against a server the test
starts with the ``lanfer serve`` command on 127.0.0.1, with a token: upload, rows, boxes, attention overlays and
their toggle, the CSV, an error message, and the webcam snapshot (the camera replaced by a canvas stream).
Skips with a message where no Chromium starts.

Set ``LANFER_SCREENSHOT_DIR`` to also keep the screenshot there (the README's results/serve/page.png).
"""
from __future__ import annotations

import io
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from browser import headless_chromium

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

TOKEN = "browser-test-token"


@pytest.fixture(scope="module")
def server():
    """`lanfer serve` in a subprocess on a free port, the token from the environment; its URL once healthy."""
    from lanfer.serve.process import serve_in_subprocess

    env = {"LANFER_TOKEN": TOKEN, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with serve_in_subprocess(["--device", "cpu"], env=env) as (url, _):
        yield url


def test_page_uploads_a_photo_and_shows_rows_boxes_and_attention(server, face_api_paths, face_api_counts, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from lanfer.pretrained import find

    side = find().info().input_size  # the attention overlay is the crop the default model sees (160 px)
    photo = next(p for p in face_api_paths if p.name == "sample1.jpg")
    n = face_api_counts["sample1.jpg"]
    with headless_chromium(1400, 1300) as driver:
        driver.get(f"{server}/?token={TOKEN}")  # the token becomes a cookie; the page loads from /
        assert driver.current_url == f"{server}/"
        WebDriverWait(driver, 30).until(lambda d: "classes" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "files").send_keys(str(photo))
        rows = WebDriverWait(driver, 120).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results tbody tr")) >= n
            and d.find_elements(By.CSS_SELECTOR, "#results tbody tr"))
        assert len(rows) == n
        cells = [r.find_elements(By.TAG_NAME, "td") for r in rows]
        assert [c[0].text for c in cells] == ["sample1.jpg"] * n and [c[1].text for c in cells] == ["0", "1", "2"]
        assert all(c[-1].text == "ok" for c in cells)
        assert len(driver.find_elements(By.CSS_SELECTOR, ".photo .box")) == n
        overlays = driver.find_elements(By.CSS_SELECTOR, "img.overlay")
        assert len(overlays) == n
        WebDriverWait(driver, 10).until(lambda d: all(
            d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", o) == side for o in overlays))
        assert all(o.is_displayed() for o in overlays)
        assert len(driver.find_elements(By.CSS_SELECTOR, ".face .bar")) == n * 8
        assert "face" in driver.find_element(By.ID, "status").text
        shot = tmp_path / "page.png"
        driver.save_screenshot(str(shot))
        # the CSV the download button gives: lanfer predict's columns, one row per face
        csv = pd.read_csv(io.StringIO(driver.execute_script("return csvText()")))
        assert len(csv) == n and list(csv.columns[:3]) == ["source", "frame", "face"] and "prob_happiness" in csv
        assert (csv.filter(like="prob_").sum(axis=1) - 1).abs().max() < 1e-5
        # the attention toggle hides the overlays
        driver.find_element(By.ID, "attention").click()
        WebDriverWait(driver, 5).until(ec.invisibility_of_element(overlays[0]))
        assert not any(o.is_displayed() for o in overlays)
        # a non-image gets the server's message on the page
        bad = tmp_path / "notes.png"
        bad.write_text("not a picture")
        driver.find_element(By.ID, "files").send_keys(str(bad))
        WebDriverWait(driver, 30).until(lambda d: "not an image" in d.find_element(By.ID, "status").text)
        assert driver.find_element(By.ID, "status").get_attribute("class") == "error"
        # the webcam path (getUserMedia -> video -> snapshot PNG -> /v1/predict), with the camera replaced by
        # a canvas stream showing the uploaded photo (headless Chromium has no camera)
        driver.execute_script("""
            const photo = document.querySelector('.photo img');
            const canvas = document.createElement('canvas');
            canvas.width = 960; canvas.height = 640;
            const paint = () => canvas.getContext('2d').drawImage(photo, 0, 0, 960, 640);
            paint(); setInterval(paint, 100);
            navigator.mediaDevices.getUserMedia = async () => canvas.captureStream(10);
        """)
        driver.find_element(By.ID, "camera-start").click()
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return document.getElementById('video').videoWidth") == 960)
        driver.find_element(By.ID, "camera-snap").click()
        WebDriverWait(driver, 120).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results tbody tr")) > n)
        webcam = [r.find_elements(By.TAG_NAME, "td")[0].text for r in
                  driver.find_elements(By.CSS_SELECTOR, "#results tbody tr")[n:]]
        assert webcam == ["webcam-1.png"] * n
    assert shot.stat().st_size > 10_000
    keep = os.environ.get("LANFER_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / "page.png")


def test_healthz_needs_no_token_and_the_api_does(server):
    with urllib.request.urlopen(server + "/healthz", timeout=5) as r:
        assert r.status == 200
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + "/v1/models", timeout=5)
    assert e.value.code == 401
    req = urllib.request.Request(server + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200
