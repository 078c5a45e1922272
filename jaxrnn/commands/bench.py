"""``jaxrnn bench``: the benchmark suite of ``benchmarks/run.py``, from the jaxrnn command.

The suite compares jaxrnn with PyTorch, flax and equinox (and cuDNN on a GPU);
those libraries are development dependencies, so the suite lives in the
source checkout (``benchmarks/``, beside the ``jaxrnn`` package) rather than in
the package. This command finds it there and runs it in-process.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from jaxrnn.cli import CommandError

NAME = "bench"
HELP = "time jaxrnn's recurrent layers against PyTorch, flax, equinox and cuDNN"

_RUNNER = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def _runner() -> ModuleType | None:
    """``benchmarks/run.py`` of the checkout this jaxrnn was installed from, if there is one."""
    if "jaxrnn_bench_runner" in sys.modules:
        return sys.modules["jaxrnn_bench_runner"]
    if not _RUNNER.is_file():
        return None
    spec = importlib.util.spec_from_file_location("jaxrnn_bench_runner", _RUNNER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)  # the runner imports its libraries only when it runs
    return module


def add_arguments(parser: argparse.ArgumentParser) -> None:
    runner = _runner()
    if runner is None:
        parser.add_argument("arguments", nargs="*", help=argparse.SUPPRESS)
        return
    runner.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    runner = _runner()
    if runner is None:
        raise CommandError(
            f"the benchmark suite is not here ({_RUNNER} is missing): it lives in jaxrnn's "
            "source checkout. Clone the repository and run `make bench` there, or install it "
            "with `pip install -e '.[dev]'` and run `jaxrnn bench` again."
        )
    return runner.run(args)
