"""Figures for the lagged within/between models (METHODS §3–§5). Pure plotly builders.

* :func:`patient_series_figure` — one patient: the predictor series, the value
  the centering subtracts (person mean or own trend line), the within
  deviations, and the outcome at t + L each row is paired with: exactly what
  went into the model (draws :func:`analysis.lagged.patient_view`).
* :func:`study_coefficients_figure` — dot-and-CI of one term per study for one
  direction, with the pooled estimate when available.
* :func:`multiverse_figure` — pooled within effect under every centering ×
  time trend (:func:`analysis.pipeline.multiverse`).
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis import formatting as fmt
from analysis.lagged import DIRECTIONS, PatientView

__all__ = [
    "direction_label", "multiverse_figure", "patient_series_figure", "study_coefficients_figure", "term_label",
    "term_reading",
]

_VAR_TEXT = {
    "alliance": "alliance (higher = stronger)",
    "symptoms": "symptoms (higher = more severe)",
}
_BLUE, _ORANGE, _GREY, _RED = "#2b6cb0", "#dd6b20", "#718096", "#c53030"


def direction_label(direction: str, lag: int = 1) -> dict:
    """Plain-language pieces for a direction: predictor, outcome, arrow text and the
    meaning of a negative coefficient."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}; got {direction!r}.")
    if direction == "alliance_to_symptoms":
        return {
            "x": "alliance", "y": "symptoms",
            "arrow": f"alliance (session t) → symptoms (session t+{lag})",
            "negative": "negative = higher alliance followed by lower (better) symptoms",
        }
    return {
        "x": "symptoms", "y": "alliance",
        "arrow": ("symptoms (before session t) → alliance (after session t)" if lag == 0
                  else f"symptoms (session t) → alliance (session t+{lag})"),
        "negative": "negative = more severe symptoms followed by a weaker alliance",
    }


def _patient_rows(view, patient, study) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """(model rows, observed series or None, patient) of :func:`patient_series_figure`'s input."""
    if isinstance(view, PatientView):
        return view.rows, view.series, view.patient
    if not (isinstance(view, pd.DataFrame) and {"within", "lead", "lead_session", "x_center"} <= set(view.columns)):
        raise ValueError("patient_series_figure draws prepared rows: pass analysis.lagged.patient_view(...) or the "
                         "output of analysis.lagged.prepare(...).")
    if patient is None:
        raise ValueError("Name the patient whose model rows to draw.")
    sel = view["patient"].astype(str) == str(patient)
    if study is not None:
        sel &= view["study"].astype(str) == str(study)
    rows = view.loc[sel]
    if rows.empty:
        raise ValueError(f"Patient {patient!r} has no model rows.")
    if rows["study"].nunique() > 1:
        raise ValueError(f"Patient id {patient!r} occurs in several studies; name the study.")
    return rows, None, patient


