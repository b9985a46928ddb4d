"""Alliance around sudden gains (METHODS §10)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from analysis.events._base import _KEY, _RATER_COLUMN, _check_frame
from analysis.events.gains import _pair_frame
from analysis.mixed import fit_random_intercept

# --------------------------------------------------------------------------
# §10 alliance around sudden gains
# --------------------------------------------------------------------------


def _mean_ci(x, level: float = 0.95):
    """Mean, t-interval bounds and n of the finite values of ``x``."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return np.nan, np.nan, np.nan, 0
    m = float(x.mean())
    if n < 2:
        return m, np.nan, np.nan, n
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return m, m - half, m + half, n


@dataclass(frozen=True)
class AllianceTrajectory:
    """Alliance over sessions around sudden gains (METHODS §10).

    ``relative``: gainers' mean alliance by session relative to their first gain's pregain
    session (0 = pregain, 1 = postgain; −3 … +4), with 95% t intervals. ``by_session``: mean
    alliance per session for patients with ≥ 1 gain vs patients without.
    """

    rater: str
    relative: pd.DataFrame
    by_session: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        a = self.relative.assign(view="relative to the gain")
        b = self.by_session.rename(columns={"session": "position"}).assign(view="by session")
        return pd.concat([a.rename(columns={"relative_session": "position"}), b], ignore_index=True)

    def summary(self) -> str:
        from analysis.formatting import num

        r = self.relative.set_index("relative_session")
        if not {0, 1} <= set(r.index) or not r.loc[[0, 1], "n"].gt(0).all():
            return "Too few gainers with alliance ratings around the gain to draw a trajectory."
        pre = r.loc[r.index < 0, "mean"].mean()
        post = r.loc[r.index > 1, "mean"].mean()
        return (f"Gainers' mean alliance: {num(pre)} in the sessions before the pregain session, "
                f"{num(r.loc[0, 'mean'])} at the pregain and {num(r.loc[1, 'mean'])} at the postgain session, "
                f"{num(post)} afterwards.")


def alliance_trajectory(df: pd.DataFrame, gains: pd.DataFrame, rater: str = "patient",
                        window: tuple[int, int] = (-3, 4)) -> AllianceTrajectory:
    """Gainers' alliance by session relative to the first gain, and gainers vs others by session.

    The first gain of each patient (``is_gain``) defines session 0 (pregain) — relative
    positions count observed-or-not sessions by number. Means with 95% t intervals (§10).
    """
    col, data, g = _rater_and_pairs(df, gains, rater, "alliance_trajectory")
    first = g[g["is_gain"].astype(bool)].groupby(_KEY, sort=False)["pregain_session"].min()
    d = data[data[col].notna()].merge(first.rename("g0").reset_index(), on=_KEY, how="left")
    d["rel"] = d["session"] - d["g0"]
    rows = []
    for rel in range(window[0], window[1] + 1):
        m, lo, hi, n = _mean_ci(d.loc[d["rel"] == rel, col])
        rows.append({"relative_session": rel, "mean": m, "ci_low": lo, "ci_high": hi, "n": n})
    rows2 = []
    d["group"] = np.where(d["g0"].notna(), "gainers", "non-gainers")
    for (ses, grp), s in d.groupby(["session", "group"], sort=True):
        m, lo, hi, n = _mean_ci(s[col])
        rows2.append({"session": int(ses), "group": grp, "mean": m, "ci_low": lo, "ci_high": hi, "n": n})
    return AllianceTrajectory(rater=rater, relative=pd.DataFrame(rows), by_session=pd.DataFrame(rows2))


