"""Initialisers for recurrent weights, by name.

Every recurrent cell in jaxrnn initialises its parameters with one of three
schemes, chosen by the ``init`` argument of its constructor:

``"pytorch"``
    Every weight and bias drawn from U(-1/sqrt(H), 1/sqrt(H)), PyTorch's
    ``nn.RNN/LSTM/GRU`` default (H is the hidden size).
``"orthogonal"``
    Input weights Glorot-uniform, recurrent weights orthogonal (one orthogonal
    (H, H) block per gate), biases zero: the flax and Keras default
    (Saxe et al. 2014; Glorot & Bengio 2010).
``"identity"``
    Elman only: the recurrent matrix is the identity, input weights
    N(0, 0.001²), biases zero: the IRNN of Le, Jaitly & Hinton (2015), used
    with a ReLU activation.

The functions here take a PRNG key, a shape and a dtype, as
``jax.nn.initializers`` do, so they can be used on their own too.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

Array = jax.Array
InitScheme = Literal["pytorch", "orthogonal", "identity"]
INIT_SCHEMES: tuple[str, ...] = ("pytorch", "orthogonal", "identity")

__all__ = [
    "INIT_SCHEMES",
    "InitScheme",
    "glorot_uniform",
    "identity",
    "orthogonal_blocks",
    "uniform",
]


def uniform(key: Array, shape: tuple[int, ...], dtype: DTypeLike, scale: float) -> Array:
    """Draws from U(-scale, scale).

    Args:
      key: a PRNG key.
      shape: the shape of the array to draw.
      dtype: its dtype.
      scale: the half-width of the interval; PyTorch uses 1/sqrt(hidden_size).

    Returns:
      An array of ``shape`` and ``dtype``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxrnn.init import uniform
      >>> w = uniform(jax.random.key(0), (3, 4), jnp.float32, scale=0.5)
      >>> w.shape, w.dtype, bool(jnp.all(jnp.abs(w) <= 0.5))
      ((3, 4), dtype('float32'), True)
    """
    return jax.random.uniform(key, shape, dtype, minval=-scale, maxval=scale)


def glorot_uniform(
    key: Array, shape: tuple[int, int], dtype: DTypeLike, num_gates: int = 1
) -> Array:
    """Draws from U(-a, a) with a = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010).

    For a fused gate matrix of shape (in, G·H) the fans are those of one gate,
    (in, H), so each gate block has the variance it would have on its own, as
    in flax, where every gate is a separate ``Dense`` layer.

    Args:
      key: a PRNG key.
      shape: ``(fan_in, num_gates * hidden_size)``.
      dtype: the dtype of the result.
      num_gates: G, the number of gate blocks side by side in ``shape[1]``.

    Returns:
      An array of ``shape`` and ``dtype``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxrnn.init import glorot_uniform
      >>> # An LSTM's (I, 4H) input weights, I=16, H=8: a = sqrt(6 / (16 + 8)) = 0.5.
      >>> w = glorot_uniform(jax.random.key(0), (16, 32), jnp.float32, num_gates=4)
      >>> w.shape, w.dtype, bool(jnp.all(jnp.abs(w) <= 0.5))
      ((16, 32), dtype('float32'), True)
    """
    fan_in, total_out = shape
    limit = (6.0 / (fan_in + total_out // num_gates)) ** 0.5
    return jax.random.uniform(key, shape, dtype, minval=-limit, maxval=limit)


def orthogonal_blocks(key: Array, hidden_size: int, num_gates: int, dtype: DTypeLike) -> Array:
    """A (H, G·H) matrix made of G independent orthogonal (H, H) blocks.

    Each gate's recurrent matrix is orthogonal on its own, so at initialisation
    every singular value of every gate block is exactly 1 (Saxe et al. 2014).

    Args:
      key: a PRNG key.
      hidden_size: H.
      num_gates: G (1 for Elman, 4 for LSTM, 3 for GRU).
      dtype: the dtype of the result.

    Returns:
      An array of shape ``(hidden_size, num_gates * hidden_size)``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxrnn.init import orthogonal_blocks
      >>> w = orthogonal_blocks(jax.random.key(0), 4, 3, jnp.float32)  # a GRU's w_hh
      >>> w.shape
      (4, 12)
      >>> block = w[:, 4:8]  # the second gate's (H, H) block
      >>> bool(jnp.allclose(block.T @ block, jnp.eye(4), atol=1e-5))
      True
    """
    orthogonal = jax.nn.initializers.orthogonal()
    keys = jax.random.split(key, num_gates)
    # Draw in float32 at least: a QR decomposition in bfloat16 is not orthogonal.
    draw_dtype = jnp.promote_types(dtype, jnp.float32)
    blocks = [orthogonal(k, (hidden_size, hidden_size), draw_dtype) for k in keys]
    return jnp.concatenate(blocks, axis=1).astype(dtype)


def identity(hidden_size: int, num_gates: int, dtype: DTypeLike, scale: float = 1.0) -> Array:
    """A (H, G·H) matrix of G scaled identity blocks (IRNN, Le et al. 2015).

    Args:
      hidden_size: H.
      num_gates: G.
      dtype: the dtype of the result.
      scale: the value on the diagonal.

    Returns:
      An array of shape ``(hidden_size, num_gates * hidden_size)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxrnn.init import identity
      >>> identity(2, 2, jnp.float32, scale=0.5).tolist()
      [[0.5, 0.0, 0.5, 0.0], [0.0, 0.5, 0.0, 0.5]]
    """
    eye = scale * jnp.eye(hidden_size, dtype=dtype)
    return jnp.concatenate([eye] * num_gates, axis=1)
