"""Brute-force reference for analysis/bayes_meta.py (METHODS §6c), by 20-digit quadrature (mpmath).

    python tests/reference/make_bayes_reference.py     # writes bayes_reference.json

Model: y_k ~ N(θ_k, v_k), θ_k ~ N(μ, τ²), p(μ) ∝ 1, τ ~ half-normal(scale s). Here every integral
is mpmath's tanh-sinh quadrature on [0, ∞) at 20 significant digits, with no grid, no shift of the
log density and no shared code with the module: the normalizing constant
Z = ∫ p(τ) L(τ) dτ, L(τ) = V(τ)^{1/2} Π w_k^{1/2} exp(−½ Σ w_k (y_k − μ̂(τ))²); posterior means
∫ g(τ) p(τ) L(τ) dτ / Z; the CDFs of τ, of μ (∫ Φ((x − μ̂)/√V) …) and of a new study's θ
(∫ Φ((x − μ̂)/√(V + τ²)) …); quantiles by the Illinois root finder on those CDFs to 1e-16.
Cases: the BCG vaccine trials (log risk ratios; metafor's dat.bcg, k = 13) with s = 0.5; five
lagged within-effect estimates like the app's (k = 5, s = 0.1); three near-identical estimates
(τ's posterior piled at 0; k = 3, s = 0.1); two studies (k = 2, s = 0.2).
"""

from __future__ import annotations

import json
from pathlib import Path

import mpmath as mp

mp.mp.dps = 20
HERE = Path(__file__).resolve().parent

BCG = json.loads((HERE / "meta_reference.json").read_text())["datasets"]["bcg"]
CASES = {
    "bcg": (BCG["yi"], BCG["vi"], 0.5),
    "lagged5": ([-0.12, -0.05, -0.2, -0.08, -0.15], [0.03**2, 0.04**2, 0.05**2, 0.02**2, 0.06**2], 0.1),
    "homog3": ([-0.101, -0.099, -0.1], [0.04**2, 0.05**2, 0.03**2], 0.1),
    "two": ([0.3, -0.1], [0.1**2, 0.15**2], 0.2),
}


def solve(y, v, s, level=0.95):
    y = [mp.mpf(repr(a)) for a in y]
    v = [mp.mpf(repr(a)) for a in v]
    s = mp.mpf(repr(s))

    def parts(t):
        w = [1 / (vk + t * t) for vk in v]
        sw = mp.fsum(w)
        mu = mp.fsum(wk * yk for wk, yk in zip(w, y)) / sw
        return w, sw, mu

    def dens(t):
        w, sw, mu = parts(t)
        q = mp.fsum(wk * (yk - mu) ** 2 for wk, yk in zip(w, y))
        prior = 2 / (s * mp.sqrt(2 * mp.pi)) * mp.exp(-t * t / (2 * s * s))
        return prior * mp.sqrt(1 / sw) * mp.sqrt(mp.fprod(w)) * mp.exp(-q / 2)

    def integral(f, upper=mp.inf):
        return mp.quad(lambda t: f(t) * dens(t), [0, s / 4, s, 4 * s, upper] if upper == mp.inf else [0, upper])

    Z = integral(lambda t: 1)

    def cdf_mu(x, pred=False):
        def g(t):
            _w, sw, mu = parts(t)
            return mp.ncdf((x - mu) / mp.sqrt(1 / sw + (t * t if pred else 0)))
        return integral(g) / Z

    def cdf_tau(x):
        return mp.quad(dens, [0, x]) / Z

    def quantile(cdf, p, a, b):
        return mp.findroot(lambda x: cdf(x) - p, (a, b), solver="illinois", tol=mp.mpf("1e-16"))

    mean_mu = integral(lambda t: parts(t)[2]) / Z
    mean_tau = integral(lambda t: t) / Z
    a = (1 - mp.mpf(level)) / 2
    m = float(mean_mu)
    span = 3 * max(abs(float(x)) for x in y) + 1
    out = {"k": len(y), "prior_scale": float(s), "mu_mean": float(mean_mu), "tau_mean": float(mean_tau)}
    for name, p in (("low", a), ("median", mp.mpf("0.5")), ("high", 1 - a)):
        out[f"mu_{name}"] = float(quantile(cdf_mu, p, m - span, m + span))
        out[f"tau_{name}"] = float(quantile(cdf_tau, p, mp.mpf("1e-12"), 20 * s + 10))
    out["pred_low"] = float(quantile(lambda x: cdf_mu(x, True), a, m - 3 * span, m + 3 * span))
    out["pred_high"] = float(quantile(lambda x: cdf_mu(x, True), 1 - a, m - 3 * span, m + 3 * span))
    return out


def main():
    ref = {name: solve(*case) for name, case in CASES.items()}
    (HERE / "bayes_reference.json").write_text(json.dumps(ref, indent=2) + "\n")
    print("wrote bayes_reference.json")


if __name__ == "__main__":
    main()
