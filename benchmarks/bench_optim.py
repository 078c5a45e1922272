"""One jitted optimizer update on ~10M float32 parameters: jaxrnn against optax.

    python benchmarks/bench_optim.py [--out results.jsonl] [--repeats 30] [--params 10e6]

For each optimizer the update `params, state = step(params, state, grads)`
(the optimizer's `update` followed by `apply_updates`) is compiled once per
library, warmed up, then timed with `block_until_ready`, the two libraries
interleaved call by call so that drifting clocks or a busy machine hit both
alike. Parameters and state are donated, as in a training loop, so neither
library pays for copying them. The medians go to stdout as a markdown table
with the ratio jaxrnn / optax, beside the ratio of the bytes XLA says each
compiled update moves (noise-free: these updates are memory-bound), and one
JSON object per (optimizer, library) to
`--out` (a new file, or one this script wrote: it is replaced whole, atomically,
and any other file is refused before anything runs). Compile time is reported
apart and never mixed into the timings.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxrnn import optim
from jaxrnn.checkpoint import write_atomically

# The same explicit hyper-parameters for both libraries (their defaults differ).
OPTIMIZERS: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("sgd", dict(learning_rate=0.01)),
    "sgd-momentum": ("sgd", dict(learning_rate=0.01, momentum=0.9)),
    "sgd-nesterov": ("sgd", dict(learning_rate=0.01, momentum=0.9, nesterov=True)),
    "adagrad": ("adagrad", dict(learning_rate=0.01, initial_accumulator_value=0.1, eps=1e-7)),
    "rmsprop": ("rmsprop", dict(learning_rate=1e-3, decay=0.9, eps=1e-8)),
    "rmsprop-centered-momentum": (
        "rmsprop",
        dict(learning_rate=1e-3, decay=0.9, eps=1e-8, centered=True, momentum=0.9),
    ),
    "adadelta": ("adadelta", dict(learning_rate=1.0, rho=0.9, eps=1e-6)),
    "adam": ("adam", dict(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8)),
    "adamw": ("adamw", dict(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4)),
    "adamax": ("adamax", dict(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8)),
    "nadam": ("nadam", dict(learning_rate=1e-3, b1=0.9, b2=0.999, eps=1e-8)),
    "clip+adam": ("clip+adam", dict(learning_rate=1e-3)),
}


def build(lib: Any, name: str, kwargs: dict[str, Any]) -> Any:
    if name == "clip+adam":
        return lib.chain(lib.clip_by_global_norm(1.0), lib.adam(**kwargs))
    return getattr(lib, name)(**kwargs)


def make_params(total: float, key: jax.Array) -> dict[str, jax.Array]:
    """A few large arrays, as an RNN's weights are, about `total` numbers in all."""
    hidden = round((total / 10.0) ** 0.5 / 32) * 32  # 10·H² ≈ total
    shapes = {
        "w_ih": (hidden, 4 * hidden),
        "w_hh": (hidden, 4 * hidden),
        "b": (4 * hidden,),
        "w_out": (hidden, 2 * hidden),
    }
    keys = jax.random.split(key, len(shapes))
    return {
        name: 0.1 * jax.random.normal(k, shape, jnp.float32)
        for k, (name, shape) in zip(keys, shapes.items(), strict=True)
    }


def make_step(tx: Any, apply_updates: Callable) -> Callable:
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return apply_updates(params, updates), state

    return jax.jit(step, donate_argnums=(0, 1))


