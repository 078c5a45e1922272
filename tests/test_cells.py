"""Each built-in cell against its equations in NumPy float64, under jit, vmap and grad."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import CASES, carry_leaves, make_params, max_abs, numpy_carry, random_carry, to_numpy
from jax.test_util import check_grads

import jaxrnn

BATCH_SHAPES = [(), (3,), (2, 3)]
H, I = 5, 4


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_step_matches_numpy_equations_float64(case, batch_shape):
    cell, params = make_params(case, H, I, jnp.float64)
    carry = random_carry(case, cell, batch_shape, jnp.float64)
    x = jax.random.normal(jax.random.key(3), (*batch_shape, I), jnp.float64)

    new_carry, y = cell.step(params, carry, x)
    want_carry, want_y = case.numpy_step(to_numpy(params), numpy_carry(case, carry), np.asarray(x))

    assert y.shape == (*batch_shape, H)
    assert max_abs(y, want_y) < 1e-12
    got = carry_leaves(case, new_carry)
    want = list(want_carry) if isinstance(want_carry, tuple) else [want_carry]
    for g, w in zip(got, want, strict=True):
        assert g.shape == (*batch_shape, H)
        assert max_abs(g, w) < 1e-12


@pytest.mark.parametrize("case", CASES, ids=str)
def test_step_float32_is_close_to_float64_equations(case):
    cell, params = make_params(case, H, I, jnp.float32)
    carry = random_carry(case, cell, (3,), jnp.float32)
    x = jax.random.normal(jax.random.key(3), (3, I), jnp.float32)
    new_carry, y = cell.step(params, carry, x)
    _, want_y = case.numpy_step(to_numpy(params), numpy_carry(case, carry), np.asarray(x))
    assert y.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(new_carry))
    assert max_abs(y, want_y) < 1e-6


@pytest.mark.parametrize("case", CASES, ids=str)
def test_step_under_jit_equals_eager(case):
    cell, params = make_params(case, H, I, jnp.float32)
    carry = random_carry(case, cell, (3,), jnp.float32)
    x = jax.random.normal(jax.random.key(3), (3, I), jnp.float32)
    eager = cell.step(params, carry, x)
    jitted = jax.jit(cell.step)(params, carry, x)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_vmap_over_batch_and_over_parameters(case):
    cell, params = make_params(case, H, I, jnp.float64)
    carry = random_carry(case, cell, (3,), jnp.float64)
    x = jax.random.normal(jax.random.key(3), (3, I), jnp.float64)

    batched = cell.step(params, carry, x)
    mapped = jax.vmap(cell.step, in_axes=(None, 0, 0))(params, carry, x)
    for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(mapped), strict=True):
        assert max_abs(a, b) < 1e-12

    # An ensemble: two parameter sets mapped over, each equal to its own run.
    _, other = make_params(case, H, I, jnp.float64, seed=7)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, other)
    _, ys = jax.vmap(cell.step, in_axes=(0, None, None))(stacked, carry, x)
    assert max_abs(ys[1], cell.step(other, carry, x)[1]) < 1e-12


@pytest.mark.parametrize("case", CASES, ids=str)
def test_gradients_of_unroll_order_two_float64(case):
    cell, params = make_params(case, 3, 2, jnp.float64)
    xs = jax.random.normal(jax.random.key(4), (4, 2, 2), jnp.float64)
    carry = random_carry(case, cell, (2,), jnp.float64)

    def loss(params, xs, carry):
        final, ys = jaxrnn.unroll(cell, params, xs, carry, seq_lengths=jnp.array([4, 2]))
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(final))

    # jit once: check_grads then reuses the compiled derivatives across its many calls.
    check_grads(jax.jit(loss), (params, xs, carry), order=2, modes=("rev",), eps=1e-4)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_zero_carry_shapes_and_dtype(case):
    cell = case.make(6, dtype=jnp.float64)
    for batch_shape in BATCH_SHAPES:
        carry = cell.zero_carry(batch_shape)
        for leaf in jax.tree.leaves(carry):
            assert leaf.shape == (*batch_shape, 6)
            assert leaf.dtype == jnp.float64
            assert not leaf.any()
    if case.is_lstm:
        assert isinstance(cell.zero_carry(()), jaxrnn.LSTMCarry)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_parameter_layout(case):
    cell = case.make(H)
    params = cell.init(jax.random.key(0), I)
    gates = cell.spec.num_gates
    assert params.w_ih.shape == (I, gates * H)
    assert params.w_hh.shape == (H, gates * H)
    if cell.spec.use_bias:
        assert params.b.shape == (gates * H,)
    else:
        assert params.b is None
    if cell.spec.kind == "gru":
        has_b_hn = cell.spec.use_bias and cell.spec.reset_after
        assert (params.b_hn is not None) == has_b_hn
        if has_b_hn:
            assert params.b_hn.shape == (H,)


# --------------------------------------------------------------------------- initialisation


@pytest.mark.parametrize("make", [jaxrnn.elman, jaxrnn.lstm, jaxrnn.gru])
def test_pytorch_init_is_uniform_within_one_over_sqrt_hidden(make):
    hidden = 64
    kwargs = {"forget_bias": 0.0} if make is jaxrnn.lstm else {}
    params = make(hidden, init="pytorch", **kwargs).init(jax.random.key(0), 32)
    bound = 1 / np.sqrt(hidden)
    for w in (params.w_ih, params.w_hh):
        assert float(jnp.abs(w).max()) <= bound
        # U(-a, a) has standard deviation a/sqrt(3): a wrong scale would miss by far.
        assert abs(float(w.std()) - bound / np.sqrt(3)) < 0.05 * bound
    # PyTorch's b_ih + b_hh fused: the sum of two independent uniforms, but for the
    # GRU's n block, b_ih_n alone, beside b_hn = b_hh_n.
    summed = params.b[: 2 * hidden] if make is jaxrnn.gru else params.b
    assert float(jnp.abs(summed).max()) <= 2 * bound
    assert abs(float(summed.std()) - bound * np.sqrt(2 / 3)) < 0.15 * bound
    if make is jaxrnn.gru:
        for single in (params.b[2 * hidden :], params.b_hn):
            assert float(jnp.abs(single).max()) <= bound
            assert abs(float(single.std()) - bound / np.sqrt(3)) < 0.15 * bound


@pytest.mark.parametrize("make,gates", [(jaxrnn.elman, 1), (jaxrnn.lstm, 4), (jaxrnn.gru, 3)])
def test_orthogonal_init_gives_orthogonal_gate_blocks_and_glorot_inputs(make, gates):
    hidden, inputs = 16, 24
    params = make(hidden, init="orthogonal").init(jax.random.key(1), inputs)
    for g in range(gates):
        block = np.asarray(params.w_hh[:, g * hidden : (g + 1) * hidden], np.float64)
        np.testing.assert_allclose(block.T @ block, np.eye(hidden), atol=1e-5)
    limit = np.sqrt(6 / (inputs + hidden))
    assert float(jnp.abs(params.w_ih).max()) <= limit
    assert float(jnp.abs(params.w_ih).max()) > 0.8 * limit


def test_lstm_forget_bias_is_added_to_the_forget_gate_only():
    hidden = 8
    params = jaxrnn.lstm(hidden, forget_bias=1.5).init(jax.random.key(0), 3)
    b = np.asarray(params.b)
    np.testing.assert_array_equal(b[hidden : 2 * hidden], 1.5)
    np.testing.assert_array_equal(np.delete(b, np.s_[hidden : 2 * hidden]), 0.0)


def test_identity_init_is_the_irnn():
    params = jaxrnn.elman(10, activation=jax.nn.relu, init="identity").init(jax.random.key(0), 3)
    np.testing.assert_array_equal(params.w_hh, np.eye(10))
    np.testing.assert_array_equal(params.b, 0.0)
    assert float(jnp.abs(params.w_ih).max()) < 0.01
    with pytest.raises(ValueError, match="init must be one of"):
        jaxrnn.lstm(4, init="identity")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_dtype_of_parameters_carry_and_outputs(case, dtype):
    cell = case.make(4, dtype=dtype)
    params = cell.init(jax.random.key(0), 3)
    assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(params))
    xs = jnp.ones((5, 2, 3), dtype)
    carry, ys = jaxrnn.unroll(cell, params, xs)
    assert ys.dtype == dtype
    assert all(leaf.dtype == dtype for leaf in jax.tree.leaves(carry))
    assert bool(jnp.isfinite(ys.astype(jnp.float32)).all())


def test_scan_runs_a_cell_with_no_lambda():
    cell = jaxrnn.lstm(4)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (6, 2, 3))
    _carry, ys = jax.lax.scan(functools.partial(cell.step, params), cell.zero_carry((2,)), xs)
    _carry2, ys2 = jaxrnn.unroll(cell, params, xs)
    np.testing.assert_allclose(ys, ys2, atol=1e-6)


# --------------------------------------------------------------------------- bad input


def test_step_rejects_wrong_input_size_with_a_clear_message():
    cell = jaxrnn.gru(4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"input_size=3 .*w_ih is \(3, 12\).*cell.init\(key, 5\)"):
        cell.step(params, cell.zero_carry((2,)), jnp.ones((2, 5)))


def test_step_rejects_integer_inputs():
    cell = jaxrnn.elman(4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(TypeError, match=r"x must be a floating-point array, got dtype int"):
        cell.step(params, cell.zero_carry(()), jnp.ones(3, jnp.int32))


def test_step_rejects_a_bare_tuple_carry_for_the_lstm():
    cell = jaxrnn.lstm(4)
    params = cell.init(jax.random.key(0), 3)
    h = jnp.zeros((2, 4))
    with pytest.raises(TypeError, match=r"LSTMCarry\(h=\.\.\., c=\.\.\.\) \(never a bare tuple\)"):
        jax.jit(cell.step)(params, (h, h), jnp.ones((2, 3)))


def test_step_rejects_a_carry_of_the_wrong_shape():
    cell = jaxrnn.gru(4)
    params = cell.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"carry has a leaf of shape \(2, 5\), expected \(2, 4\)"):
        cell.step(params, jnp.zeros((2, 5)), jnp.ones((2, 3)))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"hidden_size": 0}, ValueError, "hidden_size must be a positive int, got 0"),
        ({"hidden_size": 2.5}, TypeError, "hidden_size must be a positive int, got 2.5"),
        ({"hidden_size": 4, "init": "xavier"}, ValueError, "init must be one of"),
        ({"hidden_size": 4, "activation": "tanh"}, TypeError, "activation must be a callable"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxrnn.elman(**kwargs)


def test_init_rejects_a_bad_input_size():
    with pytest.raises(ValueError, match="input_size must be a positive int, got 0"):
        jaxrnn.lstm(4).init(jax.random.key(0), 0)
