"""The "Ruptures & gains" page, run inside the whole app with streamlit's AppTest."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis import events as ev
from analysis.simulate import SYMPTOM_INSTRUMENTS, simulate_study
from tests.tabs_util import each_tab
from ui.tabs import EVENTS_TABS

pytestmark = pytest.mark.timeout(420)

APP = str(Path(__file__).resolve().parents[1] / "app.py")
GSI = next(i for i in SYMPTOM_INSTRUMENTS if i.name.startswith("SCL-90-R GSI"))


def _errors_other_than_missing_pages(at: AppTest) -> list[str]:
    # Every page listed in app.py exists now, so any exception counts.
    return [e.message for e in at.exception]


def _open_events(dataset: dict | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    if dataset is not None:
        at.session_state["dataset"] = dataset
    at.run()
    assert not _errors_other_than_missing_pages(at)
    at.switch_page("app_pages/events.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert [t.value for t in at.title] == ["Ruptures & gains"]
    return at


def _tab(at: AppTest, i: int) -> AppTest:
    """Open the page's i-th tab (lazy tabs: a tab's results are computed and drawn only while it is open)."""
    at.session_state["ev_tab"] = EVENTS_TABS[i]
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _prevalence(at: AppTest):
    tables = [d.value for d in at.dataframe if "Rupture (n)" in d.value.columns]
    assert len(tables) == 1
    return tables[0]


def _markdown(at: AppTest) -> str:
    """The page's Markdown as a reader sees it: ui.safe.md backslash-escapes punctuation in result sentences."""
    return re.sub(r"\\(.)", r"\1", "\n".join(m.value for m in at.markdown)).replace("\u2060", "")


def _one_study_without_therapist() -> dict:
    sim = simulate_study(40, range(1, 11), study="ICBT-like trial", symptom_instrument=GSI,
                         symptom_trend=-0.15, plant_ruptures=0.3, plant_gains=0.3, seed=11)
    df = sim.data
    assert "therapist_alliance" not in df.columns
    return {"df": df, "name": "Simulated one-study trial", "source": "demo", "notes": []}


