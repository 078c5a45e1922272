"""Shared test set-up: float64 available, hypothesis kept quick and reproducible."""

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Float64 oracles and check_grads need x64; every test passes explicit dtypes.
jax.config.update("jax_enable_x64", True)
# The float32 oracles (PyTorch, NumPy) need float32 matmuls: on GPUs JAX's default
# lets them round their inputs to TensorFloat-32, on TPUs to bfloat16 (CPUs ignore it).
jax.config.update("jax_default_matmul_precision", "float32")

settings.register_profile(
    "jaxrnn",
    deadline=None,  # the first example of a shape pays for compilation
    max_examples=20,
    derandomize=True,  # the same draws on every run and every machine
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("jaxrnn")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
