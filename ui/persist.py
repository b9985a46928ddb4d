"""One way to keep widget choices: across pages (session state) and in the URL (query string).

Widgets. Streamlit forgets a widget's value when a run does not draw it (after a
visit to another page). :func:`widget` returns a key seeded from the last
remembered value; :func:`sync` (called by app.py at the top of every run)
remembers the values of every key registered through :func:`widget`.

URL. :func:`url_params` puts a page's options into ``st.query_params`` so a link
reproduces the view (on the same data or the demo). It is called before the
page's widgets are drawn: on the first run of a session (a reload or a shared
link) it applies the values found in the URL — each checked against its
:class:`Param` (allowed choices, range), anything else ignored — and on every
run it writes the current values back. Only options go into the URL, never
data, file names or study names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import streamlit as st

from analysis import presets as _presets
from analysis.bayes_meta import SmallKOptions
from analysis.convergence.options import ConvergenceOptions
from analysis.events import options as _evo
from analysis.options import Option, declared
from analysis.teaching import TeachingParams

STORE = "_persist"  # remembered widget values
_KEYS = "_persist_keys"  # keys registered through widget()
_APPLIED = "_url_applied"  # URL groups already applied in this session
_RUN = "_url_this_run"  # URL parameters declared in the current run (written again after the page)


def _store() -> dict:
    return st.session_state.setdefault(STORE, {})


def widget(key: str, default, allowed=None) -> str:
    """A widget key whose value survives visits to other pages.

    The key is seeded from the remembered value (else ``default``; a
    remembered value not in ``allowed`` falls back to ``default``) and
    re-assigned on every run, so Streamlit keeps it. Pass no ``value=``/``index=``
    to the widget itself.
    """
    keys = st.session_state.setdefault(_KEYS, set())
    keys.add(key)
    if key in st.session_state:
        val = st.session_state[key]
    else:
        val = _store().get(key, default)
        if allowed is not None and val not in allowed:
            val = default
    st.session_state[key] = val
    return key


def sync() -> None:
    """Remember the current value of every registered widget key (app.py, top of each run)."""
    store = _store()
    for key in st.session_state.get(_KEYS, ()):
        if key in st.session_state:
            store[key] = st.session_state[key]
    st.session_state[_RUN] = {}


def write_declared() -> None:
    """Write every URL parameter declared in this run (app.py, after the page ran), so
    values of widgets drawn for the first time reach the URL without waiting for a click."""
    sets, drops = {}, set()
    for params in st.session_state.get(_RUN, {}).values():
        _url_changes(params, sets, drops)
    _apply_url(sets, drops)


def forget(prefix: str) -> None:
    """Drop remembered values and widget state of keys starting with ``prefix`` (e.g. new data)."""
    store = _store()
    for k in [k for k in store if str(k).startswith(prefix)]:
        del store[k]
    for k in [k for k in st.session_state if str(k).startswith(prefix)]:
        del st.session_state[k]


# --------------------------------------------------------------------------- URL


@dataclass(frozen=True)
class Param:
    """One option in the URL: the widget ``key`` it sets and what is allowed.

    ``kind``: ``"choice"`` (one of ``choices``), ``"choices"`` (a subset, comma
    separated), ``"int"``/``"float"`` (within ``lo``–``hi``), ``"bool"``
    (1/0) or ``"range"`` (two whole numbers ``a-b`` within ``lo``–``hi``).
    """

    key: str
    kind: str
    choices: tuple = ()
    lo: float | None = None
    hi: float | None = None

    def encode(self, v) -> str:
        if self.kind == "choices":
            return ",".join(str(x) for x in v)
        if self.kind == "bool":
            return "1" if v else "0"
        if self.kind == "range":
            return f"{int(v[0])}-{int(v[1])}"
        if self.kind == "float":
            return f"{float(v):g}"
        return str(v)

    def _in_range(self, x: float) -> bool:
        return (self.lo is None or x >= self.lo) and (self.hi is None or x <= self.hi)

    def check(self, value):
        """``value`` read from JSON (a bundle's page options) if this parameter allows it, else None."""
        if isinstance(value, (dict, float)) and not (isinstance(value, float) and math.isfinite(value)):
            return None
        if self.kind == "choices" and not isinstance(value, (list, tuple)):
            return None
        if self.kind == "range" and not (isinstance(value, (list, tuple)) and len(value) == 2):
            return None
        if self.kind in ("int", "range") and any(isinstance(v, float) and not v.is_integer() for v in
                                                 (value if isinstance(value, (list, tuple)) else [value])):
            return None
        if self.kind == "bool" and not isinstance(value, bool):
            return None
        if self.kind in ("int", "float") and (isinstance(value, bool) or not isinstance(value, (int, float))):
            return None
        if self.kind == "int" and isinstance(value, float):
            value = int(value)
        try:
            if self.kind == "range":
                return self.decode(self.encode(value)) if all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) else None
            if self.kind == "choices":
                return self.decode(",".join(str(v) for v in value)) if all(
                    isinstance(v, (str, int)) for v in value) else None
            if self.kind == "choice":
                return next((c for c in self.choices if c == value and type(c) is type(value)), None)
            return self.decode(self.encode(value))
        except (ValueError, TypeError, OverflowError):
            return None

    def decode(self, text: str):
        """The value for the widget, or None when ``text`` is not allowed."""
        text = str(text).strip()
        try:
            if self.kind == "choice":
                return next((c for c in self.choices if str(c) == text), None)
            if self.kind == "choices":
                parts = [p for p in text.split(",") if p]
                vals = [next((c for c in self.choices if str(c) == p), None) for p in parts]
                return vals if vals and None not in vals and len(set(parts)) == len(parts) else None
            if self.kind == "bool":
                return {"1": True, "0": False, "true": True, "false": False}.get(text.lower())
            if self.kind == "int":
                x = int(text)
                return x if self._in_range(x) else None
            if self.kind == "float":
                x = float(text)
                return x if math.isfinite(x) and self._in_range(x) else None
            if self.kind == "range":
                a, b = (int(p) for p in text.split("-", 1)) if not text.startswith("-") else (None, None)
                return (a, b) if a is not None and a <= b and self._in_range(a) and self._in_range(b) else None
        except (ValueError, TypeError):
            return None
        return None


