"""Tests for analysis.data (METHODS §1: data intake).

Every input file is written inside the test by pandas / pyreadstat / openpyxl,
and expected values are computed by hand from the data written.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from analysis.data import (
    CANONICAL_COLUMNS,
    DataError,
    Issue,
    ValidationReport,
    combine,
    detect_wide,
    list_sheets,
    load,
    suggest_higher_is_better,
    suggest_mapping,
    summarize,
    template_csv,
    to_canonical,
    validate,
    wide_to_long,
)

# ---------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------


def _raw() -> pd.DataFrame:
    """A small long file as researchers export it (non-canonical names)."""
    return pd.DataFrame(
        {
            "Client_ID": ["P1", "P1", "P1", "P2", "P2", "P3"],
            "Week": [1, 2, 3, 1, 2, 1],
            "WAI_SR": [3.5, 4.0, 4.25, 2.5, 3.0, 4.75],
            "BDI_II": [30, 25, 20, 40, 38, 12],
            "Age": [34, 34, 34, 51, 51, 27],
        }
    )


def _canonical(
    n_patients: int = 12, n_sessions: int = 4, study: str = "A", seed: int = 1
) -> pd.DataFrame:
    """Clean canonical data: n_patients × n_sessions, plausible values, no issues."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(1, n_patients + 1):
        for s in range(1, n_sessions + 1):
            rows.append(
                {
                    "study": study,
                    "patient": f"P{p}",
                    "session": s,
                    "alliance": round(float(rng.uniform(3.0, 4.5)), 2),
                    "symptoms": round(float(rng.uniform(15, 25)), 1),
                    "therapist_alliance": round(float(rng.uniform(3.0, 4.5)), 2),
                    "therapist": f"T{1 + p % 3}",
                }
            )
    df = pd.DataFrame(rows)
    df["session"] = df["session"].astype("int64")
    return df


def _codes(report: ValidationReport) -> list[str]:
    return [i.code for i in report.issues]


def _issue(report: ValidationReport, code: str) -> Issue:
    found = [i for i in report.issues if i.code == code]
    assert found, f"no issue {code!r} in {_codes(report)}"
    assert len(found) == 1, f"{len(found)} issues {code!r}"
    return found[0]


