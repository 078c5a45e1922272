"""Every optimizer and option: whole 200-step trajectories equal optax's and PyTorch's.

optax is the oracle for every case; `torch.optim` for the cases where PyTorch
runs the same algorithm. All the cases' trajectories on one problem advance
in one jitted `lax.scan` (see `optim_cases.all_trajectories`), so the whole
registry compiles four times, not two hundred.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from optim_cases import CASES, PROBLEMS, Case, all_trajectories, problem, relative_error

STEPS = 200
# Relative to the largest parameter at each step; see `relative_error`.
TOLERANCE = {jnp.float32: 1e-6, jnp.float64: 1e-12}
# PyTorch arranges the same arithmetic differently (its Adam divides by
# √(1 − β₂ᵗ) apart, its Adadelta multiplies (1 − ρ)·g·g in another order): its
# steps differ from ours by float64 rounding, ~1e-16, which 200 steps of the
# LSTM's nonlinear dynamics amplify to at most 3e-11 (Adadelta, measured).
TORCH_TOLERANCE = 1e-10


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("problem_name", sorted(PROBLEMS))
@pytest.mark.parametrize("case", CASES, ids=str)
def test_trajectory_equals_optax(case: Case, problem_name: str, dtype: Any) -> None:
    ours, theirs = all_trajectories(problem_name, dtype, STEPS)[str(case)]

    for leaf in jax.tree.leaves(ours):
        assert leaf.dtype == dtype
        assert np.all(np.isfinite(leaf)), "the trajectory diverged: pick a smaller step"
    assert relative_error(ours, theirs) <= TOLERANCE[dtype]
    # The parameters must move, or equal trajectories would prove nothing.
    _, start = problem(problem_name, dtype)
    end = jax.tree.map(lambda t: t[-1:], ours)
    assert relative_error(end, jax.tree.map(lambda p: p[None], start)) > 1e-2


# ------------------------------------------------------------------------ PyTorch


def _torch_optimizer(case: Case, tensors: list[Any]) -> Any:
    """PyTorch's optimizer running the same algorithm as `case`, or None."""
    import torch

    o = case.options
    lr = o.get("learning_rate")
    if not isinstance(lr, float):
        return None  # jaxrnn/optax schedules have no direct torch.optim counterpart
    betas = (o.get("b1"), o.get("b2"))
    if case.name == "sgd":
        momentum = o["momentum"] or 0.0
        return torch.optim.SGD(
            tensors, lr=lr, momentum=momentum, nesterov=o["nesterov"], foreach=False
        )
    if case.name == "adagrad" and o["eps"] == 0.0:
        # PyTorch adds eps outside the root, optax inside: equal when eps = 0.
        return torch.optim.Adagrad(
            tensors,
            lr=lr,
            initial_accumulator_value=o["initial_accumulator_value"],
            eps=0.0,
            foreach=False,
        )
    if case.name == "rmsprop" and not o["eps_in_sqrt"] and not o["bias_correction"]:
        if o["initial_scale"] != 0.0 or o["nesterov"]:
            return None
        return torch.optim.RMSprop(
            tensors,
            lr=lr,
            alpha=o["decay"],
            eps=o["eps"],
            momentum=o["momentum"] or 0.0,
            centered=o["centered"],
            foreach=False,
        )
    if case.name == "adadelta":
        return torch.optim.Adadelta(tensors, lr=lr, rho=o["rho"], eps=o["eps"], foreach=False)
    if o.get("eps_root", 0.0) != 0.0:
        return None  # PyTorch's Adam family has no eps inside the root
    if case.name == "adam":
        return torch.optim.Adam(tensors, lr=lr, betas=betas, eps=o["eps"], foreach=False)
    if case.name == "adamw" and isinstance(o["weight_decay"], float):
        return torch.optim.AdamW(
            tensors, lr=lr, betas=betas, eps=o["eps"], weight_decay=o["weight_decay"], foreach=False
        )
    if case.name == "adamax":
        return torch.optim.Adamax(tensors, lr=lr, betas=betas, eps=o["eps"], foreach=False)
    return None  # e.g. nadam: PyTorch's NAdam adds a momentum-decay schedule


@functools.cache
def _jitted_grad(problem_name: str) -> Any:
    loss, _ = problem(problem_name, jnp.float64)
    return jax.jit(jax.grad(loss))


def _torch_trajectory(case: Case, problem_name: str, steps: int) -> Any:
    """PyTorch's trajectory, with the gradients taken by JAX at PyTorch's parameters."""
    import torch

    _, params = problem(problem_name, jnp.float64)
    grad = _jitted_grad(problem_name)
    leaves, treedef = jax.tree.flatten(params)
    tensors = [torch.tensor(np.asarray(leaf), requires_grad=True) for leaf in leaves]
    optimizer = _torch_optimizer(case, tensors)
    if optimizer is None:
        pytest.skip(f"torch.optim runs a different algorithm from {case}")
    history = []
    for _ in range(steps):
        current = treedef.unflatten([jnp.asarray(t.detach().numpy()) for t in tensors])
        for t, g in zip(tensors, jax.tree.leaves(grad(current)), strict=True):
            t.grad = torch.from_numpy(np.array(g))
        optimizer.step()
        history.append([t.detach().numpy().copy() for t in tensors])
    return treedef.unflatten([np.stack(leaf) for leaf in zip(*history, strict=True)])


def _has_torch_counterpart(case: Case) -> bool:
    import torch

    return _torch_optimizer(case, [torch.zeros(1, requires_grad=True)]) is not None


TORCH_CASES = [c for c in CASES if _has_torch_counterpart(c)]


@pytest.mark.parametrize("problem_name", sorted(PROBLEMS))
@pytest.mark.parametrize("case", TORCH_CASES, ids=str)
def test_trajectory_equals_torch_float64(case: Case, problem_name: str) -> None:
    ours, _ = all_trajectories(problem_name, jnp.float64, STEPS)[str(case)]
    theirs = _torch_trajectory(case, problem_name, STEPS)
    assert relative_error(ours, theirs) <= TORCH_TOLERANCE


def test_torch_covers_the_algorithms_pytorch_shares() -> None:
    covered = {c.name for c in TORCH_CASES}
    assert covered == {"sgd", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "adamax"}
    labels = {str(c) for c in TORCH_CASES}
    assert {
        "sgd-momentum",
        "sgd-nesterov",
        "rmsprop-pytorch",
        "rmsprop-pytorch-centered-momentum",
        "adadelta",
    } <= labels
