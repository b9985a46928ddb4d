"""Relation of ruptures and sudden gains to outcome, pooled across studies (METHODS §9/§10, §6)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import special, stats

from analysis.events._base import _KEY, _check_frame
from analysis.events.change import _pre_post
from analysis.events.rupture import rupture_summary

# --------------------------------------------------------------------------
# §9 / §10 relation to outcome, pooled across studies (§6)
# --------------------------------------------------------------------------


_RUPTURE_EVENTS = {"rupture": "any_rupture", "repair": "any_repair",
                   "rupture_repair": "rupture_repair", "all_repaired": "all_repaired"}


@dataclass(frozen=True)
class OutcomeByPattern:
    """Pre–post symptom change, patients with vs without an event (§9, §10).

    ``per_study`` has one row per study; ``meta`` is the
    ``analysis.meta.MetaResult`` of the random-effects pooling of the
    included studies' ``yi``/``vi`` (None when nothing could be pooled; see
    ``messages``). ``per_patient`` lists the patients used.
    """

    event: str
    measure: str
    per_study: pd.DataFrame
    per_patient: pd.DataFrame = field(repr=False, compare=False)
    meta: object = None
    messages: tuple = ()

    def summary(self, what: str = "the pattern") -> str:
        """The comparison in words: the one study's effect, or the pooled effect."""
        from analysis.formatting import count, estimate_ci, p_text, signed

        eff = "Hedges' g" if self.measure == "SMD" else "mean difference"
        ps = self.per_study
        if len(ps) == 1:
            r = ps.iloc[0]
            s = (f"No pooling with one study: symptoms changed on average by {signed(r.mean_change_event)} "
                 f"points in the {count(r.n_event)} patients with {what} and by "
                 f"{signed(r.mean_change_no_event)} in the {count(r.n_no_event)} without.")
            if r.included:
                s += (f" {eff} = {estimate_ci(r.yi, r.ci_low, r.ci_high)} (95% CI), {p_text(r.pvalue)}: "
                      f"patients with {what} improved {'more' if r.yi < 0 else 'less'}.")
            return s
        if self.meta is None or self.meta.k < 2:
            return "No pooling: fewer than two studies have at least two patients with and two without it."
        m = self.meta
        return (f"Pooled over {m.k} studies ({eff}, with minus without {what}): "
                f"{estimate_ci(m.estimate, m.ci_low, m.ci_high)} (95% CI), {p_text(m.pvalue)}; on average "
                f"patients with {what} improved {'more' if m.estimate < 0 else 'less'}.")

    def to_frame(self) -> pd.DataFrame:
        """Per-study table plus a final pooled row (when pooled)."""
        t = self.per_study.copy()
        if self.meta is not None:
            pooled = {
                "study": "Pooled (random effects)",
                "included": True,
                "yi": float(self.meta.estimate),
                "se": float(self.meta.se),
                "ci_low": float(self.meta.ci_low),
                "ci_high": float(self.meta.ci_high),
                "pvalue": float(self.meta.pvalue),
                "n_event": int(t.loc[t["included"], "n_event"].sum()),
                "n_no_event": int(t.loc[t["included"], "n_no_event"].sum()),
            }
            t = pd.concat([t, pd.DataFrame([pooled])], ignore_index=True)
        return t


def _hedges_j(m: float) -> float:
    """Exact small-sample correction J(m) = Γ(m/2) / (√(m/2)·Γ((m − 1)/2))."""
    return math.exp(special.gammaln(m / 2) - 0.5 * math.log(m / 2) - special.gammaln((m - 1) / 2))


