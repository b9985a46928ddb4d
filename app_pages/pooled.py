"""Pooled effects page: stage-2 random-effects meta-analysis of the stage-1 coefficients."""

import html

import streamlit as st

from analysis import meta, plots_lagged, plots_meta
from analysis.interpret import lagged_effect_sentence
from ui import compute, few_studies, persist
from ui.downloads import show_figure, table_download
from ui.dynamics_view import check_section, comparison_section
from ui.options import DIRECTIONS, LINKS, option_panel, pooling_panel
from ui.presets import preset_control
from ui.reporting import report_downloads
from ui.safe import Markup, esc, md
from ui.state import current, data_banner
from ui.tables import show_table

st.title("Pooled effects")
data_banner()
ds = current()
df = ds["df"]
pooling_panel(df)
options = option_panel(df)
persist.url_params("small_k", persist.SMALL_K)  # the prior scale of τ and the one-stage switch
preset_control()  # "Reproduce a paper" here too, not only on the Lagged effects page (issue 23 #17)
st.caption(md(
    "Two-stage individual participant data meta-analysis: the within-patient coefficient of each study "
    "(Lagged effects page) pooled with a random-effects model, τ² by {method}, {test} (METHODS [§6]({link})).",
    method=options.pooling_method, test=meta.TEST_NAMES.get(options.test, options.test),
    link=Markup(LINKS["stage2"])))
res = compute.two_stage_or_stop(df, options, "Fitting the study models and pooling…")

# ---- term picker: any stage-1 term pooled on its own (the sections below concern the within effect)
terms = list(dict.fromkeys(t for d in options.directions for t in res.terms(d)))
term = st.selectbox("Pooled term", terms, index=terms.index("within") if "within" in terms else 0,
                    format_func=lambda t: plots_lagged.term_label(t, lag=options.lag), key="pooled_term",
                    help="Every coefficient of the study models can be pooled: within, between, prior outcome, "
                         f"each interaction and covariate (METHODS [§6]({LINKS['stage2']})).")
if term != "within":
    for d in options.directions:
        m = res.pooled_terms.get((d, term))
        for note in res.pooled_term_messages.get((d, term), ()):
            st.info(esc(note, limit=None))
        if m is None:
            continue
        label = plots_lagged.term_label(term, d, options.lag)
        show_figure(plots_meta.forest_figure(m, title=html.escape(f"{DIRECTIONS[d]}: {label}"),
                                           xlabel=html.escape(label)),
                    f"forest_{d}_term", key=f"pooled_term_forest_{d}")
        st.markdown(md("**{d}, {label}.** {s}", d=DIRECTIONS[d], label=label, s=m.summary()))
        st.caption(esc(plots_lagged.term_reading(term, d, options.lag), limit=None))
        if term.startswith("interaction") or term.startswith("within × "):
            st.caption("Within-study interaction: each study estimated it with the moderator centred in that "
                       "study, so pooling is free of ecological bias. The across-study part is in 'More "
                       "analyses → One-stage vs two-stage' (METHODS §6b).")
    st.divider()
    st.caption("Below: the within-patient effect, pooled.")

pooled = {d: res.pooled[d] for d in options.directions if d in res.pooled}
if not pooled:
    st.warning("No study could be fitted, so there is nothing to pool. See the Lagged effects page for reasons.")
    st.stop()

effect = res.per_study["effect"].iloc[0] if len(res.per_study) else "within-patient"
titles, xlabel = compute.pooled_forest_inputs(res, options)
fig = compute.pooled_forest(df, options, titles, xlabel)
show_figure(fig, "forest_plot", key="pooled_forest")

for d, m in pooled.items():
    st.markdown(f"**{DIRECTIONS[d]}.** {esc(m.summary(), None)}")
    few_studies.small_k_warning(m, DIRECTIONS[d])
    if m.k >= 1:
        st.caption(lagged_effect_sentence(m.estimate, m.ci_low, m.ci_high, d, options.lag, options.standardize,
                                          effect, level=m.level))
shown_table, summary_table = compute.pooled_tables(df, options, DIRECTIONS)
show_table(shown_table, "pooled_estimates", key="pooled_dl", csv=summary_table, title="Pooled estimates")

SECTIONS = ["One-stage vs two-stage", "Few studies: Bayesian & coverage", "Leave-one-out", "Funnel & Egger",
            "Meta-regression", "Centering multiverse", "Estimator comparison", "Estimator check", "Report & script"]