def patient_series_figure(view, patient: str | None = None, study: str | None = None) -> go.Figure:
    """One patient's series and the model rows built from it (METHODS §2–§4).

    ``view`` is a :class:`analysis.lagged.PatientView` (from
    :func:`analysis.lagged.patient_view`: the patient's model rows and complete
    observed series on the model scale) or the output of
    :func:`analysis.lagged.prepare` (then ``patient`` — and ``study`` when the
    id repeats — picks the rows and only model rows are drawn). The figure
    draws these values; it computes nothing. Three panels sharing the session
    axis:

    1. the predictor X at each session and the value the centering subtracts
       (person mean, own trend line, grand mean or 0), dashed;
    2. the within deviations ``X − centre`` that enter the model as ``within``;
    3. the outcome Y on its metric, and for each model row the outcome at the
       lead session it is paired with (the model's dependent variable),
       joined to the predictor's session by a grey line.
    """
    rows, series, patient = _patient_rows(view, patient, study)
    attrs = rows.attrs
    direction = attrs.get("direction", "alliance_to_symptoms")
    opts = attrs.get("options", {})
    lag, centering = int(opts.get("lag", 1)), opts.get("centering", "person_mean")
    scale = "z" if bool(opts.get("standardize", True)) else "raw"
    lab = direction_label(direction, lag)
    r = rows.sort_values("session")
    fig = make_subplots(
        rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.07,
        subplot_titles=(
            f"Predictor: {_VAR_TEXT[lab['x']]}, and the centre subtracted ({centering.replace('_', ' ')})",
            "Within deviation = predictor − centre (the model's 'within' term)",
            f"Outcome: {_VAR_TEXT[lab['y']]}; filled = value at session t+{lag} paired with each row",
        ),
    )
    if series is not None:
        fig.add_trace(go.Scatter(x=series["session"], y=series["x"], mode="lines+markers",
                                 name=f"{lab['x']} (all observed)", line={"color": _BLUE}, connectgaps=False,
                                 text=fmt.nums(series["x"]), hovertemplate="session %{x}: %{text}<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=r["session"], y=r["x"], mode="markers", name=f"{lab['x']} in a model row",
                             marker={"color": _BLUE, "size": 10, "symbol": "circle-open", "line": {"width": 2}},
                             text=fmt.nums(r["x"]), hovertemplate="session %{x}: %{text}<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=r["session"], y=r["x_center"], mode="lines", name="centre subtracted",
                             line={"color": _GREY, "dash": "dash"}, text=fmt.nums(r["x_center"]),
                             hovertemplate="centre at session %{x}: %{text}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Bar(x=r["session"], y=r["within"], name="within deviation",
                         marker_color=np.where(r["within"] >= 0, _BLUE, _RED),
                         customdata=fmt.nums(r["within"], sign=True),
                         hovertemplate="session %{x}: within %{customdata}<extra></extra>"), row=2, col=1)
    if series is not None:
        fig.add_trace(go.Scatter(x=series["session"], y=series["y"], mode="lines+markers",
                                 name=f"{lab['y']} (all observed)", line={"color": _ORANGE, "width": 1},
                                 marker={"size": 5}, text=fmt.nums(series["y"]),
                                 hovertemplate="session %{x}: %{text}<extra></extra>"),
                      row=3, col=1)
    # one trace for every pairing line (segments separated by None), shown once in the legend
    px, py = [], []
    for s, ls, ld in zip(r["session"], r["lead_session"], r["lead"]):
        px += [s, ls, None]
        py += [ld, ld, None]
    fig.add_trace(go.Scatter(x=px, y=py, mode="lines", line={"color": _GREY, "width": 1},
                             name=f"pairing: predictor session → outcome session (t+{lag})", hoverinfo="skip"),
                  row=3, col=1)
    fig.add_trace(go.Scatter(
        x=r["lead_session"], y=r["lead"], mode="markers", name=f"{lab['y']} at t+{lag} (model outcome)",
        marker={"color": _ORANGE, "size": 10},
        customdata=np.column_stack([r["session"].astype(str), fmt.nums(r["within"], sign=True),
                                    fmt.nums(r["lead"])]),
        hovertemplate=("outcome at session %{x}: %{customdata[2]}<br>paired with predictor at session "
                       "%{customdata[0]} (within %{customdata[1]})<extra></extra>"),
    ), row=3, col=1)
    # axis titles in short lines (≤ 31 characters at 10 px) so each fits beside its own panel
    # (≈ 200 px tall) and neighbouring titles cannot overlap
    unit = "z within study" if scale == "z" else "raw score"
    fig.update_yaxes(title_text=f"{_VAR_TEXT[lab['x']]}<br>{unit}", title_font_size=10, row=1, col=1)
    fig.update_yaxes(title_text="within deviation", title_font_size=10, row=2, col=1)
    fig.update_yaxes(title_text=f"{_VAR_TEXT[lab['y']]}<br>{unit}", title_font_size=10, row=3, col=1)
    sessions = np.r_[r["session"].to_numpy(float), r["lead_session"].to_numpy(float),
                     series["session"].to_numpy(float) if series is not None else []]
    span = float(np.nanmax(sessions) - np.nanmin(sessions)) if len(sessions) else 1.0
    fig.update_xaxes(tickmode="linear", tick0=0, dtick=max(1, int(np.ceil(span / 12))), tickformat="d")  # ≤ ~12
    fig.update_xaxes(title_text="Session", row=3, col=1)
    st = f" ({html.escape(str(r['study'].iloc[0]))})" if len(r) else ""
    fig.update_layout(
        title=f"Patient {html.escape(str(patient))}{st}: what enters the model, {lab['arrow']}",
        height=900, margin={"t": 90, "l": 80, "r": 20, "b": 110}, bargap=0.4,
        legend={"orientation": "h", "y": -0.06, "yanchor": "top"},
    )
    return fig