def _is_text(s: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(s.dtype) and not pd.api.types.is_object_dtype(
        s.dtype
    )


# ---------------------------------------------------------------------------
# load: formats
# ---------------------------------------------------------------------------


def test_load_csv_comma_from_path_bytes_and_filelike(tmp_path):
    raw = _raw()
    path = tmp_path / "study_a.csv"
    raw.to_csv(path, index=False)

    from_path = load(path)
    assert list(from_path.columns) == list(raw.columns)
    assert from_path["WAI_SR"].tolist() == raw["WAI_SR"].tolist()
    assert from_path["Week"].dtype == np.int64
    assert from_path["Client_ID"].tolist() == raw["Client_ID"].tolist()
    assert from_path.attrs["source_name"] == "study_a.csv"
    assert from_path.attrs["delimiter"] == ","

    from_bytes = load(path.read_bytes(), filename="upload.csv")
    assert from_bytes.attrs["source_name"] == "upload.csv"
    pd.testing.assert_frame_equal(from_bytes, from_path, check_like=False)

    class Uploaded:  # the parts of streamlit's UploadedFile that load uses
        def __init__(self, data: bytes, name: str) -> None:
            self._buf = io.BytesIO(data)
            self.name = name

        def getvalue(self) -> bytes:
            return self._buf.getvalue()

        def read(self) -> bytes:
            return self._buf.read()

    up = Uploaded(path.read_bytes(), "from_browser.csv")
    up.read()  # already consumed once: load must still see the whole file
    from_upload = load(up)
    assert from_upload.attrs["source_name"] == "from_browser.csv"
    assert len(from_upload) == 6

    with open(path, "rb") as fh:  # a plain file object, name from .name
        assert len(load(fh)) == 6


def test_load_semicolon_with_decimal_comma(tmp_path):
    raw = _raw()
    path = tmp_path / "german.csv"
    raw.to_csv(path, index=False, sep=";", decimal=",")
    assert "3,5" in path.read_text()  # the file really has decimal commas
    df = load(path)
    assert df.attrs["delimiter"] == ";"
    assert df["WAI_SR"].dtype == np.float64
    assert df["WAI_SR"].tolist() == [3.5, 4.0, 4.25, 2.5, 3.0, 4.75]
    assert df["BDI_II"].tolist() == [30, 25, 20, 40, 38, 12]


def test_load_tab_separated_tsv_and_txt(tmp_path):
    raw = _raw()
    for name in ("data.tsv", "data.txt"):
        path = tmp_path / name
        raw.to_csv(path, index=False, sep="\t")
        df = load(path)
        assert df.attrs["delimiter"] == "\t"
        assert list(df.columns) == list(raw.columns)
        assert df["WAI_SR"].tolist() == raw["WAI_SR"].tolist()


def test_load_latin1_and_utf8_bom(tmp_path):
    raw = pd.DataFrame(
        {
            "patient": ["Müller", "Jörg", "Ångström"],
            "session": [1, 1, 1],
            "wai": [3.0, 4.0, 5.0],
        }
    )
    p1 = tmp_path / "latin.csv"
    raw.to_csv(p1, index=False, sep=";", encoding="latin-1")
    with pytest.raises(UnicodeDecodeError):
        p1.read_bytes().decode("utf-8")  # really not UTF-8
    df = load(p1)
    assert df["patient"].tolist() == ["Müller", "Jörg", "Ångström"]

    p2 = tmp_path / "bom.csv"
    raw.to_csv(p2, index=False, encoding="utf-8-sig")
    assert p2.read_bytes().startswith(b"\xef\xbb\xbf")
    df2 = load(p2)
    assert list(df2.columns) == [
        "patient",
        "session",
        "wai",
    ]  # no BOM in the first name
    assert df2["patient"].tolist() == ["Müller", "Jörg", "Ångström"]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_load_utf16_unicode_text_from_excel(tmp_path, encoding):
    raw = pd.DataFrame(
        {"patient": ["Müller", "Øst"], "session": [1, 2], "wai": [3.5, 4.0]}
    )
    path = tmp_path / "unicode.txt"
    raw.to_csv(path, index=False, sep="\t", decimal=",", encoding=encoding)
    df = load(path)
    assert df["patient"].tolist() == ["Müller", "Øst"]
    assert df["wai"].tolist() == [3.5, 4.0]


def test_load_excel_sep_hint_line():
    df = load(b"sep=;\npatient;session;wai\nP1;1;3,5\n", "hint.csv")
    assert list(df.columns) == ["patient", "session", "wai"]
    assert df["wai"].tolist() == [3.5]
    assert df.attrs["header_rows"] == 2


def test_load_csv_keeps_zero_padded_ids_and_missing_codes():
    text = "id,session,wai\n007,1,3.5\n010,2,NA\n011,3,.\n"
    df = load(text.encode(), "ids.csv")
    assert df["id"].tolist() == ["007", "010", "011"]
    assert df["wai"].iloc[0] == 3.5
    assert df["wai"].iloc[1:].isna().all()


def test_load_blank_rows_keep_spreadsheet_numbering():
    text = "patient;session;wai\nP1;1;3\n;;\nP1;2;abc\n"
    df = load(text.encode(), "gap.csv")
    assert len(df) == 2
    assert list(df.index) == [0, 2]  # file data rows 0 and 2 (row 1 blank)
    with pytest.raises(DataError, match=r"spreadsheet row 4 .*'abc'"):
        to_canonical(
            df, {"patient": "patient", "session": "session", "alliance": "wai"}
        )


def test_load_xlsx_two_sheets(tmp_path):
    first = _raw()
    second = pd.DataFrame({"id": [1, 2], "session": [1, 1], "ors": [20.5, 30.0]})
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as xw:
        first.to_excel(xw, sheet_name="Sessions", index=False)
        second.to_excel(xw, sheet_name="Outcome", index=False)

    assert list_sheets(path) == ["Sessions", "Outcome"]
    assert list_sheets(path.read_bytes(), "book.xlsx") == ["Sessions", "Outcome"]

    default = load(path)
    assert default.attrs["sheet"] == "Sessions"
    assert default["WAI_SR"].tolist() == first["WAI_SR"].tolist()

    by_name = load(path, sheet="Outcome")
    by_index = load(path.read_bytes(), "book.xlsx", sheet=1)
    by_case = load(path, sheet="outcome")
    for df in (by_name, by_index, by_case):
        assert df["ors"].tolist() == [20.5, 30.0]
        assert df.attrs["sheet"] == "Outcome"

    with pytest.raises(DataError, match="Sessions, Outcome"):
        load(path, sheet="Missing")
    with pytest.raises(DataError, match="sheet number 5"):
        load(path, sheet=5)


def test_load_xlsx_decimal_comma_text_cells(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["patient", "session", "wai"])
    ws.append(["P1", 1, "3,5"])
    ws.append(["P1", 2, 4.25])
    path = tmp_path / "mixed.xlsx"
    wb.save(path)
    df = load(path)
    assert df["wai"].tolist() == [3.5, 4.25]


def test_load_xlsx_blank_rows_keep_excel_row_numbers(tmp_path):
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["patient", "session", "wai"])
    ws.append(["P1", 1, 3])
    ws.append([])
    ws.append(["P1", 2, "abc"])  # Excel row 4
    path = tmp_path / "gaps.xlsx"
    wb.save(path)
    df = load(path)
    assert df["session"].tolist() == [1, 2] and df["session"].dtype == np.int64
    with pytest.raises(DataError, match=r"spreadsheet row 4 .*'abc'"):
        to_canonical(
            df, {"patient": "patient", "session": "session", "alliance": "wai"}
        )


def test_list_sheets_of_non_workbook_is_empty(tmp_path):
    assert list_sheets(b"a,b\n1,2\n", "x.csv") == []


def test_load_sav_with_value_and_variable_labels(tmp_path):
    df = pd.DataFrame(
        {
            "pid": [1.0, 1.0, 2.0],
            "session": [1.0, 2.0, 1.0],
            "wai": [3.5, 4.0, 2.0],
            "group": [1.0, 1.0, 2.0],
        }
    )
    path = tmp_path / "trial.sav"
    pyreadstat.write_sav(
        df,
        str(path),
        column_labels={
            "pid": "Patient number",
            "wai": "WAI-SR total",
            "session": None,
            "group": "Treatment",
        },
        variable_value_labels={"group": {1.0: "CBT", 2.0: "Psychodynamic"}},
    )
    out = load(path)
    assert out["wai"].tolist() == [3.5, 4.0, 2.0]
    assert out["group"].tolist() == [1.0, 1.0, 2.0]  # codes kept, labels as metadata
    assert out.attrs["value_labels"] == {"group": {1.0: "CBT", 2.0: "Psychodynamic"}}
    assert out.attrs["column_labels"] == {
        "pid": "Patient number",
        "wai": "WAI-SR total",
        "group": "Treatment",
    }
    assert out.attrs["format"] == "sav"
    # also without a file name (sniffed from the '$FL2' magic)
    assert load(path.read_bytes()).attrs["format"] == "sav"


