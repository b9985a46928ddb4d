"""Stage-2 constants, option declarations, metafor's control settings, input checks and the shared linear algebra
(METHODS §6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from scipy.linalg import solve_triangular

from ..options import Declared, Option

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


