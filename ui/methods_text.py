"""docs/METHODS.md as the Methods page shows it to researchers: no code names, test files, issue numbers
or seed numbers (issue 23 #15).

METHODS.md is also the developers' reference, so it keeps its pointers to modules, tests and R reference
scripts; this page leaves them out:

* ``<!-- … -->`` comments (developer notes) are removed;
* a parenthetical's parts (separated by ``;`` or ``,``) that name code — a module or function
  (```analysis.x```, a function of the ``analysis`` package in backticks), a file (``tests/…``, ``*.py``,
  ``*.R``) or an issue number — are removed, and the parentheses with them when nothing is left;
* an option's or choice's code name in backticks (```control_prior_outcome```, ```person_mean```) becomes
  the words the widgets show (its declaration's label);
* "seed 000" … "seed 004" become the papers' names.
"""

from __future__ import annotations

import functools
import re

SEED_NAMES = {"000": "Flückiger et al. (2020)", "001": "the convergence paper", "002": "the review",
              "003": "the ruptures paper", "004": "Shalom et al."}

_CODE = re.compile(r"`analysis[./]|tests/|\b[\w/]+\.(?:py|R)\b|\bissue \d+|`test_\w*`|`LagOptions\.\w+`")


@functools.cache
def _options() -> dict:
    """Every declared option by its field name (the first class that declares a name wins)."""
    from analysis.convergence.options import ConvergenceOptions
    from analysis.events import options as evo
    from analysis.lagged import LagOptions
    from analysis.meta import PoolOptions
    from analysis.options import declared

    out: dict = {}
    for cls in (LagOptions, PoolOptions, ConvergenceOptions, evo.RuptureOptions, evo.GainOptions,
                evo.ReliableChangeOptions, evo.OutcomeOptions):
        for o in declared(cls):
            out.setdefault(o.name, o)
    return out


def _setting(m: re.Match) -> str:
    """`name = "value"` of a declared option → “Label” = “value's label”."""
    o = _options().get(m[1])
    if o is None:
        return m[0]
    return f"“{o.label}” = “{o.labels.get(m[2], m[2])}”"


@functools.cache
def _words() -> dict[str, str]:
    """Code name → reader's words: every declared option's label and every choice's label."""
    out: dict[str, str] = {}
    for o in _options().values():
        out.setdefault(o.name, f"“{o.label}”")
        for value, label in o.labels.items():
            if isinstance(value, str) and "_" in value:
                out.setdefault(value, f"“{label}”")
    return out


@functools.cache
def _functions() -> frozenset[str]:
    """Names of the analysis package's functions and classes (never shown to readers as code)."""
    import importlib
    import inspect
    import pkgutil

    import analysis

    names = set()
    for mod in pkgutil.walk_packages(analysis.__path__, "analysis."):
        if mod.name.endswith("__main__"):
            continue
        try:
            m = importlib.import_module(mod.name)
        except Exception:  # noqa: BLE001 (a module that needs an optional package: its names are not needed)
            continue
        names |= {n for n, v in vars(m).items() if (inspect.isfunction(v) or inspect.isclass(v))
                  and getattr(v, "__module__", "").startswith("analysis") and len(n) > 3}
    return frozenset(names)


def _is_code(part: str) -> bool:
    if _CODE.search(part):
        return True
    ticks = re.findall(r"`([A-Za-z_][\w.]*)(?:\([^`]*\))?`", part)
    return any(t.split(".")[-1] in _functions() for t in ticks)


def _parenthetical(inner: str) -> str | None:
    """The parts of a parenthetical that are for readers, or None when none is left."""
    parts = re.split(r"(;\s+|,\s+)", inner)
    kept: list[str] = []
    for i in range(0, len(parts), 2):
        if not _is_code(parts[i]):
            if kept:
                kept.append(parts[i - 1])
            kept.append(parts[i])
    text = "".join(kept).strip()
    return text or None


def _parentheses(text: str) -> str:
    """Apply :func:`_parenthetical` to every outermost balanced (…) group that names code, paragraph by
    paragraph (a half-open interval such as [0, 1) cannot unbalance the rest of the text)."""
    return "\n\n".join(_paragraph_parentheses(p) for p in text.split("\n\n"))


def _paragraph_parentheses(text: str) -> str:
    out, stack = list(text), []
    spans = []
    for i, ch in enumerate(text):
        if ch == "(":
            stack.append(i)
        elif ch == ")" and stack:
            start = stack.pop()
            # outermost among the closed groups (an opener never closed, as in [0, 1), is ignored)
            spans = [sp for sp in spans if not start < sp[0]] + [(start, i)]
    for start, end in reversed(spans):
        inner = text[start + 1:end]
        if not _is_code(inner):
            continue
        kept = _parenthetical(inner)
        repl = f"({kept})" if kept else ""
        lo = start
        if not kept:  # take the space before the removed parentheses with it
            while lo > 0 and text[lo - 1] == " ":
                lo -= 1
        out[lo:end + 1] = list(repl)
    return "".join(out)


def _seeds(text: str) -> str:
    text = re.sub(r"\b[Ss]eeds (\d{3}) and (\d{3})\b",
                  lambda m: f"{SEED_NAMES.get(m[1], m[1])} and {SEED_NAMES.get(m[2], m[2])}", text)
    return re.sub(r"\b([Ss])eed (\d{3})\b",
                  lambda m: (SEED_NAMES.get(m[2], m[2]) if m[1] == "s" else
                             SEED_NAMES.get(m[2], m[2])[:1].upper() + SEED_NAMES.get(m[2], m[2])[1:]), text)


@functools.lru_cache(maxsize=4)
def for_readers(text: str) -> str:
    """METHODS.md → the Methods page's text (module docstring). Headings lose only seed numbers (no page
    links to those), so links to the others' anchors still work."""
    text = re.sub(r"\s*<!--.*?-->", "", text, flags=re.S)
    lines = text.split("\n")
    heads = {i: line for i, line in enumerate(lines) if line.startswith("#")}
    body = "\n".join("\x00" if i in heads else line for i, line in enumerate(lines))
    body = _parentheses(body)
    words = _words()
    body = re.sub(r"`(\w+) = \"(\w+)\"`", _setting, body)
    body = re.sub(r"`([a-z][a-z0-9]*_[a-z0-9_]+)`", lambda m: words.get(m[1], m[0]), body)
    body = _seeds(body)
    parts = body.split("\x00")
    out = [parts[0]]
    for head, rest in zip((heads[i] for i in sorted(heads)), parts[1:]):
        out += [_seeds(head), rest]
    return "".join(out)
