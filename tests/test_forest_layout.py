"""Forest plots as they go into papers (issue 13): text columns laid out from measured
widths never overlap, "(A / B)" is explained, one study draws no pooled rows, and
the figure exports to PNG. Positions are computed from the figure's JSON
(tests/figure_layout.py), widths measured with PIL and the Liberation Sans font."""

from __future__ import annotations

import re

import numpy as np
import pytest
from figure_layout import figure_json, measure, overlapping, text_boxes

from analysis.meta import random_effects
from analysis.plots_meta import cell_annotations, forest_figure, paired_forest_figure
from analysis.plots_screening import screening_forest_figure
from analysis.screening import Effect, collection_reference

LONG = [
    "Site A",
    "Universitätsklinikum Hamburg-Eppendorf, outpatient unit",
    "C & D <clinic>",
    "Trial with a rather long name (2019)",
    "F",
    "Centre hospitalier universitaire de Montréal",
]
NPAT = [38, 120, 1500, 45, 9, 77]
PAIRS_A = [197, 880, 12000, 300, 40, 500]
PAIRS_B = [200, 881, 11999, 300, 41, 499]


def _pair():
    rng = np.random.default_rng(3)
    y = rng.normal(0.1, 0.1, 6)
    v = rng.uniform(0.002, 0.01, 6)
    a = random_effects(y, v, labels=LONG, n_patients=NPAT, n_pairs=PAIRS_A)
    b = random_effects(0.5 * y, v, labels=LONG, n_patients=NPAT, n_pairs=PAIRS_B)
    return a, b


def _describe(pairs):
    return "; ".join(f"{a.name}:{a.text!r} × {b.name}:{b.text!r}" for a, b in pairs[:5])


@pytest.mark.parametrize("width", [900, 1000, 1200, 1600])
def test_paired_forest_columns_never_overlap_with_unequal_pairs_and_long_names(width):
    a, b = _pair()
    fj = figure_json(paired_forest_figure(a, b, xlabel="Within-patient lagged coefficient (SD units)"))
    bad = overlapping(fj, width)
    assert not bad, _describe(bad)
    texts = [bx.text for bx in text_boxes(fj, width)]
    assert "197 / 200" in texts and "12,000 / 11,999" in texts
    assert any("N patients" == t for t in texts) and any(t.startswith("N pairs (A / B)") for t in texts)


@pytest.mark.parametrize("width", [800, 1000, 1200])
def test_single_forest_columns_never_overlap(width):
    a, _ = _pair()
    bad = overlapping(figure_json(forest_figure(a, title="Pooled")), width)
    assert not bad, _describe(bad)


@pytest.mark.parametrize("width", [1000, 1400])
def test_screening_forest_columns_never_overlap(width):
    a, _ = _pair()
    ref = collection_reference(a)
    new = Effect("A new study with a long name from somewhere", 0.2, 0.05, 0.35, n_patients=50, n_pairs=400)
    fj = figure_json(screening_forest_figure({"alliance_to_symptoms": new, "symptoms_to_alliance": new},
                                      {"alliance_to_symptoms": ref, "symptoms_to_alliance": ref},
                                      new_label="Screened: A new study with a long name from somewhere"))
    bad = overlapping(fj, width)
    assert not bad, _describe(bad)


def test_a_over_b_is_explained_and_names_both_directions():
    a, b = _pair()
    fj = figure_json(paired_forest_figure(a, b, titles=("Alliance → symptoms", "Symptoms → alliance")))
    notes = " ".join(x["text"] for x in cell_annotations(fj["layout"]["annotations"]))
    assert "N pairs (A / B)" in notes
    assert "A (Alliance → symptoms)" in notes and "B (Symptoms → alliance)" in notes
    # the same letters head the two groups of estimate columns
    groups = [x["text"] for x in cell_annotations(fj["layout"]["annotations"]) if x.get("name") == "Group title"]
    plain = [re.sub(r"<br>", " ", re.sub(r"</?b>", "", g)) for g in groups]  # (a long title breaks after →)
    assert plain == ["A: Alliance → symptoms", "B: Symptoms → alliance"]


