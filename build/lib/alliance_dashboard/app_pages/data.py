"""Data page: pick a demo or upload files, map columns, validate, summarise."""

import weakref

import pandas as pd
import streamlit as st

from analysis import data as adata
from analysis import formatting as fmt
from ui import compute
from ui import mapping as umap
from ui.bundle import bundle_upload
from ui.downloads import show_figure, table_download
from ui.safe import esc, esc_frame, md
from ui.state import DEMOS, current, design_warnings, load_demo, set_dataset, upload_key


def _show_report(report, where=st, name: str | None = None) -> None:
    """Errors (block the load), warnings (change how results read), notes (routine information)."""
    for issue in report.errors:
        where.error(esc(issue.message, limit=1200))
    for issue in report.warnings:
        where.warning(esc(issue.message, limit=1200))
    for issue in report.notes:
        where.info(esc(issue.message, limit=1200))
    if report.ok and not report.warnings and name is not None:
        where.success(f"No problems found in {esc(name)}.")


def _retry_dropping_copies() -> None:
    st.session_state["_upload_drop_copies"] = True


def _missing_cell(pct, present: bool) -> str:
    """Share of rows without a value; an optional column that is absent (or never filled) says so."""
    if not present:
        return "no column"
    return "none recorded" if pct >= 100 else fmt.percent(pct / 100)


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
    files = st.file_uploader("Data files", type=umap.FILE_TYPES, accept_multiple_files=True, key=upload_key())
    prepared: list[tuple[bytes, umap.Choice]] = []
    for i, f in enumerate(files or []):
        with st.expander(esc(f.name), expanded=True):
            choice = umap.form(f.name, f.getvalue(), umap.plain_keys(str(i), f.name))
        if choice is not None:
            prepared.append((f.getvalue(), choice))

    drop_copies = bool(st.session_state.pop("_upload_drop_copies", False))  # "Drop the exact copies" clicked
    upload_failed = False
    if prepared and (st.button("Use these files", type="primary", key="use_files") or drop_copies):
        frames, notes, failed = [], [], []
        with st.spinner("Reading the whole files…"):
            for content, choice in prepared:
                try:
                    canon = umap.canonical(content, choice, cached=False)
                except adata.DataError as e:
                    failed.append(md("{name}: {e}", name=esc(choice.name), e=esc(e, limit=800)))
                    continue
                frames.append(canon)
                if canon.attrs.get("symptoms_flipped"):
                    notes.append(f"{choice.name}: symptom scale flipped so that higher = more severe.")
        for msg in failed:
            st.error(md("{m}", m=msg))
        if frames and not failed:
            try:
                combined = adata.combine(frames)
                frames.clear()  # (the per-file frames are not needed while the combined one is checked)
                canon = None
                if drop_copies:
                    combined, n_copies = adata.drop_exact_duplicates(combined)
                    if n_copies:
                        notes.append(f"{fmt.count(n_copies)} exact {'copy' if n_copies == 1 else 'copies'} of a row "
                                     f"{'was' if n_copies == 1 else 'were'} dropped.")
                report = adata.validate(combined)
            except adata.DataError as e:
                st.error(esc(e, limit=800))
            else:
                if report.ok:
                    label = ", ".join(c.name for _, c in prepared)
                    set_dataset(combined, f"Uploaded: {label}", "upload", notes,
                                mapping={c.name: c.mapping for _, c in prepared},  # kept for the bundle
                                report=report)
                    st.session_state["upload_message"] = "Data loaded. The analysis pages now use it."
                    st.rerun()
                else:
                    upload_failed = True
                    st.error("The files were not loaded, because of these problems (your column choices are kept):")
                    _show_report(report)
                    copies = next((i for i in report.errors if i.code == "exact_duplicate_rows"), None)
                    if copies is not None:
                        st.button(f"Drop the {fmt.count(len(copies.rows))} exact "
                                  f"{'copy' if len(copies.rows) == 1 else 'copies'} and load", type="primary",
                                  key="drop_copies", on_click=_retry_dropping_copies)
        elif failed:
            upload_failed = True
            st.info("Fix the problems above; your column choices are kept.")
    bundle_upload()

if msg := st.session_state.pop("upload_message", None):
    st.success(md("{m}", m=msg))
for note in st.session_state.pop("upload_notes", ()):
    st.warning(md("{m}", m=note))

ds = current()
df = ds["df"]
st.header(f"Loaded: {esc(ds['name'])}")
design_warnings(ds)
if upload_failed:
    st.caption("Your files were not loaded (see above); the analysis pages still use this data set.")
summary, report = compute.summary_and_report(compute.data_key(df), df, ds.get("report"))
with st.expander(
    f"Data check of {esc(ds['name'])}: {len(report.errors)} errors, {len(report.warnings)} warnings"
    + (f", {len(report.notes)} notes" if report.notes else ""),
    expanded=bool(report.warnings) and not upload_failed,
):
    _show_report(report, name=ds["name"])
per_study = summary.to_frame()
st.subheader("Studies")
# a static table (st.table): no data-grid bundle to load and draw in the browser for a few dozen rows
shown = pd.DataFrame({
    "Study": per_study["study"].astype(str),
    "Patients": per_study["n_patients"].map(fmt.count),
    "Session rows": per_study["n_rows"].map(fmt.count),
    "Sessions per patient: median (min–max)": [
        f"{fmt.num(m, 1)} ({fmt.count(lo)}–{fmt.count(hi)})"
        for m, lo, hi in per_study[["sessions_median", "sessions_min", "sessions_max"]].itertuples(index=False)],
    **{f"Missing {c.replace('_', ' ')}": [_missing_cell(v, c in df) for v in per_study[f"pct_missing_{c}"]]
       for c in ("alliance", "symptoms", "therapist_alliance")},
})
st.table(esc_frame(shown.set_index("Study")))  # study names are Markdown in st.table
table_download(per_study, "study_summary")
# A fresh browser waits mostly for the plotly bundle (4.7 MB of JavaScript to parse before the first chart;
# benchmarks/bench_data_page.py): the page opens with tables only, and draws the charts when asked.
if st.toggle("Show charts: observed values per session, patients per study, sessions per patient",
             key="data_charts"):
    key = compute.data_key(df)
    show_figure(compute.data_figure("missingness", key, df), "observed_per_session")
    c1, c2 = st.columns(2)
    with c1:
        show_figure(compute.data_figure("patients_per_study", key, df), "patients_per_study")
    with c2:
        show_figure(compute.data_figure("sessions_per_patient", key, df), "sessions_per_patient")
# a weak reference: the button's callable outlives this run, and must not keep a replaced data set alive
table_download(weakref.ref(df), "canonical_data", label="Download the whole data set (CSV)")
if st.toggle("Show the first 500 rows of the data", key="data_show_rows"):
    st.dataframe(df.head(500), width="stretch", hide_index=True)
