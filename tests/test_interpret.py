import math

from analysis.interpret import count_sentence, lagged_effect_sentence


def test_sentence_follows_sign_and_ci():
    s = lagged_effect_sentence(-0.12, -0.2, -0.04, "alliance_to_symptoms")
    assert "0.12 standard deviations lower" in s and "excludes zero" in s and "own usual level" in s
    s = lagged_effect_sentence(0.05, -0.01, 0.11, "symptoms_to_alliance", lag=2, standardized=False, effect="total")
    assert "0.05 points higher" in s and "2 sessions later" in s and "includes zero" in s
    assert "own usual" not in s


def test_sentence_without_estimate():
    assert "could not be fitted" in lagged_effect_sentence(math.nan, math.nan, math.nan, "alliance_to_symptoms")


def test_count_sentence():
    assert count_sentence(3, 5, 1).startswith("3 of 5 fitted studies")
    assert "1 study could not be fitted and is left out" in count_sentence(0, 4, 1)
