"""Data parallelism: 4 devices train as 1 does, the batch is really split, clear refusals.

Four CPU devices exist only if XLA is told so before JAX starts, hence the subprocess.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxrnn import parallel

SCRIPT = textwrap.dedent(
    r"""
    import io, json, contextlib, sys, tempfile
    import jax, numpy as np
    from jaxrnn import data, parallel, train
    from jaxrnn.cli import main

    TEXT = "the cat sat on the mat. the dog sat on the log. " * 12
    char = data.char_data(TEXT, 4, 8, val_fraction=0.2)
    model = train.CharModel(train.ModelConfig(vocab_size=char.vocab.size, hidden_size=8,
                                              embed_size=4))
    config = train.TrainConfig(batch_size=4, seq_len=8, steps=20, warmup_steps=2,
                               eval_every=20, sample_every=0, patience=0)
    out = {"devices": len(jax.devices())}
    # One compiled initialisation, not dozens of small ones (the values are the same).
    init = jax.jit(lambda key: train.init_state(model, train.make_optimizer(config)[0], 4, key))

    def losses_and_state(n):
        mesh = parallel.make_mesh(n)
        optimizer, schedule = train.make_optimizer(config)
        state = init(jax.random.key(0))
        state = train.put_state(state, mesh)
        step = train.make_train_step(model, optimizer, schedule, mesh=mesh)
        losses = []
        for k in range(config.steps):
            position = k % char.windows_per_epoch
            if position == 0:
                carry = parallel.put_batch(model.zero_carry(4), mesh)
                state = state._replace(carry=carry)
            batch = parallel.put_batch(data.window(char.train, position, 8), mesh)
            if k == 0:  # compiled once, here, and its program read
                step = step.lower(state, *batch).compile()
                out[f"all_reduce_{n}"] = "all-reduce" in step.as_text()
                out[f"all_gather_{n}"] = "all-gather" in step.as_text()
            state, metrics = step(state, *batch)
            losses.append(float(metrics.loss))
        leaf = state.carry.h
        out[f"carry_shard_{n}"] = list(leaf.sharding.shard_shape(leaf.shape))
        out[f"carry_devices_{n}"] = len({s.device for s in leaf.addressable_shards})
        out[f"params_replicated_{n}"] = all(
            x.is_fully_replicated for x in jax.tree.leaves(state.params))
        params = [np.asarray(x).tolist() for x in jax.tree.leaves(state.params)]
        return losses, params

    out["losses_1"], out["params_1"] = losses_and_state(1)
    out["losses_4"], out["params_4"] = losses_and_state(4)

    # The loop of jaxrnn train on all four devices ends where one device did.
    fit_4 = train.fit(model, char, config, state=init(jax.random.key(0)), show_progress=False,
                      log=lambda _: None)
    out["fit_params_4"] = [np.asarray(x).tolist() for x in jax.tree.leaves(fit_4.state.params)]

    # Each cell's fused path, lengths and reverse too, keeps a split batch split: no gather.
    import jax.numpy as jnp
    import jaxrnn
    from jaxrnn import blas
    mesh = parallel.make_mesh(4)
    xs = parallel.put_batch(np.ones((5, 8, 3), np.float32), mesh)
    lengths = parallel.put_batch(np.arange(8, dtype=np.int32) % 6, mesh, axis=0)
    gathered = {}
    for name, cell in {"lstm": jaxrnn.lstm(4), "gru": jaxrnn.gru(4),
                       "gru_before": jaxrnn.gru(4, reset_after=False),
                       "elman": jaxrnn.elman(4)}.items():
        params = cell.init(jax.random.key(0), 3)
        for reverse in (False, True):
            loss = lambda p, x, n: jnp.sum(jnp.sin(
                jaxrnn.unroll(cell, p, x, seq_lengths=n, reverse=reverse)[1]))
            step = jax.jit(parallel.without_custom_calls(jax.grad(loss)))
            text = step.lower(params, xs, lengths).compile().as_text()
            gathered[f"{name}, reverse={reverse}"] = "all-gather" in text
    out["gathered"] = gathered

    # put_batch says so itself for a batch that does not split.
    try:
        parallel.put_batch(np.zeros((8, 6), np.int32), parallel.make_mesh(4))
        out["put_batch_6"] = "accepted"
    except ValueError as error:
        out["put_batch_6"] = str(error)
    out["first_two"] = parallel.make_mesh(2).devices.tolist() == jax.devices()[:2]

    # The command refuses a batch that does not split, and more devices than there are.
    path = tempfile.mktemp(suffix=".txt")
    open(path, "w").write(TEXT)
    for name, flags in {"odd_batch": ["--batch", "6"], "too_many": ["--devices", "8"]}.items():
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(["train", "--text", path, "--hidden", "8", "--seq-len", "8",
                           "--steps", "2", "--no-progress", "--out", tempfile.mkdtemp(), *flags])
        out[name] = [status, err.getvalue()]
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def max_difference(a, b):
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(a, b, strict=True)
    )


