"""Probes against brute force: ``jax.jacrev`` through a Python loop, NumPy norms, the theory."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from cases import CASES, make_params, random_carry, to_numpy
from hypothesis import given
from hypothesis import strategies as st

import jaxrnn
from jaxrnn import optim, probes

T, B, I, H = 5, 2, 3, 4
F64 = jnp.float64
# One of each kind and both GRU forms; the bias-free variants change nothing the probes see.
PROBE_CASES = [c for c in CASES if c.name in ("elman-tanh", "lstm", "gru")]


def _problem(case, seed=0):
    cell, params = make_params(case, H, I, F64, seed=seed)
    xs = jax.random.normal(jax.random.key(seed + 10), (T, B, I), F64)
    carry = random_carry(case, cell, (B,), F64)
    weights = jax.random.normal(jax.random.key(seed + 20), (T, B, H), F64)

    def loss_fn(ys):  # every output matters, the last one most
        return jnp.sum(weights * ys) + jnp.sum(ys[-1] ** 2)

    return cell, params, xs, carry, loss_fn


def _hidden(carry):
    return carry.h if isinstance(carry, jaxrnn.LSTMCarry) else carry


def _run_from(cell, params, xs, carry, start):
    """Python loop over xs[start:], returning the outputs and the final carry."""
    ys = []
    for t in range(start, xs.shape[0]):
        carry, y = cell.step(params, carry, xs[t])
        ys.append(y)
    return ys, carry


def _carries(cell, params, xs, carry):
    """The carry after every step, by a Python loop."""
    out = []
    for t in range(xs.shape[0]):
        carry, _ = cell.step(params, carry, xs[t])
        out.append(carry)
    return out


def brute_force_carry_grads(cell, params, xs, carry, loss_fn):
    """dL/dh_t (and dL/dc_t for an LSTM) for every t: the gradient of the loss as a function
    of the state at t alone, one t at a time, through a Python loop of ``cell.step``
    (compiled as one program to keep the test quick)."""

    @jax.jit
    def all_grads(params, xs, carry):
        carries = _carries(cell, params, xs, carry)
        grads_h, grads_c = [], []
        for t in range(xs.shape[0]):
            prefix, _ = _run_from(cell, params, xs[:t], carry, 0)

            def loss_of_state(state, t=t, prefix=prefix):
                rest, _ = _run_from(cell, params, xs, state, t + 1)
                return loss_fn(jnp.stack([*prefix, _hidden(state), *rest]))

            grad = jax.grad(loss_of_state)(carries[t])
            grads_h.append(_hidden(grad))
            if isinstance(grad, jaxrnn.LSTMCarry):
                grads_c.append(grad.c)
        return jnp.stack(grads_h), (jnp.stack(grads_c) if grads_c else None)

    return all_grads(params, xs, carry)


def brute_force_jacobians(cell, params, xs, carry):
    """J_t = d s_{T-1} / d s_t per sequence, (T, B, S, S), the carry flattened (h then c)."""

    def flat(c):
        return jnp.concatenate(jax.tree.leaves(c), axis=-1)

    def unflat(v):
        if isinstance(carry, jaxrnn.LSTMCarry):
            return jaxrnn.LSTMCarry(v[..., :H], v[..., H:])
        return v

    @jax.jit
    def all_jacobians(params, xs, carry):
        carries = _carries(cell, params, xs, carry)
        jacobians = []
        for t in range(xs.shape[0]):

            def end_state(s, t=t):
                _, final = _run_from(cell, params, xs, unflat(s), t + 1)
                return flat(final)

            full = jax.jacrev(end_state)(flat(carries[t]))  # (B, S, B, S), block diagonal
            jacobians.append(jnp.stack([full[b, :, b, :] for b in range(B)]))
        return jnp.stack(jacobians)

    return np.asarray(all_jacobians(params, xs, carry))


# --------------------------------------------------------------------------- dL/dh_t


@pytest.mark.parametrize("case", PROBE_CASES, ids=str)
def test_carry_grads_equal_jacrev_through_a_python_loop(case):
    cell, params, xs, carry, loss_fn = _problem(case)
    expected_h, expected_c = brute_force_carry_grads(cell, params, xs, carry, loss_fn)
    loss, grads = probes.carry_grads(cell, params, xs, loss_fn, carry=carry)
    np.testing.assert_allclose(_hidden(grads), expected_h, rtol=1e-9, atol=1e-9)
    if case.is_lstm:  # dL/dc_t holding h_t fixed
        np.testing.assert_allclose(grads.c, expected_c, rtol=1e-9, atol=1e-12)
    _, ys = jaxrnn.unroll(cell, params, xs, carry)
    np.testing.assert_allclose(loss, loss_fn(ys), rtol=1e-12)
    if case.name == "gru":  # the norms, under a user's jit
        norms = jax.jit(lambda p: probes.hidden_grad_norms(cell, p, xs, loss_fn, carry=carry))
        expected_norms = jnp.sqrt(jnp.sum(expected_h**2, axis=(1, 2)))
        assert norms(params).shape == (T,)
        np.testing.assert_allclose(norms(params), expected_norms, rtol=1e-6, atol=0)


def test_vanishing_norms_do_not_underflow_before_the_gradients_do():
    """In float32, squares of entries below ~1e-19 underflow; the norms must not stop there."""
    cell32, cell64 = jaxrnn.gru(H), jaxrnn.gru(H, dtype=F64)
    params = cell32.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (120, I), jnp.float32)  # one sequence, no batch

    def loss_fn(ys):
        return jnp.sum(ys[-1])

    norms32 = probes.hidden_grad_norms(cell32, params, xs, loss_fn)
    params64 = jax.tree.map(lambda a: a.astype(F64), params)
    norms64 = probes.hidden_grad_norms(cell64, params64, xs.astype(F64), loss_fn)
    shown = np.asarray(norms64) > 1e-30  # float32's normal range ends at 1.2e-38
    assert np.asarray(norms64).min() < 1e-20  # the test reaches the range that matters
    np.testing.assert_allclose(np.asarray(norms32)[shown], np.asarray(norms64)[shown], rtol=1e-2)


def test_exploding_norms_near_the_top_of_float32_and_past_it():
    """‖g‖ of 1.4e38 is a float32 number (it came out 0: x / scale became x * (1 / scale),
    a subnormal reciprocal flushed to zero), and an infinite gradient has an infinite norm
    (it came out NaN, inf / inf)."""
    cell = jaxrnn.elman(1, activation=lambda a: a)
    params = cell.init(jax.random.key(0), 1)._replace(w_hh=jnp.full((1, 1), 10.0))
    xs = jnp.zeros((40, 2, 1), jnp.float32)  # two sequences: each norm is over two entries

    def loss_fn(ys):
        return jnp.sum(ys[-1])

    _, grads = probes.carry_grads(cell, params, xs, loss_fn)  # 10^(39 - t), inf at t = 0
    expected = np.linalg.norm(np.asarray(grads, np.float64).reshape(40, -1), axis=1)
    assert np.isinf(expected[0]) and expected[1] > 1e38
    norms = probes.hidden_grad_norms(cell, params, xs, loss_fn)
    np.testing.assert_allclose(norms, expected, rtol=1e-6)
    frobenius = probes.jacobian_frobenius_norms(cell, params, xs)  # |10^(39 - t)| per sequence
    np.testing.assert_allclose(frobenius[:, 0], np.abs(np.asarray(grads[:, 0, 0])), rtol=1e-6)


def test_an_empty_batch_has_norms_of_zero():
    """unroll takes a batch of no sequences; the norm of no gradients is 0 (it was an error
    from inside jnp.max: a zero-size reduction with no identity)."""
    cell = jaxrnn.elman(H)
    params = cell.init(jax.random.key(0), I)
    xs = jnp.ones((T, 0, I), jnp.float32)
    np.testing.assert_array_equal(probes.hidden_grad_norms(cell, params, xs, jnp.sum), 0.0)
    assert probes.jacobian_frobenius_norms(cell, params, xs).shape == (T, 0)


# --------------------------------------------------------------------------- Jacobian products


@pytest.mark.parametrize("case", PROBE_CASES[:2], ids=str)  # one carry of one leaf, one of two
def test_jacobian_norms_equal_brute_force_jacobians(case):
    cell, params, xs, carry, _ = _problem(case, seed=1)
    jacobians = brute_force_jacobians(cell, params, xs, carry)  # (T, B, S, S)
    frobenius = probes.jacobian_frobenius_norms(cell, params, xs, carry=carry)
    spectral = probes.jacobian_spectral_norms(
        cell, params, xs, carry=carry, num_iters=300, key=jax.random.key(5)
    )
    assert frobenius.shape == spectral.shape == (T, B)
    np.testing.assert_allclose(
        frobenius, np.linalg.norm(jacobians, "fro", axis=(-2, -1)), rtol=1e-6
    )
    np.testing.assert_allclose(spectral, np.linalg.norm(jacobians, 2, axis=(-2, -1)), rtol=1e-6)


def test_linear_elman_jacobian_products_are_powers_of_w_hh():
    cell = jaxrnn.elman(H, activation=lambda a: a, dtype=F64)
    params = cell.init(jax.random.key(0), I)
    w = 0.6 * jax.random.normal(jax.random.key(1), (H, H), F64)
    params = params._replace(w_hh=w)
    xs = jax.random.normal(jax.random.key(2), (12, I), F64)
    frobenius = probes.jacobian_frobenius_norms(cell, params, xs)
    spectral = probes.jacobian_spectral_norms(cell, params, xs, num_iters=300)
    powers = [np.linalg.matrix_power(np.asarray(w), 11 - t) for t in range(12)]
    np.testing.assert_allclose(frobenius, [np.linalg.norm(p, "fro") for p in powers], rtol=1e-9)
    np.testing.assert_allclose(spectral, [np.linalg.norm(p, 2) for p in powers], rtol=1e-6)


# --------------------------------------------------------------------------- the theory


def _gaussian_with_radius(seed, hidden, radius):
    w = np.random.default_rng(seed).standard_normal((hidden, hidden))
    return jnp.asarray(w * (radius / np.max(np.abs(np.linalg.eigvals(w)))), F64)


@functools.cache
def _norms_of_last_output(hidden, activation_name):
    """A jitted ‖dL/dh_t‖ for L = ys[-1] @ readout; cached so hypothesis compiles once per size."""
    activation = {"linear": lambda a: a, "tanh": jnp.tanh}[activation_name]
    cell = jaxrnn.elman(hidden, activation=activation, dtype=F64)

    def norms(w_hh, w_ih, readout, xs):
        params = jaxrnn.ElmanParams(w_ih, w_hh, jnp.zeros((hidden,), F64))
        return probes.hidden_grad_norms(cell, params, xs, lambda ys: jnp.sum(ys[-1] @ readout))

    return jax.jit(norms)


HIDDEN_SIZES = st.sampled_from([2, 5, 9])


@given(seed=st.integers(0, 2**31 - 1), hidden=HIDDEN_SIZES, radius=st.floats(0.5, 1.5))
def test_linear_elman_per_step_rate_tends_to_the_spectral_radius(seed, hidden, radius):
    """g_t = g_{T-1} (W^T)^{T-1-t}, so ‖g_t‖ changes by a factor tending to ρ(W) per step."""
    length = 300
    rng = np.random.default_rng(seed)
    w = _gaussian_with_radius(seed, hidden, radius)
    w_ih = jnp.asarray(rng.standard_normal((1, hidden)), F64)
    readout = jnp.asarray(rng.standard_normal(hidden), F64)
    xs = jnp.asarray(rng.standard_normal((length, 1)), F64)
    norms = np.asarray(_norms_of_last_output(hidden, "linear")(w, w_ih, readout, xs))
    # Skip the last 100 steps (the transient of the other eigenvalues), then average.
    window = length - 1 - 100
    rate = (norms[0] / norms[window]) ** (1.0 / window)
    assert rate == pytest.approx(radius, rel=0.03)


@given(
    seed=st.integers(0, 2**31 - 1),
    hidden=HIDDEN_SIZES,
    sigma=st.floats(0.2, 0.99),
    input_scale=st.floats(0.0, 3.0),
)
def test_tanh_elman_norms_decay_at_least_as_fast_as_sigma_max(seed, hidden, sigma, input_scale):
    """Pascanu et al.: ‖∂h_t/∂h_{t-1}‖ ≤ γ σ_max(W) with γ = 1 for tanh, so each step shrinks."""
    length = 60
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((hidden, hidden))
    w = jnp.asarray(w * (sigma / np.linalg.norm(w, 2)), F64)
    w_ih = jnp.asarray(rng.standard_normal((2, hidden)), F64)
    readout = jnp.asarray(rng.standard_normal(hidden), F64)
    xs = jnp.asarray(input_scale * rng.standard_normal((length, 3, 2)), F64)
    norms = np.asarray(_norms_of_last_output(hidden, "tanh")(w, w_ih, readout, xs))
    assert np.all(norms[:-1] <= sigma * norms[1:] * (1 + 1e-9) + 1e-300)
    distance = np.arange(length)[::-1]
    assert np.all(norms <= norms[-1] * sigma**distance * (1 + 1e-9) + 1e-300)


def test_spectral_radius_probe_of_a_rescaled_matrix():
    cell = jaxrnn.elman(6, activation=lambda a: a, dtype=F64)
    params = cell.init(jax.random.key(0), 1)._replace(w_hh=_gaussian_with_radius(3, 6, 1.25))
    assert float(probes.recurrent_spectrum(cell, params)["h"].spectral_radius) == pytest.approx(
        1.25, rel=1e-9
    )


# --------------------------------------------------------------------------- spectra, gates


@pytest.mark.parametrize("case", CASES, ids=str)
def test_recurrent_spectrum_per_gate_block_equals_numpy(case):
    cell, params = make_params(case, H, I, F64)
    spectra = probes.recurrent_spectrum(cell, params)
    names = probes.GATE_NAMES[cell.spec.kind]
    assert tuple(spectra) == names
    for g, name in enumerate(names):
        block = np.asarray(params.w_hh[:, g * H : (g + 1) * H])
        np.testing.assert_allclose(
            spectra[name].singular_values, np.linalg.svd(block, compute_uv=False), rtol=1e-10
        )
        radius = np.max(np.abs(np.linalg.eigvals(block)))
        np.testing.assert_allclose(spectra[name].spectral_radius, radius, rtol=1e-10)


@pytest.mark.parametrize(
    "case", [c for c in CASES if c.name not in ("elman-relu", "elman-linear-nobias")], ids=str
)
def test_gate_activations_rebuild_the_cells_outputs(case):
    cell, params, xs, carry, _ = _problem(case, seed=2)
    gates = probes.gate_activations(cell, params, xs, carry=carry)
    _, ys = jaxrnn.unroll(cell, params, xs, carry)
    kind = cell.spec.kind
    if kind == "elman":
        rebuilt = gates["h"]
    elif kind == "lstm":
        rebuilt = gates["o"] * gates["c"]
    else:
        h_prev = jnp.concatenate([carry[None], ys[:-1]])
        n, z = gates["n"], gates["z"]
        rebuilt = (1 - z) * n + z * h_prev
    np.testing.assert_allclose(rebuilt, ys, rtol=1e-10, atol=1e-12)


def numpy_gates(case, params, xs, carry):
    """Every gate at every step from the equations in NumPy float64, with the
    names and order of ``gate_activations`` (a reference sharing no code with it)."""
    p = to_numpy(params)
    h = np.asarray(carry.h if case.is_lstm else carry, np.float64)
    c = np.asarray(carry.c, np.float64) if case.is_lstm else None
    b = 0.0 if p.b is None else p.b
    gates = []
    for x in np.asarray(xs, np.float64):
        if case.name.startswith("elman"):
            h = np.tanh(x @ p.w_ih + h @ p.w_hh + b)
            gates.append({"h": h})
        elif case.is_lstm:
            a = np.split(x @ p.w_ih + h @ p.w_hh + b, 4, axis=-1)
            i, f, g, o = ref.sigmoid(a[0]), ref.sigmoid(a[1]), np.tanh(a[2]), ref.sigmoid(a[3])
            c = f * c + i * g
            h = o * np.tanh(c)
            gates.append({"i": i, "f": f, "g": g, "o": o, "c": np.tanh(c)})
        else:
            x_r, x_z, x_n = np.split(x @ p.w_ih + b, 3, axis=-1)
            w_r, w_z, w_n = np.split(p.w_hh, 3, axis=-1)
            r, z = ref.sigmoid(x_r + h @ w_r), ref.sigmoid(x_z + h @ w_z)
            n = np.tanh(x_n + r * (h @ w_n + p.b_hn))
            h = (1 - z) * n + z * h
            gates.append({"r": r, "z": z, "n": n})
    return {name: np.stack([g[name] for g in gates]) for name in gates[0]}


@pytest.mark.parametrize("case", PROBE_CASES, ids=str)
def test_every_gate_and_its_saturation_equal_the_equations(case):
    cell, params, xs, carry, _ = _problem(case, seed=3)
    xs = 3.0 * xs  # spread the gates over their range, both limits included
    want = numpy_gates(case, params, xs, carry)
    got = probes.gate_activations(cell, params, xs, carry=carry)
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-12, err_msg=name)
    eps = 0.1
    saturation = probes.gate_saturation(cell, params, xs, carry=carry, eps=eps)
    for name, kind in probes.gate_kinds(cell).items():
        lower = 0.0 if kind == "sigmoid" else -1.0
        np.testing.assert_allclose(saturation[name].low, np.mean(want[name] < lower + eps, (1, 2)))
        np.testing.assert_allclose(saturation[name].high, np.mean(want[name] > 1 - eps, (1, 2)))
    assert any(float(s.low.sum()) > 0 and float(s.high.sum()) > 0 for s in saturation.values())


def test_gate_saturation_counts_units_near_their_limits():
    cell = jaxrnn.lstm(H, forget_bias=5.0, dtype=F64)
    params = cell.init(jax.random.key(0), I)
    xs = jnp.zeros((T, B, I), F64)
    saturation = probes.gate_saturation(cell, params, xs, eps=0.01)
    np.testing.assert_allclose(saturation["f"].high, 1.0)  # sigmoid(5) = 0.9933
    np.testing.assert_allclose(saturation["f"].low, 0.0)

    cell = jaxrnn.elman(4, dtype=F64)
    params = cell.init(jax.random.key(0), 1)
    xs = jnp.concatenate([jnp.full((1, 1, 1), 100.0), jnp.zeros((1, 1, 1))]).astype(F64)
    params = params._replace(w_ih=jnp.asarray([[1.0, -1.0, 1.0, 0.0]], F64))
    saturation = probes.gate_saturation(cell, params, xs, eps=0.05)
    values = probes.gate_activations(cell, params, xs)["h"]
    np.testing.assert_allclose(saturation["h"].high, np.mean(values > 0.95, axis=(1, 2)))
    np.testing.assert_allclose(saturation["h"].low, np.mean(values < -0.95, axis=(1, 2)))
    assert float(saturation["h"].high[0]) == 0.5 and float(saturation["h"].low[0]) == 0.25


# --------------------------------------------------------------------------- the optimizer probe


def test_record_grad_norms_passes_updates_through_and_records_norms():
    params = {"w": jnp.ones((2, 2), F64), "b": jnp.zeros((3,), jnp.float32), "none": None}
    grads = {
        "w": jnp.full((2, 2), 2.0, F64),
        "b": jnp.array([3.0, 0.0, 4.0], jnp.float32),
        "none": None,
    }
    tx = probes.record_grad_norms()
    state = tx.init(params)
    updates, state = tx.update(grads, state, params)
    assert updates is grads or jax.tree.all(
        jax.tree.map(lambda a, b: bool((a == b).all()), updates, grads)
    )
    assert int(state.count) == 1
    np.testing.assert_allclose(state.param_norms["w"], 4.0)
    np.testing.assert_allclose(state.param_norms["b"], 5.0)
    assert state.param_norms["none"] is None
    np.testing.assert_allclose(state.global_norm, np.sqrt(16.0 + 25.0))


@pytest.mark.parametrize("entry", [1e20, 1e-25, 1j])
def test_record_grad_norms_of_huge_tiny_and_complex_gradients(entry):
    """The norms are NumPy's: in float32, sqrt(sum(g**2)) said inf for entries of 1e20 and 0
    for 1e-25, and for a complex leaf sqrt(sum(g**2)) is no norm at all (1j, not 1)."""
    dtype = jnp.complex64 if isinstance(entry, complex) else jnp.float32
    grads = {"w": jnp.full((4,), entry, dtype), "b": jnp.full((), entry, dtype)}
    tx = probes.record_grad_norms()
    _, state = tx.update(grads, tx.init(grads), grads)
    for name, g in grads.items():
        assert state.param_norms[name].dtype == jnp.float32
        expected = np.linalg.norm(np.asarray(g, np.complex128))  # float64: no under/overflow
        np.testing.assert_allclose(state.param_norms[name], expected, rtol=1e-6)
    np.testing.assert_allclose(state.global_norm, np.sqrt(5) * abs(entry), rtol=1e-6)


def test_record_grad_norms_in_a_jitted_scanned_chain():
    tx = optim.chain(probes.record_grad_norms(), optim.clip_by_global_norm(1.0), optim.sgd(0.1))
    params = jnp.array([3.0, 4.0], jnp.float32)

    def step(carry, _):
        params, state = carry
        grads = 2 * params  # of ‖params‖²
        updates, state = tx.update(grads, state, params)
        return (optim.apply_updates(params, updates), state), state[0].global_norm

    (params, state), norms = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), None, length=3))(
        params
    )
    assert norms.dtype == jnp.float32 and int(state[0].count) == 3
    np.testing.assert_allclose(norms[0], 10.0, rtol=1e-6)  # the raw norm, before clipping
    np.testing.assert_allclose(
        norms[1], 2 * np.linalg.norm([3.0, 4.0]) * (1 - 0.1 / 5 * 1), rtol=1e-5
    )


# --------------------------------------------------------------------------- errors


def test_errors_name_the_problem():
    cell = jaxrnn.elman(4)
    params = cell.init(jax.random.key(0), 2)
    xs = jnp.ones((5, 3, 2), jnp.float32)
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        probes.hidden_grad_norms(cell, params, xs, lambda ys: ys[-1])
    with pytest.raises(ValueError, match="input_size=2"):
        probes.hidden_grad_norms(cell, params, jnp.ones((5, 3, 7), jnp.float32), jnp.sum)
    with pytest.raises(TypeError, match=r"jaxrnn\.Cell"):
        probes.hidden_grad_norms("lstm", params, xs, jnp.sum)
    with pytest.raises(ValueError, match="num_iters"):
        probes.jacobian_spectral_norms(cell, params, xs, num_iters=0)
    with pytest.raises(ValueError, match="eps"):
        probes.gate_saturation(cell, params, xs, eps=1.5)
    relu = jaxrnn.elman(4, activation=jax.nn.relu)
    with pytest.raises(ValueError, match="tanh"):
        probes.gate_saturation(relu, relu.init(jax.random.key(0), 2), xs)
    # Each named, before NumPy or JAX fails on it ("'float' object is not callable",
    # TracerArrayConversionError, "invalid PRNG key data", "'str' object has no attribute").
    with pytest.raises(TypeError, match="loss_fn must be a function"):
        probes.hidden_grad_norms(cell, params, xs, 3.0)
    with pytest.raises(TypeError, match="loss_fn must return a scalar array, got a tuple"):
        probes.carry_grads(cell, params, xs, lambda ys: (jnp.sum(ys), 0))
    with pytest.raises(TypeError, match=r"real floating-point scalar.*got dtype int"):
        probes.hidden_grad_norms(cell, params, xs, lambda ys: jnp.sum(ys > 0))
    for key in (3, jax.random.split(jax.random.key(0), 2)):
        with pytest.raises(TypeError, match="key must be one PRNG key"):
            probes.jacobian_spectral_norms(cell, params, xs, key=key)
    for eps in ("0.1", jnp.array([0.1, 0.2])):
        with pytest.raises(TypeError, match="eps must be a Python float"):
            probes.gate_saturation(cell, params, xs, eps=eps)
    for probe in (probes.recurrent_spectrum, probes.gate_activations, probes.gate_saturation):
        with pytest.raises(TypeError, match=r"cell must be a jaxrnn\.Cell .*got str"):
            probe("elman", params, *((xs,) if probe is not probes.recurrent_spectrum else ()))
    with pytest.raises(TypeError, match=r"cell must be a jaxrnn\.Cell"):
        probes.gate_kinds("lstm")
    custom = jaxrnn.Cell(cell.init, cell.step, cell.zero_carry)
    with pytest.raises(ValueError, match="built-in cell"):
        probes.gate_activations(custom, params, xs)
    # A user's cell without a spec still works with the gradient probes.
    np.testing.assert_allclose(
        probes.hidden_grad_norms(custom, params, xs, jnp.sum),
        probes.hidden_grad_norms(cell, params, xs, jnp.sum),
        rtol=1e-6,
    )
