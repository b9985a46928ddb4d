"""Stage 2: random-effects meta-analysis (METHODS §6).

One module per part of METHODS §6, all re-exported here (``from analysis import meta``):
``_base`` (constants, the option declarations ``TAU2_METHOD``/``POOL_TEST``/:class:`PoolOptions`, input
checks, shared linear algebra), ``tau2`` (the τ² estimators and the Q-profile interval), ``results``
(:class:`MetaResult` and friends, :func:`results_table`), ``pooling`` (:func:`random_effects`,
:func:`random_effects_many`, :func:`leave_one_out`), ``regression`` (:func:`meta_regression`) and
``egger`` (:func:`egger_test`).

Model::

    y_k = mu + u_k + e_k,   u_k ~ N(0, tau2),   e_k ~ N(0, v_k)

with ``y_k`` a study's effect and ``v_k`` its squared standard error. Every
definition below follows R's metafor ``rma.uni`` (version 3.8) and its
``predict``, ``confint``, ``weights``, ``leave1out`` and ``regtest`` methods,
including metafor's defaults for starting values, convergence thresholds and
search intervals, so that results agree with metafor to 1e-6 on published data
(tests/reference/make_meta_reference.R writes the reference values).

Notation used in the docstrings: ``X`` is the k x p model matrix (a column of
ones for a plain pooled estimate), ``W = diag(w)``, ``w_k = 1 / (v_k + tau2)``,
``P = W - W X (X'WX)^-1 X'W``, ``Y`` the effects (centred at their mean while
estimating tau2, as metafor does; with an intercept this changes nothing).

tau2 estimators (all truncated at 0 afterwards):

* ``FE``   tau2 = 0 (common-effect model).
* ``DL``   DerSimonian-Laird: with ``P`` at ``w = 1/v``,
  ``tau2 = (Y'PY - (k - p)) / tr(P)``.
* ``HE``   Hedges (variance components): with ``P = I - X(X'X)^-1X'``,
  ``tau2 = (Y'PY - tr(P V)) / (k - p)``.
* ``HS``   Hunter-Schmidt: with ``P`` at ``w = 1/v``, ``tau2 = (Y'PY - k) / sum(w)``.
* ``SJ``   Sidik-Jonkman: start ``tau0 = sum((y - ybar)^2) / k``; with ``P`` at
  ``w = 1/(v + tau0)``, ``tau2 = tau0 * Y'PY / (k - p)``.
* ``PM``   Paule-Mandel: the root of ``Y'P(tau2)Y = k - p`` on
  ``[0, max(100, 10 * mad(y)^2)]``, by Brent's method with R ``uniroot``'s
  tolerance ``eps^0.25``; 0 when ``Y'P(0)Y < k - p``.
* ``ML``, ``REML``, ``EB``  Fisher scoring from the HE value (truncated at 0):
  ``tau2 <- tau2 + delta`` with

  - ML:   ``delta = (Y'PPY - sum(w)) / sum(w^2)``
  - REML: ``delta = (Y'PPY - tr(P)) / tr(PP)``
  - EB:   ``delta = (Y'PY * k/(k - p) - k) / sum(w)``

  ``delta`` is halved while ``tau2 + delta < 0``; stop when
  ``|change| <= 1e-5``; at most 100 iterations (non-convergence is reported,
  not hidden). For ML/REML, if the log-likelihood at tau2 = 0 exceeds the one
  at the estimate by more than ``eps^0.25``, tau2 is set to 0 (metafor's check
  for a local maximum).

Standard errors of tau2 are metafor's: REML ``sqrt(2 / tr(PP))``, ML
``sqrt(2 / sum(w^2))``, EB and PM ``sqrt(2 k^2 / (k - p)) / sum(w)``, and
moment-based formulas for DL, HE, SJ and HS (see ``tau2._tau2_intercept``).

Inference for the coefficients, with ``w_k = 1 / (v_k + tau2)``:

* ``beta = (X'WX)^-1 X'W y``, ``Var(beta) = s2 (X'WX)^-1``; ``s2 = 1`` for
  ``test="z"`` (normal), and for ``test="knha"`` (Knapp-Hartung)
  ``s2 = sum(w (y - X beta)^2) / (k - p)``, not truncated at 1 (metafor's
  ``test="knha"``), with t on ``k - p`` df; ``test="adhoc"`` (the app's default)
  truncates it, ``s2 = max(1, ...)``, so the interval is never narrower than
  the z interval's (Knapp & Hartung's ad hoc rule; metafor's ``test="adhoc"``).
* CI ``beta +/- crit * SE``; prediction interval (metafor ``predict``)
  ``mu +/- crit * sqrt(SE^2 + tau2)`` with the same ``crit``.
* ``Q = Y'P Y`` at ``w = 1/v`` on ``k - p`` df; ``vt = (k - p) / tr(P)`` (the
  "typical" within-study variance); ``I2 = 100 tau2 / (vt + tau2)``,
  ``H2 = (vt + tau2) / vt``; for FE ``I2 = max(0, 100 (Q - (k-p)) / Q)``,
  ``H2 = Q / (k - p)``. With one intercept and DL these are the familiar
  ``(Q - df) / Q`` and ``Q / df``.
* Weights (percent) ``100 w_k / sum(w)``.
* The tau2 CI is the Q-profile interval (metafor ``confint``): the tau2 values
  where ``Y'P(tau2)Y`` equals the upper and lower ``(1 - level)/2`` chi-square
  quantiles on ``k - p`` df, searched on ``[0, max(100, 10 tau2)]`` with
  ``uniroot`` (tolerance ``eps^0.25``, as metafor); a bound outside that range
  is reported as the range end and said so in ``messages``.
"""

from __future__ import annotations

from ._base import (
    METHOD_NAMES,
    METHODS,
    POOL_TEST,
    TAU2_METHOD,
    TEST_NAMES,
    TESTS,
    PoolOptions,
    _brent_root,  # noqa: F401 (used by plots_meta and the tests)
    _check_effects,  # noqa: F401
)
from .egger import EggerResult, egger_test
from .pooling import leave_one_out, random_effects, random_effects_many
from .regression import MetaRegressionResult, meta_regression
from .results import Estimate, Heterogeneity, MetaResult, results_table
from .tau2 import _fisher_scoring, _tau2_general, _tau2_intercept  # noqa: F401 (tests compare the paths)

__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "POOL_TEST",
    "TAU2_METHOD",
    "TESTS",
    "TEST_NAMES",
    "EggerResult",
    "Estimate",
    "Heterogeneity",
    "MetaRegressionResult",
    "MetaResult",
    "PoolOptions",
    "egger_test",
    "leave_one_out",
    "meta_regression",
    "random_effects",
    "random_effects_many",
    "results_table",
]
