"""The canonical long format: to_canonical, combine, template_csv (METHODS §1)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.data._common import (
    CANONICAL_COLUMNS,
    DEFAULT_STUDY,
    NUMERIC_COLUMNS,
    DataError,
    _column_labels,
    _fmt_list,
    _guard,
    _natural_rank,
    _plural,
    _row_phrase,
)
from analysis.data.convert import _as_id, _id_text, _parse_numbers, _parse_sessions


def _resolve_column(df: pd.DataFrame, value: Any, canonical: str) -> Any:
    """Find the column label the mapping refers to (exact label, then its text)."""
    try:
        hash(value)
    except TypeError:
        raise DataError(
            f"The column chosen for {canonical!r} must be one column name, not {type(value).__name__}."
        ) from None
    labels = list(df.columns)
    exact = [c for c in labels if type(c) is type(value) and c == value]
    if not exact:
        exact = [c for c in labels if str(c) == str(value)]
    if not exact:
        raise DataError(
            f"The column {str(value)!r} chosen for {canonical!r} is not in the data; "
            f"available columns: {_fmt_list(labels, 20)}."
        )
    if len(exact) > 1:
        raise DataError(
            f"The column name {str(value)!r} (chosen for {canonical!r}) appears {len(exact)} times in the data; "
            "rename the duplicates first."
        )
    return exact[0]


def _clean_mapping(df: pd.DataFrame, mapping: Any) -> dict[str, Any]:
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise DataError(
            "The column mapping must be a dictionary {canonical name: column name}."
        )
    clean: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or key not in CANONICAL_COLUMNS:
            raise DataError(
                f"Unknown canonical name {key!r} in the column mapping; use {_fmt_list(CANONICAL_COLUMNS)}."
            )
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, float) and math.isnan(value):
            continue
        clean[key] = _resolve_column(df, value, key)
    seen: dict[Any, str] = {}
    for key, col in clean.items():
        ident = (type(col), col)
        if ident in seen:
            raise DataError(
                f"The column {str(col)!r} is chosen for both {seen[ident]!r} and {key!r}; "
                "each column can be used only once."
            )
        seen[ident] = key
    return clean


def _bad_values_phrase(raw: pd.Series, bad: np.ndarray) -> str:
    """ "'x', 'y' …" — the distinct offending values (at most five)."""
    vals = [str(v) for v in raw.to_numpy()[bad]]
    distinct = list(dict.fromkeys(vals))
    return ", ".join(repr(v) for v in distinct[:5]) + (
        " …" if len(distinct) > 5 else ""
    )


def _numeric_problem(
    df: pd.DataFrame, src: pd.DataFrame, pos: int, canonical: str, bad: np.ndarray
) -> str:
    col = df.columns[pos]
    labels = list(df.index[bad])
    return (
        f"Column {str(col)!r} ({canonical}) must hold numbers, but {_row_phrase(df, labels)} "
        f"contain{'s' if len(labels) == 1 else ''} {_bad_values_phrase(src.iloc[:, pos], bad)}."
    )


@_guard("Could not convert the data")
def to_canonical(
    df: pd.DataFrame,
    mapping: Mapping[str, Any] | None,
    study: str | None = None,
    symptoms_higher_is_worse: bool = True,
    keep_extra: bool = True,
) -> pd.DataFrame:
    """Rename and type the columns into the canonical long format (METHODS §1).

    ``mapping`` is ``{canonical name: column}`` (as from ``suggest_mapping``;
    None/'' = not available).  Result columns, in this order when present:
    study (text), patient (text), session (int64), alliance, symptoms,
    therapist_alliance (float64), therapist (text), then the extra columns
    (unless ``keep_extra=False``; an extra column whose name clashes with a
    canonical one gets the suffix ``_original``).

    * Numbers stored as text, also with decimal commas ('3,5'), are converted;
      'NA', '.', '-', '' and similar become missing.
    * Sessions must be whole numbers ≥ 0 ('3', '3.0', 'Session 3', 'T3' are
      accepted).  Rows with neither a session nor any score are dropped (and
      reported in ``attrs["messages"]``).
    * ``study`` comes from the mapped column, else from the ``study`` argument,
      else 'Study 1'; ``attrs["study_from"]`` says which ('column',
      'argument', 'default').
    * Study, patient and therapist codes with SPSS/Stata value labels
      (``attrs["value_labels"]``, from ``load``) become their labels (sites
      read 'Berlin', not '1'), when the labels tell the codes apart.
    * Rows and patients left out (no session and no scores; patients without
      any value in a wide file) are listed in ``attrs["dropped"]``, which
      ``validate`` reports.
    * ``symptoms_higher_is_worse=False`` flips symptoms within each study:
      new = max + min − x over that study's observed values, so higher =
      more severe; ``attrs["symptoms_flipped"] = True`` and
      ``attrs["symptoms_flip_message"]`` explains it.
    * Sorted by study, patient (natural order: P2 before P10), session; the
      index is reset.  ``attrs`` keeps the source's metadata and adds
      ``mapping`` and ``messages``.

    Missing canonical columns are simply absent (``validate`` reports them).
    Raises DataError naming the column, rows and values for text that is not
    a number, sessions that are not whole numbers ≥ 0 or are missing next to
    data, an unknown or doubly used column in ``mapping``.

    >>> import pandas as pd
    >>> raw = pd.DataFrame({"ID": [1, 1], "Session": [1, 2], "WAI": [4.0, 5.0], "BDI": [20, 18]})
    >>> d = to_canonical(raw, {"patient": "ID", "session": "Session", "alliance": "WAI", "symptoms": "BDI"})
    >>> d.columns.tolist()[:5]
    ['study', 'patient', 'session', 'alliance', 'symptoms']
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError("to_canonical needs a table (DataFrame).")
    cmap = _clean_mapping(df, mapping)
    positions = {k: _column_position(df, col) for k, col in cmap.items()}
    study = None if study is None or not str(study).strip() else str(study)
    # work on positions: the caller's index may repeat labels
    src = df.set_axis(pd.RangeIndex(len(df)), axis=0)
    messages: list[str] = []
    problems: list[str] = []
    out = pd.DataFrame(index=src.index)
    out["study"], study_from = _study_column(df, src, cmap, positions, study, messages)
    for c in ("patient", "therapist"):
        if c in cmap:
            out[c] = _labelled_ids(df, src, cmap[c], positions[c], c, messages)
    session_missing = None
    if "session" in cmap:
        out["session"], session_missing = _session_column(df, src, cmap, positions, problems)
    for canonical in NUMERIC_COLUMNS:
        if canonical in cmap:
            vals, bad = _parse_numbers(src.iloc[:, positions[canonical]], allow_comma=True)
            b = bad.to_numpy()
            if b.any():
                problems.append(_numeric_problem(df, src, positions[canonical], canonical, b))
            out[canonical] = vals
    keep_rows, dropped = _rows_to_keep(df, out, cmap, session_missing, problems)
    if problems:
        raise DataError("The data cannot be converted:\n- " + "\n- ".join(problems))
    messages.extend(dropped)
    if not keep_rows.all():  # (a boolean selection of every row would copy the whole frame)
        out = out.loc[keep_rows]
    if "session" in out:
        out["session"] = out["session"].astype("int64")
    if keep_extra:
        _add_extra_columns(df, src, out, set(positions.values()), keep_rows, messages)
    flip_message = None
    if not symptoms_higher_is_worse and "symptoms" in out:
        flip_message = _flip_symptoms(df, out, cmap)
        messages.append(flip_message)
    canon = [c for c in CANONICAL_COLUMNS if c in out]
    rest = [c for c in out.columns if c not in CANONICAL_COLUMNS]
    out = _sort_canonical(out[canon + rest])
    attrs = {k: v for k, v in df.attrs.items() if k != "header_rows"}
    attrs.update(mapping={k: str(v) for k, v in cmap.items()}, study_from=study_from,
                 symptoms_flipped=flip_message is not None, symptoms_flip_message=flip_message,
                 messages=messages, dropped=list(df.attrs.get("dropped") or []) + dropped)
    out.attrs = attrs
    return out


