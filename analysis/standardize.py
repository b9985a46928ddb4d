"""Within-study standardization (METHODS §2), one implementation for every method.

``z = (x − mean_s) / SD_s`` per group s (a study), over the group's observed
values; the SD is either the total SD of the group (ddof 1) or, with
``within=`` patient codes, the pooled within-patient SD
``√(Σ (x − x̄_patient)² / (N_s − G_s))`` (G_s: patients with an observed
value). Missing values stay missing.

One behaviour on a zero SD (or fewer than two observed values): that group's
``z`` is NaN, the group is listed in :attr:`Standardized.constant`, and
:meth:`Standardized.problems` gives the one sentence per group that every
caller reports as that study's problem while the other studies still run — a
group is never silently left unstandardized, and no caller raises for it.

>>> import numpy as np
>>> s = zscores(np.array([1.0, 2.0, 3.0, 5.0, 5.0]), np.array([0, 0, 0, 1, 1]))
>>> s.z.round(3).tolist()[:3], s.constant
([-1.0, 0.0, 1.0], (1,))
>>> s.problems("alliance", ["Study A", "Study B"])
{'Study B': 'alliance has no variance in the analysis window (2 observed values), so it cannot be standardized'}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Standardized", "standardize_within_study", "zscores", "zscores_by"]


@dataclass(frozen=True, eq=False)
class Standardized:
    """``z`` (the standardized values), per group ``mean``, ``sd`` and ``n`` (observed values), and
    ``constant``: the groups that could not be standardized (SD 0 or NaN, or fewer than two values)."""

    z: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    n: np.ndarray
    constant: tuple
    within: bool = False

    def problems(self, variable: str, labels=None) -> dict:
        """``{group label: sentence}`` for the groups that could not be standardized (``labels[k]`` names group
        k; default the code k). The one wording every caller reports as that study's problem."""
        out = {}
        for k in self.constant:
            n = int(self.n[k])
            if self.within and n >= 2 and np.isfinite(self.sd[k]):
                msg = (f"{variable} does not vary within patients (within-patient SD 0), so it cannot be "
                       "standardized by the within-patient SD")
            else:
                msg = (f"{variable} has no variance in the analysis window ({n} observed value"
                       f"{'' if n == 1 else 's'}), so it cannot be standardized")
            out[labels[k] if labels is not None else k] = msg
        return out


def zscores(x, groups=None, n_groups: int | None = None, within=None, n_within: int | None = None) -> Standardized:
    """Standardize ``x`` within each group (module docstring; METHODS §2).

    ``groups``: integer codes 0…S−1 (``None``: one group); ``within``: integer
    patient codes 0…G−1 (each patient inside one group) for the within-patient SD.
    """
    x = np.asarray(x, dtype=float)
    g = np.zeros(len(x), dtype=np.intp) if groups is None else np.asarray(groups, dtype=np.intp)
    S = int(n_groups) if n_groups is not None else (int(g.max()) + 1 if len(g) else 0)
    obs = ~np.isnan(x)
    cnt = np.bincount(g[obs], minlength=S).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.bincount(g[obs], weights=x[obs], minlength=S) / cnt
        if within is None:
            dev = np.where(obs, x - mean[g], 0.0)
            sd = np.sqrt(np.bincount(g, weights=dev**2, minlength=S) / (cnt - 1))
        else:
            p = np.asarray(within, dtype=np.intp)
            G = int(n_within) if n_within is not None else (int(p.max()) + 1 if len(p) else 0)
            npat = np.bincount(p[obs], minlength=G)
            pm = np.bincount(p[obs], weights=x[obs], minlength=G) / npat
            wdev = np.where(obs, x - pm[p], 0.0)
            pat_group = np.zeros(G, dtype=np.intp)
            pat_group[p] = g
            g_obs = np.bincount(pat_group[npat > 0], minlength=S)
            sd = np.sqrt(np.bincount(g, weights=wdev**2, minlength=S) / (cnt - g_obs))
        good = (cnt >= 2) & (sd > 0)
        z = np.where(good[g], (x - mean[g]) / np.where(good, sd, 1.0)[g], np.nan) if len(x) else x.copy()
    return Standardized(z=z, mean=mean, sd=sd, n=cnt.astype(np.int64),
                        constant=tuple(int(k) for k in np.flatnonzero(~good)), within=within is not None)


def zscores_by(values, groups, name: str) -> tuple[np.ndarray, dict]:
    """``values`` standardized within each group of ``groups`` (a label per value, e.g. its study; the total
    SD), and ``{group label: sentence}`` (:meth:`Standardized.problems`, the variable called ``name``) for the
    groups that could not be: their values are NaN.

    >>> z, why = zscores_by([1.0, 2.0, 3.0, 4.0, 4.0], ["A", "A", "A", "B", "B"], "alliance")
    >>> z.round(3).tolist()[:3], list(why)
    ([-1.0, 0.0, 1.0], ['B'])
    """
    import pandas as pd

    codes, labels = pd.factorize(pd.Series(groups), sort=True)
    std = zscores(pd.Series(values).to_numpy(dtype=float, na_value=np.nan), codes, len(labels))
    return std.z, std.problems(name, labels)


def standardize_within_study(df, columns):
    """Copy of ``df`` (canonical long data) with ``columns`` z-standardized within each study (METHODS §2).

    ``z = (x − mean) / sd`` over the study's observed values, sd with ddof = 1 (:func:`zscores`); missing
    values stay missing. A study whose values do not vary (or with fewer than two observed values) cannot be
    standardized: its values become missing and ``out.attrs["messages"]`` says so, study by study (the other
    studies are standardized).
    """
    import pandas as pd

    from analysis.data import DataError, require_canonical

    columns = [columns] if isinstance(columns, str) else list(columns)
    try:
        data = require_canonical(df, columns)
    except DataError as exc:
        raise DataError(f"standardize_within_study: {exc}") from None
    out = df.copy()
    order = pd.MultiIndex.from_frame(df[["study", "patient", "session"]].astype({"study": str, "patient": str}))
    rows = pd.MultiIndex.from_frame(data[["study", "patient", "session"]])
    messages = []
    for c in columns:
        z, why = zscores_by(data[c], data["study"], c)
        messages += [f"Study {lab}: {msg}; its values were left out." for lab, msg in why.items()]
        out[c] = pd.Series(z, index=rows).reindex(order).to_numpy(dtype=float)
    out.attrs["messages"] = tuple(messages)
    return out