def test_ipd_demo_observed_vs_chance_and_options():
    at = _open_events()
    # prevalence, alliance series, symptoms, around gains, trajectory, Jacobson–Truax, forest: over the tabs,
    # each drawn only while its tab is open
    per_tab = [len(at.get("plotly_chart")) for _ in each_tab(at, "app_pages/events.py")]
    assert sum(per_tab) >= 7 and per_tab[0] == 2, per_tab
    assert at.selectbox(key="ev_crit").value == "default"
    assert at.number_input(key="ev_k").value == pytest.approx(ev.DEFAULT_K)
    assert at.selectbox(key="ev_sd_opt").value == "moderated"
    prev = _prevalence(at)
    assert prev["Study"].iloc[-1] == "All studies"
    # observed beside the chance reference, in the table, the metrics and the sentence
    assert "Expected by chance (%)" in prev.columns
    tot = prev.iloc[-1]
    assert 0 < tot["Expected by chance (%)"] < tot["Rupture (%)"] < 50  # percentages
    assert [m.label for m in at.metric][:2] == ["Patients with ≥ 1 rupture", "Expected by chance"]
    assert "Expected by chance" in _markdown(at)
    chart = next(c for c in at.get("plotly_chart") if "expected by chance" in c.proto.spec)
    assert chart is not None

    # a stricter k flags fewer patients
    at.number_input(key="ev_k").set_value(3.0).run()
    assert not at.exception
    strict = _prevalence(at)
    assert strict["Rupture (n)"].iloc[-1] < prev["Rupture (n)"].iloc[-1]

    # the 1-SD floor: its chance rate beside it, named a floor, not a detector
    at.selectbox(key="ev_crit").set_value("other_sessions").run()
    assert not at.exception and not at.error
    floor = [w.value for w in at.warning if "a floor" in w.value]
    assert len(floor) == 1 and "by chance alone it would flag" in floor[0]
    assert _prevalence(at).iloc[-1]["Expected by chance (%)"] > 50

    # the earlier published-style criterion flags far more patients than its chance reference allows
    at.selectbox(key="ev_crit").set_value("mean_sd").run()
    assert not at.exception and not at.error
    assert at.number_input(key="ev_k").value == 1.0  # the preset's k
    old = _prevalence(at).iloc[-1]
    assert old["Rupture (%)"] > 50 and old["Expected by chance (%)"] > 50
    at.selectbox(key="ev_sd_opt").set_value("pooled").run()
    assert not at.exception and not at.error

    # both raters (the demo has therapist ratings): fewer ruptures, with their own chance reference
    at.selectbox(key="ev_crit").set_value("default").run()
    at.radio(key="ev_rater").set_value("both").run()
    assert not at.exception and not at.error
    both = _prevalence(at)
    assert both["Rupture (n)"].iloc[-1] <= prev["Rupture (n)"].iloc[-1]
    assert both["Expected by chance (%)"].iloc[-1] < prev["Expected by chance (%)"].iloc[-1]

    # per-study reliability and SD for the sudden-gain cut-off: prefilled with each study's baseline SD
    _tab(at, 1)
    at.toggle(key="ev_sg_perstudy").set_value(True).run()
    assert not at.exception and not at.error
    gains = next(d.value for d in at.dataframe if "Cut-off" in d.value.columns).set_index("Study")
    assert gains.loc["Study 02", "SD"] < 1 < gains.loc["Study 01", "SD"]  # GSI vs a wider scale
    assert gains.loc["Study 02", "Cut-off"] == pytest.approx(1.96 * 2 ** 0.5 * gains.loc["Study 02", "SD"] * 0.1 ** 0.5)
    at.radio(key="ev_sg_better").set_value("higher").run()
    assert not at.exception and not at.error
    at.radio(key="ev_sg_better").set_value("lower")

    # sudden losses and a reliable-change method other than Jacobson–Truax
    at.radio(key="ev_sg_kind").set_value("loss").run()
    assert not at.exception and not at.error
    assert "sudden loss" in _markdown(at)
    _tab(at, 2)
    at.radio(key="ev_rc_method").set_value("HA").run()
    assert not at.exception and not at.error
    assert "Method: Hageman–Arrindell (1999). Reliable change when |RC_INDIV| > 1.65." in _markdown(at)
    # per-study r and SD on the reliable-change tab too: the same inputs, the same baseline SDs
    at.toggle(key="ev_rc_perstudy").set_value(True).run()
    assert not at.exception and not at.error
    rct = next(d.value for d in at.dataframe if "Improved (n)" in d.value.columns).set_index("Study")
    assert rct.loc["Study 02", "SD"] == pytest.approx(gains.loc["Study 02", "SD"])
    assert rct.loc["Study 01", "r"] == pytest.approx(0.9)

    # a clinical cut-off used in one study only (Study 02 measured the SCL-90-R GSI)
    at.radio(key="ev_rc_method").set_value("JT")
    at.radio(key="ev_rc_cmode").set_value("scl90").run()
    at.multiselect(key="ev_rc_cstudies").set_value(["Study 02"]).run()
    assert not at.exception and not at.error
    rc = next(d.value for d in at.dataframe if "Recovered (n)" in d.value.columns).set_index("Study")
    assert pd.isna(rc.loc["Study 01", "Recovered (n)"])
    assert rc.loc["Study 02", "Cut-off c"] == pytest.approx(0.57)

    # rupture–repair vs unrepaired vs none
    _tab(at, 3)
    at.radio(key="ev_out_event").set_value("repair_groups").run()
    assert not at.exception and not at.error
    groups = next(d.value for d in at.dataframe if "group" in d.value.columns)
    assert set(groups["group"]) == {"rupture–repair", "unrepaired rupture", "no rupture"}


