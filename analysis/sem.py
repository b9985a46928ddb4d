"""Full-information maximum likelihood for linear structural equation models.

A small engine in RAM notation (McArdle & McDonald, 1984) used by
:mod:`analysis.dynamics` (the RI-CLPM and the ML-SEM dynamic panel model,
``docs/METHODS.md`` §15). Every variable — observed or latent — is in the
vector ``v``::

    v = A v + u,   Cov(u) = S,   E(u) = m,   y = F v
    Σ(θ) = F E S Eᵀ Fᵀ,   μ(θ) = F E m,   E = (I − A)⁻¹

Each free entry of ``A``, ``S`` and ``m`` is one element of the parameter
vector ``θ``; entries that share an index are equal (lavaan's labels).

Missing data by full-information ML (lavaan ``missing = "ml"``): cases are
grouped by their missingness pattern g (observed set o, n_g cases, mean ȳ_g,
ML covariance C_g) and

    ℓ(θ) = −½ Σ_g n_g [ p_g log 2π + log|Σ_oo| + tr(Σ_oo⁻¹ (C_g + d_g d_gᵀ)) ],
    d_g = ȳ_g − μ_o.

The gradient is analytic: with G = ∂ℓ/∂Σ = Σ_g P_gᵀ ½ n_g (W C W − W) P_g
(W = Σ_oo⁻¹, C = C_g + d dᵀ), g_μ = Σ_g P_gᵀ n_g W d, H = Fᵀ G F,
K = E S Eᵀ:

    ∂ℓ/∂A_ij = 2 (Eᵀ H K)_ij + (Eᵀ Fᵀ g_μ)_i (E m)_j
    ∂ℓ/∂S_ij = (2 − δ_ij) (Eᵀ H E)_ij,   ∂ℓ/∂m_i = (Eᵀ Fᵀ g_μ)_i.

All patterns are processed as one batch (padded to p variables). The Hessian
is analytic too (:func:`loglik_hessian`): per pattern, with M = W C W,

    ∂²ℓ/∂Σ_xy∂Σ_zw = ½ n_g [W_wx W_yz − W_yz M_wx − M_yz W_wx]
    ∂²ℓ/∂Σ_xy∂μ_c  = −n_g (W d)_x W_yc,    ∂²ℓ/∂μ∂μᵀ = −n_g W,

summed over patterns (Σ_g n_g W ⊗ W as one product of the stacked vech(W)),
carried to θ by the Jacobian of (Σ, μ) plus the second-order term of the RAM
parametrisation (closed form from dE = E dA E). The estimate is found by
Newton–Raphson on it (Fisher scoring, with the expected information, while the
observed information is not positive definite), and the standard errors are
the inverse observed information at the estimate, lavaan's default for
``missing = "ml"`` (``information = "observed"``, ``observed.information =
"hessian"``) — exact, not by differences.

Fit against lavaan's reference models: the saturated (h1) model has free
means and covariances fitted by EM under the same FIML likelihood; the
baseline model has free means and variances and no covariances (closed form
per variable under FIML). χ² = 2(ℓ_h1 − ℓ), CFI, TLI and RMSEA as lavaan
(N in the RMSEA denominator), SRMR (Bentler's, means included) against the
h1 moments.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass

import numpy as np
from threadpoolctl import ThreadpoolController

LOG2PI = float(np.log(2.0 * np.pi))


@dataclass(frozen=True)
class RamModel:
    """A linear SEM in RAM form.

    ``n_var`` variables of which ``observed`` (indices into ``v``) are measured;
    ``a_free``/``s_free``/``m_free`` are integer arrays of rows ``(i, j, k)``
    (``(i, k)`` for m) meaning entry (i, j) equals θ_k; ``a_fixed`` etc. hold
    fixed non-zero entries ``(i, j, value)``. ``S`` entries are symmetric (give
    each off-diagonal pair once).
    """

    n_var: int
    observed: np.ndarray
    names: tuple[str, ...]
    a_free: np.ndarray
    s_free: np.ndarray
    m_free: np.ndarray
    a_fixed: np.ndarray
    variances: np.ndarray  # parameter indices that are variances (Heywood check)

    @property
    def n_par(self) -> int:
        return len(self.names)

    def matrices(self, theta: np.ndarray):
        m = self.n_var
        A = np.zeros((m, m))
        S = np.zeros((m, m))
        mv = np.zeros(m)
        if len(self.a_fixed):
            A[self.a_fixed[:, 0].astype(int), self.a_fixed[:, 1].astype(int)] = self.a_fixed[:, 2]
        if len(self.a_free):
            A[self.a_free[:, 0], self.a_free[:, 1]] = theta[self.a_free[:, 2]]
        if len(self.s_free):
            S[self.s_free[:, 0], self.s_free[:, 1]] = theta[self.s_free[:, 2]]
            S[self.s_free[:, 1], self.s_free[:, 0]] = theta[self.s_free[:, 2]]
        if len(self.m_free):
            mv[self.m_free[:, 0]] = theta[self.m_free[:, 1]]
        return A, S, mv

    def implied_all(self, theta: np.ndarray):
        """(E, K = Cov(v), E m = E(v), A, S, m) for all variables."""
        A, S, mv = self.matrices(theta)
        E = np.linalg.inv(np.eye(self.n_var) - A)
        K = E @ S @ E.T
        return E, K, E @ mv, A, S, mv

    def implied(self, theta: np.ndarray):
        """Model-implied mean vector and covariance matrix of the observed variables."""
        _, K, mu, *_ = self.implied_all(theta)
        o = self.observed
        return mu[o], K[np.ix_(o, o)]


class Builder:
    """Collects parameters and matrix entries for a :class:`RamModel`."""

    def __init__(self, n_var: int, observed):
        self.n_var = n_var
        self.observed = np.asarray(observed, dtype=int)
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.a: list[tuple[int, int, int]] = []
        self.s: list[tuple[int, int, int]] = []
        self.m: list[tuple[int, int]] = []
        self.afix: list[tuple[int, int, float]] = []
        self.var_idx: list[int] = []

    def par(self, name: str) -> int:
        if name not in self.index:
            self.index[name] = len(self.names)
            self.names.append(name)
        return self.index[name]

    def path(self, to: int, frm: int, name: str | None = None, value: float | None = None):
        """Regression of variable ``to`` on ``frm`` (free with ``name`` or fixed at ``value``)."""
        if name is None:
            self.afix.append((to, frm, float(value)))
        else:
            self.a.append((to, frm, self.par(name)))

    def cov(self, i: int, j: int, name: str):
        k = self.par(name)
        self.s.append((i, j, k))
        if i == j and k not in self.var_idx:
            self.var_idx.append(k)

    def mean(self, i: int, name: str):
        self.m.append((i, self.par(name)))

    def build(self) -> RamModel:
        def arr(rows, width):
            return np.asarray(rows, dtype=int).reshape(-1, width)

        return RamModel(
            n_var=self.n_var, observed=self.observed, names=tuple(self.names),
            a_free=arr(self.a, 3), s_free=arr(self.s, 3), m_free=arr(self.m, 2),
            a_fixed=np.asarray(self.afix, dtype=float).reshape(-1, 3),
            variances=np.asarray(self.var_idx, dtype=int),
        )


@dataclass(frozen=True)
class PatternData:
    """Sufficient statistics of wide data with missing values, one row per missingness pattern.

    ``mask`` (P×p, observed), ``n`` (cases), ``mean`` and ``cov`` (ML covariance)
    of each pattern, with zeros in the unobserved entries. Every pattern is
    processed in one batch padded to p variables: the unobserved block of Σ is
    replaced by the identity (zero covariances), which leaves log|Σ_oo| and the
    quadratic form unchanged.
    """

    p: int
    n: int
    mask: np.ndarray
    counts: np.ndarray
    mean: np.ndarray
    cov: np.ndarray

    @property
    def n_patterns(self) -> int:
        return len(self.counts)

    @classmethod
    def from_wide(cls, Y: np.ndarray) -> PatternData:
        Y = np.asarray(Y, dtype=float)
        obs = ~np.isnan(Y)
        keep = obs.any(axis=1)
        Y, obs = Y[keep], obs[keep]
        n, p = Y.shape
        pats, inv = np.unique(obs, axis=0, return_inverse=True)
        inv = inv.ravel()
        P = len(pats)
        counts = np.bincount(inv, minlength=P).astype(float)
        Y0 = np.where(obs, Y, 0.0)
        mean = np.zeros((P, p))
        np.add.at(mean, inv, Y0)
        mean /= counts[:, None]
        dev = Y0 - mean[inv]
        dev[~obs] = 0.0
        cov = np.zeros((P, p, p))
        np.add.at(cov, inv, dev[:, :, None] * dev[:, None, :])
        cov /= counts[:, None, None]
        return cls(p=p, n=n, mask=pats, counts=counts, mean=mean, cov=cov)


def _batch_loglik(data: PatternData, mu: np.ndarray, Sigma: np.ndarray, grad: bool):
    """FIML ℓ for a stack of moments μ (B×p), Σ (B×p×p): (ℓ (B,), ∂ℓ/∂Σ (B×p×p), ∂ℓ/∂μ (B×p)).

    ℓ is −inf where some Σ_oo is not positive definite (its gradients are then 0).
    """
    B, p = mu.shape
    m = data.mask.astype(float)  # P, p
    mm = m[:, :, None] * m[:, None, :]
    pad = np.eye(p) * (1.0 - m)[:, :, None]  # identity on the unobserved diagonal
    Sg = Sigma[:, None] * mm + pad  # B, P, p, p
    L, good = _chol(Sg.reshape(-1, p, p))
    L = L.reshape(B, -1, p, p)
    ok = good.reshape(B, -1).all(axis=1)
    logdet = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)  # B, P
    Li = np.linalg.inv(L)
    W = np.swapaxes(Li, -1, -2) @ Li
    d = (data.mean - mu[:, None, :]) * m  # B, P, p
    C = data.cov + d[..., :, None] * d[..., None, :]
    tr = np.einsum("bgij,bgji->bg", W, C)
    k = m.sum(axis=1)
    ll = -0.5 * ((k * LOG2PI + logdet + tr) @ data.counts)
    ll = np.where(ok & np.isfinite(ll), ll, -np.inf)
    if not grad:
        return ll, None, None
    Gg = (W @ C @ W - W) * mm
    G = 0.5 * np.einsum("g,bgij->bij", data.counts, Gg)
    gmu = np.einsum("g,bgi->bi", data.counts, np.einsum("bgij,bgj->bgi", W, d) * m)
    return ll, G, gmu


def _chol(S):
    """Batched Cholesky factor and a per-batch flag of positive definiteness (bad batches get I)."""
    try:
        L = np.linalg.cholesky(S)
        return L, np.ones(S.shape[0], dtype=bool)
    except np.linalg.LinAlgError:
        pass
    good = np.array([_is_pd(s) for s in S])
    S = S.copy()
    eye = np.broadcast_to(np.eye(S.shape[-1]), S.shape[1:])
    S[~good] = eye
    return np.linalg.cholesky(S), good


def _is_pd(stack) -> bool:
    try:
        np.linalg.cholesky(stack)
        return True
    except np.linalg.LinAlgError:
        return False


def loglik_moments(data: PatternData, mu: np.ndarray, Sigma: np.ndarray) -> float:
    """FIML log-likelihood of one (μ, Σ); −inf if some Σ_oo is not positive definite."""
    return float(_batch_loglik(data, mu[None], Sigma[None], grad=False)[0][0])


def loglik(model: RamModel, data: PatternData, theta: np.ndarray) -> float:
    mu, Sigma = model.implied(theta)
    return loglik_moments(data, mu, Sigma)


def _matrices_batch(model: RamModel, thetas: np.ndarray):
    """(A, S, m) for a stack of parameter vectors (B×q)."""
    B = thetas.shape[0]
    m = model.n_var
    A = np.zeros((B, m, m))
    S = np.zeros((B, m, m))
    mv = np.zeros((B, m))
    if len(model.a_fixed):
        A[:, model.a_fixed[:, 0].astype(int), model.a_fixed[:, 1].astype(int)] = model.a_fixed[:, 2]
    a, s, mm = model.a_free, model.s_free, model.m_free
    if len(a):
        A[:, a[:, 0], a[:, 1]] = thetas[:, a[:, 2]]
    if len(s):
        S[:, s[:, 0], s[:, 1]] = thetas[:, s[:, 2]]
        S[:, s[:, 1], s[:, 0]] = thetas[:, s[:, 2]]
    if len(mm):
        mv[:, mm[:, 0]] = thetas[:, mm[:, 1]]
    return A, S, mv


def implied_batch(model: RamModel, thetas: np.ndarray):
    """(A, K = Cov(v)) of all variables for a stack of parameter vectors (B×q)."""
    A, S, _ = _matrices_batch(model, np.atleast_2d(thetas))
    E = np.linalg.inv(np.eye(model.n_var) - A)
    return A, E @ S @ np.swapaxes(E, 1, 2)


def loglik_grad_batch(model: RamModel, data: PatternData, thetas: np.ndarray):
    """(ℓ (B,), ∂ℓ/∂θ (B×q)) for a stack of parameter vectors (module docstring formulas)."""
    thetas = np.atleast_2d(thetas)
    B = thetas.shape[0]
    m, q = model.n_var, model.n_par
    A, S, mv = _matrices_batch(model, thetas)
    a, s, mm = model.a_free, model.s_free, model.m_free
    E = np.linalg.inv(np.eye(m) - A)
    Et = np.swapaxes(E, 1, 2)
    K = E @ S @ Et
    Em = np.einsum("bij,bj->bi", E, mv)
    o = model.observed
    ll, G, gmu = _batch_loglik(data, Em[:, o], K[:, o[:, None], o[None, :]], grad=True)
    H = np.zeros((B, m, m))
    H[:, o[:, None], o[None, :]] = G
    gm = np.zeros((B, m))
    gm[:, o] = gmu
    Etg = np.einsum("bji,bj->bi", E, gm)
    EH = Et @ H
    g = np.zeros((B, q))
    rows = np.arange(B)[:, None]
    if len(a):
        MA = 2.0 * EH @ K + Etg[:, :, None] * Em[:, None, :]
        w = MA[:, a[:, 0], a[:, 1]]
        np.add.at(g, (rows, a[None, :, 2]), w)
    if len(s):
        MS = EH @ E
        w = np.where(s[:, 0] == s[:, 1], 1.0, 2.0) * MS[:, s[:, 0], s[:, 1]]
        np.add.at(g, (rows, s[None, :, 2]), w)
    if len(mm):
        np.add.at(g, (rows, mm[None, :, 1]), Etg[:, mm[:, 0]])
    g[~np.isfinite(ll)] = 0.0
    return ll, g


def loglik_grad(model: RamModel, data: PatternData, theta: np.ndarray):
    """(ℓ, ∂ℓ/∂θ); (−inf, None) where the implied covariance is not positive definite."""
    ll, g = loglik_grad_batch(model, data, np.asarray(theta, float)[None])
    if not np.isfinite(ll[0]):
        return -np.inf, None
    return float(ll[0]), g[0]


def jacobian(model: RamModel, theta: np.ndarray):
    """Analytic Jacobians ∂μ/∂θ (p×q) and ∂Σ/∂θ (p×p×q) of the observed moments.

    ∂Σ/∂A_ij = F(E e_i e_jᵀ K + K e_j e_iᵀ Eᵀ)Fᵀ, ∂Σ/∂S_ij = F E (e_i e_jᵀ + e_j e_iᵀ) Eᵀ Fᵀ (once on the
    diagonal), ∂μ/∂A_ij = F E e_i (E m)_j, ∂μ/∂m_i = F E e_i.
    """
    E, K, Em, *_ = model.implied_all(theta)
    o = model.observed
    q = model.n_par
    p = len(o)
    dmu = np.zeros((p, q))
    dS = np.zeros((p * p, q))
    Eo = E[o]

    def outer(U, V):  # (p·p × entries): column e is vec(U[:, e] V[:, e]ᵀ)
        return (U[:, None, :] * V[None, :, :]).reshape(p * p, -1)

    if len(model.a_free):
        a = model.a_free
        U = Eo[:, a[:, 0]]  # p × na
        V = K[np.ix_(o, a[:, 1])]  # p × na
        P = _indicator(a[:, 2], q)
        dS += (outer(U, V) + outer(V, U)) @ P
        dmu += (U * Em[a[:, 1]]) @ P
    if len(model.s_free):
        s = model.s_free
        U, V = Eo[:, s[:, 0]], Eo[:, s[:, 1]]
        off = (s[:, 0] != s[:, 1]).astype(float)
        dS += (outer(U, V) + outer(V, U) * off) @ _indicator(s[:, 2], q)
    if len(model.m_free):
        mm = model.m_free
        dmu += Eo[:, mm[:, 0]] @ _indicator(mm[:, 1], q)
    return dmu, dS.reshape(p, p, q)


def _moment_hessian(data: PatternData, mu: np.ndarray, Sigma: np.ndarray, observed: bool = True):
    """ℓ and its first and second derivatives with respect to the observed moments (μ, Σ).

    Returns ``(ℓ, G, g_μ, HSS, HSμ, Hμμ)`` with G, g_μ as in :func:`_batch_loglik` and the
    second derivatives (entries of Σ treated as free; the Jacobian supplies the symmetry)::

        ∂²ℓ/∂Σ_xy∂Σ_zw = ½ Σ_g n_g [W_wx W_yz − W_yz M_wx − M_yz W_wx],   M = W C W
        ∂²ℓ/∂Σ_xy∂μ_c  = −Σ_g n_g (W d)_x W_yc,     ∂²ℓ/∂μ∂μᵀ = −Σ_g n_g W

    (W = Σ_oo⁻¹ padded with zeros). With ``observed=False`` the expected
    (Fisher) information's negative is returned instead: C → Σ_oo, d → 0, i.e.
    HSS = −½ Σ n_g W⊗W and HSμ = 0. ``None`` where some Σ_oo is not positive definite.
    """
    p = data.p
    m = data.mask.astype(float)
    mm = m[:, :, None] * m[:, None, :]
    Sg = Sigma[None] * mm + np.eye(p) * (1.0 - m)[:, :, None]
    L, good = _chol(Sg)
    if not good.all():
        return None
    logdet = 2.0 * np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)
    Li = np.linalg.inv(L)
    W = (np.swapaxes(Li, -1, -2) @ Li) * mm
    d = (data.mean - mu[None]) * m
    C = data.cov + d[:, :, None] * d[:, None, :]
    n = data.counts
    ll = -0.5 * float((m.sum(axis=1) * LOG2PI + logdet + np.einsum("gij,gji->g", W, C)) @ n)
    WC = W @ C
    M = WC @ W
    G = 0.5 * np.einsum("g,gij->ij", n, M - W)
    r = np.einsum("gij,gj->gi", W, d)
    gmu = n @ r
    # Σ_g n_g W ⊗ W etc. through vech (W, M symmetric): a quarter of the work of vec
    iu, vi = _vech_index(p)
    Wv = W[:, iu[0], iu[1]]
    nWv = n[:, None] * Wv
    if observed:
        QWM = nWv.T @ M[:, iu[0], iu[1]]
        Qv = 0.5 * (nWv.T @ Wv) - 0.5 * (QWM + QWM.T)
        HSm = -((n[:, None] * r).T @ Wv)[:, vi]
    else:
        Qv = -0.5 * (nWv.T @ Wv)
        HSm = np.zeros((p, p, p))
    HSS = Qv[vi[None, :, :, None], vi.T[:, None, None, :]]  # [x, y, z, w] = Q[(y, z), (w, x)]
    Hmm = -np.einsum("g,gij->ij", n, W)
    return ll, G, gmu, HSS, HSm, Hmm


@functools.lru_cache(maxsize=32)
def _vech_index(p: int):
    """Upper-triangle indices of a p×p matrix and the p×p map (i, j) → position in vech."""
    iu = np.triu_indices(p)
    vi = np.zeros((p, p), dtype=int)
    vi[iu] = np.arange(len(iu[0]))
    vi[iu[1], iu[0]] = vi[iu]
    return iu, vi


def loglik_hessian(model: RamModel, data: PatternData, theta: np.ndarray, observed: bool = True):
    """(ℓ, ∂ℓ/∂θ, ∂²ℓ/∂θ∂θᵀ), all analytic; ``None`` where the implied Σ_oo is not positive definite.

    Chain rule through the moments: with the Jacobians J of (Σ, μ) (:func:`jacobian`),

        ∂²ℓ/∂θ∂θᵀ = Jᵀ (∂²ℓ/∂(Σ, μ)²) J + ∂²/∂θ∂θᵀ [tr(H K(θ)) + g_vᵀ E(θ) m(θ)] at fixed H, g_v

    (H = Fᵀ G F, g_v = Fᵀ g_μ), the second term in closed form from dE = E dA E. With
    ``observed=False`` the first term is the expected information (negated) and the second
    term is dropped: Fisher scoring.
    """
    theta = np.asarray(theta, float)
    E, K, Em, *_ = model.implied_all(theta)
    o = model.observed
    mom = _moment_hessian(data, Em[o], K[np.ix_(o, o)], observed)
    if mom is None:
        return None
    ll, G, gmu, HSS, HSm, Hmm = mom
    p, q = len(o), model.n_par
    dmu, dS = jacobian(model, theta)
    D = dS.reshape(p * p, q)
    Hq = D.T @ (HSS.reshape(p * p, p * p) @ D) + dmu.T @ Hmm @ dmu
    X = D.T @ (HSm.reshape(p * p, p) @ dmu)
    Hq += X + X.T
    mv = model.n_var
    Hm = np.zeros((mv, mv))
    Hm[np.ix_(o, o)] = G
    gm = np.zeros(mv)
    gm[o] = gmu
    Etg = E.T @ gm
    EHE = E.T @ Hm @ E
    g = np.zeros(q)
    a, s, mf = model.a_free, model.s_free, model.m_free
    if len(a):
        np.add.at(g, a[:, 2], (2.0 * (E.T @ Hm @ K) + Etg[:, None] * Em[None, :])[a[:, 0], a[:, 1]])
    if len(s):
        np.add.at(g, s[:, 2], np.where(s[:, 0] == s[:, 1], 1.0, 2.0) * EHE[s[:, 0], s[:, 1]])
    if len(mf):
        np.add.at(g, mf[:, 1], Etg[mf[:, 0]])
    if observed and len(a):
        KHE = K @ Hm @ E
        # rows: entry A_ij (ri, rj); columns: entry A_kl (ck, cl)
        ri, rj = a[:, 0][:, None], a[:, 1][:, None]
        ck, cl = a[:, 0][None, :], a[:, 1][None, :]
        hAA = 2.0 * (E[cl, ri] * KHE[rj, ck] + E[rj, ck] * KHE[cl, ri] + K[rj, cl] * EHE[ri, ck]) \
            + Etg[ck] * E[cl, ri] * Em[rj] + Etg[ri] * E[rj, ck] * Em[cl]
        Pa = _indicator(a[:, 2], q)
        Hq += Pa.T @ hAA @ Pa
        if len(s):
            sk, sl = s[None, :, 0], s[None, :, 1]
            hAS = 2.0 * E[rj, sk] * EHE[sl, ri] + np.where(sk != sl, 2.0 * E[rj, sl] * EHE[sk, ri], 0.0)
            X = Pa.T @ hAS @ _indicator(s[:, 2], q)
            Hq += X + X.T
        if len(mf):
            hAm = Etg[ri] * E[rj, mf[None, :, 0]]
            X = Pa.T @ hAm @ _indicator(mf[:, 1], q)
            Hq += X + X.T
    return ll, g, 0.5 * (Hq + Hq.T)


def _indicator(idx: np.ndarray, q: int) -> np.ndarray:
    P = np.zeros((len(idx), q))
    P[np.arange(len(idx)), idx] = 1.0
    return P


def complete_information(model: RamModel, theta: np.ndarray, n: float):
    """Expected information as if every case were complete (a preconditioner for the optimiser)."""
    mu, Sigma = model.implied(theta)
    dmu, dS = jacobian(model, theta)
    W = np.linalg.inv(Sigma)
    WD = np.einsum("ab,bck->ack", W, dS)
    info = 0.5 * np.einsum("abk,bal->kl", WD, WD) + dmu.T @ W @ dmu
    return n * 0.5 * (info + info.T)


@dataclass(frozen=True)
class Fit:
    theta: np.ndarray
    loglik: float
    vcov: np.ndarray | None  # inverse observed information
    converged: bool
    iterations: int
    grad_norm: float
    messages: tuple[str, ...]


def _ascent(model, data, theta, max_iter, tol, hinv0=None):
    """Quasi-Newton ascent (BFGS started from the complete-data information) with backtracking."""
    N = float(data.n)
    ll, g = loglik_grad(model, data, theta)
    if g is None:
        return theta, -np.inf, None, 0
    try:
        Hinv = hinv0 if hinv0 is not None else np.linalg.inv(complete_information(model, theta, N))
        if not np.all(np.isfinite(Hinv)):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        Hinv = np.eye(len(theta)) / N
    it = 0
    for _ in range(max_iter):
        it += 1
        step = Hinv @ g
        slope = float(g @ step)
        if slope <= 0:  # not an ascent direction: restart from the (scaled) gradient
            Hinv = np.eye(len(theta)) / N
            step = Hinv @ g
            slope = float(g @ step)
        lam = 1.0
        # do not let a step move any parameter absurdly far
        big = np.max(np.abs(step))
        if big > 10.0:
            lam = 10.0 / big
        new = None
        for _ in range(40):
            cand = theta + lam * step
            ll1, g1 = loglik_grad(model, data, cand)
            if g1 is not None and ll1 >= ll + 1e-4 * lam * slope:
                new = (cand, ll1, g1)
                break
            lam *= 0.5
        if new is None:
            break
        s = new[0] - theta
        y = g - new[2]  # change of the gradient of −ℓ
        theta, ll_old, ll, g = new[0], ll, new[1], new[2]
        sy = float(s @ y)
        if sy > 1e-12 * float(np.sqrt((s @ s) * (y @ y))):
            rho = 1.0 / sy
            Hy = Hinv @ y
            Hinv = Hinv + ((sy + y @ Hy) * rho * rho) * np.outer(s, s) - rho * (np.outer(Hy, s) + np.outer(s, Hy))
        if np.max(np.abs(g)) / N < tol or (ll - ll_old) < 1e-14 * max(1.0, abs(ll)):
            break
    return theta, ll, g, it


def _newton(derivs, value, theta, N, max_iter, tol, gradient=None):
    """Newton–Raphson ascent on the analytic observed Hessian, Fisher scoring (expected information)
    where −H is not positive definite, with backtracking.

    ``derivs(θ, observed)`` returns (ℓ, g, H) or None where ℓ is undefined (``observed=False``: H is
    minus the expected information); ``value(θ)`` returns ℓ; ``gradient(θ)`` (optional) returns
    (ℓ, g): after a step too small to change H beyond 10⁻⁷ relative, only the gradient is evaluated
    and H is kept. Returns (θ, ℓ, g, H, iterations); g and H are None when ℓ is undefined at the
    start."""
    cur = derivs(theta, True)
    if cur is None:
        return theta, -np.inf, None, None, 0
    ll, g, H = cur
    it = 0
    while it < max_iter and np.max(np.abs(g)) / N >= tol:
        it += 1
        step = None
        for observed in (True, False):
            info = -H if observed else -derivs(theta, False)[2]
            try:
                c = np.linalg.cholesky(info)
            except np.linalg.LinAlgError:
                continue
            step = np.linalg.solve(c.T, np.linalg.solve(c, g))
            break
        if step is None:  # not even the expected information is positive definite: gradient step
            step = g / (N * max(1.0, float(np.max(np.abs(np.diag(H))) / N)))
        slope = float(g @ step)
        big = float(np.max(np.abs(step)))
        lam = min(1.0, 10.0 * max(1.0, float(np.max(np.abs(theta)))) / big) if big > 0 else 1.0
        new = None
        for trial in range(40):
            cand = theta + lam * step
            if trial == 0 and gradient is not None and lam * big < 1e-7 * max(1.0, float(np.max(np.abs(theta)))):
                ll1, g1 = gradient(cand)
                new = (ll1, g1, H) if g1 is not None and ll1 >= ll - 1e-12 * abs(ll) else None
                if new is not None:
                    break
            elif trial == 0:  # a full step is the rule: evaluate ℓ with its derivatives at once
                new = derivs(cand, True)
                if new is not None and new[0] >= ll + 1e-4 * lam * slope:
                    break
                new = None
            else:
                ll1 = value(cand)
                if np.isfinite(ll1) and ll1 >= ll + 1e-4 * lam * slope:
                    new = derivs(cand, True)
                    if new is not None:
                        break
            lam *= 0.5
        if new is None:
            break
        ll_old = ll
        theta = cand
        ll, g, H = new
        if ll - ll_old <= 1e-15 * max(1.0, abs(ll)) and lam < 1.0:
            break
    return theta, ll, g, H, it


@functools.lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()  # finds the loaded BLAS libraries once (a few ms)


def single_thread(fn):
    """Run ``fn`` with one BLAS thread. The engine multiplies many small matrices; a threaded BLAS
    only adds synchronisation to them (measured: the 11-wave RI-CLPM took 4× the CPU time with two
    OpenBLAS threads on a busy 2-core machine), and a process pool gets the cores instead."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        _limit_enter()
        try:
            return fn(*args, **kwargs)
        finally:
            _limit_exit()
    return wrapper


