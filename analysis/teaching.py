"""The Teaching page's live simulation: total vs within vs between effects, the
opposite-slopes scatter, Nickell bias, and the sentences that describe them.

Pure functions (no streamlit). The simulation is :func:`analysis.simulate.simulate_study`
with RAW instruments (latent units) and these choices:

* within-person VAR(1): ``s_i,t+1 = ρ·s_it + c_AS·a_it + e``,
  ``a_i,t+1 = e`` (symptoms carry over with autoregression ρ; alliance
  fluctuates around each patient's own level without carry-over, and there is
  no symptoms → alliance effect, so the only within-person link is c_AS and
  the within truth is c_AS whether or not the prior outcome is controlled);
* person means ``(mA_i, mS_i)`` with SD 1 and correlation r (``between_corr``);
* whole sessions missing completely at random with probability ``missing``.

Models (METHODS §3–§5, ``standardize=False``, lag 1, pairing by session, random
intercept REML via :func:`analysis.lagged.fit_study`):

* total: centering ``none`` — ``S_t+1 = b0 + b·A_t [+ a·S_t] + u_i + e``;
* hybrid: centering ``person_mean`` — ``S_t+1 = b0 + bW·A^w_t + bB·A^b
  [+ aW·S^w_t + aB·S^b] + u_i + e``.

What "truth" means for each coefficient (:func:`true_values`):

* ``within``: c_AS. With the prior outcome controlled it is the VAR
  coefficient; without it, the population within-person lagged slope
  ``Cov(a_t, s_t+1) / Var(a_t) = c_AS + ρ·Σ_as/Σ_aa`` (Σ the stationary within
  covariance), which equals c_AS here because Σ_as = 0 (alliance has no
  carry-over). :func:`true_values` computes the general formula.
* ``between`` without the control: the slope of the patients' true (latent)
  mean symptoms on their true mean alliance, ``r·SD_S/SD_A = r``. With the
  control the between term compares patients with the *same* mean symptoms;
  in this model a patient's symptom level is fully described by mS_i, so the
  true value is 0.
* ``total``: no single true value; the random-intercept model blends within-
  and between-patient information (weights depend on variances and T).

Because the observed person mean averages only T noisy sessions, the between
estimate is pulled away from the latent truth (METHODS §5, reliability).
:func:`expected_between` gives its large-sample value for complete data with T
sessions, from the VAR autocovariances ``Γ(h) = Bʰ·Σ``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.linalg import solve_discrete_lyapunov

from analysis import formatting
from analysis.lagged import LagOptions, fit_study
from analysis.lagged.options import M_CENTER, M_LAG, M_STAGE1
from analysis.options import Declared, option
from analysis.progress import checkpoint
from analysis.simulate import RAW, Simulation, simulate_study

__all__ = [
    "Estimates",
    "ScatterSummary",
    "TeachingParams",
    "TeachingSample",
    "TrueValues",
    "between_sentence",
    "estimates_sentence",
    "expected_between",
    "fit_estimates",
    "latent_estimates",
    "fmt",
    "nickell_approximation",
    "nickell_curve",
    "nickell_sentence",
    "ols_slope",
    "Replication",
    "replicate",
    "person_means",
    "run",
    "scatter_sentence",
    "scatter_summary",
    "simulate",
    "true_values",
    "within_pairs",
]

DIRECTION = "alliance_to_symptoms"


def fmt(x: float, sign: bool = False) -> str:
    """A number for the page (analysis.formatting: two decimals, true minus, "+" when ``sign``)."""
    return formatting.signed(x, 2) if sign else formatting.num(x, 2)


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class TeachingParams(Declared):
    """The simulation's settings (the page's sliders), declared once (:mod:`analysis.options`).

    ``within_effect`` = c_AS (alliance deviation at t → symptom deviation at
    t + 1, latent units); ``between_corr`` = r, correlation of the patients'
    latent alliance and symptom means; ``autoregression`` = ρ of symptoms
    (alliance has none; module docstring); ``missing`` = probability that a
    whole session is missing (MCAR). ``control_prior`` adds the prior symptoms
    (within and between parts) to every model (METHODS §5,
    ``control_prior_outcome``). ``feedback`` = c_SA, symptom deviation at t →
    alliance deviation at t + 1 (reciprocal feedback; 0 = none). The page's
    sliders may offer a narrower range (``ui.persist.TEACHING``).

    >>> TeachingParams(n_sessions=7.0).n_sessions
    7
    >>> TeachingParams(within_effect=1.5)
    Traceback (most recent call last):
    ...
    ValueError: within_effect must be a number from -0.9 to 0.9; got 1.5.
    """

    within_effect: float = option(
        "float", -0.20, lo=-0.9, hi=0.9, label="Within-patient effect: alliance → next-session symptoms",
        url="within", methods=M_CENTER,
        help="When a patient's alliance is 1 unit above their own average, their symptoms at the next "
             "session change by this much. Negative = a better-than-usual alliance is followed by fewer symptoms.")
    between_corr: float = option(
        "float", 0.50, lo=-0.95, hi=0.95, label="Between-patient correlation of average alliance and average symptoms",
        url="between", methods=M_CENTER,
        help="Positive = patients with a stronger average alliance have more severe average symptoms (as in "
             "the ICBT trial of the within/between paper, where more anxious patients formed stronger alliances).")
    autoregression: float = option(
        "float", 0.30, lo=0.0, hi=0.9, label="Autoregression of symptoms (carry-over to the next session)",
        url="ar", methods=M_CENTER,
        help="ρ: how much of this session's deviation from a patient's usual symptom level is still there at "
             "the next session. Alliance has no carry-over in this simulation, to keep the truth simple.")
    n_sessions: int = option("int", 10, lo=3, hi=60, label="Sessions per patient", url="sessions", methods=M_LAG,
                             help="Sessions simulated per patient (before missing sessions are dropped).")
    n_patients: int = option("int", 300, lo=10, hi=5000, label="Patients", url="patients", methods=M_STAGE1,
                             help="Patients simulated.")
    missing: float = option(
        "float", 0.10, lo=0.0, hi=0.6, label="Missing sessions (share)", methods=M_LAG,
        help="Each session is missing completely at random with this probability. A pair (session t, t+1) "
             "needs both sessions.")
    seed: int = option("int", 1, lo=0, label="Random seed", url="seed", methods=M_STAGE1,
                       help="The same seed and settings always give the same patients.")
    control_prior: bool = option(
        "flag", True, label="Control for prior symptoms (symptoms at session t)", url="prior", methods=M_STAGE1,
        help="Adds the symptoms at session t (within and between parts) to every model, as the Lagged effects "
             "page does by default.")
    feedback: float = option(
        "float", 0.0, lo=-0.5, hi=0.5, label="Feedback: symptoms → next-session alliance", url="feedback",
        methods=M_CENTER,
        help="Reciprocal feedback: a session with more severe symptoms than usual is followed by a weaker "
             "alliance. With feedback the person-mean model's alliance → symptoms estimate is biased; the "
             "latent-centred RI-CLPM and dynamic panel model (section 4) are not.")

    def lag_options(self, centering: str) -> LagOptions:
        return LagOptions(centering=centering, standardize=False, control_prior_outcome=self.control_prior,
                          directions=(DIRECTION,))


def simulate(params: TeachingParams) -> Simulation:
    """Simulate one study with RAW instruments (latent units), sessions 1..T."""
    return simulate_study(
        params.n_patients,
        range(1, params.n_sessions + 1),
        study="Teaching simulation",
        within_a_to_s=params.within_effect,
        within_s_to_a=params.feedback,
        ar_alliance=0.0,
        ar_symptoms=params.autoregression,
        between_corr=params.between_corr,
        alliance_instrument=RAW,
        symptom_instrument=RAW,
        missing_sessions=params.missing,
        seed=params.seed,
    )


# --------------------------------------------------------------------------- truth


def _var1(params: TeachingParams):
    rho, c = params.autoregression, params.within_effect
    B = np.array([[0.0, params.feedback], [c, rho]])  # rows: (a, s) at t+1; columns: (a, s) at t
    Sigma = solve_discrete_lyapunov(B, np.eye(2))
    return B, Sigma


def _cov_of_means(B, Sigma, J1, J2):
    """2×2 Cov(mean of w_j over j∈J1, mean of w_k over k∈J2) of the stationary VAR(1);
    Cov(w_j, w_k) = Bʲ⁻ᵏΣ for j ≥ k, (Bᵏ⁻ʲΣ)ᵀ otherwise."""
    maxlag = max(max(J1), max(J2)) - min(min(J1), min(J2))
    gam = [Sigma]
    for _ in range(maxlag):
        gam.append(B @ gam[-1])
    out = np.zeros((2, 2))
    for j in J1:
        for k in J2:
            out += gam[j - k] if j >= k else gam[k - j].T
    return out / (len(J1) * len(J2))


def expected_between(params: TeachingParams, n_sessions: int | None = None) -> float:
    """Large-sample value of the hybrid model's ``between`` coefficient with T complete sessions.

    Person level (SD of the latent means = 1): ``X^b = mA + ā`` (ā = mean of the
    T within alliance deviations), ``Y^b = mS + s̄`` (all T sessions) and the
    mean outcome over the T − 1 pairs ``Ō = mS + mean(s_2..s_T)``. Without the
    prior outcome: ``Cov(Ō, X^b)/Var(X^b)``; with it, the X^b coefficient of the
    regression of Ō on (X^b, Y^b). As T grows this tends to r (no control) or 0
    (control). Approximation: treats the between term as the regression of
    person means, ignoring the small person-level variation of the within terms.
    """
    T = int(n_sessions or params.n_sessions)
    B, Sigma = _var1(params)
    r = params.between_corr
    allj, pairs = list(range(T)), list(range(1, T))
    c_all = _cov_of_means(B, Sigma, allj, allj)  # Cov(w̄, w̄)
    c_out = _cov_of_means(B, Sigma, pairs, allj)  # Cov(w̄ over pairs' outcomes, w̄ all)
    var_xb = 1.0 + c_all[0, 0]
    cov_o_xb = r + c_out[1, 0]
    if not params.control_prior:
        return float(cov_o_xb / var_xb)
    var_yb = 1.0 + c_all[1, 1]
    cov_xb_yb = r + c_all[0, 1]
    cov_o_yb = 1.0 + c_out[1, 1]
    beta = np.linalg.solve(np.array([[var_xb, cov_xb_yb], [cov_xb_yb, var_yb]]), np.array([cov_o_xb, cov_o_yb]))
    return float(beta[0])


@dataclass(frozen=True)
class TrueValues:
    """What each coefficient estimates in the population (module docstring).

    ``within``: c_AS with the prior outcome controlled, else the population
    within-person lagged slope. ``within_direct`` is always c_AS.
    ``between``: r (latent means' slope) without the control, 0 with it.
    ``sessions_used``: the expected number of observed sessions per patient,
    round(T·(1 − missing)), at least 2. ``between_expected``:
    :func:`expected_between` for that many complete sessions (an
    approximation when sessions are missing). ``reliability``: reliability of
    a person mean of alliance over that many sessions, ``1 / (1 + Var(ā))``
    (between variance 1; = n/(n + 1) here because alliance has no carry-over).
    """

    within: float
    within_direct: float
    within_label: str
    between: float
    between_expected: float
    between_label: str
    reliability: float
    sessions_used: int


def true_values(params: TeachingParams) -> TrueValues:
    """The true values the within and between coefficients target (module docstring)."""
    B, Sigma = _var1(params)
    c = params.within_effect
    # population within-person lagged slope without the control: Cov(s_t+1, a_t)/Var(a_t)
    within = c if params.control_prior else float(c + params.autoregression * Sigma[1, 0] / Sigma[0, 0])
    wlab = "the true within-patient effect set with the slider"
    if params.control_prior:
        between = 0.0
        blab = ("0: with prior symptoms in the model the between term compares patients with the same average "
                "symptoms, and in this simulation average alliance adds nothing beyond that")
    else:
        between = float(params.between_corr)
        blab = ("the slope of the patients' true average symptoms on their true average alliance "
                "(correlation × SD ratio = r, since both SDs are 1)")
    T = max(2, round(params.n_sessions * (1.0 - params.missing)))
    v_abar = _cov_of_means(B, Sigma, list(range(T)), list(range(T)))[0, 0]
    return TrueValues(within=float(within), within_direct=float(c), within_label=wlab, between=between,
                      between_expected=expected_between(params, T), between_label=blab,
                      reliability=float(1.0 / (1.0 + v_abar)), sessions_used=int(T))


# --------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class Estimates:
    """The three coefficients fitted on one simulated data set.

    Each of ``total``, ``within``, ``between`` is a dict (estimate, se,
    ci_low, ci_high) or NaNs when the model could not be fitted (reason in
    ``messages``). ``prior_within`` is the person-mean-centered prior-symptom
    coefficient (NaN without the control). ``n_sessions`` is the number of
    simulated sessions, ``median_sessions`` the median observed per patient
    (fewer with missing sessions). ``reliability`` is the app's
    reliability of the alliance person mean (n·ICC/(1+(n−1)·ICC)).
    """

    total: dict
    within: dict
    between: dict
    prior_within: float
    truth: TrueValues
    control_prior: bool
    n_sessions: int
    n_patients: int
    n_pairs: int
    median_sessions: float
    reliability: float
    messages: tuple

    def plain_words(self) -> list[str]:
        """What each estimate says, in words (total, within, between)."""
        def amount(x):
            if not math.isfinite(x):
                return None
            return f"{abs(x):.2f} units {'lower (less severe)' if x < 0 else 'higher (more severe)'}"

        tot, wit, btw = (amount(d["estimate"]) for d in (self.total, self.within, self.between))
        out = [
            f"Sessions with 1 unit more alliance are followed by symptoms {tot}, comparing sessions within and "
            "across patients at once" if tot else "Not estimated.",
            f"When a patient's alliance is 1 unit above their own average, their next-session symptoms are {wit}"
            if wit else "Not estimated.",
        ]
        if not btw:
            out.append("Not estimated.")
        elif self.control_prior:
            out.append(f"Among patients with the same average symptoms, 1 unit more average alliance goes with "
                       f"next-session symptoms {btw}")
        else:
            out.append(f"Patients with 1 unit more average alliance have next-session symptoms {btw} on average")
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per model: model, estimate, SE, CI, true value, its meaning and the estimate in words.
        Symptoms: higher = more severe; alliance: higher = stronger."""
        t = self.truth
        rows = [
            ("Total (no centering)", self.total, np.nan,
             "No single true value: the model blends within- and between-patient differences."),
            ("Within-patient (person-mean centered)", self.within, t.within, t.within_label),
            ("Between-patient (person means)", self.between, t.between, t.between_label),
        ]
        return pd.DataFrame(
            {
                "model": [r[0] for r in rows],
                "estimate": [r[1]["estimate"] for r in rows],
                "se": [r[1]["se"] for r in rows],
                "ci_low": [r[1]["ci_low"] for r in rows],
                "ci_high": [r[1]["ci_high"] for r in rows],
                "true_value": [r[2] for r in rows],
                "true_value_is": [r[3] for r in rows],
                "in_plain_words": self.plain_words(),
            }
        )


_NAN = {"estimate": np.nan, "se": np.nan, "ci_low": np.nan, "ci_high": np.nan}


def _coef(fit, term):
    if fit.status == "failed" or term not in fit.terms:
        return dict(_NAN)
    c = fit.coef(term)
    return {k: c[k] for k in _NAN}


def fit_estimates(data: pd.DataFrame, params: TeachingParams) -> Estimates:
    """Fit the total (centering ``none``) and hybrid (``person_mean``) models (METHODS §5)."""
    tot = fit_study(data, params.lag_options("none"), DIRECTION)
    hyb = fit_study(data, params.lag_options("person_mean"), DIRECTION)
    msgs = []
    for name, f in (("Total model", tot), ("Within/between model", hyb)):
        if f.status == "failed":
            msgs.append(f"{name}: {' '.join(f.messages)}")
    prior = _coef(hyb, "prior_within")["estimate"] if params.control_prior else np.nan
    per_patient = data.dropna(subset=["alliance", "symptoms"]).groupby("patient", observed=True).size()
    return Estimates(
        total=_coef(tot, "within"), within=_coef(hyb, "within"), between=_coef(hyb, "between"),
        prior_within=float(prior), truth=true_values(params), control_prior=params.control_prior,
        n_sessions=params.n_sessions,
        n_patients=int(hyb.n_patients),
        n_pairs=int(hyb.n_pairs), median_sessions=float(per_patient.median()) if len(per_patient) else np.nan,
        reliability=float(hyb.reliability_person_mean), messages=tuple(msgs),
    )


# --------------------------------------------------------------------------- replication


@dataclass(frozen=True)
class Replication:
    """Many simulated samples with the same settings: is a miss chance or systematic?

    For each model (``total``, ``within``, ``between``): the mean estimate over
    ``n_rep`` samples (seeds ``seed_base + 1 … seed_base + n_rep``), its Monte Carlo
    SE (SD / √n_rep), the target (``truth.within``; ``truth.between_expected``
    for between, the value this model can recover with noisy person means; none
    for total), ``bias`` = mean − target and ``systematic`` = |bias| > 3·MC SE and
    |bias| ≥ ``min_bias``. A systematic within bias here comes from person-mean
    centering over few sessions (a Nickell-type small-T bias, METHODS §5), not chance.
    """

    n_rep: int
    seeds: tuple
    means: dict
    mc_se: dict
    targets: dict
    bias: dict
    systematic: dict

    def to_frame(self) -> pd.DataFrame:
        """One row per model: mean estimate, MC SE, target, bias, systematic (yes/no)."""
        keys = ("total", "within", "between")
        return pd.DataFrame({
            "model": list(keys),
            "mean_estimate": [self.means[k] for k in keys],
            "mc_se": [self.mc_se[k] for k in keys],
            "target": [self.targets[k] for k in keys],
            "bias": [self.bias[k] for k in keys],
            "systematic": [self.systematic[k] for k in keys],
            "n_samples": self.n_rep,
        })

    def summary(self) -> str:
        w = self.bias["within"]
        return (f"Over {self.n_rep} samples the within-patient estimate averages {fmt(self.means['within'])} "
                f"(target {fmt(self.targets['within'])}, bias {fmt(w)} ± {fmt(self.mc_se['within'])}).")


def replicate(params: TeachingParams, n_rep: int = 20, seed_base: int = 10_000, min_bias: float = 0.02,
              progress=None, cancelled=None) -> Replication:
    """Simulate and fit ``n_rep`` samples with ``params`` (other seeds) to tell chance from systematic misses.
    ``progress``, ``cancelled``: see :mod:`analysis.progress`."""
    if int(n_rep) < 2:
        raise ValueError("At least 2 replications are needed.")
    seeds = tuple(seed_base + 100 * params.seed + r for r in range(1, int(n_rep) + 1))
    est = {"total": [], "within": [], "between": []}
    truth = None
    for i, sd in enumerate(seeds):
        checkpoint(progress, cancelled, i / len(seeds))
        q = params.replace(seed=sd)
        e = fit_estimates(simulate(q).data, q)
        truth = e.truth
        for k in est:
            est[k].append(getattr(e, k)["estimate"])
    means, mcse, bias, sysm = {}, {}, {}, {}
    targets = {"total": np.nan, "within": truth.within, "between": truth.between_expected}
    for k, v in est.items():
        v = np.asarray(v, float)
        v = v[np.isfinite(v)]
        means[k] = float(v.mean()) if v.size else np.nan
        mcse[k] = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else np.nan
        bias[k] = means[k] - targets[k]
        sysm[k] = bool(math.isfinite(bias[k]) and abs(bias[k]) > 3 * mcse[k] and abs(bias[k]) >= min_bias)
    return Replication(n_rep=int(n_rep), seeds=seeds, means=means, mc_se=mcse, targets=targets, bias=bias,
                       systematic=sysm)


# --------------------------------------------------------------------------- scatter (within vs between)


def ols_slope(x, y) -> float:
    """Simple OLS slope Σ(x−x̄)(y−ȳ)/Σ(x−x̄)² over finite pairs (NaN if x has no spread)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2:
        return np.nan
    dx = x - x.mean()
    sxx = float(dx @ dx)
    return float(dx @ (y - y.mean()) / sxx) if sxx > 0 else np.nan


def person_means(data: pd.DataFrame) -> pd.DataFrame:
    """Each patient's mean alliance and mean symptoms over their observed sessions."""
    g = data.groupby("patient", observed=True)[["alliance", "symptoms"]].mean()
    return g.reset_index().rename(columns={"alliance": "mean_alliance", "symptoms": "mean_symptoms"})


def within_pairs(data: pd.DataFrame) -> pd.DataFrame:
    """Within-patient deviations paired by session number (METHODS §3–§4):
    ``alliance_dev`` = A_it − Ā_i at session t, ``symptoms_next_dev`` = S_i,t+1 − S̄_i
    (pairs with session t + 1 unobserved are left out)."""
    d = data[["patient", "session", "alliance", "symptoms"]].copy()
    means = d.groupby("patient", observed=True)[["alliance", "symptoms"]].transform("mean")
    d["alliance_dev"] = d["alliance"] - means["alliance"]
    d["symptoms_dev"] = d["symptoms"] - means["symptoms"]
    nxt = d[["patient", "session", "symptoms_dev"]].assign(session=d["session"] - 1)
    nxt = nxt.rename(columns={"symptoms_dev": "symptoms_next_dev"})
    out = d[["patient", "session", "alliance_dev"]].merge(nxt, on=["patient", "session"], how="inner")
    return out.dropna(subset=["alliance_dev", "symptoms_next_dev"]).reset_index(drop=True)


@dataclass(frozen=True)
class ScatterSummary:
    """Person means and within deviations with their simple OLS slopes."""

    persons: pd.DataFrame
    pairs: pd.DataFrame
    between_slope: float
    within_slope: float

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"level": ["between patients (person means)", "within patients (deviations, t → t+1)"],
                             "slope": [self.between_slope, self.within_slope],
                             "n_points": [len(self.persons), len(self.pairs)]})


