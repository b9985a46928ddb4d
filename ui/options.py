"""The stage-1 option panel shared by the Lagged and Pooled pages.

Widget values are copied into a plain session-state dict (``lag_options``)
after each run and written back into the widget keys (``ui.persist.widget``)
before the widgets are drawn, so choices survive switching pages (Streamlit
forgets the state of widgets that are not on the current page). The options
are also kept in the URL (``ui.persist.url_params``), so a link reproduces them.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.lagged import LagOptions
from analysis.meta import METHODS
from ui import compute, persist
from ui.persist import Param

STORE = "lag_options"
DIRECTIONS = {
    "alliance_to_symptoms": "Alliance → next-session symptoms",
    "symptoms_to_alliance": "Symptoms → next-session alliance",
}
CENTERING = {
    "person_mean": "Person-mean (within / between)",
    "detrended": "Detrended (within / between)",
    "grand_mean": "Grand-mean (total effect)",
    "none": "None (total effect)",
}
TIME_TREND = {"none": "No time trend", "fixed": "Fixed time trend", "fixed_random": "Fixed + random time slope"}
M = "/methods#"
LINKS = {
    "std": M + "2-standardization-default-on",
    "center": M + "3-centering-of-a-time-varying-variable-x",
    "lag": M + "4-lags",
    "stage1": M + "5-stage-1-lagged-model-per-study",
    "stage2": M + "6-stage-2-random-effects-pooling",
}


def session_bounds(df: pd.DataFrame) -> tuple[int, int]:
    """First and last session number of ``df`` (stored with the loaded data set, so not recomputed per rerun)."""
    ds = st.session_state.get("dataset")
    if ds is not None and ds.get("df") is df and ds.get("session_bounds"):
        return ds["session_bounds"]
    return int(df["session"].min()), int(df["session"].max())


def _defaults(df: pd.DataFrame) -> dict:
    o = LagOptions()
    smin, smax = session_bounds(df)
    return {
        "centering": o.centering,
        "lag": o.lag,
        "pairing": o.pairing,
        "directions": list(o.directions),
        "window": (smin, smax),
        "standardize": o.standardize,
        "control_prior_outcome": o.control_prior_outcome,
        "time_trend": o.time_trend,
        "cross_level": o.cross_level,
        "estimator": o.estimator,
        "pooling_method": o.pooling_method,
        "test": o.test,
        "outcome_moderator": o.outcome_moderator,
        "covariates": list(o.covariates),
        "standardize_by": o.standardize_by,
        "df_method": o.df_method,
    }


def patient_level_columns(df: pd.DataFrame) -> list[str]:
    """Extra columns with one value per patient that vary within some study: candidate patient-level
    covariates (METHODS §1, §5). Columns constant within every study are study-level (meta-regression)."""
    canon = {"study", "patient", "session", "alliance", "symptoms", "therapist_alliance", "therapist"}
    out = []
    for c in df.columns:
        if c in canon or not df[c].notna().any():
            continue
        per_patient = df.groupby(["study", "patient"], observed=True)[c].nunique(dropna=True)
        per_study = df.groupby("study", observed=True)[c].nunique(dropna=True)
        if (per_patient <= 1).all() and (per_study > 1).any():
            out.append(str(c))
    return out


def stored(df: pd.DataFrame) -> dict:
    """The user's current choices (defaults on first use or after a new data set)."""
    smin, smax = session_bounds(df)
    opts = st.session_state.get(STORE)
    if opts is None or opts.get("_bounds") != (smin, smax):
        opts = _defaults(df)
        opts["_bounds"] = (smin, smax)
        persist.forget("opt_")
        st.session_state[STORE] = opts
    return opts


def store_options(options: LagOptions, df: pd.DataFrame) -> None:
    """Make ``options`` the current choices for ``df`` (e.g. restored from a bundle)."""
    smin, smax = session_bounds(df)
    opts = {k: v for k, v in options.to_dict().items() if k in _defaults(df)}
    opts["directions"] = list(options.directions)
    opts["window"] = tuple(options.sessions) if options.sessions is not None else (smin, smax)
    opts["_bounds"] = (smin, smax)
    persist.forget("opt_")
    st.session_state[STORE] = opts


def url_spec(df: pd.DataFrame) -> dict[str, Param]:
    """The stage-1 options as URL parameters (the session window within the data's sessions)."""
    smin, smax = session_bounds(df)
    return {
        "centering": Param("opt_centering", "choice", tuple(CENTERING)),
        "directions": Param("opt_directions", "choices", tuple(DIRECTIONS)),
        "sessions": Param("opt_window", "range", lo=smin, hi=smax),
        "lag": Param("opt_lag", "choice", (1, 2, 3, 0)),
        "pairing": Param("opt_pairing", "choice", ("session", "next_observed")),
        "standardize": Param("opt_standardize", "bool"),
        "std_by": Param("opt_standardize_by", "choice", ("total", "within")),
        "prior": Param("opt_control_prior_outcome", "bool"),
        "trend": Param("opt_time_trend", "choice", tuple(TIME_TREND)),
        "cross": Param("opt_cross_level", "bool"),
        "outmod": Param("opt_outcome_moderator", "bool"),
        "estimator": Param("opt_estimator", "choice", ("mixed", "fixed_effects")),
        "df": Param("opt_df_method", "choice", ("z", "satterthwaite")),
    }


