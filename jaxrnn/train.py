"""The small, explicit training loop of character language models, shared by the CLI and examples.

Truncated backpropagation through time as in the notes: the training text is
``batch`` streams; each step reads the next window of ``seq_len`` characters
of every stream, starting from the carry the previous window left, and
backpropagates through that window only (the carry enters the step as a
constant). The pieces, each usable on its own::

    model = CharModel(ModelConfig(vocab_size=V, cell="lstm", hidden_size=256))
    optimizer, schedule = make_optimizer(TrainConfig(...))
    state = init_state(model, optimizer, batch_size, key)     # TrainState: a pytree of arrays
    step = make_train_step(model, optimizer, schedule)        # pure and jitted
    state, metrics = step(state, inputs, targets)             # inputs, targets: (seq_len, batch)

``fit`` runs that step in a loop with evaluation, early stopping,
checkpoints, samples, a progress bar and JSON-lines metrics, with the batch
split over all visible devices (``jaxrnn.parallel``; ``devices=`` limits it).

Everything that decides the next step is in ``TrainState`` (step count,
parameters, optimizer state, the carry between windows, the PRNG key) and the
window read at step ``k`` is a function of ``k`` alone, so a run stopped and
resumed from a checkpoint continues exactly as if it had not stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import checkpoint, optim, parallel
from jaxrnn._checks import check_key
from jaxrnn.cells import elman, gru, lstm
from jaxrnn.data import CharData, Vocabulary, window
from jaxrnn.recurrent import StackedRNN, _quiet_single_layer_dropout

Array = jax.Array

__all__ = [
    "CharModel",
    "FitResult",
    "ModelConfig",
    "NonFiniteError",
    "StepMetrics",
    "TrainConfig",
    "TrainState",
    "evaluate",
    "fit",
    "init_state",
    "load_model",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "progress_from_meta",
    "put_state",
    "remat_chunk",
    "restore_state",
    "sample",
    "sample_pieces",
    "save_state",
    "state_shardings",
]

CELLS: dict[str, Callable[..., Any]] = {"lstm": lstm, "gru": gru, "elman": elman}
SCHEDULES = ("cosine", "constant", "exponential")
LN2 = math.log(2.0)

# --------------------------------------------------------------------------- the model


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What a character model is: enough to rebuild it from a checkpoint.

    Attributes:
      vocab_size: V, the number of characters.
      cell: ``"lstm"``, ``"gru"`` or ``"elman"``.
      hidden_size: H, the hidden size of every layer.
      num_layers: L, stacked layers.
      dropout: the probability of dropping each output of a layer but the last, in training.
      embed_size: E, the size of each character's learnt input vector; 0 feeds
        one-hot vectors instead (the notes' way, slower to learn from: the
        first layer's weights start small).
    """

    vocab_size: int
    cell: str = "lstm"
    hidden_size: int = 256
    num_layers: int = 1
    dropout: float = 0.0
    embed_size: int = 64

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(
                f"ModelConfig: cell must be one of {sorted(CELLS)}, got {self.cell!r}."
            )
        for name in ("vocab_size", "hidden_size", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"ModelConfig: {name} must be >= 1, got {getattr(self, name)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig: dropout must lie in [0, 1), got {self.dropout}.")
        if self.embed_size < 0:
            raise ValueError(f"ModelConfig: embed_size must be >= 0, got {self.embed_size}.")

    def describe(self) -> str:
        """The configuration as the command-line flags that build it."""
        return (
            f"--cell {self.cell} --hidden {self.hidden_size} --layers {self.num_layers} "
            f"({self.vocab_size} characters)"
        )