def _labelled_ids(df: pd.DataFrame, src: pd.DataFrame, col: Any, pos: int, canonical: str,
                  messages: list[str]) -> pd.Series:
    """An id column as text; codes with value labels (SPSS/Stata) replaced by their labels."""
    ids = _as_id(src.iloc[:, pos])
    labels = (df.attrs.get("value_labels") or {}).get(str(col)) if isinstance(df.attrs, dict) else None
    if not labels:
        return ids
    table = {_id_text(k): str(v).strip() for k, v in labels.items() if str(v).strip()}
    present = set(ids.dropna().unique())
    used = {k: v for k, v in table.items() if k in present}
    if not used:
        return ids
    if len(set(used.values())) < len(used) or set(used.values()) & (present - set(used)):
        messages.append(f"The value labels of column {str(col)!r} ({canonical}) do not tell all codes apart, "
                        "so the codes were kept.")
        return ids
    messages.append(f"Column {str(col)!r} ({canonical}): {_plural(len(used), 'code')} replaced by "
                    f"{'its value label' if len(used) == 1 else 'their value labels'} "
                    f"({_fmt_list([f'{k} = {v}' for k, v in list(used.items())[:5]], 5)}).")
    return ids.map(lambda v: used.get(v, v)).astype("str")


def _study_column(df, src, cmap, positions, study, messages) -> tuple[pd.Series, str]:
    """The study label of every row and where it came from ('column', 'argument', 'default')."""
    if "study" not in cmap:
        return pd.Series(study.strip() if study else DEFAULT_STUDY, index=src.index, dtype="str"), (
            "argument" if study else "default")
    st = _labelled_ids(df, src, cmap["study"], positions["study"], "study", messages)
    fill = study.strip() if study else DEFAULT_STUDY
    n_missing = int(st.isna().sum())
    if n_missing:
        st = st.fillna(fill)
        messages.append(f"{_plural(n_missing, 'row')} without a study label were given the label {fill!r}.")
    return st.astype("str"), "column"


