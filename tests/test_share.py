"""Sharing and reproducing: the exported R script (run live with Rscript) and the
downloadable Python script (run from a folder outside the project, against an
installed copy of the package) give the app's numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import data, pipeline, rscript
from analysis.lagged import DIRECTIONS, LagOptions
from analysis.report import r_script, reproduction_script

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo_data" / "ipd_17_studies.csv"
# Study 08 has two REML optima of the random-slope model (the R script must find the better one)
STUDIES = ["Study 02", "Study 04", "Study 08", "Study 10", "Study 13", "Study 15"]
ODD_STUDY = 'Ä "tiny" \\ study'  # two patients only: fails in the app and in R


def _canonical() -> pd.DataFrame:
    """Five demo studies through the app's intake path, plus a study that cannot be fitted."""
    raw = data.load(DEMO, filename=DEMO.name)
    df = data.to_canonical(raw, data.suggest_mapping(raw))
    df = df[df["study"].isin(STUDIES)]
    first = df[df["study"] == STUDIES[0]]
    tiny = first[first["patient"].isin(first["patient"].unique()[:2])].copy()
    tiny["study"] = ODD_STUDY
    return pd.concat([df, tiny], ignore_index=True)


@pytest.fixture(scope="module")
def canonical():
    return _canonical()


HOSTILE_COVARIATE = 'grüppe "x" \\ $(y) ×'  # a column name that must stay data inside the R script


def _with_covariates(df: pd.DataFrame) -> pd.DataFrame:
    """The demo studies plus patient-level covariates, read back through the app's intake (which decides
    numeric vs text): ``age`` (numeric, some patients missing), ``group`` (3 levels, some missing) and
    ``arm`` (Study 02 has no patient in the reference level 'a', so its dummies are dropped there);
    ``setting`` (study-level in the demo) is constant within each study and dropped in every study."""
    df = df.copy()
    codes = pd.factorize(df["study"].astype(str) + "|" + df["patient"].astype(str))[0]
    rng = np.random.default_rng(5)
    age = rng.normal(40, 12, codes.max() + 1).round(1)[codes]
    age[codes % 17 == 3] = np.nan
    group = np.array(["ctrl", "icbt", "wait"], dtype=object)[rng.integers(0, 3, codes.max() + 1)][codes]
    group[codes % 23 == 5] = None
    arm = np.where((df["study"] == "Study 02").to_numpy(), np.array(["b", "c"])[codes % 2],
                   np.array(["a", "b", "c"])[codes % 3])
    df["age"], df["group"], df["arm"] = age, group, arm
    df[HOSTILE_COVARIATE] = np.where(pd.isna(group), None, np.char.add("lev ", group.astype(str)) + ' "ü" \\')
    raw = data.load(df.to_csv(index=False).encode("utf-8"), filename="with_covariates.csv")
    return data.to_canonical(raw, data.suggest_mapping(raw))


@pytest.fixture(scope="module")
def canonical_cov(canonical):
    return _with_covariates(canonical)


R_OPTION_SETS = {
    "default": LagOptions(),
    "detrended_time_dl_knha": LagOptions(centering="detrended", time_trend="fixed", pooling_method="DL", test="knha"),
    "fixed_effects_cross_pm_z": LagOptions(estimator="fixed_effects", cross_level=True, time_trend="fixed",
                                           pooling_method="PM", test="z"),
    "next_observed_lag2_raw_window_grand_sj": LagOptions(pairing="next_observed", lag=2, standardize=False,
                                                         sessions=(2, 6), centering="grand_mean", pooling_method="SJ"),
    "random_slope_none_noprior_fe": LagOptions(time_trend="fixed_random", control_prior_outcome=False,
                                               centering="none", pooling_method="FE"),
    "random_slope_eb_knha_one_direction": LagOptions(time_trend="fixed_random", directions=("alliance_to_symptoms",),
                                                     pooling_method="EB", test="knha"),
    # lag 0, Satterthwaite t tests (lmerTest), covariates (numeric + text levels, missing values)
    "lag0_next_observed_satterthwaite_covariates_ml": LagOptions(
        lag=0, directions=("symptoms_to_alliance",), pairing="next_observed", df_method="satterthwaite",
        covariates=("age", HOSTILE_COVARIATE), pooling_method="ML"),
    "lag0_detrended_within_sd_dl": LagOptions(lag=0, directions=("symptoms_to_alliance",), centering="detrended",
                                              standardize_by="within", pooling_method="DL"),
    "outcome_moderator_cross_level_covariates_knha": LagOptions(
        outcome_moderator=True, cross_level=True, covariates=("age", "arm", "setting"), test="knha"),
    "fixed_effects_lag3_outcome_moderator_covariates_pm": LagOptions(
        estimator="fixed_effects", lag=3, outcome_moderator=True, covariates=("group", "arm"), time_trend="fixed",
        pooling_method="PM"),
    "satterthwaite_random_slope_within_sd_he": LagOptions(df_method="satterthwaite", time_trend="fixed_random",
                                                          standardize_by="within", pooling_method="HE"),
    "raw_grand_mean_covariates_hs_knha": LagOptions(standardize=False, centering="grand_mean",
                                                    covariates=("age", "arm"), pooling_method="HS", test="knha"),
    # latent-centred stage 1 (METHODS §15): RI-CLPM / DPM by FIML in lavaan
    "riclpm_window_dl": LagOptions(stage1="riclpm", sessions=(1, 6), pooling_method="DL"),
    "dpm_raw_knha": LagOptions(stage1="dpm", standardize=False, test="knha"),
}
# Together the sets cover every value of every LagOptions field (lags 0-3, all nine tau2 estimators, ...).
# the R script guesses the covariate types itself (numeric when every value reads as a number) for this set
R_GUESSES_KINDS = {"raw_grand_mean_covariates_hs_knha"}


