"""Learning-rate schedules: functions from the step count k = 0, 1, 2, … to a value.

Any optimizer takes a schedule wherever it takes a learning rate; the
optimizer keeps the step count in its state and calls the schedule with 0 at
the first update. Schedules are pure functions and trace under `jax.jit`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxrnn.optim._checks import check_kind, check_non_negative, check_positive
from jaxrnn.optim.base import Schedule


def constant_schedule(value: float | jax.Array) -> Schedule:
    """A schedule that never changes: `η(k) = η₀`.

    Args:
        value: η₀.

    Returns:
        A `Schedule`.

    Examples:
        >>> from jaxrnn import optim
        >>> optim.constant_schedule(0.1)(1000)
        0.1
    """

    def schedule(count: jax.Array) -> jax.Array:
        del count
        return value

    return schedule


def linear_schedule(
    init_value: float | jax.Array,
    end_value: float | jax.Array,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Hold, then go in a straight line from one value to another, then hold.

        j = clip(k − k₀, 0, K)
        η(k) = (η₀ − η₁)·(1 − j/K) + η₁

    Args:
        init_value: η₀, the value until `transition_begin`.
        end_value: η₁, the value from `transition_begin + transition_steps` on.
        transition_steps: K, the length of the ramp, >= 0; 0 gives the constant η₀.
        transition_begin: k₀, the step the ramp starts at, >= 0.

    Returns:
        A `Schedule`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> warmup = optim.linear_schedule(0.0, 1.0, transition_steps=4)
        >>> print(warmup(jnp.arange(6, dtype=jnp.int32)))
        [0.   0.25 0.5  0.75 1.   1.  ]
    """
    check_non_negative("linear_schedule", "transition_steps", transition_steps)
    check_non_negative("linear_schedule", "transition_begin", transition_begin)
    if transition_steps == 0:
        return constant_schedule(init_value)

    def schedule(count: jax.Array) -> jax.Array:
        j = jnp.clip(count - transition_begin, 0, transition_steps)
        return (init_value - end_value) * (1 - j / transition_steps) + end_value

    return schedule


def exponential_decay(
    init_value: float | jax.Array,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: float | jax.Array | None = None,
) -> Schedule:
    """Multiply by `decay_rate` every `transition_steps` steps.

        p = (k − k₀) / K             (rounded down when staircase)
        η(k) = η₀                    for k <= k₀
        η(k) = η₀ · r^p              after, bounded by end_value if given

    Args:
        init_value: η₀.
        transition_steps: K, the number of steps per factor r, > 0.
        decay_rate: r, > 0 (< 1 decays, > 1 grows).
        transition_begin: k₀, the step the decay starts at, >= 0.
        staircase: decay in whole factors, once every K steps.
        end_value: a floor (r < 1) or ceiling (r > 1) for the value, or `None`.

    Returns:
        A `Schedule`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> s = optim.exponential_decay(1.0, transition_steps=2, decay_rate=0.5,
        ...                             staircase=True)
        >>> print(s(jnp.arange(6, dtype=jnp.int32)))
        [1.   1.   0.5  0.5  0.25 0.25]
    """
    check_positive("exponential_decay", "transition_steps", transition_steps)
    check_positive("exponential_decay", "decay_rate", decay_rate)
    check_non_negative("exponential_decay", "transition_begin", transition_begin)
    bound = None
    if end_value is not None:
        bound = jnp.maximum if decay_rate < 1 else jnp.minimum

    def schedule(count: jax.Array) -> jax.Array:
        steps_in = count - transition_begin
        p = steps_in / transition_steps
        if staircase:
            p = jnp.floor(p)
        value = jnp.where(steps_in <= 0, init_value, init_value * jnp.power(decay_rate, p))
        if bound is not None:
            value = bound(value, end_value)
        return value

    return schedule


