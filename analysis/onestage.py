"""One-stage IPD meta-analysis of the lagged within effect (METHODS §6b).

Per direction, every usable study's model rows (the stage-1 rows of
:func:`analysis.lagged.model_rows`: the same centering, pairing, window and
standardization as the two-stage analysis) are fitted at once::

    y_ist = α_s + β_W·xʷ_it + Σ_m γ_s,m·n_m,it + b_s·xʷ_it + u_i + e_it
    b_s ~ N(0, τ²),   u_i ~ N(0, σ_u²) (patients nested in studies),   e ~ N(0, σ²)

* study-specific intercepts ``α_s`` and study-specific nuisance terms
  ``n_m`` (the between part of X, the within and between parts of the prior
  outcome, the time trend, covariate main effects) — nothing of the study-level
  differences leaks into β_W (Riley et al., BMJ 2020; Legha et al., 2018);
* one common within effect ``β_W`` with a random slope across studies
  (``τ`` = SD of the study slopes, the one-stage counterpart of the two-stage
  τ); patient random intercepts (and, with ``time_trend="fixed_random"``, their
  correlated time slopes) nested in study;
* REML by :func:`analysis.lmm.fit_lmm` (the higher level's random effect
  multiplies xʷ), the test of β_W with lmerTest's Satterthwaite df;
  ``lme4::lmer(y ~ 0 + study + study:(nuisance) + within + (1 | study:patient) + (0 + within | study))``.

Reported: β_W with its t(df) CI (Satterthwaite df, stated), τ with a
profile-likelihood CI (:func:`analysis.lmm.outer_sd_profile_ci` on the
ML refit, exactly as lme4's ``confint(method = "profile")``, which refits a
REML fit by ML before profiling), and the prediction interval for the within
effect of a new study ``β_W ± t_df·√(SE² + τ²)`` (df as the CI's, the rule of
the two-stage interval: metafor's ``predict``).

Interactions (``cross_level``, ``outcome_moderator``, covariates) are split
("deft", Fisher et al., BMJ 2017): for a patient-level moderator m,

    within-study part   xʷ·(m_i − m̄_s)       m̄_s the mean of m over the study's patients
    across-study part   xʷ·(m̄_s − mean_s m̄_s)

both with common coefficients. Only the within-study part is free of
ecological (aggregation) bias; it is what the two-stage pooling of stage-1
interactions estimates. A covariate's across-study part uses the covariate on
its own scale (÷ the pooled within-study SD of the patients when
``standardize``); for the between parts of X and Y, which per-study
standardization centres at about 0 in every study, it is not estimable then and
is reported as such.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from threadpoolctl import threadpool_limits

from analysis import formatting as fmt
from analysis import lmm
from analysis.lagged import (
    _VARS,
    MIN_PATIENTS,
    LagOptions,
    StudyData,
    _check_direction,
    effect_label,
    model_rows,
    prepare_studies,
)
from analysis.options import Declared, option

__all__ = ["DF_METHOD", "OneStageDirection", "OneStageOptions", "OneStageResult", "fit_direction", "one_stage", "run"]

DF_METHOD = "Satterthwaite"
M6B = "6b-one-stage-ipd-meta-analysis-beside-the-two-stage"
_INTERACTION_MODERATOR = {"interaction": "between", "interaction_outcome": "prior_between"}
_NOT_NUISANCE = {"intercept", "within", "interaction", "interaction_outcome"}
_INTERACTION_COLS = ["term", "moderator", "part", "estimate", "se", "df", "ci_low", "ci_high", "pvalue", "note"]


@dataclass(frozen=True)
class OneStageOptions(Declared):
    """The one-stage model's own choices (METHODS §6b), declared once (:mod:`analysis.options`); the model
    rows (centering, pairing, window, standardization, directions) are the Lagged options'.

    >>> OneStageOptions(level=0.9).level
    0.9
    >>> OneStageOptions(level=95)
    Traceback (most recent call last):
    ...
    ValueError: level must be a number from 0.5 to 0.99; got 95.
    """

    level: float = option(
        "float", 0.95, lo=0.5, hi=0.99, label="Confidence level", methods=M6B,
        help="Of the CI of the within effect, the profile CI of τ and the prediction interval.")
    profile: bool = option(
        "flag", True, label="Profile-likelihood CI of τ", methods=M6B,
        help="As lme4's confint(method = \"profile\"), on the ML refit; off: τ without a CI (faster).")


def run(df: pd.DataFrame | StudyData, options: OneStageOptions | None = None,
        lag_options: LagOptions | None = None) -> OneStageResult:
    """:func:`one_stage` with its declared options; the model rows (window, centering, directions, …) come from
    ``lag_options`` (the Lagged options).

    >>> from analysis.simulate import simulate_collection
    >>> res = run(simulate_collection(k=3, n_patients=20, seed=3).data, OneStageOptions(profile=False))
    >>> sorted(res.fits), res.fits["alliance_to_symptoms"].k
    (['alliance_to_symptoms', 'symptoms_to_alliance'], 3)
    """
    o = options or OneStageOptions()
    return one_stage(df, lag_options, level=o.level, profile=o.profile)


@dataclass(frozen=True, eq=False)
class OneStageDirection:
    """The one-stage fit of one direction (module docstring; METHODS §6b).

    ``estimate``/``se``/``df``/``ci_low``/``ci_high``/``pvalue``: the pooled
    within effect β_W (t test with ``df`` Satterthwaite df). ``tau`` is the SD
    of the study slopes with its profile-likelihood CI; ``pi_low``/``pi_high``
    the prediction interval; ``patient_var`` and ``sigma2`` the patient
    intercept and residual variances. ``interactions``: the deft split, one row
    per moderator and part (``within-study`` / ``across-study``).
    """

    direction: str
    effect: str
    estimate: float
    se: float
    df: float
    ci_low: float
    ci_high: float
    pvalue: float
    tau: float
    tau_ci_low: float
    tau_ci_high: float
    pi_low: float
    pi_high: float
    patient_var: float
    sigma2: float
    k: int
    n_patients: int
    n_pairs: int
    studies: tuple
    converged: bool
    singular: bool
    deviance: float
    level: float
    fit_seconds: float
    interactions: pd.DataFrame = field(repr=False)
    messages: tuple = ()
    fixed: pd.DataFrame | None = field(default=None, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row: direction, effect, estimate, se, df, ci_low, ci_high, pvalue, tau, tau_ci_low,
        tau_ci_high, pi_low, pi_high, k, n_patients, n_pairs, df_method, singular, message."""
        return pd.DataFrame([{
            "direction": self.direction, "effect": self.effect, "estimate": self.estimate, "se": self.se,
            "df": self.df, "ci_low": self.ci_low, "ci_high": self.ci_high, "pvalue": self.pvalue,
            "tau": self.tau, "tau_ci_low": self.tau_ci_low, "tau_ci_high": self.tau_ci_high,
            "pi_low": self.pi_low, "pi_high": self.pi_high, "k": self.k, "n_patients": self.n_patients,
            "n_pairs": self.n_pairs, "df_method": DF_METHOD, "singular": self.singular,
            "message": " ".join(self.messages),
        }])

    def summary(self) -> str:
        """A sentence for readers (APA numbers through :mod:`analysis.formatting`)."""
        pct = f"{round(100 * self.level)}%"
        d = fmt.decimals_for([self.estimate, self.ci_low, self.ci_high])
        td = fmt.decimals_for([self.tau, self.tau_ci_low, self.tau_ci_high])
        return (
            f"One-stage {self.direction.replace('_', ' ')} ({self.k} studies, {self.n_patients} patients): "
            f"within effect {fmt.fixed(self.estimate, d)}, {pct} CI "
            f"{fmt.interval(self.ci_low, self.ci_high, decimals=d)} (t({fmt.num(self.df, 1)}), "
            f"{DF_METHOD} df), {fmt.p_text(self.pvalue)}; τ = {fmt.fixed(self.tau, td)} "
            f"({pct} profile CI {fmt.interval(self.tau_ci_low, self.tau_ci_high, decimals=td)}); "
            f"{pct} prediction interval {fmt.interval(self.pi_low, self.pi_high, decimals=d)}."
        )


