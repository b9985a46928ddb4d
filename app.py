"""Alliance ⇄ symptoms dashboard: entry point.

Start with `make run` (or `streamlit run app.py`). The IPD-MA demo data set is
loaded on first start; the Data page replaces it with uploaded files.
"""

import streamlit as st

from ui.state import ensure_dataset, sidebar_summary

st.set_page_config(page_title="Alliance ⇄ Symptoms", page_icon="📈", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Overview", icon="🏠", default=True),
    st.Page("pages/data.py", title="Data", icon="📂"),
    st.Page("pages/lagged.py", title="Lagged effects", icon="↔️"),
    st.Page("pages/pooled.py", title="Pooled effects", icon="🌲"),
    st.Page("pages/convergence.py", title="Convergence", icon="🤝"),
    st.Page("pages/events.py", title="Ruptures & gains", icon="⚡"),
    st.Page("pages/teaching.py", title="Teaching", icon="🎓"),
    st.Page("pages/screening.py", title="Screening", icon="🔎"),
    st.Page("pages/methods.py", title="Methods", icon="📖", url_path="methods"),
]

# Our own sidebar links (the automatic navigation is hidden; see .streamlit/config.toml).
page = st.navigation(PAGES, position="hidden")
ensure_dataset()
with st.sidebar:
    st.markdown("### Alliance ⇄ Symptoms")
    for p in PAGES:
        st.page_link(p, label=p.title, icon=p.icon)
    st.divider()
sidebar_summary()
page.run()
