"""One-stage beside two-stage in one forest (METHODS §6b), drawn with the one forest builder
(:func:`analysis.plots_meta.forest_panels_figure`): per direction a panel with the studies and the
two-stage pooled diamond and prediction interval, and the one-stage estimate with its CI as the
highlighted row. Draws result objects only."""

from __future__ import annotations

from analysis import plots_meta
from analysis.export import plotly_text
from analysis.plots_meta import ForestRow, forest_panels_figure, meta_panel

__all__ = ["side_by_side_figure"]

ONE_STAGE_LABEL = "One-stage model (REML)"  # fits the paired forest's label column (≤ 28 characters)


def side_by_side_figure(two_stage, one, titles: dict, xlabel: str = "Within-patient lagged coefficient"):
    """Forest of the two-stage analysis (``two_stage.pooled``) with the one-stage estimate
    (``one.fits``) as its highlighted row, one panel per direction that has both."""
    panels = []
    for d, title in titles.items():
        m = two_stage.pooled.get(d)
        f = one.fits.get(d)
        if m is None or f is None:
            continue
        p = meta_panel(m, plotly_text(title), d)
        new = ForestRow(ONE_STAGE_LABEL, f.estimate, f.ci_low, f.ci_high)
        panels.append(type(p)(**{**p.__dict__, "new": new}))
    if not panels:
        raise ValueError("Neither direction has both a one-stage and a two-stage estimate.")
    level = next(iter(two_stage.pooled.values())).level
    return forest_panels_figure(panels, xlabel, None, 0.0, "Two-stage pooled estimate", level,
                                new_label=ONE_STAGE_LABEL, new_color=plots_meta.NEW_COLOR,
                                notes=("Highlighted row: the one-stage model (all patients at once; "
                                       "t interval with Satterthwaite df).",))
