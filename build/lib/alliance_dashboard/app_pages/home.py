import streamlit as st

from ui.safe import esc
from ui.state import current, design_warnings

st.title("Alliance ⇄ Symptoms")
ds = current()
st.markdown(
    """
This dashboard estimates how the **therapeutic alliance** and **symptoms** relate from one
session to the next, within patients, across one or many studies.

1. **Data** — upload your session-by-session files (CSV, Excel, SPSS, Stata, Parquet) or pick a demo;
   map your columns; see what is wrong with them before anything is estimated.
2. **Lagged effects** — per study, the effect of a patient's alliance on their *next* session's
   symptoms and of symptoms on the next session's alliance, under your centering and lag choices.
3. **Pooled effects** — the per-study effects pooled with a random-effects meta-analysis
   (two-stage IPD meta-analysis): forest plots, heterogeneity, prediction intervals, sensitivity analyses.
4. **Convergence** — do patient and therapist come to agree on the alliance, and does it matter for outcome?
5. **Ruptures & gains** — alliance dips and sudden symptom gains.
6. **Teaching** — a live simulation that shows why within- and between-patient effects differ.
7. **Screening** — place one new study against the loaded collection.

Every statistic is defined in the methods document (`docs/METHODS.md`) and checked against R
(lme4, metafor). Nothing you upload leaves this computer.
"""
)
st.info(f"Loaded now: **{esc(ds['name'])}**. Change it on the Data page.")
design_warnings(ds)
st.page_link("app_pages/data.py", label="Go to the Data page", icon=":material/folder_open:")
st.page_link("app_pages/lagged.py", label="Go to Lagged effects", icon=":material/swap_horiz:")