def test_load_sav_errors_name_spss_case_numbers(tmp_path):
    df = pd.DataFrame({"pid": [1.0, 2.0, 3.0], "session": [1.0, 2.5, 1.0]})
    path = tmp_path / "bad.sav"
    pyreadstat.write_sav(df, str(path))
    with pytest.raises(
        DataError, match=r"case 2 \(counting the first case as 1\).*'2.5'"
    ):
        to_canonical(load(path), {"patient": "pid", "session": "session"})


def test_load_dta(tmp_path):
    df = pd.DataFrame(
        {"patient": ["a", "b"], "session": [1, 2], "alliance": [4.5, 3.25]}
    )
    path = tmp_path / "trial.dta"
    df.to_stata(path, write_index=False, variable_labels={"alliance": "WAI short"})
    out = load(path)
    assert out["patient"].tolist() == ["a", "b"]
    assert out["alliance"].tolist() == [4.5, 3.25]
    assert out.attrs["column_labels"]["alliance"] == "WAI short"
    assert load(path.read_bytes(), "renamed.bin").attrs["format"] == "dta"


def test_load_parquet(tmp_path):
    raw = _raw()
    path = tmp_path / "data.parquet"
    raw.to_parquet(path, index=False)
    out = load(path)
    assert out["Client_ID"].tolist() == raw["Client_ID"].tolist()
    assert out["WAI_SR"].tolist() == raw["WAI_SR"].tolist()
    assert out.attrs["format"] == "parquet"
    assert load(path.read_bytes()).attrs["format"] == "parquet"  # sniffed


def test_load_sniffs_content_when_extension_is_wrong_or_missing(tmp_path):
    path = tmp_path / "book.xlsx"
    _raw().to_excel(path, index=False)
    assert load(path.read_bytes()).attrs["format"] == "xlsx"  # no name at all
    assert (
        load(path.read_bytes(), "book.csv").attrs["format"] == "xlsx"
    )  # wrong extension
    assert len(load(b"a,b\n1,2\n", "data.xlsx")) == 1  # CSV saved as .xlsx


@pytest.mark.parametrize(
    "data, name, pattern",
    [
        (b"", "empty.csv", "empty"),
        (b"   \n\n", "blank.csv", "empty"),
        (b"patient,session,wai\n", "header.csv", "no data rows"),
        (b"", "empty.xlsx", "empty"),
        (b"\x00\x01\x02\x03binary\x00", None, "format"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 50, "old.xls", "Save As"),
        (b"not an excel file", "fake.xlsx", "Excel"),
        (b"not parquet", "x.parquet", "Parquet"),
        (b"not spss", "x.sav", "SPSS"),
        (b"a,b\n1,2,3,4\n5,6\n", "ragged.csv", "line 2"),
    ],
)
def test_load_bad_input_raises_dataerror(data, name, pattern):
    with pytest.raises(DataError, match=pattern):
        load(data, name)


def test_load_bad_sources(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="folder"):
        load(tmp_path)
    with pytest.raises(DataError):
        load(12345)
    assert issubclass(DataError, ValueError)


def test_load_string_with_newline_is_csv_text():
    df = load(template_csv())
    assert list(df.columns) == list(CANONICAL_COLUMNS)


# ---------------------------------------------------------------------------
# mapping
# ---------------------------------------------------------------------------


def test_suggest_mapping_common_names():
    df = pd.DataFrame(
        columns=[
            "Site",
            "Client_ID",
            "Week",
            "WAI-SR",
            "WAI-T",
            "BDI-II",
            "Therapist_ID",
            "Age",
        ]
    )
    assert suggest_mapping(df) == {
        "study": "Site",
        "patient": "Client_ID",
        "session": "Week",
        "alliance": "WAI-SR",
        "symptoms": "BDI-II",
        "therapist_alliance": "WAI-T",
        "therapist": "Therapist_ID",
    }


@pytest.mark.parametrize(
    "columns, expected",
    [
        (
            ["ID", "SESS", "HAQ", "PHQ9"],
            {"patient": "ID", "session": "SESS", "alliance": "HAQ", "symptoms": "PHQ9"},
        ),
        (
            ["subject", "visit", "calpas", "calpas_t", "oq45"],
            {"therapist_alliance": "calpas_t", "alliance": "calpas"},
        ),
        (
            ["PatientID", "time", "SRS", "ORS"],
            {"patient": "PatientID", "alliance": "SRS", "symptoms": "ORS"},
        ),
        (
            ["case", "session", "wai_total", "gsi", "trial"],
            {"alliance": "wai_total", "symptoms": "gsi", "study": "trial"},
        ),
        (
            ["pid", "week", "t_wai", "wai_p", "lsas"],
            {"therapist_alliance": "t_wai", "alliance": "wai_p"},
        ),
        (
            ["th_id", "client", "wai", "wait"],
            {"therapist": "th_id", "patient": "client", "therapist_alliance": "wait"},
        ),
    ],
)
def test_suggest_mapping_variants(columns, expected):
    got = suggest_mapping(pd.DataFrame(columns=columns))
    for k, v in expected.items():
        assert got[k] == v, (k, got)