def url_params(group: str, params: Mapping[str, Param]) -> list[str]:
    """Apply (first run of the session) and write (every run) ``params`` in the URL.

    Call before the widgets are drawn. Returns the URL names whose values were
    applied in this run (empty after the first run).
    """
    applied_groups = st.session_state.setdefault(_APPLIED, set())
    applied = []
    if group not in applied_groups:
        applied_groups.add(group)
        qp = st.query_params
        for name, p in params.items():
            if name in qp:
                val = p.decode(qp[name])
                if val is not None:
                    st.session_state[p.key] = val
                    _store()[p.key] = val
                    applied.append(name)
    st.session_state.setdefault(_RUN, {})[group] = dict(params)
    write_url(params)
    return applied


def _url_changes(params: Mapping[str, Param], sets: dict, drops: set) -> None:
    """Add to ``sets`` (name → text) and ``drops`` (names) what the URL needs for ``params`` to show the current
    values of their widgets."""
    qp = st.query_params
    for name, p in params.items():
        if p.key in st.session_state:
            text = p.encode(st.session_state[p.key])
            if p.decode(text) is None:
                if name in qp:
                    drops.add(name)
            elif qp.get(name) != text:
                sets[name] = text


def _apply_url(sets: dict, drops: set) -> None:
    """The URL changes in as few messages to the browser as Streamlit allows: every new value in one update
    (each assignment of a query parameter is a message of its own: on a shared link's first run that was
    ten or more per student; issue 24)."""
    qp = st.query_params
    for name in drops:
        del qp[name]
    if sets:
        qp.update(sets)


def write_url(params: Mapping[str, Param]) -> None:
    """Write the current value of every parameter whose widget key is set; a value the parameter does not
    allow (e.g. a page's "— (choose the settings yourself)" entry) is left out of the URL."""
    sets, drops = {}, set()
    _url_changes(params, sets, drops)
    _apply_url(sets, drops)


_PARAM_KIND = {"choice": "choice", "flag": "bool", "int": "int", "float": "float", "range": "range",
               "choices": "choices"}


def param(opt: Option, key: str, lo=None, hi=None) -> Param:
    """The URL parameter of a declared option (:class:`analysis.options.Option`) setting widget ``key``
    (``lo``/``hi`` override the declared interval, e.g. the data's sessions for a range)."""
    if opt.kind not in _PARAM_KIND:
        raise ValueError(f"{opt.name} ({opt.kind}) cannot be in a URL.")
    return Param(key, _PARAM_KIND[opt.kind], tuple(opt.shown) if opt.choices else (),
                 opt.lo if lo is None else lo, opt.hi if hi is None else hi)


