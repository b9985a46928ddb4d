"""Per-session descriptives and per-dyad convergence scores (METHODS §8).

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

Growth models that use these scores: :mod:`analysis.convergence.growth`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from analysis.convergence._common import _check
from analysis.convergence.dyadic import dyadic_model
from analysis.formatting import count, num, percent

# ----------------------------------------------------------------------------
# descriptives


def trajectories(df: pd.DataFrame) -> pd.DataFrame:
    """Per study and session: n, mean and SD (ddof = 1) of P, T and D = P − T.

    Columns: study, session, n_patient, patient_mean, patient_sd, n_therapist,
    therapist_mean, therapist_sd, n_joint, discrepancy_mean, discrepancy_sd,
    discrepancy_se = SD/√n (the discrepancy uses rows where both ratings exist). These are the
    paper's Figures 1–2 descriptives (METHODS §8). Sessions without any alliance rating (symptom-only
    occasions, e.g. intake and termination) are not rows.
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
    out = out[(out["n_patient"] > 0) | (out["n_therapist"] > 0)].reset_index(drop=True)
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
    ``1 − mean(convergence_se²) / Var(convergence_raw)`` over the dyads with an SE: the share of the
    score's between-dyad variance that is not rating noise (a low value
    attenuates every association with convergence). ``lines_cross`` (table
    column): the fitted P and T lines cross between the dyad's first and last
    joint session (D̂ changes sign); ``crossing[study]`` = the share of such
    dyads. For them |D̂| falls and then rises, so the "absolute" score mixes
    approach and divergence: it is not a rate of convergence, and the
    reliability above does not say how well it measures one (:meth:`crossing_note`).
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
    crossing: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def crossing_note(self, study: str) -> str | None:
        """A sentence for readers when the lines of some dyads of ``study`` cross (None otherwise)."""
        share = self.crossing.get(str(study))
        if share is None or not share > 0:
            return None
        sub = self.table[self.table["study"] == str(study)]
        k, n = int(sub["lines_cross"].sum()), len(sub)
        what = ("The absolute-discrepancy score |D̂| falls and then rises for them: it mixes approach and "
                "divergence, is not a rate of convergence and tracks the true rate only loosely. Its reliability does "
                "not describe how well it measures convergence, so associations are not simply attenuated by "
                "it. The signed score (change of P − T) and the congruence models (response surface, APIM) "
                "below do not have this problem." if self.discrepancy == "absolute" else
                "The signed score (the slope of P − T) is unaffected; read a negative slope as convergence only "
                "where the patient started above the therapist.")
        return (f"The patient and therapist lines cross within the observed sessions in {count(k)} of "
                f"{count(n)} dyads ({percent(share)}). " + what)

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


