"""PyTorch ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` to and from jaxrnn.

PyTorch stores each weight ``(G·H, in)`` and computes ``x @ W.T``, with two
biases ``b_ih`` and ``b_hh``; jaxrnn stores ``(in, G·H)`` and one fused bias
``b = b_ih + b_hh`` (plus the GRU's ``b_hn``, which sits inside the reset
product and cannot be fused). Conversion transposes and sums; going back,
``bias_ih = b`` and ``bias_hh`` holds only ``b_hn`` (zeros elsewhere), which
computes the same function.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.cells import Cell, ElmanParams, GRUParams, LSTMParams, elman, gru, lstm
from jaxrnn.recurrent import StackedRNN

__all__ = ["from_torch", "params_from_torch_state", "params_to_torch_state", "to_torch"]

_KINDS = {"RNN": "elman", "LSTM": "lstm", "GRU": "gru"}
_TORCH_DTYPES = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16}


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction == 1 else "")


def _cell_for(kind: str, hidden_size: int, use_bias: bool, nonlinearity: str, dtype) -> Cell:
    if kind == "elman":
        activation = {"tanh": jnp.tanh, "relu": jax.nn.relu}[nonlinearity]
        return elman(
            hidden_size, activation=activation, use_bias=use_bias, init="pytorch", dtype=dtype
        )
    if kind == "lstm":
        return lstm(hidden_size, forget_bias=0.0, use_bias=use_bias, init="pytorch", dtype=dtype)
    return gru(hidden_size, reset_after=True, use_bias=use_bias, init="pytorch", dtype=dtype)


def params_from_torch_state(
    state: Mapping[str, Any], model: StackedRNN
) -> tuple[tuple[Any, ...], ...]:
    """Builds ``params[layer][direction]`` from a PyTorch module's ``state_dict``.

    Only ``jnp`` operations are used, so the result is differentiable with
    respect to the arrays of ``state``: ``jax.grad`` through this function gives
    gradients in PyTorch's own layout, to compare with ``param.grad``.

    Args:
      state: ``{"weight_ih_l0": (G·H, I), "weight_hh_l0": (G·H, H), "bias_ih_l0":
        (G·H,), "bias_hh_l0": (G·H,), ..., "weight_ih_l0_reverse": ...}`` as
        arrays (NumPy, JAX or CPU tensors converted with ``.numpy()``).
      model: the ``StackedRNN`` the parameters are for (its cell's kind, layers
        and directions name the keys).

    Returns:
      ``params[layer][direction]`` in jaxrnn's layout.
    """
    spec = model.cell.spec
    if spec is None:
        raise ValueError("params_from_torch_state: model.cell must be a built-in jaxrnn cell.")
    hidden = spec.hidden_size
    layers = []
    for layer in range(model.num_layers):
        directions = []
        for direction in range(model.num_directions):
            s = _suffix(layer, direction)
            w_ih = jnp.asarray(state[f"weight_ih{s}"]).T
            w_hh = jnp.asarray(state[f"weight_hh{s}"]).T
            has_bias = f"bias_ih{s}" in state
            b_ih = jnp.asarray(state[f"bias_ih{s}"]) if has_bias else None
            b_hh = jnp.asarray(state[f"bias_hh{s}"]) if has_bias else None
            if spec.kind == "elman":
                directions.append(ElmanParams(w_ih, w_hh, b_ih + b_hh if has_bias else None))
            elif spec.kind == "lstm":
                directions.append(LSTMParams(w_ih, w_hh, b_ih + b_hh if has_bias else None))
            elif not has_bias:
                directions.append(GRUParams(w_ih, w_hh, None, None))
            else:
                # b_hr and b_hz only ever appear summed with b_ir and b_iz; b_hn does not.
                b = b_ih + jnp.concatenate([b_hh[: 2 * hidden], jnp.zeros_like(b_hh[2 * hidden :])])
                directions.append(GRUParams(w_ih, w_hh, b, b_hh[2 * hidden :]))
        layers.append(tuple(directions))
    return tuple(layers)


def params_to_torch_state(model: StackedRNN, params: Any) -> dict[str, np.ndarray]:
    """The inverse of ``params_from_torch_state``: a ``state_dict`` of NumPy arrays.

    ``bias_ih`` receives the fused bias and ``bias_hh`` zeros (the GRU's third
    block receives ``b_hn``): the same function as the jaxrnn parameters.

    Args:
      model: the ``StackedRNN`` the parameters belong to.
      params: ``params[layer][direction]``.

    Returns:
      ``{"weight_ih_l0": (G·H, I), ...}`` with PyTorch's names and layouts.
    """
    spec = model.cell.spec
    if spec is None:
        raise ValueError("params_to_torch_state: model.cell must be a built-in jaxrnn cell.")
    hidden = spec.hidden_size
    state: dict[str, np.ndarray] = {}
    for layer, layer_params in enumerate(params):
        for direction, p in enumerate(layer_params):
            s = _suffix(layer, direction)
            state[f"weight_ih{s}"] = np.asarray(p.w_ih).T.copy()
            state[f"weight_hh{s}"] = np.asarray(p.w_hh).T.copy()
            if p.b is not None:
                b = np.asarray(p.b)
                bias_hh = np.zeros_like(b)
                if spec.kind == "gru":
                    bias_hh[2 * hidden :] = np.asarray(p.b_hn)
                state[f"bias_ih{s}"] = b.copy()
                state[f"bias_hh{s}"] = bias_hh
    return state


def from_torch(module: Any) -> tuple[StackedRNN, tuple[tuple[Any, ...], ...]]:
    """Converts a PyTorch ``nn.RNN``, ``nn.LSTM`` or ``nn.GRU`` to a jaxrnn model.

    Every layer, both directions, ``bias=False`` and both of ``nn.RNN``'s
    nonlinearities are supported. The model is time-major, like PyTorch's
    default ``batch_first=False``: with a ``batch_first`` module, swap the
    first two axes of the inputs and outputs (a ``UserWarning`` says so, since
    batch-major inputs of the right sizes would run without an error).

    Args:
      module: a ``torch.nn.RNN``, ``torch.nn.LSTM`` (``proj_size=0``) or
        ``torch.nn.GRU``.

    Returns:
      ``(model, params)``: a ``StackedRNN`` whose cell was built with
      ``init="pytorch"`` (and ``forget_bias=0``), and its parameters, so that
      ``model.apply(params, xs)`` equals ``module(xs)``.

    Examples:
      >>> import torch, jax.numpy as jnp, jaxrnn
      >>> module = torch.nn.GRU(3, 5, num_layers=2, bidirectional=True)
      >>> model, params = jaxrnn.interop.from_torch(module)
      >>> carry, ys = model.apply(params, jnp.ones((4, 2, 3)))
      >>> ys.shape
      (4, 2, 10)
    """
    import torch

    kind = _KINDS.get(type(module).__name__) if isinstance(module, torch.nn.RNNBase) else None
    if kind is None:
        raise TypeError(
            f"from_torch: module must be a torch.nn.RNN, LSTM or GRU, got {type(module).__name__}."
        )
    if getattr(module, "proj_size", 0):
        raise ValueError(
            f"from_torch: nn.LSTM with proj_size={module.proj_size} has no jaxrnn equivalent "
            "yet; use proj_size=0."
        )
    if module.batch_first:
        warnings.warn(
            "from_torch: the module is batch_first=True, the jaxrnn model time-major: give it "
            "jnp.swapaxes(xs, 0, 1) and swap its ys back; its carry is (L·D, batch, H) either "
            "way, as the module's h_n.",
            UserWarning,
            stacklevel=2,
        )
    dtype_name = str(module.weight_ih_l0.dtype).removeprefix("torch.")
    if dtype_name not in _TORCH_DTYPES:
        raise TypeError(f"from_torch: unsupported parameter dtype {module.weight_ih_l0.dtype}.")
    cell = _cell_for(
        kind,
        module.hidden_size,
        module.bias,
        getattr(module, "nonlinearity", "tanh"),
        _TORCH_DTYPES[dtype_name],
    )
    model = StackedRNN(
        cell, module.num_layers, bidirectional=module.bidirectional, dropout=float(module.dropout)
    )
    state = {
        name: tensor.detach().cpu().float().numpy()
        if tensor.dtype == torch.bfloat16
        else tensor.detach().cpu().numpy()
        for name, tensor in module.state_dict().items()
    }
    params = params_from_torch_state(state, model)
    params = jax.tree.map(lambda a: a.astype(cell.spec.dtype), params)
    return model, params


def to_torch(model: StackedRNN, params: Any) -> Any:
    """Builds the PyTorch module that computes what ``model.apply(params, ·)`` computes.

    Args:
      model: a ``StackedRNN`` of a built-in cell: Elman with ``jnp.tanh`` or
        ``jax.nn.relu``, LSTM, or GRU with ``reset_after=True`` (PyTorch has no
        reset-before GRU).
      params: ``params[layer][direction]``.

    Returns:
      A ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (``batch_first=False``) on the CPU,
      in the dtype of ``params`` (what ``apply`` computes in).
    """
    import torch

    if not isinstance(model, StackedRNN):
        raise TypeError(
            f"to_torch: model must be a jaxrnn.StackedRNN, got {type(model).__name__}; for one "
            "cell, pass jaxrnn.StackedRNN(cell) and its params as ((params,),)."
        )
    spec = model.cell.spec
    if spec is None:
        raise ValueError("to_torch: model.cell must be a built-in jaxrnn cell, not a user's cell.")
    kwargs: dict[str, Any] = {}
    if spec.kind == "elman":
        nonlinearity = {id(jnp.tanh): "tanh", id(jax.nn.relu): "relu"}.get(id(spec.activation))
        if nonlinearity is None:
            raise ValueError(
                f"to_torch: nn.RNN supports activation jnp.tanh or jax.nn.relu only, got "
                f"{spec.activation!r}."
            )
        kwargs["nonlinearity"] = nonlinearity
    if spec.kind == "gru" and not spec.reset_after:
        raise ValueError(
            "to_torch: PyTorch's nn.GRU applies the reset gate after the matmul; a "
            "jaxrnn.gru(..., reset_after=False) cell has no PyTorch equivalent."
        )
    module_type = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[spec.kind]
    input_size = int(params[0][0].w_ih.shape[0])
    # The parameters' dtype, which apply computes in (a float32 cell's float64 params: float64).
    dtype = jnp.result_type(params[0][0].w_ih)
    torch_dtype = getattr(torch, jnp.dtype(dtype).name)  # float16, bfloat16, float32, ...
    module = module_type(
        input_size,
        spec.hidden_size,
        num_layers=model.num_layers,
        bias=spec.use_bias,
        bidirectional=model.bidirectional,
        dropout=model.dropout,
        dtype=torch_dtype,
        **kwargs,
    )
    state = {
        name: torch.from_numpy(
            np.asarray(array, dtype=np.float32 if torch_dtype == torch.bfloat16 else array.dtype)
        ).to(torch_dtype)
        for name, array in params_to_torch_state(model, params).items()
    }
    module.load_state_dict(state)
    return module
