"""Fuzzing the character model and the optimizers: every draw either computes what the plain
reference computes (NumPy for the model, optax for the optimizers) or raises a
ValueError/TypeError whose message names the argument at fault — never an error from deep
inside XLA, never a silently wrong shape or dtype."""

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxrnn import optim, train

# --------------------------------------------------------------------------- the model

NUMPY_STEPS = {"lstm": ref.lstm_step, "gru": ref.gru_step, "elman": ref.elman_step}

CONFIG_FAULTS = {  # field: (bad values, the message naming it)
    "vocab_size": ([0, -3], "vocab_size must be >= 1"),
    "hidden_size": ([0], "hidden_size must be >= 1"),
    "num_layers": ([0], "num_layers must be >= 1"),
    "embed_size": ([-1], "embed_size must be >= 0"),
    "dropout": ([1.0, -0.5], r"dropout must lie in \[0, 1\)"),
    "cell": (["transformer", "LSTM"], "cell must be one of"),
}
CALL_FAULTS = {  # the one thing wrong with a call, the error and the argument named
    "float-inputs": (TypeError, "inputs must be integer character ids"),
    "float-targets": (TypeError, "targets must be integer character ids"),
    "zero-time": (ValueError, r"inputs must have shape \(time, \*batch\) with time >= 1"),
    "targets-shape": (ValueError, "targets has shape"),
}


def reference_logits(model, params, inputs):
    """The model written out in NumPy float64: embedding, layers one after another, read-out."""
    config = model.config
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    xs = p["embed"][inputs] if config.embed_size else np.eye(config.vocab_size)[inputs]
    step = NUMPY_STEPS[config.cell]
    batch_shape = inputs.shape[1:]
    for layer in p["rnn"]:
        cell_params = tuple(layer[0])
        h = np.zeros((*batch_shape, config.hidden_size))
        carry = (h, h.copy()) if config.cell == "lstm" else h
        _, xs = ref.run(lambda c, x, cp=cell_params: step(cp, c, x), xs, carry)
    return xs @ p["head"]["w"] + p["head"]["b"]


KINDS = {"valid": [None], "config": list(CONFIG_FAULTS), "call": list(CALL_FAULTS)}


@st.composite
def model_calls(draw, kind):
    """A model configuration and a call, with one fault of ``kind`` (none if ``"valid"``)."""
    fault = draw(st.sampled_from(KINDS[kind]))
    fields = dict(
        vocab_size=draw(st.integers(1, 6)),
        cell=draw(st.sampled_from(sorted(NUMPY_STEPS))),
        hidden_size=draw(st.integers(1, 5)),
        num_layers=draw(st.integers(1, 2)),
        embed_size=draw(st.integers(0, 4)),
        dropout=draw(st.sampled_from([0.0, 0.3])),
    )
    if fault in CONFIG_FAULTS:
        fields[fault] = draw(st.sampled_from(CONFIG_FAULTS[fault][0]))
    time = 0 if fault == "zero-time" else draw(st.integers(1, 6))
    batch_shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    dtype = draw(st.sampled_from(["int32", "int64", "uint8"]))
    remat = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return fault, fields, time, batch_shape, dtype, remat, seed


@pytest.mark.parametrize(("kind", "examples"), [("valid", 5), ("config", 6), ("call", 6)])
def test_model_computes_the_reference_or_rejects_clearly(kind, examples):
    settings(max_examples=examples)(given(model_calls(kind))(check_model_call))()


def check_model_call(call):
    fault, fields, time, batch_shape, dtype, remat, seed = call
    if fault in CONFIG_FAULTS:
        with pytest.raises(ValueError, match=CONFIG_FAULTS[fault][1]):
            train.ModelConfig(**fields)
        return
    if fields["dropout"] and fields["num_layers"] == 1:  # warns, as PyTorch does
        with pytest.warns(UserWarning, match=r"dropout=0.3 acts between layers"):
            model = train.CharModel(train.ModelConfig(**fields))
    else:
        model = train.CharModel(train.ModelConfig(**fields))
    rng = np.random.default_rng(seed)
    inputs = rng.integers(0, fields["vocab_size"], (time, *batch_shape)).astype(dtype)
    targets = rng.integers(0, fields["vocab_size"], (time, *batch_shape)).astype(dtype)
    if fault == "float-inputs":
        inputs = inputs.astype(np.float32)
    elif fault == "float-targets":
        targets = targets.astype(np.float32)
    elif fault == "targets-shape":
        targets = targets[:, None]
    if fault is not None:
        error, message = CALL_FAULTS[fault]
        params = jax.eval_shape(model.init, jax.random.key(seed))  # refused before computing
        with pytest.raises(error, match=message):
            model.loss(params, inputs, targets, remat=remat)
        return

    @jax.jit  # one compilation per draw
    def compute(key, inputs, targets):
        params = model.init(key)
        loss, _ = model.loss(params, inputs, targets, remat=remat)
        return params, model.apply(params, inputs), loss

    params, (carry, logits), loss = compute(jax.random.key(seed), inputs, targets)
    assert logits.shape == (time, *batch_shape, fields["vocab_size"])
    assert logits.dtype == jnp.float32
    assert all(
        leaf.shape == (fields["num_layers"], *batch_shape, fields["hidden_size"])
        for leaf in jax.tree.leaves(carry)
    )
    want = reference_logits(model, params, inputs.astype(np.int64))
    np.testing.assert_allclose(np.asarray(logits, np.float64), want, atol=2e-5, rtol=1e-4)
    # The loss (rematerialised or not) is the mean cross-entropy of the reference's logits.
    shifted = want - want.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_probs, targets.astype(np.int64)[..., None], axis=-1)
    np.testing.assert_allclose(float(loss), -picked.mean(), atol=2e-5, rtol=1e-4)