@dataclass(frozen=True, eq=False)
class OneStageResult:
    """Result of :func:`one_stage`: ``fits`` (direction → :class:`OneStageDirection`), the options
    and plain-language ``messages`` (a direction that could not be fitted says why)."""

    fits: dict
    options: LagOptions
    messages: tuple = ()

    def to_frame(self) -> pd.DataFrame:
        """One row per fitted direction (columns of :meth:`OneStageDirection.to_frame`)."""
        parts = [f.to_frame() for f in self.fits.values()]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def interactions(self) -> pd.DataFrame:
        """The deft split of every direction (direction + :data:`_INTERACTION_COLS`)."""
        parts = []
        for d, f in self.fits.items():
            t = f.interactions.copy()
            t.insert(0, "direction", d)
            parts.append(t)
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["direction",
                                                                                         *_INTERACTION_COLS])

    def summary(self) -> str:
        return "\n".join([f.summary() for f in self.fits.values()] + list(self.messages))


def _study_means(values, pat, sc, S):
    """Mean of a patient-level value over each study's patients (each patient once)."""
    first = np.r_[True, pat[1:] != pat[:-1]]
    cnt = np.bincount(sc[first], minlength=S).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(sc[first], weights=values[first], minlength=S) / cnt


def _moderators(data: StudyData, rows, options: LagOptions, keep_rows, pat, sc, S):
    """(term, moderator name, m on the model scale per row, m on its own scale per row, scale note)."""
    out = []
    for term, mod in _INTERACTION_MODERATOR.items():
        if term in rows.terms:
            v = rows.cols[mod][keep_rows]
            out.append((term, mod, v, v, "model scale"))
    for main, inter in rows.covariate_terms.items():
        v = rows.cols[main][keep_rows]
        name = main.split(": ")[0]
        kind, per, levels = data.covariates[name]
        gi = data.g[rows.idx][keep_rows]
        if kind == "numeric":
            raw = per[gi]
            if options.standardize:
                m = _study_means(raw, pat, sc, S)
                first = np.r_[True, pat[1:] != pat[:-1]]
                dev = raw[first] - m[sc[first]]
                sd = float(np.sqrt(np.sum(dev**2) / max(first.sum() - S, 1)))
                raw = raw / sd if sd > 0 else raw
            out.append((inter, main, v, raw, "per pooled within-study SD" if options.standardize else "raw units"))
        else:
            out.append((inter, main, v, v, "proportion"))
    return out


