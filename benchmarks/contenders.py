"""The contenders, each written the way its users write it, for every workload.

- ``jaxrnn``: ``jaxrnn.unroll`` (``StackedRNN`` for the character model), fused path.
- ``jaxrnn-xla``: the same with ``jaxrnn.blas`` switched off (CPU only): XLA's
  own dot for every matmul instead of the BLAS's (oneMKL, and oneDNN for float32
  on CPUs not Intel's); it shows what they are worth.
- ``jaxrnn-autodiff``: the same with ``fused=False``: autodiff of the cell's
  step under ``lax.scan`` (the input projection still hoisted), to show what
  the fused backward pass is worth.
- ``flax``: linen ``nn.RNN`` with ``OptimizedLSTMCell``, ``GRUCell`` or ``SimpleCell``.
- ``equinox``: ``eqx.nn.LSTMCell``/``GRUCell`` under ``lax.scan`` and ``jax.vmap``
  (equinox has no Elman cell).
- ``pytorch``: ``nn.LSTM``/``nn.GRU``/``nn.RNN`` with all cores; on a GPU, cuDNN.
  On a CPU, PyTorch runs these layers as oneDNN's fused RNN primitive (a
  JIT-compiled kernel for the whole layer) when ``torch.backends.mkldnn`` is
  enabled, as it is by default.
- ``pytorch-aten``: the same with ``torch.backends.mkldnn`` disabled (CPU only):
  PyTorch's own loop of ATen ops per step, a projection matmul before it like
  jaxrnn's; it shows what the oneDNN primitive is worth.
- ``jax-cudnn``: ``jax.experimental.rnn``'s cuDNN LSTM (GPU only, LSTM layers only).

``build(name, workload, data, pass_)`` returns a ``Bench``: the compile time
(JAX contenders; PyTorch compiles nothing), a ``call`` that runs once and waits
for the result, and XLA's temporary memory or PyTorch's peak on a GPU.
Libraries are imported only when their contender is built.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from workloads import Workload

__all__ = ["CONTENDERS", "Bench", "build", "unavailable"]

CONTENDERS = {
    "jaxrnn": "jaxrnn",
    "jaxrnn-xla": "jaxrnn XLA dot",
    "jaxrnn-autodiff": "jaxrnn autodiff",
    "pytorch": "PyTorch",
    "pytorch-aten": "PyTorch ATen",
    "flax": "flax linen",
    "equinox": "equinox",
    "jax-cudnn": "jax cuDNN",
}
PASSES = ("forward", "train")
# XLA options for every JAX contender; ``run.py --tiny`` turns the backend's
# optimisations off there, to smoke-test the harness quickly.
COMPILER_OPTIONS: dict[str, Any] = {}


@dataclasses.dataclass
class Bench:
    """One contender ready to time: ``call()`` runs once and blocks until done."""

    call: Callable[[], None]
    compile_s: float | None = None
    memory_bytes: int | None = None
    memory_kind: str | None = None


def unavailable(name: str, workload: Workload, backend: str) -> str | None:
    """Why ``name`` cannot run ``workload`` here, or ``None`` if it can."""
    if name == "equinox" and workload.cell == "elman":
        return "equinox has no Elman cell"
    if name == "pytorch-aten" and backend == "gpu":
        return "the oneDNN switch concerns PyTorch's CPU path only"
    if name == "jaxrnn-xla":
        from jaxrnn import blas

        if backend != "cpu":
            return "jaxrnn.blas concerns CPUs only"
        if not blas.available():
            return f"the same as jaxrnn here: {blas.status()}"
    if name == "jax-cudnn":
        if backend != "gpu":
            return "cuDNN needs a GPU"
        if workload.cell != "lstm" or workload.train_step:
            return "jax.experimental.rnn has only an LSTM layer"
    modules = {"pytorch": "torch", "pytorch-aten": "torch", "flax": "flax", "equinox": "equinox"}
    module = modules.get(name)
    if module is not None:
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[dev]')"
    if name == "pytorch" and backend == "gpu":
        import torch

        if not torch.cuda.is_available():  # its CPU path would spend the GPU run's time
            return "this PyTorch sees no CUDA device"
    return None


def build(name: str, workload: Workload, data: dict[str, Any], pass_: str) -> Bench:
    """Builds (and for JAX, compiles) contender ``name`` for one workload and pass."""
    if name in ("pytorch", "pytorch-aten"):
        return _pytorch(workload, data, pass_, onednn=name == "pytorch")
    if name == "jaxrnn-xla":
        from jaxrnn import blas

        with blas.use(False):  # read while tracing, which build does
            return build("jaxrnn", workload, data, pass_)
    if workload.train_step:
        model = {"jaxrnn": _jaxrnn_char, "jaxrnn-autodiff": _jaxrnn_char, "flax": _flax_char}
        model.update(equinox=_equinox_char)
        init, loss = model[name](workload, fused=name == "jaxrnn")
        return _jax_train_step(init, loss, data, pass_)
    layer = {
        "jaxrnn": _jaxrnn_layer,
        "jaxrnn-autodiff": _jaxrnn_layer,
        "flax": _flax_layer,
        "equinox": _equinox_layer,
        "jax-cudnn": _cudnn_layer,
    }
    params, forward = layer[name](workload, fused=name == "jaxrnn")
    return _jax_layer(params, forward, data["xs"], pass_)


# --------------------------------------------------------------------------- JAX harness


def _compile(fn: Callable, *args: Any, donate: tuple[int, ...] = ()):
    import jax

    start = time.perf_counter()
    lowered = jax.jit(fn, donate_argnums=donate).lower(*args)
    compiled = lowered.compile(compiler_options=COMPILER_OPTIONS or None)
    seconds = time.perf_counter() - start
    analysis = compiled.memory_analysis()
    temp = None if analysis is None else int(analysis.temp_size_in_bytes)
    return compiled, seconds, temp


def _jax_layer(params: Any, forward: Callable, xs_host: Any, pass_: str) -> Bench:
    import jax
    import jax.numpy as jnp

    xs = jax.device_put(xs_host)
    if pass_ == "forward":
        fn = forward
    else:

        def fn(params, xs):
            return jax.grad(lambda p: jnp.sum(forward(p, xs)))(params)

    compiled, seconds, temp = _compile(fn, params, xs)
    return Bench(lambda: jax.block_until_ready(compiled(params, xs)), seconds, temp, "XLA temp")


def _jax_train_step(init: Callable, loss: Callable, data: dict[str, Any], pass_: str) -> Bench:
    """A character model: ``loss(params, xs, targets)``, trained with clipping and Adam."""
    import jax

    params, tx = init()
    xs, targets = jax.device_put(data["xs"]), jax.device_put(data["targets"])
    if pass_ == "forward":
        compiled, seconds, temp = _compile(loss, params, xs, targets)
        return Bench(
            lambda: jax.block_until_ready(compiled(params, xs, targets)), seconds, temp, "XLA temp"
        )

    def step(params, opt_state, xs, targets):
        value, grads = jax.value_and_grad(loss)(params, xs, targets)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        return params, opt_state, value

    state = [params, tx.init(params)]
    # Parameters and optimizer state are donated, as in a training loop.
    compiled, seconds, temp = _compile(step, *state, xs, targets, donate=(0, 1))

    def call():
        # Waits for every output: the loss is known before the backward pass and the
        # update that make the new parameters and optimizer state.
        state[0], state[1], value = compiled(state[0], state[1], xs, targets)
        jax.block_until_ready((state[0], state[1], value))

    return Bench(call, seconds, temp, "XLA temp")


# --------------------------------------------------------------------------- one layer


def _jaxrnn_layer(w: Workload, fused: bool):
    import jax

    import jaxrnn

    cell = {"lstm": jaxrnn.lstm, "gru": jaxrnn.gru, "elman": jaxrnn.elman}[w.cell](w.hidden_size)
    params = cell.init(jax.random.key(0), w.input_size)

    def forward(params, xs):
        return jaxrnn.unroll(cell, params, xs, fused=fused)[1]

    return params, forward


def _flax_layer(w: Workload, fused: bool):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    cell = {"lstm": nn.OptimizedLSTMCell, "gru": nn.GRUCell, "elman": nn.SimpleCell}[w.cell]
    model = nn.RNN(cell(features=w.hidden_size), time_major=True)
    sample = jnp.zeros((w.time, w.batch, w.input_size), jnp.float32)
    params = model.init(jax.random.key(0), sample)
    return params, model.apply


def _equinox_layer(w: Workload, fused: bool):
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    from jax import lax

    make = {"lstm": eqx.nn.LSTMCell, "gru": eqx.nn.GRUCell}[w.cell]
    cell = make(w.input_size, w.hidden_size, dtype=jnp.float32, key=jax.random.key(0))
    params, static = eqx.partition(cell, eqx.is_array)
    zeros = jnp.zeros((w.batch, w.hidden_size), jnp.float32)

    def forward(params, xs):
        cell = eqx.combine(params, static)

        def step(carry, x):
            carry = jax.vmap(cell)(x, carry)
            return carry, carry[0] if w.cell == "lstm" else carry

        return lax.scan(step, (zeros, zeros) if w.cell == "lstm" else zeros, xs)[1]

    return params, forward


def _cudnn_layer(w: Workload, fused: bool):
    import jax
    import jax.numpy as jnp
    from jax.experimental import rnn

    weights = rnn.init_lstm_weight(jax.random.key(0), w.input_size, w.hidden_size, 1, False)
    zeros = jnp.zeros((1, w.batch, w.hidden_size), jnp.float32)
    lengths = jnp.full((w.batch,), w.time, jnp.int32)

    def forward(weights, xs):
        x = jnp.swapaxes(xs, 0, 1)  # cuDNN's layer is batch-major
        ys, _, _ = rnn.lstm(
            x, zeros, zeros, weights, lengths, w.input_size, w.hidden_size, 1, 0.0, False
        )
        return ys

    return weights, forward


# --------------------------------------------------------------------------- character model


def _cross_entropy(logits, targets):
    import jax
    import jax.numpy as jnp

    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, targets[..., None], axis=-1))


def _dense_init(key, fan_in: int, fan_out: int):
    import jax
    import jax.numpy as jnp

    bound = 1.0 / fan_in**0.5
    w = jax.random.uniform(key, (fan_in, fan_out), jnp.float32, -bound, bound)
    return {"w": w, "b": jnp.zeros((fan_out,), jnp.float32)}


def _jaxrnn_char(w: Workload, fused: bool):
    import jax

    import jaxrnn
    from jaxrnn import optim

    model = jaxrnn.StackedRNN(jaxrnn.lstm(w.hidden_size), num_layers=w.num_layers)

    def init():
        k_rnn, k_out = jax.random.split(jax.random.key(0))
        params = {
            "rnn": model.init(k_rnn, w.input_size),
            "out": _dense_init(k_out, w.hidden_size, w.input_size),
        }
        return params, optim.chain(optim.clip_by_global_norm(1.0), optim.adam(1e-3))

    def loss(params, xs, targets):
        _, ys = model.apply(params["rnn"], xs, fused=fused)
        return _cross_entropy(ys @ params["out"]["w"] + params["out"]["b"], targets)

    return init, loss


def _flax_char(w: Workload, fused: bool):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import optax

    class CharModel(nn.Module):
        @nn.compact
        def __call__(self, xs):
            for _ in range(w.num_layers):
                xs = nn.RNN(nn.OptimizedLSTMCell(w.hidden_size), time_major=True)(xs)
            return nn.Dense(w.input_size)(xs)

    model = CharModel()

    def init():
        sample = jnp.zeros((w.time, w.batch, w.input_size), jnp.float32)
        params = model.init(jax.random.key(0), sample)
        return params, optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))

    def loss(params, xs, targets):
        return _cross_entropy(model.apply(params, xs), targets)

    return init, loss


def _equinox_char(w: Workload, fused: bool):
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax
    from jax import lax

    keys = jax.random.split(jax.random.key(0), w.num_layers + 1)
    sizes = [w.input_size] + [w.hidden_size] * (w.num_layers - 1)
    modules = [
        eqx.nn.LSTMCell(n, w.hidden_size, dtype=jnp.float32, key=k)
        for n, k in zip(sizes, keys, strict=False)
    ]
    modules.append(eqx.nn.Linear(w.hidden_size, w.input_size, dtype=jnp.float32, key=keys[-1]))
    params, static = eqx.partition(modules, eqx.is_array)
    zeros = jnp.zeros((w.batch, w.hidden_size), jnp.float32)

    def init():
        return params, optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3))

    def loss(params, xs, targets):
        *cells, head = eqx.combine(params, static)
        for cell in cells:

            def step(carry, x, cell=cell):
                carry = jax.vmap(cell)(x, carry)
                return carry, carry[0]

            xs = lax.scan(step, (zeros, zeros), xs)[1]
        return _cross_entropy(jax.vmap(jax.vmap(head))(xs), targets)

    return init, loss


# --------------------------------------------------------------------------- PyTorch


def _pytorch(w: Workload, data: dict[str, Any], pass_: str, *, onednn: bool = True) -> Bench:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    layer_type = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "elman": torch.nn.RNN}[w.cell]
    layer = layer_type(w.input_size, w.hidden_size, num_layers=w.num_layers).to(device)
    xs = torch.from_numpy(data["xs"]).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    head = optimizer = targets = None
    if w.train_step:
        head = torch.nn.Linear(w.hidden_size, w.input_size).to(device)
        targets = torch.from_numpy(data["targets"]).long().to(device).reshape(-1)
        parameters = [*layer.parameters(), *head.parameters()]
        optimizer = torch.optim.Adam(parameters, lr=1e-3)

    def loss():
        ys, _ = layer(xs)
        if head is None:
            return ys.sum()
        logits = head(ys).reshape(-1, w.input_size)
        return torch.nn.functional.cross_entropy(logits, targets)

    if pass_ == "forward":

        def call():
            with torch.no_grad():
                if head is None:
                    layer(xs)
                else:
                    loss()
            sync()

    else:

        def call():
            layer.zero_grad(set_to_none=True)
            if optimizer is None:
                loss().backward()
            else:
                optimizer.zero_grad(set_to_none=True)
                loss().backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimizer.step()
            sync()

    if not onednn:
        plain_call = call

        def call():
            # Not ``torch.backends.mkldnn.flags(...)``: it also sets a TF32 option and
            # warns that this build has no Intel GPU.
            was_enabled = torch.backends.mkldnn.enabled
            torch.backends.mkldnn.enabled = False
            try:
                plain_call()
            finally:
                torch.backends.mkldnn.enabled = was_enabled

    memory = kind = None
    if device == "cuda":
        call()
        torch.cuda.reset_peak_memory_stats()
        call()
        memory, kind = int(torch.cuda.max_memory_allocated()), "CUDA peak"
    return Bench(call, None, memory, kind)
