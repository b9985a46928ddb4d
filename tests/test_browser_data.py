"""End-to-end: the Data page in a real browser (Debian chromium via Playwright)."""

import pytest

from analysis.simulate import simulate_study
from tests.browser_util import ARTIFACTS, browser_page, running_app, wait_idle

pytestmark = pytest.mark.browser


def test_upload_csv_and_see_summary(tmp_path):
    d = simulate_study(12, range(1, 6), seed=1).data
    raw = d.rename(columns={"patient": "client", "session": "sess", "alliance": "wai", "symptoms": "bdi"})
    path = tmp_path / "my_trial.csv"
    raw.drop(columns=["study"]).to_csv(path, index=False, sep=";", decimal=",")

    with running_app() as url, browser_page() as page:
        page.goto(url + "/data")
        page.get_by_text("Loaded: IPD-MA demo").wait_for(timeout=60_000)
        wait_idle(page)

        # The sidebar shows our page titles, never raw file names.
        sidebar = page.locator('[data-testid="stSidebar"]')
        labels = [t.strip() for t in sidebar.locator('[data-testid="stPageLink"] p').all_inner_texts()]
        assert labels == ["Overview", "Data", "Lagged effects", "Pooled effects", "Convergence",
                          "Ruptures & gains", "Teaching", "Screening", "Methods"]
        assert sidebar.locator('[data-testid="stSidebarNav"]').count() == 0  # no automatic file-name nav
        assert page.locator('[role="dialog"]').count() == 0  # no "Page not found"

        page.get_by_role("tab", name="Upload your files").click()
        page.set_input_files('[data-testid="stFileUploader"] input[type=file]', str(path))
        page.get_by_text("my_trial.csv").first.wait_for(timeout=30_000)
        wait_idle(page)
        page.get_by_role("button", name="Use these files").click()
        page.get_by_text("Loaded: Uploaded: my_trial.csv").wait_for(timeout=60_000)
        wait_idle(page)
        # the first view draws the study table only; the charts come when asked for
        page.locator('[data-testid="stTable"]').first.wait_for(timeout=30_000)
        assert page.locator('[data-testid="stPlotlyChart"]').count() == 0
        page.get_by_text("Show charts", exact=False).first.click()
        wait_idle(page)
        charts = page.locator('[data-testid="stPlotlyChart"]')
        charts.first.wait_for(timeout=30_000)
        assert charts.count() >= 3
        assert sidebar.get_by_text("1 study · 12 patients", exact=False).count() == 1
        page.screenshot(path=str(ARTIFACTS / "data_page_after_upload.png"), full_page=True)
