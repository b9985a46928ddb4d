"""Escape at the sink (issue 25): dynamic text reaches Markdown only through ``ui.safe``.

A lint over every page and ``ui`` module: the text argument of each Streamlit element that renders
Markdown (markdown, caption, write, alerts, headers, expander/tab labels, toasts, metrics) may hold a
literal, a call of ``md``/``esc`` (``ui.safe``), or an f-string whose interpolations are literals,
numbers, module constants (``DIRECTIONS[d]``) or calls of ``esc``/``md``/``fmt.*``/``len``. Anything
else — above all a result's ``summary()``/``describe()`` sentence, which quotes study and patient
names — must go through ``md(template, name=value)``. The AppTest walks (tests/test_hostile_names.py)
check the rendered pages; this test catches the call site before a data set reaches it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ui.safe import Markup, esc, md

ROOT = Path(__file__).resolve().parents[1]
SINKS = {"markdown", "caption", "write", "info", "warning", "error", "success", "header", "title", "subheader",
         "expander", "toast", "metric", "popover", "status"}
# sentence builders whose inputs are numbers and option constants (no names from data)
SAFE_CALLS = {"esc", "md", "Markup", "len", "int", "round", "abs", "min", "max", "sum", "count_sentence",
              "lagged_effect_sentence"}
SAFE_MODULES = {"fmt", "tg"}  # analysis.formatting (numbers) and analysis.teaching (simulations only)
TEXT_METHODS = {"lower", "upper", "capitalize", "strip"}


def _callee(node: ast.Call) -> tuple[str, str]:
    f = node.func
    if isinstance(f, ast.Name):
        return "", f.id
    if isinstance(f, ast.Attribute):
        base = f.value.id if isinstance(f.value, ast.Name) else ""
        return base, f.attr
    return "", ""


def _numeric_spec(v: ast.FormattedValue) -> bool:
    """``{x:.2f}``, ``{n:,}``, ``{x:g}``: a number format, which raises for text."""
    spec = v.format_spec
    if not isinstance(spec, ast.JoinedStr) or not all(isinstance(p, ast.Constant) for p in spec.values):
        return False
    text = "".join(p.value for p in spec.values)
    return bool(text) and (text[-1] in "fFgGeEd%n" or text.endswith(","))


def _safe(node: ast.AST) -> bool:
    """True when ``node`` cannot carry user text into Markdown unescaped."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Call):
        base, name = _callee(node)
        if name in TEXT_METHODS and isinstance(node.func, ast.Attribute):
            return _safe(node.func.value)
        return name in SAFE_CALLS or base in SAFE_MODULES or (name == "join" and all(map(_safe, node.args)))
    if isinstance(node, ast.JoinedStr):
        return all(_safe(v.value) or _numeric_spec(v) for v in node.values if isinstance(v, ast.FormattedValue))
    if isinstance(node, ast.BinOp):
        return _safe(node.left) and _safe(node.right)
    if isinstance(node, ast.IfExp):
        return _safe(node.body) and _safe(node.orelse)
    if isinstance(node, ast.Subscript):  # DIRECTIONS[d], LINKS["stage2"]: module constants written in code
        return isinstance(node.value, ast.Name) and node.value.id.isupper()
    if isinstance(node, ast.Name) and node.id.isupper() or isinstance(node, ast.Attribute) and node.attr.isupper():  # a module constant (METHODS, DATA_NAME)
        return True
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Subscript) and _safe(node.value):
        return True  # CONV_PRESETS[name].title: a field of a constant table
    if isinstance(node, (ast.Name, ast.Attribute)):
        # a variable: safe only when its name says it holds a count or a number
        name = node.id if isinstance(node, ast.Name) else node.attr
        return name.startswith("n_") or name in {"k", "n", "lag", "n_rep"}
    if isinstance(node, (ast.GeneratorExp, ast.ListComp)):
        return _safe(node.elt)
    return False


def sink_offences(source: str, where: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SINKS):
            continue
        base = node.func.value
        if not (isinstance(base, ast.Name) and base.id in {"st", "col", "c", "left", "right", "box", "tab"}):
            continue
        args = node.args[:1] + [k.value for k in node.keywords if k.arg in {"body", "label", "help", "value"}]
        for a in args:
            if not _safe(a):
                out.append(f"{where}:{node.lineno}: {ast.unparse(a)[:120]}")
    return out


def test_every_markdown_sink_takes_escaped_text():
    offences = []
    for path in sorted([*ROOT.glob("app_pages/*.py"), *ROOT.glob("ui/*.py"), ROOT / "app.py"]):
        offences += sink_offences(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not offences, "use ui.safe.md(template, field=value) for:\n" + "\n".join(offences)


@pytest.mark.parametrize("src, ok", [
    ('st.markdown(f"**{DIRECTIONS[d]}.** {m.summary()}")', False),  # the issue-25 leak (Pooled, k = 1)
    ('st.markdown(md("**{d}.** {s}", d=DIRECTIONS[d], s=m.summary()))', True),
    ('st.write(pw.summary())', False),
    ('st.info(f"k = {m.k}: {fmt.num(x)}")', True),
    ('st.caption("literal " + name)', False),
    ('st.expander(f"Notes ({len(notes)})")', True),
])
def test_lint_tells_escaped_from_raw(src, ok):
    assert (sink_offences(src, "x") == []) is ok


def test_md_escapes_every_field_and_keeps_the_template():
    out = md("**{d}.** {s} ({n:,} rows) {inner}", d="A*b", s="![x](http://h/b.png) www.evil.org <img>", n=12345,
             inner=md("_{x}_", x="[y](z)"))
    assert isinstance(out, Markup)
    assert out.startswith("**A\\*b.** !\\[x\\](http:\u2060//h/b.png) ww\u2060w.evil.org \\<img\\> (12,345 rows)")
    assert out.endswith("_\\[y\\](z)_")  # Markup from md() is inserted as it is, not escaped twice


@pytest.mark.parametrize("name", ["www.evil.org", "Clinic WWW.evil.org", "wwww.x.io", "see www.a.b/c", "www.www.x.y"])
def test_www_names_cannot_autolink(name):
    """Issue 25 #9: GFM links ``www.`` + domain (mdast-util-gfm-autolink-literal: /www(?=\\.)/i, after
    escapes are resolved), so a joiner after the dot left "www." itself a link; one inside "www" breaks it."""
    import re

    s = esc(name)
    assert not re.search(r"(?i)www\.", s), s
    assert s.replace("\u2060", "") == name  # nothing visible changed
