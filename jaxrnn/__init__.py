"""jaxrnn: recurrent neural networks in JAX.

Cells are pure ``step(params, carry, x) -> (carry, y)`` functions; ``unroll``
runs them over time-major sequences with ``jax.lax.scan``; ``StackedRNN``
stacks layers in one or two directions, as PyTorch's ``nn.LSTM`` does.
"""

from jaxrnn import baselines, checkpoint, data, init, interop, optim, probes, tasks, train
from jaxrnn.cells import (
    Cell,
    CellSpec,
    ElmanParams,
    GRUParams,
    LSTMCarry,
    LSTMParams,
    elman,
    gru,
    lstm,
)
from jaxrnn.recurrent import StackedRNN, unroll

__version__ = "0.1.0"

__all__ = [
    "Cell",
    "CellSpec",
    "ElmanParams",
    "GRUParams",
    "LSTMCarry",
    "LSTMParams",
    "StackedRNN",
    "baselines",
    "checkpoint",
    "data",
    "elman",
    "gru",
    "init",
    "interop",
    "lstm",
    "optim",
    "probes",
    "tasks",
    "train",
    "unroll",
]
