r"""Long-memory tasks: the adding problem, copying memory and temporal order.

Each generator takes a PRNG key, a length and a batch size and returns a
time-major batch ``(xs, targets)`` drawn afresh, so a training loop can draw
a new batch at every step (infinite data, as in the papers). Each task has a
trivial baseline, the score of a model that has learnt nothing about the
long-range dependency; a model has learnt the task only when it beats that.

| task | ``xs`` | targets | loss | trivial baseline |
|---|---|---|---|---|
| ``adding_problem`` | ``(T, B, 2)`` | ``(B,)`` | MSE | predict 1: $1/6 \approx 0.167$ |
| ``copying_memory`` | ``(T+20, B, 10)`` | ``(T+20, B)`` | cross-entropy | $10 \ln 8 / (T+20)$ |
| ``temporal_order`` | ``(T, B, 8)`` | ``(B,)`` | cross-entropy | $\ln 4 \approx 1.386$ |

``TASKS`` describes each as a ``Task``: the generator, the sizes of the
model's input and output, where it reads out, its loss and metrics, and its
baseline, so that one training loop runs them all.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._checks import check_key

Array = jax.Array

__all__ = [
    "ADDING_BASELINE_MSE",
    "TASKS",
    "TEMPORAL_ORDER_BASELINE",
    "Task",
    "adding_problem",
    "copying_baseline",
    "copying_memory",
    "get_task",
    "temporal_order",
]

ADDING_BASELINE_MSE = 1.0 / 6.0
r"""The adding problem's trivial baseline: always predicting the mean, 1, scores
$\operatorname{Var}(U_1 + U_2) = 2/12 = 1/6 \approx 0.167$."""

TEMPORAL_ORDER_BASELINE = math.log(4.0)
r"""Temporal order's trivial baseline: guessing the 4 classes uniformly, $\ln 4$ nats (25 %)."""


def _check_key_and_dtype(name: str, key: Any, dtype: Any) -> None:
    """A single PRNG key and (unless ``dtype`` is None) a floating dtype, refused here
    rather than inside JAX."""
    check_key(name, key)
    if dtype is not None and not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{name}: dtype must be a floating dtype (the inputs are real values), got {dtype!r}."
        )


def _check_sizes(name: str, length: Any, batch_size: Any, minimum: int = 2) -> None:
    for what, value, low in (("length", length, minimum), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name}: {what} must be a Python int, got {value!r}.")
        if value < low:
            detail = " (the sequence needs room for the events it must remember)" * (
                what == "length"
            )
            raise ValueError(f"{name}: {what} must be >= {low}, got {value}{detail}.")


# --------------------------------------------------------------------------- adding


