"""Shared widgets of the Ruptures & gains page (layout helpers only; results come from `ui.compute`)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.events.options import DropoutOptions
from ui import compute, declared
from ui.choices import data_select, pick
from ui.safe import esc, md
from ui.tables import show_table

SD_SRC = {"baseline": "Each study's baseline SD (from the data)", "typed": "Type one SD for all studies"}


def fail(what: str, exc: Exception) -> None:
    st.error(md("{what} not computed: {exc}", what=what, exc=esc(exc, limit=600)))


def run(what: str, spinner: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` under a spinner; on a ValueError say why (``fail``) and return None."""
    try:
        with st.spinner(spinner):
            return fn(*args, **kwargs)
    except ValueError as exc:
        fail(what, exc)
        return None

def table(t: pd.DataFrame, name: str, key: str) -> pd.DataFrame:
    """A results table with reader labels (percent columns as percentages) and its CSV download."""
    t = t.assign(**{c: 100 * t[c] for c in t.columns if "(%)" in c})  # shares shown as percentages
    show_table(t, name, key=f"ev_dl_{key}", title=name.replace("_", " ").capitalize())
    return t


def notes(messages) -> None:
    for msg in messages:
        st.caption(esc(msg))


def patient_picker(prefix: str, studies, options) -> tuple[str, str | None]:
    """Study and patient pickers; ``options(study)`` gives (patient, label) pairs."""
    c1, c2 = st.columns([1, 2])
    study = data_select("Study", studies, f"{prefix}_study", c1) if len(studies) > 1 else studies[0]
    labels = dict(options(study))
    pick(f"{prefix}_patient", labels, next(iter(labels), None))
    return study, c2.selectbox("Patient (with an event first)", list(labels), format_func=labels.get,
                               key=f"{prefix}_patient")


def rel_sd(prefix: str, col, toggle_col, df, studies):
    """Reliability and SD: one value each, or per study (both tabs; baseline SDs prefilled)."""
    r = float(col.number_input("Reliability r (your input)", step=0.01, format="%.2f", key=f"{prefix}_r"))
    src = col.radio("SD", list(SD_SRC), format_func=SD_SRC.get, key=f"{prefix}_sdsrc")
    sd = float(col.number_input("SD", step=0.1, format="%.3f", key=f"{prefix}_sd")) if src == "typed" else None
    if len(studies) < 2 or not toggle_col.toggle("Per-study r and SD", key=f"{prefix}_perstudy"):
        return r, sd
    base = compute.event_baseline(df)
    seed = pd.DataFrame({"study": studies, "reliability": r, "sd": [sd or base.get(s) for s in studies]})
    edited = st.data_editor(seed, hide_index=True, disabled=["study"], key=f"{prefix}_table")
    return tuple(dict(zip(edited["study"], edited[c].astype(float))) for c in ("reliability", "sd"))


def dropout_section(df: pd.DataFrame, r_opts: dict | None) -> None:
    """Dropout on alliance, ruptures and repairs: logistic and Cox models, per study and pooled (METHODS §9a)."""
    st.subheader("Dropout")
    if not {"dropout", "last_session"} & set(df.columns):
        st.caption("A 'dropout' (1 = dropped out) or 'last_session' (planned) column adds dropout models: logistic "
                   "regression on early alliance, ruptures and repairs, and a Cox model of time to dropout.")
        return
    preds = declared.draw(declared.find(DropoutOptions, "predictors"), "ev_do_preds")
    if not preds:
        st.error("Choose at least one predictor of dropout.")
        return
    crit = (r_opts or {}).get("criterion", "default")
    res = run("Dropout models", "Fitting the dropout models…", compute.event_dropout, df, predictors=list(preds),
              criterion=crit)
    if res is None:
        return
    st.markdown(md("{s}", s=res.summary()))
    notes(res.messages)
    labels = {"estimate": "log ratio", "ratio": "Odds / hazard ratio", "ci_low": "CI low (log)",
              "ci_high": "CI high (log)", "pvalue": "p", "n": "Patients", "n_events": "Dropouts"}
    show_table(res.to_frame().rename(columns=labels), "dropout_models", key="ev_dl_dropout",
               title="Dropout models", csv=res.to_frame())
