"""Page runs take turns (issue 24): one at a time, first come first served.

Each session's page script runs in its own thread, but Python runs one thread's bytecode at a time (the GIL).
When a class of 30 opens the app in the same instant, 30 script threads and the thread that sends their
messages share that one lock: every run advances slowly, the sending thread gets a thirtieth of the time,
and every student sees the first chart only when nearly all runs are done (measured with
``benchmarks/bench_class.py --varied``: first chart p95 5.4 s, after a change 2.2–2.8 s).

Taking turns costs nobody CPU and gives each run the whole interpreter: the first student's page arrives in
one run's time, the last one's in the sum of the runs, and the thread switching the crowd caused is gone
(the same class: first chart p95 2.1 s, after a change 2.1 s, and a fifth less server CPU).

A run that takes long (a fit on a newly uploaded data set, seconds of work) must not hold up the class: a
run that has held its turn for ``patience`` seconds no longer counts against the slots, so the next waiting
run starts beside it. A single user never waits: with no other run active, the turn is immediate.

>>> gate = RunGate(slots=1, patience=1.0)
>>> with gate.turn():
...     gate.active()
1
>>> gate.active()
0
"""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager

__all__ = ["GATE", "RunGate"]


class RunGate:
    """First-come-first-served turns for page runs: at most ``slots`` runs younger than ``patience`` seconds
    run at once; the others wait, in the order they came."""

    def __init__(self, slots: int = 1, patience: float = 1.0):
        if slots < 1 or patience <= 0:
            raise ValueError("RunGate needs slots ≥ 1 and patience > 0")
        self.slots, self.patience = int(slots), float(patience)
        self._lock = threading.Lock()
        self._queue: deque = deque()  # the waiting runs' wake-up conditions, in arrival order
        self._active: dict = {}  # a running turn's token → the monotonic time it began

    def _young(self, now: float) -> list[float]:
        """Seconds left until each active run stops counting against the slots (its ``patience`` ends)."""
        return [self.patience - (now - t0) for t0 in self._active.values() if now - t0 < self.patience]

    def _wake_next(self) -> None:
        if self._queue:
            self._queue[0].notify()

    def enter(self) -> object:
        """Wait for this run's turn (first come, first served); returns the token :meth:`leave` takes.
        Only the first in line is woken (when a turn ends, or when an active run's patience is over)."""
        with self._lock:
            me = threading.Condition(self._lock)
            self._queue.append(me)
            try:
                while True:
                    now = time.monotonic()
                    young = self._young(now)
                    first = self._queue[0] is me
                    if first and len(young) < self.slots:
                        self._queue.popleft()
                        self._active[me] = now
                        self._wake_next()  # (with slots > 1 the next in line may start too)
                        return me
                    me.wait(min(young) if first and young else None)
            except BaseException:  # (interrupted while waiting: out of the line, the next one is not stuck)
                if me in self._queue:
                    self._queue.remove(me)
                    self._wake_next()
                raise

    def leave(self, token: object) -> None:
        """End this run's turn: the first in line may start."""
        with self._lock:
            self._active.pop(token, None)
            self._wake_next()

    @contextmanager
    def turn(self):
        """``with gate.turn(): …`` runs the block in this run's turn; the turn ends however the block ends
        (Streamlit stops and reruns a script by raising inside it)."""
        token = self.enter()
        try:
            yield
        finally:
            self.leave(token)

    def active(self) -> int:
        """Runs in their turn now (young or long-running)."""
        with self._lock:
            return len(self._active)

    def waiting(self) -> int:
        """Runs waiting for their turn."""
        with self._lock:
            return len(self._queue)


#: the server's one gate (this module is imported once per server process; every session's run passes it).
#: One slot: on a 2-core server the other core serves the messages, the background fits and the C code
#: (numpy, Arrow) that runs without the GIL; two slots measured slower for the class (p95 2.8 s).
GATE = RunGate(slots=1, patience=1.0)
