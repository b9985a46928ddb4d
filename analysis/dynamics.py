"""Latent-centred dynamic panel models per study (``docs/METHODS.md`` §15).

* :func:`riclpm` — the random-intercept cross-lagged panel model (RI-CLPM;
  Hamaker, Kuiper & Grasman, 2015; Mulder & Hamaker, 2021) of alliance and
  symptoms.
* :func:`dpm` — the ML-SEM dynamic panel model (Allison, Williams &
  Moral-Benito, 2017) for one outcome; :func:`dpm_both` fits both directions.
* :func:`fit_studies` — either estimator for every study of a data set; one
  failing study is reported and the others still run.
* :func:`run` — the same with every choice declared once on
  :class:`DynamicOptions` (model, directions, time-invariant lags, session
  window, fit indices, standardized lags) → :class:`DynamicResult`.

Both are estimated by full-information ML with missing waves (lavaan
``missing = "ml"``) by the engine in :mod:`analysis.sem`; waves are the
session numbers (one wide column per session and variable). The RI-CLPM::

    A_it = μ_At + RI_Ai + a_it,   S_it = μ_St + RI_Si + s_it
    a_it = ar_alliance·a_i,t−1 + symptoms_to_alliance·s_i,t−1 + u_it     (t ≥ 2)
    s_it = ar_symptoms·s_i,t−1 + alliance_to_symptoms·a_i,t−1 + v_it

with free wave means, observed residual variances fixed at 0, free wave-1
(co)variances of (a, s), free (u, v) (co)variances per wave and free RI
(co)variances; the RIs are uncorrelated with the wave-1 components. With
``time_invariant=True`` the four lagged effects are equal over waves.

The DPM for outcome y and predictor x (waves 1..T)::

    y_it = α_t + ar·y_i,t−1 + cross·x_i,t−1 + η_i + ε_it      (t = 2..T)

with η_i (loadings 1) free to covary with y_i1 and every x_it used
(t = 1..T−1; the "fixed effect"), x predetermined (x_ij free to covary with
ε_it for every earlier wave t < j) and every covariance among y_1 and the
x's free — lavaan syntax as the R package ``dpm`` writes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import stats

from analysis import sem
from analysis.data import require_canonical
from analysis.lagged.options import DIRECTIONS, M_DYNAMIC, LagOptions
from analysis.options import Constraint, Declared, declared, option

__all__ = ["CROSS_LAGS", "ESTIMATORS", "DynamicOptions", "DynamicResult", "SEMResult", "dpm", "dpm_both", "dpm_limit",
           "dpm_wide", "fit_studies", "riclpm", "riclpm_model", "riclpm_wide", "run", "stage1_fits", "study_fit"]

CROSS_LAGS = DIRECTIONS
ESTIMATORS = ("RI-CLPM", "DPM")
_LAG = {o.name: o for o in declared(LagOptions)}
_OUTCOME = {"alliance_to_symptoms": "symptoms", "symptoms_to_alliance": "alliance"}
_PARAM_COLS = ["parameter", "estimate", "se", "z", "pvalue", "ci_low", "ci_high"]
MIN_PATIENTS = 50  # below: fitted with a warning
MIN_FIT_PATIENTS = 10  # below: not fitted (the R script applies the same rule)
_Z = stats.norm.ppf(0.975)


@dataclass(frozen=True)
class SEMResult:
    """One SEM fit of one study.

    ``params`` has the columns of :meth:`to_frame`; ``standardized`` maps each
    cross-lag (and autoregression) to ``(estimate, se)`` of its standardized
    value (lavaan ``std.all`` averaged over waves, delta-method SE).
    """

    model: str
    study: str
    params: pd.DataFrame
    loglik: float
    n: int
    waves: tuple
    n_patterns: int
    fit: sem.FitIndices | None
    standardized: dict
    converged: bool
    messages: tuple[str, ...] = ()
    lr_test: dict | None = None
    vcov: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Estimates are usable (the fit converged and every SE is finite)."""
        return bool(self.converged and len(self.params) and np.isfinite(self.params["se"]).all())

    def to_frame(self) -> pd.DataFrame:
        """One row per parameter: ``parameter, estimate, se, z, pvalue, ci_low, ci_high``."""
        return self.params.copy()

    def estimate(self, name: str) -> float:
        row = self.params.loc[self.params["parameter"] == name, "estimate"]
        return float(row.iloc[0]) if len(row) else float("nan")

    def se(self, name: str) -> float:
        row = self.params.loc[self.params["parameter"] == name, "se"]
        return float(row.iloc[0]) if len(row) else float("nan")

    def row(self, name: str) -> dict:
        r = self.params.loc[self.params["parameter"] == name]
        return r.iloc[0].to_dict() if len(r) else {}

    def _fit_attr(self, name):
        return getattr(self.fit, name) if self.fit is not None else float("nan")

    chisq = property(lambda self: self._fit_attr("chisq"))
    df = property(lambda self: self._fit_attr("df"))
    cfi = property(lambda self: self._fit_attr("cfi"))
    tli = property(lambda self: self._fit_attr("tli"))
    rmsea = property(lambda self: self._fit_attr("rmsea"))
    srmr = property(lambda self: self._fit_attr("srmr"))

    def fit_frame(self) -> pd.DataFrame:
        """Log-likelihood and fit indices as one row."""
        return pd.DataFrame([{
            "study": self.study, "model": self.model, "n": self.n, "waves": len(self.waves),
            "loglik": self.loglik, "chisq": self.chisq, "df": self.df, "cfi": self.cfi, "tli": self.tli,
            "rmsea": self.rmsea, "srmr": self.srmr,
        }])

    def summary(self) -> str:
        from analysis import formatting as F

        lines = [f"{self.model} — {self.study}: n = {self.n} patients, {len(self.waves)} waves, "
                 f"log-likelihood {F.num(self.loglik, 2)}"]
        if self.fit is not None:
            lines.append(f"χ²({self.df}) = {F.num(self.chisq, 2)}, CFI = {F.num(self.cfi, 3)}, "
                         f"TLI = {F.num(self.tli, 3)}, RMSEA = {F.num(self.rmsea, 3)}, SRMR = {F.num(self.srmr, 3)}")
        for name in ("ar_alliance", "ar_symptoms", *CROSS_LAGS):
            r = self.row(name)
            if r:
                lines.append(f"{name}: {F.estimate_ci(r['estimate'], r['ci_low'], r['ci_high'])}, "
                             f"{F.p_text(r['pvalue'])}")
        lines += list(self.messages)
        return "\n".join(lines)


