"""Dyadic congruence models of patient (P) and therapist (T) alliance → symptoms (METHODS §8, "Congruence").

Alternatives to the convergence score that do not depend on whether the two rating lines cross.

**Response surface analysis** (:func:`response_surface`; Edwards & Parry, 1993; Shanock et al., 2010).
One row per dyad (one study): P̄_j and T̄_j are the dyad's mean ratings over its joint sessions, centred
at one common value c = (mean of P̄ + mean of T̄)/2, so the line of congruence P = T stays P = T
(both ratings must be on the same scale). The outcome Z_j is the dyad's last observed symptom score;
with ``control_initial`` its first observed score (centred) is a covariate. OLS::

    Z = b0 + b1·P + b2·T + b3·P² + b4·P·T + b5·T² [+ b6·initial] + e

Surface parameters (linear combinations of b with their OLS covariance, t tests on n − k df):
a1 = b1 + b2 (slope along the line of congruence P = T: does the outcome depend on the shared level?),
a2 = b3 + b4 + b5 (curvature along it), a3 = b1 − b2 (slope along the line of incongruence P = −T:
is it better when the patient rates higher than the therapist or the reverse?), a4 = b3 − b4 + b5
(curvature along it: a negative a4 means the outcome is best at agreement; for symptoms, where
lower is better, a positive a4 does).

**Actor–partner interdependence model** (:func:`apim`; Kenny, Kashy & Cook, 2006), session rows of
one study, the patient's symptoms as outcome: with lag L, both ratings split into the dyad's mean
and the session's deviation from it (over the dyad's observed ratings)::

    Y_j,t+L = γ0 + aW·P^w_jt + pW·T^w_jt + aB·P^b_j + pB·T^b_j [+ c·Y_jt] + u_j + e_j,t+L

u_j ~ N(0, τ²), REML, Satterthwaite df (:func:`analysis.lmm.fit_lmm`). The actor effects (a) are the
patient's own rating, the partner effects (p) the therapist's rating of the same dyad; W = within
(session-to-session), B = between dyads (P^b, T^b centred at the means over dyads). k = p/a
(Kenny & Ledermann, 2010) tells whether the partner's rating matters as much as the patient's own
(k ≈ 1) or not at all (k ≈ 0). ``control_prior`` adds the symptom score at t (raw).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.convergence._common import _check
from analysis.data import one_study
from analysis.formatting import estimate_ci, num, p_text, stat
from analysis.lmm import fit_lmm
from analysis.mixed import fit_ols
from analysis.options import Declared, option

__all__ = ["APIMResult", "CongruenceOptions", "ResponseSurface", "apim", "response_surface", "run"]

M8 = "8-alliance-convergence-convergence-paper"


@dataclass(frozen=True)
class CongruenceOptions(Declared):
    """The options of :func:`response_surface` and :func:`apim` (declared once: :mod:`analysis.options`).

    >>> CongruenceOptions().control_initial
    True
    >>> CongruenceOptions(control_initial="maybe")
    Traceback (most recent call last):
    ...
    ValueError: control_initial must be True or False; got 'maybe'.
    """

    control_initial: bool = option(
        "flag", True, label="Response surface: control for initial symptoms", url="rsa_initial", methods=M8,
        help="Enter each dyad's first symptom score as a covariate, so the surface describes the last score "
             "given where the dyad started (dyads with a single symptom score are left out).")
    lag: int = option(
        "int", 1, lo=1, hi=3, label="APIM: symptoms … sessions later", url="apim_lag", methods=M8,
        help="The outcome is the patient's symptom score this many sessions after the alliance ratings.")
    control_prior: bool = option(
        "flag", True, label="APIM: control for symptoms at t", url="apim_prior", methods=M8,
        help="Enter the symptom score at the session of the ratings as a covariate.")

_RSA_TERMS = ("intercept", "P", "T", "P^2", "P×T", "T^2")
_SURFACE = {  # parameter: (weights on b1..b5, meaning)
    "a1": ((1, 1, 0, 0, 0), "slope along the line of congruence (P = T)"),
    "a2": ((0, 0, 1, 1, 1), "curvature along the line of congruence"),
    "a3": ((1, -1, 0, 0, 0), "slope along the line of incongruence (P = −T)"),
    "a4": ((0, 0, 1, -1, 1), "curvature along the line of incongruence"),
}
_COLS = ["term", "estimate", "se", "df", "statistic", "pvalue", "ci_low", "ci_high"]


def _rows(names, est, se, df):
    est, se, df = np.asarray(est, float), np.asarray(se, float), np.broadcast_to(np.asarray(df, float), len(est))
    tval = est / se
    crit = stats.t.ppf(0.975, df)
    return pd.DataFrame({"term": pd.array(list(names), dtype="string"), "estimate": est, "se": se, "df": df,
                         "statistic": tval, "pvalue": 2 * stats.t.sf(np.abs(tval), df),
                         "ci_low": est - crit * se, "ci_high": est + crit * se}, columns=_COLS)


@dataclass(frozen=True, eq=False)
class ResponseSurface:
    """Polynomial regression of one study's dyads (module docstring). ``coefficients``: b0–b5 (and the
    covariate); ``surface``: a1–a4 with their tests; ``data``: the dyad rows used (patient, P, T — centred —,
    outcome[, initial]); ``center``: the common centring value c."""

    study: str
    coefficients: pd.DataFrame
    surface: pd.DataFrame
    n_dyads: int
    r2: float
    center: float
    data: pd.DataFrame
    messages: tuple = ()

    def to_frame(self) -> pd.DataFrame:
        return pd.concat([self.coefficients.assign(part="polynomial"), self.surface.assign(part="surface")],
                         ignore_index=True)

    def summary(self) -> str:
        s = self.surface.set_index("term")
        parts = [f"{t} = {estimate_ci(s.at[t, 'estimate'], s.at[t, 'ci_low'], s.at[t, 'ci_high'], 2)} "
                 f"({stat('t', s.at[t, 'statistic'], s.at[t, 'df'])}, {p_text(s.at[t, 'pvalue'])})"
                 for t in ("a1", "a2", "a3", "a4")]
        return (f"Response surface of {self.n_dyads} dyads (R² = {num(self.r2, 2)}): " + "; ".join(parts) + ".")


def _dyad_means(d: pd.DataFrame) -> pd.DataFrame:
    """Per dyad: mean P and T over the joint sessions, first and last observed symptom score."""
    joint = d[d["alliance"].notna() & d["therapist_alliance"].notna()]
    out = joint.groupby("patient", sort=True).agg(P=("alliance", "mean"), T=("therapist_alliance", "mean"),
                                                  n_joint=("session", "size"))
    if "symptoms" in d.columns:
        s = d[d["symptoms"].notna()].sort_values(["patient", "session"], kind="stable").groupby("patient")
        out = out.join(s["symptoms"].last().rename("outcome")).join(s["symptoms"].first().rename("initial"))
        out = out.join(s["session"].last().rename("outcome_session")).join(s["session"].first().rename("initial_session"))
    return out.reset_index()


def _one_study(df: pd.DataFrame, study) -> tuple[str, pd.DataFrame]:
    d = _check(df, ("alliance", "therapist_alliance", "symptoms"))
    return one_study(d, study)


def run(df: pd.DataFrame, options: CongruenceOptions | None = None, study=None) -> tuple[ResponseSurface, APIMResult]:
    """:func:`response_surface` and :func:`apim` of one study with their declared options.

    >>> from analysis.simulate import simulate_dyads
    >>> rsa, ap = run(simulate_dyads(40, seed=1).data, CongruenceOptions(lag=2))
    >>> ap.lag, type(rsa).__name__
    (2, 'ResponseSurface')
    """
    o = options or CongruenceOptions()
    return (response_surface(df, study, control_initial=o.control_initial),
            apim(df, study, lag=o.lag, control_prior=o.control_prior))


def response_surface(df: pd.DataFrame, study=None, *, control_initial: bool = True) -> ResponseSurface:
    """Polynomial regression and response-surface parameters a1–a4 of one study (module docstring)."""
    study, d = _one_study(df, study)
    m = _dyad_means(d)
    msgs = []
    m = m[m["outcome"].notna() & (m["n_joint"] >= 1)]
    if control_initial:  # a dyad with a single symptom score has no outcome beyond its initial score
        m = m[m["outcome_session"] > m["initial_session"]]
    k = 6 + int(control_initial)
    if len(m) <= k + 2:
        raise ValueError(f"Only {len(m)} dyads with both ratings and an outcome: the response surface needs "
                         f"more than {k + 2}.")
    c = float((m["P"].mean() + m["T"].mean()) / 2.0)
    P, T = m["P"].to_numpy() - c, m["T"].to_numpy() - c
    cols = [np.ones(len(m)), P, T, P * P, P * T, T * T]
    names = list(_RSA_TERMS)
    if control_initial:
        cols.append(m["initial"].to_numpy() - m["initial"].mean())
        names.append("initial symptoms")
    X = np.column_stack(cols)
    y = m["outcome"].to_numpy(float)
    fit = fit_ols(X, y, names=names)
    coef = _rows(names, fit.beta, fit.se, fit.df)
    W = np.zeros((4, X.shape[1]))
    for i, (w, _) in enumerate(_SURFACE.values()):
        W[i, 1:6] = w
    est = W @ fit.beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", W, fit.cov_beta, W))
    surf = _rows(tuple(_SURFACE), est, se, fit.df)
    surf["meaning"] = pd.array([v[1] for v in _SURFACE.values()], dtype="string")
    r2 = 1.0 - float(np.sum((y - X @ fit.beta) ** 2)) / float(np.sum((y - y.mean()) ** 2))
    data = pd.DataFrame({"patient": m["patient"].to_numpy(), "P": P, "T": T, "outcome": y})
    if control_initial:
        data["initial"] = m["initial"].to_numpy()
    msgs.append(f"P and T centred at {num(c, 3)} (the mean of the two raters' dyad means): both ratings must be "
                "on the same scale for the lines of congruence and incongruence to mean anything.")
    return ResponseSurface(study=study, coefficients=coef, surface=surf, n_dyads=len(m), r2=r2, center=c,
                           data=data, messages=tuple(msgs))


@dataclass(frozen=True, eq=False)
class APIMResult:
    """Actor–partner model of one study (module docstring). ``fixed``: terms intercept, actor_within,
    partner_within, actor_between, partner_between[, prior_symptoms] with Satterthwaite t tests;
    ``k``: partner/actor ratio within and between; ``tau2``/``sigma2`` the variance components."""

    study: str
    fixed: pd.DataFrame
    k: dict
    tau2: float
    sigma2: float
    n_dyads: int
    n_obs: int
    lag: int
    singular: bool
    messages: tuple = ()

    def to_frame(self) -> pd.DataFrame:
        return self.fixed.copy()

    def summary(self) -> str:
        f = self.fixed.set_index("term")
        parts = [f"{lab} {estimate_ci(f.at[t, 'estimate'], f.at[t, 'ci_low'], f.at[t, 'ci_high'], 3)} "
                 f"({p_text(f.at[t, 'pvalue'])})"
                 for t, lab in (("actor_within", "actor (patient) within"), ("partner_within", "partner (therapist) "
                                "within"), ("actor_between", "actor between"), ("partner_between", "partner between"))]
        return f"APIM, {self.n_dyads} dyads, {self.n_obs} session rows: " + "; ".join(parts) + "."


def apim(df: pd.DataFrame, study=None, *, lag: int = 1, control_prior: bool = True) -> APIMResult:
    """Actor–partner interdependence model of patient and therapist alliance → the patient's symptoms at
    t + ``lag`` (module docstring), one study, REML with Satterthwaite df."""
    if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or lag < 1:
        raise ValueError(f"lag must be a whole number ≥ 1; got {lag!r}.")
    study, d = _one_study(df, study)
    d = d.sort_values(["patient", "session"], kind="stable").reset_index(drop=True)
    g, labels = pd.factorize(d["patient"], sort=True)
    P, T, Y = (d[c].to_numpy(float) for c in ("alliance", "therapist_alliance", "symptoms"))
    sess = d["session"].to_numpy(np.int64)

    def parts(v):
        o = np.isfinite(v)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.bincount(g[o], weights=v[o], minlength=len(labels)) / np.bincount(g[o], minlength=len(labels))
        return v - mean[g], (mean - np.nanmean(mean))[g]

    Pw, Pb = parts(P)
    Tw, Tb = parts(T)
    key = g.astype(np.int64) * (int(sess.max()) + lag + 1) + sess
    pos = np.searchsorted(key, key + lag)
    pc = np.minimum(pos, len(key) - 1)
    lead = np.where((pos < len(key)) & (key[pc] == key + lag), Y[pc], np.nan)
    names = ["intercept", "actor_within", "partner_within", "actor_between", "partner_between"]
    cols = [np.ones(len(d)), Pw, Tw, Pb, Tb]
    if control_prior:
        names.append("prior_symptoms")
        cols.append(Y)
    X = np.column_stack(cols)
    ok = np.isfinite(lead) & np.isfinite(X).all(axis=1)
    if len(np.unique(g[ok])) < 3:
        raise ValueError("Fewer than 3 dyads with both ratings at a session and the symptom score "
                         f"{lag} session(s) later.")
    fit = fit_lmm(lead[ok], X[ok], np.ones((int(ok.sum()), 1)), np.asarray(labels.astype(str))[g[ok]],
                  coef_names=tuple(names), re_names=("(Intercept)",))
    fixed = _rows(names, fit.beta, fit.se, fit.df)
    b = dict(zip(names, fit.beta))
    k = {"within": b["partner_within"] / b["actor_within"], "between": b["partner_between"] / b["actor_between"]}
    return APIMResult(study=study, fixed=fixed, k=k, tau2=float(fit.psi[0, 0]), sigma2=float(fit.sigma2),
                      n_dyads=int(fit.n_groups), n_obs=int(fit.n_obs), lag=int(lag), singular=bool(fit.singular),
                      messages=tuple(fit.messages))
