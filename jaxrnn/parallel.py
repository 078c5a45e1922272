"""Data parallelism with ``jax.sharding``: the batch split over devices, the rest replicated.

The training loop builds a one-axis ``Mesh`` (axis ``"data"``) over the visible
devices (or the first ``devices`` of them) and places

- parameters, optimizer state, step and PRNG key *replicated* on every device
  (``NamedSharding(mesh, P())``),
- every batched array (the windows of ids ``(seq_len, batch)`` and the carry
  ``(layers, batch, hidden)``) *split along its batch axis*
  (``NamedSharding(mesh, P(None, "data"))``).

``jax.jit`` compiles one program for all devices from those shardings: each
device runs its slice of the batch and XLA inserts the all-reduce of the
gradients. Nothing here is home-made parallelism; it is the placement only::

    mesh = parallel.make_mesh(4)                 # or None: every visible device
    parallel.check_batch(64, mesh)               # a clear error if 64 % 4 != 0
    state = parallel.put_state(state, mesh)
    inputs = parallel.put_batch(inputs, mesh)    # (seq_len, batch): split on axis 1

Several hosts: call ``initialize_distributed()`` first thing in every process
(``jaxrnn train`` does); ``jax.devices()`` then lists the devices of all hosts
and the same code runs unchanged. See docs/scaling.md.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxrnn import blas

__all__ = [
    "AXIS",
    "batch_sharding",
    "check_batch",
    "initialize_distributed",
    "is_main_process",
    "make_mesh",
    "put_batch",
    "put_replicated",
    "replicated",
    "to_host",
    "without_custom_calls",
]

AXIS = "data"


def without_custom_calls(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` traced with ``jaxrnn.blas`` switched off, for a batch split over devices.

    ``jaxrnn.blas``'s oneMKL custom calls (the CPU's fused loops and matmuls) have
    no sharding rule: in a program whose batch is split over several devices, XLA
    gathers their operands and every device would run the whole batch. XLA's own
    fused path keeps each device on its slice of the batch, with one all-reduce of
    the weight gradients. ``make_train_step`` does this on a mesh of more than one
    device; a sharded program of your own wraps its function the same way.

    Args:
      function: the function to ``jax.jit``, e.g. a training step.

    Returns:
      ``function`` with the same arguments and results, its trace free of
      ``jaxrnn.blas``'s custom calls.

    Raises:
      TypeError: ``function`` is not callable.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxrnn
      >>> from jaxrnn import parallel
      >>> cell = jaxrnn.lstm(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((5, 8, 3))  # (time, batch, input); put_batch would split the batch
      >>> loss = lambda p, xs: jnp.sum(jaxrnn.unroll(cell, p, xs)[1])
      >>> step = jax.jit(parallel.without_custom_calls(jax.grad(loss)))
      >>> "custom_call" in step.lower(params, xs).as_text()
      False
      >>> step(params, xs).w_hh.shape
      (4, 16)
    """
    if not callable(function):
        raise TypeError(
            f"without_custom_calls: function must be callable (the function to jit), got "
            f"{type(function).__name__}."
        )

    @functools.wraps(function)
    def traced_without_custom_calls(*args: Any, **kwargs: Any) -> Any:
        with blas.use(False):  # the switch is read while tracing, i.e. in here
            return function(*args, **kwargs)

    return traced_without_custom_calls


def initialize_distributed(environ: dict[str, str] | None = None) -> bool:
    """Starts ``jax.distributed`` when the environment describes a multi-process job.

    ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0) with
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` configures it explicitly; a
    SLURM or Open MPI job of more than one task is detected by JAX itself. In
    any other case (one process) nothing happens. Call it before any other
    JAX call.

    Args:
      environ: the environment to read; ``os.environ`` if omitted.

    Returns:
      Whether ``jax.distributed.initialize`` was called.
    """
    env = os.environ if environ is None else environ
    if jax.distributed.is_initialized():
        return False
    if env.get("JAX_COORDINATOR_ADDRESS"):
        kwargs: dict[str, Any] = {"coordinator_address": env["JAX_COORDINATOR_ADDRESS"]}
        for name, var in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
            if env.get(var):
                try:
                    kwargs[name] = int(env[var])
                except ValueError:
                    raise ValueError(f"{var} must be an integer, got {env[var]!r}.") from None
        jax.distributed.initialize(**kwargs)
        return True
    for var in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE"):
        if env.get(var, "1").isdigit() and int(env.get(var, "1")) > 1:
            jax.distributed.initialize()
            return True
    return False


def is_main_process() -> bool:
    """Whether this is process 0, the one that writes checkpoints and metrics."""
    return jax.process_index() == 0


def make_mesh(devices: int | None = None) -> Mesh:
    """A one-axis mesh (``"data"``) over the visible devices, or the first ``devices``.

    Args:
      devices: how many devices to use; ``None`` for all of them.

    Raises:
      ValueError: ``devices`` is not between 1 and the number visible.

    Example:
      >>> from jaxrnn import parallel
      >>> mesh = parallel.make_mesh(1)
      >>> mesh.axis_names, mesh.size
      (('data',), 1)
      >>> parallel.check_batch(64, mesh)   # any batch splits over one device
    """
    available = jax.devices()
    if devices is None:
        return Mesh(np.array(available), (AXIS,))
    if isinstance(devices, bool) or not isinstance(devices, int):
        raise TypeError(f"devices must be an int or None, got {type(devices).__name__}.")
    if not 1 <= devices <= len(available):
        hint = ""
        if devices < 1:
            hint = "; pass a number of devices >= 1, or none for all of them"
        elif available[0].platform == "cpu":
            hint = (
                f"; on CPU, XLA_FLAGS=--xla_force_host_platform_device_count={devices} "
                "makes that many"
            )
        raise ValueError(
            f"devices={devices}, but {len(available)} {available[0].platform} device(s) "
            f"are visible{hint}."
        )
    if jax.process_count() > 1 and devices != len(available):
        raise ValueError(
            f"devices={devices}: with {jax.process_count()} processes every device takes "
            f"part ({len(available)}); limit the devices per host with "
            "CUDA_VISIBLE_DEVICES (or the platform's equivalent) instead."
        )
    return Mesh(np.array(available[:devices]), (AXIS,))


