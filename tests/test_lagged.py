"""Tests of analysis.lagged: options, prepare (METHODS §2–§4) and fit_study (§5).

References (tests/reference/, written by make_lagged_reference.R; CI has no R):
* lagged_r_prepared.csv — standardization, centering and pairing recomputed in R from
  lagged_data.csv alone; prepare() must reproduce it.
* lagged_reference.json — lme4 (REML/ML) and lm + clubSandwich CR1 fits of the rows
  prepare() wrote; fit_study() on the raw data must reproduce them to 1e-4.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.lagged import LagOptions, fit_study, model_terms, pairing_counts, prepare
from analysis.simulate import simulate_study

REF = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def raw():
    return pd.read_csv(REF / "lagged_data.csv")


@pytest.fixture(scope="module")
def ref():
    return json.loads((REF / "lagged_reference.json").read_text())


def _opts(d):
    d = dict(d)
    if "sessions" in d:
        d["sessions"] = tuple(d["sessions"])
    return LagOptions(**d)


# ----------------------------------------------------------------- options


def test_options_defaults_and_validation():
    o = LagOptions()
    assert o.centering == "person_mean" and o.lag == 1 and o.pairing == "session"
    assert o.directions == ("alliance_to_symptoms", "symptoms_to_alliance")
    assert o.control_prior_outcome and o.standardize and o.sessions is None
    assert o.time_trend == "none" and not o.cross_level and o.estimator == "mixed"
    assert o.pooling_method == "REML" and o.test == "adhoc"  # Knapp-Hartung, never narrower than z (issue 21)
    assert LagOptions(directions="symptoms_to_alliance").directions == ("symptoms_to_alliance",)
    assert LagOptions(sessions=[1, 7]).sessions == (1, 7)
    assert LagOptions(pooling_method="dl").pooling_method == "DL"
    bad = [
        ({"centering": "cluster"}, "centering must be one of"),
        ({"lag": 0}, "lag must be"),
        ({"lag": 4}, "lag must be"),
        ({"lag": 1.5}, "lag must be"),
        ({"pairing": "nearest"}, "pairing"),
        ({"directions": ()}, "at least one"),
        ({"directions": ("alliance_to_symptoms", "alliance_to_symptoms")}, "repeat"),
        ({"directions": ("a_to_b",)}, "direction"),
        ({"sessions": (7, 1)}, "first ≤ last"),
        ({"sessions": (1,)}, "first, last"),
        ({"time_trend": "random"}, "time_trend"),
        ({"estimator": "gee"}, "estimator"),
        ({"pooling_method": "XYZ"}, "pooling_method"),
        ({"test": "t"}, "test"),
        ({"standardize": "yes"}, "True or False"),
        ({"cross_level": True, "centering": "none"}, "between-patient part"),
        ({"time_trend": "fixed_random", "estimator": "fixed_effects"}, "random slope"),
    ]
    for kw, msg in bad:
        with pytest.raises(ValueError, match=msg):
            LagOptions(**kw)


def test_model_terms():
    assert model_terms(LagOptions()) == ("intercept", "within", "between", "prior_within", "prior_between")
    assert model_terms(LagOptions(centering="none")) == ("intercept", "within", "prior_within")
    assert model_terms(LagOptions(control_prior_outcome=False, time_trend="fixed", cross_level=True)) == (
        "intercept", "within", "between", "interaction", "time")
    assert model_terms(LagOptions(estimator="fixed_effects")) == ("within", "prior_within")


# ----------------------------------------------------------------- prepare vs R


R_SETS = {
    "person_mean": LagOptions(),
    "detrended": LagOptions(centering="detrended"),
    "lag2": LagOptions(lag=2),
    "next_observed": LagOptions(pairing="next_observed"),
    "raw": LagOptions(standardize=False),
    "window": LagOptions(sessions=(2, 7)),
}


def test_prepare_matches_independent_R_computation(raw):
    rp = pd.read_csv(REF / "lagged_r_prepared.csv")
    cols = ["within", "between", "prior_within", "prior_between", "lead"]
    for name, opt in R_SETS.items():
        for d in opt.directions:
            ours = prepare(raw, opt, d)
            theirs = rp[(rp.rowset == name) & (rp.direction == d)]
            key = ["study", "patient", "session"]
            ours = ours.astype({"study": object, "patient": object}).sort_values(key).reset_index(drop=True)
            theirs = theirs.sort_values(key).reset_index(drop=True)
            assert len(ours) == len(theirs) > 300, (name, d)
            assert (ours[key].to_numpy() == theirs[key].to_numpy()).all()
            np.testing.assert_array_equal(ours["lead_session"], theirs["lead_session"])
            np.testing.assert_allclose(ours[cols].to_numpy(), theirs[cols].to_numpy(), rtol=1e-9, atol=1e-12)


def test_prepare_by_hand():
    """Tiny example worked out by hand (standardize off)."""
    df = pd.DataFrame({
        "study": "S", "patient": ["a"] * 4 + ["b"] * 3,
        "session": [1, 2, 3, 5, 1, 2, 3],
        "alliance": [1.0, 2.0, 6.0, 3.0, 4.0, np.nan, 5.0],
        "symptoms": [10.0, 8.0, 9.0, 5.0, 7.0, 6.0, 4.0],
    })
    r = prepare(df, LagOptions(standardize=False), "alliance_to_symptoms")
    # patient a: mean alliance 3, b: 4.5; grand mean of person means 3.75
    # pairs by session: a1->2, a2->3 (a3: no session 4; a5: none), b1->2 (b2: alliance missing), b3: none
    assert list(zip(r.patient, r.session, r.lead_session)) == [("a", 1, 2), ("a", 2, 3), ("b", 1, 2)]
    np.testing.assert_allclose(r["within"], [-2.0, -1.0, -0.5])
    np.testing.assert_allclose(r["between"], [-0.75, -0.75, 0.75])
    np.testing.assert_allclose(r["x_center"], [3.0, 3.0, 4.5])
    np.testing.assert_allclose(r["prior_within"], [10 - 8, 8 - 8, 7 - 17 / 3])
    np.testing.assert_allclose(r["prior_between"], [8 - (8 + 17 / 3) / 2, 8 - (8 + 17 / 3) / 2, 17 / 3 - (8 + 17 / 3) / 2])
    np.testing.assert_allclose(r["lead"], [8.0, 9.0, 6.0])
    # next observed: a3 -> a5, b1 -> b2 (outcome observed there), b2 dropped (alliance missing)
    n = prepare(df, LagOptions(standardize=False, pairing="next_observed"), "alliance_to_symptoms")
    assert list(zip(n.patient, n.session, n.lead_session)) == [("a", 1, 2), ("a", 2, 3), ("a", 3, 5), ("b", 1, 2)]
    # detrended: patient a (4 values) residuals of OLS on session; b has 2 values -> dropped
    dt = prepare(df, LagOptions(standardize=False, centering="detrended", control_prior_outcome=False))
    t, x = np.array([1, 2, 3, 5.0]), np.array([1, 2, 6, 3.0])
    res = x - np.polyval(np.polyfit(t, x, 1), t)
    assert list(dt.patient) == ["a", "a"]
    np.testing.assert_allclose(dt["within"], res[:2])
    # standardization: z over the study's observed values (ddof 1)
    z = prepare(df, LagOptions(centering="none"), "alliance_to_symptoms")
    a = df["alliance"]
    np.testing.assert_allclose(z["x"], ((a - a.mean()) / a.std(ddof=1)).iloc[[0, 1, 4]])
    assert z.attrs["predictor"] == "alliance" and z.attrs["outcome"] == "symptoms"


def test_prepare_columns_follow_options(raw):
    r = prepare(raw, LagOptions(centering="none"), "symptoms_to_alliance")
    assert "between" not in r and "prior_between" not in r and "time" not in r
    r = prepare(raw, LagOptions(time_trend="fixed", cross_level=True))
    for c in ("x_raw", "x", "x_center", "within", "between", "y", "prior_within", "prior_between",
              "interaction", "time", "lead_raw", "lead", "lead_session"):
        assert c in r
    np.testing.assert_allclose(r["interaction"], r["between"] * r["within"])
    np.testing.assert_allclose(r["within"], r["x"] - r["x_center"])
    # time is centred on each study's model rows
    assert np.allclose(r.groupby("study")["time"].mean(), 0, atol=1e-12)
    assert str(r["study"].dtype) == "string" and str(r["patient"].dtype) == "string"


@pytest.mark.parametrize("opts", [dict(), dict(centering="none"), dict(time_trend="fixed", cross_level=True),
                                  dict(outcome_moderator=True, control_prior_outcome=True),
                                  dict(lag=0, control_prior_outcome=True, directions=("symptoms_to_alliance",))])
@pytest.mark.parametrize("direction", ["alliance_to_symptoms", "symptoms_to_alliance"])
def test_row_names_name_every_model_column_in_the_directions_words(raw, opts, direction):
    """The model-rows tab's headings (issue 23 leftover): every column of prepare() has a reader's name that
    says which variable it is, in the direction's words; none is a raw name."""
    from analysis.lagged import row_names

    options = LagOptions(**opts)
    if direction not in options.directions:
        return
    r = prepare(raw, options, direction)
    names = row_names(r)
    assert set(names) == set(r.columns)
    assert all("_" not in n and n[:1].isupper() for n in names.values())
    assert len(set(names.values())) == len(names)  # no two columns under one heading
    x, y = ("Alliance", "Symptoms") if direction == "alliance_to_symptoms" else ("Symptoms", "Alliance")
    assert names["x_raw"] == f"{x} at t (raw)" and names["lead"] == f"{y} at the outcome session (model)"


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 5000), lag=st.integers(1, 3), miss=st.floats(0, 0.5))
def test_pairing_invariants(seed, lag, miss):
    df = simulate_study(8, range(9), missing_sessions=miss, missing_values=0.1, seed=seed).data
    s = prepare(df, LagOptions(lag=lag, centering="none"))
    assert (s["lead_session"] - s["session"] == lag).all()
    n = prepare(df, LagOptions(lag=lag, centering="none", pairing="next_observed"))
    assert (n["lead_session"] > n["session"]).all()
    # the lead is the lag-th later observed outcome of the same patient
    obs = df.dropna(subset=["symptoms"])
    for row in n.head(8).itertuples():
        later = obs[(obs.patient == row.patient) & (obs.session > row.session)].session.sort_values()
        assert later.iloc[lag - 1] == row.lead_session
    if lag == 1:  # session t+1 observed => it is the next observed one
        assert len(n) >= len(s)
    c = pairing_counts(df, LagOptions(lag=lag, centering="none"))
    row = c[c.direction == "alliance_to_symptoms"].iloc[0]
    assert row.pairs_session == len(s) and row.pairs_next_observed == len(n)


