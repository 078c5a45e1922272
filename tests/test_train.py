"""The training loop: truncated BPTT, determinism, exact resume, early stopping, guards, samples."""

import dataclasses
import io
import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrnn import data, optim, train

TEXT = "the cat sat on the mat. the dog sat on the log. " * 12
MODEL = train.ModelConfig(vocab_size=len(set(TEXT)), hidden_size=12, embed_size=6)
CONFIG = train.TrainConfig(
    batch_size=3,
    seq_len=8,
    steps=6,
    learning_rate=1e-2,
    warmup_steps=2,
    eval_every=3,
    sample_every=0,
    patience=0,
)


@pytest.fixture(scope="module")
def char_data():
    return data.char_data(TEXT, CONFIG.batch_size, CONFIG.seq_len, val_fraction=0.2)


def quiet_fit(model, char_data, config, **kwargs):
    return train.fit(model, char_data, config, show_progress=False, log=lambda _: None, **kwargs)


def assert_same_tree(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("embed_size", [0, 6])
def test_model_shapes_and_initial_loss(embed_size):
    model = train.CharModel(dataclasses.replace(MODEL, embed_size=embed_size, num_layers=2))
    params = model.init(jax.random.key(0))
    assert ("embed" in params) == bool(embed_size)
    inputs = jnp.zeros((5, 3), jnp.int32)
    carry, logits = jax.jit(model.apply)(params, inputs)
    assert logits.shape == (5, 3, MODEL.vocab_size) and logits.dtype == jnp.float32
    assert carry.h.shape == (2, 3, 12)
    loss, _ = jax.jit(model.loss)(params, inputs, inputs)
    assert abs(float(loss) - math.log(MODEL.vocab_size)) < 0.5  # near uniform at the start


def test_the_step_carries_the_state_across_windows(char_data):
    model = train.CharModel(MODEL)
    optimizer, schedule = train.make_optimizer(CONFIG)
    state = train.init_state(model, optimizer, CONFIG.batch_size, jax.random.key(0))
    step = train.make_train_step(model, optimizer, schedule)
    inputs, targets = data.window(char_data.train, 0, CONFIG.seq_len)
    new_state, metrics = step(state, inputs, targets)
    loss_fn = jax.jit(model.loss)
    want_loss, want_carry = loss_fn(state.params, inputs, targets, state.carry)
    # The loss alone is another program (on a CPU with oneMKL, the LSTM's forward
    # loop is one custom call), equal to float32 rounding, not bit for bit.
    for got, want in zip(
        jax.tree.leaves(new_state.carry), jax.tree.leaves(want_carry), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(metrics.loss), float(want_loss), rtol=1e-6)
    assert int(new_state.step) == 1 and bool(metrics.finite)
    assert float(metrics.learning_rate) == 0.0  # the warm-up starts at zero
    # The next window starts from that carry: the gradient does not reach back through it.
    inputs2, targets2 = data.window(char_data.train, 1, CONFIG.seq_len)
    _, metrics2 = step(new_state, inputs2, targets2)
    want2, _ = loss_fn(new_state.params, inputs2, targets2, new_state.carry)
    np.testing.assert_allclose(float(metrics2.loss), float(want2), rtol=1e-6)


def test_an_interrupt_saves_a_checkpoint_and_says_where(char_data, tmp_path):
    """Ctrl-C (here raised by the first line the run logs) saves the state it reached
    and names the file and how to continue; the checkpoint restores that state."""
    lines = []

    def log(line):
        lines.append(line)
        if len(lines) == 1:
            raise KeyboardInterrupt

    model = train.CharModel(MODEL)
    with pytest.raises(KeyboardInterrupt):
        train.fit(model, char_data, CONFIG, out_dir=tmp_path, show_progress=False, log=log)
    saved = tmp_path / "checkpoint.npz"
    assert f"saved {saved}; continue with the same command and --resume." in lines[-1]
    optimizer, _ = train.make_optimizer(CONFIG)
    state, _ = train.restore_state(saved, model, optimizer, CONFIG.batch_size)
    assert f"interrupted at step {int(state.step)}:" in lines[-1] and int(state.step) >= 1


def test_an_interrupt_keeps_the_losses_not_yet_reported(char_data, tmp_path):
    """Ctrl-C at step 2 (raised by the sample printed there), before any report: the
    checkpoint's counters hold steps 1 and 2's losses, so the resumed run's train_bpc
    at step 3 is the uninterrupted run's, the mean over steps 1 to 3."""

    def log(line):
        raise KeyboardInterrupt

    model = train.CharModel(MODEL)
    sampling = dataclasses.replace(CONFIG, sample_every=2, sample_length=4)
    with pytest.raises(KeyboardInterrupt):
        train.fit(model, char_data, sampling, out_dir=tmp_path, show_progress=False, log=log)
    optimizer, _ = train.make_optimizer(CONFIG)
    state, meta = train.restore_state(tmp_path / "checkpoint.npz", model, optimizer, 3)
    progress = train.progress_from_meta(meta)
    assert int(state.step) == 2 and progress["loss_count"] == 2
    resumed = quiet_fit(model, char_data, CONFIG, state=state, progress=progress)
    whole = quiet_fit(model, char_data, CONFIG)
    assert [r["train_bpc"] for r in resumed.history] == [r["train_bpc"] for r in whole.history]


def test_same_seed_same_trajectory_and_exact_resume(char_data, tmp_path):
    model = train.CharModel(MODEL)
    whole = quiet_fit(model, char_data, CONFIG, out_dir=tmp_path / "whole")
    again = quiet_fit(model, char_data, CONFIG)
    strip = [
        {k: v for k, v in r.items() if k not in ("elapsed_s", "chars_per_s")} for r in whole.history
    ]
    assert strip == [
        {k: v for k, v in r.items() if k not in ("elapsed_s", "chars_per_s")} for r in again.history
    ]
    assert_same_tree(whole.state, again.state)

    # Stopped after step 4 (between evaluations), then resumed from the checkpoint.
    first = quiet_fit(model, char_data, CONFIG, out_dir=tmp_path / "split", stop_at_step=4)
    assert first.stopped == "stop_at_step" and int(first.state.step) == 4
    optimizer, _ = train.make_optimizer(CONFIG)
    state, meta = train.restore_state(tmp_path / "split" / "checkpoint.npz", model, optimizer, 3)
    assert_same_tree(state, first.state)
    second = quiet_fit(
        model, char_data, CONFIG, state=state, progress=train.progress_from_meta(meta)
    )
    assert_same_tree(second.state, whole.state)
    resumed = first.history + second.history
    assert [r["train_bpc"] for r in resumed] == [r["train_bpc"] for r in whole.history]
    assert [r["val_bpc"] for r in resumed] == [r["val_bpc"] for r in whole.history]
    # And it learnt something in those 6 steps.
    assert whole.history[-1]["val_bpc"] < whole.history[0]["val_bpc"] < math.log2(MODEL.vocab_size)
    assert whole.best_val_bpc == whole.history[-1]["val_bpc"] and whole.stopped == "steps"


def test_metrics_lines_and_checkpoints(char_data, tmp_path):
    metrics = io.StringIO()
    quiet_fit(train.CharModel(MODEL), char_data, CONFIG, out_dir=tmp_path, metrics_file=metrics)
    lines = [json.loads(line) for line in metrics.getvalue().splitlines()]
    assert [r["step"] for r in lines] == [3, 6]
    for record in lines:
        assert {"train_bpc", "val_bpc", "learning_rate", "grad_norm", "skipped"} <= set(record)
        assert record["skipped"] == 0 and record["grad_norm"] > 0
    model, _, vocab, meta = train.load_model(tmp_path / "best.npz")
    assert model.config == MODEL and vocab == data.Vocabulary.from_text(TEXT)
    assert meta["train"]["steps"] == CONFIG.steps
    # The last step is evaluated too when it is not a multiple of eval_every.
    metrics = io.StringIO()
    config = dataclasses.replace(CONFIG, steps=5, eval_every=3)
    quiet_fit(train.CharModel(MODEL), char_data, config, metrics_file=metrics)
    assert [json.loads(line)["step"] for line in metrics.getvalue().splitlines()] == [3, 5]


def test_early_stopping(char_data):
    config = dataclasses.replace(CONFIG, patience=2, eval_every=1)
    # A best loss of 0 bits cannot be beaten: two evaluations without improvement stop it.
    progress = {"best_val_bpc": 0.0, "best_step": 0}
    result = quiet_fit(train.CharModel(MODEL), char_data, config, progress=progress)
    assert result.stopped == "early_stopping"
    assert len(result.history) == 2 and result.best_step == 0


def test_a_time_limit_stop_resumes_as_if_it_had_not_stopped(char_data, tmp_path):
    # The validation loss logged at a time-limit stop between evaluations counts for
    # neither --patience nor the best loss, nor does it restart train_bpc's average:
    # resumed, the run stops early at the step an uninterrupted one does, with its losses.
    model = train.CharModel(MODEL)
    config = dataclasses.replace(CONFIG, steps=8, eval_every=2, patience=2)
    progress = {"best_val_bpc": 0.0, "best_step": 0}  # unbeatable: stops at the 2nd evaluation
    whole = quiet_fit(model, char_data, config, progress=dict(progress))
    assert whole.stopped == "early_stopping" and int(whole.state.step) == 4
    lines = []
    first = train.fit(
        model,
        char_data,
        config,
        progress=dict(progress),
        out_dir=tmp_path,
        time_limit=1e-9,  # past after the first step
        show_progress=False,
        log=lines.append,
    )
    assert first.stopped == "time_limit" and int(first.state.step) == 1 and first.history == []
    assert "time limit of 0 s reached at step 1: validation " in lines[-1]
    assert not (tmp_path / "best.npz").exists()
    optimizer, _ = train.make_optimizer(config)
    state, meta = train.restore_state(tmp_path / "checkpoint.npz", model, optimizer, 3)
    second = quiet_fit(
        model, char_data, config, state=state, progress=train.progress_from_meta(meta)
    )
    assert second.stopped == "early_stopping" and int(second.state.step) == 4
    assert_same_tree(second.state, whole.state)
    assert [(r["step"], r["train_bpc"], r["val_bpc"]) for r in second.history] == [
        (r["step"], r["train_bpc"], r["val_bpc"]) for r in whole.history
    ]


def test_a_time_limit_stop_keeps_its_parameters_in_best_npz(char_data, tmp_path):
    # The parameters a time-limit stop reaches are evaluated and kept in best.npz (the
    # first the run has), and the resumed run keeps the best of every evaluation while
    # its own evaluations equal those of a run that never stopped.
    model = train.CharModel(MODEL)
    config = dataclasses.replace(CONFIG, steps=6, eval_every=3, patience=0)
    whole = quiet_fit(model, char_data, config)
    lines = []
    first = train.fit(
        model,
        char_data,
        config,
        out_dir=tmp_path,
        time_limit=1e-9,
        show_progress=False,
        log=lines.append,
    )
    assert first.stopped == "time_limit" and int(first.state.step) == 1 and first.history == []
    val_at_1 = train.evaluate(model, first.state.params, char_data.val, config.seq_len)
    assert (first.best_val_bpc, first.best_step) == (val_at_1, 1)
    assert lines[-1].startswith(f"time limit of 0 s reached at step 1: validation {val_at_1:.3f}")
    kept = train.load_model(tmp_path / "best.npz")[1]
    assert_same_tree(kept, first.state.params)
    optimizer, _ = train.make_optimizer(config)
    state, meta = train.restore_state(tmp_path / "checkpoint.npz", model, optimizer, 3)
    second = quiet_fit(
        model,
        char_data,
        config,
        state=state,
        progress=train.progress_from_meta(meta),
        out_dir=tmp_path,
    )
    assert_same_tree(second.state, whole.state)
    assert [(r["step"], r["train_bpc"], r["val_bpc"]) for r in second.history] == [
        (r["step"], r["train_bpc"], r["val_bpc"]) for r in whole.history
    ]
    losses = {1: val_at_1} | {r["step"]: r["val_bpc"] for r in whole.history}
    best_step = min(losses, key=losses.get)
    assert (second.best_val_bpc, second.best_step) == (losses[best_step], best_step)


def test_non_finite_gradients_are_skipped_then_stop(char_data, tmp_path):
    model = train.CharModel(MODEL)
    config = dataclasses.replace(CONFIG, max_consecutive_skips=3)
    optimizer, _ = train.make_optimizer(config)
    state = train.init_state(model, optimizer, config.batch_size, jax.random.key(0))
    head = dict(state.params["head"], w=state.params["head"]["w"].at[0, 0].set(jnp.nan))
    poisoned = state._replace(params=dict(state.params, head=head))
    with pytest.raises(train.NonFiniteError, match="NaN or infinite for 3 steps"):
        quiet_fit(model, char_data, config, state=poisoned, out_dir=tmp_path)
    kept, _ = train.restore_state(tmp_path / "checkpoint.npz", model, optimizer, 3)
    assert int(kept.opt_state.total_skipped) == 3
    assert_same_tree(kept.params, poisoned.params)  # no update went through


@pytest.mark.parametrize(("start", "skips", "stop"), [(0, 4, 4), (2, 3, 5), (1, 2, 3)])
def test_non_finite_steps_stop_exactly_after_max_consecutive_skips(
    char_data, tmp_path, start, skips, stop
):
    # Every window is NaN from step `start` on, and no evaluation comes before step 6:
    # the loop must look at the skips often enough to stop after exactly K of them.
    model = train.CharModel(MODEL)
    config = dataclasses.replace(CONFIG, eval_every=6, max_consecutive_skips=skips)
    optimizer, _ = train.make_optimizer(config)
    state = train.init_state(model, optimizer, config.batch_size, jax.random.key(0))
    head = dict(state.params["head"], w=state.params["head"]["w"].at[0, 0].set(jnp.nan))
    poisoned = state._replace(step=jnp.int32(start), params=dict(state.params, head=head))
    message = rf"NaN or infinite for {skips} steps in a row \(to step {stop}\)"
    with pytest.raises(train.NonFiniteError, match=message):
        quiet_fit(model, char_data, config, state=poisoned, out_dir=tmp_path)
    kept, _ = train.restore_state(tmp_path / "checkpoint.npz", model, optimizer, 3)
    assert int(kept.step) == stop and int(kept.opt_state.total_skipped) == skips


def test_sampling(char_data):
    model = train.CharModel(MODEL)
    params = model.init(jax.random.key(0))
    vocab = char_data.vocab
    one = train.sample(model, params, vocab, "the ", 12, jax.random.key(1))
    assert len(one) == 12 and set(one) <= set(vocab.chars)
    assert one == train.sample(model, params, vocab, "the ", 12, jax.random.key(1))
    greedy = train.sample(model, params, vocab, "the ", 12, jax.random.key(2), temperature=0.0)
    step = jax.jit(lambda ids, carry: model.apply(params, ids, carry))
    carry, logits = step(jnp.asarray(vocab.encode("the "), jnp.int32), model.zero_carry(None))
    expected = []
    for _ in range(12):  # greedy decoding by hand, one character at a time
        expected.append(int(jnp.argmax(logits[-1])))
        carry, logits = step(jnp.asarray(expected[-1:], jnp.int32), carry)
    assert greedy == vocab.decode(expected)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        train.sample(model, params, vocab, "THE", 12, jax.random.key(0))


def test_sampling_streams_pieces_whose_text_does_not_depend_on_the_length(char_data):
    model = train.CharModel(MODEL)
    params = model.init(jax.random.key(0))
    vocab, key = char_data.vocab, jax.random.key(4)
    long = train.sample(model, params, vocab, "the ", 700, key)
    for length in (0, 1, 255, 256, 257, 600):  # piece boundaries at 256 and 512
        pieces = list(train.sample_pieces(model, params, vocab, "the ", length, key))
        assert "".join(pieces) == train.sample(model, params, vocab, "the ", length, key)
        assert "".join(pieces) == long[:length]
        assert [len(p) for p in pieces] == [min(256, length - s) for s in range(0, length, 256)]
    # A length no memory could hold: the first pieces come, and no more is drawn.
    first = list(itertools.islice(train.sample_pieces(model, params, vocab, "the ", 2**62, key), 2))
    assert "".join(first) == long[:512]
    with pytest.raises(ValueError, match="prime must have at least one character"):
        train.sample_pieces(model, params, vocab, "", 10, key)  # at the call, not at next()


def test_sampling_divides_the_logits_by_the_temperature(char_data):
    # A head of zero weights gives the same logits b after every prefix: each character
    # is drawn from softmax(b / temperature), independently; its frequencies show which.
    model, vocab = train.CharModel(MODEL), char_data.vocab
    params = model.init(jax.random.key(0))
    b = np.linspace(-3.0, 3.0, vocab.size)
    params["head"] = {"w": jnp.zeros_like(params["head"]["w"]), "b": jnp.asarray(b, jnp.float32)}

    def softmax(z):
        return np.exp(z - z.max()) / np.exp(z - z.max()).sum()

    def distance(p, q):  # total variation
        return 0.5 * np.abs(p - q).sum()

    n = 4000
    for temperature in (0.5, 2.0):
        text = train.sample(model, params, vocab, "the ", n, jax.random.key(3), temperature)
        seen = np.bincount(vocab.encode(text), minlength=vocab.size) / n
        want = softmax(b / temperature)
        assert distance(seen, want) < 0.05
        for wrong in (softmax(b), softmax(b * temperature)):  # ignored, multiplied
            assert distance(want, wrong) > 0.2 and distance(seen, wrong) > 0.15


def test_each_periodic_sample_draws_with_its_own_key(char_data):
    # A rate of 1e-30 leaves the parameters as they were (in float32), so the samples
    # printed at steps 1, 2 and 3 differ only if each draws with another key.
    lines = []
    config = dataclasses.replace(
        CONFIG, schedule="constant", learning_rate=1e-30, sample_every=1, sample_length=24
    )
    train.fit(train.CharModel(MODEL), char_data, config, show_progress=False, log=lines.append)
    samples = [line for line in lines if line.startswith("--- sample at step")]
    assert [s.splitlines()[0] for s in samples] == [
        f"--- sample at step {k} ---" for k in (1, 2, 3, 4, 5, 6)
    ]
    assert len({s.split("\n", 1)[1] for s in samples}) == len(samples)  # no two alike


def test_evaluate_is_the_mean_over_windows(char_data):
    model = train.CharModel(MODEL)
    params = model.init(jax.random.key(0))
    got = train.evaluate(model, params, char_data.val, CONFIG.seq_len)
    carry, losses, loss_fn = model.zero_carry(char_data.val.shape[0]), [], jax.jit(model.loss)
    for i in range(data.num_windows(char_data.val, CONFIG.seq_len)):
        loss, carry = loss_fn(params, *data.window(char_data.val, i, CONFIG.seq_len), carry)
        losses.append(float(loss))
    assert got == pytest.approx(np.mean(losses) / math.log(2), rel=1e-5)
    chunked = train.evaluate(model, params, char_data.val, CONFIG.seq_len, chunked=True)
    assert chunked == pytest.approx(got, rel=1e-5)  # the same, read in chunks of 2 or 4 steps


def test_schedules_and_configs():
    for schedule in train.SCHEDULES:
        config = dataclasses.replace(CONFIG, schedule=schedule, steps=100, warmup_steps=10)
        fn = train.make_schedule(config)
        assert float(fn(jnp.int32(10))) == pytest.approx(1e-2, rel=1e-5)
        if schedule == "cosine":  # it ends at final_lr_fraction of the peak, not at 0
            end = 1e-2 * config.final_lr_fraction
            assert float(fn(jnp.int32(100))) == pytest.approx(end, rel=1e-5)
    with pytest.raises(ValueError, match="cell must be one of"):
        train.ModelConfig(vocab_size=3, cell="transformer")
    with pytest.raises(ValueError, match="schedule must be one of"):
        train.TrainConfig(schedule="linear")
    assert isinstance(train.make_optimizer(CONFIG)[0], optim.GradientTransformation)


def optimizer_updates(optimizer, grads_per_step, params):
    """The updates an optimizer gives for a sequence of gradients, as NumPy arrays."""
    state, out, update = optimizer.init(params), [], jax.jit(optimizer.update)
    for grads in grads_per_step:
        updates, state = update(grads, state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        out.append(jax.tree.map(np.asarray, updates))
    return out


def assert_updates_equal_optax(config, reference, grads_per_step, params):
    optimizer, _ = train.make_optimizer(config)
    got = optimizer_updates(optimizer, grads_per_step, params)
    want = optimizer_updates(reference, grads_per_step, params)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-8)


def random_grads(scales, seed=0):
    """One two-leaf gradient per scale: global norms far above and below the clip."""
    rng = np.random.default_rng(seed)
    return [
        {
            "a": jnp.asarray(s * rng.normal(size=3), jnp.float32),
            "b": jnp.asarray(0.3 * s * rng.normal(size=(2, 2)), jnp.float32),
        }
        for s in scales
    ]


@pytest.mark.parametrize(("clip_norm", "learning_rate"), [(1.0, 1e-2), (2.5, 1.0), (0.05, 0.3)])
def test_the_optimizer_clips_the_global_norm_before_adam(clip_norm, learning_rate):
    # optax is the oracle: clip_by_global_norm(c), then Adam. Clipping rescales each
    # step's gradients by its own factor, which changes Adam's moments from the second
    # step on: a threshold ignored, a norm per leaf, or clipping the update would not.
    config = dataclasses.replace(
        CONFIG, schedule="constant", learning_rate=learning_rate, clip_norm=clip_norm
    )
    reference = optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.adam(learning_rate, b1=config.b1, b2=config.b2),
    )
    params = {"a": jnp.zeros(3, jnp.float32), "b": jnp.ones((2, 2), jnp.float32)}
    grads = random_grads([10.0, 0.02, 3.0, 0.5, 40.0])
    norms = [float(optax.global_norm(g)) for g in grads]
    assert min(norms) < clip_norm < max(norms)  # some steps are clipped, some not
    assert_updates_equal_optax(config, reference, grads, params)


