"""Tests for analysis.meta (METHODS §6) against R metafor 3.8 reference values.

The reference JSON is written by tests/reference/make_meta_reference.R and
holds the input data as well, so no R is needed here. Tolerance: 1e-6, taken
as absolute for values up to 1 in size and relative above that
(|ours - metafor| <= 1e-6 * max(1, |metafor|)); this also applies to the
Q-profile tau2 bounds, because the root search reproduces metafor's own
uniroot iterates rather than a more exact root.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import meta
from analysis.meta import (
    METHODS,
    egger_test,
    leave_one_out,
    meta_regression,
    random_effects,
    random_effects_many,
)

REF_PATH = Path(__file__).parent / "reference" / "meta_reference.json"
REF = json.loads(REF_PATH.read_text())
DATA = REF["datasets"]
TOL = 1e-6


def _arr(x):
    return np.atleast_1d(np.asarray([np.nan if e is None else e for e in np.atleast_1d(x)], float))


def assert_close(ours, ref, what="", tol=TOL):
    a = np.atleast_1d(np.asarray(ours, float))
    b = _arr(ref)
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
    assert np.array_equal(np.isnan(a), np.isnan(b)), f"{what}: NaN pattern {a} vs {b}"
    m = ~np.isnan(b)
    err = np.abs(a[m] - b[m]) / np.maximum(1.0, np.abs(b[m]))
    assert err.size == 0 or err.max() <= tol, f"{what}: ours {a} metafor {b} (err {err.max():.3g})"


def _data(name):
    d = DATA[name]
    return _arr(d["yi"]), _arr(d["vi"]), list(np.atleast_1d(d["labels"]))


def _control(rec):
    c = rec.get("control") or {}
    return dict(c) if isinstance(c, dict) and c else None


FIT_IDS = [
    f"{r['dataset']}-{r['method']}-{r['test']}" + ("-ctl" if _control(r) else "") for r in REF["fits"]
]


@pytest.fixture(params=["numpy"])
def engine(request):
    """Intercept-only fits have one engine (meta._fisher_scoring); kept as a fixture for the test ids."""
    return request.param


# --------------------------------------------------------------------------- pooled fits


@pytest.mark.parametrize("rec", REF["fits"], ids=FIT_IDS)
def test_random_effects_matches_metafor(rec, engine):
    y, v, labels = _data(rec["dataset"])
    res = random_effects(y, v, method=rec["method"], test=rec["test"], labels=labels,
                         control=_control(rec))
    if "error" in rec:
        # metafor stops ("Fisher scoring algorithm did not converge"); we report it
        assert "did not converge" in rec["error"]
        assert res.converged is False
        assert any("did not converge" in m for m in res.messages)
        return
    assert res.converged
    if rec["k"] == 1:
        # no pooling: the study itself; metafor's Q = 0 / I2 = 0 are NaN here by design
        for ours, key in [(res.estimate, "estimate"), (res.se, "se"), (res.statistic, "stat"),
                          (res.pvalue, "pval"), (res.ci_low, "ci_lb"), (res.ci_high, "ci_ub"),
                          (res.pi_low, "pi_lb"), (res.pi_high, "pi_ub"), (res.tau2, "tau2")]:
            assert_close(ours, rec[key], key)
        assert math.isnan(res.q) and math.isnan(res.i2) and math.isnan(res.h2)
        return
    pairs = {
        "estimate": res.estimate, "se": res.se, "stat": res.statistic, "pval": res.pvalue,
        "ci_lb": res.ci_low, "ci_ub": res.ci_high, "pi_lb": res.pi_low, "pi_ub": res.pi_high,
        "tau2": res.tau2, "se_tau2": res.tau2_se, "I2": res.i2, "H2": res.h2, "Q": res.q,
        "Qp": res.q_pvalue, "tau2_ci_lb": res.tau2_ci_low, "tau2_ci_ub": res.tau2_ci_high,
        "weights": res.weights, "ddf": res.df,
    }
    for key, ours in pairs.items():
        assert_close(ours, rec[key], f"{rec['dataset']} {rec['method']} {rec['test']} {key}")
    assert res.k == rec["k"] and res.q_df == rec["k"] - 1
    # confint's notes on bounds it could not find
    if rec.get("tau2_ci_null"):
        assert any("empty" in m for m in res.messages)
    if rec.get("tau2_ci_ub_sign") == ">":
        assert any("Upper bound" in m and "search limit" in m for m in res.messages)
    if rec["method"] == "FE" and rec["test"] == "knha":
        assert any("Knapp-Hartung" in m for m in res.messages)


def test_reference_covers_the_brief():
    names = {r["dataset"] for r in REF["fits"]}
    assert {"bcg", "molloy", "normand"} <= names
    combos = {(r["dataset"], r["method"], r["test"]) for r in REF["fits"]}
    for ds in ("bcg", "molloy", "normand"):
        for m in METHODS:
            for t in ("z", "knha", "adhoc"):
                assert (ds, m, t) in combos
    assert REF["metafor_version"].startswith("3.")


def test_general_matrix_path_equals_intercept_path():
    """The meta-regression engine with X = 1 reproduces the closed forms."""
    for name in ("bcg", "molloy", "normand", "homog", "bcg_k3"):
        y, v, _ = _data(name)
        X = np.ones((y.size, 1))
        for m in METHODS:
            a = meta._tau2_intercept(y, v, m)
            b = meta._tau2_general(y, v, X, m)
            assert a.tau2 == pytest.approx(b.tau2, rel=1e-10, abs=1e-12), (name, m)
            if m != "FE":
                assert a.se == pytest.approx(b.se, rel=1e-10), (name, m)


# --------------------------------------------------------------------------- leave-one-out


@pytest.mark.parametrize(
    "rec", REF["leave1out"], ids=[f"{r['dataset']}-{r['method']}-{r['test']}" for r in REF["leave1out"]]
)
def test_leave_one_out_matches_metafor(rec):
    y, v, labels = _data(rec["dataset"])
    df = leave_one_out(y, v, labels=labels, method=rec["method"], test=rec["test"])
    stat = "zval" if rec["test"] == "z" else "tval"
    assert list(df["study"]) == labels
    for col, key in [("estimate", "estimate"), ("se", "se"), (stat, "stat"), ("pval", "pval"),
                     ("ci_lb", "ci_lb"), ("ci_ub", "ci_ub"), ("Q", "Q"), ("Qp", "Qp"),
                     ("tau2", "tau2"), ("I2", "I2"), ("H2", "H2")]:
        assert_close(df[col].to_numpy(), rec[key], f"leave1out {col}")
    full = random_effects(y, v, method=rec["method"], test=rec["test"])
    assert df.attrs["estimate"] == pytest.approx(full.estimate)


def test_leave_one_out_needs_two_studies():
    with pytest.raises(ValueError, match="at least two"):
        leave_one_out([0.1], [0.01])


# --------------------------------------------------------------------------- Egger


@pytest.mark.parametrize(
    "rec", REF["egger"], ids=[f"{r['dataset']}-{r['method']}-{r['test']}" for r in REF["egger"]]
)
def test_egger_matches_metafor_regtest(rec):
    y, v, _ = _data(rec["dataset"])
    e = egger_test(y, v, method=rec["method"], test=rec["test"])
    for ours, key in [(e.statistic, "stat"), (e.pvalue, "pval"), (e.df, "ddf"), (e.b, "b"),
                      (e.b_ci_low, "b_ci_lb"), (e.b_ci_high, "b_ci_ub"), (e.tau2, "tau2")]:
        assert_close(ours, rec[key], f"egger {key}")
    assert "Egger" in e.summary()
    assert len(e.to_frame()) == 1


def test_egger_needs_three_studies():
    with pytest.raises(ValueError, match="at least 3"):
        egger_test([0.1, 0.2], [0.01, 0.02])


# --------------------------------------------------------------------------- meta-regression


def _mods(rec):
    d = DATA[rec["dataset"]]
    names = list(np.atleast_1d(rec["moderators"]))
    return pd.DataFrame({n: d[n] for n in names})


@pytest.mark.parametrize(
    "rec",
    REF["metareg"],
    ids=[f"{'+'.join(np.atleast_1d(r['moderators']))}-{r['method']}-{r['test']}" for r in REF["metareg"]],
)
def test_meta_regression_matches_metafor(rec):
    y, v, _ = _data(rec["dataset"])
    res = meta_regression(y, v, _mods(rec), method=rec["method"], test=rec["test"])
    # names: ours 'alloc[random]', metafor 'allocrandom'
    ours = ["intrcpt"] + [t.replace("[", "").replace("]", "") for t in res.terms[1:]]
    assert ours == list(rec["terms"])
    for got, key in [(res.estimate, "b"), (res.se, "se"), (res.statistic, "stat"),
                     (res.pvalue, "pval"), (res.ci_low, "ci_lb"), (res.ci_high, "ci_ub"),
                     (res.qm, "QM"), (np.array(res.qm_df), "QMdf"), (res.qm_pvalue, "QMp"),
                     (res.qe, "QE"), (res.qe_pvalue, "QEp"), (res.tau2, "tau2"),
                     (res.tau2_se, "se_tau2"), (res.i2, "I2"), (res.h2, "H2"), (res.r2, "R2"),
                     (res.tau2_ci_low, "tau2_ci_lb"), (res.tau2_ci_high, "tau2_ci_ub")]:
        assert_close(got, rec[key], f"metareg {key}")
    assert res.k == rec["k"] and res.p == rec["p"] and res.qe_df == rec["k"] - rec["p"]
    tab = res.to_frame()
    assert list(tab["term"]) == list(res.terms)
    assert tab["estimate"].to_numpy() == pytest.approx(res.estimate)


def _bcg_frame():
    d = DATA["bcg"]
    return _arr(d["yi"]), _arr(d["vi"]), pd.DataFrame(
        {"ablat": d["ablat"], "year": d["year"], "alloc": d["alloc"]})


def test_meta_regression_categorical_reference_level_follows_categories():
    y, v, mods = _bcg_frame()
    default = meta_regression(y, v, mods[["alloc"]])
    cat = mods[["alloc"]].copy()
    cat["alloc"] = pd.Categorical(cat["alloc"], categories=["systematic", "alternate", "random"])
    recoded = meta_regression(y, v, cat)
    assert recoded.terms == ("intercept", "alloc[alternate]", "alloc[random]")
    # the model is the same, only parameterised differently
    assert recoded.tau2 == pytest.approx(default.tau2, rel=1e-9)
    assert recoded.qm == pytest.approx(default.qm, rel=1e-8)
    # the intercept is now the 'systematic' group mean = old intercept + its contrast
    assert recoded.estimate[0] == pytest.approx(default.estimate[0] + default.estimate[2], rel=1e-8)


def test_meta_regression_string_dtype_and_no_formula():
    """pandas 3 reads text as StringDtype; names with odd characters are fine
    because nothing is parsed as a formula."""
    y, v, mods = _bcg_frame()
    odd = pd.DataFrame({"latitude (abs) + 1": mods["ablat"].to_numpy(),
                        "alloc; drop": mods["alloc"].astype("string")})
    res = meta_regression(y, v, odd)
    assert res.terms[1] == "latitude (abs) + 1"
    assert res.terms[2].startswith("alloc; drop[")
    ref = meta_regression(y, v, mods[["ablat", "alloc"]])
    assert res.estimate == pytest.approx(ref.estimate)


def test_meta_regression_drops_redundant_columns_with_message():
    y, v, mods = _bcg_frame()
    m2 = mods[["ablat"]].copy()
    m2["ablat_x2"] = 2 * m2["ablat"]
    m2["const"] = 5.0
    res = meta_regression(y, v, m2)
    base = meta_regression(y, v, mods[["ablat"]])
    assert res.terms == ("intercept", "ablat")
    assert set(res.dropped) == {"ablat_x2", "const"}
    assert any("Redundant" in m for m in res.messages)
    assert res.estimate == pytest.approx(base.estimate)


def test_meta_regression_bad_input():
    y, v, mods = _bcg_frame()
    with pytest.raises(ValueError, match="missing"):
        bad = mods[["ablat"]].copy()
        bad.loc[2, "ablat"] = np.nan
        meta_regression(y, v, bad)
    with pytest.raises(ValueError, match="rows"):
        meta_regression(y, v, mods.iloc[:5])
    with pytest.raises(ValueError, match="No usable moderator"):
        meta_regression(y, v, pd.DataFrame({"c": np.ones(y.size)}))
    with pytest.raises(ValueError, match="needs more studies"):
        meta_regression(y[:3], v[:3], mods[["ablat", "year"]].iloc[:3])


def test_meta_regression_summary_sentence():
    y, v, mods = _bcg_frame()
    res = meta_regression(y, v, mods[["ablat"]])
    s = res.summary()
    assert "ablat" in s and "were" in s and "QE(11)" in s


# --------------------------------------------------------------------------- batched


def test_random_effects_many_matches_metafor_with_padding():
    """Rows of different k (NaN-padded) fitted at once equal metafor's fits."""
    names = ["bcg", "molloy", "normand", "homog"]
    kmax = max(len(DATA[n]["yi"]) for n in names)
    Y = np.full((len(names), kmax), np.nan)
    V = np.full((len(names), kmax), np.nan)
    for i, n in enumerate(names):
        y, v, _ = _data(n)
        Y[i, : y.size] = y
        V[i, : v.size] = v
    for method in METHODS:
        for test in ("z", "knha"):
            df = random_effects_many(Y, V, method=method, test=test)
            for i, n in enumerate(names):
                rec = next(r for r in REF["fits"] if r["dataset"] == n
                           and r["method"] == method and r["test"] == test)
                row = df.iloc[i]
                for col, key in [("estimate", "estimate"), ("se", "se"), ("statistic", "stat"),
                                 ("pvalue", "pval"), ("ci_low", "ci_lb"), ("ci_high", "ci_ub"),
                                 ("pi_low", "pi_lb"), ("pi_high", "pi_ub"), ("tau2", "tau2"),
                                 ("tau2_se", "se_tau2"), ("i2", "I2"), ("h2", "H2"),
                                 ("q", "Q"), ("q_pvalue", "Qp")]:
                    assert_close(row[col], rec[key], f"many {n} {method} {test} {col}")