def test_pairing_counts_reference_data(raw):
    c = pairing_counts(raw)
    assert list(c.columns) == ["study", "direction", "rows", "pairs_session", "pairs_next_observed",
                               "patients_session", "patients_next_observed", "median_gap_next_observed"]
    irr = c[(c.study == "C-irregular") & (c.direction == "alliance_to_symptoms")].iloc[0]
    assert irr.pairs_next_observed > 2 * irr.pairs_session  # irregular sessions: many more pairs
    assert irr.median_gap_next_observed >= 1


def test_input_errors(raw):
    with pytest.raises(ValueError, match="one study"):
        fit_study(raw)
    one = raw[raw.study == "B-boundary"]
    with pytest.raises(ValueError, match="lack the column"):
        prepare(one.drop(columns="symptoms"))
    dup = pd.concat([one, one.iloc[[0]]])
    with pytest.raises(ValueError, match="more than one row for session"):
        prepare(dup)
    bad = one.assign(session=one["session"] + 0.5)
    with pytest.raises(ValueError, match="whole number"):
        prepare(bad)
    with pytest.raises(ValueError, match="direction"):
        prepare(one, LagOptions(), "alliance_to_alliance")
    with pytest.raises(ValueError, match="'alliance' must hold numbers"):
        prepare(one.assign(alliance="high"))


