"""Benchmark: a class of N students on one server (issue 16).

Usage::

    .venv/bin/python benchmarks/bench_class.py                     # N = 1, 10, 30, websocket students
    .venv/bin/python benchmarks/bench_class.py --n 30

    .venv/bin/python benchmarks/bench_class.py --driver browser    # chromium contexts instead
    .venv/bin/python benchmarks/bench_class.py --varied --n 30 --warm   # 30 students, 30 different analyses
    .venv/bin/python benchmarks/bench_class.py --varied --n 30 --warm --class-mode   # ... as `make serve` runs

``--varied`` (issue 24): each student opens a shared link with a different centering × lag × estimator ×
page (Lagged or Pooled), waits for the first plot, then switches the centering; targets at N = 30: p95 ≤ 3 s
first result, ≤ 2 s after the change, 0 failures, RSS ≤ 4 GB. The first result is the first chart of the
run (the browser draws every element as it arrives); the times until the run has ended are printed too.

Starts the app (``streamlit run app.py --server.headless true --server.port P``, waits on
``/_stcore/health``, stops exactly that process at the end), then for each N opens N
independent sessions at once. By default the students are websocket clients speaking
Streamlit's protocol (benchmarks/ws_client.py). Each session opens the Pooled effects page
and waits for the forest plot (time to plot), then switches the centering to grand-mean and
waits until the forest plot shows the new estimates (time after the option change). With
``--driver browser`` they are N browser contexts in one Debian chromium (launched with
``--no-sandbox --disable-gpu --disable-background-networking``), doing the same: on a 2-core
machine 30 chromium contexts take the cores from the server (load average above 30), so the
times then measure the browsers more than the server; the server's CPU seconds per session are
comparable across drivers. A fresh server is started for each N so that no N profits from the
caches of the one before.

Prints, per N: p50 / p95 / max seconds to the first forest plot and after the change, the
number of failed sessions, the server's peak RSS while the sessions ran and its RSS a few
seconds after they closed, and the server's CPU seconds per session (a figure that does not
depend on what else the machine is doing, unlike the times; the load average is printed too). Targets at N = 30: p95 ≤ 5 s first plot, ≤ 3 s after the change,
0 failures, RSS ≤ 4 GB, memory back near baseline after the sessions close.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.app_server import GB, app_server, cpu_seconds, rss  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FOREST = """() => {
  const el = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
  if (!el || !el.data || !el.data.length) return null;
  return JSON.stringify(el.data.map(t => t.x));
}"""


def wait_idle(pid: int, timeout_s: float, quiet: float = 2.0) -> float:
    """Seconds until the server has used under 0.1 s of CPU in ``quiet`` seconds (its background fits done)."""
    t0 = time.perf_counter()
    last = cpu_seconds(pid)
    while time.perf_counter() - t0 < timeout_s:
        time.sleep(quiet)
        now = cpu_seconds(pid)
        if now - last < 0.1:
            break
        last = now
    return time.perf_counter() - t0


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


async def student(browser, url: str, timeout_ms: float, out: dict) -> None:
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await ctx.new_page()
        t0 = time.perf_counter()
        await page.goto(url + "/pooled", timeout=timeout_ms)
        await page.wait_for_function(f"() => ({FOREST})() !== null", timeout=timeout_ms, polling=50)
        out["first"] = time.perf_counter() - t0
        before = await page.evaluate(FOREST)
        radio = page.locator('[data-testid="stSidebar"] label').filter(has_text="Grand-mean (total effect)").first
        await radio.wait_for(timeout=timeout_ms)
        await radio.click()
        t1 = time.perf_counter()
        await page.wait_for_function(f"(b) => {{ const x = ({FOREST})(); return x !== null && x !== b; }}",
                                     arg=before, timeout=timeout_ms, polling=50)
        out["change"] = time.perf_counter() - t1
    except Exception as e:  # a failed session is counted, not fatal
        out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    finally:
        await ctx.close()


async def student_ws(url: str, timeout_s: float, out: dict) -> None:
    """The same student without a browser: Streamlit's websocket protocol (benchmarks/ws_client.py)."""
    from benchmarks.ws_client import Student, forest_x

    try:
        async with Student(url) as s:
            t0 = time.perf_counter()
            await s.run("pooled", timeout=timeout_s)
            if not s.plot_specs:
                raise RuntimeError("no forest plot in the first run")
            out["first"] = time.perf_counter() - t0
            before = forest_x(s.plot_specs[0])
            t1 = time.perf_counter()
            await s.run("pooled", [s.radio_state("opt_centering", "Grand-mean (total effect)")], timeout=timeout_s)
            if not s.plot_specs or forest_x(s.plot_specs[0]) == before:
                raise RuntimeError("the forest plot did not change with the centering")
            out["change"] = time.perf_counter() - t1
    except Exception as e:  # a failed session is counted, not fatal
        out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


