"""Paper presets (issue 11 §5): each seed's qualitative table recovered on its demo with the preset's
options, and the registry's rules. The demos plant these patterns (demo_data/README.md, truth.json)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import meta, pipeline, presets
from analysis.decomposition import total_within_between
from analysis.descriptives import pre_post_d, session_descriptives

DEMO = Path(__file__).resolve().parents[1] / "demo_data"


def _demo(p):
    return pd.read_csv(DEMO / p.demo_file)


def test_icbt_004_table_on_its_demo():
    """Seed 004: total negative and significant; within negative; between positive; no reverse effect."""
    p = presets.get("icbt_004")
    o = p.lag_options()
    df = _demo(p)
    a2s = total_within_between(df, "alliance_to_symptoms", lag=o.lag, standardize=o.standardize,
                               sessions=o.sessions)
    tot, wit, bet = a2s.coef("total", "predictor"), a2s.coef("within", "within"), a2s.coef("between", "between")
    assert tot["estimate"] < 0 and tot["pvalue"] < 0.05
    assert wit["estimate"] < 0 and wit["pvalue"] < 0.05
    assert bet["estimate"] > 0 and bet["pvalue"] < 0.05
    # the within model's between alliance term: not significant (seed 004: B = −0.028, p = .091)
    assert a2s.coef("within", "between")["pvalue"] > 0.05
    s2a = total_within_between(df, "symptoms_to_alliance", lag=o.lag, standardize=o.standardize,
                               sessions=o.sessions)
    assert s2a.coef("within", "within")["pvalue"] > 0.05
    # the per-study lagged model with the preset's options says the same
    res = pipeline.two_stage(df, o)
    w = res.per_study[res.per_study["term"] == "within"].set_index("direction")
    assert w.loc["alliance_to_symptoms", "estimate"] < 0 and w.loc["alliance_to_symptoms", "pvalue"] < 0.05
    assert w.loc["symptoms_to_alliance", "pvalue"] > 0.05


def test_icbt_demo_week_to_week_change_has_table_1_size():
    """Seed 004 Table 1: SPIN SD ≈ 11–12.5, mean absolute weekly change ≈ 3.4–4.1; WAI-SR change ≈ 2.9–7.5;
    symptoms fall steadily; pre–post d large (1.63 on the LSAS)."""
    df = _demo(presets.get("icbt_004"))
    t = session_descriptives(df)
    assert t["symptoms_sd"].between(10, 14).all()
    ch = t["symptoms_abs_change_mean"].dropna()
    assert len(ch) == 10 and ch.between(2.8, 4.5).all()
    assert t["alliance_abs_change_mean"].dropna().between(2.0, 7.5).all()
    assert (np.diff(t["symptoms_mean"]) < 0).sum() >= 8
    assert pre_post_d(df, "symptoms").d > 1.0


def test_ipd_000_table_on_its_demo():
    """Seed 000: reciprocal within effects (both negative, significant when pooled) and a cross-level
    interaction (the patient's alliance level × within alliance → next symptoms), significant when pooled."""
    p = presets.get("ipd_ma_000")
    o = p.lag_options()
    assert o.sessions == (1, 7) and o.cross_level and o.standardize and o.pooling_method == "REML"
    res = pipeline.two_stage(_demo(p), o)
    for d in o.directions:
        m = res.pooled[d]
        assert m.k == 17 and m.estimate < 0 and m.ci_high < 0
    fits = [f for (_, d), f in res.fits.items() if d == "alliance_to_symptoms" and f.status != "failed"]
    yi = np.array([f.coef("interaction")["estimate"] for f in fits])
    vi = np.array([f.coef("interaction")["se"] ** 2 for f in fits])
    inter = meta.random_effects(yi, vi, method=o.pooling_method, test=o.test)
    assert inter.estimate < 0 and inter.ci_high < 0


def test_registry_rules():
    assert {"ipd_ma_000", "icbt_004"} <= set(presets.PRESETS)
    with pytest.raises(ValueError, match="already registered"):
        presets.register(presets.get("icbt_004"))
    with pytest.raises(ValueError, match="Unknown preset"):
        presets.get("nope")
    for p in presets.PRESETS.values():
        assert (DEMO / p.demo_file).exists()
        assert len(p.checklist_frame()) >= 5
        with pytest.raises(TypeError):
            p.options["lagged"] = {}
    p = presets.Preset("x", "X", "999", "f.csv", {"convergence": {"model": 1}}, (("a", "b", "c"),))
    assert p.page_options("convergence") == {"model": 1} and p.page_options("lagged") == {}
    with pytest.raises(ValueError, match="checklist"):
        presets.Preset("y", "Y", "999", "f.csv", {}, (("a", "b"),))


def test_session_descriptives_and_d_by_hand():
    df = pd.DataFrame({"patient": ["a", "a", "a", "b", "b", "c"], "session": [1, 2, 3, 1, 3, 2],
                       "symptoms": [10.0, 7.0, 8.0, 20.0, 12.0, 5.0], "alliance": [1.0, 2.0, np.nan, 3.0, 4.0, 5.0]})
    t = session_descriptives(df).set_index("session")
    assert t.loc[1, "symptoms_mean"] == 15 and t.loc[1, "symptoms_sd"] == pytest.approx(np.std([10, 20], ddof=1))
    assert np.isnan(t.loc[1, "symptoms_abs_change_mean"])
    assert t.loc[2, "symptoms_abs_change_mean"] == 3 and t.loc[2, "symptoms_abs_change_n"] == 1  # only a has 1→2
    assert t.loc[3, "symptoms_abs_change_mean"] == 1  # a: |8 − 7|; b skipped session 2
    assert t.loc[3, "alliance_n"] == 1 and t.loc[2, "alliance_abs_change_mean"] == 1
    d = pre_post_d(df, "symptoms")
    assert (d.pre_session, d.post_session, d.n) == (1, 3, 2)
    sp = np.sqrt((np.var([10, 20], ddof=1) + np.var([8, 12], ddof=1)) / 2)
    assert d.d == pytest.approx((15 - 10) / sp)
    with pytest.raises(ValueError, match="before"):
        pre_post_d(df, pre=3, post=1)
