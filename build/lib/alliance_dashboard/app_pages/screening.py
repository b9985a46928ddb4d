"""Screening page: check one study (uploaded, or from the loaded collection) and
place its lagged coefficients beside the collection or a typed-in reference."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

from analysis import data as adata
from analysis import lagged, screening
from analysis.interpret import lagged_effect_sentence
from analysis.plots_screening import screening_forest_figure
from ui import compute, persist
from ui import mapping as umap
from ui.downloads import show_figure, table_download
from ui.options import CENTERING, DIRECTIONS, LINKS, option_panel, pooling_panel
from ui.safe import Markup, esc, esc_frame, md
from ui.state import current, data_banner
from ui.tables import show_table

STORE = "scr_store"  # plain dict: the uploaded file survives switching pages (widget values: ui.persist)
MARK = {"pass": "✓\u00a0pass", "caution": "⚠\u00a0caution", "fail": "✗\u00a0fail"}
REF_FIELDS = {"estimate": "Estimate", "ci_low": "CI lower", "ci_high": "CI upper",
              "pi_low": "PI lower", "pi_high": "PI upper"}
FIT_STATUS = {"ok": "ok", "warning": "ok (see notes)", "failed": "not fitted"}
SOURCES = {"upload": "A new study (upload a file)", "collection": "A study of the loaded collection"}
REF_MODES = {"collection": "The loaded collection", "manual": "A reference effect typed in by hand"}
#: The page's options in the URL (ui/persist.py): what is screened and what it is compared with, never a
#: study name, a file or typed-in numbers.
URL = {"screen": persist.Param("scr_source", "choice", tuple(SOURCES)),
       "compare": persist.Param("scr_ref_mode", "choice", tuple(REF_MODES))}

def _store() -> dict:
    return st.session_state.setdefault(STORE, {})


def _scr_key(name: str):
    """Widget keys of the mapping form for this page: ``scr_{kind}_{field}_{file name}``, persisted."""
    return lambda kind, default, options=None, field="": persist.widget(
        f"scr_{kind}_{field + '_' if field else ''}{name}", default, options)


# --------------------------------------------------------------------------- the study to screen


def _from_upload():
    """Upload + column mapping (as on the Data page). Returns (canonical study data, label) or None."""
    file = umap.kept_upload(_store(), "Data file of the new study", key="scr_upload", forget_key="scr_forget")
    if file is None:
        st.info("Upload the new study's data file above, or choose **A study of the loaded collection** to try the "
                "page without a file.")
        st.download_button("Download a template CSV", data=adata.template_csv().encode("utf-8"),
                           file_name="alliance_template.csv", mime="text/csv", on_click="ignore", key="scr_template")
        return None
    name, content = file
    store = _store()
    with st.expander(f"Columns of {esc(name)}", expanded=store.get(f"unmapped_{name}", True)):
        choice = umap.form(name, content, _scr_key(name))
    if choice is None:
        return None
    store[f"unmapped_{name}"] = bool(choice.missing)
    if choice.missing:
        st.warning(md("Choose the column for {cols} in the box above.", cols=", ".join(choice.missing)))
        return None
    st.caption(md("Columns: {cols} (open the box above to change them).", cols=umap.summary(choice)))
    try:
        with st.spinner("Reading the whole file…"):
            canon = umap.canonical(content, choice)
    except adata.DataError as e:
        st.error(f"{esc(name)}: {esc(e, limit=800)} Your column choices are kept; change them in the box above.")
        return None
    if canon.attrs.get("symptoms_flipped"):
        st.caption("The symptom scale was flipped so that higher = more severe.")
    studies = list(pd.unique(canon["study"].astype(str)))
    if len(studies) > 1:
        pick = st.selectbox(f"{esc(name)} holds {len(studies)} studies; screen", studies,
                            key=persist.widget(f"scr_filestudy_{name}", studies[0], studies))
        canon = canon[canon["study"].astype(str) == pick].reset_index(drop=True)
    return canon, str(canon["study"].iloc[0]) if len(canon) else choice.label


def _from_collection(coll: pd.DataFrame):
    studies = list(pd.unique(coll["study"].astype(str)))
    pick = st.selectbox("Study of the loaded collection", studies,
                        key=persist.widget("scr_coll_study", studies[0], studies),
                        help="The study is compared with the pooled estimate of the *other* studies, so that it is "
                             "not compared with itself.")
    return coll[coll["study"].astype(str) == pick].reset_index(drop=True), pick


# --------------------------------------------------------------------------- reference


def _manual_references(dirs) -> dict:
    st.caption("For example a published pooled estimate of the same within-patient lagged effect, in the same units "
               "as the coefficients here (SD units when standardization is on). Leave an interval empty if it was "
               "not reported.")
    refs = {}
    for d in dirs:
        st.markdown(f"**{DIRECTIONS[d]}**")
        cols = st.columns(5)
        vals = {}
        for c, (f, lab) in zip(cols, REF_FIELDS.items()):
            vals[f] = c.number_input(lab, value=None, step=0.01, format="%.3f", placeholder="—",
                                     key=persist.widget(f"scr_ref_{d}_{f}", None))
        if vals["estimate"] is None and all(v is None for v in vals.values()):
            st.caption("Type at least the estimate to compare with.")
            refs[d] = None
            continue
        try:
            refs[d] = screening.manual_reference(**vals)
        except ValueError as e:
            st.error(f"{DIRECTIONS[d]}: {esc(e, limit=None)}")
            refs[d] = None
    return refs


# --------------------------------------------------------------------------- page


def main() -> None:
    st.title("Screening")
    persist.url_params("screening", URL)
    st.caption(
        "Check a study before it joins the meta-analysis: a data-quality checklist with a verdict, its lagged "
        "coefficients under the model options in the sidebar, and where they fall relative to the loaded collection "
        "or a reference effect you type in."
    )
    ds = current()
    data_banner()
    coll = ds["df"]
    pooling_panel(coll)
    options = option_panel(coll)
    if not options.directions:
        st.stop()
    dirs = list(options.directions)

    source = st.radio("Study to screen", list(SOURCES), format_func=SOURCES.get, horizontal=True,
                      key=persist.widget("scr_source", "upload", list(SOURCES)))
    picked = _from_upload() if source == "upload" else _from_collection(coll)
    if picked is None:
        return
    study_df, label = picked
    exclude = label if source == "collection" else None

    window = f"sessions {options.sessions[0]}–{options.sessions[1]}" if options.sessions else "all sessions"
    st.caption(md(
        "Model options from the sidebar (the same as on the Lagged and Pooled pages): {centering} centering · "
        "lag {lag} · {window} · {scale}.", centering=CENTERING[options.centering].lower(), lag=options.lag,
        window=window, scale="standardized within study" if options.standardize else "raw scores"))
    if source == "upload" and label in set(coll["study"].astype(str)):
        st.info(f"The loaded collection already has a study called **{esc(label)}**. If it is the same study, it is "
                "compared with a pooled estimate that contains it; choose 'A study of the loaded collection' instead.")

    try:
        with st.spinner("Checking the study and fitting its models…"):
            fits, report, fit_error = compute.screen(study_df, options)
    except ValueError as e:
        st.error(f"The study could not be screened: {esc(e, limit=800)}")
        return

    # ---- verdict and checklist
    st.header(f"Checklist: {esc(label)}")
    box = {"usable": st.success, "usable with cautions": st.warning, "not usable": st.error}[report.verdict.level]
    box(f"**Verdict:** {report.verdict.text}")
    if fit_error:
        st.error(f"The lagged model could not be run: {esc(fit_error, limit=600)}")
    table = report.to_frame().rename(columns={"check": "Check", "result": "Result", "mark": "Mark",
                                              "reason": "Why"})
    table["Mark"] = table["Mark"].map(MARK)
    table = table[["Check", "Mark", "Result", "Why"]]
    st.table(esc_frame(table.set_index("Check")))
    table_download(report.to_frame(), f"screening_checklist_{label}", key="scr_dl_checklist",
                   label="Download the checklist (CSV)")
    with st.expander("How the marks are decided"):
        st.markdown(Markup("\n".join(md("- {line}", line=line) for line in screening.THRESHOLDS.describe())))
        st.caption("The checks use the study's rows inside the analysis window and the lag and pairing of the "
                   f"option panel. ICC: intercept-only random-intercept model (METHODS [§5]({LINKS['stage1']})).")

    # ---- coefficients
    st.header("Lagged coefficients")
    effects = {d: screening.effect_from_fit(fits.get(d)) for d in dirs}
    rows = []
    for d in dirs:
        f = fits.get(d)
        if f is None:
            continue
        c = f.coef("within") if "within" in f.terms else {}
        rows.append({"Direction": DIRECTIONS[d], "Estimate": c.get("estimate", math.nan),
                     "SE": c.get("se", math.nan), "CI low": c.get("ci_low", math.nan),
                     "CI high": c.get("ci_high", math.nan), "p": c.get("pvalue", math.nan),
                     "N patients": f.n_patients, "N pairs": f.n_pairs, "Fit": FIT_STATUS.get(f.status, f.status)})
    if rows:
        coef = pd.DataFrame(rows)
        show_table(coef, f"screening_coefficients_{label}", key="scr_dl_coef", title="Lagged coefficients")
        for d in dirs:
            e, f = effects[d], fits.get(d)
            if e is not None:
                st.caption(f"**{DIRECTIONS[d]}.** " + lagged_effect_sentence(
                    e.estimate, e.ci_low, e.ci_high, d, options.lag, options.standardize, f.effect))
            elif f is not None:
                st.warning(md("{d}: {m}", d=DIRECTIONS[d], m=esc(" ".join(f.messages[:1]), limit=600) or "not fitted."))
        notes = [(d, m) for d in dirs if d in fits for m in fits[d].messages]
        if notes:
            with st.expander(f"Model notes ({len(notes)})"):
                st.markdown("\n".join(f"- *{DIRECTIONS[d]}:* {esc(m, limit=600)}" for d, m in notes))
    if not options.standardize:
        st.warning("Standardization is off: the coefficients are in raw units and can be compared with other studies "
                   "only if all used the same instruments (option panel → More options).")

    # ---- reference
    st.header("Where the study falls")
    collection_refs, k_note = {}, ""
    try:
        with st.spinner("Fitting the collection's studies and pooling…"):
            res = compute.two_stage(coll, options)
    except ValueError as e:
        res = None
        k_note = md("The collection's models could not be run with these options: {e}", e=esc(e, limit=800))
    if res is not None:
        for d in dirs:
            collection_refs[d] = compute.collection_reference(coll, options, d, exclude)
    usable = {d: r for d, r in collection_refs.items() if r is not None}
    if res is not None and not usable:
        k_all = max((m.k for m in res.pooled.values()), default=0)
        if exclude and k_all <= 1:
            k_note = md("The loaded collection holds only {s}, so there are no other studies to pool (k = 1) "
                        "and no prediction interval to compare with.", s=esc(label))
        elif exclude:
            k_note = md("Besides {s}, the loaded collection has only {k} study that could be fitted; at "
                        "least 2 are needed for a pooled estimate and a prediction interval.", s=esc(label), k=k_all - 1)
        else:
            k_note = (f"The loaded collection has {k_all} {'study' if k_all == 1 else 'studies'} that could be "
                      "fitted; at least 2 are needed for a pooled estimate and a prediction interval.")
    if usable:
        ks = sorted({r.k for r in usable.values()})
        mode = st.radio("Compare with", list(REF_MODES), horizontal=True,
                        key=persist.widget("scr_ref_mode", "collection", list(REF_MODES)),
                        format_func=lambda m: REF_MODES[m] + (f" (k = {'/'.join(map(str, ks))} studies"
                                                              f"{', without the screened study' if exclude else ''})"
                                                              if m == "collection" else ""))
    else:
        st.info(md("{note} Type in a reference effect instead, e.g. a published pooled estimate.", note=k_note))
        mode = "manual"
    refs = _manual_references(dirs) if mode == "manual" else {d: collection_refs.get(d) for d in dirs}

    effect = next((fits[d].effect for d in dirs if d in fits), lagged.effect_label(options))
    xlabel = ("Within-patient lagged coefficient" if effect == "within-patient" else "Total lagged coefficient") + (
        " (SD units)" if options.standardize else " (raw units)")
    fig = screening_forest_figure(effects, refs, titles={d: DIRECTIONS[d] for d in dirs}, xlabel=xlabel,
                           new_label=f"Screened: {label}")
    show_figure(fig, f"screening_{label}", key="scr_forest")
    for d in dirs:
        pl = screening.place(effects[d], refs.get(d))
        st.markdown(f"**{DIRECTIONS[d]}.** {esc(pl.sentence, limit=None)}")
    if mode == "collection" and exclude:
        st.caption(f"The collection was re-pooled without {esc(label)} (same τ² estimator and test), so the study is "
                   "compared with the other studies only.")


main()