def adding_problem(
    key: Array, length: int, batch_size: int, *, dtype: Any = jnp.float32
) -> tuple[Array, Array]:
    r"""A batch of the adding problem (Hochreiter & Schmidhuber 1997, Arjovsky et al.'s form).

    Channel 0 holds values $u_t \sim U[0, 1]$; channel 1 is a marker with
    exactly two ones, at $a$ uniform in $[0, \lfloor T/2 \rfloor)$ and $b$
    uniform in $[\lfloor T/2 \rfloor, T)$. The target is $u_a + u_b$. A model
    must hold $u_a$ for at least $T/2$ steps; always answering the mean, 1,
    scores $\mathrm{MSE} = 1/6$ (``ADDING_BASELINE_MSE``).

    Args:
      key: a PRNG key.
      length: T, at least 2.
      batch_size: B.
      dtype: the dtype of ``xs`` and ``targets``.

    Returns:
      ``(xs, targets)``: ``xs`` of shape ``(T, B, 2)``, time-major, and
      ``targets`` of shape ``(B,)``.

    Example:
      >>> import jax
      >>> from jaxrnn import tasks
      >>> xs, targets = tasks.adding_problem(jax.random.key(0), 100, 32)
      >>> xs.shape, targets.shape, float(xs[:, :, 1].sum(axis=0).min())
      ((100, 32, 2), (32,), 2.0)

    References:
      Hochreiter & Schmidhuber, "Long short-term memory", 1997 (experiment 4).
      Arjovsky, Shah & Bengio, "Unitary evolution recurrent neural networks", ICML 2016.
    """
    _check_key_and_dtype("adding_problem", key, dtype)
    _check_sizes("adding_problem", length, batch_size)
    return _adding_problem(key, length, batch_size, dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _adding_problem(key, length, batch_size, dtype):
    value_key, first_key, second_key = jax.random.split(key, 3)
    values = jax.random.uniform(value_key, (length, batch_size), dtype)
    half = length // 2
    first = jax.random.randint(first_key, (batch_size,), 0, half)
    second = jax.random.randint(second_key, (batch_size,), half, length)
    steps = jnp.arange(length)[:, None]
    markers = ((steps == first) | (steps == second)).astype(dtype)
    targets = jnp.sum(values * markers, axis=0)
    return jnp.stack([values, markers], axis=-1), targets


# --------------------------------------------------------------------------- copying


def copying_memory(
    key: Array,
    length: int,
    batch_size: int,
    *,
    num_symbols: int = 8,
    copy_length: int = 10,
    dtype: Any = jnp.float32,
) -> tuple[Array, Array]:
    r"""A batch of the copying memory task (Arjovsky, Shah & Bengio 2016).

    With $L$ = ``copy_length`` and $K$ = ``num_symbols``, token ids are
    0 (blank), $1..K$ (symbols) and $K+1$ (the delimiter). The input is $L$
    symbols drawn uniformly, $T - 1$ blanks, the delimiter, and $L$ blanks;
    the target is $T + L$ blanks and then the $L$ symbols: the model must
    reproduce them after a delay of $T$. The sequence has $T + 2L$ steps.
    A model with no memory of the symbols can still output blanks until the
    delimiter and then guess uniformly, which scores
    $L \ln K / (T + 2L)$ nats per step (``copying_baseline``).

    Args:
      key: a PRNG key.
      length: T, the delay, at least 2.
      batch_size: B.
      num_symbols: K.
      copy_length: L.
      dtype: the dtype of the one-hot ``xs``.

    Returns:
      ``(xs, targets)``: ``xs`` of shape ``(T + 2L, B, K + 2)``, one-hot, and
      ``targets`` of shape ``(T + 2L, B)``, int32 ids in $[0, K]$.

    Example:
      >>> import jax
      >>> from jaxrnn import tasks
      >>> xs, targets = tasks.copying_memory(jax.random.key(0), 100, 16)
      >>> xs.shape, targets.shape
      ((120, 16, 10), (120, 16))
      >>> bool((xs[:10].argmax(-1) == targets[-10:]).all())   # the symbols come back at the end
      True

    References:
      Arjovsky, Shah & Bengio, "Unitary evolution recurrent neural networks", ICML 2016.
      Hochreiter & Schmidhuber, "Long short-term memory", 1997 (the task's origin).
    """
    _check_key_and_dtype("copying_memory", key, None)  # one-hot inputs may be integers
    _check_sizes("copying_memory", length, batch_size)
    for what, value in (("num_symbols", num_symbols), ("copy_length", copy_length)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            error = ValueError if isinstance(value, int | np.integer) else TypeError
            raise error(f"copying_memory: {what} must be a positive int, got {value!r}.")
    return _copying_memory(key, length, batch_size, num_symbols, copy_length, dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _copying_memory(key, length, batch_size, num_symbols, copy_length, dtype):
    symbols = jax.random.randint(key, (copy_length, batch_size), 1, num_symbols + 1, jnp.int32)
    blanks = jnp.zeros((length - 1, batch_size), jnp.int32)
    delimiter = jnp.full((1, batch_size), num_symbols + 1, jnp.int32)
    tail = jnp.zeros((copy_length, batch_size), jnp.int32)
    ids = jnp.concatenate([symbols, blanks, delimiter, tail])
    targets = jnp.concatenate([jnp.zeros((length + copy_length, batch_size), jnp.int32), symbols])
    return jax.nn.one_hot(ids, num_symbols + 2, dtype=dtype), targets


def copying_baseline(length: int, num_symbols: int = 8, copy_length: int = 10) -> float:
    r"""The memoryless baseline of ``copying_memory``: $L \ln K / (T + 2L)$ nats per step.

    Args:
      length: T, the delay.
      num_symbols: K.
      copy_length: L.

    Returns:
      The cross-entropy per step, averaged over all $T + 2L$ steps, of
      predicting blanks until the last $L$ steps and then each symbol with
      probability $1/K$. For $T = 100$: $10 \ln 8 / 120 \approx 0.173$.

    Example:
      >>> from jaxrnn import tasks
      >>> round(tasks.copying_baseline(100), 4)
      0.1733
    """
    return copy_length * math.log(num_symbols) / (length + 2 * copy_length)


# --------------------------------------------------------------------------- temporal order

_TEMPORAL_SYMBOLS = ("a", "b", "c", "d", "X", "Y", "B", "E")


def temporal_order(
    key: Array, length: int, batch_size: int, *, dtype: Any = jnp.float32
) -> tuple[Array, Array]:
    r"""A batch of the temporal order task (Hochreiter & Schmidhuber 1997, experiment 6a).

    Each sequence starts with ``B`` and ends with ``E``; in between are
    distractors from ``a, b, c, d`` except at two times, $t_1 \in [T/10, T/5]$
    and $t_2 \in [T/2, 3T/5]$ (for $T = 100$: $[10, 20]$ and $[50, 60]$, the
    paper's), which hold ``X`` or ``Y``. The class is the order seen:
    XX = 0, XY = 1, YX = 2, YY = 3. Guessing scores $\ln 4$
    (``TEMPORAL_ORDER_BASELINE``) and 25 % accuracy.

    Every sequence of a batch has the same length T (one array, one trace);
    the paper draws each sequence's length from $[100, 110]$, which a caller
    reproduces by drawing T for each batch (each new T compiles once).

    Args:
      key: a PRNG key.
      length: T, at least 4 (``B``, two events, ``E``).
      batch_size: B.
      dtype: the dtype of the one-hot ``xs``.

    Returns:
      ``(xs, targets)``: ``xs`` of shape ``(T, B, 8)``, one-hot over
      ``a, b, c, d, X, Y, B, E``, and ``targets`` of shape ``(B,)``, int32 in
      $[0, 3]$.

    Example:
      >>> import jax
      >>> from jaxrnn import tasks
      >>> xs, targets = tasks.temporal_order(jax.random.key(0), 100, 8)
      >>> xs.shape, targets.shape
      ((100, 8, 8), (8,))

    References:
      Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 1997.
    """
    _check_key_and_dtype("temporal_order", key, None)
    _check_sizes("temporal_order", length, batch_size, minimum=4)
    return _temporal_order(key, length, batch_size, dtype)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _temporal_order(key, length, batch_size, dtype):
    first_low, first_high = max(1, length // 10), max(1, length // 5)
    second_low = max(first_high + 1, length // 2)
    second_high = max(second_low, min(length - 2, (3 * length) // 5))
    k_noise, k_first, k_second, k_which = jax.random.split(key, 4)
    ids = jax.random.randint(k_noise, (length, batch_size), 0, 4, jnp.int32)  # a, b, c, d
    first = jax.random.randint(k_first, (batch_size,), first_low, first_high + 1)
    second = jax.random.randint(k_second, (batch_size,), second_low, second_high + 1)
    which = jax.random.bernoulli(k_which, 0.5, (2, batch_size)).astype(jnp.int32)  # 0 X, 1 Y
    steps = jnp.arange(length)[:, None]
    ids = jnp.where(steps == first, 4 + which[0], ids)
    ids = jnp.where(steps == second, 4 + which[1], ids)
    ids = ids.at[0].set(6).at[-1].set(7)  # B ... E
    targets = 2 * which[0] + which[1]
    return jax.nn.one_hot(ids, len(_TEMPORAL_SYMBOLS), dtype=dtype), targets


# --------------------------------------------------------------------------- the registry


def _mse(outputs: Array, targets: Array) -> Array:
    return jnp.mean(jnp.square(outputs[..., 0] - targets))


def _cross_entropy(logits: Array, targets: Array) -> Array:
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, targets[..., None], axis=-1))


def _accuracy(logits: Array, targets: Array) -> Array:
    return jnp.mean((jnp.argmax(logits, axis=-1) == targets).astype(logits.dtype))


def _copying_metrics(logits: Array, targets: Array) -> dict[str, Array]:
    copy_length = 10  # the symbols to reproduce, at the end
    return {"copy_accuracy": _accuracy(logits[-copy_length:], targets[-copy_length:])}


def _adding_trivial(xs: Array) -> Array:
    return jnp.ones((*np.shape(xs)[1:-1], 1), xs.dtype)


def _copying_trivial(xs: Array) -> Array:
    # Blank with certainty until the last 10 steps, then each of the 8 symbols at 1/8.
    total, copy_length = np.shape(xs)[0], 10
    blank = jnp.log(jnp.zeros(9, xs.dtype).at[0].set(1.0))
    guess = jnp.log(jnp.full(9, 1.0 / 8.0, xs.dtype).at[0].set(0.0))
    in_tail = (jnp.arange(total) >= total - copy_length)[:, None]
    per_step = jnp.where(in_tail, guess, blank)  # (time, 9)
    return jnp.broadcast_to(per_step[:, None, :], (total, *np.shape(xs)[1:-1], 9))


def _temporal_trivial(xs: Array) -> Array:
    return jnp.zeros((*np.shape(xs)[1:-1], 4), xs.dtype)


class Task(NamedTuple):
    """A long-memory task, described for one training loop to run them all.

    Attributes:
      name: the task's name in ``TASKS`` and on the command line.
      sample: ``sample(key, length, batch_size) -> (xs, targets)``, ``xs`` time-major.
      input_size: the size of the last axis of ``xs``.
      output_size: how many numbers the model's readout produces per output.
      readout: ``"last"``, one output from the last hidden state, of shape
        ``(B, output_size)``; or ``"every"``, one per step, ``(time, B, output_size)``.
      loss: ``loss(outputs, targets) -> scalar``, the training loss and main metric.
      loss_name: what the loss is, for reports.
      metrics: ``metrics(outputs, targets) -> dict`` of scalars besides the loss
        (accuracies), possibly empty.
      baseline: ``baseline(length) -> float``, the trivial baseline of the loss.
      trivial_outputs: ``trivial_outputs(xs) -> outputs``, the outputs of the
        baseline strategy; ``loss(trivial_outputs(xs), targets)`` is close to
        ``baseline(length)``.
      min_length: the smallest ``length`` the generator accepts.
    """

    name: str
    sample: Callable[[Array, int, int], tuple[Array, Array]]
    input_size: int
    output_size: int
    readout: str
    loss: Callable[[Array, Array], Array]
    loss_name: str
    metrics: Callable[[Array, Array], dict[str, Array]]
    baseline: Callable[[int], float]
    trivial_outputs: Callable[[Array], Array]
    min_length: int


TASKS: dict[str, Task] = {
    "adding": Task(
        name="adding",
        sample=adding_problem,
        input_size=2,
        output_size=1,
        readout="last",
        loss=_mse,
        loss_name="MSE",
        metrics=lambda outputs, targets: {},
        baseline=lambda length: ADDING_BASELINE_MSE,
        trivial_outputs=_adding_trivial,
        min_length=2,
    ),
    "copying": Task(
        name="copying",
        sample=copying_memory,
        input_size=10,
        output_size=9,
        readout="every",
        loss=_cross_entropy,
        loss_name="cross-entropy (nats per step)",
        metrics=_copying_metrics,
        baseline=copying_baseline,
        trivial_outputs=_copying_trivial,
        min_length=2,
    ),
    "temporal_order": Task(
        name="temporal_order",
        sample=temporal_order,
        input_size=8,
        output_size=4,
        readout="last",
        loss=_cross_entropy,
        loss_name="cross-entropy (nats)",
        metrics=lambda logits, targets: {"accuracy": _accuracy(logits, targets)},
        baseline=lambda length: TEMPORAL_ORDER_BASELINE,
        trivial_outputs=_temporal_trivial,
        min_length=4,
    ),
}
"""The tasks by name: ``"adding"``, ``"copying"`` and ``"temporal_order"``."""


def get_task(name: str) -> Task:
    """The ``Task`` called ``name``, with a suggestion when the name is misspelt.

    Args:
      name: ``"adding"``, ``"copying"`` or ``"temporal_order"`` (``-`` for ``_`` is fine).

    Returns:
      The ``Task``.

    Example:
      >>> from jaxrnn import tasks
      >>> tasks.get_task("temporal-order").input_size
      8
    """
    key = str(name).replace("-", "_")
    if key in TASKS:
        return TASKS[key]
    import difflib

    close = difflib.get_close_matches(key, list(TASKS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown task {name!r}; the tasks are {', '.join(TASKS)}.{hint}")
