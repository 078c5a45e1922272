"""The contract of jaxrnn.optim: chaining with optax both ways, jit, dtypes, errors, docs."""

from __future__ import annotations

import inspect
import re
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optim_cases import CASES, OPTIMIZER_NAMES, Case, problem, trajectory

from jaxrnn import optim

# ------------------------------------------------------------------ chaining


def _compare_chains(ours: Any, theirs: Any, dtype: Any = jnp.float64, tol: float = 1e-12) -> None:
    loss, params = problem("quadratic", dtype)
    got = trajectory(ours, optax.apply_updates, loss, params, 100)
    want = trajectory(theirs, optax.apply_updates, loss, params, 100)
    chex.assert_trees_all_close(got, want, rtol=tol, atol=tol)


def _pure_optax() -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(0.05),
        optax.scale_by_adam(b1=0.9, b2=0.99, eps=1e-8),
        optax.add_decayed_weights(1e-3),
        optax.scale_by_learning_rate(0.02),
    )


def test_jaxrnn_transforms_inside_optax_chain() -> None:
    mixed = optax.chain(
        optim.clip_by_global_norm(0.05),
        optim.scale_by_adam(b1=0.9, b2=0.99, eps=1e-8),
        optax.add_decayed_weights(1e-3),
        optim.scale_by_learning_rate(0.02),
    )
    _compare_chains(mixed, _pure_optax())


def test_optax_transforms_inside_jaxrnn_chain() -> None:
    mixed = optim.chain(
        optax.clip_by_global_norm(0.05),
        optim.scale_by_adam(b1=0.9, b2=0.99, eps=1e-8),
        optax.add_decayed_weights(1e-3),
        optax.scale_by_learning_rate(0.02),
    )
    _compare_chains(mixed, _pure_optax())


def test_whole_optimizers_nest_both_ways() -> None:
    theirs = optax.chain(optax.clip(0.1), optax.rmsprop(0.01, momentum=0.5))
    _compare_chains(optax.chain(optax.clip(0.1), optim.rmsprop(0.01, momentum=0.5)), theirs)
    _compare_chains(optim.chain(optim.clip(0.1), optax.rmsprop(0.01, momentum=0.5)), theirs)


class _Recorded(NamedTuple):
    value: jax.Array


def _records_extra_args() -> optax.GradientTransformationExtraArgs:
    def update(updates, state, params=None, **extra_args):
        del params, state
        return updates, _Recorded(jnp.asarray(extra_args["value"]))

    return optax.GradientTransformationExtraArgs(lambda p: _Recorded(jnp.zeros([])), update)


def test_chain_passes_extra_args_only_to_transforms_that_take_them() -> None:
    # optim.sgd's transforms take no extra args: passing them on would raise.
    tx = optim.chain(optim.sgd(0.1, momentum=0.9), _records_extra_args())
    params = jnp.ones(3, jnp.float32)
    _, state = tx.update(params, tx.init(params), params, value=7.0)
    assert float(state[1].value) == 7.0


def test_optax_chain_accepts_extra_args_around_jaxrnn_optimizers() -> None:
    tx = optax.chain(optim.adam(0.1), _records_extra_args())
    params = jnp.ones(3, jnp.float32)
    updates, state = tx.update(params, tx.init(params), params, value=3.0)
    assert float(state[1].value) == 3.0
    chex.assert_trees_all_close(updates, -0.1 * jnp.ones(3, jnp.float32), rtol=1e-5)


def test_chain_rejects_a_state_from_another_chain() -> None:
    tx = optim.chain(optim.identity(), optim.identity())
    with pytest.raises(ValueError, match="2 transformations"):
        tx.update(jnp.ones(1), (optim.EmptyState(),))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_states_are_named_pytrees(case: Case) -> None:
    _, params = problem("quadratic", jnp.float32)
    state = case.build(optim).init(params)
    for s in state:  # the chain's tuple of states
        assert isinstance(s, tuple) and hasattr(s, "_fields"), f"{type(s)} is not a NamedTuple"
    # A pytree of arrays: it survives a round trip through flatten/unflatten.
    leaves, treedef = jax.tree.flatten(state)
    assert all(isinstance(leaf, jax.Array) for leaf in leaves)
    chex.assert_trees_all_equal(jax.tree.unflatten(treedef, leaves), state)


