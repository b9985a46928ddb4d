"""Long computations off the page's script thread, with a progress bar and a Cancel button (issue 24).

A simulation that takes tens of seconds (an estimator check, a power or coverage simulation) must not hold
the page, and must never stall the other sessions of a class on the same server. :func:`run` hands a pure
``analysis`` function to a small thread pool shared by the whole server, shows its progress while it runs,
and returns its result once it has finished::

    clicked = st.button("Run the power simulation", key="conv_pw_run")
    try:
        pw = jobs.run(conv.convergence_power, n, sessions, betas=betas, n_sim=n_sim,
                      start=clicked, widget="conv_pw", label="Simulating…")
    except ValueError as e:
        st.error(esc(e, limit=None))
    else:
        if pw is not None:
            dataframe(pw.table)

The function takes ``progress`` and ``cancelled`` keyword arguments and calls
:func:`analysis.progress.checkpoint` between units of work (see that module). Finished results are kept,
keyed like ``ui/compute.py``'s cached calls (the function's qualified name and its arguments; a data frame
goes in as an ``_``-prefixed keyword with its ``data_key`` in ``key=``), so a rerun, another page visit or
another student asking the same question gets the result at once, and two sessions asking the same question
at the same time share one computation.

Bounds: :data:`WORKERS` threads (one fewer than the cores, at least one) run at a lower OS priority than
the server's script threads; at most :data:`MAX_FINISHED` finished results are kept, for :data:`TTL`
seconds. A session that starts a new job from the same widget gives up its previous one; a job nobody
waits for any more is cancelled.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import streamlit as st

from analysis.progress import Cancelled
from ui.safe import md

#: worker threads shared by every session of the server (one core stays with the pages)
WORKERS = max(1, min(4, (os.cpu_count() or 2) - 1))
#: finished results kept (least recently used dropped first) and their lifetime in seconds
MAX_FINISHED = 32
TTL = 3600.0
#: seconds between two progress-bar updates on the page
POLL = 0.5
#: OS priority ("nice") of the worker threads: the page reruns of other sessions come first
NICE = 10


@dataclass(eq=False)
class Job:
    """One computation: its state (``queued``, ``running``, ``done``, ``failed``, ``cancelled``), its progress
    (0 … 1), and its result or error once finished."""

    key: str
    label: str
    state: str = "queued"
    fraction: float = 0.0
    result: Any = None
    error: BaseException | None = None
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    used: float = field(default_factory=time.monotonic)
    owners: set = field(default_factory=set)
    future: Future | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Ask the job to stop (at its next checkpoint; a queued job never starts)."""
        self._cancel.set()
        if self.future is not None and self.future.cancel():
            self._finish("cancelled")

    def _progress(self, fraction: float) -> None:
        if self._cancel.is_set():
            raise Cancelled("stopped on request")
        self.fraction = min(1.0, max(0.0, float(fraction)))

    def _finish(self, state: str, result=None, error=None) -> None:
        self.result, self.error = result, error
        self.finished = time.monotonic()
        self.state = state
        if state == "done":
            self.fraction = 1.0

    def status(self) -> str:
        """A line for the progress bar: what runs, how far it is, for how long; or its place in the queue."""
        if self.state == "queued":
            ahead = sum(1 for j in _snapshot() if j.state == "queued" and j.submitted < self.submitted)
            return f"{self.label} waiting for a free worker ({ahead} job(s) ahead)."
        if self.state == "running" and self.started is not None:
            return f"{self.label} {self.fraction:.0%} done, {time.monotonic() - self.started:.0f} s so far."
        return self.label


_LOCK = threading.Lock()
_JOBS: OrderedDict[str, Job] = OrderedDict()
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="analysis-job",
                                       initializer=_lower_priority)
        return _POOL


def _lower_priority() -> None:
    """Linux schedules threads as tasks: a nice value on this thread's id leaves the other threads alone."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


def _snapshot() -> list[Job]:
    with _LOCK:
        return list(_JOBS.values())


def job_key(func, args: tuple = (), kwargs: dict | None = None, key=None) -> str:
    """The cache key of ``func(*args, **kwargs)``: its qualified name, ``key`` (e.g. the data fingerprint)
    and the arguments' ``repr`` (keywords starting with ``_`` left out, as in ``st.cache_data``)."""
    kwargs = kwargs or {}
    parts = [a for a in args] + [v for k, v in kwargs.items() if not k.startswith("_")]
    if any(isinstance(p, pd.DataFrame | pd.Series) for p in parts):
        raise TypeError("Pass a data frame as an '_'-prefixed keyword and its data key as key=.")
    text = repr((f"{func.__module__}.{func.__qualname__}", key, tuple(args),
                 sorted((k, v) for k, v in kwargs.items() if not k.startswith("_"))))
    return hashlib.sha1(text.encode()).hexdigest()


def _accepts(func, name: str) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return name in params  # not through **kwargs: those often go on to another function