@st.fragment
def more_analyses():
    """The chosen extra analysis. A fragment: choosing a section or a moderator reruns only this part, not
    the forest plot and tables above (issue 24)."""
    # Only the chosen section is computed and drawn, so changing an option redraws the forest plot and at most
    # one section, not five.
    section = st.segmented_control(
        "More analyses (choose one)", SECTIONS, default=None, key="pooled_section",
        help="Sensitivity analyses, publication-bias checks, moderators, the centering multiverse and the report / "
             "reproduction script. Early alliance → outcome (METHODS §7) is on the Lagged effects page.",
    )
    if section is None:
        st.caption("Choose an analysis above: leave-one-out, funnel plot and Egger's test, meta-regression, the "
                   "centering multiverse, or the downloadable report and script.")

    if section == "One-stage vs two-stage":
        few_studies.one_stage_section(df, options, res, DIRECTIONS, xlabel)
    elif section == "Few studies: Bayesian & coverage":
        few_studies.small_k_section(pooled, options, DIRECTIONS)
    elif section == "Leave-one-out":
        st.caption("Each row: the pooled estimate when that study is left out. A study that moves the estimate a lot "
                   "deserves a closer look.")
        for d, m in pooled.items():
            if m.k < 3:
                st.info(f"{DIRECTIONS[d]}: leave-one-out needs at least 3 studies (k = {m.k}).")
                continue
            loo = compute.leave_one_out(m.yi, m.vi, tuple(m.labels), options.pooling_method, options.test)
            show_figure(plots_meta.leave_one_out_figure(loo, title=f"Leave-one-out: {DIRECTIONS[d]}"),
                        f"leave_one_out_{d}", key=f"loo_{d}")
            table_download(loo, f"leave_one_out_{d}", key=f"loo_dl_{d}")

    elif section == "Funnel & Egger":
        st.caption("Small studies with extreme effects make the funnel asymmetric. Egger's regression test "
                   "(metafor `regtest`, predictor = SE) checks for that asymmetry; with fewer than 10 studies it has "
                   "little power.")
        for d, m in pooled.items():
            if m.k < 3:
                st.info(f"{DIRECTIONS[d]}: a funnel plot and Egger's test need at least 3 studies (k = {m.k}).")
                continue
            show_figure(plots_meta.funnel_figure(m.yi, m.vi, m, xlabel=xlabel, title=f"Funnel plot: {DIRECTIONS[d]}",
                                               labels=list(m.labels)), f"funnel_{d}", key=f"funnel_{d}")
            eg = compute.egger(m.yi, m.vi, options.pooling_method, options.test)
            st.write(esc(eg.summary(), limit=None))

    elif section == "Meta-regression":
        mods = compute.study_level_columns(df)
        if df["study"].nunique() < 3:
            st.info("Meta-regression needs at least 3 studies.")
        elif not mods:
            st.info("No study-level columns in the data. Columns that are constant within each study (e.g. setting, "
                    "country, mean age) can be used as moderators.")
        else:
            chosen = st.multiselect("Study-level moderators", mods, default=mods[:1], key="pooled_mods")
            if chosen:
                study_vals = df.groupby("study", observed=True)[chosen].first()
                for d, m in pooled.items():
                    M = study_vals.reindex(list(m.labels)).reset_index(drop=True)
                    try:
                        mr = compute.meta_regression(m.yi, m.vi, M, options.pooling_method, options.test,
                                                     tuple(m.labels))
                    except ValueError as e:
                        st.error(f"{DIRECTIONS[d]}: {esc(e, None)}")
                        continue
                    st.markdown(f"**{DIRECTIONS[d]}.** {esc(mr.summary(), None)}")
                    show_table(mr.display_frame(), f"meta_regression_{d}", key=f"mr_dl_{d}", csv=mr.coefficients,
                               title=f"Meta-regression: {DIRECTIONS[d]}")

    elif section == "Centering multiverse":
        st.caption("Does the conclusion depend on centering? The same model under every centering, with and without a "
                   "fixed time trend. Falkenström et al. advise reporting the non-detrended estimate and using "
                   "detrending as a sensitivity analysis.")
        with st.spinner("Fitting every centering…"):
            mv = compute.multiverse(df, options)
        for d in pooled:
            show_figure(plots_lagged.multiverse_figure(mv, d), f"multiverse_{d}", key=f"mv_{d}")
        pooled_rows = mv[mv["row"] == "pooled"]
        show_table(pooled_rows, "centering_multiverse", key="mv_dl", csv=mv, title="Centering multiverse (pooled)")

    elif section == "Estimator comparison":
        comparison_section(df, options, "pooled")

    elif section == "Estimator check":
        check_section(df, options, "pooled")

    elif section == "Report & script":
        report_downloads(ds, options, res, fig, xlabel)


more_analyses()
