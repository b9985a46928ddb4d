"""The fast table path (ui/tables.styled and its display frame) shows exactly what Streamlit's own Styler route
would show (issue 24: ~40 → ~15 ms CPU per table, on every run of every session)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from streamlit.elements.lib import pandas_styler_utils as psu

from analysis import formatting as fmt
from ui import tables


def _frames():
    rng = np.random.default_rng(24)
    yield pd.DataFrame({
        "study": ["A", "B", None, "Ünïcode — long"],
        "n_patients": np.array([12, 1500, 3, 40_000], dtype="int64"),
        "estimate": [-0.0041, 0.25, np.nan, 12.5],
        "pvalue": [0.00001, 0.049, 0.5, np.nan],
        "df": [15.0, 1542.0, 3.4, np.nan],
        "tau2": [0.0, 0.0031, 1e-6, 0.2],
        "converged": [True, False, True, True],
        "I2 (%)": [0.0, 45.67, 99.9, np.nan],
    }, index=[3, 1, 7, 0])
    yield pd.DataFrame({"x": rng.normal(size=50), "session": np.arange(50), "label": [f"p{i}" for i in range(50)]})
    yield pd.DataFrame({"only text": pd.array(["a", pd.NA, "c"], dtype="string")})
    yield pd.DataFrame({"estimate": pd.Series([], dtype=float)})


def _reference_styler(df):
    """The route ui.tables used before: a Styler.format with analysis.formatting.cell per column."""
    return df.style.format({c: (lambda v, c=c: fmt.cell(v, c)) for c in df.columns})


@pytest.mark.parametrize("i", range(4))
def test_display_values_equal_streamlit_styler_route(i):
    df = list(_frames())[i]
    ref = _reference_styler(df)
    ref._compute()
    expected = tables._streamlit_use_display_values(df, ref._translate(False, False))
    fast = tables.styled(df)
    got = tables._display_frame(df, fast._translate(False, False))
    pd.testing.assert_frame_equal(got, expected)
    # Streamlit's own function on the fast Styler's cell list gives the same frame too
    pd.testing.assert_frame_equal(tables._streamlit_use_display_values(df, fast._translate(False, False)), expected)


def test_streamlit_uses_the_fast_display_frame():
    """If a Streamlit upgrade renames the functions, this fails instead of silently losing the speed-up."""
    assert psu._use_display_values is tables._display_frame
    assert psu._marshall_display_values is tables._marshall_display_values
    import inspect

    assert "_use_display_values" in inspect.getsource(tables._streamlit_marshall_display_values)
    assert "_marshall_display_values(proto, styler_data_df, pandas_styles)" in inspect.getsource(psu.marshall_styler)


@pytest.mark.parametrize("i", range(4))
def test_the_proto_gets_the_display_values_of_streamlits_route(i):
    """What reaches the browser: the Arrow display values in the proto equal those of Streamlit's own route
    (a Styler.format with the one rule), for the made-once bytes and for any other Styler."""
    import pyarrow as pa
    from streamlit.proto.ArrowData_pb2 import ArrowData

    df = list(_frames())[i]

    def shown(styler):
        proto = ArrowData()
        psu.marshall_styler(proto, styler, "u")
        return pa.ipc.open_stream(proto.styler.display_values).read_all().to_pandas()

    pd.testing.assert_frame_equal(shown(tables.styled(df)), shown(_reference_styler(df)))


def test_a_frame_shown_again_is_formatted_once(monkeypatch):
    """A cached result's table (the same object on every run) is formatted once; another frame, even with equal
    values, or other digits, is formatted anew; the memo is dropped with the frame."""
    import gc

    calls = []
    real = fmt.frame_cells
    monkeypatch.setattr(tables.fmt, "frame_cells", lambda df, digits=2: calls.append(digits) or real(df, digits))
    df = pd.DataFrame({"estimate": [0.1234, -0.5], "pvalue": [0.0004, 0.3]})
    first = tables.styled(df)._translate()
    second = tables.styled(df)._translate()
    assert len(calls) == 1 and second["display_bytes"] is first["display_bytes"]
    tables.styled(df.copy())
    tables.styled(df, 3)
    assert calls == [2, 2, 3]
    n = len(tables._PREPARED)
    del df, first, second
    gc.collect()
    assert len(tables._PREPARED) <= n - 2  # (the frame's two entries went with it)


def test_display_frame_keeps_partial_updates():
    """Cells without a display value keep ``astype(str)`` text, as in Streamlit's function."""
    df = pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]})
    styles = {"body": [[{"id": "row1_col0", "display_value": "two"}], []]}
    pd.testing.assert_frame_equal(tables._display_frame(df, styles), tables._streamlit_use_display_values(df, styles))
    assert tables._display_frame(df, styles).iloc[:, 0].tolist() == ["1.5", "two"]


def test_column_cells_equals_cell():
    vals = np.array([1234, -5, 0], dtype="int64")
    for name in ("n_pairs", "estimate", "pvalue", "df"):
        assert fmt.column_cells(vals, name) == [fmt.cell(v, name) for v in vals]


def test_numpy_bool_reads_yes_no():
    assert fmt.cell(np.True_) == "yes" and fmt.cell(np.False_, "converged") == "no"


def test_estimate_and_its_interval_share_decimals_on_screen_and_in_word():
    """ux2's finding: cell-by-cell formatting showed −0.04 beside a bound of 0.0019."""
    df = pd.DataFrame({"study": ["a", "b"], "estimate": [-0.04, 0.25], "ci_low": [-0.088, 0.1],
                       "ci_high": [0.0019, 0.4], "pvalue": [0.2, 0.001]})
    shown = tables._display_frame(df, tables.styled(df)._translate(False, False))
    assert shown.iloc[0, 1:4].tolist() == ["\u22120.040", "\u22120.088", "0.002"]
    assert shown.iloc[1, 1:4].tolist() == ["0.25", "0.10", "0.40"]
    assert fmt.format_frame(df).iloc[0, 1:4].tolist() == shown.iloc[0, 1:4].tolist()  # Word / LaTeX: the same
