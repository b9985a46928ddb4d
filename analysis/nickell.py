"""Small-sample diagnostics of the stage-1 lagged model (METHODS §5, "Nickell bias" and "Attenuation").

**Nickell (dynamic-panel) bias** of the within-centred prior-outcome coefficient aW. For the
fixed-effects (within) estimator with T pairs per patient, person-mean centering and a balanced design,
Nickell's (1981) large-N formula holds::

    plim(ρ̂ − ρ) = −(1 + ρ)/(T − 1) · A / (1 − 2ρ·A/((1 − ρ)(T − 1))),   A = 1 − (1 − ρ^T)/(T(1 − ρ))

(first order: −(1 + ρ)/(T − 1)). It does not hold for detrended centering (a line removed per patient:
about twice the bias), patients with different numbers of sessions, missed sessions or lag ≠ 1. For
those the same large-N expectation is computed exactly for the study's own design
(:func:`expected_estimate`): with the outcome a stationary AR(1) process z_i with coefficient ρ around
the patient's mean (Cov = Σ(ρ), Σ_st = ρ^|s−t| on the patient's session grid), the centred prior
outcomes are C_i·z_i (C_i: the model's own centering — person mean or OLS line over the patient's
observed values — then the prior rows), the outcomes L_i·z_i, and M_i demeans over the patient's
pairs, so::

    plim ρ̂ = Σ_i tr(L_i' M_i C_i Σ(ρ)) / Σ_i tr(C_i' M_i C_i Σ(ρ))

(a generalisation of Nickell's formula, which it reproduces for a balanced design; one W × W matrix
per distinct pattern of sessions, so it costs milliseconds). The observed ρ̂ is inverted through this
monotone map on a grid of ρ; the reported bias is ρ̂ − ρ*ᴸ at the solution ρ*, ᴸ = the median
distance in sessions between prior and outcome. This is the within (fixed-effects) estimator's bias;
the hybrid random-intercept model's is slightly larger (−0.30 vs −0.28 at 7 sessions, ρ = .5;
tests/test_nickell.py checks both within 0.05 of simulated fits). The cross-lagged terms are left out.

**Attenuation of between effects** (:func:`attenuation`): the observed person mean X̄_i of n values has
reliability λ = n·ICC/(1 + (n − 1)·ICC) (Lüdtke et al., 2008). A between effect, and a cross-level
interaction X̄_i·X^w (whose moderator is that person mean), is attenuated toward zero by about λ when
the between effect is estimated from the observed mean: β̂ ≈ λ·β (plus, for the between *contextual*
part, the within effect leaks in by (1 − λ)·βW). A warning is given when λ < 0.8 (more than 20%
attenuation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analysis.formatting import num

__all__ = ["ATTENUATION_SEVERE", "ATTENUATION_WARN", "attenuation_severe", "NickellBias", "attenuation", "attenuation_messages", "expected_estimate",
           "nickell_bias", "nickell_formula"]

#: a between effect or cross-level interaction is flagged when the person-mean reliability is below this
#: (the estimate is then likely attenuated by more than 20%).
ATTENUATION_WARN = 0.8
#: ... and shown as a warning, not a note, when some study's reliability is below this (the estimate is then
#: less than half the true effect)
ATTENUATION_SEVERE = 0.5


def nickell_formula(rho: float, T: float) -> float:
    """Nickell's (1981) large-N bias of the within estimator of an AR(1) coefficient with T periods."""
    rho, T = float(rho), float(T)
    if T <= 1:
        return np.nan
    if abs(1.0 - rho) < 1e-9:
        return np.nan
    a = 1.0 - (1.0 - rho**T) / (T * (1.0 - rho))
    return -(1.0 + rho) / (T - 1) * a / (1.0 - 2.0 * rho * a / ((1.0 - rho) * (T - 1)))


@dataclass(frozen=True)
class NickellBias:
    """The Nickell-bias diagnostic of one study's prior-outcome coefficient (METHODS §5).

    ``bias``: E[ρ̂] − ρ at the ρ that reproduces the observed ``rho_hat``; ``rho``: that implied
    (bias-corrected) coefficient; ``pairs``: median pairs per patient.
    """

    bias: float
    rho: float
    rho_hat: float
    pairs: float
    centering: str

    def summary(self) -> str:
        return (f"Nickell bias: with about {self.pairs:g} session pairs per patient (T) the within-centred prior-outcome "
                f"coefficient ({num(self.rho_hat, 3)}) is biased by about {num(self.bias, 3)} "
                f"(implied ρ ≈ {num(self.rho, 2)}; expected bias on this study's own sessions and centering, METHODS §5); the cross-lagged within effect can be "
                "biased as well.")


