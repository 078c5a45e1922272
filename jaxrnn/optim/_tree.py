"""Leaf-by-leaf helpers shared by the building blocks."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn.optim.base import Params, Updates


def ema(new: Updates, average: Updates, decay: Any) -> Updates:
    """`average ← decay·average + (1 − decay)·new`, leaf by leaf."""
    # Written new-term first, as optax writes it: XLA may fuse one product and
    # the sum into a multiply-add, which rounds once instead of twice, and the
    # term order decides which product. The same order gives the same bits.
    return jax.tree.map(lambda x, a: (1 - decay) * x + decay * a, new, average)


def bias_corrected(average: Updates, decay: Any, count: jax.Array) -> Updates:
    """`average / (1 − decay^count)`: undo the pull towards a zero initial value.

    `decay**count` is computed in the default float dtype (float32, or float64
    with x64) and only then cast to each leaf's dtype: in bfloat16, `0.999**t`
    would round to 1 and the correction would divide by zero.
    """
    correction = 1 - decay**count
    return jax.tree.map(lambda a: a / correction.astype(a.dtype), average)


def zeros_like(params: Params, dtype: Any = None) -> Updates:
    return jax.tree.map(lambda p: jnp.zeros_like(p, dtype=dtype), params)


def full_like(params: Params, value: Any) -> Updates:
    return jax.tree.map(lambda p: jnp.full_like(p, value), params)


def zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)
