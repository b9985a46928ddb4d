"""The optimiser and numerical derivatives of the mixed-model solver :mod:`analysis.lmm`.

Richardson-extrapolated central differences (lmerTest's numerical Jacobian and
Hessian, used for the Satterthwaite df and the variance-component SEs); the
projected modified Newton method on θ with analytic gradient (several starts,
two must agree; L-BFGS-B plus Newton polishing as a fallback); lme4's
convergence check (scaled gradient, PD Hessian); and a small projected Newton
(analytic gradient, Hessian by its differences) for profile-likelihood inner problems. ``prob`` is
the criterion object of :mod:`analysis.lmm` (``evaluate``, ``criterion``,
``lower_bounds``); the formulas are in that module's docstring.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

# ----------------------------------------------------------------------------
# numerical derivatives (Richardson extrapolation of central differences)


def _richardson(vals, v=2.0):
    """Extrapolate a list of estimates computed with steps h, h/v, h/v², … ."""
    a = list(vals)
    for m in range(1, len(a)):
        f = v ** (2 * m)
        a = [(a[k + 1] * f - a[k]) / (f - 1.0) for k in range(len(a) - 1)]
    return a[0]


def _steps(x, d=1e-4, eps=1e-4):
    zero_tol = np.sqrt(np.finfo(float).eps / 7e-7)
    return np.where(np.abs(x) < zero_tol, eps, np.abs(d * x))


def _jacobian(f, x, d=1e-4, r=4, v=2.0):
    """Jacobian of a vector (array) valued f by central differences + Richardson."""
    x = np.asarray(x, float)
    f0 = np.asarray(f(x), float)
    out = np.empty(f0.shape + (len(x),))
    h0 = _steps(x, d)
    for i in range(len(x)):
        ests = []
        h = h0[i]
        for _ in range(r):
            e = np.zeros_like(x)
            e[i] = h
            ests.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
            h /= v
        out[..., i] = _richardson(ests, v)
    return out


def _hessian(f, x, d=0.1, r=4, v=2.0):
    """Hessian of scalar f by second differences + Richardson (numDeriv's genD scheme)."""
    x = np.asarray(x, float)
    k = len(x)
    f0 = f(x)
    h0 = _steps(x, d)
    H = np.empty((k, k))
    for i in range(k):
        ests = []
        h = h0[i]
        for _ in range(r):
            e = np.zeros(k)
            e[i] = h
            ests.append((f(x + e) - 2 * f0 + f(x - e)) / h**2)
            h /= v
        H[i, i] = _richardson(ests, v)
    for i in range(k):
        for j in range(i):
            ests = []
            hi, hj = h0[i], h0[j]
            for _ in range(r):
                e = np.zeros(k)
                e[i] = hi
                e[j] = hj
                val = (f(x + e) - 2 * f0 + f(x - e) - H[i, i] * hi**2 - H[j, j] * hj**2) / (2 * hi * hj)
                ests.append(val)
                hi /= v
                hj /= v
            H[i, j] = H[j, i] = _richardson(ests, v)
    return H


# ----------------------------------------------------------------------------
# optimisation


def _grad_hessian(prob, x, reml, idx, h=1e-5):
    """Hessian of the criterion on coordinates ``idx`` (central differences of the analytic gradient)."""
    k = len(idx)
    H = np.empty((k, k))
    for a, i in enumerate(idx):
        hi = h * max(1.0, abs(x[i]))
        xp, xm = x.copy(), x.copy()
        xp[i] += hi
        xm[i] -= hi
        H[:, a] = (prob.evaluate(xp, reml, True)[1][idx] - prob.evaluate(xm, reml, True)[1][idx]) / (2 * hi)
    return (H + H.T) / 2


def _free(x, g, lb):
    """Coordinates not held at a lower bound by a gradient pointing outwards."""
    return np.flatnonzero(~((x <= lb + 1e-10) & (g >= 0)))


def _polish(prob, x, reml, lb, iters=25):
    """Newton steps on the free parameters; a step is kept only if it lowers the criterion."""
    x = np.maximum(x.copy(), lb)
    fx, g = prob.evaluate(x, reml, True)
    for _ in range(iters):
        idx = _free(x, g, lb)
        if len(idx) == 0:
            break
        H = _grad_hessian(prob, x, reml, idx)
        try:
            w, V = np.linalg.eigh(H)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(w)) or w.min() <= 0:
            break
        step = -V @ ((V.T @ g[idx]) / w)
        moved = False
        for sc in (1.0, 0.5, 0.25, 0.1, 0.01):
            xn = x.copy()
            xn[idx] = x[idx] + sc * step
            xn = np.maximum(xn, lb)
            fn, gn = prob.evaluate(xn, reml, True)
            if fn <= fx:
                moved = True
                break
        if not moved:
            break
        small = np.max(np.abs(xn - x)) < 1e-12 * max(1.0, np.max(np.abs(x)))
        x, fx, g = xn, fn, gn
        if small or np.max(np.abs(step)) < 1e-10:
            break
    return x, fx