# ----------------------------------------------------------------- fits vs lme4 / clubSandwich


def test_fit_study_matches_lme4_and_clubsandwich(raw, ref):
    """Every configuration × study × direction of the R reference (fixed effects, SEs,
    τ², σ² within 1e-4 relative; failures where lme4 fails)."""
    checked = 0
    for r in ref["fits"]:
        if r["engine"] == "lmer_ml":
            continue
        opt = _opts(r["options"])
        f = fit_study(raw[raw.study == r["study"]], opt, r["direction"])
        if "error" in r:  # lme4 refuses: too few rows per patient for the random effects
            assert f.status == "failed" and f.messages[0].startswith("Not fitted")
            continue
        assert f.status != "failed", f.messages
        assert (f.n_pairs, f.n_patients) == (r["n_pairs"], r["n_patients"])
        assert f.terms == tuple(r["terms"])
        est, se = f.coefficients["estimate"].to_numpy(), f.coefficients["se"].to_numpy()
        if r["engine"] == "lm_cr1":
            np.testing.assert_allclose(est, r["estimate"], rtol=1e-6)
            np.testing.assert_allclose(se, r["se"], rtol=1e-6)
            assert (f.coefficients["df"] == r["df"]).all()
            assert np.isnan(f.tau2)
        elif "tau2_slope" in r and abs(f.deviance - r["deviance"]) > 1e-6:
            assert f.deviance < r["deviance"]  # lme4 stopped at a worse boundary point (test_mixed)
        else:
            tol = {"rtol": 1e-4, "atol": 1e-9}
            np.testing.assert_allclose(est, r["estimate"], **tol)
            np.testing.assert_allclose(se, r["se"], rtol=1e-4)
            np.testing.assert_allclose(f.sigma2, r["sigma2"], rtol=1e-4)
            np.testing.assert_allclose(f.tau2, r["tau2"], rtol=1e-4, atol=1e-9)
            if "tau2_slope" in r:
                np.testing.assert_allclose(f.tau2_slope, r["tau2_slope"], rtol=1e-4, atol=1e-8)
                np.testing.assert_allclose(f.cov_intercept_slope, r["cov_intercept_slope"], rtol=1e-4, atol=1e-8)
            assert f.singular == r["singular"]
            assert (f.status == "warning") == (f.n_patients < 10)  # a singular fit alone is a note (issue 23)
            assert np.isinf(f.coefficients["df"]).all()
        checked += 1
    assert checked >= 90


