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
        plant_ruptures=0.12,
        plant_gains=0.12,
        seed=182,
    )
    sim.data.to_csv(OUT / "icbt_within_between.csv", index=False)
    sim.events.to_csv(OUT / "icbt_planted_events.csv", index=False)
    t = {k: v for k, v in sim.truth.items() if k != "within_cov"}
    t.update(file="icbt_within_between.csv",
             design="one ICBT-like trial, 182 patients, 11 weekly measurements, ~7% missing weeks; "
                    "within-person alliance -> next-week symptoms negative, between-person association of "
                    "the means positive, no within-person symptoms -> alliance effect; weekly changes of the "
                    "size of seed 004 Table 1; 12% of patients with a planted alliance rupture and 12% with "
                    "a planted sudden gain",
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
    """
    n_ok, n_short, n_incomplete = 139, 50, 21
    n = n_ok + n_short + n_incomplete
    sim = simulate_dyads(
        n,
        range(0, 5),
        study="Study 2 design: naturalistic (SCL-90-R GSI)",
        alliance_growth=0.05,
        early_discrepancy=0.45,
        mean_convergence=0.6,
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
