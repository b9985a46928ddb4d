"""Alliance ruptures, sudden gains and reliable change (METHODS §9–§11).

All functions take the canonical long data of METHODS §1 (columns ``study``,
``patient``, ``session``, ``alliance``, ``symptoms``, optional
``therapist_alliance``; key = (study, patient, session)); lower symptoms are
better. Missing values (NaN) in a value column mean "not observed": they are
never imputed and never used in a mean, SD or difference.

Public API
----------
ruptures(df, criterion="default", k, sd, detrend, rater, pre_level,
         item, item_threshold, item_rule)                               §9
RUPTURE_CRITERIA / RuptureCriterion / DEFAULT_K / robust_sd             §9
rupture_summary(flags, rule="any")                                    §9
rupture_chance(df, criterion, ..., n_sim=100, seed=1) -> RuptureChance  §9 chance reference
rupture_item_chance(flags, n_sim=100, seed=1) -> RuptureChance          §9 ... with "dip and item"
rupture_chance_curve(df, criterion, sd, detrend, rater, ...).at(k)      §9 the same, simulated once for all k
simulate_rupture_data(n_patients, n_sessions, plant, dip_sd, seed)    §9 calibration design
sudden_gains(df, cutoff, reliability, sd, first_only, pairing,
             kind="gain"|"loss", better="lower"|"higher")             §10
sudden_gain_summary(gains)                                            §10
alliance_around_gains(df, gains, rater) / alliance_trajectory(...)    §10
reliable_change(df, reliability, sd, norms, cutoff, method="JT")      §11 (RC_METHODS)
baseline_sd(df, column="symptoms")                                   §10/§11 inputs
standardize_within_study(df, columns)                                 §2
clinical_cutoff_c(M_clinical, SD_clinical, M_functional, SD_functional)§11
outcome_by_pattern(df, flags_or_gains, event=None, measure="SMD", ...) §9/§10
outcome_by_repair(df, flags, rule, measure) -> RepairOutcome          §9
rupture_analysis / gain_analysis / gain_cutoffs /
reliable_change_analysis                                              results for readers
SCL90R_GSI_GERMAN_CUTOFF = 0.57                                       §11

Floating-point comparisons with "≥" / "≤" allow a relative tolerance of 1e-9
so that values that are equal on paper (e.g. an alliance exactly at the
threshold) are treated as equal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Real

import numpy as np
import pandas as pd
from scipy import special, stats

from analysis.mixed import fit_random_intercept

__all__ = [
    "CRITERION_LABELS",
    "DEFAULT_K",
    "RC_METHODS",
    "RUPTURE_CRITERIA",
    "SCL90R_GSI_GERMAN_CUTOFF",
    "T_CRIT_SUDDEN_GAINS",
    "AllianceAroundGains",
    "OutcomeByPattern",
    "RepairOutcome",
    "RuptureChance",
    "RuptureChanceCurve",
    "RuptureCriterion",
    "AllianceTrajectory",
    "GainAnalysis",
    "HA_CRIT",
    "ReliableChangeAnalysis",
    "RuptureAnalysis",
    "alliance_around_gains",
    "alliance_trajectory",
    "TABLE_LABELS",
    "extra_numeric_columns",
    "gain_analysis",
    "gain_cutoffs",
    "reliable_change_analysis",
    "rupture_analysis",
    "baseline_sd",
    "clinical_cutoff_c",
    "outcome_by_pattern",
    "outcome_by_repair",
    "reliable_change",
    "reliable_change_cutoff",
    "robust_sd",
    "rupture_chance",
    "rupture_chance_curve",
    "rupture_item_chance",
    "rupture_summary",
    "ruptures",
    "simulate_rupture_data",
    "standardize_within_study",
    "sudden_gain_summary",
    "sudden_gains",
]

#: Clinical cut-off for the SCL-90-R Global Severity Index with German norms
#: (METHODS §11: "SCL-90-R GSI c = 0.57, German norms"). Pass it as
#: ``reliable_change(..., cutoff=SCL90R_GSI_GERMAN_CUTOFF)``.
SCL90R_GSI_GERMAN_CUTOFF = 0.57

#: Tang & DeRubeis (1999) critical t values for criterion 3, keyed by the
#: total number of observed values in the two 3-session windows: 3 + 3 = 6
#: (df 4), 5 values (one missing, df 3), 2 + 2 = 4 (one missing on each side,
#: df 2). These are the published two-sided .05 values.
T_CRIT_SUDDEN_GAINS = {6: 2.776, 5: 3.182, 4: 4.303}

_Z = 1.96
_RTOL = 1e-9
_KEY = ["study", "patient"]
_RATER_COLUMN = {"patient": "alliance", "therapist": "therapist_alliance"}


# --------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------


def _tol(x) -> float | np.ndarray:
    return _RTOL * np.maximum(1.0, np.abs(x))


def _check_frame(df, value_cols, who: str) -> pd.DataFrame:
    """Validate canonical long data and return a clean copy.

    Returns columns study, patient (str), session (int64) and the value
    columns (float64, NaN = not observed), sorted by study, patient, session.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(
            f"{who}: expected a pandas DataFrame in long format (one row per "
            f"patient × session), got {type(df).__name__}."
        )
    needed = ["study", "patient", "session", *value_cols]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ValueError(
            f"{who}: the data are missing the column(s) {', '.join(repr(c) for c in missing)}. "
            f"Required: {', '.join(needed)} (see METHODS §1)."
        )
    if len(df) == 0:
        raise ValueError(f"{who}: the data have no rows.")
    out = pd.DataFrame(index=range(len(df)))
    for c in ("study", "patient"):
        col = df[c].reset_index(drop=True)
        if col.isna().any():
            raise ValueError(
                f"{who}: column '{c}' is empty in {int(col.isna().sum())} row(s); "
                f"every row needs a {c} label."
            )
        out[c] = col.astype(str)
    ses = df["session"].reset_index(drop=True)
    if not pd.api.types.is_numeric_dtype(ses) or pd.api.types.is_bool_dtype(ses):
        raise ValueError(f"{who}: column 'session' must hold whole numbers ≥ 0 (session or week).")
    ses_f = ses.to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(ses_f).any():
        raise ValueError(
            f"{who}: column 'session' is empty in {int(np.isnan(ses_f).sum())} row(s)."
        )
    if np.any(ses_f != np.round(ses_f)) or np.any(ses_f < 0):
        raise ValueError(f"{who}: column 'session' must hold whole numbers ≥ 0 (session or week).")
    out["session"] = ses_f.astype(np.int64)
    for c in value_cols:
        col = df[c].reset_index(drop=True)
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise ValueError(
                f"{who}: column '{c}' must be numeric (found {col.dtype}); "
                f"recode text answers to numbers first."
            )
        vals = col.to_numpy(dtype=float, na_value=np.nan)
        if np.isinf(vals).any():
            raise ValueError(f"{who}: column '{c}' contains infinite values.")
        out[c] = vals
    dup = out.duplicated(["study", "patient", "session"], keep=False)
    if dup.any():
        ex = out.loc[dup, ["study", "patient", "session"]].drop_duplicates().head(3)
        shown = "; ".join(f"study {r.study}, patient {r.patient}, session {r.session}"
                          for r in ex.itertuples())
        raise ValueError(
            f"{who}: {int(dup.sum())} rows share a (study, patient, session) key, "
            f"e.g. {shown}. Each patient may have one row per session."
        )
    return out.sort_values(["study", "patient", "session"], kind="mergesort").reset_index(drop=True)


def _positive_number(x, name: str, who: str, *, allow_zero=False) -> float:
    if isinstance(x, bool) or not isinstance(x, Real):
        raise ValueError(f"{who}: {name} must be a number, got {x!r}.")
    x = float(x)
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        raise ValueError(f"{who}: {name} must be a finite number > 0, got {x!r}.")
    return x


def _reliability(x, who: str) -> float:
    if isinstance(x, bool) or not isinstance(x, Real) or not math.isfinite(float(x)):
        raise ValueError(f"{who}: reliability must be a number in [0, 1), got {x!r}.")
    x = float(x)
    if not 0.0 <= x < 1.0:
        raise ValueError(
            f"{who}: reliability must be in [0, 1) (e.g. Cronbach's α or test–retest r), "
            f"got {x!r}. With r = 1 the standard error of measurement is 0."
        )
    return x


def _per_study(value, studies, name: str, who: str, check) -> dict:
    """A scalar (same for all studies) or a mapping study -> value."""
    if isinstance(value, Mapping):
        keyed = {str(k): v for k, v in value.items()}
        lacking = [s for s in studies if s not in keyed]
        if lacking:
            raise ValueError(
                f"{who}: {name} was given per study but not for study/studies "
                f"{', '.join(map(repr, lacking))}."
            )
        return {s: check(keyed[s]) for s in studies}
    v = check(value)
    return {s: v for s in studies}


# --------------------------------------------------------------------------
# §11 reliable change building block (used by §10 criterion 1 too)
# --------------------------------------------------------------------------


def reliable_change_cutoff(sd: float, reliability: float) -> float:
    """Smallest reliable change (METHODS §10 criterion 1, §11).

    ``1.96 · √2 · SD · √(1 − r)`` = 1.96 × the standard error of the
    difference of two scores, S_diff = √(2·(SD·√(1 − r))²).
    """
    sd = _positive_number(sd, "sd", "reliable_change_cutoff")
    r = _reliability(reliability, "reliable_change_cutoff")
    return _Z * math.sqrt(2.0) * sd * math.sqrt(1.0 - r)


def clinical_cutoff_c(M_clinical: float, SD_clinical: float,
                      M_functional: float, SD_functional: float) -> float:
    """Jacobson & Truax (1991) cut-off c (METHODS §11).

    ``c = (SD_f·M_c + SD_c·M_f) / (SD_f + SD_c)``: the point between the
    clinical and functional means weighted by the other group's SD. Because
    lower symptoms are better, the clinical mean must exceed the functional
    mean.
    """
    who = "clinical_cutoff_c"
    for nm, v in (("M_clinical", M_clinical), ("M_functional", M_functional)):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v)):
            raise ValueError(f"{who}: {nm} must be a finite number, got {v!r}.")
    sdc = _positive_number(SD_clinical, "SD_clinical", who)
    sdf = _positive_number(SD_functional, "SD_functional", who)
    mc, mf = float(M_clinical), float(M_functional)
    if not mc > mf:
        raise ValueError(
            f"{who}: M_clinical ({mc}) must be larger than M_functional ({mf}) because "
            f"higher symptom scores mean more severe; flip the scale or check the norms."
        )
    return (sdf * mc + sdc * mf) / (sdf + sdc)


def baseline_sd(df: pd.DataFrame, column: str = "symptoms") -> pd.DataFrame:
    """Per-study baseline mean and SD of ``column`` (default inputs for §10/§11).

    Baseline = each patient's first observed value (the same "pre" score
    that `reliable_change` uses). Per study: ``n_patients`` (patients with an
    observed value), ``baseline_mean`` and ``baseline_sd`` (ddof = 1; missing
    with fewer than 2 patients). Used as the suggested SD of the reliable
    change value 1.96·√2·SD·√(1 − r); the SD is a user input, this is only
    the default.
    """
    who = "baseline_sd"
    data = _check_frame(df, [column], who)
    obs = data[data[column].notna()]
    first = obs.groupby(_KEY, sort=True)[column].first().reset_index()
    out = first.groupby("study", sort=True)[column].agg(
        n_patients="count", baseline_mean="mean", baseline_sd=lambda s: s.std(ddof=1))
    studies = pd.Index(sorted(data["study"].unique()), name="study")
    out = out.reindex(studies)
    out["n_patients"] = out["n_patients"].fillna(0).astype(np.int64)
    return out.reset_index()[["study", "n_patients", "baseline_mean", "baseline_sd"]]


def standardize_within_study(df: pd.DataFrame, columns) -> pd.DataFrame:
    """Copy of ``df`` with ``columns`` z-standardized within each study (METHODS §2).

    ``z = (x − mean) / sd`` over the study's observed values, sd with
    ddof = 1; missing values stay missing. A study whose values do not vary
    (or with fewer than two observed values) cannot be standardized and
    raises ``ValueError``.
    """
    who = "standardize_within_study"
    if isinstance(columns, str):
        columns = [columns]
    columns = list(columns)
    data = _check_frame(df, columns, who)
    out = df.copy()
    order = df[["study", "patient", "session"]].astype({"study": str, "patient": str})
    for c in columns:
        g = data.groupby("study", sort=True)[c]
        m, s = g.transform("mean"), g.transform(lambda x: x.std(ddof=1))
        bad = sorted(data.loc[~(s > 0), "study"].unique())
        if bad:
            raise ValueError(
                f"{who}: '{c}' does not vary (or has fewer than two observed values) in "
                f"study/studies {', '.join(map(repr, bad))}, so it cannot be standardized."
            )
        z = pd.Series(((data[c] - m) / s).to_numpy(),
                      index=pd.MultiIndex.from_frame(data[["study", "patient", "session"]]))
        out[c] = z.reindex(pd.MultiIndex.from_frame(order)).to_numpy(dtype=float)
    return out


# --------------------------------------------------------------------------
# §9 ruptures
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RuptureCriterion:
    """A rupture criterion (METHODS §9): what a session's alliance is compared with.

    ``reference``: ``"other"`` – the patient's other observed sessions (leave-one-out;
    the session itself never moves its own yardstick) or ``"all"`` – all of the
    patient's observed sessions, the session included. ``detrend``: compare with the
    patient's own straight-line trend instead of the mean. ``sd``: ``"robust"`` – one
    robust study-level within-patient SD; ``"patient"`` – the patient's own SD (of the
    other sessions with reference "other"); ``"pooled"`` / ``"max"`` – the study's pooled
    within-patient SD / the larger of patient and pooled SD (reference "all" only).
    ``k``: how many SDs below the reference a session must fall.
    """

    name: str
    reference: str
    detrend: bool
    sd: str
    k: float

    def describe(self) -> str:
        """The criterion in words (for a report)."""
        ref = ("the patient's other sessions" if self.reference == "other"
               else "all of the patient's sessions (the session included)")
        what = "own linear trend" if self.detrend else "mean"
        sd = {"robust": "a robust study-level within-patient SD", "patient": "the patient's own SD",
              "pooled": "the study's pooled within-patient SD",
              "max": "the larger of the patient's own and the study's pooled SD"}[self.sd]
        from analysis.formatting import num

        return f"alliance ≥ {num(self.k)} SD below the {what} of {ref}; SD = {sd}"


#: Calibrated default k: see METHODS §9 and tests/test_events.py::test_default_criterion_calibration.
DEFAULT_K = 2.5

#: Named rupture criteria (METHODS §9). ``"default"`` is calibrated by simulation
#: (≤ 15% of patients flagged without ruptures at 7, 11 and 20 sessions, ≥ 70% of planted
#: 3.5-SD dips found at 7 and 11); ``"other_sessions"`` is the published dip ≥ 1 SD below the mean of the
#: patient's other session ratings (Safran & Muran, 2006); ``"mean_sd"`` is the dip
#: ≥ k·SD below the patient's mean with the dip included (this project's earlier default;
#: k = 1 lenient, k = 2 strict; Stiles et al., 2004; Strauss et al., 2006; Gumz et al., 2012 style).
RUPTURE_CRITERIA = {
    "default": RuptureCriterion("default", "other", True, "robust", DEFAULT_K),
    "other_sessions": RuptureCriterion("other_sessions", "other", False, "patient", 1.0),
    "mean_sd": RuptureCriterion("mean_sd", "all", False, "max", 1.0),
}

#: The named criteria in words (for option lists).
CRITERION_LABELS = {
    "default": f"Calibrated default: dip below the trend of the patient's other sessions (k = {DEFAULT_K:g}, "
               "robust study SD)",
    "other_sessions": "Published: ≥ 1 SD below the mean of the patient's other sessions (Safran & Muran)",
    "mean_sd": "Earlier default: ≥ k SD below the patient's mean, dip included (k = 1 lenient, 2 strict)",
}

_SD_CHOICES = {"other": ("robust", "patient"), "all": ("robust", "patient", "pooled", "max")}

# 90%-trimmed RMS of N(0, 1): E[Z² | |Z| ≤ c], c = Φ⁻¹(0.95)
_TRIM = 0.9
_C_TRIM = float(stats.norm.ppf(0.5 + _TRIM / 2))
_TRIM_CONSISTENCY = 1.0 - 2.0 * _C_TRIM * float(stats.norm.pdf(_C_TRIM)) / _TRIM


def robust_sd(u) -> float:
    """Robust SD of residuals centred at 0: the 90%-trimmed root mean square, rescaled.

    ``√( mean(u² over the 90% smallest |u|) / (1 − 2cφ(c)/0.9) )`` with c = Φ⁻¹(0.95):
    consistent for the SD of normal residuals and unaffected by the largest 10% (the dips
    one is looking for). Unlike the MAD it does not collapse to 0 when most residuals are 0
    (ratings at a scale's ceiling). NaN values are ignored; missing with no value.
    """
    u = np.asarray(u, float)
    u = np.sort(np.abs(u[np.isfinite(u)]))
    if len(u) == 0:
        return np.nan
    m = max(1, int(math.ceil(_TRIM * len(u))))
    return float(math.sqrt(np.mean(u[:m] ** 2) / _TRIM_CONSISTENCY))


