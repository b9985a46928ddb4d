"""Report and reproduction-script downloads for the current two-stage analysis."""

from __future__ import annotations

import html

import pandas as pd
import streamlit as st

from analysis import data as adata
from analysis import lagged, meta, plots_decomposition, plots_lagged, plots_meta
from analysis.export import csv_bytes
from analysis.report import html_report, r_script, reproduction_script
from ui import compute
from ui.bundle import BUNDLE_NAME, bundle_bytes
from ui.options import DIRECTIONS
from ui.r_downloads import kept_growth
from ui.safe import esc, safe_figure

DATA_NAME = "analysis_data.csv"


def script_text(options) -> str:
    """The reproduction script offered for download (reads ``analysis_data.csv``)."""
    return reproduction_script(DATA_NAME, options.to_dict())


def session_choices(ds: dict) -> dict:
    """What the report, figure and bundle downloads need from the session, read during the script run.

    Streamlit runs a download button's data callable on a worker thread after the run, without the session's
    script-run context: ``st.session_state`` read there logs "missing ScriptRunContext!" (about 25 lines per
    bundle, issue 23 #12). So the callables get this snapshot and never touch the session.
    """
    from ui.bundle import page_options
    from ui.r_downloads import bundle_extras

    ss, df = st.session_state, ds["df"]
    key = compute.data_key(df)
    early = None
    if ss.get("early_window") is not None:
        early = {"early_window": tuple(ss["early_window"]), "outcome": ss.get("early_outcome", "last")}
        if early["outcome"] == "session":
            early["outcome_session"] = ss.get("early_outcome_session")
        elif early["outcome"] == "column":
            early["outcome_column"] = ss.get("early_outcome_column")
    return {"key": key, "pooled_term": ss.get("pooled_term"),
            "decomposition": (ss.get("dec_study"), ss.get("dec_direction")),
            "view": tuple(ss.get(k) for k in ("lag_view_study", "lag_view_dir", "lag_view_patient")),
            "early": early, "growth": kept_growth(key), "pages": page_options(), "extras": bundle_extras(df, key)}


def _report_html(ds: dict, options, res, fig, key: str | None = None) -> bytes:
    df = ds["df"]
    sections = [("Pooled estimates", [fig, *[f"{DIRECTIONS.get(d, d)}: {m.summary()}" for d, m in res.pooled.items()],
                                      meta.results_table(res.pooled, DIRECTIONS) if res.pooled else pd.DataFrame()]),
                ("Per-study coefficients (all terms)", [res.per_study])]
    sections.insert(1, ("One-stage model (METHODS §6b)", _one_stage_items(df, options, res, key)))
    summary = adata.summarize(df).to_frame()
    if "therapist_alliance" not in df.columns:  # an absent optional column is absent, not "100% missing"
        summary = summary.drop(columns=["pct_missing_therapist_alliance"], errors="ignore")
    text = html_report(f"Alliance ⇄ symptoms: {ds['name']}", data_summary=summary,
                       options=options, sections=sections, messages=[*ds.get("notes", []), *res.messages])
    return text.encode("utf-8")


def _one_stage_items(df, options, res, key: str | None = None) -> list:
    """The one-stage model beside the two-stage estimates (table, summaries, agreement), or why not."""
    from analysis import onestage

    try:
        one = compute.one_stage(df, options, key)
    except ValueError as e:
        return [f"The one-stage model could not be fitted: {e}"]
    items = [*one.messages]
    if one.fits:
        # each sentence names its direction (two unlabelled paragraphs read as a contradiction or a repeat)
        items += [onestage.compare(res, one), *[f.summary() for f in one.fits.values()],
                  *[f"{DIRECTIONS.get(d, d)}: {onestage.agreement_sentence(res, one, d)}" for d in one.fits]]
        inter = one.interactions()
        if len(inter):
            items += ["Interactions with the within effect, within-study and across-study parts (deft):", inter]
    return items


def report_html(ds: dict, options, res, fig) -> bytes:
    """The HTML report offered for download."""
    return _report_html(ds, options, res, fig)


