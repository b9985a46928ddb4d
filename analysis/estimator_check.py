"""Estimator check on the user's own design (``docs/METHODS.md`` §15.4).

:func:`estimator_check` fits the RI-CLPM (:func:`analysis.dynamics.riclpm`) to
one study, simulates ``n_sim`` data sets from the fitted model (parametric
bootstrap: the model-implied mean vector and covariance matrix of the wide
data, drawn for the same patients, with each patient's own observed sessions
and missing values), refits

* the person-mean-centred lagged mixed model (§5, lag 1, prior outcome),
* the detrended lagged mixed model (§3),
* the RI-CLPM and
* the ML-SEM dynamic panel model (both directions),

and reports each estimator's bias and 95% CI coverage of the two cross-lags
whose true values are the RI-CLPM estimates. Values stay on the data's own
scale (no standardization), so every estimator targets the same number.
Seeded: the same ``seed`` gives the same table. The app's choices (number of data
sets, seed, estimators) are declared once on :class:`EstimatorCheckOptions`;
:func:`run` is the entry that takes them.

The column ``large_sample_value`` is what the estimator would give with
unlimited patients from the same model: the truth for the RI-CLPM, and for
the DPM its fit to the RI-CLPM's implied moments
(:func:`analysis.dynamics.dpm_limit`). The DPM assumes that a session's
predictor is uncorrelated with the same session's outcome innovation; the
RI-CLPM's within-session innovation covariances break that, so the DPM's
bias then does not shrink with n (METHODS §15.2). The mixed models' entry is
NaN (not computed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import dynamics
from analysis.data import require_canonical
from analysis.lagged.options import M_DYNAMIC
from analysis.options import Declared, option
from analysis.progress import checkpoint

__all__ = ["ESTIMATOR_LABELS", "EstimatorCheck", "EstimatorCheckOptions", "estimator_check", "run"]

ESTIMATOR_LABELS = {
    "person_mean": "Person-mean LMM",
    "detrended": "Detrended LMM",
    "riclpm": "RI-CLPM",
    "dpm": "DPM",
}
DIRECTION_LABELS = {"alliance_to_symptoms": "alliance → symptoms", "symptoms_to_alliance": "symptoms → alliance"}
MIXED = ("person_mean", "detrended")  # the lagged mixed models among the estimators
_COLS = ["estimator", "label", "direction", "truth", "mean_estimate", "bias", "relative_bias", "coverage",
         "mean_se", "sd_estimate", "n_sim", "large_sample_value"]
_PARTS = {"alliance_to_symptoms": ("alliance rating", "symptom"), "symptoms_to_alliance": ("symptom score", "alliance")}


@dataclass(frozen=True)
class EstimatorCheckOptions(Declared):
    """The choices of the estimator check (METHODS §15.4), declared once (:mod:`analysis.options`): the
    Lagged and Pooled pages' widgets, the job's key and the script arguments come from them.

    ``n_sim`` is the range the app offers (:func:`estimator_check` itself takes any ``n_sim`` ≥ 1).

    >>> EstimatorCheckOptions(n_sim=40, estimators=("riclpm", "person_mean")).estimators
    ('person_mean', 'riclpm')
    >>> EstimatorCheckOptions(n_sim=10)
    Traceback (most recent call last):
    ...
    ValueError: n_sim must be a whole number from 20 to 1000; got 10.
    """

    n_sim: int = option(
        "int", 100, lo=20, hi=1000, label="Simulated data sets", methods=M_DYNAMIC,
        help="How many data sets to draw from the study's fitted RI-CLPM; every chosen estimator is refitted "
             "to each. About 0.1 s of CPU per data set for 182 patients × 7 sessions with all four estimators.")
    seed: int = option(
        "int", 1, lo=0, hi=10**6, label="Seed", methods=M_DYNAMIC,
        help="The random seed of the simulation: the same seed gives the same data sets and the same table.")
    estimators: tuple = option(
        "choices", tuple(ESTIMATOR_LABELS), choices=tuple(ESTIMATOR_LABELS), labels=ESTIMATOR_LABELS,
        label="Estimators refitted", methods=M_DYNAMIC,
        help="Which models are refitted to every simulated data set: the person-mean and detrended lagged "
             "mixed models (lag 1, prior outcome, raw scale), the RI-CLPM and the dynamic panel model. "
             "Fewer estimators run faster.")


def run(df: pd.DataFrame, options: EstimatorCheckOptions | None = None, *, progress=None,
        cancelled=None) -> EstimatorCheck:
    """:func:`estimator_check` with its choices as one :class:`EstimatorCheckOptions` (``df``: one study).

    >>> from analysis.simulate import simulate_study
    >>> chk = run(simulate_study(40, range(1, 6), seed=4).data,
    ...           EstimatorCheckOptions(n_sim=20, estimators=("person_mean",)))
    >>> chk.n_sim, sorted(set(chk.table["estimator"]))
    (20, ['person_mean'])
    """
    o = options or EstimatorCheckOptions()
    return estimator_check(df, n_sim=o.n_sim, seed=o.seed, estimators=o.estimators, progress=progress,
                           cancelled=cancelled)


@dataclass(frozen=True)
class EstimatorCheck:
    """Result of :func:`estimator_check`: ``table`` (one row per estimator × direction: ``estimator,
    label, direction, truth, mean_estimate, bias, relative_bias, coverage, mean_se, sd_estimate,
    n_sim, large_sample_value``), the raw ``draws`` (one row per simulation × estimator × direction), the
    fitted truth, messages and the DPM's large-sample values (``limits``, per direction)."""

    study: str
    table: pd.DataFrame
    draws: pd.DataFrame
    truth: dict
    n_sim: int
    seed: int
    messages: tuple = ()
    limits: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def biased(self, tol: float = 0.2, coverage: float = 0.9) -> pd.DataFrame:
        """Rows whose |relative bias| exceeds ``tol`` or whose coverage is below ``coverage``."""
        t = self.table
        return t[(t["relative_bias"].abs() > tol) | (t["coverage"] < coverage)]

    def sentence(self) -> str:
        """One plain sentence about the worst-biased mixed model (of the estimators refitted when no mixed
        model was), e.g. "on data like yours the person-mean model understates the alliance → symptoms
        effect by about 45%"."""
        from analysis import formatting as F

        mixed = self.table["estimator"].isin(MIXED)
        t = self.table[mixed if mixed.any() else ~mixed].dropna(subset=["relative_bias"])
        if t.empty:
            return (f"The estimator check has no usable {'mixed-model ' if mixed.any() else ''}estimates."
                    + self._dpm_sentence())
        row = t.loc[t["relative_bias"].abs().idxmax()]
        ri = self.table[(self.table["estimator"] == "riclpm") & (self.table["direction"] == row["direction"])]
        rb = float(row["relative_bias"])
        what = "understates" if rb < 0 else "overstates"
        name = ESTIMATOR_LABELS[row["estimator"]].replace(" LMM", " model")
        name = name if name[:2].isupper() else name[0].lower() + name[1:]  # RI-CLPM, DPM keep their capitals
        s = (f"On data like yours the {name} {what} the "
             f"{DIRECTION_LABELS[row['direction']]} effect by about {F.percent(abs(rb))} "
             f"(95% CI coverage {F.percent(row['coverage'])})")
        if len(ri) and row["estimator"] != "riclpm":
            s += f"; the RI-CLPM's bias is {F.percent(abs(float(ri['relative_bias'].iloc[0])))} " \
                 f"(coverage {F.percent(float(ri['coverage'].iloc[0]))})"
        return s + "." + self._dpm_sentence(named=row["estimator"] == "dpm")

    def _dpm_sentence(self, tol: float = 0.2, named: bool = False) -> str:
        """Why the DPM is off, when it is (|relative bias| > ``tol``): its large-sample value misses the
        truth (an assumption the simulated model breaks) or it does not (small-sample bias or noise).
        ``named``: the sentence before already gave the DPM's bias (only the reason is added)."""
        from analysis import formatting as F

        t = self.table[self.table["estimator"] == "dpm"].dropna(subset=["relative_bias"])
        if t.empty or t["relative_bias"].abs().max() <= tol:
            return ""
        row = t.loc[t["relative_bias"].abs().idxmax()]
        direction, tv, lim = row["direction"], float(row["truth"]), float(row["large_sample_value"])
        s = " The DPM's bias" if named else (
            f" The DPM {'understates' if row['relative_bias'] < 0 else 'overstates'} the "
            f"{DIRECTION_LABELS[direction]} effect by about {F.percent(abs(float(row['relative_bias'])))}")
        if not np.isfinite(lim):
            return "" if named else s + "."
        if abs(lim - tv) > 0.1 * abs(tv):
            x, y = _PARTS[direction]
            k = F.decimals_for([lim, tv], 2, sig=2)
            return (s + (" is not a small-sample bias" if named else "") + ", and more patients would not fix "
                    f"it: with unlimited patients it would estimate {F.fixed(lim, k)} (truth {F.fixed(tv, k)}), "
                    f"because it assumes a session's {x} is uncorrelated with the same session's {y} innovation, "
                    "and the fitted RI-CLPM's within-session covariances say otherwise.")
        at = F.num(lim, 2, sig=2)
        if named:
            return (" The DPM's bias is small-sample bias or simulation noise: with unlimited patients it would "
                    f"estimate the truth ({at}).")
        return s + f"; with unlimited patients it would estimate the truth ({at}), so this is small-sample bias or " \
                   "simulation noise."

    def summary(self) -> str:
        return "\n".join([f"Estimator check — {self.study}: {self.n_sim} simulations from the fitted RI-CLPM "
                          f"(seed {self.seed}).", self.sentence(), *self.messages])


