"""Real-shaped files in without editing (issue 13): multi-site wide workbook whose ids restart in
each site, SPSS value labels for sites, site columns named in other languages, grouping warning,
patients left out as empty reported in the data check. Fixtures: tests/fixtures/make_fixtures.py
(values from analysis.simulate, so the counts below are those written)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import data as adata
from tests.fixtures import make_fixtures as mf

FIX = Path(__file__).resolve().parent / "fixtures"


def test_fixtures_are_what_the_script_writes():
    wide = adata.load(FIX / "multisite_wide.xlsx")
    expected = mf.wide()
    assert list(wide.columns) == list(expected.columns)
    np.testing.assert_allclose(wide["wai_3"].to_numpy(float), expected["wai_3"].to_numpy(float))


def test_wide_workbook_with_restarting_ids_needs_the_site_as_part_of_the_key():
    raw = adata.load(FIX / "multisite_wide.xlsx")
    stubs = adata.detect_wide(raw)
    assert stubs == {"wai": "alliance", "bdi": "symptoms"}
    with pytest.raises(adata.DataError, match="restart in each 'Site'"):
        adata.wide_to_long(raw, "ID", stubs)
    groups = adata.grouping_columns(raw, patient="ID")
    assert groups[0].column == "Site" and groups[0].ids_repeat and groups[0].n_groups == 3
    long = adata.wide_to_long(raw, "ID", stubs, study_col="Site")
    mapping = adata.suggest_mapping(long)
    assert mapping["study"] == "Site" and mapping["patient"] == "ID"
    canon = adata.to_canonical(long, mapping)
    assert canon.groupby("study")["patient"].nunique().to_dict() == {s: mf.N_PER_SITE for s in mf.SITES_WIDE}
    assert len(canon) == 3 * mf.N_PER_SITE * mf.N_SESSIONS
    # patient 1 of Leipzig and patient 1 of Graz are different people with their own scores
    a = canon[(canon["study"] == "Leipzig") & (canon["patient"] == "1")]["alliance"].to_numpy()
    b = canon[(canon["study"] == "Graz") & (canon["patient"] == "1")]["alliance"].to_numpy()
    assert len(a) == len(b) == mf.N_SESSIONS and not np.allclose(a, b)


def test_empty_patients_are_reported_in_the_data_check():
    raw = adata.load(FIX / "multisite_wide.xlsx")
    long = adata.wide_to_long(raw, "ID", adata.detect_wide(raw), study_col="Site")
    canon = adata.to_canonical(long, adata.suggest_mapping(long))
    both = adata.combine([canon])
    for frame in (canon, both):
        dropped = [i for i in adata.validate(frame).warnings if i.code == "dropped_rows"]
        assert len(dropped) == 1
        assert "9 patients have no value in any session column" in dropped[0].message
        assert "25 (Leipzig)" in dropped[0].message and "27 (Basel)" in dropped[0].message


def test_rows_without_session_or_scores_are_reported():
    raw = pd.DataFrame({"id": ["1", "1", "2", "2"], "week": [1, None, 1, 2], "wai": [4.0, None, 3.0, 3.5],
                        "bdi": [20.0, None, 18.0, 17.0]})
    canon = adata.to_canonical(raw, adata.suggest_mapping(raw))
    codes = [i.code for i in adata.validate(canon).warnings]
    assert "dropped_rows" in codes


def test_spss_value_labels_name_the_sites():
    raw = adata.load(FIX / "labelled_sites.sav")
    mapping = adata.suggest_mapping(raw)
    assert mapping["study"] == "Klinik"
    canon = adata.to_canonical(raw, mapping)
    assert sorted(canon["study"].unique()) == sorted(mf.SITES_SAV.values())
    assert canon.groupby("study")["patient"].nunique().to_dict() == {s: mf.N_PER_SITE for s in mf.SITES_SAV.values()}
    assert any("value labels" in m for m in canon.attrs["messages"])


def test_ambiguous_value_labels_keep_the_codes():
    raw = pd.DataFrame({"site": [1.0, 1.0, 2.0, 2.0], "id": [1, 1, 1, 1], "session": [1, 2, 1, 2],
                        "wai": [4.0, 4.5, 3.0, 3.5], "bdi": [20.0, 19.0, 18.0, 17.0]})
    raw.attrs["value_labels"] = {"site": {1.0: "Same", 2.0: "Same"}}
    canon = adata.to_canonical(raw, adata.suggest_mapping(raw))
    assert sorted(canon["study"].unique()) == ["1", "2"]
    assert any("do not tell all codes apart" in m for m in canon.attrs["messages"])


def test_german_semicolon_csv_with_standort():
    raw = adata.load(FIX / "standort_semicolon.csv")
    assert raw["WAI_SR"].dtype == "float64"  # decimal commas read as numbers
    mapping = adata.suggest_mapping(raw)
    assert mapping == {"study": "Standort", "patient": "Klient", "session": "Sitzung", "alliance": "WAI_SR",
                       "symptoms": "PHQ9", "therapist_alliance": None, "therapist": None}
    canon = adata.to_canonical(raw, mapping)
    assert sorted(canon["study"].unique()) == sorted(mf.SITES_CSV)
    assert adata.validate(canon).ok


@pytest.mark.parametrize("name", ["Standort", "centre", "center", "Klinik", "sitio", "site", "Zentrum", "clinic",
                                  "Site_ID", "KLINIK"])
def test_site_names_in_other_languages_are_suggested_as_study(name):
    raw = pd.DataFrame({name: ["A"], "patient": ["1"], "session": [1], "wai": [4.0], "bdi": [20.0]})
    assert adata.suggest_mapping(raw)["study"] == name


def test_clinician_is_a_therapist_not_a_site():
    raw = pd.DataFrame({"clinician": ["T1"], "patient": ["1"], "session": [1], "wai": [4.0], "bdi": [20.0]})
    m = adata.suggest_mapping(raw)
    assert m["therapist"] == "clinician" and m["study"] is None


def test_unmapped_grouping_column_is_warned_about():
    raw = adata.load(FIX / "standort_semicolon.csv").rename(columns={"Standort": "Gruppe"})
    mapping = adata.suggest_mapping(raw)
    assert mapping["study"] is None
    groups = adata.grouping_columns(raw, patient=mapping["patient"], session=mapping["session"])
    assert [g.column for g in groups] == ["Gruppe"]
    assert groups[0].ids_repeat and "looks like a grouping" in groups[0].message and "k = 1" in groups[0].message


def test_no_grouping_warning_for_patient_level_covariates_that_vary_within_patients_or_are_unique():
    rng = np.random.default_rng(3)
    n, t = 40, 5
    raw = pd.DataFrame({"id": np.repeat(np.arange(n), t), "session": np.tile(np.arange(1, t + 1), n),
                        "phase": np.tile(["pre", "pre", "mid", "post", "post"], n),
                        "age": np.repeat(rng.integers(18, 70, n), t),
                        "wai": rng.normal(5, 1, n * t), "bdi": rng.normal(20, 5, n * t)})
    cols = [g.column for g in adata.grouping_columns(raw, patient="id", session="session")]
    assert "phase" not in cols  # varies within a patient and keys do not repeat
    assert "age" not in cols  # too many distinct values, few patients each


def test_require_canonical_is_one_guard_with_plain_messages():
    ok = pd.DataFrame({"study": ["A", "A"], "patient": [1, 1], "session": [2.0, 1.0], "alliance": [4, 5],
                       "symptoms": [20, 19]})
    out = adata.require_canonical(ok)
    assert list(out["session"]) == [1, 2] and out["session"].dtype == "int64"
    assert out["patient"].iloc[0] == "1" and out["alliance"].dtype == "float64"
    with pytest.raises(adata.DataError, match="lack the column"):
        adata.require_canonical(ok.drop(columns="symptoms"))
    with pytest.raises(ValueError, match="whole number"):
        adata.require_canonical(ok.assign(session=[1.5, 2]))
    with pytest.raises(ValueError, match="more than once"):
        adata.require_canonical(ok.assign(session=[1, 1]))
    with pytest.raises(ValueError, match="must hold numbers"):
        adata.require_canonical(ok.assign(alliance=["x", 4]))
    assert adata.require_canonical(ok.drop(columns="study"), study=False, values=False) is not None
    kept = adata.require_canonical(ok.set_index(pd.Index([7, 3])), sort=False)
    assert list(kept.index) == [7, 3] and list(kept["session"]) == [2, 1]  # the caller's rows, checked
    with pytest.raises(adata.DataError, match=r"patient 1 of study A has more than one row for session 1"):
        adata.require_canonical(ok.assign(session=[1, 1]))
    with pytest.raises(adata.DataError, match=r"\(METHODS §1\)\. Convergence needs 'therapist_alliance'\.$"):
        adata.require_canonical(ok, ("alliance", "therapist_alliance"), why="Convergence needs 'therapist_alliance'.")


def test_one_study_picks_the_only_or_the_named_study():
    two = pd.DataFrame({"study": ["A", "B", "B"], "patient": ["1", "2", "3"], "session": [1, 1, 1]})
    label, rows = adata.one_study(two, "B")
    assert label == "B" and list(rows["patient"]) == ["2", "3"]
    with pytest.raises(adata.DataError, match="hold 2 studies; choose one"):
        adata.one_study(two)
    with pytest.raises(adata.DataError, match="Study 'C' is not in the data"):
        adata.one_study(two, "C")
    assert adata.one_study(two[two["study"] == "A"])[0] == "A"
    assert adata.one_study(two.drop(columns="study"))[0] == "Study"  # no study column: one study


def test_preview_reads_only_the_head():
    big = "a;b\n" + "".join(f"{i};{i},5\n" for i in range(50_000))
    head = adata.load(big.encode(), "big.csv", nrows=100)
    assert len(head) == 100 and head.attrs["preview"] and not head.attrs["complete"]
    assert head["b"].iloc[3] == 3.5
    small = adata.load(b"a;b\n1;2\n", "s.csv", nrows=100)
    assert small.attrs["complete"]
