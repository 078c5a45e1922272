"""Many-to-many: an LSTM forecasts the chaotic Mackey–Glass series, observed with noise.

    python examples/time_series.py [--steps 1500] [--horizon 10] [--plot time_series.png] [--quick]

The Mackey–Glass delay equation (generated in this file, no download)

    dx/dt = β·x(t−τ) / (1 + x(t−τ)^10) − γ·x(t),   β = 0.2, γ = 0.1, τ = 17

is chaotic: small errors grow, so forecasts must read the recent past well.
We observe it once per time unit with Gaussian noise, and at every step t the
network predicts the clean value at t + horizon from the noisy values up to
t (many-to-many: one output per input). Training uses random windows of the
first 70% of the series; the test runs once over the rest, carrying the
state, and is compared with a linear autoregression on the last 20
observations and with persistence (predicting that nothing changes).

Runtime on 2 CPU cores: about 20 seconds. It prints the loss as it falls and
the test RMSE (the series scaled to unit variance) next to the baselines':

    test RMSE 0.036, 10 steps ahead (linear AR(20): 0.484, persistence: 1.259)

and writes a plot of the forecast against the truth to --plot.
"""

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

import jaxrnn
from jaxrnn import optim
from jaxrnn.checkpoint import write_atomically

matplotlib.use("Agg")  # files, never windows
import matplotlib.pyplot as plt

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=1500)
parser.add_argument("--horizon", type=int, default=10, help="how many time units ahead")
parser.add_argument("--noise", type=float, default=0.02, help="observation noise's std")
parser.add_argument(
    "--plot",
    default="time_series.png",
    help="where the figure goes: .png, .pdf, .svg, .eps or .ps (an earlier figure is replaced)",
)
parser.add_argument("--quick", action="store_true", help="a few steps, for the test suite")
args = parser.parse_args()
steps = 5 if args.quick else args.steps

# The figure's file, checked before training: a name matplotlib cannot write, or a
# file that is no earlier figure (matplotlib names itself in each of these formats),
# fails now and is left as it was.
plot = Path(args.plot)
if not plot.suffix:  # matplotlib would add .png: say where it really goes
    plot = plot.with_suffix(".png")
if plot.suffix.lower() not in (".png", ".pdf", ".svg", ".eps", ".ps") or not plot.parent.is_dir():
    parser.error(
        f"--plot {plot}: a .png, .pdf, .svg, .eps or .ps file in an existing folder expected"
    )
if plot.exists() and (not plot.is_file() or b"Matplotlib" not in plot.read_bytes()):
    parser.error(
        f"--plot {plot} exists and is not a figure matplotlib wrote; it would be replaced. "
        "Pass another name, or move that file away."
    )


# ---- data: integrate the delay equation, subsample, add noise -------------------------
def mackey_glass(length, tau=17, beta=0.2, gamma=0.1, n=10, dt=0.1, warmup=500):
    """x(t) at t = 0, 1, ..., length − 1, after a warm-up, by Euler steps of dt."""
    per_unit, delay = round(1 / dt), round(tau / dt)
    total = (length + warmup) * per_unit
    x = np.full(total + delay, 1.2)
    for i in range(delay, total + delay - 1):
        x_tau = x[i - delay]
        x[i + 1] = x[i] + dt * (beta * x_tau / (1 + x_tau**n) - gamma * x[i])
    return x[delay + warmup * per_unit :: per_unit][:length]


series = mackey_glass(3000)
series = (series - series.mean()) / series.std()  # zero mean, unit variance
rng = np.random.default_rng(0)
observed = series + args.noise / 0.23 * rng.standard_normal(
    len(series)
)  # 0.23: the std before scaling
H = args.horizon
inputs, targets = observed[:-H], series[H:]  # at t: see observed[t], predict series[t + H]
split = int(0.7 * len(inputs))

