"""The fused sequence kernels against plain autodiff of the same cell's ``step`` under ``lax.scan``.

Every built-in cell, with and without lengths, forwards and backwards, with and
without rematerialisation: the values, the final carries and the gradients with
respect to the parameters, the inputs and the initial carry agree to 1e-10 in
float64. Cells the fused path does not know keep plain autodiff.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import CASES, make_params, random_carry

import jaxrnn
from jaxrnn import blas, fused

T, B, I, H = 7, 3, 4, 5
LENGTHS = np.array([7, 2, 0])  # full, short and empty sequences
TOL = 1e-10


def weighted_loss(carry, ys):
    """A scalar that weighs every output and final-carry element differently."""
    weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
    total = jnp.sum(jnp.sin(ys) * weights)
    for index, leaf in enumerate(jax.tree.leaves(carry)):
        total = total + (index + 1) * jnp.sum(jnp.cos(leaf))
    return total


def plain_scan(cell, params, xs, carry, seq_lengths, reverse):
    """``unroll``'s docstring loop as a ``lax.scan`` over ``cell.step``: the autodiff oracle."""
    time_index = jnp.arange(xs.shape[0])
    lengths = jnp.full(xs.shape[1:-1], xs.shape[0]) if seq_lengths is None else seq_lengths

    def body(carry, inputs):
        t, x = inputs
        new_carry, y = cell.step(params, carry, x)
        valid = (t < lengths)[..., None]
        carry = jax.tree.map(lambda n, o: jnp.where(valid, n, o), new_carry, carry)
        return carry, jnp.where(valid, y, 0.0)

    return jax.lax.scan(body, carry, (time_index, xs), reverse=reverse)


def assert_trees_close(got, want, tol=TOL):
    # In NumPy: each eager JAX op on a new shape would compile, and these tests
    # compare many small arrays.
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))) <= tol


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def arrays(case, hidden_size, input_size, dtype, batch_shape, time=T, seed=0):
    """``(cell, params, xs, carry)`` as ``cases`` draws them, made in one compiled call
    (the same draws made op by op would compile dozens of small programs)."""
    cell = case.make(hidden_size, dtype=dtype, init="pytorch")

    def draw():
        _, params = make_params(case, hidden_size, input_size, dtype, seed=seed)
        xs = jax.random.normal(jax.random.key(seed + 1), (time, *batch_shape, input_size), dtype)
        return params, xs, random_carry(case, cell, batch_shape, dtype)

    return (cell, *compiled(draw))


def compiled(fn, *args):
    """``jax.jit(fn)(*args)`` with XLA's backend optimisations off: these tests compile
    many scans, and only their numbers matter here, not their speed."""
    lowered = jax.jit(fn).trace(*args).lower()
    return lowered.compile(compiler_options={"xla_backend_optimization_level": 0})(*args)


def loss_and_grads(run):
    """Value, outputs and gradients w.r.t. (params, xs, carry) of ``weighted_loss(*run(...))``."""

    def loss(params, xs, carry):
        out = run(params, xs, carry)
        return weighted_loss(*out), out

    return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)


def fused_vs_plain(cell, params, xs, carry, variants):
    """For each ``(seq_lengths, reverse, remat)``: the fused path's and the oracle's results."""

    def both(params, xs, carry):
        pairs = []
        for seq_lengths, reverse, remat in variants:
            fused_run = functools.partial(
                jaxrnn.unroll, cell, seq_lengths=seq_lengths, reverse=reverse, remat=remat
            )
            plain_run = lambda p, x, c, n=seq_lengths, r=reverse: plain_scan(cell, p, x, c, n, r)  # noqa: E731
            pairs.append(
                (
                    loss_and_grads(fused_run)(params, xs, carry),
                    loss_and_grads(plain_run)(params, xs, carry),
                )
            )
        return pairs

    return compiled(both, params, xs, carry)


