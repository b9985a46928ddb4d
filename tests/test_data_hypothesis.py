"""Property tests for analysis.data: whatever the input, the intake functions
return a result or raise DataError — never another exception (METHODS §1)."""

from __future__ import annotations

import datetime as dt
import io
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from analysis.data import (
    CANONICAL_COLUMNS,
    DataError,
    ValidationReport,
    combine,
    detect_wide,
    grouping_columns,
    load,
    require_canonical,
    suggest_higher_is_better,
    suggest_mapping,
    summarize,
    to_canonical,
    validate,
    wide_to_long,
)

# DATA_HYPOTHESIS_SCALE=20 runs 20× more examples (for a long local fuzzing session).
_SCALE = max(1, int(os.environ.get("DATA_HYPOTHESIS_SCALE", "1")))
FAST = settings(
    max_examples=40 * _SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
MEDIUM = settings(
    max_examples=80 * _SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

EXTENSIONS = [
    ".csv",
    ".tsv",
    ".txt",
    ".xlsx",
    ".xls",
    ".sav",
    ".zsav",
    ".por",
    ".dta",
    ".parquet",
    ".ods",
    ".json",
    "",
    ".CSV",
    ".Xlsx",
]
MAGIC = [
    b"",
    b"PK\x03\x04",
    b"PAR1",
    b"$FL2",
    b"$FL3",
    b"<stata_dta>",
    b"r\x02\x01\x00",
    b"\xd0\xcf\x11\xe0",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
]

names = st.builds(
    lambda stem, ext: stem + ext,
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="/\\\x00"),
        max_size=12,
    ),
    st.sampled_from(EXTENSIONS),
)


def _load_ok(data, name, sheet=None):
    try:
        df = load(data, name, sheet=sheet)
    except DataError:
        return None
    assert isinstance(df, pd.DataFrame)
    assert df.shape[0] > 0 and df.shape[1] > 0
    assert "source_name" in df.attrs
    return df


@FAST
@given(
    data=st.binary(max_size=600),
    name=st.one_of(st.none(), names),
    magic=st.sampled_from(MAGIC),
)
def test_load_random_bytes(data, name, magic):
    _load_ok(magic + data, name)


SEPS = [",", ";", "\t", " ", "|", '"', "\n", "\r\n"]
TOKENS = st.one_of(
    st.sampled_from(
        [
            "1",
            "2,5",
            "3.5",
            "-1",
            "NA",
            "",
            ".",
            "007",
            "1e400",
            "nan",
            "x",
            "Ä",
            '"',
            "inf",
            "  4 ",
        ]
    ),
    st.text(max_size=5),
)


@MEDIUM
@given(
    parts=st.lists(st.tuples(TOKENS, st.sampled_from(SEPS)), max_size=60),
    name=st.sampled_from(["a.csv", "a.tsv", "a.txt", None, "a.dat"]),
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16", "cp1252"]),
)
def test_load_random_delimited_text(parts, name, encoding):
    text = "".join(tok + sep for tok, sep in parts)
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    df = _load_ok(data, name)
    if df is not None:
        assert len(set(map(str, df.columns))) == df.shape[1]  # names made unique
    # the preview (head of the file) never raises anything but DataError and never has more rows
    try:
        head = load(data, name, nrows=3)
    except DataError:
        return
    assert len(head) <= 3 and head.attrs["preview"]
    if df is not None:
        assert list(head.columns) == list(df.columns)


_BINARY_CACHE: dict[str, bytes] = {}


def _binary_file(fmt: str) -> bytes:
    """A small valid file of the format, written once (xlsx embeds a timestamp)."""
    if fmt not in _BINARY_CACHE:
        df = pd.DataFrame(
            {
                "patient": ["a", "b", "c"],
                "session": [1.0, 2.0, 3.0],
                "wai": [3.5, np.nan, 4.0],
            }
        )
        buf = io.BytesIO()
        if fmt == "xlsx":
            df.to_excel(buf, index=False)
        elif fmt == "parquet":
            df.to_parquet(buf, index=False)
        elif fmt == "dta":
            df.to_stata(buf, write_index=False)
        else:
            import tempfile

            import pyreadstat

            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "x.sav")
                pyreadstat.write_sav(df, path)
                with open(path, "rb") as fh:
                    buf.write(fh.read())
        _BINARY_CACHE[fmt] = buf.getvalue()
    return _BINARY_CACHE[fmt]


