"""How trustworthy is this interval? Coverage of the pooled intervals on the user's own design (METHODS §6d).

Given the design of a pooled analysis — its k studies' standard errors ``se_k`` and an assumed
between-study SD ``τ`` (by default the estimate) — :func:`interval_coverage` simulates, with a fixed
seed, ``reps`` meta-analyses with known truth ``μ``::

    θ_k = μ + u_k,  u_k ~ N(0, τ²);   y_k = θ_k + e_k,  e_k ~ N(0, se_k²)

and pools each exactly as the app does (:func:`analysis.meta.random_effects_many`, the chosen τ²
estimator) with the z test, Knapp–Hartung with the ad hoc rule (metafor's ``test="adhoc"``) and the
Bayesian model of :mod:`analysis.bayes_meta`. Reported: the share of replications whose 95%
interval contains μ (coverage, with its Monte Carlo SE), the mean interval width, and the share of
prediction intervals that contain a new study's θ_new ~ N(μ, τ²). The stage-1 SEs are treated as
known (the two-stage model's assumption); stage-1 bias is not part of this simulation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis import bayes_meta, meta
from analysis.progress import checkpoint

__all__ = ["PANEL_CHECK", "CoverageResult", "interval_coverage", "limit_note"]

_TESTS = ("z", "adhoc")

#: The panel against full patient-level replications (scripts/coverage_validation.py; the unbiased row
#: is also tests/test_coverage.py's slow test): the issue's design at k = 5 (50–300 patients, 7 sessions,
#: true within effects ~ N(−0.10, 0.05²)), 300 seeded collections, each pooled by the app (Knapp–Hartung,
#: ad hoc) in raw units; "panel" is this module's coverage on the collections' median SEs and τ = 0.05.
#: ``unbiased``: no autoregression, no reverse effect, no prior-outcome term (the stage-1 estimate is
#: unbiased). ``default_model``: the simulator's autoregression and reciprocal feedback with the app's
#: default model (prior outcome controlled), whose 7-session estimates carry a Nickell-type bias.
PANEL_CHECK = {
    "unbiased": {"k": 5, "reps": 300, "patient_level": 0.967, "panel": 0.973, "bias": 0.001},
    "default_model": {"k": 5, "reps": 300, "patient_level": 0.917, "panel": 0.968, "bias": 0.024},
}


def limit_note() -> str:
    """The panel's limit, with the numbers of :data:`PANEL_CHECK`, for the page that shows it."""
    u, b = PANEL_CHECK["unbiased"], PANEL_CHECK["default_model"]

    def pct(x):
        return f"{100 * x:.1f}%"

    return (
        "Limit: the simulation redraws only the pooling step, with the studies' estimates unbiased and their "
        "SEs known. It agrees with a full patient-level simulation only when the study estimates are unbiased: "
        f"on the issue's design (k = {u['k']}, 50–300 patients, 7 sessions) without autoregression, feedback or "
        f"a prior-outcome term, the Knapp–Hartung interval covered the true effect in {pct(u['patient_level'])} "
        f"of {u['reps']} patient-level replications and {pct(u['panel'])} here (within 2 points). With "
        "autoregression, reciprocal feedback and the prior outcome controlled (the default model), 7-session "
        f"estimates are biased (by +{b['bias']:.3f} for a true −0.100) and the patient-level coverage was "
        f"{pct(b['patient_level'])} against {pct(b['panel'])} here. Read the panel's figures as an upper bound "
        "when stage-1 bias is possible (few sessions, prior outcome controlled: see the Nickell column on the "
        "Lagged effects page).")


@dataclass(frozen=True)
class CoverageResult:
    """Coverage per interval (rows: ``z``, ``adhoc``, ``bayes``); see :func:`interval_coverage`."""

    table: pd.DataFrame
    k: int
    tau: float
    reps: int
    bayes_reps: int
    seed: int
    level: float
    method: str
    prior_scale: float

    def to_frame(self) -> pd.DataFrame:
        """interval, label, coverage (share), mc_se, mean_width, pi_coverage, reps."""
        return self.table.copy()

    def coverage(self, interval: str) -> float:
        return float(self.table.set_index("interval").loc[interval, "coverage"])

    def summary(self) -> str:
        from analysis import formatting as fmt

        parts = [f"{r.label}: {fmt.percent(r.coverage, 1)}" for r in self.table.itertuples()]
        return (f"On {self.reps} simulated meta-analyses of this design (k = {self.k}, these SEs, "
                f"τ = {fmt.num(self.tau, 3)}; seed {self.seed}), the {round(100 * self.level)}% intervals "
                f"contained the true mean effect: " + "; ".join(parts) + ".")


