"""What two stages share (METHODS §5–§7): the result of a two-stage analysis and the stage-2 pooling of
stage-1 fits. :mod:`analysis.pipeline` (lagged effects) and :mod:`analysis.early` (early alliance → outcome)
both build on it, one floor down from either.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from analysis.lagged import LagOptions, StudyFit
from analysis.meta import random_effects

__all__ = ["TwoStageResult", "per_study_frame", "pool_fits"]

_PER_STUDY_COLS = [
    "study", "direction", "effect", "term", "estimate", "se", "ci_low", "ci_high", "pvalue",
    "n_patients", "n_pairs", "status", "message",
]


@dataclass(frozen=True, eq=False)
class TwoStageResult:
    """Result of :func:`two_stage` (or :func:`early_alliance_outcome`).

    * ``per_study``: tidy table, one row per study × direction × term, columns
      ``study, direction, effect, term, estimate, se, ci_low, ci_high, pvalue,
      n_patients, n_pairs, status ("ok" | "warning" | "failed"), message``.
      ``effect`` is ``"within-patient"`` or ``"total"`` (centering none /
      grand_mean: the ``within`` term is then the total effect). A failed study
      has one ``within`` row with missing estimates and the reason.
    * ``pooled``: direction → :class:`analysis.meta.MetaResult` of the
      ``within`` term (the pooled term is ``pooled_term``).
    * ``pooled_terms``: (direction, term) → MetaResult of *every* stage-1
      term (within, between, prior terms, interactions, covariates), pooled
      on first access.
    * ``fits``: (study, direction) → :class:`analysis.lagged.StudyFit`.
    * ``messages``: plain-language notes (exclusions, k = 1, …).

    >>> from analysis import LagOptions, simulate_collection, two_stage
    >>> res = two_stage(simulate_collection(k=3, n_patients=30, seed=2).data, LagOptions(pooling_method="DL"))
    >>> res.pooled["alliance_to_symptoms"].k, list(res.to_frame().columns[:4])
    (3, ['study', 'direction', 'effect', 'term'])
    """

    per_study: pd.DataFrame
    pooled: dict
    fits: dict
    options: LagOptions
    messages: tuple = ()
    pooled_term: str = "within"

    def to_frame(self) -> pd.DataFrame:
        """Pooled term per study plus one ``Pooled`` row per direction.

        Columns as ``per_study`` plus ``k``, ``tau2``, ``i2``, ``pi_low``,
        ``pi_high`` (pooled rows only) and ``row`` (``"study"``/``"pooled"``).
        """
        ps = self.per_study
        rows = ps.loc[ps["term"] == self.pooled_term].copy()
        rows["row"] = "study"
        extra = []
        for direction, m in self.pooled.items():
            eff = rows.loc[rows["direction"] == direction, "effect"]
            # k = 1: nothing was pooled, so the row repeats the study's own estimate, CI and p exactly
            # (the meta-analysis' normal-theory interval would contradict the study's row above it).
            own = rows.loc[(rows["direction"] == direction) & (rows["study"].astype(str) == str(m.labels[0]))]
            src = own.iloc[0] if m.k == 1 and len(own) else None
            extra.append(
                {
                    "study": "Pooled" if m.k > 1 else "Pooled (k = 1, not pooled)",
                    "direction": direction,
                    "effect": eff.iloc[0] if len(eff) else "",
                    "term": self.pooled_term,
                    "estimate": m.estimate if src is None else src["estimate"],
                    "se": m.se if src is None else src["se"],
                    "ci_low": m.ci_low if src is None else src["ci_low"],
                    "ci_high": m.ci_high if src is None else src["ci_high"],
                    "pvalue": m.pvalue if src is None else src["pvalue"],
                    "n_patients": int(np.nansum(m.n_patients)) if m.n_patients is not None else np.nan,
                    "n_pairs": int(np.nansum(m.n_pairs)) if m.n_pairs is not None else np.nan,
                    "status": "ok" if m.converged else "warning",
                    "message": "; ".join(m.messages),
                    "row": "pooled",
                    "k": m.k,
                    "tau2": m.tau2,
                    "i2": m.i2,
                    "pi_low": m.pi_low,
                    "pi_high": m.pi_high,
                }
            )
        out = pd.concat([rows, pd.DataFrame(extra)], ignore_index=True) if extra else rows
        for c in ("k", "tau2", "i2", "pi_low", "pi_high"):
            if c not in out:
                out[c] = np.nan
        out["study"] = out["study"].astype("string")
        return out.reset_index(drop=True)

    def terms(self, direction: str) -> tuple:
        """Every stage-1 term (except the intercept) estimated in at least one study of ``direction``,
        in model order: the terms :attr:`pooled_terms` can pool."""
        out = []
        for (_study, d), f in self.fits.items():
            if d == direction:
                out.extend(t for t in f.terms if t != "intercept" and t not in out)
        return tuple(out)

    @cached_property
    def pooled_terms(self) -> dict:
        """(direction, term) → :class:`analysis.meta.MetaResult`: every stage-1 term pooled across
        the studies that estimated it, as the pooled term (METHODS §6); computed on first access.
        Terms no study could estimate are absent; notes in :attr:`pooled_term_messages`."""
        out, notes = {}, {}
        for d in dict.fromkeys(dirn for _s, dirn in self.fits):
            fits = [f for (_s, dirn), f in self.fits.items() if dirn == d]
            for term in self.terms(d):
                if term == self.pooled_term and d in self.pooled:
                    out[(d, term)] = self.pooled[d]
                    continue
                res, msgs = pool_fits(fits, term, self.options, f"{d.replace('_', ' ')}, {term}")
                notes[(d, term)] = tuple(msgs)
                if res is not None:
                    out[(d, term)] = res
        object.__setattr__(self, "_term_notes", notes)
        return out

    @property
    def pooled_term_messages(self) -> dict:
        """(direction, term) → notes of its pooling (studies left out, k = 1)."""
        self.pooled_terms  # noqa: B018 (computes the notes)
        return self._term_notes

    def summary(self) -> str:
        """One sentence per direction (the meta module's summary)."""
        return " ".join(f"{d.replace('_', ' ')}: {m.summary()}" for d, m in self.pooled.items())


def per_study_frame(fits: list[StudyFit]) -> pd.DataFrame:
    """The tidy per-study table of :class:`TwoStageResult` (one row per fit and term; a failed fit: one row)."""
    cols = {c: [] for c in _PER_STUDY_COLS}
    for f in fits:
        msg = " ".join(f.messages)
        failed = f.status == "failed" or not f.terms
        cd = f.coef_data
        nrow = 1 if failed else len(cd["term"])
        cols["study"].append([f.study] * nrow)
        cols["direction"].append([f.direction] * nrow)
        cols["effect"].append([f.effect] * nrow)
        cols["term"].append(["within"] if failed else list(cd["term"]))
        for c in ("estimate", "se", "ci_low", "ci_high", "pvalue"):
            cols[c].append(np.full(1, np.nan) if failed else cd[c])
        cols["n_patients"].append(np.full(nrow, f.n_patients, dtype=np.int64))
        cols["n_pairs"].append(np.full(nrow, f.n_pairs, dtype=np.int64))
        cols["status"].append(["failed" if failed else f.status] * nrow)
        cols["message"].append([msg] * nrow)
    out = {}
    for c, parts in cols.items():
        if c in ("estimate", "se", "ci_low", "ci_high", "pvalue"):
            out[c] = np.concatenate(parts) if parts else np.zeros(0)
        elif c in ("n_patients", "n_pairs"):
            out[c] = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        else:
            out[c] = pd.array([x for p in parts for x in p], dtype="string")
    return pd.DataFrame(out, columns=_PER_STUDY_COLS)


def _failure_summary(left: list[StudyFit], n_names: int = 5, n_reasons: int = 2) -> str:
    """Why studies failed, said once: the most common reasons with their counts and the first few names
    (a collection where 200 of 200 studies fail gets one readable sentence, not 200 names)."""
    reasons = Counter((f.messages[0] if f.messages else "no usable estimate") for f in left)
    top = reasons.most_common(n_reasons)
    why = "; ".join(f"{r.rstrip('.')} ({n} {'study' if n == 1 else 'studies'})" for r, n in top)
    if len(reasons) > n_reasons:
        why += f"; {len(reasons) - n_reasons} other reasons"
    names = [str(f.study) for f in left]
    shown = ", ".join(names[:n_names]) + (f" and {len(names) - n_names} more" if len(names) > n_names else "")
    return f"Reason: {why}. {'Study' if len(names) == 1 else 'Studies'}: {shown}."


def pool_fits(fits: list[StudyFit], term: str, options: LagOptions, label: str):
    """Random-effects pooling of ``term`` over the usable fits; (MetaResult | None, messages)."""
    use = [f for f in fits if f.status != "failed" and term in f.terms and np.isfinite(f.coef(term)["se"])]
    use = [f for f in use if f.coef(term)["se"] > 0]
    msgs = []
    absent = [f for f in fits if f.status != "failed" and term not in f.terms]
    if absent:
        names = [str(f.study) for f in absent]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        msgs.append(f"{label}: {len(absent)} of {len(fits)} studies could not estimate this term (constant in the "
                    f"study) and were left out of pooling ({shown}).")
    left = [f for f in fits if f not in use and f not in absent]
    if left:
        why = _failure_summary(left)
        if not use:
            msgs.append(f"{label}: no study could be fitted ({len(left)} of {len(fits)}), so nothing was pooled. "
                        f"{why}")
            return None, msgs
        msgs.append(f"{label}: {len(left)} of {len(fits)} studies could not be fitted and were left out of "
                    f"pooling. {why}")
    if not use:
        msgs.append(f"{label}: no study could be fitted, so nothing was pooled.")
        return None, msgs
    yi = np.array([f.coef(term)["estimate"] for f in use])
    vi = np.array([f.coef(term)["se"] ** 2 for f in use])
    res = random_effects(
        yi,
        vi,
        method=options.pooling_method,
        test=options.test,
        labels=[f.study for f in use],
        n_patients=[f.n_patients for f in use],
        n_pairs=[f.n_pairs for f in use],
    )
    if len(use) == 1:
        msgs.append(f"{label}: only one study could be used (k = 1), so nothing was pooled.")
    return res, msgs
