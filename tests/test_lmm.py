"""Tests of analysis.growth (the REML/ML solver behind the convergence growth models).

Independent checks, none produced by this solver:

* statsmodels ``MixedLM`` (a different algorithm and parametrisation) on an easy,
  clearly non-boundary random intercept + slope model, REML and ML;
* the textbook dense-matrix (restricted) log-likelihood with the N × N V;
* closed forms of the balanced one-way random-intercept model (ANOVA mean
  squares): REML τ̂² = (MSB − MSW)/n, ML τ̂² = ((1 − 1/m)·MSB − MSW)/n,
  σ̂² = MSW, and the boundary case MSB < MSW (τ̂² = 0, β̂ = OLS);
* exact Satterthwaite df in a balanced design where every fixed effect has a
  random counterpart (X_j = Z_j): the REML estimate of Var(β̂) is the sample
  covariance of the per-cluster OLS coefficients / m, a scaled Wishart with
  m − 1 df, so every df is exactly m − 1.

lme4 references for the same solver on the convergence models are in
tests/test_convergence.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from analysis.lmm import drop_collinear, fit_lmm

LOG2PI = np.log(2 * np.pi)


def _rs_data(m=60, n_per=8, seed=1, psi=((4.0, 0.3), (0.3, 0.25)), sigma2=1.0, beta=(10.0, -0.5, 1.5),
             drop=0.0):
    """Random intercept + slope data with a cluster-level covariate w; ``drop``: share of rows removed."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), n_per)
    t = np.tile(np.arange(n_per, dtype=float), m)
    w = rng.normal(size=m)[g]
    b = rng.multivariate_normal([0, 0], np.array(psi), size=m)
    y = beta[0] + beta[1] * t + beta[2] * w + b[g, 0] + b[g, 1] * t + rng.normal(scale=np.sqrt(sigma2), size=len(g))
    X = np.column_stack([np.ones_like(t), t, w])
    Z = np.column_stack([np.ones_like(t), t])
    keep = rng.random(len(y)) >= drop
    return y[keep], X[keep], Z[keep], g[keep]


def dense_criterion(y, X, Z, g, psi, sigma2, reml):
    """−2 log-likelihood (ML) or REML criterion from the N × N covariance matrix (lme4's constants)."""
    n, p = X.shape
    V = sigma2 * np.eye(n)
    for k in np.unique(g):
        i = np.flatnonzero(g == k)
        V[np.ix_(i, i)] += Z[i] @ psi @ Z[i].T
    Vi = np.linalg.inv(V)
    XtViX = X.T @ Vi @ X
    beta = np.linalg.solve(XtViX, X.T @ Vi @ y)
    r = y - X @ beta
    dev = np.linalg.slogdet(V)[1] + r @ Vi @ r + n * LOG2PI
    if reml:
        dev += np.linalg.slogdet(XtViX)[1] - p * LOG2PI
    return dev, beta, np.linalg.inv(XtViX)


def _statsmodels(y, X, Z, g, reml):
    from statsmodels.regression.mixed_linear_model import MixedLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = MixedLM(y, X, groups=g, exog_re=Z)
        fits = [mod.fit(reml=reml, method="lbfgs", gtol=1e-10), mod.fit(reml=reml, method="bfgs", gtol=1e-10)]
    return max(fits, key=lambda r: r.llf)


# ----------------------------------------------------------------------------- statsmodels


@pytest.mark.parametrize("reml", [True, False])
def test_matches_statsmodels_mixedlm_non_boundary(reml):
    y, X, Z, g = _rs_data(drop=0.2)
    f = fit_lmm(y, X, Z, g, reml=reml, satterthwaite=False)
    sm = _statsmodels(y, X, Z, g, reml)
    assert f.converged and not f.singular
    # well inside the parameter space: both variances and the correlation are far from the bounds
    assert f.psi[0, 0] > 1 and f.psi[1, 1] > 0.1 and abs(f.psi[0, 1]) / np.sqrt(f.psi[0, 0] * f.psi[1, 1]) < 0.9
    np.testing.assert_allclose(f.beta, sm.fe_params, rtol=1e-5)
    np.testing.assert_allclose(f.psi, np.asarray(sm.cov_re), rtol=1e-4)
    np.testing.assert_allclose(f.sigma2, sm.scale, rtol=1e-5)
    # SE: ours (and lme4's) are the GLS ones, σ̂²(X'Ṽ⁻¹X)⁻¹ at the estimates. statsmodels' bse_fe come from
    # the inverse observed Hessian of all parameters, whose β–variance block is not zero, so they differ
    # (by ~1 % here); compare with the GLS covariance at statsmodels' own estimates instead.
    cov_sm = dense_criterion(y, X, Z, g, np.asarray(sm.cov_re), sm.scale, reml)[2]
    np.testing.assert_allclose(f.se, np.sqrt(np.diag(cov_sm)), rtol=1e-4)
    # statsmodels' llf is our −criterion/2 (same constants): the optima agree
    np.testing.assert_allclose(-2 * sm.llf, f.deviance, rtol=1e-8)
    assert f.method == ("REML" if reml else "ML")


