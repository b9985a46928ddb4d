"""analysis.report: the HTML report escapes user text and opens offline; the script quotes user text."""

import ast

import pandas as pd
import plotly.graph_objects as go

from analysis.report import html_report, package_versions, reproduction_script


def test_report_escapes_user_text_and_embeds_plotly_once():
    evil = "<script>alert('x')</script>"
    table = pd.DataFrame({"study": [evil, "B"], "estimate": [0.1, -0.2]})
    figs = [go.Figure(go.Scatter(x=[1, 2], y=[3, 4])), go.Figure(go.Bar(x=[1], y=[2]))]
    out = html_report("Report " + evil, data_summary=table, options={"centering": "person_mean"},
                      sections=[("Per-study " + evil, [table, evil, *figs])], messages=[evil])
    assert evil not in out
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in out
    # plotly.js inlined exactly once, and no CDN reference (the report must open offline)
    assert out.count("* plotly.js v") == 1
    assert "<script src=" not in out.replace(" ", "")
    assert out.count('class="plotly-graph-div"') == 2
    assert "person_mean" in out
    for pkg in ("numpy", "pandas", "scipy", "statsmodels"):
        assert pkg in out


def test_package_versions_lists_core_libraries():
    v = package_versions()
    assert v["pandas"] == pd.__version__
    assert set(v) >= {"python", "analysis", "numpy", "scipy", "statsmodels", "plotly"}


def test_reproduction_script_is_valid_python_and_quotes_user_text():
    name = "trial'); import os; os.system('rm -rf /'); ('.csv"
    src = reproduction_script(name, {"centering": "detrended", "lag": 2}, mapping={"patient": "id'x"},
                              study_label="S\"1")
    tree = ast.parse(src)  # parses: user text did not break out of its string literal
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "system"]
    assert calls == []
    consts = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    assert name in consts and 'S"1' in consts
    assert "centering='detrended'" in src and "lag=2" in src