def test_random_effects_many_equals_loop_and_reports_nonconvergence():
    rng = np.random.default_rng(7)
    n, k = 300, 12
    V = rng.uniform(0.005, 0.2, (n, k))
    Y = rng.normal(0.2, np.sqrt(V + 0.04))
    Y[5, 3:] = np.nan  # a row with k = 3
    V[6, 1:] = np.nan  # a row with k = 1 (scalar fallback)
    Y[6, 1:] = np.nan
    y_nc, v_nc, _ = _data("nonconv")
    Y[7, :] = np.nan
    V[7, :] = np.nan
    Y[7, :k] = y_nc[:k]
    V[7, :k] = v_nc[:k]
    for method in ("REML", "DL", "PM", "EB"):
        df = random_effects_many(Y, V, method=method, test="knha")
        for i in range(0, n, 23):
            m = ~np.isnan(Y[i])
            r = random_effects(Y[i, m], V[i, m], method=method, test="knha", ci_tau2=False)
            assert df.loc[i, "k"] == r.k
            assert bool(df.loc[i, "converged"]) == r.converged
            for col in ("estimate", "se", "tau2", "pi_low", "i2"):
                a, b = df.loc[i, col], getattr(r, col)
                assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-8, abs=1e-10)


def test_random_effects_many_nonconvergence_flag():
    y, v, _ = _data("nonconv")
    df = random_effects_many(np.vstack([y, y]), np.vstack([v, v * 1.0]), method="REML")
    assert not df["converged"].any()
    assert (df["iterations"] > 100).all()


