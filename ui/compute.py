"""Cached calls into ``analysis`` (keyed on the data and the options).

Pages call these instead of the analysis functions so that switching pages or
changing an unrelated widget never refits a model. The data part of each cache
key is a fingerprint of the frame (:func:`data_key`): for the loaded data set it
is computed once when the data are set (``ui.state``), so a rerun does not
re-hash 35,000 rows for every cached call.
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from analysis import data as adata
from analysis import lagged, meta, pipeline, plots_meta
from analysis.lagged import LagOptions


@st.cache_data(show_spinner=False, max_entries=32)
def file_sheets(content: bytes, name: str) -> list[str]:
    """Sheet names of an uploaded workbook (empty for formats without sheets)."""
    return adata.list_sheets(content, filename=name)


@st.cache_data(show_spinner=False, max_entries=32)
def load_file(content: bytes, name: str, sheet) -> pd.DataFrame:
    """An uploaded file read by :func:`analysis.data.load` (cached on its bytes)."""
    return adata.load(content, filename=name, sheet=sheet)


def fingerprint(df: pd.DataFrame) -> str:
    """A content hash of a data frame (values, index, column names and dtypes)."""
    h = hashlib.sha1()
    h.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
    return h.hexdigest()


def data_key(df: pd.DataFrame) -> str:
    """The loaded data set's stored fingerprint when ``df`` is that very object, else a fresh one."""
    ds = st.session_state.get("dataset")
    if ds is not None and ds.get("df") is df and ds.get("key"):
        return ds["key"]
    return fingerprint(df)


@st.cache_data(show_spinner=False, max_entries=64)
def _two_stage(key: str, _df: pd.DataFrame, options: LagOptions) -> pipeline.TwoStageResult:
    return pipeline.two_stage(_df, options)


def two_stage(df: pd.DataFrame, options: LagOptions) -> pipeline.TwoStageResult:
    return _two_stage(data_key(df), df, options)


def two_stage_or_stop(df: pd.DataFrame, options: LagOptions, spinner: str) -> pipeline.TwoStageResult:
    """Run (or fetch) the two-stage analysis for a page; on bad options show why and stop the page."""
    try:
        with st.spinner(spinner):
            res = two_stage(df, options)
    except ValueError as e:
        st.error(f"The models could not be run with these options: {e}")
        st.stop()
    for m in res.messages:
        st.info(m)
    return res


@st.cache_data(show_spinner=False, max_entries=16)
def _multiverse(key: str, _df: pd.DataFrame, options: LagOptions) -> pd.DataFrame:
    return pipeline.multiverse(_df, options)


def multiverse(df: pd.DataFrame, options: LagOptions) -> pd.DataFrame:
    return _multiverse(data_key(df), df, options)


@st.cache_data(show_spinner=False, max_entries=16)
def _early_alliance(key: str, _df: pd.DataFrame, early_sessions: int, options: LagOptions):
    return pipeline.early_alliance_outcome(_df, early_sessions=early_sessions, options=options)


def early_alliance(df: pd.DataFrame, early_sessions: int, options: LagOptions) -> pipeline.TwoStageResult:
    return _early_alliance(data_key(df), df, early_sessions, options)


@st.cache_data(show_spinner=False, max_entries=64)
def prepare(df: pd.DataFrame, options: LagOptions, direction: str) -> pd.DataFrame:
    return lagged.prepare(df, options, direction)


@st.cache_data(show_spinner=False, max_entries=16)
def _pairing_counts(key: str, _df: pd.DataFrame, options: LagOptions) -> pd.DataFrame:
    return lagged.pairing_counts(_df, options)


def pairing_counts(df: pd.DataFrame, options: LagOptions) -> pd.DataFrame:
    return _pairing_counts(data_key(df), df, options)


@st.cache_data(show_spinner=False, max_entries=64)
def leave_one_out(yi, vi, labels, method: str, test: str) -> pd.DataFrame:
    return meta.leave_one_out(yi, vi, labels=labels, method=method, test=test)


@st.cache_data(show_spinner=False, max_entries=64)
def egger(yi, vi, method: str, test: str):
    return meta.egger_test(yi, vi, method=method, test=test)


@st.cache_data(show_spinner=False, max_entries=64)
def meta_regression(yi, vi, moderators: pd.DataFrame, method: str, test: str, labels):
    return meta.meta_regression(yi, vi, moderators, method=method, test=test, labels=labels)


@st.cache_data(show_spinner=False, max_entries=64)
def _pooled_forest(key: str, _df: pd.DataFrame, options: LagOptions, titles: tuple, xlabel: str):
    res = two_stage(_df, options)
    dirs = [d for d in options.directions if d in res.pooled]
    if len(dirs) == 2:
        return plots_meta.paired_forest_plot(res.pooled[dirs[0]], res.pooled[dirs[1]], titles=list(titles),
                                             xlabel=xlabel)
    return plots_meta.forest_plot(res.pooled[dirs[0]], title=titles[0], xlabel=xlabel)


def pooled_forest(df: pd.DataFrame, options: LagOptions, titles: tuple, xlabel: str):
    """The Pooled page's forest figure (paired when both directions are chosen), cached with its inputs."""
    return _pooled_forest(data_key(df), df, options, titles, xlabel)


# --------------------------------------------------------------------------- teaching (simulation only; no data key)
NICKELL_PATIENTS = 800
NICKELL_SESSIONS = range(3, 16)


@st.cache_data(show_spinner=False, max_entries=64, ttl=3600)
def teaching_sample(params):
    """One simulated teaching sample, its three estimates and the scatter summary (analysis.teaching)."""
    from analysis import teaching

    data = teaching.simulate(params).data
    return data, teaching.fit_estimates(data, params), teaching.scatter_summary(data)


@st.cache_data(show_spinner=False, max_entries=64, ttl=3600)
def teaching_replication(params, n_rep: int = 20):
    """Many samples with the same settings: chance or systematic miss (analysis.teaching.replicate)."""
    from analysis import teaching

    return teaching.replicate(params.replace(seed=1), n_rep=n_rep)


@st.cache_data(show_spinner=False, max_entries=64, ttl=3600)
def teaching_nickell(params):
    """The Nickell curve for the page's settings (analysis.teaching.nickell_curve)."""
    from analysis import teaching

    return teaching.nickell_curve(params, NICKELL_SESSIONS, n_patients=NICKELL_PATIENTS)
