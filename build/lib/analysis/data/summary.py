"""Descriptive overview of a canonical data set (METHODS §1)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.data._common import (
    DEFAULT_STUDY,
    NUMERIC_COLUMNS,
    DataError,
    _column_labels,
    _guard,
    _natural_rank,
)
from analysis.data.convert import _as_id, _parse_numbers, _parse_sessions


@dataclass(frozen=True, eq=False)
class DataSummary:
    """Descriptive overview of a canonical data set (``summarize``).

    ``per_study``: one row per study with n_patients, n_rows, sessions per
    patient (median/min/max) and % missing alliance / symptoms /
    therapist_alliance (100 when the column is absent).  ``per_session``:
    one row per study × session with the number of rows and of observed
    alliance, symptoms and therapist_alliance values.  ``totals``: the same
    counts over all studies.
    """

    per_study: pd.DataFrame
    per_session: pd.DataFrame
    totals: dict

    def to_frame(self) -> pd.DataFrame:
        """``per_study`` with a final 'All studies' row."""
        total = {
            "study": "All studies",
            **{k: v for k, v in self.totals.items() if k in self.per_study.columns},
        }
        return pd.concat([self.per_study, pd.DataFrame([total])], ignore_index=True)


def _with_patient(work: pd.DataFrame) -> pd.DataFrame:
    """The rows with a patient id (``work`` itself when every row has one: no copy of a large frame)."""
    return work if work["patient"].notna().all() else work.dropna(subset=["patient"])


@_guard("Could not summarise the data")
def summarize(df: pd.DataFrame) -> DataSummary:
    """Counts and missingness per study and per study × session (METHODS §1).

    Needs patient and session columns (study defaults to one study 'Study 1'
    when absent).  Raises DataError otherwise.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError("summarize needs a table (DataFrame).")
    names = _column_labels(df)
    keep = ~pd.Index(names).duplicated()
    work = df.loc[:, keep].copy(deep=False)  # copy-on-write: the caller's frame is never changed
    work.columns = [n for n, k in zip(names, keep) if k]
    for req in ("patient", "session"):
        if req not in work:
            raise DataError(
                f"The data have no {req!r} column; convert them with to_canonical first."
            )
    work = work.reset_index(drop=True)
    work["study"] = (
        _as_id(work["study"]).fillna("(no study)") if "study" in work else DEFAULT_STUDY
    )
    work["patient"] = _as_id(work["patient"])
    work["session"], _bad, _miss = _parse_sessions(work["session"], allow_labels=False)
    obs = {}
    for c in NUMERIC_COLUMNS:
        if c in work:
            obs[c] = _parse_numbers(work[c], allow_comma=True)[0].notna()
        else:
            obs[c] = pd.Series(False, index=work.index)

    rows = []
    for s, idx in work.groupby("study", sort=False).groups.items():
        sub = work.loc[idx]
        per_pat = _with_patient(sub).groupby("patient")["session"].nunique()
        rows.append({"study": s, "n_patients": int(sub["patient"].nunique()), **_counts(sub, per_pat, obs)})
    per_study = pd.DataFrame(
        rows,
        columns=[
            "study",
            "n_patients",
            "n_rows",
            "sessions_median",
            "sessions_min",
            "sessions_max",
            "pct_missing_alliance",
            "pct_missing_symptoms",
            "pct_missing_therapist_alliance",
        ],
    )
    if len(per_study):
        order = _natural_rank(per_study["study"]).sort_values(kind="mergesort").index
        per_study = per_study.loc[order].reset_index(drop=True)
        per_study["study"] = per_study["study"].astype("str")

    sess = pd.DataFrame(
        {
            "study": work["study"],
            "session": work["session"],
            "n_rows": 1,
            "n_alliance": obs["alliance"].astype(int),
            "n_symptoms": obs["symptoms"].astype(int),
            "n_therapist_alliance": obs["therapist_alliance"].astype(int),
        }
    )
    if sess["session"].isna().any():  # (a selection of every row would copy the frame)
        sess = sess.dropna(subset=["session"])
    per_session = sess.groupby(["study", "session"], sort=False).sum().reset_index()
    del sess
    if len(per_session):
        per_session["session"] = per_session["session"].astype("int64")
        per_session["_r"] = _natural_rank(per_session["study"])
        per_session = (
            per_session.sort_values(["_r", "session"], kind="mergesort")
            .drop(columns="_r")
            .reset_index(drop=True)
        )
        per_session["study"] = per_session["study"].astype("str")
    else:
        per_session = pd.DataFrame(
            columns=[
                "study",
                "session",
                "n_rows",
                "n_alliance",
                "n_symptoms",
                "n_therapist_alliance",
            ]
        )

    per_pat_all = (
        _with_patient(work)
        .groupby(["study", "patient"])["session"]
        .nunique()
    )
    totals = {"n_studies": int(work["study"].nunique()), "n_patients": len(per_pat_all),
              **_counts(work, per_pat_all, obs)}
    return DataSummary(per_study=per_study, per_session=per_session, totals=totals)


def _counts(rows: pd.DataFrame, per_patient: pd.Series, observed: dict) -> dict:
    """The rows, sessions per patient (median, min, max) and the % missing of each numeric column, for a
    study's rows or for all rows (``observed``: column → observed mask over the whole frame)."""
    n = len(per_patient)
    out = {"n_rows": len(rows),
           "sessions_median": float(per_patient.median()) if n else float("nan"),
           "sessions_min": int(per_patient.min()) if n else 0,
           "sessions_max": int(per_patient.max()) if n else 0}
    for c in NUMERIC_COLUMNS:
        mask = observed[c].loc[rows.index]
        out[f"pct_missing_{c}"] = float(100.0 * (1.0 - mask.mean())) if len(mask) else float("nan")
    return out

