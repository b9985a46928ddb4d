"""Results for readers (the page, reports): tables and sentences of §9–§11."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from analysis.events._base import (
    _per_study,
    _positive_number,
    _reliability,
    baseline_sd,
    reliable_change_cutoff,
)
from analysis.events.chance import RuptureChance, rupture_chance, rupture_item_chance
from analysis.events.change import HA_CRIT, RC_METHODS, reliable_change
from analysis.events.gains import sudden_gain_summary, sudden_gains
from analysis.events.rupture import RuptureCriterion, model_warnings, rupture_summary, ruptures

# --------------------------------------------------------------------------
# results for readers (the page, reports): tables and sentences, §9–§11
# --------------------------------------------------------------------------

_CANONICAL = {"study", "patient", "session", "alliance", "symptoms", "therapist_alliance", "therapist"}


#: Reader-facing column names of the `to_frame` tables (percent columns end in "(%)").
TABLE_LABELS = {
    "study": "Study", "n_patients": "Patients", "n_eligible": "Classified", "n_rupture": "Rupture (n)",
    "prev_rupture": "Rupture (%)", "chance_expected": "Expected by chance (%)",
    "chance_sim_low": "Chance 2.5% (%)", "chance_sim_high": "Chance 97.5% (%)", "chance_p_excess": "p (excess)",
    "n_repair": "Repair (n)", "prev_repair": "Repair (%)", "n_rupture_repair": "Rupture–repair (n)",
    "prev_rupture_repair": "Rupture–repair (%)", "repair_given_rupture": "Repaired among ruptured (%)",
    "cutoff": "Cut-off", "reliability": "r", "sd": "SD", "n_with_gain": "With an event (n)",
    "prev_gain": "With an event (%)", "n_gains": "Events (n)", "n_reversed": "Reversed (n)",
    "prev_reversal": "Reversed (%)", "mean_magnitude": "Mean size",
    "smallest_reliable_change": "Smallest reliable change",
    **{f"{p}_{c}": f"{c.capitalize()} ({'n' if p == 'n' else '%'})" for p in ("n", "prev")
       for c in ("recovered", "improved", "unchanged", "deteriorated")},
}


def extra_numeric_columns(df: pd.DataFrame) -> list[str]:
    """Numeric columns beyond the canonical ones (METHODS §1): candidates for a rupture item."""
    return [str(c) for c in df.columns if c not in _CANONICAL
            and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
            and df[c].notna().any()]


def _share(n, N) -> float:
    return n / N if N else np.nan


def _with_total(t: pd.DataFrame, counts: list[str], shares: dict) -> pd.DataFrame:
    """Append an "All studies" row: counts summed, shares = numerator / denominator."""
    if len(t) < 2:
        return t.reset_index(drop=True)
    tot = {c: t[c].sum() for c in counts}
    tot["study"] = "All studies"
    for c, (num_, den) in shares.items():
        tot[c] = _share(tot[num_], tot[den])
    return pd.concat([t, pd.DataFrame([tot])], ignore_index=True)


@dataclass(frozen=True)
class RuptureAnalysis:
    """Ruptures and repairs with their chance reference (METHODS §9), ready to show.

    ``flags`` (per session, `ruptures`), ``per_patient`` / ``per_study`` (`rupture_summary`),
    ``chance`` (`rupture_chance`, None when not computed). `to_frame` is the prevalence
    table (one row per study, plus "All studies" with several).
    """

    criterion: RuptureCriterion
    rater: str
    rule: str
    item: str | None
    flags: pd.DataFrame = field(repr=False, compare=False)
    per_patient: pd.DataFrame = field(repr=False, compare=False)
    per_study: pd.DataFrame = field(repr=False, compare=False)
    chance: RuptureChance | None = None
    messages: tuple = ()

    def to_frame(self) -> pd.DataFrame:
        """The prevalence table (a copy: the caller may change it)."""
        return self._table.copy()

    @cached_property
    def _table(self) -> pd.DataFrame:  # made once per result (a page reads it several times per run)
        ps = self.per_study
        t = ps[["study", "n_patients", "n_eligible", "n_rupture", "n_repair", "n_rupture_repair"]].copy()
        t = _with_total(t, ["n_patients", "n_eligible", "n_rupture", "n_repair", "n_rupture_repair"], {})
        t.insert(4, "prev_rupture", t["n_rupture"] / t["n_eligible"].where(t["n_eligible"] > 0))
        t["prev_repair"] = t["n_repair"] / t["n_eligible"].where(t["n_eligible"] > 0)
        t["prev_rupture_repair"] = t["n_rupture_repair"] / t["n_eligible"].where(t["n_eligible"] > 0)
        t["repair_given_rupture"] = t["n_repair"] / t["n_rupture"].where(t["n_rupture"] > 0)
        if self.chance is not None:
            ch = self.chance.per_study.set_index("study")
            for i, c in enumerate(("expected", "sim_low", "sim_high", "p_excess")):
                t.insert(5 + i, "chance_" + c, t["study"].map(ch[c]).astype(float).to_numpy())
        return t

    @property
    def total(self) -> pd.Series:
        return self._table.iloc[-1].copy()

    def summary(self) -> str:
        from analysis.formatting import count, p_text, percent

        t = self.total
        N, n_r, n_p = int(t["n_eligible"]), int(t["n_rupture"]), int(t["n_repair"])
        s = (f"{percent(_share(n_r, N), 1)} of the {count(N)} classified patients ({count(n_r)}) had at "
             f"least one rupture; {count(n_p)} of them ({percent(_share(n_p, n_r), 1)}) repaired at least "
             f"one rupture later on.")
        if self.chance is not None and np.isfinite(t.get("chance_expected", np.nan)):
            how = ("if each patient's item values fell on random sessions of that patient, alliance as "
                   f"observed; range from {count(self.chance.n_sim)} draws"
                   if self.chance.method == "item_permutation" else
                   f"the same criterion on {count(self.chance.n_sim)} simulated data sets "
                   "with each patient's own level and trend but no ruptures")
            s += (f" Expected by chance ({how}): "
                  f"{percent(t['chance_expected'], 1)} (95% of simulations "
                  f"{percent(t['chance_sim_low'], 1)} to {percent(t['chance_sim_high'], 1)}); "
                  f"{'more' if t['prev_rupture'] > t['chance_sim_high'] else 'not clearly more'} than chance "
                  f"({p_text(t['chance_p_excess'])}).")
        n_few = int(self.per_study["n_too_few"].sum())
        if n_few:
            s += f" {count(n_few)} patient(s) with too few ratings were not classified."
        return s

    @cached_property
    def _memo(self) -> dict:  # per-study lists made once per result (a page asks on every run)
        return {}

    def patients(self, study: str) -> list[tuple[str, str]]:
        """(patient, label) of one study, patients with a rupture first."""
        k = ("patients", str(study))
        if k not in self._memo:
            self._memo[k] = tuple(self._patients(study))
        return list(self._memo[k])

    def _patients(self, study: str):
        from analysis.formatting import count

        pp = self.per_patient[self.per_patient["study"] == str(study)]
        el = pp["eligible"].astype(bool)
        has = pp["any_rupture"].astype("boolean").fillna(False).astype(bool)
        out = []
        for sel in (has, ~has & el, ~el):
            for r in pp[sel].itertuples():
                if not r.eligible:
                    lab = "not classified (too few ratings)"
                elif int(r.n_ruptures) == 0:
                    lab = "no rupture"
                else:
                    lab = f"{count(r.n_ruptures)} rupture(s), {count(r.n_repaired)} repaired"
                out.append((str(r.patient), f"{r.patient} · {lab}"))
        return out

    def patient_note(self, study: str, patient: str) -> str:
        """One patient's ruptures in words (user-derived labels are left to the caller to escape)."""
        k = ("note", str(study), str(patient))
        if k not in self._memo:
            self._memo[k] = self._patient_note(study, patient)
        return self._memo[k]

    def _patient_note(self, study: str, patient: str) -> str:
        from analysis.formatting import num

        p = self.flags[(self.flags["study"] == str(study)) & (self.flags["patient"] == str(patient))]
        if p.empty or not bool(p["eligible"].iloc[0]):
            return "Too few alliance ratings to classify this patient."
        rup = p[p["rupture"].astype("boolean").fillna(False).astype(bool)]
        if rup.empty:
            return "No session is low enough to count as a rupture."
        parts = []
        for r in rup.itertuples():
            if bool(r.repair):
                parts.append(f"session {r.session} (repaired at session {int(r.repair_session)}, back to "
                             f"≥ {num(r.pre_rupture_level)})")
            else:
                parts.append(f"session {r.session} (not repaired: never again ≥ {num(r.pre_rupture_level)})")
        return "Ruptures: " + "; ".join(parts) + "."


