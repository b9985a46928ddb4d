"""Download and load the reproducibility bundle (analysis.bundle) in the app."""

from __future__ import annotations

import json

import streamlit as st

from analysis import bundle as abundle
from analysis import data as adata
from ui import persist
from ui.safe import esc

BUNDLE_NAME = "alliance_symptoms_bundle.zip"


def page_options() -> dict:
    """Every remembered widget value that can be written as JSON (teaching scenario, page choices)."""
    persist.sync()
    out = {}
    for k, v in st.session_state.get(persist.STORE, {}).items():
        if str(k).startswith("opt_"):
            continue  # the lagged options are written as LagOptions
        if str(k).startswith("scr_"):
            continue  # the Screening page's choices concern a study screened against the data, not the data set
        val = list(v) if isinstance(v, tuple) else v
        try:
            json.dumps(val)
        except (TypeError, ValueError):
            continue
        out[str(k)] = val
    return out


def bundle_bytes(ds: dict, options, report_html: bytes | None = None, figures: dict | None = None) -> bytes:
    """The bundle of the loaded data set and the current options."""
    from ui.compute import data_key
    from ui.r_downloads import bundle_extras

    seeds = {k: v for k, v in page_options().items() if "seed" in k}
    return abundle.make_bundle(ds["df"], options, ds["name"], mapping=ds.get("mapping"), page_options=page_options(),
                               seeds=seeds, report_html=report_html, figures=figures,
                               **bundle_extras(ds["df"], data_key(ds["df"])))


def restore(b: abundle.Bundle) -> None:
    """Make a read bundle the loaded data set and restore its options (data, mapping, options)."""
    from ui.options import store_options
    from ui.state import set_dataset

    set_dataset(b.data, f"Bundle: {b.name}", "bundle", [b.summary()], mapping=b.mapping)
    store_options(b.options, b.data)
    store = st.session_state.setdefault(persist.STORE, {})
    for k, v in b.page_options.items():
        st.session_state.pop(k, None)
        store[k] = v


def bundle_upload() -> None:
    """A file uploader for a reproducibility bundle (Data page)."""
    st.markdown("**Reproducibility bundle**: load a bundle downloaded from this app to restore its data, "
                "column mapping and options exactly.")
    f = st.file_uploader("Bundle (.zip)", type=["zip"], key="bundle_upload")
    if f is None:
        return
    if st.button("Load this bundle", key="bundle_load", type="primary"):
        try:
            b = abundle.read_bundle(f.getvalue())
        except adata.DataError as e:
            st.error(f"{esc(f.name)}: {esc(str(e))}")
            return
        restore(b)
        st.session_state["upload_message"] = "Bundle loaded: data, mapping and options restored."
        st.rerun()
