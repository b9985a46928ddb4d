"""Self-contained HTML report and a reproduction script for the current analysis.

Both are built from plain inputs (tables, figures, options) so they are testable
without Streamlit. All text that came from the user (study labels, column
names, file names) is HTML-escaped in the report and ``repr``-quoted in the
script: nothing the user typed is ever executed or rendered as markup.
"""

from __future__ import annotations

import datetime as _dt
import html
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass

import pandas as pd
import plotly.graph_objects as go

from analysis.rscript import r_script  # noqa: F401 (public: analysis.report.r_script)

__all__ = ["package_versions", "html_report", "r_script", "reproduction_script"]

_PACKAGES = ("numpy", "pandas", "scipy", "statsmodels", "plotly", "streamlit")


def package_versions() -> dict[str, str]:
    """Versions of Python, this package and the numerical libraries in use."""
    from importlib.metadata import PackageNotFoundError, version

    import analysis

    out = {"python": platform.python_version(), "analysis": analysis.__version__}
    for p in _PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "not installed"
    return out


def _options_dict(options) -> dict:
    if options is None:
        return {}
    if is_dataclass(options):
        return asdict(options)
    return dict(options)


def _table_html(df: pd.DataFrame, max_rows: int = 500) -> str:
    shown = df.head(max_rows)
    # DataFrame.to_html escapes cell text by default (escape=True).
    body = shown.to_html(index=False, escape=True, float_format=lambda x: f"{x:.4g}", border=0, classes="tbl")
    if len(df) > max_rows:
        body += f"<p class='note'>First {max_rows} of {len(df)} rows; download the CSV for all.</p>"
    return body


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;color:#1a202c;padding:0 1em}
h1{font-size:1.6em} h2{font-size:1.25em;border-bottom:1px solid #cbd5e0;padding-bottom:.2em;margin-top:2em}
table.tbl{border-collapse:collapse;font-size:.85em;margin:.5em 0}
table.tbl th,table.tbl td{border:1px solid #e2e8f0;padding:3px 6px;text-align:right}
table.tbl th{background:#edf2f7} .note{color:#4a5568;font-size:.9em} .msg{background:#fffbea;padding:.4em .8em;border-left:3px solid #d69e2e}
"""


def html_report(
    title: str,
    data_summary: pd.DataFrame | None = None,
    options=None,
    sections: Sequence[tuple[str, Sequence]] = (),
    messages: Sequence[str] = (),
    created: _dt.datetime | None = None,
) -> str:
    """Build one self-contained HTML document.

    ``sections`` is a sequence of ``(heading, items)`` where each item is a
    string (plain text, escaped), a DataFrame (a table) or a plotly figure.
    plotly.js is embedded once, so the file opens offline.
    """
    created = created or _dt.datetime.now()
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Created {created:%Y-%m-%d %H:%M}. Computed locally; definitions in METHODS.md.</p>",
    ]
    if data_summary is not None:
        parts += ["<h2>Data</h2>", _table_html(data_summary)]
    opts = _options_dict(options)
    if opts:
        rows = pd.DataFrame({"option": list(opts), "value": [str(v) for v in opts.values()]})
        parts += ["<h2>Options</h2>", _table_html(rows)]
    if messages:
        parts.append("<h2>Messages</h2>")
        parts += [f"<p class='msg'>{html.escape(str(m))}</p>" for m in messages]
    plotly_included = False
    for heading, items in sections:
        parts.append(f"<h2>{html.escape(str(heading))}</h2>")
        for item in items:
            if isinstance(item, pd.DataFrame):
                parts.append(_table_html(item))
            elif isinstance(item, go.Figure):
                # plotly.js embedded in the first figure only (never a CDN: the report must open offline)
                parts.append(item.to_html(full_html=False, include_plotlyjs=not plotly_included))
                plotly_included = True
            else:
                parts.append(f"<p>{html.escape(str(item))}</p>")
    versions = pd.DataFrame({"package": list(package_versions()), "version": list(package_versions().values())})
    parts += ["<h2>Software</h2>", _table_html(versions), "</body></html>"]
    return "\n".join(parts)


def reproduction_script(
    data_filename: str,
    options: Mapping | object,
    mapping: Mapping[str, str | None] | None = None,
    study_label: str | None = None,
    pooled_method: str | None = None,
    test: str | None = None,
) -> str:
    """Python source that reproduces the two-stage analysis with the installed ``analysis`` package.

    The script reads ``data_filename`` from its own folder (the CSV the user
    downloads next to it), runs :func:`analysis.pipeline.two_stage` with the
    same options, prints the pooled estimates and writes
    ``python_per_study_estimates.csv`` and ``python_pooled_estimates.csv`` next
    to itself. It needs only the ``alliance-dashboard`` package installed
    (``pip install .`` in the project folder), so it runs from any folder.
    Every user-supplied string is embedded with ``repr`` so that it is data,
    not code.
    """
    import analysis

    opts = _options_dict(options)
    if pooled_method is not None:
        opts["pooling_method"] = pooled_method
    if test is not None:
        opts["test"] = test
    opt_lines = ",\n".join(f"    {k}={v!r}" for k, v in opts.items())
    map_line = f"mapping = {dict(mapping)!r}" if mapping else "mapping = data.suggest_mapping(raw)"
    study_arg = f", study={study_label!r}" if study_label else ""
    version = analysis.__version__
    return f'''"""Reproduces the analysis shown in the Alliance <-> Symptoms dashboard.

Needs the dashboard's Python package (version {version}), installed once with
    pip install <the dashboard's project folder>
Then, from any folder:
    python this_script.py
It reads {data_filename!r} from the folder of this script, prints the pooled
estimates and writes python_per_study_estimates.csv and python_pooled_estimates.csv
next to this script.
"""
import os

import pandas as pd

import analysis
from analysis import data, lagged, pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
if analysis.__version__ != {version!r}:
    print("Note: this script was written by version {version} of the analysis package; "
          "installed is", analysis.__version__)

pd.set_option("display.width", 160)
raw = data.load(os.path.join(HERE, {data_filename!r}))
{map_line}
df = data.to_canonical(raw, mapping{study_arg})
options = lagged.LagOptions(
{opt_lines}
)
result = pipeline.two_stage(df, options)
print(result.per_study.to_string(index=False))
rows = []
for direction, pooled in result.pooled.items():
    print(direction, "pooled within-patient effect:",
          f"estimate={{pooled.estimate:.6f}} se={{pooled.se:.6f}} "
          f"ci=[{{pooled.ci_low:.6f}}, {{pooled.ci_high:.6f}}] tau2={{pooled.tau2:.6f}} k={{pooled.k}}")
    rows.append({{"direction": direction, "estimate": pooled.estimate, "se": pooled.se, "tau2": pooled.tau2,
                 "k": pooled.k, "ci_low": pooled.ci_low, "ci_high": pooled.ci_high, "pvalue": pooled.pvalue}})
result.per_study.to_csv(os.path.join(HERE, "python_per_study_estimates.csv"), index=False)
pd.DataFrame(rows).to_csv(os.path.join(HERE, "python_pooled_estimates.csv"), index=False)
'''
