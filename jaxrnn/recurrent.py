"""Running cells over time: ``unroll`` and the multi-layer, bidirectional ``StackedRNN``.

Sequences are time-major: ``xs`` has shape ``(time, *batch, input_size)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxrnn import fused as _fused
from jaxrnn._checks import check_flag
from jaxrnn.cells import (
    Carry,
    Cell,
    Params,
    _batch_shape_of,
    _check_params,
    _check_step_carry,
    _shape_str,
)

Array = jax.Array

__all__ = ["StackedRNN", "unroll"]


# --------------------------------------------------------------------------- checks


def _check_xs(xs: Any, what: str = "xs") -> Array:
    if not hasattr(xs, "shape") or not hasattr(xs, "dtype"):
        xs = jnp.asarray(xs)
    dtype = jnp.result_type(xs)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{what} must be a floating-point array, got dtype {dtype}. Cast it "
            "(xs.astype(jnp.float32)) or one-hot encode token ids (jax.nn.one_hot(ids, vocab))."
        )
    if np.ndim(xs) < 2:
        raise ValueError(
            f"{what} must have shape (time, *batch, input_size), got {_shape_str(np.shape(xs))}. "
            f"A single sequence of scalars is {what}[:, None] (input_size=1)."
        )
    if np.shape(xs)[0] == 0:
        raise ValueError(
            f"{what} has shape {_shape_str(np.shape(xs))}: a zero-length sequence (time=0). "
            "jaxrnn is time-major, (time, *batch, input_size); pass at least one time step."
        )
    return xs


def _batch_major_hint(xs_shape: tuple[int, ...], batch_shape: tuple[int, ...]) -> str:
    if len(xs_shape) >= 3 and batch_shape and xs_shape[0] == batch_shape[0]:
        return (
            f" Is xs batch-major? jaxrnn is time-major, (time, *batch, input_size): "
            f"pass jnp.swapaxes(xs, 0, 1), of shape {_shape_str(_swapped(xs_shape))}."
        )
    return ""


def _swapped(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[1], shape[0], *shape[2:])


def _check_params_and_input_size(cell: Cell, params: Params, xs: Array) -> None:
    if _fused._has_builtin_step(cell):
        _check_params(cell.spec, params, "unroll")
    w_ih = getattr(params, "w_ih", None)
    if cell.spec is None or w_ih is None:
        return  # a user's cell checks its own input
    input_size = w_ih.shape[0]
    if np.shape(xs)[-1] != input_size:
        raise ValueError(
            f"xs has shape {_shape_str(np.shape(xs))}, (time, *batch, input_size), but the "
            f"{cell.spec.kind} cell's parameters expect input_size={input_size} (w_ih is "
            f"{_shape_str(w_ih.shape)}). Initialise with cell.init(key, {np.shape(xs)[-1]}), "
            "or check that xs is time-major with the features on its last axis."
        )


def _check_carry(cell: Cell, carry: Carry, xs: Array) -> None:
    batch_shape = tuple(np.shape(xs)[1:-1])
    expected = jax.eval_shape(functools.partial(cell.zero_carry, batch_shape))
    kind = cell.spec.kind if cell.spec is not None else "cell"
    try:
        _check_step_carry(kind, carry, expected)
    except ValueError as error:
        leaf_shape = np.shape(jax.tree.leaves(carry)[0]) if jax.tree.leaves(carry) else ()
        hint = _batch_major_hint(np.shape(xs), tuple(leaf_shape[:-1]))
        raise ValueError(f"{error} xs has shape {_shape_str(np.shape(xs))}.{hint}") from None


def _zero_carry(cell: Cell, params: Params, xs: Array) -> Carry:
    """The cell's zero carry, for a built-in cell in the dtype of its parameters
    (float64 parameters give float64 outputs, whatever the cell's ``dtype``; the
    inputs' dtype does not change the model's)."""
    carry = cell.zero_carry(tuple(np.shape(xs)[1:-1]))
    if cell.spec is None:
        return carry
    dtype = jnp.result_type(*jax.tree.leaves(params))
    if not jnp.issubdtype(dtype, jnp.floating):
        return carry
    return jax.tree.map(lambda zeros: zeros.astype(dtype), carry)


def _check_seq_lengths(seq_lengths: Any, xs: Array) -> Array:
    time, batch_shape = np.shape(xs)[0], tuple(np.shape(xs)[1:-1])
    seq_lengths = seq_lengths if hasattr(seq_lengths, "dtype") else np.asarray(seq_lengths)
    dtype = jnp.result_type(seq_lengths)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"seq_lengths must be an integer array of shape batch={_shape_str(batch_shape)}, "
            f"got dtype {dtype}. Pass the number of valid steps of each sequence as ints."
        )
    if tuple(np.shape(seq_lengths)) != batch_shape:
        hint = _batch_major_hint(np.shape(xs), tuple(np.shape(seq_lengths)))
        raise ValueError(
            f"seq_lengths has shape {_shape_str(np.shape(seq_lengths))} but xs of shape "
            f"{_shape_str(np.shape(xs))}, (time, *batch, input_size), has batch shape "
            f"{_shape_str(batch_shape)}: seq_lengths needs one length per sequence.{hint}"
        )
    try:  # the values can be checked only when they are concrete, not under jit
        values = np.asarray(seq_lengths)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        values = None
    if values is not None and values.size and (values.min() < 0 or values.max() > time):
        raise ValueError(
            f"seq_lengths must lie in [0, time={time}], got values from {values.min()} "
            f"to {values.max()}. A length counts the valid steps at the start of a "
            "sequence; pad xs along its first (time) axis to the longest length."
        )
    # Steps are counted in this dtype: 8 and 16 bits would wrap around past 127 or 255.
    return jnp.asarray(seq_lengths, dtype if jnp.iinfo(dtype).bits >= 32 else jnp.int32)


def _check_unroll(unroll: Any) -> int | bool:
    """``unroll`` as ``lax.scan`` takes it; ``None`` becomes the backend's default."""
    if unroll is None:
        return _fused.default_unroll()
    if isinstance(unroll, (bool, np.bool_)):
        return bool(unroll)
    if isinstance(unroll, (int, np.integer)) and unroll >= 1:
        return int(unroll)
    raise ValueError(
        f"unroll must be a positive int (steps per loop iteration), a bool (True: unroll "
        f"the whole sequence) or None (this backend's default), got {unroll!r}."
    )


