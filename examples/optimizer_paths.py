"""The optimizers of the lecture notes, side by side on the Rosenbrock valley.

    python examples/optimizer_paths.py [OUT.png] [--steps 1500]

Each optimizer starts at Rosenbrock's own point (-1.2, 1) and takes the same
number of steps down f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, whose minimum
f = 0 at (1, 1) lies at the end of a long, narrow, curved valley: plain
gradient descent must take small steps to stay in it, momentum builds up
speed along it, and the adaptive methods give each coordinate its own step.
The figure (docs/img/optimizer_paths.png by default) is the one on the docs'
Optimizers page. Runtime: a few seconds on a CPU.
"""

from __future__ import annotations

import argparse
import io
import pathlib

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")  # files, never windows
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from jaxrnn import optim
from jaxrnn.checkpoint import write_atomically

START = (-1.2, 1.0)

# The notes' order. Learning rates picked by hand to be about the largest
# that stay stable from START; Adadelta has none (its learning rate is 1).
OPTIMIZERS = {
    "SGD (η = 1e-3)": optim.sgd(1e-3),
    "momentum (η = 1e-3, μ = 0.9)": optim.sgd(1e-3, momentum=0.9),
    "Adagrad (η = 0.5)": optim.adagrad(0.5),
    "RMSprop (η = 0.01)": optim.rmsprop(0.01),
    "Adadelta (η = 1, ρ = 0.9, ε = 1e-6)": optim.adadelta(1.0, rho=0.9, eps=1e-6),
    "Adam (η = 0.05)": optim.adam(0.05),
}


def rosenbrock(p: jax.Array) -> jax.Array:
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def path(tx: optim.GradientTransformation, steps: int) -> np.ndarray:
    """The points visited, (steps + 1, 2), as one jitted lax.scan."""

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(rosenbrock)(params), state, params)
        params = optim.apply_updates(params, updates)
        return (params, state), params

    @jax.jit
    def run(start):
        _, points = jax.lax.scan(step, (start, tx.init(start)), None, length=steps)
        return jnp.concatenate([start[None], points])

    return np.asarray(run(jnp.asarray(START, jnp.float32)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="docs/img/optimizer_paths.png")
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args(argv)
    # Checked before the work: OUT is a PNG, and replaces at most an earlier one.
    out = pathlib.Path(args.out)
    if out.suffix.lower() != ".png":
        parser.error(f"OUT {out}: a .png file expected (the figure is a 64-colour PNG)")
    if out.exists() and (not out.is_file() or out.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n"):
        parser.error(
            f"OUT {out} exists and is not a PNG image; it would be replaced. Pass another "
            "name, or move that file away."
        )

    x, y = np.meshgrid(np.linspace(-1.6, 1.6, 300), np.linspace(-0.6, 1.8, 300))
    log_f = np.log10((1 - x) ** 2 + 100 * (y - x**2) ** 2 + 1e-3)
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5), dpi=100, sharex=True, sharey=True)

    for ax, (label, tx) in zip(axes.flat, OPTIMIZERS.items(), strict=True):
        points = path(tx, args.steps)
        final = float(rosenbrock(jnp.asarray(points[-1])))
        ax.contour(x, y, log_f, levels=25, cmap="Greys", linewidths=0.5)
        ax.plot(points[:, 0], points[:, 1], "-", color="tab:red", lw=1.2)
        every = max(1, args.steps // 30)  # a dot every few steps shows the speed
        ax.plot(points[::every, 0], points[::every, 1], ".", color="tab:red", ms=4)
        ax.plot(*START, "ks", ms=5)
        ax.plot(1, 1, "k*", ms=11)
        ax.set_title(f"{label}\nends at f = {final:.1e}", fontsize=10)
        print(f"{label:32s} ends at ({points[-1, 0]:+.4f}, {points[-1, 1]:+.4f}), f = {final:.2e}")

    for ax in axes[1]:
        ax.set_xlabel("x")
    for ax in axes[:, 0]:
        ax.set_ylabel("y")
    fig.suptitle(
        f"{args.steps} steps down the Rosenbrock valley from (-1.2, 1) to the minimum at (1, 1)"
        f" (a dot every {every} steps)"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    # A 64-colour palette keeps the PNG committed under docs/ a third the size; written
    # atomically, so that a write cut short leaves the earlier figure whole.
    image = Image.open(buffer).convert("RGB").quantize(64)
    write_atomically(out, lambda file: image.save(file, format="PNG", optimize=True))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
