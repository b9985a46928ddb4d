"""The result of :func:`analysis.lmm.fit_lmm` and inference on it: Satterthwaite df, variance-component
standard errors (delta method) and the boundary likelihood-ratio test (formulas: :mod:`analysis.lmm`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from analysis.lmm_optim import _hessian, _jacobian

__all__ = ["LMMFit", "boundary_lrt", "variance_components"]


# ----------------------------------------------------------------------------
# results


@dataclass(frozen=True, eq=False)
class LMMFit:
    """A fitted linear mixed model (see the module docstring for formulas).

    ``psi`` is the covariance matrix of the cluster-level random effects
    (σ² ΛΛ', in the outcome's units) with rows/columns ``re_names``;
    ``outer_var`` the third-level (therapist) intercept variance or ``None``.
    ``deviance`` is −2 × the maximised (REML or ML) log-likelihood.
    ``df`` are Satterthwaite degrees of freedom (NaN when not computed) and
    ``pvalue`` the two-sided t test with them (z test when ``df`` is NaN).
    """

    method: str
    coef_names: tuple
    beta: np.ndarray
    vcov: np.ndarray
    se: np.ndarray
    df: np.ndarray
    tvalue: np.ndarray
    pvalue: np.ndarray
    re_names: tuple
    psi: np.ndarray
    sigma2: float
    outer_var: float | None
    theta: np.ndarray
    deviance: float
    loglik: float
    aic: float
    bic: float
    n_params: int
    n_obs: int
    n_groups: int
    n_outer: int | None
    converged: bool
    singular: bool
    messages: tuple = ()
    ranef: np.ndarray | None = field(default=None, repr=False)
    group_labels: np.ndarray | None = field(default=None, repr=False)
    vcov_varpar: np.ndarray | None = field(default=None, repr=False)
    theta_index: tuple | None = field(default=None, repr=False)

    def fixed_frame(self) -> pd.DataFrame:
        """Fixed effects: term, estimate, se, df, t, pvalue."""
        return pd.DataFrame(
            {
                "term": list(self.coef_names),
                "estimate": self.beta,
                "se": self.se,
                "df": self.df,
                "t": self.tvalue,
                "pvalue": self.pvalue,
            }
        )

    def to_frame(self) -> pd.DataFrame:
        return self.fixed_frame()



def _satterthwaite(prob, theta, sigma, vcov, reml, messages):
    """Satterthwaite df for each coefficient (lmerTest's method)."""
    varpar = np.append(theta, sigma)
    H = _hessian(lambda vp: prob.criterion_varpar(vp, reml), varpar, d=0.1, r=4)
    H = (H + H.T) / 2
    w, V = np.linalg.eigh(H)
    tol = 1e-8
    if np.any(w < -tol):
        messages.append(
            "Satterthwaite: the Hessian of the variance parameters has a negative eigenvalue "
            "(the model may not have converged)."
        )
    elif np.any(np.abs(w) <= tol):
        messages.append("Satterthwaite: the Hessian of the variance parameters is singular.")
    pos = w > tol
    Hinv = (V[:, pos] / w[pos]) @ V[:, pos].T
    Avp = 2.0 * Hinv
    J = _jacobian(lambda vp: prob.covbeta(vp), varpar)  # (p, p, k)
    p = vcov.shape[0]
    dfs = np.empty(p)
    for i in range(p):
        g = J[i, i, :]
        denom = g @ Avp @ g
        dfs[i] = 2.0 * vcov[i, i] ** 2 / denom if denom > 0 else np.nan
    return dfs, Avp


# ----------------------------------------------------------------------------
# inference on the variance components


def _varcomp_values(fit: LMMFit, varpar) -> np.ndarray:
    """(ψ lower triangle column-major, σ², therapist variance) as a function of (θ, σ)."""
    rows, cols = fit.theta_index
    q = len(fit.re_names)
    theta, sigma = np.asarray(varpar[:-1], float), float(varpar[-1])
    L = np.zeros((q, q))
    L[list(rows), list(cols)] = theta[: len(rows)]
    psi = sigma**2 * (L @ L.T)
    ci, ri = np.tril_indices(q)[1], np.tril_indices(q)[0]
    order = np.lexsort((ri, ci))
    vals = list(psi[ri[order], ci[order]]) + [sigma**2]
    if fit.outer_var is not None:
        vals.append(sigma**2 * theta[-1] ** 2)
    return np.array(vals)


def variance_components(fit: LMMFit) -> pd.DataFrame:
    """Variance components with asymptotic (Wald) standard errors.

    Rows: every entry of the lower triangle of ψ = Cov(b_j) (``var(<name>)``
    on the diagonal, ``cov(<a>, <b>)`` below it, column by column), the
    residual variance σ² and, with a third level, the therapist variance.
    ``se`` comes from the delta method: with ``Cov(θ, σ) = 2·H⁻¹`` (H the
    Hessian of the unprofiled −2 log-likelihood at the optimum, lmerTest's
    ``vcov_varpar``) and ``J = ∂(ψ, σ², σ²θ_T²)/∂(θ, σ)``, ``Var = J Cov J'``.
    This equals the inverse observed information in the variance
    parametrisation (SPSS's "Std. Error" of the covariance parameters) when the
    optimum is interior. ``z`` = estimate / se with its two-sided normal p
    (Wald's test, as SPSS prints it; for a variance at or near zero it is not
    valid — use :func:`boundary_lrt`). SEs need ``satterthwaite=True`` at
    fitting (the Hessian is computed there); otherwise they are NaN.
    """
    if fit.theta_index is None:
        raise ValueError("This fit does not record its θ layout; refit with analysis.lmm.fit_lmm.")
    q = len(fit.re_names)
    ri, ci = np.tril_indices(q)
    order = np.lexsort((ri, ci))
    names = []
    for r, c in zip(ri[order], ci[order]):
        names.append(f"var({fit.re_names[r]})" if r == c else f"cov({fit.re_names[c]}, {fit.re_names[r]})")
    names.append("residual")
    if fit.outer_var is not None:
        names.append("var(therapist)")
    varpar = np.append(fit.theta, np.sqrt(fit.sigma2))
    est = _varcomp_values(fit, varpar)
    se = np.full(len(est), np.nan)
    if fit.vcov_varpar is not None:
        J = _jacobian(lambda vp: _varcomp_values(fit, vp), varpar)
        V = J @ fit.vcov_varpar @ J.T
        se = np.sqrt(np.clip(np.diag(V), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = est / se
    return pd.DataFrame({"component": names, "estimate": est, "se": se, "z": z,
                         "pvalue": 2 * stats.norm.sf(np.abs(z))})


def boundary_lrt(reduced: LMMFit, full: LMMFit, df_full: int, df_reduced: int | None = None) -> dict:
    """Likelihood-ratio test of variance components at the boundary (mixture of χ²).

    ``LR = deviance(reduced) − deviance(full)`` (both REML with the same fixed
    effects, or both ML). Under H0 a variance on its boundary makes LR a 50:50
    mixture of χ²(``df_reduced``) and χ²(``df_full``) (Self & Liang 1987; Stram
    & Lee 1994): ``p = ½·P(χ²_df_reduced > LR) + ½·P(χ²_df_full > LR)``,
    with χ²₀ a point mass at 0 (so p = ½ at LR = 0; LR below 1e-6 counts as 0).
    ``df_reduced`` defaults to ``df_full − 1``.
    E.g. a therapist intercept: χ²₀/χ²₁; a random slope with its covariance
    added to a random intercept: χ²₁/χ²₂. Also returns the naive χ²(df_full) p.
    """
    if reduced.method != full.method:
        raise ValueError("Both fits must use the same criterion (both REML or both ML).")
    if reduced.n_obs != full.n_obs:
        raise ValueError("Both fits must use the same observations.")
    d0 = df_full - 1 if df_reduced is None else int(df_reduced)
    lr = float(reduced.deviance - full.deviance)
    lr = 0.0 if lr < 1e-6 else lr  # below the criteria's numerical accuracy

    def sf(df):
        return 0.0 if df == 0 else float(stats.chi2.sf(lr, df))

    return {"statistic": lr, "df": (d0, int(df_full)), "pvalue": 0.5 * sf(d0) + 0.5 * sf(df_full),
            "pvalue_naive": sf(df_full), "method": full.method}
