"""Dropout models (METHODS §9a): R references (glm, survival::coxph) and recovery of a known effect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import events as ev
from analysis.events import dropout as dm

REF = Path(__file__).resolve().parent / "reference"


@pytest.fixture(scope="module")
def ref_data():
    return pd.read_csv(REF / "dropout_data.csv"), json.loads((REF / "dropout_reference.json").read_text())


def test_logistic_equals_r_glm(ref_data):
    d, ref = ref_data
    per, pooled = dm.dropout_logistic(d, ("early_alliance", "mean_alliance", "rupture", "repair"))
    for study, r in ref["logistic"].items():
        s = per[per["study"] == study].set_index("term").loc[r["term"]]
        assert (s["n"] == r["n"]).all() and (s["n_events"] == r["n_events"]).all()
        if max(r["se"]) > 100:  # R: separation (huge SE); the app says so instead of printing nonsense
            assert s["estimate"].isna().all() and s["note"].str.contains("separation").all()
            continue
        np.testing.assert_allclose(s["estimate"], r["estimate"], rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(s["se"], r["se"], rtol=1e-6, atol=1e-8)
    # pooled over the studies with finite estimates: metafor-style REML through the meta engine
    ok = per[np.isfinite(per["estimate"])]
    early = ok[ok["term"] == "early_alliance"]
    m = ev_meta(early)
    assert pooled.set_index("term").loc["early_alliance", "estimate"] == pytest.approx(m.estimate, rel=1e-10)
    assert pooled.set_index("term").loc["early_alliance", "k"] == 2


def ev_meta(s):
    from analysis.meta import random_effects

    return random_effects(s["estimate"].to_numpy(float), s["se"].to_numpy(float) ** 2, method="REML", ci_tau2=False)


def test_cox_equals_r_coxph_counting_process(ref_data):
    d, ref = ref_data
    per, pooled = dm.dropout_cox(d)
    cp = dm.counting_process(d)
    for study, r in ref["cox"].items():
        row = per.set_index("study").loc[study]
        assert row["estimate"] == pytest.approx(r["estimate"], rel=1e-6)
        assert row["se"] == pytest.approx(r["se"], rel=1e-6)
        assert (cp["study"] == study).sum() == r["n_rows"] and cp.loc[cp["study"] == study, "event"].sum() == r["n_events"]
    assert pooled["k"].iloc[0] == 3 and pooled["ratio"].iloc[0] == pytest.approx(np.exp(pooled["estimate"].iloc[0]))


def test_cox_recovers_the_simulated_alliance_effect():
    """Dropout after each session with log odds −0.7 per SD of the current alliance (small hazards: the
    Cox log HR is close to it); the pooled estimate covers the truth and the CI excludes 0."""
    d = dm.simulate_dropout_data(4, 200, 10, log_odds_alliance=-0.7, base_log_odds=-2.6, seed=3)
    res = dm.dropout_models(d, ("early_alliance",))
    cox = res.cox_pooled.iloc[0]
    assert cox["ci_low"] < -0.7 < cox["ci_high"] and cox["ci_high"] < 0
    lg = res.logistic_pooled.set_index("term").loc["early_alliance"]
    assert lg["estimate"] < 0 and lg["pvalue"] < 0.05  # low early alliance → more dropout
    assert "dropped out" in res.summary() and "hazard ratio" in res.summary()
    out = res.to_frame()
    assert set(out["model"]) == {"logistic", "cox"} and "Pooled" in set(out["study"])


def test_dropout_models_say_what_is_missing():
    d, _ = ev.simulate_rupture_data(50, 7, seed=1)
    with pytest.raises(ValueError, match="'dropout' column"):
        dm.dropout_models(d)
    with pytest.raises(ValueError, match="predictors must be"):
        dm.dropout_models(d.assign(dropout=0), predictors=("age",))
    # nobody dropped out: no model, a note per study instead of a traceback
    res = dm.dropout_models(d.assign(dropout=0), predictors=("early_alliance",))
    assert res.logistic["estimate"].isna().all() and res.cox["estimate"].isna().all()
    assert any("needs" in m for m in res.messages)


def test_a_study_whose_alliance_cannot_be_standardized_is_reported_and_the_rest_run():
    """One behaviour on a zero SD (analysis.standardize): that study's rows say why, the others are fitted."""
    d = dm.simulate_dropout_data(n_studies=3, n_patients=60, seed=2)
    first = sorted(d["study"].unique())[0]
    d.loc[d["study"] == first, "alliance"] = 4.0
    res = dm.dropout_models(d, predictors=("early_alliance",))
    for per in (res.logistic, res.cox):
        bad = per[per["study"] == first]
        assert len(bad) == 1 and bad["estimate"].isna().all()
        assert bad["note"].iloc[0].startswith("early alliance has no variance" if per is res.logistic
                                              else "alliance has no variance")
        assert bad["n"].iloc[0] == 60
        assert np.isfinite(per.loc[per["study"] != first, "estimate"]).all()
    assert sum("cannot be standardized" in m for m in res.messages) == 2


def test_event_options_are_declared_once():
    """The options issue 22 added are declarations (CONTRIBUTING "The one way to add an option"): complete,
    their words read from the declaration, their METHODS anchors real, bad values refused with the generated
    message."""
    import re

    from analysis.events.options import DropoutOptions, GainOptions
    from analysis.options import declared

    methods = (Path(__file__).resolve().parents[1] / "docs" / "METHODS.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## ([0-9]+[a-z]?)\. ", methods, flags=re.M))
    new = [o for o in declared(GainOptions) if o.name == "convention"] + list(declared(DropoutOptions))
    assert [o.name for o in new] == ["convention", "predictors"]
    for o in new:
        assert o.label and o.help and o.methods and o.url, o.name
        assert set(o.labels) == set(o.choices) and o.check(o.default) == o.default
        assert o.methods.split("-", 1)[0] in sections, o.methods  # Streamlit's anchor of that section
    assert new[0].labels == ev.GAIN_CONVENTIONS and new[1].labels == ev.DROPOUT_PREDICTORS
    with pytest.raises(ValueError, match="predictors must be one of"):
        DropoutOptions(predictors=("age",))
    assert DropoutOptions(predictors=("repair", "early_alliance")).predictors == ("early_alliance", "repair")
