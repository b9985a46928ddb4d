"""The loaded data set lives in ``st.session_state["dataset"]``.

It is a plain dict: ``name`` (shown in the sidebar), ``df`` (canonical long
data, METHODS §1), ``source`` ("demo" or "upload") and ``notes`` (messages
about how it was made, e.g. a flipped symptom scale).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from analysis import data as adata
from ui.safe import esc

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / "demo_data"

DEMOS = {
    "IPD-MA demo: 17 studies, 5,350 patients, sessions 1–7": "ipd_17_studies.csv",
    "Within/between demo: one ICBT trial, 182 patients, 11 weeks": "icbt_within_between.csv",
    "Convergence demo: 96 dyads × 14 sessions (BDI-II)": "dyads_bdi.csv",
    "Convergence demo: 139 dyads, sessions 3/12/20/end (GSI)": "dyads_gsi.csv",
}
DEFAULT_DEMO = next(iter(DEMOS))
DYADIC_DEMOS = ("dyads_bdi.csv", "dyads_gsi.csv")


@st.cache_data(show_spinner=False)
def load_demo(filename: str) -> pd.DataFrame:
    """Read a demo file through the same intake path as an upload."""
    raw = adata.load(DEMO_DIR / filename, filename=filename)
    mapping = adata.suggest_mapping(raw)
    return adata.to_canonical(raw, mapping)


def set_dataset(df: pd.DataFrame, name: str, source: str, notes: list[str] | None = None,
                mapping: dict | None = None) -> None:
    """Make ``df`` the loaded data set (``source``: "demo", "upload" or "bundle"; ``mapping``: the
    column mapping it was made with, kept for the reproducibility bundle)."""
    from ui.compute import fingerprint

    st.session_state["dataset"] = {
        "df": df, "name": name, "source": source, "notes": list(notes or []),
        "mapping": dict(mapping) if mapping else df.attrs.get("mapping"),
        # computed once here, so reruns neither re-hash nor re-count the data
        "key": fingerprint(df),
        "n_studies": int(df["study"].nunique()),
        "n_patients": int(df.groupby(["study", "patient"], observed=True).ngroups),
        "therapist": has_therapist_ratings(df),
    }
    # results computed for an earlier data set are no longer valid
    for key in [k for k in st.session_state if str(k).startswith("result_")]:
        del st.session_state[key]


def ensure_dataset() -> dict:
    """Load the default demo on first start."""
    if "dataset" not in st.session_state:
        set_dataset(load_demo(DEMOS[DEFAULT_DEMO]), DEFAULT_DEMO, "demo")
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
        st.info(text, icon=":material/dataset:")
    else:
        st.caption(f"Data: **{esc(ds['name'])}** ({size}).")


def current() -> dict:
    """The loaded data set; every page calls this first."""
    return ensure_dataset()


def has_therapist_ratings(df: pd.DataFrame) -> bool:
    return "therapist_alliance" in df.columns and df["therapist_alliance"].notna().any()


def study_level_columns(df: pd.DataFrame) -> list[str]:
    """Extra columns constant within every study (METHODS §1: study-level moderators)."""
    canon = {"study", "patient", "session", "alliance", "symptoms", "therapist_alliance", "therapist"}
    out = []
    for c in df.columns:
        if c in canon:
            continue
        nun = df.groupby("study", observed=True)[c].nunique(dropna=True)
        if (nun <= 1).all() and df[c].notna().any() and df["study"].nunique() > 1:
            out.append(c)
    return out


def sidebar_summary() -> None:
    ds = ensure_dataset()
    df = ds["df"]
    with st.sidebar:
        st.markdown("**Loaded data**")
        st.caption(ds["name"])
        if "n_patients" not in ds:  # a data set put into the session state by hand (tests)
            set_dataset(df, ds["name"], ds.get("source", "upload"), ds.get("notes"))
            ds = st.session_state["dataset"]
        n_st, n_pt = ds["n_studies"], ds["n_patients"]
        st.caption(
            f"{n_st} {'study' if n_st == 1 else 'studies'} · {n_pt:,} patients · {len(df):,} session rows"
            + (" · therapist ratings" if ds["therapist"] else "")
        )
        for note in ds.get("notes", []):
            st.caption(f"Note: {note}")
