"""The coverage panel (analysis/coverage.py) against full patient-level replications (METHODS §6d).

    PYTHONPATH=. .venv/bin/python scripts/coverage_validation.py [--reps 300]

For each design of ``analysis.coverage.PANEL_CHECK``: 300 seeded collections of the issue's design at
k = 5 (50–300 patients, 7 sessions, true within effects ~ N(−0.10, 0.05²)) are pooled as the app pools
them (Knapp–Hartung, ad hoc; raw units); the share of CIs containing −0.10 is the patient-level coverage.
The panel's coverage is :func:`analysis.coverage.interval_coverage` on the collections' median SEs and
τ = 0.05. Prints one line per design (compare with ``PANEL_CHECK``); takes a few minutes.
"""

from __future__ import annotations

import argparse

import numpy as np

from analysis.coverage import PANEL_CHECK, interval_coverage
from analysis.lagged import LagOptions
from analysis.pipeline import two_stage
from analysis.simulate import simulate_collection

A2S = ("alliance_to_symptoms",)
DESIGNS = {
    "unbiased": ({"ar_alliance": 0.0, "ar_symptoms": 0.0, "mean_s_to_a": 0.0, "tau_s_to_a": 0.0},
                 LagOptions(directions=A2S, control_prior_outcome=False, standardize=False)),
    "default_model": ({}, LagOptions(directions=A2S, standardize=False)),
}


def check(design: str, reps: int = 300, truth: float = -0.10) -> dict:
    kw, options = DESIGNS[design]
    hits, ses, est = [], [], []
    for rep in range(reps):
        sim = simulate_collection(5, (50, 300), range(1, 8), mean_a_to_s=truth, tau_a_to_s=0.05, instruments=False,
                                  seed=5000 + rep, **kw)
        m = two_stage(sim.data, options).pooled["alliance_to_symptoms"]
        hits.append(m.ci_low <= truth <= m.ci_high)
        ses.append(np.sqrt(np.asarray(m.vi)))
        est.append(m.estimate)
    panel = interval_coverage(np.median(np.sort(np.array(ses), axis=1), axis=0), 0.05, reps=4000, bayes_reps=0,
                              seed=1).coverage("adhoc")
    return {"k": 5, "reps": reps, "patient_level": round(float(np.mean(hits)), 3), "panel": round(panel, 3),
            "bias": round(float(np.mean(est)) - truth, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=300)
    args = ap.parse_args()
    for design in DESIGNS:
        print(design, check(design, args.reps), "stated:", PANEL_CHECK[design])


if __name__ == "__main__":
    main()
