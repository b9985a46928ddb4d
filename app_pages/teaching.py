"""Teaching page: a live simulation of total, within- and between-patient lagged effects
and of Nickell bias (METHODS §3–§5). It never uses the loaded data set."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from analysis import formatting as fmt
from analysis import plots_teaching
from analysis import teaching as tg
from analysis.options import declared
from ui import compute, jobs
from ui.declared import help_text
from ui.downloads import show_figure, table_download
from ui.persist import TEACH_KEYS, TEACH_SLIDERS, TEACHING, url_params
from ui.safe import md
from ui.tables import show_table
from ui.tabs import TEACHING_TABS, lazy_tabs

_OPT = {o.name: o for o in declared(tg.TeachingParams)}

M = "/methods#"
LINKS = {
    "center": M + "3-centering-of-a-time-varying-variable-x",
    "stage1": M + "5-stage-1-lagged-model-per-study",
}
PRESENT_FONT = 18


def _signed_slider(label: str, lo: float, hi: float, default: float, step: float, key: str, help: str) -> float:
    """A slider over lo…hi that prints negative values with a true minus (Streamlit's own slider formats
    with sprintf, a hyphen-minus): a select slider over the grid, each value written by the one formatter.
    A value from a link or a bundle that is off the grid moves to the nearest grid value."""
    grid = [round(lo + i * step, 2) for i in range(int(round((hi - lo) / step)) + 1)]
    if key in st.session_state and st.session_state[key] not in grid:
        v = float(st.session_state[key])
        st.session_state[key] = min(grid, key=lambda g: abs(g - v))
    return st.select_slider(label, grid, format_func=lambda v: fmt.num(v, 2), key=key, help=help,
                            value=_now(key, default))


def _now(key: str, default):
    """A widget's value as its default too (from a link, else the declared default): a rerun the browser asks
    for before it has applied a value set in session state (the background job's first poll, right after a
    shared link loads) carries the widget's default, which is then this value, not the declared one."""
    return st.session_state.get(key, default)


def _wrap(text, width: int):
    """Plotly title text broken into lines of at most ``width`` characters (existing breaks kept)."""
    if not text:
        return text
    lines = []
    for part in str(text).split("<br>"):
        line = ""
        for word in part.split(" "):
            if line and len(line) + 1 + len(word) > width:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    return "<br>".join(lines)


def _show(build, args: tuple, name, key):
    """Show ``build(*args)`` (a figure of analysis.plots_teaching, made once per simulation settings and shared:
    ui.compute.figure); in presentation mode a copy of it with projector-sized text."""
    fig = compute.figure(build, (repr(params),), *args)
    if st.session_state.get("teach_present"):
        fig = go.Figure(fig.to_dict())  # (the shared figure is read-only)
        fig.update_layout(font={"size": PRESENT_FONT}, title_font={"size": PRESENT_FONT + 2},
                          legend={"orientation": "h", "y": -0.28, "yanchor": "top", "x": 0},
                          margin={"t": 70, "b": 170}, height=max(560, int(fig.layout.height or 450) + 120))
        fig.update_xaxes(tickfont_size=PRESENT_FONT - 2, title_font_size=PRESENT_FONT - 2)
        fig.update_yaxes(tickfont_size=PRESENT_FONT - 2, title_font_size=PRESENT_FONT - 2)
        # projector-sized axis titles must fit their panel: wrapped into short lines (issue 23 #8)
        fig.for_each_xaxis(lambda ax: ax.update(title_text=_wrap(ax.title.text, 48)))
        fig.for_each_yaxis(lambda ax: ax.update(title_text=_wrap(ax.title.text, 30)))
        fig.update_annotations(font_size=PRESENT_FONT - 4)
    show_figure(fig, name, key=key)


st.title("Teaching: within, between and total effects")
# The URL (a reload or a shared link) is applied before any of its widgets exists, the toggle included.
url_params("teaching", TEACHING)  # scenario, seed and presentation mode in the URL (shareable link)
present = st.toggle(
    "Presentation mode (projector)", key="teach_present",
    help="Larger chart text, the settings beside the figures instead of in the sidebar, and the figures first "
         "(for 1280×720 screens).",
)
if not present:
    st.markdown(
        "A **live simulation**. We invent patients whose alliance and symptoms follow a model with *known* "
        "effects, fit the same lagged models as the **Lagged effects** page, and check which estimate recovers "
        "which truth. Move the sliders (in the sidebar); everything below updates. This page does not use your "
        "loaded data."
    )
    st.caption(
        "Scales: alliance higher = stronger; symptoms higher = more severe. Units are the simulation's own: "
        "1 unit = 1 standard deviation of the patients' true average levels."
    )

# Presentation mode collapses the sidebar (the projector's 1280 px go to the figures); leaving it opens it again.
if present != st.session_state.get("_teach_sidebar_collapsed", False):
    st.set_page_config(initial_sidebar_state="collapsed" if present else "expanded")
    st.session_state["_teach_sidebar_collapsed"] = present
