"""Cached calls into ``analysis`` (keyed on the data frame and the options).

Pages call these instead of the analysis functions so that switching pages or
changing an unrelated widget never refits a model.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis import lagged, meta, pipeline
from analysis.lagged import LagOptions


@st.cache_data(show_spinner=False, max_entries=64)
def two_stage(df: pd.DataFrame, options: LagOptions) -> pipeline.TwoStageResult:
    return pipeline.two_stage(df, options)


@st.cache_data(show_spinner=False, max_entries=16)
def multiverse(df: pd.DataFrame, options: LagOptions) -> pd.DataFrame:
    return pipeline.multiverse(df, options)


@st.cache_data(show_spinner=False, max_entries=16)
def early_alliance(df: pd.DataFrame, early_sessions: int, options: LagOptions) -> pipeline.TwoStageResult:
    return pipeline.early_alliance_outcome(df, early_sessions=early_sessions, options=options)


@st.cache_data(show_spinner=False, max_entries=64)
def prepare(df: pd.DataFrame, options: LagOptions, direction: str) -> pd.DataFrame:
    return lagged.prepare(df, options, direction)


@st.cache_data(show_spinner=False, max_entries=16)
def pairing_counts(df: pd.DataFrame, options: LagOptions) -> pd.DataFrame:
    return lagged.pairing_counts(df, options)


@st.cache_data(show_spinner=False, max_entries=64)
def leave_one_out(yi, vi, labels, method: str, test: str) -> pd.DataFrame:
    return meta.leave_one_out(yi, vi, labels=labels, method=method, test=test)


@st.cache_data(show_spinner=False, max_entries=64)
def egger(yi, vi, method: str, test: str):
    return meta.egger_test(yi, vi, method=method, test=test)


@st.cache_data(show_spinner=False, max_entries=64)
def meta_regression(yi, vi, moderators: pd.DataFrame, method: str, test: str, labels):
    return meta.meta_regression(yi, vi, moderators, method=method, test=test, labels=labels)
