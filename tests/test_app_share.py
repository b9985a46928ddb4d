"""AppTest: options in the URL are applied on load and written back; the teaching scenario is
shareable; every results page names the loaded data set; a bundle loaded on the Data page
restores data, mapping and options exactly."""

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis import bundle, pipeline
from analysis.lagged import LagOptions
from analysis.simulate import simulate_collection

ROOT = Path(__file__).resolve().parents[1]


def _app(query=None, df=None):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    if df is not None:
        at.session_state["dataset"] = {"df": df, "name": "my study", "source": "upload", "notes": []}
    return at


def _goto(at, page):
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_lagged_options_in_the_url_are_applied_on_load():
    query = {"centering": "detrended", "lag": "2", "pairing": "next_observed", "sessions": "2-6",
             "trend": "fixed", "prior": "0", "directions": "symptoms_to_alliance"}
    at = _goto(_app(query), "app_pages/lagged.py")
    used = at.session_state["lag_options"]
    assert used["centering"] == "detrended" and used["lag"] == 2 and used["pairing"] == "next_observed"
    assert tuple(used["window"]) == (2, 6) and used["time_trend"] == "fixed"
    assert used["control_prior_outcome"] is False and list(used["directions"]) == ["symptoms_to_alliance"]
    assert at.radio(key="opt_centering").value == "detrended"
    # the results shown were computed with these options
    assert any("centering: detrended" in str(c.value) and "t + 2" in str(c.value) for c in at.caption)
    # and the URL keeps them (written back on every run)
    assert at.query_params["centering"] == ["detrended"] or at.query_params["centering"] == "detrended"


def test_invalid_url_values_are_ignored():
    at = _goto(_app({"centering": "<script>", "lag": "9", "sessions": "5-1", "tau2": "XX"}), "app_pages/pooled.py")
    used = at.session_state["lag_options"]
    defaults = LagOptions()
    assert used["centering"] == defaults.centering and used["lag"] == defaults.lag
    assert used["pooling_method"] == defaults.pooling_method


def test_pooled_options_in_the_url_change_the_pooled_result():
    at = _goto(_app({"tau2": "DL", "test": "knha"}), "app_pages/pooled.py")
    used = at.session_state["lag_options"]
    assert used["pooling_method"] == "DL" and used["test"] == "knha"
    assert at.selectbox(key="opt_pooling_method").value == "DL"
    # the results shown were computed with these options
    assert any("τ² by DL, Knapp-Hartung t-test (" in str(c.value) for c in at.caption)  # not "(ad hoc…)"


def test_teaching_scenario_and_seed_from_the_url():
    at = _goto(_app({"seed": "42", "within": "-0.35", "patients": "120", "prior": "1"}), "app_pages/teaching.py")
    assert at.number_input(key="teach_seed").value == 42
    assert at.select_slider(key="teach_within").value == pytest.approx(-0.35)
    assert at.slider(key="teach_patients").value == 120
    assert at.checkbox(key="teach_control").value is True


@pytest.mark.parametrize("page", ["app_pages/lagged.py", "app_pages/pooled.py", "app_pages/events.py",
                                  "app_pages/screening.py"])
def test_results_pages_name_the_demo_data_and_say_uploads_are_lost_on_reload(page):
    at = _goto(_app(), page)
    text = " ".join(str(x.value) for x in at.info)
    assert "demo data, not your own" in text and "cannot keep uploaded files" in text


def test_results_page_names_an_uploaded_data_set():
    df = simulate_collection(k=3, n_patients=30, sessions=range(1, 7), instruments=False, seed=2).data
    at = _goto(_app(df=df), "app_pages/lagged.py")
    assert any("my study" in str(c.value) for c in at.caption)
    assert not any("demo data" in str(x.value) for x in at.info)


def test_bundle_loaded_on_the_data_page_restores_data_and_options():
    df = simulate_collection(k=3, n_patients=30, sessions=range(1, 8), instruments=False, seed=5).data
    from analysis import data as adata

    df = adata.to_canonical(df, {c: c for c in ("study", "patient", "session", "alliance", "symptoms")})
    options = LagOptions(centering="detrended", lag=2, sessions=(2, 7), pooling_method="PM", test="knha",
                         directions=("symptoms_to_alliance",))
    zipped = bundle.make_bundle(df, options, "bundle test", page_options={"teach_seed": 9})
    at = _goto(_app(), "app_pages/data.py")
    at.file_uploader(key="bundle_upload_0").set_value(("b.zip", zipped, "application/zip"))
    at.run()
    at.button(key="bundle_load").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    ds = at.session_state["dataset"]
    pd.testing.assert_frame_equal(ds["df"], df)
    assert ds["source"] == "bundle"
    at = _goto(at, "app_pages/pooled.py")
    used = at.session_state["lag_options"]
    assert used["centering"] == "detrended" and used["lag"] == 2 and tuple(used["window"]) == (2, 7)
    assert used["pooling_method"] == "PM" and used["test"] == "knha"
    assert list(used["directions"]) == ["symptoms_to_alliance"]
    # identical results: the app's pooled estimate equals two_stage on the original data
    res = pipeline.two_stage(df, options)
    m = res.pooled["symptoms_to_alliance"]
    shown = " ".join(str(x.value) for x in at.markdown).replace("\\", "")  # markdown escapes
    assert f"{m.estimate:.2f}".replace("-", "−") in shown


