"""Empirical Bayes moderation of per-patient residual variances (METHODS §9).

The hierarchical model of limma's moderated t (Smyth, 2004): patient i's residual variance
estimate s_i² on d_i degrees of freedom is, given the patient's true σ_i², σ_i²·χ²_{d_i}/d_i,
and the σ_i² themselves follow a scaled inverse χ² distribution, 1/σ_i² ~ χ²_{d0}/(d0·s0²).
Then s_i² ~ s0²·F(d_i, d0), the posterior mean of 1/σ_i² is 1/s̃_i² with

    s̃_i² = (d0·s0² + d_i·s_i²) / (d0 + d_i),

and a residual e with variance σ_i²·c that is independent of s_i² gives
e / (s̃_i·√c) ~ t(d0 + d_i) exactly. (d0, s0²) are estimated by the method of moments on
log s_i² (`fit_f_dist`); d0 = ∞ (every patient has the same SD, s̃ = s0) when the spread of the
log variances is no larger than sampling error alone gives.

Smyth, G. K. (2004). Linear models and empirical Bayes methods for assessing differential
expression in microarray experiments. *Statistical Applications in Genetics and Molecular
Biology, 3*(1), Article 3.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["fit_f_dist", "squeeze_var", "trigamma_inverse"]


def trigamma_inverse(x) -> np.ndarray:
    """y with ψ'(y) = x (x > 0), by Newton's method on 1/ψ' (Smyth, 2004, Appendix)."""
    x = np.asarray(x, float)
    y = 0.5 + 1.0 / np.where(x > 0, x, np.nan)
    big, small = x > 1e7, x < 1e-6
    for _ in range(50):
        tri = special.polygamma(1, y)
        dif = tri * (1.0 - tri / x) / special.polygamma(2, y)
        y = y + dif
        if np.all(~np.isfinite(y) | (np.abs(dif / y) < 1e-8)):
            break
    y = np.where(big, 1.0 / np.sqrt(np.where(big, x, 1.0)), y)
    return np.where(small, 1.0 / np.where(small, x, 1.0), y)


def fit_f_dist(s2: np.ndarray, df: np.ndarray):
    """Prior (d0, s0²) of the variances ``s2`` (rows = independent sets, columns = patients).

    Method of moments on e_i = log s_i² − ψ(d_i/2) + log(d_i/2): mean(e) = log s0² − ψ(d0/2) +
    log(d0/2) and var(e) − mean(ψ'(d_i/2)) = ψ'(d0/2). Entries with s_i² ≤ 0, d_i ≤ 0 or NaN
    are left out (a patient whose ratings never vary says nothing about the spread). Returns
    arrays (d0, s0²) of one value per row; d0 = inf when the excess spread is ≤ 0, NaN when a
    row has fewer than 3 usable patients.
    """
    s2 = np.atleast_2d(np.asarray(s2, float))
    df = np.broadcast_to(np.asarray(df, float), s2.shape)
    ok = np.isfinite(s2) & (s2 > 0) & np.isfinite(df) & (df > 0)
    m = ok.sum(axis=1)
    with np.errstate(all="ignore"):
        e = np.where(ok, np.log(np.where(ok, s2, 1.0)) - special.digamma(df / 2) + np.log(df / 2), 0.0)
        emean = e.sum(axis=1) / m
        evar = (np.where(ok, (e - emean[:, None]) ** 2, 0.0).sum(axis=1) / (m - 1)
                - np.where(ok, special.polygamma(1, np.where(ok, df, 1.0) / 2), 0.0).sum(axis=1) / m)
        d0 = np.where(evar > 0, 2.0 * trigamma_inverse(np.where(evar > 0, evar, 1.0)), np.inf)
        s02 = np.where(np.isfinite(d0), np.exp(emean + special.digamma(d0 / 2) - np.log(d0 / 2)),
                       np.exp(emean))
    bad = m < 3
    return np.where(bad, np.nan, d0), np.where(bad, np.nan, s02)


def squeeze_var(s2, df, d0, s02) -> np.ndarray:
    """Posterior variance s̃² = (d0·s0² + d·s²)/(d0 + d); s0² where d0 = ∞ (arrays broadcast)."""
    s2, df, d0, s02 = (np.asarray(a, float) for a in (s2, df, d0, s02))
    with np.errstate(all="ignore"):
        out = (d0 * s02 + df * np.where(np.isfinite(s2), s2, 0.0)) / (d0 + df)
        return np.where(np.isinf(d0), s02 + 0.0 * np.where(np.isfinite(s2), s2, 0.0), out)