def scatter_summary(data: pd.DataFrame) -> ScatterSummary:
    """Between slope (mean symptoms on mean alliance) and within slope (next-session
    symptom deviation on alliance deviation), both simple OLS lines."""
    pm = person_means(data)
    wp = within_pairs(data)
    return ScatterSummary(pm, wp, ols_slope(pm["mean_alliance"], pm["mean_symptoms"]),
                          ols_slope(wp["alliance_dev"], wp["symptoms_next_dev"]))


@dataclass(frozen=True)
class TeachingSample:
    """One teaching sample (:func:`run`): the simulated ``data``, the three models' ``estimates`` and the
    ``scatter`` summary, for the settings ``params``."""

    params: TeachingParams
    data: pd.DataFrame
    estimates: Estimates
    scatter: ScatterSummary

    def to_frame(self) -> pd.DataFrame:
        """The estimates table (:meth:`Estimates.to_frame`)."""
        return self.estimates.to_frame()

    def summary(self) -> str:
        return estimates_sentence(self.estimates)


def run(options: TeachingParams | None = None) -> TeachingSample:
    """The Teaching page's sample for the declared settings: :func:`simulate`, :func:`fit_estimates` and
    :func:`scatter_summary` (no user data: the settings are the whole input).

    >>> s = run(TeachingParams(n_patients=40, n_sessions=5, seed=2))
    >>> s.data["patient"].nunique(), s.estimates.truth.within_direct
    (40, -0.2)
    """
    p = options or TeachingParams()
    data = simulate(p).data
    return TeachingSample(params=p, data=data, estimates=fit_estimates(data, p), scatter=scatter_summary(data))