# (seq_lengths, reverse, remat): four variants in which every pair of the three
# options meets in all four combinations.
ALL_VARIANTS = [
    (None, False, False),
    (None, True, True),
    (LENGTHS, False, True),
    (LENGTHS, True, False),
]
# The variants of one kind (no bias, other activations) share its masking and
# direction code: two variants each cover what differs.
SOME_VARIANTS = [(None, False, False), (LENGTHS, True, True)]
MAIN_CASES = ("elman-tanh", "lstm", "gru", "gru-reset-before")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_fused_values_and_gradients_equal_plain_autodiff(case):
    cell, params, xs, carry = arrays(case, H, I, jnp.float64, (B,))
    assert fused.supports(cell, params, xs, carry)
    variants = ALL_VARIANTS if case.name in MAIN_CASES else SOME_VARIANTS
    variants = [(None if n is None else jnp.asarray(n), r, m) for n, r, m in variants]
    for got, want in fused_vs_plain(cell, params, xs, carry, variants):
        assert_trees_close(got, want)


@pytest.mark.parametrize("name", [*MAIN_CASES, "elman-relu", "elman-sigmoid", "gru-nobias"])
def test_the_scans_without_jaxrnn_blas_equal_plain_autodiff(name):
    """The fused path with ``jaxrnn.blas`` switched off, XLA's dot and the scans (the
    path of every backend but a CPU with oneMKL: GPUs, TPUs), against autodiff too:
    on this CPU the test above runs the loop kernels."""
    (case,) = [c for c in CASES if c.name == name]
    cell, params, xs, carry = arrays(case, H, I, jnp.float64, (B,))
    variants = [(None if n is None else jnp.asarray(n), r, m) for n, r, m in ALL_VARIANTS]
    with blas.use(False):
        results = fused_vs_plain(cell, params, xs, carry, variants)
    for got, want in results:
        assert_trees_close(got, want)


def test_any_number_of_batch_dimensions_on_the_fused_path():
    case = CASES[3]  # lstm
    shapes = [(), (2, 3)]
    cell, params, x0, c0 = arrays(case, H, I, jnp.float64, shapes[0])
    _, _, x1, c1 = arrays(case, H, I, jnp.float64, shapes[1])
    xs, carries = [x0, x1], [c0, c1]
    lengths = [None, jnp.asarray(np.arange(6).reshape(2, 3) + 1)]

    def both(params, xs, carries):
        runs = []
        for x, carry, n in zip(xs, carries, lengths, strict=True):
            fused_run = functools.partial(jaxrnn.unroll, cell, seq_lengths=n, reverse=True)
            plain_run = functools.partial(plain_scan, cell, seq_lengths=n, reverse=True)
            runs.append([loss_and_grads(r)(params, x, carry) for r in (fused_run, plain_run)])
        return runs

    for got, want in compiled(both, params, xs, carries):
        assert_trees_close(got, want)


@pytest.mark.parametrize("name", MAIN_CASES)
def test_fused_path_under_vmap_over_parameters_and_inputs(name):
    """Under ``vmap`` over models (their parameters, inputs and lengths): on this
    CPU the loop kernels run once per model (``vmap_method="sequential"``)."""
    (case,) = [c for c in CASES if c.name == name]
    cell, first, x0, _ = arrays(case, H, I, jnp.float64, (B,), seed=0)
    _, second, x1, _ = arrays(case, H, I, jnp.float64, (B,), seed=5)
    stacked = jax.tree.map(lambda a, b: np.stack([a, b]), first, second)
    xs = np.stack([x0, x1])
    lengths = jnp.asarray(np.stack([LENGTHS, LENGTHS[::-1]]))

    def loss(params, xs, lengths, use_fused):
        out = jaxrnn.unroll(cell, params, xs, seq_lengths=lengths, fused=use_fused)
        return weighted_loss(*out)

    def both(params, xs, lengths):
        grad = jax.grad(loss, argnums=(0, 1))
        per_model = [jax.vmap(functools.partial(grad, use_fused=f)) for f in (True, False)]
        return [run(params, xs, lengths) for run in per_model]

    got, want = compiled(both, stacked, xs, lengths)
    assert_trees_close(got, want)