def test_ml_versus_reml():
    """ML shrinks the between-dyad variance components (no df correction for β̂) and the SEs; β̂
    differs slightly (unbalanced data); each criterion is the textbook one at the fit's own estimates;
    AIC = criterion + 2·#parameters."""
    y, X, Z, g = _rs_data(seed=3, drop=0.3)  # unbalanced, so that β̂ depends on the variance components
    fr = fit_lmm(y, X, Z, g, reml=True)
    fm = fit_lmm(y, X, Z, g, reml=False, satterthwaite=False)
    assert fm.psi[0, 0] < fr.psi[0, 0] and fm.psi[1, 1] < fr.psi[1, 1]  # (σ̂² is mostly within-dyad: ~equal)
    np.testing.assert_allclose(fm.sigma2, fr.sigma2, rtol=1e-3)
    assert np.all(fm.se < fr.se)
    np.testing.assert_allclose(fm.beta, fr.beta, rtol=1e-2)
    assert not np.allclose(fm.beta, fr.beta, rtol=1e-10)
    for f, reml in ((fr, True), (fm, False)):
        dev, beta, cov = dense_criterion(y, X, Z, g, f.psi, f.sigma2, reml)
        np.testing.assert_allclose(f.deviance, dev, rtol=1e-10)
        np.testing.assert_allclose(f.beta, beta, rtol=1e-9)
        np.testing.assert_allclose(f.vcov, cov, rtol=1e-7)
        # 3 fixed effects + 3 covariance parameters + σ
        assert f.n_params == 7
        np.testing.assert_allclose(f.aic, dev + 2 * 7, rtol=1e-12)
        np.testing.assert_allclose(f.bic, dev + np.log(len(y)) * 7, rtol=1e-12)
        np.testing.assert_allclose(f.loglik, -dev / 2, rtol=1e-12)
    # ML is the maximum of the ML criterion, so the REML estimates give a larger ML criterion, and vice versa
    assert dense_criterion(y, X, Z, g, fr.psi, fr.sigma2, False)[0] > fm.deviance
    assert dense_criterion(y, X, Z, g, fm.psi, fm.sigma2, True)[0] > fr.deviance
    # ML refit started from the REML θ reaches the same optimum
    fm2 = fit_lmm(y, X, Z, g, reml=False, satterthwaite=False, start=fr.theta)
    np.testing.assert_allclose(fm2.deviance, fm.deviance, rtol=1e-10)


# ----------------------------------------------------------------------------- closed forms


