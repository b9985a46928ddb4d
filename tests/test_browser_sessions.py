"""Session isolation in a real browser: an upload in one session is never visible in another.

Two browser contexts (two students, no shared cookies or storage) open the same server. The first
uploads a data file with a distinctive study name and uses it; the second, opened before and after
the upload, still sees the demo data, on the Data page and in the sidebar, and its Lagged effects
study list holds no study of the first session's file.
"""

from __future__ import annotations

import pytest

from analysis.simulate import simulate_study
from tests.browser_util import CHROMIUM, CHROMIUM_ARGS, running_app, wait_idle

pytestmark = pytest.mark.browser

SECRET = "Confidential trial XJ-9"


def _csv() -> bytes:
    d = simulate_study(12, range(1, 6), study=SECRET, seed=3).data
    return d.to_csv(index=False).encode("utf-8")


def test_an_upload_in_one_session_is_not_visible_in_another():
    from playwright.sync_api import sync_playwright

    with running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            alice = browser.new_context().new_page()
            bob = browser.new_context().new_page()
            for page in (alice, bob):
                page.goto(url + "/data")
                page.get_by_text("Loaded: IPD-MA demo").wait_for(timeout=120_000)
                wait_idle(page, 120_000)

            alice.get_by_role("tab", name="Upload your files").click()
            alice.set_input_files('[data-testid="stFileUploader"] input[type=file]',
                                  files=[{"name": "secret_trial.csv", "mimeType": "text/csv", "buffer": _csv()}])
            alice.get_by_role("button", name="Use these files").wait_for(timeout=60_000)
            wait_idle(alice, 120_000)
            alice.get_by_role("button", name="Use these files").click()
            alice.get_by_text("Loaded: Uploaded: secret_trial.csv").wait_for(timeout=120_000)
            wait_idle(alice, 120_000)
            assert alice.locator('[data-testid="stSidebar"]').get_by_text("1 study · 12 patients",
                                                                          exact=False).count() == 1

            # Bob: the open page after a rerun, then a fresh load of another page, then the Data page again
            bob.get_by_role("tab", name="Demo data").click()
            wait_idle(bob, 120_000)
            bob.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').filter(
                has_text="Lagged effects").click()
            bob.get_by_role("heading", name="Lagged effects").wait_for(timeout=120_000)
            wait_idle(bob, 180_000)
            bob.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').filter(has_text="Data").first.click()
            bob.get_by_text("Loaded: IPD-MA demo").wait_for(timeout=120_000)
            wait_idle(bob, 120_000)
            text = bob.locator("body").inner_text()
            assert "secret_trial" not in text and SECRET not in text
            assert bob.locator('[data-testid="stSidebar"]').get_by_text("17 studies · 5,350 patients", exact=False).count() == 1
            assert bob.locator('[data-testid="stFileUploader"] [data-testid="stFileUploaderFile"]').count() == 0

            # a third student arriving later sees the demo too
            carol = browser.new_context().new_page()
            carol.goto(url + "/data")
            carol.get_by_text("Loaded: IPD-MA demo").wait_for(timeout=120_000)
            wait_idle(carol, 120_000)
            assert "secret_trial" not in carol.locator("body").inner_text()
            # and Alice still has her own data
            alice.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').filter(
                has_text="Overview").click()
            alice.get_by_text("secret_trial.csv", exact=False).first.wait_for(timeout=60_000)
        finally:
            browser.close()
