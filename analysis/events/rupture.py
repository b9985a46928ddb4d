"""Alliance ruptures and repairs (METHODS §9): criteria, dip detection, calibration data, summaries."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np
import pandas as pd
from scipy import special, stats

from analysis.events._base import _KEY, RATERS, _check_frame, _positive_number, _tol

# --------------------------------------------------------------------------
# §9 ruptures
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RuptureCriterion:
    """A rupture criterion (METHODS §9): what a session's alliance is compared with.

    ``reference``: ``"other"`` – the patient's other observed sessions (leave-one-out;
    the session itself never moves its own yardstick) or ``"all"`` – all of the
    patient's observed sessions, the session included. ``detrend``: compare with the
    patient's own straight-line trend instead of the mean. ``sd``: ``"moderated"`` – the
    patient's own leave-one-out SD shrunk toward the study's distribution of patient SDs
    (empirical Bayes, `analysis.events.moderated`; reference "other" only), judged by its t
    reference with a Šidák correction over the patient's sessions; ``"robust"`` – one
    robust study-level within-patient SD; ``"patient"`` – the patient's own SD (of the
    other sessions with reference "other"); ``"pooled"`` / ``"max"`` – the study's pooled
    within-patient SD / the larger of patient and pooled SD (reference "all" only).
    ``k``: how many SDs below the reference a session must fall; with the moderated SD the
    patient-level z: a patient without ruptures is flagged with probability ≈ Φ(−k)
    (k = 1.28: 10%).
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
        from analysis.formatting import num, percent

        if self.sd == "moderated":
            return (f"alliance below the {what} of {ref} by more than the patient's own noise allows: the "
                    f"leave-one-out residual in the patient's SD shrunk toward the study's patient SDs "
                    f"(moderated t), one-sided p corrected for the patient's number of sessions "
                    f"(Šidák) ≤ {percent(float(stats.norm.sf(self.k)), 1)} (k = {num(self.k)})")
        sd = {"robust": "a robust study-level within-patient SD", "patient": "the patient's own SD",
              "pooled": "the study's pooled within-patient SD",
              "max": "the larger of the patient's own and the study's pooled SD"}[self.sd]
        return f"alliance ≥ {num(self.k)} SD below the {what} of {ref}; SD = {sd}"


#: Default k of the moderated default criterion: Φ⁻¹(0.90), a rupture-free patient is flagged with
#: probability ≈ 10% whatever the number of sessions (METHODS §9 calibration table;
#: tests/test_events.py::test_default_criterion_calibration).
DEFAULT_K = round(float(stats.norm.isf(0.10)), 4)
#: k of the earlier study-SD default (one robust noise SD per study).
STUDY_SD_K = 2.5

#: Named rupture criteria (METHODS §9). ``"default"``: the dip below the trend of the patient's
#: other sessions in the patient's own moderated SD (specific when patients differ in noise; ≤ 15%
#: of rupture-free patients flagged at 7, 11 and 20 sessions with equal or lognormal SDs, concave
#: growth and a Likert ceiling); ``"study_sd"``: the earlier calibrated default (one robust SD per
#: study, k = 2.5; flags too many patients when their noise SDs differ); ``"other_sessions"``: ≥ 1 SD
#: below the mean of the patient's other session ratings (Safran & Muran, 2006), a floor below which a
#: dip is uninteresting, not a detector; ``"mean_sd"`` is the dip
#: ≥ k·SD below the patient's mean with the dip included (this project's first default;
#: k = 1 lenient, k = 2 strict; Stiles et al., 2004; Strauss et al., 2006; Gumz et al., 2012 style).
RUPTURE_CRITERIA = {
    "default": RuptureCriterion("default", "other", True, "moderated", DEFAULT_K),
    "study_sd": RuptureCriterion("study_sd", "other", True, "robust", STUDY_SD_K),
    "other_sessions": RuptureCriterion("other_sessions", "other", False, "patient", 1.0),
    "mean_sd": RuptureCriterion("mean_sd", "all", False, "max", 1.0),
}

#: The named criteria in words (for option lists).
CRITERION_LABELS = {
    "default": "Default: own-trend dip in own (moderated) SD; ≈ 10% flagged by chance",
    "study_sd": f"Earlier default: dip below the own trend in one study-wide SD (k = {STUDY_SD_K:g}); "
                "too many flags when patients differ",
    "other_sessions": "1 SD below own other sessions (a floor, not a detector)",
    "mean_sd": "First default: ≥ k SD below the patient's mean, dip included (k = 1 lenient, 2 strict)",
}

