"""A minimal character-level Elman network on jaxrnn's cell, after Karpathy's min-char-rnn.

    python examples/min_char_rnn.py [--steps 20000] [--quick]

Reads 300,000 characters of the embedded corpus (the standard library's
docstrings, no download), trains a one-layer Elman network with 100 hidden
units to predict the next character, 25 characters at a time, with the hidden
state carried from one window to the next (truncated backpropagation through
time), and Adagrad as in the original. Every 1000 steps it prints the
smoothed loss, every 5000 a sample.

Runtime on 2 CPU cores: under a minute (45 s measured on cores shared with
other jobs). It prints lines like

    step 20000  loss 2.60 bits/char  (43 s)
    ----
    ate with-berave will
    be is fixes of the
    subple:= In feate back for is anted ifto for fill is dovace
    ----

The loss starts at log2(95) = 6.6 bits per character (uniform guessing) and
falls to about 2.5 (one stream, one window at a time: it is noisy);
`jaxrnn train` gets to 1.9 with an LSTM on batches of streams.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from jaxrnn import data, optim

# ---- data: the text as character ids ------------------------------------------------
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=20000)
parser.add_argument("--quick", action="store_true", help="a few steps, for the test suite")
args = parser.parse_args()
steps = 30 if args.quick else args.steps

text = data.stdlib_corpus("docstrings", max_chars=20_000 if args.quick else 300_000)
vocab = data.Vocabulary.from_text(text)
ids = vocab.encode(text)
print(f"{len(text):,} characters, {vocab.size} distinct")

# ---- hyper-parameters -----------------------------------------------------------------
hidden_size = 100  # neurons in the hidden layer
seq_length = 25  # characters per window: how far back gradients flow
learning_rate = 0.1

# ---- parameters: jaxrnn's Elman cell (tanh) and a softmax read-out ------------------
cell = jaxrnn.elman(hidden_size)  # h_t = tanh(x_t @ w_ih + h_{t-1} @ w_hh + b)
cell_key, head_key, sample_key = jax.random.split(jax.random.key(0), 3)
params = {
    "cell": cell.init(cell_key, vocab.size),
    "w_hy": 0.01 * jax.random.normal(head_key, (hidden_size, vocab.size)),
    "b_y": jnp.zeros(vocab.size),
}


# ---- the loss: cross-entropy of every next character in one window -----------------
def loss_fn(params, h, inputs, targets):
    xs = jax.nn.one_hot(inputs, vocab.size)  # (seq_length, vocab): one-hot, time-major
    h, hs = jaxrnn.unroll(cell, params["cell"], xs, h)  # hs: (seq_length, hidden_size)
    logits = hs @ params["w_hy"] + params["b_y"]
    log_probs = jax.nn.log_softmax(logits)
    loss = -jnp.mean(log_probs[jnp.arange(len(targets)), targets])
    return loss / jnp.log(2.0), h  # bits per character; h goes on to the next window


optimizer = optim.chain(optim.clip(5.0), optim.adagrad(learning_rate))  # clip as the original
opt_state = optimizer.init(params)


@jax.jit
def train_step(params, opt_state, h, inputs, targets):
    (loss, h), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, h, inputs, targets)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optim.apply_updates(params, updates), opt_state, h, loss


# ---- sampling: feed each drawn character back in --------------------------------------
def sample(params, h, first_id, length, key):
    def one_char(carry, key):
        h, char = carry
        h, y = cell.step(params["cell"], h, jax.nn.one_hot(char, vocab.size))
        char = jax.random.categorical(key, y @ params["w_hy"] + params["b_y"])
        return (h, char), char

    _, chars = jax.lax.scan(one_char, (h, first_id), jax.random.split(key, length))
    return vocab.decode(np.asarray(chars))


# ---- the loop: windows in order, the hidden state carried across them --------------
h = cell.zero_carry(())
position, smooth_loss, start = 0, np.log2(vocab.size), time.perf_counter()
for step in range(1, steps + 1):
    if position + seq_length + 1 >= len(ids):  # back to the start with a fresh state
        position, h = 0, cell.zero_carry(())
    inputs = ids[position : position + seq_length]
    targets = ids[position + 1 : position + seq_length + 1]
    params, opt_state, h, loss = train_step(params, opt_state, h, inputs, targets)
    smooth_loss = 0.999 * smooth_loss + 0.001 * float(loss)
    position += seq_length
    if step % 1000 == 0 or step == steps:
        elapsed = time.perf_counter() - start
        print(f"step {step:5d}  loss {smooth_loss:.2f} bits/char  ({elapsed:.0f} s)")
    if step % 5000 == 0 or step == steps:
        key = jax.random.fold_in(sample_key, step)
        print("----\n" + sample(params, h, inputs[-1], 200, key) + "\n----")
