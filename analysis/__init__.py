"""Pure-Python analysis package for session-by-session alliance and symptom data.

No module in this package imports streamlit. Every model is defined in
``METHODS.md`` (shipped beside the project as ``../shared/METHODS.md`` and
summarised in ``docs/METHODS.md``); public functions name the section they
implement.

The front door: every public entry is importable from here (``from analysis import two_stage``),
loaded on first use so that ``import analysis`` stays fast. The modules stay importable too
(``analysis.lagged.LagOptions``, ``analysis.pipeline.two_stage``: downloaded scripts use them).

>>> import analysis
>>> sim = analysis.simulate_collection(k=3, n_patients=40, seed=1)
>>> res = analysis.two_stage(sim.data, analysis.LagOptions(pooling_method="DL"))
>>> sorted(res.pooled)
['alliance_to_symptoms', 'symptoms_to_alliance']
>>> res.pooled["alliance_to_symptoms"].k
3
>>> analysis.random_effects([0.1, 0.3, 0.2], [0.01, 0.02, 0.015], method="DL").k
3
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: public entry → the module that defines it (METHODS section in brackets)
_ENTRIES = {
    # data intake (§1)
    "load": "data", "to_canonical": "data", "suggest_mapping": "data", "require_canonical": "data",
    "DataError": "data",
    # options (analysis.options: declared once)
    "Option": "options", "Constraint": "options", "Declared": "options", "clean": "options",
    # stage 1 (§2–§5)
    "LagOptions": "lagged", "prepare": "lagged", "fit_study": "lagged", "pairing_counts": "lagged",
    "patient_view": "lagged",
    # two stages and stage 2 (§6, §7)
    "two_stage": "pipeline", "multiverse": "pipeline", "TwoStageResult": "pipeline",
    "early_alliance_outcome": "early",
    "PoolOptions": "meta", "random_effects": "meta", "random_effects_many": "meta", "meta_regression": "meta",
    "leave_one_out": "meta", "egger_test": "meta",
    # convergence (§8)
    "dyad_scores": "convergence", "growth_models": "convergence", "dyadic_model": "convergence",
    "pooled_convergence": "convergence", "apply_sample_rules": "convergence", "convergence_power": "convergence",
    # events (§9–§11)
    "ruptures": "events", "rupture_chance": "events", "sudden_gains": "events", "reliable_change": "events",
    # decomposition and descriptives (§12, §13)
    "total_within_between": "decomposition",
    # one-stage IPD, latent-centred dynamic models, the estimator check, few studies (§6b–§6d, §15)
    "one_stage": "onestage", "OneStageOptions": "onestage", "DynamicOptions": "dynamics",
    "EstimatorCheckOptions": "estimator_check", "SmallKOptions": "bayes_meta",
    # the other methods' declared options
    "DecompositionOptions": "decomposition", "ConvergenceOptions": "convergence.options",
    "CongruenceOptions": "convergence.congruence", "RuptureOptions": "events.options", "GainOptions": "events.options",
    "ReliableChangeOptions": "events.options", "OutcomeOptions": "events.options", "DropoutOptions": "events.dropout",
    "TeachingParams": "teaching",
    # screening, simulation, scripts
    "screen_study": "screening", "simulate_study": "simulate", "simulate_collection": "simulate",
    "r_script": "report", "reproduction_script": "report", "html_report": "report",
}

__all__ = ["__version__", *sorted(_ENTRIES)]


def __getattr__(name: str):
    mod = _ENTRIES.get(name)
    if mod is None:
        raise AttributeError(f"module 'analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"analysis.{mod}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_ENTRIES))
