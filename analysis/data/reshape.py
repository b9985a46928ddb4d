"""Wide files (one column per session) to long form (METHODS §1)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis.data._common import (
    CANONICAL_COLUMNS,
    DataError,
    _fmt_list,
    _guard,
    _natural_key,
    _normalize_name,
    _row_phrase,
    _unique_names,
)
from analysis.data.canonical import _column_position, _resolve_column
from analysis.data.convert import _as_id
from analysis.data.mapping import _WIDE_RE, _name_score, _wide_groups


def _stub_columns(
    df: pd.DataFrame, stub: str, sep: str, taken: set[int]
) -> dict[int, int]:
    """{session: column position} for columns named stub<sep><number> (case-insensitive)."""
    stub_l = stub.strip().lower()
    found: dict[int, int] = {}
    dupes: list[str] = []

    def scan(pattern: re.Pattern) -> None:
        for j, col in enumerate(df.columns):
            if j in taken:
                continue
            m = pattern.match(str(col).strip().lower())
            if m:
                k = int(m.group(1))
                if k in found:
                    dupes.append(f"{df.columns[found[k]]!s} and {col!s}")
                else:
                    found[k] = j

    scan(re.compile("^" + re.escape(stub_l) + re.escape(sep or "") + r"([0-9]+)$"))
    if not found:
        scan(re.compile("^" + re.escape(stub_l) + r"[_.\- ]?([0-9]+)$"))
    if dupes:
        raise DataError(
            f"More than one column gives the same session for {stub!r}: {_fmt_list(dupes)}. "
            "Rename or remove one of each pair."
        )
    return found


@_guard("Could not reshape the wide data")
def _stub_map(stubs) -> dict[str, str]:
    """``wide_to_long``'s ``stubs`` as {prefix: output name}; DataError for another type, none, or two prefixes
    with one output name."""
    if isinstance(stubs, Mapping):
        stub_map = {str(k).strip(): str(v).strip() for k, v in stubs.items() if v is not None}
    elif isinstance(stubs, (list, tuple)):
        stub_map = {str(x).strip(): str(x).strip() for x in stubs}
    else:
        raise DataError("stubs must be a dictionary {prefix: name} or a list of prefixes.")
    stub_map = {k: (v or k) for k, v in stub_map.items() if k}
    if not stub_map:
        raise DataError("Name at least one column prefix (e.g. 'wai' for wai_1, wai_2, …).")
    targets = list(stub_map.values())
    if len(set(targets)) != len(targets):
        raise DataError(f"Two prefixes are given the same output name: {_fmt_list(targets)}.")
    return stub_map


def _stub_series(base: pd.DataFrame, cols: dict, sessions: list) -> pd.Series:
    """One stub's values, patient by patient and session by session (missing where a session has no column):
    float64 for numeric columns, else the values as they are (text when all are text or missing)."""
    n, m = len(base), len(sessions)
    where = [i for i, k in enumerate(sessions) if k in cols]
    sub = base.iloc[:, [cols[sessions[i]] for i in where]]
    if all(_real_numeric(t) for t in sub.dtypes):
        mat = np.full((n, m), np.nan)
        mat[:, where] = sub.to_numpy(dtype="float64", na_value=np.nan)
        return pd.Series(mat.reshape(-1), dtype="float64")
    mat = np.empty((n, m), dtype=object)
    mat[:] = np.nan
    mat[:, where] = sub.astype(object).to_numpy()
    series = pd.Series(mat.reshape(-1), dtype=object).infer_objects()
    if pd.api.types.is_object_dtype(series.dtype) and series.map(lambda v: isinstance(v, str) or _is_missing(v)).all():
        series = series.astype("str")
    return series


def wide_to_long(
    df: pd.DataFrame,
    id_col: Any,
    stubs: Mapping[str, str] | Sequence[str],
    sep: str = "_",
    session_col: str = "session",
    dropna: bool = True,
    study_col: Any = None,
) -> pd.DataFrame:
    """Reshape one-column-per-session data (wai_1 … wai_12, bdi_1 …) to long form (METHODS §1).

    ``stubs`` maps a column prefix to the output name, e.g.
    ``{"wai": "alliance", "bdi": "symptoms"}``; a list keeps the prefixes as
    names.  Columns ``<stub><sep><n>`` (case-insensitive; when none match,
    also 'wai1', 'wai.1', 'wai-1', 'wai 1') become rows with ``session_col`` =
    n.  The id column and every other column (per-patient values such as
    therapist, age, study) are repeated on each row.  With ``dropna`` rows in
    which all stub values are missing are left out.

    Returns columns ``[id_col, session_col, <stub names…>, <other columns…>]``
    sorted by id and session; feed it to ``to_canonical`` with
    ``{"patient": id_col, "session": session_col, …}``.

    ``study_col`` (optional) is a site or study column that is part of the
    patient key: ids may then restart in each site (patient 1 of site A and
    patient 1 of site B are two patients); map it as the study column in
    ``to_canonical``.  Patients without any value in the session columns are
    left out and listed in ``attrs["dropped"]`` (``validate`` reports them).

    Raises DataError when the id column is missing, has empty or repeated
    ids (naming them, and the site column that would tell them apart), when
    a stub matches no column, or when output names clash with existing
    columns.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError("wide_to_long needs a table (DataFrame).")
    if id_col is None:
        raise DataError("Choose the column that identifies the patients (the id column).")
    id_pos = _column_position(df, _resolve_column(df, id_col, "patient id"))
    stub_map = _stub_map(stubs)
    if not isinstance(session_col, str) or not session_col.strip():
        raise DataError("The session column needs a name.")
    sep = "" if sep is None else str(sep)
    targets = list(stub_map.values())

    colmaps: dict[str, dict[int, int]] = {}
    taken: set[int] = {id_pos}
    for stub in sorted(stub_map, key=len, reverse=True):  # 'wai_t' before 'wai'
        cols = _stub_columns(df, stub, sep, taken)
        if not cols:
            raise DataError(
                f"No columns like '{stub}{sep}1', '{stub}{sep}2', … were found for {stub!r}; "
                f"the columns are: {_fmt_list(df.columns, 20)}."
            )
        colmaps[stub] = cols
        taken.update(cols.values())

    kept = [j for j in range(df.shape[1]) if j not in taken]
    kept_names = _unique_names([str(df.columns[j]).strip() or f"column_{j + 1}" for j in kept])
    id_name = str(df.columns[id_pos])
    out_names = [id_name, session_col, *targets]
    clash = sorted(set(out_names) & set(kept_names)) + sorted(n for n, k in Counter(out_names).items() if k > 1)
    if clash:
        raise DataError(
            f"The reshaped data would have two columns named {_fmt_list(clash)}; rename that column "
            "in the file or choose other output names."
        )

    base = df.set_axis(pd.RangeIndex(len(df)), axis=0)
    study_pos = None
    if study_col is not None:
        study_pos = _column_position(df, _resolve_column(df, study_col, "study"))
        if study_pos == id_pos or study_pos in taken:
            raise DataError("The site (study) column must be another column than the id and the session columns.")
    _check_wide_ids(df, base, id_pos, study_pos)

    sessions = sorted({k for cols in colmaps.values() for k in cols})
    n, m = len(base), len(sessions)
    rows = np.repeat(np.arange(n), m)
    sess = np.tile(np.asarray(sessions, dtype="int64"), n)
    values: dict[str, pd.Series] = {}
    for stub, target in stub_map.items():
        values[target] = _stub_series(base, colmaps[stub], sessions)
    keep = np.ones(n * m, dtype=bool)
    if dropna and values:
        keep = np.column_stack([v.notna().to_numpy() for v in values.values()]).any(axis=1)
    dropped = _empty_patients(base, id_pos, study_pos, keep.reshape(n, m).any(axis=1) if m else None)
    rows, sess = rows[keep], sess[keep]
    result = pd.DataFrame({id_name: base.iloc[rows, id_pos].reset_index(drop=True)})
    result[session_col] = sess
    for target, series in values.items():
        result[target] = series[keep].reset_index(drop=True)
    for j, name in zip(kept, kept_names):
        result[name] = base.iloc[rows, j].reset_index(drop=True)
    result.attrs = {k: v for k, v in df.attrs.items() if k != "header_rows"}
    result.attrs["wide_stubs"] = dict(stub_map)
    result.attrs["dropped"] = list(df.attrs.get("dropped") or []) + dropped
    if study_pos is not None:
        result.attrs["wide_key"] = [str(df.columns[study_pos]), id_name]
    return result


