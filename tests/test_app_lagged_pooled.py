"""AppTest: Lagged effects and Pooled effects pages along the main option paths."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis import pipeline
from analysis.lagged import LagOptions
from analysis.simulate import simulate_collection, simulate_study

ROOT = Path(__file__).resolve().parents[1]


def _app(df=None, name="test data"):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    if df is not None:
        at.session_state["dataset"] = {"df": df, "name": name, "source": "upload", "notes": []}
    at.run()
    assert not at.exception
    return at


def _goto(at, page):
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _collection(k=4, n=40, seed=3, therapist=False):
    return simulate_collection(k=k, n_patients=n, sessions=range(1, 7), instruments=False, missing_sessions=0.05,
                               therapist=therapist, seed=seed).data


def _within_table(at):
    for d in at.dataframe:
        v = d.value
        if {"study", "estimate", "N pairs"} <= set(v.columns):
            return v
    raise AssertionError("no per-study table")


def test_each_centering_and_direction_changes_the_estimates():
    at = _goto(_app(_collection()), "app_pages/lagged.py")
    seen = {}
    for centering in ("person_mean", "detrended", "grand_mean", "none"):
        at.radio(key="opt_centering").set_value(centering).run()
        assert not at.exception
        t = _within_table(at)
        assert len(t) == 4 and t["estimate"].notna().all()
        seen[centering] = t["estimate"].to_numpy()
        # the page reports the same numbers as the analysis package
        opts = LagOptions(centering=centering)
        ref = pipeline.two_stage(at.session_state["dataset"]["df"], opts).per_study
        ref = ref[(ref.term == "within") & (ref.direction == "alliance_to_symptoms")]
        np.testing.assert_allclose(t["estimate"].to_numpy(), ref["estimate"].to_numpy(), rtol=1e-12)
    assert not np.allclose(seen["person_mean"], seen["none"])
    assert not np.allclose(seen["person_mean"], seen["detrended"])

    at.multiselect(key="opt_directions").set_value(["symptoms_to_alliance"]).run()
    assert not at.exception
    headers = [h.value for h in at.header]
    assert "Symptoms → next-session alliance" in headers
    assert "Alliance → next-session symptoms" not in headers


def test_options_survive_page_switch():
    at = _goto(_app(_collection()), "app_pages/lagged.py")
    at.radio(key="opt_centering").set_value("detrended").run()
    at.selectbox(key="opt_lag").set_value(2).run()
    _goto(at, "app_pages/pooled.py")  # directly: the widgets' old state is still in session state
    assert at.radio(key="opt_centering").value == "detrended"
    assert at.selectbox(key="opt_lag").value == 2
    assert at.multiselect(key="opt_directions").value == ["alliance_to_symptoms", "symptoms_to_alliance"]
    _goto(at, "app_pages/data.py")  # via a page without the panel: the widgets' state is dropped
    _goto(at, "app_pages/lagged.py")
    assert at.radio(key="opt_centering").value == "detrended"
    assert at.selectbox(key="opt_lag").value == 2


def test_failing_study_is_reported_and_the_rest_pooled():
    good = _collection(k=3)
    tiny = simulate_study(2, range(1, 5), study="Tiny study", seed=1).data  # 2 patients: cannot be fitted
    df = pd.concat([good, tiny], ignore_index=True)
    at = _goto(_app(df), "app_pages/lagged.py")
    t = _within_table(at)
    row = t[t["study"] == "Tiny study"]
    assert row["status"].iloc[0] == "failed"
    assert any("could not be fitted" in m.value for m in at.markdown)
    at = _goto(at, "app_pages/pooled.py")
    pooled = next(d.value for d in at.dataframe if "Direction" in d.value.columns)
    assert set(pooled["Studies (k)"]) == {"3"}


def test_k1_says_no_pooling_and_k2_warns():
    one = simulate_study(60, range(1, 8), study="Only study", seed=2).data
    at = _goto(_app(one), "app_pages/pooled.py")
    text = " ".join(i.value for i in at.info) + " ".join(m.value for m in at.markdown)
    assert "k = 1" in text and "pooled" in text
    two = _collection(k=2)
    at = _goto(_app(two), "app_pages/pooled.py")
    text = " ".join(m.value for m in at.markdown) + " ".join(i.value for i in at.info) + " ".join(
        w.value for w in at.warning)
    assert "2 studies" in text or "k = 2" in text


def test_pooled_forest_plot_follows_estimator_and_centering():
    at = _goto(_app(_collection(k=5)), "app_pages/pooled.py")
    spec0 = json.dumps(json.loads(at.get("plotly_chart")[0].proto.spec))
    assert "REML" in spec0 or "restricted" in spec0.lower()
    at.selectbox(key="opt_pooling_method").set_value("DL").run()
    spec1 = json.dumps(json.loads(at.get("plotly_chart")[0].proto.spec))
    assert spec1 != spec0 and ("DL" in spec1 or "DerSimonian" in spec1)
    at.radio(key="opt_centering").set_value("detrended").run()
    spec2 = json.dumps(json.loads(at.get("plotly_chart")[0].proto.spec))
    assert spec2 != spec1
    assert not at.exception


def test_data_without_therapist_ratings_runs_every_analysis_page():
    df = _collection(k=3, therapist=False)
    assert "therapist_alliance" not in df.columns
    at = _app(df)
    for page in ("app_pages/data.py", "app_pages/lagged.py", "app_pages/pooled.py"):
        _goto(at, page)
        if page == "app_pages/data.py":  # the Data page draws its charts on demand
            at.toggle(key="data_charts").set_value(True).run()
            assert not at.exception
        assert len(at.get("plotly_chart")) >= 1


def test_downloaded_script_reproduces_the_pooled_estimates(tmp_path):
    from ui.reporting import DATA_NAME, script_text

    df = _collection(k=4)
    at = _goto(_app(df), "app_pages/pooled.py")
    at.radio(key="opt_centering").set_value("detrended").run()
    at.radio(key="opt_test").set_value("knha").run()
    pooled = next(d.value for d in at.dataframe if "Direction" in d.value.columns)

    from analysis import formatting
    from analysis.pipeline import two_stage
    from ui.options import DIRECTIONS, to_lag_options
    options = to_lag_options(at.session_state["lag_options"], df)
    res = two_stage(df, options)
    shown = {d: res.pooled[d].estimate for d in res.pooled}
    # the table on screen shows these estimates, APA-formatted, direction first
    assert list(pooled.columns[:2]) == ["Direction", "Studies (k)"]
    assert dict(zip(pooled["Direction"], pooled["Estimate"])) == {
        DIRECTIONS[d]: formatting.num(v) for d, v in shown.items()}
    df.to_csv(tmp_path / DATA_NAME, index=False)  # what the "Download the data" button serves
    (tmp_path / "reproduce.py").write_text(script_text(options))
    out = subprocess.run([sys.executable, "reproduce.py"], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=300)
    assert out.returncode == 0, out.stderr
    printed = dict(re.findall(r"^(\w+) pooled within-patient effect: estimate=(-?[\d.]+)", out.stdout, re.M))
    assert set(printed) == set(shown) == {"alliance_to_symptoms", "symptoms_to_alliance"}
    for d in shown:
        assert float(printed[d]) == pytest.approx(shown[d], abs=5e-7)


def test_every_pooled_section_renders():
    df = _collection(k=4)
    df["setting"] = df["study"].map({s: ("online" if i % 2 else "clinic") for i, s in
                                    enumerate(sorted(df["study"].unique()))}).astype("string")
    at = _goto(_app(df), "app_pages/pooled.py")
    assert len(at.get("plotly_chart")) == 1  # nothing but the forest plot until a section is chosen
    charts = {}
    for section in ("Leave-one-out", "Funnel & Egger", "Meta-regression", "Centering multiverse",
                    "Report & script"):
        at.get("button_group")[0].set_value(section).run()
        assert not at.exception, (section, [e.value for e in at.exception])
        charts[section] = len(at.get("plotly_chart"))
        if section == "Meta-regression":
            coef = [d.value for d in at.dataframe if "Estimate" in d.value.columns and len(d.value) == 2]
            assert coef, "meta-regression coefficient table (intercept + setting) missing"
    # forest plot alone, then the section's own figures (two per direction where there are figures)
    assert charts["Report & script"] == 1 and charts["Meta-regression"] == 1
    assert charts["Leave-one-out"] == charts["Funnel & Egger"] == charts["Centering multiverse"] == 3
    assert at.session_state["pooled_section"] == "Report & script"


def test_covariate_moderator_and_pooled_term_picker():
    df = _collection(k=4)
    pats = df[["study", "patient"]].drop_duplicates()
    rng = np.random.default_rng(5)
    pats["treatment"] = pd.array(rng.choice(["CBT", "PDT"], len(pats)), dtype="string")
    df = df.merge(pats, on=["study", "patient"])
    at = _goto(_app(df), "app_pages/lagged.py")
    assert at.multiselect(key="opt_covariates").options == ["treatment"]
    at.multiselect(key="opt_covariates").set_value(["treatment"]).run()
    assert not at.exception
    assert any("moderators: treatment" in c.value for c in at.caption)
    at = _goto(at, "app_pages/pooled.py")
    picker = at.selectbox(key="pooled_term")
    from analysis.plots_lagged import term_label

    shown = {term_label(t) for t in ("within", "between", "treatment: PDT", "within × treatment: PDT")}
    assert shown <= set(picker.options)
    n0 = len(at.get("plotly_chart"))
    picker.set_value("within × treatment: PDT").run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == n0 + 2  # one forest plot per direction for the chosen term
    ref = pipeline.two_stage(df, LagOptions(covariates=("treatment",))).pooled_terms
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    m = ref[("alliance_to_symptoms", "within × treatment: PDT")]
    assert "treatment" in spec["layout"]["title"]["text"]
    assert "within-study" in spec["layout"]["title"]["text"]  # the pooled interaction is the within-study part
    text = " ".join(x.value for x in at.markdown)
    assert "Cross-level interaction (within-study)" in text
    assert m.k == 4 and m.summary() in text  # the chosen term's pooled sentence, same numbers as the package


def test_timing_standardization_and_df_options():
    df = _collection(k=3)
    at = _goto(_app(df), "app_pages/lagged.py")
    at.selectbox(key="opt_lag").set_value(0).run()
    assert not at.exception, [e.value for e in at.exception]
    headers = [h.value for h in at.header]
    assert headers[0] == "Symptoms → alliance rated later in the same session"
    assert not any(h.startswith(("Alliance →", "Symptoms → next")) for h in headers)
    assert any("alliance rated later in the same session" in c.value for c in at.caption)
    t = _within_table(at)
    ref = pipeline.two_stage(df, LagOptions(lag=0, directions=("symptoms_to_alliance",))).per_study
    ref = ref[ref.term == "within"]
    np.testing.assert_allclose(t["estimate"].to_numpy(), ref["estimate"].to_numpy(), rtol=1e-12)
    at.selectbox(key="opt_lag").set_value(1).run()
    at.radio(key="opt_standardize_by").set_value("within").run()
    at.radio(key="opt_df_method").set_value("satterthwaite").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("within-patient SD" in c.value and "Satterthwaite" in c.value for c in at.caption)
    t = _within_table(at)
    o = LagOptions(standardize_by="within", df_method="satterthwaite")
    res = pipeline.two_stage(df, o)
    want = [res.fits[(s, "alliance_to_symptoms")].coef("within") for s in t["study"]]
    np.testing.assert_allclose(t["df"].to_numpy(float), [w["df"] for w in want], rtol=1e-9)
    np.testing.assert_allclose(t["estimate"].to_numpy(float), [w["estimate"] for w in want], rtol=1e-9)


def test_lagged_page_long_sections_are_tabs():
    """Issue 23 #17: the Lagged page was ~7,900 px tall with the trio far down. Its long sections are tabs:
    the coefficients, the trio, early alliance, the latent-centred models and the model rows each in one.
    The tabs are lazy (issue 24): only the open one is computed and drawn."""
    at = _goto(_app(_collection()), "app_pages/lagged.py")
    labels = [t.label for t in at.tabs]
    assert labels[:5] == ["Per-study coefficients", "Total, within and between", "Early alliance → outcome",
                          "Latent-centred models", "What went into the model"], labels
    heads = lambda t: [h.value for h in t.header]  # noqa: E731
    seen = {}
    for label in labels[:5]:
        at.session_state["lag_tab"] = label
        at.run()
        assert not at.exception, (label, [e.value for e in at.exception])
        tabs = dict(zip([t.label for t in at.tabs], at.tabs))
        seen[label] = tabs[label]
        # only the open tab has content; nothing of these sections is outside its tab
        assert all(len(t.children) == 0 for name, t in tabs.items() if name != label), label
        main_heads = [h.value for h in at.main.header]
        assert len(main_heads) == sum(len(t.header) for t in at.tabs), label
        if label == "Total, within and between":
            assert any(h.startswith("Total, within and between effects") for h in heads(tabs[label]))
        elif label == "Early alliance → outcome":
            assert any(h.startswith("Early alliance") for h in heads(tabs[label]))
        elif label == "Per-study coefficients":
            assert len(tabs[label].header) == 2  # one per direction
        elif label == "What went into the model":
            assert any(s.key == "lag_view_patient" for s in tabs[label].selectbox)
