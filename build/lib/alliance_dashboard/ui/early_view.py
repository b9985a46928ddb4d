"""Early alliance → post-treatment outcome controls and results (issue 11 §3, METHODS §7).

The early window and the outcome are chosen here, independently of the lagged window; every number
comes from :func:`analysis.early.early_outcome` (via ``ui.compute.early_outcome``).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis import formatting as fmt
from analysis import plots_meta
from ui import compute
from ui.downloads import show_figure
from ui.safe import esc
from ui.tables import show_table

_CANON = {"study", "patient", "session", "alliance", "symptoms", "therapist_alliance", "therapist"}
_OUTCOME = {"last": "Last observed symptom score (any session)", "session": "Symptom score at a named session",
            "column": "A separate post-treatment column"}


def _numeric_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in _CANON and pd.api.types.is_numeric_dtype(df[c])]


def early_section(df: pd.DataFrame, options) -> None:
    """Draw the early-alliance controls (early window, outcome) and the pooled partial β and r."""
    smin, smax = int(df["session"].min()), int(df["session"].max())
    if options.lag == 0:
        st.info("Early alliance → outcome uses the lagged models with a lag of 1 to 3; with lag 0 (symptoms → "
                "alliance in the same session) it is not shown.")
        return
    if smax <= smin:  # one session number in the data: no early window and no later outcome (issue 25 #6)
        st.info("Early alliance → outcome needs sessions after the early window; these data have a single "
                "session number.")
        return
    c1, c2 = st.columns(2)
    window = c1.slider("Early window (sessions)", smin, smax, (smin, min(smin + 2, smax)), key="early_window",
                       help="Early alliance = the mean of the patient's observed ratings in these sessions "
                            "(independent of the lagged window).")
    cols = _numeric_columns(df)
    choices = ["last", "session"] + (["column"] if cols else [])
    outcome = c2.radio("Outcome", choices, format_func=_OUTCOME.get, key="early_outcome")
    kw = {"early_window": tuple(window), "outcome": outcome}
    if outcome == "session":
        kw["outcome_session"] = int(c2.number_input("Outcome session", smin, smax, smax, key="early_outcome_session"))
    elif outcome == "column":
        kw["outcome_column"] = c2.selectbox("Post-treatment column", cols, key="early_outcome_column")
    try:
        res = compute.early_outcome(df, options, **kw)
    except ValueError as e:
        st.error(f"Early alliance → outcome could not be computed: {esc(str(e), limit=None)}")
        return
    for m in res.beta.messages:
        st.info(esc(m, limit=None))
    st.markdown(esc(res.summary(), limit=None))
    m = res.beta.pooled.get("early_alliance_to_outcome")
    if m is not None and m.k >= 1:
        show_figure(plots_meta.forest_figure(m, title="Early alliance → outcome (partial β, baseline-adjusted)",
                                           xlabel="Standardized partial β (negative = lower outcome symptoms)"),
                    "early_alliance_partial_beta", key="early_beta_forest")
    if res.pooled_r is not None and res.pooled_r.k >= 2:
        st.caption(f"Correlation r pooled on Fisher's z over {fmt.count(res.pooled_r.k)} studies "
                   f"(τ² on the z scale = {fmt.tau2(res.pooled_r.tau2)}).")
    tab = res.to_frame()
    show_table(tab, "early_alliance_outcome", key="early_outcome_dl", title="Early alliance and outcome")
