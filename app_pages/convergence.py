"""Convergence page: patient–therapist alliance agreement over treatment and symptom growth (METHODS §8)."""

import pandas as pd
import streamlit as st

from analysis import convergence as conv
from analysis import formatting as fmt
from analysis import plots_meta, presets
from analysis.convergence.options import ConvergenceOptions
from ui import compute, jobs
from ui.choices import data_select
from ui.congruence_view import congruence_section
from ui.declared import draw, find
from ui.downloads import show_figure, table_download
from ui.persist import CONV_KEYS, CONVERGENCE, url_params
from ui.r_downloads import growth_r_download
from ui.safe import esc, md
from ui.state import DEMOS, DYADIC_DEMOS, current, has_therapist_ratings
from ui.tables import dataframe, show_table
from ui.tabs import CONVERGENCE_TABS, lazy_expander, lazy_tabs

METHODS = "/methods#8-alliance-convergence-convergence-paper"
OWN = "— (choose the settings yourself)"
CROSSING_WARN = 0.10  # share of dyads whose P and T lines cross above which the note is a warning
DEMO_NAMES = {f: n for n, f in DEMOS.items() if f in DYADIC_DEMOS}

st.title("Alliance convergence")
st.caption(
    "Do patient and therapist come to agree on the alliance over treatment, and do dyads that converge improve "
    f"more? Dyad scores and symptom growth Models 1–3 as in the convergence paper ([Methods §8]({METHODS}))."
)
ds = current()
loaded = ds["df"]
name = ds.get("name", "")
has_t = has_therapist_ratings(loaded)
CONV_PRESETS = presets.page_presets("convergence")


def _open_paper_tables() -> None:
    """A paper chosen: its tables (the growth models) open first."""
    if st.session_state.get("conv_preset") in CONV_PRESETS:
        st.session_state["conv_tab"] = CONVERGENCE_TABS[-1]


url_params("convergence", CONVERGENCE)  # options in the URL (ui/persist.py)
preset_name = st.selectbox("Reproduce a paper", [OWN, *CONV_PRESETS], key="conv_preset",
                           on_change=_open_paper_tables,
                           format_func=lambda k: k if k == OWN else CONV_PRESETS[k].title,
                           help="Settings (sample rules, time coding, score, transform) that reproduce the seed "
                                "paper's Tables I–II on the matching demo.")
preset = CONV_PRESETS[preset_name].page_options("convergence") if preset_name in CONV_PRESETS else None
if preset is not None:
    demo_file = CONV_PRESETS[preset_name].demo_file
    df, key = compute.conv_demo(demo_file)
    src = DEMO_NAMES[demo_file]
    st.info(md("**{title}** on the demo *{src}*: {what}", title=CONV_PRESETS[preset_name].title, src=src,
               what=preset["description"]))
else:
    # the user's own data with both ratings are always what the page opens on (a low reliability is explained
    # where the score is shown); a demo without a dyadic design opens on a convergence demo
    other_demo = ds.get("source") == "demo" and DEMOS.get(name) not in DYADIC_DEMOS
    choices = ([f"Loaded data: {name}"] if has_t else []) + list(DEMO_NAMES.values())
    src = st.selectbox("Data for this page", choices, index=int(has_t and other_demo), key="conv_source")
    if not has_t:  # nothing of the user's to analyse here: say so, and open on a demo
        st.info(md("The loaded data ({name}) have no therapist-rated alliance, so this page shows a convergence "
                   "demo; map a therapist-rated alliance column on the Data page to analyse your own.",
                   name=esc(name)))
    if src.startswith("Loaded data"):
        df, key = loaded, compute.data_key(loaded)
    else:
        df, key = compute.conv_demo(next(f for f, n in DEMO_NAMES.items() if n == src))

studies = sorted(df["study"].astype(str).unique())
study = data_select("Study", studies, "conv_study") if len(studies) > 1 else studies[0]
sd = df[df["study"].astype(str) == study]
skey = f"{key}|{study}"
sessions = sorted(int(s) for s in sd["session"].unique())
numeric = [c for c in sd.columns if c not in ("study", "patient", "session", "alliance", "therapist_alliance",
                                              "symptoms", "therapist") and pd.api.types.is_numeric_dtype(sd[c])]

