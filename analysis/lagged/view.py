"""One patient's model rows and observed series, for the "what went into the model" figure (METHODS §4–§5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.lagged.options import LagOptions, _check_direction
from analysis.lagged.rows import StudyData, _rows_frame, model_rows


@dataclass(frozen=True, eq=False)
class PatientView:
    """One patient's model rows and complete observed series (for the "what went into the model" figure).

    ``rows``: the patient's rows of :func:`prepare`; ``series``: every
    session of the patient in the window with the predictor ``x`` and outcome
    ``y`` on the model scale (standardized when the options say so; NaN where
    not observed). ``direction``, ``options``, ``study``, ``patient``.
    """

    rows: pd.DataFrame
    series: pd.DataFrame
    direction: str
    options: LagOptions
    study: str
    patient: str


def patient_view(df: pd.DataFrame, options: LagOptions | None, direction: str, patient, study=None) -> PatientView:
    """The model rows and observed series of one patient (METHODS §2–§4); ValueError when the
    patient is not in the data or the id occurs in several studies and ``study`` is not given.

    >>> from analysis.simulate import simulate_study
    >>> d = simulate_study(10, seed=1).data
    >>> v = patient_view(d, None, "alliance_to_symptoms", d["patient"].iloc[0])
    >>> v.direction, v.series.columns.tolist()[:3]
    ('alliance_to_symptoms', ['session', 'x', 'y'])
    """
    options = options or LagOptions()
    xvar, yvar = _check_direction(direction)
    data = StudyData(df, options)
    sel = data.pat_label == str(patient)
    if study is not None:
        sel &= np.asarray(data.study_labels, dtype=object)[data.pat_study] == str(study)
    pats = np.flatnonzero(sel)
    if len(pats) == 0:
        raise ValueError(f"Patient {patient!r} is not in the data (in the analysis window).")
    if len(pats) > 1:
        raise ValueError(f"Patient id {patient!r} occurs in several studies; name the study.")
    p = int(pats[0])
    st = data.study_labels[data.pat_study[p]]
    lo, hi = data.pstart[p], data.pstart[p] + data.psize[p]
    series = pd.DataFrame({"session": data.sess[lo:hi], "x": data.z[xvar][lo:hi], "y": data.z[yvar][lo:hi]})
    rows = _rows_frame(data, model_rows(data, options, direction), options, direction)
    mine = rows[(rows["patient"] == str(patient)) & (rows["study"] == st)].reset_index(drop=True)
    mine.attrs = dict(rows.attrs)
    return PatientView(rows=mine, series=series, direction=direction, options=options, study=st,
                       patient=str(patient))
