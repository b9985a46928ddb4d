"""Tests of analysis.mixed: the fast REML/ML solvers and the within (CR1) estimator.

Reference values: tests/reference/lagged_reference.json (lme4, clubSandwich; written by
tests/reference/make_lagged_reference.R from the rows in lagged_rows.csv). Independent
checks: a dense-matrix likelihood written out from the textbook formula, dummy-variable
regression for the within estimator, and explicit per-cluster loops for CR1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import mixed

REF = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def ref():
    return json.loads((REF / "lagged_reference.json").read_text())


@pytest.fixture(scope="module")
def rows():
    return pd.read_csv(REF / "lagged_rows.csv")


def _design(rows, rowset, study, direction, terms):
    d = rows[(rows.rowset == rowset) & (rows.study == study) & (rows.direction == direction)]
    X = np.column_stack([np.ones(len(d))] + [d[t].to_numpy() for t in terms])
    return d, X, d["lead"].to_numpy()


def dense_deviance(X, y, g, V_of_group, method="REML"):
    """-2 log-likelihood (ML) or REML criterion from explicit N×N matrices (lme4 scale)."""
    N, p = X.shape
    V = np.zeros((N, N))
    for grp in np.unique(g):
        i = np.flatnonzero(g == grp)
        V[np.ix_(i, i)] = V_of_group(i)
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ beta
    dev = np.linalg.slogdet(V)[1] + r @ Vi @ r + N * np.log(2 * np.pi)
    if method == "REML":
        dev += np.linalg.slogdet(XtViX)[1] - p * np.log(2 * np.pi)
    return dev, beta, np.linalg.inv(XtViX)


# ----------------------------------------------------------------- lme4 references


def test_random_intercept_matches_lme4_reml_and_ml(ref, rows):
    """Direct solver calls on the exported rows: REML (configs person_mean, noprior) and ML."""
    n = 0
    for r in ref["fits"]:
        if r["config"] not in ("person_mean", "noprior", "person_mean_ml", "none") or "error" in r:
            continue
        rowset = {"person_mean_ml": "person_mean"}.get(r["config"], r["config"])
        d, X, y = _design(rows, rowset, r["study"], r["direction"], r["terms"][1:])
        method = "ML" if r["engine"] == "lmer_ml" else "REML"
        f = mixed.fit_random_intercept(X, y, d["patient"].to_numpy(), method=method)
        np.testing.assert_allclose(f.beta, r["estimate"], rtol=1e-4, atol=1e-10)
        np.testing.assert_allclose(f.se, r["se"], rtol=1e-4)
        np.testing.assert_allclose(f.sigma2, r["sigma2"], rtol=1e-4)
        np.testing.assert_allclose(f.tau2, r["tau2"], rtol=1e-4, atol=1e-9 * r["sigma2"])
        np.testing.assert_allclose(f.deviance, r["deviance"], rtol=1e-9)
        assert f.singular == r["singular"]
        n += 1
    assert n >= 20


def test_boundary_keeps_between_effects_like_lme4(ref, rows):
    """At τ² = 0 the between-patient coefficients must not be zeroed (statsmodels issue 10239):
    they equal lme4's (singular fit) and hence OLS, and are clearly non-zero."""
    hits = 0
    for r in ref["fits"]:
        if r["config"] != "person_mean" or r["study"] != "B-boundary":
            continue
        assert r["singular"] and r["tau2"] == 0
        d, X, y = _design(rows, "person_mean", r["study"], r["direction"], r["terms"][1:])
        f = mixed.fit_random_intercept(X, y, d["patient"].to_numpy())
        assert f.singular and f.tau2 == 0.0 and f.theta[0] == 0.0
        ols = np.linalg.lstsq(X, y, rcond=None)[0]
        np.testing.assert_allclose(f.beta, ols, rtol=1e-10)
        np.testing.assert_allclose(f.beta, r["estimate"], rtol=1e-6)
        jb = r["terms"].index("prior_between")
        assert abs(f.beta[jb]) > 0.5  # the between-level coefficient is ~1, not 0
        hits += 1
    assert hits == 2


