"""Sudden gains and losses (METHODS §10; Tang & DeRubeis, 1999)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from analysis.events._base import (
    _KEY,
    _check_frame,
    _per_study,
    _positive_number,
    _reliability,
    _tol,
    reliable_change_cutoff,
)

#: Tang & DeRubeis (1999) critical t values for criterion 3, keyed by the
#: total number of observed values in the two 3-session windows: 3 + 3 = 6
#: (df 4), 5 values (one missing, df 3), 2 + 2 = 4 (one missing on each side,
#: df 2). These are the published two-sided .05 values.
T_CRIT_SUDDEN_GAINS = {6: 2.776, 5: 3.182, 4: 4.303}

#: Conventions of `sudden_gains` (METHODS §10): the published criteria (default) or the R package's.
GAIN_CONVENTIONS = {"published": "Published criteria (Tang & DeRubeis, 1999)",
                    "suddengains": "As the R package suddengains (qt critical values, strict reversal)"}


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


def _gain_sign(pairing, kind, better, column, first_only, who, convention="published") -> float:
    """Check the options of `sudden_gains`; +1 when the event is a fall in the score, −1 a rise."""
    if pairing not in ("session", "next_observed"):
        raise ValueError(f"{who}: pairing must be 'session' or 'next_observed', got {pairing!r}.")
    if kind not in ("gain", "loss"):
        raise ValueError(f"{who}: kind must be 'gain' or 'loss', got {kind!r}.")
    if better not in ("lower", "higher"):
        raise ValueError(f"{who}: better must be 'lower' or 'higher', got {better!r}.")
    if not isinstance(column, str) or column in ("study", "patient", "session"):
        raise ValueError(f"{who}: column must name a numeric measure, got {column!r}.")
    if not isinstance(first_only, (bool, np.bool_)):
        raise ValueError(f"{who}: first_only must be True or False.")
    if convention not in GAIN_CONVENTIONS:
        raise ValueError(f"{who}: convention must be one of {', '.join(map(repr, GAIN_CONVENTIONS))}, "
                         f"got {convention!r}.")
    return 1.0 if (kind == "gain") == (better == "lower") else -1.0


def _neighbours(data: pd.DataFrame, x: np.ndarray, pairing: str):
    """Scores at offsets −2, −1, +1, +2, +3 of each row (by session number or next observed)."""
    offsets = (-2, -1, 1, 2, 3)
    study_a, pat_a = data["study"].to_numpy(), data["patient"].to_numpy()
    ses_a = data["session"].to_numpy()
    if pairing == "session":
        lookup = pd.Series(x, index=pd.MultiIndex.from_arrays([study_a, pat_a, ses_a]))

        def _at(o):
            idx = pd.MultiIndex.from_arrays([study_a, pat_a, ses_a + o])
            return lookup.reindex(idx).to_numpy(dtype=float)

        return {o: _at(o) for o in offsets}, ses_a + 1
    grp = data.groupby(_KEY, sort=False)
    nb = {o: grp["symptoms"].shift(-o).to_numpy(dtype=float) for o in offsets}
    return nb, grp["session"].shift(-1).fillna(-1).to_numpy().astype(np.int64)


def _windows(pre_w: np.ndarray, post_w: np.ndarray):
    """Criterion 3's window sizes, means, pooled SD s_p and whether it can be evaluated."""
    n1 = (~np.isnan(pre_w)).sum(axis=1)
    n2 = (~np.isnan(post_w)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = np.nansum(pre_w, axis=1) / n1
        m2 = np.nansum(post_w, axis=1) / n2
    ss1 = np.nansum((pre_w - m1[:, None]) ** 2, axis=1)  # (n1 − 1)·s1²
    ss2 = np.nansum((post_w - m2[:, None]) ** 2, axis=1)  # (n2 − 1)·s2²
    evaluable = (n1 >= 2) & (n2 >= 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        sp = np.where(evaluable, np.sqrt((ss1 + ss2) / np.maximum(n1 + n2 - 2, 1)), np.nan)
    return n1, n2, m1, m2, sp, evaluable


def _number_events(out, data, sign, first_only, pairing, kind, better, strict=False) -> pd.DataFrame:
    """Add ``meets_criteria``, ``gain_number``, ``is_gain`` and the reversal columns."""
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
    rev, rev_s = _reversals(data, out, sign, strict)
    out["reversal"] = rev
    out["reversal_session"] = rev_s
    out.attrs["first_only"] = bool(first_only)
    out.attrs["pairing"] = pairing
    out.attrs["kind"] = kind
    return out


def _t_crit(n_total, evaluable, pkg: bool) -> np.ndarray:
    """Criterion 3's critical t: the published table (3 decimals) or qt(.975, n1 + n2 − 2) (suddengains)."""
    tc = (stats.t.ppf(0.975, np.maximum(n_total - 2, 1)) if pkg
          else np.array([T_CRIT_SUDDEN_GAINS.get(int(t), np.nan) for t in n_total], dtype=float))
    return np.where(evaluable, tc, np.nan)


def _gain_data(df, column, cutoff, reliability, sd, who):
    """Observed scores of ``column`` (renamed ``symptoms``) and the per-study cut-off of criterion 1."""
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
    return data, cut


def sudden_gains(df: pd.DataFrame, cutoff=None, reliability=None, sd=None,
                 first_only: bool = False, pairing: str = "session", kind: str = "gain",
                 better: str = "lower", column: str = "symptoms",
                 convention: str = "published") -> pd.DataFrame:
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

    **Convention** (METHODS §10): ``"published"`` (default) as above: Tang & DeRubeis's
    critical values rounded to three decimals, a reversal when ≥ 50% of the event is lost
    (the half-way point itself counts), a loss's criterion 2 the mirror of the gain's (a rise of
    ≥ 25% of x_n). ``"suddengains"`` as the R package suddengains (Wiedemann et al., 2020), to
    match users' R results: ``t_crit = qt(.975, n1 + n2 − 2)`` unrounded, a reversal only when a
    later score lies strictly beyond the half-way point, and a loss's criterion 2 is the
    package's ``x_n − x_{n+1} ≤ 0.25·x_n`` (met by any rise, and by a fall of < 25%).

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

    >>> from analysis.simulate import simulate_study
    >>> from analysis.simulate import SYMPTOM_INSTRUMENTS
    >>> d = simulate_study(30, symptom_instrument=SYMPTOM_INSTRUMENTS[0], seed=1).data
    >>> g = sudden_gains(d, cutoff=5)
    >>> g.columns.tolist()[:4]
    ['study', 'patient', 'kind', 'better']
    """
    who = "sudden_gains"
    sign = _gain_sign(pairing, kind, better, column, first_only, who, convention)
    pkg = convention == "suddengains"
    data, cut = _gain_data(df, column, cutoff, reliability, sd, who)
    study_a, pat_a, ses_a = (data[c].to_numpy() for c in ("study", "patient", "session"))
    x = data["symptoms"].to_numpy(dtype=float)
    nb, post_ses = _neighbours(data, x, pairing)
    cand = ~np.isnan(nb[1])
    xn, xn1 = x[cand], nb[1][cand]
    cvec = pd.Series(study_a[cand]).map(cut).to_numpy(dtype=float)
    drop = sign * (xn - xn1)
    n1, n2, m1, m2, sp, evaluable = _windows(np.column_stack([nb[-2], nb[-1], x])[cand],
                                             np.column_stack([nb[1], nb[2], nb[3]])[cand])
    rel_mag = np.divide(drop, xn, out=np.full(len(xn), np.nan), where=xn != 0)
    tc = _t_crit(n1 + n2, evaluable, pkg)
    c3 = evaluable & (sign * (m1 - m2) > tc * sp)
    out = pd.DataFrame({
        "study": pd.array(study_a[cand], dtype="str"), "patient": pd.array(pat_a[cand], dtype="str"),
        "pregain_session": ses_a[cand].astype(np.int64), "postgain_session": post_ses[cand].astype(np.int64),
        "pregain": xn, "postgain": xn1, "magnitude": drop, "relative_magnitude": rel_mag, "cutoff": cvec,
        "criterion1": drop >= cvec - _tol(cvec),
        "criterion2": (drop >= -0.25 * xn - _tol(0.25 * xn)) if pkg and kind == "loss"
        else drop >= 0.25 * xn - _tol(0.25 * xn),
        "n_pre": n1.astype(np.int64), "n_post": n2.astype(np.int64), "mean_pre": m1, "mean_post": m2,
        "sd_pooled": sp, "t_crit": tc, "criterion3_evaluable": evaluable, "criterion3": c3,
    })
    out = _number_events(out, data, sign, first_only, pairing, kind, better, strict=pkg)
    out.attrs["convention"] = convention
    return out


def _reversals(data: pd.DataFrame, out: pd.DataFrame, sign: float, strict: bool = False):
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
        back = later & ((sign * (x - half) > _tol(half)) if strict else (sign * (x - half) >= -_tol(half)))
        rev[r] = bool(back.any())
        if back.any():
            rev_s[r] = int(ses[np.flatnonzero(back)[0]])
    return rev, rev_s


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
