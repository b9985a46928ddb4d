"""General linear mixed-model solver (REML/ML, Satterthwaite df) used by the growth models (METHODS §8) and any model with random slopes or a third level.

Model, for top-level cluster (dyad) j with n_j rows::

    y_j = X_j β + Z_j b_j + e_j,    b_j ~ N(0, σ² Λ Λ'),    e_j ~ N(0, σ² I)

with ``Z_j`` holding the random-effect covariates (e.g. ``[1, t]`` for a random
intercept and slope) and ``Λ`` a lower-triangular (block-diagonal) q × q
Cholesky factor whose free entries are the parameter vector θ (the lme4
parametrisation: the diagonal is bounded below by 0, so a variance can be
estimated at exactly zero). An optional random intercept at a higher level
(therapist k, dyads nested in therapists) adds ``v_k ~ N(0, σ² θ_T²)``; more
generally the higher level's single random effect multiplies a row covariate
``u`` (``outer_z``; default 1): ``u·v_k`` (e.g. a random slope of a within
effect across studies, patients nested in studies: the one-stage IPD model).

Estimation is (restricted) maximum likelihood with σ² profiled out. With
``M_j = I + Λ' Z_j' Z_j Λ`` and ``C_j = Λ' Z_j' [X_j y_j]`` the Woodbury
identity gives, summed over clusters,

    K(θ) = [X y]'V⁻¹[X y]·σ² = [X y]'[X y] − Σ_j C_j' M_j⁻¹ C_j
    log|V/σ²| = Σ_j log|M_j|

(the third level is a rank-one update per therapist: with
``w_k = Σ_j u_j'W_j u_j`` and ``a_k = Σ_j u_j'W_j [X y]`` (u_j = 1 for an intercept), ``W_j = (I + Z_jΛΛ'Z_j')⁻¹``,
``K −= Σ_k θ_T² a_k a_k' / (1 + θ_T² w_k)`` and
``log|V/σ²| += Σ_k log(1 + θ_T² w_k)``). Writing ``A = K_XX``,
``β̂ = A⁻¹ K_Xy`` and ``r² = K_yy − K_yX β̂`` (the penalised residual sum of
squares), the profiled criteria (−2 log-likelihood) are

    REML:  log|V/σ²| + log|A| + (n − p)·(1 + log(2π r² / (n − p))),  σ̂² = r² / (n − p)
    ML:    log|V/σ²| + n·(1 + log(2π r² / n)),                        σ̂² = r² / n

which are lme4's ``REML`` and ``deviance`` criteria. ``Var(β̂) = σ̂² A⁻¹``.
AIC = criterion + 2·(p + dim θ + 1), as ``AIC()`` of an lme4 fit (for a REML
fit this is the REML AIC, comparable only between models with the same fixed
effects; SPSS counts only the covariance parameters, so its REML AIC differs
by 2p).

Degrees of freedom for the t tests are Satterthwaite's, computed as lmerTest
does: with varpar = (θ, σ), ``H`` the Hessian of the unprofiled criterion
``log|V/σ²| + log|A| + (n − p)·log(2πσ²) + r²(θ)/σ²`` and ``J_i = ∂Var(β̂)/∂varpar_i``
(both by Richardson-extrapolated central differences),
``df = 2·(c'Var(β̂)c)² / (g' (2 H⁺) g)`` with ``g_i = c' J_i c``.

The optimiser is a projected modified Newton method on θ with the analytic
gradient (several start values, two of which must agree), with scipy's
L-BFGS-B plus Newton polishing as a fallback; convergence is checked with the
scaled gradient (as lme4 does) and reported, never hidden.

Accuracy: ``K_yy − K_yX β̂`` cancels digits when Σy² ≫ r² (about 4 digits in
the convergence models), and the criterion multiplies r² by n/r². The reported
criterion, σ̂² and the Satterthwaite Hessian therefore use the penalised RSS
recomputed from the residuals, ``e'Ṽ⁻¹e`` with ``e = y − Xβ̂`` (as lme4 does);
with the K-based value the numerical Hessian was noisy enough to move the df
in the 4th digit.

Modules: this one holds the criterion (``_Problem``), :func:`fit_lmm` and the
profile CI; :mod:`analysis.lmm_optim` the optimiser and numerical derivatives;
:mod:`analysis.lmm_results` the result (:class:`LMMFit`) and inference on it.
Every public name is importable from here.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, optimize, sparse, stats

from analysis.lmm_optim import _check_convergence, _newton_grad, _optimise
from analysis.lmm_results import LMMFit, _satterthwaite, boundary_lrt, variance_components

__all__ = ["LMMFit", "boundary_lrt", "drop_collinear", "fit_lmm", "outer_sd_profile_ci", "variance_components"]

_SPARSE_P = 24  # above this many fixed effects (+1) the cluster sums use sparse products


# ----------------------------------------------------------------------------
# design helpers


def _sparse_or_none(M, density: float = 0.3):
    """M as a CSR matrix when it is large and mostly zeros (else None).

    Products of a tall sparse-ish matrix (the study-specific terms of a one-stage model) are
    cheaper in CSR form, and they do not start BLAS threads, which on a loaded machine with few
    cores cost far more than they save (X'X of the 17-study demo: 10 ms on one thread, ~0.5 s with
    OpenBLAS threads competing for two busy cores)."""
    if M.size < 100_000 or np.count_nonzero(M) > density * M.size:
        return None
    return sparse.csr_matrix(M)


def _crossprod(M) -> np.ndarray:
    """M'M (through CSR when M is large and mostly zeros: :func:`_sparse_or_none`)."""
    Ms = _sparse_or_none(M)
    return M.T @ M if Ms is None else (Ms.T @ Ms).toarray()


