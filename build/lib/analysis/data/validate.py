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
    _MAX_LISTED,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
    DataError,
    _column_labels,
    _fmt_list,
    _guard,
    _plural,
    _py,
)
from analysis.data.convert import _as_id, _parse_numbers, _parse_sessions

#: thresholds of the checks (METHODS §1 intake checks)
MIN_SESSIONS_PER_PATIENT = 2
MIN_PATIENTS_PER_STUDY = 10
MAX_MISSING_SHARE = 0.30
OUTLIER_MADS = 5.0
_MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class Issue:
    """One finding of ``validate``.

    ``level`` is 'error' (analysis cannot run), 'warning' (changes how results read) or 'note'
    (routine information, e.g. an optional column that is absent); ``code`` a
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
    """Errors, warnings and notes found by ``validate``; ``ok`` is True when there are no errors."""

    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    notes: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def issues(self) -> list[Issue]:
        return list(self.errors) + list(self.warnings) + list(self.notes)

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


@dataclass(eq=False)
class _Work:
    """What every check reads: the frame with normalised columns (ids as text, sessions and
    scores as floats), the study of each row, and the parsing problems found while preparing."""

    work: pd.DataFrame
    source: pd.DataFrame
    dup_names: list
    study_key: pd.Series
    multi: bool
    numeric: dict
    raw: dict
    session_bad: np.ndarray | None
    names: dict = field(default_factory=dict)

    def col(self, c: str) -> str:
        """A column as the user knows it: their own name (and the role when it differs), e.g. "'OQ45'
        (symptoms)"; the canonical name when the data did not come through a column mapping."""
        own = self.names.get(c)
        role = c.replace("_", " ")
        return f"'{own}' ({role})" if own and own != c else f"'{c}'"


def _prepare(df: pd.DataFrame) -> _Work:
    names = _column_labels(df)
    counts = Counter(names)
    dup_names = [n for n, k in counts.items() if k > 1]
    keep = ~pd.Index(names).duplicated()
    work = df.loc[:, keep].copy(deep=False)  # copy-on-write: the caller's frame is never changed
    work.columns = [n for n, k in zip(names, keep) if k]
    if isinstance(work.index, pd.MultiIndex):
        work.index = pd.Index([str(i) for i in work.index])
    if work.index.has_duplicates:
        work = work.reset_index(drop=True)
    raw = {c: work[c] for c in ("session", *NUMERIC_COLUMNS) if c in work}
    for c in ("study", "patient", "therapist"):
        if c in work:
            work[c] = _as_id(work[c])
    session_bad = None
    if "session" in work and len(work):
        vals, bad, missing = _parse_sessions(work["session"], allow_labels=False)
        session_bad = (bad | missing).to_numpy()
        work["session"] = vals
    numeric: dict[str, tuple[pd.Series, np.ndarray]] = {}
    for c in NUMERIC_COLUMNS:
        if c in work and len(work):
            vals, bad = _parse_numbers(work[c], allow_comma=False)
            numeric[c] = (vals, bad.to_numpy())
            work[c] = vals
    multi = "study" in work and work["study"].nunique(dropna=True) > 1
    study_key = work["study"] if "study" in work else pd.Series("(all data)", index=work.index, dtype="str")
    names = df.attrs.get("mapping") if isinstance(df.attrs, dict) else None
    names = {str(k): str(v) for k, v in (names or {}).items()}
    return _Work(work, df, dup_names, study_key.fillna("(no study)"), multi, numeric, raw, session_bad, names)


def _masked(w: _Work, level: str, code: str, message: str, mask: np.ndarray, column: str | None = None) -> Issue:
    """An Issue about the rows in ``mask``: their index labels, patients and studies."""
    return Issue(level, code, message, rows=_rows_of(w.work, mask), patients=_patients_of(w.work, mask),
                 studies=_studies_of(w.work, mask), column=column)


# ---- errors: the analysis cannot run


def _check_duplicate_columns(w: _Work):
    if w.dup_names:
        yield Issue("error", "duplicate_columns",
                    f"These column names appear more than once: {_fmt_list(w.dup_names)}. Only the first of each "
                    "was checked; rename the others.")


def _check_empty(w: _Work):
    if len(w.work) == 0:
        yield Issue("error", "empty_data", "The data have no rows.")


def _check_missing_columns(w: _Work):
    missing = [c for c in REQUIRED_COLUMNS if c not in w.work]
    if not missing:
        return
    if len(w.work) == 0:
        yield Issue("error", "missing_columns", f"Required columns missing: {_fmt_list(missing)}.")
        return
    yield Issue("error", "missing_columns",
                f"Required {'column' if len(missing) == 1 else 'columns'} missing: {_fmt_list(missing)}. "
                "Choose the matching column for each in the column mapping.", column=", ".join(missing))


