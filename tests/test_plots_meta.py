"""Figure tests for analysis.plots_meta: inspect the figure JSON (rows, traces,
positions, texts), not only that a figure is returned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from figure_layout import decode as _decode

from analysis.meta import leave_one_out, random_effects
from analysis.plots_meta import (
    cell_annotations,
    forest_figure,
    funnel_figure,
    leave_one_out_figure,
    paired_forest_figure,
)

REF = json.loads((Path(__file__).parent / "reference" / "meta_reference.json").read_text())
BCG = REF["datasets"]["bcg"]
Y = np.asarray(BCG["yi"], float)
V = np.asarray(BCG["vi"], float)
LABELS = list(BCG["labels"])
N = np.asarray(BCG["n"], float)
Z975 = 1.959963984540054


def _json(fig):
    return _decode(json.loads(fig.to_json()))


def _trace(fj, name):
    found = [t for t in fj["data"] if t.get("name") == name]
    assert found, f"no trace named {name!r}; have {[t.get('name') for t in fj['data']]}"
    assert len(found) == 1
    return found[0]


def _annotations(fj, name):
    return [a for a in cell_annotations(fj["layout"].get("annotations", [])) if a.get("name") == name]


def _column(fj, name):
    """A text column of the forest plot: {y: text} (tags and entities removed)."""
    import html
    import re

    return {a["y"]: html.unescape(re.sub(r"<[^>]+>", "", a["text"])) for a in _annotations(fj, name)}


def _top_down(col):
    return [col[y] for y in sorted(col, reverse=True)]


@pytest.fixture(scope="module")
def bcg_result():
    return random_effects(Y, V, labels=LABELS, n_patients=N, n_pairs=3 * N)


def test_forest_rows_markers_and_error_bars(bcg_result):
    fj = _json(forest_figure(bcg_result, title="BCG trials", xlabel="log risk ratio"))
    st = _trace(fj, "Studies")
    assert len(st["x"]) == 13
    assert np.allclose(st["x"], Y)
    ys = np.asarray(st["y"], float)
    assert np.all(np.diff(ys) < 0), "first study on top, one row each"
    assert len(set(ys.tolist())) == 13
    se = np.sqrt(V)
    assert np.allclose(st["error_x"]["array"], Z975 * se)
    assert np.allclose(st["error_x"]["arrayminus"], Z975 * se)
    assert st["marker"]["symbol"] == "square"
    # square area proportional to the weight (all above the minimum size here)
    size = np.asarray(st["marker"]["size"], float)
    w = bcg_result.weights
    assert np.allclose((size / size.max()) ** 2, w / w.max())
    assert fj["layout"]["title"]["text"] == "BCG trials"
    assert fj["layout"]["xaxis"]["title"]["text"] == "log risk ratio"


def test_forest_diamond_and_prediction_interval(bcg_result):
    fj = _json(forest_figure(bcg_result))
    dia = _trace(fj, "Pooled estimate")
    assert dia["fill"] == "toself"
    x = dia["x"]
    assert x[1] == pytest.approx(bcg_result.estimate)
    assert x[3] == pytest.approx(bcg_result.estimate)
    assert x[0] == pytest.approx(bcg_result.ci_low) and x[2] == pytest.approx(bcg_result.ci_high)
    # the diamond sits below all study rows
    assert max(dia["y"]) < min(_trace(fj, "Studies")["y"])
    pi = _trace(fj, "Prediction interval")
    assert pi["x"] == pytest.approx([bcg_result.pi_low, bcg_result.pi_high])
    assert pi["y"][0] < min(dia["y"])


def test_forest_texts_labels_counts_and_heterogeneity(bcg_result):
    fj = _json(forest_figure(bcg_result))
    rows = fj["layout"]["meta"]["y_rows"]
    labels = _column(fj, "Study label")
    assert [labels[y] for y in rows] == LABELS
    npat = _column(fj, "N patients")
    assert [npat[y] for y in rows] == [f"{int(n):,}" for n in N]
    npairs = _column(fj, "N pairs")
    assert [npairs[y] for y in rows] == [f"{int(3 * n):,}" for n in N]
    est = _column(fj, "Estimate")
    assert est[rows[0]] == "\u22120.89 [\u22122.01, 0.23]"
    assert est[fj["layout"]["meta"]["y_pooled"]] == "\u22120.71 [\u22121.07, \u22120.36]"
    weights = _column(fj, "Weight")
    assert len(weights) == 13 and all(t.endswith("%") for t in weights.values())
    assert "REML" in labels[fj["layout"]["meta"]["y_pooled"]]
    assert "prediction interval" in labels[fj["layout"]["meta"]["y_pi"]]
    het = _annotations(fj, "heterogeneity")
    assert len(het) == 1
    text = het[0]["text"]
    for part in ("\u03c4\u00b2 = 0.313", "[0.120, 1.111]", "I\u00b2 = 92.2%", "Q(12) = 152.23",
                 "p < .001", "REML", "z-test"):
        assert part in text, part


def test_forest_without_counts_has_no_count_columns():
    res = random_effects(Y, V, labels=LABELS)
    fj = _json(forest_figure(res))
    assert not _annotations(fj, "N patients") and not _annotations(fj, "N pairs")


def test_forest_fe_and_knha_named_and_fe_has_no_pi():
    fe = random_effects(Y, V, method="FE", labels=LABELS)
    fj = _json(forest_figure(fe))
    names = [t["name"] for t in fj["data"]]
    assert "Prediction interval" not in names
    assert "FE model" in _column(fj, "Study label")[fj["layout"]["meta"]["y_pooled"]]
    assert "\u03c4\u00b2" not in _annotations(fj, "heterogeneity")[0]["text"]
    kh = random_effects(Y, V, method="PM", test="knha", labels=LABELS)
    text = _annotations(_json(forest_figure(kh)), "heterogeneity")[0]["text"]
    assert "PM (Paule-Mandel)" in text and "Knapp\u2013Hartung t-test (df = 12)" in text


def test_forest_single_study():
    res = random_effects([0.3], [0.04], labels=["Only"])
    fj = _json(forest_figure(res))
    assert len(_trace(fj, "Studies")["x"]) == 1
    assert "nothing was pooled" in _annotations(fj, "heterogeneity")[0]["text"]
    assert fj["layout"]["meta"]["y_pooled"] is None and fj["layout"]["meta"]["y_pi"] is None


def test_forest_rejects_non_result():
    with pytest.raises(ValueError, match="MetaResult"):
        forest_figure({"estimate": 1.0})


def test_paired_forest_aligns_rows_and_leaves_missing_rows_empty():
    a = random_effects(Y[:11], V[:11], labels=LABELS[:11], n_patients=N[:11], n_pairs=N[:11])
    b_lab = LABELS[2:]
    b_pairs = N[2:].copy()
    b_pairs[0] += 1  # one study with a different number of pairs in direction B
    b = random_effects(0.8 * Y[2:], V[2:], labels=b_lab, method="DL", test="knha", n_pairs=b_pairs)
    fig = paired_forest_figure(a, b, titles=("Alliance \u2192 symptoms", "Symptoms \u2192 alliance"),
                             xlabel="Standardized lagged effect")
    fj = _json(fig)
    rows = fj["layout"]["meta"]["rows"]
    assert rows == LABELS  # union, in order of A then B's extras
    row_y = dict(zip(LABELS, fj["layout"]["meta"]["y_rows"]))
    labels = _column(fj, "Study label")
    assert [labels[row_y[lab]] for lab in LABELS] == LABELS
    sa = _trace(fj, "Studies (Alliance \u2192 symptoms)")
    sb = _trace(fj, "Studies (Symptoms \u2192 alliance)")
    assert sa["y"] == [row_y[lab] for lab in LABELS[:11]]
    assert sb["y"] == [row_y[lab] for lab in b_lab]
    # a study only in A is an empty row in B, and vice versa
    assert row_y[LABELS[0]] not in sb["y"] and row_y[LABELS[12]] not in sa["y"]
    eb = _column(fj, "Estimate (Symptoms \u2192 alliance)")
    assert row_y[LABELS[0]] not in eb and row_y[LABELS[12]] in eb
    da = _trace(fj, "Pooled estimate (Alliance \u2192 symptoms)")
    db = _trace(fj, "Pooled estimate (Symptoms \u2192 alliance)")
    assert da["x"][1] == pytest.approx(a.estimate) and db["x"][1] == pytest.approx(b.estimate)
    assert da["y"] == db["y"]
    titles = [x["text"] for x in _annotations(fj, "panel title")]
    assert len(titles) == 2 and titles[0].startswith("<b>A") and titles[1].startswith("<b>B")
    het = [x["text"] for x in _annotations(fj, "heterogeneity")]
    assert len(het) == 2 and "REML" in het[0] and "DL" in het[1] and "Knapp" in het[1]
    assert "Alliance \u2192 symptoms" in het[0] and "Symptoms \u2192 alliance" in het[1]
    pairs = _column(fj, "N pairs")
    assert pairs[row_y[LABELS[2]]] == f"{int(N[2]):,} / {int(N[2]) + 1:,}"
    assert pairs[row_y[LABELS[3]]] == f"{int(N[3]):,}"
    assert pairs[row_y[LABELS[12]]] == f"{int(N[12]):,}"
    # both panels share the x range and one x-axis title
    assert fj["layout"]["xaxis"]["range"] == fj["layout"]["xaxis2"]["range"]
    assert [x["text"] for x in _annotations(fj, "x title")] == ["Standardized lagged effect"]


def test_paired_forest_rejects_duplicate_labels():
    a = random_effects(Y[:3], V[:3], labels=["x", "x", "y"])
    b = random_effects(Y[:3], V[:3], labels=["x", "y", "z"])
    with pytest.raises(ValueError, match="unique"):
        paired_forest_figure(a, b)


def test_funnel_plot_region_and_points(bcg_result):
    fj = _json(funnel_figure(Y, V, bcg_result, xlabel="log RR"))
    pts = _trace(fj, "Studies")
    assert np.allclose(pts["x"], Y) and np.allclose(pts["y"], np.sqrt(V))
    region = _trace(fj, "Pseudo 95% CI region")
    se_max = max(region["y"])
    assert region["x"][1] == pytest.approx(bcg_result.estimate) and region["y"][1] == 0.0
    assert region["x"][2] - region["x"][1] == pytest.approx(Z975 * se_max)
    assert se_max >= np.sqrt(V).max()
    line = _trace(fj, "Pooled estimate (REML)")
    assert line["x"] == pytest.approx([bcg_result.estimate] * 2)
    assert fj["layout"]["yaxis"]["autorange"] == "reversed"
    assert fj["layout"]["xaxis"]["title"]["text"] == "log RR"
    assert pts["hovertext"][0].startswith(LABELS[0])


def test_leave_one_out_plot_rows_and_reference_line():
    df = leave_one_out(Y, V, labels=LABELS)
    fj = _json(leave_one_out_figure(df))
    pts = _trace(fj, "Leave-one-out estimates")
    assert len(pts["x"]) == 13 and np.allclose(pts["x"], df["estimate"])
    assert np.allclose(pts["error_x"]["array"], df["ci_ub"] - df["estimate"])
    ticks = fj["layout"]["yaxis"]["ticktext"]
    assert ticks[0] == f"Without {LABELS[0]}"
    full = [t for t in fj["data"] if t["name"].startswith("All studies")]
    assert len(full) == 1 and full[0]["x"][0] == pytest.approx(df.attrs["estimate"])
    assert "REML" in fj["layout"]["xaxis"]["title"]["text"]


def test_leave_one_out_plot_rejects_other_tables():
    import pandas as pd

    with pytest.raises(ValueError, match="leave_one_out"):
        leave_one_out_figure(pd.DataFrame({"a": [1]}))


def test_a_large_forest_draws_each_text_column_as_one_block():
    """Issue 24: a 200-study forest as ~1,000 annotations took chromium seconds; one multi-line block per
    column (line spacing = one row) draws the same cells, each on its study's row, and survives the sink."""
    from analysis.export import safe_figure

    rng = np.random.default_rng(4)
    k = 200
    labels = [f"Study <{i}>" for i in range(k)]
    res = random_effects(rng.normal(0.1, 0.1, k), rng.uniform(0.002, 0.01, k), labels=labels,
                         n_patients=list(rng.integers(20, 400, k)), n_pairs=list(rng.integers(100, 3000, k)))
    fj = _json(safe_figure(forest_figure(res)))
    raw = fj["layout"]["annotations"]
    assert len(raw) < 30  # 5 columns × (header + block) + summary rows and footers
    assert "&lt;span" not in json.dumps(raw)  # the block's own markup is not escaped by safe_figure
    rows = fj["layout"]["meta"]["y_rows"]
    col = _column(fj, "Study label")
    assert [col[y] for y in rows] == [f"Study <{i}>" for i in range(k)]  # user text stays text
    est = _column(fj, "Estimate")
    assert len([y for y in rows if y in est]) == k
    # one block's lines are one row (24 px) apart: plotly's line spacing is 1.3 em of the block's font
    block = next(a for a in raw if a.get("name") == "Study label" and "<br>" in a["text"])
    assert block["font"]["size"] * 1.3 == pytest.approx(24)
    assert block["text"].count("<br>") == k - 1
