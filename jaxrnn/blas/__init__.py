r"""Matmuls on the CPU through oneMKL, as an XLA custom call.

On a CPU, the fused kernels of ``jaxrnn.unroll`` are bound by their matmuls:
each step's ``(B, H) x (H, G·H)`` product and the large weight-gradient
products after the loops. XLA's CPU matmuls for these shapes run 1.1-1.8x
slower than oneMKL's (the BLAS behind PyTorch's CPU matmuls), so where oneMKL
is installed (``pip install jaxrnn[cpu]``; the ``mkl`` wheel) those matmuls
call it instead:

- ``matmul`` is an XLA FFI custom call into ``cblas_sgemm``/``cblas_dgemm``
  (float32/float64), compiled on first use from ``gemm.cc`` beside this file
  (a C++17 compiler and jaxlib's FFI headers; a few seconds, cached in
  ``$JAXRNN_CACHE_DIR``, default ``~/.cache/jaxrnn``).
- oneMKL runs single-threaded; the custom call cuts each product into bands of
  columns (or rows) that run on XLA's own intra-op threads, so no OpenMP pool
  competes with XLA's for the cores.
- On CPUs not Intel's, where oneMKL takes a generic path, the float32 products
  go to oneDNN's matmul (``dnnl_sgemm``, from the ``onednn-cpu-gomp`` wheel that
  ``jaxrnn[cpu]`` installs), also on one thread per band: on an AMD EPYC (Zen 4)
  it runs a 256-unit LSTM's step products 1.2-1.4x faster. ``JAXRNN_BLAS=mkl``
  keeps them on oneMKL, ``JAXRNN_BLAS=onednn`` puts them on oneDNN on any CPU
  (``auto``, the default, as above; any other value is refused).
- It lowers to the custom call on CPUs only; on other platforms, for other
  dtypes, or when oneMKL or a compiler is missing, it is ``lax.dot_general``.
- The same library holds the two loops of the LSTM, the GRU and the Elman
  cell as custom calls of their own (``_lstm_forward``, ``_lstm_backward``,
  ``_gru_forward``, ``_gru_backward``, ``_elman_forward``,
  ``_elman_backward``; private: ``jaxrnn.fused`` calls them with checked
  arguments), so that a
  step's matmul, gates and synchronisation run without a return to XLA
  between steps. Their scratch memory (packed weights, projected
  inputs) is kept from call to call, up to 256 MiB, instead of being mapped
  and zeroed by the system afresh each time.

The arithmetic is a BLAS's float32 (or float64) product, equal to XLA's up to
rounding (tested against NumPy in float64). ``JAXRNN_BLAS=xla`` in the
environment switches it off for a process, ``use(False)`` for the functions
traced inside it; ``status()`` says what is in use and why.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.metadata
import math
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array

__all__ = ["active", "available", "matmul", "status", "use"]

_TARGET = "jaxrnn_blas_gemm"
_LSTM_TARGET = "jaxrnn_blas_lstm"
_LSTM_GRAD_TARGET = "jaxrnn_blas_lstm_grad"
_ELMAN_TARGET = "jaxrnn_blas_elman"
_ELMAN_GRAD_TARGET = "jaxrnn_blas_elman_grad"
_GRU_TARGET = "jaxrnn_blas_gru"
_GRU_GRAD_TARGET = "jaxrnn_blas_gru_grad"
# The Elman activations the kernel computes, by name: its ``activation`` attribute.
_ELMAN_ACTIVATIONS = {"tanh": 0, "relu": 1, "sigmoid": 2}
_SOURCE = Path(__file__).with_name("gemm.cc")
# oneDNN for float32 products on CPUs not Intel's: the wheel of its CPU-only library
# whose OpenMP runtime is GCC's (the one PyTorch ships too).
_ONEDNN = "onednn-cpu-gomp"
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

_use = True  # ``use``'s switch, read when a function is traced
_OFF = ("xla", "0", "off", "no", "false")  # the values of JAXRNN_BLAS that switch it off
_AUTO = ("auto", "", "1", "on", "yes", "true")  # ... that leave the choice to the CPU


class _Loaded(NamedTuple):
    ok: bool
    message: str  # what is in use, or why nothing is


# --------------------------------------------------------------------------- loading


# oneMKL's LP64 interface (32-bit ints), single-threaded layer and core: linked in
# by name, since the ``mkl`` wheel ships no unversioned ``.so`` links.
_MKL_LIBRARIES = ("mkl_intel_lp64", "mkl_sequential", "mkl_core")


def _find_mkl() -> list[Path] | None:
    """oneMKL's three libraries from the ``mkl`` wheel, in link order; ``None`` without it."""
    try:
        files = importlib.metadata.files("mkl") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    found: dict[str, Path] = {}
    for file in files:
        match = re.fullmatch(r"lib(mkl_\w+)\.so(\.\d+)*", file.name)
        if match and match.group(1) in _MKL_LIBRARIES:
            found[match.group(1)] = Path(file.locate()).resolve()
    if len(found) < len(_MKL_LIBRARIES):
        return None
    return [found[name] for name in _MKL_LIBRARIES]


