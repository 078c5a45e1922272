"""Every runnable example in a docstring runs and prints what it says (docs that cannot drift)."""

import doctest
import importlib
import pkgutil

import pytest

import jaxrnn

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(jaxrnn.__path__, prefix="jaxrnn.")
    if info.name not in ("jaxrnn.__main__",)
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