def _clearly_full_rank(X, margin: float = 1e-4, gram=None) -> bool:
    """True when every column of X keeps more than ``margin`` of its norm after projection onto
    the others' span before it (the Cholesky factor of the column-scaled X'X, ``gram`` if given):
    a cheap sufficient check of full column rank for tall X; False means "check exactly" (QR/SVD of
    X)."""
    n, p = X.shape
    if p == 0 or n < 4 * p:
        return False
    G = _crossprod(X) if gram is None else gram
    nx = np.sqrt(np.diag(G))
    if np.any(nx == 0) or not np.all(np.isfinite(nx)):
        return False
    G = G / np.outer(nx, nx)
    try:
        R = np.linalg.cholesky(G)
    except np.linalg.LinAlgError:
        return False
    return bool(np.all(np.diag(R) > margin))


def drop_collinear(X: np.ndarray, names, tol: float = 1e-7):
    """Drop columns of X that are (numerically) linear combinations of earlier ones.

    Column k is dropped when the norm of its residual after projecting onto
    the kept columns before it is below ``tol`` × its own norm (a sequential
    Gram–Schmidt check, so the *later* of two collinear terms is the one
    dropped). Returns ``(X_kept, kept_names, dropped_names)``.
    """
    X = np.asarray(X, float)
    if X.shape[1] == 0:
        return X, [], []
    if _clearly_full_rank(X, margin=max(1e-4, 1e3 * tol)):  # nothing near the tolerance: keep all
        return X, list(names), []
    # |R_kk| of a (Householder) QR is the norm of column k's residual after projection onto the
    # columns before it: the sequential check in one LAPACK call
    r = np.zeros(X.shape[1])
    d = np.abs(np.diag(np.linalg.qr(X, mode="r")))
    r[: len(d)] = d
    nx = np.linalg.norm(X, axis=0)
    ok = (nx > 0) & (r > tol * nx)
    keep = [k for k in range(X.shape[1]) if ok[k]]
    dropped = [names[k] for k in range(X.shape[1]) if not ok[k]]
    return X[:, keep], [names[k] for k in keep], dropped


# ----------------------------------------------------------------------------
# the likelihood


