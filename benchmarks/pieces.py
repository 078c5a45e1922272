"""Where the time of jaxrnn's fused LSTM goes: its matmuls timed apart, beside the
same matmuls in PyTorch, and the whole passes beside PyTorch's.

    python benchmarks/pieces.py            # the lstm workload: T=100, B=32, I=128, H=256
    python benchmarks/pieces.py lstm-512
    python benchmarks/pieces.py lstm --quiet 0.05

Every piece is timed as ``run.py`` times contenders (interleaved rounds, the
median). The matmul pieces, each as XLA runs it (compiled alone) and as
PyTorch runs it (``torch.matmul``, oneDNN/MKL, all cores):

- ``projection``: the input projection ``(T·B, I) x (I, 4H)`` of all steps;
- ``step matmuls``: T dependent ``(B, H) x (H, 4H)`` matmuls, the forward loop's
  (a ``lax.scan`` of them alone; in PyTorch a Python loop);
- ``backward step matmuls``: T dependent ``(B, 4H) x (4H, H)`` matmuls;
- ``weight gradients``: ``dW_ih = Xᵀ dG`` and ``dW_hh = H_prevᵀ dG``, two
  ``(K, T·B) x (T·B, 4H)`` matmuls.

Their sum is the floor of the training pass that XLA's matmuls allow; the
whole passes follow: jaxrnn's forward (nothing stored) and training pass (the
gradient of ``sum(ys)``), and PyTorch's ``nn.LSTM`` with its oneDNN RNN
primitive (its default on a CPU) and without it (``pytorch-aten``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import contenders
import run as runner
from workloads import WORKLOADS, tiny


def _xla_pieces(w, params, xs):
    """The matmul pieces and the whole passes of jaxrnn, as functions of ``(params, xs)``."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    import jaxrnn

    cell = jaxrnn.lstm(w.hidden_size)
    rows = w.time * w.batch
    gates0 = jnp.zeros((w.batch, 4 * w.hidden_size), jnp.float32)
    dgates = jnp.ones((rows, 4 * w.hidden_size), jnp.float32)
    h_prev = jnp.ones((rows, w.hidden_size), jnp.float32)
    over_rows = (((0,), (0,)), ((), ()))

    def projection(p, xs):
        return xs @ p.w_ih

    def step_matmuls(p, xs):
        # The whole (B, 4H) product feeds the next step, so no slice of it can be
        # skipped; its first H columns are the next step's input.
        def body(g, _):
            return g[:, : w.hidden_size] @ p.w_hh, None

        return lax.scan(body, gates0, None, length=w.time)[0]

    def backward_step_matmuls(p, xs):
        w_t = p.w_hh.T

        def body(g, _):
            return jnp.tile(g @ w_t, 4), None

        return lax.scan(body, gates0, None, length=w.time)[0]

    def weight_gradients(p, xs):
        x2 = xs.reshape(rows, -1)
        return lax.dot_general(x2, dgates, over_rows), lax.dot_general(h_prev, dgates, over_rows)

    def forward(p, xs):
        return jaxrnn.unroll(cell, p, xs)[1]

    def train(p, xs):
        return jax.grad(lambda p: jnp.sum(forward(p, xs)))(p)

    return {
        "projection": projection,
        "step matmuls": step_matmuls,
        "backward step matmuls": backward_step_matmuls,
        "weight gradients": weight_gradients,
        "forward": forward,
        "train": train,
    }


def _torch_pieces(w, xs_host):
    """The same matmul pieces in PyTorch (same shapes, float32)."""
    import torch

    rows, four_h = w.time * w.batch, 4 * w.hidden_size
    xs = torch.from_numpy(xs_host.copy()).reshape(rows, -1)
    w_ih = torch.randn(w.input_size, four_h) / w.input_size**0.5
    w_hh = torch.randn(w.hidden_size, four_h) / w.hidden_size**0.5
    w_hh_t = w_hh.T.contiguous()
    dgates, h_prev = torch.ones(rows, four_h), torch.ones(rows, w.hidden_size)

    def step_matmuls():
        g = torch.zeros(w.batch, four_h)
        for _ in range(w.time):
            g = g[:, : w.hidden_size] @ w_hh
        return g

    def backward_step_matmuls():
        g = torch.zeros(w.batch, four_h)
        for _ in range(w.time):
            g = (g @ w_hh_t).repeat(1, 4)
        return g

    return {
        "projection": lambda: xs @ w_ih,
        "step matmuls": step_matmuls,
        "backward step matmuls": backward_step_matmuls,
        "weight gradients": lambda: (xs.T @ dgates, h_prev.T @ dgates),
    }


def main(argv: list[str] | None = None) -> int:
    import jax

    import jaxrnn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", nargs="?", default="lstm", choices=["lstm", "lstm-512"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quiet", type=float, default=None, metavar="SHARE")
    parser.add_argument("--tiny", action="store_true", help="toy sizes, to smoke-test the script")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.quiet is not None and not 0 <= args.quiet < 1:
        parser.error(f"--quiet is a share of the cores in [0, 1), got {args.quiet}")

    w = tiny(WORKLOADS[args.workload]) if args.tiny else WORKLOADS[args.workload]
    data = w.inputs()
    xs = jax.device_put(data["xs"])
    params = jaxrnn.lstm(w.hidden_size).init(jax.random.key(0), w.input_size)

    benches = {}
    for name, fn in _xla_pieces(w, params, xs).items():
        compiled = jax.jit(fn).lower(params, xs).compile()
        benches[f"xla {name}"] = contenders.Bench(
            lambda c=compiled: jax.block_until_ready(c(params, xs))
        )
    torch_ok = contenders.unavailable("pytorch", w, "cpu") is None
    if torch_ok:
        for name, fn in _torch_pieces(w, data["xs"]).items():
            benches[f"torch {name}"] = contenders.Bench(fn)
        for peer in ("pytorch", "pytorch-aten"):
            for pass_ in contenders.PASSES:
                benches[f"{peer} {pass_}"] = contenders.build(peer, w, data, pass_)
    samples, summary = runner.time_interleaved(benches, args.repeats, 2, quiet=args.quiet)
    ms = {name: 1e3 * statistics.median(times) for name, times in samples.items()}

    print(f"{w.name}: {w.sizes}; other processes' share of the cores: {summary['others_cpu']}")
    print("\n| matmuls | XLA ms | PyTorch ms | XLA / PyTorch |\n|---|---:|---:|---:|")
    matmuls = ("projection", "step matmuls", "backward step matmuls", "weight gradients")
    for name in matmuls:
        ours, theirs = ms[f"xla {name}"], ms.get(f"torch {name}")
        cells = ("—", "—") if theirs is None else (f"{theirs:.2f}", f"{ours / theirs:.2f}")
        print(f"| {name} | {ours:.2f} | {cells[0]} | {cells[1]} |")
    floor = sum(ms[f"xla {name}"] for name in matmuls)
    print(f"\nXLA's matmuls of a training pass add up to {floor:.2f} ms.")
    print("\n| pass | jaxrnn ms | PyTorch (oneDNN RNN) ms | PyTorch ATen ms |")
    print("|---|---:|---:|---:|")
    for pass_ in contenders.PASSES:
        ours = ms["xla forward" if pass_ == "forward" else "xla train"]
        peers = [ms.get(f"{peer} {pass_}") for peer in ("pytorch", "pytorch-aten")]
        cells = ["—" if p is None else f"{p:.2f}" for p in peers]
        print(f"| {pass_} | {ours:.2f} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
