"""τ² estimators (FE, DL, REML, ML, PM, EB, HE, SJ, HS) and the Q-profile interval, as metafor's rma.uni and
confint (METHODS §6; formulas in analysis.meta's docstring).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special

from ._base import (
    _CONFINT_MAXITER,
    _DEFAULT_CONTROL,
    _LOG_2PI,
    _NAN,
    _TOL,
    _brent_root,
    _Control,
    _logdet_xwx,
    _mad,
    _p_matrix,
    _p_sums,
    _wls_rss,
    _xwx_inv,
)

# --------------------------------------------------------------------------- tau2


@dataclass
class _Tau2:
    tau2: float
    se: float = _NAN
    converged: bool = True
    iterations: int = 0
    messages: tuple[str, ...] = ()


def _fisher_message(method: str, tau2: float, maxiter: int) -> str:
    return (
        f"The {method} Fisher scoring algorithm did not converge in {maxiter} iterations "
        f"(metafor stops with an error here); tau2 = {tau2:.6g} is the last iterate and "
        "all results that depend on it are unreliable. Remedies (as in metafor): a smaller "
        "step, control={'stepadj': 0.5}, more iterations, or another estimator (e.g. PM)."
    )


def _ll0_message(method: str) -> str:
    return (
        f"{method} Fisher scoring may have stopped at a local maximum: the likelihood is "
        "higher at tau2 = 0, so tau2 was set to 0 (as metafor does)."
    )


def _pm_message(tau2_max: float) -> str:
    return (
        "Paule-Mandel: the generalized Q statistic still exceeds k - p at the end of "
        f"metafor's search interval (tau2 = {tau2_max:.6g}); metafor stops with an error "
        "here. The search was extended to larger values."
    )


def _pm_root(qfun, target: float, tau2_max: float, maxiter: int) -> tuple[float, bool, list[str]]:
    """Paule-Mandel root of Q(tau2) = target as in metafor (uniroot on [0, tau2_max])."""
    msgs: list[str] = []
    f0 = qfun(0.0) - target
    if f0 < 0.0:
        return 0.0, True, msgs
    upper = tau2_max
    fu = qfun(upper) - target
    tries = 0
    while fu > 0.0 and tries < 20:
        if tries == 0:
            msgs.append(_pm_message(tau2_max))
        upper *= 10.0
        fu = qfun(upper) - target
        tries += 1
    if fu > 0.0:
        msgs.append("Paule-Mandel: no root found; tau2 could not be estimated.")
        return _NAN, False, msgs
    root, ok = _brent_root(lambda t: qfun(t) - target, 0.0, upper, f0, fu, _TOL, maxiter)
    if not ok:
        msgs.append("Paule-Mandel: the root search did not converge; tau2 is the last iterate.")
    return root, ok, msgs


def _q_intercept(y: np.ndarray, v: np.ndarray):
    """Generalised Q for one intercept, ``Q(tau2) = sum(w (y - mu_w)^2)`` with
    ``w = 1/(v + tau2)``, as a function of tau2 (metafor's ``.QE.func``), on
    Python floats (for one problem faster than numpy)."""
    pairs = list(zip(v.tolist(), y.tolist()))

    def qfun(t: float) -> float:
        ws = [1.0 / (vv + t) for vv, _ in pairs]
        s1 = sy = 0.0
        for w, (_, yy) in zip(ws, pairs):
            s1 += w
            sy += w * yy
        mu = sy / s1
        out = 0.0
        for w, (_, yy) in zip(ws, pairs):
            d = yy - mu
            out += w * d * d
        return out

    return qfun


def _wsums(pairs: list[tuple[float, float]], tau2: float) -> tuple[float, ...]:
    """For one intercept on Python floats, with ``w = 1/(v + tau2)``:
    ``s1 = sum(w)``, ``s2 = sum(w^2)``, ``s3 = sum(w^3)``, ``mu = sum(w y)/s1``,
    ``a = sum(w^2 r^2)`` (= Y'PPY) and ``b = sum(w r^2)`` (= Y'PY), ``r = y - mu``."""
    s1 = sy = s2 = s3 = 0.0
    ws = []
    for vv, yy in pairs:
        w = 1.0 / (vv + tau2)
        ws.append(w)
        w2 = w * w
        s1 += w
        sy += w * yy
        s2 += w2
        s3 += w2 * w
    mu = sy / s1
    a = b = 0.0
    for w, (_, yy) in zip(ws, pairs):
        d = yy - mu
        wd = w * d
        a += wd * wd
        b += wd * d
    return s1, s2, s3, mu, a, b


def _fisher_scoring(start: Sequence[float], step, ctl: _Control) -> tuple[list[float], list[bool], list[int]]:
    """The one Fisher-scoring loop for ML, REML and EB (module docstring), for
    one problem or many at once.

    ``start``: the start values; ``step(t, rows)``: the Fisher steps ``delta``
    at ``t`` (a list) for the problems ``rows`` still iterating (the step may
    be vectorised). Each step is multiplied by ``stepadj`` (NaN -> 0) and
    halved while ``tau2 + delta < 0``; a problem stops when ``|change| <=
    threshold``, or after ``maxiter`` iterations, which marks it as not
    converged (as metafor). Returns the last iterates, the converged flags and
    the iteration counts. The bookkeeping is on Python floats: for one problem
    that is faster than numpy, for many it costs little next to the step.
    """
    tau2 = [float(x) for x in start]
    conv = [True] * len(tau2)
    iters = [0] * len(tau2)
    rows = list(range(len(tau2)))
    threshold, stepadj = ctl.threshold, ctl.stepadj
    it = 0
    while rows:
        it += 1
        deltas = step([tau2[i] for i in rows], rows)
        if isinstance(deltas, np.ndarray):
            deltas = deltas.tolist()
        still = []
        for i, adj in zip(rows, deltas):
            old = tau2[i]
            adj *= stepadj
            if adj != adj:  # NaN
                adj = 0.0
            if old + adj < 0.0:
                if old == 0.0:  # halving from 0 ends when the step underflows to -0.0
                    adj = -0.0
                while old + adj < 0.0:
                    adj /= 2.0
            new = old + adj
            tau2[i] = new
            iters[i] = it
            if abs(old - new) > threshold:
                still.append(i)
        if it > ctl.maxiter:
            for i in rows:
                conv[i] = False
            break
        rows = still
    return tau2, conv, iters


def _psums(w: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
    """Row-wise, for one intercept, ``P = W - w w'/sum(w)`` (V = diag(v); w = 0
    marks a missing study): tr(P), sum(P*P), sum(PV * t(PV)) and sum(PV * P)
    in closed form."""
    s1 = w.sum(axis=1)
    w2 = w * w
    s2 = w2.sum(axis=1)
    d = w - w2 / s1[:, None]  # diagonal of P
    col = d * d + w2 * (s2[:, None] - w2) / (s1 * s1)[:, None]  # sum_i P_ij^2 for each j
    a = (w2 * v).sum(axis=1)
    s_pvpv = (d * d * v * v).sum(axis=1) + (a * a - (w2 * w2 * v * v).sum(axis=1)) / (s1 * s1)
    return s1 - s2 / s1, col.sum(axis=1), s_pvpv, (col * v).sum(axis=1)


@dataclass(frozen=True)
class _Tau2Many:
    tau2: np.ndarray
    se: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    reset: np.ndarray  # ML/REML set to 0 by the local-maximum check


def _local_max_reset(method, rss, wts, v, Mf, k, tau2, conv, threshold) -> np.ndarray:
    """metafor's check for a local maximum away from tau2 = 0: the rows whose (restricted) log-likelihood at
    0 is higher than at the converged value (by more than the tolerance) are reset to 0."""
    s0, _, rss0 = rss(wts(np.zeros_like(tau2)))
    s1, _, rss1 = rss(wts(tau2))
    logv0 = (np.log(v) * Mf).sum(axis=1)
    logv1 = (np.log(v + tau2[:, None]) * Mf).sum(axis=1)
    drop = _ll_drop(method, k, k - 1.0, logv0, logv1, rss0, rss1, np.log(s0), np.log(s1))
    return conv & (drop > _TOL) & (tau2 > threshold)


def _tau2_many(Y: np.ndarray, V: np.ndarray, M: np.ndarray, method: str,
               ctl: _Control = _DEFAULT_CONTROL) -> _Tau2Many:
    """tau2 and its SE for n intercept-only problems (rows of Y, V; ``M`` marks
    the studies present), every estimator but PM (module docstring).

    Standard errors (metafor), with ``t = max(tau2, 0)``:

    * DL: ``sqrt(2(k-1) + 4 t tr(P) + 2 t^2 tr(PP)) / tr(P)`` at ``w = 1/v``
    * HS: ``sqrt(2(k-1) + 4 t tr(P) + 2 t^2 tr(PP)) / sum(w)`` at ``w = 1/v``
    * HE: ``sqrt(2 tr(PVPV) + 4 t tr(PV) + 2 t^2 (k-1)) / (k-1)``, ``P = I - J/k``
    * SJ: ``tau0 sqrt(2 tr(PVPV) + 4 t sum(PV*P) + 2 t^2 tr(PP)) / (k-1)`` at
      ``w = 1/(v + tau0)``
    * REML ``sqrt(2 / tr(PP))``, ML ``sqrt(2 / sum(w^2))``, EB
      ``sqrt(2 k^2 / (k-1)) / sum(w)``, at the estimate.
    """
    n = Y.shape[0]
    Mf = M.astype(float)
    v = np.where(M, V, 1.0)
    k = Mf.sum(axis=1)
    km1 = k - 1.0
    y = np.where(M, Y, 0.0)
    ymc = (y - (y.sum(axis=1) / k)[:, None]) * Mf
    zeros = np.zeros(n)
    conv = np.ones(n, bool)
    iters = np.zeros(n, np.int64)
    reset = np.zeros(n, bool)

    def wts(t):
        return Mf / (v + t[:, None])

    def rss(w):
        s1 = w.sum(axis=1)
        r = (ymc - ((w * ymc).sum(axis=1) / s1)[:, None]) * Mf
        return s1, r, (w * r * r).sum(axis=1)

    if method == "FE":
        return _Tau2Many(zeros, np.full(n, np.nan), conv, iters, reset)
    if method in ("DL", "HS"):
        w = wts(zeros)
        s1, _, q = rss(w)
        tr_p, s_pp, _, _ = _psums(w, v)
        t, se = _moment_tau2(method, q, k, km1, tr_p, s_pp, s1)
        return _Tau2Many(t, se, conv, iters, reset)
    if method == "SJ":
        if ctl.tau2_init is None:
            d = (ymc - (ymc.sum(axis=1) / k)[:, None]) * Mf
            tau0 = (d * d).sum(axis=1) / k
        else:
            tau0 = np.full(n, float(ctl.tau2_init))
        w = wts(tau0)
        _, _, q = rss(w)
        _, s_pp, s_pvpv, s_pvp = _psums(w, v)
        t, se = _sj_tau2(tau0, q, km1, s_pp, s_pvpv, s_pvp)
        return _Tau2Many(t, se, conv, iters, reset)
    # HE (also the start of ML/REML/EB)
    d = (ymc - (ymc.sum(axis=1) / k)[:, None]) * Mf
    sv = (v * Mf).sum(axis=1)
    tr_pv = (1.0 - 1.0 / k) * sv
    rss_he = (d * d).sum(axis=1)
    tau2_he = (rss_he - tr_pv) / km1
    if method == "HE":
        s_pvpv = (1.0 - 2.0 / k) * (v * v * Mf).sum(axis=1) + sv * sv / (k * k)
        t, se = _he_tau2(rss_he, tr_pv, km1, s_pvpv)
        return _Tau2Many(t, se, conv, iters, reset)

    def step(t, rows):
        all_rows = rows.size == n
        mf = Mf if all_rows else Mf[rows]
        yy = ymc if all_rows else ymc[rows]
        w = mf / ((v if all_rows else v[rows]) + t[:, None])
        s1 = w.sum(axis=1)
        r = (yy - ((w * yy).sum(axis=1) / s1)[:, None]) * mf
        wr = w * r
        if method == "REML":
            w2 = w * w
            s2 = w2.sum(axis=1)
            # tr(P) = s1 - s2/s1;  tr(PP) = s2 - 2 s3/s1 + (s2/s1)^2
            q = s2 / s1
            return ((wr * wr).sum(axis=1) - (s1 - q)) / (s2 - 2.0 * (w2 * w).sum(axis=1) / s1 + q * q)
        if method == "ML":
            return ((wr * wr).sum(axis=1) - s1) / (w * w).sum(axis=1)
        kk = k if all_rows else k[rows]
        return ((wr * r).sum(axis=1) * kk / (kk - 1) - kk) / s1

    start = np.maximum(tau2_he, 0.0) if ctl.tau2_init is None else np.full(n, float(ctl.tau2_init))
    t_list, c_list, i_list = _fisher_scoring(start.tolist(), lambda t, rows: step(np.array(t), np.array(rows)), ctl)
    tau2, conv, iters = np.array(t_list), np.array(c_list, bool), np.array(i_list, np.int64)
    if method in ("ML", "REML"):
        reset = _local_max_reset(method, rss, wts, v, Mf, k, tau2, conv, ctl.threshold)
        tau2 = np.where(reset, 0.0, tau2)
    tau2 = np.maximum(tau2, 0.0)
    w = wts(tau2)
    se = _fisher_se(method, k, km1, w.sum(axis=1), (w * w).sum(axis=1),
                    _psums(w, v)[1] if method == "REML" else None)
    return _Tau2Many(tau2, se, conv, iters, reset)


def _ll_drop(method: str, k, df, logv0, logv1, rss0, rss1, logdet0=0.0, logdet1=0.0):
    """Log-likelihood at tau2 = 0 minus the one at the estimate (metafor's check for a
    local maximum), on floats or row-wise arrays: ML ``-(k log 2pi + sum log(v + tau2) +
    Y'PY) / 2``; REML ``-((k - p) log 2pi + sum log(v + tau2) + log|X'WX| + Y'PY) / 2``."""
    if method == "ML":
        n, logdet0, logdet1 = k, 0.0, 0.0
    else:
        n = df
    ll0 = -0.5 * n * _LOG_2PI - 0.5 * logv0 - 0.5 * logdet0 - 0.5 * rss0
    ll = -0.5 * n * _LOG_2PI - 0.5 * logv1 - 0.5 * logdet1 - 0.5 * rss1
    return ll0 - ll


def _fisher_se(method: str, k, df, s1, s2, s_pp):
    """metafor's SE of tau2 at the estimate: REML ``sqrt(2 / tr(PP))``, ML
    ``sqrt(2 / sum(w^2))``, EB and PM ``sqrt(2 k^2 / df) / sum(w)``."""
    sqrt = np.sqrt if isinstance(s1, np.ndarray) else math.sqrt
    if method == "REML":
        return sqrt(2.0 / s_pp)
    if method == "ML":
        return sqrt(2.0 / s2)
    return sqrt(2.0 * k * k / df) / s1


def _moment_tau2(method: str, rss, k, df, tr_p, s_pp, s1):
    """DL and HS with their metafor SEs (module docstring), on floats or row-wise arrays:
    DL ``(Y'PY - df) / tr(P)``, HS ``(Y'PY - k) / sum(w)`` (``w = 1/v``), truncated at 0;
    SE ``sqrt(2 df + 4 t tr(P) + 2 t^2 tr(PP)) / tr(P)`` (HS: ``/ sum(w)``), ``t`` the estimate."""
    div = tr_p if method == "DL" else s1
    t = np.maximum((rss - (df if method == "DL" else k)) / div, 0.0)
    return t, np.sqrt(2 * df + 4 * t * tr_p + 2 * t * t * s_pp) / div


def _sj_tau2(tau0, rss, df, s_pp, s_pvpv, s_pvp):
    """SJ ``tau0 Y'PY / df`` (``w = 1/(v + tau0)``), truncated at 0, with SE
    ``tau0 sqrt(2 tr(PVPV) + 4 t sum(PV*P) + 2 t^2 tr(PP)) / df``."""
    t = np.maximum(tau0 * rss / df, 0.0)
    return t, np.sqrt(tau0 * tau0 / df ** 2 * (2 * s_pvpv + 4 * t * s_pvp + 2 * t * t * s_pp))


def _sj_start(ymc: np.ndarray, k: int) -> float:
    """SJ's start ``tau0 = sum((y - ybar)^2) / k``."""
    sy = float(ymc.sum())
    return (float(ymc @ ymc) - sy * sy / k) / k


def _he_tau2(rss, tr_pv, df, s_pvpv):
    """HE ``(Y'PY - tr(PV)) / df`` (``P = I - H``), truncated at 0, with SE
    ``sqrt(2 tr(PVPV) + 4 t tr(PV) + 2 t^2 df) / df``."""
    t = np.maximum((rss - tr_pv) / df, 0.0)
    return t, np.sqrt(2 * s_pvpv + 4 * t * tr_pv + 2 * t * t * df) / df


def _pm_tau2(qfun, k: int, df: int, y: np.ndarray, v: np.ndarray, ctl: _Control) -> _Tau2:
    """Paule–Mandel: the root of ``Q(tau2) = df`` (``qfun``, the generalized Q of the model), with the
    Fisher-information SE at the estimate (metafor)."""
    tau2, ok, msgs = _pm_root(qfun, float(df), max(ctl.tau2_max, 10.0 * _mad(y) ** 2), ctl.maxiter)
    if not math.isfinite(tau2):
        return _Tau2(_NAN, _NAN, False, 0, tuple(msgs))
    tau2 = max(0.0, tau2)
    se = float(_fisher_se("PM", k, df, float((1.0 / (v + tau2)).sum()), None, None))
    return _Tau2(tau2, se, ok, 0, tuple(msgs))


def _scored_tau2(method: str, step, tau2_he: float, ctl: _Control, ll_drop) -> tuple[float, bool, int, list[str]]:
    """ML / REML / EB by Fisher scoring (the one loop, :func:`_fisher_scoring`) from the HE value (or
    ``ctl.tau2_init``), then metafor's check for a local maximum away from tau2 = 0 (ML/REML: when
    ``ll_drop(tau2)``, the log-likelihood lost against tau2 = 0, exceeds the tolerance, tau2 is set to 0).
    Returns (tau2 truncated at 0, converged, iterations, messages)."""
    start = max(0.0, tau2_he) if ctl.tau2_init is None else float(ctl.tau2_init)
    (tau2,), (conv,), (it,) = _fisher_scoring([start], step, ctl)
    msgs: list[str] = []
    if not conv:
        msgs.append(_fisher_message(method, tau2, ctl.maxiter))
    if conv and method in ("ML", "REML") and ll_drop(tau2) > _TOL and tau2 > ctl.threshold:
        msgs.append(_ll0_message(method))
        tau2 = 0.0
    return max(0.0, tau2), conv, it, msgs


def _tau2_intercept(y: np.ndarray, v: np.ndarray, method: str,
                    ctl: _Control = _DEFAULT_CONTROL) -> _Tau2:
    """tau2 for one intercept-only model (closed forms for P = W - ww'/sum(w));
    :func:`_tau2_many` holds the same formulas row-wise for many problems at once.

    Standard errors (metafor), with ``t = max(tau2, 0)``:

    * DL: ``sqrt(2(k-1) + 4 t tr(P) + 2 t^2 tr(PP)) / tr(P)`` at ``w = 1/v``
    * HS: ``sqrt(2(k-1) + 4 t tr(P) + 2 t^2 tr(PP)) / sum(w)`` at ``w = 1/v``
    * HE: ``sqrt(2 tr(PVPV) + 4 t tr(PV) + 2 t^2 (k-1)) / (k-1)``, ``P = I - J/k``
    * SJ: ``tau0 sqrt(2 tr(PVPV) + 4 t sum(PV*P) + 2 t^2 tr(PP)) / (k-1)`` at
      ``w = 1/(v + tau0)``
    * REML ``sqrt(2 / tr(PP))``, ML ``sqrt(2 / sum(w^2))``, EB/PM
      ``sqrt(2 k^2 / (k-1)) / sum(w)``, at the estimate.
    """
    k = y.size
    ymc = y - float(y.sum()) / k
    if method == "FE":
        return _Tau2(0.0)
    if method in ("DL", "HS"):
        w = 1.0 / v
        s1 = float(w.sum())
        mu = float(w @ ymc) / s1
        r = ymc - mu
        rss = float(w @ (r * r))
        tr_p, s_pp, _, _ = _p_sums(w, v)
        t, se = _moment_tau2(method, rss, k, k - 1, tr_p, s_pp, s1)
        return _Tau2(float(t), float(se))
    if method == "SJ":
        tau0 = _sj_start(ymc, k) if ctl.tau2_init is None else float(ctl.tau2_init)
        w = 1.0 / (v + tau0)
        s1 = float(w.sum())
        mu = float(w @ ymc) / s1
        r = ymc - mu
        rss = float(w @ (r * r))
        _, s_pp, s_pvpv, s_pvp = _p_sums(w, v)
        t, se = _sj_tau2(tau0, rss, k - 1, s_pp, s_pvpv, s_pvp)
        return _Tau2(float(t), float(se))
    if method == "PM":
        return _pm_tau2(_q_intercept(ymc, v), k, k - 1, y, v, ctl)

    # HE (also the starting value of ML/REML/EB)
    sy = float(ymc.sum())
    rss_he = float(ymc @ ymc) - sy * sy / k
    sv = float(v.sum())
    tr_pv = (1.0 - 1.0 / k) * sv
    tau2_he = (rss_he - tr_pv) / (k - 1)
    if method == "HE":
        s_pvpv = (1.0 - 2.0 / k) * float(v @ v) + sv * sv / (k * k)
        t, se = _he_tau2(rss_he, tr_pv, k - 1, s_pvpv)
        return _Tau2(float(t), float(se))

    # ML / REML / EB: Fisher scoring (the one loop, _fisher_scoring) from the HE value, with the sums
    # of _wsums on Python floats (for one problem faster than numpy up to k of several hundred)
    pairs = list(zip(v.tolist(), ymc.tolist()))

    def step(t, _rows):
        s1, s2, s3, _, a, b = _wsums(pairs, t[0])
        if method == "REML":
            q = s2 / s1
            # tr(P) = s1 - s2/s1;  tr(PP) = s2 - 2 s3/s1 + (s2/s1)^2
            return [(a - (s1 - q)) / (s2 - 2.0 * s3 / s1 + q * q)]
        if method == "ML":
            return [(a - s1) / s2]
        return [(b * k / (k - 1) - k) / s1]

    def ll_drop(tau2):
        s0, _, _, _, _, rss0 = _wsums(pairs, 0.0)
        s1, _, _, _, _, rss1 = _wsums(pairs, tau2)
        logv0 = sum(math.log(vv) for vv, _ in pairs)
        logv1 = sum(math.log(vv + tau2) for vv, _ in pairs)
        return _ll_drop(method, k, k - 1, logv0, logv1, rss0, rss1, math.log(s0), math.log(s1))

    tau2, conv, it, msgs = _scored_tau2(method, step, tau2_he, ctl, ll_drop)
    s1, s2, s3, _, _, _ = _wsums(pairs, tau2)
    q = s2 / s1
    se = float(_fisher_se(method, k, k - 1, s1, s2, s2 - 2.0 * s3 / s1 + q * q))  # tr(PP) as in the step
    return _Tau2(tau2, se, conv, it, tuple(msgs))


def _tau2_general(y: np.ndarray, v: np.ndarray, X: np.ndarray, method: str,
                  ctl: _Control = _DEFAULT_CONTROL) -> _Tau2:
    """tau2 for a model matrix X (meta-regression); the same estimators and
    standard errors as ``_tau2_intercept`` in matrix form (metafor rma.uni)."""
    k, p = X.shape
    ymc = y - float(y.sum()) / k
    if method == "FE":
        return _Tau2(0.0)
    if method in ("DL", "HS"):
        w = 1.0 / v
        P = _p_matrix(X, w)
        rss = float(ymc @ P @ ymc)
        tr_p = float(np.trace(P))
        s_pp = float((P * P).sum())
        t, se = _moment_tau2(method, rss, k, k - p, tr_p, s_pp, float(w.sum()))
        return _Tau2(float(t), float(se))
    if method == "SJ":
        tau0 = _sj_start(ymc, k) if ctl.tau2_init is None else float(ctl.tau2_init)
        P = _p_matrix(X, 1.0 / (v + tau0))
        PV = P * v[None, :]
        t, se = _sj_tau2(tau0, float(ymc @ P @ ymc), k - p, float((P * P).sum()), float((PV * PV.T).sum()),
                         float((PV * P).sum()))
        return _Tau2(float(t), float(se))
    if method == "PM":
        return _pm_tau2(lambda t: _wls_rss(ymc, X, 1.0 / (v + t)), k, k - p, y, v, ctl)

    # HE, and the start of ML/REML/EB
    H = X @ _xwx_inv(X, np.ones(k)) @ X.T
    P = np.eye(k) - H
    rss = float(ymc @ P @ ymc)
    PV = P * v[None, :]
    tr_pv = float(np.trace(PV))
    tau2_he = (rss - tr_pv) / (k - p)
    if method == "HE":
        t, se = _he_tau2(rss, tr_pv, k - p, float((PV * PV.T).sum()))
        return _Tau2(float(t), float(se))

    def step(t, _rows):
        w = 1.0 / (v + t[0])
        P = _p_matrix(X, w)
        if method == "REML":
            py = P @ ymc
            return [(float(py @ py) - float(np.trace(P))) / float((P * P).sum())]
        if method == "ML":
            py = P @ ymc
            return [(float(py @ py) - float(w.sum())) / float(w @ w)]
        return [(float(ymc @ P @ ymc) * k / (k - p) - k) / float(w.sum())]

    def ll_drop(tau2):
        w0, w1 = 1.0 / v, 1.0 / (v + tau2)
        logdets = (_logdet_xwx(X, w0), _logdet_xwx(X, w1)) if method == "REML" else (0.0, 0.0)
        return _ll_drop(method, k, k - p, float(np.log(v).sum()), float(np.log(v + tau2).sum()),
                        _wls_rss(ymc, X, w0), _wls_rss(ymc, X, w1), *logdets)

    tau2, conv, it, msgs = _scored_tau2(method, step, tau2_he, ctl, ll_drop)
    w = 1.0 / (v + tau2)
    s_pp = float((_p_matrix(X, w) ** 2).sum()) if method == "REML" else None
    se = float(_fisher_se(method, k, k - p, float(w.sum()), float(w @ w), s_pp))
    return _Tau2(tau2, se, conv, it, tuple(msgs))


# --------------------------------------------------------------------------- Q-profile


def _q_root(qfun, crit: float, bracket: tuple, q_at: tuple, which: str, msgs: list[str]) -> float:
    """The tau2 where ``Q(tau2) = crit`` inside ``bracket`` (Q at its ends: ``q_at``), by Brent's method;
    a search that does not converge is said in ``msgs`` (``which``: "upper" or "lower" bound)."""
    root, ok = _brent_root(lambda t: qfun(t) - crit, *bracket, q_at[0] - crit, q_at[1] - crit, _TOL,
                           _CONFINT_MAXITER)
    if not ok:
        msgs.append(f"The search for the {which} bound of the tau2 CI did not converge.")
    return root


def _qprofile(qfun, df: int, tau2: float, level: float) -> tuple[float, float, list[str]]:
    """Q-profile CI for tau2 exactly as metafor ``confint.rma.uni`` (type "QP").

    Solve ``Q(tau2) = chi2_{df, 1-alpha/2}`` (lower bound) and
    ``Q(tau2) = chi2_{df, alpha/2}`` (upper bound) with ``uniroot`` on
    ``[0, max(100, 10 * tau2)]``. Q decreases in tau2. If ``Q(0)`` is already
    below the lower quantile, the interval is {0} (reported as [0, 0]); a
    bound beyond the search range is reported as the range end.
    """
    alpha = 1.0 - level
    t_min = min(0.0, tau2)
    t_max = max(100.0, tau2 * 10.0, t_min * 10.0)
    crit_u = float(special.chdtri(df, alpha / 2.0))  # upper quantile
    crit_l = float(special.chdtri(df, 1.0 - alpha / 2.0))  # lower quantile
    q_max = qfun(t_max)
    q_min = qfun(t_min)
    msgs: list[str] = []
    lb = ub = _NAN
    if q_min < crit_l:
        lb = ub = t_min
        msgs.append(
            "The Q-profile confidence interval for tau2 is empty above 0 (Q at tau2 = 0 "
            "is below the lower critical value): it is reported as [0, 0], as metafor does."
        )
    else:
        if q_max > crit_l:
            ub = t_max
            msgs.append(
                f"Upper bound of the tau2 confidence interval not found: it lies above "
                f"the search limit {t_max:.6g} and is reported as that limit (as metafor does)."
            )
        else:
            ub = _q_root(qfun, crit_l, (t_min, t_max), (q_min, q_max), "upper", msgs)
    if q_max > crit_u:
        lb = ub = t_max
        msgs.append(
            f"Both bounds of the tau2 confidence interval lie above the search limit "
            f"{t_max:.6g}; reported as that limit."
        )
    elif q_min < crit_u:
        lb = t_min
    else:
        lb = _q_root(qfun, crit_u, (t_min, t_max), (q_min, q_max), "lower", msgs)
    return lb, ub, msgs