@pytest.mark.parametrize(("b1", "b2"), [(0.9, 0.99), (0.5, 0.999), (0.0, 0.6)])
def test_the_optimizer_is_adam_with_the_configs_betas(b1, b2):
    # b1 decays the first moment, b2 the second: swapped, the updates differ from optax's.
    config = dataclasses.replace(CONFIG, schedule="constant", clip_norm=1e6, b1=b1, b2=b2)
    reference = optax.adam(config.learning_rate, b1=b1, b2=b2)
    params = {"a": jnp.zeros(3, jnp.float32), "b": jnp.ones((2, 2), jnp.float32)}
    grads = random_grads([1.0, -2.0, 0.5, 3.0], seed=1)
    assert_updates_equal_optax(config, reference, grads, params)


@pytest.fixture(scope="module")
def stepper():
    """One compiled step and initialisation, shared by the tests below."""
    model = train.CharModel(MODEL)
    optimizer, schedule = train.make_optimizer(CONFIG)
    step = train.make_train_step(model, optimizer, schedule)
    init = jax.jit(lambda key: train.init_state(model, optimizer, CONFIG.batch_size, key))
    return model, optimizer, step, init


def test_loss_trajectory_is_bit_identical_and_survives_a_checkpoint(char_data, stepper, tmp_path):
    model, optimizer, step, init = stepper

    def run(state, start, stop):
        losses = []
        for k in range(start, stop):
            inputs, targets = data.window(char_data.train, k, CONFIG.seq_len)
            state, metrics = step(state, inputs, targets)
            losses.append(np.asarray(metrics.loss).tobytes())
        return state, losses

    def fresh():
        return init(jax.random.key(0))

    state_a, losses_a = run(fresh(), 0, 8)
    _, losses_b = run(fresh(), 0, 8)
    assert losses_a == losses_b  # bit for bit
    half, first = run(fresh(), 0, 4)
    path = train.save_state(tmp_path / "half", half, model, CONFIG, char_data.vocab)
    restored, _ = train.restore_state(path, model, optimizer, CONFIG.batch_size)
    state_c, second = run(restored, 4, 8)
    assert first + second == losses_a
    assert_same_tree(state_c, state_a)


