"""Unexpected errors: a plain message and a copyable diagnostic, never a traceback.

app.py runs every page through :func:`run_page`. An exception that escapes a
page (a bug: expected problems — bad files, a study that cannot be fitted — are
reported by the pages themselves) is logged in full to the server's console and
shown to the user as one plain sentence plus a diagnostic they can copy into a
bug report: the app's version, the page, the options in the URL (options only,
never data, file or study names), the error's type and where in the app's own
code it happened. The exception's message is not shown: it can contain values
from the user's data. ``client.showErrorDetails = "none"`` in
.streamlit/config.toml covers anything raised outside a page.

Tests set the environment variable ``ALLIANCE_RAISE_ERRORS=1`` (tests/conftest.py)
so AppTest still sees a page's exception.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import traceback
from pathlib import Path

import streamlit as st

from analysis import __version__

ROOT = Path(__file__).resolve().parents[1]
MESSAGE = ("Something went wrong on this page; this is a fault of the app, not of your data or settings. "
           "Your data and choices are kept: try another option or page. To report it, copy the diagnostic "
           "below (it contains no data).")
_LOG = logging.getLogger("alliance.errors")


def _where(exc: BaseException) -> list[str]:
    """``file:line in function`` for the frames in the app's own code (innermost last); no values."""
    out = []
    for fr in traceback.extract_tb(exc.__traceback__):
        try:
            rel = Path(fr.filename).resolve().relative_to(ROOT)
        except ValueError:
            continue
        out.append(f"{rel.as_posix()}:{fr.lineno} in {fr.name}")
    return out[-6:]


def diagnostic(exc: BaseException, page: str, options: dict[str, str]) -> str:
    """The text users copy into a bug report: version, page, options, error type and location."""
    import pandas as pd

    lines = [
        f"Alliance ⇄ Symptoms {__version__}",
        f"page: {page}",
        "options: " + (", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "(defaults)"),
        f"error: {type(exc).__module__}.{type(exc).__qualname__}",
        *("  at " + w for w in _where(exc)),
        f"python {platform.python_version()}, streamlit {st.__version__}, pandas {pd.__version__}, "
        f"{sys.platform}",
    ]
    return "\n".join(lines)


def _options() -> dict[str, str]:
    try:
        return {str(k): str(st.query_params.get(k)) for k in st.query_params}
    except Exception:  # pragma: no cover - a broken query string must not hide the first error
        return {}


def show_unexpected(exc: BaseException, page: str) -> None:
    """Log ``exc`` with its traceback (console only) and show the plain message and diagnostic."""
    _LOG.error("Unexpected error on page %s", page, exc_info=exc)
    st.error(MESSAGE, icon=":material/error:")
    with st.expander("Diagnostic for a bug report", expanded=False):
        st.code(diagnostic(exc, page, _options()), language=None)


def run_page(page) -> None:
    """Run a ``st.Page``; an unexpected exception becomes :func:`show_unexpected` (Streamlit's
    rerun/stop signals are ``BaseException`` and pass through)."""
    try:
        page.run()
    except Exception as exc:
        if os.environ.get("ALLIANCE_RAISE_ERRORS") == "1":
            raise
        show_unexpected(exc, getattr(page, "title", "") or str(getattr(page, "url_path", "")))
