"""Mixed-effects meta-regression (METHODS §6), as metafor's rma.uni with moderators."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from .. import formatting as fmt
from ._base import (
    _DEFAULT_CONTROL,
    _EPS,
    _NAN,
    _T_TESTS,
    _check_effects,
    _check_method_test,
    _make_control,
    _p_matrix,
    _readonly,
    _s2w,
    _wls_rss,
    _xwx_inv,
)
from .pooling import _study_messages
from .results import Heterogeneity
from .tau2 import _qprofile, _tau2_general, _tau2_intercept

# --------------------------------------------------------------------------- regression


def _design(moderators: Any, k: int) -> tuple[np.ndarray, list[str], list[str]]:
    """Model matrix [1, moderators] from a DataFrame; text/categorical columns
    are dummy-coded (first level = reference; sorted levels unless the column
    is a pandas Categorical). Linearly dependent columns are dropped (as R's
    lm does, in column order) and named in the returned list."""
    if isinstance(moderators, pd.Series):
        mods = moderators.to_frame()
    elif isinstance(moderators, pd.DataFrame):
        mods = moderators
    elif isinstance(moderators, dict):
        mods = pd.DataFrame(moderators)
    else:
        arr = np.asarray(moderators)
        if arr.ndim == 1:
            arr = arr[:, None]
        mods = pd.DataFrame(arr, columns=[f"x{j + 1}" for j in range(arr.shape[1])])
    if len(mods) != k:
        raise ValueError(f"moderators has {len(mods)} rows but there are {k} studies.")
    if mods.shape[1] == 0:
        raise ValueError("No moderator columns given.")
    cols: list[np.ndarray] = [np.ones(k)]
    names: list[str] = ["intercept"]
    for name in mods.columns:
        s = mods[name]
        if s.isna().any():
            rows = np.flatnonzero(s.isna().to_numpy())[:5].tolist()
            raise ValueError(
                f"Moderator {name!r} is missing for study row(s) {rows}; remove those "
                "studies or fill in the values."
            )
        if pd.api.types.is_bool_dtype(s):
            cols.append(s.to_numpy(dtype=float))
            names.append(str(name))
        elif pd.api.types.is_numeric_dtype(s) and not isinstance(s.dtype, pd.CategoricalDtype):
            x = s.to_numpy(dtype=float)
            if not np.all(np.isfinite(x)):
                raise ValueError(f"Moderator {name!r} has infinite values.")
            cols.append(x)
            names.append(str(name))
        else:
            if isinstance(s.dtype, pd.CategoricalDtype):
                levels = [lv for lv in s.cat.categories if (s == lv).any()]
                values = s.astype(object).to_numpy()
            else:
                values = s.astype(str).to_numpy()
                levels = sorted(set(values.tolist()))
            for lv in levels[1:]:
                cols.append((values == lv).astype(float))
                names.append(f"{name}[{lv}]")
    X = np.column_stack(cols)
    keep: list[int] = []
    dropped: list[str] = []
    for j in range(X.shape[1]):
        xj = X[:, j]
        if keep:
            B = X[:, keep]
            coef, *_ = np.linalg.lstsq(B, xj, rcond=None)
            resid = xj - B @ coef
        else:
            resid = xj
        if np.linalg.norm(resid) <= 1e-7 * max(np.linalg.norm(xj), 1e-300):
            dropped.append(names[j])
        else:
            keep.append(j)
    return X[:, keep], [names[j] for j in keep], dropped


@dataclass(frozen=True, eq=False)
class MetaRegressionResult(Heterogeneity):
    """Mixed-effects meta-regression (metafor ``rma.uni`` with ``mods``).

    ``qm`` is the omnibus Wald test of all moderators (chi-square on ``qm_df[0]``
    df for z; F on ``qm_df`` = (m, k - p) for Knapp-Hartung); ``qe`` the test
    of residual heterogeneity on k - p df; ``r2`` metafor's pseudo R^2 in
    percent, ``max(0, 100 (tau2_0 - tau2) / tau2_0)`` with tau2_0 from the
    model without moderators (same estimator; 0 if tau2_0 = 0).
    """

    terms: tuple[str, ...]
    estimate: np.ndarray
    se: np.ndarray
    statistic: np.ndarray
    pvalue: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    vcov: np.ndarray
    qm: float
    qm_df: tuple[float, float]
    qm_pvalue: float
    qe: float
    qe_df: int
    qe_pvalue: float
    r2: float
    k: int
    p: int
    method: str
    test: str
    level: float
    converged: bool
    messages: tuple[str, ...]
    dropped: tuple[str, ...] = ()

    @property
    def coefficients(self) -> pd.DataFrame:
        stat = "z" if self.test == "z" else "t"
        return pd.DataFrame({
            "term": list(self.terms), "estimate": self.estimate, "se": self.se,
            stat: self.statistic, "pvalue": self.pvalue, "ci_low": self.ci_low,
            "ci_high": self.ci_high,
        })

    def to_frame(self) -> pd.DataFrame:
        """The coefficient table (one row per term)."""
        return self.coefficients

    def display_frame(self) -> pd.DataFrame:
        """The coefficient table for readers: readable headers, numbers by
        :mod:`analysis.formatting` (APA p values, true minus)."""
        pct = f"{100 * self.level:g}%"
        stat = "z" if self.test == "z" else "t"
        return pd.DataFrame({
            "Term": list(self.terms),
            "Estimate": [fmt.fixed(x, fmt.decimals_for((x, a, b)))
                         for x, a, b in zip(self.estimate, self.ci_low, self.ci_high)],
            f"{pct} CI": [fmt.interval(a, b, decimals=fmt.decimals_for((x, a, b)))
                          for x, a, b in zip(self.estimate, self.ci_low, self.ci_high)],
            "SE": [fmt.num(x, 3) for x in self.se],
            stat: [fmt.num(x) for x in self.statistic],
            "p": [fmt.pvalue(x) for x in self.pvalue],
        })

    def summary(self) -> str:
        """One plain-language sentence on the moderators and residual heterogeneity."""
        if self.test == "z":
            qm = fmt.stat("\u03c7\u00b2", self.qm, self.qm_df[0])
        else:
            qm = fmt.stat("F", self.qm, self.qm_df)
        r2 = (f", explaining about {fmt.num(self.r2, 0)}% of the between-study variance"
              if self.r2 is not None and math.isfinite(self.r2) else "")
        terms = ", ".join(self.terms[1:])
        return (
            f"Together, the moderators ({terms}) "
            f"{'were' if self.qm_pvalue < 1 - self.level else 'were not'} significantly "
            f"related to the effects across {self.k} studies ({qm}, {fmt.p_text(self.qm_pvalue)})"
            f"{r2}; residual heterogeneity: \u03c4\u00b2 = {fmt.tau2(self.tau2)}, "
            f"{fmt.stat('QE', self.qe, self.qe_df)}, {fmt.p_text(self.qe_pvalue)}."
        )


def _fit_general(y, v, X, method, test, level, ci_tau2=True, ctl=_DEFAULT_CONTROL):
    """Fit with model matrix X; returns a dict of everything rma.uni reports."""
    k, p = X.shape
    fit = _tau2_general(y, v, X, method, ctl)
    tau2 = fit.tau2
    alpha = 1.0 - level
    w = 1.0 / (v + tau2)
    C = _xwx_inv(X, w)
    beta = C @ (X.T @ (w * y))
    vb = C
    df = _NAN
    if test in _T_TESTS:
        r = y - X @ beta
        rss = float(w @ (r * r))
        s2w = _s2w(0.0 if rss <= _EPS else rss / (k - p), test)
        vb = s2w * vb
        df = float(k - p)
    se = np.sqrt(np.diag(vb))
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = beta / se
    btt = np.arange(1, p)
    m = btt.size
    if m:
        b = beta[btt]
        try:
            qm = float(b @ np.linalg.solve(vb[np.ix_(btt, btt)], b))
        except np.linalg.LinAlgError:
            qm = _NAN
    else:
        qm = _NAN
    if test in _T_TESTS:
        qm = qm / m if m else _NAN
        qm_df = (float(m), float(k - p))
        qmp = float(special.fdtrc(m, k - p, qm)) if m else _NAN
        pval = 2.0 * special.stdtr(df, -np.abs(stat))
        crit = float(special.stdtrit(df, 1.0 - alpha / 2.0))
    else:
        qm_df = (float(m), _NAN)
        qmp = float(special.chdtrc(m, qm)) if m else _NAN
        pval = 2.0 * special.ndtr(-np.abs(stat))
        crit = float(special.ndtri(1.0 - alpha / 2.0))
    w0 = 1.0 / v
    P0 = _p_matrix(X, w0)
    ymc = y - y.mean()
    qe = max(0.0, float(ymc @ P0 @ ymc))
    qep = float(special.chdtrc(k - p, qe))
    vt = (k - p) / float(np.trace(P0))
    if method == "FE":
        i2 = max(0.0, 100.0 * (qe - (k - p)) / qe) if qe > 0 else _NAN
        h2 = qe / (k - p)
    else:
        i2 = 100.0 * tau2 / (vt + tau2)
        h2 = tau2 / vt + 1.0
    msgs = list(fit.messages)
    lo = hi = _NAN
    if ci_tau2 and method != "FE" and math.isfinite(tau2):
        lo, hi, ci_msgs = _qprofile(lambda t: _wls_rss(y, X, 1.0 / (v + t)), k - p, tau2, level)
        msgs.extend(ci_msgs)
    return {
        "beta": beta, "se": se, "stat": stat, "pval": np.asarray(pval, float),
        "ci_low": beta - crit * se, "ci_high": beta + crit * se, "vb": vb, "qm": qm,
        "qm_df": qm_df, "qmp": qmp, "qe": qe, "qe_df": k - p, "qep": qep, "tau2": tau2,
        "tau2_se": fit.se, "tau2_ci_low": lo, "tau2_ci_high": hi, "i2": i2, "h2": h2,
        "df": df, "converged": fit.converged, "messages": msgs, "w": w,
    }


def _pseudo_r2(y, v, X, method, test, tau2, w, ctl=_DEFAULT_CONTROL) -> float:
    """metafor's R^2 for meta-regression (percent)."""
    k, p = X.shape
    if method == "FE":
        if float(np.var(y)) == 0.0:
            return 0.0
        # adjusted R^2 of the weighted least-squares fit (lm(yi ~ X, weights = w))
        beta = _xwx_inv(X, w) @ (X.T @ (w * y))
        fitted = X @ beta
        rss = float(w @ (y - fitted) ** 2)
        fbar = float(w @ fitted) / float(w.sum())
        mss = float(w @ (fitted - fbar) ** 2)
        r2 = mss / (mss + rss)
        adj = 1.0 - (1.0 - r2) * ((k - 1) / (k - p))
        return max(0.0, 100.0 * adj)
    try:
        tau2_re = _tau2_intercept(y, v, method, ctl).tau2
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return _NAN
    if not math.isfinite(tau2_re):
        return _NAN
    if tau2_re == 0.0:
        return 0.0
    return max(0.0, 100.0 * (tau2_re - tau2) / tau2_re)