def test_stacked_bidirectional_layers_on_the_fused_path():
    case, remat = CASES[3], True  # lstm; stored activations are covered above
    model = jaxrnn.StackedRNN(case.make(H, dtype=jnp.float64), 2, bidirectional=True)
    params, xs, carry = compiled(
        lambda: (
            model.init(jax.random.key(0), I),
            jax.random.normal(jax.random.key(1), (T, B, I), jnp.float64),
            jax.tree.map(
                lambda leaf: 0.5 * jax.random.normal(jax.random.key(2), leaf.shape, jnp.float64),
                model.zero_carry((B,)),
            ),
        )
    )

    def both(params, xs, carry):
        runs = [
            functools.partial(
                model.apply, seq_lengths=jnp.asarray(LENGTHS), fused=use_fused, remat=remat
            )
            for use_fused in (True, False)
        ]
        return [loss_and_grads(run)(params, xs, carry) for run in runs]

    got, want = compiled(both, params, xs, carry)
    assert_trees_close(got, want)


def test_second_order_reverse_mode_goes_through_the_fused_backward_pass():
    # A gradient penalty: the gradient of a function of a gradient.
    cell, params, xs, _ = arrays(CASES[3], H, I, jnp.float64, (B,))

    def penalty(params, use_fused):
        def loss(xs):
            return weighted_loss(*jaxrnn.unroll(cell, params, xs, fused=use_fused))

        return jnp.sum(jax.grad(loss)(xs) ** 2)

    both = lambda p: [jax.grad(penalty)(p, use_fused) for use_fused in (True, False)]  # noqa: E731
    got, want = compiled(both, params)
    assert_trees_close(got, want)


@pytest.mark.parametrize("name", MAIN_CASES)
def test_forward_over_reverse_mode_equals_plain_autodiff(name):
    """``jax.jvp`` of a gradient (a Hessian-vector product, as ``jax.hessian`` takes
    it) differentiates the fused passes in forward mode: on a CPU with
    ``jaxrnn.blas`` their matmuls were a ``jax.custom_vjp``, and it failed with
    JAX's "can't apply forward-mode autodiff (jvp) to a custom_vjp function"."""
    (case,) = [c for c in CASES if c.name == name]
    cell, params, xs, carry = arrays(case, H, I, jnp.float64, (B,))
    tangents = jax.tree.map(jnp.cos, (params, xs))

    def hvp(params, xs, use_fused, seq_lengths, reverse):
        def loss(params, xs):
            run = jaxrnn.unroll(
                cell, params, xs, carry, seq_lengths=seq_lengths, reverse=reverse, fused=use_fused
            )
            return weighted_loss(*run)

        grad = jax.grad(loss, argnums=(0, 1))
        return jax.jvp(grad, (params, xs), tangents)[1]

    def both(params, xs):
        lengths = jnp.asarray(LENGTHS)
        return [
            [hvp(params, xs, use_fused, n, r) for use_fused in (True, False)]
            for n, r in ((None, False), (lengths, True))
        ]

    for got, want in compiled(both, params, xs):
        assert_trees_close(got, want)


@pytest.mark.parametrize("name", MAIN_CASES)
def test_hessian_of_a_jitted_loss_equals_plain_autodiff(name):
    """``jax.hessian`` (jacfwd of jacrev) of a jitted loss: jacrev's vmap over the
    cotangent batches the loop kernel and the scan of its derivative rule on different
    axes, and the Elman cell's gradient of ``b`` came out per step (shape (T, H))."""
    (case,) = [c for c in CASES if c.name == name]
    cell, params, xs, carry = arrays(case, H, I, jnp.float64, (B,))

    def hessian(use_fused):
        def loss(b):
            run = jaxrnn.unroll(cell, params._replace(b=b), xs, carry, fused=use_fused)
            return weighted_loss(*run)

        return jax.hessian(jax.jit(loss))(params.b)

    got, want = hessian(True), hessian(False)
    assert got.shape == want.shape == params.b.shape * 2
    assert_trees_close(got, want)


# (case, with lengths, reverse, remat) at higher orders, whose programs take seconds to
# compile: the scans whose steps call jaxrnn.blas's matmuls (the GRU with the reset
# before the matmul, an Elman activation the kernels lack, the LSTM's remat forward),
# each option somewhere. The loop kernels' rule (the same _differentiated_as) is
# tested at second order above.
HIGHER_ORDER_CASES = [
    ("elman-linear-nobias", True, False, True),
    ("lstm", True, True, True),
    ("gru-reset-before", True, False, True),
]


