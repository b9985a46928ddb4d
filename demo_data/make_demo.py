"""Regenerate the demo data sets from analysis.simulate (deterministic).

Run from the repository root:  .venv/bin/python demo_data/make_demo.py
The true parameters of every file are written to demo_data/truth.json and
described in demo_data/README.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.simulate import (  # noqa: E402
    SYMPTOM_INSTRUMENTS,
    Instrument,
    simulate_collection,
    simulate_dyads,
    simulate_study,
)

OUT = Path(__file__).resolve().parent

# Study sizes of the IPD-MA demo: 17 studies, 5,350 patients in all.
IPD_SIZES = [612, 148, 402, 95, 515, 233, 318, 187, 702, 120, 264, 455, 176, 390, 88, 301, 344]


def ipd() -> dict:
    assert sum(IPD_SIZES) == 5350
    sim = simulate_collection(
        k=17,
        n_patients=IPD_SIZES,
        sessions=range(1, 8),
        mean_a_to_s=-0.10,
        mean_s_to_a=-0.08,
        tau_a_to_s=0.05,
        tau_s_to_a=0.04,
        missing_sessions=0.06,
        symptom_trend=-0.12,
        alliance_trend=0.05,
        therapist=True,
        cross_level_alliance=-0.08,
        cross_level_symptoms=0.06,
        seed=20240517,
    )
    df = sim.data.copy()
    studies = sim.truth["studies"]
    # A study-level moderator for meta-regression: share of sessions delivered online.
    rng = np.random.default_rng(7)
    setting = dict(zip(studies["study"], rng.choice(["outpatient", "inpatient", "online"], size=17)))
    df["setting"] = df["study"].map(setting).astype("string")
    df.to_csv(OUT / "ipd_17_studies.csv", index=False)
    s = studies[["study", "n_patients", "within_a_to_s", "within_s_to_a",
                 "within_a_to_s_std", "within_s_to_a_std", "alliance_instrument", "symptom_instrument"]]
    return {
        "file": "ipd_17_studies.csv",
        "design": "17 studies, 5,350 patients, sessions 1-7, different instruments per study",
        "mean_a_to_s": sim.truth["mean_a_to_s"],
        "mean_s_to_a": sim.truth["mean_s_to_a"],
        "tau_a_to_s": sim.truth["tau_a_to_s"],
        "tau_s_to_a": sim.truth["tau_s_to_a"],
        "ar_alliance": 0.3,
        "ar_symptoms": 0.4,
        "between_corr": -0.3,
        "alliance_trend_latent_per_session": 0.05,
        "symptom_trend_latent_per_session": -0.12,
        "missing_sessions": 0.06,
        "cross_level_alliance": -0.08,
        "cross_level_symptoms": 0.06,
        "studies": s.assign(setting=s["study"].map(setting)).to_dict(orient="records"),
    }


# Planted events of the within/between demo (issue 22, METHODS §9/§10): in the observed metric, after
# simulation, so that their size is known in the units the page's default criteria use.
RUPTURE_SHARE, GAIN_SHARE = 0.12, 0.12
RUPTURE_OWN_SD = 5.0  # a rupture dip = 5 x the patient's own SD around their straight line
GAIN_X_CUTOFF = 1.3  # a sudden gain = 1.3 x the default criterion-1 cut-off (r = .90, baseline SD)
ALLIANCE_RISE_OWN_SD = 2.0  # alliance at the postgain session: + 2 x the patient's own SD (a rise, then back)


def _own_sd(s: pd.DataFrame, col: str) -> float:
    """SD of a patient's residuals around their own least-squares line (ddof = 2)."""
    x, y = s["session"].to_numpy(float), s[col].to_numpy(float)
    ok = np.isfinite(y)
    b = np.polyfit(x[ok], y[ok], 1)
    return float(np.sqrt(np.sum((y[ok] - np.polyval(b, x[ok])) ** 2) / (ok.sum() - 2)))


