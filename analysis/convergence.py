"""Patient–therapist alliance convergence and symptom growth models (METHODS §8).

Implements the Convergence paper (seed ``001_…``): per-dyad growth lines of the
patient- (P) and therapist-rated (T) alliance, a convergence score (the rate at
which the fitted P–T discrepancy shrinks), and multilevel growth models of the
symptom scores with random intercepts and slopes (Models 1–3 of the paper's
Tables I–II), plus the one-step stacked dyadic alternative and per-study
pooling of the convergence effect.

Definitions (dyad j, using only sessions where both ratings exist, t = session):

* ``P̂_t = a_P + b_P·t`` and ``T̂_t = a_T + b_T·t``: per-dyad OLS lines
  (``slope_patient`` = b_P, ``slope_therapist`` = b_T; ≥ 2 joint sessions);
* ``early_patient``/``early_therapist``: the ratings at the first joint
  session; ``early_discrepancy`` = early_P − early_T;
  ``early_discrepancy_fitted`` = D̂ at the first joint session;
* ``D̂_t = P̂_t − T̂_t``. ``discrepancy="absolute"`` (default):
  ``convergence = −(OLS slope of |D̂_t| on t over the joint sessions)`` —
  positive = the ratings approach each other. (|D̂| is linear unless the lines
  cross inside the observed sessions; then it is V-shaped and the OLS slope
  summarises it.) ``discrepancy="signed"``: ``convergence = slope of D̂_t =
  b_P − b_T`` (positive = the patient's rating rises relative to the
  therapist's; a convergence only when the early discrepancy is negative);
* ``transform="log_shift"``: ``log(x − min(x) + 1)`` over the study's dyads
  (the paper log-transformed its skewed score); ``"none"`` keeps x;
* ``alliance_development`` = OLS slope of (P + T)/2 on t = (b_P + b_T)/2;
* ``initial_symptoms`` = the first observed symptom score of the dyad.

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
the paper's "Converg. × Time"). Solver: :mod:`analysis.growth`.

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

from analysis.data import require_canonical
from analysis.formatting import count, num, p_text, percent, pvalue
from analysis.lmm import LMMFit, boundary_lrt, drop_collinear, fit_lmm, variance_components

__all__ = [
    "TERM_LABELS",
    "DyadScores",
    "DyadicResult",
    "GrowthModel",
    "GrowthResult",
    "PowerResult",
    "SampleResult",
    "SampleRules",
    "ShapeComparison",
    "apply_sample_rules",
    "convergence_power",
    "dyad_scores",
    "dyadic_model",
    "growth_models",
    "models_table",
    "pooled_convergence",
    "trajectories",
    "trajectory_shape",
    "transform_score",
]

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
# input checks


def _check(df: pd.DataFrame, cols) -> pd.DataFrame:
    """Canonical dyadic data (analysis.data.require_canonical): study, patient, session and ``cols``, the
    ratings and symptoms numeric, sorted by study, patient and session."""
    return require_canonical(df, cols, optional=("therapist_alliance", "symptoms"),
                             why="Alliance convergence needs patient-rated 'alliance' and therapist-rated "
                                 "'therapist_alliance' per session.")


# ----------------------------------------------------------------------------
# descriptives


def trajectories(df: pd.DataFrame) -> pd.DataFrame:
    """Per study and session: n, mean and SD (ddof = 1) of P, T and D = P − T.

    Columns: study, session, n_patient, patient_mean, patient_sd, n_therapist,
    therapist_mean, therapist_sd, n_joint, discrepancy_mean, discrepancy_sd,
    discrepancy_se = SD/√n (the discrepancy uses rows where both ratings exist). These are the
    paper's Figures 1–2 descriptives (METHODS §8).
    """
    d = _check(df, ("alliance", "therapist_alliance"))
    d["discrepancy"] = d["alliance"] - d["therapist_alliance"]
    g = d.groupby(["study", "session"], sort=True)
    out = pd.DataFrame(
        {
            "n_patient": g["alliance"].count(),
            "patient_mean": g["alliance"].mean(),
            "patient_sd": g["alliance"].std(ddof=1),
            "n_therapist": g["therapist_alliance"].count(),
            "therapist_mean": g["therapist_alliance"].mean(),
            "therapist_sd": g["therapist_alliance"].std(ddof=1),
            "n_joint": g["discrepancy"].count(),
            "discrepancy_mean": g["discrepancy"].mean(),
            "discrepancy_sd": g["discrepancy"].std(ddof=1),
        }
    ).reset_index()
    out["discrepancy_se"] = out["discrepancy_sd"] / np.sqrt(out["n_joint"].clip(lower=1))
    out["session"] = out["session"].astype("int64")
    for c in ("n_patient", "n_therapist", "n_joint"):
        out[c] = out[c].astype("int64")
    return out


# ----------------------------------------------------------------------------
# dyad scores


@dataclass(frozen=True, eq=False)
class DyadScores:
    """Per-dyad alliance scores (module docstring for definitions).

    ``table``: one row per scored dyad (study, patient, n_joint_sessions,
    first_joint_session, last_joint_session, early_patient, early_therapist,
    early_discrepancy, early_discrepancy_fitted, slope_patient,
    slope_therapist, convergence_raw, convergence, convergence_se,
    alliance_development, initial_symptoms, initial_symptoms_session[,
    therapist]). ``convergence_raw`` is the score before ``transform``.
    ``convergence_se`` is the sampling SE of the raw score from rating noise
    around the dyad's discrepancy line (D̂ is the OLS line of D_t = P_t − T_t,
    residual variance s²_D on n − 2 df; ≥ 3 joint sessions): "signed":
    ``s_D / √Σ(t − t̄)²``; "absolute": the delta method through the line's
    intercept and slope (approximate when the lines cross).
    ``excluded``: study, patient, reason. ``reliability[study]`` =
    ``1 − mean(convergence_se²) / Var(convergence_raw)``: the share of the
    score's between-dyad variance that is not rating noise (a low value
    attenuates every association with convergence).
    """

    table: pd.DataFrame
    excluded: pd.DataFrame
    discrepancy: str = "absolute"
    transform: str = "none"
    messages: tuple = ()
    reliability: dict = field(default_factory=dict)
    method: str = "ols"
    transform_info: dict = field(default_factory=dict)
    dyadic: dict = field(default_factory=dict, repr=False)

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def summary(self) -> str:
        rel = ", ".join(f"{k}: {num(v)}" for k, v in self.reliability.items())
        return (f"{count(len(self.table))} dyads scored ({self.method}, {self.discrepancy}, transform "
                f"{self.transform}); {count(len(self.excluded))} excluded; reliability {rel}.")


def _group_ols(g, t, x, m):
    """Per-group OLS intercept and slope of x on t (groups 0..m-1)."""
    n = np.bincount(g, minlength=m).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tb = np.bincount(g, t, minlength=m) / n
        xb = np.bincount(g, x, minlength=m) / n
        tc = t - tb[g]
        stt = np.bincount(g, tc * tc, minlength=m)
        stx = np.bincount(g, tc * (x - xb[g]), minlength=m)
        b = stx / stt
    return xb - b * tb, b


def _score_se(g, t, Draw, sg, k, discrepancy):
    """Sampling SE of the per-dyad OLS convergence score (DyadScores docstring).

    OLS of the raw D_t = P_t − T_t on t (its slope is b_P − b_T); Var = s²_D / Σ(t − t̄)²,
    s²_D = RSS / (n − 2), needs n ≥ 3; "absolute": delta method through the line, ``sg`` the sign
    of the fitted discrepancy per row.
    """
    aD, bD = _group_ols(g, t, Draw, k)
    rss = np.bincount(g, (Draw - aD[g] - bD[g] * t) ** 2, minlength=k)
    nk = np.bincount(g, minlength=k).astype(float)
    tb = np.bincount(g, t, minlength=k) / nk
    stt = np.bincount(g, (t - tb[g]) ** 2, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        s2D = rss / np.maximum(nk - 2, 1)
        if discrepancy == "signed":
            var_c = s2D / stt
        else:
            # delta method: the score is −Σ(t − t̄)|aD + bD·t| / Σ(t − t̄)², a function of the
            # dyad's discrepancy line (aD, bD) with Cov = s²_D (X'X)⁻¹
            tc = t - tb[g]
            ga = -np.bincount(g, tc * sg, minlength=k) / stt
            gb = -np.bincount(g, tc * t * sg, minlength=k) / stt
            st_ = np.bincount(g, t, minlength=k)
            stt2 = np.bincount(g, t * t, minlength=k)
            det = nk * stt2 - st_**2
            vaa, vab, vbb = stt2 / det, -st_ / det, nk / det
            var_c = s2D * (ga * ga * vaa + 2 * ga * gb * vab + gb * gb * vbb)
        conv_se = np.where(nk >= 3, np.sqrt(var_c), np.nan)
    return conv_se


def _reliability(table: pd.DataFrame, conv_ols: np.ndarray) -> tuple[dict, list]:
    """Per study: 1 − mean(SE²)/Var(OLS score) (floored at 0; NaN with < 3 dyads with an SE)."""
    messages = []
    reliability = {}
    for stu, sub in table.groupby("study", sort=False):
        se = sub["convergence_se"].to_numpy()
        ok_se = np.isfinite(se)
        if ok_se.sum() >= 3 and len(sub) >= 3:
            v = float(np.var(conv_ols[sub.index.to_numpy()], ddof=1))
            rel = 1.0 - float(np.mean(se[ok_se] ** 2)) / v if v > 0 else np.nan
            reliability[str(stu)] = max(rel, 0.0) if np.isfinite(rel) else np.nan
            messages.append(
                f"{stu}: estimated reliability of the convergence score {num(reliability[str(stu)])} "
                "(share of its between-dyad variance not explained by rating noise around the dyads' "
                "lines); associations with convergence are attenuated by roughly this factor."
            )
        else:
            reliability[str(stu)] = np.nan
    return reliability, messages


def _therapist_of(d: pd.DataFrame, table: pd.DataFrame):
    """The therapist id of each scored dyad (a dyad must have one therapist)."""
    gth = d.assign(therapist=d["therapist"].astype("string")).groupby(["study", "patient"], sort=False)["therapist"]
    nth = gth.nunique()
    if (nth > 1).any():
        bad = nth[nth > 1].index[:3].tolist()
        raise ValueError(f"Some dyads have more than one therapist id (e.g. {bad}); a dyad has one therapist.")
    thmap = gth.first()
    return pd.array(
        thmap.reindex(pd.MultiIndex.from_arrays([table["study"], table["patient"]])).to_numpy(), dtype="string"
    )


def dyad_scores(df: pd.DataFrame, discrepancy: str = "absolute", transform: str = "none",
                method: str = "ols") -> DyadScores:
    """One row of alliance scores per dyad (METHODS §8; formulas in the module docstring).

    Uses only the sessions where both ``alliance`` (P) and
    ``therapist_alliance`` (T) are observed; dyads with fewer than 2 such
    sessions are listed in ``excluded`` with the reason. Transforms are
    applied within each study across its scored dyads.

    ``method="ols"``: P̂ and T̂ are per-dyad OLS lines. ``method="multilevel"``:
    they are the empirical-Bayes (BLUP) lines of one stacked dyadic growth
    model per study (:func:`dyadic_model`, random structure "full", time =
    session): ``P̂_jt = (γ0 + u0j + ½(γ1 + u1j)) + (γ2 + u2j + ½(γ3 + u3j))·t``
    and ``T̂_jt`` with −½, so early_P/early_T are the growth-curve levels at the
    first joint session (the paper's Table I note). Everything after the lines
    (D̂, convergence, development) is computed the same way for both methods.
    """
    if discrepancy not in ("absolute", "signed"):
        raise ValueError("discrepancy must be 'absolute' or 'signed'.")
    if transform not in TRANSFORMS:
        raise ValueError("transform must be one of " + ", ".join(TRANSFORMS) + " (e.g. 'log_shift').")
    if method not in ("ols", "multilevel"):
        raise ValueError("method must be 'ols' (per-dyad lines) or 'multilevel' (empirical-Bayes lines).")
    d = _check(df, ("alliance", "therapist_alliance"))
    key = pd.MultiIndex.from_frame(d[["study", "patient"]])
    gid, uniq = pd.factorize(key)
    m = len(uniq)
    joint = d["alliance"].notna().to_numpy() & d["therapist_alliance"].notna().to_numpy()
    nj = np.bincount(gid[joint], minlength=m)
    ok = nj >= 2
    excluded = pd.DataFrame(
        {
            "study": pd.array([uniq[i][0] for i in np.flatnonzero(~ok)], dtype="string"),
            "patient": pd.array([uniq[i][1] for i in np.flatnonzero(~ok)], dtype="string"),
            "reason": [
                f"fewer than 2 sessions with both patient and therapist ratings ({nj[i]})"
                for i in np.flatnonzero(~ok)
            ],
        }
    )
    # joint rows of scored dyads, re-indexed 0..k-1
    keep_d = np.flatnonzero(ok)
    remap = np.full(m, -1)
    remap[keep_d] = np.arange(len(keep_d))
    rows = joint & ok[gid]
    g = remap[gid[rows]]
    k = len(keep_d)
    t = d["session"].to_numpy()[rows]
    P = d["alliance"].to_numpy()[rows]
    T = d["therapist_alliance"].to_numpy()[rows]
    aP, bP = _group_ols(g, t, P, k)
    aT, bT = _group_ols(g, t, T, k)
    ols_signed = bP - bT
    aPo, aTo = aP, aT
    messages = []
    dyadic = {}
    if method == "multilevel":
        aP, bP, aT, bT, ml_msgs, dyadic = _eb_lines(d, [uniq[i] for i in keep_d])
        messages += ml_msgs
    dev = (bP + bT) / 2.0
    Dhat = (aP - aT)[g] + (bP - bT)[g] * t
    if discrepancy == "absolute":
        _, sabs = _group_ols(g, t, np.abs(Dhat), k)
        conv_raw = -sabs
        if method == "multilevel":
            Dols = (aPo - aTo)[g] + ols_signed[g] * t
            conv_ols = -_group_ols(g, t, np.abs(Dols), k)[1]
        else:
            conv_ols = conv_raw
    else:
        conv_raw = bP - bT
        conv_ols = ols_signed
    conv_se = _score_se(g, t, P - T, np.sign(Dols if method == "multilevel" and discrepancy == "absolute"
                                            else Dhat), k, discrepancy)
    # first joint session per dyad (rows are sorted by session within dyad)
    first = np.full(k, -1)
    idx_rows = np.flatnonzero(rows)
    # the first occurrence of each g in order
    _, first_pos = np.unique(g, return_index=True)
    first[:] = idx_rows[first_pos]
    _, last_pos = np.unique(g[::-1], return_index=True)
    last = idx_rows[::-1][last_pos]
    sess = d["session"].to_numpy()
    early_P = d["alliance"].to_numpy()[first]
    early_T = d["therapist_alliance"].to_numpy()[first]
    t_first = sess[first]
    if method == "multilevel":  # growth-curve levels at the first joint session
        early_P = aP + bP * t_first
        early_T = aT + bT * t_first
    early_D_fit = (aP - aT) + (bP - bT) * t_first

    # initial symptoms: the first observed symptom value of the dyad (any session)
    init = np.full(k, np.nan)
    init_sess = np.full(k, np.nan)
    if "symptoms" in d.columns:
        srows = d["symptoms"].notna().to_numpy() & ok[gid]
        gs = remap[gid[srows]]
        if len(gs):
            _, fp = np.unique(gs, return_index=True)
            ridx = np.flatnonzero(srows)[fp]
            init[np.unique(gs)] = d["symptoms"].to_numpy()[ridx]
            init_sess[np.unique(gs)] = sess[ridx]

    study = pd.array([uniq[i][0] for i in keep_d], dtype="string")
    table = pd.DataFrame(
        {
            "study": study,
            "patient": pd.array([uniq[i][1] for i in keep_d], dtype="string"),
            "n_joint_sessions": nj[keep_d].astype("int64"),
            "first_joint_session": t_first.astype("int64"),
            "last_joint_session": sess[last].astype("int64"),
            "early_patient": early_P,
            "early_therapist": early_T,
            "early_discrepancy": early_P - early_T,
            "early_discrepancy_fitted": early_D_fit,
            "intercept_patient": aP,
            "intercept_therapist": aT,
            "slope_patient": bP,
            "slope_therapist": bT,
            "convergence_raw": conv_raw,
            "convergence": conv_raw.copy(),
            "convergence_se": conv_se,
            "alliance_development": dev,
            "initial_symptoms": init,
            "initial_symptoms_session": init_sess,
        }
    )
    if "therapist" in d.columns:
        table["therapist"] = _therapist_of(d, table)
    reliability, rel_msgs = _reliability(table, conv_ols)
    messages += rel_msgs
    if method == "multilevel":
        messages.append("Convergence from the multilevel (empirical-Bayes) growth lines: the reliability above "
                        "is that of the per-dyad OLS discrepancy slopes; the multilevel scores shrink them toward "
                        "the mean by about that factor.")
    info = {}
    if len(table):
        conv_t = table["convergence_raw"].to_numpy(float).copy()
        for stu, idx in table.groupby("study", sort=False).indices.items():
            conv_t[idx], info[str(stu)] = transform_score(table["convergence_raw"].to_numpy(float)[idx], transform)
        table["convergence"] = conv_t
    if len(excluded):
        messages.append(f"{len(excluded)} dyad(s) excluded: fewer than 2 sessions with both ratings.")
    return DyadScores(table=table, excluded=excluded, discrepancy=discrepancy, transform=transform,
                      messages=tuple(messages), reliability=reliability, method=method, transform_info=info,
                      dyadic=dyadic)


TRANSFORMS = ("none", "log_shift", "yeo_johnson")


def transform_score(x, transform: str = "none") -> tuple[np.ndarray, dict]:
    """Transform a score across dyads; returns the values and {lambda, skew_before, skew_after}.

    * ``"none"``: x;
    * ``"log_shift"``: ``log(x − min(x) + 1)`` (kept for old scripts: on a score of 0.01–0.1 it is
      nearly the identity, since log(1 + u) ≈ u for small u);
    * ``"yeo_johnson"``: scale-aware Yeo–Johnson: ``z = (x − x̄)/SD(x)`` (ddof = 1), then
      ``ψ_λ(z)`` = ((z + 1)^λ − 1)/λ for z ≥ 0 and −((1 − z)^(2−λ) − 1)/(2 − λ) for z < 0, with λ
      the maximum-likelihood value (``scipy.stats.yeojohnson``); standardizing first makes the
      transform act on the score's spread, whatever its units.

    Skewness: the (biased, Fisher–Pearson) sample skewness ``scipy.stats.skew`` before and after.
    """
    x = np.asarray(x, float)
    ok = np.isfinite(x)
    out = x.copy()
    lam = np.nan
    if transform == "log_shift" and ok.any():
        out[ok] = np.log(x[ok] - x[ok].min() + 1.0)
    elif transform == "yeo_johnson" and ok.sum() >= 3 and np.std(x[ok]) > 0:
        z = (x[ok] - x[ok].mean()) / x[ok].std(ddof=1)
        out[ok], lam = stats.yeojohnson(z)
        lam = float(lam)
    elif transform not in TRANSFORMS:
        raise ValueError("transform must be one of " + ", ".join(TRANSFORMS) + ".")

    def sk(v):
        v = v[np.isfinite(v)]
        return float(stats.skew(v)) if len(v) >= 3 and np.std(v) > 0 else np.nan

    return out, {"lambda": lam, "skew_before": sk(x), "skew_after": sk(out)}


def _eb_lines(d: pd.DataFrame, keys) -> tuple:
    """Empirical-Bayes P and T lines (intercept, slope at t = session) for the dyads ``keys``.

    One stacked dyadic model (:func:`dyadic_model`, "full" structure with its
    fall-back) per study; returns (a_P, b_P, a_T, b_T, messages, {study: DyadicResult}).
    """
    k = len(keys)
    aP, bP, aT, bT = (np.full(k, np.nan) for _ in range(4))
    msgs = []
    fits = {}
    pos = {key: i for i, key in enumerate(keys)}
    for stu in d["study"].unique():
        sub = d[d["study"] == stu]
        dy = dyadic_model(sub, time="session", random="full")
        fits[str(stu)] = dy
        msgs += [f"{stu}: multilevel score model: {m}" for m in dy.messages]
        fx = dy.fixed.set_index("term")["estimate"]
        re = pd.DataFrame(dy.fit.ranef, columns=list(dy.fit.re_names), index=dy.fit.group_labels)
        for nm in ("intercept", "role", "time", "role:time"):
            if nm not in re.columns:
                re[nm] = 0.0
        lev = fx["intercept"] + re["intercept"]
        dis = fx["role"] + re["role"]
        gro = fx["time"] + re["time"]
        dsl = fx["role:time"] + re["role:time"]
        for pid in re.index:
            i = pos.get((stu, pid))
            if i is None:
                continue
            aP[i], aT[i] = lev[pid] + dis[pid] / 2, lev[pid] - dis[pid] / 2
            bP[i], bT[i] = gro[pid] + dsl[pid] / 2, gro[pid] - dsl[pid] / 2
    return aP, bP, aT, bT, msgs, fits


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


@dataclass(frozen=True)
class SampleRules:
    """Which dyads and occasions enter the convergence analysis (METHODS §8, sample rules).

    * ``score_sessions``: sessions whose P and T ratings enter the dyad scores (None = all);
    * ``symptom_sessions``: sessions of the symptom series (None = all);
      ``symptom_final`` adds each dyad's last observed symptom score after them (termination, T2);
    * ``min_sessions`` / ``max_sessions``: keep dyads whose treatment length is ≥ / ≤ the value;
      the treatment length is ``length_column`` (a dyad-level column, e.g. number of sessions)
      or else the dyad's highest session number in the file;
    * ``complete_sessions``: keep dyads with P, T and symptoms all observed at each of these
      sessions; ``complete_final``: and with a symptom score after the last of them.

    Rules are applied in this order: length (min, max), complete occasions, windows.
    """

    score_sessions: tuple | None = None
    symptom_sessions: tuple | None = None
    symptom_final: bool = False
    min_sessions: int | None = None
    max_sessions: int | None = None
    complete_sessions: tuple | None = None
    complete_final: bool = False
    length_column: str | None = None


@dataclass(frozen=True, eq=False)
class SampleResult:
    """Data after :class:`SampleRules`: ``data`` (ratings outside the score window and symptoms
    outside the symptom window set to missing, empty rows dropped), ``counts`` (rule, removed,
    remaining: dyads removed by each rule, in order) and ``excluded`` (study, patient, reason)."""

    data: pd.DataFrame
    counts: pd.DataFrame
    excluded: pd.DataFrame
    rules: SampleRules

    def to_frame(self) -> pd.DataFrame:
        return self.counts.copy()

    def summary(self) -> str:
        parts = [f"{r.rule}: {count(r.removed)} removed" for r in self.counts.itertuples() if r.rule != "all dyads"]
        n = int(self.counts["remaining"].iloc[-1]) if len(self.counts) else 0
        return f"{count(n)} dyads kept" + (" (" + "; ".join(parts) + ")" if parts else "") + "."


def _sessions(v, name):
    if v is None:
        return None
    try:
        out = tuple(sorted({int(x) for x in v}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be whole session numbers.") from exc
    if not out:
        raise ValueError(f"{name} is empty; leave it unset to use every session.")
    return out


def apply_sample_rules(df: pd.DataFrame, rules: SampleRules | None = None) -> SampleResult:
    """Apply :class:`SampleRules` (inclusion filters and time windows) to long dyadic data.

    Returns a :class:`SampleResult`; its ``data`` feed :func:`dyad_scores` and
    :func:`growth_models` unchanged. Symptom-only occasions (e.g. session 1 or the
    termination assessment without alliance ratings) stay in the symptom series.
    """
    rules = rules or SampleRules()
    d = _check(df, ("alliance", "therapist_alliance"))
    has_sym = "symptoms" in d.columns
    score_s = _sessions(rules.score_sessions, "score_sessions")
    sym_s = _sessions(rules.symptom_sessions, "symptom_sessions")
    comp_s = _sessions(rules.complete_sessions, "complete_sessions")
    if (sym_s or comp_s or rules.symptom_final or rules.complete_final) and not has_sym:
        raise ValueError("The symptom rules need a 'symptoms' column.")
    key = d["study"].astype(str) + "\x1f" + d["patient"].astype(str)
    dyads = pd.unique(key)
    if rules.length_column:
        c = rules.length_column
        if c not in d.columns:
            raise ValueError(f"The treatment-length column '{c}' is not in the data.")
        vals = pd.to_numeric(d[c], errors="coerce")
        length = vals.groupby(key).max()
    else:
        length = d["session"].groupby(key).max()
    keep = pd.Series(True, index=dyads)
    counts = [("all dyads", 0, len(dyads))]
    reasons = []

    def apply(bad: pd.Series, rule: str, why):
        bad = bad.reindex(keep.index).fillna(False).astype(bool) & keep
        for k in keep.index[bad]:
            reasons.append((k, why(k)))
        keep[bad] = False
        counts.append((rule, int(bad.sum()), int(keep.sum())))

    if rules.min_sessions is not None:
        m = int(rules.min_sessions)
        apply(~(length >= m), f"at least {m} sessions", lambda k: f"treatment length {num(length.get(k), 0)} < {m}")
    if rules.max_sessions is not None:
        m = int(rules.max_sessions)
        apply(~(length <= m), f"at most {m} sessions", lambda k: f"treatment length {num(length.get(k), 0)} > {m}")
    if comp_s:
        full = d["alliance"].notna() & d["therapist_alliance"].notna() & d["symptoms"].notna()
        ok = pd.Series(True, index=keep.index)
        for s_ in comp_s:
            ok &= (full & (d["session"] == s_)).groupby(key).any().reindex(keep.index).fillna(False)
        apply(~ok, "complete at sessions " + ", ".join(map(str, comp_s)),
              lambda k: "incomplete P, T or symptoms at sessions " + ", ".join(map(str, comp_s)))
    if rules.complete_final:
        last = max(comp_s or score_s or sym_s or (0,))
        fin = (d["symptoms"].notna() & (d["session"] > last)).groupby(key).any().reindex(keep.index).fillna(False)
        apply(~fin, f"symptom score after session {last}", lambda k: f"no symptom score after session {last}")
    out = d[key.map(keep).to_numpy()].copy()
    okey = key[key.map(keep).to_numpy()]
    if score_s is not None:
        outside = ~out["session"].isin(score_s)
        out.loc[outside, ["alliance", "therapist_alliance"]] = np.nan
    if has_sym and (sym_s is not None or rules.symptom_final):
        in_win = out["session"].isin(sym_s) if sym_s is not None else pd.Series(True, index=out.index)
        if rules.symptom_final:
            lim = max(sym_s) if sym_s else -np.inf
            cand = out["symptoms"].notna() & (out["session"] > lim)
            last_row = out[cand].groupby(okey[cand])["session"].transform("max")
            fin = pd.Series(False, index=out.index)
            fin.loc[last_row.index] = out.loc[last_row.index, "session"] == last_row
            in_win = in_win | fin
        out.loc[~in_win, "symptoms"] = np.nan
    cols = ["alliance", "therapist_alliance"] + (["symptoms"] if has_sym else [])
    out = out[out[cols].notna().any(axis=1)].reset_index(drop=True)
    exc = pd.DataFrame({
        "study": pd.array([k.split("\x1f")[0] for k, _ in reasons], dtype="string"),
        "patient": pd.array([k.split("\x1f")[1] for k, _ in reasons], dtype="string"),
        "reason": [r for _, r in reasons],
    })
    return SampleResult(data=out, counts=pd.DataFrame(counts, columns=["rule", "removed", "remaining"]),
                        excluded=exc, rules=rules)


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
        model=model,
        fixed=fx,
        random=random,
        aic_reml=fit.aic,
        aic_ml=fit_ml.aic if fit_ml is not None else np.nan,
        deviance_reml=fit.deviance,
        deviance_ml=fit_ml.deviance if fit_ml is not None else np.nan,
        converged=bool(fit.converged and (fit_ml is None or fit_ml.converged)),
        warnings=tuple(warnings),
        n_dyads=fit.n_groups,
        n_obs=fit.n_obs,
        levels=3 if outer is not None else 2,
        dropped_terms=tuple(dropped),
        fit=fit,
        fit_ml=fit_ml,
        variance=variance_components(fit),
    )


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
        names = [c for c in dyc.columns]
        v = _vif(dyc[names].to_numpy(), names)
        hi = {k: val for k, val in v.items() if val > 10}
        if hi:
            messages.append("Model 3 predictors are nearly collinear (variance inflation factor > 10: "
                            + ", ".join(f"{k} {num(val, 3)}" for k, val in hi.items()) + ").")
    null2 = None
    if therapist_level not in (False, None, "never") or random_tests:
        try:
            null2 = _null_fit(rows, None)
        except ValueError:
            null2 = None
    outer, level_test, lvl_msgs = _level_decision(rows, therapist_level, null2)
    messages += lvl_msgs

    def fit_all(outer_, pre):
        return {m: _fit_one(m, rows, dyc, outer_, satterthwaite, ml_refit, covariates, pre) for m in models}

    fitted = None
    if outer is not None:
        try:
            fitted = fit_all(outer, lvl_msgs)
            bad = [m for m, g in fitted.items() if not g.converged]
        except ValueError as exc_:
            bad = [f"({exc_})"]
        if bad:
            msg = (f"Model(s) {', '.join(map(str, bad))} did not converge with three levels: every model was "
                   "refitted with two levels so that their AICs compare like with like.")
            messages.append(msg)
            lvl_msgs = lvl_msgs + [msg]
            outer, fitted = None, None
            if level_test is not None:
                level_test["levels"] = 2
    if fitted is None:
        fitted = fit_all(None, lvl_msgs)
    try:
        slope_test = _slope_test(rows, outer, null2 if outer is None else None) if random_tests else None
    except ValueError:
        slope_test = None
    if slope_test is not None:
        messages.append(
            f"Symptom slopes vary between dyads: LR = {num(slope_test['statistic'])}, "
            f"{p_text(slope_test['pvalue'])} (null model, random slope vs intercept only; 50:50 mixture of "
            "χ²₁ and χ²₂)." if slope_test["pvalue"] < 0.05 else
            f"The symptom slopes do not vary significantly between dyads (LR = {num(slope_test['statistic'])}, "
            f"{p_text(slope_test['pvalue'])}): the precondition for predicting slopes is not met.")
    sample = dyc.reset_index(names="patient")
    return GrowthResult(
        study=study,
        models=fitted,
        scores=scores,
        time=time,
        time_origin=origin,
        centering=centering,
        sample=sample,
        excluded=exc,
        messages=tuple(messages),
        level_test=level_test,
        slope_test=slope_test,
        sample_rules=srules,
        covariates=covariates,
        observed=rows.groupby("t", sort=True)["symptoms"].agg(["mean", "count"]).reset_index()
        .rename(columns={"count": "n"}).assign(x=lambda o: o["t"] + origin),
        rows=rows[[c for c in ("patient", "therapist", "t", "symptoms") if c in rows.columns]].reset_index(drop=True),
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


# ----------------------------------------------------------------------------
# one-step dyadic model


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


# ----------------------------------------------------------------------------
# pooling across studies


def pooled_convergence(
    df: pd.DataFrame,
    model: int = 2,
    *,
    term: str = "time:convergence",
    standardize: bool = True,
    discrepancy: str = "absolute",
    transform: str = "none",
    time: str = "session",
    early_discrepancy: str = "raw",
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
):
    """Per-study convergence effect of Model ``model``, pooled by random effects (METHODS §6, §8).

    For each study: fit the growth model and take ``term`` (default the
    paper's Converg. × Time, ``time:convergence``). With ``standardize``
    (default) the coefficient and SE are multiplied by SD(convergence) /
    SD(symptoms) (ddof = 1; the convergence SD over the model's dyads, the
    symptom SD over its observed values), i.e. symptom SDs per session per SD
    of convergence — exactly what refitting with both variables z-scored gives
    (METHODS §2), and comparable across instruments. The effects are pooled
    with :func:`analysis.meta.random_effects` (``method``, ``test``,
    ``level``). Studies whose model fails are listed with the reason and
    skipped.

    Returns ``(table, meta)``: one row per study (study, estimate, se, df,
    pvalue, n_dyads, n_obs, converged, status, message) and the MetaResult
    (``None`` when no study could be fitted).
    """
    d = _check(df, ("alliance", "therapist_alliance", "symptoms"))
    rows = []
    for study in d["study"].unique():
        sub = d[d["study"] == study]
        rec = {"study": str(study), "estimate": np.nan, "se": np.nan, "df": np.nan, "pvalue": np.nan,
               "n_dyads": 0, "n_obs": 0, "converged": False, "status": "failed", "message": ""}
        try:
            res = growth_models(sub, models=(model,), time=time, discrepancy=discrepancy, transform=transform,
                                early_discrepancy=early_discrepancy, ml_refit=False)
            gm = res.models[model]
            fx = gm.fixed.set_index("term")
            if term not in fx.index:
                raise ValueError(f"term '{term}' is not in Model {model} (dropped: {gm.dropped_terms})")
            est, se = float(fx.at[term, "estimate"]), float(fx.at[term, "se"])
            if standardize:
                pred = term.split(":")[-1]
                sd_x = 1.0 if pred in ("intercept", "time") else float(
                    (res.sample[pred]).std(ddof=1))
                in_model = sub["patient"].isin(res.sample["patient"])
                sd_y = float(sub.loc[in_model, "symptoms"].dropna().std(ddof=1))
                est, se = est * sd_x / sd_y, se * sd_x / sd_y
            rec.update(estimate=est, se=se, df=float(fx.at[term, "df"]), pvalue=float(fx.at[term, "pvalue"]),
                       n_dyads=gm.n_dyads, n_obs=gm.n_obs, converged=gm.converged,
                       status="ok" if gm.converged else "not converged",
                       message=" ".join(gm.warnings))
        except ValueError as exc:
            rec["message"] = str(exc)
        rows.append(rec)
    table = pd.DataFrame(rows)
    use = table[(table["status"] == "ok") & np.isfinite(table["se"]) & (table["se"] > 0)]
    if len(use) == 0:
        return table, None
    from analysis.meta import random_effects

    meta = random_effects(
        use["estimate"].to_numpy(float),
        use["se"].to_numpy(float) ** 2,
        method=method,
        test=test,
        level=level,
        labels=list(use["study"]),
        n_patients=use["n_dyads"].to_numpy(int),
    )
    return table, meta


# ----------------------------------------------------------------------------
# preparatory analysis: linear vs log-linear symptom trajectory


@dataclass(frozen=True, eq=False)
class ShapeComparison:
    """Linear vs log-linear symptom trajectory of the null model, compared by ML AIC (METHODS §8).

    ``table``: shape ("linear", "log-linear"), time variable, AIC (ML), deviance (ML),
    converged. ``preferred`` is the shape with the lower AIC; ``delta_aic`` =
    AIC(log-linear) − AIC(linear) (positive favours linear).
    """

    table: pd.DataFrame
    preferred: str
    delta_aic: float

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def summary(self) -> str:
        return (f"{self.preferred.capitalize()} trajectory preferred (ΔAIC log-linear − linear = "
                f"{num(self.delta_aic, 1)}, ML).")


def trajectory_shape(df: pd.DataFrame, time: str = "session", rules: SampleRules | None = None) -> ShapeComparison:
    """Null model ``Y = b0j + b1j·f(t)`` with f(t) = t (linear) or log(t − t_min + 1) (log-linear).

    Both are fitted by ML with a random intercept and slope (unstructured) on the
    same rows (the growth-model sample of :func:`growth_models`, time coding
    ``time``) and compared by AIC = −2 logL + 2·6, as the paper's preparatory
    analysis (the lower AIC is preferred).
    """
    if rules is not None:
        df = apply_sample_rules(df, rules).data
    _d, _s, _study, _dyc, rows, _o, _c, _e = _prepare(df, None, time, "raw", "absolute", "none")
    y, Z, groups = _yzg(rows)
    t = Z[:, 1]
    out = []
    for shape, f in (("linear", t), ("log-linear", np.log(t - t.min() + 1.0))):
        X = np.column_stack([np.ones(len(t)), f])
        fit = fit_lmm(y, X, X, groups, coef_names=("intercept", "time"), re_names=("intercept", "time"),
                      reml=False, satterthwaite=False)
        out.append({"shape": shape, "time": "t" if shape == "linear" else "log(t − min t + 1)",
                    "aic_ml": fit.aic, "deviance_ml": fit.deviance, "converged": fit.converged})
    tab = pd.DataFrame(out)
    delta = float(tab["aic_ml"].iloc[1] - tab["aic_ml"].iloc[0])
    return ShapeComparison(table=tab, preferred="linear" if delta >= 0 else "log-linear", delta_aic=delta)


# ----------------------------------------------------------------------------
# simulation-based power for convergence × time


@dataclass(frozen=True, eq=False)
class PowerResult:
    """Simulated power of Model 2's convergence × time test (METHODS §8).

    ``table``: beta, power, mc_se (√(p(1 − p)/n_sim)), n_ok (simulations that
    fitted), mean_estimate (of time:convergence). Design in ``design``.
    """

    table: pd.DataFrame
    n_dyads: int
    sessions: tuple
    n_sim: int
    alpha: float
    design: dict

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def summary(self) -> str:
        parts = [f"β = {num(r.beta)}: {percent(r.power)}" for r in self.table.itertuples()]
        return (f"Power at N = {count(self.n_dyads)} dyads, α = {num(self.alpha)}, {count(self.n_sim)} simulations: "
                + "; ".join(parts) + ".")


def convergence_power(n_dyads: int, sessions, betas=(0.2, 0.3, 0.4), *, n_sim: int = 200, alpha: float = 0.05,
                      seed: int = 0, progress=None, cancelled=None, **design) -> PowerResult:
    """Power of Model 2's ``time:convergence`` test by simulation (:func:`analysis.simulate.simulate_dyads`).

    For each standardized effect β, ``n_sim`` data sets of ``n_dyads`` dyads
    rated at ``sessions`` are simulated with ``convergence_on_slope =
    sd_symptom_slope · β / √(1 − β²)``, so that the correlation of the true
    convergence share with the true symptom slope is β (the paper's
    "standardized regression slope"). Model 2 is fitted (REML, Satterthwaite
    df) with the per-dyad OLS convergence score; power = share of data sets
    with p < ``alpha``. Unlike the paper's cross-sectional approximation
    (N = 44 / 82 / 191 for β = .4 / .3 / .2) this includes the attenuation by
    the score's unreliability, so it is usually lower. ``design``: further
    :func:`simulate_dyads` arguments (e.g. ``symptom_instrument``). ``progress``, ``cancelled``: see
    :mod:`analysis.progress` (the dashboard runs this off the page's thread).
    """
    from analysis.progress import checkpoint
    from analysis.simulate import simulate_dyads

    sessions = tuple(int(s) for s in sessions)
    if int(n_dyads) < 5:
        raise ValueError("Power needs at least 5 dyads.")
    if len(sessions) < 3:
        raise ValueError("Power needs at least 3 sessions (the convergence score needs a residual variance).")
    if not 0 < alpha < 1 or n_sim < 1:
        raise ValueError("alpha must be in (0, 1) and n_sim ≥ 1.")
    sd_slope = float(design.pop("sd_symptom_slope", 0.04))
    rng = np.random.default_rng(seed)
    rows = []
    if not all(-1 < float(b) < 1 for b in betas):
        raise ValueError("Each β must lie strictly between −1 and 1.")
    total = max(1, len(betas) * int(n_sim))
    for j, b in enumerate(betas):
        b = float(b)
        eff = sd_slope * b / np.sqrt(1 - b * b)
        hits, ests, ok = 0, [], 0
        for i in range(int(n_sim)):
            checkpoint(progress, cancelled, (j * int(n_sim) + i) / total)
            sim = simulate_dyads(int(n_dyads), sessions, sd_symptom_slope=sd_slope, convergence_on_slope=eff,
                                 seed=int(rng.integers(2**31)), **design)
            try:
                gm = growth_models(sim.data, models=(2,), ml_refit=False, random_tests=False).models[2]
            except ValueError:
                continue
            fx = gm.fixed.set_index("term")
            ok += 1
            ests.append(float(fx.at["time:convergence", "estimate"]))
            hits += bool(fx.at["time:convergence", "pvalue"] < alpha)
        pw = hits / ok if ok else np.nan
        rows.append({"beta": b, "power": pw, "mc_se": float(np.sqrt(pw * (1 - pw) / ok)) if ok else np.nan,
                     "n_ok": ok, "mean_estimate": float(np.mean(ests)) if ests else np.nan})
    return PowerResult(table=pd.DataFrame(rows), n_dyads=int(n_dyads), sessions=sessions, n_sim=int(n_sim),
                       alpha=float(alpha), design={"sd_symptom_slope": sd_slope, **design})


# ----------------------------------------------------------------------------
# "Reproduce a paper" presets (seed 001)


