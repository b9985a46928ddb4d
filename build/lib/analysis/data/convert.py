"""Value conversion: numbers (decimal commas, missing-value codes), sessions, identifiers."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.data._common import (
    _NA_LOWER,
    _NUMBER_DOT_RE,
    _NUMBER_RE,
    _SESSION_LABEL_RE,
    _is_real_numeric_dtype,
    _is_text_dtype,
)


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
    if isinstance(s.dtype, pd.StringDtype):  # text already (the usual case): strip, blanks -> missing
        t = s.astype("str").str.strip()
        blank = (t == "").to_numpy(dtype=bool, na_value=False)
        return t.mask(blank) if blank.any() else t  # (no second copy of a large column without blanks)
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

