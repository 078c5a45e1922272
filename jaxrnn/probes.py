r"""Probes of vanishing and exploding gradients: pure functions that return arrays.

Every probe is a pure function of ``(cell, params, xs)`` that composes with
``jax.jit`` (the ``cell`` and any ``loss_fn`` are static: close over them),
prints nothing and never calls back to the host. Time steps are indexed as
``unroll``'s outputs: $h_t$ is the hidden state *after* step $t$, the one in
``ys[t]``, for $t = 0, \dots, T-1$.

- ``hidden_grad_norms``: $\lVert \partial L / \partial h_t \rVert$ for every
  $t$ in one backward pass; ``carry_grads`` gives the gradients themselves,
  for every part of the carry (an LSTM's $c_t$ too).
- ``jacobian_frobenius_norms`` and ``jacobian_spectral_norms``: the norms of
  the Jacobian products $\partial s_{T-1} / \partial s_t$ of the state,
  by vector-Jacobian and Jacobian-vector products along the trajectory,
  never building the $(S T)^2$ Jacobian.
- ``recurrent_spectrum``: singular values and spectral radius of each gate's
  recurrent matrix; ``gate_saturation``: the fraction of sigmoid and tanh
  units within $\varepsilon$ of their limits at every step.
- ``record_grad_norms``: a pass-through ``jaxrnn.optim`` transformation that
  keeps the latest global and per-parameter gradient norms in its state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxrnn import cells, fused, optim
from jaxrnn._checks import check_key
from jaxrnn.cells import Carry, Cell, Params
from jaxrnn.recurrent import unroll

Array = jax.Array

__all__ = [
    "GradNormState",
    "Saturation",
    "Spectrum",
    "carry_grads",
    "gate_activations",
    "gate_kinds",
    "gate_saturation",
    "hidden_grad_norms",
    "jacobian_frobenius_norms",
    "jacobian_spectral_norms",
    "record_grad_norms",
    "recurrent_spectrum",
]

GATE_NAMES: dict[str, tuple[str, ...]] = {
    "elman": ("h",),
    "lstm": ("i", "f", "g", "o"),
    "gru": ("r", "z", "n"),
}
"""The names of the gate blocks of ``w_hh``, in their order, for each built-in cell."""


# --------------------------------------------------------------------------- shared pieces


def _prepare(cell: Cell, params: Params, xs: Array, carry: Carry | None) -> tuple[Array, Carry]:
    """Checks the arguments as ``unroll`` does (at trace time) and fills in the zero carry."""
    _check_cell(cell)
    if not hasattr(xs, "shape") or not hasattr(xs, "dtype"):
        xs = jnp.asarray(xs)
    # unroll's own trace-time checks (shapes, dtypes, a batch-major xs), run on shapes only.
    jax.eval_shape(functools.partial(unroll, cell), params, xs, carry)
    if carry is None:
        carry = cell.zero_carry(tuple(np.shape(xs)[1:-1]))
    return xs, carry


def _check_cell(cell: Any) -> None:
    if not isinstance(cell, Cell):
        raise TypeError(
            "cell must be a jaxrnn.Cell (e.g. jaxrnn.lstm(hidden_size)), got "
            f"{type(cell).__name__}."
        )


def _step_and_inputs(cell: Cell, params: Params, xs: Array):
    """``unroll``'s fast path: project all inputs in one matmul, keep ``h @ w_hh`` in the scan."""
    if cell.project_inputs is not None and cell.step_projected is not None:
        return functools.partial(cell.step_projected, params), cell.project_inputs(params, xs)
    return functools.partial(cell.step, params), xs


def _hidden(carry: Carry) -> Array:
    """The hidden state ``h`` of a carry: its field ``h``, or the carry if it is one array."""
    if hasattr(carry, "h"):
        return carry.h
    leaves = jax.tree.leaves(carry)
    if len(leaves) == 1:
        return leaves[0]
    raise TypeError(
        f"cannot tell which part of the carry {jax.tree_util.tree_structure(carry)} is the "
        "hidden state h: give the carry a field named h (as LSTMCarry(h, c) has) or make it "
        "a single array."
    )