# ------------------------------------------------------------------ data
def _wide(df: pd.DataFrame, sessions, variables=("alliance", "symptoms")):
    """(wide array n×(T·len(variables)), waves, messages) of one study."""
    msgs: list[str] = []
    all_sessions = np.sort(df["session"].unique())
    if sessions is None:
        waves = [int(s) for s in all_sessions]
    else:
        waves = sorted({int(s) for s in sessions})
    blocks = []
    for v in variables:
        w = df.pivot(index="patient", columns="session", values=v).reindex(columns=waves)
        blocks.append(w)
    empty = [s for s in waves if all(b[s].isna().all() for b in blocks)]
    if empty:
        msgs.append(f"session(s) {', '.join(str(s) for s in empty)} have no data and were left out; "
                    "the lag then spans the gap.")
        waves = [s for s in waves if s not in empty]
        blocks = [b[waves] for b in blocks]
    Y = np.hstack([b.to_numpy(dtype=float) for b in blocks]) if waves else np.empty((0, 0))
    return Y, tuple(waves), msgs


def _pairwise_moments(Y):
    frame = pd.DataFrame(Y)
    mu = frame.mean().to_numpy()
    C = frame.cov(min_periods=2).to_numpy()
    var = np.nanvar(Y, axis=0)
    var = np.where(np.isfinite(var) & (var > 0), var, 1.0)
    C = np.where(np.isfinite(C), C, 0.0)
    np.fill_diagonal(C, var)
    mu = np.where(np.isfinite(mu), mu, 0.0)
    return mu, C


def _nearest_pd(C, floor=0.05):
    w, V = np.linalg.eigh(0.5 * (C + C.T))
    w = np.maximum(w, floor * max(w.max(), 1e-8))
    return (V * w) @ V.T


# ------------------------------------------------------------------ RI-CLPM
def _riclpm_model(T: int, waves, time_invariant: bool):
    b = sem.Builder(4 * T + 2, observed=range(2 * T))
    A, S = (lambda t: t), (lambda t: T + t)
    ria, ris = 2 * T, 2 * T + 1
    wa, ws = (lambda t: 2 * T + 2 + t), (lambda t: 3 * T + 2 + t)
    for t in range(T):
        b.path(A(t), ria, value=1.0)
        b.path(A(t), wa(t), value=1.0)
        b.path(S(t), ris, value=1.0)
        b.path(S(t), ws(t), value=1.0)
    for t in range(1, T):
        sfx = "" if time_invariant else f"[{waves[t]}]"
        b.path(wa(t), wa(t - 1), "ar_alliance" + sfx)
        b.path(ws(t), ws(t - 1), "ar_symptoms" + sfx)
        b.path(ws(t), wa(t - 1), "alliance_to_symptoms" + sfx)
        b.path(wa(t), ws(t - 1), "symptoms_to_alliance" + sfx)
    b.cov(ria, ria, "var_ri_alliance")
    b.cov(ris, ris, "var_ri_symptoms")
    b.cov(ria, ris, "cov_ri")
    w1 = waves[0]
    b.cov(wa(0), wa(0), f"var_within_alliance[{w1}]")
    b.cov(ws(0), ws(0), f"var_within_symptoms[{w1}]")
    b.cov(wa(0), ws(0), f"cov_within[{w1}]")
    for t in range(1, T):
        b.cov(wa(t), wa(t), f"resvar_alliance[{waves[t]}]")
        b.cov(ws(t), ws(t), f"resvar_symptoms[{waves[t]}]")
        b.cov(wa(t), ws(t), f"rescov[{waves[t]}]")
    for t in range(T):
        b.mean(A(t), f"mean_alliance[{waves[t]}]")
    for t in range(T):
        b.mean(S(t), f"mean_symptoms[{waves[t]}]")
    return b.build()


