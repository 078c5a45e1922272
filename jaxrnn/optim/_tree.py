"""Leaf-by-leaf helpers shared by the building blocks."""

from __future__ import annotations

import functools
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


def abs_sq(x: jax.Array) -> jax.Array:
    """`|x|²`: `x·x` for real `x` (the same program as `x**2`), `Re(x̄·x)` for complex
    `x`, whose `x·x` is neither real nor the magnitude (as optax's `abs_sq`)."""
    return (x.conj() * x).real if jnp.iscomplexobj(x) else x * x


# Compiled even when called eagerly, as optax's bias correction is: eagerly,
# `decay**count` of a float32 and an int32 is computed otherwise than under jit
# (up to 1e-5 apart), and an optimizer must step the same either way.
@functools.partial(jax.jit, inline=True)
def bias_corrected(average: Updates, decay: Any, count: jax.Array) -> Updates:
    """`average / (1 − decay^count)`: undo the pull towards a zero initial value.

    `decay**count` is computed in the default float dtype (float32, or float64
    with x64) and only then cast to each leaf's dtype: in bfloat16, `0.999**t`
    would round to 1 and the correction would divide by zero.
    """
    correction = 1 - decay**count
    return jax.tree.map(lambda a: a / correction.astype(a.dtype), average)


def keep_dtypes(new: Updates, old: Updates) -> Updates:
    """`new` cast to the dtypes of `old`, leaf by leaf, where those are inexact: a
    state whose dtypes stay fixed can be a `lax.scan` carry (a float32 array or
    traced hyper-parameter would promote bfloat16 states), while an integer
    parameter's state may become a float, as optax's does."""
    return jax.tree.map(
        lambda n, o: n.astype(o.dtype) if jnp.issubdtype(o.dtype, jnp.inexact) else n, new, old
    )


def zeros_like(params: Params, dtype: Any = None) -> Updates:
    return jax.tree.map(lambda p: jnp.zeros_like(p, dtype=dtype), params)


def full_like(params: Params, value: Any) -> Updates:
    return jax.tree.map(lambda p: jnp.full_like(p, value), params)


def zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)
