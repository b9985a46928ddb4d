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

from analysis import formatting as fmt
from analysis.export import safe_figure
from analysis.rscript import r_script  # noqa: F401 (public: analysis.report.r_script)

__all__ = ["OPTION_NAMES", "package_versions", "html_report", "options_table", "r_script", "reproduction_script"]

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


# Readable names of the analysis options (LagOptions fields and report settings).
OPTION_NAMES = {
    "centering": "Centering of the predictor",
    "lag": "Lag (sessions)",
    "pairing": "Pairing of sessions",
    "directions": "Directions",
    "control_prior_outcome": "Control for the prior outcome",
    "standardize": "Standardize within study",
    "sessions": "Sessions analysed",
    "time_trend": "Time trend",
    "cross_level": "Cross-level interaction",
    "estimator": "Stage-1 estimator",
    "pooling_method": "τ² estimator (stage 2)",
    "test": "Test and CI (stage 2)",
}
_OPTION_VALUES = {
    "person_mean": "person-mean (within-patient)",
    "grand_mean": "grand-mean",
    "detrended": "person-mean after removing each patient's trend",
    "next_observed": "next observed session",
    "session": "same patient, session t + lag",
    "fixed_random": "fixed and random (per patient)",
    "mixed": "mixed model (random intercept, REML)",
    "fixed_effects": "fixed effects (within OLS, cluster-robust SE)",
    "knha": "Knapp–Hartung t",
    "adhoc": "Knapp–Hartung t, never narrower than z (ad hoc)",
    "z": "normal (z)",
    "alliance_to_symptoms": "alliance → symptoms",
    "symptoms_to_alliance": "symptoms → alliance",
}
# Columns whose cells are notes for the reader: shown once each as numbered footnotes.
_NOTE_COLUMNS = {"message", "messages", "note", "notes", "warning", "warnings", "reason", "reasons"}
_NOTE_CHARS = 80  # a text column with longer cells is treated as notes too


def _option_value(value) -> str:
    if isinstance(value, str):
        return _OPTION_VALUES.get(value, fmt.option_text(value))
    if isinstance(value, tuple | list) and value and all(isinstance(v, str) for v in value):
        return ", ".join(_option_value(v) for v in value)
    return fmt.option_text(value)


def options_table(options) -> pd.DataFrame:
    """The options in words: readable names (:data:`OPTION_NAMES`) and values
    (:func:`analysis.formatting.option_text`; no Python tuples or None)."""
    opts = _options_dict(options)
    decl = {}
    if options is not None and not isinstance(options, Mapping):
        from analysis.options import declared

        decl = {o.name: o for o in declared(options)} if hasattr(type(options), "__dataclass_fields__") else {}

    def name(k):
        if k in OPTION_NAMES:
            return OPTION_NAMES[k]
        return decl[k].label if k in decl else k.replace("_", " ").capitalize()

    def value(k, v):
        if k == "sessions" and v is None:  # no session window = every session was used (not "none")
            return "all"
        labels = decl[k].labels if k in decl else {}
        if isinstance(v, str) and v in labels and v not in _OPTION_VALUES:
            return fmt.option_text(labels[v])
        return _option_value(v)

    return pd.DataFrame({"Option": [name(k) for k in opts], "Value": [value(k, v) for k, v in opts.items()]})


class _Notes:
    """Numbered footnotes: each distinct note text gets one number for the whole report."""

    def __init__(self):
        self.numbers: dict[str, int] = {}

    def ref(self, text: str) -> str:
        if text not in self.numbers:
            self.numbers[text] = len(self.numbers) + 1
        return f"note {self.numbers[text]}"

    def html(self) -> str:
        if not self.numbers:
            return ""
        items = "".join(f"<li id='note-{n}' class='msg'>{html.escape(t)}</li>" for t, n in self.numbers.items())
        return f"<h2>Messages and notes</h2><ol class='notes'>{items}</ol>"


