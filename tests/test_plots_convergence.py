"""Figures of analysis.plots_convergence, inspected through their JSON (plotly's serialised figure):
which traces exist, on which axes, and that the plotted numbers are the right ones for a tiny data
set whose means and lines are worked out by hand below."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest

from analysis import formatting as fmt
from analysis import plots_convergence as pc
from analysis.convergence import dyad_scores, dyadic_model, growth_models, models_table, trajectories
from analysis.simulate import simulate_dyads

NAN = np.nan


def _tiny() -> pd.DataFrame:
    """Two studies. S1: dyads A (sessions 1-3), B (1-4), D (0-4, single-rating sessions); S2: F, G.

    Session 1 of S1: P = 6, 4, 5 → mean 5, SD 1; T = 4, 5, 3 → mean 4, SD 1; P − T = 2, −1, 2 → mean 1,
    SD √3. Session 0 of S1: only D's T = 2. Session 2 of S1: P = 6, 5, 5.5 (mean 5.5), T = 5, 5 (mean 5).
    """
    rows = [
        ("S1", "A", 1, 6.0, 4.0, 20.0), ("S1", "A", 2, 6.0, 5.0, 18.0), ("S1", "A", 3, 6.0, 6.0, 16.0),
        ("S1", "B", 1, 4.0, 5.0, 30.0), ("S1", "B", 2, 5.0, 5.0, 29.0), ("S1", "B", 3, 6.0, 5.0, 27.0),
        ("S1", "B", 4, 7.0, 5.0, 25.0),
        ("S1", "D", 0, NAN, 2.0, 30.0), ("S1", "D", 1, 5.0, 3.0, NAN), ("S1", "D", 2, 5.5, NAN, 28.0),
        ("S1", "D", 3, 6.0, 5.0, 27.0), ("S1", "D", 4, 9.0, NAN, 26.0),
        ("S2", "F", 1, 5.0, 4.0, 2.0), ("S2", "F", 2, 5.0, 4.5, 1.8),
        ("S2", "G", 1, 5.0, 5.0, 2.5), ("S2", "G", 2, 5.0, 4.0, 2.4), ("S2", "G", 3, 5.0, 4.0, 2.2),
        ("S2", "G", 4, 5.0, 3.0, 2.0),
    ]
    return pd.DataFrame(rows, columns=["study", "patient", "session", "alliance", "therapist_alliance", "symptoms"])


def _arr(v):
    """A trace array from the figure JSON (plotly ≥ 6 writes numeric arrays as base64 typed arrays)."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if "shape" in v:
            a = a.reshape([int(x) for x in str(v["shape"]).split(",")])
        return a.astype(float)
    return np.asarray(v, dtype=float)


def _json(fig):
    return json.loads(fig.to_json())


def _traces(fig, name=None, **match):
    out = []
    for t in _json(fig)["data"]:
        if name is not None and t.get("name") != name:
            continue
        if all(t.get(k) == v for k, v in match.items()):
            out.append(t)
    return out


