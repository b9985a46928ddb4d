"""Figures for alliance convergence (METHODS §8). Pure functions returning plotly figures.

* :func:`alliance_trajectories_figure` — mean ± 1 SD of patient- and
  therapist-rated alliance per session (the paper's Figures 1–2);
* :func:`dyad_trajectories_figure` — observed ratings and fitted OLS lines of a
  seeded sample of dyads, the shaded band between the lines being the fitted
  discrepancy D̂_t = P̂_t − T̂_t;
* :func:`convergence_distribution_figure` — distribution of the convergence
  scores (histogram and individual dyads);
* :func:`discrepancy_figure` — mean observed P − T per session with the
  stacked dyadic model's line γ1 + γ3·t;
* :func:`symptom_growth_figure` — model-implied mean symptom trajectories at
  ±1 SD of a dyad-level predictor, with the observed session means;
* :func:`models_table_figure` — Models 1–3 laid out like the paper's Table I;
* :func:`pooled_forest_figure` — forest plot of the per-study convergence effects.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis import formatting as fmt
from analysis.convergence import (
    TERM_LABELS,
    DyadicResult,
    DyadScores,
    GrowthResult,
    models_table,
)
from analysis.plot_style import WHITE

__all__ = [
    "alliance_trajectories_figure",
    "convergence_distribution_figure",
    "discrepancy_figure",
    "dyad_trajectories_figure",
    "models_table_figure",
    "pooled_forest_figure",
    "symptom_growth_figure",
]

PATIENT_COLOR = "#1f77b4"
THERAPIST_COLOR = "#d62728"
BAND_COLOR = "rgba(148, 103, 189, 0.18)"


def _traj(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame) and "patient_mean" in data.columns:
        return data
    raise ValueError("Pass the output of analysis.convergence.trajectories(df) (figures draw results, they do "
                     "not compute them).")


def alliance_trajectories_figure(data, study: str | None = None, title: str | None = None,
                                 offset: float = 0.08) -> go.Figure:
    """Mean ± 1 SD (error bars) of P and T per session, one panel per study.

    ``data``: the output of :func:`analysis.convergence.trajectories`.
    ``study`` restricts to one study. The two series are shifted by
    ``±offset`` sessions so their error bars do not overlap.
    """
    tr = _traj(data)
    if study is not None:
        tr = tr[tr["study"] == study]
        if tr.empty:
            raise ValueError(f"No rows for study {study!r}.")
    studies = list(dict.fromkeys(tr["study"].astype(str)))
    fig = make_subplots(rows=len(studies), cols=1,
                        subplot_titles=[html.escape(x) for x in studies] if len(studies) > 1 else None,
                        shared_xaxes=False, vertical_spacing=0.12 if len(studies) > 1 else 0.02)
    for i, s in enumerate(studies, start=1):
        sub = tr[tr["study"].astype(str) == s]
        for who, col, color, dx in (("Patient (P)", "patient", PATIENT_COLOR, -offset),
                                    ("Therapist (T)", "therapist", THERAPIST_COLOR, offset)):
            fig.add_trace(
                go.Scatter(
                    x=sub["session"] + dx,
                    y=sub[f"{col}_mean"],
                    error_y={"type": "data", "array": sub[f"{col}_sd"].fillna(0), "visible": True},
                    mode="lines+markers",
                    name=who,
                    legendgroup=who,
                    showlegend=i == 1,
                    line={"color": color},
                    customdata=np.column_stack([sub["session"].astype(str), fmt.nums(sub[f"n_{col}"], 0),
                                                fmt.nums(sub[f"{col}_sd"]), fmt.nums(sub[f"{col}_mean"])]),
                    hovertemplate=f"{who}<br>session %{{customdata[0]}}<br>mean %{{customdata[3]}}"
                                  "<br>SD %{customdata[2]}<br>n %{customdata[1]}<extra></extra>",
                ),
                row=i, col=1,
            )
        fig.update_xaxes(title_text="Session", row=i, col=1)
        fig.update_yaxes(title_text="Alliance (mean ± 1 SD)", row=i, col=1)
    fig.update_layout(title=title or "Patient- and therapist-rated alliance per session",
                      height=max(380, 330 * len(studies)), template=WHITE)
    return fig


def dyad_trajectories_figure(df: pd.DataFrame, n: int = 12, seed: int = 0, study: str | None = None,
                             patients=None, scores: DyadScores | None = None, cols: int = 4,
                             title: str | None = None) -> go.Figure:
    """Per-dyad P and T ratings with their fitted lines; the band between the lines is D̂_t.

    The lines are the ones stored in ``scores`` (columns intercept_/slope_patient
    and _therapist: per-dyad OLS or empirical-Bayes, as the scores were made);
    nothing is refitted here. ``n`` dyads (of those with a convergence score)
    are drawn with a seeded generator (``seed``) unless ``patients`` lists them.
    Panel titles give the dyad's convergence score.
    """
    if scores is not None and "intercept_patient" not in (scores.table if isinstance(scores, DyadScores)
                                                          else scores).columns:
        raise ValueError("The scores lack the fitted lines (intercept_patient …); recompute them with dyad_scores.")
    d = df if study is None else df[df["study"] == study]
    if d.empty:
        raise ValueError("No data to plot.")
    if d["study"].nunique() > 1:
        raise ValueError("Choose one study (the study argument) for the per-dyad figure.")
    if scores is None:
        raise ValueError("Pass scores=dyad_scores(df): the figure draws the stored lines.")
    tab = scores.table if isinstance(scores, DyadScores) else scores
    tab = tab[tab["study"].isin(d["study"].unique())].set_index("patient")
    if patients is None:
        ids = list(tab.index)
        if len(ids) > n:
            rng = np.random.default_rng(seed)
            ids = sorted(rng.choice(ids, size=n, replace=False).tolist())
    else:
        ids = [p for p in patients if p in tab.index]
    if not ids:
        raise ValueError("None of the requested dyads has a convergence score.")
    ncol = min(cols, len(ids))
    nrow = int(np.ceil(len(ids) / ncol))
    titles = [f"{html.escape(str(p))}<br>conv. {fmt.num(tab.at[p, 'convergence'])}" for p in ids]
    fig = make_subplots(rows=nrow, cols=ncol, subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.04, vertical_spacing=0.12 / max(nrow - 1, 1) + 0.04)
    for k, p in enumerate(ids):
        r, c = k // ncol + 1, k % ncol + 1
        x = d[(d["patient"] == p)].sort_values("session")
        x = x[x["alliance"].notna() | x["therapist_alliance"].notna()]  # symptom-only sessions: nothing to draw
        j = x[x["alliance"].notna() & x["therapist_alliance"].notna()]
        t = j["session"].to_numpy(float)
        # the dyad's fitted lines as stored in the scores (OLS or empirical-Bayes): no refitting here
        lines = {"alliance": tab.at[p, "intercept_patient"] + tab.at[p, "slope_patient"] * t,
                 "therapist_alliance": tab.at[p, "intercept_therapist"] + tab.at[p, "slope_therapist"] * t}
        first = k == 0
        fig.add_trace(go.Scatter(x=t, y=lines["therapist_alliance"], mode="lines", line={"color": THERAPIST_COLOR,
                      "dash": "dash"}, name="T fitted", legendgroup="tf", showlegend=first, hoverinfo="skip"),
                      row=r, col=c)
        fig.add_trace(go.Scatter(x=t, y=lines["alliance"], mode="lines", line={"color": PATIENT_COLOR, "dash": "dash"},
                      fill="tonexty", fillcolor=BAND_COLOR, name="P fitted (band = fitted discrepancy)",
                      legendgroup="pf", showlegend=first, hoverinfo="skip"), row=r, col=c)
        fig.add_trace(go.Scatter(x=x["session"], y=x["alliance"], mode="markers", marker={"color": PATIENT_COLOR,
                      "size": 6}, name="Patient (P)", legendgroup="p", showlegend=first), row=r, col=c)
        fig.add_trace(go.Scatter(x=x["session"], y=x["therapist_alliance"], mode="markers",
                      marker={"color": THERAPIST_COLOR, "size": 6, "symbol": "diamond"}, name="Therapist (T)",
                      legendgroup="t", showlegend=first), row=r, col=c)
    fig.update_annotations(font_size=11)
    fig.update_layout(title=title or "Dyad trajectories: ratings, fitted lines and fitted discrepancy",
                      height=max(380, 250 * nrow), template=WHITE,
                      legend={"orientation": "h", "y": -0.08})
    return fig


def convergence_distribution_figure(scores: DyadScores | pd.DataFrame, column: str = "convergence",
                                    title: str | None = None, nbins: int = 30) -> go.Figure:
    """Histogram of a dyad score (default ``convergence``) per study, with the dyads as points below."""
    tab = scores.table if isinstance(scores, DyadScores) else scores
    if column not in tab.columns:
        raise ValueError(f"The scores have no column {column!r}.")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.03)
    for s, sub in tab.groupby("study", sort=False):
        v = sub[column].dropna()
        fig.add_trace(go.Histogram(x=v, nbinsx=nbins, name=str(s), opacity=0.65, legendgroup=str(s)), row=1, col=1)
        fig.add_trace(go.Box(x=v, name=str(s), boxpoints="all", jitter=0.4, pointpos=0, legendgroup=str(s),
                             showlegend=False, text=[html.escape(str(x)) for x in sub.loc[v.index, "patient"]],
                             customdata=fmt.nums(v, 3), hovertemplate="%{text}: %{customdata}<extra></extra>"),
                      row=2, col=1)
    fig.add_vline(x=0, line={"color": "grey", "dash": "dot"})
    label = "Convergence (positive = ratings approach each other)" if column == "convergence" else column
    fig.update_xaxes(title_text=label, row=2, col=1)
    fig.update_yaxes(title_text="Dyads", row=1, col=1)
    # the study names are the legend (several studies) or the page's context (one): never tick labels of
    # the box row, which a long name cuts off; one study needs no legend, which would narrow the plot
    fig.update_yaxes(showticklabels=False, row=2, col=1)
    fig.update_layout(barmode="overlay", title=title or "Distribution of dyad convergence scores",
                      template=WHITE, height=420, showlegend=tab["study"].nunique() > 1)
    return fig


def discrepancy_figure(data, dyadic: DyadicResult | None = None, study: str | None = None,
                       title: str | None = None) -> go.Figure:
    """Mean observed P − T per session (± 1.96 SE) and, if given, the dyadic model's γ1 + γ3·t."""
    tr = _traj(data)
    if study is not None:
        tr = tr[tr["study"] == study]
    if tr["study"].nunique() > 1:
        raise ValueError("Choose one study for the discrepancy figure.")
    se = tr["discrepancy_se"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=tr["session"], y=tr["discrepancy_mean"], mode="markers",
                             error_y={"type": "data", "array": (1.96 * se).fillna(0)},
                             name="Observed mean P − T (± 1.96 SE)", marker={"color": "#9467bd"}))
    if dyadic is not None:
        fx = dyadic.fixed.set_index("term")["estimate"]
        joint = tr.loc[tr["n_joint"] > 0, "session"] if "n_joint" in tr.columns else tr["session"]
        s = np.linspace(joint.min(), joint.max(), 50)  # over the sessions with both ratings
        fig.add_trace(go.Scatter(x=s, y=fx["role"] + fx["role:time"] * (s - dyadic.time_origin), mode="lines",
                                 name=f"Dyadic model: change {fmt.num(fx['role:time'], 3)} per session",
                                 line={"color": "#9467bd"}))
    fig.add_hline(y=0, line={"color": "grey", "dash": "dot"})
    fig.update_layout(title=title or "Patient − therapist alliance discrepancy", xaxis_title="Session",
                      yaxis_title="P − T", template=WHITE, height=380)
    return fig


