"""Preparatory trajectory-shape comparison and simulation-based power (METHODS §8)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.convergence.growth import _prepare, _yzg, growth_models
from analysis.convergence.samples import SampleRules, apply_sample_rules
from analysis.formatting import count, num, percent
from analysis.lmm import fit_lmm

# ----------------------------------------------------------------------------
# preparatory analysis: linear vs log-linear symptom trajectory


@dataclass(frozen=True, eq=False)
class ShapeComparison:
    """Linear vs log-linear symptom trajectory of the null model, compared by ML AIC (METHODS §8).

    ``table``: shape ("linear", "log-linear"), time variable, AIC (ML), deviance (ML),
    converged. ``preferred`` is the shape with the lower AIC; ``delta_aic`` =
    AIC(log-linear) − AIC(linear) (positive favours linear).
    """

    table: pd.DataFrame
    preferred: str
    delta_aic: float

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def summary(self) -> str:
        return (f"{self.preferred.capitalize()} trajectory preferred (ΔAIC log-linear − linear = "
                f"{num(self.delta_aic, 1)}, ML).")


def trajectory_shape(df: pd.DataFrame, time: str = "session", rules: SampleRules | None = None) -> ShapeComparison:
    """Null model ``Y = b0j + b1j·f(t)`` with f(t) = t (linear) or log(t − t_min + 1) (log-linear).

    Both are fitted by ML with a random intercept and slope (unstructured) on the
    same rows (the growth-model sample of :func:`growth_models`, time coding
    ``time``) and compared by AIC = −2 logL + 2·6, as the paper's preparatory
    analysis (the lower AIC is preferred).
    """
    if rules is not None:
        df = apply_sample_rules(df, rules).data
    _d, _s, _study, _dyc, rows, _o, _c, _e = _prepare(df, None, time, "raw", "absolute", "none")
    y, Z, groups = _yzg(rows)
    t = Z[:, 1]
    out = []
    for shape, f in (("linear", t), ("log-linear", np.log(t - t.min() + 1.0))):
        X = np.column_stack([np.ones(len(t)), f])
        fit = fit_lmm(y, X, X, groups, coef_names=("intercept", "time"), re_names=("intercept", "time"),
                      reml=False, satterthwaite=False)
        out.append({"shape": shape, "time": "t" if shape == "linear" else "log(t − min t + 1)",
                    "aic_ml": fit.aic, "deviance_ml": fit.deviance, "converged": fit.converged})
    tab = pd.DataFrame(out)
    delta = float(tab["aic_ml"].iloc[1] - tab["aic_ml"].iloc[0])
    return ShapeComparison(table=tab, preferred="linear" if delta >= 0 else "log-linear", delta_aic=delta)


# ----------------------------------------------------------------------------
# simulation-based power for convergence × time


@dataclass(frozen=True, eq=False)
class PowerResult:
    """Simulated power of Model 2's convergence × time test (METHODS §8).

    ``table``: beta, power, mc_se (√(p(1 − p)/n_sim)), n_ok (simulations that
    fitted), mean_estimate (of time:convergence). Design in ``design``.
    """

    table: pd.DataFrame
    n_dyads: int
    sessions: tuple
    n_sim: int
    alpha: float
    design: dict

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def summary(self) -> str:
        parts = [f"β = {num(r.beta)}: {percent(r.power)}" for r in self.table.itertuples()]
        return (f"Power at N = {count(self.n_dyads)} dyads, α = {num(self.alpha)}, {count(self.n_sim)} simulations: "
                + "; ".join(parts) + ".")


def convergence_power(n_dyads: int, sessions, betas=(0.2, 0.3, 0.4), *, n_sim: int = 200, alpha: float = 0.05,
                      seed: int = 0, progress=None, cancelled=None, **design) -> PowerResult:
    """Power of Model 2's ``time:convergence`` test by simulation (:func:`analysis.simulate.simulate_dyads`).

    For each standardized effect β, ``n_sim`` data sets of ``n_dyads`` dyads
    rated at ``sessions`` are simulated with ``convergence_on_slope =
    sd_symptom_slope · β / √(1 − β²)``, so that the correlation of the true
    convergence share with the true symptom slope is β (the paper's
    "standardized regression slope"). Model 2 is fitted (REML, Satterthwaite
    df) with the per-dyad OLS convergence score; power = share of data sets
    with p < ``alpha``. Unlike the paper's cross-sectional approximation
    (N = 44 / 82 / 191 for β = .4 / .3 / .2) this includes the attenuation by
    the score's unreliability, so it is usually lower. ``design``: further
    :func:`simulate_dyads` arguments (e.g. ``symptom_instrument``). ``progress``, ``cancelled``: see
    :mod:`analysis.progress` (the dashboard runs this off the page's thread).

    >>> res = convergence_power(30, range(1, 9), betas=(0.4,), n_sim=4, seed=1)
    >>> list(res.table.columns[:2]), int(res.table["n_ok"].iloc[0]) <= 4
    (['beta', 'power'], True)
    """
    from analysis.progress import checkpoint
    from analysis.simulate import simulate_dyads

    sessions = tuple(int(s) for s in sessions)
    if int(n_dyads) < 5:
        raise ValueError("Power needs at least 5 dyads.")
    if len(sessions) < 3:
        raise ValueError("Power needs at least 3 sessions (the convergence score needs a residual variance).")
    if not 0 < alpha < 1 or n_sim < 1:
        raise ValueError("alpha must be in (0, 1) and n_sim ≥ 1.")
    sd_slope = float(design.pop("sd_symptom_slope", 0.04))
    rng = np.random.default_rng(seed)
    rows = []
    if not all(-1 < float(b) < 1 for b in betas):
        raise ValueError("Each β must lie strictly between −1 and 1.")
    total = max(1, len(betas) * int(n_sim))
    for j, b in enumerate(betas):
        b = float(b)
        eff = sd_slope * b / np.sqrt(1 - b * b)
        hits, ests, ok = 0, [], 0
        for i in range(int(n_sim)):
            checkpoint(progress, cancelled, (j * int(n_sim) + i) / total)
            sim = simulate_dyads(int(n_dyads), sessions, sd_symptom_slope=sd_slope, convergence_on_slope=eff,
                                 seed=int(rng.integers(2**31)), **design)
            try:
                gm = growth_models(sim.data, models=(2,), ml_refit=False, random_tests=False).models[2]
            except ValueError:
                continue
            fx = gm.fixed.set_index("term")
            ok += 1
            ests.append(float(fx.at["time:convergence", "estimate"]))
            hits += bool(fx.at["time:convergence", "pvalue"] < alpha)
        pw = hits / ok if ok else np.nan
        rows.append({"beta": b, "power": pw, "mc_se": float(np.sqrt(pw * (1 - pw) / ok)) if ok else np.nan,
                     "n_ok": ok, "mean_estimate": float(np.mean(ests)) if ests else np.nan})
    return PowerResult(table=pd.DataFrame(rows), n_dyads=int(n_dyads), sessions=sessions, n_sim=int(n_sim),
                       alpha=float(alpha), design={"sd_symptom_slope": sd_slope, **design})