def _balanced_one_way(group_means_sd, m=12, n=5, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(scale=group_means_sd, size=m)
    y = 3.0 + np.repeat(a, n) + rng.normal(size=m * n)
    g = np.repeat(np.arange(m), n)
    ybar_j = y.reshape(m, n).mean(axis=1)
    msb = n * np.sum((ybar_j - y.mean()) ** 2) / (m - 1)
    msw = np.sum((y.reshape(m, n) - ybar_j[:, None]) ** 2) / (m * (n - 1))
    return y, g, msb, msw, m, n


def test_balanced_random_intercept_closed_forms():
    y, g, msb, msw, m, n = _balanced_one_way(2.0)
    assert msb > msw  # interior solution
    X = np.ones((len(y), 1))
    Z = np.ones((len(y), 1))
    fr = fit_lmm(y, X, Z, g)
    np.testing.assert_allclose(fr.sigma2, msw, rtol=1e-7)
    np.testing.assert_allclose(fr.psi[0, 0], (msb - msw) / n, rtol=1e-6)
    np.testing.assert_allclose(fr.beta[0], y.mean(), rtol=1e-12)
    # Var(grand mean) = (τ² + σ²/n)/m = MSB/(m n); the t test has m − 1 df exactly
    np.testing.assert_allclose(fr.se[0] ** 2, msb / (m * n), rtol=1e-6)
    np.testing.assert_allclose(fr.df[0], m - 1, rtol=1e-5)
    np.testing.assert_allclose(fr.pvalue[0], 2 * stats.t.sf(abs(fr.tvalue[0]), m - 1), rtol=1e-5)
    fm = fit_lmm(y, X, Z, g, reml=False, satterthwaite=False)
    np.testing.assert_allclose(fm.sigma2, msw, rtol=1e-7)
    np.testing.assert_allclose(fm.psi[0, 0], ((1 - 1 / m) * msb - msw) / n, rtol=1e-6)


def test_boundary_random_intercept_is_zero_and_flagged():
    """MSB < MSW: the REML (and ML) between-group variance is exactly 0 (not negative, not tiny-positive
    noise), β̂ is OLS, σ̂² the OLS residual variance, and the fit says it is singular."""
    y, g, msb, msw, _m, _n = _balanced_one_way(0.0, seed=4)
    assert msb < msw
    x = np.random.default_rng(9).normal(size=len(y))
    X = np.column_stack([np.ones(len(y)), x])
    Z = np.ones((len(y), 1))
    f = fit_lmm(y, X, Z, g, re_names=("intercept",))
    assert f.theta[0] == 0.0 and f.psi[0, 0] == 0.0
    assert f.singular and f.converged
    assert any("singular" in s.lower() and "intercept" in s for s in f.messages)
    ols, rss = np.linalg.lstsq(X, y, rcond=None)[:2]
    np.testing.assert_allclose(f.beta, ols, rtol=1e-10)
    np.testing.assert_allclose(f.sigma2, rss[0] / (len(y) - 2), rtol=1e-10)
    # the REML criterion of OLS (V = σ²I), written out
    N, p = X.shape
    crit = (N - p) * (1 + np.log(2 * np.pi * rss[0] / (N - p))) + np.linalg.slogdet(X.T @ X)[1]
    np.testing.assert_allclose(f.deviance, crit, rtol=1e-12)
    # and any positive τ² is worse
    for tau2 in (1e-3, 0.05, 0.5):
        assert dense_criterion(y, X, Z, g, np.array([[tau2]]), f.sigma2, True)[0] > f.deviance


def test_boundary_slope_variance_two_by_two():
    """Random intercept + slope where the data have no slope variance: the Cholesky factor's last
    diagonal entry sits at its bound 0 (or the slope variance is ~0), the fit is flagged singular, and
    no interior point of a grid around it has a lower REML criterion."""
    rng = np.random.default_rng(11)
    m, k = 40, 6
    g = np.repeat(np.arange(m), k)
    t = np.tile(np.arange(k, dtype=float), m)
    y = 2 + 0.3 * t + rng.normal(scale=1.0, size=m)[g] + rng.normal(scale=1.0, size=m * k)
    X = np.column_stack([np.ones_like(t), t])
    Z = X.copy()
    f = fit_lmm(y, X, Z, g)
    assert f.singular and f.converged
    assert f.theta[2] < 1e-6
    assert f.psi[1, 1] <= 1e-6 * f.sigma2 or abs(f.psi[0, 1]) / np.sqrt(f.psi[0, 0] * f.psi[1, 1]) > 0.999
    dev0 = dense_criterion(y, X, Z, g, f.psi, f.sigma2, True)[0]
    np.testing.assert_allclose(f.deviance, dev0, rtol=1e-10)
    # nearby admissible (θ) points: none is better
    from analysis.lmm import _Problem

    prob = _Problem(y, X, Z, g, m, (2,))
    for d in ([0, 0, 0.02], [0.01, 0.01, 0.01], [-0.01, 0.0, 0.03], [0.0, -0.02, 0.05]):
        th = f.theta + np.array(d)
        th[[0, 2]] = np.maximum(th[[0, 2]], 0)
        assert prob.criterion(th, True) >= f.deviance - 1e-9


def test_satterthwaite_df_exact_in_balanced_design():
    """X_j = Z_j for every cluster (balanced): every Satterthwaite df is exactly m − 1."""
    y, X, Z, g = _rs_data(m=30, n_per=7, seed=5)
    X = X[:, :2]
    f = fit_lmm(y, X, Z, g)
    assert not f.singular
    np.testing.assert_allclose(f.df, 29.0, rtol=2e-6)
    # and the per-cluster OLS route gives the same β̂ and Var(β̂) (sample covariance / m)
    coefs = np.array([np.linalg.lstsq(X[g == j], y[g == j], rcond=None)[0] for j in range(30)])
    np.testing.assert_allclose(f.beta, coefs.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(f.vcov, np.cov(coefs.T) / 30, rtol=1e-6)


def test_third_level_matches_dense_likelihood():
    """A therapist random intercept: criterion, β̂ and Var(β̂) equal the dense formula with V containing
    σ²_T on every pair of rows that share a therapist."""
    y, X, Z, g = _rs_data(m=40, n_per=6, seed=8)
    rng = np.random.default_rng(2)
    th_of = rng.integers(0, 8, size=40)
    y = y + rng.normal(scale=2.0, size=8)[th_of[g]]
    f = fit_lmm(y, X, Z, g, outer=th_of[g])
    assert f.n_outer == 8 and f.outer_var > 0 and f.converged
    n = len(y)
    V = f.sigma2 * np.eye(n) + f.outer_var * (th_of[g][:, None] == th_of[g][None, :])
    for k in range(40):
        i = np.flatnonzero(g == k)
        V[np.ix_(i, i)] += Z[i] @ f.psi @ Z[i].T
    Vi = np.linalg.inv(V)
    A = X.T @ Vi @ X
    beta = np.linalg.solve(A, X.T @ Vi @ y)
    r = y - X @ beta
    crit = np.linalg.slogdet(V)[1] + r @ Vi @ r + (n - 3) * LOG2PI + np.linalg.slogdet(A)[1]
    np.testing.assert_allclose(f.deviance, crit, rtol=1e-10)
    np.testing.assert_allclose(f.beta, beta, rtol=1e-9)
    np.testing.assert_allclose(f.vcov, np.linalg.inv(A), rtol=1e-7, atol=1e-12)
    # the 3-level fit is better than the 2-level one by more than its extra parameter
    f2 = fit_lmm(y, X, Z, g, satterthwaite=False)
    assert f.deviance < f2.deviance - 2


@pytest.mark.parametrize("outer_slope", [False, True])
def test_cluster_classes_equal_the_cluster_by_cluster_sums(outer_slope):
    """One random intercept per cluster: clusters of equal size (and outer unit) are summed into
    classes. The criterion and its analytic gradient (REML and ML, with and without a random slope
    across the outer units) equal the cluster-by-cluster sums, and the fit's optimum is a zero of the
    gradient by central differences of the criterion."""
    from analysis.lmm import _build_problem

    rng = np.random.default_rng(5)
    m = 300
    sizes = rng.integers(2, 8, size=m)
    g = np.repeat(np.arange(m), sizes)
    n = len(g)
    study = rng.integers(0, 6, size=m)[g]
    x = rng.normal(size=n)
    D = (study[:, None] == np.arange(6)).astype(float)
    X = np.column_stack([D, D * rng.normal(size=n)[:, None], x])
    y = X[:, -1] * (-0.2 + 0.1 * rng.normal(size=6)[study]) + rng.normal(size=m)[g] + rng.normal(size=n)
    Z = np.ones((n, 1))
    prob = _build_problem(y, X, Z, g, (1,), study, x if outer_slope else None)[0]
    assert prob.cls is not None and prob.cls.max() + 1 < m / 4
    for theta in ([0.7, 0.2], [1.5, 0.0], [0.05, 0.9]):
        theta = np.array(theta)
        for reml in (True, False):
            f1, g1 = prob.evaluate(theta, reml, True)
            cls, prob.cls = prob.cls, None
            try:
                f2, g2 = prob.evaluate(theta, reml, True)
            finally:
                prob.cls = cls
            assert f1 == pytest.approx(f2, rel=1e-12)
            np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9)
            h = 1e-6
            num = [(prob.evaluate(theta + h * e, reml) - prob.evaluate(theta - h * e, reml)) / (2 * h)
                   for e in np.eye(2)]
            if theta[1] > 0:
                np.testing.assert_allclose(g1, num, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- helpers and errors


def test_drop_collinear_drops_the_later_term():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 50))
    X = np.column_stack([np.ones(50), a, b, a - b, np.zeros(50)])
    Xk, kept, dropped = drop_collinear(X, ["1", "a", "b", "a-b", "zero"])
    assert kept == ["1", "a", "b"] and dropped == ["a-b", "zero"]
    np.testing.assert_array_equal(Xk, X[:, :3])


