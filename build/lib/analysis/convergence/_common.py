"""Input checks shared by the convergence modules (METHODS §8)."""

from __future__ import annotations

import pandas as pd

from analysis.data import require_canonical


def _check(df: pd.DataFrame, cols) -> pd.DataFrame:
    """Canonical dyadic data (analysis.data.require_canonical): study, patient, session and ``cols``, the
    ratings and symptoms numeric, sorted by study, patient and session."""
    return require_canonical(df, cols, optional=("therapist_alliance", "symptoms"),
                             why="Alliance convergence needs patient-rated 'alliance' and therapist-rated "
                                 "'therapist_alliance' per session.")
