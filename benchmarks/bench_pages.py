"""Benchmark: every page in a real browser (issue 24).

Usage::

    .venv/bin/python benchmarks/bench_pages.py               # every page, medians of 3
    .venv/bin/python benchmarks/bench_pages.py --pages teaching pooled --reps 5

Starts the app (``benchmarks/app_server.py``: ``streamlit run app.py`` on loopback, waits on
``/_stcore/health``, stops exactly that process), opens every page once in an untimed session (a warm
server: imports done, the demo loaded, the default options' fits cached, as when the instructor opened the
app before the class), then drives Debian chromium (Playwright, ``--no-sandbox --disable-gpu``) and prints,
per page:

* **cold**: a new session (new browser context: nothing cached) opens the page's URL, until the script has
  finished and the page's charts are drawn;
* **cold, cached**: a new session in a new tab of that browser (its cache holds the app's JavaScript, as for
  a student who has opened the app before, or opens a second tab), until the same;
* **warm**: in that session, to the Overview and back through the sidebar link;
* **option → plot**: an option of the page changed (the centering, the convergence score, the rupture
  criterion), until a chart shows the new result;
* **slider** (Teaching): a slider moved by one step, until the chart is redrawn (the replications and the
  Nickell curve follow from a background job);
* **preset** (Lagged): a paper chosen in "Reproduce a paper" (untimed), then its button clicked, until a chart
  shows the paper's analysis (its demo loaded, its options set, its models fitted).

Beside each median: the server's CPU seconds for that step (user + system of the server process, /proc:
what the step cost the server, independent of what else the machine does) and the 1-minute load average
when the step ran. Then the time chromium takes to draw a 200-study forest plot (plotly.js from the plotly
package, ``Plotly.newPlot`` until the next frame). Targets at load ≤ 2: warm ≤ 1 s, option → plot ≤ 0.7 s,
slider ≤ 0.5 s, cold ≤ 3 s, preset ≤ 2 s, 200-study forest ≤ 1.5 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.app_server import app_server, cpu_seconds  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
TARGETS = {"cold": 3.0, "cached": 3.0, "warm": 1.0, "option": 0.7, "slider": 0.5, "preset": 2.0, "forest": 1.5}

# A signature of every chart on the page (all its traces and its annotations' text), and "the script is idle".
SIG = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => JSON.stringify(
  [el.data || [], ((el.layout || {}).annotations || []).map(a => a.text)]
)).join('|')"""
IDLE = """() => !document.querySelector('[data-testid="stStatusWidget"]')
  && !!document.querySelector('[data-testid="stSidebar"] [data-testid="stPageLink"]')"""
CHARTS = "() => document.querySelectorAll('.js-plotly-plot').length"


class Page(NamedTuple):
    path: str
    title: str
    #: ("radio", first label, second label) or ("checkbox", label) or ("select", widget label, option) or None
    option: tuple | None = None
    slider: str | None = None
    preset: bool = False
    charts: bool = True  # the page draws a chart when it opens (Data: only after a click; Screening: a study)


PAGES = [
    Page("lagged", "Lagged effects", ("radio", "Grand-mean (total effect)", "Person-mean (within / between)"),
         preset=True),
    Page("pooled", "Pooled effects", ("radio", "Grand-mean (total effect)", "Person-mean (within / between)")),
    Page("convergence", "Convergence", ("radio", "slope of P̂ − T̂ (signed)", "− slope of |P̂ − T̂| (positive = approaching)")),
    Page("events", "Ruptures & gains", ("checkbox", "Against the patient's own trend (detrended)")),
    Page("teaching", "Teaching", slider="Within-patient effect"),
    Page("screening", "Screening", charts=False),
    Page("data", "Data", charts=False),
]


class Step:
    """One measured step of a page: seconds, server CPU seconds and load average per repetition."""

    def __init__(self):
        self.seconds, self.cpu, self.load, self.js, self.note = [], [], [], [], ""

    def add(self, s: float, c: float) -> None:
        self.seconds.append(s)
        self.cpu.append(c)
        self.load.append(os.getloadavg()[0])

    def cell(self) -> str:
        if not self.seconds:
            return f"{self.note or 'n/a':>24}"  # (the cold column is wider: it has 'js')
        js = f" js {statistics.median(self.js):4.2f}" if self.js else ""
        return (f"{statistics.median(self.seconds):6.2f} s cpu {statistics.median(self.cpu):4.2f}{js} "
                f"ld {statistics.median(self.load):4.1f}")


def script_seconds(cdp) -> float:
    """The browser main thread's JavaScript seconds so far (Chrome DevTools Performance metrics)."""
    return next(m["value"] for m in cdp.send("Performance.getMetrics")["metrics"] if m["name"] == "ScriptDuration")


