"""Schedules, clipping and the non-finite guard, each against optax's."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optim_cases import problem, trajectory

from jaxrnn import optim

# ----------------------------------------------------------------- schedules

SCHEDULES: list[tuple[str, dict[str, Any]]] = [
    ("constant_schedule", dict(value=0.3)),
    ("linear_schedule", dict(init_value=1.0, end_value=0.1, transition_steps=100)),
    (
        "linear_schedule",
        dict(init_value=0.0, end_value=2.0, transition_steps=50, transition_begin=30),
    ),
    ("linear_schedule", dict(init_value=0.5, end_value=2.0, transition_steps=0)),
    ("exponential_decay", dict(init_value=1.0, transition_steps=10, decay_rate=0.5)),
    (
        "exponential_decay",
        dict(init_value=1.0, transition_steps=10, decay_rate=0.5, staircase=True),
    ),
    (
        "exponential_decay",
        dict(
            init_value=0.1, transition_steps=7, decay_rate=0.8, transition_begin=25, staircase=True
        ),
    ),
    ("exponential_decay", dict(init_value=1.0, transition_steps=5, decay_rate=0.7, end_value=0.05)),
    ("exponential_decay", dict(init_value=0.1, transition_steps=5, decay_rate=1.3, end_value=2.0)),
    ("cosine_decay_schedule", dict(init_value=1.0, decay_steps=100)),
    ("cosine_decay_schedule", dict(init_value=0.5, decay_steps=60, alpha=0.1, exponent=2.0)),
    (
        "warmup_cosine_decay_schedule",
        dict(init_value=0.0, peak_value=1.0, warmup_steps=20, decay_steps=150),
    ),
    (
        "warmup_cosine_decay_schedule",
        dict(init_value=0.1, peak_value=0.5, warmup_steps=0, decay_steps=90, end_value=0.01),
    ),
]


def _schedule_id(item: tuple[str, dict[str, Any]]) -> str:
    name, kwargs = item
    return name + "-" + "-".join(f"{k}={v}" for k, v in kwargs.items())


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.float32], ids=["int32", "float32"])
@pytest.mark.parametrize("item", SCHEDULES, ids=_schedule_id)
def test_schedule_equals_optax(item: tuple[str, dict[str, Any]], dtype: Any) -> None:
    name, kwargs = item
    ours, theirs = getattr(optim, name)(**kwargs), getattr(optax, name)(**kwargs)
    counts = jnp.arange(0, 250, dtype=dtype)
    got = np.broadcast_to(np.asarray(jax.jit(ours)(counts)), counts.shape)
    want = np.broadcast_to(np.asarray(jax.jit(theirs)(counts)), counts.shape)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)
    for k in (0, 1, 17, 1000):  # Python ints, as a user would call it
        np.testing.assert_allclose(np.asarray(ours(k)), np.asarray(theirs(k)), rtol=1e-7)


def test_schedule_values_from_the_definitions() -> None:
    s = optim.exponential_decay(2.0, transition_steps=10, decay_rate=0.5, transition_begin=5)
    np.testing.assert_allclose([s(0), s(5), s(15), s(25)], [2.0, 2.0, 1.0, 0.5], rtol=1e-6)
    s = optim.warmup_cosine_decay_schedule(0.0, 1.0, warmup_steps=10, decay_steps=30, end_value=0.2)
    np.testing.assert_allclose(
        [s(0), s(5), s(10), s(20), s(30), s(99)], [0, 0.5, 1, 0.6, 0.2, 0.2], atol=1e-6
    )


def test_schedule_is_called_with_the_step_count_from_zero() -> None:
    seen = []
    tx = optim.sgd(lambda count: seen.append(count) or 0.1)
    g = jnp.ones(1, jnp.float32)
    state = tx.init(g)
    for _ in range(3):
        _, state = tx.update(g, state)
    assert [int(c) for c in seen] == [0, 1, 2]


def test_join_schedules_needs_one_boundary_per_hand_over() -> None:
    with pytest.raises(ValueError, match="boundaries"):
        optim.join_schedules([optim.constant_schedule(1.0)] * 2, [1, 2])


# ------------------------------------------------------------------ clipping


def _tree(scale: float, dtype: Any) -> dict[str, jax.Array]:
    k1, k2 = jax.random.split(jax.random.key(1))
    return {
        "w": scale * jax.random.normal(k1, (4, 3), dtype),
        "b": scale * jax.random.normal(k2, (3,), dtype),
    }


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16], ids=str)
@pytest.mark.parametrize("scale", [0.01, 1.0, 100.0])
def test_clipping_equals_optax(scale: float, dtype: Any) -> None:
    g = _tree(scale, dtype)
    chex.assert_trees_all_close(optim.global_norm(g), optax.tree.norm(g), rtol=1e-6)
    for ours, theirs in [
        (optim.clip_by_global_norm(1.0), optax.clip_by_global_norm(1.0)),
        (optim.clip(0.5), optax.clip(0.5)),
    ]:
        got, _ = jax.jit(ours.update)(g, ours.init(g))
        want, _ = jax.jit(theirs.update)(g, theirs.init(g))
        chex.assert_trees_all_equal_dtypes(got, g)
        chex.assert_trees_all_close(got, want, rtol=0, atol=0)


def test_clip_by_global_norm_keeps_direction_and_caps_length() -> None:
    g = _tree(100.0, jnp.float64)
    tx = optim.clip_by_global_norm(2.0)
    clipped, _ = tx.update(g, tx.init(g))
    np.testing.assert_allclose(optim.global_norm(clipped), 2.0, rtol=1e-12)
    ratio = jax.tree.map(lambda c, x: c / x, clipped, g)
    np.testing.assert_allclose(
        np.concatenate([r.ravel() for r in jax.tree.leaves(ratio)]),
        2.0 / optim.global_norm(g),
        rtol=1e-12,
    )
    small = _tree(0.01, jnp.float64)
    chex.assert_trees_all_equal(tx.update(small, tx.init(small))[0], small)  # bit for bit
    zeros = jax.tree.map(jnp.zeros_like, g)
    chex.assert_trees_all_equal(tx.update(zeros, tx.init(zeros))[0], zeros)  # no 0/0


def test_clip_by_value_bounds_every_element() -> None:
    g = _tree(10.0, jnp.float32)
    clipped, _ = optim.clip(0.25).update(g, optim.EmptyState())
    for leaf in jax.tree.leaves(clipped):
        assert float(jnp.max(jnp.abs(leaf))) == 0.25


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
def test_clipped_training_equals_optax(dtype: Any) -> None:
    loss, params = problem("lstm", dtype)
    tol = 1e-6 if dtype == jnp.float32 else 1e-12
    ours = optim.chain(
        optim.clip_by_global_norm(0.1), optim.clip(0.02), optim.sgd(0.5, momentum=0.9)
    )
    theirs = optax.chain(
        optax.clip_by_global_norm(0.1), optax.clip(0.02), optax.sgd(0.5, momentum=0.9)
    )
    got = trajectory(ours, optim.apply_updates, loss, params, 200)
    want = trajectory(theirs, optax.apply_updates, loss, params, 200)
    chex.assert_trees_all_close(got, want, rtol=tol, atol=tol)


# --------------------------------------------------------------------- guard


def _poisoned_quadratic(bad_steps: set[int]) -> tuple[Any, Any]:
    """The quadratic's gradient, replaced by NaN/inf at some steps (counted from 0)."""
    loss, params = problem("quadratic", jnp.float64)
    bad = jnp.asarray(sorted(bad_steps))

    def grad(params, step):
        g = jax.grad(loss)(params)
        poison = jnp.where(step % 2 == 0, jnp.nan, jnp.inf)
        return jax.tree.map(lambda x: jnp.where(jnp.any(step == bad), x.at[0].set(poison), x), g)

    return grad, params


