"""Page runs take turns (ui/gate.py, issue 24): first come first served, at most ``slots`` at once, a long run
does not hold up the others, and a turn always ends, however the run ends."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui import gate as gate_mod
from ui.gate import GATE, RunGate

ROOT = Path(__file__).resolve().parents[1]


def _start_in_order(gate: RunGate, n: int, work: float, log: list, lock: threading.Lock) -> list[threading.Thread]:
    """n threads that come to the gate one after another (each once the previous one has its turn or waits in
    line) and, once all have come, each hold their turn for ``work`` seconds, logging (event, index, time,
    runs in their turn)."""
    go = threading.Event()
    threads = []
    for i in range(n):
        def run(i=i):
            with gate.turn():
                with lock:
                    log.append(("start", i, time.monotonic(), gate.active()))
                go.wait(10)
                time.sleep(work)
                with lock:
                    log.append(("end", i, time.monotonic(), 0))
        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 5
        while gate.waiting() + gate.active() < i + 1 and time.monotonic() < deadline:  # (no turn ends before go)
            time.sleep(0.001)
    go.set()
    return threads


def test_turns_are_first_come_first_served_one_at_a_time():
    gate, log, lock = RunGate(slots=1, patience=5.0), [], threading.Lock()
    for t in _start_in_order(gate, 8, 0.02, log, lock):
        t.join(10)
    starts = [i for e, i, _, _ in log if e == "start"]
    assert starts == list(range(8))  # in the order they came
    assert max(a for e, _, _, a in log if e == "start") == 1  # never two at once
    # each turn began only after the previous one ended
    times = {(e, i): t for e, i, t, _ in log}
    assert all(times[("start", i + 1)] >= times[("end", i)] for i in range(7))
    assert gate.active() == 0 and gate.waiting() == 0


def test_two_slots_hold_two_runs_at_once_not_three():
    gate, log, lock = RunGate(slots=2, patience=5.0), [], threading.Lock()
    for t in _start_in_order(gate, 6, 0.05, log, lock):
        t.join(10)
    assert max(a for e, _, _, a in log if e == "start") == 2
    assert sorted(i for e, i, _, _ in log if e == "start") == list(range(6))


def test_a_long_run_does_not_hold_up_the_next_one():
    """A run past its patience no longer counts: the next in line starts beside it, after ~patience, not after
    the long run ends."""
    gate = RunGate(slots=1, patience=0.2)
    started = threading.Event()
    release = threading.Event()

    def long_run():
        with gate.turn():
            started.set()
            release.wait(10)

    t_long = threading.Thread(target=long_run, daemon=True)
    t_long.start()
    started.wait(5)
    t0 = time.monotonic()
    with gate.turn():
        waited = time.monotonic() - t0
        assert gate.active() == 2  # beside the long run
    release.set()
    t_long.join(5)
    assert 0.1 <= waited < 1.5  # about the patience, not the 10 s the long run could take
    assert gate.active() == 0


def test_a_single_run_never_waits():
    gate = RunGate(slots=1, patience=1.0)
    t0 = time.monotonic()
    for _ in range(200):
        with gate.turn():
            pass
    assert (time.monotonic() - t0) / 200 < 0.005


def test_the_turn_ends_when_the_run_raises():
    """Streamlit stops and reruns a script by raising inside it: the turn must end all the same."""
    gate = RunGate(slots=1, patience=5.0)
    with pytest.raises(RuntimeError):
        with gate.turn():
            raise RuntimeError("a rerun")
    assert gate.active() == 0
    with gate.turn():  # the next run gets its turn at once
        assert gate.active() == 1


def test_a_waiter_interrupted_in_line_leaves_it(monkeypatch):
    """A waiting run that is interrupted (e.g. the server shutting down) steps out of the line: the run behind
    it is not stuck behind a ghost."""
    gate = RunGate(slots=1, patience=5.0)
    holder = gate.enter()

    class Interrupted(threading.Condition):
        def wait(self, timeout=None):
            raise KeyboardInterrupt

    monkeypatch.setattr(gate_mod.threading, "Condition", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        gate.enter()
    monkeypatch.undo()
    assert gate.waiting() == 0
    gate.leave(holder)
    with gate.turn():
        assert gate.active() == 1


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        RunGate(slots=0)
    with pytest.raises(ValueError):
        RunGate(patience=0)


def test_every_app_run_passes_the_gate_and_leaves_it():
    """The app's runs take turns through the server's one gate (app.py) and end their turn: after a run, a
    page change, and a page whose run stops early, no turn is left open (the next student would wait for
    ever)."""
    entered = []
    real_enter = GATE.enter

    def counting_enter():
        entered.append(1)
        return real_enter()

    GATE.enter = counting_enter
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.run()
        assert not at.exception
        assert GATE.active() == 0
        at.switch_page("app_pages/pooled.py").run()
        assert not at.exception
        assert GATE.active() == 0 and GATE.waiting() == 0
        assert len(entered) == 2
    finally:
        del GATE.enter
