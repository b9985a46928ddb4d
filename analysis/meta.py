"""Stage 2: random-effects meta-analysis (METHODS §6).

Model::

    y_k = mu + u_k + e_k,   u_k ~ N(0, tau2),   e_k ~ N(0, v_k)

with ``y_k`` a study's effect and ``v_k`` its squared standard error. Every
definition below follows R's metafor ``rma.uni`` (version 3.8) and its
``predict``, ``confint``, ``weights``, ``leave1out`` and ``regtest`` methods,
including metafor's defaults for starting values, convergence thresholds and
search intervals, so that results agree with metafor to 1e-6 on published data
(tests/reference/make_meta_reference.R writes the reference values).

Notation used in the docstrings: ``X`` is the k x p model matrix (a column of
ones for a plain pooled estimate), ``W = diag(w)``, ``w_k = 1 / (v_k + tau2)``,
``P = W - W X (X'WX)^-1 X'W``, ``Y`` the effects (centred at their mean while
estimating tau2, as metafor does; with an intercept this changes nothing).

tau2 estimators (all truncated at 0 afterwards):

* ``FE``   tau2 = 0 (common-effect model).
* ``DL``   DerSimonian-Laird: with ``P`` at ``w = 1/v``,
  ``tau2 = (Y'PY - (k - p)) / tr(P)``.
* ``HE``   Hedges (variance components): with ``P = I - X(X'X)^-1X'``,
  ``tau2 = (Y'PY - tr(P V)) / (k - p)``.
* ``HS``   Hunter-Schmidt: with ``P`` at ``w = 1/v``, ``tau2 = (Y'PY - k) / sum(w)``.
* ``SJ``   Sidik-Jonkman: start ``tau0 = sum((y - ybar)^2) / k``; with ``P`` at
  ``w = 1/(v + tau0)``, ``tau2 = tau0 * Y'PY / (k - p)``.
* ``PM``   Paule-Mandel: the root of ``Y'P(tau2)Y = k - p`` on
  ``[0, max(100, 10 * mad(y)^2)]``, by Brent's method with R ``uniroot``'s
  tolerance ``eps^0.25``; 0 when ``Y'P(0)Y < k - p``.
* ``ML``, ``REML``, ``EB``  Fisher scoring from the HE value (truncated at 0):
  ``tau2 <- tau2 + delta`` with

  - ML:   ``delta = (Y'PPY - sum(w)) / sum(w^2)``
  - REML: ``delta = (Y'PPY - tr(P)) / tr(PP)``
  - EB:   ``delta = (Y'PY * k/(k - p) - k) / sum(w)``

  ``delta`` is halved while ``tau2 + delta < 0``; stop when
  ``|change| <= 1e-5``; at most 100 iterations (non-convergence is reported,
  not hidden). For ML/REML, if the log-likelihood at tau2 = 0 exceeds the one
  at the estimate by more than ``eps^0.25``, tau2 is set to 0 (metafor's check
  for a local maximum).

Standard errors of tau2 are metafor's: REML ``sqrt(2 / tr(PP))``, ML
``sqrt(2 / sum(w^2))``, EB and PM ``sqrt(2 k^2 / (k - p)) / sum(w)``, and
moment-based formulas for DL, HE, SJ and HS (see ``_tau2_intercept``).

Inference for the coefficients, with ``w_k = 1 / (v_k + tau2)``:

* ``beta = (X'WX)^-1 X'W y``, ``Var(beta) = s2 (X'WX)^-1``; ``s2 = 1`` for
  ``test="z"`` (normal), and for ``test="knha"`` (Knapp-Hartung)
  ``s2 = sum(w (y - X beta)^2) / (k - p)``, not truncated at 1 (metafor's
  ``test="knha"``), with t on ``k - p`` df; ``test="adhoc"`` (the default)
  truncates it, ``s2 = max(1, ...)``, so the interval is never narrower than
  the z interval's (Knapp & Hartung's ad hoc rule; metafor's ``test="adhoc"``).
* CI ``beta +/- crit * SE``; prediction interval (metafor ``predict``)
  ``mu +/- crit * sqrt(SE^2 + tau2)`` with the same ``crit``.
* ``Q = Y'P Y`` at ``w = 1/v`` on ``k - p`` df; ``vt = (k - p) / tr(P)`` (the
  "typical" within-study variance); ``I2 = 100 tau2 / (vt + tau2)``,
  ``H2 = (vt + tau2) / vt``; for FE ``I2 = max(0, 100 (Q - (k-p)) / Q)``,
  ``H2 = Q / (k - p)``. With one intercept and DL these are the familiar
  ``(Q - df) / Q`` and ``Q / df``.
* Weights (percent) ``100 w_k / sum(w)``.
* The tau2 CI is the Q-profile interval (metafor ``confint``): the tau2 values
  where ``Y'P(tau2)Y`` equals the upper and lower ``(1 - level)/2`` chi-square
  quantiles on ``k - p`` df, searched on ``[0, max(100, 10 tau2)]`` with
  ``uniroot`` (tolerance ``eps^0.25``, as metafor); a bound outside that range
  is reported as the range end and said so in ``messages``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import special
from scipy.linalg import solve_triangular

from . import formatting as fmt
from .options import Declared, Option

__all__ = [
    "METHODS",
    "TESTS",
    "EggerResult",
    "Estimate",
    "Heterogeneity",
    "MetaRegressionResult",
    "MetaResult",
    "PoolOptions",
    "egger_test",
    "leave_one_out",
    "meta_regression",
    "random_effects",
    "random_effects_many",
    "results_table",
]

METHODS = ("FE", "DL", "REML", "ML", "PM", "EB", "HE", "SJ", "HS")
TESTS = ("adhoc", "knha", "z")
_T_TESTS = ("knha", "adhoc")  # t tests on k − p df

METHOD_NAMES = {
    "FE": "common-effect (fixed-effect) model",
    "DL": "DerSimonian-Laird",
    "REML": "restricted maximum likelihood",
    "ML": "maximum likelihood",
    "PM": "Paule-Mandel",
    "EB": "empirical Bayes",
    "HE": "Hedges",
    "SJ": "Sidik-Jonkman",
    "HS": "Hunter-Schmidt",
}
TEST_NAMES = {"z": "z-test", "knha": "Knapp-Hartung t-test",
              "adhoc": "Knapp-Hartung t-test (ad hoc: never narrower than z)"}

_STAGE2 = "6-stage-2-random-effects-pooling"
#: The τ² estimator, declared once (LagOptions.pooling_method and PoolOptions.method reuse it).
TAU2_METHOD = Option(
    "choice", "REML", "τ² estimator", choices=METHODS, case="upper", widget="select", url="tau2", methods=_STAGE2,
    labels={"REML": "REML", **{m: m for m in METHODS if m != "REML"}},
    help="How the between-study variance is estimated. REML is the default; FE assumes no heterogeneity.")
#: The test and CI of the pooled coefficients, declared once.
POOL_TEST = Option(
    "choice", "adhoc", "Test and CI", choices=TESTS, case="lower", widget="radio", url="test", methods=_STAGE2,
    labels={"adhoc": "Knapp–Hartung, never narrower than z (t, k − 1 df)", "knha": "Knapp–Hartung (t, k − 1 df)",
            "z": "Normal (z)"},
    help="Knapp–Hartung (the default, with the ad hoc rule that keeps it from being narrower than z) reflects "
         "the uncertainty in τ²: with 5 studies the z interval covers the truth about 88% of the time, "
         "Knapp–Hartung about 94% (METHODS §6). z is kept for reproducing papers that used it.")


@dataclass(frozen=True)
class PoolOptions(Declared):
    """The stage-2 choices (METHODS §6): τ² ``method`` and ``test``.

    >>> PoolOptions(method="dl").method
    'DL'
    >>> PoolOptions(test="t")
    Traceback (most recent call last):
    ...
    ValueError: test must be one of 'adhoc', 'knha', 'z'; got 't'.
    """

    method: str = TAU2_METHOD.field()
    test: str = POOL_TEST.field()

# metafor rma.uni control defaults
_THRESHOLD = 1e-5  # Fisher scoring convergence threshold
_MAXITER = 100  # Fisher scoring / uniroot iterations when estimating tau2
_TOL = float(np.finfo(float).eps) ** 0.25  # uniroot tolerance and ll0 check
_TAU2_MAX = 100.0  # lower limit of the PM search interval's upper end
_CONFINT_MAXITER = 1000  # uniroot iterations in confint
_EPS = float(np.finfo(float).eps)
_LOG_2PI = math.log(2.0 * math.pi)

_NAN = float("nan")


@dataclass(frozen=True)
class _Control:
    """metafor ``control`` settings that this module honours."""

    threshold: float = _THRESHOLD
    maxiter: int = _MAXITER
    stepadj: float = 1.0
    tau2_init: float | None = None
    tau2_max: float = _TAU2_MAX


_DEFAULT_CONTROL = _Control()


def _make_control(control: Any) -> _Control:
    if control is None:
        return _DEFAULT_CONTROL
    if isinstance(control, _Control):
        return control
    if not isinstance(control, dict):
        raise ValueError("control must be a dict, e.g. {'stepadj': 0.5, 'maxiter': 1000}.")  # noqa: TRY004
    allowed = {f.name for f in fields(_Control)}
    unknown = set(control) - allowed
    if unknown:
        raise ValueError(
            f"Unknown control setting(s) {sorted(unknown)}; allowed: {sorted(allowed)}."
        )
    ctl = _Control(**control)
    if not (ctl.threshold > 0 and ctl.maxiter >= 1 and ctl.stepadj > 0 and ctl.tau2_max > 0):
        raise ValueError("control: threshold, maxiter, stepadj and tau2_max must be positive.")
    if ctl.tau2_init is not None and not (ctl.tau2_init >= 0):
        raise ValueError("control: tau2_init must be >= 0.")
    return ctl


# --------------------------------------------------------------------------- input


def _as_vector(x: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must contain numbers only ({exc}).") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a one-dimensional sequence of numbers.")
    return arr


_METHOD_OPT, _TEST_OPT = (replace(o, name=n) for o, n in ((TAU2_METHOD, "method"), (POOL_TEST, "test")))


def _s2w(s2w, test):
    """Knapp–Hartung's scale factor; metafor's ``test="adhoc"`` never lets it fall below 1."""
    return np.maximum(s2w, 1.0) if test == "adhoc" else s2w


def _check_method_test(method: str, test: str, level: float) -> tuple[str, str, float]:
    m = _METHOD_OPT.check(method)
    t = _TEST_OPT.check(test)
    try:
        lv = float(level)
    except (TypeError, ValueError):
        raise ValueError("level must be a number between 0 and 1, e.g. 0.95.") from None
    if not (0.0 < lv < 1.0):
        raise ValueError(f"level must lie strictly between 0 and 1 (got {level!r}), e.g. 0.95.")
    return m, t, lv


_LABEL_CACHE: dict[int, tuple[str, ...]] = {}


def _default_labels(k: int) -> tuple[str, ...]:
    lab = _LABEL_CACHE.get(k)
    if lab is None:
        lab = tuple(f"Study {i + 1}" for i in range(k))
        if k <= 1000:
            _LABEL_CACHE[k] = lab
    return lab


def _check_effects(yi: Any, vi: Any, labels: Any = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Validate effects and sampling variances; return float arrays and labels."""
    y = _as_vector(yi, "yi (the study effects)").copy()
    v = _as_vector(vi, "vi (the sampling variances)").copy()
    y.flags.writeable = False
    v.flags.writeable = False
    if y.size != v.size:
        raise ValueError(
            f"yi has {y.size} values but vi has {v.size}: every study needs one effect "
            "and one sampling variance."
        )
    k = y.size
    if k == 0:
        raise ValueError("No studies to pool (k = 0).")
    if labels is None:
        lab = _default_labels(k)
    elif isinstance(labels, str):
        lab = [labels]
    else:
        lab = [str(s) for s in (labels.tolist() if hasattr(labels, "tolist") else list(labels))]
        if len(lab) != k:
            raise ValueError(f"labels has {len(lab)} entries but there are {k} studies.")
    # fast path: finite sums and a positive minimum imply valid input
    if math.isfinite(float(y.sum())) and math.isfinite(float(v.sum())) and float(v.min()) > 0:
        return y, v, lab
    bad_y = ~np.isfinite(y)
    if bad_y.any():
        which = ", ".join(lab[i] for i in np.flatnonzero(bad_y)[:5])
        raise ValueError(f"Effect sizes must be finite numbers; missing or infinite for: {which}.")
    bad_v = ~np.isfinite(v)
    if bad_v.any():
        which = ", ".join(lab[i] for i in np.flatnonzero(bad_v)[:5])
        raise ValueError(
            f"Sampling variances must be finite numbers; missing or infinite for: {which}."
        )
    nonpos = v <= 0
    if nonpos.any():
        which = ", ".join(lab[i] for i in np.flatnonzero(nonpos)[:5])
        raise ValueError(
            "Sampling variances must be positive (a variance is the squared standard "
            f"error); zero or negative for: {which}."
        )
    return y, v, lab


