"""Data intake: read files, map columns, reshape, check and combine (METHODS §1).

The canonical long format (``docs/METHODS.md`` §1) has one row per patient ×
session and the columns

    study (text), patient (text), session (integer ≥ 0), alliance (float),
    symptoms (float), therapist_alliance (float, optional), therapist (text,
    optional)

with the key (study, patient, session).  Extra columns are carried along
(study-level moderators, patient-level covariates).

Typical flow::

    raw = load(uploaded_file)                     # CSV/TSV/TXT, XLSX, SAV, DTA, Parquet
    stubs = detect_wide(raw)                      # wide file (wai_1 … wai_12)?
    if stubs:
        raw = wide_to_long(raw, suggest_mapping(raw)["patient"], stubs)
    mapping = suggest_mapping(raw)                # the user corrects it in the UI
    df = to_canonical(raw, mapping, study="Trial A")
    report = validate(df)                         # errors block analysis, warnings inform
    both = combine([df, df2])                     # several studies in one set
    summary = summarize(both)

``DataError`` (a ``ValueError``) is the only exception that ``load``,
``list_sheets``, ``suggest_mapping``, ``to_canonical``, ``wide_to_long``,
``detect_wide``, ``validate``, ``combine`` and ``summarize`` let escape,
whatever the bytes or frame they are given.  Its message is written for the
researcher and names the columns, rows and patients concerned.

Row numbers: ``load`` returns a frame whose index label ``i`` is the
``i``-th data row of the file (blank rows are dropped but keep their number),
so messages about a loaded frame speak of *spreadsheet rows* ``i + 2`` (the
header is row 1).  ``to_canonical`` sorts and renumbers; issues found by
``validate`` carry the index labels of the frame that was checked in
``Issue.rows`` and name patients and sessions in the message.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CANONICAL_COLUMNS",
    "NUMERIC_COLUMNS",
    "REQUIRED_COLUMNS",
    "DataError",
    "DataSummary",
    "Issue",
    "ValidationReport",
    "combine",
    "detect_wide",
    "list_sheets",
    "load",
    "suggest_higher_is_better",
    "suggest_mapping",
    "summarize",
    "template_csv",
    "to_canonical",
    "validate",
    "wide_to_long",
]

CANONICAL_COLUMNS: tuple[str, ...] = (
    "study",
    "patient",
    "session",
    "alliance",
    "symptoms",
    "therapist_alliance",
    "therapist",
)
REQUIRED_COLUMNS: tuple[str, ...] = (
    "study",
    "patient",
    "session",
    "alliance",
    "symptoms",
)
NUMERIC_COLUMNS: tuple[str, ...] = ("alliance", "symptoms", "therapist_alliance")
ID_COLUMNS: tuple[str, ...] = ("study", "patient", "therapist")
DEFAULT_STUDY = "Study 1"

#: validation thresholds (METHODS §1 intake checks)
MIN_SESSIONS_PER_PATIENT = 2
MIN_PATIENTS_PER_STUDY = 10
MAX_MISSING_SHARE = 0.30
OUTLIER_MADS = 5.0
_MAD_TO_SD = 1.4826

_TEXT_FORMATS = ("csv", "tsv")
_MAX_LISTED = 10

# Text that means "no value" in the files researchers export.
_NA_STRINGS = [
    "",
    "NA",
    "N/A",
    "n/a",
    "na",
    "NaN",
    "nan",
    "NAN",
    "NULL",
    "null",
    "None",
    "none",
    ".",
    "-",
    "#N/A",
    "#NA",
    "missing",
    "Missing",
    "<NA>",
]
_NA_LOWER = {s.lower() for s in _NA_STRINGS}

_NUMBER_RE = r"[+-]?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+)(?:[eE][+-]?[0-9]+)?"
_NUMBER_DOT_RE = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
_LEADING_ZERO_RE = r"[+-]?0[0-9]+"
_SESSION_LABEL_RE = re.compile(r"^[A-Za-z][A-Za-z _.#:\-]*?\s*([0-9]+)$")


class DataError(ValueError):
    """Bad or unreadable input data; the message is meant for the researcher."""


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _guard(action: str) -> Callable:
    """Turn any exception other than DataError into a DataError with context."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except DataError:
                raise
            except MemoryError as exc:
                raise DataError(
                    f"{action}: the data are too large to process."
                ) from exc
            except RecursionError as exc:
                raise DataError(f"{action}: the data are nested too deeply.") from exc
            except Exception as exc:
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                detail = detail[:300]
                kind = type(exc).__name__
                msg = (
                    f"{action}: {detail} ({kind})" if detail else f"{action} ({kind})."
                )
                raise DataError(msg) from exc

        return wrapper

    return decorate


def _fmt_list(items: Iterable[Any], limit: int = _MAX_LISTED) -> str:
    """'a, b, c' or 'a, b, c, … (12 more)' for long lists."""
    items = [str(x) for x in items]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", … ({len(items) - limit} more)"


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _is_text_dtype(s: pd.Series) -> bool:
    return pd.api.types.is_object_dtype(s.dtype) or isinstance(s.dtype, pd.StringDtype)


def _is_real_numeric_dtype(s: pd.Series) -> bool:
    return (
        pd.api.types.is_numeric_dtype(s.dtype)
        and not pd.api.types.is_bool_dtype(s.dtype)
        and not pd.api.types.is_complex_dtype(s.dtype)
    )


def _py(v: Any) -> Any:
    """numpy scalar -> python scalar (for clean lists in Issue fields)."""
    if isinstance(v, np.generic):
        return v.item()
    return v


def _natural_key(value: Any) -> tuple:
    parts = re.split(r"([0-9]+)", str(value))
    key: list[tuple] = []
    for p in parts:
        if not p:
            continue
        if p.isascii() and p.isdigit():
            key.append((0, int(p), ""))
        else:
            key.append((1, 0, p.lower()))
    return tuple(key)


def _natural_rank(values: pd.Series) -> pd.Series:
    """Integer rank of each value in natural order ('P2' < 'P10'); NaN stays NaN."""
    uniq = pd.unique(values.dropna())
    order = sorted(uniq, key=lambda v: (_natural_key(v), str(v)))
    rank = {v: i for i, v in enumerate(order)}
    return values.map(rank).astype("float64")


