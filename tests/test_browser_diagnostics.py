"""End-to-end (issue 22): the Convergence page's crossing-lines warning and congruence models, and the
Lagged page's Nickell/attenuation diagnostics and the published between model, in a real browser."""

import pytest

from tests.browser_util import ARTIFACTS, browser_page, running_app, wait_idle

pytestmark = pytest.mark.browser


def test_convergence_congruence_and_lagged_diagnostics_in_the_browser():
    with running_app() as url, browser_page() as page:
        page.goto(url + "/convergence")
        page.get_by_role("heading", name="Alliance convergence").wait_for(timeout=120_000)
        wait_idle(page, 240_000)
        page.get_by_role("tab", name="Congruence").click()  # a lazy tab: computed when opened
        head = page.get_by_role("heading", name="Congruence models: patient and therapist alliance → symptoms")
        head.wait_for(timeout=240_000)
        wait_idle(page, 240_000)
        assert page.get_by_text("lines cross within the observed sessions").count() >= 1
        assert page.get_by_text("Actor–partner interdependence model").count() >= 1
        assert page.get_by_text("Response surface of").count() >= 1  # the a1–a4 sentence
        head.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "convergence_congruence.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0

        page.goto(url + "/lagged")
        page.get_by_role("heading", name="Lagged effects").wait_for(timeout=120_000)
        wait_idle(page, 240_000)
        page.get_by_text("Diagnostics and warnings").first.click()
        page.get_by_text("expected bias on this study's own sessions").first.wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "lagged_diagnostics.png"), full_page=True)
        page.get_by_role("tab", name="Total, within and between").click()  # a lazy tab: runs when opened
        wait_idle(page, 240_000)
        page.get_by_text("Between, as the paper fitted it").first.wait_for(timeout=240_000)
        page.screenshot(path=str(ARTIFACTS / "lagged_trio.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
