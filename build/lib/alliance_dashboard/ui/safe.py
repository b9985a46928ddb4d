"""Show user-derived text as text: the one escaping helper for every page.

Study, patient, therapist, column, sheet and file names (and any value from an uploaded
file shown in a sentence, including analysis messages that quote them) pass through
:func:`esc` before they reach ``st.markdown``, ``st.caption``, ``st.write``, ``st.header``,
alerts, expander / tab / widget labels, help texts, radio options or ``st.table`` cells
(:func:`esc_frame`). Markdown renders images, and images fetch URLs: an unescaped name such
as ``![x](http://host/beacon.png)`` would make the viewer's browser call that host.
Text-only elements (``st.dataframe``, ``st.text``, ``st.code``, selectbox / multiselect
options) need no escaping. Plotly text is a small HTML dialect: figures shown with
``ui.downloads.show_figure`` pass through :func:`safe_figure`.

Rule (grep-able, see CONTRIBUTING.md): every f-string that puts a user string into a
Streamlit text element wraps it in ``esc(...)``; whole messages use ``esc(msg, limit=None)``.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from analysis.export import plotly_text, safe_figure

__all__ = ["Markup", "esc", "esc_frame", "md", "plotly_text", "safe_figure"]

# The characters that open Markdown (and Streamlit) markup anywhere in a line, backslash-escaped:
# "[" "]" stop links and images (and :color[...] directives), "<" ">" stop HTML and <autolinks>,
# "$" stops LaTeX, "`" "*" "_" "~" "|" "#" "{" "}" "\\" stop code, emphasis, strikethrough,
# tables, headings and attributes. Other punctuation (. , ( ) ! : - ' ") cannot start markup
# without one of these, so it is left alone and messages stay readable in tests and logs.
_PUNCT = re.compile(r"([\\`*_{}\[\]<>$~|#])")
_SPACE = re.compile(r"[\r\n\t\v\f\u2028\u2029\x85]+")
# bidirectional overrides, embeddings, isolates and marks would reorder the rest of the sentence;
# other control characters (C0, DEL, C1) have no business in a label either
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c\x00-\x08\x0e-\x1f\x7f-\x9f]")


class Markup(str):
    """Markdown that is safe to render: a result of :func:`esc` or :func:`md`, or text the code wrote
    itself (``Markup(LINKS["stage1"])``, reviewed at the call). :func:`md` inserts it unchanged."""

    __slots__ = ()


def _plain(value: Any, limit: int | None) -> str:
    s = _BIDI.sub("", _SPACE.sub(" ", str(value)))
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


# GitHub-flavoured Markdown turns bare URLs, www. names and e-mail addresses into links after
# escapes are resolved, so backslashes cannot stop it: an invisible word joiner (U+2060) can, when it
# sits where the autolinker's pattern needs a character: after the ":" of "scheme:", after "@", and
# *inside* "www." (before its last "w": a joiner after the dot is not enough, "www." alone is a link).
_AUTOLINK = re.compile(r"(?i)(?<=[a-z0-9])(:)(?=//)|(@)")
_WWW = re.compile(r"(?i)(?<=ww)(?=w\.)")


def esc(value: Any, limit: int | None = 200) -> Markup:
    """``value`` as Markdown-safe plain text: punctuation backslash-escaped (so Markdown,
    HTML, LaTeX ``$…$`` and Streamlit directives stay literal), bare URLs, ``www.`` names and
    e-mail addresses kept from becoming links (a word joiner, U+2060, invisible), line breaks
    and bidirectional control characters removed, cut to ``limit`` characters (with "…";
    ``None``: no cut)."""
    s = _AUTOLINK.sub(lambda m: m.group(0) + "\u2060", _plain(value, limit))
    s = _WWW.sub("\u2060", s)
    return Markup(_PUNCT.sub(r"\\\1", s))


def md(template: str, /, **fields: Any) -> Markup:
    """The one way to put dynamic text into Markdown: ``template`` is Markdown written in the code
    (a literal, never data) with ``{name}`` fields; every field is shown as text — passed through
    :func:`esc` (no length cut) — except numbers (formatted with the field's spec, e.g. ``{n:,}``)
    and :class:`Markup` (made by :func:`esc` or an earlier :func:`md`). Result objects' ``summary()`` sentences quote
    study and patient names, so they are fields, never part of ``template``.

    >>> print(md("**{d}.** {s} ({n:,} rows)", d="Pooled", s="Study ![x](http://h/b.png)", n=1200))
    **Pooled.** Study !\\[x\\](http:\u2060//h/b.png) (1,200 rows)
    """
    def clean(v: Any) -> Any:
        if isinstance(v, Markup) or (isinstance(v, (int, float)) and not isinstance(v, bool)):
            return v
        return esc(v, limit=None)

    return Markup(template.format_map({k: clean(v) for k, v in fields.items()}))


def esc_frame(df: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
    """A copy of ``df`` for ``st.table`` (which renders cells and headers as Markdown):
    every text cell, column name and index label passed through :func:`esc`."""

    def cell(v):
        return esc(v, limit) if isinstance(v, str) else v

    out = df.copy()
    for c in out.columns:
        if not pd.api.types.is_numeric_dtype(out[c]) and not pd.api.types.is_bool_dtype(out[c]):
            out[c] = out[c].map(cell).astype(object)
    out.columns = [cell(c) for c in out.columns]
    out.index = out.index.map(cell)
    return out