def _reliability(table: pd.DataFrame, conv_ols: np.ndarray, discrepancy: str = "signed") -> tuple[dict, list]:
    """Per study: 1 − mean(SE²)/Var(OLS score) over the dyads with an SE (≥ 3 joint sessions; floored at 0;
    NaN with < 3 such dyads)."""
    messages = []
    reliability = {}
    for stu, sub in table.groupby("study", sort=False):
        se = sub["convergence_se"].to_numpy()
        ok_se = np.isfinite(se)
        if ok_se.sum() >= 3 and len(sub) >= 3:
            # the variance over the same dyads as the noise: a dyad without an SE (2 joint sessions, an
            # exact fit) has a slope that is mostly noise and would inflate the variance
            v = float(np.var(conv_ols[sub.index.to_numpy()[ok_se]], ddof=1))
            rel = 1.0 - float(np.mean(se[ok_se] ** 2)) / v if v > 0 else np.nan
            reliability[str(stu)] = max(rel, 0.0) if np.isfinite(rel) else np.nan
            crossed = discrepancy == "absolute" and bool(sub["lines_cross"].any())
            messages.append(
                f"{stu}: estimated reliability of the convergence score {num(reliability[str(stu)])} "
                "(share of its between-dyad variance not explained by rating noise around the dyads' lines); "
                + ("associations with convergence are attenuated by roughly this factor." if not crossed else
                   f"the lines cross in {percent(float(sub['lines_cross'].mean()))} of the dyads, so this "
                   "does not say how well the absolute-discrepancy score measures convergence.")
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



def _joint_rows(d: pd.DataFrame) -> dict:
    """Joint P/T rows of the dyads with ≥ 2 joint sessions, re-indexed 0..k−1 (``g``), and the exclusions."""
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
    keep_d = np.flatnonzero(ok)
    remap = np.full(m, -1)
    remap[keep_d] = np.arange(len(keep_d))
    rows = joint & ok[gid]
    return {"gid": gid, "uniq": uniq, "nj": nj, "ok": ok, "keep": keep_d, "remap": remap, "rows": rows,
            "g": remap[gid[rows]], "k": len(keep_d), "t": d["session"].to_numpy()[rows],
            "P": d["alliance"].to_numpy()[rows], "T": d["therapist_alliance"].to_numpy()[rows],
            "excluded": excluded}


def _initial_symptoms(d: pd.DataFrame, j: dict) -> tuple[np.ndarray, np.ndarray]:
    """The first observed symptom score of each scored dyad (any session) and its session."""
    k, sess = j["k"], d["session"].to_numpy()
    init = np.full(k, np.nan)
    init_sess = np.full(k, np.nan)
    if "symptoms" in d.columns:
        srows = d["symptoms"].notna().to_numpy() & j["ok"][j["gid"]]
        gs = j["remap"][j["gid"][srows]]
        if len(gs):
            _, fp = np.unique(gs, return_index=True)
            ridx = np.flatnonzero(srows)[fp]
            init[np.unique(gs)] = d["symptoms"].to_numpy()[ridx]
            init_sess[np.unique(gs)] = sess[ridx]
    return init, init_sess


def _score_table(d: pd.DataFrame, j: dict, lines, conv_raw, conv_se, method: str) -> pd.DataFrame:
    """The per-dyad score table from the fitted lines ``(a_P, b_P, a_T, b_T)``."""
    aP, bP, aT, bT = lines
    g, keep_d, uniq = j["g"], j["keep"], j["uniq"]
    # first and last joint session per dyad (rows are sorted by session within dyad)
    idx_rows = np.flatnonzero(j["rows"])
    _, first_pos = np.unique(g, return_index=True)
    first = idx_rows[first_pos]
    _, last_pos = np.unique(g[::-1], return_index=True)
    last = idx_rows[::-1][last_pos]
    sess = d["session"].to_numpy()
    early_P = d["alliance"].to_numpy()[first]
    early_T = d["therapist_alliance"].to_numpy()[first]
    t_first = sess[first]
    if method == "multilevel":  # growth-curve levels at the first joint session
        early_P = aP + bP * t_first
        early_T = aT + bT * t_first
    init, init_sess = _initial_symptoms(d, j)
    return pd.DataFrame(
        {
            "study": pd.array([uniq[i][0] for i in keep_d], dtype="string"),
            "patient": pd.array([uniq[i][1] for i in keep_d], dtype="string"),
            "n_joint_sessions": j["nj"][keep_d].astype("int64"),
            "first_joint_session": t_first.astype("int64"),
            "last_joint_session": sess[last].astype("int64"),
            "early_patient": early_P,
            "early_therapist": early_T,
            "early_discrepancy": early_P - early_T,
            "early_discrepancy_fitted": (aP - aT) + (bP - bT) * t_first,
            "lines_cross": ((aP - aT) + (bP - bT) * t_first) * ((aP - aT) + (bP - bT) * sess[last]) < 0,
            "intercept_patient": aP,
            "intercept_therapist": aT,
            "slope_patient": bP,
            "slope_therapist": bT,
            "convergence_raw": conv_raw,
            "convergence": conv_raw.copy(),
            "convergence_se": conv_se,
            "alliance_development": (bP + bT) / 2.0,
            "initial_symptoms": init,
            "initial_symptoms_session": init_sess,
        }
    )


def _transform_by_study(table: pd.DataFrame, transform: str) -> dict:
    """Apply ``transform`` to ``convergence`` within each study (in place); returns the per-study info."""
    info = {}
    if len(table):
        conv_t = table["convergence_raw"].to_numpy(float).copy()
        for stu, idx in table.groupby("study", sort=False).indices.items():
            conv_t[idx], info[str(stu)] = transform_score(table["convergence_raw"].to_numpy(float)[idx], transform)
        table["convergence"] = conv_t
    return info


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

    >>> from analysis.simulate import simulate_dyads
    >>> s = dyad_scores(simulate_dyads(20, seed=1).data)
    >>> len(s.to_frame()), "convergence" in s.to_frame().columns
    (20, True)
    """
    if discrepancy not in ("absolute", "signed"):
        raise ValueError("discrepancy must be 'absolute' or 'signed'.")
    if transform not in TRANSFORMS:
        raise ValueError("transform must be one of " + ", ".join(TRANSFORMS) + " (e.g. 'log_shift').")
    if method not in ("ols", "multilevel"):
        raise ValueError("method must be 'ols' (per-dyad lines) or 'multilevel' (empirical-Bayes lines).")
    d = _check(df, ("alliance", "therapist_alliance"))
    j = _joint_rows(d)
    g, t, P, T, k = j["g"], j["t"], j["P"], j["T"], j["k"]
    aP, bP = _group_ols(g, t, P, k)
    aT, bT = _group_ols(g, t, T, k)
    ols_signed = bP - bT
    aPo, aTo = aP, aT
    messages = []
    dyadic = {}
    if method == "multilevel":
        aP, bP, aT, bT, ml_msgs, dyadic = _eb_lines(d, [j["uniq"][i] for i in j["keep"]])
        messages += ml_msgs
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
    table = _score_table(d, j, (aP, bP, aT, bT), conv_raw, conv_se, method)
    if "therapist" in d.columns:
        table["therapist"] = _therapist_of(d, table)
    reliability, rel_msgs = _reliability(table, conv_ols, discrepancy)
    messages += rel_msgs
    if method == "multilevel":
        messages.append("Convergence from the multilevel (empirical-Bayes) growth lines: the reliability above "
                        "is that of the per-dyad OLS discrepancy slopes; the multilevel scores shrink them toward "
                        "the mean by about that factor.")
    info = _transform_by_study(table, transform)
    crossing = {str(k): float(v) for k, v in table.groupby("study", sort=False)["lines_cross"].mean().items()}
    excluded = j["excluded"]
    if len(excluded):
        messages.append(f"{len(excluded)} dyad(s) excluded: fewer than 2 sessions with both ratings.")
    return DyadScores(table=table, excluded=excluded, discrepancy=discrepancy, transform=transform,
                      messages=tuple(messages), reliability=reliability, method=method, transform_info=info,
                      dyadic=dyadic, crossing=crossing)


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
