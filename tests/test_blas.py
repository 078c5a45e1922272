"""``jaxrnn.blas``: the oneMKL custom call against NumPy in float64, under jit, grad and vmap.

The dev install (``make test``) includes oneMKL, so the custom call must be
there: a silent fall-back to XLA's dot would leave every other test of it
vacuous. Shapes cover both ways the call cuts a product into bands for XLA's
threads (columns when the output is wide, rows when it is tall), sizes that are
not multiples of the bands' 16-column alignment, and empty dimensions.
"""

import ctypes
import ctypes.util
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import blas, fused

F32_TOL = 2e-5  # relative to the product's scale; float32 sums of up to 1000 terms


def oracle(a, b, transpose_a, transpose_b):
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a64 = np.swapaxes(a64, -1, -2) if transpose_a else a64
    b64 = np.swapaxes(b64, -1, -2) if transpose_b else b64
    return a64 @ b64


def operands(rng, m, k, n, transpose_a, transpose_b, dtype, batch=()):
    a = rng.standard_normal((*batch, *((k, m) if transpose_a else (m, k)))).astype(dtype)
    b = rng.standard_normal((*batch, *((n, k) if transpose_b else (k, n)))).astype(dtype)
    return a, b


def lowered_text(fn, *args):
    return jax.jit(fn).lower(*args).as_text()


def test_the_dev_install_has_the_onemkl_custom_call():
    if os.environ.get("JAXRNN_BLAS", "").lower() in blas._OFF:
        pytest.skip("switched off by JAXRNN_BLAS")
    if not (sys.platform.startswith("linux") and platform.machine() == "x86_64"):
        pytest.skip("the dev extra installs oneMKL on x86-64 Linux only")
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        pytest.skip("no C++ compiler to build the custom call with")
    assert blas.available(), blas.status()
    assert blas.status().startswith("oneMKL ")
    # On CPUs not Intel's the float32 products go to oneDNN, which the dev extra
    # installs, unless JAXRNN_BLAS picks a library.
    choice = os.environ.get("JAXRNN_BLAS", "").lower()
    onednn = {"mkl": False, "onednn": True}.get(choice, not blas._LIBRARIES[0].jaxrnn_intel_cpu())
    assert ("float32 products: oneDNN" in blas.status()) == onednn, blas.status()
    assert "jaxrnn_blas_gemm" in lowered_text(blas.matmul, jnp.ones((2, 3)), jnp.ones((3, 4)))


needs_blas = pytest.mark.skipif(not blas.available(), reason=blas.status())


_AVX512 = "avx512f avx512dq avx512bw avx512vl"


@pytest.mark.parametrize(
    ("cpuinfo", "flags"),
    [
        (f"vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 fma {_AVX512}\n", "avx512"),
        (f"vendor_id\t: GenuineIntel\nflags\t\t: fpu avx2 fma {_AVX512}\n", "avx2"),
        ("vendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2 fma avx512f\n", "avx2"),
        ("vendor_id\t: AuthenticAMD\nflags\t\t: fpu sse4_2 avx\n", "none"),
        ("processor\t: 0\n", "none"),
    ],
)
def test_the_kernels_vector_flags_follow_the_cpu(cpuinfo, flags):
    # 512-bit vectors on CPUs not Intel's that have AVX-512's four parts; Intel's keep
    # 256 bits; a CPU without AVX2 and FMA gets the compiler's defaults.
    avx2 = ["-mavx2", "-mfma"]
    avx512 = [*avx2, "-mavx512bw", "-mavx512dq", "-mavx512f", "-mavx512vl"]
    expected = {"avx512": [*avx512, "-mprefer-vector-width=512"], "avx2": avx2, "none": []}
    assert blas._vector_flags(cpuinfo) == expected[flags]


@needs_blas
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
@pytest.mark.parametrize(
    ("m", "k", "n"),
    [
        (1, 1, 1),
        (5, 7, 3),
        (37, 1000, 531),  # wide: bands of columns, the last one ragged
        (531, 1000, 37),  # tall: bands of rows
        (32, 256, 1024),  # an LSTM step
        (256, 3200, 1024),  # a weight gradient, Hᵀ dG
    ],
)
def test_matmul_equals_numpy_in_float64(rng, m, k, n, transpose_a, transpose_b, dtype):
    a, b = operands(rng, m, k, n, transpose_a, transpose_b, dtype)
    fn = jax.jit(lambda a, b: blas.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b))
    out = fn(a, b)
    expected = oracle(a, b, transpose_a, transpose_b)
    assert out.dtype == dtype and out.shape == (m, n)
    scale = np.sqrt(k)  # each entry is a sum of k products of unit normals
    tol = F32_TOL * scale if dtype == np.float32 else 1e-12 * scale
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=0, atol=tol)


@needs_blas
@pytest.mark.parametrize(("m", "k", "n"), [(0, 3, 4), (3, 0, 4), (3, 4, 0)])
def test_empty_dimensions(rng, m, k, n):
    a, b = operands(rng, m, k, n, False, False, np.float32)
    out = jax.jit(blas.matmul)(a, b)
    assert out.shape == (m, n)
    np.testing.assert_array_equal(np.asarray(out), np.zeros((m, n), np.float32))


