"""Odd names never break a download (issue 25 #10): file names are short slugs, control characters are
stripped before kaleido draws a figure, and a failed export is reported to the user."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
from streamlit.testing.v1 import AppTest

from analysis.export import safe_figure
from ui import downloads


def test_download_names_are_short_slugs():
    long_a, long_b = "Study " + "x" * 10_000, "Study " + "x" * 9_999 + "y"
    a, b = downloads._slug(long_a), downloads._slug(long_b)
    assert len(a) <= downloads.MAX_NAME and len(b) <= downloads.MAX_NAME
    assert a != b  # cut names stay distinct
    assert downloads._slug("forest_plot") == "forest_plot"
    assert downloads._slug("\x00\u202e/../../etc/passwd") == "etc_passwd"


def test_control_characters_are_stripped_from_figures():
    fig = go.Figure(go.Bar(x=["Study\x00 A\x07", "B\x1b[31m"], y=[1, 2]), layout={"title": {"text": "T\x00itle"}})
    safe = safe_figure(fig)
    text = safe.to_json()
    assert "\\u0000" not in text and "\\u0007" not in text and "\\u001b" not in text
    assert list(safe.data[0].x) == ["Study A", "B[31m"]


@pytest.mark.timeout(300)
def test_figure_with_nul_in_a_study_name_exports_png():
    """The kaleido error 525 of the issue: a NUL in a study name. After safe_figure the PNG is made."""
    fig = safe_figure(go.Figure(go.Scatter(x=[1, 2], y=[1, 2], text=["Clinic\x00 A", "B"], mode="markers+text"),
                                layout={"title": {"text": "Forest: Clinic\x00 A"}}))
    png = downloads._image(fig, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def _page():
    import plotly.graph_objects as go

    from ui.downloads import figure_downloads

    figure_downloads(go.Figure(go.Bar(x=[1], y=[1])), "fig", key="k")


def test_a_failed_export_is_reported_on_the_next_run(monkeypatch):
    at = AppTest.from_function(_page)
    at.run()
    assert not at.warning  # nothing failed yet

    def boom(fig, fmt):
        raise RuntimeError("kaleido error 525")

    monkeypatch.setattr(downloads, "_image", boom)
    export = downloads._export(go.Figure(), "png", "sess", "dl_png_k")
    with pytest.raises(RuntimeError):
        export()
    assert downloads._FAILED[("sess", "dl_png_k")] == "PNG"
    # the page of that session says so on its next run
    downloads._FAILED.clear()
    monkeypatch.setattr(downloads, "_session_id", lambda: "sess")
    downloads._FAILED[("sess", "dl_png_k")] = "PNG"
    at.run()
    assert at.warning and "PNG export of this figure failed" in at.warning[0].value
    at.run()
    assert not at.warning  # said once


def _figure_page():
    import plotly.graph_objects as go

    from ui.downloads import show_figure

    show_figure(go.Figure(go.Bar(x=[1], y=[1])), "fig", key="k")


def test_a_figures_download_buttons_are_made_only_when_their_expander_is_opened():
    """Issue 24: a figure costs every run its chart and a closed expander; the PNG, SVG and HTML buttons (and
    their row) are sent once the reader opens "Download this figure"."""
    at = AppTest.from_function(_figure_page)
    at.run()
    assert len(at.get("plotly_chart")) == 1 and not at.get("download_button")
    at.session_state["dlx_k"] = True  # (what opening the expander does: it reruns the page)
    at.run()
    ids = " ".join(el.proto.id for el in at.get("download_button"))
    assert all(f"dl_{f}_k" in ids for f in ("png", "svg", "html")), ids
