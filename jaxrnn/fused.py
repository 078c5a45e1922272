r"""Fused sequence kernels: one ``jax.custom_vjp`` over a whole sequence of a built-in cell.

``jaxrnn.unroll`` calls this module for the built-in Elman, LSTM and GRU cells;
cells written by users keep plain autodiff of their ``step`` under ``lax.scan``.
Both compute the same function and the same gradients (tested to 1e-10 in
float64); the fused path is faster because of where the work goes:

- **Forward.** The input projection ``xs @ w_ih`` of all T steps is one
  ``(T·B, I) x (I, G·H)`` matmul before the scan (one per gate for the GRU);
  each step does one fused ``(B, H) x (H, G·H)`` matmul and the gate
  arithmetic, the bias included. Under differentiation
  the scan also stores what the backward pass needs: the gate activations,
  or for the LSTM the factors its backward loop multiplies by (computed in
  the step, while its values are in cache; a pass over all steps' gates
  after the loop made the LSTM's training pass 7-19 % slower).
- **Backward.** Everything that does not depend on the incoming gradient (the
  derivatives of the activations, the previous states) is computed for all
  steps at once before the reverse scan, unless the forward loop stored it.
  The reverse scan carries only ``dL/dh`` (and ``dL/dc``) and does one
  ``(B, G·H) x (G·H, H)`` matmul per step. The weight, bias and input
  gradients come after the loop as one large matmul each,
  $dW_{hh} = H_{prev}^\top\,dG$, $dW_{ih} = X^\top\,dG$,
  $dX = dG\,W_{ih}^\top$, where $dG$ stacks the gate gradients of all steps
  as a ``(T·B, G·H)`` matrix. Autodiff of a scan instead does a small weight
  matmul and a ``(H, G·H)`` accumulation in every step.
- **Rematerialisation** (``remat=True``). The forward pass stores nothing
  beyond ``ys`` (and the LSTM's cell states); the backward pass recomputes
  the gate pre-activations of all steps with two large matmuls, since every
  previous state is known once ``ys`` is. Memory per layer falls from about
  ``(G + 3)·T·B·H`` numbers for the LSTM and the GRU (their backward pass's
  factors and ``ys``) to ``2·T·B·H`` for the LSTM (``ys`` and the cell
  states) and ``T·B·H`` for the GRU (``ys``), for little time.

- **oneMKL on a CPU** (``jaxrnn.blas``, where installed): every matmul in the
  data's dtype is a custom call into oneMKL, and each of the two loops of the
  LSTM, the GRU (reset after the matmul) and the Elman cell (``tanh``,
  ``relu`` or the sigmoid) is one custom call: the forward loop with its input
  projection (and, under differentiation, the backward pass's factors), the
  backward loop writing the gate gradients over the factors (the Elman cell's
  from its outputs). A GRU with the reset before the matmul, and an Elman
  cell with another activation, keep their scans. Large steps are cut by
  columns (each thread owns a band of hidden units and its slice of the
  weights; the bands synchronise at every step), small ones by rows of the
  batch. Forward-mode derivatives of these calls (second-order reverse mode)
  go through the scans, and so do those of the scans that call the matmuls
  (JAX drops a rule inside a scan it linearizes). Elsewhere, and with
  ``jaxrnn.blas.use(False)``, XLA's dot and the scans.

- **bfloat16 matmuls** (``compute_dtype=jnp.bfloat16``). Every matmul of both
  passes casts its inputs (the weights once, before the loops) and
  accumulates in the data's dtype; everything else stays in the data's dtype.

The fused function is reverse-mode only: ``jax.jvp``, ``jax.jacfwd`` and
``jax.linearize`` of it need ``unroll(..., fused=False)``. Its gradient can be
differentiated again in either mode (a gradient penalty; ``jax.jvp`` of the
gradient, a Hessian-vector product; ``jax.hessian``, forward over reverse),
and again (third-order reverse mode): the forward and backward passes are
plain JAX, the loop kernels and matmuls of ``jaxrnn.blas`` included.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxrnn import blas, cells
from jaxrnn.cells import Cell, ElmanParams, GRUParams, LSTMCarry, LSTMParams

Array = jax.Array

__all__ = ["default_unroll", "supports", "unroll"]


# The ``step_projected`` closure each built-in cell has, by qualified name: a cell
# whose step was replaced (``cell._replace(step_projected=...)``) or a variant
# with its own step has another and keeps plain autodiff.
def _builtin_step_name(spec: cells.CellSpec) -> str:
    if spec.kind == "gru":
        return f"gru.<locals>.step_projected_{'after' if spec.reset_after else 'before'}"
    return f"{spec.kind}.<locals>.step_projected"


_PARAMS = {"elman": ElmanParams, "lstm": LSTMParams, "gru": GRUParams}

# Elman activations whose derivative follows from their output, so that the
# backward pass needs only ``ys``; any other activation keeps its
# pre-activations and is differentiated step by step with ``jax.vjp``, which is
# exact for any function. Each slope equals what JAX's own rule gives
# (``relu``'s is 0 at 0).
_SLOPES: dict[Callable[[Array], Array], Callable[[Array], Array]] = {
    jnp.tanh: lambda y: 1 - y * y,
    lax.tanh: lambda y: 1 - y * y,
    jax.nn.sigmoid: lambda y: y * (1 - y),
    lax.logistic: lambda y: y * (1 - y),
    jax.nn.relu: lambda y: (y > 0).astype(y.dtype),
}


# The Elman activations ``jaxrnn.blas``'s Elman kernel computes, by its names for them.
_ELMAN_KERNEL_ACTIVATIONS: dict[Callable[[Array], Array], str] = {
    jnp.tanh: "tanh",
    lax.tanh: "tanh",
    jax.nn.sigmoid: "sigmoid",
    lax.logistic: "sigmoid",
    jax.nn.relu: "relu",
}


# ``lax.scan``'s ``unroll`` when ``jaxrnn.unroll`` is given none, by backend (see
# ``default_unroll``).
_DEFAULT_UNROLL: dict[str, int] = {"cpu": 1}


def default_unroll(backend: str | None = None) -> int:
    """The number of steps per loop iteration ``jaxrnn.unroll`` uses by default.

    ``lax.scan`` runs ``unroll`` steps per iteration of its loop: more steps
    save loop overhead and let XLA schedule across steps, at the price of a
    program (and compile time) that grows with ``unroll``. Chosen per backend
    from ``benchmarks/unroll_sweep.py`` (the ``lstm`` workload, T=100, B=32,
    I=128, H=256, forward and training passes at unroll 1, 2, 4 and 8):

    - **cpu: 1.** On a 2-core Xeon (Sapphire Rapids), jax 0.10.2, the forward
      pass took 51, 53, 53 and 58 ms and the training pass 103, 106, 103 and
      118 ms at unroll 1, 2, 4 and 8, while compile time rose from 1.1 s to
      2-3 s. Each step's ``(B, H) x (H, G·H)`` matmul dominates; there is no
      loop overhead left for unrolling to save.
    - **Any other backend: 1,** until measured there (run the sweep on a GPU
      and add the value here); ``jaxrnn.unroll(..., unroll=k)`` overrides it.

    Args:
      backend: a JAX backend name (``"cpu"``, ``"gpu"``, ``"tpu"``); ``None`` for
        ``jax.default_backend()``.

    Returns:
      The ``unroll`` for ``lax.scan``, an int >= 1.

    Examples:
      >>> from jaxrnn import fused
      >>> fused.default_unroll("cpu"), fused.default_unroll("gpu")
      (1, 1)
    """
    backend = jax.default_backend() if backend is None else backend
    return _DEFAULT_UNROLL.get(backend, 1)


class _Config(NamedTuple):
    """The static part of a fused call (hashable: ``custom_vjp``'s nondiff argument)."""

    kind: str  # "elman", "lstm", "gru-after" or "gru-before"
    activation: Callable[[Array], Array] | None
    reverse: bool
    unroll: int | bool
    remat: bool
    # Matmul inputs in this dtype, products accumulated in ``accumulate_dtype`` (the
    # data's); ``None``: every matmul in the data's dtype.
    compute_dtype: Any = None
    accumulate_dtype: Any = None
    # The data's-dtype matmuls through ``jaxrnn.blas`` (oneMKL on a CPU).
    blas: bool = False


def supports(cell: Cell, params: Any, xs: Array, carry: Any) -> bool:
    """Whether ``unroll`` can take the fused path for this cell and these arrays.

    True for the built-in Elman, LSTM and GRU cells (their own ``step``, their
    own parameter ``NamedTuple``) when ``xs``, the parameters and the carry share
    one floating dtype. Anything else (a user's cell, a replaced step, mixed
    dtypes) runs through plain autodiff of ``cell.step``.

    Args:
      cell: the cell.
      params: its parameters.
      xs: the inputs, ``(time, *batch, input_size)``.
      carry: the initial carry, leaves ``(*batch, hidden_size)``.

    Returns:
      Whether the fused kernels apply (a Python bool).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxrnn import cells, fused
      >>> cell = cells.lstm(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs, carry = jnp.zeros((5, 2, 3), jnp.float32), cell.zero_carry((2,))
      >>> fused.supports(cell, params, xs, carry)
      True
      >>> replaced = cell._replace(step_projected=lambda p, c, g: cell.step_projected(p, c, g))
      >>> fused.supports(replaced, params, xs, carry)
      False
      >>> fused.supports(cell, params, xs.astype(jnp.float16), carry)  # mixed dtypes
      False
    """
    if not _has_builtin_step(cell) or type(params) is not _PARAMS[cell.spec.kind]:
        return False
    leaves = [*jax.tree.leaves(params), xs, *jax.tree.leaves(carry)]
    dtypes = {jnp.result_type(leaf) for leaf in leaves}
    return len(dtypes) == 1 and jnp.issubdtype(dtypes.pop(), jnp.floating)


def _has_builtin_step(cell: Cell) -> bool:
    """Whether ``cell`` is a built-in Elman, LSTM or GRU cell with its own step and
    input projection (not replaced): its parameters are then its own ``NamedTuple``.

    Examples:
      >>> from jaxrnn import cells, fused
      >>> cell = cells.gru(8)
      >>> fused._has_builtin_step(cell)
      True
      >>> fused._has_builtin_step(cell._replace(step_projected=lambda p, c, g: (c, c)))
      False
    """
    spec = cell.spec
    if spec is None or spec.kind not in _PARAMS:
        return False
    step = cell.step_projected
    return (
        getattr(step, "__module__", None) == cells.__name__
        and getattr(step, "__qualname__", None) == _builtin_step_name(spec)
        and cell.project_inputs is cells._project
    )


def unroll(
    cell: Cell,
    params: Any,
    xs: Array,
    carry: Any,
    *,
    seq_lengths: Array | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    remat: bool = False,
    compute_dtype: Any = None,
) -> tuple[Any, Array]:
    """The fused equivalent of ``jaxrnn.unroll`` for a cell that ``supports`` accepts.

    Arguments are those of ``jaxrnn.unroll``, already checked; ``carry`` is
    given. Batch axes are flattened into one for the kernels and restored after.

    Args:
      cell: a built-in cell.
      params: its parameters.
      xs: ``(time, *batch, input_size)``.
      carry: the initial carry, leaves ``(*batch, hidden_size)``.
      seq_lengths: optional ints of shape ``batch``.
      reverse: run from the last step to the first.
      unroll: passed to both ``lax.scan`` loops (forward and backward).
      remat: recompute the gate activations in the backward pass instead of
        storing them.
      compute_dtype: ``None``, or a floating dtype narrower than the data's (say
        ``jnp.bfloat16``) in which every matmul of the forward and backward
        passes takes its inputs, accumulating in the data's dtype
        (``preferred_element_type``); carries, gates and their gradients stay
        in the data's dtype.

    Returns:
      ``(carry, ys)`` as ``jaxrnn.unroll`` returns them.
    """
    spec = cell.spec
    kind = spec.kind
    if kind == "gru":
        kind = "gru-after" if spec.reset_after else "gru-before"
    accumulate = None if compute_dtype is None else jnp.dtype(xs.dtype)
    compute = None if compute_dtype is None else jnp.dtype(compute_dtype)
    use_blas = compute is None and blas.active(xs.dtype)
    config = _Config(
        kind, spec.activation, bool(reverse), unroll, bool(remat), compute, accumulate, use_blas
    )

    time, batch_shape = np.shape(xs)[0], tuple(np.shape(xs)[1:-1])
    if time == 0:  # no step: the carry as it came, no outputs
        leaf = jax.tree.leaves(carry)[0]
        return carry, jnp.zeros((0, *batch_shape, spec.hidden_size), leaf.dtype)
    batch = int(np.prod(batch_shape, dtype=np.int64))
    flat_xs = jnp.reshape(xs, (time, batch, np.shape(xs)[-1]))
    flat_carry = jax.tree.map(lambda leaf: jnp.reshape(leaf, (batch, leaf.shape[-1])), carry)
    if kind == "lstm":
        flat_carry = (flat_carry.h, flat_carry.c)
    valid = None
    if seq_lengths is not None:
        steps = jnp.arange(time, dtype=jnp.int32)  # 8-bit lengths would wrap around
        valid = steps[:, None] < jnp.reshape(seq_lengths, (1, batch))  # (T, B)

    final, ys = _sequence(config, params, flat_xs, flat_carry, valid)

    ys = jnp.reshape(ys, (time, *batch_shape, ys.shape[-1]))
    final = jax.tree.map(lambda leaf: jnp.reshape(leaf, (*batch_shape, leaf.shape[-1])), final)
    if kind == "lstm":
        final = LSTMCarry(*final)
    return final, ys


# --------------------------------------------------------------------------- helpers


def _mask(valid: Array | None, new: Array, old: Array) -> Array:
    return new if valid is None else jnp.where(valid[:, None], new, old)


def _previous(config: _Config, seq: Array, first: Array, valid: Array | None) -> Array:
    """The state before each step: ``seq`` shifted one step against the direction of travel.

    ``seq`` holds the state after each step ``(T, B, H)``; ``first`` the initial one.
    With lengths, ``seq`` is the outputs (zero past a sequence's end), and a step
    whose predecessor was padding starts from ``first``. Only valid steps' values
    matter: the gradients of padded steps are zero.
    """
    if config.reverse:
        shifted = jnp.concatenate([seq[1:], first[None]], axis=0)
    else:
        shifted = jnp.concatenate([first[None], seq[:-1]], axis=0)
    if valid is None:
        return shifted
    if config.reverse:
        valid_before = jnp.concatenate([valid[1:], jnp.zeros_like(valid[:1])], axis=0)
    else:
        valid_before = jnp.concatenate([jnp.zeros_like(valid[:1]), valid[:-1]], axis=0)
    return jnp.where(valid_before[..., None], shifted, first[None])


def _mm(config: _Config, a: Array, b: Array) -> Array:
    """``a @ b`` for ``a`` of shape ``(..., K)``, ``b`` ``(K, N)``; with a
    ``compute_dtype``, inputs in it and the sum in the data's dtype."""
    if config.blas:  # forward-differentiable too: for jax.hessian of a fused pass
        product = blas._product(a.reshape(-1, a.shape[-1]), b)
        return product.reshape(*a.shape[:-1], b.shape[-1])
    if config.compute_dtype is None:
        return a @ b
    cast = config.compute_dtype
    return jnp.matmul(
        a.astype(cast), b.astype(cast), preferred_element_type=config.accumulate_dtype
    )


def _weights(config: _Config, w: Array) -> Array:
    """A weight matrix for the matmuls of a loop: cast once, before it, not every step."""
    return w if config.compute_dtype is None else w.astype(config.compute_dtype)


def _sum_over_steps(config: _Config, a: Array, b: Array) -> Array:
    """``sum_{t, b} a[t, b]ᵀ b[t, b]``: one ``(K, T·B) x (T·B, N)`` matmul, no transposes."""
    if config.blas:
        a2, b2 = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
        return blas._product(a2, b2, transpose_a=True)
    # Contracting time and batch in place, not reshaped into one axis: a batch split over
    # devices stays split (each device sums its streams, then one all-reduce), where
    # merging it with time would make XLA gather the whole batch onto every device.
    dims = (((0, 1), (0, 1)), ((), ()))
    if config.compute_dtype is None:
        return lax.dot_general(a, b, dims)
    cast = config.compute_dtype
    return lax.dot_general(
        a.astype(cast), b.astype(cast), dims, preferred_element_type=config.accumulate_dtype
    )


def _sigmoid(a: Array) -> Array:
    # σ(a) = (1 + tanh(a/2)) / 2: XLA's CPU tanh vectorises well in every fusion,
    # where its 1 / (1 + exp(-a)) can be several times slower.
    return 0.5 * jnp.tanh(0.5 * a) + 0.5


def _sigmoid_grad(s: Array) -> Array:
    return s * (1 - s)


def _tanh_grad(t: Array) -> Array:
    return 1 - t * t


def _gate_scale(H: int, dtype: Any) -> Array:
    """For the LSTM's gates i, f, g, o: 1/2 where the gate is a sigmoid, 1 for g."""
    return jnp.concatenate(
        [jnp.full((2 * H,), 0.5, dtype), jnp.ones((H,), dtype), jnp.full((H,), 0.5, dtype)]
    )


# --------------------------------------------------------------------------- the cells' arithmetic


def _project(config: _Config, params: Any, xs: Array) -> Array | tuple[Array, ...]:
    """``xs @ w_ih`` for all steps (the bias joins inside the loop, fused with the gates).

    The GRU's projection is one matmul per gate, ``(x_r, x_z, x_n)``: a loop step
    then reads whole rows of each, which XLA's CPU fusions vectorise; reading
    column slices of one step's row is several times slower.
    """
    if config.kind.startswith("gru"):
        return tuple(_mm(config, xs, w) for w in jnp.split(params.w_ih, 3, axis=-1))
    return _mm(config, xs, params.w_ih)


def _activations(config: _Config, params: Any, x: Any, h: Array) -> tuple[Array, ...]:
    """The gate activations from the projected inputs ``x`` (from ``_project``) and the
    previous states ``h``, for one step ``(B, ·)`` or all steps at once ``(T, B, ·)``.

    Returns: Elman, ``(pre-activation,)``; LSTM, ``(σ(i) σ(f) tanh(g) σ(o),)``
    concatenated; GRU with the reset after the matmul, ``(r, z, n, h @ w_hn +
    b_hn)``; GRU with the reset before, ``(r, z, n)``.
    """
    kind, H = config.kind, params.w_hh.shape[0]
    b = 0.0 if params.b is None else params.b
    if kind == "elman":
        return (x + _mm(config, h, params.w_hh) + b,)
    if kind == "lstm":
        # All four gates in one tanh: σ(a) = tanh(a/2)/2 + 1/2 for i, f, o.
        scale = _gate_scale(H, x.dtype)
        return (jnp.tanh((x + _mm(config, h, params.w_hh) + b) * scale) * scale + (1 - scale),)
    x_r, x_z, x_n = x
    b_r, b_z, b_n = (0.0, 0.0, 0.0) if params.b is None else jnp.split(params.b, 3)
    if kind == "gru-after":
        h_r, h_z, h_n = jnp.split(_mm(config, h, params.w_hh), 3, axis=-1)
        if params.b_hn is not None:
            h_n = h_n + params.b_hn
        r, z = _sigmoid(x_r + b_r + h_r), _sigmoid(x_z + b_z + h_z)
        return r, z, jnp.tanh(x_n + b_n + r * h_n), h_n
    # gru-before
    h_r, h_z = jnp.split(_mm(config, h, params.w_hh[:, : 2 * H]), 2, axis=-1)
    r, z = _sigmoid(x_r + b_r + h_r), _sigmoid(x_z + b_z + h_z)
    return r, z, jnp.tanh(x_n + b_n + _mm(config, r * h, params.w_hh[:, 2 * H :]))


def _lstm_grad_factors(acts: Array, c_prev: Array, c: Array) -> tuple[Array, Array, Array]:
    """The factors of the LSTM's backward pass, for one step ``(B, ·)`` or all ``(T, B, ·)``.

    With ``acts = [σ(i) σ(f) tanh(g) σ(o)]``, the previous and new cell states:
    ``k = [g·σ'(i), c_prev·σ'(f), i·tanh'(g), tanh(c)·σ'(o)]`` ``(·, 4H)``,
    ``k_c = o·tanh'(tanh(c))`` and the forget gate ``f`` ``(·, H)``, so that,
    with ``dh`` and ``dc`` the gradients w.r.t. the new state, ``dc += dh·k_c``,
    the gradient w.r.t. the gate pre-activations is ``[dc, dc, dc, dh] ⊙ k``
    and the one w.r.t. the previous cell state ``dc·f``.

    Returns:
      ``(k, k_c, f)``.
    """
    i, f, g, o = jnp.split(acts, 4, axis=-1)
    tanh_c = jnp.tanh(c)
    k = jnp.concatenate(
        [
            g * _sigmoid_grad(i),
            c_prev * _sigmoid_grad(f),
            i * _tanh_grad(g),
            tanh_c * _sigmoid_grad(o),
        ],
        axis=-1,
    )
    return k, o * _tanh_grad(tanh_c), f


def _gru_grad_factors(acts: tuple[Array, ...], h_prev: Array) -> tuple[Array, ...]:
    """The factors of the GRU's backward pass (the reset gate after the matmul), for
    one step ``(B, H)`` or all ``(T, B, H)``.

    From ``acts = (r, z, n, h_n)`` (``_activations``'; ``h_n = h_prev @ w_hn +
    b_hn``) and the previous states: with ``k_n = (1 - z)·tanh'(n)``, ``q_r =
    k_n·h_n·σ'(r)``, ``q_z = (h_prev - n)·σ'(z)`` and ``q_hn = k_n·r``, the gradients
    w.r.t. a step's gate inputs, with ``dh`` the one w.r.t. its new state, are
    ``dh·q_r``, ``dh·q_z`` and ``dh·k_n`` (``r``, ``z``, ``n``), w.r.t. ``h_n``
    ``dh·q_hn``, and w.r.t. the previous state ``dh·z + [dh·q_r, dh·q_z,
    dh·q_hn] @ w_hhᵀ``.

    Returns:
      ``(q_r, q_z, q_hn, k_n, z)``.
    """
    r, z, n, h_n = acts
    k_n = (1 - z) * _tanh_grad(n)
    return k_n * h_n * _sigmoid_grad(r), (h_prev - n) * _sigmoid_grad(z), k_n * r, k_n, z


def _new_state(config: _Config, acts: tuple[Array, ...], carry: Any):
    """The carry after one step, from its gate activations."""
    if config.kind == "elman":
        return config.activation(acts[0])
    if config.kind == "lstm":
        i, f, g, o = jnp.split(acts[0], 4, axis=-1)
        c = f * carry[1] + i * g
        return (o * jnp.tanh(c), c)
    z, n = acts[1], acts[2]
    return n + z * (carry - n)


# --------------------------------------------------------------------------- loops


def _scan(config: _Config, body, carry, xs, *, backward: bool):
    reverse = config.reverse != backward
    return lax.scan(body, carry, xs, reverse=reverse, unroll=config.unroll)


def _scan_in_place(config: _Config, body, carry, buffers, xs, *, backward: bool):
    """``lax.scan`` whose step also replaces its own row of each of ``buffers``.

    ``body(carry, rows, x) -> (carry, new_rows, y)``, where ``rows`` are row t of
    ``buffers`` (arrays of shape ``(T, ...)``). A step reads its row and writes
    what it computed there; for a buffer nothing else reads afterwards (the
    projected inputs, say), XLA writes in place. That spares the zero-filled
    output array (and its copy) that ``lax.scan`` would allocate for the new
    rows: on a CPU, fresh memory costs page faults as well as bandwidth.

    Returns ``(carry, buffers, ys)``.
    """
    steps = jnp.arange(jax.tree.leaves(buffers)[0].shape[0])

    def step(state, inputs):
        carry, buffers = state
        t, x = inputs
        rows = jax.tree.map(lambda b: lax.dynamic_index_in_dim(b, t, keepdims=False), buffers)
        carry, new_rows, y = body(carry, rows, x)
        buffers = jax.tree.map(
            lambda b, r: lax.dynamic_update_index_in_dim(b, r.astype(b.dtype), t, 0),
            buffers,
            new_rows,
        )
        return (carry, buffers), y

    (carry, buffers), ys = _scan(config, step, (carry, buffers), (steps, xs), backward=backward)
    return carry, buffers, ys


# --------------------------------------------------------------------------- forward


def _forward(config: _Config, params: Any, xs: Array, carry: Any, valid: Array | None, keep: str):
    """The forward loop: ``(final_carry, ys, saved)``.

    ``keep`` says what ``saved`` holds for the backward pass: ``"nothing"`` (a
    plain forward pass); ``"states"`` (rematerialisation: the LSTM's cell states,
    a recurrence of their own, cheap to store and costly to recompute); or
    ``"activations"``: ``acts``, the gate activations of every step as
    ``_activations`` returns them, written over the projected inputs (for an
    Elman cell, nothing when its activation is in ``_SLOPES``); for the LSTM,
    ``_lstm_grad_factors``' ``(k, k_c, f)`` instead, ``k`` written over the
    projected inputs, and for the GRU with the reset after the matmul
    ``_gru_grad_factors``' ``(q_r, q_z, q_hn, k_n, z)``, the first three written
    over the projected inputs.

    On a CPU with ``jaxrnn.blas``, an LSTM's forward pass (keeping nothing or its
    factors) is one custom call (``blas._lstm_forward``), its input projection
    included, instead of the projection and the scan; so is a GRU's with the
    reset after the matmul (``blas._gru_forward``), and an Elman cell's whose
    activation the kernel has (``blas._elman_forward``).
    """
    if keep == "states" and config.kind != "lstm":
        keep = "nothing"  # only the LSTM has states beyond ys
    if keep in ("nothing", "activations") and config.blas:
        if config.kind == "lstm":
            return _lstm_loop(config, keep, params, xs, carry, valid)
        if config.kind == "gru-after":
            return _gru_loop(config, keep, params, xs, carry, valid)
        if config.kind == "elman" and config.activation in _ELMAN_KERNEL_ACTIVATIONS:
            return _elman_loop(config, params, xs, carry, valid)
    scan = functools.partial(_forward_scan, keep=keep)
    return _blas_scan(config, scan, params, xs, carry, valid)


def _forward_scan(config: _Config, params: Any, xs: Array, carry: Any, valid: Any, keep: str):
    """``_forward`` as the input projection and a scan."""
    dtype = xs.dtype
    is_lstm = config.kind == "lstm"
    projected = _project(config, params, xs)  # (T, B, G·H): large matmuls before the loop
    loop_params = params._replace(w_hh=_weights(config, params.w_hh))
    buffers = (projected,) if is_lstm else projected

    def cell(carry, x_t, valid_t):
        h = carry[0] if is_lstm else carry
        acts = _activations(config, loop_params, x_t, h)
        state = jax.tree.map(lambda a: a.astype(dtype), _new_state(config, acts, carry))
        new_carry = state
        if valid_t is not None:
            new_carry = jax.tree.map(functools.partial(_mask, valid_t), state, carry)
        y = new_carry[0] if is_lstm else new_carry
        if valid_t is not None:
            y = jnp.where(valid_t[:, None], y, jnp.zeros((), dtype))
        return new_carry, y, acts, state

    # The Elman cell's known activations need nothing beyond ys; the GRU's and
    # LSTM's activations are expensive enough that XLA computes them once, so
    # they can overwrite the projected inputs in place (a cheap expression would
    # be recomputed by each of its readers, and XLA would copy the buffer).
    if config.kind == "elman" and keep == "activations":
        keep = "nothing" if config.activation in _SLOPES else "pre-activations"

    if keep != "activations":

        def body(carry, inputs):
            x_t, valid_t = inputs
            new_carry, y, acts, _ = cell(carry, x_t, valid_t)
            if keep == "pre-activations":
                return new_carry, (y, acts)
            return new_carry, (y, new_carry[1] if is_lstm and keep == "states" else None)

        final, (ys, saved) = _scan(config, body, carry, (projected, valid), backward=False)
        return final, ys, saved

    def body_in_place(carry, rows, valid_t):
        x_t = rows[0] if is_lstm else rows
        new_carry, y, acts, state = cell(carry, x_t, valid_t)
        # The backward pass's factors, while this step's values are at hand: the
        # LSTM and GRU then need no pass over all steps' activations before their loops.
        if is_lstm:
            acts = _lstm_grad_factors(acts[0], carry[1], state[1])
        elif config.kind == "gru-after":
            acts = _gru_grad_factors(acts, carry)
        # What has no buffer of its own (the GRU's k_n and z, the LSTM's k_c and f)
        # is a per-step output.
        return new_carry, acts[: len(rows)], (y, acts[len(rows) :])

    final, rows, (ys, extra) = _scan_in_place(
        config, body_in_place, carry, buffers, valid, backward=False
    )
    return final, ys, tuple(rows) + tuple(extra)


def _kernel_or_scan(config: _Config, kernel: Callable, scan: Callable, *args):
    """``scan(config, *args)``; with ``jaxrnn.blas`` (``config.blas``), ``kernel(*args)``
    on a CPU and the scan with XLA's dot elsewhere, the derivatives the scan's.

    ``kernel`` is one of ``jaxrnn.blas``'s loop custom calls, equal to the scan but
    without a derivative of its own: second-order reverse mode differentiates the
    forward pass and the backward loop, and gets ``jax.jvp`` of the scan.
    """
    if not config.blas or not blas._fits_lp64(*jax.tree.leaves(args)):
        return _blas_scan(config, scan, *args)
    scan = functools.partial(scan, config._replace(blas=False))
    kernel_on_cpu = functools.partial(lax.platform_dependent, cpu=kernel, default=scan)
    return _differentiated_as(scan, kernel_on_cpu, *args)


def _blas_scan(config: _Config, scan: Callable, *args):
    """``scan(config, *args)``, a loop whose steps call ``jaxrnn.blas``'s matmuls
    (``config.blas``), its derivatives the same scan's with XLA's dot.

    The matmuls' own rule does not survive inside a scan: linearizing one, JAX
    partially evaluates its primal body to hoist what does not change from step to
    step, which inlines every ``custom_jvp`` there as its plain function, and the
    next order of differentiation met the bare custom call (third-order reverse
    mode failed: "the FFI call to jaxrnn_blas_gemm cannot be differentiated").
    Around the whole loop, as around the loop kernels, the rule stays.
    """
    if not config.blas:
        return scan(config, *args)
    plain = functools.partial(scan, config._replace(blas=False))
    return _differentiated_as(plain, functools.partial(scan, config), *args)


def _differentiated_as(scan: Callable, fn: Callable, *args):
    """``fn(*args)``, equal to ``scan(*args)``, its derivatives of every order ``scan``'s."""

    @jax.custom_jvp
    def call(*args):
        return fn(*args)

    @call.defjvp
    def call_jvp(primals, tangents):
        # The primal from `call` itself, not from the scan's jvp: under vmap the kernel
        # and the scan batch their outputs on different axes, and JAX then mixed the two
        # up (jax.hessian of a jitted Elman cell got a gradient of b per step).
        return call(*primals), jax.jvp(scan, primals, tangents)[1]

    return call(*args)


def _lstm_loop(config: _Config, keep: str, params: Any, xs: Array, carry: Any, valid: Any):
    """``_forward`` of an LSTM with ``keep`` ``"nothing"`` or ``"activations"``: on a CPU,
    the whole loop, its input projection and the backward pass's factors included, as
    one oneMKL custom call (``blas._lstm_forward``); elsewhere the scan."""
    factors = keep == "activations"

    def kernel(params, xs, carry, valid):
        ys, h, c, *saved = blas._lstm_forward(
            xs,
            params.w_ih,
            params.w_hh,
            params.b,
            *carry,
            valid,
            reverse=config.reverse,
            factors=factors,
        )
        return (h, c), ys, tuple(saved) if factors else None

    scan = functools.partial(_forward, keep=keep)
    return _kernel_or_scan(config, kernel, scan, params, xs, carry, valid)


def _elman_loop(config: _Config, params: Any, xs: Array, carry: Array, valid: Any):
    """``_forward`` of an Elman cell whose activation the kernel has, keeping nothing
    (its backward pass needs only ``ys``): on a CPU, the whole loop and its input
    projection as one oneMKL custom call (``blas._elman_forward``); elsewhere the scan."""

    def kernel(params, xs, carry, valid):
        ys, h = blas._elman_forward(
            xs,
            params.w_ih,
            params.w_hh,
            params.b,
            carry,
            valid,
            activation=_ELMAN_KERNEL_ACTIVATIONS[config.activation],
            reverse=config.reverse,
        )
        return h, ys, None

    scan = functools.partial(_forward, keep="nothing")
    return _kernel_or_scan(config, kernel, scan, params, xs, carry, valid)


def _elman_backward_scan(config: _Config, w_hh_t, per_step, d_ys, valid, d_final):
    """The Elman cell's backward loop as a reverse scan: ``(d_carry, d_pre)``, the
    gradients w.r.t. the pre-activations of every step. ``per_step`` is the
    activation's slope at each step where it follows from the outputs (``_SLOPES``),
    else the pre-activations, differentiated step by step with ``jax.vjp``."""
    activation = config.activation
    from_outputs = activation in _SLOPES
    zero = jnp.zeros((), d_ys.dtype)

    def body(dh_next, inputs):
        d_y, valid_t, row = inputs
        dh = d_y + dh_next
        d_pre = dh * row if from_outputs else jax.vjp(activation, row)[1](dh)[0]
        d_pre = _mask(valid_t, d_pre, zero)
        return _mask(valid_t, _mm(config, d_pre, w_hh_t), dh), d_pre

    return _scan(config, body, d_final, (d_ys, valid, per_step), backward=True)


def _elman_slope_scan(config: _Config, w_hh, ys, d_ys, valid, d_final):
    """``_elman_backward_scan`` for an activation whose slope follows from the outputs
    ``ys`` (``_SLOPES``)."""
    slopes = _SLOPES[config.activation](ys)
    return _elman_backward_scan(config, _weights(config, w_hh.T), slopes, d_ys, valid, d_final)


def _elman_backward_loop(config: _Config, w_hh, ys, d_ys, valid, d_final):
    """``_elman_slope_scan``; on a CPU with ``jaxrnn.blas``, one oneMKL custom call
    (``blas._elman_backward``) for the whole loop."""
    if config.activation not in _ELMAN_KERNEL_ACTIVATIONS:
        return _blas_scan(config, _elman_slope_scan, w_hh, ys, d_ys, valid, d_final)

    def kernel(w_hh, ys, d_ys, valid, d_final):
        d_pre, dh = blas._elman_backward(
            w_hh,
            ys,
            d_ys,
            valid,
            d_final,
            activation=_ELMAN_KERNEL_ACTIVATIONS[config.activation],
            reverse=config.reverse,
        )
        return dh, d_pre

    return _kernel_or_scan(config, kernel, _elman_slope_scan, w_hh, ys, d_ys, valid, d_final)


def _gru_loop(config: _Config, keep: str, params: Any, xs: Array, carry: Array, valid: Any):
    """``_forward`` of a GRU with the reset after the matmul, keeping ``"nothing"`` or
    ``"activations"`` (its backward pass's factors): on a CPU, the whole loop and its
    input projection as one oneMKL custom call (``blas._gru_forward``); elsewhere the
    scan."""
    factors = keep == "activations"

    def kernel(params, xs, carry, valid):
        ys, h, *saved = blas._gru_forward(
            xs,
            params.w_ih,
            params.w_hh,
            params.b,
            params.b_hn,
            carry,
            valid,
            reverse=config.reverse,
            factors=factors,
        )
        return h, ys, tuple(saved) if factors else None

    scan = functools.partial(_forward, keep=keep)
    return _kernel_or_scan(config, kernel, scan, params, xs, carry, valid)


def _gru_backward_scan(config: _Config, w_hh, q_r, q_z, q_hn, k_n, z, d_ys, valid, d_final):
    """The GRU's backward loop (the reset after the matmul) as a reverse scan, from
    ``_gru_grad_factors``': ``(d_carry, (d_r, d_z, d_hn, d_n))``, the gradients
    w.r.t. the gates' projected inputs and ``h @ w_hn + b_hn`` of every step."""
    w_hh_t = _weights(config, w_hh.T)
    zero = jnp.zeros((), d_ys.dtype)

    def body(dh_next, inputs):
        d_y, valid_t, q_r_t, q_z_t, q_hn_t, z_t = inputs
        dh = _mask(valid_t, d_y + dh_next, zero)
        d_rec = jnp.concatenate([dh * q_r_t, dh * q_z_t, dh * q_hn_t], axis=-1)
        return _mask(valid_t, dh * z_t + _mm(config, d_rec, w_hh_t), dh_next), dh

    per_step = (d_ys, valid, q_r, q_z, q_hn, z)
    d_carry, dhs = _scan(config, body, d_final, per_step, backward=True)
    return d_carry, (dhs * q_r, dhs * q_z, dhs * q_hn, dhs * k_n)


def _gru_backward_loop(config: _Config, w_hh, q_r, q_z, q_hn, k_n, z, d_ys, valid, d_final):
    """``_gru_backward_scan``; on a CPU with ``jaxrnn.blas``, one oneMKL custom call
    (``blas._gru_backward``) for the whole loop."""

    def kernel(w_hh, q_r, q_z, q_hn, k_n, z, d_ys, valid, d_final):
        *d_gates, dh = blas._gru_backward(
            w_hh, q_r, q_z, q_hn, k_n, z, d_ys, valid, d_final, reverse=config.reverse
        )
        return dh, tuple(d_gates)

    args = (w_hh, q_r, q_z, q_hn, k_n, z, d_ys, valid, d_final)
    return _kernel_or_scan(config, kernel, _gru_backward_scan, *args)


def _lstm_backward_scan(config: _Config, w_hh, k, k_c, f, d_ys, valid, d_final):
    """The LSTM's backward loop as a reverse scan: ``(d_carry, d_gates)``, ``d_gates``
    written over ``k`` (see ``_lstm_grad_factors`` for the factors)."""
    w_hh_t = _weights(config, w_hh.T)
    dtype = k.dtype

    def body(d_next, rows, inputs):
        dh_next, dc_next = d_next
        d_y, valid_t, k_c_t, f_t = inputs
        dh = d_y + dh_next
        dc = dc_next + dh * k_c_t
        d_gates = rows[0] * jnp.concatenate([dc, dc, dc, dh], axis=-1)
        if valid_t is not None:
            d_gates = jnp.where(valid_t[:, None], d_gates, jnp.zeros((), dtype))
        dh_prev = _mask(valid_t, _mm(config, d_gates, w_hh_t), dh)
        dc_prev = _mask(valid_t, dc * f_t, dc_next)
        return (dh_prev, dc_prev), (d_gates,), None

    d_carry, (d_gates,), _ = _scan_in_place(
        config, body, d_final, (k,), (d_ys, valid, k_c, f), backward=True
    )
    return d_carry, d_gates


def _lstm_backward_loop(config: _Config, w_hh, k, k_c, f, d_ys, valid, d_final):
    """``_lstm_backward_scan``; on a CPU with ``jaxrnn.blas``, one oneMKL custom call
    (``blas._lstm_backward``) for the whole loop."""

    def kernel(w_hh, k, k_c, f, d_ys, valid, d_final):
        d_gates, dh, dc = blas._lstm_backward(
            w_hh, k, k_c, f, d_ys, valid, *d_final, reverse=config.reverse
        )
        return (dh, dc), d_gates

    args = (w_hh, k, k_c, f, d_ys, valid, d_final)
    return _kernel_or_scan(config, kernel, _lstm_backward_scan, *args)


def _gru_before_backward_scan(config: _Config, w_hh, k_r, k_z, k_n, r, z, d_ys, valid, d_final):
    """The GRU's backward loop (the reset before the matmul) as a reverse scan:
    ``(d_carry, (d_r, d_z, d_n))``, the gradients w.r.t. the gates' projected inputs
    of every step, from the factors ``k_r = h_prev·σ'(r)``, ``k_z = (h_prev -
    n)·σ'(z)``, ``k_n = (1 - z)·tanh'(n)`` and the gates ``r`` and ``z``."""
    H, zero = w_hh.shape[0], jnp.zeros((), d_ys.dtype)
    w_hh_t = _weights(config, w_hh.T)
    w_n_t, w_rz_t = w_hh_t[2 * H :], w_hh_t[: 2 * H]

    def body(dh_next, inputs):
        d_y, valid_t, k_r_t, k_z_t, k_n_t, r_t, z_t = inputs
        dh = d_y + dh_next
        d_n, d_z = _mask(valid_t, dh * k_n_t, zero), _mask(valid_t, dh * k_z_t, zero)
        d_rh = _mm(config, d_n, w_n_t)  # dL/d(r ⊙ h)
        d_r = _mask(valid_t, d_rh * k_r_t, zero)
        d_rz = jnp.concatenate([d_r, d_z], axis=-1)
        dh_prev = dh * z_t + d_rh * r_t + _mm(config, d_rz, w_rz_t)
        return _mask(valid_t, dh_prev, dh), (d_r, d_z, d_n)

    per_step = (d_ys, valid, k_r, k_z, k_n, r, z)
    return _scan(config, body, d_final, per_step, backward=True)


# --------------------------------------------------------------------------- custom_vjp


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _sequence(config: _Config, params: Any, xs: Array, carry: Any, valid: Array | None):
    final, ys, _ = _forward(config, params, xs, carry, valid, keep="nothing")
    return final, ys


def _sequence_fwd(config: _Config, params: Any, xs: Array, carry: Any, valid: Array | None):
    keep = "states" if config.remat else "activations"
    final, ys, saved = _forward(config, params, xs, carry, valid, keep=keep)
    return (final, ys), (params, xs, carry, valid, ys, saved)


def _sequence_bwd(config: _Config, residuals, cotangents):
    params, xs, carry, valid, ys, saved = residuals
    d_final, d_ys = cotangents
    dtype = xs.dtype
    kind = config.kind
    h0 = carry[0] if kind == "lstm" else carry
    h_prev = _previous(config, ys, h0, valid)  # (T, B, H): the state each step read
    if valid is not None:
        d_ys = jnp.where(valid[..., None], d_ys, jnp.zeros((), dtype))

    acts = cell_states = None
    if not config.remat:
        acts = saved  # None for an Elman cell whose slope follows from ys
    else:
        cell_states = saved  # the LSTM's; None for the other cells
        if not (kind == "elman" and config.activation in _SLOPES):
            # Recompute the activations of all steps: two large matmuls.
            acts = _activations(config, params, _project(config, params, xs), h_prev)

    if kind == "elman":
        if config.activation in _SLOPES:
            d_carry, d_gates = _elman_backward_loop(config, params.w_hh, ys, d_ys, valid, d_final)
        else:
            (pre,) = acts  # the pre-activations
            args = (_weights(config, params.w_hh.T), pre, d_ys, valid, d_final)
            d_carry, d_gates = _blas_scan(config, _elman_backward_scan, *args)

    elif kind == "lstm":
        if config.remat:
            c_prev = _previous(config, cell_states, carry[1], None)  # the masked carry: no gaps
            k, k_c, f = _lstm_grad_factors(acts[0], c_prev, cell_states)
        else:  # computed by the forward loop
            k, k_c, f = acts

        d_carry, d_gates = _lstm_backward_loop(config, params.w_hh, k, k_c, f, d_ys, valid, d_final)

    elif kind == "gru-after":
        # computed by the forward loop, or here from the recomputed activations
        factors = _gru_grad_factors(acts, h_prev) if config.remat else acts
        d_carry, (d_r, d_z, d_hn, d_n) = _gru_backward_loop(
            config, params.w_hh, *factors, d_ys, valid, d_final
        )
        d_inputs = (d_r, d_z, d_n)  # w.r.t. each gate's projected input
        d_states = ((h_prev, d_r), (h_prev, d_z), (h_prev, d_hn))  # for dW_hh

    else:  # gru-before
        r, z, n = acts
        k_n = (1 - z) * _tanh_grad(n)
        k_z = (h_prev - n) * _sigmoid_grad(z)
        k_r = h_prev * _sigmoid_grad(r)
        args = (params.w_hh, k_r, k_z, k_n, r, z, d_ys, valid, d_final)
        d_carry, (d_r, d_z, d_n) = _blas_scan(config, _gru_before_backward_scan, *args)
        d_inputs = (d_r, d_z, d_n)
        d_states = ((h_prev, d_r), (h_prev, d_z), (r * h_prev, d_n))

    # After the loop: the weight, bias and input gradients as large matmuls over all
    # T·B rows at once (one per gate for the GRU, whose gradients stay per gate).
    if kind.startswith("gru"):
        w_ih_gates = jnp.split(params.w_ih, 3, axis=-1)
        d_w_ih = jnp.concatenate([_sum_over_steps(config, xs, d) for d in d_inputs], axis=-1)
        d_w_hh = jnp.concatenate([_sum_over_steps(config, a, d) for a, d in d_states], axis=-1)
        d_xs = sum(_mm(config, d, w.T) for d, w in zip(d_inputs, w_ih_gates, strict=True))
        d_b = None
        if params.b is not None:
            d_b = jnp.concatenate([jnp.sum(d, axis=(0, 1)) for d in d_inputs])
        d_b_hn = None if params.b_hn is None else jnp.sum(d_states[2][1], axis=(0, 1))
        d_params = GRUParams(d_w_ih, d_w_hh, d_b, d_b_hn)
    else:
        d_w_ih = _sum_over_steps(config, xs, d_gates)
        d_w_hh = _sum_over_steps(config, h_prev, d_gates)
        d_xs = _mm(config, d_gates, params.w_ih.T)
        d_b = None if params.b is None else jnp.sum(d_gates, axis=(0, 1))
        d_params = type(params)(d_w_ih, d_w_hh, d_b)
    if kind == "lstm":
        d_carry = tuple(d_carry)
    return d_params, d_xs, d_carry, None


_sequence.defvjp(_sequence_fwd, _sequence_bwd)
