"""Markov chains: the vectorised counts against a dictionary written from the equations."""

import collections
import math

import numpy as np
import pytest

from jaxrnn.baselines import MarkovChain, select_markov_order


def reference_bits(train, held_out, vocab_size, order, smoothing, alpha=1.0):
    """-mean log2 p from dictionaries; contexts shorter than j at a row's start are unseen."""
    counts = collections.Counter()  # (context, char) -> c
    for j in range(order + 1):
        for t in range(j, len(train)):
            counts[(tuple(train[t - j : t]), train[t])] += 1
    context_count, context_types = collections.Counter(), collections.Counter()
    for (h, _), c in counts.items():
        context_count[h] += c
        context_types[h] += 1

    def probability(history, x):
        if smoothing == "additive":
            h = tuple(history[-order:]) if order else ()
            if order and len(history) < order:
                return 1.0 / vocab_size  # no context of length k yet: all counts are zero
            return (counts[(h, x)] + alpha) / (context_count[h] + alpha * vocab_size)
        p = 1.0 / vocab_size
        for j in range(order + 1):
            if len(history) < j:
                break
            h = tuple(history[len(history) - j :])
            if context_count[h]:
                u = context_types[h]
                p = (counts[(h, x)] + u * p) / (context_count[h] + u)
        return p

    bits = [-math.log2(probability(held_out[:t], held_out[t])) for t in range(len(held_out))]
    return float(np.mean(bits))


@pytest.mark.parametrize("smoothing", ["witten_bell", "additive"])
@pytest.mark.parametrize("order", [0, 1, 2, 3])
def test_matches_the_equations(smoothing, order):
    rng = np.random.default_rng(order)
    train = [*rng.integers(0, 4, 300), 4, 4]
    held_out = list(rng.integers(0, 5, 60))  # includes contexts and characters never seen together
    chain = MarkovChain(np.array(train), 6, order, smoothing=smoothing, alpha=0.5)
    got = chain.bits_per_char(np.array(held_out))
    want = reference_bits(train, held_out, 6, order, smoothing, alpha=0.5)
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("smoothing", ["witten_bell", "additive"])
def test_distributions_sum_to_one(smoothing):
    rng = np.random.default_rng(0)
    chain = MarkovChain(rng.integers(0, 5, 500), 7, 3, smoothing=smoothing)
    for context in ([], [1], [2, 3], [0, 1, 2, 3], [6, 6, 6]):  # 6 was never seen
        chars = np.arange(7)[None]
        strings = chain._string_ids(np.array([context or [0]]))
        contexts = [s[:, -1:] for s in strings] if context else [np.zeros((1, 1), np.int64)] * 4
        contexts[0] = np.zeros((1, 1), np.int64)
        if not context:
            contexts[1:] = [np.full((1, 1), -1)] * 3
        p = chain._probabilities(contexts, chars, 3)
        assert p.sum() == pytest.approx(1.0, abs=1e-12)
        assert chain.next_char_probabilities(context).sum() == pytest.approx(1.0)


def test_streams_skip_each_first_character():
    chain = MarkovChain(np.array([0, 1, 2, 2, 1] * 30), 3, 2)
    rows = np.array([[0, 1, 2, 0], [1, 2, 2, 1]])
    first_bits = -np.log2(chain.next_char_probabilities([])[rows[:, 0]])
    row_bits = [
        4 * chain.bits_per_char(row) - first for row, first in zip(rows, first_bits, strict=True)
    ]
    assert chain.bits_per_char(rows) == pytest.approx(np.sum(row_bits) / 6, rel=1e-12)


def test_order_selection_finds_the_memory_needed():
    # Each character is decided by the two before it: order 2 is exact, more only dilutes.
    rng = np.random.default_rng(0)
    ids = [0, 1]
    for _ in range(3000):
        ids.append((ids[-1] + ids[-2]) % 3 if rng.random() < 0.95 else int(rng.integers(3)))
    ids = np.array(ids)
    selection = select_markov_order(ids[:2500], ids[2500:], 3, orders=range(5))
    assert selection.best_order == 2
    assert selection.best_bpc == min(selection.bpc_by_order.values())
    assert selection.chain.order == 2
    assert selection.bpc_by_order[1] > selection.best_bpc < selection.bpc_by_order[4]


def test_sampling_follows_the_counts():
    chain = MarkovChain(np.array([0, 1, 2, 3] * 100), 4, 3)
    drawn = chain.sample([0, 1, 2], 20, np.random.default_rng(0))
    assert drawn[:8] == [3, 0, 1, 2, 3, 0, 1, 2]  # almost surely the cycle


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="order must be >= 0"):
        MarkovChain(np.array([0, 1]), 2, -1)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 2\)"):
        MarkovChain(np.array([0, 5]), 2, 1)
    with pytest.raises(ValueError, match="smoothing"):
        MarkovChain(np.array([0, 1]), 2, 1, smoothing="kneser_ney")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 2\)"):
        MarkovChain(np.array([0, 2]), 2, 1)  # V itself is outside too
    with pytest.raises(ValueError, match="train_ids is empty"):
        MarkovChain(np.array([], np.int64), 2, 1)
    with pytest.raises(ValueError, match="vocab_size must be >= 1"):
        MarkovChain(np.array([0]), 0, 1)


def test_held_out_ids_are_checked_not_looked_up_as_other_ngrams():
    chain = MarkovChain(np.array([0, 1, 2, 1, 0]), 3, 1)
    for ids in ([0, 3], [0, -1]):  # 3 after 0 would be read as the bigram "1 0"
        with pytest.raises(ValueError, match=r"bits_per_char: ids must lie in \[0, 3\)"):
            chain.bits_per_char(ids)
    with pytest.raises(TypeError, match="integer character ids, got dtype float64"):
        chain.bits_per_char(np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="no characters to score"):
        chain.bits_per_char(np.zeros((2, 1), np.int64))  # each row's first is not scored
    with pytest.raises(ValueError, match=r"next_char_probabilities: ids must lie in \[0, 3\)"):
        chain.next_char_probabilities([5])


@pytest.mark.parametrize("smoothing", ["witten_bell", "additive"])
def test_a_text_no_longer_than_the_order_backs_off(smoothing):
    # No context of length 3 in a text of 3 characters: the lower orders (or 1/V) answer.
    chain = MarkovChain(np.array([0, 1, 2]), 3, 3, smoothing=smoothing)
    p = chain.next_char_probabilities([0, 1, 2])
    assert p.shape == (3,) and abs(p.sum() - 1) < 1e-12
    assert np.isfinite(chain.bits_per_char(np.array([0, 1, 2, 0])))
    assert select_markov_order(np.arange(10) % 3, np.arange(10) % 3, 3).bpc_by_order