# The BLAS thread count is process-wide: concurrent fits (the app's job threads) share one limit, set by the
# first to enter and restored by the last to leave (nested enter/exit pairs from two threads would otherwise
# restore in the wrong order and leave the limit behind).
_LIMIT = {"depth": 0, "limiter": None}
_LIMIT_LOCK = threading.Lock()


def _limit_enter():
    with _LIMIT_LOCK:
        if _LIMIT["depth"] == 0:
            _LIMIT["limiter"] = _blas_controller().limit(limits=1, user_api="blas")
        _LIMIT["depth"] += 1


def _limit_exit():
    with _LIMIT_LOCK:
        _LIMIT["depth"] -= 1
        if _LIMIT["depth"] == 0 and _LIMIT["limiter"] is not None:
            _LIMIT["limiter"].restore_original_limits()
            _LIMIT["limiter"] = None


@single_thread
def fit(model: RamModel, data: PatternData, start: np.ndarray, *, max_iter: int = 200, tol: float = 1e-9,
        se: bool = True) -> Fit:
    """Maximise ℓ(θ) by Newton–Raphson on the analytic Hessian (:func:`loglik_hessian`; Fisher
    scoring while the observed information is not positive definite) and return the estimate with
    its covariance, the inverse observed information (lavaan's default under ``missing = "ml"``).
    If Newton stalls, a quasi-Newton ascent on the analytic gradient continues from where it stopped."""
    N = float(data.n)
    theta, ll, g, H, it = _newton(lambda th, obs: loglik_hessian(model, data, th, obs),
                                  lambda th: loglik(model, data, th), np.asarray(start, float), N, max_iter, tol,
                                  gradient=lambda th: loglik_grad(model, data, th))
    if g is not None and np.max(np.abs(g)) / N >= 1e-6:  # stalled far from a stationary point
        theta2, ll2, g2, it2 = _ascent(model, data, theta, 500, tol)
        again = loglik_hessian(model, data, theta2) if g2 is not None and ll2 >= ll else None
        if again is not None:
            theta, it = theta2, it + it2
            ll, g, H = again
    messages: list[str] = []
    vcov = None
    if g is not None and se and H is not None:
        info = -H
        dg = np.diag(info)
        # scale-free check (parameters on very different scales, e.g. raw symptom sums and alliance items)
        scaled = info / np.sqrt(np.outer(np.abs(dg), np.abs(dg))) if np.all(dg > 0) else None
        ev = np.linalg.eigvalsh(scaled) if scaled is not None else np.array([-1.0])
        if ev.min() <= 1e-11:
            messages.append("the information matrix is singular (a parameter is not identified); "
                            "standard errors are not available.")
        else:
            vcov = np.linalg.inv(info)
    gnorm = float(np.max(np.abs(g))) / N if g is not None else np.inf
    converged = bool(np.isfinite(ll) and gnorm < 1e-5)
    return Fit(theta=theta, loglik=float(ll), vcov=vcov, converged=converged,
               iterations=int(it), grad_norm=gnorm, messages=tuple(messages))


