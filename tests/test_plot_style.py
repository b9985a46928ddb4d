"""The shared figure look (analysis/plot_style.WHITE): the values of Plotly's "plotly_white", built once."""

from pathlib import Path

import plotly.io as pio

from analysis import plots_events  # noqa: F401 (a module that uses WHITE imports cleanly)
from analysis.plot_style import WHITE, WHITE_LAYOUT_KEYS

ROOT = Path(__file__).resolve().parents[1]


def test_white_has_plotly_white_values():
    full = pio.templates["plotly_white"].layout.to_plotly_json()
    ours = WHITE.layout.to_plotly_json()
    for k in WHITE_LAYOUT_KEYS:
        assert ours[k] == full[k], k
    assert WHITE.data.bar[0].marker.line.color == "white"


def test_no_figure_names_the_full_template():
    """``template="plotly_white"`` costs ~35 ms a figure on every run (issue 24): figures use WHITE."""
    offenders = [str(p.relative_to(ROOT)) for folder in ("analysis", "ui", "app_pages")
                 for p in (ROOT / folder).rglob("*.py")
                 if p.name != "plot_style.py" and "plotly_white" in p.read_text(encoding="utf-8")]
    assert offenders == []
