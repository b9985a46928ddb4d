"""The forest plot as chromium draws it (issue 13): with unequal pair counts and long
study names no two texts overlap, at a narrow and a wide window, and the widths the
layout measured (plots_meta.text_width) match the rendered widths."""

from __future__ import annotations

import pytest
from browser_util import browser_page
from test_forest_layout import _pair

from analysis.plots_meta import paired_forest_figure, text_width

pytestmark = pytest.mark.browser

_BOXES = """() => Array.from(document.querySelectorAll('g.annotation text.annotation-text')).flatMap(t => {
  const lines = t.querySelectorAll('tspan.line');  // a text block (one column's cells): one box per line
  return Array.from(lines.length ? lines : [t]).map(el => {
    const r = el.getBoundingClientRect();
    return {text: el.textContent, x0: r.left, x1: r.right, y0: r.top, y1: r.bottom,
            bold: !!el.querySelector('tspan[style*="bold"]')};
  });
})"""
_MARKERS = """() => Array.from(document.querySelectorAll('.scatterlayer .trace')).filter(
  tr => tr.querySelectorAll('path.point').length > 2).map(tr => Array.from(tr.querySelectorAll('path.point')).map(
  p => { const r = p.getBoundingClientRect(); return (r.top + r.bottom) / 2; }))"""


def test_a_200_study_paired_forest_puts_every_cell_on_its_row(tmp_path):
    """Issue 24: the text columns are one block each; every line still sits on its study's marker, also
    across a study missing in one panel (blank lines in that panel's columns)."""
    import numpy as np

    from analysis.meta import random_effects

    rng = np.random.default_rng(5)
    k = 200
    labels = [f"Study {i:03d}" for i in range(k)]
    a = random_effects(rng.normal(0.1, 0.1, k), rng.uniform(0.002, 0.01, k), labels=labels,
                       n_patients=list(rng.integers(20, 400, k)), n_pairs=list(rng.integers(100, 3000, k)))
    keep = [i for i in range(k) if i != 7]  # study 007 has no estimate in the second direction
    b = random_effects(rng.normal(0.0, 0.1, k - 1), rng.uniform(0.002, 0.01, k - 1), labels=[labels[i] for i in keep],
                       n_patients=[20] * (k - 1), n_pairs=[90] * (k - 1))
    fig = paired_forest_figure(a, b)
    path = tmp_path / "forest200.html"
    path.write_text(fig.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")
    with browser_page(width=1400, height=1000) as page:
        page.goto(path.as_uri())
        page.wait_for_selector("g.annotation text.annotation-text")
        boxes = page.evaluate(_BOXES)
        markers = page.evaluate(_MARKERS)
    centre = {bx["text"]: (bx["y0"] + bx["y1"]) / 2 for bx in boxes}
    study_rows = markers[0]  # panel A's study markers, top to bottom in data order
    assert len(study_rows) == k
    for i in (0, 1, 6, 7, 8, 100, k - 1):
        assert centre[labels[i]] == pytest.approx(study_rows[i], abs=1.5), labels[i]
    # panel B's estimate column (right-aligned, the rightmost "[" cells): a blank line on study 007's row
    right = max(bx["x1"] for bx in boxes if "[" in bx["text"])
    est_b = [(bx["y0"] + bx["y1"]) / 2 for bx in boxes if "[" in bx["text"] and bx["x1"] > right - 2]
    for i in (6, 8, 9):
        assert any(abs(y - study_rows[i]) < 1.5 for y in est_b), labels[i]
    assert not any(abs(y - study_rows[7]) < 12 for y in est_b)


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