def test_each_step_draws_its_own_dropout_masks(char_data):
    # Step k's dropout key is fold_in(state.key, k): the same window read at two steps
    # drops other units, and each loss is the model's with that key.
    model = train.CharModel(dataclasses.replace(MODEL, cell="elman", num_layers=2, dropout=0.5))
    optimizer, schedule = train.make_optimizer(CONFIG)
    step = train.make_train_step(model, optimizer, schedule)
    state = train.init_state(model, optimizer, CONFIG.batch_size, jax.random.key(0))
    inputs, targets = data.window(char_data.train, 0, CONFIG.seq_len)
    loss_fn = jax.jit(model.loss)
    losses = []
    for k in (0, 1, 7):
        _, metrics = step(state._replace(step=jnp.int32(k)), inputs, targets)
        key = jax.random.fold_in(state.key, k)
        want, _ = loss_fn(state.params, inputs, targets, state.carry, key=key)
        np.testing.assert_allclose(float(metrics.loss), float(want), rtol=1e-5)
        losses.append(float(metrics.loss))
    no_dropout, _ = loss_fn(state.params, inputs, targets, state.carry)
    assert len({*losses, float(no_dropout)}) == 4


def test_a_poisoned_batch_is_skipped_counted_and_training_goes_on(tmp_path):
    # '!' appears in two places of the training text only; its embedding is NaN, so every
    # window reading it has a NaN loss and NaN gradients: those updates must be skipped.
    text = TEXT[:20] + "!" + TEXT[20:60] + "!" + TEXT[60:]
    config = dataclasses.replace(CONFIG, steps=12, eval_every=12, max_consecutive_skips=2)
    char = data.char_data(text, config.batch_size, config.seq_len, val_fraction=0.2)
    bang = char.vocab.encode("!")[0]
    model = train.CharModel(dataclasses.replace(MODEL, vocab_size=char.vocab.size))
    optimizer, _ = train.make_optimizer(config)
    state = train.init_state(model, optimizer, config.batch_size, jax.random.key(0))
    embed = state.params["embed"].at[bang].set(jnp.nan)
    state = state._replace(params=dict(state.params, embed=embed))
    poisoned = [
        k
        for k in range(config.steps)
        if bang in data.window(char.train, k % char.windows_per_epoch, config.seq_len)[0]
    ]
    assert 1 <= len(poisoned) <= 4 and bang not in char.val
    metrics = io.StringIO()
    result = quiet_fit(model, char, config, state=state, out_dir=tmp_path, metrics_file=metrics)
    assert result.stopped == "steps" and int(result.state.step) == config.steps
    lines = [json.loads(line) for line in metrics.getvalue().splitlines()]
    assert lines[-1]["skipped"] == len(poisoned) == int(result.state.opt_state.total_skipped)
    assert all(math.isfinite(r["val_bpc"]) for r in lines)
    # Every parameter but the poisoned row is finite, and they were updated.
    leaves = jax.tree.leaves(dict(result.state.params, embed=result.state.params["embed"][:bang]))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    assert not np.array_equal(result.state.params["head"]["w"], state.params["head"]["w"])
    # train_bpc averages the finite losses only: evaluated after every step, a skipped
    # step has none (None), and the mean of the others is the 12-step run's train_bpc.
    per_step = quiet_fit(model, char, dataclasses.replace(config, eval_every=1), state=state)
    assert [r["train_bpc"] is None for r in per_step.history] == [
        k in poisoned for k in range(config.steps)
    ]
    finite = [r["train_bpc"] for r in per_step.history if r["train_bpc"] is not None]
    assert lines[-1]["train_bpc"] == pytest.approx(np.mean(finite), rel=1e-9)