@needs_blas
@pytest.mark.parametrize("transpose_a", [False, True])
@pytest.mark.parametrize("transpose_b", [False, True])
def test_gradients_equal_those_of_xlas_dot(rng, transpose_a, transpose_b):
    a, b = operands(rng, 6, 9, 4, transpose_a, transpose_b, np.float64)

    def loss(a, b):
        product = blas.matmul(a, b, transpose_a=transpose_a, transpose_b=transpose_b)
        return jnp.sum(jnp.sin(product) * jnp.arange(product.size).reshape(product.shape))

    def make_grad():  # a new function each time: JAX caches traces by function
        return jax.grad(lambda a, b: loss(a, b), argnums=(0, 1))

    assert "jaxrnn_blas_gemm" in lowered_text(make_grad(), a, b)
    grads = jax.jit(make_grad())(a, b)
    with blas.use(False):
        assert "jaxrnn_blas_gemm" not in lowered_text(make_grad(), a, b)
        expected = jax.jit(make_grad())(a, b)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@needs_blas
def test_vmap_over_either_operand_both_and_nested(rng):
    a, b = operands(rng, 5, 7, 3, False, False, np.float64, batch=(4,))
    expected = oracle(a, b, False, False)
    np.testing.assert_allclose(jax.vmap(blas.matmul)(a, b), expected, atol=1e-12)
    np.testing.assert_allclose(
        jax.vmap(lambda x: blas.matmul(x, b[0]))(a), oracle(a, b[0], False, False), atol=1e-12
    )
    np.testing.assert_allclose(
        jax.vmap(lambda y: blas.matmul(a[0], y, transpose_a=False))(b),
        oracle(a[0], b, False, False),
        atol=1e-12,
    )
    # Every a with every b: a (4, 5, 7) mapped inside, b (3, 7, 3) mapped outside.
    b3 = b[:3]
    outer = jax.vmap(jax.vmap(blas.matmul, in_axes=(0, None)), in_axes=(None, 0))(a, b3)
    np.testing.assert_allclose(outer, np.einsum("imk,jkn->jimn", a, b3), atol=1e-12)


@needs_blas
def test_batched_operands_inside_a_scan(rng):
    a, b = operands(rng, 8, 6, 5, False, False, np.float32, batch=(3,))

    def body(acc, _):
        return acc + blas.matmul(a, b), None

    total, _ = jax.jit(lambda: jax.lax.scan(body, jnp.zeros((3, 8, 5), jnp.float32), None, 4))()
    np.testing.assert_allclose(total, 4 * oracle(a, b, False, False), rtol=1e-5, atol=1e-4)


def test_other_dtypes_use_xlas_dot(rng):
    a, b = operands(rng, 3, 4, 2, False, False, np.float32)
    a16, b16 = jnp.asarray(a, jnp.bfloat16), jnp.asarray(b, jnp.bfloat16)
    assert "jaxrnn_blas_gemm" not in lowered_text(blas.matmul, a16, b16)
    out = blas.matmul(a16, b16)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float64), a @ b, rtol=0.05, atol=0.05)


@pytest.mark.parametrize(
    ("a_shape", "b_shape", "kwargs", "error", "words"),
    [
        ((3,), (3, 2), {}, ValueError, "rank >= 2"),
        ((2, 3, 4), (4, 5), {}, ValueError, "rank >= 2"),
        ((2, 3, 4), (3, 4, 5), {}, ValueError, "leading (batch) axes must match"),
        ((3, 4), (5, 2), {}, ValueError, "contracted axes differ, 4 in a (3, 4) and 5"),
        ((3, 4), (3, 2), {"transpose_b": True}, ValueError, "contracted axes differ"),
        ((3, 4), (4, 2), {"transpose_a": 1}, TypeError, "transpose_a=...): expected True or"),
    ],
)
def test_bad_arguments_are_named(a_shape, b_shape, kwargs, error, words):
    with pytest.raises(error) as info:
        blas.matmul(jnp.ones(a_shape), jnp.ones(b_shape), **kwargs)
    assert words in str(info.value)


def test_mixed_dtypes_and_a_non_bool_switch_are_named():
    with pytest.raises(TypeError, match="expected one dtype, got float32 and float64"):
        blas.matmul(jnp.ones((2, 2), jnp.float32), jnp.ones((2, 2), jnp.float64))
    switch = blas.use("no")
    with pytest.raises(TypeError, match=r"use\(enabled\): expected True or False, got 'no'"):
        switch.__enter__()


def test_environment_switch_turns_it_off():
    code = "from jaxrnn import blas; print(blas.available(), blas.status())"
    env = {**os.environ, "JAXRNN_BLAS": "xla"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("False switched off by JAXRNN_BLAS")


@needs_blas
def test_the_kernels_own_tanh_is_within_one_and_a_half_ulp():
    """The float32 tanh of the loop kernels on CPUs not Intel's (oneMKL's vector tanh
    is 7x slower there), against NumPy's float64 tanh, whatever this CPU is."""
    own = blas._LIBRARIES[0].jaxrnn_own_tanh
    own.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.uniform(-12, 12, 400_000),
            np.linspace(-1, 1, 100_001),  # across the two branches at |x| = 0.625
            np.logspace(-40, 1.5, 20_000),  # tiny to saturated, and their negatives
            -np.logspace(-40, 1.5, 20_000),
            [np.nextafter(np.float32(0.625), np.float32(0)), 0.625, 88.0, 3e38],
        ]
    ).astype(np.float32)
    got = np.empty_like(x)
    own(x.size, x.ctypes.data, got.ctypes.data)
    want = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - want) / ulp) <= 1.5
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32)
    out = np.empty_like(special)
    own(special.size, special.ctypes.data, out.ctypes.data)
    np.testing.assert_array_equal(out, [0.0, -0.0, 1.0, -1.0, np.nan])
    assert list(np.signbit(out[:2])) == [False, True]