def wait_done(page, before: str | None, timeout_ms: float, need_charts: bool = True) -> None:
    """Page loads: until the script is idle (twice, 100 ms apart) and the page has its charts. Interactions
    (``before`` given): until a chart differs from ``before`` (twice): the plot the widget drives is drawn,
    even if slower parts (a background job's progress bar, a section further down) are still running."""
    deadline = time.perf_counter() + timeout_ms / 1000
    stable = 0
    while time.perf_counter() < deadline:
        if before is not None:
            ok = page.evaluate(SIG) != before
        else:
            ok = page.evaluate(IDLE) and (not need_charts or page.evaluate(CHARTS) > 0)
        stable = stable + 1 if ok else 0
        if stable >= 2:
            return
        time.sleep(0.05)
    raise TimeoutError("the page did not finish")


def timed(step: Step, pid: int, action, page, before, timeout_ms, need_charts=True) -> None:
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    action()
    wait_done(page, before, timeout_ms, need_charts)
    # the two idle polls (≈ 0.1 s) after the end are not part of the step
    step.add(max(0.0, time.perf_counter() - t0 - 0.1), cpu_seconds(pid) - c0)


def sidebar_link(page, title: str):
    return page.locator('[data-testid="stSidebar"] [data-testid="stPageLink"] a').filter(has_text=title).first


def change_option(page, spec: tuple, flip: bool) -> None:
    kind = spec[0]
    if kind == "radio":
        label = spec[2] if flip else spec[1]
        page.locator('[data-testid="stRadio"] label').filter(has_text=label).first.click()
    elif kind == "checkbox":
        page.locator('[data-testid="stCheckbox"] label').filter(has_text=spec[1]).first.click()


def move_slider(page, label: str, flip: bool) -> None:
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text=label).first.locator('input[type="range"]')
    thumb.focus()
    page.keyboard.press("ArrowLeft" if flip else "ArrowRight")


def choose_paper(page, n: int) -> None:
    """Choose the n-th paper in the sidebar's "Reproduce a paper" box (its own rerun; not timed)."""
    box = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(has_text="Paper").first
    options = page.locator('[role="option"]')
    for _ in range(3):  # (a click that lands while the page reruns opens nothing: try again)
        box.click()
        try:
            options.first.wait_for(timeout=3000)
            break
        except Exception:
            page.keyboard.press("Escape")
    options.nth(n % max(1, options.count())).click()


def apply_preset(page) -> None:
    """Apply the chosen paper: its demo loaded and its options set (the timed step)."""
    page.get_by_role("button", name="Load demo and set the paper's options").click()


def bench_page(browser, url: str, pid: int, p: Page, reps: int, timeout_ms: float) -> dict:
    steps = {k: Step() for k in ("cold", "cached", "warm", "option", "slider", "preset")}
    for k, ok in (("option", p.option), ("slider", p.slider), ("preset", p.preset)):
        if not ok:
            steps[k].note = "—"
    for r in range(reps):
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            one_session(ctx.new_page(), url, pid, p, r, steps, timeout_ms)
            tab = ctx.new_page()  # a new session in a new tab: the browser's cache is warm
            timed(steps["cached"], pid, lambda t=tab: t.goto(f"{url}/{p.path}", timeout=timeout_ms), tab, None, timeout_ms,
                  p.charts)
        finally:
            ctx.close()
    return steps


def one_session(page, url: str, pid: int, p: Page, r: int, steps: dict, timeout_ms: float) -> None:
    need = p.charts
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    timed(steps["cold"], pid, lambda: page.goto(f"{url}/{p.path}", timeout=timeout_ms), page, None, timeout_ms, need)
    steps["cold"].js.append(script_seconds(cdp))
    sidebar_link(page, "Overview").click()
    page.wait_for_url("**/", timeout=timeout_ms)
    wait_done(page, None, timeout_ms, need_charts=False)
    timed(steps["warm"], pid, sidebar_link(page, p.title).click, page, None, timeout_ms, need)
    try:
        if p.option:
            for flip in (False, True):
                timed(steps["option"], pid, lambda f=flip: change_option(page, p.option, f), page,
                      page.evaluate(SIG), timeout_ms)
        if p.slider:
            for flip in (False, True):
                timed(steps["slider"], pid, lambda f=flip: move_slider(page, p.slider, f), page,
                      page.evaluate(SIG), timeout_ms)
        if p.preset:
            wait_done(page, None, timeout_ms, need_charts=False)  # (untimed: the option change's rerun has ended)
            choose_paper(page, r + 1)  # (untimed: choosing a paper is its own interaction)
            page.wait_for_timeout(300)
            wait_done(page, None, timeout_ms, need_charts=False)
            timed(steps["preset"], pid, lambda: apply_preset(page), page, page.evaluate(SIG), timeout_ms)
    except Exception as e:  # an interaction that fails is reported, the page's other numbers stand
        for k in ("option", "slider", "preset"):
            if not steps[k].seconds and not steps[k].note:
                steps[k].note = f"failed: {type(e).__name__}"
        print(f"  {p.path}: {type(e).__name__}: {str(e).splitlines()[0][:120]}", flush=True)