def _is_note_column(df: pd.DataFrame, col) -> bool:
    if str(col).strip().lower() in _NOTE_COLUMNS:
        return True
    s = df[col]
    if not (pd.api.types.is_string_dtype(s) or pd.api.types.is_object_dtype(s)):
        return False
    lengths = s.dropna().map(lambda v: len(str(v)))
    return bool(len(lengths)) and int(lengths.max()) > _NOTE_CHARS


from analysis.formatting import COLUMN_NAMES, column_name  # noqa: E402,F401 (public here too)


def readable(df: pd.DataFrame, lag: int = 1) -> pd.DataFrame:
    """``df`` with its cells as a reader sees them (:func:`analysis.formatting.cell`, chosen by the raw
    column name), the directions and model terms in words, and the columns named by :func:`column_name`."""
    from analysis.plots_lagged import term_label

    out = fmt.format_frame(df)
    if "direction" in df.columns:
        out["direction"] = [_OPTION_VALUES.get(v, v) if isinstance(v, str) else c
                            for v, c in zip(df["direction"], out["direction"])]
        if "term" in df.columns:
            out["term"] = [term_label(t, d if d in _DIRECTION_KEYS else None, lag) if isinstance(t, str) else c
                           for t, d, c in zip(df["term"], df["direction"], out["term"])]
    out.columns = [column_name(c) for c in df.columns]
    return out


_DIRECTION_KEYS = ("alliance_to_symptoms", "symptoms_to_alliance")