def _session_column(df, src, cmap, positions, problems) -> tuple[pd.Series, np.ndarray]:
    raw = src.iloc[:, positions["session"]]
    vals, bad, missing = _parse_sessions(raw, allow_labels=True)
    b = bad.to_numpy()
    if b.any():
        labels = list(df.index[b])
        problems.append(
            f"Column {str(cmap['session'])!r} (session) must hold whole numbers ≥ 0, but {_row_phrase(df, labels)} "
            f"contain{'s' if len(labels) == 1 else ''} {_bad_values_phrase(raw, b)}."
        )
    return vals, missing.to_numpy()


def _rows_to_keep(df, out, cmap, session_missing, problems) -> tuple[np.ndarray, list[str]]:
    """Rows without a session number: an error when they hold scores, dropped (and said so) when empty."""
    keep_rows = np.ones(len(out), dtype=bool)
    dropped: list[str] = []
    if session_missing is None or not session_missing.any():
        return keep_rows, dropped
    score_cols = [c for c in NUMERIC_COLUMNS if c in out]
    has_data = out[score_cols].notna().any(axis=1).to_numpy() if score_cols else np.zeros(len(out), dtype=bool)
    with_data = session_missing & has_data
    empty = session_missing & ~has_data
    if with_data.any():
        labels = list(df.index[with_data])
        problems.append(
            f"Column {str(cmap['session'])!r} (session) is empty in {_row_phrase(df, labels)}, "
            "which hold scores; fill in the session numbers or delete those rows."
        )
    if empty.any():
        labels = list(df.index[empty])
        dropped.append(f"Dropped {_plural(len(labels), 'row')} without a session number and without scores "
                       f"({_row_phrase(df, labels)}).")
        keep_rows &= ~empty
    return keep_rows, dropped


