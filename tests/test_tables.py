"""Manuscript tables (issue 23): one formatting rule for table cells; the Word (.docx) table opens and
reads back with APA-formatted cells; the LaTeX table escapes every cell."""

import io

import numpy as np
import pandas as pd
from docx import Document

from analysis import formatting as fmt
from analysis import tables
from analysis.pipeline import two_stage
from analysis.simulate import simulate_collection

RESULT = pd.DataFrame({
    "study": ["Trial_A & B", "Trial C"], "estimate": [-0.1234, 0.0042], "se": [0.05, 0.0011],
    "df": [1542.0, 12.5], "pvalue": [3e-9, 0.0421], "n_pairs": [1200, 35], "tau2": [0.00336, np.nan],
    "i2": [45.23, 0.0], "converged": [True, False],
})


def test_cells_follow_the_apa_rule():
    shown = fmt.format_frame(RESULT)
    assert shown["estimate"].tolist() == ["\u22120.12", "0.0042"]  # true minus; small effect visible
    assert shown["pvalue"].tolist() == ["< .001", ".042"]  # never "0.0000"
    assert shown["df"].tolist() == ["1542", "12.5"]  # never "1542.000"
    assert shown["n_pairs"].tolist() == ["1,200", "35"]
    assert shown["tau2"].tolist() == ["0.0034", ""]
    assert shown["converged"].tolist() == ["yes", "no"]
    assert RESULT["pvalue"].iloc[0] == 3e-9  # the frame itself keeps its numbers (the CSV)


def test_word_table_opens_and_reads_back_in_apa_style():
    doc = Document(io.BytesIO(tables.docx_bytes(RESULT, "Per-study coefficients", number=2,
                                                note="CI = confidence interval.")))
    paras = [p.text for p in doc.paragraphs]
    assert paras[0] == "Table 2" and doc.paragraphs[0].runs[0].bold
    assert paras[1] == "Per-study coefficients" and doc.paragraphs[1].runs[0].italic
    assert paras[-1] == "Note. CI = confidence interval."
    (t,) = doc.tables
    rows = [[c.text for c in r.cells] for r in t.rows]
    assert rows[0] == ["Study", "Estimate", "SE", "df", "p", "Pairs", "τ²", "I²", "Converged"]  # readers' names
    assert rows[1] == ["Trial_A & B", "\u22120.12", "0.05", "1542", "< .001", "1,200", "0.0034", "45.2", "yes"]
    assert rows[2][4] == ".042"
    # APA: horizontal rules only — no vertical lines anywhere
    xml = t._tbl.xml
    assert 'w:left w:val="nil"' in xml and 'w:left w:val="single"' not in xml


def test_a_real_result_table_goes_into_word():
    res = two_stage(simulate_collection(k=3, n_patients=(30, 40), sessions=range(1, 7), seed=3).data)
    frame = res.to_frame()[["study", "direction", "estimate", "ci_low", "ci_high", "pvalue"]]
    doc = Document(io.BytesIO(tables.docx_bytes(frame, "Lagged effects")))
    cells = [c.text for r in doc.tables[0].rows[1:] for c in r.cells]
    assert not any(c.startswith("-") for c in cells)  # a true minus, not a hyphen
    assert all(c in ("< .001", "> .999") or c.startswith(".") for c in
               [r.cells[5].text for r in doc.tables[0].rows[1:]])


def test_latex_table_escapes_and_aligns():
    tex = tables.latex(RESULT, "Per-study coefficients", label="tab:coef", note="p values two-sided.")
    assert r"\begin{tabular}{lrrrrrrrl}" in tex
    assert r"Trial\_A \& B" in tex and r"$-$0.12" in tex and r"$<$ .001" in tex
    assert r"Study & Estimate & SE & df & p & Pairs & $\tau$$^2$ & I$^2$ & Converged \\" in tex
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\label{tab:coef}" in tex


def test_interaction_reading_is_grammatical():
    """Issue 23 #10: "for patients with a higher the patient's average alliance"."""
    from analysis.plots_lagged import term_reading

    text = term_reading("interaction")
    assert "higher the" not in text and "for patients with a higher average alliance" in text


def test_rounding_noise_prints_as_zero_not_twenty_decimals():
    """Issue 23 #4: the centering multiverse showed "0.00000000000000000000…" for a numerically zero value."""
    assert fmt.num(4.9e-18) == "0.00" and fmt.num(-3e-17) == "0.00"
    assert fmt.num(0.0042) == "0.0042" and fmt.num(0.000012) == "0.000012"  # small effects still visible
