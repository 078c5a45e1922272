"""Memory of one training step against the window's length T, with and without ``--remat``.

XLA's compiled memory analysis of ``jaxrnn.train.make_train_step`` (the step
``jaxrnn train`` runs) for a character LSTM, hidden 256, batch 8: the temporary
bytes (activations kept for the backward pass and scratch), which is what grows
with T. Compiling measures it without running anything, so it is exact and
quick on any machine; ``--train-steps N`` then also runs N steps at the longest
T with remat, to show that it trains.

    python benchmarks/memory_vs_length.py                      # T = 1k, 2k, 5k, 10k
    python benchmarks/memory_vs_length.py --lengths 1000 10000 --train-steps 2
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import train


def step_memory(model, config, length: int, remat: bool) -> dict[str, float]:
    """The compiled step's memory for windows of ``length`` characters, in MiB."""
    config = train.TrainConfig(batch_size=config.batch_size, seq_len=length, remat=remat)
    optimizer, schedule = train.make_optimizer(config)
    state = jax.eval_shape(
        lambda key: train.init_state(model, optimizer, config.batch_size, key), jax.random.key(0)
    )
    ids = jax.ShapeDtypeStruct((length, config.batch_size), jnp.int32)
    step = train.make_train_step(model, optimizer, schedule, remat=remat)
    started = time.perf_counter()
    compiled = step.lower(state, ids, ids).compile()
    stats = compiled.memory_analysis()
    mib = 1 / 2**20
    return {
        "T": length,
        "remat": remat,
        "temp_mib": round(stats.temp_size_in_bytes * mib, 2),
        "argument_mib": round(stats.argument_size_in_bytes * mib, 2),
        "output_mib": round(stats.output_size_in_bytes * mib, 2),
        "compile_s": round(time.perf_counter() - started, 1),
    }


def run_steps(model, batch: int, length: int, steps: int) -> list[float]:
    """Runs ``steps`` rematerialised steps on random ids; returns their losses."""
    config = train.TrainConfig(batch_size=batch, seq_len=length, remat=True, warmup_steps=0)
    optimizer, schedule = train.make_optimizer(config)
    state = train.init_state(model, optimizer, batch, jax.random.key(0))
    step = train.make_train_step(model, optimizer, schedule, remat=True)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(steps):
        ids = rng.integers(0, model.config.vocab_size, (length + 1, batch), dtype=np.int32)
        state, metrics = step(state, ids[:-1], ids[1:])
        losses.append(float(metrics.loss))
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=96)
    parser.add_argument("--train-steps", type=int, default=0)
    args = parser.parse_args()

    model = train.CharModel(train.ModelConfig(vocab_size=args.vocab, hidden_size=args.hidden))
    config = train.TrainConfig(batch_size=args.batch)
    rows = []
    for length in args.lengths:
        plain = step_memory(model, config, length, remat=False)
        remat = step_memory(model, config, length, remat=True)
        rows.append((length, plain, remat))
        print(json.dumps(plain))
        print(json.dumps(remat))
    print()
    print(
        f"LSTM, hidden {args.hidden}, batch {args.batch}, {args.vocab} characters, "
        f"{jax.devices()[0].platform}"
    )
    print("| T | temp, plain (MiB) | temp, --remat (MiB) | ratio | chunk |")
    print("|---:|---:|---:|---:|---:|")
    for length, plain, remat in rows:
        ratio = plain["temp_mib"] / max(remat["temp_mib"], 1e-9)
        chunk = train.remat_chunk(length)
        print(
            f"| {length:,} | {plain['temp_mib']:,.1f} | {remat['temp_mib']:,.1f} | "
            f"{ratio:.0f}× | {chunk} |"
        )
    if args.train_steps:
        length = max(args.lengths)
        started = time.perf_counter()
        losses = run_steps(model, args.batch, length, args.train_steps)
        seconds = time.perf_counter() - started
        print(
            f"\n{args.train_steps} rematerialised steps at T={length:,}: losses "
            f"{', '.join(f'{x:.4f}' for x in losses)} ({seconds:.1f} s with compilation)"
        )


if __name__ == "__main__":
    main()
