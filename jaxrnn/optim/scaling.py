"""Scaling by a step size, a learning rate or a schedule, and decoupled weight decay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn.optim._checks import check_flag, check_learning_rate, check_non_negative
from jaxrnn.optim.base import (
    EmptyState,
    GradientTransformation,
    Params,
    ScalarOrSchedule,
    Schedule,
    Updates,
    identity,
    safe_increment,
)


def scale(step_size: float | jax.Array) -> GradientTransformation:
    """Multiply the updates by a constant: `u = c·g`.

    Args:
        step_size: c, any scalar (its sign is kept).

    Returns:
        A stateless `GradientTransformation`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.scale(-0.5)
        >>> tx.update(jnp.ones(2, dtype=jnp.float32), tx.init(None))[0]
        Array([-0.5, -0.5], dtype=float32)
    """

    def init(params: Params) -> EmptyState:
        del params
        return EmptyState()

    def update(
        updates: Updates, state: EmptyState, params: Params | None = None
    ) -> tuple[Updates, EmptyState]:
        del params
        return jax.tree.map(lambda g: step_size * g, updates), state

    return GradientTransformation(init, update)


class ScaleByScheduleState(NamedTuple):
    """The step count a schedule is evaluated at (int32, starting at 0)."""

    count: jax.Array


def scale_by_schedule(step_size_fn: Schedule) -> GradientTransformation:
    """Multiply the updates by a schedule of the step count: `u = c(k)·g`.

    The schedule sees `k = 0` at the first update, then 1, 2, …; its value
    is cast to each update's dtype before the product.

    Args:
        step_size_fn: a function from the int32 step count to a scalar.

    Returns:
        A `GradientTransformation` with state `ScaleByScheduleState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.scale_by_schedule(lambda k: 1.0 / (1 + k))
        >>> g = jnp.ones(1, dtype=jnp.float32)
        >>> u, state = tx.update(g, tx.init(g))
        >>> u, state = tx.update(g, state)
        >>> u
        Array([0.5], dtype=float32)
    """

    def init(params: Params) -> ScaleByScheduleState:
        del params
        return ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update(
        updates: Updates, state: ScaleByScheduleState, params: Params | None = None
    ) -> tuple[Updates, ScaleByScheduleState]:
        del params
        step_size = step_size_fn(state.count)
        updates = jax.tree.map(lambda g: jnp.array(step_size, dtype=g.dtype) * g, updates)
        return updates, ScaleByScheduleState(count=safe_increment(state.count))

    return GradientTransformation(init, update)


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> GradientTransformation:
    """Scale by the negative learning rate: `u = −η·g` (or `−η(k)·g` for a schedule).

    Every optimizer ends with this step: the learning rate is given positive
    and the sign is flipped here, so that `apply_updates` descends. PyTorch's
    optimizers subtract inside `step()` instead; the arithmetic is the same.

    Args:
        learning_rate: η, a number >= 0, a scalar array or a schedule.
        flip_sign: multiply by −η (True, to descend) or by +η.

    Returns:
        A `GradientTransformation`: stateless for a constant, with state
        `ScaleByScheduleState` for a schedule.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.scale_by_learning_rate(0.1)
        >>> tx.update(jnp.ones(2, dtype=jnp.float32), tx.init(None))[0]
        Array([-0.1, -0.1], dtype=float32)
    """
    check_learning_rate("scale_by_learning_rate", learning_rate)
    sign = -1 if check_flag("scale_by_learning_rate", "flip_sign", flip_sign) else 1
    if callable(learning_rate):
        return scale_by_schedule(lambda count: sign * learning_rate(count))
    return scale(sign * learning_rate)


class AddDecayedWeightsState(NamedTuple):
    """The step count a weight-decay schedule is evaluated at (`None` for a constant)."""

    count: jax.Array | None


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Any | Callable[[Params], Any] | None = None,
) -> GradientTransformation:
    """Add the parameters times a decay rate to the updates: `u = g + λ·θ`.

    Placed after Adam's rescaling and before the learning rate, this is
    decoupled weight decay (AdamW): the parameters shrink by `η·λ·θ` per step
    whatever Adam's per-parameter scaling is. Placed before a rescaling it is
    ordinary L2 regularisation.

    Args:
        weight_decay: λ, a number >= 0, a scalar array or a schedule of the
            step count.
        mask: `None` (decay every parameter), a pytree of booleans with the
            structure of the parameters (or a prefix of it), or a function of
            the parameters returning one: `True` where weights decay. Biases
            and normalisation scales are often excluded.

    Returns:
        A `GradientTransformation` with state `AddDecayedWeightsState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> p = {"w": jnp.ones(2, dtype=jnp.float32), "b": jnp.ones(1, dtype=jnp.float32)}
        >>> g = {"w": jnp.zeros(2, dtype=jnp.float32), "b": jnp.zeros(1, dtype=jnp.float32)}
        >>> tx = optim.add_decayed_weights(0.1, mask={"w": True, "b": False})
        >>> tx.update(g, tx.init(p), p)[0]["w"]
        Array([0.1, 0.1], dtype=float32)

    References:
        Loshchilov & Hutter, Decoupled weight decay regularization, ICLR 2019.
    """
    check_non_negative("add_decayed_weights", "weight_decay", weight_decay)
    scheduled = callable(weight_decay)

    def init(params: Params) -> AddDecayedWeightsState:
        del params
        return AddDecayedWeightsState(count=jnp.zeros([], jnp.int32) if scheduled else None)

    def update(
        updates: Updates, state: AddDecayedWeightsState, params: Params | None = None
    ) -> tuple[Updates, AddDecayedWeightsState]:
        if params is None:
            raise ValueError(
                "add_decayed_weights: update() needs the parameters; call "
                "tx.update(grads, state, params)."
            )
        if scheduled:
            decay = weight_decay(state.count)
            state = AddDecayedWeightsState(count=safe_increment(state.count))
        else:
            decay = weight_decay

        def decayed(g: jax.Array, p: jax.Array) -> jax.Array:
            return g + decay * p

        if mask is None:
            return jax.tree.map(decayed, updates, params), state
        mask_tree = mask(params) if callable(mask) else mask
        try:  # JAX's own message would name neither the mask nor the parameters
            jax.tree.structure(mask_tree).flatten_up_to(params)
        except ValueError:
            raise ValueError(
                "add_decayed_weights: mask must have the structure of the parameters or a "
                f"prefix of it, got {jax.tree.structure(mask_tree)} for parameters "
                f"{jax.tree.structure(params)}."
            ) from None

        def masked(m: bool, g: Updates, p: Params) -> Updates:
            return jax.tree.map(lambda g, p: decayed(g, p) if m else g, g, p)

        return jax.tree.map(masked, mask_tree, updates, params), state

    if not scheduled and isinstance(weight_decay, int | float) and weight_decay == 0:
        return identity()
    return GradientTransformation(init, update)