POOL_URL = {
    "tau2": Param("opt_pooling_method", "choice", tuple(METHODS)),
    "test": Param("opt_test", "choice", ("z", "knha")),
}


def to_lag_options(opts: dict, df: pd.DataFrame) -> LagOptions:
    smin, smax = opts["_bounds"]
    window = tuple(opts["window"])
    return LagOptions(
        centering=opts["centering"],
        lag=int(opts["lag"]),
        pairing=opts["pairing"],
        directions=("symptoms_to_alliance",) if int(opts["lag"]) == 0 else tuple(
            d for d in DIRECTIONS if d in opts["directions"]),
        sessions=None if window == (smin, smax) else (int(window[0]), int(window[1])),
        standardize=bool(opts["standardize"]),
        control_prior_outcome=bool(opts["control_prior_outcome"]),
        time_trend=opts["time_trend"],
        cross_level=bool(opts["cross_level"]),
        estimator=opts["estimator"],
        pooling_method=opts.get("pooling_method", "REML"),
        test=opts.get("test", "z"),
        outcome_moderator=bool(opts.get("outcome_moderator", False)),
        covariates=tuple(c for c in opts.get("covariates", []) if c in df.columns),
        standardize_by=opts.get("standardize_by", "total"),
        df_method=opts.get("df_method", "z") if opts["estimator"] == "mixed" else "z",
    )


def _w(name: str, opts: dict) -> str:
    """Widget key for option ``name``, seeded so the widget shows the stored choice.

    Re-assigning the key (even to its own value) matters: a value left by the
    same widget on another page is otherwise ignored and the widget falls back
    to its default.
    """
    return persist.widget(f"opt_{name}", opts[name])


