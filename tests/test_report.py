"""analysis.report: the HTML report escapes user text and opens offline; the script quotes user text."""

import ast
import html

import numpy as np
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
    assert "Centering of the predictor" in out and "person-mean (within-patient)" in out
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


def test_options_in_words_not_python_values():
    from analysis.lagged import LagOptions

    out = html_report("R", options=LagOptions(sessions=(1, 10), directions=("alliance_to_symptoms",)))
    opts = out[out.index("<h2>Options</h2>"):out.index("<h2>Software</h2>")]
    for python in ("None", "True", "False", "('", "_"):
        assert python not in opts, python
    assert "Sessions analysed" in opts and "1 to 10" in opts and "alliance → symptoms" in opts
    assert "Lag (sessions)" in opts and "REML" in opts


def test_a_warning_shared_by_200_studies_is_printed_once():
    warning = ("Only 3 patients had two or more sessions in the analysis window; the within-patient "
               "coefficient of this study rests on very few pairs and its standard error may be too small. " * 3)
    per_study = pd.DataFrame({
        "study": [f"Site <{i}>" for i in range(200)],
        "estimate": np.linspace(-0.2, 0.3, 200),
        "pvalue": np.r_[3e-9, np.linspace(0.01, 0.99, 199)],
        "message": [warning] * 199 + ["A different note for one study."],
    })
    out = html_report("Many studies", sections=[("Per-study coefficients", [per_study])],
                      messages=[warning, warning])
    assert out.count(html.escape(warning.strip())) == 1  # once, as a footnote (and the message list deduplicated)
    assert out.count("note 1</a>") == 199 and out.count("note 2</a>") == 1
    assert len(out.encode("utf-8")) < 120_000
    assert "Site &lt;0&gt;" in out and "Site <0>" not in out
    assert "&lt; .001" in out and "0.000000003" not in out and "e-09" not in out


def test_all_sessions_is_not_called_none():
    """Issue 23 #6: "Sessions analysed: none" when every session was used."""
    from analysis.lagged import LagOptions
    from analysis.report import options_table

    t = options_table(LagOptions()).set_index("Option")["Value"]
    assert t["Sessions analysed"] == "all"
