"""The Ruptures & gains page's options, declared once (METHODS §9–§11; :mod:`analysis.options`).

One options class per tab: :class:`RuptureOptions` (§9), :class:`GainOptions` (§10),
:class:`ReliableChangeOptions` (§11), :class:`OutcomeOptions` (relation to
outcome, §9/§10) and :class:`DropoutOptions` (dropout models, §9a). The page's widgets and words, its URL parameters and the
messages come from these declarations; the keyword arguments are those of
:func:`analysis.events.ruptures`, :func:`~analysis.events.sudden_gains`,
:func:`~analysis.events.reliable_change` and :func:`~analysis.events.outcome_by_pattern`.

>>> RuptureOptions(criterion="mean_sd", sd="pooled").sd
'pooled'
>>> RuptureOptions(sd="pooled")
Traceback (most recent call last):
...
ValueError: This SD does not go with the criterion: 'pooled' and 'max' need criterion 'mean_sd' (the dip included); 'moderated' needs a criterion against the patient's other sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from analysis.events._base import RATERS
from analysis.events.change import RC_METHODS, SCL90R_GSI_GERMAN_CUTOFF
from analysis.events.dropout import DropoutOptions  # noqa: F401 (declared beside its model, listed here)
from analysis.events.gains import GAIN_CONVENTIONS
from analysis.events.rupture import _SD_CHOICES, CRITERION_LABELS, DEFAULT_K, RUPTURE_CRITERIA
from analysis.options import Constraint, Declared, option

__all__ = ["DropoutOptions", "GainOptions", "OutcomeOptions", "ReliableChangeOptions", "RuptureOptions"]

M9 = "9-ruptures-ruptures-paper-stiles-2004-strauss-2006-gumz-2012"
M10 = "10-sudden-gains-review-tang-and-de-rubeis-1999"
M11 = "11-reliable-and-clinically-significant-change-jacobson-and-truax-1991"


@dataclass(frozen=True)
class RuptureOptions(Declared):
    """How ruptures and repairs are flagged (METHODS §9; :func:`analysis.events.ruptures`).

    >>> RuptureOptions().criterion
    'default'
    >>> RuptureOptions(criterion="x")
    Traceback (most recent call last):
    ...
    ValueError: criterion must be one of 'default', 'study_sd', 'other_sessions', 'mean_sd'; got 'x'.
    """

    criterion: str = option(
        "choice", "default", choices=tuple(CRITERION_LABELS), labels=CRITERION_LABELS, label="Criterion",
        widget="select", url="criterion", methods=M9,
        help="A named criterion sets k, the SD and the trend (change them below).")
    k: float = option(
        "float", DEFAULT_K, lo=0.5, hi=4.0, label="k: SDs below the expected value", url="k", methods=M9,
        help="How many SDs below the expected value a session's alliance must fall to be a dip.")
    sd: str = option(
        "choice", "moderated", choices=("moderated", "robust", "patient", "pooled", "max"), label="SD",
        widget="select", url="sd", methods=M9,
        labels={"moderated": "Patient's own SD, shrunk toward the study's (moderated t)",
                "robust": "Robust study-level within-patient SD", "patient": "Patient's own SD",
                "pooled": "Study's pooled within-patient SD", "max": "Larger of patient and pooled SD"},
        help="The SD that k multiplies.")
    detrend: bool = option(
        "flag", True, label="Against the patient's own trend (detrended)", url="detrend", methods=M9,
        help="Expected value from the line through the patient's other sessions instead of their mean.")
    rater: str = option(
        "choice", "patient", choices=tuple(RATERS), labels=RATERS, label="Alliance rated by", widget="radio",
        url="rater", methods=M9, help="Whose alliance ratings are searched for ruptures.")
    pre_level: str = option(
        "choice", "previous", choices=("previous", "last_non_rupture"), label="Pre-rupture level", widget="select",
        methods=M9, labels={"previous": "Session just before the rupture",
                            "last_non_rupture": "Last earlier non-rupture session"},
        help="The level a later session must reach again for the rupture to count as repaired.")
    rule: str = option(
        "choice", "any", choices=("any", "all"), label="Rupture–repair when", widget="select", methods=M9,
        labels={"any": "at least one rupture was repaired", "all": "every rupture was repaired"},
        help="When a patient with several ruptures counts as rupture–repair.")
    item_rule: str = option(
        "choice", "or", choices=("or", "and", "item"), label="Combine", widget="radio", methods=M9,
        labels={"or": "dip or item", "and": "dip and item", "item": "item alone"},
        help="How a rupture item column combines with the dip.")

    CONSTRAINTS: ClassVar[tuple[Constraint, ...]] = (
        Constraint(("sd", "criterion"), lambda o: o.sd not in _SD_CHOICES[RUPTURE_CRITERIA[o.criterion].reference],
                   "This SD does not go with the criterion: 'pooled' and 'max' need criterion 'mean_sd' (the dip "
                   "included); 'moderated' needs a criterion against the patient's other sessions."),
    )


@dataclass(frozen=True)
class GainOptions(Declared):
    """Sudden gains or losses (METHODS §10; :func:`analysis.events.sudden_gains`).

    >>> GainOptions(kind="loss").kind
    'loss'
    >>> GainOptions(kind="drop")
    Traceback (most recent call last):
    ...
    ValueError: kind must be one of 'gain', 'loss'; got 'drop'.
    """

    kind: str = option(
        "choice", "gain", choices=("gain", "loss"), labels={"gain": "Sudden gains", "loss": "Sudden losses"},
        label="Event", widget="radio", url="event", methods=M10,
        help="A sudden gain is a large, stable one-session improvement; a sudden loss the mirror image.")
    better: str = option(
        "choice", "lower", choices=("lower", "higher"), label="Direction of the measure", widget="radio",
        url="better", methods=M10, labels={"lower": "Lower scores are better (symptoms)",
                                           "higher": "Higher scores are better"},
        help="Which direction of the measure is an improvement.")
    first_only: bool = option(
        "flag", False, label="Only each patient's first event", methods=M10,
        help="Count only the first gain (or loss) of each patient.")
    pairing: str = option(
        "choice", "session", choices=("session", "next_observed"), label="Consecutive sessions", widget="radio",
        methods=M10, labels={"session": "Sessions n and n + 1 by number", "next_observed": "Next observed session"},
        help="Whether a missed session breaks a pair (by number) or the next observed session is used.")
    convention: str = option(
        "choice", "published", choices=tuple(GAIN_CONVENTIONS), labels=GAIN_CONVENTIONS, label="Conventions",
        widget="radio", url="convention", methods=M10,
        help="Published criteria (default) or as the R package suddengains (qt critical values, strict reversal).")


@dataclass(frozen=True)
class ReliableChangeOptions(Declared):
    """Reliable and clinically significant change (METHODS §11; :func:`analysis.events.reliable_change`).

    >>> ReliableChangeOptions().method
    'JT'
    >>> ReliableChangeOptions(method="Z")
    Traceback (most recent call last):
    ...
    ValueError: method must be one of 'JT', 'GLN', 'EN', 'HA'; got 'Z'.
    """

    method: str = option(
        "choice", "JT", choices=tuple(RC_METHODS), labels=RC_METHODS, label="Method", widget="radio", url="rc",
        methods=M11, help="The reliable change index: Jacobson–Truax (default) or a regression-to-the-mean "
                          "corrected variant.")
    cutoff_mode: str = option(
        "choice", "none", choices=("none", "norms", "typed", "scl90"), label="Clinical cut-off c", widget="radio",
        methods=M11, labels={"none": "No cut-off", "norms": "Compute c from norms", "typed": "Type c myself",
                             "scl90": f"Preset: SCL-90-R GSI, German norms, c = {SCL90R_GSI_GERMAN_CUTOFF}"},
        help="The cut-off c between the clinical and the functional population (Jacobson & Truax criterion c).")


@dataclass(frozen=True)
class OutcomeOptions(Declared):
    """Relation of a pattern to outcome (METHODS §9/§10; :func:`analysis.events.outcome_by_pattern`).

    >>> OutcomeOptions().event
    'rupture'
    """

    event: str = option(
        "choice", "rupture", choices=("rupture", "repair", "rupture_repair", "repair_groups", "gain"),
        label="Pattern", widget="radio", url="outcome", methods=M9,
        labels={"rupture": "Any rupture", "repair": "At least one repaired rupture",
                "rupture_repair": "Rupture–repair", "repair_groups": "Rupture–repair vs unrepaired vs none",
                "gain": "At least one sudden gain / loss"},
        help="Patients with the pattern against patients without.")
    measure: str = option(
        "choice", "SMD", choices=("SMD", "MD"), labels={"SMD": "Hedges' g (default)", "MD": "Raw mean difference"},
        label="Effect size", widget="radio", url="effect", methods=M9,
        help="Per study Hedges' g or the raw difference of the symptom change, pooled by random effects.")