def test_update_needs_params_only_for_weight_decay() -> None:
    g = jnp.ones(2, jnp.float32)
    for case in CASES:
        tx = case.build(optim)
        if case.name == "adamw":
            with pytest.raises(ValueError, match="needs the parameters"):
                tx.update(g, tx.init(g))
        else:
            tx.update(g, tx.init(g))  # params=None is enough


def test_adadelta_descends_by_default() -> None:
    # optax.adadelta() has learning_rate=None and so ascends; ours is Zeiler's lr=1.
    params = jnp.array([1.0, -2.0], jnp.float64)
    ours = optim.adadelta()
    theirs = optax.adadelta(learning_rate=1.0, rho=0.9, eps=1e-6)
    got, _ = ours.update(params, ours.init(params), params)
    want, _ = theirs.update(params, theirs.init(params), params)
    chex.assert_trees_all_close(got, want, rtol=1e-15)
    assert np.all(np.sign(got) == -np.sign(params))


# ---------------------------------------------------------------------- jit


@pytest.mark.parametrize("case", CASES, ids=str)
def test_jit_twice_traces_once(case: Case) -> None:
    loss, params = problem("quadratic", jnp.float32)
    tx = case.build(optim)
    chex.clear_trace_counter()  # the counter is keyed by the function's code

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optim.apply_updates(params, updates), state

    state = tx.init(params)
    params1, state1 = step(params, state)
    params2, state2 = step(params1, state1)  # new values, same types: no retrace
    # What makes a training loop retrace is a state whose types drift.
    chex.assert_trees_all_equal_shapes_and_dtypes(state, state1, state2)
    chex.assert_trees_all_equal_shapes_and_dtypes(params, params2)


def test_trace_counter_can_fail() -> None:
    tx = optim.adam(0.1)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, state):
        return tx.update(params, state, params)

    p32 = jnp.ones(2, jnp.float32)
    step(p32, tx.init(p32))
    with pytest.raises(AssertionError, match="traced"):
        p64 = jnp.ones(2, jnp.float64)
        step(p64, tx.init(p64))


# -------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bfloat16_params_and_state_stay_bfloat16(case: Case) -> None:
    _, params = problem("quadratic", jnp.bfloat16)
    tx = case.build(optim)
    state = tx.init(params)
    updates, new_state = tx.update(params, state, params)
    new_params = optim.apply_updates(params, updates)
    chex.assert_trees_all_equal_dtypes(new_params, params)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
    for leaf in jax.tree.leaves(new_state):
        assert leaf.dtype in (jnp.bfloat16, jnp.int32), leaf.dtype
    # A second step from the new state, and optax's two steps alongside.
    updates, _ = tx.update(new_params, new_state, new_params)
    theirs = case.build(optax)
    their_updates, their_state = theirs.update(params, theirs.init(params), params)
    their_params = optax.apply_updates(params, their_updates)
    their_updates, _ = theirs.update(their_params, their_state, their_params)
    for got, want in zip(jax.tree.leaves(updates), jax.tree.leaves(their_updates), strict=True):
        assert got.dtype == jnp.bfloat16
        got, want = np.asarray(got, np.float32), np.asarray(want, np.float32)
        assert np.all(np.isfinite(got))
        # optax takes √ of a rounded-negative variance in centered RMSprop
        # with bias correction (NaN); jaxrnn clamps it at 0.
        finite = np.isfinite(want)
        scale = np.max(np.abs(want[finite]))
        np.testing.assert_allclose(got[finite], want[finite], rtol=2e-2, atol=1e-3 * scale)


# Every decay-like hyper-parameter of the cases, given as a float32 array instead.
ARRAY_HYPERPARAMETERS = {"momentum", "decay", "rho", "b1", "b2"}
CASES_WITH_DECAYS = [
    c for c in CASES if any(isinstance(c.options.get(k), float) for k in ARRAY_HYPERPARAMETERS)
]


