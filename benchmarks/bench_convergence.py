"""Benchmark: convergence growth Models 1–3 (REML fits with Satterthwaite df + ML refits) on the
139-dyad demo set (demo_data/dyads_gsi.csv, 556 rows).

Usage::

    .venv/bin/python benchmarks/bench_convergence.py
    .venv/bin/python benchmarks/bench_convergence.py --repeat 9 --file demo_data/dyads_bdi.csv

Prints the seconds of ``analysis.convergence.growth_models(df)`` with the defaults the app uses
(dyad scores included, Models 1–3, REML + Satterthwaite df, ML refit for the AICs): best and median of
``--repeat`` runs after one warm-up, plus the split into dyad scores / REML fits / ML refits and
the stacked dyadic model for reference. Target: < 2 s for Models 1–3.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd

from analysis.convergence import dyad_scores, dyadic_model, growth_models

ROOT = Path(__file__).resolve().parents[1]


def _time(f, repeat):
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return min(out), statistics.median(out)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", default=str(ROOT / "demo_data" / "dyads_gsi.csv"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    df = pd.read_csv(args.file, dtype={"study": "string", "patient": "string", "therapist": "string"})
    n_dyads = df["patient"].nunique()
    print(f"data: {Path(args.file).name}, {n_dyads} dyads, {len(df)} rows")

    growth_models(df)  # warm-up (imports, caches)
    best, med = _time(lambda: growth_models(df), args.repeat)
    print(f"Models 1-3, REML + Satterthwaite + ML refits: best {best:.3f} s, median {med:.3f} s "
          f"({args.repeat} runs; target < 2 s)")

    scores = dyad_scores(df)
    b_sc, _ = _time(lambda: dyad_scores(df), args.repeat)
    b_reml, _ = _time(lambda: growth_models(df, scores=scores, ml_refit=False), args.repeat)
    b_nosat, _ = _time(lambda: growth_models(df, scores=scores, ml_refit=False, satterthwaite=False), args.repeat)
    print(f"  dyad scores {b_sc:.3f} s; REML fits with Satterthwaite df {b_reml:.3f} s "
          f"(of which Satterthwaite ≈ {b_reml - b_nosat:.3f} s); ML refits ≈ {max(best - b_reml - b_sc, 0):.3f} s")
    b_dy, _ = _time(lambda: dyadic_model(df), max(1, args.repeat // 2))
    print(f"stacked dyadic model (4 × 4 random effects): best {b_dy:.3f} s")


if __name__ == "__main__":
    main()
