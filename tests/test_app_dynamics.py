"""AppTest: the latent-centred models on the Lagged and Pooled pages (stage-1 choice, estimator comparison
forest, estimator check) and the Teaching page's feedback slider."""

from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from analysis.simulate import simulate_collection
from ui import jobs

ROOT = Path(__file__).resolve().parents[1]


def _data(k=3, n=80, seed=4):
    return simulate_collection(k=k, n_patients=n, sessions=range(1, 7), instruments=False, missing_sessions=0.05,
                               seed=seed).data


def _app(df, page):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["dataset"] = {"df": df, "name": "test data", "source": "upload", "notes": []}
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _within_table(at):
    return next(d.value for d in at.dataframe if {"study", "estimate", "N pairs"} <= set(d.value.columns))


def test_stage1_riclpm_on_the_lagged_page_changes_the_per_study_estimates():
    df = _data()
    at = _app(df, "app_pages/lagged.py")
    lmm = _within_table(at)
    at.radio(key="opt_stage1").set_value("riclpm").run()
    assert not at.exception, [e.value for e in at.exception]
    sem = _within_table(at)
    assert any("RI-CLPM" in c.value for c in at.caption)
    assert len(sem) == len(lmm) == 3
    assert not np.allclose(sem["estimate"].to_numpy(float), lmm["estimate"].to_numpy(float))
    assert np.isfinite(sem["estimate"].to_numpy(float)).all()