def test_alliance_trajectories_means_sds_and_panels():
    fig = pc.alliance_trajectories_figure(trajectories(_tiny()), offset=0.1)
    j = _json(fig)
    assert [a["text"] for a in j["layout"]["annotations"]] == ["S1", "S2"]
    assert len(j["data"]) == 4  # P and T per study
    p1 = _traces(fig, "Patient (P)", xaxis="x")[0]
    t1 = _traces(fig, "Therapist (T)", xaxis="x")[0]
    # S1 sessions 0..4, shifted by ∓ offset
    np.testing.assert_allclose(_arr(p1["x"]), np.arange(5) - 0.1)
    np.testing.assert_allclose(_arr(t1["x"]), np.arange(5) + 0.1)
    # patient means: session 0 none; 1: (6+4+5)/3 = 5; 2: (6+5+5.5)/3 = 5.5; 3: (6+6+6)/3 = 6; 4: (7+9)/2 = 8
    np.testing.assert_allclose(_arr(p1["y"]), [NAN, 5, 5.5, 6, 8])
    # therapist means: 0: 2; 1: (4+5+3)/3 = 4; 2: (5+5)/2 = 5; 3: (6+5+5)/3 = 16/3; 4: 5
    np.testing.assert_allclose(_arr(t1["y"]), [2, 4, 5, 16 / 3, 5])
    # error bars = SD (ddof 1); an SD of one value is undefined and drawn as 0
    np.testing.assert_allclose(_arr(p1["error_y"]["array"]), [0, 1, 0.5, 0, np.sqrt(2)])
    np.testing.assert_allclose(_arr(t1["error_y"]["array"]), [0, 1, 0, np.sqrt(1 / 3), 0])
    # one legend entry per rater; the S2 traces sit on the second panel's axes
    assert p1["showlegend"] and not _traces(fig, "Patient (P)", xaxis="x2")[0]["showlegend"]
    p2 = _traces(fig, "Patient (P)", xaxis="x2")[0]
    np.testing.assert_allclose(_arr(p2["y"]), [5, 5, 5, 5])
    # a single study; an unknown study is an error
    one = _json(pc.alliance_trajectories_figure(trajectories(_tiny()), study="S2"))
    assert len(one["data"]) == 2
    with pytest.raises(ValueError, match="No rows"):
        pc.alliance_trajectories_figure(trajectories(_tiny()), study="S9")


def test_dyad_trajectories_lines_band_and_titles():
    d = _tiny()
    s1 = d[d["study"] == "S1"]
    fig = pc.dyad_trajectories_figure(s1, scores=dyad_scores(s1))
    j = _json(fig)
    # A: convergence +1, B: −0.4 (crossing lines), D: +0.5
    assert [a["text"] for a in j["layout"]["annotations"]] == ["A<br>conv. 1.00", "B<br>conv. \u22120.40", "D<br>conv. 0.50"]
    # per dyad: T fitted, P fitted (filled to T: the band is D̂), P markers, T markers
    assert [t["name"] for t in j["data"]][:4] == ["T fitted", "P fitted (band = fitted discrepancy)",
                                                  "Patient (P)", "Therapist (T)"]
    assert len(j["data"]) == 12
    pf = [t for t in j["data"] if t["name"].startswith("P fitted")]
    assert all(t["fill"] == "tonexty" for t in pf)
    # dyad D (third panel): lines over the joint sessions 1 and 3 only: P̂ = 4.5 + 0.5t, T̂ = 2 + t
    tf_d = _traces(fig, "T fitted", xaxis="x3")[0]
    pf_d = _traces(fig, "P fitted (band = fitted discrepancy)", xaxis="x3")[0]
    np.testing.assert_allclose(_arr(tf_d["x"]), [1, 3])
    np.testing.assert_allclose(_arr(pf_d["y"]), [5, 6], atol=1e-12)
    np.testing.assert_allclose(_arr(tf_d["y"]), [3, 5], atol=1e-12)
    # ...while the markers show every rating, including the single-rating sessions 0, 2 and 4
    pm_d = _traces(fig, "Patient (P)", xaxis="x3")[0]
    tm_d = _traces(fig, "Therapist (T)", xaxis="x3")[0]
    np.testing.assert_allclose(_arr(pm_d["x"]), [0, 1, 2, 3, 4])
    np.testing.assert_allclose(_arr(pm_d["y"]), [NAN, 5, 5.5, 6, 9])
    np.testing.assert_allclose(_arr(tm_d["y"]), [2, 3, NAN, 5, NAN])
    # dyad B: P̂ = 3 + t, T̂ = 5
    np.testing.assert_allclose(_arr(_traces(fig, "P fitted (band = fitted discrepancy)", xaxis="x2")[0]["y"]),
                               [4, 5, 6, 7], atol=1e-12)
    # explicit selection, and a seeded sample of n dyads
    only = _json(pc.dyad_trajectories_figure(s1, patients=["B", "nobody"], scores=dyad_scores(s1)))
    assert [a["text"] for a in only["layout"]["annotations"]] == ["B<br>conv. \u22120.40"]
    a = _json(pc.dyad_trajectories_figure(s1, n=2, seed=3, scores=dyad_scores(s1)))["layout"]["annotations"]
    b = _json(pc.dyad_trajectories_figure(s1, n=2, seed=3, scores=dyad_scores(s1)))["layout"]["annotations"]
    assert len(a) == 2 and a == b
    with pytest.raises(ValueError, match="one study"):
        pc.dyad_trajectories_figure(d, scores=dyad_scores(d))
    with pytest.raises(ValueError, match="None of the requested"):
        pc.dyad_trajectories_figure(s1, patients=["C"], scores=dyad_scores(s1))
    with pytest.raises(ValueError, match="dyad_scores"):
        pc.dyad_trajectories_figure(s1)


