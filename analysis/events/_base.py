"""Shared building blocks of the event methods (METHODS §9–§11): input checks, constants,
the reliable change value, baseline SDs and within-study standardization."""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real

import numpy as np
import pandas as pd

from analysis.data import DataError, require_canonical
from analysis.standardize import standardize_within_study  # noqa: F401 (analysis.events exports it)

_Z = 1.96
_RTOL = 1e-9
_KEY = ["study", "patient"]
_RATER_COLUMN = {"patient": "alliance", "therapist": "therapist_alliance"}
#: whose alliance ratings a rupture search reads (the words: the declaration in analysis.events.options)
RATERS = {"patient": "Patient", "therapist": "Therapist", "both": "Both (same session)"}


# --------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------


def _tol(x) -> float | np.ndarray:
    return _RTOL * np.maximum(1.0, np.abs(x))


def _check_frame(df, value_cols, who: str) -> pd.DataFrame:
    """Canonical long data through the one guard (:func:`analysis.data.require_canonical`), its message
    prefixed with ``who``; returns study, patient, session and the value columns (float64, NaN = not
    observed), sorted by study, patient and session (natural order), with a fresh index."""
    try:
        data = require_canonical(df, list(value_cols))
    except DataError as exc:
        raise DataError(f"{who}: {exc}") from None
    return data[["study", "patient", "session", *dict.fromkeys(value_cols)]]


def _positive_number(x, name: str, who: str, *, allow_zero=False) -> float:
    if isinstance(x, bool) or not isinstance(x, Real):
        raise ValueError(f"{who}: {name} must be a number, got {x!r}.")
    x = float(x)
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        raise ValueError(f"{who}: {name} must be a finite number > 0, got {x!r}.")
    return x


def _reliability(x, who: str) -> float:
    if isinstance(x, bool) or not isinstance(x, Real) or not math.isfinite(float(x)):
        raise ValueError(f"{who}: reliability must be a number in [0, 1), got {x!r}.")
    x = float(x)
    if not 0.0 <= x < 1.0:
        raise ValueError(
            f"{who}: reliability must be in [0, 1) (e.g. Cronbach's α or test–retest r), "
            f"got {x!r}. With r = 1 the standard error of measurement is 0."
        )
    return x


def _per_study(value, studies, name: str, who: str, check) -> dict:
    """A scalar (same for all studies) or a mapping study -> value."""
    if isinstance(value, Mapping):
        keyed = {str(k): v for k, v in value.items()}
        lacking = [s for s in studies if s not in keyed]
        if lacking:
            raise ValueError(
                f"{who}: {name} was given per study but not for study/studies "
                f"{', '.join(map(repr, lacking))}."
            )
        return {s: check(keyed[s]) for s in studies}
    v = check(value)
    return {s: v for s in studies}


# --------------------------------------------------------------------------
# §11 reliable change building block (used by §10 criterion 1 too)
# --------------------------------------------------------------------------


def reliable_change_cutoff(sd: float, reliability: float) -> float:
    """Smallest reliable change (METHODS §10 criterion 1, §11).

    ``1.96 · √2 · SD · √(1 − r)`` = 1.96 × the standard error of the
    difference of two scores, S_diff = √(2·(SD·√(1 − r))²).
    """
    sd = _positive_number(sd, "sd", "reliable_change_cutoff")
    r = _reliability(reliability, "reliable_change_cutoff")
    return _Z * math.sqrt(2.0) * sd * math.sqrt(1.0 - r)


def clinical_cutoff_c(M_clinical: float, SD_clinical: float,
                      M_functional: float, SD_functional: float) -> float:
    """Jacobson & Truax (1991) cut-off c (METHODS §11).

    ``c = (SD_f·M_c + SD_c·M_f) / (SD_f + SD_c)``: the point between the
    clinical and functional means weighted by the other group's SD. Because
    lower symptoms are better, the clinical mean must exceed the functional
    mean.
    """
    who = "clinical_cutoff_c"
    for nm, v in (("M_clinical", M_clinical), ("M_functional", M_functional)):
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(float(v)):
            raise ValueError(f"{who}: {nm} must be a finite number, got {v!r}.")
    sdc = _positive_number(SD_clinical, "SD_clinical", who)
    sdf = _positive_number(SD_functional, "SD_functional", who)
    mc, mf = float(M_clinical), float(M_functional)
    if not mc > mf:
        raise ValueError(
            f"{who}: M_clinical ({mc}) must be larger than M_functional ({mf}) because "
            f"higher symptom scores mean more severe; flip the scale or check the norms."
        )
    return (sdf * mc + sdc * mf) / (sdf + sdc)


def baseline_sd(df: pd.DataFrame, column: str = "symptoms") -> pd.DataFrame:
    """Per-study baseline mean and SD of ``column`` (default inputs for §10/§11).

    Baseline = each patient's first observed value (the same "pre" score
    that `reliable_change` uses). Per study: ``n_patients`` (patients with an
    observed value), ``baseline_mean`` and ``baseline_sd`` (ddof = 1; missing
    with fewer than 2 patients). Used as the suggested SD of the reliable
    change value 1.96·√2·SD·√(1 − r); the SD is a user input, this is only
    the default.
    """
    who = "baseline_sd"
    data = _check_frame(df, [column], who)
    obs = data[data[column].notna()]
    first = obs.groupby(_KEY, sort=True)[column].first().reset_index()
    out = first.groupby("study", sort=True)[column].agg(
        n_patients="count", baseline_mean="mean", baseline_sd=lambda s: s.std(ddof=1))
    studies = pd.Index(sorted(data["study"].unique()), name="study")
    out = out.reindex(studies)
    out["n_patients"] = out["n_patients"].fillna(0).astype(np.int64)
    return out.reset_index()[["study", "n_patients", "baseline_mean", "baseline_sd"]]