def test_paired_panels_keep_room_on_a_page_wide_figure():
    """At 940 px (the Pooled page at 1400 px), two directions' panels with the app's own titles and a long study
    name each keep ≥ 150 px: no weight columns in the paired figure (marker area, said in a footnote), the group
    titles on two lines, study names cut at 28 characters."""
    labels = [f"Study {i:02d}" for i in range(1, 17)] + ["A multi-site trial with a very long name indeed, site 3"]
    k = len(labels)
    rng = np.random.default_rng(3)
    a = random_effects(rng.normal(-0.1, 0.05, k), np.full(k, 0.002), labels=labels, n_patients=[300] * k,
                       n_pairs=[1600] * k)
    b = random_effects(rng.normal(-0.08, 0.05, k), np.full(k, 0.002), labels=labels, n_patients=[300] * k,
                       n_pairs=[1600] * k)
    fj = figure_json(paired_forest_figure(a, b, titles=("Alliance → next-session symptoms",
                                                        "Symptoms → next-session alliance")))
    ml, mr = fj["layout"]["meta"]["margin_px"]
    assert (940 - ml - mr) / 2 >= 150, (ml, mr)
    texts = [x["text"] for x in cell_annotations(fj["layout"]["annotations"])]
    assert not any(x == "Weight" for x in texts)
    assert any("Marker area" in x for x in texts)
    assert any(x.startswith("A multi-site trial with a") and len(x) <= 29 for x in texts)


def test_equal_pair_counts_need_no_a_over_b():
    a = random_effects([0.1, 0.2, 0.3], [0.01, 0.02, 0.01], labels=["x", "y", "z"], n_patients=[5, 6, 7],
                       n_pairs=[20, 30, 40])
    fj = figure_json(paired_forest_figure(a, a))
    texts = " ".join(x["text"] for x in cell_annotations(fj["layout"]["annotations"]))
    assert "(A / B)" not in texts and "N pairs" in texts


def test_one_study_draws_no_pooled_estimate_or_prediction_interval():
    res = random_effects([0.3], [0.04], labels=["Only"], n_patients=[30], n_pairs=[120])
    fj = figure_json(forest_figure(res))
    names = [t.get("name") for t in fj["data"]]
    assert "Studies" in names
    assert not any(n and (n.startswith("Pooled") or n.startswith("Prediction")) for n in names), names
    rows = " ".join(bx.text for bx in text_boxes(fj, 1000) if bx.name != "heterogeneity")
    assert "Pooled" not in rows and "RE model" not in rows and "prediction interval" not in rows
    foot = " ".join(bx.text for bx in text_boxes(fj, 1000) if bx.name == "heterogeneity")
    assert "k = 1" in foot and "nothing was pooled" in foot


def test_n_pairs_that_only_repeat_n_patients_are_not_shown():
    # early alliance → outcome: one row per patient, so "pairs" = patients
    res = random_effects([0.1, -0.2, 0.05], [0.01, 0.02, 0.015], labels=["s1", "s2", "s3"],
                         n_patients=[40, 55, 61], n_pairs=[40, 55, 61])
    texts = [x["text"] for x in cell_annotations(figure_json(forest_figure(res))["layout"]["annotations"])]
    assert "<b>N patients</b>" in texts
    assert not any("N pairs" in t for t in texts)
    lag = random_effects([0.1, -0.2, 0.05], [0.01, 0.02, 0.015], labels=["s1", "s2", "s3"],
                         n_patients=[40, 55, 61], n_pairs=[400, 550, 610])
    texts = [x["text"] for x in cell_annotations(figure_json(forest_figure(lag, show_pairs=False))["layout"]["annotations"])]
    assert not any("N pairs" in t for t in texts)


def test_width_table_matches_the_font():
    from analysis.plots_meta import text_width

    for s in ("197 / 200", "Universitätsklinikum Hamburg-Eppendorf", "−0.16 [−0.27, −0.04]", "τ² = 0.018",
              "N pairs (A / B)"):
        for bold in (False, True):
            assert text_width(s, 12, bold) == pytest.approx(measure(s, 12, bold), rel=0.01, abs=0.5), s


