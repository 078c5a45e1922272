"""Recurrent cells as pure functions: the ``Cell`` contract, Elman, LSTM and GRU.

A cell is a ``NamedTuple`` of pure functions, as optax's
``GradientTransformation`` is::

    cell = jaxrnn.lstm(hidden_size)
    params = cell.init(key, input_size)       # a NamedTuple pytree of arrays
    carry = cell.zero_carry(batch_shape)      # e.g. LSTMCarry(h, c); batch_shape may be ()
    carry, y = cell.step(params, carry, x)    # x: (*batch, input_size) -> y: (*batch, hidden_size)

``step`` has the argument order of a ``jax.lax.scan`` body, so
``lax.scan(functools.partial(cell.step, params), carry, xs)`` runs a cell over
time. Weights are stored ``(in, out)`` with the gates fused side by side, in
PyTorch's gate order; the pre-activation is ``x @ w_ih + h @ w_hh + b``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import init as initializers
from jaxrnn._checks import check_flag

Array = jax.Array
Params = Any
Carry = Any

__all__ = [
    "Cell",
    "CellSpec",
    "ElmanParams",
    "GRUParams",
    "LSTMCarry",
    "LSTMParams",
    "elman",
    "gru",
    "lstm",
]


# --------------------------------------------------------------------------- contract


@dataclasses.dataclass(frozen=True)
class CellSpec:
    """What a built-in cell is: enough to convert it to PyTorch or flax and back.

    Attributes:
      kind: ``"elman"``, ``"lstm"`` or ``"gru"``.
      hidden_size: H, the size of the hidden state.
      num_gates: G, the number of gate blocks fused in ``w_ih`` and ``w_hh``.
      activation: Elman's activation (``None`` for the gated cells).
      reset_after: GRU only: whether the reset gate multiplies ``h @ w_hn + b_hn``
        (PyTorch, cuDNN) rather than ``h`` (Cho et al. 2014).
      use_bias: whether the cell has biases.
      init: the name of the initialisation scheme.
      forget_bias: LSTM only: the value added to the forget gate's bias at init.
      dtype: the dtype of the parameters and of the zero carry.
    """

    kind: str
    hidden_size: int
    num_gates: int
    activation: Callable[[Array], Array] | None = None
    reset_after: bool = True
    use_bias: bool = True
    init: str = "orthogonal"
    forget_bias: float = 0.0
    dtype: Any = jnp.float32


class Cell(NamedTuple):
    """A recurrent cell: three pure functions and, for built-in cells, a fast path.

    Attributes:
      init: ``init(key, input_size) -> params``, a NamedTuple pytree of arrays.
      step: ``step(params, carry, x) -> (carry, y)`` with ``x`` of shape
        ``(*batch, input_size)`` and ``y`` of shape ``(*batch, hidden_size)``.
      zero_carry: ``zero_carry(batch_shape) -> carry`` of zeros; ``batch_shape``
        may be ``()`` (the built-in cells' also take an int: one batch axis).
      spec: a ``CellSpec`` for the built-in cells; ``None`` for cells written by
        users (which need only the first three fields).
      project_inputs: ``project_inputs(params, xs) -> gate_inputs``, the part of
        the pre-activation that depends on the inputs only (``xs @ w_ih + b``).
        ``unroll(..., fused=False)`` computes it for all time steps in one matmul
        before the scan (the fused path projects ``xs @ w_ih`` its own way).
      step_projected: ``step_projected(params, carry, gate_inputs) -> (carry, y)``,
        the rest of ``step``; ``step(p, c, x) == step_projected(p, c,
        project_inputs(p, x))``.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> cell = jaxrnn.gru(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> carry, y = cell.step(params, cell.zero_carry((2,)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 8)
    """

    init: Callable[[Array, int], Params]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    zero_carry: Callable[[tuple[int, ...]], Carry]
    spec: CellSpec | None = None
    project_inputs: Callable[[Params, Array], Array] | None = None
    step_projected: Callable[[Params, Carry, Array], tuple[Carry, Array]] | None = None

    @property
    def hidden_size(self) -> int | None:
        """H for the built-in cells, ``None`` for cells without a ``spec``."""
        return None if self.spec is None else self.spec.hidden_size


class ElmanParams(NamedTuple):
    """Elman cell parameters: ``w_ih`` (I, H), ``w_hh`` (H, H), ``b`` (H,) or ``None``."""

    w_ih: Array
    w_hh: Array
    b: Array | None


class LSTMParams(NamedTuple):
    """LSTM parameters, gates i, f, g, o: ``w_ih`` (I, 4H), ``w_hh`` (H, 4H), ``b`` (4H,)."""

    w_ih: Array
    w_hh: Array
    b: Array | None


class GRUParams(NamedTuple):
    """GRU parameters, gates r, z, n: ``w_ih`` (I, 3H), ``w_hh`` (H, 3H), ``b`` (3H,), ``b_hn``.

    ``b_hn`` (H,) is the bias inside the reset product, ``r * (h @ w_hn + b_hn)``;
    it is ``None`` for the reset-before form and for cells without bias.
    """

    w_ih: Array
    w_hh: Array
    b: Array | None
    b_hn: Array | None


class LSTMCarry(NamedTuple):
    """The LSTM's recurrence: hidden state ``h`` and cell state ``c``, each (*batch, H)."""

    h: Array
    c: Array


# --------------------------------------------------------------------------- checks


def _shape_str(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _params_type(spec: CellSpec) -> type:
    return {"elman": ElmanParams, "lstm": LSTMParams, "gru": GRUParams}[spec.kind]


def _check_params(spec: CellSpec, params: Params, where: str) -> None:
    """Trace-time check of a built-in cell's parameters against its spec: their type,
    and each field's shape (w_ih (I, G·H), w_hh (H, G·H), b (G·H,), b_hn (H,)) or
    ``None`` where the cell has no such field."""
    kind, hidden, gates = spec.kind, spec.hidden_size, spec.num_gates
    expected_type = _params_type(spec)
    fix = f"Build them with jaxrnn.{kind}({hidden}, ...).init(key, input_size)."
    if not isinstance(params, expected_type):
        raise TypeError(
            f"{where}: a {kind} cell's params must be {expected_type.__name__}, got "
            f"{type(params).__name__}. {fix}"
        )
    w_ih = params.w_ih
    input_size = np.shape(w_ih)[0] if np.ndim(w_ih) == 2 else "I"
    shapes = {"w_ih": (input_size, gates * hidden), "w_hh": (hidden, gates * hidden)}
    shapes["b"] = (gates * hidden,) if spec.use_bias else None
    if kind == "gru":
        shapes["b_hn"] = (hidden,) if spec.use_bias and spec.reset_after else None
    for name, shape in shapes.items():
        value = getattr(params, name)
        if shape is None and value is not None:
            why = "no bias" if not spec.use_bias else "the reset gate before the matmul"
            raise ValueError(
                f"{where}: params.{name} must be None for this {kind} cell ({why}), got an "
                f"array of shape {_shape_str(np.shape(value))}. {fix}"
            )
        if shape is None:
            continue
        if value is None or np.shape(value) != shape:
            got = "None" if value is None else f"shape {_shape_str(np.shape(value))}"
            raise ValueError(
                f"{where}: params.{name} must have shape {_shape_str(shape)} for a {kind} cell "
                f"of hidden_size={hidden}, got {got}. {fix}"
            )
        if not jnp.issubdtype(jnp.result_type(value), jnp.floating):
            raise TypeError(
                f"{where}: params.{name} must be floating-point, got dtype "
                f"{jnp.result_type(value)}. {fix}"
            )


def _check_step_input(spec: CellSpec, params: Params, x: Array) -> None:
    """Trace-time checks of ``step``'s parameters and input (free at run time: shapes
    are static)."""
    kind = spec.kind
    _check_params(spec, params, f"{kind}.step")
    x_dtype = jnp.result_type(x)
    if not jnp.issubdtype(x_dtype, jnp.floating):
        raise TypeError(
            f"{kind}.step: x must be a floating-point array, got dtype {x_dtype}. "
            "Cast it (x.astype(jnp.float32)) or one-hot encode token ids (jax.nn.one_hot)."
        )
    input_size = params.w_ih.shape[0]
    if np.ndim(x) < 1 or np.shape(x)[-1] != input_size:
        raise ValueError(
            f"{kind}.step: x has shape {_shape_str(np.shape(x))} but the cell's parameters "
            f"expect (*batch, input_size) with input_size={input_size} (w_ih is "
            f"{_shape_str(params.w_ih.shape)}). Initialise with cell.init(key, "
            f"{np.shape(x)[-1] if np.ndim(x) else 1}) or fix the input's last axis."
        )


def _check_step_carry(kind: str, carry: Carry, expected: Carry) -> None:
    """Checks a carry's structure and shapes against ``expected`` (shape structs)."""
    got_def = jax.tree_util.tree_structure(carry)
    want_def = jax.tree_util.tree_structure(expected)
    if got_def != want_def:
        raise TypeError(
            f"{kind}: carry must have the structure {want_def}, got {got_def}. Build it with "
            "cell.zero_carry(batch_shape)"
            + (" or LSTMCarry(h=..., c=...) (never a bare tuple)" if kind == "lstm" else "")
            + "."
        )
    for got, want in zip(jax.tree.leaves(carry), jax.tree.leaves(expected), strict=True):
        if not jnp.issubdtype(jnp.result_type(got), jnp.floating):
            raise TypeError(
                f"{kind}: carry must be floating-point, got a leaf of dtype "
                f"{jnp.result_type(got)}. Build it with cell.zero_carry(batch_shape), or cast "
                "it: jax.tree.map(lambda a: a.astype(jnp.float32), carry)."
            )
        if np.shape(got) != want.shape:
            raise ValueError(
                f"{kind}: carry has a leaf of shape {_shape_str(np.shape(got))}, expected "
                f"{_shape_str(want.shape)} (*batch, hidden_size). Build it with "
                "cell.zero_carry(batch_shape) where batch_shape = x.shape[:-1]."
            )


def _check_hidden_size(hidden_size: int) -> None:
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, int | np.integer):
        raise TypeError(f"hidden_size must be a positive int, got {hidden_size!r}.")
    if hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive int, got {hidden_size}.")


def _check_init(kind: str, init: str, allowed: tuple[str, ...]) -> None:
    if init not in allowed:
        raise ValueError(f"{kind}: init must be one of {allowed}, got {init!r}.")


def _check_dtype(kind: str, dtype: Any) -> None:
    """Refuses a cell ``dtype`` that is not a floating one."""
    try:
        floating = jnp.issubdtype(jnp.dtype(dtype), jnp.floating)
    except TypeError:
        floating = False
    if not floating:
        raise TypeError(
            f"{kind}: dtype must be a floating dtype (jnp.float32, jnp.float64, jnp.bfloat16), "
            f"got {dtype!r}."
        )


def _check_input_size(input_size: int) -> None:
    if isinstance(input_size, bool) or not isinstance(input_size, int | np.integer):
        raise TypeError(f"init: input_size must be a positive int, got {input_size!r}.")
    if input_size < 1:
        raise ValueError(f"init: input_size must be a positive int, got {input_size}.")


# --------------------------------------------------------------------------- shared pieces


def _init_weights(key: Array, spec: CellSpec, input_size: int):
    """Draws (w_ih, w_hh, b, b_extra) for ``spec`` by its ``init`` scheme."""
    _check_input_size(input_size)
    hidden, gates, dtype = spec.hidden_size, spec.num_gates, spec.dtype
    k_ih, k_hh, k_b, k_extra = jax.random.split(key, 4)
    if spec.init == "pytorch":
        scale = 1.0 / np.sqrt(hidden)
        w_ih = initializers.uniform(k_ih, (input_size, gates * hidden), dtype, scale)
        w_hh = initializers.uniform(k_hh, (hidden, gates * hidden), dtype, scale)
        # PyTorch's two biases (b_ih + b_hh) fuse into one: their sum is what matters,
        # except the GRU's b_hh_n (reset after the matmul), which r multiplies: it
        # stays apart as b_hn, and b's n block is b_ih_n alone.
        k_b1, k_b2 = jax.random.split(k_b)
        b_ih = initializers.uniform(k_b1, (gates * hidden,), dtype, scale)
        b_hh = initializers.uniform(k_b2, (gates * hidden,), dtype, scale)
        if spec.kind == "gru" and spec.reset_after:
            b, b_extra = b_ih.at[: 2 * hidden].add(b_hh[: 2 * hidden]), b_hh[2 * hidden :]
        else:
            b = b_ih + b_hh
            b_extra = initializers.uniform(k_extra, (hidden,), dtype, scale)
    elif spec.init == "orthogonal":
        w_ih = initializers.glorot_uniform(k_ih, (input_size, gates * hidden), dtype, gates)
        w_hh = initializers.orthogonal_blocks(k_hh, hidden, gates, dtype)
        b = jnp.zeros((gates * hidden,), dtype)
        b_extra = jnp.zeros((hidden,), dtype)
    else:  # "identity": IRNN (Le et al. 2015)
        w_ih = 1e-3 * jax.random.normal(k_ih, (input_size, gates * hidden), dtype)
        w_hh = initializers.identity(hidden, gates, dtype)
        b = jnp.zeros((gates * hidden,), dtype)
        b_extra = jnp.zeros((hidden,), dtype)
    return w_ih, w_hh, b, b_extra


def _project(params: Params, x: Array) -> Array:
    """``x @ w_ih + b``: every gate's input contribution in one matmul."""
    projected = x @ params.w_ih
    return projected if params.b is None else projected + params.b


def _batch_shape_of(batch_shape: Any, where: str = "zero_carry") -> tuple[int, ...]:
    """``batch_shape`` as a tuple of ints; an int is one batch axis (``zero_carry(32)``)."""
    if isinstance(batch_shape, int | np.integer) and not isinstance(batch_shape, bool):
        batch_shape = (batch_shape,)
    try:
        shape = tuple(batch_shape)
    except TypeError:
        shape = None
    if shape is None or not all(
        isinstance(n, int | np.integer) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise TypeError(
            f"{where}: batch_shape must be a tuple of sizes >= 0, e.g. (32,) or () for one "
            f"sequence, or an int, got {batch_shape!r}."
        )
    return tuple(int(n) for n in shape)


def _zeros_carry(spec: CellSpec):
    def zero_carry(batch_shape: tuple[int, ...] | int = ()) -> Array:
        return jnp.zeros((*_batch_shape_of(batch_shape), spec.hidden_size), spec.dtype)

    return zero_carry


# --------------------------------------------------------------------------- Elman


def elman(
    hidden_size: int,
    *,
    activation: Callable[[Array], Array] = jnp.tanh,
    use_bias: bool = True,
    init: str = "orthogonal",
    dtype: Any = jnp.float32,
) -> Cell:
    r"""The Elman (vanilla) recurrent cell.

    $$h_t = \phi(x_t W_{ih} + h_{t-1} W_{hh} + b)$$

    Args:
      hidden_size: H, the size of the hidden state.
      activation: $\phi$, any elementwise callable: ``jnp.tanh`` (PyTorch's
        default), ``jax.nn.relu`` (IRNN), ``lambda a: a`` (a linear RNN), ...
      use_bias: whether to add ``b``; PyTorch's ``bias=False`` is ``False``.
      init: ``"orthogonal"`` (default: orthogonal ``w_hh``, Glorot ``w_ih``, zero
        bias), ``"pytorch"`` (everything U(±1/√H)) or ``"identity"`` (IRNN:
        ``w_hh = I``, ``w_ih ~ N(0, 0.001²)``, zero bias).
      dtype: the dtype of the parameters and of the zero carry.

    Returns:
      A ``Cell`` whose params are ``ElmanParams(w_ih (I, H), w_hh (H, H), b (H,))``
      and whose carry is ``h`` of shape (*batch, H).

    Examples:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> cell = jaxrnn.elman(4, activation=jax.nn.relu, init="identity")
      >>> params = cell.init(jax.random.key(0), 2)
      >>> h, y = cell.step(params, cell.zero_carry(()), jnp.ones(2))
      >>> y.shape
      (4,)

    References:
      Elman, "Finding structure in time", Cognitive Science 1990.
      Le, Jaitly & Hinton, "A simple way to initialize recurrent networks of
      rectified linear units", 2015.
    """
    _check_hidden_size(hidden_size)
    _check_init("elman", init, initializers.INIT_SCHEMES)
    if not callable(activation):
        raise TypeError(f"elman: activation must be a callable, got {activation!r}.")
    use_bias = check_flag("elman", "use_bias", use_bias)
    _check_dtype("elman", dtype)
    spec = CellSpec("elman", hidden_size, 1, activation, True, use_bias, init, 0.0, dtype)

    def init_params(key: Array, input_size: int) -> ElmanParams:
        w_ih, w_hh, b, _ = _init_weights(key, spec, input_size)
        return ElmanParams(w_ih, w_hh, b if use_bias else None)

    def step_projected(params: ElmanParams, h: Array, projected: Array):
        h = activation(projected + h @ params.w_hh).astype(h.dtype)
        return h, h

    zero_carry = _zeros_carry(spec)

    def step(params: ElmanParams, h: Array, x: Array):
        _check_step_input(spec, params, x)
        _check_step_carry("elman", h, jax.ShapeDtypeStruct((*np.shape(x)[:-1], hidden_size), dtype))
        return step_projected(params, h, _project(params, x))

    return Cell(init_params, step, zero_carry, spec, _project, step_projected)


# --------------------------------------------------------------------------- LSTM


def lstm(
    hidden_size: int,
    *,
    forget_bias: float = 1.0,
    use_bias: bool = True,
    init: str = "orthogonal",
    dtype: Any = jnp.float32,
) -> Cell:
    r"""The long short-term memory cell, PyTorch's ``nn.LSTM`` step.

    $$\begin{aligned}
    (i, f, g, o) &= x_t W_{ih} + h_{t-1} W_{hh} + b \\
    c_t &= \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g) \\
    h_t &= \sigma(o) \odot \tanh(c_t)
    \end{aligned}$$

    Args:
      hidden_size: H, the size of ``h`` and ``c``.
      forget_bias: added to the forget gate's bias at initialisation, so the cell
        starts by remembering (Gers et al. 2000; Jozefowicz et al. 2015). It
        changes ``init`` only, never ``step``: converted PyTorch weights compute
        exactly what they computed there. Use 0 with ``init="pytorch"`` to draw
        from PyTorch's own distribution.
      use_bias: whether to add ``b``.
      init: ``"orthogonal"`` (default: each gate's ``w_hh`` block orthogonal,
        Glorot ``w_ih``, zero bias plus ``forget_bias``) or ``"pytorch"``.
      dtype: the dtype of the parameters and of the zero carry.

    Returns:
      A ``Cell`` whose params are ``LSTMParams(w_ih (I, 4H), w_hh (H, 4H), b (4H,))``,
      gates in the order i, f, g, o, and whose carry is ``LSTMCarry(h, c)``.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> cell = jaxrnn.lstm(4)
      >>> params = cell.init(jax.random.key(0), 2)
      >>> carry, y = cell.step(params, cell.zero_carry((3,)), jnp.ones((3, 2)))
      >>> carry.c.shape
      (3, 4)

    References:
      Hochreiter & Schmidhuber, "Long short-term memory", Neural Computation 1997.
      Gers, Schmidhuber & Cummins, "Learning to forget", Neural Computation 2000.
    """
    _check_hidden_size(hidden_size)
    _check_init("lstm", init, ("pytorch", "orthogonal"))
    use_bias = check_flag("lstm", "use_bias", use_bias)
    _check_dtype("lstm", dtype)
    if isinstance(forget_bias, bool) or not isinstance(forget_bias, int | float | np.number):
        raise TypeError(f"lstm: forget_bias must be a number (e.g. 1.0), got {forget_bias!r}.")
    spec = CellSpec("lstm", hidden_size, 4, None, True, use_bias, init, float(forget_bias), dtype)

    def init_params(key: Array, input_size: int) -> LSTMParams:
        w_ih, w_hh, b, _ = _init_weights(key, spec, input_size)
        if not use_bias:
            return LSTMParams(w_ih, w_hh, None)
        b = b.at[hidden_size : 2 * hidden_size].add(jnp.asarray(forget_bias, dtype))
        return LSTMParams(w_ih, w_hh, b)

    def step_projected(params: LSTMParams, carry: LSTMCarry, projected: Array):
        gates = projected + carry.h @ params.w_hh
        i, f, g, o = jnp.split(gates, 4, axis=-1)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        h, c = h.astype(carry.h.dtype), c.astype(carry.c.dtype)
        return LSTMCarry(h, c), h

    def zero_carry(batch_shape: tuple[int, ...] | int = ()) -> LSTMCarry:
        zeros = jnp.zeros((*_batch_shape_of(batch_shape), hidden_size), dtype)
        return LSTMCarry(zeros, zeros)

    def step(params: LSTMParams, carry: LSTMCarry, x: Array):
        _check_step_input(spec, params, x)
        leaf = jax.ShapeDtypeStruct((*np.shape(x)[:-1], hidden_size), dtype)
        _check_step_carry("lstm", carry, LSTMCarry(leaf, leaf))
        return step_projected(params, carry, _project(params, x))

    return Cell(init_params, step, zero_carry, spec, _project, step_projected)


# --------------------------------------------------------------------------- GRU


def gru(
    hidden_size: int,
    *,
    reset_after: bool = True,
    use_bias: bool = True,
    init: str = "orthogonal",
    dtype: Any = jnp.float32,
) -> Cell:
    r"""The gated recurrent unit, PyTorch's ``nn.GRU`` step (or Cho et al.'s original).

    With ``reset_after=True`` (PyTorch, cuDNN, flax):

    $$\begin{aligned}
    r &= \sigma(x_t W_{ir} + h_{t-1} W_{hr} + b_r), \quad
    z = \sigma(x_t W_{iz} + h_{t-1} W_{hz} + b_z) \\
    n &= \tanh\big(x_t W_{in} + b_n + r \odot (h_{t-1} W_{hn} + b_{hn})\big) \\
    h_t &= (1 - z) \odot n + z \odot h_{t-1}
    \end{aligned}$$

    With ``reset_after=False`` (Cho et al. 2014) the reset gate multiplies the
    state before the matmul, $n = \tanh(x_t W_{in} + (r \odot h_{t-1}) W_{hn} + b_n)$,
    and there is no ``b_hn``.

    Args:
      hidden_size: H.
      reset_after: where the reset gate applies (see above).
      use_bias: whether to add ``b`` (and ``b_hn``).
      init: ``"orthogonal"`` (default) or ``"pytorch"``.
      dtype: the dtype of the parameters and of the zero carry.

    Returns:
      A ``Cell`` whose params are ``GRUParams(w_ih (I, 3H), w_hh (H, 3H), b (3H,),
      b_hn (H,))``, gates in the order r, z, n, and whose carry is ``h`` (*batch, H).

    Examples:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> cell = jaxrnn.gru(4, reset_after=False)
      >>> params = cell.init(jax.random.key(0), 2)
      >>> params.b_hn is None
      True

    References:
      Cho et al., "Learning phrase representations using RNN encoder-decoder for
      statistical machine translation", EMNLP 2014.
    """
    _check_hidden_size(hidden_size)
    _check_init("gru", init, ("pytorch", "orthogonal"))
    use_bias = check_flag("gru", "use_bias", use_bias)
    _check_dtype("gru", dtype)
    reset_after = check_flag("gru", "reset_after", reset_after)
    spec = CellSpec("gru", hidden_size, 3, None, reset_after, use_bias, init, 0.0, dtype)
    H = hidden_size

    def init_params(key: Array, input_size: int) -> GRUParams:
        w_ih, w_hh, b, b_hn = _init_weights(key, spec, input_size)
        if not use_bias:
            return GRUParams(w_ih, w_hh, None, None)
        return GRUParams(w_ih, w_hh, b, b_hn if reset_after else None)

    def step_projected_after(params: GRUParams, h: Array, projected: Array):
        recurrent = h @ params.w_hh
        x_r, x_z, x_n = jnp.split(projected, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(recurrent, 3, axis=-1)
        if params.b_hn is not None:
            h_n = h_n + params.b_hn
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        h_new = (n + z * (h - n)).astype(h.dtype)  # (1 - z) n + z h, one multiply fewer
        return h_new, h_new

    def step_projected_before(params: GRUParams, h: Array, projected: Array):
        x_rz, x_n = projected[..., : 2 * H], projected[..., 2 * H :]
        r, z = jnp.split(jax.nn.sigmoid(x_rz + h @ params.w_hh[:, : 2 * H]), 2, axis=-1)
        n = jnp.tanh(x_n + (r * h) @ params.w_hh[:, 2 * H :])
        h_new = (n + z * (h - n)).astype(h.dtype)
        return h_new, h_new

    step_projected = step_projected_after if reset_after else step_projected_before
    zero_carry = _zeros_carry(spec)

    def step(params: GRUParams, h: Array, x: Array):
        _check_step_input(spec, params, x)
        _check_step_carry("gru", h, jax.ShapeDtypeStruct((*np.shape(x)[:-1], H), dtype))
        return step_projected(params, h, _project(params, x))

    return Cell(init_params, step, zero_carry, spec, _project, step_projected)