@pytest.mark.parametrize("case", CASES_WITH_DECAYS, ids=str)
def test_states_keep_their_dtypes_under_array_hyperparameters_in_a_scan(case: Case) -> None:
    # A float32 array (or a traced value) as a decay rate promotes a bfloat16
    # moment to float32; the state must keep its dtypes to be a scan's carry.
    kwargs = {
        key: jnp.asarray(value, jnp.float32)
        if key in ARRAY_HYPERPARAMETERS and isinstance(value, float)
        else value.build(optim)
        if hasattr(value, "build")
        else value
        for key, value in case.kwargs
    }
    tx = getattr(optim, case.name)(**kwargs)
    _, params = problem("quadratic", jnp.bfloat16)
    state = tx.init(params)

    def body(carry, _):
        params, state = carry
        updates, state = tx.update(params, state, params)
        return (optim.apply_updates(params, updates), state), None

    (new_params, new_state), _ = jax.lax.scan(body, (params, state), None, length=3)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_state, state)
    chex.assert_trees_all_equal_dtypes(new_params, params)


def test_complex_parameters_use_the_squared_magnitude_as_optax_does() -> None:
    params = jnp.asarray([1.0 + 2.0j, -0.5 + 0.25j, 3.0 - 1.0j], jnp.complex128)
    grads = [params * (0.3 - 0.7j) ** k for k in range(4)]
    for name, kwargs in [
        ("adam", dict(learning_rate=0.1)),
        ("rmsprop", dict(learning_rate=0.1)),
        ("rmsprop", dict(learning_rate=0.1, centered=True)),
        ("adagrad", dict(learning_rate=0.1)),
    ]:
        tx, theirs = getattr(optim, name)(**kwargs), getattr(optax, name)(**kwargs)
        state, their_state = tx.init(params), theirs.init(params)
        for g in grads:
            got, state = tx.update(g, state, params)
            want, their_state = theirs.update(g, their_state, params)
            np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)
    assert np.isrealobj(optim.global_norm({"a": params, "b": jnp.ones(2)}))
    np.testing.assert_allclose(
        optim.global_norm({"a": params, "b": jnp.ones(2)}), optax.tree.norm((params, jnp.ones(2)))
    )
    clipped, _ = optim.clip_by_global_norm(1.0).update(params, optim.EmptyState())
    np.testing.assert_allclose(np.linalg.norm(np.asarray(clipped)), 1.0, rtol=1e-12)
    # Adadelta (optax squares g itself there): the equations with |g|², in NumPy.
    tx = optim.adadelta(learning_rate=1.0, rho=0.9, eps=1e-6)
    state, e_g, e_x = tx.init(params), np.zeros(3), np.zeros(3)
    for g in grads:
        got, state = tx.update(g, state, params)
        g = np.asarray(g)
        e_g = 0.9 * e_g + 0.1 * np.abs(g) ** 2
        delta = np.sqrt(e_x + 1e-6) / np.sqrt(e_g + 1e-6) * g
        e_x = 0.9 * e_x + 0.1 * np.abs(delta) ** 2
        np.testing.assert_allclose(got, -delta, rtol=1e-12)


@pytest.mark.parametrize("name", ["adam", "adamw", "nadam", "adamax", "rmsprop"])
def test_eager_steps_equal_optax_eager_steps(name: str) -> None:
    # Eagerly, JAX computes β^t of a float32 and an int32 otherwise than under
    # jit; optax compiles its bias correction, so must jaxrnn to step as it does.
    # (Without x64, as users run: with it, β^t is computed in float64.)
    with jax.enable_x64(False):
        _eager_steps_equal_optax_eager_steps(name)


def _eager_steps_equal_optax_eager_steps(name: str) -> None:
    kwargs = {"bias_correction": True} if name == "rmsprop" else {}
    tx = getattr(optim, name)(learning_rate=0.01, **kwargs)
    theirs = getattr(optax, name)(learning_rate=0.01, **kwargs)
    params = their_params = jnp.ones(3, jnp.float32)
    g = jnp.asarray([0.5, -2.0, 1e-3], jnp.float32)
    state, their_state = tx.init(params), theirs.init(params)
    for _ in range(50):
        updates, state = tx.update(g, state, params)
        params = optim.apply_updates(params, updates)
        updates, their_state = theirs.update(g, their_state, their_params)
        their_params = optax.apply_updates(their_params, updates)
    np.testing.assert_array_equal(params, their_params)


