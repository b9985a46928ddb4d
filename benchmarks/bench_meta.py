"""Benchmark: 10,000 REML random-effects fits of k = 17 studies (METHODS §6).

Prints wall-clock times for
  1. a loop of single calls ``random_effects(..., ci_tau2=False)`` (core fit),
  2. the same loop with the default ``ci_tau2=True`` (adds the Q-profile CI,
     two root searches per fit),
  3. one vectorised call ``random_effects_many(Y, V)`` over all 10,000 problems.
Target: < 2 s for 10,000 fits. Timings are the best of ``--repeat`` runs; other
processes on the machine inflate them. Not a test.

    .venv/bin/python benchmarks/bench_meta.py [--n 10000] [--k 17] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from analysis.meta import random_effects, random_effects_many


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=17)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=20240501)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    n, k = args.n, args.k
    # sampling variances of standardized lagged effects (roughly 40-400 pairs)
    V = rng.uniform(0.0025, 0.025, size=(n, k))
    Y = rng.normal(0.1, np.sqrt(V + 0.01))
    rows_y = list(Y)
    rows_v = list(V)

    def loop_core():
        for y, v in zip(rows_y, rows_v):
            random_effects(y, v, method="REML", ci_tau2=False)

    def loop_full():
        for y, v in zip(rows_y, rows_v):
            random_effects(y, v, method="REML")

    def batched():
        random_effects_many(Y, V, method="REML")

    print(f"{n:,} REML fits, k = {k}, best of {args.repeat} (load average "
          f"{os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs)")
    t_core = _best(loop_core, args.repeat)
    print(f"  loop of random_effects(ci_tau2=False): {t_core:7.3f} s "
          f"({1e6 * t_core / n:6.1f} us per fit)")
    t_full = _best(loop_full, max(1, args.repeat - 1))
    print(f"  loop of random_effects() with Q-profile tau2 CI: {t_full:7.3f} s "
          f"({1e6 * t_full / n:6.1f} us per fit)")
    t_many = _best(batched, args.repeat)
    print(f"  random_effects_many (vectorised):      {t_many:7.3f} s "
          f"({1e6 * t_many / n:6.1f} us per fit)")
    res = random_effects_many(Y, V, method="REML")
    print(f"  non-converged (Fisher scoring, as metafor would report): "
          f"{int((~res['converged']).sum())} of {n}")


if __name__ == "__main__":
    main()
