"""Show user-derived text as text: the one escaping helper for every page.

Study, patient, therapist, column, sheet and file names (and any value from an uploaded
file shown in a sentence) pass through :func:`esc` before they reach ``st.markdown``,
``st.caption``, ``st.write``, alerts, labels or help texts. Markdown renders images, and
images fetch URLs: an unescaped name such as ``![x](http://host/beacon.png)`` would make the
viewer's browser call that host. Rule (grep-able, see CONTRIBUTING.md): every f-string that
puts a user string into a Streamlit text element wraps it in ``esc(...)``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["esc"]

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping all of
# them is simpler and safer than choosing. ":" stops Streamlit's :color[...] and :emoji:
# directives, "$" stops LaTeX, "<" and ">" stop HTML, "[" "]" "(" ")" "!" stop links and images.
_PUNCT = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>$~=:\"'&%^@;,?/])")
_SPACE = re.compile(r"[\r\n\t\v\f\u2028\u2029]+")
# bidirectional overrides and isolates would reorder the rest of the sentence
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f]")


def esc(value: Any, limit: int | None = 200) -> str:
    """``value`` as Markdown-safe plain text: punctuation escaped, line breaks and
    bidirectional control characters removed, cut to ``limit`` characters (with "…")."""
    s = _BIDI.sub("", _SPACE.sub(" ", str(value)))
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return _PUNCT.sub(r"\\\1", s)
