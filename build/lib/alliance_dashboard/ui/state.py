"""The loaded data set lives in ``st.session_state["dataset"]``.

It is a plain dict: ``name`` (shown in the sidebar), ``df`` (canonical long
data, METHODS §1), ``source`` ("demo" or "upload") and ``notes`` (messages
about how it was made, e.g. a flipped symptom scale).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
import weakref
from pathlib import Path

import pandas as pd
import streamlit as st

from analysis.columns import study_level_columns  # noqa: F401 (kept importable from ui.state)
from ui.compute import DEMO_DIR, fingerprint, load_demo  # noqa: F401 (kept importable from ui.state)
from ui.safe import Markup, esc, md

ROOT = Path(__file__).resolve().parents[1]

DEMOS = {
    "IPD-MA demo: 17 studies, 5,350 patients, sessions 1–7": "ipd_17_studies.csv",
    "Within/between demo: one ICBT trial, 182 patients, 11 weeks": "icbt_within_between.csv",
    "Convergence demo: 96 dyads × 14 sessions (BDI-II)": "dyads_bdi.csv",
    "Convergence demo: 139 dyads, sessions 3/12/20/end (GSI)": "dyads_gsi.csv",
}
DEFAULT_DEMO = next(iter(DEMOS))
DYADIC_DEMOS = ("dyads_bdi.csv", "dyads_gsi.csv")


# cache_resource: every session shares one read-only frame per demo (a class of 30 opening the app would
# otherwise unpickle its own copy on every first run). Nothing changes a loaded data set in place: pages and
# analysis functions derive new frames from it.
@st.cache_resource(show_spinner=False, max_entries=8, ttl="1h")
def _describe(df: pd.DataFrame) -> dict:
    """The data set's fingerprint and counts, computed once per data set (not on every rerun)."""
    sessions = df["session"] if "session" in df else pd.Series(dtype="float64")
    return {
        "key": fingerprint(df),
        # the session range: the option panel's bounds on every rerun of every page
        "session_bounds": (int(sessions.min()), int(sessions.max())) if sessions.notna().any() else None,
        "n_studies": int(df["study"].nunique()),
        "n_patients": int(df.groupby(["study", "patient"], observed=True).ngroups),
        "therapist": has_therapist_ratings(df),
        "design": design_notes(df),
    }


def design_notes(df: pd.DataFrame) -> list[str]:
    """Plain sentences for a design no analysis can use (issue 25 #6): one session per patient, fewer
    than 3 patients in every study, no alliance or no symptom values. Empty for a usable design."""
    notes = []
    for col, what in (("alliance", "alliance"), ("symptoms", "symptom")):
        if col not in df.columns or not df[col].notna().any():
            notes.append(f"The data hold no {what} values, so no analysis that uses the {what} can run: the "
                         "lagged effects, pooled effects and events need both alliance and symptoms.")
    if not {"study", "patient", "session"} <= set(df.columns) or df.empty:
        return notes
    per_patient = df.groupby(["study", "patient"], observed=True)["session"].nunique()
    if len(per_patient) and int(per_patient.max()) < 2:
        notes.append("Every patient has a single session, so there are no session pairs: lagged effects, "
                     "ruptures, sudden gains and change over treatment need at least two sessions per patient.")
    per_study = per_patient.groupby(level="study", observed=True).size()
    if len(per_study) and int(per_study.max()) < 3:
        notes.append("Every study has fewer than 3 patients, so no study model can be fitted (a within-patient "
                     "model needs at least 3 patients with session pairs) and nothing can be pooled.")
    return notes


def design_warnings(ds: dict | None = None) -> None:
    """The loaded data set's design notes (:func:`design_notes`) as page-level warnings."""
    ds = ds or ensure_dataset()
    for note in ds.get("design", ()):
        st.warning(md("{n}", n=note), icon=":material/warning:")


@st.cache_data(show_spinner=False, max_entries=8, ttl="1h")
def _demo_description(filename: str) -> dict:
    """:func:`_describe` of a demo, shared by every session (a class of 30 opening the app at once
    hashes the default demo once, not 30 times)."""
    return _describe(load_demo(filename))