def test_r_option_sets_cover_every_value_the_r_script_implements():
    for name, allowed in rscript.R_VALUES.items():
        used = {getattr(o, name) for o in R_OPTION_SETS.values()}
        assert set(allowed) <= used, (name, set(allowed) - used)
    sets = R_OPTION_SETS.values()
    assert {o.directions for o in sets} >= {DIRECTIONS, ("alliance_to_symptoms",), ("symptoms_to_alliance",)}
    assert any(o.sessions for o in sets) and any(len(o.covariates) >= 3 for o in sets)


@pytest.mark.r
@pytest.mark.parametrize("name", list(R_OPTION_SETS))
def test_r_script_reproduces_two_stage(name, canonical, canonical_cov, tmp_path):
    options = R_OPTION_SETS[name]
    frame = canonical_cov if options.covariates else canonical
    fname = 'data "ü" \\ 1.csv'  # a file name that needs escaping inside R
    frame.to_csv(tmp_path / fname, index=False)
    script = r_script(fname, options, data=None if name in R_GUESSES_KINDS else frame)
    (tmp_path / "reproduce.R").write_text(script, encoding="utf-8")
    run = subprocess.run(["Rscript", "reproduce.R"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Stage 2, pooled" in run.stdout
    res = pipeline.two_stage(frame, options)

    per_r = pd.read_csv(tmp_path / "per_study_estimates.csv", dtype={"study": str}, encoding="utf-8")
    py = res.per_study.astype({"study": object, "direction": object, "term": object, "status": object})
    key = ["study", "direction", "term"]
    assert sorted(map(tuple, py[key].to_numpy())) == sorted(map(tuple, per_r[key].to_numpy()))
    m = py.merge(per_r, on=key, suffixes=("_py", "_r"))
    failed_py = m["status_py"] == "failed"
    failed_r = m["status_r"].str.startswith("failed")
    assert (failed_py == failed_r).all()
    assert failed_py[m["study"] == ODD_STUDY].all()
    ok = ~failed_py
    assert ok.sum() >= len(STUDIES) * len(options.directions) * 2
    np.testing.assert_allclose(m.loc[ok, "estimate_r"], m.loc[ok, "estimate_py"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(m.loc[ok, "se_r"], m.loc[ok, "se_py"], rtol=0, atol=1e-4)
    df_py = np.array([res.fits[(s, d)].coef(t)["df"] for s, d, t in m.loc[ok, key].to_numpy()])
    if options.df_method == "satterthwaite":
        assert np.isfinite(df_py).all()
        np.testing.assert_allclose(m.loc[ok, "df"], df_py, rtol=1e-4)
    elif options.estimator == "fixed_effects":
        np.testing.assert_array_equal(m.loc[ok, "df"], df_py)
    else:
        assert np.isinf(df_py).all() and np.isinf(m.loc[ok, "df"]).all()
    if options.covariates:
        # constant covariates are dropped per study in both (setting is study-level; Study 02 lacks arm 'a')
        assert not m["term"].str.contains("setting").any()
        s02 = m[m["study"] == "Study 02"]
        assert "arm" not in options.covariates or not s02["term"].str.startswith(("arm", "within × arm")).any()
        assert m["term"].str.startswith("within × ").any()

    pooled_r = pd.read_csv(tmp_path / "pooled_estimates.csv").set_index("direction")
    assert sorted(pooled_r.index) == sorted(res.pooled)
    for direction, meta in res.pooled.items():
        row = pooled_r.loc[direction]
        assert int(row["k"]) == meta.k == len(STUDIES)
        for col, val in (("estimate", meta.estimate), ("se", meta.se), ("tau2", meta.tau2),
                         ("ci_low", meta.ci_low), ("ci_high", meta.ci_high)):
            assert abs(row[col] - val) < 1e-4, (direction, col, row[col], val)


@pytest.mark.r
def test_r_string_literals_read_back_exactly(tmp_path):
    values = ['plain', 'quote " and \\ backslash', "new\nline\ttab", "ümlaut – dash ⇄ 😀", "'); system('x'); ('"]
    lines = [f"cat({rscript.r_string(v)}, '\\x1f', sep = '')" for v in values]
    (tmp_path / "s.R").write_text("\n".join(lines), encoding="utf-8")
    run = subprocess.run(["Rscript", "s.R"], cwd=tmp_path, capture_output=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.decode("utf-8").split("\x1f")[:-1] == values


def test_r_string_is_ascii_and_rejects_nul():
    assert rscript.r_string("ü⇄").isascii()
    with pytest.raises(ValueError, match="NUL"):
        rscript.r_string("a\x00b")


def test_r_script_names_an_option_it_cannot_reproduce(monkeypatch):
    # every LagOptions field outside R_SUPPORTED_OPTIONS must keep its default
    monkeypatch.setattr(rscript, "R_SUPPORTED_OPTIONS", tuple(f for f in rscript.R_SUPPORTED_OPTIONS
                                                            if f != "cross_level"))
    assert "opt <- list(" in r_script("d.csv", LagOptions())
    with pytest.raises(ValueError, match="cross_level"):
        r_script("d.csv", LagOptions(cross_level=True))


def test_r_script_names_a_value_it_cannot_reproduce(monkeypatch):
    # a new value of a supported field (e.g. another lag) must be implemented in the template first
    monkeypatch.setitem(rscript.R_VALUES, "lag", (1, 2))
    with pytest.raises(ValueError, match="lag=3"):
        r_script("d.csv", LagOptions(lag=3))
    monkeypatch.setitem(rscript.R_VALUES, "standardize", (True,))
    with pytest.raises(ValueError, match="standardize=False"):
        r_script("d.csv", LagOptions(standardize=False))


def test_r_script_covers_every_lag_option_and_names_a_new_one(monkeypatch):
    # every option the app offers today is exported; a value the template lacks is named, never mis-scripted
    assert set(rscript.R_SUPPORTED_OPTIONS) == {f.name for f in fields(LagOptions)}
    monkeypatch.setitem(rscript.R_VALUES, "df_method", ("z",))
    with pytest.raises(ValueError, match="df_method='satterthwaite'"):
        r_script("d.csv", LagOptions(df_method="satterthwaite"))


def test_r_script_embeds_covariate_types_decided_by_the_app():
    df = pd.DataFrame({"age": [30.5, np.nan], "code": pd.array(["1", "2"], dtype="string"), "flag": [True, False]})
    assert rscript.covariate_kinds(df, ("age", "code", "flag")) == {
        "age": "numeric", "code": "categorical", "flag": "categorical"}
    text = r_script("d.csv", LagOptions(covariates=("age", "code")), data=df)
    assert 'covariate_kinds = c("age" = "numeric", "code" = "categorical")' in text
    assert "covariate_kinds = NULL" in r_script("d.csv", LagOptions(covariates=("age",)))


def test_r_script_embeds_every_option():
    text = r_script("d.csv", LagOptions(sessions=(2, 6), lag=3, directions=("symptoms_to_alliance",)))
    assert 'sessions = c(2L, 6L)' in text
    assert 'lag = 3L' in text
    assert 'directions = c("symptoms_to_alliance")' in text
    assert 'pooling_method = "REML"' in text


# ---------------------------------------------------------------- installed package, Python script


@pytest.fixture(scope="session")
def installed_site(tmp_path_factory):
    """``pip install --no-deps --target`` of this project (a wheel build, as users install it)."""
    import shutil

    site = tmp_path_factory.mktemp("site")
    src = tmp_path_factory.mktemp("src")  # a clean copy, so the build leaves nothing in the project folder
    for rel in ("pyproject.toml", "requirements.txt", "README.md", "app.py"):
        shutil.copy2(ROOT / rel, src / rel)
    for rel in ("analysis", "ui", "app_pages", ".streamlit", "demo_data", "docs", "assets", "backend"):
        shutil.copytree(ROOT / rel, src / rel, ignore=shutil.ignore_patterns("__pycache__"))
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    # the build leaves nothing in the user's folder (issue 23 #17: `pip install .` left build/ behind)
    left = sorted(p.name for p in src.iterdir() if p.name == "build" or p.name.endswith(".egg-info"))
    assert not left, left
    return site


def _outside_env(site: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(site)
    return env


def test_installed_package_layout_and_version(installed_site, tmp_path):
    import analysis

    for rel in ("analysis/pipeline.py", "alliance_dashboard/app.py", "alliance_dashboard/app_pages/lagged.py",
                "alliance_dashboard/ui/state.py", "alliance_dashboard/.streamlit/config.toml",
                "alliance_dashboard/demo_data/ipd_17_studies.csv", "alliance_dashboard/docs/METHODS.md",
                "alliance_dashboard/assets/favicon.png"):
        assert (installed_site / rel).is_file(), rel
    env = _outside_env(installed_site)
    run = subprocess.run([sys.executable, "-m", "analysis"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert analysis.__version__ in run.stdout and str(installed_site) in run.stdout
    run = subprocess.run([sys.executable, "-c", "from alliance_dashboard.ui.launch import main; main(['--version'])"],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"alliance-dashboard {analysis.__version__}"


def test_alliance_dashboard_command_starts_the_app(installed_site, tmp_path):
    import signal
    import time
    import urllib.request

    from tests.browser_util import free_port

    exe = installed_site / "bin" / "alliance-dashboard"
    run = subprocess.run([str(exe), "--version"], cwd=tmp_path, env=_outside_env(installed_site),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith("alliance-dashboard "), run.stderr
    port = free_port()
    proc = subprocess.Popen([str(exe), "--server.port", str(port), "--server.headless", "true"], cwd=tmp_path,
                            env=_outside_env(installed_site), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline, ok = time.time() + 90, False
        while time.time() < deadline and proc.poll() is None and not ok:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    ok = r.status == 200
            except OSError:
                time.sleep(0.5)
        assert ok, "the installed app did not answer on its port"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_installed_app_runs_from_the_installed_copy(installed_site, tmp_path):
    # the app's pages and ui/ helpers come from the installed copy, not from this project folder
    code = (
        "from streamlit.testing.v1 import AppTest\n"
        "import sys\n"
        f"at = AppTest.from_file({str(installed_site / 'alliance_dashboard' / 'app.py')!r}, default_timeout=180)\n"
        "at.run()\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "at.switch_page('app_pages/lagged.py'); at.run()\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "import ui.state\n"
        "print(ui.state.__file__)\n"
        "print(len(at.get('plotly_chart')))\n"
    )
    # AppTest starts no server and reads .streamlit/config.toml from its working folder only: run it in the
    # installed app folder, so the shipped settings (127.0.0.1, no usage statistics) are the ones read; elsewhere
    # the app's guard (ui.launch.serving_problem) rightly refuses to show data
    run = subprocess.run([sys.executable, "-c", code], cwd=installed_site / "alliance_dashboard",
                         env=_outside_env(installed_site),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    path, charts = run.stdout.strip().splitlines()[-2:]
    assert path.startswith(str(installed_site)) and int(charts) >= 1


def test_python_script_runs_outside_the_project(installed_site, canonical, tmp_path):
    options = LagOptions(centering="detrended", pooling_method="DL", test="knha")
    work, elsewhere = tmp_path / "download", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    canonical.to_csv(work / "analysis_data.csv", index=False)
    (work / "reproduce_analysis.py").write_text(reproduction_script("analysis_data.csv", options.to_dict()),
                                                encoding="utf-8")
    run = subprocess.run([sys.executable, str(work / "reproduce_analysis.py")], cwd=elsewhere,
                         env=_outside_env(installed_site), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    res = pipeline.two_stage(canonical, options)
    pooled = pd.read_csv(work / "python_pooled_estimates.csv").set_index("direction")
    for direction, meta in res.pooled.items():
        for col in ("estimate", "se", "tau2", "ci_low", "ci_high"):
            assert pooled.loc[direction, col] == pytest.approx(getattr(meta, col), rel=1e-12, abs=1e-14)
    per = pd.read_csv(work / "python_per_study_estimates.csv", dtype={"study": str})
    np.testing.assert_allclose(per["estimate"].to_numpy(float), res.per_study["estimate"].to_numpy(float),
                               rtol=1e-12, equal_nan=True)



# ---------------------------------------------------------------- reproducibility bundle


def _bundle_options():
    return LagOptions(centering="detrended", lag=2, pairing="next_observed", sessions=(1, 6), pooling_method="PM",
                      test="knha")


def test_bundle_round_trip_gives_identical_results(canonical):
    import io
    import json
    import zipfile

    from analysis import bundle

    options = _bundle_options()
    zipped = bundle.make_bundle(canonical, options, ODD_STUDY, page_options={"teach_seed": 7}, seeds={"teach_seed": 7},
                                report_html="<html></html>", figures={"forest plot/1": "<svg/>"})
    names = set(zipfile.ZipFile(io.BytesIO(zipped)).namelist())
    assert {"data.csv", "mapping.json", "options.json", "manifest.json", "reproduce_analysis.py",
            "reproduce_analysis.R", "report.html", "figures/forest_plot_1.svg", "README.txt"} <= names
    b = bundle.read_bundle(zipped)
    assert b.name == ODD_STUDY and b.options == options and b.page_options == {"teach_seed": 7}
    assert b.manifest["seeds"] == {"teach_seed": 7} and "numpy" in b.manifest["packages"]
    pd.testing.assert_frame_equal(b.data, canonical)
    r1, r2 = pipeline.two_stage(canonical, options), pipeline.two_stage(b.data, options)
    pd.testing.assert_frame_equal(r1.per_study, r2.per_study, check_exact=True)
    for d in r1.pooled:
        assert (r1.pooled[d].estimate, r1.pooled[d].se, r1.pooled[d].tau2) == (
            r2.pooled[d].estimate, r2.pooled[d].se, r2.pooled[d].tau2)
    # a changed file is refused, with the reason
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(zipped)) as zin, zipfile.ZipFile(buf, "w") as zout:
        for n in zin.namelist():
            blob = zin.read(n)
            if n == "options.json":
                doc = json.loads(blob)
                doc["lag_options"]["lag"] = 1
                blob = json.dumps(doc).encode()
            zout.writestr(n, blob)
    with pytest.raises(data.DataError, match="options.json.*changed"):
        bundle.read_bundle(buf.getvalue())
    with pytest.raises(data.DataError, match="not a readable zip"):
        bundle.read_bundle(b"study,patient\n")
    assert bundle.is_bundle(zipped) and not bundle.is_bundle(b"PK\x03\x04junk")


def test_bundled_python_script_runs_from_a_folder_outside_the_project(installed_site, canonical, tmp_path):
    import io
    import zipfile

    from analysis import bundle

    options = _bundle_options()
    zipfile.ZipFile(io.BytesIO(bundle.make_bundle(canonical, options, "b"))).extractall(tmp_path / "b")
    run = subprocess.run([sys.executable, str(tmp_path / "b" / "reproduce_analysis.py")], cwd=tmp_path,
                         env=_outside_env(installed_site), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    res = pipeline.two_stage(canonical, options)
    pooled = pd.read_csv(tmp_path / "b" / "python_pooled_estimates.csv").set_index("direction")
    for direction, meta in res.pooled.items():
        assert pooled.loc[direction, "estimate"] == pytest.approx(meta.estimate, rel=1e-12)
        assert pooled.loc[direction, "tau2"] == pytest.approx(meta.tau2, rel=1e-12, abs=1e-15)


def test_reference_checker_flags_numerical_differences(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "reference"))
    try:
        import check_reference as cr
    finally:
        sys.path.pop(0)
    doc = {"fits": [{"estimate": [0.25, -1.5e-3], "study": "A", "singular": True}], "tau2": 0.0}
    same = {"fits": [{"estimate": [0.25 * (1 + 1e-11), -1.5e-3], "study": "A", "singular": True}], "tau2": 1e-14}
    assert cr.compare_json(doc, same, 1e-9, 1e-12) == []
    moved = {"fits": [{"estimate": [0.25 * (1 + 1e-8), -1.5e-3], "study": "A", "singular": True}], "tau2": 0.0}
    assert cr.compare_json(doc, moved, 1e-9, 1e-12) == ["$.fits[0].estimate[0]: 0.25 != 0.2500000025"]
    assert cr.compare_json(doc, {**doc, "tau2": None}, 1e-9, 1e-12)
    assert cr.compare_json(doc, {"fits": [{**doc["fits"][0], "study": "B"}], "tau2": 0.0}, 1e-9, 1e-12)
    # a Python script that reads an R script's output runs after every R script (the BCG trials of
    # meta_reference.json for the Bayesian reference), the others before them
    order = [p.name for p in cr.script_order(ROOT / "tests" / "reference")]
    assert order.index("make_bayes_reference.py") > max(i for i, n in enumerate(order) if n.endswith(".R"))
    assert "meta_reference.json" in (ROOT / "tests" / "reference" / "make_bayes_reference.py").read_text()
    assert order.index("make_convergence_inputs.py") < min(i for i, n in enumerate(order) if n.endswith(".R"))
    pd.DataFrame({"s": ["x", "y"], "v": [1.0, 2.0]}).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"s": ["x", "y"], "v": [1.0, 2.0 + 1e-6]}).to_csv(tmp_path / "b.csv", index=False)
    assert cr.compare_csv(tmp_path / "a.csv", tmp_path / "a.csv", 1e-9, 1e-12) == []
    assert len(cr.compare_csv(tmp_path / "a.csv", tmp_path / "b.csv", 1e-9, 1e-12)) == 1


@pytest.mark.r
def test_bundled_r_script_runs_in_the_unzipped_bundle(canonical, tmp_path):
    import io
    import zipfile

    from analysis import bundle

    options = LagOptions(estimator="fixed_effects", sessions=(1, 6))
    zipfile.ZipFile(io.BytesIO(bundle.make_bundle(canonical, options, "b"))).extractall(tmp_path)
    run = subprocess.run(["Rscript", "reproduce_analysis.R"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sessions=1,6" in run.stdout
    res = pipeline.two_stage(canonical, options)
    pooled = pd.read_csv(tmp_path / "pooled_estimates.csv").set_index("direction")
    for direction, meta in res.pooled.items():
        assert abs(pooled.loc[direction, "estimate"] - meta.estimate) < 1e-4
        assert abs(pooled.loc[direction, "se"] - meta.se) < 1e-4


# ---------------------------------------------------------------- R scripts of the trio and the growth models


def _demo(name: str) -> pd.DataFrame:
    raw = data.load(ROOT / "demo_data" / name, filename=name)
    return data.to_canonical(raw, data.suggest_mapping(raw))


def _rscript(tmp_path, script: str) -> subprocess.CompletedProcess:
    (tmp_path / "reproduce.R").write_text(script, encoding="utf-8")
    run = subprocess.run(["Rscript", "reproduce.R"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _assert_close(r, py, what, rel=1e-4):
    """|R − app| ≤ rel · max(1, |app|): 1e-4 absolute for values up to 1, relative beyond (variance
    components on a BDI scale are in the tens)."""
    r, py = np.asarray(r, float), np.asarray(py, float)
    bad = ~(np.abs(r - py) <= rel * np.maximum(1.0, np.abs(py)))
    assert not bad.any(), (what, r[bad], py[bad])


DECOMPOSITION_SETS = {
    "icbt_raw_lag1": ("icbt_within_between.csv", dict(direction="alliance_to_symptoms", lag=1, standardize=False)),
    "icbt_z_lag2_window_reverse": ("icbt_within_between.csv",
                                   dict(direction="symptoms_to_alliance", lag=2, standardize=True, sessions=(2, 9))),
    "ipd_study_04_z": ("ipd_17_studies.csv", dict(direction="alliance_to_symptoms", lag=1, standardize=True,
                                                  study="Study 04", sessions=(1, 6))),
}


def _r_models(py: pd.DataFrame) -> pd.DataFrame:
    """The rows the R script fits: the trio (total, within, between). The published between model on session
    rows ("between_sessions", a degenerate fit lme4 does not converge on) is not in the script."""
    assert set(py["model"].astype(str)) <= {"total", "within", "between", "between_sessions"}
    return py[py["model"].astype(str) != "between_sessions"].reset_index(drop=True)


@pytest.mark.r
@pytest.mark.parametrize("name", list(DECOMPOSITION_SETS))
def test_r_decomposition_script_reproduces_the_trio(name, tmp_path):
    from analysis import decomposition
    from analysis.rscript_models import r_decomposition_script

    demo, kw = DECOMPOSITION_SETS[name]
    df = _demo(demo)
    df.to_csv(tmp_path / "analysis_data.csv", index=False)
    run = _rscript(tmp_path, r_decomposition_script("analysis_data.csv", **kw))
    assert "Wrote decomposition_estimates.csv" in run.stdout
    res = decomposition.total_within_between(df, **kw)
    py = _r_models(res.to_frame())
    rr = pd.read_csv(tmp_path / "decomposition_estimates.csv")
    assert sorted(zip(py["model"], py["term"])) == sorted(zip(rr["model"], rr["term"]))
    assert len(py) == 9
    m = py.astype({"model": object, "term": object}).merge(rr, on=["model", "term"], suffixes=("_py", "_r"))
    for c in ("estimate", "se", "statistic", "pvalue", "ci_low", "ci_high"):
        np.testing.assert_allclose(m[f"{c}_r"], m[f"{c}_py"], rtol=0, atol=1e-4, err_msg=c)
    np.testing.assert_allclose(m["df_r"], m["df_py"], rtol=1e-3)
    assert (m["n_obs_r"] == m["n_obs_py"]).all() and (m["n_patients_r"] == m["n_patients_py"]).all()
    vc = pd.read_csv(tmp_path / "decomposition_variance.csv").set_index("model")
    for model in ("total", "within"):
        assert abs(vc.loc[model, "tau2"] - res.tau2[model]) < 1e-4
        assert abs(vc.loc[model, "sigma2"] - res.sigma2[model]) < 1e-4


@pytest.mark.r
def test_r_decomposition_script_with_a_hostile_study_name_and_a_study_that_cannot_be_fitted(canonical, tmp_path):
    from analysis import decomposition
    from analysis.rscript_models import r_decomposition_script

    hostile = 'Ä "04" \\ $(x) ×'
    df = canonical.copy()
    df["study"] = df["study"].replace({"Study 04": hostile})
    df.to_csv(tmp_path / "analysis_data.csv", index=False)
    _rscript(tmp_path, r_decomposition_script("analysis_data.csv", hostile, standardize=True))
    rr = pd.read_csv(tmp_path / "decomposition_estimates.csv")
    py = _r_models(decomposition.total_within_between(df, study=hostile, standardize=True).to_frame())
    np.testing.assert_allclose(rr["estimate"], py["estimate"], rtol=0, atol=1e-4)
    # two patients: no model can be fitted, in the app or in R (which says why)
    run = _rscript(tmp_path, r_decomposition_script("analysis_data.csv", ODD_STUDY))
    assert run.stdout.count("was not fitted") == 3
    assert len(decomposition.total_within_between(df, study=ODD_STUDY).to_frame()) == 0
    assert len(pd.read_csv(tmp_path / "decomposition_estimates.csv")) == 0


def _growth_sets():
    from analysis.convergence import SampleRules

    return {
        "gsi_default": ("dyads_gsi.csv", dict()),
        "gsi_rules_log_occasion_fitted": ("dyads_gsi.csv", dict(rules=SampleRules(min_sessions=5),
                                                               transform="log_shift", time="occasion",
                                                               early_discrepancy="fitted")),
        "gsi_covariate_from_first": ("dyads_gsi.csv", dict(covariates=("n_sessions",), time="from_first")),
        "gsi_three_levels": ("dyads_gsi.csv", dict(therapist_level="always")),
        # the app's solver used to stop at a zero therapist variance here (REML 658.9372 vs lme4's 658.9310)
        "gsi_three_levels_from_first_fitted": ("dyads_gsi.csv", dict(therapist_level="always", time="from_first",
                                                                     early_discrepancy="fitted")),
        "bdi_default_signed": ("dyads_bdi.csv", dict(discrepancy="signed")),
        "bdi_three_levels_multilevel_scores": ("dyads_bdi.csv", dict(therapist_level="always", score_method="multilevel")),
    }


@pytest.mark.r
@pytest.mark.parametrize("name", list(_growth_sets()))
def test_r_growth_script_reproduces_models_1_to_3(name, tmp_path):
    from analysis import convergence as conv
    from analysis.rscript_models import r_growth_script

    demo, kw = _growth_sets()[name]
    gr = conv.growth_models(_demo(demo), **kw)
    assert len(gr.models) == 3
    gr.model_data().to_csv(tmp_path / "growth_model_data.csv", index=False)
    run = _rscript(tmp_path, r_growth_script("growth_model_data.csv", gr))
    assert "Wrote growth_fixed_effects.csv" in run.stdout
    py = gr.to_frame()
    rr = pd.read_csv(tmp_path / "growth_fixed_effects.csv")
    assert sorted(zip(py["model"], py["term"])) == sorted(zip(rr["model"], rr["term"]))
    m = py.astype({"term": object}).merge(rr, on=["model", "term"], suffixes=("_py", "_r"))
    for c in ("estimate", "se"):
        _assert_close(m[f"{c}_r"], m[f"{c}_py"], c)
    np.testing.assert_allclose(m["df_r"], m["df_py"], rtol=1e-3)
    vc = pd.read_csv(tmp_path / "growth_random_effects.csv").set_index("model")
    for k, g in gr.models.items():
        assert vc.loc[k, "n_dyads"] == g.n_dyads and vc.loc[k, "n_obs"] == g.n_obs
        comps = ["var_intercept", "var_slope", "cov_intercept_slope", "residual"]
        comps += ["var_therapist"] if g.levels == 3 else []
        assert (g.levels == 3) == np.isfinite(vc.loc[k, "var_therapist"])
        _assert_close([vc.loc[k, c] for c in comps], [g.random[c] for c in comps], f"model {k} variances")
        _assert_close(vc.loc[k, "aic_ml"], g.aic_ml, f"model {k} ML AIC")
        # the same REML optimum (lme4's best of three optimisers; the app's never worse)
        rdev = vc.loc[k, "deviance_reml"]
        assert g.deviance_reml <= rdev + 1e-7 and abs(rdev - g.deviance_reml) < 1e-6, (k, rdev, g.deviance_reml)
        assert set(str(vc.loc[k, "dropped"]).split()) - {"nan"} == set(g.dropped_terms)


def test_growth_model_data_are_the_rows_of_the_fit():
    from analysis import convergence as conv

    gr = conv.growth_models(_demo("dyads_gsi.csv"), therapist_level="always")
    md = gr.model_data()
    assert len(md) == gr.models[1].n_obs and md["patient"].nunique() == gr.models[1].n_dyads
    assert list(md.columns[:4]) == ["patient", "therapist", "t", "symptoms"]
    per = md.groupby("patient")["convergence"].first()
    np.testing.assert_allclose(per.mean(), gr.centering["convergence"], rtol=1e-12)
    assert "convergence_x_development" not in md.columns


# ---------------------------------------------------------------- bundle: extra R scripts and every figure


@pytest.mark.r
def test_bundle_with_trio_and_growth_scripts_runs_them_in_the_unzipped_bundle(canonical, tmp_path):
    import io
    import zipfile

    from analysis import bundle, decomposition
    from analysis import convergence as conv

    options = LagOptions(lag=2, standardize=True, sessions=(1, 6))
    gr = conv.growth_models(_demo("dyads_gsi.csv"), models=(1, 2))
    zipped = bundle.make_bundle(canonical, options, "b", decomposition={"study": "Study 04",
                                                                        "direction": "symptoms_to_alliance"},
                                growth=gr)
    names = set(zipfile.ZipFile(io.BytesIO(zipped)).namelist())
    assert {"reproduce_decomposition.R", "growth/growth_model_data.csv", "growth/reproduce_growth_models.R"} <= names
    b = bundle.read_bundle(zipped)  # the checksums of the new files are in the manifest
    assert {"reproduce_decomposition.R", "growth/reproduce_growth_models.R"} <= {f["name"] for f in b.manifest["files"]}
    zipfile.ZipFile(io.BytesIO(zipped)).extractall(tmp_path)
    run = subprocess.run(["Rscript", "reproduce_decomposition.R"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    res = decomposition.total_within_between(canonical, "symptoms_to_alliance", lag=2, standardize=True,
                                             study="Study 04", sessions=(1, 6))
    rr = pd.read_csv(tmp_path / "decomposition_estimates.csv")
    w = rr[(rr["model"] == "within") & (rr["term"] == "within")].iloc[0]
    assert abs(w["estimate"] - res.coef("within", "within")["estimate"]) < 1e-4
    run = subprocess.run(["Rscript", "reproduce_growth_models.R"], cwd=tmp_path / "growth", capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    fx = pd.read_csv(tmp_path / "growth" / "growth_fixed_effects.csv")
    py = gr.to_frame()
    _assert_close(fx["estimate"], py.set_index(["model", "term"]).loc[list(zip(fx["model"], fx["term"])), "estimate"],
                  "growth estimates")


def test_bundle_says_why_a_trio_script_is_missing(canonical):
    import io
    import zipfile

    from analysis import bundle

    zipped = bundle.make_bundle(canonical, LagOptions(lag=0, directions=("symptoms_to_alliance",)), "b",
                                decomposition={"study": "Study 04", "direction": "symptoms_to_alliance"})
    z = zipfile.ZipFile(io.BytesIO(zipped))
    assert "reproduce_decomposition.R" not in z.namelist()
    assert "No R script of the total/within/between models: lag must be" in z.read("README.txt").decode()


def test_bundle_holds_every_figure_of_the_analysis_as_svg(canonical):
    import io
    import time
    import zipfile

    from analysis import bundle, plots_meta
    from ui import reporting

    options = LagOptions()
    res = pipeline.two_stage(canonical, options)
    ds = {"df": canonical, "name": "demo"}
    forest = plots_meta.forest_figure(res.pooled["alliance_to_symptoms"], title="forest", xlabel="x")
    figs = reporting.analysis_figures(ds, options, res, forest)  # no page choices: the pooled-page figures
    expected = {"forest_plot"} | {f"{kind}_{d}" for d in options.directions
                                  for kind in ("study_coefficients", "leave_one_out", "funnel", "multiverse")}
    assert set(figs) == expected
    t0 = time.time()
    zipped = bundle.make_bundle(canonical, options, "b", figures=figs)
    took = time.time() - t0
    z = zipfile.ZipFile(io.BytesIO(zipped))
    svgs = {n: z.read(n) for n in z.namelist() if n.startswith("figures/")}
    assert set(svgs) == {f"figures/{n}.svg" for n in expected}
    for n, b in svgs.items():
        assert b"<svg" in b[:400] and len(b) > 5000, n
    assert took < 120, f"rendering {len(svgs)} figures took {took:.0f} s"
    assert bundle.read_bundle(zipped).options == options
