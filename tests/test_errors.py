"""Bad input fails at trace time with a message that names the argument, what was expected,
what arrived and the fix: eagerly and under jit alike."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

T, B, I, H = 7, 3, 4, 5
CELL = jaxrnn.lstm(H)
PARAMS = CELL.init(jax.random.key(0), I)
XS = jnp.ones((T, B, I))
MODEL = jaxrnn.StackedRNN(jaxrnn.gru(H), num_layers=2, bidirectional=True)
MODEL_PARAMS = MODEL.init(jax.random.key(0), I)


def both_ways(fn, cell, *args, **kwargs):
    """Yields the call eagerly and under jit: errors must come from tracing, not from XLA."""
    yield functools.partial(fn, cell, *args, **kwargs)
    yield functools.partial(jax.jit(functools.partial(fn, cell, **kwargs)), *args)


BAD_CALLS = [
    pytest.param(
        (CELL, PARAMS, jnp.ones((T, B, I + 2))),
        {},
        ValueError,
        r"xs has shape \(7, 3, 6\).*expect input_size=4 \(w_ih is \(4, 20\)\).*cell.init\(key, 6\)",
        id="wrong-input-size",
    ),
    pytest.param(
        (CELL, PARAMS, jnp.ones((B, T, I))),
        {"seq_lengths": jnp.array([7, 2, 3])},
        ValueError,
        r"seq_lengths has shape \(3,\) but xs of shape \(3, 7, 4\).*batch shape \(7,\).*"
        r"batch-major\? jaxrnn is time-major.*jnp.swapaxes\(xs, 0, 1\), of shape \(7, 3, 4\)",
        id="batch-major-xs-with-lengths",
    ),
    pytest.param(
        (CELL, PARAMS, jnp.ones((B, T, I)), CELL.zero_carry((B,))),
        {},
        ValueError,
        r"carry has a leaf of shape \(3, 5\), expected \(7, 5\).*batch-major\?.*jnp.swapaxes",
        id="batch-major-xs-with-carry",
    ),
    pytest.param(
        (CELL, PARAMS, XS),
        {"seq_lengths": jnp.array([7, 2])},
        ValueError,
        r"seq_lengths has shape \(2,\) but xs of shape \(7, 3, 4\).*batch shape \(3,\)",
        id="lengths-wrong-shape",
    ),
    pytest.param(
        (CELL, PARAMS, XS),
        {"seq_lengths": jnp.array([7.0, 2.0, 1.0])},
        TypeError,
        r"seq_lengths must be an integer array of shape batch=\(3,\), got dtype float",
        id="lengths-float",
    ),
    pytest.param(
        (CELL, PARAMS, XS, (jnp.zeros((B, H)), jnp.zeros((B, H)))),
        {},
        TypeError,
        r"carry must have the structure .*LSTMCarry.*never a bare tuple",
        id="carry-bare-tuple",
    ),
    pytest.param(
        (CELL, PARAMS, XS, jaxrnn.LSTMCarry(jnp.zeros((B, H + 1)), jnp.zeros((B, H + 1)))),
        {},
        ValueError,
        r"carry has a leaf of shape \(3, 6\), expected \(3, 5\).*cell.zero_carry\(batch_shape\)",
        id="carry-wrong-shape",
    ),
    pytest.param(
        (CELL, PARAMS, jnp.ones((T, B, I), jnp.int32)),
        {},
        TypeError,
        r"xs must be a floating-point array, got dtype int32.*jax.nn.one_hot",
        id="integer-xs",
    ),
    pytest.param(
        (CELL, PARAMS, jnp.ones((0, B, I))),
        {},
        ValueError,
        r"xs has shape \(0, 3, 4\): a zero-length sequence \(time=0\)",
        id="zero-length",
    ),
    pytest.param(
        (CELL, PARAMS, jnp.ones((T,))),
        {},
        ValueError,
        r"xs must have shape \(time, \*batch, input_size\), got \(7,\).*xs\[:, None\]",
        id="xs-rank-1",
    ),
    pytest.param(
        (CELL, PARAMS._replace(w_hh=jnp.ones((H + 1, 4 * H))), XS),
        {},
        ValueError,
        r"unroll: params.w_hh must have shape \(5, 20\) for a lstm cell of hidden_size=5, "
        r"got shape \(6, 20\).*jaxrnn.lstm\(5, ...\).init\(key, input_size\)",
        id="params-wrong-w_hh",
    ),
    pytest.param(
        (CELL, PARAMS._replace(b=jnp.ones(3 * H)), XS),
        {},
        ValueError,
        r"params.b must have shape \(20,\) for a lstm cell of hidden_size=5, got shape \(15,\)",
        id="params-wrong-bias",
    ),
    pytest.param(
        (CELL, jaxrnn.elman(H).init(jax.random.key(0), I), XS),
        {},
        TypeError,
        r"a lstm cell's params must be LSTMParams, got ElmanParams",
        id="params-of-another-cell",
    ),
    pytest.param(
        (CELL, dict(PARAMS._asdict()), XS),
        {},
        TypeError,
        r"a lstm cell's params must be LSTMParams, got dict",
        id="params-as-dict",
    ),
    pytest.param(
        (CELL, PARAMS, XS, jaxrnn.LSTMCarry(*[jnp.zeros((B, H), jnp.int32)] * 2)),
        {},
        TypeError,
        r"carry must be floating-point, got a leaf of dtype int32.*cell.zero_carry",
        id="carry-integer",
    ),
    pytest.param(
        (CELL, PARAMS, XS),
        {"reverse": "no"},
        TypeError,
        r"reverse must be True or False, got 'no'",
        id="reverse-string",
    ),
]


@pytest.mark.parametrize("args,kwargs,error,match", BAD_CALLS)
def test_unroll_rejects_bad_input_at_trace_time(args, kwargs, error, match):
    for call in both_ways(jaxrnn.unroll, *args, **kwargs):
        with pytest.raises(error, match=match):
            call()


@pytest.mark.parametrize(
    "lengths,match",
    [
        ([7, -1, 3], r"seq_lengths must lie in \[0, time=7\], got values from -1 to 7"),
        ([8, 2, 3], r"seq_lengths must lie in \[0, time=7\], got values from 2 to 8"),
    ],
    ids=["negative", "longer-than-time"],
)
def test_unroll_rejects_lengths_outside_the_sequence(lengths, match):
    with pytest.raises(ValueError, match=match):
        jaxrnn.unroll(CELL, PARAMS, XS, seq_lengths=np.array(lengths))


@pytest.mark.parametrize(
    "make,match",
    [
        (
            lambda: jaxrnn.gru(H, reset_after=False),
            r"params.b_hn must be None for this gru cell "
            r"\(the reset gate before the matmul\), got an array of shape \(5,\)",
        ),
        (
            lambda: jaxrnn.gru(H, use_bias=False),
            r"params.b must be None for this gru cell "
            r"\(no bias\), got an array of shape \(15,\)",
        ),
    ],
    ids=["reset-before-with-b_hn", "no-bias-with-b"],
)
def test_a_cell_refuses_parameters_of_another_form(make, match):
    """Parameters with a field the cell would ignore (a GRU of the other form, or one
    without bias) are refused, by ``unroll`` and by the cell's own ``step``."""
    params = jaxrnn.gru(H).init(jax.random.key(0), I)
    cell = make()
    with pytest.raises(ValueError, match="unroll: " + match):
        jaxrnn.unroll(cell, params, XS)
    with pytest.raises(ValueError, match="gru.step: " + match):
        cell.step(params, cell.zero_carry((B,)), XS[0])


