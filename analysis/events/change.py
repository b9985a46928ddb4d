"""Reliable and clinically significant change (METHODS §11; Jacobson & Truax, 1991)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real

import numpy as np
import pandas as pd

from analysis.events._base import (
    _KEY,
    _check_frame,
    _per_study,
    _positive_number,
    _reliability,
    clinical_cutoff_c,
)

#: Clinical cut-off for the SCL-90-R Global Severity Index with German norms
#: (METHODS §11: "SCL-90-R GSI c = 0.57, German norms"). Pass it as
#: ``reliable_change(..., cutoff=SCL90R_GSI_GERMAN_CUTOFF)``.
SCL90R_GSI_GERMAN_CUTOFF = 0.57

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


def _clinical_cutoffs(norms, cutoff, studies, who) -> dict | None:
    """Per-study clinical cut-off c from norms (Jacobson & Truax) or given; None without either."""
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
    return cvals


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

    >>> from analysis.simulate import simulate_study
    >>> rc = reliable_change(simulate_study(20, seed=1).data, reliability=0.9, sd=7.5)
    >>> rc.columns.tolist()[:4]
    ['study', 'patient', 'n_obs', 'pre_session']
    """
    who = "reliable_change"
    if method not in RC_METHODS:
        raise ValueError(f"{who}: method must be one of {', '.join(RC_METHODS)}, got {method!r}.")
    data = _check_frame(df, ["symptoms"], who)
    studies = sorted(data["study"].unique())
    rel = _per_study(reliability, studies, "reliability", who, lambda v: _reliability(v, who))
    sds = _per_study(sd, studies, "sd", who, lambda v: _positive_number(v, "sd", who))
    cvals = _clinical_cutoffs(norms, cutoff, studies, who)

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
    _clinical_columns(pp, cvals, imp, cat, _b)
    cat[~has] = None
    pp["category"] = pd.array(cat, dtype="string")
    out = pp[["study", "patient", "n_obs", "pre_session", "post_session", "pre", "post",
              "change", "reliability", "sd", "s_diff", "method", "rci", "rc_crit",
              "reliable_improvement", "reliable_deterioration", "cutoff", "pre_above_cutoff",
              "post_below_cutoff", "recovered", "category"]]
    out.attrs["messages"] = tuple(rc_msgs)
    return out


def _clinical_columns(pp: pd.DataFrame, cvals, imp, cat, _b) -> None:
    """Add the clinical cut-off columns (in place); recovered patients' category becomes "recovered"."""
    st = pp["study"]
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
