"""The per-study lagged model (METHODS §5): mixed (REML) or fixed-effects fits, coefficients, diagnostics and
messages (StudyFit, fit_studies, fit_study).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from analysis import mixed, nickell
from analysis.lagged.options import _VARS, MIN_PATIENTS, LagOptions, _check_direction, effect_label
from analysis.lagged.rows import ModelRows, StudyData, model_rows, prepare_studies

_COEF_COLS = ["term", "estimate", "se", "statistic", "df", "ci_low", "ci_high", "pvalue"]


@dataclass(frozen=True, eq=False)
class StudyFit:
    """Stage-1 fit of one study and direction (METHODS §5).

    ``coefficients``: DataFrame with ``term, estimate, se, statistic, df,
    ci_low, ci_high, pvalue`` (``df`` is ``inf`` for the normal Wald tests of
    the mixed model, G − 1 for the fixed-effects estimator). ``tau2`` is the
    random-intercept variance (NaN for fixed effects), ``sigma2`` the residual
    variance; with a random slope ``tau2_slope`` and ``cov_intercept_slope``.
    ``converged``/``singular`` (random-effect variance on the boundary, θ <
    1e-4 as lme4's ``isSingular``). ``status`` is ``"ok"`` (routine notes such
    as a singular fit or Nickell bias stay in ``messages``), ``"warning"``
    (usable but fewer than 10 patients; see ``messages``) or ``"failed"`` (no
    estimates; reason in ``messages``).

    Diagnostics: ``median_pairs`` (model rows per patient),
    ``median_observations`` (observed X values per patient in the window),
    ``icc_predictor`` (ICC of X from an intercept-only random-intercept REML
    model), ``reliability_person_mean`` = n·ICC/(1 + (n − 1)·ICC) with n =
    ``median_observations``; ``nickell_bias`` ≈ −(1 + ρ)/(T − 1) with T =
    ``median_pairs`` and ρ the autoregression implied by the estimated
    ``prior_within`` coefficient after undoing that same bias, ρ = (ρ̂(T − 1)
    + 1)/(T − 2) (only with ``control_prior_outcome`` and a within-centred
    prior outcome, i.e. person_mean/detrended or fixed effects; else NaN).
    """

    study: str
    direction: str
    options: LagOptions
    effect: str
    estimator: str
    coef_data: dict
    n_patients: int
    n_pairs: int
    tau2: float = np.nan
    sigma2: float = np.nan
    tau2_slope: float = np.nan
    cov_intercept_slope: float = np.nan
    converged: bool = False
    singular: bool = False
    status: str = "failed"
    messages: tuple = ()
    median_pairs: float = np.nan
    median_observations: float = np.nan
    icc_predictor: float = np.nan
    reliability_person_mean: float = np.nan
    nickell_bias: float = np.nan
    deviance: float = np.nan

    @property
    def terms(self) -> tuple:
        return tuple(self.coef_data["term"])

    @cached_property
    def coefficients(self) -> pd.DataFrame:
        """The coefficient table (built on first access from ``coef_data``)."""
        d = dict(self.coef_data)
        d["term"] = pd.array(list(d["term"]), dtype="string")
        return pd.DataFrame(d, columns=_COEF_COLS)

    def coef(self, term: str = "within") -> dict:
        """One coefficient as a dict (estimate, se, statistic, df, ci_low, ci_high, pvalue);
        KeyError if the term is absent."""
        terms = self.terms
        if term not in terms:
            raise KeyError(f"term {term!r} is not in this model ({', '.join(terms) or 'no estimates'}).")
        j = terms.index(term)
        return {c: float(self.coef_data[c][j]) for c in _COEF_COLS[1:]}

    def diagnostics(self) -> dict:
        return {
            "n_patients": self.n_patients,
            "n_pairs": self.n_pairs,
            "median_pairs": self.median_pairs,
            "median_observations": self.median_observations,
            "icc_predictor": self.icc_predictor,
            "reliability_person_mean": self.reliability_person_mean,
            "nickell_bias": self.nickell_bias,
            "tau2": self.tau2,
            "sigma2": self.sigma2,
            "tau2_slope": self.tau2_slope,
            "converged": self.converged,
            "singular": self.singular,
        }

    def to_frame(self) -> pd.DataFrame:
        """Coefficient table with study, direction, effect, n_patients, n_pairs, status."""
        c = self.coefficients.copy()
        c.insert(0, "study", self.study)
        c.insert(1, "direction", self.direction)
        c.insert(2, "effect", self.effect)
        c["n_patients"] = self.n_patients
        c["n_pairs"] = self.n_pairs
        c["status"] = self.status
        c["message"] = " ".join(self.messages)
        c["study"] = c["study"].astype("string")
        return c


def failed_fit(study, direction, options, reason, n_patients=0, n_pairs=0, extra_msgs=()) -> StudyFit:
    """A :class:`StudyFit` with ``status="failed"``, no estimates and ``reason`` as its first message."""
    return StudyFit(
        study=study,
        direction=direction,
        options=options,
        effect=effect_label(options),
        estimator=_estimator_label(options),
        coef_data=_empty_coef(),
        n_patients=int(n_patients),
        n_pairs=int(n_pairs),
        status="failed",
        messages=(reason, *extra_msgs),
    )




def _empty_coef():
    return {"term": (), **{c: np.zeros(0) for c in _COEF_COLS[1:]}}


def coef_data(terms, beta, se, df=None, level=0.95) -> dict:
    """Coefficient arrays for :class:`StudyFit`: Wald z when ``df`` is None, else t(df) with ``df``
    one number or one per term (Satterthwaite)."""
    beta = np.asarray(beta, float)
    se = np.asarray(se, float)
    if df is None or np.ndim(df) == 0:
        stat, lo, hi, p = mixed.wald_table(beta, se, df, level)
        dfa = np.full(len(terms), np.inf if df is None else float(df))
    else:
        dfa = np.asarray(df, float)
        parts = [mixed.wald_table(beta[j:j + 1], se[j:j + 1], dfa[j], level) for j in range(len(beta))]
        stat, lo, hi, p = (np.concatenate([q[i] for q in parts]) if parts else np.zeros(0) for i in range(4))
    return {
        "term": tuple(terms), "estimate": beta, "se": se, "statistic": stat,
        "df": dfa, "ci_low": lo, "ci_high": hi, "pvalue": p,
    }


def _estimator_label(options):
    if options.estimator == "fixed_effects":
        return "within (fixed-effects) OLS, CR1 cluster-robust SEs by patient, t(G−1)"
    test = "t (Satterthwaite df)" if options.df_method == "satterthwaite" else "Wald z"
    if options.time_trend == "fixed_random":
        return f"linear mixed model, random intercept and slope of time, REML, {test}"
    return f"linear mixed model, random intercept, REML, {test}"


@dataclass(frozen=True)
class _Estimates:
    """What one estimator returns to :func:`_fit_one` (variance components NaN when absent)."""

    beta: np.ndarray
    se: np.ndarray
    df: object  # None (z), one number, or one per term
    sigma2: float
    tau2: float = np.nan
    tau2_slope: float = np.nan
    cov_intercept_slope: float = np.nan
    converged: bool = True
    singular: bool = False
    deviance: float = np.nan
    messages: tuple = ()


def _estimate(X, y, g, time, options: LagOptions, terms) -> _Estimates:
    """Fit the stage-1 model with the estimator the options name (§5); ValueError/LinAlgError on a
    design that cannot be estimated (collinear or constant terms: :func:`analysis.mixed._rank_check`)."""
    if options.estimator == "fixed_effects":
        fit = mixed.fit_within_cr1(X, y, g, names=terms)
        return _Estimates(fit.beta, fit.se, fit.df, float(fit.sigma2), messages=tuple(fit.messages))
    if options.df_method == "satterthwaite":
        from analysis import lmm

        mixed._rank_check(X.T @ X, terms)
        Z = np.ones((len(y), 1)) if time is None else np.column_stack([np.ones(len(y)), time])
        # the random-slope REML surface often has several boundary optima: start from the global one that
        # the 2-D solver finds (the fit of the z tests), so both df methods share one REML estimate (as R)
        start = None if time is None else mixed.fit_random_slope(X, y, g, Z, names=terms).theta
        fit = lmm.fit_lmm(y, X, Z, g, coef_names=tuple(terms), reml=True, satterthwaite=True, start=start)
        psi = np.asarray(fit.psi)
        slope = time is not None
        return _Estimates(
            fit.beta, fit.se, np.asarray(fit.df, float), float(fit.sigma2), float(psi[0, 0]),
            float(psi[1, 1]) if slope else np.nan, float(psi[0, 1]) if slope else np.nan,
            bool(fit.converged), bool(fit.singular), float(fit.deviance), tuple(fit.messages),
        )
    if time is not None:
        Z = np.column_stack([np.ones(len(y)), time])
        fit = mixed.fit_random_slope(X, y, g, Z, names=terms)
        return _Estimates(
            fit.beta, fit.se, None, float(fit.sigma2), float(fit.re_cov[0, 0]), float(fit.re_cov[1, 1]),
            float(fit.re_cov[0, 1]), fit.converged, fit.singular, float(fit.deviance), tuple(fit.messages),
        )
    fit = mixed.fit_random_intercept(X, y, g, names=terms)
    return _Estimates(fit.beta, fit.se, None, float(fit.sigma2), float(fit.tau2), converged=fit.converged,
                      singular=fit.singular, deviance=float(fit.deviance), messages=tuple(fit.messages))


def _design(rows: ModelRows, lo: int, hi: int, options: LagOptions):
    """Design matrix, outcome and term names of one study's model rows. Covariate terms that are
    constant in the study (a level nobody has, a covariate everyone shares) are left out with a note."""
    terms = list(rows.terms)
    notes, msgs = [], []
    for main, inter in rows.covariate_terms.items():
        v = rows.cols[main][lo:hi]
        if hi > lo and np.ptp(v) == 0:
            terms = [t for t in terms if t not in (main, inter)]
            notes.append(main)
    if notes:
        msgs.append(f"Not estimable in this study (the same value for every patient), so left out of its model: "
                    f"{', '.join(notes)} and the interaction(s) with the within effect.")
    for name, (ref, dummies) in rows.covariate_levels.items():
        left = [t for t in dummies if t in terms or rows.covariate_terms[t] in terms]
        if left and hi > lo and np.all(sum(rows.cols[t][lo:hi] for t in left) == 1):
            # no patient of the study is in the reference level: the dummies add up to the intercept
            drop = set(left) | {rows.covariate_terms[t] for t in left}
            terms = [t for t in terms if t not in drop]
            msgs.append(f"Not estimable in this study: no patient has the reference level '{ref}' of {name}, so "
                        f"{', '.join(left)} and their interactions with the within effect were left out of its model.")
    msg = " ".join(msgs)
    n = hi - lo
    cols = [rows.cols[t][lo:hi] for t in terms if t != "intercept"]
    X = np.column_stack(([np.ones(n)] if "intercept" in terms else []) + cols)
    return X, rows.cols["lead"][lo:hi], tuple(terms), msg


def _fit_one(data: StudyData, rows: ModelRows, k: int, options: LagOptions, direction: str,
             lo: int, hi: int, diagnostics: bool = True) -> StudyFit:
    """Fit study k using model rows rows.idx[lo:hi] (contiguous, sorted by patient)."""
    study = data.study_labels[k]
    xvar, yvar = _VARS[direction]
    n_pairs = hi - lo
    g = data.g[rows.idx[lo:hi]]
    n_pat = int(np.count_nonzero(np.r_[True, g[1:] != g[:-1]])) if n_pairs else 0
    problems = [p for p in data.problems[study] if p.startswith((xvar, yvar))]
    if problems:
        return failed_fit(study, direction, options, f"Not fitted: {'; '.join(problems)}.", n_pat, n_pairs)
    drop = (_drop_message(rows, k, options),)
    drop = tuple(m for m in drop if m)
    if n_pat < MIN_PATIENTS:
        return failed_fit(
            study, direction, options,
            f"Not fitted: only {n_pat} patient(s) with a complete pair (at least {MIN_PATIENTS} needed).",
            n_pat, n_pairs, drop,
        )
    X, y, terms, cov_note = _design(rows, lo, hi, options)
    time = rows.cols["time"][lo:hi] if options.time_trend == "fixed_random" else None
    try:
        est = _estimate(X, y, g, time, options, terms)
    except (ValueError, np.linalg.LinAlgError) as exc:
        return failed_fit(study, direction, options, f"Not fitted: {exc}", n_pat, n_pairs, drop)
    if not est.converged:
        return failed_fit(
            study, direction, options,
            "Not fitted: the mixed-model optimiser did not converge. " + " ".join(est.messages), n_pat, n_pairs,
        )
    coef = coef_data(terms, est.beta, est.se, est.df)
    msgs = _fit_messages(options, est, n_pat)
    # a boundary (singular) fit is routine in this model and leaves the fixed effects correct: a note in
    # ``messages``, not a warning; fewer than 10 patients changes how the estimate reads (issue 23 #16)
    status = "warning" if n_pat < 10 else "ok"
    diag, dmsgs = ({}, []) if not diagnostics else _diagnostics(
        data, k, g, xvar, coef, options, pairs=(rows.idx[lo:hi], rows.lead[lo:hi]))
    msgs.extend(dmsgs)
    if cov_note:
        msgs.append(cov_note)
    msgs.extend(drop)
    return StudyFit(
        study=study, direction=direction, options=options, effect=effect_label(options),
        estimator=_estimator_label(options), coef_data=coef, n_patients=n_pat, n_pairs=n_pairs,
        tau2=est.tau2, sigma2=est.sigma2, tau2_slope=est.tau2_slope, cov_intercept_slope=est.cov_intercept_slope,
        converged=bool(est.converged), singular=bool(est.singular), status=status, messages=tuple(msgs),
        deviance=est.deviance, **diag,
    )


def _fit_messages(options: LagOptions, est: _Estimates, n_pat: int) -> list:
    msgs = []
    if options.estimator == "fixed_effects":
        msgs.append(
            "Fixed-effects estimator: patient means are removed, so between-patient terms are not "
            "estimable and the within coefficient is a purely within-patient effect."
        )
    msgs.extend(est.messages)
    if est.singular:
        if options.time_trend == "fixed_random":
            msgs.append(
                "Singular fit: a random-effect variance (intercept or slope of time) is estimated at the "
                "boundary (zero) or the two are perfectly correlated. Fixed effects are still the REML "
                "estimates; consider time_trend='fixed'."
            )
        else:
            msgs.append(
                "Singular fit: the random-intercept variance is estimated at zero (boundary), common when the "
                "between terms absorb the person differences. The fixed effects are still the REML/GLS "
                "estimates (here equal to OLS); no coefficient is set to zero."
            )
    if n_pat < 10:
        msgs.append(f"Only {n_pat} patients: the between-patient terms and τ² are poorly determined.")
    return msgs


def _diagnostics(data: StudyData, k: int, g: np.ndarray, xvar: str, coef: dict, options: LagOptions, pairs=None):
    """Pairs and observations per patient, ICC and person-mean reliability of X, Nickell bias (§5).
    ``pairs``: (row, outcome row) positions of the model pairs in ``data``.
    Returns (StudyFit diagnostic fields, messages)."""
    msgs = []
    terms = coef["term"]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    med_pairs = float(np.median(np.diff(np.r_[starts, len(g)])))
    _, _, _, nobs = data.centered(xvar, options.centering)
    med_obs = float(np.median(nobs[g[starts]]))
    icc = _icc(data, xvar, k)
    rel = nickell.attenuation(icc, med_obs)
    nick = np.nan
    if options.control_prior_outcome and (options.hybrid or options.estimator == "fixed_effects"):
        nick, nmsg = _nickell(data, k, xvar, coef, options, pairs, med_pairs)
        msgs.append(nmsg)
    msgs += nickell.attenuation_messages(xvar, rel, icc, med_obs, terms)
    diag = {
        "median_pairs": med_pairs, "median_observations": med_obs, "icc_predictor": float(icc),
        "reliability_person_mean": float(rel), "nickell_bias": float(nick),
    }
    return diag, msgs


def _nickell(data: StudyData, k: int, xvar: str, coef: dict, options: LagOptions, pairs, med_pairs: float):
    """Nickell bias of the prior-outcome coefficient on this study's own design (:mod:`analysis.nickell`)."""
    rho_hat = float(coef["estimate"][coef["term"].index("prior_within")])
    if med_pairs <= 2 or pairs is None:
        return np.nan, ("Nickell bias: with at most two pairs per patient the within-centred prior-outcome "
                        "coefficient is severely biased (METHODS §5).")
    yvar = "symptoms" if xvar == "alliance" else "alliance"
    lo, hi = int(data.sstart[k]), int(data.sstart[k + 1])
    idx, lead = pairs
    prior = data.previous_index(yvar, options.pairing)[idx] if options.lag == 0 else idx
    centering = "detrended" if options.centering == "detrended" else "person_mean"
    res = nickell.nickell_bias(rho_hat, data.sess[lo:hi], data.g[lo:hi], ~np.isnan(data.z[yvar][lo:hi]),
                               prior - lo, lead - lo, centering, estimator=options.estimator)
    return res.bias, res.summary()