def _design(data: StudyData, rows, options: LagOptions, direction: str):
    """Usable studies' rows and the one-stage design; (X, names, y, patient, study, within, info)."""
    xvar, yvar = _VARS[direction]
    sc_all = data.scode[rows.idx]
    g_all = data.g[rows.idx]
    usable, left = [], []
    for k, lab in enumerate(data.study_labels):
        problems = [p for p in data.problems[lab] if p.startswith((xvar, yvar))]
        n_pat = len(np.unique(g_all[sc_all == k]))
        if problems:
            left.append(f"{lab} ({'; '.join(problems)})")
        elif n_pat < MIN_PATIENTS:
            left.append(f"{lab} (only {n_pat} patient(s) with a complete pair)")
        else:
            usable.append(k)
    keep = np.isin(sc_all, usable)
    remap = np.full(data.S, -1)
    remap[usable] = np.arange(len(usable))
    sc = remap[sc_all[keep]]
    pat = g_all[keep]
    S = len(usable)
    y = rows.cols["lead"][keep]
    xw = rows.cols["within"][keep]
    D = np.zeros((len(y), S))
    D[np.arange(len(y)), sc] = 1.0
    labels = [data.study_labels[k] for k in usable]
    cols, names = [D], [f"intercept [{lab}]" for lab in labels]
    nuisance = [t for t in rows.terms if t not in _NOT_NUISANCE and t not in rows.covariate_terms.values()]
    for t in nuisance:
        cols.append(D * rows.cols[t][keep][:, None])
        names.extend(f"{t} [{lab}]" for lab in labels)
    cols.append(xw[:, None])
    names.append("within")
    inter_names = []
    for term, mod, v, raw, note in _moderators(data, rows, options, keep, pat, sc, S):
        mw = v - _study_means(v, pat, sc, S)[sc]
        mb = _study_means(raw, pat, sc, S)
        mb = mb - mb.mean()
        cols.append((xw * mw)[:, None])
        cols.append((xw * mb[sc])[:, None])
        names.extend([f"{term} (within-study)", f"{term} (across-study)"])
        inter_names.append((term, mod, note))
    X = np.column_stack(cols)
    return X, names, y, pat, sc, xw, {"labels": labels, "left": left, "inter": inter_names, "keep": keep}