def _riclpm_start(model: sem.RamModel, Y, T):
    mu, C = _pairwise_moments(Y)
    th = np.zeros(model.n_par)
    ix = {n: i for i, n in enumerate(model.names)}
    Ca, Cs, Cas = C[:T, :T], C[T:, T:], C[:T, T:]
    off = ~np.eye(T, dtype=bool)
    va, vs = np.diag(Ca).mean(), np.diag(Cs).mean()
    ri_a = float(np.clip(Ca[off].mean(), 0.05 * va, 0.8 * va))
    ri_s = float(np.clip(Cs[off].mean(), 0.05 * vs, 0.8 * vs))
    c_ri = float(np.clip(Cas[off].mean(), -0.5 * math.sqrt(ri_a * ri_s), 0.5 * math.sqrt(ri_a * ri_s)))
    for name, i in ix.items():
        if name == "var_ri_alliance":
            th[i] = ri_a
        elif name == "var_ri_symptoms":
            th[i] = ri_s
        elif name == "cov_ri":
            th[i] = c_ri
        elif name.startswith("mean_alliance"):
            th[i] = mu[len([n for n in model.names[:i] if n.startswith("mean_alliance")])]
        elif name.startswith("mean_symptoms"):
            th[i] = mu[T + len([n for n in model.names[:i] if n.startswith("mean_symptoms")])]
        elif name.startswith(("var_within_alliance", "resvar_alliance")):
            th[i] = max(va - ri_a, 0.2 * va)
        elif name.startswith(("var_within_symptoms", "resvar_symptoms")):
            th[i] = max(vs - ri_s, 0.2 * vs)
    return th


def _std_riclpm(model, thetas, T):
    """Standardized within lagged effects (lavaan std.all), averaged over waves, for a stack of θ."""
    A, K = sem.implied_batch(model, thetas)
    wa = 2 * T + 2 + np.arange(T)
    ws = 3 * T + 2 + np.arange(T)
    sd = np.sqrt(np.clip(np.diagonal(K, axis1=1, axis2=2), 1e-300, None))
    out = {}
    for name, to, frm in (("alliance_to_symptoms", ws, wa), ("symptoms_to_alliance", wa, ws),
                          ("ar_alliance", wa, wa), ("ar_symptoms", ws, ws)):
        out[name] = (A[:, to[1:], frm[:-1]] * sd[:, frm[:-1]] / sd[:, to[1:]]).mean(axis=1)
    return out


# ------------------------------------------------------------------ DPM
def _dpm_model(T: int, waves, outcome: str, predictor: str):
    b = sem.Builder(2 * T, observed=range(2 * T - 1))
    y = lambda t: t  # noqa: E731
    x = lambda t: T + t  # x_1..x_{T-1}: t = 0..T-2  # noqa: E731
    eta = 2 * T - 1
    ar, cross = f"ar_{outcome}", f"{predictor}_to_{outcome}"
    for t in range(1, T):
        b.path(y(t), y(t - 1), ar)
        b.path(y(t), x(t - 1), cross)
        b.path(y(t), eta, value=1.0)
    exo = [eta, y(0)] + [x(j) for j in range(T - 1)]
    label = {eta: "eta", y(0): f"{outcome}[{waves[0]}]"}
    label.update({x(j): f"{predictor}[{waves[j]}]" for j in range(T - 1)})
    for i, u in enumerate(exo):
        for v in exo[i:]:
            name = f"var_{label[u]}" if u == v else f"cov_{label[u]}_{label[v]}"
            b.cov(u, v, name)
    for t in range(1, T):
        b.cov(y(t), y(t), f"resvar_{outcome}[{waves[t]}]")
    for t in range(1, T - 1):  # ε_t with later x_j (j ≥ t + 1, j ≤ T − 1)
        for j in range(t + 1, T - 1 + 1):
            if j <= T - 2:
                b.cov(y(t), x(j), f"cov_e{outcome}[{waves[t]}]_{predictor}[{waves[j]}]")
    b.mean(y(0), f"mean_{outcome}[{waves[0]}]")
    for j in range(T - 1):
        b.mean(x(j), f"mean_{predictor}[{waves[j]}]")
    for t in range(1, T):
        b.mean(y(t), f"intercept_{outcome}[{waves[t]}]")
    return b.build()


def _dpm_start(model: sem.RamModel, Y, T, outcome):
    return _dpm_start_moments(model, *_pairwise_moments(Y), T)


