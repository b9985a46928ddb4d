"""AppTest: the Convergence page's crossing-lines warning and congruence models (response surface, APIM)."""

from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

from analysis import data as adata
from analysis.convergence import apim, response_surface

ROOT = Path(__file__).resolve().parents[1]


def _demo(name):
    raw = adata.load(ROOT / "demo_data" / name)
    return adata.to_canonical(raw, adata.suggest_mapping(raw))


def _apim_table(at):
    return next(d.value for d in at.dataframe
                if "term" in d.value.columns and d.value["term"].astype(str).str.startswith("Actor within").any())


def test_crossing_warning_and_congruence_models_equal_the_analysis():
    df = _demo("dyads_bdi.csv")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240)
    at.session_state["dataset"] = {"df": df, "name": "t", "source": "demo", "notes": []}
    at.run()
    at.switch_page("app_pages/convergence.py")
    at.session_state["conv_tab"] = "Congruence"  # (a lazy tab: computed and drawn when open)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    cross = [w.value for w in at.warning if "lines cross within the observed sessions" in w.value]
    assert cross and "73 of 96 dyads (76%)" in cross[0] and "not a rate of convergence" in cross[0]
    assert [h.value for h in at.header if h.value.startswith("Congruence models")]
    tables = {tuple(d.value.columns[:2]): d.value for d in at.dataframe}
    surf = next(v for k, v in tables.items() if k == ("term", "meaning"))
    want = response_surface(df).surface
    np.testing.assert_allclose(surf["estimate"].to_numpy(float), want["estimate"].to_numpy(float), rtol=1e-9)
    ap = _apim_table(at)
    np.testing.assert_allclose(ap["estimate"].to_numpy(float), apim(df).fixed["estimate"].to_numpy(float),
                               rtol=1e-9)
    # the options change the models
    at.number_input(key="cong_lag").set_value(2).run()
    assert not at.exception
    ap2 = _apim_table(at)
    np.testing.assert_allclose(ap2["estimate"].to_numpy(float), apim(df, lag=2).fixed["estimate"].to_numpy(float),
                               rtol=1e-9)
