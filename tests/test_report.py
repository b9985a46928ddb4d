"""analysis.report: the HTML report escapes user text and opens offline; the script quotes user text."""

import ast
import html
import re

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


def test_report_tables_read_like_the_pages():
    """Issue 23 #6: readers' column names (not n_patients / ci_low / pvalue), the directions and model terms
    in words, and every number written by the one formatter (analysis.formatting.cell): no "7.000 / 0.000"."""
    import re

    from analysis import formatting as fmt
    from analysis import report
    from analysis.lagged import LagOptions

    assert not hasattr(report, "_cell")  # the report has no formatter of its own
    summary = pd.DataFrame({"study": ["A"], "n_patients": [12], "n_rows": [1234], "sessions_median": [7.0],
                            "sessions_min": [5], "sessions_max": [7], "pct_missing_alliance": [0.0]})
    per = pd.DataFrame({"study": ["A", "A"], "direction": ["alliance_to_symptoms"] * 2, "term": ["within", "prior_within"],
                        "estimate": [-0.0123, 0.2], "ci_low": [-0.05, 0.1], "ci_high": [0.03, 0.3],
                        "pvalue": [0.0000001, 0.42], "df": [1542.0, 1542.0]})
    out = html_report("R", data_summary=summary, options=LagOptions(lag=2), sections=[("Per study", [per])])
    heads = re.findall(r"<th>(.*?)</th>", out)
    for raw in ("n_patients", "n_rows", "sessions_median", "pct_missing_alliance", "ci_low", "pvalue", "direction"):
        assert raw not in heads, raw
    assert {"Patients", "Session rows", "Sessions per patient (median)", "CI low", "p"} <= set(heads)
    cells = re.findall(r"<td>(.*?)</td>", out)
    assert "7.000" not in cells and "0.000" not in cells and "7" in cells and "1,234" in cells
    assert "alliance → symptoms" in out and "alliance_to_symptoms" not in out
    # the term in words, with the lag of the options (t+2)
    assert html.escape("Within-patient effect: alliance (session t) → symptoms (session t+2)") in out
    for v, col in ((0.0000001, "pvalue"), (1542.0, "df"), (0.0, "pct_missing_alliance")):
        assert html.escape(fmt.cell(v, col)) in cells, (v, col)
    # an estimate and its CI bounds share decimals on a row (analysis.formatting.frame_cells)
    assert [fmt.MINUS + "0.012", fmt.MINUS + "0.050", "0.030"] == cells[cells.index(fmt.MINUS + "0.012"):][:3]
    # options by their declared labels, not field names
    opts = report.options_table(LagOptions()).set_index("Option")["Value"]
    assert "Stage1" not in opts.index and "Df method" not in opts.index


def test_report_labels_each_direction_and_leaves_out_an_absent_column():
    """Every pooled and agreement paragraph of the app's report names its direction; a data set without
    therapist ratings shows no "missing therapist-rated alliance" column (absent, not 100 % missing)."""
    from analysis import pipeline, plots_meta
    from analysis.lagged import LagOptions
    from analysis.simulate import simulate_collection
    from ui import reporting

    df = simulate_collection(3, (40, 60), seed=3).data.drop(columns="therapist_alliance", errors="ignore")
    opts = LagOptions()
    res = pipeline.two_stage(df, opts)
    fig = plots_meta.forest_figure(next(iter(res.pooled.values())))
    out = reporting._report_html({"df": df, "name": "t", "notes": []}, opts, res, fig).decode()
    paras = [html.unescape(p) for p in re.findall(r"<p>(.*?)</p>", out)]
    labels = ("Alliance → next-session symptoms:", "Symptoms → next-session alliance:")
    for p in paras:
        if ("estimates agree" in p or "estimates differ" in p or p.startswith("Across")) and not p.startswith(labels):
            raise AssertionError(f"paragraph without its direction: {p[:80]}")
    assert sum(p.startswith(labels) for p in paras) >= 4
    assert "therapist-rated alliance (%)" not in out
