"""AppTest: the Pooled page shows the one-stage model beside the two-stage pooling on the 17-study demo
(one table, one forest, the agreement sentence), the few-studies panel, and the k < 5 statement."""

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis.lagged import LagOptions
from analysis.onestage import one_stage
from analysis.simulate import simulate_collection

ROOT = Path(__file__).resolve().parents[1]


def _pooled(df):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["dataset"] = {"df": df, "name": "test data", "source": "upload", "notes": []}
    at.run()
    at.switch_page("app_pages/pooled.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at):
    return " ".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def test_one_and_two_stage_side_by_side_on_the_17_study_demo():
    df = pd.read_csv(ROOT / "demo_data" / "ipd_17_studies.csv")
    at = _pooled(df)
    at.get("button_group")[0].set_value("One-stage vs two-stage").run()
    assert not at.exception, [e.value for e in at.exception]
    tables = [d.value for d in at.dataframe if {"model", "estimate", "test"} <= set(d.value.columns)]
    assert tables, "no one-stage vs two-stage table"
    t = tables[0]
    assert sorted(t["model"].unique()) == ["one-stage", "two-stage"]
    assert len(t) == 4  # two models × two directions
    # the one-stage numbers are the analysis module's (same rows, same options)
    ref = one_stage(df, LagOptions()).fits["alliance_to_symptoms"]
    row = t[(t["model"] == "one-stage") & t["direction"].str.startswith("Alliance")]
    assert float(row["estimate"].iloc[0]) == pytest.approx(ref.estimate, abs=1e-10)
    # shown with three decimals: the two models' estimates side by side differ in the third (−0.08 / −0.08 hid it)
    from tests.test_number_format import shown

    el = next(d for d in at.dataframe if {"model", "estimate", "test"} <= set(d.value.columns))
    cells = shown(el)["estimate"].tolist()
    assert all(len(c.split(".")[1]) >= 3 for c in cells), cells
    assert len(at.get("plotly_chart")) == 2  # the pooled forest and the side-by-side forest
    text = _texts(at)
    assert "Why they may differ" in text and ("agree" in text or "differ" in text)
    assert "Satterthwaite" in text


def test_few_studies_panel_and_small_k_statement():
    df = simulate_collection(k=4, n_patients=40, sessions=range(1, 7), instruments=False, seed=3).data
    at = _pooled(df)
    assert any("fewer than 5 studies" in w.value for w in at.warning)
    at.get("button_group")[0].set_value("Few studies: Bayesian & coverage").run()
    assert not at.exception, [e.value for e in at.exception]
    text = _texts(at)
    assert "Bayesian random effects (k = 4" in text and "half-normal with scale 0.100" in text
    # the panel's limit, with the patient-level check's numbers (analysis.coverage.PANEL_CHECK)
    from analysis.coverage import limit_note

    assert limit_note() in [c.value for c in at.caption]
    # the prior scale is the declared option: changing it changes the estimate
    before = [d.value for d in at.dataframe if "prior" in d.value.columns][0]
    at.number_input(key="fs_prior_scale").set_value(1.0).run()
    after = [d.value for d in at.dataframe if "prior" in d.value.columns][0]
    assert after["ci_high"].iloc[1] > before["ci_high"].iloc[1]  # a wider prior lets τ be larger


def test_lagged_page_shows_both_when_asked():
    df = simulate_collection(k=5, n_patients=40, sessions=range(1, 7), instruments=False, seed=4).data
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["dataset"] = {"df": df, "name": "test data", "source": "upload", "notes": []}
    at.run()
    at.switch_page("app_pages/lagged.py")
    at.run()
    assert not at.exception
    both = {"model", "test", "tau", "pi_low"}
    assert not [d for d in at.dataframe if both <= set(d.value.columns)]  # off by default: nothing fitted
    at.checkbox(key="lag_one_stage").check().run()
    assert not at.exception, [e.value for e in at.exception]
    t = [d.value for d in at.dataframe if both <= set(d.value.columns)][0]
    assert set(t["model"]) == {"one-stage", "two-stage"}
    assert "Why they may differ" in _texts(at)


def test_a_shared_link_restores_the_one_stage_switch_and_the_prior_scale():
    """The one-stage switch (Lagged effects) and the prior scale of τ (Pooled, Few studies) are declared options
    (SmallKOptions, ui.persist.SMALL_K): a link sets both widgets, and the pages write them back to the URL."""
    df = simulate_collection(k=4, n_patients=40, sessions=range(1, 7), instruments=False, seed=5).data
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.session_state["dataset"] = {"df": df, "name": "test data", "source": "upload", "notes": []}
    at.query_params["one_stage"] = "1"
    at.query_params["tau_prior"] = "0.25"
    at.run()
    at.switch_page("app_pages/lagged.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.checkbox(key="lag_one_stage").value is True
    both = {"model", "test", "tau", "pi_low"}
    assert [d for d in at.dataframe if both <= set(d.value.columns)]  # the link switched the one-stage model on
    at.switch_page("app_pages/pooled.py")
    at.run()
    at.get("button_group")[0].set_value("Few studies: Bayesian & coverage").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.number_input(key="fs_prior_scale").value == pytest.approx(0.25)
    assert "half-normal with scale 0.250" in _texts(at)
    # changed on the page → written to the URL (inside the More-analyses fragment too)
    at.number_input(key="fs_prior_scale").set_value(0.5).run()
    qp = {k: (v[0] if isinstance(v, list) else v) for k, v in at.query_params.items()}
    assert qp.get("tau_prior") == "0.5" and qp.get("one_stage") == "1"