class CharModel:
    """A character language model: embedded characters, a ``StackedRNN``, a softmax read-out.

    ``x_t = embed[c_t]`` (or ``one_hot(c_t)`` with ``embed_size=0``),
    ``logits[t] = h_t @ w + b`` with ``h_t`` the last layer's output after
    reading characters ``0..t``, and ``p(c_{t+1} | c_{≤t}) = softmax(logits[t])``.

    Args:
      config: a ``ModelConfig``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxrnn.train import CharModel, ModelConfig
      >>> model = CharModel(ModelConfig(vocab_size=5, hidden_size=8))
      >>> params = model.init(jax.random.key(0))
      >>> carry, logits = model.apply(params, jnp.zeros((3, 2), jnp.int32))  # (time, batch)
      >>> logits.shape
      (3, 2, 5)
    """

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        cell = CELLS[config.cell](config.hidden_size)
        self.rnn = StackedRNN(cell, config.num_layers, dropout=config.dropout)

    # Two models of one configuration compute the same function: they share compiled code.
    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharModel) and other.config == self.config

    def __hash__(self) -> int:
        return hash(self.config)

    def init(self, key: Array) -> dict[str, Any]:
        """Fresh parameters: ``{"embed", "rnn", "head"}``.

        ``embed`` is ``(V, E)``, drawn N(0, 1) as PyTorch's ``nn.Embedding``
        (absent with ``embed_size=0``); ``rnn`` is the ``StackedRNN``'s
        ``params[layer][0]``; ``head`` is ``{"w": (H, V), "b": (V,)}``, ``w``
        uniform in ±1/√H and ``b`` zero.
        """
        embed_key, rnn_key, head_key = jax.random.split(key, 3)
        V, H, E = self.config.vocab_size, self.config.hidden_size, self.config.embed_size
        bound = 1.0 / math.sqrt(H)
        params: dict[str, Any] = {}
        if E:
            params["embed"] = jax.random.normal(embed_key, (V, E), jnp.float32)
        params["rnn"] = self.rnn.init(rnn_key, E or V)
        params["head"] = {
            "w": jax.random.uniform(head_key, (H, V), jnp.float32, -bound, bound),
            "b": jnp.zeros((V,), jnp.float32),
        }
        return params

    def zero_carry(self, batch_size: int | None) -> Any:
        """Zero carries for ``batch_size`` streams (``None``: one unbatched stream)."""
        return self.rnn.zero_carry(() if batch_size is None else (batch_size,))

    def apply(
        self,
        params: dict[str, Any],
        inputs: Array,
        carry: Any = None,
        *,
        key: Array | None = None,
        remat: bool = False,
    ) -> tuple[Any, Array]:
        """Reads character ids and predicts the next ones.

        Args:
          params: from ``init``.
          inputs: int ids of shape ``(time, *batch)``.
          carry: the carry from the previous window; zeros if omitted.
          key: a PRNG key for dropout between layers; none without one.
          remat: recompute the recurrent layers' activations in the backward
            pass instead of storing them (``jaxrnn.unroll(..., remat=True)``).

        Returns:
          ``(carry, logits)`` with logits of shape ``(time, *batch, vocab_size)``.
        """
        _check_ids("CharModel.apply", "inputs", inputs)
        if self.config.embed_size:
            xs = params["embed"][inputs]
        else:
            xs = jax.nn.one_hot(inputs, self.config.vocab_size, dtype=jnp.float32)
        carry, ys = self.rnn.apply(params["rnn"], xs, carry, key=key, remat=remat)
        return carry, ys @ params["head"]["w"] + params["head"]["b"]

    def loss(
        self,
        params: dict[str, Any],
        inputs: Array,
        targets: Array,
        carry: Any = None,
        *,
        key: Array | None = None,
        remat: bool = False,
    ) -> tuple[Array, Any]:
        """Mean cross-entropy in nats of ``targets`` given ``inputs``, and the final carry.

        With ``remat=True`` the window of ``T`` steps is cut into ``T / C``
        chunks of ``C`` steps (``C`` the divisor of ``T`` nearest ``√T``), each
        a ``jax.checkpoint``-ed function from the carry to the chunk's summed
        loss: the backward pass keeps only the carries between chunks and
        recomputes one chunk at a time (its layers with ``remat`` too), so the
        memory of a step grows like ``√T`` rather than ``T``, for about one more
        forward pass. The loss is the same up to rounding; dropout draws other
        masks (chunk ``k`` uses ``fold_in(key, k)``).
        """
        _check_ids("CharModel.loss", "inputs", inputs)
        _check_ids("CharModel.loss", "targets", targets)
        if np.shape(targets) != np.shape(inputs):
            raise ValueError(
                f"CharModel.loss: targets has shape {np.shape(targets)} but inputs has "
                f"{np.shape(inputs)}; each input character needs its next character as target."
            )
        if remat:
            return self._chunked_loss(params, inputs, targets, carry, key=key)
        carry, logits = self.apply(params, inputs, carry, key=key)
        return _summed_nll(logits, targets) / targets.size, carry

    def _chunked_loss(self, params, inputs, targets, carry, *, key):
        T, batch_shape = inputs.shape[0], inputs.shape[1:]
        size = remat_chunk(T)
        if carry is None:
            carry = self.rnn.zero_carry(batch_shape)

        @jax.checkpoint
        def chunk(carry, chunk_in):
            index, ids, next_ids = chunk_in
            chunk_key = None if key is None else jax.random.fold_in(key, index)
            carry, logits = self.apply(params, ids, carry, key=chunk_key, remat=True)
            return carry, _summed_nll(logits, next_ids)

        def split(a):
            return a.reshape(T // size, size, *a.shape[1:])

        index = jnp.arange(T // size)
        carry, sums = jax.lax.scan(chunk, carry, (index, split(inputs), split(targets)))
        return jnp.sum(sums) / targets.size, carry


def _summed_nll(logits: Array, targets: Array) -> Array:
    """``-Σ log softmax(logits)[target]`` over every position, in nats."""
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.take_along_axis(log_probs, targets[..., None], axis=-1))


def _check_ids(where: str, name: str, ids: Any) -> None:
    """Character ids are integers of shape ``(time, *batch)`` with ``time >= 1``."""
    dtype, shape = jnp.result_type(ids), np.shape(ids)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"{where}: {name} must be integer character ids of shape (time, *batch), got "
            f"{dtype}{list(shape)}; encode text with Vocabulary.encode."
        )
    if len(shape) < 1 or shape[0] < 1:
        raise ValueError(
            f"{where}: {name} must have shape (time, *batch) with time >= 1, got {list(shape)}."
        )


