"""The Screening page inside the whole app (streamlit AppTest).

``AppTest.from_file`` resolves a relative path against the calling file, so
the app is given by its absolute path. ``file_uploader.set_value`` works in
streamlit 1.67's AppTest and is used for the upload path.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.tabs_util import open_with_link

pytestmark = pytest.mark.timeout(120)

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "app_pages/screening.py"


def _new_study_csv(n_patients=40, n_sessions=8, seed=7, drop_symptoms=False) -> bytes:
    """A hand-made study with researcher-style column names."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_patients):
        ma, ms = 5.0 + 0.6 * rng.standard_normal(), 22.0 + 6.0 * rng.standard_normal()
        for t in range(1, n_sessions + 1):
            rows.append((f"C{i + 1:02d}", t, round(ma + 0.5 * rng.standard_normal(), 2),
                         round(ms + 3.0 * rng.standard_normal(), 1)))
    df = pd.DataFrame(rows, columns=["ID", "session", "WAI", "BDI"])
    if drop_symptoms:
        df = df.drop(columns="BDI")
    return df.to_csv(index=False).encode("utf-8")


def _plain(text: str) -> str:
    """Markdown text as the reader sees it (user strings are backslash-escaped by ui.safe.esc)."""
    return re.sub(r"\\(.)", r"\1", text)


def _main_text(at: AppTest) -> str:
    parts = [m.value for m in at.main.markdown] + [c.value for c in at.main.caption]
    parts += [e.value for e in (*at.main.success, *at.main.warning, *at.main.error, *at.main.info)]
    return _plain("\n".join(parts))


def _verdict(at: AppTest) -> str:
    found = [e.value for e in (*at.main.success, *at.main.warning, *at.main.error) if "Verdict" in e.value]
    assert len(found) == 1, _main_text(at)
    return found[0]