def test_convergence_distribution_values():
    sc = dyad_scores(_tiny())
    fig = pc.convergence_distribution_figure(sc)
    j = _json(fig)
    hist = [t for t in j["data"] if t["type"] == "histogram"]
    box = [t for t in j["data"] if t["type"] == "box"]
    assert [t["name"] for t in hist] == ["S1", "S2"] and [t["name"] for t in box] == ["S1", "S2"]
    np.testing.assert_allclose(_arr(hist[0]["x"]), [1, -0.4, 0.5], atol=1e-12)
    np.testing.assert_allclose(_arr(hist[1]["x"]), [0.5, -0.6], atol=1e-12)
    assert box[0]["text"] == ["A", "B", "D"] and box[0]["boxpoints"] == "all"
    assert any(s.get("x0") == 0 and s.get("x1") == 0 for s in j["layout"]["shapes"])  # the zero line
    sg = _json(pc.convergence_distribution_figure(sc.table, column="alliance_development"))
    np.testing.assert_allclose(_arr(sg["data"][0]["x"]), [0.5, 0.5, 0.75], atol=1e-12)
    with pytest.raises(ValueError, match="no column"):
        pc.convergence_distribution_figure(sc, column="nope")


def test_discrepancy_figure_observed_means_and_model_line():
    d = _tiny()
    s1 = d[d["study"] == "S1"]
    fig = pc.discrepancy_figure(trajectories(s1))
    obs = _json(fig)["data"][0]
    # joint P − T per session: 0: none; 1: 2, −1, 2 → mean 1, SD √3, n 3; 2: 1, 0 → 0.5; 3: 0, 1, 1 → 2/3;
    # 4: B only, 7 − 5 = 2 (D has no T there)
    np.testing.assert_allclose(_arr(obs["y"]), [NAN, 1, 0.5, 2 / 3, 2], atol=1e-12)
    np.testing.assert_allclose(_arr(obs["error_y"]["array"])[1], 1.96 * np.sqrt(3) / np.sqrt(3), atol=1e-12)
    with pytest.raises(ValueError, match="one study"):
        pc.discrepancy_figure(trajectories(d))
    with pytest.raises(ValueError, match="trajectories"):
        pc.discrepancy_figure(s1)
    # with the stacked dyadic model: the line is γ_role + γ_role:time·(s − origin) over the sessions
    sim = simulate_dyads(30, range(1, 7), seed=4).data
    dy = dyadic_model(sim, time="from_first")
    fx = dy.fixed.set_index("term")["estimate"]
    line = _json(pc.discrepancy_figure(trajectories(sim), dy))["data"][1]
    x, y = _arr(line["x"]), _arr(line["y"])
    assert x[0] == 1 and x[-1] == 6
    np.testing.assert_allclose(y, fx["role"] + fx["role:time"] * (x - 1), rtol=1e-12)
    assert fmt.num(fx['role:time'], 3) in line["name"]  # the one formatting rule (true minus)


