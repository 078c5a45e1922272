"""The named optimizers, each a `chain` of building blocks ending in the learning rate.

Names and hyper-parameter names follow optax, so that the two read line by
line side by side; every learning rate is positive and may be a schedule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jaxrnn.optim._checks import (
    check_decay,
    check_flag,
    check_learning_rate,
    check_non_negative,
)
from jaxrnn.optim.adam import scale_by_adam, scale_by_adamax
from jaxrnn.optim.base import GradientTransformation, Params, ScalarOrSchedule, chain, identity
from jaxrnn.optim.scaling import add_decayed_weights, scale_by_learning_rate
from jaxrnn.optim.transforms import scale_by_adadelta, scale_by_rms, scale_by_rss, trace

Scalar = float | jax.Array


def _check_adam(where: str, learning_rate: Any, b1: Any, b2: Any, eps: Any, eps_root: Any) -> None:
    check_learning_rate(where, learning_rate)
    check_decay(where, "b1", b1)
    check_decay(where, "b2", b2)
    check_non_negative(where, "eps", eps)
    check_non_negative(where, "eps_root", eps_root)


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: Scalar | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> GradientTransformation:
    """Stochastic gradient descent, with optional (Nesterov) momentum.

        u = −η·g                                 (momentum=None)
        m ← μ·m + g,  u = −η·m                   (heavy ball)
        m ← μ·m + g,  u = −η·(g + μ·m)           (nesterov=True)

    Args:
        learning_rate: η, >= 0, or a schedule.
        momentum: μ in [0, 1), or `None` for plain gradient descent.
        nesterov: use Nesterov's look-ahead form (needs `momentum`).
        accumulator_dtype: dtype of the momentum buffer; `None` keeps the
            parameters' dtype.

    Returns:
        A `GradientTransformation`: `chain(trace, scale_by_learning_rate)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.sgd(0.1, momentum=0.9)
        >>> p = jnp.array([1.0], dtype=jnp.float32)
        >>> u, state = tx.update(p, tx.init(p), p)
        >>> u, state = tx.update(p, state, p)
        >>> u  # −0.1·(1 + 0.9·1)
        Array([-0.19], dtype=float32)

    References:
        Robbins & Monro, A stochastic approximation method, 1951. Polyak,
        1964; Sutskever et al., ICML 2013 (momentum, Nesterov).
    """
    check_learning_rate("sgd", learning_rate)
    nesterov = check_flag("sgd", "nesterov", nesterov)
    if momentum is not None:
        check_decay("sgd", "momentum", momentum)
    elif nesterov:
        raise ValueError(
            "sgd: nesterov=True needs a momentum in [0, 1), got momentum=None; "
            "pass e.g. momentum=0.9."
        )
    return chain(
        trace(momentum, nesterov, accumulator_dtype) if momentum is not None else identity(),
        scale_by_learning_rate(learning_rate),
    )


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: Scalar = 0.1,
    eps: Scalar = 1e-7,
) -> GradientTransformation:
    """Adagrad: a step size per parameter, from the sum of its squared gradients.

        G ← G + g²,   u = −η·g / √(G + ε)

    Args:
        learning_rate: η, >= 0, or a schedule.
        initial_accumulator_value: G at the start, >= 0 (optax 0.1, PyTorch 0).
        eps: ε, inside the root, >= 0 (PyTorch: 1e-10, outside the root).

    Returns:
        A `GradientTransformation`: `chain(scale_by_rss, scale_by_learning_rate)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0)
        >>> g = jnp.array([10.0, -0.01], dtype=jnp.float32)
        >>> tx.update(g, tx.init(g))[0]  # the same first step for both
        Array([-0.1,  0.1], dtype=float32)

    References:
        Duchi, Hazan & Singer, JMLR 2011.
    """
    check_learning_rate("adagrad", learning_rate)
    check_non_negative("adagrad", "initial_accumulator_value", initial_accumulator_value)
    check_non_negative("adagrad", "eps", eps)
    return chain(
        scale_by_rss(initial_accumulator_value, eps), scale_by_learning_rate(learning_rate)
    )


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: Scalar = 0.9,
    eps: Scalar = 1e-8,
    initial_scale: Scalar = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: Scalar | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> GradientTransformation:
    """RMSprop: divide by the root of a running average of squared gradients.

        ν ← ρ·ν + (1 − ρ)·g²
        u = −η·g / √(ν + ε)          (eps_in_sqrt=True)
        u = −η·g / (√ν + ε)          (eps_in_sqrt=False: PyTorch's form)

    `centered` uses ν − μ² (μ the running mean of g) in place of ν.
    With `momentum`, the scaled step `−η·g/√…` is then traced, `m ← μ·m + u`,
    as PyTorch does: the momentum acts after the learning rate.

    Args:
        learning_rate: η, >= 0, or a schedule.
        decay: ρ, in [0, 1) (optax 0.9, PyTorch's `alpha` 0.99).
        eps: ε, >= 0.
        initial_scale: ν at the start, >= 0 (1.0 in TensorFlow 1).
        eps_in_sqrt: add ε inside the root (optax) or outside it (PyTorch).
        centered: divide by a running standard deviation (Graves 2013).
        momentum: momentum coefficient in [0, 1), or `None`.
        nesterov: Nesterov's form of the momentum.
        bias_correction: divide the running averages by `1 − ρ^t`.

    Returns:
        A `GradientTransformation`: `chain(scale_by_rms, scale_by_learning_rate, trace)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.rmsprop(0.01, decay=0.75, eps=0.0)
        >>> g = jnp.array([2.0, -2.0], dtype=jnp.float32)
        >>> tx.update(g, tx.init(g))[0]  # ν = 0.25·g² = 1
        Array([-0.02,  0.02], dtype=float32)

    References:
        Tieleman & Hinton, Lecture 6.5, COURSERA 2012. Graves, Generating
        sequences with recurrent neural networks, 2013.
    """
    check_learning_rate("rmsprop", learning_rate)
    check_decay("rmsprop", "decay", decay)
    check_non_negative("rmsprop", "eps", eps)
    check_non_negative("rmsprop", "initial_scale", initial_scale)
    if momentum is not None:
        check_decay("rmsprop", "momentum", momentum)
    elif nesterov:
        raise ValueError("rmsprop: nesterov=True needs a momentum in [0, 1), got momentum=None.")
    return chain(
        scale_by_rms(decay, eps, initial_scale, eps_in_sqrt, centered, bias_correction),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov) if momentum is not None else identity(),
    )


def adadelta(
    learning_rate: ScalarOrSchedule = 1.0, rho: Scalar = 0.9, eps: Scalar = 1e-6
) -> GradientTransformation:
    """Adadelta: RMS of past steps over RMS of past gradients; no learning rate needed.

        E[g²] ← ρ·E[g²] + (1 − ρ)·g²
        Δ = √(E[Δ²] + ε) / √(E[g²] + ε) · g
        E[Δ²] ← ρ·E[Δ²] + (1 − ρ)·Δ²
        u = −η·Δ

    Zeiler's method has no learning rate, hence the default η = 1. (optax's
    `adadelta()` defaults to `learning_rate=None`, which leaves out the sign
    flip as well and so climbs the loss; PyTorch's default is 1.0.)

    Args:
        learning_rate: η, >= 0, or a schedule.
        rho: ρ, in [0, 1) (Zeiler 0.95, optax 0.9, PyTorch 0.9).
        eps: ε, >= 0 (Zeiler 1e-6, optax 1e-6, PyTorch 1e-6).

    Returns:
        A `GradientTransformation`: `chain(scale_by_adadelta, scale_by_learning_rate)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.adadelta(rho=0.0, eps=9.0)
        >>> g = jnp.array([4.0], dtype=jnp.float32)
        >>> print(tx.update(g, tx.init(g))[0])  # −√(0 + 9) / √(16 + 9) · 4
        [-2.4]

    References:
        Zeiler, ADADELTA: an adaptive learning rate method, 2012.
    """
    check_learning_rate("adadelta", learning_rate)
    check_decay("adadelta", "rho", rho)
    check_non_negative("adadelta", "eps", eps)
    return chain(scale_by_adadelta(rho, eps), scale_by_learning_rate(learning_rate))


def adam(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """Adam: momentum over RMSprop, with bias-corrected running averages.

        m ← β₁·m + (1 − β₁)·g,       m̂ = m / (1 − β₁ᵗ)
        v ← β₂·v + (1 − β₂)·g²,      v̂ = v / (1 − β₂ᵗ)
        u = −η·m̂ / (√(v̂ + ε_root) + ε)

    Args:
        learning_rate: η, >= 0, or a schedule.
        b1: β₁, in [0, 1).
        b2: β₂, in [0, 1).
        eps: ε, outside the root, >= 0.
        eps_root: ε_root, inside the root, >= 0.
        mu_dtype: dtype of m; `None` keeps the parameters' dtype.
        nesterov: NAdam's look-ahead first moment (see `nadam`).

    Returns:
        A `GradientTransformation`: `chain(scale_by_adam, scale_by_learning_rate)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.adam(0.001, eps=0.0)
        >>> g = jnp.array([0.5, -3.0], dtype=jnp.float32)
        >>> print(tx.update(g, tx.init(g))[0].round(6))  # the first step is −η·sign(g)
        [-0.001  0.001]

    References:
        Kingma & Ba, Adam: a method for stochastic optimization, ICLR 2015.
    """
    _check_adam("adam", learning_rate, b1, b2, eps, eps_root)
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Any | Callable[[Params], Any] | None = None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """AdamW: Adam with weight decay decoupled from the gradient's rescaling.

        u = −η·(m̂ / (√(v̂ + ε_root) + ε) + λ·θ)

    Weight decay added to the gradient before Adam would be divided by √v̂
    like the rest and so decay weights with large gradients least;
    decoupled, every weight shrinks by the same factor `1 − η·λ` per step.

    Args:
        learning_rate: η, >= 0, or a schedule.
        b1: β₁, in [0, 1).
        b2: β₂, in [0, 1).
        eps: ε, outside the root, >= 0.
        eps_root: ε_root, inside the root, >= 0.
        mu_dtype: dtype of m; `None` keeps the parameters' dtype.
        weight_decay: λ, >= 0, or a schedule (optax 1e-4, PyTorch 1e-2).
        mask: which parameters decay (see `add_decayed_weights`); `None` for all.
        nesterov: NAdam's look-ahead first moment.

    Returns:
        A `GradientTransformation`:
        `chain(scale_by_adam, add_decayed_weights, scale_by_learning_rate)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.adamw(0.1, weight_decay=0.5)
        >>> p = jnp.array([2.0], dtype=jnp.float32)
        >>> tx.update(jnp.zeros(1, dtype=jnp.float32), tx.init(p), p)[0]  # −0.1·0.5·2
        Array([-0.1], dtype=float32)

    References:
        Loshchilov & Hutter, Decoupled weight decay regularization, ICLR 2019.
    """
    _check_adam("adamw", learning_rate, b1, b2, eps, eps_root)
    check_non_negative("adamw", "weight_decay", weight_decay)
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def adamax(
    learning_rate: ScalarOrSchedule, b1: Scalar = 0.9, b2: Scalar = 0.999, eps: Scalar = 1e-8
) -> GradientTransformation:
    """Adamax: Adam with a decaying maximum of |g| in place of the root mean square.

        m ← β₁·m + (1 − β₁)·g,       v ← max(β₂·v, |g| + ε)
        u = −η·m / ((1 − β₁ᵗ)·v)

    Args:
        learning_rate: η, >= 0, or a schedule.
        b1: β₁, in [0, 1).
        b2: β₂, in [0, 1).
        eps: ε, >= 0.

    Returns:
        A `GradientTransformation`: `chain(scale_by_adamax, scale_by_learning_rate)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.adamax(0.002, eps=0.0)
        >>> g = jnp.array([0.5, -3.0], dtype=jnp.float32)
        >>> print(tx.update(g, tx.init(g))[0].round(6))
        [-0.002  0.002]

    References:
        Kingma & Ba, ICLR 2015, section 7.1.
    """
    _check_adam("adamax", learning_rate, b1, b2, eps, 0.0)
    return chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))


def nadam(
    learning_rate: ScalarOrSchedule,
    b1: Scalar = 0.9,
    b2: Scalar = 0.999,
    eps: Scalar = 1e-8,
    eps_root: Scalar = 0.0,
    mu_dtype: Any = None,
) -> GradientTransformation:
    """NAdam: Adam with Nesterov's look-ahead in the first moment.

        m̂ = β₁·m / (1 − β₁ᵗ⁺¹) + (1 − β₁)·g / (1 − β₁ᵗ)
        u = −η·m̂ / (√(v̂ + ε_root) + ε)

    This is optax's `nadam` (`adam(..., nesterov=True)`). PyTorch's `NAdam`
    also warms the momentum up with a `momentum_decay` schedule, so the two
    differ.

    Args:
        learning_rate: η, >= 0, or a schedule.
        b1: β₁, in [0, 1).
        b2: β₂, in [0, 1).
        eps: ε, outside the root, >= 0.
        eps_root: ε_root, inside the root, >= 0.
        mu_dtype: dtype of m; `None` keeps the parameters' dtype.

    Returns:
        A `GradientTransformation`: `adam(..., nesterov=True)`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxrnn import optim
        >>> tx = optim.nadam(0.001)
        >>> g = jnp.ones(2, dtype=jnp.float32)
        >>> tx.update(g, tx.init(g))[0].dtype
        dtype('float32')

    References:
        Dozat, Incorporating Nesterov momentum into Adam, ICLR workshop 2016.
    """
    _check_adam("nadam", learning_rate, b1, b2, eps, eps_root)
    return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=True)
