"""Sample rules and windows of the convergence analysis (METHODS §8, "Sample rules and windows")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.convergence._common import _check
from analysis.formatting import count, num


@dataclass(frozen=True)
class SampleRules:
    """Which dyads and occasions enter the convergence analysis (METHODS §8, sample rules).

    * ``score_sessions``: sessions whose P and T ratings enter the dyad scores (None = all);
    * ``symptom_sessions``: sessions of the symptom series (None = all);
      ``symptom_final`` adds each dyad's last observed symptom score after them (termination, T2);
    * ``min_sessions`` / ``max_sessions``: keep dyads whose treatment length is ≥ / ≤ the value;
      the treatment length is ``length_column`` (a dyad-level column, e.g. number of sessions)
      or else the dyad's highest session number in the file;
    * ``complete_sessions``: keep dyads with P, T and symptoms all observed at each of these
      sessions; ``complete_final``: and with a symptom score after the last of them.

    Rules are applied in this order: length (min, max), complete occasions, windows.
    """

    score_sessions: tuple | None = None
    symptom_sessions: tuple | None = None
    symptom_final: bool = False
    min_sessions: int | None = None
    max_sessions: int | None = None
    complete_sessions: tuple | None = None
    complete_final: bool = False
    length_column: str | None = None


@dataclass(frozen=True, eq=False)
class SampleResult:
    """Data after :class:`SampleRules`: ``data`` (ratings outside the score window and symptoms
    outside the symptom window set to missing, empty rows dropped), ``counts`` (rule, removed,
    remaining: dyads removed by each rule, in order) and ``excluded`` (study, patient, reason)."""

    data: pd.DataFrame
    counts: pd.DataFrame
    excluded: pd.DataFrame
    rules: SampleRules

    def to_frame(self) -> pd.DataFrame:
        return self.counts.copy()

    def summary(self) -> str:
        parts = [f"{r.rule}: {count(r.removed)} removed" for r in self.counts.itertuples() if r.rule != "all dyads"]
        n = int(self.counts["remaining"].iloc[-1]) if len(self.counts) else 0
        return f"{count(n)} dyads kept" + (" (" + "; ".join(parts) + ")" if parts else "") + "."


def _sessions(v, name):
    if v is None:
        return None
    try:
        out = tuple(sorted({int(x) for x in v}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be whole session numbers.") from exc
    if not out:
        raise ValueError(f"{name} is empty; leave it unset to use every session.")
    return out


def apply_sample_rules(df: pd.DataFrame, rules: SampleRules | None = None) -> SampleResult:
    """Apply :class:`SampleRules` (inclusion filters and time windows) to long dyadic data.

    Returns a :class:`SampleResult`; its ``data`` feed :func:`dyad_scores` and
    :func:`growth_models` unchanged. Symptom-only occasions (e.g. session 1 or the
    termination assessment without alliance ratings) stay in the symptom series.

    >>> from analysis.convergence import SampleRules
    >>> from analysis.simulate import simulate_dyads
    >>> res = apply_sample_rules(simulate_dyads(40, seed=1).data, SampleRules(min_sessions=10))
    >>> res.data["patient"].nunique() + len(res.excluded), type(res).__name__
    (40, 'SampleResult')
    """
    rules = rules or SampleRules()
    d = _check(df, ("alliance", "therapist_alliance"))
    has_sym = "symptoms" in d.columns
    score_s = _sessions(rules.score_sessions, "score_sessions")
    sym_s = _sessions(rules.symptom_sessions, "symptom_sessions")
    comp_s = _sessions(rules.complete_sessions, "complete_sessions")
    if (sym_s or comp_s or rules.symptom_final or rules.complete_final) and not has_sym:
        raise ValueError("The symptom rules need a 'symptoms' column.")
    key = d["study"].astype(str) + "\x1f" + d["patient"].astype(str)
    dyads = pd.unique(key)
    if rules.length_column:
        c = rules.length_column
        if c not in d.columns:
            raise ValueError(f"The treatment-length column '{c}' is not in the data.")
        vals = pd.to_numeric(d[c], errors="coerce")
        length = vals.groupby(key).max()
    else:
        length = d["session"].groupby(key).max()
    keep = pd.Series(True, index=dyads)
    counts = [("all dyads", 0, len(dyads))]
    reasons = []

    def apply(bad: pd.Series, rule: str, why):
        bad = bad.reindex(keep.index).fillna(False).astype(bool) & keep
        for k in keep.index[bad]:
            reasons.append((k, why(k)))
        keep[bad] = False
        counts.append((rule, int(bad.sum()), int(keep.sum())))

    if rules.min_sessions is not None:
        m = int(rules.min_sessions)
        apply(~(length >= m), f"at least {m} sessions", lambda k: f"treatment length {num(length.get(k), 0)} < {m}")
    if rules.max_sessions is not None:
        m = int(rules.max_sessions)
        apply(~(length <= m), f"at most {m} sessions", lambda k: f"treatment length {num(length.get(k), 0)} > {m}")
    if comp_s:
        full = d["alliance"].notna() & d["therapist_alliance"].notna() & d["symptoms"].notna()
        ok = pd.Series(True, index=keep.index)
        for s_ in comp_s:
            ok &= (full & (d["session"] == s_)).groupby(key).any().reindex(keep.index).fillna(False)
        apply(~ok, "complete at sessions " + ", ".join(map(str, comp_s)),
              lambda k: "incomplete P, T or symptoms at sessions " + ", ".join(map(str, comp_s)))
    if rules.complete_final:
        last = max(comp_s or score_s or sym_s or (0,))
        fin = (d["symptoms"].notna() & (d["session"] > last)).groupby(key).any().reindex(keep.index).fillna(False)
        apply(~fin, f"symptom score after session {last}", lambda k: f"no symptom score after session {last}")
    out = d[key.map(keep).to_numpy()].copy()
    okey = key[key.map(keep).to_numpy()]
    if score_s is not None:
        outside = ~out["session"].isin(score_s)
        out.loc[outside, ["alliance", "therapist_alliance"]] = np.nan
    if has_sym and (sym_s is not None or rules.symptom_final):
        in_win = out["session"].isin(sym_s) if sym_s is not None else pd.Series(True, index=out.index)
        if rules.symptom_final:
            lim = max(sym_s) if sym_s else -np.inf
            cand = out["symptoms"].notna() & (out["session"] > lim)
            last_row = out[cand].groupby(okey[cand])["session"].transform("max")
            fin = pd.Series(False, index=out.index)
            fin.loc[last_row.index] = out.loc[last_row.index, "session"] == last_row
            in_win = in_win | fin
        out.loc[~in_win, "symptoms"] = np.nan
    cols = ["alliance", "therapist_alliance"] + (["symptoms"] if has_sym else [])
    out = out[out[cols].notna().any(axis=1)].reset_index(drop=True)
    exc = pd.DataFrame({
        "study": pd.array([k.split("\x1f")[0] for k, _ in reasons], dtype="string"),
        "patient": pd.array([k.split("\x1f")[1] for k, _ in reasons], dtype="string"),
        "reason": [r for _, r in reasons],
    })
    return SampleResult(data=out, counts=pd.DataFrame(counts, columns=["rule", "removed", "remaining"]),
                        excluded=exc, rules=rules)
