"""Checks of a canonical frame: errors that block analysis, warnings that inform (METHODS §1)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.data._common import (
    _MAD_TO_SD,
    _MAX_LISTED,
    MAX_MISSING_SHARE,
    MIN_PATIENTS_PER_STUDY,
    MIN_SESSIONS_PER_PATIENT,
    NUMERIC_COLUMNS,
    OUTLIER_MADS,
    REQUIRED_COLUMNS,
    DataError,
    _column_labels,
    _fmt_list,
    _guard,
    _plural,
    _py,
)
from analysis.data.convert import _as_id, _parse_numbers, _parse_sessions


@dataclass(frozen=True)
class Issue:
    """One finding of ``validate``.

    ``level`` is 'error' (analysis cannot run) or 'warning'; ``code`` a
    stable identifier; ``message`` the text for the researcher (long lists
    truncated); ``rows`` the index labels of the rows concerned and
    ``patients`` the patient ids concerned (full lists); ``studies`` and
    ``column`` where relevant.
    """

    level: str
    code: str
    message: str
    rows: list = field(default_factory=list)
    patients: list = field(default_factory=list)
    studies: list = field(default_factory=list)
    column: str | None = None


@dataclass(frozen=True)
class ValidationReport:
    """Errors and warnings found by ``validate``; ``ok`` is True when there are no errors."""

    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def issues(self) -> list[Issue]:
        return list(self.errors) + list(self.warnings)

    def codes(self) -> list[str]:
        """Codes of all issues, errors first."""
        return [i.code for i in self.issues]

    def to_frame(self) -> pd.DataFrame:
        """One row per issue: level, code, column, message, n_rows, n_patients, studies."""
        rows = [
            {
                "level": i.level,
                "code": i.code,
                "column": i.column,
                "message": i.message,
                "n_rows": len(i.rows),
                "n_patients": len(i.patients),
                "studies": ", ".join(map(str, i.studies)),
            }
            for i in self.issues
        ]
        cols = ["level", "code", "column", "message", "n_rows", "n_patients", "studies"]
        return pd.DataFrame(rows, columns=cols)


def _where(work: pd.DataFrame, mask: np.ndarray, limit: int = _MAX_LISTED) -> str:
    """'patient P3 session 4, …' for masked rows (study added when several studies)."""
    pos = np.flatnonzero(mask)
    multi = "study" in work and work["study"].nunique(dropna=True) > 1
    parts = []
    for p in pos[:limit]:
        bits = []
        if multi:
            bits.append(f"{work['study'].iloc[p]}:")
        if "patient" in work:
            bits.append(f"patient {work['patient'].iloc[p]}")
        if "session" in work:
            bits.append(f"session {_fmt_num(work['session'].iloc[p])}")
        if not bits:
            bits.append(f"row {_py(work.index[p])}")
        parts.append(" ".join(bits))
    text = ", ".join(parts)
    if len(pos) > limit:
        text += f", … ({len(pos) - limit} more)"
    return text


def _fmt_num(v: Any) -> str:
    try:
        f = float(v)
        if math.isfinite(f) and f == round(f):
            return str(int(f))
        return f"{f:g}"
    except (TypeError, ValueError):
        return str(v)


def _patients_of(work: pd.DataFrame, mask: np.ndarray) -> list:
    if "patient" not in work:
        return []
    vals = work.loc[mask, "patient"]
    return [_py(v) for v in pd.unique(vals.dropna())]


def _studies_of(work: pd.DataFrame, mask: np.ndarray) -> list:
    if "study" not in work:
        return []
    return [_py(v) for v in pd.unique(work.loc[mask, "study"].dropna())]


def _rows_of(work: pd.DataFrame, mask: np.ndarray) -> list:
    return [_py(v) for v in work.index[mask]]


def _label_patients(items: Sequence[tuple[Any, Any]], multi: bool) -> list[str]:
    return [f"{p} ({s})" if multi else str(p) for s, p in items]


@_guard("Could not check the data")
def validate(df: pd.DataFrame) -> ValidationReport:
    """Check a canonical frame (METHODS §1) and list what is wrong or doubtful.

    Errors (analysis cannot run): ``empty_data``, ``duplicate_columns``,
    ``missing_columns`` (study, patient, session, alliance, symptoms),
    ``missing_ids`` (rows without study or patient), ``invalid_session``
    (missing, non-integer or negative), ``non_numeric`` (text or infinite
    values in alliance/symptoms/therapist_alliance), ``duplicate_rows``
    (repeated study × patient × session).

    Warnings: ``negative_values``; ``outlying_values`` (|x − study median| >
    5 MAD, the MAD scaled by 1.4826 to estimate the SD; studies with ≥ 5
    values and MAD > 0); ``few_sessions`` (patients with < 2 sessions);
    ``few_patients`` (studies with < 10 patients); ``heavy_missingness``
    (> 30 % of a study's rows without alliance or symptoms);
    ``no_therapist_rating`` (therapist_alliance absent or all missing,
    overall or in some studies).

    Each Issue names rows (index labels of ``df``) and patients.  Raises
    DataError only if ``df`` is not a DataFrame or cannot be inspected.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError("validate needs a table (DataFrame).")
    errors: list[Issue] = []
    warns: list[Issue] = []

    names = _column_labels(df)
    counts = Counter(names)
    dup_names = [n for n, k in counts.items() if k > 1]
    keep = ~pd.Index(names).duplicated()
    work = df.loc[:, keep].copy()
    work.columns = [n for n, k in zip(names, keep) if k]
    if isinstance(work.index, pd.MultiIndex):
        work.index = pd.Index([str(i) for i in work.index])
    if work.index.has_duplicates:
        work = work.reset_index(drop=True)
    if dup_names:
        errors.append(
            Issue(
                "error",
                "duplicate_columns",
                f"These column names appear more than once: {_fmt_list(dup_names)}. Only the first of each was checked; rename the others.",
            )
        )

    if len(work) == 0:
        errors.append(Issue("error", "empty_data", "The data have no rows."))
        missing_cols = [c for c in REQUIRED_COLUMNS if c not in work]
        if missing_cols:
            errors.append(
                Issue(
                    "error",
                    "missing_columns",
                    f"Required columns missing: {_fmt_list(missing_cols)}.",
                )
            )
        return ValidationReport(errors, warns)

    missing_cols = [c for c in REQUIRED_COLUMNS if c not in work]
    if missing_cols:
        errors.append(
            Issue(
                "error",
                "missing_columns",
                f"Required {'column' if len(missing_cols) == 1 else 'columns'} missing: {_fmt_list(missing_cols)}. "
                "Choose the matching column for each in the column mapping.",
                column=", ".join(missing_cols),
            )
        )

    # normalised views for the checks (original frame untouched)
    for c in ("study", "patient", "therapist"):
        if c in work:
            work[c] = _as_id(work[c])
    for c in ("study", "patient"):
        if c in work:
            na = work[c].isna().to_numpy()
            if na.any():
                rows = _rows_of(work, na)
                errors.append(
                    Issue(
                        "error",
                        "missing_ids",
                        f"{_plural(len(rows), 'row')} {'has' if len(rows) == 1 else 'have'} no {c} id: rows {_fmt_list(rows)}.",
                        rows=rows,
                        patients=_patients_of(work, na),
                        column=c,
                    )
                )
    session_ok = None
    if "session" in work:
        raw = work["session"]
        vals, bad, missing = _parse_sessions(raw, allow_labels=False)
        badmask = (bad | missing).to_numpy()
        if badmask.any():
            rows = _rows_of(work, badmask)
            examples = list(dict.fromkeys(str(v) for v in raw[badmask].tolist()))[:5]
            errors.append(
                Issue(
                    "error",
                    "invalid_session",
                    f"Session must be a whole number ≥ 0; {_plural(len(rows), 'row')} "
                    f"{'does' if len(rows) == 1 else 'do'} not comply (values {', '.join(repr(e) for e in examples)}) "
                    f"at {_where(work.assign(session=raw.astype(object)), badmask)}.",
                    rows=rows,
                    patients=_patients_of(work, badmask),
                    studies=_studies_of(work, badmask),
                    column="session",
                )
            )
        work["session"] = vals
        session_ok = ~badmask

    numeric: dict[str, pd.Series] = {}
    for c in NUMERIC_COLUMNS:
        if c not in work:
            continue
        raw = work[c]
        vals, bad = _parse_numbers(raw, allow_comma=False)
        b = bad.to_numpy()
        if b.any():
            rows = _rows_of(work, b)
            examples = list(dict.fromkeys(str(v) for v in raw[b].tolist()))[:5]
            hint = (
                " (decimal commas: convert the data with to_canonical)"
                if any("," in e for e in examples)
                else ""
            )
            errors.append(
                Issue(
                    "error",
                    "non_numeric",
                    f"Column {c!r} must hold numbers, but {_plural(len(rows), 'value')} {'is' if len(rows) == 1 else 'are'} not: "
                    f"{', '.join(repr(e) for e in examples)}{hint} at {_where(work, b)}.",
                    rows=rows,
                    patients=_patients_of(work, b),
                    studies=_studies_of(work, b),
                    column=c,
                )
            )
        numeric[c] = vals
        work[c] = vals

    multi = "study" in work and work["study"].nunique(dropna=True) > 1
    study_key = (
        work["study"]
        if "study" in work
        else pd.Series("(all data)", index=work.index, dtype="str")
    )
    study_key = study_key.fillna("(no study)")

    if "patient" in work and "session" in work:
        key = pd.DataFrame(
            {
                "s": study_key.to_numpy(),
                "p": work["patient"].to_numpy(),
                "t": work["session"].to_numpy(),
            }
        )
        valid = key["p"].notna().to_numpy() & (
            session_ok if session_ok is not None else True
        )
        dupmask = key.duplicated(keep=False).to_numpy() & valid
        if dupmask.any():
            rows = _rows_of(work, dupmask)
            pats = _patients_of(work, dupmask)
            errors.append(
                Issue(
                    "error",
                    "duplicate_rows",
                    f"{_plural(len(rows), 'row')} repeat a study × patient × session that occurs more than once "
                    f"(each session of a patient must be one row): {_where(work, dupmask)}.",
                    rows=rows,
                    patients=pats,
                    studies=_studies_of(work, dupmask),
                )
            )

    # ---- warnings ----
    for c, vals in numeric.items():
        arr = vals.to_numpy(dtype="float64")
        neg = np.nan_to_num(arr, nan=0.0) < 0
        if neg.any():
            rows = _rows_of(work, neg)
            warns.append(
                Issue(
                    "warning",
                    "negative_values",
                    f"Column {c!r} has {_plural(len(rows), 'negative value')} (questionnaire scores are usually ≥ 0; "
                    f"missing-value codes such as -99 should be blank): {_where(work, neg)}.",
                    rows=rows,
                    patients=_patients_of(work, neg),
                    studies=_studies_of(work, neg),
                    column=c,
                )
            )
        out_mask = np.zeros(len(work), dtype=bool)
        details = []
        codes, uniques = pd.factorize(study_key.to_numpy())
        for k, s in enumerate(uniques):
            pos = np.flatnonzero(codes == k)
            x = arr[pos]
            obs = x[np.isfinite(x)]
            if len(obs) < 5:
                continue
            med = float(np.median(obs))
            mad = float(np.median(np.abs(obs - med))) * _MAD_TO_SD
            if not mad > 0:
                continue
            with np.errstate(invalid="ignore"):
                far = np.abs(x - med) > OUTLIER_MADS * mad
            far &= np.isfinite(x)
            if far.any():
                out_mask[pos[far]] = True
                details.append(f"{s}: median {med:.3g}, MAD {mad:.3g}")
        if out_mask.any():
            rows = _rows_of(work, out_mask)
            warns.append(
                Issue(
                    "warning",
                    "outlying_values",
                    f"Column {c!r} has {_plural(len(rows), 'value')} more than {OUTLIER_MADS:g} MADs from "
                    f"the study median ({'; '.join(details[:5])}) — check for typing errors or a different "
                    f"scoring: {_where(work, out_mask)}.",
                    rows=rows,
                    patients=_patients_of(work, out_mask),
                    studies=_studies_of(work, out_mask),
                    column=c,
                )
            )

    if "patient" in work and "session" in work:
        valid = work["patient"].notna().to_numpy()
        key = pd.DataFrame(
            {
                "s": study_key.to_numpy()[valid],
                "p": work["patient"].to_numpy()[valid],
                "t": work["session"].to_numpy()[valid],
            }
        )
        n_sess = key.groupby(["s", "p"], sort=False)["t"].nunique()
        few = n_sess[n_sess < MIN_SESSIONS_PER_PATIENT]
        if len(few):
            few_set = set(few.index)
            pairs = list(zip(study_key.to_numpy(), work["patient"].to_numpy()))
            mask = np.array(
                [valid[i] and pairs[i] in few_set for i in range(len(pairs))],
                dtype=bool,
            )
            labels = _label_patients(list(few.index), multi)
            warns.append(
                Issue(
                    "warning",
                    "few_sessions",
                    f"{_plural(len(few), 'patient')} {'has' if len(few) == 1 else 'have'} fewer than "
                    f"{MIN_SESSIONS_PER_PATIENT} sessions and cannot contribute to lagged (session-to-session) "
                    f"effects: {_fmt_list(labels)}.",
                    rows=_rows_of(work, mask),
                    patients=[_py(p) for _s, p in few.index],
                    studies=list(dict.fromkeys(_py(s) for s, _p in few.index)),
                    column="patient",
                )
            )

    if "patient" in work:
        n_pat = work.assign(_s=study_key).groupby("_s", sort=False)["patient"].nunique()
        small = n_pat[n_pat < MIN_PATIENTS_PER_STUDY]
        if len(small):
            desc = [f"{s} ({_plural(int(n), 'patient')})" for s, n in small.items()]
            mask = study_key.isin(list(small.index)).to_numpy()
            warns.append(
                Issue(
                    "warning",
                    "few_patients",
                    f"{'This study has' if len(small) == 1 else 'These studies have'} fewer than "
                    f"{MIN_PATIENTS_PER_STUDY} patients, so their estimates will be imprecise: {_fmt_list(desc)}.",
                    rows=_rows_of(work, mask),
                    patients=_patients_of(work, mask),
                    studies=[_py(s) for s in small.index],
                    column="patient",
                )
            )

    for c in ("alliance", "symptoms"):
        if c not in work:
            continue
        miss = work[c].isna()
        share = miss.groupby(study_key, sort=False).mean()
        heavy = share[share > MAX_MISSING_SHARE]
        if len(heavy):
            mask = (study_key.isin(list(heavy.index)) & miss).to_numpy()
            desc = [f"{s}: {100 * v:.0f}% of rows" for s, v in heavy.items()]
            warns.append(
                Issue(
                    "warning",
                    "heavy_missingness",
                    f"Column {c!r} is missing in more than {100 * MAX_MISSING_SHARE:.0f}% of the rows ({_fmt_list(desc)}); "
                    "results rest on the observed sessions only (nothing is imputed).",
                    rows=_rows_of(work, mask),
                    patients=_patients_of(work, mask),
                    studies=[_py(s) for s in heavy.index],
                    column=c,
                )
            )

    if "therapist_alliance" not in work:
        warns.append(
            Issue(
                "warning",
                "no_therapist_rating",
                "There is no therapist-rated alliance column (therapist_alliance); analyses of "
                "patient–therapist convergence (METHODS §8) are not available.",
                column="therapist_alliance",
            )
        )
    else:
        present = (
            work["therapist_alliance"].notna().groupby(study_key, sort=False).any()
        )
        absent = present[~present]
        if len(absent) == len(present):
            warns.append(
                Issue(
                    "warning",
                    "no_therapist_rating",
                    "The therapist-rated alliance column (therapist_alliance) is empty; analyses of "
                    "patient–therapist convergence (METHODS §8) are not available.",
                    rows=_rows_of(work, np.ones(len(work), dtype=bool)),
                    studies=[_py(s) for s in absent.index],
                    column="therapist_alliance",
                )
            )
        elif len(absent):
            mask = study_key.isin(list(absent.index)).to_numpy()
            warns.append(
                Issue(
                    "warning",
                    "no_therapist_rating",
                    f"No therapist-rated alliance in {_fmt_list(absent.index)}; these studies are left out of "
                    "convergence analyses (METHODS §8).",
                    rows=_rows_of(work, mask),
                    studies=[_py(s) for s in absent.index],
                    column="therapist_alliance",
                )
            )
    return ValidationReport(errors, warns)

