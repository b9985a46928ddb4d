"""Total, within and between effects of one study, as the Within/between paper fitted them (METHODS §12).

For direction X → Y (alliance → symptoms, or symptoms → alliance) and lag L,
with patient i, session t and, over the observed values of patient i in the
session window, the person means X̄_i and Ȳ_i:

* ``total``:   Y_{i,t+L} = b0 + b·X_it + a·Y_it + u_i + e        (raw values)
* ``within``:  Y^w_{i,t+L} = b0 + bW·X^w_it + bB·X^b_i + aW·Y^w_it + u_i + e
  with Y^w_{i,t} = Y_it − Ȳ_i, X^w_it = X_it − X̄_i and X^b_i = X̄_i minus the
  mean of the person means (of the patients with an observed X).
* ``between``: Ȳ_i = c0 + c·X̄_i + e_i, OLS with one row per patient that has
  both means; t test on n − 2 df.
* ``between_sessions`` (the paper's between model as published): on the session
  rows of the total and within models (rows with X, Y and the lead observed),
  Ȳ_i = d0 + dW·X^w_it + dB·X^b_i + u_i + e_it, random intercept, REML,
  Satterthwaite df. The outcome is constant within a patient, so σ² holds only
  what dW·X^w fails to reproduce (near zero) and the Satterthwaite df are odd:
  the within term, whose information comes only from how the patients' within
  deviations average out over their rows, gets about the number of patients;
  the between term, a patient-level predictor, gets about the number of rows
  (seed 004: t(130.53) and t(1604.99) with 182 patients). Its between estimate
  is close to the OLS of person means (rows weight the patients), its df are not
  a sample size.

u_i ~ N(0, τ²), e ~ N(0, σ²). The two mixed models are fitted by REML with
:func:`analysis.lmm.fit_lmm` (random intercept), whose t tests use
Satterthwaite's df as lmerTest does. The outcome at t + L is the same
patient's value at session number t + L (no value, no row). Each model uses
the rows that have every variable of that model and only those. With
``standardize`` alliance and symptoms are z-scored over the observed values of
the study in the window (ddof 1) first (METHODS §2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from analysis import formatting as fmt
from analysis import lmm, mixed
from analysis.data import one_study, require_canonical
from analysis.lagged.options import DIRECTIONS, LagOptions
from analysis.options import Declared, declared, option
from analysis.standardize import zscores

__all__ = ["DecompositionOptions", "DecompositionResult", "run", "total_within_between"]

_VARS = {"alliance_to_symptoms": ("alliance", "symptoms"), "symptoms_to_alliance": ("symptoms", "alliance")}
_COLS = ["model", "term", "estimate", "se", "df", "statistic", "pvalue", "ci_low", "ci_high", "n_obs", "n_patients"]
MODELS = ("total", "within", "between", "between_sessions")
M12 = "12-total-within-and-between-effects-of-one-study-withinbetween-paper"
_LAG = {o.name: o for o in declared(LagOptions)}


@dataclass(frozen=True)
class DecompositionOptions(Declared):
    """The choices of :func:`total_within_between` (METHODS §12), declared once (:mod:`analysis.options`).

    ``standardize`` and ``sessions`` are the Lagged options' declarations (another default: the paper's
    models use raw scores); they are not in links of their own (the Lagged options carry them).

    >>> DecompositionOptions(direction="symptoms_to_alliance", lag=2).lag
    2
    >>> DecompositionOptions(lag=0)
    Traceback (most recent call last):
    ...
    ValueError: lag must be a whole number ≥ 1; got 0.
    """

    direction: str = option(
        "choice", "alliance_to_symptoms", choices=DIRECTIONS, label="Direction", methods=M12,
        labels={"alliance_to_symptoms": "Alliance → later symptoms", "symptoms_to_alliance": "Symptoms → later alliance"},
        help="Which variable predicts the other one's value lag sessions later.")
    lag: int = option(
        "int", 1, lo=1, label="Lag (sessions)", methods=M12,
        help="The outcome is the same patient's value at session t + lag (no value, no row).")
    standardize: bool = _LAG["standardize"].field(default=False, url=None)
    sessions: tuple | None = _LAG["sessions"].field(url=None)


def run(df: pd.DataFrame, options: DecompositionOptions | None = None, study=None) -> DecompositionResult:
    """:func:`total_within_between` with its choices as one :class:`DecompositionOptions`.

    >>> from analysis.simulate import simulate_study
    >>> run(simulate_study(40, seed=1).data, DecompositionOptions(lag=2)).lag
    2
    """
    o = options or DecompositionOptions()
    return total_within_between(df, o.direction, lag=o.lag, standardize=o.standardize, study=study,
                                sessions=o.sessions)


@dataclass(frozen=True, eq=False)
class DecompositionResult:
    """The trio of models of :func:`total_within_between`.

    ``coef_data`` holds one row per model term (``model, term, estimate, se,
    df, statistic, pvalue, ci_low, ci_high, n_obs, n_patients``); ``df`` is
    Satterthwaite's for the mixed models and n − 2 for the between OLS.
    ``person_means`` has one row per patient with both means (``patient,
    x_mean, y_mean`` on the analysis scale), the data of the between model;
    ``between_line`` its fitted (intercept, slope). ``tau2``/``sigma2``/
    ``singular`` describe the mixed models' variance components.
    """

    study: str
    direction: str
    predictor: str
    outcome: str
    lag: int
    standardize: bool
    sessions: tuple | None
    coef_data: dict
    person_means: pd.DataFrame = field(repr=False)
    between_line: tuple = (np.nan, np.nan)
    tau2: dict = field(default_factory=dict)
    sigma2: dict = field(default_factory=dict)
    singular: dict = field(default_factory=dict)
    converged: dict = field(default_factory=dict)
    messages: tuple = ()

    def to_frame(self) -> pd.DataFrame:
        """One row per model term: model, term, estimate, se, df, statistic, pvalue, CI, n_obs, n_patients."""
        d = dict(self.coef_data)
        out = pd.DataFrame(d, columns=_COLS)
        out[["n_obs", "n_patients"]] = out[["n_obs", "n_patients"]].astype("int64")
        for c in ("model", "term"):
            out[c] = out[c].astype("string")
        out.insert(0, "study", pd.array([self.study] * len(out), dtype="string"))
        out.insert(1, "direction", pd.array([self.direction] * len(out), dtype="string"))
        return out

    def coef(self, model: str, term: str) -> dict:
        """One coefficient as a dict; KeyError if absent."""
        for j, (m, t) in enumerate(zip(self.coef_data["model"], self.coef_data["term"])):
            if m == model and t == term:
                return {c: self.coef_data[c][j] for c in _COLS[2:]}
        raise KeyError(f"no term {term!r} in the {model} model.")

    def summary(self) -> str:
        """Plain-language reading of the three key coefficients (the Within/between paper's reading)."""
        x, y = self.predictor, self.outcome
        lines = [f"{self.study}: {x} → {y} {self.lag} session(s) later "
                 f"({'z-scores within study' if self.standardize else 'raw scores'})."]
        spec = (("total", "predictor", f"Total (within + between) {x} at t"),
                ("within", "within", f"Within-patient {x} at t (deviation from the own mean)"),
                ("between", "between", f"Between patients: person mean of {x} → person mean of {y}"))
        for model, term, label in spec:
            try:
                c = self.coef(model, term)
            except KeyError:
                lines.append(f"{label}: not estimated.")
                continue
            lines.append(
                f"{label}: b = {fmt.estimate_ci(c['estimate'], c['ci_low'], c['ci_high'], 3)}, "
                f"{fmt.stat('t', c['statistic'], c['df'])}, {fmt.p_text(c['pvalue'])}."
            )
        lines.append(self.reading())
        return "\n".join(lines)

    def reading(self) -> str:
        """One sentence on the signs of the within and between effects (different processes)."""
        try:
            w = self.coef("within", "within")
            b = self.coef("between", "between")
        except KeyError:
            return "The within and between effects could not both be estimated."
        sig = lambda c: c["pvalue"] < 0.05  # noqa: E731
        sign = lambda c: "positive" if c["estimate"] > 0 else "negative"  # noqa: E731
        ws = f"{sign(w)} (significant)" if sig(w) else f"{sign(w)} (not significant)"
        bs = f"{sign(b)} (significant)" if sig(b) else f"{sign(b)} (not significant)"
        txt = (f"Within patients the effect is {ws}; between patients the association of the person means is "
               f"{bs}.")
        if sig(w) and sig(b) and np.sign(w["estimate"]) != np.sign(b["estimate"]):
            txt += (" Opposite signs are possible and not a contradiction: the within effect describes what "
                    "happens when a patient deviates from their own average, the between association how "
                    "patients with different averages differ — two different processes (Within/between paper).")
        return txt


def _select(df, study, sessions):
    """One study's rows in the session window (the study's rows checked by analysis.data.require_canonical),
    sorted by patient and session."""
    require_canonical(df, study=False, values=False)
    study, d = one_study(df, study)
    d = require_canonical(d, study=False, min_rows=0, sort=False)
    if sessions is not None:
        d = d[d["session"].between(*sessions)]
    if len(d) == 0:
        raise ValueError("No rows in the session window.")
    out = pd.DataFrame({"patient": d["patient"].astype("string").to_numpy(), "session": d["session"].to_numpy(),
                        "alliance": d["alliance"].to_numpy(), "symptoms": d["symptoms"].to_numpy()})
    return str(study), out.sort_values(["patient", "session"], kind="stable").reset_index(drop=True)


def _mixed_rows(y, X, g, names, model):
    fit = lmm.fit_lmm(y, X, np.ones((len(y), 1)), g, coef_names=names, re_names=("(Intercept)",))
    lo_hi = []
    for j in range(len(names)):
        df_j = fit.df[j]
        crit = stats.t.ppf(0.975, df_j) if np.isfinite(df_j) else stats.norm.ppf(0.975)
        lo_hi.append((fit.beta[j] - crit * fit.se[j], fit.beta[j] + crit * fit.se[j]))
    rows = [
        {"model": model, "term": names[j], "estimate": fit.beta[j], "se": fit.se[j], "df": fit.df[j],
         "statistic": fit.tvalue[j], "pvalue": fit.pvalue[j], "ci_low": lo_hi[j][0], "ci_high": lo_hi[j][1],
         "n_obs": fit.n_obs, "n_patients": fit.n_groups}
        for j in range(len(names))
    ]
    return rows, fit


DEGENERATE = 1e-8  # σ²/(τ² + σ²) below this: the residual variance is on its boundary


def _between_sessions(x, xm, xb, ym, g, ok, plabel):
    """Seed 004's published between model on the session rows of the within model (module docstring).

    Returns (coefficient rows, LMMFit, a note for readers). When the outcome mean leaves no residual
    variance (σ² ≈ 0: always, in exact arithmetic, for an outcome constant within patients) the REML
    optimum is on the boundary, the within term is 0 by construction and Satterthwaite's df are not
    defined: df and p are then left missing, and the note says why."""
    rows_ = ok & np.isfinite(ym[g]) & np.isfinite(xb[g])
    if len(np.unique(g[rows_])) < 3:
        raise ValueError("fewer than 3 patients with an observed predictor and an outcome mean")
    XX = np.column_stack([np.ones(int(rows_.sum())), (x - xm[g])[rows_], xb[g][rows_]])
    yy, gg = ym[g][rows_], plabel[g[rows_]]
    names = ("intercept", "within", "between")
    fit = lmm.fit_lmm(yy, XX, np.ones((len(yy), 1)), gg, coef_names=names, re_names=("(Intercept)",),
                      satterthwaite=False)
    total = float(fit.psi[0, 0] + fit.sigma2)
    share = float(fit.sigma2) / total if total > 0 else 0.0  # no variance left at all: degenerate too
    if share >= DEGENERATE:
        r, fit = _mixed_rows(yy, XX, gg, names, "between_sessions")
        return r, fit, ("Between model as published (session rows): the outcome is the patient's mean, so "
                        "its Satterthwaite df do not count patients (METHODS §12).")
    r = [{"model": "between_sessions", "term": names[j], "estimate": fit.beta[j], "se": fit.se[j],
          "df": np.nan, "statistic": fit.beta[j] / fit.se[j], "pvalue": np.nan, "ci_low": np.nan,
          "ci_high": np.nan, "n_obs": fit.n_obs, "n_patients": fit.n_groups} for j in range(3)]
    return r, fit, (
        "Between model as published (session rows, person-mean outcome): the outcome does not vary within "
        f"patients, so the residual variance is zero (σ² = {fmt.num(fit.sigma2, 2)} vs τ² = "
        f"{fmt.num(fit.psi[0, 0], 2)}), the within term is 0 by construction and the model's "
        "Satterthwaite df are not defined (lme4 reports a failed convergence on it; the paper's t(130.53) "
        "and t(1604.99) are values of such a fit, not sample sizes). Use the OLS of the person means "
        "(n − 2 df) for the between association (METHODS §12).")


def _between_ols(xm: np.ndarray, ym: np.ndarray) -> tuple[list, tuple]:
    """The between model: OLS of the patients' mean outcome on their mean predictor (t on n − 2 df); its table
    rows and (intercept, slope) of the line."""
    if len(xm) < 3:
        raise ValueError("fewer than 3 patients with both person means")
    bf = mixed.fit_ols(np.column_stack([np.ones(len(xm)), xm]), ym, names=("intercept", "between"))
    stat, lo, hi, p = mixed.wald_table(bf.beta, bf.se, bf.df)
    rows = [{"model": "between", "term": term, "estimate": bf.beta[j], "se": bf.se[j], "df": bf.df,
             "statistic": stat[j], "pvalue": p[j], "ci_low": lo[j], "ci_high": hi[j], "n_obs": bf.n_obs,
             "n_patients": bf.n_obs} for j, term in enumerate(("intercept", "between"))]
    return rows, (float(bf.beta[0]), float(bf.beta[1]))


def total_within_between(df: pd.DataFrame, direction: str = "alliance_to_symptoms", lag: int = 1,
                         standardize: bool = False, study=None, *, sessions=None) -> DecompositionResult:
    """Seed 004's total, within and between models for one study (module docstring; METHODS §12).

    ``study`` names the study (needed when ``df`` holds several); ``sessions``
    an optional inclusive ``(first, last)`` window applied before anything is
    computed (person means use every observed value in it). Returns a
    :class:`DecompositionResult`; a model that cannot be fitted is left out of
    the table and its reason is in ``messages``. Bad input raises ``ValueError``.

    >>> from analysis.simulate import simulate_study
    >>> res = total_within_between(simulate_study(40, seed=1).data)
    >>> res.to_frame()["model"].unique().tolist()
    ['total', 'within', 'between_sessions', 'between']
    """
    o = DecompositionOptions(direction=direction, lag=lag, standardize=standardize, sessions=sessions)  # checks
    direction, lag, standardize, sessions = o.direction, o.lag, o.standardize, o.sessions
    xvar, yvar = _VARS[direction]
    study, d = _select(df, study, sessions)
    x = d[xvar].to_numpy(float)
    y = d[yvar].to_numpy(float)
    msgs = []
    if standardize:  # over the study's window (METHODS §2); a variable that does not vary there gives NaN and
        # its sentence: the models are then not fitted, and say so
        sx, sy = zscores(x), zscores(y)
        msgs += [f"{m}." for s, name in ((sx, xvar), (sy, yvar)) for m in s.problems(name).values()]
        x, y = sx.z, sy.z
    pcode, plab = pd.factorize(d["patient"], sort=True)
    G = len(plab)
    sess = d["session"].to_numpy(np.int64)

    def pmean(v):
        o = np.isfinite(v)
        n = np.bincount(pcode[o], minlength=G).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(pcode[o], weights=v[o], minlength=G) / n

    xm, ym = pmean(x), pmean(y)
    xb = xm - np.nanmean(xm) if np.isfinite(xm).any() else xm
    # lead: the same patient's outcome at session t + L
    key = pcode.astype(np.int64) * (int(sess.max()) + lag + 1) + sess
    pos = np.searchsorted(key, key + lag)
    pc = np.minimum(pos, len(key) - 1)
    has = (pos < len(key)) & (key[pc] == key + lag)
    lead = np.where(has, y[pc], np.nan)
    g = pcode
    rows, tau2, sigma2, singular, converged = [], {}, {}, {}, {}
    ok = np.isfinite(lead) & np.isfinite(x) & np.isfinite(y)
    plabel = np.asarray(plab.astype(str))
    specs = (
        ("total", ("intercept", "predictor", "prior_outcome"),
         lambda: (lead, np.column_stack([np.ones(len(x)), x, y]))),
        ("within", ("intercept", "within", "between", "prior_within"),
         lambda: (lead - ym[g], np.column_stack([np.ones(len(x)), x - xm[g], xb[g], y - ym[g]]))),
    )
    for model, names, build in specs:
        yy, XX = build()
        okm = ok & np.isfinite(yy) & np.isfinite(XX).all(1)
        try:
            if okm.sum() == 0:
                raise ValueError("no complete rows")
            if len(np.unique(g[okm])) < 3:
                raise ValueError("fewer than 3 patients with a complete pair")
            r, fit = _mixed_rows(yy[okm], XX[okm], plabel[g[okm]], names, model)
        except (ValueError, np.linalg.LinAlgError) as exc:
            msgs.append(f"The {model} model was not fitted: {exc}.")
            continue
        rows.extend(r)
        tau2[model] = float(fit.psi[0, 0])
        sigma2[model] = float(fit.sigma2)
        singular[model] = bool(fit.singular)
        converged[model] = bool(fit.converged)
        msgs.extend(f"{model} model: {m}" for m in fit.messages)
    try:
        r, fit, note = _between_sessions(x, xm, xb, ym, g, ok, plabel)
        rows.extend(r)
        tau2["between_sessions"], sigma2["between_sessions"] = float(fit.psi[0, 0]), float(fit.sigma2)
        singular["between_sessions"], converged["between_sessions"] = bool(fit.singular), bool(fit.converged)
        msgs.append(note)
    except (ValueError, np.linalg.LinAlgError, ArithmeticError) as exc:
        msgs.append(f"The between model on the session rows was not fitted: {exc}.")
    both = np.isfinite(xm) & np.isfinite(ym)
    pm = pd.DataFrame({"patient": pd.array(plabel[both], dtype="string"), "x_mean": xm[both], "y_mean": ym[both]})
    try:
        r, line = _between_ols(xm[both], ym[both])
        rows.extend(r)
    except (ValueError, np.linalg.LinAlgError) as exc:
        line = (np.nan, np.nan)
        msgs.append(f"The between model was not fitted: {exc}.")
    coef = {c: [r[c] for r in rows] for c in _COLS}
    for c in _COLS[2:]:
        coef[c] = np.asarray(coef[c], float)
    coef["model"], coef["term"] = tuple(coef["model"]), tuple(coef["term"])
    return DecompositionResult(
        study=study, direction=direction, predictor=xvar, outcome=yvar, lag=lag, standardize=bool(standardize),
        sessions=sessions, coef_data=coef, person_means=pm, between_line=line, tau2=tau2, sigma2=sigma2,
        singular=singular, converged=converged, messages=tuple(msgs),
    )
