"""The random-effects pooled estimate: one fit (random_effects), many at once (random_effects_many) and
leave-one-out (METHODS §6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from ._base import (
    _DEFAULT_CONTROL,
    _EPS,
    _NAN,
    _T_TESTS,
    _check_counts,
    _check_effects,
    _check_method_test,
    _make_control,
    _readonly,
    _s2w,
)
from .results import MetaResult
from .tau2 import _q_intercept, _qprofile, _tau2_intercept, _tau2_many


def _final_sums(yl: list[float], vl: list[float], tau2: float):
    """Pooled quantities for one intercept on Python floats: ``sum(w)``,
    ``mu = sum(w y)/sum(w)``, ``sum(w (y - mu)^2)`` at ``w = 1/(v + tau2)``;
    ``Q`` and ``tr(P)`` at ``w = 1/v`` (Q on mean-centred y, as metafor);
    weights in percent."""
    k = len(yl)
    ws = [1.0 / (vv + tau2) for vv in vl]
    sw = sy = 0.0
    for w, yy in zip(ws, yl):
        sw += w
        sy += w * yy
    est = sy / sw
    rss = 0.0
    for w, yy in zip(ws, yl):
        d = yy - est
        rss += w * d * d
    ybar = sum(yl) / k
    s0 = s02 = sy0 = 0.0
    w0s = [1.0 / vv for vv in vl]
    for w, yy in zip(w0s, yl):
        s0 += w
        s02 += w * w
        sy0 += w * (yy - ybar)
    mu0 = sy0 / s0
    q = 0.0
    for w, yy in zip(w0s, yl):
        d = (yy - ybar) - mu0
        q += w * d * d
    wts = np.array(ws) * (100.0 / sw)
    wts.flags.writeable = False
    return sw, est, rss, max(0.0, q), s0 - s02 / s0, wts


def _study_messages(k: int, v: np.ndarray, method: str, test: str) -> list[str]:
    msgs: list[str] = []
    if k == 2:
        msgs.append(
            "Only two studies (k = 2): they were pooled, but the between-study variance "
            "tau2 (and so the CI, the prediction interval and I\u00b2) is very imprecise."
        )
    if method == "FE" and test in _T_TESTS and k > 1:
        msgs.append(
            "The Knapp-Hartung adjustment is not meant for a common-effect (FE) model "
            "(metafor warns about this too)."
        )
    ratio = float(v.max()) / float(v.min())
    if ratio >= 1e7:
        msgs.append(
            "The largest sampling variance is over 10^7 times the smallest; results may "
            "be numerically unstable."
        )
    return msgs


def _heterogeneity(q: float, k: int, tr_p0: float, tau2: float, method: str) -> tuple[float, float, float]:
    """Q's p-value and I², H² (metafor): at w = 1/v with the typical variance ``vt = (k − 1)/tr(P₀)``;
    for FE from Q alone."""
    qp = float(special.chdtrc(k - 1, q))
    if method == "FE":
        return qp, (max(0.0, 100.0 * (q - (k - 1)) / q) if q > 0 else _NAN), q / (k - 1)
    vt = (k - 1) / tr_p0
    return qp, 100.0 * tau2 / (vt + tau2), tau2 / vt + 1.0


def random_effects(
    yi: Any, vi: Any, method: str = "REML", test: str = "z", level: float = 0.95,
    labels: Sequence[str] | None = None, n_patients: Any = None, n_pairs: Any = None, ci_tau2: bool = True,
    control: dict | None = None,
) -> MetaResult:
    """Random-effects meta-analysis of ``yi`` with sampling variances ``vi``
    (METHODS §6; metafor ``rma.uni`` with ``predict``, ``confint`` and ``weights``).

    ``mu_hat = sum(w y) / sum(w)`` with ``w = 1/(v + tau2_hat)``;
    ``SE = sqrt(s2 / sum(w))`` with ``s2 = 1`` (z) or, for Knapp-Hartung,
    ``s2 = sum(w (y - mu_hat)^2) / (k - 1)`` and t on k - 1 df;
    CI ``mu_hat +/- crit SE``; PI ``mu_hat +/- crit sqrt(SE^2 + tau2_hat)``
    (NaN for ``method="FE"``, which has no PI in metafor). tau2 estimators,
    Q, I2, H2 and the Q-profile CI are defined in the module docstring.

    ``ci_tau2=False`` skips the Q-profile CI (two root searches) for speed.
    ``control`` takes metafor's settings ``threshold`` (1e-5), ``maxiter``
    (100), ``stepadj`` (1), ``tau2_init`` (HE; SJ: the variance of y) and
    ``tau2_max`` (100; PM search interval), e.g. ``{"stepadj": 0.5}`` when
    Fisher scoring does not converge.
    k = 1 returns the study's own estimate and normal CI, tau2 = 0, NaN
    heterogeneity and a message; k = 2 pools with a warning in ``messages``.

    >>> res = random_effects([0.1, 0.3, 0.2], [0.01, 0.02, 0.015], method="DL", labels=["A", "B", "C"])
    >>> round(res.estimate, 4), round(res.tau2, 4), res.k
    (0.1769, 0.0, 3)
    """
    method, test, level = _check_method_test(method, test, level)
    ctl = _make_control(control)
    y, v, lab = _check_effects(yi, vi, labels)
    k = y.size
    npat = _check_counts(n_patients, "n_patients", k)
    npairs = _check_counts(n_pairs, "n_pairs", k)
    alpha = 1.0 - level

    if k == 1:
        msgs = [("Only one study (k = 1): no pooling was done; the result is that study's "
                "own estimate and confidence interval.")]
        if test in _T_TESTS:
            msgs.append("The Knapp-Hartung test needs at least two studies; a z-test was used.")
        est = float(y[0])
        se = math.sqrt(float(v[0]))
        z = est / se
        crit = float(special.ndtri(1.0 - alpha / 2.0))
        return MetaResult(
            estimate=est, se=se, statistic=z, pvalue=float(2.0 * special.ndtr(-abs(z))),
            ci_low=est - crit * se, ci_high=est + crit * se,
            pi_low=est - crit * se if method != "FE" else _NAN,
            pi_high=est + crit * se if method != "FE" else _NAN,
            tau2=0.0, tau2_se=_NAN, tau2_ci_low=_NAN, tau2_ci_high=_NAN,
            i2=_NAN, h2=_NAN, q=_NAN, q_df=0, q_pvalue=_NAN, k=1,
            weights=_readonly(np.array([100.0])), method=method, test="z", level=level,
            labels=tuple(lab), converged=True, messages=tuple(msgs),
            yi=y, vi=v, df=_NAN, iterations=0,
            n_patients=npat, n_pairs=npairs,
        )

    fit = _tau2_intercept(y, v, method, ctl)
    tau2 = fit.tau2
    msgs = _study_messages(k, v, method, test)
    msgs.extend(fit.messages)

    sw, est, rss, q, tr_p0, wts = _final_sums(y.tolist(), v.tolist(), tau2)
    vb = 1.0 / sw
    if test in _T_TESTS:
        s2w = _s2w(0.0 if rss <= _EPS else rss / (k - 1), test)
        vb *= s2w
        df = float(k - 1)
    else:
        df = _NAN
    se = math.sqrt(vb)
    stat = est / se if se > 0 else _NAN
    if test in _T_TESTS:
        pval = float(2.0 * special.stdtr(df, -abs(stat)))
        crit = float(special.stdtrit(df, 1.0 - alpha / 2.0))
    else:
        pval = float(2.0 * special.ndtr(-abs(stat)))
        crit = float(special.ndtri(1.0 - alpha / 2.0))
    half = crit * math.sqrt(vb + tau2) if method != "FE" else _NAN  # FE: no prediction interval (metafor)
    pi_lo, pi_hi = est - half, est + half

    qp, i2, h2 = _heterogeneity(q, k, tr_p0, tau2, method)

    lo = hi = _NAN
    if ci_tau2 and method != "FE" and math.isfinite(tau2):
        lo, hi, ci_msgs = _qprofile(_q_intercept(y, v), k - 1, tau2, level)
        msgs.extend(ci_msgs)

    return MetaResult(
        estimate=est, se=se, statistic=stat, pvalue=pval,
        ci_low=est - crit * se, ci_high=est + crit * se, pi_low=pi_lo, pi_high=pi_hi,
        tau2=tau2, tau2_se=fit.se, tau2_ci_low=lo, tau2_ci_high=hi,
        i2=i2, h2=h2, q=q, q_df=k - 1, q_pvalue=qp, k=k,
        weights=wts, method=method, test=test, level=level,
        labels=tuple(lab), converged=fit.converged, messages=tuple(msgs),
        yi=y, vi=v, df=df, iterations=fit.iterations,
        n_patients=npat, n_pairs=npairs,
    )


# --------------------------------------------------------------------------- batched


_MANY_METHODS = ("FE", "DL", "REML", "ML", "EB", "HE", "SJ", "HS")


def random_effects_many(
    Y: Any, V: Any, method: str = "REML", test: str = "z", level: float = 0.95, control: dict | None = None,
) -> pd.DataFrame:
    """Fit the same model to many meta-analyses at once (vectorised).

    ``Y`` and ``V`` are (n_problems, k) arrays; row i is one meta-analysis.
    NaN in ``Y`` or ``V`` marks a missing study in that row (rows may have
    different k). Same definitions and iteration rules as
    :func:`random_effects`, applied row-wise (each row's Fisher scoring stops on
    its own criterion), so each row equals ``random_effects(Y[i], V[i], ...)``
    up to rounding. The Q-profile CI is not computed. PM (a root search) and
    rows with a single study fall back to :func:`random_effects`. ``control``
    as in :func:`random_effects`.

    Returns one row per problem: estimate, se, statistic, df, pvalue, ci_low,
    ci_high, pi_low, pi_high, tau2, tau2_se, i2, h2, q, q_df, q_pvalue, k,
    converged, iterations.

    >>> t = random_effects_many([[0.1, 0.3, 0.2], [0.0, 0.1, float("nan")]], [[0.01, 0.02, 0.015], [0.01, 0.01, 0.01]],
    ...                         method="DL")
    >>> t["k"].tolist(), t["estimate"].round(4).tolist()
    ([3, 2], [0.1769, 0.05])
    """
    method, test, level = _check_method_test(method, test, level)
    ctl = _make_control(control)
    Ya = np.asarray(Y, dtype=float)
    Va = np.asarray(V, dtype=float)
    if Ya.ndim == 1:
        Ya = Ya[None, :]
    if Va.ndim == 1:
        Va = Va[None, :]
    if Ya.shape != Va.shape or Ya.ndim != 2:
        raise ValueError(
            f"Y and V must be 2-D arrays of the same shape (got {Ya.shape} and {Va.shape})."
        )
    present = ~(np.isnan(Ya) | np.isnan(Va))
    if np.any(~np.isfinite(Ya[present])) or np.any(~np.isfinite(Va[present])):
        raise ValueError("Y and V must be finite where present (use NaN for a missing study).")
    if np.any(Va[present] <= 0):
        raise ValueError("Sampling variances must be positive.")
    kk = present.sum(axis=1)
    if np.any(kk == 0):
        raise ValueError(
            f"Row(s) {np.flatnonzero(kk == 0)[:5].tolist()} have no studies (k = 0)."
        )
    n = Ya.shape[0]
    cols = ["estimate", "se", "statistic", "df", "pvalue", "ci_low", "ci_high", "pi_low",
            "pi_high", "tau2", "tau2_se", "i2", "h2", "q", "q_df", "q_pvalue", "k",
            "converged", "iterations"]

    if method not in _MANY_METHODS or np.any(kk < 2):
        # scalar fallback for the rows the vectorised code does not cover
        fallback = np.ones(n, bool) if method not in _MANY_METHODS else (kk < 2)
    else:
        fallback = np.zeros(n, bool)

    out = {c: np.full(n, np.nan) for c in cols}
    out["converged"] = np.ones(n, bool)
    out["iterations"] = np.zeros(n, int)
    rows = np.flatnonzero(~fallback)
    if rows.size:
        res = _many_core(Ya[rows], Va[rows], present[rows], method, test, level, ctl)
        for c in cols:
            out[c][rows] = res[c]
    for i in np.flatnonzero(fallback):
        m = present[i]
        r = random_effects(Ya[i, m], Va[i, m], method=method, test=test, level=level,
                           ci_tau2=False, control=ctl)
        for c in cols:
            out[c][i] = getattr(r, c)
    frame = pd.DataFrame(out)
    frame["k"] = frame["k"].astype(int)
    frame["q_df"] = frame["q_df"].astype(int)
    return frame


def _many_core(Y, V, M, method, test, level, ctl=_DEFAULT_CONTROL) -> dict[str, np.ndarray]:
    """Row-wise pooled results for :func:`random_effects_many` (tau2 from :func:`_tau2_many`)."""
    n = Y.shape[0]
    Mf = M.astype(float)
    y = np.where(M, Y, 0.0)
    v = np.where(M, V, 1.0)
    k = Mf.sum(axis=1)
    km1 = k - 1.0
    ymc = (y - (y.sum(axis=1) / k)[:, None]) * Mf
    zeros = np.zeros(n)

    def wts(t):
        return Mf / (v + t[:, None])

    def wresid(w, yy):
        s1 = w.sum(axis=1)
        mu = (w * yy).sum(axis=1) / s1
        r = (yy - mu[:, None]) * Mf
        return s1, mu, r

    fit = _tau2_many(Y, V, M, method, ctl)
    tau2, se_t, conv, iters = fit.tau2, fit.se, fit.converged, fit.iterations
    alpha = 1.0 - level
    w = wts(tau2)
    sw, est, r = wresid(w, y)
    vb = 1.0 / sw
    if test in _T_TESTS:
        rss = (w * r * r).sum(axis=1)
        s2w = _s2w(np.where(rss <= _EPS, 0.0, rss / km1), test)
        vb = vb * s2w
        df = km1
    else:
        df = np.full(n, np.nan)
    se = np.sqrt(vb)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
    if test in _T_TESTS:
        pval = 2.0 * special.stdtr(df, -np.abs(stat))
        crit = special.stdtrit(df, 1.0 - alpha / 2.0)
    else:
        pval = 2.0 * special.ndtr(-np.abs(stat))
        crit = np.full(n, float(special.ndtri(1.0 - alpha / 2.0)))
    if method == "FE":
        pi_lo = pi_hi = np.full(n, np.nan)
    else:
        half = crit * np.sqrt(vb + tau2)
        pi_lo, pi_hi = est - half, est + half
    w0 = wts(zeros)
    s0, _, r0 = wresid(w0, ymc)
    q = np.maximum(0.0, (w0 * r0 * r0).sum(axis=1))
    qp = special.chdtrc(km1, q)
    tr_p0 = s0 - (w0 * w0).sum(axis=1) / s0
    vt = km1 / tr_p0
    if method == "FE":
        with np.errstate(divide="ignore", invalid="ignore"):
            i2 = np.where(q > 0, np.maximum(0.0, 100.0 * (q - km1) / q), np.nan)
        h2 = q / km1
    else:
        i2 = 100.0 * tau2 / (vt + tau2)
        h2 = tau2 / vt + 1.0
    return {
        "estimate": est, "se": se, "statistic": stat, "df": df, "pvalue": pval,
        "ci_low": est - crit * se, "ci_high": est + crit * se, "pi_low": pi_lo,
        "pi_high": pi_hi, "tau2": tau2, "tau2_se": se_t, "i2": i2, "h2": h2, "q": q,
        "q_df": km1, "q_pvalue": qp, "k": k, "converged": conv, "iterations": iters,
    }


# --------------------------------------------------------------------------- leave-one-out


def leave_one_out(
    yi: Any, vi: Any, labels: Sequence[str] | None = None, method: str = "REML", test: str = "z",
    level: float = 0.95, control: dict | None = None,
) -> pd.DataFrame:
    """Leave-one-out analysis (metafor ``leave1out``): the model refitted k
    times, each time without one study.

    Columns: ``study`` (the omitted one), ``estimate``, ``se``, ``zval`` (or
    ``tval`` for Knapp-Hartung), ``pval``, ``ci_lb``, ``ci_ub``, ``Q``, ``Qp``,
    ``tau2``, ``I2``, ``H2``, ``converged``, ``messages``. ``df.attrs`` holds
    the full-data ``estimate``, ``method``, ``test`` and ``level``. Needs k >= 2.
    ``control`` as in :func:`random_effects`.

    >>> t = leave_one_out([0.1, 0.3, 0.2], [0.01, 0.02, 0.015], labels=["A", "B", "C"], method="DL")
    >>> t["study"].tolist(), t["estimate"].round(3).tolist()
    (['A', 'B', 'C'], [0.243, 0.14, 0.175])
    """
    method, test, level = _check_method_test(method, test, level)
    ctl = _make_control(control)
    y, v, lab = _check_effects(yi, vi, labels)
    k = y.size
    if k < 2:
        raise ValueError("Leave-one-out needs at least two studies.")
    statname = "zval" if test == "z" else "tval"
    rows = []
    keep = np.ones(k, bool)
    for i in range(k):
        keep[:] = True
        keep[i] = False
        r = random_effects(y[keep], v[keep], method=method, test=test, level=level,
                           ci_tau2=False, control=ctl)
        q_nan = r.k == 1
        rows.append({
            "study": lab[i], "estimate": r.estimate, "se": r.se, statname: r.statistic,
            "pval": r.pvalue, "ci_lb": r.ci_low, "ci_ub": r.ci_high,
            # metafor reports Q = 0, p = 1, I2 = 0, H2 = 1 when one study remains
            "Q": 0.0 if q_nan else r.q, "Qp": 1.0 if q_nan else r.q_pvalue,
            "tau2": r.tau2, "I2": 0.0 if q_nan else r.i2, "H2": 1.0 if q_nan else r.h2,
            "converged": r.converged, "messages": "; ".join(r.messages),
        })
    df = pd.DataFrame(rows)
    full = random_effects(y, v, method=method, test=test, level=level, ci_tau2=False,
                          control=ctl)
    df.attrs.update({"estimate": full.estimate, "method": method, "test": test,
                     "level": level})
    return df


