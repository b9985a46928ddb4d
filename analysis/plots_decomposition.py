"""Figures for :mod:`analysis.decomposition` (METHODS §12). Pure plotly builders that draw a
:class:`~analysis.decomposition.DecompositionResult`; nothing is refitted here.

* :func:`person_means_figure` — one dot per patient (person mean of the predictor vs
  person mean of the outcome) with the between model's stored OLS line.
* :func:`trio_figure` — the key coefficient of the total, within and between models with
  their confidence intervals, side by side.
"""

from __future__ import annotations

import html

import numpy as np
import plotly.graph_objects as go

from analysis import formatting as fmt
from analysis.plot_style import WHITE

__all__ = ["person_means_figure", "trio_figure"]

_BLUE, _ORANGE, _GREY = "#2b6cb0", "#dd6b20", "#718096"
_KEY = (("total", "predictor", "Total"), ("within", "within", "Within patients"),
        ("between", "between", "Between patients"))


def _scale(result) -> str:
    return "z-score" if result.standardize else "raw score"


def person_means_figure(result) -> go.Figure:
    """Person means of predictor (x) and outcome (y) with the between line ``result.between_line``."""
    pm = result.person_means
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=pm["x_mean"], y=pm["y_mean"], mode="markers", name="patients",
        marker={"color": _BLUE, "size": 7, "opacity": 0.6},
        text=[html.escape(str(p)) for p in pm["patient"]],
        customdata=np.column_stack([fmt.nums(pm["x_mean"]), fmt.nums(pm["y_mean"])]),
        hovertemplate="%{text}<br>mean " + result.predictor + " %{customdata[0]}<br>mean " + result.outcome
        + " %{customdata[1]}<extra></extra>",
    ))
    a, b = result.between_line
    if len(pm) and np.isfinite(a) and np.isfinite(b):
        xs = np.array([pm["x_mean"].min(), pm["x_mean"].max()])
        fig.add_trace(go.Scatter(x=xs, y=a + b * xs, mode="lines", name="between model (OLS)",
                                 line={"color": _ORANGE, "width": 3}))
    fig.update_layout(
        title=f"Between patients: person means ({html.escape(result.study)})",
        xaxis_title=f"mean {result.predictor} of the patient ({_scale(result)})",
        yaxis_title=f"mean {result.outcome} of the patient ({_scale(result)})",
        template=WHITE, height=420, legend={"orientation": "h", "y": -0.2},
    )
    return fig


def trio_figure(result) -> go.Figure:
    """Estimate and CI of the total, within and between coefficients (``result.coef``)."""
    labels, est, lo, hi = [], [], [], []
    for model, term, label in _KEY:
        try:
            c = result.coef(model, term)
        except KeyError:
            continue
        labels.append(label)
        est.append(c["estimate"])
        lo.append(c["ci_low"])
        hi.append(c["ci_high"])
    est, lo, hi = np.asarray(est), np.asarray(lo), np.asarray(hi)
    fig = go.Figure(go.Scatter(
        x=est, y=labels, mode="markers", marker={"color": _BLUE, "size": 10},
        error_x={"type": "data", "symmetric": False, "array": hi - est, "arrayminus": est - lo},
        customdata=[fmt.estimate_ci(e, a, b) for e, a, b in zip(est, lo, hi)],
        hovertemplate="%{y}: %{customdata}<extra></extra>", showlegend=False,
    ))
    fig.add_vline(x=0, line={"color": _GREY, "dash": "dot"})
    fig.update_layout(
        title=f"{result.predictor} → {result.outcome}: total, within and between effects",
        xaxis_title=f"coefficient ({_scale(result)}s), 95% CI", template=WHITE, height=300,
        yaxis={"autorange": "reversed"},
    )
    return fig