@pytest.mark.parametrize("make", [jaxrnn.lstm, jaxrnn.gru, jaxrnn.elman])
def test_zero_carry_takes_an_int_batch_and_names_a_bad_one(make):
    cell, model = make(H), jaxrnn.StackedRNN(make(H), 2)
    assert jax.tree.map(jnp.shape, cell.zero_carry(B)) == jax.tree.map(
        jnp.shape, cell.zero_carry((B,))
    )
    assert jax.tree.leaves(model.zero_carry(B))[0].shape == (2, B, H)
    for bad in ("ab", 2.5, (-1,), None, True):
        with pytest.raises(TypeError, match=r"zero_carry: batch_shape must be a tuple of sizes"):
            cell.zero_carry(bad)
    with pytest.raises(TypeError, match=r"StackedRNN.zero_carry: batch_shape must be a tuple"):
        model.zero_carry("x")


def test_forget_bias_must_be_a_number():
    with pytest.raises(
        TypeError, match=r"lstm: forget_bias must be a number \(e.g. 1.0\), got 'a'"
    ):
        jaxrnn.lstm(H, forget_bias="a")
    assert jaxrnn.lstm(H, forget_bias=2).spec.forget_bias == 2.0


def test_options_that_are_flags_refuse_other_values():
    with pytest.raises(TypeError, match=r"lstm: use_bias must be True or False, got 'no'"):
        jaxrnn.lstm(H, use_bias="no")
    with pytest.raises(TypeError, match=r"gru: reset_after must be True or False, got 0"):
        jaxrnn.gru(H, reset_after=0)
    with pytest.raises(TypeError, match=r"elman: use_bias must be True or False, got None"):
        jaxrnn.elman(H, use_bias=None)
    with pytest.raises(TypeError, match=r"bidirectional must be True or False, got 'no'"):
        jaxrnn.StackedRNN(CELL, 2, bidirectional="no")
    with pytest.raises(TypeError, match=r"dropout must be a float in \[0, 1\), got '0.5'"):
        jaxrnn.StackedRNN(CELL, 2, dropout="0.5")
    with pytest.raises(ValueError, match=r"num_layers must be an int >= 1, got True"):
        jaxrnn.StackedRNN(CELL, True)


