"""Candidate moderator columns of canonical data (METHODS §1, §5, §6): extra columns with one value per
patient (patient-level covariates of the stage-1 model) or per study (study-level moderators of a
meta-regression).
"""

from __future__ import annotations

import pandas as pd

__all__ = ["patient_level_columns", "study_level_columns"]


def patient_level_columns(df: pd.DataFrame) -> list[str]:
    """Extra columns with one value per patient that vary within some study: candidate patient-level
    covariates (METHODS §1, §5). Columns constant within every study are study-level (meta-regression)."""
    canon = {"study", "patient", "session", "alliance", "symptoms", "therapist_alliance", "therapist"}
    out = []
    for c in df.columns:
        if c in canon or not df[c].notna().any():
            continue
        per_patient = df.groupby(["study", "patient"], observed=True)[c].nunique(dropna=True)
        per_study = df.groupby("study", observed=True)[c].nunique(dropna=True)
        if (per_patient <= 1).all() and (per_study > 1).any():
            out.append(str(c))
    return out


def study_level_columns(df: pd.DataFrame) -> list[str]:
    """Extra columns constant within every study (METHODS §1: study-level moderators)."""
    canon = {"study", "patient", "session", "alliance", "symptoms", "therapist_alliance", "therapist"}
    out = []
    for c in df.columns:
        if c in canon:
            continue
        nun = df.groupby("study", observed=True)[c].nunique(dropna=True)
        if (nun <= 1).all() and df[c].notna().any() and df["study"].nunique() > 1:
            out.append(c)
    return out