def url_spec(cls, key, names=None, bounds: Mapping | None = None) -> dict[str, Param]:
    """``{url name: Param}`` for the declared options of ``cls`` that have a URL name (``names``: only these).

    ``key(name)`` gives the widget key of option ``name`` (or a dict name → key); ``bounds`` maps an option
    to its (lo, hi) in this data.
    """
    bounds = bounds or {}
    keyf = key.get if isinstance(key, Mapping) else key
    return {o.url: param(o, keyf(o.name), *bounds.get(o.name, (None, None)))
            for o in declared(cls) if o.url and (names is None or o.name in names)}


#: The teaching page's scenario and seed: the declarations of :class:`analysis.teaching.TeachingParams`, within the
#: narrower ranges its sliders offer (``TEACH_SLIDERS``), plus the page's own two: the missing sessions in percent
#: (the slider's unit; the model takes a share) and presentation mode (a display choice, not a model option).
TEACH_KEYS = {"within_effect": "teach_within", "between_corr": "teach_between", "autoregression": "teach_ar",
              "feedback": "teach_feedback", "n_sessions": "teach_sessions", "n_patients": "teach_patients",
              "seed": "teach_seed", "control_prior": "teach_control"}
TEACH_SLIDERS = {"within_effect": (-0.5, 0.5), "between_corr": (-0.9, 0.9), "autoregression": (0.0, 0.8),
                 "feedback": (-0.5, 0.5), "n_sessions": (3, 20), "n_patients": (20, 1000), "seed": (0, 1_000_000)}
TEACHING = {
    **url_spec(TeachingParams, TEACH_KEYS, bounds=TEACH_SLIDERS),
    "missing": Param("teach_missing", "int", lo=0, hi=50),
    "present": Param("teach_present", "bool"),
}

#: The Convergence page's options (never the study or the data source: those name data).
#: The preset names and option values are the analysis module's own constants.
#: ConvergenceOptions field → its widget key's suffix (``conv_<suffix>``)
CONV_KEYS = {"score_method": "method", "discrepancy": "discrepancy", "transform": "transform", "time": "time",
             "therapist_level": "levels", "early_discrepancy": "early"}
CONVERGENCE = {
    "preset": Param("conv_preset", "choice", tuple(_presets.page_presets("convergence"))),
    **url_spec(ConvergenceOptions, lambda n: f"conv_{CONV_KEYS[n]}"),
}

#: The Ruptures & gains page's main options (criterion, thresholds, raters, methods; never study names).
EVENTS = {
    **url_spec(_evo.RuptureOptions, {"criterion": "ev_crit", "k": "ev_k", "sd": "ev_sd_opt", "detrend": "ev_detrend",
                                     "rater": "ev_rater"}),
    **url_spec(_evo.GainOptions, {"kind": "ev_sg_kind", "better": "ev_sg_better", "convention": "ev_sg_conv"}),
    **url_spec(_evo.ReliableChangeOptions, {"method": "ev_rc_method"}),
    **url_spec(_evo.OutcomeOptions, {"event": "ev_out_event", "measure": "ev_out_measure"}),
    **url_spec(_evo.DropoutOptions, {"predictors": "ev_do_preds"}),
}


#: Few studies (METHODS §6b–§6d): the Bayesian prior scale of τ (Pooled page, 'Few studies') and the
#: one-stage switch (Lagged effects page), declared on :class:`analysis.bayes_meta.SmallKOptions`.
SMALL_K = url_spec(SmallKOptions, {"prior_scale": "fs_prior_scale", "one_stage": "lag_one_stage"})


def page_params() -> dict[str, Param]:
    """widget key → :class:`Param` of every page option a bundle may restore (the URL declarations)."""
    return {p.key: p for group in (TEACHING, CONVERGENCE, EVENTS, SMALL_K) for p in group.values()}


def check_page_options(raw: Mapping) -> tuple[dict, list[str]]:
    """A bundle's page options checked against the widgets' declarations (:func:`page_params`): the
    values allowed, and one message per value dropped, naming it."""
    params = page_params()
    out, notes = {}, []
    for key, value in raw.items():
        p = params.get(key)
        if p is None:
            notes.append(f"Ignored the unknown page option {str(key)[:60]!r}.")
            continue
        v = p.check(value)
        if v is None:
            notes.append(f"Ignored the page option {key} = {str(value)[:60]}: not a value this option allows.")
        else:
            out[key] = v
    return out, notes