def test_cells_and_converters_refuse_what_they_cannot_use():
    with pytest.raises(TypeError, match=r"lstm: dtype must be a floating dtype.*got 'int32'"):
        jaxrnn.lstm(H, dtype="int32")
    with pytest.raises(TypeError, match=r"to_torch: model must be a jaxrnn.StackedRNN, got Cell"):
        jaxrnn.interop.to_torch(CELL, PARAMS)
    with pytest.raises(TypeError, match=r"carry_from_flax: an LSTM's flax carry is the pair"):
        jaxrnn.interop.carry_from_flax(CELL, jnp.zeros((B, H)))
    gru_params = jaxrnn.gru(H).init(jax.random.key(0), I)
    with pytest.raises(TypeError, match=r"recurrent_spectrum: a lstm cell's params must be LSTMP"):
        jaxrnn.probes.recurrent_spectrum(CELL, gru_params)


def test_unroll_rejects_what_is_not_a_cell():
    with pytest.raises(TypeError, match=r"cell must be a jaxrnn.Cell .*got function"):
        jaxrnn.unroll(CELL.step, PARAMS, XS)


def test_stack_rejects_bad_carry_params_and_configuration():
    with pytest.raises(
        ValueError, match=r"carry has a leaf of shape \(3, 5\), expected \(4, 3, 5\)"
    ):
        MODEL.apply(MODEL_PARAMS, XS, jnp.zeros((B, H)))
    with pytest.raises(ValueError, match=r"expected \(4, 7, 5\).*batch-major\?"):
        MODEL.apply(MODEL_PARAMS, jnp.ones((B, T, I)), jnp.zeros((4, B, H)))
    with pytest.raises(ValueError, match=r"params must be params\[layer\]\[direction\]"):
        MODEL.apply(MODEL_PARAMS[:1], XS)
    # One cell's parameters (a NamedTuple, here with a None bias, which has no len())
    # are named as such, where a layer or a stack was expected.
    elman = jaxrnn.StackedRNN(jaxrnn.elman(H, use_bias=False), num_layers=3)
    one_cell = jaxrnn.elman(H, use_bias=False).init(jax.random.key(0), I)
    with pytest.raises(
        ValueError, match=r"got ElmanParams, one cell's parameters.*\(\(params,\),\)"
    ):
        elman.apply(one_cell, XS)
    pair = jaxrnn.StackedRNN(jaxrnn.elman(H), num_layers=3, bidirectional=True)
    layers = pair.init(jax.random.key(0), I)
    single = (layers[0], layers[1][0], layers[2])  # layer 1: ElmanParams, of 3 fields
    with pytest.raises(ValueError, match=r"got 3 layer\(s\) of \[2, 'ElmanParams', 2\]"):
        pair.apply(single, XS)
    with pytest.raises(ValueError, match=r"xs has shape \(7, 3, 2\).*input_size=4"):
        MODEL.apply(MODEL_PARAMS, jnp.ones((T, B, 2)))
    # A later layer's w_ih is named as such, not as the shape of an xs the user never passed.
    wide = MODEL_PARAMS[1][1]._replace(w_ih=jnp.ones((H, 3 * H)))
    with pytest.raises(
        ValueError, match=r"params\[1\]\[1\].w_ih is \(5, 15\), but layer 1 reads the 10 outputs"
    ):
        MODEL.apply((MODEL_PARAMS[0], (MODEL_PARAMS[1][0], wide)), XS)
    with pytest.raises(ValueError, match=r"dropout must lie in \[0, 1\), got 1.0"):
        jaxrnn.StackedRNN(CELL, 2, dropout=1.0)
    with pytest.raises(ValueError, match=r"num_layers must be an int >= 1, got 0"):
        jaxrnn.StackedRNN(CELL, 0)
    with pytest.raises(TypeError, match=r"cell must be a jaxrnn.Cell"):
        jaxrnn.StackedRNN("lstm")
