"""Progress and cancellation for long computations (simulations, estimator checks).

A long ``analysis`` function takes two optional keyword arguments and calls :func:`checkpoint`
between units of work::

    def coverage(..., progress=None, cancelled=None):
        for i in range(n_sim):
            checkpoint(progress, cancelled, i / n_sim)
            ...

``progress(fraction)`` receives the share of the work done (0 … 1); ``cancelled()`` returns True
when the caller wants the computation stopped, and :func:`checkpoint` then raises
:class:`Cancelled`. Both default to ``None`` (a script or a test calls the function as usual).
The dashboard runs such functions off the page's script thread (``ui/jobs.py``).
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float], None] | None
Cancel = Callable[[], bool] | None


class Cancelled(Exception):  # noqa: N818 (a state, not an error)
    """The computation was stopped by its cancel check."""


def checkpoint(progress: Progress, cancelled: Cancel, fraction: float) -> None:
    """Raise :class:`Cancelled` if ``cancelled()`` says so, else report ``fraction`` (clipped to 0 … 1)."""
    if cancelled is not None and cancelled():
        raise Cancelled("stopped on request")
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))))
