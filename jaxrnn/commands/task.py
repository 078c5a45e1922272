"""``jaxrnn task NAME``: train a cell on a long-memory task and compare it with the baseline.

    jaxrnn task adding --cell lstm --length 200 --steps 3000
    jaxrnn task copying --cell gru --length 100 --out runs/copying_gru.json

Prints the final test metric beside the task's trivial baseline (MSE 1/6 for
the adding problem, 10 ln 8 / (T + 20) for copying, ln 4 for temporal order),
and with ``--out`` writes the whole run as JSON: the configuration, the
learning curves, ‖∂L/∂h_t‖ at every evaluation, the spectra before and
after, and the time taken. ``jaxrnn probe trained --runs ...`` draws it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from jaxrnn import plots, tasks
from jaxrnn.cli import CommandError, _seed, _writable_folder
from jaxrnn.commands import _task_training as training

NAME = "task"
HELP = "train a cell on a long-memory task (adding, copying, temporal_order) against its baseline"

DEFAULT_TARGETS = {"adding": 0.01}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``jaxrnn task`` options."""
    parser.add_argument("name", metavar="NAME", help=f"the task: {', '.join(tasks.TASKS)}")
    parser.add_argument("--cell", default="lstm", help="lstm, gru or elman (default lstm)")
    parser.add_argument("--length", type=int, default=100, help="T, the sequence length / delay")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units (default 128)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    parser.add_argument("--clip", type=float, default=1.0, help="clip the global norm to this")
    parser.add_argument("--seed", type=_seed, default=0)
    parser.add_argument("--eval-every", type=int, default=100, help="steps between evaluations")
    parser.add_argument("--test-size", type=int, default=1000, help="test sequences")
    parser.add_argument("--activation", default="tanh", help="Elman only: tanh, relu or linear")
    parser.add_argument(
        "--init", default=None, help="orthogonal (default), pytorch, or identity (Elman only)"
    )
    parser.add_argument(
        "--target", type=float, default=None, help="report the first step below this test loss"
    )
    parser.add_argument(
        "--time-limit", type=float, default=None, help="stop after this many seconds"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the run as JSON here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def check_common(cell: str, length: int, task: tasks.Task) -> None:
    """Raises ``CommandError`` for an unknown cell or a too short sequence."""
    if cell not in training.CELLS:
        raise CommandError(f"unknown cell {cell!r}; choose one of {', '.join(training.CELLS)}")
    if length < task.min_length:
        raise CommandError(
            f"--length must be at least {task.min_length} for {task.name}, got {length}: the "
            "sequence needs room for what must be remembered"
        )


def config_from_args(args: argparse.Namespace) -> tuple[training.Config, tasks.Task]:
    """Validates the arguments and builds the run's configuration."""
    try:
        task = tasks.get_task(args.name)
    except ValueError as error:
        raise CommandError(str(error)) from None
    check_common(args.cell, args.length, task)
    positive = {"--hidden": args.hidden, "--batch": args.batch, "--steps": args.steps}
    positive.update({"--eval-every": args.eval_every, "--test-size": args.test_size})
    for flag, value in positive.items():
        if value < 1:
            raise CommandError(f"{flag} must be a positive integer, got {value}")
    for flag, value in (("--lr", args.lr), ("--clip", args.clip)):
        if not (math.isfinite(value) and value > 0):
            raise CommandError(f"{flag} must be a finite number > 0, got {value}")
    if args.activation not in training.ACTIVATIONS:
        raise CommandError(
            f"unknown --activation {args.activation!r}; choose {', '.join(training.ACTIVATIONS)}"
        )
    if args.activation != "tanh" and args.cell != "elman":
        raise CommandError(f"--activation is for the elman cell; the {args.cell} has its own.")
    if args.time_limit is not None and not args.time_limit > 0:
        raise CommandError(f"--time-limit must be a number of seconds > 0, got {args.time_limit}.")
    init = args.init or "orthogonal"
    allowed = (
        ("orthogonal", "pytorch", "identity") if args.cell == "elman" else ("orthogonal", "pytorch")
    )
    if init not in allowed:
        raise CommandError(f"--init {init!r} is not available for {args.cell}; choose {allowed}")
    if args.target is not None and not math.isfinite(args.target):
        raise CommandError(f"--target must be a finite test loss, got {args.target}.")
    target = args.target if args.target is not None else DEFAULT_TARGETS.get(task.name)
    config = training.Config(
        task=task.name,
        cell=args.cell,
        length=args.length,
        hidden=args.hidden,
        batch=args.batch,
        steps=args.steps,
        learning_rate=args.lr,
        clip=args.clip,
        seed=args.seed,
        eval_every=args.eval_every,
        test_size=args.test_size,
        activation=args.activation,
        init=init,
        target=target,
        time_limit=args.time_limit,
    )
    return config, task


def summary(result: dict) -> str:
    """The one-line verdict: final metric, baseline, steps and time."""
    config, baseline = result["config"], result["baseline"]
    loss = result["final"]["loss"]
    extras = ", ".join(
        f"{name} {value:.3f}" for name, value in result["final"].items() if name != "loss"
    )
    cell = config["cell"] + (f" ({config['activation']})" if config["cell"] == "elman" else "")
    line = (
        f"{config['task']} T={config['length']} {cell}: test {result['loss_name']} {loss:.4f} "
        f"vs baseline {baseline:.4f} ({100 * loss / baseline:.1f}% of it)"
        + (f", {extras}" if extras else "")
        + f" after {result['steps_done']} steps in {result['seconds']:.0f} s"
    )
    if config["target"] is not None:
        reached = result["first_step_below_target"]
        line += (
            f"; below {config['target']} from step {reached}"
            if reached is not None
            else f"; never below {config['target']}"
        )
    return line


def _check_out(out: Path) -> None:
    """Before training: ``--out`` can be written, and replaces at most an earlier
    run's JSON (never another file of the user's)."""
    if out.is_dir():
        raise CommandError(
            f"--out {out} is a directory; pass a file name, e.g. {out / 'run.json'}."
        )
    if out.exists():
        try:
            earlier = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            earlier = None
        if not training.is_run(earlier):
            raise CommandError(
                f"--out {out} exists and is not the JSON of a `jaxrnn task` run; it would be "
                "replaced. Pass another file, or move that one away."
            )
    _writable_folder(out.parent, "--out", out)


def run(args: argparse.Namespace) -> int:
    """Trains, prints the verdict, writes the JSON."""
    config, task = config_from_args(args)
    if args.out is not None:
        _check_out(args.out)
    result = training.train(config, task, progress=not args.quiet)
    result["cpu_count"] = os.cpu_count()
    print(summary(result))
    if args.out is not None:
        plots.write_json(args.out, result)
        print(f"wrote {args.out}")
    return 0