def _guarded_trajectory(tx: Any, apply: Any, bad_steps: set[int], steps: int = 30) -> Any:
    grad, params = _poisoned_quadratic(bad_steps)

    def body(carry, step):
        params, state = carry
        updates, state = tx.update(grad(params, step), state, params)
        params = apply(params, updates)
        return (params, state), params

    (_, state), path = jax.jit(lambda p: jax.lax.scan(body, (p, tx.init(p)), jnp.arange(steps)))(
        params
    )
    return path, state


def test_skip_not_finite_equals_optax_apply_if_finite() -> None:
    bad = {3, 7, 8, 20}
    ours, state = _guarded_trajectory(
        optim.skip_not_finite(optim.adam(0.05)), optim.apply_updates, bad
    )
    theirs, their_state = _guarded_trajectory(
        optax.apply_if_finite(optax.adam(0.05), max_consecutive_errors=100),
        optax.apply_updates,
        bad,
    )
    chex.assert_trees_all_close(ours, theirs, rtol=1e-12, atol=1e-12)
    for leaf in jax.tree.leaves(ours):
        assert np.all(np.isfinite(leaf))
    assert int(state.total_skipped) == len(bad) == int(their_state.total_notfinite)
    assert int(state.inner_state[0].count) == 30 - len(bad)  # adam saw the good steps only


def test_skip_not_finite_gives_up_as_optax_does() -> None:
    bad = {3, 4, 5, 6}  # four in a row, then finite again
    ours, state = _guarded_trajectory(
        optim.skip_not_finite(optim.sgd(0.05), max_consecutive_skips=2), optim.apply_updates, bad
    )
    theirs, _ = _guarded_trajectory(
        optax.apply_if_finite(optax.sgd(0.05), max_consecutive_errors=2), optax.apply_updates, bad
    )
    chex.assert_trees_all_close(ours, theirs, rtol=1e-12, atol=1e-12)
    assert not np.all(np.isfinite(ours["w"][-1]))  # the third bad step got through
    assert int(state.total_skipped) == 2


def test_skipped_step_leaves_state_and_params_unchanged_and_counts() -> None:
    tx = optim.skip_not_finite(optim.rmsprop(0.1, momentum=0.9))
    params = {"w": jnp.ones(3, jnp.float32)}
    good = {"w": jnp.full(3, 0.5, jnp.float32)}
    bad = {"w": jnp.array([0.5, jnp.nan, 0.5], jnp.float32)}
    update = jax.jit(tx.update)
    _, state = update(good, tx.init(params), params)
    updates, new_state = update(bad, state, params)
    chex.assert_trees_all_equal(updates, jax.tree.map(jnp.zeros_like, params))
    chex.assert_trees_all_equal(new_state.inner_state, state.inner_state)
    assert (int(new_state.total_skipped), int(new_state.consecutive_not_finite)) == (1, 1)
    assert not bool(new_state.last_finite)
    _, new_state = update(bad, new_state, params)
    _, new_state = update(good, new_state, params)
    assert (int(new_state.total_skipped), int(new_state.consecutive_not_finite)) == (2, 0)
    assert bool(new_state.last_finite)


def test_all_finite() -> None:
    assert bool(optim.all_finite({"a": jnp.ones(2), "b": jnp.zeros((2, 2))}))
    assert not bool(optim.all_finite({"a": jnp.ones(2), "b": jnp.array([jnp.inf])}))
    assert bool(optim.all_finite({}))