@pytest.mark.parametrize(("name", "with_lengths", "reverse", "remat"), HIGHER_ORDER_CASES)
def test_second_and_third_order_reverse_mode_equal_plain_autodiff(
    name, with_lengths, reverse, remat
):
    """Reverse over reverse over reverse differentiates the derivative rules of the
    fused passes twice: on a CPU with ``jaxrnn.blas``, the rule of a matmul inside a
    scan was lost when JAX linearized the scan, and third order failed with "the FFI
    call to jaxrnn_blas_gemm cannot be differentiated" (the GRU with the reset before
    the matmul, an Elman activation the kernels lack, the LSTM with ``remat``)."""
    (case,) = [c for c in CASES if c.name == name]
    cell, params, xs, carry = arrays(case, 3, 2, jnp.float64, (2,), time=3)
    lengths = jnp.asarray([3, 1]) if with_lengths else None  # a full and a short sequence

    def second_and_third(params, use_fused):
        def loss(params):
            options = dict(seq_lengths=lengths, reverse=reverse, remat=remat, fused=use_fused)
            return weighted_loss(*jaxrnn.unroll(cell, params, xs, carry, **options))

        def penalty(params):  # a function of the gradient
            return sum(jnp.sum(jnp.sin(g)) for g in jax.tree.leaves(jax.grad(loss)(params)))

        # The gradient of a function of a gradient (second order), and that of
        # Σ sin of it (third): its vjp with cos of it.
        second, pullback = jax.vjp(jax.grad(penalty), params)
        (third,) = pullback(jax.tree.map(jnp.cos, second))
        return second, third

    got, want = compiled(
        lambda p: [second_and_third(p, use_fused) for use_fused in (True, False)], params
    )
    assert_trees_close(got, want)


def test_forward_mode_needs_fused_false():
    cell, params, xs, _ = arrays(CASES[5], H, I, jnp.float64, (B,))
    tangent = jnp.ones_like(xs)
    hint = r"unroll: can't apply forward-mode .* reverse mode only; .* pass fused=False"
    with pytest.raises(TypeError, match=hint):
        jax.jvp(lambda x: jaxrnn.unroll(cell, params, x)[1], (xs,), (tangent,))
    with pytest.raises(TypeError, match=hint):
        jax.jacfwd(lambda x: jaxrnn.unroll(cell, params, x)[1])(xs)
    _, ys_dot = jax.jvp(lambda x: jaxrnn.unroll(cell, params, x, fused=False)[1], (xs,), (tangent,))
    assert ys_dot.shape == (T, B, H)


def test_float32_fused_path_agrees_with_plain_autodiff():
    cell, params, xs, carry = arrays(CASES[3], 16, 8, jnp.float32, (4,), time=20)
    variants = [(jnp.asarray([20, 3, 0, 11]), True, False)]
    for got, want in fused_vs_plain(cell, params, xs, carry, variants):
        assert_trees_close(got, want, tol=1e-4)


# --------------------------------------------------------------------------- who takes the path


def users_cell(hidden_size):
    """A cell written by a user: no spec, so plain autodiff."""

    def init(key, input_size):
        return {"w": 0.3 * jax.random.normal(key, (input_size + hidden_size, hidden_size))}

    def step(params, h, x):
        h = jnp.tanh(jnp.concatenate([x, h], axis=-1) @ params["w"])
        return h, h

    return jaxrnn.Cell(init, step, lambda batch_shape=(): jnp.zeros((*batch_shape, hidden_size)))


def test_cells_the_fused_path_does_not_know_keep_plain_autodiff():
    cell = users_cell(H)
    params, xs = compiled(
        lambda: (cell.init(jax.random.key(0), I), jax.random.normal(jax.random.key(1), (T, B, I)))
    )
    zeros = cell.zero_carry((B,))
    assert not fused.supports(cell, params, xs, zeros)

    def both(params, xs):
        grads = jax.grad(lambda p: weighted_loss(*jaxrnn.unroll(cell, p, xs)))(params)
        oracle = jax.grad(lambda p: weighted_loss(*plain_scan(cell, p, xs, zeros, None, False)))
        return grads, oracle(params)

    grads, oracle = compiled(both, params, xs)
    assert_trees_close(grads, oracle, tol=1e-12)