def _interaction_frame(fit, kept, inter, level, crit_of):
    rows = []
    for term, mod, note in inter:
        for part in ("within-study", "across-study"):
            name = f"{term} ({part})"
            if name in kept:
                j = kept.index(name)
                est, se, df = float(fit.beta[j]), float(fit.se[j]), float(fit.df[j])
                c = crit_of(df)
                rows.append([term, mod, part, est, se, df, est - c * se, est + c * se, float(fit.pvalue[j]),
                             "" if part == "within-study" else f"moderator's study means, {note}"])
            else:
                rows.append([term, mod, part, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan,
                             "not estimable: the moderator has (about) the same mean in every study"
                             if part == "across-study" else "not estimable in these data"])
    return pd.DataFrame(rows, columns=_INTERACTION_COLS)


def fit_direction(data: StudyData, options: LagOptions, direction: str, *, level: float = 0.95,
                  profile: bool = True) -> OneStageDirection:
    """The one-stage model of one direction (module docstring). ValueError when it cannot be fitted
    (fewer than two usable studies, the fixed-effects estimator, a design that cannot be estimated)."""
    _check_direction(direction)
    if options.estimator != "mixed":
        raise ValueError("The one-stage model is a mixed model; it is not available with the fixed-effects "
                         "(within OLS) estimator.")
    if getattr(options, "stage1", "lmm") != "lmm":
        raise ValueError("The one-stage model is the lagged mixed model (study model 'lmm'); it is not fitted "
                         "for the RI-CLPM or dynamic panel study models.")
    t0 = _time.perf_counter()
    rows = model_rows(data, options, direction)
    X, names, y, pat, sc, xw, info = _design(data, rows, options, direction)
    k = len(info["labels"])
    if k < 2:
        raise ValueError(f"The one-stage model needs at least two usable studies; {k} could be used.")
    Xk, kept, dropped = lmm.drop_collinear(X, names)
    if "within" not in kept:
        raise ValueError("The within effect is not estimable (it is constant or collinear with the study terms).")
    trend = options.time_trend == "fixed_random"
    Z = np.column_stack([np.ones(len(y)), rows.cols["time"][info["keep"]]]) if trend else np.ones((len(y), 1))
    re_names = ("intercept", "time") if trend else ("intercept",)
    groups = pat.astype(np.int64)
    fit = lmm.fit_lmm(y, Xk, Z, groups, coef_names=tuple(kept), re_names=re_names, outer=sc, outer_z=xw,
                      reml=True, satterthwaite=True)
    msgs = list(fit.messages)
    j = kept.index("within")
    est, se, df = float(fit.beta[j]), float(fit.se[j]), float(fit.df[j])

    def crit_of(d):
        a = 1 - (1 - level) / 2
        return float(stats.t.ppf(a, d)) if np.isfinite(d) else float(stats.norm.ppf(a))

    crit = crit_of(df)
    tau = float(np.sqrt(fit.outer_var))
    lo = hi = np.nan
    if profile:
        try:
            # as lme4's confint(method = "profile"): the ML refit's profile (lme4 refits a REML fit by ML)
            fit_ml = lmm.fit_lmm(y, Xk, Z, groups, coef_names=tuple(kept), re_names=re_names, outer=sc,
                                 outer_z=xw, reml=False, satterthwaite=False, start=fit.theta)
            lo, hi, pm = lmm.outer_sd_profile_ci(fit_ml, y, Xk, Z, groups, sc, outer_z=xw, level=level)
            msgs.extend(pm)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError) as exc:
            msgs.append(f"The profile-likelihood CI of τ could not be computed ({exc}).")
    half = crit * np.sqrt(se**2 + tau**2)
    singular = fit.singular
    if info["left"]:
        msgs.append(f"Left out of the one-stage model: {', '.join(info['left'])}.")
    nuis_dropped = [d for d in dropped if "(within-study)" not in d and "(across-study)" not in d]
    if nuis_dropped:
        msgs.append(f"Not estimable, so left out: {', '.join(nuis_dropped[:6])}"
                    + (f" and {len(nuis_dropped) - 6} more" if len(nuis_dropped) > 6 else "") + ".")
    if tau < 1e-6:
        msgs.append("τ is estimated at 0 (a singular fit): the study slopes do not vary beyond chance; the "
                    "prediction interval equals the CI.")
    if k < 5:
        msgs.append(f"Only {k} studies: τ and every interval are unreliable with fewer than 5 studies.")
    ffix = fit.fixed_frame()
    return OneStageDirection(
        direction=direction, effect=effect_label(options), estimate=est, se=se, df=df,
        ci_low=est - crit * se, ci_high=est + crit * se, pvalue=float(fit.pvalue[j]), tau=tau,
        tau_ci_low=lo, tau_ci_high=hi, pi_low=est - half, pi_high=est + half,
        patient_var=float(fit.psi[0, 0]), sigma2=float(fit.sigma2), k=k,
        n_patients=len(np.unique(pat)), n_pairs=len(y), studies=tuple(info["labels"]),
        converged=bool(fit.converged), singular=bool(singular), deviance=float(fit.deviance), level=level,
        fit_seconds=_time.perf_counter() - t0,
        interactions=_interaction_frame(fit, kept, info["inter"], level, crit_of),
        messages=tuple(msgs), fixed=ffix,
    )


