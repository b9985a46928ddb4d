"""Patient–therapist alliance convergence and symptom growth models (METHODS §8).

Implements the Convergence paper (seed ``001_…``). One module per part of METHODS §8:

* :mod:`~analysis.convergence.scores` — per-session descriptives (:func:`trajectories`) and per-dyad
  convergence scores (:func:`dyad_scores`, :func:`transform_score`; OLS or empirical-Bayes lines);
* :mod:`~analysis.convergence.samples` — sample rules and windows (:func:`apply_sample_rules`);
* :mod:`~analysis.convergence.growth` — symptom growth Models 1–3, random-effect inference and the
  paper's Table I layout (:func:`growth_models`, :func:`models_table`);
* :mod:`~analysis.convergence.dyadic` — the one-step stacked dyadic model (:func:`dyadic_model`);
* :mod:`~analysis.convergence.pooling` — per-study pooling of the convergence effect
  (:func:`pooled_convergence`);
* :mod:`~analysis.convergence.congruence` — dyadic congruence models that do not depend on whether the
  rating lines cross: response surface analysis (:func:`response_surface`) and the actor–partner
  interdependence model (:func:`apim`);
* :mod:`~analysis.convergence.power` — the preparatory linear vs log-linear comparison
  (:func:`trajectory_shape`) and simulation-based power (:func:`convergence_power`).

Every public name is importable from ``analysis.convergence`` (users' scripts do so).
"""

from __future__ import annotations

from analysis.convergence.congruence import APIMResult, ResponseSurface, apim, response_surface
from analysis.convergence.dyadic import DyadicResult, dyadic_model
from analysis.convergence.growth import (
    MODEL_PREDICTORS,
    PREDICTORS,
    TERM_LABELS,
    TIMES,
    GrowthModel,
    GrowthResult,
    _model_predictors,
    growth_models,
    models_table,
)
from analysis.convergence.pooling import pooled_convergence
from analysis.convergence.power import PowerResult, ShapeComparison, convergence_power, trajectory_shape
from analysis.convergence.samples import SampleResult, SampleRules, apply_sample_rules
from analysis.convergence.scores import TRANSFORMS, DyadScores, dyad_scores, trajectories, transform_score

__all__ = [
    "APIMResult",
    "ResponseSurface",
    "apim",
    "response_surface",
    "MODEL_PREDICTORS",
    "PREDICTORS",
    "TERM_LABELS",
    "TIMES",
    "TRANSFORMS",
    "DyadScores",
    "DyadicResult",
    "GrowthModel",
    "GrowthResult",
    "PowerResult",
    "SampleResult",
    "SampleRules",
    "ShapeComparison",
    "_model_predictors",
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