def test_suggest_mapping_german_export_names():
    df = pd.DataFrame(columns=["Klient", "Sitzung", "HAQ", "SCL-90-R GSI", "Therapeut"])
    got = suggest_mapping(df)
    assert got["patient"] == "Klient" and got["session"] == "Sitzung"
    assert (
        got["alliance"] == "HAQ"
        and got["symptoms"] == "SCL-90-R GSI"
        and got["therapist"] == "Therapeut"
    )


def test_suggest_mapping_never_uses_a_column_twice_and_returns_none():
    got = suggest_mapping(pd.DataFrame(columns=["therapist_wai"]))
    assert got["therapist_alliance"] == "therapist_wai"
    assert got["therapist"] is None and got["alliance"] is None
    nothing = suggest_mapping(pd.DataFrame(columns=["foo", "bar"]))
    assert set(nothing) == set(CANONICAL_COLUMNS) and all(
        v is None for v in nothing.values()
    )
    used = [
        v
        for v in suggest_mapping(
            pd.DataFrame(columns=["id", "patient", "wai", "alliance"])
        ).values()
        if v
    ]
    assert len(used) == len(set(used))


def test_suggest_mapping_skips_wide_blocks():
    df = pd.DataFrame(columns=["id", "wai_1", "wai_2", "wai_3", "bdi_1", "bdi_2"])
    got = suggest_mapping(df)
    assert got["patient"] == "id"
    assert got["alliance"] is None and got["symptoms"] is None


def test_suggest_higher_is_better():
    assert suggest_higher_is_better("ORS") is True
    assert suggest_higher_is_better("ors_total") is True
    assert suggest_higher_is_better("BDI-II") is False
    assert suggest_higher_is_better("PHQ9") is False
    assert suggest_higher_is_better("symptoms") is None
    assert suggest_higher_is_better(None) is None


# ---------------------------------------------------------------------------
# to_canonical
# ---------------------------------------------------------------------------


def test_to_canonical_renames_types_sorts_and_keeps_extra():
    raw = _raw().iloc[::-1]  # reversed: the result must be sorted again
    mapping = suggest_mapping(raw)
    out = to_canonical(raw, mapping, study="Trial A")
    assert list(out.columns) == [
        "study",
        "patient",
        "session",
        "alliance",
        "symptoms",
        "Age",
    ]
    assert out["study"].unique().tolist() == ["Trial A"]
    assert out.attrs["study_from"] == "argument"
    assert out["patient"].tolist() == ["P1", "P1", "P1", "P2", "P2", "P3"]
    assert out["session"].tolist() == [1, 2, 3, 1, 2, 1]
    assert out["session"].dtype == np.int64
    assert out["alliance"].dtype == np.float64 and out["symptoms"].dtype == np.float64
    assert _is_text(out["patient"]) and _is_text(out["study"])
    assert out["Age"].tolist() == [34, 34, 34, 51, 51, 27]
    assert out.attrs["symptoms_flipped"] is False
    assert list(out.index) == list(range(6))

    lean = to_canonical(raw, mapping, keep_extra=False)
    assert "Age" not in lean
    assert lean["study"].unique().tolist() == ["Study 1"]
    assert lean.attrs["study_from"] == "default"


def test_to_canonical_study_column_and_natural_order():
    raw = pd.DataFrame(
        {
            "site": ["B", "A", "A", "A"],
            "id": ["P10", "P2", "P10", "P2"],
            "sess": [1, 2, 1, 1],
            "wai": [1, 2, 3, 4],
            "bdi": [5, 6, 7, 8],
        }
    )
    out = to_canonical(raw, suggest_mapping(raw))
    assert out[["study", "patient", "session"]].values.tolist() == [
        ["A", "P2", 1],
        ["A", "P2", 2],
        ["A", "P10", 1],
        ["B", "P10", 1],
    ]
    assert out["alliance"].tolist() == [4.0, 2.0, 3.0, 1.0]
    assert out.attrs["study_from"] == "column"


def test_to_canonical_coerces_text_numbers_ids_and_session_labels():
    raw = pd.DataFrame(
        {
            "patient": [1.0, 1.0, 2.0, 2.0],
            "session": ["Session 1", "Session 2", "T1", "03"],
            "alliance": ["3,5", " 4.25 ", "NA", ""],
            "symptoms": [10, 12, None, 9],
            "therapist": [7, 7, 8, 8],
        },
    )
    out = to_canonical(
        raw,
        {
            "patient": "patient",
            "session": "session",
            "alliance": "alliance",
            "symptoms": "symptoms",
            "therapist": "therapist",
        },
    )
    assert out["patient"].tolist() == ["1", "1", "2", "2"]
    assert out["session"].tolist() == [1, 2, 1, 3]
    assert out["alliance"].iloc[:2].tolist() == [3.5, 4.25]
    assert out["alliance"].iloc[2:].isna().all()
    assert out["therapist"].tolist() == ["7", "7", "8", "8"]


def test_to_canonical_flips_higher_is_better_per_study():
    raw = pd.DataFrame(
        {
            "study": ["A", "A", "A", "B", "B"],
            "patient": ["1", "1", "2", "1", "1"],
            "session": [1, 2, 1, 1, 2],
            "wai": [4.0, 4.0, 4.0, 4.0, 4.0],
            "ORS": [10.0, 30.0, 25.0, 2.0, np.nan],
        }
    )
    mapping = suggest_mapping(raw)
    assert mapping["symptoms"] == "ORS"
    assert suggest_higher_is_better(mapping["symptoms"]) is True
    out = to_canonical(raw, mapping, symptoms_higher_is_worse=False)
    # study A: max + min = 40 -> 30, 10, 15; study B: only 2 observed -> 2 + 2 - 2
    assert out["symptoms"].iloc[:3].tolist() == [30.0, 10.0, 15.0]
    assert out["symptoms"].iloc[3] == 2.0 and np.isnan(out["symptoms"].iloc[4])
    assert out.attrs["symptoms_flipped"] is True
    msg = out.attrs["symptoms_flip_message"]
    assert "ORS" in msg and "max + min" in msg
    assert msg in out.attrs["messages"]


