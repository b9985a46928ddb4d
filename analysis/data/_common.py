"""Shared pieces of the data-intake package: constants, DataError, small helpers."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

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
    """Bad or unreadable input data; the message is meant for the researcher.

    >>> from analysis.data import require_canonical
    >>> try:
    ...     require_canonical([1, 2])
    ... except DataError as exc:
    ...     print(exc)
    Expected the data as a table in the canonical long format (METHODS §1), not a list.
    """


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


_DIGIT_RUNS = re.compile(r"([0-9]+)")


def _natural_key(value: Any) -> tuple:
    parts = _DIGIT_RUNS.split(str(value))
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
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    uniq = list(uniq)  # each distinct value ranked once, then spread over the rows by its code
    order = sorted(range(len(uniq)), key=lambda i: (_natural_key(uniq[i]), str(uniq[i])))
    rank = np.empty(len(uniq) + 1, dtype="float64")
    rank[np.asarray(order, dtype=np.intp)] = np.arange(len(uniq), dtype="float64")
    rank[-1] = np.nan  # the code -1 (missing) indexes the last slot
    return pd.Series(rank[codes], index=values.index)


def _normalize_name(name: Any) -> str:
    """Lower-case, accents folded ('Thérapeute' -> 'therapeute', 'Größe' -> 'grosse'), non-alphanumerics
    -> '_', camelCase split ('PatientID' -> 'patient_id')."""
    text = unicodedata.normalize("NFKD", str(name).strip().replace("ß", "ss"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
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
