"""Ruptures & gains page (METHODS §9–§11), layout only: results from `analysis.events` via `ui.compute`."""

from __future__ import annotations

import streamlit as st

from analysis import events as ev
from analysis import formatting as fmt
from analysis import plots_events as pe
from analysis.events.options import GainOptions, OutcomeOptions, ReliableChangeOptions, RuptureOptions
from analysis.plots_meta import forest_figure
from ui import compute, persist
from ui.choices import data_select, pick
from ui.declared import find, labels
from ui.downloads import show_figure, table_download
from ui.events_view import dropout_section, notes, patient_picker, rel_sd, run, table
from ui.safe import Markup, esc, md
from ui.state import current, data_banner, has_therapist_ratings
from ui.tabs import EVENTS_TABS, lazy_tabs

LINK_RUPTURES, LINK_GAINS, LINK_RC = ("/methods#9-ruptures-ruptures-paper-stiles-2004-strauss-2006-gumz-2012",
                                      "/methods#10-sudden-gains-review-tang-and-de-rubeis-1999",
                                      "/methods#11-reliable-and-clinically-significant-change-jacobson-and-truax-1991")
CRITERIA = ev.CRITERION_LABELS
# the words of each choice come from the option declarations (analysis.events.options)
SD_LABELS, RATERS, PRE, RULES, ITEM_RULES = (labels(RuptureOptions, n) for n in (
    "sd", "rater", "pre_level", "rule", "item_rule"))
KINDS, BETTER, PAIRING, CONVENTIONS = (labels(GainOptions, n) for n in ("kind", "better", "pairing", "convention"))
CUT_MODE = {"rc": "Reliable change value (r and SD per study)", "typed": "Type the cut-off myself"}
CUTS = labels(ReliableChangeOptions, "cutoff_mode")
EVENTS, MEASURES = (labels(OutcomeOptions, n) for n in ("event", "measure"))


def _persist(data_key: str, defaults: dict) -> None:
    """Widget keys kept by ui.persist (across pages, options in the URL); another data set starts from defaults."""
    if st.session_state.get("ev_data_key") != data_key:
        persist.forget("ev_")
        st.session_state["ev_data_key"] = data_key
    applied = persist.url_params("events", persist.EVENTS)
    if "criterion" in applied:  # a link naming a criterion but not its k / SD / trend gets the criterion's own
        c = ev.RUPTURE_CRITERIA[st.session_state["ev_crit"]]
        for name, key, val in (("k", "ev_k", c.k), ("sd", "ev_sd_opt", c.sd), ("detrend", "ev_detrend", c.detrend)):
            st.session_state[key] = st.session_state[key] if name in applied else val
    for key, default in defaults.items():
        persist.widget(key, default)


def _reset_k() -> None:
    c = ev.RUPTURE_CRITERIA[st.session_state["ev_crit"]]
    st.session_state.update(ev_k=c.k, ev_sd_opt=c.sd, ev_detrend=c.detrend)