def set_dataset(df: pd.DataFrame, name: str, source: str, notes: list[str] | None = None,
                description: dict | None = None, mapping: dict | None = None, report=None) -> None:
    """Make ``df`` the loaded data set (``source``: "demo", "upload" or "bundle"; ``mapping``: the
    column mapping it was made with, kept for the reproducibility bundle; ``report``: its
    ``analysis.data.validate`` report when already made, so the Data page does not check it again)."""
    previous = st.session_state.get("dataset")
    if previous is not None:  # deleted first: Streamlit would otherwise keep the last run's value until the next run
        del st.session_state["dataset"]
    st.session_state["dataset"] = {
        "df": df, "name": name, "source": source, "notes": list(notes or []), "report": report,
        "mapping": dict(mapping) if mapping else df.attrs.get("mapping"),
        # computed once here, so reruns neither re-hash nor re-count the data
        **(description or _describe(df)),
    }
    if st.session_state["dataset"].get("key"):  # the default fit starts now, in the background (issue 24)
        from ui.compute import prefit

        prefit(df, st.session_state["dataset"]["key"])
    # results computed for an earlier data set are no longer valid
    for key in [k for k in st.session_state if str(k).startswith("result_")]:
        del st.session_state[key]
    if previous is not None:  # a data set replaces another: the old one and its files can go
        # a bundle is an upload too (issue 25 #4): the same release of files and memory
        big = (source in ("upload", "bundle") or previous.get("source") in ("upload", "bundle")
               or "_file_reader_memo" in st.session_state)
        release_uploads(big=big)
        if previous.get("source") in ("upload", "bundle") and isinstance(previous.get("df"), pd.DataFrame):
            # ... and once the old frame is really gone (Streamlit may hold it a run longer)
            weakref.finalize(previous["df"], _trim_soon)


def release_uploads(big: bool = True) -> None:
    """Let go of this session's uploaded files once a data set is loaded (issue 16: memory).

    The Data page's uploader key carries a generation number (``upload_key()``); a new number
    gives an empty uploader, and Streamlit drops the files of the old one at the end of the run.
    The Data page reads the whole files without caching them (``ui.compute.read_canonical``), so the
    loaded data set is their only copy; freed memory is handed back to the operating system.
    """
    st.session_state["uploads_gen"] = st.session_state.get("uploads_gen", 0) + 1
    st.session_state.pop("_file_reader_memo", None)
    if big:  # the old frames are still referenced by this run; trim at the start of the next one
        st.session_state["_return_memory"] = True
        # ... and once more after it: Streamlit lets go of the old run's download callables and uploaded
        # files only when the next run has finished
        for delay in _LATE_TRIMS:
            _trim_soon(delay)


def _trim_soon(delay: float = 0.5) -> None:
    """:func:`_return_memory` shortly, from a background thread (not inside the deallocation that calls this)."""
    t = threading.Timer(delay, _return_memory)
    t.daemon = True
    t.start()


def upload_key() -> str:
    """Widget key of the Data page's file uploader (changes when a data set is loaded)."""
    return f"uploads_{st.session_state.get('uploads_gen', 0)}"


def _arrow_on_system_allocator() -> None:
    """Arrow buffers (pandas' text columns) from the C library's allocator, not Arrow's bundled mimalloc.

    mimalloc keeps the pages of freed buffers for reuse: after a 5-million-row upload was replaced,
    the server stayed 0.45 GB above its baseline with no data left alive; with the system allocator
    ``malloc_trim`` (:func:`_return_memory`) hands them back (0.14 GB above; issue 16, memory)."""
    with contextlib.suppress(Exception):  # no pyarrow: pandas text is in Python objects
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())


_arrow_on_system_allocator()

#: seconds after a large data set is loaded or replaced at which freed memory is handed back again
_LATE_TRIMS = (3.0, 15.0)


def _return_memory() -> None:
    """Collect garbage and give freed memory back to the operating system (RSS drops after a big
    file): Arrow's memory pool (pandas' text columns) and glibc's heap both keep freed pages."""
    gc.collect()
    with contextlib.suppress(Exception):  # no pyarrow: pandas text is in Python objects
        import pyarrow as pa

        pa.default_memory_pool().release_unused()
    with contextlib.suppress(Exception):  # not glibc (macOS, Windows, musl): nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


