"""Dyadic congruence models and crossing lines (analysis.convergence, METHODS §8).

R references: tests/reference/make_congruence_reference.R (lm with the surface parameters as linear
combinations of the coefficients, lmerTest REML/Satterthwaite for the APIM) on demo_data/dyads_bdi.csv,
from an independent R implementation of the dyad means, centring and lead pairing. Tolerances: estimates
and SEs 1e-8 relative for the OLS response surface (closed form both sides); 1e-5 relative for the APIM
(REML optimum), Satterthwaite df 1e-4 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.convergence import dyad_scores
from analysis.convergence.congruence import apim, response_surface

ROOT = Path(__file__).resolve().parents[1]
REF = json.loads((ROOT / "tests" / "reference" / "congruence_reference.json").read_text())
BDI = pd.read_csv(ROOT / "demo_data" / "dyads_bdi.csv")


@pytest.mark.parametrize("case, control", [("initial", True), ("plain", False)])
def test_response_surface_equals_lm(case, control):
    r = REF["rsa"][case]
    res = response_surface(BDI, control_initial=control)
    assert res.n_dyads == r["n"] and res.center == pytest.approx(r["center"], rel=1e-12)
    np.testing.assert_allclose(res.coefficients["estimate"], r["coef_estimate"], rtol=1e-8)
    np.testing.assert_allclose(res.coefficients["se"], r["coef_se"], rtol=1e-8)
    s = res.surface
    assert list(s["term"]) == ["a1", "a2", "a3", "a4"] and (s["df"] == r["df"]).all()
    np.testing.assert_allclose(s["estimate"], r["surface_estimate"], rtol=1e-8)
    np.testing.assert_allclose(s["se"], r["surface_se"], rtol=1e-8)
    np.testing.assert_allclose(s["pvalue"], r["surface_p"], rtol=1e-8)
    assert res.r2 == pytest.approx(r["r2"], rel=1e-8)
    assert "a4" in res.summary()


@pytest.mark.parametrize("case, lag, prior", [("lag1_prior", 1, True), ("lag2_plain", 2, False)])
def test_apim_equals_lmertest(case, lag, prior):
    r = REF["apim"][case]
    res = apim(BDI, lag=lag, control_prior=prior)
    assert res.n_obs == r["n_obs"] and res.n_dyads == r["n_dyads"]
    f = res.fixed
    np.testing.assert_allclose(f["estimate"], r["estimate"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(f["se"], r["se"], rtol=1e-5)
    np.testing.assert_allclose(f["df"], r["df"], rtol=1e-4)
    np.testing.assert_allclose(f["pvalue"], r["pvalue"], rtol=1e-3, atol=1e-10)
    assert res.sigma2 == pytest.approx(r["sigma2"], rel=1e-5) and res.tau2 == pytest.approx(r["tau2"], rel=1e-4)


def _rsa_data(n=400, seed=1):
    """Known surface: Z = P + T − 0.5·(P − T)² + e (a1 = 2, a2 = 0, a3 = 0, a4 = −2), 4 sessions per dyad."""
    rng = np.random.default_rng(seed)
    p, t = rng.normal(0, 1, n), rng.normal(0, 1, n)
    z = p + t - 0.5 * (p - t) ** 2 + rng.normal(0, 0.5, n)
    rows = []
    for i in range(n):
        for s in range(1, 5):
            rows.append({"study": "S", "patient": f"d{i}", "session": s, "alliance": 4 + p[i],
                         "therapist_alliance": 4 + t[i], "symptoms": z[i] if s == 4 else 0.0})
    return pd.DataFrame(rows)


def test_response_surface_recovers_a_known_surface():
    res = response_surface(_rsa_data(), control_initial=False)
    s = res.surface.set_index("term")
    for term, truth in (("a1", 2.0), ("a2", 0.0), ("a3", 0.0), ("a4", -2.0)):
        assert s.at[term, "ci_low"] < truth < s.at[term, "ci_high"], term
    assert s.at["a4", "pvalue"] < 1e-6 and s.at["a1", "pvalue"] < 1e-6


def test_apim_recovers_actor_and_partner_effects():
    """Symptoms at t + 1 = −1.0·P^w_t + 0 ·T^w_t + dyad effect + noise (actor only: k_W ≈ 0)."""
    rng = np.random.default_rng(4)
    rows = []
    for i in range(150):
        u = rng.normal(0, 1)
        pw, tw = rng.normal(0, 1, 9), rng.normal(0, 1, 9)
        for s in range(9):
            y = 10 + u - (pw[s - 1] if s else 0.0) + rng.normal(0, 0.5)
            rows.append({"study": "S", "patient": f"d{i}", "session": s + 1, "alliance": 5 + pw[s],
                         "therapist_alliance": 5 + tw[s], "symptoms": y})
    res = apim(pd.DataFrame(rows), control_prior=False).fixed.set_index("term")
    assert res.at["actor_within", "estimate"] == pytest.approx(-1.0, abs=0.06)
    assert res.at["partner_within", "ci_low"] < 0 < res.at["partner_within", "ci_high"]


def test_crossing_lines_are_detected_and_the_reliability_claim_withdrawn():
    rows = []
    for i in range(6):
        cross = i < 3  # P rises through a flat T (lines cross) or stays above it
        for s in range(1, 7):
            p = (3.0 + 0.4 * s if cross else 6.0) + 0.05 * ((i + s) % 3)
            rows.append({"study": "S", "patient": f"d{i}", "session": s, "alliance": p,
                         "therapist_alliance": 4.4 + 0.03 * (s % 2), "symptoms": 10.0 - s})
    sc = dyad_scores(pd.DataFrame(rows))
    assert sc.table.set_index("patient")["lines_cross"].to_dict() == {f"d{i}": i < 3 for i in range(6)}
    assert sc.crossing["S"] == pytest.approx(0.5)
    note = sc.crossing_note("S")
    assert "3 of 6 dyads (50%)" in note and "not a rate of convergence" in note
    rel = [m for m in sc.messages if "estimated reliability" in m]
    assert rel and "attenuated by roughly" not in rel[0] and "does not say how well" in rel[0]
    signed = dyad_scores(pd.DataFrame(rows), discrepancy="signed")
    assert "attenuated by roughly" in [m for m in signed.messages if "estimated reliability" in m][0]
    flat = pd.DataFrame(rows).assign(alliance=lambda d: d["therapist_alliance"] + 1.0)
    assert dyad_scores(flat).crossing_note("S") is None


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="studies"):
        response_surface(pd.concat([BDI, BDI.assign(study="other")]))
    with pytest.raises(ValueError, match="lag"):
        apim(BDI, lag=0)
    with pytest.raises(ValueError, match="dyads"):
        response_surface(BDI[BDI["patient"].isin(BDI["patient"].unique()[:5])])