def test_random_slope_matches_lme4(ref, rows):
    """(1 + time | patient). Where lme4 (bobyqa, rhoend 1e-12) reaches the same optimum all
    quantities agree to 1e-4; where lme4 stops at a worse boundary point, our REML criterion
    is lower, and our criterion and GLS estimates evaluated at lme4's θ reproduce lme4's."""
    same = better = 0
    for r in ref["fits"]:
        if r["engine"] != "lmer" or "tau2_slope" not in r:
            continue
        rowset = "noprior" if r["config"].startswith("noprior") else "person_mean"
        d, X, y = _design(rows, rowset, r["study"], r["direction"], r["terms"][1:])
        Z = np.column_stack([np.ones(len(d)), d["time"].to_numpy()])
        g = pd.factorize(d["patient"])[0]
        f = mixed.fit_random_slope(X, y, g, Z)
        prob = mixed._RSProblem(X, y, Z, g, "REML")
        np.testing.assert_allclose(prob.dev(np.array(r["theta"])), r["deviance"], rtol=1e-9)
        if abs(f.deviance - r["deviance"]) < 1e-6:
            np.testing.assert_allclose(f.beta, r["estimate"], rtol=1e-4, atol=1e-8)
            np.testing.assert_allclose(f.se, r["se"], rtol=1e-4)
            np.testing.assert_allclose(f.sigma2, r["sigma2"], rtol=1e-4)
            np.testing.assert_allclose(
                [f.re_cov[0, 0], f.re_cov[1, 1], f.re_cov[0, 1]],
                [r["tau2"], r["tau2_slope"], r["cov_intercept_slope"]],
                rtol=1e-4, atol=1e-7,
            )
            assert f.singular == r["singular"]
            same += 1
        else:
            assert f.deviance < r["deviance"] - 1e-6
            beta, cov, _s2 = prob.solve(np.array(r["theta"]))
            np.testing.assert_allclose(beta, r["estimate"], rtol=1e-4, atol=1e-8)
            np.testing.assert_allclose(np.sqrt(np.diag(cov)), r["se"], rtol=1e-4)
            better += 1
    assert same >= 6  # including every non-singular fit


def test_within_cr1_matches_clubsandwich(ref, rows):
    n = 0
    for r in ref["fits"]:
        if r["engine"] != "lm_cr1":
            continue
        rowset = "detrended" if "detrended" in r["config"] else "person_mean"
        d = rows[(rows.rowset == rowset) & (rows.study == r["study"]) & (rows.direction == r["direction"])]
        X = d[r["terms"]].to_numpy()
        f = mixed.fit_within_cr1(X, d["lead"].to_numpy(), d["patient"].to_numpy())
        np.testing.assert_allclose(f.beta, r["estimate"], rtol=1e-6)
        np.testing.assert_allclose(f.se, r["se"], rtol=1e-6)
        assert f.df == r["df"]
        # sandwich::vcovCL(type = "HC1") also scales by (N - 1)/(N - K): different by design
        assert np.all(np.asarray(r["se_vcovCL_HC1"]) > f.se)
        n += 1
    assert n == 12


# ----------------------------------------------------------------- independent formulas


