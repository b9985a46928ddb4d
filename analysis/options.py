"""Options declared once, as data (scikit-learn's ``_param_validation`` style).

Each option of a method is one :class:`Option`: its kind, allowed values or
interval, default, label, help text, per-choice labels, URL key and METHODS
section. A method's options class is a frozen dataclass deriving from
:class:`Declared` whose fields are made with :func:`option` (or
:meth:`Option.field` to reuse a declaration); cross-option rules are
:class:`Constraint` s in its ``CONSTRAINTS``. From these declarations, and
nowhere else, come:

* the validation of every instance and its error messages (:meth:`Option.check`);
* the cleaning of raw values from a URL or a bundle (:func:`clean`: clean values
  and one message per dropped value);
* the widgets, URL parameters and cache keys of the app (``ui/declared.py``);
* the script arguments (:func:`script_args`).

Kinds: ``"choice"`` (one of ``choices``), ``"flag"`` (True/False), ``"int"`` /
``"float"`` (within ``lo``–``hi``), ``"range"`` (``None`` or ``(first, last)``
whole numbers, ``lo`` ≤ first ≤ last), ``"choices"`` (a non-empty subset of
``choices`` without repeats, returned in the declared order) and ``"columns"`` (column
names of the user's data: never in a URL).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo(Declared):
...     colour: str = option("choice", "red", choices=("red", "blue"), label="Colour")
...     n: int = option("int", 3, lo=1, hi=9, label="Count")
>>> Demo(n=4)
Demo(colour='red', n=4)
>>> Demo(colour="green")
Traceback (most recent call last):
...
ValueError: colour must be one of 'red', 'blue'; got 'green'.
>>> clean(Demo, {"colour": "blue", "n": "12"}, text=True)
({'colour': 'blue'}, ["Ignored n='12': n must be a whole number from 1 to 9; got 12."])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np

__all__ = ["KINDS", "Constraint", "Declared", "Option", "clean", "declared", "impossible", "option", "script_args"]

KINDS = ("choice", "flag", "int", "float", "range", "choices", "columns")


def _is_int(v) -> bool:
    return not isinstance(v, bool | np.bool_) and isinstance(v, int | np.integer | float | np.floating) \
        and math.isfinite(float(v)) and float(v).is_integer()


def _listing(values) -> str:
    return ", ".join(map(repr, values))


@dataclass(frozen=True)
class Option:
    """One option, declared once. ``name`` is filled from the dataclass field that holds it.

    ``labels`` maps choices to the words shown for them (widgets show the choices
    in ``labels`` order when every choice has a label, else in ``choices``
    order); ``help`` is the tooltip; ``methods`` the docs/METHODS.md anchor it
    follows (e.g. ``"3-centering-of-a-time-varying-variable-x"``); ``url`` the
    name in a shareable link (``None``: not in links); ``case`` ``"upper"`` /
    ``"lower"`` folds text choices before checking; ``widget`` a hint
    (``"radio"``, ``"select"``); ``reserved`` / ``reserved_prefix`` names a
    ``columns`` option must not take, with ``reserved_reason``.

    >>> o = Option("int", 1, "Lag", lo=1, hi=3, name="lag")
    >>> o.check(2.0), o.format(2), o.parse("3")
    (2, '2', 3)
    >>> o.check(5)
    Traceback (most recent call last):
    ...
    ValueError: lag must be a whole number from 1 to 3; got 5.
    """

    kind: str
    default: Any
    label: str
    help: str = ""
    choices: tuple = ()
    labels: Mapping = field(default_factory=dict)
    lo: float | None = None
    hi: float | None = None
    url: str | None = None
    methods: str | None = None
    case: str | None = None
    widget: str | None = None
    reserved: tuple = ()
    reserved_prefix: str | None = None
    reserved_reason: str = "it is a reserved name"
    r: bool | tuple = True
    name: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Option kind must be one of {_listing(KINDS)}; got {self.kind!r}.")
        object.__setattr__(self, "labels", dict(self.labels))
        # fast path of check(): exact str/int choices (a bool never matches an int choice)
        object.__setattr__(self, "_exact", frozenset((type(c), c) for c in self.choices if type(c) in (str, int)))

    def __hash__(self):
        return hash((self.name, self.kind, self.choices, self.default))

    def field(self, **changes):
        """A dataclass field holding this option (``changes``: e.g. another default or label)."""
        opt = replace(self, **changes) if changes else self
        return field(default=opt.default, metadata={"option": opt})

    # ------------------------------------------------------------------ values
    @property
    def shown(self) -> tuple:
        """The choices in the order a widget shows them."""
        if self.labels and set(self.labels) == set(self.choices):
            return tuple(self.labels)
        return tuple(self.choices)

    @property
    def values(self) -> tuple:
        """Every allowed value of a choice or flag (empty for other kinds)."""
        return (True, False) if self.kind == "flag" else tuple(self.choices) if self.kind == "choice" else ()

    @property
    def r_values(self) -> tuple:
        """The values the R script reproduces (empty: every value, for kinds without a list of values)."""
        return self.r if isinstance(self.r, tuple) else self.values if self.r else ()

    def label_of(self, value) -> str:
        """Words for one value (its per-choice label, else the value itself)."""
        return str(self.labels.get(value, value))

    def _interval(self) -> str:
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None:
            return f"from {lo:g} to {hi:g}"
        if lo is not None:
            return f"≥ {lo:g}"
        return f"≤ {hi:g}" if hi is not None else ""

    def _inside(self, x: float) -> bool:
        return (self.lo is None or x >= self.lo) and (self.hi is None or x <= self.hi)

    def _choice(self, v):
        if (type(v), v) in self._exact:
            return True, v
        if self.case and isinstance(v, str):
            v = v.upper() if self.case == "upper" else v.lower()
        for c in self.choices:
            if isinstance(v, bool | np.bool_) != isinstance(c, bool):
                continue
            try:
                if v == c and (isinstance(c, str) == isinstance(v, str)):
                    return True, c
            except (TypeError, ValueError):
                continue
        return False, v

    def check(self, value):
        """``value`` checked and normalised (tuples, plain ints and bools); ``ValueError`` naming the option else."""
        k = self.kind
        if k == "choice" and (type(value), value) in self._exact:
            return value
        if k == "flag" and type(value) is bool:
            return value
        n = self.name
        if k == "choice":
            ok, c = self._choice(value)
            if not ok:
                raise ValueError(f"{n} must be one of {_listing(self.choices)}; got {value!r}.")
            return c
        if k == "flag":
            if not isinstance(value, bool | np.bool_):
                raise ValueError(f"{n} must be True or False; got {value!r}.")
            return bool(value)
        if k == "int":
            if not _is_int(value) or not self._inside(float(value)):
                raise ValueError(f"{n} must be a whole number {self._interval()}; got {value!r}.".replace("  ", " "))
            return int(value)
        if k == "float":
            ok = not isinstance(value, bool | np.bool_) and isinstance(value, int | float | np.integer | np.floating)
            if not ok or not math.isfinite(float(value)) or not self._inside(float(value)):
                raise ValueError(f"{n} must be a number {self._interval()}; got {value!r}.".replace("  ", " "))
            return float(value)
        if k == "range":
            return self._check_range(value)
        return self._check_many(value)

    def _check_range(self, value):
        if value is None:
            return None
        lo = 0 if self.lo is None else self.lo
        try:
            s = tuple(value)
        except TypeError:
            s = ()
        if len(s) != 2 or not all(_is_int(v) for v in s) or s[0] > s[1] or not (self._inside(s[0]) and s[0] >= lo):
            raise ValueError(f"{self.name} must be None or (first, last): two whole numbers ≥ {lo:g} with "
                             f"first ≤ last; got {value!r}.")
        return int(s[0]), int(s[1])

    def _check_many(self, value):
        n = self.name
        vals = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, Iterable) else None
        if vals is None:
            raise ValueError(f"{n} must be a list; got {value!r}.")
        if self.kind == "choices":
            if not vals:
                raise ValueError(f"{n} must name at least one of {_listing(self.choices)}.")
            out = []
            for v in vals:
                ok, c = self._choice(v)
                if not ok:
                    raise ValueError(f"each of {n} must be one of {_listing(self.choices)}; got {v!r}.")
                out.append(c)
            if len(set(out)) != len(out):
                raise ValueError(f"{n} must not repeat a value.")
            return tuple(c for c in self.choices if c in out)  # a subset, in the declared order
        else:  # columns
            for c in vals:
                if not isinstance(c, str) or not c.strip():
                    raise ValueError(f"{n} must be column names (text); got {c!r}.")
                if c in self.reserved or (self.reserved_prefix and c.startswith(self.reserved_prefix)):
                    raise ValueError(f"{c!r} cannot be in {n}: {self.reserved_reason}.")
        if len(set(vals)) != len(vals):
            raise ValueError(f"{n} must not repeat a value.")
        return vals

    def parse(self, text: str):
        """The value written as ``text`` (a URL parameter), or ``ValueError``; :meth:`format` is its inverse."""
        t = str(text).strip()
        k = self.kind
        if k == "choice":
            c = next((c for c in self.choices if str(c) == t or (self.case and str(c).lower() == t.lower())), t)
            return c
        if k == "flag":
            out = {"1": True, "0": False, "true": True, "false": False}.get(t.lower())
            if out is None:
                raise ValueError(f"{self.name} must be 1 or 0; got {t!r}.")
            return out
        if k in ("int", "float"):
            try:
                x = float(t)
            except ValueError:
                raise ValueError(f"{self.name} must be a number; got {t!r}.") from None
            return int(x) if k == "int" and x.is_integer() else x
        if k == "range":
            a, _, b = t.partition("-")
            try:
                return int(a), int(b)
            except ValueError:
                raise ValueError(f"{self.name} must be two whole numbers 'first-last'; got {t!r}.") from None
        parts = [p for p in t.split(",") if p]
        return tuple(next((c for c in self.choices if str(c) == p), p) for p in parts)

    def format(self, value) -> str:
        """``value`` as text for a URL (the inverse of :meth:`parse`)."""
        if self.kind == "flag":
            return "1" if value else "0"
        if self.kind == "range":
            return "" if value is None else f"{int(value[0])}-{int(value[1])}"
        if self.kind in ("choices", "columns"):
            return ",".join(str(v) for v in value)
        if self.kind == "float":
            return f"{float(value):g}"
        return str(value)


def option(kind: str, default, *, label: str, **declaration):
    """A dataclass field declaring one option (the arguments of :class:`Option`)."""
    return Option(kind, default, label, **declaration).field()


@dataclass(frozen=True)
class Constraint:
    """A combination the model cannot fit: ``when(values)`` is true for it; ``reason`` says why and what to do.

    ``names``: the options involved, the first being the one a cleaner drops (back to its default) to resolve it.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Fit(Declared):
    ...     estimator: str = option("choice", "ols", choices=("ols", "mixed"), label="Estimator")
    ...     slopes: bool = option("flag", False, label="Random slopes")
    ...     CONSTRAINTS = (Constraint(("slopes", "estimator"), lambda o: o.slopes and o.estimator == "ols",
    ...                               "Random slopes need estimator='mixed'."),)
    >>> Fit(slopes=True, estimator="mixed").slopes
    True
    >>> Fit(slopes=True)
    Traceback (most recent call last):
    ...
    ValueError: Random slopes need estimator='mixed'.
    """

    names: tuple
    when: Callable[[Any], bool]
    reason: str

    def __hash__(self):
        return hash((self.names, self.reason))


_DECLARED: dict[type, tuple[Option, ...]] = {}


def declared(cls) -> tuple[Option, ...]:
    """The :class:`Option` of every field of ``cls`` (an options class or instance), in field order."""
    cls = cls if isinstance(cls, type) else type(cls)
    if cls not in _DECLARED:
        _DECLARED[cls] = tuple(replace(f.metadata["option"], name=f.name) for f in fields(cls)
                               if "option" in f.metadata)
    return _DECLARED[cls]


class Declared:
    """Base of a frozen options dataclass whose fields are :func:`option` s.

    ``__post_init__`` checks and normalises every field against its declaration,
    calls :meth:`_check` (a hook for rules that are not data), then raises the
    reason of the first :class:`Constraint` in ``CONSTRAINTS`` that holds.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Window(Declared):
    ...     lag: int = option("int", 1, lo=1, hi=3, label="Lag")
    >>> Window(lag=2).replace(lag=3).to_dict()
    {'lag': 3}
    """

    CONSTRAINTS: ClassVar[tuple[Constraint, ...]] = ()

    def __post_init__(self):
        for opt in declared(type(self)):
            value = getattr(self, opt.name)
            checked = opt.check(value)
            if checked is not value:
                object.__setattr__(self, opt.name, checked)
        self._check()
        for c in self.CONSTRAINTS:
            if c.when(self):
                raise ValueError(c.reason)

    def _check(self) -> None:
        return None

    def replace(self, **changes):
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _defaults(cls) -> dict:
    return {o.name: o.default for o in declared(cls)}


def clean(cls, raw: Mapping, text: bool = False) -> tuple[dict, list[str]]:
    """Check raw values (from a URL, ``text=True``, or a bundle's JSON) against ``cls``'s declarations.

    Returns the values that are valid — alone and, with the rest given, for
    every :class:`Constraint` — and one message per value dropped (unknown
    names, values outside the declaration, impossible combinations: the
    constraint's first option is dropped). Never raises on bad values.

    >>> from analysis.lagged import LagOptions
    >>> clean(LagOptions, {"lag": "2", "centering": "sideways"}, text=True)
    ({'lag': 2}, ["Ignored centering='sideways': centering must be one of 'none', 'grand_mean', 'person_mean', 'detrended'; got 'sideways'."])
    """
    opts = {o.name: o for o in declared(cls)}
    url = {o.url: o for o in opts.values() if o.url}
    out, msgs = {}, []
    for key, value in raw.items():
        opt = opts.get(key) or (url.get(key) if text else None)
        if opt is None:
            msgs.append(f"Ignored the unknown option {key!r}.")
            continue
        if text and opt.kind == "columns":
            msgs.append(f"Ignored {key}: column names are not read from a link.")
            continue
        try:
            out[opt.name] = opt.check(opt.parse(value) if text else value)
        except (ValueError, TypeError) as exc:
            msgs.append(f"Ignored {key}={value!r}: {exc}")
    for c in getattr(cls, "CONSTRAINTS", ()):
        if c.when(SimpleNamespace(**{**_defaults(cls), **out})):
            given = [n for n in c.names if n in out]
            if given:
                drop = given[0]
                msgs.append(f"Ignored {drop}={out.pop(drop)!r}: {c.reason}")
    return out, msgs


def impossible(cls, values: Mapping, name: str) -> dict:
    """``{choice: reason}`` for each value of option ``name`` that no model can fit given the other ``values``
    (a flag's choices are True/False): what a widget disables, with the reason as its help.

    Only constraints whose first option is ``name`` count: the first option of a
    :class:`Constraint` is the one that depends on the others (a time trend on the
    estimator, not the estimator on the time trend)."""
    opt = {o.name: o for o in declared(cls)}[name]
    cands = (True, False) if opt.kind == "flag" else opt.choices
    base = {**_defaults(cls), **values}
    out = {}
    for v in cands:
        ns = SimpleNamespace(**{**base, name: v})
        for c in getattr(cls, "CONSTRAINTS", ()):
            if c.names[0] == name and c.when(ns):
                out[v] = c.reason
                break
    return out


def script_args(options: Declared) -> dict:
    """Every declared option of ``options`` as ``{name: value}`` for a reproduction script (plain values)."""
    return {o.name: getattr(options, o.name) for o in declared(options)}
