"""The figures' shared look: Plotly's "plotly_white" template, cut to what the app's figures use.

``template="plotly_white"`` makes Plotly validate the whole template (every trace type's defaults) on
each figure: ~35 ms a figure, on every run of every session that draws it. :data:`WHITE` holds the same
layout values and the bar / histogram defaults, built and validated once (~6 ms a figure; issue 24).
"""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio

__all__ = ["WHITE", "WHITE_LAYOUT_KEYS"]

#: the layout entries of "plotly_white" that the app's 2-D figures use
WHITE_LAYOUT_KEYS = ("autotypenumbers", "colorway", "font", "hovermode", "hoverlabel", "paper_bgcolor",
                     "plot_bgcolor", "xaxis", "yaxis", "shapedefaults", "annotationdefaults", "title")
_WHITE_TRACE_KEYS = ("bar", "histogram")


def _white() -> go.layout.Template:
    full = pio.templates["plotly_white"]
    layout = full.layout.to_plotly_json()
    data = full.data.to_plotly_json()
    return go.layout.Template(layout={k: layout[k] for k in WHITE_LAYOUT_KEYS if k in layout},
                              data={k: data[k] for k in _WHITE_TRACE_KEYS if k in data})


#: pass as ``template=WHITE`` (``fig.update_layout(template=WHITE)``)
WHITE = _white()