def test_boundary_fit_reports_and_keeps_between_terms(raw, ref):
    """B-boundary: lme4 reports a singular fit; our between terms equal lme4's (not zero)."""
    for d in ("alliance_to_symptoms", "symptoms_to_alliance"):
        r = next(x for x in ref["fits"] if x["config"] == "person_mean" and x["study"] == "B-boundary"
                 and x["direction"] == d)
        f = fit_study(raw[raw.study == "B-boundary"], LagOptions(), d)
        assert r["singular"] and f.singular and f.tau2 == 0 and f.status == "ok"
        assert any("Singular fit" in m for m in f.messages)  # the routine note is kept, not a warning
        assert any("boundary" in m for m in f.messages)
        for term in ("between", "prior_between"):
            j = r["terms"].index(term)
            assert f.coef(term)["estimate"] == pytest.approx(r["estimate"][j], rel=1e-6)
        assert abs(f.coef("prior_between")["estimate"]) > 0.5


def test_study_fit_fields_and_diagnostics(raw):
    one = raw[raw.study == "A-trend"]
    f = fit_study(one)
    assert f.effect == "within-patient"
    t = f.to_frame()
    assert list(t.columns[:4]) == ["study", "direction", "effect", "term"]
    for c in ("estimate", "se", "ci_low", "ci_high", "pvalue", "n_patients", "n_pairs", "status", "message"):
        assert c in t
    w = f.coef("within")
    assert w["ci_low"] == pytest.approx(w["estimate"] - 1.959964 * w["se"], rel=1e-6)
    # diagnostics
    assert 0 < f.icc_predictor < 1
    n, icc = f.median_observations, f.icc_predictor
    assert f.reliability_person_mean == pytest.approx(n * icc / (1 + (n - 1) * icc))
    assert -0.6 < f.nickell_bias < 0  # its size is checked by simulation in test_nickell.py
    assert any("Nickell" in m for m in f.messages)
    assert set(f.diagnostics()) >= {"median_pairs", "icc_predictor", "reliability_person_mean", "nickell_bias"}
    # no Nickell diagnostic without the prior outcome, or for the total-effect model
    assert np.isnan(fit_study(one, LagOptions(control_prior_outcome=False)).nickell_bias)
    tot = fit_study(one, LagOptions(centering="none"))
    assert np.isnan(tot.nickell_bias) and tot.effect == "total"
    fe = fit_study(one, LagOptions(estimator="fixed_effects"))
    assert fe.effect == "within-patient" and "between" not in fe.terms
    assert any("not estimable" in m for m in fe.messages) and np.isfinite(fe.nickell_bias)
    # an ICC computed independently: one-way ANOVA on the same standardized values agrees roughly
    z = (one.alliance - one.alliance.mean()) / one.alliance.std()
    g = z.groupby(one.patient)
    msb = (g.count() * (g.mean() - z.mean()) ** 2).sum() / (g.ngroups - 1)
    msw = ((z - g.transform("mean")) ** 2).sum() / (z.count() - g.ngroups)
    n0 = g.count().mean()
    assert f.icc_predictor == pytest.approx((msb - msw) / (msb + (n0 - 1) * msw), abs=0.05)