class _Problem:
    """Sufficient statistics per cluster and the (profiled) criteria of θ.

    Gradient of the profiled criterion (Ṽ = V/σ², Ṽ_i = ∂Ṽ/∂θ_i,
    e = Ṽ⁻¹(y − Xβ̂), n_eff = n − p (REML) or n (ML))::

        ∂f/∂θ_i = tr(Ṽ⁻¹Ṽ_i) − [REML] tr(A⁻¹X'Ṽ⁻¹Ṽ_iṼ⁻¹X) − (n_eff/r²)·e'Ṽ_i e

    For a Λ entry (r, c), Ṽ_i = Z(E_rcΛ' + ΛE_cr)Z' per cluster, so with the
    q × q sums ``G = Σ_j [Z_j'Ṽ⁻¹Z_j − R_jX A⁻¹ R_jX' − (n_eff/r²)(R_j w)(R_j w)']``,
    ``R_j = Z_j'Ṽ⁻¹[X y]``, ``w = (−β̂, 1)``, the derivative is ``2(GΛ)_rc``.
    """

    def __init__(self, y, X, Z, gidx, m, blocks, oidx=None, n_outer=0, uz=None):
        n, p = X.shape
        q = Z.shape[1]
        self.n, self.p, self.q, self.m = n, p, q, m
        XY = np.column_stack([X, y])
        XYs = _sparse_or_none(XY)
        self.XYtXY = XY.T @ XY if XYs is None else (XYs.T @ XYs).toarray()
        self.X_sp = None if XYs is None else XYs[:, :p]  # for the residuals of r2_rows
        self.ZtZ = np.empty((m, q, q))
        for a in range(q):
            for b in range(a, q):
                s = np.bincount(gidx, Z[:, a] * Z[:, b], minlength=m)
                self.ZtZ[:, a, b] = s
                self.ZtZ[:, b, a] = s
        self.ZtXY = np.empty((m, q, p + 1))
        for a in range(q):
            for c in range(p + 1):
                self.ZtXY[:, a, c] = np.bincount(gidx, Z[:, a] * XY[:, c], minlength=m)
        self.blocks = tuple(blocks)
        if sum(self.blocks) != q:
            raise ValueError("Random-effect blocks must add up to the number of random effects.")
        # positions of θ entries in Λ (column-major lower triangle, block by block)
        rows, cols, diag = [], [], []
        off = 0
        for s in self.blocks:
            for c in range(s):
                for r in range(c, s):
                    rows.append(off + r)
                    cols.append(off + c)
                    diag.append(r == c)
            off += s
        self.lam_rows = np.array(rows)
        self.lam_cols = np.array(cols)
        self.lam_diag = np.array(diag)
        self.n_lam = len(rows)
        self.outer = oidx is not None
        self.n_theta = self.n_lam + (1 if self.outer else 0)
        if self.outer:
            self.oidx = oidx  # outer index per cluster (length m)
            self.n_outer = n_outer
            self.E_outer = sparse.csr_matrix((np.ones(m), (oidx, np.arange(m))), shape=(n_outer, m))
            # the outer random effect's covariate u (1: an intercept); "1" below stands for u
            self.uz = np.ones(n) if uz is None else np.asarray(uz, float)
            self.n_j = np.bincount(gidx, self.uz * self.uz, minlength=m).astype(float)
            self.Zt1 = np.empty((m, q))
            for a in range(q):
                self.Zt1[:, a] = np.bincount(gidx, Z[:, a] * self.uz, minlength=m)
            self.XYt1 = np.empty((m, p + 1))
            for c in range(p + 1):
                self.XYt1[:, c] = np.bincount(gidx, XY[:, c] * self.uz, minlength=m)
            self.EXYt1 = self.E_outer @ self.XYt1  # Σ_j u_j'[X y]_j per outer unit
        self.eye = np.eye(q)
        self.cls = self._classes(m, q, p)
        # many fixed effects (e.g. study-specific terms of a one-stage model): each cluster's
        # Z_j'[X y] is mostly zeros, and the m·(p+1)² sums below are done with sparse products
        self.sparse = (self.cls is None and p + 1 > _SPARSE_P
                       and np.count_nonzero(self.ZtXY) < 0.3 * self.ZtXY.size)
        if self.sparse:
            self.S = sparse.csr_matrix(self.ZtXY.reshape(m * q, p + 1))
            # the non-zero entries of S (row j·q + a, column c) and every pair of them within one
            # cluster: Σ_j C_j'M_j⁻¹C_j and Σ_j C_j'M_j⁻¹c1_j become one weighted bincount each
            srow = np.repeat(np.arange(m * q), np.diff(self.S.indptr))
            self.nz_j, self.nz_a = np.divmod(srow, q)
            self.nz_c, self.nz_v = self.S.indices.astype(np.int64), self.S.data
            starts = np.r_[0, np.cumsum(np.bincount(self.nz_j, minlength=m))]
            cnt = np.diff(starts)
            pj = np.repeat(np.arange(m), cnt * cnt)  # cluster of each pair
            off = np.repeat(starts[:-1], cnt * cnt)
            within = np.arange(len(pj)) - np.repeat(np.r_[0, np.cumsum(cnt * cnt)][:-1], cnt * cnt)
            i1 = off + within // np.repeat(np.maximum(cnt, 1), cnt * cnt)
            i2 = off + within % np.repeat(np.maximum(cnt, 1), cnt * cnt)
            self.pair_j, self.pair_a, self.pair_b = pj, self.nz_a[i1], self.nz_a[i2]
            self.pair_idx = self.nz_c[i1] * (p + 1) + self.nz_c[i2]
            self.pair_v = self.nz_v[i1] * self.nz_v[i2]
        # the rows themselves, for the residual-based penalised RSS (criterion_varpar)
        self.y, self.X, self.Z, self.gidx = y, X, Z, gidx

    def _classes(self, m, q, p):
        """Clusters summed into classes, for one random effect per cluster (q = 1).

        With q = 1, ``M_j = 1 + θ²·z_j'z_j`` is the only place θ meets a cluster, so every sum
        over clusters in the criterion and its gradient is a sum over the classes of clusters
        with equal ``z_j'z_j`` (and the same outer unit) of θ-free per-class sums: with
        ``P_j = Z_j'[X y]``, ``t_j = Z_j'u_j``, ``S_c = Σ P_j'P_j``, ``U_c = Σ t_j P_j``,
        ``T_c = Σ t_j²``, ``N_c = Σ u_j'u_j``, ``X_c = Σ u_j'[X y]_j``::

            K = [X y]'[X y] − Σ_c θ²/M_c · S_c,   log|V/σ²| = Σ_c n_c log M_c (+ outer part)
            s_k = Σ_c∈k N_c − θ²/M_c · T_c,      a_k = Σ_c∈k X_c − θ²/M_c · U_c

        (the number of distinct cluster sizes × outer units instead of the number of clusters:
        about 120 classes for the 5,349 patients of the 17-study demo). None when it would not
        pay (more than a quarter as many classes as clusters, or the per-class sums too large).
        """
        if q != 1 or m < 8:
            return None
        zz = self.ZtZ[:, 0, 0]
        o = self.oidx if self.outer else np.zeros(m, dtype=np.int64)
        keys, cls = np.unique(np.column_stack([o, zz]), axis=0, return_inverse=True)
        cls = np.asarray(cls).ravel()
        C, P1 = len(keys), p + 1
        if C > m / 4 or C * P1 * P1 > 4_000_000:
            return None
        order = np.argsort(cls, kind="stable")
        bounds = np.r_[0, np.cumsum(np.bincount(cls, minlength=C))]
        P = self.ZtXY[:, 0, :]
        S = np.empty((C, P1, P1))
        Ps = _sparse_or_none(P[order])
        for c in range(C):
            if Ps is None:
                Pc = P[order[bounds[c]:bounds[c + 1]]]
                S[c] = Pc.T @ Pc
            else:
                Pc = Ps[bounds[c]:bounds[c + 1]]
                S[c] = (Pc.T @ Pc).toarray()
        self.cls_n = np.diff(bounds).astype(float)
        self.cls_s = keys[:, 1]
        self.cls_o = keys[:, 0].astype(np.int64)
        self.cls_S = S
        if self.outer:
            t = self.Zt1[:, 0]
            self.cls_T = np.bincount(cls, t * t, minlength=C)
            self.cls_N = np.bincount(cls, self.n_j, minlength=C)
            self.cls_U = np.column_stack([np.bincount(cls, t * P[:, c], minlength=C) for c in range(P1)])
            self.cls_X = np.column_stack([np.bincount(cls, self.XYt1[:, c], minlength=C) for c in range(P1)])
        return cls

    def _class_state(self, theta, full):
        """The θ-dependent sums of :meth:`state` from the cluster classes (:meth:`_classes`)."""
        th = float(theta[0])
        th2 = th * th
        Mc = 1.0 + th2 * self.cls_s
        wc = th2 / Mc
        L = np.array([[th]])
        st = {"L": L, "ZtZL": self.ZtZ * th, "Mi": (1.0 / Mc)[self.cls][:, None, None], "Mc": Mc}
        if full:
            st["MC"] = (th / Mc)[self.cls][:, None, None] * self.ZtXY
        K = self.XYtXY - np.tensordot(wc, self.cls_S, axes=1)
        logdet = float(self.cls_n @ np.log(Mc))
        if self.outer:
            tau = theta[-1] ** 2
            sk = np.bincount(self.cls_o, self.cls_N - wc * self.cls_T, minlength=self.n_outer)
            ac = self.cls_X - wc[:, None] * self.cls_U
            ak = np.column_stack([np.bincount(self.cls_o, ac[:, c], minlength=self.n_outer)
                                  for c in range(ac.shape[1])])
            fk = tau / (1.0 + tau * sk)
            K = K - (ak * fk[:, None]).T @ ak
            logdet = logdet + np.log1p(tau * sk).sum()
            st.update(sk=sk, ak=ak, fk=fk, tau=tau)
            if full:
                st["Mc1"] = (th / Mc)[self.cls][:, None] * self.Zt1
        st["K"] = K
        st["logdet"] = logdet
        return st

    def _class_gradient_G(self, st, wv, c, reml, Ainv):
        """The 1 × 1 ``G`` of the gradient (class docstring) from the cluster classes: with
        ``R_j = (P_j − f_k t_j a_k)/M_j`` and ``Q_j = s_j/M_j − f_k t_j²/M_j²``,
        ``G = Σ_j Q_j − c Σ_j (R_j w)² − [REML] Σ_j R_jX A⁻¹ R_jX'``."""
        p = self.p
        Mc = st["Mc"]
        im2 = 1.0 / Mc**2
        Sw = np.tensordot(im2, self.cls_S, axes=1)
        sq = float(np.sum(self.cls_n * self.cls_s / Mc))
        rw = float(wv @ Sw @ wv)
        tr = float(np.sum(Ainv * Sw[:p, :p])) if reml else 0.0
        if self.outer:
            fc = st["fk"][self.cls_o]
            akc = st["ak"][self.cls_o]
            T = self.cls_T
            sq -= float(np.sum(fc * T * im2))
            aw = akc @ wv
            uw = self.cls_U @ wv
            rw += float(np.sum(im2 * (fc * fc * aw * aw * T - 2.0 * fc * aw * uw)))
            if reml:
                aA = akc[:, :p] @ Ainv
                tr += float(np.sum(im2 * (fc * fc * T * np.einsum("ca,ca->c", aA, akc[:, :p])
                                          - 2.0 * fc * np.einsum("ca,ca->c", aA, self.cls_U[:, :p]))))
        return np.array([[sq - c * rw - tr]])

    def lower_bounds(self):
        lb = np.where(self.lam_diag, 0.0, -np.inf)
        if self.outer:
            lb = np.append(lb, 0.0)
        return lb

    def lam(self, theta):
        L = np.zeros((self.q, self.q))
        L[self.lam_rows, self.lam_cols] = theta[: self.n_lam]
        return L

    def _inv(self, M):
        """Batched inverse and log-determinant of the SPD matrices M (None if not PD)."""
        q = self.q
        if q == 1:
            det = M[:, 0, 0]
            if np.any(det <= 0):
                return None, None
            return 1.0 / M, np.log(det).sum()
        if q == 2:
            a, b, d = M[:, 0, 0], M[:, 0, 1], M[:, 1, 1]
            det = a * d - b * b
            if np.any(det <= 0) or np.any(a <= 0):
                return None, None
            Mi = np.empty_like(M)
            Mi[:, 0, 0] = d / det
            Mi[:, 1, 1] = a / det
            Mi[:, 0, 1] = Mi[:, 1, 0] = -b / det
            return Mi, np.log(det).sum()
        try:
            cm = np.linalg.cholesky(M)
        except np.linalg.LinAlgError:
            return None, None
        return np.linalg.inv(M), 2.0 * np.log(np.diagonal(cm, axis1=1, axis2=2)).sum()

    def state(self, theta, full=True):
        """Everything that depends on θ only (None when a matrix is not PD). ``full=False`` leaves out
        the per-cluster ``M_j⁻¹C_j`` that only the gradient and the random effects need."""
        theta = np.asarray(theta, float)
        if self.cls is not None:
            return self._finish(self._class_state(theta, full))
        L = self.lam(theta)
        ZtZL = self.ZtZ @ L
        M = L.T @ ZtZL + self.eye
        Mi, logdet = self._inv(M)
        if Mi is None:
            return None
        P1 = self.p + 1
        st = {"L": L, "ZtZL": ZtZL, "Mi": Mi}
        if self.sparse:
            # Σ_j C_j'M_j⁻¹C_j = Σ_j (Z_j'[X y])' W_j (Z_j'[X y]), W_j = Λ M_j⁻¹ Λ', over non-zero pairs
            W = L @ Mi @ L.T
            wts = self.pair_v * W[self.pair_j, self.pair_a, self.pair_b]
            K = self.XYtXY - np.bincount(self.pair_idx, wts, minlength=P1 * P1).reshape(P1, P1)
            if full:
                C = L.T @ self.ZtXY  # (m, q, p+1)
                st["MC"] = Mi @ C
        else:
            C = L.T @ self.ZtXY  # (m, q, p+1)
            MC = Mi @ C
            st["MC"] = MC
            K = self.XYtXY - C.reshape(-1, P1).T @ MC.reshape(-1, P1)
        if self.outer:
            tau = theta[-1] ** 2
            c1 = self.Zt1 @ L  # rows: L'Z_j'1
            Mc1 = np.einsum("mab,mb->ma", Mi, c1)
            w = self.n_j - np.einsum("mq,mq->m", c1, Mc1)
            sk = np.bincount(self.oidx, w, minlength=self.n_outer)
            # a_j = 1'W_j[X y] = Z_j'... : Σ_j (XYt1_j − C_j'M_j⁻¹c1_j), C_j'M_j⁻¹c1_j = (Z_j'[X y])'(Λ M_j⁻¹ c1_j)
            v = Mc1 @ L.T  # rows: Λ M_j⁻¹ c1_j
            if self.sparse:
                idx = self.oidx[self.nz_j] * P1 + self.nz_c
                ak = self.EXYt1 - np.bincount(idx, self.nz_v * v[self.nz_j, self.nz_a],
                                              minlength=self.n_outer * P1).reshape(self.n_outer, P1)
            else:
                a = self.XYt1 - np.einsum("mqa,mq->ma", self.ZtXY, v)
                ak = self.E_outer @ a
            fk = tau / (1.0 + tau * sk)
            K = K - (ak * fk[:, None]).T @ ak
            logdet = logdet + np.log1p(tau * sk).sum()
            st.update(Mc1=Mc1, sk=sk, ak=ak, fk=fk, tau=tau)
        st["K"] = K
        st["logdet"] = logdet
        return self._finish(st)

    def _finish(self, st):
        """β̂, r² and log|A| from K (None when A is not PD or r² ≤ 0)."""
        K = st["K"]
        p = self.p
        A = K[:p, :p]
        try:
            ca = np.linalg.cholesky(A)
        except np.linalg.LinAlgError:
            return None
        beta = np.linalg.solve(A, K[:p, p])
        r2 = K[p, p] - K[:p, p] @ beta
        if not np.isfinite(r2) or r2 <= 0:
            return None
        st.update(A=A, beta=beta, r2=r2, logdetA=2.0 * np.log(np.diag(ca)).sum())
        return st

    def evaluate(self, theta, reml=True, grad=False):
        """Profiled −2 log-likelihood (REML or ML) at θ, optionally with its gradient."""
        st = self.state(theta, full=grad and self.cls is None)
        if st is None:
            return (np.inf, np.full(self.n_theta, np.nan)) if grad else np.inf
        n_eff = self.n - self.p if reml else self.n
        r2 = st["r2"]
        f = st["logdet"] + n_eff * (1.0 + np.log(2 * np.pi * r2 / n_eff))
        if reml:
            f += st["logdetA"]
        if not grad:
            return f
        return f, self._gradient(st, theta, reml, n_eff / r2)

    def _gradient(self, st, theta, reml, c):
        """∂/∂θ of ``log|V/σ²| [+ log|A|] + c·r²(θ)`` (c = n_eff/r²: the profiled criterion;
        c = 1/σ²: the unprofiled one at a fixed σ)."""
        p = self.p
        theta = np.asarray(theta, float)
        L = st["L"]
        wv = np.append(-st["beta"], 1.0)
        Ainv = np.linalg.inv(st["A"])
        if self.cls is not None:
            G = self._class_gradient_G(st, wv, c, reml, Ainv)
        else:
            G = self._cluster_gradient_G(st, wv, c, reml, Ainv)
        GL = 2.0 * G @ L
        g = np.empty(self.n_theta)
        g[: self.n_lam] = GL[self.lam_rows, self.lam_cols]
        if self.outer:
            th = theta[-1]
            tau, sk, ak = st["tau"], st["sk"], st["ak"]
            bk = ak / (1.0 + tau * sk)[:, None]  # 1'Ṽ_k⁻¹[X y]
            gt = 2.0 * th * np.sum(sk / (1.0 + tau * sk))
            bw = bk @ wv
            gt -= c * 2.0 * th * np.sum(bw**2)
            if reml:
                bX = bk[:, :p]
                gt -= 2.0 * th * np.einsum("ka,ab,kb->", bX, Ainv, bX)
            g[-1] = gt
        return g

    def _cluster_gradient_G(self, st, wv, c, reml, Ainv):
        """The q × q ``G`` of the gradient (class docstring), cluster by cluster."""
        p = self.p
        ZtZL, Mi, MC = st["ZtZL"], st["Mi"], st["MC"]
        R = self.ZtXY - ZtZL @ MC  # Z_j'W_j[X y]
        Q = self.ZtZ - ZtZL @ Mi @ np.swapaxes(ZtZL, 1, 2)
        if self.outer:
            z = self.Zt1 - np.einsum("mab,mb->ma", ZtZL, st["Mc1"])  # Z_j'W_j 1
            fj = st["fk"][self.oidx]
            Q = Q - fj[:, None, None] * z[:, :, None] * z[:, None, :]
            R = R - fj[:, None, None] * z[:, :, None] * st["ak"][self.oidx][:, None, :]
        Rw = R @ wv
        G = Q.sum(axis=0) - c * (Rw.T @ Rw)
        if reml and self.sparse:
            # Σ_j R_jX A⁻¹ R_jX' with R_jX sparse (zero outside the cluster's own columns)
            Rs = [sparse.csr_matrix(R[:, a, :p]) for a in range(self.q)]
            RA = [r @ Ainv for r in Rs]
            for a in range(self.q):
                for b in range(a, self.q):
                    v = Rs[a].multiply(RA[b]).sum()
                    G[a, b] -= v
                    if b != a:
                        G[b, a] -= v
        elif reml:
            RXt = np.swapaxes(R[:, :, :p], 0, 1).reshape(self.q, -1)  # (q, m·p)
            RXA = np.swapaxes(R[:, :, :p] @ Ainv, 0, 1).reshape(self.q, -1)
            G = G - RXA @ RXt.T
        return G

    def criterion(self, theta, reml=True):
        return self.evaluate(theta, reml, grad=False)

    def r2_rows(self, theta, st):
        """The penalised RSS r²(θ) = e'Ṽ⁻¹e, e = y − Xβ̂, from the rows (not from K).

        ``K_yy − K_yX β̂`` subtracts numbers of the size of Σy² and loses about
        log10(Σy²/r²) digits, which the n/r² factor of the criterion then
        amplifies; lme4 likewise computes the penalised RSS from residuals. Here
        ``e'Ṽ⁻¹e = Σ_j [e_j'e_j − d_j'M_j⁻¹d_j] − Σ_k τ a_k²/(1 + τ s_k)`` with
        ``d_j = Λ'Z_j'e_j`` and ``a_k = Σ_j 1'W_j e_j``.
        """
        m = self.m
        e = self.y - (self.X @ st["beta"] if self.X_sp is None else self.X_sp @ st["beta"])
        Zte = np.empty((m, self.q))
        for a in range(self.q):
            Zte[:, a] = np.bincount(self.gidx, self.Z[:, a] * e, minlength=m)
        dj = Zte @ st["L"]  # rows: Λ'Z_j'e_j
        Md = np.einsum("mab,mb->ma", st["Mi"], dj)
        r2 = float(e @ e - np.einsum("ma,ma->", dj, Md))
        if self.outer:
            c1 = self.Zt1 @ st["L"]
            aj = np.bincount(self.gidx, self.uz * e, minlength=m) - np.einsum("ma,ma->m", c1, Md)
            ak = np.bincount(self.oidx, aj, minlength=self.n_outer)
            r2 -= float(np.sum(st["fk"] * ak**2))
        return r2

    def criterion_varpar(self, varpar, reml=True):
        """Unprofiled −2 log-likelihood at (θ, σ) (lmerTest's ``devfun_vp``; r² from the rows)."""
        theta, sigma = varpar[:-1], varpar[-1]
        s2 = sigma**2
        st = self.state(theta, full=False)
        if st is None:
            return np.inf
        dev = st["logdet"] + self.r2_rows(theta, st) / s2 + self.n * np.log(2 * np.pi * s2)
        if reml:
            dev += st["logdetA"] - self.p * np.log(2 * np.pi * s2)
        return dev

    def deviance_sigma(self, theta, sigma, reml=True):
        """Unprofiled −2 log-likelihood at (θ, σ) as :meth:`criterion_varpar`, with r² from K, and
        its gradient: ``(D, ∂D/∂θ, ∂D/∂σ)`` (``(inf, None, None)`` outside the parameter space)."""
        st = self.state(theta, full=self.cls is None)
        if st is None or not sigma > 0:
            return np.inf, None, None
        s2 = sigma**2
        n_eff = self.n - self.p if reml else self.n
        r2 = st["r2"]
        dev = st["logdet"] + r2 / s2 + n_eff * np.log(2 * np.pi * s2) + (st["logdetA"] if reml else 0.0)
        return dev, self._gradient(st, theta, reml, 1.0 / s2), 2.0 * n_eff / sigma - 2.0 * r2 / (s2 * sigma)

    def covbeta(self, varpar):
        st = self.state(varpar[:-1], full=False)
        return varpar[-1] ** 2 * np.linalg.inv(st["A"])


