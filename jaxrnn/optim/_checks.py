"""Early, readable checks of hyper-parameters.

A hyper-parameter is a real number, an array of real numbers or (where a
schedule is allowed) a callable; anything else (a string, ``None``, a complex
number, a bool) is refused at once. Values are checked only when they are
concrete Python or NumPy numbers (or NumPy arrays of shape ``()``): a schedule,
a traced value or a JAX array passes through unchecked, so that
hyper-parameters can still be swept with ``jax.vmap`` or passed in from a
jitted function.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxrnn._checks import check_flag  # noqa: F401  (re-exported: the optimizers take every check from here)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value: Any) -> Any:
    """``value`` as a Python number when it is a concrete one (a Python or NumPy
    number, or a NumPy array of shape ``()``, whose value is known when the
    optimizer is built); else ``None`` (a schedule, a JAX array, a traced value)."""
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iuf":
        return value.item()
    return value if _is_number(value) else None


def check_kind(where: str, name: str, value: Any) -> None:
    """Raise ``TypeError`` unless ``value`` is a real number, a scalar array of one
    (NumPy's or JAX's, traced ones included) or a callable (a schedule)."""
    if _is_number(value) or callable(value):
        return
    schedule = " (or a schedule)" if name == "learning_rate" else ""
    dtype = getattr(value, "dtype", None)
    real = dtype is not None and (
        jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
    )
    if real and np.shape(value) == ():
        return
    if real:
        raise TypeError(
            f"{where}: {name} must be a scalar{schedule}, got an array of shape {np.shape(value)}."
        )
    raise TypeError(
        f"{where}: {name} must be a real number{schedule}, got {value!r} of type "
        f"{type(value).__name__}."
    )


def check_non_negative(where: str, name: str, value: Any, hint: str = "") -> None:
    """Raise ``ValueError`` unless ``value`` (when a number) is ``>= 0``."""
    check_kind(where, name, value)
    number = _number(value)
    if number is not None and not number >= 0:  # `not >=` also rejects NaN
        hint = f" ({hint})" if hint else ""
        raise ValueError(f"{where}: {name} must be >= 0{hint}, got {name}={number!r}.")


def check_positive(where: str, name: str, value: Any, hint: str = "") -> None:
    """Raise ``ValueError`` unless ``value`` (when a number) is ``> 0``."""
    check_kind(where, name, value)
    number = _number(value)
    if number is not None and not number > 0:
        hint = f" ({hint})" if hint else ""
        raise ValueError(f"{where}: {name} must be > 0{hint}, got {name}={number!r}.")


def check_decay(where: str, name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` (when a number) lies in ``[0, 1)``.

    A decay rate of 1 would freeze a running average at its initial value
    forever (and make Adam's bias correction divide by zero).
    """
    check_kind(where, name, value)
    number = _number(value)
    if number is not None and not 0 <= number < 1:
        raise ValueError(
            f"{where}: {name} must be in [0, 1) (a decay rate: the weight of the "
            f"running average's past), got {name}={number!r}."
        )


def check_learning_rate(where: str, value: Any) -> None:
    """Raise ``ValueError`` for a negative or infinite learning rate given as a number."""
    check_non_negative(
        where,
        "learning_rate",
        value,
        "the optimizers flip the sign themselves: pass a positive step size to descend",
    )
    number = _number(value)
    if number is not None and not math.isfinite(number):
        raise ValueError(f"{where}: learning_rate must be finite, got learning_rate={number!r}.")


def check_transformation(where: str, name: str, transform: Any) -> None:
    """Raise ``TypeError`` unless ``transform`` has an ``init`` and an ``update`` (an
    optimizer's factory, e.g. ``adam`` for ``adam(1e-3)``, gets the fix spelled out)."""
    if callable(getattr(transform, "init", None)) and callable(getattr(transform, "update", None)):
        return
    hint = (
        f" It is a function: call it to build the transformation, e.g. {transform.__name__}(...)."
        if callable(transform) and hasattr(transform, "__name__")
        else ""
    )
    raise TypeError(
        f"{where}: {name} must be a gradient transformation (with init and update), "
        f"got {type(transform).__name__}.{hint}"
    )
