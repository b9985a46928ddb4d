"""Egger's regression test for funnel-plot asymmetry (metafor regtest; METHODS §6)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from .. import formatting as fmt
from ._base import _check_effects, _check_method_test, _make_control
from .regression import _fit_general

# --------------------------------------------------------------------------- Egger


@dataclass(frozen=True, eq=False)
class EggerResult:
    """Egger's regression test (metafor ``regtest(model="rma", predictor="sei")``).

    ``statistic`` is the z (or t on ``df`` = k - 2) value of the slope on the
    standard error; ``b`` the intercept, i.e. the limit estimate as SE -> 0,
    with its CI.
    """

    statistic: float
    df: float
    pvalue: float
    slope: float
    slope_se: float
    b: float
    b_ci_low: float
    b_ci_high: float
    tau2: float
    k: int
    method: str
    test: str
    level: float
    converged: bool
    messages: tuple[str, ...]

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{f.name: getattr(self, f.name) for f in fields(self)
                              if f.name != "messages"} | {"messages": "; ".join(self.messages)}])

    def summary(self) -> str:
        verdict = ("suggests funnel-plot asymmetry (small-study effects)"
                   if self.pvalue < 0.05 else "shows no clear funnel-plot asymmetry")
        stat = fmt.stat("z", self.statistic) if self.test == "z" else fmt.stat("t", self.statistic, self.df)
        return (
            f"Egger's regression test {verdict} ({stat}, "
            f"{fmt.p_text(self.pvalue)}); the estimate for a hypothetical study with no sampling "
            f"error is {fmt.num(self.b)} ({100 * self.level:g}% CI {fmt.num(self.b_ci_low)} to "
            f"{fmt.num(self.b_ci_high)})."
        )


def egger_test(
    yi: Any, vi: Any, method: str = "REML", test: str = "z", level: float = 0.95, control: dict | None = None,
) -> EggerResult:
    """Egger's test as metafor ``regtest(rma(yi, vi, method, test), model="rma",
    predictor="sei")``: the meta-regression ``y_k = b + b1 sqrt(v_k) + u_k + e_k``
    fitted with the same tau2 estimator and test; the test of ``b1 = 0`` is the
    asymmetry test and ``b`` the limit estimate. Needs k >= 3.

    >>> res = egger_test([0.1, 0.3, 0.2, 0.5, 0.4], [0.01, 0.04, 0.02, 0.09, 0.05], method="DL")
    >>> round(res.slope, 3), res.k
    (2.12, 5)
    """
    method, test, level = _check_method_test(method, test, level)
    ctl = _make_control(control)
    y, v, _ = _check_effects(yi, vi)
    k = y.size
    if k < 3:
        raise ValueError(f"Egger's test needs at least 3 studies (k = {k}).")
    X = np.column_stack([np.ones(k), np.sqrt(v)])
    if np.linalg.matrix_rank(X) < 2:
        raise ValueError("Egger's test is undefined when all studies have the same standard error.")
    res = _fit_general(y, v, X, method, test, level, ci_tau2=False, ctl=ctl)
    return EggerResult(
        statistic=float(res["stat"][1]), df=res["df"], pvalue=float(res["pval"][1]),
        slope=float(res["beta"][1]), slope_se=float(res["se"][1]), b=float(res["beta"][0]),
        b_ci_low=float(res["ci_low"][0]), b_ci_high=float(res["ci_high"][0]),
        tau2=res["tau2"], k=k, method=method, test=test, level=level,
        converged=res["converged"],
        messages=tuple(res["messages"]),
    )