CENTERINGS = {"none": "None (total effect)", "grand_mean": "Grand-mean (total effect)",
              "person_mean": "Person-mean (within / between)", "detrended": "Detrended (within / between)"}


def varied_choices(n: int, seed: int = 24) -> list[dict]:
    """``n`` different students: each a different centering × lag × estimator × page (shuffled with a fixed
    seed), and the centering each switches to afterwards."""
    import itertools
    import random

    combos = list(itertools.product(CENTERINGS, (1, 2, 3, 0), ("mixed", "fixed_effects"), ("lagged", "pooled")))
    random.Random(seed).shuffle(combos)
    out = []
    for i in range(n):
        c, lag, est, page = combos[i % len(combos)]
        others = [k for k in CENTERINGS if k != c]
        out.append({"centering": c, "lag": lag, "estimator": est, "page": page, "then": others[i % len(others)]})
    return out


async def student_varied_ws(url: str, choice: dict, timeout_s: float, out: dict) -> None:
    """A student who opens a shared link with their own options (page, centering, lag, estimator), then
    switches the centering (websocket client, benchmarks/ws_client.py). Times: until the first chart arrives
    (what the student sees first: the browser draws each element as it arrives) and until the run ends."""
    from benchmarks.ws_client import Student

    query = f"centering={choice['centering']}&lag={choice['lag']}&estimator={choice['estimator']}"
    try:
        async with Student(url) as s:
            t0 = time.perf_counter()
            await s.run(choice["page"], timeout=timeout_s, query=query)
            if s.errors or not s.plot_specs:
                raise RuntimeError(f"first run: {s.errors[:1] or 'no plot'}")
            out["first"], out["first_done"] = s.first_plot_at - t0, time.perf_counter() - t0
            before = s.plot_specs[0]
            t1 = time.perf_counter()
            await s.run(choice["page"], [s.radio_state("opt_centering", CENTERINGS[choice["then"]])],
                        timeout=timeout_s, query=query)
            if s.errors or not s.plot_specs:
                raise RuntimeError(f"after the change: {s.errors[:1] or 'no plot'}")
            if s.plot_specs[0] == before:
                raise RuntimeError("the plot did not change with the centering")
            out["change"], out["change_done"] = s.first_plot_at - t1, time.perf_counter() - t1
    except Exception as e:  # a failed session is counted, not fatal
        out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


async def run_varied_ws(url: str, n: int, timeout_s: float, arrive: float = 0.0) -> list[dict]:
    """The varied class; ``arrive`` > 0: the students open their links one after another, evenly spread over
    ``arrive`` seconds (0: all in the same instant, the worst case)."""
    results = [{} for _ in range(n)]

    async def later(i, c, r):
        await asyncio.sleep(i * arrive / n)
        await student_varied_ws(url, c, timeout_s, r)

    await asyncio.gather(*(later(i, c, r) for i, (c, r) in enumerate(zip(varied_choices(n), results))))
    return results


async def run_class_ws(url: str, n: int, timeout_s: float) -> list[dict]:
    results = [{} for _ in range(n)]
    await asyncio.gather(*(student_ws(url, timeout_s, r) for r in results))
    return results


async def run_class(url: str, n: int, timeout_s: float) -> list[dict]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            results = [{} for _ in range(n)]
            await asyncio.gather(*(student(browser, url, timeout_s * 1000, r) for r in results))
            return results
        finally:
            await browser.close()


