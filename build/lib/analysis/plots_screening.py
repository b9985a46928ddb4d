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

import plotly.graph_objects as go

from analysis.plots_meta import NEW_COLOR, PI_COLOR, POOLED_COLOR, ForestPanel, ForestRow, forest_panels_figure
from analysis.screening import Effect, Reference, place

__all__ = ["NEW_COLOR", "screening_forest_figure"]

_INSIDE_COLOR = "#1b7837"


def _row(e: Effect) -> ForestRow:
    return ForestRow(e.label, e.estimate, e.ci_low, e.ci_high, e.weight, e.n_patients, e.n_pairs)


def screening_forest_figure(
    new: Mapping[str, Effect | None],
    references: Mapping[str, Reference | None],
    titles: Mapping[str, str] | None = None,
    xlabel: str = "Lagged coefficient",
    new_label: str = "New study",
    null_value: float | None = 0.0,
    title: str | None = None,
) -> go.Figure:
    """Forest plot with the screened study highlighted, one panel per direction
    (drawn by :func:`analysis.plots_meta.forest_panels_figure`, the one forest builder).

    ``new``: direction → the screened study's :class:`Effect` (None when it
    could not be fitted; its row stays empty). ``references``: direction →
    :class:`Reference` (None: the study is drawn alone). Rows, top to bottom:
    the reference's studies (blue squares, area ∝ weight, their CIs as
    :func:`analysis.screening.collection_reference` took them from
    ``MetaResult.studies_frame``), the new study (orange circle with its CI),
    the pooled or typed-in estimate (red diamond spanning its CI) and the
    prediction interval (grey bar, also shaded over the panel). Each panel's
    subtitle says whether the new estimate lies inside the prediction interval
    (:func:`analysis.screening.place`); ``layout.meta`` carries ``rows``,
    ``y_new``, ``y_ref``, ``y_pi``, ``inside_pi`` (direction → True/False/None)
    and ``directions``; traces carry ``meta = {"role": "new" | "studies" |
    "reference" | "pi", "direction": …}``.
    """
    dirs = list(new)
    if not dirs:
        raise ValueError("screening_forest_figure needs at least one direction.")
    titles = dict(titles or {})
    first_ref = next((references[d] for d in dirs if references.get(d) is not None), None)
    level = first_ref.level if first_ref is not None else 0.95
    pct = f"{100 * level:g}%"
    panels: list[ForestPanel] = []
    inside: dict[str, bool | None] = {}
    for d in dirs:
        e, ref = new.get(d), references.get(d)
        pl = place(e, ref)
        inside[d] = pl.inside_pi
        if e is None:
            sub, color = "new study: no estimate", PI_COLOR
        elif pl.inside_pi is True:
            sub, color = f"new study inside the {pct} prediction interval", _INSIDE_COLOR
        elif pl.inside_pi is False:
            sub, color = f"new study outside the {pct} prediction interval ({pl.side})", POOLED_COLOR
        elif ref is None:
            sub, color = "no reference to compare with", PI_COLOR
        else:
            sub, color = "no prediction interval to compare with", PI_COLOR
        panels.append(ForestPanel(
            studies=tuple(_row(s) for s in ref.studies) if ref is not None else (),
            title=titles.get(d, d.replace("_", " ")), key=d,
            summary=(ref.estimate, ref.ci_low, ref.ci_high) if ref is not None else None,
            pi=(ref.pi_low, ref.pi_high) if ref is not None and ref.has_pi else None,
            new=_row(e) if e is not None and math.isfinite(e.estimate) else None,
            subtitle=sub, subtitle_color=color, shade_pi=True,
        ))
    summary_label = first_ref.label if first_ref is not None else "Reference"
    fig = forest_panels_figure(panels, xlabel, title, null_value, summary_label, level, new_label=new_label,
                               new_color=NEW_COLOR, notes=[f"Grey band: the reference's {pct} prediction interval."]
                               if any(p.pi is not None for p in panels) else ())
    meta = dict(fig.layout.meta)
    meta.update({"inside_pi": inside, "directions": dirs})
    fig.update_layout(meta=meta)
    return fig


# The name used before the *_figure rule (the Screening page and tests import it).
