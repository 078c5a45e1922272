"""flax linen's ``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell`` and ``GRUCell`` <-> jaxrnn.

flax keeps one ``Dense`` layer per gate and side, kernels ``(in, out)``:
``ii, if, ig, io`` (no bias) and ``hi, hf, hg, ho`` (with bias) for the LSTM;
``ir, iz, in`` (with bias) and ``hr, hz`` (no bias), ``hn`` (with bias) for
the GRU; ``i`` (with bias) and ``h`` for ``SimpleCell``. jaxrnn concatenates
the gates. flax's LSTM carry is ``(c, h)``; jaxrnn's is ``LSTMCarry(h, c)``.
"""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp

from jaxrnn.cells import Cell, ElmanParams, GRUParams, LSTMCarry, LSTMParams, elman, gru, lstm

__all__ = ["carry_from_flax", "carry_to_flax", "from_flax", "to_flax"]

_LSTM_GATES = ("i", "f", "g", "o")
_GRU_GATES = ("r", "z", "n")


def _unwrap(variables: Any) -> Any:
    return variables.get("params", variables)


def _kind_of(flax_cell: Any) -> str:
    from flax import linen as nn

    if isinstance(flax_cell, nn.LSTMCell | nn.OptimizedLSTMCell):
        kind = "lstm"
    elif isinstance(flax_cell, nn.GRUCell):
        kind = "gru"
    elif isinstance(flax_cell, nn.SimpleCell):
        kind = "elman"
    else:
        raise TypeError(
            "from_flax: flax_cell must be a flax.linen SimpleCell, LSTMCell, "
            f"OptimizedLSTMCell or GRUCell, got {type(flax_cell).__name__}."
        )
    if kind != "elman" and (
        flax_cell.gate_fn is not jax.nn.sigmoid or flax_cell.activation_fn is not jnp.tanh
    ):
        raise ValueError(
            "from_flax: only the standard gate_fn=sigmoid and activation_fn=tanh convert to "
            f"jaxrnn cells, got gate_fn={flax_cell.gate_fn!r}, activation_fn="
            f"{flax_cell.activation_fn!r}."
        )
    if kind == "elman" and flax_cell.residual:
        raise ValueError("from_flax: SimpleCell(residual=True) has no jaxrnn equivalent.")
    return kind


def from_flax(flax_cell: Any, variables: Any) -> tuple[Cell, Any]:
    """Converts a flax linen cell and its variables to a jaxrnn cell and params.

    Args:
      flax_cell: a ``flax.linen`` ``SimpleCell``, ``LSTMCell``,
        ``OptimizedLSTMCell`` or ``GRUCell`` (standard gate functions).
      variables: what ``flax_cell.init`` returned (``{"params": ...}``) or its
        ``"params"`` entry.

    Returns:
      ``(cell, params)`` with ``cell.step(params, carry, x)`` equal to
      ``flax_cell.apply(variables, carry_to_flax(cell, carry), x)``, computed in
      the parameters' dtype: a flax cell with another computation ``dtype``
      (say ``jnp.bfloat16``) converts with a ``UserWarning`` that the results
      differ by its rounding.
    """
    kind = _kind_of(flax_cell)
    p = _unwrap(variables)
    hidden = flax_cell.features
    dtype = jax.tree.leaves(p)[0].dtype
    compute = getattr(flax_cell, "dtype", None)
    if compute is not None and jnp.dtype(compute) != jnp.dtype(dtype):
        warnings.warn(
            f"from_flax: the flax cell computes in dtype={jnp.dtype(compute).name}, its "
            f"parameters are {jnp.dtype(dtype).name}: the jaxrnn cell computes in "
            f"{jnp.dtype(dtype).name}, so its outputs differ from flax's by "
            f"{jnp.dtype(compute).name}'s rounding. For narrow matmuls pass "
            f"compute_dtype=jnp.{jnp.dtype(compute).name} to jaxrnn.unroll.",
            UserWarning,
            stacklevel=2,
        )
    if kind == "elman":
        cell = elman(hidden, activation=flax_cell.activation_fn, dtype=dtype)
        return cell, ElmanParams(p["i"]["kernel"], p["h"]["kernel"], p["i"]["bias"])
    if kind == "lstm":
        cell = lstm(hidden, dtype=dtype)
        w_ih = jnp.concatenate([p[f"i{g}"]["kernel"] for g in _LSTM_GATES], axis=1)
        w_hh = jnp.concatenate([p[f"h{g}"]["kernel"] for g in _LSTM_GATES], axis=1)
        b = jnp.concatenate([p[f"h{g}"]["bias"] for g in _LSTM_GATES])
        return cell, LSTMParams(w_ih, w_hh, b)
    cell = gru(hidden, reset_after=True, dtype=dtype)
    w_ih = jnp.concatenate([p[f"i{g}"]["kernel"] for g in _GRU_GATES], axis=1)
    w_hh = jnp.concatenate([p[f"h{g}"]["kernel"] for g in _GRU_GATES], axis=1)
    b = jnp.concatenate([p[f"i{g}"]["bias"] for g in _GRU_GATES])
    return cell, GRUParams(w_ih, w_hh, b, p["hn"]["bias"])


