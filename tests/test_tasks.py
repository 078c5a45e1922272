"""The long-memory task generators: their structure, their statistics and their baselines."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import tasks

F32 = jnp.float32


# --------------------------------------------------------------------------- adding


ADDING_LENGTH, ADDING_BATCH = 20, 20000


@pytest.fixture(scope="module")
def adding_batch():
    return tasks.adding_problem(jax.random.key(1), ADDING_LENGTH, ADDING_BATCH, dtype=F32)


def test_adding_problem_structure(adding_batch):
    length, batch = ADDING_LENGTH, ADDING_BATCH
    xs, targets = adding_batch
    assert xs.shape == (length, batch, 2) and xs.dtype == F32
    assert targets.shape == (batch,) and targets.dtype == F32
    xs, targets = np.asarray(xs), np.asarray(targets)
    values, markers = xs[..., 0], xs[..., 1]
    assert values.min() >= 0.0 and values.max() <= 1.0
    assert set(np.unique(markers)) == {0.0, 1.0}
    # Exactly two markers, one in each half.
    np.testing.assert_array_equal(markers[: length // 2].sum(axis=0), 1.0)
    np.testing.assert_array_equal(markers[length // 2 :].sum(axis=0), 1.0)
    np.testing.assert_allclose(targets, (values * markers).sum(axis=0), rtol=1e-6)


def test_adding_problem_statistics_and_baseline(adding_batch):
    length = ADDING_LENGTH
    xs, targets = adding_batch
    markers = np.asarray(xs[..., 1])
    first = np.argmax(markers[: length // 2], axis=0)
    second = length // 2 + np.argmax(markers[length // 2 :], axis=0)
    # Marker positions are uniform over each half: means 4.5 and 14.5 (std of a mean ≈ 0.02).
    assert abs(first.mean() - 4.5) < 0.1 and abs(second.mean() - 14.5) < 0.1
    assert set(np.unique(first)) == set(range(10)) and set(np.unique(second)) == set(range(10, 20))
    # Always predicting the mean, 1, scores Var(U1 + U2) = 1/6.
    assert pytest.approx(1 / 6) == tasks.ADDING_BASELINE_MSE
    assert float(np.mean(targets)) == pytest.approx(1.0, abs=0.01)
    mse = float(np.mean((np.asarray(targets) - 1.0) ** 2))
    assert mse == pytest.approx(1 / 6, rel=0.03)
    task = tasks.TASKS["adding"]
    trivial = task.loss(task.trivial_outputs(xs), targets)
    assert float(trivial) == pytest.approx(mse, rel=1e-5)
    assert task.baseline(length) == tasks.ADDING_BASELINE_MSE


def test_adding_problem_shortest_length():
    xs, targets = map(np.asarray, tasks.adding_problem(jax.random.key(2), 2, 5, dtype=F32))
    np.testing.assert_array_equal(xs[:, :, 1], 1.0)  # both steps are marked
    np.testing.assert_allclose(targets, xs[:, :, 0].sum(axis=0), rtol=1e-6)


# --------------------------------------------------------------------------- copying


@pytest.fixture(scope="module")
def copying_batch():
    return tasks.copying_memory(jax.random.key(3), 100, 4000, dtype=F32)


@pytest.mark.parametrize("length", [2, 100])
def test_copying_memory_structure(length, copying_batch):
    if length == 100:
        xs, targets = copying_batch
    else:
        xs, targets = tasks.copying_memory(jax.random.key(0), length, 64, dtype=F32)
    batch, total = xs.shape[1], length + 20
    assert xs.shape == (total, batch, 10) and xs.dtype == F32
    assert targets.shape == (total, batch) and targets.dtype == jnp.int32
    xs, targets = np.asarray(xs), np.asarray(targets)
    np.testing.assert_array_equal(xs.sum(axis=-1), 1.0)  # one-hot
    ids = xs.argmax(axis=-1)
    symbols = ids[:10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    np.testing.assert_array_equal(ids[10 : length + 9], 0)  # T - 1 blanks
    np.testing.assert_array_equal(ids[length + 9], 9)  # the delimiter
    np.testing.assert_array_equal(ids[length + 10 :], 0)
    np.testing.assert_array_equal(targets[: length + 10], 0)
    np.testing.assert_array_equal(targets[length + 10 :], symbols)


def test_copying_memory_symbols_uniform_and_memoryless_baseline(copying_batch):
    length = 100
    xs, targets = copying_batch
    counts = np.bincount(np.asarray(targets[-10:]).ravel(), minlength=9)[1:]
    assert counts.min() > 0.9 * counts.mean() and counts.max() < 1.1 * counts.mean()
    expected = 10 * math.log(8) / (length + 20)
    assert tasks.copying_baseline(length) == pytest.approx(expected)
    assert tasks.copying_baseline(100) == pytest.approx(0.1733, abs=1e-4)
    task = tasks.TASKS["copying"]
    # Blanks until the delimiter, then 1/8 on each symbol: exactly the baseline.
    trivial = task.loss(task.trivial_outputs(xs), targets)
    assert float(trivial) == pytest.approx(expected, rel=1e-6)
    metrics = task.metrics(task.trivial_outputs(xs), targets)
    assert set(metrics) == {"copy_accuracy"}
    assert float(metrics["copy_accuracy"]) == pytest.approx(1 / 8, abs=0.01)  # guessing


# --------------------------------------------------------------------------- temporal order


def test_temporal_order_structure_follows_the_paper_at_length_100():
    length, batch = 100, 2000
    xs, targets = tasks.temporal_order(jax.random.key(0), length, batch, dtype=F32)
    assert xs.shape == (length, batch, 8) and targets.shape == (batch,)
    ids = np.asarray(xs).argmax(axis=-1)
    targets_np = np.asarray(targets)
    np.testing.assert_array_equal(ids[0], 6)  # B
    np.testing.assert_array_equal(ids[-1], 7)  # E
    is_event = (ids == 4) | (ids == 5)
    np.testing.assert_array_equal(is_event.sum(axis=0), 2)
    times = np.sort(np.argwhere(is_event.T)[:, 1].reshape(batch, 2), axis=1)
    assert times[:, 0].min() == 10 and times[:, 0].max() == 20  # [10, 20] as in the paper
    assert times[:, 1].min() == 50 and times[:, 1].max() == 60  # [50, 60]
    order = ids[times[:, 0], np.arange(batch)] - 4, ids[times[:, 1], np.arange(batch)] - 4
    np.testing.assert_array_equal(targets_np, 2 * order[0] + order[1])
    fractions = np.bincount(targets_np, minlength=4) / batch
    np.testing.assert_allclose(fractions, 0.25, atol=0.04)
    task = tasks.TASKS["temporal_order"]
    trivial = task.loss(task.trivial_outputs(xs), targets)
    assert float(trivial) == pytest.approx(math.log(4), rel=1e-6)
    assert task.baseline(length) == tasks.TEMPORAL_ORDER_BASELINE


@pytest.mark.parametrize("length", [4, 11])
def test_temporal_order_short_lengths_keep_events_between_start_and_end(length):
    xs, _ = tasks.temporal_order(jax.random.key(length), length, 200, dtype=F32)
    ids = np.asarray(xs).argmax(axis=-1)
    assert (ids[0] == 6).all() and (ids[-1] == 7).all()
    np.testing.assert_array_equal(((ids == 4) | (ids == 5)).sum(axis=0), 2)


# --------------------------------------------------------------------------- under jit, errors


def test_generators_are_deterministic_in_the_key_and_jit_compatible():
    # Sizes the other tests use, so that nothing compiles twice.
    sizes = {"adding": (2, 5), "copying": (2, 64), "temporal_order": (4, 200)}
    for name, task in tasks.TASKS.items():
        xs, _ = task.sample(jax.random.key(0), *sizes[name])
        again, _ = task.sample(jax.random.key(0), *sizes[name])
        other, _ = task.sample(jax.random.key(1), *sizes[name])
        np.testing.assert_array_equal(xs, again)
        assert not np.array_equal(xs, other)
        assert xs.shape[-1] == task.input_size
    # Inside a user's jit, with the sizes static:
    jitted, _ = jax.jit(tasks.adding_problem, static_argnums=(1, 2))(jax.random.key(0), 2, 5)
    np.testing.assert_array_equal(jitted, tasks.adding_problem(jax.random.key(0), 2, 5)[0])


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: tasks.adding_problem(jax.random.key(0), 1, 4), ValueError, "length must be >= 2"),
        (lambda: tasks.copying_memory(jax.random.key(0), 0, 4), ValueError, "length must be >= 2"),
        (lambda: tasks.temporal_order(jax.random.key(0), 3, 4), ValueError, "length must be >= 4"),
        (lambda: tasks.adding_problem(jax.random.key(0), 10, 0), ValueError, "batch_size"),
        (lambda: tasks.adding_problem(jax.random.key(0), 10.0, 4), TypeError, "Python int"),
        (lambda: tasks.adding_problem(0, 10, 4), TypeError, "key must be one PRNG key"),
        (
            lambda: tasks.copying_memory(jax.random.split(jax.random.key(0)), 10, 4),
            TypeError,
            r"key must be one PRNG key.*key<fry>\[2\]; split a batch",
        ),
        (
            lambda: tasks.adding_problem(jax.random.key(0), 10, 4, dtype=jnp.int32),
            TypeError,
            "dtype must be a floating dtype",
        ),
        (
            lambda: tasks.copying_memory(jax.random.key(0), 10, 4, num_symbols=2.0),
            TypeError,
            "num_symbols must be a positive int",
        ),
        (lambda: tasks.get_task("addding"), ValueError, "Did you mean 'adding'"),
        (lambda: tasks.get_task("sorting"), ValueError, "the tasks are adding, copying"),
    ],
)
def test_bad_arguments_get_clear_messages(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_temporal_order_distractors_are_uniform_over_a_b_c_d():
    xs, _ = tasks.temporal_order(jax.random.key(5), 100, 200)
    ids = np.asarray(xs).argmax(-1)[1:-1]  # between the start and end markers
    counts = np.bincount(ids[ids < 4], minlength=4)
    np.testing.assert_allclose(counts / counts.sum(), 0.25, atol=0.02)


def test_the_task_command_accepts_each_tasks_shortest_length():
    from jaxrnn.commands import task as command

    for task in tasks.TASKS.values():
        command.check_common("lstm", task.min_length, task)


def test_get_task_accepts_dashes():
    assert tasks.get_task("temporal-order") is tasks.TASKS["temporal_order"]