@FAST
@given(
    fmt=st.sampled_from(["xlsx", "parquet", "dta", "sav"]),
    where=st.floats(0, 1, exclude_max=True),
    flip=st.integers(min_value=0, max_value=255),
    cut=st.integers(min_value=0, max_value=400),
    sheet=st.one_of(st.none(), st.integers(-2, 3), st.text(max_size=3)),
)
def test_load_truncated_or_corrupted_binary_files(fmt, where, flip, cut, sheet):
    data = bytearray(_binary_file(fmt))
    data[int(where * len(data))] = flip
    corrupted = bytes(data[: max(0, len(data) - cut)])
    _load_ok(corrupted, f"x.{fmt}")
    _load_ok(corrupted, f"x.{fmt}", sheet=sheet)


# ---------------------------------------------------------------------------
# random frames
# ---------------------------------------------------------------------------

COLUMN_NAMES = st.one_of(
    st.sampled_from(
        list(CANONICAL_COLUMNS)
        + [
            "id",
            "ID",
            "client",
            "week",
            "wai",
            "wai_t",
            "bdi",
            "ORS",
            "therapist_id",
            "site",
            "wai_1",
            "wai_2",
            "bdi_1",
            "bdi_3",
            "session_original",
            "",
            " ",
            "Unnamed: 0",
            "x",
        ]
    ),
    st.text(max_size=8),
    st.integers(-3, 3),
)

SCALARS = st.one_of(
    st.none(),
    st.just(np.nan),
    st.integers(-5, 40),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from(
        [
            "1",
            "2,5",
            "3.5",
            "-1",
            "NA",
            "",
            "P1",
            "P10",
            "Session 2",
            "T3",
            "x",
            "007",
            "inf",
        ]
    ),
    st.text(max_size=4),
    st.booleans(),
    st.just(dt.datetime(2020, 1, 1)),
)


@st.composite
def frames(draw, max_rows=12, max_cols=7):
    n_rows = draw(st.integers(0, max_rows))
    n_cols = draw(st.integers(0, max_cols))
    data = {}
    cols = []
    for _ in range(n_cols):
        kind = draw(
            st.sampled_from(
                ["int", "float", "text", "mixed", "bool", "date", "session", "id"]
            )
        )
        if kind == "int":
            values = pd.Series(
                draw(st.lists(st.integers(-3, 30), min_size=n_rows, max_size=n_rows)),
                dtype="int64",
            )
        elif kind == "float":
            values = pd.Series(
                draw(
                    st.lists(
                        st.floats(allow_nan=True, allow_infinity=True),
                        min_size=n_rows,
                        max_size=n_rows,
                    )
                ),
                dtype="float64",
            )
        elif kind == "text":
            values = pd.Series(
                draw(
                    st.lists(
                        st.one_of(st.none(), st.text(max_size=5)),
                        min_size=n_rows,
                        max_size=n_rows,
                    )
                ),
                dtype="str",
            )
        elif kind == "bool":
            values = pd.Series(
                draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows)),
                dtype=bool,
            )
        elif kind == "date":
            values = pd.Series(pd.date_range("2020-01-01", periods=n_rows, freq="D"))
        elif kind == "session":
            values = pd.Series(
                draw(st.lists(st.integers(0, 4), min_size=n_rows, max_size=n_rows)),
                dtype="int64",
            )
        elif kind == "id":
            values = pd.Series(
                draw(
                    st.lists(
                        st.sampled_from(["P1", "P2", "P10", "3"]),
                        min_size=n_rows,
                        max_size=n_rows,
                    )
                ),
                dtype="str",
            )
        else:
            values = pd.Series(
                draw(st.lists(SCALARS, min_size=n_rows, max_size=n_rows)), dtype=object
            )
        cols.append(draw(COLUMN_NAMES))
        data[len(cols) - 1] = values.reset_index(drop=True)
    df = (
        pd.DataFrame(data, index=pd.RangeIndex(n_rows))
        if data
        else pd.DataFrame(index=pd.RangeIndex(n_rows))
    )
    df.columns = cols if cols else df.columns
    if draw(st.booleans()) and n_rows:
        df.index = draw(
            st.lists(st.integers(0, 5), min_size=n_rows, max_size=n_rows)
        )  # repeated labels
    return df


