"""The small training loop behind ``jaxrnn task`` and ``jaxrnn probe trained``.

A model is one cell and a linear readout (of the last hidden state, or of
every one, as the task says). Each step draws a fresh batch from the task's
generator, inside the compiled step; ``chunk`` steps run in one ``lax.scan``
so that Python is visited only between chunks, where the progress bar, the
evaluation and the gradient probes happen.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

import jaxrnn
from jaxrnn import optim, probes
from jaxrnn.tasks import Task

CELLS = ("lstm", "gru", "elman")
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "linear": lambda a: a,
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run depends on (all of it goes into the result's JSON)."""

    task: str
    cell: str
    length: int
    hidden: int = 128
    batch: int = 64
    steps: int = 2000
    learning_rate: float = 1e-3
    clip: float = 1.0
    seed: int = 0
    eval_every: int = 100
    test_size: int = 1000
    activation: str = "tanh"
    init: str = "orthogonal"
    target: float | None = None
    time_limit: float | None = None


def make_cell(name: str, hidden: int, activation: str = "tanh", init: str = "orthogonal"):
    """The cell called ``name`` (``lstm``, ``gru`` or ``elman``) with ``hidden`` units."""
    if name == "elman":
        return jaxrnn.elman(hidden, activation=ACTIVATIONS[activation], init=init)
    if name == "lstm":
        return jaxrnn.lstm(hidden, init=init)
    return jaxrnn.gru(hidden, init=init)


def init_model(cell, task: Task, hidden: int, key: jax.Array) -> dict[str, Any]:
    """The cell's parameters and a linear readout ``h @ w + b``."""
    cell_key, head_key = jax.random.split(key)
    return {
        "cell": cell.init(cell_key, task.input_size),
        "head": {
            "w": jax.random.normal(head_key, (hidden, task.output_size)) / math.sqrt(hidden),
            "b": jnp.zeros((task.output_size,)),
        },
    }


def readout(task: Task, head: dict[str, jax.Array], ys: jax.Array) -> jax.Array:
    """The model's outputs from the hidden states ``ys`` (time, batch, hidden)."""
    hidden = ys[-1] if task.readout == "last" else ys
    return hidden @ head["w"] + head["b"]


def apply_model(cell, task: Task, params, xs: jax.Array) -> jax.Array:
    """Runs the cell over ``xs`` and reads out."""
    _, ys = jaxrnn.unroll(cell, params["cell"], xs)
    return readout(task, params["head"], ys)


def grad_profile(cell, task: Task, params, xs, targets) -> jax.Array:
    """‖∂L/∂h_t‖ for every t of the probe batch: the figures' curve."""

    def loss_of_outputs(ys):
        return task.loss(readout(task, params["head"], ys), targets)

    return probes.hidden_grad_norms(cell, params["cell"], xs, loss_of_outputs)


def spectrum_summary(cell, params) -> dict[str, dict[str, float]]:
    """The spectral radius and largest singular value of each gate's recurrent block."""
    spectra = probes.recurrent_spectrum(cell, params["cell"])
    return {
        gate: {
            "spectral_radius": float(s.spectral_radius),
            "sigma_max": float(s.singular_values[0]),
        }
        for gate, s in spectra.items()
    }


def _batched_metrics(evaluate, params, xs, targets, batch_axis: int, size: int = 250):
    """Averages the metrics over slices of the test set (keeps memory small)."""
    total, sums = np.shape(targets)[batch_axis], {}
    for start in range(0, total, size):
        index = (slice(None),) * batch_axis + (slice(start, start + size),)
        part = evaluate(params, xs[(slice(None), *index[batch_axis:])], targets[index])
        count = min(size, total - start)
        for name, value in part.items():
            sums[name] = sums.get(name, 0.0) + float(value) * count
    return {name: value / total for name, value in sums.items()}


def is_run(record: object) -> bool:
    """Whether ``record`` (read from JSON) is what ``train`` returns, as ``jaxrnn task
    --out`` writes it."""
    return isinstance(record, dict) and {"config", "grad_profiles"} <= set(record)


