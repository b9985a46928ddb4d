"""The chance reference of a rupture criterion (METHODS §9): prevalence expected without ruptures."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special

from analysis.events._base import _RATER_COLUMN, RATERS, _check_frame, _tol
from analysis.events.rupture import (
    RUPTURE_CRITERIA,
    RuptureCriterion,
    _dips,
    _line_fit,
    _patient_starts,
    _resolve_criterion,
    robust_sd,
)


@dataclass(frozen=True)
class RuptureChance:
    """Observed rupture prevalence beside the prevalence expected by chance (METHODS §9).

    ``per_study`` (and the ``All studies`` row of `to_frame`): ``n_eligible`` classified
    patients, ``observed`` share with ≥ 1 dip, ``expected`` the mean share over ``n_sim``
    data sets simulated without ruptures, ``sim_low``/``sim_high`` the 2.5%/97.5% points
    of the simulated shares, ``p_excess`` = (1 + #{simulated ≥ observed})/(n_sim + 1).
    """

    criterion: RuptureCriterion
    rater: str
    n_sim: int
    seed: int
    per_study: pd.DataFrame
    messages: tuple = ()
    #: "simulation" (`rupture_chance`) or "item_permutation" (`rupture_item_chance`)
    method: str = "simulation"

    def to_frame(self) -> pd.DataFrame:
        return self.per_study.copy()

    @property
    def total(self) -> pd.Series:
        return self.per_study.iloc[-1]

    @property
    def basis(self) -> str:
        """What the expected prevalence assumes, in a few words."""
        return ("item at random sessions" if self.method == "item_permutation"
                else "no ruptures simulated")

    def summary(self) -> str:
        from analysis.formatting import count, percent

        t = self.total
        what = ("if each patient's item values fell on random sessions of that patient"
                if self.method == "item_permutation" else "without ruptures")
        return (f"Observed: {percent(t['observed'], 1)} of {count(t['n_eligible'])} classified patients "
                f"had a rupture; expected {what}: {percent(t['expected'], 1)} "
                f"(95% of {count(self.n_sim)} simulations {percent(t['sim_low'], 1)} to "
                f"{percent(t['sim_high'], 1)}).")


def _chance_rows(studies, st_pat, elig_p, obs_p, sims, sigma, n_sim, exact=None) -> pd.DataFrame:
    """Per-study observed vs chance rows; ``exact`` (per patient) replaces the simulated mean."""
    rows = []
    for name, sel in [(s, st_pat == i) for i, s in enumerate(studies)] + [("All studies", np.ones_like(elig_p))]:
        m = sel & elig_p
        ne = int(m.sum())
        row = {"study": name, "n_eligible": ne, "n_observed": int(obs_p[m].sum()), "observed": np.nan,
               "expected": np.nan, "sim_low": np.nan, "sim_high": np.nan, "excess": np.nan, "p_excess": np.nan,
               "sigma_within": float(sigma.get(name, np.nan))}
        if ne:
            shares = sims[:, m].mean(axis=1)
            o = float(obs_p[m].mean())
            e = float(shares.mean() if exact is None else exact[m].mean())
            row.update(observed=o, expected=e, sim_low=float(np.quantile(shares, 0.025)),
                       sim_high=float(np.quantile(shares, 0.975)), excess=o - e,
                       p_excess=float((1 + np.sum(shares >= o - 1e-12)) / (n_sim + 1)))
        rows.append(row)
    return pd.DataFrame(rows)


def rupture_chance(df: pd.DataFrame, criterion="default", k: float | None = None,
                   sd: str | None = None, detrend: bool | None = None, rater: str = "patient",
                   n_sim: int = 100, seed: int = 1) -> RuptureChance:
    """Prevalence of ruptures expected without ruptures, on the user's own data (§9).

    For each study, every patient's observed alliance is refitted as a straight line
    (ordinary least squares; the patient mean with fewer than 3 values) and the study's
    within-patient noise SD σ̂ is `robust_sd` of the standardized residuals
    r_ij/√(1 − h_ij). ``n_sim`` data sets are simulated with the same patients and observed
    sessions: A*_ij = â_i + b̂_i·t_ij + σ̂·ε_ij, ε ~ N(0, 1) independent — data with each
    patient's own level and trend but no ruptures. The same criterion (`ruptures`) is
    applied to each; the shares of classified patients with ≥ 1 dip give the expected
    prevalence and its 2.5–97.5% range. Independent normal noise is the no-rupture model;
    autocorrelated or skewed (ceiling) ratings can make the real chance rate differ.

    ``rater="both"``: sessions with both ratings; both series are simulated, their noise
    correlated within a session with the study's correlation of the two standardized
    residuals, and a session counts when both dip. A rupture item is not simulated
    (`rupture_item_chance`). Equals ``rupture_chance_curve(...).at(k)``.

    >>> from analysis.simulate import simulate_study
    >>> rc = rupture_chance(simulate_study(30, seed=1).data, n_sim=20)
    >>> rc.n_sim, rc.per_study.columns.tolist()[:2]
    (20, ['study', 'n_eligible'])
    """
    return rupture_chance_curve(df, criterion=criterion, sd=sd, detrend=detrend, rater=rater,
                                n_sim=n_sim, seed=seed).at(k)


@dataclass(frozen=True)
class RuptureChanceCurve:
    """The simulated no-rupture data sets of `rupture_chance`, kept for every k (METHODS §9).

    The simulated data do not depend on k: per data set and patient ``min_z`` holds the
    lowest z = (A − E)/S over the patient's classifiable sessions (with both raters the
    larger of the two z of a session), so the patient has a dip at k exactly when
    min_z ≤ −k (min_z is kept in single precision: ties within ~1e-7 are immaterial for
    simulated continuous data). `at` gives the `RuptureChance` for one k without simulating again.
    """

    criterion: RuptureCriterion
    rater: str
    n_sim: int
    seed: int
    studies: tuple
    min_z: np.ndarray = field(repr=False, compare=False)  # (n_sim, patients)
    sigma: dict = field(repr=False, compare=False)
    observed: tuple = field(repr=False, compare=False)  # (values per rater, sessions, starts, study per row)
    eligible: np.ndarray = field(default=None, repr=False, compare=False)  # (patients,) classifiable

    def to_frame(self, ks=(1.0, 1.5, 2.0, 2.5, 3.0, 3.5)) -> pd.DataFrame:
        """Expected prevalence without ruptures (all studies) for each k in ``ks``: k, expected,
        sim_low, sim_high (shares of the classifiable patients; 2.5% / 97.5% over the data sets)."""
        z = self.min_z[:, self.eligible]
        rows = []
        for k in ks:
            shares = (z <= -float(k) + _tol(float(k))).mean(axis=1) if z.shape[1] else np.full(self.n_sim, np.nan)
            rows.append({"k": float(k), "expected": float(np.mean(shares)),
                         "sim_low": float(np.quantile(shares, 0.025)), "sim_high": float(np.quantile(shares, 0.975))})
        return pd.DataFrame(rows)

    def summary(self) -> str:
        from analysis.formatting import count, num, percent

        t = self.to_frame()
        return (f"Without ruptures ({count(self.n_sim)} simulated data sets), the share of classified patients "
                "with at least one dip would be " + ", ".join(
                    f"{percent(e, 1)} at k = {num(k)}" for k, e in zip(t["k"], t["expected"])) + ".")

    def at(self, k: float | None = None) -> RuptureChance:
        """Observed vs expected prevalence at ``k`` (None: the criterion's k)."""
        crit = _resolve_criterion(self.criterion, k, None, None, "rupture_chance")
        ys, x, starts, study_row = self.observed
        obs = [_dips(y[None, :], x, starts, study_row, crit) for y in ys]
        st_row = pd.Series(study_row).map({s: i for i, s in enumerate(self.studies)}).to_numpy()
        elig_p = np.logical_and.reduce([o["eligible"][starts] for o in obs])
        obs_flag = np.logical_and.reduce([o["flag"][0] for o in obs])
        obs_p = np.add.reduceat(obs_flag.astype(np.int64), starts) > 0
        sims = self.min_z <= -crit.k + _tol(crit.k)
        per_study = _chance_rows(list(self.studies), st_row[starts], elig_p, obs_p, sims, self.sigma, self.n_sim)
        msgs = () if elig_p.any() else ("No patient has enough alliance ratings to be classified.",)
        return RuptureChance(criterion=crit, rater=self.rater, n_sim=self.n_sim, seed=self.seed,
                             per_study=per_study, messages=msgs)


def _patient_sigma(r, u, starts, counts, st_row) -> np.ndarray:
    """Each patient's noise SD for the no-rupture simulation, one value per row (METHODS §9).

    s_i² = Σ r_ij²/d_i from the patient's own line (residuals r, d_i = n_i − 2; the mean with
    < 3 ratings, d_i = n_i − 1), shrunk toward the study's distribution of patient variances:
    s̃_i² = (d0·s0² + d_i·s_i²)/(d0 + d_i) with (d0, s0²) from `fit_f_dist`. A patient whose
    ratings never vary (no noise information) gets s0 (d_i·s_i² left out). A study with fewer
    than 3 patients with noise information falls back to `robust_sd` of its residuals.
    """
    from analysis.events.moderated import fit_f_dist, squeeze_var

    n = counts.astype(float)
    d = np.where(n >= 3, n - 2, n - 1)
    ss = np.add.reduceat(np.where(np.isfinite(u), r * r, 0.0), starts)
    has = np.add.reduceat(np.isfinite(u).astype(int), starts) > 0
    s2 = np.where(has & (d > 0), ss / np.maximum(d, 1), np.nan)
    st_p = st_row[starts]
    out = np.full(len(starts), np.nan)
    for i in np.unique(st_p):
        m = st_p == i
        d0, s02 = (v[0] for v in fit_f_dist(s2[m][None, :], d[m]))
        if not np.isfinite(s02):
            out[m] = robust_sd(u[st_row == i])
            continue
        out[m] = np.sqrt(np.where(np.isfinite(s2[m]), squeeze_var(s2[m], d[m], d0, s02), s02))
    return np.repeat(out, counts)


def rupture_chance_curve(df: pd.DataFrame, criterion="default", sd: str | None = None,
                         detrend: bool | None = None, rater: str = "patient", n_sim: int = 100,
                         seed: int = 1) -> RuptureChanceCurve:
    """Simulate the no-rupture data sets of `rupture_chance` once, for every k (METHODS §9)."""
    who = "rupture_chance"
    if rater not in RATERS:
        raise ValueError(f"{who}: rater must be one of {', '.join(map(repr, RATERS))}; got {rater!r}.")
    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or not 20 <= n_sim <= 5000:
        raise ValueError(f"{who}: n_sim must be a whole number from 20 to 5000, got {n_sim!r}.")
    crit = _resolve_criterion(criterion, None, sd, detrend, who)
    cols = ["alliance", "therapist_alliance"] if rater == "both" else [_RATER_COLUMN[rater]]
    if isinstance(df, pd.DataFrame) and "therapist_alliance" in cols and "therapist_alliance" not in df.columns:
        raise ValueError(f"{who}: rater={rater!r} needs a 'therapist_alliance' column.")
    data = _check_frame(df, cols, who)
    od = data.dropna(subset=cols).reset_index(drop=True)
    if od.empty:
        raise ValueError(f"{who}: no session with observed {' and '.join(map(repr, cols))}.")
    starts = _patient_starts(pd.factorize(od["study"].str.cat(od["patient"], sep="\x1f"), sort=False)[0])
    counts = np.diff(np.r_[starts, len(od)])
    x = od["session"].to_numpy(float)
    study_row = od["study"].to_numpy()
    studies = sorted(set(study_row))
    st_row = pd.Series(study_row).map({s: i for i, s in enumerate(studies)}).to_numpy()
    ys = [od[c].to_numpy(float) for c in cols]
    fits, us = zip(*(_line_fit(y, x, starts, counts) for y in ys))
    sig = [_patient_sigma(y - f, u, starts, counts, st_row) for y, f, u in zip(ys, fits, us)]
    rho = np.zeros(len(x))
    if len(cols) == 2:
        for i in range(len(studies)):
            m = (st_row == i) & np.isfinite(us[0]) & np.isfinite(us[1])
            if m.sum() >= 3 and us[0][m].std() > 0 and us[1][m].std() > 0:
                rho[st_row == i] = float(np.corrcoef(us[0][m], us[1][m])[0, 1])

    def _dip_scores(y):  # the criterion's z of the classifiable sessions; +inf elsewhere (never a dip)
        z = _dips(y, x, starts, study_row, crit)["z"]
        return np.where(np.isfinite(z), z, np.inf)

    rng = np.random.default_rng(seed)
    mins = []
    for b0 in range(0, n_sim, 25):
        nb = min(25, n_sim - b0)
        e1 = rng.standard_normal((nb, len(x)))
        z = _dip_scores(fits[0][None, :] + sig[0] * e1)
        if len(cols) == 2:
            e2 = rho * e1 + np.sqrt(1 - rho ** 2) * rng.standard_normal((nb, len(x)))
            z = np.maximum(z, _dip_scores(fits[1][None, :] + sig[1] * e2))
        mins.append(np.minimum.reduceat(z, starts, axis=1).astype(np.float32))  # (nb, patients); half the memory
    sigma = {s: robust_sd(us[0][st_row == i]) for i, s in enumerate(studies)}
    return RuptureChanceCurve(criterion=crit, rater=rater, n_sim=int(n_sim), seed=int(seed),
                              studies=tuple(studies), min_z=np.concatenate(mins, axis=0), sigma=sigma,
                              observed=(tuple(ys), x, starts, study_row),
                              eligible=np.logical_and.reduce([_dips(y[None, :], x, starts, study_row, crit)["eligible"]
                                                              [starts] for y in ys]))


def rupture_item_chance(flags: pd.DataFrame, n_sim: int = 100, seed: int = 1) -> RuptureChance:
    """Chance reference of the rule "dip **and** item" (METHODS §9): the item at random sessions.

    ``flags``: the output of `ruptures` with ``item=...`` and ``item_rule="and"``. The
    question is whether the sessions the item marks are the sessions where alliance dips,
    more often than chance. Null model: each patient's item values are permuted at random
    over that patient's sessions with both a classified alliance dip status and an item
    value (alliance untouched). For a patient with m such sessions, d of them dips and f
    of them marked by the item, the chance of at least one session that is both is exactly

        P = 1 − C(m − d, f) / C(m, f)

    (hypergeometric: none of the f marks lands on one of the d dips). The expected
    prevalence is the mean of P over the classified patients (exact); its 2.5–97.5% range
    and p = (1 + #{simulated ≥ observed})/(n_sim + 1) come from ``n_sim`` draws of
    independent Bernoulli(P) patients. With "or" or "item alone" a patient's any-rupture
    status does not change under this permutation (an item mark counts wherever it falls),
    so no chance level of that kind exists there; `rupture_analysis` says so.
    """
    who = "rupture_item_chance"
    need = ["study", "patient", "eligible", "dip", "item", "item_flag", "rupture"]
    if not isinstance(flags, pd.DataFrame) or any(c not in flags.columns for c in need):
        raise ValueError(f"{who}: flags must be the output of ruptures(..., item=..., item_rule='and').")
    if isinstance(n_sim, bool) or not isinstance(n_sim, (int, np.integer)) or not 20 <= n_sim <= 5000:
        raise ValueError(f"{who}: n_sim must be a whole number from 20 to 5000, got {n_sim!r}.")
    dip = flags["dip"].astype("boolean")
    known = dip.notna().to_numpy()
    if "dip_therapist" in flags.columns:
        dt = flags["dip_therapist"].astype("boolean")
        known = known & dt.notna().to_numpy()
        dip = dip & dt
    pair = known & flags["item"].notna().to_numpy()
    dd = pair & dip.fillna(False).to_numpy(dtype=bool)
    ff = pair & flags["item_flag"].to_numpy(dtype=bool)
    g = pd.DataFrame({"study": flags["study"].astype(str), "patient": flags["patient"].astype(str),
                      "eligible": flags["eligible"].to_numpy(dtype=bool), "m": pair, "d": dd, "f": ff,
                      "both": dd & ff}).groupby(["study", "patient"], sort=True)
    pp = g.agg(eligible=("eligible", "first"), m=("m", "sum"), d=("d", "sum"), f=("f", "sum"),
               both=("both", "any")).reset_index()
    m, d, f = (pp[c].to_numpy(float) for c in ("m", "d", "f"))
    with np.errstate(all="ignore"):
        log_ratio = (special.gammaln(m - d + 1) - special.gammaln(m - d - f + 1)
                     - special.gammaln(m + 1) + special.gammaln(m - f + 1))
    prob = np.where(f > m - d, 1.0, 1.0 - np.exp(log_ratio))
    prob = np.where((d == 0) | (f == 0), 0.0, prob)
    studies = sorted(pp["study"].unique())
    st_pat = pp["study"].map({s: i for i, s in enumerate(studies)}).to_numpy()
    elig_p = pp["eligible"].to_numpy(dtype=bool)
    sims = np.random.default_rng(seed).random((int(n_sim), len(pp))) < prob
    per_study = _chance_rows(studies, st_pat, elig_p, pp["both"].to_numpy(dtype=bool), sims, {}, n_sim,
                             exact=prob)
    crit = flags.attrs.get("criterion", RUPTURE_CRITERIA["default"])
    rater = str(flags["rater"].iloc[0]) if "rater" in flags.columns and len(flags) else "patient"
    msgs = () if elig_p.any() else ("No patient has enough alliance ratings to be classified.",)
    return RuptureChance(criterion=crit, rater=rater, n_sim=int(n_sim), seed=int(seed), per_study=per_study,
                         messages=msgs, method="item_permutation")