# ----------------------------------------------------------------------------
# public entry point


def _check_singular(prob, theta, psi, sigma2, re_names, messages) -> bool:
    """lme4's isSingular (a Λ diagonal entry or the therapist θ below 1e-4), with a message naming it."""
    q = len(re_names)
    singular = bool(np.any(theta[prob.lam_diag.nonzero()[0]] < 1e-4))
    if prob.outer and theta[-1] < 1e-4:
        singular = True
    if singular:
        zero = [re_names[i] for i in range(q) if psi[i, i] <= 1e-8 * max(sigma2, 1e-300)]
        if prob.outer and theta[-1] < 1e-4:
            zero.append("therapist intercept")
        msg = "Boundary (singular) fit: a random-effect covariance matrix is not of full rank"
        if zero:
            msg += " (variance estimated at ~0: " + ", ".join(zero) + ")"
        messages.append(msg + ".")
    return singular


def _build_problem(y, X, Z, groups, blocks, outer=None, outer_z=None):
    """The :class:`_Problem` of a model (cluster codes, nesting check); (problem, cluster labels, n_outer)."""
    glab, gidx = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    m = len(glab)
    oidx = None
    n_outer = None
    if outer is not None:
        olab_row = np.asarray(outer).astype(str)
        olab, oidx_row = np.unique(olab_row, return_inverse=True)
        n_outer = len(olab)
        oidx = np.full(m, -1)
        oidx[gidx] = oidx_row
        if np.any(oidx[gidx] != oidx_row):
            raise ValueError(
                "Each dyad must have one therapist: the third level needs dyads nested in therapists."
            )
    uz = None
    if outer_z is not None:
        if outer is None:
            raise ValueError("outer_z needs outer (the level whose random effect it multiplies).")
        uz = np.asarray(outer_z, float)
        if uz.shape != np.shape(y) or not np.isfinite(uz).all():
            raise ValueError("outer_z must be one finite value per row.")
    prob = _Problem(y, X, Z, gidx, m, blocks, oidx, n_outer or 0, uz)
    return prob, glab, n_outer