def test_failures_are_reported_not_raised():
    df = simulate_study(2, range(1, 6), seed=1).data
    f = fit_study(df)
    assert f.status == "failed" and "only 2 patient" in f.messages[0]
    assert f.coefficients.empty and list(f.coefficients.columns)[:3] == ["term", "estimate", "se"]
    flat = simulate_study(10, range(1, 6), seed=1).data.assign(alliance=3.0)
    f = fit_study(flat)
    assert f.status == "failed" and "alliance has no variance" in f.messages[0]
    between_only = flat.assign(alliance=flat["patient"].factorize()[0].astype(float))  # varies between patients
    f = fit_study(between_only, LagOptions(standardize=True, standardize_by="within"))
    assert f.status == "failed" and "does not vary within patients (within-patient SD 0)" in f.messages[0]
    one_pair = simulate_study(12, range(1, 3), seed=2).data
    f = fit_study(one_pair)
    assert f.status == "failed" and "single row" in f.messages[0]
    # but the within estimator has nothing to demean either
    assert fit_study(one_pair, LagOptions(estimator="fixed_effects")).status == "failed"


def test_window_is_applied_first():
    df = simulate_study(30, range(12), seed=4).data
    r = prepare(df, LagOptions(sessions=(1, 7)))
    assert r["session"].min() >= 1 and r["lead_session"].max() <= 7
    # person means use only in-window values: recompute for one patient
    p = r["patient"].iloc[0]
    w = df[(df.patient == p) & df.session.between(1, 7)]
    allw = df[df.session.between(1, 7)]
    z = (w.alliance - allw.alliance.mean()) / allw.alliance.std()
    assert r.loc[r.patient == p, "x_center"].iloc[0] == pytest.approx(z.mean())


# ----------------------------------------------------------------- issue 11: moderators, df, lag 0, within SD
# References: make_lagged_moderators_reference.R (lme4 / lmerTest / metafor; covariate columns,
# interactions, lag-0 pairing and within-SD z-scores built in R from the raw data).


@pytest.fixture(scope="module")
def mod_ref():
    return json.loads((REF / "lagged_moderators_reference.json").read_text())


@pytest.fixture(scope="module")
def raw_cov(raw):
    cov = pd.read_csv(REF / "lagged_covariates.csv")
    return raw.merge(cov, on=["study", "patient"], how="left")


def _ref_fits(mod_ref, config):
    return [r for r in mod_ref["fits"] if r["config"] == config]


def _check_fit(f, r, df=False):
    assert f.status != "failed", f.messages
    assert set(f.terms) == set(r["terms"])
    assert f.n_pairs == r["n_pairs"]
    for j, term in enumerate(r["terms"]):
        c = f.coef(term)
        assert c["estimate"] == pytest.approx(r["estimate"][j], abs=1e-4), term
        assert c["se"] == pytest.approx(r["se"][j], abs=1e-4), term
        if df:
            assert c["df"] == pytest.approx(r["df"][j], rel=1e-3, abs=1e-3), term


def test_covariates_and_outcome_moderator_match_lme4(raw_cov, mod_ref):
    o = LagOptions(outcome_moderator=True, covariates=("age", "treatment"))
    refs = _ref_fits(mod_ref, "moderators")
    assert len(refs) == 6
    for r in refs:
        f = fit_study(raw_cov[raw_cov.study == r["study"]], o, r["direction"])
        _check_fit(f, r)


