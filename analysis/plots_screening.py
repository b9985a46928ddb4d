"""Figure of the Screening page: a new study placed on the forest plot of a
reference (the loaded collection, or an effect typed in by hand).

Pure function returning a plotly figure. Nothing is computed here beyond what
:mod:`analysis.screening` returns (the studies' normal-theory CIs, the pooled
estimate, CI and prediction interval come from :mod:`analysis.meta` via
:func:`analysis.screening.collection_reference`; inside/outside the
prediction interval from :func:`analysis.screening.place`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.screening import Effect, Reference, place

__all__ = ["NEW_COLOR", "screening_forest"]

NEW_COLOR = "#d95f02"  # orange: the screened study
_STUDY_COLOR = "#1f4e79"  # as analysis.plots_meta
_POOLED_COLOR = "#b22222"
_PI_COLOR = "#555555"
_PI_FILL = "rgba(120,120,120,0.13)"
_ROW_PX = 24
_MAX_MARKER = 14.0
_MIN_MARKER = 4.0
_LABEL_CHARS = 30


def _f(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.2f}".replace("-", "−")


def _iv(lo: float, hi: float) -> str:
    return f"[{_f(lo)}, {_f(hi)}]"


def _short(label: str, n: int = _LABEL_CHARS) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def _sizes(weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, float)
    if w.size == 0 or not np.isfinite(w).any() or np.nanmax(w) <= 0:
        return np.full(w.size, 8.0)
    return np.maximum(_MAX_MARKER * np.sqrt(np.nan_to_num(w) / np.nanmax(w)), _MIN_MARKER)


def screening_forest(
    new: Mapping[str, Effect | None],
    references: Mapping[str, Reference | None],
    titles: Mapping[str, str] | None = None,
    xlabel: str = "Lagged coefficient",
    new_label: str = "New study",
    null_value: float | None = 0.0,
    title: str | None = None,
) -> go.Figure:
    """Forest plot with the screened study highlighted, one panel per direction.

    ``new``: direction → the screened study's :class:`Effect` (None when it
    could not be fitted; its row stays empty). ``references``: direction →
    :class:`Reference` (None: the study is drawn alone). Rows, top to bottom:
    the reference's studies (blue squares, area ∝ weight, normal CI), the new
    study (orange circle with its CI), the pooled or typed-in estimate (red
    diamond spanning its CI) and the prediction interval (grey bar, also
    shaded over the whole panel). Each panel's subtitle says whether the new
    estimate lies inside the prediction interval; ``layout.meta`` carries
    ``rows``, ``y_new``, ``y_ref``, ``y_pi`` and ``inside_pi`` (direction →
    True/False/None) and the new study's trace has ``meta = {"role": "new",
    "direction": …}``.
    """
    dirs = list(new)
    if not dirs:
        raise ValueError("screening_forest needs at least one direction.")
    titles = dict(titles or {})
    # ---------------------------------------------------------------- rows
    order: list[str] = []
    for d in dirs:
        ref = references.get(d)
        for e in (ref.studies if ref is not None else ()):
            if e.label not in order:
                order.append(e.label)
    n = len(order)
    y_pi, y_ref, y_new = 0.0, 1.0, 2.3
    y_of = {lab: 3.5 + (n - 1 - i) for i, lab in enumerate(order)}
    y_top = 3.5 + n - 0.4 if n else y_new + 0.6
    any_ref = any(references.get(d) is not None for d in dirs)
    first_ref = next((references[d] for d in dirs if references.get(d) is not None), None)
    pct = f"{100 * (first_ref.level if first_ref else 0.95):g}%"

    fig = make_subplots(rows=1, cols=len(dirs), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[" "] * len(dirs))
    # ---------------------------------------------------------------- x range (shared)
    vals: list[float] = []
    for d in dirs:
        e, ref = new.get(d), references.get(d)
        if e is not None:
            vals += [e.estimate, e.ci_low, e.ci_high]
        if ref is not None:
            vals += [ref.estimate, ref.ci_low, ref.ci_high, ref.pi_low, ref.pi_high]
            for s in ref.studies:
                vals += [s.ci_low, s.ci_high]
    if null_value is not None:
        vals.append(null_value)
    arr = np.array([v for v in vals if v is not None and math.isfinite(v)])
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (-1.0, 1.0)
    pad = 0.06 * (hi - lo) if hi > lo else 0.5
    xr = [lo - pad, hi + pad]

    inside: dict[str, bool | None] = {}
    for p, d in enumerate(dirs):
        col = p + 1
        xref = "x" if col == 1 else f"x{col}"
        yref = "y" if col == 1 else f"y{col}"
        e, ref = new.get(d), references.get(d)
        legend = p == 0
        # shaded prediction interval behind everything
        if ref is not None and ref.has_pi:
            fig.add_shape(type="rect", x0=ref.pi_low, x1=ref.pi_high, xref=xref, y0=y_pi - 0.5, y1=y_top,
                          yref=yref, fillcolor=_PI_FILL, line={"width": 0}, layer="below",
                          name="prediction interval band")
        if null_value is not None:
            fig.add_shape(type="line", x0=null_value, x1=null_value, xref=xref, y0=y_pi - 0.5, y1=y_top,
                          yref=yref, line={"color": "#999999", "width": 1}, name="null line")
        if ref is not None:
            fig.add_shape(type="line", x0=ref.estimate, x1=ref.estimate, xref=xref, y0=y_ref, y1=y_top,
                          yref=yref, line={"color": _POOLED_COLOR, "width": 1, "dash": "dot"},
                          name="reference line")
        # a thin separator between the collection's studies and the new study
        if n:
            fig.add_shape(type="line", x0=0, x1=1, xref=f"{xref} domain", y0=2.95, y1=2.95, yref=yref,
                          line={"color": "#cccccc", "width": 1}, name="separator")
        # collection studies
        if ref is not None and ref.studies:
            ys = np.array([y_of[s.label] for s in ref.studies])
            est = np.array([s.estimate for s in ref.studies])
            clo = np.array([s.ci_low for s in ref.studies])
            chi = np.array([s.ci_high for s in ref.studies])
            w = np.array([s.weight for s in ref.studies])
            fig.add_trace(go.Scatter(
                x=est, y=ys, mode="markers", name="Studies in the collection",
                marker={"symbol": "square", "size": _sizes(w), "color": _STUDY_COLOR},
                error_x={"type": "data", "symmetric": False, "array": chi - est, "arrayminus": est - clo,
                         "color": _STUDY_COLOR, "thickness": 1.2, "width": 0},
                hovertext=[f"{s.label}<br>{_f(s.estimate)} {_iv(s.ci_low, s.ci_high)}"
                           + (f"<br>weight {s.weight:.1f}%" if math.isfinite(s.weight) else "")
                           + (f"<br>N patients {s.n_patients:.0f}" if math.isfinite(s.n_patients) else "")
                           for s in ref.studies],
                hoverinfo="text", legendgroup="studies", showlegend=legend, meta={"role": "studies", "direction": d},
            ), row=1, col=col)
        # reference estimate: a diamond spanning its CI (a single marker without a CI)
        if ref is not None:
            h = 0.36
            if ref.has_ci:
                fig.add_trace(go.Scatter(
                    x=[ref.ci_low, ref.estimate, ref.ci_high, ref.estimate, ref.ci_low],
                    y=[y_ref, y_ref + h, y_ref, y_ref - h, y_ref], mode="lines", fill="toself",
                    fillcolor=_POOLED_COLOR, line={"color": _POOLED_COLOR, "width": 1},
                    name="Pooled estimate and CI" if ref.source == "collection" else "Reference estimate and CI",
                    hovertext=f"{ref.label}: {_f(ref.estimate)} {_iv(ref.ci_low, ref.ci_high)}", hoverinfo="text",
                    legendgroup="ref", showlegend=legend, meta={"role": "reference", "direction": d},
                ), row=1, col=col)
            else:
                fig.add_trace(go.Scatter(
                    x=[ref.estimate], y=[y_ref], mode="markers",
                    marker={"symbol": "diamond", "size": 14, "color": _POOLED_COLOR},
                    name="Reference estimate", hovertext=f"{ref.label}: {_f(ref.estimate)}", hoverinfo="text",
                    legendgroup="ref", showlegend=legend, meta={"role": "reference", "direction": d},
                ), row=1, col=col)
            if ref.has_pi:
                fig.add_trace(go.Scatter(
                    x=[ref.pi_low, ref.pi_high], y=[y_pi, y_pi], mode="lines+markers",
                    line={"color": _PI_COLOR, "width": 2},
                    marker={"symbol": "line-ns-open", "size": 10, "color": _PI_COLOR},
                    name=f"{pct} prediction interval (shaded)",
                    hovertext=f"{pct} prediction interval {_iv(ref.pi_low, ref.pi_high)}", hoverinfo="text",
                    legendgroup="pi", showlegend=legend, meta={"role": "pi", "direction": d},
                ), row=1, col=col)
        # the new study
        pl = place(e, ref)
        inside[d] = pl.inside_pi
        if e is not None:
            fig.add_trace(go.Scatter(
                x=[e.estimate], y=[y_new], mode="markers", name="New study",
                marker={"symbol": "circle", "size": 13, "color": NEW_COLOR, "line": {"color": "white", "width": 1}},
                error_x={"type": "data", "symmetric": False, "array": [e.ci_high - e.estimate],
                         "arrayminus": [e.estimate - e.ci_low], "color": NEW_COLOR, "thickness": 2.5, "width": 6},
                hovertext=f"{new_label}<br>{_f(e.estimate)} {_iv(e.ci_low, e.ci_high)}", hoverinfo="text",
                legendgroup="new", showlegend=legend, meta={"role": "new", "direction": d},
            ), row=1, col=col)
        # subtitle: direction and the verdict on the prediction interval
        if e is None:
            sub, color = "new study: no estimate", _PI_COLOR
        elif pl.inside_pi is True:
            sub, color = f"new study inside the {pct} prediction interval", "#1b7837"
        elif pl.inside_pi is False:
            sub, color = f"new study outside the {pct} prediction interval ({pl.side})", _POOLED_COLOR
        elif ref is None:
            sub, color = "no reference to compare with", _PI_COLOR
        else:
            sub, color = "no prediction interval to compare with", _PI_COLOR
        head = titles.get(d, d.replace("_", " "))
        fig.layout.annotations[p].update(
            text=f"<b>{head}</b><br><span style='color:{color}'>{sub}</span>", font={"size": 13},
            name="panel title",
        )
        xaxis = "xaxis" if col == 1 else f"xaxis{col}"
        fig.layout[xaxis].update(title_text=xlabel, range=xr, zeroline=False, showgrid=True, gridcolor="#eeeeee")

    # ---------------------------------------------------------------- y axis labels
    ref_label = _short(first_ref.label, 40) if first_ref is not None else ""
    tickvals = [y_of[lab] for lab in order] + [y_new]
    ticktext = [_short(lab) for lab in order] + [f"<b><span style='color:{NEW_COLOR}'>{_short(new_label)}</span></b>"]
    if any_ref:
        tickvals += [y_ref]
        ticktext += [f"<b>{ref_label}</b>"]
        if any(references[d] is not None and references[d].has_pi for d in dirs if references.get(d) is not None):
            tickvals += [y_pi]
            ticktext += [f"{pct} prediction interval"]
    fig.update_yaxes(tickvals=tickvals, ticktext=ticktext, range=[y_pi - 0.7, y_top + 0.2], fixedrange=True,
                     showgrid=False, zeroline=False)
    height = int(_ROW_PX * (n + 4) + 190)
    fig.update_layout(
        title={"text": title} if title else None,
        height=max(height, 320),
        plot_bgcolor="white",
        margin={"l": 10, "r": 20, "t": 80 if not title else 110, "b": 110},
        legend={"orientation": "h", "yref": "container", "yanchor": "bottom", "y": 0.0, "x": 0},
        font={"size": 12},
        meta={"rows": order, "y_new": y_new, "y_ref": y_ref, "y_pi": y_pi, "inside_pi": inside,
              "directions": dirs},
    )
    return fig
