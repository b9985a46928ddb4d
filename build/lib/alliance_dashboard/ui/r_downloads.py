"""R-script downloads for the total/within/between trio (Lagged effects page) and the convergence
growth models (Convergence page); the scripts come from :mod:`analysis.rscript_models`.

The last growth result of the loaded data set is remembered for the reproducibility bundle
(:func:`bundle_extras`), as is the trio's chosen study and direction.
"""

from __future__ import annotations

import streamlit as st

from analysis.export import csv_bytes
from analysis.rscript_models import r_decomposition_script, r_growth_script
from ui.safe import esc

DATA_NAME = "analysis_data.csv"  # the same file name as the two-stage downloads (ui/reporting.py)
GROWTH_DATA = "growth_model_data.csv"
_GROWTH_KEY = "share_growth"


def decomposition_r_download(df, study: str, direction: str, options) -> None:
    """The data and the R script (lme4 + lmerTest) of the trio for ``study`` and ``direction``."""
    try:
        text = r_decomposition_script(DATA_NAME, study, direction, options.lag, options.standardize, options.sessions)
    except ValueError as e:
        st.caption(f"No R script for these models: {esc(str(e))}")
        return
    st.markdown(f"**Reproduce these three models in R** (lme4 + lmerTest): put the data ({DATA_NAME}) and the "
                "script in one folder and run `Rscript reproduce_decomposition.R` there.")
    c1, c2 = st.columns(2)
    c1.download_button("Download the data (CSV)", data=lambda: csv_bytes(df), file_name=DATA_NAME, mime="text/csv",
                       key="dl_dec_data", on_click="ignore")
    c2.download_button("Download the R script (.R)", data=text.encode("utf-8"), file_name="reproduce_decomposition.R",
                       mime="text/plain", key="dl_dec_r", on_click="ignore")


def growth_r_download(gr, data_key: str | None = None) -> None:
    """The growth models' rows and their R script. ``data_key``: the loaded data set's fingerprint when the
    page analyses the loaded data (then the result goes into the bundle), else None."""
    if data_key is not None:
        st.session_state[_GROWTH_KEY] = (data_key, gr)
    st.markdown(f"**Reproduce Models 1–3 in R** (lme4 + lmerTest): the model rows ({GROWTH_DATA}: the sample "
                "rules, dyad scores and exclusions above already applied) and a script that centres the dyad-level "
                "predictors and fits the models. Put both in one folder and run `Rscript reproduce_growth_models.R`.")
    c1, c2 = st.columns(2)
    c1.download_button("Download the model rows (CSV)", data=lambda: csv_bytes(gr.model_data()), file_name=GROWTH_DATA,
                       mime="text/csv", key="dl_growth_data", on_click="ignore")
    c2.download_button("Download the R script (.R)", data=lambda: r_growth_script(GROWTH_DATA, gr).encode("utf-8"),
                       file_name="reproduce_growth_models.R", mime="text/plain", key="dl_growth_r", on_click="ignore")


def bundle_extras(df, data_key: str) -> dict:
    """``make_bundle`` keyword arguments for the trio (the study and direction chosen on the Lagged effects
    page, when that study is in ``df``) and the last growth result of the same data set (``data_key``)."""
    out = {}
    study, direction = st.session_state.get("dec_study"), st.session_state.get("dec_direction")
    if study is not None and direction is not None and "study" in df.columns and (
            df["study"].astype(str) == str(study)).any():
        out["decomposition"] = {"study": study, "direction": direction}
    gr = kept_growth(data_key)
    if gr is not None:
        out["growth"] = gr
    return out


def kept_growth(data_key: str):
    """The last growth result shown on the Convergence page for the data set ``data_key``, or None."""
    kept = st.session_state.get(_GROWTH_KEY)
    return kept[1] if kept is not None and kept[0] == data_key else None
