"""Browser (Debian chromium): the Teaching page's feedback slider shows the RI-CLPM and the dynamic panel
model beside the person-mean LMM, and the Pooled page draws the estimator comparison forest on the demo."""

import pytest

from tests.browser_util import ARTIFACTS, browser_page, choose, running_app, wait_idle

pytestmark = pytest.mark.browser


def test_teaching_feedback_and_pooled_estimator_comparison_in_the_browser():
    with running_app() as url, browser_page() as page:
        # a shared link sets the feedback slider (URL applied before the widget exists)
        page.goto(url + "/teaching?feedback=-0.4&sessions=6&prior=1")
        page.get_by_role("heading", name="Teaching: within, between and total effects").wait_for(timeout=120_000)
        wait_idle(page, 240_000)
        slider = page.locator('[data-testid="stSlider"]').filter(has_text="Feedback: symptoms")
        # the link's value is on the page before anything is clicked (as a reader sees it)
        page.wait_for_function("""() => Array.from(document.querySelectorAll('[data-testid="stSlider"]'))
            .some(el => el.innerText.includes('Feedback: symptoms') && el.innerText.includes('\u22120.40'))""",
                               timeout=120_000)
        page.get_by_role("tab", name="4. Feedback and latent centering").click()  # a lazy tab (ui/tabs.py)
        wait_idle(page, 240_000)
        page.get_by_role("heading", name="4. Feedback and latent centering: RI-CLPM and dynamic panel model").wait_for(
            timeout=240_000)
        fig = page.get_by_text("Person-mean LMM vs latent-centred models", exact=False).first
        fig.wait_for(timeout=300_000)
        fig.scroll_into_view_if_needed()
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


def test_estimator_check_runs_from_the_pooled_page():
    """The estimator check, started from the page (demo, Study 04: 95 patients × 7 sessions, 20 simulated
    data sets): the progress bar gives way to the sentence, the figure and the table, whose numbers are
    plausible — every estimator refitted to every data set, one truth per direction (the fitted RI-CLPM's
    cross-lag), coverages between 0 and 1, and the RI-CLPM near its own truth."""
    import math
    import re

    import pandas as pd

    with running_app() as url, browser_page() as page:
        page.goto(url + "/pooled")
        page.get_by_role("heading", name="Pooled effects").wait_for(timeout=120_000)
        wait_idle(page, 300_000)
        page.locator('[data-testid="stButtonGroup"] button').filter(has_text="Estimator check").click()
        page.get_by_role("button", name="Run the estimator check").wait_for(timeout=120_000)
        study_box = page.locator('[data-testid="stSelectbox"]').filter(has_text=re.compile(r"^\s*Study\s*$")).first
        choose(page, study_box, "Study 04")
        wait_idle(page, 120_000)
        n_sim = page.get_by_role("spinbutton", name="Simulated data sets")  # (not its help button)
        n_sim.fill("20")
        n_sim.press("Enter")
        wait_idle(page, 120_000)
        page.get_by_role("button", name="Run the estimator check").click()
        sentence = page.get_by_text("On data like yours", exact=False).first
        sentence.wait_for(timeout=900_000)
        wait_idle(page, 120_000)
        text = sentence.inner_text()
        assert "RI-CLPM" in text and "%" in text
        assert page.get_by_text("Estimator check: 20 data sets like Study 04", exact=False).count() >= 1
        table_view = page.locator('[data-testid="stDataFrame"]').last
        table_view.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "pooled_estimator_check.png"), full_page=True)
        with page.expect_download(timeout=180_000) as dl:
            page.get_by_role("button", name="Download table (CSV)").last.click()
        path = ARTIFACTS / "estimator_check.csv"
        dl.value.save_as(path)
    t = pd.read_csv(path)
    assert set(t["estimator"]) == {"person_mean", "detrended", "riclpm", "dpm"}
    assert len(t) == 8 and (t["n_sim"] == 20).all()
    for _direction, g in t.groupby("direction"):
        assert g["truth"].nunique() == 1 and math.isfinite(g["truth"].iloc[0])
    assert t["coverage"].between(0, 1).all() and (t["mean_se"] > 0).all() and (t["sd_estimate"] > 0).all()
    assert ((t["mean_estimate"] - t["truth"] - t["bias"]).abs() < 1e-9).all()
    ri = t[t["estimator"] == "riclpm"]
    # 20 data sets: the latent-centred model is near its own truth (bias well under one SD of its estimates)
    assert (ri["bias"].abs() < ri["sd_estimate"]).all() and (ri["coverage"] >= 0.7).all()