def _check_compute_dtype(compute_dtype: Any, xs: Array) -> Any:
    """``compute_dtype`` as a NumPy dtype, or ``None`` where it changes nothing."""
    if compute_dtype is None:
        return None
    try:
        dtype = jnp.dtype(compute_dtype)
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"compute_dtype must be None or a floating dtype for the matmuls, such as "
            f"jnp.bfloat16, got {compute_dtype!r}."
        )
    data = jnp.dtype(jnp.result_type(xs))
    if dtype == data:
        return None
    if jnp.finfo(dtype).bits > jnp.finfo(data).bits:
        raise ValueError(
            f"compute_dtype={dtype.name} is wider than the data's dtype {data.name}: it is the "
            "narrower dtype the matmuls take their inputs in (products still accumulate in "
            f"{data.name}). Pass e.g. jnp.bfloat16, or cast xs and the parameters instead."
        )
    return dtype


def _expand_like(mask: Array, leaf: Array) -> Array:
    """Appends axes to a (*batch,) mask so that it broadcasts against ``leaf``."""
    return mask.reshape(mask.shape + (1,) * (np.ndim(leaf) - mask.ndim))


# --------------------------------------------------------------------------- unroll


def unroll(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Carry | None = None,
    *,
    seq_lengths: Array | None = None,
    reverse: bool = False,
    unroll: int | bool | None = None,
    fused: bool = True,
    remat: bool = False,
    compute_dtype: Any = None,
) -> tuple[Carry, Array]:
    """Runs a cell over a time-major sequence with ``jax.lax.scan``.

    Equivalent to this Python loop (with ``carry`` defaulting to
    ``cell.zero_carry(xs.shape[1:-1])``)::

        ys = []
        for t in (reversed(range(T)) if reverse else range(T)):
            new_carry, y = cell.step(params, carry, xs[t])
            valid = t < seq_lengths              # all True without seq_lengths
            carry = where(valid, new_carry, carry)
            ys.append(where(valid, y, 0))
        ys = stack(ys[::-1] if reverse else ys)  # aligned with xs in time
        return carry, ys

    For the built-in cells the input projection ``xs @ w_ih`` of all steps is
    one matmul before the scan, and only ``h @ w_hh`` stays inside it. Their
    gradients come from a fused backward pass (``jaxrnn.fused``): a reverse scan
    that carries only ``dL/dh`` (and ``dL/dc``), then the weight, bias and input
    gradients as one large matmul each. It computes what autodiff of the scan
    computes (tested to 1e-10 in float64), faster. Cells written by users, and
    built-in cells whose ``step_projected`` was replaced, run through plain
    autodiff of ``lax.scan``.

    Args:
      cell: a ``Cell``.
      params: the cell's parameters, from ``cell.init``.
      xs: inputs of shape ``(time, *batch, input_size)``, floating point.
      carry: the initial carry for batch shape ``xs.shape[1:-1]``; zeros if omitted.
      seq_lengths: optional ints of shape ``batch``: the number of valid steps of
        each sequence (padding comes after them). Each sequence's final carry is
        the one after its own last valid step and its padded outputs are zero:
        PyTorch's packed-sequence semantics. Lengths outside ``[0, T]`` are
        refused when known at trace time; traced ones (under ``jit``) are not
        checked, and act as 0 below it and as T above it.
      reverse: run from the last step to the first; with ``seq_lengths`` each
        sequence starts at its own last valid step. Outputs stay aligned with
        ``xs`` (``ys[t]`` belongs to ``xs[t]``), as PyTorch's backward direction.
      unroll: passed to ``lax.scan``: how many steps one loop iteration runs
        (``True``: all of them). ``None`` (the default) takes the backend's
        measured best, ``jaxrnn.fused.default_unroll()``.
      fused: take the fused path for built-in cells (the default). ``False``
        runs plain autodiff of the cell's step, which forward-mode
        differentiation (``jax.jvp``, ``jax.jacfwd``, ``jax.linearize``) needs:
        the fused path is a ``jax.custom_vjp``, reverse mode only. Its
        gradients can be differentiated again in either mode (``jax.hessian``,
        ``jax.jvp`` of ``jax.grad``).
      remat: rematerialise for the backward pass instead of storing, for long
        sequences and deep stacks. On the fused path only ``ys`` (and the
        LSTM's cell states) are kept and the gate activations are recomputed
        with two large matmuls: about ``G·T·B·H`` fewer numbers kept per layer
        (G gates) for about one more forward matmul's time. Otherwise each
        step is wrapped in ``jax.checkpoint``, so that only the carries are kept.
      compute_dtype: ``None`` (every matmul in the data's dtype), or a narrower
        floating dtype, typically ``jnp.bfloat16``: every matmul of the forward
        and backward passes takes its inputs in it and accumulates in the
        data's dtype (``preferred_element_type``); carries, gates, outputs and
        gradients stay in the data's dtype. For accelerators with fast bfloat16
        matmuls (on a CPU it is slower, not faster). Fused path only: a cell it
        does not support, or ``fused=False``, raises an error.

    Returns:
      ``(carry, ys)``: the final carry and the outputs, ``(time, *batch, hidden_size)``.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> cell = jaxrnn.lstm(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((5, 2, 3))            # (time, batch, input_size)
      >>> carry, ys = jaxrnn.unroll(cell, params, xs, seq_lengths=jnp.array([5, 2]))
      >>> ys.shape, bool((ys[2:, 1] == 0).all())
      ((5, 2, 8), True)
    """
    if not isinstance(cell, Cell):
        raise TypeError(
            "cell must be a jaxrnn.Cell (e.g. jaxrnn.lstm(hidden_size)), got "
            f"{type(cell).__name__}."
        )
    xs = _check_xs(xs)
    _check_params_and_input_size(cell, params, xs)
    if carry is None:
        carry = _zero_carry(cell, params, xs)
    else:
        _check_carry(cell, carry, xs)
    reverse = check_flag("unroll", "reverse", reverse)

    if seq_lengths is not None:
        seq_lengths = _check_seq_lengths(seq_lengths, xs)
    unroll = _check_unroll(unroll)
    fused, remat = check_flag("unroll", "fused", fused), check_flag("unroll", "remat", remat)
    compute_dtype = _check_compute_dtype(compute_dtype, xs)
    if fused and _fused.supports(cell, params, xs, carry):
        try:
            return _fused.unroll(
                cell,
                params,
                xs,
                carry,
                seq_lengths=seq_lengths,
                reverse=reverse,
                unroll=unroll,
                remat=remat,
                compute_dtype=compute_dtype,
            )
        except TypeError as error:  # JAX's words name neither unroll nor the way out
            if "forward-mode autodiff" not in str(error):
                raise
            raise TypeError(
                f"unroll: {error} The fused path of the built-in cells is reverse mode "
                "only; for jax.jvp, jax.jacfwd or jax.linearize pass fused=False (jax.hessian, "
                "forward over reverse, works on it)."
            ) from None
    if compute_dtype is not None:
        why = (
            "fused=False"
            if not fused
            else "this cell is not one the fused path supports (a built-in lstm, gru or "
            "elman cell with its own step, and parameters, xs and carry of one dtype)"
        )
        raise ValueError(
            f"compute_dtype={compute_dtype.name} needs the fused path, but {why}. Drop "
            "compute_dtype, or cast the parameters and xs to it."
        )

    if cell.project_inputs is not None and cell.step_projected is not None:
        inputs = cell.project_inputs(params, xs)  # one (T·B, I) x (I, G·H) matmul
        step = functools.partial(cell.step_projected, params)
    else:
        inputs = xs
        step = functools.partial(cell.step, params)
    if remat:
        step = jax.checkpoint(step)

    if seq_lengths is None:
        return lax.scan(step, carry, inputs, reverse=reverse, unroll=unroll)

    def masked_step(carry, t_and_input):
        t, step_input = t_and_input
        new_carry, y = step(carry, step_input)
        valid = t < seq_lengths  # (*batch,)
        # Past its length a sequence keeps its carry; going backwards, its padding
        # comes first and leaves the initial carry untouched until its last valid step.
        carry = jax.tree.map(
            lambda new, old: jnp.where(_expand_like(valid, new), new, old), new_carry, carry
        )
        return carry, jnp.where(_expand_like(valid, y), y, jnp.zeros((), y.dtype))

    time_index = jnp.arange(np.shape(xs)[0], dtype=seq_lengths.dtype)
    return lax.scan(masked_step, carry, (time_index, inputs), reverse=reverse, unroll=unroll)


