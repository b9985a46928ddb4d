"""End-to-end (issue 23 #1): every page opens, survives a reload, and opens from its own URL (options in the
query string) in a fresh browser context — a shared link — without an exception box or the app's
"something went wrong" message. The teaching page is also opened in presentation mode (present=1)."""

import pytest

from tests.browser_util import ARTIFACTS, browser_page, running_app, wait_idle

pytestmark = pytest.mark.browser

PATHS = ["/", "/data", "/lagged", "/pooled", "/convergence", "/events", "/teaching", "/teaching?present=1&seed=7",
         "/screening", "/methods"]


def _clean(page, what: str) -> None:
    wait_idle(page)
    main = page.locator('[data-testid="stMain"]')
    main.locator("h1").first.wait_for(timeout=60_000)
    wait_idle(page)
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
