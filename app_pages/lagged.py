"""Lagged effects page: per-study stage-1 coefficients in both directions."""

import numpy as np
import pandas as pd
import streamlit as st

from analysis import lagged, nickell
from analysis.interpret import count_sentence, lagged_effect_sentence
from analysis.plots_lagged import direction_label
from ui import compute, few_studies, persist
from ui.choices import data_select
from ui.downloads import show_figure, table_download
from ui.dynamics_view import check_section, comparison_section
from ui.options import CENTERING, DIRECTIONS, LINKS, option_panel
from ui.safe import Markup, md
from ui.state import current, data_banner
from ui.tables import dataframe, show_table
from ui.tabs import LAGGED_TABS, lazy_expander, lazy_tabs

st.title("Lagged effects")
data_banner()
df = current()["df"]
options = option_panel(df)
persist.url_params("small_k", persist.SMALL_K)  # the one-stage switch and the prior scale of τ
SCALE = {"total": "standardized within study by the total SD", "within": "standardized within study by the "
         "within-patient SD"}
timing = (f"outcome at session t + {options.lag}" if options.lag else
          "alliance rated later in the same session t")
SEM = {"riclpm": "RI-CLPM", "dpm": "dynamic panel model (ML-SEM)"}
if options.stage1 != "lmm":
    st.caption(f"One {SEM[options.stage1]} per study, fitted by full-information ML (METHODS §15): lag 1 between "
               f"sessions, latent-centred (no person means subtracted) · "
               f"{SCALE[options.standardize_by] if options.standardize else 'raw scores'}. Centering, lag, trend and "
               "estimator options apply to the mixed models only.")
else:
    st.caption(md(
        "One model per study (METHODS [§5]({link})): {timing} on the predictor at session t · centering: "
        "{centering} · {scale} · {prior} · {tests}{moderators}.", link=Markup(LINKS["stage1"]), timing=timing,
        centering=CENTERING[options.centering].lower(),
        scale=SCALE[options.standardize_by] if options.standardize else "raw scores",
        prior="controlling for the prior outcome" if options.control_prior_outcome else "no control for the prior "
              "outcome",
        tests="t tests, Satterthwaite df" if options.df_method == "satterthwaite" else "Wald z tests",
        moderators=md(" · moderators: {c}", c=", ".join(options.covariates)) if options.covariates else ""))
res = compute.two_stage_or_stop(df, options, "Fitting one model per study…")


def diagnostics(res, options, direction: str) -> None:
    """Per-study diagnostics of one direction's study models (Nickell bias, person-mean reliability, boundary)."""
    diag = []
    for (study, dirn), fit in res.fits.items():
        if dirn != direction:
            continue
        g = fit.diagnostics()
        diag.append({"study": study, "median pairs per patient": g["median_pairs"],
                     "ICC of predictor": g["icc_predictor"],
                     "reliability of person mean (attenuation factor)": g["reliability_person_mean"],
                     "Nickell bias of prior outcome": g["nickell_bias"] if options.control_prior_outcome else np.nan,
                     "random-intercept variance": g["tau2"], "boundary (τ² ≈ 0)": g["singular"],
                     "converged": g["converged"], "messages": " ".join(fit.messages)})
    st.markdown(
        "- **Nickell bias**: with few pairs per patient, the within-centered prior outcome is biased "
        "downward (about −(1 + ρ)/(T − 1) for person-mean centering, about twice that when detrended); the "
        "value shown is the expected bias on this study's own sessions, pairs and centering.\n"
        "- **Reliability of the person mean** = n·ICC / (1 + (n − 1)·ICC): the factor by which between "
        "effects and cross-level interactions are attenuated (below 0.8: more than 20%); a between effect "
        "is also pulled toward the within effect.\n"
        "- **Boundary**: a random-intercept variance of zero is common in this model; the fixed effects are "
        "still correct (checked against lme4)."
    )
    show_table(pd.DataFrame(diag), f"diagnostics_{direction}", key=f"lag_diag_dl_{direction}", manuscript=False)


