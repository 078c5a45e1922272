"""``unroll`` against a plain Python loop; ``StackedRNN`` against the layers composed by hand."""

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from cases import CASES, make_params, max_abs, numpy_carry, random_carry, to_numpy

import jaxrnn
from jaxrnn.recurrent import _quiet_single_layer_dropout

T, B, I, H = 6, 3, 4, 5
LENGTHS = np.array([6, 1, 4])


def python_loop(cell, params, xs, carry, seq_lengths=None, reverse=False):
    """The loop of ``unroll``'s docstring, step by step in Python over ``cell.step``."""
    ys = [None] * xs.shape[0]
    for t in reversed(range(xs.shape[0])) if reverse else range(xs.shape[0]):
        new_carry, y = cell.step(params, carry, xs[t])
        if seq_lengths is None:
            carry, ys[t] = new_carry, y
            continue
        valid = (t < seq_lengths)[:, None]
        carry = jax.tree.map(lambda n, o, valid=valid: jnp.where(valid, n, o), new_carry, carry)
        ys[t] = jnp.where(valid, y, 0.0)
    return carry, jnp.stack(ys)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_unroll_equals_python_loop_and_numpy_equations(case, lengths, reverse):
    cell, params = make_params(case, H, I, jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (T, B, I), jnp.float64)
    carry = random_carry(case, cell, (B,), jnp.float64)

    final, ys = jaxrnn.unroll(cell, params, xs, carry, seq_lengths=lengths, reverse=reverse)
    loop_final, loop_ys = python_loop(cell, params, xs, carry, lengths, reverse)
    assert ys.shape == (T, B, H)
    assert max_abs(ys, loop_ys) < 1e-12
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(loop_final), strict=True):
        assert max_abs(a, b) < 1e-12

    step = functools.partial(case.numpy_step, to_numpy(params))
    np_final, np_ys = ref.run(step, np.asarray(xs), numpy_carry(case, carry), lengths, reverse)
    assert max_abs(ys, np_ys) < 1e-12
    np_leaves = list(np_final) if isinstance(np_final, tuple) else [np_final]
    for a, b in zip(jax.tree.leaves(final), np_leaves, strict=True):
        assert max_abs(a, b) < 1e-12


def test_lengths_semantics_final_carry_is_each_sequences_own_last_step():
    cell, params = make_params(CASES[3], H, I, jnp.float64)  # lstm
    xs = jax.random.normal(jax.random.key(1), (T, B, I), jnp.float64)
    final, ys = jaxrnn.unroll(cell, params, xs, seq_lengths=LENGTHS)
    for b, length in enumerate(LENGTHS):
        alone, alone_ys = jaxrnn.unroll(cell, params, xs[:length, b])
        assert max_abs(final.h[b], alone.h) < 1e-12
        assert max_abs(ys[:length, b], alone_ys) < 1e-12
        assert not np.asarray(ys[length:, b]).any()  # padded outputs are zero
        # Backwards, a sequence starts at its own last valid step, not at the padding.
        back, back_ys = jaxrnn.unroll(cell, params, xs, seq_lengths=LENGTHS, reverse=True)
        alone_back, alone_back_ys = jaxrnn.unroll(cell, params, xs[:length, b], reverse=True)
        assert max_abs(back.c[b], alone_back.c) < 1e-12
        assert max_abs(back_ys[:length, b], alone_back_ys) < 1e-12


def test_zero_length_sequence_keeps_the_initial_carry():
    cell, params = make_params(CASES[5], H, I, jnp.float64)  # gru
    xs = jax.random.normal(jax.random.key(1), (T, 2, I), jnp.float64)
    carry = random_carry(CASES[5], cell, (2,), jnp.float64)
    final, ys = jaxrnn.unroll(cell, params, xs, carry, seq_lengths=np.array([0, 3]))
    assert max_abs(final[0], carry[0]) == 0.0
    assert not np.asarray(ys[:, 0]).any()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16])