def test_a_replaced_step_or_mixed_dtypes_leave_the_fused_path():
    lstm, params, xs, _ = arrays(CASES[3], H, I, jnp.float64, (B,))
    carry = lstm.zero_carry((B,))
    assert fused.supports(lstm, params, xs, carry)

    def doubled_step(params, carry, projected):
        return lstm.step_projected(params, carry, 2.0 * projected)

    replaced = lstm._replace(step_projected=doubled_step)
    assert not fused.supports(replaced, params, xs, carry)

    def outputs(params, xs):
        doubled = params._replace(w_ih=2.0 * params.w_ih, b=2.0 * params.b)
        return (
            jaxrnn.unroll(replaced, params, xs)[1],
            jaxrnn.unroll(replaced, params, xs, fused=False)[1],
            jaxrnn.unroll(lstm, doubled, xs)[1],
        )

    ys, ys_plain, ys_doubled = compiled(outputs, params, xs)
    assert max_abs(ys, ys_plain) == 0.0  # the replacement is what runs
    assert max_abs(ys, ys_doubled) < 1e-12

    # Mixed dtypes take the plain path, which promotes as the cell's step does.
    as_float32 = functools.partial(jax.tree.map, lambda a: np.asarray(a, np.float32))
    assert not fused.supports(lstm, params, as_float32(xs), carry)
    assert fused.supports(lstm, as_float32(params), as_float32(xs), as_float32(carry))


# --------------------------------------------------------------------------- bfloat16 matmuls