def test_teaching_scenario_reaches_the_url_on_the_first_visit():
    at = _goto(_app(), "app_pages/teaching.py")
    qp = {k: at.query_params[k] for k in at.query_params}
    flat = {k: (v[0] if isinstance(v, list) else v) for k, v in qp.items()}
    assert flat.get("seed") == "1" and flat.get("within") == "-0.2" and flat.get("prior") == "0"


def test_convergence_options_from_the_url():
    from analysis import presets

    preset = next(iter(presets.page_presets("convergence")))
    at = _goto(_app({"score": "signed", "transform": "log_shift", "levels": "sometimes"}), "app_pages/convergence.py")
    assert at.radio(key="conv_discrepancy").value == "signed"
    assert at.radio(key="conv_transform").value == "log_shift"
    assert at.radio(key="conv_levels").value == "never"  # an invalid value is ignored
    at = _goto(_app({"preset": preset}), "app_pages/convergence.py")
    assert at.selectbox(key="conv_preset").value == preset


def test_uploaded_files_column_mapping_goes_into_the_bundle():
    from analysis.simulate import simulate_study

    d = simulate_study(15, range(1, 6), seed=4).data.drop(columns=["study"])
    raw = d.rename(columns={"patient": "client_id", "session": "week", "alliance": "wai_sr", "symptoms": "phq9"})
    at = _goto(_app(), "app_pages/data.py")
    at.file_uploader[0].set_value(("trial_a.csv", raw.to_csv(index=False).encode(), "text/csv")).run()
    at.button(key="use_files").click().run()
    assert not at.exception
    ds = at.session_state["dataset"]
    b = bundle.read_bundle(bundle.make_bundle(ds["df"], LagOptions(), ds["name"], mapping=ds["mapping"]))
    m = b.mapping["trial_a.csv"]
    assert (m["patient"], m["session"], m["alliance"], m["symptoms"]) == ("client_id", "week", "wai_sr", "phq9")
    pd.testing.assert_frame_equal(b.data, ds["df"])


def _download_keys(at) -> set:
    keys = set()
    for el in at.get("download_button"):
        k = getattr(el.proto, "id", "") or ""
        keys.add(k)
    return keys


def test_trio_and_growth_pages_offer_their_r_scripts():
    at = _goto(_app(), "app_pages/lagged.py")
    at.session_state["lag_tab"] = "Total, within and between"  # (a lazy tab: drawn when open)
    at.run()
    ids = " ".join(_download_keys(at))
    assert "dl_dec_r" in ids and "dl_dec_data" in ids
    at = _goto(_app(), "app_pages/convergence.py")
    at.session_state["conv_tab"] = "Symptom growth (Models 1–3)"
    at.run()
    ids = " ".join(_download_keys(at))
    assert "dl_growth_r" in ids and "dl_growth_data" in ids


def test_report_section_offers_the_r_script_with_new_options():
    at = _goto(_app({"lag": "0", "directions": "symptoms_to_alliance", "df": "satterthwaite"}), "app_pages/pooled.py")
    used = at.session_state["lag_options"]
    assert used["lag"] == 0 and used["df_method"] == "satterthwaite"
    at.segmented_control(key="pooled_section").set_value("Report & script").run()
    assert not at.exception, [e.value for e in at.exception]
    ids = " ".join(_download_keys(at))
    assert "dl_repro_r" in ids and "dl_bundle" in ids
    assert not any("does not reproduce" in str(c.value) for c in at.caption)


def _figures_script():
    import streamlit as st

    from analysis import convergence as conv
    from analysis import data as adata
    from analysis import pipeline as pl
    from analysis import plots_meta as pm
    from analysis.lagged import LagOptions as LO
    from tests.test_share import DEMO, _demo
    from ui import compute, reporting
    from ui.r_downloads import bundle_extras

    raw = adata.load(DEMO, filename=DEMO.name)
    df = adata.to_canonical(raw, adata.suggest_mapping(raw))
    df = df[df["study"].isin(["Study 02", "Study 04", "Study 10"])].reset_index(drop=True)
    options = LO(lag=1)
    res = pl.two_stage(df, options)
    st.session_state.update({"dec_study": "Study 04", "dec_direction": "alliance_to_symptoms",
                             "lag_view_study": "Study 02", "lag_view_dir": "symptoms_to_alliance",
                             "lag_view_patient": str(df.loc[df["study"] == "Study 02", "patient"].iloc[0]),
                             "pooled_term": "prior_within", "early_window": (1, 3), "early_outcome": "last",
                             "share_growth": (compute.data_key(df), conv.growth_models(_demo("dyads_gsi.csv")))})
    forest = pm.forest_figure(res.pooled["alliance_to_symptoms"], title="f", xlabel="x")
    figs = reporting.analysis_figures({"df": df, "name": "d"}, options, res, forest)
    st.text("\n".join(sorted(figs)))
    st.text("\n".join(sorted(bundle_extras(df, compute.data_key(df)))))


