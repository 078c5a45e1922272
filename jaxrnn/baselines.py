"""Baselines a character model must beat: order-k Markov chains with smoothing.

An order-k Markov chain predicts each character from the k before it alone
(the notes' k-th order Markov chain, ``p(x_n | x_{n-k}, ..., x_{n-1})``) with
probabilities counted in the training text. Counts alone give zero
probability (infinite bits) to every k-gram never seen, so they are smoothed.

``witten_bell`` (the default) interpolates each order with the one below,
trusting a context in proportion to how often it was seen against how many
different characters followed it::

    p_k(x | h) = (c(h x) + u(h) · p_{k-1}(x | h')) / (c(h) + u(h))

where ``h'`` drops the oldest character of ``h``, ``c`` counts occurrences in
the training text, ``u(h)`` is the number of distinct characters seen after
``h``, and ``p_{-1}(x) = 1/V``; an unseen context falls back to ``p_{k-1}``
entirely. ``additive`` is Laplace/Lidstone smoothing of order k alone,
``p(x | h) = (c(h x) + α) / (c(h) + α·V)``.

Counting is vectorised with NumPy: each order's n-grams get dense integer ids
(``np.unique``) and lookups are binary searches (``np.searchsorted``), so a
million characters take about a second per order.

References:
  Witten & Bell, The zero-frequency problem, IEEE Trans. Inf. Theory 37(4), 1991.
  Chen & Goodman, An empirical study of smoothing techniques for language modeling, 1998.
  Bishop, Pattern Recognition and Machine Learning, section 13.1 (Markov models), 2006.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["MarkovChain", "MarkovSelection", "select_markov_order"]

SMOOTHINGS = ("witten_bell", "additive")


class _OrderTable(NamedTuple):
    """Counts for one order j: contexts of j characters and the n-grams extending them."""

    string_keys: np.ndarray  # sorted (id of the j-1 prefix) · V + char: the j-strings, int64
    context_ids: np.ndarray  # sorted ids of the j-strings seen as a context (followed by a char)
    context_counts: np.ndarray  # c(h), for each context id
    context_types: np.ndarray  # u(h), the distinct characters seen after h
    ngram_keys: np.ndarray  # sorted context id · V + char
    ngram_counts: np.ndarray  # c(h x)


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each key in ``sorted_keys``, or -1 where absent (or where the key is -1)."""
    if sorted_keys.size == 0:
        return np.full(keys.shape, -1, np.int64)
    index = np.searchsorted(sorted_keys, keys)
    index = np.minimum(index, sorted_keys.size - 1)
    found = (sorted_keys[index] == keys) & (keys >= 0)
    return np.where(found, index, -1)


def _as_rows(ids: np.ndarray | Sequence[int], vocab_size: int, what: str) -> np.ndarray:
    """``ids`` as int64 rows ``(streams, n)``, checked: integers in ``[0, vocab_size)``
    (another id would be looked up as some other n-gram's)."""
    rows = np.asarray(ids)
    if rows.size and not np.issubdtype(rows.dtype, np.integer):
        raise TypeError(f"{what}: ids must be integer character ids, got dtype {rows.dtype}.")
    rows = rows.astype(np.int64)
    if rows.ndim == 1:
        rows = rows[None]
    if rows.ndim != 2:
        raise ValueError(f"{what}: ids must have shape (n,) or (streams, n), got {rows.shape}.")
    if rows.size and (rows.min() < 0 or rows.max() >= vocab_size):
        raise ValueError(
            f"{what}: ids must lie in [0, {vocab_size}) (the chain's vocabulary), got ids "
            f"from {rows.min()} to {rows.max()}."
        )
    return rows


