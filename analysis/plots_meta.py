"""Figures for stage-2 meta-analysis (METHODS §6). Pure functions returning
plotly figures that draw result objects: per-study estimates and CIs come from
:meth:`analysis.meta.MetaResult.studies_frame` (normal theory, as in metafor's
forest plot), pooled values from the result itself; nothing is recomputed.

One forest builder serves every forest plot in the app (pooled, paired,
screening): :class:`ForestRow` / :class:`ForestPanel` describe what to draw and
:func:`forest_panels_figure` lays it out. The text columns (study, N patients,
N pairs, estimate [CI], weight) are placed in pixels from measured text widths
(:func:`text_width`) in the figure's left and right margins, so they never
overlap whatever the figure's width; the forest panels take the space between.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy import special

from . import formatting as fmt
from .meta import METHOD_NAMES, Estimate, MetaResult, _check_effects

__all__ = ["FONT_FAMILY", "NEW_COLOR", "ForestPanel", "ForestRow", "cell_annotations", "forest_figure",
           "forest_panels_figure", "funnel_figure", "leave_one_out_figure", "meta_panel", "paired_forest_figure",
           "text_width"]

# Arial and Liberation Sans share advance widths (Helvetica within ~1%); the
# figures ask for these fonts so the measured widths hold on screen and in PNGs.
FONT_FAMILY = "Arial, 'Liberation Sans', Helvetica, sans-serif"
FONT_SIZE = 12
FOOT_SIZE = 11
STUDY_COLOR = "#1f4e79"
POOLED_COLOR = "#b22222"
PI_COLOR = "#555555"
PI_FILL = "rgba(120,120,120,0.13)"
NEW_COLOR = "#d95f02"  # orange: a highlighted (screened) study
_ROW_PX = 24
_MAX_MARKER = 18.0
_MIN_MARKER = 4.0
_LABEL_CHARS = 40
_LABEL_CHARS_PAIRED = 28
_GAP = 16  # px between text columns
_PAD = 8  # px between the text and the figure edge or a panel
_REF_WIDTH = 1000  # px; a paired panel's title names the direction when it fits at this width

# Advance widths in 1/1000 em of Liberation Sans Regular / Bold (= Arial metrics), a data file.
_FONT = json.loads((Path(__file__).parent / "resources" / "font_widths.json").read_text(encoding="utf-8"))
_WIDTHS = {False: dict(zip(_FONT["chars"], _FONT["regular"], strict=True)),
           True: dict(zip(_FONT["chars"], _FONT["bold"], strict=True))}


def text_width(text: str, size: float = FONT_SIZE, bold: bool = False) -> float:
    """Width in px of plain ``text`` set in :data:`FONT_FAMILY` at ``size`` px.

    Sum of the characters' advance widths (Liberation Sans = Arial metrics);
    a character outside the table counts as 0.65 em (1 em for CJK), which
    over- rather than under-estimates.
    """
    table = _WIDTHS[bool(bold)]
    total = 0
    for ch in str(text):
        w = table.get(ch)
        if w is None:
            w = 1000 if ord(ch) >= 0x2E80 else 650
        total += w
    return total * size / 1000.0


@dataclass(frozen=True)
class ForestRow(Estimate):
    """One study row: its estimate with CI, weight (percent) and counts (NaN when unknown)."""

    weight: float = math.nan
    n_patients: float = math.nan
    n_pairs: float = math.nan


@dataclass(frozen=True)
class ForestPanel:
    """One forest panel: study rows, an optional summary (``(estimate, ci_low,
    ci_high)``, a diamond; a single marker without a CI), an optional
    prediction interval ``(low, high)``, an optional highlighted row ``new``
    (e.g. a screened study), a footer line (heterogeneity) and a subtitle.
    ``key`` names the panel in trace ``meta`` (e.g. the direction)."""

    studies: tuple[ForestRow, ...]
    title: str | None = None
    summary: tuple[float, float, float] | None = None
    pi: tuple[float, float] | None = None
    footer: str = ""
    new: ForestRow | None = None
    subtitle: str = ""
    subtitle_color: str = PI_COLOR
    key: str = ""
    shade_pi: bool = False


def _finite(*xs: Any) -> bool:
    try:
        return all(x is not None and math.isfinite(float(x)) for x in xs)
    except (TypeError, ValueError):
        return False


def _short(label: str, n: int = _LABEL_CHARS) -> str:
    return label if len(label) <= n else label[: n - 1] + "\u2026"


def _count(x: float) -> str:
    return fmt.count(x, na="")


def _marker_sizes(weights: np.ndarray) -> np.ndarray:
    """Marker size (diameter, px) with area proportional to the weight."""
    w = np.asarray(weights, float)
    if w.size == 0 or not np.isfinite(w).any() or np.nanmax(w) <= 0:
        return np.full(w.size, _MAX_MARKER)
    return np.maximum(_MAX_MARKER * np.sqrt(np.nan_to_num(w) / np.nanmax(w)), _MIN_MARKER)


def _title_lines(title: str, width: float) -> list[str]:
    """A group title on one line, or on two (broken after its arrow, else at the last space that fits) when it
    is wider than ``width`` px: a direction's name should not widen its estimate column by half."""
    if text_width(title, bold=True) <= width or " " not in title:
        return [title]
    for sep in (" → ", " "):
        if sep in title:
            cut = title.index(sep) if sep == " → " else title.rindex(" ", 0, max(1, len(title) // 2 + 1))
            head, tail = (title[:cut + 2], title[cut + 3:]) if sep == " → " else (title[:cut], title[cut + 1:])
            return [head.rstrip(), tail.strip()]
    return [title]


def _model_label(res: MetaResult) -> str:
    kind = "FE model" if res.method == "FE" else "RE model"
    test = "z" if res.test == "z" else "Knapp\u2013Hartung t"
    return f"{kind} ({res.method}, {test})"


def _heterogeneity_text(res: MetaResult) -> str:
    """Two lines: τ² [CI], I², H², Q test; then the estimator, the test and k."""
    if res.k == 1:
        return "Only one study (k = 1): nothing was pooled; no heterogeneity or prediction interval."
    parts = []
    if res.method != "FE":
        tau = f"\u03c4\u00b2 = {fmt.tau2(res.tau2)}"
        if _finite(res.tau2_ci_low, res.tau2_ci_high):
            tau += f" {fmt.tau2_interval(res.tau2_ci_low, res.tau2_ci_high)}"
        parts.append(tau)
    parts.append(f"I\u00b2 = {fmt.num(res.i2, 1)}%")
    parts.append(f"H\u00b2 = {fmt.num(res.h2, 2)}")
    parts.append(f"{fmt.stat('Q', res.q, res.q_df)}, {fmt.p_text(res.q_pvalue)}")
    test = "z-test" if res.test == "z" else f"Knapp\u2013Hartung t-test (df = {fmt.count(res.df)})"
    line2 = f"Estimator: {res.method} ({METHOD_NAMES[res.method]}); test: {test}; k = {res.k}"
    return "Heterogeneity: " + ", ".join(parts) + "<br>" + line2


def meta_panel(res: MetaResult, title: str | None = None, key: str = "") -> ForestPanel:
    """A :class:`ForestPanel` drawing a :class:`~analysis.meta.MetaResult`
    (rows from ``studies_frame()``; summary, PI and heterogeneity from the result).
    With one study (k = 1) there is no summary and no prediction interval."""
    sf = res.studies_frame()
    npat = sf["n_patients"] if "n_patients" in sf else pd.Series(np.nan, index=sf.index)
    npairs = sf["n_pairs"] if "n_pairs" in sf else pd.Series(np.nan, index=sf.index)
    rows = tuple(
        ForestRow(str(lab), float(y), float(lo), float(hi), float(w), float(a), float(b))
        for lab, y, lo, hi, w, a, b in zip(sf["study"], sf["yi"], sf["ci_low"], sf["ci_high"], sf["weight"],
                                          npat, npairs)
    )
    pooled = res.k > 1
    return ForestPanel(
        studies=rows, title=title, key=key,
        summary=(res.estimate, res.ci_low, res.ci_high) if pooled else None,
        pi=(res.pi_low, res.pi_high) if pooled and _finite(res.pi_low, res.pi_high) else None,
        footer=_heterogeneity_text(res),
    )


# --------------------------------------------------------------------------- layout helpers


@dataclass
class _Column:
    header: str
    cells: dict[float, tuple[str, bool]]  # y -> (plain text, bold)
    align: str  # "left" or "right"
    name: str
    color: dict[float, str] | None = None
    min_width: float = 0.0

    def width(self) -> float:
        ws = [text_width(self.header, bold=True), self.min_width]
        ws += [text_width(t, bold=b) for t, b in self.cells.values()]
        return max(ws)


def _place(columns: Sequence[_Column], start: float) -> tuple[list[tuple[_Column, float, float]], float]:
    """Columns side by side from ``start`` px: (column, left px, right px) and the end px."""
    out = []
    x = start
    for i, col in enumerate(columns):
        w = col.width()
        out.append((col, x, x + w))
        x += w + (_GAP if i < len(columns) - 1 else 0)
    return out, x


def _annotation(text: str, y: float, x: float, shift: float, anchor: str, name: str, bold: bool = False,
                color: str | None = None, size: float = FONT_SIZE) -> dict:
    t = html.escape(text, quote=False)
    if bold:
        t = f"<b>{t}</b>"
    font = {"size": size}
    if color:
        font["color"] = color
    return {"text": t, "x": x, "xref": "paper", "xshift": shift, "xanchor": anchor, "y": y, "yref": "y",
            "yanchor": "middle", "showarrow": False, "name": name, "font": font, "borderpad": 0,
            "borderwidth": 0, "align": anchor}


def _column_annotations(placed, y_header: float, origin_px: float, x_paper: float) -> list[dict]:
    """Annotations for placed columns; px are measured from ``origin_px`` (the paper x = ``x_paper``).
    A column's cells on rows a whole number of rows apart are one multi-line annotation (:func:`_block`)."""
    out = []
    for col, left, right in placed:
        anchor, px = ("left", left) if col.align == "left" else ("right", right)
        shift = px - origin_px
        out.append(_annotation(col.header, y_header, x_paper, shift, anchor, "Header", bold=True))
        cells = [_annotation(text, y, x_paper, shift, anchor, col.name, bold=bold, color=(col.color or {}).get(y))
                 for y, (text, bold) in sorted(col.cells.items(), key=lambda c: -c[0]) if text.strip()]
        run: list[dict] = []
        for a in cells:
            if not _HEX.match(a["font"].get("color") or "#000"):  # (a block's lines take hex colours only)
                out.append(a)
                continue
            gap = run[-1]["y"] - a["y"] if run else 1.0
            if run and not (abs(gap - round(gap)) < 1e-9 and 1 <= round(gap) <= _MAX_BLANK + 1):
                out.append(_block(run))
                run = []
            run.append(a)
        if run:
            out.append(_block(run))
    return out


#: blank lines a text block bridges (rows without a cell in this column, e.g. a study missing in one panel)
_MAX_BLANK = 3
#: plotly draws the lines of a multi-line text 1.3 em apart; a block's font makes that one row (_ROW_PX)
_LINE_SPACING = 1.3
_BLOCK_SIZE = _ROW_PX / _LINE_SPACING
_HEX = re.compile(r"^#[0-9a-fA-F]{3,8}$")


def _block(cells: list[dict]) -> dict:
    """One annotation for a column's cells on successive rows (top row first), one line per row.

    A 200-study forest has about 1,000 cells; as separate annotations chromium needs seconds to lay them
    out (each is measured on its own), as one block per column well under one (issue 24). The block's
    font size makes plotly's line spacing exactly one row; each line carries the cell's own size and
    colour. :func:`cell_annotations` turns blocks back into one annotation per cell.
    """
    if len(cells) == 1:
        return cells[0]
    lines, prev = [], None
    for a in cells:
        if prev is not None:
            lines += [" "] * (round(prev - a["y"]) - 1)
        font = a["font"]
        style = f"font-size:{font['size']}px" + (f";color:{font['color']}" if font.get("color") else "")
        lines.append(f'<span style="{style}">{a["text"]}</span>')
        prev = a["y"]
    return {**cells[0], "text": "<br>".join(lines), "y": (cells[0]["y"] + cells[-1]["y"]) / 2,
            "font": {"size": _BLOCK_SIZE}}


_LINE_STYLE = re.compile(r'^<span style="font-size:([0-9.]+)px(?:;color:([^"]+))?">(.*)</span>$', re.S)


def cell_annotations(annotations: Sequence[dict]) -> list[dict]:
    """A forest figure's annotations with every text block (:func:`_block`) split into one annotation per
    cell (its row's ``y``, own font size and colour): what tests and readers of the figure's JSON inspect."""
    out = []
    for a in annotations:
        a = dict(a)
        lines = str(a.get("text", "")).split("<br>")
        size = (a.get("font") or {}).get("size")
        if len(lines) < 2 or size is None or abs(size - _BLOCK_SIZE) > 1e-9:
            out.append(a)
            continue
        top = a["y"] + (len(lines) - 1) / 2
        for i, line in enumerate(lines):
            m = _LINE_STYLE.match(line)
            if m is None:
                continue  # a blank line
            font = {"size": float(m.group(1))} | ({"color": m.group(2)} if m.group(2) else {})
            out.append({**a, "text": m.group(3), "y": round(top - i, 9), "font": font})
    return out


def _x_range(panels: Sequence[ForestPanel], null_value: float | None) -> list[float]:
    vals: list[float] = []
    for p in panels:
        rows = list(p.studies) + ([p.new] if p.new is not None else [])
        for r in rows:
            vals += [r.estimate, r.ci_low, r.ci_high]
        if p.summary is not None:
            vals += list(p.summary)
        if p.pi is not None:
            vals += list(p.pi)
    if null_value is not None:
        vals.append(null_value)
    arr = np.array([x for x in vals if _finite(x)], float)
    if arr.size == 0:
        return [-1.0, 1.0]
    lo, hi = float(arr.min()), float(arr.max())
    pad = 0.05 * (hi - lo) if hi > lo else 0.5
    return [lo - pad, hi + pad]


def _row_order(panels: Sequence[ForestPanel]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()
    for p in panels:
        labels = [r.label for r in p.studies]
        if len(set(labels)) != len(labels):
            dup = sorted({x for x in labels if labels.count(x) > 1})
            raise ValueError(f"Study labels must be unique to align rows; repeated: {', '.join(dup[:5])}.")
        for lab in labels:
            if lab not in seen:
                seen.add(lab)
                order.append(lab)
    return order


def _count_columns(panels: Sequence[ForestPanel], order: list[str], y_of: dict[str, float],
                   show_pairs: bool) -> tuple[list[_Column], bool]:
    """The N patients and N pairs columns ("a / b" when two panels' pair counts differ)."""
    npat: dict[str, float] = {}
    pairs: list[dict[str, float]] = []
    for p in panels:
        pairs.append({r.label: r.n_pairs for r in p.studies if _finite(r.n_pairs)})
        for r in p.studies:
            if _finite(r.n_patients):
                npat.setdefault(r.label, r.n_patients)
    cols: list[_Column] = []
    if npat:
        cols.append(_Column("N patients", {y_of[lab]: (_count(npat[lab]), False) for lab in order if lab in npat},
                            "right", "N patients"))
    differ = False
    cells: dict[float, tuple[str, bool]] = {}
    for lab in order:
        vals = [c[lab] for c in pairs if lab in c]
        if not vals:
            continue
        if len(vals) == 2 and vals[0] != vals[1]:
            differ = True
            cells[y_of[lab]] = (f"{_count(vals[0])} / {_count(vals[1])}", False)
        else:
            cells[y_of[lab]] = (_count(vals[0]), False)
    same_as_patients = all(lab in npat and npat[lab] == c[lab] for c in pairs for lab in c)
    if show_pairs and cells and not (npat and same_as_patients):
        cols.append(_Column("N pairs (A / B)" if differ else "N pairs", cells, "right", "N pairs"))
    return cols, differ and show_pairs


def _panel_traces(fig: go.Figure, p: ForestPanel, axis: int, y_of: dict[str, float], ys: dict[str, float],
                  y_top: float, null_value: float | None, new_style: dict, suffix: str) -> None:
    """The markers, CIs, summary diamond, PI bar and reference lines of one panel."""
    xref = "x" if axis == 1 else f"x{axis}"
    role_meta = {"direction": p.key}
    bottom = ys["bottom"] - 0.5
    if p.shade_pi and p.pi is not None:
        fig.add_shape(type="rect", x0=p.pi[0], x1=p.pi[1], xref=xref, y0=bottom, y1=y_top, yref="y",
                      fillcolor=PI_FILL, line={"width": 0}, layer="below", name="prediction interval band")
    if null_value is not None:
        fig.add_shape(type="line", x0=null_value, x1=null_value, xref=xref, y0=bottom, y1=y_top, yref="y",
                      line={"color": "#999999", "width": 1}, name="null line")
    if p.summary is not None and "summary" in ys:
        fig.add_shape(type="line", x0=p.summary[0], x1=p.summary[0], xref=xref, y0=ys["summary"], y1=y_top,
                      yref="y", line={"color": POOLED_COLOR, "width": 1, "dash": "dot"}, name="pooled line")
    if p.studies:
        est = np.array([r.estimate for r in p.studies], float)
        lo = np.array([r.ci_low for r in p.studies], float)
        hi = np.array([r.ci_high for r in p.studies], float)
        w = np.array([r.weight for r in p.studies], float)
        hover = [
            f"{html.escape(r.label)}<br>{fmt.estimate_ci(r.estimate, r.ci_low, r.ci_high)}"
            + (f"<br>weight {fmt.num(r.weight, 1)}%" if _finite(r.weight) else "")
            + (f"<br>N patients {_count(r.n_patients)}" if _finite(r.n_patients) else "")
            + (f"<br>N pairs {_count(r.n_pairs)}" if _finite(r.n_pairs) else "")
            for r in p.studies
        ]
        fig.add_trace(go.Scatter(
            x=est, y=[y_of[r.label] for r in p.studies], mode="markers", name="Studies" + suffix,
            marker={"symbol": "square", "size": _marker_sizes(w), "color": STUDY_COLOR},
            error_x={"type": "data", "symmetric": False, "array": hi - est, "arrayminus": est - lo,
                     "color": STUDY_COLOR, "thickness": 1.2, "width": 0},
            hovertext=hover, hoverinfo="text", showlegend=False, customdata=w,
            meta={"role": "studies", **role_meta},
        ), row=1, col=axis)
    if p.new is not None and "new" in ys:
        e = p.new
        fig.add_trace(go.Scatter(
            x=[e.estimate], y=[ys["new"]], mode="markers", name="New study" + suffix,
            marker={"symbol": "circle", "size": 13, "color": new_style["color"],
                    "line": {"color": "white", "width": 1}},
            error_x={"type": "data", "symmetric": False, "array": [e.ci_high - e.estimate],
                     "arrayminus": [e.estimate - e.ci_low], "color": new_style["color"], "thickness": 2.5,
                     "width": 6},
            hovertext=f"{html.escape(e.label)}<br>{fmt.estimate_ci(e.estimate, e.ci_low, e.ci_high)}",
            hoverinfo="text", showlegend=False, meta={"role": "new", **role_meta},
        ), row=1, col=axis)
    if p.summary is not None and "summary" in ys:
        est, lo, hi = p.summary
        y0 = ys["summary"]
        if _finite(lo, hi):
            h = 0.38
            fig.add_trace(go.Scatter(
                x=[lo, est, hi, est, lo], y=[y0, y0 + h, y0, y0 - h, y0], mode="lines", fill="toself",
                fillcolor=POOLED_COLOR, line={"color": POOLED_COLOR, "width": 1}, name="Pooled estimate" + suffix,
                hovertext=f"{fmt.estimate_ci(est, lo, hi)}", hoverinfo="text", showlegend=False,
                meta={"role": "reference", **role_meta},
            ), row=1, col=axis)
        else:
            fig.add_trace(go.Scatter(
                x=[est], y=[y0], mode="markers", marker={"symbol": "diamond", "size": 14, "color": POOLED_COLOR},
                name="Pooled estimate" + suffix, hovertext=fmt.num(est), hoverinfo="text", showlegend=False,
                meta={"role": "reference", **role_meta},
            ), row=1, col=axis)
    if p.pi is not None and "pi" in ys:
        fig.add_trace(go.Scatter(
            x=list(p.pi), y=[ys["pi"], ys["pi"]], mode="lines+markers", line={"color": PI_COLOR, "width": 2},
            marker={"symbol": "line-ns-open", "size": 10, "color": PI_COLOR}, name="Prediction interval" + suffix,
            hovertext=f"prediction interval {fmt.interval(*p.pi)}", hoverinfo="text", showlegend=False,
            meta={"role": "pi", **role_meta},
        ), row=1, col=axis)


def _estimate_columns(panels, y_of, ys, pct, paired) -> tuple[list[_Column], list[tuple[str, int]]]:
    """Right-hand columns: per panel "estimate [CI]" (studies, new, summary, PI rows) and weight; and each
    panel's (title, index of its first column)."""
    right_cols: list[_Column] = []
    groups: list[tuple[str, int]] = []
    for p in panels:
        est = _Column(f"Estimate [{pct} CI]", {}, "right", "Estimate" + (f" ({p.title})" if paired else ""))
        # one number of decimals for the whole column (APA), from its largest magnitude
        d = fmt.decimals_for([v for r in (*p.studies, *((p.new,) if p.new is not None else ()))
                              for v in (r.estimate, r.ci_low, r.ci_high)]
                             + list(p.summary or ()) + list(p.pi or ()))
        for r in p.studies:
            est.cells[y_of[r.label]] = (fmt.estimate_ci(r.estimate, r.ci_low, r.ci_high, decimals=d), False)
        if p.new is not None and "new" in ys:
            est.cells[ys["new"]] = (fmt.estimate_ci(p.new.estimate, p.new.ci_low, p.new.ci_high, decimals=d), True)
        if p.summary is not None:
            e, lo, hi = p.summary
            est.cells[ys["summary"]] = (fmt.estimate_ci(e, lo, hi, decimals=d) if _finite(lo, hi)
                                        else fmt.fixed(e, d), True)
        if p.pi is not None:
            est.cells[ys["pi"]] = (fmt.interval(*p.pi, decimals=d), False)
        groups.append((p.title or "", len(right_cols)))
        right_cols.append(est)
        wcells = {y_of[r.label]: (f"{fmt.num(r.weight, 1)}%", False) for r in p.studies if _finite(r.weight)}
        if wcells and not paired:  # (paired panels: marker area shows the weight, as metafor's default)
            right_cols.append(_Column("Weight", wcells, "right", "Weight" + (f" ({p.title})" if paired else "")))
    return right_cols, groups


def _footer_annotations(panels, letters, paired, differ, notes, ml) -> tuple[list[dict], float]:
    """Lines below the axes (verdicts, heterogeneity, the N-pairs footnote, notes) and the final y shift."""
    annotations: list[dict] = []
    # (text, name, colour): a verdict is coloured through its annotation's font, never a styled <span>
    # (ui.safe.safe_figure turns styled spans into visible text).
    foot_lines: list[tuple[str, str, str | None]] = []
    for i, p in enumerate(panels):
        head = f"<b>{letters[i]} ({html.escape(p.title)})</b>: " if paired and p.title else ""
        if p.subtitle:
            foot_lines.append((head + html.escape(p.subtitle), "verdict", p.subtitle_color))
    for i, p in enumerate(panels):
        head = f"<b>{letters[i]} ({html.escape(p.title)})</b>: " if paired and p.title else ""
        if p.footer:
            foot_lines.append((head + p.footer, "heterogeneity", None))
    if differ:
        a, b = (html.escape(p.title or f"panel {i + 1}") for i, p in enumerate(panels[:2]))
        foot_lines.append((f"N pairs (A / B): session pairs used in A ({a}) and in B ({b}); "
                           "one number when both are equal.", "footnote", None))
    foot_lines += [(html.escape(t), "footnote", None) for t in notes]
    line_px = 15
    shift = -50
    for text, name, color in foot_lines:
        font = {"size": FOOT_SIZE} if color is None else {"size": FOOT_SIZE, "color": color}
        annotations.append({"text": text, "x": 0.0, "xref": "paper", "xshift": -ml + _PAD, "xanchor": "left",
                            "y": 0.0, "yref": "paper", "yanchor": "top", "yshift": shift, "align": "left",
                            "showarrow": False, "font": font, "name": name})
        shift -= line_px * (text.count("<br>") + 1) + 3
    return annotations, shift


def _row_positions(panels, order, new_label) -> tuple[dict, dict, float]:
    """y of the special rows (prediction interval, summary, new study; bottom up), of each study row, and the
    y of the lowest study row."""
    ys: dict[str, float] = {"bottom": 0.0}
    y = 0.0
    if any(p.pi is not None for p in panels):
        ys["pi"], y = y, y + 1
    if any(p.summary is not None for p in panels):
        ys["summary"], y = y, y + 1
    if new_label is not None:
        ys["new"], y = y, y + 1
    if y > 0:
        y += 0.4
    n = len(order)
    y_of = {lab: round(y + (n - 1 - i), 9) for i, lab in enumerate(order)}  # (9 decimals: see cell_annotations)
    return ys, y_of, y


def _label_column(order, y_of, ys, new_label, new_color, summary_label, pct, paired) -> _Column:
    """The study-label column (names cut shorter when two panels need the width) with the special rows."""
    cut = _LABEL_CHARS_PAIRED if paired else _LABEL_CHARS
    labels = _Column("Study", {y_of[lab]: (_short(lab, cut), False) for lab in order}, "left", "Study label", {})
    if new_label is not None:
        labels.cells[ys["new"]] = (_short(new_label, cut), True)
        labels.color[ys["new"]] = new_color
    if "summary" in ys:
        labels.cells[ys["summary"]] = (summary_label, True)
    if "pi" in ys:
        labels.cells[ys["pi"]] = (f"{pct} prediction interval", False)
    return labels


def _group_titles(right_cols: list, groups: list) -> list[tuple[list[str], int]]:
    """Paired panels: each group title ("A: direction", on two lines when wider than its estimate column) with
    the index of that column, which is widened to fit the title."""
    out = []
    for j, (t, i) in enumerate(groups):
        lines = _title_lines(f"{chr(ord('A') + j)}: {t}", right_cols[i].width())
        rest = sum(c.width() + _GAP for c in right_cols[i + 1:i + 2] if not c.name.startswith("Estimate"))
        right_cols[i].min_width = max(text_width(x, bold=True) for x in lines) - rest
        out.append((lines, i))
    return out


def _panel_axes(fig, panels, letters, y_of, ys, top_line, null_value, new_color, xlabel, xr,
                plot_px: float) -> list[dict]:
    """Draw each panel's traces and x-axis; return the panel-title annotations. ``plot_px``: the width of all
    panels together in a 1,000 px figure (a paired panel's title names its direction when it fits there)."""
    paired = len(panels) > 1
    out = []
    for i, p in enumerate(panels):
        suffix = f" ({p.title})" if paired and p.title else ""
        _panel_traces(fig, p, i + 1, y_of, ys, top_line, null_value, {"color": new_color}, suffix)
        axis = "xaxis" if i == 0 else f"xaxis{i + 1}"
        # tick labels stay horizontal and few: narrow paired panels otherwise rotate them onto the axis title
        # on screen (issue 23 #3)
        fig.layout[axis].update(title_text=None if paired else xlabel, range=xr, zeroline=False, showgrid=True,
                                gridcolor="#eeeeee", fixedrange=False, tickangle=0, nticks=4 if paired else 0)
        if not p.title:
            continue
        dom = fig.layout[axis].domain
        head = p.title
        if paired:  # the letter used in the right-hand columns and footers, plus the direction when it fits
            full = f"{letters[i]}: {head}"
            head = full if text_width(full, 13, bold=True) + 8 <= plot_px * (dom[1] - dom[0]) else letters[i]
        out.append({"text": f"<b>{html.escape(head)}</b>", "x": (dom[0] + dom[1]) / 2, "xref": "paper",
                    "xanchor": "center", "y": 1.0, "yref": "paper", "yanchor": "bottom", "yshift": 4,
                    "showarrow": False, "font": {"size": 13}, "name": "panel title"})
    return out


def forest_panels_figure(
    panels: Sequence[ForestPanel],
    xlabel: str = "Effect size",
    title: str | None = None,
    null_value: float | None = 0.0,
    summary_label: str = "Pooled estimate",
    level: float = 0.95,
    new_label: str | None = None,
    new_color: str = NEW_COLOR,
    show_pairs: bool = True,
    notes: Sequence[str] = (),
    estimate_columns: bool = True,
) -> go.Figure:
    """The one forest builder: panels side by side sharing the study rows.

    Rows, top to bottom: the studies (union over panels, in order of first appearance; a study missing from a
    panel is an empty row there), the highlighted row ``new_label`` (when given), the summary row
    ``summary_label`` and the prediction-interval row (each only when some panel has one). Left margin: study, N patients, N pairs ("a / b" when two
    panels' counts differ, explained in a footnote); right margin: per panel
    estimate [CI] and weight (``estimate_columns=False`` leaves them out, so that three or more panels
    keep a readable width; the numbers stay in the hover). Columns are placed in px from :func:`text_width`.
    Below the axes: each panel's footer (heterogeneity) and ``notes``.
    ``layout.meta`` holds ``rows`` and the y of the ``new``/summary/PI rows.
    """
    panels = list(panels)
    if not panels:
        raise ValueError("A forest plot needs at least one panel.")
    paired = len(panels) > 1
    order = _row_order(panels)
    n = len(order)
    ys, y_of, y = _row_positions(panels, order, new_label)
    y_header = y + max(n, 1) - 1 + 1.3
    y_group = y_header + 1.0
    y_top = (y_group if paired else y_header) + 0.7
    y_bottom = -0.7
    pct = f"{100 * level:g}%"

    # ------------------------------------------------------------ left block
    labels = _label_column(order, y_of, ys, new_label, new_color, summary_label, pct, paired)
    counts, differ = _count_columns(panels, order, y_of, show_pairs)
    left, left_end = _place([labels, *counts], _PAD)
    ml = left_end + 2 * _PAD

    # ------------------------------------------------------------ right block
    right_cols, groups = _estimate_columns(panels, y_of, ys, pct, paired) if estimate_columns else ([], [])
    titles = _group_titles(right_cols, groups) if paired else []
    if any(len(lines) > 1 for lines, _ in titles):
        y_top += 1.0
    right, right_end = _place(right_cols, 2 * _PAD)
    mr = right_end + _PAD

    annotations = _column_annotations(left, y_header, ml, 0.0)
    annotations += _column_annotations(right, y_header, 0.0, 1.0)
    annotations = [a for a in annotations if a["text"].strip()]  # (headers: cells are kept only with text)
    for lines, i in titles:
        ann = _annotation(lines[0], y_group + (0.5 if len(lines) > 1 else 0), 1.0, right[i][1], "left",
                          "Group title", bold=True)
        ann["text"] = "<br>".join(f"<b>{html.escape(x, quote=False)}</b>" for x in lines)
        annotations.append(ann)

    # ------------------------------------------------------------ panels
    ncols = len(panels)
    fig = make_subplots(rows=1, cols=ncols, shared_yaxes=True, horizontal_spacing=0.06 if paired else 0.0)
    xr = _x_range(panels, null_value)
    top_line = y + max(n, 1) - 1 + 0.5
    letters = [chr(ord("A") + i) for i in range(ncols)]
    annotations += _panel_axes(fig, panels, letters, y_of, ys, top_line, null_value, new_color, xlabel, xr,
                               _REF_WIDTH - ml - mr)
    if paired:  # one x-axis title under both panels
        annotations.append({"text": html.escape(xlabel), "x": 0.5, "xref": "paper", "y": 0.0, "yref": "paper",
                            "yanchor": "top", "yshift": -24, "showarrow": False, "font": {"size": 14},
                            "name": "x title"})

    # ------------------------------------------------------------ footers below the axes
    if paired and any(_finite(r.weight) for p in panels for r in p.studies):
        notes = (*notes, "Marker area: the study's weight in its panel's pooled estimate.")
    feet, shift = _footer_annotations(panels, letters, paired, differ, notes, ml)
    annotations += feet
    top = (45 if title else 12) + (22 if any(p.title for p in panels) else 0)
    bottom = -shift + 8
    height = int(top + bottom + _ROW_PX * (y_top - y_bottom))
    fig.update_yaxes(visible=False, range=[y_bottom, y_top], fixedrange=True)
    fig.update_layout(
        title={"text": title} if title else None,
        height=height,
        showlegend=False,
        plot_bgcolor="white",
        margin={"l": int(math.ceil(ml)), "r": int(math.ceil(mr)), "t": top, "b": int(bottom)},
        font={"family": FONT_FAMILY, "size": FONT_SIZE},
        meta={"rows": order, "y_rows": [y_of[lab] for lab in order], "y_header": y_header,
              "y_new": ys.get("new"), "y_ref": ys.get("summary"), "y_pooled": ys.get("summary"),
              "y_pi": ys.get("pi"), "margin_px": [ml, mr]},
    )
    # Several annotations per study row: plotly's per-property validation of ~1,000 of them takes
    # seconds, so they are attached unvalidated (they are built here from fixed keys; a test
    # re-validates the whole figure).
    spec = fig.to_plotly_json()
    spec["layout"]["annotations"] = annotations
    return go.Figure(spec, _validate=False)


def forest_figure(
    result: MetaResult,
    title: str | None = None,
    xlabel: str = "Effect size",
    null_value: float | None = 0.0,
    show_pairs: bool = True,
) -> go.Figure:
    """Forest plot of a :class:`~analysis.meta.MetaResult`.

    One row per study (label, N patients and N pairs when the result has
    them, the effect with its normal-theory CI from ``studies_frame()``, a
    square whose area is proportional to the weight, "estimate [CI]" and the
    weight in percent), the pooled diamond (CI of the pooled estimate), the
    prediction interval, and the heterogeneity statistics (τ² with its
    Q-profile CI, I², H², Q test) naming the estimator and the test. With one
    study nothing is pooled, so there is no diamond and no prediction
    interval. ``show_pairs=False`` drops the N pairs column (it is dropped
    anyway when it equals N patients). ``null_value`` draws a reference line.
    """
    if not isinstance(result, MetaResult):
        raise ValueError("forest_figure needs a MetaResult from analysis.meta.random_effects.")  # noqa: TRY004
    return forest_panels_figure([meta_panel(result)], xlabel, title, null_value, _model_label(result),
                                result.level, show_pairs=show_pairs)


def paired_forest_figure(
    result_a: MetaResult,
    result_b: MetaResult,
    titles: Sequence[str] = ("Alliance \u2192 symptoms", "Symptoms \u2192 alliance"),
    xlabel: str = "Effect size",
    title: str | None = None,
    null_value: float | None = 0.0,
) -> go.Figure:
    """Two forest panels side by side (e.g. alliance → symptoms beside
    symptoms → alliance) sharing one study column, so that the same study is
    on the same row in both. A study present in only one result is an empty
    row in the other panel. Both panels share the x range. Each panel has its
    own pooled diamond, prediction interval and heterogeneity line.
    """
    if not isinstance(result_a, MetaResult) or not isinstance(result_b, MetaResult):
        raise ValueError("paired_forest_figure needs two MetaResult objects.")  # noqa: TRY004
    titles = list(titles)
    if len(titles) != 2:
        raise ValueError("titles must hold two panel titles.")
    panels = [meta_panel(result_a, titles[0], "a"), meta_panel(result_b, titles[1], "b")]
    return forest_panels_figure(panels, xlabel, title, null_value, "Pooled estimate", result_a.level)


# Names used before the *_figure rule (other pages and users' scripts import them).



def funnel_figure(
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
        raise ValueError("funnel_figure needs a MetaResult for the pooled estimate.")  # noqa: TRY004
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
        x=[est, est], y=[0.0, se_max], mode="lines", line={"color": POOLED_COLOR, "width": 1.5},
        name=f"Pooled estimate ({result.method})",
    ))
    fig.add_trace(go.Scatter(
        x=y, y=se, mode="markers", marker={"color": STUDY_COLOR, "size": 8},
        name="Studies", hovertext=[f"{html.escape(a)}<br>{fmt.num(b)} (SE {fmt.num(c, 3)})" for a, b, c in zip(lab, y, se)],
        hoverinfo="text",
    ))
    fig.update_yaxes(title_text="Standard error", autorange="reversed", rangemode="tozero")
    fig.update_xaxes(title_text=xlabel)
    fig.update_layout(title={"text": title} if title else None, plot_bgcolor="white",
                      legend={"orientation": "h", "y": -0.2})
    return fig


def leave_one_out_figure(
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
            "leave_one_out_figure needs the table from analysis.meta.leave_one_out "
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
        x=est, y=ys, mode="markers", marker={"symbol": "square", "size": 9, "color": STUDY_COLOR},
        error_x={"type": "data", "symmetric": False, "array": hi - est, "arrayminus": est - lo,
                     "color": STUDY_COLOR, "width": 0},
        name="Leave-one-out estimates",
        hovertext=[f"{html.escape(a)}: {fmt.estimate_ci(b, c, d)}" for a, b, c, d in zip(labels, est, lo, hi)],
        hoverinfo="text",
    ))
    full = df.attrs.get("estimate")
    if full is not None and math.isfinite(full):
        fig.add_trace(go.Scatter(
            x=[full, full], y=[0.4, n + 0.6], mode="lines",
            line={"color": POOLED_COLOR, "dash": "dash", "width": 1.5},
            name=f"All studies ({fmt.num(full)})",
        ))
    sub = ""
    if "method" in df.attrs:
        sub = f"{df.attrs['method']}, {'z' if df.attrs.get('test') == 'z' else 'Knapp-Hartung t'}"
    fig.update_yaxes(tickmode="array", tickvals=ys, ticktext=[html.escape(_short(s, 40)) for s in labels],
                     range=[0.3, n + 0.7], showgrid=False)
    fig.update_xaxes(title_text=xlabel + (f" ({sub})" if sub else ""), zeroline=True,
                     zerolinecolor="#999999")
    fig.update_layout(title={"text": title} if title else None, plot_bgcolor="white",
                      height=int(_ROW_PX * n + 160), showlegend=True,
                      legend={"orientation": "h", "y": -0.15})
    return fig


