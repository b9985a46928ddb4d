"""Open every lazy tab of a page in an AppTest (ui/tabs.PAGE_TABS): a scan of a page covers all its tabs."""

from __future__ import annotations

from ui.tabs import PAGE_EXPANDERS, PAGE_TABS


def each_tab(at, page: str):
    """Yield once per tab of ``page`` (``None`` for a page without lazy tabs), after a run with that tab open;
    the first tab is open again at the end. The page's lazy expanders are open throughout."""
    for k in PAGE_EXPANDERS.get(page, ()):
        at.session_state[k] = True
    key, labels = PAGE_TABS.get(page, (None, ()))
    if not labels:
        if PAGE_EXPANDERS.get(page):
            at.run()
        yield None
        return
    for label in labels:
        at.session_state[key] = label
        at.run()
        yield label
    at.session_state[key] = labels[0]
    at.run()


def open_with_link(page: str, query: dict, timeout: float = 180):
    """An AppTest of the app opened from a link with ``query`` (URL parameters), switched to ``page``; fails
    on an exception."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=timeout)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at