def symptom_growth_figure(result: GrowthResult, df: pd.DataFrame | None = None, model: int = 2,
                          predictor: str = "convergence", title: str | None = None) -> go.Figure:
    """Model-implied mean symptom lines at −1 SD, mean and +1 SD of a dyad-level predictor.

    Draws :meth:`GrowthResult.implied_trajectories` and the observed means of
    the model rows (``result.observed``). ``df`` is accepted for old scripts and ignored.
    """
    lines = result.implied_trajectories(model=model, predictor=predictor)
    fig = go.Figure()
    for z, dash in ((-1, "dot"), (0, "solid"), (1, "dash")):
        sub = lines[lines["z"] == z]
        fig.add_trace(go.Scatter(x=sub["x"], y=sub["predicted"], mode="lines", line={"dash": dash, "color": "#2ca02c"},
                                 name=f"{TERM_LABELS.get(predictor, predictor)} {z:+d} SD" if z else "mean"))
    if result.observed is not None:
        fig.add_trace(go.Scatter(x=result.observed["x"], y=result.observed["mean"], mode="markers",
                                 marker={"color": "grey"}, name="Observed mean"))
    xl = "Assessment occasion" if result.time == "occasion" else "Session"
    fig.update_layout(title=title or f"Model {model}: implied symptom trajectories", xaxis_title=xl,
                      yaxis_title="Symptoms", template=WHITE, height=400)
    return fig