# Sections in lazy tabs: a page run computes and draws the open tab only, not the whole 8,000-px page
t_coef, t_trio, t_early, t_latent, t_rows = lazy_tabs("lag_tab", LAGGED_TABS)
if t_coef.open:
    with t_coef:
        for direction in options.directions:
            # the heading says the lag in use ("next-session" only at lag 1; issue 23 #10)
            st.header(md("{h}", h=DIRECTIONS[direction] if options.lag == 1 else
                         "Symptoms → alliance rated later in the same session" if not options.lag else
                         direction_label(direction, options.lag)["arrow"].capitalize()))
            t = compute.lagged_table(df, options, direction)
            st.write(count_sentence(t.n_sig, t.n_ok, t.n_failed))
            if direction in res.pooled and res.pooled[direction].k >= 1:
                m = res.pooled[direction]
                st.markdown(
                    ("**Pooled** " if m.k > 1 else "**Single study:** ")
                    + lagged_effect_sentence(m.estimate, m.ci_low, m.ci_high, direction, options.lag,
                                             options.standardize, t.effect)
                )
            show_figure(compute.lagged_figure("coefficients", df, options, direction), f"coefficients_{direction}",
                        key=f"lag_coef_{direction}")
            show_table(t.table, f"per_study_{direction}", key=f"lag_dl_{direction}", csv=t.csv,
                       title=f"Per-study lagged coefficients: {DIRECTIONS[direction]}")
            fits = [f for (_s, dn), f in res.fits.items() if dn == direction]
            if note := nickell.attenuation_note(fits):  # tiered: below half the true effect is a warning
                (st.warning if nickell.attenuation_severe(fits) else st.info)(md("{n}", n=note))

            n_warn = t.n_warn
            # lazy: the per-study diagnostics are computed and sent only while open (issue 24)
            if (exp := lazy_expander(f"Diagnostics and warnings ({n_warn} {'study' if n_warn == 1 else 'studies'} "
                                     "with notes)", f"lag_diag_exp_{direction}")).open:
                with exp:
                    diagnostics(res, options, direction)

        if few_studies.one_stage_switch():
            few_studies.one_stage_section(df, options, res, DIRECTIONS, "Within-patient lagged coefficient")

        # lazy expanders: computed and sent only while open (a collapsed table cost every run ~15% of the page)
        if (exp := lazy_expander("All coefficients of every study model", "lag_all_exp")).open:
            with exp:
                show_table(res.per_study, "all_coefficients", key="lag_all_dl", manuscript=False)
        if (exp := lazy_expander("How many pairs each pairing mode yields", "lag_pairs_exp")).open:
            with exp:
                dataframe(compute.pairing_counts(df, options))

if t_latent.open:
    with t_latent:
        comparison_section(df, options, "lag")
        check_section(df, options, "lag")

@st.fragment
def model_rows():
    """One patient's model rows. A fragment: picking a study, direction or patient reruns only this part
    (issue 24)."""
    c1, c2, c3 = st.columns(3)
    studies = sorted(df["study"].astype(str).unique())
    study = data_select("Study", studies, "lag_view_study", c1)
    direction = c2.selectbox("Direction", list(options.directions), format_func=DIRECTIONS.get, key="lag_view_dir")
    rows = compute.prepare(df, study, options, direction)
    patients = sorted(rows["patient"].astype(str).unique()) if len(rows) else []
    if not patients:
        st.info("No model rows for this study with the current options.")
    else:
        patient = data_select("Patient", patients, "lag_view_patient", c3)
        show_figure(compute.lagged_figure("patient", df, options, direction, study, patient), "patient_series",
                    key="lag_patient")
        dataframe(rows[rows["patient"] == patient], names=lagged.row_names(rows))
        table_download(rows, f"model_rows_{study}_{direction}", key="lag_rows_dl",
                       label="Download this study's model rows (CSV)")


if t_rows.open:
    with t_rows:
        st.caption("For one patient: the raw series, the value the centering subtracts, the within deviations, "
                   "and the outcome each session is paired with.")
        model_rows()

from ui.decomposition_view import lagged_page_sections  # noqa: E402

lagged_page_sections(df, options, trio=t_trio, early=t_early)
