"""ui/jobs.py: long computations off the script thread (issue 24) — progress, cancel, cached results, pages."""

from __future__ import annotations

import sys
import threading
import time
import types

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from analysis.progress import Cancelled, checkpoint
from ui import jobs

CALLS: list = []


def steps(n, tag, gate=None, progress=None, cancelled=None):
    """n units of work; waits on ``gate`` (if any) after the first one, so a test sees it mid-way."""
    CALLS.append(tag)
    for i in range(n):
        checkpoint(progress, cancelled, i / n)
        if gate is not None and i == 1:
            assert gate.wait(20)
        time.sleep(0.005)
    return {"tag": tag, "n": n}


def forever(tag, progress=None):
    """Reports progress only (no cancel check): the runner's progress callback stops it."""
    i = 0
    while True:
        progress(min(0.99, i / 1000))
        i += 1
        time.sleep(0.002)


def fails(tag):
    raise ValueError(f"bad input {tag}")


def column_sum(_df=None, df=None, column="x"):
    return float(df[column].sum())


def test_result_progress_and_cache():
    gate = threading.Event()
    job = jobs.submit(steps, 10, "a", _gate=gate, label="Steps")
    deadline = time.monotonic() + 10
    while job.fraction < 0.1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.state == "running" and 0.1 <= job.fraction < 1 and "%" in job.status()
    gate.set()
    jobs.wait(job, 20)
    assert job.state == "done" and job.result == {"tag": "a", "n": 10} and job.fraction == 1
    # the same call again: the finished job, not a new computation
    again = jobs.submit(steps, 10, "a", _gate=gate)
    assert again is job and CALLS.count("a") == 1
    assert jobs.lookup(steps, 10, "a", _gate=gate) is job
    assert jobs.lookup(steps, 11, "a", _gate=gate) is None  # another argument, another key


def test_cancel_stops_a_running_job_through_its_progress_callback():
    job = jobs.submit(forever, "b")
    while job.state != "running":
        time.sleep(0.01)
    time.sleep(0.05)
    job.cancel()
    jobs.wait(job, 10)
    assert job.state == "cancelled" and job.result is None
    # starting it again computes anew
    job2 = jobs.submit(forever, "b")
    assert job2 is not job
    job2.cancel()
    assert jobs.wait(job2, 10).state == "cancelled"


def test_cancel_check_is_passed_to_functions_that_take_it():
    gate = threading.Event()
    job = jobs.submit(steps, 500, "c", _gate=gate)
    while job.state != "running":
        time.sleep(0.01)
    job.cancel()
    gate.set()
    assert jobs.wait(job, 10).state == "cancelled"
    with pytest.raises(Cancelled):
        checkpoint(None, lambda: True, 0.5)


def test_failure_is_kept_and_a_new_submit_retries():
    job = jobs.wait(jobs.submit(fails, "d"), 10)
    assert job.state == "failed" and isinstance(job.error, ValueError) and "bad input d" in str(job.error)
    assert jobs.submit(fails, "d") is not job


def test_frames_go_in_by_data_key():
    df = pd.DataFrame({"x": [1.0, 2.0, 3.5]})
    with pytest.raises(TypeError):
        jobs.submit(column_sum, df)
    job = jobs.wait(jobs.submit(column_sum, _df=df, key="fingerprint-1"), 10)
    assert job.result == 6.5
    # another frame under the same data key is the same job (the key stands for the data)
    assert jobs.lookup(column_sum, _df=df.iloc[:1], key="fingerprint-1") is job
    assert jobs.lookup(column_sum, _df=df, key="fingerprint-2") is None


def test_a_job_is_cancelled_when_its_last_owner_leaves():
    gate = threading.Event()
    job = jobs.submit(steps, 50, "e", _gate=gate, owner="s1")
    assert jobs.submit(steps, 50, "e", _gate=gate, owner="s2") is job
    jobs.release(job, "s1")
    assert not job.cancel_requested  # s2 still waits for it
    jobs.release(job, "s2")
    gate.set()
    assert job.cancel_requested and jobs.wait(job, 10).state == "cancelled"


