"""Class mode (issue 24; ``make serve``): the background fits of ``ui.compute.class_grid`` are exactly the
analyses students get from shared links with another centering, lag or estimator, so their first result is
a cache hit (same LagOptions, hence the same cache key) instead of a fit of its own."""

from __future__ import annotations

import pytest

from tests.tabs_util import open_with_link
from ui.compute import class_grid


def test_the_grid_is_every_centering_lag_and_estimator_once():
    grid = class_grid()
    assert len(grid) == len(set(grid)) == 32
    assert {(o.centering, o.lag, o.estimator) for o in grid} == {
        (c, lag, e) for c in ("none", "grand_mean", "person_mean", "detrended") for lag in (1, 2, 3, 0)
        for e in ("mixed", "fixed_effects")}
    assert all(o.directions == ("symptoms_to_alliance",) for o in grid if o.lag == 0)


@pytest.mark.parametrize("query", [
    {"centering": "detrended", "lag": "0", "estimator": "fixed_effects"},
    {"centering": "none", "lag": "2", "estimator": "mixed"},
    {"centering": "grand_mean", "lag": "3", "estimator": "fixed_effects"},
])
def test_a_shared_link_asks_for_a_grid_analysis(query):
    """The options the Pooled page analyses for a link (the demo, one option changed by the link) are one of
    the grid's: its first result is then the background fit."""
    from ui.options import STORE, to_lag_options

    at = open_with_link("app_pages/pooled.py", query)
    options = to_lag_options(at.session_state[STORE], at.session_state["dataset"]["df"])
    assert (options.centering, options.lag, options.estimator) == (query["centering"], int(query["lag"]),
                                                                   query["estimator"])
    assert options in class_grid()


def test_the_background_fits_leave_every_grid_analysis_and_its_figures_cached(monkeypatch):
    """Class mode's background job: afterwards a page asking for any grid analysis, its pooled forest, its
    per-study figure or its tables computes nothing (the analysis and the figure builders are not called
    again), and every session gets the same objects (not a copy to unpickle and format again)."""
    from analysis import pipeline, plots_lagged, plots_meta
    from analysis.simulate import simulate_collection
    from ui import compute

    df = simulate_collection(k=3, n_patients=(25, 30), sessions=range(1, 7), seed=5).data
    key = compute.fingerprint(df)
    compute._prefit(key, df, grid=True)
    target, fit = f"{pipeline.two_stage.__module__}.{pipeline.two_stage.__qualname__}", pipeline.two_stage
    calls = []
    for mod, name in ((pipeline, "two_stage"), (plots_meta, "paired_forest_figure"),
                      (plots_meta, "forest_figure"), (plots_lagged, "study_coefficients_figure")):
        monkeypatch.setattr(mod, name, lambda *a, _n=name, **k: calls.append(_n))
    for options in class_grid()[::5]:
        res = compute._on_data(target, fit, key, df, options)
        compute.pooled_forest(df, options, *compute.pooled_forest_inputs(res, options))
        tables = compute.pooled_tables(df, options, {"alliance_to_symptoms": "a", "symptoms_to_alliance": "s"})
        assert tables is compute.pooled_tables(df, options, {"alliance_to_symptoms": "a", "symptoms_to_alliance": "s"})
        for d in options.directions:
            compute.lagged_figure("coefficients", df, options, d)
            t = compute.lagged_table(df, options, d)
            assert t is compute.lagged_table(df, options, d)  # (shared: the same object, formatted once)
            assert t.n_ok + t.n_failed == len(t.table) == 3
        assert compute.two_stage(df, options) is compute.two_stage(df, options)
    assert calls == []
