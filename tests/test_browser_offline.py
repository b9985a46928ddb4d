"""End-to-end: the app makes no request beyond this machine (README: no network calls), and the
Teaching page fits a projector (1280×720) in presentation mode. Debian chromium via Playwright."""

from urllib.parse import urlparse

import pytest

from tests.browser_util import ARTIFACTS, browser_page, running_app, wait_idle

pytestmark = pytest.mark.browser

PAGES = ["", "/data", "/lagged", "/pooled", "/convergence", "/events", "/teaching", "/screening", "/methods"]


def test_no_request_leaves_the_machine_on_any_page():
    outside = []
    with running_app() as url, browser_page() as page:
        def record(req):
            host = urlparse(req.url).hostname
            if req.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
                return
            outside.append(req.url)

        page.on("request", record)
        for path in PAGES:
            page.goto(url + path)
            wait_idle(page)
            page.wait_for_timeout(500)
        icons = page.evaluate("() => [...document.querySelectorAll('link[rel~=icon]')].map(l => l.href)")
    assert icons and all(urlparse(h).hostname in ("127.0.0.1", "localhost") or h.startswith("data:")
                         for h in icons), icons
    assert outside == [], outside


def test_teaching_presentation_mode_fits_a_projector():
    with running_app() as url, browser_page(width=1280, height=720) as page:
        page.goto(url + "/teaching")
        wait_idle(page)
        page.get_by_text("Presentation mode (projector)").click()
        wait_idle(page)
        page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=60_000)
        main = page.locator('[data-testid="stMain"]')
        slider = main.locator('[data-testid="stSlider"]').first
        box = slider.bounding_box()
        assert box is not None and box["y"] + box["height"] <= 720  # the first slider is above the fold
        page.screenshot(path=str(ARTIFACTS / "teaching_presentation_1280x720.png"))
