"""Each optimizer, with hyper-parameters chosen for it, finds the Rosenbrock minimum."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
import pytest
from optim_cases import OPTIMIZER_NAMES, rosenbrock, trajectory

from jaxrnn import optim

STEPS = 10_000
START = (-1.2, 1.0)  # Rosenbrock's own starting point, 2.2 from the minimum


def _cosine(peak: float) -> optim.Schedule:
    return optim.cosine_decay_schedule(peak, decay_steps=STEPS, alpha=0.01)


# Chosen per optimizer: the valley is narrow and curved, and one learning rate
# does not suit all. The sign-like steps of RMSprop and the Adam family keep
# bouncing across the valley at a constant learning rate, so theirs decays;
# Adadelta needs a tiny eps and a learning rate below its nominal 1.
SETTINGS: dict[str, dict[str, Any]] = {
    "sgd": dict(learning_rate=1e-3, momentum=0.9),
    "adagrad": dict(learning_rate=1.0),
    "rmsprop": dict(learning_rate=_cosine(1e-3)),
    "adadelta": dict(learning_rate=0.3, rho=0.9, eps=1e-8),
    "adam": dict(learning_rate=_cosine(0.02)),
    "adamw": dict(learning_rate=_cosine(0.02), weight_decay=1e-4),
    "adamax": dict(learning_rate=_cosine(0.05)),
    "nadam": dict(learning_rate=_cosine(0.02)),
}


def test_every_optimizer_has_settings() -> None:
    assert sorted(SETTINGS) == OPTIMIZER_NAMES


@pytest.mark.parametrize("name", OPTIMIZER_NAMES)
def test_converges_on_rosenbrock(name: str) -> None:
    tx = getattr(optim, name)(**SETTINGS[name])
    start = jnp.asarray(START, jnp.float32)
    path = np.asarray(trajectory(tx, optim.apply_updates, rosenbrock, start, STEPS))

    assert np.all(np.isfinite(path))
    assert np.linalg.norm(path[-1] - 1.0) < 0.02
    assert float(rosenbrock(jnp.asarray(path[-1]))) < 2e-3
