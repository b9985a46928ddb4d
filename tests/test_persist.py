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