def ruptures_tab(df, studies, raters, items, is_open: bool = True) -> dict | None:
    """The rupture settings (always) and, when the tab is open, the results; returns the settings."""
    st.markdown("A **rupture**: a session's alliance dips well below what the patient's other sessions lead one to "
                "expect; **repaired** when a later session returns to the pre-rupture level. The chance reference: "
                f"how many patients the criterion flags without any rupture. [Definitions (§9)]({LINK_RUPTURES})")
    c1, c2, c3 = st.columns(3)
    crit = c1.selectbox("Criterion", list(CRITERIA), format_func=CRITERIA.get, key="ev_crit", on_change=_reset_k)
    ref = ev.RUPTURE_CRITERIA[crit].reference
    k = c1.number_input("k: SDs below the expected value (moderated SD: patient-level z, 1.28 = 10% flagged by "
                        "chance)", 0.5, 4.0, step=0.1, format="%.2f", key="ev_k")
    sds = (["moderated"] if ref == "other" else []) + ["robust", "patient"] + (["pooled", "max"] if ref == "all" else [])
    pick("ev_sd_opt", sds, ev.RUPTURE_CRITERIA[crit].sd)
    sd = c2.selectbox("SD", sds, format_func=SD_LABELS.get, key="ev_sd_opt")
    detrend = c2.checkbox("Against the patient's own trend (detrended)", key="ev_detrend")
    rater = c2.radio("Alliance rated by", raters, format_func=RATERS.get, key="ev_rater", horizontal=True)
    pre = c3.selectbox("Pre-rupture level", list(PRE), format_func=PRE.get, key="ev_pre")
    rule = c3.selectbox("Rupture–repair when", list(RULES), format_func=RULES.get, key="ev_rule")
    item = c3.selectbox("Rupture item column (optional; e.g. a rupture-intensity rating)", ["(none)"] + items,
                        key="ev_item")
    opts = dict(criterion=crit, k=float(k), sd=sd, detrend=bool(detrend), rater=rater, pre_level=pre, rule=rule)
    if item != "(none)":
        i1, i2 = st.columns(2)
        opts |= dict(item=item, item_threshold=float(i1.number_input("Item marks a rupture at or above", value=1.0,
                                                                     key="ev_item_thr")),
                     item_rule=i2.radio("Combine", list(ITEM_RULES), format_func=ITEM_RULES.get, key="ev_item_rule"))
    if not is_open:
        return opts
    ra = run("Ruptures", "Finding ruptures and the chance reference…", compute.event_ruptures, df, **opts)
    if ra is None:
        return None
    t = ra.total
    for col, (label, value, sub) in zip(st.columns(3), (
            ("Patients with ≥ 1 rupture", t["prev_rupture"], fmt.count(t["n_rupture"]) + " patients"),
            ("Expected by chance", t.get("chance_expected"), ra.chance.basis if ra.chance else "none here"),
            ("Rupture–repair", t["prev_rupture_repair"], fmt.count(t["n_rupture_repair"]) + " patients"))):
        col.metric(Markup(label), fmt.percent(value, 1, na="–"), sub, delta_color="off", delta_arrow="off")
    if crit == "other_sessions" and ra.chance is not None:
        st.warning(f"1 SD below own other sessions is a floor below which a dip is not worth a look, not a detector: "
                   f"by chance alone it would flag {fmt.percent(t.get('chance_expected'), 1, na='–')} of these "
                   f"patients (observed {fmt.percent(t['prev_rupture'], 1, na='–')}).")
    st.markdown(md("Criterion: {c}. {s}", c=ra.criterion.describe(), s=ra.summary()))
    notes(ra.messages)
    table(ra.to_frame().rename(columns=ev.TABLE_LABELS), "rupture_prevalence", "prev")
    okey = (compute.data_key(df), compute.freeze(opts))  # a figure is built once per data, options (and patient)
    show_figure(compute.figure(pe.rupture_prevalence_figure, okey, ra), "rupture_prevalence", key="ev_fig_prev")
    st.subheader("One patient's alliance")
    study, patient = patient_picker("ev_rs", studies, ra.patients)
    if patient is not None:
        show_figure(compute.figure(pe.rupture_series_figure, (*okey, study, patient), ra, study, patient),
                    "alliance_ruptures", key="ev_fig_series")
        st.caption(esc(ra.patient_note(study, patient)))
    with st.expander("Downloads: per patient and per session"):
        table_download(ra.per_patient, "ruptures_per_patient", key="ev_dl_rpp")
        table_download(ra.flags, "ruptures_per_session", key="ev_dl_rflags", label="Download every session (CSV)")
    return opts