if preset is not None:
    rules, o = preset["rules"], dict(preset["options"])
    with st.sidebar:
        st.markdown("#### Convergence options")
        st.caption("Set by the preset; choose “— (choose the settings yourself)” to change them.")
else:
    with st.sidebar:
        st.markdown("#### Convergence options")
        o = {name: draw(find(ConvergenceOptions, name), f"conv_{key}", st,
                        disabled=name == "therapist_level" and "therapist" not in sd.columns)
             for name, key in CONV_KEYS.items()}
        o["covariates"] = tuple(draw(find(ConvergenceOptions, "covariates"), "conv_covariates", st, choices=numeric))
        o = ConvergenceOptions(**o).kwargs()
        with st.expander("Sample rules and windows"):
            score_s = st.multiselect("Sessions in the convergence score (empty = all)", sessions, key="conv_score_s")
            sym_s = st.multiselect("Sessions of the symptom series (empty = all)", sessions, key="conv_sym_s")
            sym_final = st.checkbox("Add each dyad's last symptom score (termination)", key="conv_sym_final")
            min_s = st.number_input("Minimum number of sessions (0 = none)", 0, 1000, 0, key="conv_min_s")
            max_s = st.number_input("Maximum number of sessions (0 = none)", 0, 1000, 0, key="conv_max_s")
            comp_s = st.multiselect("Complete P, T and symptoms at sessions", sessions, key="conv_comp_s")
            comp_final = st.checkbox("Require a symptom score after those sessions", key="conv_comp_final")
            length_col = st.selectbox("Treatment length", ["(highest session in the file)", *numeric],
                                      key="conv_length")
        rules = conv.SampleRules(
            score_sessions=tuple(score_s) or None, symptom_sessions=tuple(sym_s) or None,
            symptom_final=sym_final, min_sessions=int(min_s) or None, max_sessions=int(max_s) or None,
            complete_sessions=tuple(comp_s) or None, complete_final=comp_final,
            length_column=None if length_col.startswith("(") else length_col)

try:
    samp = compute.conv_sample(skey, sd, rules)
except ValueError as e:
    st.error(f"The sample rules could not be applied: {esc(e, limit=None)}")
    st.stop()
if rules != conv.SampleRules():
    st.subheader("Sample")
    st.caption("Dyads removed by each inclusion rule, in order.")
    dataframe(samp.counts)
    with st.expander("Excluded dyads"):
        dataframe(samp.excluded)
sd = samp.data
skey = f"{skey}|{rules!r}"

tr = compute.conv_trajectories(skey, sd)

try:
    scores = compute.conv_scores(skey, sd, o["discrepancy"], o["transform"], o["score_method"])
except ValueError as e:
    st.error(f"Dyad scores could not be computed: {esc(e, limit=None)}")
    st.stop()
rel = scores.reliability.get(study)
if cross := scores.crossing_note(study):  # tiered: a few crossing dyads are a note, many change the reading
    (st.warning if scores.crossing.get(study, 0) >= CROSSING_WARN else st.info)(esc(cross, limit=None))
if rel is not None and pd.notna(rel) and rel < 0.2:
    st.warning(f"**The convergence analysis is not meaningful here.** The convergence score's reliability is "
               f"{fmt.num(rel)}: its differences between dyads are mostly rating noise, so any association with "
               "convergence (or its absence) says little. More rating occasions per dyad, or dyads that differ "
               "more in how they converge, are needed. The descriptive figures and the congruence models below "
               "do not depend on this score.")