@needs_blas
@pytest.mark.parametrize("make_cell", [jaxrnn.lstm, jaxrnn.gru, jaxrnn.elman])
def test_the_fused_path_uses_it_and_agrees_with_xlas_dot(rng, make_cell):
    """Both passes of the fused kernels call oneMKL, and give XLA's values to rounding.

    (``test_fused.py`` compares this path with autodiff of the cell to 1e-10.)
    """
    cell = make_cell(6)
    params = cell.init(jax.random.key(0), 4)
    xs = jnp.asarray(rng.standard_normal((5, 3, 4)), jnp.float32)
    carry = cell.zero_carry((3,))
    assert fused.supports(cell, params, xs, carry)

    def make_grad():  # a new function each time: JAX caches traces by function
        def loss(params, xs):
            return jnp.sum(jnp.tanh(jaxrnn.unroll(cell, params, xs, carry)[1]))

        return jax.grad(loss, argnums=(0, 1))

    # The projection, the steps of both loops, and the weight and input gradients;
    # each cell's two loops, the forward loop's projection included, are one call
    # each (the GRU's gradients after the loop are products per gate: 3 x 3).
    text = lowered_text(make_grad(), params, xs)
    if make_cell is jaxrnn.lstm:
        assert text.count("@jaxrnn_blas_lstm(") == 1
        assert text.count("@jaxrnn_blas_lstm_grad(") == 1
        assert text.count("@jaxrnn_blas_gemm(") == 3
    elif make_cell is jaxrnn.elman:
        assert text.count("@jaxrnn_blas_elman(") == 1
        assert text.count("@jaxrnn_blas_elman_grad(") == 1
        assert text.count("@jaxrnn_blas_gemm(") == 3
    else:
        assert text.count("@jaxrnn_blas_gru(") == 1
        assert text.count("@jaxrnn_blas_gru_grad(") == 1
        assert text.count("@jaxrnn_blas_gemm(") == 9
    got = jax.jit(make_grad())(params, xs)
    with blas.use(False):
        assert "jaxrnn_blas" not in lowered_text(make_grad(), params, xs)
        expected = jax.jit(make_grad())(params, xs)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


@pytest.fixture(params=["oneMKL", "oneDNN"])
def float32_library(request):
    """The kernels' float32 products through oneMKL, then through oneDNN (skipped
    where its wheel is missing); what ``blas`` chose is put back afterwards."""
    library, onednn = blas._LIBRARIES[0], blas._find_onednn()
    if request.param == "oneDNN" and onednn is None:
        pytest.skip(f"{blas._ONEDNN} is not installed")
    chose_onednn = "float32 products: oneDNN" in blas.status()
    blas._switch_float32(library, onednn if request.param == "oneDNN" else None)
    yield request.param
    blas._switch_float32(library, onednn if chose_onednn else None)


@needs_blas
@pytest.mark.parametrize("make_cell", [jaxrnn.lstm, jaxrnn.gru, jaxrnn.elman])
@pytest.mark.parametrize(("T", "B", "H"), [(6, 5, 3), (13, 33, 260)])
def test_the_float32_kernels_agree_with_xlas_dot_through_either_library(
    rng, float32_library, make_cell, T, B, H
):
    """The float32 passes (forward, and the gradients of a training pass) with the
    products through oneMKL and through oneDNN, against XLA's dot and scans: cut by
    rows (H=3), and for the LSTM and the GRU by columns, in two bands of 128 and 132
    units whose gates are gathered into one product each. (The float64 tests below
    reach oneMKL only: oneDNN's matmul is float32's.)"""
    _assert_the_float32_kernels_agree_with_xlas_dot(rng, make_cell(H), T, B)


@needs_blas
@pytest.mark.parametrize(
    ("make_cell", "H"), [(jaxrnn.lstm, 512), (jaxrnn.gru, 1024), (jaxrnn.elman, 2048)]
)
def test_weights_copied_to_rows_a_cache_line_past_4_kib_apart_give_the_same_products(
    rng, float32_library, make_cell, H
):
    """Where a weight's rows would start a multiple of 4 KiB apart, the kernels copy
    it for oneDNN to rows 64 bytes further apart (and gather a band's gates so for
    either library): the LSTM's gates of a band of 256 units (1024 floats), the
    GRU's r and z gates of 512 (1024) and its third gate read from w_hh's rows of
    3072, the Elman cell's w_hh of 2048 (rows of 2048 floats, by columns in bands
    of 1024, and transposed for the backward loop into blocks of (2048, 1024))."""
    _assert_the_float32_kernels_agree_with_xlas_dot(rng, make_cell(H), 3, 9)