def _dpm_start_moments(model: sem.RamModel, mu, C, T):
    th = np.zeros(model.n_par)
    vy = np.diag(C)[:T].mean()
    # exogenous block: y_1 and x's as observed, η independent at start
    exo_obs = [0] + list(range(T, 2 * T - 1))
    Cx = _nearest_pd(C[np.ix_(exo_obs, exo_obs)])
    pos = {0: 0}
    pos.update({T + j: 1 + j for j in range(T - 1)})
    eta = 2 * T - 1
    for (i, j, k) in model.s_free:
        if i == eta and j == eta:
            th[k] = 0.3 * vy
        elif i in pos and j in pos:
            th[k] = Cx[pos[i], pos[j]]
        elif i == j:
            th[k] = 0.7 * C[i, i]
    for (i, k) in model.m_free:
        th[k] = mu[i]
    return th


# ------------------------------------------------------------------ fitting
def _blank(model_name, study, waves, n, msgs):
    return SEMResult(model=model_name, study=study, params=pd.DataFrame(columns=_PARAM_COLS), loglik=float("nan"),
                     n=n, waves=tuple(waves), n_patterns=0, fit=None, standardized={}, converged=False,
                     messages=tuple(msgs))


def _params_frame(names, theta, vcov):
    se = np.sqrt(np.clip(np.diag(vcov), 0, None)) if vcov is not None else np.full(len(theta), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = theta / se
    return pd.DataFrame({
        "parameter": list(names), "estimate": theta, "se": se, "z": z,
        "pvalue": 2.0 * stats.norm.sf(np.abs(z)),
        "ci_low": theta - _Z * se, "ci_high": theta + _Z * se,
    })


def _delta_std(fun, theta, vcov):
    """Standardized values and delta-method SEs (central differences of ``fun``, which maps a stack
    of parameter vectors to ``{name: values}``, all evaluated in one batch)."""
    q = len(theta)
    if vcov is None:
        return {k: (float(v[0]), float("nan")) for k, v in fun(theta[None]).items()}
    h = 1e-6 * np.maximum(1.0, np.abs(theta))
    T = np.repeat(theta[None], 2 * q + 1, axis=0)
    T[1 + np.arange(q), np.arange(q)] += h
    T[1 + q + np.arange(q), np.arange(q)] -= h
    out = {}
    for k, v in fun(T).items():
        J = (v[1: q + 1] - v[q + 1:]) / (2 * h)
        out[k] = (float(v[0]), float(np.sqrt(max(J @ vcov @ J, 0.0))))
    return out


def _checks(model: sem.RamModel, theta, blocks) -> list[str]:
    msgs = []
    neg = [model.names[k] for k in model.variances if theta[k] < 0]
    if neg:
        msgs.append("Heywood case: negative variance estimate(s) for " + ", ".join(neg)
                    + "; the model is misspecified or the data too few for it — interpret with caution.")
    _, K, *_ = model.implied_all(theta)
    for label, idx in blocks:
        sub = K[np.ix_(idx, idx)]
        if np.linalg.eigvalsh(0.5 * (sub + sub.T)).min() <= 0:
            msgs.append(f"the estimated covariance matrix of {label} is not positive definite "
                        "(a correlation beyond ±1 or a negative variance).")
    return msgs


def _run(model, Y, start, *, model_name, study, waves, msgs, std_fun, blocks, with_fit=True):
    data = sem.PatternData.from_wide(Y)
    n = data.n
    msgs = list(msgs)
    if n < MIN_FIT_PATIENTS:
        return _blank(model_name, study, waves, n, msgs + [
            f"only {n} patient(s) with data: the SEM estimators need at least {MIN_FIT_PATIENTS}."]), None, data
    if n < MIN_PATIENTS:
        msgs.append(f"only {n} patients: SEM estimates are unstable below {MIN_PATIENTS} patients; "
                    "read them with caution.")
    if sem.loglik(model, data, start) == -np.inf:
        start = start.copy()
        for k in model.variances:
            start[k] = abs(start[k]) + 1.0
    fit = sem.fit(model, data, start)
    msgs += list(fit.messages)
    if not fit.converged:
        msgs.append("the maximum-likelihood estimation did not converge "
                    f"(largest gradient {fit.grad_norm:.2g}); the estimates are not reliable.")
    msgs += _checks(model, fit.theta, blocks)
    params = _params_frame(model.names, fit.theta, fit.vcov)
    findex = None
    if with_fit and np.isfinite(fit.loglik):
        findex = sem.fit_indices(model, data, fit.theta, fit.loglik)
    std = _delta_std(std_fun, fit.theta, fit.vcov) if std_fun is not None and np.isfinite(fit.loglik) else {}
    return SEMResult(model=model_name, study=study, params=params, loglik=fit.loglik, n=n, waves=tuple(waves),
                     n_patterns=data.n_patterns, fit=findex, standardized=std, converged=fit.converged,
                     messages=tuple(msgs), vcov=fit.vcov), fit, data


def _study_frame(df):
    d = require_canonical(df, columns=("alliance", "symptoms"), why="The SEM estimators need both series.")
    studies = d["study"].unique()
    if len(studies) > 1:
        raise ValueError("riclpm/dpm fit one study at a time; use dynamics.fit_studies for several.")
    return d, (str(studies[0]) if len(studies) else "")


def riclpm(df: pd.DataFrame, *, sessions=None, time_invariant: bool = True, fit_indices: bool = True,
           standardized: bool = True) -> SEMResult:
    """Random-intercept cross-lagged panel model of one study by FIML (module docstring; METHODS §15.1).

    ``sessions`` selects the waves (default: every session number in the data).
    With ``time_invariant=False`` the lagged effects are free per wave (named
    ``ar_alliance[s]`` etc., s the outcome's session) and ``lr_test`` holds the
    likelihood-ratio test against the time-invariant model. ``fit_indices`` /
    ``standardized``: skip the χ²-based indices or the standardized lags
    (faster, e.g. in simulations).
    """
    d, study = _study_frame(df)
    Y, waves, msgs = _wide(d, sessions)
    n_pat = int(d["patient"].nunique())
    return riclpm_wide(Y, waves, study=study, msgs=msgs, n_patients=n_pat, time_invariant=time_invariant,
                       fit_indices=fit_indices, standardized=standardized)


def riclpm_wide(Y, waves, *, study="", msgs=(), n_patients=None, time_invariant=True, fit_indices=True,
                standardized=True, start=None) -> SEMResult:
    """:func:`riclpm` on a wide matrix (patients × [alliance at ``waves``, symptoms at ``waves``], NaN =
    missing); ``start`` optionally gives starting values (e.g. the truth in a simulation)."""
    T = len(waves)
    msgs = list(msgs)
    name = "RI-CLPM" if time_invariant else "RI-CLPM (time-varying lags)"
    if T < 3:
        return _blank(name, study, waves, n_patients if n_patients is not None else len(Y),
                      msgs + [f"{T} wave(s) with data: the RI-CLPM needs at least 3 sessions."])
    model = _riclpm_model(T, waves, time_invariant)
    if start is None:
        start = _riclpm_start(model, Y, T)
    ria = [2 * T, 2 * T + 1]
    blocks = [("the random intercepts", ria)]
    blocks += [(f"the within components at session {waves[0]}", [2 * T + 2, 3 * T + 2])]
    std_fun = (lambda th: _std_riclpm(model, th, T)) if standardized else None
    res, fit, data = _run(model, Y, np.asarray(start, float), model_name=name, study=study, waves=waves,
                          msgs=msgs, std_fun=std_fun, blocks=blocks, with_fit=fit_indices)
    if not time_invariant and res.converged:
        inv = riclpm_wide(Y, waves, study=study, fit_indices=False, standardized=False)
        if np.isfinite(inv.loglik):
            chi = max(2.0 * (res.loglik - inv.loglik), 0.0)
            ddf = len(model.names) - len(_riclpm_model(T, waves, True).names)
            lr = {"chisq": chi, "df": ddf, "pvalue": float(stats.chi2.sf(chi, ddf)) if ddf > 0 else float("nan")}
            res = _replace(res, lr_test=lr)
    return res


def riclpm_model(waves, time_invariant: bool = True) -> sem.RamModel:
    """The RI-CLPM of :func:`riclpm` as a :class:`analysis.sem.RamModel` (parameter order of ``to_frame``)."""
    return _riclpm_model(len(waves), tuple(waves), time_invariant)


def _replace(res, **kw):
    from dataclasses import replace

    return replace(res, **kw)


def dpm(df: pd.DataFrame, *, outcome: str = "symptoms", sessions=None, fit_indices: bool = True,
        standardized: bool = True) -> SEMResult:
    """ML-SEM dynamic panel model for one outcome of one study (module docstring; METHODS §15.2).

    ``outcome="symptoms"`` estimates ``ar_symptoms`` and ``alliance_to_symptoms``;
    ``outcome="alliance"`` estimates ``ar_alliance`` and ``symptoms_to_alliance``.
    """
    if outcome not in ("alliance", "symptoms"):
        raise ValueError("outcome must be 'alliance' or 'symptoms'.")
    predictor = "alliance" if outcome == "symptoms" else "symptoms"
    d, study = _study_frame(df)
    Y, waves, msgs = _wide(d, sessions, variables=(outcome, predictor))
    return dpm_wide(Y, waves, outcome=outcome, study=study, msgs=msgs, n_patients=int(d["patient"].nunique()),
                    fit_indices=fit_indices, standardized=standardized)


def dpm_wide(Y, waves, *, outcome="symptoms", study="", msgs=(), n_patients=None, fit_indices=True,
             standardized=True, start=None) -> SEMResult:
    """:func:`dpm` on a wide matrix (patients × [outcome at ``waves``, predictor at ``waves``])."""
    predictor = "alliance" if outcome == "symptoms" else "symptoms"
    T = len(waves)
    msgs = list(msgs)
    name = f"DPM ({outcome})"
    if T < 3:
        return _blank(name, study, waves, n_patients if n_patients is not None else len(Y),
                      msgs + [f"{T} wave(s) with data: the dynamic panel model needs at least 3 sessions."])
    Y = Y[:, : 2 * T - 1]  # x at the last wave predicts nothing
    model = _dpm_model(T, waves, outcome, predictor)
    start = _dpm_start(model, Y, T, outcome) if start is None else np.asarray(start, float)
    cross = f"{predictor}_to_{outcome}"

    def std_fun(thetas):
        A, K = sem.implied_batch(model, thetas)
        sd = np.sqrt(np.clip(np.diagonal(K, axis1=1, axis2=2), 1e-300, None))
        t = np.arange(1, T)
        return {cross: (A[:, t, T + t - 1] * sd[:, T + t - 1] / sd[:, t]).mean(axis=1),
                f"ar_{outcome}": (A[:, t, t - 1] * sd[:, t - 1] / sd[:, t]).mean(axis=1)}

    exo = [2 * T - 1, 0] + list(range(T, 2 * T - 1))
    res, _, _ = _run(model, Y, start, model_name=name, study=study, waves=waves, msgs=msgs,
                     std_fun=std_fun if standardized else None,
                     blocks=[("η, the first outcome and the predictors", exo)], with_fit=fit_indices)
    return res


def dpm_limit(mu, Sigma, waves, *, outcome: str = "symptoms") -> dict:
    """The DPM estimates an unlimited sample from a normal distribution with these moments would give.

    ``mu``, ``Sigma``: mean vector and covariance matrix of the wide data in :func:`riclpm_wide`'s column
    order (alliance at ``waves``, then symptoms at ``waves``), e.g. a fitted RI-CLPM's implied moments. The
    DPM is fitted by ML to the moments themselves (its large-sample, "pseudo-true" values): under an
    RI-CLPM they equal the RI-CLPM's ``ar_*`` and cross-lag only when the within-session innovation
    covariances (``rescov``) are 0, because the DPM assumes a session's predictor uncorrelated with the
    same session's outcome innovation (METHODS §15.2). Returns ``{parameter: value}`` (NaN entries when
    the fit fails)."""
    if outcome not in ("alliance", "symptoms"):
        raise ValueError("outcome must be 'alliance' or 'symptoms'.")
    predictor = "alliance" if outcome == "symptoms" else "symptoms"
    T = len(waves)
    order = np.r_[T:2 * T, 0:T - 1] if outcome == "symptoms" else np.r_[0:2 * T - 1]
    m, S = np.asarray(mu, float)[order], np.asarray(Sigma, float)[np.ix_(order, order)]
    model = _dpm_model(T, tuple(waves), outcome, predictor)
    n = 1e6  # any n: the estimate does not depend on it
    data = sem.PatternData(p=len(order), n=int(n), mask=np.ones((1, len(order)), dtype=bool),
                           counts=np.array([n]), mean=m[None], cov=S[None])
    fit = sem.fit(model, data, _dpm_start_moments(model, m, S, T), se=False)
    names = (f"ar_{outcome}", f"{predictor}_to_{outcome}")
    ok = fit.converged and np.isfinite(fit.loglik)
    return {k: float(fit.theta[model.names.index(k)]) if ok else float("nan") for k in names}


def dpm_both(df: pd.DataFrame, *, sessions=None, fit_indices: bool = True) -> dict[str, SEMResult]:
    """Both DPM directions: ``{"alliance_to_symptoms": dpm(symptoms), "symptoms_to_alliance": dpm(alliance)}``."""
    return {"alliance_to_symptoms": dpm(df, outcome="symptoms", sessions=sessions, fit_indices=fit_indices),
            "symptoms_to_alliance": dpm(df, outcome="alliance", sessions=sessions, fit_indices=fit_indices)}


def fit_studies(df: pd.DataFrame, estimator: str = "RI-CLPM", *, sessions=None, fit_indices: bool = True,
                ) -> dict[str, dict[str, SEMResult]]:
    """Every study of ``df`` by ``estimator`` ("RI-CLPM" or "DPM").

    Returns ``{study: {direction: SEMResult}}`` (for the RI-CLPM both
    directions share one result). A study whose data cannot be fitted gets a
    result with ``ok = False`` and a message; the others still run.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}.")
    d = require_canonical(df, columns=("alliance", "symptoms"), why="The SEM estimators need both series.")
    return _fit_each(d, estimator, sessions=sessions, fit_indices=fit_indices)


# ------------------------------------------------------------------ declared options and the one entry
@dataclass(frozen=True)
class DynamicOptions(Declared):
    """The choices of the latent-centred models (METHODS §15), declared once (:mod:`analysis.options`).

    ``directions`` and ``sessions`` are the Lagged options' declarations (not in links of their own): the
    RI-CLPM fits both cross-lags in one model and reports the chosen ones; the DPM fits one model per
    direction. ``sessions`` is the analysis window (first, last): the waves are the sessions in it.

    >>> DynamicOptions(estimator="DPM", directions=("symptoms_to_alliance",)).directions
    ('symptoms_to_alliance',)
    >>> DynamicOptions(estimator="DPM", time_invariant=False)
    Traceback (most recent call last):
    ...
    ValueError: Lagged effects free per session need the RI-CLPM (the DPM's are equal over sessions).
    """

    estimator: str = option(
        "choice", "RI-CLPM", choices=ESTIMATORS, label="Model", widget="radio", methods=M_DYNAMIC,
        labels={"RI-CLPM": "RI-CLPM (latent-centred SEM, FIML)", "DPM": "Dynamic panel model (ML-SEM, FIML)"},
        help="The random-intercept cross-lagged panel model (both directions in one model) or the ML-SEM "
             "dynamic panel model (one model per direction, the predictor predetermined).")
    directions: tuple = _LAG["directions"].field(
        url=None, methods=M_DYNAMIC,
        help="Which cross-lags to report: alliance at session t → symptoms at t + 1, and symptoms at t → "
             "alliance at t + 1 (the RI-CLPM estimates both in one model; the DPM fits one model per direction).")
    time_invariant: bool = option(
        "flag", True, label="Lagged effects equal over sessions", methods=M_DYNAMIC,
        help="RI-CLPM: the autoregressions and cross-lags are one value for every pair of sessions (default). "
             "Off: free per session, with the likelihood-ratio test of equality.")
    sessions: tuple | None = _LAG["sessions"].field(url=None)
    fit_indices: bool = option(
        "flag", True, label="Fit indices (χ², CFI, TLI, RMSEA, SRMR)", methods=M_DYNAMIC,
        help="Fits the saturated and baseline models for the χ²-based indices, as lavaan; off is faster.")
    standardized: bool = option(
        "flag", True, label="Standardized lagged effects", methods=M_DYNAMIC,
        help="lavaan's std.all of each lagged effect, averaged over sessions, with a delta-method SE; off is "
             "faster.")

    CONSTRAINTS: ClassVar[tuple[Constraint, ...]] = (
        Constraint(("time_invariant", "estimator"), lambda o: not o.time_invariant and o.estimator == "DPM",
                   "Lagged effects free per session need the RI-CLPM (the DPM's are equal over sessions)."),)


@dataclass(frozen=True)
class DynamicResult:
    """The fits of :func:`run`: ``fits`` maps each study to ``{direction: SEMResult}`` (with the RI-CLPM
    the chosen directions share one result); a study that could not be fitted has results with
    ``ok = False`` and its reason in their messages."""

    options: DynamicOptions
    fits: dict

    def results(self) -> list[SEMResult]:
        """Each distinct fit once, in study order."""
        out: list[SEMResult] = []
        for per in self.fits.values():
            out += [r for r in per.values() if not any(r is o for o in out)]
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per study, direction and parameter of its model: ``study, direction, model`` and the
        columns of :meth:`SEMResult.to_frame`."""
        rows = [r.to_frame().assign(study=study, direction=d, model=r.model)
                for study, per in self.fits.items() for d, r in per.items()]
        cols = ["study", "direction", "model", *_PARAM_COLS]
        return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)

    def summary(self) -> str:
        return "\n\n".join(r.summary() for r in self.results())


def _fit_each(d: pd.DataFrame, estimator: str, directions=CROSS_LAGS, **kw) -> dict:
    """``{study: {direction: SEMResult}}`` by ``estimator``; ``kw``: the keywords of :func:`riclpm` /
    :func:`dpm` (``time_invariant`` only for the RI-CLPM)."""
    out: dict[str, dict[str, SEMResult]] = {}
    for study, sub in d.groupby("study", sort=False):
        try:
            if estimator == "RI-CLPM":
                r = riclpm(sub, **kw)
                out[str(study)] = {k: r for k in directions}
            else:
                out[str(study)] = {k: dpm(sub, outcome=_OUTCOME[k], **kw) for k in directions}
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
            blank = _blank(estimator, str(study), (), int(sub["patient"].nunique()),
                           [f"could not be fitted: {exc}"])
            out[str(study)] = {k: blank for k in directions}
    return out


def run(df: pd.DataFrame, options: DynamicOptions | None = None) -> DynamicResult:
    """Every study of ``df`` by the latent-centred model of ``options`` (METHODS §15; one failing study is
    reported and the others still run).

    >>> from analysis.simulate import simulate_study
    >>> res = run(simulate_study(60, range(1, 6), seed=4).data, DynamicOptions(fit_indices=False))
    >>> res.fits["Study 1"]["alliance_to_symptoms"].model, res.results()[0].ok
    ('RI-CLPM', True)
    """
    o = options or DynamicOptions()
    d = require_canonical(df, columns=("alliance", "symptoms"), why="The SEM estimators need both series.")
    if o.sessions is not None:
        d = d[(d["session"] >= o.sessions[0]) & (d["session"] <= o.sessions[1])]
    kw = {"fit_indices": o.fit_indices, "standardized": o.standardized}
    if o.estimator == "RI-CLPM":
        kw["time_invariant"] = o.time_invariant
    return DynamicResult(options=o, fits=_fit_each(d, o.estimator, o.directions, **kw))


# ------------------------------------------------------------------ stage 1 of the two-stage pipeline
STAGE1 = {"riclpm": "RI-CLPM", "dpm": "DPM"}


def _n_pairs(frame: pd.DataFrame, direction: str) -> int:
    x, y = ("alliance", "symptoms") if direction == "alliance_to_symptoms" else ("symptoms", "alliance")
    f = frame.sort_values(["patient", "session"])
    nxt = f.groupby("patient")[y].shift(-1)
    gap = f.groupby("patient")["session"].shift(-1) - f["session"]
    return int((f[x].notna() & nxt.notna() & (gap == 1)).sum())


def study_fit(res: SEMResult, direction: str, options, n_pairs: int = 0):
    """A :class:`analysis.lagged.StudyFit` from one SEM fit: terms ``within`` (the cross-lag of
    ``direction``), ``prior_within`` (the outcome's autoregression) and ``within_std`` (the cross-lag
    standardized on the within-person components, lavaan ``std.all`` averaged over waves, delta-method
    SE), Wald z. In the pipeline the data are standardized per study (§2), so ``within`` is on the scale
    of the lagged models' ``within``; ``within_std`` is pooled by the same stage 2
    (:attr:`analysis.twostage.TwoStageResult.pooled_terms`)."""
    from analysis.lagged import StudyFit, coef_data, failed_fit

    outcome = "symptoms" if direction == "alliance_to_symptoms" else "alliance"
    label = f"{res.model.split(' (')[0]} (FIML)"
    if not res.ok:
        reason = res.messages[-1] if res.messages else "the model could not be fitted."
        f = failed_fit(res.study, direction, options, f"{label}: {reason}", n_patients=res.n, n_pairs=n_pairs)
        return _replace(f, estimator=label, effect="within-patient")
    terms = ("within", "prior_within", "within_std")
    std = res.standardized.get(direction, (float("nan"), float("nan")))
    est = [res.estimate(direction), res.estimate(f"ar_{outcome}"), std[0]]
    se = [res.se(direction), res.se(f"ar_{outcome}"), std[1]]
    return StudyFit(
        study=res.study, direction=direction, options=options, effect="within-patient", estimator=label,
        coef_data=coef_data(terms, est, se), n_patients=res.n, n_pairs=n_pairs, converged=res.converged,
        status="warning" if res.messages else "ok", messages=tuple(res.messages),
    )


def stage1_fits(data, options, stage1: str) -> dict:
    """Stage 1 by a SEM estimator for every study of ``data`` (an :class:`analysis.lagged.StudyData`:
    the same window and per-study standardization as the lagged models) → ``{direction: [StudyFit]}``.

    ``stage1`` is ``"riclpm"`` (one RI-CLPM per study serves both directions) or ``"dpm"`` (one
    dynamic panel model per direction). Waves are the session numbers (lag 1).
    """
    if stage1 not in STAGE1:
        raise ValueError(f"stage1 must be one of {', '.join(STAGE1)}; got {stage1!r}.")
    frame = pd.DataFrame({
        "study": np.asarray(data.study_labels, dtype=object)[data.scode] if data.n else [],
        "patient": data.g, "session": data.sess,
        "alliance": data.z["alliance"], "symptoms": data.z["symptoms"],
    })
    out: dict = {d: [] for d in options.directions}
    extra = []
    if options.lag != 1:
        extra.append(f"{STAGE1[stage1]} models lag-1 effects between consecutive sessions; "
                     f"the lag of {options.lag} applies to the mixed models only.")
    from analysis.lagged import failed_fit

    for k, label in enumerate(data.study_labels):
        sub = frame[data.scode == k]
        problems = list(getattr(data, "problems", {}).get(label, []))
        shared = None
        for direction in options.directions:
            npairs = _n_pairs(sub, direction)
            if problems:
                out[direction].append(failed_fit(label, direction, options, problems[0],
                                                 int(sub["patient"].nunique())))
                continue
            try:
                if stage1 == "riclpm":
                    shared = shared or riclpm(sub, fit_indices=False)
                    res = shared
                else:
                    res = dpm(sub, outcome="symptoms" if direction == "alliance_to_symptoms" else "alliance",
                              fit_indices=False)
            except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
                res = _blank(STAGE1[stage1], label, (), int(sub["patient"].nunique()), [str(exc)])
            if extra:
                res = _replace(res, messages=tuple(res.messages) + tuple(extra))
            out[direction].append(study_fit(res, direction, options, npairs))
    return out


COMPARISON_LABELS = {"lmm": "Hybrid LMM", "riclpm": "RI-CLPM", "dpm": "DPM"}
