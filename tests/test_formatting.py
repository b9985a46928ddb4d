"""analysis.formatting: the one rule for numbers readers see (APA 7th ed.)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis import formatting as f

M = "\u2212"


@pytest.mark.parametrize("p, text", [
    (0.0, "< .001"), (3e-9, "< .001"), (0.00099, "< .001"), (0.001, ".001"), (0.0014, ".001"),
    (0.042, ".042"), (0.05, ".050"), (0.5, ".500"), (0.999, ".999"), (0.9996, "> .999"), (1.0, "> .999"),
])
def test_pvalue_apa(p, text):
    assert f.pvalue(p) == text


def test_p_text_in_sentences_and_missing():
    assert f.p_text(1.02e-6) == "p < .001"
    assert f.p_text(0.2794) == "p = .279"
    assert f.p_text(0.99999) == "p > .999"
    for bad in (None, math.nan, math.inf, "x"):
        assert f.p_text(bad) == "p = NA"
        assert f.pvalue(bad) == "NA"
    assert f.pvalue(math.nan, na="—") == "—"


def test_true_minus_and_no_negative_zero():
    assert f.num(-0.03) == M + "0.03"
    assert "-" not in f.num(-12.5) and f.num(-12.5).startswith(M)
    assert f.num(-0.0) == "0.00"
    assert f.num(-1e-12, 2) == "0.00"  # below 4 extra decimals: rounding noise, no negative zero (issue 23)
    assert f.num(-1.5e-5, 2) == M + "0.000015"  # small, not zero: significant digits
    assert f.interval(-0.2, -0.04) == f"[{M}0.20, {M}0.04]"
    assert f.estimate_ci(-0.12, -0.2, -0.04) == f"{M}0.12 [{M}0.20, {M}0.04]"
    assert f.signed(0.4) == "+0.40" and f.signed(-0.12) == M + "0.12" and f.signed(0.0) == "0.00"


def test_small_values_keep_significant_digits():
    assert f.num(0.0042) == "0.0042"
    assert f.num(0.00042) == "0.00042"
    assert f.num(-0.0042) == M + "0.0042"
    assert f.num(0.012) == "0.01"  # does not round to zero: the requested decimals
    assert f.num(0.0042, 3) == "0.004"
    assert f.tau2(0.0004) == "0.00040"
    assert f.tau2(0.00336) == "0.0034"
    assert f.tau2(0.313) == "0.313"
    assert f.tau2(0.0) == "0.000"
    assert f.tau2_interval(0.0016, 0.13) == "[0.0016, 0.130]"
    assert f.percent(0.004) == "0.40%" and f.percent(0.82) == "82%"


def test_missing_values_print_na():
    for bad in (None, math.nan, -math.inf, np.float64("nan"), "text"):
        assert f.num(bad) == "NA"
        assert f.count(bad) == "NA"
        assert f.percent(bad) == "NA"
        assert f.tau2(bad) == "NA"
    assert f.num(None, na="—") == "—"
    assert f.interval(math.nan, 1.0) == "[NA, 1.00]"


def test_counts_and_statistics():
    assert f.count(5350) == "5,350" and f.count(12.0) == "12"
    assert f.stat("z", 1.96) == "z = 1.96"
    assert f.stat("t", -2.31, 1458) == f"t(1458) = {M}2.31"  # df without a thousands separator
    assert f.stat("F", 4.2, (1, 15)) == "F(1, 15) = 4.20"
    assert f.stat("t", 2.0, 12.34) == "t(12.3) = 2.00"  # Satterthwaite df
    assert f.stat("z", 1.0, math.nan) == "z = 1.00"
    assert f.stat("Q", 152.2306, 12) == "Q(12) = 152.23"


def test_option_text_in_words():
    assert f.option_text(None) == "none"
    assert f.option_text(True) == "yes" and f.option_text(np.bool_(False)) == "no"
    assert f.option_text((1, None)) == "1 to last"
    assert f.option_text((None, 20)) == "first to 20"
    assert f.option_text((0.1, 0.9)) == "0.100 to 0.900"  # not rounded to whole numbers
    assert f.option_text(("alliance_to_symptoms", "symptoms_to_alliance")) == \
        "alliance to symptoms, symptoms to alliance"
    assert f.option_text(()) == "none"
    assert f.option_text("grand_mean") == "grand mean"
    assert f.option_text(0.95) == "0.950" and f.option_text(3) == "3" and f.option_text(np.int64(2)) == "2"
    assert f.option_text(np.float64(0.5)) == "0.500"


def test_an_estimate_and_its_interval_share_their_decimals():
    """APA: an estimate and its bounds with the same decimals; small-scale results get more decimals from
    their largest magnitude (two significant digits), and a negative bound rounding to zero keeps its sign."""
    assert f.estimate_ci(0.0052, -0.0008, 0.0123) == f"0.005 [{M}0.001, 0.012]"
    assert f.interval(-0.0008, 0.0123) == f"[{M}0.001, 0.012]"
    assert f.estimate_ci(0.0042, 0.001, 0.0074) == "0.0042 [0.0010, 0.0074]"
    assert f.estimate_ci(0.25, -0.0008, 0.5) == f"0.25 [{M}0.00, 0.50]"
    assert f.estimate_ci(12.5, 3.2, 21.9) == "12.50 [3.20, 21.90]"
    assert f.estimate_ci(math.nan, math.nan, math.nan) == "NA [NA, NA]"


def test_one_number_of_decimals_for_a_column():
    """decimals_for: a forest-plot column or table shares one number of decimals, from its largest magnitude."""
    assert f.decimals_for([-0.049, -0.083, -0.014, -0.22, -0.30, -0.13]) == 2
    assert f.decimals_for([0.0042, 0.001, 0.0074]) == 4
    assert f.decimals_for([math.nan, 12.5]) == 2 and f.decimals_for([]) == 2
    assert f.estimate_ci(-0.049, -0.083, -0.014, decimals=2) == f"{M}0.05 [{M}0.08, {M}0.01]"
    assert f.interval(-0.004, 0.13, decimals=2) == f"[{M}0.00, 0.13]"
