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

from analysis import lagged, meta
from analysis.columns import patient_level_columns  # noqa: F401 (kept importable from ui.options)
from analysis.lagged import LagOptions
from ui import compute, declared, persist, safe
from ui.persist import Param

STORE = "lag_options"
_KEYS = {"sessions": "window"}  # the store's name of an option, where it differs from the option's


def decl(name: str):
    """The declaration (:class:`analysis.options.Option`) of LagOptions field ``name``."""
    return declared.find(LagOptions, name)


#: Words for each direction, centering and time trend (from their declarations in analysis.lagged).
DIRECTIONS, CENTERING, TIME_TREND = (declared.labels(LagOptions, n) for n in ("directions", "centering", "time_trend"))
M = declared.METHODS_PAGE
LINKS = {
    "std": M + lagged.M_STD,
    "center": M + lagged.M_CENTER,
    "lag": M + lagged.M_LAG,
    "stage1": M + lagged.M_STAGE1,
    "stage2": M + meta.TAU2_METHOD.methods,
}


def session_bounds(df: pd.DataFrame) -> tuple[int, int]:
    """First and last session number of ``df`` (stored with the loaded data set, so not recomputed per rerun)."""
    ds = st.session_state.get("dataset")
    if ds is not None and ds.get("df") is df and ds.get("session_bounds"):
        return ds["session_bounds"]
    return int(df["session"].min()), int(df["session"].max())


def _store_key(name: str) -> str:
    return _KEYS.get(name, name)


def _defaults(df: pd.DataFrame) -> dict:
    bounds = session_bounds(df)
    return {_store_key(o.name): declared.widget_value(o, o.default, bounds) for o in declared.declared(LagOptions)}


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
    bounds = session_bounds(df)
    opts = {_store_key(o.name): declared.widget_value(o, getattr(options, o.name), bounds)
            for o in declared.declared(LagOptions)}
    opts["_bounds"] = bounds
    persist.forget("opt_")
    st.session_state[STORE] = opts


def _key(name: str) -> str:
    return f"opt_{_store_key(name)}"


STAGE2 = ("pooling_method", "test")


def url_spec(df: pd.DataFrame) -> dict[str, Param]:
    """The stage-1 options as URL parameters (the session window within the data's sessions)."""
    return declared.url_spec(LagOptions, _key, names=[o.name for o in declared.declared(LagOptions)
                                                      if o.name not in STAGE2],
                             bounds={"sessions": session_bounds(df)})


#: The stage-2 options as URL parameters.
POOL_URL = declared.url_spec(LagOptions, _key, names=STAGE2)


def to_lag_options(opts: dict, df: pd.DataFrame) -> LagOptions:
    """The stored widget values as :class:`LagOptions`: an option that no model can fit with the others
    (its constraint in ``LagOptions.CONSTRAINTS``) is analysed at its default, as its widget says."""
    bounds = opts["_bounds"]
    vals = {}
    for o in declared.declared(LagOptions):
        k = _store_key(o.name)
        vals[o.name] = declared.option_value(o, opts[k], bounds) if k in opts else o.default
    if vals["lag"] == 0:
        vals["directions"] = ("symptoms_to_alliance",)
    else:
        vals["directions"] = tuple(d for d in DIRECTIONS if d in vals["directions"])
    vals["covariates"] = tuple(c for c in vals["covariates"] if c in df.columns)
    for name in ("cross_level", "outcome_moderator", "time_trend", "df_method"):
        if vals[name] in declared.impossible(LagOptions, vals, name):
            vals[name] = decl(name).default
    return LagOptions(**vals)


def _w(name: str, opts: dict) -> str:
    """Widget key for option ``name``, seeded so the widget shows the stored choice.

    Re-assigning the key (even to its own value) matters: a value left by the
    same widget on another page is otherwise ignored and the widget falls back
    to its default.
    """
    return persist.widget(f"opt_{name}", opts[name])


def _draw(name: str, opts: dict, container, constrained: bool = True, **kw):
    """The declared widget of LagOptions field ``name``, seeded with the stored choice (``constrained``: values
    that cannot be fitted with the other choices disable it or fall back to the default)."""
    return declared.draw(decl(name), _w(_store_key(name), opts), container, cls=LagOptions if constrained else None,
                         values=to_lag_values(opts), **kw)