# sections in lazy tabs (ui/tabs.py): only the open one is computed and drawn (issue 24); the growth models are
# fitted when their tab is opened
t_scores, t_disc, t_cong, t_growth = lazy_tabs("conv_tab", CONVERGENCE_TABS)
if t_scores.open:
    with t_scores:
        st.header("Patient and therapist ratings over treatment")
        st.caption("Mean ± 1 SD per session (higher = stronger alliance). Converging lines mean the two raters come to agree.")
        show_figure(compute.conv_figure("alliance_trajectories_figure", (skey,), (tr,), {"study": study}),
                    "alliance_trajectories", key="conv_traj")
        with st.expander("Per-session means and SDs"):
            show_table(tr, "alliance_trajectories", key="conv_traj_dl", title="Alliance per session (mean, SD)")
        okey = (skey, o["discrepancy"], o["transform"], o["score_method"])
        show_figure(compute.conv_figure("convergence_distribution_figure", okey, (scores,), {}),
                    "convergence_distribution", key="conv_dist")
        info = scores.transform_info.get(study, {})
        if info:
            st.caption(f"Skewness of the score: {fmt.num(info['skew_before'])} before, {fmt.num(info['skew_after'])} "
                       f"after the transform ({fmt.option_text(o['transform'])}).")
        if rel is not None and pd.notna(rel):
            st.caption(f"Reliability of the convergence score: {fmt.num(rel)} (share of its between-dyad variance that "
                       "is not rating noise; low values weaken every association with convergence).")
        # twelve small panels are the page's costliest drawing in the browser: drawn when opened (issue 24)
        if (exp := lazy_expander("Twelve dyads: ratings, fitted lines and fitted discrepancy", "conv_dyads_exp")).open:
            with exp:
                try:
                    fig = compute.conv_figure("dyad_trajectories_figure", okey, (sd,),
                                              {"n": 12, "seed": 0, "scores": scores})
                except ValueError:  # e.g. every dyad has a single rated session: nothing to draw a line through
                    st.info("No dyad has a convergence score (ratings by both raters on at least two sessions), so "
                            "there are no dyad trajectories to show.")
                else:
                    show_figure(fig, "dyad_trajectories", key="conv_dyads")
                    st.caption("Twelve randomly chosen dyads (fixed seed): ratings and their fitted lines; the shaded "
                               "band is the fitted discrepancy.")
        with st.expander("Messages about the scores"):
            for m in scores.messages:
                st.text(m)
        st.subheader("Dyad scores")
        show_table(scores.table, "dyad_scores", key="conv_scores_dl", manuscript=False)
if t_disc.open:
    with t_disc:
        st.header("Discrepancy over time")
        try:
            dy = scores.dyadic.get(study) or compute.conv_dyadic(skey, sd)
        except ValueError as e:
            dy = None
            st.info(f"The one-step dyadic model could not be fitted: {esc(e, limit=None)}")
        show_figure(compute.conv_figure("discrepancy_figure", (skey, o["score_method"], dy is None), (tr,),
                                         {"dyadic": dy, "study": study}), "discrepancy", key="conv_disc")
        if dy is not None:
            ch = dy.discrepancy_change
            st.markdown(
                "One-step dyadic model (both ratings stacked, role ±½ × time): the patient − therapist discrepancy changes by "
                f"**{fmt.num(ch['estimate'], 3)}** per session (SE {fmt.num(ch['se'], 3)}, {fmt.p_text(ch['pvalue'])}); a "
                "negative value while patients rate higher means the ratings converge."
            )
            for m in dy.messages:
                st.caption(esc(m, limit=None))
if t_cong.open:
    with t_cong:
        congruence_section(skey, sd, METHODS)