def cosine_decay_schedule(
    init_value: float | jax.Array,
    decay_steps: int,
    alpha: float | jax.Array = 0.0,
    exponent: float | jax.Array = 1.0,
) -> Schedule:
    """Half a cosine from η₀ down to α·η₀ over `decay_steps`, then hold.

        c = ½·(1 + cos(π · min(k, K) / K))
        η(k) = η₀ · ((1 − α)·c^exponent + α)

    Args:
        init_value: η₀.
        decay_steps: K, > 0.
        alpha: the final value as a fraction of η₀.
        exponent: the power of the cosine factor (1 for the usual schedule).

    Returns:
        A `Schedule`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> s = optim.cosine_decay_schedule(1.0, decay_steps=2)
        >>> print(s(jnp.arange(4, dtype=jnp.int32)).round(4))
        [1.  0.5 0.  0. ]

    References:
        Loshchilov & Hutter, SGDR: stochastic gradient descent with warm
        restarts, ICLR 2017.
    """
    check_positive("cosine_decay_schedule", "decay_steps", decay_steps)

    def schedule(count: jax.Array) -> jax.Array:
        # Python ints become floats so that a large count cannot overflow int32.
        steps = float(decay_steps)
        k = float(count) if isinstance(count, int) else count
        k = jnp.minimum(k, steps)
        cosine = 0.5 * (1 + jnp.cos(jnp.pi * k / steps))
        return init_value * ((1 - alpha) * cosine**exponent + alpha)

    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run schedules one after the other, each restarting its count at 0.

        η(k) = s_i(k − b_i)          for b_i <= k < b_{i+1}   (b_0 = 0)

    Args:
        schedules: n schedules.
        boundaries: the n − 1 steps at which the next schedule takes over, >= 0
            and in increasing order.

    Returns:
        A `Schedule`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> s = optim.join_schedules(
        ...     [optim.constant_schedule(1.0), optim.constant_schedule(0.5)], [2])
        >>> print(s(jnp.arange(4, dtype=jnp.int32)))
        [1.  1.  0.5 0.5]
    """
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"join_schedules: boundaries must have one entry fewer than schedules "
            f"(one per hand-over), got {len(schedules)} schedules and "
            f"{len(boundaries)} boundaries."
        )
    for boundary in boundaries:
        check_kind("join_schedules", "a boundary", boundary)
    if list(boundaries) != sorted(boundaries) or any(b < 0 for b in boundaries):
        raise ValueError(
            "join_schedules: boundaries must be steps >= 0 in increasing order (the "
            f"hand-overs, one after the other), got {list(boundaries)}."
        )

    def schedule(count: jax.Array) -> jax.Array:
        value = schedules[0](count)
        for boundary, later in zip(boundaries, schedules[1:], strict=True):
            value = jnp.where(count < boundary, value, later(count - boundary))
        return value

    return schedule


def warmup_cosine_decay_schedule(
    init_value: float | jax.Array,
    peak_value: float | jax.Array,
    warmup_steps: int,
    decay_steps: int,
    end_value: float | jax.Array = 0.0,
    exponent: float | jax.Array = 1.0,
) -> Schedule:
    """A linear warm-up to a peak, then a cosine decay to `end_value`.

        η(k) = η₀ + (η_peak − η₀)·k/W                     for k < W
        η(k) = cosine decay from η_peak to η_end over K − W steps, after

    Warm-up keeps the first, poorly-informed steps of Adam-like methods small
    while their second-moment estimates settle.

    Args:
        init_value: η₀, the value at k = 0.
        peak_value: η_peak, reached at k = W.
        warmup_steps: W, >= 0.
        decay_steps: K, the total length including the warm-up, > W.
        end_value: η_end, the value from k = K on.
        exponent: the power of the cosine factor.

    Returns:
        A `Schedule`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> s = optim.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=2,
        ...                                        decay_steps=4)
        >>> print(s(jnp.arange(5, dtype=jnp.int32)).round(4))
        [0.  0.5 1.  0.5 0. ]
    """
    check_non_negative("warmup_cosine_decay_schedule", "warmup_steps", warmup_steps)
    if decay_steps <= warmup_steps:
        raise ValueError(
            "warmup_cosine_decay_schedule: decay_steps counts the warm-up too and "
            f"must be > warmup_steps, got decay_steps={decay_steps}, "
            f"warmup_steps={warmup_steps}."
        )
    alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    return join_schedules(
        [
            linear_schedule(init_value, peak_value, transition_steps=warmup_steps),
            cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent),
        ],
        [warmup_steps],
    )
