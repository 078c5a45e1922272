"""The ``jaxrnn`` command: one subcommand per module in ``jaxrnn/commands/``.

Each command module defines ``NAME`` (the subcommand), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Errors a user can fix are
raised as ``CommandError`` and printed as one line, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path

from jaxrnn import commands

__all__ = ["CommandError", "main"]


class CommandError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def _writable_folder(folder: Path, flag: str, shown: Path | None = None) -> None:
    """Makes ``folder`` (and its parents) and checks that it can be written, before a
    command's work: an output path that cannot be written fails now, as a
    ``CommandError`` naming ``flag`` and ``shown`` (the path given; ``folder`` by default).

    Examples:
      >>> import tempfile
      >>> from pathlib import Path
      >>> from jaxrnn.cli import CommandError, _writable_folder
      >>> root = Path(tempfile.mkdtemp())
      >>> _writable_folder(root / "runs" / "a", "--out")
      >>> (root / "runs" / "a").is_dir()
      True
      >>> (root / "file").write_text("x")
      1
      >>> try:
      ...     _writable_folder(root / "file" / "sub", "--out")
      ... except CommandError as error:
      ...     print(str(error).replace(str(root), "ROOT"))
      --out ROOT/file/sub: ...
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"cannot write in {folder}")
    except OSError as error:
        raise CommandError(f"{flag} {shown or folder}: {error.strerror or error}.") from None


def _seed(text: str) -> int:
    """An argparse type for ``--seed``: an int in ``[0, 2**32)``, what ``jax.random.key``
    keeps (a larger seed would be cut to its low 32 bits, the same run as another's)."""
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an integer expected, got {text!r}") from None
    if not 0 <= seed < 2**32:
        raise argparse.ArgumentTypeError(f"it must lie in [0, 2**32), got {seed}")
    return seed


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{commands.__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand found in ``jaxrnn.commands``."""
    parser = argparse.ArgumentParser(
        prog="jaxrnn", description="Recurrent neural networks in JAX: train, sample, probe, bench."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _command_modules():
        sub = subparsers.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``jaxrnn COMMAND ...`` and returns its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CommandError as error:
        print(f"jaxrnn {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jaxrnn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # python -m jaxrnn.cli runs this file as __main__, a second copy of the module: the
    # commands raise jaxrnn.cli's CommandError, which only jaxrnn.cli's main catches.
    from jaxrnn.cli import main as imported_main

    sys.exit(imported_main())
