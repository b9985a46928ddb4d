"""The DPM under an RI-CLPM (METHODS §15.2, §15.4; benchmarks/bench_dpm_bias.py): it recovers the within-person
cross-lags only when the within-session innovations are uncorrelated; otherwise it converges to its own
large-sample value (:func:`analysis.dynamics.dpm_limit`), which the estimator check reports and explains."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import dynamics

WAVES = tuple(range(1, 8))
T = len(WAVES)
TRUTH = {"alliance_to_symptoms": -0.15, "symptoms_to_alliance": -0.20}


def _moments(rescov: float):
    """Implied moments of an RI-CLPM with known parameters (innovation variances 1, correlation ``rescov``)."""
    model = dynamics.riclpm_model(WAVES)
    value = {"ar_alliance": 0.3, "ar_symptoms": 0.4, **TRUTH, "var_ri_alliance": 1.0, "var_ri_symptoms": 1.0,
             "cov_ri": -0.3, "var_within_alliance[1]": 1.5, "var_within_symptoms[1]": 1.5, "cov_within[1]": rescov}
    theta = np.array([value.get(n, rescov if n.startswith("rescov") else 1.0 if n.startswith("resvar")
                                else 5.0 if n.startswith("mean_alliance") else 20.0) for n in model.names])
    return model.implied(theta)


def test_dpm_large_sample_value_is_the_cross_lag_only_without_within_session_covariance():
    mu, sigma = _moments(0.0)
    for direction, outcome in zip(dynamics.CROSS_LAGS, ("symptoms", "alliance")):
        assert dynamics.dpm_limit(mu, sigma, WAVES, outcome=outcome)[direction] == pytest.approx(TRUTH[direction],
                                                                                               abs=1e-6)
    mu, sigma = _moments(0.4)
    for direction, outcome in zip(dynamics.CROSS_LAGS, ("symptoms", "alliance")):
        lim = dynamics.dpm_limit(mu, sigma, WAVES, outcome=outcome)[direction]
        assert abs(lim - TRUTH[direction]) > 0.3 * abs(TRUTH[direction]), (direction, lim)


def test_dpm_estimate_on_a_large_sample_is_its_large_sample_value_not_the_cross_lag():
    """Recovery on data with known truth: 4000 patients from an RI-CLPM with correlated within-session
    innovations. The RI-CLPM's CI covers the true cross-lag; the DPM's covers its large-sample value and
    misses the truth."""
    mu, sigma = _moments(0.4)
    Y = np.random.default_rng(2026).multivariate_normal(mu, sigma, size=4000)
    ri = dynamics.riclpm_wide(Y, WAVES, fit_indices=False, standardized=False)
    lim = dynamics.dpm_limit(mu, sigma, WAVES, outcome="symptoms")["alliance_to_symptoms"]
    dp = dynamics.dpm_wide(np.hstack([Y[:, T:], Y[:, :T]]), WAVES, outcome="symptoms", fit_indices=False,
                           standardized=False)
    r, d = ri.row("alliance_to_symptoms"), dp.row("alliance_to_symptoms")
    assert r["ci_low"] <= TRUTH["alliance_to_symptoms"] <= r["ci_high"]
    assert d["ci_low"] <= lim <= d["ci_high"]
    assert not d["ci_low"] <= TRUTH["alliance_to_symptoms"] <= d["ci_high"]


def test_estimator_check_reports_and_explains_the_dpm_large_sample_bias():
    from analysis.estimator_check import EstimatorCheck, estimator_check

    mu, sigma = _moments(0.4)
    Y = np.random.default_rng(7).multivariate_normal(mu, sigma, size=300)
    pat, wave = np.meshgrid(np.arange(300), np.arange(T), indexing="ij")
    df = pd.DataFrame({"study": "S", "patient": pat.ravel(), "session": np.asarray(WAVES)[wave.ravel()],
                       "alliance": Y[:, :T].ravel(), "symptoms": Y[:, T:].ravel()})
    chk = estimator_check(df, n_sim=4, seed=1, estimators=("riclpm", "dpm"))
    t = chk.table.set_index(["estimator", "direction"])
    for direction in dynamics.CROSS_LAGS:
        assert t.loc[("riclpm", direction), "large_sample_value"] == t.loc[("riclpm", direction), "truth"]
        lim = t.loc[("dpm", direction), "large_sample_value"]
        assert lim == chk.limits[direction]
        assert abs(lim / chk.truth[direction] - 1) > 0.3
    s = chk.sentence()  # no mixed model refitted: the sentence names the DPM, then says why
    assert "the DPM overstates the symptoms → alliance effect" in s, s
    assert "The DPM's bias is not a small-sample bias, and more patients would not fix it" in s
    assert "a session's symptom score is uncorrelated with the same session's alliance innovation" in s
    with_lmm = EstimatorCheck(**{**chk.__dict__, "table": pd.concat([chk.table, chk.table.assign(
        estimator="person_mean", label="Person-mean LMM", relative_bias=0.5)])})
    s = with_lmm.sentence()  # a mixed model leads: the DPM gets its own sentence
    assert "person-mean model overstates" in s and "The DPM overstates the symptoms → alliance effect by about" in s
    assert "and more patients would not fix it" in s


def test_estimator_check_sentence_calls_a_dpm_bias_without_large_sample_gap_small_sample():
    from analysis.estimator_check import EstimatorCheck

    table = pd.DataFrame([{"estimator": "dpm", "label": "DPM", "direction": "alliance_to_symptoms", "truth": -0.2,
                           "mean_estimate": -0.14, "bias": 0.06, "relative_bias": -0.3, "coverage": 0.9,
                           "mean_se": 0.1, "sd_estimate": 0.1, "n_sim": 20, "large_sample_value": -0.199}])
    chk = EstimatorCheck(study="S", table=table, draws=pd.DataFrame(), truth={}, n_sim=20, seed=0)
    s = chk.sentence()
    assert "the DPM understates the alliance → symptoms effect by about 30%" in s, s
    assert "The DPM's bias is small-sample bias or simulation noise" in s and "would not fix" not in s
    lmm = table.assign(estimator="detrended", label="Detrended LMM", relative_bias=-0.5)
    s = EstimatorCheck(study="S", table=pd.concat([table, lmm]), draws=pd.DataFrame(), truth={}, n_sim=20,
                       seed=0).sentence()
    assert "The DPM understates the alliance → symptoms effect by about 30%; with unlimited patients it would " \
           "estimate the truth (−0.20), so this is small-sample bias or simulation noise." in s, s