if present:
    controls, body = st.columns([1, 4], gap="small")
else:
    controls, body = st.sidebar, st.container()

with controls:
    st.markdown("#### Simulation settings")
    def _slider(name, step, **kw):  # label, help, range and default from the declaration (analysis.teaching)
        o = _OPT[name]
        lo, hi = TEACH_SLIDERS[name]
        if lo < 0:  # a signed range: printed with a true minus (_signed_slider)
            return _signed_slider(o.label, lo, hi, kw.pop("value", o.default), step, TEACH_KEYS[name], help_text(o))
        return st.slider(o.label, lo, hi, _now(TEACH_KEYS[name], kw.pop("value", o.default)), step,
                         key=TEACH_KEYS[name], help=help_text(o), **kw)

    within_effect = _slider("within_effect", 0.05)
    between_corr = _slider("between_corr", 0.05)
    autoregression = _slider("autoregression", 0.05)
    feedback = _slider("feedback", 0.05)
    n_sessions = _slider("n_sessions", 1)
    n_patients = _slider("n_patients", 10)
    missing_pct = st.slider("Missing sessions (%)", 0, 50, _now("teach_missing", int(round(100 * _OPT["missing"].default))),
                            5, key="teach_missing", help=help_text(_OPT["missing"]))
    seed = st.number_input(_OPT["seed"].label, min_value=0, max_value=TEACH_SLIDERS["seed"][1],
                           value=_now("teach_seed", _OPT["seed"].default), step=1, key="teach_seed",
                           help=help_text(_OPT["seed"]))
    control = st.checkbox(_OPT["control_prior"].label, value=_now("teach_control", False), key="teach_control",
                          help=help_text(_OPT["control_prior"]))

