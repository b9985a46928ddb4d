""""Reproduce a paper" presets: which demo to load and every option the paper set (issue 11 §5).

A :class:`Preset` is pure data: the demo file, the options per page (a dict per page key, e.g.
``{"lagged": {...}}`` with the keys of the Lagged/Pooled option panel, ``ui/options.py``) and a
checklist of what was set and why, quoting the paper. :data:`PRESETS` is the registry;
:func:`register` adds one (e.g. the convergence presets), :func:`get` looks one up.
:meth:`Preset.lag_options` turns the ``"lagged"`` options into :class:`analysis.lagged.LagOptions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from analysis.lagged import LagOptions

__all__ = ["PRESETS", "Preset", "get", "page_presets", "register"]


def _freeze(d: dict):
    return MappingProxyType({k: (_freeze(v) if isinstance(v, dict) else v) for k, v in d.items()})


@dataclass(frozen=True)
class Preset:
    """One paper's analysis: ``options`` maps a page key to that page's option dict; ``checklist`` is a
    tuple of ``(setting, value, why)`` rows shown to the user."""

    key: str
    title: str
    seed: str
    demo_file: str
    options: MappingProxyType
    checklist: tuple
    expected: str = ""

    def __post_init__(self):
        object.__setattr__(self, "options", _freeze(dict(self.options)))
        object.__setattr__(self, "checklist", tuple(tuple(r) for r in self.checklist))
        for row in self.checklist:
            if len(row) != 3:
                raise ValueError("Each checklist row must be (setting, value, why).")

    def page_options(self, page: str) -> dict:
        """A mutable copy of the options for one page (empty when the preset sets none there)."""
        return dict(self.options.get(page, {}))

    def lag_options(self) -> LagOptions:
        """The ``"lagged"`` options as :class:`LagOptions` (window → ``sessions``)."""
        o = self.page_options("lagged")
        window = o.pop("window", None)
        o["directions"] = tuple(o.get("directions", LagOptions().directions))
        fields = set(LagOptions().to_dict())
        return LagOptions(sessions=tuple(window) if window else None, **{k: v for k, v in o.items() if k in fields})

    def checklist_frame(self):
        import pandas as pd

        return pd.DataFrame(list(self.checklist), columns=["setting", "value", "why"])


PRESETS: dict[str, Preset] = {}


def register(preset: Preset) -> Preset:
    """Add a preset to the registry (a key may be registered once)."""
    if preset.key in PRESETS:
        raise ValueError(f"A preset with key {preset.key!r} is already registered.")
    PRESETS[preset.key] = preset
    return preset


def get(key: str) -> Preset:
    try:
        return PRESETS[key]
    except KeyError:
        raise ValueError(f"Unknown preset {key!r}; known: {', '.join(PRESETS)}.") from None


register(Preset(
    key="ipd_ma_000",
    title="IPD-MA: alliance ⇄ symptoms in sessions 1–7 (Flückiger et al. 2020)",
    seed="000",
    demo_file="ipd_17_studies.csv",
    options={"lagged": {
        "window": (1, 7), "centering": "person_mean", "lag": 1, "pairing": "session",
        "directions": ["alliance_to_symptoms", "symptoms_to_alliance"], "standardize": True,
        "control_prior_outcome": True, "time_trend": "none", "cross_level": True, "outcome_moderator": True,
        "estimator": "mixed", "pooling_method": "REML", "test": "z",
    }},
    checklist=(
        ("Data", "IPD-MA demo: 17 studies, sessions 1–7", "17 primary studies, 5,350 participants."),
        ("Sessions analysed", "1–7", "“lagged session-by-session … effects … from Sessions 1 to 7”."),
        ("Centering", "person-mean (within / between)", "“within-patient coefficients”: each patient's own "
         "mean is removed; the between part enters as a covariate."),
        ("Lag", "1 session", "“the subsequent session”."),
        ("Directions", "both", "Reciprocal effects: alliance → symptoms and symptoms → alliance."),
        ("Standardize within study", "on", "“standardized session-by-session within-patient coefficients”, "
         "so studies with different instruments can be pooled."),
        ("Control for the prior outcome", "on", "Lagged models predict the next session above the current one."),
        ("Cross-level interactions", "predictor's and outcome's patient means × within effect",
         "“Cross-level interactions indicated that higher alliances and lower symptoms positively impacted the "
         "relation”: both the alliance level and the symptom level moderate the within effect."),
        ("Stage 1 estimator", "random-intercept model (REML)", "Two-stage IPD-MA: a multilevel model per study."),
        ("Stage 2", "random effects, REML τ², z test", "“meta-analyzed these coefficients by using "
         "random-effects models”."),
    ),
    expected="Both within effects negative and significant when pooled (reciprocal); the cross-level "
             "interaction (alliance level × within alliance) negative when pooled.",
))

register(Preset(
    key="icbt_004",
    title="Within/between: ICBT for social anxiety, total, within and between (Shalom et al.)",
    seed="004",
    demo_file="icbt_within_between.csv",
    options={"lagged": {
        "window": (1, 11), "centering": "person_mean", "lag": 1, "pairing": "session",
        "directions": ["alliance_to_symptoms", "symptoms_to_alliance"], "standardize": False,
        "control_prior_outcome": True, "time_trend": "none", "cross_level": False, "estimator": "mixed",
        "pooling_method": "REML", "test": "z", "df_method": "satterthwaite",
    }},
    checklist=(
        ("Data", "ICBT demo: one trial, 182 patients, 11 weekly measurements", "n = 182, weekly SPIN and WAI-SR "
         "for 11 weeks."),
        ("Sessions analysed", "1–11", "All weeks; person means use every observation."),
        ("Centering", "person-mean", "“centered alliance ratings around the average for each individual” "
         "(Hamaker & Muthén)."),
        ("Lag", "1 week", "“symptoms at time t + 1”."),
        ("Standardize within study", "off", "The paper reports raw SPIN / WAI-SR coefficients (B = −0.038)."),
        ("Control for the prior outcome", "on", "“above and beyond social anxiety symptoms” at t."),
        ("Missing weeks", "not imputed", "“Missing data … were not imputed”; pairs need week t + 1."),
        ("Models", "total, within, between (section below)", "The three models of the paper, REML with "
         "Satterthwaite df (t(1458) in the paper)."),
        ("Directions", "both", "The reverse direction (symptoms → alliance) is in the supplement: not significant."),
        ("Tests of the study models", "t with Satterthwaite df", "The paper reports t(df), e.g. t(1458), "
         "from lmerTest."),
    ),
    expected="Total alliance → symptoms negative and significant; within negative and significant; between "
             "(person means) positive and significant; within symptoms → alliance not significant.",
))


# --------------------------------------------------------------------------- convergence (seed 001)
# Page key "convergence": ``rules`` (analysis.convergence.SampleRules), ``options`` (keyword arguments of
# analysis.convergence.growth_models and dyad_scores) and ``description``. The paper log-transformed its
# skewed score; the presets use the scale-aware Yeo–Johnson transform instead (transform_score).
def _convergence_presets():
    from analysis.convergence import SampleRules

    common = {"score_method": "multilevel", "discrepancy": "absolute", "transform": "yeo_johnson",
              "therapist_level": "lrt", "covariates": ()}
    register(Preset(
        key="convergence_001_study1",
        title="Convergence, Study 1: BDI-II, sessions 1–14",
        seed="001",
        demo_file="dyads_bdi.csv",
        options={"convergence": {
            "description": "96 dyads rated after each of 14 sessions; convergence from the multilevel growth "
                           "curves of all WAI ratings; BDI-II over sessions 1–14; therapist level decided in the "
                           "null model.",
            "rules": SampleRules(), "options": {"time": "session", **common}}},
        checklist=(
            ("time", "session number", "Study 1 modelled BDI-II over the session number"),
            ("convergence score", "multilevel growth curves (empirical Bayes)", "Table I's note"),
            ("discrepancy", "absolute |P − T|", "convergence = the discrepancy shrinking over time"),
            ("transform", "Yeo–Johnson", "the paper transformed its skewed score"),
            ("therapist level", "decided once in the null model (boundary LRT)", "one three-level decision"),
        ),
        expected="Raters do not converge on average; convergence does not predict symptom change; alliance "
                 "development × time is the planted effect (demo_data/README.md).",
    ))
    register(Preset(
        key="convergence_001_study2",
        title="Convergence, Study 2: GSI at sessions 1/3/12/20/end",
        seed="001",
        demo_file="dyads_gsi.csv",
        options={"convergence": {
            "description": "Dyads with ≥ 20 sessions and complete WAI at sessions 3, 12 and 20 plus a final GSI; "
                           "convergence from WAI at 3, 12, 20; GSI at 1, 3, 12, 20 and termination, time as "
                           "assessment occasion (0–4).",
            "rules": SampleRules(score_sessions=(3, 12, 20), symptom_sessions=(1, 3, 12, 20), symptom_final=True,
                                 min_sessions=20, complete_sessions=(3, 12, 20), complete_final=True,
                                 length_column="n_sessions"),
            "options": {"time": "occasion", **common}}},
        checklist=(
            ("sample", "≥ 20 sessions; WAI complete at 3, 12, 20; final GSI", "Study 2's inclusion rules"),
            ("score window", "WAI at sessions 3, 12, 20", "the convergence score's occasions"),
            ("symptom series", "GSI at sessions 1, 3, 12, 20 and termination", "symptom-only occasions kept"),
            ("time", "assessment occasion 0–4", "Study 2 coded time by occasion"),
            ("transform", "Yeo–Johnson", "the paper transformed its skewed score"),
        ),
        expected="Convergence does not predict symptom change; it relates to lower symptom severity.",
    ))


_convergence_presets()


def page_presets(page: str) -> dict[str, Preset]:
    """The presets that set options on one page (e.g. ``"convergence"``), by key."""
    return {k: p for k, p in PRESETS.items() if page in p.options}
