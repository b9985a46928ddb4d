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

from analysis.lmm import LMMFit, drop_collinear, fit_lmm

__all__ = [
    "TERM_LABELS",
    "DyadScores",
    "DyadicResult",
    "GrowthModel",
    "GrowthResult",
    "dyad_scores",
    "dyadic_model",
    "growth_models",
    "models_table",
    "pooled_convergence",
    "trajectories",
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

_REQ = ("study", "patient", "session")


# ----------------------------------------------------------------------------
# input checks


def _check(df: pd.DataFrame, cols) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise ValueError("Expected a pandas DataFrame in the long format (METHODS §1).")
    missing = [c for c in (*_REQ, *cols) if c not in df.columns]
    if missing:
        raise ValueError(
            "The data lack the column(s) " + ", ".join(missing) + ". Alliance convergence needs "
            "patient-rated 'alliance' and therapist-rated 'therapist_alliance' per session."
        )
    if len(df) == 0:
        raise ValueError("The data are empty.")
    out = df.copy()
    for c in ("session", "alliance", "therapist_alliance", "symptoms"):
        if c in out.columns:
            try:
                out[c] = pd.to_numeric(out[c]).astype(float)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"Column '{c}' must be numeric.") from exc
    s = out["session"]
    if s.isna().any() or (s < 0).any() or not np.all(np.mod(s, 1) == 0):
        raise ValueError("'session' must be a whole number ≥ 0 in every row.")
    out["study"] = out["study"].astype("string")
    out["patient"] = out["patient"].astype("string")
    if out["study"].isna().any() or out["patient"].isna().any():
        raise ValueError("'study' and 'patient' must not be missing.")
    if out.duplicated(["study", "patient", "session"]).any():
        raise ValueError("Some (study, patient, session) keys occur more than once; each session must be one row.")
    return out.sort_values(["study", "patient", "session"], kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------
# descriptives


def trajectories(df: pd.DataFrame) -> pd.DataFrame:
    """Per study and session: n, mean and SD (ddof = 1) of P, T and D = P − T.

    Columns: study, session, n_patient, patient_mean, patient_sd, n_therapist,
    therapist_mean, therapist_sd, n_joint, discrepancy_mean, discrepancy_sd
    (the discrepancy uses rows where both ratings exist). These are the
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

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()


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


def dyad_scores(df: pd.DataFrame, discrepancy: str = "absolute", transform: str = "none") -> DyadScores:
    """One row of alliance scores per dyad (METHODS §8; formulas in the module docstring).

    Uses only the sessions where both ``alliance`` (P) and
    ``therapist_alliance`` (T) are observed; dyads with fewer than 2 such
    sessions are listed in ``excluded`` with the reason. ``log_shift`` is
    applied within each study across its scored dyads.
    """
    if discrepancy not in ("absolute", "signed"):
        raise ValueError("discrepancy must be 'absolute' or 'signed'.")
    if transform not in ("none", "log_shift"):
        raise ValueError("transform must be 'none' or 'log_shift'.")
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
    _, dev = _group_ols(g, t, (P + T) / 2.0, k)
    Dhat = (aP - aT)[g] + (bP - bT)[g] * t
    if discrepancy == "absolute":
        _, sabs = _group_ols(g, t, np.abs(Dhat), k)
        conv_raw = -sabs
    else:
        conv_raw = bP - bT
    # sampling error of the per-dyad discrepancy slope: OLS of the raw D_t = P_t − T_t on t
    # (its slope is b_P − b_T); Var = s²_D / Σ(t − t̄)², s²_D = RSS / (n − 2), needs n ≥ 3
    Draw = P - T
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
            sg = np.sign(Dhat)
            tc = t - tb[g]
            ga = -np.bincount(g, tc * sg, minlength=k) / stt
            gb = -np.bincount(g, tc * t * sg, minlength=k) / stt
            st_ = np.bincount(g, t, minlength=k)
            stt2 = np.bincount(g, t * t, minlength=k)
            det = nk * stt2 - st_**2
            vaa, vab, vbb = stt2 / det, -st_ / det, nk / det
            var_c = s2D * (ga * ga * vaa + 2 * ga * gb * vab + gb * gb * vbb)
        conv_se = np.where(nk >= 3, np.sqrt(var_c), np.nan)
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
        th = d.groupby(["study", "patient"], sort=False)["therapist"].agg(lambda s: s.dropna().unique())
        nth = th.map(len)
        if (nth > 1).any():
            bad = nth[nth > 1].index[:3].tolist()
            raise ValueError(f"Some dyads have more than one therapist id (e.g. {bad}); a dyad has one therapist.")
        thmap = th.map(lambda a: a[0] if len(a) else pd.NA)
        table["therapist"] = pd.array(
            [thmap.get((s, p), pd.NA) for s, p in zip(table["study"], table["patient"])], dtype="string"
        )
    messages = []
    reliability = {}
    for stu, sub in table.groupby("study", sort=False):
        se = sub["convergence_se"].to_numpy()
        ok_se = np.isfinite(se)
        if ok_se.sum() >= 3 and len(sub) >= 3:
            v = float(np.var(sub["convergence_raw"], ddof=1))
            rel = 1.0 - float(np.mean(se[ok_se] ** 2)) / v if v > 0 else np.nan
            reliability[str(stu)] = max(rel, 0.0) if np.isfinite(rel) else np.nan
            messages.append(
                f"{stu}: estimated reliability of the convergence score {reliability[str(stu)]:.2f} "
                "(share of its between-dyad variance not explained by rating noise around the dyads' "
                "lines); associations with convergence are attenuated by roughly this factor."
            )
        else:
            reliability[str(stu)] = np.nan
    if transform == "log_shift" and len(table):
        x = table["convergence_raw"].to_numpy()
        mins = table.groupby("study")["convergence_raw"].transform("min").to_numpy()
        table["convergence"] = np.log(x - mins + 1.0)
    if len(excluded):
        messages.append(f"{len(excluded)} dyad(s) excluded: fewer than 2 sessions with both ratings.")
    return DyadScores(table=table, excluded=excluded, discrepancy=discrepancy, transform=transform,
                      messages=tuple(messages), reliability=reliability)


# ----------------------------------------------------------------------------
# growth models


@dataclass(frozen=True, eq=False)
class GrowthModel:
    """One fitted growth model (Model 1, 2 or 3).

    ``fixed``: term, label, estimate, se, df (Satterthwaite), t, pvalue,
    ci_low, ci_high (95 %, t with the Satterthwaite df). ``random``:
    var_intercept, var_slope, cov_intercept_slope, corr_intercept_slope,
    residual, var_therapist (None for two levels). ``aic_reml`` is from the
    REML fit (compare only models with identical fixed effects);
    ``aic_ml`` from the ML refit (use this to compare Models 1–3).
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

    def to_frame(self) -> pd.DataFrame:
        out = self.fixed.copy()
        out.insert(0, "model", self.model)
        return out


@dataclass(frozen=True, eq=False)
class GrowthResult:
    """Models 1–3 of one study. ``models[m]`` is a :class:`GrowthModel`.

    ``time``: the time coding ("session": t = session number;
    "from_first": t = session − ``time_origin``, the first session in the
    model data, so the intercept is the status at the first session).
    ``centering``: the grand means subtracted from each dyad-level predictor.
    ``sample``: the dyad-level data used (centered predictors);
    ``excluded``: dyads left out, with the reason.
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

    def to_frame(self) -> pd.DataFrame:
        return pd.concat([m.to_frame() for m in self.models.values()], ignore_index=True)

    def table(self, digits: int = 2) -> pd.DataFrame:
        return models_table(self, digits=digits)


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


def _prepare(df, scores, time, early_discrepancy, discrepancy, transform, need_symptoms=True):
    cols = ("alliance", "therapist_alliance", "symptoms") if need_symptoms else ("alliance", "therapist_alliance")
    d = _check(df, cols)
    studies = d["study"].unique()
    if len(studies) != 1:
        raise ValueError(
            f"The data hold {len(studies)} studies; growth models are fitted per study "
            "(select one study, or use pooled_convergence to pool the per-study effects)."
        )
    if time not in ("session", "from_first"):
        raise ValueError("time must be 'session' (session number) or 'from_first' (session − first session).")
    if early_discrepancy not in ("raw", "fitted"):
        raise ValueError("early_discrepancy must be 'raw' or 'fitted'.")
    if scores is None:
        scores = dyad_scores(d, discrepancy=discrepancy, transform=transform)
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
    # dyads with symptom data
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
    origin = float(rows["session"].min()) if time == "from_first" else 0.0
    rows["t"] = rows["session"] - origin
    exc = (pd.concat(excluded, ignore_index=True) if excluded
           else pd.DataFrame({"patient": pd.array([], dtype="string"), "reason": []}))
    exc.insert(0, "study", pd.array([studies[0]] * len(exc), dtype="string"))
    return d, scores, str(studies[0]), dyc, rows, origin, centering, exc


def _design(rows, dyc, model):
    preds = MODEL_PREDICTORS[model]
    t = rows["t"].to_numpy(float)
    cols = [np.ones(len(rows)), t]
    names = ["intercept", "time"]
    dv = dyc.loc[rows["patient"].to_numpy()]
    for p in preds:
        v = dv[p].to_numpy(float)
        cols += [v, v * t]
        names += [p, f"time:{p}"]
    return np.column_stack(cols), names


def _fit_one(model, rows, dyc, therapist_level, satterthwaite, ml_refit):
    X, names = _design(rows, dyc, model)
    warnings = []
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
    y = rows["symptoms"].to_numpy(float)
    t = rows["t"].to_numpy(float)
    Z = np.column_stack([np.ones(len(rows)), t])
    groups = rows["patient"].astype(str).to_numpy()
    outer = None
    levels = 2
    fit = None
    if therapist_level:
        if "therapist" not in rows.columns or rows["therapist"].isna().any():
            warnings.append("No therapist id for every row: the therapist level was not fitted (two levels).")
        else:
            outer = rows["therapist"].astype(str).to_numpy()
            try:
                f3 = fit_lmm(y, Xk, Z, groups, coef_names=kept, re_names=("intercept", "time"),
                             outer=outer, satterthwaite=satterthwaite)
            except ValueError as exc:
                f3 = None
                warnings.append(f"The three-level model failed ({exc}); fell back to two levels.")
            if f3 is not None:
                if not f3.converged:
                    warnings.append("The three-level model did not converge; fell back to two levels "
                                    "(as in the paper).")
                elif f3.theta[-1] < 1e-4:
                    warnings.append("The therapist variance was estimated at ~0; fell back to two levels "
                                    "(as in the paper).")
                else:
                    fit, levels = f3, 3
            if fit is None:
                outer = None
    if fit is None:
        fit = fit_lmm(y, Xk, Z, groups, coef_names=kept, re_names=("intercept", "time"),
                      satterthwaite=satterthwaite)
    warnings += list(fit.messages)
    fit_ml = None
    if ml_refit:
        fit_ml = fit_lmm(y, Xk, Z, groups, coef_names=kept, re_names=("intercept", "time"), outer=outer,
                         reml=False, satterthwaite=False, start=fit.theta)
        warnings += [f"ML refit: {m}" for m in fit_ml.messages]
    fx = fit.fixed_frame()
    fx.insert(1, "label", [TERM_LABELS.get(nm, nm) for nm in fx["term"]])
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
        levels=levels,
        dropped_terms=tuple(dropped),
        fit=fit,
        fit_ml=fit_ml,
    )


def growth_models(
    df: pd.DataFrame,
    scores: DyadScores | pd.DataFrame | None = None,
    models=(1, 2, 3),
    therapist_level: bool = False,
    time: str = "session",
    *,
    discrepancy: str = "absolute",
    transform: str = "none",
    early_discrepancy: str = "raw",
    satterthwaite: bool = True,
    ml_refit: bool = True,
) -> GrowthResult:
    """Fit the paper's symptom growth Models 1–3 for one study (METHODS §8).

    ``Y_ij = b0j + b1j·t_ij + r_ij`` with ``(b0j, b1j)`` = fixed part + (u0j, u1j),
    ``(u0j, u1j) ~ N(0, [[τ00, τ01], [τ01, τ11]])`` (unstructured), ``r ~ N(0, σ²)``,
    REML; the dyad-level predictors of each model enter on b0j and b1j (their
    fixed terms are the predictor and predictor × time), grand-mean centered.
    Definitions, sample rules and the Model 3 collinearity: module docstring.

    ``scores``: precomputed :func:`dyad_scores` (else computed with
    ``discrepancy`` and ``transform``). ``time``: "session" (t = session
    number) or "from_first" (t = session − first session, intercept = initial
    status). ``therapist_level``: add a therapist random intercept (needs a
    ``therapist`` column); falls back to two levels, with a message, when the
    3-level fit does not converge or the therapist variance is ~0.
    ``early_discrepancy``: "raw" (drop, as collinear) or "fitted".
    AIC: ``aic_reml`` from the REML fit, ``aic_ml`` from an ML refit
    (``ml_refit``); only ML AICs compare models with different fixed effects.
    """
    models = tuple(int(m) for m in models)
    if not models or any(m not in (1, 2, 3) for m in models):
        raise ValueError("models must be a subset of (1, 2, 3).")
    _d, scores, study, dyc, rows, origin, centering, exc = _prepare(
        df, scores, time, early_discrepancy, discrepancy, transform
    )
    messages = list(scores.messages)
    if len(exc):
        messages.append(f"{len(exc)} dyad(s) not in the models (see .excluded); all models use the same "
                        f"{len(dyc)} dyads.")
    if early_discrepancy == "fitted" and 3 in models:
        v = _vif(dyc[list(PREDICTORS)].to_numpy(), list(PREDICTORS))
        hi = {k: val for k, val in v.items() if val > 10}
        if hi:
            messages.append("Model 3 predictors are nearly collinear (variance inflation factor > 10: "
                            + ", ".join(f"{k} {val:.3g}" for k, val in hi.items()) + ").")
    fitted = {m: _fit_one(m, rows, dyc, therapist_level, satterthwaite, ml_refit) for m in models}
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
    )


# ----------------------------------------------------------------------------
# Table I layout


_TABLE_ORDER = (
    "intercept", "time", "initial_symptoms", "time:initial_symptoms", "convergence", "time:convergence",
    "early_patient", "early_therapist", "alliance_development", "early_discrepancy",
    "time:early_patient", "time:early_therapist", "time:alliance_development", "time:early_discrepancy",
    "convergence_x_development", "time:convergence_x_development",
)


def _fmt_p(p):
    if not np.isfinite(p):
        return ""
    if p < 0.001:
        return "<.001"
    return f"{p:.3f}".lstrip("0") if p < 1 else "1.000"


def _fmt_num(x, digits):
    """Fixed ``digits`` decimals, or ``digits`` significant digits for small non-zero values."""
    if x is None or not np.isfinite(x):
        return ""
    if x != 0 and abs(x) < 10 ** (1 - digits):
        return f"{x:.{digits}g}"
    return f"{x:.{digits}f}"


def models_table(result: GrowthResult, digits: int = 2) -> pd.DataFrame:
    """Models side by side, laid out like the paper's Table I.

    Rows: fixed-effect terms (paper order), then random effects (Var
    intercept, Cov, Var slope, Residual, Var therapist when fitted), AIC (REML),
    AIC (ML), N dyads, N observations. Columns per model: ``"Model m"``
    ("estimate (SE)", ``digits`` decimals, or ``digits`` significant digits
    for values below 10^(1−digits)) and ``"Model m p"``. Empty where a term is
    not in a model. Random-effect variances are shown with ≥ 3 significant digits.
    """
    ms = sorted(result.models)
    rows = [t for t in _TABLE_ORDER if any(t in set(result.models[m].fixed["term"]) for m in ms)]
    labels = [TERM_LABELS[t] for t in rows]
    extra = ["Var(intercept)", "Cov(intercept, slope)", "Var(slope)", "Residual variance"]
    if any(result.models[m].levels == 3 for m in ms):
        extra.append("Var(therapist)")
    extra += ["AIC (REML)", "AIC (ML)", "N dyads", "N observations"]
    out = pd.DataFrame(index=pd.Index(labels + extra, name="term"))
    for m in ms:
        gm = result.models[m]
        fx = gm.fixed.set_index("term")
        est, pv = [], []
        for t in rows:
            if t in fx.index:
                est.append(f"{_fmt_num(fx.at[t, 'estimate'], digits)} ({_fmt_num(fx.at[t, 'se'], digits)})")
                pv.append(_fmt_p(fx.at[t, "pvalue"]))
            else:
                est.append("")
                pv.append("")
        r = gm.random
        re_vals = [r["var_intercept"], r["cov_intercept_slope"], r["var_slope"], r["residual"]]
        if "Var(therapist)" in extra:
            re_vals.append(r["var_therapist"])
        fmt_re = [("" if v is None else f"{v:.{max(digits, 3)}g}") for v in re_vals]
        est += fmt_re + [f"{gm.aic_reml:.1f}", f"{gm.aic_ml:.1f}" if np.isfinite(gm.aic_ml) else "",
                         str(gm.n_dyads), str(gm.n_obs)]
        pv += [""] * (len(extra))
        out[f"Model {m}"] = est
        out[f"Model {m} p"] = pv
    return out


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
