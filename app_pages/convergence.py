"""Convergence page: patient–therapist alliance agreement over treatment and symptom growth (METHODS §8)."""

import pandas as pd
import streamlit as st

from analysis import convergence as conv
from analysis import plots_convergence as pc
from analysis import plots_meta
from ui.downloads import show_figure, table_download
from ui.persist import CONVERGENCE, url_params
from ui.state import DEMOS, current, data_banner, has_therapist_ratings, load_demo, set_dataset

METHODS = "/methods#8-alliance-convergence-convergence-paper"


@st.cache_data(show_spinner=False, max_entries=16)
def _trajectories(df):
    return conv.trajectories(df)


@st.cache_data(show_spinner=False, max_entries=16)
def _scores(df, discrepancy, transform):
    return conv.dyad_scores(df, discrepancy=discrepancy, transform=transform)


@st.cache_data(show_spinner=False, max_entries=16)
def _growth(df, discrepancy, transform, therapist_level):
    return conv.growth_models(df, models=(1, 2, 3), therapist_level=therapist_level,
                              discrepancy=discrepancy, transform=transform)


@st.cache_data(show_spinner=False, max_entries=16)
def _dyadic(df):
    return conv.dyadic_model(df)


@st.cache_data(show_spinner=False, max_entries=16)
def _pooled(df, discrepancy, transform, method, test):
    return conv.pooled_convergence(df, model=2, discrepancy=discrepancy, transform=transform, method=method,
                                   test=test)


st.title("Alliance convergence")
data_banner()
st.caption(
    "Do patient and therapist come to agree on the alliance over treatment, and do dyads that converge improve "
    f"more? Dyad scores and symptom growth Models 1–3 as in the convergence paper ([Methods §8]({METHODS}))."
)
ds = current()
df = ds["df"]
if not has_therapist_ratings(df):
    st.warning("The loaded data have no therapist-rated alliance, which convergence needs. "
               "Load a convergence demo or upload data with a therapist-rated alliance column.")
    names = [n for n, f in DEMOS.items() if f in ("dyads_bdi.csv", "dyads_gsi.csv")]
    pick = st.selectbox("Convergence demo", names, key="conv_demo")
    if st.button("Load this demo", key="conv_load_demo"):
        set_dataset(load_demo(DEMOS[pick]), pick, "demo")
        st.rerun()
    st.stop()

d = df[df["therapist_alliance"].notna() | df["alliance"].notna()]
studies = sorted(d["study"].astype(str).unique())
url_params("convergence", CONVERGENCE)  # options in the URL (ui/persist.py)
with st.sidebar:
    st.markdown("#### Convergence options")
    discrepancy = st.radio(
        "Convergence score", ["absolute", "signed"], key="conv_discrepancy",
        format_func={"absolute": "− slope of |P̂ − T̂| (default: positive = approaching)",
                     "signed": "slope of P̂ − T̂ (signed)"}.get,
        help=f"Per dyad, from the OLS lines of patient (P) and therapist (T) ratings. [Methods §8]({METHODS})",
    )
    transform = st.radio("Transform", ["none", "log_shift"], key="conv_transform",
                         format_func={"none": "None", "log_shift": "log(x − min + 1) (for a skewed score)"}.get)
    therapist_level = st.checkbox(
        "Add a therapist level", key="conv_therapist_level",
        help="A third level (random intercept per therapist). Falls back to two levels, with a message, when "
             "it does not converge or its variance is zero.",
        disabled="therapist" not in df.columns,
    )
study = st.selectbox("Study", studies, key="conv_study") if len(studies) > 1 else studies[0]
sd = d[d["study"].astype(str) == study]

st.header("Patient and therapist ratings over treatment")
st.caption("Mean ± 1 SD per session (higher = stronger alliance). Converging lines mean the two raters come to agree.")
show_figure(pc.alliance_trajectories_figure(_trajectories(sd), study=study), "alliance_trajectories",
            key="conv_traj")
with st.expander("Per-session means and SDs"):
    tr = _trajectories(d)
    st.dataframe(tr, width="stretch", hide_index=True)
    table_download(tr, "alliance_trajectories", key="conv_traj_dl")