@pytest.mark.parametrize(
    "session, pattern",
    [
        ([1, 2.5, 3], r"spreadsheet row 3 .*'2.5'"),
        ([1, -1, 3], r"spreadsheet row 3 .*'-1'"),
        ([1, "pre", 3], r"'pre'"),
    ],
)
def test_to_canonical_bad_sessions_name_rows(session, pattern):
    text = "patient,session,wai,bdi\n" + "".join(f"P1,{s},3,20\n" for s in session)
    df = load(text.encode(), "s.csv")
    with pytest.raises(DataError, match=pattern):
        to_canonical(
            df,
            {
                "patient": "patient",
                "session": "session",
                "alliance": "wai",
                "symptoms": "bdi",
            },
        )


def test_to_canonical_missing_session_with_scores_is_an_error_without_scores_dropped():
    raw = pd.DataFrame(
        {
            "patient": ["P1", "P1", "P2"],
            "session": [1, None, None],
            "wai": [3.0, 4.0, None],
        }
    )
    with pytest.raises(DataError, match="empty in rows? 1"):
        to_canonical(
            raw, {"patient": "patient", "session": "session", "alliance": "wai"}
        )
    ok = to_canonical(
        raw.iloc[[0, 2]],
        {"patient": "patient", "session": "session", "alliance": "wai"},
    )
    assert ok["patient"].tolist() == ["P1"]
    assert any("Dropped 1 row" in m for m in ok.attrs["messages"])


def test_to_canonical_non_numeric_names_column_rows_and_values():
    raw = pd.DataFrame(
        {
            "patient": ["P1", "P2", "P3"],
            "session": [1, 1, 1],
            "bdi": ["12", "n.a.", "x"],
        }
    )
    with pytest.raises(DataError) as exc:
        to_canonical(
            raw, {"patient": "patient", "session": "session", "symptoms": "bdi"}
        )
    msg = str(exc.value)
    assert "'bdi'" in msg and "rows 1, 2" in msg and "'n.a.'" in msg and "'x'" in msg


def test_to_canonical_bad_mappings():
    raw = _raw()
    with pytest.raises(DataError, match="not in the data"):
        to_canonical(raw, {"patient": "nope"})
    with pytest.raises(DataError, match="both"):
        to_canonical(raw, {"patient": "Client_ID", "therapist": "Client_ID"})
    with pytest.raises(DataError, match="Unknown canonical name"):
        to_canonical(raw, {"client": "Client_ID"})


def test_to_canonical_extra_column_clashing_with_canonical_name_is_renamed():
    raw = pd.DataFrame(
        {"id": ["a", "a"], "session": ["pre", "post"], "week": [0, 12], "wai": [3, 4]}
    )
    out = to_canonical(raw, {"patient": "id", "session": "week", "alliance": "wai"})
    assert out["session"].tolist() == [0, 12]
    assert out["session_original"].tolist() == ["pre", "post"]


# ---------------------------------------------------------------------------
# wide -> long
# ---------------------------------------------------------------------------


def test_wide_to_long_round_trip():
    long = _canonical(n_patients=5, n_sessions=4)
    long = long.drop(columns=["therapist_alliance"])
    # knock out some values, and one whole session, to test missing handling
    long.loc[3, "alliance"] = np.nan
    long = long.drop(index=[6]).reset_index(drop=True)
    wide = long.pivot(
        index="patient", columns="session", values=["alliance", "symptoms"]
    )
    wide.columns = [
        f"{'wai' if v == 'alliance' else 'bdi'}_{s}" for v, s in wide.columns
    ]
    wide = wide.reset_index()
    wide["therapist"] = (
        long.groupby("patient")["therapist"].first().loc[wide["patient"]].to_numpy()
    )
    wide = wide.rename(columns={"patient": "client"})

    stubs = detect_wide(wide)
    assert stubs == {"wai": "alliance", "bdi": "symptoms"}
    back = wide_to_long(wide, "client", stubs)
    assert list(back.columns) == [
        "client",
        "session",
        "alliance",
        "symptoms",
        "therapist",
    ]
    mapping = suggest_mapping(back)
    assert mapping["patient"] == "client" and mapping["session"] == "session"
    canon = to_canonical(back, mapping, study="A")
    expected = long[
        ["study", "patient", "session", "alliance", "symptoms", "therapist"]
    ]
    pd.testing.assert_frame_equal(
        canon[expected.columns].reset_index(drop=True),
        to_canonical(expected, {c: c for c in expected.columns})[expected.columns],
        check_dtype=False,
    )


def test_wide_to_long_separators_list_stubs_and_sessions_from_suffix():
    wide = pd.DataFrame(
        {"id": ["a", "b"], "wai1": [3.0, 4.0], "wai12": [3.5, None], "age": [30, 40]}
    )
    out = wide_to_long(wide, "id", ["wai"])
    assert out[["id", "session", "wai", "age"]].values.tolist() == [
        ["a", 1, 3.0, 30],
        ["a", 12, 3.5, 30],
        ["b", 1, 4.0, 40],
    ]
    keep_all = wide_to_long(wide, "id", {"wai": "alliance"}, dropna=False)
    assert len(keep_all) == 4