def _flatteners(carry: Carry, batch_ndim: int):
    """Functions between a carry and one ``(*batch, S)`` array, its leaves side by side."""
    leaves, treedef = jax.tree.flatten(carry)
    for leaf in leaves:
        if np.ndim(leaf) != batch_ndim + 1:
            raise ValueError(
                f"every leaf of the carry must have shape (*batch, features) with "
                f"{batch_ndim} batch axes, got a leaf of shape {np.shape(leaf)}."
            )
    sizes = [int(np.shape(leaf)[-1]) for leaf in leaves]
    splits = list(np.cumsum(sizes)[:-1])
    dtype = jnp.result_type(*leaves)

    def flatten(c: Carry) -> Array:
        return jnp.concatenate([leaf.astype(dtype) for leaf in jax.tree.leaves(c)], axis=-1)

    def unflatten(flat: Array) -> Carry:
        parts = jnp.split(flat, splits, axis=-1)
        return treedef.unflatten(
            [p.astype(leaf.dtype) for p, leaf in zip(parts, leaves, strict=True)]
        )

    return flatten, unflatten, sum(sizes), dtype


def _norm(values: Array, axis: int | tuple[int, ...]) -> Array:
    r"""The Euclidean norm over ``axis``, scaled first so that tiny values do not underflow.

    A plain ``sqrt(sum(g**2))`` returns 0 once the entries fall below about
    1e-19 in float32 (their squares underflow), which would cut every
    vanishing-gradient curve short long before the gradients are really zero.
    The scale is the power of two $2^e$ at the largest entry, applied as
    $2^{-\lfloor e/2 \rfloor}$ and $2^{-\lceil e/2 \rceil}$: exact, and never a
    subnormal factor. (Dividing by the largest entry itself became a multiply
    by its reciprocal, subnormal above about 8.5e37 in float32 and flushed to
    zero: the norm came out 0.) An infinite entry gives an infinite norm.
    """
    magnitudes = jnp.abs(values)
    # initial=0: the norm of no entries (an empty batch) is 0, not an error inside jnp.max.
    scale = jnp.max(magnitudes, axis=axis, keepdims=True, initial=0)
    finite = (scale > 0) & jnp.isfinite(scale)
    _, exponent = jnp.frexp(jnp.where(finite, scale, jnp.ones_like(scale)))
    half, rest = exponent // 2, exponent - exponent // 2
    scaled = jnp.ldexp(jnp.ldexp(magnitudes, -half), -rest)
    norm = jnp.sqrt(jnp.sum(jnp.square(scaled), axis=axis, keepdims=True))
    norm = jnp.ldexp(jnp.ldexp(norm, half), rest)
    norm = jnp.where(finite, norm, scale)  # 0, inf or NaN: the norm is the largest entry
    return jnp.squeeze(norm, axis=axis)


def _check_scalar(value: Any, what: str) -> None:
    """A real scalar array, refused here rather than inside NumPy or ``jax.grad``."""
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(
            f"{what} must return a scalar array, got a {type(value).__name__}; return the "
            "loss alone (e.g. jnp.mean(...)), not a tuple or a Python value."
        )
    if np.ndim(value) != 0:
        raise ValueError(
            f"{what} must return a scalar, got an array of shape {np.shape(value)}. "
            "Reduce it, e.g. with jnp.mean or jnp.sum."
        )
    if not jnp.issubdtype(value.dtype, jnp.floating):
        raise TypeError(
            f"{what} must return a real floating-point scalar to differentiate, got dtype "
            f"{value.dtype}; compute the loss from ys in floating point."
        )


# --------------------------------------------------------------------------- dL/dh_t