# ``StackedRNN.apply`` has an argument named ``unroll`` too.
_unroll = unroll

# --------------------------------------------------------------------------- stacks


def _output_size(cell: Cell, params: Params, input_size: int) -> int:
    """The size of ``y`` that ``cell.step`` returns, found by shape evaluation only."""
    if cell.hidden_size is not None:
        return cell.hidden_size
    x = jax.ShapeDtypeStruct((input_size,), jnp.float32)
    _, y = jax.eval_shape(cell.step, params, cell.zero_carry(()), x)
    return y.shape[-1]


@dataclasses.dataclass(frozen=True)
class StackedRNN:
    """Layers of one cell, in one or two directions: PyTorch's ``nn.RNN/LSTM/GRU`` as one object.

    Layer 0 reads ``xs``; layer k > 0 reads layer k-1's outputs, both directions
    concatenated. With ``bidirectional=True`` each layer runs a second cell
    (its own parameters) from the end of each sequence backwards, and its
    outputs, aligned with ``xs`` in time, are concatenated after the forward
    ones: ``ys[..., :H]`` forward, ``ys[..., H:]`` backward.

    Parameters are ``params[layer][direction]``, each the cell's own params.
    Carries stack a leading axis of ``num_layers * num_directions``, indexed
    ``layer * num_directions + direction``, as PyTorch's ``h_0``/``h_n``: for an
    LSTM, ``LSTMCarry(h, c)`` with ``h`` of shape ``(L·D, *batch, H)``.

    Attributes:
      cell: the cell every layer and direction uses.
      num_layers: L, at least 1.
      bidirectional: whether each layer also runs backwards (D = 2).
      dropout: the probability of dropping each output of every layer but the
        last (inverted dropout, applied only when ``apply`` gets a ``key``); with
        one layer it changes nothing, and a ``UserWarning`` says so, as PyTorch's.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> model = jaxrnn.StackedRNN(jaxrnn.lstm(16), num_layers=2, bidirectional=True)
      >>> params = model.init(jax.random.key(0), input_size=8)
      >>> carry, ys = model.apply(params, jnp.ones((10, 4, 8)))
      >>> ys.shape, carry.h.shape
      ((10, 4, 32), (4, 4, 16))
    """

    cell: Cell
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.cell, Cell):
            raise TypeError(
                f"StackedRNN: cell must be a jaxrnn.Cell (e.g. jaxrnn.lstm(64)), "
                f"got {type(self.cell).__name__}."
            )
        layers = self.num_layers
        if isinstance(layers, bool) or not isinstance(layers, int | np.integer) or layers < 1:
            raise ValueError(f"StackedRNN: num_layers must be an int >= 1, got {layers!r}.")
        check_flag("StackedRNN", "bidirectional", self.bidirectional)
        dropout = self.dropout
        if isinstance(dropout, bool) or not isinstance(dropout, int | float | np.number):
            raise TypeError(f"StackedRNN: dropout must be a float in [0, 1), got {dropout!r}.")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"StackedRNN: dropout must lie in [0, 1), got {dropout!r}.")
        if dropout > 0 and layers == 1:  # as PyTorch's nn.RNN/LSTM/GRU warn
            warnings.warn(
                f"StackedRNN: dropout={dropout!r} acts between layers and num_layers=1 has none: "
                "it changes nothing; stack layers (num_layers > 1) or apply dropout to the "
                "outputs yourself.",
                UserWarning,
                stacklevel=3,  # the caller of the dataclass's __init__
            )

    @property
    def num_directions(self) -> int:
        """D: 2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    def init(self, key: Array, input_size: int) -> tuple[tuple[Params, ...], ...]:
        """Initialises every layer and direction.

        Args:
          key: a PRNG key.
          input_size: the size of the last axis of ``xs``.

        Returns:
          ``params[layer][direction]``, nested tuples of the cell's params.
        """
        keys = jax.random.split(key, self.num_layers * self.num_directions)
        layers, layer_input = [], input_size
        for layer in range(self.num_layers):
            directions = tuple(
                self.cell.init(keys[layer * self.num_directions + d], layer_input)
                for d in range(self.num_directions)
            )
            layers.append(directions)
            layer_input = self.num_directions * _output_size(self.cell, directions[0], layer_input)
        return tuple(layers)

    def zero_carry(self, batch_shape: tuple[int, ...] | int = ()) -> Carry:
        """Zeros for every layer and direction: leaves of shape ``(L·D, *batch, H)``."""
        one = self.cell.zero_carry(_batch_shape_of(batch_shape, "StackedRNN.zero_carry"))
        count = self.num_layers * self.num_directions
        return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (count, *leaf.shape)), one)

    def apply(
        self,
        params: tuple[tuple[Params, ...], ...],
        xs: Array,
        carry: Carry | None = None,
        *,
        seq_lengths: Array | None = None,
        key: Array | None = None,
        unroll: int | bool | None = None,
        fused: bool = True,
        remat: bool = False,
        compute_dtype: Any = None,
    ) -> tuple[Carry, Array]:
        """Runs the stack over a time-major sequence.

        Args:
          params: from ``init``.
          xs: ``(time, *batch, input_size)``.
          carry: initial carries with leaves ``(L·D, *batch, H)``; zeros if omitted,
            for a built-in cell in the dtype of the parameters, as in ``unroll``.
          seq_lengths: optional ints of shape ``batch``, as in ``unroll``.
          key: a PRNG key for inter-layer dropout; without one there is no dropout.
          unroll: passed to ``lax.scan``; ``None``: the backend's default, as in ``unroll``.
          fused: use the fused sequence kernels for built-in cells, as in ``unroll``.
          remat: recompute gate activations in the backward pass, as in ``unroll``.
          compute_dtype: e.g. ``jnp.bfloat16``: the matmuls' input dtype, products
            accumulated in the data's dtype, as in ``unroll`` (fused path only).

        Returns:
          ``(carry, ys)``: final carries with leaves ``(L·D, *batch, H)`` and the
          last layer's outputs ``(time, *batch, D·H)``.
        """
        self._check_params(params)
        xs = _check_xs(xs)
        if carry is not None:
            self._check_carry(carry, xs)
        count = self.num_layers * self.num_directions
        drop_keys = None
        if key is not None and self.dropout > 0 and self.num_layers > 1:
            drop_keys = jax.random.split(key, self.num_layers - 1)

        finals, layer_input = [], xs
        for layer, layer_params in enumerate(params):
            outputs = []
            for direction, cell_params in enumerate(layer_params):
                index = layer * self.num_directions + direction
                # Without a carry each unroll makes its own zeros, in the dtype of its
                # parameters as unroll's are (the cell's dtype would round float64 runs).
                initial = None if carry is None else jax.tree.map(lambda a, i=index: a[i], carry)
                if layer > 0:  # unroll's own message would name this layer's input as xs
                    self._check_layer_input(layer, direction, cell_params, layer_input)
                final, ys = _unroll(
                    self.cell,
                    cell_params,
                    layer_input,
                    initial,
                    seq_lengths=seq_lengths,
                    reverse=direction == 1,
                    unroll=unroll,
                    fused=fused,
                    remat=remat,
                    compute_dtype=compute_dtype,
                )
                finals.append(final)
                outputs.append(ys)
            layer_input = outputs[0] if len(outputs) == 1 else jnp.concatenate(outputs, axis=-1)
            if drop_keys is not None and layer < self.num_layers - 1:
                keep = jax.random.bernoulli(drop_keys[layer], 1.0 - self.dropout, layer_input.shape)
                scaled = layer_input / jnp.asarray(1.0 - self.dropout, layer_input.dtype)
                layer_input = jnp.where(keep, scaled, jnp.zeros((), layer_input.dtype))
        assert len(finals) == count
        final_carry = jax.tree.map(lambda *leaves: jnp.stack(leaves), *finals)
        return final_carry, layer_input

    def _check_layer_input(self, layer: int, direction: int, params: Params, inputs: Array) -> None:
        """A built-in cell's ``w_ih`` in layer > 0 reads the previous layer's ``D·H`` outputs."""
        w_ih = getattr(params, "w_ih", None)
        if self.cell.spec is None or w_ih is None or np.shape(w_ih)[0] == np.shape(inputs)[-1]:
            return
        raise ValueError(
            f"StackedRNN.apply: params[{layer}][{direction}].w_ih is {_shape_str(np.shape(w_ih))}, "
            f"but layer {layer} reads the {np.shape(inputs)[-1]} outputs of layer {layer - 1}, so "
            f"its w_ih must have {np.shape(inputs)[-1]} rows. Build the params with this "
            "model's init."
        )

    def _check_params(self, params: Any) -> None:
        """``params[layer][direction]``: nested plain tuples (or lists) of the right lengths;
        a cell's own params, a ``NamedTuple``, are no layer (nor a stack)."""

        def nested(value: Any) -> bool:
            return isinstance(value, tuple | list) and not hasattr(value, "_fields")

        if (
            nested(params)
            and len(params) == self.num_layers
            and all(nested(layer) and len(layer) == self.num_directions for layer in params)
        ):
            return
        if not nested(params):
            got = type(params).__name__
            if hasattr(params, "_fields"):
                got += ", one cell's parameters (for one layer and direction: ((params,),))"
        else:
            sizes = [len(layer) if nested(layer) else type(layer).__name__ for layer in params]
            got = f"{len(params)} layer(s) of {sizes} direction(s)"
        raise ValueError(
            f"StackedRNN.apply: params must be params[layer][direction] for "
            f"num_layers={self.num_layers} and {self.num_directions} direction(s), got {got}. "
            "Build them with this model's init."
        )

    def _check_carry(self, carry: Carry, xs: Array) -> None:
        expected = jax.eval_shape(functools.partial(self.zero_carry, tuple(np.shape(xs)[1:-1])))
        kind = self.cell.spec.kind if self.cell.spec is not None else "cell"
        try:
            _check_step_carry(kind, carry, expected)
        except ValueError:
            leaves = jax.tree.leaves(carry)
            got = _shape_str(np.shape(leaves[0])) if leaves else "()"
            want = _shape_str(jax.tree.leaves(expected)[0].shape)
            hint = ""
            if leaves and np.ndim(leaves[0]) >= 2:
                hint = _batch_major_hint(np.shape(xs), tuple(np.shape(leaves[0])[1:-1]))
            raise ValueError(
                f"StackedRNN.apply: carry has a leaf of shape {got}, expected {want}, "
                f"(num_layers·num_directions, *batch, hidden_size), for xs of shape "
                f"{_shape_str(np.shape(xs))}. Build it with model.zero_carry(batch_shape).{hint}"
            ) from None


@contextlib.contextmanager
def _quiet_single_layer_dropout():
    """Within it ``StackedRNN`` does not warn of dropout over one layer: for a model
    rebuilt from a saved configuration (warned when first built), or a command that
    says so in its own words."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"StackedRNN: dropout=", UserWarning)
        yield