def _check_wide_ids(df: pd.DataFrame, base: pd.DataFrame, id_pos: int, study_pos: int | None) -> None:
    """One row per patient: ids present and unique (within site when a site column is part of the key)."""
    id_name = str(df.columns[id_pos])
    ids = _as_id(base.iloc[:, id_pos])
    if ids.isna().any():
        labels = list(df.index[ids.isna().to_numpy()])
        raise DataError(f"The id column {id_name!r} is empty in {_row_phrase(df, labels)}.")
    if study_pos is not None:
        site = _as_id(base.iloc[:, study_pos]).fillna("")
        key = pd.DataFrame({"s": site.to_numpy(), "p": ids.to_numpy()})
        dup = key.duplicated(keep=False).to_numpy()
        if dup.any():
            pairs = [f"{p} ({s})" for s, p in key[dup].drop_duplicates().itertuples(index=False)]
            raise DataError(
                f"In a wide file each patient has one row, but these ids appear more than once within the same "
                f"{str(df.columns[study_pos])!r}: {_fmt_list(pairs)}."
            )
        return
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        hint = ""
        from analysis.data.mapping import grouping_columns

        groups = [g for g in grouping_columns(base, patient=df.columns[id_pos]) if g.ids_repeat]
        if groups:
            hint = (f" The ids seem to restart in each {groups[0].column!r}: choose that column as the site "
                    "(study) column, so that it becomes part of the patient key.")
        raise DataError(
            f"In a wide file each patient has one row, but these ids appear more than once in {id_name!r}: "
            f"{_fmt_list(pd.unique(dup))}.{hint}"
        )