def _assert_the_float32_kernels_agree_with_xlas_dot(rng, cell, T, B):
    H = cell.hidden_size
    params = cell.init(jax.random.key(1), 24)
    xs = jnp.asarray(rng.standard_normal((T, B, 24)), jnp.float32)
    carry = jax.tree.map(
        lambda a: jnp.asarray(rng.standard_normal(a.shape), jnp.float32), cell.zero_carry((B,))
    )
    weights = jnp.asarray(rng.standard_normal((T, B, H)), jnp.float32)
    make_forward = _forward_maker(cell, None, False)
    make_grad = _training_grad_maker(cell, None, False, weights)
    for make in (make_forward, make_grad):
        assert "jaxrnn_blas" in lowered_text(make(), params, xs, carry)
        got = jax.jit(make())(params, xs, carry)
        with blas.use(False):
            expected = jax.jit(make())(params, xs, carry)
        for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
            assert g.dtype == np.float32
            np.testing.assert_allclose(g, e, rtol=2e-4, atol=2e-4 * float(jnp.max(jnp.abs(e))))


@needs_blas
@pytest.mark.parametrize("float32_library", ["oneDNN"], indirect=True)
def test_a_float32_product_through_onednn_keeps_the_callers_openmp_threads(float32_library):
    """oneDNN's matmul runs on the calling thread alone (OpenMP's thread count set
    to 1), and the count the caller had is put back: the OpenMP runtime may be
    PyTorch's too."""
    openmp = ctypes.CDLL("libgomp.so.1")  # the copy oneDNN's library loaded
    openmp.omp_set_num_threads(3)
    a, b = np.ones((64, 300), np.float32), np.ones((300, 70), np.float32)
    product = blas._float32_product(blas._LIBRARIES[0], a, b)
    np.testing.assert_array_equal(product, np.full((64, 70), 300))
    assert openmp.omp_get_max_threads() == 3


@needs_blas
def test_a_library_that_is_not_onednns_is_refused_with_the_reason(tmp_path):
    """A missing file, or a library without oneDNN's matmul, is refused with the
    loader's reason, and the float32 products keep what they used."""
    library = blas._LIBRARIES[0]
    before = blas._float32_product(library, np.eye(3), np.arange(6.0).reshape(3, 2))
    with pytest.raises(RuntimeError, match=r"oneDNN did not load: .*No such file"):
        blas._switch_float32(library, tmp_path / "libdnnl.so.3")
    libm = ctypes.util.find_library("m")
    with pytest.raises(RuntimeError, match="lacks dnnl_sgemm"):
        blas._switch_float32(library, Path(libm))
    after = blas._float32_product(library, np.eye(3), np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(after, before)
    np.testing.assert_array_equal(after, np.arange(6.0).reshape(3, 2))


def test_a_misspelt_environment_setting_is_refused_with_the_choices():
    code = "from jaxrnn import blas; blas.status()"
    env = {**os.environ, "JAXRNN_BLAS": "onedn"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode != 0
    assert "JAXRNN_BLAS='onedn' is not a setting of jaxrnn.blas" in done.stderr
    assert "xla (XLA's dot), mkl" in done.stderr


@pytest.mark.parametrize(
    ("choice", "words"),
    [("mkl", "float32 products: oneMKL (JAXRNN_BLAS=mkl)"), ("onednn", "float32 products: oneDNN")],
)
def test_the_environment_picks_the_float32_library(choice, words):
    if not blas.available():
        pytest.skip(blas.status())
    if choice == "onednn" and blas._find_onednn() is None:
        pytest.skip(f"{blas._ONEDNN} is not installed")
    code = "from jaxrnn import blas; print(blas.status())"
    env = {**os.environ, "JAXRNN_BLAS": choice}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("oneMKL ") and words in done.stdout


def _lstm_problem(rng, T, B, H, with_lengths):
    """A float64 LSTM (input size 4, biases not zero), inputs ``(T, B, 4)``, a random
    initial carry, and random lengths (some 0, some T) or ``None``."""
    cell = jaxrnn.lstm(H)
    params = jax.tree.map(lambda a: a.astype(np.float64), cell.init(jax.random.key(1), 4))
    params = params._replace(b=jnp.asarray(rng.standard_normal(4 * H)))
    xs = jnp.asarray(rng.standard_normal((T, B, 4)))
    carry = jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), cell.zero_carry((B,)))
    lengths = jnp.asarray(rng.integers(0, T + 1, B)) if with_lengths else None
    return cell, params, xs, carry, lengths


def _assert_the_kernel_equals_the_scan(make, target, *args, rtol):
    """``make()``'s lowering calls the custom call ``target``, and ``jit(make())(*args)``
    equals, leaf by leaf, what it gives with ``jaxrnn.blas`` switched off (XLA's dot
    and scans). ``make`` builds a new function each time: JAX caches traces by
    function, and ``blas.use`` acts when one is traced."""
    assert f"@{target}(" in lowered_text(make(), *args)
    got = jax.jit(make())(*args)
    with blas.use(False):
        expected = jax.jit(make())(*args)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=1e-12)


def _forward_maker(cell, lengths, reverse):
    """For ``_assert_the_kernel_equals_the_scan``: ``(params, xs, carry) -> (final, ys)``
    of the layer, a new function at each call."""
    return lambda: (
        lambda p, x, c: jaxrnn.unroll(cell, p, x, c, seq_lengths=lengths, reverse=reverse)
    )