def _wide_long(d: pd.DataFrame, waves):
    """Patients, the observed mask of the wide (alliance, symptoms) matrix and the long-frame keys."""
    pats = pd.Index(pd.unique(d["patient"]))
    T = len(waves)
    pi = pats.get_indexer(d["patient"])
    wi = pd.Index(waves).get_indexer(d["session"])
    keep = wi >= 0
    mask = np.zeros((len(pats), 2 * T), dtype=bool)
    mask[pi[keep], wi[keep]] = d["alliance"].notna().to_numpy()[keep]
    mask[pi[keep], T + wi[keep]] = d["symptoms"].notna().to_numpy()[keep]
    return pats, mask


def _simulate(rng, mu, L, mask, pats, waves, study):
    """One data set: wide matrix (same missing values as the study) and its long canonical frame."""
    n, p = mask.shape
    T = len(waves)
    Y = mu + rng.standard_normal((n, p)) @ L.T
    Y[~mask] = np.nan
    a, s = Y[:, :T], Y[:, T:]
    present = ~(np.isnan(a) & np.isnan(s))
    pi, wi = np.nonzero(present)
    long = pd.DataFrame({
        "study": study, "patient": np.asarray(pats)[pi], "session": np.asarray(waves, dtype=np.int64)[wi],
        "alliance": a[pi, wi], "symptoms": s[pi, wi],
    })
    return Y, long


