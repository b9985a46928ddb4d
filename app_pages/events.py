"""Ruptures & gains page: alliance ruptures and repairs, sudden gains, reliable change
and their relation to outcome (METHODS §9–§11).

The page only lays out widgets, reads the loaded data set and calls
`analysis.events` / `analysis.plots_events`; every statistic is computed there.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import streamlit as st

from analysis import events as ev
from analysis import plots_events as pe
from analysis.plots_meta import forest_plot
from ui.downloads import show_figure, table_download
from ui.state import current, data_banner, has_therapist_ratings

M = "/methods#"
LINK_RUPTURES = M + "9-ruptures-ruptures-paper-stiles-2004-strauss-2006-gumz-2012"
LINK_GAINS = M + "10-sudden-gains-review-tang-and-de-rubeis-1999"
LINK_RC = M + "11-reliable-and-clinically-significant-change-jacobson-and-truax-1991"
LINK_POOL = M + "6-stage-2-random-effects-pooling"
LINK_STD = M + "2-standardization-default-on"

SD_LABELS = {
    "max": "Larger of patient SD and study SD (default)",
    "patient": "Patient's own SD",
    "pooled": "Study's pooled within-patient SD",
}
RATER_LABELS = {"patient": "Patient", "therapist": "Therapist"}
PRE_LABELS = {
    "previous": "Session just before the rupture (default)",
    "last_non_rupture": "Last earlier session that was not a rupture",
}
RULE_LABELS = {
    "any": "at least one rupture was repaired (default)",
    "all": "every rupture was repaired",
}
SG_MODE_LABELS = {
    "rc": "Reliable change value from SD and reliability (default)",
    "typed": "Type the cut-off myself",
}
SD_SOURCE_LABELS = {
    "baseline": "Each study's baseline SD (computed from the data)",
    "typed": "Type one SD for all studies",
}
PAIRING_LABELS = {
    "session": "Sessions n and n + 1 by number (default)",
    "next_observed": "Each session and the patient's next observed one",
}
CUT_LABELS = {
    "none": "No cut-off (reliable change only)",
    "norms": "Compute c from norms (clinical and functional M / SD)",
    "typed": "Type c myself",
    "scl90": f"Preset: SCL-90-R GSI, German norms, c = {ev.SCL90R_GSI_GERMAN_CUTOFF}",
}
EVENT_LABELS = {
    "rupture": "Any rupture",
    "repair": "At least one repaired rupture",
    "rupture_repair": "Rupture–repair pattern",
    "gain": "At least one sudden gain",
}
MEASURE_LABELS = {
    "SMD": "Standardized (Hedges' g; default, studies use different scales)",
    "MD": "Raw mean difference (symptom points)",
}
STORE = "ev_saved"
DATA_COLS = ["study", "patient", "session", "alliance", "symptoms", "therapist_alliance"]


# --------------------------------------------------------------------------- formatting


def _clean(exc: Exception) -> str:
    """The analysis message without the function-name prefix ("ruptures: ...")."""
    return re.sub(r"^[a-z_]+: ", "", str(exc))


def _num(x) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    ax = abs(x)
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _signed(x) -> str:
    s = _num(x)
    return s if s.startswith("-") or s == "–" else "+" + s


def _pct(n, N) -> str:
    return f"{100 * n / N:.1f}%" if N else "–"


def _p(p) -> str:
    if p is None or not np.isfinite(p):
        return "p not available"
    return "p < .001" if p < 0.001 else f"p = {p:.3f}".replace("0.", ".", 1)


def _signif(p) -> str:
    if p is None or not np.isfinite(p):
        return ""
    if p < 0.05:
        return "statistically significant at the 5% level"
    return "not statistically significant at the 5% level"


def _k_word(k: float) -> str:
    return {1.0: "lenient", 2.0: "strict"}.get(round(k, 6), "custom")


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


# --------------------------------------------------------------------------- cached analysis


@st.cache_data(show_spinner=False, max_entries=24)
def _ruptures(df: pd.DataFrame, k: float, sd: str, rater: str, pre: str, rule: str):
    flags = ev.ruptures(df, k=k, sd=sd, rater=rater, pre_level=pre)
    per_patient, per_study = ev.rupture_summary(flags, rule=rule)
    return flags, per_patient, per_study


@st.cache_data(show_spinner=False, max_entries=8)
def _baseline(df: pd.DataFrame) -> pd.DataFrame:
    return ev.baseline_sd(df, "symptoms")


@st.cache_data(show_spinner=False, max_entries=24)
def _gains(df: pd.DataFrame, cut: tuple, first_only: bool, pairing: str):
    """``cut`` = (("study", cutoff), ...)."""
    gains = ev.sudden_gains(df, cutoff=dict(cut), first_only=first_only, pairing=pairing)
    per_patient, per_study = ev.sudden_gain_summary(gains)
    return gains, per_patient, per_study


@st.cache_data(show_spinner=False, max_entries=24)
def _around(df: pd.DataFrame, cut: tuple, first_only: bool, pairing: str, rater: str, standardize: bool):
    gains = _gains(df, cut, first_only, pairing)[0]
    col = "alliance" if rater == "patient" else "therapist_alliance"
    data = ev.standardize_within_study(df, [col]) if standardize else df
    return ev.alliance_around_gains(data, gains, rater=rater)


@st.cache_data(show_spinner=False, max_entries=24)
def _reliable_change(df: pd.DataFrame, r: float, sds: tuple, cut_mode: str, cut_value, norms: tuple,
                     cut_studies: tuple):
    sd_map = dict(sds)
    studies = sorted(df["study"].astype(str).unique())
    with_c = [s for s in studies if s in cut_studies] if cut_mode != "none" else []
    without = [s for s in studies if s not in with_c]
    parts = []
    if with_c:
        sub = df[df["study"].astype(str).isin(with_c)]
        kw = {"norms": dict(norms)} if cut_mode == "norms" else {"cutoff": float(cut_value)}
        parts.append(ev.reliable_change(sub, r, {s: sd_map[s] for s in with_c}, **kw))
    if without:
        sub = df[df["study"].astype(str).isin(without)]
        parts.append(ev.reliable_change(sub, r, {s: sd_map[s] for s in without}))
    rc = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return rc.sort_values(["study", "patient"], kind="mergesort").reset_index(drop=True)


@st.cache_data(show_spinner=False, max_entries=24)
def _outcome(df: pd.DataFrame, event: str, measure: str, rupture_args: tuple, gain_args: tuple):
    if event == "gain":
        gains = _gains(df, *gain_args)[0]
        return ev.outcome_by_pattern(df, gains, measure=measure)
    k, sd, rater, pre, rule = rupture_args
    flags = _ruptures(df, k, sd, rater, pre, rule)[0]
    return ev.outcome_by_pattern(df, flags, event=event, measure=measure, rule=rule)


# --------------------------------------------------------------------------- widget state

def _restore(data_id, defaults: dict) -> None:
    """Seed this page's widget keys: the user's earlier choices for this data set, else defaults.

    Streamlit forgets widget values when the user visits another page; the
    choices are copied to ``st.session_state[STORE]`` after each run.
    """
    saved = st.session_state.get(STORE)
    if not isinstance(saved, dict) or saved.get("_data") != data_id:
        saved = {"_data": data_id}
        st.session_state[STORE] = saved
        for key in defaults:
            st.session_state.pop(key, None)
    for key, default in defaults.items():
        if key not in st.session_state:
            st.session_state[key] = saved.get(key, default)


def _ensure(key: str, options, default) -> None:
    if st.session_state.get(key) not in list(options):
        st.session_state[key] = default


def _save(keys) -> None:
    saved = st.session_state[STORE]
    for key in keys:
        if key in st.session_state:
            saved[key] = st.session_state[key]


# --------------------------------------------------------------------------- page

st.title("Ruptures & gains")
data_banner()
ds = current()
df = ds["df"][[c for c in DATA_COLS if c in ds["df"].columns]]
studies = sorted(df["study"].astype(str).unique())
n_studies = len(studies)
multi = n_studies > 1
therapist_ok = has_therapist_ratings(df)
raters = ["patient", "therapist"] if therapist_ok else ["patient"]
data_id = (ds["name"], len(df), n_studies, tuple(studies[:3]))

try:
    base = _baseline(df)
except ValueError as exc:
    base = None
    base_error = _clean(exc)
base_sd = {} if base is None else {s: float(v) for s, v in zip(base["study"], base["baseline_sd"])}
first_sd = next((v for v in base_sd.values() if np.isfinite(v) and v > 0), 1.0)

DEFAULTS = {
    "ev_k": 1.0, "ev_sd": "max", "ev_rater": "patient", "ev_pre": "previous", "ev_rule": "any",
    "ev_rs_study": studies[0], "ev_rs_patient": None,
    "ev_sg_mode": "rc", "ev_sg_r": 0.90, "ev_sg_sdsrc": "baseline", "ev_sg_sd": round(first_sd, 3),
    "ev_sg_cut": round(ev.reliable_change_cutoff(first_sd, 0.9), 3), "ev_sg_first": False,
    "ev_sg_pairing": "session", "ev_sg_study": studies[0], "ev_sg_patient": None,
    "ev_ag_rater": "patient", "ev_ag_std": multi,
    "ev_rc_r": 0.90, "ev_rc_sdsrc": "baseline", "ev_rc_sd": round(first_sd, 3), "ev_rc_cmode": "none",
    "ev_rc_c": None, "ev_rc_mc": None, "ev_rc_sdc": None, "ev_rc_mf": None, "ev_rc_sdf": None,
    "ev_rc_cstudies": list(studies), "ev_rc_study": studies[0],
    "ev_out_event": "rupture", "ev_out_measure": "SMD",
}
_restore(data_id, DEFAULTS)
for key, opts, default in (
    ("ev_sd", SD_LABELS, "max"), ("ev_rater", raters, "patient"), ("ev_pre", PRE_LABELS, "previous"),
    ("ev_rule", RULE_LABELS, "any"), ("ev_rs_study", studies, studies[0]), ("ev_sg_mode", SG_MODE_LABELS, "rc"),
    ("ev_sg_sdsrc", SD_SOURCE_LABELS, "baseline"), ("ev_sg_pairing", PAIRING_LABELS, "session"),
    ("ev_sg_study", studies, studies[0]), ("ev_ag_rater", raters, "patient"),
    ("ev_rc_sdsrc", SD_SOURCE_LABELS, "baseline"), ("ev_rc_cmode", CUT_LABELS, "none"),
    ("ev_rc_study", studies, studies[0]), ("ev_out_event", EVENT_LABELS, "rupture"),
    ("ev_out_measure", MEASURE_LABELS, "SMD"),
):
    _ensure(key, opts, default)
st.session_state["ev_rc_cstudies"] = [s for s in st.session_state["ev_rc_cstudies"] if s in studies]

st.markdown(
    f"Alliance **ruptures** (dips in a patient's alliance) and their **repair**, **sudden gains** "
    f"(large, stable one-session drops in symptoms), **reliable change** from first to last session, "
    f"and how each pattern relates to outcome. Data: **{ds['name']}** "
    f"({_plural(n_studies, 'study', 'studies')}). Every threshold below is your choice; the results "
    f"update when you change it. Symptoms: higher = more severe; alliance: higher = stronger."
)

tab_r, tab_g, tab_rc, tab_o = st.tabs(
    [":material/bolt: Ruptures & repairs", ":material/trending_down: Sudden gains", ":material/verified: Reliable change",
     ":material/target: Relation to outcome"]
)

# =========================================================================== ruptures
flags = pp_r = ps_r = None
with tab_r:
    st.markdown(
        "A session is a **rupture** when the patient's alliance is at least *k* standard deviations "
        "below their own mean alliance: $A_{it} \\le \\bar A_i - k \\cdot SD$. It is **repaired** when a "
        "later session returns to the pre-rupture level. Patients with fewer than 3 alliance ratings "
        f"are not classified. [Definition (§9)]({LINK_RUPTURES})"
    )
    c1, c2, c3 = st.columns(3)
    with c1:
        k = st.number_input("k: how many SDs below the patient's own mean", min_value=0.5, max_value=3.0,
                            step=0.5, format="%.2f", key="ev_k",
                            help="1 = lenient criterion, 2 = strict criterion (METHODS §9). Any value 0.5–3.")
        st.caption(f"k = 1 is the lenient, k = 2 the strict criterion. Now: **{_k_word(k)}** (k = {k:g}).")
    with c2:
        sd_choice = st.selectbox("SD used in the threshold", list(SD_LABELS), format_func=SD_LABELS.get,
                                 key="ev_sd")
        rater = st.radio("Alliance rated by", raters, format_func=RATER_LABELS.get, key="ev_rater",
                         horizontal=True)
        if not therapist_ok:
            st.caption("Therapist ratings are not in this data set, so only patient ratings can be used.")
    with c3:
        pre = st.selectbox("Pre-rupture level (what a repair must reach)", list(PRE_LABELS),
                           format_func=PRE_LABELS.get, key="ev_pre")
        rule = st.selectbox("A patient shows the rupture–repair pattern when", list(RULE_LABELS),
                            format_func=RULE_LABELS.get, key="ev_rule")

    try:
        with st.spinner("Finding ruptures and repairs…"):
            flags, pp_r, ps_r = _ruptures(df, float(k), sd_choice, rater, pre, rule)
    except ValueError as exc:
        st.error(f"Ruptures could not be computed: {_clean(exc)}")

    if ps_r is not None:
        N = int(ps_r["n_eligible"].sum())
        n_r, n_p, n_rr = (int(ps_r[c].sum()) for c in ("n_rupture", "n_repair", "n_rupture_repair"))
        n_few = int(ps_r["n_too_few"].sum())
        m1, m2, m3 = st.columns(3)
        m1.metric("Patients with ≥ 1 rupture", f"{n_r:,}", _pct(n_r, N) + " of classified", delta_color="off", delta_arrow="off")
        m2.metric("… with ≥ 1 repaired rupture", f"{n_p:,}", _pct(n_p, n_r) + " of ruptured", delta_color="off", delta_arrow="off")
        m3.metric("Rupture–repair pattern", f"{n_rr:,}", _pct(n_rr, N) + " of classified", delta_color="off", delta_arrow="off")
        sentence = (
            f"With k = {k:g} ({_k_word(k)}), {_pct(n_r, N)} of the {N:,} classified patients "
            f"({n_r:,}) had at least one session with a rupture; {n_p:,} of them ({_pct(n_p, n_r)}) "
            f"repaired at least one rupture later on. "
        )
        if n_few:
            sentence += f"{_plural(n_few, 'patient')} with fewer than 3 alliance ratings were not classified. "
        if multi and ps_r["prev_rupture"].notna().any():
            lo = ps_r.loc[ps_r["prev_rupture"].idxmin()]
            hi = ps_r.loc[ps_r["prev_rupture"].idxmax()]
            sentence += (f"Across studies the share with a rupture ranged from {100 * lo.prev_rupture:.1f}% "
                         f"({lo.study}) to {100 * hi.prev_rupture:.1f}% ({hi.study}).")
        st.markdown(sentence)

        st.subheader("Prevalence per study")
        prev = pd.DataFrame({
            "Study": ps_r["study"],
            "Patients": ps_r["n_patients"],
            "Classified (≥ 3 ratings)": ps_r["n_eligible"],
            "Rupture (n)": ps_r["n_rupture"],
            "Rupture (%)": 100 * ps_r["prev_rupture"],
            "Repair (n)": ps_r["n_repair"],
            "Repair (%)": 100 * ps_r["prev_repair"],
            "Rupture–repair (n)": ps_r["n_rupture_repair"],
            "Rupture–repair (%)": 100 * ps_r["prev_rupture_repair"],
            "Repaired among ruptured (%)": 100 * ps_r["repair_given_rupture"],
        })
        if multi:
            tot = {c: prev[c].sum() for c in prev.columns if c.endswith("(n)") or c in ("Patients", "Classified (≥ 3 ratings)")}
            tot["Study"] = "All studies"
            for c in ("Rupture", "Repair", "Rupture–repair"):
                tot[f"{c} (%)"] = 100 * tot[f"{c} (n)"] / tot["Classified (≥ 3 ratings)"] if N else np.nan
            tot["Repaired among ruptured (%)"] = 100 * tot["Repair (n)"] / tot["Rupture (n)"] if n_r else np.nan
            prev = pd.concat([prev, pd.DataFrame([tot])], ignore_index=True)
        pct_cfg = {c: st.column_config.NumberColumn(c, format="%.1f") for c in prev.columns if c.endswith("(%)")}
        st.dataframe(prev, hide_index=True, width="stretch", column_config=pct_cfg, key="ev_tbl_prev")
        st.caption(
            "Rupture = at least one rupture session. Repair = at least one rupture followed by a session at or "
            "above the pre-rupture level. Rupture–repair: " + RULE_LABELS[rule].replace(" (default)", "")
            + ". Percentages are of classified patients, the last column of patients with a rupture."
        )
        table_download(prev, f"rupture_prevalence_k{k:g}", key="ev_dl_prev")
        show_figure(pe.fig_rupture_prevalence(ps_r), f"rupture_prevalence_k{k:g}", key="ev_fig_prev")

        st.subheader("One patient's alliance")
        c1, c2 = st.columns([1, 2])
        with c1:
            st_sel = st.selectbox("Study", studies, key="ev_rs_study") if multi else studies[0]
        pp_s = pp_r[pp_r["study"] == st_sel]
        has = pp_s["any_rupture"].fillna(False).astype(bool)
        elig = pp_s["eligible"].astype(bool)
        order = (list(pp_s.loc[has, "patient"]) + list(pp_s.loc[~has & elig, "patient"])
                 + list(pp_s.loc[~elig, "patient"]))
        info = pp_s.set_index("patient")

        def _r_label(p):
            row = info.loc[p]
            if not bool(row["eligible"]):
                return f"{p} · not classified (< 3 ratings)"
            nr = int(row["n_ruptures"])
            if nr == 0:
                return f"{p} · no rupture"
            return f"{p} · {_plural(nr, 'rupture')}, {int(row['n_repaired'])} repaired"

        _ensure("ev_rs_patient", order, order[0] if order else None)
        with c2:
            patient = st.selectbox(
                f"Patient ({int(has.sum()):,} with a rupture listed first)", order, format_func=_r_label,
                key="ev_rs_patient")
        if patient is not None:
            show_figure(pe.fig_rupture_series(flags, st_sel, patient), f"alliance_ruptures_{st_sel}_{patient}",
                        key="ev_fig_series")
            p_rows = flags[(flags["study"] == st_sel) & (flags["patient"] == patient)]
            row = p_rows.iloc[0]
            if bool(row["eligible"]):
                rup = p_rows[p_rows["rupture"].fillna(False).astype(bool)]
                txt = (f"Patient {patient}: mean alliance {_num(row['patient_mean'])}, SD used "
                       f"{_num(row['sd_used'])}, so a rupture is any session at or below "
                       f"{_num(row['threshold'])} (red dashed line). ")
                if rup.empty:
                    txt += "No session is that low."
                else:
                    parts = []
                    for r in rup.itertuples():
                        first = int(r.session) == int(p_rows.loc[p_rows["alliance"].notna(), "session"].min())
                        level = _num(r.pre_rupture_level) + (" = the patient's mean, as there is no earlier session"
                                                             if first else "")
                        if bool(r.repair):
                            parts.append(f"session {r.session} (repaired at session {int(r.repair_session)}, "
                                         f"back to ≥ {level})")
                        else:
                            parts.append(f"session {r.session} (not repaired: alliance never again reached "
                                         f"{level})")
                    txt += "Ruptures: " + "; ".join(parts) + "."
                st.markdown(txt)

        with st.expander("Per-patient and per-session tables"):
            st.markdown("**One row per patient** (counts of ruptures and repairs)")
            st.dataframe(pp_r, hide_index=True, width="stretch", key="ev_tbl_rpp")
            table_download(pp_r, f"ruptures_per_patient_k{k:g}", key="ev_dl_rpp")
            st.markdown("**One row per session** (threshold, rupture and repair flags)")
            st.dataframe(flags.head(2000), hide_index=True, width="stretch", key="ev_tbl_rflags")
            if len(flags) > 2000:
                st.caption(f"First 2,000 of {len(flags):,} rows shown; the download has all rows.")
            table_download(flags, f"ruptures_per_session_k{k:g}", key="ev_dl_rflags")

# =========================================================================== sudden gains
gains = pp_g = ps_g = None
cut_map = None
with tab_g:
    st.markdown(
        "A **sudden gain** is a drop in symptoms from session n to n + 1 that (1) is at least the cut-off, "
        "(2) is at least 25% of the score at session n, and (3) is large relative to the fluctuation in the "
        f"three sessions before and after (Tang & DeRubeis, 1999). [Definition (§10)]({LINK_GAINS})"
    )
    c1, c2, c3 = st.columns(3)
    with c1:
        sg_mode = st.radio("Criterion 1: minimum drop (cut-off)", list(SG_MODE_LABELS),
                           format_func=SG_MODE_LABELS.get, key="ev_sg_mode")
        if sg_mode == "typed":
            sg_cut = st.number_input("Cut-off in symptom points (your input)", step=0.5, format="%.3f",
                                     key="ev_sg_cut")
            if multi:
                st.caption("This one value is used in every study, whatever instrument it used.")
    with c2:
        if sg_mode == "rc":
            sg_r = st.number_input("Reliability r of the symptom measure (your input)", step=0.01,
                                   format="%.2f", key="ev_sg_r",
                                   help="Cronbach's α or test–retest r of your instrument. 0.90 is only a "
                                        "starting value; must be at least 0 and below 1.")
            sg_sdsrc = st.radio("SD of symptoms (your input)", list(SD_SOURCE_LABELS),
                                format_func=SD_SOURCE_LABELS.get, key="ev_sg_sdsrc")
            if sg_sdsrc == "typed":
                sg_sd = st.number_input("SD of symptoms", step=0.1, format="%.3f", key="ev_sg_sd")
            st.caption("Cut-off = 1.96 · √2 · SD · √(1 − r), the reliable change value. The baseline SD is the "
                       "SD of the patients' first observed symptom scores in each study.")
    with c3:
        sg_first = st.checkbox("Count only each patient's first sudden gain", key="ev_sg_first")
        sg_pairing = st.radio("Consecutive sessions are", list(PAIRING_LABELS), format_func=PAIRING_LABELS.get,
                              key="ev_sg_pairing")

    # the cut-off per study (validated by the analysis functions)
    try:
        if sg_mode == "typed":
            if sg_cut is None or not sg_cut > 0:
                raise ValueError("The cut-off must be a number greater than 0.")
            cut_map = {s: float(sg_cut) for s in studies}
        else:
            if sg_sdsrc == "typed":
                sds = {s: sg_sd for s in studies}
            else:
                if base is None:
                    raise ValueError(base_error)
                lacking = [s for s in studies if not (np.isfinite(base_sd.get(s, np.nan)) and base_sd[s] > 0)]
                if lacking:
                    raise ValueError(
                        f"The baseline SD cannot be computed for {', '.join(lacking)} (fewer than two patients or "
                        f"no variation). Choose 'Type one SD for all studies'.")
                sds = base_sd
            cut_map = {s: ev.reliable_change_cutoff(sds[s], sg_r) for s in studies}
    except ValueError as exc:
        st.error(f"Sudden gains not computed: {_clean(exc)}")
        cut_map = None

    if cut_map is not None:
        cut_key = tuple(sorted(cut_map.items()))
        try:
            with st.spinner("Finding sudden gains…"):
                gains, pp_g, ps_g = _gains(df, cut_key, bool(sg_first), sg_pairing)
        except ValueError as exc:
            st.error(f"Sudden gains not computed: {_clean(exc)}")

    if ps_g is not None:
        n_pat = int(ps_g["n_patients"].sum())
        n_with = int(ps_g["n_with_gain"].sum())
        n_gain = int(ps_g["n_gains"].sum())
        cut_txt = ("a minimum drop of " + _num(next(iter(cut_map.values()))) + " symptom points"
                   if len(set(cut_map.values())) == 1 else "each study's own minimum drop (cut-off column below)")
        st.markdown(
            f"With {cut_txt}, {_pct(n_with, n_pat)} of the {n_pat:,} patients with at least "
            f"one pair of consecutive sessions ({n_with:,}) had a sudden gain; {_plural(n_gain, 'sudden gain')} "
            f"in all" + (" (first gain per patient only)." if sg_first else ".")
        )
        tbl_g = pd.DataFrame({
            "Study": ps_g["study"],
            "Cut-off (symptom points)": ps_g["study"].map(cut_map),
            "Baseline SD": ps_g["study"].map(base_sd) if base_sd else np.nan,
            "Patients (≥ 1 pair)": ps_g["n_patients"],
            "With a sudden gain (n)": ps_g["n_with_gain"],
            "With a sudden gain (%)": 100 * ps_g["prev_gain"],
            "Sudden gains (n)": ps_g["n_gains"],
            "Mean size of a gain (points)": ps_g["mean_magnitude"],
        })
        st.dataframe(tbl_g, hide_index=True, width="stretch", key="ev_tbl_gains",
                     column_config={c: st.column_config.NumberColumn(c, format="%.2f")
                                    for c in ("Cut-off (symptom points)", "Baseline SD", "With a sudden gain (%)",
                                              "Mean size of a gain (points)")})
        table_download(tbl_g, "sudden_gains_per_study", key="ev_dl_gains")

        st.subheader("One patient's symptoms")
        c1, c2 = st.columns([1, 2])
        with c1:
            g_study = st.selectbox("Study", studies, key="ev_sg_study") if multi else studies[0]
        gp = pp_g[pp_g["study"] == g_study]
        with_g = list(gp.loc[gp["any_gain"], "patient"])
        others = sorted(set(df.loc[df["study"].astype(str) == g_study, "patient"].astype(str)) - set(with_g))
        g_order = with_g + others
        g_info = gp.set_index("patient")["n_gains"].to_dict()

        def _g_label(p):
            n = int(g_info.get(p, 0))
            return f"{p} · {_plural(n, 'sudden gain')}" if n else f"{p} · no sudden gain"

        _ensure("ev_sg_patient", g_order, g_order[0] if g_order else None)
        with c2:
            g_patient = st.selectbox(f"Patient ({len(with_g):,} with a sudden gain listed first)", g_order,
                                     format_func=_g_label, key="ev_sg_patient")
        if g_patient is not None:
            show_figure(pe.fig_symptoms_with_gains(df, gains, g_study, g_patient),
                        f"symptoms_gains_{g_study}_{g_patient}", key="ev_fig_gainseries")
            mine = gains[(gains["study"] == g_study) & (gains["patient"] == g_patient) & gains["is_gain"]]
            if mine.empty:
                st.markdown(f"Patient {g_patient} has no sudden gain under these settings.")
            else:
                st.markdown(f"Patient {g_patient}: " + "; ".join(
                    f"symptoms fell from {_num(r.pregain)} at session {r.pregain_session} to {_num(r.postgain)} at "
                    f"session {r.postgain_session} (a drop of {_num(r.magnitude)}, {100 * r.relative_magnitude:.0f}%)"
                    for r in mine.itertuples()) + ".")

        with st.expander("Per-patient and per-pair tables"):
            st.dataframe(pp_g, hide_index=True, width="stretch", key="ev_tbl_gpp")
            table_download(pp_g, "sudden_gains_per_patient", key="ev_dl_gpp")
            st.markdown("**One row per pair of consecutive sessions** (each criterion)")
            st.dataframe(gains.head(2000), hide_index=True, width="stretch", key="ev_tbl_gpairs")
            if len(gains) > 2000:
                st.caption(f"First 2,000 of {len(gains):,} rows shown; the download has all rows.")
            table_download(gains, "sudden_gains_per_pair", key="ev_dl_gpairs")

        st.subheader("Alliance before and after sudden gains")
        st.markdown(
            "Does the alliance rise from the pregain session n to the postgain session n + 1 more than it does "
            "between other consecutive sessions? Change = alliance at n + 1 minus alliance at n "
            "(positive = the alliance got stronger)."
        )
        c1, c2 = st.columns(2)
        with c1:
            ag_rater = st.radio("Alliance rated by", raters, format_func=RATER_LABELS.get, key="ev_ag_rater",
                                horizontal=True)
        with c2:
            ag_std = st.checkbox("Standardize alliance within each study first", key="ev_ag_std",
                                 help="z = (x − study mean) / study SD, so studies with different alliance "
                                      f"scales can be combined ([METHODS §2]({LINK_STD})).")
            if multi and not ag_std:
                st.caption("The studies may use different alliance scales; raw changes are then not comparable.")
        unit = "SD units" if ag_std else "alliance points"
        try:
            with st.spinner("Comparing the alliance around gains with other sessions…"):
                aag = _around(df, cut_key, bool(sg_first), sg_pairing, ag_rater, bool(ag_std))
        except ValueError as exc:
            st.error(f"Alliance around gains not computed: {_clean(exc)}")
            aag = None
        if aag is not None:
            if aag.n_gain_pairs == 0:
                st.info("No sudden gain has alliance ratings at both sessions, so there is nothing to compare.")
            else:
                st.markdown(
                    f"**Averages.** Across {_plural(aag.n_gain_pairs, 'gain pair')} the alliance changed on "
                    f"average by {_signed(aag.mean_change_gain)} {unit} from session n to n + 1; across "
                    f"{_plural(aag.n_other_pairs, 'other pair')} of consecutive sessions by "
                    f"{_signed(aag.mean_change_other)}. Difference: {_signed(aag.difference)} {unit}."
                )
                if np.isfinite(aag.paired_t):
                    word = ("larger (the alliance rose more or fell less)" if aag.paired_mean_diff > 0
                            else "smaller (the alliance rose less or fell more)")
                    st.markdown(
                        f"**Paired test** (each patient compared with themself; {aag.paired_n:,} patients have both "
                        f"a gain pair and other pairs): the alliance change across the gain was on average "
                        f"{_num(abs(aag.paired_mean_diff))} {unit} {word} than across the patient's other "
                        f"sessions (t({aag.paired_df:.0f}) = {aag.paired_t:.2f}, {_p(aag.paired_p)}; "
                        f"{_signif(aag.paired_p)})."
                    )
                if np.isfinite(aag.model_estimate):
                    word = "larger" if aag.model_estimate > 0 else "smaller"
                    st.markdown(
                        f"**Random-intercept model** (all pairs, one intercept per patient): the alliance change "
                        f"across a sudden gain is {_num(abs(aag.model_estimate))} {unit} {word} than across other "
                        f"pairs (SE {_num(aag.model_se)}, z = {aag.model_z:.2f}, {_p(aag.model_p)}; "
                        f"{_signif(aag.model_p)}). The paired test weights every patient equally; the model "
                        f"weights every pair, so the two can differ."
                    )
                show_figure(pe.fig_alliance_around_gains(aag), "alliance_around_gains", key="ev_fig_around")
            for msg in aag.messages:
                st.caption(msg)
            t_aag = aag.to_frame()
            with st.expander("Table of these results"):
                st.dataframe(t_aag, hide_index=True, width="stretch", key="ev_tbl_aag")
            table_download(t_aag, "alliance_around_gains", key="ev_dl_aag")
            table_download(aag.pairs, "alliance_around_gains_pairs", key="ev_dl_aagpairs",
                           label="Download every pair with its alliance change (CSV)")

# =========================================================================== reliable change
with tab_rc:
    st.markdown(
        "**Reliable change** (Jacobson & Truax, 1991) compares each patient's last with their first observed "
        "symptom score: $RCI = (x_{post} - x_{pre}) / S_{diff}$ with $S_{diff} = \\sqrt{2} \\cdot SD \\cdot \\sqrt{1 - r}$; a change "
        "beyond ±1.96 is reliable. **Recovered** = reliably improved and moved from above to below the clinical "
        f"cut-off c. [Definition (§11)]({LINK_RC})"
    )
    c1, c2, c3 = st.columns(3)
    with c1:
        rc_r = st.number_input("Reliability r of the symptom measure (your input)", step=0.01, format="%.2f",
                               key="ev_rc_r", help="Cronbach's α or test–retest r; 0.90 is only a starting value.")
        rc_sdsrc = st.radio("SD of symptoms (your input)", list(SD_SOURCE_LABELS), format_func=SD_SOURCE_LABELS.get,
                            key="ev_rc_sdsrc")
        if rc_sdsrc == "typed":
            rc_sd = st.number_input("SD of symptoms", step=0.1, format="%.3f", key="ev_rc_sd")
    with c2:
        rc_cmode = st.radio("Clinical cut-off c", list(CUT_LABELS), format_func=CUT_LABELS.get, key="ev_rc_cmode")
        if rc_cmode == "scl90":
            st.caption("Published cut-off for the SCL-90-R Global Severity Index with German norms (METHODS §11). "
                       "Use it only for GSI scores.")
    norms = ()
    rc_c = None
    with c3:
        if rc_cmode == "norms":
            st.caption("Norms of your instrument (your input); c = (SD_f·M_c + SD_c·M_f) / (SD_f + SD_c).")
            n1, n2 = st.columns(2)
            mc = n1.number_input("Clinical mean M_c", step=0.1, format="%.3f", key="ev_rc_mc", value=None)
            sdc = n2.number_input("Clinical SD_c", step=0.1, format="%.3f", key="ev_rc_sdc", value=None)
            mf = n1.number_input("Functional mean M_f", step=0.1, format="%.3f", key="ev_rc_mf", value=None)
            sdf = n2.number_input("Functional SD_f", step=0.1, format="%.3f", key="ev_rc_sdf", value=None)
            norms = (("M_clinical", mc), ("SD_clinical", sdc), ("M_functional", mf), ("SD_functional", sdf))
        elif rc_cmode == "typed":
            rc_c = st.number_input("Cut-off c in symptom points (your input)", step=0.1, format="%.3f", key="ev_rc_c", value=None)
        elif rc_cmode == "scl90":
            rc_c = ev.SCL90R_GSI_GERMAN_CUTOFF
        if rc_cmode != "none" and multi:
            cut_studies = st.multiselect("Use the cut-off in these studies (same instrument only)", studies,
                                         key="ev_rc_cstudies")
        else:
            cut_studies = list(studies)

    rc = None
    try:
        if rc_cmode == "norms" and any(v is None for _, v in norms):
            raise ValueError("Enter all four norm values (clinical and functional mean and SD), "
                             "or choose another cut-off.")
        if rc_cmode == "norms":
            c_val = ev.clinical_cutoff_c(*(v for _, v in norms))
            st.caption(f"c = {_num(c_val)}")
        if rc_cmode == "typed" and rc_c is None:
            raise ValueError("Type a cut-off c, or choose another cut-off.")
        if rc_sdsrc == "typed":
            rc_sds = {s: rc_sd for s in studies}
        else:
            if base is None:
                raise ValueError(base_error)
            lacking = [s for s in studies if not (np.isfinite(base_sd.get(s, np.nan)) and base_sd[s] > 0)]
            if lacking:
                raise ValueError(f"The baseline SD cannot be computed for {', '.join(lacking)}. "
                                 f"Choose 'Type one SD for all studies'.")
            rc_sds = base_sd
        with st.spinner("Classifying reliable change…"):
            rc = _reliable_change(df, rc_r, tuple(sorted(rc_sds.items())), rc_cmode, rc_c, norms,
                                  tuple(cut_studies))
    except ValueError as exc:
        st.error(f"Reliable change not computed: {_clean(exc)}")

    if rc is not None:
        has_rc = rc[rc["category"].notna()]
        cats = ["recovered", "improved", "unchanged", "deteriorated"]
        counts = (has_rc.groupby(["study", "category"]).size().unstack("category")
                  .reindex(index=studies, columns=cats).fillna(0).astype(int))
        n_by = counts.sum(axis=1)
        per = rc.groupby("study").agg(s_diff=("s_diff", "first"), cutoff=("cutoff", "first")).reindex(studies)
        tbl_rc = pd.DataFrame({"Study": studies, "Patients (≥ 2 scores)": n_by.to_numpy()})
        for c in cats:
            tbl_rc[f"{c.capitalize()} (n)"] = counts[c].to_numpy()
            tbl_rc[f"{c.capitalize()} (%)"] = np.where(n_by > 0, 100 * counts[c] / n_by.replace(0, np.nan), np.nan)
        tbl_rc["Smallest reliable change (1.96·S_diff)"] = 1.96 * per["s_diff"].to_numpy()
        tbl_rc["Cut-off c"] = per["cutoff"].to_numpy()
        no_c = tbl_rc["Cut-off c"].isna().to_numpy()
        # without a cut-off nobody can be "recovered": leave the cells empty rather than show 0
        tbl_rc["Recovered (n)"] = pd.array(tbl_rc["Recovered (n)"], dtype="Int64")
        tbl_rc.loc[no_c, "Recovered (n)"] = pd.NA
        tbl_rc.loc[no_c, "Recovered (%)"] = np.nan
        tot = int(n_by.sum())
        imp = int(counts["recovered"].sum() + counts["improved"].sum())
        det = int(counts["deteriorated"].sum())
        with_c = rc["cutoff"].notna().any()
        txt = (f"Of {tot:,} patients with at least two symptom scores, {_pct(imp, tot)} ({imp:,}) improved reliably "
               f"and {_pct(det, tot)} ({det:,}) deteriorated reliably from their first to their last session")
        if with_c:
            n_c = int(has_rc["cutoff"].notna().sum())
            rec_c = int((has_rc["category"] == "recovered").sum())
            txt += (f"; {rec_c:,} of the {n_c:,} patients in studies with a cut-off ({_pct(rec_c, n_c)}) recovered "
                    f"(reliable improvement and crossing c). 'Improved' counts reliable improvement without recovery.")
        else:
            txt += ". Choose a clinical cut-off c to classify patients as recovered."
        st.markdown(txt)
        st.caption("Improved = reliable improvement without recovery (all reliable improvement where no cut-off "
                   "is used). Recovered needs a cut-off c (\"no c\": not used in that study).")
        show_rc = tbl_rc.copy()
        if no_c.all():
            show_rc = show_rc.drop(columns=["Recovered (n)", "Recovered (%)", "Cut-off c"])
            tbl_rc = show_rc
        elif no_c.any():  # show "no c" instead of an empty cell for studies without a cut-off
            show_rc["Recovered (n)"] = [("no c" if m else f"{int(v):,}") for m, v in zip(no_c, tbl_rc["Recovered (n)"])]
            show_rc["Recovered (%)"] = [("no c" if m else f"{v:.1f}") for m, v in zip(no_c, tbl_rc["Recovered (%)"])]
        pct_cfg = {c: st.column_config.NumberColumn(c, format="%.1f") for c in show_rc.columns
                   if c.endswith("(%)") and show_rc[c].dtype.kind == "f"}
        st.dataframe(show_rc, hide_index=True, width="stretch", column_config=pct_cfg, key="ev_tbl_rc")
        table_download(tbl_rc, "reliable_change_per_study", key="ev_dl_rc")
        rc_study = st.selectbox("Study for the figure", studies, key="ev_rc_study") if multi else studies[0]
        try:
            fig_rc = pe.fig_reliable_change(rc, study=rc_study)
            fig_rc.update_layout(legend={"y": -0.3}, margin={"b": 120})  # keep the legend off the x-axis title
        except ValueError as exc:
            st.error(_clean(exc))
        else:
            show_figure(fig_rc, f"reliable_change_{rc_study}", key="ev_fig_rc")
            st.caption("Each dot is a patient. Below the diagonal = fewer symptoms at the end (improvement); "
                       "dots outside the grey band changed reliably.")
        with st.expander("Per-patient table"):
            st.dataframe(rc, hide_index=True, width="stretch", key="ev_tbl_rcpp")
            table_download(rc, "reliable_change_per_patient", key="ev_dl_rcpp")

# =========================================================================== outcome
with tab_o:
    st.markdown(
        "Do patients with a rupture, a repair or a sudden gain change more in symptoms (last minus first score) "
        "than patients without? Per study the difference is a standardized mean difference (Hedges' g) or a raw "
        f"mean difference; with two or more studies they are pooled with a random-effects model "
        f"([§6]({LINK_POOL})). Negative = patients with the pattern improved more."
    )
    c1, c2 = st.columns(2)
    with c1:
        event = st.radio("Pattern", list(EVENT_LABELS), format_func=EVENT_LABELS.get, key="ev_out_event")
    with c2:
        measure = st.radio("Effect size", list(MEASURE_LABELS), format_func=MEASURE_LABELS.get, key="ev_out_measure")
        if measure == "MD" and multi:
            st.caption("Raw differences are only comparable when all studies used the same symptom scale.")
    if event == "gain":
        st.caption("Uses the sudden-gain settings of the 'Sudden gains' tab.")
    else:
        st.caption(f"Uses the rupture settings of the 'Ruptures & repairs' tab (k = {k:g}, "
                   f"{RATER_LABELS[rater].lower()} ratings).")
    ready = gains is not None if event == "gain" else flags is not None
    if not ready:
        st.error("Fix the settings in the " + ("'Sudden gains'" if event == "gain" else "'Ruptures & repairs'")
                 + " tab first; the pattern could not be computed there.")
    else:
        try:
            with st.spinner("Relating the pattern to outcome…"):
                out = _outcome(df, event, measure, (float(k), sd_choice, rater, pre, rule),
                               (cut_key, bool(sg_first), sg_pairing) if event == "gain" else ())
        except ValueError as exc:
            st.error(f"Not computed: {_clean(exc)}")
            out = None
        if out is not None:
            ps_o = out.per_study
            what = EVENT_LABELS[event].lower()
            eff = "Hedges' g" if measure == "SMD" else "mean difference"
            if not multi:
                r = ps_o.iloc[0]
                st.markdown(f"**No pooling with one study.** In {r.study}, symptoms changed on average by "
                            f"{_signed(r.mean_change_event)} points in the {r.n_event:,} patients with the pattern "
                            f"({what}) and by {_signed(r.mean_change_no_event)} in the {r.n_no_event:,} without.")
                if r.included:
                    better = "improved more" if r.yi < 0 else "improved less"
                    st.markdown(f"{eff} = {_num(r.yi)} (95% CI {_num(r.ci_low)} to {_num(r.ci_high)}, {_p(r.pvalue)}): "
                                f"patients with the pattern {better}; {_signif(r.pvalue)}.")
            elif out.meta is not None and out.meta.k >= 2:
                meta = out.meta
                lean = ("patients with the pattern improved more" if meta.estimate < 0
                        else "patients with the pattern improved less")
                st.markdown(f"**Pooled over {meta.k} studies ({eff}, with minus without the pattern).** "
                            f"{_num(meta.estimate)} (95% CI {_num(meta.ci_low)} to {_num(meta.ci_high)}, "
                            f"{_p(meta.pvalue)}): on average {lean} ({what}); the difference is "
                            f"{_signif(meta.pvalue)}.")
                st.caption(meta.summary())
            else:
                st.info("No pooling: fewer than two studies have at least two patients with and two without the "
                        "pattern.")
            pooled = multi and out.meta is not None and out.meta.k >= 2
            t_o = out.to_frame() if pooled else out.per_study
            show = t_o.rename(columns={
                "study": "Study", "n_event": "With pattern (n)", "n_no_event": "Without (n)",
                "mean_change_event": "Mean change, with", "mean_change_no_event": "Mean change, without",
                "yi": "Effect (" + ("g" if measure == "SMD" else "MD") + ")", "ci_low": "95% CI low",
                "ci_high": "95% CI high", "pvalue": "p", "included": "Pooled", "note": "Note"})
            cols = [c for c in ["Study", "With pattern (n)", "Without (n)", "Mean change, with", "Mean change, without",
                                show.columns[show.columns.str.startswith("Effect")][0], "95% CI low", "95% CI high",
                                "p", "Pooled", "Note"] if c in show.columns]
            st.dataframe(show[cols], hide_index=True, width="stretch", key="ev_tbl_out",
                         column_config={c: st.column_config.NumberColumn(c, format="%.3f")
                                        for c in cols if show[c].dtype.kind == "f"})
            st.caption("Mean change = last minus first symptom score in each study's own units "
                       "(negative = improvement).")
            table_download(t_o, f"outcome_by_{event}", key="ev_dl_out")
            for msg in out.messages:
                st.caption(msg)
            if pooled:
                xl = ("Hedges' g, with minus without the pattern (negative = more improvement with it)"
                      if measure == "SMD" else "Mean difference in symptom change (negative = more improvement with it)")
                show_figure(forest_plot(out.meta, title=f"{EVENT_LABELS[event]} and symptom change", xlabel=xl),
                            f"outcome_by_{event}_forest", key="ev_fig_forest")

_save(DEFAULTS)