def to_flax(cell: Cell, params: Any) -> tuple[Any, dict[str, Any]]:
    """Builds the flax linen cell and variables that compute what ``cell.step`` does.

    Args:
      cell: a built-in jaxrnn cell: Elman, LSTM, or GRU with ``reset_after=True``.
      params: its parameters. Cells without bias get zero biases in flax.

    Returns:
      ``(flax_cell, {"params": ...})``; the LSTM converts to ``nn.LSTMCell``.
    """
    from flax import linen as nn

    spec = cell.spec
    if spec is None:
        raise ValueError("to_flax: cell must be a built-in jaxrnn cell, not a user's cell.")
    hidden, dtype = spec.hidden_size, params.w_ih.dtype

    def bias(b: Any, size: int) -> Any:
        return jnp.zeros((size,), dtype) if b is None else b

    if spec.kind == "elman":
        flax_cell = nn.SimpleCell(hidden, activation_fn=spec.activation, param_dtype=dtype)
        b = bias(params.b, hidden)
        return flax_cell, {
            "params": {"i": {"kernel": params.w_ih, "bias": b}, "h": {"kernel": params.w_hh}}
        }
    w_ih = jnp.split(params.w_ih, spec.num_gates, axis=1)
    w_hh = jnp.split(params.w_hh, spec.num_gates, axis=1)
    b = jnp.split(bias(params.b, spec.num_gates * hidden), spec.num_gates)
    if spec.kind == "lstm":
        out: dict[str, Any] = {}
        for g, wi, wh, bg in zip(_LSTM_GATES, w_ih, w_hh, b, strict=True):
            out[f"i{g}"] = {"kernel": wi}
            out[f"h{g}"] = {"kernel": wh, "bias": bg}
        return nn.LSTMCell(hidden, param_dtype=dtype), {"params": out}
    if not spec.reset_after:
        raise ValueError(
            "to_flax: flax's GRUCell applies the reset gate after the matmul; a "
            "jaxrnn.gru(..., reset_after=False) cell has no flax equivalent."
        )
    out = {}
    for g, wi, wh, bg in zip(_GRU_GATES, w_ih, w_hh, b, strict=True):
        out[f"i{g}"] = {"kernel": wi, "bias": bg}
        out[f"h{g}"] = {"kernel": wh}
    out["hn"]["bias"] = bias(params.b_hn, hidden)
    return nn.GRUCell(hidden, param_dtype=dtype), {"params": out}


def carry_from_flax(cell: Cell, carry: Any) -> Any:
    """flax's carry to jaxrnn's: the LSTM's ``(c, h)`` becomes ``LSTMCarry(h, c)``."""
    if cell.spec is not None and cell.spec.kind == "lstm":
        if not isinstance(carry, tuple | list) or len(carry) != 2:
            got = f"{len(carry)} items" if isinstance(carry, tuple | list) else type(carry).__name__
            raise TypeError(
                f"carry_from_flax: an LSTM's flax carry is the pair (c, h), got {got}. Pass "
                "the carry flax's cell returns (or initialize_carry gives)."
            )
        c, h = carry
        return LSTMCarry(h=h, c=c)
    return carry


def carry_to_flax(cell: Cell, carry: Any) -> Any:
    """jaxrnn's carry to flax's: ``LSTMCarry(h, c)`` becomes ``(c, h)``."""
    if cell.spec is not None and cell.spec.kind == "lstm":
        return (carry.c, carry.h)
    return carry
