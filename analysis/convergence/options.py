"""The Convergence page's model options, declared once (METHODS §8; :mod:`analysis.options`).

The keyword arguments of :func:`analysis.convergence.growth_models` and
:func:`analysis.convergence.dyad_scores` that a user chooses: the app's widgets
and URL parameters, the presets' checks and the messages come from these
declarations.

>>> ConvergenceOptions(transform="yeo_johnson").kwargs()["transform"]
'yeo_johnson'
>>> ConvergenceOptions(time="week")
Traceback (most recent call last):
...
ValueError: time must be one of 'session', 'from_first', 'occasion'; got 'week'.
"""

from __future__ import annotations

from dataclasses import dataclass

from analysis.convergence.growth import TIMES
from analysis.convergence.scores import TRANSFORMS
from analysis.options import Declared, option

__all__ = ["SCORE_METHODS", "ConvergenceOptions"]

M8 = "8-alliance-convergence-convergence-paper"
SCORE_METHODS = ("ols", "multilevel")
DISCREPANCIES = ("absolute", "signed")
THERAPIST_LEVELS = ("never", "lrt", "always")
EARLY_DISCREPANCIES = ("raw", "fitted")


@dataclass(frozen=True)
class ConvergenceOptions(Declared):
    """How convergence scores are made and the growth models fitted (METHODS §8).

    >>> ConvergenceOptions(discrepancy="signed").kwargs()["discrepancy"]
    'signed'
    """

    score_method: str = option(
        "choice", "ols", choices=SCORE_METHODS, label="Growth lines", widget="radio", url="lines", methods=M8,
        labels={"ols": "Per-dyad OLS lines", "multilevel": "Multilevel growth curves (empirical Bayes)"},
        help="How each dyad's patient (P̂) and therapist (T̂) alliance lines are estimated before the "
             "convergence score is taken from them.")
    discrepancy: str = option(
        "choice", "absolute", choices=DISCREPANCIES, label="Convergence score", widget="radio", url="score",
        methods=M8, labels={"absolute": "− slope of |P̂ − T̂| (positive = approaching)",
                            "signed": "slope of P̂ − T̂ (signed)"},
        help="Absolute: the raters approach each other whoever rates higher. Signed: the patient's rating "
             "moves towards (or away from) the therapist's in one direction.")
    transform: str = option(
        "choice", "none", choices=TRANSFORMS, label="Transform", widget="radio", url="transform", methods=M8,
        labels={"none": "None", "log_shift": "log(x − min + 1)",
                "yeo_johnson": "Yeo–Johnson on the standardized score"},
        help="A transform of a skewed convergence score before it enters Models 2–3.")
    time: str = option(
        "choice", "session", choices=TIMES, label="Time", widget="radio", url="time", methods=M8,
        labels={"session": "Session number", "from_first": "Sessions since the first",
                "occasion": "Assessment occasion (0, 1, 2, …)"},
        help="The time scale of the symptom growth models.")
    therapist_level: str = option(
        "choice", "never", choices=THERAPIST_LEVELS, label="Therapist level", widget="radio", url="levels",
        methods=M8, labels={"never": "Two levels", "lrt": "Decide in the null model (LRT)",
                            "always": "Three levels"},
        help="One decision for every model: the therapist variance is tested in the null model "
             "(50:50 mixture of χ²₀ and χ²₁).")
    early_discrepancy: str = option(
        "choice", "raw", choices=EARLY_DISCREPANCIES, label="Early P − T discrepancy in Model 3", widget="radio",
        url="early", methods=M8, labels={"raw": "Observed (dropped: = early P − early T)",
                                         "fitted": "From the growth lines at the first session"},
        help="The early discrepancy as observed (then it equals early P − early T and is dropped as collinear) "
             "or from each dyad's growth lines at the first session.")
    covariates: tuple = option(
        "columns", (), label="Extra dyad-level covariates (Models 2–3)", methods=M8,
        reserved=("study", "patient", "session", "alliance", "therapist_alliance", "symptoms", "therapist"),
        reserved_reason="it is a core column",
        help="Numeric columns constant within a dyad, entered in Models 2 and 3 on the intercept and slope.")

    def kwargs(self) -> dict:
        """The options as keyword arguments of :func:`analysis.convergence.growth_models`."""
        return self.to_dict()
