"""Figures that describe a loaded data set (Data page). Pure plotly builders."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis import formatting as fmt


def patients_per_study_figure(df: pd.DataFrame) -> go.Figure:
    """Bar chart: number of patients per study."""
    n = df.groupby("study", observed=True)["patient"].nunique().sort_index()
    fig = go.Figure(go.Bar(x=n.index.astype(str), y=n.values, marker_color="#2b6cb0",
                           hovertemplate="%{x}: %{y} patients<extra></extra>"))
    fig.update_layout(title="Patients per study", xaxis_title="Study", yaxis_title="Patients (N)",
                      height=360, margin=dict(t=50, l=60, r=20, b=80))
    return fig


def sessions_per_patient_figure(df: pd.DataFrame) -> go.Figure:
    """Histogram: number of observed session rows per patient."""
    n = df.groupby(["study", "patient"], observed=True).size()
    fig = go.Figure(go.Histogram(x=n.values, marker_color="#4a5568",
                                 hovertemplate="%{x} sessions: %{y} patients<extra></extra>"))
    fig.update_layout(title="Observed sessions per patient", xaxis_title="Sessions observed per patient",
                      yaxis_title="Patients (N)", height=360, bargap=0.05, margin=dict(t=50, l=60, r=20, b=60))
    return fig


def missingness_figure(df: pd.DataFrame) -> go.Figure:
    """Heat map: share of each study's patients with an observed alliance and symptom value per session."""
    npat = df.groupby("study", observed=True)["patient"].nunique()
    cols = [c for c in ("alliance", "symptoms") if c in df.columns]
    fig = make_subplots(rows=1, cols=len(cols), subplot_titles=[f"{c}: % of patients observed" for c in cols],
                        shared_yaxes=True, horizontal_spacing=0.06)
    for j, c in enumerate(cols, start=1):
        obs = df[df[c].notna()].groupby(["study", "session"], observed=True)["patient"].nunique().unstack(fill_value=0)
        pct = obs.div(npat.reindex(obs.index), axis=0) * 100
        fig.add_trace(
            go.Heatmap(z=pct.values, x=pct.columns.astype(int), y=pct.index.astype(str), zmin=0, zmax=100,
                       colorscale="Blues", colorbar=dict(title="% observed") if j == 1 else None,
                       showscale=j == 1,
                       text=[[fmt.num(v, 0) for v in row] for row in pct.values],
                       hovertemplate="%{y}, session %{x}: %{text}% observed<extra></extra>"),
            row=1, col=j,
        )
        fig.update_xaxes(title_text="Session", row=1, col=j)
    fig.update_layout(title="Observed values per session", height=max(320, 22 * df["study"].nunique() + 140),
                      margin=dict(t=70, l=110, r=20, b=60))
    return fig
