"""Widgets, URL parameters and checks derived from the option declarations (:mod:`analysis.options`).

A page never re-lists an option's label, help, choices or their words: it asks
:func:`draw` for the widget of a declared option and :func:`url_spec` for its
URL parameters. Raw values from a link or a bundle go through :func:`clean`
(:func:`analysis.options.clean`: clean values and one message per dropped
value). Combinations a model cannot fit (``CONSTRAINTS``) disable the widget
with the reason as help (:func:`draw` with ``values=``), or are reported under it.
"""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from analysis.options import Option, clean, declared, impossible
from ui.persist import Param, param, url_spec
from ui.safe import md

__all__ = ["Param", "clean", "draw", "find", "help_text", "impossible", "labels", "option_value", "param",
           "url_spec", "widget_value"]

METHODS_PAGE = "/methods#"
def find(cls, name: str) -> Option:
    """The declaration of option ``name`` of ``cls``."""
    for o in declared(cls):
        if o.name == name:
            return o
    raise KeyError(name)


def labels(cls, name: str) -> dict:
    """``{choice: words}`` of option ``name`` of ``cls``, in the order a widget shows them."""
    o = find(cls, name)
    return {v: o.label_of(v) for v in o.shown}


def help_text(opt: Option, extra: str = "") -> str:
    """The tooltip: the declared help, ``extra`` (e.g. why the widget is disabled) and a link to its METHODS section."""
    text = " ".join(t for t in (opt.help, extra) if t)
    if opt.methods:
        text += f" [Methods §{opt.methods.split('-', 1)[0]}]({METHODS_PAGE}{opt.methods})"
    return text


def widget_value(opt: Option, value, bounds=None):
    """An option value as its widget holds it (lists for multiselects, the full range for ``None``)."""
    if opt.kind == "range":
        return tuple(bounds) if value is None else tuple(value)
    if opt.kind in ("choices", "columns"):
        return list(value)
    return value


def option_value(opt: Option, value, bounds=None):
    """A widget's value as the option takes it (inverse of :func:`widget_value`)."""
    if opt.kind == "range":
        v = (int(value[0]), int(value[1]))
        return None if bounds is not None and v == tuple(bounds) else v
    if opt.kind in ("choices", "columns"):
        return tuple(value)
    return value


def _declared_kw(opt: Option, key: str, options: list) -> dict:
    """The declared interval of a number input, and the declared default of a widget that has no value yet
    (a key already in session state, e.g. seeded by ``ui.persist.widget``, keeps its value)."""
    kw = {}
    if opt.kind in ("int", "float"):
        num = int if opt.kind == "int" else float
        kw.update({k: num(v) for k, v in (("min_value", opt.lo), ("max_value", opt.hi)) if v is not None})
    if key in st.session_state or opt.kind == "range":
        return kw
    if opt.kind == "choice" and opt.default in options:
        kw["index"] = options.index(opt.default)
    elif opt.kind in ("flag", "int", "float"):
        kw["value"] = opt.default
    elif opt.kind in ("choices", "columns"):
        kw["default"] = [v for v in opt.default if v in options]
    return kw


def draw(opt: Option, key: str, container=None, *, cls=None, values: Mapping | None = None, choices=None,
         disabled: bool = False, extra_help: str = "", **kw):
    """Draw the widget of ``opt`` under ``key`` and return the value to analyse.

    Kind → widget: choice → radio or selectbox (``opt.widget``), flag → checkbox,
    choices/columns → multiselect (``choices`` lists the columns), int/float →
    number input (within the declared interval), range → slider (``min_value``/``max_value`` in ``kw``); a
    widget without a value yet starts at the declared default (``kw`` overrides both). With
    ``cls`` and the current ``values``, the choices no model can fit given the
    other options (``analysis.options.impossible``) disable the widget when only
    its default is left, with the reason in its help; an impossible value is
    replaced by the default in the returned value (the widget keeps what the
    user set).
    """
    c = container or st
    bad = impossible(cls, values or {}, opt.name) if cls is not None else {}
    options = list(choices if choices is not None else opt.shown)
    left = [v for v in ((True, False) if opt.kind == "flag" else options) if v not in bad]
    reason = " ".join(dict.fromkeys(bad.values()))
    if bad and left == [opt.default]:
        disabled = True
    label, tip = opt.label, help_text(opt, f"Not available now: {reason}" if bad else "")
    fmt = opt.label_of
    kw = {**_declared_kw(opt, key, options), **kw}
    if opt.kind == "choice":
        draw_ = c.radio if opt.widget == "radio" else c.selectbox
        value = draw_(label, options, format_func=fmt, key=key, help=tip, disabled=disabled, **kw)
    elif opt.kind == "flag":
        value = c.checkbox(label, key=key, help=tip, disabled=disabled, **kw)
    elif opt.kind in ("choices", "columns"):
        value = c.multiselect(label, options, format_func=fmt, key=key, help=tip, disabled=disabled, **kw)
    elif opt.kind == "range":
        value = c.slider(label, key=key, help=tip, disabled=disabled, **kw)
    else:
        value = c.number_input(label, key=key, help=tip, disabled=disabled, **kw)
    if opt.kind in ("choice", "flag") and value in bad:
        if not disabled:
            c.caption(md("{label}: {why} Analysed with {default}.", label=opt.label, why=bad[value],
                         default=str(opt.label_of(opt.default))))
        value = opt.default
    return value