def _events_per_patient(x: pd.DataFrame, event, rule, who):
    """(per-patient frame with study, patient, event bool; event name)."""
    if not isinstance(x, pd.DataFrame):
        raise ValueError(
            f"{who}: flags_or_gains must be the DataFrame from ruptures(), rupture_summary() "
            f"(per patient) or sudden_gains()."
        )
    if "study" not in x.columns or "patient" not in x.columns:
        raise ValueError(f"{who}: flags_or_gains needs columns 'study' and 'patient'.")
    if "rupture" in x.columns and "threshold" in x.columns:
        pp, _ = rupture_summary(x, rule=rule)
        kind = "ruptures"
    elif "any_rupture" in x.columns:
        pp = x.copy()
        kind = "ruptures"
    elif "is_gain" in x.columns and "pregain_session" in x.columns:
        kind = "gains"
        if event not in (None, "gain"):
            raise ValueError(f"{who}: with sudden_gains() output the event is 'gain', got {event!r}.")
        g = x.assign(study=x["study"].astype(str), patient=x["patient"].astype(str))
        pp = (g.groupby(_KEY, sort=True)["is_gain"].agg(lambda s: bool(s.astype(bool).any()))
              .rename("event").reset_index())
        return pp, "gain"
    else:
        kind = "generic"
    if kind == "ruptures":
        event = "rupture" if event is None else event
        if event not in _RUPTURE_EVENTS:
            raise ValueError(
                f"{who}: event must be one of {', '.join(_RUPTURE_EVENTS)} for rupture flags, "
                f"got {event!r}."
            )
        colname = _RUPTURE_EVENTS[event]
        if colname not in pp.columns:
            raise ValueError(f"{who}: the per-patient table lacks column {colname!r}.")
        if "eligible" in pp.columns:
            pp = pp[pp["eligible"].astype(bool)]
        out = pd.DataFrame({"study": pp["study"].astype(str), "patient": pp["patient"].astype(str),
                            "event": pp[colname]})
    else:
        if event is None or event not in x.columns:
            raise ValueError(
                f"{who}: flags_or_gains is not output of ruptures()/rupture_summary()/"
                f"sudden_gains(); then event= must name a True/False column of it."
            )
        if x.duplicated(_KEY).any():
            raise ValueError(f"{who}: a per-patient event table must have one row per patient.")
        out = pd.DataFrame({"study": x["study"].astype(str), "patient": x["patient"].astype(str),
                            "event": x[event]})
    out = out[out["event"].notna()]
    vals = out["event"].to_numpy()
    if not all(isinstance(v, (bool, np.bool_)) or v in (0, 1) for v in vals):
        raise ValueError(f"{who}: the event column must hold True/False values.")
    out["event"] = vals.astype(bool)
    return out.reset_index(drop=True), event


def _study_contrast(study, s: pd.DataFrame, measure: str, zq: float) -> dict:
    """One study's change with vs without the event: MD, Hedges' g and their variances."""
    x1 = s.loc[s["event"], "change"].to_numpy(float)
    x2 = s.loc[~s["event"], "change"].to_numpy(float)
    n1, n2 = len(x1), len(x2)
    m1 = float(x1.mean()) if n1 else np.nan
    m2 = float(x2.mean()) if n2 else np.nan
    s1 = float(x1.std(ddof=1)) if n1 >= 2 else np.nan
    s2 = float(x2.std(ddof=1)) if n2 >= 2 else np.nan
    md = m1 - m2
    var_md = s1 ** 2 / n1 + s2 ** 2 / n2 if n1 >= 2 and n2 >= 2 else np.nan
    smd = var_smd = np.nan
    if n1 >= 2 and n2 >= 2:
        sp = math.sqrt(((n1 - 1) * s1 ** 2 + (n2 - 1) * s2 ** 2) / (n1 + n2 - 2))
        if sp > 0:
            mdf = n1 + n2 - 2
            smd = _hedges_j(mdf) * md / sp
            var_smd = 1 / n1 + 1 / n2 + smd ** 2 / (2 * (n1 + n2))
    yi, vi = (smd, var_smd) if measure == "SMD" else (md, var_md)
    ok = bool(np.isfinite(yi) and np.isfinite(vi) and vi > 0)
    note = ""
    if not ok:
        note = ("needs ≥ 2 patients with and ≥ 2 without the event"
                if (n1 < 2 or n2 < 2) else "no variation in change scores")
    se = math.sqrt(vi) if ok else np.nan
    return {
        "study": study, "n_event": n1, "n_no_event": n2,
        "mean_change_event": m1, "mean_change_no_event": m2,
        "sd_change_event": s1, "sd_change_no_event": s2,
        "md": md, "var_md": var_md, "smd": smd, "var_smd": var_smd,
        "yi": yi, "vi": vi, "se": se,
        "ci_low": yi - zq * se if ok else np.nan,
        "ci_high": yi + zq * se if ok else np.nan,
        "pvalue": float(2 * stats.norm.sf(abs(yi / se))) if ok else np.nan,
        "included": ok, "note": note,
    }


