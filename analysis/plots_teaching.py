"""Figures of the Teaching page (pure plotly builders over :mod:`analysis.teaching` results).

* :func:`estimates_figure` — total, within and between estimates with 95% CIs
  and the true values marked (METHODS §3–§5).
* :func:`scatter_figure` — person means (between slope) next to within-patient
  deviations at t and t + 1 (within slope): the two levels can point opposite ways.
* :func:`nickell_figure` — bias of the person-mean-centered autoregression
  against the number of sessions, with Nickell's −(1 + ρ)/(T − 1) (METHODS §5).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis import formatting as fmt
from analysis.teaching import Estimates, ScatterSummary

__all__ = ["estimates_figure", "latent_figure", "nickell_figure", "scatter_figure"]

_BLUE, _ORANGE, _GREY, _RED, _GREEN = "#2b6cb0", "#dd6b20", "#718096", "#c53030", "#2f855a"


def _signed(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:+.2f}".replace("-", "−")


def estimates_figure(est: Estimates) -> go.Figure:
    """Dot-and-CI of the total, within and between coefficients with their true values.

    The true value is a red ✕ (none for the total effect, which has no single
    true value); for the between term the large-sample value with this many
    sessions (:func:`analysis.teaching.expected_between`) is an open diamond.
    """
    f = est.to_frame()
    labels = ["Total effect<br>(no centering)", "Within-patient<br>(person-mean centered)",
              "Between-patient<br>(person means)"]
    f["label"] = labels
    colors = [_GREY, _BLUE, _ORANGE]
    fig = go.Figure()
    for i, r in f.iterrows():
        ok = np.isfinite(r["estimate"])
        fig.add_trace(go.Scatter(
            x=[r["estimate"] if ok else None], y=[r["label"]], mode="markers",
            marker={"color": colors[i], "size": 13},
            error_x={"type": "data", "symmetric": False, "array": [r["ci_high"] - r["estimate"]],
                     "arrayminus": [r["estimate"] - r["ci_low"]], "color": colors[i], "thickness": 2, "width": 6},
            name=f"{r['model']}: estimate with 95% CI", showlegend=False,
            hovertemplate=(f"{r['model']}<br>estimate {fmt.estimate_ci(r['estimate'], r['ci_low'], r['ci_high'], 3)}"
                           " (95% CI)<extra></extra>"),
        ))
    truth = f[np.isfinite(f["true_value"])]
    fig.add_trace(go.Scatter(
        x=truth["true_value"], y=truth["label"], mode="markers", name="true value",
        marker={"symbol": "x-thin", "size": 18, "line": {"width": 3, "color": _RED}, "color": _RED},
        text=fmt.nums(truth["true_value"], 3), hovertemplate="true value %{text}<extra></extra>",
    ))
    t = est.truth
    fig.add_trace(go.Scatter(
        x=[t.between_expected], y=[labels[2]], mode="markers",
        name=f"what the between term recovers with ~{t.sessions_used} sessions (large-sample value)",
        marker={"symbol": "diamond-open", "size": 15, "line": {"width": 2}, "color": _GREY},
        hovertemplate="what the model recovers on average with this many sessions: "
                      + fmt.num(t.between_expected, 3) + "<extra></extra>",
    ))
    tot_hi = f.loc[0, "ci_high"]
    fig.add_annotation(x=tot_hi if np.isfinite(tot_hi) else 0, y=labels[0], text="  (no single true value)",
                       showarrow=False, xanchor="left", font={"color": _GREY, "size": 11})
    fig.add_vline(x=0, line={"color": "#a0aec0", "width": 1})
    xs = np.r_[f[["ci_low", "ci_high", "true_value"]].to_numpy(float).ravel(), t.between_expected, 0.0]
    xs = xs[np.isfinite(xs)]
    lo, hi = float(xs.min()), float(xs.max())
    pad = max(0.1, 0.15 * (hi - lo))
    fig.update_xaxes(range=[lo - pad, hi + pad], zeroline=False,
                     title_text=("Change in next-session symptoms (higher = more severe) per 1 unit stronger "
                                 "alliance<br>← below 0: stronger alliance, then fewer symptoms · above 0: "
                                 "then more symptoms →"))
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Estimates (dot, 95% CI) against the truth (✕)", height=380,
                      margin={"t": 60, "l": 10, "r": 20, "b": 100},
                      legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1, "xanchor": "right"})
    return fig


#: points drawn per scatter panel at most (a random, seeded subset beyond it): a browser draws a few hundred
#: points at once, 300 patients × 10 sessions (2,700 pairs) took 0.2 s, and 5,000 × 60 would stall it
MAX_POINTS = 800


def _shown(frame: pd.DataFrame, what: str, max_points: int, seed: int = 0) -> tuple[pd.DataFrame, str]:
    """``frame`` itself, or a seeded random ``max_points`` of its rows (in their order) and the words that say so."""
    if len(frame) <= max_points:
        return frame, ""
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=max_points, replace=False))
    return frame.iloc[keep], f"<br><sup>{fmt.count(max_points)} of {fmt.count(len(frame))} {what} shown (random)</sup>"


def scatter_figure(summary: ScatterSummary, max_points: int = MAX_POINTS) -> go.Figure:
    """Two panels: person means with the between OLS line; within deviations (alliance at t
    vs symptoms at t + 1, both minus the patient's own mean) with the within OLS line.

    Each panel draws at most ``max_points`` points (a seeded random subset, said in its title); the
    slopes and the lines are those of all the data (``summary``)."""
    pm_all, wp_all = summary.persons, summary.pairs
    pm, pm_note = _shown(pm_all, "patients", max_points)
    wp, wp_note = _shown(wp_all, "pairs", max_points)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.16, subplot_titles=(
        f"Between patients · slope {_signed(summary.between_slope)}{pm_note}",
        f"Within patients · slope {_signed(summary.within_slope)}{wp_note}",
    ))
    fig.add_trace(go.Scatter(
        x=pm["mean_alliance"], y=pm["mean_symptoms"], mode="markers", name="patient averages",
        marker={"color": _ORANGE, "size": 6, "opacity": 0.6},
        customdata=np.column_stack([pm["patient"].astype(str), fmt.nums(pm["mean_alliance"]),
                                    fmt.nums(pm["mean_symptoms"])]),
        hovertemplate="patient %{customdata[0]}<br>average alliance %{customdata[1]}<br>average symptoms "
                      "%{customdata[2]}<extra></extra>",
    ), row=1, col=1)
    fig.add_trace(go.Scatter(
        x=wp["alliance_dev"], y=wp["symptoms_next_dev"], mode="markers", name="session pairs (deviations)",
        marker={"color": _BLUE, "size": 4, "opacity": 0.35},
        customdata=np.column_stack([fmt.nums(wp["alliance_dev"], sign=True),
                                    fmt.nums(wp["symptoms_next_dev"], sign=True)]),
        hovertemplate="alliance vs own average %{customdata[0]}<br>next-session symptoms vs own average "
                      "%{customdata[1]}<extra></extra>",
    ), row=1, col=2)
    for col, x, y, slope, color, name in (  # (the lines span all the data, not only the points shown)
        (1, pm_all["mean_alliance"], pm_all["mean_symptoms"], summary.between_slope, _ORANGE, "between slope"),
        (2, wp_all["alliance_dev"], wp_all["symptoms_next_dev"], summary.within_slope, _BLUE, "within slope"),
    ):
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() >= 2 and np.isfinite(slope):
            xl = np.array([x[ok].min(), x[ok].max()])
            yl = y[ok].mean() + slope * (xl - x[ok].mean())
            fig.add_trace(go.Scatter(x=xl, y=yl, mode="lines", showlegend=False, hoverinfo="skip",
                                     line={"color": "black", "width": 5}), row=1, col=col)
            fig.add_trace(go.Scatter(x=xl, y=yl, mode="lines", name=f"{name} {_signed(slope)}",
                                     line={"color": color, "width": 3},
                                     hovertemplate=f"{name} {fmt.num(slope, 3)}<extra></extra>"), row=1, col=col)
    fig.update_xaxes(title_text="Patient's average alliance (higher = stronger)", row=1, col=1)
    fig.update_yaxes(title_text="Patient's average symptoms (higher = more severe)", row=1, col=1)
    fig.update_xaxes(title_text="Alliance at session t minus own average<br>(right = stronger than usual)",
                     zeroline=True, row=1, col=2)
    fig.update_yaxes(title_text="Symptoms at session t+1 minus own average<br>(up = more severe than usual)",
                     zeroline=True, row=1, col=2)
    fig.update_layout(title="The same patients seen at two levels", height=470,
                      margin={"t": 80, "l": 70, "r": 20, "b": 90},
                      legend={"orientation": "h", "y": -0.3})
    return fig


def nickell_figure(curve: pd.DataFrame, rho: float) -> go.Figure:
    """Estimated minus true autoregression against sessions per patient (``nickell_curve``), with
    its approximation −(1 + ρ)/(T − 1) for T = pairs per patient (solid, METHODS §5) and for
    T = sessions (dotted, hidden at first), and the within alliance → symptoms bias."""
    c = curve.sort_values("sessions")
    fig = go.Figure()
    fig.add_hline(y=0, line={"color": "#a0aec0", "width": 1})
    fig.add_trace(go.Scatter(
        x=c["sessions"], y=c["approx"], mode="lines", line={"color": _RED, "width": 2},
        name="approximation −(1 + ρ)/(T − 1), T = session pairs per patient (sessions − 1)",
        text=fmt.nums(c["approx"], 3), hovertemplate="%{x} sessions: %{text}<extra></extra>",
    ))
    fig.add_trace(go.Scatter(
        x=c["sessions"], y=c["approx_sessions"], mode="lines", line={"color": _RED, "width": 1, "dash": "dot"},
        name="the same formula with sessions instead of pairs (a common slip)", visible="legendonly",
        text=fmt.nums(c["approx_sessions"], 3), hovertemplate="%{x} sessions: %{text}<extra></extra>",
    ))
    fig.add_trace(go.Scatter(
        x=c["sessions"], y=c["bias"], mode="lines+markers", marker={"size": 9, "color": _BLUE},
        line={"color": _BLUE}, name="simulated: autoregression estimate − true ρ",
        customdata=np.column_stack([fmt.nums(c["estimate"], 3), fmt.nums(c["bias"], 3)]),
        hovertemplate="%{x} sessions: estimate %{customdata[0]}, bias %{customdata[1]}<extra></extra>",
    ))
    fig.add_trace(go.Scatter(
        x=c["sessions"], y=c["within_bias"], mode="lines+markers", marker={"size": 6, "color": _GREY},
        line={"color": _GREY, "dash": "dash"}, name="simulated: within alliance → symptoms estimate − its true value",
        text=fmt.nums(c["within_bias"], 3), hovertemplate="%{x} sessions: bias %{text}<extra></extra>",
    ))
    fig.update_xaxes(title_text="Sessions per patient (T = sessions − 1 pairs)", dtick=1)
    fig.update_yaxes(title_text="Estimate − truth<br>(below 0 = underestimated)")
    fig.update_layout(title=f"Nickell bias of the person-mean-centered prior symptoms (true ρ = {fmt.num(rho)})",
                      height=440, margin={"t": 60, "l": 70, "r": 20, "b": 60},
                      legend={"orientation": "h", "y": -0.22})
    return fig


def latent_figure(table: pd.DataFrame) -> go.Figure:
    """The alliance → symptoms estimate and 95% CI of each model in
    :func:`analysis.teaching.latent_estimates`, with the true value as a dashed line."""
    est = table["estimate"].to_numpy(float)
    colors = [_ORANGE if m.startswith("Person-mean") else _GREEN for m in table["model"]]
    fig = go.Figure(go.Scatter(
        x=est, y=list(table["model"]), mode="markers", marker={"size": 12, "color": colors},
        error_x={"type": "data", "symmetric": False, "array": table["ci_high"].to_numpy(float) - est,
                 "arrayminus": est - table["ci_low"].to_numpy(float)},
        customdata=fmt.nums(est, 3, sign=True), hovertemplate="%{y}: %{customdata}<extra></extra>",
        showlegend=False,
    ))
    truth = float(table["true_value"].iloc[0])
    fig.add_vline(x=truth, line={"color": _GREY, "dash": "dash"},
                  annotation_text=f"true effect {_signed(truth)}", annotation_position="top")
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="alliance → next-session symptoms (raw units, 95% CI)")
    fig.update_layout(title="Person-mean LMM vs latent-centred models", height=330,
                      margin={"t": 70, "l": 190, "r": 20, "b": 60})
    return fig
