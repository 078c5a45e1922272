"""The registry of built-in cell variants every cell test runs over."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref

import jaxrnn


@dataclasses.dataclass(frozen=True)
class CellCase:
    name: str
    make: Callable[..., jaxrnn.Cell]  # make(hidden_size, dtype=..., init=...)
    numpy_step: Callable[[Any, Any, np.ndarray], tuple[Any, np.ndarray]]
    is_lstm: bool = False

    def __str__(self) -> str:
        return self.name


def _linear(a):
    return a


def _relu_np(a):
    return np.maximum(a, 0.0)


CASES = [
    CellCase("elman-tanh", jaxrnn.elman, ref.elman_step),
    CellCase(
        "elman-relu",
        functools.partial(jaxrnn.elman, activation=jax.nn.relu),
        functools.partial(ref.elman_step, activation=_relu_np),
    ),
    CellCase(
        "elman-linear-nobias",
        functools.partial(jaxrnn.elman, activation=_linear, use_bias=False),
        functools.partial(ref.elman_step, activation=_linear),
    ),
    CellCase("lstm", jaxrnn.lstm, ref.lstm_step, is_lstm=True),
    CellCase(
        "lstm-nobias",
        functools.partial(jaxrnn.lstm, use_bias=False),
        ref.lstm_step,
        is_lstm=True,
    ),
    CellCase("gru", jaxrnn.gru, ref.gru_step),
    CellCase(
        "gru-reset-before",
        functools.partial(jaxrnn.gru, reset_after=False),
        functools.partial(ref.gru_step, reset_after=False),
    ),
    CellCase("gru-nobias", functools.partial(jaxrnn.gru, use_bias=False), ref.gru_step),
    # The fused path's third Elman slope, tested here without jaxrnn.blas's kernels too.
    CellCase(
        "elman-sigmoid",
        functools.partial(jaxrnn.elman, activation=jax.nn.sigmoid),
        functools.partial(ref.elman_step, activation=ref.sigmoid),
    ),
]


def make_params(case: CellCase, hidden_size: int, input_size: int, dtype, seed: int = 0):
    """A cell and parameters with every bias non-zero (zero biases hide layout bugs)."""
    cell = case.make(hidden_size, dtype=dtype, init="pytorch")
    params = cell.init(jax.random.key(seed), input_size)
    noise_key = jax.random.key(seed + 1)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(noise_key, len(leaves))
    leaves = [
        leaf + 0.3 * jax.random.normal(k, leaf.shape, dtype) if leaf.ndim == 1 else leaf
        for leaf, k in zip(leaves, keys, strict=True)
    ]
    return cell, jax.tree.unflatten(treedef, leaves)


def random_carry(case: CellCase, cell: jaxrnn.Cell, batch_shape, dtype, seed: int = 2):
    """A non-zero carry, so the recurrent weights matter from the first step."""
    zeros = cell.zero_carry(batch_shape)
    leaves, treedef = jax.tree.flatten(zeros)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(
        treedef,
        [0.5 * jax.random.normal(k, z.shape, dtype) for z, k in zip(leaves, keys, strict=True)],
    )


def to_numpy(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def numpy_carry(case: CellCase, carry):
    """jaxrnn's carry in the reference's form: (h, c) tuples for the LSTM."""
    if case.is_lstm:
        return (np.asarray(carry.h, np.float64), np.asarray(carry.c, np.float64))
    return np.asarray(carry, np.float64)


def carry_leaves(case: CellCase, carry):
    return list(carry) if isinstance(carry, tuple) else [carry]


def max_abs(a, b) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(a, jnp.float64) - jnp.asarray(b, jnp.float64))))
