"""Early, readable checks of hyper-parameters.

Only concrete Python (or NumPy) numbers are checked: a schedule, a traced
value or a JAX array passes through unchecked, so that hyper-parameters can
still be swept with ``jax.vmap`` or passed in from a jitted function.
"""

from __future__ import annotations

import numbers
from typing import Any


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_non_negative(where: str, name: str, value: Any, hint: str = "") -> None:
    """Raise ``ValueError`` unless ``value`` (when a number) is ``>= 0``."""
    if _is_number(value) and not value >= 0:  # `not >=` also rejects NaN
        hint = f" ({hint})" if hint else ""
        raise ValueError(f"{where}: {name} must be >= 0{hint}, got {name}={value!r}.")


def check_positive(where: str, name: str, value: Any, hint: str = "") -> None:
    """Raise ``ValueError`` unless ``value`` (when a number) is ``> 0``."""
    if _is_number(value) and not value > 0:
        hint = f" ({hint})" if hint else ""
        raise ValueError(f"{where}: {name} must be > 0{hint}, got {name}={value!r}.")


def check_decay(where: str, name: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` (when a number) lies in ``[0, 1)``.

    A decay rate of 1 would freeze a running average at its initial value
    forever (and make Adam's bias correction divide by zero).
    """
    if _is_number(value) and not 0 <= value < 1:
        raise ValueError(
            f"{where}: {name} must be in [0, 1) (a decay rate: the weight of the "
            f"running average's past), got {name}={value!r}."
        )


def check_learning_rate(where: str, value: Any) -> None:
    """Raise ``ValueError`` for a negative learning rate given as a number."""
    check_non_negative(
        where,
        "learning_rate",
        value,
        "the optimizers flip the sign themselves: pass a positive step size to descend",
    )