if t_growth.open:
    with t_growth:
        st.header("Symptom growth: Models 1–3")
        if "symptoms" not in sd.columns or sd["symptoms"].notna().sum() == 0:
            st.info("No symptom scores in this study.")
            st.stop()
        try:
            shape = compute.conv_shape(skey, sd, o["time"])
            with st.expander(md("Preparatory analysis: {s}", s=shape.summary())):
                st.caption("Null model with time t or log(t − first t + 1), random intercept and slope, ML; lower AIC = "
                           "better fit (the paper's linear vs log-linear comparison).")
                dataframe(shape.table)
            with st.spinner("Fitting growth models…"):
                gr = compute.conv_growth(skey, sd, scores, (o["discrepancy"], o["transform"], o["score_method"]),
                                         tuple(sorted(o.items())))
        except ValueError as e:
            st.error(f"The growth models could not be fitted: {esc(e, limit=None)}")
            st.stop()
        for m in gr.messages:
            if m.startswith(("Two levels", "Three levels", "Symptom slopes vary", "Model(s)")):
                st.info(esc(m, limit=None))
        singular = [str(k) for k, g in gr.models.items() if g.fit.singular]
        if singular:
            st.info(md("Model(s) {models}: a random-effect variance was estimated at zero (singular fit). "
                       "The data cannot separate that variance from the residual; its estimate and its SE are not "
                       "informative, and the AIC comparison of these models is approximate.", models=", ".join(singular)))
        if gr.slope_test is not None and gr.slope_test["pvalue"] >= 0.05:
            st.warning("The symptom slopes do not vary significantly between dyads, so there is little to predict: "
                       "the paper's precondition for Models 2–3 is not met.")
        table = conv.models_table(gr)
        st.caption("Laid out like the paper's Table I: estimate (SE) and Satterthwaite p; variance components with Wald "
                   "SEs; likelihood-ratio tests with boundary-corrected p. AIC (REML) compares only models with the same "
                   "fixed effects; use AIC (ML) to compare Models 1–3.")
        show_table(table, "growth_models_table", key="conv_table_dl", title="Growth models of symptoms (Models 1–3)")
        table_download(gr.to_frame(), "growth_models_fixed_effects", key="conv_fixed_dl",
                       label="Download all fixed effects (CSV)")
        with st.expander("Reproduce Models 1–3 in R"):
            growth_r_download(gr, compute.data_key(loaded) if df is loaded else None)
        with st.expander("Model messages"):
            for mnum, gm in gr.models.items():
                for w in gm.warnings:
                    st.text(f"Model {mnum}: {w}")
        show_figure(compute.conv_figure("symptom_growth_figure", (skey, tuple(sorted(o.items()))), (gr,), {"model": 2}),
                    "symptom_growth_by_convergence", key="conv_growth")

        with st.expander("Power for convergence × time at this N (simulation)"):
            st.caption("Simulated data sets with this study's number of dyads and score sessions; Model 2 fitted to each. "
                       "Includes the attenuation by the score's unreliability (the paper's cross-sectional approximation "
                       "needed N = 44 / 82 / 191 for β = .4 / .3 / .2).")
            betas = st.multiselect("Standardized effects β", [0.2, 0.3, 0.4, 0.5], default=[0.3], key="conv_pw_beta")
            n_sim = st.number_input("Simulations per β", 20, 1000, 100, step=20, key="conv_pw_nsim")
            clicked = st.button("Run the power simulation", key="conv_pw_run", disabled=not betas)
            sess = tuple(sorted(int(s) for s in sd.loc[sd["alliance"].notna(), "session"].unique()))
            try:  # off the page's thread, with a progress bar (ui/jobs.py); the result stays until the inputs change
                pw = jobs.run(conv.convergence_power, gr.models[min(gr.models)].n_dyads, sess, betas=tuple(betas),
                              n_sim=int(n_sim), start=clicked and bool(betas), widget="conv_pw", label="Simulating…")
            except ValueError as e:
                st.error(esc(e, limit=None))
            else:
                if pw is not None:
                    st.write(md("{s}", s=pw.summary()))
                    dataframe(pw.table)

        if len(studies) > 1 and preset is None:
            st.header("Convergence × time, pooled across studies")
            st.caption("Model 2's convergence × time coefficient per study, standardized (symptom SDs per session per SD of "
                       "convergence), pooled with a random-effects model (REML).")
            try:
                with st.spinner("Fitting Model 2 in every study…"):
                    per, meta = compute.conv_pooled(key, df, o["discrepancy"], o["transform"], o["time"])
            except ValueError as e:
                st.error(esc(e, limit=None))
            else:
                show_table(per, "pooled_convergence", key="conv_pooled_dl", title="Convergence × time per study")
                if meta is not None:
                    show_figure(plots_meta.forest_figure(meta, title="Convergence × time (Model 2)",
                                                       xlabel="Standardized coefficient (negative = steeper improvement)"),
                                "pooled_convergence_forest", key="conv_forest")
                    st.write(esc(meta.summary(), limit=None))
