"""Data page: pick a demo or upload files, map columns, validate, summarise."""

from pathlib import Path

import pandas as pd
import streamlit as st

from analysis import data as adata
from analysis import plots_data
from ui import compute
from ui.bundle import bundle_upload
from ui.downloads import show_figure, table_download
from ui.state import DEMOS, current, load_demo, set_dataset

CANONICAL = {
    "study": "Study (optional: one file = one study)",
    "patient": "Patient id (required)",
    "session": "Session or week number (required)",
    "alliance": "Patient-rated alliance (required)",
    "symptoms": "Symptom score (required)",
    "therapist_alliance": "Therapist-rated alliance (optional)",
    "therapist": "Therapist id (optional)",
}
NONE = "— not in this file —"
FILE_TYPES = ["csv", "tsv", "txt", "xlsx", "xls", "sav", "dta", "parquet"]


@st.cache_data(show_spinner=False, max_entries=8)
def _summary_and_report(df: pd.DataFrame):
    return adata.summarize(df), adata.validate(df)


def _show_report(report, where=st) -> None:
    for issue in report.errors:
        where.error(issue.message)
    for issue in report.warnings:
        where.warning(issue.message)
    if report.ok and not report.warnings:
        where.success("No problems found.")


st.title("Data")
ds = current()

demo_tab, upload_tab = st.tabs(["Demo data", "Upload your files"])

with demo_tab:
    st.write("Simulated data sets whose true parameters are known (see `demo_data/README.md`).")
    names = list(DEMOS)
    choice = st.selectbox("Demo data set", names, index=names.index(ds["name"]) if ds["name"] in names else 0,
                          key="demo_choice")
    if st.button("Load this demo", key="load_demo"):
        set_dataset(load_demo(DEMOS[choice]), choice, "demo")
        st.rerun()

with upload_tab:
    st.write(
        "One row per patient × session (long format), or one column per session (wide: `wai_1 … wai_12`). "
        "Several files can be combined; each file is one study unless it has a study column."
    )
    st.download_button("Download a template CSV", data=adata.template_csv().encode("utf-8"),
                       file_name="alliance_template.csv", mime="text/csv", on_click="ignore")
    files = st.file_uploader("Data files", type=FILE_TYPES, accept_multiple_files=True, key="uploads")
    prepared: list[tuple[str, pd.DataFrame, dict, str, bool]] = []
    for i, f in enumerate(files or []):
        content = f.getvalue()
        with st.expander(f"{f.name}", expanded=True):
            sheet = None
            if f.name.lower().endswith((".xlsx", ".xls")):
                try:
                    sheets = compute.file_sheets(content, f.name)
                except adata.DataError as e:
                    st.error(f"{f.name}: {e}")
                    continue
                sheet = st.selectbox("Sheet", sheets, key=f"sheet_{i}_{f.name}")
            try:
                raw = compute.load_file(content, f.name, sheet)
            except adata.DataError as e:
                st.error(f"{f.name}: {e}")
                continue
            st.caption(f"{len(raw):,} rows × {raw.shape[1]} columns. First rows:")
            st.dataframe(raw.head(8), width="stretch")

            wide = adata.detect_wide(raw)
            if wide:
                reshape = st.checkbox(
                    "This file has one column per session: reshape to long", value=True, key=f"wide_{i}_{f.name}"
                )
                if reshape:
                    cols = list(raw.columns)
                    guess = adata.suggest_mapping(raw).get("patient")
                    id_col = st.selectbox("Patient id column", cols,
                                          index=cols.index(guess) if guess in cols else 0, key=f"wideid_{i}_{f.name}")
                    try:
                        raw = adata.wide_to_long(raw, id_col=id_col, stubs=wide)
                    except adata.DataError as e:
                        st.error(str(e))
                        continue
                    st.caption(f"Reshaped to {len(raw):,} rows.")

            suggestion = adata.suggest_mapping(raw)
            cols = [NONE] + [str(c) for c in raw.columns]
            mapping = {}
            mcols = st.columns(4)
            for j, (field, label) in enumerate(CANONICAL.items()):
                guess = suggestion.get(field)
                idx = cols.index(str(guess)) if guess is not None and str(guess) in cols else 0
                sel = mcols[j % 4].selectbox(label, cols, index=idx, key=f"map_{i}_{field}_{f.name}")
                mapping[field] = None if sel == NONE else sel
            default_label = Path(f.name).stem
            study_label = st.text_input(
                "Study label (used when no study column is mapped)", value=default_label, key=f"label_{i}_{f.name}"
            )
            hib = adata.suggest_higher_is_better(mapping["symptoms"], raw) if mapping["symptoms"] else None
            higher_better = st.checkbox(
                "Higher symptom scores mean *better* (e.g. ORS): flip so that higher = more severe",
                value=bool(hib), key=f"flip_{i}_{f.name}",
            )
            prepared.append((f.name, raw, mapping, study_label, higher_better))

    if prepared and st.button("Use these files", type="primary", key="use_files"):
        frames, notes, failed = [], [], []
        for name, raw, mapping, label, higher_better in prepared:
            try:
                canon = adata.to_canonical(raw, mapping, study=label or Path(name).stem,
                                           symptoms_higher_is_worse=not higher_better)
            except adata.DataError as e:
                failed.append(f"{name}: {e}")
                continue
            frames.append(canon)
            if canon.attrs.get("symptoms_flipped"):
                notes.append(f"{name}: symptom scale flipped so that higher = more severe.")
        for msg in failed:
            st.error(msg)
        if frames and not failed:
            try:
                combined = adata.combine(frames)
                report = adata.validate(combined)
            except adata.DataError as e:
                st.error(str(e))
            else:
                if report.ok:
                    label = ", ".join(n for n, *_ in prepared)
                    set_dataset(combined, f"Uploaded: {label}", "upload", notes,
                                mapping={n: m for n, _, m, *_ in prepared})  # kept for the bundle
                    st.session_state["upload_message"] = "Data loaded. The analysis pages now use it."
                    st.rerun()
                else:
                    st.error("The files were not loaded, because of these problems (your column choices are kept):")
                    _show_report(report)
        elif failed:
            st.info("Fix the problems above; your column choices are kept.")
    bundle_upload()

if msg := st.session_state.pop("upload_message", None):
    st.success(msg)

ds = current()
df = ds["df"]
st.header(f"Loaded: {ds['name']}")
summary, report = _summary_and_report(df)
with st.expander(
    f"Data check: {len(report.errors)} errors, {len(report.warnings)} warnings", expanded=bool(report.warnings)
):
    _show_report(report)
per_study = summary.to_frame()
st.subheader("Studies")
st.dataframe(per_study, width="stretch", hide_index=True)
table_download(per_study, "study_summary")
c1, c2 = st.columns(2)
with c1:
    show_figure(plots_data.patients_per_study_figure(df), "patients_per_study")
with c2:
    show_figure(plots_data.sessions_per_patient_figure(df), "sessions_per_patient")
show_figure(plots_data.missingness_figure(df), "observed_per_session")
with st.expander("Show the data (first 500 rows)"):
    st.dataframe(df.head(500), width="stretch", hide_index=True)
    table_download(df, "canonical_data", label="Download the whole data set (CSV)")