def test_every_term_pooled_matches_metafor(raw_cov, mod_ref):
    from analysis.pipeline import two_stage

    res = two_stage(raw_cov, LagOptions(outcome_moderator=True, covariates=("age", "treatment"), test="z"))
    assert len(mod_ref["pooled"]) == 2 * 11
    for r in mod_ref["pooled"]:
        m = res.pooled_terms[(r["direction"], r["term"])]
        assert m.k == r["k"] and list(m.labels) == list(np.atleast_1d(r["studies"]))
        assert m.estimate == pytest.approx(r["estimate"], abs=1e-4)
        assert m.se == pytest.approx(r["se"], abs=1e-4)
        assert m.tau2 == pytest.approx(r["tau2"], abs=1e-4)
    assert res.pooled_terms[("alliance_to_symptoms", "within")] is res.pooled["alliance_to_symptoms"]
    for r in _ref_fits(mod_ref, "moderators"):  # the same stage-1 fits inside two_stage
        _check_fit(res.fits[(r["study"], r["direction"])], r)
    c = res.fits[("C-irregular", "alliance_to_symptoms")]  # no PDT patients: dummy left out, with a note
    assert "treatment: PDT" not in c.terms and any("Not estimable" in m for m in c.messages)
    notes = res.pooled_term_messages[("alliance_to_symptoms", "treatment: PDT")]
    assert any("could not estimate this term" in n for n in notes)


def test_satterthwaite_df_match_lmertest(raw, mod_ref):
    o = LagOptions(df_method="satterthwaite")
    for r in _ref_fits(mod_ref, "satterthwaite"):
        f = fit_study(raw[raw.study == r["study"]], o, r["direction"])
        _check_fit(f, r, df=True)
        w = f.coef("within")
        from scipy import stats

        assert w["pvalue"] == pytest.approx(2 * stats.t.sf(abs(w["estimate"] / w["se"]), w["df"]), rel=1e-9)
        assert "Satterthwaite" in f.estimator
    with pytest.raises(ValueError, match="satterthwaite"):
        LagOptions(df_method="satterthwaite", estimator="fixed_effects")


def test_lag0_and_within_sd_match_R(raw, mod_ref):
    for r in _ref_fits(mod_ref, "lag0"):
        o = LagOptions(lag=0, directions=("symptoms_to_alliance",))
        _check_fit(fit_study(raw[raw.study == r["study"]], o, r["direction"]), r)
    for r in _ref_fits(mod_ref, "sd_within"):
        _check_fit(fit_study(raw[raw.study == r["study"]], LagOptions(standardize_by="within"), r["direction"]), r)
    with pytest.raises(ValueError, match="only for the direction"):
        LagOptions(lag=0)


def test_lag0_rows_by_hand():
    df = pd.DataFrame({"patient": ["a"] * 4, "session": [1, 2, 3, 4], "alliance": [5.0, 6.0, np.nan, 4.0],
                       "symptoms": [20.0, 18.0, 17.0, 15.0]})
    r = prepare(df, LagOptions(lag=0, directions=("symptoms_to_alliance",), standardize=False),
                "symptoms_to_alliance")
    # outcome = alliance at the same session; prior outcome = alliance at the session before
    assert list(r["session"]) == [2] and list(r["lead_session"]) == [2] and list(r["prior_session"]) == [1]
    assert r["lead"].iloc[0] == 6.0 and r["prior_within"].iloc[0] == pytest.approx(5.0 - 5.0)


def test_covariate_input_errors(raw_cov):
    with pytest.raises(ValueError, match="not in the data"):
        prepare(raw_cov, LagOptions(covariates=("height",)))
    bad = raw_cov.assign(age=np.arange(len(raw_cov)))
    with pytest.raises(ValueError, match="patient-level"):
        prepare(bad, LagOptions(covariates=("age",)))
    with pytest.raises(ValueError, match="core column"):
        LagOptions(covariates=("within",))
    with pytest.raises(ValueError, match="outcome_moderator"):
        LagOptions(outcome_moderator=True, centering="none")


