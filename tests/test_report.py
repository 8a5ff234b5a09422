"""`lanfer report`: one self-contained HTML file with PNG copies of its figures, opened in headless Chromium."""
import json
import re

import numpy as np
import pytest
from PIL import Image

from browser import headless_chromium
from lanfer.analysis.compare import compare_runs
from lanfer.analysis.report import _pick, write_report
from lanfer.cli import main


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, request):
    from conftest import make_imagefolder, release_if_passed
    from lanfer.train import train
    from test_train import _cfg

    failed = request.session.testsfailed
    tmp = tmp_path_factory.mktemp("report")
    data = make_imagefolder(tmp / "data")
    runs = []
    for name, arch in (("lan", "lan_resnet18"), ("base", "resnet18")):
        train(_cfg(data, **{"model.name": arch, "train.epochs": 2}), out=tmp / name)
        runs.append(tmp / name)
    # an extra evaluation in a subfolder, as lanfer eval --out RUN/pose45 writes it
    m = json.loads((runs[0] / "metrics.json").read_text())
    (runs[0] / "pose45").mkdir()
    (runs[0] / "pose45" / "metrics.json").write_text(json.dumps({**m, "accuracy": 0.5, "n": 10}))
    yield tmp, runs
    release_if_passed(request, tmp, failed)


def test_report_sections_figures_and_cli(two_runs):
    tmp, runs = two_runs
    cmp = compare_runs([runs[0]], [runs[1]], out=tmp / "cmp", n_boot=200, progress=False)
    out = tmp / "rep" / "report.html"
    assert main(["report", *map(str, runs), "--out", str(out), "--compare", str(tmp / "cmp" / "compare.json")]) == 0
    page = out.read_text()
    for heading in ("Metrics", "Training curves", "Confusion matrices", "Accuracy by metadata",
                    "Test faces, correct and wrong", "Guidance map", "Paired comparison"):
        assert f"<h2>{heading}" in page, heading
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    uris = re.findall(r"src='data:image/png;base64,", page)
    pngs = sorted((tmp / "rep" / "report_figures").glob("*.png"))
    assert len(uris) == len(pngs) >= 7  # curves, 2 confusions, subset bars, 2 face grids, guidance
    assert all(Image.open(p).size[0] > 100 for p in pngs)
    # full class names (no cut to 8 characters) and the comparison's numbers
    assert "neutral" in page and f"{100 * cmp['rows'][0]['diff']:+.2f}" in page
    assert "pose45" in page and "50.00 (n=10)" in page


def test_pick_spreads_over_classes_and_views():
    labels = np.array([0] * 50 + [1] * 5 + [2] * 5)
    views = (["L", "R"] * 30)
    picked = _pick(labels, views, pool=12)
    cells = {(labels[i], views[i]) for i in picked}
    assert len(picked) == 12 and len(cells) == 6  # every (class, view) cell before any second image


def test_report_opens_in_headless_chromium(two_runs, tmp_path):
    tmp, runs = two_runs
    out = tmp_path / "report.html"
    write_report(runs, out)
    with headless_chromium() as driver:
        driver.get(out.resolve().as_uri())
        widths = driver.execute_script("return Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)")
        shot = tmp_path / "report.png"
        driver.save_screenshot(str(shot))
    assert len(widths) >= 6 and all(w > 0 for w in widths), widths
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.std() > 10  # not a blank page
