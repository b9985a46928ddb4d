"""``alliance-dashboard``: start the app (``streamlit run app.py``) from an installed copy.

The installed package keeps this folder's layout (app.py, app_pages/, ui/,
.streamlit/config.toml, demo_data/, docs/), so the app is started in that
folder and Streamlit reads the shipped configuration (localhost only).
``alliance-dashboard --version`` prints the version.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Start the dashboard; extra arguments go to ``streamlit run`` (e.g. ``--server.port 8502``)."""
    import analysis

    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["--version"], ["-V"]):
        print(f"alliance-dashboard {analysis.__version__}")
        return 0
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_DIR / "app.py"), *args]
    return subprocess.call(cmd, cwd=APP_DIR, env=dict(os.environ))


if __name__ == "__main__":
    raise SystemExit(main())
