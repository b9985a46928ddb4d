"""End-to-end main path in Debian chromium: demo → Lagged effects → change centering →
Pooled forest plot updates (timed) → download the report → Convergence trajectories."""

import time

import pytest

from tests.browser_util import ARTIFACTS, browser_page, running_app, wait_idle

pytestmark = pytest.mark.browser

FIRST_TRACE_X = """() => {
  const el = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  if (!el || !el.data) return null;
  return JSON.stringify(el.data.map(t => t.x));
}"""


def _radio(page, label):
    page.locator('[data-testid="stSidebar"] label').filter(has_text=label).first.click()


def test_main_path(capsys):
    with running_app() as url, browser_page() as page:
        page.goto(url + "/lagged")
        page.get_by_role("heading", name="Lagged effects").wait_for(timeout=120_000)
        wait_idle(page, 120_000)
        page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=60_000)
        _radio(page, "Detrended (within / between)")
        wait_idle(page, 120_000)
        page.get_by_text("centering: detrended", exact=False).wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "main_1_lagged_detrended.png"), full_page=True)

        page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').filter(has_text="Pooled effects").click()
        page.get_by_role("heading", name="Pooled effects").wait_for(timeout=60_000)
        wait_idle(page, 120_000)
        page.wait_for_function(f"() => ({FIRST_TRACE_X})() !== null", timeout=60_000)
        # the centering chosen on the Lagged page is still in force here
        assert page.locator('[data-testid="stSidebar"] input[type=radio][checked]').count() >= 1
        before = page.evaluate(FIRST_TRACE_X)

        timings = []
        for label in ("Person-mean (within / between)", "Grand-mean (total effect)", "Detrended (within / between)",
                      "Person-mean (within / between)"):
            _radio(page, label)  # Playwright returns once the click is dispatched
            t0 = time.perf_counter()
            page.wait_for_function(f"(b) => {{ const x = ({FIRST_TRACE_X})(); return x !== null && x !== b; }}",
                                   arg=before, timeout=60_000, polling=20)
            timings.append(time.perf_counter() - t0)
            before = page.evaluate(FIRST_TRACE_X)
            wait_idle(page, 120_000)
        median = sorted(timings)[len(timings) // 2]
        with capsys.disabled():
            print("\noption change -> updated forest plot (s):", ", ".join(f"{t:.2f}" for t in timings),
                  f"| median {median:.2f} s | target < 1 s: {'met' if median < 1 else 'NOT met'}")
        page.screenshot(path=str(ARTIFACTS / "main_2_pooled_forest.png"), full_page=True)

        page.locator('[data-testid="stButtonGroup"] button').filter(has_text="Report & script").click()
        wait_idle(page, 120_000)
        with page.expect_download(timeout=120_000) as dl:
            page.get_by_role("button", name="Download the HTML report").click()
        report = ARTIFACTS / "report.html"
        dl.value.save_as(report)
        text = report.read_text(encoding="utf-8")
        assert "Pooled estimates" in text and "person-mean (within-patient)" in text and "statsmodels" in text

        page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').filter(has_text="Convergence").click()
        page.get_by_role("heading", name="Alliance convergence").wait_for(timeout=60_000)
        page.get_by_role("heading", name="Patient and therapist ratings over treatment").wait_for(timeout=120_000)
        wait_idle(page, 120_000)
        page.locator('[data-testid="stPlotlyChart"]').first.wait_for(timeout=60_000)
        assert page.locator('[data-testid="stPlotlyChart"]').count() >= 2  # (twelve dyads: drawn when opened)
        page.screenshot(path=str(ARTIFACTS / "main_3_convergence.png"), full_page=True)
        # The target (< 1 s on the 17-study demo) is printed above; a timed assertion that tight would
        # fail on a busy 2-core CI machine. This bound catches a real regression (it was 2.4 s before
        # the data fingerprint and on-demand sections).
        assert median < 2.0