def test_a_nan_loss_with_finite_gradients_is_skipped_too(stepper):
    # A target outside the vocabulary: take_along_axis fills NaN, the gradients stay finite.
    _, _, step, init = stepper
    state = init(jax.random.key(0))
    inputs = jnp.zeros((CONFIG.seq_len, CONFIG.batch_size), jnp.int32)
    targets = inputs.at[0, 0].set(MODEL.vocab_size)
    new, metrics = step(state, inputs, targets)
    assert not bool(metrics.finite) and int(new.opt_state.total_skipped) == 1
    assert_same_tree(new.params, state.params)


def test_the_reported_learning_rate_is_the_one_applied(stepper):
    # A skipped update applies no rate and leaves the schedule's count where it was
    # (as optax's apply_if_finite): the next step applies schedule(0), not schedule(1).
    _, _, step, init = stepper
    schedule = train.make_schedule(CONFIG)
    assert float(schedule(0)) != float(schedule(1))  # else the test could not tell
    state = init(jax.random.key(0))
    inputs = jnp.zeros((CONFIG.seq_len, CONFIG.batch_size), jnp.int32)
    state, metrics = step(state, inputs, inputs.at[0, 0].set(MODEL.vocab_size))
    assert not bool(metrics.finite) and float(metrics.learning_rate) == 0.0
    before = state.params
    state, metrics = step(state, inputs, inputs)
    assert float(metrics.learning_rate) == pytest.approx(float(schedule(0)))
    # Adam's first step moves each parameter with a gradient by the rate applied.
    moved = jax.tree.map(lambda a, b: jnp.max(jnp.abs(a - b)), state.params, before)
    assert max(map(float, jax.tree.leaves(moved))) == pytest.approx(float(schedule(0)), rel=1e-3)


