"""Data → model rows (METHODS §1–§4): the analysis window, per-study standardization, centering, lag pairing and
patient-level covariates (StudyData, ModelRows, prepare, pairing_counts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.data import require_canonical
from analysis.lagged.options import _VARS, PAIRINGS, LagOptions, _check_direction, model_terms
from analysis.standardize import zscores


def covariate_is_numeric(col: pd.Series) -> bool:
    """True when a covariate column enters as a centred number, False when as 0/1 dummies (§5):
    numeric dtypes except booleans are numbers; text, categorical and boolean columns are levels."""
    return bool(pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col))


class StudyData:
    """Stage-1 input: canonical data sorted by (study, patient, session),
    restricted to the session window and standardized per study (§2), with
    the patient-level covariates named in the options. Shared by every
    centering, direction and lag; build it once with :func:`prepare_studies`.

    Attributes used by callers: ``study_labels`` (sorted), ``n`` (rows),
    ``G`` (patients), ``S`` (studies), ``g`` (patient code per row), ``scode``
    (study code per row), ``sess``, ``raw``/``z`` (variable → values on the
    original / model scale), ``scale`` (variable → (mean, SD) per study),
    ``problems`` (study → reasons it cannot be fitted).
    """

    def __init__(self, df: pd.DataFrame, options: LagOptions):
        d = require_canonical(df, study=False, min_rows=0, sort=False)  # same rows and order as df
        n0 = len(d)
        sess = d["session"].to_numpy(dtype=np.int64)
        if "study" in d.columns:
            scode, slabels = pd.factorize(d["study"], sort=True)
        else:
            scode, slabels = np.zeros(n0, dtype=np.int64), pd.Index(["Study"])
        pcode, plabels = pd.factorize(d["patient"], sort=True)
        a = d["alliance"].to_numpy(dtype=float, na_value=np.nan)
        s = d["symptoms"].to_numpy(dtype=float, na_value=np.nan)
        keep = np.ones(n0, dtype=bool)
        if options.sessions is not None:
            keep = (sess >= options.sessions[0]) & (sess <= options.sessions[1])
        idx = np.flatnonzero(keep)
        scode, pcode, sess, a, s = scode[idx], pcode[idx], sess[idx], a[idx], s[idx]
        order = np.lexsort((sess, pcode, scode))
        scode, pcode, sess, a, s = scode[order], pcode[order], sess[order], a[order], s[order]
        self.src_index = idx[order]  # position in the caller's frame
        n = len(sess)
        newpat = np.r_[True, (scode[1:] != scode[:-1]) | (pcode[1:] != pcode[:-1])] if n else np.zeros(0, bool)
        self.n = n
        self.study_labels = [str(x) for x in slabels]
        self.scode = scode
        self.sess = sess
        self.pstart = np.flatnonzero(newpat)
        self.G = len(self.pstart)
        self.psize = np.diff(np.r_[self.pstart, n])
        self.g = np.repeat(np.arange(self.G), self.psize)
        self.pat_study = scode[self.pstart] if self.G else np.zeros(0, np.int64)
        self.pat_label = np.asarray(plabels.astype(str))[pcode[self.pstart]] if self.G else np.zeros(0, str)
        self.S = len(self.study_labels)
        # study row ranges (rows are sorted by study)
        sc_counts = np.bincount(scode, minlength=self.S)
        self.sstart = np.r_[0, np.cumsum(sc_counts)]
        pc_counts = np.bincount(self.pat_study, minlength=self.S)
        self.spstart = np.r_[0, np.cumsum(pc_counts)]
        self.raw = {"alliance": a, "symptoms": s}
        self.z = {}
        self.scale = {}
        self.problems = {lab: [] for lab in self.study_labels}
        self.standardize_by = options.standardize_by if options.standardize else None
        for var, x in self.raw.items():  # z = (x − study mean) / SD (§2): the SD over all observed values
            # ("total", ddof 1) or the pooled within-patient SD √(Σ(x − x̄_i)² / (N − G)) ("within")
            std = total = zscores(x, self.scode, self.S)
            problems = total.problems(var, self.study_labels)
            if options.standardize and options.standardize_by == "within":
                std = zscores(x, self.scode, self.S, within=self.g, n_within=self.G)
                problems = std.problems(var, self.study_labels) | problems
            for lab, msg in problems.items():
                self.problems[lab].append(msg)
            self.z[var] = std.z if options.standardize else x
            self.scale[var] = (std.mean, std.sd)
        self.covariates = self._read_covariates(df, options.covariates) if options.covariates else {}
        self._centered = {}

    def _read_covariates(self, df: pd.DataFrame, names: tuple) -> dict:
        """Patient-level covariates: name → (kind, per-patient values). Numeric columns give floats
        (NaN = missing); others give integer level codes (−1 = missing) and the sorted level labels."""
        missing = [c for c in names if c not in df.columns]
        if missing:
            raise ValueError(f"The covariate column(s) {', '.join(missing)} are not in the data.")
        src = self.src_index
        out = {}
        for name in names:
            col = df[name].iloc[src] if len(src) else df[name].iloc[:0]
            numeric = covariate_is_numeric(col)
            if numeric:
                vals = col.to_numpy(dtype=float, na_value=np.nan)
                codes, levels = vals, None
            else:
                codes, levels = pd.factorize(col.astype("string"), sort=True)
                codes = codes.astype(float)
                codes[codes < 0] = np.nan
                levels = [str(v) for v in levels]
            per = np.full(self.G, np.nan)
            ok = ~np.isnan(codes)
            # first observed value of each patient; any other value in the patient's rows is an error
            first = np.full(self.G, -1)
            rows_ok = np.flatnonzero(ok)
            if len(rows_ok):
                gi = self.g[rows_ok]
                f = np.r_[True, gi[1:] != gi[:-1]]
                first[gi[f]] = rows_ok[f]
                per[gi[f]] = codes[rows_ok[f]]
                bad = codes[rows_ok] != per[gi]
                if bad.any():
                    j = rows_ok[np.flatnonzero(bad)[0]]
                    raise ValueError(
                        f"Covariate '{name}' must be patient-level (one value per patient), but patient "
                        f"{self.pat_label[self.g[j]]} of study {self.study_labels[self.scode[j]]} has several values."
                    )
            out[name] = ("numeric", per, None) if numeric else ("categorical", per, levels)
        return out

    # ---------------------------------------------------------------- centering (§3)
    def centered(self, var: str, centering: str):
        """Return (center, within, between, n_obs per patient) for one variable."""
        key = (var, centering)
        if key in self._centered:
            return self._centered[key]
        x = self.z[var]
        obs = ~np.isnan(x)
        g, G, S = self.g, self.G, self.S
        nobs = np.bincount(g[obs], minlength=G).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            pm = np.bincount(g[obs], weights=x[obs], minlength=G) / nobs
        has = nobs > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            gm_study = np.bincount(self.pat_study[has], weights=pm[has], minlength=S) / np.bincount(
                self.pat_study[has], minlength=S
            )
        between = pm - gm_study[self.pat_study]  # per patient; NaN when no observed value
        if centering == "none":
            center = np.zeros(self.n)
            bt = None
        elif centering == "grand_mean":
            with np.errstate(invalid="ignore", divide="ignore"):
                m_all = np.bincount(self.scode[obs], weights=x[obs], minlength=S) / np.bincount(
                    self.scode[obs], minlength=S
                )
            center = m_all[self.scode]
            bt = None
        elif centering == "person_mean":
            center = pm[g]
            bt = between[g]
        else:  # detrended
            t = self.sess.astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                tbar = np.bincount(g[obs], weights=t[obs], minlength=G) / nobs
            td = np.where(obs, t - tbar[g], 0.0)
            xd = np.where(obs, x - pm[g], 0.0)
            sxx = np.bincount(g, weights=td * td, minlength=G)
            sxy = np.bincount(g, weights=td * xd, minlength=G)
            ok = (nobs >= 3) & (sxx > 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                slope = np.where(ok, sxy / np.where(ok, sxx, 1.0), np.nan)
            center = pm[g] + slope[g] * (t - tbar[g])
            bt = between[g]
        within = x - center
        out = (center, within, bt, nobs)
        self._centered[key] = out
        return out

    # ---------------------------------------------------------------- pairing (§4)
    def lead_index(self, yvar: str, lag: int, pairing: str) -> np.ndarray:
        """Row index of the outcome paired with each row, −1 when none."""
        key = ("lead", yvar, lag, pairing)
        if key in self._centered:
            return self._centered[key]
        n = self.n
        yobs = ~np.isnan(self.z[yvar])
        if lag == 0:  # outcome rated later in the same session (§4)
            j = np.where(yobs, np.arange(n), -1)
            self._centered[key] = j
            return j
        if pairing == "session":
            span = int(self.sess.max()) + lag + 1 if n else 1
            k = self.g.astype(np.int64) * span + self.sess
            target = k + lag
            pos = np.searchsorted(k, target)
            pos_c = np.minimum(pos, max(n - 1, 0))
            ok = (pos < n) & (k[pos_c] == target)
            j = np.where(ok, pos_c, -1)
        else:
            oi = np.flatnonzero(yobs)
            pos = np.searchsorted(oi, np.arange(n), side="right") + (lag - 1)
            pos_c = np.minimum(pos, max(len(oi) - 1, 0))
            if len(oi):
                cand = oi[pos_c]
                ok = (pos < len(oi)) & (self.g[cand] == self.g)
                j = np.where(ok, cand, -1)
            else:
                j = np.full(n, -1)
        j = np.where((j >= 0) & yobs[np.maximum(j, 0)], j, -1)
        self._centered[key] = j
        return j

    def previous_index(self, yvar: str, pairing: str) -> np.ndarray:
        """Row index of the outcome one step earlier (session t − 1, or the patient's previous row with
        an observed outcome for ``next_observed``), −1 when none: the prior outcome of a lag-0 model."""
        n = self.n
        yobs = ~np.isnan(self.z[yvar])
        if pairing == "session":
            span = int(self.sess.max()) + 2 if n else 1
            k = self.g.astype(np.int64) * span + self.sess
            pos = np.searchsorted(k, k - 1)
            pos_c = np.minimum(pos, max(n - 1, 0))
            j = np.where((pos < n) & (k[pos_c] == k - 1), pos_c, -1)
        else:
            oi = np.flatnonzero(yobs)
            pos = np.searchsorted(oi, np.arange(n), side="left") - 1
            if len(oi):
                cand = oi[np.maximum(pos, 0)]
                j = np.where((pos >= 0) & (self.g[cand] == self.g), cand, -1)
            else:
                j = np.full(n, -1)
        return np.where((j >= 0) & yobs[np.maximum(j, 0)], j, -1)


@dataclass(eq=False)
class ModelRows:
    """Model rows of one direction over all studies (sorted by study, patient); see :func:`model_rows`.

    ``idx``: row positions in the :class:`StudyData`; ``lead``: row positions of
    the outcome; ``cols``: term → values per model row (plus ``lead``, the
    model outcome); ``extra``: display columns; ``dropped``: per-study counts
    of rows left out by reason; ``terms``: the model's terms (covariate terms
    included; a study may drop covariate terms that are constant in it).
    """

    idx: np.ndarray
    lead: np.ndarray
    cols: dict
    extra: dict
    dropped: dict
    terms: tuple
    covariate_terms: dict = field(default_factory=dict)  # main term -> its "within × " interaction
    covariate_levels: dict = field(default_factory=dict)  # categorical covariate -> (reference level, dummies)


def _covariate_columns(data: StudyData, options: LagOptions, idx: np.ndarray, within: np.ndarray):
    """Covariate main-effect and interaction columns for model rows ``idx`` (§5).

    Numeric: value − study mean over the study's patients with a value (÷ their SD, ddof 1, when
    ``standardize``). Categorical: a 0/1 dummy per level except the first (sorted over all data).
    Returns (cols, interactions: main term → its ``within × `` term, categorical covariate →
    (reference level, its dummy terms)).
    """
    cols, mains, groups = {}, [], {}
    gi = data.g[idx]
    for name, (kind, per, levels) in data.covariates.items():
        v = per[gi]
        if kind == "numeric":
            has = ~np.isnan(per)
            ps = data.pat_study[has]
            cnt = np.bincount(ps, minlength=data.S).astype(float)
            with np.errstate(invalid="ignore", divide="ignore"):
                m = np.bincount(ps, weights=per[has], minlength=data.S) / cnt
                sd = np.sqrt(np.bincount(ps, weights=(per[has] - m[ps]) ** 2, minlength=data.S) / (cnt - 1))
            sc = data.scode[idx]
            c = v - m[sc]
            if options.standardize:
                with np.errstate(invalid="ignore", divide="ignore"):
                    c = np.where(sd[sc] > 0, c / np.where(sd[sc] > 0, sd[sc], 1.0), 0.0 * c)
            cols[name] = c
            mains.append(name)
        else:
            dummies = []
            for j, lev in enumerate(levels[1:], start=1):
                t = f"{name}: {lev}"
                cols[t] = np.where(np.isnan(v), np.nan, (v == j).astype(float))
                dummies.append(t)
            mains.extend(dummies)
            groups[name] = (levels[0], tuple(dummies))
    inter = {}
    for t in mains:
        inter[t] = f"within × {t}"
        cols[inter[t]] = cols[t] * within
    return cols, inter, groups


def model_rows(data: StudyData, options: LagOptions, direction: str) -> ModelRows:
    """The stage-1 model rows of one direction for every study (METHODS §3–§5).

    Centre X and Y (§3), pair each row with its outcome (§4; lag 0: the same
    session's outcome, prior outcome from the previous session), keep rows
    with every term present. :func:`prepare` returns the same rows as a frame.
    """
    xvar, yvar = _check_direction(direction)
    if tuple(data.covariates) != options.covariates:
        raise ValueError("The data were prepared with other covariates than these options name; "
                         "call prepare_studies with the same options.")
    xc, xw, xb, _xn = data.centered(xvar, options.centering)
    yc, yw, yb, _yn = data.centered(yvar, options.centering)
    lead = data.lead_index(yvar, options.lag, options.pairing)
    prior = data.previous_index(yvar, options.pairing) if options.lag == 0 else np.arange(data.n)
    terms = model_terms(options)
    fe = options.estimator == "fixed_effects"
    x = data.z[xvar]
    y = data.z[yvar]
    has_lead = lead >= 0
    ok_x = ~np.isnan(xw)
    if xb is not None:
        ok_x &= ~np.isnan(xb)
    ok = has_lead & ok_x
    if options.control_prior_outcome:
        pj = np.maximum(prior, 0)
        ok_y = (prior >= 0) & ~np.isnan(yw[pj])
        if yb is not None and options.estimator == "mixed":
            ok_y &= ~np.isnan(yb)
        ok &= ok_y
    for _kind, per, _levels in data.covariates.values():
        ok &= ~np.isnan(per[data.g])
    idx = np.flatnonzero(ok)
    li = lead[idx]
    cols = {"within": xw[idx]}
    if xb is not None:
        cols["between"] = xb[idx]
    if options.control_prior_outcome:
        cols["prior_within"] = yw[prior[idx]]
        if yb is not None:
            cols["prior_between"] = yb[idx]
    if options.cross_level:
        cols["interaction"] = cols["between"] * cols["within"]
    if options.outcome_moderator:
        cols["interaction_outcome"] = yb[idx] * cols["within"]
    sc = data.scode[idx]
    if options.time_trend != "none":
        t = data.sess[idx].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            tm = np.bincount(sc, weights=t, minlength=data.S) / np.bincount(sc, minlength=data.S)
        cols["time"] = t - tm[sc]
    cov_terms, cov_levels = {}, {}
    if options.covariates:
        ccols, cov_terms, cov_levels = _covariate_columns(data, options, idx, cols["within"])
        cols.update(ccols)
        terms = terms + (() if fe else tuple(cov_terms)) + tuple(cov_terms.values())
    cols["lead"] = y[li]
    extra = {
        "x": x[idx],
        "x_center": xc[idx],
        "y": y[idx],
        "y_center": yc[idx],
        "x_raw": data.raw[xvar][idx],
        "y_raw": data.raw[yvar][idx],
        "lead_raw": data.raw[yvar][li],
        "lead_session": data.sess[li],
        "prior_session": data.sess[prior[idx]],
    }
    S = data.S
    dropped = {
        "rows": np.bincount(data.scode, minlength=S),
        "no_outcome_pair": np.bincount(data.scode[~has_lead], minlength=S),
        "missing_terms": np.bincount(data.scode[has_lead & ~ok], minlength=S),
    }
    return ModelRows(idx=idx, lead=li, cols=cols, extra=extra, dropped=dropped, terms=terms,
                     covariate_terms=cov_terms, covariate_levels=cov_levels)


def _rows_frame(base: StudyData, rows: ModelRows, options: LagOptions, direction: str) -> pd.DataFrame:
    idx = rows.idx
    xvar, yvar = _VARS[direction]
    out = {
        "study": pd.array(np.asarray(base.study_labels, dtype=object)[base.scode[idx]] if len(idx) else [], dtype="string"),
        "patient": pd.array(base.pat_label[base.g[idx]] if len(idx) else [], dtype="string"),
        "session": base.sess[idx],
        "lead_session": rows.extra["lead_session"],
        "x_raw": rows.extra["x_raw"],
        "x": rows.extra["x"],
        "x_center": rows.extra["x_center"],
        "within": rows.cols["within"],
    }
    if "between" in rows.cols:
        out["between"] = rows.cols["between"]
    out.update({"y_raw": rows.extra["y_raw"], "y": rows.extra["y"], "y_center": rows.extra["y_center"]})
    if options.lag == 0 and options.control_prior_outcome:
        out["prior_session"] = rows.extra["prior_session"]
    for t in ("prior_within", "prior_between", "interaction", "interaction_outcome", "time"):
        if t in rows.cols:
            out[t] = rows.cols[t]
    for main, inter in rows.covariate_terms.items():
        out[main] = rows.cols[main]
        out[inter] = rows.cols[inter]
    out["lead_raw"] = rows.extra["lead_raw"]
    out["lead"] = rows.cols["lead"]
    df = pd.DataFrame(out)
    df.attrs.update(
        {
            "direction": direction,
            "predictor": xvar,
            "outcome": yvar,
            "terms": list(rows.terms),
            "options": options.to_dict(),
        }
    )
    return df


def row_names(rows: pd.DataFrame) -> dict[str, str]:
    """Reader's headings of :func:`prepare`'s columns, in the words of the frame's direction (its ``attrs``
    name the predictor X and the outcome Y): "Alliance at t (raw)", "Symptoms at the outcome session (model)".
    Columns it does not name (covariates) keep the general rule (:func:`analysis.formatting.column_name`).

    >>> row_names(prepare(pd.DataFrame({"study": "A", "patient": ["1"] * 3, "session": [1, 2, 3],
    ...     "alliance": [4.0, 5.0, 6.0], "symptoms": [3.0, 2.0, 2.5]})))["x_center"]
    'Alliance: centre subtracted'
    """
    x = str(rows.attrs.get("predictor", "predictor")).replace("_", " ").capitalize()
    y = str(rows.attrs.get("outcome", "outcome")).replace("_", " ").capitalize()
    names = {
        "study": "Study", "patient": "Patient", "session": "Session t", "lead_session": "Outcome session",
        "x_raw": f"{x} at t (raw)", "x": f"{x} at t (model scale)", "x_center": f"{x}: centre subtracted",
        "within": f"{x} within (t − centre)", "between": f"{x} between (own mean − study mean)",
        "y_raw": f"{y} at t (raw)", "y": f"{y} at t (model scale)", "y_center": f"{y}: centre subtracted",
        "prior_session": f"{y}: prior session", "prior_within": f"{y} at t, within",
        "prior_between": f"{y} at t, between", "interaction": f"{x} between × within",
        "interaction_outcome": f"{y} between × {x.lower()} within", "time": "Time (session − mean session)",
        "lead_raw": f"{y} at the outcome session (raw)", "lead": f"{y} at the outcome session (model)",
    }
    return {c: names[c] for c in rows.columns if c in names}


def prepare(df: pd.DataFrame, options: LagOptions | None = None, direction: str = "alliance_to_symptoms") -> pd.DataFrame:
    """The model rows of one direction, exactly as they enter the stage-1 model.

    Steps (METHODS §2–§4): restrict to the session window; z-score alliance and
    symptoms within each study over all observed values in the window (ddof 1,
    when ``standardize``); centre X (predictor) and Y (outcome at t) per §3 —
    the person mean, grand mean and detrending use every observed value of the
    patient in the window, not only the paired rows; pair each row with the
    outcome at session t + L (``pairing="session"``) or the patient's L-th later
    row with an observed outcome (``"next_observed"``); keep rows with every
    model term present (nothing is imputed).

    Columns: ``study, patient, session, lead_session``; the predictor at t on
    the original metric (``x_raw``), after standardization (``x``), the value
    subtracted by the centering (``x_center``: 0, grand mean, person mean or
    the patient's fitted trend) and ``within = x − x_center``; ``between =
    person mean − mean of the study's person means`` (person_mean/detrended;
    every patient with an observed value counts, also one whose detrended
    within part is missing for lack of 3 values); the same for
    the outcome at t (``y_raw, y, y_center``, terms ``prior_within``,
    ``prior_between``); ``interaction = between·within``; ``time`` = session −
    mean session of the study's model rows; the outcome at the lead session
    (``lead_raw``, model outcome ``lead``, standardized but never centred);
    ``interaction_outcome = Y^b·within``; per covariate its centred column (or
    0/1 dummies ``C: level``) and ``within × C``; with ``lag = 0`` the
    outcome's session equals ``session`` and ``prior_session`` (t − 1) says
    where the prior outcome comes from.
    Columns of terms not in the model are absent. ``attrs`` records the
    direction, predictor, outcome, terms and options.

    >>> from analysis.simulate import simulate_study
    >>> rows = prepare(simulate_study(10, seed=1).data)
    >>> rows.columns.tolist()[:4]
    ['study', 'patient', 'session', 'lead_session']
    """
    options = options or LagOptions()
    _check_direction(direction)
    base = StudyData(df, options)
    rows = model_rows(base, options, direction)
    return _rows_frame(base, rows, options, direction)


def pairing_counts(df: pd.DataFrame, options: LagOptions | None = None) -> pd.DataFrame:
    """Complete model rows (pairs) per study and direction under each pairing mode (§4).

    Columns: ``study, direction, rows`` (rows in the window), ``pairs_session``,
    ``pairs_next_observed``, ``patients_session``, ``patients_next_observed``
    and ``median_gap_next_observed`` (median session distance of the
    next-observed pairs; equals the lag when nothing was skipped).

    >>> from analysis.simulate import simulate_study
    >>> t = pairing_counts(simulate_study(10, seed=1).data)
    >>> t.columns.tolist()[:3], len(t)
    (['study', 'direction', 'rows'], 2)
    """
    options = options or LagOptions()
    base = StudyData(df, options)
    recs = []
    for direction in options.directions:
        res = {}
        for mode in PAIRINGS:
            r = model_rows(base, options.replace(pairing=mode), direction)
            sc = base.scode[r.idx]
            pairs = np.bincount(sc, minlength=base.S)
            pats = np.zeros(base.S, dtype=int)
            if len(r.idx):
                gi = base.g[r.idx]
                first = np.r_[True, gi[1:] != gi[:-1]]
                pats = np.bincount(sc[first], minlength=base.S)
            gap = r.extra["lead_session"] - base.sess[r.idx]
            res[mode] = (pairs, pats, sc, gap)
        for k, lab in enumerate(base.study_labels):
            sc, gap = res["next_observed"][2], res["next_observed"][3]
            gk = gap[sc == k]
            recs.append(
                {
                    "study": lab,
                    "direction": direction,
                    "rows": int(base.sstart[k + 1] - base.sstart[k]),
                    "pairs_session": int(res["session"][0][k]),
                    "pairs_next_observed": int(res["next_observed"][0][k]),
                    "patients_session": int(res["session"][1][k]),
                    "patients_next_observed": int(res["next_observed"][1][k]),
                    "median_gap_next_observed": float(np.median(gk)) if len(gk) else np.nan,
                }
            )
    out = pd.DataFrame(recs)
    out["study"] = out["study"].astype("string")
    return out


def prepare_studies(df: pd.DataFrame, options: LagOptions | None = None) -> StudyData:
    """Validate canonical long data and build the stage-1 input (:class:`StudyData`, METHODS §1–§2):
    window, sort, per-study standardization, covariates. Raises ValueError on bad input or an empty
    window."""
    data = StudyData(df, options or LagOptions())
    if data.n == 0:
        raise ValueError("No rows in the analysis window.")
    return data
