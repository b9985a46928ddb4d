"""Screening one study before it joins a collection: a data-quality checklist,
a verdict, and where its lagged coefficients fall relative to a reference.

Everything here is computed on the study's rows inside the analysis window
(``LagOptions.sessions``, METHODS §1), with the lag and pairing of the same
options (§4), so the checklist describes exactly the data the stage-1 model
(§5) would use.

Checklist items (each ``pass`` / ``caution`` / ``fail``, thresholds in
:class:`Thresholds`, defaults in :data:`THRESHOLDS`):

* **Patients** — N patients in the window. Fail below
  ``patients_fail`` (= ``analysis.lagged.MIN_PATIENTS``, 3: the model cannot be
  fitted); caution below ``patients_caution`` (= ``analysis.data.
  MIN_PATIENTS_PER_STUDY``, 10: τ² and the between terms are poorly
  determined, and the within estimate is imprecise).
* **Sessions per patient** — median and minimum number of sessions. Fail when
  the median is below ``sessions_fail`` (2: most patients have no
  session-to-session pair); caution when the median is below
  ``sessions_caution`` (4: at most two lag-1 pairs per patient, where the
  person mean is a noisy baseline and the Nickell bias −(1 + ρ)/(T − 1) of the
  prior outcome is at least about (1 + ρ)/2) or when more than
  ``single_session_share`` (10 %) of patients have a single session (they
  contribute nothing to a lagged effect).
* **Missing values** — share of the study's rows without alliance, without
  symptoms, and the share of *skipped sessions*: common session numbers of
  the study (attended by at least a fifth of its patients) between a
  patient's first and last session for which that patient has no row (so
  planned designs such as sessions 3/12/20/end count as complete). Fail when a variable is never observed; caution when a share is
  above ``missing_caution`` (= ``analysis.data.MAX_MISSING_SHARE``, 30 %, the
  Data page's warning: nothing is imputed, so the estimate rests on the
  observed sessions only).
* **ICC of alliance / symptoms** — τ²/(τ² + σ²) of an intercept-only
  random-intercept REML model (as ``StudyFit.icc_predictor``). Caution above
  ``icc_caution`` (0.90: less than a tenth of the variance is session-to-
  session, so the within-patient effect rests on little variation) or when it
  cannot be estimated. The reason also reports the reliability of the person
  mean n·ICC/(1 + (n − 1)·ICC) (METHODS §5), which concerns the between part only.
* **Within-patient SD of alliance / symptoms** — pooled SD of the deviations
  from each patient's own mean, √(Σ(x − x̄_i)² / Σ(n_i − 1)), raw units. Fail
  when it is 0 (nobody's score ever changes: no within-patient effect is
  estimable) or the variable is constant; caution when the score never changes
  for more than ``constant_share_caution`` (25 %) of the patients with ≥ 2
  values (ceiling or floor, carried-forward values).
* **Range problems** — ``analysis.data.validate`` warnings about the values
  (``negative_values``, ``outlying_values``: caution) and its errors (fail).
* **Pairs for the lag** — complete model rows per direction under the chosen
  lag and pairing (``analysis.lagged.pairing_counts``). Fail when fewer than
  ``patients_fail`` patients have a pair (the model cannot be fitted); caution
  below ``pairs_caution`` (100 pairs).
* **Stage-1 model** (when fits are given) — fail when the model of a direction
  could not be fitted, with the reason.

Verdict (:class:`Verdict`): "not usable" if any item fails, "usable with
cautions" if any item is a caution, else "usable".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

from analysis import data as adata
from analysis import formatting as fmt
from analysis import lagged, mixed
from analysis.lagged import LagOptions, StudyFit
from analysis.meta import Estimate, MetaResult, random_effects
from analysis.options import Declared, option

__all__ = [
    "MARKS",
    "THRESHOLDS",
    "Check",
    "Effect",
    "Placement",
    "Reference",
    "ScreeningReport",
    "Thresholds",
    "Verdict",
    "collection_reference",
    "effect_from_fit",
    "manual_reference",
    "place",
    "run",
    "screen_study",
    "thresholds_frame",
]

MARKS = ("pass", "caution", "fail")
_SHORT = {"alliance_to_symptoms": "alliance → symptoms", "symptoms_to_alliance": "symptoms → alliance"}
_RANGE_CODES = ("negative_values", "outlying_values")
_NOUN = {"alliance": "the alliance rating", "symptoms": "the symptom score"}


_M1 = "1-data"


@dataclass(frozen=True)
class Thresholds(Declared):
    """Cut-offs of the checklist (module docstring explains each), declared once (:mod:`analysis.options`).

    >>> Thresholds(patients_caution=50).patients_caution
    50
    >>> Thresholds(missing_caution=1.5)
    Traceback (most recent call last):
    ...
    ValueError: missing_caution must be a number from 0 to 1; got 1.5.
    """

    patients_fail: int = option("int", lagged.MIN_PATIENTS, lo=1, label="Patients: fail below", methods=_M1,
                                help="Fewer patients and the lagged model cannot be fitted.")
    patients_caution: int = option("int", adata.MIN_PATIENTS_PER_STUDY, lo=1, label="Patients: caution below",
                                   methods=_M1, help="Fewer patients and τ² and the between terms are poorly "
                                                     "estimated.")
    sessions_fail: float = option("float", 2.0, lo=1, label="Median sessions per patient: fail below", methods=_M1,
                                  help="With fewer sessions a patient gives no lagged pair.")
    sessions_caution: float = option("float", 4.0, lo=1, label="Median sessions per patient: caution below",
                                     methods=_M1, help="Few sessions per patient make the within effects imprecise "
                                                       "and the person means biased (Nickell).")
    single_session_share: float = option("float", 0.10, lo=0, hi=1, label="Share of single-session patients: "
                                         "caution above", methods=_M1,
                                         help="Patients with one session add nothing within patients.")
    missing_caution: float = option("float", adata.MAX_MISSING_SHARE, lo=0, hi=1, label="Missing share: caution "
                                    "above", methods=_M1, help="Share of rows without a score, or of skipped "
                                                               "sessions between a patient's first and last.")
    icc_caution: float = option("float", 0.90, lo=0, hi=1, label="ICC: caution above", methods=_M1,
                                help="Little session-to-session variation is left to estimate within effects.")
    constant_share_caution: float = option("float", 0.25, lo=0, hi=1, label="Patients whose score never changes: "
                                           "caution above", methods=_M1,
                                           help="Such patients carry no within-patient information.")
    pairs_caution: int = option("int", 100, lo=1, label="Lagged pairs: caution below", methods=_M1,
                                help="Fewer pairs and the stage-1 estimates are imprecise.")

    def describe(self) -> list[str]:
        """Plain-language lines, one per threshold, for the page."""
        return [
            (f"Patients: fail below {self.patients_fail} (the model cannot be fitted), caution below "
            f"{self.patients_caution}."),
            (f"Sessions per patient: fail if the median is below {self.sessions_fail:g}; caution if the median is "
            f"below {self.sessions_caution:g} or more than {100 * self.single_session_share:.0f}% of patients have "
            "a single session."),
            (f"Missing values: fail if alliance or symptoms is never observed; caution if more than "
            f"{100 * self.missing_caution:.0f}% of the rows lack a score or of the sessions between a patient's first "
            "and last session were skipped."),
            (f"ICC: caution above {self.icc_caution:.2f} (little session-to-session variation) or if it cannot be "
            "estimated."),
            (f"Within-patient SD: fail if it is 0 (no patient's score ever changes); caution if the score never "
            f"changes for more than {100 * self.constant_share_caution:.0f}% of patients."),
            ("Range problems: caution for negative or far-outlying values (the Data page's checks); fail for data "
            "errors."),
            (f"Pairs for the lag: fail if fewer than {self.patients_fail} patients have a pair; caution below "
            f"{self.pairs_caution} pairs."),
            "Stage-1 model: fail if the model could not be fitted.",
        ]


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class Check:
    """One checklist item: ``item`` (what), ``value`` (what was found, short),
    ``mark`` (pass/caution/fail), ``reason`` (plain language) and ``short``
    (a few words for the verdict)."""

    item: str
    value: str
    mark: str
    reason: str
    short: str = ""

    def __post_init__(self):
        if self.mark not in MARKS:
            raise ValueError(f"mark must be one of {MARKS}; got {self.mark!r}.")


@dataclass(frozen=True)
class Verdict:
    """``level`` is ``"usable"``, ``"usable with cautions"`` or ``"not usable"``;
    ``text`` one sentence that starts with the level."""

    level: str
    text: str


@dataclass(frozen=True, eq=False)
class ScreeningReport:
    """Result of :func:`screen_study`: the checks in display order, the verdict
    and the numbers behind them (``stats``)."""

    study: str
    checks: tuple
    verdict: Verdict
    stats: dict = field(default_factory=dict)

    def check(self, item: str) -> Check:
        """The check whose ``item`` starts with ``item`` (KeyError if none)."""
        for c in self.checks:
            if c.item.startswith(item):
                return c
        raise KeyError(item)

    def to_frame(self) -> pd.DataFrame:
        """One row per check: check, result, mark, reason."""
        return pd.DataFrame(
            {
                "check": [c.item for c in self.checks],
                "result": [c.value for c in self.checks],
                "mark": [c.mark for c in self.checks],
                "reason": [c.reason for c in self.checks],
            }
        )


# --------------------------------------------------------------------------- helpers


def _window(df: pd.DataFrame, options: LagOptions) -> pd.DataFrame:
    if options.sessions is None:
        return df
    s = pd.to_numeric(df["session"], errors="coerce")
    return df.loc[(s >= options.sessions[0]) & (s <= options.sessions[1])]


def _within_stats(x: np.ndarray, groups: np.ndarray) -> dict:
    """Pooled within-patient SD, total SD and the share of patients (with ≥ 2
    observed values) whose value never changes."""
    obs = np.isfinite(x)
    s = pd.Series(x[obs])
    g = pd.Series(groups[obs])
    n_obs = int(obs.sum())
    total_sd = float(s.std(ddof=1)) if n_obs >= 2 else math.nan
    by = s.groupby(g.to_numpy())
    n_i = by.size()
    dev = s - by.transform("mean")
    ss = float((dev**2).sum())
    dfree = float((n_i - 1).clip(lower=0).sum())
    within_sd = math.sqrt(ss / dfree) if dfree > 0 else math.nan
    multi = n_i[n_i >= 2].index
    if len(multi):
        rng = (by.max() - by.min()).loc[multi]
        constant_share = float((rng <= 1e-12 * (1.0 + abs(float(s.abs().max())))).mean())
    else:
        constant_share = math.nan
    return {"within_sd": within_sd, "total_sd": total_sd, "constant_share": constant_share,
            "n_multi": len(multi), "n_obs": n_obs}


def _skipped_share(sess: np.ndarray, codes: np.ndarray, common: float = 0.2) -> float:
    """Share of skipped sessions: over patients, the study's *common* session
    numbers (attended by at least ``common`` of the patients) that lie between
    the patient's first and last session but have no row for that patient.
    Planned designs (sessions 3/12/20/end) and rare late sessions are thus not
    counted as skipped."""
    sess = pd.to_numeric(pd.Series(sess), errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    ok = np.isfinite(sess)
    if not ok.any():
        return math.nan
    frame = pd.DataFrame({"g": codes[ok], "t": sess[ok]}).drop_duplicates()
    n_pat = frame["g"].nunique()
    share = frame.groupby("t")["g"].nunique() / n_pat
    grid = np.sort(share.index[share.to_numpy() >= common].to_numpy(dtype=float))
    if grid.size == 0:
        return math.nan
    span = frame.groupby("g")["t"].agg(["min", "max"])
    expected = np.searchsorted(grid, span["max"].to_numpy(), side="right") - np.searchsorted(
        grid, span["min"].to_numpy(), side="left")
    own = frame[frame["t"].isin(grid)].groupby("g").size().reindex(span.index, fill_value=0).to_numpy()
    total = float(expected.sum())
    return float((expected - own).sum() / total) if total > 0 else math.nan


def _first_sentence(msg: str, limit: int = 220) -> str:
    msg = " ".join(str(msg).split())
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


# --------------------------------------------------------------------------- the checklist


@dataclass(eq=False)
class _Study:
    """What every check reads: the study's rows inside the analysis window, patient codes, the
    scores as floats, the options, thresholds, fits, the Data page's report; ``stats`` collects numbers."""

    df: pd.DataFrame
    win: pd.DataFrame
    options: LagOptions
    t: Thresholds
    fits: Mapping[str, StudyFit] | None
    report: adata.ValidationReport
    stats: dict
    codes: np.ndarray = field(init=False)
    n_pat: int = field(init=False)
    per_pat: pd.Series = field(init=False)
    med: float = field(init=False)
    a: np.ndarray = field(init=False)
    s: np.ndarray = field(init=False)

    def __post_init__(self):
        pat = self.win["patient"].astype("string").to_numpy(dtype=object)
        self.codes = pd.factorize(pat)[0]
        self.n_pat = len(np.unique(self.codes))
        self.stats["n_patients"] = self.n_pat
        self.per_pat = self.win.groupby(self.codes)["session"].nunique()
        self.med = float(self.per_pat.median())
        self.a = pd.to_numeric(self.win["alliance"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        self.s = pd.to_numeric(self.win["symptoms"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _check_patients(c: _Study, checks: list[Check]) -> None:
    """Enough patients to fit the model?"""
    t, n_pat = c.t, c.n_pat
    if n_pat < t.patients_fail:
        checks.append(Check("Patients", f"{n_pat}", "fail",
                            f"Only {n_pat} patient(s): the lagged model needs at least {t.patients_fail}.",
                            f"only {n_pat} patient(s)"))
    elif n_pat < t.patients_caution:
        checks.append(Check("Patients", f"{n_pat}", "caution",
                            f"Only {n_pat} patients (fewer than {t.patients_caution}): the coefficient will be "
                            "imprecise and the between-patient terms and τ² are poorly determined.",
                            f"only {n_pat} patients"))
    else:
        checks.append(Check("Patients", f"{n_pat}", "pass", f"{n_pat} patients is enough to fit the model.",
                            ""))


def _check_sessions(c: _Study, checks: list[Check]) -> None:
    """Enough repeated sessions per patient?"""
    t, stats, n_pat, per_pat, med = c.t, c.stats, c.n_pat, c.per_pat, c.med
    mn, mx = int(per_pat.min()), int(per_pat.max())
    single = float((per_pat < 2).mean())
    stats.update(sessions_median=med, sessions_min=mn, sessions_max=mx, single_session_share=single)
    value = f"median {med:g}, min {mn}, max {mx}"
    n_single = int((per_pat < 2).sum())
    if med < t.sessions_fail:
        checks.append(Check("Sessions per patient", value, "fail",
                            f"Most patients have a single session ({n_single} of {n_pat}); a lagged effect needs "
                            "repeated sessions of the same patient.", "one session per patient"))
    elif med < t.sessions_caution or single > t.single_session_share:
        bits = []
        if med < t.sessions_caution:
            bits.append(f"the typical patient has only {med:g} sessions, so the person mean is a noisy baseline and "
                        "the prior-outcome coefficient is strongly biased (Nickell bias, METHODS §5)")
        if single > t.single_session_share:
            bits.append(f"{n_single} of {n_pat} patients ({fmt.percent(single)}) have a single session and contribute "
                        "nothing")
        checks.append(Check("Sessions per patient", value, "caution", "; ".join(bits).capitalize() + ".",
                            "few sessions per patient"))
    else:
        extra = f" ({n_single} patient(s) with one session contribute nothing)" if n_single else ""
        checks.append(Check("Sessions per patient", value, "pass",
                            f"Enough repeated sessions per patient{extra}.", ""))


def _check_missing(c: _Study, checks: list[Check]) -> None:
    """Missing values in existing rows and skipped sessions."""
    t, stats, win, codes, a, s = c.t, c.stats, c.win, c.codes, c.a, c.s
    miss = {"alliance": float(np.isnan(a).mean()), "symptoms": float(np.isnan(s).mean())}
    skipped = _skipped_share(win["session"].to_numpy(), codes)
    stats.update(missing_alliance=miss["alliance"], missing_symptoms=miss["symptoms"], skipped_sessions=skipped)
    value = (f"alliance {fmt.percent(miss['alliance'])}, symptoms {fmt.percent(miss['symptoms'])} of rows; "
             f"{fmt.percent(skipped)} of sessions skipped")
    never = [v for v, m in miss.items() if m >= 1.0]
    heavy = [v for v, m in miss.items() if t.missing_caution < m < 1.0]
    if never:
        checks.append(Check("Missing values", value, "fail",
                            f"{' and '.join(never).capitalize()} {'is' if len(never) == 1 else 'are'} never observed "
                            "in the analysis window.", f"{' and '.join(never)} never observed"))
    elif heavy or skipped > t.missing_caution:
        bits = [f"more than {fmt.percent(t.missing_caution)} of the rows lack {' and '.join(heavy)}"] if heavy else []
        if skipped > t.missing_caution:
            bits.append(f"{fmt.percent(skipped)} of the sessions between a patient's first and last session were not "
                        "recorded")
        what = " and ".join(heavy) + " values" if heavy else "sessions"
        checks.append(Check("Missing values", value, "caution",
                            "; ".join(bits).capitalize() + ". Nothing is imputed, so the estimate rests on the "
                            "observed sessions (biased if missingness depends on how treatment goes).",
                            f"many missing {what}"))
    else:
        checks.append(Check("Missing values", value, "pass",
                            f"Few missing values and skipped sessions (at most {fmt.percent(t.missing_caution)}).", ""))


def _check_variability(c: _Study, checks: list[Check]) -> None:
    """ICC and within-patient SD of alliance and symptoms."""
    t, stats, codes, med, a, s = c.t, c.stats, c.codes, c.med, c.a, c.s
    for var, x in (("alliance", a), ("symptoms", s)):
        noun = _NOUN[var]
        Noun = noun[0].upper() + noun[1:]
        ws = _within_stats(x, codes)
        stats[f"within_sd_{var}"] = ws["within_sd"]
        stats[f"total_sd_{var}"] = ws["total_sd"]
        stats[f"constant_share_{var}"] = ws["constant_share"]
        # within-patient SD first decides whether the variable varies at all
        tsd, wsd = ws["total_sd"], ws["within_sd"]
        scale = 1e-12 * (1.0 + (float(np.nanmax(np.abs(x))) if ws["n_obs"] else 0.0))
        if ws["n_obs"] == 0:
            sd_check = Check(f"Within-patient SD of {var}", "n/a", "fail", f"{Noun} is never observed.",
                             f"{noun} never observed")
        elif ws["n_multi"] == 0:
            sd_check = Check(f"Within-patient SD of {var}", "n/a", "fail",
                             f"No patient has two or more observed values of {noun}, so change within a patient cannot "
                             "be measured.", "one session per patient")
        elif not (math.isfinite(tsd) and tsd > scale):
            sd_check = Check(f"Within-patient SD of {var}", "0", "fail",
                             f"{Noun} has the same value in every row: it carries no information.",
                             f"{noun} is constant")
        elif not (math.isfinite(wsd) and wsd > scale):
            sd_check = Check(f"Within-patient SD of {var}", "0", "fail",
                             f"For no patient does {noun} change from session to session, so a within-patient "
                             "lagged effect cannot be estimated.", f"{noun} does not vary within patients")
        else:
            share = ws["constant_share"]
            value = f"{fmt.num(wsd, 3)} scale points ({fmt.percent(wsd / tsd)} of the total SD)"
            if math.isfinite(share) and share > t.constant_share_caution:
                sd_check = Check(f"Within-patient SD of {var}", value, "caution",
                                 f"{Noun} never changes for {fmt.percent(share)} of the patients with two or "
                                 "more values (ceiling or floor of the scale, or carried-forward values?); they add "
                                 "nothing to the within-patient effect.", f"{noun} often constant within patients")
            else:
                sd_check = Check(f"Within-patient SD of {var}", value, "pass",
                                 f"{Noun} varies from session to session within patients.", "")
        # ICC
        n_med = med
        # no ICC for a variable without (within-patient) variance: the REML fit would be degenerate
        icc = mixed.icc(x, codes) if sd_check.mark != "fail" else math.nan
        stats[f"icc_{var}"] = icc
        if sd_check.mark == "fail":
            icc_check = Check(f"ICC of {var}", "n/a", "caution",
                              f"Not estimable: {noun} does not vary within patients.", f"ICC of {var} not estimable")
        elif not math.isfinite(icc):
            icc_check = Check(f"ICC of {var}", "n/a", "caution",
                              f"The ICC of {noun} could not be estimated (too few repeated values).",
                              f"ICC of {var} not estimable")
        else:
            rel = n_med * icc / (1.0 + (n_med - 1.0) * icc)
            stats[f"reliability_{var}"] = rel
            relnote = (f" Reliability of a patient's mean over {n_med:g} sessions: {fmt.num(rel)}"
                       + (" (low: the between-patient part is pulled toward the within effect)." if rel < 0.7
                          else "."))
            if icc > t.icc_caution:
                icc_check = Check(f"ICC of {var}", fmt.num(icc), "caution",
                                  f"{fmt.percent(icc)} of the variance of {noun} lies between patients; the session-to-"
                                  f"session variation that the within-patient effect uses is small.{relnote}",
                                  f"{noun} varies little within patients")
            else:
                icc_check = Check(f"ICC of {var}", fmt.num(icc), "pass",
                                  f"{fmt.percent(icc)} of the variance lies between patients, {fmt.percent(1 - icc)} within "
                                  f"patients.{relnote}", "")
        checks.append(icc_check)
        checks.append(sd_check)


def _check_range(c: _Study, checks: list[Check]) -> None:
    """The Data page's warnings about values (negative, far-outlying)."""
    report = c.report
    rng = [i for i in report.warnings if i.code in _RANGE_CODES]
    if rng:
        checks.append(Check("Range problems", f"{len(rng)} warning(s)", "caution",
                            " ".join(_first_sentence(i.message) for i in rng),
                            "values out of the usual range"))
    else:
        checks.append(Check("Range problems", "none", "pass",
                            "No negative or far-outlying values (more than 5 MADs from the median).", ""))


def _check_pairs(c: _Study, checks: list[Check]) -> None:
    """Complete pairs for the chosen lag and pairing, per direction."""
    t, stats, df, options = c.t, c.stats, c.df, c.options
    try:
        # counted on raw scores: a variable without variance (its own check) must not read as "no pairs"
        pc = lagged.pairing_counts(df, options.replace(standardize=False))
    except ValueError as exc:
        pc = None
        checks.append(Check("Pairs for the lag", "n/a", "fail", f"Pairs could not be formed: {exc}",
                            "no pairs"))
    if pc is not None:
        mode = options.pairing
        other = "next_observed" if mode == "session" else "session"
        parts, worst, reasons, helps = [], "pass", [], False
        for _, r in pc.iterrows():
            d = r["direction"]
            n_pairs, n_pp = int(r[f"pairs_{mode}"]), int(r[f"patients_{mode}"])
            stats[f"pairs_{d}"] = n_pairs
            stats[f"patients_with_pair_{d}"] = n_pp
            parts.append(f"{_SHORT[d]}: {n_pairs} pairs from {n_pp} patients")
            alt = int(r[f"pairs_{other}"])
            hint = ""
            if mode == "session" and alt > n_pairs:
                helps = helps or alt >= max(t.pairs_caution, 2 * n_pairs)
                hint = (f" Pairing each session with the patient's next observed session would give {alt} pairs "
                        "(option panel → Pairing).")
            if n_pp < t.patients_fail:
                worst = "fail"
                follow = (f"session t + {options.lag}" if mode == "session"
                          else "the next observed session" if options.lag == 1
                          else f"the observed session {options.lag} rows later")
                reasons.append(f"{_SHORT[d]}: only {n_pp} patient(s) have a complete pair (a session with both "
                               f"scores followed by {follow}); the model needs {t.patients_fail}.{hint}")
            elif n_pairs < t.pairs_caution:
                worst = "caution" if worst == "pass" else worst
                reasons.append(f"{_SHORT[d]}: only {n_pairs} complete pairs (fewer than {t.pairs_caution}); the "
                               f"coefficient will be imprecise.{hint}")
        short = {"fail": f"too few pairs for lag {options.lag}", "caution": f"few pairs for lag {options.lag}",
                 "pass": ""}[worst]
        if worst != "pass" and helps:
            short += " (pairing by next observed session would give more)"
        reason = " ".join(reasons) if reasons else f"Enough complete pairs at lag {options.lag}."
        checks.append(Check(f"Pairs for lag {options.lag}", "; ".join(parts), worst, reason, short))


def _check_model(c: _Study, checks: list[Check]) -> None:
    """The stage-1 model could be fitted in every direction (only when fits are given)."""
    fits = c.fits
    if fits:
        failed = {d: f for d, f in fits.items() if f is None or f.status == "failed"}
        if failed:
            why = " ".join(f"{_SHORT.get(d, d)}: {f.messages[0] if f is not None and f.messages else 'not fitted'}"
                           for d, f in failed.items())
            checks.append(Check("Stage-1 model", "not fitted", "fail", why,
                                "the lagged model could not be fitted"))
        else:
            notes = []
            if any(f.singular for f in fits.values()):
                notes.append("the random-intercept variance is at zero (common here; the fixed effects are still "
                             "valid)")
            reason = "Fitted in every direction" + (f"; {'; '.join(notes)}." if notes else ".")
            checks.append(Check("Stage-1 model", "fitted", "pass", reason, ""))


#: the checklist of ``screen_study``, in display order; each check reads the prepared study and appends
#: its Check(s), so a new check is one small function added here
CHECKS = (_check_patients, _check_sessions, _check_missing, _check_variability, _check_range, _check_pairs,
          _check_model)


def run(df: pd.DataFrame, options: Thresholds | None = None, lag_options: LagOptions | None = None) -> ScreeningReport:
    """:func:`screen_study` with its declared options (the checklist's cut-offs) first; the window, lag and
    directions come from ``lag_options`` (the Lagged options).

    >>> from analysis.simulate import simulate_study
    >>> run(simulate_study(40, seed=1).data, Thresholds(patients_caution=50)).verdict.level
    'usable with cautions'
    """
    return screen_study(df, lag_options, thresholds=options or THRESHOLDS)


def screen_study(
    df: pd.DataFrame,
    options: LagOptions | None = None,
    fits: Mapping[str, StudyFit] | None = None,
    thresholds: Thresholds = THRESHOLDS,
) -> ScreeningReport:
    """Data-quality checklist and verdict for one study (module docstring; the checks are :data:`CHECKS`).

    ``df``: canonical long data (METHODS §1) of a single study. ``options``:
    the analysis window, lag, pairing and directions to check (defaults of
    :class:`LagOptions`). ``fits``: optional direction → :class:`StudyFit` of
    this study; adds the "Stage-1 model" item. Raises ``ValueError`` when
    ``df`` is not canonical single-study data.

    >>> from analysis.simulate import simulate_study
    >>> rep = screen_study(simulate_study(40, seed=1).data)
    >>> rep.verdict.level
    'usable with cautions'
    """
    options = options or LagOptions()
    try:  # an empty study is reported by the checklist ("Data errors")
        adata.require_canonical(df, study=False, values=False, min_rows=0)
    except adata.DataError as e:
        raise ValueError(f"The study cannot be screened: {e}") from None
    if "study" in df.columns and df["study"].nunique(dropna=True) > 1:
        raise ValueError(
            f"Screening looks at one study at a time; these data hold {df['study'].nunique()} studies."
        )
    study = str(df["study"].iloc[0]) if "study" in df.columns and len(df) else "New study"
    checks: list[Check] = []
    stats: dict = {}

    report = adata.validate(df)
    if not report.ok:
        msgs = "; ".join(_first_sentence(i.message, 160) for i in report.errors[:3])
        checks.append(Check("Data errors", f"{len(report.errors)} error(s)", "fail",
                            f"The data cannot be analysed until these are fixed: {msgs}", "data errors"))
        return ScreeningReport(study, tuple(checks), _verdict(checks), stats)

    win = _window(df, options)
    if len(win) == 0:
        lo, hi = options.sessions
        checks.append(Check("Rows in the analysis window", "0 rows", "fail",
                            f"The study has no sessions between {lo} and {hi}, the analysis window of the option "
                            "panel. Widen the window or check the session numbers.", "no sessions in the window"))
        return ScreeningReport(study, tuple(checks), _verdict(checks), stats)
    ctx = _Study(df, win, options, thresholds, fits, report, stats)
    for check in CHECKS:
        check(ctx, checks)
    return ScreeningReport(study, tuple(checks), _verdict(checks), stats)


def _verdict(checks: Sequence[Check]) -> Verdict:
    fails = [c for c in checks if c.mark == "fail"]
    cautions = [c for c in checks if c.mark == "caution"]

    def listing(cs):
        seen = list(dict.fromkeys((c.short or c.item.lower()) for c in cs))
        return "; ".join(seen)

    if fails:
        return Verdict("not usable", f"Not usable: {listing(fails)}.")
    if cautions:
        return Verdict("usable with cautions", f"Usable with cautions: {listing(cautions)}.")
    return Verdict("usable", "Usable: every check passed.")


# --------------------------------------------------------------------------- placing the study


@dataclass(frozen=True)
class Effect(Estimate):
    """One lagged coefficient with its (normal-theory) CI, e.g. a study's ``within`` term."""

    se: float = math.nan
    n_patients: float = math.nan
    n_pairs: float = math.nan
    weight: float = math.nan


def effect_from_fit(fit: StudyFit | None, term: str = "within") -> Effect | None:
    """The ``term`` coefficient of a :class:`StudyFit` as an :class:`Effect`; None when not fitted."""
    if fit is None or fit.status == "failed" or term not in fit.terms:
        return None
    c = fit.coef(term)
    if not all(math.isfinite(c[k]) for k in ("estimate", "ci_low", "ci_high")):
        return None
    return Effect(fit.study, c["estimate"], c["ci_low"], c["ci_high"], c["se"], fit.n_patients, fit.n_pairs)


@dataclass(frozen=True, eq=False)
class Reference(Estimate):
    """What a study is compared with: a pooled estimate with CI and prediction
    interval (PI; NaN when there is none) and, for a collection, its studies.

    ``source`` is ``"collection"`` or ``"manual"``; ``k`` the number of pooled
    studies (0 for a typed-in reference)."""

    pi_low: float = math.nan
    pi_high: float = math.nan
    level: float = 0.95
    k: int = 0
    source: str = "manual"
    method: str = ""
    studies: tuple = ()

    @property
    def has_pi(self) -> bool:
        return math.isfinite(self.pi_low) and math.isfinite(self.pi_high)

    @property
    def has_ci(self) -> bool:
        return math.isfinite(self.ci_low) and math.isfinite(self.ci_high)


def collection_reference(result: MetaResult, exclude: str | None = None) -> Reference | None:
    """Reference from a pooled :class:`MetaResult` (METHODS §6).

    With ``exclude`` (a study label in ``result.labels``) that study is left
    out and the rest is re-pooled with the same τ² estimator, test and level
    (``random_effects``), so a study is never compared with a pooled estimate
    and prediction interval that already contain it. Returns None when fewer
    than 2 studies remain (nothing to pool).
    """
    labels = list(result.labels)
    keep = np.array([lab != exclude for lab in labels], dtype=bool) if exclude is not None else np.ones(len(labels), bool)
    if keep.sum() < 2:
        return None
    if not keep.all():
        npat = None if result.n_patients is None else np.asarray(result.n_patients, float)[keep]
        npairs = None if result.n_pairs is None else np.asarray(result.n_pairs, float)[keep]
        result = random_effects(np.asarray(result.yi)[keep], np.asarray(result.vi)[keep], method=result.method,
                                test=result.test, level=result.level,
                                labels=[lab for lab, k in zip(labels, keep) if k],
                                n_patients=npat, n_pairs=npairs)
    sf = result.studies_frame()
    studies = tuple(
        Effect(str(r.study), float(r.yi), float(r.ci_low), float(r.ci_high), float(r.se),
               float(r.n_patients) if "n_patients" in sf else math.nan,
               float(r.n_pairs) if "n_pairs" in sf else math.nan, float(r.weight))
        for r in sf.itertuples()
    )
    left = f", without {exclude}" if exclude is not None and exclude in labels else ""
    return Reference(
        label=f"Pooled ({result.method}), k = {result.k}{left}",
        estimate=float(result.estimate), ci_low=float(result.ci_low), ci_high=float(result.ci_high),
        pi_low=float(result.pi_low), pi_high=float(result.pi_high), level=float(result.level),
        k=int(result.k), source="collection", method=result.method, studies=studies,
    )


def manual_reference(estimate, ci_low=None, ci_high=None, pi_low=None, pi_high=None,
                     label: str = "Reference (typed in)", level: float = 0.95) -> Reference:
    """A reference effect typed in by hand (e.g. a published pooled estimate).

    ``estimate`` is required; the CI and the PI are optional but each needs
    both ends, with low ≤ estimate ≤ high. Raises ``ValueError`` with a
    message for the researcher otherwise.
    """
    def num(v, name):
        if v is None:
            return math.nan
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"The {name} must be a number; got {v!r}.") from None
        if math.isinf(f):
            raise ValueError(f"The {name} must be a finite number.")
        return f

    est = num(estimate, "reference estimate")
    if not math.isfinite(est):
        raise ValueError("Type the reference estimate.")
    out = {}
    for name, lo, hi in (("confidence interval", ci_low, ci_high), ("prediction interval", pi_low, pi_high)):
        lo_, hi_ = num(lo, f"lower end of the {name}"), num(hi, f"upper end of the {name}")
        if math.isfinite(lo_) != math.isfinite(hi_):
            raise ValueError(f"Give both ends of the {name}, or neither.")
        if math.isfinite(lo_) and not lo_ <= est <= hi_:
            raise ValueError(
                f"The {name} ({fmt.num(lo_)} to {fmt.num(hi_)}) must contain the estimate ({fmt.num(est)}), with the "
                "lower end first."
            )
        out[name] = (lo_, hi_)
    (cl, ch), (pl, ph) = out["confidence interval"], out["prediction interval"]
    if math.isfinite(pl) and math.isfinite(cl) and not (pl <= cl and ph >= ch):
        raise ValueError("A prediction interval is at least as wide as the confidence interval; check the numbers.")
    return Reference(label=label, estimate=est, ci_low=cl, ci_high=ch, pi_low=pl, pi_high=ph, level=level,
                     k=0, source="manual")


@dataclass(frozen=True)
class Placement:
    """Where a study's estimate lies relative to a reference.

    ``inside_pi`` is True/False, or None when the reference has no prediction
    interval (or the study has no estimate); ``side`` is ``"inside"``,
    ``"above"``, ``"below"`` or ``""``; ``sentence`` says it in words."""

    inside_pi: bool | None
    side: str
    sentence: str


def place(effect: Effect | None, reference: Reference | None) -> Placement:
    """Is the study's estimate inside the reference's prediction interval?

    The PI of a random-effects model (METHODS §6) is where the true effect of
    a new, comparable study is expected to lie; the check uses the point
    estimate (its own CI is reported alongside). Ends count as inside.
    """
    if effect is None or not math.isfinite(effect.estimate):
        return Placement(None, "", "The study has no estimate in this direction, so it cannot be placed.")
    d = fmt.decimals_for((effect.estimate, effect.ci_low, effect.ci_high))
    own = f"{fmt.fixed(effect.estimate, d)} (95% CI {fmt.fixed(effect.ci_low, d)} to {fmt.fixed(effect.ci_high, d)})"
    if reference is None:
        return Placement(None, "", f"The study's estimate is {own}; there is no reference to compare it with.")
    pct = f"{100 * reference.level:g}%"
    what = "the collection's" if reference.source == "collection" else "the reference's"
    if not reference.has_pi:
        why = ("a common-effect (FE) model has no prediction interval" if reference.method == "FE"
               else "no prediction interval was given")
        ci = ""
        if reference.has_ci:
            inside_ci = reference.ci_low <= effect.estimate <= reference.ci_high
            ci = (f" It lies {'inside' if inside_ci else 'outside'} {what} {pct} confidence interval "
                  f"({fmt.num(reference.ci_low)} to {fmt.num(reference.ci_high)}), which describes the average effect, "
                  "not the spread of study effects.")
        return Placement(None, "", f"The study's estimate is {own}; {why}, so it cannot be judged against one.{ci}")
    if effect.estimate < reference.pi_low:
        side = "below"
    elif effect.estimate > reference.pi_high:
        side = "above"
    else:
        side = "inside"
    pi = f"{what} {pct} prediction interval ({fmt.num(reference.pi_low)} to {fmt.num(reference.pi_high)})"
    if side == "inside":
        text = (f"The study's estimate, {own}, lies inside {pi}: an effect of this size is what one would expect "
                "from a new, comparable study.")
    else:
        text = (f"The study's estimate, {own}, lies outside {pi} ({side} it): the study differs from the others "
                "more than the between-study heterogeneity predicts. Check its population, instruments, session "
                "numbering and scoring direction before pooling it.")
    return Placement(side == "inside", side, text)


def thresholds_frame(thresholds: Thresholds = THRESHOLDS) -> pd.DataFrame:
    """The thresholds as a two-column table (name, value)."""
    return pd.DataFrame({"threshold": [f.name for f in fields(thresholds)],
                         "value": [getattr(thresholds, f.name) for f in fields(thresholds)]})
