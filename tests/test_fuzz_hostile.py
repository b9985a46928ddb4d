"""Hypothesis fuzz of the two untrusted inputs that carry options (issue 25): URL parameters over every page
and bundle manifests/options. Bounded (few examples, no shrinking deadline) and seeded (derandomized), so the
suite stays fast and repeatable; any traceback — in ``read_bundle`` or on a page — fails."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from analysis import bundle as abundle
from analysis import data as adata
from analysis.lagged import LagOptions
from analysis.options import declared
from tests.hostile_bundles import _members, good_bundle, rebuild
from ui import persist

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["app_pages/home.py", "app_pages/data.py", "app_pages/lagged.py", "app_pages/pooled.py",
         "app_pages/convergence.py", "app_pages/events.py", "app_pages/teaching.py", "app_pages/screening.py",
         "app_pages/methods.py"]
URL_NAMES = sorted({o.url for o in declared(LagOptions) if o.url} | {*persist.TEACHING, *persist.CONVERGENCE,
                                                                         *persist.EVENTS, *persist.SMALL_K, "screen", "compare"})
HOSTILE = ["", "-", "1e400", "nan", "-5-3", "0-999999999999", "1,1,1", "evil", "![x](http://127.0.0.1:9/b.png)",
           "\x00", "true", "99", "-1", "3.5", "alliance_to_symptoms,evil", "fixed_random", "none", "0"]
url_value = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12), st.integers(-10**6, 10**6).map(str),
                      st.floats(allow_nan=True, allow_infinity=True).map(repr))
url_params = st.dictionaries(st.one_of(st.sampled_from(URL_NAMES), st.text(min_size=1, max_size=6)), url_value,
                             min_size=1, max_size=6)

json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=False),
                        st.text(max_size=10), st.sampled_from(["evil", "mixed", "none", "REML", "z"]))
json_value = st.recursive(json_scalar, lambda c: st.one_of(st.lists(c, max_size=3),
                                                           st.dictionaries(st.text(max_size=6), c, max_size=3)),
                          max_leaves=8)
OPTION_NAMES = [o.name for o in declared(LagOptions)]
lag_options = st.dictionaries(st.one_of(st.sampled_from(OPTION_NAMES), st.text(max_size=6)), json_value, max_size=5)
page_options = st.one_of(json_value, st.dictionaries(st.one_of(st.sampled_from(sorted(persist.page_params())),
                                                               st.text(max_size=6)), json_value, max_size=5))
MANIFEST_FIELDS = ["format", "name", "created", "data", "files", "seeds", "packages", "csv_encoding"]

SETTINGS = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def base_files():
    return _members(good_bundle())


@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(field=st.sampled_from(MANIFEST_FIELDS), value=json_value, lag=lag_options, pages=page_options)
def test_read_bundle_raises_only_data_errors(base_files, field, value, lag, pages):
    files = base_files
    doc = {"lag_options": lag, "page_options": pages}
    content = rebuild(files, lambda m: m.update({field: value}),
                      file_edits={"options.json": json.dumps(doc).encode()})
    try:
        b = abundle.read_bundle(content)
    except adata.DataError as e:
        assert len(str(e)) < 600
        return
    assert isinstance(b.options, LagOptions)
    assert all(isinstance(m, str) for m in b.messages)


@pytest.mark.timeout(1200)
@SETTINGS
@given(params=url_params, page=st.sampled_from(PAGES[2:]))
def test_url_parameters_never_raise_on_any_page(params, page):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(page)
    at.run()
    assert not at.exception, (params, page, [e.value for e in at.exception])
    at.run()  # a rerun with the values the page kept (the URL written back)
    assert not at.exception, (params, page, [e.value for e in at.exception])


@pytest.mark.timeout(1200)
@settings(max_examples=3, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(lag=lag_options, pages=page_options)
def test_fuzzed_bundle_options_every_page_runs(base_files, lag, pages):
    content = rebuild(base_files, file_edits={"options.json": json.dumps(
        {"lag_options": lag, "page_options": pages}).encode()})
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/data.py")
    at.run()
    at.file_uploader(key="bundle_upload_0").set_value(("f.zip", content, "application/zip")).run()
    at.button(key="bundle_load").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["dataset"]["source"] == "bundle"
    for page in PAGES:
        at.switch_page(page)
        at.run()
        assert not at.exception, (lag, pages, page, [e.value for e in at.exception])


def test_zip_is_not_extracted_and_names_are_not_paths():
    """Zip slip: a member named ../../x is never written anywhere (nothing is extracted)."""
    files = _members(good_bundle())
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(rebuild(files)), "r") as zin, zipfile.ZipFile(buf, "w") as zout:
        for n in zin.namelist():
            zout.writestr(n, zin.read(n))
        zout.writestr("../../evil.txt", b"x")
    b = abundle.read_bundle(buf.getvalue())
    assert not (ROOT.parent / "evil.txt").exists() and b.name == "small"
