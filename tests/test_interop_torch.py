"""Parity with PyTorch's nn.RNN/LSTM/GRU on CPU float32: outputs, final states and the gradients
with respect to the inputs and every parameter, in PyTorch's own layout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import jaxrnn
from jaxrnn.interop import from_torch, params_from_torch_state, to_torch

# float32: 1e-5 of the larger of 1 and the reference's largest magnitude (a ReLU
# RNN's gradients reach the hundreds, where 1e-5 is below one ulp).
TOLERANCE = 1e-5
MODULES = {
    "rnn-tanh": lambda *a, **k: torch.nn.RNN(*a, nonlinearity="tanh", **k),
    "rnn-relu": lambda *a, **k: torch.nn.RNN(*a, nonlinearity="relu", **k),
    "lstm": torch.nn.LSTM,
    "gru": torch.nn.GRU,
}
largest_errors: dict[str, float] = {}


def torch_run(module, x, lengths, out_weight, h_weight, c_weight):
    """PyTorch's forward and backward; packed when lengths are given, as its users write it."""
    module.zero_grad()
    x = torch.tensor(x, requires_grad=True)
    inputs = x
    if lengths is not None:
        inputs = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.tensor(lengths), enforce_sorted=False
        )
    out, state = module(inputs)
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
    h, c = state if isinstance(state, tuple) else (state, None)
    loss = (out * torch.tensor(out_weight)).sum() + (h * torch.tensor(h_weight)).sum()
    if c is not None:
        loss = loss + (c * torch.tensor(c_weight)).sum()
    loss.backward()
    grads = {name: p.grad.numpy() for name, p in module.named_parameters()}
    c = None if c is None else c.detach().numpy()
    return out.detach().numpy(), h.detach().numpy(), c, x.grad.numpy(), grads


def jax_run(model, state, x, lengths, out_weight, h_weight, c_weight):
    """The same loss through jaxrnn, differentiated with respect to PyTorch-layout arrays."""

    def loss_fn(state, x):
        params = params_from_torch_state(state, model)
        carry, ys = model.apply(params, x, seq_lengths=lengths)
        h, c = (carry.h, carry.c) if isinstance(carry, jaxrnn.LSTMCarry) else (carry, None)
        loss = jnp.sum(ys * out_weight) + jnp.sum(h * h_weight)
        if c is not None:
            loss = loss + jnp.sum(c * c_weight)
        return loss, (ys, h, c)

    (_, (ys, h, c)), (state_grads, x_grad) = jax.jit(
        jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
    )(state, x)
    return ys, h, c, x_grad, state_grads


@st.composite
def problems(draw, kinds=tuple(MODULES)):
    kind = draw(st.sampled_from(kinds))
    num_layers = draw(st.integers(1, 3))
    bidirectional = draw(st.booleans())
    bias = draw(st.booleans())
    T, B = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    I, H = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    packed = draw(st.booleans())
    lengths = draw(st.lists(st.integers(1, T), min_size=B, max_size=B)) if packed else None
    seed = draw(st.integers(0, 2**16))
    return kind, num_layers, bidirectional, bias, T, B, I, H, lengths, seed


def check_parity(problem):
    kind, num_layers, bidirectional, bias, T, B, I, H, lengths, seed = problem
    torch.manual_seed(seed)
    module = MODULES[kind](I, H, num_layers=num_layers, bidirectional=bidirectional, bias=bias)
    rng = np.random.default_rng(seed)
    D = 2 if bidirectional else 1
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    out_weight = rng.standard_normal((T, B, D * H)).astype(np.float32)
    h_weight = rng.standard_normal((num_layers * D, B, H)).astype(np.float32)
    c_weight = rng.standard_normal((num_layers * D, B, H)).astype(np.float32)

    want = torch_run(module, x, lengths, out_weight, h_weight, c_weight)
    model, _ = from_torch(module)
    state = {name: jnp.asarray(p.detach().numpy()) for name, p in module.named_parameters()}
    jax_lengths = None if lengths is None else np.asarray(lengths)
    got = jax_run(model, state, x, jax_lengths, out_weight, h_weight, c_weight)

    def error(g, w):  # relative to the larger of 1 and the reference's largest magnitude
        w = np.asarray(w)
        return float(np.max(np.abs(np.asarray(g) - w))) / max(1.0, float(np.max(np.abs(w))))

    errors = {}
    for name, g, w in zip(("output", "h_n", "c_n", "d_input"), got[:4], want[:4], strict=True):
        if w is not None:
            errors[name] = error(g, w)
    for name, w in want[4].items():
        errors[f"d_{name}"] = error(got[4][name], w)
    worst = max(errors, key=errors.get)
    largest_errors[kind] = max(largest_errors.get(kind, 0.0), errors[worst])
    assert errors[worst] <= TOLERANCE, (problem, worst, errors[worst])
    assert set(want[4]) == set(got[4])  # every parameter compared