_SD_CHOICES = {"other": ("moderated", "robust", "patient"), "all": ("robust", "patient", "pooled", "max")}

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
    df_t = np.full((B, N), np.inf)
    if crit.sd == "robust":
        sd_used = sd_study
        scale = sd_study * (np.sqrt(1.0 + lev) if crit.reference == "other" else 1.0)
    elif crit.sd == "moderated":
        sd_used, df_t = _moderated_sd(sd_own, dfr, (n, S1, S2, Sy, Sxy, Syy, ss_all), eligible, starts, counts,
                                      st_codes, crit.detrend)
        scale = sd_used * np.sqrt(1.0 + lev)
    elif crit.sd == "patient":
        sd_used = scale = sd_own
    elif crit.sd == "pooled":
        sd_used = scale = sd_pooled
    else:
        sd_used = scale = np.fmax(sd_own, sd_pooled)
    scale = np.where(eligible, scale, np.nan)
    with np.errstate(all="ignore"):
        if crit.sd == "moderated":  # t(d0 + d) reference, Šidák over the patient's n sessions
            # scipy.special's t CDF and normal quantile directly (stats.t/stats.norm add checks that cost 4× in
            # the chance simulation); the threshold in alliance units only for real data (B = 1)
            p_adj = -np.expm1(n * np.log1p(-special.stdtr(df_t, resid / scale)))
            z = np.where(scale > 0, special.ndtri(p_adj), np.nan)
            q = stats.t.isf(-np.expm1(np.log1p(-stats.norm.sf(crit.k)) / n), df_t) if B == 1 else np.nan
        else:
            q = crit.k
            z = np.where(scale > 0, resid / scale, np.nan)
    threshold = expected - q * scale
    if crit.sd == "moderated" and B > 1:  # the same rule read from z (no threshold computed)
        flag = eligible & (scale > 0) & (z <= -crit.k + _tol(crit.k))
    else:
        flag = eligible & (scale > 0) & (Y <= threshold + _tol(threshold))
    return {"expected": np.where(eligible, expected, np.nan), "scale": scale,
            "sd_used": np.where(eligible, sd_used, np.nan), "threshold": threshold,
            "z": np.where(eligible, z, np.nan), "flag": flag, "eligible": eligible, "n_obs": n,
            "patient_mean": pmean, "sd_patient_all": sd_all_mean, "sd_pooled": sd_pooled,
            "df": np.where(eligible, df_t, np.nan)}


def _moderated_sd(sd_loo, d_loo, sums, eligible, starts, counts, st_codes, detrend):
    """Moderated leave-one-out SD s̃_(−t) and the df of its t reference (METHODS §9).

    The prior (d0, s0²) of each study (and replicate) comes from the patients' full-fit residual
    variances s_i² (straight line, or mean without detrending; d_i = n_i − 2 or n_i − 1)
    by `fit_f_dist`; s̃²_(−t) = (d0·s0² + d_(−t)·s²_(−t))/(d0 + d_(−t)), df = d0 + d_(−t).
    """
    from analysis.events.moderated import fit_f_dist, squeeze_var

    n, S1, S2, Sy, Sxy, Syy, ss_all = sums
    with np.errstate(all="ignore"):
        if detrend:
            sxy_f = Sxy - S1 * Sy / n
            rss_f, d_f = ss_all - sxy_f ** 2 / (S2 - S1 * S1 / n), n - 2
        else:
            rss_f, d_f = ss_all, n - 1
        s2_f = np.where(eligible & (ss_all > 1e-12 * np.maximum(1.0, Syy)), np.maximum(rss_f, 0.0) / d_f, np.nan)
    pat_study = st_codes[starts]
    B, P = s2_f.shape[0], len(starts)
    d0, s02 = np.full((B, P), np.nan), np.full((B, P), np.nan)
    for code in np.unique(pat_study):
        pats = np.flatnonzero(pat_study == code)
        a, b = fit_f_dist(s2_f[:, starts[pats]], d_f[starts[pats]])
        d0[:, pats], s02[:, pats] = a[:, None], b[:, None]
    d0, s02 = np.repeat(d0, counts, axis=1), np.repeat(s02, counts, axis=1)
    return np.sqrt(squeeze_var(sd_loo ** 2, d_loo, d0, s02)), d0 + d_loo


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


