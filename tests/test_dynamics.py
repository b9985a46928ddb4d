"""RI-CLPM and ML-SEM dynamic panel model (analysis/dynamics.py) against lavaan, and bad input.

Reference values: tests/reference/make_dynamics_reference.R (lavaan, missing = "ml", observed
information) wrote dynamics_reference.json from the simulated data in dynamics_data.csv.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import dynamics, sem
from analysis.simulate import simulate_study

REF = Path(__file__).parent / "reference"
REFERENCE = json.loads((REF / "dynamics_reference.json").read_text(encoding="utf-8"))
DATA = pd.read_csv(REF / "dynamics_data.csv")


def _label(name: str) -> str:
    return re.sub(r"\[(\d+)\]", r"_\1", name)


def _case(name):
    return DATA[DATA["study"] == name].reset_index(drop=True)


@pytest.fixture(scope="module")
def fits():
    """Every reference case fitted once (both DPM directions)."""
    out = {}
    for name, case in REFERENCE["cases"].items():
        df = _case(name)
        if case["model"].startswith("riclpm"):
            out[name] = {"": dynamics.riclpm(df, time_invariant=case["model"] == "riclpm")}
        else:
            out[name] = {y: dynamics.dpm(df, outcome=y) for y in ("symptoms", "alliance")}
    return out


def _pairs():
    for name, case in REFERENCE["cases"].items():
        if case["model"].startswith("riclpm"):
            yield name, "", case["fit"]
        else:
            for y, ref in case["directions"].items():
                yield name, y, ref


PAIRS = list(_pairs())
IDS = [f"{n}-{y}" if y else n for n, y, _ in PAIRS]


@pytest.mark.parametrize(("case", "direction", "ref"), PAIRS, ids=IDS)
def test_estimates_and_se_equal_lavaan(fits, case, direction, ref):
    res = fits[case][direction]
    assert ref["converged"] and res.converged
    assert res.loglik >= ref["fit"]["logl"] - 1e-6  # at least as high: the same optimum, found as precisely
    fr = res.to_frame()
    est = dict(zip(fr["parameter"].map(_label), fr["estimate"]))
    se = dict(zip(fr["parameter"].map(_label), fr["se"]))
    assert set(est) == set(ref["estimates"])
    for p, v in ref["estimates"].items():
        # 1e-4, relative for the large variances (lavaan's own convergence tolerance; see the R script)
        assert abs(est[p] - v) <= 1e-4 * max(1.0, abs(v)), p
        assert se[p] == pytest.approx(ref["se"][p], rel=1e-3), p


@pytest.mark.parametrize(("case", "direction", "ref"), PAIRS, ids=IDS)
def test_loglik_and_fit_indices_equal_lavaan(fits, case, direction, ref):
    res = fits[case][direction]
    f = ref["fit"]
    assert res.loglik == pytest.approx(f["logl"], abs=1e-3)
    assert res.fit.loglik_h1 == pytest.approx(f["unrestricted.logl"], abs=1e-3)
    assert res.df == f["df"]
    assert res.chisq == pytest.approx(f["chisq"], abs=2e-3)
    assert res.fit.baseline_chisq == pytest.approx(f["baseline.chisq"], abs=2e-3)
    assert res.fit.baseline_df == f["baseline.df"]
    for k in ("cfi", "tli", "rmsea", "srmr"):
        assert getattr(res, k) == pytest.approx(f[k], abs=1e-4), k
    for name, v in ref["std"].items():
        assert res.standardized[name][0] == pytest.approx(v, abs=1e-4), name
        # delta-method SE of the average over waves, from lavaan's vcov.std.all
        assert res.standardized[name][1] == pytest.approx(ref["std_se"][name], rel=1e-3), name
    assert res.n == f["ntotal"]


def test_time_varying_lr_test_equals_lavaan(fits):
    res = fits["riclpm7_varying"][""]
    ref = REFERENCE["cases"]["riclpm7_varying"]["lr_test"]
    assert res.lr_test["df"] == ref["df"]
    assert res.lr_test["chisq"] == pytest.approx(ref["chisq"], abs=2e-3)
    assert res.lr_test["pvalue"] == pytest.approx(ref["pvalue"], abs=1e-4)
    assert "ar_alliance[3]" in set(res.to_frame()["parameter"])


def test_boundary_case_reports_heywood(fits):
    res = fits["riclpm7_boundary"][""]
    assert res.estimate("var_ri_symptoms") < 0
    assert any("Heywood" in m and "var_ri_symptoms" in m for m in res.messages)


def test_riclpm_frame_has_required_rows_and_columns(fits):
    fr = fits["riclpm7_missing"][""].to_frame()
    assert list(fr.columns) == ["parameter", "estimate", "se", "z", "pvalue", "ci_low", "ci_high"]
    need = {"ar_alliance", "ar_symptoms", "alliance_to_symptoms", "symptoms_to_alliance", "var_ri_alliance",
            "var_ri_symptoms", "cov_ri"}
    assert need <= set(fr["parameter"])
    r = fr.set_index("parameter").loc["alliance_to_symptoms"]
    assert r["ci_low"] == pytest.approx(r["estimate"] - 1.959964 * r["se"], rel=1e-6)
    assert fits["riclpm7_missing"][""].waves == tuple(range(1, 8))


def test_gradient_is_analytic_and_correct():
    df = _case("riclpm7_missing")
    d, _ = dynamics._study_frame(df)
    Y, waves, _ = dynamics._wide(d, None)
    model = dynamics._riclpm_model(len(waves), waves, True)
    data = sem.PatternData.from_wide(Y)
    th = dynamics._riclpm_start(model, Y, len(waves)) + 0.01
    _, g = sem.loglik_grad(model, data, th)
    eye = np.eye(len(th))
    num = np.array([(sem.loglik(model, data, th + 1e-6 * e) - sem.loglik(model, data, th - 1e-6 * e)) / 2e-6
                    for e in eye])
    assert np.max(np.abs(num - g)) < 1e-4 * max(1.0, np.max(np.abs(g)))


def _numerical_hessian(fun_grad, th, h=1e-6):
    """Central differences of an analytic gradient (test-side check of the analytic Hessian)."""
    cols = []
    for e in np.eye(len(th)):
        step = h * max(1.0, float(np.max(np.abs(th))))
        cols.append((fun_grad(th + step * e) - fun_grad(th - step * e)) / (2 * step))
    H = np.array(cols).T
    return 0.5 * (H + H.T)


@pytest.mark.parametrize("case", ["riclpm11_missing", "riclpm7_varying", "dpm7_missing"])
def test_hessian_is_analytic_and_correct(case):
    """The observed information behind every SE: the analytic Hessian equals differences of the
    analytic gradient (at a point away from the optimum, so the second-order term matters)."""
    d, _ = dynamics._study_frame(_case(case))
    if case.startswith("riclpm"):
        Y, waves, _ = dynamics._wide(d, None)
        model = dynamics._riclpm_model(len(waves), waves, "varying" not in case)
        th = dynamics._riclpm_start(model, Y, len(waves)) + 0.01
    else:
        Y, waves, _ = dynamics._wide(d, None, variables=("symptoms", "alliance"))
        T = len(waves)
        Y = Y[:, : 2 * T - 1]
        model = dynamics._dpm_model(T, waves, "symptoms", "alliance")
        th = dynamics._dpm_start(model, Y, T, "symptoms") + 0.01
    data = sem.PatternData.from_wide(Y)
    ll, g, H = sem.loglik_hessian(model, data, th)
    num = _numerical_hessian(lambda t: sem.loglik_grad(model, data, t)[1], th)
    assert ll == pytest.approx(sem.loglik(model, data, th), rel=1e-12)
    assert np.max(np.abs(H - num)) < 1e-5 * np.max(np.abs(H))
    # the saturated (h1) model's moment-space Newton uses the same derivatives
    p = data.p
    iu = np.triu_indices(p)
    mu, S = model.implied(th)
    ths = np.concatenate([S[iu], mu])
    ll_s, g_s, H_s = sem._saturated_derivs(data, ths)
    ref = sem.loglik_hessian(sem.saturated_model(p), data, ths)
    assert ll_s == pytest.approx(ref[0], rel=1e-12)
    assert np.allclose(g_s, ref[1], rtol=1e-10, atol=1e-10 * np.max(np.abs(ref[1])))
    assert np.allclose(H_s, ref[2], rtol=1e-10, atol=1e-10 * np.max(np.abs(ref[2])))


# ------------------------------------------------------------------ bad input
def _small(n=40, sessions=range(1, 6), seed=3, study="S"):
    return simulate_study(n, sessions, study=study, seed=seed, missing_sessions=0.1).data


def test_fewer_than_three_waves_is_a_message_not_an_error():
    res = dynamics.riclpm(_small(sessions=(1, 2)))
    assert not res.ok and any("at least 3 sessions" in m for m in res.messages)
    res = dynamics.dpm(_small(sessions=(1, 2)))
    assert not res.ok and any("at least 3 sessions" in m for m in res.messages)


def test_few_patients_warns_but_fits():
    res = dynamics.riclpm(_small(n=40))
    assert any("only 40 patients" in m for m in res.messages)
    assert np.isfinite(res.estimate("alliance_to_symptoms"))


def test_empty_wave_is_dropped_with_a_message():
    df = _small(n=60)
    res = dynamics.riclpm(df, sessions=[1, 2, 3, 4, 5, 9])
    assert res.waves == (1, 2, 3, 4, 5)
    assert any("9" in m and "no data" in m for m in res.messages)


def test_one_bad_study_does_not_stop_the_others():
    good = simulate_study(120, range(1, 7), study="Good", seed=5).data
    bad = _small(n=30, sessions=(1, 2), study="Bad")
    out = dynamics.fit_studies(pd.concat([good, bad], ignore_index=True), "RI-CLPM", fit_indices=False)
    assert out["Good"]["alliance_to_symptoms"].ok
    assert not out["Bad"]["alliance_to_symptoms"].ok
    assert out["Bad"]["alliance_to_symptoms"].messages
    out = dynamics.fit_studies(pd.concat([good, bad], ignore_index=True), "DPM", fit_indices=False)
    assert out["Good"]["symptoms_to_alliance"].ok and not out["Bad"]["symptoms_to_alliance"].ok


def test_constant_series_gets_a_message():
    df = _small(n=60)
    df["alliance"] = 5.0
    res = dynamics.riclpm(df, fit_indices=False)
    assert not res.ok
    assert res.messages


# ------------------------------------------------------------------ recovery with known truth
FEEDBACK = dict(within_a_to_s=-0.10, within_s_to_a=-0.20, ar_alliance=0.3, ar_symptoms=0.4, between_corr=-0.3,
                missing_sessions=0.1)


@pytest.mark.slow
def test_riclpm_recovers_reciprocal_feedback_with_nominal_coverage():
    """100 seeded replications of the issue's set-up (a' = .3a − .2s, s' = .4s − .1a; 7 sessions, n = 300,
    10% missing sessions): the RI-CLPM's 95% CIs cover both true cross-lags in ≥ 90% of replications and
    its mean estimates are within 0.01 of the truth."""
    est = {k: [] for k in dynamics.CROSS_LAGS}
    cover = {k: [] for k in dynamics.CROSS_LAGS}
    truth = {"alliance_to_symptoms": -0.10, "symptoms_to_alliance": -0.20}
    for rep in range(100):
        df = simulate_study(300, range(1, 8), seed=1000 + rep, **FEEDBACK).data
        res = dynamics.riclpm(df, fit_indices=False, standardized=False)
        assert res.ok, res.messages
        for k in dynamics.CROSS_LAGS:
            r = res.row(k)
            est[k].append(r["estimate"])
            cover[k].append(r["ci_low"] <= truth[k] <= r["ci_high"])
    for k in dynamics.CROSS_LAGS:
        assert np.mean(cover[k]) >= 0.90, (k, np.mean(cover[k]))
        assert abs(np.mean(est[k]) - truth[k]) < 0.01, (k, np.mean(est[k]))


@pytest.mark.slow
def test_estimator_check_flags_person_mean_lmm_as_biased():
    """The estimator check (100 parametric-bootstrap sets from the fitted RI-CLPM) reports the person-mean
    LMM's alliance → symptoms effect as biased on data with reciprocal feedback, the RI-CLPM as unbiased."""
    from analysis.estimator_check import estimator_check

    df = simulate_study(300, range(1, 8), seed=77, **FEEDBACK).data
    seen = []
    chk = estimator_check(df, n_sim=100, seed=3, estimators=("person_mean", "riclpm"), progress=seen.append)
    assert seen[0] == 0.0 and seen[-1] == 1.0
    t = chk.table.set_index(["estimator", "direction"])
    flagged = chk.biased()
    assert ("person_mean", "alliance_to_symptoms") in set(zip(flagged["estimator"], flagged["direction"]))
    assert t.loc[("person_mean", "alliance_to_symptoms"), "relative_bias"] < -0.2
    ri = t.loc[("riclpm", "alliance_to_symptoms")]
    assert abs(ri["relative_bias"]) < 0.1 and ri["coverage"] >= 0.88
    assert "person-mean model understates the alliance → symptoms effect" in chk.sentence()
    again = estimator_check(df, n_sim=3, seed=3, estimators=("riclpm",))
    first3 = chk.draws[(chk.draws["estimator"] == "riclpm") & (chk.draws["sim"] < 3)]["estimate"].to_numpy()
    assert np.allclose(again.draws["estimate"].to_numpy(), first3)  # seeded: same sets, same estimates


