"""Option combinations no model can fit (issue 25 #5): from a link they are rejected with a message and the
page runs; in the panel the impossible choice is disabled with its reason; a bundle drops them (named)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def _texts(at) -> str:
    return " ".join(e.value for e in [*at.info, *at.warning, *at.error, *at.caption])


CASES = [
    ("app_pages/lagged.py", {"estimator": "fixed_effects", "trend": "fixed_random"}),
    ("app_pages/pooled.py", {"cross": "1", "centering": "none"}),
    ("app_pages/pooled.py", {"outmod": "1", "prior": "0"}),
    ("app_pages/lagged.py", {"lag": "0", "directions": "alliance_to_symptoms"}),
    ("app_pages/lagged.py", {"df": "satterthwaite", "estimator": "fixed_effects"}),
]


def _open(page, params):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(page)
    at.run()
    return at


@pytest.mark.parametrize("page, params", CASES)
def test_impossible_combination_from_a_link_runs(page, params):
    """The issue's links raised tracebacks; now the page runs (the impossible value is analysed at its default)."""
    at = _open(page, params)
    assert not at.exception, [e.value for e in at.exception]


@pytest.mark.parametrize("page, params, label", [(*CASES[0], "Time trend"), (*CASES[3], "Directions")])
def test_impossible_combination_from_a_link_is_named(page, params, label):
    """The dropped value is named, with its option's label, and no section shows an error (lag 0 included)."""
    at = _open(page, params)
    assert not at.error, [e.value for e in at.error]
    named = [w.value for w in at.warning if "was not used" in w.value]
    assert any(w.startswith(f"From the link, {label} = ") for w in named), named


def test_a_possible_link_value_is_not_reported():
    at = _open("app_pages/lagged.py", {"centering": "detrended", "lag": "2"})
    assert not at.exception
    assert not [w.value for w in at.warning if "was not used" in w.value]


def test_cross_level_is_disabled_without_a_between_part():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.switch_page("app_pages/lagged.py")
    at.run()
    at.radio(key="opt_centering").set_value("none").run()
    assert not at.exception
    cb = at.checkbox(key="opt_cross_level")
    assert cb.disabled and "between" in (cb.help or "").lower()
