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