_STARTUP_FROZEN = False


def freeze_startup_objects() -> None:
    """Once per server process, at the start of its first run: import what the pages use, then exempt
    everything alive (the imported libraries) from Python's cyclic garbage collector (``gc.freeze``).

    With pandas, SciPy, statsmodels and plotly loaded, the heap holds a few million objects that never
    die, and every full collection walked them all: on a 2-core server with a class of 30, those
    collections were most of the server's CPU time per page run (issue 16, a class of 30). Objects
    freed by reference counting are freed as before; only cycles among the frozen objects are no
    longer looked for.
    """
    global _STARTUP_FROZEN
    if _STARTUP_FROZEN:
        return
    _STARTUP_FROZEN = True
    # the pages' libraries (pandas, SciPy, statsmodels, plotly through the analysis modules), imported now so
    # that a class arriving at once does not run its first page runs with them still in the scans
    # (app.py imports the pages' ui modules before calling this; ui.state sits below them)
    gc.collect()  # what is already garbage is freed, not frozen
    gc.freeze()


def freeze_first_run_objects() -> None:
    """Once per server process, at the end of its first complete run: the same for what that run imported
    (the page's own modules) and made for every later session (shared caches)."""
    global _FIRST_RUN_FROZEN
    if _FIRST_RUN_FROZEN:
        return
    _FIRST_RUN_FROZEN = True
    gc.collect()
    gc.freeze()


_FIRST_RUN_FROZEN = False


def ensure_dataset() -> dict:
    """Load the default demo on first start."""
    if st.session_state.pop("_return_memory", False):
        _return_memory()
    if "dataset" not in st.session_state:
        filename = DEMOS[DEFAULT_DEMO]
        set_dataset(load_demo(filename), DEFAULT_DEMO, "demo", description=_demo_description(filename))
        st.session_state["dataset"]["auto"] = True  # loaded because a new session started
    return st.session_state["dataset"]


def data_banner() -> None:
    """Name the loaded data set in the main area of a results page (one call under the title).

    Demo results must never be mistaken for one's own: a demo is named as such, and
    when it was loaded because a new session started (a reload, a shared link) the
    page says plainly that uploads are not kept across reloads.
    """
    ds = ensure_dataset()
    n_st, n_pt = ds.get("n_studies", 0), ds.get("n_patients", 0)
    size = f"{n_st} {'study' if n_st == 1 else 'studies'}, {n_pt:,} patients"
    if ds.get("source") == "demo":
        text = f"Data: **{esc(ds['name'])}** — simulated demo data, not your own."
        if ds.get("auto"):
            text += (" A reload or a shared link starts a new session, and Streamlit cannot keep uploaded "
                     "files across it: load your files (or a reproducibility bundle) again on the Data page.")
        st.info(Markup(text), icon=":material/dataset:")  # built above from esc(name) and literals
    else:
        st.caption(md("Data: **{name}** ({size}).", name=esc(ds["name"]), size=size))
    design_warnings(ds)


def current() -> dict:
    """The loaded data set; every page calls this first."""
    return ensure_dataset()


def has_therapist_ratings(df: pd.DataFrame) -> bool:
    return "therapist_alliance" in df.columns and df["therapist_alliance"].notna().any()


def sidebar_summary() -> None:
    ds = ensure_dataset()
    df = ds["df"]
    with st.sidebar:
        st.markdown("**Loaded data**")
        st.caption(esc(ds["name"]))
        if "n_patients" not in ds:  # a data set put into the session state by hand (tests)
            set_dataset(df, ds["name"], ds.get("source", "upload"), ds.get("notes"))
            ds = st.session_state["dataset"]
        n_st, n_pt = ds["n_studies"], ds["n_patients"]
        st.caption(
            f"{n_st} {'study' if n_st == 1 else 'studies'} · {n_pt:,} patients · {len(df):,} session rows"
            + (" · therapist ratings" if ds["therapist"] else "")
        )
        for note in ds.get("notes", []):
            st.caption(f"Note: {esc(note, limit=None)}")