def outcome_by_pattern(df: pd.DataFrame, flags_or_gains: pd.DataFrame, event: str | None = None,
                       measure: str = "SMD", rule: str = "any", method: str = "REML",
                       test: str = "z", level: float = 0.95) -> OutcomeByPattern:
    """Relation of an event pattern to outcome, per study and pooled (§9, §10, §6).

    Per patient, ``change = x_post − x_pre`` (last minus first observed
    symptom score; negative = improvement; patients with < 2 values are left
    out). The event per patient comes from ``flags_or_gains``:

    * `ruptures` output or the per-patient table of `rupture_summary`:
      ``event`` = "rupture" (default; any rupture), "repair" (≥ 1 repaired),
      "rupture_repair" (by ``rule``, see `rupture_summary`) or
      "all_repaired"; patients with < 3 alliance values are left out;
    * `sudden_gains` output: event = at least one pair with ``is_gain``
      (patients with ≥ 1 candidate pair are included);
    * any per-patient table with study, patient and a True/False column
      named by ``event``.

    Per study with n1 patients with and n2 without the event (means M, SDs s
    with ddof = 1):

    * ``md = M1 − M2``, ``var_md = s1²/n1 + s2²/n2``;
    * ``smd`` = Hedges' g = J·(M1 − M2)/s_p,
      ``s_p = √(((n1 − 1)s1² + (n2 − 1)s2²)/(n1 + n2 − 2))``,
      ``J = Γ(m/2)/(√(m/2)·Γ((m − 1)/2))``, m = n1 + n2 − 2;
      ``var_smd = 1/n1 + 1/n2 + g²/(2(n1 + n2))`` (metafor ``escalc``
      "SMD"/"MD" definitions).

    Per-study ``se = √vi``, Wald CI ``yi ± z·se`` at ``level`` and z-test p.
    A study is pooled when n1 ≥ 2, n2 ≥ 2 and the variance is > 0. The
    chosen ``measure`` ("SMD", default — studies use different instruments —
    or "MD") gives ``yi``, ``vi``, pooled by
    ``analysis.meta.random_effects(yi, vi, method=method, test=test)``
    (METHODS §6, REML by default). A negative pooled value means patients
    with the event improved more.
    """
    who = "outcome_by_pattern"
    if measure not in ("SMD", "MD"):
        raise ValueError(f"{who}: measure must be 'SMD' or 'MD', got {measure!r}.")
    if rule not in ("any", "all"):
        raise ValueError(f"{who}: rule must be 'any' or 'all', got {rule!r}.")
    data = _check_frame(df, ["symptoms"], who)
    ev, event = _events_per_patient(flags_or_gains, event, rule, who)
    pp = _pre_post(data)
    both = pp.merge(ev, on=_KEY, how="inner")
    messages = []
    n_nochange = int(both["change"].isna().sum())
    if n_nochange:
        messages.append(f"{n_nochange} patient(s) with < 2 symptom values left out.")
    n_unmatched = len(ev) - len(both)
    if n_unmatched:
        messages.append(f"{n_unmatched} patient(s) of the event table are not in the data.")
    both = both[both["change"].notna()].reset_index(drop=True)

    zq = float(stats.norm.ppf(0.5 + level / 2)) if 0 < level < 1 else np.nan
    if not np.isfinite(zq):
        raise ValueError(f"{who}: level must be between 0 and 1, got {level!r}.")
    per_study = pd.DataFrame([_study_contrast(study, both[both["study"] == study], measure, zq)
                              for study in sorted(set(data["study"]))])
    for r in per_study.itertuples():
        if not r.included:
            messages.append(f"Study {r.study} not pooled: {r.note}.")
    inc = per_study[per_study["included"]]
    meta_res = None
    if len(inc) == 0:
        messages.append("No study could be pooled.")
    else:
        from analysis.meta import random_effects  # written by another module owner

        try:
            meta_res = random_effects(inc["yi"].to_numpy(float), inc["vi"].to_numpy(float),
                                      method=method, test=test, level=level,
                                      labels=list(inc["study"]))
        except ValueError as exc:
            messages.append(f"Pooling not possible: {exc}")
    return OutcomeByPattern(event=event, measure=measure, per_study=per_study,
                            per_patient=both, meta=meta_res, messages=tuple(messages))



_REPAIR_GROUPS = ("rupture–repair", "unrepaired rupture", "no rupture")
_REPAIR_CONTRASTS = (("rupture–repair", "no rupture"), ("unrepaired rupture", "no rupture"),
                     ("rupture–repair", "unrepaired rupture"))


@dataclass(frozen=True)
class RepairOutcome:
    """Rupture–repair vs unrepaired rupture vs no rupture, on outcome and dropout (§9).

    ``groups``: per study and group, patients, mean and SD of the symptom change (last minus
    first score) and, when the data have a ``dropout`` column, the share who dropped out.
    ``contrasts``: each pair of groups as an `OutcomeByPattern` (per-study effect sizes, pooled
    by random effects, METHODS §6).
    """

    rule: str
    groups: pd.DataFrame
    contrasts: dict = field(repr=False, compare=False)
    has_dropout: bool = False

    def to_frame(self) -> pd.DataFrame:
        return self.groups.copy()

    def contrast_frame(self) -> pd.DataFrame:
        """One row per contrast: the pooled (or single-study) effect, CI and p."""
        rows = []
        for name, res in self.contrasts.items():
            if res.meta is not None:
                est, lo, hi, p, k = res.meta.estimate, res.meta.ci_low, res.meta.ci_high, res.meta.pvalue, res.meta.k
            else:
                inc = res.per_study[res.per_study["included"]]
                if len(inc) == 1:
                    r = inc.iloc[0]
                    est, lo, hi, p, k = r.yi, r.ci_low, r.ci_high, r.pvalue, 1
                else:
                    est = lo = hi = p = np.nan
                    k = 0
            rows.append({"contrast": name, "measure": res.measure, "k_studies": k, "estimate": est,
                         "ci_low": lo, "ci_high": hi, "pvalue": p})
        return pd.DataFrame(rows)


