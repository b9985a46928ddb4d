"""Download buttons: tables as CSV; figures as PNG, SVG (kaleido + chromium) and HTML.

Static images are rendered only when the user clicks (deferred data), so no
page pays for kaleido on every rerun. Every CSV is written by
:func:`analysis.export.csv_bytes` (formula-like text neutralised); every figure is shown
and exported after :func:`ui.safe.safe_figure` (user strings cannot become plotly markup).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import weakref

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analysis.export import csv_bytes
from ui.safe import md, safe_figure
from ui.tabs import lazy_expander

MAX_NAME = 80  # characters of a download's file name before its extension (browsers refuse very long names)


def _slug(name: str) -> str:
    """A file-name-safe slug of ``name``: ASCII letters, digits and "_", at most :data:`MAX_NAME` characters
    (a longer one is cut and ends in 8 characters of its hash, so two long names stay distinct)."""
    s = re.sub(r"[^A-Za-z0-9]+", "_", str(name)).strip("_").lower() or "download"
    if len(s) > MAX_NAME:
        s = s[: MAX_NAME - 9].rstrip("_") + "_" + hashlib.sha256(str(name).encode("utf-8", "replace")).hexdigest()[:8]
    return s


def table_download(df: pd.DataFrame | weakref.ref, name: str, key: str | None = None,
                   label: str = "Download table (CSV)") -> None:
    """A CSV download of ``df``, written when clicked; ``df`` may be a weak reference to a large frame
    (Streamlit keeps the button's callable until the run after next, which should not keep the frame)."""
    frame = df if isinstance(df, weakref.ref) else (lambda: df)
    st.download_button(
        label,
        data=lambda: csv_bytes(frame()),
        file_name=f"{_slug(name)}.csv",
        mime="text/csv",
        key=key or f"dl_csv_{_slug(name)}",
        on_click="ignore",
    )


def _image(fig: go.Figure, fmt: str) -> bytes:
    return fig.to_image(format=fmt, width=1200, height=max(500, int(fig.layout.height or 500)), scale=2 if fmt == "png" else 1)


_LOG = logging.getLogger("alliance.downloads")
_FAILED: dict[tuple[str, str], str] = {}  # (session id, button key) -> what failed, shown on the next run
_FAILED_LOCK = threading.Lock()


def _session_id() -> str:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def _export(fig: go.Figure, fmt: str, session: str, key: str):
    """The deferred PNG/SVG export: a failure (kaleido or its browser) is logged and remembered, so the
    page says so on its next run, and re-raised (the browser's download then fails instead of saving a
    broken file)."""
    def run() -> bytes:
        try:
            return _image(fig, fmt)
        except Exception as exc:
            _LOG.error("%s export failed", fmt.upper(), exc_info=exc)
            with _FAILED_LOCK:
                _FAILED[(session, key)] = fmt.upper()
            raise
    return run


def figure_downloads(fig: go.Figure, name: str, key: str | None = None) -> None:
    fig = safe_figure(fig)
    base = key or _slug(name)
    session = _session_id()
    with _FAILED_LOCK:
        failed = [_FAILED.pop((session, k)) for k in (f"dl_png_{base}", f"dl_svg_{base}") if (session, k) in _FAILED]
    for what in failed:
        st.warning(md("The {what} export of this figure failed (the image renderer, kaleido, could not draw it). "
                      "Download the HTML version instead, or try again.", what=what))
    with st.container(horizontal=True):  # (one row: one block, not a block per column)
        st.download_button("PNG", data=_export(fig, "png", session, f"dl_png_{base}"), file_name=f"{_slug(name)}.png",
                           mime="image/png", key=f"dl_png_{base}", on_click="ignore")
        st.download_button("SVG", data=_export(fig, "svg", session, f"dl_svg_{base}"), file_name=f"{_slug(name)}.svg",
                           mime="image/svg+xml", key=f"dl_svg_{base}", on_click="ignore")
        st.download_button("HTML", data=lambda: fig.to_html(include_plotlyjs=True, full_html=True).encode("utf-8"),
                           file_name=f"{_slug(name)}.html", mime="text/html", key=f"dl_html_{base}",
                           on_click="ignore")


def show_figure(fig: go.Figure, name: str, key: str | None = None) -> None:
    """Show a plotly figure with its PNG / SVG / HTML download buttons underneath, in an expander whose buttons
    are made only while it is open (opening it reruns the page: a figure costs every run two elements, not
    eight; issue 24)."""
    fig = safe_figure(fig)
    st.plotly_chart(fig, width="stretch", key=f"chart_{key or _slug(name)}")
    if (exp := lazy_expander("Download this figure", f"dlx_{key or _slug(name)}")).open:
        with exp:
            figure_downloads(fig, name, key=key)