def _training_grad_maker(cell, lengths, reverse, weights):
    """For ``_assert_the_kernel_equals_the_scan``: the gradient w.r.t. ``(params, xs,
    carry)`` of a loss that weighs every output and the final state (the LSTM's
    cell state), a new function at each call."""

    def make():
        def loss(params, xs, carry):
            final, ys = jaxrnn.unroll(cell, params, xs, carry, seq_lengths=lengths, reverse=reverse)
            return jnp.sum(weights * ys) + jnp.sum(jnp.sin(jax.tree.leaves(final)[-1]))

        return jax.grad(loss, argnums=(0, 1, 2))

    return make


@needs_blas
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize(
    ("T", "B", "H"), [(1, 1, 1), (6, 5, 3), (9, 33, 48), (9, 33, 136), (70, 33, 136)]
)
def test_the_lstm_forward_kernel_equals_the_scan(rng, T, B, H, reverse, with_lengths):
    """The inference pass of the fused LSTM, one custom call, against the fused scan
    with XLA's dot, in float64: every output and the final carry. The kernel cuts
    the first three sizes' steps by rows (a step's matmul below 2**21
    multiply-adds, too little for two bands) and the last two's by columns, on
    two or more threads: two bands of 64 and 72 units, which at T=70 project
    their inputs in three chunks of steps each."""
    cell, params, xs, carry, lengths = _lstm_problem(rng, T, B, H, with_lengths)

    _assert_the_kernel_equals_the_scan(
        _forward_maker(cell, lengths, reverse), "jaxrnn_blas_lstm", params, xs, carry, rtol=1e-12
    )


@needs_blas
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize(("T", "B", "H"), [(6, 5, 3), (12, 33, 136)])
def test_the_lstm_kernel_in_the_training_pass_equals_the_scan(rng, T, B, H, reverse, with_lengths):
    """The training pass's forward loop is the kernel too, storing the backward pass's
    factors (by rows at the first size, by columns at the second): the gradients
    w.r.t. the parameters, the inputs and the initial carry equal those with XLA's
    dot and the scan, in float64."""
    cell, params, xs, carry, lengths = _lstm_problem(rng, T, B, H, with_lengths)
    weights = jnp.asarray(rng.standard_normal((T, B, H)))
    make_grad = _training_grad_maker(cell, lengths, reverse, weights)

    _assert_the_kernel_equals_the_scan(make_grad, "jaxrnn_blas_lstm", params, xs, carry, rtol=1e-10)


def _elman_problem(rng, T, B, H, activation, with_lengths):
    """A float64 Elman cell (input size 4, a bias not zero), inputs ``(T, B, 4)``, a
    random initial state, and random lengths (some 0, some T) or ``None``."""
    cell = jaxrnn.elman(H, activation=activation)
    params = jax.tree.map(lambda a: a.astype(np.float64), cell.init(jax.random.key(1), 4))
    params = params._replace(b=jnp.asarray(rng.standard_normal(H)))
    xs = jnp.asarray(rng.standard_normal((T, B, 4)))
    h0 = jnp.asarray(rng.standard_normal((B, H)))
    lengths = jnp.asarray(rng.integers(0, T + 1, B)) if with_lengths else None
    return cell, params, xs, h0, lengths


@needs_blas
@pytest.mark.parametrize(("reverse", "with_lengths"), [(False, False), (True, True)])
@pytest.mark.parametrize("activation", [jnp.tanh, jax.nn.relu, jax.nn.sigmoid])
@pytest.mark.parametrize(("T", "B", "H"), [(6, 5, 3), (9, 33, 256), (70, 33, 256)])
def test_the_elman_forward_kernel_equals_the_scan(rng, T, B, H, activation, reverse, with_lengths):
    """The Elman cell's forward pass, one custom call, against the fused scan with
    XLA's dot, in float64, for each activation the kernel has: the outputs and
    the final state. The first size's steps are cut by rows, the others' by
    columns (two bands of 128 units; at T=70 their inputs are projected in two
    chunks of steps)."""
    cell, params, xs, h0, lengths = _elman_problem(rng, T, B, H, activation, with_lengths)

    _assert_the_kernel_equals_the_scan(
        _forward_maker(cell, lengths, reverse), "jaxrnn_blas_elman", params, xs, h0, rtol=1e-12
    )


@needs_blas
@pytest.mark.parametrize(("reverse", "with_lengths"), [(False, False), (True, True)])
@pytest.mark.parametrize("activation", [jnp.tanh, jax.nn.relu, jax.nn.sigmoid])
@pytest.mark.parametrize(("T", "B", "H"), [(6, 5, 3), (12, 33, 200), (7, 33, 300)])
def test_the_elman_kernels_in_the_training_pass_equal_the_scans(
    rng, T, B, H, activation, reverse, with_lengths
):
    """A training pass runs the same forward kernel and the backward loop as a second
    call (its slope from the outputs), for each activation: gradients w.r.t. the
    parameters, the inputs and the initial state equal those with XLA's dot and
    the scans, in float64. The backward loop cuts the first two sizes by rows
    (``w_hh`` below 512 KiB) and the last by columns (two bands)."""
    cell, params, xs, h0, lengths = _elman_problem(rng, T, B, H, activation, with_lengths)
    weights = jnp.asarray(rng.standard_normal((T, B, H)))
    make_grad = _training_grad_maker(cell, lengths, reverse, weights)

    assert "@jaxrnn_blas_elman_grad(" in lowered_text(make_grad(), params, xs, h0)
    _assert_the_kernel_equals_the_scan(make_grad, "jaxrnn_blas_elman", params, xs, h0, rtol=1e-10)


