"""Config that travels with the app (issue 25 #11): started from any folder, the server binds 127.0.0.1 with
usage statistics off; a server without the app's settings refuses to show data and says how to start it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ui import launch

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(180)
def test_started_from_another_folder_the_server_binds_loopback_only(tmp_path):
    port = _free_port()
    env = {**os.environ, "HOME": str(tmp_path)}  # no user-level ~/.streamlit/config.toml either
    log = tmp_path / "server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
                                 "--server.port", str(port), "--server.headless", "true"],
                                cwd=tmp_path, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("server did not start: " + log.read_text()[-2000:])
        text = log.read_text()
        assert f"127.0.0.1:{port}" in text and "0.0.0.0" not in text, text[-1000:]
        # reachable on loopback only: no socket on another interface of this machine
        others = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
        for ip in others:
            if ip.startswith("127."):
                continue
            with pytest.raises(OSError), socket.create_connection((ip, port), timeout=2):
                pass
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_server_without_the_settings_refuses_and_says_how(monkeypatch):
    from streamlit import config

    real = config.get_option
    values = {"server.address": "", "browser.gatherUsageStats": False}
    monkeypatch.setattr(config, "get_option", lambda k: values.get(k, real(k)))
    msg = launch.serving_problem()
    assert msg and "every network interface" in msg and "make run" in msg and "make serve" in msg
    values.update({"server.address": "127.0.0.1", "browser.gatherUsageStats": True})
    assert "usage statistics" in launch.serving_problem()
    values["browser.gatherUsageStats"] = False
    assert launch.serving_problem() is None
    values["server.address"] = "192.168.1.20"  # make serve ADDRESS=…: an explicit choice
    assert launch.serving_problem() is None


def test_the_shipped_config_binds_loopback_without_telemetry():
    cfg = (ROOT / ".streamlit" / "config.toml").read_text()
    assert 'address = "127.0.0.1"' in cfg and "gatherUsageStats = false" in cfg
