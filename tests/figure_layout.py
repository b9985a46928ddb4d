"""Where a plotly figure's texts land, in pixels, computed from the figure's JSON alone.

Used by the figure tests to check that no two texts (column cells, headers, labels)
overlap at a given figure width. Positions follow plotly's layout rules: the plot
area is the figure minus its margins; an axis maps its range onto its domain;
annotations are placed at x (paper, axis-domain or data) plus ``xshift`` px,
anchored left / right / centre; text-mode trace points are drawn a few px to the
side given by ``textposition``. Widths are measured with PIL and the Liberation
Sans font (the font chromium and kaleido use for Arial) when it is installed, else
estimated at 0.6 em per character.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_FONTS = {
    False: Path("/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"),
    True: Path("/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf"),
}
_CACHE: dict = {}


def measure(text: str, size: float = 12.0, bold: bool = False) -> float:
    """Rendered width of plain ``text`` in px (PIL + Liberation Sans; 0.6 em per character without them)."""
    path = _FONTS[bold]
    try:
        from PIL import ImageFont
    except ImportError:  # pragma: no cover - PIL comes with streamlit
        ImageFont = None
    if ImageFont is None or not path.exists():
        return 0.6 * size * len(text)
    key = (bold, size)
    if key not in _CACHE:
        _CACHE[key] = ImageFont.truetype(str(path), 1000)
    return _CACHE[key].getlength(text) * size / 1000.0


def decode(obj):
    """plotly JSON with typed arrays ({"dtype", "bdata"}) turned back into lists."""
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            if "shape" in obj:
                arr = arr.reshape([int(x) for x in str(obj["shape"]).split(",")])
            return arr.tolist()
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def figure_json(fig) -> dict:
    return decode(json.loads(fig.to_json()))


@dataclass
class Box:
    text: str
    x0: float
    x1: float
    y0: float
    y1: float
    name: str

    def overlaps(self, other: Box, tol: float = 1.0) -> bool:
        return (min(self.x1, other.x1) - max(self.x0, other.x0) > tol
                and min(self.y1, other.y1) - max(self.y0, other.y0) > tol)


def _plain(text: str) -> tuple[list[str], bool]:
    bold = "<b>" in text
    lines = re.split(r"<br\s*/?>", text)
    return [html.unescape(re.sub(r"<[^>]+>", "", ln)) for ln in lines], bold


class _Frame:
    def __init__(self, fj: dict, width: float):
        lay = fj["layout"]
        m = lay.get("margin", {})
        self.l, self.r = m.get("l", 80), m.get("r", 80)
        self.t, self.b = m.get("t", 100), m.get("b", 80)
        self.W = width
        self.H = lay.get("height", 450)
        self.pw = self.W - self.l - self.r
        self.ph = self.H - self.t - self.b
        self.lay = lay
        self.font = (lay.get("font") or {}).get("size", 12)

    def _axis(self, ref: str, letter: str) -> dict:
        suffix = ref[1:]
        return self.lay.get(f"{letter}axis{suffix}", {})

    def x_px(self, x: float, ref: str) -> float:
        if ref == "paper":
            return self.l + x * self.pw
        if ref.endswith(" domain"):
            d = self._axis(ref.split()[0], "x").get("domain", [0, 1])
            return self.l + (d[0] + x * (d[1] - d[0])) * self.pw
        ax = self._axis(ref, "x")
        d, r = ax.get("domain", [0, 1]), ax["range"]
        return self.l + (d[0] + (x - r[0]) / (r[1] - r[0]) * (d[1] - d[0])) * self.pw

    def y_px(self, y: float, ref: str) -> float:  # px from the top
        if ref == "paper":
            return self.t + (1 - y) * self.ph
        ax = self._axis(ref, "y")
        d, r = ax.get("domain", [0, 1]), ax["range"]
        frac = d[0] + (y - r[0]) / (r[1] - r[0]) * (d[1] - d[0])
        return self.t + (1 - frac) * self.ph


def text_boxes(fj: dict, width: float) -> list[Box]:
    """Pixel boxes of every annotation and text-trace point of figure JSON ``fj`` drawn ``width`` px wide."""
    f = _Frame(fj, width)
    boxes: list[Box] = []
    from analysis.plots_meta import cell_annotations

    for a in cell_annotations(f.lay.get("annotations", [])):  # a forest's text blocks: one box per cell
        lines, bold = _plain(str(a.get("text", "")))
        size = (a.get("font") or {}).get("size", f.font)
        w = max(measure(ln, size, bold) for ln in lines)
        h = 1.3 * size * len(lines)
        xref = a.get("xref", "x")
        x = f.x_px(a.get("x", 0.5), xref) + a.get("xshift", 0)
        anchor = a.get("xanchor", "auto")
        if anchor == "auto":
            anchor = "center" if xref != "paper" else ("left" if a.get("x", 0.5) < 1 / 3 else
                                                      "right" if a.get("x", 0.5) > 2 / 3 else "center")
        x0 = x if anchor == "left" else x - w if anchor == "right" else x - w / 2
        y = f.y_px(a.get("y", 0.5), a.get("yref", "y")) - a.get("yshift", 0)
        ya = a.get("yanchor", "auto")
        y0 = y - h if ya == "bottom" else y if ya == "top" else y - h / 2
        boxes.append(Box(" | ".join(lines), x0, x0 + w, y0, y0 + h, a.get("name", "")))
    for tr in fj["data"]:
        if "text" not in str(tr.get("mode", "")) or tr.get("visible") is False:
            continue
        texts = tr.get("text") or []
        if isinstance(texts, str):
            texts = [texts] * len(tr.get("x", []))
        pos = tr.get("textposition", "middle center")
        size = (tr.get("textfont") or {}).get("size", f.font)
        xref, yref = tr.get("xaxis", "x"), tr.get("yaxis", "y")
        for i, (x, y, t) in enumerate(zip(tr.get("x", []), tr.get("y", []), texts)):
            if t is None or x is None or y is None:
                continue
            lines, bold = _plain(str(t))
            w = max(measure(ln, size, bold) for ln in lines)
            if not w:
                continue
            h = 1.3 * size * len(lines)
            px = f.x_px(float(x), xref)
            p = pos[i] if isinstance(pos, list) else pos
            x0 = px + 3 if p.endswith("right") else px - 3 - w if p.endswith("left") else px - w / 2
            py = f.y_px(float(y), yref)
            boxes.append(Box(lines[0], x0, x0 + w, py - h / 2, py + h / 2, tr.get("name", "")))
    return boxes


def overlapping(fj: dict, width: float, tol: float = 1.0) -> list[tuple[Box, Box]]:
    """Pairs of texts that overlap when the figure is ``width`` px wide."""
    boxes = [b for b in text_boxes(fj, width) if b.text.strip()]
    out = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if a.overlaps(b, tol):
                out.append((a, b))
    return out