def models_table_figure(result: GrowthResult, digits: int = 2, title: str | None = None) -> go.Figure:
    """Plotly table of :func:`analysis.convergence.models_table` (the paper's Table I layout)."""
    tab = models_table(result, digits=digits)
    header = ["Term"] + [c.replace(" p", " p-value") if c.endswith(" p") else f"{c} Est. (SE)" for c in tab.columns]
    tab = tab.set_index("term")
    cells = [tab.index.tolist()] + [tab[c].tolist() for c in tab.columns]
    fig = go.Figure(go.Table(columnwidth=[2.6] + [1.4 if not c.endswith(" p") else 0.8 for c in tab.columns],
                             header={"values": header, "align": "left", "fill_color": "#f0f0f0"},
                             cells={"values": cells, "align": ["left"] + ["right"] * len(tab.columns)}))
    fig.update_layout(title=title or f"Dyadic multilevel growth models, {result.study}",
                      height=120 + 30 * (len(tab) + 2), margin={"l": 10, "r": 10, "t": 50, "b": 10})
    return fig


def pooled_forest_figure(meta, standardized: bool = True, title: str | None = None) -> go.Figure:
    """Forest plot of :func:`analysis.convergence.pooled_convergence`'s MetaResult.

    A thin wrapper of :func:`analysis.plots_meta.forest_figure` with the axis named after the pooled
    effect (Convergence × Time; in symptom SDs per session per SD of convergence when standardized).
    """
    from analysis.plots_meta import forest_figure

    if meta is None:
        raise ValueError("No study could be fitted, so there is nothing to pool.")
    xl = ("Convergence × Time (symptom SD per session per SD of convergence)" if standardized
          else "Convergence × Time (symptom units per session per unit of convergence)")
    return forest_figure(meta, title=title or "Convergence effect on the symptom slope, by study", xlabel=xl)
