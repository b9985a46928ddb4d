"""End-to-end (issue 23 #1): every page opens, survives a reload, and opens from its own URL (options in the
query string) in a fresh browser context — a shared link — without an exception box or the app's
"something went wrong" message. The teaching page is also opened in presentation mode (present=1)."""

import pytest

from tests.browser_util import ARTIFACTS, browser_page, running_app

pytestmark = pytest.mark.browser

PATHS = ["/", "/data", "/lagged", "/pooled", "/convergence", "/events", "/teaching", "/teaching?present=1&seed=7",
         "/screening", "/methods"]


IDLE = "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"


def _idle(page, timeout: float = 180_000) -> None:
    """The page's title is drawn and the script has finished (no 'Running…' twice, half a second apart).
    (Not tests.browser_util.wait_idle: in presentation mode the sidebar with its links is collapsed.)"""
    page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=timeout)
    for _ in range(2):
        page.wait_for_timeout(500)
        page.wait_for_function(IDLE, timeout=timeout)


def _clean(page, what: str) -> None:
    try:
        _idle(page)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "page_that_did_not_open.png"))
        raise AssertionError(f"{what}: the page did not finish opening") from None
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, f"{what}: {boxes.first.inner_text()[:500]}"
    assert page.get_by_text("fault of the app").count() == 0, what


def test_every_page_opens_reloads_and_opens_from_its_own_link():
    with running_app() as url, browser_page() as page:
        for path in PATHS:
            page.goto(url + path)
            _clean(page, f"{path} (first open)")
            page.reload()
            _clean(page, f"{path} (reload)")
            own = page.url  # the page has written its options into the URL
            fresh = page.context.browser.new_context(viewport={"width": 1400, "height": 1000})
            try:
                other = fresh.new_page()
                other.goto(own)
                _clean(other, f"{own} (fresh context)")
                if "present=1" in own:
                    assert other.get_by_role("switch", name="Presentation mode (projector)").is_checked()
                    other.screenshot(path=str(ARTIFACTS / "teaching_shared_link_present.png"))
            finally:
                fresh.close()


TITLES = """() => Array.from(document.querySelectorAll(
    '[data-testid="stPlotlyChart"] .gtitle, [data-testid="stPlotlyChart"] [class*="title"] text')).map(t => {
  const b = t.getBoundingClientRect(), svg = t.closest('svg').getBoundingClientRect();
  return {text: t.textContent, left: b.left - svg.left, right: svg.right - b.right, width: b.width};
}).filter(t => t.width > 0)"""


def test_presentation_mode_fits_a_1280x720_projector():
    """Issue 23 #8: at 1280×720 the sidebar stayed open, the chart got ~220 px and axis titles were cut."""
    with running_app() as url, browser_page(1280, 720) as page:
        page.goto(url + "/teaching?present=1&seed=7")
        _clean(page, "teaching in presentation mode")
        chart = page.locator('[data-testid="stPlotlyChart"]').first
        chart.wait_for(timeout=120_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "teaching_presentation_1280x720.png"))
        sidebar = page.locator('[data-testid="stSidebar"]')
        box = sidebar.bounding_box()  # a collapsed sidebar is moved off the left edge of the window
        assert box is None or box["x"] + box["width"] <= 1, box
        assert chart.bounding_box()["width"] >= 0.6 * 1280
        charts = page.locator('[data-testid="stPlotlyChart"]')
        for i in range(charts.count()):  # every figure drawn, so every title can be measured
            charts.nth(i).scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        titles = page.evaluate(TITLES)
        assert len(titles) >= 6
        cut = [t["text"] for t in titles if t["left"] < -1 or t["right"] < -1]
        assert cut == [], cut