def test_random_effects_many_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        random_effects_many(np.zeros((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="positive"):
        random_effects_many(np.zeros((2, 3)), -np.ones((2, 3)))
    with pytest.raises(ValueError, match="k = 0"):
        random_effects_many(np.full((1, 3), np.nan), np.full((1, 3), np.nan))


# --------------------------------------------------------------------------- degenerate input


@pytest.mark.parametrize(
    "yi, vi, match",
    [
        ([], [], "k = 0"),
        ([0.1, 0.2], [0.01], "2 values but vi has 1"),
        ([0.1, np.nan], [0.01, 0.02], "missing or infinite"),
        ([0.1, np.inf], [0.01, 0.02], "missing or infinite"),
        ([0.1, 0.2], [0.01, np.nan], "missing or infinite"),
        ([0.1, 0.2], [0.01, 0.0], "must be positive"),
        ([0.1, 0.2], [0.01, -0.02], "must be positive"),
        (["a", "b"], [0.01, 0.02], "numbers only"),
        ([[0.1, 0.2]], [[0.01, 0.02]], "one-dimensional"),
    ],
)
def test_bad_input_raises_clear_value_error(yi, vi, match):
    with pytest.raises(ValueError, match=match):
        random_effects(yi, vi)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="method must be one of"):
        random_effects([0.1, 0.2], [0.01, 0.02], method="XYZ")
    with pytest.raises(ValueError, match="test must be one of"):
        random_effects([0.1, 0.2], [0.01, 0.02], test="t2")
    with pytest.raises(ValueError, match="level"):
        random_effects([0.1, 0.2], [0.01, 0.02], level=95)
    with pytest.raises(ValueError, match="labels has 1"):
        random_effects([0.1, 0.2], [0.01, 0.02], labels=["a"])
    with pytest.raises(ValueError, match="n_patients has 3"):
        random_effects([0.1, 0.2], [0.01, 0.02], n_patients=[1, 2, 3])
    with pytest.raises(ValueError, match="Unknown control"):
        random_effects([0.1, 0.2], [0.01, 0.02], control={"stepsize": 1})


def test_nan_message_names_the_study():
    with pytest.raises(ValueError, match="Beta"):
        random_effects([0.1, np.nan, 0.3], [0.01, 0.02, 0.03], labels=["Alpha", "Beta", "Gamma"])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("test", ["z", "knha"])
def test_k1_returns_the_study_without_pooling(method, test):
    res = random_effects([0.42], [0.04], method=method, test=test, labels=["Solo"])
    assert res.k == 1 and res.estimate == 0.42 and res.se == pytest.approx(0.2)
    assert res.ci_low == pytest.approx(0.42 - 1.959963984540054 * 0.2)
    assert res.ci_high == pytest.approx(0.42 + 1.959963984540054 * 0.2)
    assert res.tau2 == 0.0
    assert all(math.isnan(x) for x in (res.i2, res.h2, res.q, res.q_pvalue, res.tau2_ci_low))
    assert res.test == "z"
    assert any("no pooling" in m for m in res.messages)
    if test == "knha":
        assert any("z-test was used" in m for m in res.messages)
    assert "nothing was pooled" in res.summary()
    assert list(res.weights) == [100.0]


def test_k2_pools_with_warning():
    y, v, _ = _data("bcg_k2")
    res = random_effects(y, v)
    assert res.k == 2 and math.isfinite(res.estimate)
    assert any("Only two studies" in m for m in res.messages)
    assert "very uncertain" in res.summary()


def test_nonconvergence_is_reported_not_hidden():
    y, v, _ = _data("nonconv")
    res = random_effects(y, v, method="REML")
    assert res.converged is False
    assert res.iterations == 101
    assert any("did not converge" in m and "stepadj" in m for m in res.messages)
    assert res.to_frame()["converged"].item() is False or not res.to_frame()["converged"].item()
    ok = random_effects(y, v, method="REML", control={"stepadj": 0.5})
    assert ok.converged and not any("converge" in m for m in ok.messages)


def test_result_is_frozen_and_arrays_read_only():
    y, v, labels = _data("bcg")
    res = random_effects(y, v, labels=labels)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.estimate = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        res.weights[0] = 1.0
    with pytest.raises(ValueError):
        res.yi[0] = 1.0
    # the caller's arrays are not frozen or aliased
    y2 = np.array(y)
    res2 = random_effects(y2, v)
    y2[0] = 99.0
    assert res2.yi[0] == y[0]


def test_to_frame_and_studies_frame():
    y, v, labels = _data("bcg")
    res = random_effects(y, v, labels=labels, n_patients=DATA["bcg"]["n"], test="knha")
    row = res.to_frame()
    assert row.shape[0] == 1
    assert row["estimate"].item() == res.estimate
    assert row["tau2_ci_high"].item() == res.tau2_ci_high
    assert row["df"].item() == 12
    st_ = res.studies_frame()
    assert list(st_["study"]) == labels
    assert st_["weight"].sum() == pytest.approx(100.0)
    assert st_["n_patients"].tolist() == list(DATA["bcg"]["n"])
    assert (st_["ci_low"] < st_["yi"]).all()


def test_summary_sentence_is_plain_and_complete():
    y, v, labels = _data("bcg")
    res = random_effects(y, v, labels=labels)
    s = res.summary()
    assert s.count(".") >= 1 and s.endswith(".")
    assert "13 studies" in s
    assert "\u22120.71" in s  # estimate with a true minus sign
    assert "95% CI" in s and "prediction interval" in s
    assert "I\u00b2 = 92%" in s and "considerable" in s
    assert "restricted maximum likelihood" in s
    fe = random_effects(y, v, method="FE")
    assert "common-effect" in fe.summary() and "no prediction interval" in fe.summary()


# --------------------------------------------------------------------------- textbook identities


def test_dl_matches_textbook_formulas():
    y, v, _ = _data("molloy")
    res = random_effects(y, v, method="DL")
    w = 1 / v
    mu_fe = np.sum(w * y) / np.sum(w)
    q = np.sum(w * (y - mu_fe) ** 2)
    c = np.sum(w) - np.sum(w**2) / np.sum(w)
    tau2 = max(0.0, (q - (y.size - 1)) / c)
    assert res.q == pytest.approx(q, rel=1e-12)
    assert res.tau2 == pytest.approx(tau2, rel=1e-12)
    assert res.i2 == pytest.approx(100 * (q - (y.size - 1)) / q, rel=1e-10)
    ws = 1 / (v + tau2)
    assert res.estimate == pytest.approx(np.sum(ws * y) / np.sum(ws), rel=1e-12)
    assert res.se == pytest.approx(np.sqrt(1 / np.sum(ws)), rel=1e-12)


def test_knha_uses_t_on_k_minus_1_df_and_untruncated_s2():
    y, v, _ = _data("homog")  # homogeneous: Knapp-Hartung s^2 < 1, not truncated
    z = random_effects(y, v, method="REML", test="z")
    t = random_effects(y, v, method="REML", test="knha")
    w = 1 / (v + t.tau2)
    s2 = np.sum(w * (y - t.estimate) ** 2) / (y.size - 1)
    assert s2 < 1
    assert t.se == pytest.approx(z.se * math.sqrt(s2), rel=1e-12)
    assert t.df == y.size - 1


finite = st.floats(-3, 3, allow_nan=False, allow_infinity=False)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(finite, st.floats(0.001, 1.0)), min_size=3, max_size=25),
    st.floats(-5, 5),
    st.sampled_from(METHODS),
)
def test_shift_equivariance_and_permutation_invariance(studies, shift, method):
    y = np.array([s[0] for s in studies])
    v = np.array([s[1] for s in studies])
    a = random_effects(y, v, method=method, ci_tau2=False)
    b = random_effects(y + shift, v, method=method, ci_tau2=False)
    if a.converged and b.converged:
        assert b.estimate == pytest.approx(a.estimate + shift, abs=1e-6)
        assert b.tau2 == pytest.approx(a.tau2, abs=1e-6)
        assert b.q == pytest.approx(a.q, rel=1e-6, abs=1e-9)
    perm = np.random.default_rng(0).permutation(y.size)
    c = random_effects(y[perm], v[perm], method=method, ci_tau2=False)
    if a.converged and c.converged:
        assert c.estimate == pytest.approx(a.estimate, abs=1e-6)
        assert c.tau2 == pytest.approx(a.tau2, abs=1e-6)
        assert c.weights == pytest.approx(a.weights[perm], abs=1e-4)
    assert a.weights.sum() == pytest.approx(100.0)
    assert a.tau2 >= 0
    if method != "FE":
        assert a.pi_low <= a.ci_low + 1e-12 and a.pi_high >= a.ci_high - 1e-12