def _newton(prob, x0, reml, lb, maxiter=200):
    """Projected modified-Newton minimisation of the criterion.

    Coordinates held at a bound (with the gradient pointing outwards) are
    fixed; on the others the step is −H⁻¹g with H's eigenvalues replaced by
    their absolute values (floored), followed by a backtracking (Armijo) line
    search with projection onto the bounds. H is from differences of the
    analytic gradient.
    """
    x = np.maximum(np.asarray(x0, float), lb)
    f, g = prob.evaluate(x, reml, True)
    if not np.isfinite(f):
        return x, f
    for _ in range(maxiter):
        idx = _free(x, g, lb)
        if len(idx) == 0:
            break
        H = _grad_hessian(prob, x, reml, idx)
        w, V = np.linalg.eigh(H)
        if not np.all(np.isfinite(w)):
            break
        wa = np.maximum(np.abs(w), 1e-8 * max(1.0, np.max(np.abs(w))))
        step = -V @ ((V.T @ g[idx]) / wa)
        t = 1.0
        moved = False
        while t > 1e-12:
            xn = x.copy()
            xn[idx] = x[idx] + t * step
            xn = np.maximum(xn, lb)
            fn, gn = prob.evaluate(xn, reml, True)
            if np.isfinite(fn) and fn <= f + 1e-4 * g @ (xn - x):
                moved = True
                break
            t *= 0.5
        if not moved:
            break
        dx = np.max(np.abs(xn - x))
        df = f - fn
        x, f, g = xn, fn, gn
        if dx < 1e-10 * max(1.0, np.max(np.abs(x))) or df < 1e-13 * max(1.0, abs(f)):
            break
    return x, f


def _optimise(prob, reml: bool, starts, n_agree=2):
    """Projected Newton (analytic gradient) from each start; best criterion wins.

    Stops after ``n_agree`` starts reach the same optimum (criterion within
    1e-6). When no start gives a clean optimum, L-BFGS-B (scipy) is tried as a
    second optimiser. (scipy's L-BFGS-B is not the default: its per-iteration
    overhead is large when BLAS threads compete for cores.)
    """
    lb = prob.lower_bounds()
    found = []
    for x0 in starts:
        x0 = np.maximum(np.asarray(x0, float), lb)
        if not np.isfinite(prob.evaluate(x0, reml)):
            continue
        try:
            x, fx = _newton(prob, x0, reml, lb)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue
        if not np.isfinite(fx):
            continue
        found.append((x, fx))
        if n_agree == 1:
            break
        if len(found) >= n_agree:
            fs = sorted(v for _, v in found)
            if fs[n_agree - 1] - fs[0] < 1e-6:
                break
    clean = False
    if found:
        x, fx = min(found, key=lambda r: r[1])
        _, g = prob.evaluate(x, reml, True)
        idx = _free(x, g, lb)
        clean = len(idx) == 0 or np.max(np.abs(g[idx])) < 1e-3
    if not clean:
        bounds = [(None if not np.isfinite(b) else b, None) for b in lb]

        def fg(th):
            f, g = prob.evaluate(th, reml, True)
            return (1e300, np.zeros_like(th)) if not np.isfinite(f) else (f, g)

        for x0 in starts:
            try:
                res = optimize.minimize(fg, np.maximum(np.asarray(x0, float), lb), method="L-BFGS-B", jac=True,
                                        bounds=bounds, options={"ftol": 1e-13, "gtol": 1e-8, "maxiter": 3000})
                x, fx = _polish(prob, res.x, reml, lb)
            except (ValueError, FloatingPointError, np.linalg.LinAlgError):
                continue
            if np.isfinite(fx):
                found.append((x, fx))
    if not found:
        return None, np.inf
    return _leave_zero_variances(prob, *min(found, key=lambda r: r[1]), reml, lb)