def _empty_patients(base: pd.DataFrame, id_pos: int, study_pos: int | None, has_value) -> list[str]:
    """A note naming the patients (rows of the wide file) that have no value in any session column."""
    if has_value is None or has_value.all():
        return []
    empty = ~np.asarray(has_value, dtype=bool)
    ids = _as_id(base.iloc[:, id_pos]).to_numpy()[empty]
    if study_pos is not None:
        sites = _as_id(base.iloc[:, study_pos]).to_numpy()[empty]
        names = [f"{p} ({s})" for p, s in zip(ids, sites)]
    else:
        names = [str(p) for p in ids]
    n = int(empty.sum())
    return [f"{n} {'patient has' if n == 1 else 'patients have'} no value in any session column and "
            f"{'was' if n == 1 else 'were'} left out: {_fmt_list(names)}."]


def _real_numeric(dtype) -> bool:
    return (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
            and not pd.api.types.is_complex_dtype(dtype))


def _is_missing(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


@_guard("Could not look for session columns")
def detect_wide(df: pd.DataFrame, min_sessions: int = 2) -> dict[str, str] | None:
    """Guess whether ``df`` is a wide file and which prefixes hold the sessions (METHODS §1).

    Looks for groups of at least ``min_sessions`` columns named
    ``<prefix><sep?><number>`` (wai_1, wai_2 …; bdi1, bdi2 …).  Returns the
    ``stubs`` argument for ``wide_to_long`` — ``{prefix: name}`` with the
    name guessed like ``suggest_mapping`` (``{"wai": "alliance", "bdi":
    "symptoms", "wai_t": "therapist_alliance", "item": "item"}``) — or None
    when the data already have a session column or no such groups exist.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError("detect_wide needs a table (DataFrame).")
    groups = _wide_groups(list(df.columns))
    groups = {k: v for k, v in groups.items() if len(v) >= max(2, int(min_sessions))}
    if not groups:
        return None
    wide_pos = {p for g in groups.values() for p in g.values()}
    for pos, col in enumerate(df.columns):
        if pos in wide_pos:
            continue
        score = _name_score("session", _normalize_name(col))
        if score is not None and score[0] >= 3:
            return None  # a session column: this is long data with numbered items
    # one entry per stub (several separators for the same stub: keep the largest group)
    by_stub: dict[str, tuple[str, dict[int, int]]] = {}
    for (stub_l, _sep), cols in groups.items():
        first = str(df.columns[next(iter(cols.values()))]).strip()
        m = _WIDE_RE.match(first)
        stub = m.group(1).strip() if m else stub_l
        if stub_l not in by_stub or len(cols) > len(by_stub[stub_l][1]):
            by_stub[stub_l] = (stub, cols)
    scored: list[tuple[tuple[int, int], str, str]] = []
    for stub, _cols in by_stub.values():
        norm = _normalize_name(stub)
        for canonical in ("therapist_alliance", "alliance", "symptoms"):
            s = _name_score(canonical, norm)
            if s is not None:
                scored.append((s, stub, canonical))
    scored.sort(key=lambda t: t[0], reverse=True)
    result: dict[str, str] = {}
    taken: set[str] = set()
    for _s, stub, canonical in scored:
        if stub in result or canonical in taken:
            continue
        result[stub] = canonical
        taken.add(canonical)
    for stub, _cols in by_stub.values():
        if stub not in result:
            name = _normalize_name(stub) or "value"
            while name in taken or name in CANONICAL_COLUMNS:
                name = name + "_x"
            result[stub] = name
            taken.add(name)
    order = {c: i for i, c in enumerate(("alliance", "symptoms", "therapist_alliance"))}
    return dict(
        sorted(
            result.items(), key=lambda kv: (order.get(kv[1], 9), _natural_key(kv[0]))
        )
    )
