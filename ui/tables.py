"""Results tables: shown formatted (one rule, analysis.formatting), downloadable as CSV (raw numbers),
Word (.docx, APA style) and LaTeX (analysis.tables).

The frame itself keeps its numbers (sorting in the grid, the CSV, tests); what the reader sees is
formatted through a pandas Styler whose display text comes from :func:`analysis.formatting.cell`.
"""

from __future__ import annotations

import re
import weakref
from enum import Enum

import pandas as pd
import streamlit as st
from streamlit import dataframe_util
from streamlit.elements.lib import pandas_styler_utils as _styler_utils

from analysis import formatting as fmt
from analysis import tables
from ui.downloads import _slug, table_download


def styled(df: pd.DataFrame, digits: int = 2):
    """``df`` for ``st.dataframe``: numbers kept, shown as :func:`analysis.formatting.cell` writes them.

    A pandas Styler whose display text is computed here, column by column (:func:`analysis.formatting.
    column_cells`), and handed to Streamlit as the translated cell list it reads (``_translate``'s ``body``),
    with the display frame already in Arrow bytes (:func:`_marshall_display_values`). Streamlit's route through
    the Styler's HTML machinery and a cell-by-cell copy cost ~60 ms for a 170-row table on every run of every
    session; this route ~5 ms, with the same display values (issue 24; a test compares them with Streamlit's
    own). A frame shown again on a later run (a cached result's table: the same object) is not formatted
    again (:func:`_prepared`)."""
    if df.columns.has_duplicates or not df.index.is_unique:
        return fmt.format_frame(df, digits)
    styler = df.style
    body, display_bytes = _prepared(df, digits)
    styler._compute = lambda: styler  # (nothing to compute: no CSS styles)
    styler._translate = lambda *_a, **_k: {"body": body, "display_bytes": display_bytes}
    return styler


#: (id of a frame, digits) → (a weak reference to the frame, its cell list, its display frame's Arrow bytes)
_PREPARED: dict = {}


def _prepared(df: pd.DataFrame, digits: int) -> tuple[list, bytes]:
    """The Styler cell list (``body``) of ``df`` and its display frame as Arrow bytes, made once per frame
    object: a table that a cached result holds (``ui.compute``'s shared objects) is the same object on every
    run and in every session, so a class's reruns do not format it again (issue 24). Kept while the frame
    lives (a weak reference; a frame made on one run only is dropped with it). A cached frame is never
    changed in place (ui/compute.py), so its text cannot go stale."""
    key = (id(df), digits)
    hit = _PREPARED.get(key)
    if hit is not None and hit[0]() is df:
        return hit[1], hit[2]
    columns = fmt.frame_cells(df, digits)  # (the one rule, as in the Word and LaTeX tables)
    body = [[{"id": f"row{i}_col{j}", "display_value": col[i]} for j, col in enumerate(columns)]
            for i in range(len(df))]
    display_bytes = dataframe_util.convert_pandas_df_to_arrow_bytes(_display_frame(df, {"body": body}))
    _PREPARED[key] = (weakref.ref(df, lambda _ref, key=key: _PREPARED.pop(key, None)), body, display_bytes)
    return body, display_bytes


def _marshall_display_values(proto, df: pd.DataFrame, styles) -> None:
    """Streamlit's ``pandas_styler_utils._marshall_display_values``: the display frame's Arrow bytes into the
    proto. A :func:`styled` table brings them made (:func:`_prepared`); any other Styler goes Streamlit's way."""
    if "display_bytes" in styles:
        proto.styler.display_values = styles["display_bytes"]
    else:
        _streamlit_marshall_display_values(proto, df, styles)


