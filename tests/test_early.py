"""analysis.early (METHODS §7) against R lm / cor / metafor (tests/reference/make_early_reference.R):
early window and outcome chosen independently of the lagged window; partial β and r on Fisher's z.
Tolerance 1e-6 (relative) for lm values, 1e-4 for the REML meta-analyses."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import pipeline
from analysis.early import early_alliance_outcome, early_outcome
from analysis.lagged import LagOptions

REF = Path(__file__).parent / "reference"
DATA = pd.read_csv(REF / "early_data.csv")
CONFIGS = json.loads((REF / "early_reference.json").read_text())["configs"]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c["name"])
def test_matches_R(cfg):
    # a lagged window that must NOT matter: the early window and outcome are chosen independently
    opts = LagOptions(sessions=(2, 5), test="z")  # the R reference pools with rma's default z test
    kw = {"early_window": tuple(cfg["early_window"]), "outcome": cfg["outcome"]}
    if cfg["outcome"] == "session":
        kw["outcome_session"] = cfg["outcome_session"]
    if cfg["outcome"] == "column":
        kw["outcome_column"] = "post"
    res = early_outcome(DATA, options=opts, **kw)
    for s in cfg["studies"]:
        f = res.beta.fits[(s["study"], "early_alliance_to_outcome")]
        assert f.n_patients == s["n"]
        np.testing.assert_allclose(f.coefficients["estimate"], s["estimate"], rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(f.coefficients["se"], s["se"], rtol=1e-6)
        r = res.correlations.set_index("study").loc[s["study"], "r"]
        assert r == pytest.approx(s["r"], rel=1e-8)
    m = res.beta.pooled["early_alliance_to_outcome"]
    for field in ("estimate", "se", "ci_low", "ci_high"):
        assert getattr(m, field) == pytest.approx(cfg["pooled_beta"][field], rel=1e-4), field
    pr = cfg["pooled_r"]
    assert res.pooled_r.estimate == pytest.approx(pr["z"], rel=1e-4)
    assert res.pooled_r.se == pytest.approx(pr["se"], rel=1e-4)
    assert (res.r_estimate, res.r_ci_low, res.r_ci_high) == pytest.approx(
        (pr["r"], pr["r_ci_low"], pr["r_ci_high"]), rel=1e-4)
    assert "Fisher" in res.summary()


def test_pipeline_reexport_and_default_unchanged():
    assert pipeline.early_alliance_outcome is early_alliance_outcome
    a = pipeline.early_alliance_outcome(DATA)
    b = early_outcome(DATA).beta
    pd.testing.assert_frame_equal(a.per_study, b.per_study)


def test_recovers_planted_early_alliance_effect():
    """Outcome = −0.5·early alliance (latent) + baseline: β < 0 and r < 0 recovered in every study."""
    rng = np.random.default_rng(3)
    rows = []
    for st in ("S1", "S2", "S3"):
        for i in range(150):
            ea, base = rng.normal(), rng.normal()
            for t in range(1, 11):
                al = ea + rng.normal(0, 0.3)
                sy = base + (t / 10) * (-0.5 * ea - 1) + rng.normal(0, 0.3)
                rows.append((st, f"p{i}", t, al, sy))
    df = pd.DataFrame(rows, columns=["study", "patient", "session", "alliance", "symptoms"])
    res = early_outcome(df, early_window=(1, 3), outcome="session", outcome_session=10)
    ps = res.beta.per_study
    assert (ps.loc[ps.term == "early_alliance", "ci_high"] < 0).all()
    assert res.r_ci_high < 0 and res.beta.pooled["early_alliance_to_outcome"].ci_high < 0


def test_a_study_whose_early_alliance_does_not_vary_is_reported_and_the_rest_run():
    studies = sorted(DATA["study"].unique())
    d = DATA.copy()
    d = d.sort_values(["study", "patient", "session"])
    rank = d["alliance"].notna().groupby([d["study"], d["patient"]]).cumsum()
    d.loc[(d["study"] == studies[0]) & (rank <= 3), "alliance"] = 5.0  # the first 3 ratings; later ones vary
    res = early_outcome(d)
    fits = {f.study: f for f in res.beta.fits.values()}
    assert fits[studies[0]].status != "ok" and "cannot be standardized" in " ".join(fits[studies[0]].messages)
    assert all(fits[s].status in ("ok", "warning") for s in studies[1:])


def test_bad_choices():
    with pytest.raises(ValueError, match="outcome_session"):
        early_outcome(DATA, outcome="session")
    with pytest.raises(ValueError, match="outcome_column"):
        early_outcome(DATA, outcome="column", outcome_column="nope")
    with pytest.raises(ValueError, match="early_window"):
        early_outcome(DATA, early_window=(3, 1))
    bad = DATA.assign(post=np.arange(len(DATA), dtype=float))
    with pytest.raises(ValueError, match="one value per patient"):
        early_outcome(bad, outcome="column", outcome_column="post")


def test_one_study_is_not_called_pooled_and_its_row_repeats_the_study():
    """Defect 7 (issue 23): with k = 1 "nothing was pooled" sat above "pooled over 1 studies: …", and the
    "Pooled" row's CI (normal theory) differed from the study's own row."""
    one = DATA[DATA["study"] == DATA["study"].iloc[0]]
    res = early_outcome(one)
    text = res.summary()
    assert "pooled over" not in text.lower() and "over 1 studies" not in text
    assert "Only one study" in text and "nothing was pooled" in text
    t = res.beta.to_frame()
    study = t[t["row"] == "study"].iloc[0]
    pooled = t[t["row"] == "pooled"].iloc[0]
    assert pooled["study"] == "Pooled (k = 1, not pooled)"
    for c in ("estimate", "se", "ci_low", "ci_high", "pvalue"):
        assert pooled[c] == pytest.approx(study[c], rel=1e-12), c