@pytest.mark.parametrize("fused", [True, False])
def test_lengths_of_small_integer_dtypes_count_steps_beyond_their_range(dtype, fused):
    """Steps are counted in 32 bits whatever the lengths' dtype: with 8-bit lengths a
    sequence of 300 steps would see step 266 as step 10."""
    cell = jaxrnn.elman(3)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (300, 2, 2))
    lengths = np.array([10, 100])
    run = functools.partial(jaxrnn.unroll, cell, params, xs, fused=fused)
    final, ys = run(seq_lengths=lengths.astype(dtype))
    expected_final, expected_ys = run(seq_lengths=lengths.astype(np.int32))
    np.testing.assert_array_equal(ys, expected_ys)
    np.testing.assert_array_equal(final, expected_final)
    assert not np.any(ys[10:, 0]) and np.all(np.any(ys[:10, 0], axis=-1))


def test_the_zero_carry_takes_the_dtype_of_the_parameters():
    """A float32 cell given float64 parameters runs in float64 from its zero carry, as
    the same cell built in float64 does (not rounded to the cell's dtype); float32
    parameters give float32 outputs whatever the inputs' dtype."""
    cell, cell64 = jaxrnn.lstm(4), jaxrnn.lstm(4, dtype=jnp.float64)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 3))
    xs = jax.random.normal(jax.random.key(1), (6, 2, 3), jnp.float64)
    final, ys = jaxrnn.unroll(cell, params, xs)
    expected_final, expected_ys = jaxrnn.unroll(cell64, params, xs)
    assert ys.dtype == final.h.dtype == final.c.dtype == jnp.float64
    np.testing.assert_array_equal(ys, expected_ys)
    np.testing.assert_array_equal(final.c, expected_final.c)
    params32 = cell.init(jax.random.key(0), 3)
    assert jaxrnn.unroll(cell, params32, xs)[1].dtype == jnp.float32


def test_a_stacks_zero_carry_takes_the_dtype_of_the_parameters_too():
    """``StackedRNN.apply`` without a carry runs float64 parameters in float64, as
    ``unroll`` does: its zeros in the cell's float32 rounded every layer's outputs
    and carries to float32 (and left the fused path, for mixed dtypes)."""
    model, model64 = (
        jaxrnn.StackedRNN(jaxrnn.lstm(4, dtype=dtype), 2, bidirectional=True)
        for dtype in (jnp.float32, jnp.float64)
    )
    params = jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.key(0), 3))
    xs = jax.random.normal(jax.random.key(1), (6, 2, 3), jnp.float64)
    final, ys = model.apply(params, xs, seq_lengths=np.array([6, 2]))
    expected_final, expected_ys = model64.apply(params, xs, seq_lengths=np.array([6, 2]))
    assert ys.dtype == final.h.dtype == final.c.dtype == jnp.float64
    np.testing.assert_array_equal(ys, expected_ys)
    np.testing.assert_array_equal(final.c, expected_final.c)


@pytest.mark.parametrize("batch_shape", [(), (2, 3)], ids=str)
def test_any_number_of_batch_dimensions(batch_shape):
    cell, params = make_params(CASES[3], H, I, jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (T, *batch_shape, I), jnp.float64)
    lengths = np.full(batch_shape, 4) if batch_shape else None
    _final, ys = jaxrnn.unroll(cell, params, xs, seq_lengths=lengths)
    assert ys.shape == (T, *batch_shape, H)
    flat_xs = xs.reshape(T, -1, I)
    flat_lengths = None if lengths is None else lengths.reshape(-1)
    _, flat_ys = jaxrnn.unroll(cell, params, flat_xs, seq_lengths=flat_lengths)
    assert max_abs(ys.reshape(T, -1, H), flat_ys) < 1e-12


def test_unroll_option_jit_and_traced_lengths_give_the_same_result():
    cell, params = make_params(CASES[5], H, I, jnp.float32)
    xs = jax.random.normal(jax.random.key(1), (T, B, I), jnp.float32)
    _, ys = jaxrnn.unroll(cell, params, xs, seq_lengths=LENGTHS)
    _, ys_unrolled = jaxrnn.unroll(cell, params, xs, seq_lengths=LENGTHS, unroll=4)
    jitted = jax.jit(lambda p, x, n: jaxrnn.unroll(cell, p, x, seq_lengths=n)[1])
    np.testing.assert_allclose(ys, ys_unrolled, atol=1e-6)
    np.testing.assert_allclose(ys, jitted(params, xs, jnp.asarray(LENGTHS)), atol=1e-6)