def _random_data(seed, G=25, p=3, tau=0.7, slope=0.0):
    rng = np.random.default_rng(seed)
    n = rng.integers(1, 7, G)
    g = np.repeat(np.arange(G), n)
    N = len(g)
    X = np.column_stack([np.ones(N), rng.normal(size=(N, p - 1))])
    t = rng.normal(size=N)
    y = X @ rng.normal(size=p) + tau * rng.normal(size=G)[g] + slope * rng.normal(size=G)[g] * t + rng.normal(size=N)
    return X, y, g, t


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), method=st.sampled_from(["REML", "ML"]), tau=st.sampled_from([0.0, 0.3, 1.5]))
def test_random_intercept_equals_dense_likelihood_optimum(seed, method, tau):
    X, y, g, _ = _random_data(seed, tau=tau)
    f = mixed.fit_random_intercept(X, y, g, method=method)
    s2, t2 = f.sigma2, f.tau2
    dev, beta, xtvix = dense_deviance(X, y, g, lambda i: s2 * np.eye(len(i)) + t2, method)
    np.testing.assert_allclose(f.deviance, dev, rtol=1e-9)
    np.testing.assert_allclose(f.beta, beta, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(f.cov_beta, xtvix, rtol=1e-6, atol=1e-12)
    # optimality: no better value of (σ², τ²) nearby, τ² ≥ 0 respected
    for ds, dt in [(1.01, 1.0), (0.99, 1.0), (1.0, 1.05), (1.0, 0.95)]:
        t2b = t2 * dt if t2 > 0 else 1e-3 * (dt - 0.95)
        d2 = dense_deviance(X, y, g, lambda i, a=s2 * ds, b=t2b: a * np.eye(len(i)) + b, method)[0]
        assert d2 >= dev - 1e-9


def test_random_slope_equals_dense_likelihood():
    X, y, g, t = _random_data(7, G=30, tau=0.8, slope=0.5)
    Z = np.column_stack([np.ones(len(y)), t])
    f = mixed.fit_random_slope(X, y, g, Z)
    D = f.re_cov

    def V(i):
        Zi = Z[i]
        return f.sigma2 * np.eye(len(i)) + Zi @ D @ Zi.T

    dev, beta, xtvix = dense_deviance(X, y, g, V, "REML")
    np.testing.assert_allclose(f.deviance, dev, rtol=1e-9)
    np.testing.assert_allclose(f.beta, beta, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(f.cov_beta, xtvix, rtol=1e-5, atol=1e-12)


def test_within_estimator_equals_dummy_regression_and_explicit_cr1():
    X, y, g, _ = _random_data(3, G=20, p=3)
    Xw = X[:, 1:]
    f = mixed.fit_within_cr1(Xw, y, g)
    D = (g[:, None] == np.unique(g)[None, :]).astype(float)
    full = np.column_stack([Xw, D])
    coef = np.linalg.lstsq(full, y, rcond=None)[0]
    np.testing.assert_allclose(f.beta, coef[:2], rtol=1e-9)
    # CR1 from explicit per-cluster sums on demeaned data
    Xd = Xw - np.array([Xw[g == k].mean(0) for k in g])
    yd = y - np.array([y[g == k].mean() for k in g])
    e = yd - Xd @ f.beta
    B = np.linalg.inv(Xd.T @ Xd)
    meat = sum(np.outer(Xd[g == k].T @ e[g == k], Xd[g == k].T @ e[g == k]) for k in np.unique(g))
    G = len(np.unique(g))
    np.testing.assert_allclose(f.cov_beta, G / (G - 1) * B @ meat @ B, rtol=1e-9)


def test_unsorted_groups_and_labels_give_identical_fits():
    X, y, g, _ = _random_data(11)
    perm = np.random.default_rng(0).permutation(len(y))
    labels = np.array([f"id{k:03d}" for k in g])
    a = mixed.fit_random_intercept(X, y, g)
    b = mixed.fit_random_intercept(X[perm], y[perm], labels[perm])
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-10)
    np.testing.assert_allclose(a.tau2, b.tau2, rtol=1e-8)


def test_ols_matches_lstsq_and_classical_se():
    rng = np.random.default_rng(2)
    X = np.column_stack([np.ones(40), rng.normal(size=(40, 2))])
    y = X @ [1, 2, 3] + rng.normal(size=40)
    f = mixed.fit_ols(X, y)
    b, rss, *_ = np.linalg.lstsq(X, y, rcond=None)
    np.testing.assert_allclose(f.beta, b, rtol=1e-10)
    np.testing.assert_allclose(f.cov_beta, rss[0] / 37 * np.linalg.inv(X.T @ X), rtol=1e-9)
    assert f.df == 37


# ----------------------------------------------------------------- errors


def test_errors_are_clear():
    X, y, g, _ = _random_data(1)
    with pytest.raises(ValueError, match="collinear"):
        mixed.fit_random_intercept(np.column_stack([X, X[:, 1] * 2]), y, g)
    with pytest.raises(ValueError, match="zero in every row"):
        mixed.fit_random_intercept(np.column_stack([X, np.zeros(len(y))]), y, g, names=["a", "b", "c", "within"])
    with pytest.raises(ValueError, match="single row"):
        mixed.fit_random_intercept(X, y, np.arange(len(y)))
    with pytest.raises(ValueError, match="two groups"):
        mixed.fit_random_intercept(X, y, np.zeros(len(y), int))
    with pytest.raises(ValueError, match="method"):
        mixed.fit_random_intercept(X, y, g, method="GLS")
    y2 = y.copy()
    y2[0] = np.nan
    with pytest.raises(ValueError, match="missing"):
        mixed.fit_random_intercept(X, y2, g)


def test_wald_table_normal_and_t():
    stat, _lo, hi, p = mixed.wald_table([1.0], [0.5])
    assert stat[0] == 2.0 and abs(p[0] - 0.0455003) < 1e-6 and abs(hi[0] - (1 + 1.959964 * 0.5)) < 1e-6
    stat, _lo, hi, p = mixed.wald_table([1.0], [0.5], df=10)
    assert abs(p[0] - 0.07338803) < 1e-6
