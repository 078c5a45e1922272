"""The optimizer registry and the test problems shared by the tests of jaxrnn.optim.

Every optimizer crossed with its options, each with explicit hyper-parameters
(the defaults of jaxrnn, optax and PyTorch differ on purpose), and two
problems: a random ill-conditioned quadratic and a small LSTM's loss.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxrnn import optim
from jaxrnn.cells import lstm


@dataclasses.dataclass(frozen=True)
class Sched:
    """A schedule named as both libraries name it, built for either of them."""

    name: str
    kwargs: tuple[tuple[str, Any], ...]

    def build(self, lib: Any) -> Callable:
        return getattr(lib, self.name)(**dict(self.kwargs))


def sched(name: str, **kwargs: Any) -> Sched:
    return Sched(name, tuple(sorted(kwargs.items())))


@dataclasses.dataclass(frozen=True)
class Case:
    """One optimizer with one set of options; `name` is the same in jaxrnn and optax."""

    name: str
    kwargs: tuple[tuple[str, Any], ...]
    label: str

    def build(self, lib: Any) -> Any:
        kwargs = {k: v.build(lib) if isinstance(v, Sched) else v for k, v in self.kwargs}
        return getattr(lib, self.name)(**kwargs)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def __str__(self) -> str:
        return self.label


def case(name: str, label: str = "", **kwargs: Any) -> Case:
    return Case(name, tuple(kwargs.items()), f"{name}-{label}" if label else name)


_RMS = dict(decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt=True, centered=False)
_RMS_REST = dict(momentum=None, nesterov=False, bias_correction=False)
_ADAM = dict(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0)


def _rms(label: str, learning_rate: float = 0.01, **overrides: Any) -> Case:
    return case("rmsprop", label, learning_rate=learning_rate, **{**_RMS, **_RMS_REST, **overrides})


CASES: list[Case] = [
    case("sgd", "plain", learning_rate=0.05, momentum=None, nesterov=False),
    case("sgd", "momentum", learning_rate=0.02, momentum=0.9, nesterov=False),
    case("sgd", "nesterov", learning_rate=0.02, momentum=0.9, nesterov=True),
    case(
        "sgd",
        "exponential-decay",
        learning_rate=sched(
            "exponential_decay",
            init_value=0.05,
            transition_steps=20,
            decay_rate=0.7,
            transition_begin=10,
            staircase=True,
        ),
        momentum=0.5,
        nesterov=False,
    ),
    case("adagrad", "", learning_rate=0.1, initial_accumulator_value=0.1, eps=1e-7),
    case("adagrad", "zero-init", learning_rate=0.3, initial_accumulator_value=0.0, eps=0.0),
    _rms("plain"),
    _rms("centered", centered=True),
    _rms("momentum", learning_rate=0.002, momentum=0.9),
    _rms("nesterov", learning_rate=0.002, momentum=0.9, nesterov=True),
    _rms("pytorch", learning_rate=0.003, decay=0.99, eps_in_sqrt=False),
    _rms(
        "pytorch-centered-momentum",
        learning_rate=0.001,
        decay=0.99,
        eps_in_sqrt=False,
        centered=True,
        momentum=0.5,
    ),
    _rms("bias-correction", bias_correction=True),
    _rms("initial-scale", initial_scale=1.0, eps=1e-6),
    # At t = 1 the bias-corrected variance ν̂ − μ̂² is 0: eps must carry the step.
    _rms("centered-bias-correction", centered=True, bias_correction=True, eps=1e-3),
    _rms(
        "centered-nesterov",
        learning_rate=0.002,
        decay=0.95,
        eps=1e-6,
        centered=True,
        eps_in_sqrt=False,
        momentum=0.8,
        nesterov=True,
    ),
    case("adadelta", "", learning_rate=1.0, rho=0.9, eps=1e-6),
    case("adadelta", "lr-half", learning_rate=0.5, rho=0.95, eps=1e-4),
    case("adam", "", learning_rate=0.02, **_ADAM),
    case("adam", "eps-root", learning_rate=0.02, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-8),
    case(
        "adam",
        "warmup-cosine",
        learning_rate=sched(
            "warmup_cosine_decay_schedule",
            init_value=0.0,
            peak_value=0.05,
            warmup_steps=20,
            decay_steps=180,
            end_value=0.001,
        ),
        **_ADAM,
    ),
    case("adamw", "", learning_rate=0.02, weight_decay=0.1, **_ADAM),
    case(
        "adamw",
        "linear",
        learning_rate=sched(
            "linear_schedule", init_value=0.03, end_value=0.001, transition_steps=150
        ),
        weight_decay=sched("cosine_decay_schedule", init_value=0.2, decay_steps=100, alpha=0.1),
        **_ADAM,
    ),
    case("adamax", "", learning_rate=0.02, b1=0.9, b2=0.999, eps=1e-8),
    case("nadam", "", learning_rate=0.02, **_ADAM),
]

OPTIMIZER_NAMES = sorted({c.name for c in CASES})


# ---------------------------------------------------------------------- problems


def quadratic_problem(dtype: Any) -> tuple[Callable, Any]:
    """`½ xᵀAx − bᵀx` over a pytree of 30 numbers, A with condition number 1e3."""
    rng = np.random.default_rng(0)
    n = 30
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = (q * np.logspace(-2, 1, n)) @ q.T
    b = rng.standard_normal(n)
    a, b = jnp.asarray(a, dtype), jnp.asarray(b, dtype)

    def loss(params: dict[str, jax.Array]) -> jax.Array:
        x = jnp.concatenate([params["w"].reshape(-1), params["b"]])
        return 0.5 * x @ a @ x - b @ x

    x0 = rng.standard_normal(n)
    params = {"w": jnp.asarray(x0[:20].reshape(5, 4), dtype), "b": jnp.asarray(x0[20:], dtype)}
    return loss, params


def lstm_problem(dtype: Any) -> tuple[Callable, Any]:
    """The mean squared error of a linear read-out of a tiny LSTM (I=3, H=4, T=6, B=2)."""
    input_size, hidden_size, time, batch = 3, 4, 6, 2
    cell = lstm(hidden_size, dtype=dtype)
    k_cell, k_out, k_x, k_y = jax.random.split(jax.random.key(0), 4)
    params = {
        "cell": cell.init(k_cell, input_size),
        "w_out": 0.5 * jax.random.normal(k_out, (hidden_size, 1), dtype),
    }
    # Non-zero biases, so that the bias gradients and updates are not trivial.
    params["cell"] = params["cell"]._replace(
        b=params["cell"].b + 0.1 * jax.random.normal(k_out, params["cell"].b.shape, dtype)
    )
    xs = jax.random.normal(k_x, (time, batch, input_size), dtype)
    targets = jax.random.normal(k_y, (time, batch, 1), dtype)

    def loss(params: dict[str, Any]) -> jax.Array:
        step = functools.partial(cell.step, params["cell"])
        _, hs = jax.lax.scan(step, cell.zero_carry((batch,)), xs)
        return jnp.mean((hs @ params["w_out"] - targets) ** 2)

    return loss, params


def flat_lstm_problem(dtype: Any) -> tuple[Callable, Any]:
    """`lstm_problem` with its parameters raveled into one vector of 132 numbers.

    The trajectory tests compile every case into one program, and XLA's
    compile time grows with the number of leaves times the number of cases:
    one leaf here compiles in a third of the time of four. Pytrees with
    several leaves are covered by the quadratic (a matrix and a vector) and,
    for the LSTM's own NamedTuple, by the clipping and chaining tests.
    """
    loss, params = lstm_problem(dtype)
    flat, unravel = ravel_pytree(params)
    return (lambda flat: loss(unravel(flat))), flat


PROBLEMS = {"quadratic": quadratic_problem, "lstm": flat_lstm_problem}


def rosenbrock(params: jax.Array) -> jax.Array:
    """`(1 − x)² + 100·(y − x²)²`, minimum 0 at (1, 1)."""
    x, y = params[0], params[1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


# ------------------------------------------------------------------- trajectories


def trajectory(tx: Any, apply_updates: Callable, loss: Callable, params: Any, steps: int) -> Any:
    """The parameters after each of `steps` updates, stacked: one `lax.scan`, jitted."""

    def body(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = apply_updates(params, updates)
        return (params, state), params

    @jax.jit
    def run(params):
        return jax.lax.scan(body, (params, tx.init(params)), None, length=steps)[1]

    return run(params)


@functools.cache
def problem(name: str, dtype: Any) -> tuple[Callable, Any]:
    """`PROBLEMS[name](dtype)`, built once, so that jitted functions of it are reused."""
    return PROBLEMS[name](dtype)


@functools.cache
def all_trajectories(name: str, dtype: Any, steps: int) -> dict[str, tuple[Any, Any]]:
    """Every case's trajectory under jaxrnn and under optax, on one problem.

    All of them advance in one jitted `lax.scan` whose body takes the gradients
    of all the trajectories' parameters with one `vmap`-ed gradient, so the
    loss is compiled once rather than once per case. Each case's two
    trajectories start from the same parameters and see gradients computed by
    the same code.

    Returns:
        `{str(case): (jaxrnn's trajectory, optax's trajectory)}`; each leaf of
        a trajectory has a leading axis of `steps`.
    """
    import optax

    loss, params = problem(name, dtype)
    txs = [tx for c in CASES for tx in (c.build(optim), c.build(optax))]
    applies = [optim.apply_updates, optax.apply_updates] * len(CASES)
    batched_grad = jax.vmap(jax.grad(loss))

    def body(carry, _):
        all_params, all_states = carry
        grads = batched_grad(jax.tree.map(lambda *leaves: jnp.stack(leaves), *all_params))
        new_params, new_states = [], []
        for i, (tx, apply, p, s) in enumerate(
            zip(txs, applies, all_params, all_states, strict=True)
        ):
            updates, s = tx.update(jax.tree.map(operator.itemgetter(i), grads), s, p)
            new_params.append(apply(p, updates))
            new_states.append(s)
        return (new_params, new_states), new_params

    @jax.jit
    def run(params):
        init = ([params] * len(txs), [tx.init(params) for tx in txs])
        return jax.lax.scan(body, init, None, length=steps)[1]

    out = run(params)
    return {str(c): (out[2 * k], out[2 * k + 1]) for k, c in enumerate(CASES)}


def relative_error(got: Any, want: Any) -> float:
    """The largest, over steps and leaves, of max |got − want| / max |want|.

    Both trees hold trajectories: each leaf's leading axis is the step.
    """

    def leaf_error(g: Any, w: Any) -> float:
        g = np.asarray(g, np.float64).reshape(len(g), -1)
        w = np.asarray(w, np.float64).reshape(len(w), -1)
        scale = np.maximum(np.max(np.abs(w), axis=1), 1e-30)
        return float(np.max(np.max(np.abs(g - w), axis=1) / scale))

    return max(jax.tree.leaves(jax.tree.map(leaf_error, got, want)))