def _out_problem(out: Path) -> str | None:
    """Why ``--out`` may not be written (``None``: it may): a folder, a file in no
    folder, or a file that holds anything but this script's results, which it replaces."""
    if out.is_dir() or not out.parent.is_dir():
        return f"--out {out}: a file in an existing folder expected"
    if not out.exists():
        return None
    if not out.is_file():
        return f"--out {out} is not a regular file (a pipe or a device); pass a file name"
    try:
        with out.open(encoding="utf-8") as file:
            first = file.readline()
    except (OSError, UnicodeDecodeError):
        first = "(unreadable)"
    if not first.strip():
        return None
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        record = None
    if isinstance(record, dict) and record.get("benchmark") == "optim_update":
        return None
    return (
        f"--out {out} exists and is not this script's results (it begins "
        f"{first.strip()[:40]!r}, not a JSON line of benchmark optim_update); it would be "
        "replaced. Pass another file, or move that one away"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write JSON lines here (a new file, or one this script wrote: replaced)",
    )
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--params", type=float, default=10e6)
    parser.add_argument("--only", nargs="*", default=None, help="optimizer names to run")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error(
            f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}"
        )
    unknown = [name for name in args.only or () if name not in OPTIMIZERS]
    if unknown:  # it ran nothing, and --out was written empty
        parser.error(
            f"--only: unknown optimizer(s) {', '.join(unknown)}; choose from "
            f"{', '.join(OPTIMIZERS)}"
        )
    problem = None if args.out is None else _out_problem(args.out)
    if problem is not None:  # before anything runs, and again before writing
        parser.error(problem)

    key_params, key_grads = jax.random.split(jax.random.key(0))
    params0 = make_params(args.params, key_params)
    grads = jax.tree.map(lambda p: 0.01 * jax.random.normal(key_grads, p.shape, p.dtype), params0)
    n_params = sum(p.size for p in jax.tree.leaves(params0))
    device = jax.devices()[0]
    device_name = f"{device.platform}:{getattr(device, 'device_kind', '')}"
    print(
        f"{n_params / 1e6:.2f}M float32 parameters in {len(params0)} arrays on {device_name}; "
        f"median of {args.repeats} interleaved calls after {args.warmup} warm-up calls\n"
    )

    libraries = {"jaxrnn": (optim, optim.apply_updates), "optax": (optax, optax.apply_updates)}
    records = []
    rows = []
    for label, (name, kwargs) in OPTIMIZERS.items():
        if args.only and label not in args.only:
            continue
        runs = {}
        for lib_name, (lib, apply_updates) in libraries.items():
            tx = build(lib, name, kwargs)
            step = make_step(tx, apply_updates)
            params = jax.tree.map(jnp.copy, params0)
            state = tx.init(params)
            # XLA's own count of the bytes the compiled update moves: a
            # memory-bound update's cost, free of timing noise.
            cost = step.lower(params, state, grads).compile().cost_analysis() or {}
            start = time.perf_counter()
            params, state = jax.block_until_ready(step(params, state, grads))
            compile_s = time.perf_counter() - start
            for _ in range(args.warmup):
                params, state = jax.block_until_ready(step(params, state, grads))
            runs[lib_name] = {"step": step, "params": params, "state": state, "times": []}
            runs[lib_name]["compile_s"] = compile_s
            runs[lib_name]["bytes"] = cost.get("bytes accessed", float("nan"))

        for repeat in range(args.repeats):
            # Interleaved, in alternating order (jaxrnn, optax, optax, jaxrnn, ...),
            # so that neither library always runs right after the other.
            order = list(runs.values()) if repeat % 2 == 0 else list(runs.values())[::-1]
            for run in order:
                start = time.perf_counter()
                run["params"], run["state"] = jax.block_until_ready(
                    run["step"](run["params"], run["state"], grads)
                )
                run["times"].append(time.perf_counter() - start)

        medians = {lib: statistics.median(run["times"]) * 1e3 for lib, run in runs.items()}
        ratio = medians["jaxrnn"] / medians["optax"]
        bytes_ratio = runs["jaxrnn"]["bytes"] / runs["optax"]["bytes"]
        rows.append((label, medians["jaxrnn"], medians["optax"], ratio, bytes_ratio))
        for lib_name, run in runs.items():
            records.append(
                {
                    "benchmark": "optim_update",
                    "optimizer": label,
                    "library": lib_name,
                    "median_ms": round(medians[lib_name], 4),
                    "min_ms": round(min(run["times"]) * 1e3, 4),
                    "compile_s": round(run["compile_s"], 3),
                    "bytes_accessed": run["bytes"],
                    "ratio_to_optax": round(medians[lib_name] / medians["optax"], 4),
                    "repeats": args.repeats,
                    "n_params": n_params,
                    "dtype": "float32",
                    "device": device_name,
                    "jax": jax.__version__,
                    "optax": optax.__version__,
                    "host": platform.node(),
                }
            )

    print("| optimizer | jaxrnn (ms) | optax (ms) | jaxrnn / optax | bytes moved, jaxrnn / optax |")
    print("|---|---:|---:|---:|---:|")
    for label, ours, theirs, ratio, bytes_ratio in rows:
        print(f"| {label} | {ours:.2f} | {theirs:.2f} | {ratio:.3f} | {bytes_ratio:.3f} |")
    if args.out:
        problem = _out_problem(args.out)
        if problem is not None:  # a file put there while the benchmark ran
            parser.error(problem)
        text = "".join(json.dumps(record) + "\n" for record in records)
        write_atomically(args.out, lambda file: file.write(text.encode("utf-8")))
        print(f"\nwrote {len(records)} JSON lines to {args.out}")


if __name__ == "__main__":
    main()