def fit_lmm(
    y,
    X,
    Z,
    groups,
    *,
    coef_names=None,
    re_names=None,
    blocks=None,
    outer=None,
    outer_z=None,
    reml: bool = True,
    satterthwaite: bool = True,
    start=None,
) -> LMMFit:
    """Fit ``y = Xβ + Z b_j + (v_k) + e`` by REML (default) or ML.

    Parameters
    ----------
    y, X, Z : arrays (n,), (n, p), (n, q) — outcome, fixed-effect design and
        random-effect covariates (the same columns for every cluster).
    groups : cluster label per row (dyad). ``outer`` : optional label per row
        of a higher level (therapist) with a random intercept; clusters must
        be nested in it. ``outer_z`` : optional covariate per row that the
        higher level's random effect multiplies (default 1, an intercept; e.g.
        a within effect for its random slope across studies).
    blocks : sizes of the unstructured diagonal blocks of Cov(b) (default one
        q × q unstructured block; e.g. ``(2, 2)`` for two independent 2 × 2
        blocks, ``(1, 1, 1, 1)`` for a diagonal covariance).
    satterthwaite : compute Satterthwaite df (REML or ML, as lmerTest).

    Formulas: module docstring. Rows with any missing value in y, X or Z are
    not allowed (drop them first).
    """
    y = np.asarray(y, float)
    X = np.asarray(X, float)
    Z = np.asarray(Z, float)
    if X.ndim != 2 or Z.ndim != 2 or len(y) != len(X) or len(y) != len(Z):
        raise ValueError("y, X and Z must have the same number of rows (X and Z two-dimensional).")
    if not (np.isfinite(y).all() and np.isfinite(X).all() and np.isfinite(Z).all()):
        raise ValueError("The model data contain missing or infinite values; drop those rows first.")
    n, p = X.shape
    q = Z.shape[1]
    coef_names = tuple(coef_names) if coef_names is not None else tuple(f"x{i}" for i in range(p))
    re_names = tuple(re_names) if re_names is not None else tuple(f"z{i}" for i in range(q))
    blocks = tuple(blocks) if blocks is not None else (q,)
    messages = []
    if n - p <= 0:
        raise ValueError("Not enough observations for the number of fixed effects.")
    prob, glab, n_outer = _build_problem(y, X, Z, groups, blocks, outer, outer_z)
    if not _clearly_full_rank(X, gram=prob.XYtXY[:p, :p]) and np.linalg.matrix_rank(X) < p:
        raise ValueError("The fixed-effect design is rank deficient; drop collinear terms first.")
    m = prob.m

    # a user start (e.g. the REML θ for an ML refit) is trusted alone; otherwise two starts must agree
    theta, crit = _optimise(prob, reml, _starts(prob, y, X, Z, start), n_agree=1 if start is not None else 2)
    if theta is None or not np.isfinite(crit):
        raise ValueError("The mixed model could not be fitted (the likelihood is not finite at any start value).")

    converged = _check_convergence(prob, theta, reml, messages)

    st = prob.state(theta)
    L, beta, A = st["L"], st["beta"], st["A"]
    n_eff = n - p if reml else n
    # reported criterion and σ̂² from the residual-based penalised RSS (more digits than K's)
    r2 = prob.r2_rows(theta, st)
    crit = st["logdet"] + n_eff * (1.0 + np.log(2 * np.pi * r2 / n_eff)) + (st["logdetA"] if reml else 0.0)
    sigma2 = r2 / n_eff
    Ainv = np.linalg.inv(A)
    vcov = sigma2 * Ainv
    se = np.sqrt(np.diag(vcov))
    psi = sigma2 * (L @ L.T)
    outer_var = float(sigma2 * theta[-1] ** 2) if prob.outer else None

    singular = _check_singular(prob, theta, psi, sigma2, re_names, messages)

    # random effects (2-level only): b_j = Λ M_j⁻¹ (c_jy − C_jX β)
    ranef = None
    if not prob.outer:
        u = st["MC"][:, :, p] - st["MC"][:, :, :p] @ beta
        ranef = u @ L.T

    dfs, avp = _satterthwaite_or_z(prob, theta, sigma2, vcov, reml, messages) if satterthwaite else (
        np.full(p, np.nan), None)
    tval = beta / se
    pval = np.where(np.isfinite(dfs), 2 * stats.t.sf(np.abs(tval), np.where(np.isfinite(dfs), dfs, 1.0)),
                    2 * stats.norm.sf(np.abs(tval)))
    n_params = p + prob.n_theta + 1
    return LMMFit(
        method="REML" if reml else "ML", coef_names=coef_names, beta=beta, vcov=vcov, se=se, df=dfs,
        tvalue=tval, pvalue=pval, re_names=re_names, psi=psi, sigma2=float(sigma2), outer_var=outer_var,
        theta=theta, deviance=float(crit), loglik=float(-crit / 2), aic=float(crit + 2 * n_params),
        bic=float(crit + np.log(n) * n_params), n_params=int(n_params), n_obs=int(n), n_groups=int(m),
        n_outer=n_outer, converged=bool(converged), singular=singular, messages=tuple(messages), ranef=ranef,
        group_labels=glab, vcov_varpar=avp,
        theta_index=(tuple(int(i) for i in prob.lam_rows), tuple(int(i) for i in prob.lam_cols)),
    )


