"""Per-session descriptives and the pre–post effect size (Within/between paper, Table 1; METHODS §13).

* :func:`session_descriptives` — per session number and variable: n, mean, SD (ddof 1) and the
  mean absolute change from the previous session, mean over patients observed at both s − 1
  and s of |x_{i,s} − x_{i,s−1}| with its SD (Within/between paper, Table 1, note a: absolute values, so
  rises and falls do not cancel).
* :func:`pre_post_d` — Cohen's d of the change between two sessions for the patients observed
  at both: ``d = (M_pre − M_post) / √((SD_pre² + SD_post²)/2)`` (d_av; positive = the mean
  decreased, i.e. improvement for symptoms), with the paired n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["PrePostD", "pre_post_d", "session_descriptives"]


def _series(df, variable, study):
    if variable not in df.columns:
        raise ValueError(f"The data have no column {variable!r}.")
    d = df
    if study is not None:
        if "study" not in df.columns or str(study) not in set(df["study"].astype(str)):
            raise ValueError(f"Study {study!r} is not in the data.")
        d = df[df["study"].astype(str) == str(study)]
    out = pd.DataFrame({
        "patient": d["patient"].astype(str).to_numpy(),
        "session": pd.to_numeric(d["session"], errors="coerce").to_numpy(),
        "value": pd.to_numeric(d[variable], errors="coerce").to_numpy(dtype=float, na_value=np.nan),
    })
    if np.isnan(out["session"].to_numpy(dtype=float)).any():
        raise ValueError("Column 'session' must hold whole numbers in every row.")
    return out


def session_descriptives(df: pd.DataFrame, variables=("symptoms", "alliance"), study=None) -> pd.DataFrame:
    """Seed 004's Table 1 for one study (or all rows when ``study`` is None): one row per session with
    ``<var>_n, <var>_mean, <var>_sd, <var>_abs_change_mean, <var>_abs_change_sd, <var>_abs_change_n``
    for each variable (module docstring). The first session has no change (NaN)."""
    out = None
    for v in variables:
        s = _series(df, v, study).dropna(subset=["value"])
        g = s.groupby("session")["value"]
        tab = pd.DataFrame({f"{v}_n": g.size(), f"{v}_mean": g.mean(), f"{v}_sd": g.std(ddof=1)})
        prev = s.assign(session=s["session"] + 1).rename(columns={"value": "prev"})
        m = s.merge(prev, on=["patient", "session"], how="inner")
        ch = (m["value"] - m["prev"]).abs().groupby(m["session"])
        tab[f"{v}_abs_change_mean"] = ch.mean()
        tab[f"{v}_abs_change_sd"] = ch.std(ddof=1)
        tab[f"{v}_abs_change_n"] = ch.size()
        out = tab if out is None else out.join(tab, how="outer")
    out = out.reset_index().rename(columns={"index": "session"})
    for c in out.columns:
        if c.endswith("_n"):
            out[c] = out[c].fillna(0).astype("int64")
    return out


@dataclass(frozen=True)
class PrePostD:
    """Pre–post Cohen's d (d_av) of one variable between two sessions (module docstring)."""

    variable: str
    pre_session: int
    post_session: int
    n: int
    mean_pre: float
    mean_post: float
    sd_pre: float
    sd_post: float
    d: float

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.__dict__])

    def summary(self) -> str:
        from analysis import formatting as fmt

        return (f"{self.variable}: session {self.pre_session} M = {fmt.num(self.mean_pre)} (SD {fmt.num(self.sd_pre)}),"
                f" session {self.post_session} M = {fmt.num(self.mean_post)} (SD {fmt.num(self.sd_post)}), "
                f"n = {fmt.count(self.n)} with both; Cohen's d = {fmt.num(self.d)}.")


def pre_post_d(df: pd.DataFrame, variable: str = "symptoms", pre=None, post=None, study=None) -> PrePostD:
    """Cohen's d_av between session ``pre`` (default: the first session number) and ``post`` (default:
    the last), over the patients observed at both (module docstring)."""
    s = _series(df, variable, study).dropna(subset=["value"])
    if s.empty:
        raise ValueError(f"No observed values of {variable}.")
    pre = int(s["session"].min()) if pre is None else int(pre)
    post = int(s["session"].max()) if post is None else int(post)
    if pre >= post:
        raise ValueError("The pre session must come before the post session.")
    a = s[s["session"] == pre].set_index("patient")["value"]
    b = s[s["session"] == post].set_index("patient")["value"]
    both = a.index.intersection(b.index)
    if len(both) < 2:
        raise ValueError(f"Fewer than 2 patients were observed at both session {pre} and session {post}.")
    a, b = a.loc[both].to_numpy(float), b.loc[both].to_numpy(float)
    sd_a, sd_b = float(np.std(a, ddof=1)), float(np.std(b, ddof=1))
    sp = np.sqrt((sd_a**2 + sd_b**2) / 2)
    d = float((a.mean() - b.mean()) / sp) if sp > 0 else float("nan")
    return PrePostD(variable, pre, post, int(len(both)), float(a.mean()), float(b.mean()), sd_a, sd_b, d)
