"""Where the time of jaxrnn's fused LSTM goes: its pieces timed apart, beside PyTorch.

    python benchmarks/pieces.py            # the lstm workload: T=100, B=32, I=128, H=256
    python benchmarks/pieces.py lstm-512

Each piece is compiled alone and timed as ``run.py`` times contenders
(interleaved rounds, the median):

- ``projection``: the input projection ``xs @ w_ih`` of all steps, one matmul;
- ``loop matmuls``: a scan doing only the per-step ``h @ w_hh`` (no gates):
  the floor the forward loop cannot go under with XLA's CPU dot;
- ``forward``: jaxrnn's forward pass (nothing stored);
- ``forward, storing``: the forward pass of training (activations stored);
- ``backward loop matmuls``: a reverse scan doing only the per-step
  ``dG @ w_hhᵀ``;
- ``train``: the whole gradient of ``sum(ys)``;
- ``torch forward``, ``torch train``: PyTorch's ``nn.LSTM`` on the same sizes.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contenders
import run as runner
from workloads import WORKLOADS


def main(argv: list[str] | None = None) -> int:
    import jax
    import jax.numpy as jnp
    from jax import lax

    import jaxrnn
    from jaxrnn import fused

    argv = sys.argv[1:] if argv is None else argv
    w = WORKLOADS[argv[0] if argv else "lstm"]
    data = w.inputs()
    xs = jax.device_put(data["xs"])
    cell = jaxrnn.lstm(w.hidden_size)
    params = cell.init(jax.random.key(0), w.input_size)
    h0 = jnp.zeros((w.batch, w.hidden_size), jnp.float32)
    g0 = jnp.zeros((w.batch, 4 * w.hidden_size), jnp.float32)
    config = fused._Config("lstm", None, False, fused.default_unroll(), False)
    carry = (h0, h0)

    def projection(p, xs):
        return xs @ p.w_ih

    def loop(p, xs):
        def body(h, _):
            return jnp.tanh(h @ p.w_hh)[:, : w.hidden_size], None

        return lax.scan(body, h0, None, length=w.time)[0]

    def backward_loop(p, xs):
        w_t = p.w_hh.T

        def body(d, _):
            return jnp.tile(jnp.tanh(d @ w_t), 4), None

        return lax.scan(body, g0, None, length=w.time)[0]

    def forward(p, xs):
        return jaxrnn.unroll(cell, p, xs)[1]

    def forward_storing(p, xs):
        return fused._forward(config, p, xs, carry, None, keep="activations")

    def train(p, xs):
        return jax.grad(lambda p: jnp.sum(forward(p, xs)))(p)

    pieces = {
        "projection": projection,
        "loop matmuls": loop,
        "forward": forward,
        "forward, storing": forward_storing,
        "backward loop matmuls": backward_loop,
        "train": train,
    }
    benches = {}
    for name, fn in pieces.items():
        compiled = jax.jit(fn).lower(params, xs).compile()
        benches[name] = contenders.Bench(lambda c=compiled: jax.block_until_ready(c(params, xs)))
    if contenders.unavailable("pytorch", w, "cpu") is None:
        for pass_ in contenders.PASSES:
            benches[f"torch {pass_}"] = contenders.build("pytorch", w, data, pass_)
    samples, summary = runner.time_interleaved(benches, 10, 2)
    print(f"{w.name}: {w.sizes}; other processes' share of the cores: {summary['others_cpu']}")
    print("| piece | median ms |\n|---|---:|")
    for name in benches:
        print(f"| {name} | {1e3 * statistics.median(samples[name]):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
