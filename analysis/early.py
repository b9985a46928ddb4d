"""Early alliance → post-treatment outcome, per study and pooled (METHODS §7).

Per patient:

* ``early alliance``: the mean of the first ``early_sessions`` observed alliance ratings inside the
  lagged analysis window ``options.sessions`` (the default), or — with ``early_window=(first,
  last)`` — the mean of every observed rating in those sessions, chosen independently of the
  lagged window (the IPD-MA used sessions 1–3 against the post-treatment outcome);
* ``baseline``: the first observed symptom score (with ``early_window``: at or before its last
  session);
* ``outcome``: ``"last"`` — the last observed symptom score (inside ``options.sessions`` by
  default; over all sessions with ``early_window``); ``"session"`` — the symptom score at
  session ``outcome_session``; ``"column"`` — a separate post-treatment column
  ``outcome_column`` (one value per patient). For ``last``/``session`` the outcome must come
  from a later session than the early ratings and the baseline.

Per study, OLS ``outcome_i = b0 + b1·early_i + b2·baseline_i + e_i``; with ``standardize`` all
three are z-scored within the study over its patients (ddof 1), so b1 is the standardized
partial β (baseline-adjusted); t tests on N − 3 df. b1 (term ``early_alliance``) is pooled by
:func:`analysis.meta.random_effects` (``options.pooling_method``, ``options.test``).

:func:`early_outcome` also reports the zero-order correlation r of early alliance and outcome per
study, pooled on Fisher's z: ``z_k = atanh(r_k)``, ``v_k = 1/(n_k − 3)``, random effects with the
same τ² estimator and test, back-transformed by ``tanh`` (estimate and CI). Negative b1 or r =
higher early alliance, lower (better) outcome symptoms.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from analysis import lagged, mixed
from analysis.lagged import LagOptions, StudyFit
from analysis.standardize import zscores
from analysis.twostage import TwoStageResult, per_study_frame, pool_fits

__all__ = ["OUTCOMES", "EarlyResult", "early_alliance_outcome", "early_outcome"]

EARLY_DIRECTION = "early_alliance_to_outcome"
OUTCOMES = ("last", "session", "column")


@dataclass(frozen=True, eq=False)
class EarlyResult:
    """Partial β (``beta``: a :class:`analysis.pipeline.TwoStageResult`) and the correlations
    (``correlations``: one row per study with ``study, n, r, z, v``; ``pooled_r``: the
    :class:`analysis.meta.MetaResult` on Fisher's z or None; ``r_estimate, r_ci_low, r_ci_high``
    back-transformed) of :func:`early_outcome`; ``settings`` records the choices."""

    beta: object
    correlations: pd.DataFrame
    pooled_r: object
    r_estimate: float
    r_ci_low: float
    r_ci_high: float
    settings: dict

    def to_frame(self) -> pd.DataFrame:
        """Per-study partial β (with its pooled row) joined with the per-study r."""
        t = self.beta.to_frame()
        r = self.correlations[["study", "r"]].copy()
        return t.merge(r, on="study", how="left")

    def summary(self) -> str:
        from analysis import formatting as fmt

        parts = []
        m = self.beta.pooled.get(EARLY_DIRECTION)
        if m is not None and m.k == 1:
            # one study: nothing was pooled, so the sentence gives that study's own estimate (its table row)
            t = self.beta.to_frame()
            own = t[(t["row"] == "study") & (t["direction"] == EARLY_DIRECTION)]
            if len(own):
                r = own.iloc[0]
                parts.append(f"Only one study ({r['study']}), so nothing was pooled; its own partial β "
                             f"(baseline-adjusted): {fmt.estimate_ci(r['estimate'], r['ci_low'], r['ci_high'])}, "
                             f"{fmt.p_text(r['pvalue'])}.")
        elif m is not None:
            parts.append(f"Partial β (baseline-adjusted) pooled over {fmt.count(m.k)} studies: "
                         f"{fmt.estimate_ci(m.estimate, m.ci_low, m.ci_high)}, {fmt.p_text(m.pvalue)}.")
        if self.pooled_r is not None and self.pooled_r.k == 1:
            parts.append(f"Correlation r (one study, not pooled): "
                         f"{fmt.estimate_ci(self.r_estimate, self.r_ci_low, self.r_ci_high)}, "
                         f"{fmt.p_text(self.pooled_r.pvalue)}.")
        elif self.pooled_r is not None:
            parts.append(f"Correlation r pooled on Fisher's z: "
                         f"{fmt.estimate_ci(self.r_estimate, self.r_ci_low, self.r_ci_high)}, "
                         f"{fmt.p_text(self.pooled_r.pvalue)}.")
        return " ".join(parts) or "Nothing could be pooled."


def _check(early_sessions, early_window, outcome, outcome_session, outcome_column, df):
    if isinstance(early_sessions, bool) or not isinstance(early_sessions, (int, np.integer)) or early_sessions < 1:
        raise ValueError("early_sessions must be a whole number ≥ 1.")
    if early_window is not None:
        w = tuple(early_window)
        if len(w) != 2 or any(isinstance(v, bool) or not float(v).is_integer() for v in w) or w[0] > w[1]:
            raise ValueError("early_window must be (first, last): two whole session numbers with first ≤ last.")
        early_window = (int(w[0]), int(w[1]))
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(map(repr, OUTCOMES))}; got {outcome!r}.")
    if outcome == "session" and (outcome_session is None or not float(outcome_session).is_integer()):
        raise ValueError("outcome='session' needs outcome_session, a whole session number.")
    if outcome == "column":
        if outcome_column is None or outcome_column not in df.columns:
            raise ValueError(f"outcome='column' needs outcome_column, a column of the data; got {outcome_column!r}.")
    return early_window


def _patient_values(base, df, early_sessions, early_window, outcome, outcome_session, outcome_column):
    """Per patient of ``base``: early alliance, baseline, outcome and whether all three are usable."""
    g, G = base.g, base.G
    a, s, sess = base.raw["alliance"], base.raw["symptoms"], base.sess
    aobs, sobs = ~np.isnan(a), ~np.isnan(s)
    if early_window is None:
        ca = np.cumsum(aobs)
        first_row = base.pstart[g]
        rank = ca - (ca[first_row] - aobs[first_row])  # 1-based rank among the patient's observed ratings
        early_mask = aobs & (rank <= early_sessions)
        need = early_sessions
    else:
        early_mask = aobs & (sess >= early_window[0]) & (sess <= early_window[1])
        need = 1
    n_early = np.bincount(g[early_mask], minlength=G)
    early = np.bincount(g[early_mask], weights=a[early_mask], minlength=G) / np.maximum(n_early, 1)
    last_early = np.full(G, -1, dtype=np.int64)
    np.maximum.at(last_early, g[early_mask], sess[early_mask])
    si = np.flatnonzero(sobs)
    first_s, last_s = np.full(G, -1), np.full(G, -1)
    if len(si):
        gs = g[si]
        firsts, lasts = np.r_[True, gs[1:] != gs[:-1]], np.r_[gs[1:] != gs[:-1], True]
        first_s[gs[firsts]], last_s[gs[lasts]] = si[firsts], si[lasts]
    base_sess = np.where(first_s >= 0, sess[np.maximum(first_s, 0)], -1)
    baseline = np.where(first_s >= 0, s[np.maximum(first_s, 0)], np.nan)
    ok = (n_early >= need) & (first_s >= 0)
    if early_window is not None:
        ok &= base_sess <= early_window[1]
    if outcome == "column":
        vals = pd.to_numeric(df[outcome_column], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        v = vals[base.src_index]
        vo = ~np.isnan(v)
        cnt = np.bincount(g[vo], minlength=G)
        mean = np.bincount(g[vo], weights=v[vo], minlength=G) / np.maximum(cnt, 1)
        dev = np.zeros(G)
        np.maximum.at(dev, g[vo], np.abs(v[vo] - mean[g[vo]]))
        if np.any(dev > 1e-9 * np.maximum(1.0, np.abs(mean))):
            raise ValueError(f"The outcome column {outcome_column!r} must hold one value per patient "
                             "(it varies within a patient).")
        final = np.where(cnt > 0, mean, np.nan)
        ok &= cnt > 0
    else:
        if outcome == "last":
            out_row = last_s
        else:
            hit = sobs & (sess == int(outcome_session))
            out_row = np.full(G, -1)
            out_row[g[hit]] = np.flatnonzero(hit)
        ok &= out_row >= 0
        out_sess = sess[np.maximum(out_row, 0)]
        ok &= (out_sess > np.maximum(last_early, base_sess))
        final = np.where(out_row >= 0, s[np.maximum(out_row, 0)], np.nan)
    return early, baseline, final, ok


def _early_failed(lab, o, reason, n_pat, extra):
    f = lagged.failed_fit(lab, EARLY_DIRECTION, o, reason, n_pat, n_pat, extra)
    return replace(f, effect="early alliance → outcome", estimator="OLS")


def early_outcome(df: pd.DataFrame, early_sessions: int = 3, standardize: bool = True,
                  options: LagOptions | None = None, *, early_window=None, outcome: str = "last",
                  outcome_session=None, outcome_column=None) -> EarlyResult:
    """Early alliance → outcome: partial β and r, per study and pooled (module docstring, METHODS §7)."""
    from analysis import meta

    options = options or LagOptions()
    early_window = _check(early_sessions, early_window, outcome, outcome_session, outcome_column, df)
    independent = early_window is not None or outcome != "last"
    base = lagged.StudyData(df, options.replace(standardize=False, sessions=None if independent else options.sessions))
    if base.n == 0:
        raise ValueError("No rows in the analysis window.")
    early, baseline, final, ok = _patient_values(base, df, early_sessions, early_window, outcome, outcome_session,
                                                 outcome_column)
    terms = ("intercept", "early_alliance", "baseline_symptoms")
    o = options.replace(directions=("alliance_to_symptoms",))
    what = {"last": "a later last symptom score", "session": f"a symptom score at session {outcome_session}",
            "column": f"a value of {outcome_column}"}[outcome]
    early_txt = (f"{early_sessions} early alliance ratings" if early_window is None
                 else f"an alliance rating in sessions {early_window[0]}–{early_window[1]}")
    fits, corr = [], []
    for k, lab in enumerate(base.study_labels):
        pats = np.arange(base.spstart[k], base.spstart[k + 1])
        use = pats[ok[pats]]
        n_pat = len(use)
        excluded = len(pats) - n_pat
        note = (f"{excluded} of {len(pats)} patients lacked {early_txt}, a baseline or {what} and were left out."
                if excluded else "")
        base_msgs = (note,) if note else ()
        if base.problems[lab]:
            fits.append(_early_failed(lab, o, f"Not fitted: {'; '.join(base.problems[lab])}.", n_pat, base_msgs))
            continue
        if n_pat < 5:
            fits.append(_early_failed(lab, o, f"Not fitted: only {n_pat} usable patient(s) (at least 5 needed).",
                                      n_pat, base_msgs))
            continue
        e, b, f = early[use], baseline[use], final[use]
        if standardize:
            # over the study's patients (METHODS §2); a variable that does not vary is the study's problem
            std = {"early alliance": zscores(e), "baseline symptoms": zscores(b), "the outcome": zscores(f)}
            e, b, f = (s.z for s in std.values())
            problems = [m for name, s in std.items() for m in s.problems(name).values()]
            if problems:
                fits.append(_early_failed(lab, o, f"Not fitted: {'; '.join(problems)}.", n_pat, base_msgs))
                continue
        try:
            if not (np.all(np.isfinite(e)) and np.all(np.isfinite(b)) and np.all(np.isfinite(f))):
                raise ValueError("early alliance, baseline or outcome do not vary across patients")
            fit = mixed.fit_ols(np.column_stack([np.ones(n_pat), e, b]), f, names=terms)
        except (ValueError, np.linalg.LinAlgError) as exc:
            fits.append(_early_failed(lab, o, f"Not fitted: {exc}.", n_pat, base_msgs))
            continue
        coef = lagged.coef_data(terms, fit.beta, fit.se, fit.df)
        msgs = list(base_msgs)
        status = "ok"
        if n_pat < 20:
            status = "warning"
            msgs.append(f"Only {n_pat} patients.")
        fits.append(StudyFit(
            study=lab, direction=EARLY_DIRECTION, options=o, effect="early alliance → outcome",
            estimator="OLS, outcome ~ early alliance + baseline symptoms, t(N − 3)", coef_data=coef,
            n_patients=n_pat, n_pairs=n_pat, sigma2=fit.sigma2, converged=True, status=status,
            messages=tuple(msgs),
        ))
        r = float(np.corrcoef(early[use], final[use])[0, 1])
        if np.isfinite(r) and abs(r) < 1 and n_pat > 3:
            corr.append({"study": lab, "n": n_pat, "r": r, "z": float(np.arctanh(r)), "v": 1.0 / (n_pat - 3)})
    res, msgs = pool_fits(fits, "early_alliance", options, "early alliance → outcome")
    per = per_study_frame(fits)
    per.loc[per["status"] == "failed", "term"] = "early_alliance"
    beta = TwoStageResult(per_study=per, pooled={EARLY_DIRECTION: res} if res is not None else {},
                          fits={(f.study, EARLY_DIRECTION): f for f in fits}, options=o, messages=tuple(msgs),
                          pooled_term="early_alliance")
    cf = pd.DataFrame(corr, columns=["study", "n", "r", "z", "v"])
    cf["study"] = cf["study"].astype("string")
    pooled_r, r_est, r_lo, r_hi = None, np.nan, np.nan, np.nan
    if len(cf):
        pooled_r = meta.random_effects(cf["z"].to_numpy(), cf["v"].to_numpy(), method=options.pooling_method,
                                       test=options.test, labels=list(cf["study"]))
        r_est, r_lo, r_hi = (float(np.tanh(x)) for x in (pooled_r.estimate, pooled_r.ci_low, pooled_r.ci_high))
    settings = {"early_sessions": early_sessions, "early_window": early_window, "outcome": outcome,
                "outcome_session": outcome_session, "outcome_column": outcome_column,
                "standardize": standardize, "lagged_window_used": not independent}
    return EarlyResult(beta=beta, correlations=cf, pooled_r=pooled_r, r_estimate=r_est, r_ci_low=r_lo,
                       r_ci_high=r_hi, settings=settings)


def early_alliance_outcome(df: pd.DataFrame, early_sessions: int = 3, standardize: bool = True,
                           options: LagOptions | None = None, **choices):
    """The partial-β part of :func:`early_outcome` (a :class:`analysis.pipeline.TwoStageResult`);
    ``choices`` are its keyword-only options (early_window, outcome, outcome_session, outcome_column).
    Kept importable as ``analysis.pipeline.early_alliance_outcome``.

    >>> from analysis.simulate import simulate_collection
    >>> res = early_alliance_outcome(simulate_collection(k=2, n_patients=40, seed=1).data)
    >>> res.pooled["early_alliance_to_outcome"].k
    2
    """
    return early_outcome(df, early_sessions, standardize, options, **choices).beta
