"""The lagged analysis's options, declared once (LagOptions; METHODS §2–§6), its model terms and vocabularies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from analysis import meta
from analysis.options import Constraint, Declared, option

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
        methods=M_DYNAMIC,
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