def _work(job: Job, func, args: tuple, kwargs: dict) -> None:
    if job._cancel.is_set():
        job._finish("cancelled")
        return
    job.started, job.state = time.monotonic(), "running"
    extra = {}
    if _accepts(func, "progress"):
        extra["progress"] = job._progress
    if _accepts(func, "cancelled"):
        extra["cancelled"] = job._cancel.is_set
    try:
        result = func(*args, **{k[1:] if k.startswith("_") else k: v for k, v in kwargs.items()}, **extra)
    except Cancelled:
        job._finish("cancelled")
    except BaseException as e:  # noqa: BLE001 (the page shows it; the worker thread must survive)
        job._finish("failed", error=e)
    else:
        job._finish("cancelled" if job._cancel.is_set() and result is None else "done", result=result)


def _evict(now: float) -> None:
    """Drop expired results, failed/cancelled jobs nobody looks at, then the least recently used results."""
    for k, j in list(_JOBS.items()):
        if j.done and (now - (j.finished or now) > TTL or (j.state != "done" and now - j.used > TTL)):
            del _JOBS[k]
    finished = [k for k, j in _JOBS.items() if j.done]
    for k in finished[: max(0, len(finished) - MAX_FINISHED)]:
        del _JOBS[k]


def lookup(func, *args, key=None, **kwargs) -> Job | None:
    """The job of ``func(*args, **kwargs)`` if one was started (running or finished), else None."""
    k = job_key(func, args, kwargs, key)
    with _LOCK:
        job = _JOBS.get(k)
        if job is not None:
            job.used = time.monotonic()
            _JOBS.move_to_end(k)
        return job


def submit(func, *args, key=None, label: str = "Computing…", owner: str | None = None, **kwargs) -> Job:
    """Start ``func(*args, **kwargs)`` on the shared pool, or return the job already computing or holding
    it (a failed or cancelled one is started again). Keywords starting with ``_`` are passed without the
    underscore and left out of the cache key (pass the data fingerprint as ``key``)."""
    k = job_key(func, args, kwargs, key)
    pool = _pool()
    with _LOCK:
        now = time.monotonic()
        job = _JOBS.get(k)
        if job is None or job.state in ("failed", "cancelled") or (job.cancel_requested and not job.done):
            job = Job(key=k, label=label)
            _JOBS[k] = job
            job.future = pool.submit(_work, job, func, args, kwargs)
        job.used = now
        if owner is not None:
            job.owners.add(owner)
        _JOBS.move_to_end(k)
        _evict(now)
        return job


def release(job: Job, owner: str | None) -> None:
    """``owner`` no longer waits for ``job``; cancel it when nobody does."""
    with _LOCK:
        job.owners.discard(owner)
        idle = not job.owners
    if idle and not job.done:
        job.cancel()


def wait(job: Job, timeout: float | None = None) -> Job:
    """Block until ``job`` has finished (scripts and tests; pages use :func:`run`)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not job.done and (deadline is None or time.monotonic() < deadline):
        time.sleep(0.02)
    return job


# --------------------------------------------------------------------------- on a page


def _session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None


def run(func, *args, start: bool = False, widget: str, label: str = "Computing…", key=None, **kwargs):
    """On a page: the result of ``func(*args, **kwargs)`` when it has been computed (by anyone), else None.

    ``start`` (a button's value) starts it; while it runs, a progress bar and a Cancel button are shown
    where :func:`run` is called and only that spot reruns, every :data:`POLL` s; the page reruns once when
    the job finishes. A failed job raises its exception here (a ``ValueError`` carries a message for the
    user). ``widget``: a key unique on the page (the Cancel button's key; a new job started from the same
    widget replaces this session's previous one)."""
    me, slot, stopped = _session_id(), f"_job_{widget}", f"_job_{widget}_stopped"
    if start:
        st.session_state.pop(stopped, None)
    job = submit(func, *args, key=key, label=label, owner=me, **kwargs) if start else lookup(
        func, *args, key=key, **kwargs)
    previous = st.session_state.get(slot)
    if previous is not None and previous is not job:
        release(previous, me)
    st.session_state[slot] = job
    if job is None:
        return None
    if job.state == "done":
        return job.result
    if job.state == "failed":
        raise job.error
    if job.state == "cancelled" or job.cancel_requested or st.session_state.get(stopped) == job.key:
        st.caption(md("{label} stopped before it finished; start it again to compute it.", label=label))
        return None
    if me is not None:
        with _LOCK:
            job.owners.add(me)
    _progress(job.key, widget)
    return None


@st.fragment(run_every=POLL)
def _progress(key: str, widget: str) -> None:
    with _LOCK:
        job = _JOBS.get(key)
    if job is None or job.done:
        st.rerun()  # the whole page, once: it now shows the result (or the error)
    st.progress(job.fraction, text=job.status())
    if st.button("Cancel", key=f"{widget}_cancel"):
        release(job, _session_id())  # cancelled unless another session waits for the same result
        st.session_state[f"_job_{widget}_stopped"] = key
        st.rerun()
