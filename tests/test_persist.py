"""ui.persist.Param: URL values are decoded only when allowed, and encode/decode round-trip."""

import pytest

from ui.persist import TEACHING, Param


@pytest.mark.parametrize("param, value", [
    (Param("k", "choice", ("a", "b")), "b"),
    (Param("k", "choice", (1, 2, 3)), 2),
    (Param("k", "choices", ("x", "y", "z")), ["z", "x"]),
    (Param("k", "bool"), True),
    (Param("k", "bool"), False),
    (Param("k", "int", lo=0, hi=10), 7),
    (Param("k", "float", lo=-0.5, hi=0.5), -0.35),
    (Param("k", "range", lo=1, hi=20), (2, 6)),
])
def test_encode_decode_round_trip(param, value):
    assert param.decode(param.encode(value)) == value


@pytest.mark.parametrize("param, text", [
    (Param("k", "choice", ("a", "b")), "c"),
    (Param("k", "choice", ("a", "b")), "<script>alert(1)</script>"),
    (Param("k", "choices", ("x", "y")), "x,x"),
    (Param("k", "choices", ("x", "y")), ""),
    (Param("k", "choices", ("x", "y")), "x,w"),
    (Param("k", "bool"), "yes please"),
    (Param("k", "int", lo=0, hi=10), "11"),
    (Param("k", "int", lo=0, hi=10), "3.5"),
    (Param("k", "float", lo=-0.5, hi=0.5), "nan"),
    (Param("k", "float", lo=-0.5, hi=0.5), "0.9"),
    (Param("k", "range", lo=1, hi=20), "6-2"),
    (Param("k", "range", lo=1, hi=20), "0-5"),
    (Param("k", "range", lo=1, hi=20), "-3-5"),
    (Param("k", "range", lo=1, hi=20), "a-b"),
])
def test_values_outside_the_allowed_set_are_ignored(param, text):
    assert param.decode(text) is None


def test_teaching_parameters_cover_scenario_and_seed():
    assert {"within", "between", "ar", "feedback", "sessions", "patients", "missing", "seed", "prior", "present"} == set(TEACHING)
    assert TEACHING["seed"].decode("123") == 123


def test_a_page_writes_its_options_into_the_url_in_one_message(monkeypatch):
    """Issue 24: every assignment of a query parameter is a message to the browser; a page's first run writes
    all its options (about fifteen on Lagged effects) in one update."""
    from pathlib import Path

    from streamlit.runtime.state.query_params import QueryParams
    from streamlit.testing.v1 import AppTest

    sent = []
    orig = QueryParams._send_query_param_msg
    monkeypatch.setattr(QueryParams, "_send_query_param_msg", lambda self: (sent.append(1), orig(self))[1])
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=180)
    at.run()
    at.switch_page("app_pages/lagged.py")
    sent.clear()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert {"centering", "lag", "estimator"} <= set(at.query_params)  # (the options reached the URL)
    assert len(sent) == 1, len(sent)
