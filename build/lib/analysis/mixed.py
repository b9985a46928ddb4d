"""Fast linear mixed models for the stage-1 lagged models (METHODS §5).

Three estimators, all built from numpy arrays (no formulas):

* :func:`fit_random_intercept` — ``y = Xβ + u_g + e``, ``u_g ~ N(0, τ²)``,
  ``e ~ N(0, σ²)``, by REML (default) or ML. Per group g with n_g rows the
  covariance is ``V_g = σ²(I + γJ)`` with ``γ = τ²/σ²`` and, by
  Sherman–Morrison, ``V_g⁻¹ = σ⁻²(I − w_g J)`` with ``w_g = γ/(1 + γ n_g)``.
  With ``A = [X y]'[X y]`` and ``a_g = [X y]'1`` (the group sums)::

      A(γ) = A − Σ_g w_g a_g a_g'   = [[M, b], [b', c]]
      β̂(γ) = M⁻¹ b,   Q(γ) = c − b'M⁻¹b     (σ²-scaled GLS quantities)
      REML: −2ℓ_R = Σ_g log(1 + γ n_g) + log|M| + (N − p)(1 + log(2π Q/(N − p)))
      ML:   −2ℓ   = Σ_g log(1 + γ n_g) + N(1 + log(2π Q/N))
      σ̂² = Q/(N − p) (REML) or Q/N (ML),  τ̂² = γ̂ σ̂²,  Cov(β̂) = σ̂² M⁻¹.

  ``w_g`` depends on the group only through n_g, so ``Σ_g w_g a_g a_g'`` is a
  weighted sum of one (p+1)×(p+1) matrix per distinct group size: after one
  pass over the data every likelihood evaluation costs O(#sizes · p²). Since
  ``w_g = 1/n_g − 1/(n_g(1 + γn_g))``, ``A(γ)`` is computed as
  ``W_c + Σ_g a_g a_g' / (n_g(1 + γn_g))`` with ``W_c`` the cross-products of
  the group-demeaned rows: the weights ``1/(1 + γn_g)`` lie in (0, 1] (a bounded
  transform of the variance ratio), so nothing cancels when τ² ≫ σ² (states
  or schools that differ far more from each other than over time). The
  profile deviance is minimised over ``θ = √γ = τ/σ`` (lme4's parameter) by a
  log grid over [1e-3, 1e3] (extended to 1e8 when its end is best) followed by
  safeguarded Newton on γ in the bracket; the boundary ``θ = 0`` is
  always evaluated exactly, and there ``β̂`` is the OLS estimate — the
  between-person fixed effects are *not* set to zero (the statsmodels MixedLM
  failure of issue 10239). A fit with ``θ̂ < 1e-4`` is flagged ``singular``
  (lme4's ``isSingular`` tolerance). When every group indicator is a linear
  combination of the columns of X (e.g. 3 patients and the patient-level terms
  intercept, between and prior_between) the criterion does not depend on θ, τ²
  is not identified (lme4 stops anywhere on the flat criterion), and the fit is
  reported at θ = 0 with a message: the within-group coefficients, their SEs
  and σ̂² are the same for every θ.

* :func:`fit_random_slope` — the same with random intercept and random slopes
  on columns ``Z`` (unstructured covariance ``G = σ² L L'``, L lower
  triangular with non-negative diagonal, lme4's θ parametrisation). With the
  group cross-products ``Z_g'Z_g`` and ``Z_g'[X y]``,
  ``K_g = I + L'Z_g'Z_g L`` and ``A(θ) = A − Σ_g (L'Z_g'[X y])' K_g⁻¹ (L'Z_g'[X y])``;
  ``log|V_g/σ²| = log|K_g|``. θ is optimised by L-BFGS-B from several starts
  and polished by Nelder–Mead. Checked against lme4 in ``tests/reference``.

* :func:`fit_within_cr1` — the fixed-effects (within) estimator: OLS on
  group-demeaned data, no intercept, with CR1 cluster-robust covariance
  ``G/(G − 1) · (X'X)⁻¹ Σ_g X_g'e_g e_g'X_g (X'X)⁻¹`` (clubSandwich ``CR1``)
  and t tests with G − 1 degrees of freedom.

* :func:`fit_ols` — ordinary least squares with the classical covariance
  ``s²(X'X)⁻¹`` and t tests with N − p degrees of freedom.

All functions take integer or label group codes and return a small frozen
dataclass. Wald tests of the mixed models are normal (z) tests, as in lme4's
``summary`` without lmerTest; see ``analysis.lagged`` for why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, stats

__all__ = [
    "SINGULAR_TOL",
    "icc",
    "LinearFit",
    "MixedFit",
    "fit_ols",
    "fit_random_intercept",
    "fit_random_slope",
    "fit_within_cr1",
    "group_index",
]

SINGULAR_TOL = 1e-4
_LOG2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class MixedFit:
    """Result of a linear mixed model fit.

    ``beta``, ``se`` and ``cov_beta`` are the fixed effects (GLS at the
    estimated variance components) and their model-based covariance
    ``(X'V̂⁻¹X)⁻¹`` (= σ̂²M⁻¹ in the module docstring's notation; lme4's ``vcov``). ``tau2`` is the
    random-intercept variance, ``re_cov`` the full random-effects covariance
    (1×1 for a random intercept), ``sigma2`` the residual variance, ``theta``
    lme4's relative Cholesky parameters. ``deviance`` is the REML criterion
    (``method="REML"``) or −2 log-likelihood (``"ML"``), on lme4's scale.
    """

    beta: np.ndarray
    se: np.ndarray
    cov_beta: np.ndarray
    sigma2: float
    tau2: float
    re_cov: np.ndarray
    theta: np.ndarray
    deviance: float
    method: str
    n_obs: int
    n_groups: int
    converged: bool
    singular: bool
    messages: tuple = ()

    @property
    def loglik(self) -> float:
        return -0.5 * self.deviance


@dataclass(frozen=True)
class LinearFit:
    """Result of :func:`fit_ols` or :func:`fit_within_cr1`.

    ``df`` is the degrees of freedom of the t tests (N − p for OLS, G − 1 for
    the cluster-robust within estimator); ``sigma2`` the residual variance
    (for the within estimator with N − G − p degrees of freedom).
    """

    beta: np.ndarray
    se: np.ndarray
    cov_beta: np.ndarray
    sigma2: float
    df: float
    n_obs: int
    n_groups: int
    vcov_type: str
    messages: tuple = field(default=())


# --------------------------------------------------------------------------- helpers


def group_index(groups) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(order, starts)`` such that ``groups[order]`` is sorted and
    ``starts`` are the first positions of each group in that order.

    ``order`` is ``None`` when the groups are already contiguous and sorted.
    """
    g = np.asarray(groups)
    if g.dtype.kind not in "iu":
        _, g = np.unique(g, return_inverse=True)
    if g.size == 0:
        return None, np.zeros(0, dtype=np.intp)
    if np.all(g[1:] >= g[:-1]):
        order = None
        gs = g
    else:
        order = np.argsort(g, kind="stable")
        gs = g[order]
    starts = np.flatnonzero(np.r_[True, gs[1:] != gs[:-1]])
    return order, starts


def _check_inputs(X, y, groups):
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise ValueError("X must be an N×p matrix and y a vector of length N.")
    if len(groups) != y.shape[0]:
        raise ValueError("groups must have one entry per row of X.")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise ValueError("X and y must not contain missing or infinite values.")
    return X, y


def _rank_check(XtX: np.ndarray, names=None) -> None:
    """Raise ValueError when X'X is singular (a constant or collinear term)."""
    p = XtX.shape[0]
    d = np.sqrt(np.clip(np.diag(XtX), 0, None))
    names = list(names) if names is not None else [f"column {j + 1}" for j in range(p)]
    zero = [names[j] for j in range(p) if not d[j] > 0]
    if zero:
        raise ValueError(f"The term(s) {', '.join(zero)} are zero in every row and cannot be estimated.")
    S = XtX / np.outer(d, d)
    ev = np.linalg.eigvalsh(S)
    if ev[0] <= 1e-10 * ev[-1]:
        raise ValueError(
            "The model terms are collinear (one is a linear combination of the others), "
            "so their coefficients cannot be separated."
        )


def _wald(beta, cov):
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    return se


# ------------------------------------------------------------------ random intercept


def _gls_solve(A: np.ndarray, p: int, N: int, method: str):
    """GLS from the (p + 1) × (p + 1) cross-product matrix A = [X y]'V⁻¹[X y]·σ² at fixed θ:
    β̂ = M⁻¹b, σ̂² = (c − b'β̂)/(N − p) (REML) or /N (ML), Cov(β̂) = σ̂²M⁻¹."""
    M, b, c = A[:p, :p], A[:p, p], A[p, p]
    Minv = np.linalg.inv(M)
    Minv = 0.5 * (Minv + Minv.T)
    beta = Minv @ b
    sigma2 = (c - b @ beta) / (N - p if method == "REML" else N)
    return beta, sigma2 * Minv, sigma2


class _RIProblem:
    """Sufficient statistics of the random-intercept model (see module docstring)."""

    def __init__(self, X, y, groups, method):
        order, starts = group_index(groups)
        W = np.column_stack([X, y])
        if order is not None:
            W = W[order]
        self.N, self.p = X.shape
        self.method = method
        self.G = len(starts)
        sizes = np.diff(np.r_[starts, self.N])
        sums = np.add.reduceat(W, starts, axis=0) if self.N else np.zeros((0, self.p + 1))
        usz, inv = np.unique(sizes, return_inverse=True)
        self.usizes = usz.astype(float)
        self.counts = np.bincount(inv, minlength=len(usz)).astype(float)
        q = self.p + 1
        C = np.empty((len(usz), q, q))
        if len(usz) == 1:
            C[0] = sums.T @ sums
        else:
            o = np.argsort(inv, kind="stable")
            so = sums[o]
            bnd = np.r_[0, np.cumsum(self.counts.astype(int))]
            for s in range(len(usz)):
                blk = so[bnd[s] : bnd[s + 1]]
                C[s] = blk.T @ blk
        self.C = C
        self.Cf = C.reshape(len(usz), q * q)
        self.q = q
        # A(γ) = A − Σ_s γ/(1 + γ n_s) C_s = Wc + Σ_s C_s / (n_s (1 + γ n_s)), with Wc the
        # within-group cross-products from demeaned rows (no cancellation for large γ)
        Wd = W - np.repeat(sums / sizes[:, None], sizes, axis=0) if self.N else W
        self.Wc = Wd.T @ Wd
        self.Bf = self.Cf / self.usizes[:, None]

    def _crit(self, ld_v, R):
        p, N = self.p, self.N
        Q = R[p, p] ** 2
        if not Q > 0:
            return np.inf
        if self.method == "REML":
            ldM = 2.0 * np.log(np.diagonal(R)[:p]).sum()
            return ld_v + ldM + (N - p) * (1.0 + _LOG2PI + np.log(Q / (N - p)))
        return ld_v + N * (1.0 + _LOG2PI + np.log(Q / N))

    def dev(self, thetas: np.ndarray):
        """Profiled deviance at an array of θ values (vectorised); inf where invalid."""
        th = np.atleast_1d(np.asarray(thetas, dtype=float))
        gam = th**2
        gu = gam[:, None] * self.usizes[None, :]
        A = self.Wc[None] + ((1.0 / (1.0 + gu)) @ self.Bf).reshape(len(th), self.q, self.q)
        ld_v = np.log1p(gu) @ self.counts
        out = np.full(th.shape, np.inf)
        p, N = self.p, self.N
        try:
            R = np.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            for k in range(len(th)):
                try:
                    out[k] = self._crit(ld_v[k], np.linalg.cholesky(A[k]))
                except np.linalg.LinAlgError:
                    pass
            return out
        dg = np.diagonal(R, axis1=1, axis2=2)
        Q = dg[:, p] ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.method == "REML":
                out = ld_v + 2.0 * np.log(dg[:, :p]).sum(1) + (N - p) * (1.0 + _LOG2PI + np.log(Q / (N - p)))
            else:
                out = ld_v + N * (1.0 + _LOG2PI + np.log(Q / N))
        return np.where(Q > 0, out, np.inf)

    def dev1(self, theta: float) -> float:
        gam = theta * theta
        gu = gam * self.usizes
        A = self.Wc + ((1.0 / (1.0 + gu)) @ self.Bf).reshape(self.q, self.q)
        try:
            R = np.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            return np.inf
        return float(self._crit(float(np.log1p(gu) @ self.counts), R))

    def grad_hess(self, gam: float):
        """First and second derivatives of the profiled criterion with respect to γ.

        With ``log Q = log|A| − log|M|`` the REML criterion is
        ``Σ m_s log(1 + γ n_s) + (N − p) log|A| − (N − p − 1) log|M|`` (+ const;
        ML: ``… + N log|A| − N log|M|``), and ``d log|A| = tr(A⁻¹A')``,
        ``d² log|A| = tr(A⁻¹A'') − tr(A⁻¹A'A⁻¹A')``.
        """
        u, m, p = self.usizes, self.counts, self.p
        d = 1.0 + gam * u
        W = np.stack([1.0 / (u * d), 1.0 / d**2, 2.0 * u / d**3]) @ self.Cf
        A = self.Wc + W[0].reshape(self.q, self.q)
        A1 = -W[1].reshape(self.q, self.q)
        A2 = W[2].reshape(self.q, self.q)
        Ai = np.linalg.inv(A)
        Mi = np.linalg.inv(A[:p, :p])
        M1, M2 = A1[:p, :p], A2[:p, :p]
        P1 = Ai @ A1
        R1 = Mi @ M1
        if self.method == "REML":
            a, b = self.N - p, self.N - p - 1
        else:
            a, b = self.N, self.N
        g = (m * u / d).sum() + a * np.trace(P1) - b * np.trace(R1)
        h = (
            -(m * u**2 / d**2).sum()
            + a * (np.sum(Ai * A2) - np.sum(P1 * P1.T))
            - b * (np.sum(Mi * M2) - np.sum(R1 * R1.T))
        )
        return float(g), float(h)

    def solve(self, theta: float):
        gam = theta**2
        A = self.Wc + ((1.0 / (1.0 + gam * self.usizes)) @ self.Bf).reshape(self.q, self.q)
        return _gls_solve(A, self.p, self.N, self.method)


def _newton_gamma(prob: _RIProblem, grid: np.ndarray, i: int, tol: float = 1e-11) -> float:
    """Minimise the profiled criterion over γ = θ² by safeguarded Newton on its
    derivative, inside the grid bracket around the best grid point ``i``.
    Returns θ (0 when the derivative at γ = 0 is ≥ 0 and 0 is the best grid point)."""
    lo_g = grid[max(i - 1, 0)] ** 2
    hi_g = grid[i + 1] ** 2
    g_lo, _ = prob.grad_hess(lo_g)
    if i == 0 and g_lo >= 0:
        return 0.0
    g_hi, _ = prob.grad_hess(hi_g)
    if not (g_lo < 0 < g_hi):
        # no sign change (flat or numerically noisy): fall back to bounded Brent in θ
        r = optimize.minimize_scalar(
            prob.dev1, bounds=(np.sqrt(lo_g), np.sqrt(hi_g)), method="bounded", options={"xatol": 1e-10}
        )
        return float(r.x)
    a, b = lo_g, hi_g
    x = grid[i] ** 2 if i > 0 else 0.5 * (a + b)
    for _ in range(100):
        g, h = prob.grad_hess(x)
        if g < 0:
            a = x
        else:
            b = x
        step = g / h if h > 0 else np.inf
        xn = x - step
        if not (a < xn < b) or not np.isfinite(xn):
            xn = 0.5 * (a + b)
        if abs(xn - x) <= tol * max(x, 1e-8) or b - a <= tol * max(b, 1e-8):
            x = xn
            break
        x = xn
    return float(np.sqrt(max(x, 0.0)))


def _groups_in_span(X, groups, G) -> bool:
    """True when every group indicator is a linear combination of the columns of X (then the
    random intercept is confounded with the fixed effects). Possible only when G ≤ p."""
    if G > X.shape[1]:
        return False
    _, inv = np.unique(np.asarray(groups), return_inverse=True)
    D = np.zeros((X.shape[0], G))
    D[np.arange(X.shape[0]), inv] = 1.0
    coef = np.linalg.lstsq(X, D, rcond=None)[0]
    return bool(np.max(np.abs(D - X @ coef)) < 1e-8)


def _minimise_theta(prob: _RIProblem):
    """θ̂ over [0, ∞): a log grid over [1e-3, 1e3] (extended to 1e8 when the best point is its end)
    and safeguarded Newton in the bracket. Returns (θ̂, criterion at the grid, ok)."""
    grid = np.r_[0.0, np.logspace(-3, 3, 25)]  # θ = τ/σ
    dv = prob.dev(grid)
    if not np.isfinite(dv).any():
        raise ValueError("The mixed model likelihood could not be evaluated (degenerate data).")
    i = int(np.nanargmin(dv))
    if i == len(grid) - 1:
        # very large τ/σ: the criterion is well conditioned there (A(γ) from within cross-products)
        ext = np.logspace(3, 8, 21)[1:]
        grid = np.r_[grid, ext]
        dv = np.r_[dv, prob.dev(ext)]
        i = int(np.nanargmin(dv))
        if i == len(grid) - 1:
            return grid[-1], dv, False
    return _newton_gamma(prob, grid, i), dv, True


def fit_random_intercept(X, y, groups, method: str = "REML", names=None) -> MixedFit:
    """Random-intercept linear mixed model by REML or ML (module docstring).

    Parameters
    ----------
    X : (N, p) design matrix including the intercept column.
    y : (N,) outcome.
    groups : (N,) group labels or integer codes (need not be sorted).
    method : ``"REML"`` (default) or ``"ML"``.
    names : optional term names used in error messages.
    """
    method = str(method).upper()
    if method not in ("REML", "ML"):
        raise ValueError("method must be 'REML' or 'ML'.")
    X, y = _check_inputs(X, y, groups)
    N, p = X.shape
    if N <= p:
        raise ValueError(f"Only {N} rows for {p} coefficients: the model cannot be fitted.")
    _rank_check(X.T @ X, names)
    prob = _RIProblem(X, y, groups, method)
    if prob.G < 2:
        raise ValueError("A random intercept needs at least two groups (patients).")
    if prob.G >= N:
        raise ValueError(
            "Every patient contributes a single row, so the random-intercept variance cannot "
            "be separated from the residual variance."
        )
    messages = []
    converged = True
    if _groups_in_span(X, groups, prob.G):
        # the patient-level terms fit every group mean exactly: the criterion does not depend on θ
        # (τ² is not identified); the within-group terms and σ² are the same for every θ
        theta = 0.0
        dv = prob.dev(np.array([0.0]))
        messages.append(
            f"The random-intercept variance cannot be estimated: with {prob.G} patients the patient-level terms "
            "(intercept and between parts) reproduce every patient's mean exactly. The within-patient "
            "coefficients and their SEs do not depend on it; the patient-level terms' SEs are those of τ² = 0."
        )
    else:
        theta, dv, ok = _minimise_theta(prob)
        if not ok:
            converged = False
            messages.append("The random-intercept variance is extremely large relative to the residual variance.")
    dmin = float(prob.dev1(theta))
    if theta > 0 and dv[0] <= dmin:
        theta, dmin = 0.0, float(dv[0])
    if not np.isfinite(dmin):
        raise ValueError("The mixed model likelihood could not be evaluated (degenerate data).")
    beta, cov, sigma2 = prob.solve(theta)
    tau2 = theta**2 * sigma2
    singular = theta < SINGULAR_TOL
    return MixedFit(
        beta=beta,
        se=_wald(beta, cov),
        cov_beta=cov,
        sigma2=float(sigma2),
        tau2=float(tau2),
        re_cov=np.array([[tau2]]),
        theta=np.array([theta]),
        deviance=dmin,
        method=method,
        n_obs=N,
        n_groups=prob.G,
        converged=converged,
        singular=bool(singular),
        messages=tuple(messages),
    )


# ------------------------------------------------------------------ random slopes


class _RSProblem:
    def __init__(self, X, y, Z, groups, method):
        order, starts = group_index(groups)
        W = np.column_stack([X, y])
        if order is not None:
            W, Z = W[order], Z[order]
        self.N, self.p = X.shape
        self.q = Z.shape[1]
        self.method = method
        self.G = len(starts)
        q, m = self.q, self.p + 1
        # per-group Z'Z and Z'[X y]
        zz = (Z[:, :, None] * Z[:, None, :]).reshape(self.N, q * q)
        zw = (Z[:, :, None] * W[:, None, :]).reshape(self.N, q * m)
        self.ZZ = np.add.reduceat(zz, starts, axis=0).reshape(self.G, q, q)
        self.ZW = np.add.reduceat(zw, starts, axis=0).reshape(self.G, q, m)
        self.A0 = W.T @ W
        self.tril = np.tril_indices(q)
        self.diag_pos = [k for k, (r, c) in enumerate(zip(*self.tril)) if r == c]

    def L(self, theta):
        L = np.zeros((self.q, self.q))
        L[self.tril] = theta
        return L

    def _A(self, theta):
        L = self.L(theta)
        K = np.eye(self.q)[None] + np.einsum("ji,gjk,kl->gil", L, self.ZZ, L)
        B = np.einsum("ji,gjm->gim", L, self.ZW)
        try:
            ch = np.linalg.cholesky(K)
        except np.linalg.LinAlgError:
            return None, None
        ld = 2.0 * np.log(np.diagonal(ch, axis1=1, axis2=2)).sum()
        KiB = np.linalg.solve(K, B)
        A = self.A0 - np.einsum("gim,gin->mn", B, KiB)
        return A, ld

    def dev(self, theta):
        A, ld = self._A(np.asarray(theta, dtype=float))
        if A is None:
            return np.inf
        p, N = self.p, self.N
        try:
            R = np.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            return np.inf
        Q = R[p, p] ** 2
        if not Q > 0:
            return np.inf
        if self.method == "REML":
            return float(ld + 2.0 * np.log(np.diag(R)[:p]).sum() + (N - p) * (1.0 + _LOG2PI + np.log(Q / (N - p))))
        return float(ld + N * (1.0 + _LOG2PI + np.log(Q / N)))

    def dev_grad(self, theta):
        """Profiled criterion and its analytic gradient with respect to θ.

        With ``H_g = L K_g⁻¹ L'``, ``A = A₀ − Σ_g W_g'H_g W_g`` (``W_g = Z_g'[X y]``),
        ``S_g = a·W_g A⁻¹ W_g' − b·W_gX M⁻¹ W_gX'`` (a, b as in the random-intercept
        criterion) and ``T_g = K_g⁻¹L'S_g L K_g⁻¹``, the derivative along the
        element (r, c) of L is
        ``2 Σ_g [K_g⁻¹L'Z_g'Z_g]_cr − 2 Σ_g [K_g⁻¹L'S_g]_cr + 2 Σ_g [Z_g'Z_g L T_g]_rc``.
        """
        theta = np.asarray(theta, dtype=float)
        L = self.L(theta)
        p, N, q = self.p, self.N, self.q
        K = np.eye(q)[None] + np.einsum("ji,gjk,kl->gil", L, self.ZZ, L)
        try:
            ch = np.linalg.cholesky(K)
        except np.linalg.LinAlgError:
            return np.inf, np.zeros_like(theta)
        ld = 2.0 * np.log(np.diagonal(ch, axis1=1, axis2=2)).sum()
        Ki = np.linalg.inv(K)
        LKi = np.einsum("ij,gjk->gik", L, Ki)  # L K⁻¹
        H = np.einsum("gij,kj->gik", LKi, L)  # L K⁻¹ L'
        HW = np.einsum("gij,gjm->gim", H, self.ZW)
        A = self.A0 - np.einsum("gim,gin->mn", self.ZW, HW)
        try:
            R = np.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            return np.inf, np.zeros_like(theta)
        Q = R[p, p] ** 2
        if not Q > 0:
            return np.inf, np.zeros_like(theta)
        if self.method == "REML":
            a, b = N - p, N - p - 1
            dev = ld + 2.0 * np.log(np.diag(R)[:p]).sum() + (N - p) * (1.0 + _LOG2PI + np.log(Q / (N - p)))
        else:
            a, b = N, N
            dev = ld + N * (1.0 + _LOG2PI + np.log(Q / N))
        Ai = np.linalg.inv(A)
        Mi = np.linalg.inv(A[:p, :p])
        ZX = self.ZW[:, :, :p]
        S = a * np.einsum("gim,mn,gjn->gij", self.ZW, Ai, self.ZW) - b * np.einsum("gim,mn,gjn->gij", ZX, Mi, ZX)
        KiLt = np.transpose(LKi, (0, 2, 1))  # K⁻¹ L'
        U = np.einsum("gij,gjk->ik", KiLt, self.ZZ)
        V = np.einsum("gij,gjk->ik", KiLt, S)
        T = np.einsum("gij,gjk,gkl->gil", KiLt, S, LKi)
        W = np.einsum("gij,jk,gkl->il", self.ZZ, L, T)
        rr, cc = self.tril
        grad = 2.0 * U[cc, rr] - 2.0 * V[cc, rr] + 2.0 * W[rr, cc]
        return float(dev), grad

    def solve(self, theta):
        A, _ = self._A(theta)
        return _gls_solve(A, self.p, self.N, self.method)


def fit_random_slope(X, y, groups, Z, method: str = "REML", names=None) -> MixedFit:
    """Linear mixed model with correlated random effects on the columns of ``Z``.

    ``Z`` (N×q) usually is ``[1, time]``: a random intercept and a random slope
    with an unstructured 2×2 covariance, lme4's ``(1 + time | patient)``. See
    the module docstring for the likelihood; ``tau2`` is the random-intercept
    variance ``re_cov[0, 0]`` and ``re_cov = σ² L L'``.
    """
    method = str(method).upper()
    if method not in ("REML", "ML"):
        raise ValueError("method must be 'REML' or 'ML'.")
    X, y = _check_inputs(X, y, groups)
    Z = np.asarray(Z, dtype=float)
    if Z.ndim == 1:
        Z = Z[:, None]
    if Z.shape[0] != X.shape[0] or not np.all(np.isfinite(Z)):
        raise ValueError("Z must have one finite row per row of X.")
    N, p = X.shape
    if N <= p:
        raise ValueError(f"Only {N} rows for {p} coefficients: the model cannot be fitted.")
    _rank_check(X.T @ X, names)
    prob = _RSProblem(X, y, Z, groups, method)
    q = prob.q
    ntheta = q * (q + 1) // 2
    if prob.G < 2:
        raise ValueError("Random effects need at least two groups (patients).")
    if prob.G * q >= N:
        raise ValueError(
            "Too few rows per patient for random intercepts and slopes: the number of random "
            "effects must be smaller than the number of rows."
        )
    bounds = [(0.0, None) if k in prob.diag_pos else (None, None) for k in range(ntheta)]
    f = prob.dev

    # starts: lme4's default (identity), and random-intercept-based ones with small slopes
    ri = fit_random_intercept(X, y, groups, method=method)
    starts = []
    t0 = np.zeros(ntheta)
    t0[prob.diag_pos] = 1.0
    starts.append(t0)
    for s_slope in (0.05, 0.5):
        t0 = np.zeros(ntheta)
        t0[prob.diag_pos[0]] = max(ri.theta[0], 0.05)
        t0[prob.diag_pos[1:]] = s_slope
        starts.append(t0)
    best = None
    for t0 in starts:
        r = optimize.minimize(
            prob.dev_grad, t0, jac=True, method="L-BFGS-B", bounds=bounds,
            options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 1000},
        )
        if best is None or r.fun < best.fun:
            best = r
    theta = np.array(best.x, dtype=float)
    # snap tiny diagonal elements to the boundary when that is no worse
    for k in prob.diag_pos:
        if 0 < theta[k] < 1e-5:
            t2 = theta.copy()
            t2[k] = 0.0
            if f(t2) <= f(theta) + 1e-10:
                theta = t2
    _, gr = prob.dev_grad(theta)
    free = np.array([not (k in prob.diag_pos and theta[k] == 0.0) for k in range(ntheta)])
    gnorm = float(np.max(np.abs(gr[free]))) if free.any() else 0.0
    converged = bool(np.isfinite(best.fun) and (best.success or gnorm < 1e-4))
    dmin = f(theta)
    beta, cov, sigma2 = prob.solve(theta)
    L = prob.L(theta)
    re_cov = sigma2 * (L @ L.T)
    singular = bool(np.any(theta[prob.diag_pos] < SINGULAR_TOL))
    messages = []
    if not converged:
        messages.append("The optimiser for the random-effects covariance did not report convergence.")
    return MixedFit(
        beta=beta,
        se=_wald(beta, cov),
        cov_beta=cov,
        sigma2=float(sigma2),
        tau2=float(re_cov[0, 0]),
        re_cov=re_cov,
        theta=theta,
        deviance=float(dmin),
        method=method,
        n_obs=N,
        n_groups=prob.G,
        converged=converged,
        singular=singular,
        messages=tuple(messages),
    )


