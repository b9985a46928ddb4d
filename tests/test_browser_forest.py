"""The forest plot as chromium draws it (issue 13): with unequal pair counts and long
study names no two texts overlap, at a narrow and a wide window, and the widths the
layout measured (plots_meta.text_width) match the rendered widths."""

from __future__ import annotations

import pytest
from browser_util import browser_page
from test_forest_layout import _pair

from analysis.plots_meta import paired_forest_figure, text_width

pytestmark = pytest.mark.browser

_BOXES = """() => Array.from(document.querySelectorAll('g.annotation text.annotation-text')).map(t => {
  const r = t.getBoundingClientRect();
  return {text: t.textContent, x0: r.left, x1: r.right, y0: r.top, y1: r.bottom,
          bold: !!t.querySelector('tspan[style*="bold"]')};
})"""


@pytest.mark.parametrize("width", [1000, 1500])
def test_rendered_forest_texts_do_not_overlap(tmp_path, width):
    a, b = _pair()
    fig = paired_forest_figure(a, b, xlabel="Within-patient lagged coefficient (SD units)")
    path = tmp_path / "forest.html"
    path.write_text(fig.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")
    with browser_page(width=width, height=1000) as page:
        page.goto(path.as_uri())
        page.wait_for_selector("g.annotation text.annotation-text")
        boxes = [bx for bx in page.evaluate(_BOXES) if bx["text"].strip()]
        page.screenshot(path=str(tmp_path / f"forest_{width}.png"), full_page=True)
    assert any(bx["text"] == "197 / 200" for bx in boxes)
    bad = []
    for i, p in enumerate(boxes):
        for q in boxes[i + 1:]:
            if min(p["x1"], q["x1"]) - max(p["x0"], q["x0"]) > 1 and min(p["y1"], q["y1"]) - max(p["y0"], q["y0"]) > 1:
                bad.append((p["text"], q["text"]))
    assert not bad, bad[:5]
    # the layout's measured widths are the rendered ones (same font), so the columns are where they were planned
    for bx in boxes:
        if bx["text"] in ("197 / 200", "12,000 / 11,999", "N patients", "Site A"):
            bold = bx["text"] == "N patients"
            assert bx["x1"] - bx["x0"] == pytest.approx(text_width(bx["text"], 12, bold), rel=0.04, abs=1.5)
