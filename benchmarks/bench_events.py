"""Benchmark: the "Ruptures & gains" page on the IPD-MA demo (17 studies, 5,350 patients).

Renders the page with Streamlit's AppTest and prints wall-clock and CPU times for
  1. the cold visit (empty caches: every analysis runs, incl. the chance reference),
  2. a warm rerun (nothing changed: every result comes from the cache),
  3. changing the rupture k (one rupture analysis and its chance reference re-run),
  4. a warm rerun after that.
Target: warm < 2 s. Timings on a shared 2-core machine are noisy; CPU time is printed
too. Not a test.

    .venv/bin/python benchmarks/bench_events.py [--app PATH/TO/app.py]

``--app`` times another checkout of the app (e.g. the page before the refactoring:
``git archive <commit> | tar -x -C /tmp/old`` and pass /tmp/old/app.py); the k widget key
is ``ev_k`` in both.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def _timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", default=str(ROOT / "app.py"))
    ap.add_argument("--k", type=float, default=None, help="k to switch to (default: current k + 0.5)")
    args = ap.parse_args()
    app = Path(args.app).resolve()
    sys.path.insert(0, str(app.parent))
    at = AppTest.from_file(str(app), default_timeout=600)
    at.run()
    at.switch_page("app_pages/events.py" if (app.parent / "app_pages").is_dir() else "pages/events.py")
    print(f"events page of {app}")
    for label, fn in (("cold visit", at.run), ("warm rerun", at.run)):
        wall, cpu = _timed(fn)
        print(f"  {label:<24} wall {wall:6.2f} s   cpu {cpu:6.2f} s")
    assert not at.exception, [e.message for e in at.exception]
    k = at.number_input(key="ev_k")
    new_k = args.k if args.k is not None else float(k.value) + 0.5
    k.set_value(new_k)
    wall, cpu = _timed(at.run)
    print(f"  {'change k to ' + format(new_k, 'g'):<24} wall {wall:6.2f} s   cpu {cpu:6.2f} s")
    wall, cpu = _timed(at.run)
    print(f"  {'warm rerun':<24} wall {wall:6.2f} s   cpu {cpu:6.2f} s")


if __name__ == "__main__":
    main()
