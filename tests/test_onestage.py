"""One-stage IPD meta-analysis (analysis/onestage.py, METHODS §6b) against lme4 + lmerTest.

Reference values: tests/reference/make_onestage_reference.R (lmer REML fits of the same model rows;
Satterthwaite df from lmerTest; the exact limits of lme4's ML profile of the SD of the study slopes).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.lagged import LagOptions
from analysis.onestage import one_stage
from analysis.simulate import simulate_collection

REF = Path(__file__).parent / "reference"
R = json.loads((REF / "onestage_reference.json").read_text())
A2S = ("alliance_to_symptoms",)
OPTIONS = {
    "main": LagOptions(directions=A2S, control_prior_outcome=False, time_trend="fixed"),
    "singular": LagOptions(directions=A2S),
    "deft": LagOptions(directions=A2S, standardize=False, time_trend="fixed", covariates=("age",)),
}


@pytest.fixture(scope="module", params=list(OPTIONS))
def case(request):
    name = request.param
    data = pd.read_csv(REF / f"onestage_data_{name}.csv")
    return name, one_stage(data, OPTIONS[name]).fits["alliance_to_symptoms"], R[name]


def test_within_effect_equals_lmer(case):
    _name, f, r = case
    w = r["fixed"]["within"]
    assert f.estimate == pytest.approx(w["estimate"], abs=1e-6)
    assert f.se == pytest.approx(w["se"], rel=1e-4)
    assert f.df == pytest.approx(w["df"], rel=1e-4)
    assert f.pvalue == pytest.approx(w["pvalue"], rel=1e-4, abs=1e-8)
    assert (f.k, f.n_patients, f.n_pairs) == (r["k"], r["n_patients"], r["n"])


def test_variance_components_and_criterion_equal_lmer(case):
    _name, f, r = case
    assert f.deviance == pytest.approx(r["reml"], abs=1e-4)
    assert f.tau == pytest.approx(r["sd_slope"], abs=1e-4)
    assert f.patient_var == pytest.approx(r["var_patient"], abs=1e-4)
    assert f.sigma2 == pytest.approx(r["sigma2"], rel=1e-5)


def test_tau_profile_ci_equals_lme4_profile(case):
    _name, f, r = case
    lo, hi = r["tau_ci"]
    assert f.tau_ci_low == pytest.approx(lo, abs=1e-4)
    assert f.tau_ci_high == pytest.approx(hi, abs=1e-4)
    # and confint()'s spline-interpolated limits to their own accuracy
    clo, chi = r["tau_ci_confint"]
    assert f.tau_ci_high == pytest.approx(chi, rel=0.03)


def test_singular_tau_is_zero_and_said():
    f = one_stage(pd.read_csv(REF / "onestage_data_singular.csv"), OPTIONS["singular"]).fits["alliance_to_symptoms"]
    assert f.tau < 1e-6 and f.tau_ci_low == 0.0
    assert f.singular
    assert any("τ is estimated at 0" in m for m in f.messages)
    assert any("fewer than 5 studies" in m for m in f.messages)
    # the prediction interval collapses onto the CI
    assert f.pi_low == pytest.approx(f.ci_low, abs=1e-6)


def test_deft_split_equals_lmer():
    f = one_stage(pd.read_csv(REF / "onestage_data_deft.csv"), OPTIONS["deft"]).fits["alliance_to_symptoms"]
    t = f.interactions.set_index("part")
    for part, key in (("within-study", "int_w"), ("across-study", "int_b")):
        r = R["deft"]["fixed"][key]
        assert t.loc[part, "estimate"] == pytest.approx(r["estimate"], abs=1e-6)
        assert t.loc[part, "se"] == pytest.approx(r["se"], rel=1e-4)
        assert t.loc[part, "df"] == pytest.approx(r["df"], rel=1e-4)


def test_recovers_known_truth_and_agrees_with_two_stage():
    """Parameter recovery: 12 studies, true mean within effect −0.15 (latent units), τ = 0.05."""
    from analysis.pipeline import two_stage

    sim = simulate_collection(12, (60, 120), range(1, 8), mean_a_to_s=-0.15, tau_a_to_s=0.05, instruments=False,
                              seed=4)
    o = LagOptions(directions=A2S)
    f = one_stage(sim.data, o, profile=False).fits["alliance_to_symptoms"]
    two = two_stage(sim.data, o).pooled["alliance_to_symptoms"]
    assert f.ci_low < f.estimate < f.ci_high
    assert abs(f.estimate - two.estimate) < 0.5 * two.se
    assert f.pi_low < f.ci_low and f.pi_high > f.ci_high
    assert np.isnan(f.tau_ci_low)  # profile=False: not computed
    assert "One-stage alliance to symptoms" in f.summary()


def test_bad_input_is_a_message_not_a_traceback():
    sim = simulate_collection(3, (30, 40), range(1, 8), instruments=False, seed=2).data
    one = sim[sim["study"] == sim["study"].iloc[0]]
    res = one_stage(one, LagOptions(directions=A2S))
    assert not res.fits and "at least two usable studies" in res.messages[0]
    res = one_stage(sim, LagOptions(directions=A2S, estimator="fixed_effects"))
    assert not res.fits and "fixed-effects" in res.messages[0]


@pytest.mark.r
def test_r_script_reproduces_the_one_stage_model(tmp_path):
    """The downloadable R script's one-stage block (lmerTest) gives the app's one-stage numbers, deft split
    included (both directions, a covariate, a time trend, raw scores)."""
    import subprocess

    from analysis.rscript import r_script

    data = pd.read_csv(REF / "onestage_data_deft.csv")
    o = LagOptions(standardize=False, time_trend="fixed", covariates=("age",))
    data.to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "reproduce.R").write_text(r_script("data.csv", o, data), encoding="utf-8")
    run = subprocess.run(["Rscript", "reproduce.R"], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "One-stage model" in run.stdout and "adhoc" in run.stdout
    r = pd.read_csv(tmp_path / "one_stage_estimates.csv").set_index("direction")
    res = one_stage(data, o, profile=False)
    for d, f in res.fits.items():
        for col in ("estimate", "se", "df", "tau", "ci_low", "pi_high"):
            assert getattr(f, col) == pytest.approx(r.loc[d, col], rel=1e-4, abs=1e-6), (d, col)
    ri = pd.read_csv(tmp_path / "one_stage_interactions.csv")
    py = res.interactions()
    for (d, part), g in ri.groupby(["direction", "part"]):
        ours = py[(py["direction"] == d) & (py["part"] == part)].iloc[0]
        assert ours["estimate"] == pytest.approx(g["estimate"].iloc[0], rel=1e-4, abs=1e-7)
        assert ours["se"] == pytest.approx(g["se"].iloc[0], rel=1e-4)