def _ok():
    y, X, Z, g = _rs_data(m=10, n_per=4)
    return y, X, Z, g


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda y, X, Z, g: (y[:-1], X, Z, g, {}), "same number of rows"),
        (lambda y, X, Z, g: (np.where(np.arange(len(y)) == 3, np.nan, y), X, Z, g, {}), "missing or infinite"),
        (lambda y, X, Z, g: (y, np.column_stack([X, X[:, 1]]), Z, g, {}), "rank deficient"),
        (lambda y, X, Z, g: (y[[0, 5, 10]], X[[0, 5, 10]], Z[[0, 5, 10]], g[[0, 5, 10]], {}),
         "Not enough observations"),
        (lambda y, X, Z, g: (y, X, Z, g, {"blocks": (1,)}), "blocks"),
        (lambda y, X, Z, g: (y, X, Z, g, {"outer": np.arange(len(y)) % 3}), "nested"),
        (lambda y, X, Z, g: (y, X[:, 0], Z, g, {}), "two-dimensional"),
    ],
    ids=["length", "nan", "collinear", "too-few-rows", "blocks", "not-nested", "1d-X"],
)
def test_clear_errors_on_bad_input(mutate, match):
    y, X, Z, g, kw = mutate(*_ok())
    with pytest.raises(ValueError, match=match):
        fit_lmm(y, X, Z, g, **kw)


