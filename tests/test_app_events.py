"""The "Ruptures & gains" page, run inside the whole app with streamlit's AppTest."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analysis.simulate import SYMPTOM_INSTRUMENTS, simulate_study

pytestmark = pytest.mark.timeout(180)

APP = str(Path(__file__).resolve().parents[1] / "app.py")
GSI = next(i for i in SYMPTOM_INSTRUMENTS if i.name.startswith("SCL-90-R GSI"))


def _errors_other_than_missing_pages(at: AppTest) -> list[str]:
    # Every page listed in app.py exists now, so any exception counts.
    return [e.message for e in at.exception]


def _open_events(dataset: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if dataset is not None:
        at.session_state["dataset"] = dataset
    at.run()
    assert not _errors_other_than_missing_pages(at)
    at.switch_page("app_pages/events.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert [t.value for t in at.title] == ["Ruptures & gains"]
    return at


def _prevalence(at: AppTest):
    tables = [d.value for d in at.dataframe if "Rupture (n)" in d.value.columns]
    assert len(tables) == 1
    return tables[0]


def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def _one_study_without_therapist() -> dict:
    sim = simulate_study(40, range(1, 11), study="ICBT-like trial", symptom_instrument=GSI,
                         symptom_trend=-0.15, plant_ruptures=0.3, plant_gains=0.3, seed=11)
    df = sim.data
    assert "therapist_alliance" not in df.columns
    return {"df": df, "name": "Simulated one-study trial", "source": "demo", "notes": []}


def test_ipd_demo_prevalence_follows_k_and_charts_exist():
    at = _open_events()
    # prevalence, alliance series, symptoms, around gains, Jacobson–Truax plot, outcome forest plot
    assert len(at.get("plotly_chart")) >= 6
    assert at.number_input(key="ev_k").value == 1.0
    lenient = _prevalence(at)
    assert lenient["Study"].iloc[-1] == "All studies"
    metric_lenient = at.metric[0].value

    at.number_input(key="ev_k").set_value(2.0).run()
    assert not at.exception
    strict = _prevalence(at)
    assert strict["Study"].tolist() == lenient["Study"].tolist()
    # a stricter threshold can only remove ruptures, and with 5,350 patients it does remove some
    assert (strict["Rupture (n)"] <= lenient["Rupture (n)"]).all()
    assert strict["Rupture (n)"].iloc[-1] < lenient["Rupture (n)"].iloc[-1]
    assert at.metric[0].value != metric_lenient
    assert "k = 2 (strict)" in _markdown(at)
    # several studies: the relation to outcome is pooled
    assert "Pooled over" in _markdown(at)

    # the demo has therapist ratings: the therapist rater is offered and works
    assert "therapist" in at.radio(key="ev_rater").options[-1].lower()
    at.radio(key="ev_rater").set_value("therapist").run()
    assert not at.exception
    assert not at.error
    assert not _prevalence(at)["Rupture (n)"].equals(strict["Rupture (n)"])

    # a clinical cut-off used in one study only (Study 02 measured the SCL-90-R GSI)
    at.radio(key="ev_rc_cmode").set_value("scl90").run()
    at.multiselect(key="ev_rc_cstudies").set_value(["Study 02"]).run()
    assert not at.exception and not at.error
    rc = next(d.value for d in at.dataframe if "Recovered (n)" in d.value.columns).set_index("Study")
    assert rc.loc["Study 01", "Recovered (n)"] == "no c"
    assert rc.loc["Study 02", "Recovered (n)"] != "no c"
    assert rc.loc["Study 02", "Cut-off c"] == pytest.approx(0.57)


def test_one_study_without_therapist_ratings_and_bad_inputs():
    at = _open_events(_one_study_without_therapist())
    assert not at.error, [e.value for e in at.error]
    assert at.radio(key="ev_rater").options == ["Patient"]
    assert len(at.get("plotly_chart")) >= 4
    md = _markdown(at)
    assert "No pooling with one study" in md
    prev = _prevalence(at)
    assert prev["Study"].tolist() == ["ICBT-like trial"]  # no "All studies" row for one study

    rc = next(d.value for d in at.dataframe if "Improved (n)" in d.value.columns)
    assert "Recovered (n)" not in rc.columns  # no cut-off chosen: nobody can be "recovered"

    # the published SCL-90-R GSI cut-off: some patients are now "recovered"
    at.radio(key="ev_rc_cmode").set_value("scl90").run()
    assert not at.exception and not at.error
    rc = next(d.value for d in at.dataframe if "Recovered (n)" in d.value.columns)
    assert rc["Cut-off c"].iloc[0] == pytest.approx(0.57)
    assert rc["Recovered (n)"].iloc[0] > 0

    # invalid reliability: a clear message, never a traceback
    at.number_input(key="ev_sg_r").set_value(1.0).run()
    assert not at.exception
    assert any("reliability must be in [0, 1)" in e.value.replace("\\", "") for e in at.error)  # esc()aped
    at.number_input(key="ev_sg_r").set_value(0.9)
    at.number_input(key="ev_rc_r").set_value(1.2).run()
    assert not at.exception
    assert [e.value for e in at.error] and all("Reliable change" in e.value for e in at.error)

    # norms chosen but not typed in: a message, not an exception
    at.number_input(key="ev_rc_r").set_value(0.9)
    at.radio(key="ev_rc_cmode").set_value("norms").run()
    assert not at.exception
    assert any("Enter all four norm values" in e.value for e in at.error)

    # choices survive a visit to another page
    at.radio(key="ev_rc_cmode").set_value("none")
    at.number_input(key="ev_k").set_value(1.5).run()
    at.switch_page("app_pages/data.py").run()
    at.switch_page("app_pages/events.py").run()
    assert not at.exception
    assert at.number_input(key="ev_k").value == 1.5
