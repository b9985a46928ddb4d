"""AppTest: the Convergence page."""

import json
from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from analysis import data as adata
from analysis.simulate import simulate_dyads, simulate_study
from ui import jobs
from ui.tabs import CONVERGENCE_TABS

ROOT = Path(__file__).resolve().parents[1]


def _demo(name):
    raw = adata.load(ROOT / "demo_data" / name)
    return adata.to_canonical(raw, adata.suggest_mapping(raw))


def _run(df, source="demo"):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["dataset"] = {"df": df, "name": "t", "source": source, "notes": []}
    at.run()
    at.switch_page("app_pages/convergence.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _tab(at, name: str):
    """Open a section (lazy tabs: computed and drawn only while open)."""
    at.session_state["conv_tab"] = next(t for t in CONVERGENCE_TABS if t.startswith(name))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _use_loaded(at):
    """Analyse the loaded data even when the page would open on a demo (unreliable score)."""
    opts = at.selectbox(key="conv_source").options
    at.selectbox(key="conv_source").set_value(next(o for o in opts if o.startswith("Loaded data"))).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_trajectories_scores_and_models_table_on_demo():
    at = _run(_demo("dyads_bdi.csv"))
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = " ".join(str(t.get("name", "")) for t in spec["data"])
    assert "atient" in names and "herapist" in names
    tables = [d.value for d in at.dataframe]
    scores = next(t for t in tables if "convergence" in t.columns and "early_discrepancy" in t.columns)
    assert len(scores) == 96
    tables = [d.value for d in _tab(at, "Symptom growth").dataframe]
    models = next(t for t in tables if any("Model 1" in str(c) for c in t.columns))
    assert any("Model 3" in str(c) for c in models.columns)
    # every row names its term, on screen (a real column, not a hidden index)
    assert models["term"].str.len().gt(0).all() and "Convergence × Time" in set(models["term"])


def test_score_option_changes_scores():
    at = _use_loaded(_run(_demo("dyads_gsi.csv")))
    before = next(d.value for d in at.dataframe if "convergence" in d.value.columns)["convergence"].to_numpy()
    at.radio(key="conv_discrepancy").set_value("signed").run()
    assert not at.exception
    after = next(d.value for d in at.dataframe if "convergence" in d.value.columns)["convergence"].to_numpy()
    assert not (before == after).all()


def test_two_studies_are_pooled():
    a = simulate_dyads(40, range(1, 8), study="A", seed=1).data
    b = simulate_dyads(50, range(1, 8), study="B", seed=2).data
    at = _tab(_use_loaded(_run(pd.concat([a, b], ignore_index=True))), "Symptom growth")
    per = next(d.value for d in at.dataframe if {"study", "n_dyads", "status"} <= set(d.value.columns))
    assert set(per["study"]) == {"A", "B"}
    assert any("Convergence × time" in h.value for h in at.header)


def test_without_therapist_ratings_opens_on_a_demo():
    at = _run(simulate_study(30, range(1, 6), seed=1).data)
    assert any("no therapist-rated alliance" in i.value for i in at.info)
    assert at.selectbox(key="conv_source").value.startswith("Convergence demo")
    tables = [d.value for d in at.dataframe]
    assert any(len(t) == 96 and "convergence" in t.columns for t in tables)


def test_unreliable_score_keeps_the_users_data_and_says_so():
    """4 noisy sessions per dyad: the score is mostly noise. The user's own data stay on the page (it once
    swapped to a demo, which surprised users); the page says plainly that the convergence analysis is not
    meaningful, with the reliability."""
    at = _run(simulate_dyads(60, range(1, 5), seed=3, rating_noise=0.5).data, source="upload")
    assert at.selectbox(key="conv_source").value.startswith("Loaded data")
    assert not any("opens on a convergence demo" in i.value for i in at.info)
    assert any("not meaningful" in w.value and "reliability is" in w.value for w in at.warning)
    scores = next(d.value for d in at.dataframe if "convergence" in d.value.columns)
    assert len(scores) == 60


def _preset(name):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/convergence.py")
    at.run()
    at.selectbox(key="conv_preset").set_value(name).run()
    assert not at.exception, [e.value for e in at.exception]
    return at, _models_table(at)


def test_preset_study1_shows_table_1():
    at, tab = _preset("convergence_001_study1")
    assert tab.at["N dyads", "Model 1"] == "96"
    assert tab.at["Alliance development × Time", "Model 3 p"] in (".001", ".002", ".003", ".004", "< .001")
    assert any("Two levels in every model" in i.value for i in at.info)


def test_preset_study2_shows_rules_and_table_2():
    at, tab = _preset("convergence_001_study2")
    assert tab.at["N dyads", "Model 1"] == "139" and tab.at["N observations", "Model 1"] == str(139 * 5)
    counts = next(d.value for d in at.dataframe if {"rule", "removed", "remaining"} <= set(d.value.columns))
    assert counts["removed"].tolist()[1:3] == [50, 21]
    # 3 WAI occasions, dyads that differ in how they converge: a usable score (the paper's own preset once
    # ended in "reliability 0.00 … not meaningful": the demo's dyads did not differ enough)
    assert not any("not meaningful" in w.value for w in at.warning)
    # tiered messages: routine notes (a singular fit, a few dyads whose lines cross) are information, not alarms
    warnings, infos = " ".join(w.value for w in at.warning), " ".join(i.value for i in at.info)
    assert "singular fit" not in warnings and "lines cross" not in warnings
    assert "singular fit" in infos and "lines cross" in infos
    rel = next(c.value for c in _tab(at, "Ratings").caption
               if c.value.startswith("Reliability of the convergence score"))
    assert 0.3 <= float(rel.split(": ")[1].split(" ")[0]) <= 0.6, rel


def _models_table(at):
    t = next(d.value for d in at.dataframe if any("Model 1" in str(c) for c in d.value.columns))
    return t.set_index("term") if "term" in t.columns else t


def test_symptom_only_occasions_stay_in_the_models():
    """GSI at session 1 and at the end without WAI (seed 001 Study 2): those rows are symptom
    observations of the growth models (the page once dropped every row without an alliance rating)."""
    d = simulate_dyads(30, (1, 3, 12, 20, 30), seed=4).data
    d.loc[d["session"].isin([1, 30]), ["alliance", "therapist_alliance"]] = float("nan")
    at = _tab(_use_loaded(_run(d)), "Symptom growth")
    tab = _models_table(at)
    assert tab.at["N observations", "Model 1"] == str(int(d["symptoms"].notna().sum()))


def test_own_settings_rules_time_and_power():
    """Own settings on the BDI demo: a score window, occasion time, a max-sessions rule from a column,
    the multilevel score; then the power simulation runs and reports a power table."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/convergence.py")
    at.run()
    at.multiselect(key="conv_score_s").set_value([1, 2, 3, 4, 5, 6, 7])
    at.multiselect(key="conv_sym_s").set_value([1, 2, 3, 4, 5, 6, 7])
    at.radio(key="conv_time").set_value("occasion")
    at.radio(key="conv_method").set_value("multilevel")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    scores = next(d.value for d in at.dataframe if "convergence" in d.value.columns and "early_patient" in d.value.columns)
    assert (scores["last_joint_session"] == 7).all()
    tab = _models_table(_tab(at, "Symptom growth"))
    assert tab.at["N observations", "Model 1"] == str(96 * 7)
    at.number_input(key="conv_pw_nsim").set_value(20)
    at.multiselect(key="conv_pw_beta").set_value([0.4])
    at.button(key="conv_pw_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    # the simulation runs off the page's thread (ui/jobs.py): a progress bar, then the result on the next run
    assert jobs.wait(at.session_state["_job_conv_pw"], 240).state == "done"
    at.run()
    assert not at.get("progress")
    pw = next(d.value for d in at.dataframe if "power" in d.value.columns)
    assert pw["n_ok"].iloc[0] == 20 and 0 <= pw["power"].iloc[0] <= 1


def test_sidebar_preset_control_loads_the_dyadic_demo_and_selects_the_convergence_preset():
    """The one "Reproduce a paper" registry: a convergence preset chosen on the Lagged page's control loads its
    demo as the data set and opens the Convergence page on the same preset."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/lagged.py")
    at.run()
    at.selectbox(key="preset_choice").set_value("convergence_001_study2").run()
    at.button(key="preset_apply").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["dataset"]["name"].startswith("Convergence demo")
    at.switch_page("app_pages/convergence.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="conv_preset").value == "convergence_001_study2"
    tab = _models_table(at)
    assert tab.at["N dyads", "Model 1"] == "139"


def test_twelve_dyads_are_drawn_only_when_their_expander_is_opened():
    """The dyad trajectories (twelve panels, the page's costliest drawing) wait in a lazy expander (issue 24)."""
    at = _run(_demo("dyads_bdi.csv"))

    def titles():
        return [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]

    assert not any(t.startswith("Dyad trajectories") for t in titles())
    assert any(t.startswith("Distribution of dyad convergence scores") for t in titles())
    at.session_state["conv_dyads_exp"] = True
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    dyads = [json.loads(c.proto.spec) for c in at.get("plotly_chart")
             if json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "").startswith("Dyad trajectories")]
    assert len(dyads) == 1 and len(dyads[0]["layout"]["annotations"]) == 12