def _leave_zero_variances(prob, x, fx, reml, lb):
    """Try raising each standard-deviation parameter (diagonal θ, therapist θ) that sits at 0.

    The criterion depends on θ only through ΛΛ' (and θ_T²), so ∂f/∂θ_k = 0 at θ_k = 0 for every
    diagonal entry: a zero variance is a stationary point that a Newton method never leaves even
    when raising it lowers the criterion (seen with a three-level growth model whose therapist
    variance Newton left at 0, 0.006 above lme4's REML criterion). Restart from θ_k = 0.1 and 0.5
    and keep any optimum that is lower by more than 1e-8. When neither gets away from 0 (a Newton
    step from far out can overshoot back onto the boundary, seen with the one-stage model's slope SD
    at θ ≈ 0.03), the criterion is scanned along θ_k on a log grid and Newton restarted from its best
    point when that is lower.
    """
    grid = (1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)
    for k in np.flatnonzero((lb == 0) & (x <= 1e-10)):
        starts = [0.1, 0.5]
        trial = x.copy()
        fs = []
        for v in grid:
            trial[k] = v
            fs.append(prob.evaluate(trial, reml))
        if np.min(fs) < fx - 1e-10:
            starts.append(grid[int(np.argmin(fs))])
        for val in starts:
            x0 = x.copy()
            x0[k] = val
            try:
                x1, f1 = _newton(prob, x0, reml, lb)
            except (ValueError, FloatingPointError, np.linalg.LinAlgError):
                continue
            if np.isfinite(f1) and f1 < fx - 1e-8:
                x, fx = x1, f1
                break
    return x, fx



def _check_convergence(prob, theta, reml, messages) -> bool:
    """lme4's check: no bound pushed outwards, a PD Hessian, max |H⁻¹g| ≤ 1e-3 on the free parameters."""
    lb = prob.lower_bounds()
    _, g = prob.evaluate(theta, reml, True)
    converged = True
    if np.any((theta <= lb + 1e-10) & (g < -1e-3)):
        converged = False
        messages.append("Model failed to converge: the criterion still decreases at a variance bound.")
    idx = _free(theta, g, lb)
    if len(idx):
        try:
            Hs = _grad_hessian(prob, theta, reml, idx)
            evals = np.linalg.eigvalsh(Hs)
            if evals.min() <= 0:
                converged = False
                messages.append("Model failed to converge: the Hessian of the criterion is not positive "
                                "definite at the optimum.")
            else:
                sg = np.max(np.abs(np.linalg.solve(Hs, g[idx])))
                if sg > 1e-3:
                    converged = False
                    messages.append(f"Model failed to converge: max |scaled gradient| = {sg:.2g}.")
        except np.linalg.LinAlgError:
            converged = False
            messages.append("Model failed to converge: the Hessian of the criterion is singular.")
    return converged



def _newton_grad(fg, x0, lb, maxiter=50, tol=1e-11):
    """Minimise f over ``x ≥ lb`` by projected Newton; ``fg(x) → (f, gradient)`` analytic, the
    Hessian by forward differences of the gradient.

    For the small inner problems of a profile (2–4 variance parameters, warm-started near the
    optimum). A bound coordinate whose gradient points outward is held at its bound; a Hessian
    that is not positive definite has its eigenvalues floored at their absolute values; steps are
    halved until f decreases.
    """
    x = np.maximum(np.asarray(x0, float), lb)
    fx, g = fg(x)
    if g is None:
        return x, float(fx)
    d = len(x)
    for _ in range(maxiter):
        free = np.flatnonzero(~((x <= lb + 1e-12) & (g > 0)))
        if len(free) == 0:
            break
        H = np.empty((len(free), len(free)))
        for a, i in enumerate(free):
            h = 1e-6 * max(1.0, abs(x[i]))
            xp = x.copy()
            xp[i] += h
            gp = fg(xp)[1]
            if gp is None:
                xp[i] = x[i] - h
                gp = fg(xp)[1]
                h = -h
            H[:, a] = (gp[free] - g[free]) / h
        w, V = np.linalg.eigh((H + H.T) / 2)
        if not np.all(np.isfinite(w)):
            break
        w = np.maximum(np.abs(w), 1e-8 * max(1.0, np.abs(w).max()))
        step = np.zeros(d)
        step[free] = -(V / w) @ (V.T @ g[free])
        t = 1.0
        moved = False
        for _ls in range(40):
            xn = np.maximum(x + t * step, lb)
            fn, gn = fg(xn)
            if gn is not None and fn <= fx + 1e-4 * (g @ (xn - x)):
                moved = True
                break
            t /= 2
        if not moved:
            break
        dec = fx - fn
        x, fx, g = xn, fn, gn
        if dec < tol * max(1.0, abs(fx)) * 1e-3 or np.max(np.abs(t * step)) < 1e-10:
            break
    return x, float(fx)