def check_batch(batch_size: int, mesh: Mesh, name: str = "batch_size") -> None:
    """Raises a ``ValueError`` naming ``name`` if the batch does not split evenly over ``mesh``.

    Args:
      batch_size: B, the batch to split.
      mesh: the mesh (only its number of devices, ``mesh.size``, is read).
      name: how to call the batch in the message, e.g. a command-line flag.

    Raises:
      ValueError: ``batch_size % mesh.size != 0``; the message proposes a multiple.

    Examples:
      >>> from jax.sharding import AbstractMesh
      >>> from jaxrnn import parallel
      >>> parallel.check_batch(8, parallel.make_mesh(1))  # nothing: every batch splits over 1
      >>> four = AbstractMesh((4,), ("data",))  # the shape of a 4-device mesh, no devices
      >>> parallel.check_batch(8, four)
      >>> parallel.check_batch(6, four)
      Traceback (most recent call last):
        ...
      ValueError: batch_size=6 does not divide by the 4 devices ...; use a multiple of 4 (e.g. 8)...
    """
    n = mesh.size
    if batch_size % n:
        up = math.ceil(batch_size / n) * n
        raise ValueError(
            f"{name}={batch_size} does not divide by the {n} devices the batch is split "
            f"over; use a multiple of {n} (e.g. {up}) or fewer devices (--devices)."
        )


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array.

    Args:
      mesh: the mesh.

    Returns:
      ``NamedSharding(mesh, P())``, for parameters, optimizer state, step and key.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxrnn import parallel
      >>> sharding = parallel.replicated(parallel.make_mesh(1))
      >>> tuple(sharding.spec)
      ()
      >>> jax.device_put(jnp.ones((3, 4)), sharding).sharding.is_fully_replicated
      True
    """
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, axis: int) -> NamedSharding:
    """Arrays split along dimension ``axis`` (the batch) over the mesh's devices.

    Args:
      mesh: the mesh, with axis ``"data"``.
      axis: the batch dimension: 1 for windows ``(seq_len, batch)`` and carries
        ``(layers, batch, hidden)``.

    Returns:
      ``NamedSharding(mesh, P(None, ..., "data"))`` with ``axis`` leading ``None``.

    Examples:
      >>> from jaxrnn import parallel
      >>> mesh = parallel.make_mesh(1)
      >>> tuple(parallel.batch_sharding(mesh, 1).spec), tuple(parallel.batch_sharding(mesh, 0).spec)
      ((None, 'data'), ('data',))
    """
    return NamedSharding(mesh, P(*([None] * axis), AXIS))


def _is_key(leaf: Any) -> bool:
    return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _place(leaf: Any, sharding: NamedSharding) -> Any:
    """A global array of ``leaf``'s value with ``sharding``; every process passes the same value."""
    if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
        return leaf
    if jax.process_count() == 1:  # every device is this process's: a plain transfer
        return jax.device_put(leaf, sharding)
    if _is_key(leaf):
        data = _place(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    value = np.asarray(leaf)
    return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    """Places every leaf of ``tree`` whole on every device of ``mesh``."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda leaf: _place(leaf, sharding), tree)


def put_batch(tree: Any, mesh: Mesh, axis: int = 1) -> Any:
    """Splits every leaf of ``tree`` along dimension ``axis`` (the batch) over ``mesh``.

    Each process passes the whole batch (the same on every host); each device
    receives its slice.

    Args:
      tree: a pytree of arrays, each with the batch at dimension ``axis``, e.g.
        windows ``(seq_len, batch)`` or a carry with leaves ``(layers, batch, hidden)``.
      mesh: the mesh, with axis ``"data"``; the batch must divide by ``mesh.size``.
      axis: the batch dimension.

    Returns:
      The tree of global arrays, of the same shapes, with ``batch_sharding(mesh, axis)``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import parallel
      >>> mesh = parallel.make_mesh(1)
      >>> windows = {"inputs": jnp.zeros((4, 2), jnp.int32), "targets": jnp.ones((4, 2), jnp.int32)}
      >>> placed = parallel.put_batch(windows, mesh)
      >>> placed["inputs"].shape, tuple(placed["inputs"].sharding.spec)
      ((4, 2), (None, 'data'))
      >>> placed["targets"].sharding == parallel.batch_sharding(mesh, 1)
      True
    """
    sharding = batch_sharding(mesh, axis)

    def place(leaf: Any) -> Any:
        check_batch(np.shape(leaf)[axis], mesh)  # its one-line message, not JAX's
        return _place(leaf, sharding)

    return jax.tree.map(place, tree)


def to_host(tree: Any) -> Any:
    """The tree with every leaf whole and readable by this process (for a checkpoint).

    On one host the arrays already are; with several, the slices of the other
    hosts are gathered (a collective: every process must call it).
    """
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    def gather(leaf: Any) -> Any:
        if _is_key(leaf):
            data = gather(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        if not isinstance(leaf, jax.Array) or leaf.is_fully_replicated:
            return leaf
        return multihost_utils.process_allgather(leaf, tiled=True)

    return jax.tree.map(gather, tree)