def to_lag_values(opts: dict) -> dict:
    """The stored choices under the option names (what the constraints read)."""
    return {o.name: opts[_store_key(o.name)] for o in declared.declared(LagOptions) if _store_key(o.name) in opts}


def option_panel(df: pd.DataFrame, container=None) -> LagOptions:
    """Draw the stage-1 options and return them as a :class:`LagOptions`."""
    c = container or st.sidebar
    opts = stored(df)
    smin, smax = opts["_bounds"]
    applied = persist.url_params("lag", url_spec(df))
    linked = {o.name: o for o in declared.declared(LagOptions) if o.url in applied}
    link_values = {n: st.session_state.get(_key(n)) for n in linked}  # as the link set them
    with c:
        st.markdown("#### Model options")
        opts["stage1"] = _draw("stage1", opts, st)
        opts["centering"] = _draw("centering", opts, st)
        opts["directions"] = _draw("directions", opts, st)
        if smax > smin:
            opts["window"] = _draw("sessions", opts, st, min_value=smin, max_value=smax)
        opts["lag"] = _draw("lag", opts, st, constrained=False)  # lag 0 sets the direction (below)
        if opts["lag"] == 0 and list(opts["directions"]) != ["symptoms_to_alliance"]:
            opts["directions"] = ["symptoms_to_alliance"]
            st.caption("Lag 0 is for symptoms → alliance only, so only that direction is estimated.")
        opts["pairing"] = _draw("pairing", opts, st)
        with st.expander("More options"):
            opts["standardize"] = _draw("standardize", opts, st)
            opts["standardize_by"] = _draw("standardize_by", opts, st, disabled=not opts["standardize"])
            opts["control_prior_outcome"] = _draw("control_prior_outcome", opts, st)
            opts["time_trend"] = _draw("time_trend", opts, st)
            opts["cross_level"] = _draw("cross_level", opts, st)
            opts["outcome_moderator"] = _draw("outcome_moderator", opts, st)
            cands = compute.patient_level_columns(df)  # (cached: a groupby per extra column)
            opts["covariates"] = [c for c in opts.get("covariates", []) if c in cands]
            if cands:
                st.session_state["opt_covariates"] = [
                    c for c in st.session_state.get("opt_covariates", opts["covariates"]) if c in cands]
                opts["covariates"] = declared.draw(decl("covariates"), "opt_covariates", st, choices=cands)
            else:
                st.caption("Patient-level covariates: none in the data (a column with one value per patient, e.g. "
                           "treatment or age, can moderate the within effect).")
            opts["estimator"] = _draw("estimator", opts, st)
            opts["df_method"] = _draw("df_method", opts, st)
    st.session_state[STORE] = opts
    if not opts["directions"]:
        st.warning("Choose at least one direction in the option panel.")
        st.stop()
    result = to_lag_options(opts, df)
    _name_unused_link_values(linked, link_values, opts, result)
    return result


def _name_unused_link_values(linked: dict, link_values: dict, opts: dict, result: LagOptions) -> None:
    """Say which values a shared link asked for that the analysis does not use (a combination no model can fit,
    or lag 0 with the alliance → symptoms direction), each with its reason (issue 25 #5)."""
    values = to_lag_values(opts)
    for name, o in linked.items():
        asked = link_values[name]
        used = declared.widget_value(o, getattr(result, name), opts["_bounds"])
        if asked is None or asked == used or (o.kind in ("choices", "columns") and list(asked) == list(used)):
            continue
        reason = declared.impossible(LagOptions, values, name).get(asked) if o.kind in ("choice", "flag") else None
        if name == "directions" and result.lag == 0:
            reason = "lag 0 is for symptoms → alliance only"
        shown = ", ".join(o.label_of(v) for v in asked) if isinstance(asked, (list, tuple)) else o.label_of(asked)
        st.warning(safe.md("From the link, {label} = {value} was not used: {reason}.", label=o.label, value=shown,
                           reason=(reason or "it cannot be fitted with the other options").rstrip(".")))


def pooling_panel(df: pd.DataFrame, container=None) -> LagOptions:
    """Stage-2 choices (estimator of τ², test) on top of the stage-1 options."""
    c = container or st.sidebar
    opts = stored(df)
    persist.url_params("pool", POOL_URL)
    with c:
        st.markdown("#### Pooling")
        opts["pooling_method"] = _draw("pooling_method", opts, st)
        opts["test"] = _draw("test", opts, st)
    st.session_state[STORE] = opts
    return to_lag_options(opts, df)