def test_configs_out_of_range_are_refused():
    for field, value in [
        ("patience", -1),
        ("sample_every", -1),
        ("sample_length", -5),
        ("b1", 1.5),
        ("b2", -1.0),
        ("final_lr_fraction", -2.0),
    ]:
        with pytest.raises(ValueError, match=rf"TrainConfig: {field} must"):
            dataclasses.replace(CONFIG, **{field: value})


def test_fit_refuses_a_model_of_another_vocabulary(char_data):
    model = train.CharModel(dataclasses.replace(MODEL, vocab_size=char_data.vocab.size - 1))
    with pytest.raises(ValueError, match="fit: the model reads a vocabulary of"):
        quiet_fit(model, char_data, CONFIG)
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"sample: the model writes .* the vocabulary has"):
        train.sample(model, params, char_data.vocab, "t", 5, jax.random.key(1))
    model = train.CharModel(MODEL)
    params = model.init(jax.random.key(0))
    with pytest.raises(ValueError, match="sample: length must be an int >= 0, got -1"):
        train.sample(model, params, char_data.vocab, "t", -1, jax.random.key(1))
    for temperature in (float("nan"), float("inf"), -0.5, "0.8"):  # NaN drew greedily
        with pytest.raises(ValueError, match="sample: temperature must be a finite number"):
            train.sample_pieces(
                model, params, char_data.vocab, "t", 5, jax.random.key(1), temperature
            )
    with pytest.raises(TypeError, match="sample: key must be one PRNG key"):
        train.sample_pieces(model, params, char_data.vocab, "t", 5, 1)  # failed at next()
    with pytest.raises(ValueError, match="evaluate: streams of 5 characters hold no window"):
        train.evaluate(model, params, np.zeros((2, 5), np.int32), 8)