def test_wide_to_long_errors():
    wide = pd.DataFrame({"id": ["a", "a"], "wai_1": [3.0, 4.0], "wai_2": [3.0, 4.0]})
    with pytest.raises(DataError, match="more than once.*a"):
        wide_to_long(wide, "id", {"wai": "alliance"})
    with pytest.raises(DataError, match="No columns like 'bdi_1'"):
        wide_to_long(wide.iloc[:1], "id", {"bdi": "symptoms"})
    with pytest.raises(DataError, match="not in the data"):
        wide_to_long(wide, "patient", {"wai": "alliance"})


def test_detect_wide_none_for_long_data():
    assert detect_wide(_raw()) is None
    items = pd.DataFrame(columns=["id", "session", "item1", "item2", "item3"])
    assert detect_wide(items) is None  # numbered items in long data


def test_wide_ors_keeps_its_direction_hint_and_flip_message():
    wide = pd.DataFrame(
        {"client": ["a", "b"], "ORS_1": [10.0, 20.0], "ORS_2": [30.0, 40.0]}
    )
    long = wide_to_long(wide, "client", detect_wide(wide))
    assert suggest_higher_is_better("symptoms") is None
    assert suggest_higher_is_better("symptoms", long) is True
    out = to_canonical(long, suggest_mapping(long), symptoms_higher_is_worse=False)
    assert out["symptoms"].tolist() == [40.0, 20.0, 30.0, 10.0]  # 50 − x
    assert "ORS" in out.attrs["symptoms_flip_message"]


def test_detect_wide_therapist_block():
    wide = pd.DataFrame(
        columns=["id", "wai_1", "wai_2", "wai_t_1", "wai_t_2", "ors_1", "ors_2"]
    )
    assert detect_wide(wide) == {
        "wai": "alliance",
        "ors": "symptoms",
        "wai_t": "therapist_alliance",
    }
    out = wide_to_long(
        pd.DataFrame([["x", 1, 2, 3, 4, 5, 6]], columns=wide.columns),
        "id",
        detect_wide(wide),
    )
    assert out["therapist_alliance"].tolist() == [3.0, 4.0]
    assert out["alliance"].tolist() == [1.0, 2.0]


# ---------------------------------------------------------------------------
# validate
# ---------------------------------------------------------------------------


def test_validate_clean_data_has_no_issues():
    report = validate(_canonical())
    assert report.ok
    assert report.errors == [] and report.warnings == []
    assert report.to_frame().empty
    assert list(report.to_frame().columns)[:4] == ["level", "code", "column", "message"]


def test_validate_empty_data():
    report = validate(_canonical().iloc[:0])
    assert not report.ok
    assert _codes(report) == ["empty_data"]


def test_validate_missing_columns():
    report = validate(_canonical().drop(columns=["symptoms", "study"]))
    issue = _issue(report, "missing_columns")
    assert issue.level == "error"
    assert "symptoms" in issue.message and "study" in issue.message
    assert not report.ok


def test_validate_non_numeric_names_patient_and_rows():
    df = _canonical()
    df["alliance"] = df["alliance"].astype(object)
    df.loc[9, "alliance"] = "four"  # patient P3, session 2
    df.loc[10, "alliance"] = "3,5"
    issue = _issue(validate(df), "non_numeric")
    assert issue.level == "error"
    assert issue.rows == [9, 10]
    assert issue.patients == ["P3"]
    assert "patient P3 session 2" in issue.message and "'four'" in issue.message
    assert "decimal commas" in issue.message


def test_validate_duplicate_rows():
    df = _canonical()
    dup = df.iloc[[5]].copy()  # P2, session 2, with a different alliance value: a conflict
    dup["alliance"] = dup["alliance"] + 1
    df = pd.concat([df, dup], ignore_index=True)
    issue = _issue(validate(df), "duplicate_rows")
    assert issue.level == "error"
    assert issue.rows == [5, len(df) - 1]
    assert issue.patients == ["P2"]
    assert "patient P2 session 2" in issue.message
    assert issue.message.count("patient P2 session 2") == 1  # issue 23 #11: each session named once
    assert "exact_duplicate_rows" not in _codes(validate(df))


def test_exact_copies_are_one_error_with_a_count_and_drop_with_one_call():
    """Issue 23 #11: one duplicated row blocked the load and was listed twice; exact copies are now counted,
    named once and dropped by drop_exact_duplicates; conflicting rows stay a separate error."""
    from analysis.data import drop_exact_duplicates

    df = _canonical()
    conflict = df.iloc[[7]].copy()
    conflict["symptoms"] = conflict["symptoms"] + 3
    df = pd.concat([df, df.iloc[[5, 5, 6]], conflict], ignore_index=True)  # 3 exact copies, 1 conflict
    report = validate(df)
    exact = _issue(report, "exact_duplicate_rows")
    assert exact.level == "error" and len(exact.rows) == 3
    assert exact.message.startswith("3 rows are exact copies")
    assert exact.message.count("patient P2 session 2") == 2  # two copies of that row, each one row
    clash = _issue(report, "duplicate_rows")
    assert "patient P2 session 2" not in clash.message and clash.message.startswith("1 session of a patient")
    cleaned, n = drop_exact_duplicates(df)
    assert n == 3 and len(cleaned) == len(df) - 3
    after = validate(cleaned)
    assert "exact_duplicate_rows" not in _codes(after) and "duplicate_rows" in _codes(after)
    same, none = drop_exact_duplicates(_canonical())
    assert none == 0 and len(same) == len(_canonical())