def _add_extra_columns(df, src, out, mapped_pos, keep_rows, messages) -> None:
    """Unused columns, by position (labels may repeat or clash with canonical names)."""
    taken = set(out.columns)
    kept_idx = np.flatnonzero(keep_rows)
    for j, c in enumerate(df.columns):
        if j in mapped_pos:
            continue
        name = str(c).strip() or f"column_{j + 1}"
        if name in CANONICAL_COLUMNS or name in taken:
            base = name
            new = f"{base}_original"
            k = 2
            while new in taken:
                new = f"{base}_original{k}"
                k += 1
            messages.append(f"The unused column {name!r} was kept as {new!r}.")
            name = new
        taken.add(name)
        out[name] = src.iloc[kept_idx, j].set_axis(out.index)


def _flip_symptoms(df, out, cmap) -> str:
    """Reverse symptoms within each study (new = max + min − old); returns the explanation."""
    g = out.groupby("study", sort=False)["symptoms"]
    lo, hi = g.transform("min"), g.transform("max")
    out["symptoms"] = hi + lo - out["symptoms"]
    ranges = []
    for st_label, sub in out.assign(_lo=lo, _hi=hi).groupby("study", sort=False):
        a, z = sub["_lo"].iloc[0], sub["_hi"].iloc[0]
        ranges.append(f"{st_label}: {a:g}–{z:g}" if pd.notna(a) else f"{st_label}: no values")
    source = str(cmap["symptoms"])
    stubs = df.attrs.get("wide_stubs")
    for stub, target in stubs.items() if isinstance(stubs, dict) else []:
        if str(target) == source:
            source = f"{source}, from the {stub}_… columns"
    return (
        f"Symptom scores (column {source!r}) were reversed because higher meant better: "
        "new = max + min − old within each study, so that higher now means more severe "
        f"(observed range {'; '.join(ranges)})."
    )


def _column_position(df: pd.DataFrame, col: Any) -> int:
    for j, c in enumerate(df.columns):
        if type(c) is type(col) and (c is col or c == col):
            return j
    for j, c in enumerate(df.columns):
        if str(c) == str(col):
            return j
    raise DataError(
        f"The column {str(col)!r} is not in the data."
    )  # pragma: no cover - resolved before