@dataclass(frozen=True)
class AllianceAroundGains:
    """Alliance change over gain pairs vs other consecutive pairs (§10).

    ``change = A_{n+1} − A_n`` for each candidate pair of `sudden_gains`.

    * group means: ``mean_change_gain`` (pairs with ``is_gain``) vs
      ``mean_change_other`` (pairs that do not meet the criteria);
      ``difference`` = gain − other.
    * paired test: for patients with ≥ 1 gain pair and ≥ 1 other pair,
      d_i = mean gain-pair change − mean other-pair change;
      ``t = mean(d)/(sd(d)/√m)``, df = m − 1, two-sided p.
    * random-intercept model (REML): ``change_ij = b0 + b1·gain_ij + u_i +
      e_ij`` with u_i per patient; b1 with its model SE and z-test p.
    """

    n_gain_pairs: int
    n_other_pairs: int
    n_pairs_missing_alliance: int
    n_pairs_excluded_later_gains: int
    mean_change_gain: float
    mean_change_other: float
    sd_change_gain: float
    sd_change_other: float
    difference: float
    paired_n: int
    paired_mean_diff: float
    paired_se: float
    paired_t: float
    paired_df: float
    paired_p: float
    model_intercept: float
    model_estimate: float
    model_se: float
    model_z: float
    model_p: float
    model_tau2: float
    model_sigma2: float
    model_n_patients: int
    model_converged: bool
    rater: str
    pairs: pd.DataFrame = field(repr=False, compare=False)
    messages: tuple = ()

    @property
    def group_means(self) -> pd.DataFrame:
        """Mean alliance at session n and n + 1 with 95% t intervals, gain vs other pairs."""
        use = self.pairs[self.pairs["change"].notna() & self.pairs["group"].isin(["gain", "other"])]
        rows = []
        for grp in ("gain", "other"):
            s = use[use["group"] == grp]
            for when, col in (("pre", "alliance_pre"), ("post", "alliance_post")):
                m, lo, hi, n = _mean_ci(s[col])
                rows.append({"group": grp, "time": when, "mean": m, "ci_low": lo, "ci_high": hi, "n": n})
        return pd.DataFrame(rows)

    @property
    def change_distribution(self) -> pd.DataFrame:
        """Densities of the alliance change (40 common bins): other pairs vs gain pairs.

        ``bin_low``/``bin_high``/``bin_mid`` and ``density_other``, ``density_gain`` (histogram
        densities, each integrating to 1), so thousands of other pairs are drawn as one curve.
        """
        use = self.pairs[self.pairs["change"].notna() & self.pairs["group"].isin(["gain", "other"])]
        x = use["change"].to_numpy(float)
        if len(x) == 0:
            return pd.DataFrame(columns=["bin_low", "bin_high", "bin_mid", "density_other", "density_gain"])
        lo, hi = float(x.min()), float(x.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
        out = pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "bin_mid": (edges[:-1] + edges[1:]) / 2})
        for grp in ("other", "gain"):
            v = use.loc[use["group"] == grp, "change"].to_numpy(float)
            out["density_" + grp] = np.histogram(v, bins=edges, density=True)[0] if len(v) else np.nan
        return out

    def summary(self, unit: str = "alliance points") -> str:
        """The three comparisons in words."""
        from analysis.formatting import count, num, p_text, signed, stat

        if self.n_gain_pairs == 0:
            return "No sudden gain has alliance ratings at both sessions, so there is nothing to compare."
        s = (f"Across {count(self.n_gain_pairs)} gain pairs the alliance changed on average by "
             f"{signed(self.mean_change_gain)} {unit} from session n to n + 1; across "
             f"{count(self.n_other_pairs)} other pairs by {signed(self.mean_change_other)} "
             f"(difference {signed(self.difference)}).")
        if np.isfinite(self.paired_t):
            s += (f" Paired within-patient test ({count(self.paired_n)} patients with both kinds of pairs): "
                  f"mean difference {signed(self.paired_mean_diff)}, "
                  f"{stat('t', self.paired_t, self.paired_df)}, {p_text(self.paired_p)}.")
        if np.isfinite(self.model_estimate):
            s += (f" Random-intercept model (all pairs): gain-pair effect {signed(self.model_estimate)} "
                  f"(SE {num(self.model_se)}, {stat('z', self.model_z)}, {p_text(self.model_p)}).")
        return s

    def to_frame(self) -> pd.DataFrame:
        rows = [
            ("Gain pairs: mean alliance change", self.mean_change_gain, self.n_gain_pairs),
            ("Other pairs: mean alliance change", self.mean_change_other, self.n_other_pairs),
            ("Difference (gain − other)", self.difference, np.nan),
            ("Paired test: mean within-patient difference", self.paired_mean_diff, self.paired_n),
            ("Paired test: SE", self.paired_se, np.nan),
            ("Paired test: t", self.paired_t, np.nan),
            ("Paired test: df", self.paired_df, np.nan),
            ("Paired test: p", self.paired_p, np.nan),
            ("Random-intercept model: gain-pair effect", self.model_estimate,
             self.n_gain_pairs + self.n_other_pairs),
            ("Random-intercept model: SE", self.model_se, np.nan),
            ("Random-intercept model: z", self.model_z, np.nan),
            ("Random-intercept model: p", self.model_p, np.nan),
            ("Random-intercept model: τ² (patient)", self.model_tau2, self.model_n_patients),
            ("Random-intercept model: σ² (residual)", self.model_sigma2, np.nan),
        ]
        return pd.DataFrame(rows, columns=["quantity", "value", "n"])


def _rater_and_pairs(df, gains, rater, who):
    """(alliance column, checked data, pair frame) for the alliance-around-gains analyses."""
    if rater not in _RATER_COLUMN:
        raise ValueError(f"{who}: rater must be 'patient' or 'therapist', got {rater!r}.")
    col = _RATER_COLUMN[rater]
    return col, _check_frame(df, [col], who), _pair_frame(gains, who)


def _paired_gain_test(use: pd.DataFrame, messages: list):
    """Paired t test of each patient's mean change at gain pairs minus at other pairs."""
    pm = use.groupby(_KEY + ["group"])["change"].mean().unstack("group")
    if "gain" in pm and "other" in pm:
        d = (pm["gain"] - pm["other"]).dropna().to_numpy()
    else:
        d = np.array([])
    m = len(d)
    if m >= 2:
        dm = float(d.mean())
        dse = float(d.std(ddof=1) / math.sqrt(m))
        if dse > 0:
            tt = dm / dse
            tp = float(2 * stats.t.sf(abs(tt), m - 1))
        else:
            tt, tp = np.nan, np.nan
            messages.append("Paired test: all within-patient differences are equal; no test.")
        pdf = float(m - 1)
    else:
        dm = float(d.mean()) if m else np.nan
        dse = tt = tp = pdf = np.nan
        messages.append(
            f"Paired test needs ≥ 2 patients with both a gain pair and another pair; found {m}."
        )

    return m, dm, dse, tt, tp, pdf


