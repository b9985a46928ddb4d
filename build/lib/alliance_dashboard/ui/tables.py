"""Results tables: shown formatted (one rule, analysis.formatting), downloadable as CSV (raw numbers),
Word (.docx, APA style) and LaTeX (analysis.tables).

The frame itself keeps its numbers (sorting in the grid, the CSV, tests); what the reader sees is
formatted through a pandas Styler whose display text comes from :func:`analysis.formatting.cell`.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis import formatting as fmt
from analysis import tables
from ui.downloads import _slug, table_download


def styled(df: pd.DataFrame):
    """``df`` for ``st.dataframe``: numbers kept, shown as :func:`analysis.formatting.cell` writes them."""
    if df.columns.has_duplicates or not df.index.is_unique:
        return fmt.format_frame(df)
    return df.style.format({c: (lambda v, c=c: fmt.cell(v, c)) for c in df.columns})


def show_table(df: pd.DataFrame, name: str, key: str | None = None, title: str | None = None, note: str = "",
               manuscript: bool = True, csv: pd.DataFrame | None = None, **kw) -> None:
    """Show ``df`` formatted; ``key`` is the CSV button's key. Underneath, its downloads: CSV (raw numbers) and, for tables that go into
    manuscripts (``manuscript``), Word (APA table) and LaTeX with the same text as on screen. ``csv``: a
    fuller frame for the CSV (e.g. every column of the result), else ``df``."""
    kw.setdefault("width", "stretch")
    kw.setdefault("hide_index", True)
    st.dataframe(styled(df), **kw)
    csv_key = key or f"dl_csv_{_slug(name)}"  # (the CSV button keeps the key it had before Word and LaTeX)
    if not manuscript:
        table_download(df if csv is None else csv, name, key=csv_key)
        return
    c1, c2, c3 = st.columns(3)
    with c1:
        table_download(df if csv is None else csv, name, key=csv_key, label="CSV (raw numbers)")
    heading = title or name.replace("_", " ").capitalize()
    with c2:
        st.download_button("Word table (APA)", data=lambda: tables.docx_bytes(df, heading, note=note),
                           file_name=f"{_slug(name)}.docx", key=f"{csv_key}_docx", on_click="ignore",
                           mime="application/vnd.openxmlformats-officedocument.wordprocessingml.document")
    with c3:
        st.download_button("LaTeX table", data=lambda: tables.latex(df, heading, note=note).encode("utf-8"),
                           file_name=f"{_slug(name)}.tex", mime="text/x-tex", key=f"{csv_key}_tex",
                           on_click="ignore")