def _rupture_columns(df, rater, pre_level, item, item_threshold, item_rule, who) -> list[str]:
    """Check the options of `ruptures` and return the alliance column(s) the rater reads."""
    if rater not in RATERS:
        raise ValueError(f"{who}: rater must be one of {', '.join(map(repr, RATERS))}; got {rater!r}.")
    if pre_level not in ("previous", "last_non_rupture"):
        raise ValueError(
            f"{who}: pre_level must be 'previous' or 'last_non_rupture', got {pre_level!r}.")
    if item_rule not in ("or", "and", "item"):
        raise ValueError(f"{who}: item_rule must be 'or', 'and' or 'item', got {item_rule!r}.")
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
    return cols


def _with_item(data, item, item_threshold, item_rule, eligible, known, dip):
    """Combine the dip with a rupture item: (eligible, rupture_known, flag, item_flag)."""
    iv = data[item].to_numpy(dtype=float)
    iobs = ~np.isnan(iv)
    iflag = iobs & (iv >= float(item_threshold) - _tol(float(item_threshold)))
    if item_rule == "item":
        has_item = pd.Series(iobs).groupby([data["study"], data["patient"]], sort=False) \
            .transform("any").to_numpy(dtype=bool)
        return has_item, iobs, iflag, iflag
    if item_rule == "or":
        return eligible, known | iflag, (dip & known) | iflag, iflag
    return eligible, known & iobs, dip & known & iflag, iflag


#: Share of a study's ratings at its highest value from which `model_warnings` warns of a ceiling.
CEILING_WARN = 0.10


def model_warnings(flags: pd.DataFrame) -> tuple[str, ...]:
    """Where the data break the no-rupture model of the chance reference (METHODS §9), in words.

    Ceiling: in a study where ≥ `CEILING_WARN` of the classified patients' ratings equal the
    study's highest rating, dips next to ceiling sessions are judged against a truncated line and
    the chance reference (unbounded normal noise) understates the false-flag rate: with a 1–7 scale
    and 20% of ratings at the ceiling (half of the last sessions) the default flagged 16% of
    rupture-free patients at 20 sessions (10% without a ceiling; METHODS §9 calibration table).
    """
    from analysis.formatting import percent

    need = {"study", "alliance", "eligible"}
    if not need <= set(flags.columns):
        return ()
    f = flags[flags["eligible"].astype(bool) & flags["alliance"].notna()]
    out = []
    for study, s in f.groupby("study", sort=True):
        top = float(s["alliance"].max())
        share = float(np.mean(np.isclose(s["alliance"].to_numpy(float), top)))
        if len(s) >= 20 and share >= CEILING_WARN:
            out.append(f"Study {study}: {percent(share, 0)} of the alliance ratings sit at the highest value "
                       f"({top:g}), a ceiling. Dips next to ceiling sessions are judged against a truncated "
                       f"line and the chance reference assumes unbounded noise, so both the flags and "
                       f"\"more than chance\" overstate ruptures here (with 20% of ratings at a ceiling the "
                       f"default flagged 16% of rupture-free patients instead of 10%).")
    return tuple(out)


