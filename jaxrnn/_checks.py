"""Argument checks shared across the package: refused here, in words, rather than
inside JAX."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def check_key(name: str, key: Any) -> None:
    """Raises unless ``key`` is one PRNG key: a typed key of shape ``()`` or a raw
    ``jax.random.PRNGKey`` (uint32 of shape ``(2,)``)."""
    typed = isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    raw = isinstance(key, jax.Array) and key.dtype == jnp.uint32 and key.shape == (2,)
    if not ((typed and key.shape == ()) or raw):
        got = f"{type(key).__name__} {getattr(key, 'dtype', '')}{list(np.shape(key))}"
        raise TypeError(
            f"{name}: key must be one PRNG key, e.g. jax.random.key(0), got {got}; split a "
            "batch of keys and call once per key."
        )


def check_flag(where: str, name: str, value: Any) -> bool:
    """``value`` as a bool, refused unless it is one (a string is truthy)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{where}: {name} must be True or False, got {value!r}.")