params = tg.TeachingParams(
    within_effect=float(within_effect), between_corr=float(between_corr), autoregression=float(autoregression),
    n_sessions=int(n_sessions), n_patients=int(n_patients), missing=missing_pct / 100.0, seed=int(seed),
    control_prior=bool(control), feedback=float(feedback),
)
with body:
    with st.spinner("Simulating and fitting…"):
        sample = compute.teaching_sample(params)
        data, est, scatter = sample.data, sample.estimates, sample.scatter

    st.caption(
        f"This simulation: {est.n_patients} patients with a usable pair, {est.n_pairs:,} session pairs "
        f"(median {est.median_sessions:g} observed sessions per patient)."
    )
    table_download(data, "teaching_simulated_data", key="teach_dl_data", label="Download the simulated data (CSV)")

    # ----------------------------------------------------------------------------------------- 1
    if present:  # the figure first, beside the settings
        _show(plots_teaching.estimates_figure, (est,), "teaching_estimates", key="teach_estimates")
    st.header("1. Total, within and between: which estimate finds the truth?")
    st.markdown(
        "Three coefficients from two models fitted to the same data (raw units, lag 1, random intercept per "
        f"patient; [Methods §3]({LINKS['center']}), [§5]({LINKS['stage1']})):\n"
        "- **Total**: symptoms at session t+1 on alliance at session t *as measured* (no centering).\n"
        "- **Within-patient**: on alliance at t *minus the patient's own average* — does a better-than-usual "
        "session predict the next one?\n"
        "- **Between-patient**: on the patient's *average* alliance (same model as within) — do patients with a "
        "stronger alliance differ from other patients?"
        + ("\n\nAll three models also include the symptoms at session t." if control else "")
    )
    for m in est.messages:  # the fits' routine notes (singular fit, Nickell bias): information, not alarms
        st.info(md("{m}", m=m))
    if not present:
        _show(plots_teaching.estimates_figure, (est,), "teaching_estimates", key="teach_estimates")
    # the replications and the Nickell curve run off the page's thread (ui/jobs.py): a slider redraws the
    # estimates at once, and these follow when ready (issue 24)
    rep = jobs.run(tg.replicate, params.replace(seed=1), n_rep=compute.TEACHING_REPLICATIONS, start=True,
                   widget="teach_rep", label="Simulating the same settings with other seeds…")
    st.markdown(tg.estimates_sentence(est, replication=rep))
    if rep is not None:
        st.caption(md("Chance or bias? The same settings were simulated {n} more times (other seeds): {s}",
                      n=rep.n_rep, s=rep.summary()))
    st.markdown(tg.between_sentence(est, control))

    frame = est.to_frame()
    st.table(pd.DataFrame({
        "Model": frame["model"],
        "Estimate (95% CI)": [f"{tg.fmt(e)} ({tg.fmt(lo)} to {tg.fmt(hi)})" if np.isfinite(e) else "not estimated"
                              for e, lo, hi in zip(frame["estimate"], frame["ci_low"], frame["ci_high"])],
        "True value": [tg.fmt(v) if np.isfinite(v) else "—" for v in frame["true_value"]],
        "The true value is…": frame["true_value_is"],
        "In plain words (symptoms: higher = more severe)": frame["in_plain_words"],
    }).set_index("Model"))
    table_download(est.to_frame(), "teaching_estimates", key="teach_dl_estimates")

    with st.expander("What counts as the “truth” here?"):
        t = est.truth
        st.markdown(
            f"- **Within-patient**: the effect you set, {tg.fmt(t.within_direct)}. In this simulation alliance "
            "has no carry-over from session to session, so this is the true within-patient slope whether or not "
            "prior symptoms are controlled.\n"
            "- **Between-patient, no control for prior symptoms**: the slope of the patients' *true* average "
            f"symptoms on their *true* average alliance, correlation × SD ratio = {params.between_corr:.2f} (both SDs "
            "are 1). The model only sees *observed* averages over a few sessions, which are noisy (reliability "
            f"≈ {t.reliability:.2f} with about {int(t.sessions_used)} sessions) and carry a little of the within "
            f"effect, so its large-sample value is {t.between_expected:.2f} (open diamond).\n"
            "- **Between-patient, with control for prior symptoms**: the model then compares patients who have the "
            "same average symptoms. In this simulation a patient's symptom level is fully described by their true "
            "average, so the true value is 0 — the between-patient association has been absorbed by the prior "
            "symptoms' between part.\n"
            "- **Total**: there is no single true value. The random-intercept model blends the within- and "
            "between-patient information; with several sessions per patient the within part dominates."
        )

    # sections 2–4 in lazy tabs (ui/tabs.py): a slider move recomputes section 1 and the open tab only, and the
    # simulations of the closed tabs do not start (a class of students moving sliders; issue 24)
    t2, t3, t4 = lazy_tabs("teach_tab", TEACHING_TABS)
    if t2.open:
        with t2:
            st.header("2. The same patients, two levels, opposite directions")
            st.markdown(
                "**Left**: one dot per patient — their average alliance against their average symptoms. "
                "**Right**: one dot per pair of sessions — how much stronger than usual the alliance was at session t, "
                "against how much more severe than usual the symptoms were at session t+1. The lines are simple "
                "least-squares slopes (no control for prior symptoms), so they differ a little from the model estimates above."
            )
            _show(plots_teaching.scatter_figure, (scatter,), "teaching_within_between_scatter", key="teach_scatter")
            st.markdown(tg.scatter_sentence(scatter.between_slope, scatter.within_slope))

    if t3.open:
        with t3:
            st.header("3. Nickell bias: with few sessions, symptoms look less stable than they are")
            st.markdown(
                "When the prior symptoms are person-mean centered, the patient's own average is computed from the same "
                "few sessions, so the carry-over from one session to the next (the autoregression) is underestimated by "
                f"about −(1 + ρ)/(T − 1) with T sessions per patient ([Methods §5]({LINKS['stage1']})). Each blue point "
                f"is one simulated study with {compute.NICKELL_PATIENTS} patients, T complete sessions and your effect, "
                "correlation, autoregression and seed, fitted with prior symptoms controlled. Grey: the within "
                "alliance → symptoms estimate minus its truth, which is biased much less."
            )
            curve = jobs.run(tg.nickell_curve, params.replace(n_sessions=10, n_patients=300, missing=0.0, control_prior=True),
                             compute.NICKELL_SESSIONS, n_patients=compute.NICKELL_PATIENTS, start=True,
                             widget="teach_nickell", label="Simulating one study per number of sessions…")
            if curve is not None:
                _show(plots_teaching.nickell_figure, (curve, params.autoregression), "teaching_nickell_bias",
                      key="teach_nickell")
                st.markdown(tg.nickell_sentence(curve, params.autoregression))
                st.caption(
                    "T in the formula is the number of pairs per patient (sessions − 1), as in Methods §5. It is a "
                    "large-sample approximation: from about 8 sessions on it is close; with fewer sessions the real bias "
                    "lies between the formula with T = pairs and with T = sessions (dotted: click its legend entry)."
                )
                table_download(curve, "teaching_nickell_curve", key="teach_dl_nickell")

    if t4.open:
        with t4:
            st.header("4. Feedback and latent centering: RI-CLPM and dynamic panel model")
            st.markdown(
                "Move the **feedback** slider: when symptoms also drive the next alliance, the person-mean model's "
                "alliance → symptoms estimate drifts from the truth. The RI-CLPM and the ML-SEM dynamic panel model "
                "separate each patient's stable level inside the model (no person means are subtracted), so they "
                "recover the truth (METHODS §15)."
            )
            latent = jobs.run(tg.latent_estimates, _data=data, params=params, _est=est, key="teaching", start=True,
                              widget="teach_latent", label="Fitting the RI-CLPM and the dynamic panel model…")
            if latent is not None:
                _show(plots_teaching.latent_figure, (latent,), "teaching_latent_models", key="teach_latent")
                show_table(latent, "teaching_latent_models", key="teach_latent_dl", manuscript=False)
