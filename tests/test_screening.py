"""Screening: checklist thresholds, verdict, reference handling, and the figure.

Data are built by hand here (a person level plus session noise on plausible
scales) so that each test controls exactly the property it checks.
"""

from __future__ import annotations

import base64
import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.lagged import LagOptions, fit_study
from analysis.meta import random_effects
from analysis.plots_meta import cell_annotations
from analysis.plots_screening import NEW_COLOR, screening_forest_figure
from analysis.screening import (
    THRESHOLDS,
    Effect,
    Thresholds,
    collection_reference,
    effect_from_fit,
    manual_reference,
    place,
    screen_study,
)

DIRS = ("alliance_to_symptoms", "symptoms_to_alliance")


def study(n_patients=40, n_sessions=8, seed=1, label="Hand-made", between=(0.5, 5.0), within=(0.4, 3.0),
          first=1) -> pd.DataFrame:
    """Canonical long data: alliance ≈ 4 ± person ± session noise (1–7 metric),
    symptoms ≈ 20 ± person ± session noise, with a small cross-lag."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_patients):
        ma = 4.0 + between[0] * rng.standard_normal()
        ms = 20.0 + between[1] * rng.standard_normal()
        a_prev = 0.0
        for t in range(n_sessions):
            ea = within[0] * rng.standard_normal()
            es = within[1] * rng.standard_normal() - 0.5 * within[1] * a_prev
            a_prev = ea / max(within[0], 1e-12)
            rows.append((label, f"P{i + 1:03d}", first + t, round(ma + ea, 3), round(ms + es, 3)))
    return pd.DataFrame(rows, columns=["study", "patient", "session", "alliance", "symptoms"])


def marks(report) -> dict:
    return {c.item: c.mark for c in report.checks}


# --------------------------------------------------------------------------- checklist and verdict


def test_good_study_passes_every_check():
    df = study()
    fits = {d: fit_study(df, LagOptions(), d) for d in DIRS}
    r = screen_study(df, LagOptions(), fits)
    assert set(marks(r).values()) == {"pass"}, r.to_frame()
    assert r.verdict.level == "usable"
    assert r.verdict.text.startswith("Usable")
    assert r.stats["n_patients"] == 40
    assert r.stats["sessions_median"] == 8
    assert r.stats["pairs_alliance_to_symptoms"] == 40 * 7
    assert list(r.to_frame().columns) == ["check", "result", "mark", "reason"]


def test_five_patients_is_usable_with_cautions():
    df = study(n_patients=5, n_sessions=8)
    fits = {d: fit_study(df, LagOptions(), d) for d in DIRS}
    r = screen_study(df, LagOptions(), fits)
    m = marks(r)
    assert m["Patients"] == "caution"
    assert "fail" not in m.values()
    assert m["Pairs for lag 1"] == "caution"  # 35 pairs < 100
    assert r.verdict.level == "usable with cautions"
    assert "only 5 patients" in r.verdict.text


@pytest.mark.parametrize(("n", "mark"), [(2, "fail"), (3, "caution"), (9, "caution"), (10, "pass")])
def test_patient_thresholds(n, mark):
    assert THRESHOLDS.patients_fail == 3 and THRESHOLDS.patients_caution == 10
    r = screen_study(study(n_patients=n, n_sessions=20))
    assert marks(r)["Patients"] == mark


def test_thresholds_are_configurable():
    r = screen_study(study(), thresholds=Thresholds(patients_caution=50))
    assert marks(r)["Patients"] == "caution"


def test_one_session_per_patient_is_not_usable():
    df = study(n_patients=30, n_sessions=1)
    r = screen_study(df)
    m = marks(r)
    assert m["Sessions per patient"] == "fail"
    assert m["Pairs for lag 1"] == "fail"
    assert m["Within-patient SD of alliance"] == "fail"
    assert r.verdict.level == "not usable"
    assert r.verdict.text.startswith("Not usable: one session per patient")
    assert r.verdict.text.count("one session per patient") == 1  # the same reason is not repeated


def test_constant_alliance_is_not_usable_and_the_model_fails():
    df = study()
    df["alliance"] = 5.0
    fits = {d: fit_study(df, LagOptions(), d) for d in DIRS}
    r = screen_study(df, LagOptions(), fits)
    m = marks(r)
    assert m["Within-patient SD of alliance"] == "fail"
    assert m["ICC of alliance"] == "caution"  # not estimable
    assert m["Stage-1 model"] == "fail"
    # pairs exist: the lack of variance is reported where it belongs, not as "no pairs"
    assert m["Pairs for lag 1"] == "pass"
    assert m["Within-patient SD of symptoms"] == "pass"
    assert r.verdict.level == "not usable"
    assert "alliance rating is constant" in r.verdict.text


def test_alliance_constant_within_each_patient_fails_within_sd():
    df = study()
    df["alliance"] = df.groupby("patient")["alliance"].transform("mean").round(2)
    r = screen_study(df)
    c = r.check("Within-patient SD of alliance")
    assert c.mark == "fail"
    assert "does not vary within patients" in r.verdict.text


def test_median_sessions_thresholds():
    assert marks(screen_study(study(n_patients=60, n_sessions=3)))["Sessions per patient"] == "caution"
    assert marks(screen_study(study(n_patients=60, n_sessions=4)))["Sessions per patient"] == "pass"


def test_share_of_single_session_patients():
    df = study(n_patients=40, n_sessions=8)
    # 5 of 40 patients (12.5 % > 10 %) keep only their first session
    drop = df["patient"].isin([f"P{i:03d}" for i in range(1, 6)]) & (df["session"] > 1)
    r = screen_study(df[~drop])
    assert r.check("Sessions per patient").mark == "caution"
    assert "5 of 40 patients" in r.check("Sessions per patient").reason
    drop = df["patient"].isin([f"P{i:03d}" for i in range(1, 5)]) & (df["session"] > 1)  # 10 %: not above
    assert screen_study(df[~drop]).check("Sessions per patient").mark == "pass"


def test_missing_values_thresholds():
    df = study()
    rng = np.random.default_rng(0)
    idx = rng.choice(len(df), size=int(0.4 * len(df)), replace=False)
    heavy = df.copy()
    heavy.loc[idx, "symptoms"] = np.nan
    r = screen_study(heavy)
    assert r.check("Missing values").mark == "caution"
    assert r.stats["missing_symptoms"] == pytest.approx(0.4, abs=1 / len(df))
    light = df.copy()
    light.loc[idx[: int(0.2 * len(df))], "symptoms"] = np.nan
    assert screen_study(light).check("Missing values").mark == "pass"
    never = df.copy()
    never["alliance"] = np.nan
    r = screen_study(never)
    assert r.check("Missing values").mark == "fail"
    assert r.verdict.level == "not usable"


def test_skipped_sessions_counted_by_hand():
    # 10 patients with sessions 1..6; patients P001–P004 skip sessions 3 and 4
    df = study(n_patients=10, n_sessions=6)
    skip = df["patient"].isin(["P001", "P002", "P003", "P004"]) & df["session"].isin([3, 4])
    r = screen_study(df[~skip])
    assert r.stats["skipped_sessions"] == pytest.approx(8 / 60)
    # a planned design (sessions 3, 12, 20 for everybody) has nothing skipped
    planned = study(n_patients=20, n_sessions=3)
    planned["session"] = planned["session"].map({1: 3, 2: 12, 3: 20})
    assert screen_study(planned).stats["skipped_sessions"] == 0.0


def test_skipped_sessions_above_threshold_is_a_caution():
    df = study(n_patients=40, n_sessions=10)
    rng = np.random.default_rng(3)
    inner = df["session"].between(2, 9)
    skip = inner & (rng.random(len(df)) < 0.45)
    r = screen_study(df[~skip])
    assert r.stats["skipped_sessions"] > 0.30
    assert r.check("Missing values").mark == "caution"
    assert "sessions" in r.check("Missing values").reason


def test_icc_matches_the_anova_estimator_for_balanced_data():
    df = study(n_patients=50, n_sessions=6, seed=4)
    r = screen_study(df)
    for var in ("alliance", "symptoms"):
        x = df.pivot(index="patient", columns="session", values=var).to_numpy()
        n = x.shape[1]
        msw = ((x - x.mean(1, keepdims=True)) ** 2).sum() / (x.shape[0] * (n - 1))
        msb = n * ((x.mean(1) - x.mean()) ** 2).sum() / (x.shape[0] - 1)
        tau2 = (msb - msw) / n
        assert r.stats[f"icc_{var}"] == pytest.approx(tau2 / (tau2 + msw), abs=1e-6)
        # pooled within-patient SD
        assert r.stats[f"within_sd_{var}"] == pytest.approx(math.sqrt(msw), rel=1e-9)


def test_high_icc_is_a_caution():
    df = study(between=(2.0, 5.0), within=(0.2, 3.0))  # alliance: ICC ≈ 4 / 4.04
    r = screen_study(df)
    assert r.stats["icc_alliance"] > 0.9
    assert r.check("ICC of alliance").mark == "caution"
    assert r.check("ICC of symptoms").mark == "pass"
    assert "alliance rating varies little within patients" in r.verdict.text


def test_ceiling_share_of_constant_patients():
    df = study()
    ceiling = df["patient"].isin([f"P{i:03d}" for i in range(1, 13)])  # 12 of 40 = 30 %
    df.loc[ceiling, "alliance"] = 7.0
    r = screen_study(df)
    assert r.stats["constant_share_alliance"] == pytest.approx(0.30)
    assert r.check("Within-patient SD of alliance").mark == "caution"
    df.loc[df["patient"].isin([f"P{i:03d}" for i in range(11, 13)]), "alliance"] += np.linspace(0, 0.5, 16)
    assert screen_study(df).check("Within-patient SD of alliance").mark == "pass"  # 10 of 40 = 25 %


def test_range_problems_come_from_validate():
    df = study()
    df.loc[3, "symptoms"] = -99.0
    r = screen_study(df)
    c = r.check("Range problems")
    assert c.mark == "caution"
    assert "negative" in c.reason
    assert r.verdict.level == "usable with cautions"


def test_data_errors_are_a_fail_not_an_exception():
    df = study()
    dup = pd.concat([df, df.iloc[:1]], ignore_index=True)
    r = screen_study(dup)
    assert r.verdict.level == "not usable"
    assert r.checks[0].item == "Data errors"


def test_window_without_rows_fails():
    r = screen_study(study(first=20), LagOptions(sessions=(1, 7)))
    assert r.verdict.level == "not usable"
    assert "window" in r.checks[0].reason


def test_pairs_by_session_number_and_next_observed():
    df = study(n_patients=30, n_sessions=8)
    df["session"] = df["session"] * 2  # sessions 2, 4, …, 16: no session t + 1 anywhere
    r = screen_study(df, LagOptions())
    c = r.check("Pairs for lag 1")
    assert c.mark == "fail"
    assert "next observed" in c.reason
    assert "next observed session would give more" in r.verdict.text
    r2 = screen_study(df, LagOptions(pairing="next_observed"))
    assert r2.check("Pairs for lag 1").mark == "pass"
    assert r2.stats["pairs_alliance_to_symptoms"] == 30 * 7


def test_lag_changes_the_pair_count():
    df = study(n_patients=30, n_sessions=8)
    r = screen_study(df, LagOptions(lag=3))
    assert r.stats["pairs_alliance_to_symptoms"] == 30 * 5
    assert r.check("Pairs for lag 3").mark == "pass"


def test_several_studies_or_missing_columns_raise_value_error():
    two = pd.concat([study(label="A"), study(label="B")])
    with pytest.raises(ValueError, match="one study at a time"):
        screen_study(two)
    with pytest.raises(ValueError, match="symptoms"):
        screen_study(study().drop(columns="symptoms"))


# --------------------------------------------------------------------------- references and placement


def _meta(k=6, seed=0):
    rng = np.random.default_rng(seed)
    yi = -0.1 + 0.08 * rng.standard_normal(k)
    vi = (0.03 + 0.03 * rng.random(k)) ** 2
    return random_effects(yi, vi, labels=[f"S{i}" for i in range(k)], n_patients=np.arange(k) * 10 + 50)


def test_collection_reference_leaves_the_screened_study_out():
    m = _meta()
    full = collection_reference(m)
    assert full.k == 6 and full.estimate == m.estimate and full.pi_low == m.pi_low
    assert [s.label for s in full.studies] == list(m.labels)
    without = collection_reference(m, exclude="S2")
    keep = [i for i in range(6) if i != 2]
    direct = random_effects(m.yi[keep], m.vi[keep])
    assert without.k == 5
    assert "S2" not in [s.label for s in without.studies]
    assert without.estimate == pytest.approx(direct.estimate, abs=1e-12)
    assert without.pi_high == pytest.approx(direct.pi_high, abs=1e-12)
    assert "without S2" in without.label
    assert collection_reference(random_effects(m.yi[:2], m.vi[:2], labels=["a", "b"]), exclude="a") is None


def test_manual_reference_validation():
    r = manual_reference(-0.1, -0.15, -0.05, -0.3, 0.1)
    assert r.has_ci and r.has_pi and r.source == "manual"
    assert not manual_reference(-0.1).has_pi
    with pytest.raises(ValueError, match="Type the reference estimate"):
        manual_reference(None)
    with pytest.raises(ValueError, match="both ends"):
        manual_reference(-0.1, -0.2, None)
    with pytest.raises(ValueError, match="must contain the estimate"):
        manual_reference(-0.1, -0.05, 0.1)
    with pytest.raises(ValueError, match="at least as wide"):
        manual_reference(-0.1, -0.2, 0.0, -0.15, -0.05)


@pytest.mark.parametrize(("est", "inside", "side"), [(-0.3, True, "inside"), (0.1, True, "inside"),
                                                     (0.0, True, "inside"), (-0.31, False, "below"),
                                                     (0.12, False, "above")])
def test_place_against_the_prediction_interval(est, inside, side):
    ref = manual_reference(-0.1, -0.15, -0.05, -0.3, 0.1)
    p = place(Effect("new", est, est - 0.05, est + 0.05), ref)
    assert p.inside_pi is inside
    assert p.side == side
    assert ("inside" if inside else "outside") in p.sentence


def test_place_without_prediction_interval_or_estimate():
    p = place(Effect("new", 0.2, 0.1, 0.3), manual_reference(-0.1, -0.15, -0.05))
    assert p.inside_pi is None
    assert "outside" in p.sentence and "confidence interval" in p.sentence
    assert place(None, manual_reference(-0.1)).inside_pi is None


def test_effect_from_fit():
    df = study()
    f = fit_study(df, LagOptions(), "alliance_to_symptoms")
    e = effect_from_fit(f)
    c = f.coef("within")
    assert (e.estimate, e.ci_low, e.ci_high, e.n_pairs) == (c["estimate"], c["ci_low"], c["ci_high"], f.n_pairs)
    df["alliance"] = 5.0
    assert effect_from_fit(fit_study(df, LagOptions(), "alliance_to_symptoms")) is None


# --------------------------------------------------------------------------- the figure


def _decode(obj):
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            return np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"])).tolist()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def _json(fig):
    return _decode(json.loads(fig.to_json()))


def _role(fj, role, direction):
    found = [t for t in fj["data"] if (t.get("meta") or {}).get("role") == role
             and t["meta"].get("direction") == direction]
    assert len(found) <= 1
    return found[0] if found else None


def test_figure_places_the_new_study_at_its_estimate_and_flags_the_pi():
    m = _meta(k=8, seed=2)
    ref = collection_reference(m)
    inside = Effect("New", ref.pi_low + 0.25 * (ref.pi_high - ref.pi_low), -0.3, 0.05)
    outside = Effect("New", ref.pi_high + 0.05, ref.pi_high, ref.pi_high + 0.1)
    fig = screening_forest_figure({"alliance_to_symptoms": inside, "symptoms_to_alliance": outside},
                           {"alliance_to_symptoms": ref, "symptoms_to_alliance": ref},
                           titles={"alliance_to_symptoms": "A → S", "symptoms_to_alliance": "S → A"},
                           new_label="Screened: New")
    fj = _json(fig)
    meta = fj["layout"]["meta"]
    assert meta["inside_pi"] == {"alliance_to_symptoms": True, "symptoms_to_alliance": False}
    for d, e in (("alliance_to_symptoms", inside), ("symptoms_to_alliance", outside)):
        t = _role(fj, "new", d)
        assert t["x"] == [pytest.approx(e.estimate)]
        assert t["y"] == [meta["y_new"]]
        assert t["marker"]["color"] == NEW_COLOR
        assert t["error_x"]["array"] == [pytest.approx(e.ci_high - e.estimate)]
        assert t["error_x"]["arrayminus"] == [pytest.approx(e.estimate - e.ci_low)]
        studies = _role(fj, "studies", d)
        assert studies["x"] == pytest.approx(list(m.yi))
        assert studies["marker"]["color"] != NEW_COLOR
        pi = _role(fj, "pi", d)
        assert pi["x"] == [pytest.approx(ref.pi_low), pytest.approx(ref.pi_high)]
        diamond = _role(fj, "reference", d)
        assert min(diamond["x"]) == pytest.approx(ref.ci_low) and max(diamond["x"]) == pytest.approx(ref.ci_high)
    verdicts = [a["text"] for a in fj["layout"]["annotations"] if a.get("name") == "verdict"]
    assert "A → S" in verdicts[0] and "inside the 95% prediction interval" in verdicts[0]
    assert "S → A" in verdicts[1] and "outside the 95% prediction interval (above)" in verdicts[1]
    # the new study has its own labelled row, below the collection's studies
    labels = {a["text"]: a["y"] for a in cell_annotations(fj["layout"]["annotations"]) if a.get("name") == "Study label"}
    new_label = next(k for k in labels if "Screened: New" in k)
    assert labels[new_label] == meta["y_new"]
    assert all(labels[lab] > meta["y_new"] for lab in m.labels)


def test_figure_with_manual_reference_and_a_failed_direction():
    ref = manual_reference(-0.1, -0.15, -0.05)  # no PI
    e = Effect("New", -0.2, -0.3, -0.1)
    fig = screening_forest_figure({"alliance_to_symptoms": e, "symptoms_to_alliance": None},
                           {"alliance_to_symptoms": ref, "symptoms_to_alliance": None})
    fj = _json(fig)
    assert fj["layout"]["meta"]["inside_pi"] == {"alliance_to_symptoms": None, "symptoms_to_alliance": None}
    assert _role(fj, "new", "symptoms_to_alliance") is None
    assert _role(fj, "new", "alliance_to_symptoms")["x"] == [pytest.approx(-0.2)]
    assert _role(fj, "pi", "alliance_to_symptoms") is None
    verdicts = [a["text"] for a in fj["layout"]["annotations"] if a.get("name") == "verdict"]
    assert "no prediction interval" in verdicts[0]
    assert "no estimate" in verdicts[1]


def test_figure_needs_a_direction():
    with pytest.raises(ValueError):
        screening_forest_figure({}, {})


def test_verdict_under_the_forest_is_coloured_text_not_markup_shown_as_text():
    """Defect 2 (issue 23): after an upload the footer read the literal
    "<span style='color:#b22222'>new study outside …</span>": safe_figure (the sink) turns a styled span into
    text, so the verdict's colour must come from the annotation's font."""
    from analysis.export import safe_figure
    from analysis.plots_meta import POOLED_COLOR

    m = _meta(k=8, seed=2)
    ref = collection_reference(m)
    outside = Effect("New", ref.pi_high + 0.05, ref.pi_high, ref.pi_high + 0.1)
    fig = safe_figure(screening_forest_figure({"alliance_to_symptoms": outside}, {"alliance_to_symptoms": ref}))
    verdict = [a for a in _json(fig)["layout"]["annotations"] if a.get("name") == "verdict"]
    assert len(verdict) == 1
    assert verdict[0]["text"] == "new study outside the 95% prediction interval (above)"
    assert verdict[0]["font"]["color"] == POOLED_COLOR
    texts = " ".join(str(a.get("text")) for a in _json(fig)["layout"]["annotations"])
    assert "&lt;" not in texts and "span" not in verdict[0]["text"]