def test_forest_plot_exports_to_png():
    a, b = _pair()
    fig = paired_forest_figure(a, b)
    png = fig.to_image(format="png", width=1200, height=int(fig.layout.height), scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == 1200
    assert int.from_bytes(png[20:24], "big") == int(fig.layout.height)


def test_forest_figures_are_valid_plotly():
    import plotly.graph_objects as go

    a, b = _pair()
    for fig in (paired_forest_figure(a, b), forest_figure(a)):
        go.Figure(fig.to_dict())  # full validation of every trace, shape and annotation


@pytest.mark.parametrize("width", [1000, 1300])
def test_panel_titles_do_not_overlap_when_the_margins_are_narrow(width):
    from analysis.screening import manual_reference

    ref = manual_reference(-0.1, -0.15, -0.05)
    fj = figure_json(screening_forest_figure({"alliance_to_symptoms": Effect("New", -0.2, -0.3, -0.1),
                                       "symptoms_to_alliance": None},
                                      {"alliance_to_symptoms": ref, "symptoms_to_alliance": None}))
    bad = overlapping(fj, width)
    assert not bad, _describe(bad)


def test_estimate_column_shares_one_number_of_decimals():
    """Every "estimate [CI]" cell of a panel has the same decimals (APA), even when one study's numbers are
    an order of magnitude smaller than the others'."""
    import re

    from analysis.plots_meta import ForestPanel, ForestRow, forest_panels_figure

    rows = [ForestRow("A", -0.22, -0.30, -0.13), ForestRow("B", -0.049, -0.083, -0.014),
            ForestRow("C", 0.004, -0.0008, 0.0091)]
    fig = forest_panels_figure([ForestPanel(studies=tuple(rows), summary=(-0.09, -0.15, -0.03))])
    cells = [a["text"] for a in cell_annotations(fig.to_plotly_json()["layout"]["annotations"]) if "[" in str(a["text"]) and "CI" not in str(a["text"])]
    assert len(cells) == 4, cells
    decimals = {len(m) for c in cells for m in re.findall(r"\d\.(\d+)", c)}
    assert decimals == {2}, cells


def test_paired_panels_keep_their_tick_labels_horizontal():
    """Issue 23 #3: at 1440×900 the two panels' tick labels were rotated onto the axis title."""
    a, b = _pair()
    fj = figure_json(paired_forest_figure(a, b, xlabel="Within-patient lagged coefficient (SD units)"))
    for axis in ("xaxis", "xaxis2"):
        assert fj["layout"][axis]["tickangle"] == 0 and fj["layout"][axis]["nticks"] == 4


@pytest.mark.parametrize("width", [1000, 1500])
def test_one_stage_row_keeps_its_whole_label_beside_long_study_names(width):
    """The one-stage row of the side-by-side forest (Pooled page) is not cut like a long study name, and no
    text overlaps (the label once ran past the paired forest's 28-character study column)."""
    from types import SimpleNamespace

    from analysis.plots_onestage import ONE_STAGE_LABEL, side_by_side_figure

    a, b = _pair()
    two = SimpleNamespace(pooled={"a_to_s": a, "s_to_a": b})
    one = SimpleNamespace(fits={d: SimpleNamespace(estimate=m.estimate + 0.01, ci_low=m.ci_low, ci_high=m.ci_high)
                                for d, m in two.pooled.items()})
    fj = figure_json(side_by_side_figure(two, one, {"a_to_s": "Alliance → symptoms", "s_to_a": "Symptoms → alliance"}))
    texts = [bx.text for bx in text_boxes(fj, width)]
    assert ONE_STAGE_LABEL in texts, [t for t in texts if t.startswith("One")]
    assert not [t for t in texts if t.startswith("Universitätsklinikum") and not t.endswith("\u2026")]
    bad = overlapping(fj, width)
    assert not bad, _describe(bad)
