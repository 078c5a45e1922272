"""``jaxrnn probe``: the vanishing- and exploding-gradient figures, as PNG + JSON.

    jaxrnn probe                                  # every figure into out/probe/
    jaxrnn probe init cliff theory --out docs/img
    jaxrnn probe trained --runs runs/adding200_*.json --out docs/img

Figures (FIGURE arguments):

- ``init``: ‖∂L/∂h_t‖ against t at initialisation, log scale, on the adding
  problem: Elman with several init schemes and spectral radii, LSTM, GRU.
- ``trained``: the same curves after training, beside those at init, and a
  heat map of ‖∂L/∂h_t‖ over training steps × t; plus the learning curves.
  From the JSON of ``jaxrnn task ... --out`` runs given with ``--runs``, or,
  without them, from a short training of each cell here (``--train-steps``).
- ``cliff``: Pascanu et al.'s single-unit network x_t = w·σ(x_{t−1}) + b: the
  loss and the gradient norm over (w, b), with gradient descent paths with
  and without clipping.
- ``theory``: the linear-Elman check: the per-step rate of ‖∂L/∂h_t‖ tends to
  the spectral radius of w_hh; with tanh and σ_max(w_hh) < 1 the norms decay
  at least as fast as σ_max^(T−t).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn import plots, probes, tasks
from jaxrnn.cli import CommandError, _seed, _writable_folder
from jaxrnn.commands import _task_training as training

NAME = "probe"
HELP = "draw the vanishing- and exploding-gradient figures: init, trained, cliff, theory"

FIGURES = ("init", "trained", "cliff", "theory")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``jaxrnn probe`` options."""
    parser.add_argument(
        "figures",
        nargs="*",
        metavar="FIGURE",
        help=f"which figures: {', '.join(FIGURES)} (default: all)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/probe"),
        help="output folder (earlier figures there are replaced; any other file is refused)",
    )
    parser.add_argument("--length", type=int, default=200, help="T of the adding problem")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units")
    parser.add_argument("--batch", type=int, default=100, help="sequences in the probe batch")
    parser.add_argument("--seed", type=_seed, default=0)
    parser.add_argument(
        "--runs", type=Path, nargs="+", default=None, help="`jaxrnn task --out` JSON files"
    )
    parser.add_argument(
        "--train-steps", type=int, default=600, help="without --runs: steps per cell (trained)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _elman(hidden: int, activation: str = "tanh", init: str = "orthogonal"):
    return jaxrnn.elman(hidden, activation=training.ACTIVATIONS[activation], init=init)


# --------------------------------------------------------------------------- figure 1: at init


def init_variants(hidden: int):
    """(label, cell, scale of w_hh) for the at-initialisation figure."""
    return [
        ("Elman tanh, orthogonal x0.9", _elman(hidden), 0.9),
        ("Elman tanh, orthogonal", _elman(hidden), 1.0),
        ("Elman tanh, orthogonal x1.5", _elman(hidden), 1.5),
        ("Elman tanh, PyTorch U(±1/√H)", _elman(hidden, init="pytorch"), 1.0),
        ("Elman ReLU, identity (IRNN)", _elman(hidden, "relu", "identity"), 1.0),
        ("Elman linear, orthogonal x1.02", _elman(hidden, "linear"), 1.02),
        ("LSTM, forget bias 1", jaxrnn.lstm(hidden), 1.0),
        ("GRU", jaxrnn.gru(hidden), 1.0),
    ]


def _readout_loss(head_w: jax.Array, targets: jax.Array):
    def loss_fn(ys):
        return jnp.mean(jnp.square(ys[-1] @ head_w - targets))

    return loss_fn


def figure_init(args: argparse.Namespace) -> list[Path]:
    """Figure 1: ‖∂L/∂h_t‖ against t at initialisation, adding problem."""
    key = jax.random.key(args.seed)
    data_key, head_key, *cell_keys = jax.random.split(key, 10)
    xs, targets = tasks.adding_problem(data_key, args.length, args.batch)
    head_w = jax.random.normal(head_key, (args.hidden,)) / math.sqrt(args.hidden)
    loss_fn = _readout_loss(head_w, targets)
    series, radii = [], {}
    for (label, cell, scale), cell_key in zip(init_variants(args.hidden), cell_keys, strict=False):
        params = cell.init(cell_key, 2)
        params = params._replace(w_hh=params.w_hh * scale)
        norms = jax.jit(lambda p, c=cell: probes.hidden_grad_norms(c, p, xs, loss_fn))(params)
        spectra = probes.recurrent_spectrum(cell, params)
        radius = max(float(s.spectral_radius) for s in spectra.values())
        radii[label] = radius
        series.append({"label": f"{label}  (ρ={radius:.2f})", "y": np.asarray(norms)})
    note = (
        f"adding problem, T={args.length}, batch {args.batch}, H={args.hidden}, loss = MSE of a "
        f"random linear readout of h_T; ρ = spectral radius of w_hh (largest gate block)"
    )
    png, js = plots.line_plot(
        series,
        args.out / "grad_norms_init.png",
        title="‖∂L/∂h_t‖ at initialisation",
        xlabel="time step t",
        ylabel="‖∂L/∂h_t‖",
        note=note,
    )
    return [png, js]


# --------------------------------------------------------------------------- figure 2: trained


def _load_runs(paths: list[Path]) -> list[dict[str, Any]]:
    runs = []
    for path in paths:
        try:
            run = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CommandError(f"cannot read run {path}: {error}") from None
        if not training.is_run(run):
            raise CommandError(f"{path} is not the JSON of `jaxrnn task ... --out`")
        runs.append(run)
    # One figure is one task at one length: its title and baseline are the first run's.
    kinds = {(r["config"].get("task"), r["config"].get("length")) for r in runs}
    if len(kinds) > 1:
        described = ", ".join(f"{task} T={length}" for task, length in sorted(kinds, key=str))
        raise CommandError(
            f"--runs must be runs of one task at one length, got {described}; draw them "
            "apart, one `jaxrnn probe trained --runs ...` each."
        )
    return runs


def _train_runs(args: argparse.Namespace) -> list[dict[str, Any]]:
    task = tasks.TASKS["adding"]
    runs = []
    for cell in ("elman", "lstm", "gru"):
        config = training.Config(
            task="adding",
            cell=cell,
            length=args.length,
            hidden=args.hidden,
            steps=args.train_steps,
            eval_every=max(1, args.train_steps // 20),
            test_size=500,
            seed=args.seed,
            target=0.01,
        )
        runs.append(training.train(config, task, progress=not args.quiet))
    return runs


def _run_label(run: dict[str, Any]) -> str:
    config = run["config"]
    cell = {"lstm": "LSTM", "gru": "GRU"}.get(config["cell"], f"Elman {config['activation']}")
    return f"{cell}, H={config['hidden']}"


def figure_trained(args: argparse.Namespace) -> list[Path]:
    """Figure 2: the curves after training beside those at init; heat maps; learning curves."""
    runs = _load_runs(args.runs) if args.runs else _train_runs(args)
    colors = [f"C{i}" for i in range(10)]
    series, panels, learning = [], [], []
    for run, color in zip(runs, colors, strict=False):
        label, profiles = _run_label(run), run["grad_profiles"]
        steps, norms = profiles["step"], np.asarray(profiles["norms"], dtype=float)
        final = run["final"]["loss"]
        series.append({"label": f"{label}, at init", "y": norms[0], "style": "--", "color": color})
        series.append(
            {
                "label": f"{label}, after {steps[-1]} steps (test {final:.3g})",
                "y": norms[-1],
                "color": color,
            }
        )
        panels.append(
            {"label": label, "rows": steps, "columns": np.arange(norms.shape[1]), "values": norms}
        )
        test = run["history"]["test"]
        learning.append(
            {
                "label": label,
                "x": run["history"]["step"],
                "y": test["loss"],
                "color": color,
            }
        )
    config = runs[0]["config"]
    stem = f"{config['task']}_T{config['length']}"
    setup = (
        f"{config['task']}, T={config['length']}, batch {config['batch']}, Adam lr "
        f"{config['learning_rate']}, clip {config['clip']}; probe batch: 100 test sequences"
    )
    written = []
    written += plots.line_plot(
        series,
        args.out / f"grad_norms_trained_{stem}.png",
        title="‖∂L/∂h_t‖ at initialisation (dashed) and after training (solid)",
        xlabel="time step t",
        ylabel="‖∂L/∂h_t‖",
        note=setup,
    )
    written += plots.heatmaps(
        panels,
        args.out / f"grad_norms_heatmap_{stem}.png",
        title="‖∂L/∂h_t‖ over training",
        note=setup,
    )
    baseline = runs[0]["baseline"]
    written += plots.line_plot(
        learning,
        args.out / f"learning_curves_{stem}.png",
        title=f"{config['task']} problem, T={config['length']}: test {runs[0]['loss_name']}",
        xlabel="training step",
        ylabel=runs[0]["loss_name"],
        hlines=[{"y": baseline, "label": f"trivial baseline {baseline:.3f}"}],
        note=setup,
    )
    return written


# --------------------------------------------------------------------------- figure 3: the cliff

CLIFF_STEPS, CLIFF_X0, CLIFF_TARGET = 50, 0.5, 0.7


def single_unit_loss(wb: jax.Array) -> jax.Array:
    """Pascanu et al.'s one unit: x_t = w·σ(x_{t−1}) + b, x_0 = 0.5, L = (σ(x_50) − 0.7)²."""
    w, b = wb[0], wb[1]
    x = jax.lax.fori_loop(
        0, CLIFF_STEPS, lambda _, x: w * jax.nn.sigmoid(x) + b, jnp.asarray(CLIFF_X0, wb.dtype)
    )
    return jnp.square(jax.nn.sigmoid(x) - CLIFF_TARGET)


def descend(start, learning_rate: float, steps: int, max_norm: float | None) -> np.ndarray:
    """Gradient descent on ``single_unit_loss``, optionally with Pascanu et al.'s clipping."""
    grad = jax.grad(single_unit_loss)

    def step(wb, _):
        g = grad(wb)
        norm = jnp.linalg.norm(g)
        if max_norm is not None:
            g = jnp.where(norm > max_norm, g * (max_norm / norm), g)
        new = wb - learning_rate * g
        return new, new

    start = jnp.asarray(start, jnp.float32)
    _, path = jax.lax.scan(step, start, None, length=steps)
    return np.concatenate([np.asarray(start)[None], np.asarray(path)])


CLIFF_W = (0.0, 12.0)
CLIFF_B = (-8.0, 8.0)
CLIFF_START = (6.0, -3.2)
CLIFF_LR = 0.5
CLIFF_CLIP = 0.5
CLIFF_DESCENT_STEPS = 150
CLIFF_GRID = (121, 161)  # points along w and along b


def figure_cliff(args: argparse.Namespace) -> list[Path]:
    """Figure 3: the loss surface with its cliff, and descent paths with and without clipping."""
    w = np.linspace(*CLIFF_W, CLIFF_GRID[0])
    b = np.linspace(*CLIFF_B, CLIFF_GRID[1])
    grid = np.stack(np.meshgrid(w, b), axis=-1).reshape(-1, 2)
    with jax.enable_x64(True):  # the gradient underflows float32 far from the cliff
        surface = jax.jit(jax.vmap(jax.value_and_grad(single_unit_loss)))
        losses, grads = surface(jnp.asarray(grid, jnp.float64))
        loss = np.asarray(losses).reshape(len(b), len(w))
        grad_norm = np.linalg.norm(np.asarray(grads), axis=-1).reshape(len(b), len(w))
    plain = descend(CLIFF_START, CLIFF_LR, CLIFF_DESCENT_STEPS, None)
    clipped = descend(CLIFF_START, CLIFF_LR, CLIFF_DESCENT_STEPS, CLIFF_CLIP)
    final_plain = float(single_unit_loss(jnp.asarray(plain[-1])))
    final_clipped = float(single_unit_loss(jnp.asarray(clipped[-1])))
    paths = [
        {
            "label": f"gradient descent (ends at L = {final_plain:.2g})",
            "w": plain[:, 0],
            "b": plain[:, 1],
            "color": "red",
        },
        {
            "label": f"clipped to norm {CLIFF_CLIP} (ends at L = {final_clipped:.2g})",
            "w": clipped[:, 0],
            "b": clipped[:, 1],
            "color": "cyan",
            "style": "--",
        },
    ]
    note = (
        f"x_t = w·σ(x_t−1) + b, x_0 = {CLIFF_X0}, L = (σ(x_{CLIFF_STEPS}) − {CLIFF_TARGET})²; "
        f"{CLIFF_DESCENT_STEPS} steps of learning rate {CLIFF_LR} from (w, b) = {CLIFF_START}"
    )
    return list(
        plots.cliff_plot(
            w,
            b,
            loss,
            grad_norm,
            paths,
            args.out / "cliff.png",
            title="The exploding-gradient cliff of a single recurrent unit (Pascanu et al. 2013)",
            note=note,
        )
    )


# --------------------------------------------------------------------------- figure 4: theory


def _last_output_norms(cell):
    """A jitted ‖∂L/∂h_t‖ for L = h_(T−1) · readout, compiled once for every w_hh of a shape."""

    @jax.jit
    def norms(params, xs, readout):
        return probes.hidden_grad_norms(cell, params, xs, lambda ys: ys[-1] @ readout)

    return norms


def linear_rate_curves(hidden: int, length: int, radii, seed: int) -> list[dict[str, Any]]:
    """For a linear Elman cell with w_hh scaled to each spectral radius ρ: the rate
    (‖∂L/∂h_{T−1−k}‖ / ‖∂L/∂h_{T−1}‖)^(1/k) against k, which tends to ρ."""
    cell = jaxrnn.elman(hidden, activation=lambda a: a, dtype=jnp.float64)
    grad_norms = _last_output_norms(cell)
    curves = []
    for i, radius in enumerate(radii):
        key = jax.random.key(seed + i)
        params = cell.init(key, 1)
        w = jax.random.normal(jax.random.fold_in(key, 1), (hidden, hidden), jnp.float64)
        w = w * (radius / jnp.max(jnp.abs(jnp.linalg.eigvals(w))))
        params = params._replace(w_hh=w.astype(jnp.float64))
        xs = jax.random.normal(jax.random.fold_in(key, 2), (length, 1), jnp.float64)
        readout = jax.random.normal(jax.random.fold_in(key, 3), (hidden,), jnp.float64)
        norms = np.asarray(grad_norms(params, xs, readout))
        k = np.arange(1, length)
        rate = (norms[::-1][1:] / norms[-1]) ** (1.0 / k)
        curves.append({"label": f"ρ = {radius}", "x": k, "y": rate, "radius": radius})
    return curves


THEORY_HIDDEN, THEORY_LINEAR_LENGTH, THEORY_TANH_LENGTH = 32, 400, 200


def figure_theory(args: argparse.Namespace) -> list[Path]:
    """Figure 4: the linear-Elman rate tends to ρ(w_hh); tanh with σ_max < 1 decays faster."""
    with jax.enable_x64(True):
        radii = (0.8, 0.95, 1.0, 1.05)
        curves = linear_rate_curves(THEORY_HIDDEN, THEORY_LINEAR_LENGTH, radii, args.seed)
        written = list(
            plots.line_plot(
                [
                    {"label": f"measured, {c['label']}", "x": c["x"], "y": c["y"], "color": f"C{i}"}
                    for i, c in enumerate(curves)
                ],
                args.out / "theory_linear.png",
                title="Linear Elman: (‖∂L/∂h_(T−1−k)‖ / ‖∂L/∂h_(T−1)‖)^(1/k) tends to ρ(w_hh)",
                xlabel="distance k = T − 1 − t",
                ylabel="per-step rate",
                yscale="linear",
                hlines=[
                    {"y": r, "label": f"ρ = {r}", "color": f"C{i}"} for i, r in enumerate(radii)
                ],
                note=(
                    f"H={THEORY_HIDDEN}, T={THEORY_LINEAR_LENGTH}, float64; w_hh Gaussian, "
                    "rescaled to spectral radius ρ"
                ),
            )
        )
        hidden, length = THEORY_HIDDEN, THEORY_TANH_LENGTH
        cell = jaxrnn.elman(hidden, dtype=jnp.float64)
        grad_norms = _last_output_norms(cell)
        key = jax.random.key(args.seed)
        params = cell.init(key, 1)
        gaussian = jax.random.normal(jax.random.fold_in(key, 1), (hidden, hidden), jnp.float64)
        xs = 0.1 * jax.random.normal(jax.random.fold_in(key, 2), (length, 1), jnp.float64)
        t = np.arange(length)
        series = []
        variants = (
            ("orthogonal", params.w_hh, 0.9, "C0"),
            ("orthogonal", params.w_hh, 0.98, "C1"),
            ("Gaussian", gaussian, 0.98, "C2"),
        )
        for name, w, sigma, color in variants:
            p = params._replace(w_hh=w * (sigma / jnp.linalg.norm(w, 2)))
            norms = np.asarray(grad_norms(p, xs, jnp.ones(hidden, jnp.float64)))
            radius = float(probes.recurrent_spectrum(cell, p)["h"].spectral_radius)
            series.append(
                {
                    "label": f"{name} w_hh, σ_max = {sigma}, ρ = {radius:.2f}: measured",
                    "y": norms,
                    "color": color,
                }
            )
            series.append(
                {
                    "label": f"bound ‖∂L/∂h_(T−1)‖·{sigma}^(T−1−t)",
                    "y": norms[-1] * sigma ** (length - 1 - t),
                    "color": color,
                    "style": "--",
                }
            )
        written += plots.line_plot(
            series,
            args.out / "theory_tanh.png",
            title="tanh Elman with σ_max(w_hh) < 1: ‖∂L/∂h_t‖ under σ_max^(T−1−t)",
            xlabel="time step t",
            ylabel="‖∂L/∂h_t‖",
            note=(
                f"H={hidden}, T={length}, float64, inputs N(0, 0.1²); the bound is Pascanu "
                "et al.'s (γ = 1 for tanh)"
            ),
        )
    return written


# --------------------------------------------------------------------------- the command

_FIGURE_KINDS = ("line_plot", "heatmaps", "cliff_plot")
"""The ``kind`` of every JSON ``jaxrnn.plots`` writes: the only files --out may replace."""


def _stems(name: str, args: argparse.Namespace, runs: list[dict[str, Any]] | None) -> list[str]:
    """The names (without suffix) of the PNG + JSON pairs that figure ``name`` writes."""
    if name == "trained":
        config = runs[0]["config"] if runs else {"task": "adding", "length": args.length}
        stem = f"{config['task']}_T{config['length']}"
        return [f"{kind}_{stem}" for kind in ("grad_norms_trained", "grad_norms_heatmap")] + [
            f"learning_curves_{stem}"
        ]
    return {
        "init": ["grad_norms_init"],
        "cliff": ["cliff"],
        "theory": ["theory_linear", "theory_tanh"],
    }[name]


def _is_figure_json(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("kind") in _FIGURE_KINDS


def _check_replaceable(folder: Path, stems: list[str]) -> None:
    """Refuses, before any work, to write over a file that is not an earlier figure of
    ``jaxrnn.plots``: a PNG is replaced only beside its figure JSON."""
    for stem in stems:
        png, js = folder / f"{stem}.png", folder / f"{stem}.json"
        for path in (png, js):
            if path.exists() and (not path.is_file() or not _is_figure_json(js)):
                raise CommandError(
                    f"--out {folder}: {path.name} exists and is not a figure of `jaxrnn probe`; "
                    "it would be replaced. Move it, or choose another --out."
                )


def run(args: argparse.Namespace) -> int:
    """Draws the figures asked for and lists the files written."""
    figures = args.figures or list(FIGURES)
    unknown = [f for f in figures if f not in FIGURES]
    if unknown:
        raise CommandError(f"unknown figure {unknown[0]!r}; choose from {', '.join(FIGURES)}")
    if args.length < 2:
        raise CommandError(f"--length must be at least 2, got {args.length}")
    for flag, value in (("--hidden", args.hidden), ("--batch", args.batch)):
        if value < 1:
            raise CommandError(f"{flag} must be a positive integer, got {value}")
    if args.train_steps < 1:
        raise CommandError(f"--train-steps must be a positive integer, got {args.train_steps}")
    if args.runs and "trained" not in figures:
        raise CommandError("--runs is for the `trained` figure; add it to the FIGUREs")
    runs = _load_runs(args.runs) if args.runs and "trained" in figures else None
    _check_replaceable(args.out, [stem for name in figures for stem in _stems(name, args, runs)])
    _writable_folder(args.out, "--out")
    draw = {
        "init": figure_init,
        "trained": figure_trained,
        "cliff": figure_cliff,
        "theory": figure_theory,
    }
    for name in figures:
        start = time.perf_counter()
        written = draw[name](args)
        seconds = time.perf_counter() - start
        print(f"{name}: {', '.join(str(p) for p in written)} ({seconds:.0f} s)")
    return 0