def _robust_sd_rows(U: np.ndarray) -> np.ndarray:
    """`robust_sd` of each row of a 2-D array (NaN ignored)."""
    A = np.sort(np.abs(U), axis=1)  # NaN sorts last
    nfin = np.isfinite(A).sum(axis=1)
    m = np.maximum(1, np.ceil(_TRIM * nfin).astype(int))
    cs = np.cumsum(np.where(np.isfinite(A), A * A, 0.0), axis=1)
    out = np.sqrt(cs[np.arange(len(A)), m - 1] / m / _TRIM_CONSISTENCY)
    out[nfin == 0] = np.nan
    return out


def _resolve_criterion(criterion, k, sd, detrend, who) -> RuptureCriterion:
    if isinstance(criterion, RuptureCriterion):
        base = criterion
    elif criterion in RUPTURE_CRITERIA:
        base = RUPTURE_CRITERIA[criterion]
    else:
        raise ValueError(
            f"{who}: criterion must be one of {', '.join(map(repr, RUPTURE_CRITERIA))}, got {criterion!r}.")
    kk = base.k if k is None else _positive_number(k, "k", who)
    dt = base.detrend if detrend is None else detrend
    if not isinstance(dt, (bool, np.bool_)):
        raise ValueError(f"{who}: detrend must be True or False, got {dt!r}.")
    s = base.sd if sd is None else sd
    if s not in _SD_CHOICES[base.reference]:
        raise ValueError(
            f"{who}: with criterion {base.name!r} sd must be one of "
            f"{', '.join(map(repr, _SD_CHOICES[base.reference]))}, got {s!r}.")
    return RuptureCriterion(base.name, base.reference, bool(dt), s, kk)


def _patient_starts(codes: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])


def _dips(Y, x, starts, study_of_row, crit: RuptureCriterion):
    """Dip statistics for observed rows (sorted by patient, then session).

    ``Y`` is (B, N): B replicates of the N observed values (B = 1 for real data); ``x`` the
    sessions. Returns a dict of (B, N) arrays: ``expected`` (the reference value),
    ``scale`` (the SD the dip is measured in), ``threshold``, ``z``, ``flag``, and (N,)
    ``eligible``, ``n_obs``, ``patient_mean``, ``sd_patient_all``, ``sd_pooled``, ``sd_study``
    (B, N).
    """
    B, N = Y.shape
    counts = np.diff(np.r_[starts, N])
    n = np.repeat(counts, counts).astype(float)

    def psum(W):
        return np.repeat(np.add.reduceat(W, starts, axis=-1), counts, axis=-1)

    S1, S2 = psum(x), psum(x * x)
    Sy, Sxy, Syy = psum(Y), psum(Y * x), psum(Y * Y)
    eligible = n >= (4 if crit.detrend else 3)
    with np.errstate(all="ignore"):
        pmean = Sy / n
        ss_all = np.maximum(Syy - Sy * pmean, 0.0)
        sd_all_mean = np.sqrt(ss_all / (n - 1))
        if crit.reference == "other":
            o0, o1, o2 = n - 1, S1 - x, S2 - x * x
            oy, oxy, oyy = Sy - Y, Sxy - Y * x, Syy - Y * Y
        else:
            o0, o1, o2, oy, oxy, oyy = n, S1, S2, Sy, Sxy, Syy
        mx, my = o1 / o0, oy / o0
        sxx = o2 - o1 * mx
        sxy = oxy - o1 * my
        syy = oyy - oy * my
        if crit.detrend:
            b = sxy / sxx
            expected = my + b * (x - mx)
            lev = 1.0 / o0 + (x - mx) ** 2 / sxx
            rss, dfr = np.maximum(syy - b * sxy, 0.0), o0 - 2
        else:
            expected = my + 0.0 * Y
            lev = 1.0 / o0 + 0.0 * x
            rss, dfr = np.maximum(syy, 0.0), o0 - 1
        sd_own = np.sqrt(rss / dfr)
        resid = Y - expected
        # standardized residual with variance σ² under the no-rupture model:
        # leave-one-out prediction error / √(1 + h), or full-fit residual / √(1 − h)
        u = resid / np.sqrt(1.0 + lev) if crit.reference == "other" else resid / np.sqrt(1.0 - lev)
    # patients whose ratings never vary (e.g. all at a scale's ceiling) carry no information on the
    # within-patient noise: left out of the study SD so that it cannot collapse to 0
    u = np.where(eligible & (ss_all > 1e-12 * np.maximum(1.0, Syy)), u, np.nan)
    # rows are sorted by study: one contiguous slice per study
    st_codes = pd.factorize(study_of_row, sort=False)[0]
    st_start = np.flatnonzero(np.r_[True, st_codes[1:] != st_codes[:-1]])
    st_end = np.r_[st_start[1:], N]
    sd_study = np.full((B, N), np.nan)
    sd_pooled = np.full((B, N), np.nan)
    pat_dfs = n[starts] - 1
    for a0, a1 in zip(st_start, st_end):
        if crit.sd == "robust":
            sd_study[:, a0:a1] = _robust_sd_rows(u[:, a0:a1])[:, None]
        # pooled within-patient variance over the study's patients with ≥ 2 values, df = n − 1
        sel = (starts >= a0) & (starts < a1) & (pat_dfs >= 1)
        if sel.any() and (B == 1 or crit.sd in ("pooled", "max")):  # simulations need it only when used
            pooled = np.sqrt(ss_all[:, starts[sel]].sum(axis=1) / pat_dfs[sel].sum())
            sd_pooled[:, a0:a1] = pooled[:, None]
    if crit.sd == "robust":
        sd_used = sd_study
        scale = sd_study * (np.sqrt(1.0 + lev) if crit.reference == "other" else 1.0)
    elif crit.sd == "patient":
        sd_used = scale = sd_own
    elif crit.sd == "pooled":
        sd_used = scale = sd_pooled
    else:
        sd_used = scale = np.fmax(sd_own, sd_pooled)
    scale = np.where(eligible, scale, np.nan)
    threshold = expected - crit.k * scale
    with np.errstate(all="ignore"):
        z = np.where(scale > 0, resid / scale, np.nan)
    flag = eligible & (scale > 0) & (Y <= threshold + _tol(threshold))
    return {"expected": np.where(eligible, expected, np.nan), "scale": scale,
            "sd_used": np.where(eligible, sd_used, np.nan), "threshold": threshold,
            "z": np.where(eligible, z, np.nan), "flag": flag, "eligible": eligible, "n_obs": n,
            "patient_mean": pmean, "sd_patient_all": sd_all_mean, "sd_pooled": sd_pooled}


def _flag_series(data: pd.DataFrame, col: str, crit: RuptureCriterion) -> dict:
    """Dip statistics of one rater's column for every row of ``data`` (full length)."""
    a = data[col].to_numpy()
    obs = ~np.isnan(a)
    od = data.loc[obs]
    codes = pd.factorize(od["study"].str.cat(od["patient"], sep="\x1f"), sort=False)[0]
    starts = _patient_starts(codes)
    res = _dips(a[obs][None, :], od["session"].to_numpy(float), starts,
                od["study"].to_numpy(), crit) if obs.any() else None
    out = {}
    for key in ("expected", "scale", "sd_used", "threshold", "z", "patient_mean", "sd_patient_all",
                "sd_pooled"):
        full = np.full(len(data), np.nan)
        if res is not None:
            full[obs] = res[key][0]
        out[key] = full
    flag = np.zeros(len(data), dtype=bool)
    if res is not None:
        flag[obs] = res["flag"][0]
    out["flag"] = flag
    # per-patient counts and eligibility for every row (rows without a value included)
    n_obs = data.assign(_o=obs).groupby(_KEY, sort=False)["_o"].transform("sum").to_numpy()
    out["n_obs"] = n_obs.astype(np.int64)
    out["eligible"] = n_obs >= (4 if crit.detrend else 3)
    out["observed"] = obs
    # patient mean / sd for rows without a value too
    for key in ("patient_mean", "sd_patient_all", "sd_pooled"):
        s = pd.Series(out[key]).groupby([data["study"], data["patient"]], sort=False).transform("max")
        out[key] = s.to_numpy(dtype=float)
    return out


def _repairs(data, a, rupture_rows, pmean, pre_level):
    """Pre-rupture level, repair flag and repair session for the rupture rows (§9)."""
    n = len(data)
    pre = np.full(n, np.nan)
    repair = pd.array([pd.NA] * n, dtype="boolean")
    repair_session = pd.array([pd.NA] * n, dtype="Int64")
    if not rupture_rows.any():
        return pre, repair, repair_session
    obs = ~np.isnan(a)
    sessions = data["session"].to_numpy()
    starts = _patient_starts(pd.factorize(data["study"].str.cat(data["patient"], sep="\x1f"),
                                          sort=False)[0])
    ends = np.r_[starts[1:], n]
    for s0, s1 in zip(starts, ends):
        if not rupture_rows[s0:s1].any():
            continue
        rows_ = np.arange(s0, s1)
        seen = rows_[obs[s0:s1]]
        for r in rows_[rupture_rows[s0:s1]]:
            earlier = seen[seen < r]
            if pre_level == "last_non_rupture":
                earlier = earlier[~rupture_rows[earlier]]
            level = a[earlier[-1]] if len(earlier) else pmean[r]
            pre[r] = level
            later = seen[seen > r]
            hit = later[a[later] >= level - _tol(level)]
            repair[r] = bool(len(hit))
            if len(hit):
                repair_session[r] = int(sessions[hit[0]])
    return pre, repair, repair_session


def ruptures(df: pd.DataFrame, criterion="default", k: float | None = None, sd: str | None = None,
             detrend: bool | None = None, rater: str = "patient", pre_level: str = "previous",
             item: str | None = None, item_threshold: float | None = None,
             item_rule: str = "or") -> pd.DataFrame:
    """Flag alliance ruptures and repairs (METHODS §9).

    A session t of patient i is a *dip* when::

        A_it ≤ E_it − k · S_it

    with E_it the reference value and S_it the SD the dip is measured in, as set by the
    criterion (`RuptureCriterion`; named presets in `RUPTURE_CRITERIA`):

    * ``"default"`` (calibrated, METHODS §9): E_it = the prediction at session t from the
      straight line through the patient's **other** observed sessions (leave-one-out,
      detrended: alliance usually rises over treatment); S_it = σ̂·√(1 + h_it) with h_it
      = 1/(n_i − 1) + (t − t̄_(−t))²/Σ(s − t̄_(−t))² (the prediction's own uncertainty)
      and σ̂ one robust study-level within-patient SD (`robust_sd` of the standardized
      residuals of all eligible sessions of the study, patients whose ratings never vary left
      out); k = `DEFAULT_K` = 2.5. Needs ≥ 4
      observed values per patient.
    * ``"other_sessions"``: E_it = mean of the patient's other sessions, S_it = their SD
      (ddof = 1), k = 1 (Safran & Muran, 2006: a dip of at least one SD from the patient's
      other session ratings). ≥ 3 values.
    * ``"mean_sd"``: E_it = the patient's mean over all sessions (the dip included),
      S_it = ``sd``: ``"max"`` (max of the patient's SD and the study's pooled within-patient
      SD √(Σ(n_i − 1)s_i²/Σ(n_i − 1))), ``"patient"`` or ``"pooled"``; k = 1 (lenient) or
      2 (strict). ≥ 3 values. (This project's earlier default.)

    ``k``, ``sd`` and ``detrend`` override the preset's value. When S_it is 0 no session is
    a dip. Patients with too few observed values are not classified (``eligible`` False,
    ``rupture`` missing).

    ``rater``: ``"patient"`` (column ``alliance``), ``"therapist"``
    (``therapist_alliance``) or ``"both"`` (a dip in both ratings of the same session;
    ``alliance`` and the repair then refer to the patient's rating).

    Optional rupture item (e.g. a post-session rupture-intensity rating): ``item`` names a
    numeric column, ``item_threshold`` the value at or above which the item marks a
    rupture; ``item_rule``: ``"or"`` (dip or item), ``"and"`` (dip and item) or ``"item"``
    (the item alone; eligible = at least one observed item value).

    Repair (on the rupture row): some later observed session has alliance ≥ the
    pre-rupture level; ``pre_level="previous"`` (default) is the alliance at the last
    observed session before the rupture, ``"last_non_rupture"`` the last earlier session
    that is not itself a rupture; without an earlier session, the patient mean.

    Returns one row per input row, sorted by study, patient, session: ``study, patient,
    session, rater, criterion, alliance, n_obs, eligible, expected, sd_used, k, threshold,
    z, dip, rupture, pre_rupture_level, repair, repair_session`` plus ``patient_mean,
    sd_patient, sd_pooled`` (the patient's mean and SD over all sessions, the study's pooled
    SD), and with ``rater="both"`` ``therapist_alliance, dip_patient, dip_therapist``, with
    an item ``item, item_flag``. ``rupture`` is missing where the session cannot be
    classified; ``repair``/``repair_session``/``pre_rupture_level`` only on rupture rows.
    """
    who = "ruptures"
    if rater not in ("patient", "therapist", "both"):
        raise ValueError(f"{who}: rater must be 'patient', 'therapist' or 'both', got {rater!r}.")
    if pre_level not in ("previous", "last_non_rupture"):
        raise ValueError(
            f"{who}: pre_level must be 'previous' or 'last_non_rupture', got {pre_level!r}.")
    if item_rule not in ("or", "and", "item"):
        raise ValueError(f"{who}: item_rule must be 'or', 'and' or 'item', got {item_rule!r}.")
    crit = _resolve_criterion(criterion, k, sd, detrend, who)
    cols = ["alliance"] if rater == "patient" else (
        ["therapist_alliance"] if rater == "therapist" else ["alliance", "therapist_alliance"])
    if "therapist_alliance" in cols and isinstance(df, pd.DataFrame) and \
            "therapist_alliance" not in df.columns:
        raise ValueError(
            f"{who}: rater={rater!r} needs a 'therapist_alliance' column, which the data lack.")
    if item is not None:
        if not isinstance(item, str) or item in ("study", "patient", "session"):
            raise ValueError(f"{who}: item must name a numeric column of the data, got {item!r}.")
        if item_threshold is None or isinstance(item_threshold, bool) or \
                not isinstance(item_threshold, Real) or not math.isfinite(float(item_threshold)):
            raise ValueError(f"{who}: a rupture item needs a finite item_threshold, got {item_threshold!r}.")
    data = _check_frame(df, cols + ([item] if item is not None and item not in cols else []), who)
    res = [_flag_series(data, c, crit) for c in cols]
    main = res[0]
    a = data[cols[0]].to_numpy()
    eligible = main["eligible"].copy()
    known = eligible & main["observed"]
    dip = main["flag"].copy()
    for other in res[1:]:
        eligible &= other["eligible"]
        known &= other["eligible"] & other["observed"]
        dip &= other["flag"]
    rupture_known = known
    flag = dip & known
    if item is not None:
        iv = data[item].to_numpy(dtype=float)
        iobs = ~np.isnan(iv)
        iflag = iobs & (iv >= float(item_threshold) - _tol(float(item_threshold)))
        if item_rule == "item":
            has_item = pd.Series(iobs).groupby([data["study"], data["patient"]], sort=False) \
                .transform("any").to_numpy(dtype=bool)
            eligible, rupture_known, flag = has_item, iobs, iflag
        elif item_rule == "or":
            rupture_known = known | iflag
            flag = (dip & known) | iflag
        else:
            rupture_known = known & iobs
            flag = dip & known & iflag
    rupture = pd.array(flag, dtype="boolean")
    rupture[~rupture_known] = pd.NA
    pre, repair, repair_session = _repairs(data, a, flag, main["patient_mean"], pre_level)
    dip_col = pd.array(main["flag"], dtype="boolean")
    dip_col[~(main["eligible"] & main["observed"])] = pd.NA
    out = {
        "study": data["study"], "patient": data["patient"], "session": data["session"],
        "rater": rater, "criterion": crit.name, "alliance": a,
        "n_obs": main["n_obs"], "eligible": eligible,
        "patient_mean": main["patient_mean"], "sd_patient": main["sd_patient_all"],
        "sd_pooled": main["sd_pooled"], "expected": main["expected"], "sd_used": main["sd_used"],
        "k": crit.k, "threshold": main["threshold"], "z": main["z"], "dip": dip_col,
    }
    if rater == "both":
        out["therapist_alliance"] = data["therapist_alliance"].to_numpy()
        for nm, r in zip(("dip_patient", "dip_therapist"), res):
            d_ = pd.array(r["flag"], dtype="boolean")
            d_[~(r["eligible"] & r["observed"])] = pd.NA
            out[nm] = d_
    if item is not None:
        out["item"] = data[item].to_numpy(dtype=float)
        out["item_flag"] = iflag
    out.update({"rupture": rupture, "pre_rupture_level": pre, "repair": repair,
                "repair_session": repair_session})
    f = pd.DataFrame(out)
    f.attrs["criterion"] = crit
    return f


