"""How many steps per loop iteration suit this backend: jaxrnn's LSTM at several ``unroll``.

    python benchmarks/unroll_sweep.py                       # lstm workload, unroll 1 2 4 8
    python benchmarks/unroll_sweep.py lstm-512 --unroll 1 2 4 --repeats 20

For one workload, jaxrnn's forward and training passes are compiled at each
``unroll`` and timed as ``run.py`` times contenders (interleaved rounds, the
median). ``jaxrnn.fused.default_unroll()`` holds the value chosen per backend
from this measurement; run it on a new backend before changing that table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contenders
import run as runner
from workloads import WORKLOADS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workload", nargs="?", default="lstm", choices=list(WORKLOADS))
    parser.add_argument("--unroll", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error(
            f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats} and {args.warmup}"
        )
    if min(args.unroll) < 1:
        parser.error(f"--unroll takes steps per iteration >= 1, got {min(args.unroll)}")

    import jax

    import jaxrnn

    workload = WORKLOADS[args.workload]
    if workload.train_step:
        parser.error("choose a one-layer workload (lstm, gru, elman, lstm-512, lstm-long)")
    xs = workload.inputs()["xs"]
    make = {"lstm": jaxrnn.lstm, "gru": jaxrnn.gru, "elman": jaxrnn.elman}[workload.cell]
    cell = make(workload.hidden_size)
    params = cell.init(jax.random.key(0), workload.input_size)
    print(
        f"{workload.name} on {jax.default_backend()} ({jax.devices()[0].device_kind}), "
        f"default unroll {jaxrnn.fused.default_unroll()}"
    )
    print("| unroll | pass | median ms | compile s |\n|---:|---|---:|---:|")
    for pass_ in sorted(contenders.PASSES, key=lambda p: p != "train"):  # the one that decides
        benches = {}
        for k in args.unroll:

            def forward(params, xs, k=k):
                return jaxrnn.unroll(cell, params, xs, unroll=k)[1]

            benches[k] = contenders._jax_layer(params, forward, xs, pass_)
        samples, summary = runner.time_interleaved(benches, args.repeats, args.warmup)
        for k, bench in benches.items():
            ms = 1e3 * statistics.median(samples[k])
            print(f"| {k} | {pass_} | {ms:.2f} | {bench.compile_s:.2f} |", flush=True)
        print(f"(other processes' share of the cores: {summary['others_cpu']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