@functools.partial(jax.jit, static_argnames=("cell", "loss_fn"))
def carry_grads(
    cell: Cell,
    params: Params,
    xs: Array,
    loss_fn: Callable[[Array], Array],
    *,
    carry: Carry | None = None,
) -> tuple[Array, Carry]:
    r"""The loss and $\partial L / \partial s_t$ for every step $t$ and every part of the carry.

    A zero perturbation $\epsilon_t$ is added to the carry after every step,
    $\tilde s_t = s_t + \epsilon_t$ (and to the output, which is $h_t$), and
    the loss is differentiated once with respect to all of them:
    $\partial L / \partial \epsilon_t = \partial L / \partial s_t$, the total
    derivative through the output $y_t$ and through every later step. One
    forward and one backward pass, whatever $T$. For an LSTM the gradient with
    respect to $h_t$ holds $c_t$ fixed, and the other way round.

    Args:
      cell: a ``Cell`` whose output ``y`` is its hidden state ``h`` (every
        built-in cell; the carry is ``h`` itself or has a field ``h``).
      params: the cell's parameters.
      xs: inputs of shape ``(time, *batch, input_size)``.
      loss_fn: ``loss_fn(ys) -> scalar`` with ``ys`` of shape
        ``(time, *batch, hidden_size)``, the outputs ``unroll`` returns; close
        over targets and readout weights.
      carry: the initial carry; zeros if omitted.

    Returns:
      ``(loss, grads)``: the scalar loss and a pytree with the carry's
      structure whose leaves have shape ``(time, *batch, features)``;
      ``grads[t]`` is $\partial L / \partial s_t$.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn import probes
      >>> cell = jaxrnn.lstm(8)
      >>> params = cell.init(jax.random.key(0), 2)
      >>> xs = jnp.ones((50, 4, 2))
      >>> loss, grads = probes.carry_grads(cell, params, xs, lambda ys: jnp.sum(ys[-1]))
      >>> grads.h.shape, grads.c.shape
      ((50, 4, 8), (50, 4, 8))
    """
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a function loss_fn(ys) -> scalar, got {type(loss_fn).__name__}."
        )
    xs, carry = _prepare(cell, params, xs, carry)
    step, inputs = _step_and_inputs(cell, params, xs)
    time = np.shape(xs)[0]
    zeros = jax.tree.map(lambda leaf: jnp.zeros((time, *np.shape(leaf)), leaf.dtype), carry)

    def perturbed_loss(perturbations: Carry) -> Array:
        def body(c: Carry, step_input):
            u, eps = step_input
            c, y = step(c, u)
            eps_h = _hidden(eps)
            if np.shape(y) != np.shape(eps_h):
                raise ValueError(
                    f"the cell's output y has shape {np.shape(y)} but its hidden state h has "
                    f"shape {np.shape(eps_h)}: the probes need cells whose output is h."
                )
            return jax.tree.map(jnp.add, c, eps), y + eps_h.astype(y.dtype)

        _, ys = lax.scan(body, carry, (inputs, perturbations))
        loss = loss_fn(ys)
        _check_scalar(loss, "loss_fn")
        return loss

    return jax.value_and_grad(perturbed_loss)(zeros)


@functools.partial(jax.jit, static_argnames=("cell", "loss_fn"))
def hidden_grad_norms(
    cell: Cell,
    params: Params,
    xs: Array,
    loss_fn: Callable[[Array], Array],
    *,
    carry: Carry | None = None,
) -> Array:
    r"""$\lVert \partial L / \partial h_t \rVert$ for every time step, in one backward pass.

    $$n_t = \Big(\sum_{b,j} \big(\partial L / \partial h_{t,b,j}\big)^2\Big)^{1/2},
    \qquad t = 0, \dots, T-1,$$

    the Frobenius norm over the batch and the features of the gradient of the
    loss with respect to the hidden state after step $t$ (see ``carry_grads``
    for how it is computed). With a loss on the last output only, $n_t$ is
    the signal that step $t$ receives from the end of the sequence: it decays
    geometrically in $T - t$ when gradients vanish and grows when they explode.

    Args:
      cell: a ``Cell`` whose output is its hidden state (every built-in cell).
      params: the cell's parameters.
      xs: inputs of shape ``(time, *batch, input_size)``.
      loss_fn: ``loss_fn(ys) -> scalar``, ``ys`` of shape ``(time, *batch, hidden_size)``.
      carry: the initial carry; zeros if omitted.

    Returns:
      An array of shape ``(time,)``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn import probes
      >>> cell = jaxrnn.elman(16, init="pytorch")
      >>> params = cell.init(jax.random.key(0), 1)
      >>> xs = jax.random.normal(jax.random.key(1), (100, 8, 1))
      >>> norms = probes.hidden_grad_norms(cell, params, xs, lambda ys: jnp.mean(ys[-1] ** 2))
      >>> norms.shape, bool(norms[0] < 1e-6 * norms[-1])     # vanished over 100 steps
      ((100,), True)

    References:
      Arjovsky, Shah & Bengio, "Unitary evolution recurrent neural networks",
      ICML 2016 (Fig. 4 plots this quantity at initialisation and after training).
    """
    _, grads = carry_grads(cell, params, xs, loss_fn, carry=carry)
    g = _hidden(grads)
    return _norm(g, axis=tuple(range(1, g.ndim)))


# --------------------------------------------------------------------------- Jacobian products


def _trajectory(step, carry: Carry, inputs: Array) -> Carry:
    """The carry *entering* each step, stacked over time: ``[s_init, s_0, ..., s_{T-2}]``."""

    def body(c, u):
        new, _ = step(c, u)
        return new, c

    _, before = lax.scan(body, carry, inputs)
    return before