def meta_regression(
    yi: Any, vi: Any, moderators: Any, method: str = "REML", test: str = "z", level: float = 0.95,
    labels: Sequence[str] | None = None, ci_tau2: bool = True, control: dict | None = None,
) -> MetaRegressionResult:
    """Mixed-effects meta-regression ``y = X beta + u + e`` (METHODS §6;
    metafor ``rma.uni(yi, vi, mods = ...)``).

    ``moderators`` is a DataFrame (or dict / array) of study-level columns;
    numeric columns enter as they are, text or categorical columns are
    dummy-coded with the first level as reference (names like
    ``alloc[random]``); an intercept is always included. No formula strings are
    used. ``beta = (X'WX)^-1 X'W y`` with ``w = 1/(v + tau2)``; tau2 by
    ``method`` (module docstring); ``QM = b' Var(b)^-1 b`` over the moderator
    coefficients (chi-square on m df, or ``QM / m`` ~ F(m, k - p) with
    Knapp-Hartung); ``QE = Y'PY`` at ``w = 1/v`` on k - p df; I2/H2 as
    residual heterogeneity with ``vt = (k - p)/tr(P)``; pseudo R^2 as
    :class:`MetaRegressionResult` says. ``control`` as in :func:`random_effects`.

    >>> res = meta_regression([0.1, 0.3, 0.2, 0.5], [0.01, 0.02, 0.015, 0.02], {"year": [2001, 2005, 2003, 2010]},
    ...                       method="DL")
    >>> res.to_frame()["term"].tolist()
    ['intercept', 'year']
    """
    method, test, level = _check_method_test(method, test, level)
    ctl = _make_control(control)
    y, v, _lab = _check_effects(yi, vi, labels)
    k = y.size
    X, names, dropped = _design(moderators, k)
    p = X.shape[1]
    msgs: list[str] = []
    if dropped:
        msgs.append(
            "Redundant moderator column(s) dropped because they are constant or a linear "
            f"combination of others: {', '.join(dropped)}."
        )
    if p == 1:
        raise ValueError("No usable moderator remains (all were constant or redundant).")
    if k < p + 1:
        raise ValueError(
            f"Meta-regression with {p} coefficients needs more studies: k = {k}, at least "
            f"{p + 1} are required."
        )
    msgs.extend(_study_messages(k, v, method, test))
    res = _fit_general(y, v, X, method, test, level, ci_tau2=ci_tau2, ctl=ctl)
    msgs.extend(res["messages"])
    r2 = _pseudo_r2(y, v, X, method, test, res["tau2"], res["w"], ctl)

    def ro(a):
        return _readonly(np.asarray(a, float))

    return MetaRegressionResult(
        terms=tuple(names), estimate=ro(res["beta"]), se=ro(res["se"]),
        statistic=ro(res["stat"]), pvalue=ro(res["pval"]), ci_low=ro(res["ci_low"]),
        ci_high=ro(res["ci_high"]), vcov=ro(res["vb"]), qm=res["qm"], qm_df=res["qm_df"],
        qm_pvalue=res["qmp"], qe=res["qe"], qe_df=res["qe_df"], qe_pvalue=res["qep"],
        tau2=res["tau2"], tau2_se=res["tau2_se"], tau2_ci_low=res["tau2_ci_low"],
        tau2_ci_high=res["tau2_ci_high"], i2=res["i2"], h2=res["h2"], r2=r2, k=k, p=p,
        method=method, test=test, level=level, converged=res["converged"],
        messages=tuple(msgs), dropped=tuple(dropped),
    )