def term_label(term: str, direction: str | None = None, lag: int = 1) -> str:
    """Plain-language name of a stage-1 term (METHODS §5), for pickers, titles and axes; without a
    ``direction`` in words that fit both directions (predictor / outcome). Interactions with the within
    effect are labelled *within-study*: each study estimates them with the moderator centred in that
    study, so their pooling is free of ecological bias (the across-study part is the one-stage model's,
    METHODS §6b)."""
    if direction is None:
        later = f"session t+{lag}" if lag else "later in session t"
        lab = {"x": "predictor", "y": "outcome", "arrow": f"predictor (session t) → outcome ({later})"}
    else:
        lab = direction_label(direction, lag)
    fixed = {
        "within": f"Within-patient effect: {lab['arrow']}",
        "between": f"Between-patient effect: patient mean of {lab['x']} → {lab['y']}",
        "prior_within": f"Prior {lab['y']} (within) → {lab['y']} at t+{lag}",
        "within_std": f"Standardized within-patient effect (RI-CLPM/DPM, std.all): {lab['arrow']}",
        "prior_between": f"Patient mean of {lab['y']} → {lab['y']} at t+{lag}",
        "interaction": f"Cross-level interaction (within-study): patient mean of {lab['x']} × within effect",
        "interaction_outcome": f"Cross-level interaction (within-study): patient mean of {lab['y']} × within effect",
        "time": "Session (time trend)",
        "intercept": "Intercept",
    }
    if term in fixed:
        return fixed[term]
    if term.startswith("within × "):
        return f"Cross-level interaction (within-study): {term[len('within × '):]} × within effect"
    return f"Covariate: {term}"


def term_reading(term: str, direction: str = "alliance_to_symptoms", lag: int = 1) -> str:
    """What the sign of a pooled stage-1 term means, in plain words (METHODS §5); "" for the intercept."""
    lab = direction_label(direction, lag)
    x, y = lab["x"], lab["y"]
    when = {0: "later in the same session", 1: "at the next session"}.get(lag, f"{lag} sessions later")
    if term == "within":
        return f"{lab['negative'][0].upper()}{lab['negative'][1:]} ({lab['arrow']})."
    if term == "within_std":
        return (f"{lab['negative'][0].upper()}{lab['negative'][1:]} ({lab['arrow']}); in within-patient "
                "standard deviations of both variables (lavaan std.all, averaged over sessions).")
    if term == "between":
        return f"Positive: patients with a higher average {x} have higher {y} {when}."
    if term == "prior_within":
        nxt = "at the next session" if lag <= 1 else when  # lag 0: the prior outcome is the previous session's
        return f"Positive: a patient's {y} above their own average tends to stay above it {nxt}."
    if term == "prior_between":
        return f"Positive: patients with higher average {y} have higher {y} {when}."
    if term == "time":
        return f"Positive: {y} rises over the sessions, beyond the other terms."
    if term in ("interaction", "interaction_outcome") or term.startswith("within × "):
        mod = {"interaction": f"average {x}", "interaction_outcome": f"average {y}"}.get(
            term, term[len("within × "):])
        return (f"Cross-level interaction: positive = the within effect ({lab['arrow']}) is more positive "
                f"(less negative) for patients with a higher {mod}; negative = more negative.")
    if term == "intercept":
        return ""
    return f"Covariate {term}: positive = higher {y} {when} for higher values (or this level)."


def _term_axis(direction, term, lag, effect):
    lab = direction_label(direction, lag)
    what = {
        "within": f"{'Within-patient' if effect != 'total' else 'Total'} effect",
        "within_std": "Standardized within-patient effect (std.all)",
        "between": "Between-patient effect",
        "prior_within": f"Prior {lab['y']} (within) → {lab['y']} at t+{lag}",
        "prior_between": f"Patient mean of {lab['y']} → {lab['y']} at t+{lag}",
        "interaction": "Cross-level interaction, within-study (between × within)",
        "time": "Session (time trend)",
        "early_alliance": "Early alliance → final symptoms (adjusted for baseline)",
    }.get(term) or html.escape(term_label(term, direction, lag))
    if term in ("within", "between", "within_std"):
        return f"{what}: {lab['arrow']}<br>{lab['negative']}; symptoms: higher = more severe"
    return f"{what}<br>symptoms: higher = more severe; alliance: higher = stronger"


