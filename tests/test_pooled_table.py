"""The pooled table readers see (issue 13): direction first, readable headers, df "—"
(not "None") for a z-test, APA p values, small τ² with significant digits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from analysis.meta import random_effects, results_table

REF = json.loads((Path(__file__).parent / "reference" / "meta_reference.json").read_text())
BCG = REF["datasets"]["bcg"]
Y = np.asarray(BCG["yi"], float)
V = np.asarray(BCG["vi"], float)


def test_direction_first_readable_headers_and_apa_numbers():
    z = random_effects(Y, V)  # p of the pooled estimate is about 3e-6
    kh = random_effects(Y, V, test="knha")
    t = results_table({"alliance_to_symptoms": z, "symptoms_to_alliance": kh},
                      {"alliance_to_symptoms": "Alliance → symptoms", "symptoms_to_alliance": "Symptoms → alliance"})
    assert t.columns[0] == "Direction"
    assert list(t["Direction"]) == ["Alliance → symptoms", "Symptoms → alliance"]
    for col in t.columns:
        assert "_" not in col and col == col.strip(), col  # no code names such as ci_low / q_pvalue
    assert "None" not in t.to_string() and "nan" not in t.to_string().lower()
    z_row, kh_row = t.iloc[0], t.iloc[1]
    assert z_row["df"] == "—" and kh_row["df"] == "12"
    assert z_row["p"] == "< .001" and "e-" not in t.to_string()
    assert z_row["Estimate"] == "−0.71" and z_row["95% CI"] == "[−1.07, −0.36]"
    assert z_row["Q"] == "Q(12) = 152.23"
    assert z_row["Test"] == "z-test" and "Knapp" in kh_row["Test"]


def test_small_tau2_keeps_significant_digits_and_k1_has_dashes():
    rng = np.random.default_rng(4)
    v = np.full(30, 0.01)
    y = rng.normal(0.05, np.sqrt(v + 0.0004))
    r = random_effects(y, v, method="DL")
    t = results_table({"a": r})
    assert 0 < r.tau2 < 0.005
    tau = t.iloc[0]["τ²"]
    assert float(tau.replace("−", "-")) != 0.0 and abs(float(tau) - r.tau2) / r.tau2 < 0.05
    one = results_table({"a": random_effects([0.2], [0.01])}).iloc[0]
    assert one["τ²"] == "—" and one["Q"] == "—" and one["95% prediction interval"] == "—"


def test_meta_regression_table_for_readers():
    from analysis.meta import meta_regression

    year = np.asarray(BCG.get("year", np.arange(len(Y))), float)
    mr = meta_regression(Y, V, {"year": year})
    t = mr.display_frame()
    assert list(t.columns) == ["Term", "Estimate", "95% CI", "SE", "z", "p"]
    assert list(t["Term"]) == ["intercept", "year"]
    assert all(p.startswith(("<", ">", ".")) for p in t["p"])
    assert "e-" not in t.to_string() and "-" not in "".join(t["Estimate"])
