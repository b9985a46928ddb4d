"""Result objects of a pooled estimate (Estimate, Heterogeneity, MetaResult) and the pooled table (METHODS §6)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from .. import formatting as fmt
from ._base import _NAN, METHOD_NAMES, TEST_NAMES

# --------------------------------------------------------------------------- wording


def _heterogeneity_word(i2: float) -> str:
    if not math.isfinite(i2):
        return "not estimable"
    if i2 < 25:
        return "low"
    if i2 < 50:
        return "moderate"
    if i2 < 75:
        return "substantial"
    return "considerable"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class Estimate:
    """A labelled estimate with its confidence interval: the common part of a study row in a forest plot
    (``plots_meta.ForestRow``), a screened study's effect and the reference it is placed against
    (``screening.Effect``, ``screening.Reference``). Equality is left to the subclasses (a reference
    compares by identity, a row by its values)."""

    label: str
    estimate: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True, eq=False)
class Heterogeneity:
    """The (residual) between-study heterogeneity of a random-effects model or meta-regression: τ² with
    its SE and Q-profile CI, I² (percent) and H² (METHODS §6)."""

    tau2: float
    tau2_se: float
    tau2_ci_low: float
    tau2_ci_high: float
    i2: float
    h2: float

    @property
    def tau(self) -> float:
        return math.sqrt(self.tau2) if self.tau2 >= 0 else _NAN


@dataclass(frozen=True, eq=False)
class MetaResult(Heterogeneity):
    """Pooled random-effects (or common-effect) estimate, as metafor rma.uni.

    ``statistic`` is z (``test="z"``) or t on ``df = k - 1`` (``test="knha"``).
    ``weights`` are percentages ``100 w_k / sum(w)``; ``yi``/``vi`` are the
    study data (read-only arrays). Heterogeneity fields are NaN for k = 1.
    """

    estimate: float
    se: float
    statistic: float
    pvalue: float
    ci_low: float
    ci_high: float
    pi_low: float
    pi_high: float
    q: float
    q_df: int
    q_pvalue: float
    k: int
    weights: np.ndarray
    method: str
    test: str
    level: float
    labels: tuple[str, ...]
    converged: bool
    messages: tuple[str, ...]
    yi: np.ndarray
    vi: np.ndarray
    df: float = _NAN
    iterations: int = 0
    n_patients: np.ndarray | None = None
    n_pairs: np.ndarray | None = None

    def to_frame(self) -> pd.DataFrame:
        """One tidy row with the pooled result (messages joined by '; ')."""
        row = {
            "method": self.method,
            "test": self.test,
            "k": self.k,
            "estimate": self.estimate,
            "se": self.se,
            "statistic": self.statistic,
            "df": self.df,
            "pvalue": self.pvalue,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "pi_low": self.pi_low,
            "pi_high": self.pi_high,
            "tau2": self.tau2,
            "tau2_se": self.tau2_se,
            "tau2_ci_low": self.tau2_ci_low,
            "tau2_ci_high": self.tau2_ci_high,
            "i2": self.i2,
            "h2": self.h2,
            "q": self.q,
            "q_df": self.q_df,
            "q_pvalue": self.q_pvalue,
            "level": self.level,
            "converged": self.converged,
            "messages": "; ".join(self.messages),
        }
        return pd.DataFrame([row])

    def studies_frame(self) -> pd.DataFrame:
        """One row per study: effect, its normal-theory CI (as in metafor's
        forest plot), weight in percent, and the counts when given."""
        crit = float(special.ndtri(1.0 - (1.0 - self.level) / 2.0))
        se = np.sqrt(self.vi)
        out = pd.DataFrame({
            "study": list(self.labels),
            "yi": self.yi,
            "vi": self.vi,
            "se": se,
            "ci_low": self.yi - crit * se,
            "ci_high": self.yi + crit * se,
            "weight": self.weights,
        })
        if self.n_patients is not None:
            out["n_patients"] = self.n_patients
        if self.n_pairs is not None:
            out["n_pairs"] = self.n_pairs
        return out

    def summary(self) -> str:
        """One plain-language sentence: estimate, CI, heterogeneity and PI."""
        pct = f"{100 * self.level:g}%"
        d = fmt.decimals_for((self.estimate, self.ci_low, self.ci_high))  # one number of decimals (APA)
        if self.k == 1:
            return (
                f"Only one study ({self.labels[0]}) was available, so nothing was pooled: "
                f"its own estimate is {fmt.fixed(self.estimate, d)} ({pct} CI {fmt.fixed(self.ci_low, d)} "
                f"to {fmt.fixed(self.ci_high, d)})."
            )
        stat = fmt.stat("z", self.statistic) if self.test == "z" else fmt.stat("t", self.statistic, self.df)
        core = (
            f"{fmt.fixed(self.estimate, d)} ({pct} CI {fmt.fixed(self.ci_low, d)} to {fmt.fixed(self.ci_high, d)}; "
            f"{stat}, {fmt.p_text(self.pvalue)})"
        )
        het = (
            f"{fmt.stat('Q', self.q, self.q_df)}, {fmt.p_text(self.q_pvalue)}"
            if math.isfinite(self.q) else "Q not available"
        )
        if self.method == "FE":
            return (
                f"Assuming one common effect across {self.k} studies (common-effect model, "
                f"{TEST_NAMES[self.test]}), the pooled effect was {core}; heterogeneity "
                f"between studies was {_heterogeneity_word(self.i2)} "
                f"(I\u00b2 = {fmt.num(self.i2, 0)}%, {het}), and a common-effect model gives "
                "no prediction interval for a new study."
            )
        warn = "; with only two studies this is very uncertain" if self.k == 2 else ""
        return (
            f"Across {self.k} studies ({METHOD_NAMES[self.method]} random-effects model, "
            f"{TEST_NAMES[self.test]}), the average effect was {core}; heterogeneity "
            f"between studies was {_heterogeneity_word(self.i2)} "
            f"(\u03c4\u00b2 = {fmt.tau2(self.tau2)}, I\u00b2 = {fmt.num(self.i2, 0)}%, {het}{warn}), "
            f"so the effect in a new, comparable study would be expected to lie between "
            f"{fmt.num(self.pi_low)} and {fmt.num(self.pi_high)} ({pct} prediction interval)."
        )


def results_table(results: Mapping[str, MetaResult], names: Mapping[str, str] | None = None,
                  label: str = "Direction") -> pd.DataFrame:
    """Pooled results for readers: one row per result (e.g. per direction), the
    key first (shown through ``names``), readable headers and numbers formatted
    by :mod:`analysis.formatting` (APA p values, true minus, small effects with
    significant digits; df "—" for a z-test, "—" for anything not estimable).
    For the numbers themselves use :meth:`MetaResult.to_frame`."""
    names = dict(names or {})
    rows = []
    for key, r in results.items():
        pct = f"{100 * r.level:g}%"
        pooled = r.k > 1
        dash = "\u2014"
        d = fmt.decimals_for((r.estimate, r.ci_low, r.ci_high))  # the estimate and its CI alike (APA)
        rows.append({
            label: names.get(key, str(key).replace("_", " ")),
            "Studies (k)": fmt.count(r.k),
            "Estimate": fmt.fixed(r.estimate, d),
            f"{pct} CI": fmt.interval(r.ci_low, r.ci_high, decimals=d),
            "SE": fmt.num(r.se, 3),
            "Test": TEST_NAMES[r.test],
            "Statistic": fmt.num(r.statistic),
            "df": fmt.count(r.df, na=dash),
            "p": fmt.pvalue(r.pvalue, na=dash),
            "\u03c4\u00b2": fmt.tau2(r.tau2) if pooled and r.method != "FE" else dash,
            f"\u03c4\u00b2 {pct} CI": (fmt.tau2_interval(r.tau2_ci_low, r.tau2_ci_high)
                                if math.isfinite(r.tau2_ci_low) else dash),
            "I\u00b2": fmt.num(r.i2, 1, na=dash) + ("%" if math.isfinite(r.i2) else ""),
            "Q": fmt.stat("Q", r.q, r.q_df) if pooled else dash,
            "p (Q)": fmt.pvalue(r.q_pvalue, na=dash),
            f"{pct} prediction interval": (fmt.interval(r.pi_low, r.pi_high)
                                           if pooled and math.isfinite(r.pi_low) else dash),
            "\u03c4\u00b2 estimator": f"{r.method} ({METHOD_NAMES[r.method]})",
            "Converged": "yes" if r.converged else "no",
            "Notes": " ".join(r.messages),
        })
    return pd.DataFrame(rows)


