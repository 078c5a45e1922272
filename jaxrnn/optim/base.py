"""The one contract of `jaxrnn.optim`: a gradient transformation.

A `GradientTransformation` is a pair of pure functions, as optax's is:

    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    params = apply_updates(params, updates)

Every state is a `NamedTuple` (or a tuple of them), i.e. a pytree of arrays, so
states go through `jax.jit`, `jax.lax.scan` and checkpointing unchanged, and
jaxrnn's transformations sit inside `optax.chain` and optax's inside `chain`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from jaxrnn.optim._checks import check_transformation

Params = Any
"""A pytree of parameter arrays."""

Updates = Any
"""A pytree of updates (gradients on the way in), with the structure of `Params`."""

OptState = Any
"""An optimizer state: a pytree of arrays, usually a `NamedTuple` or a tuple of them."""

Schedule = Callable[[jax.Array], jax.Array]
"""A function from the step count (an int32 scalar starting at 0) to a value."""

ScalarOrSchedule = float | jax.Array | Schedule
"""A constant (a Python number or a scalar array) or a `Schedule`."""


class TransformInitFn(Protocol):
    """The `init` half of a `GradientTransformation`."""

    def __call__(self, params: Params) -> OptState:
        """Return the initial state for `params`."""


class TransformUpdateFn(Protocol):
    """The `update` half of a `GradientTransformation`."""

    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None
    ) -> tuple[Updates, OptState]:
        """Transform `updates` and return them with the new state."""


class GradientTransformation(NamedTuple):
    """A pair of pure functions that turn gradients into parameter updates.

    Attributes:
        init: `init(params) -> state`; the state is a pytree of arrays.
        update: `update(updates, state, params=None) -> (updates, state)`;
            `updates` has the structure of `params` (the gradients, for the
            first transformation of a chain).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.sgd(learning_rate=0.1)
        >>> params = jnp.array([1.0, -2.0], dtype=jnp.float32)
        >>> state = tx.init(params)
        >>> updates, state = tx.update(2 * params, state, params)  # grad of |x|^2
        >>> optim.apply_updates(params, updates)
        Array([ 0.8, -1.6], dtype=float32)
    """

    init: TransformInitFn
    update: TransformUpdateFn


class EmptyState(NamedTuple):
    """The state of a transformation that keeps none."""


def _init_empty(params: Params) -> EmptyState:
    del params
    return EmptyState()


def identity() -> GradientTransformation:
    """Pass updates through unchanged: `u = g`.

    Returns:
        A stateless `GradientTransformation`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.identity()
        >>> tx.update(jnp.ones(2, dtype=jnp.float32), tx.init(None))[0]
        Array([1., 1.], dtype=float32)
    """

    def update(
        updates: Updates, state: EmptyState, params: Params | None = None
    ) -> tuple[Updates, EmptyState]:
        del params
        return updates, state

    return GradientTransformation(_init_empty, update)


def _accepts_extra_args(update: Callable[..., Any]) -> bool:
    """Whether `update` takes `**extra_args` (optax's newer transformations do)."""
    try:
        parameters = inspect.signature(update).parameters.values()
    except (TypeError, ValueError):  # builtins and some C callables
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply transformations one after the other: `u = f_n(... f_2(f_1(g)))`.

    The state is the tuple of the transformations' states, in order. Any
    transformation with optax's `init`/`update` signature may take part,
    optax's own included; keyword arguments given to `update` (optax's
    "extra args", such as `value=` for line searches) are passed on to the
    transformations whose `update` accepts `**kwargs` and dropped for the rest.

    Args:
        *transforms: the transformations, first applied first.

    Returns:
        A `GradientTransformation` whose state is a tuple with one state per
        transformation.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(0.5))
        >>> g = jnp.array([3.0, 4.0], dtype=jnp.float32)  # norm 5, clipped to 1
        >>> tx.update(g, tx.init(g))[0]
        Array([-0.3, -0.4], dtype=float32)
    """
    transforms = tuple(transforms)
    for number, transform in enumerate(transforms, 1):
        check_transformation("chain", f"argument {number}", transform)
    forwards_extra_args = tuple(_accepts_extra_args(t.update) for t in transforms)

    def init(params: Params) -> tuple[OptState, ...]:
        return tuple(t.init(params) for t in transforms)

    def update(
        updates: Updates,
        state: tuple[OptState, ...],
        params: Params | None = None,
        **extra_args: Any,
    ) -> tuple[Updates, tuple[OptState, ...]]:
        if len(state) != len(transforms):
            raise ValueError(
                f"chain: the state has {len(state)} entries but the chain has "
                f"{len(transforms)} transformations; was the state made by this "
                "chain's init?"
            )
        new_state = []
        for t, s, forward in zip(transforms, state, forwards_extra_args, strict=True):
            if forward:
                updates, s = t.update(updates, s, params, **extra_args)
            else:
                updates, s = t.update(updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init, update)


def apply_updates(params: Params, updates: Updates) -> Params:
    """Add the updates to the parameters: `θ ← θ + u`.

    The updates already carry the sign (optimizers return `−η·…`). Each result
    is cast back to its parameter's dtype, so bfloat16 parameters stay
    bfloat16 even when the updates were computed in float32.

    Args:
        params: a pytree of parameter arrays.
        updates: a pytree of the same structure and shapes.

    Returns:
        The new parameters, with the structure, shapes and dtypes of `params`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> p = jnp.ones(2, dtype=jnp.bfloat16)
        >>> optim.apply_updates(p, jnp.full(2, 0.5, dtype=jnp.float32)).dtype
        dtype(bfloat16)
    """
    return jax.tree.map(
        lambda p, u: None if p is None else jnp.asarray(p + u).astype(jnp.asarray(p).dtype),
        params,
        updates,
        is_leaf=lambda x: x is None,
    )


def safe_increment(count: jax.Array) -> jax.Array:
    """Add one to an integer step counter, stopping at the dtype's maximum.

    An int32 counter would otherwise wrap round to a negative number after
    2³¹ − 1 steps and turn bias corrections and schedules into nonsense.

    Args:
        count: an integer scalar array.

    Returns:
        `count + 1`, or `count` when it is already the largest value.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> optim.safe_increment(jnp.asarray(2**31 - 1, dtype=jnp.int32)).item()
        2147483647
    """
    count = jnp.asarray(count)
    largest = jnp.array(jnp.iinfo(count.dtype).max, count.dtype)
    return jnp.where(count < largest, count + jnp.array(1, count.dtype), largest)