def study_coefficients_figure(result, direction: str = "alliance_to_symptoms", term: str = "within",
                              level: float = 0.95) -> go.Figure:
    """Dot-and-CI of one coefficient per study for one direction.

    ``result`` is a :class:`analysis.pipeline.TwoStageResult` (the term's
    pooled estimate, from ``pooled_terms``, is added as a diamond) or its
    ``per_study`` table. Studies whose fit failed are listed with "not fitted".
    """
    pooled = None
    lag = 1
    if hasattr(result, "per_study"):
        ps = result.per_study
        if term == getattr(result, "pooled_term", "within"):
            pooled = result.pooled.get(direction)
        elif hasattr(result, "pooled_terms"):
            pooled = result.pooled_terms.get((direction, term))
        lag = result.options.lag
    else:
        ps = result
    t = ps[(ps["direction"] == direction) & (ps["term"] == term)]
    if t.empty:
        raise ValueError(f"No {term!r} coefficients for direction {direction!r}.")
    t = t.iloc[::-1]
    study = t["study"].astype(str).to_numpy()
    est = t["estimate"].to_numpy(float)
    ok = np.isfinite(est)
    effect = str(t["effect"].iloc[0]) if "effect" in t else "within-patient"
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=est[ok], y=study[ok], mode="markers", name="study estimate",
        marker={"color": _BLUE, "size": 9},
        error_x={"type": "data", "symmetric": False, "array": (t["ci_high"].to_numpy(float) - est)[ok],
                     "arrayminus": (est - t["ci_low"].to_numpy(float))[ok], "color": _BLUE},
        customdata=np.column_stack([
            [fmt.estimate_ci(e, lo, hi) for e, lo, hi in zip(est[ok], t["ci_low"].to_numpy(float)[ok],
                                                              t["ci_high"].to_numpy(float)[ok])],
            fmt.nums(t["n_patients"].to_numpy()[ok], 0), fmt.nums(t["n_pairs"].to_numpy()[ok], 0)]),
        hovertemplate="%{y}: %{customdata[0]}<br>%{customdata[1]} patients, %{customdata[2]} pairs<extra></extra>",
    ))
    if (~ok).any():
        fig.add_trace(go.Scatter(x=np.zeros((~ok).sum()), y=study[~ok], mode="text", text=["not fitted"] * (~ok).sum(),
                                 textfont={"color": _GREY}, name="not fitted",
                                 hovertext=t["message"].astype(str).to_numpy()[~ok], hoverinfo="text"))
    ylabels = list(study)
    if pooled is not None:
        lbl = f"Pooled (k = {pooled.k})" if pooled.k > 1 else "Only one study: not pooled"
        fig.add_trace(go.Scatter(
            x=[pooled.ci_low, pooled.estimate, pooled.ci_high, pooled.estimate, pooled.ci_low],
            y=[lbl, lbl, lbl, lbl, lbl], mode="lines", fill="toself", line={"color": _ORANGE, "width": 8},
            name="pooled estimate and CI", hoverinfo="skip",
        ))
        fig.add_trace(go.Scatter(x=[pooled.estimate], y=[lbl], mode="markers", marker={"symbol": "diamond", "size": 14, "color": _ORANGE},
                                 showlegend=False,
                                 hovertemplate="pooled: " + fmt.estimate_ci(pooled.estimate, pooled.ci_low,
                                                                            pooled.ci_high) + "<extra></extra>"))
        ylabels = [lbl] + ylabels
    fig.add_vline(x=0, line={"color": _GREY, "dash": "dot"})
    fig.update_yaxes(categoryorder="array", categoryarray=ylabels, title_text="")
    fig.update_xaxes(title_text=_term_axis(direction, term, lag, effect) + f"<br>dots: estimate, bars: {100 * level:g}% CI")
    fig.update_layout(title=f"Per-study '{term}' coefficients, {direction_label(direction, lag)['arrow']}",
                      height=max(320, 28 * len(ylabels) + 170), margin={"t": 60, "l": 140, "r": 20, "b": 110},
                      legend={"orientation": "h", "y": 1.02, "x": 1, "xanchor": "right", "yanchor": "bottom"})
    return fig


def multiverse_figure(table: pd.DataFrame, direction: str = "alliance_to_symptoms") -> go.Figure:
    """Pooled within effect (and CI) for each centering × time trend of
    :func:`analysis.pipeline.multiverse`: does the conclusion depend on centering?"""
    t = table[(table["row"] == "pooled") & (table["direction"] == direction)]
    if t.empty:
        raise ValueError(f"No pooled rows for direction {direction!r}.")
    lab = [f"{c.replace('_', ' ')}, {'time trend' if tt == 'fixed' else 'no trend'} ({e})"
           for c, tt, e in zip(t["centering"], t["time_trend"], t["effect"])]
    est = t["estimate"].to_numpy(float)
    fig = go.Figure(go.Scatter(
        x=est, y=lab, mode="markers", marker={"size": 10, "color": np.where(t["effect"] == "total", _GREY, _BLUE)},
        error_x={"type": "data", "symmetric": False, "array": t["ci_high"].to_numpy(float) - est,
                     "arrayminus": est - t["ci_low"].to_numpy(float)},
        customdata=[fmt.estimate_ci(e, lo, hi) for e, lo, hi in zip(est, t["ci_low"], t["ci_high"])],
        hovertemplate="%{y}: %{customdata}<extra></extra>",
    ))
    fig.add_vline(x=0, line={"color": _GREY, "dash": "dot"})
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text=_term_axis(direction, "within", 1, "within-patient") + "<br>grey: total effect (no between part)")
    fig.update_layout(title=f"Pooled effect under each centering, {direction_label(direction)['arrow']}",
                      height=420, margin={"t": 60, "l": 300, "r": 20, "b": 110})
    return fig