def _mapping_for(draw, df):
    options = [None, *list(df.columns), "not a column"]
    return {
        c: draw(st.sampled_from(options))
        for c in draw(st.lists(st.sampled_from(CANONICAL_COLUMNS), unique=True))
    }


def _check_canonical(out: pd.DataFrame) -> None:
    assert isinstance(out, pd.DataFrame)
    assert "study" in out
    if "session" in out:
        assert out["session"].dtype == np.int64
        assert (out["session"] >= 0).all()
    for c in ("alliance", "symptoms", "therapist_alliance"):
        if c in out:
            assert out[c].dtype == np.float64
            assert not np.isinf(out[c]).any()
    for c in ("study", "patient", "therapist"):
        if c in out:
            assert pd.api.types.is_string_dtype(out[c].dtype)
    assert list(out.index) == list(range(len(out)))


@MEDIUM
@given(df=frames(), data=st.data())
def test_random_frames_never_raise_other_errors(df, data):
    mapping = suggest_mapping(df)
    assert set(mapping) == set(CANONICAL_COLUMNS)
    used = [str(v) for v in mapping.values() if v is not None]
    assert len(used) == len(set(used))
    for col in df.columns:
        assert suggest_higher_is_better(col) in (True, False, None)

    report = validate(df)
    assert isinstance(report, ValidationReport)
    assert report.ok == (not report.errors)
    table = report.to_frame()
    assert len(table) == len(report.errors) + len(report.warnings) + len(report.notes)

    for m in (mapping, _mapping_for(data.draw, df)):
        try:
            out = to_canonical(
                df,
                m,
                study=data.draw(st.one_of(st.none(), st.text(max_size=4))),
                symptoms_higher_is_worse=data.draw(st.booleans()),
                keep_extra=data.draw(st.booleans()),
            )
        except DataError:
            continue
        _check_canonical(out)
        rep = validate(out)
        assert isinstance(rep, ValidationReport)
        codes = {i.code for i in rep.errors}
        assert not codes & {
            "non_numeric",
            "invalid_session",
        }  # to_canonical guarantees these
        try:
            summarize(out).to_frame()
        except DataError:
            assert "patient" not in out or "session" not in out
        try:
            both = combine([out, out])
        except DataError:
            continue
        _check_canonical(both)


@FAST
@given(df=frames(), data=st.data())
def test_random_frames_wide_to_long(df, data):
    try:
        stubs = detect_wide(df)
    except DataError:
        return
    id_col = (
        data.draw(st.sampled_from([*list(df.columns), "nope"]))
        if df.shape[1]
        else "nope"
    )
    choice = data.draw(
        st.one_of(
            st.just(stubs or {}), st.just(["wai", "bdi"]), st.just({"wai": "alliance"})
        )
    )
    site = data.draw(st.one_of(st.none(), st.sampled_from([*list(df.columns), "nope"]))) if df.shape[1] else None
    try:
        out = wide_to_long(
            df, id_col, choice, sep=data.draw(st.sampled_from(["_", "", "."])), study_col=site
        )
    except DataError:
        return
    assert isinstance(out, pd.DataFrame)
    assert "session" in out and out["session"].dtype == np.int64
    assert isinstance(out.attrs.get("dropped"), list)


@FAST
@given(df=frames(), data=st.data())
def test_random_frames_grouping_and_guard_raise_only_dataerror(df, data):
    cols = [*list(df.columns), None]
    try:
        groups = grouping_columns(df, patient=data.draw(st.sampled_from(cols)),
                                  session=data.draw(st.sampled_from(cols)))
    except DataError:
        groups = []
    for g in groups:
        assert g.n_groups >= 2 and g.min_patients >= 5 and isinstance(g.message, str)
    try:
        out = require_canonical(df, study=data.draw(st.booleans()), values=data.draw(st.booleans()))
    except DataError:
        return
    assert len(out) > 0


