"""Alliance ruptures, sudden gains and reliable change (METHODS §9–§11).

One module per METHODS section, all re-exported here (``from analysis import events``):
``rupture`` (§9 criteria, dips, summaries), ``chance`` (§9 chance reference), ``gains`` and
``gain_alliance`` (§10), ``change`` (§11), ``outcomes`` (§9/§10 relation to outcome) and
``readers`` (result objects for the page and reports), over ``_base`` (shared input checks,
the reliable change value).

All functions take the canonical long data of METHODS §1 (columns ``study``,
``patient``, ``session``, ``alliance``, ``symptoms``, optional
``therapist_alliance``; key = (study, patient, session)); lower symptoms are
better. Missing values (NaN) in a value column mean "not observed": they are
never imputed and never used in a mean, SD or difference.

Public API
----------
ruptures(df, criterion="default", k, sd, detrend, rater, pre_level,
         item, item_threshold, item_rule)                               §9
RUPTURE_CRITERIA / RuptureCriterion / DEFAULT_K / robust_sd             §9
rupture_summary(flags, rule="any")                                    §9
rupture_chance(df, criterion, ..., n_sim=100, seed=1) -> RuptureChance  §9 chance reference
rupture_item_chance(flags, n_sim=100, seed=1) -> RuptureChance          §9 ... with "dip and item"
rupture_chance_curve(df, criterion, sd, detrend, rater, ...).at(k)      §9 the same, simulated once for all k
simulate_rupture_data(n_patients, n_sessions, plant, dip_sd, seed)    §9 calibration design
sudden_gains(df, cutoff, reliability, sd, first_only, pairing,
             kind="gain"|"loss", better="lower"|"higher")             §10
sudden_gain_summary(gains)                                            §10
alliance_around_gains(df, gains, rater) / alliance_trajectory(...)    §10
reliable_change(df, reliability, sd, norms, cutoff, method="JT")      §11 (RC_METHODS)
baseline_sd(df, column="symptoms")                                   §10/§11 inputs
standardize_within_study(df, columns)                                 §2
clinical_cutoff_c(M_clinical, SD_clinical, M_functional, SD_functional)§11
outcome_by_pattern(df, flags_or_gains, event=None, measure="SMD", ...) §9/§10
outcome_by_repair(df, flags, rule, measure) -> RepairOutcome          §9
dropout_models(df, predictors, criterion) -> DropoutModels           §9a (logistic + Cox)
rupture_analysis / gain_analysis / gain_cutoffs /
reliable_change_analysis                                              results for readers
SCL90R_GSI_GERMAN_CUTOFF = 0.57                                       §11

Floating-point comparisons with "≥" / "≤" allow a relative tolerance of 1e-9
so that values that are equal on paper (e.g. an alliance exactly at the
threshold) are treated as equal.
"""

from __future__ import annotations

from analysis.events._base import (
    baseline_sd,
    clinical_cutoff_c,
    reliable_change_cutoff,
    standardize_within_study,
)
from analysis.events.chance import (
    RuptureChance,
    RuptureChanceCurve,
    rupture_chance,
    rupture_chance_curve,
    rupture_item_chance,
)
from analysis.events.change import (
    HA_CRIT,
    RC_METHODS,
    SCL90R_GSI_GERMAN_CUTOFF,
    reliable_change,
)
from analysis.events.dropout import (
    DROPOUT_PREDICTORS,
    DropoutModels,
    dropout_models,
)
from analysis.events.gain_alliance import (
    AllianceAroundGains,
    AllianceTrajectory,
    alliance_around_gains,
    alliance_trajectory,
)
from analysis.events.gains import (
    GAIN_CONVENTIONS,
    T_CRIT_SUDDEN_GAINS,
    sudden_gain_summary,
    sudden_gains,
)
from analysis.events.outcomes import (
    OutcomeByPattern,
    RepairOutcome,
    outcome_by_pattern,
    outcome_by_repair,
)
from analysis.events.readers import (
    TABLE_LABELS,
    GainAnalysis,
    ReliableChangeAnalysis,
    RuptureAnalysis,
    extra_numeric_columns,
    gain_analysis,
    gain_cutoffs,
    reliable_change_analysis,
    rupture_analysis,
)
from analysis.events.rupture import (
    CEILING_WARN,
    CRITERION_LABELS,
    DEFAULT_K,
    RUPTURE_CRITERIA,
    STUDY_SD_K,
    RuptureCriterion,
    model_warnings,
    robust_sd,
    rupture_summary,
    ruptures,
    simulate_rupture_data,
)

__all__ = [
    "DROPOUT_PREDICTORS",
    "DropoutModels",
    "dropout_models",
    "CRITERION_LABELS",
    "DEFAULT_K",
    "STUDY_SD_K",
    "CEILING_WARN",
    "model_warnings",
    "RC_METHODS",
    "RUPTURE_CRITERIA",
    "SCL90R_GSI_GERMAN_CUTOFF",
    "T_CRIT_SUDDEN_GAINS",
    "GAIN_CONVENTIONS",
    "AllianceAroundGains",
    "OutcomeByPattern",
    "RepairOutcome",
    "RuptureChance",
    "RuptureChanceCurve",
    "RuptureCriterion",
    "AllianceTrajectory",
    "GainAnalysis",
    "HA_CRIT",
    "ReliableChangeAnalysis",
    "RuptureAnalysis",
    "alliance_around_gains",
    "alliance_trajectory",
    "TABLE_LABELS",
    "extra_numeric_columns",
    "gain_analysis",
    "gain_cutoffs",
    "reliable_change_analysis",
    "rupture_analysis",
    "baseline_sd",
    "clinical_cutoff_c",
    "outcome_by_pattern",
    "outcome_by_repair",
    "reliable_change",
    "reliable_change_cutoff",
    "robust_sd",
    "rupture_chance",
    "rupture_chance_curve",
    "rupture_item_chance",
    "rupture_summary",
    "ruptures",
    "simulate_rupture_data",
    "standardize_within_study",
    "sudden_gain_summary",
    "sudden_gains",
]
