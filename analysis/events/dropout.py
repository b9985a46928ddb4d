"""Dropout as an outcome of alliance, ruptures and repairs (METHODS §9a; seeds 002 and 003).

Two models, each per study and pooled across studies by the random-effects engine (METHODS §6):

* `dropout_logistic`: logistic regression of dropout (one row per patient) on early alliance, mean
  alliance, and whether the patient had a rupture / a repaired rupture (`ruptures` with the chosen
  criterion). Log odds ratios; statsmodels GLM (binomial, logit link, IRLS) = R ``glm(family = binomial)``.
* `dropout_cox`: Cox proportional hazards for the time to dropout with time-varying alliance, in
  counting-process form: for each patient and each observed session s_j but the last, an interval
  (s_j, s_{j+1}] with the alliance rated at s_j and no event; a patient who dropped out gets a last
  interval (s_m, s_m + 1] with the alliance at s_m and the event (they did not come back after s_m);
  a completer is censored at s_m. Log hazard ratios; statsmodels ``PHReg`` with ``entry`` (left
  truncation = counting process) and Efron ties = R ``coxph(Surv(start, stop, event) ~ alliance,
  ties = "efron")``.

Why statsmodels ``PHReg`` and not lifelines: statsmodels is already a dependency (one dependency
fewer to install and audit); PHReg takes counting-process data through ``entry``, Efron's ties and
strata, and equals R's coxph to 1e-6 on the committed reference (tests/reference/make_dropout_reference.R).

Dropout per patient comes from a ``dropout`` column (1 = dropped out) or a ``last_session`` column (the
planned last session: a patient whose last rated session is earlier dropped out), as in §9's
rupture–repair groups.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from analysis.events._base import _KEY, _check_frame
from analysis.events.outcomes import _dropout
from analysis.events.rupture import rupture_summary, ruptures
from analysis.options import Declared, option
from analysis.standardize import zscores_by

__all__ = ["DROPOUT_PREDICTORS", "DropoutModels", "dropout_cox", "dropout_logistic", "dropout_models",
           "dropout_patients", "simulate_dropout_data"]

#: Predictors of the logistic dropout model (METHODS §9a), in words (the choices of
#: `analysis.events.options.DropoutOptions.predictors`).
DROPOUT_PREDICTORS = {
    "early_alliance": "Early alliance (mean of the first 3 rated sessions)",
    "mean_alliance": "Mean alliance (all rated sessions)",
    "rupture": "At least one rupture",
    "repair": "At least one repaired rupture",
}
_EARLY = 3
M9A = "9a-dropout-as-an-outcome-seeds-002-and-003"


@dataclass(frozen=True)
class DropoutOptions(Declared):
    """Dropout models (METHODS §9a; :func:`analysis.events.dropout_models`).

    >>> DropoutOptions().predictors
    ('early_alliance', 'rupture', 'repair')
    >>> DropoutOptions(predictors=("age",))
    Traceback (most recent call last):
    ...
    ValueError: each of predictors must be one of 'early_alliance', 'mean_alliance', 'rupture', 'repair'; got 'age'.
    """

    predictors: tuple = option(
        "choices", ("early_alliance", "rupture", "repair"), choices=tuple(DROPOUT_PREDICTORS),
        labels=DROPOUT_PREDICTORS, label="Predictors of dropout (logistic model)", url="do_preds", methods=M9A,
        r=False, help="Logistic regression of dropout per study, log odds ratios pooled by random effects; the Cox "
                      "model of time to dropout always uses the current (time-varying) alliance.")


def _predictors(predictors, who: str) -> tuple:
    """The predictors checked against their declaration (`DropoutOptions`), in the declared order."""
    try:
        return DropoutOptions(predictors=tuple(predictors)).predictors
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{who}: {exc}") from None


def dropout_patients(df: pd.DataFrame, criterion="default", standardize: bool = True) -> pd.DataFrame:
    """One row per patient: study, patient, dropout, n_rated, early_alliance, mean_alliance, rupture, repair.

    Early alliance = mean of the patient's first 3 rated sessions; mean alliance = mean of all rated
    sessions; rupture / repair = at least one rupture / repaired rupture by ``criterion`` (missing for
    patients too short to classify). With ``standardize`` the two alliance scores are z-scored within
    study (across patients; METHODS §2), so odds ratios are per SD. Raises ``ValueError`` without a
    ``dropout`` or ``last_session`` column.
    """
    who = "dropout_patients"
    if not isinstance(df, pd.DataFrame) or not {"dropout", "last_session"} & set(df.columns):
        raise ValueError(f"{who}: the data need a 'dropout' column (1 = dropped out, 0 = completed) or a "
                         f"'last_session' column (the planned last session) to model dropout.")
    drop = _dropout(df, who)
    data = _check_frame(df, ["alliance"], who)
    obs = data[data["alliance"].notna()]
    g = obs.groupby(_KEY, sort=True)["alliance"]
    pp = pd.DataFrame({"n_rated": g.size(), "early_alliance": g.apply(lambda s: s.iloc[:_EARLY].mean()),
                       "mean_alliance": g.mean()}).reset_index()
    pp = pp.merge(drop, on=_KEY, how="left")
    per = rupture_summary(ruptures(df, criterion=criterion))[0]
    for col, src in (("rupture", "any_rupture"), ("repair", "any_repair")):
        s = per.set_index(_KEY)[src].astype("Float64")
        pp[col] = pp.set_index(_KEY).index.map(s).to_numpy(dtype=float, na_value=np.nan)
    problems: dict = {}
    if standardize:  # within each study (METHODS §2); a study where a column cannot be (no variance) gets NaN
        # and its sentence in problems[study][column]: that study is reported, not fitted, the others still run
        for c in ("early_alliance", "mean_alliance"):
            pp[c], why = zscores_by(pp[c], pp["study"], c.replace("_", " "))
            for lab, msg in why.items():
                problems.setdefault(lab, {})[c] = msg
    out = pp[["study", "patient", "dropout", "n_rated", "early_alliance", "mean_alliance", "rupture", "repair"]]
    out.attrs["problems"] = problems  # study → {column: why it could not be standardized}
    return out


def _fit_row(study, term, est, se, n, events, note="") -> dict:
    ok = np.isfinite(est) and np.isfinite(se) and se > 0
    z = est / se if ok else np.nan
    return {"study": study, "term": term, "estimate": est, "se": se, "z": z,
            "pvalue": float(2 * stats.norm.sf(abs(z))) if ok else np.nan,
            "ci_low": est - 1.959963984540054 * se if ok else np.nan,
            "ci_high": est + 1.959963984540054 * se if ok else np.nan,
            "ratio": float(np.exp(est)) if ok else np.nan, "n": int(n), "n_events": int(events), "note": note}


def _logit_study(study, s: pd.DataFrame, predictors) -> list[dict]:
    from statsmodels.genmod.families import Binomial
    from statsmodels.genmod.generalized_linear_model import GLM
    from statsmodels.tools.sm_exceptions import PerfectSeparationError

    s = s.dropna(subset=["dropout", *predictors])
    y = s["dropout"].to_numpy(float)
    n, e = len(s), int(y.sum())
    fail = [_fit_row(study, t, np.nan, np.nan, n, e) for t in predictors]
    if n <= len(predictors) + 1 or e == 0 or e == n:
        return [r | {"note": "needs patients with and without dropout, more than the number of predictors"}
                for r in fail]
    X = np.column_stack([np.ones(n), s[list(predictors)].to_numpy(float)])
    if np.linalg.matrix_rank(X) < X.shape[1]:
        return [r | {"note": "a predictor does not vary (or duplicates another) in this study"} for r in fail]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fit = GLM(y, X, family=Binomial()).fit(tol=1e-12, maxiter=100)
    except (PerfectSeparationError, np.linalg.LinAlgError, ValueError, RuntimeWarning, Warning) as exc:
        note = ("perfect separation: a predictor predicts dropout exactly, no finite odds ratio"
                if "separation" in str(exc).lower() else f"not fitted ({exc})")
        return [r | {"note": note} for r in fail]
    if np.any(np.abs(fit.params) > 15) or np.any(fit.bse > 100):  # quasi-complete separation (R glm warns)
        return [r | {"note": "(quasi-)separation: some patient groups all dropped out or all stayed, no finite "
                             "odds ratio"} for r in fail]
    return [_fit_row(study, t, float(fit.params[i + 1]), float(fit.bse[i + 1]), n, e)
            for i, t in enumerate(predictors)]


def _pool(per_study: pd.DataFrame, method: str) -> pd.DataFrame:
    from analysis.meta import random_effects

    rows = []
    for term, s in per_study.groupby("term", sort=False):
        s = s[np.isfinite(s["estimate"]) & np.isfinite(s["se"])]
        row = {"term": term, "k": len(s), "estimate": np.nan, "se": np.nan, "ci_low": np.nan, "ci_high": np.nan,
               "pvalue": np.nan, "tau2": np.nan, "ratio": np.nan, "ratio_ci_low": np.nan, "ratio_ci_high": np.nan}
        if len(s):
            m = random_effects(s["estimate"].to_numpy(float), s["se"].to_numpy(float) ** 2, method=method,
                               labels=list(s["study"]), ci_tau2=False)
            row.update(estimate=m.estimate, se=m.se, ci_low=m.ci_low, ci_high=m.ci_high, pvalue=m.pvalue,
                       tau2=m.tau2, ratio=float(np.exp(m.estimate)), ratio_ci_low=float(np.exp(m.ci_low)),
                       ratio_ci_high=float(np.exp(min(m.ci_high, 700))))
        rows.append(row)
    return pd.DataFrame(rows)


def dropout_logistic(df: pd.DataFrame, predictors=("early_alliance", "mean_alliance", "rupture", "repair"),
                     criterion="default", standardize: bool = True, method: str = "REML"):
    """Logistic regression of dropout per study, log ORs pooled by random effects (METHODS §9a).

    ``logit P(dropout_i) = b0 + Σ b_p·x_ip`` over ``predictors`` (keys of `DROPOUT_PREDICTORS`), fitted by
    maximum likelihood (IRLS, statsmodels GLM = R glm). Patients with a missing predictor are left out
    (a patient needs ≥ 4 rated sessions for a rupture status). Returns (per_study, pooled) frames: per
    study and term ``estimate`` (log OR), ``se``, ``z``, ``pvalue``, Wald ``ci_low/high``, ``ratio``
    (OR), ``n``, ``n_events``, ``note``; pooled per term by `analysis.meta.random_effects`.
    """
    predictors = _predictors(predictors, "dropout_logistic")
    return _logistic(dropout_patients(df, criterion=criterion, standardize=standardize), predictors, method)


def _logistic(pp: pd.DataFrame, predictors, method: str):
    problems = pp.attrs.get("problems", {})

    def study(st, s):
        bad = [msg for c, msg in problems.get(st, {}).items() if c in predictors]
        if bad:  # a predictor could not be standardized in this study: reported, the other studies still run
            e = int(s["dropout"].sum())
            return [_fit_row(st, t, np.nan, np.nan, len(s), e, "; ".join(bad)) for t in predictors]
        return _logit_study(st, s, predictors)

    per = pd.DataFrame([r for st, s in pp.groupby("study", sort=True) for r in study(st, s)])
    return per, _pool(per, method)


def counting_process(df: pd.DataFrame, standardize: bool = True) -> pd.DataFrame:
    """Counting-process rows of `dropout_cox`: study, patient, start, stop, event, alliance (METHODS §9a)."""
    who = "dropout_cox"
    drop = _dropout(df, who)
    if drop is None:
        raise ValueError(f"{who}: the data need a 'dropout' column (1 = dropped out, 0 = completed) or a "
                         f"'last_session' column (the planned last session) to model dropout.")
    data = _check_frame(df, ["alliance"], who)
    problems: dict = {}
    if standardize:  # within each study (METHODS §2); a study where it cannot be is reported, not fitted
        data["alliance"], why = zscores_by(data["alliance"], data["study"], "alliance")
        problems = {lab: {"alliance": msg} for lab, msg in why.items()}
    obs = data[data["alliance"].notna()].copy()
    obs = obs.merge(drop, on=_KEY, how="left")
    obs = obs[obs["dropout"].notna()]
    nxt = obs.groupby(_KEY, sort=False)["session"].shift(-1)
    last = nxt.isna()
    stop = np.where(last, obs["session"] + 1, nxt)
    keep = ~last | (obs["dropout"] > 0)
    out = pd.DataFrame({"study": obs["study"], "patient": obs["patient"], "start": obs["session"].astype(float),
                        "stop": stop.astype(float), "event": (last & (obs["dropout"] > 0)).astype(int),
                        "alliance": obs["alliance"]})
    out = out[keep.to_numpy()].reset_index(drop=True)
    d = drop[drop["study"].isin(list(problems)) & drop["dropout"].notna()]
    # a study whose alliance could not be standardized has no rows here: its reason, patients and dropouts
    out.attrs["problems"] = {st: ("; ".join(problems[st].values()), int((d["study"] == st).sum()),
                                  int(d.loc[d["study"] == st, "dropout"].sum())) for st in sorted(problems)}
    return out


def _cox_study(study, s: pd.DataFrame) -> dict:
    from statsmodels.duration.hazard_regression import PHReg

    # PHReg counts a row as at risk at its own entry time (entry <= t); R's counting process (start, stop]
    # does not. Entering just after ``start`` gives R's risk sets: without it the log HR of the reference
    # data was −0.675 instead of coxph's −0.680.
    n, e = s["patient"].nunique(), int(s["event"].sum())
    if e == 0 or s["alliance"].std() == 0 or len(s) < 3:
        return _fit_row(study, "alliance", np.nan, np.nan, n, e, "needs dropouts and varying alliance")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = PHReg(s["stop"].to_numpy(float), s[["alliance"]].to_numpy(float), status=s["event"].to_numpy(int),
                        entry=np.nextafter(s["start"].to_numpy(float), np.inf), ties="efron").fit(gtol=1e-10)
    except (np.linalg.LinAlgError, ValueError) as exc:
        return _fit_row(study, "alliance", np.nan, np.nan, n, e, f"not fitted ({exc})")
    return _fit_row(study, "alliance", float(fit.params[0]), float(fit.bse[0]), n, e)


def dropout_cox(df: pd.DataFrame, standardize: bool = True, method: str = "REML"):
    """Cox model of time to dropout with time-varying alliance, per study and pooled (METHODS §9a).

    h_i(t) = h_0(t)·exp(β·A_i(t)) with A_i(t) the alliance at the patient's last rated session before
    t (`counting_process`); Efron ties; alliance z-scored within study with ``standardize``. Returns
    (per_study, pooled) as `dropout_logistic`, ``ratio`` = hazard ratio per SD (or point) of alliance.
    """
    cp = counting_process(df, standardize=standardize)
    rows = [_cox_study(st, s) for st, s in cp.groupby("study", sort=True)]
    rows += [_fit_row(st, "alliance", np.nan, np.nan, n, e, why) for st, (why, n, e) in cp.attrs["problems"].items()]
    per = pd.DataFrame(rows).sort_values("study", kind="stable").reset_index(drop=True)
    return per, _pool(per, method)


@dataclass(frozen=True)
class DropoutModels:
    """Dropout regressed on alliance, ruptures and repairs (`dropout_models`, METHODS §9a)."""

    predictors: tuple
    criterion: str
    logistic: pd.DataFrame
    logistic_pooled: pd.DataFrame
    cox: pd.DataFrame
    cox_pooled: pd.DataFrame
    n_patients: int
    n_dropout: int
    messages: tuple = field(default=())

    def to_frame(self) -> pd.DataFrame:
        """Per-study and pooled rows of both models: model, study ("Pooled" for the pooled row), term, ..."""
        parts = [self.logistic.assign(model="logistic"),
                 self.logistic_pooled.assign(model="logistic", study="Pooled"),
                 self.cox.assign(model="cox"), self.cox_pooled.assign(model="cox", study="Pooled")]
        t = pd.concat(parts, ignore_index=True)
        return t[["model", "study", "term", *[c for c in t.columns if c not in ("model", "study", "term")]]]

    def summary(self) -> str:
        from analysis.formatting import count, num, p_text, percent

        s = (f"{count(self.n_dropout)} of {count(self.n_patients)} patients ({percent(self.n_dropout / self.n_patients, 1)}) "
             "dropped out.")
        cp = self.cox_pooled.iloc[0] if len(self.cox_pooled) else None
        if cp is not None and np.isfinite(cp["estimate"]):
            s += (f" Time to dropout: hazard ratio per SD of the current alliance {num(cp['ratio'])} "
                  f"(95% CI {num(cp['ratio_ci_low'])} to {num(cp['ratio_ci_high'])}, {p_text(cp['pvalue'])}).")
        for r in self.logistic_pooled.itertuples():
            if np.isfinite(r.estimate):
                s += (f" {DROPOUT_PREDICTORS[r.term]}: odds ratio {num(r.ratio)} ({num(r.ratio_ci_low)} to "
                      f"{num(r.ratio_ci_high)}, {p_text(r.pvalue)}).")
        return s


def dropout_models(df: pd.DataFrame, predictors=("early_alliance", "rupture", "repair"), criterion="default",
                   standardize: bool = True, method: str = "REML") -> DropoutModels:
    """`dropout_logistic` and `dropout_cox` in one result, with notes on what they assume (METHODS §9a)."""
    predictors = _predictors(predictors, "dropout_models")
    pp = dropout_patients(df, criterion=criterion, standardize=standardize)
    lg, lgp = _logistic(pp, tuple(predictors), method)
    cx, cxp = dropout_cox(df, standardize=standardize, method=method)
    msgs = [f"Study {r.study}, {r.term}: {r.note}." for r in pd.concat([lg, cx]).itertuples() if r.note]
    if {"rupture", "repair"} & set(predictors):
        msgs.append("Ruptures and repairs need sessions to happen in: a patient who drops out early has fewer "
                    "chances of a rupture and none of a repair after it, so their odds ratios mix the event with "
                    "the time in treatment (the Cox model of time-varying alliance does not).")
    return DropoutModels(predictors=tuple(predictors), criterion=str(criterion), logistic=lg, logistic_pooled=lgp,
                         cox=cx, cox_pooled=cxp, n_patients=int(pp["dropout"].notna().sum()),
                         n_dropout=int((pp["dropout"] > 0).sum()), messages=tuple(msgs))


def simulate_dropout_data(n_studies: int = 3, n_patients: int = 150, n_sessions: int = 12,
                          log_odds_alliance: float = -0.7, base_log_odds: float = -2.6, seed: int = 0,
                          rupture_share: float = 0.0) -> pd.DataFrame:
    """Sessions with dropout driven by the current alliance (known truth for §9a's tests and demos).

    Alliance as in `simulate_rupture_data` (rising trend, AR(1) noise); after each session s < T a
    patient leaves with probability logistic(base_log_odds + log_odds_alliance·z_is), z the alliance at s
    standardized by the study's SD of alliance ratings. A patient who leaves has no later rows and
    ``dropout`` = 1; the others complete T sessions (0). ``rupture_share``: share with one planted 3.5-SD dip.
    """
    from analysis.events.rupture import simulate_rupture_data

    rng = np.random.default_rng([seed, 17])
    frames = []
    for j in range(n_studies):
        d, _ = simulate_rupture_data(n_patients, n_sessions, plant=rupture_share, seed=seed * 100 + j,
                                     study=f"Study {j + 1}")
        d = d.sort_values(["patient", "session"]).reset_index(drop=True)
        z = (d["alliance"] - d["alliance"].mean()) / d["alliance"].std(ddof=1)
        p = 1 / (1 + np.exp(-(base_log_odds + log_odds_alliance * z)))
        leave = (rng.random(len(d)) < p) & (d["session"] < n_sessions)
        first_leave = d.assign(_l=np.where(leave, d["session"], np.inf)).groupby("patient")["_l"].transform("min")
        d = d[d["session"] <= first_leave].copy()
        d["dropout"] = np.isfinite(first_leave[d.index]).astype(int)
        frames.append(d)
    return pd.concat(frames, ignore_index=True)
