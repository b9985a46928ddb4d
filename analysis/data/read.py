"""Read data files: CSV/TSV/TXT, XLSX, SPSS, Stata, Parquet (METHODS §1 intake)."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.data._common import (
    _LEADING_ZERO_RE,
    _NA_STRINGS,
    _NUMBER_DOT_RE,
    _NUMBER_RE,
    _TEXT_FORMATS,
    DataError,
    _fmt_list,
    _guard,
    _is_text_dtype,
    _plural,
    _py,
    _unique_names,
)
from analysis.data.convert import _parse_numbers, _str_mask

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


def _all_whole(v: np.ndarray) -> bool:
    """Every value a finite whole number that int64 holds exactly (the column can be integers)."""
    return bool(np.isfinite(v).all() and (v == np.round(v)).all() and (np.abs(v) < 2**53).all())


def _tidy_text_columns(df: pd.DataFrame, allow_comma: bool) -> pd.DataFrame:
    """Strip text, blank -> missing, convert number-like text columns to numbers.

    Zero-padded codes ('007') stay text: they are identifiers.  Decimal commas
    are converted when ``allow_comma`` (not for comma-delimited files, where a
    quoted '1,234' is more likely a thousands separator).
    """
    if df.shape[1] and df.attrs.get("_all_text") and all(
            pd.api.types.is_object_dtype(t) or isinstance(t, pd.StringDtype) for t in df.dtypes):
        # straight from the text parser: every cell is a string
        cols = _tidy_string_block(df, allow_comma)
        out = pd.DataFrame(dict(enumerate(cols)), index=df.index)
        out.columns = df.columns
        return out
    strings = [j for j in range(df.shape[1]) if isinstance(df.iloc[:, j].dtype, pd.StringDtype)]
    if strings:
        for j, col in zip(strings, _tidy_string_block(df.iloc[:, strings], allow_comma)):
            df.isetitem(j, col)
    for j in range(df.shape[1]):
        s = df.iloc[:, j]
        if j in strings or not _is_text_dtype(s):
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
        if _all_whole(nums.to_numpy()):
            df.isetitem(j, nums.astype("int64"))
        else:
            df.isetitem(j, nums)
    return df


def _tidy_string_block(block: pd.DataFrame, allow_comma: bool) -> list[pd.Series]:
    """``_tidy_text_columns`` for columns of the pandas text dtype, all at once.

    Each column is stripped, missing-value codes become missing, and a column
    whose present values are all numbers (no zero-padded codes, no
    infinities) becomes int64 (whole numbers, nothing missing) or float64.
    The string operations run over many cells at once, so a wide file with
    thousands of columns costs about as much as a long one with as many cells;
    they run over at most :data:`_CELLS_PER_PASS` cells (or one column) at a
    time, so a long file's intermediate copies stay the size of one column.
    """
    n, k = block.shape
    step = max(1, _CELLS_PER_PASS // max(n, 1))
    out: list[pd.Series] = []
    for a in range(0, k, step):
        out.extend(_tidy_string_cells(block.iloc[:, a:a + step], allow_comma))
    return out


def _to_float(text: pd.Series) -> np.ndarray:
    """Number-like text (checked against the number pattern; missing cells allowed) as float64.

    Arrow-backed text is cast by Arrow (correctly rounded, like Python's ``float``), without the
    Python object per cell that ``pd.to_numeric`` makes of it (0.4 GB for 5 million cells)."""
    if isinstance(text.dtype, pd.StringDtype) and text.dtype.storage == "pyarrow":
        import pyarrow as pa

        try:
            return np.asarray(pa.array(text.array).cast(pa.float64()).to_numpy(zero_copy_only=False),
                              dtype="float64")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError):
            pass
    return pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


#: cells converted in one pass of :func:`_tidy_string_block` (bounds its working memory)
_CELLS_PER_PASS = 1_000_000


def _tidy_string_cells(block: pd.DataFrame, allow_comma: bool) -> list[pd.Series]:
    """:func:`_tidy_string_block` for one group of columns, all cells at once."""
    n, k = block.shape
    if k == 1 and isinstance(block.dtypes.iloc[0], pd.StringDtype):  # no detour through Python objects
        flat = pd.Series(block.iloc[:, 0].array, dtype="str").reset_index(drop=True)
    else:
        flat = pd.Series(block.to_numpy(dtype=object).ravel(order="F"), dtype="str")
    t = flat.str.strip()
    t = t.mask(t.isin(_NA_STRINGS))
    present = t.notna().to_numpy(dtype=bool).reshape((n, k), order="F")
    zero_pad = t.str.fullmatch(_LEADING_ZERO_RE).fillna(False).to_numpy(dtype=bool).reshape((n, k), order="F")
    pattern = _NUMBER_RE if allow_comma else _NUMBER_DOT_RE
    number = t.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool).reshape((n, k), order="F")
    candidates = present.any(axis=0) & ~(zero_pad & present).any(axis=0) & (number | ~present).all(axis=0)
    flat_nums = np.full(n * k, np.nan)
    if candidates.any():
        cells = np.repeat(candidates, n)
        text = t if candidates.all() else t[cells]  # (no copy of a column that is all candidates)
        if allow_comma:  # without decimal commas the pattern admits no comma: nothing to replace
            text = text.str.replace(",", ".", regex=False)
        flat_nums[cells] = _to_float(text)
        del text
    nums = flat_nums.reshape((n, k), order="F")
    out = []
    for j in range(k):
        pres = present[:, j]
        if not pres.any():
            out.append(pd.Series(np.nan, index=block.index, dtype="float64"))
            continue
        arr = nums[:, j]
        if not candidates[j] or np.isinf(arr).any():
            out.append(pd.Series(t.array[j * n:(j + 1) * n], index=block.index, dtype="str"))
        elif pres.all() and _all_whole(arr):
            out.append(pd.Series(arr.astype("int64"), index=block.index))
        else:
            out.append(pd.Series(arr, index=block.index, dtype="float64"))
    return out


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
                        if _all_whole(col.to_numpy()):
                            df.isetitem(j, col.astype("int64"))
    return df


def _head_lines(data: bytes, nrows: int) -> bytes:
    """The bytes of the first lines of a text file: enough for the header, a few blank or
    comment lines and ``nrows`` data rows (UTF-16 files, whose line ends are two bytes, are kept whole)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _utf16_without_bom(data):
        return data
    end = -1
    for _ in range(int(nrows) + 20):
        end = data.find(b"\n", end + 1)
        if end < 0:
            return data
    return data[: end + 1]


def _read_text(data: bytes, name: str | None, sheet: Any, fmt: str, nrows: int | None = None) -> pd.DataFrame:
    if nrows is not None:
        data = _head_lines(data, nrows)
    text, encoding = _decode(data)
    if "\x00" in text:
        raise DataError(
            f"{name or 'The file'} is not a text file (it contains binary data); "
            "save it as CSV, Excel (.xlsx), SPSS (.sav), Stata (.dta) or Parquet."
        )
    if not text or text.isspace():  # (not text.strip(): no copy of a large file's text)
        raise DataError(f"The file {name or ''} is empty.".replace("  ", " "))
    first_end = text.find("\n")
    first = (text if first_end < 0 else text[:first_end]).strip()
    hint = re.fullmatch(r"sep=(.)", first.strip('"'), flags=re.IGNORECASE)
    if hint and hint.group(1) in (",", ";", "\t", "|"):
        # Excel's 'sep=;' first line: use it and blank the line (keeps line numbers)
        sep = hint.group(1)
        text = "" if first_end < 0 else text[first_end:]
        raw = None
    else:
        sep = _sniff_delimiter(text, prefer_tab=(fmt == "tsv"))
        raw = (data, encoding)
    df, header_line = _parse_delimited(text, sep, name, raw)
    df.attrs["_all_text"] = True
    df = _finish_frame(df, allow_comma=(sep != ","))
    df.attrs.pop("_all_text", None)
    df.attrs["encoding"] = encoding
    df.attrs["delimiter"] = sep
    df.attrs["header_rows"] = header_line
    return df


_LEADING_BLANK_LINES = re.compile(r"(?:[ \t]*(?:\r\n|\n|\r))*")


def _parse_delimited_fast(text: str, sep: str, raw: tuple[bytes, str] | None = None) -> tuple[pd.DataFrame, int] | None:
    """``_parse_delimited`` with pandas' C parser (several times faster on large files), for the
    regular case: no line longer than the header, header on one line. None sends every other
    case (and every parser complaint) to the line-by-line reader, which names the offending line.

    Cells come back as pandas text columns (Arrow-backed when pyarrow is installed), never as one
    Python object per cell: a 5-million-row file would otherwise hold 25 million Python strings at
    once. ``raw`` (the file's bytes and the encoding they decoded with) lets the parser read the
    bytes themselves for the single-byte and UTF-8 encodings, instead of a copy of ``text`` that
    ``io.StringIO`` keeps at four bytes per character.
    """
    lead = _LEADING_BLANK_LINES.match(text)
    body = text[lead.end():] if lead.end() else text
    if not body or body.isspace():
        return None
    encoding = None
    if raw is not None and raw[1] in _BYTE_ENCODINGS:
        data, enc = raw
        # the leading blank lines are ASCII (one byte per character in every encoding here)
        offset = lead.end() + (3 if enc == "utf-8-sig" else 0)
        source, encoding = io.BytesIO(data[offset:] if offset else data), _BYTE_ENCODINGS[enc]
    else:
        source = io.StringIO(body)
    # text columns, except for a wide file (thousands of columns, few rows each: one block of Python
    # strings is quicker there than thousands of small Arrow arrays)
    first_line = body[:body.find("\n")] if "\n" in body[:1_000_000] else body[:1_000_000]
    dtype = object if first_line.count(sep) >= _WIDE_COLUMNS else "str"
    try:
        f = pd.read_csv(source, sep=sep, header=None, dtype=dtype, na_filter=False,
                        keep_default_na=False, skip_blank_lines=False, skipinitialspace=True, quotechar='"',
                        engine="c", encoding=encoding)
    except Exception:  # noqa: BLE001 - the line-by-line reader reports it
        return None
    finally:
        del source
    if f.shape[0] == 0:
        return None
    raw_header = ["" if pd.isna(x) else str(x) for x in f.iloc[0].tolist()]
    if any("\n" in h or "\r" in h for h in raw_header):
        return None
    header = [h.strip() for h in raw_header]
    if not any(header):
        return None
    if f.shape[0] > 1 and f.iloc[1].isna().any():  # a short first data row: the line reader pads it
        return None
    if dtype is object:  # one block of strings, as the line reader makes it
        cells = f.iloc[1:].to_numpy(dtype=object)
        frame = pd.DataFrame(cells, index=pd.RangeIndex(cells.shape[0]), dtype=object, copy=False)
        frame.columns = header
        lines = lead.group(0)
        return frame, lines.count("\n") + lines.count("\r") - lines.count("\r\n") + 1
    frame = f.iloc[1:]
    frame.index = pd.RangeIndex(frame.shape[0])
    frame.columns = header
    lines = lead.group(0)
    return frame, lines.count("\n") + lines.count("\r") - lines.count("\r\n") + 1


#: from this many separators in the header line on, a file is read as one block of Python strings
_WIDE_COLUMNS = 500

#: encodings whose bytes pandas' C parser reads directly (name for pandas); others are read from the text
_BYTE_ENCODINGS = {"utf-8": "utf-8", "utf-8-sig": "utf-8", "cp1252": "cp1252", "latin-1": "latin-1"}


def _parse_delimited(text: str, sep: str, name: str | None,
                     raw: tuple[bytes, str] | None = None) -> tuple[pd.DataFrame, int]:
    """Split delimited text into a frame of strings; the first non-blank line is the header.

    Short lines are padded with missing values; a line with more (non-empty)
    values than the header raises DataError naming the line.  Blank lines
    become empty rows so that index label i is the i-th line after the header.
    Returns the frame and the line number of the header.
    """
    fast = _parse_delimited_fast(text, sep, raw)
    return fast if fast is not None else _parse_delimited_lines(text, sep, name)


def _parse_delimited_lines(text: str, sep: str, name: str | None) -> tuple[pd.DataFrame, int]:
    """``_parse_delimited`` line by line (Python's csv module): every case, exact line numbers in errors."""
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
    except csv.Error as exc:
        raise DataError(
            f"Could not read {name or 'the file'} as a {shown}-separated table near line "
            f"{reader.line_num}: {exc}."
        ) from exc
    if header is None:
        raise DataError(f"{name or 'The file'} has no columns.")
    # one object block of strings: cheap to build also for thousands of columns
    cells = np.empty((len(records), len(header)), dtype=object)
    if records:
        cells[:] = records
    frame = pd.DataFrame(cells, index=pd.RangeIndex(len(records)), dtype=object, copy=False)
    frame.columns = header
    return frame, header_line


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


def _read_xlsx(data: bytes, name: str | None, sheet: Any, fmt: str, nrows: int | None = None) -> pd.DataFrame:
    names = _workbook_sheets(data)
    target = _choose_sheet(names, sheet)
    try:
        df = pd.read_excel(io.BytesIO(data), sheet_name=target, engine="openpyxl", nrows=nrows)
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


def _read_sav(data: bytes, name: str | None, sheet: Any, fmt: str, nrows: int | None = None) -> pd.DataFrame:
    import pyreadstat

    reader = pyreadstat.read_por if fmt == "por" else pyreadstat.read_sav
    try:
        df, meta = reader(io.BytesIO(data), row_limit=int(nrows or 0))
    except Exception as exc:
        raise DataError(
            f"Could not read {name or 'the file'} as an SPSS file: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}."
        ) from exc
    df = _finish_frame(df, allow_comma=None)
    return _readstat_meta(df, meta)


def _read_dta(data: bytes, name: str | None, sheet: Any, fmt: str, nrows: int | None = None) -> pd.DataFrame:
    import pyreadstat

    try:
        df, meta = pyreadstat.read_dta(io.BytesIO(data), row_limit=int(nrows or 0))
    except Exception as first:  # noqa: BLE001 - pandas' reader knows some older variants
        try:
            with pd.io.stata.StataReader(io.BytesIO(data)) as rdr:
                df = rdr.read(nrows, convert_categoricals=False)
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


def _read_parquet(data: bytes, name: str | None, sheet: Any, fmt: str, nrows: int | None = None) -> pd.DataFrame:
    try:
        if nrows is None:
            df = pd.read_parquet(io.BytesIO(data))
        else:
            import pyarrow.parquet as pq

            batch = next(pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=max(1, int(nrows))), None)
            df = pd.read_parquet(io.BytesIO(data)).head(0) if batch is None else batch.to_pandas()
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
    data: bytes, name: str | None, sheet: Any, fmt: str, nrows: int | None = None
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


_READERS: dict[str, Callable[..., pd.DataFrame]] = {
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
    nrows: int | None = None,
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

    ``nrows`` reads only the first rows (a preview: the rest of the file is
    not parsed, so a preview of a large file is quick); ``attrs["preview"]``
    is then True and ``attrs["complete"]`` says whether the file has no more rows.

    Raises DataError for an empty or unreadable file, an unknown format, a
    missing sheet, or a file with a header but no data rows.

    >>> raw = load(b"id;week;wai;bdi\\n1;1;4,5;20\\n1;2;5;18\\n", "sessions.csv")
    >>> raw.columns.tolist(), raw["wai"].tolist()
    (['id', 'week', 'wai', 'bdi'], [4.5, 5.0])
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
        df = _READERS[fmt](data, name, sheet, fmt, nrows)
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
            df = _READERS[alt](data, name, sheet, alt, nrows)
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
    if nrows is not None:
        complete = len(df) < nrows
        df = df.head(nrows)
        df.attrs["preview"] = True
        df.attrs["complete"] = complete
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

