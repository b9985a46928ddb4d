"""In Debian chromium: the Pooled page of the 17-study demo shows the one-stage model beside the
two-stage pooling — one table with both, one forest with the one-stage row highlighted, and the
sentence on whether they agree (issue 21)."""

import pytest

from tests.browser_util import ARTIFACTS, browser_page, running_app, wait_idle

pytestmark = pytest.mark.browser

ANNOTATIONS = """() => Array.from(document.querySelectorAll('g.annotation text.annotation-text'))
  .map(t => t.textContent)"""


def test_one_and_two_stage_side_by_side_in_the_browser():
    with running_app() as url, browser_page(width=1500, height=1400) as page:
        page.goto(url + "/pooled")
        page.get_by_role("heading", name="Pooled effects").wait_for(timeout=180_000)
        wait_idle(page, 180_000)
        page.locator('[data-testid="stButtonGroup"] button').filter(has_text="One-stage vs two-stage").click()
        page.get_by_text("Why they may differ", exact=False).first.wait_for(timeout=300_000)
        wait_idle(page, 180_000)
        assert page.locator('[data-testid="stPlotlyChart"]').count() >= 2
        texts = page.evaluate(ANNOTATIONS)
        assert any("One-stage model (REML)" in t for t in texts), texts[:20]
        assert any("Two-stage pooled estimate" in t for t in texts)
        body = page.locator("body").inner_text()
        assert "one-stage" in body and "two-stage" in body and "Satterthwaite" in body
        page.screenshot(path=str(ARTIFACTS / "onestage_side_by_side.png"), full_page=True)