def _linear_setup(cell: Cell, params: Params, xs: Array, carry: Carry | None):
    """The flattened step and the states along the trajectory, for JVP and VJP scans."""
    xs, carry = _prepare(cell, params, xs, carry)
    step, inputs = _step_and_inputs(cell, params, xs)
    flatten, unflatten, size, dtype = _flatteners(carry, np.ndim(xs) - 2)

    def flat_step(state: Array, u: Array) -> Array:
        return flatten(step(unflatten(state), u)[0])

    before = jax.vmap(flatten)(_trajectory(step, carry, inputs))  # (time, *batch, S)
    return flat_step, before, inputs, size, dtype


def _vjp_scan(flat_step, before, inputs, cotangents, read):
    """Backpropagates lanes of cotangents of ``s_{T-1}`` to every ``s_t`` in one reverse scan.

    ``cotangents`` has shape ``(lanes, *batch, S)``. At step ``t`` (going
    backwards) ``read(lam, t)`` sees ``lam = cotangents @ d s_{T-1} / d s_t``
    and returns what to keep; then ``lam`` is pulled back through step ``t``.
    """

    def body(lam, step_input):
        state, u, t = step_input
        kept = read(lam, t)
        _, pullback = jax.vjp(lambda s: flat_step(s, u), state)
        return jax.vmap(lambda lane: pullback(lane)[0])(lam), kept

    time = np.shape(before)[0]
    _, kept = lax.scan(body, cotangents, (before, inputs, jnp.arange(time)), reverse=True)
    return kept


def _jvp_scan(flat_step, before, inputs, tangents):
    """``J_t v_t`` for every ``t`` (lane ``t``), with ``J_t = d s_{T-1} / d s_t``.

    Lane ``t`` is zero until step ``t``, receives ``tangents[t]`` right after
    it and is pushed forward through every later step.
    """

    def body(lanes, step_input):
        state, u, t, v = step_input
        _, push = jax.linearize(lambda s: flat_step(s, u), state)
        lanes = jax.vmap(push)(lanes)
        return lax.dynamic_update_index_in_dim(lanes, lanes[t] + v, t, axis=0), None

    time = np.shape(before)[0]
    steps = (before, inputs, jnp.arange(time), tangents)
    lanes, _ = lax.scan(body, jnp.zeros_like(tangents), steps)
    return lanes


@functools.partial(jax.jit, static_argnames=("cell",))
def jacobian_frobenius_norms(
    cell: Cell, params: Params, xs: Array, *, carry: Carry | None = None
) -> Array:
    r"""$\lVert \partial s_{T-1} / \partial s_t \rVert_F$ for every step $t$ and every sequence.

    $s_t$ is the whole carry after step $t$ flattened to $S$ numbers ($S = H$
    for Elman and GRU, $2H$ for the LSTM's $(h, c)$), so that
    $\partial s_{T-1} / \partial s_t = \prod_{k=t+1}^{T-1} \partial s_k / \partial s_{k-1}$
    is the product of the per-step Jacobians along the trajectory. Since
    $\lVert J \rVert_F^2 = \sum_i \lVert e_i^\top J \rVert^2$, one reverse scan
    that carries the $S$ rows of the identity gives every $t$ at once; no
    $(S T)^2$ Jacobian is formed. Sequences in a batch are independent, so
    each gets its own norm.

    Args:
      cell: a ``Cell`` whose carry leaves have shape ``(*batch, features)``.
      params: the cell's parameters.
      xs: inputs of shape ``(time, *batch, input_size)``.
      carry: the initial carry; zeros if omitted.

    Returns:
      An array of shape ``(time, *batch)``; entry ``t = T-1`` is $\sqrt{S}$,
      the norm of the identity.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn import probes
      >>> cell = jaxrnn.elman(4, activation=lambda a: a)    # linear: products are powers of w_hh
      >>> params = cell.init(jax.random.key(0), 1)
      >>> norms = probes.jacobian_frobenius_norms(cell, params, jnp.zeros((10, 1)))
      >>> bool(jnp.allclose(norms, 2.0, atol=1e-4))   # orthogonal w_hh: every power has norm 2
      True
    """
    flat_step, before, inputs, size, dtype = _linear_setup(cell, params, xs, carry)
    batch_shape = np.shape(before)[1:-1]
    identity = jnp.eye(size, dtype=dtype).reshape(size, *(1,) * len(batch_shape), size)
    rows = jnp.broadcast_to(identity, (size, *batch_shape, size))

    def read(lam, t):
        return _norm(lam, axis=(0, lam.ndim - 1))

    return _vjp_scan(flat_step, before, inputs, rows, read)