def _display_frame(df: pd.DataFrame, styles) -> pd.DataFrame:
    """Streamlit's ``pandas_styler_utils._use_display_values`` (the frame of display strings it sends beside
    the numbers), built in one go: a column whose every cell has a display value is taken as it is, the others
    as ``astype(str)`` with their cells replaced. Same result as Streamlit's (tests/test_tables_fast.py), without
    its per-column ``iloc`` assignment into Arrow strings (~20 ms a table under pandas 3)."""
    updates: dict[int, dict[int, str]] = {}
    for row in styles.get("body", []):
        for c in row:
            m = _CELL_ID.match(c.get("id") or "")
            if m:
                v = c.get("display_value")
                updates.setdefault(int(m.group(2)), {})[int(m.group(1))] = str(getattr(v, "value", v)) \
                    if isinstance(v, Enum) else str(v)
    n = len(df)
    data = {}
    for j in range(df.shape[1]):
        up = updates.get(j, {})
        if len(up) == n:
            data[j] = [up[i] for i in range(n)]
        else:
            base = df.iloc[:, j].astype(str).tolist()
            for i, v in up.items():
                base[i] = v
            data[j] = base
    out = pd.DataFrame(data, index=df.index, dtype=str)
    out.columns = df.columns
    return out


_CELL_ID = re.compile(r"row(\d+)_col(\d+)")
_streamlit_use_display_values = _styler_utils._use_display_values
_styler_utils._use_display_values = _display_frame
_streamlit_marshall_display_values = _styler_utils._marshall_display_values
_styler_utils._marshall_display_values = _marshall_display_values


def headers(df: pd.DataFrame, names: dict | None = None) -> dict:
    """``column_config`` that shows each raw result column under the reader's name (``names``, a result's own
    headings such as :func:`analysis.lagged.row_names`; else :func:`analysis.formatting.column_name`: "CI low",
    not "ci_low"). Only the heading changes: the data, the CSV and the tests keep the raw names."""
    if df.columns.has_duplicates:
        return {}
    names = names or {}
    out = {}
    for c in df.columns:
        label = names.get(c) or fmt.column_name(c)
        if label != str(c):
            out[c] = st.column_config.Column(label)
    return out


def dataframe(df: pd.DataFrame, names: dict | None = None, digits: int = 2, **kw) -> None:
    """``st.dataframe`` of a result frame: cells by the one formatting rule (:func:`styled`), headings by the
    reader's names (:func:`headers`, with a result's own ``names``; a page's own ``column_config`` wins), full
    width, no index. ``digits``: decimals of numbers (3 where two results are compared side by side)."""
    kw.setdefault("width", "stretch")
    kw.setdefault("hide_index", True)
    kw["column_config"] = headers(df, names) | dict(kw.get("column_config") or {})
    st.dataframe(styled(df, digits), **kw)


def show_table(df: pd.DataFrame, name: str, key: str | None = None, title: str | None = None, note: str = "",
               manuscript: bool = True, csv: pd.DataFrame | None = None, **kw) -> None:
    """Show ``df`` formatted; ``key`` is the CSV button's key. Underneath, its downloads: CSV (raw numbers) and, for tables that go into
    manuscripts (``manuscript``), Word (APA table) and LaTeX with the same text as on screen. ``csv``: a
    fuller frame for the CSV (e.g. every column of the result), else ``df``."""
    dataframe(df, **kw)
    csv_key = key or f"dl_csv_{_slug(name)}"  # (the CSV button keeps the key it had before Word and LaTeX)
    if not manuscript:
        table_download(df if csv is None else csv, name, key=csv_key)
        return
    heading = title or name.replace("_", " ").capitalize()
    with st.container(horizontal=True):  # (one row: one block, not a block per column)
        table_download(df if csv is None else csv, name, key=csv_key, label="CSV (raw numbers)")
        st.download_button("Word table (APA)", data=lambda: tables.docx_bytes(df, heading, note=note),
                           file_name=f"{_slug(name)}.docx", key=f"{csv_key}_docx", on_click="ignore",
                           mime="application/vnd.openxmlformats-officedocument.wordprocessingml.document")
        st.download_button("LaTeX table", data=lambda: tables.latex(df, heading, note=note).encode("utf-8"),
                           file_name=f"{_slug(name)}.tex", mime="text/x-tex", key=f"{csv_key}_tex",
                           on_click="ignore")
