"""Symptom growth Models 1–3 of the Convergence paper and the Table I layout (METHODS §8).

Growth models (REML; random intercept and slope, unstructured 2 × 2
covariance; all dyad-level predictors grand-mean centered over the dyads in
the model; the product term is the product of the centered variables)::

    Model 1: Y_ij = b0j + b1j·t_ij + r_ij,  b0j = g00 + u0j,  b1j = g10 + u1j
    Model 2: b0j = g00 + g01·initial_j + g02·convergence_j + u0j
             b1j = g10 + g11·initial_j + g12·convergence_j + u1j
    Model 3: Model 2 + early_P, early_T, alliance_development,
             early_discrepancy and convergence × alliance_development on
             both b0j and b1j

so the fixed terms are the dyad-level predictors (effects on the intercept)
and their products with time (effects on the slope; ``time:convergence`` is
the paper's "Converg. × Time"). Solver: :mod:`analysis.lmm`.

Collinearity of Model 3. With the raw definitions, early_discrepancy is
*exactly* early_P − early_T, so the three terms cannot all be estimated (nor
their time interactions). The paper nevertheless reports separate estimates
for all three (Tables I–II), which is possible only if its discrepancy was not
the exact difference of the two early ratings it used — its text also says the
initial scores were derived from the per-dyad growth curves. We therefore:
``early_discrepancy="raw"`` (default) drops early_discrepancy and its time
interaction with a message (its effect is the contrast between the early_P and
early_T coefficients: the model is unchanged, only reparametrised);
``early_discrepancy="fitted"`` uses the growth-line discrepancy at the first
joint session, which is estimable but nearly collinear when ratings are close
to linear (variance inflation factors are reported in the warnings).

Sample. All models of one call use the same dyads (those with a convergence
score and an initial symptom score), so the ML AICs are comparable. Excluded
dyads are listed with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from analysis.convergence._common import _check
from analysis.convergence.samples import SampleResult, SampleRules, apply_sample_rules
from analysis.convergence.scores import DyadScores, dyad_scores
from analysis.formatting import count, num, p_text, pvalue
from analysis.lmm import LMMFit, boundary_lrt, drop_collinear, fit_lmm, variance_components

PREDICTORS = (
    "initial_symptoms",
    "convergence",
    "early_patient",
    "early_therapist",
    "alliance_development",
    "early_discrepancy",
    "convergence_x_development",
)
MODEL_PREDICTORS = {
    1: (),
    2: ("initial_symptoms", "convergence"),
    3: PREDICTORS,
}
TERM_LABELS = {
    "intercept": "Intercept",
    "time": "Time (slope)",
    "initial_symptoms": "Initial symptoms",
    "convergence": "Convergence",
    "early_patient": "Early P",
    "early_therapist": "Early T",
    "alliance_development": "Alliance development",
    "early_discrepancy": "Early P−T discrepancy",
    "convergence_x_development": "Convergence × alliance development",
}
for _k in list(TERM_LABELS):
    if _k not in ("intercept", "time"):
        TERM_LABELS[f"time:{_k}"] = TERM_LABELS[_k] + " × Time"


# ----------------------------------------------------------------------------
# growth models


@dataclass(frozen=True, eq=False)
class GrowthModel:
    """One fitted growth model (Model 1, 2 or 3).

    ``fixed``: term, label, estimate, se, df (Satterthwaite), t, pvalue,
    ci_low, ci_high (95 %, t with the Satterthwaite df). ``random``:
    var_intercept, var_slope, cov_intercept_slope, corr_intercept_slope,
    residual, var_therapist (None for two levels). ``variance``: the same
    components with Wald SEs (:func:`analysis.lmm.variance_components`).
    ``aic_reml`` is from the REML fit (compare only models with identical
    fixed effects); ``aic_ml`` from the ML refit (use this to compare Models 1–3).
    """

    model: int
    fixed: pd.DataFrame
    random: dict
    aic_reml: float
    aic_ml: float
    deviance_reml: float
    deviance_ml: float
    converged: bool
    warnings: tuple
    n_dyads: int
    n_obs: int
    levels: int
    dropped_terms: tuple
    fit: LMMFit = field(repr=False)
    fit_ml: LMMFit | None = field(default=None, repr=False)
    variance: pd.DataFrame | None = None

    def to_frame(self) -> pd.DataFrame:
        out = self.fixed.copy()
        out.insert(0, "model", self.model)
        return out

    def summary(self) -> str:
        return (f"Model {self.model}: {count(self.n_dyads)} dyads, {count(self.n_obs)} observations, "
                f"{self.levels} levels, AIC (ML) {num(self.aic_ml, 1)}"
                + ("" if self.converged else ", not converged") + ".")


@dataclass(frozen=True, eq=False)
class GrowthResult:
    """Models 1–3 of one study. ``models[m]`` is a :class:`GrowthModel`.

    ``time``: the time coding ("session": t = session number;
    "from_first": t = session − ``time_origin``, the first session in the
    model data, so the intercept is the status at the first session;
    "occasion": t = 0, 1, 2, … the dyad's symptom assessments in order).
    ``centering``: the grand means subtracted from each dyad-level predictor.
    ``sample``: the dyad-level data used (centered predictors);
    ``excluded``: dyads left out, with the reason. ``level_test``: the
    null-model likelihood-ratio test of the therapist variance that decided
    the number of levels for every model (None without a therapist level);
    ``slope_test``: the null-model test that the symptom slopes vary.
    ``observed``: mean symptoms of the model rows per time value (t, mean, n, x =
    t + time_origin).
    """

    study: str
    models: dict
    scores: DyadScores
    time: str
    time_origin: float
    centering: dict
    sample: pd.DataFrame
    excluded: pd.DataFrame
    messages: tuple
    level_test: dict | None = None
    slope_test: dict | None = None
    sample_rules: SampleResult | None = None
    covariates: tuple = ()
    observed: pd.DataFrame | None = None
    rows: pd.DataFrame | None = field(default=None, repr=False)

    def to_frame(self) -> pd.DataFrame:
        return pd.concat([m.to_frame() for m in self.models.values()], ignore_index=True)

    def model_data(self) -> pd.DataFrame:
        """The rows the growth models were fitted to, one per symptom score: ``patient``, ``therapist``
        (only when the models have the therapist level), ``t`` (the time coding), ``symptoms`` and every
        dyad-level predictor of the models on its original scale (uncentered; the models centre them
        at the mean over the dyads, and the product term is built from the centred values).
        Everything upstream (sample rules, dyad scores, exclusions) is already applied."""
        if self.rows is None:
            raise ValueError("This result does not carry its model rows.")
        three = any(m.levels == 3 for m in self.models.values())
        out = self.rows[["patient", "therapist", "t", "symptoms"] if three else ["patient", "t", "symptoms"]].copy()
        dy = self.sample.set_index("patient")
        for c in dy.columns:
            if c == "convergence_x_development":
                continue
            out[c] = dy[c].reindex(out["patient"]).to_numpy(float) + self.centering[c]
        return out.reset_index(drop=True)

    def implied_trajectories(self, model: int = 2, predictor: str = "convergence", n: int = 60) -> pd.DataFrame:
        """Model-implied mean symptom lines at −1 SD, mean and +1 SD of a dyad-level predictor.

        ``ŷ(t) = (g00 + g0x·x) + (g10 + g1x·x)·t`` with the other (centered)
        predictors at their means and x = z·SD(predictor) (SD over the model's
        dyads, ddof = 1), over ``n`` points from the first to the last time of
        the model rows. Columns: z, x (session, or occasion when time =
        "occasion"), t, predicted.
        """
        if model not in self.models:
            raise ValueError(f"Model {model} was not fitted.")
        fx = self.models[model].fixed.set_index("term")["estimate"]
        if predictor not in fx.index:
            raise ValueError(f"{predictor!r} is not a term of Model {model}.")
        sd = float(self.sample[predictor].std(ddof=1))
        obs = self.observed
        tmin, tmax = (float(obs["t"].min()), float(obs["t"].max())) if obs is not None and len(obs) else (0.0, 10.0)
        t = np.linspace(tmin, tmax, n)
        out = []
        for z in (-1, 0, 1):
            x = z * sd
            y = fx["intercept"] + fx.get(predictor, 0) * x + (fx["time"] + fx.get(f"time:{predictor}", 0) * x) * t
            out.append(pd.DataFrame({"z": z, "x": t + self.time_origin, "t": t, "predicted": y}))
        return pd.concat(out, ignore_index=True)

    def table(self, digits: int = 2) -> pd.DataFrame:
        return models_table(self, digits=digits)

    def summary(self) -> str:
        return f"{self.study}: " + " ".join(m.summary() for m in self.models.values())


def _vif(Xd: np.ndarray, names) -> dict:
    out = {}
    for i, nm in enumerate(names):
        others = np.delete(Xd, i, axis=1)
        A = np.column_stack([np.ones(len(Xd)), others])
        c, *_ = np.linalg.lstsq(A, Xd[:, i], rcond=None)
        r = Xd[:, i] - A @ c
        ss = np.sum((Xd[:, i] - Xd[:, i].mean()) ** 2)
        r2 = 1 - np.sum(r**2) / ss if ss > 0 else 1.0
        out[nm] = np.inf if r2 >= 1 - 1e-12 else 1.0 / (1.0 - r2)
    return out


TIMES = ("session", "from_first", "occasion")


def _covariate_values(d: pd.DataFrame, covariates) -> pd.DataFrame:
    """Dyad-level covariates: one numeric value per dyad (constant within the dyad)."""
    out = pd.DataFrame(index=pd.Index(d["patient"].unique()))
    for c in covariates:
        if c not in d.columns:
            raise ValueError(f"The covariate column '{c}' is not in the data.")
        if c in PREDICTORS or c in ("intercept", "time"):
            raise ValueError(f"'{c}' is already a model term; choose another covariate column.")
        v = pd.to_numeric(d[c], errors="coerce")
        if v.notna().sum() == 0:
            raise ValueError(f"The covariate '{c}' has no numeric values.")
        nun = v.groupby(d["patient"]).nunique()
        if (nun > 1).any():
            raise ValueError(f"The covariate '{c}' varies within dyad {nun[nun > 1].index[0]}; "
                             "dyad-level covariates must be constant within a dyad.")
        out[c] = v.groupby(d["patient"]).first().reindex(out.index).astype(float)
    return out


def _prepare(df, scores, time, early_discrepancy, discrepancy, transform, need_symptoms=True,
             method="ols", covariates=()):
    cols = ("alliance", "therapist_alliance", "symptoms") if need_symptoms else ("alliance", "therapist_alliance")
    d = _check(df, cols)
    studies = d["study"].unique()
    if len(studies) != 1:
        raise ValueError(
            f"The data hold {len(studies)} studies; growth models are fitted per study "
            "(select one study, or use pooled_convergence to pool the per-study effects)."
        )
    if time not in TIMES:
        raise ValueError("time must be 'session' (session number), 'from_first' (session − first session) or "
                         "'occasion' (0, 1, 2, … per dyad).")
    if early_discrepancy not in ("raw", "fitted"):
        raise ValueError("early_discrepancy must be 'raw' or 'fitted'.")
    if scores is None:
        scores = dyad_scores(d, discrepancy=discrepancy, transform=transform, method=method)
    elif isinstance(scores, pd.DataFrame):
        scores = DyadScores(table=scores, excluded=pd.DataFrame(columns=["study", "patient", "reason"]))
    elif not isinstance(scores, DyadScores):
        raise ValueError("scores must be a DyadScores (from dyad_scores) or its table.")
    need = ["patient", "initial_symptoms", "convergence", "early_patient", "early_therapist",
            "alliance_development", "early_discrepancy"]
    if early_discrepancy == "fitted":
        need.append("early_discrepancy_fitted")
    miss = [c for c in need if c not in scores.table.columns]
    if miss:
        raise ValueError("The dyad scores lack column(s): " + ", ".join(miss))
    tab = scores.table
    tab = tab[tab["study"].astype("string") == studies[0]] if "study" in tab.columns else tab
    tab = tab.set_index(tab["patient"].astype("string"))
    excluded = [scores.excluded[["patient", "reason"]]] if len(scores.excluded) else []
    # dyads with symptom data (every symptom row counts, with or without alliance ratings)
    sym = d[d["symptoms"].notna()]
    have_sym = set(sym["patient"])
    dy = pd.DataFrame(index=tab.index)
    dy["initial_symptoms"] = tab["initial_symptoms"].astype(float)
    dy["convergence"] = tab["convergence"].astype(float)
    dy["early_patient"] = tab["early_patient"].astype(float)
    dy["early_therapist"] = tab["early_therapist"].astype(float)
    dy["alliance_development"] = tab["alliance_development"].astype(float)
    dy["early_discrepancy"] = (
        tab["early_discrepancy_fitted"] if early_discrepancy == "fitted" else tab["early_discrepancy"]
    ).astype(float)
    covariates = tuple(covariates or ())
    if covariates:
        cv = _covariate_values(d, covariates)
        for c in covariates:
            dy[c] = cv[c].reindex(dy.index).to_numpy()
    bad = ~np.isfinite(dy.to_numpy()).all(axis=1) | ~dy.index.isin(list(have_sym))
    if bad.any():
        reasons = np.where(dy.index[bad].isin(list(have_sym)), "missing dyad-level predictor",
                           "no symptom score")
        excluded.append(pd.DataFrame({"patient": dy.index[bad].astype("string"), "reason": reasons}))
    dy = dy[~bad]
    unscored = sorted(have_sym - set(tab.index) - set(pd.concat(excluded)["patient"]) if excluded
                      else have_sym - set(tab.index))
    if unscored:
        excluded.append(pd.DataFrame({"patient": pd.array(unscored, dtype="string"),
                                      "reason": "no dyad scores"}))
    if len(dy) < 3:
        raise ValueError(f"Only {len(dy)} dyad(s) have alliance scores and symptom data; growth models need more.")
    centering = {c: float(dy[c].mean()) for c in dy.columns}
    dyc = dy - pd.Series(centering)
    dyc["convergence_x_development"] = dyc["convergence"] * dyc["alliance_development"]
    centering["convergence_x_development"] = 0.0
    rows = sym[sym["patient"].isin(dyc.index)].copy()
    if time == "occasion":
        origin = 0.0
        rows["t"] = rows.groupby("patient", sort=False).cumcount().astype(float)
    else:
        origin = float(rows["session"].min()) if time == "from_first" else 0.0
        rows["t"] = rows["session"] - origin
    exc = (pd.concat(excluded, ignore_index=True) if excluded
           else pd.DataFrame({"patient": pd.array([], dtype="string"), "reason": []}))
    exc.insert(0, "study", pd.array([studies[0]] * len(exc), dtype="string"))
    return d, scores, str(studies[0]), dyc, rows, origin, centering, exc


def _model_predictors(model, covariates=()):
    base = MODEL_PREDICTORS[model]
    if model == 3:
        base = base[:-1] + tuple(covariates) + base[-1:]
    elif model == 2:
        base = base + tuple(covariates)
    return base


def _design(rows, dyc, model, covariates=()):
    preds = _model_predictors(model, covariates)
    t = rows["t"].to_numpy(float)
    cols = [np.ones(len(rows)), t]
    names = ["intercept", "time"]
    dv = dyc.loc[rows["patient"].to_numpy()]
    for p in preds:
        v = dv[p].to_numpy(float)
        cols += [v, v * t]
        names += [p, f"time:{p}"]
    return np.column_stack(cols), names


def _label(term: str) -> str:
    if term in TERM_LABELS:
        return TERM_LABELS[term]
    if term.startswith("time:"):
        return term[5:] + " × Time"
    return term


def _yzg(rows):
    t = rows["t"].to_numpy(float)
    return (rows["symptoms"].to_numpy(float), np.column_stack([np.ones(len(rows)), t]),
            rows["patient"].astype(str).to_numpy())


def _null_fit(rows, outer):
    """REML fit of the null model (random intercept and slope) without Satterthwaite df."""
    y, Z, groups = _yzg(rows)
    return fit_lmm(y, Z, Z, groups, coef_names=("intercept", "time"), re_names=("intercept", "time"),
                   outer=outer, satterthwaite=False)


def _level_decision(rows, mode, null2=None):
    """One decision on the therapist level, taken in the null model (Model 1) and used for every model.

    REML fits of ``Y = b0j + b1j·t (+ v_k)`` with and without the therapist
    intercept v_k; ``LR = dev₂ − dev₃`` is referred to the 50:50 mixture of
    χ²₀ and χ²₁ (:func:`analysis.lmm.boundary_lrt`). ``mode``: "lrt" keeps
    three levels when p < .05; "always" keeps them whenever the three-level
    null model converges. Returns (outer labels or None, test dict or None, messages).
    """
    if mode in (False, None, "never"):
        return None, None, []
    if mode is True:
        mode = "lrt"
    if mode not in ("lrt", "always"):
        raise ValueError("therapist_level must be False/'never', True/'lrt' or 'always'.")
    if "therapist" not in rows.columns or rows["therapist"].isna().any():
        return None, None, ["No therapist id for every row: the therapist level was not fitted (two levels)."]
    y, Z, groups = _yzg(rows)
    outer = rows["therapist"].astype(str).to_numpy()
    f2 = null2 if null2 is not None else _null_fit(rows, None)
    try:
        f3 = fit_lmm(y, Z, Z, groups, coef_names=("intercept", "time"), re_names=("intercept", "time"),
                     outer=outer, satterthwaite=False)
    except ValueError as exc:
        return None, None, [f"The three-level model failed ({exc}); fell back to two levels."]
    if not f3.converged:
        return None, None, ["The three-level model did not converge; fell back to two levels (as in the paper)."]
    test = boundary_lrt(f2, f3, df_full=1, df_reduced=0)
    test.update(var_therapist=float(f3.outer_var), n_therapists=int(f3.n_outer), mode=mode)
    desc = (f"therapist variance in the null model {num(f3.outer_var, 3)} (LR = {num(test['statistic'])}, "
            f"{p_text(test['pvalue'])}, 50:50 mixture of χ²₀ and χ²₁)")
    if mode == "always" or test["pvalue"] < 0.05:
        test["levels"] = 3
        why = "requested" if mode == "always" and test["pvalue"] >= 0.05 else "significant"
        return outer, test, [f"Three levels in every model ({why}): {desc}."]
    test["levels"] = 2
    return None, test, [f"Two levels in every model: the {desc} is not significant, so the therapist level "
                        "was dropped for all models (as in the paper)."]


def _slope_test(rows, outer, full=None):
    """Do the symptom slopes vary? Null model with a random intercept only vs intercept + slope (REML).

    LR is referred to the 50:50 mixture of χ²₁ and χ²₂ (the slope variance on its
    boundary plus its free covariance; Stram & Lee 1994).
    """
    y, Z, groups = _yzg(rows)
    full = full if full is not None else _null_fit(rows, outer)
    red = fit_lmm(y, Z, Z[:, :1], groups, coef_names=("intercept", "time"), re_names=("intercept",), outer=outer,
                  satterthwaite=False)
    out = boundary_lrt(red, full, df_full=2, df_reduced=1)
    out["var_slope"] = float(full.psi[1, 1])
    return out


def _fit_one(model, rows, dyc, outer, satterthwaite, ml_refit, covariates=(), pre_warnings=()):
    X, names = _design(rows, dyc, model, covariates)
    warnings = list(pre_warnings)
    Xk, kept, dropped = drop_collinear(X, names)
    if dropped:
        ed = [nm for nm in dropped if "early_discrepancy" in nm]
        if ed and len(ed) == len(dropped):
            warnings.append(
                "early_discrepancy (= early_P − early_T) is a linear combination of early_patient and "
                "early_therapist, so it and its time interaction were dropped; its effect is the "
                "contrast of the early_P and early_T coefficients (early_discrepancy='fitted' uses the "
                "growth-line discrepancy instead)."
            )
        else:
            warnings.append("Collinear term(s) dropped: " + ", ".join(dropped) + ".")
    y, Z, groups = _yzg(rows)
    fit = fit_lmm(y, Xk, Z, groups, coef_names=kept, re_names=("intercept", "time"), outer=outer,
                  satterthwaite=satterthwaite)
    warnings += list(fit.messages)
    fit_ml = None
    if ml_refit:
        fit_ml = fit_lmm(y, Xk, Z, groups, coef_names=kept, re_names=("intercept", "time"), outer=outer,
                         reml=False, satterthwaite=False, start=fit.theta)
        warnings += [f"ML refit: {m}" for m in fit_ml.messages]
    fx = fit.fixed_frame()
    fx.insert(1, "label", [_label(nm) for nm in fx["term"]])
    crit = np.where(np.isfinite(fx["df"]), stats.t.ppf(0.975, np.where(np.isfinite(fx["df"]), fx["df"], 1)),
                    stats.norm.ppf(0.975))
    fx["ci_low"] = fx["estimate"] - crit * fx["se"]
    fx["ci_high"] = fx["estimate"] + crit * fx["se"]
    psi = fit.psi
    random = {
        "var_intercept": float(psi[0, 0]),
        "var_slope": float(psi[1, 1]),
        "cov_intercept_slope": float(psi[0, 1]),
        "corr_intercept_slope": float(psi[0, 1] / np.sqrt(psi[0, 0] * psi[1, 1]))
        if psi[0, 0] > 0 and psi[1, 1] > 0 else np.nan,
        "residual": float(fit.sigma2),
        "var_therapist": fit.outer_var,
    }
    return GrowthModel(
        model=model, fixed=fx, random=random, aic_reml=fit.aic,
        aic_ml=fit_ml.aic if fit_ml is not None else np.nan, deviance_reml=fit.deviance,
        deviance_ml=fit_ml.deviance if fit_ml is not None else np.nan,
        converged=bool(fit.converged and (fit_ml is None or fit_ml.converged)), warnings=tuple(warnings),
        n_dyads=fit.n_groups, n_obs=fit.n_obs, levels=3 if outer is not None else 2,
        dropped_terms=tuple(dropped), fit=fit, fit_ml=fit_ml, variance=variance_components(fit),
    )


def _collinearity_messages(dyc: pd.DataFrame) -> list:
    """A message naming the Model 3 predictors with a variance inflation factor > 10 (none otherwise)."""
    names = [c for c in dyc.columns]
    v = _vif(dyc[names].to_numpy(), names)
    hi = {k: val for k, val in v.items() if val > 10}
    if not hi:
        return []
    return ["Model 3 predictors are nearly collinear (variance inflation factor > 10: "
            + ", ".join(f"{k} {num(val, 3)}" for k, val in hi.items()) + ")."]


def _fit_models(models, rows, dyc, outer, level_test, lvl_msgs, opts) -> tuple:
    """Fit every model with the decided levels; if a three-level fit fails, refit all with two.

    Returns (fitted models, the outer grouping used, messages); ``level_test["levels"]`` is set to 2
    on the fall-back.
    """
    satterthwaite, ml_refit, covariates = opts
    messages = []

    def fit_all(outer_, pre):
        return {m: _fit_one(m, rows, dyc, outer_, satterthwaite, ml_refit, covariates, pre) for m in models}

    if outer is not None:
        try:
            fitted = fit_all(outer, lvl_msgs)
            bad = [m for m, g in fitted.items() if not g.converged]
        except ValueError as exc_:
            bad = [f"({exc_})"]
        if not bad:
            return fitted, outer, messages
        msg = (f"Model(s) {', '.join(map(str, bad))} did not converge with three levels: every model was "
               "refitted with two levels so that their AICs compare like with like.")
        messages.append(msg)
        lvl_msgs = lvl_msgs + [msg]
        if level_test is not None:
            level_test["levels"] = 2
    return fit_all(None, lvl_msgs), None, messages


def _slope_message(slope_test: dict) -> str:
    """The sentence on the null model's test that the symptom slopes vary."""
    if slope_test["pvalue"] < 0.05:
        return (f"Symptom slopes vary between dyads: LR = {num(slope_test['statistic'])}, "
                f"{p_text(slope_test['pvalue'])} (null model, random slope vs intercept only; 50:50 mixture of "
                "χ²₁ and χ²₂).")
    return (f"The symptom slopes do not vary significantly between dyads (LR = {num(slope_test['statistic'])}, "
            f"{p_text(slope_test['pvalue'])}): the precondition for predicting slopes is not met.")


def growth_models(
    df: pd.DataFrame,
    scores: DyadScores | pd.DataFrame | None = None,
    models=(1, 2, 3),
    therapist_level=False,
    time: str = "session",
    *,
    discrepancy: str = "absolute",
    transform: str = "none",
    early_discrepancy: str = "raw",
    satterthwaite: bool = True,
    ml_refit: bool = True,
    score_method: str = "ols",
    rules: SampleRules | None = None,
    covariates=(),
    random_tests: bool = True,
) -> GrowthResult:
    """Fit the paper's symptom growth Models 1–3 for one study (METHODS §8).

    ``Y_ij = b0j + b1j·t_ij + r_ij`` with ``(b0j, b1j)`` = fixed part + (u0j, u1j),
    ``(u0j, u1j) ~ N(0, [[τ00, τ01], [τ01, τ11]])`` (unstructured), ``r ~ N(0, σ²)``,
    REML; the dyad-level predictors of each model enter on b0j and b1j (their
    fixed terms are the predictor and predictor × time), grand-mean centered.
    Definitions, sample rules and the Model 3 collinearity: module docstring.

    ``scores``: precomputed :func:`dyad_scores` (else computed with
    ``discrepancy``, ``transform`` and ``score_method``). ``time``: "session",
    "from_first" or "occasion" (:class:`GrowthResult`). ``rules``: optional
    :class:`SampleRules` applied first. ``covariates``: extra dyad-level
    columns (constant within a dyad) entered in Models 2 and 3 on the
    intercept and slope, centered like the other predictors.

    ``therapist_level``: False/"never" (two levels), True/"lrt" (one decision
    in the null model: keep a therapist random intercept in *every* model
    when its boundary-corrected likelihood-ratio test has p < .05) or "always"
    (three levels whenever the null model converges). If a later model does
    not converge with three levels, every model is refitted with two, so the
    AICs compare like with like. ``slope_test`` (always computed) tests in the
    null model that the symptom slopes vary (χ²₁:χ²₂ mixture).
    AIC: ``aic_reml`` from the REML fit, ``aic_ml`` from an ML refit
    (``ml_refit``); only ML AICs compare models with different fixed effects.
    ``random_tests=False`` skips the slope test and the variance-component SEs (faster, for simulations).

    >>> from analysis.simulate import simulate_dyads
    >>> res = growth_models(simulate_dyads(40, seed=1).data, models=(1, 2), random_tests=False)
    >>> sorted(res.models), res.models[2].fixed["term"].tolist()[:3]
    ([1, 2], ['intercept', 'time', 'initial_symptoms'])
    """
    models = tuple(int(m) for m in models)
    if not models or any(m not in (1, 2, 3) for m in models):
        raise ValueError("models must be a subset of (1, 2, 3).")
    srules = None
    if rules is not None:
        srules = apply_sample_rules(df, rules)
        df = srules.data
    _d, scores, study, dyc, rows, origin, centering, exc = _prepare(
        df, scores, time, early_discrepancy, discrepancy, transform, method=score_method, covariates=covariates
    )
    covariates = tuple(covariates or ())
    messages = list(scores.messages)
    if srules is not None and len(srules.excluded):
        messages.append("Sample rules: " + srules.summary())
    if len(exc):
        messages.append(f"{len(exc)} dyad(s) not in the models (see .excluded); all models use the same "
                        f"{len(dyc)} dyads.")
    if early_discrepancy == "fitted" and 3 in models:
        messages += _collinearity_messages(dyc)
    null2 = None
    if therapist_level not in (False, None, "never") or random_tests:
        try:
            null2 = _null_fit(rows, None)
        except ValueError:
            null2 = None
    outer, level_test, lvl_msgs = _level_decision(rows, therapist_level, null2)
    messages += lvl_msgs
    fitted, outer, fit_msgs = _fit_models(models, rows, dyc, outer, level_test, lvl_msgs,
                                          (satterthwaite, ml_refit, covariates))
    messages += fit_msgs
    try:
        slope_test = _slope_test(rows, outer, null2 if outer is None else None) if random_tests else None
    except ValueError:
        slope_test = None
    if slope_test is not None:
        messages.append(_slope_message(slope_test))
    sample = dyc.reset_index(names="patient")
    observed = (rows.groupby("t", sort=True)["symptoms"].agg(["mean", "count"]).reset_index()
                .rename(columns={"count": "n"}).assign(x=lambda o: o["t"] + origin))
    keep = [c for c in ("patient", "therapist", "t", "symptoms") if c in rows.columns]
    return GrowthResult(
        study=study, models=fitted, scores=scores, time=time, time_origin=origin, centering=centering,
        sample=sample, excluded=exc, messages=tuple(messages), level_test=level_test, slope_test=slope_test,
        sample_rules=srules, covariates=covariates, observed=observed, rows=rows[keep].reset_index(drop=True),
    )


# ----------------------------------------------------------------------------
# Table I layout


_TABLE_ORDER = (
    "intercept", "time", "initial_symptoms", "time:initial_symptoms", "convergence", "time:convergence",
    "early_patient", "early_therapist", "alliance_development", "early_discrepancy",
    "time:early_patient", "time:early_therapist", "time:alliance_development", "time:early_discrepancy",
    "convergence_x_development", "time:convergence_x_development",
)
_VC_ROWS = (("var(intercept)", "Var(intercept)"), ("cov(intercept, time)", "Cov(intercept, slope)"),
            ("var(time)", "Var(slope)"), ("residual", "Residual variance"), ("var(therapist)", "Var(therapist)"))


def models_table(result: GrowthResult, digits: int = 2) -> pd.DataFrame:
    """Models side by side, laid out like the paper's Table I; every row names its term.

    Columns: ``term`` (the row label), then per model ``"Model m"`` ("estimate
    (SE)") and ``"Model m p"``. Rows: fixed-effect terms (paper order, extra
    covariates after the paper's terms), random effects with Wald SEs and p
    (Var intercept, Cov, Var slope, Residual, Var therapist when fitted), the
    null-model likelihood-ratio tests (slopes vary; therapist level), AIC
    (REML), AIC (ML), N dyads, N observations. Empty where a term is not in a
    model. Numbers: :func:`analysis.formatting.num` (``digits`` decimals, or
    significant digits for small values) and APA p-values.
    """
    ms = sorted(result.models)
    present = set().union(*(set(result.models[m].fixed["term"]) for m in ms))
    rows = [t for t in _TABLE_ORDER if t in present]
    rows += [t for m in ms for t in result.models[m].fixed["term"] if t not in rows and t not in _TABLE_ORDER]
    rows = list(dict.fromkeys(rows))
    vc_rows = [(k, lab) for k, lab in _VC_ROWS if k != "var(therapist)"
               or any(result.models[m].levels == 3 for m in ms)]
    labels = [_label(t) for t in rows] + [lab for _, lab in vc_rows]
    tests = []
    if result.slope_test is not None:
        tests.append(("Slopes vary: LR (χ²₁:χ²₂)", result.slope_test))
    if result.level_test is not None:
        tests.append(("Therapist level: LR (χ²₀:χ²₁)", result.level_test))
    tail = ["AIC (REML)", "AIC (ML)", "N dyads", "N observations"]
    out = {"term": labels + [lab for lab, _ in tests] + tail}
    first = ms[0]
    for m in ms:
        gm = result.models[m]
        fx = gm.fixed.set_index("term")
        est, pv = [], []
        for t in rows:
            if t in fx.index:
                est.append(f"{num(fx.at[t, 'estimate'], digits, na='', sig=digits)} ({num(fx.at[t, 'se'], digits, na='', sig=digits)})")
                pv.append(pvalue(fx.at[t, "pvalue"], na=""))
            else:
                est.append("")
                pv.append("")
        vc = gm.variance.set_index("component") if gm.variance is not None else pd.DataFrame()
        for k, _ in vc_rows:
            if k in vc.index:
                e, s, p = vc.at[k, "estimate"], vc.at[k, "se"], vc.at[k, "pvalue"]
                d3 = max(digits, 3)
                est.append(f"{num(e, d3, na='', sig=d3)} ({num(s, d3, na='', sig=d3)})" if np.isfinite(s)
                           else num(e, d3, na="", sig=d3))
                pv.append(pvalue(p, na="") if k != "residual" else "")
            else:
                est.append("")
                pv.append("")
        for _, tst in tests:
            est.append(num(tst["statistic"]) if m == first else "")
            pv.append(pvalue(tst["pvalue"], na="") if m == first else "")
        est += [num(gm.aic_reml, 1), num(gm.aic_ml, 1, na=""), str(gm.n_dyads), str(gm.n_obs)]
        pv += [""] * len(tail)
        out[f"Model {m}"] = est
        out[f"Model {m} p"] = pv
    return pd.DataFrame(out)
