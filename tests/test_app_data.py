"""AppTest: the Data page — demo choice, upload with column mapping, validation, summary."""

import io
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis.simulate import simulate_study

ROOT = Path(__file__).resolve().parents[1]


def _data_page():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.run()
    at.switch_page("app_pages/data.py")
    at.run()
    assert not at.exception
    return at


def _plain(text: str) -> str:
    """Markdown text as the reader sees it (user strings are backslash-escaped by ui.safe.esc, which also puts
    an invisible word joiner, U+2060, into bare URLs so that they do not become links)."""
    return re.sub(r"\\(.)", r"\1", text).replace("\u2060", "")


def _csv(df, **kw) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False, **kw)
    return buf.getvalue().encode("utf-8")


def test_demo_summary_and_switching_demo():
    at = _data_page()
    summary = at.table[0].value
    assert summary["Patients"].iloc[:17].str.replace(",", "").astype(int).sum() == 5350
    assert summary.loc["All studies", "Patients"] == "5,350"
    assert len(at.get("plotly_chart")) == 0  # charts on demand: the first view loads no plotly bundle
    at.toggle(key="data_charts").set_value(True).run()
    assert len(at.get("plotly_chart")) == 3
    at.selectbox(key="demo_choice").set_value("Within/between demo: one ICBT trial, 182 patients, 11 weeks")
    at.button(key="load_demo").click().run()
    assert not at.exception
    assert at.session_state["dataset"]["df"]["patient"].nunique() == 182


def test_upload_with_own_column_names_is_mapped_and_loaded():
    d = simulate_study(15, range(1, 6), seed=4).data
    raw = d.rename(columns={"patient": "client_id", "session": "week", "alliance": "wai_sr", "symptoms": "phq9"})
    at = _data_page()
    at.file_uploader[0].set_value(("trial_a.csv", _csv(raw.drop(columns=["study"]), sep=";", decimal=","),
                                   "text/csv")).run()
    assert not at.exception
    # mapping widgets pre-filled by suggest_mapping
    assert at.selectbox(key="map_0_patient_trial_a.csv").value == "client_id"
    assert at.selectbox(key="map_0_session_trial_a.csv").value == "week"
    assert at.selectbox(key="map_0_alliance_trial_a.csv").value == "wai_sr"
    assert at.selectbox(key="map_0_symptoms_trial_a.csv").value == "phq9"
    at.button(key="use_files").click().run()
    assert not at.exception
    ds = at.session_state["dataset"]
    assert ds["source"] == "upload" and set(ds["df"]["study"]) == {"trial_a"}
    assert ds["df"]["patient"].nunique() == 15
    pd.testing.assert_series_equal(ds["df"]["alliance"].reset_index(drop=True),
                                   d["alliance"].reset_index(drop=True), check_names=False)
    assert ds["n_patients"] == 15  # what the sidebar shows (checked in the browser test: AppTest omits
    # the sidebar elements app.py writes once a page has been switched to)


def test_upload_with_errors_blocks_and_keeps_choices():
    d = simulate_study(12, range(1, 4), seed=5).data.drop(columns=["study"])
    d = pd.concat([d, d.iloc[[0]]], ignore_index=True)  # a duplicate (patient, session) row
    at = _data_page()
    before = at.session_state["dataset"]["name"]
    at.file_uploader[0].set_value(("dup.csv", _csv(d), "text/csv")).run()
    at.text_input(key="label_0_dup.csv").set_value("My study").run()
    at.button(key="use_files").click().run()
    assert not at.exception
    assert at.session_state["dataset"]["name"] == before  # nothing replaced
    errors = _plain(" ".join(e.value for e in at.error))
    assert "exact copy" in errors and errors.count("P0001 session 1") == 1  # issue 23 #11: named once
    assert at.text_input(key="label_0_dup.csv").value == "My study"  # the user's input is kept
    # the demo's own check no longer reads as if it were about the rejected file
    assert not any(s.value == "No problems found." for s in at.success)
    # one click drops the exact copy (the count is on the button) and loads the file
    assert at.button(key="drop_copies").label == "Drop the 1 exact copy and load"
    at.button(key="drop_copies").click().run()
    assert not at.exception
    ds = at.session_state["dataset"]
    assert ds["source"] == "upload" and len(ds["df"]) == len(d) - 1
    assert "1 exact copy of a row was dropped." in ds["notes"]