def test_bundle_figures_follow_what_the_pages_showed():
    at = AppTest.from_function(_figures_script, default_timeout=300)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    names = set(at.text[0].value.split("\n"))
    dirs = ("alliance_to_symptoms", "symptoms_to_alliance")
    expected = {"forest_plot", "total_within_between_alliance_to_symptoms", "person_means_alliance_to_symptoms",
                "patient_series", "symptom_growth_by_convergence"}
    expected |= {f"{k}_{d}" for d in dirs for k in ("study_coefficients", "leave_one_out", "funnel", "multiverse")}
    expected |= {f"forest_{d}_prior_within" for d in dirs}
    assert expected <= names, expected - names
    assert "early_alliance_partial_beta" in names
    assert set(at.text[1].value.split("\n")) == {"decomposition", "growth"}


def test_convergence_page_on_the_loaded_data_puts_its_growth_models_into_the_bundle():
    from analysis import data as adata
    from ui.compute import data_key

    path = ROOT / "demo_data" / "dyads_gsi.csv"
    raw = adata.load(path, filename=path.name)
    df = adata.to_canonical(raw, adata.suggest_mapping(raw))
    at = _goto(_app(df=df), "app_pages/convergence.py")
    assert at.selectbox(key="conv_source").value.startswith("Loaded data")
    at.session_state["conv_tab"] = "Symptom growth (Models 1–3)"
    at.run()
    kept_key, gr = at.session_state["share_growth"]
    assert kept_key == data_key(df) and sorted(gr.models) == [1, 2, 3]
    ids = " ".join(_download_keys(at))
    assert "dl_growth_r" in ids


def test_teaching_link_with_presentation_mode_opens_without_error():
    """Defect 1 (issue 23): `present=1` in the URL raised StreamlitWidgetAlreadyInstantiatedError
    because the toggle was drawn before the URL was applied."""
    at = _goto(_app({"present": "1", "seed": "7"}), "app_pages/teaching.py")
    assert at.toggle(key="teach_present").value is True
    assert at.number_input(key="teach_seed").value == 7


def test_lagged_heading_names_the_lag_in_use():
    """Issue 23 #10: with lag 2 the heading still said "next-session"."""
    at = _goto(_app({"lag": "2"}), "app_pages/lagged.py")
    heads = [h.value for h in at.header]
    assert any("session t+2" in h for h in heads), heads
    assert not any("next-session" in h for h in heads), heads


def test_the_no_preset_choice_stays_out_of_the_url():
    """Issue 23 #12: the Convergence URL carried preset=—+(choose+the+settings+yourself)."""
    at = _goto(_app(), "app_pages/convergence.py")
    assert "preset" not in at.query_params
    assert at.query_params.get("lines") or at.query_params.get("score")  # the options themselves are there


def test_demo_studies_are_not_all_flagged_for_routine_notes():
    """Issue 23 #16: every demo study read "ok (see notes)" because of routine singular-fit and Nickell notes."""
    at = _goto(_app(), "app_pages/lagged.py")
    status = [s for d in at.dataframe if "status" in d.value.columns for s in d.value["status"]]
    assert status and status.count("ok") >= len(status) // 2, status


def test_paper_presets_are_reachable_from_the_pooled_page():
    """Issue 23 #17: the Pooled page had no preset entry."""
    at = _goto(_app(), "app_pages/pooled.py")
    box = at.selectbox(key="preset_choice")
    assert len(box.options) >= 2
    from ui.presets import APPLIED

    at.button(key="preset_apply").click().run()
    assert not at.exception
    assert at.session_state[APPLIED]["key"] == at.selectbox(key="preset_choice").value  # the paper's setup applied


def test_study_boxes_follow_a_preset_that_replaces_the_data():
    """Issue 23 #5: after the Within/between preset the trio's Study box still said "Study 01"."""
    at = _goto(_app(), "app_pages/lagged.py")
    at.session_state["lag_tab"] = "Total, within and between"
    at.run()
    assert at.selectbox(key="dec_study").value == "Study 01"
    at.selectbox(key="preset_choice").set_value("icbt_004").run()
    at.button(key="preset_apply").click().run()
    assert not at.exception
    assert at.session_state["lag_tab"] == "Total, within and between"  # the preset opens the tab with its models
    studies = set(at.session_state["dataset"]["df"]["study"].astype(str))
    for key, tab in (("dec_study", "Total, within and between"), ("lag_view_study", "What went into the model")):
        at.session_state["lag_tab"] = tab
        at.run()
        box = at.selectbox(key=key)
        assert box.value in studies and list(box.options) == sorted(studies), key
