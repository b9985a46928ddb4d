"""Figures for ruptures, sudden gains and reliable change (METHODS §9–§11).

Pure functions that draw result objects of `analysis.events`; nothing here computes a
statistic (means, intervals, thresholds and chance references come from the results).

* `rupture_series_figure`       – one patient's alliance with the expected value, the
  rupture threshold, ruptures (red) and repairs (green);
* `rupture_prevalence_figure`   – per-study prevalence beside the chance reference;
* `gain_series_figure`          – one patient's scores with sudden gains / losses;
* `alliance_around_gains_figure`– alliance at sessions n and n + 1, gain pairs vs other
  pairs, and the change as densities;
* `alliance_trajectory_figure`  – gainers' alliance around the gain, gainers vs others;
* `reliable_change_figure`      – pre/post plot coloured by reliable-change category.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.formatting import num, nums
from analysis.plot_style import WHITE

__all__ = [
    "alliance_around_gains_figure",
    "alliance_trajectory_figure",
    "gain_series_figure",
    "reliable_change_figure",
    "rupture_prevalence_figure",
    "rupture_series_figure",
]

RUPTURE_COLOR = "#d62728"
REPAIR_COLOR = "#2ca02c"
SERIES_COLOR = "#1f77b4"
OTHER_COLOR = "#7f7f7f"
GAIN_COLOR = "#2ca02c"
CHANCE_COLOR = "#111111"

ALLIANCE_LABEL = "Alliance (higher = stronger)"


def _need(frame, cols, who, what):
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{who}: expected {what}.")
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"{who}: expected {what}; missing column(s) {', '.join(missing)}.")


def _one_patient(frame, study, patient, who):
    sel = frame[(frame["study"].astype(str) == str(study)) & (frame["patient"].astype(str) == str(patient))]
    if sel.empty:
        raise ValueError(f"{who}: no rows for study {study!r}, patient {patient!r}.")
    return sel.sort_values("session")


def _title(study, patient) -> str:
    return f"{html.escape(str(study))} · {html.escape(str(patient))}"


def rupture_series_figure(result, study: str, patient: str) -> go.Figure:
    """One patient's alliance from a `RuptureAnalysis` (or the `ruptures` frame).

    Line: observed alliance. Dotted grey: the expected value of each session under the
    criterion (``expected``); dashed red: the threshold (``threshold``). Red markers:
    ruptures; green markers: repairs, joined to their rupture.
    """
    who = "rupture_series_figure"
    flags = getattr(result, "flags", result)
    _need(flags, ["study", "patient", "session", "alliance", "expected", "threshold", "rupture", "repair",
                  "repair_session", "eligible"], who, "a RuptureAnalysis or the frame of events.ruptures()")
    p = _one_patient(flags, study, patient, who)
    obs = p[p["alliance"].notna()]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=obs["session"], y=obs["alliance"], mode="lines+markers", name="Alliance",
                             line={"color": SERIES_COLOR}, marker={"size": 7}, text=nums(obs["alliance"]),
                             hovertemplate="session %{x}<br>alliance %{text}<extra></extra>"))
    if bool(p["eligible"].iloc[0]):
        fig.add_trace(go.Scatter(x=p["session"], y=p["expected"], mode="lines", name="Expected (criterion)",
                                 line={"color": OTHER_COLOR, "dash": "dot"}, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=p["session"], y=p["threshold"], mode="lines", name="Rupture threshold",
                                 line={"color": RUPTURE_COLOR, "dash": "dash"}, text=nums(p["threshold"]),
                                 hovertemplate="threshold %{text}<extra></extra>"))
        rup = p[p["rupture"].astype("boolean").fillna(False).astype(bool)]
        fig.add_trace(go.Scatter(x=rup["session"], y=rup["alliance"], mode="markers", name="Rupture",
                                 marker={"color": RUPTURE_COLOR, "size": 13, "symbol": "triangle-down"}))
        rep = rup[rup["repair"].astype("boolean").fillna(False).astype(bool)]
        by_session = obs.set_index("session")["alliance"]
        rx = [int(s) for s in rep["repair_session"]]
        fig.add_trace(go.Scatter(x=rx, y=[float(by_session.loc[s]) for s in rx], mode="markers", name="Repair",
                                 marker={"color": REPAIR_COLOR, "size": 13, "symbol": "triangle-up"}))
        for r in rep.itertuples():
            s2 = int(r.repair_session)
            fig.add_trace(go.Scatter(x=[r.session, s2], y=[r.alliance, float(by_session.loc[s2])], mode="lines",
                                     line={"color": REPAIR_COLOR, "dash": "dot", "width": 1}, showlegend=False,
                                     hoverinfo="skip"))
        title = f"{_title(study, patient)}: {len(rup)} rupture(s), {len(rep)} repaired"
    else:
        title = f"{_title(study, patient)}: too few alliance ratings, not classified"
    fig.update_layout(title=title, xaxis_title="Session", yaxis_title=ALLIANCE_LABEL,
                      legend={"orientation": "h", "y": -0.2}, template=WHITE)
    return fig


def rupture_prevalence_figure(result) -> go.Figure:
    """Per-study rupture prevalence (bars) with the chance reference (black marks, 95% range).

    Draws ``result.to_frame()`` of a `RuptureAnalysis`; without a chance reference only the
    bars for rupture and rupture–repair are drawn. Horizontal bars, one row per study (the
    "All studies" row last), the figure as tall as the rows need; the counts n/N stand in a
    column to the right of the plot ("rupture · rupture–repair" of the classified patients),
    where neither bars nor chance marks can cover them, however many studies there are.
    """
    t = result.to_frame()
    studies = t["study"].astype(str).tolist()
    fig = go.Figure()
    top = 0.0
    for prev, cnt, label, color in (("prev_rupture", "n_rupture", "Any rupture", RUPTURE_COLOR),
                                    ("prev_rupture_repair", "n_rupture_repair", "Rupture–repair", REPAIR_COLOR)):
        x = 100 * t[prev].to_numpy(float)
        top = max(top, float(np.nanmax(x, initial=0.0)))
        fig.add_trace(go.Bar(y=studies, x=x, orientation="h", name=label, marker_color=color,
                             customdata=np.column_stack([[f"{int(n)}/{int(N)}" for n, N in zip(t[cnt], t["n_eligible"])],
                                                         nums(x, 1)]),
                             hovertemplate="%{y}<br>" + label + ": %{customdata[1]}% (%{customdata[0]})"
                                           "<extra></extra>"))
    if "chance_expected" in t.columns:
        e = 100 * t["chance_expected"].to_numpy(float)
        hi = 100 * t["chance_sim_high"].to_numpy(float)
        top = max(top, float(np.nanmax(hi, initial=0.0)))
        fig.add_trace(go.Scatter(
            y=studies, x=e, mode="markers", name="Rupture expected by chance (95% range)",
            marker={"color": CHANCE_COLOR, "symbol": "line-ns-open", "size": 16, "line": {"width": 3}},
            error_x={"type": "data", "symmetric": False, "array": hi - e,
                     "arrayminus": e - 100 * t["chance_sim_low"].to_numpy(float), "color": CHANCE_COLOR},
            text=nums(e, 1), hovertemplate="%{y}<br>expected by chance: %{text}%<extra></extra>"))
    right = min(100.0, top) * 1.08 + 1
    counts = [f"{int(a)}/{int(N)} · {int(b)}/{int(N)}"
              for a, b, N in zip(t["n_rupture"], t["n_rupture_repair"], t["n_eligible"])]
    fig.add_trace(go.Scatter(y=studies, x=[right] * len(studies), mode="text", text=counts,
                             textposition="middle right", textfont={"size": 12}, cliponaxis=False,
                             name="n/N", showlegend=False, hoverinfo="skip"))
    fig.add_annotation(x=1, xref="paper", xanchor="left", y=1, yref="paper", yanchor="bottom", showarrow=False,
                       text="n/N: rupture · rupture–repair", font={"size": 12})
    fig.update_layout(barmode="group", title="Rupture prevalence per study, observed and expected by chance",
                      yaxis_title="Study", xaxis_title="Patients (% of classified)", template=WHITE,
                      legend={"orientation": "h", "y": -0.12 if len(studies) > 6 else -0.3},
                      height=max(340, 150 + 40 * len(studies)), bargap=0.25, margin={"r": 190})
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(range=[0, right])
    return fig


def gain_series_figure(df: pd.DataFrame, result, study: str, patient: str) -> go.Figure:
    """One patient's symptom scores with the sudden gains (or losses) of a `GainAnalysis`.

    Events (``is_gain``) are thick green (gains) or red (losses) segments; pairs that meet
    the criteria but are not counted (first only) are dashed; reversals are marked.
    """
    who = "gain_series_figure"
    gains = getattr(result, "gains", result)
    kind = getattr(result, "kind", "gain")
    _need(df, ["study", "patient", "session", "symptoms"], who, "canonical long data")
    _need(gains, ["study", "patient", "pregain_session", "postgain_session", "pregain", "postgain",
                  "magnitude", "is_gain", "meets_criteria"], who, "a GainAnalysis")
    p = _one_patient(df, study, patient, who)
    p = p[p["symptoms"].notna()]
    g = gains[(gains["study"].astype(str) == str(study)) & (gains["patient"].astype(str) == str(patient))]
    color = GAIN_COLOR if kind == "gain" else RUPTURE_COLOR
    word = "Sudden gain" if kind == "gain" else "Sudden loss"
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=p["session"], y=p["symptoms"], mode="lines+markers", name="Symptoms",
                             line={"color": SERIES_COLOR}, marker={"size": 7}, text=nums(p["symptoms"]),
                             hovertemplate="session %{x}<br>symptoms %{text}<extra></extra>"))
    ev = g[g["is_gain"].astype(bool)]
    later = g[g["meets_criteria"].astype(bool) & ~g["is_gain"].astype(bool)]
    for sub, name, dash in ((ev, word, "solid"), (later, "Later (not counted)", "dash")):
        for i, r in enumerate(sub.itertuples()):
            fig.add_trace(go.Scatter(
                x=[r.pregain_session, r.postgain_session], y=[r.pregain, r.postgain], mode="lines+markers",
                name=name, legendgroup=name, showlegend=i == 0, line={"color": color, "width": 5, "dash": dash},
                marker={"size": 11, "color": color},
                hovertemplate=f"{r.pregain_session} → {r.postgain_session}: {num(r.magnitude)}<extra></extra>"))
    if "reversal_session" in ev.columns:
        rv = ev[ev["reversal"].astype("boolean").fillna(False).astype(bool)]
        if len(rv):
            at = p.set_index("session")["symptoms"]
            xs = [int(s) for s in rv["reversal_session"]]
            fig.add_trace(go.Scatter(x=xs, y=[float(at.loc[s]) for s in xs], mode="markers", name="Reversal",
                                     marker={"symbol": "x", "size": 12, "color": "black"}))
    fig.update_layout(title=f"{_title(study, patient)}: {len(ev)} {word.lower()}(es)".replace("gain(es)", "gain(s)"),
                      xaxis_title="Session", yaxis_title="Symptoms", template=WHITE,
                      legend={"orientation": "h", "y": -0.2})
    return fig


def alliance_around_gains_figure(result) -> go.Figure:
    """Alliance around sudden gains, from an `AllianceAroundGains` result.

    Left: mean alliance at sessions n and n + 1 with 95% intervals (``group_means``), gain
    pairs vs other pairs. Right: the distribution of the change A(n+1) − A(n) as densities
    over common bins (``change_distribution``), so thousands of other pairs are one curve.
    """
    gm = result.group_means
    dist = result.change_distribution
    fig = make_subplots(rows=1, cols=2, column_widths=[0.5, 0.5], subplot_titles=(
        "Mean alliance at sessions n and n + 1 (95% CI)", "Change n → n + 1 (density)"))
    labels = {"gain": "Gain pairs", "other": "Other pairs"}
    colors = {"gain": GAIN_COLOR, "other": OTHER_COLOR}
    for grp in ("gain", "other"):
        s = gm[gm["group"] == grp].set_index("time").reindex(["pre", "post"])
        fig.add_trace(go.Scatter(
            x=["Session n (pregain)", "Session n + 1 (postgain)"], y=s["mean"],
            error_y={"type": "data", "symmetric": False, "array": s["ci_high"] - s["mean"],
                     "arrayminus": s["mean"] - s["ci_low"]},
            mode="lines+markers", name=f"{labels[grp]} (n = {int(s['n'].iloc[0])})", legendgroup=grp,
            line={"color": colors[grp]}, marker={"size": 9}), row=1, col=1)
        fig.add_trace(go.Scatter(x=dist["bin_mid"], y=dist["density_" + grp], mode="lines", name=labels[grp],
                                 line={"color": colors[grp], "shape": "hvh"}, fill="tozeroy", opacity=0.5,
                                 legendgroup=grp, showlegend=False), row=1, col=2)
    fig.update_yaxes(title_text=ALLIANCE_LABEL, row=1, col=1)
    fig.update_xaxes(title_text="Alliance change A(n+1) − A(n) (positive = stronger after)", row=1, col=2)
    fig.update_yaxes(title_text="Density", row=1, col=2)
    fig.update_layout(title="Alliance around sudden gains", template=WHITE,
                      legend={"orientation": "h", "y": -0.2})
    return fig


def alliance_trajectory_figure(traj) -> go.Figure:
    """Alliance trajectories from an `AllianceTrajectory` (means with 95% intervals).

    Left: gainers by session relative to the gain (0 = pregain, 1 = postgain). Right: mean
    alliance by session, gainers vs non-gainers.
    """
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Gainers, around the gain",
                                                        "Gainers vs non-gainers, by session"))
    r = traj.relative[traj.relative["n"] > 0]
    fig.add_trace(go.Scatter(x=r["relative_session"], y=r["mean"], mode="lines+markers", name="Gainers",
                             line={"color": GAIN_COLOR},
                             error_y={"type": "data", "symmetric": False, "array": r["ci_high"] - r["mean"],
                                      "arrayminus": r["mean"] - r["ci_low"]}), row=1, col=1)
    fig.add_vrect(x0=0, x1=1, fillcolor="rgba(44,160,44,0.12)", line_width=0, row=1, col=1)
    for grp, color in (("gainers", GAIN_COLOR), ("non-gainers", OTHER_COLOR)):
        s = traj.by_session[(traj.by_session["group"] == grp) & (traj.by_session["n"] > 0)]
        fig.add_trace(go.Scatter(x=s["session"], y=s["mean"], mode="lines+markers", name=grp.capitalize(),
                                 line={"color": color, "dash": "solid" if grp == "gainers" else "dot"},
                                 showlegend=grp != "gainers",
                                 error_y={"type": "data", "symmetric": False, "array": s["ci_high"] - s["mean"],
                                          "arrayminus": s["mean"] - s["ci_low"]}), row=1, col=2)
    fig.update_xaxes(title_text="Session relative to the pregain session", row=1, col=1)
    fig.update_xaxes(title_text="Session", row=1, col=2)
    fig.update_yaxes(title_text=ALLIANCE_LABEL, row=1, col=1)
    fig.update_layout(title="Alliance trajectory around sudden gains", template=WHITE,
                      legend={"orientation": "h", "y": -0.2})
    return fig


_RC_COLORS = {"recovered": REPAIR_COLOR, "improved": "#98df8a", "unchanged": OTHER_COLOR,
              "deteriorated": RUPTURE_COLOR}


def reliable_change_figure(result, study: str | None = None) -> go.Figure:
    """Pre (x) vs post (y) per patient from a `ReliableChangeAnalysis`, coloured by category.

    The diagonal is no change; with the Jacobson–Truax method the grey band is
    ±1.96·S_diff (the table's smallest reliable change); dotted lines mark the clinical
    cut-off c when set. Below the diagonal = improvement. With several studies pass ``study``.
    """
    who = "reliable_change_figure"
    rc = getattr(result, "per_patient", result)
    method = getattr(result, "method", "JT")
    _need(rc, ["study", "patient", "pre", "post", "s_diff", "cutoff", "category"], who,
          "a ReliableChangeAnalysis")
    d = rc
    if study is not None:
        d = rc[rc["study"].astype(str) == str(study)]
        if d.empty:
            raise ValueError(f"{who}: no rows for study {study!r}.")
    elif rc["study"].nunique() > 1:
        raise ValueError(f"{who}: the table holds several studies; pass study= to choose one.")
    d = d[d["pre"].notna() & d["post"].notna()]
    fig = go.Figure()
    if len(d):
        lo = float(min(d["pre"].min(), d["post"].min()))
        hi = float(max(d["pre"].max(), d["post"].max()))
        pad = 0.05 * (hi - lo if hi > lo else 1.0)
        lo, hi = lo - pad, hi + pad
        xs = [lo, hi]
        if method == "JT":
            band = float(d["rc_crit"].iloc[0] * d["s_diff"].iloc[0]) if "rc_crit" in d else 1.96 * float(
                d["s_diff"].iloc[0])
            fig.add_trace(go.Scatter(x=xs, y=[lo + band, hi + band], mode="lines", line={"width": 0},
                                     showlegend=False, hoverinfo="skip"))
            fig.add_trace(go.Scatter(x=xs, y=[lo - band, hi - band], mode="lines", line={"width": 0},
                                     fill="tonexty", fillcolor="rgba(127,127,127,0.18)",
                                     name="No reliable change (±1.96·S_diff)", hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=xs, y=xs, mode="lines", name="No change", line={"color": OTHER_COLOR},
                                 hoverinfo="skip"))
        c = d["cutoff"].iloc[0]
        if pd.notna(c):
            c = float(c)
            fig.add_trace(go.Scatter(x=[c, c, None, lo, hi], y=[lo, hi, None, c, c], mode="lines",
                                     name=f"Clinical cut-off c = {num(c)}", line={"color": "black", "dash": "dot"},
                                     hoverinfo="skip"))
        for cat, col in _RC_COLORS.items():
            s = d[d["category"] == cat]
            if len(s):
                fig.add_trace(go.Scatter(
                    x=s["pre"], y=s["post"], mode="markers", name=f"{cat} (n = {len(s)})",
                    marker={"color": col, "size": 8}, text=[html.escape(str(p)) for p in s["patient"]],
                    customdata=np.column_stack([nums(s["pre"]), nums(s["post"])]),
                    hovertemplate="%{text}<br>pre %{customdata[0]} → post %{customdata[1]}<extra></extra>"))
    names = {"JT": "Jacobson–Truax", "GLN": "Gulliksen–Lord–Novick", "EN": "Edwards–Nunnally",
             "HA": "Hageman–Arrindell"}
    fig.update_layout(title=f"Reliable and clinically significant change ({names.get(method, method)})",
                      xaxis_title="First score (higher = more severe)", yaxis_title="Last score (higher = more severe)",
                      template=WHITE, legend={"orientation": "h", "y": -0.3}, margin={"b": 120})
    return fig
