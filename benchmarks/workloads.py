"""The named benchmark workloads: sizes, data, and the loss every contender computes.

A workload is one recurrent layer (or a small model) at fixed sizes. Each
contender (``contenders.py``) builds two functions for it, timed apart:

- ``forward``: the outputs ``ys`` of every step, from a zero initial state
  (for ``char-lstm-train``: the loss, i.e. inference);
- ``train``: the gradient of ``sum(ys)`` with respect to every parameter
  (for ``char-lstm-train``: a whole training step, the forward and backward
  passes, global-norm clipping and an Adam update).

Inputs are float32, time-major ``(time, batch, input_size)``, drawn once and
shared by all contenders; no contender pays for a transfer inside the timing.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["GATES", "WORKLOADS", "Workload", "tiny"]

GATES = {"lstm": 4, "gru": 3, "elman": 1}
"""Blocks of H columns in a cell's weights: the LSTM's i f g o, the GRU's r z n."""


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark: a cell kind at fixed sizes.

    Attributes:
      name: the name on the command line and in the results.
      cell: ``"lstm"``, ``"gru"`` or ``"elman"`` (tanh).
      time: T, the sequence length.
      batch: B.
      input_size: I (for ``char-lstm-train``, the vocabulary: one-hot inputs).
      hidden_size: H.
      num_layers: stacked layers.
      train_step: a full training step of a character model (softmax output
        layer, cross-entropy, clipping to global norm 1, Adam 1e-3) instead of
        the gradient of ``sum(ys)`` of one layer.
      gpu_only: skipped on a CPU.
      about: one line for the table.
    """

    name: str
    cell: str
    time: int
    batch: int
    input_size: int
    hidden_size: int
    num_layers: int = 1
    train_step: bool = False
    gpu_only: bool = False
    about: str = ""

    def inputs(self, seed: int = 0) -> dict[str, np.ndarray]:
        """The data every contender gets: ``xs`` (T, B, I) float32; ``targets`` (T, B) ints."""
        rng = np.random.default_rng(seed)
        if self.train_step:
            tokens = rng.integers(0, self.input_size, size=(self.time + 1, self.batch))
            xs = np.eye(self.input_size, dtype=np.float32)[tokens[:-1]]  # one-hot
            return {"xs": xs, "targets": tokens[1:].astype(np.int32)}
        xs = rng.standard_normal((self.time, self.batch, self.input_size), dtype=np.float32)
        return {"xs": xs}

    def matmul_flops(self, pass_: str) -> int:
        """Floating-point operations (2 per multiply-add) of the matrix products of a
        ``"forward"`` or ``"train"`` pass, the work no implementation can skip.

        Per layer l and step: ``x_t @ W_ih`` of shape (B, I_l) x (I_l, G H) and
        ``h @ W_hh``, (B, H) x (H, G H), G the cell's gate blocks (:data:`GATES`), I_l
        the input size for the first layer and H above; with ``train_step`` the output
        layer's (B, H) x (H, I) too. A training pass (the gradients of the parameters)
        adds each product's two gradients, products of its size, but for the gradient
        of the inputs ``xs`` (none is asked for). The elementwise work (gates,
        activations, loss, optimizer) is left out.

        Examples:
          >>> lstm = WORKLOADS["lstm"]  # T=100, B=32, I=128, H=256
          >>> lstm.matmul_flops("forward") == 2 * 100 * 32 * (128 + 256) * 4 * 256
          True
          >>> lstm.matmul_flops("train") / 1e9
          6.7108864
          >>> lstm.matmul_flops("backward")
          Traceback (most recent call last):
          ValueError: pass_ is 'forward' or 'train', got 'backward'
        """
        if pass_ not in ("forward", "train"):
            raise ValueError(f"pass_ is 'forward' or 'train', got {pass_!r}")
        G, T, B, H = GATES[self.cell], self.time, self.batch, self.hidden_size
        inputs = [self.input_size] + [H] * (self.num_layers - 1)
        forward = sum(2 * T * B * (i + H) * G * H for i in inputs)
        if self.train_step:
            forward += 2 * T * B * H * self.input_size
        if pass_ == "forward":
            return forward
        return 3 * forward - 2 * T * B * self.input_size * G * H

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "time": self.time,
            "batch": self.batch,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
        }


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload("lstm", "lstm", 100, 32, 128, 256, about="one LSTM layer"),
        Workload("gru", "gru", 100, 32, 128, 256, about="one GRU layer (reset after)"),
        Workload("elman", "elman", 100, 32, 128, 256, about="one tanh RNN layer"),
        Workload("lstm-512", "lstm", 25, 64, 512, 512, about="DeepBench's LSTM shape"),
        Workload(
            "char-lstm-train",
            "lstm",
            128,
            32,
            96,
            512,
            num_layers=2,
            train_step=True,
            about="training step: 2-layer LSTM, one-hot vocab 96, Adam, clipping",
        ),
        Workload(
            "lstm-long",
            "lstm",
            1024,
            16,
            768,
            768,
            gpu_only=True,
            about="long sequences (GPU only)",
        ),
    ]
}


def tiny(workload: Workload) -> Workload:
    """The same workload at toy sizes: for smoke tests of the harness, never for timing."""
    return dataclasses.replace(
        workload,
        time=5,
        batch=2,
        input_size=7 if workload.train_step else 6,
        hidden_size=8,
        gpu_only=False,
    )
