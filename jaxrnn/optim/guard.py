"""A guard that skips updates whose gradients are not finite, and counts them."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.optim._checks import check_non_negative, check_transformation
from jaxrnn.optim.base import (
    GradientTransformation,
    OptState,
    Params,
    Updates,
    _accepts_extra_args,
    safe_increment,
)


class SkipNotFiniteState(NamedTuple):
    """The guard's counters and the wrapped optimizer's state.

    Attributes:
        inner_state: the wrapped transformation's state, untouched by skipped steps.
        total_skipped: how many updates were skipped since `init` (int32).
        consecutive_not_finite: how many of the latest updates in a row were
            not finite (int32); 0 after a finite one.
        last_finite: whether the latest gradients were all finite (bool).
    """

    inner_state: OptState
    total_skipped: jax.Array
    consecutive_not_finite: jax.Array
    last_finite: jax.Array


def all_finite(tree: Updates) -> jax.Array:
    """Whether every element of every leaf is finite (no NaN, no ±inf).

    Args:
        tree: a pytree of arrays.

    Returns:
        A boolean scalar array; `True` for a tree without leaves.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> optim.all_finite({"w": jnp.array([1.0, jnp.nan], dtype=jnp.float32)})
        Array(False, dtype=bool)
    """
    finite = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(finite)) if finite else jnp.array(True)


def skip_not_finite(
    inner: GradientTransformation, max_consecutive_skips: int | None = None
) -> GradientTransformation:
    """Skip any update whose gradients contain a NaN or an infinity, and count it.

        finite = all(isfinite(g))
        u, state = inner.update(g, state)    if finite
        u, state = 0, state                  otherwise (the state is left as it was)

    One bad batch (an overflow, a log of zero) would otherwise write NaN into
    the parameters and every moment estimate for good. The skipped steps are
    counted in the state, so that a training loop can report them or stop.

    Args:
        inner: the transformation to guard, e.g. `adam(1e-3)`.
        max_consecutive_skips: after this many non-finite updates in a row,
            let the next ones through to `inner` (so that a persistent NaN
            shows instead of silently freezing training), as optax's
            `apply_if_finite(inner, max_consecutive_errors)` does; `None`
            (the default) skips for ever.

    Returns:
        A `GradientTransformation` with state `SkipNotFiniteState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.skip_not_finite(optim.sgd(0.1))
        >>> p = jnp.ones(2, dtype=jnp.float32)
        >>> state = tx.init(p)
        >>> u, state = tx.update(jnp.array([1.0, jnp.inf], dtype=jnp.float32), state, p)
        >>> u, int(state.total_skipped)
        (Array([0., 0.], dtype=float32), 1)
    """
    check_transformation("skip_not_finite", "inner", inner)
    if max_consecutive_skips is not None:
        if isinstance(max_consecutive_skips, bool) or not isinstance(
            max_consecutive_skips, int | np.integer
        ):
            raise TypeError(
                "skip_not_finite: max_consecutive_skips must be an int >= 0 or None, got "
                f"{max_consecutive_skips!r}."
            )
        check_non_negative("skip_not_finite", "max_consecutive_skips", max_consecutive_skips)
    forwards_extra_args = _accepts_extra_args(inner.update)

    def init(params: Params) -> SkipNotFiniteState:
        zero = jnp.zeros([], jnp.int32)
        return SkipNotFiniteState(
            inner_state=inner.init(params),
            total_skipped=zero,
            consecutive_not_finite=zero,
            last_finite=jnp.array(True),
        )

    def update(
        updates: Updates,
        state: SkipNotFiniteState,
        params: Params | None = None,
        **extra_args: Any,
    ) -> tuple[Updates, SkipNotFiniteState]:
        finite = all_finite(updates)
        consecutive = jnp.where(finite, 0, safe_increment(state.consecutive_not_finite))
        apply = finite
        if max_consecutive_skips is not None:
            apply = finite | (consecutive > max_consecutive_skips)

        def step(_: None) -> tuple[Updates, OptState]:
            if forwards_extra_args:
                return inner.update(updates, state.inner_state, params, **extra_args)
            return inner.update(updates, state.inner_state, params)

        def skip(_: None) -> tuple[Updates, OptState]:
            # Zeros of exactly the types `step` returns, as `cond` requires.
            shapes = jax.eval_shape(step, None)[0]
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), state.inner_state

        new_updates, inner_state = jax.lax.cond(apply, step, skip, None)
        return new_updates, SkipNotFiniteState(
            inner_state=inner_state,
            total_skipped=jnp.where(
                apply, state.total_skipped, safe_increment(state.total_skipped)
            ),
            consecutive_not_finite=consecutive,
            last_finite=finite,
        )

    return GradientTransformation(init, update)
