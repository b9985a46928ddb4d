"""Tests for analysis.convergence (METHODS §8).

Reference values come from ``tests/reference/make_convergence_reference.R``
(lme4 / lmerTest, dyad scores recomputed with ``lm`` per dyad) run on the
committed ``tests/reference/convergence_*.csv`` data sets. Those CSVs are
written by this file's ``write_reference_inputs`` (run it as a script:
``.venv/bin/python tests/test_convergence.py``), then
``Rscript tests/reference/make_convergence_reference.R`` writes
``convergence_reference.json``. The tests only read the committed CSV/JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from analysis.convergence import (  # noqa: E402
    DyadScores,
    dyad_scores,
    dyadic_model,
    growth_models,
    models_table,
    pooled_convergence,
    trajectories,
)
from analysis.simulate import SYMPTOM_INSTRUMENTS, simulate_dyads  # noqa: E402

REF = ROOT / "tests" / "reference"
DATASETS = ("study1", "study2", "missing")


# ----------------------------------------------------------------------------
# designs (also used to write the reference inputs)


def design_study1(effect: float = 0.0, seed: int = 2021, n: int = 96) -> tuple[pd.DataFrame, dict]:
    """The paper's Study 1: 96 dyads, sessions 1–14, BDI-II, P and T every session."""
    sim = simulate_dyads(
        n, range(1, 15), study="Study 1", symptom_instrument=SYMPTOM_INSTRUMENTS[0],
        symptom_intercept=1.3, symptom_slope=-0.08, convergence_on_slope=effect, n_therapists=34, seed=seed,
    )
    return sim.data, sim.truth


def design_study2(effect: float = 0.0, seed: int = 2022, n: int = 139) -> tuple[pd.DataFrame, dict]:
    """The paper's Study 2: 139 dyads, WAI at sessions 3, 12, 20; GSI also at termination (25–40).

    Simulated on every session 3–40 (so trajectories are linear in the real
    session number), then reduced to the measured occasions; the termination
    session is drawn per dyad and carries symptoms only.
    """
    sim = simulate_dyads(
        n, range(3, 41), study="Study 2", symptom_instrument=SYMPTOM_INSTRUMENTS[3],
        alliance_growth=0.015, symptom_intercept=0.3, symptom_slope=-0.03, sd_symptom_slope=0.015, convergence_on_slope=effect, n_therapists=52, seed=seed,
    )
    d = sim.data
    rng = np.random.default_rng(seed + 1)
    ids = d["patient"].unique()
    term = pd.Series(rng.integers(25, 41, size=len(ids)), index=ids)
    t_i = term.loc[d["patient"]].to_numpy()
    keep = d["session"].isin([3, 12, 20]).to_numpy() | (d["session"].to_numpy() == t_i)
    d = d.loc[keep].reset_index(drop=True)
    at_term = ~d["session"].isin([3, 12, 20])
    d.loc[at_term, ["alliance", "therapist_alliance"]] = np.nan
    return d, sim.truth


def design_missing(seed: int = 7) -> pd.DataFrame:
    """60 dyads, sessions 1–10, missing sessions and values, a therapist effect on symptoms.

    Dyad D001 keeps a single joint session (it must be excluded).
    """
    sim = simulate_dyads(60, range(1, 11), study="Missing", missing_sessions=0.25, n_therapists=10, seed=seed)
    d = sim.data.copy()
    rng = np.random.default_rng(seed + 100)
    for col, pr in (("alliance", 0.08), ("therapist_alliance", 0.08), ("symptoms", 0.05)):
        d.loc[rng.random(len(d)) < pr, col] = np.nan
    th_eff = pd.Series(rng.normal(0, 4.0, size=d["therapist"].nunique()), index=sorted(d["therapist"].unique()))
    d["symptoms"] = d["symptoms"] + np.round(th_eff.loc[d["therapist"]].to_numpy())
    # dyad D001: only one session with both ratings
    rows = np.flatnonzero(d["patient"] == "D001")
    d.loc[rows[1:], "therapist_alliance"] = np.nan
    d.loc[rows[0], ["alliance", "therapist_alliance"]] = [5.0, 4.5]
    return d


def _datasets():
    return {
        "study1": design_study1(0.0)[0],
        "study2": design_study2(-0.03)[0],
        "missing": design_missing(),
    }


def write_reference_inputs(out: Path = REF) -> None:
    """Write convergence_<name>.csv: raw data + the centered dyad-level predictors Python computed."""
    for name, d in _datasets().items():
        res = growth_models(d, models=(1,), satterthwaite=False, ml_refit=False)
        resf = growth_models(d, models=(1,), satterthwaite=False, ml_refit=False, early_discrepancy="fitted")
        s = res.sample.set_index("patient")
        sf = resf.sample.set_index("patient")
        out_d = d.copy()
        out_d["in_model"] = out_d["patient"].isin(s.index).astype(int)
        out_d["time"] = out_d["session"] - res.time_origin
        for c in s.columns:
            out_d[c] = s[c].reindex(out_d["patient"]).to_numpy()
        out_d["early_discrepancy_fitted"] = sf["early_discrepancy"].reindex(out_d["patient"]).to_numpy()
        out_d.to_csv(out / f"convergence_{name}.csv", index=False)  # repr floats round-trip exactly
        print(name, len(out_d), "rows,", out_d["in_model"].groupby(out_d["patient"]).first().sum(), "dyads in model")


def _load(name):
    d = pd.read_csv(REF / f"convergence_{name}.csv", dtype={"study": "string", "patient": "string",
                                                              "therapist": "string"})
    return d


@pytest.fixture(scope="module")
def ref():
    return json.loads((REF / "convergence_reference.json").read_text())


if __name__ == "__main__":
    write_reference_inputs()
