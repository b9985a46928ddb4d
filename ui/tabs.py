"""Lazy tabs: a page's long sections, each computed and drawn only while its tab is open (Streamlit's
``st.tabs(..., on_change="rerun")``; issues 23 #17, 24). The open tab lives in ``st.session_state[key]``.

Pages name their tabs here, so tests can open every tab (``PAGE_TABS``)."""

from __future__ import annotations

import streamlit as st

from ui.safe import md

#: the Lagged effects page's tabs, in order (the first opens by default)
LAGGED_TABS = ("Per-study coefficients", "Total, within and between", "Early alliance → outcome",
               "Latent-centred models", "What went into the model")

#: the Ruptures & gains page's tabs
EVENTS_TABS = (":material/bolt: Ruptures & repairs", ":material/trending_down: Sudden gains",
               ":material/verified: Reliable change", ":material/target: Relation to outcome")

#: the Teaching page's sections after the first (the estimates the sliders drive stay above the tabs)
TEACHING_TABS = ("2. Two levels", "3. Nickell bias", "4. Feedback and latent centering")

#: the Convergence page's sections
CONVERGENCE_TABS = ("Ratings and dyad scores", "Discrepancy over time", "Congruence", "Symptom growth (Models 1–3)")

#: page file → (session-state key of its open tab, its tabs)
PAGE_TABS = {"app_pages/lagged.py": ("lag_tab", LAGGED_TABS), "app_pages/events.py": ("ev_tab", EVENTS_TABS),
             "app_pages/teaching.py": ("teach_tab", TEACHING_TABS),
             "app_pages/convergence.py": ("conv_tab", CONVERGENCE_TABS)}

#: page file → session-state keys of its lazy expanders (``st.expander(..., key=k, on_change="rerun")``, content
#: computed only while open), so tests can open them too
PAGE_EXPANDERS = {"app_pages/lagged.py": ("lag_all_exp", "lag_pairs_exp", "lag_diag_exp_alliance_to_symptoms",
                                          "lag_diag_exp_symptoms_to_alliance"),
                  "app_pages/convergence.py": ("conv_dyads_exp",)}

#: a tab to open on a page's next run (set by code that runs after the tabs are drawn, e.g. a preset)
NEXT = "_next_tab"


def open_next(key: str, tab: str) -> None:
    """Open ``tab`` of the tabs stored under ``key`` on the next run."""
    st.session_state[NEXT] = (key, tab)


def lazy_tabs(key: str, labels) -> list:
    """``st.tabs(labels)`` whose containers tell (``.open``) whether they are the open one."""
    nxt = st.session_state.get(NEXT)
    if nxt and nxt[0] == key and nxt[1] in labels:
        st.session_state.pop(NEXT)
        st.session_state[key] = nxt[1]
    return st.tabs(list(labels), key=key, on_change="rerun")


def lazy_expander(label: str, key: str):
    """``st.expander(label)`` whose container tells (``.open``) whether it is open; its content is computed only
    then (opening it reruns the page). A result's expander is listed in :data:`PAGE_EXPANDERS`, so the tests'
    page scans open it; a figure's download buttons (``ui.downloads.show_figure``) hold no result."""
    return st.expander(md("{label}", label=label), key=key, on_change="rerun")  # (a label is markdown: escaped)
