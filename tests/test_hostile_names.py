"""Names from a file never become markup (issue 16).

A data file whose study, patient, therapist and column names and whose own file name carry Markdown
images and links, HTML, LaTeX, quotes with a newline, a 300-character name and right-to-left override
characters is uploaded through the Data page; then every page of the app is visited. No element that
renders Markdown (markdown, captions, alerts, headers, expander and tab labels, widget labels, help
texts, radio options, st.table cells) may carry one of those payloads unescaped, and no page may fail.
The browser test (tests/test_browser_hostile.py) checks the same in chromium with a beacon server.
"""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.hostile import hostile_csv, hostile_file_name, hostile_frame, leaks, payloads

ROOT = Path(__file__).resolve().parents[1]
# Proto fields a Markdown renderer shows: bodies, labels, help texts, radio captions
MARKDOWN_FIELDS = {"body", "label", "help", "captions", "caption", "title", "text"}
# widgets whose options are shown as Markdown too (selectbox / multiselect options are plain text)
MARKDOWN_OPTIONS = {"radio", "button_group"}
TEXT_ONLY = {"dataframe", "arrow_data_frame", "code", "text", "plotly_chart", "json", "download_button"}


def _strings(msg, fields: set[str]):
    """Every string in protobuf ``msg`` under one of ``fields`` (recursively)."""
    for fd, value in msg.ListFields():
        scalar = isinstance(value, (str, bytes, bool, int, float)) or hasattr(value, "ListFields")
        items = [value] if scalar else list(value)
        if fd.message_type is not None:
            for m in items:
                if hasattr(m, "ListFields"):
                    yield from _strings(m, fields)
        elif fd.name in fields:
            for v in items:
                if isinstance(v, str):
                    yield fd.name, v


def markdown_texts(node, where: str = ""):
    """(element type, field, text) for every Markdown-rendered string in an AppTest tree."""
    t = getattr(node, "type", "")
    proto = getattr(node, "proto", None)
    if proto is not None and t not in TEXT_ONLY:
        fields = MARKDOWN_FIELDS | ({"options"} if t in MARKDOWN_OPTIONS else set())
        for field, s in _strings(proto, fields):
            yield t, field, s
        if t == "table":
            v = node.value
            cells = [*map(str, v.columns), *map(str, v.index), *map(str, v.to_numpy().ravel())]
            for s in cells:
                yield t, "cell", s
    for child in (getattr(node, "children", None) or {}).values():
        yield from markdown_texts(child)


def unescaped(at) -> list[tuple[str, str, list[str], str]]:
    """Hostile payloads shown as Markdown: (element, field, which payloads, text excerpt)."""
    found = []
    for t, field, s in markdown_texts(at._tree):
        hit = leaks(s)
        if hit:
            found.append((t, field, hit, s[:160]))
    return found


def _page_files() -> list[str]:
    import ast as _ast

    tree = _ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    for node in _ast.walk(tree):
        if isinstance(node, _ast.Assign) and getattr(node.targets[0], "id", "") == "PAGE_SPECS":
            return [elt.elts[0].value for elt in node.value.elts]
    raise AssertionError("PAGE_SPECS not found in app.py")


def _upload_hostile() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/data.py")
    at.run()
    at.file_uploader(key="uploads").set_value((hostile_file_name(), hostile_csv(), "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="use_files").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["dataset"]["source"] == "upload", [e.value for e in at.error]
    return at


@pytest.fixture(scope="module")
def hostile_app():
    return _upload_hostile()


def _visit(at, page: str) -> list:
    at.switch_page(page)
    at.run()
    assert not at.exception, (page, [e.value for e in at.exception])
    return [(page, *f) for f in unescaped(at)]


def test_fixture_is_hostile():
    """The fixture really carries the payloads (so the page tests can fail)."""
    df = hostile_frame()
    names = " ".join(map(str, df.columns)) + " " + " ".join(df["study"].unique())
    assert set(leaks(names + hostile_file_name())) == {"markdown image", "markdown link", "html tag", "latex",
                                                        "rtl override"}
    assert any(len(s) >= 300 for s in df["study"].unique())
    assert any("\n" in s and "'" in s and '"' in s for s in df["study"].unique())


def test_every_page_shows_hostile_names_as_text(hostile_app):
    at = hostile_app
    found = unescaped(at)  # the Data page right after the upload (expander label = file name, header, sidebar)
    found = [("app_pages/data.py (after upload)", *f) for f in found]
    pages = _page_files()
    assert len(pages) >= 9
    for page in pages:
        found += _visit(at, page)
    assert not found, "\n".join(map(repr, found))


def test_pooled_sections_show_hostile_names_as_text(hostile_app):
    at = hostile_app
    found = _visit(at, "app_pages/pooled.py")
    seg = at.get("button_group")
    assert seg, "no section chooser on the Pooled page"
    for section in ["Leave-one-out", "Funnel & Egger", "Meta-regression", "Centering multiverse",
                    "Early alliance → outcome", "Report & script"]:
        at.session_state["pooled_section"] = section
        at.run()
        assert not at.exception, (section, [e.value for e in at.exception])
        found += [(section, *f) for f in unescaped(at)]
    assert not found, "\n".join(map(repr, found))


def test_lagged_patient_view_with_hostile_names(hostile_app):
    """The per-patient view: the chosen study and patient are hostile names."""
    at = hostile_app
    found = _visit(at, "app_pages/lagged.py")
    study = at.selectbox(key="lag_view_study")
    for s in study.options[:3]:
        study.set_value(s).run()
        assert not at.exception
        found += [(s[:20], *f) for f in unescaped(at)]
    assert not found, "\n".join(map(repr, found))


def test_screening_upload_and_collection_study(hostile_app):
    at = hostile_app
    found = _visit(at, "app_pages/screening.py")
    at.radio(key="scr_source").set_value("upload").run()
    at.file_uploader(key="scr_upload").set_value((hostile_file_name(), hostile_csv(), "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    found += [("screening upload", *f) for f in unescaped(at)]
    at.radio(key="scr_source").set_value("collection").run()
    assert not at.exception, [e.value for e in at.exception]
    found += [("screening collection", *f) for f in unescaped(at)]
    assert not found, "\n".join(map(repr, found))
