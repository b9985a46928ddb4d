"""Bayesian random-effects pooling (analysis/bayes_meta.py, METHODS §6c) against brute-force
30-digit quadrature (tests/reference/make_bayes_reference.py, mpmath)."""

import json
from pathlib import Path

import numpy as np
import pytest

from analysis.bayes_meta import bayes_random_effects

REF = json.loads((Path(__file__).parent / "reference" / "bayes_reference.json").read_text())
CASES = {
    "bcg": None,
    "lagged5": ([-0.12, -0.05, -0.2, -0.08, -0.15], [0.03**2, 0.04**2, 0.05**2, 0.02**2, 0.06**2]),
    "homog3": ([-0.101, -0.099, -0.1], [0.04**2, 0.05**2, 0.03**2]),
    "two": ([0.3, -0.1], [0.1**2, 0.15**2]),
}
FIELDS = ("mu_mean", "mu_low", "mu_median", "mu_high", "tau_mean", "tau_low", "tau_median", "tau_high",
          "pred_low", "pred_high")


def _data(name):
    if name == "bcg":
        meta = json.loads((Path(__file__).parent / "reference" / "meta_reference.json").read_text())
        d = meta["datasets"]["bcg"]
        return d["yi"], d["vi"]
    return CASES[name]


@pytest.mark.parametrize("name", list(CASES))
def test_equals_high_precision_quadrature(name):
    y, v = _data(name)
    r = REF[name]
    res = bayes_random_effects(y, v, prior_scale=r["prior_scale"])
    for f in FIELDS:
        assert getattr(res, f) == pytest.approx(r[f], rel=1e-7, abs=1e-9), f
    assert res.k == r["k"]


def test_prior_is_stated_and_matters():
    y, v = CASES["lagged5"]
    wide = bayes_random_effects(y, v, prior_scale=1.0)
    narrow = bayes_random_effects(y, v, prior_scale=0.01)
    assert "half-normal with scale 0.010" in narrow.summary().replace("0.0100", "0.010")
    assert narrow.tau_high < wide.tau_high
    assert narrow.mu_high - narrow.mu_low < wide.mu_high - wide.mu_low


def test_one_study_and_bad_input():
    r = bayes_random_effects([0.2], [0.01])
    assert r.mu_low < 0.2 < r.mu_high
    with pytest.raises(ValueError, match="positive"):
        bayes_random_effects([0.1, 0.2], [0.01, 0.0])
    with pytest.raises(ValueError, match="prior scale"):
        bayes_random_effects([0.1, 0.2], [0.01, 0.02], prior_scale=-1)
    assert np.isfinite(bayes_random_effects([0.1, 0.2], [0.01, 0.02]).to_frame()["ci_low"]).all()