class PeakRSS:
    """Sample the server's RSS every 0.2 s in a thread (VmHWM is process-lifetime, this is per phase)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid)[0])
            time.sleep(0.2)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="+", default=[1, 10, 30])
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per step per session")
    ap.add_argument("--driver", choices=["browser", "ws"], default="ws",
                    help="browser: N chromium contexts (the browser shares the server's CPU); ws: N clients "
                         "speaking Streamlit's websocket protocol (server cost only)")
    ap.add_argument("--warm", action="store_true",
                    help="one untimed session first (the instructor opened the app before the class): the "
                         "import, demo and default-options fit are then cached, as they are in class")
    ap.add_argument("--class-mode", action="store_true",
                    help="start the server as `make serve` does (ALLIANCE_CLASS=1: every centering × lag × estimator "
                         "fitted in the background after the data load); with --warm, the class starts once the "
                         "server is idle again")
    ap.add_argument("--arrive", type=float, default=0.0,
                    help="with --varied: the students open their links evenly spread over this many seconds "
                         "(default 0: all in the same instant)")
    ap.add_argument("--varied", action="store_true",
                    help="each student a different centering × lag × estimator × page (a shared link), then "
                         "another centering (websocket clients); targets p95 ≤ 3 s first result, ≤ 2 s after")
    args = ap.parse_args()
    if args.varied:
        args.driver = "ws"
    rows, done_rows = [], []
    for n in args.n:
        env = {"ALLIANCE_CLASS": "1"} if args.class_mode else None
        with app_server(log=Path(f"/tmp/bench_class_server_{n}.log"), env=env) as (url, pid):
            if args.warm:
                asyncio.run(run_class_ws(url, 1, args.timeout))
                if args.class_mode:
                    print(f"  class mode: background fits took {wait_idle(pid, args.timeout):.1f} s", flush=True)
            base = rss(pid)[0]
            load = os.getloadavg()[0]
            cpu0 = cpu_seconds(pid)
            with PeakRSS(pid) as peak:
                t = time.perf_counter()
                runner = (run_varied_ws if args.varied else run_class if args.driver == "browser" else
                          run_class_ws)
                res = asyncio.run(runner(url, n, args.timeout, args.arrive) if args.varied else
                                  runner(url, n, args.timeout))
                wall = time.perf_counter() - t
            cpu = cpu_seconds(pid) - cpu0
            time.sleep(5)
            after = rss(pid)[0]
        first = [r["first"] for r in res if "first" in r]
        change = [r["change"] for r in res if "change" in r]
        errors = [r["error"] for r in res if "error" in r]
        rows.append((n, first, change, errors, base, peak.peak, after, wall))
        done_rows.append((n, ([r["first_done"] for r in res if "first_done" in r],
                              [r["change_done"] for r in res if "change_done" in r])))
        print(f"N={n}: done in {wall:.1f} s; {len(errors)} failed" + (f" (first: {errors[0]})" if errors else "")
              + f"; server CPU {cpu:.1f} s ({cpu / n:.2f} s per session); machine load average at start {load:.1f}",
              flush=True)
    print()
    print(("varied class: each student another centering × lag × estimator × page, then another centering"
           + (f" (arriving over {args.arrive:g} s)" if args.arrive else " (all in the same instant)") + "; "
           if args.varied else "") + f"driver: {args.driver}" + (" (warm server: one session before the class)" if args.warm else
                                       " (cold server: the first session pays the imports and the first fit)")
          + ("; class mode (make serve: every centering × lag × estimator fitted after the data load)"
             if args.class_mode else ""))
    print(f"{'N':>3} | {'first plot p50':>14} {'p95':>6} {'max':>6} | {'after change p50':>16} {'p95':>6} "
          f"{'max':>6} | {'failed':>6} | {'RSS base':>8} {'peak':>6} {'after':>6} (GB)")
    for n, first, change, errors, base, peak, after, _wall in rows:
        print(f"{n:>3} | {pct(first, .5):>14.2f} {pct(first, .95):>6.2f} {max(first, default=float('nan')):>6.2f} | "
              f"{pct(change, .5):>16.2f} {pct(change, .95):>6.2f} {max(change, default=float('nan')):>6.2f} | "
              f"{len(errors):>6} | {base / GB:>8.2f} {peak / GB:>6.2f} {after / GB:>6.2f}")
    if args.varied:  # the same runs, until the script has finished (later sections still arriving after the chart)
        print("until the run ended: " + "; ".join(
            f"N={n}: first p95 {pct(done[0], .95):.2f} s, after the change p95 {pct(done[1], .95):.2f} s"
            for n, done in done_rows))
    n, first, change, errors, base, peak, after, _ = rows[-1]
    t_first, t_change = (3, 2) if args.varied else (5, 3)
    ok = (pct(first, .95) <= t_first and pct(change, .95) <= t_change and not errors and peak <= 4 * GB)
    print(f"targets at N = {n} (p95 ≤ {t_first} s first plot, ≤ {t_change} s after change, 0 failures, "
          f"RSS ≤ 4 GB): {'met' if ok else 'NOT met'}")
    if first:
        print(f"(mean first plot {statistics.mean(first):.2f} s)")


if __name__ == "__main__":
    main()