def _satterthwaite_or_z(prob, theta, sigma2, vcov, reml, messages):
    """Satterthwaite df and Cov(θ, σ) (:func:`analysis.lmm_results._satterthwaite`), or NaN df (z tests) with a
    message when they cannot be computed."""
    try:
        return _satterthwaite(prob, theta, np.sqrt(sigma2), vcov, reml, messages)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError):
        messages.append("Satterthwaite degrees of freedom could not be computed; z tests are reported.")
        return np.full(vcov.shape[0], np.nan), None


def _starts(prob, y, X, Z, start=None) -> list:
    """Start values for θ: ``start`` (if given), identity Λ (lme4's default), a moment-based start, 0.3 and 3
    times the identity (the therapist θ_T starts at 0.5)."""
    base = np.where(prob.lam_diag, 1.0, 0.0)
    starts = [] if start is None else [np.asarray(start, float)]
    for s in (base, _moment_start(y, X, Z, prob.gidx, prob.m, prob), 0.3 * base, 3.0 * base):
        if s is not None:
            starts.append(np.append(s, 0.5) if prob.outer else s)
    return starts


def _moment_start(y, X, Z, gidx, m, prob):
    """A start for θ: covariance of per-cluster OLS coefficients of the OLS residuals on Z, / σ̂²."""
    try:
        p, q = prob.p, prob.q
        try:  # a start value: the normal equations (from the problem's cross-products) do
            XtX = prob.XYtXY[:p, :p]
            beta = linalg.cho_solve(linalg.cho_factor(XtX), prob.XYtXY[:p, p])
        except (np.linalg.LinAlgError, linalg.LinAlgError):
            beta = np.linalg.lstsq(X, y, rcond=None)[0]
        res = y - X @ beta
        nj = np.bincount(gidx, minlength=m)
        ztr = prob.ZtXY[:, :, p] - prob.ZtXY[:, :, :p] @ beta
        ok = nj > q
        dg = np.prod(np.diagonal(prob.ZtZ, axis1=1, axis2=2), axis=1)
        ok &= np.linalg.det(prob.ZtZ) > 1e-10 * np.maximum(dg, 1e-300)
        if ok.sum() < max(3, q + 1):
            return None
        coef = np.linalg.solve(prob.ZtZ[ok], ztr[ok][:, :, None])[:, :, 0]
        rr = np.bincount(gidx, res * res, minlength=m)[ok]
        rss = rr - np.einsum("mq,mq->m", coef, ztr[ok])
        s2 = rss.sum() / (nj[ok] - q).sum()
        if not np.isfinite(s2) or s2 <= 0:
            return None
        S = np.atleast_2d(np.cov(coef.T)) / s2
        S2 = np.zeros_like(S)
        off = 0
        for s in prob.blocks:
            S2[off : off + s, off : off + s] = S[off : off + s, off : off + s]
            off += s
        w, V = np.linalg.eigh(S2)
        S2 = V @ np.diag(np.maximum(w, 1e-4 * max(w.max(), 1e-8))) @ V.T
        Lm = np.linalg.cholesky(S2)
        return Lm[prob.lam_rows, prob.lam_cols]
    except (np.linalg.LinAlgError, ValueError):
        return None


