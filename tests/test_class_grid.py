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
