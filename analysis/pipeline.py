"""The two-stage IPD meta-analysis pipeline (METHODS §5–§7).

* :func:`two_stage` — stage 1 (:mod:`analysis.lagged`, one lagged model per
  study and direction) and stage 2 (:func:`analysis.meta.random_effects` on the
  studies' ``within`` coefficients and their SEs, v_k = SE²).
* :func:`multiverse` — the same under every centering, with and without a
  fixed time trend: "does my conclusion depend on centering?".
* :func:`early_alliance_outcome` — §7, final symptoms on early alliance per
  study, pooled (implemented in :mod:`analysis.early`, re-exported here).

Studies that cannot be fitted are reported (``status == "failed"`` and the
reason) and left out of pooling; the others still run. With one usable study
nothing is pooled (the meta module returns that study's own estimate and says
so); with none, ``pooled`` has no entry for that direction.
"""

from __future__ import annotations

import pandas as pd

from analysis.early import EARLY_DIRECTION, early_alliance_outcome  # noqa: F401 (re-exported; lives in analysis/early.py)
from analysis.lagged import CENTERINGS, LagOptions, StudyData, effect_label, fit_studies, prepare_studies
from analysis.twostage import TwoStageResult, per_study_frame, pool_fits

_pool, _per_study_frame = pool_fits, per_study_frame  # the names before analysis.twostage (kept importable)

__all__ = ["TwoStageResult", "compare_estimators", "early_alliance_outcome", "multiverse", "pooled_std_all",
           "two_stage"]

def _two_stage_base(data: StudyData, options: LagOptions) -> TwoStageResult:
    fits: dict = {}
    pooled: dict = {}
    messages: list[str] = []
    all_fits = []
    sem_fits = None
    if options.stage1 != "lmm":
        from analysis.dynamics import stage1_fits

        sem_fits = stage1_fits(data, options, options.stage1)
    for direction in options.directions:
        dfits = sem_fits[direction] if sem_fits is not None else fit_studies(data, options, direction)
        for f in dfits:
            fits[(f.study, direction)] = f
        all_fits.extend(dfits)
        res, msgs = pool_fits(dfits, "within", options, direction.replace("_", " "))
        messages.extend(msgs)
        if res is not None:
            pooled[direction] = res
    if effect_label(options) == "total" and options.stage1 == "lmm":
        messages.append(
            f"Centering '{options.centering}': the 'within' coefficient is the total (within + between) "
            "lagged effect, not a purely within-patient effect (METHODS §3, §5)."
        )
    return TwoStageResult(
        per_study=per_study_frame(all_fits),
        pooled=pooled,
        fits=fits,
        options=options,
        messages=tuple(messages),
    )


def two_stage(df: pd.DataFrame, options: LagOptions | None = None) -> TwoStageResult:
    """Two-stage IPD meta-analysis of lagged alliance ⇄ symptom effects (METHODS §5, §6).

    Stage 1: for every study and direction in ``options.directions``, the
    lagged model of :func:`analysis.lagged.fit_study` (standardization,
    centering and pairing per study as in :func:`analysis.lagged.prepare`).
    Stage 2: ``analysis.meta.random_effects(yi = within estimates, vi = SE²,
    method = options.pooling_method, test = options.test)``, over the studies
    whose fit did not fail.

    >>> from analysis.simulate import simulate_collection
    >>> res = two_stage(simulate_collection(k=3, n_patients=30, seed=2).data, LagOptions(pooling_method="DL"))
    >>> res.pooled["alliance_to_symptoms"].k
    3
    """
    options = options or LagOptions()
    return _two_stage_base(prepare_studies(df, options), options)


def multiverse(df: pd.DataFrame, options: LagOptions | None = None) -> pd.DataFrame:
    """The within effect under every centering × {no, fixed} time trend, per study and pooled.

    All other choices come from ``options``; ``cross_level`` is switched off
    for centerings without a between part, and ``time_trend`` takes the values
    ``"none"`` and ``"fixed"``. One row per centering × time trend × direction
    × (study or pooled): ``centering, time_trend, direction, effect, study,
    row ("study"/"pooled"), estimate, se, ci_low, ci_high, pvalue, n_patients,
    n_pairs, status, k, tau2, i2, message``.

    >>> from analysis.simulate import simulate_collection
    >>> t = multiverse(simulate_collection(k=2, n_patients=30, seed=1).data)
    >>> sorted(t["centering"].unique())[:2]
    ['detrended', 'grand_mean']
    """
    options = options or LagOptions()
    base = prepare_studies(df, options.replace(time_trend="none", cross_level=False, centering="person_mean",
                                               outcome_moderator=False))
    parts = []
    for centering in CENTERINGS:
        for trend in ("none", "fixed"):
            o = options.replace(
                centering=centering,
                time_trend=trend,
                cross_level=options.cross_level and centering in ("person_mean", "detrended"),
                outcome_moderator=options.outcome_moderator and centering in ("person_mean", "detrended"),
            )
            res = _two_stage_base(base, o)
            t = res.to_frame()
            t.insert(0, "centering", centering)
            t.insert(1, "time_trend", trend)
            parts.append(t)
    out = pd.concat(parts, ignore_index=True)
    cols = [
        "centering", "time_trend", "direction", "effect", "study", "row", "estimate", "se", "ci_low", "ci_high",
        "pvalue", "n_patients", "n_pairs", "status", "k", "tau2", "i2", "message",
    ]
    return out[cols]


def compare_estimators(df: pd.DataFrame, options=None, *, stage1=("lmm", "riclpm", "dpm"), progress=None,
                       cancelled=None) -> dict:
    """The two-stage analysis under each stage-1 estimator (``options`` otherwise unchanged; the
    ``"lmm"`` entry uses the options' own lagged model) → ``{label: TwoStageResult}`` with labels
    "Hybrid LMM", "RI-CLPM", "DPM" (lives here, one floor above :mod:`analysis.dynamics`; the input of
    :func:`analysis.plots_dynamics.estimator_comparison_figure`)."""
    from analysis.dynamics import COMPARISON_LABELS
    from analysis.progress import checkpoint

    options = options or LagOptions()
    out = {}
    for i, s in enumerate(stage1):
        checkpoint(progress, cancelled, i / len(stage1))
        out[COMPARISON_LABELS[s]] = two_stage(df, options.replace(stage1=s))
    checkpoint(progress, cancelled, 1.0)
    return out


def pooled_std_all(results: dict) -> pd.DataFrame:
    """The pooled *standardized* within-patient cross-lags of the SEM stage-1 estimators (lavaan
    ``std.all`` averaged over waves per study, term ``within_std``; METHODS §15.1), pooled by the same
    stage 2 as the raw ones: one row per estimator × direction with ``estimator, direction, k, estimate,
    se, ci_low, ci_high, pvalue, tau2, i2``. ``results``: ``{label: TwoStageResult}`` (e.g. from
    :func:`compare_estimators`); results without the term (the mixed models) are skipped."""
    rows = []
    for label, res in results.items():
        for direction in res.options.directions:
            m = res.pooled_terms.get((direction, "within_std"))
            if m is None:
                continue
            rows.append({"estimator": label, "direction": direction, "k": m.k, "estimate": m.estimate,
                         "se": m.se, "ci_low": m.ci_low, "ci_high": m.ci_high, "pvalue": m.pvalue,
                         "tau2": m.tau2, "i2": m.i2})
    return pd.DataFrame(rows, columns=["estimator", "direction", "k", "estimate", "se", "ci_low", "ci_high",
                                       "pvalue", "tau2", "i2"])