# --------------------------------------------------------------------------- the optimizers

# Each optimizer's hyper-parameters: a strategy of valid values, and invalid ones with the
# name the message must give.
LR = st.floats(1e-4, 0.5)
DECAY = st.floats(0.0, 0.999)
EPS = st.floats(1e-8, 1e-3)
OPTIMIZERS = {
    "sgd": {"learning_rate": LR, "momentum": st.none() | DECAY, "nesterov": st.booleans()},
    "adagrad": {"learning_rate": LR, "initial_accumulator_value": st.floats(0.0, 1.0), "eps": EPS},
    "rmsprop": {
        "learning_rate": LR,
        "decay": DECAY,
        "eps": EPS,
        "centered": st.booleans(),
        "momentum": st.none() | DECAY,
    },
    "adadelta": {"learning_rate": LR, "rho": DECAY, "eps": EPS},
    "adam": {"learning_rate": LR, "b1": DECAY, "b2": DECAY, "eps": EPS},
    "adamw": {"learning_rate": LR, "b1": DECAY, "b2": DECAY, "eps": EPS, "weight_decay": LR},
    "adamax": {"learning_rate": LR, "b1": DECAY, "b2": DECAY, "eps": EPS},
    "nadam": {"learning_rate": LR, "b1": DECAY, "b2": DECAY, "eps": EPS},
}
INVALID = {  # hyper-parameter: values every optimizer taking it must refuse
    "learning_rate": [-0.1, float("nan")],
    "momentum": [1.0, -0.2],
    "decay": [1.0, 1.5],
    "rho": [1.0],
    "b1": [1.0, -0.1],
    "b2": [1.0],
    "eps": [-1e-8, float("nan")],
    "initial_accumulator_value": [-1.0],
    "weight_decay": [-0.1],
}
DTYPES = {"float32": (jnp.float32, 1e-5), "float64": (jnp.float64, 1e-10)}


@st.composite
def optimizer_runs(draw, name):
    hyper = {k: draw(v) for k, v in OPTIMIZERS[name].items()}
    if hyper.get("momentum") is None:
        hyper.pop("nesterov", None)
        if name == "sgd":
            hyper["nesterov"] = False
    fault = draw(st.sampled_from([None, None, *[k for k in OPTIMIZERS[name] if k in INVALID]]))
    if fault is not None:
        hyper[fault] = draw(st.sampled_from(INVALID[fault]))
    shapes = draw(st.lists(st.lists(st.integers(0, 3), max_size=3).map(tuple), max_size=3))
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    steps = draw(st.integers(1, 3))
    return name, hyper, fault, shapes, dtype, steps, draw(st.integers(0, 2**16))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers_compute_what_optax_computes_or_reject_clearly(name):
    settings(max_examples=5)(given(optimizer_runs(name))(check_optimizer_run))()


def check_optimizer_run(run):
    name, hyper, fault, shapes, dtype_name, steps, seed = run
    if fault is not None:
        with pytest.raises(ValueError, match=f"{name}.*{fault}"):
            getattr(optim, name)(**hyper)
        return
    dtype, tolerance = DTYPES[dtype_name]
    rng = np.random.default_rng(seed)
    params = {f"p{i}": jnp.asarray(rng.normal(size=s), dtype) for i, s in enumerate(shapes)}
    ours, theirs = getattr(optim, name)(**hyper), getattr(optax, name)(**hyper)
    state_ours, state_theirs = ours.init(params), theirs.init(params)
    p_ours = p_theirs = params
    for _ in range(steps):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), dtype), params)
        u_ours, state_ours = ours.update(grads, state_ours, p_ours)
        u_theirs, state_theirs = theirs.update(grads, state_theirs, p_theirs)
        p_ours = optim.apply_updates(p_ours, u_ours)
        p_theirs = optax.apply_updates(p_theirs, u_theirs)
    for key in params:
        assert p_ours[key].shape == params[key].shape and p_ours[key].dtype == dtype, key
        np.testing.assert_allclose(
            np.asarray(p_ours[key]), np.asarray(p_theirs[key]), rtol=tolerance, atol=tolerance
        )
