"""One-step stacked dyadic growth model of the patient and therapist alliance (METHODS §8).

Both ratings are stacked with role r = +½ (patient) / −½ (therapist):
``rating ~ r·t + (r·t | dyad)``; the r×t slope is the mean change in discrepancy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from analysis.convergence._common import _check
from analysis.lmm import LMMFit, fit_lmm


@dataclass(frozen=True, eq=False)
class DyadicResult:
    """Stacked dyadic growth model ``rating ~ r·t + (r·t | dyad)``.

    ``fixed``: terms intercept (mean level at t = 0), role (mean P − T
    discrepancy at t = 0), time (mean growth of the dyad mean), role:time
    (mean change per session in the P − T discrepancy). ``discrepancy_change``
    is the role:time row. ``random``: covariance matrix (DataFrame) of the
    dyad random effects in the structure used; ``residual``: σ² (one residual
    variance shared by both raters).
    """

    fixed: pd.DataFrame
    discrepancy_change: dict
    random: pd.DataFrame
    residual: float
    structure: str
    converged: bool
    aic_reml: float
    n_dyads: int
    n_obs: int
    time: str
    time_origin: float
    messages: tuple
    fit: LMMFit = field(repr=False)

    def to_frame(self) -> pd.DataFrame:
        return self.fixed.copy()


_DYADIC_STRUCTURES = {
    # name: (order of Z columns, blocks)
    "full": (("intercept", "role", "time", "role:time"), (4,)),
    "blocks": (("intercept", "time", "role", "role:time"), (2, 2)),
    "diagonal": (("intercept", "role", "time", "role:time"), (1, 1, 1, 1)),
}


def dyadic_model(df: pd.DataFrame, time: str = "session", random: str = "full",
                 satterthwaite: bool = True) -> DyadicResult:
    """One-step dyadic growth model (METHODS §8), one study.

    Both ratings are stacked (every observed rating, not only joint sessions)
    with role r = +½ for the patient and −½ for the therapist::

        rating_ijr = γ0 + γ1·r + γ2·t + γ3·r·t + u0j + u1j·r + u2j·t + u3j·r·t + e

    so P − T = (γ1 + u1j) + (γ3 + u3j)·t: γ3 is the mean change per session of
    the signed discrepancy (negative while P > T means the ratings converge).
    ``random``: "full" (4 × 4 unstructured), "blocks" (two independent 2 × 2
    blocks: level/time and role/role × time) or "diagonal" (independent
    variances). When the requested structure does not converge the next
    simpler one is tried and the change is reported. One residual variance is
    shared by both raters (as in lme4's ``lmer``).

    >>> from analysis.simulate import simulate_dyads
    >>> res = dyadic_model(simulate_dyads(30, seed=1).data)
    >>> res.to_frame()["term"].tolist()[:2]
    ['intercept', 'role']
    """
    if random not in _DYADIC_STRUCTURES:
        raise ValueError("random must be 'full', 'blocks' or 'diagonal'.")
    if time not in ("session", "from_first"):
        raise ValueError("time must be 'session' or 'from_first'.")
    d = _check(df, ("alliance", "therapist_alliance"))
    studies = d["study"].unique()
    if len(studies) != 1:
        raise ValueError(f"The data hold {len(studies)} studies; the dyadic model is fitted per study.")
    pa = d[d["alliance"].notna()]
    th = d[d["therapist_alliance"].notna()]
    st = pd.DataFrame(
        {
            "patient": pd.concat([pa["patient"], th["patient"]], ignore_index=True),
            "session": np.concatenate([pa["session"].to_numpy(), th["session"].to_numpy()]),
            "rating": np.concatenate([pa["alliance"].to_numpy(), th["therapist_alliance"].to_numpy()]),
            "role": np.concatenate([np.full(len(pa), 0.5), np.full(len(th), -0.5)]),
        }
    )
    if st["patient"].nunique() < 3:
        raise ValueError("The dyadic model needs at least 3 dyads with ratings.")
    origin = float(st["session"].min()) if time == "from_first" else 0.0
    t = st["session"].to_numpy(float) - origin
    r = st["role"].to_numpy()
    cols = {"intercept": np.ones(len(st)), "role": r, "time": t, "role:time": r * t}
    X = np.column_stack([cols[k] for k in ("intercept", "role", "time", "role:time")])
    messages = []
    chain = list(_DYADIC_STRUCTURES)[list(_DYADIC_STRUCTURES).index(random):]
    fit = None
    used = None
    for sname in chain:
        order, blocks = _DYADIC_STRUCTURES[sname]
        Z = np.column_stack([cols[k] for k in order])
        try:
            f = fit_lmm(st["rating"].to_numpy(float), X, Z, st["patient"].astype(str).to_numpy(),
                        coef_names=("intercept", "role", "time", "role:time"), re_names=order,
                        blocks=blocks, satterthwaite=satterthwaite)
        except ValueError as exc:
            messages.append(f"Random structure '{sname}' failed ({exc}).")
            continue
        if f.converged or sname == chain[-1]:
            fit, used = f, sname
            break
        messages.append(f"Random structure '{sname}' did not converge; trying a simpler one.")
        if fit is None:
            fit, used = f, sname
    if fit is None:
        raise ValueError("The dyadic model could not be fitted with any random-effect structure.")
    if used != random:
        messages.append(f"Reported random structure: '{used}' (requested '{random}').")
    messages += list(fit.messages)
    fx = fit.fixed_frame()
    crit = np.where(np.isfinite(fx["df"]), stats.t.ppf(0.975, np.where(np.isfinite(fx["df"]), fx["df"], 1)),
                    stats.norm.ppf(0.975))
    fx["ci_low"] = fx["estimate"] - crit * fx["se"]
    fx["ci_high"] = fx["estimate"] + crit * fx["se"]
    dc = fx.set_index("term").loc["role:time"].to_dict()
    rn = list(fit.re_names)
    return DyadicResult(
        fixed=fx,
        discrepancy_change=dc,
        random=pd.DataFrame(fit.psi, index=rn, columns=rn),
        residual=fit.sigma2,
        structure=used,
        converged=fit.converged,
        aic_reml=fit.aic,
        n_dyads=fit.n_groups,
        n_obs=fit.n_obs,
        time=time,
        time_origin=origin,
        messages=tuple(messages),
        fit=fit,
    )