@pytest.mark.parametrize("kind", list(MODULES))
@given(problem=st.data())
def test_outputs_states_and_gradients_equal_pytorch(kind, problem):
    check_parity(problem.draw(problems(kinds=(kind,))))


def test_report_the_largest_errors(capsys):
    """Prints the largest errors measured above (run with -s to see them)."""
    if largest_errors:
        with capsys.disabled():
            print("\nlargest |jaxrnn - PyTorch| / max(1, |PyTorch|) per module:", largest_errors)
    assert all(error <= TOLERANCE for error in largest_errors.values())


@pytest.mark.parametrize("kind", list(MODULES))
def test_to_torch_round_trip_computes_the_same_function(kind):
    module = MODULES[kind](3, 4, num_layers=2, bidirectional=True)
    model, params = from_torch(module)
    rebuilt = to_torch(model, params)
    x = torch.randn(5, 2, 3)
    want, _ = module(x)
    got, _ = rebuilt(x)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    # And from a jaxrnn model with its own initialisation, to PyTorch and back.
    cell = {"lstm": jaxrnn.lstm(4), "gru": jaxrnn.gru(4)}.get(kind, model.cell)
    own = jaxrnn.StackedRNN(cell, 2, bidirectional=True)
    own_params = own.init(jax.random.key(0), 3)
    _, ys = own.apply(own_params, jnp.asarray(x.numpy()))
    torch_ys, _ = to_torch(own, own_params)(x)
    np.testing.assert_allclose(ys, torch_ys.detach().numpy(), atol=1e-5)


def test_from_torch_keeps_float64():
    module = torch.nn.GRU(3, 4, dtype=torch.float64)
    model, params = from_torch(module)
    assert params[0][0].w_ih.dtype == jnp.float64
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    want, _ = module(x)
    _, got = model.apply(params, jnp.asarray(x.numpy()))
    np.testing.assert_allclose(got, want.detach().numpy(), atol=1e-12)


def test_to_torch_builds_the_module_in_the_dtype_of_the_parameters():
    # A float32 cell given float64 parameters computes in float64; so does its module.
    model = jaxrnn.StackedRNN(jaxrnn.lstm(4), num_layers=2)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.key(0), 3))
    module = to_torch(model, params)
    assert module.weight_hh_l1.dtype == torch.float64
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    _, want = model.apply(params, jnp.asarray(x))
    got, _ = module(torch.from_numpy(x))
    assert want.dtype == jnp.float64
    np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-12)


def test_dropout_between_layers_survives_both_ways():
    module = torch.nn.GRU(3, 4, num_layers=3, dropout=0.3)
    model, params = from_torch(module)
    assert model.dropout == 0.3 and model.num_layers == 3
    assert to_torch(model, params).dropout == 0.3


def test_a_batch_first_module_converts_with_a_warning_to_swap_axes():
    module = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True)
    with pytest.warns(UserWarning, match=r"batch_first=True, the jaxrnn model time-major"):
        model, params = from_torch(module)
    x = torch.randn(2, 5, 3)  # (batch, time, input)
    want, (h_n, _) = module(x)
    carry, ys = model.apply(params, jnp.swapaxes(jnp.asarray(x.numpy()), 0, 1))
    np.testing.assert_allclose(jnp.swapaxes(ys, 0, 1), want.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(carry.h, h_n.detach().numpy(), atol=1e-5)


def test_conversion_errors_are_clear():
    with pytest.raises(TypeError, match=r"module must be a torch.nn.RNN, LSTM or GRU, got Linear"):
        from_torch(torch.nn.Linear(2, 3))
    with pytest.raises(ValueError, match=r"proj_size=2 has no jaxrnn equivalent"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    model = jaxrnn.StackedRNN(jaxrnn.gru(4, reset_after=False))
    with pytest.raises(ValueError, match=r"reset_after=False\) cell has no PyTorch equivalent"):
        to_torch(model, model.init(jax.random.key(0), 3))
    model = jaxrnn.StackedRNN(jaxrnn.elman(4, activation=jax.nn.gelu))
    with pytest.raises(ValueError, match=r"nn.RNN supports activation jnp.tanh or jax.nn.relu"):
        to_torch(model, model.init(jax.random.key(0), 3))