def test_estimator_comparison_and_check_on_the_pooled_page():
    df = _data(k=3, n=70)
    at = _app(df, "app_pages/pooled.py")
    at.segmented_control(key="pooled_section").set_value("Estimator comparison").run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="pooled_cmp_run").click().run()
    assert jobs.wait(at.session_state["_job_pooled_cmp"], 280).state == "done"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    titles = [str(c.proto.spec) for c in at.get("plotly_chart")]
    assert any("Estimator comparison" in t and "RI-CLPM" in t and "DPM" in t and "Hybrid LMM" in t for t in titles)
    # the standardized cross-lags (std.all) pooled too, for both SEM estimators and both directions
    std = next(d.value for d in at.dataframe if "i2" in d.value.columns and "estimator" in d.value.columns)
    assert sorted(set(std["estimator"])) == ["DPM", "RI-CLPM"] and len(std) == 4
    assert (std["k"].astype(int) == 3).all()
    assert np.isfinite(std["estimate"].astype(float)).all() and (std["estimate"].astype(float).abs() < 1).all()
    at.segmented_control(key="pooled_section").set_value("Estimator check").run()
    at.number_input(key="pooled_chk_nsim").set_value(20).run()
    at.button(key="pooled_chk_run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert jobs.wait(at.session_state["_job_pooled_chk"], 280).state == "done"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("On data like yours" in m.value for m in at.markdown)
    table = next(d.value for d in at.dataframe if "coverage" in d.value.columns)
    assert set(table["estimator"]) == {"person_mean", "detrended", "riclpm", "dpm"}
    assert (table["n_sim"] > 0).all()


def _latent_table(at):
    return next(d.value for d in at.dataframe if "true_value" in d.value.columns and "note" in d.value.columns)


def test_teaching_feedback_slider_shows_latent_models_beside_the_lmm():
    """Feedback 0 → −0.5 (seeded sample, 6 sessions, prior symptoms controlled): the person-mean LMM's estimate
    drifts towards 0, the RI-CLPM's and the DPM's stay put and their CIs cover the true −0.20."""
    from test_app_teaching import _settle

    at = AppTest.from_file(str(ROOT / "app_pages" / "teaching.py"), default_timeout=300)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.checkbox(key="teach_control").check()
    at.session_state["teach_tab"] = "4. Feedback and latent centering"  # (a lazy tab: computed when open)
    at.slider(key="teach_sessions").set_value(6).run()
    _settle(at)
    before = _latent_table(at).set_index("model")["estimate"]
    at.select_slider(key="teach_feedback").set_value(-0.5).run()
    _settle(at)
    assert not at.exception, [e.value for e in at.exception]
    latent = _latent_table(at)
    assert list(latent["model"]) == ["Person-mean LMM (within)", "RI-CLPM", "Dynamic panel model"]
    after = latent.set_index("model")
    assert after.loc["Person-mean LMM (within)", "estimate"] - before["Person-mean LMM (within)"] > 0.04
    for m in ("RI-CLPM", "Dynamic panel model"):
        assert abs(after.loc[m, "estimate"] - before[m]) < 0.03
        assert after.loc[m, "ci_low"] <= -0.2 <= after.loc[m, "ci_high"]
    assert any("Person-mean LMM vs latent-centred models" in str(c.proto.spec) for c in at.get("plotly_chart"))


def test_estimator_comparison_and_check_on_the_demo_data():
    """The demo as loaded at start-up (17 studies): the estimator comparison forest (both directions, three
    estimators, k = 17 each), then the estimator check of its smallest study (Study 15, 88 patients), 20
    simulated data sets, from the Pooled page."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/pooled.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["dataset"]["df"]["study"].nunique() == 17
    at.segmented_control(key="pooled_section").set_value("Estimator comparison").run()
    at.button(key="pooled_cmp_run").click().run()
    assert jobs.wait(at.session_state["_job_pooled_cmp"], 280).state == "done"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    specs = [str(c.proto.spec) for c in at.get("plotly_chart")]
    assert sum("Estimator comparison" in t for t in specs) == 2
    std = next(d.value for d in at.dataframe if "i2" in d.value.columns and "estimator" in d.value.columns)
    assert len(std) == 4 and (std["k"].astype(int) == 17).all()
    at.segmented_control(key="pooled_section").set_value("Estimator check").run()
    at.selectbox(key="pooled_chk_study").set_value("Study 15").run()
    at.number_input(key="pooled_chk_nsim").set_value(20).run()
    at.button(key="pooled_chk_run").click().run()
    assert jobs.wait(at.session_state["_job_pooled_chk"], 280).state == "done"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("On data like yours" in m.value for m in at.markdown)
    table = next(d.value for d in at.dataframe if "coverage" in d.value.columns)
    assert len(table) == 8 and (table["n_sim"].astype(int) == 20).all()
    assert table["coverage"].astype(float).between(0, 1).all()


def test_estimator_check_widgets_come_from_the_declarations():
    """The check's widgets are EstimatorCheckOptions' declarations (label, interval, default, help with the METHODS
    link); the estimators chosen are the ones refitted, and none chosen is a plain error."""
    from analysis.estimator_check import EstimatorCheckOptions
    from ui.declared import find

    df = _data(k=2, n=60)
    at = _app(df, "app_pages/pooled.py")
    at.segmented_control(key="pooled_section").set_value("Estimator check").run()
    n_sim, seed = at.number_input(key="pooled_chk_nsim"), at.number_input(key="pooled_chk_seed")
    ests = at.multiselect(key="pooled_chk_estimators")
    decl = {o: find(EstimatorCheckOptions, o) for o in ("n_sim", "seed", "estimators")}
    assert (n_sim.label, n_sim.value, n_sim.min, n_sim.max, n_sim.step) == ("Simulated data sets", 100, 20, 1000, 20)
    assert (seed.label, seed.value, seed.min, seed.max) == ("Seed", 1, 0, 10**6)
    assert ests.label == decl["estimators"].label and tuple(ests.value) == EstimatorCheckOptions().estimators
    assert n_sim.help.startswith(decl["n_sim"].help) and "[Methods §15]" in n_sim.help
    ests.set_value([]).run()
    assert [e.value for e in at.error] == ["Choose at least one estimator to refit."]
    at.multiselect(key="pooled_chk_estimators").set_value(["riclpm", "person_mean"]).run()
    at.number_input(key="pooled_chk_nsim").set_value(20).run()
    at.button(key="pooled_chk_run").click().run()
    assert jobs.wait(at.session_state["_job_pooled_chk"], 280).state == "done"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "coverage" in d.value.columns)
    assert list(dict.fromkeys(table["estimator"])) == ["person_mean", "riclpm"]
    assert (table["n_sim"].astype(int) == 20).all()