# ---------------------------------------------------------------- reference models
def saturated_model(p: int) -> RamModel:
    """The unrestricted (h1) model: free means and covariances of p observed variables."""
    b = Builder(p, observed=range(p))
    for i in range(p):
        for j in range(i, p):
            b.cov(i, j, f"s{i}_{j}")
    for i in range(p):
        b.mean(i, f"m{i}")
    return b.build()


@single_thread
def saturated(data: PatternData, start=None, *, tol: float = 1e-9):
    """FIML means and covariances of the unrestricted (h1) model; returns (μ, Σ, ℓ, iterations).

    Maximised by the same Newton–Raphson ascent as the structural models (the quasi-Newton
    ascent, preconditioned by the complete-data information, if Newton stalls), started
    from ``start = (μ, Σ)`` (e.g. the fitted model's implied moments) or from
    the available-case means and variances.
    """
    p = data.p
    model = saturated_model(p)
    if start is None:
        mu, var, _ = baseline(data)
        start = (mu, np.diag(var))
    mu0, S0 = start
    iu = np.triu_indices(p)
    theta0 = np.concatenate([np.asarray(S0)[iu], np.asarray(mu0)])
    # inverse complete-data information of (vech Σ, μ): Cov(s_ij, s_kl) = (σ_ik σ_jl + σ_il σ_jk) / N
    S0 = np.asarray(S0, float)
    i, j = iu
    nv = len(i)
    hinv = np.zeros((nv + p, nv + p))
    hinv[:nv, :nv] = (S0[np.ix_(i, i)] * S0[np.ix_(j, j)] + S0[np.ix_(i, j)] * S0[np.ix_(j, i)]) / data.n
    hinv[nv:, nv:] = S0 / data.n
    theta, ll, g, _, it = _newton(lambda th, obs: _saturated_derivs(data, th, obs),
                                  lambda th: loglik_moments(data, *_saturated_moments(th, p)), theta0,
                                  float(data.n), 200, tol)
    if g is None or np.max(np.abs(g)) / data.n >= 1e-6:
        theta, ll, g, it2 = _ascent(model, data, theta0, 2000, tol, hinv0=hinv)
        it += it2
    Sigma = np.zeros((p, p))
    Sigma[iu] = theta[: len(iu[0])]
    Sigma = Sigma + np.triu(Sigma, 1).T
    return theta[len(iu[0]):], Sigma, float(ll), it