def _normalize_name(name: Any) -> str:
    """Lower-case, non-alphanumerics -> '_', camelCase split ('PatientID' -> 'patient_id')."""
    text = str(name).strip()
    text = re.sub(r"([a-z])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    text = text.lower()
    text = re.sub(r"[^0-9a-z]+", "_", text)
    return text.strip("_")


def _compact(name: str) -> str:
    return name.replace("_", "")


def _column_labels(df: pd.DataFrame) -> list[str]:
    return [str(c) for c in df.columns]


def _unique_names(names: Sequence[str]) -> list[str]:
    """Make names unique by appending '.1', '.2' … like pandas does."""
    seen: Counter = Counter()
    taken = set()
    out = []
    for n in names:
        base = n
        cand = base
        while cand in taken:
            seen[base] += 1
            cand = f"{base}.{seen[base]}"
        taken.add(cand)
        out.append(cand)
    return out


def _row_phrase(df: pd.DataFrame, labels: Sequence[Any]) -> str:
    """Describe rows for a message: spreadsheet rows when the frame came from load()."""
    labels = list(labels)
    header = df.attrs.get("header_rows")
    ints = all(isinstance(_py(x), int) and not isinstance(_py(x), bool) for x in labels)
    if ints and df.attrs.get("format") in ("sav", "por", "dta", "parquet"):
        nums = [int(_py(x)) + 1 for x in labels]
        word = "case" if len(nums) == 1 else "cases"
        return f"{word} {_fmt_list(nums)} (counting the first case as 1)"
    if header and ints:
        nums = [int(_py(x)) + 1 + int(header) for x in labels]
        word = "row" if len(nums) == 1 else "rows"
        return f"spreadsheet {word} {_fmt_list(nums)} (header = row {header})"
    word = "row" if len(labels) == 1 else "rows"
    return f"{word} {_fmt_list(labels)}"


# ---------------------------------------------------------------------------
# value conversion
# ---------------------------------------------------------------------------


def _parse_numbers(
    s: pd.Series, allow_comma: bool = True
) -> tuple[pd.Series, pd.Series]:
    """Convert a series to float64.

    Returns ``(values, bad)``: ``bad`` is True where a non-missing value is not a
    number (text that is neither a number nor a missing-value code, booleans,
    dates, infinities).  Decimal commas ('3,5') are accepted when ``allow_comma``.
    """
    index = s.index
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    if pd.api.types.is_bool_dtype(s.dtype):
        bad = s.notna().to_numpy(dtype=bool)
        return pd.Series(np.nan, index=index, dtype="float64"), pd.Series(
            bad, index=index
        )
    if _is_real_numeric_dtype(s):
        vals = pd.to_numeric(s, errors="coerce").astype("float64")
        arr = vals.to_numpy(dtype="float64", na_value=np.nan)
        bad = np.isinf(arr)
        arr = np.where(bad, np.nan, arr)
        return pd.Series(arr, index=index, dtype="float64"), pd.Series(bad, index=index)
    if not _is_text_dtype(s):
        # dates, timedeltas, complex, intervals …: not scores
        bad = s.notna().to_numpy(dtype=bool)
        return pd.Series(np.nan, index=index, dtype="float64"), pd.Series(
            bad, index=index
        )

    arr = s.to_numpy(dtype=object, na_value=np.nan)
    na = pd.isna(arr)
    is_str = _str_mask(s, arr, na)
    out = np.full(len(arr), np.nan, dtype="float64")
    bad = np.zeros(len(arr), dtype=bool)
    if is_str.any():
        t = pd.Series(arr[is_str], dtype="str").str.strip()
        code = t.str.lower().isin(_NA_LOWER).to_numpy(dtype=bool)
        pattern = _NUMBER_RE if allow_comma else _NUMBER_DOT_RE
        ok = t.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool) & ~code
        vals = np.full(len(t), np.nan, dtype="float64")
        if ok.any():
            vals[ok] = pd.to_numeric(
                t[ok].str.replace(",", ".", regex=False), errors="coerce"
            ).to_numpy(dtype="float64", na_value=np.nan)
        sbad = ~ok & ~code
        inf = np.isinf(vals)
        sbad |= inf
        vals[inf] = np.nan
        out[is_str] = vals
        bad[is_str] = sbad
    for i in np.flatnonzero(
        ~na & ~is_str
    ):  # numbers or other objects inside a text column
        v = arr[i]
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
            v, (bool, np.bool_)
        ):
            f = float(v)
            if math.isinf(f):
                bad[i] = True
            else:
                out[i] = f
        else:
            bad[i] = True
    return pd.Series(out, index=index, dtype="float64"), pd.Series(bad, index=index)


def _str_mask(s: pd.Series, arr: np.ndarray, na: np.ndarray) -> np.ndarray:
    """True where the value is a (non-missing) string."""
    if isinstance(s.dtype, pd.StringDtype):
        return ~na
    return (
        np.fromiter((isinstance(v, str) for v in arr), dtype=bool, count=len(arr)) & ~na
    )