# --------------------------------------------------------------------------- Nickell bias


def nickell_approximation(rho: float, T) -> np.ndarray:
    """Nickell's approximation of the bias of a person-mean-centered autoregression,
    −(1 + ρ)/(T − 1) (METHODS §5), T = pairs (lagged observations) per patient (NaN for T ≤ 1).
    A large-T approximation: with 3 or fewer pairs it is rough."""
    T = np.asarray(T, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(T > 1, -(1.0 + rho) / (T - 1.0), np.nan)


def nickell_curve(params: TeachingParams, sessions=range(3, 16), n_patients: int = 800, progress=None,
                  cancelled=None) -> pd.DataFrame:
    """Empirical Nickell bias for each number of sessions T.

    For each T: simulate ``n_patients`` patients with T complete sessions and
    the other settings of ``params``; fit the person-mean-centered model with
    the prior outcome; report ``estimate`` (the prior-symptom within
    coefficient), ``bias`` = estimate − ρ, ``approx`` = −(1 + ρ)/(T − 1) with T
    = pairs per patient (sessions − 1; METHODS §5), ``approx_sessions`` = the
    same with T = sessions per patient (shown for comparison: with 2,000
    simulated patients and ρ = .5 the bias is −0.29 at 7 sessions and −0.165 at
    11, against −0.30 / −0.167 with T = pairs and −0.25 / −0.15 with T =
    sessions), and ``within_bias`` = within alliance → symptoms estimate − its truth. ``progress``,
    ``cancelled``: see :mod:`analysis.progress`.
    """
    rho = params.autoregression
    recs = []
    sessions = list(sessions)
    for i, T in enumerate(sessions):
        checkpoint(progress, cancelled, i / len(sessions))
        p = params.replace(n_sessions=int(T), n_patients=int(n_patients), missing=0.0, control_prior=True,
                           seed=params.seed + 1000 * int(T))
        f = fit_study(simulate(p).data, p.lag_options("person_mean"), DIRECTION)
        est = _coef(f, "prior_within")["estimate"]
        w = _coef(f, "within")["estimate"]
        recs.append({"sessions": int(T), "pairs": int(T) - 1, "estimate": est, "bias": est - rho,
                     "approx": float(nickell_approximation(rho, int(T) - 1)),
                     "approx_sessions": float(nickell_approximation(rho, T)),
                     "within_bias": w - params.within_effect})
    return pd.DataFrame(recs)


# --------------------------------------------------------------------------- sentences


def _miss_reason(few: bool, rep: Replication | None) -> str:
    """Why a within estimate misses its truth: systematic (quantified by replication) or chance."""
    if rep is not None and rep.systematic["within"]:
        return (f" — and not by chance: over {rep.n_rep} simulated samples with these settings the estimate "
                f"averages {fmt(rep.means['within'])}, a systematic bias of {fmt(rep.bias['within'])} "
                f"(± {fmt(rep.mc_se['within'])}). Person-mean centering uses each patient's average over only a few "
                "sessions, including later ones, and with carry-over in symptoms that biases lagged within-patient "
                "estimates (a Nickell-type bias, section 3); it shrinks as sessions per patient grow")
    if rep is not None:
        return (f" — over {rep.n_rep} simulated samples with these settings the estimate averages "
                f"{fmt(rep.means['within'])} (truth {fmt(rep.targets['within'])}), so this sample's miss is chance "
                "(about 1 sample in 20 misses by chance); try another seed")
    if few:
        return " — with few sessions per patient, person-mean centering biases lagged estimates (section 3)"
    return " — this can be chance (about 1 sample in 20) or a small-sample bias; the replication check tells which"


def estimates_sentence(est: Estimates, close: float = 0.03, replication: Replication | None = None) -> str:
    """Within estimate vs its truth, and where the total effect lands (plain language).

    "Close" = the 95% CI contains the truth, or the estimate is within ``close`` of it. A miss is
    called chance only when ``replication`` shows no systematic bias; with a systematic bias the
    sentence names it (person-mean centering over few sessions) and quantifies it."""
    w, t, b = est.within, est.truth, est.between
    tot = est.total["estimate"]
    if not math.isfinite(w["estimate"]):
        return "The within-patient model could not be fitted with these settings (see the note above)."
    lo, hi = w["ci_low"], w["ci_high"]
    gap = w["estimate"] - t.within
    ci = f"95% CI {fmt(lo)} to {fmt(hi)}"
    few = est.median_sessions <= 6
    if lo <= t.within <= hi:
        head = f"The within-patient estimate ({fmt(w['estimate'])}) is close to the truth ({fmt(t.within)}): its {ci} contains it"
    elif abs(gap) <= close:
        head = (f"The within-patient estimate ({fmt(w['estimate'])}) is close to the truth ({fmt(t.within)}), off by "
                f"{abs(gap):.2f}; with this many patients its {ci} is narrow enough to show that small bias"
                + (" (few sessions per patient, see section 3)" if few else ""))
    else:
        head = (f"The within-patient estimate ({fmt(w['estimate'])}) misses the truth ({fmt(t.within)}) by "
                f"{fmt(abs(gap))} and its {ci} does not contain it" + _miss_reason(few, replication))
    if not math.isfinite(tot):
        return head + "; the total model could not be fitted."
    we, be = w["estimate"], b["estimate"]
    mix = f"the total effect ({fmt(tot)}) mixes the within- and between-patient associations"
    if abs(we) >= 0.02 and abs(tot) >= 0.02 and np.sign(tot) != np.sign(we):
        tail = f"{mix} and points the other way."
    elif math.isfinite(be) and min(we, be) <= tot <= max(we, be):
        closer = "within" if abs(tot - we) <= abs(tot - be) else "between"
        tail = (f"{mix} and lands between the within ({fmt(we)}) and between ({fmt(be)}) estimates, "
                f"closer to the {closer} one.")
    else:
        tail = f"{mix}, so it cannot be read as either one."
    return f"{head}; {tail}"


def between_sentence(est: Estimates, control_prior: bool) -> str:
    """What the between term says, and why it differs from its truth (plain language)."""
    b, t = est.between, est.truth
    if not math.isfinite(b["estimate"]):
        return "The between-patient term could not be estimated with these settings."
    ci = f"95% CI {fmt(b['ci_low'])} to {fmt(b['ci_high'])}"
    if control_prior:
        return (f"With prior symptoms in the model, the between term ({fmt(b['estimate'])}, {ci}) compares "
                f"patients who have the same average symptoms, so its true value here is 0 (large-sample value "
                f"with {_sessions_text(t.sessions_used)}: {fmt(t.between_expected)}); untick “Control for prior "
                "symptoms” to see the between-patient association itself.")
    word = "more severe" if b["estimate"] > 0 else "less severe"
    return (f"Patients whose average alliance is 1 unit higher have average next-session symptoms "
            f"{abs(b['estimate']):.2f} units {word} ({ci}). The true slope of their real average levels is "
            f"{fmt(t.between)}, but an average of {_sessions_text(t.sessions_used)} is a noisy score (reliability "
            f"about {t.reliability:.2f}) and also carries the within-patient effect, so about "
            f"{fmt(t.between_expected)} is what this model can recover.")


def _sessions_text(n: int) -> str:
    return f"about {n} observed session{'s' if n != 1 else ''}"


def scatter_sentence(between_slope: float, within_slope: float, tol: float = 0.05) -> str:
    """The two slopes of the scatter in words, and whether they point opposite ways."""
    if not (math.isfinite(between_slope) and math.isfinite(within_slope)):
        return "Not enough data to draw both slopes."
    if abs(between_slope) < tol:
        bs = f"those with higher average alliance hardly differ in average symptoms (slope {fmt(between_slope)})"
    else:
        word = "more severe" if between_slope > 0 else "less severe"
        bs = f"those with higher average alliance have {word} average symptoms (slope {fmt(between_slope)})"
    if abs(within_slope) < tol:
        ws = (f"within a patient, a session with higher-than-usual alliance is followed by about usual symptoms "
              f"(slope {fmt(within_slope)})")
    else:
        word = "lower" if within_slope < 0 else "higher"
        ws = (f"within a patient, a session with higher-than-usual alliance is followed by {word}-than-usual "
              f"symptoms next session (slope {fmt(within_slope)})")
    if abs(between_slope) >= tol and abs(within_slope) >= tol:
        if np.sign(between_slope) != np.sign(within_slope):
            end = ("The two levels point in opposite directions: a correlation across patients tells you nothing "
                   "about what happens inside one patient.")
        else:
            end = ("Here both levels point the same way, but they are different questions with different sizes "
                   f"({fmt(between_slope)} vs {fmt(within_slope)}).")
    else:
        end = "One of the two levels shows almost no association, so they tell different stories."
    return f"Across patients, {bs}; {ws}. {end}"


def nickell_sentence(curve: pd.DataFrame, rho: float) -> str:
    """Bias of the autoregression at the fewest and most sessions, against the approximation."""
    c = curve.dropna(subset=["bias"]).sort_values("sessions")
    if c.empty:
        return "No model could be fitted for the Nickell curve."
    lo, hi = c.iloc[0], c.iloc[-1]

    def part(r):
        b = r["bias"]
        way = "too low" if b < 0 else "too high"
        return (f"with {int(r['sessions'])} sessions per patient the estimated stability of symptoms is "
                f"{fmt(abs(b))} {way} (approximation with {int(r['sessions']) - 1} pairs: {fmt(abs(r['approx']))} "
                "too low)")

    s = f"True autoregression ρ = {fmt(rho)}: {part(lo)}; {part(hi)}."
    if lo["bias"] < 0 and abs(hi["bias"]) < abs(lo["bias"]):
        s += (" Few sessions per patient make symptoms look less stable than they are, because each patient's "
              "own mean is estimated from the same few sessions.")
    return s


def latent_estimates(data: pd.DataFrame, params: TeachingParams, est: Estimates | None = None) -> pd.DataFrame:
    """The alliance → next-session symptoms effect by the person-mean LMM (``est.within``), the RI-CLPM
    and the ML-SEM dynamic panel model (METHODS §15) on the same simulated data, beside the truth c_AS.

    One row per model: ``model, estimate, ci_low, ci_high, true_value, note``. The latent-centred models
    need no person means, so neither the Nickell bias nor feedback (symptoms → next alliance) biases them.
    """
    from analysis import dynamics

    est = est if est is not None else fit_estimates(data, params)
    rows = [("Person-mean LMM (within)", est.within["estimate"], est.within["ci_low"], est.within["ci_high"], "")]
    for name, res in (("RI-CLPM", dynamics.riclpm(data, fit_indices=False, standardized=False)),
                      ("Dynamic panel model", dynamics.dpm(data, outcome="symptoms", fit_indices=False,
                                                          standardized=False))):
        r = res.row(DIRECTION) if res.ok else {}
        rows.append((name, r.get("estimate", np.nan), r.get("ci_low", np.nan), r.get("ci_high", np.nan),
                     " ".join(res.messages)))
    return pd.DataFrame({
        "model": [r[0] for r in rows], "estimate": [r[1] for r in rows], "ci_low": [r[2] for r in rows],
        "ci_high": [r[3] for r in rows], "true_value": params.within_effect, "note": [r[4] for r in rows],
    })
