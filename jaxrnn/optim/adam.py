"""Adam and Adamax: bias-corrected running moments of the gradient.

Adam puts momentum (a running mean of g) over RMSprop (the root of a running
mean of g²); Adamax replaces the root mean square by a decaying maximum.
Notation as in `jaxrnn.optim.transforms`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn.optim._checks import check_decay, check_flag, check_non_negative
from jaxrnn.optim._tree import abs_sq, bias_corrected, ema, keep_dtypes, zero_count, zeros_like
from jaxrnn.optim.base import GradientTransformation, Params, Updates, safe_increment


class ScaleByAdamState(NamedTuple):
    """Adam's (and Adamax's) state.

    Attributes:
        count: the number of steps taken (int32), t in the bias correction.
        mu: the EMA of g (first moment).
        nu: the EMA of g² (Adam) or the decaying maximum of |g| (Adamax).
    """

    count: jax.Array
    mu: Updates
    nu: Updates


def scale_by_adam(
    b1: float | jax.Array = 0.9,
    b2: float | jax.Array = 0.999,
    eps: float | jax.Array = 1e-8,
    eps_root: float | jax.Array = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Adam's scaling: a running mean of g over the root of a running mean of g².

        m ← β₁·m + (1 − β₁)·g,       m̂ = m / (1 − β₁ᵗ)
        v ← β₂·v + (1 − β₂)·g²,      v̂ = v / (1 − β₂ᵗ)
        u = m̂ / (√(v̂ + ε_root) + ε)

    Momentum (m) and RMSprop (v) together; the bias corrections undo the pull
    of the zero initial values during the first `~1/(1 − β)` steps. With
    `nesterov` (NAdam), m̂ is replaced by the look-ahead
    `β₁·m / (1 − β₁ᵗ⁺¹) + (1 − β₁)·g / (1 − β₁ᵗ)`.

    Args:
        b1: β₁, in [0, 1).
        b2: β₂, in [0, 1).
        eps: ε, outside the root, >= 0.
        eps_root: ε_root, inside the root, >= 0 (keeps meta-gradients finite).
        mu_dtype: dtype of m; `None` keeps each parameter's dtype.
        nesterov: use Dozat's Nesterov form (NAdam).

    Returns:
        A `GradientTransformation` with state `ScaleByAdamState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.scale_by_adam(eps=0.0)
        >>> g = jnp.array([0.5, -3.0], dtype=jnp.float32)
        >>> print(tx.update(g, tx.init(g))[0].round(4))  # the first step is sign(g)
        [ 1. -1.]

    References:
        Kingma & Ba, Adam: a method for stochastic optimization, ICLR 2015.
        Dozat, Incorporating Nesterov momentum into Adam, ICLR workshop 2016.
    """
    check_decay("scale_by_adam", "b1", b1)
    nesterov = check_flag("scale_by_adam", "nesterov", nesterov)
    check_decay("scale_by_adam", "b2", b2)
    check_non_negative("scale_by_adam", "eps", eps)
    check_non_negative("scale_by_adam", "eps_root", eps_root)

    def init(params: Params) -> ScaleByAdamState:
        return ScaleByAdamState(
            count=zero_count(), mu=zeros_like(params, mu_dtype), nu=zeros_like(params)
        )

    def update(
        updates: Updates, state: ScaleByAdamState, params: Params | None = None
    ) -> tuple[Updates, ScaleByAdamState]:
        del params
        count = safe_increment(state.count)
        mu = ema(updates, state.mu, b1)
        nu = ema(jax.tree.map(abs_sq, updates), state.nu, b2)
        if nesterov:
            mu_hat = jax.tree.map(
                lambda m, g: b1 * m + (1 - b1) * g,
                bias_corrected(mu, b1, safe_increment(count)),
                bias_corrected(updates, b1, count),
            )
        else:
            mu_hat = bias_corrected(mu, b1, count)
        nu_hat = bias_corrected(nu, b2, count)
        updates = jax.tree.map(lambda m, v: m / (jnp.sqrt(v + eps_root) + eps), mu_hat, nu_hat)
        mu, nu = keep_dtypes(mu, state.mu), keep_dtypes(nu, state.nu)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)


def scale_by_adamax(
    b1: float | jax.Array = 0.9, b2: float | jax.Array = 0.999, eps: float | jax.Array = 1e-8
) -> GradientTransformation:
    """Adamax's scaling: Adam with the infinity norm in place of the root mean square.

        m ← β₁·m + (1 − β₁)·g,       m̂ = m / (1 − β₁ᵗ)
        v ← max(β₂·v, |g| + ε)
        u = m̂ / v

    The decaying maximum needs no bias correction: it is not pulled towards
    its zero start. ε sits inside the maximum, as in optax and PyTorch.

    Args:
        b1: β₁, in [0, 1).
        b2: β₂, in [0, 1).
        eps: ε, >= 0.

    Returns:
        A `GradientTransformation` with state `ScaleByAdamState` (`nu` holds v).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.scale_by_adamax(eps=0.0)
        >>> g = jnp.array([0.5, -3.0], dtype=jnp.float32)
        >>> print(tx.update(g, tx.init(g))[0].round(4))
        [ 1. -1.]

    References:
        Kingma & Ba, Adam: a method for stochastic optimization, ICLR 2015,
        section 7.1.
    """
    check_decay("scale_by_adamax", "b1", b1)
    check_decay("scale_by_adamax", "b2", b2)
    check_non_negative("scale_by_adamax", "eps", eps)

    def init(params: Params) -> ScaleByAdamState:
        return ScaleByAdamState(count=zero_count(), mu=zeros_like(params), nu=zeros_like(params))

    def update(
        updates: Updates, state: ScaleByAdamState, params: Params | None = None
    ) -> tuple[Updates, ScaleByAdamState]:
        del params
        count = safe_increment(state.count)
        mu = ema(updates, state.mu, b1)
        nu = jax.tree.map(lambda g, v: jnp.maximum(b2 * v, jnp.abs(g) + eps), updates, state.nu)
        mu_hat = bias_corrected(mu, b1, count)
        updates = jax.tree.map(lambda m, v: m / v, mu_hat, nu)
        mu, nu = keep_dtypes(mu, state.mu), keep_dtypes(nu, state.nu)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init, update)
