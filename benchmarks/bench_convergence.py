"""Benchmark: the Convergence page and its statistics on the 139-dyad demo (demo_data/dyads_gsi.csv).

Usage::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_convergence.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_convergence.py --repeat 9 --file demo_data/dyads_bdi.csv

Prints

* the page render time with Streamlit's AppTest (a fresh app, i.e. a cold server with empty caches, and a
  rerun of the same page, i.e. a warm server): targets < 8 s cold and < 2 s warm, on the Study 2 preset
  (139 dyads after the paper's rules) and on the loaded 139-dyad demo;
* ``growth_models`` (Models 1–3, REML + Satterthwaite df + ML refits + the null-model tests) with the
  split into dyad scores (OLS and multilevel), REML fits and the stacked dyadic model.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd

from analysis import presets
from analysis.convergence import apply_sample_rules, dyad_scores, dyadic_model, growth_models

ROOT = Path(__file__).resolve().parents[1]
STUDY2 = "convergence_001_study2"  # preset key (analysis/presets.py)


def _time(f, repeat):
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return min(out), statistics.median(out)


def page_times(file: Path) -> None:
    """Cold (new app, empty caches) and warm (rerun) render of the Convergence page."""
    from streamlit.testing.v1 import AppTest

    from analysis import data as adata
    from ui.compute import fingerprint

    raw = adata.load(file)
    df = adata.to_canonical(raw, adata.suggest_mapping(raw))
    for label, setup in (("Study 2 preset (139 dyads after the rules)", "preset"),
                         (f"as it opens with {file.name} loaded", "loaded")):
        import streamlit as st

        st.cache_data.clear()
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.session_state["dataset"] = {"df": df, "name": file.name, "source": "upload", "notes": [],
                                       "key": fingerprint(df)}
        at.run()
        at.switch_page("app_pages/convergence.py")
        if setup == "preset":
            at.session_state["conv_preset"] = STUDY2
        t0 = time.perf_counter()
        at.run()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        at.run()
        warm = time.perf_counter() - t0
        assert not at.exception, [e.value for e in at.exception]
        print(f"page, {label}: cold {cold:.2f} s (target < 8 s), warm {warm:.2f} s (target < 2 s)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", default=str(ROOT / "demo_data" / "dyads_gsi.csv"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-page", action="store_true", help="skip the AppTest page timings")
    args = ap.parse_args(argv)
    df = pd.read_csv(args.file, dtype={"study": "string", "patient": "string", "therapist": "string"})
    n_dyads = df["patient"].nunique()
    print(f"data: {Path(args.file).name}, {n_dyads} dyads, {len(df)} rows")
    if not args.no_page:
        page_times(Path(args.file))

    pr = presets.get(STUDY2)
    conv = pr.page_options("convergence")
    on_demo = Path(args.file).name == pr.demo_file
    d2 = apply_sample_rules(df, conv["rules"]).data if on_demo else df
    opts = dict(conv["options"]) if on_demo else {}
    growth_models(d2, **opts)  # warm-up (imports)
    best, med = _time(lambda: growth_models(d2, **opts), args.repeat)
    print(f"Models 1-3 (+ null-model tests), REML + Satterthwaite + ML refits: best {best:.3f} s, "
          f"median {med:.3f} s ({args.repeat} runs)")
    b_sc, _ = _time(lambda: dyad_scores(d2), args.repeat)
    b_ml, _ = _time(lambda: dyad_scores(d2, method="multilevel"), max(1, args.repeat // 2))
    scores = dyad_scores(d2)
    b_reml, _ = _time(lambda: growth_models(d2, scores=scores, ml_refit=False, random_tests=False), args.repeat)
    print(f"  dyad scores: OLS {b_sc:.3f} s, multilevel {b_ml:.3f} s; REML fits only {b_reml:.3f} s")
    b_dy, _ = _time(lambda: dyadic_model(d2), max(1, args.repeat // 2))
    print(f"stacked dyadic model (4 × 4 random effects): best {b_dy:.3f} s")


if __name__ == "__main__":
    main()