def _lmm(sim: pd.DataFrame, estimators) -> dict:
    """Person-mean and detrended lagged mixed models (lag 1, prior outcome, raw scale), both directions."""
    from analysis.lagged import LagOptions, fit_studies, prepare_studies

    out = {}
    base = LagOptions(standardize=False, lag=1, control_prior_outcome=True)
    data = prepare_studies(sim, base)
    for centering in ("person_mean", "detrended"):
        if centering not in estimators:
            continue
        opts = base.replace(centering=centering)
        rows = {}
        for direction in dynamics.CROSS_LAGS:
            try:
                f = fit_studies(data, opts, direction, diagnostics=False)[0]
                c = f.coef("within") if f.status != "failed" else None
            except (ValueError, KeyError, IndexError, np.linalg.LinAlgError):
                c = None
            rows[direction] = (c["estimate"], c["se"], c["ci_low"], c["ci_high"]) if c else (np.nan,) * 4
        out[centering] = rows
    return out


def _sem_row(res, name):
    if not res.ok:
        return (np.nan,) * 4
    i = list(res.params["parameter"]).index(name)
    return tuple(float(res.params[c].to_numpy()[i]) for c in ("estimate", "se", "ci_low", "ci_high"))


def _fit_all(sim, Y, waves, theta, estimators, dpm_start=None):
    rows = _lmm(sim, estimators) if {"person_mean", "detrended"} & set(estimators) else {}
    T = len(waves)
    if "riclpm" in estimators:
        r = dynamics.riclpm_wide(Y, waves, fit_indices=False, standardized=False, start=theta)
        rows["riclpm"] = {d: _sem_row(r, d) for d in dynamics.CROSS_LAGS}
    if "dpm" in estimators:
        starts = dpm_start or {}
        sym = dynamics.dpm_wide(np.hstack([Y[:, T:], Y[:, :T]]), waves, outcome="symptoms", fit_indices=False,
                                standardized=False, start=starts.get("symptoms"))
        al = dynamics.dpm_wide(Y, waves, outcome="alliance", fit_indices=False, standardized=False,
                               start=starts.get("alliance"))
        rows["dpm"] = {"alliance_to_symptoms": _sem_row(sym, "alliance_to_symptoms"),
                       "symptoms_to_alliance": _sem_row(al, "symptoms_to_alliance")}
    return rows