def remat_chunk(length: int) -> int:
    """The chunk of a rematerialised window: the divisor of ``length`` nearest ``√length``.

    Args:
      length: T, the window's length, >= 1.

    Returns:
      C, a divisor of T (the smaller one on a tie); a prime T gives 1.

    Examples:
      >>> from jaxrnn.train import remat_chunk
      >>> [remat_chunk(n) for n in (100, 12, 7)]
      [10, 3, 1]
    """
    root = math.isqrt(length)
    divisors = [d for d in range(1, root + 1) if length % d == 0]
    candidates = divisors + [length // d for d in divisors]
    return min(candidates, key=lambda d: (abs(d - math.sqrt(length)), d))


# --------------------------------------------------------------------------- training state


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How to train: batching, optimizer, schedule, evaluation and stopping.

    Attributes:
      batch_size: B, parallel streams of the training text.
      seq_len: T, characters per window (the truncation of BPTT).
      steps: optimizer updates in all (resumed runs count the steps already done).
      learning_rate: Adam's peak step size.
      schedule: ``"cosine"`` (linear warm-up, then cosine decay to
        ``final_lr_fraction`` of the peak at ``steps``), ``"exponential"``
        (warm-up, then halving every ``steps / 4``) or ``"constant"``
        (``learning_rate`` from the first step, no warm-up).
      warmup_steps: the warm-up's length (``"cosine"`` and ``"exponential"``).
      final_lr_fraction: where ``"cosine"`` ends, relative to the peak.
      clip_norm: the largest global gradient norm; larger gradients are scaled down.
      b1: Adam's β₁.
      b2: Adam's β₂.
      eval_every: steps between evaluations (and checkpoints).
      sample_every: steps between printed samples; 0 for none.
      sample_length: characters per periodic sample.
      patience: stop after this many evaluations without a better validation
        loss; 0 never stops early.
      max_consecutive_skips: stop when this many updates in a row had
        non-finite gradients (each was skipped).
      seed: seeds the parameters, dropout and samples.
      remat: rematerialise in the backward pass (``CharModel.loss(remat=True)``):
        memory growing like ``√seq_len``, for long windows.
    """

    batch_size: int = 64
    seq_len: int = 50
    steps: int = 2000
    learning_rate: float = 1e-2
    schedule: str = "cosine"
    warmup_steps: int = 50
    final_lr_fraction: float = 0.05
    clip_norm: float = 1.0
    b1: float = 0.9
    b2: float = 0.99
    eval_every: int = 200
    sample_every: int = 1000
    sample_length: int = 300
    patience: int = 5
    max_consecutive_skips: int = 20
    seed: int = 0
    remat: bool = False

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(
                f"TrainConfig: schedule must be one of {SCHEDULES}, got {self.schedule!r}."
            )
        for name in ("batch_size", "seq_len", "steps", "eval_every", "max_consecutive_skips"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig: {name} must be >= 1, got {getattr(self, name)}.")
        for name in ("learning_rate", "clip_norm"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):  # NaN fails every comparison
                raise ValueError(f"TrainConfig: {name} must be a finite number > 0, got {value}.")
        for name in ("warmup_steps", "patience", "sample_every", "sample_length"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig: {name} must be >= 0, got {getattr(self, name)}.")
        for name in ("b1", "b2"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"TrainConfig: {name} must lie in [0, 1), got {value}.")
        if not self.final_lr_fraction >= 0:
            raise ValueError(
                f"TrainConfig: final_lr_fraction must be >= 0, got {self.final_lr_fraction}."
            )


class TrainState(NamedTuple):
    """Everything a training step reads and writes: a pytree of arrays, saved whole.

    Attributes:
      step: the number of updates done, an int32 scalar.
      params: the model's parameters.
      opt_state: the optimizer's state.
      carry: the carry the last window left, leaves ``(L, batch, H)``.
      key: the run's PRNG key; step k's dropout uses ``fold_in(key, k)``.
    """

    step: Array
    params: Any
    opt_state: Any
    carry: Any
    key: Array


class StepMetrics(NamedTuple):
    """What one step reports: scalars, still on the device.

    Attributes:
      loss: the window's mean cross-entropy in nats, before the update.
      grad_norm: the gradients' global norm, before clipping.
      learning_rate: the step size the schedule gave this step.
      finite: whether the gradients were finite (else the update was skipped).
    """

    loss: Array
    grad_norm: Array
    learning_rate: Array
    finite: Array


def make_schedule(config: TrainConfig) -> optim.Schedule:
    """The learning-rate schedule that ``config`` names, as a function of the step.

    Args:
      config: its ``schedule``, ``learning_rate``, ``warmup_steps``, ``steps``
        and ``final_lr_fraction`` are read.

    Returns:
      A ``Schedule``: ``schedule(step)``, the step size as a scalar array.

    Examples:
      >>> from jaxrnn.train import TrainConfig, make_schedule
      >>> schedule = make_schedule(TrainConfig(steps=100, learning_rate=0.01, warmup_steps=10))
      >>> [round(float(schedule(k)), 6) for k in (0, 5, 10, 100)]  # warm-up, peak, 5% at the end
      [0.0, 0.005, 0.01, 0.0005]
    """
    peak, warmup = config.learning_rate, min(config.warmup_steps, config.steps - 1)
    if config.schedule == "constant":
        return optim.constant_schedule(peak)
    if config.schedule == "exponential":
        decay = optim.exponential_decay(peak, max(1, config.steps // 4), 0.5)
        if warmup <= 0:
            return decay
        return optim.join_schedules([optim.linear_schedule(0.0, peak, warmup), decay], [warmup])
    return optim.warmup_cosine_decay_schedule(
        0.0 if warmup > 0 else peak,
        peak,
        warmup_steps=warmup,
        decay_steps=config.steps,
        end_value=peak * config.final_lr_fraction,
    )


def make_optimizer(config: TrainConfig) -> tuple[optim.GradientTransformation, optim.Schedule]:
    """Adam with a schedule after clipping by global norm, skipping non-finite updates.

    ``skip_not_finite(chain(clip_by_global_norm(c), adam(schedule, b1, b2)))``.

    Args:
      config: the ``TrainConfig`` (schedule, ``clip_norm``, ``b1``, ``b2``).

    Returns:
      ``(optimizer, schedule)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxrnn.train import TrainConfig, make_optimizer
      >>> optimizer, schedule = make_optimizer(TrainConfig(schedule="constant", learning_rate=1e-3))
      >>> params = {"w": jnp.ones(3, jnp.float32)}
      >>> opt_state = optimizer.init(params)
      >>> updates, opt_state = optimizer.update({"w": jnp.ones(3, jnp.float32)}, opt_state, params)
      >>> [round(float(u), 6) for u in updates["w"]]  # Adam's first step: -lr · sign(g)
      [-0.001, -0.001, -0.001]
      >>> nan_grads = {"w": jnp.full(3, jnp.nan, jnp.float32)}
      >>> updates, opt_state = optimizer.update(nan_grads, opt_state, params)
      >>> updates["w"].tolist(), int(opt_state.total_skipped)  # skipped, and counted
      ([0.0, 0.0, 0.0], 1)
    """
    schedule = make_schedule(config)
    inner = optim.chain(
        optim.clip_by_global_norm(config.clip_norm),
        optim.adam(schedule, b1=config.b1, b2=config.b2),
    )
    return optim.skip_not_finite(inner), schedule


def init_state(
    model: CharModel, optimizer: optim.GradientTransformation, batch_size: int, key: Array
) -> TrainState:
    """The state before the first step: fresh parameters, zero carry, step 0.

    Args:
      model: the model.
      optimizer: from ``make_optimizer``.
      batch_size: B, the number of streams the carry holds.
      key: a PRNG key, split into the parameters' and the run's.

    Returns:
      A ``TrainState``: ``step`` an int32 0, ``carry`` leaves ``(L, B, H)`` of zeros.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxrnn.train import CharModel, ModelConfig, TrainConfig, init_state, make_optimizer
      >>> model = CharModel(ModelConfig(vocab_size=5, hidden_size=8))
      >>> optimizer, _ = make_optimizer(TrainConfig())
      >>> state = init_state(model, optimizer, batch_size=2, key=jax.random.key(0))
      >>> int(state.step), jax.tree.map(jnp.shape, state.carry)  # an LSTM: (layers, batch, H)
      (0, LSTMCarry(h=(1, 2, 8), c=(1, 2, 8)))
      >>> state.params["head"]["w"].shape  # (H, V)
      (8, 5)
    """
    init_key, run_key = jax.random.split(key)
    params = model.init(init_key)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=optimizer.init(params),
        carry=model.zero_carry(batch_size),
        key=run_key,
    )


def make_train_step(
    model: CharModel,
    optimizer: optim.GradientTransformation,
    schedule: optim.Schedule,
    *,
    mesh: jax.sharding.Mesh | None = None,
    remat: bool = False,
) -> Callable[[TrainState, Array, Array], tuple[TrainState, StepMetrics]]:
    """One step of truncated BPTT, pure and jitted.

    ``step(state, inputs, targets) -> (state, metrics)`` with ``inputs`` and
    ``targets`` int ids of shape ``(seq_len, batch)``. Gradients flow through
    this window only; the carry it leaves is the next window's starting
    point. A window whose loss, gradients or carry are not finite changes
    nothing: ``optimizer`` (guarded by ``skip_not_finite``) sees non-finite
    gradients and skips the update, and the carry restarts from zeros.

    Args:
      model: the model.
      optimizer: from ``make_optimizer``.
      schedule: its learning-rate schedule (reported in the metrics).
      mesh: a ``jax.sharding.Mesh`` with axis ``"data"`` (``jaxrnn.parallel.make_mesh``):
        the batch (of the windows and the carry) is split over its devices,
        everything else replicated; the batch must divide by its size. ``None``:
        wherever the arguments are.
      remat: rematerialise in the backward pass (``CharModel.loss(remat=True)``).

    Returns:
      The jitted ``step(state, inputs, targets) -> (state, metrics)``: a
      ``TrainState`` one step on and its ``StepMetrics`` (scalars).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxrnn.train import (
      ...     CharModel, ModelConfig, TrainConfig, init_state, make_optimizer, make_train_step)
      >>> model = CharModel(ModelConfig(vocab_size=5, hidden_size=8))
      >>> optimizer, schedule = make_optimizer(TrainConfig(steps=10))
      >>> state = init_state(model, optimizer, batch_size=2, key=jax.random.key(0))
      >>> step = make_train_step(model, optimizer, schedule)
      >>> ids = jnp.zeros((4, 2), jnp.int32)  # (seq_len, batch)
      >>> state, metrics = step(state, ids, ids)
      >>> int(state.step), metrics.loss.shape, bool(metrics.finite)
      (1, (), True)
      >>> jax.tree.map(jnp.shape, state.carry)  # the next window starts here
      LSTMCarry(h=(1, 2, 8), c=(1, 2, 8))
    """

    def loss_fn(params, carry, inputs, targets, key):
        carry = jax.lax.stop_gradient(carry)
        return model.loss(params, inputs, targets, carry, key=key, remat=remat)

    def train_step(state: TrainState, inputs: Array, targets: Array):
        dropout_key = jax.random.fold_in(state.key, state.step)
        (loss, carry), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.carry, inputs, targets, dropout_key
        )
        grad_norm = optim.global_norm(grads)
        finite = optim.all_finite(grads) & jnp.isfinite(loss) & optim.all_finite(carry)
        # A NaN loss can come with finite gradients (e.g. an id outside the vocabulary):
        # the guard must skip that update too.
        grads = jax.tree.map(lambda g: jnp.where(finite, g, jnp.nan), grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optim.apply_updates(state.params, updates)
        carry = jax.tree.map(lambda c: jnp.where(finite, c, jnp.zeros_like(c)), carry)
        # The rate this step applied: a skipped update applies none and does not
        # advance the schedule (as optax's apply_if_finite), so its count is the
        # number of updates applied before, not the step.
        skipped = getattr(state.opt_state, "total_skipped", None)
        if skipped is None:
            learning_rate = schedule(state.step)
        else:
            applied = opt_state.total_skipped == skipped
            learning_rate = jnp.where(applied, schedule(state.step - skipped), 0.0)
        metrics = StepMetrics(loss, grad_norm, learning_rate, finite)
        return TrainState(state.step + 1, params, opt_state, carry, state.key), metrics

    if mesh is None:
        return jax.jit(train_step)
    shardings = state_shardings(mesh)
    windows = parallel.batch_sharding(mesh, 1)
    if mesh.size > 1:
        train_step = parallel.without_custom_calls(train_step)
    return jax.jit(
        train_step,
        in_shardings=(shardings, windows, windows),
        out_shardings=(shardings, parallel.replicated(mesh)),
    )


def state_shardings(mesh: jax.sharding.Mesh) -> TrainState:
    """Where a ``TrainState``'s fields live on ``mesh``: the carry split by batch, the rest whole.

    A pytree prefix of ``TrainState``, as ``jax.jit``'s ``in_shardings`` takes it.
    """
    whole = parallel.replicated(mesh)
    return TrainState(whole, whole, whole, parallel.batch_sharding(mesh, 1), whole)


def put_state(state: TrainState, mesh: jax.sharding.Mesh) -> TrainState:
    """Places a ``TrainState`` on ``mesh`` as ``make_train_step(mesh=mesh)`` expects it."""
    whole = parallel.put_replicated(state._replace(carry=None), mesh)
    return whole._replace(carry=parallel.put_batch(state.carry, mesh, axis=1))


@functools.lru_cache(maxsize=16)
def _eval_fn(model: CharModel, chunked: bool = False) -> Callable[..., Array]:
    @jax.jit
    def mean_nats(params, windows_in, windows_out):
        def one_window(carry, window_pair):
            inputs, targets = window_pair
            loss, carry = model.loss(params, inputs, targets, carry, remat=chunked)
            return carry, loss

        carry = model.zero_carry(windows_in.shape[-1])
        _, losses = jax.lax.scan(one_window, carry, (windows_in, windows_out))
        return jnp.mean(losses)

    return mean_nats


def evaluate(
    model: CharModel, params: Any, streams: np.ndarray, seq_len: int, *, chunked: bool = False
) -> float:
    """Bits per character on held-out streams, the carry passed from window to window.

    Args:
      model: the model.
      params: its parameters.
      streams: ``(batch, 1 + k·seq_len)`` ids, e.g. ``CharData.val``.
      seq_len: T.
      chunked: read each window in chunks of about ``√T`` steps
        (``CharModel.loss(remat=True)``), so that memory does not grow with T
        (the input projection and logits of a whole long window are large).

    Returns:
      The mean of ``-log2 p(x_t | x_{<t})`` over every character but each stream's first.

    Examples:
      >>> import jax, numpy as np
      >>> from jaxrnn.train import CharModel, ModelConfig, evaluate
      >>> model = CharModel(ModelConfig(vocab_size=5, hidden_size=8))
      >>> params = model.init(jax.random.key(0))
      >>> streams = np.zeros((2, 9), np.int32)  # (batch, 1 + 2·seq_len): two windows
      >>> bits = evaluate(model, params, streams, seq_len=4)
      >>> type(bits).__name__, bits > 0
      ('float', True)
    """
    count = (streams.shape[1] - 1) // seq_len
    if count < 1:
        raise ValueError(
            f"evaluate: streams of {streams.shape[1]} characters hold no window of seq_len="
            f"{seq_len} (each needs seq_len + 1)."
        )
    pairs = [window(streams, i, seq_len) for i in range(count)]
    windows_in = np.stack([p[0] for p in pairs])
    windows_out = np.stack([p[1] for p in pairs])
    return float(_eval_fn(model, chunked)(params, windows_in, windows_out)) / LN2


# Characters drawn per compiled call: one compilation serves every length, memory
# stays bounded, and the text can be printed as it comes.
_SAMPLE_CHUNK = 256


@functools.lru_cache(maxsize=16)
def _sample_fns(model: CharModel) -> tuple[Callable[..., Any], Callable[..., Any]]:
    @jax.jit
    def read_prime(params, prime_ids):
        carry, logits = model.apply(params, prime_ids)  # unbatched
        return carry, logits[-1]

    @jax.jit
    def draw_chunk(params, state, key, temperature):
        def one_char(state, step_key):
            carry, logits = state
            greedy = jnp.argmax(logits)
            drawn = jax.random.categorical(step_key, logits / jnp.maximum(temperature, 1e-6))
            char = jnp.where(temperature > 0, drawn, greedy)
            carry, next_logits = model.apply(params, char[None], carry)
            return (carry, next_logits[0]), char

        return jax.lax.scan(one_char, state, jax.random.split(key, _SAMPLE_CHUNK))

    return read_prime, draw_chunk


def sample_pieces(
    model: CharModel,
    params: Any,
    vocab: Vocabulary,
    prime: str,
    length: int,
    key: Array,
    temperature: float = 1.0,
) -> Iterator[str]:
    """``sample``'s text as it is drawn: pieces of up to 256 characters.

    Memory does not grow with ``length`` and the first piece comes after one
    compiled call, so any length can be printed as it is written. The text
    does not depend on ``length`` beyond its end: a longer sample with the same
    key starts with the shorter one. It takes ``sample``'s arguments and checks
    them at the call.

    Examples:
      >>> import jax
      >>> from jaxrnn.data import Vocabulary
      >>> from jaxrnn.train import CharModel, ModelConfig, sample_pieces
      >>> vocab = Vocabulary.from_text("abcde")
      >>> model = CharModel(ModelConfig(vocab_size=vocab.size, hidden_size=8))
      >>> params = model.init(jax.random.key(0))
      >>> pieces = sample_pieces(model, params, vocab, "ab", 600, jax.random.key(1))
      >>> [len(piece) for piece in pieces]
      [256, 256, 88]
    """
    if not prime:
        raise ValueError("sample: prime must have at least one character.")
    if not (isinstance(temperature, int | float | np.number) and 0 <= temperature < math.inf):
        raise ValueError(
            f"sample: temperature must be a finite number >= 0 (0: greedy), got {temperature!r}."
        )
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 0:
        raise ValueError(f"sample: length must be an int >= 0, got {length!r}.")
    if model.config.vocab_size != vocab.size:
        raise ValueError(
            f"sample: the model writes {model.config.vocab_size} characters, the vocabulary "
            f"has {vocab.size}: pass the vocabulary the model was trained with."
        )
    check_key("sample", key)
    prime_ids = jnp.asarray(vocab.encode(prime))  # checked here too, not at the first next
    read_prime, draw_chunk = _sample_fns(model)

    def pieces() -> Iterator[str]:
        state = read_prime(params, prime_ids)
        scale = jnp.float32(temperature)
        for index, start in enumerate(range(0, length, _SAMPLE_CHUNK)):
            # Each chunk its own key, folded from the caller's by its index.
            chunk_key = jax.random.fold_in(key, index)
            state, chars = draw_chunk(params, state, chunk_key, scale)
            yield vocab.decode(np.asarray(chars[: length - start]))

    return pieces()


def sample(
    model: CharModel,
    params: Any,
    vocab: Vocabulary,
    prime: str,
    length: int,
    key: Array,
    temperature: float = 1.0,
) -> str:
    """Writes ``length`` characters after ``prime``, drawing each from the model.

    Each character is drawn from ``softmax(logits / temperature)``; temperature
    0 takes the most likely one. ``sample_pieces`` gives the same text piece by
    piece, as it is drawn.

    Args:
      model: the model.
      params: its parameters.
      vocab: the vocabulary it was trained with.
      prime: the text to continue (at least one character, all in ``vocab``).
      length: how many characters to write.
      key: a PRNG key.
      temperature: > 0 for sampling (below 1 is more conservative), 0 for greedy.

    Returns:
      The characters written, without the prime: a string of ``length``.

    Examples:
      >>> import jax
      >>> from jaxrnn.data import Vocabulary
      >>> from jaxrnn.train import CharModel, ModelConfig, sample
      >>> vocab = Vocabulary.from_text("abcde")
      >>> model = CharModel(ModelConfig(vocab_size=vocab.size, hidden_size=8))
      >>> params = model.init(jax.random.key(0))
      >>> text = sample(model, params, vocab, "ab", 10, jax.random.key(1), temperature=0.0)
      >>> len(text), set(text) <= set(vocab.chars)
      (10, True)
    """
    return "".join(sample_pieces(model, params, vocab, prime, length, key, temperature))


# --------------------------------------------------------------------------- checkpoints


def _meta(model: CharModel, config: TrainConfig, vocab: Vocabulary, extra: dict[str, Any]):
    return {
        "model": dataclasses.asdict(model.config),
        "train": dataclasses.asdict(config),
        "vocab": "".join(vocab.chars),
        **extra,
    }


def save_state(
    path: str | Path,
    state: TrainState,
    model: CharModel,
    config: TrainConfig,
    vocab: Vocabulary,
    **extra: Any,
) -> Path:
    """Saves a ``TrainState`` with the model and training configuration and the vocabulary.

    ``extra`` (JSON-able) is stored too: the loop keeps its early-stopping
    counters and the text's fingerprint there.
    """
    return checkpoint.save(path, state, _meta(model, config, vocab, extra))


def load_model(path: str | Path) -> tuple[CharModel, Any, Vocabulary, dict[str, Any]]:
    """Reads a model for sampling from a checkpoint written by ``fit``.

    Returns:
      ``(model, params, vocab, meta)``.

    Raises:
      jaxrnn.checkpoint.CheckpointError: not a checkpoint of a character model.
    """
    meta = checkpoint.load_meta(path)
    try:
        with _quiet_single_layer_dropout():  # warned when the model was trained
            model = CharModel(ModelConfig(**meta["model"]))
        vocab = Vocabulary(tuple(meta["vocab"]))
        config = TrainConfig(**meta["train"])
    except (KeyError, TypeError, ValueError) as error:
        raise checkpoint.CheckpointError(
            f"{path} is not a checkpoint of a jaxrnn character model ({error})."
        ) from None
    state, meta = restore_state(path, model, make_optimizer(config)[0], config.batch_size)
    return model, state.params, vocab, meta


def restore_state(
    path: str | Path, model: CharModel, optimizer: optim.GradientTransformation, batch_size: int
) -> tuple[TrainState, dict[str, Any]]:
    """Reads a ``TrainState`` for ``model`` and ``optimizer`` from a checkpoint."""
    template = jax.eval_shape(  # shapes and dtypes only: nothing is initialised
        lambda key: init_state(model, optimizer, batch_size, key), jax.random.key(0)
    )
    return checkpoint.load(path, template)


# --------------------------------------------------------------------------- the loop


class FitResult(NamedTuple):
    """What ``fit`` returns.

    Attributes:
      state: the final ``TrainState``.
      best_val_bpc: the lowest validation bits per character seen (``inf`` if never
        evaluated), a time-limit stop's included: that of the parameters in ``best.npz``.
      best_step: the step at which it was seen.
      history: one dict per evaluation, as written to the metrics file.
      stopped: why the loop ended: ``"steps"``, ``"early_stopping"``, ``"time_limit"``
        or ``"stop_at_step"``.
    """

    state: TrainState
    best_val_bpc: float
    best_step: int
    history: list[dict[str, Any]]
    stopped: str


class NonFiniteError(RuntimeError):
    """Training stopped because the gradients stayed non-finite for too many steps."""


def _compiled_step(model: CharModel, config: TrainConfig, mesh: jax.sharding.Mesh):
    """One jitted step per model, optimizer and mesh: a second ``fit`` does not compile again."""
    # Only the fields that make_optimizer and the step read decide the step function.
    loop_only = dict(eval_every=1, sample_every=0, sample_length=1, patience=0, seed=0)
    config = dataclasses.replace(config, max_consecutive_skips=1, **loop_only)
    return _step_for(model, config, mesh)


@functools.lru_cache(maxsize=8)
def _step_for(model: CharModel, config: TrainConfig, mesh: jax.sharding.Mesh):
    optimizer, schedule = make_optimizer(config)
    return optimizer, make_train_step(model, optimizer, schedule, mesh=mesh, remat=config.remat)


def fit(
    model: CharModel,
    data: CharData,
    config: TrainConfig,
    *,
    state: TrainState | None = None,
    progress: dict[str, Any] | None = None,
    out_dir: str | Path | None = None,
    metrics_file: TextIO | None = None,
    text_fingerprint: str = "",
    prime: str = "\n",
    time_limit: float | None = None,
    stop_at_step: int | None = None,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
    devices: int | None = None,
) -> FitResult:
    """Trains ``model`` on ``data`` for ``config.steps`` updates, or until early stopping.

    Every ``eval_every`` steps (and at the end) it measures validation bits per
    character, writes a metrics line, and, with ``out_dir``, saves
    ``out_dir/checkpoint.npz`` (the whole state, to resume from) and, when the
    validation loss improved, ``out_dir/best.npz``. Every ``sample_every``
    steps it prints a sample. A ``KeyboardInterrupt`` saves a checkpoint first.

    The batch is split over the devices (``jaxrnn.parallel``): each computes
    its streams' gradients and XLA averages them; parameters and optimizer
    state are replicated. With several processes (``jax.distributed``) every
    process runs ``fit`` on the same data and process 0 alone writes
    checkpoints, metrics and messages.

    A window whose loss or gradients are not finite is skipped (counted in the
    metrics' ``skipped``); after ``config.max_consecutive_skips`` in a row the
    loop saves the state (whose parameters are the last good ones: no update
    went through) and raises ``NonFiniteError``.

    Args:
      model: the model.
      data: the text, from ``jaxrnn.data.char_data`` (same batch size and ``seq_len``).
      config: the ``TrainConfig``.
      state: a state to continue from (``restore_state``); a fresh one if omitted.
      progress: the loop's counters saved with that state's checkpoint
        (``best_val_bpc``, ``best_step``, ``bad_evals``, ``loss_sum``, ``loss_count``,
        ``kept_val_bpc``, ``kept_step``).
      out_dir: where checkpoints go; none are written if omitted.
      metrics_file: an open text file for JSON lines, one per evaluation.
      text_fingerprint: stored in checkpoints, so a resume can check the text.
      prime: the text periodic samples continue.
      time_limit: stop after this many seconds, with a checkpoint, as ``stop_at_step``
        would. Between evaluations the parameters reached are evaluated too, and kept
        in ``best.npz`` if the best so far, but that is no evaluation of the run's (no
        metrics line, no patience count, train_bpc's average goes on), so that a
        resumed run evaluates and stops early as one that never stopped.
      stop_at_step: end this session after that step, saving a checkpoint, as
        an interruption would; a later ``fit`` from the restored state
        continues exactly (the schedule still runs to ``config.steps``).
      show_progress: draw a tqdm progress bar (on stderr).
      log: where lines (samples, evaluations) go; ``tqdm.write`` if omitted.
      devices: how many of the visible devices to split the batch over; all if
        omitted. ``config.batch_size`` must divide by it.

    Returns:
      A ``FitResult``.

    Raises:
      ValueError: the data does not fit the config, or the batch does not split over the devices.
      NonFiniteError: the gradients stayed non-finite for ``max_consecutive_skips`` steps.
    """
    from tqdm.auto import tqdm

    if data.train.shape[0] != config.batch_size or data.seq_len != config.seq_len:
        raise ValueError(
            f"fit: data has {data.train.shape[0]} streams and windows of {data.seq_len}, "
            f"config asks for batch_size={config.batch_size}, seq_len={config.seq_len}."
        )
    if model.config.vocab_size != data.vocab.size:  # other ids would give NaN losses
        raise ValueError(
            f"fit: the model reads a vocabulary of {model.config.vocab_size} characters, the "
            f"data has {data.vocab.size}; build ModelConfig(vocab_size=data.vocab.size)."
        )
    mesh = parallel.make_mesh(devices)
    parallel.check_batch(config.batch_size, mesh, "batch_size")
    optimizer, train_step = _compiled_step(model, config, mesh)
    if data.vocab.missing(prime):  # e.g. a text without newlines
        prime = data.vocab.decode(data.train[0, :1])
    if state is None:
        state = init_state(model, optimizer, config.batch_size, jax.random.key(config.seed))
    state = put_state(state, mesh)
    main = parallel.is_main_process()
    if not main:
        metrics_file = None
    counters = {
        "best_val_bpc": math.inf,  # best_* and bad_evals: the run's evaluations, for patience
        "best_step": 0,
        "bad_evals": 0,
        "loss_sum": 0.0,
        "loss_count": 0,
        **(progress or {}),
    }
    # kept_*: the parameters in best.npz, the best of every evaluation, a time-limit
    # stop's included (checkpoints written before kept_* existed hold best_* alone).
    counters.setdefault("kept_val_bpc", counters["best_val_bpc"])
    counters.setdefault("kept_step", counters["best_step"])
    windows = data.windows_per_epoch
    out = Path(out_dir) if out_dir is not None else None
    sample_key = jax.random.fold_in(state.key, 1 << 30)
    history: list[dict[str, Any]] = []
    start_step = int(state.step)
    bar = tqdm(
        total=config.steps,
        initial=start_step,
        disable=not (show_progress and main),
        unit="step",
        dynamic_ncols=True,
        file=sys.stderr,
    )
    write = (log or bar.write) if main else (lambda _: None)
    started = time.perf_counter()
    speed = _Speed(config.batch_size * config.seq_len, start_step)
    pending: list[StepMetrics] = []  # on the device until the next report: no sync per step
    # Reports come often enough to see a run of K non-finite steps when it reaches K, and
    # every step while one is under way: the loop stops exactly after K.
    report_every, streak = min(10, config.max_consecutive_skips), 0
    last: StepMetrics | None = None

    def save(name: str) -> None:
        if out is not None:
            whole = parallel.to_host(state)  # a collective with several processes
            if main:
                meta = {"fingerprint": text_fingerprint, "progress": _jsonable(counters)}
                save_state(out / name, whole, model, config, data.vocab, **meta)

    def report(step: int) -> None:
        """Moves the pending metrics to the host, updates the bar, stops on persistent NaNs."""
        nonlocal pending, last, streak
        if not pending:
            return
        losses, norms, rates, finite = (np.asarray(x) for x in zip(*pending, strict=True))
        pending = []
        for loss in losses[finite.astype(bool)]:  # one at a time: the same sums after a resume
            counters["loss_sum"] += float(loss)
            counters["loss_count"] += 1
        last = StepMetrics(losses[-1], norms[-1], rates[-1], finite[-1])
        rate = speed.lap(step)
        bar.update(step - bar.n)
        bar.set_postfix(loss=f"{losses[-1] / LN2:.3f} bpc", chars_s=f"{rate:,.0f}", refresh=False)
        bad = streak = int(state.opt_state.consecutive_not_finite)
        if bad >= config.max_consecutive_skips:
            save("checkpoint.npz")
            where = f" in {out / 'checkpoint.npz'}" if out is not None else ""
            raise NonFiniteError(
                f"the gradients were NaN or infinite for {bad} steps in a row (to step {step}); "
                f"training stopped. The last good parameters are kept{where}; look for bad "
                "input, or lower --lr or --clip, then --resume."
            )

    def evaluate_now(step: int) -> None:
        val_bpc = evaluate(model, state.params, data.val, config.seq_len, chunked=config.remat)
        count = counters["loss_count"]
        record = {
            "step": step,
            "train_bpc": counters["loss_sum"] / count / LN2 if count else None,
            "val_bpc": val_bpc,
            "learning_rate": float(last.learning_rate) if last is not None else None,
            "grad_norm": float(last.grad_norm) if last is not None else None,
            "skipped": int(state.opt_state.total_skipped),
            "chars_per_s": speed.average(),
            "elapsed_s": round(time.perf_counter() - started, 3),
        }
        counters["loss_sum"], counters["loss_count"] = 0.0, 0
        history.append(record)
        if metrics_file is not None:
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
        if val_bpc < counters["best_val_bpc"] - 1e-4:
            counters.update(best_val_bpc=val_bpc, best_step=step, bad_evals=0)
        else:
            counters["bad_evals"] += 1
        train = "-" if record["train_bpc"] is None else f"{record['train_bpc']:.3f}"
        rate = f", {record['chars_per_s']:,} chars/s" if record["chars_per_s"] else ""
        best = keep(val_bpc, step)
        write(f"step {step}: train {train} bpc, validation {val_bpc:.3f} bpc{best}{rate}")

    def keep(val_bpc: float, step: int) -> str:
        """Saves checkpoint.npz, and best.npz if ``val_bpc`` is the best so far; says which."""
        improved = val_bpc < counters["kept_val_bpc"] - 1e-4
        if improved:
            counters.update(kept_val_bpc=val_bpc, kept_step=step)
        save("checkpoint.npz")
        if improved:
            save("best.npz")
        return " (best)" if improved else f" (best {counters['kept_val_bpc']:.3f})"

    # A run restored after it stopped early is over, as the run that never stopped is.
    over = bool(config.patience) and counters["bad_evals"] >= config.patience
    stopped, step = ("early_stopping" if over else "steps"), start_step
    try:
        while step < config.steps and not over:
            position = step % windows
            if position == 0:  # a new pass over the streams starts from a clean carry
                carry = model.zero_carry(config.batch_size)
                state = state._replace(carry=parallel.put_batch(carry, mesh, axis=1))
            inputs, targets = window(data.train, position, config.seq_len)
            inputs, targets = parallel.put_batch((inputs, targets), mesh, axis=1)
            state, metrics = train_step(state, inputs, targets)
            pending.append(metrics)
            step += 1
            evaluating = step % config.eval_every == 0 or step == config.steps
            sampling = config.sample_every and step % config.sample_every == 0
            if step % report_every == 0 or streak or evaluating or step == stop_at_step:
                report(step)
            if evaluating:
                evaluate_now(step)
                if config.patience and counters["bad_evals"] >= config.patience:
                    stopped = "early_stopping"
                    write(
                        f"early stopping: no better validation loss in {config.patience} "
                        f"evaluations; the best, {counters['kept_val_bpc']:.3f} bpc, was at "
                        f"step {counters['kept_step']}."
                    )
                    break
            if sampling:
                key = jax.random.fold_in(sample_key, step)
                text = sample(model, state.params, data.vocab, prime, config.sample_length, key)
                write(f"--- sample at step {step} ---\n{prime}{text}\n---")
            if evaluating or sampling:
                speed.restart(step)  # characters per second count training only
            if stop_at_step is not None and step >= stop_at_step:
                save("checkpoint.npz")
                stopped = "stop_at_step"
                break
            if time_limit is not None and time.perf_counter() - started > time_limit:
                # Between evaluations, the parameters reached are evaluated and kept if
                # the best, but patience, the metrics and train_bpc's average go on as
                # if the run had not stopped: a resumed run continues as one that did not.
                reached = f"time limit of {time_limit:.0f} s reached at step {step}"
                if evaluating:
                    write(f"{reached}.")
                else:
                    report(step)
                    val_bpc = evaluate(
                        model, state.params, data.val, config.seq_len, chunked=config.remat
                    )
                    best = keep(val_bpc, step)
                    write(
                        f"{reached}: validation {val_bpc:.3f} bpc{best}; not counted for "
                        "--patience, no metrics line."
                    )
                stopped = "time_limit"
                break
    except KeyboardInterrupt:
        report(step)
        save("checkpoint.npz")
        if out is not None:
            write(
                f"interrupted at step {int(state.step)}: saved {out / 'checkpoint.npz'}; "
                "continue with the same command and --resume."
            )
        raise
    finally:
        bar.close()
    return FitResult(state, counters["kept_val_bpc"], counters["kept_step"], history, stopped)


class _Speed:
    """Characters per second of training alone: evaluations and samples do not count."""

    def __init__(self, chars_per_step: int, step: int) -> None:
        self.chars_per_step, self.first_step = chars_per_step, step
        self.total_chars, self.total_seconds = 0, 0.0
        self.restart(step)

    def restart(self, step: int) -> None:
        self.step, self.time = step, time.perf_counter()

    def lap(self, step: int) -> float:
        """Characters per second since the last lap; adds them to the running average."""
        now = time.perf_counter()
        chars, seconds = (step - self.step) * self.chars_per_step, max(now - self.time, 1e-9)
        if self.step != self.first_step:  # the first steps pay for compilation
            self.total_chars += chars
            self.total_seconds += seconds
        self.restart(step)
        return chars / seconds

    def average(self) -> int | None:
        """The average since the last call, rounded; ``None`` before any lap counted."""
        if not self.total_seconds:
            return None
        rate = round(self.total_chars / self.total_seconds)
        self.total_chars, self.total_seconds = 0, 0.0
        return rate


def _jsonable(counters: dict[str, Any]) -> dict[str, Any]:
    """JSON has no infinity: the best loss before any evaluation is stored as null."""
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in counters.items()
    }


def progress_from_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The loop's counters stored in a checkpoint's metadata, ready for ``fit(progress=...)``."""
    progress = dict(meta.get("progress", {}))
    for name in ("best_val_bpc", "kept_val_bpc"):
        if name in progress and progress[name] is None:
            progress[name] = math.inf
    progress.setdefault("best_val_bpc", math.inf)
    return progress