class CountCarry(NamedTuple):
    h: jax.Array
    steps: jax.Array  # (*batch,): a leaf with fewer axes than h


def counting_cell(hidden_size):
    """A cell written by a user: no spec, no fast path, a carry of mixed ranks."""

    def init(key, input_size):
        return {"w": jax.random.normal(key, (input_size, hidden_size))}

    def step(params, carry, x):
        h = jnp.tanh(x @ params["w"] + carry.h)
        return CountCarry(h, carry.steps + 1), h

    def zero_carry(batch_shape=()):
        return CountCarry(jnp.zeros((*batch_shape, hidden_size)), jnp.zeros(batch_shape))

    return jaxrnn.Cell(init, step, zero_carry)


def test_a_users_cell_runs_through_unroll_and_stacks():
    cell = counting_cell(3)
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (T, B, I))
    final, ys = jaxrnn.unroll(cell, params, xs, seq_lengths=LENGTHS, reverse=True)
    np.testing.assert_array_equal(final.steps, LENGTHS)
    _loop_final, loop_ys = python_loop(cell, params, xs, cell.zero_carry((B,)), LENGTHS, True)
    np.testing.assert_allclose(ys, loop_ys, atol=1e-6)

    model = jaxrnn.StackedRNN(cell, num_layers=2, bidirectional=True)
    stack_params = model.init(jax.random.key(2), I)
    assert stack_params[1][0]["w"].shape == (6, 3)  # layer 1 reads both directions
    carry, ys = model.apply(stack_params, xs, seq_lengths=LENGTHS)
    assert ys.shape == (T, B, 6)
    assert carry.steps.shape == (4, B)


# --------------------------------------------------------------------------- StackedRNN


def numpy_stack(case, layer_params, xs, lengths, bidirectional):
    """Layers composed by hand in NumPy: each reads the previous layer's concatenated outputs."""
    finals, layer_input = [], np.asarray(xs)
    for directions in layer_params:
        outputs = []
        for direction, p in enumerate(directions):
            step = functools.partial(case.numpy_step, to_numpy(p))
            zeros = np.zeros((*layer_input.shape[1:-1], H))
            carry = (zeros, zeros) if case.is_lstm else zeros
            final, ys = ref.run(step, layer_input, carry, lengths, reverse=direction == 1)
            finals.append(final)
            outputs.append(ys)
        layer_input = np.concatenate(outputs, axis=-1)
    return finals, layer_input


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("case", [CASES[0], CASES[3], CASES[5]], ids=str)
def test_stack_equals_layers_composed_by_hand(case, bidirectional):
    model = jaxrnn.StackedRNN(case.make(H, dtype=jnp.float64), 3, bidirectional)
    params = model.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (T, B, I), jnp.float64)
    carry, ys = model.apply(params, xs, seq_lengths=LENGTHS)
    finals, want_ys = numpy_stack(case, params, xs, LENGTHS, bidirectional)
    D = 2 if bidirectional else 1
    assert ys.shape == (T, B, D * H)
    assert max_abs(ys, want_ys) < 1e-12
    # Carries are stacked as PyTorch's h_n: index layer * D + direction.
    h = carry.h if case.is_lstm else carry
    assert h.shape == (3 * D, B, H)
    for index, final in enumerate(finals):
        assert max_abs(h[index], final[0] if case.is_lstm else final) < 1e-12


def test_stack_initial_carry_is_used_per_layer_and_direction():
    model = jaxrnn.StackedRNN(jaxrnn.gru(H, dtype=jnp.float64), 2, bidirectional=True)
    params = model.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (T, B, I), jnp.float64)
    carry = jax.random.normal(jax.random.key(2), (4, B, H), jnp.float64)
    _, ys = model.apply(params, xs, carry)
    _, first_forward = jaxrnn.unroll(model.cell, params[0][0], xs, carry[0])
    _, first_backward = jaxrnn.unroll(model.cell, params[0][1], xs, carry[1], reverse=True)
    layer_1_input = jnp.concatenate([first_forward, first_backward], axis=-1)
    _, second_backward = jaxrnn.unroll(
        model.cell, params[1][1], layer_1_input, carry[3], reverse=True
    )
    assert max_abs(ys[..., H:], second_backward) < 1e-12