def test_study_without_the_reference_level_keeps_its_other_terms():
    """A study whose patients all have non-reference levels: the dummies would add up to the intercept,
    so that covariate's terms are left out of its model (with a note), not the whole study."""
    from analysis.pipeline import two_stage

    a = simulate_study(30, range(1, 8), study="A", seed=1).data
    b = simulate_study(30, range(1, 8), study="B", seed=2).data
    a["arm"] = np.where(a["patient"].str[-1].astype(int) % 2 == 0, "control", "cbt")
    b["arm"] = np.where(b["patient"].str[-1].astype(int) % 2 == 0, "pdt", "cbt")
    b.loc[b["arm"] == "cbt", "arm"] = "ipt"  # B: only ipt and pdt; reference level "cbt" absent
    df = pd.concat([a, b], ignore_index=True)
    for est in ("mixed", "fixed_effects"):
        res = two_stage(df, LagOptions(covariates=("arm",), estimator=est))
        fb = res.fits[("B", "alliance_to_symptoms")]
        assert fb.status != "failed" and not any(t.startswith(("arm", "within × arm")) for t in fb.terms)
        assert any("reference level 'cbt'" in m for m in fb.messages)
        # the within effect of B equals the model without the covariate
        plain = fit_study(b, LagOptions(estimator=est))
        assert fb.coef("within")["estimate"] == pytest.approx(plain.coef("within")["estimate"], rel=1e-8)
        fa = res.fits[("A", "alliance_to_symptoms")]
        assert "within × arm: control" in fa.terms


def test_public_stage1_api_is_what_fit_study_and_two_stage_use(raw, ref):
    """prepare_studies + fit_studies (the API analysis.pipeline uses) reproduce lme4 for every study."""
    from analysis.lagged import fit_studies, prepare_studies

    o = LagOptions()
    data = prepare_studies(raw, o)
    assert data.study_labels == sorted(raw["study"].unique())
    for d in o.directions:
        fits = fit_studies(data, o, d)
        assert [f.study for f in fits] == data.study_labels
        for f in fits:
            r = next(x for x in ref["fits"] if x["config"] == "person_mean" and x["direction"] == d
                     and x["study"] == f.study)
            for j, term in enumerate(r["terms"]):
                assert f.coef(term)["estimate"] == pytest.approx(r["estimate"][j], abs=1e-4)
                assert f.coef(term)["se"] == pytest.approx(r["se"][j], abs=1e-4)
    with pytest.raises(ValueError, match="No rows in the analysis window"):
        prepare_studies(raw, LagOptions(sessions=(100, 200)))


def test_cross_level_moderation_by_covariates_is_recovered():
    """Simulated truth: S_{t+1} = c_i + (b0 + b1·group_i + b2·age_z_i)·(A_t − μ_i) + e, so the within effect is b0
    in the reference group at average age, and within × group / within × age are b1 / b2."""
    rng = np.random.default_rng(11)
    n, T = 500, 10
    b0, b1, b2 = -0.30, 0.25, -0.10
    group = rng.integers(0, 2, n)
    age = rng.normal(40, 10, n)
    age_z = (age - age.mean()) / age.std(ddof=1)
    mu, c = rng.normal(4, 1, n), rng.normal(20, 3, n)
    recs = []
    for i in range(n):
        a = mu[i] + rng.normal(0, 1, T)
        s = np.r_[np.nan, c[i] + (b0 + b1 * group[i] + b2 * age_z[i]) * (a[:-1] - mu[i]) + rng.normal(0, 0.5, T - 1)]
        s[0] = c[i] + rng.normal(0, 0.5)
        for t in range(T):
            recs.append((f"p{i}", t + 1, a[t], s[t], ("treated" if group[i] else "control"), age[i]))
    df = pd.DataFrame(recs, columns=["patient", "session", "alliance", "symptoms", "group", "age"])
    f = fit_study(df, LagOptions(standardize=False, control_prior_outcome=False, covariates=("group", "age")))
    assert f.status != "failed"
    for term, truth in (("within", b0), ("within × group: treated", b1)):
        c_ = f.coef(term)
        assert abs(c_["estimate"] - truth) < 3.5 * c_["se"], (term, c_)
    assert f.coef("within")["se"] < 0.02
    c_ = f.coef("within × age")  # per year of age: standardize=False leaves age centred, in years
    assert abs(c_["estimate"] - b2 / age.std(ddof=1)) < 3.5 * c_["se"]
