"""Per-study pooling of the convergence effect across studies (METHODS §8)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.convergence._common import _check
from analysis.convergence.growth import growth_models


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

    >>> import pandas as pd
    >>> from analysis.simulate import simulate_dyads
    >>> two = pd.concat([simulate_dyads(30, study=s, seed=i).data for i, s in enumerate(("A", "B"))])
    >>> res = pooled_convergence(two)
    >>> [type(x).__name__ for x in res]
    ['DataFrame', 'MetaResult']
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
