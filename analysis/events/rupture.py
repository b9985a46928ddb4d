"""Alliance ruptures and repairs (METHODS §9): criteria, dip detection, calibration data, summaries."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import numpy as np
import pandas as pd
from scipy import stats

from analysis.events._base import _KEY, _check_frame, _positive_number, _tol

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


def _rupture_columns(df, rater, pre_level, item, item_threshold, item_rule, who) -> list[str]:
    """Check the options of `ruptures` and return the alliance column(s) the rater reads."""
    if rater not in ("patient", "therapist", "both"):
        raise ValueError(f"{who}: rater must be 'patient', 'therapist' or 'both', got {rater!r}.")
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
    cols = _rupture_columns(df, rater, pre_level, item, item_threshold, item_rule, who)
    crit = _resolve_criterion(criterion, k, sd, detrend, who)
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
    rupture_known, flag = known, dip & known
    if item is not None:
        eligible, rupture_known, flag, iflag = _with_item(data, item, item_threshold, item_rule,
                                                          eligible, known, dip)
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