def ruptures(df: pd.DataFrame, criterion="default", k: float | None = None, sd: str | None = None,
             detrend: bool | None = None, rater: str = "patient", pre_level: str = "previous",
             item: str | None = None, item_threshold: float | None = None,
             item_rule: str = "or") -> pd.DataFrame:
    """Flag alliance ruptures and repairs (METHODS §9).

    A session t of patient i is a *dip* when::

        A_it ≤ E_it − k · S_it

    with E_it the reference value and S_it the SD the dip is measured in, as set by the
    criterion (`RuptureCriterion`; named presets in `RUPTURE_CRITERIA`):

    * ``"default"`` (METHODS §9): E_it = the prediction at session t from the straight line
      through the patient's **other** observed sessions (leave-one-out, detrended); the residual
      is studentized by the patient's own leave-one-out SD shrunk toward the study's distribution
      of patient SDs (empirical Bayes, limma's moderated t; `analysis.events.moderated`),
      t_it ~ t(d0 + n_i − 3), and a dip is a Šidák-corrected one-sided p over the patient's
      sessions ≤ Φ(−k), k = `DEFAULT_K` = 1.28 (≈ 10% of rupture-free patients flagged); ``z`` =
      Φ⁻¹(corrected p), ``df`` the t reference's df. ≥ 4 values per patient.
    * ``"study_sd"`` (the earlier calibrated default): the same line; S_it = σ̂·√(1 + h_it) with
      h_it = 1/(n_i − 1) + (t − t̄_(−t))²/Σ(s − t̄_(−t))² and σ̂ one robust study-level
      within-patient SD (`robust_sd` of the standardized residuals of all eligible sessions of the
      study, patients whose ratings never vary left out); k = `STUDY_SD_K` = 2.5.
    * ``"other_sessions"``: E_it = mean of the patient's other sessions, S_it = their SD
      (ddof = 1), k = 1 (Safran & Muran, 2006: a dip of at least one SD from the patient's
      other session ratings). ≥ 3 values.
    * ``"mean_sd"``: E_it = the patient's mean over all sessions (the dip included),
      S_it = ``sd``: ``"max"`` (max of the patient's SD and the study's pooled within-patient
      SD √(Σ(n_i − 1)s_i²/Σ(n_i − 1))), ``"patient"`` or ``"pooled"``; k = 1 (lenient) or
      2 (strict). ≥ 3 values. (This project's earlier default.)

    ``k``, ``sd``, ``detrend`` override the preset's; S_it = 0: no dip; too few values: not classified.

    ``rater``: ``"patient"`` (``alliance``), ``"therapist"`` (``therapist_alliance``) or ``"both"`` (a dip
    in both ratings of a session; ``alliance`` and the repair then refer to the patient's rating).

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

    >>> from analysis.simulate import simulate_study
    >>> f = ruptures(simulate_study(30, seed=1).data)
    >>> f.columns.tolist()[:4]
    ['study', 'patient', 'session', 'rater']
    """
    who = "ruptures"
    cols = _rupture_columns(df, rater, pre_level, item, item_threshold, item_rule, who)
    crit = _resolve_criterion(criterion, k, sd, detrend, who)
    data = _check_frame(df, cols + ([item] if item is not None and item not in cols else []), who)
    res = [_flag_series(data, c, crit) for c in cols]
    main = res[0]
    a = data[cols[0]].to_numpy()
    eligible, known, dip = _combined(res)
    rupture_known, flag = known, dip & known
    if item is not None:
        eligible, rupture_known, flag, iflag = _with_item(data, item, item_threshold, item_rule,
                                                          eligible, known, dip)
    rupture = pd.array(flag, dtype="boolean")
    rupture[~rupture_known] = pd.NA
    pre, repair, repair_session = _repairs(data, a, flag, main["patient_mean"], pre_level)
    dip_col = _dip_column(main)
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
            out[nm] = _dip_column(r)
    if item is not None:
        out["item"] = data[item].to_numpy(dtype=float)
        out["item_flag"] = iflag
    out.update({"rupture": rupture, "pre_rupture_level": pre, "repair": repair,
                "repair_session": repair_session})
    f = pd.DataFrame(out)
    f.attrs["criterion"] = crit
    return f


def _combined(res):
    """(eligible, known, dip) over the raters' flag series: a session counts when it does for every rater."""
    eligible = res[0]["eligible"].copy()
    known = eligible & res[0]["observed"]
    dip = res[0]["flag"].copy()
    for other in res[1:]:
        eligible &= other["eligible"]
        known &= other["eligible"] & other["observed"]
        dip &= other["flag"]
    return eligible, known, dip


def _dip_column(r):
    """A rater's dips as a nullable boolean column (missing where the session cannot be classified)."""
    col = pd.array(r["flag"], dtype="boolean")
    col[~(r["eligible"] & r["observed"])] = pd.NA
    return col


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