def test_estimator_check_can_be_cancelled():
    from analysis.estimator_check import estimator_check
    from analysis.progress import Cancelled

    df = simulate_study(120, range(1, 6), seed=8, **FEEDBACK).data
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        estimator_check(df, n_sim=50, seed=1, estimators=("riclpm",), cancelled=cancel)
    assert len(calls) == 3


# ------------------------------------------------------------------ scripts
@pytest.mark.r
@pytest.mark.parametrize("stage1", ["riclpm", "dpm"])
def test_exported_r_script_reproduces_the_sem_stage1_with_lavaan(tmp_path, stage1):
    """The R script (lavaan, missing = "ml") gives the per-study cross-lags and SEs of the Python pipeline."""
    import subprocess

    from analysis import pipeline
    from analysis.lagged import LagOptions
    from analysis.rscript import r_script
    from analysis.simulate import simulate_collection

    df = simulate_collection(k=2, n_patients=90, sessions=range(1, 6), instruments=False, missing_sessions=0.1,
                             seed=5).data
    options = LagOptions(stage1=stage1)
    res = pipeline.two_stage(df, options)
    py = res.per_study
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "s.R").write_text(r_script("d.csv", options, data=df), encoding="utf-8")
    run = subprocess.run(["Rscript", "s.R"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    per = pd.read_csv(tmp_path / "per_study_estimates.csv")
    for term in ("within", "prior_within", "within_std"):
        a = per[per["term"] == term].sort_values(["study", "direction"])
        b = py[py["term"] == term].sort_values(["study", "direction"])
        assert len(a) == len(b) == 4
        np.testing.assert_allclose(a["estimate"].to_numpy(), b["estimate"].to_numpy(float), atol=1e-4)
        np.testing.assert_allclose(a["se"].to_numpy(), b["se"].to_numpy(float), rtol=1e-3)
    # the standardized cross-lags are pooled like the raw ones (metafor::rma on lavaan's std.all)
    pooled_std = pd.read_csv(tmp_path / "pooled_standardized_estimates.csv").set_index("direction")
    for direction in ("alliance_to_symptoms", "symptoms_to_alliance"):
        m = res.pooled_terms[(direction, "within_std")]
        assert m.k == 2
        assert m.estimate == pytest.approx(pooled_std.loc[direction, "estimate"], abs=1e-4)
        assert m.se == pytest.approx(pooled_std.loc[direction, "se"], rel=2e-3)


def test_python_script_carries_the_stage1_option():
    from analysis.lagged import LagOptions
    from analysis.report import reproduction_script

    script = reproduction_script("d.csv", LagOptions(stage1="dpm"))
    assert "stage1='dpm'" in script


def test_estimator_comparison_forest_keeps_three_readable_panels():
    """Three estimators side by side (17 studies): without per-panel text columns each panel keeps at least
    180 px of a 1,000 px wide figure (the page's width in a 1,400 px window; the export is 1,200 px) and its
    full title; the pooled estimates are written under the panels."""
    from types import SimpleNamespace

    from analysis import plots_dynamics
    from analysis.meta import random_effects

    rng = np.random.default_rng(1)
    res = {}
    for label in ("Hybrid LMM", "RI-CLPM", "DPM"):
        m = random_effects(rng.normal(-0.1, 0.05, 17), np.full(17, 0.03**2),
                           labels=[f"Study {i:02d}" for i in range(1, 18)])
        res[label] = SimpleNamespace(pooled={"alliance_to_symptoms": m})
    fig = plots_dynamics.estimator_comparison_figure(res)
    ml, mr = fig.layout.meta["margin_px"]
    widths = [(1000 - ml - mr) * (fig.layout[a].domain[1] - fig.layout[a].domain[0])
              for a in ("xaxis", "xaxis2", "xaxis3")]
    assert min(widths) >= 180, widths
    titles = [a.text for a in fig.layout.annotations if a.name == "panel title"]
    assert titles == ["<b>A: Hybrid LMM</b>", "<b>B: RI-CLPM</b>", "<b>C: DPM</b>"]
    notes = " ".join(a.text for a in fig.layout.annotations)
    assert "Pooled estimate [95% CI]: A (Hybrid LMM) −0." in notes and "C (DPM) −0." in notes
    assert not any(a.text.startswith("Estimate [") for a in fig.layout.annotations)
    from figure_layout import figure_json, overlapping

    fj = figure_json(fig)
    for width in (1000, 1200):  # on the page in a 1,400 px window; the PNG/SVG export
        assert not overlapping(fj, width), width


def test_estimator_check_figure_names_the_truth_in_the_panel_titles():
    """The true value sits in each panel's title (an annotation at the top of the dashed line used to
    collide with the title)."""
    from analysis import formatting as F
    from analysis import plots_dynamics
    from analysis.estimator_check import estimator_check

    df = simulate_study(120, range(1, 7), seed=8, **FEEDBACK).data
    chk = estimator_check(df, n_sim=3, seed=2)
    fig = plots_dynamics.estimator_check_figure(chk)
    heads = [a.text for a in fig.layout.annotations if "next-session" in (a.text or "")]
    assert len(heads) == 2 and all("truth" in h and "dashed line" in h for h in heads)
    for h, d in zip(heads, ("alliance_to_symptoms", "symptoms_to_alliance")):
        assert f"truth {F.signed(chk.truth[d], 3)}" in h.replace("&minus;", "−")
    assert not [a for a in fig.layout.annotations if (a.text or "").startswith("truth")]
