"""The app in a real browser: Debian's Chromium driven by Playwright for Python.

Upload a photo, wait for the before/after slider and the rate-distortion
chart, click Share, open the link in a new page and find the same figures.
The server is the one tests/test_app.py starts (``served``). Skipped, saying
why, when /usr/bin/chromium is missing (CI installs it: see .ci/run).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np
import pytest
from PIL import Image

import svdk

CHROMIUM = os.environ.get("SVDK_CHROMIUM", "/usr/bin/chromium")
# Debian's Chromium runs headless as root with these (see ../shared/ENVIRONMENT-NOTES.md).
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
    pytest.skip(
        f"the browser test needs Chromium at {CHROMIUM}: apt-get install -y chromium "
        "(or set SVDK_CHROMIUM to its path)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs pip install playwright")
pytest.importorskip("gradio", reason="the app needs pip install 'svdk[app]'")

from test_app import served  # noqa: E402,F401  (the shared server fixture)

TIMEOUT_MS = 90_000
# Gradio's queue calls pandas APIs that pandas 3 deprecates; nothing to do with the app.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def figures(page) -> dict:
    """What the page shows once a comparison is done: the svdk line and the comparison table."""
    page.wait_for_selector("#slider img", timeout=TIMEOUT_MS)
    page.wait_for_selector("#rd-plot .js-plotly-plot", timeout=TIMEOUT_MS)
    page.wait_for_selector("#spectrum-plot .js-plotly-plot", timeout=TIMEOUT_MS)
    status = page.locator("#status").inner_text()
    table = page.locator("#table").inner_text()
    return {
        "svdk": re.search(r"\d[\d,]* bytes \([\d.]+ bpp\), PSNR [\d.]+ dB, SSIM [\d.]+", status).group(0),
        "table": [cell.strip() for cell in table.splitlines() if cell.strip()],  # one cell a line
        "traces": page.locator("#rd-plot .js-plotly-plot .scatterlayer .trace").count(),
    }


def test_upload_share_and_open_the_link(served, browser, tmp_path):
    url, _ = served
    photo = tmp_path / "photo.png"
    image = svdk.load_image("example:chelsea").color[40:200, 100:340]
    Image.fromarray(np.ascontiguousarray(image)).save(photo)

    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto(url)
    page.wait_for_selector("#input-image input[type=file]", state="attached", timeout=TIMEOUT_MS)
    page.locator("#input-image input[type=file]").set_input_files(str(photo))
    first = figures(page)
    assert first["traces"] >= 4  # svdk, JPEG, WebP and the current point, twice over
    assert {"svdk", "PNG", "JPEG", "same size", "same SSIM"} <= set(first["table"])
    assert "240x160" in page.locator("#status").inner_text()

    page.click("#share")
    box = page.locator("#share-url textarea, #share-url input").first
    page.wait_for_function(
        "() => { const e = document.querySelector('#share-url textarea, #share-url input');"
        " return e && e.value.includes('?share='); }",
        timeout=TIMEOUT_MS,
    )
    link = box.input_value()
    assert re.fullmatch(re.escape(url.rstrip("/")) + r"/\?share=[A-Za-z0-9_-]{22}", link), link

    other = browser.new_page(viewport={"width": 1400, "height": 1800})
    other.goto(link)
    second = figures(other)
    assert "Opened a shared comparison" in other.locator("#status").inner_text()
    assert second == first

    broken = browser.new_page()
    broken.goto(url.rstrip("/") + "/?share=../../etc")
    broken.wait_for_function(
        "() => { const e = document.querySelector('#status'); return e && e.innerText.includes('malformed'); }",
        timeout=TIMEOUT_MS,
    )
