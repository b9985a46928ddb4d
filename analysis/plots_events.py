"""Figures for ruptures, sudden gains and reliable change (METHODS §9–§11).

Pure functions: they take the outputs of `analysis.events` and return plotly
figures; nothing is computed here that the tables do not already show.

* `fig_rupture_series`       – one patient's alliance with threshold,
  ruptures (red) and repairs (green);
* `fig_rupture_prevalence`   – per-study prevalence bars;
* `fig_symptoms_with_gains`  – one patient's symptoms with sudden gains;
* `fig_alliance_around_gains`– alliance at sessions n and n + 1, gain pairs
  vs other pairs, and the distribution of the change;
* `fig_reliable_change`      – Jacobson–Truax pre/post plot.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = [
    "fig_alliance_around_gains",
    "fig_reliable_change",
    "fig_rupture_prevalence",
    "fig_rupture_series",
    "fig_symptoms_with_gains",
]

RUPTURE_COLOR = "#d62728"
REPAIR_COLOR = "#2ca02c"
SERIES_COLOR = "#1f77b4"
OTHER_COLOR = "#7f7f7f"
GAIN_COLOR = "#2ca02c"

ALLIANCE_LABEL = "Alliance (higher = stronger)"
SYMPTOM_LABEL = "Symptoms (higher = more severe)"


def _need(frame, cols, who, what):
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{who}: expected {what}.")
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"{who}: expected {what}; missing column(s) {', '.join(missing)}.")


def _one_patient(frame, study, patient, who):
    sel = frame[(frame["study"].astype(str) == str(study))
                & (frame["patient"].astype(str) == str(patient))]
    if sel.empty:
        raise ValueError(f"{who}: no rows for study {study!r}, patient {patient!r}.")
    return sel.sort_values("session")


def fig_rupture_series(flags: pd.DataFrame, study: str, patient: str) -> go.Figure:
    """One patient's alliance series from `events.ruptures` output.

    Line: observed alliance by session. Dashed red line: the rupture
    threshold Ā_i − k·SD; dotted grey line: the patient mean Ā_i. Red
    markers: rupture sessions (A_it ≤ threshold); green markers: the session
    at which each rupture was repaired (first later session at or above the
    pre-rupture level), joined to its rupture by a dotted green line.
    """
    who = "fig_rupture_series"
    _need(flags, ["study", "patient", "session", "alliance", "patient_mean", "threshold",
                  "rupture", "repair", "repair_session", "eligible", "k", "sd_used"],
          who, "the DataFrame returned by events.ruptures()")
    p = _one_patient(flags, study, patient, who)
    obs = p[p["alliance"].notna()]
    rater = str(p["rater"].iloc[0]) if "rater" in p.columns else "patient"
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=obs["session"], y=obs["alliance"], mode="lines+markers", name=f"Alliance ({rater})",
        line={"color": SERIES_COLOR}, marker={"size": 7, "color": SERIES_COLOR},
        hovertemplate="session %{x}<br>alliance %{y:.3g}<extra></extra>",
    ))
    eligible = bool(p["eligible"].iloc[0])
    k = float(p["k"].iloc[0])
    if eligible:
        xs = [obs["session"].min(), obs["session"].max()]
        mean = float(p["patient_mean"].iloc[0])
        thr = float(p["threshold"].iloc[0])
        sd_used = float(p["sd_used"].iloc[0])
        fig.add_trace(go.Scatter(
            x=xs, y=[mean, mean], mode="lines", name="Patient mean",
            line={"color": OTHER_COLOR, "dash": "dot"}, hoverinfo="skip",
        ))
        fig.add_trace(go.Scatter(
            x=xs, y=[thr, thr], mode="lines",
            name=f"Threshold = mean − {k:g}·SD ({thr:.3g})",
            line={"color": RUPTURE_COLOR, "dash": "dash"}, hoverinfo="skip",
        ))
        rup = p[p["rupture"].fillna(False).astype(bool)]
        fig.add_trace(go.Scatter(
            x=rup["session"], y=rup["alliance"], mode="markers", name="Rupture",
            marker={"color": RUPTURE_COLOR, "size": 13, "symbol": "triangle-down"},
            hovertemplate="rupture at session %{x}<br>alliance %{y:.3g}<extra></extra>",
        ))
        rep = rup[rup["repair"].fillna(False).astype(bool)]
        by_session = obs.set_index("session")["alliance"]
        rx = [int(s) for s in rep["repair_session"]]
        fig.add_trace(go.Scatter(
            x=rx, y=[float(by_session.loc[s]) for s in rx], mode="markers", name="Repair",
            marker={"color": REPAIR_COLOR, "size": 13, "symbol": "triangle-up"},
            hovertemplate="repair at session %{x}<br>alliance %{y:.3g}<extra></extra>",
        ))
        for r in rep.itertuples():
            s2 = int(r.repair_session)
            fig.add_trace(go.Scatter(
                x=[r.session, s2], y=[r.alliance, float(by_session.loc[s2])], mode="lines",
                line={"color": REPAIR_COLOR, "dash": "dot", "width": 1}, showlegend=False,
                hoverinfo="skip",
            ))
        n_r, n_rep = len(rup), len(rep)
        title = (f"{study} · {patient}: {n_r} rupture(s), {n_rep} repaired "
                 f"(k = {k:g}, SD used = {sd_used:.3g})")
    else:
        title = (f"{study} · {patient}: fewer than 3 alliance values — "
                 f"not classified")
    fig.update_layout(title=title, xaxis_title="Session", yaxis_title=ALLIANCE_LABEL,
                      legend={"orientation": "h", "y": -0.2}, template="plotly_white")
    return fig


_PREV_BARS = (
    ("prev_rupture", "n_rupture", "Any rupture", RUPTURE_COLOR),
    ("prev_repair", "n_repair", "≥ 1 rupture repaired", "#98df8a"),
    ("prev_all_repaired", "n_all_repaired", "All ruptures repaired", REPAIR_COLOR),
)


def fig_rupture_prevalence(per_study: pd.DataFrame) -> go.Figure:
    """Per-study prevalence bars from `events.rupture_summary` (per-study table).

    For each study, the percentage of classified patients (≥ 3 alliance
    values) with any rupture, with at least one repaired rupture, and with
    all ruptures repaired; each bar is labelled n/N. The rupture–repair
    pattern equals the second bar under rule "any" and the third under "all".
    """
    who = "fig_rupture_prevalence"
    _need(per_study, ["study", "n_eligible", "n_too_few"] + [c for b in _PREV_BARS for c in b[:2]],
          who, "the per-study DataFrame returned by events.rupture_summary()")
    fig = go.Figure()
    studies = per_study["study"].astype(str).tolist()
    for prev, cnt, label, color in _PREV_BARS:
        pct = per_study[prev].to_numpy(dtype=float) * 100
        txt = [f"{int(n)}/{int(N)}" for n, N in zip(per_study[cnt], per_study["n_eligible"])]
        fig.add_trace(go.Bar(
            x=studies, y=pct, name=label, marker_color=color, text=txt, textposition="outside",
            customdata=np.column_stack([per_study["n_too_few"].to_numpy()]),
            hovertemplate=("%{x}<br>" + label + ": %{y:.1f}% (%{text})"
                           "<br>not classified (< 3 values): %{customdata[0]}<extra></extra>"),
        ))
    rule = str(per_study["rule"].iloc[0]) if "rule" in per_study.columns and len(per_study) else "any"
    note = ("rupture–repair = ≥ 1 repaired" if rule == "any" else "rupture–repair = all repaired")
    fig.update_layout(
        barmode="group", title=f"Rupture and repair prevalence per study ({note})",
        xaxis_title="Study", yaxis_title="Patients with the pattern (% of classified)",
        yaxis={"range": [0, 110]}, template="plotly_white",
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def fig_symptoms_with_gains(df: pd.DataFrame, gains: pd.DataFrame, study: str,
                            patient: str) -> go.Figure:
    """One patient's symptom series with sudden gains marked.

    Line: observed symptoms by session (higher = more severe). Each sudden
    gain (``is_gain``) is drawn as a thick green segment from the pregain
    session n to the postgain session n + 1 with the drop in the hover;
    pairs that meet the criteria but are not counted (``first_only``) are
    drawn dashed.
    """
    who = "fig_symptoms_with_gains"
    _need(df, ["study", "patient", "session", "symptoms"], who, "canonical long data")
    _need(gains, ["study", "patient", "pregain_session", "postgain_session", "pregain",
                  "postgain", "magnitude", "is_gain", "meets_criteria"],
          who, "the DataFrame returned by events.sudden_gains()")
    p = _one_patient(df, study, patient, who)
    p = p[p["symptoms"].notna()]
    g = gains[(gains["study"].astype(str) == str(study))
              & (gains["patient"].astype(str) == str(patient))]
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=p["session"], y=p["symptoms"], mode="lines+markers", name="Symptoms",
        line={"color": SERIES_COLOR}, marker={"size": 7},
        hovertemplate="session %{x}<br>symptoms %{y:.3g}<extra></extra>",
    ))
    gain = g[g["is_gain"].astype(bool)]
    later = g[g["meets_criteria"].astype(bool) & ~g["is_gain"].astype(bool)]
    for sub, name, dash in ((gain, "Sudden gain", "solid"), (later, "Later gain (not counted)", "dash")):
        first = True
        for r in sub.itertuples():
            fig.add_trace(go.Scatter(
                x=[r.pregain_session, r.postgain_session], y=[r.pregain, r.postgain],
                mode="lines+markers", name=name, legendgroup=name, showlegend=first,
                line={"color": GAIN_COLOR, "width": 5, "dash": dash},
                marker={"size": 11, "color": GAIN_COLOR},
                hovertemplate=(f"gain {r.pregain_session} → {r.postgain_session}: "
                               f"drop {r.magnitude:.3g}<extra></extra>"),
            ))
            first = False
    fig.update_layout(
        title=f"{study} · {patient}: {len(gain)} sudden gain(s)",
        xaxis_title="Session", yaxis_title=SYMPTOM_LABEL, template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _mean_ci(x):
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return np.nan, np.nan
    m = float(x.mean())
    if n < 2:
        return m, np.nan
    from scipy import stats

    half = float(stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return m, half


def fig_alliance_around_gains(result) -> go.Figure:
    """Alliance before/after sudden gains (from `events.alliance_around_gains`).

    Left: mean alliance at session n (pregain) and n + 1 (postgain) with 95%
    t intervals, gain pairs vs all other consecutive pairs. Right: the
    distribution of the change A_{n+1} − A_n per group (box with points).
    """
    who = "fig_alliance_around_gains"
    pairs = getattr(result, "pairs", None)
    _need(pairs, ["group", "alliance_pre", "alliance_post", "change"], who,
          "the result of events.alliance_around_gains()")
    use = pairs[pairs["change"].notna() & pairs["group"].isin(["gain", "other"])]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], subplot_titles=(
        "Mean alliance at sessions n and n + 1 (95% CI)",
        "Change n → n + 1 (positive = stronger after)"))
    labels = {"gain": "Gain pairs", "other": "Other pairs"}
    colors = {"gain": GAIN_COLOR, "other": OTHER_COLOR}
    for grp in ("gain", "other"):
        s = use[use["group"] == grp]
        pre = _mean_ci(s["alliance_pre"])
        post = _mean_ci(s["alliance_post"])
        fig.add_trace(go.Scatter(
            x=["Session n (pregain)", "Session n + 1 (postgain)"], y=[pre[0], post[0]],
            error_y={"type": "data", "array": [pre[1], post[1]], "visible": True},
            mode="lines+markers", name=f"{labels[grp]} (n = {len(s)})",
            line={"color": colors[grp]}, marker={"size": 9}, legendgroup=grp,
        ), row=1, col=1)
        fig.add_trace(go.Box(
            y=s["change"], name=labels[grp], marker_color=colors[grp], boxpoints="all",
            jitter=0.4, pointpos=0, boxmean=True, showlegend=False, legendgroup=grp,
        ), row=1, col=2)
    fig.update_yaxes(title_text=ALLIANCE_LABEL, row=1, col=1)
    fig.update_yaxes(title_text="Alliance change A(n+1) − A(n) (positive = stronger)",
                     row=1, col=2)
    est = getattr(result, "model_estimate", np.nan)
    pval = getattr(result, "model_p", np.nan)
    title = "Alliance around sudden gains"
    if np.isfinite(est):
        title += f" — random-intercept model: gain-pair effect {est:.3g} (p = {pval:.3g})"
    fig.update_layout(title=title, template="plotly_white", legend={"orientation": "h", "y": -0.2})
    return fig


def fig_reliable_change(rc: pd.DataFrame, study: str | None = None) -> go.Figure:
    """Jacobson–Truax plot from `events.reliable_change` output.

    Each patient's pre (x) vs post (y) score, coloured by category. The
    diagonal is no change; the band around it is ±1.96·S_diff (changes inside
    it are not reliable); dotted lines mark the clinical cut-off c when set.
    Below the diagonal = improvement (lower = better). With several studies
    pass ``study`` (S_diff and c are study-specific).
    """
    who = "fig_reliable_change"
    _need(rc, ["study", "patient", "pre", "post", "s_diff", "cutoff", "category"], who,
          "the DataFrame returned by events.reliable_change()")
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
        band = 1.96 * float(d["s_diff"].iloc[0])
        xs = [lo, hi]
        fig.add_trace(go.Scatter(x=xs, y=[lo + band, hi + band], mode="lines", line={"width": 0},
                                 showlegend=False, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=xs, y=[lo - band, hi - band], mode="lines", line={"width": 0},
                                 fill="tonexty", fillcolor="rgba(127,127,127,0.18)",
                                 name="No reliable change (±1.96·S_diff)", hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=xs, y=xs, mode="lines", name="No change",
                                 line={"color": OTHER_COLOR}, hoverinfo="skip"))
        c = d["cutoff"].iloc[0]
        if pd.notna(c):
            c = float(c)
            fig.add_trace(go.Scatter(x=[c, c, None, lo, hi], y=[lo, hi, None, c, c], mode="lines",
                                     name=f"Clinical cut-off c = {c:.3g}",
                                     line={"color": "black", "dash": "dot"}, hoverinfo="skip"))
        colors = {"recovered": REPAIR_COLOR, "improved": "#98df8a", "unchanged": OTHER_COLOR,
                  "deteriorated": RUPTURE_COLOR}
        for cat, col in colors.items():
            s = d[d["category"] == cat]
            if s.empty:
                continue
            fig.add_trace(go.Scatter(
                x=s["pre"], y=s["post"], mode="markers", name=f"{cat} (n = {len(s)})",
                marker={"color": col, "size": 8}, text=s["patient"].astype(str),
                hovertemplate="%{text}<br>pre %{x:.3g} → post %{y:.3g}<extra></extra>",
            ))
    fig.update_layout(
        title="Reliable and clinically significant change (Jacobson & Truax)",
        xaxis_title="Pre symptoms (first session; higher = more severe)",
        yaxis_title="Post symptoms (last session; higher = more severe)",
        template="plotly_white", legend={"orientation": "h", "y": -0.2},
    )
    return fig