def test_brent_root_finds_a_known_root():
    f = lambda x: x**3 - 2 * x - 5
    root, ok = meta._brent_root(f, 2.0, 3.0, f(2.0), f(3.0), 1e-12, 100)
    assert ok and root == pytest.approx(2.0945514815423265, abs=1e-11)
    root, ok = meta._brent_root(f, 2.0, 3.0, f(2.0), f(3.0), 1e-12, 1)
    assert not ok


def test_control_is_passed_through_everywhere():
    """metafor's remedy (stepadj = 0.5) reaches the batched fit, leave-one-out,
    meta-regression and Egger's test."""
    y, v, _ = _data("nonconv")
    rec = next(r for r in REF["fits"] if r["dataset"] == "nonconv" and r["method"] == "REML"
               and r["test"] == "z" and _control(r))
    ctl = {"stepadj": 0.5}
    df = random_effects_many(y[None, :], v[None, :], control=ctl)
    assert bool(df.loc[0, "converged"])
    assert_close(df.loc[0, "tau2"], rec["tau2"], "many tau2")
    assert_close(df.loc[0, "estimate"], rec["estimate"], "many estimate")
    assert not random_effects_many(y[None, :], v[None, :])["converged"].item()
    l1o = leave_one_out(y, v, control=ctl)
    assert l1o["converged"].all()
    mods = pd.DataFrame({"x": np.arange(y.size, dtype=float)})
    mr = meta_regression(y, v, mods, control=ctl)
    assert mr.converged
    eg = egger_test(y, v, control=ctl)
    assert eg.converged
    with pytest.raises(ValueError, match="positive"):
        random_effects(y, v, control={"stepadj": 0})