def analysis_figures(ds: dict, options, res, forest, xlabel: str = "Within-patient lagged coefficient",
                     choices: dict | None = None) -> dict:
    """Every figure the two-stage analysis shows (Pooled effects and Lagged effects pages, with the study,
    direction and patient chosen there), for the bundle; built and rendered only when the bundle is
    downloaded. Figures come from cached results (the multiverse is computed if it was not yet).
    ``choices``: :func:`session_choices` (read from the session when not given)."""
    df = ds["df"]
    c = session_choices(ds) if choices is None else choices
    key = c["key"]
    figs = {"forest_plot": forest}
    for d in options.directions:
        figs[f"study_coefficients_{d}"] = plots_lagged.study_coefficients_figure(res, d)
        m = res.pooled.get(d)
        if m is not None and m.k >= 3:
            loo = compute.leave_one_out(m.yi, m.vi, tuple(m.labels), options.pooling_method, options.test)
            figs[f"leave_one_out_{d}"] = plots_meta.leave_one_out_figure(loo, title=f"Leave-one-out: {DIRECTIONS[d]}")
            figs[f"funnel_{d}"] = plots_meta.funnel_figure(m.yi, m.vi, m, xlabel=xlabel, labels=list(m.labels),
                                                           title=f"Funnel plot: {DIRECTIONS[d]}")
    if res.pooled:
        mv = compute.multiverse(df, options, key)
        for d in res.pooled:
            figs[f"multiverse_{d}"] = plots_lagged.multiverse_figure(mv, d)
    term = c["pooled_term"]
    for d in options.directions if term not in (None, "within") else ():
        m = res.pooled_terms.get((d, term))
        if m is not None:
            label = plots_lagged.term_label(term, d, options.lag)
            figs[f"forest_{d}_{term}"] = plots_meta.forest_figure(m, title=html.escape(f"{DIRECTIONS[d]}: {label}"),
                                                                xlabel=html.escape(label))
    study, direction = c["decomposition"]
    if study is not None and direction is not None:
        try:
            dec = compute.decomposition(df, direction, options.lag, options.standardize, study, options.sessions,
                                        key=key)
        except ValueError:
            dec = None
        if dec is not None:
            figs[f"total_within_between_{direction}"] = plots_decomposition.trio_figure(dec)
            figs[f"person_means_{direction}"] = plots_decomposition.person_means_figure(dec)
    vs, vd, vp = c["view"]
    if vs is not None and vd in options.directions and vp is not None:
        try:
            view = lagged.patient_view(df[df["study"] == vs], options, vd, vp, vs)
        except ValueError:
            view = None
        if view is not None:
            figs["patient_series"] = plots_lagged.patient_series_figure(view)
    if c["early"] is not None:  # the early-alliance section of the Lagged effects page
        try:
            m = compute.early_outcome(df, options, **c["early"], key=key).beta.pooled.get("early_alliance_to_outcome")
        except (ValueError, TypeError):
            m = None
        if m is not None and m.k >= 1:
            figs["early_alliance_partial_beta"] = plots_meta.forest_figure(
                m, title="Early alliance → outcome (partial β, baseline-adjusted)",
                xlabel="Standardized partial β (negative = lower outcome symptoms)")
    gr = c["growth"]
    if gr is not None and 2 in gr.models:
        from analysis import plots_convergence

        figs["symptom_growth_by_convergence"] = plots_convergence.symptom_growth_figure(gr, model=2)
    return {k: safe_figure(f) for k, f in figs.items()}


def report_downloads(ds: dict, options, res, fig, xlabel: str = "Within-patient lagged coefficient") -> None:
    st.markdown("**A self-contained HTML report** of this analysis: data summary, options, tables, figures and "
                "package versions. It opens offline.")
    c = session_choices(ds)  # read now: the callables below run after this run, off the script thread
    st.download_button("Download the HTML report", data=lambda: _report_html(ds, options, res, fig, c["key"]),
                       file_name="alliance_symptoms_report.html", mime="text/html", key="dl_report",
                       on_click="ignore")
    st.markdown(f"**Reproduce it in Python or R**: download the data ({DATA_NAME}) and a script into one folder. "
                "Python: install the dashboard's package once (`pip install` of the project folder), then run "
                "`python reproduce_analysis.py` from any folder. R (lme4 + metafor): run `Rscript reproduce_analysis.R` "
                "in that folder. Both print the same pooled estimates.")
    c1, c2, c3 = st.columns(3)
    c1.download_button("Download the data (CSV)", data=lambda: csv_bytes(ds["df"]),
                       file_name=DATA_NAME, mime="text/csv", key="dl_repro_data", on_click="ignore")
    c2.download_button("Download the script (.py)",
                       data=lambda: script_text(options).encode("utf-8"),
                       file_name="reproduce_analysis.py", mime="text/x-python", key="dl_repro_script",
                       on_click="ignore")
    try:
        r_text = r_script(DATA_NAME, options, data=ds["df"])
    except ValueError as e:
        c3.caption(esc(str(e)))
    else:
        c3.download_button("Download the R script (.R)", data=r_text.encode("utf-8"), file_name="reproduce_analysis.R",
                           mime="text/plain", key="dl_repro_r", on_click="ignore")
    st.markdown("**Reproducibility bundle** (zip): data, column mapping, every option, data fingerprint, package "
                "versions, seeds, both scripts (and the R scripts of the total/within/between models and of the "
                "convergence growth models when you looked at them), this report and every figure of the analysis "
                "(SVG; drawing them takes a few seconds). Load it on the Data page to get back exactly here.")
    st.download_button("Download the bundle (.zip)", key="dl_bundle", on_click="ignore", mime="application/zip",
                       file_name=BUNDLE_NAME,
                       data=lambda: bundle_bytes(ds, options, _report_html(ds, options, res, fig, c["key"]),
                                                 analysis_figures(ds, options, res, fig, xlabel, c),
                                                 pages=c["pages"], extras=c["extras"]))
