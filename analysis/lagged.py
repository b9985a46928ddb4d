"""Stage 1 of the two-stage IPD meta-analysis: lagged within-patient models.

Implements ``docs/METHODS.md`` §2 (standardization), §3 (centering), §4 (lags)
and §5 (the per-study lagged model). Public API:

* :class:`LagOptions` — every analysis choice, validated.
* :func:`prepare_studies` → :class:`StudyData` (window, sort, per-study
  standardization, covariates; built once) and :func:`fit_studies` (every
  study of one direction → :class:`StudyFit` list): the stage-1 API that
  :mod:`analysis.pipeline` uses. :func:`model_rows` → :class:`ModelRows`.
* :func:`prepare` — the exact model rows (predictor, its centre, within and
  between parts, prior outcome, outcome at t + L) that enter the model.
* :func:`patient_view` — one patient's model rows and observed series (figure input).
* :func:`pairing_counts` — pairs per study under each pairing mode (§4).
* :func:`fit_study` — fit one study, returning a :class:`StudyFit`;
  :func:`failed_fit` — the result of a study that cannot be fitted.

The model (§5), for direction X → Y with lag L::

    Y_i,t+L = b0 + bW·X^w_it + bB·X^b_i + aW·Y^w_it + aB·Y^b_i
              [+ c·X^b_i·X^w_it] [+ c_Y·Y^b_i·X^w_it] [+ d·time_it]
              [+ Σ_j (g_j·C_ij + h_j·C_ij·X^w_it)] + u_i [+ v_i·time_it] + e_i,t+L

with terms named ``intercept, within, between, prior_within, prior_between,
interaction, interaction_outcome, time`` and, per patient-level covariate
column C (or dummy ``C: level``), ``C`` and ``within × C``. For centering ``none``/``grand_mean`` the model is
``Y_i,t+L = b0 + b·X_it + a·Y_it + u_i + e``; the coefficient b is still
called ``within`` but it is a *total* (within + between) effect and is
labelled so (``StudyFit.effect == "total"``).

Inference. Mixed models (``estimator="mixed"``) are fitted by REML with the
solver in :mod:`analysis.mixed` (with ``df_method="satterthwaite"`` by
:func:`analysis.lmm.fit_lmm`, t tests with lmerTest's Satterthwaite df;
otherwise random intercept; with
``time_trend="fixed_random"`` also a random slope of time, correlated, by the
same package's own 2-D solver — no statsmodels). Tests and CIs use the normal
(Wald z) distribution with the model-based SE, as lme4's ``summary`` does:
stage 1 passes only estimate and SE to the meta-analysis, and with the
hundreds of pairs per study typical here a t reference (Satterthwaite df ≈
N − p for within terms) changes nothing visible; for very small studies the z
intervals of *between* terms are somewhat too narrow. The fixed-effects
estimator (``estimator="fixed_effects"``) is OLS on patient-demeaned model
rows with CR1 cluster-robust SEs by patient and t tests on G − 1 df (the usual
CR1 convention); between-patient terms are not estimable there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np
import pandas as pd

from analysis import meta, mixed
from analysis.data import require_canonical
from analysis.options import Constraint, Declared, option

__all__ = [
    "CENTERINGS",
    "DIRECTIONS",
    "LagOptions",
    "ModelRows",
    "PatientView",
    "StudyData",
    "StudyFit",
    "failed_fit",
    "fit_studies",
    "fit_study",
    "model_rows",
    "model_terms",
    "pairing_counts",
    "patient_view",
    "prepare",
    "prepare_studies",
]

CENTERINGS = ("none", "grand_mean", "person_mean", "detrended")
DIRECTIONS = ("alliance_to_symptoms", "symptoms_to_alliance")
PAIRINGS = ("session", "next_observed")
TIME_TRENDS = ("none", "fixed", "fixed_random")
ESTIMATORS = ("mixed", "fixed_effects")
STAGE1_MODELS = ("lmm", "riclpm", "dpm")  # stage-1 model family: these lagged models or analysis.dynamics (§15)
POOLING_METHODS = meta.METHODS  # one list of τ² estimators (analysis.meta)
TESTS = meta.TESTS
STANDARDIZE_BY = ("total", "within")
DF_METHODS = ("z", "satterthwaite")
TERMS = (
    "intercept", "within", "between", "prior_within", "prior_between", "interaction", "interaction_outcome", "time",
)
CORE_COLUMNS = ("study", "patient", "session", "alliance", "symptoms")
MIN_PATIENTS = 3

_VARS = {"alliance_to_symptoms": ("alliance", "symptoms"), "symptoms_to_alliance": ("symptoms", "alliance")}
_LABEL = {"alliance": "alliance", "symptoms": "symptoms"}


# --------------------------------------------------------------------------- options

M_STD = "2-standardization-default-on"
M_CENTER = "3-centering-of-a-time-varying-variable-x"
M_LAG = "4-lags"
M_STAGE1 = "5-stage-1-lagged-model-per-study"
M_DYNAMIC = "15-latent-centred-dynamic-models-ri-clpm-and-the-ml-sem-dynamic-panel-model"


@dataclass(frozen=True)
class LagOptions(Declared):
    """All choices of the lagged analysis (METHODS §2–§6); defaults marked there.

    Each field is declared once below (allowed values, label, help, URL key):
    :mod:`analysis.options` checks them and writes the messages; the app's
    widgets, links and the scripts' arguments are derived from the same
    declarations.

    * ``centering``: ``"none"`` (total effect), ``"grand_mean"``,
      ``"person_mean"`` (default, Hamaker & Muthén) or ``"detrended"``
      (residual of each patient's own OLS line of X on session, ≥ 3 values) — §3.
    * ``lag``: 1–3 (§4). ``pairing``: ``"session"`` (outcome at session
      t + L of the same patient; missing if not observed) or ``"next_observed"``
      (the L-th later row of the patient in which the outcome was observed).
    * ``directions``: subset of ``("alliance_to_symptoms", "symptoms_to_alliance")``.
    * ``control_prior_outcome``: include the outcome at t (its within and
      between parts) — §5.
    * ``standardize``: z-score alliance and symptoms within each study over the
      analysis window (§2).
    * ``sessions``: ``(first, last)`` analysis window (inclusive) or ``None`` (all).
    * ``time_trend``: ``"none"``, ``"fixed"`` (grand-mean-centred session as a
      fixed effect) or ``"fixed_random"`` (plus a correlated random slope).
    * ``cross_level``: add ``between × within`` of X (needs a between part).
    * ``estimator``: ``"mixed"`` (random-intercept REML) or ``"fixed_effects"``
      (within OLS, CR1 SEs).
    * ``pooling_method`` / ``test``: stage-2 τ² estimator and ``"z"`` or
      ``"knha"`` (§6; declared once in :class:`analysis.meta.PoolOptions`).
    * ``outcome_moderator``: add ``Y^b × X^w`` (term ``interaction_outcome``):
      the patient's average outcome level moderating the within effect (needs
      a between part and ``control_prior_outcome``, whose ``prior_between`` is
      the main effect) — §5.
    * ``covariates``: names of patient-level columns of the data (constant
      within patient). Each enters as a main effect and as a moderator of the
      within effect (``within × name``); numeric columns centred at the study's
      mean over patients (and divided by their SD when ``standardize``),
      text/categorical columns as 0/1 dummies against the first level — §5.
    * ``standardize_by``: ``"total"`` (default: SD of all observed values in
      the study) or ``"within"`` (pooled within-patient SD) — §2.
    * ``df_method``: ``"z"`` (default, Wald z) or ``"satterthwaite"`` (t tests
      with lmerTest's Satterthwaite df; mixed estimator only) — §5.
    * ``lag = 0`` (symptoms → alliance only): symptoms rated before session t,
      alliance after it, so the outcome is alliance at the same session t and
      the prior outcome is alliance at the previous session — §4.
    * ``stage1``: ``"lmm"`` (default: the lagged models above), ``"riclpm"``
      or ``"dpm"`` (latent-centred SEM by FIML, :mod:`analysis.dynamics`,
      §15; window and standardization as above, lag 1 between sessions; the
      centering, lag, trend and estimator choices then do not apply).

    >>> LagOptions(centering="grand_mean", lag=2).lag
    2
    >>> LagOptions(estimator="fixed_effects", time_trend="fixed_random")
    Traceback (most recent call last):
    ...
    ValueError: A random slope of time needs estimator='mixed'; with 'fixed_effects' use time_trend='fixed'.
    """

    centering: str = option(
        "choice", "person_mean", choices=CENTERINGS, label="Centering", widget="radio", url="centering",
        labels={"person_mean": "Person-mean (within / between)", "detrended": "Detrended (within / between)",
                "grand_mean": "Grand-mean (total effect)", "none": "None (total effect)"},
        help="Person-mean splits each predictor into a within-patient deviation and a between-patient mean "
             "(default). Detrended removes each patient's own linear trend first.", methods=M_CENTER)
    lag: int = option(
        "choice", 1, choices=(1, 2, 3, 0), label="Lag (sessions)", widget="select", url="lag", methods=M_LAG,
        labels={1: "1", 2: "2", 3: "3", 0: "0: alliance rated later in the same session"},
        help="Pair predictors at session t with the outcome at session t + lag. Lag 0 (symptoms → alliance "
             "only): symptoms rated before session t predict the alliance rated after it.")
    pairing: str = option(
        "choice", "session", choices=PAIRINGS, label="Pairing", widget="radio", url="pairing", methods=M_LAG,
        labels={"session": "By session number (default)", "next_observed": "Next observed session"},
        help="By session number: if session t + lag was not observed the pair is missing. Next observed: "
             "pair each row with the patient's next observed row.")
    directions: tuple = option(
        "choices", DIRECTIONS, choices=DIRECTIONS, label="Directions", url="directions", methods=M_STAGE1,
        labels={"alliance_to_symptoms": "Alliance → next-session symptoms",
                "symptoms_to_alliance": "Symptoms → next-session alliance"},
        help="Which lagged effects to estimate: alliance at session t → symptoms at t + lag, "
             "and symptoms at t → alliance at t + lag.")
    control_prior_outcome: bool = option(
        "flag", True, label="Control for the prior outcome", url="prior", methods=M_STAGE1,
        help="Adds the outcome at session t (within and between parts) as predictors. "
             "Causes a small downward (Nickell) bias in its own coefficient.")
    standardize: bool = option(
        "flag", True, label="Standardize within study", url="standardize", methods=M_STD,
        help="z-scores per study so that coefficients are comparable across instruments (needed for pooling).")
    sessions: tuple | None = option(
        "range", None, lo=0, label="Sessions analysed", url="sessions", methods="1-data",
        help="Only sessions in this window are used for every mean, SD, trend and pair "
             "(the IPD meta-analysis used sessions 1–7).")
    time_trend: str = option(
        "choice", "none", choices=TIME_TRENDS, label="Time trend", widget="select", url="trend", methods=M_CENTER,
        labels={"none": "No time trend", "fixed": "Fixed time trend", "fixed_random": "Fixed + random time slope"},
        help="Adds grand-mean-centered session as a fixed effect (and optionally a random slope).")
    cross_level: bool = option(
        "flag", False, label="Cross-level interaction (between × within)", url="cross", methods=M_STAGE1,
        help="Adds the product of the between and within parts of the predictor.")
    estimator: str = option(
        "choice", "mixed", choices=ESTIMATORS, label="Estimator", widget="radio", url="estimator", methods=M_STAGE1,
        labels={"mixed": "Random-intercept model (REML)",
                "fixed_effects": "Fixed effects (demeaned OLS, cluster-robust SE)"},
        help="The fixed-effects estimator cannot estimate between-patient terms.")
    pooling_method: str = meta.TAU2_METHOD.field()
    test: str = meta.POOL_TEST.field()
    outcome_moderator: bool = option(
        "flag", False, label="Outcome's patient mean moderates the within effect", url="outmod", methods=M_STAGE1,
        help="Adds the product of the patient's average outcome (between part) and the within predictor, "
             "e.g. whether the alliance → symptoms effect differs for patients with higher average "
             "symptoms. Needs within/between centering and the prior outcome.")
    covariates: tuple = option(
        "columns", (), label="Patient-level covariates (moderators)", methods=M_STAGE1,
        reserved=CORE_COLUMNS + TERMS, reserved_prefix="within × ",
        reserved_reason="it is a core column or a model term name",
        help="Columns with one value per patient (e.g. treatment, diagnosis, age). Each enters as a "
             "main effect and as a moderator of the within effect (within × covariate).")
    standardize_by: str = option(
        "choice", "total", choices=STANDARDIZE_BY, label="Standardize by", widget="radio", url="std_by",
        methods=M_STD, labels={"total": "Total SD (all values of the study)", "within": "Within-patient SD"},
        help="Which SD the z-scores divide by. Within-patient SD puts the coefficients in units of "
             "session-to-session variation.")
    df_method: str = option(
        "choice", "z", choices=DF_METHODS, label="Tests of the study models", widget="radio", url="df",
        methods=M_STAGE1, labels={"z": "Wald z (default)", "satterthwaite": "t with Satterthwaite df (as lmerTest)"},
        help="Satterthwaite t tests are slower; they matter for small studies.")
    stage1: str = option(
        "choice", "lmm", choices=STAGE1_MODELS, label="Study model (stage 1)", widget="radio", url="stage1",
        methods=M_DYNAMIC, r=("lmm",),
        labels={"lmm": "Lagged mixed model (default)", "riclpm": "RI-CLPM (latent-centred SEM, FIML)",
                "dpm": "Dynamic panel model (ML-SEM, FIML)"},
        help="The RI-CLPM and the dynamic panel model separate stable patient differences from "
             "session-to-session change inside the model, without the Nickell and feedback bias of "
             "person-mean centering (METHODS §15). They use lag 1 between sessions; centering, lag, "
             "trend and estimator then do not apply.")

    CONSTRAINTS: ClassVar[tuple[Constraint, ...]] = (
        Constraint(("lag", "directions"), lambda o: o.lag == 0 and tuple(o.directions) != ("symptoms_to_alliance",),
                   "lag must be 1–3 for alliance → symptoms; lag 0 (alliance rated later in the same session as "
                   "the symptoms) is only for the direction 'symptoms_to_alliance'."),
        Constraint(("cross_level", "centering"), lambda o: o.cross_level and o.centering in ("none", "grand_mean"),
                   "cross_level needs a between-patient part of the predictor: use centering 'person_mean' or "
                   "'detrended'."),
        Constraint(("outcome_moderator", "centering", "control_prior_outcome"),
                   lambda o: o.outcome_moderator and (o.centering in ("none", "grand_mean")
                                                      or not o.control_prior_outcome),
                   "outcome_moderator needs the between-patient part of the outcome as a main effect: use centering "
                   "'person_mean' or 'detrended' with control_prior_outcome=True."),
        Constraint(("time_trend", "estimator"), lambda o: o.time_trend == "fixed_random" and o.estimator == "fixed_effects",
                   "A random slope of time needs estimator='mixed'; with 'fixed_effects' use time_trend='fixed'."),
        Constraint(("df_method", "estimator"), lambda o: o.df_method == "satterthwaite" and o.estimator != "mixed",
                   "df_method='satterthwaite' needs estimator='mixed' (fixed effects use t(G − 1))."),
    )

    @property
    def hybrid(self) -> bool:
        """True when X and the prior outcome are split into within and between parts."""
        return self.centering in ("person_mean", "detrended")


def model_terms(options: LagOptions) -> tuple[str, ...]:
    """Fixed-effect terms of the stage-1 model, in table order (§5)."""
    fe = options.estimator == "fixed_effects"
    t = [] if fe else ["intercept"]
    t.append("within")
    if options.hybrid and not fe:
        t.append("between")
    if options.control_prior_outcome:
        t.append("prior_within")
        if options.hybrid and not fe:
            t.append("prior_between")
    if options.cross_level:
        t.append("interaction")
    if options.outcome_moderator:
        t.append("interaction_outcome")
    if options.time_trend != "none":
        t.append("time")
    return tuple(t)


def effect_label(options: LagOptions) -> str:
    """``"within-patient"`` for person-mean/detrended centering or the fixed-effects
    estimator; ``"total"`` (within + between mixed) otherwise."""
    if options.hybrid or options.estimator == "fixed_effects":
        return "within-patient"
    return "total"


def _check_direction(direction):
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(map(repr, DIRECTIONS))}; got {direction!r}.")
    return _VARS[direction]


# --------------------------------------------------------------------------- data → arrays


def covariate_is_numeric(col: pd.Series) -> bool:
    """True when a covariate column enters as a centred number, False when as 0/1 dummies (§5):
    numeric dtypes except booleans are numbers; text, categorical and boolean columns are levels."""
    return bool(pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col))


class StudyData:
    """Stage-1 input: canonical data sorted by (study, patient, session),
    restricted to the session window and standardized per study (§2), with
    the patient-level covariates named in the options. Shared by every
    centering, direction and lag; build it once with :func:`prepare_studies`.

    Attributes used by callers: ``study_labels`` (sorted), ``n`` (rows),
    ``G`` (patients), ``S`` (studies), ``g`` (patient code per row), ``scode``
    (study code per row), ``sess``, ``raw``/``z`` (variable → values on the
    original / model scale), ``scale`` (variable → (mean, SD) per study),
    ``problems`` (study → reasons it cannot be fitted).
    """

    def __init__(self, df: pd.DataFrame, options: LagOptions):
        d = require_canonical(df, study=False, min_rows=0, sort=False)  # same rows and order as df
        n0 = len(d)
        sess = d["session"].to_numpy(dtype=np.int64)
        if "study" in d.columns:
            scode, slabels = pd.factorize(d["study"], sort=True)
        else:
            scode, slabels = np.zeros(n0, dtype=np.int64), pd.Index(["Study"])
        pcode, plabels = pd.factorize(d["patient"], sort=True)
        a = d["alliance"].to_numpy(dtype=float, na_value=np.nan)
        s = d["symptoms"].to_numpy(dtype=float, na_value=np.nan)
        keep = np.ones(n0, dtype=bool)
        if options.sessions is not None:
            keep = (sess >= options.sessions[0]) & (sess <= options.sessions[1])
        idx = np.flatnonzero(keep)
        scode, pcode, sess, a, s = scode[idx], pcode[idx], sess[idx], a[idx], s[idx]
        order = np.lexsort((sess, pcode, scode))
        scode, pcode, sess, a, s = scode[order], pcode[order], sess[order], a[order], s[order]
        self.src_index = idx[order]  # position in the caller's frame
        n = len(sess)
        newpat = np.r_[True, (scode[1:] != scode[:-1]) | (pcode[1:] != pcode[:-1])] if n else np.zeros(0, bool)
        self.n = n
        self.study_labels = [str(x) for x in slabels]
        self.scode = scode
        self.sess = sess
        self.pstart = np.flatnonzero(newpat)
        self.G = len(self.pstart)
        self.psize = np.diff(np.r_[self.pstart, n])
        self.g = np.repeat(np.arange(self.G), self.psize)
        self.pat_study = scode[self.pstart] if self.G else np.zeros(0, np.int64)
        self.pat_label = np.asarray(plabels.astype(str))[pcode[self.pstart]] if self.G else np.zeros(0, str)
        self.S = len(self.study_labels)
        # study row ranges (rows are sorted by study)
        sc_counts = np.bincount(scode, minlength=self.S)
        self.sstart = np.r_[0, np.cumsum(sc_counts)]
        pc_counts = np.bincount(self.pat_study, minlength=self.S)
        self.spstart = np.r_[0, np.cumsum(pc_counts)]
        self.raw = {"alliance": a, "symptoms": s}
        self.z = {}
        self.scale = {}
        self.problems = {lab: [] for lab in self.study_labels}
        self.standardize_by = options.standardize_by if options.standardize else None
        for var, x in self.raw.items():
            self._standardize(var, x, options)
        self.covariates = self._read_covariates(df, options.covariates) if options.covariates else {}
        self._centered = {}

    def _standardize(self, var: str, x: np.ndarray, options: LagOptions) -> None:
        """z = (x − study mean) / SD, the SD over all observed values (``standardize_by="total"``,
        ddof 1) or the pooled within-patient SD √(Σ(x − x̄_i)² / (N − G)) ("within") — §2."""
        scode, S = self.scode, self.S
        obs = ~np.isnan(x)
        cnt = np.bincount(scode[obs], minlength=S).astype(float)
        sm = np.bincount(scode[obs], weights=x[obs], minlength=S)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = sm / cnt
            dev = np.where(obs, x - mean[scode], 0.0)
            var_ = np.bincount(scode, weights=dev**2, minlength=S) / (cnt - 1)
        sd = np.sqrt(var_)
        for k in range(S):
            if cnt[k] < 2 or not sd[k] > 0:
                self.problems[self.study_labels[k]].append(
                    f"{var} has no variance in the analysis window ({int(cnt[k])} observed value(s))"
                )
        if options.standardize and options.standardize_by == "within":
            g = self.g
            npat = np.bincount(g[obs], minlength=self.G)
            with np.errstate(invalid="ignore", divide="ignore"):
                pm = np.bincount(g[obs], weights=x[obs], minlength=self.G) / npat
                wdev = np.where(obs, x - pm[g], 0.0)
                g_obs = np.bincount(self.pat_study[npat > 0], minlength=S)
                sd = np.sqrt(np.bincount(scode, weights=wdev**2, minlength=S) / (cnt - g_obs))
            for k in range(S):
                if cnt[k] >= 2 and not sd[k] > 0:
                    self.problems[self.study_labels[k]].append(
                        f"{var} does not vary within patients (within-patient SD 0), so it cannot be standardized "
                        "by the within-patient SD"
                    )
        if options.standardize:
            with np.errstate(invalid="ignore", divide="ignore"):
                good = sd > 0
                z = np.where(good[scode], (x - mean[scode]) / np.where(good, sd, 1.0)[scode], np.nan)
            self.z[var] = z
        else:
            self.z[var] = x
        self.scale[var] = (mean, sd)

    def _read_covariates(self, df: pd.DataFrame, names: tuple) -> dict:
        """Patient-level covariates: name → (kind, per-patient values). Numeric columns give floats
        (NaN = missing); others give integer level codes (−1 = missing) and the sorted level labels."""
        missing = [c for c in names if c not in df.columns]
        if missing:
            raise ValueError(f"The covariate column(s) {', '.join(missing)} are not in the data.")
        src = self.src_index
        out = {}
        for name in names:
            col = df[name].iloc[src] if len(src) else df[name].iloc[:0]
            numeric = covariate_is_numeric(col)
            if numeric:
                vals = col.to_numpy(dtype=float, na_value=np.nan)
                codes, levels = vals, None
            else:
                codes, levels = pd.factorize(col.astype("string"), sort=True)
                codes = codes.astype(float)
                codes[codes < 0] = np.nan
                levels = [str(v) for v in levels]
            per = np.full(self.G, np.nan)
            ok = ~np.isnan(codes)
            # first observed value of each patient; any other value in the patient's rows is an error
            first = np.full(self.G, -1)
            rows_ok = np.flatnonzero(ok)
            if len(rows_ok):
                gi = self.g[rows_ok]
                f = np.r_[True, gi[1:] != gi[:-1]]
                first[gi[f]] = rows_ok[f]
                per[gi[f]] = codes[rows_ok[f]]
                bad = codes[rows_ok] != per[gi]
                if bad.any():
                    j = rows_ok[np.flatnonzero(bad)[0]]
                    raise ValueError(
                        f"Covariate '{name}' must be patient-level (one value per patient), but patient "
                        f"{self.pat_label[self.g[j]]} of study {self.study_labels[self.scode[j]]} has several values."
                    )
            out[name] = ("numeric", per, None) if numeric else ("categorical", per, levels)
        return out

    # ---------------------------------------------------------------- centering (§3)
    def centered(self, var: str, centering: str):
        """Return (center, within, between, n_obs per patient) for one variable."""
        key = (var, centering)
        if key in self._centered:
            return self._centered[key]
        x = self.z[var]
        obs = ~np.isnan(x)
        g, G, S = self.g, self.G, self.S
        nobs = np.bincount(g[obs], minlength=G).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            pm = np.bincount(g[obs], weights=x[obs], minlength=G) / nobs
        has = nobs > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            gm_study = np.bincount(self.pat_study[has], weights=pm[has], minlength=S) / np.bincount(
                self.pat_study[has], minlength=S
            )
        between = pm - gm_study[self.pat_study]  # per patient; NaN when no observed value
        if centering == "none":
            center = np.zeros(self.n)
            bt = None
        elif centering == "grand_mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                m_all = np.bincount(self.scode[obs], weights=x[obs], minlength=S) / np.bincount(
                    self.scode[obs], minlength=S
                )
            center = m_all[self.scode]
            bt = None
        elif centering == "person_mean":
            center = pm[g]
            bt = between[g]
        else:  # detrended
            t = self.sess.astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                tbar = np.bincount(g[obs], weights=t[obs], minlength=G) / nobs
            td = np.where(obs, t - tbar[g], 0.0)
            xd = np.where(obs, x - pm[g], 0.0)
            sxx = np.bincount(g, weights=td * td, minlength=G)
            sxy = np.bincount(g, weights=td * xd, minlength=G)
            ok = (nobs >= 3) & (sxx > 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                slope = np.where(ok, sxy / np.where(ok, sxx, 1.0), np.nan)
            center = pm[g] + slope[g] * (t - tbar[g])
            bt = between[g]
        within = x - center
        out = (center, within, bt, nobs)
        self._centered[key] = out
        return out

    # ---------------------------------------------------------------- pairing (§4)
    def lead_index(self, yvar: str, lag: int, pairing: str) -> np.ndarray:
        """Row index of the outcome paired with each row, −1 when none."""
        key = ("lead", yvar, lag, pairing)
        if key in self._centered:
            return self._centered[key]
        n = self.n
        yobs = ~np.isnan(self.z[yvar])
        if lag == 0:  # outcome rated later in the same session (§4)
            j = np.where(yobs, np.arange(n), -1)
            self._centered[key] = j
            return j
        if pairing == "session":
            span = int(self.sess.max()) + lag + 1 if n else 1
            k = self.g.astype(np.int64) * span + self.sess
            target = k + lag
            pos = np.searchsorted(k, target)
            pos_c = np.minimum(pos, max(n - 1, 0))
            ok = (pos < n) & (k[pos_c] == target)
            j = np.where(ok, pos_c, -1)
        else:
            oi = np.flatnonzero(yobs)
            pos = np.searchsorted(oi, np.arange(n), side="right") + (lag - 1)
            pos_c = np.minimum(pos, max(len(oi) - 1, 0))
            if len(oi):
                cand = oi[pos_c]
                ok = (pos < len(oi)) & (self.g[cand] == self.g)
                j = np.where(ok, cand, -1)
            else:
                j = np.full(n, -1)
        j = np.where((j >= 0) & yobs[np.maximum(j, 0)], j, -1)
        self._centered[key] = j
        return j

    def previous_index(self, yvar: str, pairing: str) -> np.ndarray:
        """Row index of the outcome one step earlier (session t − 1, or the patient's previous row with
        an observed outcome for ``next_observed``), −1 when none: the prior outcome of a lag-0 model."""
        n = self.n
        yobs = ~np.isnan(self.z[yvar])
        if pairing == "session":
            span = int(self.sess.max()) + 2 if n else 1
            k = self.g.astype(np.int64) * span + self.sess
            pos = np.searchsorted(k, k - 1)
            pos_c = np.minimum(pos, max(n - 1, 0))
            j = np.where((pos < n) & (k[pos_c] == k - 1), pos_c, -1)
        else:
            oi = np.flatnonzero(yobs)
            pos = np.searchsorted(oi, np.arange(n), side="left") - 1
            if len(oi):
                cand = oi[np.maximum(pos, 0)]
                j = np.where((pos >= 0) & (self.g[cand] == self.g), cand, -1)
            else:
                j = np.full(n, -1)
        return np.where((j >= 0) & yobs[np.maximum(j, 0)], j, -1)


@dataclass(eq=False)
class ModelRows:
    """Model rows of one direction over all studies (sorted by study, patient); see :func:`model_rows`.

    ``idx``: row positions in the :class:`StudyData`; ``lead``: row positions of
    the outcome; ``cols``: term → values per model row (plus ``lead``, the
    model outcome); ``extra``: display columns; ``dropped``: per-study counts
    of rows left out by reason; ``terms``: the model's terms (covariate terms
    included; a study may drop covariate terms that are constant in it).
    """

    idx: np.ndarray
    lead: np.ndarray
    cols: dict
    extra: dict
    dropped: dict
    terms: tuple
    covariate_terms: dict = field(default_factory=dict)  # main term -> its "within × " interaction
    covariate_levels: dict = field(default_factory=dict)  # categorical covariate -> (reference level, dummies)


def _covariate_columns(data: StudyData, options: LagOptions, idx: np.ndarray, within: np.ndarray):
    """Covariate main-effect and interaction columns for model rows ``idx`` (§5).

    Numeric: value − study mean over the study's patients with a value (÷ their SD, ddof 1, when
    ``standardize``). Categorical: a 0/1 dummy per level except the first (sorted over all data).
    Returns (cols, interactions: main term → its ``within × `` term, categorical covariate →
    (reference level, its dummy terms)).
    """
    cols, mains, groups = {}, [], {}
    gi = data.g[idx]
    for name, (kind, per, levels) in data.covariates.items():
        v = per[gi]
        if kind == "numeric":
            has = ~np.isnan(per)
            ps = data.pat_study[has]
            cnt = np.bincount(ps, minlength=data.S).astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                m = np.bincount(ps, weights=per[has], minlength=data.S) / cnt
                sd = np.sqrt(np.bincount(ps, weights=(per[has] - m[ps]) ** 2, minlength=data.S) / (cnt - 1))
            sc = data.scode[idx]
            c = v - m[sc]
            if options.standardize:
                with np.errstate(invalid="ignore", divide="ignore"):
                    c = np.where(sd[sc] > 0, c / np.where(sd[sc] > 0, sd[sc], 1.0), 0.0 * c)
            cols[name] = c
            mains.append(name)
        else:
            dummies = []
            for j, lev in enumerate(levels[1:], start=1):
                t = f"{name}: {lev}"
                cols[t] = np.where(np.isnan(v), np.nan, (v == j).astype(float))
                dummies.append(t)
            mains.extend(dummies)
            groups[name] = (levels[0], tuple(dummies))
    inter = {}
    for t in mains:
        inter[t] = f"within × {t}"
        cols[inter[t]] = cols[t] * within
    return cols, inter, groups


def model_rows(data: StudyData, options: LagOptions, direction: str) -> ModelRows:
    """The stage-1 model rows of one direction for every study (METHODS §3–§5).

    Centre X and Y (§3), pair each row with its outcome (§4; lag 0: the same
    session's outcome, prior outcome from the previous session), keep rows
    with every term present. :func:`prepare` returns the same rows as a frame.
    """
    xvar, yvar = _check_direction(direction)
    if tuple(data.covariates) != options.covariates:
        raise ValueError("The data were prepared with other covariates than these options name; "
                         "call prepare_studies with the same options.")
    xc, xw, xb, _xn = data.centered(xvar, options.centering)
    yc, yw, yb, _yn = data.centered(yvar, options.centering)
    lead = data.lead_index(yvar, options.lag, options.pairing)
    prior = data.previous_index(yvar, options.pairing) if options.lag == 0 else np.arange(data.n)
    terms = model_terms(options)
    fe = options.estimator == "fixed_effects"
    x = data.z[xvar]
    y = data.z[yvar]
    has_lead = lead >= 0
    ok_x = ~np.isnan(xw)
    if xb is not None:
        ok_x &= ~np.isnan(xb)
    ok = has_lead & ok_x
    if options.control_prior_outcome:
        pj = np.maximum(prior, 0)
        ok_y = (prior >= 0) & ~np.isnan(yw[pj])
        if yb is not None and options.estimator == "mixed":
            ok_y &= ~np.isnan(yb)
        ok &= ok_y
    for _kind, per, _levels in data.covariates.values():
        ok &= ~np.isnan(per[data.g])
    idx = np.flatnonzero(ok)
    li = lead[idx]
    cols = {"within": xw[idx]}
    if xb is not None:
        cols["between"] = xb[idx]
    if options.control_prior_outcome:
        cols["prior_within"] = yw[prior[idx]]
        if yb is not None:
            cols["prior_between"] = yb[idx]
    if options.cross_level:
        cols["interaction"] = cols["between"] * cols["within"]
    if options.outcome_moderator:
        cols["interaction_outcome"] = yb[idx] * cols["within"]
    sc = data.scode[idx]
    if options.time_trend != "none":
        t = data.sess[idx].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            tm = np.bincount(sc, weights=t, minlength=data.S) / np.bincount(sc, minlength=data.S)
        cols["time"] = t - tm[sc]
    cov_terms, cov_levels = {}, {}
    if options.covariates:
        ccols, cov_terms, cov_levels = _covariate_columns(data, options, idx, cols["within"])
        cols.update(ccols)
        terms = terms + (() if fe else tuple(cov_terms)) + tuple(cov_terms.values())
    cols["lead"] = y[li]
    extra = {
        "x": x[idx],
        "x_center": xc[idx],
        "y": y[idx],
        "y_center": yc[idx],
        "x_raw": data.raw[xvar][idx],
        "y_raw": data.raw[yvar][idx],
        "lead_raw": data.raw[yvar][li],
        "lead_session": data.sess[li],
        "prior_session": data.sess[prior[idx]],
    }
    S = data.S
    dropped = {
        "rows": np.bincount(data.scode, minlength=S),
        "no_outcome_pair": np.bincount(data.scode[~has_lead], minlength=S),
        "missing_terms": np.bincount(data.scode[has_lead & ~ok], minlength=S),
    }
    return ModelRows(idx=idx, lead=li, cols=cols, extra=extra, dropped=dropped, terms=terms,
                     covariate_terms=cov_terms, covariate_levels=cov_levels)


def _rows_frame(base: StudyData, rows: ModelRows, options: LagOptions, direction: str) -> pd.DataFrame:
    idx = rows.idx
    xvar, yvar = _VARS[direction]
    out = {
        "study": pd.array(np.asarray(base.study_labels, dtype=object)[base.scode[idx]] if len(idx) else [], dtype="string"),
        "patient": pd.array(base.pat_label[base.g[idx]] if len(idx) else [], dtype="string"),
        "session": base.sess[idx],
        "lead_session": rows.extra["lead_session"],
        "x_raw": rows.extra["x_raw"],
        "x": rows.extra["x"],
        "x_center": rows.extra["x_center"],
        "within": rows.cols["within"],
    }
    if "between" in rows.cols:
        out["between"] = rows.cols["between"]
    out.update({"y_raw": rows.extra["y_raw"], "y": rows.extra["y"], "y_center": rows.extra["y_center"]})
    if options.lag == 0 and options.control_prior_outcome:
        out["prior_session"] = rows.extra["prior_session"]
    for t in ("prior_within", "prior_between", "interaction", "interaction_outcome", "time"):
        if t in rows.cols:
            out[t] = rows.cols[t]
    for main, inter in rows.covariate_terms.items():
        out[main] = rows.cols[main]
        out[inter] = rows.cols[inter]
    out["lead_raw"] = rows.extra["lead_raw"]
    out["lead"] = rows.cols["lead"]
    df = pd.DataFrame(out)
    df.attrs.update(
        {
            "direction": direction,
            "predictor": xvar,
            "outcome": yvar,
            "terms": list(rows.terms),
            "options": options.to_dict(),
        }
    )
    return df


def prepare(df: pd.DataFrame, options: LagOptions | None = None, direction: str = "alliance_to_symptoms") -> pd.DataFrame:
    """The model rows of one direction, exactly as they enter the stage-1 model.

    Steps (METHODS §2–§4): restrict to the session window; z-score alliance and
    symptoms within each study over all observed values in the window (ddof 1,
    when ``standardize``); centre X (predictor) and Y (outcome at t) per §3 —
    the person mean, grand mean and detrending use every observed value of the
    patient in the window, not only the paired rows; pair each row with the
    outcome at session t + L (``pairing="session"``) or the patient's L-th later
    row with an observed outcome (``"next_observed"``); keep rows with every
    model term present (nothing is imputed).

    Columns: ``study, patient, session, lead_session``; the predictor at t on
    the original metric (``x_raw``), after standardization (``x``), the value
    subtracted by the centering (``x_center``: 0, grand mean, person mean or
    the patient's fitted trend) and ``within = x − x_center``; ``between =
    person mean − mean of the study's person means`` (person_mean/detrended;
    every patient with an observed value counts, also one whose detrended
    within part is missing for lack of 3 values); the same for
    the outcome at t (``y_raw, y, y_center``, terms ``prior_within``,
    ``prior_between``); ``interaction = between·within``; ``time`` = session −
    mean session of the study's model rows; the outcome at the lead session
    (``lead_raw``, model outcome ``lead``, standardized but never centred);
    ``interaction_outcome = Y^b·within``; per covariate its centred column (or
    0/1 dummies ``C: level``) and ``within × C``; with ``lag = 0`` the
    outcome's session equals ``session`` and ``prior_session`` (t − 1) says
    where the prior outcome comes from.
    Columns of terms not in the model are absent. ``attrs`` records the
    direction, predictor, outcome, terms and options.
    """
    options = options or LagOptions()
    _check_direction(direction)
    base = StudyData(df, options)
    rows = model_rows(base, options, direction)
    return _rows_frame(base, rows, options, direction)


def pairing_counts(df: pd.DataFrame, options: LagOptions | None = None) -> pd.DataFrame:
    """Complete model rows (pairs) per study and direction under each pairing mode (§4).

    Columns: ``study, direction, rows`` (rows in the window), ``pairs_session``,
    ``pairs_next_observed``, ``patients_session``, ``patients_next_observed``
    and ``median_gap_next_observed`` (median session distance of the
    next-observed pairs; equals the lag when nothing was skipped).
    """
    options = options or LagOptions()
    base = StudyData(df, options)
    recs = []
    for direction in options.directions:
        res = {}
        for mode in PAIRINGS:
            r = model_rows(base, options.replace(pairing=mode), direction)
            sc = base.scode[r.idx]
            pairs = np.bincount(sc, minlength=base.S)
            pats = np.zeros(base.S, dtype=int)
            if len(r.idx):
                gi = base.g[r.idx]
                first = np.r_[True, gi[1:] != gi[:-1]]
                pats = np.bincount(sc[first], minlength=base.S)
            gap = r.extra["lead_session"] - base.sess[r.idx]
            res[mode] = (pairs, pats, sc, gap)
        for k, lab in enumerate(base.study_labels):
            sc, gap = res["next_observed"][2], res["next_observed"][3]
            gk = gap[sc == k]
            recs.append(
                {
                    "study": lab,
                    "direction": direction,
                    "rows": int(base.sstart[k + 1] - base.sstart[k]),
                    "pairs_session": int(res["session"][0][k]),
                    "pairs_next_observed": int(res["next_observed"][0][k]),
                    "patients_session": int(res["session"][1][k]),
                    "patients_next_observed": int(res["next_observed"][1][k]),
                    "median_gap_next_observed": float(np.median(gk)) if len(gk) else np.nan,
                }
            )
    out = pd.DataFrame(recs)
    out["study"] = out["study"].astype("string")
    return out


# --------------------------------------------------------------------------- fit


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
    1e-4 as lme4's ``isSingular``). ``status`` is ``"ok"``, ``"warning"``
    (usable; see ``messages``) or ``"failed"`` (no estimates; reason in
    ``messages``).

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
             lo: int, hi: int) -> StudyFit:
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
    status = "warning" if (est.singular or n_pat < 10) else "ok"
    diag, dmsgs = _diagnostics(data, k, g, xvar, coef, options)
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


def _diagnostics(data: StudyData, k: int, g: np.ndarray, xvar: str, coef: dict, options: LagOptions):
    """Pairs and observations per patient, ICC and person-mean reliability of X, Nickell bias (§5).
    Returns (StudyFit diagnostic fields, messages)."""
    msgs = []
    terms = coef["term"]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    med_pairs = float(np.median(np.diff(np.r_[starts, len(g)])))
    _, _, _, nobs = data.centered(xvar, options.centering)
    med_obs = float(np.median(nobs[g[starts]]))
    icc = _icc(data, xvar, k)
    rel = med_obs * icc / (1.0 + (med_obs - 1.0) * icc) if np.isfinite(icc) else np.nan
    nick = np.nan
    if options.control_prior_outcome and (options.hybrid or options.estimator == "fixed_effects"):
        rho_hat = float(coef["estimate"][terms.index("prior_within")])
        T = med_pairs
        if T > 2:
            rho = (rho_hat * (T - 1) + 1.0) / (T - 2)
            nick = -(1.0 + rho) / (T - 1)
            msgs.append(
                f"Nickell bias: with about {T:g} pairs per patient the within-centred prior-outcome "
                f"coefficient ({rho_hat:.3f}) is biased by about {nick:.3f} (−(1+ρ)/(T−1), ρ ≈ {rho:.2f}; "
                "METHODS §5); the cross-lagged within effect can be biased as well."
            )
        else:
            msgs.append(
                "Nickell bias: with at most two pairs per patient the within-centred prior-outcome "
                "coefficient is severely biased (METHODS §5)."
            )
    if "between" in terms and np.isfinite(rel) and rel < 0.7:
        msgs.append(
            f"The person mean of {xvar} has reliability {rel:.2f} (ICC {icc:.2f}, {med_obs:g} values per "
            "patient): the between-patient effect is pulled toward the within effect (METHODS §5)."
        )
    diag = {
        "median_pairs": med_pairs, "median_observations": med_obs, "icc_predictor": float(icc),
        "reliability_person_mean": float(rel), "nickell_bias": float(nick),
    }
    return diag, msgs


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


def prepare_studies(df: pd.DataFrame, options: LagOptions | None = None) -> StudyData:
    """Validate canonical long data and build the stage-1 input (:class:`StudyData`, METHODS §1–§2):
    window, sort, per-study standardization, covariates. Raises ValueError on bad input or an empty
    window."""
    data = StudyData(df, options or LagOptions())
    if data.n == 0:
        raise ValueError("No rows in the analysis window.")
    return data


def fit_studies(data: StudyData, options: LagOptions, direction: str) -> list[StudyFit]:
    """Fit the stage-1 lagged model (METHODS §5) of one direction to every study of ``data``.

    One :class:`StudyFit` per study, in ``data.study_labels`` order; a study
    that cannot be fitted comes back with ``status="failed"`` and the reason.
    ``options`` must agree with those ``data`` was prepared with on the
    window, standardization and covariates.
    """
    _check_direction(direction)
    rows = model_rows(data, options, direction)
    return [_fit_one(data, rows, k, options, direction, lo, hi) for k, lo, hi in _study_slices(data, rows)]


def fit_study(df: pd.DataFrame, options: LagOptions | None = None, direction: str = "alliance_to_symptoms") -> StudyFit:
    """Fit the stage-1 lagged model (METHODS §5) to one study's data.

    ``df`` must hold a single study (or have no ``study`` column). Returns a
    :class:`StudyFit`; a study that cannot be fitted (fewer than 3 patients
    with a complete pair, a variable without variance, a singular design, one
    pair per patient, non-convergence) comes back with ``status="failed"`` and
    the reason in ``messages`` rather than raising. Bad input (missing columns,
    duplicate keys, several studies, unknown options) raises ``ValueError``.
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


@dataclass(frozen=True, eq=False)
class PatientView:
    """One patient's model rows and complete observed series (for the "what went into the model" figure).

    ``rows``: the patient's rows of :func:`prepare`; ``series``: every
    session of the patient in the window with the predictor ``x`` and outcome
    ``y`` on the model scale (standardized when the options say so; NaN where
    not observed). ``direction``, ``options``, ``study``, ``patient``.
    """

    rows: pd.DataFrame
    series: pd.DataFrame
    direction: str
    options: LagOptions
    study: str
    patient: str


def patient_view(df: pd.DataFrame, options: LagOptions | None, direction: str, patient, study=None) -> PatientView:
    """The model rows and observed series of one patient (METHODS §2–§4); ValueError when the
    patient is not in the data or the id occurs in several studies and ``study`` is not given."""
    options = options or LagOptions()
    xvar, yvar = _check_direction(direction)
    data = StudyData(df, options)
    sel = data.pat_label == str(patient)
    if study is not None:
        sel &= np.asarray(data.study_labels, dtype=object)[data.pat_study] == str(study)
    pats = np.flatnonzero(sel)
    if len(pats) == 0:
        raise ValueError(f"Patient {patient!r} is not in the data (in the analysis window).")
    if len(pats) > 1:
        raise ValueError(f"Patient id {patient!r} occurs in several studies; name the study.")
    p = int(pats[0])
    st = data.study_labels[data.pat_study[p]]
    lo, hi = data.pstart[p], data.pstart[p] + data.psize[p]
    series = pd.DataFrame({"session": data.sess[lo:hi], "x": data.z[xvar][lo:hi], "y": data.z[yvar][lo:hi]})
    rows = _rows_frame(data, model_rows(data, options, direction), options, direction)
    mine = rows[(rows["patient"] == str(patient)) & (rows["study"] == st)].reset_index(drop=True)
    mine.attrs = dict(rows.attrs)
    return PatientView(rows=mine, series=series, direction=direction, options=options, study=st,
                       patient=str(patient))
