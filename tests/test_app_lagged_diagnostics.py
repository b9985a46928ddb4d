"""AppTest: the Lagged page's Nickell diagnostic (every within centering) and the attenuation warning
(METHODS §5; analysis.nickell)."""

from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from analysis import pipeline
from analysis.lagged import LagOptions
from analysis.simulate import simulate_study
from ui.tabs import PAGE_EXPANDERS

ROOT = Path(__file__).resolve().parents[1]


def _data(sd_between):
    return pd.concat([simulate_study(60, range(1, 8), study=f"S{k}", sd_between_alliance=sd_between,
                                     ar_symptoms=0.5, seed=k).data for k in range(3)], ignore_index=True)


def _lagged(df):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["dataset"] = {"df": df, "name": "test data", "source": "upload", "notes": []}
    for k in PAGE_EXPANDERS["app_pages/lagged.py"]:  # (lazy expanders, the diagnostics among them: opened)
        at.session_state[k] = True
    at.run()
    at.switch_page("app_pages/lagged.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _diag(at):
    for d in at.dataframe:
        if "Nickell bias of prior outcome" in d.value.columns:
            return d.value
    raise AssertionError("no diagnostics table")


def test_low_icc_gives_the_attenuation_warning_and_detrended_nickell_matches_the_package():
    df = _data(0.0)  # no stable alliance differences: person-mean reliabilities 0.40–0.56 (estimated), two below 0.5
    at = _lagged(df)
    warn = [w.value for w in at.warning if "likely attenuated by more than 20%" in w.value]
    assert warn and "In 3 of 3 studies" in warn[0]
    t = _diag(at)
    assert (t["reliability of person mean (attenuation factor)"] < 0.8).all()
    at.radio(key="opt_centering").set_value("detrended").run()
    assert not at.exception
    t = _diag(at)
    ref = pipeline.two_stage(df, LagOptions(centering="detrended"))
    want = [ref.fits[(s, "alliance_to_symptoms")].nickell_bias for s in t["study"]]
    np.testing.assert_allclose(t["Nickell bias of prior outcome"].to_numpy(float)[:3], want, rtol=1e-9)
    assert (t["Nickell bias of prior outcome"] < -0.35).all()  # detrended, 7 sessions: about twice −0.3


def test_moderate_attenuation_is_a_note_not_a_warning():
    """Tiered messages: reliabilities 0.72–0.75 (between effects about three quarters of the truth) give the
    sentence as a note; below 0.5 (the test above: ≈ 0.3) it is a warning."""
    at = _lagged(_data(0.5))
    assert not [w.value for w in at.warning if "likely attenuated" in w.value]
    note = [i.value for i in at.info if "likely attenuated by more than 20%" in i.value]
    assert note and "In 3 of 3 studies" in note[0] and "0.72–0.75" in note[0]


def test_reliable_person_means_give_no_attenuation_warning():
    at = _lagged(_data(2.0))
    assert not [w.value for w in [*at.warning, *at.info] if "likely attenuated" in w.value]
