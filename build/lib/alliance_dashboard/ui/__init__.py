"""Streamlit helpers shared by the pages (state, caching, downloads).

Statistics never live here: these helpers only move data between
``st.session_state``, the ``analysis`` package and widgets.
"""