def _open(dataset: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    if dataset is not None:
        at.session_state["dataset"] = dataset
    at.run()
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert [t.value for t in at.title] == ["Screening"]
    return at


def test_upload_a_new_study_shows_checklist_verdict_and_forest_plot():
    at = _open()
    assert "Upload the new study" in _main_text(at)
    assert not at.get("plotly_chart")
    at.file_uploader[0].set_value(("d.csv", _new_study_csv(), "text/csv"))
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    # columns were mapped from the researcher's names
    assert at.selectbox(key="scr_map_alliance_d.csv").value == "WAI"
    assert at.selectbox(key="scr_map_symptoms_d.csv").value == "BDI"
    assert "Usable" in _verdict(at)
    checklist = at.main.table[0].value
    assert {"Patients", "Sessions per patient", "Missing values", "ICC of alliance", "ICC of symptoms",
            "Within-patient SD of alliance", "Within-patient SD of symptoms", "Range problems",
            "Pairs for lag 1", "Stage-1 model"} <= set(checklist.index)
    assert checklist.loc["Patients", "Result"] == "40"
    assert len(at.get("plotly_chart")) == 1
    # the IPD demo has 17 studies: compared with the whole collection, and told whether inside the PI
    assert at.radio(key="scr_ref_mode").value == "collection"
    text = _main_text(at)
    assert text.count("prediction interval (") >= 2
    assert "k = 17" in at.radio(key="scr_ref_mode").options[0]


def test_bad_upload_gives_a_message_and_keeps_the_choices():
    at = _open()
    at.file_uploader[0].set_value(("broken.csv", b"\x00\x01\x02 not a table", "text/csv"))
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.main.error and "broken.csv" in _plain(at.main.error[0].value)
    # a file without a symptom column: asked to choose it, nothing fitted
    at.file_uploader[0].set_value(("nosym.csv", _new_study_csv(drop_symptoms=True), "text/csv"))
    at.run()
    assert not at.exception
    assert any("Choose the column for symptoms" in w.value for w in at.main.warning)
    assert not at.get("plotly_chart")
    # mapping a wrong (text) column: a message, and the user's choice stays
    at.selectbox(key="scr_map_symptoms_nosym.csv").set_value("ID")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.main.error
    assert "column choices are kept" in at.main.error[0].value
    assert at.selectbox(key="scr_map_symptoms_nosym.csv").value == "ID"


def test_screen_a_study_of_the_loaded_collection():
    at = _open()
    at.radio(key="scr_source").set_value("collection").run()
    assert not at.exception, [e.message for e in at.exception]
    at.selectbox(key="scr_coll_study").set_value("Study 03").run()
    assert not at.exception
    assert "Checklist: Study 03" in [h.value for h in at.main.header]
    assert "Usable" in _verdict(at)
    assert len(at.get("plotly_chart")) == 1
    # compared with the other 16 studies, not with itself
    assert "k = 16" in at.radio(key="scr_ref_mode").options[0]
    assert "re-pooled without Study 03" in _main_text(at)


def _one_study_dataset() -> dict:
    from analysis import data as adata

    raw = pd.read_csv(pd.io.common.BytesIO(_new_study_csv(n_patients=30, seed=3)))
    df = adata.to_canonical(raw, {"patient": "ID", "session": "session", "alliance": "WAI", "symptoms": "BDI"},
                            study="Only trial")
    return {"df": df, "name": "One study", "source": "upload", "notes": []}


def test_k1_collection_asks_for_a_reference_typed_in_by_hand():
    at = _open(_one_study_dataset())
    at.radio(key="scr_source").set_value("collection").run()
    assert not at.exception, [e.message for e in at.exception]
    assert any("no other studies to pool (k = 1)" in i.value for i in at.main.info)
    assert "scr_ref_mode" not in [r.key for r in at.main.radio]
    assert len(at.get("plotly_chart")) == 1  # the study alone
    # a published reference: estimate, CI and PI per direction
    refs = {"alliance_to_symptoms": (-0.10, -0.13, -0.07, -0.22, 0.03),
            "symptoms_to_alliance": (-0.60, -0.65, -0.55, -0.80, -0.40)}
    for d, vals in refs.items():
        for f, v in zip(("estimate", "ci_low", "ci_high", "pi_low", "pi_high"), vals):
            at.number_input(key=f"scr_ref_{d}_{f}").set_value(v)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    coef = next(d.value for d in at.main.dataframe if "Estimate" in d.value.columns)
    sentences = {m.value.split(".**")[0].strip("*"): m.value for m in at.main.markdown if "prediction interval" in m.value}
    for (_d, vals), label in zip(refs.items(), ("Alliance → next-session symptoms", "Symptoms → next-session alliance")):
        est = float(coef.loc[coef["Direction"] == label, "Estimate"].iloc[0])
        lo, hi = vals[3], vals[4]
        sentence = sentences[label]
        assert f"reference's 95% prediction interval ({lo:.2f} to {hi:.2f})".replace("-", "−") in sentence
        assert ("inside" if lo <= est <= hi else "outside") in sentence
    # no cross-lag was built into the data: far from a reference of −0.6
    assert "outside" in sentences["Symptoms → next-session alliance"]
    # a typo (CI that does not contain the estimate): a message, the numbers stay
    at.number_input(key="scr_ref_alliance_to_symptoms_ci_low").set_value(0.2).run()
    assert not at.exception
    assert any("must contain the estimate" in e.value for e in at.main.error)
    assert at.number_input(key="scr_ref_alliance_to_symptoms_ci_low").value == 0.2
    assert at.number_input(key="scr_ref_alliance_to_symptoms_estimate").value == -0.10
    assert len(at.get("plotly_chart")) == 1


def test_choices_survive_a_visit_to_another_page():
    at = _open()
    at.file_uploader[0].set_value(("d.csv", _new_study_csv(), "text/csv"))
    at.run()
    at.radio(key="scr_ref_mode").set_value("manual").run()
    at.number_input(key="scr_ref_alliance_to_symptoms_estimate").set_value(-0.12).run()
    assert not at.exception
    at.switch_page("app_pages/methods.py").run()
    assert not at.exception
    at.switch_page(PAGE).run()
    assert not at.exception, [e.message for e in at.exception]
    assert "uploaded earlier in this session" in _main_text(at)
    assert at.radio(key="scr_ref_mode").value == "manual"
    assert at.number_input(key="scr_ref_alliance_to_symptoms_estimate").value == -0.12
    assert "Usable" in _verdict(at)


def test_removing_the_file_clears_the_screening():
    at = _open()
    at.file_uploader[0].set_value(("d.csv", _new_study_csv(), "text/csv"))
    at.run()
    assert "Usable" in _verdict(at)
    at.file_uploader[0].set_value(None)
    at.run()
    assert not at.exception
    assert "Upload the new study" in _main_text(at)
    assert not at.get("plotly_chart")


def test_multisite_wide_workbook_is_screened_one_site_at_a_time():
    fix = Path(__file__).resolve().parent / "fixtures" / "multisite_wide.xlsx"
    at = _open()
    at.file_uploader[0].set_value(("multisite_wide.xlsx", fix.read_bytes(), "application/octet-stream"))
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]
    # ids restart in each site: the site column is offered as part of the key, chosen by default
    assert at.selectbox(key="scr_widesite_multisite_wide.xlsx").value == "Site"
    pick = at.selectbox(key="scr_filestudy_multisite_wide.xlsx")
    assert sorted(pick.options) == ["Basel", "Graz", "Leipzig"]
    pick.set_value("Graz").run()
    assert not at.exception
    assert "Checklist: Graz" in [h.value for h in at.main.header]
    assert at.main.table[0].value.loc["Patients", "Result"] == "24"


def _open_with_url(**params) -> AppTest:
    """The Screening page opened from a link carrying ``params`` in its query string."""
    return open_with_link(PAGE, params, timeout=90)


def _url(at: AppTest) -> dict:
    return {k: (v[0] if isinstance(v, list) else v) for k, v in ((k, at.query_params[k]) for k in at.query_params)}


def test_options_in_the_url_are_applied_on_load_and_written_back():
    """A shared link (ui/persist.py): ?screen=collection&compare=manual opens the page on a study of the loaded
    collection compared with a typed-in reference; a value that is not an option is ignored; the URL never
    carries the study's name."""
    at = _open_with_url(screen="collection", compare="manual")
    assert at.radio(key="scr_source").value == "collection"
    assert at.radio(key="scr_ref_mode").value == "manual"
    assert any("Type at least the estimate" in c.value for c in at.main.caption)
    url = _url(at)
    assert url["screen"] == "collection" and url["compare"] == "manual"
    study = at.selectbox(key="scr_coll_study").value
    assert all(study not in str(v) for v in url.values())
    # a changed choice goes back into the URL
    at.radio(key="scr_ref_mode").set_value("collection").run()
    assert _url(at)["compare"] == "collection"
    assert _open_with_url(screen="somewhere").radio(key="scr_source").value == "upload"