def _drop_message(rows: ModelRows, k: int, options: LagOptions) -> str:
    d = rows.dropped
    n_rows, no_pair, miss = int(d["rows"][k]), int(d["no_outcome_pair"][k]), int(d["missing_terms"][k])
    if no_pair + miss == 0:
        return ""
    if options.lag == 0:
        where = "no outcome rated later in the same session"
    elif options.pairing == "session":
        where = f"no observed outcome at session t+{options.lag}"
    else:
        where = f"no {options.lag}. later observed outcome"
    parts = [f"{no_pair} with {where}"]
    if miss:
        extra = " (detrending needs ≥ 3 observed values)" if options.centering == "detrended" else ""
        what = "a missing predictor, prior outcome or covariate" if options.covariates else (
            "a missing predictor or prior outcome")
        parts.append(f"{miss} with {what}{extra}")
    return f"Of {n_rows} rows in the window, {n_rows - no_pair - miss} formed complete pairs; left out: {', '.join(parts)}."


def _icc(base: StudyData, var: str, k: int) -> float:
    """ICC of a variable in study k from an intercept-only random-intercept REML fit."""
    key = ("icc", var, k)
    if key in base._centered:
        return base._centered[key]
    lo, hi = base.sstart[k], base.sstart[k + 1]
    val = mixed.icc(base.z[var][lo:hi], base.g[lo:hi])
    base._centered[key] = val
    return val