def test_conflicting_duplicates_are_listed_once_and_not_droppable():
    d = simulate_study(12, range(1, 4), seed=5).data.drop(columns=["study"])
    clash = d.iloc[[0]].copy()
    clash["alliance"] += 1
    d = pd.concat([d, clash], ignore_index=True)
    at = _data_page()
    at.file_uploader[0].set_value(("clash.csv", _csv(d), "text/csv")).run()
    at.button(key="use_files").click().run()
    errors = _plain(" ".join(e.value for e in at.error))
    assert "different values" in errors and errors.count("P0001 session 1") == 1
    assert not [b for b in at.button if b.key == "drop_copies"]


def test_absent_therapist_column_is_reported_as_absent():
    """Issue 23 #14: an absent therapist column showed as "Missing 100%"."""
    d = simulate_study(12, range(1, 4), seed=5).data.drop(columns=["study", "therapist_alliance"],
                                                           errors="ignore")
    at = _data_page()
    at.file_uploader[0].set_value(("no_t.csv", _csv(d), "text/csv")).run()
    at.button(key="use_files").click().run()
    assert at.session_state["dataset"]["source"] == "upload"
    col = at.table[0].value["Missing therapist alliance"]
    assert set(col) == {"no column"}
    assert not any("therapist" in w.value.lower() for w in at.warning)
    assert any("No therapist-rated alliance column" in i.value for i in at.info)


def test_unreadable_file_gets_a_message_not_a_traceback():
    at = _data_page()
    at.file_uploader[0].set_value(("broken.xlsx", b"\x00\x01 not a workbook", "application/octet-stream")).run()
    assert not at.exception
    assert "broken.xlsx" in _plain(" ".join(e.value for e in at.error))


def test_two_files_become_two_studies():
    a = simulate_study(10, range(1, 5), seed=1).data.drop(columns=["study"])
    b = simulate_study(11, range(1, 5), seed=2).data.drop(columns=["study"])
    at = _data_page()
    at.file_uploader[0].set_value([("site_a.csv", _csv(a), "text/csv"), ("site_b.csv", _csv(b), "text/csv")]).run()
    at.button(key="use_files").click().run()
    assert not at.exception
    df = at.session_state["dataset"]["df"]
    assert sorted(df["study"].unique()) == ["site_a", "site_b"]
    assert df.groupby("study")["patient"].nunique().to_dict() == {"site_a": 10, "site_b": 11}


FIX = ROOT / "tests" / "fixtures"
REAL_FILES = {
    "multisite_wide.xlsx": ("Basel", "Graz", "Leipzig"),
    "labelled_sites.sav": ("Bern", "Luzern", "Zürich"),
    "standort_semicolon.csv": ("Dresden", "Hamburg", "Köln"),
}


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_shaped_file_goes_to_the_pooled_page_without_editing(name):
    at = _data_page()
    at.file_uploader[0].set_value((name, (FIX / name).read_bytes(), "application/octet-stream")).run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    at.button(key="use_files").click().run()
    assert not at.exception, [e.message for e in at.exception]
    ds = at.session_state["dataset"]
    assert ds["source"] == "upload", [e.value for e in at.error]
    df = ds["df"]
    assert tuple(sorted(df["study"].unique())) == REAL_FILES[name]
    assert df.groupby("study")["patient"].nunique().tolist() == [24, 24, 24]
    if name == "multisite_wide.xlsx":  # the 9 empty patients are named in the data check
        warnings = _plain(" ".join(w.value for w in at.warning))
        assert "9 patients have no value in any session column" in warnings
    at.switch_page("app_pages/pooled.py").run()
    assert not at.exception, [e.message for e in at.exception]
    forest = json.dumps(json.loads(at.get("plotly_chart")[0].proto.spec), ensure_ascii=False)
    assert all(s in forest for s in REAL_FILES[name])


def test_unmapped_site_column_gets_a_plain_warning():
    raw = pd.read_csv(FIX / "standort_semicolon.csv", sep=";", decimal=",", encoding="utf-8-sig")
    at = _data_page()
    at.file_uploader[0].set_value(("gruppen.csv", _csv(raw.rename(columns={"Standort": "Gruppe"})),
                                   "text/csv")).run()
    assert not at.exception
    assert at.selectbox(key="map_0_study_gruppen.csv").value == "— not in this file —"
    warnings = _plain(" ".join(w.value for w in at.warning))
    assert "'Gruppe' looks like a grouping" in warnings and "k = 1" in warnings


