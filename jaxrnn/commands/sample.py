"""``jaxrnn sample``: write text with a character model saved by ``jaxrnn train``."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import jax

from jaxrnn import checkpoint
from jaxrnn import train as training
from jaxrnn.cli import CommandError, _seed

NAME = "sample"
HELP = "write text with a character model trained by `jaxrnn train`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``jaxrnn sample``'s flags."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="PATH",
        help="a run directory from `jaxrnn train --out` (its best.npz, else checkpoint.npz) "
        "or a .npz file",
    )
    parser.add_argument(
        "--prime",
        metavar="TEXT",
        help="the text to continue; \\n is a newline (default: a newline)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        metavar="T",
        help="below 1 more conservative, above 1 more adventurous, 0 greedy (default: 0.8)",
    )
    parser.add_argument(
        "--length", type=int, default=500, metavar="N", help="characters to write (default: 500)"
    )
    parser.add_argument("--seed", type=_seed, default=0, help="seed of the draws (default: 0)")


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory's best checkpoint (else its latest), or the file itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.npz", "checkpoint.npz"):
            if (path / name).is_file():
                return path / name
        raise CommandError(f"{path} holds no checkpoint (best.npz or checkpoint.npz); train first.")
    if not path.exists():
        raise CommandError(
            f"{path}: no such checkpoint; pass the --out directory of `jaxrnn train`."
        )
    return path


def run(args: argparse.Namespace) -> int:
    """Prints the prime and the ``--length`` characters the model writes after it, as drawn."""
    if args.length < 1:
        raise CommandError(f"--length must be at least 1, got {args.length}.")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise CommandError(f"--temperature must be a finite number >= 0, got {args.temperature}.")
    if args.prime == "":
        raise CommandError("--prime must have at least one character.")
    path = resolve_checkpoint(args.checkpoint)
    try:
        model, params, vocab, _ = training.load_model(path)
    except checkpoint.CheckpointError as error:
        raise CommandError(str(error)) from None
    if args.prime is None:  # a newline starts a new paragraph, if the text had any
        prime = "\n" if "\n" in vocab.chars else vocab.chars[0]
    else:
        prime = args.prime.replace("\\n", "\n")
    missing = vocab.missing(prime)
    if missing:
        raise CommandError(
            f"the prime has characters the model never saw: {''.join(missing)!r}; its "
            f"vocabulary has {vocab.size} characters, e.g. {''.join(vocab.chars[:40])!r}."
        )
    pieces = training.sample_pieces(
        model, params, vocab, prime, args.length, jax.random.key(args.seed), args.temperature
    )
    print(prime, end="", flush=True)
    for piece in pieces:  # printed as drawn: a long sample shows from its first piece
        print(piece, end="", flush=True)
    print()
    return 0