def _sort_canonical(df: pd.DataFrame) -> pd.DataFrame:
    keys: list[np.ndarray] = []  # study, patient, session; missing values last; ties keep their order
    if "study" in df:
        keys.append(_natural_rank(df["study"]).to_numpy(dtype="float64"))
    if "patient" in df:
        keys.append(_natural_rank(df["patient"]).to_numpy(dtype="float64"))
    if "session" in df:
        keys.append(pd.to_numeric(df["session"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan))
    if not keys:
        return df.reset_index(drop=True)
    pos = np.lexsort(keys[::-1])  # (stable; NaN sorts last; the last key given is the primary one)
    del keys
    if np.array_equal(pos, np.arange(len(pos))):  # already in order (e.g. from to_canonical): no copy
        out = df.reset_index(drop=True)
    else:
        out = df.iloc[pos].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out



def _stem(name: Any) -> str | None:
    if not name or not isinstance(name, str):
        return None
    stem = Path(name).stem.strip()
    return stem or None


@_guard("Could not combine the data sets")
def _combine_inputs(frames, labels) -> tuple[list, list | None]:
    """``combine``'s arguments as lists, checked (DataError for no list, an empty one or a label count that
    differs)."""
    if isinstance(frames, pd.DataFrame):
        frames = [frames]
    try:
        frames = list(frames)
    except TypeError:
        raise DataError("combine needs a list of tables.") from None
    if not frames:
        raise DataError("There is nothing to combine: the list of data sets is empty.")
    if labels is not None:
        labels = [labels] if isinstance(labels, str) else list(labels)
        if len(labels) != len(frames):
            raise DataError(f"{len(frames)} data sets but {len(labels)} labels were given.")
    return frames, labels


def _study_labels(g: pd.DataFrame, f: pd.DataFrame, explicit: str | None, fallback: str) -> pd.Series:
    """One data set's study labels (``combine``'s docstring): its own study column unless ``to_canonical``
    filled in the default, the ``explicit`` label (a prefix for several studies) or ``fallback``."""
    has_study = "study" in g and f.attrs.get("study_from") != "default" and g["study"].notna().any()
    if not has_study:
        return pd.Series(explicit or fallback, index=g.index, dtype="str")
    st = _as_id(g["study"]).fillna(explicit or fallback)
    if not explicit:
        return st
    return pd.Series(explicit, index=g.index, dtype="str") if st.nunique() <= 1 else (explicit + ": " + st).astype("str")


def _canonical_values(g: pd.DataFrame, what: str) -> None:
    """Ids as text, sessions int64 and scores float64 in ``g`` (in place); DataError naming the rows else."""
    g["patient"] = _as_id(g["patient"])
    if "therapist" in g:
        g["therapist"] = _as_id(g["therapist"])
    vals, bad, missing = _parse_sessions(g["session"], allow_labels=False)
    if bad.any() or missing.any():
        rows = list(g.index[(bad | missing).to_numpy()])
        raise DataError(f"{what}: session is missing or not a whole number ≥ 0 in rows {_fmt_list(rows)}.")
    g["session"] = vals.astype("int64")
    for c in NUMERIC_COLUMNS:
        if c in g:
            v, b = _parse_numbers(g[c], allow_comma=True)
            if b.any():
                bad = b.to_numpy()
                raise DataError(f"{what}: column {c!r} must hold numbers, but rows {_fmt_list(list(g.index[bad]))} "
                                f"contain {_bad_values_phrase(g[c], bad)}.")
            g[c] = v


def _rename_used_labels(g: pd.DataFrame, used: set, what: str, messages: list) -> None:
    """A study label an earlier data set used gets a suffix ' (2)', ' (3)', … (in place, with a message);
    ``used`` then holds this data set's labels too."""
    rename = {}
    for s in pd.unique(g["study"]):
        if s in used:
            k = 2
            while f"{s} ({k})" in used or f"{s} ({k})" in set(g["study"]):
                k += 1
            rename[s] = f"{s} ({k})"
            messages.append(f"{what}: the study label {s!r} was already used and became {rename[s]!r}.")
    if rename:
        g["study"] = g["study"].replace(rename).astype("str")
    used.update(pd.unique(g["study"]))


def combine(
    frames: Sequence[pd.DataFrame], labels: Sequence[str | None] | None = None
) -> pd.DataFrame:
    """Stack several canonical frames (one per file) into one multi-study set (METHODS §1).

    Study labels, per frame: ``labels[i]`` when given (for a frame holding
    several studies it becomes a prefix, 'label: study'); else the frame's
    own study column, unless ``to_canonical`` filled it with the default
    'Study 1'; else the file name without extension (``attrs["source_name"]``);
    else 'Study i'.  A label already used by an earlier frame gets a suffix
    ' (2)', ' (3)', … (reported in ``attrs["messages"]``).  Columns are united
    (missing ones are empty), types made canonical, rows sorted by study,
    patient, session.

    Raises DataError for an empty list, a non-frame, a frame without patient
    or session column (convert it with ``to_canonical`` first), a label list
    of the wrong length, or invalid session/score values.
    """
    frames, labels = _combine_inputs(frames, labels)
    used: set[str] = set()
    parts: list[pd.DataFrame] = []
    messages: list[str] = []
    sources: list[str] = []
    flipped = False
    dropped: list[str] = []
    own_names: dict[str, list[str]] = {}
    for i, f in enumerate(frames):
        if not isinstance(f, pd.DataFrame):
            raise DataError(f"Data set {i + 1} is a {type(f).__name__}, not a table.")
        src = f.attrs.get("source_name")
        what = f"Data set {i + 1}" + (f" ({src})" if src else "")
        g = f.copy(deep=False)  # copy-on-write: the caller's frame is never changed, nor copied up front
        names = _column_labels(g)
        if len(set(names)) != len(names):
            dups = [n for n, k in Counter(names).items() if k > 1]
            raise DataError(f"{what} has repeated column names: {_fmt_list(dups)}.")
        g.columns = names
        for req in ("patient", "session"):
            if req not in g:
                raise DataError(
                    f"{what} has no {req!r} column; convert it to the canonical format (to_canonical) first."
                )
        explicit = labels[i] if labels is not None else None
        explicit = str(explicit).strip() if explicit is not None and str(explicit).strip() else None
        g["study"] = _study_labels(g, f, explicit, _stem(src) or f"Study {i + 1}")
        _canonical_values(g, what)
        _rename_used_labels(g, used, what, messages)  # label clashes with earlier data sets
        flipped = flipped or bool(f.attrs.get("symptoms_flipped"))
        msg = f.attrs.get("symptoms_flip_message")
        if msg:
            messages.append(f"{what}: {msg}")
        dropped.extend(f"{what}: {d}" for d in (f.attrs.get("dropped") or []))
        sources.append(src or f"Data set {i + 1}")
        for canonical, own in (f.attrs.get("mapping") or {}).items():  # the users' own column names
            seen = own_names.setdefault(str(canonical), [])
            if str(own) not in seen:
                seen.append(str(own))
        g.attrs = {}
        parts.append(g)
    # (one data set: its frame as it is, not a copy)
    several = len(parts) > 1
    out = pd.concat(parts, ignore_index=True, sort=False) if several else parts[0].reset_index(drop=True)
    del parts
    canon = [c for c in CANONICAL_COLUMNS if c in out]
    rest = [c for c in out.columns if c not in CANONICAL_COLUMNS]
    out = out[canon + rest]
    for c in ("study", "patient", "therapist"):
        if c in out and several:  # (one data set: its ids were made text just above)
            out[c] = _as_id(out[c])
    out = _sort_canonical(out)
    out.attrs = {
        "mapping": {c: " / ".join(v) for c, v in own_names.items()},  # canonical → the files' own column name(s)
        "source_name": "; ".join(sources),
        "sources": sources,
        "symptoms_flipped": flipped,
        "messages": messages,
        "dropped": dropped,
        "study_from": "combined",
    }
    return out



def template_csv() -> str:
    """A small CSV template (METHODS §1 columns): 2 patients × 3 sessions.

    Higher alliance = stronger alliance; higher symptoms = more severe.
    ``load(template_csv().encode(), "template.csv")`` reads it back.
    """
    rows = [
        CANONICAL_COLUMNS,
        ("My study", "P01", 1, 4.2, 24, 4.0, "T1"),
        ("My study", "P01", 2, 4.5, 21, 4.3, "T1"),
        ("My study", "P01", 3, 4.8, 17, 4.6, "T1"),
        ("My study", "P02", 1, 3.1, 30, 3.6, "T2"),
        ("My study", "P02", 2, 3.4, 29, 3.8, "T2"),
        ("My study", "P02", 3, 3.9, 25, 4.1, "T2"),
    ]
    return "\n".join(",".join(str(v) for v in r) for r in rows) + "\n"


def require_canonical(
    df: Any,
    columns: Sequence[str] = ("alliance", "symptoms"),
    *,
    optional: Sequence[str] = (),
    study: bool = True,
    values: bool = True,
    min_rows: int = 1,
    why: str = "",
    sort: bool = True,
) -> pd.DataFrame:
    """The one guard for analysis modules: ``df`` must be canonical long data (METHODS §1).

    Always checked: ``df`` is a DataFrame with at least ``min_rows`` rows and the
    columns patient, session, ``columns`` (and study unless ``study=False``).
    With ``values`` (default) also: study and patient present in every row,
    session a whole number ≥ 0 in every row, ``columns`` and ``optional``
    (when present) numeric, each (study, patient, session) once.

    Returns a copy with study and patient as text, session int64, the value
    columns float64 (NaN = not observed) and other columns untouched, sorted
    by study, patient (natural order) and session with a fresh index (with
    ``sort=False`` in the rows and index of ``df``); with ``values=False``
    the frame itself.  Raises DataError (a ValueError) with
    a message for the researcher; no "who:" prefix is needed.  ``why`` (a
    sentence) follows the message about missing columns, saying what the
    caller needs them for.

    >>> import pandas as pd
    >>> d = require_canonical(pd.DataFrame({"study": "A", "patient": [2, 1], "session": [1, 1],
    ...                                     "alliance": ["4", 5], "symptoms": [20, 18]}))
    >>> d["patient"].tolist(), d["alliance"].tolist()
    (['1', '2'], [5.0, 4.0])
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"Expected the data as a table in the canonical long format (METHODS §1), not a "
                        f"{type(df).__name__}.")
    need = [c for c in (("study",) if study else ()) + ("patient", "session", *columns) if c not in df.columns]
    if need:
        raise DataError(f"The data lack the column(s) {_fmt_list(need)}; canonical long data have one row per "
                        "patient × session with study, patient, session, alliance and symptoms (METHODS §1)."
                        + (f" {why}" if why else ""))
    if len(df) < min_rows:
        raise DataError("The data have no rows." if len(df) == 0 else f"The data have only {len(df)} rows.")
    if not values:
        return df
    out = df.copy()
    for c in ("study", "patient", "therapist"):
        if c in out:
            out[c] = _as_id(out[c])
            if c != "therapist" and out[c].isna().any():
                raise DataError(f"Column {c!r} is empty in {_plural(int(out[c].isna().sum()), 'row')}; every row "
                                f"needs a {c} label.")
    sess, bad, missing = _parse_sessions(out["session"], allow_labels=False)
    if (bad | missing).any():
        raise DataError(f"Column 'session' must be a whole number ≥ 0 in every row; "
                        f"{_plural(int((bad | missing).sum()), 'row')} {'is' if int((bad | missing).sum()) == 1 else 'are'} not.")
    out["session"] = sess.astype("int64")
    for c in (*columns, *optional):
        if c in out:
            vals, nonnum = _parse_numbers(out[c], allow_comma=False)
            if nonnum.any():
                raise DataError(f"Column {c!r} must hold numbers; {_plural(int(nonnum.sum()), 'value')} "
                                f"{'is' if int(nonnum.sum()) == 1 else 'are'} not "
                                f"({_bad_values_phrase(out[c], nonnum.to_numpy())}).")
            out[c] = vals
    key = [c for c in ("study", "patient", "session") if c in out]
    dup = out.duplicated(key).to_numpy()
    if dup.any():
        first = out.iloc[int(np.flatnonzero(dup)[0])]
        where = f" of study {first['study']}" if "study" in out else ""
        raise DataError(f"Some (study, patient, session) keys occur more than once; each session of a patient must "
                        f"be one row, but patient {first['patient']}{where} has more than one row for session "
                        f"{first['session']}.")
    return _sort_canonical(out) if sort else out


def one_study(df: pd.DataFrame, study: Any = None) -> tuple[str, pd.DataFrame]:
    """The rows of one study: ``study`` by its label, or the only study when ``None``.

    Returns (label, rows). Raises DataError when ``study`` is ``None`` and the
    data hold several studies, or when ``study`` is not in the data. Data
    without a study column are one study, labelled ``study`` (or "Study").
    """
    if "study" not in df.columns:
        return ("Study" if study is None else str(study)), df
    labels = df["study"].astype("string")
    studies = sorted(labels.dropna().unique())
    if study is None:
        if len(studies) != 1:
            raise DataError(f"The data hold {len(studies)} studies; choose one with study=….")
        study = studies[0]
    elif str(study) not in studies:
        raise DataError(f"Study {study!r} is not in the data.")
    return str(study), df[(labels == str(study)).fillna(False).to_numpy()]
