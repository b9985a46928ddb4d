"""Stage 1 of the two-stage IPD meta-analysis: lagged within-patient models.

One module per step, all re-exported here (``from analysis import lagged``): ``options``
(:class:`LagOptions`, declared once; :func:`model_terms`, :func:`effect_label`), ``rows`` (data → model
rows: :class:`StudyData`, :class:`ModelRows`, :func:`prepare`, :func:`pairing_counts`), ``fit`` (the
per-study model: :class:`StudyFit`, :func:`fit_studies`, :func:`fit_study`) and ``view``
(:func:`patient_view`).

Implements ``docs/METHODS.md`` §2 (standardization), §3 (centering), §4 (lags)
and §5 (the per-study lagged model). Public API:

* :class:`LagOptions` — every analysis choice, validated.
* :func:`prepare_studies` → :class:`StudyData` (window, sort, per-study
  standardization, covariates; built once) and :func:`fit_studies` (every
  study of one direction → :class:`StudyFit` list): the stage-1 API that
  :mod:`analysis.pipeline` uses. :func:`model_rows` → :class:`ModelRows`.
* :func:`prepare` — the exact model rows (predictor, its centre, within and
  between parts, prior outcome, outcome at t + L) that enter the model.
* :func:`patient_view` — one patient's model rows and observed series (figure input).
* :func:`pairing_counts` — pairs per study under each pairing mode (§4).
* :func:`fit_study` — fit one study, returning a :class:`StudyFit`;
  :func:`failed_fit` — the result of a study that cannot be fitted.

The model (§5), for direction X → Y with lag L::

    Y_i,t+L = b0 + bW·X^w_it + bB·X^b_i + aW·Y^w_it + aB·Y^b_i
              [+ c·X^b_i·X^w_it] [+ c_Y·Y^b_i·X^w_it] [+ d·time_it]
              [+ Σ_j (g_j·C_ij + h_j·C_ij·X^w_it)] + u_i [+ v_i·time_it] + e_i,t+L

with terms named ``intercept, within, between, prior_within, prior_between,
interaction, interaction_outcome, time`` and, per patient-level covariate
column C (or dummy ``C: level``), ``C`` and ``within × C``. For centering ``none``/``grand_mean`` the model is
``Y_i,t+L = b0 + b·X_it + a·Y_it + u_i + e``; the coefficient b is still
called ``within`` but it is a *total* (within + between) effect and is
labelled so (``StudyFit.effect == "total"``).

Inference. Mixed models (``estimator="mixed"``) are fitted by REML with the
solver in :mod:`analysis.mixed` (with ``df_method="satterthwaite"`` by
:func:`analysis.lmm.fit_lmm`, t tests with lmerTest's Satterthwaite df;
otherwise random intercept; with
``time_trend="fixed_random"`` also a random slope of time, correlated, by the
same package's own 2-D solver — no statsmodels). Tests and CIs use the normal
(Wald z) distribution with the model-based SE, as lme4's ``summary`` does:
stage 1 passes only estimate and SE to the meta-analysis, and with the
hundreds of pairs per study typical here a t reference (Satterthwaite df ≈
N − p for within terms) changes nothing visible; for very small studies the z
intervals of *between* terms are somewhat too narrow. The fixed-effects
estimator (``estimator="fixed_effects"``) is OLS on patient-demeaned model
rows with CR1 cluster-robust SEs by patient and t tests on G − 1 df (the usual
CR1 convention); between-patient terms are not estimable there.
"""

from __future__ import annotations

from analysis.lagged.fit import StudyFit, coef_data, failed_fit, fit_studies, fit_study
from analysis.lagged.options import (
    _VARS,  # noqa: F401
    CENTERINGS,
    CORE_COLUMNS,
    DF_METHODS,
    DIRECTIONS,
    ESTIMATORS,
    M_CENTER,
    M_LAG,
    M_STAGE1,
    M_STD,
    MIN_PATIENTS,
    PAIRINGS,
    POOLING_METHODS,
    STANDARDIZE_BY,
    TERMS,
    TESTS,
    TIME_TRENDS,
    LagOptions,
    _check_direction,  # noqa: F401 (imported from analysis.lagged by analysis.onestage)
    effect_label,
    model_terms,
)
from analysis.lagged.rows import (
    ModelRows,
    StudyData,
    covariate_is_numeric,
    model_rows,
    pairing_counts,
    prepare,
    prepare_studies,
    row_names,
)
from analysis.lagged.view import PatientView, patient_view

__all__ = [
    "CENTERINGS",
    "CORE_COLUMNS",
    "DF_METHODS",
    "DIRECTIONS",
    "ESTIMATORS",
    "MIN_PATIENTS",
    "M_CENTER",
    "M_LAG",
    "M_STAGE1",
    "M_STD",
    "PAIRINGS",
    "POOLING_METHODS",
    "STANDARDIZE_BY",
    "TERMS",
    "TESTS",
    "TIME_TRENDS",
    "LagOptions",
    "ModelRows",
    "PatientView",
    "StudyData",
    "StudyFit",
    "coef_data",
    "covariate_is_numeric",
    "effect_label",
    "failed_fit",
    "fit_studies",
    "fit_study",
    "model_rows",
    "model_terms",
    "pairing_counts",
    "patient_view",
    "prepare",
    "prepare_studies",
    "row_names",
]