def test_adagrad_steps_zero_where_every_gradient_was_zero() -> None:
    tx = optim.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0)
    g = jnp.asarray([0.0, 2.0, -3.0], jnp.float32)
    state = tx.init(g)
    for step in (1, 2):  # G = step·g², so the step is −η·sign(g)/√step, and 0 (not 0/0) at g = 0
        updates, state = tx.update(g, state, g)
        np.testing.assert_allclose(updates, np.asarray([0.0, -0.1, 0.1]) / np.sqrt(step), rtol=1e-6)


def test_integer_parameters_step_as_their_float_copies() -> None:
    params = jnp.asarray([1, 2, 3], jnp.int32)
    copies = params.astype(jnp.float32)
    grads = [jnp.asarray([0.5, -1.0, 2.0], jnp.float32), jnp.asarray([-2.0, 1.0, 0.5], jnp.float32)]
    tx = optim.adam(0.1)
    state, copy_state = tx.init(params), tx.init(copies)
    for g in grads:  # the moments become floats, not integers that truncate them
        got, state = tx.update(g, state, params)
        want, copy_state = tx.update(g, copy_state, copies)
        np.testing.assert_array_equal(got, want)


def test_mu_dtype_and_accumulator_dtype() -> None:
    params = jnp.ones(3, jnp.float32)
    tx = optim.adam(0.1, mu_dtype=jnp.bfloat16)
    _, state = tx.update(params, tx.init(params), params)
    assert state[0].mu.dtype == jnp.bfloat16 and state[0].nu.dtype == jnp.float32
    tx = optim.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16)
    _, state = tx.update(params, tx.init(params), params)
    assert state[0].trace.dtype == jnp.bfloat16


# -------------------------------------------------------------- weight decay


def test_weight_decay_mask_leaves_masked_parameters_alone() -> None:
    params = {"w": jnp.ones((2, 2), jnp.float64), "b": jnp.ones(2, jnp.float64)}
    grads = jax.tree.map(jnp.zeros_like, params)
    mask = {"w": True, "b": False}
    for tx, theirs in [
        (
            optim.adamw(0.1, weight_decay=0.5, mask=mask),
            optax.adamw(0.1, weight_decay=0.5, mask=mask),
        ),
        (optim.add_decayed_weights(0.5, mask=lambda p: mask), optax.add_decayed_weights(0.5, mask)),
    ]:
        got, _ = tx.update(grads, tx.init(params), params)
        want, _ = theirs.update(grads, theirs.init(params), params)
        chex.assert_trees_all_close(got, want, rtol=1e-15)
        assert np.all(np.asarray(got["b"]) == 0) and np.all(np.asarray(got["w"]) != 0)


# ------------------------------------------------------------------- errors