def test_finished_results_are_bounded(monkeypatch):
    monkeypatch.setattr(jobs, "MAX_FINISHED", 2)
    done = [jobs.wait(jobs.submit(steps, 1, f"f{i}"), 10) for i in range(4)]
    assert all(j.state == "done" for j in done)
    jobs.submit(steps, 1, "f-last")
    assert jobs.lookup(steps, 1, "f0") is None and jobs.lookup(steps, 1, "f3") is done[3]


def test_workers_run_at_lower_priority():
    import os

    job = jobs.wait(jobs.submit(_my_nice, "g"), 10)
    assert job.result == os.getpriority(os.PRIO_PROCESS, 0) + jobs.NICE or job.result == 19


def _my_nice(tag):
    import os

    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


# --------------------------------------------------------------------------- on a page (AppTest)


def _page():
    import _jobs_test_gate as g
    import streamlit as st

    from ui import jobs

    clicked = st.button("Run", key="run")
    try:
        out = jobs.run(g.steps, 10, g.tag, _gate=g.gate, start=clicked, widget="sim", label="Simulating")
    except ValueError as e:
        st.error(str(e))
    else:
        if out is not None:
            st.write(f"result {out['n']}")


@pytest.fixture
def gate_module(monkeypatch):
    mod = types.ModuleType("_jobs_test_gate")
    mod.gate = threading.Event()
    mod.steps = steps
    mod.tag = "page"
    monkeypatch.setitem(sys.modules, "_jobs_test_gate", mod)
    return mod


def test_page_shows_progress_then_result(gate_module):
    at = AppTest.from_function(_page, default_timeout=30)
    at.run()
    assert not at.exception and not at.markdown  # nothing started
    at.button(key="run").click().run()
    assert not at.exception
    assert len(at.get("progress")) == 1 and at.button(key="sim_cancel")
    gate_module.gate.set()
    jobs.wait(jobs.lookup(steps, 10, "page", _gate=gate_module.gate), 20)
    at.run()
    assert not at.get("progress") and any("result 10" in m.value for m in at.markdown)
    # a later rerun (another widget, a page switch) shows the cached result without computing again
    at.run()
    assert any("result 10" in m.value for m in at.markdown) and CALLS.count("page") == 1


def test_page_cancel_button_stops_the_job(gate_module):
    gate_module.tag = "page-cancel"
    at = AppTest.from_function(_page, default_timeout=30)
    at.run()
    at.button(key="run").click().run()
    job = jobs.lookup(steps, 10, "page-cancel")
    assert job is not None and not job.done
    at.button(key="sim_cancel").click().run()
    assert not at.exception
    assert job.cancel_requested
    gate_module.gate.set()
    assert jobs.wait(job, 10).state == "cancelled"
    assert any("stopped before it finished" in c.value for c in at.caption) and not at.get("progress")


def test_a_loaded_data_set_is_fitted_in_the_background_with_the_pages_default_options():
    """Issue 24: compute on data load what every page needs. set_dataset starts the default two-stage fit
    (ui.compute.prefit); the Lagged page's own call then finds it in the cache (same key, same options)."""
    from analysis import pipeline
    from analysis.lagged import LagOptions
    from analysis.simulate import simulate_study
    from ui import compute

    df = simulate_study(30, range(1, 7), study="P", seed=41).data
    key = compute.fingerprint(df)
    compute.prefit(df, key)
    job = jobs.lookup(compute._prefit, key=key, data=key, _df=df, grid=compute.CLASS_MODE)
    assert job is not None and jobs.wait(job, 120).state == "done"
    calls = []
    real = pipeline.two_stage

    def counted(d, o):
        calls.append(o)
        return real(d, o)

    res = compute._on_data(f"{real.__module__}.{real.__qualname__}", counted, key, df, LagOptions())
    assert calls == [] and set(res.pooled) == {"alliance_to_symptoms", "symptoms_to_alliance"}


def test_a_large_data_set_is_not_fitted_before_a_page_asks(monkeypatch):
    from analysis.simulate import simulate_study
    from ui import compute

    df = simulate_study(30, range(1, 7), study="Q", seed=42).data
    monkeypatch.setattr(compute, "PREFIT_MAX_ROWS", len(df) - 1)
    key = compute.fingerprint(df)
    compute.prefit(df, key)
    assert jobs.lookup(compute._prefit, key=key, data=key, _df=df, grid=compute.CLASS_MODE) is None
