"""The building blocks of momentum, Adagrad, RMSprop and Adadelta.

Running statistics of the gradient that rescale it (Adam's are in
`jaxrnn.optim.adam`). Each factory closes over its hyper-parameters and returns a
`GradientTransformation` whose state is a small `NamedTuple`. The optimizers
in `jaxrnn.optim.optimizers` are chains of these blocks followed by
`scale_by_learning_rate`. Notation, elementwise: `g` is the incoming update
(the gradient), `t = 1, 2, …` counts the steps, and a running average
`x ← d·x + (1 − d)·y` is an exponential moving average (EMA) with decay `d`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn.optim._checks import check_decay, check_flag, check_non_negative
from jaxrnn.optim._tree import (
    abs_sq,
    bias_corrected,
    ema,
    full_like,
    keep_dtypes,
    zero_count,
    zeros_like,
)
from jaxrnn.optim.base import GradientTransformation, Params, Updates, safe_increment

# ---------------------------------------------------------------------- momentum


class TraceState(NamedTuple):
    """The momentum buffer: a decaying sum of past updates."""

    trace: Updates


def trace(
    decay: float | jax.Array, nesterov: bool = False, accumulator_dtype: Any = None
) -> GradientTransformation:
    """Heavy-ball momentum: keep a decaying sum of past updates.

        m ← μ·m + g                  (m starts at 0)
        u = m                        (heavy ball, Polyak 1964)
        u = g + μ·m                  (Nesterov: look one step ahead)

    Momentum averages out the zig-zag across a narrow valley and builds up
    speed along its floor: with a constant gradient the step grows towards
    `g / (1 − μ)`.

    Args:
        decay: μ, the momentum coefficient, in [0, 1).
        nesterov: use Nesterov's look-ahead form (Sutskever et al. 2013).
        accumulator_dtype: dtype of `m`; `None` keeps each parameter's dtype.

    Returns:
        A `GradientTransformation` with state `TraceState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.trace(decay=0.9)
        >>> g = jnp.ones(2, dtype=jnp.float32)
        >>> u, state = tx.update(g, tx.init(g))
        >>> u, state = tx.update(g, state)
        >>> u
        Array([1.9, 1.9], dtype=float32)

    References:
        Polyak, Some methods of speeding up the convergence of iteration
        methods, 1964. Sutskever, Martens, Dahl & Hinton, On the importance of
        initialization and momentum in deep learning, ICML 2013.
    """
    check_decay("trace", "decay", decay)
    nesterov = check_flag("trace", "nesterov", nesterov)

    def init(params: Params) -> TraceState:
        return TraceState(trace=zeros_like(params, accumulator_dtype))

    def update(
        updates: Updates, state: TraceState, params: Params | None = None
    ) -> tuple[Updates, TraceState]:
        del params
        m = jax.tree.map(lambda g, m: g + decay * m, updates, state.trace)
        updates = jax.tree.map(lambda g, m: g + decay * m, updates, m) if nesterov else m
        if accumulator_dtype is not None:
            m = jax.tree.map(lambda x: x.astype(accumulator_dtype), m)
        else:
            m = keep_dtypes(m, state.trace)
        return updates, TraceState(trace=m)

    return GradientTransformation(init, update)


# ----------------------------------------------------------------------- Adagrad


class ScaleByRssState(NamedTuple):
    """Adagrad's accumulator: the sum of all squared gradients so far."""

    sum_of_squares: Updates


def scale_by_rss(
    initial_accumulator_value: float | jax.Array = 0.1, eps: float | jax.Array = 1e-7
) -> GradientTransformation:
    """Adagrad's scaling: divide by the root of the sum of squared gradients.

        G ← G + g²                   (G starts at initial_accumulator_value)
        u = g / √(G + ε)

    Each parameter gets its own step size, large for rarely-seen, small
    gradients and small for frequent, large ones. Because `G` only grows, the
    steps shrink for ever: the problem RMSprop fixes.

    Args:
        initial_accumulator_value: G at the start, >= 0 (optax: 0.1; PyTorch: 0).
        eps: ε, added inside the root, >= 0 (PyTorch adds its 1e-10 outside).

    Returns:
        A `GradientTransformation` with state `ScaleByRssState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.scale_by_rss(initial_accumulator_value=0.0, eps=0.0)
        >>> g = jnp.array([3.0, -4.0], dtype=jnp.float32)
        >>> tx.update(g, tx.init(g))[0]  # the first step is the gradient's sign
        Array([ 1., -1.], dtype=float32)

    References:
        Duchi, Hazan & Singer, Adaptive subgradient methods for online
        learning and stochastic optimization, JMLR 2011.
    """
    check_non_negative("scale_by_rss", "initial_accumulator_value", initial_accumulator_value)
    check_non_negative("scale_by_rss", "eps", eps)

    def init(params: Params) -> ScaleByRssState:
        return ScaleByRssState(sum_of_squares=full_like(params, initial_accumulator_value))

    def update(
        updates: Updates, state: ScaleByRssState, params: Params | None = None
    ) -> tuple[Updates, ScaleByRssState]:
        del params
        G = jax.tree.map(lambda g, G: G + abs_sq(g), updates, state.sum_of_squares)
        # Where G is still 0 the gradient has always been 0: step 0, not 0/√0.
        inv_root = jax.tree.map(lambda G: jnp.where(G > 0, jax.lax.rsqrt(G + eps), 0.0), G)
        updates = jax.tree.map(lambda s, g: s * g, inv_root, updates)
        return updates, ScaleByRssState(sum_of_squares=G)

    return GradientTransformation(init, update)


# ----------------------------------------------------------------------- RMSprop


class ScaleByRmsState(NamedTuple):
    """RMSprop's running averages.

    Attributes:
        count: the number of steps taken (int32) with `bias_correction`,
            else `None` (an unused counter would cost a kernel per step).
        mu: the EMA of g when `centered`, else `None`.
        nu: the EMA of g².
    """

    count: jax.Array | None
    mu: Updates | None
    nu: Updates


def scale_by_rms(
    decay: float | jax.Array = 0.9,
    eps: float | jax.Array = 1e-8,
    initial_scale: float | jax.Array = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    bias_correction: bool = False,
) -> GradientTransformation:
    """RMSprop's scaling: divide by the root of a running average of g².

        ν ← ρ·ν + (1 − ρ)·g²         (ν starts at initial_scale)
        μ ← ρ·μ + (1 − ρ)·g          (centered only; μ starts at 0)
        s = ν − μ²  if centered else ν
        u = g / √(s + ε)             (eps_in_sqrt=True, optax)
        u = g / (√s + ε)             (eps_in_sqrt=False, PyTorch)

    Adagrad's sum becomes an average over roughly the last `1/(1 − ρ)` steps,
    so the step size no longer decays to zero. The centered form divides by
    an estimate of the standard deviation instead of the root mean square.
    With `bias_correction`, ν and μ are divided by `1 − ρ^t` first. Where
    rounding makes the centered variance ν − μ² negative enough to put a
    negative number under the root, it is taken as 0 (optax returns NaN there).

    Args:
        decay: ρ, in [0, 1) (optax: 0.9, PyTorch: 0.99).
        eps: ε, >= 0.
        initial_scale: ν at the start, >= 0.
        eps_in_sqrt: add ε inside the root (True) or outside it (False).
        centered: subtract the squared running mean of g.
        bias_correction: divide the averages by `1 − ρ^t`.

    Returns:
        A `GradientTransformation` with state `ScaleByRmsState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.scale_by_rms(decay=0.75, eps=0.0)
        >>> g = jnp.array([2.0, -2.0], dtype=jnp.float32)
        >>> tx.update(g, tx.init(g))[0]  # ν = 0.25·4 = 1
        Array([ 2., -2.], dtype=float32)

    References:
        Tieleman & Hinton, Lecture 6.5, rmsprop, COURSERA: Neural Networks for
        Machine Learning, 2012. Graves, Generating sequences with recurrent
        neural networks, 2013 (the centered form).
    """
    check_decay("scale_by_rms", "decay", decay)
    check_non_negative("scale_by_rms", "eps", eps)
    check_non_negative("scale_by_rms", "initial_scale", initial_scale)

    def init(params: Params) -> ScaleByRmsState:
        return ScaleByRmsState(
            count=zero_count() if bias_correction else None,
            mu=zeros_like(params) if centered else None,
            nu=full_like(params, initial_scale),
        )

    def update(
        updates: Updates, state: ScaleByRmsState, params: Params | None = None
    ) -> tuple[Updates, ScaleByRmsState]:
        del params
        count = safe_increment(state.count) if bias_correction else None
        nu = ema(jax.tree.map(abs_sq, updates), state.nu, decay)
        mu = ema(updates, state.mu, decay) if centered else None
        nu_hat = bias_corrected(nu, decay, count) if bias_correction else nu
        if centered:
            mu_hat = bias_corrected(mu, decay, count) if bias_correction else mu
            s = jax.tree.map(lambda n, m: n - abs_sq(m), nu_hat, mu_hat)
        else:
            s = nu_hat
        if eps_in_sqrt:
            scaling = jax.tree.map(lambda s: jax.lax.rsqrt(s + eps), s)
        else:
            scaling = jax.tree.map(lambda s: 1 / (jnp.sqrt(s) + eps), s)
        if centered:
            # ν − μ² >= 0 in exact arithmetic, but rounding can take it below
            # zero when the gradient barely varies (at t = 1 with bias
            # correction it is 0 exactly, in bfloat16 the rounding exceeds eps):
            # where the root would be of a negative number, and only there (so
            # that all else equals optax bit for bit), take the variance as 0.
            radicand = (lambda s: s + eps) if eps_in_sqrt else (lambda s: s)
            at_zero = 1 / (jnp.sqrt(jnp.asarray(eps)) if eps_in_sqrt else jnp.asarray(eps))
            scaling = jax.tree.map(
                lambda k, s: jnp.where(radicand(s) < 0, at_zero.astype(k.dtype), k), scaling, s
            )
        updates = jax.tree.map(lambda k, g: k * g, scaling, updates)
        mu = keep_dtypes(mu, state.mu) if centered else None
        return updates, ScaleByRmsState(count=count, mu=mu, nu=keep_dtypes(nu, state.nu))

    return GradientTransformation(init, update)


# ---------------------------------------------------------------------- Adadelta


class ScaleByAdadeltaState(NamedTuple):
    """Adadelta's running averages of the squared gradients and squared steps."""

    e_g: Updates
    e_x: Updates


def scale_by_adadelta(
    rho: float | jax.Array = 0.9, eps: float | jax.Array = 1e-6
) -> GradientTransformation:
    """Adadelta's scaling: RMS of past steps over RMS of past gradients.

        E[g²] ← ρ·E[g²] + (1 − ρ)·g²
        Δ = √(E[Δ²] + ε) / √(E[g²] + ε) · g      (E[Δ²] from the previous step)
        E[Δ²] ← ρ·E[Δ²] + (1 − ρ)·Δ²
        u = Δ

    The ratio has the units of the parameters (Zeiler's "correct units"), so
    the method needs no learning rate; ε both avoids 0/0 and starts the
    numerator off the ground. `E[Δ²]` stores Δ before any learning rate.

    Args:
        rho: ρ, in [0, 1).
        eps: ε, >= 0 (inside both roots).

    Returns:
        A `GradientTransformation` with state `ScaleByAdadeltaState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.scale_by_adadelta(rho=0.0, eps=9.0)
        >>> g = jnp.array([0.0, 4.0], dtype=jnp.float32)
        >>> print(tx.update(g, tx.init(g))[0])  # √(0 + 9) / √(16 + 9) · 4
        [0.  2.4]

    References:
        Zeiler, ADADELTA: an adaptive learning rate method, 2012.
    """
    check_decay("scale_by_adadelta", "rho", rho)
    check_non_negative("scale_by_adadelta", "eps", eps)

    def init(params: Params) -> ScaleByAdadeltaState:
        return ScaleByAdadeltaState(e_g=zeros_like(params), e_x=zeros_like(params))

    def update(
        updates: Updates, state: ScaleByAdadeltaState, params: Params | None = None
    ) -> tuple[Updates, ScaleByAdadeltaState]:
        del params
        e_g = ema(jax.tree.map(abs_sq, updates), state.e_g, rho)
        delta = jax.tree.map(
            lambda g, e_g, e_x: (jnp.sqrt(e_x + eps) / jnp.sqrt(e_g + eps)) * g,
            updates,
            e_g,
            state.e_x,
        )
        e_x = ema(jax.tree.map(abs_sq, delta), state.e_x, rho)
        return delta, ScaleByAdadeltaState(
            e_g=keep_dtypes(e_g, state.e_g), e_x=keep_dtypes(e_x, state.e_x)
        )

    return GradientTransformation(init, update)