def option_panel(df: pd.DataFrame, container=None) -> LagOptions:
    """Draw the stage-1 options and return them as a :class:`LagOptions`."""
    c = container or st.sidebar
    opts = stored(df)
    smin, smax = opts["_bounds"]
    persist.url_params("lag", url_spec(df))
    with c:
        st.markdown("#### Model options")
        opts["centering"] = st.radio(
            "Centering", list(CENTERING), format_func=CENTERING.get, key=_w("centering", opts),
            help="Person-mean splits each predictor into a within-patient deviation and a between-patient mean "
                 f"(default). Detrended removes each patient's own linear trend first. [Methods §3]({LINKS['center']})",
        )
        opts["directions"] = st.multiselect(
            "Directions", list(DIRECTIONS), format_func=DIRECTIONS.get, key=_w("directions", opts),
            help="Which lagged effects to estimate: alliance at session t → symptoms at t + lag, "
                 f"and symptoms at t → alliance at t + lag. [Methods §5]({LINKS['stage1']})",
        )
        if smax > smin:
            opts["window"] = st.slider(
                "Sessions analysed", smin, smax, key=_w("window", opts),
                help="Only sessions in this window are used for every mean, SD, trend and pair "
                     f"(the IPD meta-analysis used sessions 1–7). [Methods §1]({M}1-data)",
            )
        opts["lag"] = st.selectbox(
            "Lag (sessions)", [1, 2, 3, 0], key=_w("lag", opts),
            format_func=lambda v: "0: alliance rated later in the same session" if v == 0 else str(v),
            help="Pair predictors at session t with the outcome at session t + lag. Lag 0 (symptoms → alliance "
                 "only): symptoms rated before session t predict the alliance rated after it. "
                 f"[Methods §4]({LINKS['lag']})",
        )
        if opts["lag"] == 0 and list(opts["directions"]) != ["symptoms_to_alliance"]:
            opts["directions"] = ["symptoms_to_alliance"]
            st.caption("Lag 0 is for symptoms → alliance only, so only that direction is estimated.")
        opts["pairing"] = st.radio(
            "Pairing", ["session", "next_observed"], key=_w("pairing", opts),
            format_func={"session": "By session number (default)", "next_observed": "Next observed session"}.get,
            help="By session number: if session t + lag was not observed the pair is missing. Next observed: "
                 f"pair each row with the patient's next observed row. [Methods §4]({LINKS['lag']})",
        )
        with st.expander("More options"):
            opts["standardize"] = st.checkbox(
                "Standardize within study", key=_w("standardize", opts),
                help="z-scores per study so that coefficients are comparable across instruments "
                     f"(needed for pooling). [Methods §2]({LINKS['std']})",
            )
            opts["standardize_by"] = st.radio(
                "Standardize by", ["total", "within"], key=_w("standardize_by", opts),
                format_func={"total": "Total SD (all values of the study)",
                             "within": "Within-patient SD"}.get,
                disabled=not opts["standardize"],
                help="Which SD the z-scores divide by. Within-patient SD puts the coefficients in units of "
                     f"session-to-session variation. [Methods §2]({LINKS['std']})",
            )
            opts["control_prior_outcome"] = st.checkbox(
                "Control for the prior outcome", key=_w("control_prior_outcome", opts),
                help="Adds the outcome at session t (within and between parts) as predictors. "
                     f"Causes a small downward (Nickell) bias in its own coefficient. [Methods §5]({LINKS['stage1']})",
            )
            opts["time_trend"] = st.selectbox(
                "Time trend", list(TIME_TREND), format_func=TIME_TREND.get, key=_w("time_trend", opts),
                help=f"Adds grand-mean-centered session as a fixed effect (and optionally a random slope). "
                     f"[Methods §3]({LINKS['center']})",
            )
            opts["cross_level"] = st.checkbox(
                "Cross-level interaction (between × within)", key=_w("cross_level", opts),
                help=f"Adds the product of the between and within parts of the predictor. [Methods §5]({LINKS['stage1']})",
            )
            hybrid = opts["centering"] in ("person_mean", "detrended")
            opts["outcome_moderator"] = st.checkbox(
                "Outcome's patient mean moderates the within effect", key=_w("outcome_moderator", opts),
                disabled=not (hybrid and opts["control_prior_outcome"]),
                help="Adds the product of the patient's average outcome (between part) and the within predictor, "
                     "e.g. whether the alliance → symptoms effect differs for patients with higher average "
                     f"symptoms. Needs within/between centering and the prior outcome. [Methods §5]({LINKS['stage1']})",
            )
            if not (hybrid and opts["control_prior_outcome"]):
                opts["outcome_moderator"] = False
            cands = compute.patient_level_columns(df)  # (cached: a groupby per extra column)
            opts["covariates"] = [c for c in opts.get("covariates", []) if c in cands]
            if cands:
                st.session_state["opt_covariates"] = [
                    c for c in st.session_state.get("opt_covariates", opts["covariates"]) if c in cands]
                opts["covariates"] = st.multiselect(
                    "Patient-level covariates (moderators)", cands, key="opt_covariates",
                    help="Columns with one value per patient (e.g. treatment, diagnosis, age). Each enters as a "
                         "main effect and as a moderator of the within effect (within × covariate). "
                         f"[Methods §5]({LINKS['stage1']})",
                )
            else:
                st.caption("Patient-level covariates: none in the data (a column with one value per patient, e.g. "
                           "treatment or age, can moderate the within effect).")
            opts["estimator"] = st.radio(
                "Estimator", ["mixed", "fixed_effects"], key=_w("estimator", opts),
                format_func={"mixed": "Random-intercept model (REML)",
                             "fixed_effects": "Fixed effects (demeaned OLS, cluster-robust SE)"}.get,
                help=f"The fixed-effects estimator cannot estimate between-patient terms. [Methods §5]({LINKS['stage1']})",
            )
            opts["df_method"] = st.radio(
                "Tests of the study models", ["z", "satterthwaite"], key=_w("df_method", opts),
                format_func={"z": "Wald z (default)", "satterthwaite": "t with Satterthwaite df (as lmerTest)"}.get,
                disabled=opts["estimator"] != "mixed",
                help="Satterthwaite t tests are slower; they matter for small studies. "
                     f"[Methods §5]({LINKS['stage1']})",
            )
    st.session_state[STORE] = opts
    if not opts["directions"]:
        st.warning("Choose at least one direction in the option panel.")
        st.stop()
    return to_lag_options(opts, df)


def pooling_panel(df: pd.DataFrame, container=None) -> LagOptions:
    """Stage-2 choices (estimator of τ², test) on top of the stage-1 options."""
    c = container or st.sidebar
    opts = stored(df)
    persist.url_params("pool", POOL_URL)
    with c:
        st.markdown("#### Pooling")
        opts["pooling_method"] = st.selectbox(
            "τ² estimator", ["REML", *(m for m in METHODS if m != "REML")], key=_w("pooling_method", opts),
            help="How the between-study variance is estimated. REML is the default; FE assumes no heterogeneity. "
                 f"[Methods §6]({LINKS['stage2']})",
        )
        opts["test"] = st.radio(
            "Test and CI", ["z", "knha"], key=_w("test", opts),
            format_func={"z": "Normal (z)", "knha": "Knapp–Hartung (t, k − 1 df)"}.get,
            help="Knapp–Hartung widens intervals to reflect uncertainty in τ²; recommended with few studies. "
                 f"[Methods §6]({LINKS['stage2']})",
        )
    st.session_state[STORE] = opts
    return to_lag_options(opts, df)