def _parse_sessions(
    s: pd.Series, allow_labels: bool = True
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Session numbers as float64 with ``(values, bad, missing)`` masks.

    Accepts whole numbers (also '3', '3.0', '03') and, with ``allow_labels``,
    labels such as 'Session 3', 'week 2', 'T1', 's04'.  ``bad`` marks values
    that are not whole numbers ≥ 0.
    """
    index = s.index
    vals, bad = _parse_numbers(s, allow_comma=True)
    v_arr = vals.to_numpy(dtype="float64", copy=True)
    b_arr = bad.to_numpy(dtype=bool, copy=True)
    if allow_labels and _is_text_dtype(s) and b_arr.any():
        raw = s.astype(object).to_numpy()
        for i in np.flatnonzero(b_arr):
            if not isinstance(raw[i], str):
                continue
            m = _SESSION_LABEL_RE.match(raw[i].strip())
            if m:
                v_arr[i] = float(m.group(1))
                b_arr[i] = False
    vals = pd.Series(v_arr, index=index, dtype="float64")
    bad = pd.Series(b_arr, index=index)
    arr = vals.to_numpy(dtype="float64")
    finite = np.isfinite(arr)
    with np.errstate(invalid="ignore"):
        non_integer = finite & (
            (np.abs(arr - np.round(arr)) > 1e-9) | (arr < 0) | (np.abs(arr) > 2**53)
        )
    bad_arr = bad.to_numpy(dtype=bool) | non_integer
    missing = ~finite & ~bad_arr
    arr = np.where(bad_arr, np.nan, arr)
    return (
        pd.Series(arr, index=index, dtype="float64"),
        pd.Series(bad_arr, index=index),
        pd.Series(missing, index=index),
    )


def _id_text(v: Any) -> Any:
    if v is None:
        return np.nan
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return np.nan
        if math.isfinite(f) and f == round(f) and abs(f) < 2**53:
            return str(int(f))
        return str(f)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    try:
        if pd.isna(v) is True:
            return np.nan
    except (TypeError, ValueError):
        pass
    t = str(v).strip()
    return t if t else np.nan


def _as_id(s: pd.Series) -> pd.Series:
    """Identifier column as pandas text ('str' dtype); 1.0 -> '1', blanks -> missing."""
    if isinstance(s, pd.DataFrame):  # a repeated column label
        s = s.iloc[:, 0]
    index = s.index
    if _is_real_numeric_dtype(s) and s.dtype.kind in "iuf":
        vals = s.to_numpy(dtype="float64", na_value=np.nan)
        out = np.full(len(vals), np.nan, dtype=object)
        finite = np.isfinite(vals)
        whole = finite & (vals == np.round(vals)) & (np.abs(vals) < 2**53)
        if s.dtype.kind in "iu":
            out[:] = s.astype(str).to_numpy(dtype=object)
        else:
            out[whole] = vals[whole].astype("int64").astype(str).astype(object)
            rest = ~whole & ~np.isnan(vals)
            out[rest] = [str(float(v)) for v in vals[rest]]
        return pd.Series(out, index=index, dtype="str")
    if isinstance(s.dtype, pd.CategoricalDtype):
        s = s.astype(object)
    arr = s.to_numpy(dtype=object, na_value=np.nan)
    na = pd.isna(arr) if arr.ndim == 1 else np.zeros(len(arr), dtype=bool)
    is_str = _str_mask(s, arr, na)
    out = np.full(len(arr), np.nan, dtype=object)
    if is_str.any():
        t = pd.Series(arr[is_str], dtype="str").str.strip()
        t = t.mask(t == "")
        out[is_str] = t.to_numpy(dtype=object, na_value=np.nan)
    for i in np.flatnonzero(~na & ~is_str):
        out[i] = _id_text(arr[i])
    return pd.Series(out, index=index, dtype="str")


# ---------------------------------------------------------------------------
# load
# ---------------------------------------------------------------------------

_EXT_FORMATS = {
    ".csv": "csv",
    ".txt": "csv",
    ".dat": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".sav": "sav",
    ".zsav": "sav",
    ".por": "por",
    ".dta": "dta",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xls": "xls",
    ".ods": "ods",
}


def _read_source(
    source: Any, filename: str | os.PathLike | None
) -> tuple[bytes, str | None]:
    name = os.path.basename(os.fspath(filename)) if filename is not None else None
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name
    if isinstance(source, str) and ("\n" in source or "\r" in source):
        # CSV text itself (e.g. template_csv()); paths never contain newlines
        return source.encode("utf-8"), name
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            if not path.exists():
                raise DataError(f"File not found: {os.fspath(path)}")
            if path.is_dir():
                raise DataError(f"{os.fspath(path)} is a folder, not a data file.")
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(
                f"Could not open {os.fspath(path)}: {exc.strerror or exc}"
            ) from exc
        return data, name or path.name
    if hasattr(source, "getvalue") or hasattr(source, "read"):
        data: Any = None
        if hasattr(source, "getvalue"):
            try:
                data = source.getvalue()
            except Exception:  # noqa: BLE001 - fall back to read()
                data = None
        if data is None:
            if hasattr(source, "seek"):
                with contextlib.suppress(
                    Exception
                ):  # unseekable streams are read as they are
                    source.seek(0)
            data = source.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise DataError("The uploaded object did not return file contents (bytes).")
        if name is None:
            n = getattr(source, "name", None)
            if isinstance(n, (str, os.PathLike)):
                name = os.path.basename(os.fspath(n))
        return bytes(data), name
    raise DataError(
        f"Cannot read data from a {type(source).__name__}; give the file's bytes, "
        "a file path, or an uploaded file."
    )


def _format_from_name(name: str | None) -> str | None:
    if not name:
        return None
    return _EXT_FORMATS.get(Path(name).suffix.lower())


def _sniff_format(data: bytes) -> str | None:
    """Guess the format from the first bytes; None when it does not look like any."""
    head = data[:16]
    if head.startswith(b"PK\x03\x04"):
        return "xlsx"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith((b"$FL2", b"$FL3")):
        return "sav"
    if head.startswith(b"<stata_dta>"):
        return "dta"
    if (
        len(head) >= 4
        and 0x68 <= head[0] <= 0x73
        and head[1] in (1, 2)
        and head[2] == 1
    ):
        return "dta"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "xls"
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return "csv"
    sample = data[:4096]
    if _utf16_without_bom(data):
        return "csv"
    if b"\x00" in sample:
        return None
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 13))
    if controls > max(2, len(sample) // 100):
        return None
    return "csv"


def _utf16_without_bom(data: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when the bytes look like BOM-less UTF-16 text, else None."""
    sample = data[:4096]
    if len(sample) < 4 or len(sample) % 2:
        sample = sample[: len(sample) - len(sample) % 2]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.1 * len(odd):
        return "utf-16-be"
    return None


def _decode(data: bytes) -> tuple[str, str]:
    """Decode text: UTF-16 (BOM), UTF-8 (with or without BOM), Windows-1252, Latin-1."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise DataError(
                "The file says it is UTF-16 text but could not be decoded."
            ) from exc
    utf16 = _utf16_without_bom(data)
    if utf16:
        try:
            return data.decode(utf16), utf16
        except UnicodeDecodeError:
            pass
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data.decode("utf-8-sig"), "utf-8-sig"
        except UnicodeDecodeError:
            pass
    for enc in ("utf-8", "cp1252", "latin-1"):
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    return data.decode(
        "latin-1", errors="replace"
    ), "latin-1"  # pragma: no cover - latin-1 decodes all


def _sniff_delimiter(text: str, prefer_tab: bool = False) -> str:
    """Pick the delimiter among ',', ';' and tab that splits the lines most consistently."""
    sample = text[:65536]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rfind("\n")]
    best: tuple | None = None
    best_sep = ","
    for sep in ("\t", ";", ","):
        try:
            rows = [
                r
                for r in csv.reader(io.StringIO(sample), delimiter=sep, quotechar='"')
                if any(x.strip() for x in r)
            ]
        except csv.Error:
            continue
        rows = rows[:200]
        if not rows:
            continue
        counts = [len(r) for r in rows]
        modal, freq = Counter(counts).most_common(1)[0]
        if modal < 2:
            continue
        consistency = freq / len(counts)
        score = (consistency >= 0.9, counts[0] == modal, round(consistency, 3), modal)
        if prefer_tab and sep == "\t":
            score = (True, True, 2.0, modal)
        if best is None or score > best:
            best, best_sep = score, sep
    return best_sep


def _tidy_text_columns(df: pd.DataFrame, allow_comma: bool) -> pd.DataFrame:
    """Strip text, blank -> missing, convert number-like text columns to numbers.

    Zero-padded codes ('007') stay text: they are identifiers.  Decimal commas
    are converted when ``allow_comma`` (not for comma-delimited files, where a
    quoted '1,234' is more likely a thousands separator).
    """
    for j in range(df.shape[1]):
        s = df.iloc[:, j]
        if isinstance(s.dtype, pd.StringDtype):
            df.isetitem(j, _tidy_string_column(s, allow_comma))
            continue
        if not _is_text_dtype(s):
            continue
        arr = s.to_numpy(dtype=object, na_value=np.nan)
        na = pd.isna(arr)
        is_str = _str_mask(s, arr, na)
        if is_str.any():
            t = pd.Series(arr[is_str], dtype="str").str.strip()
            t = t.mask(t.isin(_NA_STRINGS))
            arr = arr.copy()
            arr[is_str] = t.to_numpy(dtype=object, na_value=np.nan)
            na = pd.isna(arr)
            is_str &= ~na
        if na.all():
            df.isetitem(j, pd.Series(np.nan, index=df.index, dtype="float64"))
            continue
        if np.array_equal(is_str, ~na):
            text = pd.Series(arr, index=df.index, dtype="str")
        else:
            text = pd.Series(arr, index=df.index, dtype=object)
        others = arr[~na & ~is_str]
        if any(isinstance(v, (bool, np.bool_)) for v in others):
            df.isetitem(j, text)
            continue
        if is_str.any():
            strs = pd.Series(arr[is_str], dtype="str")
            if strs.str.fullmatch(_LEADING_ZERO_RE).any():
                df.isetitem(j, text)
                continue
        nums, bad = _parse_numbers(text, allow_comma=allow_comma)
        if bad.any():
            df.isetitem(j, text)
            continue
        vals = nums.to_numpy()
        if (
            np.isfinite(vals).all()
            and (vals == np.round(vals)).all()
            and (np.abs(vals) < 2**53).all()
        ):
            df.isetitem(j, nums.astype("int64"))
        else:
            df.isetitem(j, nums)
    return df


def _tidy_string_column(s: pd.Series, allow_comma: bool) -> pd.Series:
    """Fast path of ``_tidy_text_columns`` for a column of the pandas text dtype."""
    t = s.str.strip()
    t = t.mask(t.isin(_NA_STRINGS))
    present = t.notna().to_numpy(dtype=bool)
    if not present.any():
        return pd.Series(np.nan, index=s.index, dtype="float64")
    vals = t[present]
    if vals.str.fullmatch(_LEADING_ZERO_RE).any():
        return t
    pattern = _NUMBER_RE if allow_comma else _NUMBER_DOT_RE
    if not vals.str.fullmatch(pattern).all():
        return t
    nums = pd.to_numeric(t.str.replace(",", ".", regex=False), errors="coerce").astype(
        "float64"
    )
    arr = nums.to_numpy(dtype="float64", na_value=np.nan)
    if np.isinf(arr).any():
        return t
    if present.all() and (arr == np.round(arr)).all() and (np.abs(arr) < 2**53).all():
        return nums.astype("int64")
    return nums


def _finish_frame(df: pd.DataFrame, allow_comma: bool | None) -> pd.DataFrame:
    """Clean names, drop empty unnamed columns and blank rows (index keeps file positions)."""
    if isinstance(df.columns, pd.MultiIndex):
        df.columns = [
            "_".join(
                str(p) for p in tup if str(p) != "" and not str(p).startswith("Unnamed")
            )
            for tup in df.columns
        ]
    names = []
    for i, c in enumerate(df.columns):
        n = str(c).strip() if c is not None else ""
        names.append(n if n else f"column_{i + 1}")
    df.columns = _unique_names(names)
    if allow_comma is not None:
        df = _tidy_text_columns(df, allow_comma)
    empty_cols = [
        c
        for c in df.columns
        if c.startswith(("Unnamed:", "column_")) and df[c].isna().all()
    ]
    if empty_cols:
        df = df.drop(columns=empty_cols)
    if df.shape[1]:
        blank = df.isna().all(axis=1)
        if blank.any():
            df = df.loc[~blank]
            if (
                allow_comma is not None
            ):  # columns that were float only because of blank rows
                for j in range(df.shape[1]):
                    col = df.iloc[:, j]
                    if col.dtype.kind == "f" and len(col):
                        v = col.to_numpy()
                        if (
                            np.isfinite(v).all()
                            and (v == np.round(v)).all()
                            and (np.abs(v) < 2**53).all()
                        ):
                            df.isetitem(j, col.astype("int64"))
    return df


def _read_text(data: bytes, name: str | None, sheet: Any, fmt: str) -> pd.DataFrame:
    text, encoding = _decode(data)
    if "\x00" in text:
        raise DataError(
            f"{name or 'The file'} is not a text file (it contains binary data); "
            "save it as CSV, Excel (.xlsx), SPSS (.sav), Stata (.dta) or Parquet."
        )
    if not text.strip():
        raise DataError(f"The file {name or ''} is empty.".replace("  ", " "))
    first_end = text.find("\n")
    first = (text if first_end < 0 else text[:first_end]).strip()
    hint = re.fullmatch(r"sep=(.)", first.strip('"'), flags=re.IGNORECASE)
    if hint and hint.group(1) in (",", ";", "\t", "|"):
        # Excel's 'sep=;' first line: use it and blank the line (keeps line numbers)
        sep = hint.group(1)
        text = "" if first_end < 0 else text[first_end:]
    else:
        sep = _sniff_delimiter(text, prefer_tab=(fmt == "tsv"))
    df, header_line = _parse_delimited(text, sep, name)
    df = _finish_frame(df, allow_comma=(sep != ","))
    df.attrs["encoding"] = encoding
    df.attrs["delimiter"] = sep
    df.attrs["header_rows"] = header_line
    return df


def _parse_delimited(text: str, sep: str, name: str | None) -> tuple[pd.DataFrame, int]:
    """Split delimited text into a frame of strings; the first non-blank line is the header.

    Short lines are padded with missing values; a line with more (non-empty)
    values than the header raises DataError naming the line.  Blank lines
    become empty rows so that index label i is the i-th line after the header.
    Returns the frame and the line number of the header.
    """
    shown = {"\t": "tab", ";": "semicolon", ",": "comma", "|": "bar"}.get(
        sep, repr(sep)
    )
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=sep,
        quotechar='"',
        skipinitialspace=True,
    )
    header: list[str] | None = None
    header_line = 1
    records: list[list[str]] = []
    # Rows are turned into string columns every _CHUNK_ROWS rows, so that at most one chunk of
    # Python strings is alive at a time (a 5-million-row file as Python lists needs ~3 GB).
    chunks: list[list[pd.Series]] = []

    def flush() -> None:
        if records:
            chunks.append([pd.Series(list(col), dtype="str") for col in zip(*records)])
            records.clear()

    try:
        for rec in reader:
            if header is None:
                if any(f.strip() for f in rec):
                    header = [f.strip() for f in rec]
                    header_line = reader.line_num
                continue
            n = len(header)
            if len(rec) > n:
                if any(f.strip() for f in rec[n:]):
                    raise DataError(
                        f"Could not read {name or 'the file'} as a {shown}-separated table: line "
                        f"{reader.line_num} has {len(rec)} values but the header has {n} columns. "
                        "Check that every line has the same number of separators and that quotes are closed."
                    )
                rec = rec[:n]
            elif len(rec) < n:
                rec = rec + [""] * (n - len(rec))
            records.append(rec)
            if len(records) >= _CHUNK_ROWS:
                flush()
    except csv.Error as exc:
        raise DataError(
            f"Could not read {name or 'the file'} as a {shown}-separated table near line "
            f"{reader.line_num}: {exc}."
        ) from exc
    if header is None:
        raise DataError(f"{name or 'The file'} has no columns.")
    flush()
    n_rows = sum(len(c[0]) for c in chunks)
    frame = pd.DataFrame(
        {i: (pd.concat([c[i] for c in chunks], ignore_index=True) if chunks else pd.Series([], dtype="str"))
         for i in range(len(header))},
        index=pd.RangeIndex(n_rows),
    )
    frame.columns = header
    return frame, header_line


_CHUNK_ROWS = 200_000


def _workbook_sheets(data: bytes) -> list[str]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            "Could not open the Excel workbook: the file is damaged or is not an .xlsx file "
            f"(details: {detail}). Open it in Excel and save it again as .xlsx or as CSV."
        ) from exc
    try:
        return list(wb.sheetnames)
    finally:
        wb.close()


def _choose_sheet(names: list[str], sheet: Any) -> str:
    if not names:
        raise DataError("The Excel workbook has no sheets.")
    if sheet is None:
        return names[0]
    if isinstance(sheet, (int, np.integer)) and not isinstance(sheet, (bool, np.bool_)):
        i = int(sheet)
        if 0 <= i < len(names):
            return names[i]
        raise DataError(
            f"The workbook has {_plural(len(names), 'sheet')} ({_fmt_list(names)}); sheet number {i} does not exist "
            "(the first sheet is number 0)."
        )
    if isinstance(sheet, str):
        if sheet in names:
            return sheet
        folded = {n.strip().casefold(): n for n in names}
        key = sheet.strip().casefold()
        if key in folded:
            return folded[key]
        raise DataError(
            f"The workbook has no sheet named {sheet!r}; its sheets are: {_fmt_list(names)}."
        )
    raise DataError(
        f"Choose a sheet by name or number, not by a {type(sheet).__name__}."
    )


def _read_xlsx(data: bytes, name: str | None, sheet: Any, fmt: str) -> pd.DataFrame:
    names = _workbook_sheets(data)
    target = _choose_sheet(names, sheet)
    try:
        df = pd.read_excel(io.BytesIO(data), sheet_name=target, engine="openpyxl")
    except Exception as exc:
        raise DataError(
            f"Could not read sheet {target!r} of {name or 'the workbook'}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    df = _finish_frame(df, allow_comma=True)
    df.attrs["sheet"] = target
    df.attrs["sheets"] = names
    return df


def _readstat_meta(df: pd.DataFrame, meta: Any) -> pd.DataFrame:
    value_labels = {}
    for col, labels in (getattr(meta, "variable_value_labels", None) or {}).items():
        if labels:
            value_labels[str(col)] = {_py(k): str(v) for k, v in labels.items()}
    column_labels = {}
    for col, lab in (getattr(meta, "column_names_to_labels", None) or {}).items():
        if lab is not None and str(lab).strip():
            column_labels[str(col)] = str(lab)
    df.attrs["value_labels"] = value_labels
    df.attrs["column_labels"] = column_labels
    return df


def _read_sav(data: bytes, name: str | None, sheet: Any, fmt: str) -> pd.DataFrame:
    import pyreadstat

    reader = pyreadstat.read_por if fmt == "por" else pyreadstat.read_sav
    try:
        df, meta = reader(io.BytesIO(data))
    except Exception as exc:
        raise DataError(
            f"Could not read {name or 'the file'} as an SPSS file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}."
        ) from exc
    df = _finish_frame(df, allow_comma=None)
    return _readstat_meta(df, meta)


def _read_dta(data: bytes, name: str | None, sheet: Any, fmt: str) -> pd.DataFrame:
    import pyreadstat

    try:
        df, meta = pyreadstat.read_dta(io.BytesIO(data))
    except Exception as first:  # noqa: BLE001 - pandas' reader knows some older variants
        try:
            with pd.io.stata.StataReader(io.BytesIO(data)) as rdr:
                df = rdr.read(convert_categoricals=False)
                var_labels = rdr.variable_labels()
        except Exception:  # noqa: BLE001
            raise DataError(
                f"Could not read {name or 'the file'} as a Stata file: "
                f"{str(first).splitlines()[0] if str(first) else type(first).__name__}."
            ) from first
        df = _finish_frame(df, allow_comma=None)
        df.attrs["value_labels"] = {}
        df.attrs["column_labels"] = {str(k): str(v) for k, v in var_labels.items() if v}
        return df
    df = _finish_frame(df, allow_comma=None)
    return _readstat_meta(df, meta)


def _read_parquet(data: bytes, name: str | None, sheet: Any, fmt: str) -> pd.DataFrame:
    try:
        df = pd.read_parquet(io.BytesIO(data))
    except Exception as exc:
        raise DataError(
            f"Could not read {name or 'the file'} as a Parquet file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}."
        ) from exc
    if not isinstance(df.index, pd.RangeIndex) or any(
        n is not None for n in df.index.names
    ):
        if any(n is not None for n in df.index.names):
            df = df.reset_index()
        else:
            df = df.reset_index(drop=True)
    return _finish_frame(df, allow_comma=None)


def _read_unsupported(
    data: bytes, name: str | None, sheet: Any, fmt: str
) -> pd.DataFrame:
    if fmt == "xls":
        raise DataError(
            f"{name or 'This file'} is an old-style Excel (.xls) workbook, which cannot be read. "
            "In Excel choose File → Save As → Excel Workbook (.xlsx) or CSV, and upload that."
        )
    raise DataError(
        f"{name or 'This file'} is an OpenDocument spreadsheet (.ods), which cannot be read. "
        "Save it as .xlsx or CSV and upload that."
    )


_READERS: dict[str, Callable[[bytes, str | None, Any, str], pd.DataFrame]] = {
    "csv": _read_text,
    "tsv": _read_text,
    "xlsx": _read_xlsx,
    "sav": _read_sav,
    "por": _read_sav,
    "dta": _read_dta,
    "parquet": _read_parquet,
    "xls": _read_unsupported,
    "ods": _read_unsupported,
}


@_guard("Could not read the file")
def load(
    source: Any,
    filename: str | os.PathLike | None = None,
    sheet: str | int | None = None,
) -> pd.DataFrame:
    """Read a data file into a DataFrame (METHODS §1 intake; no renaming yet, see ``to_canonical``).

    ``source`` is the file's bytes, a path, or a file-like object such as a
    Streamlit ``UploadedFile`` (``.getvalue()``/``.read()`` and ``.name``); a
    string containing a line break is taken as CSV text.  The format follows
    the extension of ``filename`` (or of the source's name) and falls back to
    sniffing the first bytes:

    * CSV / TSV / TXT: delimiter sniffed among ',', ';' and tab; encodings
      UTF-8 (with or without BOM), UTF-16 (Excel's "Unicode text"),
      Windows-1252/Latin-1; an Excel 'sep=;' first line is honoured;
      number-like text becomes numbers, decimal commas ('3,5') included for
      ';'- and tab-separated files; zero-padded codes ('007') stay text;
      'NA', '.', '-', '' and similar are missing.  A line with more values
      than the header raises DataError naming the line.
    * XLSX: ``sheet`` is a sheet name (case-insensitive) or 0-based index;
      default the first sheet.  See ``list_sheets``.
    * SPSS ``.sav``/``.zsav``/``.por``, Stata ``.dta`` (pyreadstat): codes are
      kept as numbers; ``attrs["value_labels"]`` = {column: {code: label}},
      ``attrs["column_labels"]`` = {column: variable label}.
    * Parquet.

    Blank rows and empty unnamed columns are dropped.  ``attrs`` records
    ``source_name``, ``format`` and (text) ``encoding``/``delimiter``,
    (Excel) ``sheet``/``sheets``, (text, Excel) ``header_rows`` — the index
    label ``i`` is the ``i``-th row after the header, so spreadsheet row
    ``i + 1 + header_rows``; errors in ``to_canonical`` quote those numbers
    (SPSS/Stata: case numbers ``i + 1``).

    Raises DataError for an empty or unreadable file, an unknown format, a
    missing sheet, or a file with a header but no data rows.
    """
    data, name = _read_source(source, filename)
    label = name or "The file"
    if len(data) == 0 or not data.strip():
        raise DataError(
            f"{label} is empty." if name is None else f"The file {name} is empty."
        )
    fmt = _format_from_name(name)
    sniffed = _sniff_format(data)
    if fmt is None or (fmt == "xls" and sniffed not in (None, "xls")):
        fmt = sniffed
    if fmt is None:
        raise DataError(
            f"Could not tell the format of {name or 'the file'}. Upload a CSV/TSV/TXT text file, an Excel "
            "workbook (.xlsx), an SPSS (.sav), Stata (.dta) or Parquet file."
        )
    try:
        df = _READERS[fmt](data, name, sheet, fmt)
        used = fmt
    except DataError as first:
        # a renamed file (e.g. an Excel workbook saved as .csv): try what the bytes say
        alt = sniffed
        if (
            alt is None
            or alt == fmt
            or (alt in _TEXT_FORMATS and fmt in _TEXT_FORMATS)
            or alt in ("xls",)
        ):
            raise
        try:
            df = _READERS[alt](data, name, sheet, alt)
            used = alt
        except Exception:  # noqa: BLE001 - report the error of the format the name promised
            raise first from None
        if df.shape[0] == 0 or df.shape[1] < 2:
            raise first from None
    if df.shape[1] == 0:
        raise DataError(f"{name or 'The file'} contains no columns.")
    if df.shape[0] == 0:
        raise DataError(
            f"{name or 'The file'} contains column names ({_fmt_list(df.columns)}) but no data rows."
        )
    df.attrs["source_name"] = name if name else "data"
    df.attrs["format"] = used
    if used in ("csv", "tsv", "xlsx"):
        df.attrs.setdefault("header_rows", 1)
    return df


@_guard("Could not list the sheets")
def list_sheets(source: Any, filename: str | os.PathLike | None = None) -> list[str]:
    """Names of the sheets of an Excel workbook, in order (METHODS §1 intake).

    Returns ``[]`` for formats without sheets (CSV, SPSS, …), so a UI can
    show a sheet picker only when the list is not empty.  Raises DataError
    when the source cannot be read or the workbook is damaged.
    """
    data, name = _read_source(source, filename)
    fmt = _format_from_name(name)
    sniffed = _sniff_format(data)
    if fmt is None or (fmt == "xls" and sniffed not in (None, "xls")):
        fmt = sniffed
    if fmt == "xls":
        _read_unsupported(data, name, None, "xls")
    if fmt != "xlsx":
        return []
    return _workbook_sheets(data)


# ---------------------------------------------------------------------------
# column mapping
# ---------------------------------------------------------------------------

# Candidate names per canonical column, best first (compared after
# normalisation: lower case, separators -> '_'; also with '_' removed).
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "study": (
        "study",
        "study_id",
        "study_name",
        "site",
        "trial",
        "centre",
        "center",
        "dataset",
    ),
    "patient": (
        "patient",
        "patient_id",
        "client",
        "client_id",
        "id",
        "pid",
        "subject",
        "subject_id",
        "case",
        "case_id",
        "participant",
        "participant_id",
        "person",
        "code",
        "vp",
        "vpn",
        "klient",
        "proband",
    ),
    "session": (
        "session",
        "sess",
        "session_nr",
        "session_number",
        "week",
        "time",
        "visit",
        "timepoint",
        "wave",
        "occasion",
        "sitzung",
        "woche",
        "zeitpunkt",
    ),
    "therapist_alliance": (
        "therapist_alliance",
        "wai_t",
        "wai_th",
        "therapist_wai",
        "t_wai",
        "th_wai",
        "wait",
        "calpas_t",
        "calpas_th",
        "wai_therapist",
        "alliance_t",
        "alliance_th",
        "alliance_therapist",
        "t_alliance",
        "th_alliance",
        "wai_sr_t",
        "wai_s_t",
        "hai_t",
        "haq_t",
    ),
    "alliance": (
        "alliance",
        "wai",
        "wai_p",
        "wai_c",
        "wai_sr",
        "wai_s",
        "hai",
        "haq",
        "haq_ii",
        "calpas",
        "calpas_p",
        "srs",
        "tsr",
        "patient_alliance",
        "client_alliance",
        "alliance_p",
        "alliance_c",
        "working_alliance",
        "p_wai",
    ),
    "symptoms": (
        "symptoms",
        "symptom",
        "bdi",
        "bdi_ii",
        "bdi2",
        "phq",
        "phq9",
        "oq",
        "oq45",
        "scl",
        "scl90",
        "gsi",
        "spin",
        "lsas",
        "gad",
        "gad7",
        "hamd",
        "hdrs",
        "madrs",
        "bsi",
        "core",
        "core_om",
        "ors",
        "severity",
    ),
    "therapist": (
        "therapist",
        "therapist_id",
        "th_id",
        "t_id",
        "therapist_code",
        "therapeut",
        "clinician",
        "clinician_id",
    ),
}
_ORDER = (
    "study",
    "patient",
    "session",
    "therapist_alliance",
    "alliance",
    "symptoms",
    "therapist",
)

# extra tokens that may surround a candidate inside a longer name
_ID_EXTRAS = {
    "id",
    "nr",
    "no",
    "num",
    "number",
    "code",
    "name",
    "label",
    "key",
    "idx",
    "index",
}
_SESSION_EXTRAS = _ID_EXTRAS | {"point", "pt"}
_THERAPIST_TOKENS = {
    "t",
    "th",
    "ther",
    "therapist",
    "therapeut",
    "therapists",
    "clinician",
}
_PATIENT_TOKENS = {"p", "c", "pt", "patient", "client"}

_HIGHER_IS_BETTER = (
    "ors",
    "who5",
    "who_5",
    "gaf",
    "swls",
    "qol",
    "wemwbs",
    "mhc",
    "wellbeing",
    "well_being",
)
_HIGHER_IS_WORSE = tuple(
    c
    for c in _CANDIDATES["symptoms"]
    if c not in ("symptoms", "symptom", "ors", "severity")
) + (
    "pcl",
    "ybocs",
    "bai",
    "ces_d",
    "cesd",
    "hads",
    "k10",
    "dass",
    "pss",
    "ids",
    "qids",
    "pdss",
    "asi",
    "pswq",
)


def _name_score(canonical: str, name: str) -> tuple[int, int] | None:
    """How well a normalised column name fits a canonical column (None: no fit)."""
    if not name:
        return None
    tokens = name.split("_")
    comp = _compact(name)
    best: tuple[int, int] | None = None
    n_cand = len(_CANDIDATES[canonical])
    for rank, cand in enumerate(_CANDIDATES[canonical]):
        ctoks = cand.split("_")
        score: tuple[int, int] | None = None
        if name == cand or comp == _compact(cand):
            score = (4, n_cand - rank)
        elif tokens[: len(ctoks)] == ctoks and len(tokens) > len(ctoks):
            rest = tokens[len(ctoks) :]
            if canonical in ("patient", "therapist", "study"):
                if set(rest) <= _ID_EXTRAS:
                    score = (3, len(ctoks))
            elif canonical == "session":
                if set(rest) <= _SESSION_EXTRAS:
                    score = (3, len(ctoks))
            elif (
                canonical == "alliance"
                and set(rest) & _THERAPIST_TOKENS
                or canonical == "therapist_alliance"
                and set(rest) & _PATIENT_TOKENS
            ):
                score = None
            else:
                score = (2, len(ctoks))
        else:
            # candidate tokens appear contiguously later in the name ('mean_wai', 'pre_bdi')
            for start in range(1, len(tokens) - len(ctoks) + 1):
                if tokens[start : start + len(ctoks)] == ctoks:
                    others = set(tokens[:start] + tokens[start + len(ctoks) :])
                    if canonical in ("patient", "therapist", "study"):
                        ok = others <= _ID_EXTRAS
                    elif canonical == "session":
                        ok = others <= _SESSION_EXTRAS
                    elif canonical == "alliance":
                        ok = not (others & _THERAPIST_TOKENS)
                    elif canonical == "therapist_alliance":
                        ok = not (others & _PATIENT_TOKENS)
                    else:
                        ok = True
                    if ok:
                        score = (1, len(ctoks))
                    break
        if score is not None and (best is None or score > best):
            best = score
    return best


_WIDE_RE = re.compile(r"^(.*?[A-Za-z].*?)([_.\- ]?)([0-9]+)$")


def _wide_groups(columns: Sequence[Any]) -> dict[tuple[str, str], dict[int, int]]:
    """Columns that look like one variable per session.

    Returns ``{(stub lower-case, separator): {session: column position}}`` for
    groups of at least two distinct session numbers.
    """
    groups: dict[tuple[str, str], dict[int, int]] = {}
    for pos, col in enumerate(columns):
        m = _WIDE_RE.match(str(col).strip())
        if not m:
            continue
        stub, sep, num = m.group(1), m.group(2), int(m.group(3))
        key = (stub.strip().lower(), sep)
        groups.setdefault(key, {})
        groups[key].setdefault(num, pos)
    return {k: v for k, v in groups.items() if len(v) >= 2}


@_guard("Could not guess the column mapping")
def suggest_mapping(df: pd.DataFrame) -> dict[str, Any]:
    """Best-guess column for each canonical name (METHODS §1), or None.

    Names are compared case-insensitively after turning separators into
    underscores ('WAI-SR' -> 'wai_sr', 'PatientID' -> 'patient_id'): exact
    matches to common names (id, client, pid, subject, case; sess, week, time,
    visit; wai, hai, haq, calpas, srs, tsr; wai_t, therapist_wai, calpas_t;
    bdi, phq9, oq45, scl, gsi, spin, lsas, gad, hamd, ors; therapist, th_id;
    study, site, trial …) beat names that start with one ('wai_sr_total'),
    which beat names that contain one ('mean_wai').  Columns that belong to a
    wide block (wai_1, wai_2, …) are not proposed; see ``detect_wide``.  No
    column is proposed for two canonical names.

    Returns ``{canonical: column label or None}`` for all seven canonical
    names.  Raises DataError if ``df`` is not a DataFrame.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError("suggest_mapping needs a table (DataFrame).")
    wide_pos = {p for g in _wide_groups(list(df.columns)).values() for p in g.values()}
    candidates: list[tuple[tuple[int, int], int, int, str, Any]] = []
    seen_names: set[str] = set()
    for pos, col in enumerate(df.columns):
        if pos in wide_pos and not _is_canonical_exact(col):
            continue
        norm = _normalize_name(col)
        if norm in seen_names:
            continue
        seen_names.add(norm)
        for c_rank, canonical in enumerate(_ORDER):
            score = _name_score(canonical, norm)
            if score is not None:
                candidates.append((score, -c_rank, -pos, canonical, col))
    candidates.sort(key=lambda t: (t[0], t[1], t[2]), reverse=True)
    mapping: dict[str, Any] = {c: None for c in CANONICAL_COLUMNS}
    used: set[int] = set()
    for _score, _crank, negpos, canonical, col in candidates:
        if mapping[canonical] is not None or -negpos in used:
            continue
        mapping[canonical] = col
        used.add(-negpos)
    return mapping


def _is_canonical_exact(col: Any) -> bool:
    return _normalize_name(col) in CANONICAL_COLUMNS


def suggest_higher_is_better(
    col_name: Any, df: pd.DataFrame | None = None
) -> bool | None:
    """Whether higher scores on the instrument named by ``col_name`` mean *better* (METHODS §1).

    True for well-being style measures such as the ORS (Outcome Rating Scale),
    WHO-5, GAF, SWLS; False for known symptom measures where higher is worse
    (BDI, PHQ, OQ-45, SCL/GSI, SPIN, LSAS, GAD, HAMD, …); None when unknown.
    Pass the frame as ``df`` after ``wide_to_long``: a column it renamed
    (``ORS_1 … ORS_5`` -> 'symptoms') is then judged by its original prefix.
    Never raises.
    """
    with contextlib.suppress(Exception):  # metadata we cannot read is ignored
        stubs = df.attrs.get("wide_stubs") if isinstance(df, pd.DataFrame) else None
        if isinstance(stubs, dict):
            for stub, target in stubs.items():
                if str(target) == str(col_name) and str(stub) != str(col_name):
                    return suggest_higher_is_better(stub)
    try:
        norm = _normalize_name(col_name)
    except Exception:  # noqa: BLE001 - a name we cannot read is simply unknown
        return None
    if not norm:
        return None
    tokens = norm.split("_")
    comp = _compact(norm)

    def hit(names: Iterable[str]) -> bool:
        for n in names:
            c = _compact(n)
            if (
                comp == c
                or tokens[0] == n
                or tokens[0] == c
                or comp.startswith(c)
                and len(c) >= 3
                and comp[len(c) :].isdigit()
            ):
                return True
            if any(t == n for t in tokens):
                return True
        return False

    if hit(_HIGHER_IS_BETTER):
        return True
    if hit(_HIGHER_IS_WORSE):
        return False
    return None


# ---------------------------------------------------------------------------
# canonical form
# ---------------------------------------------------------------------------


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
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError("to_canonical needs a table (DataFrame).")
    cmap = _clean_mapping(df, mapping)
    positions = {k: _column_position(df, col) for k, col in cmap.items()}
    if study is not None and not isinstance(study, str):
        study = str(study)
    if study is not None and not study.strip():
        study = None
    # work on positions: the caller's index may repeat labels
    src = df.set_axis(pd.RangeIndex(len(df)), axis=0)
    messages: list[str] = []
    problems: list[str] = []
    out = pd.DataFrame(index=src.index)

    if "study" in cmap:
        st = _as_id(src.iloc[:, positions["study"]])
        fill = study.strip() if study else DEFAULT_STUDY
        n_missing = int(st.isna().sum())
        if n_missing:
            st = st.fillna(fill)
            messages.append(
                f"{_plural(n_missing, 'row')} without a study label were given the label {fill!r}."
            )
        out["study"] = st.astype("str")
        study_from = "column"
    else:
        out["study"] = pd.Series(
            study.strip() if study else DEFAULT_STUDY, index=src.index, dtype="str"
        )
        study_from = "argument" if study else "default"

    if "patient" in cmap:
        out["patient"] = _as_id(src.iloc[:, positions["patient"]])

    session_missing = None
    if "session" in cmap:
        raw = src.iloc[:, positions["session"]]
        vals, bad, missing = _parse_sessions(raw, allow_labels=True)
        b = bad.to_numpy()
        if b.any():
            labels = list(df.index[b])
            problems.append(
                f"Column {str(cmap['session'])!r} (session) must hold whole numbers ≥ 0, but {_row_phrase(df, labels)} "
                f"contain{'s' if len(labels) == 1 else ''} {_bad_values_phrase(raw, b)}."
            )
        out["session"] = vals
        session_missing = missing.to_numpy()

    for canonical in NUMERIC_COLUMNS:
        if canonical in cmap:
            vals, bad = _parse_numbers(
                src.iloc[:, positions[canonical]], allow_comma=True
            )
            b = bad.to_numpy()
            if b.any():
                problems.append(
                    _numeric_problem(df, src, positions[canonical], canonical, b)
                )
            out[canonical] = vals

    if "therapist" in cmap:
        out["therapist"] = _as_id(src.iloc[:, positions["therapist"]])

    keep_rows = np.ones(len(src), dtype=bool)
    if session_missing is not None and session_missing.any():
        score_cols = [c for c in NUMERIC_COLUMNS if c in out]
        has_data = (
            out[score_cols].notna().any(axis=1).to_numpy()
            if score_cols
            else np.zeros(len(out), dtype=bool)
        )
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
            messages.append(
                f"Dropped {_plural(len(labels), 'row')} without a session number and without scores "
                f"({_row_phrase(df, labels)})."
            )
            keep_rows &= ~empty

    if problems:
        raise DataError("The data cannot be converted:\n- " + "\n- ".join(problems))

    out = out.loc[keep_rows]
    if "session" in out:
        out["session"] = out["session"].astype("int64")

    # extra columns, by position (labels may repeat or clash with canonical names)
    mapped_pos = set(positions.values())
    if keep_extra:
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

    flipped = False
    flip_message = None
    if not symptoms_higher_is_worse and "symptoms" in out:
        g = out.groupby("study", sort=False)["symptoms"]
        lo, hi = g.transform("min"), g.transform("max")
        out["symptoms"] = hi + lo - out["symptoms"]
        flipped = True
        ranges = []
        for st_label, sub in out.assign(_lo=lo, _hi=hi).groupby("study", sort=False):
            a, z = sub["_lo"].iloc[0], sub["_hi"].iloc[0]
            ranges.append(
                f"{st_label}: {a:g}–{z:g}" if pd.notna(a) else f"{st_label}: no values"
            )
        source = str(cmap["symptoms"])
        stubs = df.attrs.get("wide_stubs")
        for stub, target in stubs.items() if isinstance(stubs, dict) else []:
            if str(target) == source:
                source = f"{source}, from the {stub}_… columns"
        flip_message = (
            f"Symptom scores (column {source!r}) were reversed because higher meant better: "
            "new = max + min − old within each study, so that higher now means more severe "
            f"(observed range {'; '.join(ranges)})."
        )
        messages.append(flip_message)

    canon = [c for c in CANONICAL_COLUMNS if c in out]
    rest = [c for c in out.columns if c not in CANONICAL_COLUMNS]
    out = _sort_canonical(out[canon + rest])
    attrs = {k: v for k, v in df.attrs.items() if k != "header_rows"}
    attrs.update(
        mapping={k: str(v) for k, v in cmap.items()},
        study_from=study_from,
        symptoms_flipped=flipped,
        symptoms_flip_message=flip_message,
        messages=messages,
    )
    out.attrs = attrs
    return out


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
    keys: dict[str, pd.Series] = {}
    if "study" in df:
        keys["__k_study"] = _natural_rank(df["study"])
    if "patient" in df:
        keys["__k_patient"] = _natural_rank(df["patient"])
    if "session" in df:
        keys["__k_session"] = pd.to_numeric(df["session"], errors="coerce")
    if not keys:
        return df.reset_index(drop=True)
    order = pd.DataFrame(keys, index=df.index).reset_index(drop=True)
    pos = order.sort_values(
        list(keys), kind="mergesort", na_position="last"
    ).index.to_numpy()
    out = df.iloc[pos].reset_index(drop=True)
    out.attrs = dict(df.attrs)
    return out


# ---------------------------------------------------------------------------
# wide -> long
# ---------------------------------------------------------------------------


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
def wide_to_long(
    df: pd.DataFrame,
    id_col: Any,
    stubs: Mapping[str, str] | Sequence[str],
    sep: str = "_",
    session_col: str = "session",
    dropna: bool = True,
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

    Raises DataError when the id column is missing, has empty or repeated
    ids (naming them), when a stub matches no column, or when output names
    clash with existing columns.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError("wide_to_long needs a table (DataFrame).")
    if id_col is None:
        raise DataError(
            "Choose the column that identifies the patients (the id column)."
        )
    id_pos = _column_position(df, _resolve_column(df, id_col, "patient id"))
    if isinstance(stubs, Mapping):
        stub_map = {
            str(k).strip(): str(v).strip() for k, v in stubs.items() if v is not None
        }
    elif isinstance(stubs, (list, tuple)):
        stub_map = {str(x).strip(): str(x).strip() for x in stubs}
    else:
        raise DataError(
            "stubs must be a dictionary {prefix: name} or a list of prefixes."
        )
    stub_map = {k: (v or k) for k, v in stub_map.items() if k}
    if not stub_map:
        raise DataError(
            "Name at least one column prefix (e.g. 'wai' for wai_1, wai_2, …)."
        )
    if not isinstance(session_col, str) or not session_col.strip():
        raise DataError("The session column needs a name.")
    sep = "" if sep is None else str(sep)
    targets = list(stub_map.values())
    if len(set(targets)) != len(targets):
        raise DataError(
            f"Two prefixes are given the same output name: {_fmt_list(targets)}."
        )

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
    kept_names = _unique_names(
        [str(df.columns[j]).strip() or f"column_{j + 1}" for j in kept]
    )
    id_name = str(df.columns[id_pos])
    out_names = [id_name, session_col, *targets]
    clash = sorted(set(out_names) & set(kept_names)) + sorted(
        n for n, k in Counter(out_names).items() if k > 1
    )
    if clash:
        raise DataError(
            f"The reshaped data would have two columns named {_fmt_list(clash)}; rename that column "
            "in the file or choose other output names."
        )

    base = df.set_axis(pd.RangeIndex(len(df)), axis=0)
    ids = _as_id(base.iloc[:, id_pos])
    if ids.isna().any():
        labels = list(df.index[ids.isna().to_numpy()])
        raise DataError(
            f"The id column {id_name!r} is empty in {_row_phrase(df, labels)}."
        )
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        raise DataError(
            f"In a wide file each patient has one row, but these ids appear more than once in {id_name!r}: "
            f"{_fmt_list(pd.unique(dup))}."
        )

    sessions = sorted({k for cols in colmaps.values() for k in cols})
    n, m = len(base), len(sessions)
    rows = np.repeat(np.arange(n), m)
    sess = np.tile(np.asarray(sessions, dtype="int64"), n)
    values: dict[str, pd.Series] = {}
    for stub, target in stub_map.items():
        cols = colmaps[stub]
        mat = np.empty((n, m), dtype=object)
        mat[:] = np.nan
        for i, k in enumerate(sessions):
            if k in cols:
                mat[:, i] = base.iloc[:, cols[k]].astype(object).to_numpy()
        series = pd.Series(mat.reshape(-1), dtype=object)
        if all(_is_real_numeric_dtype(base.iloc[:, j]) for j in cols.values()):
            series = pd.to_numeric(series, errors="coerce").astype("float64")
        else:
            series = series.infer_objects()
            if (
                pd.api.types.is_object_dtype(series.dtype)
                and series.map(lambda v: isinstance(v, str) or _is_missing(v)).all()
            ):
                series = series.astype("str")
        values[target] = series
    keep = np.ones(n * m, dtype=bool)
    if dropna and values:
        keep = np.column_stack([v.notna().to_numpy() for v in values.values()]).any(
            axis=1
        )
    rows, sess = rows[keep], sess[keep]
    result = pd.DataFrame({id_name: base.iloc[rows, id_pos].to_numpy()})
    result[id_name] = base.iloc[rows, id_pos].reset_index(drop=True)
    result[session_col] = sess
    for target, series in values.items():
        result[target] = series[keep].reset_index(drop=True)
    for j, name in zip(kept, kept_names):
        result[name] = base.iloc[rows, j].reset_index(drop=True)
    result.attrs = {k: v for k, v in df.attrs.items() if k != "header_rows"}
    result.attrs["wide_stubs"] = dict(stub_map)
    return result


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


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# combine
# ---------------------------------------------------------------------------


def _stem(name: Any) -> str | None:
    if not name or not isinstance(name, str):
        return None
    stem = Path(name).stem.strip()
    return stem or None


@_guard("Could not combine the data sets")
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
    if isinstance(frames, pd.DataFrame):
        frames = [frames]
    try:
        frames = list(frames)
    except TypeError:
        raise DataError("combine needs a list of tables.") from None
    if not frames:
        raise DataError("There is nothing to combine: the list of data sets is empty.")
    if labels is not None:
        if isinstance(labels, str):
            labels = [labels]
        labels = list(labels)
        if len(labels) != len(frames):
            raise DataError(
                f"{len(frames)} data sets but {len(labels)} labels were given."
            )
    used: set[str] = set()
    parts: list[pd.DataFrame] = []
    messages: list[str] = []
    sources: list[str] = []
    flipped = False
    for i, f in enumerate(frames):
        if not isinstance(f, pd.DataFrame):
            raise DataError(f"Data set {i + 1} is a {type(f).__name__}, not a table.")
        src = f.attrs.get("source_name")
        what = f"Data set {i + 1}" + (f" ({src})" if src else "")
        g = f.copy()
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
        explicit = (
            str(explicit).strip()
            if explicit is not None and str(explicit).strip()
            else None
        )
        has_study = (
            "study" in g
            and f.attrs.get("study_from") != "default"
            and g["study"].notna().any()
        )
        fallback = _stem(src) or f"Study {i + 1}"
        if has_study:
            st = _as_id(g["study"]).fillna(explicit or fallback)
            if explicit:
                if st.nunique() <= 1:
                    st = pd.Series(explicit, index=g.index, dtype="str")
                else:
                    st = (explicit + ": " + st).astype("str")
        else:
            st = pd.Series(explicit or fallback, index=g.index, dtype="str")
        g["study"] = st
        g["patient"] = _as_id(g["patient"])
        if "therapist" in g:
            g["therapist"] = _as_id(g["therapist"])
        vals, bad, missing = _parse_sessions(g["session"], allow_labels=False)
        if bad.any() or missing.any():
            rows = list(g.index[(bad | missing).to_numpy()])
            raise DataError(
                f"{what}: session is missing or not a whole number ≥ 0 in rows {_fmt_list(rows)}."
            )
        g["session"] = vals.astype("int64")
        for c in NUMERIC_COLUMNS:
            if c in g:
                v, b = _parse_numbers(g[c], allow_comma=True)
                if b.any():
                    bad = b.to_numpy()
                    raise DataError(
                        f"{what}: column {c!r} must hold numbers, but rows {_fmt_list(list(g.index[bad]))} "
                        f"contain {_bad_values_phrase(g[c], bad)}."
                    )
                g[c] = v
        # label clashes with earlier data sets
        rename = {}
        for s in pd.unique(g["study"]):
            if s in used:
                k = 2
                while f"{s} ({k})" in used or f"{s} ({k})" in set(g["study"]):
                    k += 1
                rename[s] = f"{s} ({k})"
                messages.append(
                    f"{what}: the study label {s!r} was already used and became {rename[s]!r}."
                )
        if rename:
            g["study"] = g["study"].replace(rename).astype("str")
        used.update(pd.unique(g["study"]))
        flipped = flipped or bool(f.attrs.get("symptoms_flipped"))
        msg = f.attrs.get("symptoms_flip_message")
        if msg:
            messages.append(f"{what}: {msg}")
        sources.append(src or f"Data set {i + 1}")
        g.attrs = {}
        parts.append(g)
    out = pd.concat(parts, ignore_index=True, sort=False)
    canon = [c for c in CANONICAL_COLUMNS if c in out]
    rest = [c for c in out.columns if c not in CANONICAL_COLUMNS]
    out = out[canon + rest]
    for c in ("study", "patient", "therapist"):
        if c in out:
            out[c] = _as_id(out[c])
    out = _sort_canonical(out)
    out.attrs = {
        "source_name": "; ".join(sources),
        "sources": sources,
        "symptoms_flipped": flipped,
        "messages": messages,
        "study_from": "combined",
    }
    return out


# ---------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------


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
    work = df.loc[:, keep].copy()
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

    def pct_missing(mask: pd.Series) -> float:
        return float(100.0 * (1.0 - mask.mean())) if len(mask) else float("nan")

    rows = []
    for s, idx in work.groupby("study", sort=False).groups.items():
        sub = work.loc[idx]
        per_pat = sub.dropna(subset=["patient"]).groupby("patient")["session"].nunique()
        rows.append(
            {
                "study": s,
                "n_patients": int(sub["patient"].nunique()),
                "n_rows": len(sub),
                "sessions_median": float(per_pat.median())
                if len(per_pat)
                else float("nan"),
                "sessions_min": int(per_pat.min()) if len(per_pat) else 0,
                "sessions_max": int(per_pat.max()) if len(per_pat) else 0,
                "pct_missing_alliance": pct_missing(obs["alliance"].loc[idx]),
                "pct_missing_symptoms": pct_missing(obs["symptoms"].loc[idx]),
                "pct_missing_therapist_alliance": pct_missing(
                    obs["therapist_alliance"].loc[idx]
                ),
            }
        )
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
    ).dropna(subset=["session"])
    per_session = sess.groupby(["study", "session"], sort=False).sum().reset_index()
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
        work.dropna(subset=["patient"])
        .groupby(["study", "patient"])["session"]
        .nunique()
    )
    totals = {
        "n_studies": int(work["study"].nunique()),
        "n_patients": len(per_pat_all),
        "n_rows": len(work),
        "sessions_median": float(per_pat_all.median())
        if len(per_pat_all)
        else float("nan"),
        "sessions_min": int(per_pat_all.min()) if len(per_pat_all) else 0,
        "sessions_max": int(per_pat_all.max()) if len(per_pat_all) else 0,
        "pct_missing_alliance": pct_missing(obs["alliance"]),
        "pct_missing_symptoms": pct_missing(obs["symptoms"]),
        "pct_missing_therapist_alliance": pct_missing(obs["therapist_alliance"]),
    }
    return DataSummary(per_study=per_study, per_session=per_session, totals=totals)


# ---------------------------------------------------------------------------
# template
# ---------------------------------------------------------------------------


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
