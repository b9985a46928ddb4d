"""The app shell: every page exists, the demo is loaded on first start, and no page raises."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def test_every_navigation_page_exists():
    import ast

    tree = ast.parse((ROOT / "app.py").read_text())
    specs = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign) and n.targets[0].id == "PAGE_SPECS")
    files = [elt.elts[0].value for elt in specs.value.elts]
    assert len(files) == 9
    for f in files:
        assert (ROOT / f).exists(), f"navigation lists {f}, which does not exist"


def test_first_start_loads_ipd_demo_and_shows_it_in_sidebar():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    assert not at.exception
    ds = at.session_state["dataset"]
    assert ds["df"]["study"].nunique() == 17
    assert ds["df"].groupby(["study", "patient"]).ngroups == 5350
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "17 studies · 5,350 patients" in captions


@pytest.mark.parametrize("page", ["app_pages/home.py", "app_pages/methods.py"])
def test_static_pages_render(page):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception
    assert at.title[0].value
