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


def serving_problem() -> str | None:
    """Why the running server is not configured as the app's settings say, or None.

    ``.streamlit/config.toml`` beside app.py is read wherever the app is started from (Streamlit
    reads a script-level config); it binds 127.0.0.1 and turns usage statistics off. A server
    without an address (every interface) or with usage statistics on was started without those
    settings (e.g. an old Streamlit, or a config file elsewhere that overrides them): the app
    refuses to show data then, and says how to start it. Serving beyond this computer is an
    explicit choice: ``make serve ADDRESS=…`` (or ``--server.address``) names the address.
    """
    from streamlit import config

    how = ("Start it with `make run` or `alliance-dashboard`, or `streamlit run app.py` with the project's "
           ".streamlit/config.toml beside app.py.")
    if not str(config.get_option("server.address") or "").strip():
        return ("This server listens on every network interface, so others on the network could open it and "
                "see clinical data: the app's settings were not read. " + how + " To serve a class on purpose, "
                "name the address: `make serve ADDRESS=<address>` (README, \"Serving a class\").")
    if config.get_option("browser.gatherUsageStats"):
        return "This server sends usage statistics to Streamlit: the app's settings were not read. " + how
    return None