def _study_slices(base: StudyData, rows: ModelRows):
    sc = base.scode[rows.idx]
    bounds = np.searchsorted(sc, np.arange(base.S + 1))
    return [(k, int(bounds[k]), int(bounds[k + 1])) for k in range(base.S)]



def fit_studies(data: StudyData, options: LagOptions, direction: str, *, diagnostics: bool = True,
                ) -> list[StudyFit]:
    """Fit the stage-1 lagged model (METHODS §5) of one direction to every study of ``data``.

    One :class:`StudyFit` per study, in ``data.study_labels`` order; a study
    that cannot be fitted comes back with ``status="failed"`` and the reason.
    ``options`` must agree with those ``data`` was prepared with on the
    window, standardization and covariates. ``diagnostics=False`` skips the ICC, reliability and
    Nickell diagnostics (left NaN; e.g. in simulations that need only the coefficients).
    """
    _check_direction(direction)
    rows = model_rows(data, options, direction)
    return [_fit_one(data, rows, k, options, direction, lo, hi, diagnostics)
            for k, lo, hi in _study_slices(data, rows)]


def fit_study(df: pd.DataFrame, options: LagOptions | None = None, direction: str = "alliance_to_symptoms") -> StudyFit:
    """Fit the stage-1 lagged model (METHODS §5) to one study's data.

    ``df`` must hold a single study (or have no ``study`` column). Returns a
    :class:`StudyFit`; a study that cannot be fitted (fewer than 3 patients
    with a complete pair, a variable without variance, a singular design, one
    pair per patient, non-convergence) comes back with ``status="failed"`` and
    the reason in ``messages`` rather than raising. Bad input (missing columns,
    duplicate keys, several studies, unknown options) raises ``ValueError``.

    >>> from analysis.simulate import simulate_study
    >>> fit = fit_study(simulate_study(60, seed=1).data)
    >>> fit.status, fit.coefficients["term"].tolist()[:2]
    ('ok', ['intercept', 'within'])
    """
    options = options or LagOptions()
    _check_direction(direction)
    if "study" in df.columns and df["study"].nunique(dropna=True) > 1:
        raise ValueError(
            "fit_study fits one study; the data hold "
            f"{df['study'].nunique()} studies. Use analysis.pipeline.two_stage for several."
        )
    data = prepare_studies(df, options)
    (fit,) = fit_studies(data, options, direction)
    return fit