def _saturated_moments(theta, p):
    iu, vi = _vech_index(p)
    return theta[len(iu[0]):], theta[: len(iu[0])][vi]


def _saturated_derivs(data: PatternData, theta, observed=True):
    """(ℓ, g, H) of the saturated model in θ = (vech Σ, μ), straight from the moment derivatives
    (:func:`_moment_hessian`): each off-diagonal σ_ij enters Σ twice (i, j and j, i)."""
    p = data.p
    iu, vi = _vech_index(p)
    mu, Sigma = _saturated_moments(theta, p)
    mom = _moment_hessian(data, mu, Sigma, observed)
    if mom is None:
        return None
    ll, G, gmu, HSS, HSm, Hmm = mom
    i, j = iu
    w = np.where(i == j, 1.0, 2.0)
    S1 = HSS + HSS.transpose(1, 0, 2, 3)
    S1 = S1 + S1.transpose(0, 1, 3, 2)
    Hvv = S1[i[:, None], j[:, None], i[None, :], j[None, :]] / np.outer(3.0 - w, 3.0 - w)
    Hvm = (HSm + HSm.transpose(1, 0, 2))[i, j, :] / (3.0 - w)[:, None]
    H = np.block([[Hvv, Hvm], [Hvm.T, Hmm]])
    return ll, np.concatenate([w * G[i, j], gmu]), 0.5 * (H + H.T)