INVALID = [
    (optim.sgd, dict(learning_rate=-0.1), "learning_rate", ">= 0"),
    (optim.sgd, dict(learning_rate=float("nan")), "learning_rate", ">= 0"),
    (optim.sgd, dict(learning_rate=0.1, momentum=1.0), "momentum", "[0, 1)"),
    (optim.sgd, dict(learning_rate=0.1, momentum=-0.5), "momentum", "[0, 1)"),
    (optim.sgd, dict(learning_rate=0.1, nesterov=True), "momentum", "[0, 1)"),
    (optim.adagrad, dict(learning_rate=-1.0), "learning_rate", ">= 0"),
    (optim.adagrad, dict(learning_rate=0.1, eps=-1e-7), "eps", ">= 0"),
    (
        optim.adagrad,
        dict(learning_rate=0.1, initial_accumulator_value=-1.0),
        "initial_accumulator_value",
        ">= 0",
    ),
    (optim.rmsprop, dict(learning_rate=-0.1), "learning_rate", ">= 0"),
    (optim.rmsprop, dict(learning_rate=0.1, decay=1.0), "decay", "[0, 1)"),
    (optim.rmsprop, dict(learning_rate=0.1, decay=-0.1), "decay", "[0, 1)"),
    (optim.rmsprop, dict(learning_rate=0.1, eps=-1e-8), "eps", ">= 0"),
    (optim.rmsprop, dict(learning_rate=0.1, initial_scale=-1.0), "initial_scale", ">= 0"),
    (optim.rmsprop, dict(learning_rate=0.1, momentum=1.5), "momentum", "[0, 1)"),
    (optim.adadelta, dict(learning_rate=-1.0), "learning_rate", ">= 0"),
    (optim.adadelta, dict(rho=1.0), "rho", "[0, 1)"),
    (optim.adadelta, dict(eps=-1e-6), "eps", ">= 0"),
    (optim.adam, dict(learning_rate=-1e-3), "learning_rate", ">= 0"),
    (optim.adam, dict(learning_rate=1e-3, b1=1.0), "b1", "[0, 1)"),
    (optim.adam, dict(learning_rate=1e-3, b1=-0.1), "b1", "[0, 1)"),
    (optim.adam, dict(learning_rate=1e-3, b2=1.5), "b2", "[0, 1)"),
    (optim.adam, dict(learning_rate=1e-3, eps=-1e-8), "eps", ">= 0"),
    (optim.adam, dict(learning_rate=1e-3, eps_root=-1e-8), "eps_root", ">= 0"),
    (optim.adamw, dict(learning_rate=1e-3, weight_decay=-0.1), "weight_decay", ">= 0"),
    (optim.adamw, dict(learning_rate=1e-3, b1=2.0), "b1", "[0, 1)"),
    (optim.adamax, dict(learning_rate=1e-3, b2=1.0), "b2", "[0, 1)"),
    (optim.adamax, dict(learning_rate=-1e-3), "learning_rate", ">= 0"),
    (optim.nadam, dict(learning_rate=1e-3, b1=1.0), "b1", "[0, 1)"),
    (optim.nadam, dict(learning_rate=-1e-3), "learning_rate", ">= 0"),
    (optim.clip_by_global_norm, dict(max_norm=0.0), "max_norm", "> 0"),
    (optim.clip_by_global_norm, dict(max_norm=-1.0), "max_norm", "> 0"),
    (optim.clip, dict(max_delta=-1.0), "max_delta", ">= 0"),
    (optim.trace, dict(decay=1.0), "decay", "[0, 1)"),
    (
        optim.exponential_decay,
        dict(init_value=1.0, transition_steps=0, decay_rate=0.5),
        "transition_steps",
        "> 0",
    ),
    (
        optim.exponential_decay,
        dict(init_value=1.0, transition_steps=10, decay_rate=0.0),
        "decay_rate",
        "> 0",
    ),
    (
        optim.linear_schedule,
        dict(init_value=1.0, end_value=0.0, transition_steps=-1),
        "transition_steps",
        ">= 0",
    ),
    (optim.cosine_decay_schedule, dict(init_value=1.0, decay_steps=0), "decay_steps", "> 0"),
    (
        optim.warmup_cosine_decay_schedule,
        dict(init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=10),
        "decay_steps",
        "> warmup_steps",
    ),
    (
        optim.skip_not_finite,
        dict(inner=optim.sgd(0.1), max_consecutive_skips=-1),
        "max_consecutive_skips",
        ">= 0",
    ),
    # NumPy scalars and 0-d arrays are concrete numbers too; an infinite step is no step.
    (optim.adam, dict(learning_rate=np.array(-0.1)), "learning_rate", ">= 0"),
    (optim.adam, dict(learning_rate=1e-3, b1=np.array(1.0)), "b1", "[0, 1)"),
    (optim.sgd, dict(learning_rate=np.float32(0.1), momentum=np.array(1.0)), "momentum", "[0, 1)"),
    (optim.sgd, dict(learning_rate=float("inf")), "learning_rate", "finite"),
    (optim.adam, dict(learning_rate=np.array(np.inf)), "learning_rate", "finite"),
    (
        optim.join_schedules,
        dict(schedules=[optim.constant_schedule(1.0)] * 3, boundaries=[5, 2]),
        "boundaries",
        "increasing order",
    ),
    (
        optim.join_schedules,
        dict(schedules=[optim.constant_schedule(1.0)] * 2, boundaries=[-1]),
        "boundaries",
        "steps >= 0",
    ),
]


