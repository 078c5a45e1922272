"""Fuzzing ``unroll`` and ``StackedRNN``: every draw either computes what the plain NumPy
reference computes, or raises a ValueError/TypeError naming the argument at fault — never an
error from deep inside XLA, never a silently wrong shape."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from cases import CASES, make_params, numpy_carry, to_numpy
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxrnn

DTYPES = {
    "float32": jnp.float32,
    "float64": jnp.float64,
    "bfloat16": jnp.bfloat16,
    "float16": jnp.float16,
    "int32": jnp.int32,
}


FAULTS = {  # the one thing wrong with a draw, the error it must raise and the argument named
    "int-dtype": (TypeError, "xs must be a floating-point array"),
    "zero-time": (ValueError, "xs has shape .*zero-length"),
    "feature": (ValueError, "input_size="),
    "carry-batch": (ValueError, "carry has a leaf of shape"),
    "carry-hidden": (ValueError, "carry has a leaf of shape"),
    "carry-bare": (TypeError, "carry must have the structure"),
    "lengths-shape": (ValueError, "seq_lengths has shape"),
    "lengths-float": (TypeError, "seq_lengths must be an integer array"),
    "lengths-range": (ValueError, r"seq_lengths must lie in \[0, time="),
}


@st.composite
def unroll_calls(draw):
    """A call to unroll with at most one fault (about half the draws have none)."""
    fault = draw(st.sampled_from([None] * 9 + list(FAULTS)))
    case = draw(st.sampled_from(CASES))
    hidden, input_size = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    time = 0 if fault == "zero-time" else draw(st.integers(1, 4))
    batch_shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    if fault == "lengths-range" and not batch_shape:
        batch_shape = (2,)
    dtype = "int32" if fault == "int-dtype" else draw(st.sampled_from(list(DTYPES)[:4]))
    with_carry = (fault or "").startswith("carry") or draw(st.booleans())
    with_lengths = (fault or "").startswith("lengths") or draw(st.booleans())
    size = int(np.prod(batch_shape))
    lengths = draw(st.lists(st.integers(0, time), min_size=size, max_size=size))
    if fault == "lengths-range":
        lengths[draw(st.integers(0, size - 1))] = draw(st.sampled_from([-1, time + 1]))
    reverse = draw(st.booleans())
    return (
        fault,
        case,
        hidden,
        input_size,
        time,
        batch_shape,
        dtype,
        with_carry,
        with_lengths,
        (
            lengths,
            reverse,
        ),
    )


@settings(max_examples=60)
@given(unroll_calls())
def test_unroll_computes_the_reference_or_rejects_clearly(call):
    fault, case, hidden, input_size, time, batch_shape, dtype, with_carry, with_lengths, rest = call
    lengths, reverse = rest
    cell, params = make_params(case, hidden, input_size, jnp.float32)
    rng = np.random.default_rng(0)
    feature = input_size + 1 if fault == "feature" else input_size
    xs = jnp.asarray(rng.standard_normal((time, *batch_shape, feature)) * 3, DTYPES[dtype])

    carry = cell.zero_carry(batch_shape) if with_carry else None
    if fault == "carry-batch":
        carry = cell.zero_carry((*batch_shape, 2))
    elif fault == "carry-hidden":
        carry = jax.tree.map(lambda z: jnp.zeros((*z.shape[:-1], hidden + 1)), carry)
    elif fault == "carry-bare":
        carry = (*jax.tree.leaves(carry), jnp.zeros(()))

    seq_lengths = np.asarray(lengths, np.int32).reshape(batch_shape) if with_lengths else None
    if fault == "lengths-shape":
        seq_lengths = np.asarray([*lengths, 1], np.int32)
    elif fault == "lengths-float":
        seq_lengths = seq_lengths.astype(np.float32)

    run = functools.partial(
        jaxrnn.unroll, cell, params, xs, carry, seq_lengths=seq_lengths, reverse=reverse
    )
    if fault is not None:
        error, message = FAULTS[fault]
        with pytest.raises(error, match=message):
            run()
        return

    final, ys = run()
    assert ys.shape == (time, *batch_shape, hidden)
    assert ys.dtype == jnp.float32
    start = numpy_carry(case, cell.zero_carry(batch_shape) if carry is None else carry)
    step = functools.partial(case.numpy_step, to_numpy(params))
    want_final, want_ys = ref.run(
        step, np.asarray(xs, np.float64), start, seq_lengths, reverse=reverse
    )
    np.testing.assert_allclose(np.asarray(ys, np.float64), want_ys, atol=2e-5, rtol=1e-4)
    got_leaves = jax.tree.leaves(final)
    want_leaves = list(want_final) if isinstance(want_final, tuple) else [want_final]
    for got, want in zip(got_leaves, want_leaves, strict=True):
        assert got.shape == (*batch_shape, hidden)
        np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=2e-5, rtol=1e-4)


@settings(max_examples=25)
@given(
    case=st.sampled_from([CASES[0], CASES[3], CASES[5]]),
    num_layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    batch_shape=st.lists(st.integers(1, 3), max_size=2).map(tuple),
    time=st.integers(1, 4),
    carry_leading=st.sampled_from(["right", "missing-axis"]),
)
def test_stack_shapes_or_clear_errors(
    case, num_layers, bidirectional, batch_shape, time, carry_leading
):
    model = jaxrnn.StackedRNN(case.make(3), num_layers, bidirectional)
    params = model.init(jax.random.key(0), 2)
    xs = jnp.ones((time, *batch_shape, 2), jnp.float32)
    D = 2 if bidirectional else 1
    carry = model.zero_carry(batch_shape)
    if carry_leading == "missing-axis":
        carry = model.cell.zero_carry(batch_shape)
        with pytest.raises(ValueError, match="carry"):
            model.apply(params, xs, carry)
        return
    final, ys = model.apply(params, xs, carry)
    assert ys.shape == (time, *batch_shape, D * 3)
    assert all(leaf.shape == (num_layers * D, *batch_shape, 3) for leaf in jax.tree.leaves(final))
