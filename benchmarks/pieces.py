"""Where the time of jaxrnn's fused LSTM goes: its matmuls timed apart, beside the
same matmuls in PyTorch, and the whole passes beside PyTorch's.

    python benchmarks/pieces.py            # the lstm workload: T=100, B=32, I=128, H=256
    python benchmarks/pieces.py lstm-512
    python benchmarks/pieces.py lstm --quiet 0.05

Every piece is timed as ``run.py`` times contenders (interleaved rounds, the
median). The matmul pieces, each compiled alone, with XLA's own dot and with
``jaxrnn.blas``'s (what jaxrnn uses on a CPU when it is installed: oneMKL, and on
CPUs not Intel's oneDNN for float32; the first line printed says which),
and as PyTorch runs them (``torch.matmul``, oneDNN/MKL, all cores):

- ``projection``: the input projection ``(T·B, I) x (I, 4H)`` of all steps;
- ``step matmuls``: T dependent ``(B, H) x (H, 4H)`` matmuls, the forward loop's
  (a ``lax.scan`` of them alone; in PyTorch a Python loop);
- ``backward step matmuls``: T dependent ``(B, 4H) x (4H, H)`` matmuls;
- ``weight gradients``: ``dW_ih = Xᵀ dG`` and ``dW_hh = H_prevᵀ dG``, two
  ``(K, T·B) x (T·B, 4H)`` matmuls.

Their sum is the floor of the training pass that those matmuls allow; the
whole passes follow: jaxrnn's forward (nothing stored) and training pass (the
gradient of ``sum(ys)``) with either dot, and PyTorch's ``nn.LSTM`` with its
oneDNN RNN primitive (its default on a CPU) and without it (``pytorch-aten``).
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


def _jax_pieces(w, params, xs):
    """The matmul pieces and the whole passes of jaxrnn, as functions of ``(params, xs)``;
    their matmuls are ``jaxrnn.blas.matmul``'s, so ``blas.use`` picks the dot when they
    are traced."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    import jaxrnn
    from jaxrnn.blas import matmul

    cell = jaxrnn.lstm(w.hidden_size)
    rows = w.time * w.batch
    gates0 = jnp.zeros((w.batch, 4 * w.hidden_size), jnp.float32)
    dgates = jnp.ones((rows, 4 * w.hidden_size), jnp.float32)
    h_prev = jnp.ones((rows, w.hidden_size), jnp.float32)

    def projection(p, xs):
        return matmul(xs.reshape(rows, -1), p.w_ih)

    def step_matmuls(p, xs):
        # The whole (B, 4H) product feeds the next step, so no slice of it can be
        # skipped; its first H columns are the next step's input.
        def body(g, _):
            return matmul(g[:, : w.hidden_size], p.w_hh), None

        return lax.scan(body, gates0, None, length=w.time)[0]

    def backward_step_matmuls(p, xs):
        w_t = p.w_hh.T

        def body(g, _):
            return jnp.tile(matmul(g, w_t), 4), None

        return lax.scan(body, gates0, None, length=w.time)[0]

    def weight_gradients(p, xs):
        x2 = xs.reshape(rows, -1)
        return matmul(x2, dgates, transpose_a=True), matmul(h_prev, dgates, transpose_a=True)

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
    from jaxrnn import blas

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
    dots = {"xla": False, "mkl": True} if blas.available() else {"xla": False}
    for dot, use_blas in dots.items():
        with blas.use(use_blas):  # fresh functions, traced here
            for name, fn in _jax_pieces(w, params, xs).items():
                compiled = jax.jit(fn).lower(params, xs).compile()
                benches[f"{dot} {name}"] = contenders.Bench(
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
    print(f"jaxrnn.blas: {blas.status()}")

    def cell(value):
        if value is None:
            return "—"
        # Two decimals, or two significant digits below 0.1: a toy size's ms are not "0.00".
        return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"

    def ratio(a, b):
        return None if a is None or b is None else a / b

    print("\n| matmuls | XLA ms | jaxrnn.blas ms | PyTorch ms |", end="")
    print(" XLA / PyTorch | jaxrnn.blas / PyTorch |")
    print("|---|---:|---:|---:|---:|---:|")
    matmuls = ("projection", "step matmuls", "backward step matmuls", "weight gradients")
    for name in matmuls:
        xla, mkl, torch_ms = (ms.get(f"{who} {name}") for who in ("xla", "mkl", "torch"))
        cells = (xla, mkl, torch_ms, ratio(xla, torch_ms), ratio(mkl, torch_ms))
        print(f"| {name} | " + " | ".join(map(cell, cells)) + " |")
    for dot, label in (("xla", "XLA's"), ("mkl", "jaxrnn.blas's")):
        if f"{dot} projection" in ms:
            floor = sum(ms[f"{dot} {name}"] for name in matmuls)
            print(f"\n{label} matmuls of a training pass add up to {floor:.2f} ms.")
    print("\n| pass | jaxrnn (XLA dot) ms | jaxrnn (jaxrnn.blas) ms |", end="")
    print(" PyTorch (oneDNN RNN) ms |", end="")
    print(" PyTorch ATen ms |\n|---|---:|---:|---:|---:|")
    for pass_ in contenders.PASSES:
        ours = "forward" if pass_ == "forward" else "train"
        values = [ms.get(f"{dot} {ours}") for dot in ("xla", "mkl")]
        values += [ms.get(f"{peer} {pass_}") for peer in ("pytorch", "pytorch-aten")]
        print(f"| {pass_} | " + " | ".join(map(cell, values)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
