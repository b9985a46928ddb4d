"""Issue 23 #15: the Methods page is written for researchers: formulas, choices and references, but no code
names (modules, functions, option field names), test files, issue numbers or seed numbers."""

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

from analysis.options import declared
from ui.methods_text import _functions, _words

ROOT = Path(__file__).resolve().parents[1]


def _page_text() -> str:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("app_pages/methods.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return "\n".join(m.value for m in at.markdown)


def test_methods_page_has_no_developer_notes():
    text = _page_text()
    assert "## 8. Alliance convergence (Convergence paper)" in text  # headings (and their anchors) kept
    assert "plim(ρ̂ − ρ)" in text and "Flückiger" in text  # formulas and references stay
    for pattern in (r"tests/", r"\b\w+\.py\b", r"\bmake_\w+\.R\b", r"\bissue \d+", r"\b[Ss]eeds? \d{3}\b",
                    r"`analysis[./]", r"\banalysis\.\w+\.\w+", r"<!--"):
        hits = re.findall(r".{0,40}" + pattern + r".{0,40}", text)
        assert not hits, (pattern, hits[:3])
    ticked = set(re.findall(r"`([A-Za-z_][\w.]*)", text))
    functions = {t for t in ticked if t.split(".")[-1] in _functions()}
    assert not functions, functions
    option_names = {o.name for cls in _option_classes() for o in declared(cls) if "_" in o.name}
    assert not ticked & option_names, ticked & option_names
    assert "“Control for the prior outcome”" in text  # the option by the words its widget shows


def _option_classes():
    from analysis.convergence.options import ConvergenceOptions
    from analysis.events import options as evo
    from analysis.lagged import LagOptions
    from analysis.meta import PoolOptions

    return (LagOptions, PoolOptions, ConvergenceOptions, evo.RuptureOptions, evo.GainOptions,
            evo.ReliableChangeOptions, evo.OutcomeOptions)


def test_words_come_from_the_declarations():
    assert _words()["control_prior_outcome"] == "“Control for the prior outcome”"