def simulate_rupture_data(n_patients: int = 400, n_sessions: int = 7, plant: float = 0.0,
                          dip_sd: float = 3.5, trend: float = 0.15, seed: int = 0,
                          study: str = "Sim", sd_spread: float = 0.0, growth: str = "linear",
                          likert: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rising-alliance data with optional planted single dips (the §9 calibration design).

    Alliance from `analysis.simulate.simulate_study` (patient means ~ N(0, 1), a rising
    trend of ``trend`` per session with patient SD 0.05, within-patient AR(1) deviations,
    φ = 0.3, innovation SD 1). The within-patient SD σ_w is the SD of those deviations
    (the stationary SD, `Simulation.truth["within_cov"][0][0]` ** 0.5). With
    ``plant`` > 0 that share of patients gets one dip of ``dip_sd``·σ_i at one session
    drawn uniformly from the second to the second-to-last; nothing else changes.

    Heterogeneity and model breaks (METHODS §9 calibration table):

    * ``sd_spread`` > 0: patient i's noise SD is σ_i = σ_w·exp(sd_spread·Z_i), Z_i ~ N(0, 1)
      (lognormal SDs): the deviations from the patient's own straight line are multiplied by
      exp(sd_spread·Z_i), and a planted dip is ``dip_sd``·σ_i (the patient's own SD).
    * ``growth="concave"``: the linear rise trend·(t − 1) is replaced by the same total rise
      reached early, trend·(T − 1)·(1 − e^(−3(t − 1)/(T − 1)))/(1 − e^(−3)).
    * ``likert=True``: ratings on a 1–7 scale in steps of 0.25 (the mean of 4 items),
      clip(round(4·(6 + 0.6·A))/4, 1, 7): 16% of the ratings at the ceiling at 7 sessions,
      20% at 20 (half of the last sessions).

    Returns (data, planted) with planted = one row per dip (study, patient, session).
    """
    from analysis.simulate import simulate_study  # local: keeps the import graph light

    if growth not in ("linear", "concave"):
        raise ValueError(f"simulate_rupture_data: growth must be 'linear' or 'concave', got {growth!r}.")
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
    mult = pd.Series(np.exp(sd_spread * np.random.default_rng([seed, 11]).standard_normal(len(patients))),
                     index=pd.Index(patients).astype(str))
    pat = d["patient"].astype(str)
    if sd_spread:
        fit, _ = _line_fit(d["alliance"].to_numpy(float), d["session"].to_numpy(float),
                           _patient_starts(pd.factorize(pat)[0]), d.groupby("patient", sort=False).size().to_numpy())
        d["alliance"] = fit + pat.map(mult).to_numpy() * (d["alliance"].to_numpy() - fit)
    if growth == "concave":
        t_, T = d["session"].to_numpy(float) - 1.0, max(n_sessions - 1, 1)
        d["alliance"] += trend * T * (1 - np.exp(-3 * t_ / T)) / (1 - math.exp(-3)) - trend * t_
    key = pat + "\x1f" + d["session"].astype(str)
    m = key.isin(planted["patient"] + "\x1f" + planted["session"].astype(str)).to_numpy()
    d.loc[m, "alliance"] = d.loc[m, "alliance"] - dip_sd * sw * pat[m].map(mult).to_numpy(float)
    if likert:
        d["alliance"] = np.clip(np.round(4 * (6 + 0.6 * d["alliance"])) / 4, 1, 7)
    return d, planted



_FLAG_COLS = ["study", "patient", "session", "n_obs", "eligible", "rupture", "repair"]


def _study_prevalence(study, s: pd.DataFrame, rule: str) -> dict:
    """One study's row of `rupture_summary` from its per-patient rows."""
    e = s[s["eligible"].astype(bool)]
    ne = len(e)
    n_r, n_p, n_rr, n_all = (int(e[c].astype(bool).sum())
                             for c in ("any_rupture", "any_repair", "rupture_repair", "all_repaired"))
    return {"study": study, "n_patients": len(s), "n_too_few": len(s) - ne, "n_eligible": ne,
            "n_rupture": n_r, "n_repair": n_p, "n_rupture_repair": n_rr, "n_all_repaired": n_all,
            "prev_rupture": n_r / ne if ne else np.nan, "prev_repair": n_p / ne if ne else np.nan,
            "prev_rupture_repair": n_rr / ne if ne else np.nan,
            "prev_all_repaired": n_all / ne if ne else np.nan,
            "repair_given_rupture": n_p / n_r if n_r else np.nan, "rule": rule}


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

    return pp.reset_index(drop=True), pd.DataFrame([_study_prevalence(study, s, rule)
                                                    for study, s in pp.groupby("study", sort=True)])
