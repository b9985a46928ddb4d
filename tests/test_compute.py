"""ui.compute's shared cache wrapper: one cached ``func(df, options)`` for several analysis functions."""

from __future__ import annotations

import pandas as pd

from analysis import lagged, pipeline
from analysis.lagged import LagOptions
from analysis.simulate import simulate_collection


def test_one_cache_wrapper_keeps_each_functions_entries_apart():
    """Same data and options through the one st.cache_data wrapper: each call returns its own function's
    result (the function's qualified name is part of the key; without it the second and third calls would get
    the first call's cached frame)."""
    from ui import compute

    df = simulate_collection(k=3, n_patients=30, seed=11).data
    o = LagOptions()
    counts = compute.pairing_counts(df, o)
    mv = compute.multiverse(df, o)
    res = compute.two_stage(df, o)
    pd.testing.assert_frame_equal(counts, lagged.pairing_counts(df, o))
    pd.testing.assert_frame_equal(mv, pipeline.multiverse(df, o))
    assert isinstance(res, pipeline.TwoStageResult)
    pd.testing.assert_frame_equal(res.per_study, pipeline.two_stage(df, o).per_study)
