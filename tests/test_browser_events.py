"""End-to-end: the Ruptures & gains page in Debian chromium with an uploaded file that has a dropout column:
the moderated default criterion and its chance reference, the 1-SD floor's warning, and the dropout models."""

import pytest

from analysis.events.dropout import simulate_dropout_data
from tests.browser_util import ARTIFACTS, browser_page, running_app, wait_idle

pytestmark = pytest.mark.browser


def test_events_page_criteria_chance_and_dropout(tmp_path):
    d = simulate_dropout_data(2, 60, 9, seed=2)[["study", "patient", "session", "alliance", "symptoms", "dropout"]]
    d["symptoms"] = (30 + 6 * d["symptoms"]).clip(0).round()  # a raw symptom scale
    path = tmp_path / "dropout_trial.csv"
    d.to_csv(path, index=False)
    with running_app() as url, browser_page() as page:
        page.goto(url + "/data")
        wait_idle(page, 120_000)
        page.get_by_role("tab", name="Upload your files").click()
        page.set_input_files('[data-testid="stFileUploader"] input[type=file]', str(path))
        page.get_by_text("dropout_trial.csv").first.wait_for(timeout=30_000)
        wait_idle(page)
        page.get_by_role("button", name="Use these files").click()
        page.get_by_text("Loaded: Uploaded: dropout_trial.csv").wait_for(timeout=60_000)
        wait_idle(page)

        page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').filter(has_text="Ruptures & gains").click()
        page.get_by_role("heading", name="Ruptures & gains").wait_for(timeout=60_000)
        wait_idle(page, 180_000)
        page.get_by_text("Expected by chance", exact=False).first.wait_for(timeout=120_000)
        # the default criterion in words: the patient's own SD, moderated, corrected for the number of sessions
        page.get_by_text("moderated t), one-sided p corrected", exact=False).first.wait_for(timeout=60_000)
        assert page.get_by_text("Šidák", exact=False).count() >= 1
        page.screenshot(path=str(ARTIFACTS / "events_1_default_criterion.png"), full_page=True, timeout=120_000)

        page.get_by_role("tab", name="Relation to outcome").click()
        wait_idle(page, 180_000)
        page.get_by_role("heading", name="Dropout").wait_for(timeout=120_000)
        page.get_by_text("hazard ratio per SD of the current alliance", exact=False).first.wait_for(timeout=120_000)
        page.get_by_text("Ruptures and repairs need sessions", exact=False).first.wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "events_2_dropout.png"), full_page=True, timeout=120_000)