def plant_icbt_events(d: pd.DataFrame, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Plant ruptures (own-SD units), sudden gains (detectable by the defaults) and an alliance rise after gains.

    Ruptures: in RUPTURE_SHARE of the patients one observed session s (3rd to 9th) drops by RUPTURE_OWN_SD x the
    patient's own alliance SD; half of them are repaired (only session s drops), in the others the level stays
    lowered by half the dip from s on. Gains: in GAIN_SHARE of the other patients symptoms fall by GAIN_X_CUTOFF x
    the default cut-off 1.96·√2·SD_baseline·√(1 − .90) from a postgain session n + 1 (n from 3 to 9, both n
    and n + 1 observed) on, and alliance rises by ALLIANCE_RISE_OWN_SD x the patient's own alliance SD at n + 1
    (seed 002: alliance rises after a gain; a one-session rise, so that the demo keeps seed 004's pattern of no
    within-person symptoms → alliance effect).
    Scores stay within the instruments' ranges (SPIN 0-68, WAI-SR 12-60).
    """
    rng = np.random.default_rng(seed)
    d = d.copy()
    pats = np.array(sorted(d["patient"].unique()))
    order = rng.permutation(len(pats))
    n_r, n_g = round(RUPTURE_SHARE * len(pats)), round(GAIN_SHARE * len(pats))
    rupt, gain = pats[order[:n_r]], pats[order[n_r:n_r + n_g]]
    first = d.sort_values("session").groupby("patient")["symptoms"].first()
    cutoff = 1.96 * np.sqrt(2) * first.std(ddof=1) * np.sqrt(1 - 0.90)
    rows = []
    for i, p in enumerate(rupt):
        m = d["patient"] == p
        s = d[m]
        sd = _own_sd(s, "alliance")
        ses = int(rng.choice(s.loc[s["session"].between(3, 9) & s["alliance"].notna(), "session"]))
        repaired = i % 2 == 0
        drop = RUPTURE_OWN_SD * sd
        d.loc[m & (d["session"] == ses), "alliance"] -= drop
        if not repaired:
            d.loc[m & (d["session"] > ses), "alliance"] -= drop / 2
        rows.append({"study": "ICBT trial", "patient": p, "event": "rupture", "session": ses, "repaired": repaired,
                     "size": drop})
    for p in gain:
        m = d["patient"] == p
        s = d[m].set_index("session")
        ok = [n for n in range(3, 10) if n in s.index and n + 1 in s.index
              and np.isfinite(s.loc[n, "symptoms"]) and np.isfinite(s.loc[n + 1, "symptoms"])]
        n = int(rng.choice(ok))
        rise = ALLIANCE_RISE_OWN_SD * _own_sd(d[m], "alliance")
        d.loc[m & (d["session"] > n), "symptoms"] -= GAIN_X_CUTOFF * cutoff
        d.loc[m & (d["session"] == n + 1), "alliance"] += rise
        rows.append({"study": "ICBT trial", "patient": p, "event": "sudden_gain", "session": n + 1, "repaired": None,
                     "size": GAIN_X_CUTOFF * cutoff})
    d["symptoms"] = d["symptoms"].round(0).clip(0, 68)  # the instruments' whole-number metric
    d["alliance"] = d["alliance"].round(0).clip(12, 60)
    events = pd.DataFrame(rows).sort_values(["event", "patient"]).reset_index(drop=True)
    planted = {"planted_rupture_share": n_r / len(pats), "planted_gain_share": n_g / len(pats),
               "planted_rupture_own_sd": RUPTURE_OWN_SD, "planted_gain_points": GAIN_X_CUTOFF * cutoff,
               "planted_gain_default_cutoff": cutoff, "planted_alliance_rise_own_sd": ALLIANCE_RISE_OWN_SD}
    return d, events, planted


def icbt() -> dict:
    # seed 004's pattern: within-person alliance → next-week symptoms negative, patient means positively
    # associated, no within-person symptoms → alliance effect; weekly changes and SDs of Table 1's size
    # (SPIN 0-68, WAI-SR summed 12-60); the total effect (raw values, prior symptoms controlled) is negative
    sd_within = 0.3  # SD of the within-person innovations of both series
    sim = simulate_study(
        182,
        range(1, 12),
        study="ICBT trial",
        within_a_to_s=-0.6,
        within_s_to_a=0.0,
        ar_alliance=0.5,
        ar_symptoms=0.6,
        between_corr=0.4,
        sd_within_alliance=sd_within,
        sd_within_symptoms=sd_within,
        symptom_trend=-0.15,
        alliance_trend=0.02,
        sd_symptom_trend=0.05,
        alliance_instrument=Instrument("WAI-SR (12-60)", 44.0, 10.0, 12, 60, 0),
        symptom_instrument=Instrument("SPIN (0-68)", 37.0, 11.0, 0, 68, 0),
        missing_sessions=0.073,
        seed=182,
    )
    data, events, planted = plant_icbt_events(sim.data, seed=183)
    data.to_csv(OUT / "icbt_within_between.csv", index=False)
    events.to_csv(OUT / "icbt_planted_events.csv", index=False)
    t = {k: v for k, v in sim.truth.items() if k != "within_cov"}
    t.update(planted)
    t.update(file="icbt_within_between.csv",
             design="one ICBT-like trial, 182 patients, 11 weekly measurements, ~7% missing weeks; "
                    "within-person alliance -> next-week symptoms negative, between-person association of "
                    "the means positive, no within-person symptoms -> alliance effect; weekly changes of the "
                    "size of seed 004 Table 1; planted alliance ruptures (3.5 x the patient's own SD) and "
                    "sudden gains (1.5 x the default cut-off) followed by an alliance rise (see planted_*)",
             alliance_trend_latent_per_session=0.02, symptom_trend_latent_per_session=-0.15,
             sd_within_innovation=sd_within, planted_events="icbt_planted_events.csv")
    return t


def dyads_bdi() -> dict:
    """Seed 001, Study 1: 96 dyads, 34 therapists, BDI-II before each of 14 sessions, WAI-P and WAI-T after each.

    Therapists first rate the alliance higher than patients; patients' ratings grow faster, so the
    lines cross and the raters do not converge on average. Alliance development (the patient's true
    alliance growth) steepens the symptom decline; convergence has no effect.
    """
    n_therapists = 34
    sim = simulate_dyads(
        96,
        range(1, 15),
        study="Study 1 design: TRD trial (BDI-II)",
        patient_scale=0.9,
        alliance_growth=0.045,
        early_discrepancy=0.0,
        sd_early_discrepancy=0.0,
        mean_convergence=0.0,
        sd_convergence=0.0,
        symptom_instrument=SYMPTOM_INSTRUMENTS[0],
        symptom_intercept=1.38,
        sd_symptom_intercept=0.7,
        sd_symptom_slope=0.1,
        development_on_slope=-0.05,
        convergence_on_slope=0.0,
        convergence_on_intercept=0.0,
        n_therapists=n_therapists,
        seed=96,
    )
    df = sim.data.copy()
    # therapist ratings: start 0.35 above the patient's true level (dyad-specific), grow 0.05 per session less
    # than the patient's, and use a narrower range (shrunk toward the session mean by 0.6)
    rng = np.random.default_rng(9601)
    ids = df["patient"].unique()
    d0 = pd.Series(0.35 + 0.25 * rng.standard_normal(len(ids)), index=ids)
    t0 = df["session"].to_numpy() - 1
    shift = d0.loc[df["patient"]].to_numpy() - 0.05 * t0
    th = df["alliance"].to_numpy() + shift + 0.2 * rng.standard_normal(len(df))
    m = pd.Series(th).groupby(df["session"].to_numpy()).transform("mean").to_numpy()
    df["therapist_alliance"] = np.round(np.clip(m + 0.6 * (th - m), 1, 7), 2)
    df.to_csv(OUT / "dyads_bdi.csv", index=False)
    t = {k: v for k, v in sim.truth.items() if k != "dyads"}
    t.update(file="dyads_bdi.csv", n_therapists=n_therapists, therapist_start_above_patient=0.35,
             therapist_growth_below_patient=0.05, therapist_range_shrink=0.6,
             design="Seed 001 Study 1 design: 96 dyads x sessions 1-14, WAI-P and WAI-T (1-7), BDI-II; "
                    "therapists start higher, patients end higher (no convergence on average); "
                    "alliance development steepens the symptom decline (development_on_slope); "
                    "convergence has no effect on symptoms")
    return t


def dyads_gsi() -> dict:
    """Seed 001, Study 2: naturalistic therapies of varying length; GSI at session 1, 3, 12, 20 and the end.

    210 dyads are simulated on 5 assessment occasions (session 1, 3, 12, 20, termination T2 =
    the dyad's number of sessions); WAI-P and WAI-T at 3, 12, 20 only. 50 dyads end before session
    20 and 21 miss one WAI rating at 3, 12 or 20, so the paper's rules (≥ 20 sessions, complete
    WAI at 3/12/20 and a final GSI) keep 139 dyads. Patients rate higher than therapists and the
    gap closes (convergence on average). More convergence → lower GSI level; none on the slope.
    Dyads differ in their early discrepancy (SD 0.6) and in how much of it closes (SD 0.45), with
    rating noise 0.12 (a 12-item mean): with three rating occasions the convergence score keeps a
    usable reliability (≈ 0.4), as the paper's score must have had to relate to the GSI level.
    """
    n_ok, n_short, n_incomplete = 139, 50, 21
    n = n_ok + n_short + n_incomplete
    sim = simulate_dyads(
        n,
        range(0, 5),
        study="Study 2 design: naturalistic (SCL-90-R GSI)",
        alliance_growth=0.05,
        early_discrepancy=0.45,
        sd_early_discrepancy=0.6,
        mean_convergence=0.6,
        sd_convergence=0.45,
        rating_noise=0.12,
        symptom_instrument=SYMPTOM_INSTRUMENTS[3],
        symptom_intercept=0.3,
        symptom_slope=-0.17,
        sd_symptom_intercept=0.95,
        sd_symptom_slope=0.12,
        convergence_on_intercept=-0.35,
        convergence_on_slope=0.0,
        symptom_noise=0.35,
        n_therapists=52,
        seed=139,
    )
    df = sim.data.copy()
    rng = np.random.default_rng(1390)
    ids = df["patient"].unique()
    order = rng.permutation(len(ids))
    short = set(ids[order[:n_short]])
    incomplete = set(ids[order[n_short:n_short + n_incomplete]])
    # treatment length: >= 21 sessions for the eligible dyads (long right tail), < 20 for the short ones
    length = {}
    for p in ids:
        if p in short:
            length[p] = int(rng.integers(4, 20))
        else:
            length[p] = int(min(21 + np.round(rng.lognormal(2.6, 0.7)), 160))
    occ = {0: 1, 1: 3, 2: 12, 3: 20}
    df["session"] = [occ.get(s, length[p]) for p, s in zip(df["patient"], df["session"])]
    # short treatments: occasions after the end do not exist; the end (T2) is the last session
    keep = [(sess <= length[p]) for p, sess in zip(df["patient"], df["session"])]
    df = df.loc[keep].reset_index(drop=True)
    df = df.drop_duplicates(["patient", "session"], keep="last").reset_index(drop=True)
    # WAI only after sessions 3, 12 and 20
    no_wai = ~df["session"].isin([3, 12, 20])
    df.loc[no_wai, ["alliance", "therapist_alliance"]] = np.nan
    # incomplete dyads: one WAI occasion missing (patient or therapist)
    for p in sorted(incomplete):
        rows = np.flatnonzero((df["patient"] == p).to_numpy() & df["session"].isin([3, 12, 20]).to_numpy())
        r = rows[int(rng.integers(len(rows)))]
        df.loc[r, "alliance" if rng.random() < 0.5 else "therapist_alliance"] = np.nan
    df["n_sessions"] = df["patient"].map(length).astype("int64")
    df["session"] = df["session"].astype("int64")
    df = df.sort_values(["patient", "session"], kind="stable").reset_index(drop=True)
    df.to_csv(OUT / "dyads_gsi.csv", index=False)
    t = {k: v for k, v in sim.truth.items() if k != "dyads"}
    t.update(sd_early_discrepancy=0.6, sd_convergence=0.45, rating_noise=0.12)
    t.update(file="dyads_gsi.csv", n_dyads_in_file=n, n_dyads_after_rules=n_ok, n_short=n_short,
             n_incomplete=n_incomplete, sessions="GSI at 1, 3, 12, 20 and termination (n_sessions); "
             "WAI at 3, 12, 20",
             design="Seed 001 Study 2 design: 210 dyads of varying length; the paper's rules keep 139; "
                    "linear in the assessment occasion (0-4); convergence lowers the GSI level, not its slope")
    return t


def main() -> None:
    truth = {"ipd": ipd(), "icbt": icbt(), "dyads_bdi": dyads_bdi(), "dyads_gsi": dyads_gsi()}
    (OUT / "truth.json").write_text(json.dumps(truth, indent=2, default=float))
    for f in sorted(OUT.glob("*.csv")):
        d = pd.read_csv(f)
        print(f"{f.name}: {len(d)} rows")


if __name__ == "__main__":
    main()
