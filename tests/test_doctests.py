"""The examples in kvheal's docstrings run, against the installed package.

Modules are found through the import system (not the repository's folders), so this works the
same for an editable and a regular install: `pytest --doctest-modules` would import the folders
under their repository names (`model.core`), not as `kvheal.model.core`.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

PACKAGES = ("kvheal", "kvheal.model", "kvheal.impl", "kvheal.conformance", "kvheal.docs")
#: modules that must keep at least one example that runs (a guard against a silent empty run)
MUST_RUN = ("kvheal.model", "kvheal.docs", "kvheal.spec_cmd")


def modules_with_examples() -> list[str]:
    """Every module of the packages whose source has a `>>>` example, found without importing
    the modules (only the packages)."""
    names = []
    for package in PACKAGES:
        pkg = importlib.import_module(package)
        candidates = [package] + [
            f"{package}.{m.name}"
            for m in pkgutil.iter_modules(pkg.__path__)
            if not m.ispkg and m.name != "__main__"
        ]
        for name in candidates:
            spec = importlib.util.find_spec(name)
            if spec is None or not spec.origin or not spec.origin.endswith(".py"):
                continue
            with open(spec.origin, encoding="utf-8") as f:
                if ">>>" in f.read():
                    names.append(name)
    return names


MODULES = modules_with_examples()


def test_modules_with_examples_are_found():
    assert set(MUST_RUN) <= set(MODULES), MODULES


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(module, name)
    assert tests, f"{name} has '>>>' in its source but no doctest was found"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed (output above)"
    if name in MUST_RUN:
        assert result.attempted > 0
