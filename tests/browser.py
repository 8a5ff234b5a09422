"""Headless Chromium for the browser tests (report page, web page), or a skip that says why.

Debian's ``chromium`` and ``chromium-driver`` packages are installed by ``.ci/run``; on a machine without them
the tests that need a browser skip with a message instead of failing. The flags keep Chromium from reaching for
the network (this project's machines have none): background networking, component updates and sync are off.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import pytest

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,1000",
)


def _find(*names):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    return None


@contextlib.contextmanager
def headless_chromium(width: int = 1400, height: int = 1000):
    """Yield a selenium WebDriver on headless Chromium; skip the calling test when none can be started."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    binary = os.environ.get("LANFER_CHROMIUM") or _find("chromium", "chromium-browser", "google-chrome")
    driver_bin = os.environ.get("LANFER_CHROMEDRIVER") or _find("chromedriver")
    if not binary or not driver_bin:
        pytest.skip("headless Chromium not available: install Debian's chromium and chromium-driver "
                    "(`apt-get install chromium chromium-driver`, as .ci/run does)")
    profile = tempfile.mkdtemp(prefix="lanfer-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for f in CHROMIUM_FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--window-size={width},{height}")
    opts.add_argument(f"--user-data-dir={profile}")
    try:
        driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    except Exception as e:  # a browser that is present but cannot start is an environment problem, not a bug
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"headless Chromium did not start ({type(e).__name__}: {str(e).splitlines()[0]})")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