def _check_counts(x: Any, name: str, k: int) -> np.ndarray | None:
    if x is None:
        return None
    arr = _as_vector(x, name)
    if arr.size != k:
        raise ValueError(f"{name} has {arr.size} entries but there are {k} studies.")
    arr = arr.copy()
    arr.flags.writeable = False
    return arr


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float, copy=True)
    a.flags.writeable = False
    return a


# --------------------------------------------------------------------------- numerics


def _brent_root(f, lower: float, upper: float, f_lower: float, f_upper: float,
                tol: float, maxiter: int) -> tuple[float, bool]:
    """Zero of ``f`` on ``[lower, upper]`` by Brent's (1973) method.

    The step rules (inverse quadratic / secant interpolation, bisection
    fallback, minimal step ``2 eps |b| + tol/2``) are those of R's ``uniroot``,
    so that, given the same tolerance, the same iterate is returned: metafor
    uses ``uniroot`` with the loose default tolerance ``eps^0.25`` for PM and
    for the Q-profile CI, and its answers depend on where the search stops.
    Returns ``(root, converged)``.
    """
    if f_lower == 0.0:
        return lower, True
    if f_upper == 0.0:
        return upper, True
    a, fa = lower, f_lower
    b, fb = upper, f_upper
    c, fc = a, fa
    for _ in range(maxiter + 1):
        prev_step = b - a
        if abs(fc) < abs(fb):
            # make b the best approximation so far
            a, fa = b, fb
            b, fb = c, fc
            c, fc = a, fa
        tol_act = 2.0 * _EPS * abs(b) + tol / 2.0
        new_step = (c - b) / 2.0
        if abs(new_step) <= tol_act or fb == 0.0:
            return b, True
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:  # two points: secant
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:  # three points: inverse quadratic interpolation
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0.0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2.0) and p < abs(prev_step * q / 2.0):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0.0 else -tol_act
        a, fa = b, fb
        b = b + new_step
        fb = f(b)
        if (fb > 0.0 and fc > 0.0) or (fb < 0.0 and fc < 0.0):
            c, fc = a, fa
    return b, False


