"""One number format everywhere (issue 23 #4): every table and figure of every page, as AppTest sees it,
shows numbers written by analysis/formatting.py — no raw floats ("0.0000", "1542.000", "1.2e-05",
"0.00000000000000000000…"), no hyphen-minus, no hover template with its own fixed decimals."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from analysis.formatting import COLUMN_NAMES
from tests.tabs_util import each_tab

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "app_pages").glob("*.py"))
RAW = [
    (re.compile(r"(?<![\w.\-–])-\d"), "hyphen-minus"),
    (re.compile(r"\d[eE][+\-]?\d{1,3}\b"), "scientific notation"),
    (re.compile(r"0{9,}"), "a run of zeros"),
]
def _too_many_digits(text: str) -> str | None:
    """A number printed with more digits than the rule gives: more than three significant decimals
    ("0.123456"), a whole number with three or more decimal zeros ("1542.000", "7.000") or a zero with
    four or more ("0.0000"; τ² = 0.000 is the rule's own zero variance)."""
    for m in re.finditer(r"(\d+)\.(\d+)", text):
        whole, frac = m.group(1), m.group(2)
        if len(frac.lstrip("0")) > 3:
            return "more than three significant decimals"
        if set(frac) == {"0"} and len(frac) >= (3 if whole.strip("0") else 4):
            return "decimal zeros"
    return None


FIXED_HOVER = re.compile(r"%\{[^}]*:[^}]*\.\d+[fgre%]")


def _reasons(text: str) -> list[str]:
    out = [why for rx, why in RAW if rx.search(text)]
    d = _too_many_digits(text)
    return out + ([d] if d else [])


def raw_cells(frame: pd.DataFrame) -> list[str]:
    """Cells a reader would see as raw numbers, with the reason."""
    bad = []
    for c in frame.columns:
        col = frame[c]
        if pd.api.types.is_float_dtype(col):
            vals = col.dropna().to_numpy(dtype=float)
            if len(vals) and not np.all(vals == np.round(vals)):
                bad.append(f"{c}: float column shown raw ({vals[0]!r})")
            continue
        for v in col.tolist():
            if isinstance(v, float) and np.isfinite(v) and v != round(v):
                bad.append(f"{c}: raw float {v!r}")
            elif isinstance(v, str):
                bad += [f"{c}: {why} in {v!r}" for why in _reasons(v)]
    return bad


def shown(df_element) -> pd.DataFrame:
    """What st.dataframe displays: the Styler's display text when there is one, else the data."""
    try:
        dv = df_element.proto.arrow_data.styler.display_values
    except AttributeError:
        dv = b""
    if dv:
        return pa.ipc.open_stream(dv).read_pandas()
    return df_element.value


def figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def raw_headers(df_element) -> list[str]:
    """Headings a reader would see as raw result column names ("ci_low", "estimate"): the column's name when
    the element gives it no label of its own (``column_config``)."""
    config = json.loads(df_element.proto.columns or "{}")
    out = []
    for c in shown(df_element).columns:
        label = (config.get(str(c)) or {}).get("label") or str(c)
        if "_" in label or label in COLUMN_NAMES and COLUMN_NAMES[label] != label:
            out.append(f"heading {label!r}")
    return out


def scan(at) -> list[str]:
    bad = []
    for i, d in enumerate(at.dataframe):
        bad += [f"dataframe {i}: {b}" for b in raw_headers(d)]
    for i, d in enumerate(at.dataframe):
        bad += [f"dataframe {i}: {b}" for b in raw_cells(shown(d))]
    for i, t in enumerate(at.table):
        bad += [f"table {i}: {b}" for b in raw_cells(t.value.reset_index())]
    for i, fig in enumerate(figures(at)):
        for tr in fig.get("data", []):
            for key in ("hovertemplate", "texttemplate"):
                for h in np.atleast_1d(tr.get(key) or []):
                    if FIXED_HOVER.search(str(h)):
                        bad.append(f"figure {i} ({tr.get('name')}): {key} with its own decimals: {h!r}")
            for key in ("text",):
                vals = tr.get(key)
                for v in (vals if isinstance(vals, list) else [vals]):
                    if isinstance(v, str):
                        bad += [f"figure {i} text: {why} in {v!r}" for why in _reasons(v)]
        for a in fig.get("layout", {}).get("annotations", []):
            t = str(a.get("text", ""))
            bad += [f"figure {i} annotation: {why} in {t!r}" for why in _reasons(t)]
    return bad


def _page(page: str, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("page", PAGES)
def test_no_raw_numbers_on_any_page(page):
    at = _page(page)
    bad = []
    for tab in each_tab(at, page):  # every lazy tab of the page
        assert not at.exception, (tab, [e.value for e in at.exception])
        bad += [f"[{tab}] {b}" if tab else b for b in scan(at)]
    assert bad == [], "\n".join(bad)


@pytest.mark.parametrize("section", ["Centering multiverse", "Meta-regression", "Leave-one-out",
                                     "One-stage vs two-stage", "Few studies: Bayesian & coverage", "Funnel & Egger"])
def test_no_raw_numbers_in_the_pooled_sections(section):
    at = _page("app_pages/pooled.py")
    at.segmented_control(key="pooled_section").set_value(section).run()
    assert not at.exception
    bad = scan(at)
    assert bad == [], "\n".join(bad)


def test_the_scan_finds_raw_numbers():
    """The scan itself can fail: each defect of issue 23 #4 is caught."""
    frame = pd.DataFrame({"p": ["0.0000", ".042"], "df": ["1542.000", "12"], "est": ["-0.12", "−0.12"],
                          "x": [0.123456, 1.0], "mv": ["0.00000000000000000000", "< .001"]})
    bad = raw_cells(frame)
    assert any("p:" in b for b in bad) and any("df:" in b for b in bad) and any("est:" in b for b in bad)
    assert any("x:" in b for b in bad) and any("mv:" in b for b in bad)
    assert raw_cells(pd.DataFrame({"ok": ["−0.12", "< .001", "1,542", "[−0.02, 0.02]", "1–5"]})) == []
    el = type("E", (), {"proto": type("P", (), {"columns": '{"ci_low": {"label": "CI low"}}'})(),
                        "value": pd.DataFrame(columns=["ci_low", "pvalue", "Study", "df"])})()
    assert raw_headers(el) == ["heading 'pvalue'"]
    assert FIXED_HOVER.search("%{y}: %{x:.3f}<extra></extra>") and not FIXED_HOVER.search("%{customdata[0]}")