def rupture_analysis(df: pd.DataFrame, criterion="default", k=None, sd=None, detrend=None,
                     rater: str = "patient", pre_level: str = "previous", rule: str = "any",
                     item: str | None = None, item_threshold=None, item_rule: str = "or",
                     chance: bool = True, n_sim: int = 100, seed: int = 1) -> RuptureAnalysis:
    """`ruptures` + `rupture_summary` + `rupture_chance` in one result (METHODS §9).

    The chance reference: without an item, alliance dips simulated without ruptures
    (`rupture_chance`); with an item and ``item_rule="and"``, the item's marks at random
    sessions of each patient (`rupture_item_chance`); with "or" or "item alone" None, and a
    message says why no chance level exists.
    """
    flags = ruptures(df, criterion=criterion, k=k, sd=sd, detrend=detrend, rater=rater,
                     pre_level=pre_level, item=item, item_threshold=item_threshold, item_rule=item_rule)
    pp, ps = rupture_summary(flags, rule=rule)
    crit = flags.attrs["criterion"]
    ch, msgs = None, list(model_warnings(flags))
    if chance and item is None:
        ch = rupture_chance(df, criterion=crit, rater=rater, n_sim=n_sim, seed=seed)
        msgs.extend(ch.messages)
    elif chance and item_rule == "and":
        ch = rupture_item_chance(flags, n_sim=n_sim, seed=seed)
        msgs.extend(ch.messages)
    elif chance:
        msgs.append(f"No chance reference with \"{'dip or item' if item_rule == 'or' else 'item alone'}\": an "
                    f"item rating at or above the threshold counts as a rupture by itself, and a rupture "
                    f"rating has no no-rupture model to simulate (unlike alliance dips, which arise from "
                    f"noise too). With \"dip and item\" the page shows how often dips and item marks "
                    f"would coincide by chance.")
    return RuptureAnalysis(criterion=crit, rater=rater, rule=rule, item=item, flags=flags,
                           per_patient=pp, per_study=ps, chance=ch, messages=tuple(msgs))