# ------------------------------------------------------------------ OLS estimators


def fit_within_cr1(X, y, groups, names=None) -> LinearFit:
    """Fixed-effects (within) estimator with CR1 cluster-robust covariance.

    ``X`` holds the time-varying terms only (no intercept); X and y are
    demeaned within each group here. ``Cov = G/(G−1)·B⁻¹(Σ_g s_g s_g')B⁻¹`` with
    ``B = X̃'X̃`` and ``s_g = X̃_g' ẽ_g`` (clubSandwich ``vcovCR(type = "CR1")``);
    tests use t with G − 1 degrees of freedom.
    """
    X, y = _check_inputs(X, y, groups)
    order, starts = group_index(groups)
    if order is not None:
        X, y = X[order], y[order]
    N, p = X.shape
    G = len(starts)
    if G < 2:
        raise ValueError("The cluster-robust within estimator needs at least two patients.")
    sizes = np.diff(np.r_[starts, N])
    gid = np.repeat(np.arange(G), sizes)
    W = np.column_stack([X, y])
    means = np.add.reduceat(W, starts, axis=0) / sizes[:, None]
    Wd = W - means[gid]
    Xd, yd = Wd[:, :p], Wd[:, p]
    if N - G - p <= 0:
        raise ValueError("Too few rows per patient for the within (fixed-effects) estimator.")
    B = Xd.T @ Xd
    _rank_check(B, names)
    Binv = np.linalg.inv(B)
    beta = Binv @ (Xd.T @ yd)
    e = yd - Xd @ beta
    S = np.add.reduceat(Xd * e[:, None], starts, axis=0)
    meat = S.T @ S
    cov = G / (G - 1.0) * (Binv @ meat @ Binv)
    cov = 0.5 * (cov + cov.T)
    sigma2 = float(e @ e / (N - G - p))
    return LinearFit(
        beta=beta,
        se=_wald(beta, cov),
        cov_beta=cov,
        sigma2=sigma2,
        df=float(G - 1),
        n_obs=N,
        n_groups=G,
        vcov_type="CR1",
    )