def baseline(data: PatternData):
    """Independence model (free means and variances): (μ, variances, ℓ) — closed form per variable."""
    w = data.counts[:, None] * data.mask
    cnt = w.sum(axis=0)
    mu = (w * data.mean).sum(axis=0) / cnt
    dv = np.diagonal(data.cov, axis1=1, axis2=2) + (data.mean - mu) ** 2
    var = (w * dv).sum(axis=0) / cnt
    ll = float(-0.5 * np.sum(cnt * (LOG2PI + np.log(var) + 1.0)))
    return mu, var, ll


@dataclass(frozen=True)
class FitIndices:
    chisq: float
    df: int
    pvalue: float
    cfi: float
    tli: float
    rmsea: float
    srmr: float
    baseline_chisq: float
    baseline_df: int
    loglik_h1: float


def fit_indices(model: RamModel, data: PatternData, theta: np.ndarray, ll: float,
                n_free: int | None = None) -> FitIndices:
    """χ², CFI, TLI, RMSEA and SRMR as lavaan reports them under ``missing = "ml"``."""
    from scipy import stats

    p = data.p
    mu_m, Sig_m = model.implied(theta)
    mu_s, Sig_s, ll_h1, _ = saturated(data, start=(mu_m, Sig_m))
    _, _, ll_b = baseline(data)
    q = model.n_par if n_free is None else n_free
    df = int(p + p * (p + 1) // 2 - q)
    chisq = max(2.0 * (ll_h1 - ll), 0.0)
    df_b = p * (p - 1) // 2
    chisq_b = 2.0 * (ll_h1 - ll_b)
    N = data.n
    pval = float(stats.chi2.sf(chisq, df)) if df > 0 else np.nan
    num = max(chisq - df, 0.0)
    den = max(chisq_b - df_b, chisq - df, 0.0)
    cfi = 1.0 - num / den if den > 0 else 1.0
    if df > 0 and df_b > 0:
        t1 = chisq_b / df_b
        tli = (t1 - chisq / df) / (t1 - 1.0)
        rmsea = float(np.sqrt(max(chisq / df - 1.0, 0.0) / N))
    else:
        tli, rmsea = np.nan, np.nan
    sd = np.sqrt(np.diag(Sig_s))
    R = (Sig_s - Sig_m) / np.outer(sd, sd)
    iu = np.triu_indices(p)
    rm = (mu_s - mu_m) / sd
    srmr = float(np.sqrt((np.sum(R[iu] ** 2) + np.sum(rm**2)) / (len(iu[0]) + p)))
    return FitIndices(chisq=float(chisq), df=df, pvalue=pval, cfi=float(cfi), tli=float(tli), rmsea=rmsea,
                      srmr=srmr, baseline_chisq=float(chisq_b), baseline_df=df_b, loglik_h1=float(ll_h1))
