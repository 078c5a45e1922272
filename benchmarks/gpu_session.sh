#!/usr/bin/env bash
# Everything the GPU targets of the speed work need, as one command on a machine
# with an NVIDIA GPU where JAX (CUDA), PyTorch (CUDA), flax and equinox are
# installed and jaxrnn is not (the project's device machines are such):
#
#     bash benchmarks/gpu_session.sh                  # results in ./gpu-results, or $OUT
#     STEPS="tests unroll" bash benchmarks/gpu_session.sh   # only these steps
#
# Four steps, the most needed first, each under a time limit of its own (545 s
# in all, under the device tool's 600 s for one command), so that one that hangs
# or fails leaves the others theirs; each writes its log (and the benchmarks
# each record as it is measured) as it goes, so a run cut short still returns
# what it measured, and a contender that fails spoils no other's results:
#
#   machine  the GPU, the libraries' versions, and a smoke test: jaxrnn's fused
#            LSTM against autodiff of its step, on the GPU, in float32 matmuls
#   bench    benchmarks/run.py: every workload (lstm-long too) against flax,
#            equinox, PyTorch on cuDNN and jax.experimental.rnn's cuDNN LSTM,
#            with the compile-time sweep
#   unroll   benchmarks/unroll_sweep.py at lstm-long, for
#            jaxrnn.fused._DEFAULT_UNROLL["gpu"]
#   tests    the fused path and the PyTorch conversions, on the GPU
#
# Each library runs at its defaults, as its users run it: JAX's matmuls and
# cuDNN's layers may use TensorFloat-32. The tests ask for float32 matmuls
# (tests/conftest.py).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
PYTHON=${PYTHON:-python3}
STEPS=${STEPS:-machine bench unroll tests}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# A GPU that JAX cannot start is an error, not a silent run on the CPU; compile
# times are measured, not read from a cache the image may set up.
export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda,cpu} JAX_ENABLE_COMPILATION_CACHE=false

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

step machine 45 bash -c 'nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
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

# The workloads of the GPU targets first; a run cut short keeps every record it
# measured in gpu.jsonl, and its tables are made from them.
step bench 280 "$PYTHON" benchmarks/run.py lstm-long lstm-512 gru lstm char-lstm-train elman \
    --repeats 15 --compile-scaling --jsonl "$OUT/gpu.jsonl" --markdown "$OUT/gpu.md"
if [[ " $STEPS " == *" bench "* && ! -s $OUT/gpu.md && -s $OUT/gpu.jsonl ]]; then
    "$PYTHON" benchmarks/run.py --tables-from "$OUT/gpu.jsonl" --markdown "$OUT/gpu.md" \
        >/dev/null 2>&1 || echo "=== no tables from $OUT/gpu.jsonl"
fi

# The training pass first: it decides the default.
step unroll 110 "$PYTHON" benchmarks/unroll_sweep.py lstm-long --unroll 1 2 4 8 16 \
    --repeats 5 --warmup 1

# pytest's workers share the GPU: each takes memory as it needs it. Verbose, and
# a hung test's traceback after 90 s, so that a run cut short says where it was.
XLA_PYTHON_CLIENT_PREALLOCATE=false step tests 110 "$PYTHON" -m pytest -v -n 8 \
    -o faulthandler_timeout=90 -p no:cacheprovider tests/test_fused.py tests/test_interop_torch.py