def one_stage(df: pd.DataFrame | StudyData, options: LagOptions | None = None, *, level: float = 0.95,
              profile: bool = True) -> OneStageResult:
    """One-stage IPD meta-analysis of the within effect in every direction of ``options`` (METHODS §6b).

    ``df``: canonical long data (or a prepared :class:`analysis.lagged.StudyData`). A direction that
    cannot be fitted is reported in ``messages``; the others still run.

    >>> from analysis.simulate import simulate_collection
    >>> res = one_stage(simulate_collection(k=3, n_patients=30, sessions=range(1, 7), seed=1).data)
    >>> sorted(res.fits), res.fits["alliance_to_symptoms"].k
    (['alliance_to_symptoms', 'symptoms_to_alliance'], 3)
    """
    options = options or LagOptions()
    OneStageOptions(level=level, profile=profile)  # the declared checks
    data = df if isinstance(df, StudyData) else prepare_studies(df, options)
    fits, msgs = {}, []
    # one BLAS thread: the fit is many small products (p ≈ 90), for which OpenBLAS threads cost
    # more than they save, and far more when other work competes for the cores (the 17-study demo
    # with the profile CI: 1.7 s on one thread, 4.7 s with two threads on a loaded 2-core machine)
    with threadpool_limits(limits=1, user_api="blas"):
        for d in options.directions:
            try:
                fits[d] = fit_direction(data, options, d, level=level, profile=profile)
            except (ValueError, np.linalg.LinAlgError) as exc:
                msgs.append(f"{d.replace('_', ' ')}: the one-stage model could not be fitted: {exc}")
    return OneStageResult(fits=fits, options=options, messages=tuple(msgs))


