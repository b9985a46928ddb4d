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
    sim = simulate_study(
        182,
        range(1, 12),
        study="ICBT trial",
        within_a_to_s=-0.6,
        within_s_to_a=0.0,
        ar_alliance=0.5,
        ar_symptoms=0.6,
        between_corr=0.4,
        sd_within_alliance=0.3,
        sd_within_symptoms=0.3,
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
             sd_within_innovation=0.3, planted_events="icbt_planted_events.csv")
    return t


def dyads_bdi() -> dict:
    sim = simulate_dyads(
        96,
        range(1, 15),
        study="TRD trial (BDI-II)",
        symptom_instrument=SYMPTOM_INSTRUMENTS[0],
        symptom_slope=-0.09,
        convergence_on_slope=0.0,
        convergence_on_intercept=0.0,
        seed=96,
    )
    sim.data.to_csv(OUT / "dyads_bdi.csv", index=False)
    t = {k: v for k, v in sim.truth.items() if k != "dyads"}
    t.update(file="dyads_bdi.csv",
             design="96 dyads x 14 sessions, patient and therapist WAI (1-7), BDI-II; "
                    "convergence has no effect on symptoms (as the paper found)")
    return t


def dyads_gsi() -> dict:
    sim = simulate_dyads(
        139,
        range(1, 5),
        study="Naturalistic (SCL-90-R GSI)",
        symptom_instrument=SYMPTOM_INSTRUMENTS[3],
        symptom_slope=-0.25,
        sd_symptom_slope=0.1,
        convergence_on_intercept=-0.35,
        convergence_on_slope=0.0,
        seed=139,
    )
    df = sim.data.copy()
    # Measurement occasions: sessions 3, 12, 20 and termination (25-40, per dyad).
    rng = np.random.default_rng(1390)
    term = dict(zip(df["patient"].unique(), rng.integers(25, 41, size=df["patient"].nunique())))
    occ = {1: 3, 2: 12, 3: 20}
    df["session"] = [occ.get(s, term[p]) for p, s in zip(df["patient"], df["session"])]
    df["session"] = df["session"].astype("int64")
    df.to_csv(OUT / "dyads_gsi.csv", index=False)
    t = {k: v for k, v in sim.truth.items() if k != "dyads"}
    t.update(file="dyads_gsi.csv",
             sessions="3, 12, 20 and termination (25-40)",
             design="139 dyads measured at sessions 3, 12, 20 and termination; GSI; "
                    "dyads that converge more have lower symptom levels (intercept), no slope effect. "
                    "Note: simulated on 4 equally spaced occasions, then relabelled to the session numbers.")
    return t


def main() -> None:
    truth = {"ipd": ipd(), "icbt": icbt(), "dyads_bdi": dyads_bdi(), "dyads_gsi": dyads_gsi()}
    (OUT / "truth.json").write_text(json.dumps(truth, indent=2, default=float))
    for f in sorted(OUT.glob("*.csv")):
        d = pd.read_csv(f)
        print(f"{f.name}: {len(d)} rows")


if __name__ == "__main__":
    main()