def _patterns(sess, patient, y_obs, prior, lead, centering: str) -> tuple:
    """Σ_i L_i'M_iC_i and Σ_i C_i'M_iC_i (module docstring) as W × W matrices, W = the longest session span.

    Row r's centred value is w_r·z_i with w_r = e_r − mean of e over the patient's observed rows (and,
    detrended, − (t_r − t̄_i)·Σ_o (t_o − t̄_i)e_o / S_tt,i), e_r the indicator of r's session on the grid;
    the prior rows' w are then demeaned over the patient's pairs (M_i)."""
    starts = np.flatnonzero(np.r_[True, patient[1:] != patient[:-1]])
    sizes = np.diff(np.r_[starts, len(patient)])
    pid = np.repeat(np.arange(len(starts)), sizes)
    col = sess - np.repeat(sess[starts], sizes)
    W = int(col.max()) + 1
    E = np.zeros((len(sess), W))
    E[np.arange(len(sess)), col] = 1.0
    obs = y_obs.astype(float)
    Eo = E * obs[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        n_i = np.add.reduceat(obs, starts)
        w = E - (np.add.reduceat(Eo, starts, axis=0) / n_i[:, None])[pid]
        if centering == "detrended":
            t = sess.astype(float)
            td = t - (np.add.reduceat(obs * t, starts) / n_i)[pid]
            stt = np.add.reduceat(obs * td * td, starts)
            B = np.add.reduceat(Eo * td[:, None], starts, axis=0) / stt[:, None]
            w = w - td[:, None] * B[pid]
    pp = pid[prior]
    pstarts = np.flatnonzero(np.r_[True, pp[1:] != pp[:-1]])
    psizes = np.diff(np.r_[pstarts, len(pp)])
    C = w[prior]
    C = C - np.repeat(np.add.reduceat(C, pstarts, axis=0) / psizes[:, None], psizes, axis=0)
    C[~np.isfinite(C).all(axis=1)] = 0.0
    L = E[lead]
    return L.T @ C, C.T @ C, W


def _by_lag(q: np.ndarray) -> np.ndarray:
    """Sums of q over the entries with |s − t| = d, d = 0..W−1: Σ_st ρ^|s−t|·q_st = Σ_d ρ^d·(this)_d."""
    W = q.shape[0]
    d = np.abs(np.arange(W)[:, None] - np.arange(W)[None, :])
    return np.bincount(d.ravel(), weights=q.ravel(), minlength=W)


def _map(rhos, q_num: np.ndarray, q_den: np.ndarray) -> np.ndarray:
    """E[ρ̂] at each ρ of ``rhos``: (Σ_d ρ^d·num_d)/(Σ_d ρ^d·den_d)."""
    pw = np.asarray(rhos, dtype=float)[:, None] ** np.arange(len(q_num))[None, :]
    return (pw @ _by_lag(q_num)) / (pw @ _by_lag(q_den))


def expected_estimate(rho, sess, patient, y_obs, prior, lead, centering: str = "person_mean"):
    """Large-N expectation of the within estimator of the prior-outcome coefficient on this design
    (stationary AR(1) outcome with coefficient ``rho``; module docstring). Vectorised over ``rho``."""
    q_num, q_den, _W = _patterns(*_arrays(sess, patient, y_obs, prior, lead), centering)
    out = _map(np.atleast_1d(np.asarray(rho, dtype=float)), q_num, q_den)
    return out if np.ndim(rho) else float(out[0])


def _arrays(sess, patient, y_obs, prior, lead):
    return (np.asarray(sess, dtype=np.int64), np.asarray(patient), np.asarray(y_obs, dtype=bool),
            np.asarray(prior, dtype=np.int64), np.asarray(lead, dtype=np.int64))


_GRID = np.linspace(-0.9, 0.98, 189)


def nickell_bias(rho_hat: float, sess, patient, y_obs, prior, lead, centering: str = "person_mean", *,
                 estimator: str = "fixed_effects", seed: int = 20221) -> NickellBias:
    """Nickell-bias diagnostic of an observed within prior-outcome coefficient ``rho_hat`` (METHODS §5).

    The design arrays describe one study (rows sorted by patient and session): ``sess`` session numbers,
    ``patient`` patient codes, ``y_obs`` whether the prior-outcome variable is observed, ``prior`` and
    ``lead`` the row positions of each model pair. The bias is E[ρ̂](ρ*) − ρ*ᴸ at the ρ* whose expected
    estimate (:func:`expected_estimate`) equals ``rho_hat``. ``estimator="mixed"`` (the hybrid
    random-intercept model) shifts that map by the hybrid-minus-within difference on one seeded
    simulation of the design at the within estimator's ρ* (:func:`_hybrid_shift`), then inverts again.
    """
    sess, patient, y_obs, prior, lead = _arrays(sess, patient, y_obs, prior, lead)
    if centering not in ("person_mean", "detrended"):
        raise ValueError("centering must be 'person_mean' or 'detrended' (the prior outcome is within-centred).")
    if not len(prior):
        raise ValueError("The design has no model pairs.")
    starts = np.flatnonzero(np.r_[True, patient[prior][1:] != patient[prior][:-1]])
    pairs = float(np.median(np.diff(np.r_[starts, len(prior)])))
    q_num, q_den, _W = _patterns(sess, patient, y_obs, prior, lead, centering)
    if not np.any(q_den):
        raise ValueError("No patient has two or more pairs: the within estimator is not defined.")
    mapped = np.maximum.accumulate(_map(_GRID, q_num, q_den))
    rho = float(np.interp(float(rho_hat), mapped, _GRID))
    if estimator == "mixed":
        mapped = mapped + _hybrid_shift(sess, patient, y_obs, prior, lead, centering, rho, seed)
        rho = float(np.interp(float(rho_hat), mapped, _GRID))
    gap = float(np.median(sess[lead] - sess[prior]))
    truth = float(np.sign(rho) * abs(rho) ** gap)
    return NickellBias(bias=float(rho_hat) - truth, rho=rho, rho_hat=float(rho_hat), pairs=pairs,
                       centering=centering)


def _hybrid_shift(sess, patient, y_obs, prior, lead, centering: str, rho: float, seed: int,
                  n_pairs: int = 2000) -> float:
    """E[hybrid ρ̂] − E[within ρ̂] at ``rho``: both estimators on the same simulated AR(1) outcomes on this
    design (replicated to about ``n_pairs`` pairs; patient means N(0, 1)), the hybrid by the stage-1 solver
    (:func:`analysis.mixed.fit_random_intercept` with the prior outcome's within and between parts)."""
    from analysis import mixed

    starts = np.flatnonzero(np.r_[True, patient[1:] != patient[:-1]])
    sizes = np.diff(np.r_[starts, len(patient)])
    G, n = len(starts), len(patient)
    pcode = np.repeat(np.arange(G), sizes)
    col = sess - np.repeat(sess[starts], sizes)
    R = max(1, int(np.ceil(n_pairs / len(prior))))
    rng = np.random.default_rng(seed)
    z = np.empty((G * R, int(col.max()) + 1))
    z[:, 0] = rng.standard_normal(G * R)
    for j in range(1, z.shape[1]):
        z[:, j] = rho * z[:, j - 1] + np.sqrt(max(1.0 - rho * rho, 1e-12)) * rng.standard_normal(G * R)
    rep = np.arange(R)[:, None]
    g = (rep * G + pcode[None, :]).ravel()
    y = z[g, np.tile(col, R)] + rng.standard_normal(G * R)[g]
    t = np.tile(sess.astype(float), R)
    obs = np.tile(y_obs, R)
    yw, pm = _centre_values(y, g, G * R, t, obs, centering)
    pr, ld = (rep * n + prior[None, :]).ravel(), (rep * n + lead[None, :]).ravel()
    x, xb, yl, gp = yw[pr], pm[g[pr]], y[ld], g[pr]
    ok = np.isfinite(x)
    x, xb, yl, gp = x[ok], xb[ok], yl[ok], gp[ok]
    hyb = mixed.fit_random_intercept(np.column_stack([np.ones(len(x)), x, xb]), yl, gp).beta[1]
    cnt = np.bincount(gp, minlength=G * R).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        xd = x - (np.bincount(gp, weights=x, minlength=G * R) / cnt)[gp]
        yd = yl - (np.bincount(gp, weights=yl, minlength=G * R) / cnt)[gp]
    return float(hyb) - float(np.sum(xd * yd) / np.sum(xd * xd))


def _centre_values(y, g, G, t, obs, centering: str):
    """(within part, person mean) of y over the observed rows: person mean or per-patient OLS line on t."""
    n = np.bincount(g[obs], minlength=G).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        pm = np.bincount(g[obs], weights=y[obs], minlength=G) / n
        if centering != "detrended":
            return np.where(obs, y - pm[g], np.nan), pm
        tbar = np.bincount(g[obs], weights=t[obs], minlength=G) / n
        td = np.where(obs, t - tbar[g], 0.0)
        sxx = np.bincount(g, weights=td * td, minlength=G)
        sxy = np.bincount(g, weights=td * np.where(obs, y - pm[g], 0.0), minlength=G)
        ok = (n >= 3) & (sxx > 0)
        slope = np.where(ok, sxy / np.where(ok, sxx, 1.0), np.nan)
    return np.where(obs, y - pm[g] - slope[g] * (t - tbar[g]), np.nan), pm


def attenuation(icc: float, n: float) -> float:
    """Reliability λ = n·ICC/(1 + (n − 1)·ICC) of a person mean of n values: the factor by which a between
    effect or a cross-level interaction with that mean is attenuated (METHODS §5)."""
    icc, n = float(icc), float(n)
    if not (np.isfinite(icc) and np.isfinite(n)) or n < 1:
        return np.nan
    icc = min(max(icc, 0.0), 1.0)
    return n * icc / (1.0 + (n - 1.0) * icc)


def attenuation_messages(xvar: str, rel: float, icc: float, n: float, terms) -> list:
    """The warning when a between effect or cross-level interaction of ``xvar`` is likely attenuated by
    more than 20% (person-mean reliability below :data:`ATTENUATION_WARN`)."""
    which = [w for t, w in (("between", "the between effect"), ("interaction", "the cross-level interaction"))
             if t in terms]
    if not which or not np.isfinite(rel) or rel >= ATTENUATION_WARN:
        return []
    return [f"The person mean of {xvar} has reliability {num(rel, 2)} (ICC {num(icc, 2)}, {n:g} values per "
            f"patient): {' and '.join(which)} are likely attenuated to about {num(100 * rel, 0)}% of their "
            "true size (factor = the reliability; a between effect is also pulled toward the within effect, "
            "b̂_B ≈ λ·β_B + (1 − λ)·β_W; METHODS §5)."]


def attenuation_severe(fits) -> bool:
    """True when some study's between effects or cross-level interactions are likely attenuated to less than
    half (person-mean reliability below :data:`ATTENUATION_SEVERE`): the page then warns rather than notes."""
    rel = [f.reliability_person_mean for f in fits if f.status != "failed" and ({"between", "interaction"} & set(f.terms))]
    return any(np.isfinite(r) and r < ATTENUATION_SEVERE for r in rel)


def attenuation_note(fits) -> str | None:
    """One sentence for readers when some studies' between effects or cross-level interactions are likely
    attenuated by more than 20% (``fits``: :class:`analysis.lagged.StudyFit` objects of one direction)."""
    usable = [f for f in fits if f.status != "failed" and ({"between", "interaction"} & set(f.terms))]
    low = [f.reliability_person_mean for f in usable
           if np.isfinite(f.reliability_person_mean) and f.reliability_person_mean < ATTENUATION_WARN]
    if not low:
        return None
    rng = num(min(low), 2) if len(low) == 1 else f"{num(min(low), 2)}–{num(max(low), 2)}"
    what = ("between effects and cross-level interactions" if any("interaction" in f.terms for f in usable)
            else "between effects")
    return (f"In {len(low)} of {len(usable)} studies the {what} are likely attenuated by more than 20%: the "
            f"predictor's person mean has reliability {rng} (few sessions or a low ICC), so an estimate is "
            "about that fraction of the true effect (a between effect is also pulled toward the within "
            "effect). See the diagnostics below; METHODS §5.")
