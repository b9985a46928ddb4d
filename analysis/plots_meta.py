"""Figures for stage-2 meta-analysis (METHODS §6). Pure functions returning
plotly figures; nothing here computes statistics beyond what
:mod:`analysis.meta` returns (per-study CIs are ``y +/- z sqrt(v)``, normal
theory, as in metafor's forest plot).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy import special

from .meta import METHOD_NAMES, MetaResult, _check_effects, _fmt, _fmt_p

__all__ = ["forest_plot", "funnel_plot", "leave_one_out_plot", "paired_forest_plot"]

_ROW_PX = 26
_MAX_MARKER = 18.0
_MIN_MARKER = 4.0
_STUDY_COLOR = "#1f4e79"
_POOLED_COLOR = "#b22222"
_PI_COLOR = "#555555"
_LABEL_CHARS = 34


def _short(label: str, n: int = _LABEL_CHARS) -> str:
    return label if len(label) <= n else label[: n - 1] + "\u2026"


def _count(x: float) -> str:
    if x is None or not math.isfinite(x):
        return ""
    return f"{round(x)}"


def _interval(lo: float, hi: float, digits: int = 2) -> str:
    return f"[{_fmt(lo, digits)}, {_fmt(hi, digits)}]"


def _marker_sizes(weights: np.ndarray) -> np.ndarray:
    """Marker size (diameter, px) with area proportional to the weight."""
    w = np.asarray(weights, float)
    if w.size == 0 or not np.isfinite(w).any() or np.nanmax(w) <= 0:
        return np.full(w.size, _MAX_MARKER)
    return np.maximum(_MAX_MARKER * np.sqrt(w / np.nanmax(w)), _MIN_MARKER)


def _model_label(res: MetaResult) -> str:
    if res.k == 1:
        return "No pooling (k = 1)"
    kind = "FE model" if res.method == "FE" else "RE model"
    test = "z" if res.test == "z" else "Knapp\u2013Hartung t"
    return f"{kind} ({res.method}, {test})"


def _heterogeneity_text(res: MetaResult, compact: bool = False) -> str:
    """Two lines (three if ``compact``): tau2 [CI], I2, H2, Q test; the
    estimator and the test."""
    if res.k == 1:
        return "Heterogeneity: not estimable (k = 1)<br>No pooling: the single study is shown"
    parts = []
    if res.method != "FE":
        tau = f"\u03c4\u00b2 = {_fmt(res.tau2, 3)}"
        if math.isfinite(res.tau2_ci_low) and math.isfinite(res.tau2_ci_high):
            tau += f" {_interval(res.tau2_ci_low, res.tau2_ci_high, 3)}"
        parts.append(tau)
    parts.append(f"I\u00b2 = {_fmt(res.i2, 1)}%")
    parts.append(f"H\u00b2 = {_fmt(res.h2, 2)}")
    parts.append(f"Q({res.q_df}) = {_fmt(res.q, 2)}, {_fmt_p(res.q_pvalue)}")
    test = "z-test" if res.test == "z" else f"Knapp\u2013Hartung t-test (df = {int(res.df)})"
    line2 = f"Estimator: {res.method} ({METHOD_NAMES[res.method]}); test: {test}; k = {res.k}"
    if compact:
        half = 2 if res.method != "FE" else 1
        return ("Heterogeneity: " + ", ".join(parts[:half]) + "<br>" + ", ".join(parts[half:])
                + "<br>" + line2)
    return "Heterogeneity: " + ", ".join(parts) + "<br>" + line2


def _study_ci(res: MetaResult) -> tuple[np.ndarray, np.ndarray]:
    crit = float(special.ndtri(1.0 - (1.0 - res.level) / 2.0))
    se = np.sqrt(np.asarray(res.vi, float))
    return res.yi - crit * se, res.yi + crit * se


def _row_order(results: Sequence[MetaResult]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()
    for res in results:
        if len(set(res.labels)) != len(res.labels):
            dup = sorted({x for x in res.labels if res.labels.count(x) > 1})
            raise ValueError(
                f"Study labels must be unique to align rows; repeated: {', '.join(dup[:5])}."
            )
        for lab in res.labels:
            if lab not in seen:
                seen.add(lab)
                order.append(lab)
    return order


def _x_range(results: Sequence[MetaResult], null_value: float | None) -> list[float]:
    vals: list[float] = []
    for res in results:
        lo, hi = _study_ci(res)
        vals.extend(lo.tolist())
        vals.extend(hi.tolist())
        vals.extend([res.ci_low, res.ci_high, res.pi_low, res.pi_high])
    if null_value is not None:
        vals.append(null_value)
    arr = np.array([x for x in vals if x is not None and math.isfinite(x)])
    if arr.size == 0:
        return [-1.0, 1.0]
    lo, hi = float(arr.min()), float(arr.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    return [lo - pad, hi + pad]


def _forest_figure(
    results: Sequence[MetaResult],
    panel_titles: Sequence[str | None],
    xlabel: str,
    title: str | None,
    null_value: float | None,
) -> go.Figure:
    order = _row_order(results)
    n = len(order)
    y_of = {lab: float(n - i) for i, lab in enumerate(order)}
    y_header = n + 1.2
    y_pooled = -0.6
    y_pi = -1.6
    paired = len(results) > 1
    y_het = -3.1 if paired else -2.9
    npanel = len(results)
    ncols = 1 + 2 * npanel
    if paired:
        widths = [0.26] + [0.22, 0.15] * npanel
    else:
        widths = [0.32, 0.43, 0.25]
    fig = make_subplots(rows=1, cols=ncols, shared_yaxes=True, horizontal_spacing=0.006,
                        column_widths=widths)

    # ------------------------------------------------------------ label column
    npat: dict[str, float] = {}
    for res in results:
        if res.n_patients is not None:
            for lab, x in zip(res.labels, res.n_patients):
                if math.isfinite(float(x)):
                    npat.setdefault(lab, float(x))
    # N pairs per direction; in a paired plot "a / b" when the directions differ
    pair_counts: list[dict[str, float]] = []
    for res in results:
        cnt: dict[str, float] = {}
        if res.n_pairs is not None:
            cnt = {lab: float(x) for lab, x in zip(res.labels, res.n_pairs) if math.isfinite(float(x))}
        pair_counts.append(cnt)
    npairs: dict[str, str] = {}
    differ = False
    for lab in order:
        vals = [c[lab] for c in pair_counts if lab in c]
        if not vals:
            continue
        if paired and len(vals) == 2 and vals[0] != vals[1]:
            differ = True
            npairs[lab] = f"{_count(vals[0])} / {_count(vals[1])}"
        else:
            npairs[lab] = _count(vals[0])
    ys = [y_of[lab] for lab in order]
    fig.add_trace(go.Scatter(
        x=[0.0] * n, y=ys, mode="text", text=[_short(lab) for lab in order],
        hovertext=order, hoverinfo="text", textposition="middle right",
        name="Study labels", showlegend=False, cliponaxis=False,
    ), row=1, col=1)
    head_x, head_t, head_pos = [0.0], ["<b>Study</b>"], ["middle right"]
    if npat:
        x_pat = 0.80 if npairs else 0.97
        fig.add_trace(go.Scatter(
            x=[x_pat] * n, y=ys, mode="text", text=[_count(npat.get(lab, np.nan)) for lab in order],
            textposition="middle left", name="N patients", showlegend=False, cliponaxis=False,
            hoverinfo="skip",
        ), row=1, col=1)
        head_x.append(x_pat)
        head_t.append("<b>N patients</b>")
        head_pos.append("middle left")
    if npairs:
        fig.add_trace(go.Scatter(
            x=[0.99] * n, y=ys, mode="text", text=[npairs.get(lab, "") for lab in order],
            textposition="middle left", name="N pairs", showlegend=False, cliponaxis=False,
            hoverinfo="skip",
        ), row=1, col=1)
        head_x.append(0.99)
        head_t.append("<b>N pairs (A / B)</b>" if differ else "<b>N pairs</b>")
        head_pos.append("middle left")
    pooled_label = _model_label(results[0]) if not paired else "Pooled estimate"
    pct = f"{100 * results[0].level:g}%"
    fig.add_trace(go.Scatter(
        x=[0.0, 0.0], y=[y_pooled, y_pi], mode="text",
        text=[f"<b>{pooled_label}</b>", f"{pct} prediction interval"],
        textposition="middle right", name="Summary labels", showlegend=False,
        cliponaxis=False, hoverinfo="skip",
    ), row=1, col=1)
    fig.add_trace(go.Scatter(
        x=head_x, y=[y_header] * len(head_x), mode="text", text=head_t,
        textposition=head_pos, name="Headers", showlegend=False, cliponaxis=False,
        hoverinfo="skip",
    ), row=1, col=1)

    xr = _x_range(results, null_value)
    for p, res in enumerate(results):
        col_f = 2 + 2 * p
        col_t = col_f + 1
        suffix = f" ({panel_titles[p]})" if paired and panel_titles[p] else ""
        lo, hi = _study_ci(res)
        sizes = _marker_sizes(res.weights)
        rows = np.array([y_of[lab] for lab in res.labels])
        hover = [
            f"{lab}<br>{_fmt(y_)} {_interval(a, b)}<br>weight {_fmt(w_, 1)}%"
            + (f"<br>N pairs {_count(pair_counts[p][lab])}" if lab in pair_counts[p] else "")
            for lab, y_, a, b, w_ in zip(res.labels, res.yi, lo, hi, res.weights)
        ]
        fig.add_trace(go.Scatter(
            x=np.asarray(res.yi, float), y=rows, mode="markers", name="Studies" + suffix,
            marker={"symbol": "square", "size": sizes, "color": _STUDY_COLOR},
            error_x={"type": "data", "symmetric": False, "array": hi - res.yi,
                         "arrayminus": res.yi - lo, "color": _STUDY_COLOR, "thickness": 1.2, "width": 0},
            hovertext=hover, hoverinfo="text", showlegend=False,
            customdata=np.asarray(res.weights, float),
        ), row=1, col=col_f)
        h = 0.38
        fig.add_trace(go.Scatter(
            x=[res.ci_low, res.estimate, res.ci_high, res.estimate, res.ci_low],
            y=[y_pooled, y_pooled + h, y_pooled, y_pooled - h, y_pooled],
            mode="lines", fill="toself", fillcolor=_POOLED_COLOR,
            line={"color": _POOLED_COLOR, "width": 1}, name="Pooled estimate" + suffix,
            hovertext=f"Pooled {_fmt(res.estimate)} {_interval(res.ci_low, res.ci_high)}",
            hoverinfo="text", showlegend=False,
        ), row=1, col=col_f)
        if math.isfinite(res.pi_low) and math.isfinite(res.pi_high):
            fig.add_trace(go.Scatter(
                x=[res.pi_low, res.pi_high], y=[y_pi, y_pi], mode="lines+markers",
                line={"color": _PI_COLOR, "width": 2},
                marker={"symbol": "line-ns-open", "size": 10, "color": _PI_COLOR},
                name="Prediction interval" + suffix,
                hovertext=f"{pct} prediction interval {_interval(res.pi_low, res.pi_high)}",
                hoverinfo="text", showlegend=False,
            ), row=1, col=col_f)
        xref = "x" if col_f == 1 else f"x{col_f}"
        if null_value is not None:
            fig.add_shape(type="line", x0=null_value, x1=null_value, xref=xref,
                          y0=y_pi - 0.6, y1=n + 0.6, yref="y",
                          line={"color": "#999999", "width": 1}, name="null line")
        fig.add_shape(type="line", x0=res.estimate, x1=res.estimate, xref=xref,
                      y0=y_pooled, y1=n + 0.5, yref="y",
                      line={"color": _POOLED_COLOR, "width": 1, "dash": "dot"},
                      name="pooled line")
        # right-hand text column: estimate [CI] and weight
        est_txt = [
            f"{_fmt(y_)} {_interval(a, b)}" for y_, a, b in zip(res.yi, lo, hi)
        ]
        wt_txt = [f"{_fmt(w_, 1)}%" for w_ in res.weights]
        fig.add_trace(go.Scatter(
            x=[0.02] * len(rows) + [0.02, 0.02],
            y=list(rows) + [y_pooled, y_pi],
            mode="text",
            text=est_txt + [
                f"<b>{_fmt(res.estimate)} {_interval(res.ci_low, res.ci_high)}</b>",
                _interval(res.pi_low, res.pi_high) if math.isfinite(res.pi_low) else "",
            ],
            textposition="middle right", name="Estimates" + suffix, showlegend=False,
            cliponaxis=False, hoverinfo="skip",
        ), row=1, col=col_t)
        x_w = 0.99
        fig.add_trace(go.Scatter(
            x=[x_w] * len(rows), y=list(rows), mode="text", text=wt_txt,
            textposition="middle left", name="Weights" + suffix, showlegend=False,
            cliponaxis=False, hoverinfo="skip",
        ), row=1, col=col_t)
        heads = [f"<b>Estimate [{pct} CI]</b>", "<b>Weight</b>"]
        hx = [0.02, x_w]
        hpos = ["middle right", "middle left"]
        fig.add_trace(go.Scatter(
            x=hx, y=[y_header] * len(hx), mode="text", text=heads, textposition=hpos,
            name="Headers" + suffix, showlegend=False, cliponaxis=False, hoverinfo="skip",
        ), row=1, col=col_t)
        fig.add_annotation(
            text=_heterogeneity_text(res, compact=paired), x=0.0,
            xref=f"{xref} domain" if paired else "x domain", y=y_het, yref="y",
            xanchor="left", yanchor="middle", align="left", showarrow=False,
            font={"size": 11}, name="heterogeneity",
        )
        if paired and panel_titles[p]:
            fig.add_annotation(
                text=f"<b>{panel_titles[p]}</b>", x=0.5, xref=f"{xref} domain", y=1.0,
                yref="paper", yanchor="bottom", showarrow=False, font={"size": 13},
                name="panel title",
            )
        xaxis = "xaxis" if col_f == 1 else f"xaxis{col_f}"
        fig.layout[xaxis].update(title_text=xlabel, range=xr, zeroline=False,
                                 showgrid=True, gridcolor="#eeeeee")
        fig.layout[f"xaxis{col_t}"].update(visible=False, range=[0, 1], fixedrange=True)
    fig.layout["xaxis"].update(visible=False, range=[0, 1], fixedrange=True)
    fig.update_yaxes(visible=False, range=[y_het - (1.3 if paired else 0.9), y_header + 0.8],
                     fixedrange=True)
    height = int(_ROW_PX * (n + 6) + 120)
    fig.update_layout(
        title={"text": title} if title else None,
        height=height,
        showlegend=False,
        plot_bgcolor="white",
        margin={"l": 20, "r": 20, "t": 70 if (title or paired) else 30, "b": 60},
        font={"size": 12},
        meta={"rows": order, "y_pooled": y_pooled, "y_pi": y_pi},
    )
    return fig


def forest_plot(
    result: MetaResult,
    title: str | None = None,
    xlabel: str = "Effect size",
    null_value: float | None = 0.0,
) -> go.Figure:
    """Forest plot of a :class:`~analysis.meta.MetaResult`.

    One row per study (label, N patients and N pairs when the result has
    them, the effect with its normal-theory CI ``y +/- z sqrt(v)``, a square
    whose area is proportional to the study's weight, "estimate [CI]" and
    weight in percent), the pooled diamond (CI of the pooled estimate), the
    prediction interval bar, and a line of heterogeneity statistics (tau2
    with its Q-profile CI, I2, H2, Q test) naming the estimator and the test.
    ``xlabel`` labels the x axis; ``null_value`` draws a reference line
    (None for none).
    """
    if not isinstance(result, MetaResult):
        raise ValueError("forest_plot needs a MetaResult from analysis.meta.random_effects.")  # noqa: TRY004
    return _forest_figure([result], [None], xlabel, title, null_value)


def paired_forest_plot(
    result_a: MetaResult,
    result_b: MetaResult,
    titles: Sequence[str] = ("Alliance \u2192 symptoms", "Symptoms \u2192 alliance"),
    xlabel: str = "Effect size",
    title: str | None = None,
    null_value: float | None = 0.0,
) -> go.Figure:
    """Two forest panels side by side (e.g. alliance -> symptoms beside
    symptoms -> alliance) sharing one study column, so that the same study is
    on the same row in both. A study present in only one result is an empty
    row in the other panel. Both panels share the x range. Each panel has its
    own pooled diamond, prediction interval and heterogeneity line.
    """
    if not isinstance(result_a, MetaResult) or not isinstance(result_b, MetaResult):
        raise ValueError("paired_forest_plot needs two MetaResult objects.")  # noqa: TRY004
    titles = list(titles)
    if len(titles) != 2:
        raise ValueError("titles must hold two panel titles.")
    return _forest_figure([result_a, result_b], titles, xlabel, title, null_value)


def funnel_plot(
    yi: Any,
    vi: Any,
    result: MetaResult,
    xlabel: str = "Effect size",
    title: str | None = None,
    labels: Sequence[str] | None = None,
) -> go.Figure:
    """Funnel plot: effects against their standard errors (SE axis reversed,
    0 at the top), with the pooled estimate as a vertical line and the pseudo
    confidence region ``estimate +/- z_{1-alpha/2} SE`` (metafor ``funnel``
    default, without tau2) as a shaded triangle.
    """
    if not isinstance(result, MetaResult):
        raise ValueError("funnel_plot needs a MetaResult for the pooled estimate.")  # noqa: TRY004
    if labels is None and len(result.labels) == len(np.atleast_1d(yi)):
        labels = list(result.labels)
    y, v, lab = _check_effects(yi, vi, labels)
    se = np.sqrt(v)
    crit = float(special.ndtri(1.0 - (1.0 - result.level) / 2.0))
    se_max = float(se.max()) * 1.1 if se.size else 1.0
    est = result.estimate
    pct = f"{100 * result.level:g}%"
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[est - crit * se_max, est, est + crit * se_max, est - crit * se_max],
        y=[se_max, 0.0, se_max, se_max], mode="lines", fill="toself",
        fillcolor="rgba(180,180,180,0.25)", line={"color": "#aaaaaa", "width": 1, "dash": "dot"},
        name=f"Pseudo {pct} CI region", hoverinfo="skip",
    ))
    fig.add_trace(go.Scatter(
        x=[est, est], y=[0.0, se_max], mode="lines", line={"color": _POOLED_COLOR, "width": 1.5},
        name=f"Pooled estimate ({result.method})",
    ))
    fig.add_trace(go.Scatter(
        x=y, y=se, mode="markers", marker={"color": _STUDY_COLOR, "size": 8},
        name="Studies", hovertext=[f"{a}<br>{_fmt(b)} (SE {_fmt(c, 3)})" for a, b, c in zip(lab, y, se)],
        hoverinfo="text",
    ))
    fig.update_yaxes(title_text="Standard error", autorange="reversed", rangemode="tozero")
    fig.update_xaxes(title_text=xlabel)
    fig.update_layout(title={"text": title} if title else None, plot_bgcolor="white",
                      legend={"orientation": "h", "y": -0.2})
    return fig


def leave_one_out_plot(
    df: pd.DataFrame,
    xlabel: str = "Pooled estimate without the study",
    title: str | None = "Leave-one-out sensitivity analysis",
) -> go.Figure:
    """Forest-style plot of :func:`analysis.meta.leave_one_out`: one row per
    omitted study with the pooled estimate and CI of the remaining studies;
    a dashed line marks the all-studies estimate (``df.attrs["estimate"]``).
    """
    need = {"study", "estimate", "ci_lb", "ci_ub"}
    if not isinstance(df, pd.DataFrame) or not need <= set(df.columns):
        raise ValueError(
            "leave_one_out_plot needs the table from analysis.meta.leave_one_out "
            f"(columns {sorted(need)})."
        )
    n = len(df)
    ys = np.arange(n, 0, -1, dtype=float)
    est = df["estimate"].to_numpy(float)
    lo = df["ci_lb"].to_numpy(float)
    hi = df["ci_ub"].to_numpy(float)
    labels = [f"Without {s}" for s in df["study"].astype(str)]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=est, y=ys, mode="markers", marker={"symbol": "square", "size": 9, "color": _STUDY_COLOR},
        error_x={"type": "data", "symmetric": False, "array": hi - est, "arrayminus": est - lo,
                     "color": _STUDY_COLOR, "width": 0},
        name="Leave-one-out estimates",
        hovertext=[f"{a}: {_fmt(b)} {_interval(c, d)}" for a, b, c, d in zip(labels, est, lo, hi)],
        hoverinfo="text",
    ))
    full = df.attrs.get("estimate")
    if full is not None and math.isfinite(full):
        fig.add_trace(go.Scatter(
            x=[full, full], y=[0.4, n + 0.6], mode="lines",
            line={"color": _POOLED_COLOR, "dash": "dash", "width": 1.5},
            name=f"All studies ({_fmt(full)})",
        ))
    sub = ""
    if "method" in df.attrs:
        sub = f"{df.attrs['method']}, {'z' if df.attrs.get('test') == 'z' else 'Knapp-Hartung t'}"
    fig.update_yaxes(tickmode="array", tickvals=ys, ticktext=[_short(s, 40) for s in labels],
                     range=[0.3, n + 0.7], showgrid=False)
    fig.update_xaxes(title_text=xlabel + (f" ({sub})" if sub else ""), zeroline=True,
                     zerolinecolor="#999999")
    fig.update_layout(title={"text": title} if title else None, plot_bgcolor="white",
                      height=int(_ROW_PX * n + 160), showlegend=True,
                      legend={"orientation": "h", "y": -0.15})
    return fig