def _mad(y: np.ndarray) -> float:
    """R's ``mad``: 1.4826 * median(|y - median(y)|)."""
    med = float(np.median(y))
    return 1.4826 * float(np.median(np.abs(y - med)))


def _xwx_inv(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """(X'WX)^-1 via the QR decomposition of sqrt(W) X (metafor's ``.invcalc``)."""
    r = np.linalg.qr(np.sqrt(w)[:, None] * X, mode="r")
    rinv = solve_triangular(r, np.eye(X.shape[1]))
    return rinv @ rinv.T


def _p_matrix(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    """P = W - W X (X'WX)^-1 X'W."""
    c = _xwx_inv(X, w)
    wx = w[:, None] * X
    return np.diag(w) - wx @ c @ wx.T


def _wls_rss(y: np.ndarray, X: np.ndarray, w: np.ndarray) -> float:
    c = _xwx_inv(X, w)
    beta = c @ (X.T @ (w * y))
    r = y - X @ beta
    return float(w @ (r * r))


def _logdet_xwx(X: np.ndarray, w: np.ndarray) -> float:
    _sign, val = np.linalg.slogdet(X.T @ (w[:, None] * X))
    return float(val)


def _p_sums(w: np.ndarray, v: np.ndarray) -> tuple[float, float, float, float]:
    """For one intercept, P = W - w w'/sum(w): return tr(P), sum(P*P),
    sum(PV * t(PV)) and sum(PV * P) in closed form (V = diag(v))."""
    s1 = float(w.sum())
    w2 = w * w
    s2 = float(w2.sum())
    d = w - w2 / s1  # diagonal of P
    col = d * d + w2 * (s2 - w2) / (s1 * s1)  # sum_i P_ij^2 for each j
    tr_p = s1 - s2 / s1
    s_pp = float(col.sum())
    a = float(w2 @ v)
    s_pvpv = float((d * d) @ (v * v)) + (a * a - float((w2 * w2) @ (v * v))) / (s1 * s1)
    s_pvp = float(col @ v)
    return tr_p, s_pp, s_pvpv, s_pvp


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
        # metafor's check for a local maximum away from tau2 = 0
        s0, _, rss0 = rss(wts(zeros))
        s1, _, rss1 = rss(wts(tau2))
        logv0 = (np.log(v) * Mf).sum(axis=1)
        logv1 = (np.log(v + tau2[:, None]) * Mf).sum(axis=1)
        drop = _ll_drop(method, k, km1, logv0, logv1, rss0, rss1, np.log(s0), np.log(s1))
        reset = conv & (drop > _TOL) & (tau2 > ctl.threshold)
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


# --------------------------------------------------------------------------- wording


def _heterogeneity_word(i2: float) -> str:
    if not math.isfinite(i2):
        return "not estimable"
    if i2 < 25:
        return "low"
    if i2 < 50:
        return "moderate"
    if i2 < 75:
        return "substantial"
    return "considerable"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class Estimate:
    """A labelled estimate with its confidence interval: the common part of a study row in a forest plot
    (``plots_meta.ForestRow``), a screened study's effect and the reference it is placed against
    (``screening.Effect``, ``screening.Reference``). Equality is left to the subclasses (a reference
    compares by identity, a row by its values)."""

    label: str
    estimate: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True, eq=False)
class Heterogeneity:
    """The (residual) between-study heterogeneity of a random-effects model or meta-regression: τ² with
    its SE and Q-profile CI, I² (percent) and H² (METHODS §6)."""

    tau2: float
    tau2_se: float
    tau2_ci_low: float
    tau2_ci_high: float
    i2: float
    h2: float

    @property
    def tau(self) -> float:
        return math.sqrt(self.tau2) if self.tau2 >= 0 else _NAN


@dataclass(frozen=True, eq=False)
class MetaResult(Heterogeneity):
    """Pooled random-effects (or common-effect) estimate, as metafor rma.uni.

    ``statistic`` is z (``test="z"``) or t on ``df = k - 1`` (``test="knha"``).
    ``weights`` are percentages ``100 w_k / sum(w)``; ``yi``/``vi`` are the
    study data (read-only arrays). Heterogeneity fields are NaN for k = 1.
    """

    estimate: float
    se: float
    statistic: float
    pvalue: float
    ci_low: float
    ci_high: float
    pi_low: float
    pi_high: float
    q: float
    q_df: int
    q_pvalue: float
    k: int
    weights: np.ndarray
    method: str
    test: str
    level: float
    labels: tuple[str, ...]
    converged: bool
    messages: tuple[str, ...]
    yi: np.ndarray
    vi: np.ndarray
    df: float = _NAN
    iterations: int = 0
    n_patients: np.ndarray | None = None
    n_pairs: np.ndarray | None = None

    def to_frame(self) -> pd.DataFrame:
        """One tidy row with the pooled result (messages joined by '; ')."""
        row = {
            "method": self.method,
            "test": self.test,
            "k": self.k,
            "estimate": self.estimate,
            "se": self.se,
            "statistic": self.statistic,
            "df": self.df,
            "pvalue": self.pvalue,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "pi_low": self.pi_low,
            "pi_high": self.pi_high,
            "tau2": self.tau2,
            "tau2_se": self.tau2_se,
            "tau2_ci_low": self.tau2_ci_low,
            "tau2_ci_high": self.tau2_ci_high,
            "i2": self.i2,
            "h2": self.h2,
            "q": self.q,
            "q_df": self.q_df,
            "q_pvalue": self.q_pvalue,
            "level": self.level,
            "converged": self.converged,
            "messages": "; ".join(self.messages),
        }
        return pd.DataFrame([row])

    def studies_frame(self) -> pd.DataFrame:
        """One row per study: effect, its normal-theory CI (as in metafor's
        forest plot), weight in percent, and the counts when given."""
        crit = float(special.ndtri(1.0 - (1.0 - self.level) / 2.0))
        se = np.sqrt(self.vi)
        out = pd.DataFrame({
            "study": list(self.labels),
            "yi": self.yi,
            "vi": self.vi,
            "se": se,
            "ci_low": self.yi - crit * se,
            "ci_high": self.yi + crit * se,
            "weight": self.weights,
        })
        if self.n_patients is not None:
            out["n_patients"] = self.n_patients
        if self.n_pairs is not None:
            out["n_pairs"] = self.n_pairs
        return out

    def summary(self) -> str:
        """One plain-language sentence: estimate, CI, heterogeneity and PI."""
        pct = f"{100 * self.level:g}%"
        d = fmt.decimals_for((self.estimate, self.ci_low, self.ci_high))  # one number of decimals (APA)
        if self.k == 1:
            return (
                f"Only one study ({self.labels[0]}) was available, so nothing was pooled: "
                f"its own estimate is {fmt.fixed(self.estimate, d)} ({pct} CI {fmt.fixed(self.ci_low, d)} "
                f"to {fmt.fixed(self.ci_high, d)})."
            )
        stat = fmt.stat("z", self.statistic) if self.test == "z" else fmt.stat("t", self.statistic, self.df)
        core = (
            f"{fmt.fixed(self.estimate, d)} ({pct} CI {fmt.fixed(self.ci_low, d)} to {fmt.fixed(self.ci_high, d)}; "
            f"{stat}, {fmt.p_text(self.pvalue)})"
        )
        het = (
            f"{fmt.stat('Q', self.q, self.q_df)}, {fmt.p_text(self.q_pvalue)}"
            if math.isfinite(self.q) else "Q not available"
        )
        if self.method == "FE":
            return (
                f"Assuming one common effect across {self.k} studies (common-effect model, "
                f"{TEST_NAMES[self.test]}), the pooled effect was {core}; heterogeneity "
                f"between studies was {_heterogeneity_word(self.i2)} "
                f"(I\u00b2 = {fmt.num(self.i2, 0)}%, {het}), and a common-effect model gives "
                "no prediction interval for a new study."
            )
        warn = "; with only two studies this is very uncertain" if self.k == 2 else ""
        return (
            f"Across {self.k} studies ({METHOD_NAMES[self.method]} random-effects model, "
            f"{TEST_NAMES[self.test]}), the average effect was {core}; heterogeneity "
            f"between studies was {_heterogeneity_word(self.i2)} "
            f"(\u03c4\u00b2 = {fmt.tau2(self.tau2)}, I\u00b2 = {fmt.num(self.i2, 0)}%, {het}{warn}), "
            f"so the effect in a new, comparable study would be expected to lie between "
            f"{fmt.num(self.pi_low)} and {fmt.num(self.pi_high)} ({pct} prediction interval)."
        )


def results_table(results: Mapping[str, MetaResult], names: Mapping[str, str] | None = None,
                  label: str = "Direction") -> pd.DataFrame:
    """Pooled results for readers: one row per result (e.g. per direction), the
    key first (shown through ``names``), readable headers and numbers formatted
    by :mod:`analysis.formatting` (APA p values, true minus, small effects with
    significant digits; df "—" for a z-test, "—" for anything not estimable).
    For the numbers themselves use :meth:`MetaResult.to_frame`."""
    names = dict(names or {})
    rows = []
    for key, r in results.items():
        pct = f"{100 * r.level:g}%"
        pooled = r.k > 1
        dash = "\u2014"
        d = fmt.decimals_for((r.estimate, r.ci_low, r.ci_high))  # the estimate and its CI alike (APA)
        rows.append({
            label: names.get(key, str(key).replace("_", " ")),
            "Studies (k)": fmt.count(r.k),
            "Estimate": fmt.fixed(r.estimate, d),
            f"{pct} CI": fmt.interval(r.ci_low, r.ci_high, decimals=d),
            "SE": fmt.num(r.se, 3),
            "Test": TEST_NAMES[r.test],
            "Statistic": fmt.num(r.statistic),
            "df": fmt.count(r.df, na=dash),
            "p": fmt.pvalue(r.pvalue, na=dash),
            "\u03c4\u00b2": fmt.tau2(r.tau2) if pooled and r.method != "FE" else dash,
            f"\u03c4\u00b2 {pct} CI": (fmt.tau2_interval(r.tau2_ci_low, r.tau2_ci_high)
                                if math.isfinite(r.tau2_ci_low) else dash),
            "I\u00b2": fmt.num(r.i2, 1, na=dash) + ("%" if math.isfinite(r.i2) else ""),
            "Q": fmt.stat("Q", r.q, r.q_df) if pooled else dash,
            "p (Q)": fmt.pvalue(r.q_pvalue, na=dash),
            f"{pct} prediction interval": (fmt.interval(r.pi_low, r.pi_high)
                                           if pooled and math.isfinite(r.pi_low) else dash),
            "\u03c4\u00b2 estimator": f"{r.method} ({METHOD_NAMES[r.method]})",
            "Converged": "yes" if r.converged else "no",
            "Notes": " ".join(r.messages),
        })
    return pd.DataFrame(rows)


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


def random_effects(
    yi: Any,
    vi: Any,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    labels: Sequence[str] | None = None,
    n_patients: Any = None,
    n_pairs: Any = None,
    ci_tau2: bool = True,
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
    if method == "FE":
        pi_lo = pi_hi = _NAN
    else:
        half = crit * math.sqrt(vb + tau2)
        pi_lo, pi_hi = est - half, est + half

    # heterogeneity at w = 1/v
    qp = float(special.chdtrc(k - 1, q))
    vt = (k - 1) / tr_p0
    if method == "FE":
        i2 = max(0.0, 100.0 * (q - (k - 1)) / q) if q > 0 else _NAN
        h2 = q / (k - 1)
    else:
        i2 = 100.0 * tau2 / (vt + tau2)
        h2 = tau2 / vt + 1.0

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
    Y: Any,
    V: Any,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    control: dict | None = None,
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
    yi: Any,
    vi: Any,
    labels: Sequence[str] | None = None,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    control: dict | None = None,
) -> pd.DataFrame:
    """Leave-one-out analysis (metafor ``leave1out``): the model refitted k
    times, each time without one study.

    Columns: ``study`` (the omitted one), ``estimate``, ``se``, ``zval`` (or
    ``tval`` for Knapp-Hartung), ``pval``, ``ci_lb``, ``ci_ub``, ``Q``, ``Qp``,
    ``tau2``, ``I2``, ``H2``, ``converged``, ``messages``. ``df.attrs`` holds
    the full-data ``estimate``, ``method``, ``test`` and ``level``. Needs k >= 2.
    ``control`` as in :func:`random_effects`.
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
    yi: Any,
    vi: Any,
    moderators: Any,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    labels: Sequence[str] | None = None,
    ci_tau2: bool = True,
    control: dict | None = None,
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


# --------------------------------------------------------------------------- Egger


@dataclass(frozen=True, eq=False)
class EggerResult:
    """Egger's regression test (metafor ``regtest(model="rma", predictor="sei")``).

    ``statistic`` is the z (or t on ``df`` = k - 2) value of the slope on the
    standard error; ``b`` the intercept, i.e. the limit estimate as SE -> 0,
    with its CI.
    """

    statistic: float
    df: float
    pvalue: float
    slope: float
    slope_se: float
    b: float
    b_ci_low: float
    b_ci_high: float
    tau2: float
    k: int
    method: str
    test: str
    level: float
    converged: bool
    messages: tuple[str, ...]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{f.name: getattr(self, f.name) for f in fields(self)
                              if f.name != "messages"} | {"messages": "; ".join(self.messages)}])

    def summary(self) -> str:
        verdict = ("suggests funnel-plot asymmetry (small-study effects)"
                   if self.pvalue < 0.05 else "shows no clear funnel-plot asymmetry")
        stat = fmt.stat("z", self.statistic) if self.test == "z" else fmt.stat("t", self.statistic, self.df)
        return (
            f"Egger's regression test {verdict} ({stat}, "
            f"{fmt.p_text(self.pvalue)}); the estimate for a hypothetical study with no sampling "
            f"error is {fmt.num(self.b)} ({100 * self.level:g}% CI {fmt.num(self.b_ci_low)} to "
            f"{fmt.num(self.b_ci_high)})."
        )


def egger_test(
    yi: Any,
    vi: Any,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    control: dict | None = None,
) -> EggerResult:
    """Egger's test as metafor ``regtest(rma(yi, vi, method, test), model="rma",
    predictor="sei")``: the meta-regression ``y_k = b + b1 sqrt(v_k) + u_k + e_k``
    fitted with the same tau2 estimator and test; the test of ``b1 = 0`` is the
    asymmetry test and ``b`` the limit estimate. Needs k >= 3.
    """
    method, test, level = _check_method_test(method, test, level)
    ctl = _make_control(control)
    y, v, _ = _check_effects(yi, vi)
    k = y.size
    if k < 3:
        raise ValueError(f"Egger's test needs at least 3 studies (k = {k}).")
    X = np.column_stack([np.ones(k), np.sqrt(v)])
    if np.linalg.matrix_rank(X) < 2:
        raise ValueError("Egger's test is undefined when all studies have the same standard error.")
    res = _fit_general(y, v, X, method, test, level, ci_tau2=False, ctl=ctl)
    return EggerResult(
        statistic=float(res["stat"][1]), df=res["df"], pvalue=float(res["pval"][1]),
        slope=float(res["beta"][1]), slope_se=float(res["se"][1]), b=float(res["beta"][0]),
        b_ci_low=float(res["ci_low"][0]), b_ci_high=float(res["ci_high"][0]),
        tau2=res["tau2"], k=k, method=method, test=test, level=level,
        converged=res["converged"],
        messages=tuple(res["messages"]),
    )
