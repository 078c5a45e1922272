"""The cells' equations written out in NumPy float64: the oracle the JAX cells are tested against.

Written from the equations (DESIGN.md, REFERENCE.md), sharing no code with jaxrnn.
"""

import numpy as np


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def elman_step(p, h, x, activation=np.tanh):
    w_ih, w_hh, b = (np.asarray(a, np.float64) if a is not None else None for a in p)
    pre = x @ w_ih + h @ w_hh
    if b is not None:
        pre = pre + b
    h = activation(pre)
    return h, h


def lstm_step(p, carry, x):
    w_ih, w_hh, b = (np.asarray(a, np.float64) if a is not None else None for a in p)
    h, c = carry
    H = h.shape[-1]
    pre = x @ w_ih + h @ w_hh + (0.0 if b is None else b)
    i = sigmoid(pre[..., 0 * H : 1 * H])
    f = sigmoid(pre[..., 1 * H : 2 * H])
    g = np.tanh(pre[..., 2 * H : 3 * H])
    o = sigmoid(pre[..., 3 * H : 4 * H])
    c = f * c + i * g
    h = o * np.tanh(c)
    return (h, c), h


def gru_step(p, h, x, reset_after=True):
    w_ih, w_hh, b, b_hn = (np.asarray(a, np.float64) if a is not None else None for a in p)
    H = h.shape[-1]
    b = np.zeros(3 * H) if b is None else b
    W_ir, W_iz, W_in = w_ih[:, :H], w_ih[:, H : 2 * H], w_ih[:, 2 * H :]
    W_hr, W_hz, W_hn = w_hh[:, :H], w_hh[:, H : 2 * H], w_hh[:, 2 * H :]
    b_r, b_z, b_n = b[:H], b[H : 2 * H], b[2 * H :]
    r = sigmoid(x @ W_ir + h @ W_hr + b_r)
    z = sigmoid(x @ W_iz + h @ W_hz + b_z)
    if reset_after:
        n = np.tanh(x @ W_in + b_n + r * (h @ W_hn + (0.0 if b_hn is None else b_hn)))
    else:
        n = np.tanh(x @ W_in + (r * h) @ W_hn + b_n)
    h = (1.0 - z) * n + z * h
    return h, h


def run(step, xs, carry, seq_lengths=None, reverse=False):
    """The plain loop of PyTorch's packed sequences: per-sequence stop and reverse start."""
    T = xs.shape[0]
    ys = [None] * T
    for t in reversed(range(T)) if reverse else range(T):
        new_carry, y = step(carry, xs[t])
        if seq_lengths is None:
            carry, ys[t] = new_carry, y
            continue
        valid = (t < np.asarray(seq_lengths))[..., None]
        carry = tuple_map(lambda n, o, valid=valid: np.where(valid, n, o), new_carry, carry)
        ys[t] = np.where(valid, y, 0.0)
    return carry, np.stack(ys)


def tuple_map(fn, a, b):
    if isinstance(a, tuple):
        return tuple(fn(x, y) for x, y in zip(a, b, strict=True))
    return fn(a, b)
