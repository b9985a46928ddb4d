"""One formatting rule for every number a reader sees (screen, CSV labels, report, scripts).

APA style, as in the Publication Manual (7th ed., §6.36):

- p values: three decimals without the leading zero, "p < .001" below .001
  (never "p = 0.000000003", never "1.02e-06"), "p > .999" above .999.
- A true minus sign (U+2212) for negative numbers; "−0.00" never appears (it becomes 0.00).
- Enough digits to show small effects: a non-zero value that would round to zero at the
  requested decimals gets two significant digits instead ("0.0042", not "0.00").
- Missing or non-finite values print as "NA" (the word R prints), or the given ``na`` text.

Every module and page formats through these functions, so a change here lands everywhere.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["COLUMN_NAMES", "column_name", "MINUS", "frame_cells", "decimals_for", "fixed", "num", "pvalue", "p_text", "interval", "estimate_ci", "signed", "count", "percent",
           "stat", "tau2", "tau2_interval", "option_text", "cell", "format_frame", "nums"]

MINUS = "\u2212"


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def num(x: Any, digits: int = 2, na: str = "NA", sig: int = 2) -> str:
    """``x`` with ``digits`` decimals, a true minus, and ``sig`` significant digits when small.

    A non-zero value whose rounding to ``digits`` decimals would show only zeros is
    printed with ``sig`` significant digits (0.0042 → "0.0042" at digits = 2).
    """
    if not _finite(x):
        return na
    x = float(x)
    s = f"{x:.{digits}f}"
    if x != 0 and float(s) == 0.0:
        # small but non-zero: show it with significant digits (fixed notation), down to 4 decimals more than
        # asked; anything smaller is numerically zero (rounding noise such as 4.9e-18 prints "0.00")
        decimals = max(digits, sig - 1 - math.floor(math.log10(abs(x))))
        if decimals <= digits + 4:
            s = f"{x:.{decimals}f}"
    if s.startswith("-") and float(s) == 0.0:
        s = s[1:]
    return s.replace("-", MINUS)


def signed(x: Any, digits: int = 2, na: str = "NA") -> str:
    """As :func:`num` with an explicit "+" on positive values (e.g. "+0.40", "−0.12")."""
    s = num(x, digits, na)
    if _finite(x) and not s.startswith(MINUS) and float(x) != 0 and s != na:
        s = "+" + s
    return s


def pvalue(p: Any, na: str = "NA") -> str:
    """The p value alone, APA style: ".042", "< .001", "> .999"."""
    if not _finite(p):
        return na
    p = float(p)
    if p < 0.001:
        return "< .001"
    if p > 0.999:
        return "> .999"
    return f"{p:.3f}".removeprefix("0")


def p_text(p: Any) -> str:
    """The p value for a sentence: "p = .042", "p < .001", "p > .999" ("p = NA" when missing)."""
    v = pvalue(p)
    if v == "NA":
        return "p = NA"
    return "p " + v if v[0] in "<>" else "p = " + v


def decimals_for(values, digits: int = 2, sig: int = 2) -> int:
    """Decimals shared by numbers shown together (an estimate and its bounds; a table column): ``digits``, or more when the largest magnitude
    among ``values`` would show fewer than ``sig`` significant digits (0.0123 → 3 decimals)."""
    big = max((abs(float(v)) for v in values if _finite(v)), default=0.0)
    if big == 0.0:
        return digits
    return max(digits, sig - 1 - math.floor(math.log10(big)))


def fixed(x: Any, decimals: int, na: str = "NA") -> str:
    """``x`` with exactly ``decimals`` decimals and a true minus (numbers shown beside others with the same
    decimals: an interval, a table column). A negative value that rounds to zero keeps its sign ("−0.00"),
    so an interval that crosses zero still says so."""
    if not _finite(x):
        return na
    return f"{float(x) + 0.0:.{decimals}f}".replace("-", MINUS)  # + 0.0: an exact −0.0 prints unsigned


def interval(lo: Any, hi: Any, digits: int = 2, na: str = "NA", decimals: int | None = None) -> str:
    """A confidence interval in brackets, both bounds with the same decimals: "[−0.12, 0.30]".

    The decimals are ``digits``, or more when the larger bound (in magnitude) would show fewer than two
    significant digits: "[0.0012, 0.0091]", "[−0.001, 0.012]", "[−0.00, 0.50]". ``decimals`` fixes them
    (e.g. one :func:`decimals_for` over a whole forest-plot column).
    """
    d = decimals_for((lo, hi), digits) if decimals is None else decimals
    return f"[{fixed(lo, d, na)}, {fixed(hi, d, na)}]"


def estimate_ci(est: Any, lo: Any, hi: Any, digits: int = 2, decimals: int | None = None) -> str:
    """An estimate with its interval, all three with the same decimals (APA): "−0.12 [−0.20, −0.04]",
    "0.005 [−0.001, 0.012]" (the decimals as in :func:`interval`, over the three values)."""
    d = decimals_for((est, lo, hi), digits) if decimals is None else decimals
    return f"{fixed(est, d)} [{fixed(lo, d)}, {fixed(hi, d)}]"


def stat(name: str, value: Any, df: Any = None, digits: int = 2) -> str:
    """A test statistic with its df: "t(1458) = −2.31", "z = 1.96", "F(1, 15) = 4.20"."""
    if df is None or (not isinstance(df, tuple | list) and not _finite(df)):
        return f"{name} = {num(value, digits)}"
    # degrees of freedom take no thousands separator (APA 7th ed., §6.38)
    if isinstance(df, tuple | list):
        d = ", ".join(_df(v) for v in df if _finite(v))
    else:
        d = _df(df)
    return f"{name}({d}) = {num(value, digits)}"


def _df(v: Any) -> str:
    v = float(v)
    return f"{int(v)}" if v.is_integer() else num(v, 1)


def tau2(x: Any, digits: int = 3, sig: int = 2) -> str:
    """A between-study variance (τ²) with ``digits`` decimals and at least ``sig``
    significant digits: 0.313 → "0.313", 0.00336 → "0.0034", 0.0004 → "0.00040"."""
    if not _finite(x) or float(x) == 0:
        return num(x, digits)
    x = float(x)
    decimals = max(digits, sig - 1 - math.floor(math.log10(abs(x))))
    return num(x, decimals)


def tau2_interval(lo: Any, hi: Any, digits: int = 3) -> str:
    """A τ² confidence interval, each bound as :func:`tau2`: "[0.0016, 0.130]"."""
    return f"[{tau2(lo, digits)}, {tau2(hi, digits)}]"


def count(n: Any, na: str = "NA") -> str:
    """A whole number with thousands separators ("5,350")."""
    if not _finite(n):
        return na
    return f"{int(round(float(n))):,}"


def percent(x: Any, digits: int = 0, na: str = "NA") -> str:
    """A share in [0, 1] as a percentage ("82%")."""
    if not _finite(x):
        return na
    return num(100 * float(x), digits) + "%"


def option_text(value: Any) -> str:
    """An option value in words for a reader: None → "none", tuples as ranges or lists, booleans yes/no."""
    if value is None:
        return "none"
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", "") == "b":
        return "yes" if value else "no"
    if isinstance(value, tuple | list):
        if len(value) == 2 and all(_is_number(v) or v is None for v in value):
            lo, hi = value
            lo_t = "first" if lo is None else _option_number(lo)
            hi_t = "last" if hi is None else _option_number(hi)
            return f"{lo_t} to {hi_t}"
        return ", ".join(option_text(v) for v in value) or "none"
    if _is_number(value):
        return _option_number(value)
    return str(value).replace("_", " ")


def _is_number(v: Any) -> bool:
    """int / float (numpy scalars included), not bool."""
    if isinstance(v, bool):
        return False
    if isinstance(v, int | float):
        return True
    return getattr(getattr(v, "dtype", None), "kind", None) in ("i", "u", "f")


def _option_number(v: Any) -> str:
    f = float(v)
    return count(f) if f.is_integer() else num(f, 3)


# --------------------------------------------------------------------------- tables
# A results table is shown, exported to Word/LaTeX and labelled with these rules, chosen by column name
# (the raw numbers stay in the frame and in its CSV download).

_P_NAMES = {"p", "pvalue", "p_value", "q_pvalue", "p value", "p_lrt", "lrt_p", "p (lrt)"}
_DF_NAMES = {"df", "q_df", "df_resid", "ddf", "dof"}
_COUNT_PREFIXES = ("n_", "n ", "k_", "number")
_COUNT_NAMES = {"n", "k", "session", "sessions", "patients", "studies", "pairs", "dyads", "n pairs", "n patients",
                "removed", "remaining", "n_obs", "nobs", "rows"}


def _column_kind(name: Any) -> str:
    """'p' | 'df' | 'tau2' | 'percent' | 'count' | 'number' for a result column, from its name."""
    n = str(name).strip().lower()
    if n in _P_NAMES or n.startswith(("p_", "p (", "pvalue")) or n.endswith(("_p", "_pvalue", " p")):
        return "p"
    if n in _DF_NAMES or n.endswith("_df") or n.startswith("df"):
        return "df"
    if "tau2" in n or "τ²" in n or n in {"variance", "random-intercept variance"}:
        return "tau2"
    if n in {"i2", "i²", "i2 (%)", "i² (%)"} or n.startswith("pct_") or "(%)" in n or n.endswith("%"):
        return "percent"
    if n in _COUNT_NAMES or n.startswith(_COUNT_PREFIXES) or n.endswith(("(n)", "_n")) or n.startswith("sessions_"):
        return "count"
    return "number"


def cell(value: Any, column: Any = "", digits: int = 2) -> str:
    """One table cell for a reader, by its column's kind (:func:`format_frame`): p values APA (".042",
    "< .001"), df whole or with one decimal, τ² as :func:`tau2`, percentages with one decimal, counts with
    thousands separators, other numbers as :func:`num` (true minus, small effects visible); text as it is;
    missing values empty; booleans yes/no."""
    return _cell(value, _column_kind(column), digits)


def column_cells(values: Any, column: Any = "", digits: int = 2) -> list[str]:
    """:func:`cell` of every value of one column (its kind read once from the name).

    >>> column_cells([0.0004, 0.2], "p")
    ['< .001', '.200']
    """
    kind = _column_kind(column)
    return [_cell(v, kind, digits) for v in values]


def _cell(value: Any, kind: str, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or getattr(getattr(value, "dtype", None), "kind", None) == "b":  # (numpy bools too)
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if not _is_number(value):
        try:
            if value != value:  # pd.NA / NaT-like
                return ""
        except (TypeError, ValueError):
            return ""
        return str(value)
    if not _finite(value):
        return ""
    if kind == "p":
        return pvalue(value)
    if kind == "df":
        return _df(value)
    if kind == "tau2":
        return tau2(value)
    if kind == "percent":
        return num(value, 1)
    f = float(value)
    if kind == "count" and f.is_integer():
        return count(f)
    if f.is_integer() and abs(f) >= 1000 and getattr(getattr(value, "dtype", None), "kind", "f") in "iu":
        return count(f)
    if getattr(getattr(value, "dtype", None), "kind", None) in ("i", "u") or (isinstance(value, int)):
        return str(int(f)).replace("-", MINUS)
    return num(f, digits)


_ESTIMATE_NAMES = {"estimate", "b", "coef", "beta", "est"}
_LOW_NAMES = {"ci_low", "ci low", "ci_lower", "ci.lb", "lower"}
_HIGH_NAMES = {"ci_high", "ci high", "ci_upper", "ci.ub", "upper"}


def _interval_columns(columns) -> tuple[int, int, int] | None:
    """Positions of an estimate column and its CI bounds, when a table has them (by name)."""
    names = [str(c).strip().lower() for c in columns]
    pos = [next((i for i, n in enumerate(names) if n in group), None) for group in (_ESTIMATE_NAMES, _LOW_NAMES,
                                                                                     _HIGH_NAMES)]
    return None if None in pos else tuple(pos)


def frame_cells(df, digits: int = 2) -> list[list[str]]:
    """Every column of ``df`` as the texts a reader sees (:func:`cell`, by column kind), as one list per
    column. An estimate and its CI bounds share their decimals on each row (:func:`decimals_for`: from the
    largest magnitude of the three), as in a sentence or a forest plot: "−0.040, −0.088, 0.002", not
    "−0.04, −0.088, 0.0019".

    >>> import pandas as pd
    >>> frame_cells(pd.DataFrame({"estimate": [-0.04], "ci_low": [-0.088], "ci_high": [0.0019]}))
    [['−0.040'], ['−0.088'], ['0.002']]
    """
    import numpy as np

    cols = []
    for j, c in enumerate(df.columns):
        col = df.iloc[:, j]
        cols.append(column_cells(col.to_numpy() if col.dtype.kind in "iuf" else col.tolist(), c, digits))
    trio = _interval_columns(df.columns)
    if trio is not None and all(df.iloc[:, j].dtype.kind in "iuf" for j in trio):
        vals = np.column_stack([df.iloc[:, j].to_numpy(float) for j in trio])
        for i, row in enumerate(vals):
            if np.isfinite(row).all():
                d = decimals_for(row, digits)
                for j, v in zip(trio, row):
                    cols[j][i] = fixed(v, d)
    return cols


def format_frame(df, digits: int = 2):
    """A copy of ``df`` with every cell as the text a reader sees (:func:`frame_cells`): what the pages show,
    and what the Word and LaTeX tables contain. Column names are kept."""
    import pandas as pd

    out = pd.DataFrame(index=df.index)
    for c, texts in zip(df.columns, frame_cells(df, digits)):
        out[c] = texts if len(df) else pd.Series([], dtype="str")
    return out


def nums(values, digits: int = 2, sign: bool = False, decimals: int | None = None) -> list[str]:
    """Numbers for a figure's hover text or labels (plotly's own ``%{x:.3f}`` would print a hyphen-minus
    and fixed decimals): :func:`num` (``sign``: :func:`signed`), or :func:`fixed` with ``decimals``."""
    import numpy as np

    out = []
    for v in np.asarray(values, dtype=object).ravel().tolist():
        if decimals is not None:
            out.append(fixed(v, decimals))
        else:
            out.append(signed(v, digits) if sign else num(v, digits))
    return out


# Column names of the result frames as a reader reads them (the CSV downloads keep the raw names).
COLUMN_NAMES = {
    "study": "Study", "direction": "Direction", "effect": "Effect", "term": "Term", "model": "Model",
    "estimate": "Estimate", "se": "SE", "ci_low": "CI low", "ci_high": "CI high", "pvalue": "p",
    "statistic": "Statistic", "df": "df", "test": "Test", "tau": "τ", "tau2": "τ²", "pi_low": "PI low",
    "pi_high": "PI high", "k": "Studies (k)", "n_patients": "Patients", "n_pairs": "Pairs",
    "n_rows": "Session rows", "n_obs": "Observations", "status": "Status", "message": "Message",
    "sessions_median": "Sessions per patient (median)", "sessions_min": "Sessions (min)",
    "sessions_max": "Sessions (max)", "pct_missing_alliance": "Missing alliance (%)",
    "pct_missing_symptoms": "Missing symptoms (%)",
    "pct_missing_therapist_alliance": "Missing therapist-rated alliance (%)",
    "package": "Package", "version": "Version", "i2": "I²", "h2": "H²", "q": "Q", "converged": "Converged",
    "n_studies": "Studies", "n_sim": "Simulated data sets", "coverage": "Coverage", "bias": "Bias",
    "true_value": "True value", "note": "Note", "notes": "Notes", "estimator": "Estimator", "power": "Power",
    "parameter": "Parameter", "z": "z", "lines_cross": "Lines cross", "level": "Level", "group": "Group",
    "rule": "Rule", "removed": "Removed", "remaining": "Remaining", "setting": "Setting", "value": "Value",
    "why": "Why", "r": "r", "n": "n", "t": "t", "p": "p",
}


def column_name(col) -> str:
    """The reader's name of a result column (:data:`COLUMN_NAMES`; else the name without underscores,
    capitalised): the one header rule of the page tables, the Word and LaTeX tables and the report.

    >>> column_name("ci_low"), column_name("n_joint_sessions"), column_name("Rupture (n)")
    ('CI low', 'N joint sessions', 'Rupture (n)')
    """
    c = str(col)
    if c in COLUMN_NAMES:
        return COLUMN_NAMES[c]
    if "_" in c or (c[:1].islower() and c.isidentifier() and c.isascii()):  # a raw name: "convergence_se"
        words = c.replace("_", " ").strip()
        return words[:1].upper() + words[1:]
    return c