def forest_draw(browser, k: int = 200, reps: int = 3) -> list[float]:
    """Seconds chromium needs to draw a k-study forest plot (Plotly.newPlot until the next frame)."""
    import numpy as np
    import plotly

    from analysis.meta import random_effects
    from analysis.plots_meta import forest_figure

    rng = np.random.default_rng(1)
    res = random_effects(rng.normal(0.1, 0.1, k), rng.uniform(0.002, 0.01, k),
                         labels=[f"Study {i:03d}" for i in range(k)], n_patients=list(rng.integers(20, 400, k)),
                         n_pairs=list(rng.integers(100, 3000, k)))
    spec = forest_figure(res).to_json()
    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_content("<div id='g' style='width:1300px'></div>")
    page.add_script_tag(content=js.read_text(encoding="utf-8"))
    out = []
    for _ in range(reps):
        ms = page.evaluate("""async (s) => { const f = JSON.parse(s); const t = performance.now();
            await Plotly.newPlot('g', f.data, f.layout);
            await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
            const d = performance.now() - t; Plotly.purge('g'); return d; }""", spec)
        out.append(ms / 1000)
    ctx.close()
    return out


FLOOR_APP = """import plotly.graph_objects as go
import streamlit as st

st.title("Floor")
st.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 3, 2])))
"""


def floor(browser, reps: int, timeout_ms: float) -> tuple[list[float], list[float], list[float]]:
    """The framework's own share of a cold page: a new session (new browser context) opening a Streamlit
    page that holds one three-point Plotly chart, until the chart is drawn. Returns wall seconds and the
    browser's main-thread script seconds (Chrome DevTools Performance metrics) per repetition, and the wall
    seconds of the same in a new tab of that browser (its cache warm); on a machine
    where chromium shares the server's cores, most of a cold page is this JavaScript, not the app."""
    import tempfile

    walls, js, cached = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "floor.py"
        app.write_text(FLOOR_APP, encoding="utf-8")
        with app_server(script=app) as (url, _pid):
            for _ in range(reps):
                ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
                page = ctx.new_page()
                cdp = ctx.new_cdp_session(page)
                cdp.send("Performance.enable")
                t0 = time.perf_counter()
                page.goto(url, timeout=timeout_ms)
                page.wait_for_selector(".js-plotly-plot", timeout=timeout_ms)  # (no sidebar: not wait_done)
                walls.append(time.perf_counter() - t0)
                js.append(script_seconds(cdp))
                tab = ctx.new_page()  # the same in a new tab, the app's JavaScript cached
                t0 = time.perf_counter()
                tab.goto(url, timeout=timeout_ms)
                tab.wait_for_selector(".js-plotly-plot", timeout=timeout_ms)
                cached.append(time.perf_counter() - t0)
                ctx.close()
    return walls, js, cached


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", nargs="+", default=[p.path for p in PAGES])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds allowed per step")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    pages = [p for p in PAGES if p.path in args.pages]
    timeout_ms = args.timeout * 1000
    with app_server(log=Path("/tmp/bench_pages_server.log")) as (url, pid), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})  # warm the server, untimed
            warm = ctx.new_page()
            for p in pages:
                warm.goto(f"{url}/{p.path}", timeout=timeout_ms)
                try:
                    wait_done(warm, None, timeout_ms, need_charts=p.charts)
                except TimeoutError:
                    print(f"  warm-up: {p.path} did not finish", flush=True)
            ctx.close()
            rows = []
            for p in pages:
                rows.append((p, bench_page(browser, url, pid, p, args.reps, timeout_ms)))
                print(f"  {p.path} done (load {os.getloadavg()[0]:.1f})", flush=True)
            forest = forest_draw(browser)
            forest_load = os.getloadavg()[0]
            floor_wall, floor_js, floor_cached = floor(browser, args.reps, timeout_ms)
            floor_load = os.getloadavg()[0]
        finally:
            browser.close()
    print()
    print(f"pages in chromium, medians of {args.reps}; 'cpu': server CPU s for the step; 'js': the browser's "
          f"JavaScript s (cold page); 'ld': 1-minute load average; 'cached': a new session in a new tab of a browser "
          f"that has the app's JavaScript cached")
    cols = ("cold", "cached", "warm", "option", "slider", "preset")
    print(f"{'page':<12} | " + " | ".join(f"{c + ' (target ' + format(TARGETS[c], 'g') + ' s)':<{32 if c == 'cold' else 24}}" for c in cols))
    for p, steps in rows:
        print(f"{p.path:<12} | " + " | ".join(steps[c].cell() for c in cols))
    print(f"200-study forest drawn in chromium: {statistics.median(forest):.2f} s (median of {len(forest)}; "
          f"target {TARGETS['forest']:g} s), load {forest_load:.1f}")
    print(f"framework floor (a new session opening a one-chart Streamlit page): {statistics.median(floor_wall):.2f} s, "
          f"of which browser JavaScript {statistics.median(floor_js):.2f} s (median of {len(floor_wall)}); "
          f"in a new tab of that browser (cache warm) {statistics.median(floor_cached):.2f} s; load {floor_load:.1f}")


if __name__ == "__main__":
    main()