def test_summary_homogeneous_and_egger_level():
    y, v, _ = _data("homog")
    s = random_effects(y, v).summary()
    assert "low" in s and "Q(4) = 0.06, p > .999" in s
    y, v, _ = _data("bcg")
    assert "90% CI" in egger_test(y, v, level=0.90).summary()


def test_adhoc_is_knapp_hartung_never_narrower_than_z():
    """metafor's test="adhoc": s² truncated at 1. On homogeneous data (s² < 1) untruncated
    Knapp–Hartung is narrower than z; adhoc is not (its SE equals z's, its crit is t's)."""
    d = DATA["homog"]
    y, v = np.asarray(d["yi"]), np.asarray(d["vi"])
    z = random_effects(y, v, test="z")
    kh = random_effects(y, v, test="knha")
    ad = random_effects(y, v, test="adhoc")
    assert kh.se < z.se and ad.se == pytest.approx(z.se, rel=1e-12)
    assert ad.ci_high - ad.ci_low > z.ci_high - z.ci_low > kh.ci_high - kh.ci_low
    assert ad.df == kh.df == len(y) - 1
    bcg = DATA["bcg"]
    a, k = (random_effects(np.asarray(bcg["yi"]), np.asarray(bcg["vi"]), test=t) for t in ("adhoc", "knha"))
    assert a.se == pytest.approx(k.se, rel=1e-12)  # s² > 1: the rule changes nothing
