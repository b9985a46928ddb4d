"""Browser (Debian chromium): the Teaching page's feedback slider shows the RI-CLPM and the dynamic panel
model beside the person-mean LMM, and the Pooled page draws the estimator comparison forest on the demo."""

import pytest

from tests.browser_util import ARTIFACTS, browser_page, running_app, wait_idle

pytestmark = pytest.mark.browser


def test_teaching_feedback_and_pooled_estimator_comparison_in_the_browser():
    with running_app() as url, browser_page() as page:
        # a shared link sets the feedback slider (URL applied before the widget exists)
        page.goto(url + "/teaching?feedback=-0.4&sessions=6&prior=1")
        page.get_by_role("heading", name="Teaching: within, between and total effects").wait_for(timeout=120_000)
        wait_idle(page, 240_000)
        page.get_by_role("heading", name="4. Feedback and latent centering: RI-CLPM and dynamic panel model").wait_for(
            timeout=240_000)
        fig = page.get_by_text("Person-mean LMM vs latent-centred models", exact=False).first
        fig.wait_for(timeout=300_000)
        fig.scroll_into_view_if_needed()
        slider = page.locator('[data-testid="stSlider"]').filter(has_text="Feedback: symptoms")
        assert "-0.40" in slider.inner_text() or "−0.40" in slider.inner_text()
        page.screenshot(path=str(ARTIFACTS / "teaching_feedback.png"), full_page=True)

        page.goto(url + "/pooled")
        page.get_by_role("heading", name="Pooled effects").wait_for(timeout=120_000)
        wait_idle(page, 300_000)
        page.locator('[data-testid="stButtonGroup"] button').filter(has_text="Estimator comparison").click()
        wait_idle(page, 120_000)
        page.get_by_role("button", name="Fit the RI-CLPM and the DPM to every study").click()
        forest = page.get_by_text("Estimator comparison: Alliance", exact=False).first
        forest.wait_for(timeout=900_000)
        forest.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "pooled_estimator_comparison.png"), full_page=True)
