"""The "Total, within and between" section of the Lagged effects page (issue 11 §1, METHODS §12).

Lays out widgets and shows :func:`analysis.decomposition.total_within_between` for one chosen
study; every statistic comes from the result object.
"""

from __future__ import annotations

import math

import streamlit as st

from analysis import formatting as fmt
from analysis import plots_decomposition
from analysis.decomposition import DecompositionOptions
from ui import compute
from ui.choices import data_select
from ui.declared import draw, find
from ui.downloads import show_figure
from ui.early_view import early_section
from ui.presets import preset_control
from ui.r_downloads import decomposition_r_download
from ui.safe import esc, md
from ui.tables import show_table

_LABEL = {"total": "Total (within + between)", "within": "Within patients", "between": "Between patients"}
_KEY_TERM = {"total": "predictor", "within": "within", "between": "between"}
_WHAT = {
    "total": "outcome at t + L on the raw predictor and outcome at t, random intercept (REML, Satterthwaite df)",
    "within": "the patient's deviation from their own mean at t + L on the predictor's deviation, the patient's "
              "mean (centred) and the outcome's deviation at t, random intercept (REML, Satterthwaite df)",
    "between": "the patient's mean outcome on their mean predictor, one row per patient (OLS, df = n − 2)",
}


def decomposition_section(df, options) -> None:
    """Draw the section: study and direction pickers, the trio side by side, the reading and the scatter."""
    st.header("Total, within and between effects (Within/between paper)")
    st.caption(
        "The three models of the ICBT within/between paper for one study (METHODS §12). Person means use every "
        "observed value of the patient in the session window; the outcome is the same patient's value "
        f"{options.lag} session(s) later."
    )
    if options.lag == 0:
        st.info("The three models pair each session with a later one, so they need a lag of 1 to 3; with lag 0 "
                "(symptoms → alliance in the same session) they are not shown.")
        return
    c1, c2 = st.columns(2)
    studies = sorted(df["study"].astype(str).unique())
    study = data_select("Study", studies, "dec_study", c1)
    direction = draw(find(DecompositionOptions, "direction"), "dec_direction", c2)
    try:
        res = compute.decomposition(df, direction, options.lag, options.standardize, study, options.sessions)
    except ValueError as e:
        st.error(f"The three models could not be fitted for this study: {esc(str(e))}")
        return
    cols = st.columns(3)
    for col, model in zip(cols, ("total", "within", "between")):
        with col:
            st.subheader(_LABEL[model])
            try:
                c = res.coef(model, _KEY_TERM[model])
            except KeyError:
                st.warning("Not estimated (see notes below).")
                continue
            st.metric("b", fmt.signed(c["estimate"], 3), help=_WHAT[model])
            st.caption(f"95% CI {fmt.interval(c['ci_low'], c['ci_high'], 3)} · {fmt.stat('t', c['statistic'], c['df'])}"
                       f" · {fmt.p_text(c['pvalue'])} · n = {fmt.count(c['n_obs'])}"
                       f"{' rows' if model != 'between' else ' patients'}")
    _published_between(res)
    st.markdown(esc(res.reading(), limit=None))
    show_figure(plots_decomposition.trio_figure(res), f"trio_{direction}", key="dec_trio")
    show_figure(plots_decomposition.person_means_figure(res), f"person_means_{direction}", key="dec_scatter")
    with st.expander("All coefficients of the three models"):
        tab = res.to_frame()
        show_table(tab, f"total_within_between_{study}_{direction}", key="dec_dl",
                   title="Total, within- and between-patient models")
        for m in res.messages:
            st.caption(esc(m, limit=None))
    with st.expander("Reproduce these three models in R"):
        decomposition_r_download(df, study, direction, options)


def _published_between(res) -> None:
    """Seed 004's between model as published (session rows, Satterthwaite), beside the OLS of person means."""
    try:
        c = res.coef("between_sessions", "between")
    except KeyError:
        return
    note = next((m for m in res.messages if m.startswith("Between model as published")), "")
    test = (fmt.stat("t", c["statistic"], c["df"]) + f" · {fmt.p_text(c['pvalue'])}" if math.isfinite(c["df"])
            else f"t = {fmt.num(c['statistic'], 2)}, df not defined")
    st.markdown(md("**Between, as the paper fitted it** (person-mean outcome on within and between {pred}, {n} "
                   "session rows, random intercept): b = {b}, SE {se}, {test}. The column *Between patients* above "
                   "is the OLS of the person means (one row per patient, n − 2 df).", pred=esc(res.predictor),
                   n=fmt.count(c["n_obs"]), b=fmt.signed(c["estimate"], 3), se=fmt.num(c["se"], 3), test=test))
    st.caption(esc(note, limit=None))


def descriptives_section(df, study: str, sessions=None) -> None:
    """Seed 004 Table 1 for one study (per-session mean, SD, mean absolute change) and the pre–post d."""
    with st.expander("Per-session descriptives and pre–post effect size (Within/between paper, Table 1)"):
        try:
            tab, d = compute.session_descriptives(df, study, sessions)
        except ValueError as e:
            st.info(f"Not available: {esc(str(e))}")
            return
        show_table(tab, f"session_descriptives_{study}", key="desc_dl", title="Per-session descriptives")
        st.caption("Mean absolute change = mean over patients observed in both sessions of |x(s) − x(s − 1)| "
                   "(absolute values, so rises and falls do not cancel; METHODS §13).")
        if d is not None:
            st.markdown(
                f"Pre–post Cohen's d of symptoms (session {int(d.pre_session)} → {int(d.post_session)}, "
                f"{fmt.count(d.n)} patients with both): **{fmt.num(d.d)}** (d_av: mean change over the average "
                "of the two SDs; positive = symptoms decreased)."
            )


def lagged_page_sections(df, options, trio=None, early=None) -> None:
    """Everything issue 11 adds to the Lagged effects page: the preset control (sidebar), the
    total/within/between trio with the per-session descriptives (in ``trio``) and early alliance → outcome (in
    ``early``). ``trio`` / ``early``: the page's lazy tabs (ui/tabs.py), each section runs only while its tab is
    open; both default to the page itself."""
    preset_control()
    if trio is None or trio.open:
        with trio if trio is not None else st.container():
            decomposition_section(df, options)
            study = st.session_state.get("dec_study")
            if study is not None:
                descriptives_section(df, study, options.sessions)
    if early is None or early.open:
        with early if early is not None else st.container():
            _early(df, options)


def _early(df, options) -> None:
    st.header("Early alliance → post-treatment outcome (IPD-MA)")
    st.caption("Per study: the outcome regressed on early alliance and baseline symptoms (METHODS §7); the "
               "early window and the outcome are chosen here, independently of the lagged window.")
    early_section(df, options)