# ---- the model: an LSTM and a linear read-out at every step ---------------------------
hidden_size, window, batch_size = 32, 100, 32
cell = jaxrnn.lstm(hidden_size)
cell_key, head_key = jax.random.split(jax.random.key(0))
params = {
    "cell": cell.init(cell_key, 1),
    "w": jax.random.normal(head_key, (hidden_size, 1)) / np.sqrt(hidden_size),
    "b": jnp.zeros(1),
}


def predict(params, xs, carry=None):
    """xs: (time, *batch) -> predictions of the same shape, and the final carry."""
    carry, hs = jaxrnn.unroll(cell, params["cell"], xs[..., None], carry)
    return (hs @ params["w"] + params["b"])[..., 0], carry


def loss_fn(params, xs, ys):
    predictions, _ = predict(params, xs)
    return jnp.mean((predictions[20:] - ys[20:]) ** 2)  # the first steps only warm the state


schedule = optim.cosine_decay_schedule(1e-2, max(steps, 1), alpha=0.05)
optimizer = optim.chain(optim.clip_by_global_norm(1.0), optim.adam(schedule))
opt_state = optimizer.init(params)


@jax.jit
def train_step(params, opt_state, xs, ys):
    loss, grads = jax.value_and_grad(loss_fn)(params, xs, ys)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optim.apply_updates(params, updates), opt_state, loss


# ---- training on random windows of the first 70% ------------------------------------
start = time.perf_counter()
for step in range(1, steps + 1):
    starts = rng.integers(0, split - window, batch_size)
    xs = np.stack([inputs[s : s + window] for s in starts], axis=1)  # (window, batch)
    ys = np.stack([targets[s : s + window] for s in starts], axis=1)
    params, opt_state, loss = train_step(params, opt_state, xs, ys)
    if step % 250 == 0 or step == steps:
        print(f"step {step:5d}  train MSE {float(loss):.4f}  ({time.perf_counter() - start:.0f} s)")

# ---- test: one pass over the whole series, scored on the last 30% -------------------
predictions, _ = jax.jit(predict)(params, inputs)
predictions = np.asarray(predictions)
test = slice(split, None)
rmse = float(np.sqrt(np.mean((predictions[test] - targets[test]) ** 2)))
persistence = float(np.sqrt(np.mean((inputs[test] - targets[test]) ** 2)))

# A linear autoregression on the last 20 observations, fitted by least squares on the
# first 70%: the classical forecaster, and the bar the LSTM must clear.
lags = 20
past = np.stack([inputs[lags - 1 - k : len(inputs) - k] for k in range(lags)], axis=1)
past = np.concatenate([past, np.ones((len(past), 1))], axis=1)  # row t: inputs[t-19..t], 1
fit_rows = slice(0, split - lags + 1)
coefficients = np.linalg.lstsq(past[fit_rows], targets[lags - 1 :][fit_rows], rcond=None)[0]
ar_predictions = past @ coefficients
ar = float(np.sqrt(np.mean((ar_predictions[split - lags + 1 :] - targets[test]) ** 2)))
print(
    f"test RMSE {rmse:.3f}, {H} steps ahead (linear AR({lags}): {ar:.3f}, "
    f"persistence: {persistence:.3f})"
)

shown = slice(split, split + 300)
time_axis = np.arange(len(inputs))[shown] + H
fig, ax = plt.subplots(figsize=(9, 3.5))
ax.plot(time_axis, targets[shown], color="black", lw=1.5, label="Mackey–Glass (clean)")
ax.plot(time_axis, observed[H:][shown], ".", color="0.6", ms=2, label="observed, noisy")
ax.plot(time_axis, predictions[shown], color="tab:red", lw=1.2, label=f"LSTM, {H} steps ahead")
ax.set_xlabel("time")
ax.set_title(
    f"test RMSE: LSTM {rmse:.3f}, linear AR({lags}) {ar:.3f}, persistence {persistence:.3f}"
)
ax.legend(loc="upper right", fontsize=8)
fig.tight_layout()
# Atomically: a write cut short leaves the earlier figure whole.
write_atomically(plot, lambda file: fig.savefig(file, format=plot.suffix[1:].lower(), dpi=120))
print(f"figure written to {plot}")
