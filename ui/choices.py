"""Pickers over the data's own values (studies, patients): their choices change when other data are
loaded, so a stored choice that the new data lack is replaced by the first choice *in session state*
(not popped). Only a value set in session state reaches the browser: a popped key leaves the browser's
box showing the old study above numbers of the new one (issue 23 #5)."""

from __future__ import annotations

import streamlit as st


def pick(key: str, choices, default) -> None:
    """Store ``default`` under ``key`` unless the stored value is one of ``choices``."""
    if st.session_state.get(key) not in list(choices):
        st.session_state[key] = default


def data_select(label: str, choices, key: str, container=None, **kw):
    """``st.selectbox(label, choices, key=key)`` whose stored value is always one of ``choices``."""
    choices = list(choices)
    if choices and key in st.session_state:
        pick(key, choices, choices[0])
    return (container or st).selectbox(label, choices, key=key, **kw)