def simulate_rupture_data(n_patients: int = 400, n_sessions: int = 7, plant: float = 0.0,
                          dip_sd: float = 3.5, trend: float = 0.15, seed: int = 0,
                          study: str = "Sim") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rising-alliance data with optional planted single dips (the §9 calibration design).

    Alliance from `analysis.simulate.simulate_study` (patient means ~ N(0, 1), a rising
    trend of ``trend`` per session with patient SD 0.05, within-patient AR(1) deviations,
    φ = 0.3, innovation SD 1). The within-patient SD σ_w is the SD of those deviations
    (the stationary SD, `Simulation.truth["within_cov"][0][0]` ** 0.5). With
    ``plant`` > 0 that share of patients gets one dip of ``dip_sd``·σ_w at one session
    drawn uniformly from the second to the second-to-last; nothing else changes.

    Returns (data, planted) with planted = one row per dip (study, patient, session).
    """
    from analysis.simulate import simulate_study  # local: keeps the import graph light

    sim = simulate_study(n_patients, range(1, n_sessions + 1), study=study, alliance_trend=trend,
                         sd_alliance_trend=0.05, seed=seed)
    d = sim.data.copy()
    sw = math.sqrt(sim.truth["within_cov"][0][0])
    rng = np.random.default_rng([seed, 9])
    patients = d["patient"].unique()
    hit = patients[rng.random(len(patients)) < plant]
    sess = rng.integers(2, n_sessions, size=len(hit))  # sessions 2 .. T − 1
    planted = pd.DataFrame({"study": study, "patient": pd.array(hit, dtype="str"),
                            "session": sess.astype(np.int64)})
    key = d["patient"].astype(str) + "\x1f" + d["session"].astype(str)
    m = key.isin(planted["patient"] + "\x1f" + planted["session"].astype(str)).to_numpy()
    d.loc[m, "alliance"] = d.loc[m, "alliance"] - dip_sd * sw
    return d, planted


@dataclass(frozen=True)
class RuptureChance:
    """Observed rupture prevalence beside the prevalence expected by chance (METHODS §9).

    ``per_study`` (and the ``All studies`` row of `to_frame`): ``n_eligible`` classified
    patients, ``observed`` share with ≥ 1 dip, ``expected`` the mean share over ``n_sim``
    data sets simulated without ruptures, ``sim_low``/``sim_high`` the 2.5%/97.5% points
    of the simulated shares, ``p_excess`` = (1 + #{simulated ≥ observed})/(n_sim + 1).
    """

    criterion: RuptureCriterion
    rater: str
    n_sim: int
    seed: int
    per_study: pd.DataFrame
    messages: tuple = ()
    #: "simulation" (`rupture_chance`) or "item_permutation" (`rupture_item_chance`)
    method: str = "simulation"

    def to_frame(self) -> pd.DataFrame:
        return self.per_study.copy()

    @property
    def total(self) -> pd.Series:
        return self.per_study.iloc[-1]

    @property
    def basis(self) -> str:
        """What the expected prevalence assumes, in a few words."""
        return ("item at random sessions" if self.method == "item_permutation"
                else "no ruptures simulated")

    def summary(self) -> str:
        from analysis.formatting import count, percent

        t = self.total
        what = ("if each patient's item values fell on random sessions of that patient"
                if self.method == "item_permutation" else "without ruptures")
        return (f"Observed: {percent(t['observed'], 1)} of {count(t['n_eligible'])} classified patients "
                f"had a rupture; expected {what}: {percent(t['expected'], 1)} "
                f"(95% of {count(self.n_sim)} simulations {percent(t['sim_low'], 1)} to "
                f"{percent(t['sim_high'], 1)}).")


def _line_fit(y, x, starts, counts):
    """Per-patient OLS line (the mean with < 3 values): fitted values and r/√(1 − h)."""
    n = np.repeat(counts, counts).astype(float)

    def psum(w):
        return np.repeat(np.add.reduceat(w, starts), counts)

    with np.errstate(all="ignore"):
        mx, my = psum(x) / n, psum(y) / n
        sxx = psum((x - mx) ** 2)
        b = np.where((n >= 3) & (sxx > 0), psum((x - mx) * (y - my)) / sxx, 0.0)
        fit = my + b * (x - mx)
        lev = np.where(n >= 3, 1 / n + (x - mx) ** 2 / sxx, 1 / n)
        u = (y - fit) / np.sqrt(1 - lev)
        syy = psum((y - my) ** 2)
    u[(n < 2) | (syy <= 1e-12 * np.maximum(1.0, psum(y * y)))] = np.nan  # constant patients: no noise info
    return fit, u


def _chance_rows(studies, st_pat, elig_p, obs_p, sims, sigma, n_sim, exact=None) -> pd.DataFrame:
    """Per-study observed vs chance rows; ``exact`` (per patient) replaces the simulated mean."""
    rows = []
    for name, sel in [(s, st_pat == i) for i, s in enumerate(studies)] + [("All studies", np.ones_like(elig_p))]:
        m = sel & elig_p
        ne = int(m.sum())
        row = {"study": name, "n_eligible": ne, "n_observed": int(obs_p[m].sum()), "observed": np.nan,
               "expected": np.nan, "sim_low": np.nan, "sim_high": np.nan, "excess": np.nan, "p_excess": np.nan,
               "sigma_within": float(sigma.get(name, np.nan))}
        if ne:
            shares = sims[:, m].mean(axis=1)
            o = float(obs_p[m].mean())
            e = float(shares.mean() if exact is None else exact[m].mean())
            row.update(observed=o, expected=e, sim_low=float(np.quantile(shares, 0.025)),
                       sim_high=float(np.quantile(shares, 0.975)), excess=o - e,
                       p_excess=float((1 + np.sum(shares >= o - 1e-12)) / (n_sim + 1)))
        rows.append(row)
    return pd.DataFrame(rows)


def rupture_chance(df: pd.DataFrame, criterion="default", k: float | None = None,
                   sd: str | None = None, detrend: bool | None = None, rater: str = "patient",
                   n_sim: int = 100, seed: int = 1) -> RuptureChance:
    """Prevalence of ruptures expected without ruptures, on the user's own data (§9).

    For each study, every patient's observed alliance is refitted as a straight line
    (ordinary least squares; the patient mean with fewer than 3 values) and the study's
    within-patient noise SD σ̂ is `robust_sd` of the standardized residuals
    r_ij/√(1 − h_ij). ``n_sim`` data sets are simulated with the same patients and observed
    sessions: A*_ij = â_i + b̂_i·t_ij + σ̂·ε_ij, ε ~ N(0, 1) independent — data with each
    patient's own level and trend but no ruptures. The same criterion (`ruptures`) is
    applied to each; the shares of classified patients with ≥ 1 dip give the expected
    prevalence and its 2.5–97.5% range. Independent normal noise is the no-rupture model;
    autocorrelated or skewed (ceiling) ratings can make the real chance rate differ.

    ``rater="both"``: sessions with both ratings; both series are simulated, their noise
    correlated within a session with the study's correlation of the two standardized
    residuals, and a session counts when both dip. A rupture item is not simulated
    (`rupture_item_chance`). Equals ``rupture_chance_curve(...).at(k)``.
    """
    return rupture_chance_curve(df, criterion=criterion, sd=sd, detrend=detrend, rater=rater,
                                n_sim=n_sim, seed=seed).at(k)


@dataclass(frozen=True)
class RuptureChanceCurve:
    """The simulated no-rupture data sets of `rupture_chance`, kept for every k (METHODS §9).

    The simulated data do not depend on k: per data set and patient ``min_z`` holds the
    lowest z = (A − E)/S over the patient's classifiable sessions (with both raters the
    larger of the two z of a session), so the patient has a dip at k exactly when
    min_z ≤ −k (min_z is kept in single precision: ties within ~1e-7 are immaterial for
    simulated continuous data). `at` gives the `RuptureChance` for one k without simulating again.
    """

    criterion: RuptureCriterion
    rater: str
    n_sim: int
    seed: int
    studies: tuple
    min_z: np.ndarray = field(repr=False, compare=False)  # (n_sim, patients)
    sigma: dict = field(repr=False, compare=False)
    observed: tuple = field(repr=False, compare=False)  # (values per rater, sessions, starts, study per row)
    eligible: np.ndarray = field(default=None, repr=False, compare=False)  # (patients,) classifiable

    def to_frame(self, ks=(1.0, 1.5, 2.0, 2.5, 3.0, 3.5)) -> pd.DataFrame:
        """Expected prevalence without ruptures (all studies) for each k in ``ks``: k, expected,
        sim_low, sim_high (shares of the classifiable patients; 2.5% / 97.5% over the data sets)."""
        z = self.min_z[:, self.eligible]
        rows = []
        for k in ks:
            shares = (z <= -float(k) + _tol(float(k))).mean(axis=1) if z.shape[1] else np.full(self.n_sim, np.nan)
            rows.append({"k": float(k), "expected": float(np.mean(shares)),
                         "sim_low": float(np.quantile(shares, 0.025)), "sim_high": float(np.quantile(shares, 0.975))})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        from analysis.formatting import count, num, percent

        t = self.to_frame()
        return (f"Without ruptures ({count(self.n_sim)} simulated data sets), the share of classified patients "
                "with at least one dip would be " + ", ".join(
                    f"{percent(e, 1)} at k = {num(k)}" for k, e in zip(t["k"], t["expected"])) + ".")

    def at(self, k: float | None = None) -> RuptureChance:
        """Observed vs expected prevalence at ``k`` (None: the criterion's k)."""
        crit = _resolve_criterion(self.criterion, k, None, None, "rupture_chance")
        ys, x, starts, study_row = self.observed
        obs = [_dips(y[None, :], x, starts, study_row, crit) for y in ys]
        st_row = pd.Series(study_row).map({s: i for i, s in enumerate(self.studies)}).to_numpy()
        elig_p = np.logical_and.reduce([o["eligible"][starts] for o in obs])
        obs_flag = np.logical_and.reduce([o["flag"][0] for o in obs])
        obs_p = np.add.reduceat(obs_flag.astype(np.int64), starts) > 0
        sims = self.min_z <= -crit.k + _tol(crit.k)
        per_study = _chance_rows(list(self.studies), st_row[starts], elig_p, obs_p, sims, self.sigma, self.n_sim)
        msgs = () if elig_p.any() else ("No patient has enough alliance ratings to be classified.",)
        return RuptureChance(criterion=crit, rater=self.rater, n_sim=self.n_sim, seed=self.seed,
                             per_study=per_study, messages=msgs)


def rupture_chance_curve(df: pd.DataFrame, criterion="default", sd: str | None = None,
                         detrend: bool | None = None, rater: str = "patient", n_sim: int = 100,
                         seed: int = 1) -> RuptureChanceCurve:
    """Simulate the no-rupture data sets of `rupture_chance` once, for every k (METHODS §9)."""
    who = "rupture_chance"
    if rater not in ("patient", "therapist", "both"):
        raise ValueError(f"{who}: rater must be 'patient', 'therapist' or 'both', got {rater!r}.")
    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or not 20 <= n_sim <= 5000:
        raise ValueError(f"{who}: n_sim must be a whole number from 20 to 5000, got {n_sim!r}.")
    crit = _resolve_criterion(criterion, None, sd, detrend, who)
    cols = ["alliance", "therapist_alliance"] if rater == "both" else [_RATER_COLUMN[rater]]
    if isinstance(df, pd.DataFrame) and "therapist_alliance" in cols and "therapist_alliance" not in df.columns:
        raise ValueError(f"{who}: rater={rater!r} needs a 'therapist_alliance' column.")
    data = _check_frame(df, cols, who)
    od = data.dropna(subset=cols).reset_index(drop=True)
    if od.empty:
        raise ValueError(f"{who}: no session with observed {' and '.join(map(repr, cols))}.")
    starts = _patient_starts(pd.factorize(od["study"].str.cat(od["patient"], sep="\x1f"), sort=False)[0])
    counts = np.diff(np.r_[starts, len(od)])
    x = od["session"].to_numpy(float)
    study_row = od["study"].to_numpy()
    studies = sorted(set(study_row))
    st_row = pd.Series(study_row).map({s: i for i, s in enumerate(studies)}).to_numpy()
    ys = [od[c].to_numpy(float) for c in cols]
    fits, us = zip(*(_line_fit(y, x, starts, counts) for y in ys))
    sig = [pd.Series(st_row).map({i: robust_sd(u[st_row == i]) for i in range(len(studies))}).to_numpy(float)
           for u in us]
    rho = np.zeros(len(x))
    if len(cols) == 2:
        for i in range(len(studies)):
            m = (st_row == i) & np.isfinite(us[0]) & np.isfinite(us[1])
            if m.sum() >= 3 and us[0][m].std() > 0 and us[1][m].std() > 0:
                rho[st_row == i] = float(np.corrcoef(us[0][m], us[1][m])[0, 1])

    def _z(y):  # z of the classifiable sessions; +inf elsewhere (never a dip)
        z = _dips(y, x, starts, study_row, crit)["z"]
        return np.where(np.isfinite(z), z, np.inf)

    rng = np.random.default_rng(seed)
    mins = []
    for b0 in range(0, n_sim, 25):
        nb = min(25, n_sim - b0)
        e1 = rng.standard_normal((nb, len(x)))
        z = _z(fits[0][None, :] + sig[0] * e1)
        if len(cols) == 2:
            e2 = rho * e1 + np.sqrt(1 - rho ** 2) * rng.standard_normal((nb, len(x)))
            z = np.maximum(z, _z(fits[1][None, :] + sig[1] * e2))
        mins.append(np.minimum.reduceat(z, starts, axis=1).astype(np.float32))  # (nb, patients); half the memory
    sigma = {s: float(sig[0][st_row == i][0]) for i, s in enumerate(studies)}
    return RuptureChanceCurve(criterion=crit, rater=rater, n_sim=int(n_sim), seed=int(seed),
                              studies=tuple(studies), min_z=np.concatenate(mins, axis=0), sigma=sigma,
                              observed=(tuple(ys), x, starts, study_row),
                              eligible=np.logical_and.reduce([_dips(y[None, :], x, starts, study_row, crit)["eligible"]
                                                              [starts] for y in ys]))


def rupture_item_chance(flags: pd.DataFrame, n_sim: int = 100, seed: int = 1) -> RuptureChance:
    """Chance reference of the rule "dip **and** item" (METHODS §9): the item at random sessions.

    ``flags``: the output of `ruptures` with ``item=...`` and ``item_rule="and"``. The
    question is whether the sessions the item marks are the sessions where alliance dips,
    more often than chance. Null model: each patient's item values are permuted at random
    over that patient's sessions with both a classified alliance dip status and an item
    value (alliance untouched). For a patient with m such sessions, d of them dips and f
    of them marked by the item, the chance of at least one session that is both is exactly

        P = 1 − C(m − d, f) / C(m, f)

    (hypergeometric: none of the f marks lands on one of the d dips). The expected
    prevalence is the mean of P over the classified patients (exact); its 2.5–97.5% range
    and p = (1 + #{simulated ≥ observed})/(n_sim + 1) come from ``n_sim`` draws of
    independent Bernoulli(P) patients. With "or" or "item alone" a patient's any-rupture
    status does not change under this permutation (an item mark counts wherever it falls),
    so no chance level of that kind exists there; `rupture_analysis` says so.
    """
    who = "rupture_item_chance"
    need = ["study", "patient", "eligible", "dip", "item", "item_flag", "rupture"]
    if not isinstance(flags, pd.DataFrame) or any(c not in flags.columns for c in need):
        raise ValueError(f"{who}: flags must be the output of ruptures(..., item=..., item_rule='and').")
    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or not 20 <= n_sim <= 5000:
        raise ValueError(f"{who}: n_sim must be a whole number from 20 to 5000, got {n_sim!r}.")
    dip = flags["dip"].astype("boolean")
    known = dip.notna().to_numpy()
    if "dip_therapist" in flags.columns:
        dt = flags["dip_therapist"].astype("boolean")
        known = known & dt.notna().to_numpy()
        dip = dip & dt
    pair = known & flags["item"].notna().to_numpy()
    dd = pair & dip.fillna(False).to_numpy(dtype=bool)
    ff = pair & flags["item_flag"].to_numpy(dtype=bool)
    g = pd.DataFrame({"study": flags["study"].astype(str), "patient": flags["patient"].astype(str),
                      "eligible": flags["eligible"].to_numpy(dtype=bool), "m": pair, "d": dd, "f": ff,
                      "both": dd & ff}).groupby(["study", "patient"], sort=True)
    pp = g.agg(eligible=("eligible", "first"), m=("m", "sum"), d=("d", "sum"), f=("f", "sum"),
               both=("both", "any")).reset_index()
    m, d, f = (pp[c].to_numpy(float) for c in ("m", "d", "f"))
    with np.errstate(all="ignore"):
        log_ratio = (special.gammaln(m - d + 1) - special.gammaln(m - d - f + 1)
                     - special.gammaln(m + 1) + special.gammaln(m - f + 1))
    prob = np.where(f > m - d, 1.0, 1.0 - np.exp(log_ratio))
    prob = np.where((d == 0) | (f == 0), 0.0, prob)
    studies = sorted(pp["study"].unique())
    st_pat = pp["study"].map({s: i for i, s in enumerate(studies)}).to_numpy()
    elig_p = pp["eligible"].to_numpy(dtype=bool)
    sims = np.random.default_rng(seed).random((int(n_sim), len(pp))) < prob
    per_study = _chance_rows(studies, st_pat, elig_p, pp["both"].to_numpy(dtype=bool), sims, {}, n_sim,
                             exact=prob)
    crit = flags.attrs.get("criterion", RUPTURE_CRITERIA["default"])
    rater = str(flags["rater"].iloc[0]) if "rater" in flags.columns and len(flags) else "patient"
    msgs = () if elig_p.any() else ("No patient has enough alliance ratings to be classified.",)
    return RuptureChance(criterion=crit, rater=rater, n_sim=int(n_sim), seed=int(seed), per_study=per_study,
                         messages=msgs, method="item_permutation")


_FLAG_COLS = ["study", "patient", "session", "n_obs", "eligible", "rupture", "repair"]


def rupture_summary(flags: pd.DataFrame, rule: str = "any") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-patient and per-study rupture / repair prevalence (METHODS §9).

    Per patient (from the output of `ruptures`):

    * ``n_ruptures`` – number of rupture sessions; ``n_repaired`` – how many
      of them were repaired;
    * ``any_rupture`` – at least one rupture;
    * ``any_repair`` – at least one rupture was repaired;
    * ``all_repaired`` – at least one rupture and every rupture repaired;
    * ``rupture_repair`` – the patient shows a rupture–repair pattern, by
      ``rule``: ``"any"`` (default; at least one rupture followed by a repair,
      the patient-level classification of Stiles et al. 2004 / Strauss et al.
      2006 — then it equals ``any_repair``) or ``"all"`` (every rupture
      repaired, = ``all_repaired``).

    These are missing for patients with < 3 observed alliance values.

    Per study: ``n_patients``, ``n_too_few`` (patients with < 3 values, not
    classified), ``n_eligible``, counts ``n_rupture``, ``n_repair``,
    ``n_rupture_repair``, ``n_all_repaired`` and prevalences
    ``prev_* = n_* / n_eligible``; ``repair_given_rupture = n_repair /
    n_rupture``.

    Returns
    -------
    (per_patient, per_study)
    """
    who = "rupture_summary"
    if rule not in ("any", "all"):
        raise ValueError(f"{who}: rule must be 'any' or 'all', got {rule!r}.")
    if not isinstance(flags, pd.DataFrame):
        raise ValueError(f"{who}: expected the DataFrame returned by ruptures().")
    missing = [c for c in _FLAG_COLS if c not in flags.columns]
    if missing:
        raise ValueError(
            f"{who}: expected the DataFrame returned by ruptures(); missing column(s) "
            f"{', '.join(missing)}."
        )
    f = flags.copy()
    f["study"] = f["study"].astype(str)
    f["patient"] = f["patient"].astype(str)
    rup = f["rupture"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    rep = f["repair"].astype("boolean").fillna(False).to_numpy(dtype=bool) & rup
    f["_r"] = rup.astype(int)
    f["_p"] = rep.astype(int)
    g = f.groupby(_KEY, sort=True)
    pp = g.agg(n_obs=("n_obs", "first"), eligible=("eligible", "first"),
               n_ruptures=("_r", "sum"), n_repaired=("_p", "sum")).reset_index()
    first_rup = f.loc[rup].groupby(_KEY)["session"].min()
    pp["first_rupture_session"] = pd.array(
        pp.set_index(_KEY).index.map(first_rup), dtype="Int64")
    elig = pp["eligible"].astype(bool).to_numpy()
    nr = pp["n_ruptures"].to_numpy()
    nrep = pp["n_repaired"].to_numpy()

    def _b(x):
        out = pd.array(x, dtype="boolean")
        out[~elig] = pd.NA
        return out

    pp["any_rupture"] = _b(nr > 0)
    pp["any_repair"] = _b(nrep > 0)
    pp["all_repaired"] = _b((nr > 0) & (nrep == nr))
    pp["rupture_repair"] = pp["any_repair"] if rule == "any" else pp["all_repaired"]
    pp["rule"] = rule
    nr_i = pd.array(nr, dtype="Int64")
    nr_i[~elig] = pd.NA
    nrep_i = pd.array(nrep, dtype="Int64")
    nrep_i[~elig] = pd.NA
    pp["n_ruptures"] = nr_i
    pp["n_repaired"] = nrep_i
    pp = pp[["study", "patient", "n_obs", "eligible", "n_ruptures", "n_repaired",
             "any_rupture", "any_repair", "all_repaired", "rupture_repair", "rule",
             "first_rupture_session"]]

    rows = []
    for study, s in pp.groupby("study", sort=True):
        e = s[s["eligible"].astype(bool)]
        ne = len(e)
        n_r = int(e["any_rupture"].astype(bool).sum())
        n_p = int(e["any_repair"].astype(bool).sum())
        n_rr = int(e["rupture_repair"].astype(bool).sum())
        n_all = int(e["all_repaired"].astype(bool).sum())
        rows.append({
            "study": study,
            "n_patients": len(s),
            "n_too_few": len(s) - ne,
            "n_eligible": ne,
            "n_rupture": n_r,
            "n_repair": n_p,
            "n_rupture_repair": n_rr,
            "n_all_repaired": n_all,
            "prev_rupture": n_r / ne if ne else np.nan,
            "prev_repair": n_p / ne if ne else np.nan,
            "prev_rupture_repair": n_rr / ne if ne else np.nan,
            "prev_all_repaired": n_all / ne if ne else np.nan,
            "repair_given_rupture": n_p / n_r if n_r else np.nan,
            "rule": rule,
        })
    return pp.reset_index(drop=True), pd.DataFrame(rows)


# --------------------------------------------------------------------------
# §10 sudden gains
# --------------------------------------------------------------------------


def _gain_cut(studies, cutoff, reliability, sd, who) -> dict:
    """Per-study cut-off of sudden-gain criterion 1 (given, or the reliable change value)."""
    if cutoff is not None and (reliability is not None or sd is not None):
        raise ValueError(
            f"{who}: give either cutoff, or sd and reliability (to compute the reliable "
            f"change cutoff 1.96·√2·SD·√(1 − r)), not both."
        )
    if cutoff is not None:
        cut = _per_study(cutoff, studies, "cutoff", who,
                         lambda v: _positive_number(v, "cutoff", who))
    elif reliability is not None and sd is not None:
        sds = _per_study(sd, studies, "sd", who, lambda v: _positive_number(v, "sd", who))
        rel = _per_study(reliability, studies, "reliability", who,
                         lambda v: _reliability(v, who))
        cut = {s: reliable_change_cutoff(sds[s], rel[s]) for s in studies}
    else:
        raise ValueError(
            f"{who}: criterion 1 needs a cutoff: give cutoff=, or both sd= and reliability= "
            f"(the reliable change value 1.96·√2·SD·√(1 − r))."
        )
    return cut


def sudden_gains(df: pd.DataFrame, cutoff=None, reliability=None, sd=None,
                 first_only: bool = False, pairing: str = "session", kind: str = "gain",
                 better: str = "lower", column: str = "symptoms") -> pd.DataFrame:
    """Sudden gains by the Tang & DeRubeis (1999) criteria (METHODS §10).

    Candidate pairs are consecutive observed sessions n → n + 1 of a patient.
    With ``pairing="session"`` (default) "consecutive" is by session number:
    the pair exists only when both session n and session n + 1 have observed
    symptoms; a missing session is not bridged (n → n + 2 is never a
    candidate). ``pairing="next_observed"`` pairs each observed session with
    the patient's next observed one (for studies that measured irregularly);
    the windows of criterion 3 are then the neighbouring observed values.

    With x_n the pregain and x_{n+1} the postgain score (lower = better):

    1. ``x_n − x_{n+1} ≥ cutoff``. Give ``cutoff`` directly, or ``sd`` and
       ``reliability`` for the reliable change value
       ``1.96 · √2 · SD · √(1 − r)``. Each may be one number or a dict
       study → number.
    2. ``x_n − x_{n+1} ≥ 0.25 · x_n`` (needs raw scores ≥ 0 with 0 = no
       symptoms; negative symptom values raise ``ValueError``).
    3. ``mean(x_{n−2..n}) − mean(x_{n+1..n+3}) > t_crit · s_p`` with
       ``s_p = √( ((n1−1)·s1² + (n2−1)·s2²) / (n1 + n2 − 2) )`` (s with
       ddof = 1) over the observed values of the pre window (sessions n−2,
       n−1, n) and the post window (n+1, n+2, n+3). ``t_crit`` = 2.776 with
       3 + 3 values, 3.182 when one side has one missing value (5 values),
       4.303 when each side misses one (2 + 2). With fewer than two values on
       either side criterion 3 cannot be evaluated and fails
       (``criterion3_evaluable`` False, ``t_crit`` missing).

    **Sudden losses** (``kind="loss"``; Lutz et al., 2013): the mirror criteria, a rise in
    symptoms ``x_{n+1} − x_n ≥ cutoff``, ``≥ 0.25·x_n`` and
    ``mean(x_{n+1..n+3}) − mean(x_{n−2..n}) > t_crit·s_p``. **Direction**: ``better="lower"``
    (default; symptoms) or ``"higher"`` (a measure where higher is better, e.g. well-being:
    a gain is then a rise). ``magnitude`` is always the change in the event's direction
    (> 0). ``column`` chooses the measure (default ``symptoms``).

    **Reversal** (Tang & DeRubeis, 1999): at a later observed session ≥ 50% of the event is
    lost, ``x_s ≥ x_{n+1} + 0.5·magnitude`` for a gain on a lower-is-better measure (mirrored
    otherwise); ``reversal_session`` = the first such session (rows with ``is_gain`` only).

    ``meets_criteria`` = all three. ``gain_number`` numbers a patient's pairs
    that meet the criteria in session order (1 = first). ``is_gain`` equals
    ``meets_criteria``, or with ``first_only=True`` only the patient's first
    such pair (later ones keep ``meets_criteria`` True but ``is_gain`` False;
    `alliance_around_gains` leaves them out of both comparison groups).

    Returns
    -------
    One row per candidate pair: ``study, patient, pregain_session,
    postgain_session, pregain, postgain, magnitude (= pregain − postgain),
    relative_magnitude (= magnitude / pregain), cutoff, criterion1,
    criterion2, n_pre, n_post, mean_pre, mean_post, sd_pooled, t_crit,
    criterion3_evaluable, criterion3, meets_criteria, gain_number, is_gain``.
    """
    who = "sudden_gains"
    if pairing not in ("session", "next_observed"):
        raise ValueError(f"{who}: pairing must be 'session' or 'next_observed', got {pairing!r}.")
    if kind not in ("gain", "loss"):
        raise ValueError(f"{who}: kind must be 'gain' or 'loss', got {kind!r}.")
    if better not in ("lower", "higher"):
        raise ValueError(f"{who}: better must be 'lower' or 'higher', got {better!r}.")
    if not isinstance(column, str) or column in ("study", "patient", "session"):
        raise ValueError(f"{who}: column must name a numeric measure, got {column!r}.")
    # sign: +1 when the event is a fall in the score, −1 when it is a rise
    sign = 1.0 if (kind == "gain") == (better == "lower") else -1.0
    if not isinstance(first_only, (bool, np.bool_)):
        raise ValueError(f"{who}: first_only must be True or False.")
    data = _check_frame(df, [column], who)
    if column != "symptoms":
        data = data.rename(columns={column: "symptoms"})
    data = data[data["symptoms"].notna()].reset_index(drop=True)
    cut = _gain_cut(sorted(data["study"].unique()), cutoff, reliability, sd, who)
    if (data["symptoms"] < 0).any():
        raise ValueError(
            f"{who}: '{column}' contains negative values. Criterion 2 (a change of at least 25% "
            f"of the pregain score) needs raw scores ≥ 0 with 0 = none; do not use "
            f"standardized or centered scores here."
        )

    study_a = data["study"].to_numpy()
    pat_a = data["patient"].to_numpy()
    ses_a = data["session"].to_numpy()
    x = data["symptoms"].to_numpy(dtype=float)
    offsets = (-2, -1, 1, 2, 3)
    if pairing == "session":
        lookup = pd.Series(x, index=pd.MultiIndex.from_arrays([study_a, pat_a, ses_a]))

        def _at(o):
            idx = pd.MultiIndex.from_arrays([study_a, pat_a, ses_a + o])
            return lookup.reindex(idx).to_numpy(dtype=float)

        nb = {o: _at(o) for o in offsets}
        post_ses = ses_a + 1
    else:
        grp = data.groupby(_KEY, sort=False)
        nb = {o: grp["symptoms"].shift(-o).to_numpy(dtype=float) for o in offsets}
        post_ses = grp["session"].shift(-1).fillna(-1).to_numpy().astype(np.int64)
    cand = ~np.isnan(nb[1])
    pre_w = np.column_stack([nb[-2], nb[-1], x])[cand]
    post_w = np.column_stack([nb[1], nb[2], nb[3]])[cand]
    xn = x[cand]
    xn1 = nb[1][cand]
    cvec = pd.Series(study_a[cand]).map(cut).to_numpy(dtype=float)
    drop = sign * (xn - xn1)
    n1 = (~np.isnan(pre_w)).sum(axis=1)
    n2 = (~np.isnan(post_w)).sum(axis=1)
    m1 = np.nansum(pre_w, axis=1) / n1
    m2 = np.nansum(post_w, axis=1) / n2
    ss1 = np.nansum((pre_w - m1[:, None]) ** 2, axis=1)  # (n1 − 1)·s1²
    ss2 = np.nansum((post_w - m2[:, None]) ** 2, axis=1)  # (n2 − 1)·s2²
    evaluable = (n1 >= 2) & (n2 >= 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        sp = np.where(evaluable, np.sqrt((ss1 + ss2) / np.maximum(n1 + n2 - 2, 1)), np.nan)
        rel_mag = np.where(xn != 0, drop / np.where(xn != 0, xn, 1.0), np.nan)
    tc = np.array([T_CRIT_SUDDEN_GAINS.get(int(t), np.nan) for t in n1 + n2])
    tc[~evaluable] = np.nan
    c3 = evaluable & (sign * (m1 - m2) > tc * sp)
    out = pd.DataFrame({
        "study": pd.array(study_a[cand], dtype="str"),
        "patient": pd.array(pat_a[cand], dtype="str"),
        "pregain_session": ses_a[cand].astype(np.int64),
        "postgain_session": post_ses[cand].astype(np.int64),
        "pregain": xn, "postgain": xn1, "magnitude": drop, "relative_magnitude": rel_mag,
        "cutoff": cvec,
        "criterion1": drop >= cvec - _tol(cvec),
        "criterion2": drop >= 0.25 * xn - _tol(0.25 * xn),
        "n_pre": n1.astype(np.int64), "n_post": n2.astype(np.int64),
        "mean_pre": m1, "mean_post": m2, "sd_pooled": sp, "t_crit": tc,
        "criterion3_evaluable": evaluable, "criterion3": c3,
    })
    out["meets_criteria"] = out["criterion1"] & out["criterion2"] & out["criterion3"]
    num = out.groupby(_KEY, sort=False)["meets_criteria"].cumsum()
    gn = pd.array(num.to_numpy(dtype=np.int64), dtype="Int64")
    gn[~out["meets_criteria"].to_numpy()] = pd.NA
    out["gain_number"] = gn
    if first_only:
        out["is_gain"] = out["meets_criteria"] & (num == 1)
    else:
        out["is_gain"] = out["meets_criteria"].copy()
    out.insert(2, "kind", kind)
    out.insert(3, "better", better)
    rev, rev_s = _reversals(data, out, sign)
    out["reversal"] = rev
    out["reversal_session"] = rev_s
    out.attrs["first_only"] = bool(first_only)
    out.attrs["pairing"] = pairing
    out.attrs["kind"] = kind
    return out


def _reversals(data: pd.DataFrame, out: pd.DataFrame, sign: float):
    """Reversal flag and first reversal session for the event rows (Tang & DeRubeis, 1999)."""
    n = len(out)
    rev = pd.array([pd.NA] * n, dtype="boolean")
    rev_s = pd.array([pd.NA] * n, dtype="Int64")
    ev_rows = np.flatnonzero(out["is_gain"].to_numpy(dtype=bool))
    if not len(ev_rows):
        return rev, rev_s
    d = data[["study", "patient", "session", "symptoms"]].sort_values(["study", "patient", "session"],
                                                                       kind="mergesort")
    key = d["study"].str.cat(d["patient"], sep="\x1f").to_numpy()
    all_s, all_x = d["session"].to_numpy(), d["symptoms"].to_numpy(float)
    cut = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.array([], dtype=int)
    span = dict(zip(key[cut], zip(cut, np.r_[cut[1:], len(key)])))  # patient → its rows
    o_st, o_pt = out["study"].to_numpy(object), out["patient"].to_numpy(object)
    o_ps, o_post, o_mag = (out[c].to_numpy(dtype=float, na_value=np.nan)
                           for c in ("postgain_session", "postgain", "magnitude"))
    for r in ev_rows:
        a0, a1 = span[f"{o_st[r]}\x1f{o_pt[r]}"]
        ses, x = all_s[a0:a1], all_x[a0:a1]
        post_s, post = o_ps[r], float(o_post[r])
        half = post + sign * 0.5 * float(o_mag[r])  # half-way back to pregain
        later = ses > post_s
        back = later & (sign * (x - half) >= -_tol(half))
        rev[r] = bool(back.any())
        if back.any():
            rev_s[r] = int(ses[np.flatnonzero(back)[0]])
    return rev, rev_s


def sudden_gain_summary(gains: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-patient and per-study counts of sudden gains (from `sudden_gains`).

    Per patient (patients with ≥ 1 candidate pair): ``n_pairs``,
    ``n_evaluable`` (pairs where criterion 3 could be evaluated), ``n_gains``
    (pairs with ``is_gain``), ``n_reversed`` (of them reversed), ``any_gain``,
    ``first_gain_session`` (pregain session of the first gain) and ``mean_magnitude`` of
    the gains. Per study: ``n_patients``, ``n_with_gain``, ``prev_gain = n_with_gain /
    n_patients``, ``n_gains``, ``n_reversed``, ``prev_reversal = n_reversed / n_gains`` and
    ``mean_magnitude`` over all gains. (Losses: the same columns for the losses.)
    """
    who = "sudden_gain_summary"
    g = _pair_frame(gains, who)
    for c in ("magnitude", "criterion3_evaluable"):
        if c not in gains.columns:
            raise ValueError(f"{who}: expected the DataFrame returned by sudden_gains(); "
                             f"missing column {c!r}.")
    g["magnitude"] = gains["magnitude"].to_numpy(dtype=float)
    g["_ev"] = gains["criterion3_evaluable"].astype(bool).to_numpy().astype(int)
    g["_g"] = g["is_gain"].astype(bool).astype(int)
    g["_gm"] = g["magnitude"].where(g["_g"] == 1)
    g["_gs"] = g["pregain_session"].where(g["_g"] == 1)
    rev = gains["reversal"] if "reversal" in gains.columns else pd.Series(False, index=gains.index)
    g["_rv"] = (rev.astype("boolean").fillna(False).to_numpy(dtype=bool) & (g["_g"] == 1)).astype(int)
    pp = g.groupby(_KEY, sort=True).agg(
        n_pairs=("_g", "size"), n_evaluable=("_ev", "sum"), n_gains=("_g", "sum"),
        n_reversed=("_rv", "sum"),
        first_gain_session=("_gs", "min"), mean_magnitude=("_gm", "mean")).reset_index()
    pp["any_gain"] = pp["n_gains"] > 0
    pp["first_gain_session"] = pd.array(pp["first_gain_session"], dtype="Int64")
    pp = pp[["study", "patient", "n_pairs", "n_evaluable", "n_gains", "n_reversed", "any_gain",
             "first_gain_session", "mean_magnitude"]]
    ps = pp.groupby("study", sort=True).agg(
        n_patients=("patient", "size"), n_with_gain=("any_gain", "sum"),
        n_gains=("n_gains", "sum"), n_reversed=("n_reversed", "sum")).reset_index()
    ps["prev_reversal"] = np.where(ps["n_gains"] > 0, ps["n_reversed"] / ps["n_gains"].where(ps["n_gains"] > 0), np.nan)
    ps["prev_gain"] = ps["n_with_gain"] / ps["n_patients"]
    mm = g[g["_g"] == 1].groupby("study")["magnitude"].mean()
    ps["mean_magnitude"] = ps["study"].map(mm).astype(float)
    return pp, ps


# --------------------------------------------------------------------------
# §10 alliance around sudden gains
# --------------------------------------------------------------------------


def _mean_ci(x, level: float = 0.95):
    """Mean, t-interval bounds and n of the finite values of ``x``."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return np.nan, np.nan, np.nan, 0
    m = float(x.mean())
    if n < 2:
        return m, np.nan, np.nan, n
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return m, m - half, m + half, n


@dataclass(frozen=True)
class AllianceTrajectory:
    """Alliance over sessions around sudden gains (METHODS §10).

    ``relative``: gainers' mean alliance by session relative to their first gain's pregain
    session (0 = pregain, 1 = postgain; −3 … +4), with 95% t intervals. ``by_session``: mean
    alliance per session for patients with ≥ 1 gain vs patients without.
    """

    rater: str
    relative: pd.DataFrame
    by_session: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        a = self.relative.assign(view="relative to the gain")
        b = self.by_session.rename(columns={"session": "position"}).assign(view="by session")
        return pd.concat([a.rename(columns={"relative_session": "position"}), b], ignore_index=True)

    def summary(self) -> str:
        from analysis.formatting import num

        r = self.relative.set_index("relative_session")
        if not {0, 1} <= set(r.index) or not r.loc[[0, 1], "n"].gt(0).all():
            return "Too few gainers with alliance ratings around the gain to draw a trajectory."
        pre = r.loc[r.index < 0, "mean"].mean()
        post = r.loc[r.index > 1, "mean"].mean()
        return (f"Gainers' mean alliance: {num(pre)} in the sessions before the pregain session, "
                f"{num(r.loc[0, 'mean'])} at the pregain and {num(r.loc[1, 'mean'])} at the postgain session, "
                f"{num(post)} afterwards.")


def alliance_trajectory(df: pd.DataFrame, gains: pd.DataFrame, rater: str = "patient",
                        window: tuple[int, int] = (-3, 4)) -> AllianceTrajectory:
    """Gainers' alliance by session relative to the first gain, and gainers vs others by session.

    The first gain of each patient (``is_gain``) defines session 0 (pregain) — relative
    positions count observed-or-not sessions by number. Means with 95% t intervals (§10).
    """
    col, data, g = _rater_and_pairs(df, gains, rater, "alliance_trajectory")
    first = g[g["is_gain"].astype(bool)].groupby(_KEY, sort=False)["pregain_session"].min()
    d = data[data[col].notna()].merge(first.rename("g0").reset_index(), on=_KEY, how="left")
    d["rel"] = d["session"] - d["g0"]
    rows = []
    for rel in range(window[0], window[1] + 1):
        m, lo, hi, n = _mean_ci(d.loc[d["rel"] == rel, col])
        rows.append({"relative_session": rel, "mean": m, "ci_low": lo, "ci_high": hi, "n": n})
    rows2 = []
    d["group"] = np.where(d["g0"].notna(), "gainers", "non-gainers")
    for (ses, grp), s in d.groupby(["session", "group"], sort=True):
        m, lo, hi, n = _mean_ci(s[col])
        rows2.append({"session": int(ses), "group": grp, "mean": m, "ci_low": lo, "ci_high": hi, "n": n})
    return AllianceTrajectory(rater=rater, relative=pd.DataFrame(rows), by_session=pd.DataFrame(rows2))


@dataclass(frozen=True)
class AllianceAroundGains:
    """Alliance change over gain pairs vs other consecutive pairs (§10).

    ``change = A_{n+1} − A_n`` for each candidate pair of `sudden_gains`.

    * group means: ``mean_change_gain`` (pairs with ``is_gain``) vs
      ``mean_change_other`` (pairs that do not meet the criteria);
      ``difference`` = gain − other.
    * paired test: for patients with ≥ 1 gain pair and ≥ 1 other pair,
      d_i = mean gain-pair change − mean other-pair change;
      ``t = mean(d)/(sd(d)/√m)``, df = m − 1, two-sided p.
    * random-intercept model (REML): ``change_ij = b0 + b1·gain_ij + u_i +
      e_ij`` with u_i per patient; b1 with its model SE and z-test p.
    """

    n_gain_pairs: int
    n_other_pairs: int
    n_pairs_missing_alliance: int
    n_pairs_excluded_later_gains: int
    mean_change_gain: float
    mean_change_other: float
    sd_change_gain: float
    sd_change_other: float
    difference: float
    paired_n: int
    paired_mean_diff: float
    paired_se: float
    paired_t: float
    paired_df: float
    paired_p: float
    model_intercept: float
    model_estimate: float
    model_se: float
    model_z: float
    model_p: float
    model_tau2: float
    model_sigma2: float
    model_n_patients: int
    model_converged: bool
    rater: str
    pairs: pd.DataFrame = field(repr=False, compare=False)
    messages: tuple = ()

    @property
    def group_means(self) -> pd.DataFrame:
        """Mean alliance at session n and n + 1 with 95% t intervals, gain vs other pairs."""
        use = self.pairs[self.pairs["change"].notna() & self.pairs["group"].isin(["gain", "other"])]
        rows = []
        for grp in ("gain", "other"):
            s = use[use["group"] == grp]
            for when, col in (("pre", "alliance_pre"), ("post", "alliance_post")):
                m, lo, hi, n = _mean_ci(s[col])
                rows.append({"group": grp, "time": when, "mean": m, "ci_low": lo, "ci_high": hi, "n": n})
        return pd.DataFrame(rows)

    @property
    def change_distribution(self) -> pd.DataFrame:
        """Densities of the alliance change (40 common bins): other pairs vs gain pairs.

        ``bin_low``/``bin_high``/``bin_mid`` and ``density_other``, ``density_gain`` (histogram
        densities, each integrating to 1), so thousands of other pairs are drawn as one curve.
        """
        use = self.pairs[self.pairs["change"].notna() & self.pairs["group"].isin(["gain", "other"])]
        x = use["change"].to_numpy(float)
        if len(x) == 0:
            return pd.DataFrame(columns=["bin_low", "bin_high", "bin_mid", "density_other", "density_gain"])
        lo, hi = float(x.min()), float(x.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
        out = pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "bin_mid": (edges[:-1] + edges[1:]) / 2})
        for grp in ("other", "gain"):
            v = use.loc[use["group"] == grp, "change"].to_numpy(float)
            out["density_" + grp] = np.histogram(v, bins=edges, density=True)[0] if len(v) else np.nan
        return out

    def summary(self, unit: str = "alliance points") -> str:
        """The three comparisons in words."""
        from analysis.formatting import count, num, p_text, signed, stat

        if self.n_gain_pairs == 0:
            return "No sudden gain has alliance ratings at both sessions, so there is nothing to compare."
        s = (f"Across {count(self.n_gain_pairs)} gain pairs the alliance changed on average by "
             f"{signed(self.mean_change_gain)} {unit} from session n to n + 1; across "
             f"{count(self.n_other_pairs)} other pairs by {signed(self.mean_change_other)} "
             f"(difference {signed(self.difference)}).")
        if np.isfinite(self.paired_t):
            s += (f" Paired within-patient test ({count(self.paired_n)} patients with both kinds of pairs): "
                  f"mean difference {signed(self.paired_mean_diff)}, "
                  f"{stat('t', self.paired_t, self.paired_df)}, {p_text(self.paired_p)}.")
        if np.isfinite(self.model_estimate):
            s += (f" Random-intercept model (all pairs): gain-pair effect {signed(self.model_estimate)} "
                  f"(SE {num(self.model_se)}, {stat('z', self.model_z)}, {p_text(self.model_p)}).")
        return s

    def to_frame(self) -> pd.DataFrame:
        rows = [
            ("Gain pairs: mean alliance change", self.mean_change_gain, self.n_gain_pairs),
            ("Other pairs: mean alliance change", self.mean_change_other, self.n_other_pairs),
            ("Difference (gain − other)", self.difference, np.nan),
            ("Paired test: mean within-patient difference", self.paired_mean_diff, self.paired_n),
            ("Paired test: SE", self.paired_se, np.nan),
            ("Paired test: t", self.paired_t, np.nan),
            ("Paired test: df", self.paired_df, np.nan),
            ("Paired test: p", self.paired_p, np.nan),
            ("Random-intercept model: gain-pair effect", self.model_estimate,
             self.n_gain_pairs + self.n_other_pairs),
            ("Random-intercept model: SE", self.model_se, np.nan),
            ("Random-intercept model: z", self.model_z, np.nan),
            ("Random-intercept model: p", self.model_p, np.nan),
            ("Random-intercept model: τ² (patient)", self.model_tau2, self.model_n_patients),
            ("Random-intercept model: σ² (residual)", self.model_sigma2, np.nan),
        ]
        return pd.DataFrame(rows, columns=["quantity", "value", "n"])


def _rater_and_pairs(df, gains, rater, who):
    """(alliance column, checked data, pair frame) for the alliance-around-gains analyses."""
    if rater not in _RATER_COLUMN:
        raise ValueError(f"{who}: rater must be 'patient' or 'therapist', got {rater!r}.")
    col = _RATER_COLUMN[rater]
    return col, _check_frame(df, [col], who), _pair_frame(gains, who)


def _pair_frame(gains, who):
    if not isinstance(gains, pd.DataFrame):
        raise ValueError(f"{who}: expected the DataFrame returned by sudden_gains().")
    need = ["study", "patient", "pregain_session", "postgain_session", "is_gain",
            "meets_criteria"]
    missing = [c for c in need if c not in gains.columns]
    if missing:
        raise ValueError(
            f"{who}: expected the DataFrame returned by sudden_gains(); missing column(s) "
            f"{', '.join(missing)}."
        )
    g = gains[need].copy()
    g["study"] = g["study"].astype(str)
    g["patient"] = g["patient"].astype(str)
    return g


def alliance_around_gains(df: pd.DataFrame, gains: pd.DataFrame,
                          rater: str = "patient") -> AllianceAroundGains:
    """Alliance at the pregain vs postgain session, gain pairs vs other pairs.

    METHODS §10 ("alliance in session n vs n + 1 for gain sessions against
    other sessions"). For every candidate pair of `sudden_gains` the change
    ``A_{n+1} − A_n`` (postgain − pregain session alliance) is computed;
    pairs with a missing alliance value are dropped (counted). Gain pairs
    are those with ``is_gain``; other pairs those that do not meet the
    criteria (with ``first_only`` the later gains are in neither group).
    See `AllianceAroundGains` for the three comparisons. The random-intercept
    model is fitted by REML with `analysis.mixed.fit_random_intercept` (no formulas). When
    studies used different alliance instruments, standardize first
    (METHODS §2).
    """
    col, data, g = _rater_and_pairs(df, gains, rater, "alliance_around_gains")
    a = data.set_index(["study", "patient", "session"])[col]
    pre_idx = pd.MultiIndex.from_arrays([g["study"], g["patient"], g["pregain_session"]])
    post_idx = pd.MultiIndex.from_arrays([g["study"], g["patient"], g["postgain_session"]])
    g["alliance_pre"] = a.reindex(pre_idx).to_numpy(dtype=float)
    g["alliance_post"] = a.reindex(post_idx).to_numpy(dtype=float)
    g["change"] = g["alliance_post"] - g["alliance_pre"]
    is_gain = g["is_gain"].astype(bool).to_numpy()
    meets = g["meets_criteria"].astype(bool).to_numpy()
    grp = np.where(is_gain, "gain", np.where(meets, "later gain (excluded)", "other"))
    g["group"] = grp
    messages = []
    n_later = int((grp == "later gain (excluded)").sum())
    miss = g["change"].isna().to_numpy()
    n_miss = int(miss.sum())
    if n_miss:
        messages.append(f"{n_miss} pair(s) dropped because alliance was missing at session n or n + 1.")
    if n_later:
        messages.append(f"{n_later} later gain pair(s) excluded (first gain only).")
    use = g.loc[~miss & (grp != "later gain (excluded)")].reset_index(drop=True)
    cg = use.loc[use["group"] == "gain", "change"].to_numpy()
    co = use.loc[use["group"] == "other", "change"].to_numpy()

    def _m(x):
        return float(np.mean(x)) if len(x) else np.nan

    def _s(x):
        return float(np.std(x, ddof=1)) if len(x) >= 2 else np.nan

    # paired, within patient
    pm = use.groupby(_KEY + ["group"])["change"].mean().unstack("group")
    if "gain" in pm and "other" in pm:
        d = (pm["gain"] - pm["other"]).dropna().to_numpy()
    else:
        d = np.array([])
    m = len(d)
    if m >= 2:
        dm = float(d.mean())
        dse = float(d.std(ddof=1) / math.sqrt(m))
        if dse > 0:
            tt = dm / dse
            tp = float(2 * stats.t.sf(abs(tt), m - 1))
        else:
            tt, tp = np.nan, np.nan
            messages.append("Paired test: all within-patient differences are equal; no test.")
        pdf = float(m - 1)
    else:
        dm = float(d.mean()) if m else np.nan
        dse = tt = tp = pdf = np.nan
        messages.append(
            f"Paired test needs ≥ 2 patients with both a gain pair and another pair; found {m}."
        )

    est = se = z = p = b0 = tau2 = sig2 = np.nan
    conv = False
    n_pat = int(use.groupby(_KEY).ngroups) if len(use) else 0
    if len(cg) and len(co) and len(use) > 2 and n_pat >= 2:
        X = np.column_stack([np.ones(len(use)), (use["group"] == "gain").to_numpy(float)])
        grp_key = use["study"].str.cat(use["patient"], sep="\x1f")
        try:
            fit = fit_random_intercept(X, use["change"].to_numpy(float), grp_key.to_numpy(),
                                       names=["intercept", "gain pair"])
        except (np.linalg.LinAlgError, ValueError) as exc:
            messages.append(f"Random-intercept model could not be fitted: {exc}")
        else:
            b0, est = (float(v) for v in fit.beta)
            se = float(fit.se[1])
            z = est / se if se > 0 else np.nan
            p = float(2 * stats.norm.sf(abs(z))) if se > 0 else np.nan
            tau2, sig2 = float(fit.tau2), float(fit.sigma2)
            conv = bool(fit.converged)
            if fit.tau2 == 0.0:
                messages.append(
                    "Random-intercept variance estimated at 0 (boundary); the model "
                    "equals ordinary least squares."
                )
    else:
        messages.append(
            "Random-intercept model needs gain pairs, other pairs and ≥ 2 patients."
        )

    return AllianceAroundGains(
        n_gain_pairs=len(cg), n_other_pairs=len(co), n_pairs_missing_alliance=n_miss,
        n_pairs_excluded_later_gains=n_later,
        mean_change_gain=_m(cg), mean_change_other=_m(co),
        sd_change_gain=_s(cg), sd_change_other=_s(co),
        difference=_m(cg) - _m(co),
        paired_n=m, paired_mean_diff=dm, paired_se=dse, paired_t=tt, paired_df=pdf,
        paired_p=tp,
        model_intercept=b0, model_estimate=est, model_se=se, model_z=z, model_p=p,
        model_tau2=tau2, model_sigma2=sig2, model_n_patients=n_pat, model_converged=conv,
        rater=rater, pairs=g, messages=tuple(messages),
    )


# --------------------------------------------------------------------------
# §11 reliable and clinically significant change
# --------------------------------------------------------------------------


_NORM_KEYS = ("M_clinical", "SD_clinical", "M_functional", "SD_functional")


def _pre_post(data: pd.DataFrame) -> pd.DataFrame:
    """First and last observed symptom value per patient."""
    obs = data[data["symptoms"].notna()]
    g = obs.groupby(_KEY, sort=True)
    pp = g.agg(n_obs=("symptoms", "count"), pre_session=("session", "first"),
               post_session=("session", "last"), pre=("symptoms", "first"),
               post=("symptoms", "last"))
    allp = data[_KEY].drop_duplicates().set_index(_KEY)
    pp = allp.join(pp, how="left").sort_index().reset_index()
    pp["n_obs"] = pp["n_obs"].fillna(0).astype(np.int64)
    one = pp["n_obs"] < 2
    pp.loc[one, ["pre", "post"]] = np.nan
    pp["pre_session"] = pd.array(pp["pre_session"].where(~one), dtype="Int64")
    pp["post_session"] = pd.array(pp["post_session"].where(~one), dtype="Int64")
    pp["change"] = pp["post"] - pp["pre"]
    return pp


#: Critical value of the Hageman–Arrindell RC_INDIV (one-sided 5%; METHODS §11).
HA_CRIT = 1.65

RC_METHODS = {
    "JT": "Jacobson–Truax (1991)",
    "GLN": "Gulliksen–Lord–Novick (Hsu, 1989)",
    "EN": "Edwards–Nunnally (Speer, 1992)",
    "HA": "Hageman–Arrindell (1999)",
}


def reliable_change(df: pd.DataFrame, reliability, sd, norms=None, cutoff=None,
                    method: str = "JT") -> pd.DataFrame:
    """Reliable and clinically significant change (§11), by one of `RC_METHODS`.

    Per patient, pre = first and post = last observed symptom score (patients
    with < 2 observed values get missing results). With r the reliability, SD = ``sd``,
    S_E = SD·√(1 − r), and per study M_pre, M_post the means of the pre and post scores
    (patients with both):

    * ``"JT"`` (default): ``RCI = (x_post − x_pre) / S_diff``, ``S_diff = √(2·S_E²)``;
      reliable when |RCI| > 1.96.
    * ``"GLN"`` (reliability-adjusted; regression to the mean):
      ``RC = ((x_post − M_pre) − r·(x_pre − M_pre)) / (SD·√(1 − r²))``; |RC| > 1.96.
    * ``"EN"``: the estimated true pre score ``T = r·(x_pre − M_pre) + M_pre``;
      ``RC = (x_post − T) / S_E``, reliable when x_post lies outside T ± 2·S_E (|RC| > 2).
    * ``"HA"`` (Hageman & Arrindell, 1999, RC_INDIV): the reliabilities at pre and post follow
      from the one S_E, r_t = (s_t² − S_E²)/s_t² with the study's pre and post SDs s_1, s_2, so
      ``r_DD = (s_1²·r_1 + s_2²·r_2 − 2·r_12·s_1·s_2)/(s_1² + s_2² − 2·r_12·s_1·s_2)
      = 1 − 2·S_E²/var(x_post − x_pre)`` (r_12 the pre–post correlation) and
      ``RC = ((x_post − x_pre)·r_DD + (M_post − M_pre)·(1 − r_DD)) / √(r_DD·2·S_E²)``;
      reliable when |RC| > 1.65 (`HA_CRIT`: Hageman and Arrindell's one-sided 5% bound on
      the risk of misclassifying a patient). Needs ≥ 3 patients with both scores and
      r_DD > 0 in the study.

    Lower symptoms are better, so ``reliable_improvement`` = index < −crit and
    ``reliable_deterioration`` = index > crit (``rci`` holds the chosen method's index,
    ``rc_crit`` its critical value, ``s_diff`` the Jacobson–Truax S_diff for reference).

    Clinical cut-off: ``cutoff=`` a number (e.g. `SCL90R_GSI_GERMAN_CUTOFF`),
    or ``norms=`` a dict with ``M_clinical, SD_clinical, M_functional,
    SD_functional`` giving ``c = (SD_f·M_c + SD_c·M_f)/(SD_f + SD_c)``.
    ``recovered`` = reliable improvement and crossing c from above to below
    (pre > c and post < c; a score exactly at c is not a crossing).
    ``category``: recovered / improved (reliable improvement, not recovered) /
    unchanged / deteriorated; without a cut-off only improved / unchanged /
    deteriorated and ``recovered`` is missing.

    ``reliability``, ``sd``, ``cutoff`` may be one number or a dict study →
    number; ``norms`` one dict or a dict study → norms dict.
    """
    who = "reliable_change"
    if method not in RC_METHODS:
        raise ValueError(f"{who}: method must be one of {', '.join(RC_METHODS)}, got {method!r}.")
    data = _check_frame(df, ["symptoms"], who)
    studies = sorted(data["study"].unique())
    rel = _per_study(reliability, studies, "reliability", who, lambda v: _reliability(v, who))
    sds = _per_study(sd, studies, "sd", who, lambda v: _positive_number(v, "sd", who))
    if norms is not None and cutoff is not None:
        raise ValueError(f"{who}: give either norms (to compute c) or cutoff, not both.")

    def _norm(nd):
        if not isinstance(nd, Mapping):
            raise ValueError(f"{who}: norms must be a dict with keys {', '.join(_NORM_KEYS)}.")
        lack = [k for k in _NORM_KEYS if k not in nd]
        if lack:
            raise ValueError(f"{who}: norms lack the key(s) {', '.join(lack)}.")
        return clinical_cutoff_c(*(nd[k] for k in _NORM_KEYS))

    if norms is not None:
        if not isinstance(norms, Mapping) or any(k in norms for k in _NORM_KEYS):
            cvals = dict.fromkeys(studies, _norm(norms))
        else:
            cvals = _per_study(norms, studies, "norms", who, _norm)
    elif cutoff is not None:
        def _cut(v):
            if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v)):
                raise ValueError(f"{who}: cutoff must be a finite number, got {v!r}.")
            return float(v)
        cvals = _per_study(cutoff, studies, "cutoff", who, _cut)
    else:
        cvals = None

    pp = _pre_post(data)
    st = pp["study"]
    pp["reliability"] = st.map(rel).astype(float)
    pp["sd"] = st.map(sds).astype(float)
    pp["s_diff"] = pp["sd"] * np.sqrt(1.0 - pp["reliability"]) * math.sqrt(2.0)
    pp["method"] = method
    pp["rci"], pp["rc_crit"], rc_msgs = _rc_index(pp, method)
    has = pp["rci"].notna().to_numpy()
    rci = pp["rci"].to_numpy()
    crit = float(pp["rc_crit"].iloc[0]) if len(pp) else 1.96

    def _b(x):
        out = pd.array(x, dtype="boolean")
        out[~has] = pd.NA
        return out

    imp = has & (rci < -crit)
    det = has & (rci > crit)
    pp["reliable_improvement"] = _b(imp)
    pp["reliable_deterioration"] = _b(det)
    cat = np.where(imp, "improved", np.where(det, "deteriorated", "unchanged")).astype(object)
    if cvals is not None:
        c = st.map(cvals).astype(float).to_numpy()
        pre = pp["pre"].to_numpy()
        post = pp["post"].to_numpy()
        above = pre > c
        below = post < c
        rec = imp & above & below
        pp["cutoff"] = c
        pp["pre_above_cutoff"] = _b(above)
        pp["post_below_cutoff"] = _b(below)
        pp["recovered"] = _b(rec)
        cat[rec] = "recovered"
    else:
        pp["cutoff"] = np.nan
        na = pd.array([pd.NA] * len(pp), dtype="boolean")
        pp["pre_above_cutoff"] = na
        pp["post_below_cutoff"] = na.copy()
        pp["recovered"] = na.copy()
    cat[~has] = None
    pp["category"] = pd.array(cat, dtype="string")
    out = pp[["study", "patient", "n_obs", "pre_session", "post_session", "pre", "post",
              "change", "reliability", "sd", "s_diff", "method", "rci", "rc_crit",
              "reliable_improvement", "reliable_deterioration", "cutoff", "pre_above_cutoff",
              "post_below_cutoff", "recovered", "category"]]
    out.attrs["messages"] = tuple(rc_msgs)
    return out


def _rc_index(pp: pd.DataFrame, method: str):
    """The change index of `reliable_change` per patient, its critical value, messages."""
    r = pp["reliability"].to_numpy(float)
    sd = pp["sd"].to_numpy(float)
    pre, post = pp["pre"].to_numpy(float), pp["post"].to_numpy(float)
    se = sd * np.sqrt(1.0 - r)
    msgs = []
    if method == "JT":
        return (post - pre) / pp["s_diff"].to_numpy(float), 1.96, msgs
    both = pp["pre"].notna() & pp["post"].notna()
    st = pp.loc[both].groupby("study")
    m_pre = pp["study"].map(st["pre"].mean()).to_numpy(float)
    if method == "GLN":
        return ((post - m_pre) - r * (pre - m_pre)) / (sd * np.sqrt(1.0 - r * r)), 1.96, msgs
    if method == "EN":
        return (post - (r * (pre - m_pre) + m_pre)) / se, 2.0, msgs
    # HA: one S_E for both occasions; r_DD = 1 − 2·S_E² / var(x_post − x_pre)
    m_post = pp["study"].map(st["post"].mean()).to_numpy(float)
    n = pp["study"].map(st.size()).fillna(0).to_numpy(float)
    var_d = pp["study"].map(st["change"].var(ddof=1)).to_numpy(float)
    with np.errstate(all="ignore"):
        rdd = 1.0 - 2.0 * se ** 2 / var_d
        idx = ((post - pre) * rdd + (m_post - m_pre) * (1 - rdd)) / np.sqrt(rdd * 2.0 * se ** 2)
    bad = (n < 3) | ~(rdd > 0)
    for study in sorted(set(pp.loc[bad, "study"])):
        msgs.append(f"Study {study}: the Hageman–Arrindell index needs ≥ 3 patients with a first and last "
                    f"score and more spread in their changes than measurement error alone gives "
                    f"(reliability of the change scores r_DD > 0).")
    idx[bad] = np.nan
    return idx, HA_CRIT, msgs


# --------------------------------------------------------------------------
# §9 / §10 relation to outcome, pooled across studies (§6)
# --------------------------------------------------------------------------


_RUPTURE_EVENTS = {"rupture": "any_rupture", "repair": "any_repair",
                   "rupture_repair": "rupture_repair", "all_repaired": "all_repaired"}


@dataclass(frozen=True)
class OutcomeByPattern:
    """Pre–post symptom change, patients with vs without an event (§9, §10).

    ``per_study`` has one row per study; ``meta`` is the
    ``analysis.meta.MetaResult`` of the random-effects pooling of the
    included studies' ``yi``/``vi`` (None when nothing could be pooled; see
    ``messages``). ``per_patient`` lists the patients used.
    """

    event: str
    measure: str
    per_study: pd.DataFrame
    per_patient: pd.DataFrame = field(repr=False, compare=False)
    meta: object = None
    messages: tuple = ()

    def summary(self, what: str = "the pattern") -> str:
        """The comparison in words: the one study's effect, or the pooled effect."""
        from analysis.formatting import count, estimate_ci, p_text, signed

        eff = "Hedges' g" if self.measure == "SMD" else "mean difference"
        ps = self.per_study
        if len(ps) == 1:
            r = ps.iloc[0]
            s = (f"No pooling with one study: symptoms changed on average by {signed(r.mean_change_event)} "
                 f"points in the {count(r.n_event)} patients with {what} and by "
                 f"{signed(r.mean_change_no_event)} in the {count(r.n_no_event)} without.")
            if r.included:
                s += (f" {eff} = {estimate_ci(r.yi, r.ci_low, r.ci_high)} (95% CI), {p_text(r.pvalue)}: "
                      f"patients with {what} improved {'more' if r.yi < 0 else 'less'}.")
            return s
        if self.meta is None or self.meta.k < 2:
            return "No pooling: fewer than two studies have at least two patients with and two without it."
        m = self.meta
        return (f"Pooled over {m.k} studies ({eff}, with minus without {what}): "
                f"{estimate_ci(m.estimate, m.ci_low, m.ci_high)} (95% CI), {p_text(m.pvalue)}; on average "
                f"patients with {what} improved {'more' if m.estimate < 0 else 'less'}.")

    def to_frame(self) -> pd.DataFrame:
        """Per-study table plus a final pooled row (when pooled)."""
        t = self.per_study.copy()
        if self.meta is not None:
            pooled = {
                "study": "Pooled (random effects)",
                "included": True,
                "yi": float(self.meta.estimate),
                "se": float(self.meta.se),
                "ci_low": float(self.meta.ci_low),
                "ci_high": float(self.meta.ci_high),
                "pvalue": float(self.meta.pvalue),
                "n_event": int(t.loc[t["included"], "n_event"].sum()),
                "n_no_event": int(t.loc[t["included"], "n_no_event"].sum()),
            }
            t = pd.concat([t, pd.DataFrame([pooled])], ignore_index=True)
        return t


def _hedges_j(m: float) -> float:
    """Exact small-sample correction J(m) = Γ(m/2) / (√(m/2)·Γ((m − 1)/2))."""
    return math.exp(special.gammaln(m / 2) - 0.5 * math.log(m / 2) - special.gammaln((m - 1) / 2))


def _events_per_patient(x: pd.DataFrame, event, rule, who):
    """(per-patient frame with study, patient, event bool; event name)."""
    if not isinstance(x, pd.DataFrame):
        raise ValueError(
            f"{who}: flags_or_gains must be the DataFrame from ruptures(), rupture_summary() "
            f"(per patient) or sudden_gains()."
        )
    if "study" not in x.columns or "patient" not in x.columns:
        raise ValueError(f"{who}: flags_or_gains needs columns 'study' and 'patient'.")
    if "rupture" in x.columns and "threshold" in x.columns:
        pp, _ = rupture_summary(x, rule=rule)
        kind = "ruptures"
    elif "any_rupture" in x.columns:
        pp = x.copy()
        kind = "ruptures"
    elif "is_gain" in x.columns and "pregain_session" in x.columns:
        kind = "gains"
        if event not in (None, "gain"):
            raise ValueError(f"{who}: with sudden_gains() output the event is 'gain', got {event!r}.")
        g = x.assign(study=x["study"].astype(str), patient=x["patient"].astype(str))
        pp = (g.groupby(_KEY, sort=True)["is_gain"].agg(lambda s: bool(s.astype(bool).any()))
              .rename("event").reset_index())
        return pp, "gain"
    else:
        kind = "generic"
    if kind == "ruptures":
        event = "rupture" if event is None else event
        if event not in _RUPTURE_EVENTS:
            raise ValueError(
                f"{who}: event must be one of {', '.join(_RUPTURE_EVENTS)} for rupture flags, "
                f"got {event!r}."
            )
        colname = _RUPTURE_EVENTS[event]
        if colname not in pp.columns:
            raise ValueError(f"{who}: the per-patient table lacks column {colname!r}.")
        if "eligible" in pp.columns:
            pp = pp[pp["eligible"].astype(bool)]
        out = pd.DataFrame({"study": pp["study"].astype(str), "patient": pp["patient"].astype(str),
                            "event": pp[colname]})
    else:
        if event is None or event not in x.columns:
            raise ValueError(
                f"{who}: flags_or_gains is not output of ruptures()/rupture_summary()/"
                f"sudden_gains(); then event= must name a True/False column of it."
            )
        if x.duplicated(_KEY).any():
            raise ValueError(f"{who}: a per-patient event table must have one row per patient.")
        out = pd.DataFrame({"study": x["study"].astype(str), "patient": x["patient"].astype(str),
                            "event": x[event]})
    out = out[out["event"].notna()]
    vals = out["event"].to_numpy()
    if not all(isinstance(v, (bool, np.bool_)) or v in (0, 1) for v in vals):
        raise ValueError(f"{who}: the event column must hold True/False values.")
    out["event"] = vals.astype(bool)
    return out.reset_index(drop=True), event


def outcome_by_pattern(df: pd.DataFrame, flags_or_gains: pd.DataFrame, event: str | None = None,
                       measure: str = "SMD", rule: str = "any", method: str = "REML",
                       test: str = "z", level: float = 0.95) -> OutcomeByPattern:
    """Relation of an event pattern to outcome, per study and pooled (§9, §10, §6).

    Per patient, ``change = x_post − x_pre`` (last minus first observed
    symptom score; negative = improvement; patients with < 2 values are left
    out). The event per patient comes from ``flags_or_gains``:

    * `ruptures` output or the per-patient table of `rupture_summary`:
      ``event`` = "rupture" (default; any rupture), "repair" (≥ 1 repaired),
      "rupture_repair" (by ``rule``, see `rupture_summary`) or
      "all_repaired"; patients with < 3 alliance values are left out;
    * `sudden_gains` output: event = at least one pair with ``is_gain``
      (patients with ≥ 1 candidate pair are included);
    * any per-patient table with study, patient and a True/False column
      named by ``event``.

    Per study with n1 patients with and n2 without the event (means M, SDs s
    with ddof = 1):

    * ``md = M1 − M2``, ``var_md = s1²/n1 + s2²/n2``;
    * ``smd`` = Hedges' g = J·(M1 − M2)/s_p,
      ``s_p = √(((n1 − 1)s1² + (n2 − 1)s2²)/(n1 + n2 − 2))``,
      ``J = Γ(m/2)/(√(m/2)·Γ((m − 1)/2))``, m = n1 + n2 − 2;
      ``var_smd = 1/n1 + 1/n2 + g²/(2(n1 + n2))`` (metafor ``escalc``
      "SMD"/"MD" definitions).

    Per-study ``se = √vi``, Wald CI ``yi ± z·se`` at ``level`` and z-test p.
    A study is pooled when n1 ≥ 2, n2 ≥ 2 and the variance is > 0. The
    chosen ``measure`` ("SMD", default — studies use different instruments —
    or "MD") gives ``yi``, ``vi``, pooled by
    ``analysis.meta.random_effects(yi, vi, method=method, test=test)``
    (METHODS §6, REML by default). A negative pooled value means patients
    with the event improved more.
    """
    who = "outcome_by_pattern"
    if measure not in ("SMD", "MD"):
        raise ValueError(f"{who}: measure must be 'SMD' or 'MD', got {measure!r}.")
    if rule not in ("any", "all"):
        raise ValueError(f"{who}: rule must be 'any' or 'all', got {rule!r}.")
    data = _check_frame(df, ["symptoms"], who)
    ev, event = _events_per_patient(flags_or_gains, event, rule, who)
    pp = _pre_post(data)
    both = pp.merge(ev, on=_KEY, how="inner")
    messages = []
    n_nochange = int(both["change"].isna().sum())
    if n_nochange:
        messages.append(f"{n_nochange} patient(s) with < 2 symptom values left out.")
    n_unmatched = len(ev) - len(both)
    if n_unmatched:
        messages.append(f"{n_unmatched} patient(s) of the event table are not in the data.")
    both = both[both["change"].notna()].reset_index(drop=True)

    zq = float(stats.norm.ppf(0.5 + level / 2)) if 0 < level < 1 else np.nan
    if not np.isfinite(zq):
        raise ValueError(f"{who}: level must be between 0 and 1, got {level!r}.")
    rows = []
    for study in sorted(set(data["study"])):
        s = both[both["study"] == study]
        x1 = s.loc[s["event"], "change"].to_numpy(float)
        x2 = s.loc[~s["event"], "change"].to_numpy(float)
        n1, n2 = len(x1), len(x2)
        m1 = float(x1.mean()) if n1 else np.nan
        m2 = float(x2.mean()) if n2 else np.nan
        s1 = float(x1.std(ddof=1)) if n1 >= 2 else np.nan
        s2 = float(x2.std(ddof=1)) if n2 >= 2 else np.nan
        md = m1 - m2
        var_md = s1 ** 2 / n1 + s2 ** 2 / n2 if n1 >= 2 and n2 >= 2 else np.nan
        smd = var_smd = np.nan
        if n1 >= 2 and n2 >= 2:
            sp = math.sqrt(((n1 - 1) * s1 ** 2 + (n2 - 1) * s2 ** 2) / (n1 + n2 - 2))
            if sp > 0:
                mdf = n1 + n2 - 2
                smd = _hedges_j(mdf) * md / sp
                var_smd = 1 / n1 + 1 / n2 + smd ** 2 / (2 * (n1 + n2))
        yi, vi = (smd, var_smd) if measure == "SMD" else (md, var_md)
        ok = bool(np.isfinite(yi) and np.isfinite(vi) and vi > 0)
        note = ""
        if not ok:
            note = ("needs ≥ 2 patients with and ≥ 2 without the event"
                    if (n1 < 2 or n2 < 2) else "no variation in change scores")
        se = math.sqrt(vi) if ok else np.nan
        rows.append({
            "study": study, "n_event": n1, "n_no_event": n2,
            "mean_change_event": m1, "mean_change_no_event": m2,
            "sd_change_event": s1, "sd_change_no_event": s2,
            "md": md, "var_md": var_md, "smd": smd, "var_smd": var_smd,
            "yi": yi, "vi": vi, "se": se,
            "ci_low": yi - zq * se if ok else np.nan,
            "ci_high": yi + zq * se if ok else np.nan,
            "pvalue": float(2 * stats.norm.sf(abs(yi / se))) if ok else np.nan,
            "included": ok, "note": note,
        })
    per_study = pd.DataFrame(rows)
    for r in per_study.itertuples():
        if not r.included:
            messages.append(f"Study {r.study} not pooled: {r.note}.")
    inc = per_study[per_study["included"]]
    meta_res = None
    if len(inc) == 0:
        messages.append("No study could be pooled.")
    else:
        from analysis.meta import random_effects  # written by another module owner

        try:
            meta_res = random_effects(inc["yi"].to_numpy(float), inc["vi"].to_numpy(float),
                                      method=method, test=test, level=level,
                                      labels=list(inc["study"]))
        except ValueError as exc:
            messages.append(f"Pooling not possible: {exc}")
    return OutcomeByPattern(event=event, measure=measure, per_study=per_study,
                            per_patient=both, meta=meta_res, messages=tuple(messages))


# --------------------------------------------------------------------------
# results for readers (the page, reports): tables and sentences, §9–§11
# --------------------------------------------------------------------------

_CANONICAL = {"study", "patient", "session", "alliance", "symptoms", "therapist_alliance", "therapist"}


#: Reader-facing column names of the `to_frame` tables (percent columns end in "(%)").
TABLE_LABELS = {
    "study": "Study", "n_patients": "Patients", "n_eligible": "Classified", "n_rupture": "Rupture (n)",
    "prev_rupture": "Rupture (%)", "chance_expected": "Expected by chance (%)",
    "chance_sim_low": "Chance 2.5% (%)", "chance_sim_high": "Chance 97.5% (%)", "chance_p_excess": "p (excess)",
    "n_repair": "Repair (n)", "prev_repair": "Repair (%)", "n_rupture_repair": "Rupture–repair (n)",
    "prev_rupture_repair": "Rupture–repair (%)", "repair_given_rupture": "Repaired among ruptured (%)",
    "cutoff": "Cut-off", "reliability": "r", "sd": "SD", "n_with_gain": "With an event (n)",
    "prev_gain": "With an event (%)", "n_gains": "Events (n)", "n_reversed": "Reversed (n)",
    "prev_reversal": "Reversed (%)", "mean_magnitude": "Mean size",
    "smallest_reliable_change": "Smallest reliable change",
    **{f"{p}_{c}": f"{c.capitalize()} ({'n' if p == 'n' else '%'})" for p in ("n", "prev")
       for c in ("recovered", "improved", "unchanged", "deteriorated")},
}


def extra_numeric_columns(df: pd.DataFrame) -> list[str]:
    """Numeric columns beyond the canonical ones (METHODS §1): candidates for a rupture item."""
    return [str(c) for c in df.columns if c not in _CANONICAL
            and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
            and df[c].notna().any()]


def _share(n, N) -> float:
    return n / N if N else np.nan


def _with_total(t: pd.DataFrame, counts: list[str], shares: dict) -> pd.DataFrame:
    """Append an "All studies" row: counts summed, shares = numerator / denominator."""
    if len(t) < 2:
        return t.reset_index(drop=True)
    tot = {c: t[c].sum() for c in counts}
    tot["study"] = "All studies"
    for c, (num_, den) in shares.items():
        tot[c] = _share(tot[num_], tot[den])
    return pd.concat([t, pd.DataFrame([tot])], ignore_index=True)


@dataclass(frozen=True)
class RuptureAnalysis:
    """Ruptures and repairs with their chance reference (METHODS §9), ready to show.

    ``flags`` (per session, `ruptures`), ``per_patient`` / ``per_study`` (`rupture_summary`),
    ``chance`` (`rupture_chance`, None when not computed). `to_frame` is the prevalence
    table (one row per study, plus "All studies" with several).
    """

    criterion: RuptureCriterion
    rater: str
    rule: str
    item: str | None
    flags: pd.DataFrame = field(repr=False, compare=False)
    per_patient: pd.DataFrame = field(repr=False, compare=False)
    per_study: pd.DataFrame = field(repr=False, compare=False)
    chance: RuptureChance | None = None
    messages: tuple = ()

    def to_frame(self) -> pd.DataFrame:
        ps = self.per_study
        t = ps[["study", "n_patients", "n_eligible", "n_rupture", "n_repair", "n_rupture_repair"]].copy()
        t = _with_total(t, ["n_patients", "n_eligible", "n_rupture", "n_repair", "n_rupture_repair"], {})
        t.insert(4, "prev_rupture", t["n_rupture"] / t["n_eligible"].where(t["n_eligible"] > 0))
        t["prev_repair"] = t["n_repair"] / t["n_eligible"].where(t["n_eligible"] > 0)
        t["prev_rupture_repair"] = t["n_rupture_repair"] / t["n_eligible"].where(t["n_eligible"] > 0)
        t["repair_given_rupture"] = t["n_repair"] / t["n_rupture"].where(t["n_rupture"] > 0)
        if self.chance is not None:
            ch = self.chance.per_study.set_index("study")
            for i, c in enumerate(("expected", "sim_low", "sim_high", "p_excess")):
                t.insert(5 + i, "chance_" + c, t["study"].map(ch[c]).astype(float).to_numpy())
        return t

    @property
    def total(self) -> pd.Series:
        return self.to_frame().iloc[-1]

    def summary(self) -> str:
        from analysis.formatting import count, p_text, percent

        t = self.total
        N, n_r, n_p = int(t["n_eligible"]), int(t["n_rupture"]), int(t["n_repair"])
        s = (f"{percent(_share(n_r, N), 1)} of the {count(N)} classified patients ({count(n_r)}) had at "
             f"least one rupture; {count(n_p)} of them ({percent(_share(n_p, n_r), 1)}) repaired at least "
             f"one rupture later on.")
        if self.chance is not None and np.isfinite(t.get("chance_expected", np.nan)):
            how = ("if each patient's item values fell on random sessions of that patient, alliance as "
                   f"observed; range from {count(self.chance.n_sim)} draws"
                   if self.chance.method == "item_permutation" else
                   f"the same criterion on {count(self.chance.n_sim)} simulated data sets "
                   "with each patient's own level and trend but no ruptures")
            s += (f" Expected by chance ({how}): "
                  f"{percent(t['chance_expected'], 1)} (95% of simulations "
                  f"{percent(t['chance_sim_low'], 1)} to {percent(t['chance_sim_high'], 1)}); "
                  f"{'more' if t['prev_rupture'] > t['chance_sim_high'] else 'not clearly more'} than chance "
                  f"({p_text(t['chance_p_excess'])}).")
        n_few = int(self.per_study["n_too_few"].sum())
        if n_few:
            s += f" {count(n_few)} patient(s) with too few ratings were not classified."
        return s

    def patients(self, study: str) -> list[tuple[str, str]]:
        """(patient, label) of one study, patients with a rupture first."""
        from analysis.formatting import count

        pp = self.per_patient[self.per_patient["study"] == str(study)]
        el = pp["eligible"].astype(bool)
        has = pp["any_rupture"].astype("boolean").fillna(False).astype(bool)
        out = []
        for sel in (has, ~has & el, ~el):
            for r in pp[sel].itertuples():
                if not r.eligible:
                    lab = "not classified (too few ratings)"
                elif int(r.n_ruptures) == 0:
                    lab = "no rupture"
                else:
                    lab = f"{count(r.n_ruptures)} rupture(s), {count(r.n_repaired)} repaired"
                out.append((str(r.patient), f"{r.patient} · {lab}"))
        return out

    def patient_note(self, study: str, patient: str) -> str:
        """One patient's ruptures in words (user-derived labels are left to the caller to escape)."""
        from analysis.formatting import num

        p = self.flags[(self.flags["study"] == str(study)) & (self.flags["patient"] == str(patient))]
        if p.empty or not bool(p["eligible"].iloc[0]):
            return "Too few alliance ratings to classify this patient."
        rup = p[p["rupture"].astype("boolean").fillna(False).astype(bool)]
        if rup.empty:
            return "No session is low enough to count as a rupture."
        parts = []
        for r in rup.itertuples():
            if bool(r.repair):
                parts.append(f"session {r.session} (repaired at session {int(r.repair_session)}, back to "
                             f"≥ {num(r.pre_rupture_level)})")
            else:
                parts.append(f"session {r.session} (not repaired: never again ≥ {num(r.pre_rupture_level)})")
        return "Ruptures: " + "; ".join(parts) + "."


def rupture_analysis(df: pd.DataFrame, criterion="default", k=None, sd=None, detrend=None,
                     rater: str = "patient", pre_level: str = "previous", rule: str = "any",
                     item: str | None = None, item_threshold=None, item_rule: str = "or",
                     chance: bool = True, n_sim: int = 100, seed: int = 1) -> RuptureAnalysis:
    """`ruptures` + `rupture_summary` + `rupture_chance` in one result (METHODS §9).

    The chance reference: without an item, alliance dips simulated without ruptures
    (`rupture_chance`); with an item and ``item_rule="and"``, the item's marks at random
    sessions of each patient (`rupture_item_chance`); with "or" or "item alone" None, and a
    message says why no chance level exists.
    """
    flags = ruptures(df, criterion=criterion, k=k, sd=sd, detrend=detrend, rater=rater,
                     pre_level=pre_level, item=item, item_threshold=item_threshold, item_rule=item_rule)
    pp, ps = rupture_summary(flags, rule=rule)
    crit = flags.attrs["criterion"]
    ch, msgs = None, []
    if chance and item is None:
        ch = rupture_chance(df, criterion=crit, rater=rater, n_sim=n_sim, seed=seed)
        msgs.extend(ch.messages)
    elif chance and item_rule == "and":
        ch = rupture_item_chance(flags, n_sim=n_sim, seed=seed)
        msgs.extend(ch.messages)
    elif chance:
        msgs.append(f"No chance reference with \"{'dip or item' if item_rule == 'or' else 'item alone'}\": an "
                    f"item rating at or above the threshold counts as a rupture by itself, and a rupture "
                    f"rating has no no-rupture model to simulate (unlike alliance dips, which arise from "
                    f"noise too). With \"dip and item\" the page shows how often dips and item marks "
                    f"would coincide by chance.")
    return RuptureAnalysis(criterion=crit, rater=rater, rule=rule, item=item, flags=flags,
                           per_patient=pp, per_study=ps, chance=ch, messages=tuple(msgs))


def gain_cutoffs(df: pd.DataFrame, reliability=0.9, sd=None, cutoff=None,
                 column: str = "symptoms") -> pd.DataFrame:
    """Per-study cut-off of sudden-gain criterion 1 (METHODS §10).

    ``cutoff`` (a number or dict study → number) is used as given; otherwise the reliable
    change value 1.96·√2·SD·√(1 − r) with ``reliability`` and ``sd`` (each a number or dict
    study → number); ``sd=None`` uses each study's baseline SD (`baseline_sd`). Returns study,
    reliability, sd, sd_source ("baseline" / "given" / "—"), cutoff.
    """
    who = "gain_cutoffs"
    base = baseline_sd(df, column)
    studies = list(base["study"])
    if cutoff is not None:
        cut = _per_study(cutoff, studies, "cutoff", who, lambda v: _positive_number(v, "cutoff", who))
        return pd.DataFrame({"study": studies, "reliability": np.nan, "sd": np.nan, "sd_source": "—",
                             "cutoff": [cut[s] for s in studies]})
    rel = _per_study(reliability, studies, "reliability", who, lambda v: _reliability(v, who))
    if sd is None:
        sds = dict(zip(base["study"], base["baseline_sd"]))
        lacking = [s for s in studies if not (np.isfinite(sds[s]) and sds[s] > 0)]
        if lacking:
            raise ValueError(f"The baseline SD cannot be computed for {', '.join(lacking)} (fewer than two "
                             f"patients or no variation); type an SD instead.")
        src = "baseline"
    else:
        sds = _per_study(sd, studies, "sd", who, lambda v: _positive_number(v, "sd", who))
        src = "given"
    return pd.DataFrame({"study": studies, "reliability": [rel[s] for s in studies],
                         "sd": [float(sds[s]) for s in studies], "sd_source": src,
                         "cutoff": [reliable_change_cutoff(sds[s], rel[s]) for s in studies]})


@dataclass(frozen=True)
class GainAnalysis:
    """Sudden gains or losses with their per-study cut-offs (METHODS §10), ready to show."""

    kind: str
    better: str
    first_only: bool
    pairing: str
    cutoffs: pd.DataFrame = field(repr=False, compare=False)
    gains: pd.DataFrame = field(repr=False, compare=False)
    per_patient: pd.DataFrame = field(repr=False, compare=False)
    per_study: pd.DataFrame = field(repr=False, compare=False)

    def to_frame(self) -> pd.DataFrame:
        t = self.per_study.merge(self.cutoffs, on="study", how="left")
        t = t[["study", "cutoff", "reliability", "sd", "n_patients", "n_with_gain", "n_gains", "n_reversed",
               "mean_magnitude"]]
        t = _with_total(t, ["n_patients", "n_with_gain", "n_gains", "n_reversed"], {})
        t["prev_gain"] = t["n_with_gain"] / t["n_patients"].where(t["n_patients"] > 0)
        t["prev_reversal"] = t["n_reversed"] / t["n_gains"].where(t["n_gains"] > 0)
        return t

    def summary(self) -> str:
        from analysis.formatting import count, num, percent

        t = self.to_frame().iloc[-1]
        word = "sudden gain" if self.kind == "gain" else "sudden loss"
        cuts = self.cutoffs["cutoff"].unique()
        cut = (f"a minimum change of {num(cuts[0])} points" if len(cuts) == 1
               else "each study's own minimum change (cut-off column)")
        s = (f"With {cut}, {percent(t['prev_gain'], 1)} of the {count(t['n_patients'])} patients with at "
             f"least one pair of consecutive sessions ({count(t['n_with_gain'])}) had a {word}; "
             f"{count(t['n_gains'])} in all" + (" (first per patient only)" if self.first_only else "") + ". ")
        if t["n_gains"]:
            s += (f"{count(t['n_reversed'])} of them ({percent(t['prev_reversal'], 1)}) were reversed "
                  f"(≥ 50% lost again later).")
        return s

    def patients(self, study: str, all_patients) -> list[tuple[str, str]]:
        """(patient, label), patients with an event first."""
        from analysis.formatting import count

        gp = self.per_patient[self.per_patient["study"] == str(study)]
        n = dict(zip(gp["patient"], gp["n_gains"]))
        word = "sudden gain(s)" if self.kind == "gain" else "sudden loss(es)"
        with_ = [p for p in gp.loc[gp["any_gain"], "patient"]]
        rest = sorted(set(map(str, all_patients)) - set(with_))
        return [(p, f"{p} · {count(n[p])} {word}") for p in with_] + [(p, f"{p} · none") for p in rest]

    def patient_note(self, study: str, patient: str) -> str:
        from analysis.formatting import num, percent

        g = self.gains
        mine = g[(g["study"] == str(study)) & (g["patient"] == str(patient)) & g["is_gain"]]
        if mine.empty:
            return "No event under these settings."
        verb = "fell" if (self.kind == "gain") == (self.better == "lower") else "rose"
        return "; ".join(
            f"scores {verb} from {num(r.pregain)} at session {r.pregain_session} to {num(r.postgain)} at "
            f"session {r.postgain_session} ({num(r.magnitude)} points, {percent(abs(r.relative_magnitude))})"
            + (f", reversed by session {int(r.reversal_session)}" if bool(r.reversal) else "")
            for r in mine.itertuples()) + "."


def gain_analysis(df: pd.DataFrame, kind: str = "gain", better: str = "lower", reliability=0.9, sd=None,
                  cutoff=None, first_only: bool = False, pairing: str = "session") -> GainAnalysis:
    """Per-study cut-offs (`gain_cutoffs`), `sudden_gains` and `sudden_gain_summary` (§10)."""
    cuts = gain_cutoffs(df, reliability=reliability, sd=sd, cutoff=cutoff)
    g = sudden_gains(df, cutoff=dict(zip(cuts["study"], cuts["cutoff"])), first_only=first_only,
                     pairing=pairing, kind=kind, better=better)
    pp, ps = sudden_gain_summary(g)
    return GainAnalysis(kind=kind, better=better, first_only=bool(first_only), pairing=pairing, cutoffs=cuts,
                        gains=g, per_patient=pp, per_study=ps)


_RC_CATS = ("recovered", "improved", "unchanged", "deteriorated")


@dataclass(frozen=True)
class ReliableChangeAnalysis:
    """Reliable (and clinically significant) change per study (METHODS §11), ready to show."""

    method: str
    per_patient: pd.DataFrame = field(repr=False, compare=False)
    messages: tuple = ()
    #: per study: reliability, sd and sd_source ("baseline" / "given") used (`gain_cutoffs`)
    inputs: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def to_frame(self) -> pd.DataFrame:
        rc = self.per_patient
        studies = sorted(rc["study"].unique())
        has = rc[rc["category"].notna()]
        counts = (has.groupby(["study", "category"]).size().unstack("category")
                  .reindex(index=studies, columns=list(_RC_CATS)).fillna(0).astype(np.int64))
        per = rc.groupby("study").agg(s_diff=("s_diff", "first"), cutoff=("cutoff", "first"),
                                      crit=("rc_crit", "first")).reindex(studies)
        t = pd.DataFrame({"study": studies, "n_patients": counts.sum(axis=1).to_numpy()})
        if self.inputs is not None:
            inp = self.inputs.set_index("study").reindex(studies)
            t["reliability"], t["sd"] = inp["reliability"].to_numpy(float), inp["sd"].to_numpy(float)
        for c in _RC_CATS:
            t["n_" + c] = counts[c].to_numpy()
        t["smallest_reliable_change"] = (per["crit"] * per["s_diff"]).to_numpy() if self.method == "JT" else np.nan
        t["cutoff"] = per["cutoff"].to_numpy()
        t = _with_total(t, ["n_patients"] + ["n_" + c for c in _RC_CATS], {})
        for c in _RC_CATS:
            t["prev_" + c] = t["n_" + c] / t["n_patients"].where(t["n_patients"] > 0)
        no_c = t["cutoff"].isna() & (t["study"] != "All studies")
        if no_c.sum() == (t["study"] != "All studies").sum():
            no_c[:] = True  # no study used a cut-off: nobody can be "recovered"
        t["n_recovered"] = t["n_recovered"].astype(float)
        t.loc[no_c, ["n_recovered", "prev_recovered"]] = np.nan
        return t

    def summary(self) -> str:
        from analysis.formatting import count, percent

        rc = self.per_patient[self.per_patient["category"].notna()]
        N = len(rc)
        imp = int(rc["category"].isin(["recovered", "improved"]).sum())
        det = int((rc["category"] == "deteriorated").sum())
        crit = {"JT": "|RCI| > 1.96", "GLN": "|RC| > 1.96", "EN": "the last score outside T ± 2·S_E",
                "HA": f"|RC_INDIV| > {HA_CRIT:g}"}[self.method]
        s = (f"Method: {RC_METHODS[self.method]}. Reliable change when {crit}. Of {count(N)} patients with "
             f"at least two symptom scores, "
             f"{percent(_share(imp, N), 1)} ({count(imp)}) improved reliably and {percent(_share(det, N), 1)} "
             f"({count(det)}) deteriorated reliably from their first to their last score")
        with_c = rc[rc["cutoff"].notna()]
        if len(with_c):
            rec = int((with_c["category"] == "recovered").sum())
            s += (f"; {count(rec)} of the {count(len(with_c))} patients in studies with a cut-off "
                  f"({percent(_share(rec, len(with_c)), 1)}) recovered (reliable improvement and crossing c).")
        else:
            s += ". Choose a clinical cut-off c to classify patients as recovered."
        return s


def reliable_change_analysis(df: pd.DataFrame, reliability=0.9, sd=None, method: str = "JT", cutoff=None,
                             norms=None, cutoff_studies=None) -> ReliableChangeAnalysis:
    """`reliable_change` per study with the cut-off used only in ``cutoff_studies`` (§11).

    ``reliability`` and ``sd`` are one number or a dict study → number, resolved per study
    exactly as for the sudden-gain cut-off (`gain_cutoffs`, one implementation): ``sd=None``
    uses each study's baseline SD. ``cutoff``/``norms`` as in `reliable_change`;
    ``cutoff_studies`` (default all) lists the studies that measured with the instrument the
    cut-off belongs to.
    """
    data = df
    studies = sorted(data["study"].astype(str).unique())
    inputs = gain_cutoffs(df, reliability=reliability, sd=sd)[["study", "reliability", "sd", "sd_source"]]
    reliability = dict(zip(inputs["study"], inputs["reliability"]))
    sd = dict(zip(inputs["study"], inputs["sd"]))
    with_c = [] if cutoff is None and norms is None else \
        [s for s in studies if cutoff_studies is None or s in set(map(str, cutoff_studies))]
    without = [s for s in studies if s not in with_c]
    parts, msgs = [], []
    st_ = data["study"].astype(str)
    for group, kw in ((with_c, {"cutoff": cutoff, "norms": norms}), (without, {})):
        if group:
            sub = data[st_.isin(group)]
            sds = {s: sd[s] for s in group} if isinstance(sd, Mapping) else sd
            rel = {s: reliability[s] for s in group} if isinstance(reliability, Mapping) else reliability
            r = reliable_change(sub, rel, sds, method=method, **kw)
            parts.append(r)
            msgs.extend(r.attrs.get("messages", ()))
    rc = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    rc = rc.sort_values(["study", "patient"], kind="mergesort").reset_index(drop=True)
    return ReliableChangeAnalysis(method=method, per_patient=rc, messages=tuple(msgs), inputs=inputs)


_REPAIR_GROUPS = ("rupture–repair", "unrepaired rupture", "no rupture")
_REPAIR_CONTRASTS = (("rupture–repair", "no rupture"), ("unrepaired rupture", "no rupture"),
                     ("rupture–repair", "unrepaired rupture"))


@dataclass(frozen=True)
class RepairOutcome:
    """Rupture–repair vs unrepaired rupture vs no rupture, on outcome and dropout (§9).

    ``groups``: per study and group, patients, mean and SD of the symptom change (last minus
    first score) and, when the data have a ``dropout`` column, the share who dropped out.
    ``contrasts``: each pair of groups as an `OutcomeByPattern` (per-study effect sizes, pooled
    by random effects, METHODS §6).
    """

    rule: str
    groups: pd.DataFrame
    contrasts: dict = field(repr=False, compare=False)
    has_dropout: bool = False

    def to_frame(self) -> pd.DataFrame:
        return self.groups.copy()

    def contrast_frame(self) -> pd.DataFrame:
        """One row per contrast: the pooled (or single-study) effect, CI and p."""
        rows = []
        for name, res in self.contrasts.items():
            if res.meta is not None:
                est, lo, hi, p, k = res.meta.estimate, res.meta.ci_low, res.meta.ci_high, res.meta.pvalue, res.meta.k
            else:
                inc = res.per_study[res.per_study["included"]]
                if len(inc) == 1:
                    r = inc.iloc[0]
                    est, lo, hi, p, k = r.yi, r.ci_low, r.ci_high, r.pvalue, 1
                else:
                    est = lo = hi = p = np.nan
                    k = 0
            rows.append({"contrast": name, "measure": res.measure, "k_studies": k, "estimate": est,
                         "ci_low": lo, "ci_high": hi, "pvalue": p})
        return pd.DataFrame(rows)


def _dropout(df: pd.DataFrame, who: str) -> pd.DataFrame | None:
    """Per patient ``dropout`` (1.0/0.0) from a dropout or a last_session column (or None)."""
    if not isinstance(df, pd.DataFrame):
        return None
    key = pd.DataFrame({"study": df["study"].astype(str).to_numpy(), "patient": df["patient"].astype(str).to_numpy()})
    for name in ("dropout", "last_session"):
        if name in df.columns:
            col = df[name]
            if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
                raise ValueError(f"{who}: the '{name}' column must be numeric"
                                 + (" (0/1 or True/False)." if name == "dropout" else " (a session number)."))
            key[name] = col.astype(float).to_numpy()
            if name == "dropout":
                return key.groupby(_KEY)["dropout"].max().reset_index()
            rated = df[[c for c in ("alliance", "symptoms", "therapist_alliance") if c in df.columns]].notna().any(axis=1)
            key["seen"] = np.where(rated.to_numpy(), df["session"].to_numpy(float), np.nan)
            per = key.groupby(_KEY).agg(last=("seen", "max"), planned=("last_session", "max")).reset_index()
            per["dropout"] = np.where(per["planned"].notna() & per["last"].notna(),
                                      (per["last"] < per["planned"]).astype(float), np.nan)
            return per[_KEY + ["dropout"]]
    return None


def outcome_by_repair(df: pd.DataFrame, flags: pd.DataFrame, rule: str = "any", measure: str = "SMD",
                      method: str = "REML") -> RepairOutcome:
    """Compare patients with rupture–repair, with unrepaired ruptures and without ruptures (§9).

    Groups (classified patients only): rupture–repair (`rupture_summary`'s
    ``rupture_repair`` under ``rule``), unrepaired rupture (a rupture, not rupture–repair),
    no rupture. Outcome: symptom change, last minus first observed score (negative =
    improvement); each contrast via `outcome_by_pattern` (Hedges' g or MD, pooled per §6).
    Dropout (its share per group and study): from a ``dropout`` column (1/True = dropped out;
    the patient's maximum), else from a ``last_session`` column holding the session treatment
    was planned to end with (per patient or study): dropped out = the patient's last observed
    session (any rating) is earlier.
    """
    who = "outcome_by_repair"
    pp, _ = rupture_summary(flags, rule=rule)
    pp = pp[pp["eligible"].astype(bool)].copy()
    rup = pp["any_rupture"].astype(bool)
    rr = pp["rupture_repair"].astype(bool)
    pp["group"] = np.where(rr, _REPAIR_GROUPS[0], np.where(rup, _REPAIR_GROUPS[1], _REPAIR_GROUPS[2]))
    data = _check_frame(df, ["symptoms"], who)
    change = _pre_post(data)[["study", "patient", "change"]]
    g = pp[["study", "patient", "group"]].merge(change, on=_KEY, how="left")
    dd = _dropout(df, who)
    has_dropout = dd is not None
    if has_dropout:
        g = g.merge(dd, on=_KEY, how="left")
    rows = []
    for (study, grp), s in g.groupby(["study", "group"], sort=True):
        ch = s["change"].dropna()
        row = {"study": study, "group": grp, "n": len(s), "n_change": len(ch),
               "mean_change": float(ch.mean()) if len(ch) else np.nan,
               "sd_change": float(ch.std(ddof=1)) if len(ch) >= 2 else np.nan}
        if has_dropout:
            row["dropout_share"] = float(s["dropout"].mean()) if s["dropout"].notna().any() else np.nan
        rows.append(row)
    contrasts = {}
    for a, b in _REPAIR_CONTRASTS:
        sub = g[g["group"].isin([a, b])]
        table = pd.DataFrame({"study": sub["study"], "patient": sub["patient"], "event": sub["group"] == a})
        name = f"{a} vs {b}"
        if table.empty:
            continue
        contrasts[name] = outcome_by_pattern(data, table, event="event", measure=measure, method=method)
    return RepairOutcome(rule=rule, groups=pd.DataFrame(rows), contrasts=contrasts, has_dropout=has_dropout)