def fit_ols(X, y, names=None) -> LinearFit:
    """Ordinary least squares, ``Cov = s²(X'X)⁻¹`` with ``s² = e'e/(N − p)``."""
    X, y = _check_inputs(X, y, np.zeros(len(y)))
    N, p = X.shape
    if N <= p:
        raise ValueError(f"Only {N} rows for {p} coefficients: the model cannot be fitted.")
    B = X.T @ X
    _rank_check(B, names)
    Binv = np.linalg.inv(B)
    beta = Binv @ (X.T @ y)
    e = y - X @ beta
    s2 = float(e @ e / (N - p))
    cov = s2 * Binv
    return LinearFit(
        beta=beta, se=_wald(beta, cov), cov_beta=cov, sigma2=s2, df=float(N - p), n_obs=N, n_groups=N, vcov_type="OLS"
    )


def wald_table(beta, se, df=None, level: float = 0.95):
    """Estimates, SEs, CIs and two-sided p values: normal (``df=None``) or t(df)."""
    beta = np.asarray(beta, float)
    se = np.asarray(se, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = beta / se
    if df is None or not np.isfinite(df):
        crit = stats.norm.ppf(0.5 + level / 2)
        p = 2 * stats.norm.sf(np.abs(stat))
    else:
        crit = stats.t.ppf(0.5 + level / 2, df)
        p = 2 * stats.t.sf(np.abs(stat), df)
    return stat, beta - crit * se, beta + crit * se, p


def icc(x, groups) -> float:
    """Intraclass correlation τ²/(τ² + σ²) of ``x`` from an intercept-only random-intercept
    REML model (:func:`fit_random_intercept`), using the finite values only.

    NaN when fewer than 3 values are observed, the model cannot be fitted, or τ² + σ² = 0.
    The reliability of a person mean over n sessions follows as n·ICC / (1 + (n − 1)·ICC)
    (METHODS §5).
    """
    x = np.asarray(x, float)
    groups = np.asarray(groups)
    obs = np.isfinite(x)
    if obs.sum() < 3:
        return float("nan")
    try:
        f = fit_random_intercept(np.ones((int(obs.sum()), 1)), x[obs], groups[obs])
    except (ValueError, np.linalg.LinAlgError):
        return float("nan")
    tot = f.tau2 + f.sigma2
    return float(f.tau2 / tot) if tot > 0 else float("nan")
