"""Report and reproduction-script downloads for the current two-stage analysis."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis import data as adata
from analysis import meta
from analysis.export import csv_bytes
from analysis.report import html_report, r_script, reproduction_script
from ui.bundle import BUNDLE_NAME, bundle_bytes
from ui.options import DIRECTIONS
from ui.safe import esc

DATA_NAME = "analysis_data.csv"


def script_text(options) -> str:
    """The reproduction script offered for download (reads ``analysis_data.csv``)."""
    return reproduction_script(DATA_NAME, options.to_dict())


def _report_html(ds: dict, options, res, fig) -> bytes:
    df = ds["df"]
    sections = [("Pooled estimates", [fig, *[m.summary() for m in res.pooled.values()],
                                      meta.results_table(res.pooled, DIRECTIONS) if res.pooled else pd.DataFrame()]),
                ("Per-study coefficients (all terms)", [res.per_study])]
    text = html_report(f"Alliance ⇄ symptoms: {ds['name']}", data_summary=adata.summarize(df).to_frame(),
                       options=options, sections=sections, messages=[*ds.get("notes", []), *res.messages])
    return text.encode("utf-8")


def report_html(ds: dict, options, res, fig) -> bytes:
    """The HTML report offered for download."""
    return _report_html(ds, options, res, fig)


def report_downloads(ds: dict, options, res, fig) -> None:
    st.markdown("**A self-contained HTML report** of this analysis: data summary, options, tables, figures and "
                "package versions. It opens offline.")
    st.download_button("Download the HTML report", data=lambda: _report_html(ds, options, res, fig),
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
                "versions, seeds, both scripts, this report and the forest plot (SVG). Load it on the Data page to "
                "get back exactly here.")
    st.download_button("Download the bundle (.zip)", key="dl_bundle", on_click="ignore", mime="application/zip",
                       file_name=BUNDLE_NAME,
                       data=lambda: bundle_bytes(ds, options, _report_html(ds, options, res, fig), {"forest_plot": fig}))