@functools.partial(jax.jit, static_argnames=("cell", "num_iters"))
def jacobian_spectral_norms(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    carry: Carry | None = None,
    num_iters: int = 20,
    key: Array | None = None,
) -> Array:
    r"""$\lVert \partial s_{T-1} / \partial s_t \rVert_2$ for every step $t$, by power iteration.

    For each $t$, with $J_t = \partial s_{T-1} / \partial s_t$ (see
    ``jacobian_frobenius_norms``), power iteration on $J_t^\top J_t$:

    $$v \leftarrow \frac{J_t^\top J_t v}{\lVert J_t^\top J_t v \rVert}, \qquad
    \sigma_{\max}(J_t) \approx \lVert J_t v \rVert,$$

    where $J_t v$ is a forward (JVP) scan and $J_t^\top u$ a reverse (VJP) scan
    along the trajectory, all $t$ side by side as lanes of one batched scan:
    each iteration costs about $2T$ steps of $T$ lanes, and no Jacobian is
    formed. The estimate never exceeds the true norm and converges as
    $(\sigma_2 / \sigma_1)^{2k}$ after $k$ iterations.

    Args:
      cell: a ``Cell`` whose carry leaves have shape ``(*batch, features)``.
      params: the cell's parameters.
      xs: inputs of shape ``(time, *batch, input_size)``.
      carry: the initial carry; zeros if omitted.
      num_iters: the number of power iterations.
      key: a PRNG key for the random start vectors; ``jax.random.key(0)`` if omitted.

    Returns:
      An array of shape ``(time, *batch)``; entry ``t = T-1`` is 1.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn import probes
      >>> cell = jaxrnn.gru(8)
      >>> params = cell.init(jax.random.key(0), 2)
      >>> xs = jax.random.normal(jax.random.key(1), (30, 2))
      >>> norms = probes.jacobian_spectral_norms(cell, params, xs)
      >>> norms.shape, round(float(norms[-1]), 4)
      ((30,), 1.0)
    """
    if isinstance(num_iters, bool) or not isinstance(num_iters, int | np.integer) or num_iters < 1:
        raise ValueError(f"num_iters must be a positive int, got {num_iters!r}.")
    flat_step, before, inputs, _, dtype = _linear_setup(cell, params, xs, carry)
    key = jax.random.key(0) if key is None else key
    check_key("jacobian_spectral_norms", key)

    def normalize(v):
        norm = _norm(v, axis=-1)[..., None]
        return jnp.where(norm > 0, v / jnp.where(norm > 0, norm, 1), v)

    def times_jacobian(v):  # (time lanes, *batch, S) -> J_t v_t, lane by lane
        return _jvp_scan(flat_step, before, inputs, v)

    def times_transpose(u):  # J_t^T u_t, lane by lane
        return _vjp_scan(flat_step, before, inputs, u, lambda lam, t: lam[t])

    def iteration(v, _):
        return normalize(times_transpose(times_jacobian(v))), None

    start = normalize(jax.random.normal(key, np.shape(before), dtype))
    v, _ = lax.scan(iteration, start, None, length=num_iters)
    return _norm(times_jacobian(v), axis=-1)


# --------------------------------------------------------------------------- spectra


class Spectrum(NamedTuple):
    """The spectrum of one gate's recurrent matrix (H, H).

    Attributes:
      singular_values: shape ``(H,)``, in descending order.
      spectral_radius: a scalar, the largest modulus of an eigenvalue.
    """

    singular_values: Array
    spectral_radius: Array


