"""Download and load the reproducibility bundle (analysis.bundle) in the app."""

from __future__ import annotations

import streamlit as st

from analysis import bundle as abundle
from analysis import data as adata
from ui import persist
from ui.safe import esc, md

BUNDLE_NAME = "alliance_symptoms_bundle.zip"


def page_options() -> dict:
    """Every remembered page option a bundle restores (teaching scenario, convergence and events choices):
    the widgets declared in ``ui.persist`` (their URL parameters), so a bundle holds options, never data."""
    persist.sync()
    params = persist.page_params()
    out = {}
    for k, v in st.session_state.get(persist.STORE, {}).items():
        if k in params and params[k].check(list(v) if isinstance(v, tuple) else v) is not None:
            out[str(k)] = list(v) if isinstance(v, tuple) else v
    return out


def bundle_bytes(ds: dict, options, report_html: bytes | None = None, figures: dict | None = None,
                 pages: dict | None = None, extras: dict | None = None) -> bytes:
    """The bundle of the loaded data set and the current options. ``pages`` (:func:`page_options`) and
    ``extras`` (:func:`ui.r_downloads.bundle_extras`) are read from the session when not given; a download's
    callable passes them, read during the script run (it runs on a worker thread without the session)."""
    from ui.compute import data_key
    from ui.r_downloads import bundle_extras

    pages = page_options() if pages is None else pages
    extras = bundle_extras(ds["df"], data_key(ds["df"])) if extras is None else extras
    seeds = {k: v for k, v in pages.items() if "seed" in k}
    return abundle.make_bundle(ds["df"], options, ds["name"], mapping=ds.get("mapping"), page_options=pages,
                               seeds=seeds, report_html=report_html, figures=figures, **extras)


def restore(b: abundle.Bundle) -> list[str]:
    """Make a read bundle the loaded data set and restore its options (data, mapping, options).
    Page options are checked against their widgets' declarations; returns one message per value
    the bundle or this step dropped."""
    from ui.options import store_options
    from ui.state import set_dataset

    pages, notes = persist.check_page_options(b.page_options)
    set_dataset(b.data, f"Bundle: {b.name}", "bundle", [b.summary()], mapping=b.mapping)
    store_options(b.options, b.data)
    store = st.session_state.setdefault(persist.STORE, {})
    for k, v in pages.items():
        st.session_state.pop(k, None)
        store[k] = v
    return [*b.messages, *notes]


def bundle_upload() -> None:
    """A file uploader for a reproducibility bundle (Data page)."""
    st.markdown("**Reproducibility bundle**: load a bundle downloaded from this app to restore its data, "
                f"column mapping and options exactly (at most {abundle.MAX_BYTES // 2**20} MB uncompressed).")
    # the key changes when a data set is loaded (ui.state.release_uploads), so the zip's bytes are let go
    f = st.file_uploader("Bundle (.zip)", type=["zip"], key=f"bundle_upload_{st.session_state.get('uploads_gen', 0)}")
    if f is None:
        return
    if st.button("Load this bundle", key="bundle_load", type="primary"):
        try:
            b = abundle.read_bundle(f)  # the upload is a seekable file: read in place
        except adata.DataError as e:
            st.error(md("{name}: {e} Nothing was loaded; the data set in use is unchanged.", name=esc(f.name),
                        e=esc(e, limit=600)))
            return
        notes = restore(b)
        if notes:
            st.session_state["upload_message"] = "Bundle loaded: data and mapping restored; options restored except " \
                                                 f"{len(notes)} value(s) shown below (their defaults are used)."
            st.session_state["upload_notes"] = notes
        else:
            st.session_state["upload_message"] = "Bundle loaded: data, mapping and options restored."
        st.rerun()