def gain_cutoffs(df: pd.DataFrame, reliability=0.9, sd=None, cutoff=None,
                 column: str = "symptoms") -> pd.DataFrame:
    """Per-study cut-off of sudden-gain criterion 1 (METHODS §10).

    ``cutoff`` (a number or dict study → number) is used as given; otherwise the reliable
    change value 1.96·√2·SD·√(1 − r) with ``reliability`` and ``sd`` (each a number or dict
    study → number); ``sd=None`` uses each study's baseline SD (`baseline_sd`). Returns study,
    reliability, sd, sd_source ("baseline" / "given" / "—"), cutoff.
    """
    who = "gain_cutoffs"
    base = baseline_sd(df, column)
    studies = list(base["study"])
    if cutoff is not None:
        cut = _per_study(cutoff, studies, "cutoff", who, lambda v: _positive_number(v, "cutoff", who))
        return pd.DataFrame({"study": studies, "reliability": np.nan, "sd": np.nan, "sd_source": "—",
                             "cutoff": [cut[s] for s in studies]})
    rel = _per_study(reliability, studies, "reliability", who, lambda v: _reliability(v, who))
    if sd is None:
        sds = dict(zip(base["study"], base["baseline_sd"]))
        lacking = [s for s in studies if not (np.isfinite(sds[s]) and sds[s] > 0)]
        if lacking:
            raise ValueError(f"The baseline SD cannot be computed for {', '.join(lacking)} (fewer than two "
                             f"patients or no variation); type an SD instead.")
        src = "baseline"
    else:
        sds = _per_study(sd, studies, "sd", who, lambda v: _positive_number(v, "sd", who))
        src = "given"
    return pd.DataFrame({"study": studies, "reliability": [rel[s] for s in studies],
                         "sd": [float(sds[s]) for s in studies], "sd_source": src,
                         "cutoff": [reliable_change_cutoff(sds[s], rel[s]) for s in studies]})


