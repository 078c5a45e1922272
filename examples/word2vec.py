"""Word vectors by word2vec: skip-gram (or CBOW) with negative sampling, on the docstrings corpus.

    python examples/word2vec.py [--model skipgram|cbow] [--steps 3000] [--quick]

Words that appear in similar contexts get similar vectors. Skip-gram learns
them by telling, for a word, its true neighbours in the text from random
"noise" words; CBOW tells, from the average of the neighbours' vectors, the
true middle word from noise words (Mikolov et al. 2013, as in the notes).
The loss for a word c with a true context word o and K noise words k_i is

    -log σ(u_o · v_c) - Σ_i log σ(-u_{k_i} · v_c)

with v the input ("embedding") vectors and u the output vectors. Frequent
words are randomly dropped (subsampling), and noise words are drawn from the
unigram distribution raised to the power 3/4.

Runtime on 2 CPU cores: about 30 seconds at the defaults. It prints the loss
as it falls, then the nearest neighbours (by cosine similarity) of a few
words; on CPython 3.11's docstrings:

    file      -> seek, socketio, opened, arcname, wave
    thread    -> threading, threads, exited, reentrant, acquired
    socket    -> af, sock, dgram, family, connects
    time      -> localtime, timestamp, microsecond, epoch, clock

(the lists depend on the Python version whose docstrings it reads).
"""

import argparse
import collections
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import data, optim

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", choices=["skipgram", "cbow"], default="skipgram")
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--dim", type=int, default=64, help="embedding size")
parser.add_argument("--quick", action="store_true", help="a few steps, for the test suite")
args = parser.parse_args()
steps = 20 if args.quick else args.steps

# ---- data: words, a vocabulary of the frequent ones, subsampling ----------------------
text = data.stdlib_corpus("docstrings", max_chars=50_000 if args.quick else None)
words = re.findall(r"[a-z]+", text.lower())
counts = collections.Counter(words)
vocab = [w for w, c in counts.most_common(5000) if c >= 5]
index = {w: i for i, w in enumerate(vocab)}
ids = np.array([index[w] for w in words if w in index])
freq = np.array([counts[w] for w in vocab], dtype=np.float64) / len(ids)
print(f"{len(words):,} words, {len(vocab):,} in the vocabulary, {args.model}")

rng = np.random.default_rng(0)
keep = rng.random(len(ids)) < np.minimum(1.0, np.sqrt(1e-4 / freq[ids]) + 1e-4 / freq[ids])
ids = ids[keep]  # "the", "a", "of" mostly dropped: they say little about their neighbours

# ---- (word, context) examples: every neighbour within `window` positions -------------
window, batch_size, num_negatives = 4, 512, 5
offsets = [o for o in range(-window, window + 1) if o != 0]
centres = np.arange(window, len(ids) - window)
contexts = np.stack([ids[centres + o] for o in offsets], axis=1)  # (n, 2·window)
centres = ids[centres]
noise = freq**0.75 / np.sum(freq**0.75)  # the noise distribution
noise_table = np.repeat(np.arange(len(vocab)), np.round(noise * 1e6).astype(int))

# ---- parameters: input vectors v and output vectors u -------------------------------
key = jax.random.key(0)
params = {
    "v": jax.random.uniform(key, (len(vocab), args.dim), minval=-0.5, maxval=0.5) / args.dim,
    "u": jnp.zeros((len(vocab), args.dim)),
}
optimizer = optim.adam(3e-3)
opt_state = optimizer.init(params)


def loss_fn(params, centre, context, negatives):
    """centre (B,), context (B, 2·window), negatives (B, K): mean negative-sampling loss."""
    if args.model == "skipgram":  # the word predicts each neighbour
        v = params["v"][centre][:, None, :]  # (B, 1, D)
        true = params["u"][context]  # (B, 2·window, D)
    else:  # cbow: the neighbours' mean predicts the word
        v = jnp.mean(params["v"][context], axis=1)[:, None, :]
        true = params["u"][centre][:, None, :]
    fake = params["u"][negatives]  # (B, K, D)
    positive = jax.nn.log_sigmoid(jnp.sum(v * true, -1)).mean(-1)
    negative = jax.nn.log_sigmoid(-jnp.sum(v * fake, -1)).sum(-1)
    return -jnp.mean(positive + negative)


@jax.jit
def train_step(params, opt_state, centre, context, negatives):
    loss, grads = jax.value_and_grad(loss_fn)(params, centre, context, negatives)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optim.apply_updates(params, updates), opt_state, loss


# ---- training: shuffled batches -----------------------------------------------------
start, order, running = time.perf_counter(), rng.permutation(len(centres)), None
for step in range(1, steps + 1):
    batch = order[(step * batch_size) % len(order) :][:batch_size]
    if len(batch) < batch_size:
        batch = order[:batch_size]
    negatives = noise_table[rng.integers(0, len(noise_table), (batch_size, num_negatives))]
    params, opt_state, loss = train_step(
        params, opt_state, centres[batch], contexts[batch], negatives
    )
    running = float(loss) if running is None else 0.98 * running + 0.02 * float(loss)
    if step % 500 == 0 or step == steps:
        print(f"step {step:5d}  loss {running:.3f}  ({time.perf_counter() - start:.0f} s)")

# ---- nearest neighbours by cosine similarity ----------------------------------------
vectors = np.array(params["v"])
vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) + 1e-9
for word in ["file", "string", "thread", "socket", "list", "error", "return", "time"]:
    if word in index:
        similarity = vectors @ vectors[index[word]]
        nearest = [vocab[i] for i in np.argsort(-similarity)[1:6]]
        print(f"{word:9s} -> {', '.join(nearest)}")
