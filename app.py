"""Alliance ⇄ Symptoms dashboard: entry point.

Start with `make run` (or `alliance-dashboard`, or `streamlit run app.py` from any folder: the settings in
.streamlit/config.toml beside this file are read — 127.0.0.1 only, no usage statistics; the app refuses to
run without them). Serving a class on a network is an explicit choice: `make serve ADDRESS=…`. The IPD-MA
demo data set is
loaded on first start; the Data page replaces it with uploaded files.
"""

from pathlib import Path

import streamlit as st

import ui.compute  # noqa: F401  (the pages' libraries, loaded before freeze_startup_objects below)
import ui.downloads  # noqa: F401
import ui.options  # noqa: F401
import ui.reporting  # noqa: F401
from ui import persist
from ui.errors import run_page
from ui.gate import GATE
from ui.launch import serving_problem
from ui.safe import md
from ui.state import ensure_dataset, freeze_first_run_objects, freeze_startup_objects, sidebar_summary

HERE = Path(__file__).resolve().parent
# (file, title, icon). tests/test_app_shell.py checks every file exists.
PAGE_SPECS = [
    ("app_pages/home.py", "Overview", ":material/home:"),
    ("app_pages/data.py", "Data", ":material/folder_open:"),
    ("app_pages/lagged.py", "Lagged effects", ":material/swap_horiz:"),
    ("app_pages/pooled.py", "Pooled effects", ":material/forest:"),
    ("app_pages/convergence.py", "Convergence", ":material/handshake:"),
    ("app_pages/events.py", "Ruptures & gains", ":material/bolt:"),
    ("app_pages/teaching.py", "Teaching", ":material/school:"),
    ("app_pages/screening.py", "Screening", ":material/search:"),
    ("app_pages/methods.py", "Methods", ":material/menu_book:"),
]
# Page runs take turns, first come first served (ui/gate.py): a class opening the app in the same instant
# gets its pages one after another, each at full speed, not all of them slowly at the end (issue 24).
with GATE.turn():
    # A local image: a ":material/...:" page icon makes the browser fetch the favicon from a font CDN.
    st.set_page_config(page_title="Alliance ⇄ Symptoms", page_icon=str(HERE / "assets" / "favicon.png"), layout="wide")
    if problem := serving_problem():  # started without .streamlit/config.toml: no data on this server (issue 25 #11)
        st.error(md("{p}", p=problem))
        st.stop()
    PAGES = [
        st.Page(f, title=t, icon=i, default=(f == "app_pages/home.py"))
        for f, t, i in PAGE_SPECS
        if (HERE / f).exists()
    ]

    freeze_startup_objects()  # once per process: the libraries' objects leave the garbage collector's scans

    # Our own sidebar links (the automatic navigation is hidden; see .streamlit/config.toml).
    # The page files live in app_pages/, not pages/, so Streamlit's legacy multipage mode never starts.
    persist.sync()  # remember widget choices across pages (ui/persist.py)
    ensure_dataset()
    with st.sidebar:
        st.markdown("### Alliance ⇄ Symptoms")
        for p in PAGES:
            st.page_link(p, label=p.title, icon=p.icon)
        st.divider()
    sidebar_summary()
    run_page(st.navigation(PAGES, position="hidden"))  # an unexpected error: a plain message (ui/errors.py)
    persist.write_declared()  # the page's options into the URL (ui/persist.py)
    freeze_first_run_objects()  # once per process, after the first complete run: what it imported too
