""""Reproduce a paper" control (issue 11 §5): loads a preset's demo and sets every option it lists.

The option values go into ``st.session_state[ui.options.STORE]`` (the dict the option panel reads);
the panel's widget keys are cleared so they show the new values on the rerun. The checklist of what
was set and why stays visible until another data set is loaded.
"""

from __future__ import annotations

import streamlit as st

from analysis import presets
from ui import options as uopt
from ui import state, tabs
from ui.safe import md
from ui.tables import dataframe

APPLIED = "preset_applied"


def _demo_name(filename: str) -> str:
    return next((name for name, f in state.DEMOS.items() if f == filename), filename)


def _apply_lagged(options: dict, df, key: str) -> None:
    """Write the Lagged/Pooled option-panel values (keys of ``ui.options``) into its store."""
    st.session_state.pop(uopt.STORE, None)
    opts = uopt.stored(df)  # defaults for this data set (clears the panel's widget keys)
    for k, v in options.items():
        opts[k] = list(v) if k == "directions" else (tuple(v) if k == "window" else v)
    st.session_state[uopt.STORE] = opts
    for k in [k for k in st.session_state if str(k).startswith("opt_")]:
        del st.session_state[k]


def _apply_convergence(options: dict, df, key: str) -> None:
    """The Convergence page reads its preset's options itself: select the preset there; its growth models (the
    paper's tables) open first."""
    st.session_state["conv_preset"] = key
    tabs.open_next("conv_tab", tabs.CONVERGENCE_TABS[-1])


def _apply_lagged_view(options: dict, df, key: str) -> None:
    """Open the Lagged effects page's tab that shows the paper's models (read by the page before it draws its
    tabs: a widget's state cannot change once it is drawn)."""
    tabs.open_next("lag_tab", options["tab"])

# page key of Preset.options -> function(options, df, key) that writes them into that page's state;
# other pages register theirs with register_applier
APPLIERS = {"lagged": _apply_lagged, "lagged_view": _apply_lagged_view, "convergence": _apply_convergence}


def register_applier(page: str, func) -> None:
    """Let a page's options of a preset be applied (``func(options: dict, df, key: str)``)."""
    APPLIERS[page] = func


def apply_preset(key: str) -> None:
    """Load the preset's demo and write each page's options through that page's applier."""
    p = presets.get(key)
    df = state.load_demo(p.demo_file)
    state.set_dataset(df, _demo_name(p.demo_file), "demo", notes=[f"Preset: {p.title}"])
    for page in p.options:
        if page in APPLIERS:
            APPLIERS[page](p.page_options(page), df, key)
    st.session_state[APPLIED] = {"key": key, "data_key": st.session_state["dataset"]["key"]}


def changed_settings(key: str) -> list[str]:
    """Option names whose stored value differs from the preset's (the user changed them since)."""
    p = presets.get(key)
    opts = st.session_state.get(uopt.STORE) or {}
    out = []
    for k, v in p.page_options("lagged").items():
        cur = opts.get(k)
        if k in ("directions", "window"):
            v, cur = list(v), list(cur) if cur is not None else None
        if cur != v:
            out.append(k)
    return out


def preset_control(container=None) -> None:
    """Sidebar control: choose a paper, load its demo with the paper's options; show the checklist."""
    c = container or st.sidebar
    keys = list(presets.PRESETS)
    with c:
        st.markdown("#### Reproduce a paper")
        key = st.selectbox("Paper", keys, format_func=lambda k: presets.PRESETS[k].title, key="preset_choice",
                           help="Loads the matching demo data and sets every option as the paper did. "
                                "You can change anything afterwards.")
        if st.button("Load demo and set the paper's options", key="preset_apply"):
            apply_preset(key)
            st.rerun()
    applied = st.session_state.get(APPLIED)
    ds = st.session_state.get("dataset") or {}
    if not applied or applied.get("data_key") != ds.get("key"):
        return
    p = presets.get(applied["key"])
    changed = changed_settings(p.key)
    with c:
        st.success(md("Preset applied: {t}. The checklist is at the bottom of the page.", t=p.title))
        if changed:
            st.caption(md("Changed by you since: {c}.", c=", ".join(changed)))
    with st.expander(md("Preset: {t} — what was set and why", t=p.title), expanded=True):
        dataframe(p.checklist_frame())
        if p.expected:
            st.caption(md("What the paper found (and the demo plants): {e}", e=p.expected))
        if changed:
            st.caption(md("Changed by you since: {c}.", c=", ".join(changed)))