def passthrough_stack(dropout):
    """Two linear layers, the second an identity, so ys is the first layer's dropped outputs."""
    cell = jaxrnn.elman(8, activation=lambda a: a, use_bias=False, dtype=jnp.float64)
    model = jaxrnn.StackedRNN(cell, num_layers=2, dropout=dropout)
    params = model.init(jax.random.key(0), 8)
    identity = jaxrnn.ElmanParams(jnp.eye(8), jnp.zeros((8, 8)), None)
    return model, (params[0], (identity,))


def test_dropout_is_inverted_between_layers_and_off_without_a_key():
    model, params = passthrough_stack(dropout=0.25)
    xs = jax.random.normal(jax.random.key(1), (200, 16, 8), jnp.float64)
    _, clean = model.apply(params, xs)
    _, first_layer = jaxrnn.unroll(model.cell, params[0][0], xs)
    assert max_abs(clean, first_layer) < 1e-12  # no key: no dropout

    _, dropped = model.apply(params, xs, key=jax.random.key(3))
    kept = np.asarray(dropped) != 0
    assert abs(1 - kept.mean() - 0.25) < 0.01
    np.testing.assert_allclose(np.asarray(dropped)[kept], np.asarray(first_layer)[kept] / 0.75)
    _, again = model.apply(params, xs, key=jax.random.key(3))
    assert max_abs(dropped, again) == 0.0  # the key alone decides
    _, other = model.apply(params, xs, key=jax.random.key(4))
    assert max_abs(dropped, other) > 0.0


def test_each_layer_draws_its_own_dropout_mask():
    # Three identity layers: ys is the input dropped twice, by two independent masks.
    cell = jaxrnn.elman(8, activation=lambda a: a, use_bias=False, dtype=jnp.float64)
    model = jaxrnn.StackedRNN(cell, num_layers=3, dropout=0.5)
    identity = (jaxrnn.ElmanParams(jnp.eye(8), jnp.zeros((8, 8)), None),)
    xs = 1.0 + jax.random.uniform(jax.random.key(1), (200, 16, 8), jnp.float64)
    _, ys = model.apply((identity,) * 3, xs, key=jax.random.key(2))
    kept = np.asarray(ys) != 0
    assert abs(kept.mean() - 0.25) < 0.01  # (1 − p)², not 1 − p: the masks differ
    np.testing.assert_allclose(np.asarray(ys)[kept], np.asarray(xs)[kept] / 0.25)


def test_dropout_over_one_layer_warns_as_pytorch_does():
    with pytest.warns(UserWarning, match=r"dropout=0.5 acts between layers .* changes nothing"):
        model = jaxrnn.StackedRNN(jaxrnn.gru(4), num_layers=1, dropout=0.5)
    params = model.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (5, 2, 3))
    _, plain = model.apply(params, xs)
    _, keyed = model.apply(params, xs, key=jax.random.key(2))
    assert max_abs(plain, keyed) == 0.0  # what the warning says
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jaxrnn.StackedRNN(jaxrnn.gru(4), num_layers=2, dropout=0.5)  # between layers: no warning
        with _quiet_single_layer_dropout():
            jaxrnn.StackedRNN(jaxrnn.gru(4), num_layers=1, dropout=0.5)


def test_stack_under_jit_and_grad():
    model = jaxrnn.StackedRNN(jaxrnn.lstm(H), 2, bidirectional=True, dropout=0.1)
    params = model.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (T, B, I))

    @jax.jit
    def loss(params, xs, key):
        _, ys = model.apply(params, xs, seq_lengths=jnp.asarray(LENGTHS), key=key)
        return jnp.mean(ys**2)

    grads = jax.grad(loss)(params, xs, jax.random.key(2))
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))