def gains_tab(df, studies, raters, is_open: bool = True) -> dict | None:
    """The sudden-gain settings (always) and, when the tab is open, the results; returns the settings."""
    st.markdown("A **sudden gain** is a large, stable one-session drop in symptoms (Tang & DeRubeis, 1999); a "
                "**sudden loss** the mirror image; a gain is **reversed** when ≥ 50% of it is lost later. "
                f"[Definition (§10)]({LINK_GAINS})")
    c1, c2, c3 = st.columns(3)
    kind = c1.radio("Event", list(KINDS), format_func=KINDS.get, key="ev_sg_kind", horizontal=True)
    better = c1.radio("Direction of the measure", list(BETTER), format_func=BETTER.get, key="ev_sg_better")
    mode = c2.radio("Criterion 1: minimum change", list(CUT_MODE), format_func=CUT_MODE.get, key="ev_sg_mode")
    opts = dict(kind=kind, better=better, first_only=bool(c3.checkbox("Only each patient's first event",
                                                                       key="ev_sg_first")),
                pairing=c3.radio("Consecutive sessions", list(PAIRING), format_func=PAIRING.get, key="ev_sg_pairing"),
                convention=c3.radio("Conventions", list(CONVENTIONS), format_func=CONVENTIONS.get,
                                    key="ev_sg_conv", help="Published criteria (default) or as the R package "
                                    "suddengains, to match R results (METHODS §10)"))
    if mode == "typed":
        opts["cutoff"] = float(c2.number_input("Cut-off (score points)", min_value=0.001, step=0.5, key="ev_sg_cut"))
    else:
        opts["reliability"], opts["sd"] = rel_sd("ev_sg", c2, c3, df, studies)
    if not is_open:
        return opts
    ga = run("Sudden gains", "Finding sudden gains…", compute.event_gains, df, **opts)
    if ga is None:
        return None
    st.markdown(md("{s}", s=ga.summary()))
    gkey = (compute.data_key(df), compute.freeze(opts))
    table(ga.to_frame().rename(columns=ev.TABLE_LABELS), "sudden_events_per_study", "gains")
    study, patient = patient_picker("ev_sg", studies, lambda s: ga.patients(
        s, df.loc[df["study"].astype(str) == s, "patient"].astype(str).unique()))
    if patient is not None:
        show_figure(compute.figure(pe.gain_series_figure, (*gkey, study, patient), df, ga, study, patient),
                    "symptoms_gains", key="ev_fig_gainseries")
        st.caption(esc(ga.patient_note(study, patient)))
    with st.expander("Downloads: per patient and per pair"):
        table_download(ga.per_patient, "sudden_gains_per_patient", key="ev_dl_gpp")
        table_download(ga.gains, "sudden_gains_per_pair", key="ev_dl_gpairs", label="Download every pair (CSV)")
    st.subheader("Alliance around sudden gains")
    c1, c2 = st.columns(2)
    rater = c1.radio("Alliance rated by", [r for r in raters if r != "both"], format_func=RATERS.get,
                     key="ev_ag_rater", horizontal=True)
    std = c2.checkbox("Standardize alliance within each study first (METHODS §2)", key="ev_ag_std")
    if (res := run("Alliance around gains", "Alliance around gains…", compute.event_around, df, opts, rater,
                    bool(std))) is None:
        return opts
    aag, traj = res
    st.markdown(md("{s}", s=aag.summary("SD units" if std else "alliance points")))
    notes(aag.messages)
    if aag.n_gain_pairs:
        show_figure(compute.figure(pe.alliance_around_gains_figure, (*gkey, rater, bool(std)), aag),
                    "alliance_around_gains", key="ev_fig_around")
        st.markdown(md("{s}", s=traj.summary()))
        show_figure(compute.figure(pe.alliance_trajectory_figure, (*gkey, rater, bool(std)), traj),
                    "alliance_trajectory", key="ev_fig_traj")
        table_download(aag.to_frame(), "alliance_around_gains", key="ev_dl_aag")
    return opts


def rc_tab(df, studies) -> None:
    st.markdown("**Reliable change** compares each patient's last with their first score; **recovered** = "
                f"reliably improved and crossing the clinical cut-off c. [Definitions (§11)]({LINK_RC})")
    c1, c2, c3 = st.columns(3)
    method = c1.radio("Method", list(ev.RC_METHODS), format_func=ev.RC_METHODS.get, key="ev_rc_method")
    r, sd = rel_sd("ev_rc", c1, c2, df, studies)
    cmode = c2.radio("Clinical cut-off c", list(CUTS), format_func=CUTS.get, key="ev_rc_cmode")
    opts = dict(reliability=r, sd=sd, method=method)
    if cmode == "norms":
        vals = [c3.number_input(lab, value=None, step=0.1, key=f"ev_rc_{k}") for lab, k in (
            ("Clinical mean M_c", "mc"), ("Clinical SD_c", "sdc"), ("Functional mean M_f", "mf"), ("Functional SD_f", "sdf"))]
        if any(v is None for v in vals):
            st.error("Enter all four norm values (clinical and functional mean and SD), or choose another cut-off.")
            return
        opts["norms"] = dict(zip(("M_clinical", "SD_clinical", "M_functional", "SD_functional"), map(float, vals)))
    elif cmode in ("typed", "scl90"):
        c = ev.SCL90R_GSI_GERMAN_CUTOFF if cmode == "scl90" else c3.number_input("c", value=None, key="ev_rc_c")
        if c is None:
            st.error("Type a cut-off c, or choose another cut-off.")
            return
        opts["cutoff"] = float(c)
    if cmode != "none" and len(studies) > 1:
        opts["cutoff_studies"] = list(c3.multiselect("Use c in these studies (same instrument only)", studies,
                                                     key="ev_rc_cstudies"))
    rc = run("Reliable change", "Classifying reliable change…", compute.event_reliable_change, df, **opts)
    if rc is None:
        return
    st.markdown(md("{s}", s=rc.summary()))
    notes(rc.messages)
    tab = rc.to_frame().rename(columns=ev.TABLE_LABELS | {"cutoff": "Cut-off c", "n_patients": "Patients (≥ 2 scores)"})
    if tab["Cut-off c"].isna().all():
        tab = tab.drop(columns=["Recovered (n)", "Recovered (%)", "Cut-off c"])
    table(tab, "reliable_change_per_study", "rc")
    study = data_select("Study for the figure", studies, "ev_rc_study") if len(studies) > 1 else studies[0]
    show_figure(compute.figure(pe.reliable_change_figure, (compute.data_key(df), compute.freeze(opts), study), rc,
                                study=study), "reliable_change", key="ev_fig_rc")
    table_download(rc.per_patient, "reliable_change_per_patient", key="ev_dl_rcpp", label="Download per patient (CSV)")


