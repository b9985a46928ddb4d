"""Plain-language sentences for the statistics shown in the app.

Kept in ``analysis`` (not in the pages) so the wording can be tested against
the numbers it describes.
"""

from __future__ import annotations

import math

_NAMES = {
    "alliance_to_symptoms": ("alliance", "symptoms"),
    "symptoms_to_alliance": ("symptoms", "alliance"),
}


def _fmt(x: float) -> str:
    return f"{x:.2f}".replace("-", "−")


def lagged_effect_sentence(estimate: float, ci_low: float, ci_high: float, direction: str, lag: int = 1,
                           standardized: bool = True, effect: str = "within-patient", level: float = 0.95) -> str:
    """Describe one lagged coefficient (METHODS §5) in words.

    Within-patient: "when a patient's X is one unit above their own usual
    level at session t, their Y at session t + lag is b units higher/lower".
    Total effect (centering none / grand mean): the same, without "their own".
    """
    if not all(map(math.isfinite, (estimate, ci_low, ci_high))):
        return "No estimate: the model could not be fitted."
    x, y = _NAMES[direction]
    unit = "standard deviation" if standardized else "point"
    units = "standard deviations" if standardized else "points"
    more = "higher" if estimate > 0 else "lower"
    sess = "the next session" if lag == 1 else f"{lag} sessions later"
    if effect == "within-patient":
        head = f"When a patient's {x} is one {unit} above their own usual level, their {y} {sess} is"
    else:
        head = f"Patients and sessions with {x} one {unit} higher have {y} {sess} that is"
    sig = (ci_low > 0 or ci_high < 0)
    tail = (f"the {int(level * 100)}% CI ({_fmt(ci_low)} to {_fmt(ci_high)}) "
            + ("excludes zero." if sig else "includes zero, so the data are also compatible with no effect."))
    meaning = ""
    if y == "symptoms":
        meaning = " (higher symptoms = more severe)"
    return f"{head} {abs(estimate):.2f} {units} {more}{meaning}; {tail}"


def count_sentence(n_sig: int, n_fitted: int, n_failed: int) -> str:
    """How many studies show an effect whose CI excludes zero."""
    s = f"{n_sig} of {n_fitted} fitted {'study' if n_fitted == 1 else 'studies'} have a confidence interval that excludes zero."
    if n_failed:
        s += f" {n_failed} {'study' if n_failed == 1 else 'studies'} could not be fitted and {'is' if n_failed == 1 else 'are'} left out of pooling (reasons in the table)."
    return s
