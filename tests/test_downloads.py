"""Figure downloads: PNG and SVG through kaleido + Debian chromium, HTML offline."""

import plotly.graph_objects as go

from ui.downloads import _image


def test_png_and_svg_export_of_a_real_figure():
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], name="series"))
    fig.update_layout(title="Export check", xaxis_title="Session")
    png = _image(fig, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # width 1200 at scale 2 -> 2400 px wide (PNG IHDR width field)
    assert int.from_bytes(png[16:20], "big") == 2400
    svg = _image(fig, "svg").decode("utf-8")
    assert svg.lstrip().startswith("<svg") and "Export check" in svg