def _summary_row(draws: pd.DataFrame, est: str, direction: str, tv: float, large_sample: float) -> dict:
    g = draws[(draws["estimator"] == est) & (draws["direction"] == direction)].dropna(subset=["estimate"])
    m = float(g["estimate"].mean()) if len(g) else np.nan
    cov = float(((g["ci_low"] <= tv) & (tv <= g["ci_high"])).mean()) if len(g) else np.nan
    return {
        "estimator": est, "label": ESTIMATOR_LABELS[est], "direction": direction, "truth": tv,
        "mean_estimate": m, "bias": m - tv, "relative_bias": (m - tv) / tv if tv != 0 else np.nan,
        "coverage": cov, "mean_se": float(g["se"].mean()) if len(g) else np.nan,
        "sd_estimate": float(g["estimate"].std(ddof=1)) if len(g) > 1 else np.nan, "n_sim": int(len(g)),
        "large_sample_value": float(large_sample),
    }


def estimator_check(df: pd.DataFrame, *, n_sim: int = 100, seed: int = 0, estimators=tuple(ESTIMATOR_LABELS),
                    progress=None, cancelled=None) -> EstimatorCheck:
    """Bias and 95% CI coverage of each estimator on data simulated from the study's fitted RI-CLPM.

    ``df``: one study's canonical data. ``progress(fraction)`` / ``cancelled()``: see
    :mod:`analysis.progress` (a cancelled check raises :class:`analysis.progress.Cancelled`).
    Raises ValueError when the RI-CLPM cannot be fitted to the study (the reason in the message).
    """
    d = require_canonical(df, columns=("alliance", "symptoms"))
    studies = d["study"].unique()
    if len(studies) != 1:
        raise ValueError("The estimator check runs on one study at a time.")
    study = str(studies[0])
    if n_sim < 1:
        raise ValueError("n_sim must be at least 1.")
    bad = [e for e in estimators if e not in ESTIMATOR_LABELS]
    if bad:
        raise ValueError(f"Unknown estimator(s): {', '.join(map(str, bad))}.")
    fit = dynamics.riclpm(d, fit_indices=False)
    if not np.isfinite(fit.loglik) or not fit.converged:
        why = fit.messages[-1] if fit.messages else "the RI-CLPM did not converge."
        raise ValueError(f"The RI-CLPM could not be fitted to {study}: {why}")
    model = dynamics.riclpm_model(fit.waves)
    theta = fit.params["estimate"].to_numpy()
    mu, Sigma = model.implied(theta)
    try:
        L = np.linalg.cholesky(Sigma)
    except np.linalg.LinAlgError:
        raise ValueError(f"The fitted RI-CLPM of {study} has a non-positive-definite covariance matrix "
                         "(a Heywood case), so no data can be simulated from it.") from None
    truth = {k: fit.estimate(k) for k in dynamics.CROSS_LAGS}
    pats, mask = _wide_long(d, fit.waves)
    dpm_start, dpm_limits = {}, {}
    if "dpm" in estimators:  # the study's own DPM estimates start every refit (fewer iterations)
        for direction, outcome in zip(dynamics.CROSS_LAGS, ("symptoms", "alliance")):
            dpm_limits[direction] = dynamics.dpm_limit(mu, Sigma, fit.waves, outcome=outcome)[direction]
            r = dynamics.dpm(d, outcome=outcome, sessions=fit.waves, fit_indices=False, standardized=False)
            if r.ok:
                dpm_start[outcome] = r.params["estimate"].to_numpy()
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n_sim):
        checkpoint(progress, cancelled, i / n_sim)
        Y, sim = _simulate(rng, mu, L, mask, pats, fit.waves, study)
        for est, dirs in _fit_all(sim, Y, fit.waves, theta, estimators, dpm_start).items():
            for direction, (b, se, lo, hi) in dirs.items():
                records.append((i, est, direction, b, se, lo, hi))
    checkpoint(progress, cancelled, 1.0)
    draws = pd.DataFrame(records, columns=["sim", "estimator", "direction", "estimate", "se", "ci_low", "ci_high"])
    limits = {"riclpm": truth, "dpm": dpm_limits}
    rows = [_summary_row(draws, est, direction, truth[direction], limits.get(est, {}).get(direction, np.nan))
            for est in estimators for direction in dynamics.CROSS_LAGS]
    msgs = list(fit.messages)
    failed = {r["label"]: n_sim - r["n_sim"] for r in rows if r["n_sim"] < n_sim}
    if failed:
        msgs.append("Simulations without a usable estimate: "
                    + ", ".join(f"{k} {v}" for k, v in failed.items()) + ".")
    return EstimatorCheck(study=study, table=pd.DataFrame(rows, columns=_COLS), draws=draws, truth=truth,
                          n_sim=n_sim, seed=seed, messages=tuple(msgs), limits=dpm_limits)