_LABELS = {"z": "z (normal)", "adhoc": "Knapp–Hartung (ad hoc)", "bayes": "Bayesian (half-normal prior on τ)"}


def interval_coverage(se, tau: float, *, reps: int = 2000, bayes_reps: int = 400, seed: int = 1,
                      level: float = 0.95, method: str = "REML",
                      prior_scale: float = bayes_meta.DEFAULT_PRIOR_SCALE, progress=None,
                      cancelled=None) -> CoverageResult:
    """Simulated coverage of the z, Knapp–Hartung (ad hoc) and Bayesian intervals (module docstring).

    ``se``: the studies' standard errors (k ≥ 2); ``tau``: the between-study SD to simulate;
    ``reps`` replications for z / Knapp–Hartung (vectorised), the first ``bayes_reps`` of them also
    for the Bayesian interval (direct integration per replication). ``progress(fraction)`` and
    ``cancelled()`` as in :mod:`analysis.progress`. Deterministic for a given ``seed``.
    """
    se = np.asarray(se, float)
    if se.ndim != 1 or len(se) < 2 or not np.isfinite(se).all() or np.any(se <= 0):
        raise ValueError("The coverage simulation needs at least two studies with positive, finite SEs.")
    if not np.isfinite(tau) or tau < 0:
        raise ValueError(f"τ must be a finite number ≥ 0; got {tau!r}.")
    reps, bayes_reps = int(reps), min(int(bayes_reps), int(reps))
    if reps < 50:
        raise ValueError("Use at least 50 replications.")
    k = len(se)
    rng = np.random.default_rng(seed)
    mu = 0.0
    theta = mu + tau * rng.standard_normal((reps, k))
    Y = theta + se * rng.standard_normal((reps, k))
    V = np.broadcast_to(se**2, (reps, k)).copy()
    theta_new = mu + tau * rng.standard_normal(reps)
    rows = []
    for i, test in enumerate(_TESTS):
        checkpoint(progress, cancelled, 0.1 + 0.2 * i)
        r = meta.random_effects_many(Y, V, method=method, test=test, level=level)
        lo, hi = r["ci_low"].to_numpy(), r["ci_high"].to_numpy()
        cov = (lo <= mu) & (mu <= hi)
        pcov = (r["pi_low"].to_numpy() <= theta_new) & (theta_new <= r["pi_high"].to_numpy())
        rows.append([test, _LABELS[test], cov.mean(), np.sqrt(cov.mean() * (1 - cov.mean()) / reps),
                     float(np.mean(hi - lo)), float(pcov.mean()) if method != "FE" else np.nan, reps])
    cov_b, width_b, pcov_b = [], [], []
    for j in range(bayes_reps):
        if j % 25 == 0:
            checkpoint(progress, cancelled, 0.5 + 0.5 * j / max(bayes_reps, 1))
        b = bayes_meta.bayes_random_effects(Y[j], V[j], prior_scale=prior_scale, level=level)
        cov_b.append(b.mu_low <= mu <= b.mu_high)
        width_b.append(b.mu_high - b.mu_low)
        pcov_b.append(b.pred_low <= theta_new[j] <= b.pred_high)
    if bayes_reps:
        c = float(np.mean(cov_b))
        rows.append(["bayes", _LABELS["bayes"], c, np.sqrt(c * (1 - c) / bayes_reps), float(np.mean(width_b)),
                     float(np.mean(pcov_b)), bayes_reps])
    checkpoint(progress, cancelled, 1.0)
    table = pd.DataFrame(rows, columns=["interval", "label", "coverage", "mc_se", "mean_width", "pi_coverage", "reps"])
    return CoverageResult(table=table, k=k, tau=float(tau), reps=reps, bayes_reps=bayes_reps, seed=int(seed),
                          level=float(level), method=method, prior_scale=float(prior_scale))