def test_symptom_growth_lines_and_observed_means():
    sim = simulate_dyads(40, range(1, 7), seed=5, convergence_on_slope=0.05).data
    res = growth_models(sim, models=(2,), ml_refit=False, satterthwaite=False)
    fig = pc.symptom_growth_figure(res, sim, model=2)
    j = _json(fig)
    lines = [t for t in j["data"] if t["mode"] == "lines"]
    assert len(lines) == 3 and lines[1]["name"] == "mean"
    fx = res.models[2].fixed.set_index("term")["estimate"]
    sd = res.sample["convergence"].std(ddof=1)
    for z, tr in zip((-1, 0, 1), lines):
        s = _arr(tr["x"])
        assert s[0] == 1 and s[-1] == 6
        exp = fx["intercept"] + fx["convergence"] * z * sd + (fx["time"] + fx["time:convergence"] * z * sd) * s
        np.testing.assert_allclose(_arr(tr["y"]), exp, rtol=1e-12)
    obs = next(t for t in j["data"] if t["mode"] == "markers")
    np.testing.assert_allclose(_arr(obs["y"]), sim.groupby("session")["symptoms"].mean().to_numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="not fitted"):
        pc.symptom_growth_figure(res, model=3)
    with pytest.raises(ValueError, match="not a term"):
        pc.symptom_growth_figure(res, model=2, predictor="early_patient")


def test_models_table_figure_is_the_table():
    sim = simulate_dyads(30, range(1, 6), seed=6).data
    res = growth_models(sim, models=(1, 2), satterthwaite=False)
    tab = models_table(res, digits=3)
    cells = _json(pc.models_table_figure(res, digits=3))["data"][0]["cells"]["values"]
    assert cells[0] == list(tab["term"])
    for k, c in enumerate(tab.columns[1:], start=1):
        assert cells[k] == list(tab[c])


def test_user_strings_are_escaped_in_figure_text():
    """Study and patient ids from a file end up in panel titles and hover text: no HTML gets through."""
    d = _tiny().replace({"S1": "<b>S1</b>", "A": "<img src=x>"})
    s1 = d[d["study"] == "<b>S1</b>"]
    titles = [a["text"] for a in _json(pc.dyad_trajectories_figure(s1, scores=dyad_scores(s1)))["layout"]["annotations"]]
    assert titles[0].startswith("&lt;img src=x&gt;<br>")
    ann = [a["text"] for a in _json(pc.alliance_trajectories_figure(trajectories(d)))["layout"]["annotations"]]
    assert "&lt;b&gt;S1&lt;/b&gt;" in ann
    box = [t for t in _json(pc.convergence_distribution_figure(dyad_scores(d)))["data"] if t["type"] == "box"][0]
    assert "&lt;img src=x&gt;" in box["text"]


def test_sessions_without_ratings_do_not_stretch_the_axes():
    """Study-2 design: GSI at session 1 and at termination (up to ~110) without WAI. Sessions with no rating
    are not rows of the trajectories (so the per-session figures and the dyadic line end at the last
    rated session), and the per-dyad panels plot only rated sessions."""
    d = simulate_dyads(20, (1, 3, 12, 20, 90), seed=3).data
    d.loc[d["session"].isin([1, 90]), ["alliance", "therapist_alliance"]] = NAN
    tr = trajectories(d)
    assert tr["session"].tolist() == [3, 12, 20]
    dy = dyadic_model(d, time="from_first")
    line = _json(pc.discrepancy_figure(tr, dy))["data"][1]
    assert _arr(line["x"]).min() == 3 and _arr(line["x"]).max() == 20
    fig = _json(pc.dyad_trajectories_figure(d, n=4, scores=dyad_scores(d)))
    xs = np.concatenate([_arr(t["x"]) for t in fig["data"] if t["mode"] == "markers"])
    assert set(xs) <= {3.0, 12.0, 20.0}


def test_distribution_figure_one_study_has_no_cut_labels():
    """One study: its (long) name is neither a legend entry that narrows the plot nor a tick label of the
    box row that the figure cuts off ("y 2 design: naturalistic…")."""
    d = simulate_dyads(20, range(1, 6), study="Study 2 design: naturalistic (SCL-90-R GSI)", seed=3).data
    j = _json(pc.convergence_distribution_figure(dyad_scores(d)))
    assert j["layout"].get("showlegend") is False
    assert j["layout"]["yaxis2"].get("showticklabels") is False
    two = _json(pc.convergence_distribution_figure(dyad_scores(_tiny())))
    assert two["layout"].get("showlegend") is not False and two["layout"]["yaxis2"].get("showticklabels") is False