try:
    scores = _scores(sd, discrepancy, transform)
except ValueError as e:
    st.error(f"Dyad scores could not be computed: {e}")
    st.stop()
c1, c2 = st.columns(2)
with c1:
    show_figure(pc.dyad_trajectories_figure(sd, n=12, seed=0, scores=scores), "dyad_trajectories", key="conv_dyads")
    st.caption("Twelve randomly chosen dyads (fixed seed): ratings and their straight-line fits; the shaded band is "
               "the fitted discrepancy.")
with c2:
    show_figure(pc.convergence_distribution_figure(scores), "convergence_distribution", key="conv_dist")
    rel = scores.reliability.get(study)
    if rel is not None and pd.notna(rel):
        st.caption(f"Reliability of the convergence score in this study: {rel:.2f} (share of its between-dyad "
                   "variance that is not rating noise; low values weaken every association with convergence).")
for m in scores.messages:
    st.info(m)
if len(scores.excluded):
    st.caption(f"{len(scores.excluded)} dyads were left out (fewer than 2 sessions rated by both).")

st.subheader("Dyad scores")
st.dataframe(scores.table, width="stretch", hide_index=True)
table_download(scores.table, "dyad_scores", key="conv_scores_dl")

st.header("Discrepancy over time")
try:
    dy = _dyadic(sd)
except ValueError as e:
    dy = None
    st.info(f"The one-step dyadic model could not be fitted: {e}")
show_figure(pc.discrepancy_figure(sd, dyadic=dy, study=study), "discrepancy", key="conv_disc")
if dy is not None:
    ch = dy.discrepancy_change
    st.markdown(
        f"One-step dyadic model (both ratings stacked, role ±½ × time): the patient − therapist discrepancy changes "
        f"by **{ch['estimate']:.3f}** per session (SE {ch['se']:.3f}, p = {ch['pvalue']:.3g}); a negative value while "
        "patients rate higher means the ratings converge."
    )
    for m in dy.messages:
        st.caption(m)

st.header("Symptom growth: Models 1–3")
if "symptoms" not in sd.columns or sd["symptoms"].notna().sum() == 0:
    st.info("No symptom scores in this study.")
else:
    try:
        with st.spinner("Fitting growth models…"):
            gr = _growth(sd, discrepancy, transform, therapist_level)
    except ValueError as e:
        st.error(f"The growth models could not be fitted: {e}")
    else:
        for m in gr.messages:
            st.info(m)
        table = conv.models_table(gr)
        st.caption("Laid out like the paper's Table I: estimate (SE), Satterthwaite p. AIC (REML) compares only models "
                   "with the same fixed effects; use AIC (ML) to compare Models 1–3.")
        st.dataframe(table, width="stretch", hide_index=True)
        table_download(table, "growth_models_table", key="conv_table_dl")
        table_download(gr.to_frame(), "growth_models_fixed_effects", key="conv_fixed_dl",
                       label="Download all fixed effects (CSV)")
        for mnum, gm in gr.models.items():
            for w in gm.warnings:
                st.warning(f"Model {mnum}: {w}")
        show_figure(pc.symptom_growth_figure(gr, sd, model=2), "symptom_growth_by_convergence", key="conv_growth")

if len(studies) > 1:
    st.header("Convergence × time, pooled across studies")
    st.caption("Model 2's convergence × time coefficient per study, standardized (symptom SDs per session per SD of "
               "convergence), pooled with a random-effects model (REML).")
    try:
        with st.spinner("Fitting Model 2 in every study…"):
            per, meta = _pooled(d, discrepancy, transform, "REML", "z")
    except ValueError as e:
        st.error(str(e))
    else:
        st.dataframe(per, width="stretch", hide_index=True)
        table_download(per, "pooled_convergence", key="conv_pooled_dl")
        if meta is not None:
            show_figure(plots_meta.forest_plot(meta, title="Convergence × time (Model 2)",
                                               xlabel="Standardized coefficient (negative = steeper improvement)"),
                        "pooled_convergence_forest", key="conv_forest")
            st.write(meta.summary())
