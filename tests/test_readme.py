"""Issue 23 #17: the README says how to change the port and that paper presets exist; the screenshot is made
by a script (`make screenshot`); `make clean` removes what `pip install .` leaves behind."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_port_presets_and_screenshot():
    text = (ROOT / "README.md").read_text()
    assert "make run PORT=" in text and "--server.port" in text
    assert "Reproduce a paper" in text and "presets" in text
    assert "make screenshot" in text and "docs/screenshot.png" in text
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^screenshot:.*\n\t.*scripts/screenshot.py", make, re.M)
    assert re.search(r"^clean:\n\trm -rf .*\bbuild\b", make, re.M)
    spec = importlib.util.spec_from_file_location("screenshot", ROOT / "scripts" / "screenshot.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert callable(mod.main) and mod.OUT == ROOT / "docs" / "screenshot.png"
