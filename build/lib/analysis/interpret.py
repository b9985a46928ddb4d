"""Plain-language sentences for the statistics shown in the app.

Kept in ``analysis`` (not in the pages) so the wording can be tested against
the numbers it describes. Numbers go through :mod:`analysis.formatting`.
"""

from __future__ import annotations

import math

from analysis import formatting as fmt

# What is measured, as a singular noun phrase, so that every sentence agrees in number
# ("a patient's symptom score is", never "a patient's symptoms is").
_NAMES = {
    "alliance_to_symptoms": ("alliance rating", "symptom score"),
    "symptoms_to_alliance": ("symptom score", "alliance rating"),
}


def lagged_effect_sentence(estimate: float, ci_low: float, ci_high: float, direction: str, lag: int = 1,
                           standardized: bool = True, effect: str = "within-patient", level: float = 0.95) -> str:
    """Describe one lagged coefficient (METHODS §5) in words.

    Within-patient: "when a patient's X is one unit above their own usual
    level, their Y at the next session (t + lag) is b units higher/lower".
    Total effect (centering none / grand mean): "an X one unit higher goes
    with a Y at the next session that is b units higher/lower".
    """
    if not all(map(math.isfinite, (estimate, ci_low, ci_high))):
        return "No estimate: the model could not be fitted."
    x, y = _NAMES[direction]
    unit = "standard deviation" if standardized else "point"
    units = "standard deviations" if standardized else "points"
    more = "higher" if estimate > 0 else "lower"
    when = "at the next session" if lag == 1 else f"{lag} sessions later"
    size = f"{fmt.num(abs(estimate))} {unit if fmt.num(abs(estimate)) == '1.00' else units} {more}"
    if effect == "within-patient":
        head = f"When a patient's {x} is one {unit} above their own usual level, their {y} {when} is {size}"
    else:
        article = "An" if x[0] in "aeiou" else "A"
        head = f"{article} {x} one {unit} higher goes with a {y} {when} that is {size}"
    sig = (ci_low > 0 or ci_high < 0)
    tail = (f"the {100 * level:g}% CI ({fmt.num(ci_low)} to {fmt.num(ci_high)}) "
            + ("excludes zero." if sig else "includes zero, so the data are also compatible with no effect."))
    meaning = " (higher symptom scores = more severe)" if y == "symptom score" else ""
    return f"{head}{meaning}; {tail}"


def count_sentence(n_sig: int, n_fitted: int, n_failed: int) -> str:
    """How many studies show an effect whose CI excludes zero."""
    s = (f"{n_sig} of {n_fitted} fitted {'study' if n_fitted == 1 else 'studies'} "
         f"{'has' if n_fitted == 1 else 'have'} a confidence interval that excludes zero.")
    if n_failed:
        s += (f" {n_failed} {'study' if n_failed == 1 else 'studies'} could not be fitted and "
              f"{'is' if n_failed == 1 else 'are'} left out of pooling (reasons in the table).")
    return s
