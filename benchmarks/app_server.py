"""Start the dashboard for a benchmark and read its memory (shared by bench_memory and bench_class).

``streamlit run app.py --server.headless true --server.port P`` on loopback, wait on
``/_stcore/health``, and on exit stop exactly that process (its own process group).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GB = 1024**3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def app_server(timeout: float = 120.0, log: Path | None = None, script: str | Path = "app.py",
               env: dict | None = None):
    """Yield ``(url, pid)`` of a freshly started app (``script``, default the dashboard); kill exactly that
    process afterwards. ``env``: extra environment variables (e.g. ``ALLIANCE_CLASS=1``, as ``make serve``)."""
    port = free_port()
    env = dict(os.environ, STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", **(env or {}))
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    if threading.current_thread() is threading.main_thread():  # `timeout` or kill: still stop the server
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        deadline = time.time() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early (code {proc.returncode})")
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise TimeoutError("streamlit did not become healthy")
            time.sleep(0.3)
        yield url, proc.pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
        if log:
            out.close()


def rss(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` in bytes (/proc VmRSS, VmHWM)."""
    cur = peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            cur = float(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = float(line.split()[1]) * 1024
    return cur, peak


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
