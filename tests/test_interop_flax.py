"""Parity with flax linen's cells: one step, whole sequences with lengths, and gradients."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrnn
from jaxrnn.interop import carry_from_flax, carry_to_flax, from_flax, to_flax

# float32: 1e-5 of the larger of 1 and the reference's largest magnitude. A ReLU
# cell's values and gradients reach the hundreds, where 1e-5 is below one ulp
# (1.5e-5 at 128), and the two libraries' matmuls may round differently.
TOLERANCE = 1e-5
FLAX_CELLS = {
    "simple": lambda H: nn.SimpleCell(H),
    "simple-relu": lambda H: nn.SimpleCell(H, activation_fn=nn.relu),
    "lstm": lambda H: nn.LSTMCell(H),
    "optimized-lstm": lambda H: nn.OptimizedLSTMCell(H),
    "gru": lambda H: nn.GRUCell(H),
}
largest_errors: dict[str, float] = {}


def flax_setup(name, H, I, B, seed):
    flax_cell = FLAX_CELLS[name](H)
    key, noise_key, carry_key = jax.random.split(jax.random.key(seed), 3)
    carry = flax_cell.initialize_carry(key, (B, I))
    variables = flax_cell.init(key, carry, jnp.ones((B, I)))
    # flax starts biases at zero, which would hide a bias mapped to the wrong gate.
    leaves, treedef = jax.tree.flatten(variables)
    keys = jax.random.split(noise_key, len(leaves))
    noise = [
        0.5 * jax.random.normal(k, leaf.shape, jnp.float32)
        for leaf, k in zip(leaves, keys, strict=False)
    ]
    leaves = [leaf + n for leaf, n in zip(leaves, noise, strict=True)]
    variables = jax.tree.unflatten(treedef, leaves)
    carry = jax.tree.map(lambda c: jax.random.normal(carry_key, c.shape, jnp.float32), carry)
    return flax_cell, variables, carry


@st.composite
def problems(draw, names):
    return (
        draw(st.sampled_from(names)),
        draw(st.integers(1, 5)),  # T
        draw(st.integers(1, 3)),  # B
        draw(st.integers(1, 4)),  # I
        draw(st.integers(1, 5)),  # H
        draw(st.booleans()),  # with lengths
        draw(st.integers(0, 2**16)),
    )


def record(name, got, want):
    scale = max(1.0, float(jnp.max(jnp.abs(want))))
    error = float(jnp.max(jnp.abs(got - want))) / scale
    largest_errors[name] = max(largest_errors.get(name, 0.0), error)
    assert error <= TOLERANCE


@pytest.mark.parametrize("name", list(FLAX_CELLS))
@settings(max_examples=8)  # flax's nn.RNN compiles slowly; 8 draws per cell keep this quick
@given(data=st.data())
def test_sequences_and_gradients_equal_flax(name, data):
    _, T, B, I, H, with_lengths, seed = data.draw(problems((name,)))
    flax_cell, variables, flax_carry = flax_setup(name, H, I, B, seed)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.standard_normal((T, B, I)), jnp.float32)
    weights = jnp.asarray(rng.standard_normal((T, B, H)), jnp.float32)
    lengths = jnp.asarray(rng.integers(1, T + 1, B)) if with_lengths else None
    rnn = nn.RNN(flax_cell, time_major=True, return_carry=True)

    def flax_loss(variables, xs):
        wrapped = {"params": {"cell": variables["params"]}}  # nn.RNN names its cell "cell"
        carry, ys = rnn.apply(wrapped, xs, initial_carry=flax_carry, seq_lengths=lengths)
        if lengths is not None:  # flax leaves padded outputs as they are; jaxrnn zeroes them
            ys = jnp.where(jnp.arange(T)[:, None, None] < lengths[:, None], ys, 0.0)
        return jnp.sum(ys * weights) + sum(jnp.sum(c) for c in jax.tree.leaves(carry)), ys

    def jaxrnn_loss(variables, xs):
        cell, params = from_flax(flax_cell, variables)
        carry = carry_from_flax(cell, flax_carry)
        final, ys = jaxrnn.unroll(cell, params, xs, carry, seq_lengths=lengths)
        return jnp.sum(ys * weights) + sum(jnp.sum(c) for c in jax.tree.leaves(final)), ys

    grad = lambda f: jax.jit(jax.grad(f, argnums=(0, 1), has_aux=True))  # noqa: E731
    (want_dv, want_dx), want_ys = grad(flax_loss)(variables, xs)
    (got_dv, got_dx), got_ys = grad(jaxrnn_loss)(variables, xs)
    record(name, got_ys, want_ys)
    record(name, got_dx, want_dx)
    for got, want in zip(jax.tree.leaves(got_dv), jax.tree.leaves(want_dv), strict=True):
        record(name, got, want)


@pytest.mark.parametrize("name", list(FLAX_CELLS))
def test_one_step_and_round_trip(name):
    flax_cell, variables, flax_carry = flax_setup(name, 4, 3, 2, seed=0)
    x = jax.random.normal(jax.random.key(5), (2, 3), jnp.float32)
    want_carry, want_y = flax_cell.apply(variables, flax_carry, x)
    cell, params = from_flax(flax_cell, variables)
    carry, y = cell.step(params, carry_from_flax(cell, flax_carry), x)
    np.testing.assert_allclose(y, want_y, atol=1e-6)
    got_carry = carry_to_flax(cell, carry)
    for a, b in zip(jax.tree.leaves(got_carry), jax.tree.leaves(want_carry), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    back_cell, back_variables = to_flax(cell, params)
    _, back_y = back_cell.apply(back_variables, flax_carry, x)
    np.testing.assert_allclose(back_y, want_y, atol=1e-6)


@pytest.mark.parametrize(
    "cell", [jaxrnn.lstm(4), jaxrnn.gru(4), jaxrnn.elman(4)], ids=["lstm", "gru", "elman"]
)
def test_jaxrnn_cells_convert_to_flax(cell):
    params = cell.init(jax.random.key(0), 3)
    params = params._replace(b=params.b + 0.1 * jnp.arange(params.b.shape[0]))
    carry = jax.tree.map(lambda z: z + 0.3, cell.zero_carry((2,)))
    x = jax.random.normal(jax.random.key(1), (2, 3), jnp.float32)
    _, want = cell.step(params, carry, x)
    flax_cell, variables = to_flax(cell, params)
    _, got = flax_cell.apply(variables, carry_to_flax(cell, carry), x)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_report_the_largest_errors(capsys):
    """Prints the largest errors measured above (run with -s to see them)."""
    if largest_errors:
        with capsys.disabled():
            print("\nlargest |jaxrnn - flax| / max(1, |flax|) per cell:", largest_errors)


def test_conversion_errors_are_clear():
    with pytest.raises(TypeError, match=r"must be a flax.linen SimpleCell.*got Dense"):
        from_flax(nn.Dense(3), {})
    with pytest.raises(ValueError, match=r"residual=True\) has no jaxrnn equivalent"):
        from_flax(nn.SimpleCell(3, residual=True), {})
    with pytest.raises(ValueError, match=r"only the standard gate_fn=sigmoid"):
        from_flax(nn.LSTMCell(3, gate_fn=nn.hard_sigmoid), {})
    cell = jaxrnn.gru(4, reset_after=False)
    with pytest.raises(ValueError, match=r"reset_after=False\) cell has no flax equivalent"):
        to_flax(cell, cell.init(jax.random.key(0), 3))


def test_a_flax_cell_computing_in_another_dtype_converts_with_a_warning():
    """flax's ``dtype`` (computation) differs from ``param_dtype``: the jaxrnn cell computes
    in the parameters' dtype, and its outputs differ from flax's by more than float32's
    rounding, so the conversion says so."""
    flax_cell = nn.GRUCell(8, dtype=jnp.bfloat16)
    x = jax.random.normal(jax.random.key(1), (2, 3))
    variables = flax_cell.init(jax.random.key(0), jnp.zeros((2, 8)), x)
    with pytest.warns(UserWarning, match=r"computes in dtype=bfloat16.*compute_dtype=jnp.bfloat16"):
        cell, _ = from_flax(flax_cell, variables)
    assert cell.spec.dtype == jnp.float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_flax(nn.GRUCell(8, dtype=jnp.float32), variables)
        from_flax(nn.GRUCell(8), variables)
