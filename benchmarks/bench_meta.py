"""Benchmark: 10,000 REML random-effects fits of k = 17 studies (METHODS §6).

Prints wall-clock times for
  1. a loop of single calls ``random_effects(..., ci_tau2=False)`` (core fit),
  2. the same loop with the default ``ci_tau2=True`` (adds the Q-profile CI,
     two root searches per fit),
  3. one vectorised call ``random_effects_many(Y, V)`` over all 10,000 problems.
Target: < 2 s for 10,000 fits. Timings are the best of ``--repeat`` runs, as
wall-clock and as CPU time of this process (other processes on a busy machine
inflate the wall-clock figure, less so the CPU figure). Not a test.

    .venv/bin/python benchmarks/bench_meta.py [--n 10000] [--k 17] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from analysis.meta import random_effects, random_effects_many


def _best(fn, repeat: int) -> tuple[float, float]:
    """Best wall-clock and best CPU (process) time over ``repeat`` runs."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def _line(label: str, t: tuple[float, float], n: int) -> str:
    return (f"  {label:<48} wall {t[0]:7.3f} s ({1e6 * t[0] / n:6.1f} us/fit)   "
            f"cpu {t[1]:7.3f} s")


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
    print(_line("loop: random_effects(ci_tau2=False)", _best(loop_core, args.repeat), n))
    print(_line("loop: random_effects() incl. Q-profile tau2 CI",
                _best(loop_full, max(1, args.repeat - 1)), n))
    print(_line("one call: random_effects_many(Y, V)", _best(batched, args.repeat), n))
    res = random_effects_many(Y, V, method="REML")
    print(f"  non-converged (Fisher scoring, as metafor would report): "
          f"{int((~res['converged']).sum())} of {n}")


if __name__ == "__main__":
    main()