def _check_missing_ids(w: _Work):
    for c in ("study", "patient"):
        if c not in w.work:
            continue
        na = w.work[c].isna().to_numpy()
        if na.any():
            rows = _rows_of(w.work, na)
            yield Issue("error", "missing_ids",
                        f"{_plural(len(rows), 'row')} {'has' if len(rows) == 1 else 'have'} no {c} id: rows "
                        f"{_fmt_list(rows)}.", rows=rows, patients=_patients_of(w.work, na), column=c)


def _check_sessions(w: _Work):
    if w.session_bad is None or not w.session_bad.any():
        return
    bad, raw = w.session_bad, w.raw["session"]
    n = int(bad.sum())
    examples = list(dict.fromkeys(str(v) for v in raw[bad].tolist()))[:5]
    yield _masked(w, "error", "invalid_session",
                  f"Session must be a whole number ≥ 0; {_plural(n, 'row')} {'does' if n == 1 else 'do'} not comply "
                  f"(values {', '.join(repr(e) for e in examples)}) at "
                  f"{_where(w.work.assign(session=raw.astype(object)), bad)}.", bad, "session")


def _check_numbers(w: _Work):
    for c, (_vals, b) in w.numeric.items():
        if not b.any():
            continue
        n = int(b.sum())
        examples = list(dict.fromkeys(str(v) for v in w.raw[c][b].tolist()))[:5]
        hint = " (decimal commas: convert the data with to_canonical)" if any("," in e for e in examples) else ""
        yield _masked(w, "error", "non_numeric",
                      f"Column {w.col(c)} must hold numbers, but {_plural(n, 'value')} {'is' if n == 1 else 'are'} not: "
                      f"{', '.join(repr(e) for e in examples)}{hint} at {_where(w.work, b)}.", b, c)


def _check_duplicate_rows(w: _Work):
    """Repeated study × patient × session. Exact copies of a row (every column equal; the Data page drops
    them with one click, :func:`drop_exact_duplicates`) and conflicting rows (same session, different
    values) are two errors; each repeated session is listed once."""
    if "patient" not in w.work or "session" not in w.work:
        return
    s_code, p_code = _codes(w.study_key), _codes(w.work["patient"])
    key = pd.DataFrame({"s": s_code, "p": p_code, "t": w.work["session"].to_numpy()})
    valid = (p_code >= 0) & (~w.session_bad if w.session_bad is not None else True)
    dupmask = key.duplicated(keep=False).to_numpy() & valid
    if not dupmask.any():
        return
    exact = exact_duplicates(w.source) & dupmask  # later copies of an identical earlier row
    # a session conflicts when its rows still repeat once the exact copies are set aside
    rest = key[dupmask & ~exact]
    conflict = dupmask & ~exact & rest.duplicated(keep=False).reindex(key.index, fill_value=False).to_numpy()
    if exact.any():
        n = int(exact.sum())
        yield _masked(w, "error", "exact_duplicate_rows",
                      f"{_plural(n, 'row')} {'is an exact copy' if n == 1 else 'are exact copies'} of another row "
                      f"(every column equal): {_where(w.work, exact)}. Drop the copies (one click on the Data "
                      "page) or remove them from the file.", exact)
    if conflict.any():
        once = conflict & ~key.duplicated(keep="first").to_numpy()  # each repeated session named once
        n = int(once.sum())
        yield _masked(w, "error", "duplicate_rows",
                      f"{_plural(n, 'session')} of a patient {'occurs' if n == 1 else 'occur'} in more than one "
                      "row with different values (each session of a patient must be one row; decide which row is "
                      f"right): {_where(w.work, once)}.", conflict)


def exact_duplicates(df: pd.DataFrame) -> np.ndarray:
    """True for each row that repeats an earlier row exactly (every column equal, missing equal to missing)."""
    if len(df) == 0 or df.shape[1] == 0:
        return np.zeros(len(df), dtype=bool)
    return df.set_axis(range(df.shape[1]), axis=1).duplicated(keep="first").to_numpy()