def _gru_problem(rng, T, B, H, with_lengths, use_bias=True):
    """A float64 GRU with the reset after the matmul (input size 4, biases not zero),
    inputs ``(T, B, 4)``, a random initial state, and random lengths or ``None``."""
    cell = jaxrnn.gru(H, use_bias=use_bias)
    params = jax.tree.map(lambda a: a.astype(np.float64), cell.init(jax.random.key(1), 4))
    if use_bias:
        params = params._replace(
            b=jnp.asarray(rng.standard_normal(3 * H)), b_hn=jnp.asarray(rng.standard_normal(H))
        )
    xs = jnp.asarray(rng.standard_normal((T, B, 4)))
    h0 = jnp.asarray(rng.standard_normal((B, H)))
    lengths = jnp.asarray(rng.integers(0, T + 1, B)) if with_lengths else None
    return cell, params, xs, h0, lengths


@needs_blas
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize(("T", "B", "H"), [(1, 1, 1), (6, 5, 3), (9, 33, 160), (70, 33, 160)])
def test_the_gru_forward_kernel_equals_the_scan(rng, T, B, H, reverse, with_lengths):
    """The GRU's inference pass, one custom call, against the fused scan with XLA's
    dot, in float64: the outputs and the final state. The first two sizes' steps
    are cut by rows, the others' by columns (``w_hh`` of 600 KiB: two bands of 80
    units, which at T=70 project their inputs in three chunks of steps)."""
    cell, params, xs, h0, lengths = _gru_problem(rng, T, B, H, with_lengths)

    _assert_the_kernel_equals_the_scan(
        _forward_maker(cell, lengths, reverse), "jaxrnn_blas_gru", params, xs, h0, rtol=1e-12
    )


@needs_blas
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize(
    ("T", "B", "H", "use_bias"), [(6, 5, 3, True), (12, 33, 160, True), (7, 4, 5, False)]
)
def test_the_gru_kernels_in_the_training_pass_equal_the_scans(
    rng, T, B, H, use_bias, reverse, with_lengths
):
    """A GRU's training pass is two custom calls, the forward loop storing the
    backward pass's factors and the backward loop (by rows, by columns, and
    without biases): the gradients w.r.t. the parameters, the inputs and the
    initial state equal those with XLA's dot and the scans, in float64."""
    cell, params, xs, h0, lengths = _gru_problem(rng, T, B, H, with_lengths, use_bias)
    weights = jnp.asarray(rng.standard_normal((T, B, H)))
    make_grad = _training_grad_maker(cell, lengths, reverse, weights)

    assert "@jaxrnn_blas_gru_grad(" in lowered_text(make_grad(), params, xs, h0)
    _assert_the_kernel_equals_the_scan(make_grad, "jaxrnn_blas_gru", params, xs, h0, rtol=1e-10)


@needs_blas
@pytest.mark.parametrize("H", [5, 160])
def test_the_gru_forward_kernel_without_inputs(rng, H):
    """With input size 0 the kernel projects nothing: the GRU's ``x_n``, which only
    the projection writes, is zero (and not what the kept scratch memory held
    from the call before, of the same size with inputs), by rows and by columns."""
    cell, params, xs, h0, _ = _gru_problem(rng, 4, 33, H, False)
    jax.jit(lambda p, x, h: jaxrnn.unroll(cell, p, x, h))(params, xs, h0)
    params = params._replace(w_ih=jnp.zeros((0, 3 * H)))

    make_forward = _forward_maker(cell, None, False)
    no_inputs = jnp.zeros((4, 33, 0))
    _assert_the_kernel_equals_the_scan(
        make_forward, "jaxrnn_blas_gru", params, no_inputs, h0, rtol=1e-12
    )


@needs_blas
def test_a_gru_with_the_reset_before_the_matmul_keeps_the_scans(rng):
    cell = jaxrnn.gru(4, reset_after=False)
    params = cell.init(jax.random.key(0), 3)
    xs = jnp.asarray(rng.standard_normal((5, 2, 3)), jnp.float32)
    loss = jax.grad(lambda p: jnp.sum(jaxrnn.unroll(cell, p, xs)[1]))
    text = lowered_text(loss, params)
    assert "jaxrnn_blas_gru" not in text
    assert "@jaxrnn_blas_gemm(" in text


@needs_blas
def test_an_elman_cell_with_another_activation_keeps_the_scan(rng):
    cell = jaxrnn.elman(4, activation=jnp.sin)
    params = cell.init(jax.random.key(0), 3)
    xs = jnp.asarray(rng.standard_normal((5, 2, 3)), jnp.float32)
    text = lowered_text(lambda p, x: jaxrnn.unroll(cell, p, x), params, xs)
    assert "jaxrnn_blas_elman" not in text
    assert "@jaxrnn_blas_gemm(" in text
    with pytest.raises(ValueError, match=r"activation must be one of .*got 'sin'"):
        blas._elman_forward(xs, params.w_ih, params.w_hh, None, jnp.zeros((2, 4)), activation="sin")
    ys = jnp.zeros((5, 2, 4))
    with pytest.raises(ValueError, match=r"_elman_backward: activation must be one of"):
        blas._elman_backward(params.w_hh, ys, ys, None, jnp.zeros((2, 4)), activation="sin")