def test_hostile_file_and_column_names_stay_text():
    hostile = "![x](http://127.0.0.1:9/beacon.png)"
    d = simulate_study(10, range(1, 4), seed=6).data.drop(columns=["study"])
    d = d.rename(columns={"alliance": "wai <img src=x onerror=alert(1)>"})
    at = _data_page()
    at.file_uploader[0].set_value((f"{hostile}.csv", _csv(d), "text/csv")).run()
    assert not at.exception
    shown = [m.value for m in at.markdown] + [c.value for c in at.caption] + [e.label for e in at.expander]
    shown += [w.value for w in (*at.warning, *at.error, *at.info, *at.success)]
    assert not any(hostile in s or "<img" in s for s in shown)
    assert any(_plain(s).startswith(hostile) for s in shown)  # the name is shown, as text


def test_a_replaced_upload_is_not_kept_alive():
    """Issue 16 (memory): once another data set is loaded, nothing in the session keeps the uploaded frame
    (Streamlit's copy of the last run's session state kept it; so did the whole-data download's callable)."""
    import gc
    import weakref

    d = simulate_study(12, range(1, 6), seed=5).data
    at = _data_page()
    at.file_uploader[0].set_value(("trial_b.csv", _csv(d.drop(columns=["study"])), "text/csv")).run()
    at.button(key="use_files").click().run()
    assert not at.exception
    assert at.session_state["dataset"]["source"] == "upload"
    uploaded = weakref.ref(at.session_state["dataset"]["df"])
    at.button(key="load_demo").click().run()
    assert not at.exception
    assert at.session_state["dataset"]["source"] == "demo"
    from ui import jobs

    for job in jobs._snapshot():  # the upload's background fit holds its frame while it runs (a loaded machine)
        jobs.wait(job, 120)
    gc.collect()
    assert uploaded() is None


@pytest.mark.parametrize("names", [
    {"study": "Standort", "patient": "Patient", "session": "Sitzung", "alliance": "Allianz",
     "symptoms": "Symptome", "therapist": "Therapeut"},
    {"study": "centro", "patient": "paziente", "session": "seduta", "alliance": "alleanza",
     "symptoms": "sintomi", "therapist": "terapeuta"},
    {"study": "site", "patient": "patiënt", "session": "séance", "alliance": "alliance_thérapeutique",
     "symptoms": "symptômes", "therapist": "thérapeute"},
    {"study": "sitio", "patient": "paciente", "session": "sesión", "alliance": "alianza", "symptoms": "síntomas",
     "therapist": "terapeuta"},
    {"study": "locatie", "patient": "cliënt", "session": "sessie", "alliance": "alliantie", "symptoms": "klachten",
     "therapist": "behandelaar"},
    {"study": "mottagning", "patient": "klient", "session": "vecka", "alliance": "allians", "symptoms": "symtom",
     "therapist": "terapeut"},
])
def test_localized_column_names_are_mapped(names):
    """Issue 23 #13: Allianz, Symptome, Sitzung, Therapeut … (de, fr, es, nl, it, sv) were not recognised."""
    d = simulate_study(12, range(1, 4), seed=5).data
    d["therapist"] = (d["patient"].astype(str).str[-1:].astype(int) % 3).astype(str)
    at = _data_page()
    at.file_uploader[0].set_value(("lokal.csv", _csv(d.rename(columns=names)), "text/csv")).run()
    for canonical, own in names.items():
        assert at.selectbox(key=f"map_0_{canonical}_lokal.csv").value == own, canonical


def test_spss_variable_labels_are_shown_and_used(tmp_path):
    """Issue 23 #13: SPSS variable labels feed the guess and are shown beside each column."""
    import pyreadstat  # a runtime requirement (SPSS files)
    d = simulate_study(12, range(1, 4), seed=5).data.drop(columns=["study", "therapist_alliance"], errors="ignore")
    d = d.rename(columns={"patient": "v_a", "session": "v_b", "alliance": "v_c", "symptoms": "v_d"})
    d["v_a"] = d["v_a"].astype(str)
    path = tmp_path / "labelled.sav"
    pyreadstat.write_sav(d, str(path), column_labels=["Patient code", "Session number",
                                                      "Working alliance (WAI-SR)", "OQ-45 total score"])
    at = _data_page()
    at.file_uploader[0].set_value(("labelled.sav", path.read_bytes(), "application/octet-stream")).run()
    assert not at.exception
    for canonical, col in (("patient", "v_a"), ("session", "v_b"), ("alliance", "v_c"), ("symptoms", "v_d")):
        assert at.selectbox(key=f"map_0_{canonical}_labelled.sav").value == col, canonical
    box = at.selectbox(key="map_0_alliance_labelled.sav")
    assert "v_c — Working alliance (WAI-SR)" in box.options
    assert any("Variable labels from the file" in c.value and "OQ-45 total score" in _plain(c.value)
               for c in at.caption)
