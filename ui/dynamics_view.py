"""Page sections for the latent-centred dynamic models (METHODS §15): the estimator comparison forest and
the estimator check on the user's design. Shared by the Lagged and Pooled pages; the work runs through
``ui/jobs.py`` (progress bar, Cancel, results kept per data set and options)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis import estimator_check, pipeline, plots_dynamics
from analysis.estimator_check import EstimatorCheckOptions as CheckOptions
from analysis.lagged import LagOptions
from analysis.lagged.options import M_DYNAMIC
from ui import compute, declared, jobs
from ui.choices import data_select
from ui.declared import draw, find
from ui.downloads import show_figure, table_download
from ui.options import LINKS
from ui.safe import esc
from ui.tables import dataframe, show_table

_METHODS = declared.METHODS_PAGE + M_DYNAMIC


def comparison_section(df: pd.DataFrame, options: LagOptions, page: str) -> None:
    """Pooled forest of each direction under the hybrid LMM, the RI-CLPM and the DPM, side by side."""
    st.subheader("Estimator comparison: hybrid LMM, RI-CLPM and DPM")
    st.caption(
        "The same studies and pooling, with three stage-1 models: the lagged mixed model of the options above, "
        f"the RI-CLPM and the ML-SEM dynamic panel model (latent-centred, FIML; METHODS [§15]({_METHODS})). "
        "With few sessions and reciprocal feedback the person-mean model is biased (Nickell and feedback bias); "
        f"the latent-centred models are not (METHODS [§5]({LINKS['stage1']})), except that the DPM assumes a "
        "session's predictor uncorrelated with the same session's outcome innovation: where alliance and symptoms "
        f"move together within a session it is biased at any sample size (METHODS [§15.2]({_METHODS}))."
    )
    base = options.replace(stage1="lmm")
    clicked = st.button("Fit the RI-CLPM and the DPM to every study", key=f"{page}_cmp_run")
    try:
        res = jobs.run(pipeline.compare_estimators, _df=df, options=base, key=compute.data_key(df),
                       start=clicked, widget=f"{page}_cmp", label="Fitting the SEM models per study…")
    except ValueError as e:
        st.error(esc(e, limit=None))
        return
    if res is None:
        return
    for direction in base.directions:
        try:
            fig = plots_dynamics.estimator_comparison_figure(res, direction)
        except ValueError as e:
            st.info(esc(e, limit=None))
            continue
        show_figure(fig, f"estimator_comparison_{direction}", key=f"{page}_cmp_{direction}")
    std = pipeline.pooled_std_all(res)
    if len(std):
        st.markdown("**Pooled standardized within-patient cross-lags** (RI-CLPM and DPM: lavaan std.all per "
                    "study, averaged over sessions, pooled by the same random-effects model)")
        show_table(std, "standardized_cross_lags", key=f"{page}_cmp_std_dl", manuscript=False)
    rows = []
    for label, r in res.items():
        t = r.per_study[r.per_study["term"].isin(["within", "within_std"])].copy()
        t.insert(0, "estimator", label)
        rows.append(t)
    table = pd.concat(rows, ignore_index=True)
    with st.expander("Per-study estimates under each estimator"):
        dataframe(table)
        table_download(table, "estimator_comparison", key=f"{page}_cmp_dl")


def check_section(df: pd.DataFrame, options: LagOptions, page: str) -> None:
    """Parametric bootstrap from one study's fitted RI-CLPM: bias and coverage of each estimator."""
    st.subheader("Estimator check on your design")
    st.caption(
        "Simulates data sets like the chosen study (same patients, sessions and missing values) from its fitted "
        "RI-CLPM, whose cross-lags are the truth, and refits each chosen estimator (the person-mean and detrended "
        "mixed models, the RI-CLPM, the DPM) to each: how far off is each estimator, and how often does its 95% CI cover the "
        "truth? The column 'Large sample value' is what the RI-CLPM and the DPM would estimate with unlimited "
        "patients: where the DPM's differs from the truth, its bias is not a small-sample bias. "
        f"(METHODS [§15.4]({_METHODS}))"
    )
    studies = sorted(df["study"].astype(str).unique())
    c1, c2, c3 = st.columns([2, 1, 1])
    study = data_select("Study", studies, f"{page}_chk_study", c1)
    n_sim = draw(find(CheckOptions, "n_sim"), f"{page}_chk_nsim", c2, step=20)
    seed = draw(find(CheckOptions, "seed"), f"{page}_chk_seed", c3)
    estimators = draw(find(CheckOptions, "estimators"), f"{page}_chk_estimators")
    if not estimators:
        st.error("Choose at least one estimator to refit.")
        return
    sub = df[df["study"].astype(str) == study]
    if options.sessions is not None:
        sub = sub[(sub["session"] >= options.sessions[0]) & (sub["session"] <= options.sessions[1])]
    clicked = st.button("Run the estimator check", key=f"{page}_chk_run")
    try:
        opts = CheckOptions(n_sim=n_sim, seed=seed, estimators=tuple(estimators))
        chk = jobs.run(estimator_check.run, _df=sub, options=opts,
                       key=(compute.data_key(df), study, options.sessions), start=clicked,
                       widget=f"{page}_chk", label="Simulating and refitting…")
    except ValueError as e:
        st.error(esc(e, limit=None))
        return
    if chk is None:
        return
    st.markdown(f"**{esc(chk.sentence(), limit=None)}**")
    for m in chk.messages:
        st.caption(esc(m, limit=None))
    show_figure(plots_dynamics.estimator_check_figure(chk), f"estimator_check_{study}", key=f"{page}_chk_fig")
    show_table(chk.table, f"estimator_check_{study}", key=f"{page}_chk_dl", manuscript=False)
