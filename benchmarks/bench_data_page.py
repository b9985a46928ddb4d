"""Benchmark: what a fresh browser waits for on the Data page (issue 13).

Starts the app, opens ``/data`` in a new Debian-chromium context (empty cache) and prints
  * seconds from navigation to: the "Loaded:" header, the script finished (no "Running…"),
    every plotly chart drawn (an SVG inside each chart element), the page idle;
  * the number of elements of each kind (charts, dataframes, download buttons, expanders);
  * the largest and slowest network resources (what the browser downloads);
  * the websocket messages from the server (count and bytes: what the script sends).
Run it before and after a change to compare. Not a test.

    .venv/bin/python benchmarks/bench_data_page.py [--runs 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser_util import CHROMIUM, CHROMIUM_ARGS, running_app  # noqa: E402

COUNTS = {
    "plotly charts": '[data-testid="stPlotlyChart"]',
    "dataframes": '[data-testid="stDataFrame"]',
    "static tables": '[data-testid="stTable"]',
    "download buttons": '[data-testid="stDownloadButton"]',
    "expanders": '[data-testid="stExpander"]',
    "buttons": '[data-testid="stButton"]',
}


def one_run(url: str, browser) -> dict:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    ws_frames = {"n": 0, "bytes": 0}
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: (
        ws_frames.__setitem__("n", ws_frames["n"] + 1),
        ws_frames.__setitem__("bytes", ws_frames["bytes"] + len(payload)))))
    t0 = time.perf_counter()
    page.goto(url + "/data")
    marks = {}
    page.get_by_text("Loaded:").first.wait_for(timeout=120_000)
    marks["'Loaded:' header shown"] = time.perf_counter() - t0
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=120_000)
    marks["script finished (no 'Running…')"] = time.perf_counter() - t0
    page.wait_for_function(
        """() => { const c = document.querySelectorAll('[data-testid="stPlotlyChart"]');
                   return [...c].every(e => e.querySelector('svg.main-svg')); }""",
        timeout=120_000)
    marks["every plotly chart drawn"] = time.perf_counter() - t0
    page.wait_for_function("""() => !!document.querySelector('[data-testid="stDataFrame"] canvas, [data-testid="stTable"] tbody tr')""",
                           timeout=120_000)
    marks["studies table drawn"] = time.perf_counter() - t0
    # the main thread is free again: a 50 ms timer fires within 100 ms
    while page.evaluate("() => new Promise(r => { const t = performance.now(); setTimeout(() => "
                        "r(performance.now() - t), 50); })") > 100:
        pass
    marks["main thread idle"] = time.perf_counter() - t0
    page.wait_for_load_state("networkidle", timeout=120_000)
    marks["network idle"] = time.perf_counter() - t0
    counts = {k: page.locator(v).count() for k, v in COUNTS.items()}
    resources = page.evaluate(
        """() => performance.getEntriesByType('resource').map(r => ({name: r.name.split('/').slice(-1)[0].slice(0, 60),
             size: r.encodedBodySize || r.transferSize || 0, dur: r.duration}))""")
    long_tasks = page.evaluate(
        """() => new Promise(res => { let t = 0; try { new PerformanceObserver(l => { for (const e of l.getEntries())
             t += e.duration; }).observe({type: 'longtask', buffered: true}); } catch (e) {} setTimeout(() => res(t), 200); })""")
    context.close()
    return {"marks": marks, "counts": counts, "resources": resources, "ws": ws_frames, "long_tasks_ms": long_tasks}


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    with running_app() as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            for i in range(args.runs):
                r = one_run(url, browser)
                print(f"run {i + 1} (fresh browser context{', warm server caches' if i else ''}):")
                for k, v in r["marks"].items():
                    print(f"  {k:<36s} {v:6.2f} s")
                print("  elements: " + ", ".join(f"{k} {v}" for k, v in r["counts"].items()))
                print(f"  websocket: {r['ws']['n']} messages, {r['ws']['bytes'] / 1e6:.2f} MB from the server; "
                      f"main-thread long tasks {r['long_tasks_ms'] / 1000:.2f} s")
                res = r["resources"]
                total = sum(x["size"] for x in res)
                print(f"  {len(res)} resources, {total / 1e6:.2f} MB; largest:")
                for x in sorted(res, key=lambda x: -x["size"])[:5]:
                    print(f"    {x['size'] / 1e6:6.2f} MB {x['dur'] / 1000:5.2f} s  {x['name']}")
        finally:
            browser.close()


if __name__ == "__main__":
    main()