def test_messages_name_the_users_own_columns():
    """Issue 23 #14: "Column 'symptoms' has 1 negative value" when the user's column is OQ45."""
    raw = _canonical().rename(columns={"symptoms": "OQ45", "alliance": "WAI_SR", "patient": "pid"})
    raw.loc[3, "OQ45"] = -4
    canon = to_canonical(raw, {"study": "study", "patient": "pid", "session": "session",
                               "alliance": "WAI_SR", "symptoms": "OQ45"})
    issue = _issue(validate(canon), "negative_values")
    assert issue.message.startswith("Column 'OQ45' (symptoms) has 1 negative value")
    both = combine([canon, canon.assign(study="other")])
    assert _issue(validate(both), "negative_values").message.startswith("Column 'OQ45' (symptoms)")


def test_validate_messages_name_the_study_when_several():
    a, b = _canonical(study="A"), _canonical(study="B")
    b.loc[b.index[5], "alliance"] = -1.0  # B, P2 session 2
    df = pd.concat([a, b], ignore_index=True)
    issue = _issue(validate(df), "negative_values")
    assert (
        issue.rows == [48 + 5] and issue.studies == ["B"] and issue.patients == ["P2"]
    )
    assert "B: patient P2 session 2" in issue.message


def test_validate_invalid_sessions():
    df = _canonical()
    df["session"] = df["session"].astype("float64")
    df.loc[0, "session"] = 1.5
    df.loc[13, "session"] = -2
    df.loc[20, "session"] = np.nan
    issue = _issue(validate(df), "invalid_session")
    assert issue.rows == [0, 13, 20]
    assert issue.patients == ["P1", "P4", "P6"]
    assert "'1.5'" in issue.message and "'-2.0'" in issue.message


def test_validate_missing_ids():
    df = _canonical()
    df["patient"] = df["patient"].astype(object)
    df.loc[7, "patient"] = None
    issue = _issue(validate(df), "missing_ids")
    assert issue.rows == [7] and issue.column == "patient"


def test_validate_negative_and_outlying_values():
    df = _canonical()
    df.loc[17, "symptoms"] = -99.0  # P5 session 2: a missing-value code
    df.loc[30, "alliance"] = 45.0  # P8 session 3: typo for 4.5
    report = validate(df)
    assert report.ok  # warnings only
    neg = _issue(report, "negative_values")
    assert neg.rows == [17] and neg.patients == ["P5"] and neg.column == "symptoms"
    assert "patient P5 session 2" in neg.message
    out = [i for i in report.warnings if i.code == "outlying_values"]
    by_col = {i.column: i for i in out}
    assert by_col["alliance"].rows == [30] and by_col["alliance"].patients == ["P8"]
    assert "patient P8 session 3" in by_col["alliance"].message
    assert by_col["symptoms"].rows == [17]  # −99 is also far from the median


def test_validate_outliers_use_per_study_median():
    a = _canonical(study="A", seed=1)
    b = _canonical(study="B", seed=2)
    b["alliance"] = b["alliance"] * 10  # another instrument, 30–45: not outliers
    report = validate(pd.concat([a, b], ignore_index=True))
    assert "outlying_values" not in _codes(report)


def test_validate_few_sessions_and_truncated_message():
    df = _canonical(n_patients=15, n_sessions=3)
    single = df[df["session"] == 1].reset_index(
        drop=True
    )  # 15 patients, 1 session each
    issue = _issue(validate(single), "few_sessions")
    assert issue.level == "warning"
    assert issue.patients == [f"P{i}" for i in range(1, 16)]
    assert "P1, P2" in issue.message and "(5 more)" in issue.message
    assert issue.rows == list(range(15))

    one = df[~((df["patient"] == "P7") & (df["session"] > 1))].reset_index(drop=True)
    issue = _issue(validate(one), "few_sessions")
    assert issue.patients == ["P7"]
    assert issue.rows == [18]


def test_validate_few_patients_per_study():
    df = pd.concat(
        [_canonical(12, study="Big"), _canonical(4, study="Small")], ignore_index=True
    )
    issue = _issue(validate(df), "few_patients")
    assert issue.studies == ["Small"]
    assert "Small (4 patients)" in issue.message
    assert sorted(issue.patients) == ["P1", "P2", "P3", "P4"]


def test_validate_heavy_missingness_per_study():
    a = _canonical(study="A")
    b = _canonical(study="B")
    b.loc[b.index[:20], "symptoms"] = np.nan  # 20 of 48 rows = 42 %
    a.loc[a.index[:10], "symptoms"] = np.nan  # 21 %: fine
    df = pd.concat([a, b], ignore_index=True)
    issue = _issue(validate(df), "heavy_missingness")
    assert issue.studies == ["B"] and issue.column == "symptoms"
    assert "B: 42% of rows" in issue.message
    assert issue.rows == list(range(48, 68))


def test_validate_therapist_rating_absent():
    issue = _issue(
        validate(_canonical().drop(columns="therapist_alliance")), "no_therapist_rating"
    )
    assert issue.level == "note"  # issue 23: an absent optional column is a note, not a warning
    assert "No therapist-rated alliance column" in issue.message
    empty = _canonical()
    empty["therapist_alliance"] = np.nan
    assert _issue(validate(empty), "no_therapist_rating").message.startswith(
        "The therapist-rated alliance column"
    )
    a, b = _canonical(study="A"), _canonical(study="B")
    b["therapist_alliance"] = np.nan
    part = _issue(validate(pd.concat([a, b], ignore_index=True)), "no_therapist_rating")
    assert part.studies == ["B"]


