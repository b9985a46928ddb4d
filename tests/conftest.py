import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")
# AppTest must see a page's exception (ui/errors.py otherwise shows users a plain message instead).
os.environ.setdefault("ALLIANCE_RAISE_ERRORS", "1")
# ... with its message and traceback (the app's config hides them from users: client.showErrorDetails = "none")
os.environ.setdefault("STREAMLIT_CLIENT_SHOW_ERROR_DETAILS", "full")
try:
    from streamlit import config as _st_config

    _st_config.get_config_options()
    _st_config.set_option("client.showErrorDetails", "full")
except Exception:  # pragma: no cover - streamlit always installed for the suite
    pass
# Importing a page module outside a running app (test collection) declares its st.cache_data functions with no
# runtime; Streamlit then logs one warning per function, which only buries the test log.
import logging  # noqa: E402

logging.getLogger("streamlit.runtime.caching.cache_data_api").setLevel(logging.ERROR)

# In CI, property-based tests use a fixed example sequence so a run is reproducible;
# locally they explore new examples each time.
try:
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
    if os.environ.get("CI"):
        settings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass

# The reference scripts in tests/reference write the committed reference files when run: pytest's doctest
# collection (--doctest-modules) must not import them.
collect_ignore_glob = ["reference/*.py"]