@dataclass(frozen=True)
class GainAnalysis:
    """Sudden gains or losses with their per-study cut-offs (METHODS §10), ready to show."""

    kind: str
    better: str
    first_only: bool
    pairing: str
    cutoffs: pd.DataFrame = field(repr=False, compare=False)
    gains: pd.DataFrame = field(repr=False, compare=False)
    per_patient: pd.DataFrame = field(repr=False, compare=False)
    per_study: pd.DataFrame = field(repr=False, compare=False)

    def to_frame(self) -> pd.DataFrame:
        t = self.per_study.merge(self.cutoffs, on="study", how="left")
        t = t[["study", "cutoff", "reliability", "sd", "n_patients", "n_with_gain", "n_gains", "n_reversed",
               "mean_magnitude"]]
        t = _with_total(t, ["n_patients", "n_with_gain", "n_gains", "n_reversed"], {})
        t["prev_gain"] = t["n_with_gain"] / t["n_patients"].where(t["n_patients"] > 0)
        t["prev_reversal"] = t["n_reversed"] / t["n_gains"].where(t["n_gains"] > 0)
        return t

    def summary(self) -> str:
        from analysis.formatting import count, num, percent

        t = self.to_frame().iloc[-1]
        word = "sudden gain" if self.kind == "gain" else "sudden loss"
        cuts = self.cutoffs["cutoff"].unique()
        cut = (f"a minimum change of {num(cuts[0])} points" if len(cuts) == 1
               else "each study's own minimum change (cut-off column)")
        s = (f"With {cut}, {percent(t['prev_gain'], 1)} of the {count(t['n_patients'])} patients with at "
             f"least one pair of consecutive sessions ({count(t['n_with_gain'])}) had a {word}; "
             f"{count(t['n_gains'])} in all" + (" (first per patient only)" if self.first_only else "") + ". ")
        if t["n_gains"]:
            s += (f"{count(t['n_reversed'])} of them ({percent(t['prev_reversal'], 1)}) were reversed "
                  f"(≥ 50% lost again later).")
        return s

    def patients(self, study: str, all_patients) -> list[tuple[str, str]]:
        """(patient, label), patients with an event first."""
        from analysis.formatting import count

        gp = self.per_patient[self.per_patient["study"] == str(study)]
        n = dict(zip(gp["patient"], gp["n_gains"]))
        word = "sudden gain(s)" if self.kind == "gain" else "sudden loss(es)"
        with_ = [p for p in gp.loc[gp["any_gain"], "patient"]]
        rest = sorted(set(map(str, all_patients)) - set(with_))
        return [(p, f"{p} · {count(n[p])} {word}") for p in with_] + [(p, f"{p} · none") for p in rest]

    def patient_note(self, study: str, patient: str) -> str:
        from analysis.formatting import num, percent

        g = self.gains
        mine = g[(g["study"] == str(study)) & (g["patient"] == str(patient)) & g["is_gain"]]
        if mine.empty:
            return "No event under these settings."
        verb = "fell" if (self.kind == "gain") == (self.better == "lower") else "rose"
        return "; ".join(
            f"scores {verb} from {num(r.pregain)} at session {r.pregain_session} to {num(r.postgain)} at "
            f"session {r.postgain_session} ({num(r.magnitude)} points, {percent(abs(r.relative_magnitude))})"
            + (f", reversed by session {int(r.reversal_session)}" if bool(r.reversal) else "")
            for r in mine.itertuples()) + "."


def gain_analysis(df: pd.DataFrame, kind: str = "gain", better: str = "lower", reliability=0.9, sd=None,
                  cutoff=None, first_only: bool = False, pairing: str = "session",
                  convention: str = "published") -> GainAnalysis:
    """Per-study cut-offs (`gain_cutoffs`), `sudden_gains` and `sudden_gain_summary` (§10)."""
    cuts = gain_cutoffs(df, reliability=reliability, sd=sd, cutoff=cutoff)
    g = sudden_gains(df, cutoff=dict(zip(cuts["study"], cuts["cutoff"])), first_only=first_only,
                     pairing=pairing, kind=kind, better=better, convention=convention)
    pp, ps = sudden_gain_summary(g)
    return GainAnalysis(kind=kind, better=better, first_only=bool(first_only), pairing=pairing, cutoffs=cuts,
                        gains=g, per_patient=pp, per_study=ps)


_RC_CATS = ("recovered", "improved", "unchanged", "deteriorated")