@needs_blas
def test_the_lstm_kernels_results_do_not_depend_on_the_calls_before(rng):
    """The kernels keep their scratch memory (packed weights, projected inputs) from
    call to call and hand it out again uninitialised, a block to a request of up
    to twice its size: a call after a larger one, and after one of the other cut,
    gets the same results, bit for bit, as the first call of its size, and those
    of the scan."""
    problems = [_lstm_problem(rng, T, B, H, False) for T, B, H in [(20, 33, 136), (30, 40, 200)]]
    small = (6, 5, 3)
    problems.append(_lstm_problem(rng, *small, False))

    def run(cell, params, xs, carry, lengths):
        forward = jax.jit(lambda p: jaxrnn.unroll(cell, p, xs, carry))
        loss = jax.value_and_grad(lambda p: jnp.sum(jaxrnn.unroll(cell, p, xs, carry)[1]))
        return forward(params), jax.jit(loss)(params)

    first = [run(*problem) for problem in problems]
    again = [run(*problem) for problem in problems[::-1]][::-1]
    for got, before in zip(again, first, strict=True):
        for g, b in zip(jax.tree.leaves(got), jax.tree.leaves(before), strict=True):
            np.testing.assert_array_equal(g, b)
    with blas.use(False):
        expected = run(*problems[0])
    for g, e in zip(jax.tree.leaves(first[0]), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)


@needs_blas
def test_the_lstm_forward_kernel_under_vmap_and_without_bias(rng):
    cell = jaxrnn.lstm(4, use_bias=False)
    params = jax.tree.map(lambda a: a.astype(np.float64), cell.init(jax.random.key(2), 3))
    xs = jnp.asarray(rng.standard_normal((3, 5, 2, 3)))  # mapped over axis 1

    def forward(x):
        return jaxrnn.unroll(cell, params, x)[1]

    got = jax.vmap(forward, in_axes=1)(xs)
    with blas.use(False):
        expected = jax.vmap(lambda x: jaxrnn.unroll(cell, params, x)[1], in_axes=1)(xs)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_the_elman_kernels_say_when_they_are_switched_off():
    with blas.use(False), pytest.raises(RuntimeError, match="_elman_forward needs the oneMKL"):
        blas._elman_forward(
            jnp.ones((2, 1, 3)), jnp.ones((3, 1)), jnp.ones((1, 1)), None, jnp.ones((1, 1))
        )
    ys = jnp.ones((2, 1, 1))
    with blas.use(False), pytest.raises(RuntimeError, match="_elman_backward needs the oneMKL"):
        blas._elman_backward(jnp.ones((1, 1)), ys, ys, None, jnp.ones((1, 1)))


def test_the_gru_kernels_say_when_they_are_switched_off():
    one = jnp.ones((1, 1))
    with blas.use(False), pytest.raises(RuntimeError, match="_gru_forward needs the oneMKL"):
        blas._gru_forward(jnp.ones((2, 1, 3)), jnp.ones((3, 3)), jnp.ones((1, 3)), None, None, one)
    per_step = jnp.ones((2, 1, 1))
    with blas.use(False), pytest.raises(RuntimeError, match="_gru_backward needs the oneMKL"):
        blas._gru_backward(jnp.ones((1, 3)), *[per_step] * 6, None, one)


def test_the_lstm_kernels_say_when_they_are_switched_off():
    with blas.use(False), pytest.raises(RuntimeError, match="needs the oneMKL custom call"):
        blas._lstm_forward(
            jnp.ones((2, 1, 3)), jnp.ones((3, 4)), jnp.ones((1, 4)), None, *[jnp.ones((1, 1))] * 2
        )
    per_step = jnp.ones((2, 1, 1))
    with blas.use(False), pytest.raises(RuntimeError, match="_lstm_backward needs the oneMKL"):
        blas._lstm_backward(
            jnp.ones((1, 4)),
            jnp.ones((2, 1, 4)),
            per_step,
            per_step,
            per_step,
            None,
            *[jnp.ones((1, 1))] * 2,
        )


@needs_blas
@pytest.mark.parametrize("make_cell", [jaxrnn.lstm, jaxrnn.gru, jaxrnn.elman])
@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_for_a_gpu_or_tpu_the_loops_lower_to_scans(make_cell, platform):
    """The loop kernels and oneMKL's matmuls are for CPUs only: the same training
    pass, lowered for a GPU or a TPU (``jax.export``, no device needed), has no
    custom call of this library, and its two loops are ``while`` loops (the scans).
    Every matmul there keeps the precision asked for (conftest.py asks for float32's;
    JAX's default would let a GPU use TensorFloat-32, a TPU bfloat16): jaxrnn sets
    none of its own."""
    cell = make_cell(8)
    params = cell.init(jax.random.key(0), 4)
    xs = jnp.ones((5, 3, 4), jnp.float32)
    lengths = jnp.array([5, 2, 0])

    def loss(params, xs):
        return jnp.sum(jaxrnn.unroll(cell, params, xs, seq_lengths=lengths)[1] ** 2)

    train = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    assert "@jaxrnn_blas_" in lowered_text(train, params, xs)  # on this CPU: the kernels
    text = jax.export.export(train, platforms=(platform,))(params, xs).mlir_module()
    assert "jaxrnn_blas" not in text
    assert text.count("stablehlo.while") == 2
    dots = [line for line in text.splitlines() if "= stablehlo.dot_general" in line]
    assert dots
    assert all("precision = [HIGHEST, HIGHEST]" in line for line in dots)


