"""Gradient clipping: by value, and by the global norm (Pascanu et al. 2013)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn.optim._checks import check_non_negative, check_positive
from jaxrnn.optim._tree import abs_sq
from jaxrnn.optim.base import EmptyState, GradientTransformation, Params, Updates


def _init_empty(params: Params) -> EmptyState:
    del params
    return EmptyState()


def global_norm(updates: Updates) -> jax.Array:
    """The Euclidean norm of all the leaves together: `‖g‖ = √(Σ_leaves Σ_i |g_i|²)`.

    Args:
        updates: a pytree of arrays.

    Returns:
        A scalar array, of the leaves' (promoted) dtype (real for complex leaves).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tree = {"a": jnp.array([3.0], dtype=jnp.float32),
        ...         "b": jnp.array([[4.0]], dtype=jnp.float32)}
        >>> optim.global_norm(tree)
        Array(5., dtype=float32)
    """
    squares = jax.tree.map(lambda g: jnp.sum(abs_sq(g)), updates)
    return jnp.sqrt(jax.tree.reduce(lambda a, b: a + b, squares, initializer=0))


def clip(max_delta: float | jax.Array) -> GradientTransformation:
    """Clip every element to `[−max_delta, max_delta]`: `u = min(max(g, −c), c)`.

    Clipping by value changes the gradient's direction; `clip_by_global_norm`
    keeps it.

    Args:
        max_delta: c, the largest absolute value of an element, >= 0.

    Returns:
        A stateless `GradientTransformation`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.clip(1.0)
        >>> tx.update(jnp.array([-3.0, 0.5], dtype=jnp.float32), tx.init(None))[0]
        Array([-1. ,  0.5], dtype=float32)
    """
    check_non_negative("clip", "max_delta", max_delta)

    def update(
        updates: Updates, state: EmptyState, params: Params | None = None
    ) -> tuple[Updates, EmptyState]:
        del params
        return jax.tree.map(lambda g: jnp.clip(g, -max_delta, max_delta), updates), state

    return GradientTransformation(_init_empty, update)


def clip_by_global_norm(max_norm: float | jax.Array) -> GradientTransformation:
    """Rescale the updates when their global norm exceeds a threshold.

        u = g                        if ‖g‖ < c
        u = g · c / ‖g‖              otherwise

    Pascanu, Mikolov & Bengio's remedy for exploding gradients in recurrent
    networks: the step keeps its direction and only its length is capped, so
    a rare huge gradient cannot throw the parameters off a cliff of the loss.
    The norm is over all the leaves together (`global_norm`).

    Args:
        max_norm: c, the largest norm, > 0.

    Returns:
        A stateless `GradientTransformation`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.clip_by_global_norm(1.0)
        >>> tx.update(jnp.array([3.0, 4.0], dtype=jnp.float32), tx.init(None))[0]
        Array([0.6, 0.8], dtype=float32)

    References:
        Pascanu, Mikolov & Bengio, On the difficulty of training recurrent
        neural networks, ICML 2013, algorithm 1.
    """
    check_positive("clip_by_global_norm", "max_norm", max_norm)

    def update(
        updates: Updates, state: EmptyState, params: Params | None = None
    ) -> tuple[Updates, EmptyState]:
        del params
        norm = global_norm(updates)
        keep = norm < max_norm
        # `select` rather than `g * min(1, c/‖g‖)`: below the threshold the
        # gradient passes bit for bit, and a zero gradient never meets 0/0.
        updates = jax.tree.map(
            lambda g: jax.lax.select(keep, g, (g / norm.astype(g.dtype)) * max_norm), updates
        )
        return updates, state

    return GradientTransformation(_init_empty, update)