def test_one_study_item_column_and_bad_inputs():
    ds = _one_study_without_therapist()
    df = ds["df"]
    df["rupture_intensity"] = (df["alliance"] < df["alliance"].quantile(0.05)).astype(float) * 4
    at = _open_events(ds)
    assert not at.error, [e.value for e in at.error]
    assert at.radio(key="ev_rater").options == ["Patient"]
    md = "\n".join(_markdown(at) for _ in each_tab(at, "app_pages/events.py"))
    assert "No pooling with one study" in md
    prev = _prevalence(at)
    assert prev["Study"].tolist() == ["ICBT-like trial"]  # no "All studies" row for one study

    # the extra numeric column is offered as a rupture item
    assert "rupture_intensity" in at.selectbox(key="ev_item").options
    at.selectbox(key="ev_item").set_value("rupture_intensity").run()
    at.number_input(key="ev_item_thr").set_value(3.0).run()
    assert not at.exception and not at.error
    assert _prevalence(at)["Rupture (n)"].iloc[0] >= prev["Rupture (n)"].iloc[0]
    # "dip or item": no chance level, said plainly; "dip and item": marks at random sessions
    assert "Expected by chance (%)" not in _prevalence(at).columns
    assert any("No chance reference" in c.value for c in at.caption)
    at.radio(key="ev_item_rule").set_value("and").run()
    assert not at.exception and not at.error
    both = _prevalence(at)
    assert "Expected by chance (%)" in both.columns and both["Rupture (n)"].iloc[0] <= prev["Rupture (n)"].iloc[0]
    assert next(m for m in at.metric if m.label == "Expected by chance").delta == "item at random sessions"
    assert "random sessions of that patient" in _markdown(at)

    # invalid reliability: a clear message, never a traceback
    _tab(at, 1)
    at.number_input(key="ev_sg_r").set_value(1.0).run()
    assert not at.exception
    assert any("reliability must be in [0, 1)" in e.value.replace("\\", "") for e in at.error)
    at.number_input(key="ev_sg_r").set_value(0.9)
    _tab(at, 2)
    at.number_input(key="ev_rc_r").set_value(1.2).run()
    assert not at.exception
    assert any("Reliable change" in e.value for e in at.error)

    # norms chosen but not typed in: a message, not an exception
    at.number_input(key="ev_rc_r").set_value(0.9)
    at.radio(key="ev_rc_cmode").set_value("norms").run()
    assert not at.exception
    assert any("Enter all four norm values" in e.value for e in at.error)

    # choices survive a visit to another page
    at.radio(key="ev_rc_cmode").set_value("none")
    at.number_input(key="ev_k").set_value(2.0).run()
    at.switch_page("app_pages/data.py").run()
    at.switch_page("app_pages/events.py").run()
    assert not at.exception
    assert at.number_input(key="ev_k").value == 2.0


def test_chance_reference_cached_on_the_options_it_depends_on(monkeypatch):
    """ui.compute: changing k, the repair rule or level reuses the chance simulation; the SD does not."""
    from analysis import events as ev
    from ui import compute

    d, _ = ev.simulate_rupture_data(120, 7, plant=0.3, seed=2024)
    at_3 = ev.rupture_chance(d, k=3.0).to_frame()
    calls = []
    real = ev.rupture_chance_curve

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ev, "rupture_chance_curve", counting)
    a = compute.event_ruptures(d, rule="any", pre_level="previous")
    b = compute.event_ruptures(d, rule="all", pre_level="last_non_rupture")
    assert len(calls) == 1 and b.chance.to_frame().equals(a.chance.to_frame())
    assert b.rule == "all"
    c = compute.event_ruptures(d, rule="all", k=3.0)
    assert len(calls) == 1 and c.chance.criterion.k == 3.0
    assert c.chance.to_frame().equals(at_3)
    compute.event_ruptures(d, rule="all", k=3.0, sd="patient")
    assert len(calls) == 2


