import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")
# AppTest must see a page's exception (ui/errors.py otherwise shows users a plain message instead).
os.environ.setdefault("ALLIANCE_RAISE_ERRORS", "1")

# In CI, property-based tests use a fixed example sequence so a run is reproducible;
# locally they explore new examples each time.
try:
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
    if os.environ.get("CI"):
        settings.load_profile("ci")
except ImportError:  # pragma: no cover
    pass