def test_boundary_lrt_mixture_and_errors():
    """½χ²₀ + ½χ²₁ for one variance: p = ½·P(χ²₁ > LR); ½χ²₁ + ½χ²₂ for a slope with its covariance; the
    naive χ² p is larger; fits with different criteria or rows are refused."""
    from analysis.lmm import boundary_lrt

    y, X, Z, g = _rs_data(seed=3)
    full = fit_lmm(y, X, Z, g, satterthwaite=False)
    red = fit_lmm(y, X, Z[:, :1], g, satterthwaite=False)
    out = boundary_lrt(red, full, df_full=2)
    lr = red.deviance - full.deviance
    assert out["statistic"] == pytest.approx(lr) and out["df"] == (1, 2)
    assert out["pvalue"] == pytest.approx(0.5 * stats.chi2.sf(lr, 1) + 0.5 * stats.chi2.sf(lr, 2))
    assert out["pvalue"] < out["pvalue_naive"]
    one = boundary_lrt(red, full, df_full=1, df_reduced=0)
    assert one["pvalue"] == pytest.approx(0.5 * stats.chi2.sf(lr, 1))
    same = boundary_lrt(full, full, df_full=1, df_reduced=0)
    assert same["statistic"] == 0 and same["pvalue"] == 0.5
    with pytest.raises(ValueError, match="same criterion"):
        boundary_lrt(red, fit_lmm(y, X, Z, g, reml=False, satterthwaite=False), df_full=2)
    with pytest.raises(ValueError, match="same observations"):
        boundary_lrt(fit_lmm(y[:-8], X[:-8], Z[:-8, :1], g[:-8], satterthwaite=False), full, df_full=2)


def test_variance_component_ses_shrink_with_more_clusters_and_cover_the_truth():
    """Wald SEs of (τ00, τ01, τ11, σ²): roughly ∝ 1/√m, and the true values lie within 3 SE (seeded)."""
    from analysis.lmm import variance_components

    vcs = {}
    for m in (60, 240):
        y, X, Z, g = _rs_data(m=m, seed=11)
        vcs[m] = variance_components(fit_lmm(y, X, Z, g)).set_index("component")
    truth = {"var(z0)": 4.0, "cov(z0, z1)": 0.3, "var(z1)": 0.25, "residual": 1.0}
    assert list(vcs[60].index) == list(truth)
    for c, v in truth.items():
        assert abs(vcs[240].at[c, "estimate"] - v) < 3 * vcs[240].at[c, "se"], c
        assert 1.5 < vcs[60].at[c, "se"] / vcs[240].at[c, "se"] < 2.7, c
    # without the Satterthwaite Hessian there are no SEs (said, not invented)
    y, X, Z, g = _rs_data(m=60, seed=11)
    assert variance_components(fit_lmm(y, X, Z, g, satterthwaite=False))["se"].isna().all()