@FAST
@given(
    wrong=st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=3),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    )
)
def test_wrong_argument_types_raise_dataerror(wrong):
    for call in (
        lambda: validate(wrong),
        lambda: to_canonical(wrong, {}),
        lambda: to_canonical(pd.DataFrame({"a": [1]}), wrong),
        lambda: combine(wrong),
        lambda: wide_to_long(wrong, "id", ["wai"]),
        lambda: summarize(wrong),
        lambda: suggest_mapping(wrong),
    ):
        try:
            call()
        except DataError:
            pass
    if isinstance(wrong, str) and "\n" not in wrong and "\r" not in wrong:
        with pytest.raises(DataError):
            load(wrong + "-surely-not-a-file")


# ---------------------------------------------------------------------------
# a round-trip property on valid data
# ---------------------------------------------------------------------------


@st.composite
def long_data(draw):
    n_pat = draw(st.integers(1, 6))
    rows = []
    for p in range(n_pat):
        sessions = draw(
            st.lists(st.integers(0, 12), min_size=1, max_size=6, unique=True)
        )
        for s in sessions:
            rows.append(
                {
                    "patient": f"P{p + 1}",
                    "session": s,
                    "alliance": draw(
                        st.one_of(
                            st.none(),
                            st.floats(1, 7, allow_nan=False).map(lambda v: round(v, 2)),
                        )
                    ),
                    "symptoms": draw(
                        st.floats(0, 63, allow_nan=False).map(lambda v: round(v, 1))
                    ),
                }
            )
    return pd.DataFrame(rows)


@FAST
@given(long=long_data(), decimal=st.sampled_from([".", ","]))
def test_csv_and_wide_round_trip(long, decimal):
    sep = ";" if decimal == "," else ","
    text = long.to_csv(index=False, sep=sep, decimal=decimal)
    loaded = load(text.encode("utf-8"), "x.csv")
    canon = to_canonical(
        loaded,
        {
            "patient": "patient",
            "session": "session",
            "alliance": "alliance",
            "symptoms": "symptoms",
        },
    )
    expected = long.sort_values(
        ["patient", "session"],
        key=lambda s: s.map(lambda v: int(v[1:])) if s.name == "patient" else s,
    )
    np.testing.assert_allclose(
        canon["symptoms"].to_numpy(), expected["symptoms"].to_numpy()
    )
    np.testing.assert_allclose(
        canon["alliance"].to_numpy(dtype=float),
        expected["alliance"].to_numpy(dtype=float),
    )
    assert canon["session"].tolist() == expected["session"].tolist()

    assume(canon["symptoms"].notna().any())
    wide = canon.pivot(
        index="patient", columns="session", values=["alliance", "symptoms"]
    )
    wide.columns = [
        f"{'wai' if v == 'alliance' else 'bdi'}_{s}" for v, s in wide.columns
    ]
    back = wide_to_long(
        wide.reset_index(), "patient", {"wai": "alliance", "bdi": "symptoms"}
    )
    again = to_canonical(back, suggest_mapping(back))
    assert again["session"].tolist() == canon["session"].tolist()
    np.testing.assert_allclose(
        again["symptoms"].to_numpy(), canon["symptoms"].to_numpy()
    )


@MEDIUM
@given(
    parts=st.lists(st.tuples(TOKENS, st.sampled_from(SEPS)), max_size=60),
    sep=st.sampled_from([",", ";", "\t"]),
)
def test_fast_text_parser_agrees_with_the_line_by_line_reader(parts, sep):
    """pandas' C parser is used only when it splits the text exactly as the csv module does."""
    from analysis.data.read import _parse_delimited_fast, _parse_delimited_lines

    text = "".join(tok + s for tok, s in parts)
    fast = _parse_delimited_fast(text, sep)
    if fast is None:
        return
    slow = _parse_delimited_lines(text, sep, "t.csv")
    assert fast[1] == slow[1]
    assert list(fast[0].columns) == list(slow[0].columns)
    assert fast[0].to_numpy(dtype=object).tolist() == slow[0].to_numpy(dtype=object).tolist()
