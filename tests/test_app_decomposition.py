"""AppTest: the total/within/between section of the Lagged effects page (issue 11 §1)."""

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from analysis.decomposition import total_within_between

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference"


def test_trio_shown_for_chosen_study_equals_the_analysis():
    df = pd.read_csv(REF / "decomposition_data.csv")
    df["study"] = df["study"].astype("string")
    df["patient"] = df["patient"].astype("string")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.session_state["dataset"] = {"df": df, "name": "reference", "source": "upload", "notes": []}
    at.run()
    at.switch_page("app_pages/lagged.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any("dec_study" == getattr(w, "key", None) for w in at.selectbox)  # a lazy tab, closed
    at.session_state["lag_tab"] = "Total, within and between"
    at.run()
    at.selectbox(key="dec_study").set_value("D-interior").run()
    assert not at.exception
    tab = next(d.value for d in at.dataframe if {"model", "term", "df"} <= set(d.value.columns))
    opts = json.loads(json.dumps(at.session_state["lag_options"], default=list))
    window = tuple(opts["window"])
    ref = total_within_between(df, "alliance_to_symptoms", lag=opts["lag"], standardize=opts["standardize"],
                               study="D-interior", sessions=window).to_frame()
    pd.testing.assert_frame_equal(tab.reset_index(drop=True), ref, check_dtype=False)
    assert {"total", "within", "between"} <= set(tab["model"])
    metrics = [m.label for m in at.metric]
    assert metrics.count("b") >= 3
    figs = [json.loads(f.proto.spec) for f in at.get("plotly_chart")]
    scatter = [f for f in figs if "person means" in f["layout"]["title"]["text"]]
    pm = total_within_between(df, study="D-interior", sessions=window, standardize=opts["standardize"]).person_means
    assert scatter and len(_values(scatter[0]["data"][0]["x"])) == len(pm)
    np.testing.assert_allclose(np.sort(_values(scatter[0]["data"][0]["x"])), np.sort(pm["x_mean"]))


def _values(v):
    """Plotly JSON arrays come either as lists or as base64 typed arrays."""
    if isinstance(v, dict):
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
    return np.asarray(v, float)


def test_preset_loads_demo_sets_options_and_shows_the_papers_pattern():
    from analysis import presets

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.run()
    at.switch_page("app_pages/lagged.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="preset_choice").set_value("icbt_004").run()
    at.button(key="preset_apply").click().run()
    assert not at.exception, [e.value for e in at.exception]
    p = presets.get("icbt_004")
    assert at.session_state["dataset"]["name"].startswith("Within/between demo")
    opts = at.session_state["lag_options"]
    for k, v in p.page_options("lagged").items():
        assert (list(opts[k]) if k in ("directions", "window") else opts[k]) == (
            list(v) if k in ("directions", "window") else v), k
    # the option widgets show the preset's values
    assert at.checkbox(key="opt_standardize").value is False
    assert at.checkbox(key="opt_control_prior_outcome").value is True
    # the checklist is shown
    check = [d.value for d in at.dataframe if {"setting", "value", "why"} <= set(d.value.columns)]
    assert check and len(check[0]) == len(p.checklist)
    # the trio on the page is the paper's pattern on the demo
    tab = next(d.value for d in at.dataframe if {"model", "term", "df"} <= set(d.value.columns))
    t = tab.set_index(["model", "term"])
    assert t.loc[("total", "predictor"), "estimate"] < 0 and t.loc[("total", "predictor"), "pvalue"] < 0.05
    assert t.loc[("within", "within"), "estimate"] < 0
    assert t.loc[("between", "between"), "estimate"] > 0 and t.loc[("between", "between"), "pvalue"] < 0.05
    # seed 004's between model as published (session rows) beside the OLS, labelled, with why the df are odd
    assert t.loc[("between_sessions", "between"), "estimate"] > 0
    shown = [m.value for m in at.markdown if "Between, as the paper fitted it" in m.value]
    assert shown and "df not defined" in shown[0] and "OLS of the person means" in shown[0]
    assert any("t(130.53)" in c.value for c in at.caption)
    # switching to the IPD preset sets its options (cross-level interaction, window 1-7)
    at.selectbox(key="preset_choice").set_value("ipd_ma_000").run()
    at.button(key="preset_apply").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.checkbox(key="opt_cross_level").value is True
    assert at.checkbox(key="opt_standardize").value is True
    assert tuple(at.session_state["lag_options"]["window"]) == (1, 7)
    assert at.session_state["dataset"]["name"].startswith("IPD-MA demo")


def test_early_alliance_section_uses_its_own_window_and_outcome():
    from analysis.early import early_outcome
    from ui.options import to_lag_options

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.run()
    at.switch_page("app_pages/lagged.py")
    at.session_state["lag_tab"] = "Early alliance → outcome"
    at.run()
    at.slider(key="opt_window").set_value((2, 6)).run()  # the lagged window must not matter
    at.slider(key="early_window").set_value((1, 3)).run()
    at.radio(key="early_outcome").set_value("session").run()
    at.number_input(key="early_outcome_session").set_value(7).run()
    assert not at.exception, [e.value for e in at.exception]
    tab = next(d.value for d in at.dataframe if {"r", "term"} <= set(d.value.columns))
    df = at.session_state["dataset"]["df"]
    opts = to_lag_options(at.session_state["lag_options"], df)
    assert opts.sessions == (2, 6)
    ref = early_outcome(df, options=opts, early_window=(1, 3), outcome="session", outcome_session=7).to_frame()
    np.testing.assert_allclose(tab["estimate"].to_numpy(float), ref["estimate"].to_numpy(float))
    np.testing.assert_allclose(tab["r"].to_numpy(float), ref["r"].to_numpy(float), equal_nan=True)
    assert any("Fisher" in m.value for m in at.markdown)