_COMPARE_COLS = ["direction", "model", "estimate", "se", "ci_low", "ci_high", "test", "tau", "pi_low", "pi_high", "k",
                 "n_patients"]


def compare(two_stage, one: OneStageResult) -> pd.DataFrame:
    """One table of both analyses of the within effect: per direction a ``two-stage`` and a
    ``one-stage`` row (columns :data:`_COMPARE_COLS`; ``test`` names each interval's test)."""
    from analysis.meta import TEST_NAMES

    rows = []
    for d in one.options.directions:
        m = two_stage.pooled.get(d)
        if m is not None:
            rows.append([d, "two-stage", m.estimate, m.se, m.ci_low, m.ci_high,
                         TEST_NAMES.get(m.test, m.test) + (f", df = {fmt.num(m.df, 0)}" if np.isfinite(m.df) else ""),
                         float(np.sqrt(m.tau2)), m.pi_low, m.pi_high, m.k,
                         int(np.nansum(m.n_patients)) if m.n_patients is not None else np.nan])
        f = one.fits.get(d)
        if f is not None:
            rows.append([d, "one-stage", f.estimate, f.se, f.ci_low, f.ci_high,
                         f"t, {DF_METHOD} df = {fmt.num(f.df, 1)}", f.tau, f.pi_low, f.pi_high, f.k, f.n_patients])
    return pd.DataFrame(rows, columns=_COMPARE_COLS)


def agreement_sentence(two_stage, one: OneStageResult, direction: str) -> str:
    """Do the one- and two-stage estimates agree? A plain sentence with the reasons they may not.

    They "agree" when each estimate lies inside the other's CI. Reasons they can differ (Riley et al.
    2020): the weights (two-stage: 1/(v_k + τ²) per study; one-stage: every patient through the
    likelihood), small studies (the stage-1 SEs are treated as known), and τ (estimated from the
    study estimates vs. from all rows; REML in both, on different likelihoods)."""
    m = two_stage.pooled.get(direction)
    f = one.fits.get(direction)
    if m is None or f is None:
        return "Only one of the two analyses could be fitted for this direction, so they cannot be compared."
    d = fmt.decimals_for([m.estimate, f.estimate, m.ci_low, m.ci_high, f.ci_low, f.ci_high])
    agree = (m.ci_low <= f.estimate <= m.ci_high) and (f.ci_low <= m.estimate <= f.ci_high)
    diff = f.estimate - m.estimate
    head = (f"The one-stage ({fmt.fixed(f.estimate, d)}) and two-stage ({fmt.fixed(m.estimate, d)}) estimates "
            + ("agree: each lies inside the other's confidence interval"
               if agree else f"differ by {fmt.fixed(diff, d)}: one lies outside the other's confidence interval"))
    why = []
    small = int(np.sum(np.asarray(m.n_patients, float) < 30)) if m.n_patients is not None else 0
    if small:
        why.append(f"{small} of the {m.k} studies have fewer than 30 patients, whose stage-1 SEs are uncertain "
                   "(the two-stage model treats them as known)")
    tau2s = float(np.sqrt(m.tau2))
    if abs(f.tau - tau2s) > 0.5 * max(f.tau, tau2s, 1e-12) and max(f.tau, tau2s) > 0:
        why.append(f"τ differs (one-stage {fmt.num(f.tau, 3)}, two-stage {fmt.num(tau2s, 3)}), which changes the "
                   "study weights")
    if not why:
        why.append("the weights differ by design (two-stage: one inverse-variance weight per study; one-stage: "
                   "every patient through the likelihood, with study-specific nuisance terms), so small "
                   "differences are expected")
    return head + ". Why they may differ: " + "; ".join(why) + "."
