"""End-to-end: options live in the URL and survive a reload; after a reload the page says plainly
that the upload is gone and names the data set it shows (Debian chromium via Playwright)."""

import re

import pytest

from analysis.simulate import simulate_study
from tests.browser_util import ARTIFACTS, browser_page, running_app, wait_idle

pytestmark = pytest.mark.browser


def test_reload_keeps_options_from_the_url_and_says_the_upload_is_gone(tmp_path):
    d = simulate_study(30, range(1, 8), seed=4, study="My trial").data
    path = tmp_path / "my_trial.csv"
    d.to_csv(path, index=False)

    with running_app() as url, browser_page() as page:
        page.goto(url + "/data")
        page.get_by_text("Loaded: IPD-MA demo").wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_role("tab", name="Upload your files").click()
        page.locator('[data-testid="stFileUploader"] input[type=file]').first.set_input_files(str(path))
        page.get_by_text("my_trial.csv").first.wait_for(timeout=30_000)
        wait_idle(page)
        page.get_by_role("button", name="Use these files").click()
        page.get_by_text("Loaded: Uploaded: my_trial.csv").wait_for(timeout=60_000)
        wait_idle(page)

        page.locator('[data-testid="stSidebar"]').get_by_text("Lagged effects").click()
        main = page.locator('[data-testid="stMain"]')
        main.get_by_text("Data: Uploaded: my_trial.csv").wait_for(timeout=60_000)
        wait_idle(page)
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text("Detrended (within / between)").click()
        wait_idle(page)
        page.wait_for_function("() => location.search.includes('centering=detrended')", timeout=30_000)
        assert "/lagged" in page.url
        assert main.get_by_text("demo data, not your own").count() == 0

        page.reload()
        wait_idle(page)
        main = page.locator('[data-testid="stMain"]')
        banner = main.get_by_text(re.compile("simulated demo data, not your own"))
        banner.wait_for(timeout=60_000)
        text = banner.inner_text()
        assert "IPD-MA demo" in text and "cannot keep uploaded files" in text
        assert "centering=detrended" in page.url
        radio = sidebar.get_by_role("radio", name="Detrended (within / between)")
        assert radio.is_checked()
        page.screenshot(path=str(ARTIFACTS / "lagged_after_reload.png"), full_page=True)