@pytest.mark.parametrize(
    ("factory", "kwargs", "name", "valid"),
    INVALID,
    ids=[f"{f.__name__}-{n}-{list(k.values())[-1]}" for f, k, n, _ in INVALID],
)
def test_invalid_hyperparameters_raise(factory: Any, kwargs: dict, name: str, valid: str) -> None:
    with pytest.raises(ValueError, match=re.escape(name)) as info:
        factory(**kwargs)
    message = str(info.value)
    assert valid in message, message
    assert factory.__name__ in message, message  # says which call was wrong


def test_schedules_and_traced_values_are_not_checked() -> None:
    optim.adam(lambda count: -0.1)  # a schedule: not evaluated at construction
    optim.adam(jnp.asarray(0.1), b1=jnp.asarray(0.9))

    @jax.jit
    def step(b1, params):
        tx = optim.adam(0.1, b1=b1)
        return tx.update(params, tx.init(params), params)[0]

    assert step(jnp.asarray(0.9, jnp.float32), jnp.ones(2, jnp.float32)).shape == (2,)


def test_every_optimizer_rejects_a_negative_learning_rate() -> None:
    for name in OPTIMIZER_NAMES:
        with pytest.raises(ValueError, match=r"learning_rate must be >= 0"):
            getattr(optim, name)(learning_rate=-1.0)


@pytest.mark.parametrize("value", ["1e-3", None, 1j, True, jnp.ones(3)], ids=repr)
def test_every_optimizer_rejects_a_learning_rate_that_is_not_a_real_number(value) -> None:
    for name in OPTIMIZER_NAMES:
        with pytest.raises(TypeError, match=rf"{name}: learning_rate must be a (real number|sc)"):
            getattr(optim, name)(learning_rate=value)


def test_flags_and_chained_factories_are_refused_with_the_fix() -> None:
    with pytest.raises(TypeError, match=r"sgd: nesterov must be True or False, got 'no'"):
        optim.sgd(0.1, momentum=0.9, nesterov="no")
    with pytest.raises(TypeError, match=r"max_norm must be a real number, got '1.0'"):
        optim.clip_by_global_norm("1.0")
    with pytest.raises(
        TypeError, match=r"chain: argument 2 must be a gradient transformation.*call it.*adam"
    ):
        optim.chain(optim.sgd(0.1), optim.adam)
    with pytest.raises(
        TypeError, match=r"skip_not_finite: inner must be a gradient transformation.*adam\(\.\.\.\)"
    ):
        optim.skip_not_finite(optim.adam)
    with pytest.raises(TypeError, match=r"max_consecutive_skips must be an int >= 0 or None"):
        optim.skip_not_finite(optim.sgd(0.1), max_consecutive_skips=2.5)
    with pytest.raises(TypeError, match=r"flip_sign must be True or False, got 'no'"):
        optim.scale_by_learning_rate(0.1, flip_sign="no")


def test_a_mask_of_another_structure_is_named() -> None:
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    for tx in (
        optim.add_decayed_weights(0.1, mask={"w": True, "c": False}),
        optim.adamw(0.1, mask=lambda p: {"w": True}),
    ):
        with pytest.raises(ValueError, match=r"mask must have the structure of the parameters"):
            tx.update(params, tx.init(params), params)


# ---------------------------------------------------------------------- docs

# The docstrings' examples run in tests/test_docstrings.py, with every module's.


def test_public_api_is_documented_and_sorted() -> None:
    assert optim.__all__ == sorted(optim.__all__)
    for name in optim.__all__:
        obj = getattr(optim, name)
        if inspect.isfunction(obj):
            doc = inspect.getdoc(obj) or ""
            for section in ("Returns:", "Examples:"):
                assert section in doc, f"{name}'s docstring has no {section}"
            if inspect.signature(obj).parameters:
                assert "Args:" in doc, f"{name}'s docstring has no Args:"
        elif inspect.isclass(obj):
            assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"