def test_validate_duplicate_column_names_and_bad_input():
    df = _canonical()
    df.columns = [
        "study",
        "patient",
        "session",
        "alliance",
        "alliance",
        "therapist_alliance",
        "therapist",
    ]
    report = validate(df)
    assert "duplicate_columns" in _codes(report) and "missing_columns" in _codes(report)
    with pytest.raises(DataError):
        validate("not a frame")


# ---------------------------------------------------------------------------
# combine
# ---------------------------------------------------------------------------


def test_combine_labels_from_file_names(tmp_path):
    raw = _raw()
    frames = []
    for name in ("site_a.csv", "site_b.csv"):
        path = tmp_path / name
        raw.to_csv(path, index=False)
        df = load(path)
        frames.append(to_canonical(df, suggest_mapping(df)))
    both = combine(frames)
    assert both["study"].unique().tolist() == ["site_a", "site_b"]
    assert len(both) == 12
    assert both.attrs["sources"] == ["site_a.csv", "site_b.csv"]
    assert both["session"].dtype == np.int64


def test_combine_clash_gets_suffix_and_explicit_labels():
    a = to_canonical(_canonical(3), {c: c for c in CANONICAL_COLUMNS})
    b = to_canonical(_canonical(3), {c: c for c in CANONICAL_COLUMNS})
    both = combine([a, b])
    assert both["study"].unique().tolist() == ["A", "A (2)"]
    assert any("became 'A (2)'" in m for m in both.attrs["messages"])

    named = combine([a, b], labels=["Trial 1", "Trial 2"])
    assert named["study"].unique().tolist() == ["Trial 1", "Trial 2"]


def test_combine_frame_without_study_column():
    df = _canonical(2).drop(columns="study")
    df.attrs["source_name"] = "clinic_x.xlsx"
    other = _canonical(2, study="Y")
    both = combine([df, other])
    assert both["study"].unique().tolist() == ["clinic_x", "Y"]
    unnamed = _canonical(2).drop(columns="study")
    assert combine([unnamed])["study"].unique().tolist() == ["Study 1"]


def test_combine_errors():
    with pytest.raises(DataError, match="empty"):
        combine([])
    with pytest.raises(DataError, match="no 'session' column"):
        combine([_canonical(2).drop(columns="session")])
    with pytest.raises(DataError, match="labels"):
        combine([_canonical(2)], labels=["a", "b"])


# ---------------------------------------------------------------------------
# summarize & template
# ---------------------------------------------------------------------------


def test_summarize_counts():
    df = pd.DataFrame(
        {
            "study": ["A"] * 5 + ["B"] * 2,
            "patient": ["1", "1", "1", "2", "2", "1", "2"],
            "session": [1, 2, 3, 1, 2, 1, 1],
            "alliance": [4, np.nan, 4, 4, 4, 3, 3],
            "symptoms": [1, 2, 3, 4, 5, np.nan, np.nan],
        }
    )
    s = summarize(df)
    a = s.per_study.set_index("study").loc["A"]
    assert a["n_patients"] == 2 and a["n_rows"] == 5
    assert (
        a["sessions_min"] == 2
        and a["sessions_max"] == 3
        and a["sessions_median"] == 2.5
    )
    assert a["pct_missing_alliance"] == pytest.approx(20.0)
    assert a["pct_missing_therapist_alliance"] == 100.0
    b = s.per_study.set_index("study").loc["B"]
    assert b["pct_missing_symptoms"] == 100.0
    ps = s.per_session.set_index(["study", "session"])
    assert ps.loc[("A", 2), "n_rows"] == 2 and ps.loc[("A", 2), "n_alliance"] == 1
    assert ps.loc[("B", 1), "n_symptoms"] == 0
    assert (
        s.totals["n_patients"] == 4
        and s.totals["n_rows"] == 7
        and s.totals["n_studies"] == 2
    )
    table = s.to_frame()
    assert table["study"].tolist() == ["A", "B", "All studies"]


def test_template_csv_round_trip():
    text = template_csv()
    df = load(text.encode(), "template.csv")
    assert list(df.columns) == list(CANONICAL_COLUMNS)
    assert df["patient"].nunique() == 2 and df.groupby("patient")[
        "session"
    ].nunique().tolist() == [3, 3]
    canon = to_canonical(df, suggest_mapping(df))
    report = validate(canon)
    assert report.ok
    assert _codes(report) == ["few_patients"]


def test_arrow_number_parsing_matches_pandas_on_the_number_pattern():
    """The intake casts number-like text with Arrow (no Python object per cell; issue 16, memory): on every
    form the number pattern admits it must give pandas' (Python's) correctly rounded values."""
    import re

    from analysis.data._common import _NUMBER_DOT_RE
    from analysis.data.read import _to_float

    rng = np.random.default_rng(7)
    forms = ["+3", "-3.5", ".5", "5.", "1e5", "1E-2", "-.5e+3", "12345678901234567890", "0.1", "1e400",
             "3.14159265358979323846", "2.2250738585072014e-308", "4.9e-324", "0.30000000000000004"]
    forms += [repr(float(x)) for x in rng.normal(0, 1e3, 200)] + [f"{x:.2f}" for x in rng.normal(4, 1, 200)]
    assert all(re.fullmatch(_NUMBER_DOT_RE, f) for f in forms)
    text = pd.Series(forms + [None], dtype="str")
    got = _to_float(text)
    want = pd.to_numeric(pd.Series(forms + [None], dtype=object), errors="coerce").to_numpy(dtype="float64")
    np.testing.assert_array_equal(got, want)
