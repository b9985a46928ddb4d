"""Coverage of the pooled intervals on the user's design (analysis/coverage.py, METHODS §6d).

The issue's design: studies of 50–300 patients with 7 sessions, true within effects ~ N(−0.10, 0.05²).
"""

import numpy as np
import pytest

from analysis.coverage import PANEL_CHECK, interval_coverage, limit_note
from analysis.lagged import LagOptions
from analysis.pipeline import two_stage
from analysis.simulate import simulate_collection

A2S = ("alliance_to_symptoms",)
# The design with a stage-1 estimator that is unbiased (no autoregression, no reverse effect, no
# prior-outcome term, raw latent units; see test_pipeline's coverage test), so that the stage-2 simulation
# of the panel and the patient-level replications target the same number.
UNBIASED = {"ar_alliance": 0.0, "ar_symptoms": 0.0, "mean_s_to_a": 0.0, "tau_s_to_a": 0.0}
OPTIONS = LagOptions(directions=A2S, control_prior_outcome=False, standardize=False)


def _design_ses(k, seed):
    sim = simulate_collection(k, (50, 300), range(1, 8), mean_a_to_s=-0.10, tau_a_to_s=0.05, instruments=False,
                              seed=seed, **UNBIASED)
    res = two_stage(sim.data, OPTIONS)
    return res.pooled["alliance_to_symptoms"], np.sqrt(np.asarray(res.pooled["alliance_to_symptoms"].vi))


def test_knapp_hartung_adhoc_covers_at_k5_and_z_does_not():
    """Seeded: at k = 5 the default (Knapp–Hartung, ad hoc) covers ≥ 93%; z falls short of 95%."""
    _m, se = _design_ses(5, 11)
    r = interval_coverage(se, 0.05, reps=4000, bayes_reps=300, seed=3)
    assert r.coverage("adhoc") >= 0.93
    assert r.coverage("z") < 0.93 < r.coverage("adhoc")
    assert r.coverage("bayes") >= 0.90
    # the z prediction interval covers a new study far less often than 95% at k = 5 (issue: 80.5%)
    t = r.to_frame().set_index("interval")
    assert t.loc["z", "pi_coverage"] < 0.88


def test_coverage_is_seeded_and_reports_progress():
    se = np.array([0.05, 0.04, 0.06])
    seen = []
    a = interval_coverage(se, 0.03, reps=200, bayes_reps=30, seed=9, progress=seen.append)
    b = interval_coverage(se, 0.03, reps=200, bayes_reps=30, seed=9)
    assert a.to_frame().equals(b.to_frame())
    assert seen[-1] == 1.0 and len(seen) >= 3
    assert "k = 3" in a.summary()


def test_without_heterogeneity_every_interval_is_near_nominal_or_wider():
    se = np.full(10, 0.04)
    r = interval_coverage(se, 0.0, reps=2000, bayes_reps=100, seed=2)
    assert r.coverage("z") >= 0.93 and r.coverage("adhoc") >= 0.94


def test_the_limit_note_states_the_check():
    note = limit_note()
    u, b = PANEL_CHECK["unbiased"], PANEL_CHECK["default_model"]
    assert abs(u["patient_level"] - u["panel"]) <= 0.02 < b["panel"] - b["patient_level"]
    for x in (u["patient_level"], u["panel"], b["patient_level"], b["panel"]):
        assert f"{100 * x:.1f}%" in note
    assert "upper bound" in note and "unbiased" in note


def test_bad_design_is_a_message():
    with pytest.raises(ValueError, match="at least two studies"):
        interval_coverage([0.1], 0.05)
    with pytest.raises(ValueError, match="τ must be"):
        interval_coverage([0.1, 0.2], -1.0)


@pytest.mark.slow
def test_panel_agrees_with_the_ipd_simulation_within_2_points():
    """The panel's stage-2 simulation on one collection's design vs. full patient-level replications
    of the issue's design at k = 5 (seeded): the Knapp–Hartung (ad hoc) interval, the default, covers
    ≥ 93% of the patient-level replications (96.7%), and the panel's coverage agrees within 2 points
    (97.3%). On a design whose stage-1 estimates are biased the panel cannot agree (it simulates
    stage 2 only): the page says so (METHODS §6d)."""
    hits, ses = [], []
    truth = -0.10
    for rep in range(300):
        sim = simulate_collection(5, (50, 300), range(1, 8), mean_a_to_s=truth, tau_a_to_s=0.05, instruments=False,
                                  seed=5000 + rep, **UNBIASED)
        m = two_stage(sim.data, OPTIONS).pooled["alliance_to_symptoms"]
        # the collection's own mean of its studies' true effects is what the pooled CI targets
        hits.append(m.ci_low <= truth <= m.ci_high)
        ses.append(np.sqrt(np.asarray(m.vi)))
    ipd = float(np.mean(hits))
    panel = interval_coverage(np.median(np.sort(np.array(ses), axis=1), axis=0), 0.05, reps=4000,
                              bayes_reps=0, seed=1).coverage("adhoc")
    assert ipd >= 0.93, ipd
    assert abs(ipd - panel) <= 0.02, (ipd, panel)
    # the numbers the page states (analysis.coverage.PANEL_CHECK, limit_note) are this test's
    check = PANEL_CHECK["unbiased"]
    assert (round(ipd, 3), round(panel, 3)) == (check["patient_level"], check["panel"])