def test_options_in_the_url_are_applied_and_kept_across_pages():
    """A shared link (ui/persist.py): the criterion, k, event kind and RC method in the query string open the
    page with those choices; a value outside the allowed range is ignored; the choices come back after a visit
    to another page; the URL never carries a study or column name."""
    at = AppTest.from_file(APP, default_timeout=180)
    for k, v in {"criterion": "other_sessions", "k": "3.1", "event": "loss", "rc": "HA", "sd": "nonsense"}.items():
        at.query_params[k] = v
    at.run()
    at.switch_page("app_pages/events.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert at.selectbox(key="ev_crit").value == "other_sessions"
    assert at.number_input(key="ev_k").value == pytest.approx(3.1)
    assert at.radio(key="ev_sg_kind").value == "loss"
    _tab(at, 2)
    assert at.radio(key="ev_rc_method").value == "HA"
    assert at.selectbox(key="ev_sd_opt").value != "nonsense"
    url = {k: (v[0] if isinstance(v, list) else v) for k, v in ((k, at.query_params[k]) for k in at.query_params)}
    assert url["k"] == "3.1" and url["rc"] == "HA"
    studies = set(at.session_state["dataset"]["df"]["study"].astype(str))
    assert not any(s in str(v) for s in studies for v in url.values())
    at.number_input(key="ev_k").set_value(2.8).run()
    at.switch_page("app_pages/pooled.py")
    at.run()
    at.switch_page("app_pages/events.py")
    at.run()
    assert at.number_input(key="ev_k").value == pytest.approx(2.8)
    _tab(at, 2)
    assert at.radio(key="ev_rc_method").value == "HA"


def test_a_link_naming_only_the_criterion_opens_that_criterion_as_published():
    """?criterion=other_sessions without k / SD / trend: the page uses that criterion's own k, SD and trend
    (as choosing it in the selectbox does), not the default criterion's."""
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["criterion"] = "other_sessions"
    at.run()
    at.switch_page("app_pages/events.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    c = ev.RUPTURE_CRITERIA["other_sessions"]
    assert at.number_input(key="ev_k").value == pytest.approx(c.k)
    assert at.selectbox(key="ev_sd_opt").value == c.sd
    assert at.checkbox(key="ev_detrend").value == c.detrend
    assert (c.k, c.sd, c.detrend) != (ev.RUPTURE_CRITERIA["default"].k, ev.RUPTURE_CRITERIA["default"].sd,
                                      ev.RUPTURE_CRITERIA["default"].detrend)


def test_dropout_models_and_sudden_gain_conventions_on_the_page():
    """Data with a dropout column: the Relation-to-outcome tab shows the logistic and Cox dropout models
    (per study and pooled); the sudden-gain tab switches to the suddengains convention (issue 22 #6, #7)."""
    from analysis.events.dropout import simulate_dropout_data

    d = simulate_dropout_data(2, 80, 9, seed=4)
    d["symptoms"] = (30 + 6 * d["symptoms"]).clip(0).round()  # a raw symptom scale (sudden gains need ≥ 0)
    at = _open_events({"df": d, "name": "Dropout trial", "source": "upload", "notes": []})
    _tab(at, 3)
    table = next(x.value for x in at.dataframe if "Odds / hazard ratio" in x.value.columns)
    assert set(table["model"]) == {"logistic", "cox"}
    cox = table[(table["model"] == "cox") & (table["study"] == "Pooled")].iloc[0]
    assert cox["Odds / hazard ratio"] < 1  # lower current alliance → faster dropout (the simulated truth)
    assert "hazard ratio per SD of the current alliance" in _markdown(at)
    assert any("Ruptures and repairs need sessions" in c.value for c in at.caption)
    at.multiselect(key="ev_do_preds").set_value(["early_alliance"]).run()
    assert not at.exception and not at.error
    assert set(next(x.value for x in at.dataframe if "Odds / hazard ratio" in x.value.columns)["term"]) == {
        "early_alliance", "alliance"}
    assert at.radio(key="ev_sg_conv").value == "published"
    at.radio(key="ev_sg_conv").set_value("suddengains").run()
    assert not at.exception and not at.error