@needs_blas
def test_matrices_beyond_onemkls_32_bit_sizes_take_xlas_dot():
    """oneMKL's LP64 interface takes 32-bit sizes: an axis of 2**31 or more (here
    only traced, never allocated) lowers to XLA's dot, not a silently cut size."""
    big = jax.ShapeDtypeStruct((2, 2**31), jnp.float32)
    text = jax.jit(blas.matmul).lower(big, jax.ShapeDtypeStruct((2**31, 3), jnp.float32))
    assert "jaxrnn_blas_gemm" not in text.as_text()
    assert "@jaxrnn_blas_gemm(" in lowered_text(blas.matmul, jnp.ones((2, 4)), jnp.ones((4, 3)))
    assert not blas._fits_lp64(jax.ShapeDtypeStruct((3, 2**16, 2**15), jnp.float32))
    assert blas._fits_lp64(jnp.ones((3, 4, 5)))


@needs_blas
@pytest.mark.parametrize("make_cell", [jaxrnn.lstm, jaxrnn.gru, jaxrnn.elman])
def test_a_sequence_of_no_steps_returns_the_initial_carry(make_cell):
    """``fused.unroll`` over T = 0 (``jaxrnn.unroll`` refuses it) and the loop
    kernels themselves return the initial state, and its gradient passes through."""
    cell = make_cell(5)
    params = cell.init(jax.random.key(0), 4)
    carry = jax.tree.map(lambda a: a + 1.5, cell.zero_carry((3,)))
    xs = jnp.zeros((0, 3, 4), jnp.float32)
    final, ys = fused.unroll(cell, params, xs, carry)
    assert ys.shape == (0, 3, 5)
    for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(carry), strict=True):
        np.testing.assert_array_equal(got, want)
    grads = jax.grad(lambda c: jnp.sum(jax.tree.leaves(fused.unroll(cell, params, xs, c)[0])[0]))(
        carry
    )
    np.testing.assert_array_equal(jax.tree.leaves(grads)[0], np.ones((3, 5)))
    h0, c0 = jnp.full((3, 5), 1.5, jnp.float32), jnp.full((3, 5), 2.5, jnp.float32)
    kernel = {
        jaxrnn.lstm: lambda: blas._lstm_forward(xs, params.w_ih, params.w_hh, None, h0, c0)[1:3],
        jaxrnn.gru: lambda: blas._gru_forward(xs, params.w_ih, params.w_hh, None, None, h0)[1:2],
        jaxrnn.elman: lambda: blas._elman_forward(xs, params.w_ih, params.w_hh, None, h0)[1:2],
    }[make_cell]
    for got, want in zip(kernel(), (h0, c0), strict=False):
        np.testing.assert_array_equal(got, want)
    if make_cell is jaxrnn.elman:  # and its backward kernel: dh passes through
        d_h, no_steps = jnp.full((3, 5), 0.5, jnp.float32), jnp.zeros((0, 3, 5), jnp.float32)
        _, dh_first = blas._elman_backward(params.w_hh, no_steps, no_steps, None, d_h)
        np.testing.assert_array_equal(dh_first, d_h)


@needs_blas
def test_operands_of_two_float_types_are_refused_not_a_crash():
    """The kernels read every operand as one C++ type: a float32 weight beside float64
    inputs is an error naming the call (it had aborted the process)."""
    xs = jnp.ones((3, 2, 4), jnp.float64)
    w_ih, w_hh = jnp.ones((4, 5), jnp.float32), jnp.ones((5, 5), jnp.float32)
    call = jax.jit(lambda *a: blas._elman_forward(*a))
    with pytest.raises(Exception, match=r"jaxrnn_blas_elman: shapes or float types do not match"):
        call(xs, w_ih, w_hh, None, jnp.zeros((2, 5), jnp.float64))


def test_jax_export_needs_the_custom_calls_switched_off():
    # docs/unroll.md: jax.export refuses this process's custom calls; traced inside
    # blas.use(False) the function exports and computes what unroll does.
    from jax import export

    cell = jaxrnn.lstm(4)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (5, 2, 3), jnp.float32)  # the fused path

    def run(p, x):
        return jaxrnn.unroll(cell, p, x)[1]

    if blas.available():
        with pytest.raises(ValueError, match="custom calls"):
            export.export(jax.jit(run))(params, xs)
    with blas.use(False):  # a new function: JAX keeps run's trace, custom calls and all
        exported = export.export(jax.jit(lambda p, x: run(p, x)))(params, xs)
    np.testing.assert_allclose(exported.call(params, xs), run(params, xs), atol=1e-6)
