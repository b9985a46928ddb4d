"""Figures of the latent-centred dynamic models (``docs/METHODS.md`` §15): they draw result objects only.

* :func:`estimator_comparison_figure` — the pooled forest of one direction under each stage-1 estimator
  (hybrid LMM, RI-CLPM, DPM), panels side by side sharing the study rows (the one forest builder,
  :func:`analysis.plots_meta.forest_panels_figure`).
* :func:`estimator_check_figure` — bias and 95% CI coverage of each estimator from
  :func:`analysis.estimator_check.estimator_check`.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis import formatting as F
from analysis.export import plotly_text
from analysis.plots_meta import forest_panels_figure, meta_panel

__all__ = ["estimator_check_figure", "estimator_comparison_figure"]

_ARROW = {"alliance_to_symptoms": "Alliance \u2192 next-session symptoms",
          "symptoms_to_alliance": "Symptoms \u2192 next-session alliance"}
_BLUE, _RED, _GREY = "#1f77b4", "#d62728", "#7f7f7f"


def estimator_comparison_figure(results: dict, direction: str = "alliance_to_symptoms",
                                xlabel: str = "Within-patient lagged effect"):
    """Forest panels of ``direction``, one per stage-1 estimator: ``results`` maps a panel title (e.g.
    "Hybrid LMM", "RI-CLPM", "DPM") to an :class:`analysis.twostage.TwoStageResult`. Estimators
    without a pooled result for the direction are left out (ValueError when none has one)."""
    used = [(title, r.pooled[direction]) for title, r in results.items() if direction in r.pooled]
    panels = [meta_panel(m, title, f"p{i}") for i, (title, m) in enumerate(used)]
    if not panels:
        raise ValueError(f"No estimator has a pooled result for {direction!r}.")
    # three panels side by side: no per-panel estimate and weight columns (they would leave each panel
    # ~60 px wide on screen); the pooled estimates are written under the panels, the per-study numbers
    # are in the hover and in the per-study table
    letters = [chr(ord("A") + i) for i in range(len(used))]
    pooled = "; ".join(f"{a} ({t}) {F.estimate_ci(m.estimate, m.ci_low, m.ci_high)}"
                       for a, (t, m) in zip(letters, used))
    return forest_panels_figure(panels, xlabel, f"Estimator comparison: {_ARROW.get(direction, direction)}",
                                0.0, "Pooled estimate", show_pairs=False, estimate_columns=False,
                                notes=[f"Pooled estimate [95% CI]: {pooled}"])


def estimator_check_figure(check) -> go.Figure:
    """Per direction: each estimator's mean estimate with the middle 95% of its estimates over the
    simulated data sets, the true value (the fitted RI-CLPM's) as a dashed line, and the CI coverage as
    text. Red: |relative bias| > 20% or coverage < 90%."""
    t = check.table
    draws = check.draws
    dirs = [d for d in _ARROW if d in set(t["direction"])]
    # the true value goes into the panel title (an annotation at the top of the dashed line collides with it)
    titles = []
    for d in dirs:
        tv = t.loc[t["direction"] == d, "truth"]
        tv = float(tv.iloc[0]) if len(tv) else np.nan
        titles.append(plotly_text(_ARROW[d]) + (f"<br>truth {plotly_text(F.signed(tv, 3))} (dashed line)"
                                                if np.isfinite(tv) else ""))
    fig = make_subplots(rows=1, cols=len(dirs), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=titles)
    bad = set(zip(check.biased()["estimator"], check.biased()["direction"]))
    for c, d in enumerate(dirs, start=1):
        rows = t[t["direction"] == d]
        labels = list(rows["label"])
        lo, hi = [], []
        for est in rows["estimator"]:
            x = draws[(draws["estimator"] == est) & (draws["direction"] == d)]["estimate"].dropna()
            lo.append(float(np.quantile(x, 0.025)) if len(x) else np.nan)
            hi.append(float(np.quantile(x, 0.975)) if len(x) else np.nan)
        m = rows["mean_estimate"].to_numpy(float)
        colors = [_RED if (e, d) in bad else _BLUE for e in rows["estimator"]]
        text = [f"bias {F.signed(b, 3)} ({F.percent(rb)}), coverage {F.percent(cv)}"
                for b, rb, cv in zip(rows["bias"], rows["relative_bias"], rows["coverage"])]
        fig.add_trace(go.Scatter(
            x=m, y=labels, mode="markers+text", marker={"size": 11, "color": colors},
            error_x={"type": "data", "symmetric": False, "array": np.array(hi) - m, "arrayminus": m - np.array(lo)},
            text=[plotly_text(s) for s in text], textposition="top center", textfont={"size": 11},
            customdata=F.nums(m, 3, sign=True), hovertemplate="%{y}: mean %{customdata}<extra></extra>",
            showlegend=False,
        ), row=1, col=c)
        truth = float(rows["truth"].iloc[0]) if len(rows) else np.nan
        if np.isfinite(truth):
            fig.add_vline(x=truth, line={"color": _GREY, "dash": "dash"}, row=1, col=c)
        fig.update_xaxes(title_text="estimate (95% of simulated estimates)", row=1, col=c)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=140 + 60 * max(1, t["estimator"].nunique()),
                      margin={"t": 105, "l": 140, "r": 20, "b": 60},
                      title=plotly_text(f"Estimator check: {check.n_sim} data sets like {check.study}"))
    return fig
