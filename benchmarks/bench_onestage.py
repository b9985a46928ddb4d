"""Benchmark: one-stage IPD meta-analysis (analysis.onestage.one_stage) on the 17-study demo.

Usage::

    .venv/bin/python benchmarks/bench_onestage.py [--repeat 3] [--no-profile]

Prints the seconds of the one-stage fit of both directions on demo_data/ipd_17_studies.csv (35,535
rows, 5,349 patients; default options), per direction and in total, with and without the
profile-likelihood CI of τ, and the Pooled page's coverage simulation on the demo's design. Targets
(issue 21): ≤ 3 s for both directions; ≤ 10 s for the coverage panel. For comparison, lme4 +
lmerTest take about 10–20 s per direction on the same rows (fit, Satterthwaite df and profile).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.lagged import LagOptions, prepare_studies
from analysis.onestage import one_stage

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-profile", action="store_true", help="skip the profile-likelihood CI of tau")
    args = ap.parse_args()
    df = pd.read_csv(ROOT / "demo_data" / "ipd_17_studies.csv")
    options = LagOptions()
    data = prepare_studies(df, options)
    for profile in ([False] if args.no_profile else [False, True]):
        times, cpu, per = [], [], {}
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            res = one_stage(data, options, profile=profile)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            for d, f in res.fits.items():
                per.setdefault(d, []).append(f.fit_seconds)
        label = "with profile CI of tau" if profile else "without profile CI"
        print(f"one-stage, both directions, {len(df):,} rows ({label}): best {min(times):.2f} s, "
              f"median {statistics.median(times):.2f} s; CPU {min(cpu):.2f} s (wall time counts other processes' load)")
        for d, ts in per.items():
            print(f"  {d}: best {min(ts):.2f} s")
    # the Pooled page's coverage panel on the demo's design (target ≤ 10 s)
    from analysis.coverage import interval_coverage
    from analysis.pipeline import two_stage

    m = two_stage(df, options).pooled["alliance_to_symptoms"]
    t0, c0 = time.perf_counter(), time.process_time()
    cov = interval_coverage(np.sqrt(np.asarray(m.vi)), float(np.sqrt(m.tau2)))
    print(f"coverage panel (k = {m.k}, 2,000 + 400 Bayesian replications): {time.perf_counter() - t0:.2f} s, "
          f"CPU {time.process_time() - c0:.2f} s; " + "; ".join(
              f"{r.interval} {100 * r.coverage:.1f}%" for r in cov.to_frame().itertuples()))


if __name__ == "__main__":
    main()