def _dropout(df: pd.DataFrame, who: str) -> pd.DataFrame | None:
    """Per patient ``dropout`` (1.0/0.0) from a dropout or a last_session column (or None)."""
    if not isinstance(df, pd.DataFrame):
        return None
    key = pd.DataFrame({"study": df["study"].astype(str).to_numpy(), "patient": df["patient"].astype(str).to_numpy()})
    for name in ("dropout", "last_session"):
        if name in df.columns:
            col = df[name]
            if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
                raise ValueError(f"{who}: the '{name}' column must be numeric"
                                 + (" (0/1 or True/False)." if name == "dropout" else " (a session number)."))
            key[name] = col.astype(float).to_numpy()
            if name == "dropout":
                return key.groupby(_KEY)["dropout"].max().reset_index()
            rated = df[[c for c in ("alliance", "symptoms", "therapist_alliance") if c in df.columns]].notna().any(axis=1)
            key["seen"] = np.where(rated.to_numpy(), df["session"].to_numpy(float), np.nan)
            per = key.groupby(_KEY).agg(last=("seen", "max"), planned=("last_session", "max")).reset_index()
            per["dropout"] = np.where(per["planned"].notna() & per["last"].notna(),
                                      (per["last"] < per["planned"]).astype(float), np.nan)
            return per[_KEY + ["dropout"]]
    return None


def outcome_by_repair(df: pd.DataFrame, flags: pd.DataFrame, rule: str = "any", measure: str = "SMD",
                      method: str = "REML") -> RepairOutcome:
    """Compare patients with rupture–repair, with unrepaired ruptures and without ruptures (§9).

    Groups (classified patients only): rupture–repair (`rupture_summary`'s
    ``rupture_repair`` under ``rule``), unrepaired rupture (a rupture, not rupture–repair),
    no rupture. Outcome: symptom change, last minus first observed score (negative =
    improvement); each contrast via `outcome_by_pattern` (Hedges' g or MD, pooled per §6).
    Dropout (its share per group and study): from a ``dropout`` column (1/True = dropped out;
    the patient's maximum), else from a ``last_session`` column holding the session treatment
    was planned to end with (per patient or study): dropped out = the patient's last observed
    session (any rating) is earlier.
    """
    who = "outcome_by_repair"
    pp, _ = rupture_summary(flags, rule=rule)
    pp = pp[pp["eligible"].astype(bool)].copy()
    rup = pp["any_rupture"].astype(bool)
    rr = pp["rupture_repair"].astype(bool)
    pp["group"] = np.where(rr, _REPAIR_GROUPS[0], np.where(rup, _REPAIR_GROUPS[1], _REPAIR_GROUPS[2]))
    data = _check_frame(df, ["symptoms"], who)
    change = _pre_post(data)[["study", "patient", "change"]]
    g = pp[["study", "patient", "group"]].merge(change, on=_KEY, how="left")
    dd = _dropout(df, who)
    has_dropout = dd is not None
    if has_dropout:
        g = g.merge(dd, on=_KEY, how="left")
    rows = []
    for (study, grp), s in g.groupby(["study", "group"], sort=True):
        ch = s["change"].dropna()
        row = {"study": study, "group": grp, "n": len(s), "n_change": len(ch),
               "mean_change": float(ch.mean()) if len(ch) else np.nan,
               "sd_change": float(ch.std(ddof=1)) if len(ch) >= 2 else np.nan}
        if has_dropout:
            row["dropout_share"] = float(s["dropout"].mean()) if s["dropout"].notna().any() else np.nan
        rows.append(row)
    contrasts = {}
    for a, b in _REPAIR_CONTRASTS:
        sub = g[g["group"].isin([a, b])]
        table = pd.DataFrame({"study": sub["study"], "patient": sub["patient"], "event": sub["group"] == a})
        name = f"{a} vs {b}"
        if table.empty:
            continue
        contrasts[name] = outcome_by_pattern(data, table, event="event", measure=measure, method=method)
    return RepairOutcome(rule=rule, groups=pd.DataFrame(rows), contrasts=contrasts, has_dropout=has_dropout)