def _gate_names(cell: Cell, params: Params) -> tuple[str, ...]:
    if cell.spec is not None and cell.spec.kind in GATE_NAMES:
        return GATE_NAMES[cell.spec.kind]
    hidden, width = np.shape(params.w_hh)
    return tuple(str(g) for g in range(width // hidden))


def recurrent_spectrum(cell: Cell, params: Params) -> dict[str, Spectrum]:
    r"""Singular values and spectral radius of each gate block of ``w_hh``.

    For an Elman cell, $h_t = \phi(x_t W_{ih} + h_{t-1} W_{hh} + b)$ gives
    $\partial h_t / \partial h_{t-1} = \operatorname{diag}(\phi')\,W_{hh}^\top$, so
    $\lVert \partial L / \partial h_t \rVert$ vanishes when
    $\sigma_{\max}(W_{hh}) < 1/\gamma$, with $\gamma \ge |\phi'|$ (1 for tanh),
    and may explode when it is larger (Pascanu et al. 2013). The spectral
    radius $\rho$ sets the rate for a linear cell: the norms change by a
    factor that tends to $\rho$ per step. Gated cells have one block per gate.

    Args:
      cell: the cell (its ``spec`` names the gates; cells without one get
        ``"0"``, ``"1"``, ...).
      params: its parameters, with ``w_hh`` of shape ``(H, G·H)``.

    Returns:
      A dict from gate name to ``Spectrum``: ``"h"`` for Elman, ``"i", "f",
      "g", "o"`` for the LSTM, ``"r", "z", "n"`` for the GRU. The spectral
      radius comes from ``jnp.linalg.eigvals``, which runs on CPU (and on GPU
      where JAX supports it).

    Example:
      >>> import jax, jaxrnn
      >>> from jaxrnn import probes
      >>> cell = jaxrnn.lstm(16)
      >>> spectra = probes.recurrent_spectrum(cell, cell.init(jax.random.key(0), 3))
      >>> list(spectra), round(float(spectra["f"].singular_values[0]), 4)   # orthogonal init
      (['i', 'f', 'g', 'o'], 1.0)

    References:
      Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent
      neural networks", ICML 2013.
    """
    _check_cell(cell)
    if cell.spec is not None and fused._has_builtin_step(cell):
        cells._check_params(cell.spec, params, "recurrent_spectrum")
    w_hh = params.w_hh
    if np.ndim(w_hh) != 2 or np.shape(w_hh)[1] % np.shape(w_hh)[0]:
        raise ValueError(
            f"params.w_hh must have shape (H, G·H), got {np.shape(w_hh)}: a recurrent "
            "matrix with its gate blocks side by side."
        )
    names = _gate_names(cell, params)
    return dict(zip(names, _spectra(w_hh, len(names)), strict=True))


@functools.partial(jax.jit, static_argnames=("num_gates",))
def _spectra(w_hh: Array, num_gates: int) -> tuple[Spectrum, ...]:
    spectra = []
    for block in jnp.split(w_hh, num_gates, axis=1):
        singular_values = jnp.linalg.svd(block, compute_uv=False)
        radius = jnp.max(jnp.abs(jnp.linalg.eigvals(block))).astype(singular_values.dtype)
        spectra.append(Spectrum(singular_values, radius))
    return tuple(spectra)


# --------------------------------------------------------------------------- gate saturation


class Saturation(NamedTuple):
    """Fractions of units near their limits at every step, each of shape ``(time,)``.

    Attributes:
      low: within ``eps`` of the lower limit: 0 for a sigmoid, −1 for tanh.
      high: within ``eps`` of the upper limit, 1.
    """

    low: Array
    high: Array


def gate_kinds(cell: Cell) -> dict[str, str]:
    """Which of a built-in cell's gates are sigmoids and which tanh, by gate name.

    Args:
      cell: ``jaxrnn.elman`` (with ``jnp.tanh`` or ``jax.nn.sigmoid``), ``jaxrnn.lstm``
        or ``jaxrnn.gru``.

    Returns:
      A dict from the names ``gate_activations`` uses to ``"sigmoid"`` or ``"tanh"``.

    Example:
      >>> import jaxrnn
      >>> from jaxrnn import probes
      >>> probes.gate_kinds(jaxrnn.lstm(4))
      {'i': 'sigmoid', 'f': 'sigmoid', 'g': 'tanh', 'o': 'sigmoid', 'c': 'tanh'}
    """
    _check_cell(cell)
    spec = cell.spec
    if spec is None or spec.kind not in GATE_NAMES:
        raise ValueError(
            "gate activations need a built-in cell (jaxrnn.elman, lstm or gru), whose gates "
            "the probes know; got a cell without a spec."
        )
    if spec.kind == "lstm":
        return {"i": "sigmoid", "f": "sigmoid", "g": "tanh", "o": "sigmoid", "c": "tanh"}
    if spec.kind == "gru":
        return {"r": "sigmoid", "z": "sigmoid", "n": "tanh"}
    kinds = {jnp.tanh: "tanh", jax.nn.sigmoid: "sigmoid"}
    if spec.activation not in kinds:
        raise ValueError(
            "saturation is defined for Elman cells with activation=jnp.tanh or "
            f"jax.nn.sigmoid, got {spec.activation!r}."
        )
    return {"h": kinds[spec.activation]}


def gate_activations(
    cell: Cell, params: Params, xs: Array, *, carry: Carry | None = None
) -> dict[str, Array]:
    r"""Every gate's activation at every step of a built-in cell.

    Args:
      cell: ``jaxrnn.elman`` (tanh or sigmoid activation), ``jaxrnn.lstm`` or ``jaxrnn.gru``.
      params: its parameters.
      xs: inputs of shape ``(time, *batch, input_size)``.
      carry: the initial carry; zeros if omitted.

    Returns:
      A dict from gate name to its values, of shape ``(time, *batch,
      hidden_size)``: Elman ``"h"`` ($\phi$ of the pre-activation, i.e. $h_t$);
      LSTM $\sigma(i), \sigma(f), \tanh(g), \sigma(o)$ and ``"c"``,
      $\tanh(c_t)$; GRU $\sigma(r), \sigma(z)$ and the candidate ``"n"``.
      ``gate_kinds(cell)`` says which are sigmoids and which tanh.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn import probes
      >>> cell = jaxrnn.gru(4)
      >>> gates = probes.gate_activations(cell, cell.init(jax.random.key(0), 2), jnp.ones((7, 2)))
      >>> {name: values.shape for name, values in gates.items()}
      {'r': (7, 4), 'z': (7, 4), 'n': (7, 4)}
    """
    names = tuple(gate_kinds(cell))  # also checks that the cell is a built-in one
    return dict(zip(names, _gate_activations(cell, params, xs, carry), strict=True))


@functools.partial(jax.jit, static_argnames=("cell",))
def _gate_activations(cell: Cell, params: Params, xs: Array, carry: Carry | None):
    """The gates' activations in the order of ``gate_kinds(cell)``, as a tuple."""
    spec = cell.spec
    xs, carry = _prepare(cell, params, xs, carry)
    # Built-in cells take the fast path: the inputs are projected, x_t @ w_ih + b.
    step, projected = _step_and_inputs(cell, params, xs)
    before = _trajectory(step, carry, projected)  # the carry entering each step
    h_prev = _hidden(before)
    if spec.kind == "elman":
        return (spec.activation(projected + h_prev @ params.w_hh),)
    if spec.kind == "lstm":
        i, f, g, o = jnp.split(projected + h_prev @ params.w_hh, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
        c = f * before.c + i * g
        return i, f, g, o, jnp.tanh(c)
    # GRU, reset after (PyTorch) or before (Cho et al.) the recurrent matmul.
    x_r, x_z, x_n = jnp.split(projected, 3, axis=-1)
    w_hr, w_hz, w_hn = jnp.split(params.w_hh, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_prev @ w_hr)
    z = jax.nn.sigmoid(x_z + h_prev @ w_hz)
    if spec.reset_after:
        h_n = h_prev @ w_hn + (0 if params.b_hn is None else params.b_hn)
        n = jnp.tanh(x_n + r * h_n)
    else:
        n = jnp.tanh(x_n + (r * h_prev) @ w_hn)
    return r, z, n


def gate_saturation(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    carry: Carry | None = None,
    eps: float = 0.05,
) -> dict[str, Saturation]:
    r"""The fraction of each gate's units within ``eps`` of their limits, at every step.

    A saturated unit passes almost no gradient: $\sigma'(a) = \sigma(1 - \sigma)
    < \varepsilon$ and $\tanh'(a) = 1 - \tanh^2 < 2\varepsilon$ there. For the
    LSTM's forget gate the two ends mean different things: ``high`` is the
    fraction of cells that keep their memory (gradient flows along $c_t$),
    ``low`` the fraction that erase it.

    Args:
      cell: a built-in cell (see ``gate_activations``).
      params: its parameters.
      xs: inputs of shape ``(time, *batch, input_size)``.
      carry: the initial carry; zeros if omitted.
      eps: the distance to a limit, in (0, 1).

    Returns:
      A dict from gate name to ``Saturation(low, high)``, each of shape
      ``(time,)``: averaged over the batch and the units.

    Example:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn import probes
      >>> cell = jaxrnn.lstm(8, forget_bias=5.0)
      >>> params = cell.init(jax.random.key(0), 2)
      >>> sat = probes.gate_saturation(cell, params, jnp.zeros((10, 3, 2)), eps=0.01)
      >>> float(sat["f"].high.mean())       # sigmoid(5) = 0.9933: every forget gate open
      1.0
    """
    if isinstance(eps, bool) or not isinstance(eps, int | float | np.integer | np.floating):
        raise TypeError(f"eps must be a Python float in (0, 1), got {eps!r}.")
    if not 0.0 < float(eps) < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {eps!r}.")
    names = tuple(gate_kinds(cell))
    fractions = _saturation(cell, params, xs, carry, float(eps))
    return dict(zip(names, fractions, strict=True))


@functools.partial(jax.jit, static_argnames=("cell", "eps"))
def _saturation(cell: Cell, params: Params, xs: Array, carry: Carry | None, eps: float):
    fractions = []
    kinds = gate_kinds(cell).values()
    for kind, values in zip(kinds, _gate_activations(cell, params, xs, carry), strict=True):
        lower = 0.0 if kind == "sigmoid" else -1.0
        axes = tuple(range(1, values.ndim))
        low = jnp.mean((values < lower + eps).astype(values.dtype), axis=axes)
        high = jnp.mean((values > 1.0 - eps).astype(values.dtype), axis=axes)
        fractions.append(Saturation(low, high))
    return tuple(fractions)


# --------------------------------------------------------------------------- optimizer probe


class GradNormState(NamedTuple):
    r"""What ``record_grad_norms`` keeps: the norms of the latest gradients.

    Attributes:
      count: the number of updates seen (int32).
      global_norm: $\lVert g \rVert$ over all the leaves together.
      param_norms: a pytree with the structure of the params: each leaf's norm.
    """

    count: Array
    global_norm: Array
    param_norms: Any


def _norm_dtype(leaf: Array):
    """At least float32, and real: a complex leaf's norm is a real number."""
    return jnp.finfo(jnp.promote_types(jnp.result_type(leaf), jnp.float32)).dtype


def record_grad_norms() -> optim.GradientTransformation:
    r"""A pass-through transformation that records gradient norms in its state.

    $$u = g, \qquad \text{state} \leftarrow \big(n + 1,\ \lVert g \rVert,\
    \{\lVert g_\ell \rVert\}_\ell\big)$$

    Put it first in a chain to see the raw gradients, before clipping; read
    ``state[0].global_norm`` after each step, or return it from the jitted
    step. Pure: no host callbacks, so it works under ``jit`` and ``scan``.

    Returns:
      A ``jaxrnn.optim.GradientTransformation`` whose state is ``GradNormState``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import optim, probes
      >>> tx = optim.chain(probes.record_grad_norms(), optim.sgd(0.1))
      >>> params = {"a": jnp.zeros(2, dtype=jnp.float32), "b": jnp.zeros((), dtype=jnp.float32)}
      >>> grads = {"a": jnp.array([3.0, 0.0], dtype=jnp.float32),
      ...          "b": jnp.array(4.0, dtype=jnp.float32)}
      >>> _, state = tx.update(grads, tx.init(params), params)
      >>> float(state[0].global_norm), float(state[0].param_norms["a"])
      (5.0, 3.0)
    """

    def init(params: Params) -> GradNormState:
        leaves = jax.tree.leaves(params)
        global_dtype = (
            jnp.result_type(*[_norm_dtype(leaf) for leaf in leaves]) if leaves else jnp.float32
        )
        return GradNormState(
            count=jnp.zeros([], jnp.int32),
            global_norm=jnp.zeros([], global_dtype),
            param_norms=jax.tree.map(lambda p: jnp.zeros([], _norm_dtype(p)), params),
        )

    def update(updates, state: GradNormState, params: Params | None = None):
        del params
        # Scaled norms (_norm), as the other probes': sqrt(sum(g**2)) in float32 says 0 for
        # entries below about 1e-19 and inf above 1e19, where the norm itself is a number.
        norms = jax.tree.map(
            lambda g, old: _norm(jnp.ravel(jnp.abs(g).astype(old.dtype)), axis=0),
            updates,
            state.param_norms,
        )
        dtype = state.global_norm.dtype
        leaves = [n.astype(dtype) for n in jax.tree.leaves(norms)]
        global_norm = _norm(jnp.stack(leaves), axis=0) if leaves else jnp.zeros([], dtype)
        return updates, GradNormState(optim.safe_increment(state.count), global_norm, norms)

    return optim.GradientTransformation(init, update)
