"""Tests of analysis.pipeline (two_stage, multiverse, early_alliance_outcome) and the
lagged figures.

R references (tests/reference/lagged_reference.json, see make_lagged_reference.R):
lme4 per-study fits pooled with metafor rma.uni (REML; z and Knapp–Hartung), and the
early-alliance OLS per study (R lm) pooled with rma.uni.

Parameter recovery uses analysis.simulate with documented true values:
* coverage: the pooled 95% CI of the within alliance → symptoms effect must cover the
  true mean effect in about 95% of replications in a design where the estimator is
  exactly unbiased (see the test's docstring for why);
* Nickell bias: the person-mean-centred prior-outcome coefficient with few sessions is
  biased by about −(1 + ρ)/(T − 1) (METHODS §5).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from analysis.lagged import LagOptions, fit_study, patient_view, prepare
from analysis.meta import random_effects
from analysis.pipeline import (
    TwoStageResult,
    early_alliance_outcome,
    multiverse,
    two_stage,
)
from analysis.plots_lagged import (
    multiverse_figure,
    patient_series_figure,
    study_coefficients_figure,
)
from analysis.simulate import simulate_collection, simulate_study

REF = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def raw():
    return pd.read_csv(REF / "lagged_data.csv")


@pytest.fixture(scope="module")
def ref():
    return json.loads((REF / "lagged_reference.json").read_text())


@pytest.fixture(scope="module")
def coll():
    return simulate_collection(6, (40, 80), range(1, 8), seed=3).data


# ----------------------------------------------------------------- R references


@pytest.mark.parametrize("test", ["z", "knha"])
def test_two_stage_matches_lme4_plus_metafor(raw, ref, test):
    res = two_stage(raw, LagOptions(test=test))
    for p in (p for p in ref["pooled"] if p["test"] == test):
        d = p["direction"]
        w = res.per_study[(res.per_study.direction == d) & (res.per_study.term == "within")]
        np.testing.assert_allclose(w["estimate"], p["yi"], rtol=1e-4)
        np.testing.assert_allclose(w["se"], p["sei"], rtol=1e-4)
        m = res.pooled[d]
        assert m.k == 3
        for field in ("estimate", "se", "ci_low", "ci_high", "pvalue"):
            assert getattr(m, field) == pytest.approx(p[field], rel=1e-4), field
        assert m.tau2 == pytest.approx(p["tau2"], abs=1e-8)


def test_early_alliance_outcome_matches_R(raw, ref):
    res = early_alliance_outcome(raw, options=LagOptions(test="z"))  # the R reference pools with rma's z test
    for e in ref["early"]:
        f = res.fits[(e["study"], "early_alliance_to_outcome")]
        assert f.n_patients == e["n"]
        np.testing.assert_allclose(f.coefficients["estimate"], e["estimate"], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(f.coefficients["se"], e["se"], rtol=1e-6)
    m = res.pooled["early_alliance_to_outcome"]
    ep = ref["early_pooled"]
    for field in ("estimate", "se", "ci_low", "ci_high", "tau2"):
        assert getattr(m, field) == pytest.approx(ep[field], rel=1e-4), field
    assert res.pooled_term == "early_alliance"
    t = res.to_frame()
    assert (t["term"] == "early_alliance").all() and t["row"].tolist()[-1] == "pooled"


# ----------------------------------------------------------------- structure and failures


def test_two_stage_tables(coll):
    res = two_stage(coll)
    assert isinstance(res, TwoStageResult)
    ps = res.per_study
    assert list(ps.columns) == ["study", "direction", "effect", "term", "estimate", "se", "ci_low", "ci_high",
                                "pvalue", "n_patients", "n_pairs", "status", "message"]
    assert set(ps["direction"]) == {"alliance_to_symptoms", "symptoms_to_alliance"}
    assert set(ps["status"]) <= {"ok", "warning"}
    assert (ps["effect"] == "within-patient").all()
    assert len(res.fits) == 12 and set(res.pooled) == {"alliance_to_symptoms", "symptoms_to_alliance"}
    # per-study rows equal fit_study on that study alone
    one = coll[coll.study == "Study 03"]
    f = fit_study(one, LagOptions(), "symptoms_to_alliance")
    row = ps[(ps.study == "Study 03") & (ps.direction == "symptoms_to_alliance") & (ps.term == "between")]
    assert row["estimate"].iloc[0] == pytest.approx(f.coef("between")["estimate"], rel=1e-12)
    # pooled = meta.random_effects on the within rows
    w = ps[(ps.direction == "alliance_to_symptoms") & (ps.term == "within")]
    m = random_effects(w["estimate"], w["se"] ** 2, method="REML")
    assert res.pooled["alliance_to_symptoms"].estimate == pytest.approx(m.estimate, rel=1e-12)
    t = res.to_frame()
    assert len(t) == 14 and (t["row"] == "pooled").sum() == 2
    assert t.loc[t.row == "pooled", "k"].tolist() == [6, 6]
    assert "Pooled" in res.summary() or "studies" in res.summary()


def test_total_effect_is_labelled(coll):
    res = two_stage(coll, LagOptions(centering="grand_mean", directions=("alliance_to_symptoms",)))
    assert (res.per_study["effect"] == "total").all()
    assert "between" not in set(res.per_study["term"])
    assert any("total" in m for m in res.messages)
    assert list(res.pooled) == ["alliance_to_symptoms"]


def test_failed_studies_are_reported_and_left_out(coll):
    tiny = simulate_study(2, range(1, 8), study="Tiny", seed=9).data
    flat = simulate_study(20, range(1, 8), study="Flat", seed=9).data.assign(symptoms=5.0)
    df = pd.concat([coll, tiny, flat], ignore_index=True)
    res = two_stage(df)
    ps = res.per_study
    for s, why in (("Tiny", "only 2 patient"), ("Flat", "symptoms has no variance")):
        r = ps[ps.study == s]
        assert (r["status"] == "failed").all() and r["estimate"].isna().all()
        assert r["message"].str.contains(why).all()
        assert res.fits[(s, "alliance_to_symptoms")].status == "failed"
    assert res.pooled["alliance_to_symptoms"].k == 6
    assert any("left out of pooling" in m and "Tiny" in m for m in res.messages)


def test_one_study_and_no_study(coll):
    one = coll[coll.study == "Study 01"]
    res = two_stage(one)
    m = res.pooled["alliance_to_symptoms"]
    assert m.k == 1 and any("k = 1" in x for x in res.messages)
    assert m.estimate == pytest.approx(res.fits[("Study 01", "alliance_to_symptoms")].coef()["estimate"])
    none = two_stage(simulate_study(2, range(1, 5), seed=1).data)
    assert none.pooled == {} and any("nothing was pooled" in x for x in none.messages)
    assert len(none.to_frame()) == 2


def test_fixed_effects_pipeline(coll):
    res = two_stage(coll, LagOptions(estimator="fixed_effects"))
    assert set(res.per_study["term"]) == {"within", "prior_within"}
    f = next(iter(res.fits.values()))
    assert np.isnan(f.tau2) and "CR1" in f.estimator


def test_multiverse(coll):
    mv = multiverse(coll, LagOptions(directions=("alliance_to_symptoms",)))
    assert set(mv["centering"]) == {"none", "grand_mean", "person_mean", "detrended"}
    assert set(mv["time_trend"]) == {"none", "fixed"}
    assert len(mv) == 4 * 2 * (6 + 1)
    pooled = mv[mv.row == "pooled"]
    assert len(pooled) == 8 and pooled["k"].eq(6).all()
    assert set(mv.loc[mv.centering.isin(["none", "grand_mean"]), "effect"]) == {"total"}
    assert set(mv.loc[mv.centering.isin(["person_mean", "detrended"]), "effect"]) == {"within-patient"}
    # one cell equals two_stage with the same options
    ts = two_stage(coll, LagOptions(centering="detrended", time_trend="fixed", directions=("alliance_to_symptoms",)))
    cell = pooled[(pooled.centering == "detrended") & (pooled.time_trend == "fixed")]
    assert cell["estimate"].iloc[0] == pytest.approx(ts.pooled["alliance_to_symptoms"].estimate, rel=1e-12)
    # cross-level is dropped for centerings without a between part instead of failing
    mv2 = multiverse(coll, LagOptions(cross_level=True, directions=("alliance_to_symptoms",)))
    assert len(mv2) == len(mv)


def test_early_alliance_recovers_sign_and_exclusions():
    """Patients' mean alliance and symptoms correlate −0.6 (between_corr): early alliance
    predicts lower final symptoms; patients without 3 early ratings are excluded."""
    sims = [simulate_study(150, range(1, 9), study=f"S{j}", between_corr=-0.6, sd_within_alliance=0.5,
                           missing_sessions=0.4, seed=j).data for j in range(4)]
    res = early_alliance_outcome(pd.concat(sims, ignore_index=True))
    m = res.pooled["early_alliance_to_outcome"]
    assert m.k == 4 and m.ci_high < 0
    assert all(f.n_patients < 150 for f in res.fits.values())
    assert any("left out" in x for f in res.fits.values() for x in f.messages)
    with pytest.raises(ValueError, match="early_sessions"):
        early_alliance_outcome(sims[0], early_sessions=0)


# ----------------------------------------------------------------- parameter recovery


@pytest.mark.slow
def test_pooled_ci_coverage_of_true_within_effect():
    """Coverage of the pooled 95% CI for the true mean within effect alliance → symptoms.

    Design where the stage-1 estimator is exactly unbiased: no autoregression, no
    symptom → alliance effect, and no prior-outcome term. Then within-person alliance
    deviations are i.i.d., so the person mean (which contains *all* of a patient's
    sessions, including later ones) is independent of the within deviations and of the
    future symptom innovations; the within coefficient is unbiased for c_AS in finite
    samples. With a prior outcome (person-mean centred), or with feedback from symptoms
    to later alliance, the person mean contains information about the outcome and the
    estimate carries an O(1/T) (Nickell-type) bias, so coverage there is only
    asymptotic in the number of sessions. Study effects vary (τ = 0.05) around −0.15;
    10 studies × 60 patients × 7 sessions, 150 seeded replications.
    """
    o = LagOptions(directions=("alliance_to_symptoms",), control_prior_outcome=False, standardize=False, test="z")
    cover, est = [], []
    for rep in range(150):
        sim = simulate_collection(
            10, 60, range(1, 8), mean_a_to_s=-0.15, tau_a_to_s=0.05, mean_s_to_a=0.0, tau_s_to_a=0.0,
            ar_alliance=0.0, ar_symptoms=0.0, instruments=False, missing_sessions=0.05, seed=1000 + rep,
        )
        m = two_stage(sim.data, o).pooled["alliance_to_symptoms"]
        cover.append(m.ci_low <= -0.15 <= m.ci_high)
        est.append(m.estimate)
    assert 0.90 <= np.mean(cover) <= 0.98
    assert abs(np.mean(est) + 0.15) < 3 * np.std(est) / np.sqrt(len(est)) + 0.005


def test_nickell_bias_of_prior_outcome():
    """7 sessions (T = 6 pairs), AR ρ = 0.5: the person-mean-centred prior-outcome
    coefficient is biased by about −(1 + ρ)/(T − 1) = −0.30 (METHODS §5). 4,000 patients
    make sampling error small (SE ≈ 0.008)."""
    rho, T = 0.5, 6
    sim = simulate_study(4000, range(1, 8), within_a_to_s=-0.15, within_s_to_a=0.0, ar_alliance=0.0,
                         ar_symptoms=rho, seed=21)
    f = fit_study(sim.data, LagOptions(standardize=False), "alliance_to_symptoms")
    bias = f.coef("prior_within")["estimate"] - rho
    predicted = -(1 + rho) / (T - 1)
    assert bias < 0
    assert bias == pytest.approx(predicted, rel=0.25)
    # the reported diagnostic is of the same size
    assert f.nickell_bias == pytest.approx(predicted, rel=0.25)
    # with many sessions the bias vanishes (T = 30 pairs)
    long = simulate_study(800, range(1, 32), within_a_to_s=-0.15, within_s_to_a=0.0, ar_alliance=0.0,
                          ar_symptoms=rho, seed=22)
    g = fit_study(long.data, LagOptions(standardize=False), "alliance_to_symptoms")
    assert abs(g.coef("prior_within")["estimate"] - rho) < 0.08
    assert g.coef("within")["estimate"] == pytest.approx(-0.15, abs=0.03)


# ----------------------------------------------------------------- figures


def test_patient_series_figure(coll):
    p = str(coll["patient"].iloc[0])
    fig = patient_series_figure(patient_view(coll, LagOptions(), "alliance_to_symptoms", p, study="Study 01"))
    assert isinstance(fig, go.Figure)
    assert "higher = more severe" in fig.layout.yaxis3.title.text
    assert "higher = stronger" in fig.layout.yaxis.title.text
    names = [t.name for t in fig.data if t.name]
    assert any("model outcome" in n for n in names) and "centre subtracted" in names
    rows = prepare(coll[coll.study == "Study 01"], LagOptions(centering="detrended"), "symptoms_to_alliance")
    fig2 = patient_series_figure(rows, p)
    assert "detrended" in fig2.layout.annotations[0].text
    assert "symptoms (higher = more severe)" in fig2.layout.yaxis.title.text
    with pytest.raises(ValueError, match="several studies"):
        patient_view(coll, LagOptions(), "alliance_to_symptoms", p)
    with pytest.raises(ValueError, match="prepared rows"):  # the figure never prepares data itself
        patient_series_figure(coll, p)


def test_coefficient_and_multiverse_figures(coll):
    tiny = simulate_study(2, range(1, 8), study="Tiny", seed=9).data
    res = two_stage(pd.concat([coll, tiny], ignore_index=True))
    fig = study_coefficients_figure(res, "alliance_to_symptoms")
    assert "higher = more severe" in fig.layout.xaxis.title.text
    assert any(t.name == "not fitted" for t in fig.data)
    assert any("Pooled" in str(t.y[0]) for t in fig.data if t.y is not None and len(t.y))
    fig = study_coefficients_figure(res.per_study, "symptoms_to_alliance", term="between")
    assert "Between-patient" in fig.layout.xaxis.title.text
    with pytest.raises(ValueError):
        study_coefficients_figure(res, "alliance_to_symptoms", term="time")
    mv = multiverse(coll, LagOptions(directions=("alliance_to_symptoms",)))
    fig = multiverse_figure(mv)
    assert len(fig.data[0].x) == 8


def test_patient_series_figure_layout(coll):
    """Issue 13: y-axis titles fit beside their own panel, whole-session ticks, grey lines in the legend."""
    p = str(coll["patient"].iloc[0])
    for d in ("alliance_to_symptoms", "symptoms_to_alliance"):
        fig = patient_series_figure(patient_view(coll, LagOptions(), d, p, study="Study 01"))
        lay = fig.layout
        plot_h = lay.height - lay.margin.t - lay.margin.b
        for ax in (lay.yaxis, lay.yaxis2, lay.yaxis3):
            size = ax.title.font.size or 12
            longest = max(len(line) for line in ax.title.text.split("<br>"))
            # a generous 0.62 em per character: the rotated title must fit in its panel's height
            assert longest * 0.62 * size <= (ax.domain[1] - ax.domain[0]) * plot_h, ax.title.text
        for ax in (lay.xaxis, lay.xaxis2, lay.xaxis3):
            assert ax.tickmode == "linear" and float(ax.dtick).is_integer() and ax.tickformat == "d"
        grey = [t for t in fig.data if t.type == "scatter" and t.mode == "lines" and t.line.color == "#718096" and t.showlegend is not False
                and t.name]
        assert any("pairing" in t.name for t in grey)


def test_term_labels_and_readings():
    from analysis.plots_lagged import term_label, term_reading

    assert "patient mean of symptoms" in term_label("interaction_outcome", "alliance_to_symptoms")
    assert term_label("within") == "Within-patient effect: predictor (session t) → outcome (session t+1)"
    assert term_label("within × treatment: PDT") == (
        "Cross-level interaction (within-study): treatment: PDT × within effect")
    # every interaction with the within effect is labelled as the within-study part (issue 21)
    for t in ("interaction", "interaction_outcome", "within × age"):
        assert "(within-study)" in term_label(t, "alliance_to_symptoms")
    r = term_reading("within × age")
    assert "for patients with a higher age" in r and "alliance (session t) → symptoms (session t+1)" in r
    assert "later in the same session" in term_reading("between", "symptoms_to_alliance", 0)
    assert term_reading("within", "symptoms_to_alliance", 0) == (
        "Negative = more severe symptoms followed by a weaker alliance "
        "(symptoms (before session t) → alliance (after session t)).")


def test_when_every_study_fails_the_reason_is_said_once_with_a_count_and_a_few_names():
    """200 of 200 studies too small: one message per direction, not a list of 200 names (issue 16)."""
    df = pd.concat([simulate_study(2, range(1, 4), study=f"Site {i:03d}", seed=i).data for i in range(200)],
                   ignore_index=True)
    res = two_stage(df)
    assert res.pooled == {}
    msgs = [m for m in res.messages if m.startswith("alliance")]
    assert len(msgs) == 1, msgs
    m = msgs[0]
    assert "200 of 200" in m and "nothing was pooled" in m
    assert "only 2 patient" in m and "(200 studies)" in m  # the reason, with its count
    assert "Site 000, Site 001, Site 002, Site 003, Site 004 and 195 more" in m
    assert "Site 199" not in m and len(m) < 400
