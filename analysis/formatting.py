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

__all__ = ["MINUS", "decimals_for", "fixed", "num", "pvalue", "p_text", "interval", "estimate_ci", "signed", "count", "percent",
           "stat", "tau2", "tau2_interval", "option_text"]

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
        # small but non-zero: show it with significant digits (fixed notation)
        decimals = max(digits, sig - 1 - math.floor(math.log10(abs(x))))
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