def train(
    config: Config,
    task: Task,
    *,
    progress: bool = True,
    on_eval: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Trains one model on one task and returns the record of the run, JSON-ready."""
    cell = make_cell(config.cell, config.hidden, config.activation, config.init)
    model_key, data_key, test_key = jax.random.split(jax.random.key(config.seed), 3)
    params = init_model(cell, task, config.hidden, model_key)
    optimizer = optim.chain(
        probes.record_grad_norms(),  # the raw gradient norm, before clipping
        optim.clip_by_global_norm(config.clip),
        optim.adam(config.learning_rate),
    )
    opt_state = optimizer.init(params)

    def loss_fn(params, xs, targets):
        return task.loss(apply_model(cell, task, params, xs), targets)

    def one_step(carry, key):
        params, opt_state = carry
        xs, targets = task.sample(key, config.length, config.batch)
        loss, grads = jax.value_and_grad(loss_fn)(params, xs, targets)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optim.apply_updates(params, updates), opt_state), (loss, opt_state[0].global_norm)

    @jax.jit
    def train_chunk(params, opt_state, keys):
        (params, opt_state), (losses, norms) = jax.lax.scan(one_step, (params, opt_state), keys)
        return params, opt_state, losses, norms

    @jax.jit
    def evaluate(params, xs, targets):
        outputs = apply_model(cell, task, params, xs)
        return {"loss": task.loss(outputs, targets), **task.metrics(outputs, targets)}

    probe = jax.jit(lambda params, xs, targets: grad_profile(cell, task, params, xs, targets))

    test_xs, test_targets = task.sample(test_key, config.length, config.test_size)
    batch_axis = np.ndim(test_targets) - 1  # targets are (B,) or (time, B)
    probe_slice = (slice(None),) * batch_axis + (slice(0, 100),)
    probe_xs, probe_targets = test_xs[:, :100], test_targets[probe_slice]

    history: dict[str, Any] = {"step": [], "train_loss": [], "grad_norm": [], "test": {}}
    profiles: dict[str, Any] = {"step": [], "norms": []}
    first_below: int | None = None
    baseline = task.baseline(config.length)

    def record(step: int, train_loss: float, grad_norm: float) -> dict[str, float]:
        nonlocal first_below
        metrics = _batched_metrics(evaluate, params, test_xs, test_targets, batch_axis)
        history["step"].append(step)
        history["train_loss"].append(train_loss)
        history["grad_norm"].append(grad_norm)
        for name, value in metrics.items():
            history["test"].setdefault(name, []).append(value)
        profiles["step"].append(step)
        profiles["norms"].append(np.asarray(probe(params, probe_xs, probe_targets)).tolist())
        test_loss = metrics["loss"]
        if config.target is not None and first_below is None and test_loss < config.target:
            first_below = step
        if on_eval is not None:
            on_eval(step, metrics)
        return metrics

    initial_spectrum = spectrum_summary(cell, params)
    record(0, float("nan"), float("nan"))
    keys = jax.random.split(data_key, config.steps)
    start = time.perf_counter()
    compile_seconds = None
    step, stopped_early = 0, False
    bar = tqdm(
        total=config.steps,
        desc=f"{config.task} T={config.length} {config.cell}",
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
    )
    with bar:
        while step < config.steps:
            size = min(config.eval_every, config.steps - step)
            chunk_start = time.perf_counter()
            params, opt_state, losses, norms = train_chunk(
                params, opt_state, keys[step : step + size]
            )
            losses, norms = np.asarray(losses), np.asarray(norms)
            if compile_seconds is None:
                compile_seconds = time.perf_counter() - chunk_start
            step += size
            bar.update(size)
            metrics = record(step, float(losses.mean()), float(norms.mean()))
            bar.set_postfix(train=f"{losses.mean():.4f}", test=f"{metrics['loss']:.4f}")
            elapsed = time.perf_counter() - start
            if config.time_limit is not None and elapsed > config.time_limit:
                stopped_early = True
                break
    seconds = time.perf_counter() - start
    final = {name: values[-1] for name, values in history["test"].items()}
    return {
        "config": dataclasses.asdict(config),
        "loss_name": task.loss_name,
        "baseline": baseline,
        "final": final,
        "steps_done": step,
        "first_step_below_target": first_below,
        "stopped_at_time_limit": stopped_early,
        "seconds": seconds,
        "first_chunk_seconds_with_compile": compile_seconds,
        "history": history,
        "grad_profiles": profiles,
        "spectrum": {"init": initial_spectrum, "final": spectrum_summary(cell, params)},
    }