def drop_exact_duplicates(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``df`` without the rows that repeat an earlier row exactly, and how many were dropped (attrs kept)."""
    mask = exact_duplicates(df)
    if not mask.any():
        return df, 0
    out = df.loc[~mask].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out, int(mask.sum())


def _codes(s: pd.Series) -> np.ndarray:
    """Integer codes of a column's values (−1 = missing): equal values, equal codes."""
    return pd.factorize(s)[0]


# ---- warnings: the analysis runs, but look at these


def _check_dropped_rows(w: _Work):
    """Rows or patients left out on the way in (``attrs["dropped"]``, set by wide_to_long/to_canonical/combine)."""
    notes = w.source.attrs.get("dropped") if isinstance(w.source.attrs, dict) else None
    for note in notes or []:
        yield Issue("warning", "dropped_rows", str(note))


def _check_negative(w: _Work):
    for c, (vals, _b) in w.numeric.items():
        neg = np.nan_to_num(vals.to_numpy(dtype="float64"), nan=0.0) < 0
        if neg.any():
            yield _masked(w, "warning", "negative_values",
                          f"Column {w.col(c)} has {_plural(int(neg.sum()), 'negative value')} (questionnaire scores are "
                          f"usually ≥ 0; missing-value codes such as -99 should be blank): {_where(w.work, neg)}.",
                          neg, c)


def _outliers(arr: np.ndarray, study_key: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Values more than OUTLIER_MADS scaled MADs from their study's median (studies with ≥ 5 values)."""
    out_mask = np.zeros(len(arr), dtype=bool)
    details = []
    codes, uniques = pd.factorize(study_key)  # (not .to_numpy(): no Python string per row)
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
    return out_mask, details


def _check_outliers(w: _Work):
    for c, (vals, _b) in w.numeric.items():
        mask, details = _outliers(vals.to_numpy(dtype="float64"), w.study_key)
        if mask.any():
            yield _masked(w, "warning", "outlying_values",
                          f"Column {w.col(c)} has {_plural(int(mask.sum()), 'value')} more than {OUTLIER_MADS:g} MADs "
                          f"from the study median ({'; '.join(details[:5])}) — check for typing errors or a different "
                          f"scoring: {_where(w.work, mask)}.", mask, c)


def _check_few_sessions(w: _Work):
    if "patient" not in w.work or "session" not in w.work:
        return
    # study and patient as integer codes (no Python string per row on a large file); labels for the few
    (s_code, s_uniq), (p_code, p_uniq) = pd.factorize(w.study_key), pd.factorize(w.work["patient"])
    valid = p_code >= 0
    key = pd.DataFrame({"s": s_code[valid], "p": p_code[valid], "t": w.work["session"].to_numpy()[valid]})
    n_sess = key.groupby(["s", "p"], sort=False)["t"].nunique()
    few_codes = n_sess[n_sess < MIN_SESSIONS_PER_PATIENT]
    if not len(few_codes):
        return
    fs, fp = few_codes.index.get_level_values(0), few_codes.index.get_level_values(1)
    few = pd.Series(few_codes.to_numpy(), index=pd.MultiIndex.from_arrays(
        [np.asarray(s_uniq, dtype=object)[fs], np.asarray(p_uniq, dtype=object)[fp]]))
    mask = valid & pd.MultiIndex.from_arrays([s_code, p_code]).isin(list(zip(fs, fp)))
    labels = _label_patients(list(few.index), w.multi)
    yield Issue("warning", "few_sessions",
                f"{_plural(len(few), 'patient')} {'has' if len(few) == 1 else 'have'} fewer than "
                f"{MIN_SESSIONS_PER_PATIENT} sessions and cannot contribute to lagged (session-to-session) "
                f"effects: {_fmt_list(labels)}.",
                rows=_rows_of(w.work, mask), patients=[_py(p) for _s, p in few.index],
                studies=list(dict.fromkeys(_py(s) for s, _p in few.index)), column="patient")


def _check_few_patients(w: _Work):
    if "patient" not in w.work:
        return
    n_pat = w.work.assign(_s=w.study_key).groupby("_s", sort=False)["patient"].nunique()
    small = n_pat[n_pat < MIN_PATIENTS_PER_STUDY]
    if len(small):
        desc = [f"{s} ({_plural(int(n), 'patient')})" for s, n in small.items()]
        mask = w.study_key.isin(list(small.index)).to_numpy()
        yield Issue("warning", "few_patients",
                    f"{'This study has' if len(small) == 1 else 'These studies have'} fewer than "
                    f"{MIN_PATIENTS_PER_STUDY} patients, so their estimates will be imprecise: {_fmt_list(desc)}.",
                    rows=_rows_of(w.work, mask), patients=_patients_of(w.work, mask),
                    studies=[_py(s) for s in small.index], column="patient")


def _check_missingness(w: _Work):
    for c in ("alliance", "symptoms"):
        if c not in w.work:
            continue
        miss = w.work[c].isna()
        share = miss.groupby(w.study_key, sort=False).mean()
        heavy = share[share > MAX_MISSING_SHARE]
        if len(heavy):
            mask = (w.study_key.isin(list(heavy.index)) & miss).to_numpy()
            desc = [f"{s}: {100 * v:.0f}% of rows" for s, v in heavy.items()]
            yield Issue("warning", "heavy_missingness",
                        f"Column {w.col(c)} is missing in more than {100 * MAX_MISSING_SHARE:.0f}% of the rows "
                        f"({_fmt_list(desc)}); results rest on the observed sessions only (nothing is imputed).",
                        rows=_rows_of(w.work, mask), patients=_patients_of(w.work, mask),
                        studies=[_py(s) for s in heavy.index], column=c)


def _check_therapist_rating(w: _Work):
    if "therapist_alliance" not in w.work:  # an optional column that is absent: a note, not a warning
        yield Issue("note", "no_therapist_rating",
                    "No therapist-rated alliance column was given, so the Convergence page (patient–therapist "
                    "agreement) is not available for these data; everything else is.", column="therapist_alliance")
        return
    present = w.work["therapist_alliance"].notna().groupby(w.study_key, sort=False).any()
    absent = present[~present]
    if len(absent) == len(present):
        yield Issue("warning", "no_therapist_rating",
                    "The therapist-rated alliance column (therapist_alliance) is empty; analyses of "
                    "patient–therapist convergence (METHODS §8) are not available.",
                    rows=_rows_of(w.work, np.ones(len(w.work), dtype=bool)), studies=[_py(s) for s in absent.index],
                    column="therapist_alliance")
    elif len(absent):
        mask = w.study_key.isin(list(absent.index)).to_numpy()
        yield Issue("warning", "no_therapist_rating",
                    f"No therapist-rated alliance in {_fmt_list(absent.index)}; these studies are left out of "
                    "convergence analyses (METHODS §8).",
                    rows=_rows_of(w.work, mask), studies=[_py(s) for s in absent.index], column="therapist_alliance")


#: the checks of an empty frame (nothing else can be inspected)
EMPTY_CHECKS = (_check_duplicate_columns, _check_empty, _check_missing_columns)
#: every check of ``validate``, in report order (errors first, then warnings); each takes the prepared
#: frame and yields Issues, so a new check is one small function added here
CHECKS = (
    _check_duplicate_columns,
    _check_missing_columns,
    _check_missing_ids,
    _check_sessions,
    _check_numbers,
    _check_duplicate_rows,
    _check_dropped_rows,
    _check_negative,
    _check_outliers,
    _check_few_sessions,
    _check_few_patients,
    _check_missingness,
    _check_therapist_rating,
)


@_guard("Could not check the data")
def validate(df: pd.DataFrame) -> ValidationReport:
    """Check a canonical frame (METHODS §1) and list what is wrong or doubtful.

    Errors (analysis cannot run): ``empty_data``, ``duplicate_columns``,
    ``missing_columns`` (study, patient, session, alliance, symptoms),
    ``missing_ids`` (rows without study or patient), ``invalid_session``
    (missing, non-integer or negative), ``non_numeric`` (text or infinite
    values in alliance/symptoms/therapist_alliance), ``duplicate_rows``
    (repeated study × patient × session).

    ``exact_duplicate_rows`` (rows identical to an earlier row in every column:
    :func:`drop_exact_duplicates` removes them).

    Notes (routine information): ``no_therapist_rating`` when there is no
    therapist-rated alliance column at all.

    Warnings: ``dropped_rows`` (rows or patients without any value that were
    left out on the way in, from ``attrs["dropped"]``); ``negative_values``;
    ``outlying_values`` (|x − study median| > 5 MAD, the MAD scaled by 1.4826
    to estimate the SD; studies with ≥ 5 values and MAD > 0); ``few_sessions``
    (patients with < 2 sessions); ``few_patients`` (studies with < 10
    patients); ``heavy_missingness`` (> 30 % of a study's rows without
    alliance or symptoms); ``no_therapist_rating`` (therapist_alliance absent
    or all missing, overall or in some studies).

    The checks are the small functions in :data:`CHECKS`, run in order.  Each
    Issue names rows (index labels of ``df``) and patients.  Raises DataError
    only if ``df`` is not a DataFrame or cannot be inspected.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError("validate needs a table (DataFrame).")
    w = _prepare(df)
    checks = EMPTY_CHECKS if len(w.work) == 0 else CHECKS
    issues = [issue for check in checks for issue in check(w)]
    return ValidationReport([i for i in issues if i.level == "error"], [i for i in issues if i.level == "warning"],
                            [i for i in issues if i.level == "note"])
