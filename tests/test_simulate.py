"""analysis.simulate: determinism and recovery of the documented truth."""

import numpy as np
import pandas as pd
import pytest

from analysis.simulate import simulate_collection, simulate_dyads, simulate_study


def _within_ols(df, x, y):
    """Pooled within-patient OLS of y at t+1 on x and y at t (large T: Nickell bias small)."""
    d = df.sort_values(["patient", "session"]).copy()
    d["lead"] = d.groupby("patient")[y].shift(-1)
    d = d.dropna(subset=[x, y, "lead"])
    for c in (x, y, "lead"):
        d[c + "_w"] = d[c] - d.groupby("patient")[c].transform("mean")
    X = np.c_[d[x + "_w"], d[y + "_w"]]
    return np.linalg.lstsq(X, d["lead_w"].to_numpy(), rcond=None)[0]


def test_deterministic_given_seed():
    a = simulate_study(30, range(1, 6), seed=5, missing_sessions=0.1, therapist=True).data
    b = simulate_study(30, range(1, 6), seed=5, missing_sessions=0.1, therapist=True).data
    c = simulate_study(30, range(1, 6), seed=6, missing_sessions=0.1, therapist=True).data
    pd.testing.assert_frame_equal(a, b)
    assert not a["alliance"].equals(c["alliance"])


def test_recovers_cross_lagged_effects_with_long_series():
    sim = simulate_study(1500, range(1, 41), within_a_to_s=-0.25, within_s_to_a=0.15,
                         ar_alliance=0.2, ar_symptoms=0.3, seed=11)
    b_as, ar_s = _within_ols(sim.data, "alliance", "symptoms")
    b_sa, ar_a = _within_ols(sim.data, "symptoms", "alliance")
    # T = 40 -> Nickell bias of the autoregression about -(1 + rho)/39 ~ -0.03
    assert b_as == pytest.approx(-0.25, abs=0.02)
    assert b_sa == pytest.approx(0.15, abs=0.02)
    assert ar_s == pytest.approx(0.3 - 1.3 / 39, abs=0.02)
    assert ar_a == pytest.approx(0.2 - 1.2 / 39, abs=0.02)


def test_between_correlation_of_person_means():
    # small within noise, so the observed person means are close to the latent ones
    sim = simulate_study(4000, range(1, 31), between_corr=0.5, sd_within_alliance=0.2, sd_within_symptoms=0.2,
                         seed=3)
    m = sim.data.groupby("patient")[["alliance", "symptoms"]].mean()
    assert m.corr().iloc[0, 1] == pytest.approx(0.5, abs=0.04)


def test_missing_sessions_rate_and_no_patient_lost():
    sim = simulate_study(400, range(1, 11), missing_sessions=0.2, seed=2)
    assert sim.data["patient"].nunique() == 400
    share = 1 - len(sim.data) / (400 * 10)
    assert 0.16 < share < 0.22


def test_nonstationary_var_rejected():
    with pytest.raises(ValueError, match="stationary"):
        simulate_study(10, range(1, 5), ar_alliance=0.99, ar_symptoms=0.99, within_a_to_s=0.5, within_s_to_a=0.5)


def test_collection_heterogeneity_matches_tau():
    sim = simulate_collection(k=400, n_patients=5, sessions=range(1, 3), tau_a_to_s=0.07, instruments=False,
                              missing_sessions=0.0, seed=9)
    st = sim.truth["studies"]
    assert st["within_a_to_s"].std() == pytest.approx(0.07, rel=0.15)
    assert st["within_a_to_s"].mean() == pytest.approx(-0.10, abs=0.01)
    assert sim.data["study"].nunique() == 400


def test_planted_events_are_listed_and_visible():
    sim = simulate_study(300, range(1, 12), plant_ruptures=0.3, plant_gains=0.3, seed=4)
    ev = sim.events
    assert set(ev["event"]) == {"rupture", "sudden_gain"}
    r = ev[ev["event"] == "rupture"].iloc[0]
    series = sim.data[sim.data["patient"] == r["patient"]].set_index("session")["alliance"]
    # the dipped session is the patient's lowest or close to it
    assert series[r["session"]] < series.mean() - 0.8 * series.std()


def test_dyads_therapist_gap_closes():
    sim = simulate_dyads(300, range(1, 15), early_discrepancy=0.6, mean_convergence=0.8, rating_noise=0.1, seed=1)
    d = sim.data
    gap = (d["alliance"] - d["therapist_alliance"]).groupby(d["session"]).mean()
    assert gap.iloc[0] == pytest.approx(0.6, abs=0.08)
    assert gap.iloc[-1] == pytest.approx(0.6 * (1 - sim.truth["dyads"]["convergence_share"].mean()), abs=0.08)


def test_cross_level_interaction_is_planted_and_recovered():
    """κ_A < 0: patients with a higher alliance mean have a more negative alliance → symptoms effect; the
    stage-1 between × within interaction recovers the sign, and κ = 0 plants none."""
    from analysis.lagged import LagOptions, fit_study
    from analysis.simulate import simulate_study

    o = LagOptions(cross_level=True)
    planted = simulate_study(600, range(1, 9), cross_level_alliance=-0.15, seed=11).data
    c = fit_study(planted, o).coef("interaction")
    assert c["ci_high"] < 0
    null = simulate_study(600, range(1, 9), seed=11).data
    c0 = fit_study(null, o).coef("interaction")
    assert c0["ci_low"] < 0 < c0["ci_high"]
