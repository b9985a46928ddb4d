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


def test_sentences_agree_in_number():
    """Issue 13: "their symptoms the next session is", "When a patient's symptoms is"."""
    sentences = [
        lagged_effect_sentence(e, lo, hi, d, lag, std, eff)
        for d in ("alliance_to_symptoms", "symptoms_to_alliance")
        for e, lo, hi in ((-0.12, -0.2, -0.04), (0.3, 0.1, 0.5))
        for lag in (1, 2)
        for std in (True, False)
        for eff in ("within-patient", "total")
    ]
    for s in sentences:
        assert "symptoms is" not in s and "symptoms the next session" not in s, s
        assert "alliance the next session" not in s, s
        assert "'s symptom score is" in s or "'s alliance rating is" in s or " goes with a " in s, s
    s = lagged_effect_sentence(-0.12, -0.2, -0.04, "symptoms_to_alliance")
    assert s.startswith("When a patient's symptom score is one standard deviation above their own usual level, "
                        "their alliance rating at the next session is 0.12 standard deviations lower;")
    s = lagged_effect_sentence(-0.12, -0.2, -0.04, "alliance_to_symptoms", effect="total")
    assert s.startswith("An alliance rating one standard deviation higher goes with a symptom score at the next "
                        "session that is 0.12 standard deviations lower (higher symptom scores = more severe);")


def test_sentence_numbers_use_the_formatting_rule():
    s = lagged_effect_sentence(-0.004, -0.012, 0.004, "alliance_to_symptoms")
    assert "0.0040 standard deviations lower" in s  # not "0.00"
    assert "(−0.01 to 0.0040)" in s  # true minus sign; the small bound keeps two significant digits
    assert count_sentence(1, 1, 0) == "1 of 1 fitted study has a confidence interval that excludes zero."