class MarkovChain:
    """An order-k character Markov chain, counted from a text and smoothed.

    Args:
      train_ids: the training text as character ids, shape ``(n,)``.
      vocab_size: V; every id lies in ``[0, V)``.
      order: k, the number of preceding characters a prediction reads (>= 0).
      smoothing: ``"witten_bell"`` (interpolated with every lower order) or
        ``"additive"`` (order k alone, add ``alpha`` to every count).
      alpha: the pseudo-count of ``"additive"``.

    Example:
      >>> import numpy as np
      >>> from jaxrnn.baselines import MarkovChain
      >>> ids = np.array([0, 1, 2] * 50)
      >>> chain = MarkovChain(ids, vocab_size=3, order=2)
      >>> round(chain.bits_per_char(np.array([0, 1, 2, 0, 1, 2])), 3)  # nearly certain
      0.268
    """

    def __init__(
        self,
        train_ids: np.ndarray | Sequence[int],
        vocab_size: int,
        order: int,
        *,
        smoothing: str = "witten_bell",
        alpha: float = 1.0,
    ) -> None:
        if order < 0:
            raise ValueError(f"MarkovChain: order must be >= 0, got {order}.")
        if smoothing not in SMOOTHINGS:
            raise ValueError(
                f"MarkovChain: smoothing must be one of {SMOOTHINGS}, got {smoothing!r}."
            )
        if alpha <= 0:
            raise ValueError(f"MarkovChain: alpha must be > 0, got {alpha}.")
        if vocab_size < 1:
            raise ValueError(f"MarkovChain: vocab_size must be >= 1, got {vocab_size}.")
        ids = _as_rows(np.ravel(train_ids), vocab_size, "MarkovChain: train_ids")[0]
        if ids.size == 0:
            raise ValueError("MarkovChain: train_ids is empty: there is nothing to count.")
        self.vocab_size, self.order, self.smoothing, self.alpha = (
            vocab_size,
            order,
            smoothing,
            alpha,
        )
        self.tables: list[_OrderTable] = []
        # strings[t] = dense id of the j characters ending at position t (-1 for t < j - 1).
        strings = np.zeros(ids.size, np.int64)
        string_keys = np.zeros(1, np.int64)  # the one empty string, id 0
        for j in range(order + 1):
            # Contexts of length j are strings ending at t - 1, followed by ids[t].
            context = np.concatenate([[-1], strings[:-1]]) if j else strings
            valid = context >= 0
            ngrams = context[valid] * vocab_size + ids[valid]
            ngram_keys, ngram_counts = np.unique(ngrams, return_counts=True)
            context_ids, first, context_types = np.unique(
                ngram_keys // vocab_size, return_index=True, return_counts=True
            )
            context_counts = np.add.reduceat(ngram_counts, first) if first.size else first
            self.tables.append(
                _OrderTable(
                    string_keys,
                    context_ids,
                    context_counts,
                    context_types,
                    ngram_keys,
                    ngram_counts,
                )
            )
            # The strings of length j + 1 ending at t: (string of length j ending at t-1) + ids[t].
            string_keys = ngram_keys
            strings = np.full(ids.size, -1, np.int64)
            strings[valid] = np.searchsorted(ngram_keys, ngrams)

    def _string_ids(self, rows: np.ndarray) -> list[np.ndarray]:
        """For each order j <= k, the dense id of the j characters ending at each position."""
        strings = [np.zeros(rows.shape, np.int64)]
        for j in range(1, self.order + 1):
            if j == 1:  # the empty string ends everywhere, also before a row's first character
                previous = strings[0]
            else:
                previous = np.concatenate([np.full((rows.shape[0], 1), -1), strings[-1][:, :-1]], 1)
            keys = np.where(previous >= 0, previous * self.vocab_size + rows, -1)
            strings.append(_lookup(self.tables[j].string_keys, keys))
        return strings

    def _probabilities(self, context_strings: list[np.ndarray], chars: np.ndarray, order: int):
        """p(chars | context) with contexts of up to ``order`` characters; arrays broadcast."""
        V = self.vocab_size
        if self.smoothing == "additive":
            table = self.tables[order]
            if table.context_ids.size == 0:  # a text no longer than the order: no context seen
                return np.full(np.broadcast_shapes(context_strings[0].shape, chars.shape), 1.0 / V)
            context = _lookup(table.context_ids, context_strings[order])
            c_h = np.where(context >= 0, table.context_counts[context], 0)
            key = np.where(context_strings[order] >= 0, context_strings[order] * V + chars, -1)
            ngram = _lookup(table.ngram_keys, key)
            c_hx = np.where(ngram >= 0, table.ngram_counts[np.maximum(ngram, 0)], 0)
            return (c_hx + self.alpha) / (c_h + self.alpha * V)
        p = np.full(np.broadcast_shapes(context_strings[0].shape, chars.shape), 1.0 / V)
        for j in range(order + 1):
            table = self.tables[j]
            if table.context_ids.size == 0:  # no context of this length in the text
                continue
            context = _lookup(table.context_ids, context_strings[j])
            seen = context >= 0
            safe = np.maximum(context, 0)
            c_h = np.where(seen, table.context_counts[safe], 0)
            u_h = np.where(seen, table.context_types[safe], 0)
            key = np.where(seen, context_strings[j] * V + chars, -1)
            ngram = _lookup(table.ngram_keys, key)
            c_hx = np.where(ngram >= 0, table.ngram_counts[np.maximum(ngram, 0)], 0)
            p = np.where(seen, (c_hx + u_h * p) / np.maximum(c_h + u_h, 1), p)
        return p

    def bits_per_char(self, ids: np.ndarray | Sequence[int], order: int | None = None) -> float:
        """The average of ``-log2 p(x_t | x_{t-k}..x_{t-1})`` over a held-out text.

        A 1-D text is read from its first character, which is predicted from no
        context, the next ones from the shorter contexts they have. Rows of a
        2-D input are read independently and the first character of each is
        left out, as a recurrent model reading the same streams from a zero
        carry cannot predict it: both then score the same characters.

        Args:
          ids: ``(n,)`` ids, or ``(streams, n)`` rows read independently.
          order: use only contexts up to this order (<= k); k if omitted.

        Returns:
          Bits per character, a Python float.
        """
        order = self.order if order is None else order
        if not 0 <= order <= self.order:
            raise ValueError(f"order must lie in [0, {self.order}], got {order}.")
        two_d = np.ndim(ids) == 2
        rows = _as_rows(ids, self.vocab_size, "bits_per_char")
        if rows.shape[1] <= two_d:  # a row's first character is not scored
            raise ValueError(
                f"bits_per_char: ids of shape {np.shape(ids)} have no characters to score."
            )
        strings = self._string_ids(rows)
        # The context of position t is the string ending at t - 1.
        contexts = [
            np.concatenate([np.full((rows.shape[0], 1), -1), s[:, :-1]], 1) for s in strings
        ]
        contexts[0] = np.zeros(rows.shape, np.int64)
        # Near the start of a row only shorter contexts exist: they count as unseen
        # (-1) and the interpolation falls back to the orders below.
        p = self._probabilities(contexts, rows, order)
        if two_d:
            p = p[:, 1:]
        return float(-np.mean(np.log2(p)))

    def next_char_probabilities(self, context_ids: Sequence[int]) -> np.ndarray:
        """The distribution of the next character after ``context_ids``, shape ``(V,)``."""
        context = list(context_ids)[-self.order :] if self.order else []
        rows = _as_rows(context, self.vocab_size, "next_char_probabilities")
        if rows.shape[1] == 0:
            contexts = [np.zeros((1, 1), np.int64)] + [np.full((1, 1), -1)] * self.order
        else:
            strings = self._string_ids(rows)
            contexts = [s[:, -1:] for s in strings]
            contexts[0] = np.zeros((1, 1), np.int64)
        chars = np.arange(self.vocab_size)[None]
        p = self._probabilities(contexts, chars, self.order)[0]
        return p / p.sum()

    def sample(self, prime_ids: Sequence[int], length: int, rng: np.random.Generator) -> list[int]:
        """Draws ``length`` characters after ``prime_ids``, one at a time."""
        ids = list(prime_ids)
        for _ in range(length):
            ids.append(int(rng.choice(self.vocab_size, p=self.next_char_probabilities(ids))))
        return ids[len(prime_ids) :]


