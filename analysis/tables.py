"""Manuscript tables: a results frame as an APA-style Word table (.docx) or a LaTeX ``tabular``.

Every cell is written by :func:`analysis.formatting.format_frame` (the one formatting rule: p values
".042" / "< .001", a true minus, small effects visible), so a table in Word reads exactly as on screen.
Headings are the reader's column names (:func:`analysis.formatting.column_name`: "CI low", not "ci_low").
APA 7th ed. (§7.21) table layout: a bold table number, an italic title, horizontal rules only (above and
below the column headings and at the bottom), no vertical lines, a "Note." paragraph underneath.
The raw numbers stay in the CSV download.
"""

from __future__ import annotations

import io

import pandas as pd

from analysis.formatting import column_name, format_frame

_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\u2212": "$-$", "<": r"$<$", ">": r"$>$",
    "τ": r"$\tau$", "²": r"$^2$", "≈": r"$\approx$", "→": r"$\rightarrow$", "±": r"$\pm$", "×": r"$\times$",
}


def _numeric_like(col: pd.Series) -> bool:
    """True when a formatted column holds numbers (right-aligned in print)."""
    vals = [v for v in col.tolist() if v]
    return bool(vals) and all(any(ch.isdigit() for ch in v) and not any(ch.isalpha() for ch in v.replace("NA", ""))
                              for v in vals)


def docx_bytes(df: pd.DataFrame, title: str, number: int = 1, note: str = "") -> bytes:
    """``df`` as an APA-style table in a Word document (python-docx); returns the .docx file's bytes."""
    from docx import Document
    from docx.enum.table import WD_TABLE_ALIGNMENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Pt

    shown = format_frame(df)
    doc = Document()
    style = doc.styles["Normal"]
    style.font.name = "Times New Roman"
    style.font.size = Pt(12)
    p = doc.add_paragraph()
    p.add_run(f"Table {number}").bold = True
    p = doc.add_paragraph()
    p.add_run(str(title)).italic = True
    table = doc.add_table(rows=len(shown) + 1, cols=shown.shape[1])
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    right = [_numeric_like(shown.iloc[:, j]) for j in range(shown.shape[1])]

    def borders(cell, top: bool, bottom: bool) -> None:
        tc_pr = cell._tc.get_or_add_tcPr()
        b = OxmlElement("w:tcBorders")
        for side, on in (("top", top), ("bottom", bottom), ("left", False), ("right", False)):
            el = OxmlElement(f"w:{side}")
            el.set(qn("w:val"), "single" if on else "nil")
            if on:
                el.set(qn("w:sz"), "8")
                el.set(qn("w:color"), "000000")
            b.append(el)
        tc_pr.append(b)

    last = len(shown)
    for j, name in enumerate(shown.columns):
        c = table.cell(0, j)
        c.text = column_name(name)
        c.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.CENTER
        borders(c, top=True, bottom=True)
    for i in range(len(shown)):
        for j in range(shown.shape[1]):
            c = table.cell(i + 1, j)
            c.text = str(shown.iat[i, j])
            c.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.RIGHT if right[j] else WD_ALIGN_PARAGRAPH.LEFT
            borders(c, top=False, bottom=(i + 1 == last))
    if note:
        p = doc.add_paragraph()
        p.add_run("Note.").italic = True
        p.add_run(" " + str(note))
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def _tex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def latex(df: pd.DataFrame, caption: str, label: str = "", note: str = "") -> str:
    """``df`` as a LaTeX ``table`` with a booktabs ``tabular`` (needs ``\\usepackage{booktabs}``); every
    cell and heading escaped, numbers right-aligned."""
    shown = format_frame(df)
    align = "".join("r" if _numeric_like(shown.iloc[:, j]) else "l" for j in range(shown.shape[1]))
    lines = [r"\begin{table}[htbp]", r"\centering", rf"\caption{{{_tex(caption)}}}"]
    if label:
        lines.append(rf"\label{{{_tex(label)}}}")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(_tex(column_name(c)) for c in shown.columns) + r" \\",
              r"\midrule"]
    lines += [" & ".join(_tex(v) for v in row) + r" \\" for row in shown.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if note:
        lines.append(rf"\par\smallskip{{\footnotesize\textit{{Note.}} {_tex(note)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