def alliance_around_gains(df: pd.DataFrame, gains: pd.DataFrame,
                          rater: str = "patient") -> AllianceAroundGains:
    """Alliance at the pregain vs postgain session, gain pairs vs other pairs.

    METHODS §10 ("alliance in session n vs n + 1 for gain sessions against
    other sessions"). For every candidate pair of `sudden_gains` the change
    ``A_{n+1} − A_n`` (postgain − pregain session alliance) is computed;
    pairs with a missing alliance value are dropped (counted). Gain pairs
    are those with ``is_gain``; other pairs those that do not meet the
    criteria (with ``first_only`` the later gains are in neither group).
    See `AllianceAroundGains` for the three comparisons. The random-intercept
    model is fitted by REML with `analysis.mixed.fit_random_intercept` (no formulas). When
    studies used different alliance instruments, standardize first
    (METHODS §2).
    """
    col, data, g = _rater_and_pairs(df, gains, rater, "alliance_around_gains")
    a = data.set_index(["study", "patient", "session"])[col]
    pre_idx = pd.MultiIndex.from_arrays([g["study"], g["patient"], g["pregain_session"]])
    post_idx = pd.MultiIndex.from_arrays([g["study"], g["patient"], g["postgain_session"]])
    g["alliance_pre"] = a.reindex(pre_idx).to_numpy(dtype=float)
    g["alliance_post"] = a.reindex(post_idx).to_numpy(dtype=float)
    g["change"] = g["alliance_post"] - g["alliance_pre"]
    is_gain = g["is_gain"].astype(bool).to_numpy()
    meets = g["meets_criteria"].astype(bool).to_numpy()
    grp = np.where(is_gain, "gain", np.where(meets, "later gain (excluded)", "other"))
    g["group"] = grp
    messages = []
    n_later = int((grp == "later gain (excluded)").sum())
    miss = g["change"].isna().to_numpy()
    n_miss = int(miss.sum())
    if n_miss:
        messages.append(f"{n_miss} pair(s) dropped because alliance was missing at session n or n + 1.")
    if n_later:
        messages.append(f"{n_later} later gain pair(s) excluded (first gain only).")
    use = g.loc[~miss & (grp != "later gain (excluded)")].reset_index(drop=True)
    cg = use.loc[use["group"] == "gain", "change"].to_numpy()
    co = use.loc[use["group"] == "other", "change"].to_numpy()

    def _m(x):
        return float(np.mean(x)) if len(x) else np.nan

    def _s(x):
        return float(np.std(x, ddof=1)) if len(x) >= 2 else np.nan

    m, dm, dse, tt, tp, pdf = _paired_gain_test(use, messages)

    est = se = z = p = b0 = tau2 = sig2 = np.nan
    conv = False
    n_pat = int(use.groupby(_KEY).ngroups) if len(use) else 0
    if len(cg) and len(co) and len(use) > 2 and n_pat >= 2:
        X = np.column_stack([np.ones(len(use)), (use["group"] == "gain").to_numpy(float)])
        grp_key = use["study"].str.cat(use["patient"], sep="\x1f")
        try:
            fit = fit_random_intercept(X, use["change"].to_numpy(float), grp_key.to_numpy(),
                                       names=["intercept", "gain pair"])
        except (np.linalg.LinAlgError, ValueError) as exc:
            messages.append(f"Random-intercept model could not be fitted: {exc}")
        else:
            b0, est = (float(v) for v in fit.beta)
            se = float(fit.se[1])
            z = est / se if se > 0 else np.nan
            p = float(2 * stats.norm.sf(abs(z))) if se > 0 else np.nan
            tau2, sig2 = float(fit.tau2), float(fit.sigma2)
            conv = bool(fit.converged)
            if fit.tau2 == 0.0:
                messages.append(
                    "Random-intercept variance estimated at 0 (boundary); the model "
                    "equals ordinary least squares."
                )
    else:
        messages.append(
            "Random-intercept model needs gain pairs, other pairs and ≥ 2 patients."
        )

    return AllianceAroundGains(
        n_gain_pairs=len(cg), n_other_pairs=len(co), n_pairs_missing_alliance=n_miss,
        n_pairs_excluded_later_gains=n_later,
        mean_change_gain=_m(cg), mean_change_other=_m(co),
        sd_change_gain=_s(cg), sd_change_other=_s(co),
        difference=_m(cg) - _m(co),
        paired_n=m, paired_mean_diff=dm, paired_se=dse, paired_t=tt, paired_df=pdf,
        paired_p=tp,
        model_intercept=b0, model_estimate=est, model_se=se, model_z=z, model_p=p,
        model_tau2=tau2, model_sigma2=sig2, model_n_patients=n_pat, model_converged=conv,
        rater=rater, pairs=g, messages=tuple(messages),
    )