def _cache_dir() -> Path:
    if "JAXRNN_CACHE_DIR" in os.environ:
        return Path(os.environ["JAXRNN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "jaxrnn"


def _vector_flags(cpuinfo: str | None = None) -> list[str]:
    """``-mavx2 -mfma`` on an x86-64 CPU that has them (``cpuinfo``: /proc/cpuinfo's
    text, read when not given), else none; on one not Intel's with AVX-512, 512-bit
    vectors too: on an AMD EPYC (Zen 4) they ran the kernels' own tanh 1.27x faster
    (0.62 against 0.85 ns a value) to the same bits, and an LSTM step's work besides
    its matmul fell from 31% to 19% of the matmuls' time (perf). Intel's CPUs take
    oneMKL's tanh, and some lower their clock for 512-bit code: they keep 256 bits."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    found = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    flags = set(found.group(1).split()) if found else set()
    if not {"avx2", "fma"} <= flags:
        return []
    avx512 = ["avx512bw", "avx512dq", "avx512f", "avx512vl"]
    intel = re.search(r"^vendor_id\s*:\s*GenuineIntel", cpuinfo, re.MULTILINE)
    if intel or not set(avx512) <= flags:
        return ["-mavx2", "-mfma"]
    return ["-mavx2", "-mfma", *(f"-m{name}" for name in avx512), "-mprefer-vector-width=512"]


def _compile(include_dir: str, mkl: list[Path]) -> Path:
    """The custom call's shared library, compiled once per source, jaxlib, oneMKL and compiler."""
    compiler = os.environ.get("CXX", "c++")
    # -O3: GCC's -O2 leaves the gate loops scalar (it will not version them for
    # aliasing); they took as long as each step's matmul. -fno-trapping-math: the
    # selects of the kernels' own tanh stay branch-free, so vectorised (nothing
    # reads floating-point exceptions; no rounding changes). The flags, part of
    # the cache key, name the vector extensions of the CPU that compiles.
    flags = ["-O3", "-std=c++17", "-fno-trapping-math", "-shared", "-fPIC", *_vector_flags()]
    flags += ["-I", include_dir]
    # --no-as-needed: the libraries are needed at load time even where, as for
    # mkl_core, nothing in gemm.cc names them directly.
    link = ["-Wl,--no-as-needed", f"-L{mkl[0].parent}", f"-Wl,-rpath,{mkl[0].parent}"]
    link += [f"-l:{path.name}" for path in mkl]
    parts = [_SOURCE.read_bytes(), importlib.metadata.version("jaxlib").encode()]
    parts += [word.encode() for word in (compiler, *flags, *link)]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    for directory in (_cache_dir(), Path(tempfile.gettempdir()) / "jaxrnn"):
        library = directory / f"libjaxrnn_blas_{key}.so"
        if library.exists():
            return library
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if not os.access(directory, os.W_OK):
            continue
        # Compile under a name of this process's own, then rename: other processes
        # (pytest's workers) may compile at the same time.
        partial = library.with_suffix(f".{os.getpid()}.partial")
        command = [compiler, *flags, str(_SOURCE), "-o", str(partial), *link]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            partial.unlink(missing_ok=True)
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
        os.replace(partial, library)
        return library
    raise RuntimeError(f"no writable cache directory (tried {_cache_dir()} and the temp dir)")


def _self_test(sgemm: Any, dgemm: Any) -> None:
    """One small product in each dtype through the linked oneMKL, against NumPy."""
    rng = np.random.default_rng(0)
    for gemm, dtype in ((sgemm, np.float32), (dgemm, np.float64)):
        a, b = rng.standard_normal((3, 5)).astype(dtype), rng.standard_normal((5, 4)).astype(dtype)
        c = np.zeros((3, 4), dtype)
        scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
        pointer, index = ctypes.c_void_p, ctypes.c_int
        gemm.argtypes = [index] * 6 + [
            scalar,
            pointer,
            index,
            pointer,
            index,
            scalar,
            pointer,
            index,
        ]
        gemm.restype = None
        gemm(101, 111, 111, 3, 4, 5, 1.0, a.ctypes.data, 5, b.ctypes.data, 4, 0.0, c.ctypes.data, 4)
        if not np.allclose(c, a @ b, rtol=1e-5, atol=1e-5):
            raise RuntimeError("oneMKL's test product is wrong")


def _find_onednn() -> Path | None:
    """oneDNN's library from the ``onednn-cpu-gomp`` wheel; ``None`` without it."""
    try:
        files = importlib.metadata.files(_ONEDNN) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "libdnnl.so.3":
            return Path(file.locate()).resolve()
    return None


def _float32_product(library: ctypes.CDLL, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` in float32 through what the kernels use for float32 now."""
    a, b = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    c = np.zeros((a.shape[0], b.shape[1]), np.float32)
    size, pointer = ctypes.c_int64, ctypes.c_void_p
    library.jaxrnn_float32_product.argtypes = [size] * 3 + [pointer] * 3
    library.jaxrnn_float32_product.restype = None
    library.jaxrnn_float32_product(
        *c.shape, a.shape[1], a.ctypes.data, b.ctypes.data, c.ctypes.data
    )
    return c


def _switch_float32(library: ctypes.CDLL, onednn: Path | None) -> None:
    """The kernels' float32 products through oneDNN's library at ``onednn``, or
    with ``None`` through oneMKL; checked with one product against NumPy."""
    library.jaxrnn_use_onednn.argtypes = [ctypes.c_char_p]
    library.jaxrnn_use_onednn.restype = ctypes.c_int
    if library.jaxrnn_use_onednn(None if onednn is None else str(onednn).encode()) != 0:
        library.jaxrnn_onednn_error.restype = ctypes.c_char_p
        why = library.jaxrnn_onednn_error().decode(errors="replace")
        raise RuntimeError(f"oneDNN did not load: {why}")
    a, b = np.random.default_rng(0).standard_normal((2, 37, 41)).astype(np.float32)
    if not np.allclose(_float32_product(library, a, b.T), a @ b.T, rtol=1e-5, atol=1e-5):
        library.jaxrnn_use_onednn(None)
        raise RuntimeError(f"the test product through {onednn or 'oneMKL'} is wrong")


def _pick_float32(library: ctypes.CDLL, choice: str) -> str:
    """Puts the float32 products on oneDNN or oneMKL, as ``JAXRNN_BLAS`` (``choice``)
    asks: ``mkl`` oneMKL, ``onednn`` oneDNN, else oneDNN on CPUs not Intel's, where
    oneMKL takes a generic path. Says what they use, and why."""
    if choice == "mkl" or (choice != "onednn" and library.jaxrnn_intel_cpu()):
        why = "JAXRNN_BLAS=mkl" if choice == "mkl" else "an Intel CPU"
        return f"oneMKL ({why})"
    onednn = _find_onednn()
    if onednn is None:
        return f"oneMKL ({_ONEDNN} is not installed)"
    try:
        _switch_float32(library, onednn)
    except RuntimeError as error:
        return f"oneMKL ({error})"
    return f"oneDNN {importlib.metadata.version(_ONEDNN)} ({onednn.parent})"


_LIBRARIES: list[ctypes.CDLL] = []  # the custom call's library, kept loaded


@functools.cache
def _load() -> _Loaded:
    """Find oneMKL, compile and register the custom call; once per process."""
    choice = os.environ.get("JAXRNN_BLAS", "auto").strip().lower()
    if choice in _OFF:
        return _Loaded(False, "switched off by JAXRNN_BLAS; XLA's dot is used")
    if choice not in (*_AUTO, "mkl", "onednn"):
        raise ValueError(
            f"JAXRNN_BLAS={os.environ['JAXRNN_BLAS']!r} is not a setting of jaxrnn.blas: "
            "set it to xla (XLA's dot), mkl (oneMKL for every product), onednn (oneDNN's "
            "float32 products) or auto (the default: oneDNN's on CPUs not Intel's), or unset it."
        )
    if not sys.platform.startswith("linux"):
        return _Loaded(False, f"the oneMKL custom call is built on Linux only, not {sys.platform}")
    mkl = _find_mkl()
    if mkl is None:
        return _Loaded(False, "oneMKL is not installed (pip install 'jaxrnn[cpu]' or 'mkl')")
    try:
        ffi = jax.ffi
        # RTLD_DEEPBIND: the library and its oneMKL resolve their symbols among
        # themselves first, not in another oneMKL already loaded (PyTorch's).
        library = ctypes.CDLL(
            str(_compile(ffi.include_dir(), mkl)), mode=os.RTLD_LOCAL | os.RTLD_DEEPBIND
        )
        _self_test(library.cblas_sgemm, library.cblas_dgemm)
        float32 = _pick_float32(library, choice)
        targets = (_TARGET, _LSTM_TARGET, _LSTM_GRAD_TARGET, _ELMAN_TARGET, _ELMAN_GRAD_TARGET)
        for target in (*targets, _GRU_TARGET, _GRU_GRAD_TARGET):
            handler = ffi.pycapsule(getattr(library, target))
            ffi.register_ffi_target(target, handler, platform="cpu")
    except Exception as error:  # any failure leaves XLA's dot in place, with the reason
        return _Loaded(False, f"the oneMKL custom call is unavailable: {error}")
    _LIBRARIES.append(library)  # kept loaded for the process
    mkl_version = importlib.metadata.version("mkl")
    return _Loaded(True, f"oneMKL {mkl_version} ({mkl[-1].parent}); float32 products: {float32}")


# --------------------------------------------------------------------------- public


def available() -> bool:
    """Whether the oneMKL custom call is installed and built (it is built on the first call).

    Returns:
      ``True`` when ``matmul`` lowers to oneMKL on a CPU.

    Examples:
      >>> from jaxrnn import blas
      >>> blas.available() == blas.status().startswith("oneMKL")
      True
    """
    return _load().ok


def active(dtype: Any = None) -> bool:
    """Whether functions traced now use the custom call: ``available()`` and not
    ``use(False)``, and, given a ``dtype``, for data of that dtype (float32 or
    float64; any other is XLA's).

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import blas
      >>> with blas.use(False):
      ...     blas.active()
      False
      >>> blas.active() == blas.available(), blas.active(jnp.bfloat16)
      (True, False)
    """
    return _use and (dtype is None or np.dtype(dtype) in _DTYPES) and available()


def status() -> str:
    """What the CPU matmuls use, and why: ``"oneMKL 2026.2.0 (/path/to/its/lib);
    float32 products: oneDNN 2023.2.0 (/path/to/its/lib)"`` (or ``oneMKL (an Intel
    CPU)``, or why oneDNN is not used), or the reason XLA's dot is used instead.

    Examples:
      >>> from jaxrnn import blas
      >>> with blas.use(False):
      ...     blas.status()
      "switched off by jaxrnn.blas.use(False); XLA's dot is used"
    """
    loaded = _load()
    if loaded.ok and not _use:
        return "switched off by jaxrnn.blas.use(False); XLA's dot is used"
    return loaded.message


@contextlib.contextmanager
def use(enabled: bool) -> Iterator[None]:
    """Switch the custom call on or off for the functions traced inside the block.

    The switch is read when a function is traced, and JAX caches traces by
    function: one already traced (by any ``jax.jit`` of it) keeps what it was
    traced with, so trace a new function (a new closure) inside the block.

    Args:
      enabled: ``False`` for XLA's dot everywhere; ``True`` for the custom call
        where it is available.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import blas
      >>> with blas.use(False):
      ...     blas.matmul(jnp.ones((2, 3)), jnp.ones((3, 4))).shape
      (2, 4)
    """
    global _use
    if not isinstance(enabled, bool):
        raise TypeError(f"use(enabled): expected True or False, got {enabled!r}")
    previous, _use = _use, enabled
    try:
        yield
    finally:
        _use = previous


def matmul(a: Array, b: Array, *, transpose_a: bool = False, transpose_b: bool = False) -> Array:
    r"""``op(a) @ op(b)`` over matching leading axes, ``op`` the identity or the transpose.

    On a CPU, for float32 and float64 with oneMKL installed (``available()``), a
    custom call into ``cblas_?gemm`` on XLA's threads; anywhere else
    ``lax.dot_general``. Differentiable (reverse mode, each gradient another
    ``matmul``) and batchable with ``jax.vmap``.

    Args:
      a: ``(*batch, M, K)``, or ``(*batch, K, M)`` with ``transpose_a``.
      b: ``(*batch, K, N)``, or ``(*batch, N, K)`` with ``transpose_b``.
      transpose_a: contract ``a``'s second-to-last axis instead of its last.
      transpose_b: contract ``b``'s last axis instead of its second-to-last.

    Returns:
      ``(*batch, M, N)`` in the inputs' dtype.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxrnn import blas
      >>> x = jnp.arange(6, dtype=jnp.float32).reshape(3, 2)
      >>> blas.matmul(x, x, transpose_a=True)  # xᵀ x
      Array([[20., 26.],
             [26., 35.]], dtype=float32)
    """
    a, b = jnp.asarray(a), jnp.asarray(b)
    _check(a, b, transpose_a, transpose_b)
    if not active(a.dtype) or not _fits_lp64(a, b):
        return _dot(a, b, transpose_a, transpose_b)
    return _matmul(a, b, bool(transpose_a), bool(transpose_b))


def _check(a: Array, b: Array, transpose_a: Any, transpose_b: Any) -> None:
    for name, flag in (("transpose_a", transpose_a), ("transpose_b", transpose_b)):
        if not isinstance(flag, bool | np.bool_):
            raise TypeError(f"matmul({name}=...): expected True or False, got {flag!r}")
    if a.ndim < 2 or a.ndim != b.ndim:
        raise ValueError(
            f"matmul(a, b): expected a and b of one rank >= 2 (*batch, rows, columns), got "
            f"shapes {a.shape} and {b.shape}; add the missing axes with x[None]"
        )
    if a.shape[:-2] != b.shape[:-2]:
        raise ValueError(
            f"matmul(a, b): the leading (batch) axes must match, got {a.shape[:-2]} and "
            f"{b.shape[:-2]}; broadcast them first (jnp.broadcast_to) or map with jax.vmap"
        )
    k_a = a.shape[-2] if transpose_a else a.shape[-1]
    k_b = b.shape[-1] if transpose_b else b.shape[-2]
    if k_a != k_b:
        raise ValueError(
            f"matmul(a, b, transpose_a={transpose_a}, transpose_b={transpose_b}): the "
            f"contracted axes differ, {k_a} in a {a.shape} and {k_b} in b {b.shape}"
        )
    if a.dtype != b.dtype:
        raise TypeError(
            f"matmul(a, b): expected one dtype, got {a.dtype} and {b.dtype}; cast one with "
            f".astype()"
        )


def _dot(a: Array, b: Array, transpose_a: bool, transpose_b: bool) -> Array:
    batch = tuple(range(a.ndim - 2))
    contract_a = a.ndim - 2 if transpose_a else a.ndim - 1
    contract_b = b.ndim - 1 if transpose_b else b.ndim - 2
    # dot_general orders the output (batch, a's free axis, b's free axis): (*batch, M, N).
    return lax.dot_general(a, b, (((contract_a,), (contract_b,)), (batch, batch)))


def _custom_call(a: Array, b: Array, transpose_a: bool, transpose_b: bool) -> Array:
    m = a.shape[-1] if transpose_a else a.shape[-2]
    n = b.shape[-2] if transpose_b else b.shape[-1]
    result = jax.ShapeDtypeStruct((*a.shape[:-2], m, n), a.dtype)
    call = jax.ffi.ffi_call(_TARGET, result, vmap_method="expand_dims")
    return call(a, b, transpose_a=transpose_a, transpose_b=transpose_b)


def _lowered(a: Array, b: Array, transpose_a: bool, transpose_b: bool) -> Array:
    """The custom call on a CPU, XLA's dot elsewhere: chosen when lowering."""
    return lax.platform_dependent(
        a,
        b,
        cpu=functools.partial(_custom_call, transpose_a=transpose_a, transpose_b=transpose_b),
        default=functools.partial(_dot, transpose_a=transpose_a, transpose_b=transpose_b),
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _matmul(a: Array, b: Array, transpose_a: bool, transpose_b: bool) -> Array:
    return _lowered(a, b, transpose_a, transpose_b)


def _matmul_fwd(a: Array, b: Array, transpose_a: bool, transpose_b: bool):
    return _matmul(a, b, transpose_a, transpose_b), (a, b)


def _matmul_bwd(transpose_a: bool, transpose_b: bool, residuals, g: Array):
    a, b = residuals
    # out = A B with A = op(a), B = op(b): dA = g Bᵀ, dB = Aᵀ g, each transposed back
    # when its operand was (d aᵀ = B gᵀ, d bᵀ = gᵀ A).
    d_a = _matmul(b, g, transpose_b, True) if transpose_a else _matmul(g, b, False, not transpose_b)
    d_b = _matmul(g, a, True, transpose_a) if transpose_b else _matmul(a, g, not transpose_a, False)
    return d_a, d_b


_matmul.defvjp(_matmul_fwd, _matmul_bwd)


def _product(a: Array, b: Array, *, transpose_a: bool = False, transpose_b: bool = False) -> Array:
    """``matmul`` for the derivative rules of ``jaxrnn.fused``: the same custom call,
    differentiable in both modes, its derivatives through XLA's dot.

    ``matmul``'s own derivative is a ``jax.custom_vjp`` (each gradient another
    custom call), which forward mode cannot differentiate: inside a fused pass's
    forward or backward function it broke forward-over-reverse differentiation
    (``jax.hessian``, Hessian-vector products by ``jax.jvp`` of a gradient) on a
    CPU only. These products are differentiated only at second order, where
    XLA's dot costs little more; the loop kernels do the same (their
    derivatives are the scans').

    Args:
      a, b, transpose_a, transpose_b: as for ``matmul``, checked by the caller.

    Returns:
      ``op(a) @ op(b)``, ``(*batch, M, N)``.
    """
    if not active(a.dtype) or not _fits_lp64(a, b):
        return _dot(a, b, transpose_a, transpose_b)
    return _linear_matmul(a, b, bool(transpose_a), bool(transpose_b))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _linear_matmul(a: Array, b: Array, transpose_a: bool, transpose_b: bool) -> Array:
    return _lowered(a, b, transpose_a, transpose_b)


@_linear_matmul.defjvp
def _linear_matmul_jvp(transpose_a: bool, transpose_b: bool, primals, tangents):
    (a, b), (a_dot, b_dot) = primals, tangents
    # Bilinear: the tangent is linear in (a_dot, b_dot) and transposable (reverse mode).
    tangent = _dot(a_dot, b, transpose_a, transpose_b) + _dot(a, b_dot, transpose_a, transpose_b)
    return _linear_matmul(a, b, transpose_a, transpose_b), tangent


# --------------------------------------------------------------------------- the loop kernels


# oneMKL's LP64 interface, the one linked, takes sizes as 32-bit ints.
_LP64_MAX = 2**31 - 1


def _fits_lp64(*arrays: Array) -> bool:
    """Whether oneMKL's 32-bit sizes hold every axis of ``arrays`` and each one's size
    past its first axis (a matrix, or a loop's step), as the kernels pass them; larger
    arrays (8 GiB of float32 in one step) take XLA's dot or the scans instead."""
    for array in arrays:
        shape = np.shape(array)
        if any(d > _LP64_MAX for d in shape) or math.prod(shape[1:]) > _LP64_MAX:
            return False
    return True


def _require_kernels(name: str) -> None:
    """The loop kernels exist only with the custom call: say why, naming the caller."""
    if not active():
        raise RuntimeError(f"{name} needs the oneMKL custom call: {status()}")


def _call_loop(
    target: str,
    results: tuple[jax.ShapeDtypeStruct, ...],
    before: tuple[Array, ...],
    valid: Array | None,
    after: tuple[Array, ...] = (),
    *,
    reverse: bool,
    aliases: dict[int, int] | None = None,
    **attributes: Any,
) -> Any:
    """One loop kernel's custom call: the operands ``before``, ``valid`` (``(T, B)``
    bools, or a placeholder the kernel does not read when every step is valid) and
    ``after``, with the attributes every loop takes (``reverse``, ``has_valid``) and
    ``attributes``; ``aliases`` maps operands to the results written over them. Under
    ``vmap``, one call per element."""
    has_valid = valid is not None
    if not has_valid:
        valid = jnp.zeros((1, 1), bool)
    call = jax.ffi.ffi_call(target, results, vmap_method="sequential", input_output_aliases=aliases)
    return call(*before, valid, *after, reverse=bool(reverse), has_valid=has_valid, **attributes)


# --------------------------------------------------------------------------- an LSTM's forward


def _lstm_forward(
    xs: Array,
    w_ih: Array,
    w_hh: Array,
    b: Array | None,
    h0: Array,
    c0: Array,
    valid: Array | None = None,
    *,
    reverse: bool = False,
    factors: bool = False,
) -> tuple[Array, ...]:
    r"""An LSTM over a whole sequence, forward only, as one custom call (CPU, oneMKL).

    :math:`a_t = b + x_t W_{ih} + h_{t-1} W_{hh}`, :math:`[i, f, g, o] = [\sigma,
    \sigma, \tanh, \sigma](a_t)`, :math:`c_t = f c_{t-1} + i g`, :math:`h_t = o
    \tanh c_t`, with :math:`\sigma(a) = \tanh(a/2)/2 + 1/2` as ``jaxrnn.fused``
    computes it. Where ``valid[t, r]`` is false, sequence ``r`` keeps its carry and
    its output is zero. The work of a step is cut among XLA's threads:

    - **by columns** (``w_hh`` of 512 KiB or more, two bands or more, each of
      16 hidden units or more and 2**20 multiply-adds of a step's matmul): a
      band of hidden units owns its columns of all four gates and its slices of
      ``w_hh`` and ``w_ih`` (packed once per call, gate by gate, straight from
      the weights); its inputs are projected a chunk of steps at a time, one
      large matmul into 2 MiB, never the whole ``(T, B, 4H)`` projection, and a
      step's rows of it become its gates in place. Each core reads only its
      slice of ``w_hh`` each step; the bands synchronise at every step, threads
      take one another's bands when one lags, and a thread waiting for the
      others projects the next chunk of inputs meanwhile.
    - **by rows** otherwise: each thread runs every step for a band of the
      batch's rows (independent sequences), no synchronisation, per step a
      ``(rows, I) x (I, 4H)`` and a ``(rows, H) x (H, 4H)`` matmul.

    Then one vector ``tanh`` over the gates and one over the cell state, and
    with ``factors`` the backward pass's factors, while the step's values are in
    cache. Not differentiable itself: ``jaxrnn.fused`` calls it, with checked
    arguments, for its forward passes, on CPUs with the custom call
    (``active()``) only.

    Args:
      xs: ``(T, B, I)``, float32 or float64.
      w_ih: ``(I, 4H)``.
      w_hh: ``(H, 4H)``.
      b: ``(4H,)`` or ``None``.
      h0, c0: ``(B, H)``.
      valid: ``(T, B)`` bools, or ``None`` for all steps valid.
      reverse: run from the last step to the first.
      factors: also return ``jaxrnn.fused._lstm_grad_factors``' ``(k, k_c, f)``
        of every step, ``(T, B, 4H)``, ``(T, B, H)``, ``(T, B, H)``.

    Returns:
      ``(ys, h_T, c_T)``: ``(T, B, H)``, ``(B, H)``, ``(B, H)``; with
      ``factors``, ``(ys, h_T, c_T, k, k_c, f)``.
    """
    _require_kernels("_lstm_forward")
    steps, batch, _ = xs.shape
    hidden = w_hh.shape[0]
    dtype = xs.dtype
    b = jnp.zeros((4 * hidden,), dtype) if b is None else b
    per_step = (steps, batch) if factors else (0, 0)  # empty: none written
    results = (
        jax.ShapeDtypeStruct((steps, batch, hidden), dtype),
        jax.ShapeDtypeStruct((batch, hidden), dtype),
        jax.ShapeDtypeStruct((batch, hidden), dtype),
        jax.ShapeDtypeStruct((*per_step, 4 * hidden), dtype),
        jax.ShapeDtypeStruct((*per_step, hidden), dtype),
        jax.ShapeDtypeStruct((*per_step, hidden), dtype),
    )
    outputs = _call_loop(_LSTM_TARGET, results, (xs, w_ih, w_hh, b, h0, c0), valid, reverse=reverse)
    return outputs if factors else outputs[:3]


def _lstm_backward(
    w_hh: Array,
    k: Array,
    k_c: Array,
    f: Array,
    d_ys: Array,
    valid: Array | None,
    dh: Array,
    dc: Array,
    *,
    reverse: bool = False,
) -> tuple[Array, Array, Array]:
    r"""An LSTM's backward loop over a whole sequence as one custom call (CPU, oneMKL).

    What ``jaxrnn.fused``'s reverse scan computes, from the forward pass's factors
    (``_lstm_forward(..., factors=True)``), over the steps in the opposite order to
    the forward pass's: with :math:`dh` and :math:`dc` the gradients w.r.t. a
    step's new state, :math:`dh = d_{y_t} + dh_{t+1}`, :math:`dc \mathrel{+}= dh\,
    k_c`, the gradient w.r.t. the gate pre-activations :math:`dG = [dc, dc, dc,
    dh] \odot k` (written over ``k``), and w.r.t. the state before the step
    :math:`dh_{t} = dG\,W_{hh}^\top`, :math:`dc_{t} = dc\,f`; past a sequence's
    length :math:`dG = 0` and the gradients pass through. Cut by columns like the
    forward pass: a band of hidden units owns its columns of the gradients and of
    all four gates, and ``w_hh``'s rows, transposed and packed once; the bands
    synchronise at every step.

    Args:
      w_hh: ``(H, 4H)``.
      k: ``(T, B, 4H)``; k_c, f: ``(T, B, H)``.
      d_ys: ``(T, B, H)``, zero past the sequences' lengths.
      valid: ``(T, B)`` bools, or ``None`` for all steps valid.
      dh, dc: ``(B, H)``, the gradients w.r.t. the final state.
      reverse: whether the forward pass ran from the last step to the first.

    Returns:
      ``(d_gates, dh_0, dc_0)``: ``(T, B, 4H)``, ``(B, H)``, ``(B, H)``.
    """
    _require_kernels("_lstm_backward")
    results = (
        jax.ShapeDtypeStruct(k.shape, k.dtype),
        jax.ShapeDtypeStruct(dh.shape, dh.dtype),
        jax.ShapeDtypeStruct(dc.shape, dc.dtype),
    )
    return _call_loop(
        _LSTM_GRAD_TARGET,
        results,
        (w_hh, k, k_c, f, d_ys),
        valid,
        (dh, dc),
        reverse=reverse,
        aliases={1: 0},  # d_gates over k
    )


def _elman_forward(
    xs: Array,
    w_ih: Array,
    w_hh: Array,
    b: Array | None,
    h0: Array,
    valid: Array | None = None,
    *,
    activation: str = "tanh",
    reverse: bool = False,
) -> tuple[Array, Array]:
    r"""An Elman cell over a whole sequence, forward only, as one custom call (CPU, oneMKL).

    :math:`h_t = \phi(x_t W_{ih} + h_{t-1} W_{hh} + b)` with :math:`\phi` ``tanh``,
    ``relu`` or ``sigmoid`` (computed as :math:`\tanh(a/2)/2 + 1/2`). Where
    ``valid[t, r]`` is false, sequence ``r`` keeps its state and its output is
    zero. The loop of ``_lstm_forward``, with one gate: cut by columns (hidden
    units) or by rows (the batch) among XLA's threads, the input projection in
    chunks of steps inside the call. Not differentiable itself: ``jaxrnn.fused``
    calls it, with checked arguments, for its forward passes (the backward pass
    of an Elman cell with these activations needs only the outputs:
    ``_elman_backward``), on CPUs with the custom call (``active()``) only.

    Args:
      xs: ``(T, B, I)``, float32 or float64.
      w_ih: ``(I, H)``.
      w_hh: ``(H, H)``.
      b: ``(H,)`` or ``None``.
      h0: ``(B, H)``.
      valid: ``(T, B)`` bools, or ``None`` for all steps valid.
      activation: a key of ``_ELMAN_ACTIVATIONS``.
      reverse: run from the last step to the first.

    Returns:
      ``(ys, h_T)``: ``(T, B, H)``, ``(B, H)``.
    """
    _require_kernels("_elman_forward")
    _check_elman_activation("_elman_forward", activation)
    steps, batch, _ = xs.shape
    hidden = w_hh.shape[0]
    b = jnp.zeros((hidden,), xs.dtype) if b is None else b
    results = (
        jax.ShapeDtypeStruct((steps, batch, hidden), xs.dtype),
        jax.ShapeDtypeStruct((batch, hidden), xs.dtype),
    )
    return _call_loop(
        _ELMAN_TARGET,
        results,
        (xs, w_ih, w_hh, b, h0),
        valid,
        reverse=reverse,
        activation=np.int64(_ELMAN_ACTIVATIONS[activation]),
    )


def _check_elman_activation(call: str, activation: str) -> None:
    if activation not in _ELMAN_ACTIVATIONS:
        raise ValueError(
            f"{call}: activation must be one of {sorted(_ELMAN_ACTIVATIONS)}, got {activation!r}."
        )


def _elman_backward(
    w_hh: Array,
    ys: Array,
    d_ys: Array,
    valid: Array | None,
    dh: Array,
    *,
    activation: str = "tanh",
    reverse: bool = False,
) -> tuple[Array, Array]:
    r"""An Elman cell's backward loop over a whole sequence as one custom call (CPU, oneMKL).

    What ``jaxrnn.fused``'s reverse scan computes from the outputs ``ys`` (the
    activation's slope follows from them), over the steps in the opposite order to
    the forward pass's: with :math:`dh = d_{y_t} + dh_{t+1}` the gradient w.r.t.
    a step's output, the gradient w.r.t. its pre-activation :math:`d_{pre} =
    dh\,\phi'(y_t)` and w.r.t. the state before the step :math:`dh_t = d_{pre}
    W_{hh}^\top`; past a sequence's length :math:`d_{pre} = 0` and :math:`dh`
    passes through. Cut by columns (``w_hh`` of 512 KiB or more) like
    ``_lstm_backward``, else by rows of the batch.

    Args:
      w_hh: ``(H, H)``.
      ys: ``(T, B, H)``, the forward pass's outputs.
      d_ys: ``(T, B, H)``, zero past the sequences' lengths.
      valid: ``(T, B)`` bools, or ``None`` for all steps valid.
      dh: ``(B, H)``, the gradient w.r.t. the final state.
      activation: a key of ``_ELMAN_ACTIVATIONS``.
      reverse: whether the forward pass ran from the last step to the first.

    Returns:
      ``(d_pre, dh_0)``: ``(T, B, H)``, ``(B, H)``.
    """
    _require_kernels("_elman_backward")
    _check_elman_activation("_elman_backward", activation)
    results = (jax.ShapeDtypeStruct(ys.shape, ys.dtype), jax.ShapeDtypeStruct(dh.shape, dh.dtype))
    return _call_loop(
        _ELMAN_GRAD_TARGET,
        results,
        (w_hh, ys, d_ys),
        valid,
        (dh,),
        reverse=reverse,
        activation=np.int64(_ELMAN_ACTIVATIONS[activation]),
    )


def _gru_forward(
    xs: Array,
    w_ih: Array,
    w_hh: Array,
    b: Array | None,
    b_hn: Array | None,
    h0: Array,
    valid: Array | None = None,
    *,
    reverse: bool = False,
    factors: bool = False,
) -> tuple[Array, ...]:
    r"""A GRU (the reset gate after the matmul) over a whole sequence, forward only, as
    one custom call (CPU, oneMKL).

    With the gates in the order :math:`[r, z, n]` of ``w_ih``, ``w_hh`` and ``b``:
    :math:`r = \sigma(x_t W_{ir} + b_r + h_{t-1} W_{hr})`, :math:`z` likewise,
    :math:`n = \tanh(x_t W_{in} + b_n + r \odot (h_{t-1} W_{hn} + b_{hn}))`,
    :math:`h_t = n + z \odot (h_{t-1} - n)`, with :math:`\sigma(a) = \tanh(a/2)/2 +
    1/2` as ``jaxrnn.fused`` computes it. Where ``valid[t, r]`` is false, sequence
    ``r`` keeps its state and its output is zero. The loop of ``_lstm_forward``
    (cut by columns or rows, the input projection in chunks inside the call),
    the step's ``h_{t-1} W_{hn}`` kept apart from ``x_t W_{in}``. Not
    differentiable itself: ``jaxrnn.fused`` calls it, with checked arguments, on
    CPUs with the custom call (``active()``) only.

    Args:
      xs: ``(T, B, I)``, float32 or float64.
      w_ih: ``(I, 3H)``.
      w_hh: ``(H, 3H)``.
      b: ``(3H,)`` or ``None``; b_hn: ``(H,)`` or ``None``.
      h0: ``(B, H)``.
      valid: ``(T, B)`` bools, or ``None`` for all steps valid.
      reverse: run from the last step to the first.
      factors: also return ``jaxrnn.fused._gru_grad_factors``' ``(q_r, q_z, q_hn,
        k_n, z)`` of every step, each ``(T, B, H)``.

    Returns:
      ``(ys, h_T)``: ``(T, B, H)``, ``(B, H)``; with ``factors``, ``(ys, h_T, q_r,
      q_z, q_hn, k_n, z)``.
    """
    _require_kernels("_gru_forward")
    steps, batch, _ = xs.shape
    hidden = w_hh.shape[0]
    dtype = xs.dtype
    b = jnp.zeros((3 * hidden,), dtype) if b is None else b
    b_hn = jnp.zeros((hidden,), dtype) if b_hn is None else b_hn
    per_step = (steps, batch, hidden) if factors else (0, 0, 0)  # empty: none written
    results = (
        jax.ShapeDtypeStruct((steps, batch, hidden), dtype),
        jax.ShapeDtypeStruct((batch, hidden), dtype),
        *(jax.ShapeDtypeStruct(per_step, dtype) for _ in range(5)),
    )
    bias = jnp.concatenate([b, b_hn])
    outputs = _call_loop(_GRU_TARGET, results, (xs, w_ih, w_hh, bias, h0), valid, reverse=reverse)
    return outputs if factors else outputs[:2]


def _gru_backward(
    w_hh: Array,
    q_r: Array,
    q_z: Array,
    q_hn: Array,
    k_n: Array,
    z: Array,
    d_ys: Array,
    valid: Array | None,
    dh: Array,
    *,
    reverse: bool = False,
) -> tuple[Array, ...]:
    r"""A GRU's backward loop (the reset gate after the matmul) over a whole sequence as
    one custom call (CPU, oneMKL).

    What ``jaxrnn.fused``'s reverse scan computes, from the forward pass's factors
    (``_gru_forward(..., factors=True)``), over the steps in the opposite order to
    the forward pass's: with :math:`dh = d_{y_t} + dh_{t+1}` the gradient w.r.t. a
    step's new state, the gradients w.r.t. the gates' projected inputs
    :math:`d_r = dh\,q_r`, :math:`d_z = dh\,q_z`, :math:`d_n = dh\,k_n`, w.r.t.
    :math:`h_{t-1} W_{hn} + b_{hn}` :math:`d_{hn} = dh\,q_{hn}` (each written over
    its factor), and w.r.t. the state before the step :math:`dh_t = dh\,z + [d_r,
    d_z, d_{hn}]\,W_{hh}^\top`; past a sequence's length the four are zero and
    :math:`dh` passes through. Cut by columns like ``_lstm_backward``.

    Args:
      w_hh: ``(H, 3H)``.
      q_r, q_z, q_hn, k_n, z: ``(T, B, H)`` each.
      d_ys: ``(T, B, H)``, zero past the sequences' lengths.
      valid: ``(T, B)`` bools, or ``None`` for all steps valid.
      dh: ``(B, H)``, the gradient w.r.t. the final state.
      reverse: whether the forward pass ran from the last step to the first.

    Returns:
      ``(d_r, d_z, d_hn, d_n, dh_0)``: ``(T, B, H)`` each, and ``(B, H)``.
    """
    _require_kernels("_gru_backward")
    results = (
        *(jax.ShapeDtypeStruct(z.shape, z.dtype) for _ in range(4)),
        jax.ShapeDtypeStruct(dh.shape, dh.dtype),
    )
    return _call_loop(
        _GRU_GRAD_TARGET,
        results,
        (w_hh, q_r, q_z, q_hn, k_n, z, d_ys),
        valid,
        (dh,),
        reverse=reverse,
        aliases={1: 0, 2: 1, 3: 2, 4: 3},  # each gradient over its factor
    )