def _table_html(df: pd.DataFrame, notes: _Notes | None = None, max_rows: int = 500, lag: int = 1) -> str:
    """An HTML table; every cell escaped, written by :func:`readable` (the one formatter,
    :func:`analysis.formatting.cell`; readers' column names and terms), and note columns replaced by
    references to numbered footnotes (each text once)."""
    shown = df.head(max_rows)
    note_cols = [j for j, c in enumerate(shown.columns) if notes is not None and _is_note_column(shown, c)]
    text = readable(shown, lag)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in text.columns)
    rows = []
    for rec in text.itertuples(index=False, name=None):
        cells = []
        for j, v in enumerate(rec):
            v = "" if v is None else str(v)
            if j in note_cols and v.strip():
                n = notes.ref(v.strip())
                num = n.split()[1]
                cells.append(f"<td class='ref'><a href='#note-{num}'>{n}</a></td>")
            else:
                cells.append(f"<td>{html.escape(v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    body = f"<table class='tbl'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    if len(df) > max_rows:
        body += (f"<p class='note'>First {fmt.count(max_rows)} of {fmt.count(len(df))} rows; "
                 "download the CSV for all.</p>")
    return body


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;color:#1a202c;padding:0 1em}
h1{font-size:1.6em} h2{font-size:1.25em;border-bottom:1px solid #cbd5e0;padding-bottom:.2em;margin-top:2em}
table.tbl{border-collapse:collapse;font-size:.85em;margin:.5em 0}
table.tbl th,table.tbl td{border:1px solid #e2e8f0;padding:3px 6px;text-align:right}
table.tbl td.ref{text-align:left;white-space:nowrap}
table.tbl th{background:#edf2f7} .note{color:#4a5568;font-size:.9em} .msg{background:#fffbea;padding:.4em .8em;border-left:3px solid #d69e2e}
ol.notes{font-size:.9em;color:#2d3748}
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
    plotly.js is embedded once, so the file opens offline. Every user string
    is HTML-escaped; options are shown in words (:func:`options_table`); a
    note repeated in many table rows (a ``message``/``notes`` column, or any
    text column with long cells) is printed once as a numbered footnote that
    the rows refer to, and repeated ``messages`` are shown once.

    >>> page = html_report("My study", messages=["Two patients had one session."])
    >>> page.startswith("<!DOCTYPE html>"), "Two patients had one session." in page
    (True, True)
    """
    created = created or _dt.datetime.now()
    notes = _Notes()
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Created {created:%Y-%m-%d %H:%M}. Computed locally; definitions in METHODS.md.</p>",
    ]
    opts = options_table(options)
    lag = int(_options_dict(options).get("lag", 1) or 1)
    if data_summary is not None:
        parts += ["<h2>Data</h2>", _table_html(data_summary, notes, lag=lag)]
    if len(opts):
        parts += ["<h2>Options</h2>", _table_html(opts)]
    for m in messages:  # general messages first: notes 1, 2, … (each distinct text once)
        if str(m).strip():
            notes.ref(str(m).strip())
    notes_at = len(parts)  # the numbered list goes here, once every table has added its notes
    plotly_included = False
    for heading, items in sections:
        parts.append(f"<h2>{html.escape(str(heading))}</h2>")
        for item in items:
            if isinstance(item, pd.DataFrame):
                parts.append(_table_html(item, notes, lag=lag))
            elif isinstance(item, go.Figure):
                # plotly.js embedded in the first figure only (never a CDN: the report must open offline)
                parts.append(safe_figure(item).to_html(full_html=False, include_plotlyjs=not plotly_included))
                plotly_included = True
            else:
                parts.append(f"<p>{html.escape(str(item))}</p>")
    parts.insert(notes_at, notes.html())
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
    one_stage: bool = True,
) -> str:
    """Python source that reproduces the two-stage analysis with the installed ``analysis`` package.

    With ``one_stage`` (default) it also fits the one-stage model (:func:`analysis.onestage.one_stage`,
    METHODS §6b), prints it with the stage-2 test used, and writes ``python_one_stage_estimates.csv``.

    The script reads ``data_filename`` from its own folder (the CSV the user
    downloads next to it), runs :func:`analysis.pipeline.two_stage` with the
    same options, prints the pooled estimates and writes
    ``python_per_study_estimates.csv`` and ``python_pooled_estimates.csv`` next
    to itself. It needs only the ``alliance-dashboard`` package installed
    (``pip install .`` in the project folder), so it runs from any folder.
    Every user-supplied string is embedded with ``repr`` so that it is data,
    not code.

    >>> from analysis.lagged import LagOptions
    >>> src = reproduction_script("sessions.csv", LagOptions(lag=2))
    >>> "    lag=2," in src, "two_stage" in src
    (True, True)
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
    one_stage_block = ('''
# One-stage model (METHODS 6b): all patients at once, random within slope across studies, REML,
# Satterthwaite df; tau with its profile-likelihood CI
from analysis import onestage

one = onestage.one_stage(df, options)
for m in one.messages:
    print(m)
print(one.summary())
one.to_frame().to_csv(os.path.join(HERE, "python_one_stage_estimates.csv"), index=False)
''' if one_stage else "")
    return f'''"""Reproduces the analysis shown in the Alliance <-> Symptoms dashboard.

Needs the dashboard's Python package (version {version}), installed once with
    pip install <the dashboard's project folder>
Then, from any folder:
    python this_script.py
It reads the data file named in DATA_FILE below from the folder of this script, prints the pooled
estimates and writes python_per_study_estimates.csv and python_pooled_estimates.csv
next to this script.
"""
import os

import pandas as pd

import analysis
from analysis import data, export, lagged, pipeline

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_FILE = {data_filename!r}
if analysis.__version__ != {version!r}:
    print("Note: this script was written by version {version} of the analysis package; "
          "installed is", analysis.__version__)

pd.set_option("display.width", 160)
# the app's CSVs prefix text a spreadsheet would run as a formula with ' (reversibly): undo it
raw = export.unneutralize_frame(data.load(os.path.join(HERE, DATA_FILE)))
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
print("Stage-2 test and CI:", options.test)
result.per_study.to_csv(os.path.join(HERE, "python_per_study_estimates.csv"), index=False)
pd.DataFrame(rows).to_csv(os.path.join(HERE, "python_pooled_estimates.csv"), index=False)
{one_stage_block}
'''
