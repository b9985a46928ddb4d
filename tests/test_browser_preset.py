"""Browser (Debian chromium): the "Reproduce a paper" control on the Lagged effects page loads the ICBT
demo, sets the paper's options and shows the checklist and the Within/between paper's trio."""

import pytest

from tests.browser_util import ARTIFACTS, browser_page, choose, running_app, wait_idle

pytestmark = pytest.mark.browser


def test_preset_icbt_004_in_the_browser():
    with running_app() as url, browser_page() as page:
        page.goto(url + "/lagged")
        page.get_by_role("heading", name="Lagged effects").wait_for(timeout=120_000)
        wait_idle(page, 180_000)
        sb = page.locator('[data-testid="stSidebar"]')
        choose(page, sb.locator('[data-testid="stSelectbox"]').filter(has_text="Paper"), "ICBT for social anxiety")
        wait_idle(page, 120_000)
        sb.get_by_role("button", name="Load demo and set the paper's options").click()
        wait_idle(page, 180_000)
        page.get_by_text("what was set and why", exact=False).first.wait_for(timeout=120_000)
        sb.get_by_text("Within/between demo", exact=False).first.wait_for(timeout=60_000)
        # the preset switched standardization off: the caption says raw scores
        page.get_by_text("raw scores", exact=False).first.wait_for(timeout=60_000)
        page.get_by_role("tab", name="Total, within and between").click()  # the trio is a tab (issue 23 #17)
        page.get_by_role("heading", name="Total, within and between effects (Within/between paper)").wait_for(timeout=120_000)
        page.get_by_text("Opposite signs are possible", exact=False).first.wait_for(timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "preset_icbt_004.png"), full_page=True)
        # another paper's demo while the trio is open: its Study box shows the new data's study (it once kept
        # showing "ICBT trial" above numbers fitted to the other demo)
        choose(page, sb.locator('[data-testid="stSelectbox"]').filter(has_text="Paper"), "Convergence, Study 1")
        wait_idle(page, 120_000)
        sb.get_by_role("button", name="Load demo and set the paper's options").click()
        wait_idle(page, 180_000)
        sb.get_by_text("Convergence demo", exact=False).first.wait_for(timeout=60_000)
        page.get_by_role("heading", name="Total, within and between effects (Within/between paper)").wait_for(timeout=120_000)
        box = page.locator('[data-testid="stMain"] [data-testid="stSelectbox"]').filter(has_text="Study").first
        shown = box.evaluate("el => el.textContent + ' | ' + Array.from(el.querySelectorAll('input')).map(i => i.value).join(' ')")
        page.screenshot(path=str(ARTIFACTS / "preset_second_paper.png"))
        assert "Study 1 design" in shown and "ICBT" not in shown, shown
