"""Options of the event outcome models added by issue 22, declared once (`analysis.options`, CONTRIBUTING
"The one way to add an option"): the sudden-gain convention (METHODS §10) and the dropout model's
predictors (METHODS §9a). Widgets, URL parameters and validation messages derive from these declarations."""

from __future__ import annotations

from dataclasses import dataclass

from analysis.options import Declared, declared, option

__all__ = ["DropoutOptions", "GainOptions"]


class _Lookup:
    @classmethod
    def declaration(cls, name: str):
        """The declared `analysis.options.Option` named ``name``."""
        return next(o for o in declared(cls) if o.name == name)

M_GAINS = "10-sudden-gains-review-tang-and-de-rubeis-1999"
M_DROPOUT = "9a-dropout-as-an-outcome-seeds-002-and-003"


@dataclass(frozen=True)
class GainOptions(_Lookup, Declared):
    """Sudden-gain options declared here (METHODS §10)."""

    convention: str = option(
        "choice", "published", choices=("published", "suddengains"), label="Conventions", widget="radio",
        url="sg_conv", methods=M_GAINS, r=False,
        labels={"published": "Published criteria (Tang & DeRubeis, 1999)",
                "suddengains": "As the R package suddengains (qt critical values, strict reversal)"},
        help="Published (default): critical t 2.776 / 3.182 / 4.303, a reversal when ≥ 50% of the gain is lost. "
             "As suddengains, to match R results: qt(.975, n1 + n2 − 2), a reversal only strictly beyond the "
             "half-way point, any rise meets a loss's criterion 2.")


@dataclass(frozen=True)
class DropoutOptions(_Lookup, Declared):
    """Dropout-model options declared here (METHODS §9a)."""

    predictors: tuple = option(
        "choices", ("early_alliance", "rupture", "repair"),
        choices=("early_alliance", "mean_alliance", "rupture", "repair"),
        label="Predictors of dropout (logistic model)", url="do_preds", methods=M_DROPOUT, r=False,
        labels={"early_alliance": "Early alliance (mean of the first 3 rated sessions)",
                "mean_alliance": "Mean alliance (all rated sessions)",
                "rupture": "At least one rupture", "repair": "At least one repaired rupture"},
        help="Logistic regression of dropout per study, log odds ratios pooled by random effects; the Cox model "
             "of time to dropout always uses the current (time-varying) alliance.")
