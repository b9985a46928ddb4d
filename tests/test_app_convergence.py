"""AppTest: the Convergence page."""

import json
from pathlib import Path

import pandas as pd
from streamlit.testing.v1 import AppTest

from analysis import data as adata
from analysis.simulate import simulate_dyads, simulate_study

ROOT = Path(__file__).resolve().parents[1]


def _demo(name):
    raw = adata.load(ROOT / "demo_data" / name)
    return adata.to_canonical(raw, adata.suggest_mapping(raw))


def _run(df):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["dataset"] = {"df": df, "name": "t", "source": "demo", "notes": []}
    at.run()
    at.switch_page("app_pages/convergence.py")
    at.run()
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
    models = next(t for t in tables if any("Model 1" in str(c) for c in t.columns))
    assert any("Model 3" in str(c) for c in models.columns)


def test_score_option_changes_scores():
    at = _run(_demo("dyads_gsi.csv"))
    before = next(d.value for d in at.dataframe if "convergence" in d.value.columns)["convergence"].to_numpy()
    at.radio(key="conv_discrepancy").set_value("signed").run()
    assert not at.exception
    after = next(d.value for d in at.dataframe if "convergence" in d.value.columns)["convergence"].to_numpy()
    assert not (before == after).all()


def test_two_studies_are_pooled():
    a = simulate_dyads(40, range(1, 8), study="A", seed=1).data
    b = simulate_dyads(50, range(1, 8), study="B", seed=2).data
    at = _run(pd.concat([a, b], ignore_index=True))
    per = next(d.value for d in at.dataframe if {"study", "n_dyads", "status"} <= set(d.value.columns))
    assert set(per["study"]) == {"A", "B"}
    assert any("Convergence × time" in h.value for h in at.header)


def test_without_therapist_ratings_offers_a_demo():
    at = _run(simulate_study(30, range(1, 6), seed=1).data)
    assert any("no therapist-rated alliance" in w.value for w in at.warning)
    at.button(key="conv_load_demo").click().run()
    assert not at.exception
    assert at.session_state["dataset"]["df"]["therapist_alliance"].notna().any()


def _models_table(at):
    t = next(d.value for d in at.dataframe if any("Model 1" in str(c) for c in d.value.columns))
    return t.set_index("term") if "term" in t.columns else t


def test_symptom_only_occasions_stay_in_the_models():
    """GSI at session 1 and at the end without WAI (seed 001 Study 2): those rows are symptom
    observations of the growth models (the page once dropped every row without an alliance rating)."""
    d = simulate_dyads(30, (1, 3, 12, 20, 30), seed=4).data
    d.loc[d["session"].isin([1, 30]), ["alliance", "therapist_alliance"]] = float("nan")
    at = _run(d)
    tab = _models_table(at)
    assert tab.at["N observations", "Model 1"] == str(int(d["symptoms"].notna().sum()))
