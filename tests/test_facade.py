"""The front door (issue 26): ``analysis`` exports its public entries, each with a short example in its docstring
that pytest runs as a doctest (``--doctest-modules``, pingouin's style)."""

import doctest
import inspect

import analysis


def test_every_facade_entry_resolves_to_its_module():
    for name in analysis.__all__[1:]:
        obj = getattr(analysis, name)
        assert obj is getattr(__import__(f"analysis.{analysis._ENTRIES[name]}", fromlist=[name]), name), name


def test_every_public_entry_has_a_doctested_example():
    finder = doctest.DocTestFinder(recurse=False)
    missing = []
    for name in analysis.__all__[1:]:
        obj = getattr(analysis, name)
        tests = finder.find(obj, name, module=inspect.getmodule(obj), globs={})
        if not any(t.examples for t in tests):
            missing.append(name)
    assert missing == [], f"add a '>>> ' example to the docstring of: {', '.join(missing)}"