def test_four_devices_train_as_one(four_devices):
    out = four_devices
    assert out["devices"] == 4
    assert len(out["losses_1"]) == len(out["losses_4"]) == 20
    np.testing.assert_allclose(out["losses_4"], out["losses_1"], rtol=0, atol=1e-5)
    assert max_difference(out["params_4"], out["params_1"]) <= 1e-5
    # ... and it learnt: the loss fell.
    assert out["losses_1"][-1] < out["losses_1"][0]
    # The same through fit, the loop `jaxrnn train` runs.
    assert max_difference(out["fit_params_4"], out["params_1"]) <= 1e-5


def test_the_batch_is_split_and_the_parameters_replicated(four_devices):
    out = four_devices
    assert out["carry_shard_4"] == [1, 1, 8] and out["carry_devices_4"] == 4  # 4 streams / 4
    assert out["carry_shard_1"] == [1, 4, 8] and out["carry_devices_1"] == 1
    assert out["params_replicated_4"] and out["params_replicated_1"]
    assert out["all_reduce_4"] and not out["all_reduce_1"]  # gradients summed across devices
    # ... and no device gathers the batch to run all of it (oneMKL's custom calls, which
    # have no sharding rule, or a product merging the split batch with time, would).
    assert not out["all_gather_4"]
    assert not any(out["gathered"].values()), out["gathered"]
    assert len(out["gathered"]) == 8


def test_the_command_refuses_what_does_not_split(four_devices):
    status, err = four_devices["odd_batch"]
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "--batch=6 does not divide by the 4 devices" in err and "e.g. 8" in err
    status, err = four_devices["too_many"]
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "--devices 8, but 4 cpu device(s) are visible" in err


def test_put_batch_checks_the_split_and_meshes_take_the_first_devices(four_devices):
    assert "batch_size=6 does not divide by the 4 devices" in four_devices["put_batch_6"]
    assert four_devices["first_two"]


def test_without_custom_calls_refuses_what_is_no_function():
    with pytest.raises(TypeError, match=r"function must be callable .* got int"):
        parallel.without_custom_calls(3)


def test_mesh_and_batch_checks_here():
    mesh = parallel.make_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == len(jax.devices())
    parallel.check_batch(3, parallel.make_mesh(1))
    with pytest.raises(ValueError, match=r"devices=0, but.*; pass a number of devices >= 1"):
        parallel.make_mesh(0)
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        parallel.make_mesh(len(jax.devices()) + 1)
    with pytest.raises(TypeError, match="devices must be an int"):
        parallel.make_mesh(2.0)


def test_single_process_environment_starts_nothing():
    assert parallel.initialize_distributed({}) is False
    assert parallel.initialize_distributed({"SLURM_NTASKS": "1"}) is False
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES must be an integer"):
        parallel.initialize_distributed(
            {"JAX_COORDINATOR_ADDRESS": "localhost:1234", "JAX_NUM_PROCESSES": "two"}
        )
