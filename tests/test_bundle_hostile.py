"""Bundles are untrusted input (issue 25 #2, #3, #7, #8): a committed corpus of damaged and crafted bundles
(tests/hostile_bundles.py writes it) each fails with a plain message or loads with its bad values dropped
and named; nothing raises anything else, in ``read_bundle`` or on any page after loading."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis import bundle as abundle
from analysis import data as adata
from analysis.export import FORMULA_START
from tests.hostile_bundles import FORMULA, HERE, _members, good_bundle, rebuild, small_frame

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = json.loads((HERE / "expected.json").read_text())
PAGES = ["app_pages/home.py", "app_pages/data.py", "app_pages/lagged.py", "app_pages/pooled.py",
         "app_pages/convergence.py", "app_pages/events.py", "app_pages/teaching.py", "app_pages/screening.py"]


def test_corpus_is_committed_and_complete():
    assert len(EXPECTED) >= 20
    for name in EXPECTED:
        assert (HERE / f"{name}.zip").stat().st_size < 40_000, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_bundle_fails_plainly_or_drops_and_names(name):
    content = (HERE / f"{name}.zip").read_bytes()
    if EXPECTED[name] == "error":
        with pytest.raises(adata.DataError) as e:
            abundle.read_bundle(content)
        msg = str(e.value)
        assert "Traceback" not in msg and "/work" not in msg and len(msg) < 400
    else:
        b = abundle.read_bundle(content)
        assert b.messages or b.page_options, "nothing was dropped: the fixture is not hostile"
        assert len(b.data) == len(small_frame())


def _load_bundle(content: bytes, name: str = "b.zip") -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/data.py")
    at.run()
    at.file_uploader(key="bundle_upload_0").set_value((name, content, "application/zip")).run()
    at.button(key="bundle_load").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("name", ["sessions_huge", "window_negative", "directions_evil", "page_text_for_number",
                                  "dataset_key", "page_options_list", "impossible_combination", "bad_crc",
                                  "manifest_files_5"])
def test_hostile_bundle_in_the_app_every_page_runs(name):
    at = _load_bundle((HERE / f"{name}.zip").read_bytes())
    ds = at.session_state["dataset"]
    if EXPECTED[name] == "error":
        assert ds["source"] == "demo", "a broken bundle must not replace the data set"
        assert at.error and "Nothing was loaded" in at.error[0].value
        assert not [s for s in at.success if "Bundle loaded" in s.value]
    else:
        assert ds["source"] == "bundle", "the bundle fell back to the demo"  # 'dataset': 1 did this
        loaded = [s.value for s in at.success if "Bundle loaded" in s.value]
        assert loaded, [s.value for s in at.success]
        if name != "page_options_list":
            assert "except" in loaded[0] and at.warning, "a dropped value was not named"
    for page in PAGES:
        at.switch_page(page)
        at.run()
        assert not at.exception, (name, page, [e.value for e in at.exception])


def test_limit_equals_the_upload_limit():
    cfg = (ROOT / ".streamlit" / "config.toml").read_text()
    assert "maxUploadSize = 200" in cfg
    assert abundle.MAX_BYTES == 200 * 1024 * 1024
    files = _members(good_bundle())
    big = rebuild(files, file_edits={"README.txt": b" " * (abundle.MAX_BYTES + 1)})
    with pytest.raises(adata.DataError, match="200 MB"):
        abundle.read_bundle(big)


def test_bundle_csvs_are_neutralised_and_data_read_back_exactly():
    df = small_frame()
    content = good_bundle()
    files = _members(content)
    for name in ("data.csv",):
        cells = pd.read_csv(io.BytesIO(files[name]), dtype=str, keep_default_na=False)
        texts = cells.to_numpy().ravel().tolist() + list(cells.columns)
        assert not [t for t in texts if t.startswith(FORMULA_START) and not t.lstrip("+-").replace(".", "").isdigit()
                    and not t.startswith("-") or t.startswith(("=", "@"))], name
    b = abundle.read_bundle(content)
    assert sorted(b.data["study"].unique()) == sorted(df["study"].unique())
    assert FORMULA in set(b.data["study"]) and "'quoted" in set(b.data["study"])
    assert b.data["patient"].astype(str).str.startswith("@").sum() == (df["study"] == "'quoted").sum()
    # without the Parquet copy (an older bundle, or a hand-made one): the CSV is decoded exactly too
    no_parquet = rebuild({n: v for n, v in files.items() if n != abundle.PARQUET_NAME},
                         lambda m: m.update(files=[f for f in m["files"] if f["name"] != abundle.PARQUET_NAME]))
    b2 = abundle.read_bundle(no_parquet)
    pd.testing.assert_frame_equal(b2.data.reset_index(drop=True), b.data.reset_index(drop=True), check_dtype=False)


@pytest.mark.r
def test_hostile_names_round_trip_through_every_script(tmp_path):
    """Issue 25 #7, #8: a bundle of data whose study, patient and therapist names begin with = + @ - and '
    (neutralised in every CSV) — the Python script, the main R script, the decomposition R script (which
    looks a study up by name) and the growth R script all read the names back exactly and run."""
    import subprocess

    from analysis import convergence as conv
    from analysis import pipeline
    from analysis.lagged import LagOptions

    df = small_frame()
    extra = df[df["study"] == FORMULA].copy()
    extra["study"] = "+cmd|' /C calc'!A0"
    df = pd.concat([df, extra], ignore_index=True)
    df = adata.to_canonical(df, {c: c for c in df.columns if c in abundle.CANONICAL})
    raw = adata.load(ROOT / "demo_data" / "dyads_gsi.csv", filename="dyads_gsi.csv")
    dy = adata.to_canonical(raw, adata.suggest_mapping(raw))
    dy = dy[dy["study"] == dy["study"].iloc[0]].copy()
    dy["study"] = "@SUM(1+1)"
    dy["patient"] = "=" + dy["patient"].astype(str)
    gr = conv.growth_models(dy, models=(1,))
    options = LagOptions()
    zipped = abundle.make_bundle(df, options, "hostile", growth=gr,
                                 decomposition={"study": FORMULA, "direction": "alliance_to_symptoms"})
    files = _members(zipped)
    for name in ("data.csv", "growth/growth_model_data.csv"):
        cells = pd.read_csv(io.BytesIO(files[name]), dtype=str, keep_default_na=False)
        bad = [t for t in [*cells.to_numpy().ravel(), *cells.columns] if t.startswith(("=", "+", "@"))]
        assert not bad, (name, bad[:3])  # issue 25 #7: 1,000 such cells before
    zipfile.ZipFile(io.BytesIO(zipped)).extractall(tmp_path)

    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the package as installed by the user (pip install .)

    def run(cmd, cwd):
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
        assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-3000:])
        return r

    import sys

    run([sys.executable, "reproduce_analysis.py"], tmp_path)
    py = pd.read_csv(tmp_path / "python_per_study_estimates.csv", dtype={"study": str})
    assert {FORMULA, "'quoted", "+cmd|' /C calc'!A0"} <= set(py["study"])  # no stray ' (issue 25 #8)
    ref = pipeline.two_stage(df, options).per_study
    assert set(py["study"]) == set(ref["study"].astype(str))
    run(["Rscript", "reproduce_analysis.R"], tmp_path)
    run(["Rscript", "reproduce_decomposition.R"], tmp_path)  # stopped with "Study '=HYPERLINK…' is not in the data"
    run(["Rscript", "reproduce_growth_models.R"], tmp_path / "growth")
    rs = pd.read_csv(tmp_path / "per_study_estimates.csv", dtype={"study": str}, keep_default_na=False)
    assert {FORMULA, "'quoted", "+cmd|' /C calc'!A0"} <= set(rs["study"]), set(rs["study"])


def test_zip_members_are_never_extracted_to_disk(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    abundle.read_bundle(good_bundle())
    assert list(tmp_path.iterdir()) == []
    with zipfile.ZipFile(io.BytesIO(good_bundle())) as z:
        assert abundle.PARQUET_NAME in z.namelist()