@dataclass(frozen=True)
class ReliableChangeAnalysis:
    """Reliable (and clinically significant) change per study (METHODS §11), ready to show."""

    method: str
    per_patient: pd.DataFrame = field(repr=False, compare=False)
    messages: tuple = ()
    #: per study: reliability, sd and sd_source ("baseline" / "given") used (`gain_cutoffs`)
    inputs: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def to_frame(self) -> pd.DataFrame:
        rc = self.per_patient
        studies = sorted(rc["study"].unique())
        has = rc[rc["category"].notna()]
        counts = (has.groupby(["study", "category"]).size().unstack("category")
                  .reindex(index=studies, columns=list(_RC_CATS)).fillna(0).astype(np.int64))
        per = rc.groupby("study").agg(s_diff=("s_diff", "first"), cutoff=("cutoff", "first"),
                                      crit=("rc_crit", "first")).reindex(studies)
        t = pd.DataFrame({"study": studies, "n_patients": counts.sum(axis=1).to_numpy()})
        if self.inputs is not None:
            inp = self.inputs.set_index("study").reindex(studies)
            t["reliability"], t["sd"] = inp["reliability"].to_numpy(float), inp["sd"].to_numpy(float)
        for c in _RC_CATS:
            t["n_" + c] = counts[c].to_numpy()
        t["smallest_reliable_change"] = (per["crit"] * per["s_diff"]).to_numpy() if self.method == "JT" else np.nan
        t["cutoff"] = per["cutoff"].to_numpy()
        t = _with_total(t, ["n_patients"] + ["n_" + c for c in _RC_CATS], {})
        for c in _RC_CATS:
            t["prev_" + c] = t["n_" + c] / t["n_patients"].where(t["n_patients"] > 0)
        no_c = t["cutoff"].isna() & (t["study"] != "All studies")
        if no_c.sum() == (t["study"] != "All studies").sum():
            no_c[:] = True  # no study used a cut-off: nobody can be "recovered"
        t["n_recovered"] = t["n_recovered"].astype(float)
        t.loc[no_c, ["n_recovered", "prev_recovered"]] = np.nan
        return t

    def summary(self) -> str:
        from analysis.formatting import count, percent

        rc = self.per_patient[self.per_patient["category"].notna()]
        N = len(rc)
        imp = int(rc["category"].isin(["recovered", "improved"]).sum())
        det = int((rc["category"] == "deteriorated").sum())
        crit = {"JT": "|RCI| > 1.96", "GLN": "|RC| > 1.96", "EN": "the last score outside T ± 2·S_E",
                "HA": f"|RC_INDIV| > {HA_CRIT:g}"}[self.method]
        s = (f"Method: {RC_METHODS[self.method]}. Reliable change when {crit}. Of {count(N)} patients with "
             f"at least two symptom scores, "
             f"{percent(_share(imp, N), 1)} ({count(imp)}) improved reliably and {percent(_share(det, N), 1)} "
             f"({count(det)}) deteriorated reliably from their first to their last score")
        with_c = rc[rc["cutoff"].notna()]
        if len(with_c):
            rec = int((with_c["category"] == "recovered").sum())
            s += (f"; {count(rec)} of the {count(len(with_c))} patients in studies with a cut-off "
                  f"({percent(_share(rec, len(with_c)), 1)}) recovered (reliable improvement and crossing c).")
        else:
            s += ". Choose a clinical cut-off c to classify patients as recovered."
        return s


def reliable_change_analysis(df: pd.DataFrame, reliability=0.9, sd=None, method: str = "JT", cutoff=None,
                             norms=None, cutoff_studies=None) -> ReliableChangeAnalysis:
    """`reliable_change` per study with the cut-off used only in ``cutoff_studies`` (§11).

    ``reliability`` and ``sd`` are one number or a dict study → number, resolved per study
    exactly as for the sudden-gain cut-off (`gain_cutoffs`, one implementation): ``sd=None``
    uses each study's baseline SD. ``cutoff``/``norms`` as in `reliable_change`;
    ``cutoff_studies`` (default all) lists the studies that measured with the instrument the
    cut-off belongs to.
    """
    data = df
    studies = sorted(data["study"].astype(str).unique())
    inputs = gain_cutoffs(df, reliability=reliability, sd=sd)[["study", "reliability", "sd", "sd_source"]]
    reliability = dict(zip(inputs["study"], inputs["reliability"]))
    sd = dict(zip(inputs["study"], inputs["sd"]))
    with_c = [] if cutoff is None and norms is None else \
        [s for s in studies if cutoff_studies is None or s in set(map(str, cutoff_studies))]
    without = [s for s in studies if s not in with_c]
    parts, msgs = [], []
    st_ = data["study"].astype(str)
    for group, kw in ((with_c, {"cutoff": cutoff, "norms": norms}), (without, {})):
        if group:
            sub = data[st_.isin(group)]
            sds = {s: sd[s] for s in group} if isinstance(sd, Mapping) else sd
            rel = {s: reliability[s] for s in group} if isinstance(reliability, Mapping) else reliability
            r = reliable_change(sub, rel, sds, method=method, **kw)
            parts.append(r)
            msgs.extend(r.attrs.get("messages", ()))
    rc = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    rc = rc.sort_values(["study", "patient"], kind="mergesort").reset_index(drop=True)
    return ReliableChangeAnalysis(method=method, per_patient=rc, messages=tuple(msgs), inputs=inputs)