def dot_operand_dtypes(jaxpr) -> list[tuple[str, ...]]:
    """The operand dtypes of every ``dot_general`` in a jaxpr and the jaxprs inside it."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += dot_operand_dtypes(inner)
    return found


def relative_error(got, want) -> float:
    errors = [
        max_abs(a, b) / max(1.0, float(np.max(np.abs(np.asarray(b)))))
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True)
    ]
    return max(errors)


@pytest.mark.parametrize("name", MAIN_CASES)
def test_bfloat16_matmuls_agree_with_float32_and_gradients_flow(name):
    case = next(c for c in CASES if c.name == name)
    cell, params, xs, carry = arrays(case, 16, 8, jnp.float32, (4,), time=12)
    lengths = jnp.asarray([12, 5, 0, 9])

    def run(compute_dtype):
        return functools.partial(
            jaxrnn.unroll, cell, seq_lengths=lengths, reverse=True, compute_dtype=compute_dtype
        )

    def both(params, xs, carry):
        return [loss_and_grads(run(d))(params, xs, carry) for d in (jnp.bfloat16, None)]

    got, want = compiled(both, params, xs, carry)
    # Values, carries and gradients stay float32 ...
    assert jax.tree.map(lambda a: a.dtype, got) == jax.tree.map(lambda a: a.dtype, want)
    # ... and agree with float32 matmuls to bfloat16's precision (8 significant
    # bits: about 4e-3 per rounding), but not exactly: the matmuls did round.
    assert 0 < relative_error(got, want) < 2e-2
    d_params, d_xs, _ = got[1]
    for leaf in [*jax.tree.leaves(d_params), d_xs[:5, 1]]:  # valid steps of sequence 1
        assert np.all(np.isfinite(leaf)) and np.any(np.asarray(leaf) != 0)
    assert np.all(np.asarray(d_xs)[5:, 1] == 0)  # its padding gets no gradient

    # Every matmul of the forward and backward passes takes bfloat16 inputs.
    grad = jax.grad(lambda p: weighted_loss(*run(jnp.bfloat16)(p, xs, carry)))
    dots = dot_operand_dtypes(jax.make_jaxpr(grad)(params).jaxpr)
    assert len(dots) >= 5 and set(dots) == {("bfloat16", "bfloat16")}


def test_bfloat16_matmuls_in_a_stacked_bidirectional_model():
    model = jaxrnn.StackedRNN(jaxrnn.gru(16), 2, bidirectional=True)
    params, xs = compiled(
        lambda: (
            model.init(jax.random.key(0), 8),
            jax.random.normal(jax.random.key(1), (10, 3, 8), jnp.float32),
        )
    )

    def loss(params, compute_dtype):
        return weighted_loss(*model.apply(params, xs, compute_dtype=compute_dtype))

    both = lambda p: [jax.value_and_grad(loss)(p, d) for d in (jnp.bfloat16, None)]  # noqa: E731
    got, want = compiled(both, params)
    assert 0 < relative_error(got, want) < 2e-2


@pytest.mark.parametrize(
    ("compute_dtype", "kwargs", "error", "message"),
    [
        (jnp.int8, {}, TypeError, "compute_dtype must be None or a floating dtype"),
        ("nope", {}, TypeError, "compute_dtype must be None or a floating dtype"),
        (jnp.float64, {}, ValueError, "compute_dtype=float64 is wider than"),
        (jnp.bfloat16, {"fused": False}, ValueError, "needs the fused path, but fused=False"),
    ],
)
def test_bad_compute_dtype_is_named_at_trace_time(compute_dtype, kwargs, error, message):
    cell = jaxrnn.lstm(4)
    params = jax.eval_shape(lambda: cell.init(jax.random.key(0), 3))
    xs = jax.ShapeDtypeStruct((5, 2, 3), jnp.float32)
    with pytest.raises(error, match=message):
        jax.eval_shape(
            lambda p, x: jaxrnn.unroll(cell, p, x, compute_dtype=compute_dtype, **kwargs),
            params,
            xs,
        )


def test_compute_dtype_on_a_users_cell_says_it_needs_the_fused_path():
    cell = users_cell(H)
    params = jax.eval_shape(lambda: cell.init(jax.random.key(0), I))
    xs = jax.ShapeDtypeStruct((T, B, I), jnp.float32)
    with pytest.raises(ValueError, match="not one the fused path supports"):
        jax.eval_shape(
            lambda p, x: jaxrnn.unroll(cell, p, x, compute_dtype=jnp.bfloat16), params, xs
        )


# --------------------------------------------------------------------------- unroll


def test_default_and_explicit_unroll_compute_the_same_function():
    cell, params, xs, carry = arrays(CASES[3], H, I, jnp.float64, (B,))
    lengths = jnp.asarray(LENGTHS)
    assert fused.default_unroll("cpu") >= 1 and fused.default_unroll("no-such-backend") == 1

    def runs(params, xs, carry):
        out = []
        for unroll in (None, 3, True):
            run = functools.partial(jaxrnn.unroll, cell, seq_lengths=lengths, unroll=unroll)
            out.append(loss_and_grads(run)(params, xs, carry))
        oracle = lambda p, x, c: plain_scan(cell, p, x, c, lengths, False)  # noqa: E731
        return out, loss_and_grads(oracle)(params, xs, carry)

    got, want = compiled(runs, params, xs, carry)
    for result in got:
        assert_trees_close(result, want)


@pytest.mark.parametrize("unroll", [0, -2, 1.5, "4"])
def test_bad_unroll_is_named(unroll):
    cell = jaxrnn.elman(4)
    params = jax.eval_shape(lambda: cell.init(jax.random.key(0), 3))
    xs = jax.ShapeDtypeStruct((5, 2, 3), jnp.float32)
    with pytest.raises(ValueError, match="unroll must be a positive int"):
        jax.eval_shape(lambda p, x: jaxrnn.unroll(cell, p, x, unroll=unroll), params, xs)


@pytest.mark.parametrize("option", ["fused", "remat"])
def test_bool_options_refuse_other_values(option):
    cell = jaxrnn.lstm(4)
    params = jax.eval_shape(lambda: cell.init(jax.random.key(0), 3))
    xs = jax.ShapeDtypeStruct((5, 2, 3), jnp.float32)
    with pytest.raises(TypeError, match=f"{option} must be True or False, got 'yes'"):
        jax.eval_shape(lambda p, x: jaxrnn.unroll(cell, p, x, **{option: "yes"}), params, xs)