def outcome_tab(df, r_opts, g_opts, multi) -> None:
    st.markdown("Do patients with a pattern change more in symptoms (last minus first score) than patients "
                "without? Per study Hedges' g or the raw difference; pooled by random effects (§6). "
                "Negative = more improvement with the pattern.")
    c1, c2 = st.columns(2)
    event = c1.radio("Pattern", list(EVENTS), format_func=EVENTS.get, key="ev_out_event")
    measure = c2.radio("Effect size", list(MEASURES), format_func=MEASURES.get, key="ev_out_measure")
    opts = g_opts if event == "gain" else r_opts
    if opts is None:
        st.error("Fix the settings in the tab that defines this pattern first.")
        return dropout_section(df, r_opts)
    out = run("Relation to outcome", "Relating the pattern to outcome…", compute.event_outcome, df, event,
               measure, r_opts or {}, g_opts or {})
    if out is None:
        return dropout_section(df, r_opts)
    if event == "repair_groups":
        table(out.to_frame(), "outcome_by_repair_group", "groups")
        table(out.contrast_frame(), "outcome_repair_contrasts", "contrasts")
        return dropout_section(df, r_opts)
    st.markdown(md("{s}", s=out.summary(EVENTS[event].lower())))
    table(out.to_frame() if out.meta is not None else out.per_study, f"outcome_by_{event}", "out")
    notes(out.messages)
    if multi and out.meta is not None and out.meta.k >= 2:
        fkey = (compute.data_key(df), event, measure, compute.freeze(r_opts or {}), compute.freeze(g_opts or {}))
        show_figure(compute.figure(forest_figure, fkey, out.meta, title=f"{EVENTS[event]} and symptom change",
                                   xlabel="Effect, with minus without the pattern (negative = more improvement)"),
                    f"outcome_by_{event}_forest", key="ev_fig_forest")
    dropout_section(df, r_opts)


st.title("Ruptures & gains")
data_banner()
ds = current()
df = ds["df"]
studies = sorted(df["study"].astype(str).unique())
raters = list(find(RuptureOptions, "rater").choices) if has_therapist_ratings(df) else ["patient"]
DEFAULTS = {"ev_crit": "default", "ev_k": ev.DEFAULT_K, "ev_sd_opt": "moderated", "ev_detrend": True, "ev_rater": "patient",
            "ev_pre": "previous", "ev_rule": "any", "ev_item": "(none)", "ev_item_rule": "or", "ev_sg_kind": "gain",
            "ev_sg_better": "lower", "ev_sg_mode": "rc", "ev_sg_r": 0.90, "ev_sg_sdsrc": "baseline", "ev_sg_sd": 1.0,
            "ev_sg_cut": 1.0, "ev_sg_first": False, "ev_sg_pairing": "session",
            "ev_sg_conv": "published", "ev_ag_rater": "patient",
            "ev_ag_std": len(studies) > 1, "ev_rc_method": "JT", "ev_rc_r": 0.90, "ev_rc_sdsrc": "baseline",
            "ev_rc_sd": 1.0, "ev_rc_cmode": "none", "ev_rc_cstudies": list(studies), "ev_out_event": "rupture",
            "ev_out_measure": "SMD", "ev_do_preds": ["early_alliance", "rupture", "repair"]}
_persist(ds.get("key", ds["name"]), DEFAULTS)
pick("ev_rater", raters, "patient")
pick("ev_ag_rater", [r for r in raters if r != "both"], "patient")
st.markdown("Every threshold is your choice; symptoms: higher = more severe; alliance: higher = stronger.")
# lazy tabs (ui/tabs.py): only the open tab's results are computed and drawn; the rupture and gain settings are
# always read (their widgets are cheap), since the outcome tab relates those patterns to outcome
t1, t2, t3, t4 = lazy_tabs("ev_tab", EVENTS_TABS)
with t1:
    r_opts = ruptures_tab(df, studies, raters, ev.extra_numeric_columns(df), t1.open)
with t2:
    g_opts = gains_tab(df, studies, raters, t2.open)
if t3.open:
    with t3:
        rc_tab(df, studies)
if t4.open:
    with t4:
        outcome_tab(df, r_opts, g_opts, len(studies) > 1)