def test_remat_computes_the_same_loss_and_gradients():
    model = train.CharModel(dataclasses.replace(MODEL, num_layers=2))
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    inputs, targets = (jnp.asarray(rng.integers(0, MODEL.vocab_size, (12, 3))) for _ in "it")
    carry = jax.tree.map(lambda z: z + 0.1, model.zero_carry(3))

    def loss(params, remat):
        return model.loss(params, inputs, targets, carry, remat=remat)

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (want, want_carry), want_grads = grad(params, False)
    (got, got_carry), got_grads = grad(params, True)
    np.testing.assert_allclose(float(got), float(want), rtol=1e-6)
    for a, b in zip(
        jax.tree.leaves((got_carry, got_grads)),
        jax.tree.leaves((want_carry, want_grads)),
        strict=True,
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert [train.remat_chunk(n) for n in (1, 7, 12, 50, 10_000)] == [1, 1, 3, 5, 100]


def test_remat_memory_grows_much_less_with_the_window():
    model = train.CharModel(dataclasses.replace(MODEL, hidden_size=32))
    params = jax.eval_shape(model.init, jax.random.key(0))

    def temp_bytes(length, remat):
        ids = jax.ShapeDtypeStruct((length, 2), jnp.int32)
        fn = jax.jit(jax.grad(lambda p, i, t: model.loss(p, i, t, remat=remat)[0]))
        return fn.lower(params, ids, ids).compile().memory_analysis().temp_size_in_bytes

    plain = [temp_bytes(n, False) for n in (64, 1024)]
    remat = [temp_bytes(n, True) for n in (64, 1024)]
    assert plain[1] > 8 * plain[0]  # linear in T: x16 the window, about x16 the memory
    assert remat[1] < 6 * remat[0]  # about sqrt(T): x4
    assert remat[1] < plain[1] / 4


def test_fit_from_a_run_that_stopped_early_trains_nothing(char_data):
    # A run restored after it stopped early is over, as the run that never stopped is;
    # a larger patience (or 0) trains it on.
    model = train.CharModel(MODEL)
    config = dataclasses.replace(CONFIG, steps=6, eval_every=2, patience=2)
    progress = {"best_val_bpc": 0.0, "best_step": 0, "bad_evals": 2}
    optimizer, _ = train.make_optimizer(config)
    state = train.init_state(model, optimizer, config.batch_size, jax.random.key(0))
    over = quiet_fit(model, char_data, config, state=state, progress=dict(progress))
    assert over.stopped == "early_stopping" and over.history == []
    assert_same_tree(over.state, state)
    more = dataclasses.replace(config, patience=3)
    on = quiet_fit(model, char_data, more, state=state, progress=dict(progress))
    assert on.stopped == "early_stopping" and int(on.state.step) == 2