class MarkovSelection(NamedTuple):
    """The result of ``select_markov_order``.

    Attributes:
      chain: the chain counted up to the best order (its ``order`` is that order).
      best_order: k with the lowest validation bits per character.
      best_bpc: that order's validation bits per character.
      bpc_by_order: ``{k: validation bpc}`` for every order tried.
    """

    chain: MarkovChain
    best_order: int
    best_bpc: float
    bpc_by_order: dict[int, float]


def select_markov_order(
    train_ids: np.ndarray,
    val_ids: np.ndarray,
    vocab_size: int,
    orders: Iterable[int] = range(11),
    *,
    smoothing: str = "witten_bell",
    alpha: float = 1.0,
) -> MarkovSelection:
    """Counts chains of every order on the training text and keeps the best on validation.

    Args:
      train_ids: ``(n,)`` training ids.
      val_ids: ``(m,)`` held-out ids, or ``(streams, m)`` rows (see ``bits_per_char``).
      vocab_size: V.
      orders: the k to try.
      smoothing: see ``MarkovChain``.
      alpha: see ``MarkovChain``.

    Returns:
      A ``MarkovSelection``.

    Example:
      >>> import numpy as np
      >>> from jaxrnn.baselines import select_markov_order
      >>> ids = np.array([0, 1, 2, 1] * 100)  # after a 1, only the character before says what comes
      >>> selection = select_markov_order(ids[:300], ids[300:], 3, orders=range(4))
      >>> {k: round(bpc, 2) for k, bpc in selection.bpc_by_order.items()}
      {0: 1.5, 1: 0.52, 2: 0.02, 3: 0.02}
    """
    orders = sorted(set(orders))
    if not orders:
        raise ValueError("select_markov_order: orders is empty.")
    if smoothing == "witten_bell":  # one set of counts serves every lower order
        full = MarkovChain(train_ids, vocab_size, orders[-1], smoothing=smoothing, alpha=alpha)
        scores = {k: full.bits_per_char(val_ids, order=k) for k in orders}
    else:
        scores = {
            k: MarkovChain(
                train_ids, vocab_size, k, smoothing=smoothing, alpha=alpha
            ).bits_per_char(val_ids)
            for k in orders
        }
    best = min(scores, key=lambda k: (scores[k], k))
    if not math.isfinite(scores[best]):
        raise ValueError("select_markov_order: every order gave an infinite loss.")
    chain = MarkovChain(train_ids, vocab_size, best, smoothing=smoothing, alpha=alpha)
    return MarkovSelection(chain, best, scores[best], scores)