def outer_sd_profile_ci(fit: LMMFit, y, X, Z, groups, outer, *, outer_z=None, blocks=None,
                        level: float = 0.95) -> tuple[float, float, tuple]:
    """Profile-likelihood confidence interval of the higher level's SD, ``τ = σ·θ_T`` (lme4's
    ``confint(fit, method = "profile")`` for that ``sd_`` parameter).

    The profile criterion at a fixed τ is the (REML or ML, as ``fit``) −2 log-likelihood minimised
    over every other variance parameter (θ of the clusters and σ, with θ_T = τ/σ); the interval is
    ``{τ ≥ 0 : profile(τ) − deviance ≤ χ²₁(level)}``. Its lower end is 0 when the criterion at τ = 0
    stays within that bound (a singular or nearly singular fit). Returns ``(low, high, messages)``.

    Computation: each profile point is a projected Newton minimisation over (θ, log σ) with the
    analytic gradient (:meth:`_Problem.deviance_sigma`; the Hessian by differences of it),
    warm-started from the nearest point already profiled; the limits are roots of the signed
    square root ``ζ(τ) = sign(τ − τ̂)·√(profile(τ) − deviance)``, which is nearly linear in τ, so a
    secant step out and Brent's method need a few points per limit (lme4 likewise profiles ζ).
    """
    y = np.asarray(y, float)
    X = np.asarray(X, float)
    Z = np.asarray(Z, float)
    if fit.outer_var is None:
        raise ValueError("The fit has no higher level to profile.")
    blocks = tuple(blocks) if blocks is not None else (Z.shape[1],)
    prob, _glab, _n = _build_problem(y, X, Z, groups, blocks, outer, outer_z)
    reml = fit.method == "REML"
    nl = prob.n_lam
    lb = np.append(prob.lower_bounds()[:nl], -np.inf)
    zcrit = float(np.sqrt(stats.chi2.ppf(level, 1)))
    tau_hat = float(np.sqrt(fit.outer_var))
    sig_hat = float(np.sqrt(fit.sigma2))
    msgs = []
    done = {}  # τ → (inner optimum x, profile criterion)

    def prof(tau):
        def fg(x):
            sigma = np.exp(x[-1])
            d, gth, gs = prob.deviance_sigma(np.append(x[:-1], tau / sigma), sigma, reml)
            if gth is None:
                return np.inf, None
            return d, np.append(gth[:nl], sigma * gs - gth[-1] * tau / sigma)

        near = min(done, key=lambda t: abs(t - tau)) if done else None
        x0 = done[near][0] if near is not None else np.append(np.asarray(fit.theta[:nl], float), np.log(sig_hat))
        x, fx = _newton_grad(fg, x0, lb)
        done[tau] = (x, fx)
        return fx

    best = prof(tau_hat)

    def zeta(t):
        return float(np.sign(t - tau_hat) * np.sqrt(max(prof(t) - best, 0.0)))

    xtol = max(1e-9, 1e-7 * tau_hat)
    # lower end
    lo = 0.0
    if tau_hat > 0:
        z0 = zeta(0.0)
        if z0 < -zcrit:
            lo = float(optimize.brentq(lambda t: zeta(t) + zcrit, 0.0, tau_hat, xtol=xtol, rtol=1e-12))
    # upper end: secant steps out on ζ (nearly linear) until the bound is crossed, then Brent
    step = max(tau_hat, 0.1 * sig_hat / max(float(np.sqrt(np.mean(prob.uz**2))), 1e-8))
    a, za = tau_hat, 0.0
    b = tau_hat + step
    hi = np.nan
    for _ in range(40):
        zb = zeta(b)
        if zb >= zcrit:
            hi = float(optimize.brentq(lambda t: zeta(t) - zcrit, a, b, xtol=xtol, rtol=1e-12))
            break
        # secant prediction of ζ = zcrit, 10% beyond, at most 4 times the last step
        grow = 4.0 if zb <= za else min(4.0, max(1.1, 1.1 * (zcrit - za) / (zb - za)))
        a, za, b = b, zb, b + grow * (b - a)
    if not np.isfinite(hi):
        msgs.append("The profile-likelihood upper limit of τ could not be found (the likelihood stays flat).")
    return float(lo), float(hi), tuple(msgs)
