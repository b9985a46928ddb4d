"""Bayesian random-effects pooling by direct numerical integration (METHODS §6c).

Model (the normal–normal hierarchical model of R's bayesmeta, Röver 2020)::

    y_k | θ_k ~ N(θ_k, v_k),   θ_k | μ, τ ~ N(μ, τ²),
    p(μ) ∝ 1 (improper uniform),   τ ~ half-normal(scale s):  p(τ) = 2/(s√(2π)) · exp(−τ²/(2s²)), τ ≥ 0

With ``w_k(τ) = 1/(v_k + τ²)``, ``μ̂(τ) = Σ w_k y_k / Σ w_k`` and ``V(τ) = 1/Σ w_k``, integrating μ
out gives the marginal posterior of τ and the conditional posterior of μ::

    p(τ | y) ∝ p(τ) · V(τ)^{1/2} · Π_k w_k^{1/2} · exp(−½ Σ_k w_k (y_k − μ̂(τ))²)
    μ | τ, y ~ N(μ̂(τ), V(τ))

so the marginal posterior of μ is the mixture ``F(μ) = ∫ Φ((μ − μ̂(τ))/√V(τ)) p(τ | y) dτ`` and a new
study's effect θ_new has ``∫ Φ((θ − μ̂(τ))/√(V(τ) + τ²)) p(τ | y) dτ``. Every integral over τ is
a composite Gauss–Legendre sum on [0, τ_max] (τ_max where the log posterior has fallen 60 below its
maximum; panels placed by a scan of the density), quantiles by root finding on those CDFs — no
MCMC, so results are deterministic and take milliseconds.
Checked against brute-force 30-digit quadrature (mpmath) in tests/reference/make_bayes_reference.py.

The default prior scale ``s = 0.1`` is weakly informative for standardized lagged coefficients
(within effects of about −0.1): it puts 95% prior probability on τ < 0.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special

from analysis import formatting as fmt
from analysis.options import Declared, option

__all__ = ["DEFAULT_PRIOR_SCALE", "BayesMetaResult", "SmallKOptions", "bayes_random_effects"]

DEFAULT_PRIOR_SCALE = 0.1
_M_BAYES = "6c-bayesian-random-effects-estimate-few-studies"


@dataclass(frozen=True)
class SmallKOptions(Declared):
    """The Pooled page's choices for few studies (METHODS §6b–§6d), declared once.

    >>> SmallKOptions(prior_scale=0)
    Traceback (most recent call last):
    ...
    ValueError: prior_scale must be a number from 0.001 to 10; got 0.
    """

    prior_scale: float = option(
        "float", DEFAULT_PRIOR_SCALE, lo=0.001, hi=10.0, label="Prior scale of τ (half-normal)", url="tau_prior",
        methods=_M_BAYES, r=False,
        help="The Bayesian estimate's prior on τ is half-normal with this scale: 95% prior probability below "
             "about twice the scale. 0.1 is weakly informative for standardized lagged coefficients; with raw "
             "scores use the effect's own units.")
    one_stage: bool = option(
        "flag", False, label="Show the one-stage model beside the two-stage", url="one_stage", methods="6b-one-stage-ipd-meta-analysis-beside-the-two-stage",
        r=False, help="All patients of all studies in one mixed model, beside the two-stage pooling (a few "
                      "seconds for 17 studies; the R and Python scripts always include it).")


@dataclass(frozen=True)
class BayesMetaResult:
    """Posterior summaries of μ (the mean effect), τ and a new study's effect (module docstring).

    Intervals are equal-tailed posterior (credible) intervals at ``level``."""

    mu_mean: float
    mu_sd: float
    mu_median: float
    mu_low: float
    mu_high: float
    tau_median: float
    tau_mean: float
    tau_low: float
    tau_high: float
    pred_low: float
    pred_high: float
    prior_scale: float
    level: float
    k: int

    @property
    def prior(self) -> str:
        return f"μ uniform (improper); τ half-normal with scale {fmt.num(self.prior_scale, 3)}"

    def to_frame(self) -> pd.DataFrame:
        """Rows ``mu``, ``tau``, ``new study``; columns estimate (posterior median), mean, ci_low, ci_high, prior."""
        return pd.DataFrame({
            "parameter": ["mu", "tau", "new study"],
            "estimate": [self.mu_median, self.tau_median, self.mu_median],
            "mean": [self.mu_mean, self.tau_mean, self.mu_mean],
            "ci_low": [self.mu_low, self.tau_low, self.pred_low],
            "ci_high": [self.mu_high, self.tau_high, self.pred_high],
            "prior": [self.prior] * 3,
        })

    def summary(self) -> str:
        pct = f"{round(100 * self.level)}%"
        d = fmt.decimals_for([self.mu_median, self.mu_low, self.mu_high])
        td = fmt.decimals_for([self.tau_median, self.tau_low, self.tau_high])
        return (f"Bayesian random effects (k = {self.k}; {self.prior}): μ = {fmt.fixed(self.mu_median, d)} "
                f"(posterior median), {pct} credible interval {fmt.interval(self.mu_low, self.mu_high, decimals=d)}; "
                f"τ = {fmt.fixed(self.tau_median, td)} [{fmt.fixed(self.tau_low, td)}, {fmt.fixed(self.tau_high, td)}]; "
                f"a new study's effect {fmt.interval(self.pred_low, self.pred_high, decimals=d)}.")


_GL_X, _GL_W = np.polynomial.legendre.leggauss(32)
_PANELS = 12


class _Posterior:
    """p(τ | y) on a composite Gauss–Legendre grid (12 panels × 32 nodes) over [0, τ_max], τ_max
    where the unnormalized log posterior has fallen 60 below its maximum. Panels are finer near the
    mode. Integrals of smooth functions against p(τ | y) are then weighted sums."""

    def __init__(self, y, v, scale):
        self.y, self.v, self.s = y, v, scale
        hi = 10.0 * max(scale, math.sqrt(float(v.max())))
        scan = np.concatenate([[0.0], np.geomspace(1e-5 * hi, hi, 200)])
        lp = self._logpost(scan)
        while lp[-1] - lp.max() > -60:
            hi *= 2
            scan = np.concatenate([[0.0], np.geomspace(1e-5 * hi, hi, 200)])
            lp = self._logpost(scan)
        top = lp.max()
        self.hi = float(scan[np.flatnonzero(lp - top > -60).max()] if np.any(lp - top > -60) else hi)
        self.hi = min(hi, self.hi * 1.5) if self.hi > 0 else hi
        # panel edges: quantile-like spacing from the scan's density (finer where the mass is)
        dens = np.exp(lp - top)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(scan))])
        cum /= cum[-1]
        edges = np.interp(np.linspace(0, 1, _PANELS + 1), cum, scan)
        edges = np.unique(np.concatenate([edges, np.linspace(0, self.hi, _PANELS + 1)]))
        edges = edges[edges <= self.hi]
        if edges[-1] < self.hi:
            edges = np.append(edges, self.hi)
        a, b = edges[:-1, None], edges[1:, None]
        self.t = ((b - a) / 2 * _GL_X + (a + b) / 2).ravel()
        wq = ((b - a) / 2 * _GL_W).ravel()
        lpt = self._logpost(self.t)
        p = wq * np.exp(lpt - lpt.max())
        self.p = p / p.sum()  # posterior weights of the nodes
        w = 1.0 / (v[None, :] + self.t[:, None] ** 2)
        self.sw = w.sum(axis=1)
        self.mu = (w @ y) / self.sw  # μ̂(τ) at the nodes
        self.var = 1.0 / self.sw  # V(τ)

    def _logpost(self, t):
        t = np.atleast_1d(np.asarray(t, float))
        w = 1.0 / (self.v[None, :] + t[:, None] ** 2)
        sw = w.sum(axis=1)
        mu = (w @ self.y) / sw
        r = self.y[None, :] - mu[:, None]
        return -0.5 * (t / self.s) ** 2 - 0.5 * np.log(sw) + 0.5 * np.log(w).sum(axis=1) - 0.5 * (w * r * r).sum(axis=1)

    def cdf_tau(self, x):
        # exact within the grid's resolution: integrate the density up to x with its own GL rule
        if x <= 0:
            return 0.0
        if x >= self.hi:
            return 1.0
        t = x / 2 * _GL_X + x / 2
        num = (x / 2 * _GL_W) @ np.exp(self._logpost(t) - self._ref)
        return min(1.0, float(num / self._norm))

    def prepare_tau(self):
        edges = np.linspace(0, self.hi, 4 * _PANELS + 1)
        a, b = edges[:-1, None], edges[1:, None]
        t = ((b - a) / 2 * _GL_X + (a + b) / 2).ravel()
        lp = self._logpost(t)
        self._ref = lp.max()
        self._norm = float(((b - a) / 2 * _GL_W).ravel() @ np.exp(lp - self._ref))

    def cdf_mu(self, x, predictive=False):
        sd = np.sqrt(self.var + (self.t**2 if predictive else 0.0))
        return float(self.p @ special.ndtr((x - self.mu) / sd))


def _quantile(cdf, p, lo, hi):
    while cdf(lo) > p:
        lo -= hi - lo
    while cdf(hi) < p:
        hi += hi - lo
    return float(optimize.brentq(lambda x: cdf(x) - p, lo, hi, xtol=1e-13, rtol=1e-11))


def bayes_random_effects(yi, vi, *, prior_scale: float = DEFAULT_PRIOR_SCALE, level: float = 0.95) -> BayesMetaResult:
    """Posterior of the random-effects model with a flat prior on μ and a half-normal(``prior_scale``)
    prior on τ, by numerical integration (module docstring; METHODS §6c)."""
    y = np.asarray(yi, float)
    v = np.asarray(vi, float)
    if y.ndim != 1 or y.shape != v.shape or len(y) < 1:
        raise ValueError("yi and vi must be one-dimensional and of the same length (at least one study).")
    if not (np.isfinite(y).all() and np.isfinite(v).all()) or np.any(v <= 0):
        raise ValueError("Every estimate must be finite and every sampling variance positive.")
    if not (isinstance(prior_scale, (int, float)) and math.isfinite(prior_scale) and prior_scale > 0):
        raise ValueError(f"The prior scale of τ must be a positive number; got {prior_scale!r}.")
    if not 0 < level < 1:
        raise ValueError("level must lie strictly between 0 and 1.")
    post = _Posterior(y, v, float(prior_scale))
    post.prepare_tau()
    a = (1 - level) / 2
    mean_mu = float(post.p @ post.mu)
    sd_mu = math.sqrt(max(float(post.p @ (post.var + post.mu**2)) - mean_mu**2, 0.0))
    lo0, hi0 = mean_mu - 3 * sd_mu, mean_mu + 3 * sd_mu
    q_mu = [_quantile(post.cdf_mu, p, lo0, hi0) for p in (a, 0.5, 1 - a)]
    q_tau = [float(optimize.brentq(lambda x, p=p: post.cdf_tau(x) - p, 0.0, post.hi, xtol=1e-13, rtol=1e-11))
             for p in (a, 0.5, 1 - a)]
    mean_tau = float(post.p @ post.t)
    pr = [_quantile(lambda x: post.cdf_mu(x, predictive=True), p, lo0 - 3 * post.hi, hi0 + 3 * post.hi)
          for p in (a, 1 - a)]
    return BayesMetaResult(
        mu_mean=mean_mu, mu_sd=sd_mu, mu_median=q_mu[1], mu_low=q_mu[0], mu_high=q_mu[2],
        tau_median=q_tau[1], tau_mean=mean_tau, tau_low=q_tau[0], tau_high=q_tau[2],
        pred_low=pr[0], pred_high=pr[1], prior_scale=float(prior_scale), level=float(level), k=len(y),
    )
