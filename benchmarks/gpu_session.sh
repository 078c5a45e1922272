#!/usr/bin/env bash
# Everything the GPU targets of the speed work need, as one command on a machine
# with an NVIDIA GPU where JAX (CUDA), PyTorch (CUDA), flax and equinox are
# installed and jaxrnn is not (the project's device machines are such):
#
#     bash benchmarks/gpu_session.sh                  # results in ./gpu-results, or $OUT
#     STEPS="tests unroll" bash benchmarks/gpu_session.sh   # only these steps
#
# Four steps, the most needed first, each under a time limit of its own (about
# 9.5 minutes in all), so that one that hangs or fails leaves the others theirs;
# each writes its log (and the benchmarks their JSON lines and tables) as it
# goes, so a run cut short still returns what it measured:
#
#   machine  the GPU, the libraries' versions, and a smoke test: jaxrnn's fused
#            LSTM against autodiff of its step, on the GPU, in float32 matmuls
#   bench    benchmarks/run.py: every workload (lstm-long too) against flax,
#            equinox, PyTorch on cuDNN and jax.experimental.rnn's cuDNN LSTM,
#            with the compile-time sweep
#   tests    the fused path and the PyTorch conversions, on the GPU
#   unroll   benchmarks/unroll_sweep.py at lstm-long, for
#            jaxrnn.fused._DEFAULT_UNROLL["gpu"]
#
# Each library runs at its defaults, as its users run it: JAX's matmuls and
# cuDNN's layers may use TensorFloat-32. The tests ask for float32 matmuls
# (tests/conftest.py).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-machine bench tests unroll}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# step NAME SECONDS COMMAND...: runs COMMAND for at most SECONDS, its output to
# the terminal and to $OUT/NAME.log; nothing if NAME is not in $STEPS.
step() {
    local name=$1 limit=$2
    shift 2
    [[ " $STEPS " == *" $name "* ]] || return 0
    echo "=== $name (at most ${limit} s)"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local status=${PIPESTATUS[0]}
    echo
    echo "=== $name: exit status $status (124: out of time)"
}

step machine 60 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$0" - <<"PY"
import importlib
for name in ("jax", "jaxlib", "torch", "flax", "equinox", "optax", "numpy"):
    try:
        print(name, importlib.import_module(name).__version__)
    except ImportError as error:
        print(name, "missing:", error)
import jax, jax.numpy as jnp, numpy as np
import jaxrnn
print("devices", jax.devices(), "backend", jax.default_backend())
print("jaxrnn.blas:", jaxrnn.blas.status(), "| default unroll:", jaxrnn.fused.default_unroll())
cell = jaxrnn.lstm(64)
params = cell.init(jax.random.key(0), 32)
xs = jax.random.normal(jax.random.key(1), (50, 8, 32))
with jax.default_matmul_precision("float32"):
    for fused in (True, False):
        loss = lambda p, x: jnp.sum(jaxrnn.unroll(cell, p, x, fused=fused)[1] ** 2)
        value, grads = jax.jit(jax.value_and_grad(loss))(params, xs)
        if fused:
            fused_value, fused_grads = value, grads
    worst = max(float(jnp.max(jnp.abs(a - b))) for a, b in
                zip(jax.tree.leaves(fused_grads), jax.tree.leaves(grads)))
print(f"smoke: fused {float(fused_value):.6f} autodiff {float(value):.6f}, "
      f"largest gradient difference {worst:.2e}")
PY' "$PYTHON"

# The workloads of the GPU targets first; a run cut short keeps the workloads it
# finished in gpu.jsonl (their tables: run.py --tables-from gpu.jsonl).
step bench 300 "$PYTHON" benchmarks/run.py lstm-long lstm-512 gru lstm char-lstm-train elman \
    --repeats 20 --compile-scaling --jsonl "$OUT/gpu.jsonl" --markdown "$OUT/gpu.md"

# pytest's workers share the GPU: each takes memory as it needs it.
XLA_PYTHON_CLIENT_PREALLOCATE=false step tests 150 "$PYTHON" -m pytest -q -n 8 \
    -p no:cacheprovider tests/test_fused.py tests/test_interop_torch.py

step unroll 60 "$PYTHON" benchmarks/unroll_sweep.py lstm-long --unroll 1 2 4 8 16 --repeats 10
